#!/usr/bin/env python3
"""Random LLaVA-1.5 checkpoints at real shapes, for memory and speed checks (never for quality).

  base OUT_DIR --tokenizer tokenizer.model [shape flags] [--shard-gib 5] [--seed 0]
      A llava-hf folder as the hub ships llava-hf/llava-1.5-7b-hf (transformers 4.x tensor names):
      config.json (LlavaForConditionalGeneration with nested text_config and vision_config,
      image_token_index 32000, pad_token_id 32001, vision_feature_layer -2, strategy "default",
      vocab 32064), F16 shards model-0000k-of-0000n.safetensors of about --shard-gib GiB each +
      model.safetensors.index.json, preprocessor_config.json (CLIPImageProcessor: resize the
      short side, centre crop), generation_config.json, and the tokenizer: tokenizer.model copied
      from --tokenizer, with llava-hf's added_tokens.json / special_tokens_map.json /
      tokenizer_config.json (<image> = 32000 and <pad> = 32001 added beyond SentencePiece's 32000
      pieces). align2 reads only tokenizer.model: it splits prompts on the "<image>" tag and puts
      image_token_index where each stood; the JSON files are there for other readers (and
      `align2 merge-lora` copies them).
      Tensors, in the order the hub's shards hold them (the module order of the model):
        vision_tower.vision_model.{embeddings.{class_embedding, patch_embedding.weight,
          position_embedding.weight}, pre_layrnorm.*, encoder.layers.N.*, post_layernorm.*}
        multi_modal_projector.linear_{1,2}.{weight,bias}       (mlp2x_gelu: Hv -> H -> H)
        language_model.model.{embed_tokens.weight, layers.N.*, norm.weight}, language_model.lm_head.weight
      Defaults are LLaVA-1.5-7B's: LLM hidden 4096, intermediate 11008, 32 layers, 32 heads,
      vocab 32064, 4096 positions (7.06 G parameters, 13.2 GiB F16 in 3 shards); CLIP
      ViT-L/14-336: hidden 1024, intermediate 4096, 24 layers, 16 heads, patch 14, 336 px
      (576 patches). As on the hub, text_config names only the LLM sizes that differ from
      transformers' LlamaConfig defaults (the 7B ones), so at the default shape config.json is
      the hub's.

  reward-model OUT_DIR --base BASE_DIR --kind question|answer [--lora-r 128 --lora-alpha 256 --seed S]
      An align2 reward-model folder (core/engine/reward_model.h, docs/reward-models.md) on BASE_DIR
      in the layout of the authors' released PEFT adapters (Huanghz/Align2LLaVA_RM,
      docs/reward-models-reference.md §6-7), converted to safetensors:
        reward_config.json         {"format": "align2-reward-model", "version": 1, "kind", "max_length": 2048,
                                    "base_model": BASE_DIR relative to OUT_DIR}
        adapter_config.json        PEFT LoRA, task SEQ_CLS: r 128, lora_alpha 256 (scale 2), lora_dropout 0.05,
                                   bias "none", target_modules q/k/v/o/gate/up/down_proj, modules_to_save
                                   ["classifier", "score"] (as PEFT >= 0.11 writes it)
        adapter_model.safetensors  base_model.model.<LLM linear name without .weight>.lora_A.weight [r, in]
                                   and .lora_B.weight [out, r] for the seven projections of every layer
                                   (A and B both random, so the merge changes every weight), and the
                                   score head base_model.model.score.weight [1, hidden] (modules_to_save)
        projector.safetensors      a trained projector: the base's projector names and shapes, new values
      Dtype BF16 (--dtype): the authors train with --bf16 and LLaVA's train.py casts the whole
      PEFT model, LoRA factors and score head included, to bfloat16 before training, so their
      adapter and non_lora_trainables (projector) hold bf16. At the 7B shape an r = 128 adapter is
      320 M parameters (0.60 GiB in BF16). The seed defaults to 1 (question) / 2 (answer), so the two
      models differ. Shapes and tensor names (4.x or 5.x) come from BASE_DIR's config.json and index.

Weights: N(0, 0.02) from a seeded generator (numpy default_rng), norm weights 1, written a block of
rows at a time (memory stays bounded at any shape); helpers shared with bench/make_random_llama.py.
Shape flags shrink everything for tests, e.g.
  make_random_llava.py base /tmp/llava --tokenizer tok.model --hidden 64 --intermediate 128 --layers 2 \\
      --heads 4 --vision-hidden 32 --vision-intermediate 64 --vision-layers 2 --vision-heads 2
  make_random_llava.py reward-model /tmp/rm-question --base /tmp/llava --kind question --lora-r 8
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_random_llama import llama_tensors, write_checkpoint, write_shard  # noqa: E402

IMAGE_TOKEN_INDEX, PAD_TOKEN_ID = 32000, 32001  # llava-hf's added tokens
# transformers' LlamaConfig defaults (LLaMA-7B): llava-hf's text_config omits keys equal to these.
LLAMA_DEFAULTS = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def clip_tensors(prefix, hidden, intermediate, layers, image, patch):
    """(name, shape) of a CLIPVisionModel's vision_model, in module order (pre_layrnorm sic)."""
    h, i, patches = hidden, intermediate, (image // patch) ** 2
    yield prefix + "embeddings.class_embedding", (h,)
    yield prefix + "embeddings.patch_embedding.weight", (h, 3, patch, patch)  # conv, no bias
    yield prefix + "embeddings.position_embedding.weight", (patches + 1, h)
    yield prefix + "pre_layrnorm.weight", (h,)
    yield prefix + "pre_layrnorm.bias", (h,)
    for l in range(layers):
        p = f"{prefix}encoder.layers.{l}."
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            yield p + f"self_attn.{proj}.weight", (h, h)
            yield p + f"self_attn.{proj}.bias", (h,)
        yield p + "layer_norm1.weight", (h,)
        yield p + "layer_norm1.bias", (h,)
        yield p + "mlp.fc1.weight", (i, h)
        yield p + "mlp.fc1.bias", (i,)
        yield p + "mlp.fc2.weight", (h, i)
        yield p + "mlp.fc2.bias", (h,)
        yield p + "layer_norm2.weight", (h,)
        yield p + "layer_norm2.bias", (h,)
    yield prefix + "post_layernorm.weight", (h,)
    yield prefix + "post_layernorm.bias", (h,)


def projector_tensors(prefix, vision_hidden, hidden):
    """(name, shape) of llava-hf's mlp2x_gelu projector: Linear(Hv, H), GELU, Linear(H, H)."""
    yield prefix + "linear_1.weight", (hidden, vision_hidden)
    yield prefix + "linear_1.bias", (hidden,)
    yield prefix + "linear_2.weight", (hidden, hidden)
    yield prefix + "linear_2.bias", (hidden,)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def tokenizer_files(out, tokenizer):
    """tokenizer.model plus the JSON files llava-hf ships next to it (not read by align2)."""
    shutil.copyfile(tokenizer, os.path.join(out, "tokenizer.model"))
    token = lambda content: {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
                             "single_word": False}
    special = {"bos_token": token("<s>"), "eos_token": token("</s>"), "pad_token": token("<pad>"),
               "unk_token": token("<unk>")}
    write_json(os.path.join(out, "added_tokens.json"), {"<image>": IMAGE_TOKEN_INDEX, "<pad>": PAD_TOKEN_ID})
    write_json(os.path.join(out, "special_tokens_map.json"), special)
    decoder = {str(i): dict(token(t), special=True) for i, t in
               [(0, "<unk>"), (1, "<s>"), (2, "</s>"), (IMAGE_TOKEN_INDEX, "<image>"), (PAD_TOKEN_ID, "<pad>")]}
    write_json(os.path.join(out, "tokenizer_config.json"), {
        "add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": decoder, "bos_token": "<s>",
        "clean_up_tokenization_spaces": False, "eos_token": "</s>", "legacy": False,
        "model_max_length": 1000000000000000019884624838656, "pad_token": "<pad>", "padding_side": "left",
        "processor_class": "LlavaProcessor", "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>", "use_default_system_prompt": False})


def write_base(a):
    if a.hidden % a.heads or (a.hidden // a.heads) % 2:
        sys.exit(f"--heads {a.heads} must divide --hidden {a.hidden} into even head sizes (RoPE)")
    if a.vision_hidden % a.vision_heads or a.image % a.patch:
        sys.exit("--vision-heads must divide --vision-hidden and --patch must divide --image")
    if a.vocab <= PAD_TOKEN_ID:
        sys.exit(f"--vocab {a.vocab} must hold llava-hf's <image> {IMAGE_TOKEN_INDEX} and <pad> {PAD_TOKEN_ID}")
    os.makedirs(a.out, exist_ok=True)
    items = [*clip_tensors("vision_tower.vision_model.", a.vision_hidden, a.vision_intermediate, a.vision_layers,
                           a.image, a.patch),
             *projector_tensors("multi_modal_projector.", a.vision_hidden, a.hidden),
             *llama_tensors(a.hidden, a.intermediate, a.layers, a.vocab, prefix="language_model.model.",
                            lm_head="language_model.lm_head.weight")]
    count, shards, total = write_checkpoint(a.out, items, np.random.default_rng(a.seed), a.shard_gib)

    text = {"_name_or_path": "lmsys/vicuna-7b-v1.5", "architectures": ["LlamaForCausalLM"],
            "max_position_embeddings": a.max_positions, "model_type": "llama", "rms_norm_eps": 1e-05,
            "torch_dtype": "float16", "vocab_size": a.vocab}
    sizes = {"hidden_size": a.hidden, "intermediate_size": a.intermediate, "num_hidden_layers": a.layers,
             "num_attention_heads": a.heads}
    text.update({k: v for k, v in sizes.items() if v != LLAMA_DEFAULTS[k]})
    vision = {"hidden_size": a.vision_hidden, "image_size": a.image, "intermediate_size": a.vision_intermediate,
              "model_type": "clip_vision_model", "num_attention_heads": a.vision_heads,
              "num_hidden_layers": a.vision_layers, "patch_size": a.patch, "projection_dim": 768, "vocab_size": 32000}
    write_json(os.path.join(a.out, "config.json"), {
        "architectures": ["LlavaForConditionalGeneration"], "ignore_index": -100,
        "image_token_index": IMAGE_TOKEN_INDEX, "model_type": "llava", "pad_token_id": PAD_TOKEN_ID,
        "projector_hidden_act": "gelu", "text_config": text, "tie_word_embeddings": False, "torch_dtype": "float16",
        "transformers_version": "4.36.0.dev0", "vision_config": vision, "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default", "vocab_size": a.vocab})
    write_json(os.path.join(a.out, "preprocessor_config.json"), {
        "crop_size": {"height": a.image, "width": a.image}, "do_center_crop": True, "do_convert_rgb": True,
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": CLIP_MEAN,
        "image_processor_type": "CLIPImageProcessor", "image_std": CLIP_STD, "processor_class": "LlavaProcessor",
        "resample": 3, "rescale_factor": 1 / 255, "size": {"shortest_edge": a.image}})
    write_json(os.path.join(a.out, "generation_config.json"), {
        "_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": PAD_TOKEN_ID,
        "transformers_version": "4.36.0.dev0"})
    tokenizer_files(a.out, a.tokenizer)
    print(f"{a.out}: {count} tensors in {shards} shards, {total / 2 / 1e9:.3f} G parameters, "
          f"{total / (1 << 30):.2f} GiB F16")


def base_shapes(base):
    """The LLM and projector shapes and tensor-name prefixes of a llava-hf folder."""
    with open(os.path.join(base, "config.json")) as f:
        config = json.load(f)
    if config.get("architectures", [None])[0] != "LlavaForConditionalGeneration":
        sys.exit(f"{base}: not a llava-hf (LlavaForConditionalGeneration) folder")
    text, vision = config.get("text_config") or {}, config.get("vision_config") or {}
    get = lambda k: text.get(k, LLAMA_DEFAULTS[k])
    hidden, heads = get("hidden_size"), get("num_attention_heads")
    kv_heads = text.get("num_key_value_heads") or heads
    head_dim = text.get("head_dim") or hidden // heads
    with open(os.path.join(base, "model.safetensors.index.json")) as f:
        names = json.load(f)["weight_map"]
    if "language_model.model.embed_tokens.weight" in names:  # transformers 4.x
        llm, projector = "language_model.model.", "multi_modal_projector."
    elif "model.language_model.embed_tokens.weight" in names:  # transformers 5.x
        llm, projector = "model.language_model.", "model.multi_modal_projector."
    else:
        sys.exit(f"{base}: the index names neither 4.x nor 5.x llava-hf LLM tensors")
    return dict(hidden=hidden, intermediate=get("intermediate_size"), layers=get("num_hidden_layers"),
                kv_hidden=kv_heads * head_dim, llm_prefix=llm, projector_prefix=projector,
                vision_hidden=vision.get("hidden_size", 1024))  # 1024: LlavaConfig's CLIP-L default


def write_reward_model(a):
    s = base_shapes(a.base)
    os.makedirs(a.out, exist_ok=True)
    seed = a.seed if a.seed is not None else {"question": 1, "answer": 2}[a.kind]
    rng = np.random.default_rng(seed)

    # LoRA factors of the seven projections of every layer: A [r, in], B [out, r]. The LLM's
    # linear shapes come from llama_tensors (vocab 1: embeddings and head are not adapted).
    lora = []
    for name, (out, inp) in (t for t in llama_tensors(s["hidden"], s["intermediate"], s["layers"], 1,
                                                       prefix=s["llm_prefix"], kv_hidden=s["kv_hidden"])
                             if t[0].endswith(tuple(f"{m}.weight" for m in LORA_TARGETS))):
        module = "base_model.model." + name[:-len(".weight")]
        lora += [(module + ".lora_A.weight", (a.lora_r, inp)), (module + ".lora_B.weight", (out, a.lora_r))]
    # safetensors' save_file stores tensors sorted by name; the head is PEFT's modules_to_save copy.
    items = sorted(lora + [("base_model.model.score.weight", (1, s["hidden"]))])
    write_shard(os.path.join(a.out, "adapter_model.safetensors"), items, rng, a.dtype)
    write_shard(os.path.join(a.out, "projector.safetensors"),
                list(projector_tensors(s["projector_prefix"], s["vision_hidden"], s["hidden"])), rng, a.dtype)

    write_json(os.path.join(a.out, "adapter_config.json"), {  # PEFT 0.12's LoraConfig fields
        "alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": os.path.abspath(a.base),
        "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
        "layer_replication": None, "layers_pattern": None, "layers_to_transform": None, "loftq_config": {},
        "lora_alpha": a.lora_alpha, "lora_dropout": 0.05, "megatron_config": None, "megatron_core": "megatron.core",
        "modules_to_save": ["classifier", "score"], "peft_type": "LORA", "r": a.lora_r, "rank_pattern": {},
        "revision": None, "target_modules": list(LORA_TARGETS), "task_type": "SEQ_CLS", "use_dora": False,
        "use_rslora": False})
    write_json(os.path.join(a.out, "reward_config.json"), {
        "format": "align2-reward-model", "version": 1, "kind": a.kind,
        "base_model": os.path.relpath(os.path.abspath(a.base), os.path.abspath(a.out)), "max_length": 2048})
    params = sum(int(np.prod(shape)) for _, shape in lora)
    print(f"{a.out}: {a.kind} reward model, LoRA r {a.lora_r} on {len(lora) // 2} linear layers "
          f"({params:,} parameters, {a.dtype}), score head and projector, seed {seed}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("base", help="a random llava-hf LLaVA-1.5 folder")
    b.add_argument("out")
    b.add_argument("--tokenizer", required=True, help="a LLaMA SentencePiece tokenizer.model to copy")
    b.add_argument("--hidden", type=int, default=4096, help="LLM hidden size")
    b.add_argument("--intermediate", type=int, default=11008, help="LLM MLP size")
    b.add_argument("--layers", type=int, default=32, help="LLM layers")
    b.add_argument("--heads", type=int, default=32, help="LLM attention heads")
    b.add_argument("--vocab", type=int, default=32064, help="LLM vocabulary (embedding and lm_head rows)")
    b.add_argument("--max-positions", type=int, default=4096, help="LLM context, positions")
    b.add_argument("--vision-hidden", type=int, default=1024, help="CLIP hidden size")
    b.add_argument("--vision-intermediate", type=int, default=4096, help="CLIP MLP size")
    b.add_argument("--vision-layers", type=int, default=24, help="CLIP layers")
    b.add_argument("--vision-heads", type=int, default=16, help="CLIP attention heads")
    b.add_argument("--patch", type=int, default=14, help="CLIP patch size, pixels")
    b.add_argument("--image", type=int, default=336, help="CLIP input size, pixels")
    b.add_argument("--shard-gib", type=float, default=5.0, help="shard size bound, GiB")
    b.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("reward-model", help="a LoRA reward-model folder on a llava-hf base")
    r.add_argument("out")
    r.add_argument("--base", required=True, help="the llava-hf folder (written by `base`)")
    r.add_argument("--kind", required=True, choices=["question", "answer"])
    r.add_argument("--lora-r", type=int, default=128)
    r.add_argument("--lora-alpha", type=int, default=256)
    r.add_argument("--dtype", default="BF16", choices=["BF16", "F16", "F32"], help="adapter and projector dtype")
    r.add_argument("--seed", type=int, default=None, help="default 1 (question), 2 (answer)")
    a = ap.parse_args()
    write_base(a) if a.command == "base" else write_reward_model(a)


if __name__ == "__main__":
    main()
