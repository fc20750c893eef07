#include "core/curation.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <optional>
#include <thread>
#include <nlohmann/json.hpp>

#include "core/byte_io.h"
#include "core/corpus_reader.h"
#include "core/ranking.h"
#include "core/record_validation.h"
#include "core/progress.h"
#include "core/shard_store.h"
#include "core/version.h"
#include "core/work_dir.h"
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

  void add(std::uint64_t pool_index, double value, const std::string& image_path) {
    index.push_back(pool_index);
    score.push_back(value);
    image.push_back(image_path);
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

ShardMeta stage_meta(Comm& comm, const std::string& run_fingerprint, const PoolIndex& index,
                     const std::string& stage) {
  ShardMeta m;
  m.align2_version = align2_version();
  m.config_fingerprint = run_fingerprint;
  m.input_fingerprint = index.fingerprint;
  m.stage = stage;
  m.rank = comm.rank();
  m.world_size = comm.size();
  m.input_records = index.entries.size();
  return m;
}

// Scores the items [begin, end) of a stage: one row per item, in item order, `record` empty.
using ScoreChunk = std::function<std::vector<ShardRow>(ChunkRange)>;

// This rank's part of a stage, chunk by chunk.
struct StageRun {
  std::vector<ShardRow> rows;      // this rank's items in order; record texts empty
  std::vector<ChunkRange> chunks;  // this rank's chunks, in order
  double busy_s = 0;               // seconds spent scoring in this run
  double wall_s = 0;               // seconds from stage start to all ranks' chunks committed (rank 0)
  std::uint64_t computed = 0;      // items scored in this run
  std::uint64_t resumed = 0;       // items taken from chunks committed earlier
};

struct RunContext {
  Comm& comm;
  const JobConfig& config;
  const CurationOptions& options;
  const PoolIndex& index;
  std::string fingerprint;  // config + models
};

// Every rank scores its cost-balanced range of `items` (pool indices), chunk by chunk,
// reusing the chunks an earlier run committed. Rank 0 shows progress over all ranks by
// watching the committed chunk files, and waits for them before returning (the caller
// then enters the stage's collective).
StageRun run_stage(const RunContext& ctx, const std::string& stage, const std::vector<std::uint64_t>& items,
                   const ScoreChunk& score) {
  Comm& comm = ctx.comm;
  std::vector<std::uint64_t> costs(items.size());
  for (std::size_t p = 0; p < items.size(); ++p) costs[p] = ctx.index.entries[items[p]].cost;
  std::vector<ShardRange> plan = plan_shards(costs, comm.size());
  std::vector<ChunkRange> all_chunks;
  StageRun run;
  for (int r = 0; r < comm.size(); ++r) {
    std::vector<ChunkRange> c = chunk_ranges(plan[std::size_t(r)].begin, plan[std::size_t(r)].end,
                                             ctx.config.chunk_records);
    all_chunks.insert(all_chunks.end(), c.begin(), c.end());
    if (r == comm.rank()) run.chunks = c;
  }
  const ShardMeta expected = stage_meta(comm, ctx.fingerprint, ctx.index, stage);
  const bool show = comm.rank() == 0 && ctx.options.progress;
  auto t_stage = Clock::now();
  std::optional<ProgressMeter> meter;
  if (show)
    meter.emplace(stage, items.size(), committed_items(ctx.config.output_dir, stage, all_chunks),
                  double(ctx.config.progress_seconds));

  for (const ChunkRange& chunk : run.chunks) {
    const std::string path = chunk_path(ctx.config.output_dir, stage, chunk);
    std::vector<ShardRow> rows;
    std::string problem;
    if (read_chunk(path, expected, chunk, items, ctx.index, &rows, &problem)) {
      run.resumed += chunk.end - chunk.begin;
    } else {
      if (!problem.empty())
        std::fprintf(stderr, "align2: rank %d: %s; scoring it again\n", comm.rank(), problem.c_str());
      auto t0 = Clock::now();
      rows = score(chunk);
      if (rows.size() != chunk.end - chunk.begin)
        throw std::logic_error(fmt::format("{}: {} rows for {} items", stage, rows.size(), chunk.end - chunk.begin));
      ShardMeta meta = expected;
      meta.stage_summary_json = json{{"begin", chunk.begin}, {"end", chunk.end}}.dump();
      meta.timings_json = json{{"busy_s", seconds_since(t0)}}.dump();
      write_shard(path, meta, rows);
      run.busy_s += seconds_since(t0);
      run.computed += chunk.end - chunk.begin;
    }
    for (ShardRow& row : rows) run.rows.push_back(std::move(row));
    if (meter && meter->due()) meter->update(committed_items(ctx.config.output_dir, stage, all_chunks));
  }
  if (meter) {  // the other ranks' chunks, while they finish
    std::uint64_t done = committed_items(ctx.config.output_dir, stage, all_chunks);
    while (comm.size() > 1 && done < items.size()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      done = committed_items(ctx.config.output_dir, stage, all_chunks);
      meter->update(done);
    }
    meter->finish(done);
  }
  run.wall_s = seconds_since(t_stage);
  return run;
}

// Consecutive batches [first, second) of at most `batch_size` samples and at most
// `batch_tokens` estimated tokens (0 = no token bound); a sample above the budget is a batch
// of its own. `costs[i]`: estimated tokens of sample i (text + image).
std::vector<std::pair<std::size_t, std::size_t>> make_batches(const std::vector<std::uint64_t>& costs,
                                                              std::uint64_t batch_size, std::uint64_t batch_tokens) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  std::size_t begin = 0;
  std::uint64_t tokens = 0;
  for (std::size_t i = 0; i < costs.size(); ++i) {
    bool full = i - begin >= batch_size || (batch_tokens && i > begin && tokens + costs[i] > batch_tokens);
    if (full) {
      out.emplace_back(begin, i);
      begin = i;
      tokens = 0;
    }
    tokens += costs[i];
  }
  if (begin < costs.size()) out.emplace_back(begin, costs.size());
  return out;
}

