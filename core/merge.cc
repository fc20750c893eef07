#include "core/merge.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/ranking.h"
#include "core/shard_store.h"

namespace align2 {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct ShardInfo {
  std::string path;
  ShardMeta meta;
};

// Where a record's verbatim text lives: the first-stage shard and row.
struct RecordLocation {
  std::size_t shard = 0;
  std::uint64_t row = 0;
};

json parse_meta_json(const std::string& text, const std::string& path, const char* what) {
  if (text.empty()) return json::object();
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) throw std::runtime_error(fmt::format("{}: attribute {} is not JSON", path, what));
  return j;
}

std::string list_some(const std::vector<std::string>& items, std::size_t max = 10) {
  std::string s;
  for (std::size_t i = 0; i < items.size() && i < max; ++i) s += (i ? ", " : "") + items[i];
  if (items.size() > max) s += fmt::format(", ... ({} in all)", items.size());
  return s;
}

// Copies one stage's columns of `from` into the combined row.
void take_stage_columns(const std::string& stage, ShardRow& into, ShardRow& from) {
  if (stage == "select_questions") {
    into.question_score = from.question_score;
    into.selected_questions = from.selected_questions;
    into.truncated = from.truncated;
  } else if (stage == "select_answers") {
    if (from.status != "valid") {  // could not be scored in this stage
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
  }
}

// The stage's keep flag of a row.
std::int8_t stage_decision(const std::string& stage, const ShardRow& row) {
  if (stage == "select_questions") return row.selected_questions;
  if (stage == "select_answers") return row.selected_answers;
  return row.kept;
}

}  // namespace

const std::vector<std::string>& stage_order() {
  static const std::vector<std::string> order = {"select_questions", "select_answers", "rewrite"};
  return order;
}

std::string shard_path(const std::string& output_dir, const std::string& stage, int rank) {
  return (fs::path(output_dir) / "shards" / stage / fmt::format("rank-{:05d}.h5", rank)).string();
}

