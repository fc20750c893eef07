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

#include "core/corpus_index.h"

namespace align2 {

struct JobConfig {
  std::vector<PoolFile> pools;   // pool files, in order; subset from `subsets` or the pool entry; with
                                 // neither (nor subset_field) each file is its own subset, its file name
  std::string image_root;        // "" = text-only checks (no image files looked at)
  std::string subset_field;      // record field naming the subset ("" = none)
  std::string output_dir;
  std::uint64_t max_record_bytes = 16u << 20;
  std::uint64_t image_cost = 576;  // tokens an image adds, for shard balancing
  double alpha = 0.30;             // stage 1 keeps floor(alpha * N) per subset
  double beta = 0.30;              // stage 2 keeps floor(beta * N1) per subset
  bool one_per_image = true;       // the authors' rule: one sample per image per subset
  std::uint64_t batch_size = 8;    // samples per scorer call, at most
  std::uint64_t batch_tokens = 8192;  // estimated tokens per scorer call, at most (0 = no bound)
  std::string question_model;      // question reward-model folder (align2 curate)
  std::string answer_model;        // answer reward-model folder (align2 curate)
  std::string dtype = "f32";       // engine run dtype: f32 or bf16
  std::string image_aspect;        // reward models' image preprocessing: "" = each model's own, "pad", "square"
  std::uint64_t threads = 0;       // CPU threads per rank (0 = all cores / ranks on the node)
  std::uint64_t chunk_records = 256;   // items per committed chunk (the unit of resume)
  std::uint64_t progress_seconds = 30; // seconds between progress lines when stderr is not a TTY (0 = none)
  std::string score_cache;         // folder of the score cache (core/score_cache.h); "" = none

  // Stage 3, LLM characteristic alignment (docs/rewrite.md).
  bool rewrite = true;                   // run stage 3
  std::string rewrite_model;             // LLaVA or LLaMA folder; "" = the question model's base model
  std::string rewrite_template = "vicuna_v1";  // chat template wrapping the instructions
  std::string rewrite_prompt;            // rewrite template file; "" = the shipped prompts/rewrite.txt
  std::string review_prompt;             // review template file; "" = the shipped prompts/review.txt
  std::uint64_t rewrite_max_new_tokens = 512;
  double rewrite_temperature = 0.0;      // 0 = greedy
  double rewrite_top_p = 1.0;
  double review_threshold = 0.5;         // keep a rewrite when P(rewrite better) >= this
  std::vector<std::string> review_labels = {"A", "B"};
  double rewrite_min_ratio = 0.3;        // rewritten / original length bounds (code points)
  double rewrite_max_ratio = 3.0;
  std::uint64_t rewrite_batch = 8;       // samples per model call: fixed groups (enters the fingerprint)

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
