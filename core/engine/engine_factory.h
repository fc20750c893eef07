// The engine's torch-free face: a job config in, the Scorer and Rewriter the pipeline runs
// out (core/reward/scorer.h, core/rewrite/rewriter.h). `align2 curate` and `align2 rewrite`
// reach the engine through this header only, so they include no ATen; the models behind it
// are the ATen ones of this folder.
#pragma once

#include <memory>

#include "core/pipeline/job_config.h"
#include "core/reward/scorer.h"
#include "core/rewrite/rewriter.h"

namespace align2 {

// Sets the engine's CPU threads for one rank: `configured` when > 0, else this node's cores
// divided by the ranks on it (core/engine/engine_runtime.h). Returns the count.
int configure_engine_threads(unsigned long long configured);

// The device this rank's models run on, for models.device (docs/gpu.md): -1 = the CPU, else
// the CUDA device index (one GPU per rank, by local rank). Call on every rank. Throws
// std::runtime_error when a GPU is required and cannot be had, naming why.
int engine_device_index(const ModelsConfig& models);

// The two reward models of `models` (question_model, answer_model; dtype; image_aspect;
// score_batch) as the cascade's Scorer, on `device` (engine_device_index); images under
// `image_root`. Throws std::runtime_error naming a folder that is not a reward model of the
// right kind, or a model that does not fit the device's memory.
std::unique_ptr<Scorer> make_reward_scorer(const ModelsConfig& models, const std::string& image_root, int device);

// Stage 3's rewriter: the inner LLM (rewrite.model, else the question model's base), its
// settings, the rewrite_prompt / review_prompt templates (the shipped ones when empty), the
// models' dtype, on `device` (engine_device_index), and images under `image_root`.
std::unique_ptr<Rewriter> make_rewriter(const RewriteConfig& rewrite, const ModelsConfig& models,
                                        const std::string& image_root, int device);

}  // namespace align2
