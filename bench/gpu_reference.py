#!/usr/bin/env python3
"""align2 on a GPU against transformers, on a small random LLaVA-1.5 (scripts/gpu-check.sh runs it).

  python3 bench/gpu_reference.py --align2 BIN --tokenizer tokenizer.model --work DIR
          [--images examples/demo/images] [--dtypes f32,bf16] [--attn sdpa] [--json-out FILE]

Needs torch (CUDA), transformers, safetensors, h5py, numpy and PIL; BIN is an align2 built with CUDA
(a wrapper script that sets its library path is fine). Nothing here needs the network.

The model (written once into DIR by bench/make_random_llava.py, numpy weights N(0, 0.02), F16):
  llava-hf layout (transformers 4.x names), LLM hidden 256, 4 layers, 4 heads (head 64), MLP 688,
  vocab 32064 (the real LLaMA tokenizer given, <image> = 32000); CLIP 336 px / patch 14 = 576
  patches, hidden 64, MLP 256, 3 layers (2 run: vision_feature_layer -2), 4 heads; mlp2x_gelu
  projector. A question reward model on it: LoRA r 8, alpha 16 on all seven projections of every
  layer (A and B both random, so the merge changes every weight), a score head and a new projector,
  in BF16 (the authors' adapters are bf16).

Two comparisons per dtype (f32, bf16), each against transformers' LlavaForConditionalGeneration
loaded from the same folder in that dtype on the GPU (attention: --attn, transformers' default sdpa):
  (i)  logits. `align2 generate --logits-out` (greedy, 8 new tokens) writes float32 logits of every
       fed position: the prompt's P positions (prefill) and the first 7 generated tokens (decode
       with the KV cache). transformers runs one forward over the same ids: the prompt ids from
       `align2 tokenize` (BOS + SentencePiece, exactly what generate encodes) followed by align2's
       own greedy tokens (argmax of its logits rows P-1 .. end-1), so both see identical inputs
       whatever their argmax does. Compared over all rows: max |diff|, mean |diff|, Pearson
       correlation, top-1 agreement; prefill and decode rows also separately.
  (ii) the reward score. `align2 score --kind question --image-aspect square` on a one-record pool
       (one photo of --images) against: the image through transformers' CLIP image processor (the
       PIL one: CLIPImageProcessorPil in transformers 5, CLIPImageProcessor before), input_ids =
       align2's ids for the reward text "<image>\\n<question>" (BOS, then the <image> token 32000,
       then `align2 tokenize --no-bos` of the text after the tag: tokenize_with_images in
       core/model/llava_prompt.cc), the image token repeated once per image feature (576: processors
       expand it since transformers 4.45; older versions merge one token themselves, and get one),
       the LoRA merged by hand (W += (alpha / r) * B @ A in float32, matched by layer index and
       projection name, not by PEFT key names), the reward model's projector weights copied into
       multi_modal_projector, and score = the final-norm hidden state at the last position . the
       score head, in float32. The scores without the LoRA and with the base projector are reported
       too (in units of the tolerance: above 1, dropping the LoRA or the projector would fail the check).
Diagnostics (not pass/fail): the pixels of `align2 preprocess` against the image processor's, and
`align2 encode-image` (base projector) against transformers' vision features, to tell where a
score difference starts.

Tolerances (units: logits and scores of this random model: logits have a standard deviation of
about 0.3, scores about 0.3):
  f32:  max |logit diff| <= 1e-3 and |score diff| <= 1e-3. Both sides are IEEE float32 throughout
        (cuBLAS without TF32, the default in both) except the patch-embedding convolution, for which
        cuDNN may pick TF32 in both libtorch and PyTorch by default (allow_tf32 is on for cuDNN);
        the reference score is also computed with TF32 off and reported, to show how much that moves
        it. Everything else differs only in summation order (~1e-6 relative).
  bf16: max |logit diff| <= 5e-2 and Pearson correlation >= 0.999; |score diff| <= the larger of
        3e-2 and twice transformers' own bf16 error on the same input (|its bf16 score - its f32
        score|, from the f32 pass). bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2%);
        the two sides round at different points (different fused attention kernels: align2 passes
        an explicit causal+padding mask, transformers uses is_causal; CLIP attention is an explicit
        softmax in align2), so each layer's output differs by a few bf16 ulps. Measured on this model
        with align2 on a CPU, bf16 against f32: prefill logits max |diff| 0.013 (mean 0.002, std of
        the logits 0.32, correlation 0.99996), score 0.620 against 0.651: the 576 image positions go
        through the bf16 vision tower, whose hidden states move by up to 6%, so the score's bf16 error
        (~5%) is far larger than the logits' and is better judged against the reference's own.
        The logit bounds are ~4x that measured error: they catch a wrong op (a missing norm, a
        transposed weight, a wrong position), not rounding.
Prints readable lines, then one JSON line {"gpu_reference": {...}}; --json-out writes the same
object. Exit status 0 when every comparison is within its tolerance, 1 otherwise.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))

PROMPT = "Once upon a time, in a small village by the sea, there lived an old fisherman who"
QUESTION = "What is happening in this picture? Describe the main objects and their colors."
IMAGE_TOKEN = 32000
NEW_TOKENS = 8
MODEL_FLAGS = ["--hidden", "256", "--intermediate", "688", "--layers", "4", "--heads", "4",
               "--vision-hidden", "64", "--vision-intermediate", "256", "--vision-layers", "3", "--vision-heads", "4",
               "--shard-gib", "1"]  # --image 336 --patch 14 --vocab 32064: the defaults, LLaVA-1.5's
RM_FLAGS = ["--kind", "question", "--lora-r", "8", "--lora-alpha", "16"]
TOL = {"f32": {"logits_max_abs": 1e-3, "score_abs": 1e-3},
       "bf16": {"logits_max_abs": 5e-2, "logits_corr_min": 0.999, "score_abs": 3e-2,
                "score_times_reference_bf16_error": 2.0}}


def run(cmd, **kw):
    """Runs cmd, echoing it; returns stdout (raises CalledProcessError with stderr shown)."""
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.stderr.strip():
        print(p.stderr.rstrip()[-2000:], flush=True)
    if p.returncode != 0:
        raise subprocess.CalledProcessError(p.returncode, cmd, p.stdout, p.stderr)
    print(f"  ({time.time() - t0:.1f} s)", flush=True)
    return p.stdout


def tokenize(align2, tokenizer, texts, work, bos=True):
    """Token ids of each text as align2 encodes it (`align2 tokenize`)."""
    path = os.path.join(work, "tokenize.jsonl")
    with open(path, "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
    out = run([align2, "tokenize", "--tokenizer", tokenizer, "--input", path] + ([] if bos else ["--no-bos"]))
    return [json.loads(line)["ids"] for line in out.splitlines() if line.strip()]


def write_models(args, work):
    """The random base and reward model, written once (a stamp file records the flags)."""
    base, rm = os.path.join(work, "base"), os.path.join(work, "rm-question")
    stamp = os.path.join(work, "models.made-by")
    want = json.dumps([MODEL_FLAGS, RM_FLAGS, os.path.getsize(args.tokenizer)])
    if os.path.exists(stamp) and open(stamp).read() == want and os.path.isdir(rm):
        print(f"reusing {base} and {rm}")
        return base, rm
    maker = os.path.join(HERE, "make_random_llava.py")
    run([sys.executable, maker, "base", base, "--tokenizer", args.tokenizer] + MODEL_FLAGS)
    run([sys.executable, maker, "reward-model", rm, "--base", base] + RM_FLAGS)
    with open(stamp, "w") as f:
        f.write(want)
    return base, rm


def read_f32_safetensors(path):
    """{name: float32 numpy array} of a safetensors file holding F32 tensors (what align2 writes:
    logits, pixel values, vision features). numpy only, so the align2 side runs without torch."""
    import struct

    import numpy as np
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            raise ValueError(f"{path}: {name} is {t['dtype']}, expected F32")
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(t["shape"])
    return out


def first_image(folder):
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".jpg", ".jpeg", ".png")))
    if not names:
        sys.exit(f"gpu_reference: no image in {folder}")
    return names[0]


def stats(a, b):
    """Differences of two float tensors (same shape), as plain floats."""
    import torch
    a, b = a.double().flatten(), b.double().flatten()
    d = (a - b).abs()
    ac, bc = a - a.mean(), b - b.mean()
    corr = float((ac * bc).sum() / (ac.norm() * bc.norm() + 1e-300))
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean()), "corr": corr, "scale": float(b.abs().max()),
            "n": int(a.numel()), "finite": bool(torch.isfinite(a).all())}


def find_module(model, class_name):
    for m in model.modules():
        if type(m).__name__ == class_name:
            return m
    raise RuntimeError(f"no {class_name} inside {type(model).__name__}")


def projector_module(model):
    for name, m in model.named_modules():
        if name.endswith("multi_modal_projector"):
            return m
    raise RuntimeError("no multi_modal_projector")


def load_reference(args, base, dtype):
    """transformers' LlavaForConditionalGeneration from `base` in `dtype` on the GPU, checked to hold
    the checkpoint's weights (a renamed tensor would otherwise stay randomly initialised)."""
    import torch
    import transformers
    from packaging.version import Version
    from safetensors.torch import load_file
    kw = {"attn_implementation": args.attn}
    # transformers >= 4.56 names the argument `dtype`; before, an unknown `dtype` would be ignored.
    kw["dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"] = dtype
    model = transformers.LlavaForConditionalGeneration.from_pretrained(base, **kw).to(args.device).eval()
    index = json.load(open(os.path.join(base, "model.safetensors.index.json")))["weight_map"]
    shards = {}
    checks = [("language_model.model.embed_tokens.weight", lambda: find_module(model, "LlamaModel").embed_tokens.weight),
              ("language_model.model.layers.3.mlp.down_proj.weight",
               lambda: find_module(model, "LlamaModel").layers[3].mlp.down_proj.weight),
              ("multi_modal_projector.linear_2.weight", lambda: projector_module(model).linear_2.weight),
              ("vision_tower.vision_model.embeddings.patch_embedding.weight",
               lambda: find_module(model, "CLIPVisionEmbeddings").patch_embedding.weight)]
    for name, get in checks:
        shard = index[name]
        if shard not in shards:
            shards[shard] = load_file(os.path.join(base, shard))
        want = shards[shard][name].to(dtype)
        got = get().detach().cpu()
        if got.dtype != dtype:
            raise RuntimeError(f"transformers loaded {name} as {got.dtype}, not {dtype}")
        if not torch.equal(got, want):
            raise RuntimeError(f"transformers' {name} differs from the checkpoint's: its weight names were not mapped")
    return model


