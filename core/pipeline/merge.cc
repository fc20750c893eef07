// The merge streams the stage shards (see core/pipeline/merge.h for what it checks and
// docs/architecture.md for its memory model):
//
//  1. the first stage's shards, block by block without record texts: per pool index the
//     key (16 bytes), the final score, the stage decisions and flags; where its row is
//     (only when the shards are not in pool-index order);
//  2. each later stage the same way: it must hold exactly the survivors of the stage
//     before; per row its pool index and position;
//  3. the kept records ordered by (final score desc, key asc);
//  4. scores.h5 by streaming the first stage's rows in pool-index order, joined with the
//     later stages' rows, through ShardWriter; summary counters on the way. Rows are
//     fetched by position in windows of a block, so any row order in the shards works;
//     the order curation writes (ranks' shards cover the pool in order) reads each shard
//     once, front to back;
//  5. curated.json by reading the kept records' texts back from scores.h5 in global order,
//     a block at a time, into an AtomicFileWriter; then summary.json and report.html.
//
// A run of align2 rewrite has one stage, "rewrite", holding every input record and no
// selection: every valid record is kept, in pool order (global_rank = its position among the
// valid records), with its kept rewrites applied in curated.json.
#include "core/pipeline/merge.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>

#include "core/pipeline/report.h"
#include "core/store/output_layout.h"
#include "core/util/atomic_file.h"
#include "core/util/digest.h"
#include "core/rewrite/rewrite_stage.h"
#include "core/store/shard_store.h"

namespace align2 {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// Rows read, joined and written per step; record texts of one block are in memory at a time.
constexpr std::uint64_t kBlockRows = 4096;

struct ShardInfo {
  std::string path;
  ShardMeta meta;
};

json parse_meta_json(const std::string& text, const std::string& path, const char* what) {
  if (text.empty()) return json::object();
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) throw std::runtime_error(fmt::format("{}: attribute {} is not JSON", path, what));
  return j;
}

// The first few names of a list and how many there are, for error messages:
// "a, b, c" or "a, ..., j, ... (123 in all)".
class NameList {
 public:
  static constexpr std::size_t kShown = 10;

  void add(std::string name) {
    if (first_.size() < kShown) first_.push_back(std::move(name));
    ++count_;
  }
  bool full() const { return first_.size() >= kShown; }  // further names are only counted
  void count_one() { ++count_; }
  bool empty() const { return count_ == 0; }
  std::uint64_t count() const { return count_; }
  std::string str() const {
    std::string s;
    for (std::size_t i = 0; i < first_.size(); ++i) s += (i ? ", " : "") + first_[i];
    if (count_ > kShown) s += fmt::format(", ... ({} in all)", count_);
    return s;
  }

 private:
  std::vector<std::string> first_;
  std::uint64_t count_ = 0;
};

// Record keys by pool index. A key of 32 lowercase hex characters (every key align2
// computes) is stored as its 16 bytes, whose byte order is the text's order; any other
// key (hand-made shards) is kept as text aside.
class KeyTable {
 public:
  explicit KeyTable(std::uint64_t n) : packed_(n), is_text_(n, false) {}

  void set(std::uint64_t i, const std::string& key) {
    if (pack(key, packed_[i])) {
      is_text_[i] = false;
      text_.erase(i);
    } else {
      is_text_[i] = true;
      text_[i] = key;
    }
  }

  std::string get(std::uint64_t i) const { return is_text_[i] ? text_.at(i) : to_hex(packed_[i].data(), 16); }

  bool equals(std::uint64_t i, const std::string& key) const {
    Packed p;
    if (!pack(key, p)) return is_text_[i] && text_.at(i) == key;
    return !is_text_[i] && p == packed_[i];
  }

  // <0, 0, >0 as the keys' texts compare.
  int compare(std::uint64_t a, std::uint64_t b) const {
    if (!is_text_[a] && !is_text_[b]) return std::memcmp(packed_[a].data(), packed_[b].data(), 16);
    return get(a).compare(get(b));
  }

 private:
  using Packed = std::array<std::uint8_t, 16>;

  static bool pack(const std::string& key, Packed& out) { return from_hex(key, out.data(), out.size()); }

  std::vector<Packed> packed_;                             // [n]
  std::vector<bool> is_text_;                              // [n]
  std::unordered_map<std::uint64_t, std::string> text_;    // keys that are not 32 lowercase hex
};