json rank_timings(const StageRun& run, std::uint64_t scored) {
  return {{"busy_s", run.busy_s}, {"wall_s", run.wall_s}, {"records", run.rows.size()},
          {"computed", run.computed}, {"resumed", run.resumed}, {"scored", scored}};
}

}  // namespace

CurationResult run_curation(Comm& comm, const JobConfig& config, Scorer& scorer, const CurationOptions& options) {
  CurationResult result;
  const PoolIndex index = share_index(comm, config);
  const std::uint64_t n = index.entries.size();
  result.input_records = n;
  const std::string fingerprint = config.fingerprint + ":" + scorer.fingerprint();
  on_root(comm, [&] {  // refuses another run's folder (unless forced) before any rank writes
    open_run(config.output_dir, RunIdentity{fingerprint, index.fingerprint}, options.force);
    return std::vector<std::uint8_t>{};
  });
  CorpusReader reader(index);
  RunContext ctx{comm, config, options, index, fingerprint};

  // ---- Stage 1: question scores over every record; invalid records pass through with their status.
  std::vector<std::uint64_t> all(n);
  for (std::uint64_t i = 0; i < n; ++i) all[i] = i;
  StageRun run1 = run_stage(ctx, "select_questions", all, [&](ChunkRange chunk) {
    std::vector<Sample> samples = reader.read(chunk.begin, chunk.end);
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
    std::vector<std::uint64_t> costs;
    for (const Sample* v : valid) costs.push_back(index.entries[v->index].cost);
    for (auto [b, e] : make_batches(costs, config.batch_size, config.batch_tokens)) {
      std::vector<const Sample*> batch(valid.begin() + std::ptrdiff_t(b), valid.begin() + std::ptrdiff_t(e));
      std::vector<ScoreFailure> batch_failures;
      scorer.score_questions(batch, scores.data() + b, &batch_failures);
      for (ScoreFailure& f : batch_failures) {
        f.sample += b;
        failures.push_back(std::move(f));
      }
    }
    for (std::size_t i = 0; i < valid.size(); ++i) score_of[valid_at[i]] = scores[i];
    for (const ScoreFailure& f : failures) {  // e.g. an image that cannot be decoded
      Sample& s = samples[valid_at.at(f.sample)];
      s.status = Status::invalid;
      s.reason = f.reason;
      s.message = f.message;
    }
    std::vector<ShardRow> rows;
    for (std::size_t k = 0; k < samples.size(); ++k) {
      ShardRow row = sample_row(samples[k]);
      row.record.clear();  // read from the pool again when the shard is assembled
      if (samples[k].status == Status::valid) row.question_score = score_of[k];
      rows.push_back(std::move(row));
    }
    return rows;
  });
  ScoredSet scored1;
  for (const ShardRow& row : run1.rows)
    if (row.status == "valid") scored1.add(row.index, row.question_score, row.image);
  StageSelection stage1 = select_stage(comm, index, scored1, config.alpha, config.one_per_image);
  const std::vector<std::uint8_t>& kept1 = stage1.kept;
  for (ShardRow& row : run1.rows)
    if (row.status == "valid") row.selected_questions = std::int8_t(kept1[row.index]);
  {  // the stage shard carries the record texts, read from the pool chunk by chunk
    std::size_t at = 0;
    for (const ChunkRange& chunk : run1.chunks)
      for (const Sample& s : reader.read(chunk.begin, chunk.end)) run1.rows.at(at++).record = printable_text(s.raw);
  }
  ShardMeta meta1 = stage_meta(comm, fingerprint, index, "select_questions");
  meta1.stage_summary_json = selection_summary(index, stage1.selection, n, config.alpha, config.one_per_image).dump();
  meta1.timings_json = rank_timings(run1, scored1.index.size()).dump();
  write_shard(shard_path(config.output_dir, "select_questions", comm.rank()), meta1, run1.rows);
  run1.rows = {};

  // ---- Stage 2: survivors re-sharded by cost; answer scores per turn, mean per sample.
  std::vector<std::uint64_t> survivors;
  for (std::uint64_t i = 0; i < n; ++i)
    if (kept1[i]) survivors.push_back(i);
  result.stage1_kept = survivors.size();
  StageRun run2 = run_stage(ctx, "select_answers", survivors, [&](ChunkRange chunk) {
    std::vector<Sample> samples;
    for (std::uint64_t p = chunk.begin; p < chunk.end; ++p) samples.push_back(reader.read_one(survivors[p]));
    std::vector<std::vector<float>> turn_scores(samples.size());
    std::vector<const ScoreFailure*> failed(samples.size(), nullptr);
    std::vector<ScoreFailure> failures;
    failures.reserve(samples.size());  // `failed` points into it
    std::vector<std::uint64_t> costs;
    for (const Sample& sample : samples) costs.push_back(index.entries[sample.index].cost);
    for (auto [b, e] : make_batches(costs, config.batch_size, config.batch_tokens)) {
      std::vector<const Sample*> batch;
      for (std::size_t k = b; k < e; ++k) batch.push_back(&samples[k]);
      std::vector<std::vector<float>> out(batch.size());
      std::vector<ScoreFailure> batch_failures;
      scorer.score_answers(batch, &out, &batch_failures);
      for (std::size_t k = b; k < e; ++k) turn_scores[k] = std::move(out[k - b]);
      for (ScoreFailure& f : batch_failures) {
        f.sample += b;
        failures.push_back(std::move(f));
        failed.at(failures.back().sample) = &failures.back();
      }
    }
    std::vector<ShardRow> rows;
    for (std::size_t k = 0; k < samples.size(); ++k) {
      const Sample& s = samples[k];
      ShardRow row = sample_row(s);
      row.record.clear();  // the merge takes record texts from stage 1
      if (failed[k]) {  // a survivor of stage 1 that cannot be scored now: dropped, with its reason
        row.status = status_name(Status::invalid);
        row.reason = reason_name(failed[k]->reason);
        row.message = printable_text(failed[k]->message);
      } else {
        if (turn_scores[k].size() != s.turns.size())
          throw std::runtime_error(fmt::format("scorer returned {} answer scores for record {} with {} turns",
                                               turn_scores[k].size(), s.index, s.turns.size()));
        row.answer_scores = turn_scores[k];
        double sum = 0;
        for (float x : row.answer_scores) sum += double(x);
        row.answer_score = sum / double(row.answer_scores.size());
      }
      rows.push_back(std::move(row));
    }
    return rows;
  });
  ScoredSet scored2;
  for (const ShardRow& row : run2.rows)
    if (row.status == "valid") scored2.add(row.index, row.answer_score, row.image);
  StageSelection stage2 = select_stage(comm, index, scored2, config.beta, config.one_per_image);
  const std::vector<std::uint8_t>& kept2 = stage2.kept;
  for (ShardRow& row : run2.rows) row.selected_answers = std::int8_t(kept2[row.index]);
  for (std::uint8_t k : kept2) result.stage2_kept += k;
  ShardMeta meta2 = stage_meta(comm, fingerprint, index, "select_answers");
  meta2.stage_summary_json =
      selection_summary(index, stage2.selection, survivors.size(), config.beta, config.one_per_image).dump();
  meta2.timings_json = rank_timings(run2, scored2.index.size()).dump();
  write_shard(shard_path(config.output_dir, "select_answers", comm.rank()), meta2, run2.rows);
  run2.rows = {};

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
