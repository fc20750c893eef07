#include "core/store/work_dir.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/util/byte_io.h"
#include "core/util/atomic_file.h"
#include "core/util/digest.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int kRunFormatVersion = 1;

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// "<begin>-<end>.h5" → range; false for any other name.
bool parse_chunk_name(const std::string& name, ChunkRange* range) {
  unsigned long long b = 0, e = 0;
  char tail[4] = {};
  if (name.size() != 12 + 1 + 12 + 3 || std::sscanf(name.c_str(), "%12llu-%12llu%3s", &b, &e, tail) != 3 ||
      std::string(tail) != ".h5")
    return false;
  range->begin = b;
  range->end = e;
  return true;
}

std::string chunk_name(ChunkRange r) { return fmt::format("{:012}-{:012}.h5", r.begin, r.end); }

void remove_stale_temporaries(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec))
    if (it->is_regular_file() && it->path().filename().string().find(".tmp-") != std::string::npos)
      fs::remove(it->path(), ec);
}

}  // namespace

std::vector<ChunkRange> chunk_ranges(std::uint64_t begin, std::uint64_t end, std::uint64_t chunk_records) {
  if (chunk_records == 0) throw std::invalid_argument("chunk_ranges: chunk_records must be positive");
  std::vector<ChunkRange> out;
  for (std::uint64_t b = begin; b < end;) {
    std::uint64_t next = (b / chunk_records + 1) * chunk_records;
    std::uint64_t e = std::min(end, next);
    out.push_back({b, e});
    b = e;
  }
  return out;
}

std::string chunk_path(const std::string& output_dir, const std::string& stage, ChunkRange range) {
  return (fs::path(output_dir) / "work" / stage / chunk_name(range)).string();
}

std::uint64_t open_run(const std::string& output_dir, const RunIdentity& run, bool force) {
  const fs::path dir(output_dir);
  const fs::path manifest = dir / "run.json";
  json want = {{"format", "align2-run"},
               {"version", kRunFormatVersion},
               {"config_fingerprint", run.config_fingerprint},
               {"input_fingerprint", run.input_fingerprint}};
  std::error_code ec;
  if (fs::exists(manifest, ec)) {
    json have = json::parse(read_text(manifest), nullptr, false);
    std::string changed;
    if (have.is_discarded() || !have.is_object() || have.value("format", "") != "align2-run")
      changed = "its run.json is not an align2 run manifest";
    else if (have.value("version", 0) != kRunFormatVersion)
      changed = fmt::format("its run.json has version {}, this align2 writes {}", have.value("version", 0),
                            kRunFormatVersion);
    else if (have.value("config_fingerprint", "") != run.config_fingerprint)
      changed = "the job config or a model changed since (config fingerprint differs)";
    else if (have.value("input_fingerprint", "") != run.input_fingerprint)
      changed = "the pool changed since (input fingerprint differs)";
    if (!changed.empty()) {
      if (!force)
        throw std::runtime_error(fmt::format(
            "{} holds another run: {}. Use a new output_dir, or rerun with --force to discard its work and start over",
            output_dir, changed));
      for (const char* name : {"work", "shards"}) fs::remove_all(dir / name);
      for (const char* name : {"curated.json", "scores.h5", "summary.json", "report.html", "run.json"})
        fs::remove(dir / name, ec);
    }
  } else if (force) {
    for (const char* name : {"work", "shards"}) fs::remove_all(dir / name);
  }
  remove_stale_temporaries(dir / "work");
  // A merge killed while writing the outputs leaves "<output>.tmp-<pid>" beside them.
  std::vector<fs::path> leftovers;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    for (const char* name : {"curated.json", "scores.h5", "summary.json", "report.html", "run.json"})
      if (it->path().filename().string().rfind(std::string(name) + ".tmp-", 0) == 0) leftovers.push_back(it->path());
  for (const fs::path& p : leftovers) fs::remove(p, ec);
  ec.clear();
  std::vector<fs::path> claims;  // of earlier attempts
  if (fs::is_directory(dir / "work", ec))
    for (const auto& stage : fs::directory_iterator(dir / "work", ec))
      if (stage.is_directory())
        for (const auto& e : fs::directory_iterator(stage.path(), ec))
          if (e.is_directory() && e.path().filename().string().rfind("claims-", 0) == 0) claims.push_back(e.path());
  for (const fs::path& c : claims) fs::remove_all(c, ec);
  remove_stale_temporaries(dir / "shards");
  fs::remove_all(dir / "shards");  // rebuilt from the chunks; a rank count change leaves none behind
  std::uint64_t chunks = 0;
  if (fs::is_directory(dir / "work", ec))
    for (auto it = fs::recursive_directory_iterator(dir / "work", ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      ChunkRange r;
      chunks += it->is_regular_file() && parse_chunk_name(it->path().filename().string(), &r);
    }
  write_file_atomic(manifest.string(), want.dump(2) + "\n");
  return chunks;
}

std::string chunk_rows_digest(const std::vector<ShardRow>& rows) {
  ByteWriter w;
  for (const ShardRow& r : rows) {
    w.u64(r.index);
    for (const std::string* s : {&r.key, &r.id, &r.subset}) w.str(*s);
    w.str(status_name(r.status));  // by name, as the shard stores them
    w.str(reason_name(r.reason));
    for (const std::string* s : {&r.message, &r.image, &r.record}) w.str(*s);
    w.f64(r.question_score);  // the bits: NaN stays NaN
    w.u64(r.answer_scores.size());
    for (float a : r.answer_scores) w.f32(a);
    w.f64(r.answer_score);
    for (std::int8_t v : {r.selected_questions, r.selected_answers, r.kept, r.truncated}) w.u8(std::uint8_t(v));
    w.u64(std::uint64_t(r.global_rank));
    for (const auto* texts : {&r.rewritten_questions, &r.rewritten_answers, &r.rewrite_replies, &r.rewrite_reasons}) {
      w.u64(texts->size());
      for (const std::string& t : *texts) w.str(t);
    }
    w.u64(r.rewrite_kept.size());
    for (std::int8_t k : r.rewrite_kept) w.u8(std::uint8_t(k));
    for (const auto* ps : {&r.review_p, &r.review_p_order1, &r.review_p_order2}) {
      w.u64(ps->size());
      for (float p : *ps) w.f32(p);
    }
  }
  Sha256 h;
  h.update(w.bytes.data(), w.bytes.size());
  return h.hex();
}

namespace {

// SHA-256 (64 hex chars) of the file's bytes, streamed.
std::string file_digest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot be read");
  Sha256 h;
  std::vector<char> buffer(1 << 16);
  while (in) {
    in.read(buffer.data(), std::streamsize(buffer.size()));
    h.update(buffer.data(), std::size_t(in.gcount()));
  }
  if (in.bad()) throw std::runtime_error(path + ": cannot be read");
  return h.hex();
}

std::string checksum_path(const std::string& chunk) { return chunk + ".sha256"; }

}  // namespace