// The rows of one stage: its shards in rank order, read as one sequence of "positions"
// (rank 0's rows first). Rows are fetched by position in blocks; one shard is open at a time.
class StageRows {
 public:
  StageRows(std::vector<std::string> paths, std::vector<std::uint64_t> base)
      : paths_(std::move(paths)), base_(std::move(base)) {}

  // The rows at `positions` (any order), in the order asked. Reads each needed stretch of
  // a shard in windows of at most kBlockRows rows.
  std::vector<ShardRow> fetch(const std::vector<std::uint64_t>& positions, bool records) {
    std::vector<std::size_t> order(positions.size());  // positions sorted
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return positions[a] < positions[b]; });
    std::vector<ShardRow> out(positions.size());
    for (std::size_t i = 0; i < order.size();) {
      const std::uint64_t first = positions[order[i]];
      const std::size_t shard = shard_of(first);
      const std::uint64_t limit = std::min(base_[shard + 1], first + kBlockRows);
      std::size_t j = i;
      while (j < order.size() && positions[order[j]] < limit) ++j;
      const std::uint64_t last = positions[order[j - 1]];
      std::vector<ShardRow> window =
          reader(shard).read_rows(first - base_[shard], last + 1 - base_[shard], ShardReadOptions{records});
      for (std::size_t t = i; t < j; ++t) {
        ShardRow& row = window[positions[order[t]] - first];
        if (t + 1 < j && positions[order[t + 1]] == positions[order[t]]) out[order[t]] = row;  // asked again
        else out[order[t]] = std::move(row);
      }
      i = j;
    }
    return out;
  }

 private:
  std::size_t shard_of(std::uint64_t position) const {
    if (position >= base_.back()) throw std::logic_error("merge: row position past the stage's rows");
    return std::size_t(std::upper_bound(base_.begin(), base_.end(), position) - base_.begin()) - 1;
  }
  const ShardReader& reader(std::size_t shard) {
    if (open_ != shard) {
      reader_.reset();
      reader_.emplace(paths_[shard]);
      open_ = shard;
    }
    return *reader_;
  }

  std::vector<std::string> paths_;
  std::vector<std::uint64_t> base_;  // [shards + 1]: first position of each shard, then the total
  std::size_t open_ = SIZE_MAX;
  std::optional<ShardReader> reader_;
};

// Calls visit(position, row_in_shard, shard_path, row) for every row of the stage's shards in
// position order, a block at a time, without record texts. Returns the positions' bases.
template <class Visit>
std::vector<std::uint64_t> scan_stage(const std::vector<std::string>& paths, Visit visit) {
  std::vector<std::uint64_t> base = {0};
  std::uint64_t position = 0;
  for (const std::string& path : paths) {
    ShardReader reader(path);
    for (std::uint64_t b = 0; b < reader.rows(); b += kBlockRows) {
      std::vector<ShardRow> rows =
          reader.read_rows(b, std::min(reader.rows(), b + kBlockRows), ShardReadOptions{/*records=*/false});
      for (std::uint64_t r = 0; r < rows.size(); ++r) visit(position++, b + r, path, rows[r]);
    }
    base.push_back(position);
  }
  return base;
}

// Copies one stage's columns of `from` into the combined row.
void take_stage_columns(const std::string& stage, ShardRow& into, ShardRow& from) {
  if (stage == "select_questions") {
    into.question_score = from.question_score;
    into.selected_questions = from.selected_questions;
    into.truncated = from.truncated;
  } else if (stage == "select_answers") {
    if (from.status != Status::valid) {  // could not be scored in this stage
      into.status = from.status;
      into.reason = from.reason;
      into.message = from.message;
    }
    into.answer_scores = std::move(from.answer_scores);
    into.answer_score = from.answer_score;
    into.selected_answers = from.selected_answers;
    if (from.truncated == 1) into.truncated = 1;
  } else if (stage == "rewrite") {
    into.rewritten_questions = std::move(from.rewritten_questions);
    into.rewritten_answers = std::move(from.rewritten_answers);
    into.rewrite_replies = std::move(from.rewrite_replies);
    into.rewrite_reasons = std::move(from.rewrite_reasons);
    into.rewrite_kept = std::move(from.rewrite_kept);
    into.review_p = std::move(from.review_p);
    into.review_p_order1 = std::move(from.review_p_order1);
    into.review_p_order2 = std::move(from.review_p_order2);
  }
}

