#include "core/pipeline/job_config.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "core/util/digest.h"

namespace align2 {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// Keys and defaults, the defaults read off a default JobConfig. Paths are resolved separately.
const json& defaults() {
  static const json d = [] {
    const JobConfig c;
    const PoolConfig& p = c.pool;
    const SelectionConfig& s = c.selection;
    const ModelsConfig& m = c.models;
    const RewriteConfig& r = c.rewrite;
    const RunConfig& run = c.run;
    return json{
        {"pools", json::array()},                {"subsets", json::object()},
        {"subset_field", p.subset_field},        {"image_root", p.image_root},
        {"max_record_bytes", p.max_record_bytes}, {"image_cost", p.image_cost},
        {"alpha", s.alpha},                      {"beta", s.beta},
        {"one_per_image", s.one_per_image},      {"batch_size", s.batch_size},
        {"batch_tokens", s.batch_tokens},        {"score_cache", s.score_cache},
        {"question_model", m.question_model},    {"answer_model", m.answer_model},
        {"dtype", m.dtype},                      {"image_aspect", m.image_aspect},
        {"device", device_request_name(m.device)}, {"score_batch", m.score_batch},
        {"rewrite", r.enabled},                  {"rewrite_model", r.model},
        {"rewrite_template", r.chat_template},   {"rewrite_prompt", r.rewrite_prompt},
        {"review_prompt", r.review_prompt},      {"rewrite_max_new_tokens", r.max_new_tokens},
        {"rewrite_temperature", r.temperature},  {"rewrite_top_p", r.top_p},
        {"review_threshold", r.review_threshold}, {"review_labels", r.review_labels},
        {"rewrite_min_ratio", r.limits.min_ratio}, {"rewrite_max_ratio", r.limits.max_ratio},
        {"rewrite_batch", r.batch},              {"output_dir", run.output_dir},
        {"threads", run.threads},                {"chunk_records", run.chunk_records},
        {"progress_seconds", run.progress_seconds},
    };
  }();
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

namespace {

// Reads the config's keys of each concern from `eff` (defaults and overrides applied, types
// checked); `path` resolves a path key against the config's folder (or the current one for
// keys given with --set). Each throws std::runtime_error naming the file and key.
using PathOf = std::function<std::string(const std::string& key)>;

std::uint64_t bounded(const json& eff, const std::string& source, const char* key, std::uint64_t lo, std::uint64_t hi) {
  const std::uint64_t v = eff[key].get<std::uint64_t>();
  if (v < lo || v > hi) bad(source, key, fmt::format("must lie in {}..{}", lo, hi));
  return v;
}

double within(const json& eff, const std::string& source, const char* key, double lo, double hi, const char* range) {
  const double v = eff[key].get<double>();
  if (!(v >= lo && v <= hi)) bad(source, key, fmt::format("must lie in {}", range));
  return v;
}

PoolConfig read_pool(const json& eff, const std::string& source, const PathOf& path) {
  PoolConfig c;
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
    f.path = resolve(f.path, path("pools"));
    c.files.push_back(std::move(f));
  }
  for (auto& [name, subset] : eff["subsets"].items()) {
    bool used = false;
    for (const json& p : pools)
      used |= fs::path(p.is_string() ? p.get<std::string>() : p.value("path", "")).filename().string() == name;
    if (!used) bad(source, "subsets." + name, "names no file of \"pools\"");
  }
  c.subset_field = eff["subset_field"].get<std::string>();
  // Neither `subsets`, a pool entry's "subset" nor `subset_field`: each file is its own subset,
  // named after its file name, as the authors rank each source file separately.
  bool named = !eff["subsets"].empty() || !c.subset_field.empty();
  for (const PoolFile& f : c.files) named |= !f.subset.empty();
  if (!named)
    for (PoolFile& f : c.files) f.subset = fs::path(f.path).filename().string();
  c.image_root = resolve(eff["image_root"].get<std::string>(), path("image_root"));
  if (!c.image_root.empty() && !fs::is_directory(c.image_root))
    bad(source, "image_root", fmt::format("{} is not a folder", c.image_root));
  c.max_record_bytes = bounded(eff, source, "max_record_bytes", 1, 1ull << 32);
  c.image_cost = bounded(eff, source, "image_cost", 0, 1'000'000);
  return c;
}

SelectionConfig read_selection(const json& eff, const std::string& source, const PathOf& path) {
  SelectionConfig c;
  c.alpha = within(eff, source, "alpha", 0.0, 1.0, "[0, 1]");
  c.beta = within(eff, source, "beta", 0.0, 1.0, "[0, 1]");
  c.one_per_image = eff["one_per_image"].get<bool>();
  c.batch_size = bounded(eff, source, "batch_size", 1, 1'000'000);
  c.batch_tokens = bounded(eff, source, "batch_tokens", 0, 1'000'000'000);
  c.score_cache = resolve(eff["score_cache"].get<std::string>(), path("score_cache"));
  return c;
}

ModelsConfig read_models(const json& eff, const std::string& source, const PathOf& path) {
  ModelsConfig c;
  c.question_model = resolve(eff["question_model"].get<std::string>(), path("question_model"));
  c.answer_model = resolve(eff["answer_model"].get<std::string>(), path("answer_model"));
  c.dtype = eff["dtype"].get<std::string>();
  if (c.dtype != "auto" && c.dtype != "f32" && c.dtype != "bf16")
    bad(source, "dtype", "expected \"auto\", \"f32\" or \"bf16\"");
  try {
    c.device = parse_device_request(eff["device"].get<std::string>());
  } catch (const std::invalid_argument&) {
    bad(source, "device", "expected \"auto\", \"cuda\" or \"cpu\"");
  }
  c.score_batch = bounded(eff, source, "score_batch", 0, 4096);
  c.image_aspect = eff["image_aspect"].get<std::string>();
  if (!c.image_aspect.empty() && c.image_aspect != "pad" && c.image_aspect != "square")
    bad(source, "image_aspect", "expected \"\" (each model's own), \"pad\" or \"square\"");
  return c;
}

RewriteConfig read_rewrite(const json& eff, const std::string& source, const PathOf& path) {
  RewriteConfig c;
  c.enabled = eff["rewrite"].get<bool>();
  c.model = resolve(eff["rewrite_model"].get<std::string>(), path("rewrite_model"));
  c.chat_template = eff["rewrite_template"].get<std::string>();
  if (c.chat_template != "vicuna_v1" && c.chat_template != "llava_v1" && c.chat_template != "plain")
    bad(source, "rewrite_template", "expected \"vicuna_v1\", \"llava_v1\" or \"plain\"");
  c.rewrite_prompt = resolve(eff["rewrite_prompt"].get<std::string>(), path("rewrite_prompt"));
  c.review_prompt = resolve(eff["review_prompt"].get<std::string>(), path("review_prompt"));
  c.max_new_tokens = bounded(eff, source, "rewrite_max_new_tokens", 1, 65536);
  c.temperature = within(eff, source, "rewrite_temperature", 0, 100, "[0, 100]");
  c.top_p = eff["rewrite_top_p"].get<double>();
  if (!(c.top_p > 0 && c.top_p <= 1)) bad(source, "rewrite_top_p", "must lie in (0, 1]");
  c.review_threshold = within(eff, source, "review_threshold", 0, 1, "[0, 1]");
  const json& labels = eff["review_labels"];
  if (labels.size() != 2 || !labels[0].is_string() || !labels[1].is_string() || labels[0] == labels[1] ||
      labels[0].get<std::string>().empty() || labels[1].get<std::string>().empty())
    bad(source, "review_labels", "expected two different non-empty strings");
  c.review_labels = {labels[0].get<std::string>(), labels[1].get<std::string>()};
  c.limits.min_ratio = eff["rewrite_min_ratio"].get<double>();
  c.limits.max_ratio = eff["rewrite_max_ratio"].get<double>();
  if (!(c.limits.min_ratio >= 0 && c.limits.min_ratio <= c.limits.max_ratio))
    bad(source, "rewrite_min_ratio", "must lie in [0, rewrite_max_ratio]");
  c.batch = bounded(eff, source, "rewrite_batch", 1, 4096);
  return c;
}

RunConfig read_run(const json& eff, const std::string& source, const PathOf& path) {
  RunConfig c;
  c.output_dir = resolve(eff["output_dir"].get<std::string>(), path("output_dir"));
  c.threads = bounded(eff, source, "threads", 0, 4096);
  c.chunk_records = bounded(eff, source, "chunk_records", 1, 100'000'000);
  c.progress_seconds = bounded(eff, source, "progress_seconds", 0, 86400);
  return c;
}

// `config` with overrides applied, over the defaults, each value's type checked.
json effective_values(json config, const std::vector<std::string>& overrides, const std::string& source,
                      std::set<std::string>* cli_keys) {
  if (!config.is_object()) throw std::runtime_error(source + ": the job config must be a JSON object");
  for (const std::string& o : overrides) apply_override(config, o, cli_keys);
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
  return eff;
}

}  // namespace

JobConfig parse_job_config(json config, const std::string& base_dir, const std::vector<std::string>& overrides,
                           const std::string& source) {
  std::set<std::string> cli_keys;
  json eff = effective_values(std::move(config), overrides, source, &cli_keys);
  const PathOf path = [&](const std::string& key) { return cli_keys.count(key) ? std::string(".") : base_dir; };
  JobConfig c;
  c.pool = read_pool(eff, source, path);
  c.selection = read_selection(eff, source, path);
  c.models = read_models(eff, source, path);
  c.rewrite = read_rewrite(eff, source, path);
  c.run = read_run(eff, source, path);

  // The effective config with resolved paths; the fingerprint leaves out neutral keys.
  eff["image_root"] = c.pool.image_root;
  eff["question_model"] = c.models.question_model;
  eff["answer_model"] = c.models.answer_model;
  eff["rewrite_model"] = c.rewrite.model;
  eff["rewrite_prompt"] = c.rewrite.rewrite_prompt;
  eff["review_prompt"] = c.rewrite.review_prompt;
  eff["output_dir"] = c.run.output_dir;
  eff["score_cache"] = c.selection.score_cache;
  json resolved_pools = json::array();
  for (const PoolFile& f : c.pool.files) resolved_pools.push_back({{"path", f.path}, {"subset", f.subset}});
  eff["pools"] = resolved_pools;
  c.effective = eff;
  json fp = eff;
  for (const std::string& k : neutral_keys()) fp.erase(k);
  c.fingerprint = sha256_hex(fp.dump());
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
