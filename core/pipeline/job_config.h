// The job config (JSON). Every key is documented in docs/running.md with its default.
// Unknown keys are an error naming the key. `--set key=value` overrides any key
// (dotted keys reach into objects); the value is read as JSON when it parses as JSON,
// else as a string. Relative paths in the file are relative to the file's folder;
// relative paths given with --set are relative to the current folder.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/data/corpus_index.h"
#include "core/rewrite/rewrite_prompt.h"  // RewriteLimits
#include "distributed/launch.h"  // DeviceRequest

namespace align2 {

// The config's keys grouped by concern: each part of the pipeline receives only its own.
// The member initialisers are the keys' defaults (job_config.cc builds its key table from a
// default JobConfig); docs/running.md documents each key.

// What is read: pool files and how records are validated (core/data).
struct PoolConfig {
  std::vector<PoolFile> files;     // `pools`, in order; subset from `subsets` or the pool entry; with
                                   // neither (nor subset_field) each file is its own subset, its file name
  std::string image_root;          // "" = text-only checks (no image files looked at)
  std::string subset_field;        // record field naming the subset ("" = none)
  std::uint64_t max_record_bytes = 16u << 20;
  std::uint64_t image_cost = 576;  // tokens an image adds, for shard balancing
};

// Stages 1 and 2: the cascade's fractions and how scoring calls are batched and cached.
struct SelectionConfig {
  double alpha = 0.30;             // stage 1 keeps floor(alpha * N) per subset
  double beta = 0.30;              // stage 2 keeps floor(beta * N1) per subset
  bool one_per_image = true;       // the authors' rule: one sample per image per subset
  std::uint64_t batch_size = 8;    // samples per scorer call, at most
  std::uint64_t batch_tokens = 8192;  // estimated tokens per scorer call, at most (0 = no bound)
  std::string score_cache;         // folder of the score cache (core/store/score_cache.h); "" = none
};

// The reward models and how the engine runs them.
struct ModelsConfig {
  std::string question_model;      // question reward-model folder (align2 curate)
  std::string answer_model;        // answer reward-model folder (align2 curate)
  std::string dtype = "auto";      // engine run dtype: auto (bf16 on a GPU, f32 on the CPU), f32 or bf16
  DeviceRequest device = DeviceRequest::automatic;  // `device`: auto, cuda or cpu (docs/gpu.md)
  std::uint64_t score_batch = 0;   // sequences per reward-model forward, in fixed groups; 0 = 1 on the
                                   // CPU, 8 on a GPU (enters the scores' fingerprint)
  std::string image_aspect;        // reward models' image preprocessing: "" = each model's own, "pad", "square"
};

// Stage 3, LLM characteristic alignment (docs/rewrite.md): the `rewrite*` and `review*` keys.
struct RewriteConfig {
  bool enabled = true;                   // `rewrite`: run stage 3
  std::string model;                     // `rewrite_model`: LLaVA or LLaMA folder; "" = the question model's base
  std::string chat_template = "vicuna_v1";  // `rewrite_template`: chat template wrapping the instructions
  std::string rewrite_prompt;            // rewrite template file; "" = the shipped prompts/rewrite.txt
  std::string review_prompt;             // review template file; "" = the shipped prompts/review.txt
  std::uint64_t max_new_tokens = 512;    // `rewrite_max_new_tokens`
  double temperature = 0.0;              // `rewrite_temperature`: 0 = greedy
  double top_p = 1.0;                    // `rewrite_top_p`
  double review_threshold = 0.5;         // keep a rewrite when P(rewrite better) >= this
  std::vector<std::string> review_labels = {"A", "B"};
  RewriteLimits limits;                  // `rewrite_min_ratio`, `rewrite_max_ratio`: rewritten /
                                         // original length bounds (code points)
  std::uint64_t batch = 8;               // `rewrite_batch`: samples per model call, fixed groups (enters the fingerprint)
};

// Where and how the run goes; none of it changes results.
struct RunConfig {
  std::string output_dir = "align2-out";
  std::uint64_t threads = 0;             // CPU threads per rank (0 = all cores / ranks on the node)
  std::uint64_t chunk_records = 256;     // items per committed chunk (the unit of resume)
  std::uint64_t progress_seconds = 30;   // seconds between progress lines when stderr is not a TTY (0 = none)
};

struct JobConfig {
  PoolConfig pool;
  SelectionConfig selection;
  ModelsConfig models;
  RewriteConfig rewrite;
  RunConfig run;

  nlohmann::json effective;        // the whole config after defaults and overrides
  std::string fingerprint;         // 64 hex chars over the keys that change results
};

// Reads `path`, applies `overrides` ("key=value"), fills defaults, checks every key.
// Throws std::runtime_error naming the file and key on any problem.
JobConfig load_job_config(const std::string& path, const std::vector<std::string>& overrides);

// The config file's JSON, unparsed as a config (callers that adjust it before parsing), and
// the folder its relative paths resolve against. Throw std::runtime_error naming the file.
nlohmann::json read_job_config_json(const std::string& path);
std::string job_config_dir(const std::string& path);

// Same from JSON already in memory; relative paths resolve against `base_dir`.
JobConfig parse_job_config(nlohmann::json config, const std::string& base_dir,
                           const std::vector<std::string>& overrides, const std::string& source_name);

}  // namespace align2