// The stage's keep flag of a row.
std::int8_t stage_decision(const std::string& stage, const ShardRow& row) {
  if (stage == "select_questions") return row.selected_questions;
  if (stage == "select_answers") return row.selected_answers;
  return row.kept;
}

// ---- Phase 1: the run's shards, grouped by stage.

struct RunShards {
  std::vector<ShardInfo> shards;
  std::vector<std::string> stages;                          // present, in cascade order
  std::map<std::string, std::vector<std::size_t>> by_stage;  // stage -> positions in `shards`, by rank
  bool rewrite_only = false;   // align2 rewrite: the rewrite stage alone, holding every input record
  std::string last_selection;  // whose flag and score decide ("" without a selection stage)

  const ShardMeta& first() const { return shards.front().meta; }
  std::vector<std::string> paths(const std::string& stage) const {
    std::vector<std::string> out;
    for (std::size_t si : by_stage.at(stage)) out.push_back(shards[si].path);
    return out;
  }
};

// Checks that the shards belong to one run and that every present stage has one shard per rank.
RunShards group_shards(const std::vector<std::string>& shard_paths) {
  if (shard_paths.empty()) throw std::runtime_error("merge: no shard files given");
  RunShards run;
  for (const std::string& p : shard_paths) run.shards.push_back({p, read_shard_meta(p)});
  const std::vector<ShardInfo>& shards = run.shards;
  const ShardMeta& first = run.first();
  for (const ShardInfo& s : shards) {
    if (s.meta.input_fingerprint != first.input_fingerprint || s.meta.input_records != first.input_records)
      throw std::runtime_error(fmt::format("merge: {} was written for another input (fingerprint {}) than {} ({})",
                                           s.path, s.meta.input_fingerprint, shards.front().path,
                                           first.input_fingerprint));
    if (s.meta.config_fingerprint != first.config_fingerprint)
      throw std::runtime_error(fmt::format("merge: {} was written with another job config than {}", s.path,
                                           shards.front().path));
    if (std::find(stage_order().begin(), stage_order().end(), s.meta.stage) == stage_order().end())
      throw std::runtime_error(fmt::format("merge: {} has unknown stage \"{}\"", s.path, s.meta.stage));
  }
  for (const std::string& stage : stage_order()) {
    std::vector<std::size_t> members;
    for (std::size_t i = 0; i < shards.size(); ++i)
      if (shards[i].meta.stage == stage) members.push_back(i);
    if (members.empty()) continue;
    int world = shards[members[0]].meta.world_size;
    if (world < 1 || std::size_t(world) > shards.size())
      throw std::runtime_error(fmt::format("merge: stage {}: {} says world size {}, but {} shards were given in all",
                                           stage, shards[members[0]].path, world, shards.size()));
    std::vector<std::size_t> by_rank(std::size_t(std::max(world, 0)), SIZE_MAX);
    for (std::size_t i : members) {
      const ShardMeta& m = shards[i].meta;
      if (m.world_size != world || m.rank < 0 || m.rank >= world)
        throw std::runtime_error(fmt::format("merge: stage {}: {} says rank {} of {}, others say {} ranks", stage,
                                             shards[i].path, m.rank, m.world_size, world));
      if (by_rank[std::size_t(m.rank)] != SIZE_MAX)
        throw std::runtime_error(fmt::format("merge: stage {}: two shards for rank {}: {} and {}", stage, m.rank,
                                             shards[by_rank[std::size_t(m.rank)]].path, shards[i].path));
      by_rank[std::size_t(m.rank)] = i;
    }
    for (int r = 0; r < world; ++r)
      if (by_rank[std::size_t(r)] == SIZE_MAX)
        throw std::runtime_error(fmt::format("merge: stage {}: the shard of rank {} (of {}) is missing", stage, r, world));
    run.stages.push_back(stage);
    run.by_stage[stage] = by_rank;
  }
  run.rewrite_only = run.stages.size() == 1 && run.stages.front() == "rewrite";
  if (run.stages.front() != stage_order().front() && !run.rewrite_only)
    throw std::runtime_error(fmt::format("merge: no {} shards: the first stage holds every input record",
                                         stage_order().front()));
  // Final decision: the last selection stage's flag; final score: its score. Without a
  // selection stage every valid record is kept.
  if (!run.rewrite_only)
    run.last_selection = std::find(run.stages.begin(), run.stages.end(), "select_answers") != run.stages.end()
                             ? "select_answers" : "select_questions";
  return run;
}