def image_processor(base):
    import transformers
    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls.from_pretrained(base), cls.__name__


def merge_lora(model, rm):
    """W += scale * B @ A (float32, on the CPU, then back to W's dtype), as align2's RewardModel does:
    every lora_A/lora_B pair matched to the LLM's layer `i` and projection by regex. Returns the count."""
    import torch
    from safetensors.torch import load_file
    cfg = json.load(open(os.path.join(rm, "adapter_config.json")))
    r, alpha = cfg["r"], cfg["lora_alpha"]
    scale = alpha / r ** 0.5 if cfg.get("use_rslora") else alpha / r
    adapter = load_file(os.path.join(rm, "adapter_model.safetensors"))
    pattern = re.compile(r"layers\.(\d+)\.(self_attn|mlp)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
                         r"\.lora_A\.weight$")
    layers = find_module(model, "LlamaModel").layers
    merged = 0
    with torch.no_grad():
        for key, a in adapter.items():
            m = pattern.search(key)
            if not m:
                continue
            b = adapter[key.replace(".lora_A.weight", ".lora_B.weight")]
            linear = getattr(getattr(layers[int(m.group(1))], m.group(2)), m.group(3))
            w = linear.weight
            w.copy_((w.float().cpu() + scale * (b.float() @ a.float())).to(w.dtype).to(w.device))
            merged += 1
    if merged != 7 * len(layers):
        raise RuntimeError(f"merged {merged} LoRA pairs, expected {7 * len(layers)}")
    return merged


