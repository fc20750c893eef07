// Reward-model training: Bradley–Terry loss -log σ(s_chosen − s_rejected) on human
// preference pairs (core/reward/preference_pairs.h), LoRA on every linear layer of the LLM, the
// score head trained fully, the projector trainable with its own learning rate, the vision
// tower frozen. AdamW (decoupled weight decay, as torch.optim.AdamW), cosine schedule with
// linear warm-up (as transformers' get_cosine_schedule_with_warmup), gradient accumulation,
// global-norm clipping; the model in float32 or bfloat16, trained weights always float32.
//
// Data parallel: every rank of `comm` takes its share of each optimizer step's pairs
// (position j of the step goes to rank j mod world); gradients and losses are summed with
// Comm::allreduce. Every random draw (pair order per epoch, LoRA dropout masks, initial
// weights) is a function of the seed, the step and the pair's position, so np = 2 with
// batch b equals np = 1 with batch 2b (up to float summation order), and --resume from a
// checkpoint continues exactly as an uninterrupted run.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "core/engine/reward_model.h"
#include "distributed/comm.h"

namespace align2 {

// The defaults are the authors' recipe (docs/reward-models-reference.md §1).
struct RewardTrainOptions {
  RewardKind kind = RewardKind::question;
  std::string base_model;    // LLaVA (or LLaMA) folder
  std::string vision_tower;  // CLIP folder of a liuhaotian base ("" = found as docs/models.md says)
  std::string data;          // preference file (authors' question/answer format or generic pairs JSONL)
  std::string eval;          // optional held-out preference file
  std::string image_root;
  std::string output_dir;
  std::int64_t lora_r = 128;
  double lora_alpha = 256;
  double lora_dropout = 0.05;
  double lr = 2e-5;
  double projector_lr = 2e-5;
  double weight_decay = 0.0;
  double warmup_ratio = 0.03;
  double max_grad_norm = 1.0;
  std::int64_t epochs = 5;
  std::int64_t batch_size = 1;  // pairs per rank per accumulation step
  // Pairs per optimizer step: the accumulation steps are pairs_per_step / (batch_size x ranks),
  // which must be whole. 64 is the authors' (1 per GPU x 16 accumulation steps x 4 GPUs).
  // 0 = take grad_accum as given.
  std::int64_t pairs_per_step = 64;
  std::int64_t grad_accum = 1;  // accumulation steps per optimizer step (when pairs_per_step is 0)
  std::int64_t save_every = 0;  // optimizer steps between checkpoints (0 = none)
  std::int64_t max_length = 2048;
  std::int64_t max_steps = 0;   // stop after this many optimizer steps (0 = all epochs); the learning-rate
                                // schedule still spans all epochs, so a stopped run resumes exactly
  std::uint64_t seed = 0;
  double augment_rate = 0.25;   // corruption negatives (core/reward/preference_pairs.h)
  bool train_projector = true;
  bool bf16 = false;            // run the frozen model in bfloat16 (LoRA, head, projector stay float32)
  bool resume = false;          // continue from the newest checkpoint in output_dir
  int device = -1;              // CUDA device index of this rank, -1 = the CPU
};

struct RewardTrainResult {
  std::int64_t steps = 0;          // optimizer steps taken in all (resumed ones included)
  double last_loss = 0;            // mean loss of the last step
  std::int64_t eval_pairs = 0;
  double eval_accuracy = 0;        // fraction of eval pairs with s_chosen > s_rejected (ties count as wrong)
};

// Collective over `comm`. Writes output_dir (on rank 0): adapter_config.json +
// adapter_model.safetensors (PEFT names), score_head.safetensors, projector.safetensors,
// reward_config.json, train_log.jsonl, eval.json; and checkpoints/step-N/ every save_every
// steps. `log` receives one line per step (rank 0 only; may be empty).
RewardTrainResult train_reward_model(Comm& comm, const RewardTrainOptions& options,
                                     const std::function<void(const std::string&)>& log);

// Pairwise accuracy of a reward-model folder on a preference file (single process).
double evaluate_reward_model(const std::string& model_dir, const std::string& pairs_file, const std::string& image_root,
                             std::int64_t* pairs_evaluated);

}  // namespace align2
