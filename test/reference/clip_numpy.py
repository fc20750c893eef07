#!/usr/bin/env python3
"""An independent CLIP vision tower + LLaVA projector forward in plain numpy (float64).

Follows transformers' modeling_clip.py: conv patch embedding (no bias), class and
position embeddings, pre_layrnorm, pre-norm encoder layers (attention with biases,
quick_gelu MLP); hidden_states[select] (select < 0 counts from the end of
[embeddings, layer 1, ..., layer L]) with CLS dropped; then the mlp2x_gelu projector
(linear, exact-erf GELU, linear) when projector weights are given.

usage: clip_numpy.py VISION_SAFETENSORS PREFIX CONFIG_JSON PIXELS.f32 N SELECT OUT.f32 [PROJ_SAFETENSORS P0W P0B P1W P1B]
PIXELS.f32: float32 [N, 3, S, S]. OUT.f32: float32 vision hidden [N, P, Hv] followed by
projected features [N, P, H] when the projector is given.
"""
import json
import math
import sys

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from llama_numpy import load_safetensors  # noqa: E402


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def main():
    st, prefix, cfg_path, pix_path, n, select, out_path = sys.argv[1:8]
    n, select = int(n), int(select)
    cfg = json.load(open(cfg_path))
    cfg = cfg.get("vision_config", cfg)
    W = load_safetensors(st)
    g = lambda name: W[prefix + name]  # noqa: E731
    H, heads, p, S = cfg["hidden_size"], cfg["num_attention_heads"], cfg["patch_size"], cfg["image_size"]
    eps = cfg.get("layer_norm_eps", 1e-5)
    L = cfg["num_hidden_layers"]
    x = np.fromfile(pix_path, dtype="<f4").astype(np.float64).reshape(n, 3, S, S)
    grid = S // p
    patches = x.reshape(n, 3, grid, p, grid, p).transpose(0, 2, 4, 1, 3, 5).reshape(n, grid * grid, 3 * p * p)
    emb = patches @ g("embeddings.patch_embedding.weight").reshape(H, -1).T
    cls = np.broadcast_to(g("embeddings.class_embedding"), (n, 1, H))
    h = np.concatenate([cls, emb], 1) + g("embeddings.position_embedding.weight")
    h = layer_norm(h, g("pre_layrnorm.weight"), g("pre_layrnorm.bias"), eps)
    states = [h]
    hd = H // heads
    for l in range(L):
        q_ = f"encoder.layers.{l}."
        r = layer_norm(h, g(q_ + "layer_norm1.weight"), g(q_ + "layer_norm1.bias"), eps)
        proj = lambda t, name: t @ g(q_ + name + ".weight").T + g(q_ + name + ".bias")  # noqa: E731
        T = r.shape[1]
        q = proj(r, "self_attn.q_proj").reshape(n, T, heads, hd).transpose(0, 2, 1, 3)
        k = proj(r, "self_attn.k_proj").reshape(n, T, heads, hd).transpose(0, 2, 1, 3)
        v = proj(r, "self_attn.v_proj").reshape(n, T, heads, hd).transpose(0, 2, 1, 3)
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = (s @ v).transpose(0, 2, 1, 3).reshape(n, T, H)
        h = h + proj(a, "self_attn.out_proj")
        m = proj(layer_norm(h, g(q_ + "layer_norm2.weight"), g(q_ + "layer_norm2.bias"), eps), "mlp.fc1")
        m = m / (1 + np.exp(-1.702 * m))
        h = h + proj(m, "mlp.fc2")
        states.append(h)
    feats = states[select][:, 1:]
    outs = [feats]
    if len(sys.argv) > 8:
        P = load_safetensors(sys.argv[8])
        w0, b0, w1, b1 = (P[k] for k in sys.argv[9:13])
        y = feats @ w0.T + b0
        erf = np.vectorize(math.erf)
        y = 0.5 * y * (1 + erf(y / math.sqrt(2)))
        outs.append(y @ w1.T + b1)
    np.concatenate([o.reshape(-1) for o in outs]).astype("<f4").tofile(out_path)


if __name__ == "__main__":
    main()