// ---- Phases 2 and 3: small fixed-size state per pool index, filled by scanning the stages
// without record texts.

constexpr std::uint8_t kSeen = 1, kValid = 2;  // kValid: the combined row's status is valid

struct PoolState {
  explicit PoolState(std::uint64_t records)
      : n(records), keys(records), flags(records, 0), selected_questions(records, -1),
        selected_answers(records, -1), final_score(records, std::numeric_limits<double>::quiet_NaN()) {}

  std::uint64_t n;                                   // input records
  KeyTable keys;                                     // [n]
  std::vector<std::uint8_t> flags;                   // [n] kSeen | kValid
  std::vector<std::int8_t> selected_questions;       // [n] stage 1 decision
  std::vector<std::int8_t> selected_answers;         // [n] stage 2 decision
  std::vector<double> final_score;                   // [n] the last selection stage's score
  // Position (in the first stage's rows) of each pool index's row; empty while every row sat
  // at its own pool index (the shards of a run cover the pool in order).
  std::vector<std::uint64_t> where;
  std::vector<std::uint64_t> base0;                  // the first stage's shard bases (StageRows)
  // Per later stage: (pool index, position) of each row, sorted; and its shard bases.
  std::vector<std::vector<std::pair<std::uint64_t, std::uint64_t>>> later_rows;
  std::vector<std::vector<std::uint64_t>> later_base;

  std::uint64_t where_of(std::uint64_t i) const { return where.empty() ? i : where[i]; }
  std::int8_t decision(const std::string& stage, std::uint64_t i) const {
    if (stage == "select_questions") return selected_questions[i];
    if (stage == "select_answers") return selected_answers[i];
    throw std::logic_error("merge: no stage follows " + stage);
  }
  // Only row positions are needed once the global order is known.
  void keep_positions_only() {
    keys = KeyTable(0);
    std::vector<std::uint8_t>().swap(flags);
    std::vector<std::int8_t>().swap(selected_questions);
    std::vector<std::int8_t>().swap(selected_answers);
    std::vector<double>().swap(final_score);
  }
};

// The first stage: every input record exactly once (missing pool indices and repeated keys named).
void scan_first_stage(const RunShards& run, PoolState* st) {
  const std::string& stage0 = run.stages.front();
  const bool by_answer = run.last_selection == "select_answers";
  const std::uint64_t n = st->n;
  NameList repeated;
  st->base0 = scan_stage(
      run.paths(stage0), [&](std::uint64_t position, std::uint64_t r, const std::string& path, const ShardRow& row) {
        if (row.index >= n)
          throw std::runtime_error(fmt::format("merge: {} row {}: pool index {} outside the input's {} records",
                                               path, r, row.index, n));
        const std::uint64_t i = row.index;
        if (st->flags[i] & kSeen) {
          repeated.add(fmt::format("{} (pool index {})", row.key, i));
          return;
        }
        st->flags[i] = std::uint8_t(kSeen | (row.status == Status::valid ? kValid : 0));
        st->keys.set(i, row.key);
        st->selected_questions[i] = row.selected_questions;
        st->selected_answers[i] = row.selected_answers;
        st->final_score[i] = by_answer ? row.answer_score : row.question_score;
        if (position != i && st->where.empty()) {
          st->where.resize(n);
          for (std::uint64_t k = 0; k < n; ++k) st->where[k] = k;
        }
        if (!st->where.empty()) st->where[i] = position;
      });
  {  // keys repeated under different pool indices (the first by pool index stays)
    std::vector<std::uint64_t> by_key;
    for (std::uint64_t i = 0; i < n; ++i)
      if (st->flags[i] & kSeen) by_key.push_back(i);
    std::sort(by_key.begin(), by_key.end(), [&](std::uint64_t a, std::uint64_t b) {
      int c = st->keys.compare(a, b);
      return c != 0 ? c < 0 : a < b;
    });
    for (std::size_t k = 1; k < by_key.size(); ++k)
      if (st->keys.compare(by_key[k - 1], by_key[k]) == 0)
        repeated.add(fmt::format("{} (pool index {})", st->keys.get(by_key[k]), by_key[k]));
  }
  NameList missing;
  for (std::uint64_t i = 0; i < n; ++i)
    if (!(st->flags[i] & kSeen)) missing.add(std::to_string(i));
  if (!repeated.empty())
    throw std::runtime_error(fmt::format("merge: stage {}: records appear more than once: keys {}", stage0,
                                         repeated.str()));
  if (!missing.empty())
    throw std::runtime_error(fmt::format("merge: stage {}: {} input records are missing: pool indices {}", stage0,
                                         missing.count(), missing.str()));
}