def set_projector(model, rm, dtype):
    """Copies the reward model's projector (projector.safetensors, or the authors'
    non_lora_trainables.safetensors) into multi_modal_projector, matched by linear_1/linear_2 suffix."""
    import torch
    from safetensors.torch import load_file
    path = os.path.join(rm, "projector.safetensors")
    if not os.path.exists(path):
        path = os.path.join(rm, "non_lora_trainables.safetensors")
    tensors = load_file(path)
    proj = projector_module(model)
    done = 0
    with torch.no_grad():
        for key, t in tensors.items():
            m = re.search(r"(linear_[12])\.(weight|bias)$", key)
            if m:
                getattr(getattr(proj, m.group(1)), m.group(2)).copy_(t.to(dtype))
                done += 1
    if done != 4:
        raise RuntimeError(f"{path}: {done} projector tensors matched, expected 4")


def score_head(rm):
    from safetensors.torch import load_file
    path = os.path.join(rm, "score_head.safetensors")
    if os.path.exists(path):  # align2 prefers score_head.safetensors when both exist
        return load_file(path)["score.weight"].float().flatten()
    adapter = load_file(os.path.join(rm, "adapter_model.safetensors"))
    for name in ("base_model.model.score.weight", "base_model.model.score.modules_to_save.default.weight"):
        if name in adapter:
            return adapter[name].float().flatten()
    raise RuntimeError(f"{rm}: no score head")


