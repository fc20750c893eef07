#!/usr/bin/env python3
"""A Hugging Face LLaMA folder as one GGUF file, for llama.cpp's benchmarks on the very model
align2's benchmarks time (bench/llama_cpp_bench.sh). Not a general converter:
  - reads config.json and the folder's *.safetensors (F32, F16 or BF16; header and sizes checked);
  - writes F32 or BF16 matrices (1-D norm weights stay F32, as llama.cpp's own converter keeps
    them), q/k rows permuted from Hugging Face's rotate-half layout to GGUF's interleaved one;
  - a placeholder SentencePiece vocabulary of the config's size (<unk>, <s>, </s>, the 256 byte
    pieces llama.cpp looks up at load, then "\u2581tN"): benchmarks never tokenize text.
Usage: write_gguf.py MODEL_DIR OUT.gguf f32|bf16 GGUF_PY_DIR   (GGUF_PY_DIR: llama.cpp's gguf-py)
Needs numpy, yaml and sentencepiece for Python (gguf-py imports them; Debian: python3-numpy,
python3-yaml, python3-sentencepiece).
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np

MAX_HEADER = 100 << 20  # bytes: a safetensors header larger than this is refused


def read_safetensors(path):
    """Yields (name, float32 array) for each tensor of one safetensors file."""
    with open(path, "rb") as f:
        size = path.stat().st_size
        (n,) = struct.unpack("<Q", f.read(8))
        if n > min(MAX_HEADER, size - 8):
            sys.exit(f"write_gguf: {path}: header of {n} bytes in a file of {size}")
        header = json.loads(f.read(n))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            count = int(np.prod(info["shape"], dtype=np.int64))
            width = {"F32": 4, "F16": 2, "BF16": 2}.get(info["dtype"])
            if width is None:
                sys.exit(f"write_gguf: {path}: tensor {name} is {info['dtype']}; F32, F16 or BF16 expected")
            if not 0 <= begin <= end <= size - 8 - n or end - begin != count * width:
                sys.exit(f"write_gguf: {path}: tensor {name}: offsets {begin}..{end} do not hold its shape")
            f.seek(8 + n + begin)
            raw = f.read(end - begin)
            if info["dtype"] == "F32":
                a = np.frombuffer(raw, dtype="<f4")
            elif info["dtype"] == "F16":
                a = np.frombuffer(raw, dtype="<f2").astype(np.float32)
            else:  # bfloat16: the high half of a float32
                a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
            yield name, a.reshape(info["shape"])


def permute_rope(w, heads):
    """Hugging Face's q/k rows (two halves per head) in GGUF's interleaved order."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_name(hf):
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if hf in fixed:
        return fixed[hf]
    parts = hf.split(".")  # model.layers.{i}.{module}.weight
    if len(parts) < 5 or parts[:2] != ["model", "layers"]:
        return None
    module = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
              "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
              "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
              "mlp.down_proj": "ffn_down"}.get(".".join(parts[3:-1]))
    return f"blk.{parts[2]}.{module}.weight" if module else None


def main():
    if len(sys.argv) != 5 or sys.argv[3] not in ("f32", "bf16"):
        sys.exit(__doc__)
    model, out, dtype, gguf_py = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    sys.path.insert(0, gguf_py)
    import gguf  # noqa: E402 (llama.cpp's own writer, from its tree)

    c = json.loads((model / "config.json").read_text())
    heads, kv_heads = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name(model.name)
    w.add_context_length(c["max_position_embeddings"])
    w.add_embedding_length(c["hidden_size"])
    w.add_block_count(c["num_hidden_layers"])
    w.add_feed_forward_length(c["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(c["hidden_size"] // heads)
    w.add_rope_freq_base(c.get("rope_theta", 10000.0))
    w.add_layer_norm_rms_eps(c["rms_norm_eps"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16 if dtype == "bf16" else gguf.LlamaFileType.ALL_F32)
    vocab = c["vocab_size"]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"\u2581t{i}" for i in range(vocab - len(tokens))]
    T = gguf.TokenType
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 3 + [0.0] * 256 + [-float(i) for i in range(vocab - 259)])
    w.add_token_types([T.UNKNOWN, T.CONTROL, T.CONTROL] + [T.BYTE] * 256 + [T.NORMAL] * (vocab - 259))
    w.add_unk_token_id(0)
    w.add_bos_token_id(c.get("bos_token_id", 1))
    w.add_eos_token_id(c.get("eos_token_id", 2))

    files = sorted(model.glob("*.safetensors"))
    if not files:
        sys.exit(f"write_gguf: no *.safetensors in {model}")
    for path in files:
        for hf, a in read_safetensors(path):
            name = gguf_name(hf)
            if name is None:
                sys.exit(f"write_gguf: {path}: tensor {hf} is not part of a LLaMA decoder")
            if name.endswith("attn_q.weight"):
                a = permute_rope(a, heads)
            elif name.endswith("attn_k.weight"):
                a = permute_rope(a, kv_heads)
            if a.ndim == 1 or dtype == "f32":
                w.add_tensor(name, np.ascontiguousarray(a, dtype=np.float32))
            else:
                q = gguf.quants.quantize(np.ascontiguousarray(a, dtype=np.float32), gguf.GGMLQuantizationType.BF16)
                w.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.BF16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {dtype})")


if __name__ == "__main__":
    main()
