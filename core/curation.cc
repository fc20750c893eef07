#include "core/curation.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/byte_io.h"
#include "core/corpus_reader.h"
#include "core/ranking.h"
#include "core/record_validation.h"
#include "core/shard_store.h"
#include "core/version.h"
#include "distributed/shard_plan.h"

namespace align2 {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Runs `work` on rank 0 and broadcasts its bytes; an exception there is rethrown on
// every rank (as std::runtime_error with the same text), so no rank waits forever.
std::vector<std::uint8_t> on_root(Comm& comm, const std::function<std::vector<std::uint8_t>()>& work) {
  std::vector<std::uint8_t> message;
  if (comm.rank() == 0) {
    ByteWriter w;
    try {
      std::vector<std::uint8_t> body = work();
      w.u8(1);
      w.raw(body.data(), body.size());
    } catch (const std::exception& e) {
      w.bytes.clear();
      w.u8(0);
      w.str(e.what());
    }
    message = std::move(w.bytes);
  }
  comm.broadcast(message, 0);
  ByteReader r(message);
  if (r.u8() == 0) throw std::runtime_error(r.str());
  message.erase(message.begin());
  return message;
}

// Rank 0 builds the index; every rank gets it. A pool error reaches every rank.
PoolIndex share_index(Comm& comm, const JobConfig& config) {
  return deserialize_index(on_root(comm, [&] {
      IndexOptions options;
      options.validation.image_root = config.image_root;
      options.validation.subset_field = config.subset_field;
      options.validation.max_record_bytes = config.max_record_bytes;
      options.image_cost = config.image_cost;
      return serialize_index(build_index(config.pools, options));
  }));
}

// This rank's scored samples of a stage: (pool index, score, image) each.
struct ScoredSet {
  std::vector<std::uint64_t> index;
  std::vector<double> score;
  std::vector<std::string> image;

  void add(const Sample& s, double value) {
    index.push_back(s.index);
    score.push_back(value);
    image.push_back(s.image);
  }
};

// A stage's decision, identical on every rank.
struct StageSelection {
  Selection selection;
  std::vector<std::uint8_t> kept;  // per pool index: 1 kept by this stage
};

// Gathers every rank's scores (allgatherv) and keeps the top `fraction` per subset.
StageSelection select_stage(Comm& comm, const PoolIndex& index, const ScoredSet& mine, double fraction,
                            bool one_per_image) {
  ByteWriter w;
  w.u64(mine.index.size());
  for (std::size_t i = 0; i < mine.index.size(); ++i) {
    w.u64(mine.index[i]);
    w.f64(mine.score[i]);
    w.str(mine.image[i]);
  }
  std::vector<std::vector<std::uint8_t>> all = comm.allgatherv(w.bytes);
  std::vector<Candidate> candidates;
  for (const auto& part : all) {
    ByteReader r(part);
    std::uint64_t n = r.u64();
    for (std::uint64_t k = 0; k < n; ++k) {
      Candidate c;
      c.index = r.u64();
      c.score = r.f64();
      c.image = r.str();
      if (c.index >= index.entries.size()) throw std::runtime_error("gathered score for an unknown record");
      c.subset = index.entries[c.index].subset;
      c.key = index.key(c.index);
      candidates.push_back(std::move(c));
    }
  }
  StageSelection out;
  out.selection = select_top_fraction(candidates, fraction, one_per_image);
  out.kept.assign(index.entries.size(), 0);
  for (std::size_t c = 0; c < candidates.size(); ++c) out.kept[candidates[c].index] = out.selection.kept[c];
  return out;
}

json selection_summary(const PoolIndex& index, const Selection& sel, std::uint64_t input, double fraction,
                       bool one_per_image) {
  json by_subset = json::object();
  std::uint64_t scored = 0, kept = 0;
  for (const auto& [subset, s] : sel.by_subset) {
    by_subset[index.subsets[subset]] = {{"scored", s.scored},
                                        {"eligible", s.eligible},
                                        {"kept", s.kept},
                                        {"threshold", s.kept ? json(s.threshold) : json(nullptr)}};
    scored += s.scored;
    kept += s.kept;
  }
  return {{"input", input}, {"scored", scored}, {"kept", kept}, {"fraction", fraction},
          {"one_per_image", one_per_image}, {"by_subset", by_subset}};
}

ShardMeta stage_meta(Comm& comm, const JobConfig& config, const std::string& scorer_fp, const PoolIndex& index,
                     const std::string& stage) {
  ShardMeta m;
  m.align2_version = align2_version();
  m.config_fingerprint = config.fingerprint + ":" + scorer_fp;
  m.input_fingerprint = index.fingerprint;
  m.stage = stage;
  m.rank = comm.rank();
  m.world_size = comm.size();
  m.input_records = index.entries.size();
  return m;
}


}  // namespace

