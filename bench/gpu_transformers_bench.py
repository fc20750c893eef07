#!/usr/bin/env python3
"""transformers' reward-scoring forward at the LLaVA-7B shape, the baseline for bench/gpu_bench
(scripts/gpu-check.sh runs both, one after the other, on the same GPU).

  python3 bench/gpu_transformers_bench.py [--batches 1,8] [--groups 4] [--layers 32] [--attn sdpa,eager]
                                          [--json-out FILE]

The same work as gpu_bench, in PyTorch eager mode (no torch.compile):
  peak   an 8192 x 8192 x 8192 bf16 torch.matmul on random inputs, 10 products per timed run, best
         of 5 runs after 3 warm-ups (gpu_bench's device_matmul_peak), so each program's MFU is
         against the peak it measured itself;
  model  transformers.LlamaModel (no lm_head: a reward model reads the final norm) with LLaVA-1.5-7B's
         LLM shape: hidden 4096, 32 layers, 32 heads, intermediate 11008, vocab 32064, rms_norm_eps
         1e-5; bf16, built directly on the GPU with transformers' own random init (normal, std 0.02);
  work   per batch of `score_batch` sequences of 1 + 576 + n positions (n uniform in 40..80, seeded
         as gpu_bench seeds its own: the same distribution, not the same draws), random bf16 input
         embeddings right-padded to the longest with an attention mask, one forward, the
         final-norm hidden state at each sequence's last real position dotted in float32 with a
         score vector, .item() per sequence (what align2's RewardModel::score_batch does);
         `groups` batches per timed run, best of 3 runs after one warm-up batch; for each
         attention implementation asked for (sdpa is transformers' default).
FLOPs as in gpu_bench and bench/real_scale.sh: 2 * P * T + 4 * L * T^2 * H per sequence of T real
positions, P = L * (2*H*H + 2*H*Hkv + 3*H*I). Prints readable lines, then one JSON line
{"transformers_bench": {...}}; --json-out writes the same object.
"""
import argparse
import json
import random
import sys
import time

sys.dont_write_bytecode = True


def sync_scalar(t):
    return float(t.reshape(-1)[0].item())  # a device-to-host read waits for the stream


def matmul_peak(torch, n=8192, iters=10, reps=5):
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    c = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        torch.matmul(a, b, out=c)
    sync_scalar(c)
    best = 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(iters):
            torch.matmul(a, b, out=c)
        sync_scalar(c)
        best = min(best, time.perf_counter() - t0)
    del a, b, c
    return 2.0 * n ** 3 * iters / best


def set_attention(model, impl):
    """Switches the attention implementation of a built model (transformers >= 4.48 reads it at
    forward time; 5.x has set_attn_implementation)."""
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(impl)
    else:
        model.config._attn_implementation = impl


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--attn", default="sdpa,eager")
    ap.add_argument("--json-out")
    args = ap.parse_args()

    try:
        import torch
        import transformers
    except ImportError as e:
        sys.exit(f"gpu_transformers_bench: {e}")
    if not torch.cuda.is_available():
        print("gpu_transformers_bench: no GPU: skipped")
        return 0
    torch.manual_seed(0)
    peak = matmul_peak(torch)
    print(f"measured bf16 matmul peak (8192^3 torch.matmul, random inputs, best of 5 x 10): {peak / 1e12:.1f} TFLOP/s")

    H, L, heads, I, V = 4096, args.layers, 32, 11008, 32064
    config = transformers.LlamaConfig(hidden_size=H, intermediate_size=I, num_hidden_layers=L, num_attention_heads=heads,
                                      num_key_value_heads=heads, vocab_size=V, max_position_embeddings=4096,
                                      rms_norm_eps=1e-5, attn_implementation="sdpa")
    t0 = time.perf_counter()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = transformers.LlamaModel(config)
    finally:
        torch.set_default_dtype(previous)
    model = model.to(device="cuda", dtype=torch.bfloat16).eval()
    sync_scalar(model.norm.weight)
    build_s = time.perf_counter() - t0
    P = L * (2 * H * H + 2 * H * H + 3 * H * I)
    print(f"model: transformers {transformers.__version__} LlamaModel hidden {H}, {L} layers, {heads} heads, "
          f"intermediate {I}, vocab {V}: {P / 1e9:.2f} G linear weights, bf16, built on the GPU in {build_s:.1f} s")

    def flops(T):
        return 2.0 * P * T + 4.0 * L * T * T * H

    rng = random.Random(1)
    image_positions = 576
    score_w = torch.randn(H, device="cuda") * 0.02
    runs = []
    for impl in [a.strip() for a in args.attn.split(",") if a.strip()]:
        try:
            set_attention(model, impl)
        except Exception as e:  # noqa: BLE001 - an implementation this version lacks is reported
            print(f"attention {impl}: not available ({e})")
            runs.append({"attn": impl, "error": repr(e)[:200]})
            continue
        for B in [int(b) for b in args.batches.split(",") if b.strip()]:
            work = []
            for _ in range(args.groups):
                lengths = [1 + image_positions + rng.randint(40, 80) for _ in range(B)]
                T = max(lengths)
                embeds = torch.randn(B, T, H, device="cuda", dtype=torch.bfloat16) * 0.02
                mask = torch.zeros(B, T, dtype=torch.long, device="cuda")
                for i, n in enumerate(lengths):
                    mask[i, :n] = 1
                work.append((embeds, mask, lengths))
            sink = 0.0

            def score(batch):
                nonlocal sink
                embeds, mask, lengths = batch
                with torch.inference_mode():
                    hidden = model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
                    for i, n in enumerate(lengths):
                        sink += float(torch.dot(hidden[i, n - 1].float(), score_w).item())

            score(work[0])  # warm-up
            best = 1e30
            for _ in range(3):
                t0 = time.perf_counter()
                for batch in work:
                    score(batch)
                best = min(best, time.perf_counter() - t0)
            tokens = sum(sum(w[2]) for w in work)
            useful = sum(flops(n) for w in work for n in w[2])
            padded = sum(B * flops(max(w[2])) for w in work)
            seqs = B * args.groups
            print(f"attention {impl}, score_batch {B}: {args.groups} batches of {B} sequences: {best:.3f} s; "
                  f"{seqs / best:.1f} sequences/s, {tokens / best:.0f} tokens/s, {useful / best / 1e12:.1f} TFLOP/s "
                  f"useful = {100 * useful / best / peak:.1f}% of the measured peak "
                  f"({100 * padded / best / peak:.1f}% with padding)")
            runs.append({"attn": impl, "score_batch": B, "batches": args.groups, "sequences": seqs, "tokens": tokens,
                         "seconds": best, "sequences_per_s": seqs / best, "tokens_per_s": tokens / best,
                         "tflop_per_s": useful / best / 1e12, "mfu": useful / best / peak,
                         "mfu_with_padding": padded / best / peak})
    result = {"torch": torch.__version__, "transformers": transformers.__version__,
              "device": torch.cuda.get_device_name(0), "dtype": "bf16", "peak_bf16_tflop_per_s": peak / 1e12,
              "model": {"hidden": H, "layers": L, "heads": heads, "intermediate": I, "vocab": V, "linear_params": P},
              "image_positions": image_positions, "text_positions": [40, 80], "build_s": build_s, "runs": runs}
    print(json.dumps({"transformers_bench": result}))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=1)
    return 0 if all("error" not in r for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
