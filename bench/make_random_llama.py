#!/usr/bin/env python3
"""Writes a random LlamaForCausalLM folder as the hub ships one: config.json, F16 safetensors
shards (about --shard-gib each) and model.safetensors.index.json, plus a tokenizer.model copied
from --tokenizer. The weights are N(0, 0.02) draws from a seeded generator (norm weights 1):
for memory and speed checks at real shapes, never for quality. Defaults are LLaMA-2-7B's /
Vicuna-7B's shapes.

Usage: /usr/bin/python3 bench/make_random_llama.py OUT_DIR --tokenizer tokenizer.model
           [--hidden 4096 --intermediate 11008 --layers 32 --heads 32 --vocab 32000 --shard-gib 5 --seed 0]

The writing helpers (llama_tensors, write_shard, write_checkpoint) are shared with
bench/make_random_llava.py.
"""
import argparse
import json
import os
import re
import shutil
import struct

import numpy as np

STD = 0.02        # standard deviation of every random tensor
BLOCK_ROWS = 1024  # rows drawn and written at a time: memory stays bounded at any shape
DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4}


def llama_tensors(hidden, intermediate, layers, vocab, prefix="model.", lm_head="lm_head.weight", kv_hidden=None):
    """(name, shape) of every LLaMA tensor, in the order the hub's shards hold them. `prefix` goes
    before embed_tokens / layers / norm ("language_model.model." in a llava-hf 4.x folder);
    `kv_hidden` is k_proj's and v_proj's output size (num_key_value_heads x head_dim; default hidden)."""
    h, i, kv = hidden, intermediate, kv_hidden or hidden
    yield prefix + "embed_tokens.weight", (vocab, h)
    for l in range(layers):
        p = f"{prefix}layers.{l}."
        yield p + "self_attn.q_proj.weight", (h, h)
        yield p + "self_attn.k_proj.weight", (kv, h)
        yield p + "self_attn.v_proj.weight", (kv, h)
        yield p + "self_attn.o_proj.weight", (h, h)
        yield p + "mlp.gate_proj.weight", (i, h)
        yield p + "mlp.up_proj.weight", (i, h)
        yield p + "mlp.down_proj.weight", (h, i)
        yield p + "input_layernorm.weight", (h,)
        yield p + "post_attention_layernorm.weight", (h,)
    yield prefix + "norm.weight", (h,)
    yield lm_head, (vocab, h)


def is_norm_weight(name):
    """RMSNorm / LayerNorm scales (LLaMA's *norm.weight, CLIP's pre_layrnorm, post_layernorm,
    layer_norm1/2): written as ones. Every other tensor, biases included, is N(0, STD)."""
    return re.search(r"norm\d?\.weight$", name) is not None


def encode(block, dtype):
    """float32 array -> little-endian bytes of `dtype` (BF16: float32 rounded to nearest even)."""
    if dtype == "F16":
        return block.astype("<f2").tobytes()
    if dtype == "F32":
        return block.astype("<f4").tobytes()
    if dtype == "BF16":
        bits = np.ascontiguousarray(block, dtype=np.float32).view(np.uint32)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # finite inputs only (N(0, STD) draws are)
        return bits.astype("<u2").tobytes()
    raise ValueError(f"unsupported dtype {dtype}")


def write_shard(path, items, rng, dtype="F16"):
    """Writes one safetensors file holding `items` [(name, shape)] in `dtype`: norm weights 1,
    everything else N(0, STD) drawn from `rng` BLOCK_ROWS rows at a time."""
    header, offset, size = {}, 0, DTYPE_BYTES[dtype]
    for name, shape in items:
        n = int(np.prod(shape)) * size
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name, shape in items:
            if is_norm_weight(name):
                f.write(encode(np.ones(shape, dtype=np.float32), dtype))
                continue
            for row in range(0, shape[0], BLOCK_ROWS):
                block = rng.standard_normal((min(BLOCK_ROWS, shape[0] - row),) + tuple(shape[1:]), dtype=np.float32)
                f.write(encode(block * STD, dtype))


def write_checkpoint(out, items, rng, shard_gib, dtype="F16"):
    """Writes `items` [(name, shape)] into `out` as the hub shards a model: tensors in order, a new
    model-0000k-of-0000n.safetensors file before one would pass shard_gib GiB, and
    model.safetensors.index.json. Returns (tensor count, shard count, bytes of tensor data)."""
    shards, current, size, limit = [], [], 0, shard_gib * (1 << 30)
    for name, shape in items:
        n = int(np.prod(shape)) * DTYPE_BYTES[dtype]
        if current and size + n > limit:
            shards.append(current)
            current, size = [], 0
        current.append((name, shape))
        size += n
    shards.append(current)
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        file = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        write_shard(os.path.join(out, file), shard, rng, dtype)
        for name, shape in shard:
            weight_map[name] = file
            total += int(np.prod(shape)) * DTYPE_BYTES[dtype]
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return len(weight_map), len(shards), total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--intermediate", type=int, default=11008)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--shard-gib", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    count, shards, total = write_checkpoint(
        a.out, llama_tensors(a.hidden, a.intermediate, a.layers, a.vocab), rng, a.shard_gib)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": a.hidden,
              "intermediate_size": a.intermediate, "num_hidden_layers": a.layers, "num_attention_heads": a.heads,
              "num_key_value_heads": a.heads, "vocab_size": a.vocab, "max_position_embeddings": 4096,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "float16",
              "bos_token_id": 1, "eos_token_id": 2}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    shutil.copy(a.tokenizer, os.path.join(a.out, "tokenizer.model"))
    print(f"{a.out}: {count} tensors in {shards} shards, {total / (1 << 30):.2f} GiB F16")


if __name__ == "__main__":
    main()