std::vector<std::string> find_shards(const std::string& output_dir) {
  std::vector<std::string> out;
  fs::path root = fs::path(output_dir) / "shards";
  if (!fs::is_directory(root)) return out;
  for (const std::string& stage : stage_order()) {
    fs::path dir = root / stage;
    if (!fs::is_directory(dir)) continue;
    for (const auto& entry : fs::directory_iterator(dir)) {
      std::string name = entry.path().filename().string();
      if (entry.is_regular_file() && name.rfind("rank-", 0) == 0 && entry.path().extension() == ".h5")
        out.push_back(entry.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

void write_file_atomic(const std::string& path, const std::string& content) {
  fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  std::string tmp = fmt::format("{}.tmp-{}", path, getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(content.data(), std::streamsize(content.size()));
    out.flush();
    if (!out) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw std::runtime_error(fmt::format("{}: cannot write (disk full?)", path));
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw std::runtime_error(fmt::format("{}: cannot rename the finished file into place: {}", path, ec.message()));
  }
}

MergeResult merge_shards(const std::vector<std::string>& shard_paths, const std::string& output_dir) {
  if (shard_paths.empty()) throw std::runtime_error("merge: no shard files given");
  std::vector<ShardInfo> shards;
  for (const std::string& p : shard_paths) shards.push_back({p, read_shard_meta(p)});

  // Consistency of the run.
  const ShardMeta& first = shards.front().meta;
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
  // Stages present, in cascade order; one shard per rank each.
  std::vector<std::string> stages;
  std::map<std::string, std::vector<std::size_t>> by_stage;  // stage -> shard positions by rank
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
    stages.push_back(stage);
    by_stage[stage] = by_rank;
  }
  if (stages.front() != stage_order().front())
    throw std::runtime_error(fmt::format("merge: no {} shards: the first stage holds every input record",
                                         stage_order().front()));

  const std::uint64_t n = first.input_records;
  std::vector<ShardRow> rows(n);
  std::vector<std::uint8_t> seen(n, 0);
  std::vector<RecordLocation> where(n);
  std::unordered_map<std::string, std::uint64_t> key_owner;
  std::vector<std::string> repeated;

  // First stage: every input record exactly once.
  const std::string& stage0 = stages.front();
  for (std::size_t si : by_stage[stage0]) {
    ShardData data = read_shard(shards[si].path, ShardReadOptions{/*records=*/false});
    for (std::uint64_t r = 0; r < data.rows.size(); ++r) {
      ShardRow& row = data.rows[r];
      if (row.index >= n)
        throw std::runtime_error(fmt::format("merge: {} row {}: pool index {} outside the input's {} records",
                                             shards[si].path, r, row.index, n));
      auto [it, fresh] = key_owner.emplace(row.key, row.index);
      if (!fresh || seen[row.index]) {
        repeated.push_back(fmt::format("{} (pool index {})", row.key, row.index));
        continue;
      }
      seen[row.index] = 1;
      where[row.index] = {si, r};
      rows[row.index] = std::move(row);
    }
  }
  std::vector<std::string> missing;
  for (std::uint64_t i = 0; i < n; ++i)
    if (!seen[i]) missing.push_back(std::to_string(i));
  if (!repeated.empty())
    throw std::runtime_error(fmt::format("merge: stage {}: records appear more than once: keys {}", stage0,
                                         list_some(repeated)));
  if (!missing.empty())
    throw std::runtime_error(fmt::format("merge: stage {}: {} input records are missing: pool indices {}", stage0,
                                         missing.size(), list_some(missing)));

  // Later stages: exactly the records the stage before kept.
  json stages_json = json::object();
  json timings = json::object();
  for (std::size_t k = 0; k < stages.size(); ++k) {
    const std::string& stage = stages[k];
    json summary;
    json busy = json::array();
    for (std::size_t si : by_stage[stage]) {
      const ShardMeta& m = shards[si].meta;
      json s = parse_meta_json(m.stage_summary_json, shards[si].path, "stage_summary_json");
      if (si == by_stage[stage].front()) summary = s;
      else if (s != summary)
        throw std::runtime_error(fmt::format("merge: stage {}: {} disagrees with rank 0 on the stage's summary "
                                             "(ranks computed different selections)", stage, shards[si].path));
      busy.push_back(parse_meta_json(m.timings_json, shards[si].path, "timings_json"));
    }
    stages_json[stage] = summary;
    timings[stage] = {{"ranks", busy.size()}, {"per_rank", busy}};
    if (k == 0) continue;

    const std::string& before = stages[k - 1];
    std::vector<std::uint8_t> got(n, 0);
    std::vector<std::string> unexpected;
    for (std::size_t si : by_stage[stage]) {
      ShardData data = read_shard(shards[si].path, ShardReadOptions{/*records=*/false});
      for (ShardRow& row : data.rows) {
        if (row.index >= n || stage_decision(before, rows[row.index]) != 1 || got[row.index] ||
            row.key != rows[row.index].key) {
          unexpected.push_back(fmt::format("{} (pool index {}, {})", row.key, row.index, shards[si].path));
          continue;
        }
        got[row.index] = 1;
        take_stage_columns(stage, rows[row.index], row);
      }
    }
    if (!unexpected.empty())
      throw std::runtime_error(fmt::format("merge: stage {}: records that {} did not keep, or repeated: {}", stage,
                                           before, list_some(unexpected)));
    std::vector<std::string> absent;
    for (std::uint64_t i = 0; i < n; ++i)
      if (stage_decision(before, rows[i]) == 1 && !got[i]) absent.push_back(rows[i].key);
    if (!absent.empty())
      throw std::runtime_error(fmt::format("merge: stage {}: {} records kept by {} are missing: keys {}", stage,
                                           absent.size(), before, list_some(absent)));
  }

  // Final decision: the last selection stage's flag; final score: its score.
  std::string last_selection = std::find(stages.begin(), stages.end(), "select_answers") != stages.end()
                                   ? "select_answers" : "select_questions";
  auto final_score = [&](const ShardRow& r) {
    return last_selection == "select_answers" ? r.answer_score : r.question_score;
  };
  std::vector<std::uint64_t> kept;
  for (std::uint64_t i = 0; i < n; ++i) {
    rows[i].kept = rows[i].status == "valid" ? (stage_decision(last_selection, rows[i]) == 1 ? 1 : 0) : -1;
    if (rows[i].kept == 1) kept.push_back(i);
  }
  std::sort(kept.begin(), kept.end(), [&](std::uint64_t a, std::uint64_t b) {
    return ranks_before(final_score(rows[a]), rows[a].key, final_score(rows[b]), rows[b].key);
  });
  for (std::uint64_t pos = 0; pos < kept.size(); ++pos) rows[kept[pos]].global_rank = std::int64_t(pos);

  // Record texts from the first-stage shards (every record is there).
  std::map<std::size_t, std::vector<std::uint64_t>> wanted;  // shard -> pool indices in row order
  for (std::uint64_t i = 0; i < n; ++i) wanted[where[i].shard].push_back(i);
  for (auto& [si, indices] : wanted) {
    std::vector<std::uint64_t> positions;
    for (std::uint64_t i : indices) positions.push_back(where[i].row);
    std::vector<std::string> texts = read_shard_records(shards[si].path, positions);
    for (std::size_t j = 0; j < indices.size(); ++j) rows[indices[j]].record = std::move(texts[j]);
  }

  // curated.json: kept records in global order, each verbatim.
  std::string curated = "[";
  for (std::uint64_t pos = 0; pos < kept.size(); ++pos) {
    curated += pos ? ",\n" : "\n";
    curated += rows[kept[pos]].record;
  }
  curated += kept.empty() ? "]\n" : "\n]\n";

  // summary.json
  std::map<std::string, std::uint64_t> by_status, by_reason;
  std::map<std::string, std::map<std::string, std::uint64_t>> by_subset;
  for (const ShardRow& r : rows) {
    ++by_status[r.status];
    if (!r.reason.empty()) ++by_reason[r.reason];
    auto& s = by_subset[r.subset];
    ++s["input"];
    s["valid"] += r.status == "valid";
    s["kept"] += r.kept == 1;
  }
  json summary = {{"input_records", n},
                  {"by_status", by_status},
                  {"by_reason", by_reason},
                  {"kept", kept.size()},
                  {"by_subset", by_subset},
                  {"stages", stages_json},
                  {"timings", timings},
                  {"config_fingerprint", first.config_fingerprint},
                  {"input_fingerprint", first.input_fingerprint}};

  MergeResult result;
  result.input_records = n;
  result.kept = kept.size();
  result.curated_path = (fs::path(output_dir) / "curated.json").string();
  result.scores_path = (fs::path(output_dir) / "scores.h5").string();
  result.summary_path = (fs::path(output_dir) / "summary.json").string();

  ShardMeta meta = first;
  meta.stage = "merged";
  meta.rank = 0;
  meta.world_size = shards[by_stage[stage0].front()].meta.world_size;
  meta.stage_summary_json = summary.dump();
  meta.timings_json = timings.dump();
  write_shard(result.scores_path, meta, rows);
  write_file_atomic(result.curated_path, curated);
  write_file_atomic(result.summary_path, summary.dump(2) + "\n");  // last: its presence means done
  return result;
}

}  // namespace align2