// Every stage's summary (the ranks must agree on it) and the ranks' timings, with totals.
void read_stage_summaries(const RunShards& run, json* stages_json, json* timings) {
  *stages_json = json::object();
  *timings = json::object();
  for (const std::string& stage : run.stages) {
    json summary;
    json busy = json::array();
    const std::vector<std::size_t>& members = run.by_stage.at(stage);
    for (std::size_t si : members) {
      const ShardInfo& shard = run.shards[si];
      json s = parse_meta_json(shard.meta.stage_summary_json, shard.path, "stage_summary_json");
      if (si == members.front()) summary = s;
      else if (s != summary)
        throw std::runtime_error(fmt::format("merge: stage {}: {} disagrees with rank 0 on the stage's summary "
                                             "(ranks computed different selections)", stage, shard.path));
      busy.push_back(parse_meta_json(shard.meta.timings_json, shard.path, "timings_json"));
    }
    (*stages_json)[stage] = summary;
    (*timings)[stage] = {{"ranks", busy.size()}, {"per_rank", busy}};
    for (const char* count : {"computed", "resumed", "cache_reused", "model_scored"}) {  // totals of the ranks
      std::uint64_t total = 0;
      bool any = false;
      for (const json& r : busy)
        if (r.is_object() && r.contains(count) && r[count].is_number_unsigned()) {
          total += r[count].get<std::uint64_t>();
          any = true;
        }
      if (any) (*timings)[stage][count] = total;
    }
  }
}

// Each later stage holds exactly the records the stage before kept; per row its pool index
// and position.
void scan_later_stages(const RunShards& run, PoolState* st) {
  const bool by_answer = run.last_selection == "select_answers";
  const std::uint64_t n = st->n;
  st->later_rows.assign(run.stages.size(), {});
  st->later_base.assign(run.stages.size(), {});
  for (std::size_t k = 1; k < run.stages.size(); ++k) {
    const std::string& stage = run.stages[k];
    const std::string& before = run.stages[k - 1];
    std::vector<std::uint8_t> got(n, 0);
    NameList unexpected;
    auto& at = st->later_rows[k];
    st->later_base[k] = scan_stage(
        run.paths(stage), [&](std::uint64_t position, std::uint64_t, const std::string& path, const ShardRow& row) {
          const std::uint64_t i = row.index;
          if (i >= n || st->decision(before, i) != 1 || got[i] || !st->keys.equals(i, row.key)) {
            unexpected.add(fmt::format("{} (pool index {}, {})", row.key, row.index, path));
            return;
          }
          got[i] = 1;
          at.emplace_back(i, position);
          if (stage == "select_answers") {
            if (row.status != Status::valid) st->flags[i] = std::uint8_t(st->flags[i] & ~kValid);
            st->selected_answers[i] = row.selected_answers;
            if (by_answer) st->final_score[i] = row.answer_score;
          }
        });
    if (!unexpected.empty())
      throw std::runtime_error(fmt::format("merge: stage {}: records that {} did not keep, or repeated: {}", stage,
                                           before, unexpected.str()));
    NameList absent;
    for (std::uint64_t i = 0; i < n; ++i)
      if (st->decision(before, i) == 1 && !got[i]) {
        if (absent.full()) absent.count_one();
        else absent.add(st->keys.get(i));
      }
    if (!absent.empty())
      throw std::runtime_error(fmt::format("merge: stage {}: {} records kept by {} are missing: keys {}", stage,
                                           absent.count(), before, absent.str()));
    if (!std::is_sorted(at.begin(), at.end())) std::sort(at.begin(), at.end());
  }
}

