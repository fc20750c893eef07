#include "core/data/inspect.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace align2 {
namespace {

using nlohmann::json;

json length_stats(std::vector<std::uint64_t> v) {
  if (v.empty()) return json::object();
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (auto x : v) sum += double(x);
  auto at = [&](double q) { return v[std::min<std::size_t>(v.size() - 1, std::size_t(q * double(v.size())))]; };
  return json{{"min", v.front()}, {"median", at(0.5)}, {"mean", sum / double(v.size())},
              {"p95", at(0.95)}, {"max", v.back()}};
}

}  // namespace

json inspect_pool(const std::vector<PoolFile>& files, const InspectOptions& options) {
  std::map<std::string, std::uint64_t> by_status, by_reason, by_subset, valid_by_subset;
  std::map<std::uint64_t, std::uint64_t> turns;
  std::vector<std::uint64_t> q_bytes, a_bytes;
  std::vector<std::uint64_t> per_file(files.size(), 0);
  json invalid = json::array(), missing = json::array();
  std::uint64_t records = 0, valid = 0;

  IndexOptions io;
  io.validation = options.validation;
  io.on_record = [&](const Sample& s, const IndexEntry& e) {
    ++records;
    ++per_file[e.file];
    ++by_status[status_name(s.status)];
    if (s.reason != Reason::none) ++by_reason[reason_name(s.reason)];
    ++by_subset[s.subset];
    if (s.status == Status::valid) {
      ++valid;
      ++valid_by_subset[s.subset];
      ++turns[s.turns.size()];
      for (const Turn& t : s.turns) {
        q_bytes.push_back(t.question.size());
        a_bytes.push_back(t.answer.size());
      }
    } else if (s.status == Status::missing_image) {
      if (missing.size() < options.max_examples)
        missing.push_back({{"index", s.index}, {"id", s.id}, {"image", s.image}});
    } else if (invalid.size() < options.max_examples) {
      invalid.push_back({{"index", s.index}, {"file", files[e.file].path}, {"id", s.id},
                         {"status", status_name(s.status)}, {"reason", reason_name(s.reason)},
                         {"message", s.message}});
    }
  };
  PoolIndex index = build_index(files, io);

  json report;
  report["records"] = records;
  report["valid"] = valid;
  report["by_status"] = by_status;
  report["by_reason"] = by_reason;
  report["by_subset"] = by_subset;
  report["valid_by_subset"] = valid_by_subset;
  json t = json::object();
  for (auto& [n, c] : turns) t[std::to_string(n)] = c;
  report["turns"] = t;
  report["text_bytes"] = {{"question", length_stats(std::move(q_bytes))}, {"answer", length_stats(std::move(a_bytes))}};
  report["invalid_examples"] = invalid;
  report["missing_images"] = missing;
  json jf = json::array();
  for (std::size_t f = 0; f < files.size(); ++f)
    jf.push_back({{"path", files[f].path}, {"records", per_file[f]}});
  report["files"] = jf;
  report["fingerprint"] = index.fingerprint;
  return report;
}

std::string format_inspect_report(const json& r) {
  std::string out;
  out += fmt::format("records: {}   valid: {}\n", r["records"].get<std::uint64_t>(), r["valid"].get<std::uint64_t>());
  out += "files:\n";
  for (const json& f : r["files"]) out += fmt::format("  {:>8}  {}\n", f["records"].get<std::uint64_t>(), f["path"].get<std::string>());
  out += "by status:\n";
  for (auto& [k, v] : r["by_status"].items()) out += fmt::format("  {:<16} {}\n", k, v.get<std::uint64_t>());
  if (!r["by_reason"].empty()) {
    out += "by reason:\n";
    for (auto& [k, v] : r["by_reason"].items()) out += fmt::format("  {:<20} {}\n", k, v.get<std::uint64_t>());
  }
  out += "by subset (records / valid):\n";
  for (auto& [k, v] : r["by_subset"].items()) {
    std::uint64_t ok = r["valid_by_subset"].contains(k) ? r["valid_by_subset"][k].get<std::uint64_t>() : 0;
    out += fmt::format("  {:<16} {} / {}\n", k, v.get<std::uint64_t>(), ok);
  }
  out += "question-answer pairs per valid record:\n";
  for (auto& [k, v] : r["turns"].items()) out += fmt::format("  {:>4} pairs  {}\n", k, v.get<std::uint64_t>());
  for (const char* side : {"question", "answer"}) {
    const json& s = r["text_bytes"][side];
    if (s.empty()) continue;
    out += fmt::format("{} bytes per turn: min {} median {} mean {:.1f} p95 {} max {}\n", side,
                       s["min"].get<std::uint64_t>(), s["median"].get<std::uint64_t>(), s["mean"].get<double>(),
                       s["p95"].get<std::uint64_t>(), s["max"].get<std::uint64_t>());
  }
  if (!r["invalid_examples"].empty()) {
    out += "invalid records (first ones):\n";
    for (const json& e : r["invalid_examples"])
      out += fmt::format("  [{}] {}: {}\n", e["status"].get<std::string>(), e["reason"].get<std::string>(),
                         e["message"].get<std::string>());
  }
  if (!r["missing_images"].empty()) {
    out += "missing images (first ones):\n";
    for (const json& e : r["missing_images"])
      out += fmt::format("  record {} (id {}): {}\n", e["index"].get<std::uint64_t>(), e["id"].get<std::string>(),
                         e["image"].get<std::string>());
  }
  out += fmt::format("pool fingerprint: {}\n", r["fingerprint"].get<std::string>());
  return out;
}

}  // namespace align2