CurationResult run_curation(Comm& comm, const JobConfig& config, Scorer& scorer) {
  CurationResult result;
  const PoolIndex index = share_index(comm, config);
  const std::uint64_t n = index.entries.size();
  result.input_records = n;
  const std::string scorer_fp = scorer.fingerprint();
  CorpusReader reader(index);

  // ---- Stage 1: question scores over every valid record of this rank's range.
  std::vector<std::uint64_t> costs(n);
  for (std::uint64_t i = 0; i < n; ++i) costs[i] = index.entries[i].cost;
  ShardRange mine = plan_shards(costs, comm.size())[std::size_t(comm.rank())];

  auto t0 = Clock::now();
  std::vector<ShardRow> rows;
  ScoredSet scored1;
  for (std::uint64_t begin = mine.begin; begin < mine.end; begin += config.batch_size) {
    std::uint64_t end = begin + std::min<std::uint64_t>(config.batch_size, mine.end - begin);
    std::vector<Sample> samples = reader.read(begin, end);
    std::vector<const Sample*> valid;
    std::vector<std::size_t> valid_at;  // valid[i] is samples[valid_at[i]]
    for (std::size_t k = 0; k < samples.size(); ++k)
      if (samples[k].status == Status::valid) {
        valid.push_back(&samples[k]);
        valid_at.push_back(k);
      }
    std::vector<float> scores(valid.size());
    std::vector<double> score_of(samples.size(), 0.0);
    std::vector<ScoreFailure> failures;
    if (!valid.empty()) scorer.score_questions(valid, scores.data(), &failures);
    for (std::size_t i = 0; i < valid.size(); ++i) score_of[valid_at[i]] = scores[i];
    for (const ScoreFailure& f : failures) {  // e.g. an image that cannot be decoded
      Sample& s = samples[valid_at.at(f.sample)];
      s.status = Status::invalid;
      s.reason = f.reason;
      s.message = f.message;
    }
    for (std::size_t k = 0; k < samples.size(); ++k) {
      const Sample& s = samples[k];
      ShardRow row = sample_row(s);
      if (s.status == Status::valid) {
        row.question_score = score_of[k];
        scored1.add(s, row.question_score);
      }
      rows.push_back(std::move(row));
    }
  }
  double busy1 = seconds_since(t0);
  StageSelection stage1 = select_stage(comm, index, scored1, config.alpha, config.one_per_image);
  const std::vector<std::uint8_t>& kept1 = stage1.kept;
  t0 = Clock::now();
  for (ShardRow& row : rows)
    if (row.status == "valid") row.selected_questions = std::int8_t(kept1[row.index]);
  ShardMeta meta1 = stage_meta(comm, config, scorer_fp, index, "select_questions");
  meta1.stage_summary_json = selection_summary(index, stage1.selection, n, config.alpha, config.one_per_image).dump();
  busy1 += seconds_since(t0);
  meta1.timings_json = json{{"busy_s", busy1}, {"records", mine.end - mine.begin}, {"scored", scored1.index.size()}}.dump();
  write_shard(shard_path(config.output_dir, "select_questions", comm.rank()), meta1, rows);
  rows.clear();

  // ---- Stage 2: survivors re-sharded by cost; answer scores per turn, mean per sample.
  std::vector<std::uint64_t> survivors, survivor_costs;
  for (std::uint64_t i = 0; i < n; ++i)
    if (kept1[i]) {
      survivors.push_back(i);
      survivor_costs.push_back(index.entries[i].cost);
    }
  result.stage1_kept = survivors.size();
  ShardRange mine2 = plan_shards(survivor_costs, comm.size())[std::size_t(comm.rank())];
  t0 = Clock::now();
  ScoredSet scored2;
  for (std::uint64_t begin = mine2.begin; begin < mine2.end; begin += config.batch_size) {
    std::uint64_t end = begin + std::min<std::uint64_t>(config.batch_size, mine2.end - begin);
    std::vector<Sample> samples;
    for (std::uint64_t k = begin; k < end; ++k) samples.push_back(reader.read_one(survivors[k]));
    std::vector<const Sample*> batch;
    for (const Sample& s : samples) batch.push_back(&s);
    std::vector<std::vector<float>> turn_scores(samples.size());
    std::vector<ScoreFailure> failures;
    scorer.score_answers(batch, &turn_scores, &failures);
    std::vector<const ScoreFailure*> failed(samples.size(), nullptr);
    for (const ScoreFailure& f : failures) failed.at(f.sample) = &f;
    for (std::size_t k = 0; k < samples.size(); ++k) {
      const Sample& s = samples[k];
      if (failed[k]) {  // a survivor of stage 1 that cannot be scored now: dropped, with its reason
        ShardRow row = sample_row(s);
        row.record.clear();
        row.status = status_name(Status::invalid);
        row.reason = reason_name(failed[k]->reason);
        row.message = printable_text(failed[k]->message);
        rows.push_back(std::move(row));
        continue;
      }
      if (turn_scores[k].size() != s.turns.size())
        throw std::runtime_error(fmt::format("scorer returned {} answer scores for record {} with {} turns",
                                             turn_scores[k].size(), s.index, s.turns.size()));
      ShardRow row = sample_row(s);
      row.record.clear();  // the merge takes record texts from stage 1
      row.answer_scores = turn_scores[k];
      double sum = 0;
      for (float x : row.answer_scores) sum += double(x);
      row.answer_score = sum / double(row.answer_scores.size());
      scored2.add(s, row.answer_score);
      rows.push_back(std::move(row));
    }
  }
  double busy2 = seconds_since(t0);
  StageSelection stage2 = select_stage(comm, index, scored2, config.beta, config.one_per_image);
  const std::vector<std::uint8_t>& kept2 = stage2.kept;
  for (ShardRow& row : rows) row.selected_answers = std::int8_t(kept2[row.index]);
  for (std::uint8_t k : kept2) result.stage2_kept += k;
  ShardMeta meta2 = stage_meta(comm, config, scorer_fp, index, "select_answers");
  meta2.stage_summary_json = selection_summary(index, stage2.selection, survivors.size(), config.beta, config.one_per_image).dump();
  meta2.timings_json = json{{"busy_s", busy2}, {"records", mine2.end - mine2.begin}}.dump();
  write_shard(shard_path(config.output_dir, "select_answers", comm.rank()), meta2, rows);
  rows.clear();

  // ---- Merge on rank 0 once every shard is on disk.
  comm.barrier();
  on_root(comm, [&] {
    std::vector<std::string> paths;
    for (const char* stage : {"select_questions", "select_answers"})
      for (int r = 0; r < comm.size(); ++r) paths.push_back(shard_path(config.output_dir, stage, r));
    result.merged = merge_shards(paths, config.output_dir);
    return std::vector<std::uint8_t>{};
  });
  return result;
}

}  // namespace align2