// ---- Phase 4: the kept records (pool indices) in global order: final score descending,
// then key ascending (NaN last); without a selection stage, pool order.
std::vector<std::uint64_t> global_order(const RunShards& run, const PoolState& st) {
  std::vector<std::uint64_t> kept;
  for (std::uint64_t i = 0; i < st.n; ++i)
    if ((st.flags[i] & kValid) && (run.rewrite_only || st.decision(run.last_selection, i) == 1)) kept.push_back(i);
  if (!run.rewrite_only) std::sort(kept.begin(), kept.end(), [&](std::uint64_t a, std::uint64_t b) {
    const double sa = st.final_score[a], sb = st.final_score[b];
    const bool nan_a = std::isnan(sa), nan_b = std::isnan(sb);
    if (nan_a != nan_b) return nan_b;
    if (!nan_a && sa != sb) return sa > sb;
    return st.keys.compare(a, b) < 0;
  });
  return kept;
}

// ---- Phase 5: scores.h5, streaming the first stage's rows in pool-index order joined with
// the later stages' rows, fetched by position a block at a time; summary.json's counts on
// the way. `rewritten` gets, per pool index, whether the record's curated text holds kept
// rewrites. Returns summary.json's content.
json write_scores(const RunShards& run, const PoolState& st, const std::vector<std::uint64_t>& kept,
                  const json& stages_json, const json& timings, const std::string& scores_path,
                  std::vector<bool>* rewritten) {
  const std::uint64_t n = st.n;
  const std::string& stage0 = run.stages.front();
  std::vector<std::pair<std::uint64_t, std::uint64_t>> rank_of(kept.size());  // (pool index, global rank)
  for (std::uint64_t pos = 0; pos < kept.size(); ++pos) rank_of[pos] = {kept[pos], pos};
  std::sort(rank_of.begin(), rank_of.end());
  rewritten->assign(n, false);
  std::map<std::string, std::uint64_t> by_status, by_reason;
  std::map<std::string, std::map<std::string, std::uint64_t>> by_subset;
  ShardWriter scores(scores_path, n);
  StageRows rows0(run.paths(stage0), st.base0);
  std::vector<std::optional<StageRows>> later(run.stages.size());
  std::vector<std::size_t> cursor(run.stages.size(), 0);  // next entry of later_rows[k]
  for (std::size_t k = 1; k < run.stages.size(); ++k) later[k].emplace(run.paths(run.stages[k]), st.later_base[k]);
  std::size_t rank_cursor = 0;

  for (std::uint64_t b = 0; b < n; b += kBlockRows) {
    const std::uint64_t e = std::min(n, b + kBlockRows);
    std::vector<std::uint64_t> positions(e - b);
    for (std::uint64_t i = b; i < e; ++i) positions[i - b] = st.where_of(i);
    std::vector<ShardRow> block = rows0.fetch(positions, /*records=*/true);
    for (std::uint64_t i = b; i < e; ++i)
      if (block[i - b].index != i)
        throw std::runtime_error(fmt::format("merge: stage {}: the shards changed while being merged", stage0));

    for (std::size_t k = 1; k < run.stages.size(); ++k) {
      const auto& at = st.later_rows[k];
      std::vector<std::uint64_t> indices, wanted;
      for (std::size_t& c = cursor[k]; c < at.size() && at[c].first < e; ++c) {
        indices.push_back(at[c].first);
        wanted.push_back(at[c].second);
      }
      std::vector<ShardRow> joined = later[k]->fetch(wanted, /*records=*/false);
      for (std::size_t j = 0; j < joined.size(); ++j) {
        if (joined[j].index != indices[j])
          throw std::runtime_error(fmt::format("merge: stage {}: the shards changed while being merged", run.stages[k]));
        take_stage_columns(run.stages[k], block[indices[j] - b], joined[j]);
      }
    }

    for (ShardRow& row : block) {
      row.kept = row.status == Status::valid
                     ? (run.rewrite_only || stage_decision(run.last_selection, row) == 1 ? 1 : 0) : -1;
      const bool ranked = rank_cursor < rank_of.size() && rank_of[rank_cursor].first == row.index;
      if (ranked != (row.kept == 1)) throw std::logic_error("merge: kept flags disagree between passes");
      if (ranked) row.global_rank = std::int64_t(rank_of[rank_cursor++].second);
      if (ranked)
        for (std::int8_t k : row.rewrite_kept) (*rewritten)[row.index] = (*rewritten)[row.index] || k == 1;
      ++by_status[status_name(row.status)];
      if (row.reason != Reason::none) ++by_reason[reason_name(row.reason)];
      auto& s = by_subset[row.subset];
      ++s["input"];
      s["valid"] += row.status == Status::valid;
      s["kept"] += row.kept == 1;
    }
    scores.append(block);
  }

  const ShardMeta& first = run.first();
  json summary = {{"input_records", n},
                  {"by_status", by_status},
                  {"by_reason", by_reason},
                  {"kept", kept.size()},
                  {"by_subset", by_subset},
                  {"stages", stages_json},
                  {"timings", timings},
                  {"config_fingerprint", first.config_fingerprint},
                  {"input_fingerprint", first.input_fingerprint}};
  ShardMeta meta = first;
  meta.stage = "merged";
  meta.rank = 0;
  meta.world_size = run.shards[run.by_stage.at(stage0).front()].meta.world_size;
  meta.stage_summary_json = summary.dump();
  meta.timings_json = timings.dump();
  scores.commit(meta);
  return summary;
}