void write_chunk(const std::string& path, const ShardMeta& meta, const std::vector<ShardRow>& rows) {
  ShardMeta m = meta;
  json span = json::parse(m.stage_summary_json.empty() ? "{}" : m.stage_summary_json);
  span["rows_sha256"] = chunk_rows_digest(rows);
  m.stage_summary_json = span.dump();
  write_shard(path, m, rows);
  write_file_atomic(checksum_path(path), file_digest(path) + "\n");
}

bool read_chunk(const std::string& path, const ShardMeta& expected, ChunkRange range,
                const std::vector<std::uint64_t>& items, const PoolIndex& index, std::vector<ShardRow>* rows,
                std::string* problem) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return false;
  try {
    // The file's checksum first: HDF5 1.10 can crash or loop on some damaged files
    // (docs/reliability.md), so a chunk that is not byte for byte as written is never opened.
    const std::string sum = checksum_path(path);
    if (!fs::exists(sum, ec)) {
      *problem = path + ": it has no checksum file (its writer stopped before writing it)";
      return false;
    }
    std::ifstream in(sum);
    std::string want;
    in >> want;
    if (want != file_digest(path)) {
      *problem = path + ": its bytes do not match " + sum + " (damaged)";
      return false;
    }
    ShardData data = read_shard(path, ShardReadOptions{/*records=*/false});
    const ShardMeta& m = data.meta;
    if (m.stage != expected.stage || m.config_fingerprint != expected.config_fingerprint ||
        m.input_fingerprint != expected.input_fingerprint || m.input_records != expected.input_records) {
      *problem = path + ": it belongs to another run (fingerprints differ)";
      return false;
    }
    json span = json::parse(m.stage_summary_json, nullptr, false);
    if (!span.is_object() || span.value("begin", ~0ull) != range.begin || span.value("end", ~0ull) != range.end) {
      *problem = path + ": its attributes name another range";
      return false;
    }
    if (data.rows.size() != range.end - range.begin) {
      *problem = fmt::format("{}: it holds {} rows, not {}", path, data.rows.size(), range.end - range.begin);
      return false;
    }
    for (std::uint64_t p = range.begin; p < range.end; ++p) {
      const ShardRow& row = data.rows[p - range.begin];
      if (row.index != items.at(p) || row.key != index.key(row.index)) {
        *problem = fmt::format("{}: row {} is pool record {}, expected {}", path, p - range.begin, row.index, items.at(p));
        return false;
      }
    }
    if (span.value("rows_sha256", std::string()) != chunk_rows_digest(data.rows)) {
      *problem = path + ": its rows do not match their checksum (damaged)";
      return false;
    }
    *rows = std::move(data.rows);
    return true;
  } catch (const std::exception& e) {
    *problem = e.what();
    return false;
  }
}

bool claim_chunk(const std::string& output_dir, const std::string& stage, const std::string& attempt,
                 ChunkRange range) {
  fs::path dir = fs::path(output_dir) / "work" / stage / ("claims-" + attempt);
  std::error_code ec;
  fs::create_directories(dir, ec);
  fs::path path = dir / fmt::format("{:012}-{:012}", range.begin, range.end);
  int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
  if (fd >= 0) {
    ::close(fd);
    return true;
  }
  if (errno == EEXIST) return false;
  throw std::runtime_error(fmt::format("{}: cannot claim the chunk: {}", path.string(), std::strerror(errno)));
}

std::uint64_t committed_items(const std::string& output_dir, const std::string& stage,
                              const std::vector<ChunkRange>& wanted) {
  std::set<std::string> present;
  std::error_code ec;
  for (auto it = fs::directory_iterator(fs::path(output_dir) / "work" / stage, ec);
       !ec && it != fs::directory_iterator(); it.increment(ec))
    present.insert(it->path().filename().string());
  std::uint64_t done = 0;
  for (const ChunkRange& r : wanted)
    if (present.count(chunk_name(r))) done += r.end - r.begin;
  return done;
}

}  // namespace align2
