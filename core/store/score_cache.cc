#include "core/store/score_cache.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "core/util/byte_io.h"
#include "core/store/shard_store.h"
#include "core/util/digest.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;

constexpr const char* kStagePrefix = "score_cache/";


bool is_question_stage(const std::string& stage) { return stage == "select_questions"; }

}  // namespace

bool sample_digest(const Sample& sample, const std::string& image_root, SampleDigest* out) {
  Sha256 h;
  const std::string head = "align2-sample-digest-v1\n" + sample.key + "\n";
  h.update(head);
  if (!sample.image.empty() && !image_root.empty()) {
    const std::string path = (fs::path(image_root) / sample.image).string();
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    std::vector<std::uint8_t> buffer(1 << 16);
    bool ok = true;
    for (;;) {
      std::size_t got = std::fread(buffer.data(), 1, buffer.size(), f);
      h.update(buffer.data(), got);
      if (got < buffer.size()) {
        ok = !std::ferror(f);
        break;
      }
    }
    std::fclose(f);
    if (!ok) return false;
  }
  std::uint8_t digest[32];
  h.final(digest);
  std::memcpy(out->data(), digest, out->size());
  return true;
}

std::string score_cache_path(const std::string& dir, const std::string& stage, const std::string& model) {
  return (fs::path(dir) / (stage + "-" + sha256_hex(model, 8) + ".h5")).string();
}

ScoreCache::ScoreCache(std::string dir, std::string stage, std::string model)
    : dir_(std::move(dir)), stage_(std::move(stage)), model_(std::move(model)),
      path_(score_cache_path(dir_, stage_, model_)) {}

std::string ScoreCache::load() {
  entries_.clear();
  values_.clear();
  sorted_ = true;
  std::error_code ec;
  if (!fs::exists(path_, ec)) return "";
  try {
    ShardReader reader(path_);
    if (reader.meta().stage != kStagePrefix + stage_ || reader.meta().config_fingerprint != model_)
      return fmt::format("{}: the score cache of another stage or model (ignored)", path_);
    constexpr std::uint64_t kBlock = 4096;
    for (std::uint64_t b = 0; b < reader.rows(); b += kBlock) {
      for (const ShardRow& row : reader.read_rows(b, std::min(reader.rows(), b + kBlock), ShardReadOptions{false})) {
        SampleDigest d;
        if (!from_hex(row.key, d.data(), d.size()))
          throw std::runtime_error(fmt::format("row {}: key \"{}\" is not a sample digest", row.index, row.key));
        if (!entries_.empty() && !(entries_.back().digest < d))
          throw std::runtime_error(fmt::format("row {}: keys are not sorted and unique", row.index));
        if (is_question_stage(stage_)) {
          float v = float(row.question_score);
          add(d, &v, 1);
        } else {
          add(d, row.answer_scores.data(), row.answer_scores.size());
        }
      }
    }
  } catch (const std::exception& e) {
    entries_.clear();
    values_.clear();
    return fmt::format("{}: the score cache cannot be read (ignored; everything is scored): {}", path_, e.what());
  }
  sorted_ = true;
  return "";
}

bool ScoreCache::find(const SampleDigest& digest, std::vector<float>* scores) const {
  if (!sorted_) throw std::logic_error("ScoreCache::find before the cache is sorted");
  auto it = std::lower_bound(entries_.begin(), entries_.end(), digest,
                             [](const Entry& e, const SampleDigest& d) { return e.digest < d; });
  if (it == entries_.end() || it->digest != digest) return false;
  scores->assign(values_.begin() + std::ptrdiff_t(it->first), values_.begin() + std::ptrdiff_t(it->first + it->count));
  return true;
}

void ScoreCache::add(const SampleDigest& digest, const float* scores, std::size_t n) {
  if (!entries_.empty() && !(entries_.back().digest < digest)) sorted_ = false;
  entries_.push_back({digest, values_.size(), std::uint32_t(n)});
  values_.insert(values_.end(), scores, scores + n);
}

std::vector<std::uint8_t> ScoreCache::serialize() const {
  ByteWriter w;
  w.u64(entries_.size());
  for (const Entry& e : entries_) {
    w.raw(e.digest.data(), e.digest.size());
    w.u32(e.count);
    for (std::uint32_t k = 0; k < e.count; ++k) w.f32(values_[e.first + k]);
  }
  return std::move(w.bytes);
}

void ScoreCache::add_serialized(const std::vector<std::uint8_t>& bytes) {
  ByteReader r(bytes);
  const std::uint64_t n = r.u64();
  std::vector<float> scores;
  for (std::uint64_t i = 0; i < n; ++i) {
    SampleDigest d;
    r.raw(d.data(), d.size());
    const std::uint32_t count = r.u32();
    if (count > bytes.size() / 4) throw std::runtime_error("score cache message: bad score count");
    scores.resize(count);
    for (float& v : scores) v = r.f32();
    add(d, scores.data(), scores.size());
  }
}

void ScoreCache::sort_unique() {
  if (sorted_) return;
  std::stable_sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) { return a.digest < b.digest; });
  entries_.erase(std::unique(entries_.begin(), entries_.end(),
                             [](const Entry& a, const Entry& b) { return a.digest == b.digest; }),
                 entries_.end());
  std::vector<float> values;
  for (Entry& e : entries_) {
    std::uint64_t first = values.size();
    values.insert(values.end(), values_.begin() + std::ptrdiff_t(e.first),
                  values_.begin() + std::ptrdiff_t(e.first + e.count));
    e.first = first;
  }
  values_ = std::move(values);
  sorted_ = true;
}

void ScoreCache::keep_only(const std::vector<SampleDigest>& wanted) {
  sort_unique();
  std::vector<Entry> kept;
  for (const Entry& e : entries_)
    if (std::binary_search(wanted.begin(), wanted.end(), e.digest)) kept.push_back(e);
  entries_ = std::move(kept);
  sorted_ = false;  // values_ has gaps: compacted by the next sort_unique
  sort_unique();
}

std::vector<SampleDigest> ScoreCache::digests() {
  sort_unique();
  std::vector<SampleDigest> out;
  out.reserve(entries_.size());
  for (const Entry& e : entries_) out.push_back(e.digest);
  return out;
}

void ScoreCache::save() {
  sort_unique();
  ShardMeta meta;
  meta.stage = kStagePrefix + stage_;
  meta.config_fingerprint = model_;
  meta.input_records = entries_.size();
  ShardWriter out(path_, entries_.size());
  constexpr std::size_t kBlock = 4096;
  std::vector<ShardRow> rows;
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    ShardRow row;
    row.index = i;
    row.key = to_hex(e.digest.data(), e.digest.size());
    row.status = Status::valid;
    if (is_question_stage(stage_)) row.question_score = double(values_[e.first]);
    else row.answer_scores.assign(values_.begin() + std::ptrdiff_t(e.first), values_.begin() + std::ptrdiff_t(e.first + e.count));
    rows.push_back(std::move(row));
    if (rows.size() == kBlock || i + 1 == entries_.size()) {
      out.append(rows);
      rows.clear();
    }
  }
  out.commit(meta);
}

}  // namespace align2
