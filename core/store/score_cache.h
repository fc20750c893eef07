// The score cache of nightly refreshes: the reward scores of samples scored in earlier runs,
// so that a run over a pool where only some records are new or changed scores only those.
//
// An entry is keyed by (model, stage, sample): one file per stage and model,
//   <score_cache>/<stage>-<16 hex chars of SHA-256 over the model fingerprint>.h5
// in the shard format (core/store/shard_store.h: schema version checked on read) with
//   attribute stage              "score_cache/<stage>"
//   attribute config_fingerprint the full model fingerprint (align2 version, stage, the
//                                scorer's stage fingerprint); a file naming another is ignored
//   one row per cached sample    key = the sample digest (below), status "valid",
//                                question_score (select_questions) or answer_scores, one per
//                                turn (select_answers); rows sorted by key, keys unique.
// The sample digest is 16 bytes of SHA-256 over the sample's content key (core/data/corpus_index.h:
// its text without the id) and the bytes of its image file: a record whose text or image
// changed is a new sample. Only successful scores are cached (a failure's message names the
// record's position in its pool, which moves between pools): failures are scored again.
//
// Scores are exact: a Scorer's score depends only on the sample (core/reward/scorer.h), so a cached
// score equals the one a full run computes, and the outputs of a run with the cache equal a
// run's without. The cache is only a cache: a file that cannot be read is reported and
// ignored (everything is scored), and it is replaced atomically after each stage.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/data/sample.h"

namespace align2 {

using SampleDigest = std::array<std::uint8_t, 16>;

// The digest of `sample` as a stage scores it; `image_root` holds its image (text-only
// samples, or no image_root: the key alone, which holds the image path). False when the image file cannot be read (the sample is then
// scored, which reports the problem).
bool sample_digest(const Sample& sample, const std::string& image_root, SampleDigest* out);

// <dir>/<stage>-<16 hex>.h5 for the model fingerprint `model`.
std::string score_cache_path(const std::string& dir, const std::string& stage, const std::string& model);

// Entries in memory: per entry its digest and its scores (1 for select_questions, one per
// turn for select_answers), about 24 bytes + 4 per score. Not thread-safe.
class ScoreCache {
 public:
  // An empty cache of `stage` for the model fingerprint `model`, stored under `dir`.
  ScoreCache(std::string dir, std::string stage, std::string model);

  // Reads the cache file when it exists. Returns "" or a sentence naming the file and why it
  // was ignored (unreadable, another schema or model, unsorted keys); the cache is then empty.
  std::string load();

  // The scores cached for `digest`, or false.
  bool find(const SampleDigest& digest, std::vector<float>* scores) const;

  // Adds an entry (a later entry of the same digest is dropped when the cache is sorted).
  void add(const SampleDigest& digest, const float* scores, std::size_t n);

  // Entries as bytes (to gather them on one rank) and back: add_serialized appends them.
  std::vector<std::uint8_t> serialize() const;
  void add_serialized(const std::vector<std::uint8_t>& bytes);

  // Keeps only the entries whose digest is in `wanted` (sorted, unique).
  void keep_only(const std::vector<SampleDigest>& wanted);

  // Sorts and de-duplicates the entries, then writes the file atomically (the directory is
  // created). Throws std::runtime_error naming the file on I/O failure.
  void save();

  // The digests of the entries, sorted and unique.
  std::vector<SampleDigest> digests();

  std::size_t size() const { return entries_.size(); }
  const std::string& path() const { return path_; }
  const std::string& model() const { return model_; }

 private:
  struct Entry {
    SampleDigest digest;
    std::uint64_t first = 0;  // position of its scores in values_
    std::uint32_t count = 0;
  };
  void sort_unique();

  std::string dir_, stage_, model_, path_;
  std::vector<Entry> entries_;
  std::vector<float> values_;
  bool sorted_ = true;
};

}  // namespace align2
