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

// Scores gathered from all ranks: (pool index, score, image) per scored sample.
std::vector<Candidate> gather_candidates(Comm& comm, const PoolIndex& index,
                                         const std::vector<std::uint64_t>& indices,
                                         const std::vector<double>& scores,
                                         const std::vector<std::string>& images) {
  ByteWriter w;
  w.u64(indices.size());
  for (std::size_t i = 0; i < indices.size(); ++i) {
    w.u64(indices[i]);
    w.f64(scores[i]);
    w.str(images[i]);
  }
  std::vector<std::vector<std::uint8_t>> all = comm.allgatherv(w.bytes);
  std::vector<Candidate> out;
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
      out.push_back(std::move(c));
    }
  }
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

ShardRow base_row(const Sample& s) {
  ShardRow row;
  row.index = s.index;
  row.key = s.key;
  row.id = printable_text(s.id);
  row.subset = printable_text(s.subset);
  row.status = status_name(s.status);
  row.reason = reason_name(s.reason);
  row.message = printable_text(s.message);
  row.image = printable_text(s.image);
  row.record = printable_text(s.raw);  // valid records are UTF-8 without NUL: verbatim
  return row;
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
  std::vector<std::uint64_t> scored_idx;
  std::vector<double> scored_val;
  std::vector<std::string> scored_img;
  for (std::uint64_t begin = mine.begin; begin < mine.end; begin += config.batch_size) {
    std::uint64_t end = std::min(mine.end, begin + config.batch_size);
    std::vector<Sample> samples = reader.read(begin, end);
    std::vector<const Sample*> valid;
    for (const Sample& s : samples)
      if (s.status == Status::valid) valid.push_back(&s);
    std::vector<float> scores(valid.size());
    if (!valid.empty()) scorer.score_questions(valid, scores.data());
    std::size_t v = 0;
    for (Sample& s : samples) {
      ShardRow row = base_row(s);
      if (s.status == Status::valid) {
        row.question_score = scores[v++];
        scored_idx.push_back(s.index);
        scored_val.push_back(row.question_score);
        scored_img.push_back(s.image);
      }
      rows.push_back(std::move(row));
    }
  }
  double busy1 = seconds_since(t0);
  std::vector<Candidate> cand1 = gather_candidates(comm, index, scored_idx, scored_val, scored_img);
  Selection sel1 = select_top_fraction(cand1, config.alpha, config.one_per_image);
  std::vector<std::uint8_t> kept1(n, 0);
  for (std::size_t c = 0; c < cand1.size(); ++c) kept1[cand1[c].index] = sel1.kept[c];
  t0 = Clock::now();
  for (ShardRow& row : rows)
    if (row.status == "valid") row.selected_questions = std::int8_t(kept1[row.index]);
  ShardMeta meta1 = stage_meta(comm, config, scorer_fp, index, "select_questions");
  meta1.stage_summary_json = selection_summary(index, sel1, n, config.alpha, config.one_per_image).dump();
  busy1 += seconds_since(t0);
  meta1.timings_json = json{{"busy_s", busy1}, {"records", mine.end - mine.begin}, {"scored", scored_idx.size()}}.dump();
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
  scored_idx.clear();
  scored_val.clear();
  scored_img.clear();
  for (std::uint64_t begin = mine2.begin; begin < mine2.end; begin += config.batch_size) {
    std::uint64_t end = std::min(mine2.end, begin + config.batch_size);
    std::vector<Sample> samples;
    for (std::uint64_t k = begin; k < end; ++k) samples.push_back(reader.read_one(survivors[k]));
    std::vector<const Sample*> batch;
    for (const Sample& s : samples) batch.push_back(&s);
    std::vector<std::vector<float>> turn_scores(samples.size());
    scorer.score_answers(batch, &turn_scores);
    for (std::size_t k = 0; k < samples.size(); ++k) {
      const Sample& s = samples[k];
      if (turn_scores[k].size() != s.turns.size())
        throw std::runtime_error(fmt::format("scorer returned {} answer scores for record {} with {} turns",
                                             turn_scores[k].size(), s.index, s.turns.size()));
      ShardRow row = base_row(s);
      row.record.clear();  // the merge takes record texts from stage 1
      row.answer_scores = turn_scores[k];
      double sum = 0;
      for (float x : row.answer_scores) sum += double(x);
      row.answer_score = sum / double(row.answer_scores.size());
      scored_idx.push_back(s.index);
      scored_val.push_back(row.answer_score);
      scored_img.push_back(s.image);
      rows.push_back(std::move(row));
    }
  }
  double busy2 = seconds_since(t0);
  std::vector<Candidate> cand2 = gather_candidates(comm, index, scored_idx, scored_val, scored_img);
  Selection sel2 = select_top_fraction(cand2, config.beta, config.one_per_image);
  std::vector<std::uint8_t> kept2(n, 0);
  for (std::size_t c = 0; c < cand2.size(); ++c) kept2[cand2[c].index] = sel2.kept[c];
  for (ShardRow& row : rows) row.selected_answers = std::int8_t(kept2[row.index]);
  for (std::uint8_t k : kept2) result.stage2_kept += k;
  ShardMeta meta2 = stage_meta(comm, config, scorer_fp, index, "select_answers");
  meta2.stage_summary_json = selection_summary(index, sel2, survivors.size(), config.beta, config.one_per_image).dump();
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