// ---- Phase 6: curated.json, the kept records in global order, each in LLaVA's conversation
// form (core/rewrite/rewrite_stage.h: verbatim unless it holds kept rewrites or is in the
// instruction form), read back from scores.h5 (row i is pool index i) a block at a time.
void write_curated(const std::string& scores_path, const std::vector<std::uint64_t>& kept,
                   const std::vector<bool>& rewritten, const std::string& curated_path) {
  ShardReader written(scores_path);
  AtomicFileWriter curated(curated_path);
  curated.write("[");
  for (std::uint64_t b = 0; b < kept.size(); b += kBlockRows) {
    std::vector<std::uint64_t> rows(kept.begin() + std::ptrdiff_t(b),
                                    kept.begin() + std::ptrdiff_t(std::min<std::uint64_t>(kept.size(), b + kBlockRows)));
    std::vector<std::string> texts = read_shard_records(scores_path, rows);
    for (std::size_t j = 0; j < texts.size(); ++j) {
      curated.write(b + j ? ",\n" : "\n");
      ShardRow row;  // the rewrite columns only where a rewrite was kept
      if (rewritten[rows[j]]) row = written.read_rows(rows[j], rows[j] + 1, ShardReadOptions{/*records=*/false}).at(0);
      curated.write(curated_record(texts[j], row));
    }
  }
  curated.write(kept.empty() ? "]\n" : "\n]\n");
  curated.commit();
}


}  // namespace

// ---------------------------------------------------------------------------

MergeResult merge_shards(const std::vector<std::string>& shard_paths, const std::string& output_dir) {
  return merge_shards(shard_paths, output_dir, MergeOptions{});
}

MergeResult merge_shards(const std::vector<std::string>& shard_paths, const std::string& output_dir,
                         const MergeOptions& options) {
  const RunShards run = group_shards(shard_paths);
  PoolState st(run.first().input_records);
  scan_first_stage(run, &st);
  json stages_json, timings;
  read_stage_summaries(run, &stages_json, &timings);
  scan_later_stages(run, &st);
  const std::vector<std::uint64_t> kept = global_order(run, st);
  st.keep_positions_only();

  MergeResult result;
  result.input_records = st.n;
  result.kept = kept.size();
  result.curated_path = (fs::path(output_dir) / "curated.json").string();
  result.scores_path = (fs::path(output_dir) / "scores.h5").string();
  result.summary_path = (fs::path(output_dir) / "summary.json").string();
  std::vector<bool> rewritten;  // [n] bits: the record's curated.json text holds kept rewrites
  const json summary = write_scores(run, st, kept, stages_json, timings, result.scores_path, &rewritten);
  st = PoolState(0);  // the positions too
  write_curated(result.scores_path, kept, rewritten, result.curated_path);
  write_file_atomic(result.summary_path, summary.dump(2) + "\n");  // its presence means the data is done
  if (options.report) result.report_path = write_report(output_dir);
  return result;
}

}  // namespace align2
