#include "core/job_config.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "kernels/sha256.h"

namespace align2 {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// Keys and defaults. Paths are resolved separately.
const json& defaults() {
  static const json d = {
      {"pools", json::array()},  {"subsets", json::object()}, {"subset_field", ""},
      {"image_root", ""},        {"output_dir", "align2-out"}, {"max_record_bytes", 16u << 20},
      {"image_cost", 576},       {"alpha", 0.30},              {"beta", 0.30},
      {"one_per_image", true},   {"batch_size", 8},            {"batch_tokens", 8192},
      {"question_model", ""},    {"answer_model", ""},        {"dtype", "f32"},
      {"threads", 0},            {"chunk_records", 256},       {"progress_seconds", 30},
      {"rewrite", true},         {"rewrite_model", ""},        {"rewrite_template", "vicuna_v1"},
      {"rewrite_prompt", ""},    {"review_prompt", ""},        {"rewrite_max_new_tokens", 512},
      {"rewrite_temperature", 0.0}, {"rewrite_top_p", 1.0},    {"review_threshold", 0.5},
      {"review_labels", {"A", "B"}}, {"rewrite_min_ratio", 0.3}, {"rewrite_max_ratio", 3.0},
      {"rewrite_batch", 8},      {"score_cache", ""},          {"image_aspect", ""},
  };
  return d;
}

// Keys that do not change results: left out of the fingerprint.
const std::set<std::string>& neutral_keys() {
  static const std::set<std::string> k = {"output_dir", "batch_size", "batch_tokens", "threads", "chunk_records", "progress_seconds",
                                           "score_cache"};
  return k;
}

std::string resolve(const std::string& path, const std::string& base) {
  if (path.empty() || fs::path(path).is_absolute()) return path;
  return (fs::path(base) / path).lexically_normal().string();
}

[[noreturn]] void bad(const std::string& source, const std::string& key, const std::string& what) {
  throw std::runtime_error(fmt::format("{}: config key \"{}\": {}", source, key, what));
}

// Applies "a.b=value" to `config`; marks the key as coming from the command line.
void apply_override(json& config, const std::string& item, std::set<std::string>* cli_keys) {
  auto eq = item.find('=');
  if (eq == std::string::npos || eq == 0)
    throw std::runtime_error(fmt::format("--set {}: expected key=value", item));
  std::string key = item.substr(0, eq), text = item.substr(eq + 1);
  json value = json::parse(text, nullptr, false);
  if (value.is_discarded()) value = text;
  json* node = &config;
  std::size_t start = 0;
  for (;;) {
    std::size_t dot = key.find('.', start);
    std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (dot == std::string::npos) {
      (*node)[part] = value;
      break;
    }
    node = &(*node)[part];
    if (!node->is_object()) *node = json::object();
    start = dot + 1;
  }
  cli_keys->insert(key);
}

}  // namespace

