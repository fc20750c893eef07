#include "core/engine/reward_scoring.h"

#include <fmt/format.h>

#include <filesystem>

#include "core/data/corpus_reader.h"
#include "core/model/image_preprocess.h"
#include "core/reward/preference_pairs.h"
#include "core/data/record_validation.h"
#include "core/reward/reward_text.h"

namespace align2 {


ImageSpec reward_image_spec(const ModelSpec& base, const std::string& aspect) {
  ImageSpec image = image_spec_for(base);
  if (!aspect.empty()) image.aspect = aspect_mode_from_name(aspect);
  return image;
}

at::Tensor sample_features(const RewardModel& model, const Sample& s, const std::string& image_root,
                           const ImageSpec& image) {
  if (s.image.empty()) return at::Tensor();
  const ModelSpec& spec = model.llava().spec();
  if (!spec.has_vision) throw ImageError("no_vision", fmt::format("the model {} has no vision tower", spec.dir));
  at::Tensor pixels = at::empty({3, image.size, image.size}, at::kFloat);
  preprocess_image_file((std::filesystem::path(image_root) / s.image).string(), image, pixels.data_ptr<float>());
  return model.image_features(pixels);
}

std::vector<ShardRow> score_pool(const RewardModel& model, const PoolIndex& index, const ScoringOptions& options) {
  CorpusReader reader(index);
  const ImageSpec image = reward_image_spec(model.llava().spec(), options.image_aspect);
  std::vector<ShardRow> rows;
  const std::uint64_t n = index.entries.size();
  for (std::uint64_t i = 0; i < n; ++i) {
    Sample s = reader.read_one(i);
    ShardRow row = sample_row(s);
    if (s.status == Status::valid) {
      at::Tensor features;
      try {
        features = sample_features(model, s, options.image_root, image);
      } catch (const ImageError& e) {
        RecordOrigin origin{index.files[index.entries[i].file].path, index.entries[i].index_in_file,
                            index.entries[i].line, ""};
        s.status = Status::invalid;
        s.reason = Reason::bad_image;
        s.message = record_message(origin, s.id, fmt::format("{} [{}]", e.what(), e.reason_code));
      }
      if (s.status == Status::valid) {
        if (model.config().kind == RewardKind::question) {
          RewardScore r = model.score(reward_text(RewardKind::question, s, 0), features);
          row.question_score = r.score;
          row.truncated = r.truncated ? 1 : 0;
        } else {
          double sum = 0;
          row.truncated = 0;
          for (std::size_t t = 0; t < s.turns.size(); ++t) {
            RewardScore r = model.score(reward_text(RewardKind::answer, s, t), features);
            row.answer_scores.push_back(r.score);
            sum += r.score;
            if (r.truncated) row.truncated = 1;
          }
          row.answer_score = sum / double(s.turns.size());
        }
      }
    }
    row.status = s.status;  // a bad image found here changes the status
    row.reason = s.reason;
    row.message = printable_text(s.message);
    rows.push_back(std::move(row));
    if (options.progress) options.progress(i + 1, n);
  }
  return rows;
}

}  // namespace align2
