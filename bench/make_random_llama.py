#!/usr/bin/env python3
"""Writes a random LlamaForCausalLM folder as the hub ships one: config.json, F16 safetensors
shards (about --shard-gib each) and model.safetensors.index.json, plus a tokenizer.model copied
from --tokenizer. The weights are N(0, 0.02) draws from a seeded generator: for memory and speed
checks at real shapes, never for quality. Defaults are LLaMA-2-7B's / Vicuna-7B's shapes.

Usage: /usr/bin/python3 bench/make_random_llama.py OUT_DIR --tokenizer tokenizer.model
           [--hidden 4096 --intermediate 11008 --layers 32 --heads 32 --vocab 32000 --shard-gib 5 --seed 0]
"""
import argparse
import json
import os
import shutil
import struct

import numpy as np


def tensors(a):
    """(name, shape) of every tensor, in the order the hub's shards hold them."""
    h, i = a.hidden, a.intermediate
    yield "model.embed_tokens.weight", (a.vocab, h)
    for l in range(a.layers):
        p = f"model.layers.{l}."
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            yield p + f"self_attn.{proj}.weight", (h, h)
        yield p + "mlp.gate_proj.weight", (i, h)
        yield p + "mlp.up_proj.weight", (i, h)
        yield p + "mlp.down_proj.weight", (h, i)
        yield p + "input_layernorm.weight", (h,)
        yield p + "post_attention_layernorm.weight", (h,)
    yield "model.norm.weight", (h,)
    yield "lm_head.weight", (a.vocab, h)


def write_shard(path, items, rng):
    header, offset = {}, 0
    for name, shape in items:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name, shape in items:
            if len(shape) == 1:
                f.write(np.ones(shape, dtype=np.float16).tobytes())
                continue
            for row in range(0, shape[0], 1024):  # a block of rows at a time: bounded memory
                block = rng.standard_normal((min(1024, shape[0] - row),) + tuple(shape[1:]), dtype=np.float32)
                f.write((block * 0.02).astype(np.float16).tobytes())


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
    shards, current, size = [], [], 0
    for name, shape in tensors(a):
        n = int(np.prod(shape)) * 2
        if current and size + n > a.shard_gib * (1 << 30):
            shards.append(current)
            current, size = [], 0
        current.append((name, shape))
        size += n
    shards.append(current)
    weight_map, total = {}, 0
    for k, items in enumerate(shards):
        file = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        write_shard(os.path.join(a.out, file), items, rng)
        for name, shape in items:
            weight_map[name] = file
            total += int(np.prod(shape)) * 2
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": a.hidden,
              "intermediate_size": a.intermediate, "num_hidden_layers": a.layers, "num_attention_heads": a.heads,
              "num_key_value_heads": a.heads, "vocab_size": a.vocab, "max_position_embeddings": 4096,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "float16",
              "bos_token_id": 1, "eos_token_id": 2}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    shutil.copy(a.tokenizer, os.path.join(a.out, "tokenizer.model"))
    print(f"{a.out}: {sum(len(s) for s in shards)} tensors in {len(shards)} shards, {total / (1 << 30):.2f} GiB F16")


if __name__ == "__main__":
    main()