def reference_score(model, ids, pixels, head):
    """Final-norm hidden state at the last position . head, float32."""
    import torch
    ids_t = torch.tensor([ids], device=pixels.device)
    with torch.no_grad():
        inner = getattr(model, "model", None)
        if inner is not None and type(inner).__name__ == "LlavaModel":  # transformers >= 4.52
            hidden = inner(input_ids=ids_t, pixel_values=pixels).last_hidden_state
        else:  # older: LlavaForConditionalGeneration -> LlamaForCausalLM; the last hidden state is normed
            hidden = model(input_ids=ids_t, pixel_values=pixels, output_hidden_states=True).hidden_states[-1]
        if hidden.shape[1] != len(ids) and hidden.shape[1] != len(ids) + 575:
            raise RuntimeError(f"unexpected merged length {hidden.shape[1]} for {len(ids)} ids")
        return float(torch.dot(hidden[0, -1].float(), head.to(hidden.device))), int(hidden.shape[1])


def image_token_ids(rm_ids, n_features):
    """align2's ids with the one <image> token repeated n_features times (transformers >= 4.45 expects
    the processor's expansion), or unchanged for older versions whose model merges the token itself."""
    import transformers
    from packaging.version import Version
    if Version(transformers.__version__) < Version("4.45"):
        return rm_ids, "model merges one <image> token (transformers < 4.45)"
    out = []
    for t in rm_ids:
        out.extend([t] * n_features if t == IMAGE_TOKEN else [t])
    return out, f"<image> expanded to {n_features} tokens"


