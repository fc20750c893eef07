// `align2 score`: one reward model over a whole pool. Every input record becomes one row
// (docs/hdf5-schema.md): valid records get their question score (question RM) or their
// per-turn answer scores and mean (answer RM); records that are not valid, or whose
// image cannot be used, keep their status, reason and message. Each sample's image is
// decoded, preprocessed and encoded once and reused for all its turns.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/data/corpus_index.h"
#include "core/model/image_preprocess.h"
#include "core/engine/reward_model.h"
#include "core/store/shard_store.h"

namespace align2 {

struct ScoringOptions {
  std::string image_root;  // records' image paths are relative to it
  std::string image_aspect;  // "" = the model's image_aspect_ratio; "pad" or "square" overrides it
  // Called after each record, with (records done, records in all), for progress.
  std::function<void(std::uint64_t, std::uint64_t)> progress;
};

// The preprocessing of a reward model's images: the model's own (image_spec_for), its aspect
// mode replaced by `aspect` unless that is "" ("pad" or "square": the authors' ranking scripts
// scored with "square" although their models trained with "pad"). Throws
// std::invalid_argument for another name.
ImageSpec reward_image_spec(const ModelSpec& base, const std::string& aspect);

// The image features [P, hidden] a sample's texts are scored with (undefined for a
// text-only sample), its image preprocessed as `image` says. Throws ImageError
// (core/model/image_preprocess.h) when the image cannot be used.
at::Tensor sample_features(const RewardModel& model, const Sample& sample, const std::string& image_root,
                           const ImageSpec& image);

// Scores every record of `index` with `model`; rows in pool order.
std::vector<ShardRow> score_pool(const RewardModel& model, const PoolIndex& index, const ScoringOptions& options);

}  // namespace align2
