// The table of subcommands: names, options and help texts.
#include "jobs/cli.h"

namespace align2::cli {

int run_inspect(const Args&);
int run_merge(const Args&);
int run_tokenize(const Args&);
int run_prompt(const Args&);
int run_generate(const Args&);
int run_encode_image(const Args&);
int run_score(const Args&);
int run_merge_lora(const Args&);
int run_train_reward(const Args&);
int run_curate(const Args&);
int run_rewrite(const Args&);
int run_preprocess(const Args&);
int run_pairs(const Args&);
int run_make_llava(const Args&);
int run_slurm_script(const Args&);

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"curate", "--config job.json [--set key=value ...] [--force]",
       "run the Align2LLaVA cascade over a pool (alone, or under mpirun / srun)",
       "Every rank indexes its share of the pool (rank 0 joins the parts) and scores its\n"
       "cost-balanced share. Stage 1 keeps the top alpha of each subset by the question reward\n"
       "model (one sample per image), stage 2 re-shards the survivors and keeps the top beta by\n"
       "the mean answer-model score over turns.\n"
       "Stage 3 (rewrite: true, the default) has the inner LLM rewrite every turn of the curated\n"
       "samples and review original against rewrite, keeping the better (docs/rewrite.md).\n"
       "Scores travel between ranks so every rank computes the same thresholds; each rank writes\n"
       "its HDF5 shards and rank 0 merges them into output_dir: curated.json, scores.h5,\n"
       "summary.json and report.html (docs/report.md). Every key of the job config is in\n"
       "docs/running.md; --set overrides any.\n"
       "\n"
       "Work is committed in chunks (chunk_records items) under output_dir/work: rerunning the same\n"
       "command after a kill, a preemption or a crash skips what was committed and ends with the\n"
       "same outputs as an uninterrupted run. An output_dir holding another run (the config, a model\n"
       "or the pool changed) is refused unless --force, which discards that run's work. Rank 0\n"
       "shows each stage's progress on stderr: a bar on a terminal, else a line every\n"
       "progress_seconds.",
       {{"config", "FILE", "the job config (JSON)"},
        {"set", "KEY=VALUE", "override a config key (value read as JSON when it parses)", true},
        {"force", "", "discard the work of another run found in output_dir and start over"}},
       run_curate},
      {"slurm-script", "--config job.json --nodes N --gpus-per-node G [--partition P] [--account A] [--time T] "
                       "[--set key=value ...]",
       "print an sbatch script that runs curate on a Slurm cluster (one rank per GPU)",
       "Writes to stdout a bash script for sbatch: #SBATCH lines for N nodes with G ranks each (one\n"
       "rank per GPU; with --gpus-per-node 0, --ntasks-per-node CPU ranks), --requeue, --open-mode=append\n"
       "and --signal=B:USR1@S, then `srun --mpi=pmix --kill-on-bad-exit=1 BIN curate --config CONFIG\n"
       "[--set ...]`. Every value is quoted for the shell (or for sbatch in #SBATCH lines). The config is\n"
       "loaded with the --set overrides first, so a broken config fails here, not when the job starts;\n"
       "relative paths in --set are relative to --chdir, where the job runs.\n"
       "\n"
       "Resume: curate commits chunks under output_dir/work, so submitting the script again, or Slurm\n"
       "requeueing it (preemption, node failure), resumes. S seconds before the time limit Slurm sends\n"
       "USR1 to the batch shell (B:; without B: only the ranks would get it and nobody would requeue);\n"
       "the script forwards it to srun, which hands it to every rank, and once the step has ended the\n"
       "script runs `scontrol requeue` on its own job, which then resumes. Commented site settings\n"
       "(module load, NCCL_* and OMPI_MCA_* variables) come before the command. See docs/slurm.md.",
       {{"config", "FILE", "the job config (required; made absolute)"},
        {"nodes", "N", "nodes (required)"},
        {"gpus-per-node", "G", "GPUs per node, one rank each (required; 0 = CPU ranks, see --ntasks-per-node)"},
        {"ntasks-per-node", "N", "CPU ranks per node with --gpus-per-node 0 (default 1)"},
        {"cpus-per-task", "N", "CPU cores per rank (default: no line, the site's default)"},
        {"partition", "P", "partition (default: no line, the cluster's default partition)"},
        {"account", "A", "account to charge (default: no line, your default account)"},
        {"time", "T", "time limit, e.g. 12:00:00 or 2-00:00:00 (default: the partition's)"},
        {"job-name", "NAME", "job name (default align2-curate)"},
        {"output", "PATTERN", "log file pattern, appended to across requeues (default %x-%j.out: name-jobid)"},
        {"chdir", "DIR", "working folder of the job (default: the current folder; made absolute)"},
        {"signal-seconds", "S", "USR1 this long before the time limit, then requeue (default 300; 0 = none)"},
        {"set", "KEY=VALUE", "passed to curate as --set KEY=VALUE (a config override)", true},
        {"sbatch", "OPTION", "one more #SBATCH line, e.g. --sbatch=--mem=0 or --sbatch=--constraint=a100", true},
        {"bin", "PATH", "the align2 binary the job runs (default: this binary's absolute path)"}},
       run_slurm_script},
      {"rewrite", "--config job.json --input POOL [--input POOL ...] --output-dir DIR [--set key=value ...] [--force]",
       "rewrite and review every valid record of a pool with the inner LLM (stage 3 alone)",
       "Runs curate's stage 3, LLM characteristic alignment (docs/rewrite.md), over every valid\n"
       "record of POOL, with no reward models and no selection: the model rewrites each (question,\n"
       "answer) turn in its own words, reviews original against rewrite in both orders and keeps\n"
       "the better one. Alone or under mpirun / srun, like curate: the ranks index the pool, every\n"
       "rank rewrites its cost-balanced share in fixed groups of rewrite_batch consecutive records,\n"
       "and rank 0 merges the shards into DIR:\n"
       "  curated.json  every valid record in pool order, each with its kept rewrites applied\n"
       "  scores.h5     every input record (invalid ones with their status and reason), with the\n"
       "                rewrites, the model's replies, fallback reasons and review probabilities\n"
       "  summary.json  counts; stages.rewrite as in curate (attempted = the valid records)\n"
       "  report.html   the same page as curate's (docs/report.md)\n"
       "\n"
       "The job config is curate's (docs/running.md): its rewrite keys (rewrite_model,\n"
       "rewrite_template, rewrite_prompt, review_prompt, rewrite_max_new_tokens,\n"
       "rewrite_temperature, rewrite_top_p, review_threshold, review_labels, rewrite_min_ratio,\n"
       "rewrite_max_ratio, rewrite_batch) and dtype, device, threads, image_root, subsets, subset_field,\n"
       "max_record_bytes, chunk_records, progress_seconds. rewrite_model names the LLaVA or LLaMA\n"
       "folder that rewrites; when it is empty, the base model of question_model's reward model is\n"
       "used, as curate does. --input replaces the config's pools (repeat it for several files;\n"
       "entries of subsets that name no --input file are ignored) and --output-dir its output_dir,\n"
       "both relative to the current folder; --set overrides any key. The selection keys (alpha,\n"
       "beta, answer_model, ...) and rewrite are not used, but still enter the run's fingerprint.\n"
       "\n"
       "Work is committed in chunks under DIR/work: rerunning the same command after a kill resumes\n"
       "and ends with the outputs of an uninterrupted run. curated.json and summary.json (timings\n"
       "aside) are byte-identical for any number of ranks and any batch_size. A DIR holding another\n"
       "run (another config, model or pool, or a curate run) is refused unless --force.",
       {{"config", "FILE", "the job config (JSON) (required)"},
        {"input", "POOL", "a LLaVA pool file (JSON array or JSONL), in place of the config's pools (required)", true},
        {"output-dir", "DIR", "where the outputs go, in place of the config's output_dir (required)"},
        {"set", "KEY=VALUE", "override a config key (value read as JSON when it parses)", true},
        {"force", "", "discard the work of another run found in DIR and start over"}},
       run_rewrite},
      {"inspect", "[--image-root DIR] [--json] [options] POOL...",
       "count records per subset and status, and show what is wrong with the invalid ones",
       "Reads LLaVA pool files (JSON arrays or JSONL, told apart by their first byte) in one\n"
       "streaming pass and reports: records per subset and per status (valid, invalid,\n"
       "missing_image, duplicate), reason codes, a histogram of question-answer pairs per\n"
       "record, text lengths, the first invalid records with their reasons, and missing images.\n"
       "A JSON array with a syntax error is refused as a whole with its byte offset, line and\n"
       "column (exit 1); in JSONL a bad line is one invalid record.",
       {{"image-root", "DIR", "check that every record's image exists under DIR (status missing_image)"},
        {"json", "", "print one JSON object: records, valid, by_status, by_subset, turns, ..."},
        {"subset-field", "NAME", "take each record's subset from its field NAME (e.g. type)"},
        {"subset", "FILE=SUBSET", "records of pool file FILE belong to SUBSET", true},
        {"max-examples", "N", "invalid records and missing images listed (default 20)"},
        {"max-record-bytes", "N", "records longer than N bytes are invalid (default 16777216)"}},
       run_inspect},
      {"merge", "--output-dir DIR [SHARD...]",
       "merge stage shards into curated.json, scores.h5, summary.json and report.html",
       "Reads the per-rank HDF5 shards of a run (default: every shard under DIR/shards),\n"
       "checks that every input record appears exactly once and that each stage holds exactly\n"
       "the records the stage before kept, orders the kept records globally (score descending,\n"
       "then key), and writes DIR/curated.json (LLaVA JSON in conversation form), DIR/scores.h5\n"
       "(every input record with all columns), DIR/summary.json and DIR/report.html.",
       {{"output-dir", "DIR", "where the outputs go (required)"}},
       run_merge},
      {"preprocess", "--out FILE.safetensors [--aspect pad|square] [--size N] IMAGE...",
       "turn images into CLIP pixel_values the way LLaVA-1.5 does",
       "Decodes each IMAGE (JPEG, PNG, BMP, GIF), converts it to RGB as PIL's convert('RGB')\n"
       "does (alpha dropped, no EXIF rotation), pads it to a square with the CLIP mean colour\n"
       "(--aspect pad, LLaVA-1.5's image_aspect_ratio) or not (--aspect square, plain CLIP),\n"
       "resizes the shortest side to N with PIL's bicubic filter, centre-crops N x N and\n"
       "normalises with CLIP's mean and std. Writes one float32 tensor pixel_values\n"
       "[images, 3, N, N] in the order given. A file that cannot be used (unsupported format,\n"
       "CMYK JPEG, truncated, above the pixel bound) ends the command with exit 1, naming the\n"
       "file and the reason.",
       {{"out", "FILE", "the .safetensors file to write (required)"},
        {"aspect", "MODE", "pad (default) or square"},
        {"size", "N", "shortest side after resizing and crop side, pixels (default 336)"},
        {"max-pixels", "N", "refuse images whose header announces more pixels (default 64000000)"}},
       run_preprocess},
      {"generate", "--model DIR --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-p P] [--seed S] "
                   "[--logits-out FILE.safetensors]",
       "continue a text prompt with a LLaMA (or the LLM of a LLaVA folder)",
       "Loads the model folder (config.json, safetensors weights, tokenizer.model), prepends BOS\n"
       "to the prompt and generates with the KV cache: greedy by default, or temperature / top-p\n"
       "sampling whose draws depend only on --seed. Stops at EOS or --max-new-tokens and prints\n"
       "the continuation. --logits-out writes float32 `logits` [fed positions, vocab] for every\n"
       "position fed to the model, BOS included.",
       {{"model", "DIR", "model folder (LlamaForCausalLM, or a LLaVA folder: its LLM is used)"},
        {"prompt", "TEXT", "the prompt (BOS is prepended)"},
        {"max-new-tokens", "N", "most tokens to generate (default 128)"},
        {"temperature", "T", "0 = greedy (default); > 0 samples from softmax(logits / T)"},
        {"top-p", "P", "nucleus sampling mass, in (0, 1] (default 1)"},
        {"seed", "S", "seed of the sampling stream (default 0)"},
        {"logits-out", "FILE", "write the logits of every fed position to a .safetensors file"},
        {"device", "auto|cuda|cpu", "where the model runs (default auto: a GPU when libtorch has CUDA and one is\n"
                                    "visible, one per rank by local rank; docs/gpu.md: not yet verified on GPU)"},
        {"dtype", "auto|f32|bf16|f16", "run dtype (default auto: bf16 on a GPU, f32 on the CPU; f16 on a GPU only)"},
        {"threads", "N", "CPU threads (default: all cores)"}},
       run_generate},
      {"tokenize", "--tokenizer PATH [--no-bos] --input FILE.jsonl",
       "token ids of text with a LLaMA SentencePiece tokenizer.model",
       "Reads JSONL lines {\"text\": \"...\"} and writes one line {\"ids\": [...]} per input line\n"
       "(blank lines are skipped), with the native SentencePiece BPE tokenizer: the same ids\n"
       "as libsentencepiece. The BOS id comes first unless --no-bos. A line that is not a JSON\n"
       "object with a string \"text\" stops the command with the file and line number (exit 1).",
       {{"tokenizer", "PATH", "sentencepiece tokenizer.model (BPE, e.g. LLaMA's) (required)"},
        {"no-bos", "", "do not put the BOS id first"},
        {"input", "FILE.jsonl", "lines {\"text\": ...} (required)"}},
       run_tokenize},
      {"prompt", "--template vicuna_v1|llava_v1|plain [--inference] --input POOL",
       "render every record of a pool with a LLaVA conversation template",
       "Reads a LLaVA pool (JSON array or JSONL) and writes one line per record:\n"
       "{\"id\": ..., \"prompt\": \"...\"}, rendered as LLaVA's conversation.py does, with <image>\n"
       "moved to the front of the first question as \"<image>\\n\". By default the training form\n"
       "(every answer, each followed by </s>); with --inference the prompt that answers the last\n"
       "question (the turns before it and the last question, ending in \"ASSISTANT:\"): a record\n"
       "may then end with its question and no answer (an evaluation set's), and a last answer,\n"
       "if any, is left out.\n"
       "A record that is not valid gives {\"id\", \"status\", \"reason\", \"message\"} instead; one the\n"
       "template cannot render (plain takes one turn with an image) gives status\n"
       "\"unrenderable\", reason \"template\".",
       {{"template", "NAME", "vicuna_v1, llava_v1 or plain (required)"},
        {"inference", "", "the prompt for generating the last answer instead of the training form"},
        {"input", "POOL", "a LLaVA .json array or .jsonl file (required)"}},
       run_prompt},
      {"encode-image", "--model DIR [--aspect pad|square] --out FILE.safetensors IMAGE...",
       "run images through the vision tower (and a LLaVA model's projector)",
       "Preprocesses the images as LLaVA-1.5 does (see `align2 preprocess`), runs the CLIP vision\n"
       "tower and writes float32 `vision_hidden` [N, patches, vision hidden] (the selected layer,\n"
       "CLS dropped) and, when DIR is a LLaVA model, `image_features` [N, patches, LLM hidden]\n"
       "after the projector. DIR may be a LLaVA folder (either layout), a CLIPModel folder or a\n"
       "CLIPVisionModel folder. The LLM weights are not loaded.",
       {{"model", "DIR", "LLaVA, CLIPModel or CLIPVisionModel folder"},
        {"aspect", "pad|square", "pad to a square with the mean colour, or plain CLIP (default: the model's)"},
        {"out", "FILE", "the .safetensors file to write"},
        {"vision-tower", "DIR", "the CLIP folder of a liuhaotian LLaVA model (default: found as docs/models.md says)"},
        {"device", "auto|cuda|cpu", "where the model runs (default auto: a GPU when libtorch has CUDA and one is\n"
                                    "visible, one per rank by local rank; docs/gpu.md: not yet verified on GPU)"},
        {"dtype", "auto|f32|bf16|f16", "run dtype (default auto: bf16 on a GPU, f32 on the CPU; f16 on a GPU only)"},
        {"threads", "N", "CPU threads (default: all cores)"}},
       run_encode_image},
      {"pairs", "--kind question|answer --input FILE [--augment-rate R] [--seed S] [--out PAIRS.jsonl]\n"
                "       align2 pairs --from-pool --kind question|answer --input POOL [--negatives LIST] [--holdout R "
                "--holdout-out FILE] [--per-candidate N] [--seed S] [--out PAIRS.jsonl]",
       "build reward-model preference pairs from human rankings (or from a pool)",
       "Reads human preference annotations and writes one JSON line per (chosen, rejected) pair:\n"
       "group_id, record, turn, image, question (answer kind), chosen_text, rejected_text (the\n"
       "texts the reward model reads), chosen_score, rejected_score, augmented. The last line on\n"
       "stdout is {\"groups\": G, \"pairs\": P, \"ties_dropped\": T}; with --out it is the only one.\n"
       "\n"
       "Input: a JSON array or JSONL (told apart by the first byte) of\n"
       "  question groups  {\"id\", \"image\", \"questions\": [[q, ...] x K], \"score\": [K numbers]}\n"
       "                   (Align2LLaVA's question_*.json; a candidate is a set of questions)\n"
       "  answer groups    LLaVA records whose gpt turns hold \"value\": [K answers] and\n"
       "                   \"score\": [K numbers] (Align2LLaVA's answer_*.json); one group per turn\n"
       "  pairs            {\"image\", \"chosen\", \"rejected\"} (+ \"question\" for --kind answer;\n"
       "                   for --kind question chosen/rejected are question sets), optional \"id\",\n"
       "                   \"chosen_score\", \"rejected_score\"; passed through after validation.\n"
       "Pairs: every ordered pair of a group's candidates whose human score is strictly higher;\n"
       "equal scores are dropped (T counts the unordered tied pairs; G counts groups).\n"
       "Texts: question RM \"<image>\\n\" + the questions joined by \"\\n\"; answer RM\n"
       "\"<image>\\nQuestion: q\\nAnswer: a\" (<image> tags removed, whitespace stripped).\n"
       "--augment-rate R adds, for each candidate with probability R, the pair (candidate,\n"
       "corrupted copy): words shuffled or dropped (question sets also: questions duplicated),\n"
       "drawn from a portable splitmix64 stream fixed by --seed and the candidate's position.\n"
       "A bad record stops the command (exit 1) naming the file, record index, id and reason.\n"
       "\n"
       "--from-pool: POOL is a LLaVA pool (JSON array or JSONL, validated as `align2 inspect`\n"
       "does) without human scores, and every negative is made from the pool: for --kind question\n"
       "N pairs per valid record, chosen = its question set, rejected = a negative of it; for\n"
       "--kind answer N pairs per (question, answer) turn, chosen = the real answer, rejected = a\n"
       "negative answer to the same question (N = --per-candidate, default 1; the first pair draws\n"
       "its negative, the next ones take the following kinds in turn). Negatives (--negatives, a\n"
       "comma list, default all that apply): shuffle (words reordered), drop (some words kept),\n"
       "duplicate (question sets: questions repeated), other_record (the question set, or a random\n"
       "answer, of another record of the same split). --holdout R sends the pairs of round(R x N)\n"
       "of the N valid records (a seeded choice) to --holdout-out, for train-reward --eval;\n"
       "other_record negatives never cross the split. Lines are the generic pair form train-reward\n"
       "reads ({\"id\", \"image\", \"question\" (answer kind), \"chosen\", \"rejected\", \"negative\",\n"
       "\"record\", ...}); everything depends only on the pool and --seed. The last stdout line\n"
       "counts records, pairs and negatives. These pairs teach a reward model to tell real data\n"
       "from damaged data: a demo and smoke test, not the human preferences the paper trains on.",
       {{"kind", "question|answer", "which reward model the pairs train (required)"},
        {"input", "FILE", "annotations or pairs (or, with --from-pool, a LLaVA pool), JSON array or JSONL (required)"},
        {"augment-rate", "R", "probability in [0, 1] of a corruption pair per candidate (default 0)"},
        {"seed", "S", "seed of the augmentation (or --from-pool) draws, unsigned 64-bit (default 0)"},
        {"out", "FILE", "write the pair lines to FILE instead of stdout"},
        {"from-pool", "", "build pairs from a LLaVA pool with negatives made from it"},
        {"negatives", "LIST", "--from-pool: allowed negatives, of shuffle,drop,duplicate,other_record (default all that apply)"},
        {"per-candidate", "N", "--from-pool: pairs per record (question) or turn (answer), 1 to 64 (default 1)"},
        {"holdout", "R", "--from-pool: share in [0, 0.99] of the records held out (default 0)"},
        {"holdout-out", "FILE", "--from-pool: where the held-out pairs go (required with --holdout)"},
        {"image-root", "DIR", "--from-pool: skip records whose image is not under DIR"}},
       run_pairs},
      {"make-llava", "--llm DIR --output-dir DIR [--vision-layers N] [--vision-hidden N] [--image-size N] "
                     "[--patch-size N] [--seed S]",
       "build a LLaVA folder: a LLaMA plus a new, seeded vision tower and projector",
       "Writes a LLaVA-1.5 model folder in the liuhaotian layout (docs/models.md) from a trained\n"
       "LlamaForCausalLM folder: the LLaMA's weights (bytes unchanged), config and tokenizer.model,\n"
       "an mlp2x_gelu projector (model.mm_projector.*) and a CLIP ViT vision tower in\n"
       "DIR/clip-vision (CLIPVisionModel, quick_gelu; mm_vision_tower names it, found inside the\n"
       "folder). The vision tower and the projector are initialised from --seed (transformers' CLIP\n"
       "initialisation and torch.nn.Linear's, with uniform draws of the same spread from portable\n"
       "splitmix64 streams): the same LLaMA and options give the same bytes on every machine. They\n"
       "are NOT trained: the folder is a starting point for training (e.g. train-reward, which\n"
       "trains the projector), or a small model for demos and tests, such as the demo's LLaVA around\n"
       "Karpathy's stories260K. An image takes (image size / patch size)^2 positions of the LLaMA's\n"
       "sequence; more than half of its max_position_embeddings is refused. --max-positions lets\n"
       "prompts longer than the LLaMA's training length run (the demo's rewrite stage needs about\n"
       "1,000 positions; stories260K was trained on 512). The LLaMA's weights are\n"
       "held in memory once while writing. DIR must be new or empty.",
       {{"llm", "DIR", "LlamaForCausalLM folder: config.json, safetensors weights, tokenizer.model (required)"},
        {"output-dir", "DIR", "the LLaVA folder to write, new or empty (required)"},
        {"vision-layers", "N", "CLIP encoder layers (default 2)"},
        {"vision-hidden", "N", "CLIP hidden size (default 64)"},
        {"vision-intermediate", "N", "CLIP MLP size (default 4 x hidden)"},
        {"vision-heads", "N", "CLIP attention heads, dividing the hidden size (default 4)"},
        {"image-size", "N", "square input side in pixels (default 224)"},
        {"patch-size", "N", "patch side in pixels, dividing the image size (default 32: 49 image tokens)"},
        {"seed", "S", "seed of the initial weights, unsigned 64-bit (default 0)"},
        {"max-positions", "N", "the LLaVA's max_position_embeddings (default: the LLaMA's). RoPE runs at any\n"
                               "position, but a LLaMA never saw positions past its training length"}},
       run_make_llava},
      {"score", "--kind question|answer --model DIR --input POOL --image-root DIR --output FILE.h5 [--image-aspect pad|square]",
       "score every record of a pool with a reward model",
       "Runs the question reward model f(I, Q) (one score per record, over all its questions) or the\n"
       "answer reward model g(I, Q, A) (one score per question-answer turn, and their mean) over\n"
       "every valid record of POOL. Each image is preprocessed and encoded once per record; each\n"
       "text is one forward pass, so scores never depend on other records. The output holds every\n"
       "input record in the HDF5 schema of docs/hdf5-schema.md; records that are not valid, or\n"
       "whose image cannot be used (status invalid, reason bad_image), keep their status and reason.",
       {{"kind", "question|answer", "which reward model (must match the model folder's reward_config.json)"},
        {"model", "DIR", "reward-model folder (docs/reward-models.md)"},
        {"input", "POOL", "LLaVA JSON array or JSONL pool"},
        {"image-root", "DIR", "folder the records' image paths are relative to"},
        {"subset-field", "NAME", "record field naming the subset"},
        {"output", "FILE.h5", "the HDF5 file to write"},
        {"image-aspect", "pad|square", "image preprocessing: pad to a square with the mean colour, or resize and\n"
                                       "centre-crop (default: the model's image_aspect_ratio; the authors' ranking\n"
                                       "scripts used square)"},
        {"device", "auto|cuda|cpu", "where the model runs (default auto: a GPU when libtorch has CUDA and one is\n"
                                    "visible, one per rank by local rank; docs/gpu.md: not yet verified on GPU)"},
        {"dtype", "auto|f32|bf16|f16", "run dtype (default auto: bf16 on a GPU, f32 on the CPU; f16 on a GPU only)"},
        {"threads", "N", "CPU threads (default: all cores)"}},
       run_score},
      {"merge-lora", "--base DIR --adapter DIR --output-dir DIR",
       "merge a reward model's LoRA adapter into its base model",
       "Reads the base model folder and a reward-model folder holding a PEFT LoRA adapter\n"
       "(adapter_config.json + adapter_model.safetensors, and optionally projector.safetensors and\n"
       "score_head.safetensors) and writes DIR as a self-contained reward-model folder: the base's\n"
       "files with W + (lora_alpha / r) * B @ A for every adapted linear layer, in the base's tensor\n"
       "names and dtypes, the score head, and a reward_config.json. Its scores equal the adapter's\n"
       "(exactly for float32 bases; a float16/bfloat16 base rounds the merged weights once).",
       {{"base", "DIR", "the base model folder (LLaVA or LLaMA)"},
        {"adapter", "DIR", "the reward-model folder with the adapter"},
        {"output-dir", "DIR", "a new (or empty) folder for the merged model"},
        {"threads", "N", "CPU threads (default: all cores)"}},
       run_merge_lora},
      {"train-reward", "--kind question|answer --base MODEL_DIR --data FILE [--eval FILE] --image-root DIR --output-dir DIR",
       "train a question or answer reward model on human preference pairs",
       "Bradley-Terry loss -log sigmoid(s_chosen - s_rejected) over every strictly ordered pair of\n"
       "candidates (`align2 pairs` shows them), LoRA on every linear layer of the LLM, the score head\n"
       "trained fully, the projector with its own learning rate, the vision tower frozen. AdamW with\n"
       "a cosine schedule and warm-up, gradient accumulation and clipping, float32. Under mpirun/srun\n"
       "the ranks split each step's pairs and sum gradients. Writes a reward-model folder (PEFT\n"
       "adapter, score head, projector, reward_config.json), train_log.jsonl, and eval.json with the\n"
       "pairwise accuracy on --eval. The defaults are the authors' recipe (5 epochs, 64 pairs per step,\n"
       "LoRA r 128 / alpha 256 / dropout 0.05, lr 2e-5, warm-up 0.03, cosine, augment rate 0.25).\n"
       "See docs/reward-models.md.",
       {{"kind", "question|answer", "which reward model"},
        {"base", "DIR", "base LLaVA (or LLaMA) folder"},
        {"vision-tower", "DIR", "CLIP folder of a liuhaotian base (default: found as docs/models.md says)"},
        {"data", "FILE", "preference file: the authors' question/answer format or generic pairs JSONL"},
        {"eval", "FILE", "held-out preference file for pairwise accuracy"},
        {"image-root", "DIR", "folder the pairs' image paths are relative to"},
        {"output-dir", "DIR", "where the reward model and checkpoints go"},
        {"lora-r", "N", "LoRA rank (default 128)"},
        {"lora-alpha", "A", "LoRA alpha (default 256)"},
        {"lora-dropout", "P", "LoRA dropout (default 0.05)"},
        {"lr", "LR", "learning rate of LoRA and the score head (default 2e-5)"},
        {"projector-lr", "LR", "learning rate of the projector (default: --lr)"},
        {"freeze-projector", "", "do not train the projector"},
        {"weight-decay", "W", "AdamW weight decay (default 0)"},
        {"warmup-ratio", "R", "share of steps with linear warm-up (default 0.03)"},
        {"max-grad-norm", "N", "clip the global gradient norm (default 1; 0 = off)"},
        {"epochs", "N", "passes over the pairs (default 5)"},
        {"batch-size", "N", "pairs per rank per accumulation step (default 1)"},
        {"pairs-per-step", "N", "pairs per optimizer step (default 64); the accumulation steps are\n"
                                "N / (batch size x ranks), which must be whole"},
        {"grad-accum", "N", "accumulation steps per optimizer step, instead of --pairs-per-step"},
        {"save-every", "N", "checkpoint every N optimizer steps (default 0 = never)"},
        {"max-steps", "N", "stop after N optimizer steps (the schedule still spans all epochs)"},
        {"resume", "", "continue from the newest checkpoint in --output-dir"},
        {"max-length", "N", "positions per sequence, image patches included (default 2048)"},
        {"augment-rate", "R", "share of candidates that also get a corrupted-copy negative (default 0.25)"},
        {"seed", "S", "seed of every random draw (default 0)"},
        {"device", "auto|cuda|cpu", "where the model runs (default auto: a GPU when libtorch has CUDA and one is\n"
                                    "visible, one per rank by local rank; docs/gpu.md: not yet verified on GPU)"},
        {"dtype", "auto|f32|bf16", "run dtype of the frozen model (default auto: bf16 on a GPU, f32 on the CPU);\n"
                                   "trained weights stay float32"},
        {"threads", "N", "CPU threads (default: all cores)"}},
       run_train_reward},
  };
  return table;
}

}  // namespace align2::cli