def align2_side(args, name, base, rm, image, work):
    """The three align2 runs of one dtype on --device: generate (logits), score, encode-image."""
    dev = ["--device", args.device, "--dtype", name]
    out = {}
    logits_path = os.path.join(work, f"logits-{name}.safetensors")
    out["generated_text"] = run([args.align2, "generate", "--model", base, "--prompt", PROMPT, "--max-new-tokens",
                                 str(NEW_TOKENS), "--logits-out", logits_path] + dev).strip()
    out["logits"] = read_f32_safetensors(logits_path)["logits"]
    h5 = os.path.join(work, f"score-{name}.h5")
    if os.path.exists(h5):
        os.remove(h5)
    run([args.align2, "score", "--kind", "question", "--model", rm, "--input", os.path.join(work, "pool.json"),
         "--image-root", args.images, "--output", h5, "--image-aspect", "square"] + dev)
    import h5py
    with h5py.File(h5, "r") as f:
        out["score"] = float(f["question_score"][0])
        out["status"] = f["status"].asstr()[0]
    enc_path = os.path.join(work, f"encode-{name}.safetensors")
    try:
        run([args.align2, "encode-image", "--model", base, "--aspect", "square", "--out", enc_path,
             os.path.join(args.images, image)] + dev)
        out["encode_image_device"] = args.device
    except subprocess.CalledProcessError as e:
        # Diagnostic only: fall back to the CPU (the failure on the GPU is itself reported).
        out["encode_image_error"] = f"exit {e.returncode}: {(e.stderr or '').strip()[-300:]}"
        run([args.align2, "encode-image", "--model", base, "--aspect", "square", "--out", enc_path,
             "--device", "cpu", "--dtype", name, os.path.join(args.images, image)])
        out["encode_image_device"] = "cpu"
    out["encoded"] = read_f32_safetensors(enc_path)
    print(f"[{name}] align2: logits {list(out['logits'].shape)}, score {out['score']:.6f} ({out['status']}), "
          f"generated {out['generated_text']!r}, encode-image on {out['encode_image_device']}")
    return out


