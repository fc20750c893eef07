#include "core/pipeline/curation.h"

#include <fmt/format.h>

#include <signal.h>
#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <optional>
#include <unordered_map>
#include <thread>
#include <nlohmann/json.hpp>

#include "core/util/byte_io.h"
#include "core/data/corpus_reader.h"
#include "core/pipeline/ranking.h"
#include "core/data/record_validation.h"
#include "core/util/progress.h"
#include "core/rewrite/rewrite_stage.h"
#include "core/store/score_cache.h"
#include "core/store/shard_store.h"
#include "core/util/version.h"
#include "core/store/work_dir.h"
#include "distributed/shard_plan.h"
#include "core/store/output_layout.h"
#include "core/util/stop.h"

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
  // The message: work's bytes and a 1, or the error's text and a 0 (a trailing status byte: the
  // body is neither copied nor shifted, which matters for an index of a GB).
  std::vector<std::uint8_t> message;
  if (comm.rank() == 0) {
    try {
      message = work();
      message.push_back(1);
    } catch (const std::exception& e) {
      ByteWriter w;
      w.str(e.what());
      message = std::move(w.bytes);
      message.push_back(0);
    }
  }
  comm.broadcast(message, 0);
  if (message.empty()) throw std::logic_error("on_root: an empty message");
  const std::uint8_t status = message.back();
  message.pop_back();
  if (status == 0) {
    ByteReader r(message);
    throw std::runtime_error(r.str());
  }
  return message;
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
  std::vector<std::uint8_t>().swap(w.bytes);
  std::vector<Candidate> candidates;
  for (auto& part : all) {  // each rank's part is released once read: the peak holds one copy
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
    std::vector<std::uint8_t>().swap(part);
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

// Estimated work of one item in `stage`, in token units, for balancing the ranks
// (distributed/shard_plan). The index's cost is text bytes / 4 + image_cost; per stage:
//   select_questions  one sequence (image + all questions), plus the vision tower once
//   select_answers    the vision tower once, then one sequence per turn (image + the turn)
//   rewrite           per turn a prompt (image + the conversation) and the generated reply
// Only the balance depends on it, never a result.
std::uint64_t stage_cost(const IndexEntry& e, const std::string& stage, const JobConfig& config) {
  if (e.status != Status::valid) return 1;
  const std::uint64_t image = e.has_image ? config.pool.image_cost : 0;
  const std::uint64_t text = e.cost > image ? e.cost - image : 0, turns = e.turns;
  if (stage == "select_questions") return 2 * image + e.question_bytes / 4 + 8;
  if (stage == "select_answers") return image + turns * (image + 8) + text;
  return turns * (image + text + config.rewrite.max_new_tokens);
}

// Scores the items [begin, end) of a stage: one row per item, in item order, `record` empty.
using ScoreChunk = std::function<std::vector<ShardRow>(ChunkRange)>;
// Sees each row of this rank once, in item order, as chunks are scored or resumed.
using RowSink = std::function<void(const ShardRow&)>;

// This rank's part of a stage, chunk by chunk. Rows stay on disk in the chunk files.
struct StageRun {
  std::vector<ChunkRange> chunks;  // this rank's chunks, in order
  std::uint64_t items = 0;         // this rank's items
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
  std::string attempt;      // this attempt's name, the same on every rank (chunk claims)
};

// Rank 0 refuses another run's folder (unless forced) before any rank writes, clears the
// leftovers of killed attempts, and names this attempt; every rank gets the name.
RunContext start_run(Comm& comm, const JobConfig& config, const CurationOptions& options, const PoolIndex& index,
                     const std::string& fingerprint) {
  std::vector<std::uint8_t> attempt = on_root(comm, [&] {
    open_run(config.run.output_dir, RunIdentity{fingerprint, index.fingerprint}, options.force);
    std::string name = fmt::format("{:x}-{}", Clock::now().time_since_epoch().count(), getpid());
    return std::vector<std::uint8_t>(name.begin(), name.end());
  });
  return {comm, config, options, index, fingerprint, std::string(attempt.begin(), attempt.end())};
}

// Every rank scores its cost-balanced range of `items` (pool indices), chunk by chunk,
// reusing the chunks an earlier run committed. `group` items always stay together (ranges
// and chunks are cut at multiples of it: stage 3 calls its model on fixed groups). Rank 0
// shows progress over all ranks by watching the committed chunk files, and waits for them
// before returning (the caller then enters the stage's collective).
StageRun run_stage(const RunContext& ctx, const std::string& stage, const std::vector<std::uint64_t>& items,
                   std::uint64_t group, const ScoreChunk& score, const RowSink& sink) {
  Comm& comm = ctx.comm;
  const std::uint64_t groups = (items.size() + group - 1) / group;
  std::vector<std::uint64_t> costs(groups, 0);  // per group: estimated tokens
  for (std::size_t p = 0; p < items.size(); ++p)
    costs[p / group] += stage_cost(ctx.index.entries[items[p]], stage, ctx.config);
  std::vector<ShardRange> plan = plan_shards(costs, comm.size());
  // Chunks of at most chunk_records items and, with several ranks, at least 16 per rank so
  // that a rank that is ahead can take over work at a fine grain; whole groups.
  const std::uint64_t per = 16 * std::uint64_t(comm.size());
  const std::uint64_t fine = comm.size() == 1 ? ctx.config.run.chunk_records : (items.size() + per - 1) / per;
  const std::uint64_t chunk =
      std::max<std::uint64_t>(1, std::min<std::uint64_t>(ctx.config.run.chunk_records, fine) / group) * group;
  std::vector<ChunkRange> all_chunks;
  std::vector<std::vector<ChunkRange>> by_rank;  // the plan: rank r's chunks, in order
  StageRun run;
  for (int r = 0; r < comm.size(); ++r) {
    std::uint64_t b = std::min<std::uint64_t>(items.size(), plan[std::size_t(r)].begin * group);
    std::uint64_t e = std::min<std::uint64_t>(items.size(), plan[std::size_t(r)].end * group);
    by_rank.push_back(chunk_ranges(b, e, chunk));
    all_chunks.insert(all_chunks.end(), by_rank.back().begin(), by_rank.back().end());
  }
  const ShardMeta expected = stage_meta(comm, ctx.fingerprint, ctx.index, stage);
  const bool show = comm.rank() == 0 && ctx.options.progress;
  auto t_stage = Clock::now();
  std::optional<ProgressMeter> meter;
  if (show)
    meter.emplace(stage, items.size(), committed_items(ctx.config.run.output_dir, stage, all_chunks),
                  double(ctx.config.run.progress_seconds));

  // Each rank works through its planned chunks in order, then takes over chunks of the others
  // from the end of their lists (the cost estimate is only an estimate: a rank that is ahead
  // helps). A chunk is claimed before it is worked on, so each is done by exactly one rank.
  auto take = [&](const ChunkRange& c) {
    return comm.size() == 1 || claim_chunk(ctx.config.run.output_dir, stage, ctx.attempt, c);
  };
  std::vector<ChunkRange> order = by_rank[std::size_t(comm.rank())];
  for (int k = 1; k < comm.size(); ++k) {
    const auto& theirs = by_rank[std::size_t((comm.rank() + k) % comm.size())];
    order.insert(order.end(), theirs.rbegin(), theirs.rend());
  }
  for (const ChunkRange& c : order) {
    if (int sig = stop_requested())
      throw Interrupted(fmt::format("rank {}: stopped by signal {} in stage {} after {} of its items; the committed "
                                    "chunks stay in {}/work: rerun the same command to resume",
                                    comm.rank(), sig, stage, run.items, ctx.config.run.output_dir));
    if (!take(c)) continue;
    run.chunks.push_back(c);
    run.items += c.end - c.begin;
    const std::string path = chunk_path(ctx.config.run.output_dir, stage, c);
    std::vector<ShardRow> rows;
    std::string problem;
    if (read_chunk(path, expected, c, items, ctx.index, &rows, &problem)) {
      run.resumed += c.end - c.begin;
    } else {
      if (!problem.empty()) std::fprintf(stderr, "align2: rank %d: %s; scoring it again\n", comm.rank(), problem.c_str());
      auto t0 = Clock::now();
      rows = score(c);
      if (rows.size() != c.end - c.begin)
        throw std::logic_error(fmt::format("{}: {} rows for {} items", stage, rows.size(), c.end - c.begin));
      ShardMeta meta = expected;
      meta.stage_summary_json = json{{"begin", c.begin}, {"end", c.end}}.dump();
      meta.timings_json = json{{"busy_s", seconds_since(t0)}}.dump();
      write_chunk(path, meta, rows);
      run.busy_s += seconds_since(t0);
      run.computed += c.end - c.begin;
    }
    for (const ShardRow& row : rows) sink(row);
    if (meter && meter->due()) meter->update(committed_items(ctx.config.run.output_dir, stage, all_chunks));
  }
  if (meter) {  // the other ranks' chunks, while they finish
    std::uint64_t done = committed_items(ctx.config.run.output_dir, stage, all_chunks);
    while (comm.size() > 1 && done < items.size()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      done = committed_items(ctx.config.run.output_dir, stage, all_chunks);
      meter->update(done);
    }
    meter->finish(done);
  }
  run.wall_s = seconds_since(t_stage);
  std::sort(run.chunks.begin(), run.chunks.end(),
            [](const ChunkRange& a, const ChunkRange& b) { return a.begin < b.begin; });
  return run;
}

// Writes this rank's stage shard from its chunk files, one chunk in memory at a time:
// `finish` completes each chunk's rows (decisions, record texts) before they are appended.
void write_stage_shard(const RunContext& ctx, const std::string& stage, const std::vector<std::uint64_t>& items,
                       const StageRun& run, const ShardMeta& meta,
                       const std::function<void(ChunkRange, std::vector<ShardRow>&)>& finish) {
  const ShardMeta expected = stage_meta(ctx.comm, ctx.fingerprint, ctx.index, stage);
  ShardWriter writer(shard_path(ctx.config.run.output_dir, stage, ctx.comm.rank()), run.items);
  for (const ChunkRange& c : run.chunks) {
    std::vector<ShardRow> rows;
    std::string problem;
    const std::string path = chunk_path(ctx.config.run.output_dir, stage, c);
    if (!read_chunk(path, expected, c, items, ctx.index, &rows, &problem))
      throw std::runtime_error(fmt::format("{}: the chunk committed moments ago cannot be read back: {}", path,
                                           problem.empty() ? "it is gone" : problem));
    finish(c, rows);
    writer.append(rows);
  }
  writer.commit(meta);
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

// A chunk's scorer calls over its samples to score (runs [first, second) of them, in order).
// A scorer whose forward passes batch (group > 1) gets one call per fixed group: the samples
// whose stage positions `positions[i]` share position / group, so that a group's arithmetic is
// the same for any number of ranks. Other scorers get batches of batch_size samples and
// batch_tokens estimated tokens (`costs[i]`), which their results do not depend on.
std::vector<std::pair<std::size_t, std::size_t>> scorer_calls(const SelectionConfig& selection, std::size_t group,
                                                              const std::vector<std::uint64_t>& positions,
                                                              const std::vector<std::uint64_t>& costs) {
  if (group <= 1) return make_batches(costs, selection.batch_size, selection.batch_tokens);
  std::vector<std::pair<std::size_t, std::size_t>> out;
  for (std::size_t i = 0; i < positions.size(); ++i) {
    if (i == 0 || positions[i] / group != positions[i - 1] / group) out.emplace_back(i, i);
    out.back().second = i + 1;
  }
  return out;
}

json rank_timings(const StageRun& run, std::uint64_t scored) {
  return {{"busy_s", run.busy_s}, {"wall_s", run.wall_s}, {"records", run.items},
          {"computed", run.computed}, {"resumed", run.resumed}, {"scored", scored}};
}

// The score cache of one selection stage on this rank (config key score_cache,
// core/store/score_cache.h). Before the scorer is called, each valid sample is looked up by its
// digest; at the stage's end every valid, scored sample this rank holds (looked up, scored,
// or resumed from a chunk) is gathered on rank 0, which replaces the cache file: this pool's
// samples, plus (stage 2) earlier entries of samples still in the pool that did not survive
// stage 1 this time. Disabled when score_cache is "".
class StageCache {
 public:
  StageCache(const RunContext& ctx, const std::string& stage, const Scorer& scorer)
      : ctx_(ctx),
        stage_(stage),
        old_(ctx.config.selection.score_cache, stage, align2_version() + "|" + stage + "|" + scorer.stage_fingerprint(stage)),
        fresh_(ctx.config.selection.score_cache, stage, old_.model()) {
    if (!enabled()) return;
    std::string problem = old_.load();
    if (!problem.empty() && ctx.comm.rank() == 0) std::fprintf(stderr, "align2: %s\n", problem.c_str());
  }

  bool enabled() const { return !ctx_.config.selection.score_cache.empty(); }

  // The cached scores of `sample` (1 for stage 1, one per turn for stage 2), or false; the
  // digest is kept for add().
  bool lookup(const Sample& sample, std::vector<float>* scores) {
    if (!enabled()) return false;
    SampleDigest d;
    if (!sample_digest(sample, ctx_.config.pool.image_root, &d)) return false;
    digest_of_[sample.index] = d;
    if (!old_.find(d, scores)) return false;
    ++reused;
    return true;
  }

  // A valid row of this rank with its scores, as run_stage's sink sees it. Rows of resumed
  // chunks were not looked up in this attempt: their digest is computed here.
  void add(const ShardRow& row, CorpusReader& reader, const float* scores, std::size_t n) {
    if (!enabled()) return;
    SampleDigest d;
    auto it = digest_of_.find(row.index);
    if (it != digest_of_.end()) {
      d = it->second;
      digest_of_.erase(it);
    } else if (!sample_digest(reader.read_one(row.index), ctx_.config.pool.image_root, &d)) {
      return;
    }
    fresh_.add(d, scores, n);
  }

  // Collective, at the stage's end. `pool` (rank 0, stage 2): the digests of the pool's
  // samples; earlier entries of those are kept. Returns (rank 0) the digests of this stage's
  // samples. A cache that cannot be written is reported and the run goes on.
  std::vector<SampleDigest> save(const std::vector<SampleDigest>* pool) {
    if (!enabled()) return {};
    std::int64_t counts[2] = {std::int64_t(reused), std::int64_t(scored)};
    ctx_.comm.allreduce(counts, 2, ReduceOp::sum);
    std::vector<std::vector<std::uint8_t>> parts = ctx_.comm.gatherv(fresh_.serialize(), 0);
    fresh_ = ScoreCache(ctx_.config.selection.score_cache, stage_, old_.model());  // its memory released
    if (ctx_.comm.rank() != 0) return {};
    ScoreCache out(ctx_.config.selection.score_cache, stage_, old_.model());
    for (auto& part : parts) {
      out.add_serialized(part);
      std::vector<std::uint8_t>().swap(part);
    }
    std::vector<SampleDigest> mine = out.digests();
    if (pool) {
      old_.keep_only(*pool);
      out.add_serialized(old_.serialize());
    }
    try {
      out.save();
      if (ctx_.options.progress)
        std::fprintf(stderr, "%s: score cache: %lld samples reused, %lld scored by the model; %zu entries in %s\n",
                     stage_.c_str(), static_cast<long long>(counts[0]), static_cast<long long>(counts[1]), out.size(),
                     out.path().c_str());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "align2: the score cache was not updated: %s\n", e.what());
    }
    return mine;
  }

  // Adds this stage's cache counts to a rank's timings.
  void count(json* timings) const {
    if (!enabled()) return;
    (*timings)["cache_reused"] = reused;
    (*timings)["model_scored"] = scored;
  }

  std::uint64_t reused = 0;  // samples whose scores came from the cache in this attempt
  std::uint64_t scored = 0;  // samples passed to the scorer in this attempt

 private:
  const RunContext& ctx_;
  std::string stage_;
  ScoreCache old_, fresh_;
  std::unordered_map<std::uint64_t, SampleDigest> digest_of_;  // pool index -> digest, until add()
};

// Stage 3 over `items` (pool indices in stage order): fixed groups of rewrite_batch items, one
// rewriter call per group over its valid samples; other records pass through with their status
// and no rewrite columns. `first_stage`: the stage holds every input record (items[p] == p,
// align2 rewrite), so its shard carries the record texts the merge writes out. Returns
// stages.rewrite of summary.json (attempted = the valid samples among the items).
json rewrite_stage(const RunContext& ctx, CorpusReader& reader, Rewriter& rewriter,
                   const std::vector<std::uint64_t>& items, bool first_stage) {
  const JobConfig& config = ctx.config;
  const std::uint64_t group = config.rewrite.batch;
  RewriteCounts counts;
  auto sink = [&](const ShardRow& row) {
    if (row.status == Status::valid) counts.add(row);
  };
  StageRun run = run_stage(ctx, "rewrite", items, group, [&](ChunkRange chunk) {
    std::vector<ShardRow> rows;
    for (std::uint64_t g = chunk.begin; g < chunk.end; g += group) {  // fixed groups
      std::vector<Sample> samples;
      for (std::uint64_t p = g; p < std::min(chunk.end, g + group); ++p) samples.push_back(reader.read_one(items[p]));
      std::vector<const Sample*> batch;
      for (const Sample& sample : samples)
        if (sample.status == Status::valid) batch.push_back(&sample);
      std::vector<SampleRewrite> results = batch.empty() ? std::vector<SampleRewrite>{} : rewriter.rewrite(batch);
      if (results.size() != batch.size())
        throw std::logic_error(fmt::format("rewriter returned {} results for {} samples", results.size(), batch.size()));
      std::size_t next = 0;
      for (const Sample& sample : samples) {
        ShardRow row = sample_row(sample);
        row.record.clear();  // read from the pool again when the shard is assembled (first stage), else from stage 1
        if (sample.status == Status::valid) fill_rewrite_row(sample, results[next++], &row);
        rows.push_back(std::move(row));
      }
    }
    return rows;
  }, sink);
  rewriter.release();
  std::vector<std::vector<std::uint8_t>> all_counts = ctx.comm.allgatherv(counts.serialize());
  RewriteCounts total;
  for (const auto& part : all_counts) total.add(RewriteCounts::deserialize(part));
  ShardMeta meta = stage_meta(ctx.comm, ctx.fingerprint, ctx.index, "rewrite");
  meta.stage_summary_json = total.summary().dump();
  json timings = rank_timings(run, counts.attempted);
  const RewriteStats& st = rewriter.stats();
  timings["prompt_tokens"] = st.prompt_tokens;
  timings["generated_tokens"] = st.generated_tokens;
  timings["generate_s"] = st.generate_s;
  timings["review_s"] = st.review_s;
  meta.timings_json = timings.dump();
  write_stage_shard(ctx, "rewrite", items, run, meta, [&](ChunkRange chunk, std::vector<ShardRow>& rows) {
    if (!first_stage) return;
    std::vector<Sample> samples = reader.read(items.at(chunk.begin), items.at(chunk.end - 1) + 1);
    if (samples.size() != rows.size()) throw std::logic_error("rewrite: the first stage's items are not the pool");
    for (std::size_t k = 0; k < rows.size(); ++k) rows[k].record = printable_text(samples[k].raw);
  });
  return total.summary();
}

// Merges the shards of `stages` on rank 0 once every rank's are on disk; a failure there
// reaches every rank.
void merge_on_root(const RunContext& ctx, const std::vector<std::string>& stages, CurationResult* result) {
  ctx.comm.barrier();
  on_root(ctx.comm, [&] {
    std::vector<std::string> paths;
    for (const std::string& stage : stages)
      for (int r = 0; r < ctx.comm.size(); ++r) paths.push_back(shard_path(ctx.config.run.output_dir, stage, r));
    result->merged = merge_shards(paths, ctx.config.run.output_dir);
    return std::vector<std::uint8_t>{};
  });
}

// The two selection stages: their names (on disk), the score they rank by, the decision
// column they fill and what the score cache keeps of a row.
struct SelectionStage {
  const char* name;
  bool first;                      // holds every input record: its shard carries the record texts
  double ShardRow::*score;         // what the stage ranks by
  std::int8_t ShardRow::*decision; // the stage's keep flag
};
const SelectionStage kQuestionStage{"select_questions", true, &ShardRow::question_score, &ShardRow::selected_questions};
const SelectionStage kAnswerStage{"select_answers", false, &ShardRow::answer_score, &ShardRow::selected_answers};

// Scores a chunk of a selection stage (rows in item order), looking samples up in the cache first.
using ScoreSelectionChunk = std::function<std::vector<ShardRow>(ChunkRange, StageCache&)>;

// Stage 1's scoring of the records [chunk.begin, chunk.end) (stage 1's items are the pool):
// one question score per valid sample; a sample the scorer cannot use (its image) becomes
// invalid with the scorer's reason.
std::vector<ShardRow> score_questions(const RunContext& ctx, CorpusReader& reader, Scorer& scorer, StageCache& cache,
                                      ChunkRange chunk) {
  std::vector<Sample> samples = reader.read(chunk.begin, chunk.end);
  std::vector<const Sample*> valid;   // the valid samples the scorer scores (not in the cache)
  std::vector<std::size_t> valid_at;  // valid[i] is samples[valid_at[i]]
  std::vector<double> score_of(samples.size(), 0.0);
  std::vector<float> cached;
  for (std::size_t k = 0; k < samples.size(); ++k)
    if (samples[k].status == Status::valid) {
      if (cache.lookup(samples[k], &cached) && cached.size() == 1) {
        score_of[k] = cached[0];
        continue;
      }
      valid.push_back(&samples[k]);
      valid_at.push_back(k);
    }
  cache.scored += valid.size();
  std::vector<float> scores(valid.size());
  std::vector<ScoreFailure> failures;
  std::vector<std::uint64_t> costs, positions;  // per valid sample: estimated tokens, stage position
  for (const Sample* v : valid) costs.push_back(ctx.index.entries[v->index].cost);
  for (std::size_t k : valid_at) positions.push_back(chunk.begin + k);
  for (auto [b, e] : scorer_calls(ctx.config.selection, scorer.group_size(), positions, costs)) {
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
}

// Stage 2's scoring of the items [chunk.begin, chunk.end) of `survivors`: one answer score
// per turn and their mean; a survivor the scorer cannot use now is dropped with its reason.
std::vector<ShardRow> score_answers(const RunContext& ctx, CorpusReader& reader, Scorer& scorer, StageCache& cache,
                                    const std::vector<std::uint64_t>& survivors, ChunkRange chunk) {
  std::vector<Sample> samples;
  for (std::uint64_t p = chunk.begin; p < chunk.end; ++p) samples.push_back(reader.read_one(survivors[p]));
  std::vector<std::vector<float>> turn_scores(samples.size());
  std::vector<const ScoreFailure*> failed(samples.size(), nullptr);
  std::vector<ScoreFailure> failures;
  failures.reserve(samples.size());  // `failed` points into it
  std::vector<std::size_t> todo;                // samples the scorer scores (not in the cache)
  std::vector<std::uint64_t> costs, positions;  // per todo entry: estimated tokens, stage position
  for (std::size_t k = 0; k < samples.size(); ++k) {
    if (cache.lookup(samples[k], &turn_scores[k]) && turn_scores[k].size() == samples[k].turns.size()) continue;
    todo.push_back(k);
    costs.push_back(ctx.index.entries[samples[k].index].cost);
    positions.push_back(chunk.begin + k);
  }
  cache.scored += todo.size();
  for (auto [b, e] : scorer_calls(ctx.config.selection, scorer.group_size(), positions, costs)) {
    std::vector<const Sample*> batch;
    for (std::size_t t = b; t < e; ++t) batch.push_back(&samples[todo[t]]);
    std::vector<std::vector<float>> out(batch.size());
    std::vector<ScoreFailure> batch_failures;
    scorer.score_answers(batch, &out, &batch_failures);
    for (std::size_t t = b; t < e; ++t) turn_scores[todo[t]] = std::move(out[t - b]);
    for (ScoreFailure& f : batch_failures) {
      f.sample = todo.at(b + f.sample);
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
      row.status = Status::invalid;
      row.reason = failed[k]->reason;
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
}

// One selection stage over `items` (pool indices): every rank scores its share chunk by chunk
// (committed chunks and cached scores reused), the scores are gathered, the top `fraction` of
// each subset is kept, and each rank writes its stage shard with the decisions (the first
// stage's rows with their record texts). Returns, per pool index, 1 for the records kept.
// The cache (StageCache::save): `cache_pool` the digests whose earlier entries stay;
// `cache_digests` receives (rank 0) this stage's digests.
std::vector<std::uint8_t> run_selection(const RunContext& ctx, CorpusReader& reader, const SelectionStage& stage,
                                        const std::vector<std::uint64_t>& items, double fraction, Scorer& scorer,
                                        const std::vector<SampleDigest>* cache_pool,
                                        std::vector<SampleDigest>* cache_digests, const ScoreSelectionChunk& score) {
  const bool one_per_image = ctx.config.selection.one_per_image;
  ScoredSet scored;
  std::optional<StageCache> cache(std::in_place, ctx, stage.name, scorer);
  auto sink = [&](const ShardRow& row) {
    if (row.status != Status::valid) return;
    scored.add(row.index, row.*stage.score, row.image);
    if (stage.first) {
      const float value = float(row.question_score);  // the scorer's float, exactly
      cache->add(row, reader, &value, 1);
    } else {
      cache->add(row, reader, row.answer_scores.data(), row.answer_scores.size());
    }
  };
  const std::uint64_t group = std::max<std::size_t>(1, scorer.group_size());  // chunks cut at whole groups
  StageRun run = run_stage(ctx, stage.name, items, group, [&](ChunkRange chunk) { return score(chunk, *cache); }, sink);
  scorer.release();  // this stage's model leaves memory before the next one loads
  std::vector<SampleDigest> digests = cache->save(cache_pool);
  if (cache_digests) *cache_digests = std::move(digests);
  StageSelection selection = select_stage(ctx.comm, ctx.index, scored, fraction, one_per_image);
  const std::vector<std::uint8_t> kept = std::move(selection.kept);
  ShardMeta meta = stage_meta(ctx.comm, ctx.fingerprint, ctx.index, stage.name);
  meta.stage_summary_json =
      selection_summary(ctx.index, selection.selection, items.size(), fraction, one_per_image).dump();
  json timings = rank_timings(run, scored.index.size());
  cache->count(&timings);
  cache.reset();
  meta.timings_json = timings.dump();
  scored = {};
  selection = {};
  write_stage_shard(ctx, stage.name, items, run, meta, [&](ChunkRange chunk, std::vector<ShardRow>& rows) {
    std::vector<Sample> samples;  // the first stage's shard carries the record texts, read from the pool
    if (stage.first) samples = reader.read(chunk.begin, chunk.end);
    for (std::size_t k = 0; k < rows.size(); ++k) {
      if (stage.first) rows[k].record = printable_text(samples[k].raw);
      // Stage 1 decides its valid rows; stage 2 every row (a survivor it could not score: 0).
      if (!stage.first || rows[k].status == Status::valid) rows[k].*stage.decision = std::int8_t(kept[rows[k].index]);
    }
  });
  return kept;
}

}  // namespace

IndexOptions index_options(const PoolConfig& pool) {
  IndexOptions options;
  options.validation.image_root = pool.image_root;
  options.validation.subset_field = pool.subset_field;
  options.validation.max_record_bytes = pool.max_record_bytes;
  options.image_cost = pool.image_cost;
  return options;
}

namespace {

// This rank's share of the merge's deferred repeats (every size()-th, from rank()): their keys
// set by reading the records again, as (pool index, key) pairs for the other ranks.
std::vector<std::uint8_t> my_repeat_keys(const Comm& comm, PoolIndex& index, const std::vector<std::uint64_t>& deferred) {
  std::vector<std::uint64_t> mine;
  for (std::size_t k = std::size_t(comm.rank()); k < deferred.size(); k += std::size_t(comm.size()))
    mine.push_back(deferred[k]);
  set_repeat_keys(index, mine);
  ByteWriter w;
  for (std::uint64_t i : mine) {
    w.u64(i);
    w.raw(index.entries[i].key, 16);
  }
  return std::move(w.bytes);
}

// Applies the repeat keys every rank read (pairs of pool index and key) and seals the index.
void apply_repeat_keys(PoolIndex& index, const std::vector<std::vector<std::uint8_t>>& all_keys,
                       std::size_t expected) {
  std::uint64_t set = 0;
  for (const std::vector<std::uint8_t>& part : all_keys) {
    ByteReader r(part);
    while (!r.done()) {
      const std::uint64_t i = r.u64();
      if (i >= index.entries.size() || index.entries[i].repeat == 0)
        throw std::runtime_error("the ranks' pool indexes differ: a repeat key came for a record that is no repeat here");
      r.raw(index.entries[i].key, 16);
      ++set;
    }
  }
  if (set != expected)
    throw std::runtime_error(fmt::format("the ranks' pool indexes differ: {} repeat keys came for {} repeats", set,
                                         expected));
  seal_index(index);
}

}  // namespace

PoolIndex share_index(Comm& comm, const PoolConfig& pool) {
  const IndexOptions options = index_options(pool);
  // Every rank merges the same parts into the same index: no GB-sized index is serialized,
  // broadcast and read back, and the merge's time is every rank's at once, not rank 0's alone.
  // The repeats' keys need their records read again: each rank reads its share of them.
  std::vector<std::vector<std::uint8_t>> parts =
      comm.allgatherv(index_pool_part(pool.files, options, comm.rank(), comm.size()));
  PoolIndex index;
  std::vector<std::uint64_t> deferred;  // the repeats, in pool order (the same on every rank)
  std::vector<std::uint8_t> keys;       // this rank's share of their keys
  std::string error;                    // this rank failed: why
  const auto attempt = [&](const std::function<void()>& step) {
    if (!error.empty()) return;
    try {
      step();
    } catch (const std::exception& e) {
      error = e.what()[0] ? e.what() : "the pool index merge failed";
    }
  };
  attempt([&] {
    index = merge_pool_parts(pool.files, options, std::move(parts), &deferred);
    keys = my_repeat_keys(comm, index, deferred);
  });
  const std::vector<std::vector<std::uint8_t>> all_keys = comm.allgatherv(keys);
  attempt([&] { apply_repeat_keys(index, all_keys, deferred.size()); });
  // Every rank's verdict: its error, or its index's fingerprint. A pool error is every rank's
  // (the parts are the same), but a rank may also fail alone (out of memory, a file it cannot
  // read again), or see another disk (a file indexed whole by the merge checks its images on
  // each rank): all agree before any goes on.
  const std::string verdict = error.empty() ? "F" + index.fingerprint : "E" + error;
  const std::vector<std::vector<std::uint8_t>> verdicts =
      comm.allgatherv(std::vector<std::uint8_t>(verdict.begin(), verdict.end()));
  for (const std::vector<std::uint8_t>& v : verdicts)
    if (!v.empty() && v[0] == 'E') throw std::runtime_error(std::string(v.begin() + 1, v.end()));
  for (std::size_t r = 0; r < verdicts.size(); ++r)
    if (std::string(verdicts[r].begin(), verdicts[r].end()) != verdict)
      throw std::runtime_error(fmt::format(
          "the pool index of rank {} differs from rank {}'s (fingerprints {} and {}): do all ranks see the same pool "
          "files and image_root {}?", r, comm.rank(), std::string(verdicts[r].begin() + 1, verdicts[r].end()),
          index.fingerprint, pool.image_root));
  return index;
}

CurationResult run_curation(Comm& comm, const JobConfig& config, Scorer& scorer, const CurationOptions& options,
                            Rewriter* rewriter) {
  CurationResult result;
  const PoolIndex index = share_index(comm, config.pool);
  const std::uint64_t n = index.entries.size();
  result.input_records = n;
  const std::string fingerprint =
      config.fingerprint + ":" + scorer.fingerprint() + (rewriter ? ":" + rewriter->fingerprint() : std::string(":no-rewrite"));
  CorpusReader reader(index);
  RunContext ctx = start_run(comm, config, options, index, fingerprint);
  const SelectionConfig& sel = config.selection;

  // ---- Stage 1: question scores over every record; invalid records pass through with their status.
  std::vector<std::uint64_t> all(n);
  for (std::uint64_t i = 0; i < n; ++i) all[i] = i;
  std::vector<SampleDigest> pool_digests;  // rank 0: the pool's scored samples (stage 2 keeps their cache entries)
  const std::vector<std::uint8_t> kept1 = run_selection(
      ctx, reader, kQuestionStage, all, sel.alpha, scorer, nullptr, &pool_digests,
      [&](ChunkRange chunk, StageCache& cache) { return score_questions(ctx, reader, scorer, cache, chunk); });

  // ---- Stage 2: survivors re-sharded by cost; answer scores per turn, mean per sample.
  std::vector<std::uint64_t> survivors;
  for (std::uint64_t i = 0; i < n; ++i)
    if (kept1[i]) survivors.push_back(i);
  result.stage1_kept = survivors.size();
  const std::vector<std::uint8_t> kept2 = run_selection(
      ctx, reader, kAnswerStage, survivors, sel.beta, scorer, &pool_digests, nullptr,
      [&](ChunkRange chunk, StageCache& cache) { return score_answers(ctx, reader, scorer, cache, survivors, chunk); });
  for (std::uint8_t k : kept2) result.stage2_kept += k;
  std::vector<std::uint64_t>().swap(survivors);
  std::vector<SampleDigest>().swap(pool_digests);

  // ---- Stage 3: the inner LLM rewrites every turn of the curated samples and reviews its rewrites.
  std::vector<std::string> stages = {kQuestionStage.name, kAnswerStage.name};
  if (rewriter) {
    std::vector<std::uint64_t> curated;
    for (std::uint64_t i = 0; i < n; ++i)
      if (kept2[i]) curated.push_back(i);
    result.rewrite = rewrite_stage(ctx, reader, *rewriter, curated, /*first_stage=*/false);
    stages.push_back("rewrite");
  }

  merge_on_root(ctx, stages, &result);
  return result;
}

CurationResult run_rewrite(Comm& comm, const JobConfig& config, Rewriter& rewriter, const CurationOptions& options) {
  CurationResult result;
  const PoolIndex index = share_index(comm, config.pool);
  const std::uint64_t n = index.entries.size();
  result.input_records = n;
  // Not curate's fingerprint: a curate folder is refused (and the other way round).
  const std::string fingerprint = config.fingerprint + ":rewrite-only:" + rewriter.fingerprint();
  CorpusReader reader(index);
  RunContext ctx = start_run(comm, config, options, index, fingerprint);
  // The rewrite stage is the first and only stage: it holds every input record (invalid ones
  // pass through with their status), and the merge keeps every valid one, in pool order.
  std::vector<std::uint64_t> all(n);
  for (std::uint64_t i = 0; i < n; ++i) all[i] = i;
  result.rewrite = rewrite_stage(ctx, reader, rewriter, all, /*first_stage=*/true);
  merge_on_root(ctx, {"rewrite"}, &result);
  return result;
}

}  // namespace align2