JobConfig parse_job_config(json config, const std::string& base_dir, const std::vector<std::string>& overrides,
                           const std::string& source) {
  if (!config.is_object()) throw std::runtime_error(source + ": the job config must be a JSON object");
  std::set<std::string> cli_keys;
  for (const std::string& o : overrides) apply_override(config, o, &cli_keys);
  for (auto& [key, value] : config.items())
    if (!defaults().contains(key))
      bad(source, key, "unknown key (see docs/running.md for the keys a job config takes)");
  json eff = defaults();
  for (auto& [key, value] : config.items()) {
    // JSON text gives non-negative integers as unsigned; JSON built in memory (and `effective`,
    // whose defaults are signed) may hold them signed: only a value below 0 is negative.
    if (eff[key].is_number_integer() && value.is_number_integer() && !value.is_number_unsigned() &&
        value.get<std::int64_t>() < 0)
      bad(source, key, fmt::format("must not be negative, got {}", value.dump()));
    if (eff[key].is_number_float() && value.is_number()) eff[key] = value.get<double>();
    else if (eff[key].type() != value.type() &&
             !(eff[key].is_number_integer() && value.is_number_integer()) &&
             !(key == "pools" && value.is_array()))
      bad(source, key, fmt::format("expected {}, got {}", eff[key].type_name(), value.type_name()));
    else eff[key] = value;
  }
  auto base_for = [&](const std::string& key) { return cli_keys.count(key) ? std::string(".") : base_dir; };

  JobConfig c;
  const json& pools = eff["pools"];
  if (pools.empty()) bad(source, "pools", "at least one pool file is needed");
  for (std::size_t i = 0; i < pools.size(); ++i) {
    const json& p = pools[i];
    PoolFile f;
    if (p.is_string()) {
      f.path = p.get<std::string>();
    } else if (p.is_object() && p.contains("path") && p["path"].is_string()) {
      f.path = p["path"].get<std::string>();
      for (auto& [k, v] : p.items()) {
        if (k == "path") continue;
        if (k != "subset" || !v.is_string()) bad(source, fmt::format("pools[{}].{}", i, k), "unknown key or not a string");
        f.subset = v.get<std::string>();
      }
    } else {
      bad(source, fmt::format("pools[{}]", i), "expected a path or {\"path\": ..., \"subset\": ...}");
    }
    std::string name = fs::path(f.path).filename().string();
    if (f.subset.empty() && eff["subsets"].contains(name)) {
      if (!eff["subsets"][name].is_string()) bad(source, "subsets." + name, "expected a string");
      f.subset = eff["subsets"][name].get<std::string>();
    }
    f.path = resolve(f.path, base_for("pools"));
    c.pools.push_back(std::move(f));
  }
  for (auto& [name, subset] : eff["subsets"].items()) {
    bool used = false;
    for (const json& p : pools)
      used |= fs::path(p.is_string() ? p.get<std::string>() : p.value("path", "")).filename().string() == name;
    if (!used) bad(source, "subsets." + name, "names no file of \"pools\"");
  }
  // Neither `subsets`, a pool entry's "subset" nor `subset_field`: each file is its own subset,
  // named after its file name, as the authors rank each source file separately.
  bool named = !eff["subsets"].empty() || !eff["subset_field"].get<std::string>().empty();
  for (const PoolFile& f : c.pools) named |= !f.subset.empty();
  if (!named)
    for (PoolFile& f : c.pools) f.subset = fs::path(f.path).filename().string();
  c.image_root = resolve(eff["image_root"].get<std::string>(), base_for("image_root"));
  if (!c.image_root.empty() && !fs::is_directory(c.image_root))
    bad(source, "image_root", fmt::format("{} is not a folder", c.image_root));
  c.subset_field = eff["subset_field"].get<std::string>();
  c.question_model = resolve(eff["question_model"].get<std::string>(), base_for("question_model"));
  c.answer_model = resolve(eff["answer_model"].get<std::string>(), base_for("answer_model"));
  c.dtype = eff["dtype"].get<std::string>();
  if (c.dtype != "f32" && c.dtype != "bf16") bad(source, "dtype", "expected \"f32\" or \"bf16\"");
  c.image_aspect = eff["image_aspect"].get<std::string>();
  if (!c.image_aspect.empty() && c.image_aspect != "pad" && c.image_aspect != "square")
    bad(source, "image_aspect", "expected \"\" (each model's own), \"pad\" or \"square\"");
  c.threads = eff["threads"].get<std::uint64_t>();
  if (c.threads > 4096) bad(source, "threads", "must lie in 0..4096");
  c.output_dir = resolve(eff["output_dir"].get<std::string>(), base_for("output_dir"));
  c.score_cache = resolve(eff["score_cache"].get<std::string>(), base_for("score_cache"));
  c.max_record_bytes = eff["max_record_bytes"].get<std::uint64_t>();
  c.image_cost = eff["image_cost"].get<std::uint64_t>();
  c.alpha = eff["alpha"].get<double>();
  c.beta = eff["beta"].get<double>();
  for (const char* k : {"alpha", "beta"})
    if (!(eff[k].get<double>() >= 0.0 && eff[k].get<double>() <= 1.0)) bad(source, k, "must lie in [0, 1]");
  c.one_per_image = eff["one_per_image"].get<bool>();
  c.batch_size = eff["batch_size"].get<std::uint64_t>();
  if (c.batch_size == 0 || c.batch_size > 1'000'000) bad(source, "batch_size", "must lie in 1..1000000");
  c.batch_tokens = eff["batch_tokens"].get<std::uint64_t>();
  if (c.batch_tokens > 1'000'000'000) bad(source, "batch_tokens", "must lie in 0..1000000000");
  c.rewrite = eff["rewrite"].get<bool>();
  c.rewrite_model = resolve(eff["rewrite_model"].get<std::string>(), base_for("rewrite_model"));
  c.rewrite_template = eff["rewrite_template"].get<std::string>();
  if (c.rewrite_template != "vicuna_v1" && c.rewrite_template != "llava_v1" && c.rewrite_template != "plain")
    bad(source, "rewrite_template", "expected \"vicuna_v1\", \"llava_v1\" or \"plain\"");
  c.rewrite_prompt = resolve(eff["rewrite_prompt"].get<std::string>(), base_for("rewrite_prompt"));
  c.review_prompt = resolve(eff["review_prompt"].get<std::string>(), base_for("review_prompt"));
  c.rewrite_max_new_tokens = eff["rewrite_max_new_tokens"].get<std::uint64_t>();
  if (c.rewrite_max_new_tokens == 0 || c.rewrite_max_new_tokens > 65536)
    bad(source, "rewrite_max_new_tokens", "must lie in 1..65536");
  c.rewrite_temperature = eff["rewrite_temperature"].get<double>();
  if (!(c.rewrite_temperature >= 0 && c.rewrite_temperature <= 100)) bad(source, "rewrite_temperature", "must lie in [0, 100]");
  c.rewrite_top_p = eff["rewrite_top_p"].get<double>();
  if (!(c.rewrite_top_p > 0 && c.rewrite_top_p <= 1)) bad(source, "rewrite_top_p", "must lie in (0, 1]");
  c.review_threshold = eff["review_threshold"].get<double>();
  if (!(c.review_threshold >= 0 && c.review_threshold <= 1)) bad(source, "review_threshold", "must lie in [0, 1]");
  const json& labels = eff["review_labels"];
  if (labels.size() != 2 || !labels[0].is_string() || !labels[1].is_string() || labels[0] == labels[1] ||
      labels[0].get<std::string>().empty() || labels[1].get<std::string>().empty())
    bad(source, "review_labels", "expected two different non-empty strings");
  c.review_labels = {labels[0].get<std::string>(), labels[1].get<std::string>()};
  c.rewrite_min_ratio = eff["rewrite_min_ratio"].get<double>();
  c.rewrite_max_ratio = eff["rewrite_max_ratio"].get<double>();
  if (!(c.rewrite_min_ratio >= 0 && c.rewrite_min_ratio <= c.rewrite_max_ratio))
    bad(source, "rewrite_min_ratio", "must lie in [0, rewrite_max_ratio]");
  c.rewrite_batch = eff["rewrite_batch"].get<std::uint64_t>();
  if (c.rewrite_batch == 0 || c.rewrite_batch > 4096) bad(source, "rewrite_batch", "must lie in 1..4096");
  c.chunk_records = eff["chunk_records"].get<std::uint64_t>();
  if (c.chunk_records == 0 || c.chunk_records > 100'000'000) bad(source, "chunk_records", "must lie in 1..100000000");
  c.progress_seconds = eff["progress_seconds"].get<std::uint64_t>();
  if (c.progress_seconds > 86400) bad(source, "progress_seconds", "must lie in 0..86400");
  if (c.max_record_bytes == 0 || c.max_record_bytes > (1ull << 32))
    bad(source, "max_record_bytes", "must lie in 1..4294967296");
  if (c.image_cost > 1'000'000) bad(source, "image_cost", "must lie in 0..1000000");

  // The effective config with resolved paths; the fingerprint leaves out neutral keys.
  eff["image_root"] = c.image_root;
  eff["question_model"] = c.question_model;
  eff["answer_model"] = c.answer_model;
  eff["rewrite_model"] = c.rewrite_model;
  eff["rewrite_prompt"] = c.rewrite_prompt;
  eff["review_prompt"] = c.review_prompt;
  eff["output_dir"] = c.output_dir;
  eff["score_cache"] = c.score_cache;
  json resolved_pools = json::array();
  for (const PoolFile& f : c.pools) resolved_pools.push_back({{"path", f.path}, {"subset", f.subset}});
  eff["pools"] = resolved_pools;
  c.effective = eff;
  json fp = eff;
  for (const std::string& k : neutral_keys()) fp.erase(k);
  std::string text = fp.dump();
  Sha256State h;
  sha256_init(&h);
  sha256_update(&h, text.data(), text.size());
  std::uint8_t digest[32];
  sha256_final(&h, digest);
  for (std::uint8_t b : digest) c.fingerprint += fmt::format("{:02x}", b);
  return c;
}

nlohmann::json read_job_config_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot read the job config", path));
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    throw std::runtime_error(fmt::format("{}: the job config is not valid JSON: {}", path, e.what()));
  }
}

std::string job_config_dir(const std::string& path) {
  std::string base = fs::path(path).parent_path().string();
  return base.empty() ? "." : base;
}

JobConfig load_job_config(const std::string& path, const std::vector<std::string>& overrides) {
  return parse_job_config(read_job_config_json(path), job_config_dir(path), overrides, path);
}

}  // namespace align2