def compare_dtype(args, name, base, rm, image, prompt_ids, rm_ids, work, result):
    import torch
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[name]
    tol = TOL[name]
    res = {"checks": {}}
    result[name] = res
    a = align2_side(args, name, base, rm, image, work)
    a_logits, a_score = torch.from_numpy(a["logits"].copy()), a["score"]
    encoded = {k: torch.from_numpy(v.copy()) for k, v in a["encoded"].items()}
    res["align2_status"], res["encode_image_device"] = a["status"], a["encode_image_device"]
    if "encode_image_error" in a:
        res["encode_image_error"] = a["encode_image_error"]

    # --- transformers --------------------------------------------------------------------------------
    model = load_reference(args, base, dtype)
    # (i) logits: the prompt, then align2's own greedy tokens (all but the last, which was not fed).
    P = len(prompt_ids)
    rows = a_logits.shape[0]
    generated = a_logits[P - 1:].argmax(-1).tolist()
    fed = prompt_ids + generated[:rows - P]
    with torch.no_grad():
        r_logits = model(input_ids=torch.tensor([fed], device=args.device)).logits[0].float().cpu()
    if r_logits.shape != a_logits.shape:
        raise RuntimeError(f"logits shapes differ: align2 {tuple(a_logits.shape)}, transformers {tuple(r_logits.shape)}")
    s = stats(a_logits, r_logits)
    s["prefill_max_abs"] = float((a_logits[:P] - r_logits[:P]).abs().max())
    s["decode_max_abs"] = float((a_logits[P:] - r_logits[P:]).abs().max()) if rows > P else None
    s["top1_agreement"] = float((a_logits.argmax(-1) == r_logits.argmax(-1)).float().mean())
    s["rows"], s["prompt_rows"] = rows, P
    res["logits"] = s
    ok = s["finite"] and s["max_abs"] <= tol["logits_max_abs"]
    if "logits_corr_min" in tol:
        ok = ok and s["corr"] >= tol["logits_corr_min"]
    res["checks"]["logits"] = ok

    # (ii) the reward score.
    proc, proc_name = image_processor(base)
    from PIL import Image
    pixels = proc(images=Image.open(os.path.join(args.images, image)), return_tensors="pt")["pixel_values"]
    a_pixels = torch.from_numpy(read_f32_safetensors(os.path.join(work, "pixels.safetensors"))["pixel_values"].copy())
    res["pixels"] = {"processor": proc_name, **stats(a_pixels, pixels)}
    pixels = pixels.to(args.device, dtype)
    cfg = model.config
    n_features = (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2
    if getattr(cfg, "vision_feature_select_strategy", "default") == "full":
        n_features += 1
    ids, how = image_token_ids(rm_ids, n_features)
    res["image_tokens"] = how
    head = score_head(rm)
    # Diagnostic: the vision tower and the base projector against align2 encode-image.
    try:
        with torch.no_grad():
            try:
                tower = find_module(model, "CLIPVisionModel")
            except RuntimeError:  # older Llava held the CLIPVisionTransformer itself
                tower = find_module(model, "CLIPVisionTransformer")
            hs = tower(pixels, output_hidden_states=True).hidden_states[cfg.vision_feature_layer][:, 1:]
            feats = projector_module(model)(hs)
        res["vision_hidden"] = stats(encoded["vision_hidden"].float(), hs.float().cpu())
        res["image_features"] = stats(encoded["image_features"].float(), feats.float().cpu())
    except Exception as e:  # noqa: BLE001 - a diagnostic must not stop the comparison
        res["vision_diagnostic_error"] = repr(e)[:300]
    s_base, merged_len = reference_score(model, ids, pixels, head)        # no LoRA, base projector
    res["lora_pairs"] = merge_lora(model, rm)
    s_lora, _ = reference_score(model, ids, pixels, head)                 # LoRA, base projector
    set_projector(model, rm, dtype)
    r_score, _ = reference_score(model, ids, pixels, head)                # LoRA, the RM's projector
    res["score"] = {"align2": a_score, "transformers": r_score, "abs_diff": abs(a_score - r_score),
                    "sequence_positions": merged_len, "lora_effect": abs(s_lora - s_base),
                    "projector_effect": abs(r_score - s_lora)}
    bound = tol["score_abs"]
    r_f32 = result.get("f32", {}).get("score", {}).get("transformers")
    if name == "bf16" and r_f32 is not None:  # transformers' own bf16 error on this very input
        res["score"]["reference_bf16_error"] = abs(r_score - r_f32)
        bound = max(bound, tol["score_times_reference_bf16_error"] * abs(r_score - r_f32))
    res["score"]["bound"] = bound
    res["checks"]["score"] = abs(a_score - r_score) <= bound
    if name == "f32":  # how much cuDNN's TF32 convolution (on by default, here and in libtorch) moves it
        allow = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            res["score"]["transformers_without_tf32_conv"] = reference_score(model, ids, pixels, head)[0]
        finally:
            torch.backends.cudnn.allow_tf32 = allow
    # Informational: how many tolerances the smaller of the two effects is (above 1, a missing LoRA
    # merge or projector would have failed the score check).
    res["score"]["smallest_effect_in_tolerances"] = min(res["score"]["lora_effect"],
                                                        res["score"]["projector_effect"]) / bound
    del model
    torch.cuda.empty_cache()
    decode = "none" if s["decode_max_abs"] is None else f"{s['decode_max_abs']:.3g}"
    print(f"[{name}] logits: max |diff| {s['max_abs']:.3g} (prefill {s['prefill_max_abs']:.3g}, decode {decode}), "
          f"corr {s['corr']:.6f}, top-1 agreement {s['top1_agreement']:.3f}, logit scale {s['scale']:.3g}")
    print(f"[{name}] score: align2 {a_score:.6f}, transformers {r_score:.6f}, |diff| {abs(a_score - r_score):.3g}; "
          f"LoRA moves it by {res['score']['lora_effect']:.3g}, the projector by {res['score']['projector_effect']:.3g}")
    print(f"[{name}] pixels max |diff| {res['pixels']['max_abs']:.3g} ({proc_name}); "
          + (f"vision hidden max |diff| {res['vision_hidden']['max_abs']:.3g}, base-projector features "
             f"{res['image_features']['max_abs']:.3g} (align2 encode-image on {res['encode_image_device']})"
             if "vision_hidden" in res else res.get("vision_diagnostic_error", "")))
    print(f"[{name}] checks: {res['checks']} (tolerances {tol})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--align2", required=True, help="the align2 binary (or a wrapper running it)")
    ap.add_argument("--tokenizer", required=True, help="a LLaMA SentencePiece tokenizer.model")
    ap.add_argument("--work", required=True, help="scratch folder (models are written once and reused)")
    ap.add_argument("--images", default=os.path.join(HERE, "..", "examples", "demo", "images"))
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--attn", default="sdpa", help="transformers' attn_implementation (sdpa or eager)")
    ap.add_argument("--json-out")
    ap.add_argument("--align2-only", action="store_true",
                    help="run only align2's side (no torch needed; with --device cpu: a dry run on any machine)")
    args = ap.parse_args()
    args.images = os.path.abspath(args.images)
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)

    result = {"model": {"flags": MODEL_FLAGS, "reward_model": RM_FLAGS}, "tolerances": TOL, "attn": args.attn}
    if not args.align2_only:
        try:
            import torch
            import transformers
        except ImportError as e:
            sys.exit(f"gpu_reference: {e} (--align2-only runs align2's side alone)")
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            sys.exit("gpu_reference: torch sees no GPU")
        result.update(torch=torch.__version__, transformers=transformers.__version__,
                      device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                      cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                      cuda_matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)

    base, rm = write_models(args, work)
    image = first_image(args.images)
    with open(os.path.join(work, "pool.json"), "w") as f:
        json.dump([{"id": "gpu-reference-0", "image": image, "conversations": [
            {"from": "human", "value": "<image>\n" + QUESTION}, {"from": "gpt", "value": "A test answer."}]}], f)
    tok = os.path.join(base, "tokenizer.model")
    prompt_ids = tokenize(args.align2, tok, [PROMPT], work)[0]
    # The question RM reads "<image>\n" + question (core/reward/reward_text.cc); tokenize_with_images
    # encodes the text after the tag without BOS and puts BOS and the image token in front.
    text = "<image>\n" + QUESTION.strip()
    after = text[len("<image>"):]
    rm_ids = [1, IMAGE_TOKEN] + tokenize(args.align2, tok, [after], work, bos=False)[0]
    result["prompt_ids"], result["reward_ids"], result["image"] = prompt_ids, rm_ids, image
    run([args.align2, "preprocess", "--aspect", "square", "--size", "336", "--out",
         os.path.join(work, "pixels.safetensors"), os.path.join(args.images, image)])

    ok = True
    for name in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
        try:
            if args.align2_only:
                a = align2_side(args, name, base, rm, image, work)
                result[name] = {"align2_score": a["score"], "logits_shape": list(a["logits"].shape),
                                "encode_image_device": a["encode_image_device"]}
                continue
            compare_dtype(args, name, base, rm, image, prompt_ids, rm_ids, work, result)
            ok = ok and all(result[name]["checks"].values())
        except Exception as e:  # noqa: BLE001 - reported in the JSON; the other dtype still runs
            msg = f"{type(e).__name__}: {e}"
            if isinstance(e, subprocess.CalledProcessError):
                msg += " | " + (e.stderr or "").strip()[-500:]
            result.setdefault(name, {})["error"] = msg[:1500]
            print(f"[{name}] FAILED: {msg[:1500]}", flush=True)
            ok = False
    result["pass"] = ok
    line = json.dumps({"gpu_reference": result})
    print(line)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
