// Pool indexing throughput: builds a LLaVA-Instruct-150K-sized JSON array (default
// 229 MB) from the bundled real records, each made unique, then times the one-pass
// index (scan + validate + key + duplicates) and a full read-back through
// CorpusReader, and reports MB/s, records/s and peak RSS.
// Usage: index_bench [MEGABYTES] [SCRATCH_DIR]
#include <fmt/format.h>
#include <sys/resource.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/data/corpus_index.h"
#include "core/data/corpus_reader.h"

using namespace align2;
namespace fs = std::filesystem;

static double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

static long peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024;
}

int main(int argc, char** argv) {
  std::uint64_t megabytes = argc > 1 ? std::stoull(argv[1]) : 229;
  fs::path dir = argc > 2 ? fs::path(argv[2]) : fs::temp_directory_path() / "align2-index-bench";
  fs::create_directories(dir);
  fs::path source = fs::path(ALIGN2_SOURCE_DIR) / "examples/demo/data/llava_instruct_60.json";
  std::ifstream in(source);
  nlohmann::json records = nlohmann::json::parse(in);

  fs::path pool = dir / "pool.json";
  std::uint64_t n = 0, bytes = 0;
  {
    std::ofstream out(pool, std::ios::binary);
    out << "[\n";
    while (bytes < megabytes << 20) {
      nlohmann::json r = records[n % records.size()];
      r["id"] = fmt::format("{:012d}", n);
      r["conversations"][1]["value"] = r["conversations"][1]["value"].get<std::string>() + fmt::format(" ({})", n);
      std::string text = r.dump(1);
      if (n) out << ",\n";
      out << text;
      bytes += text.size() + 2;
      ++n;
    }
    out << "\n]\n";
  }
  double size_mb = double(fs::file_size(pool)) / 1e6;
  fmt::print("pool: {} records, {:.1f} MB ({})\n", n, size_mb, pool.string());

  double t0 = now_s();
  PoolIndex index = build_index({{pool.string(), ""}}, IndexOptions{});
  double t_index = now_s() - t0;
  fmt::print("index (scan + validate + key + duplicates): {:.2f} s, {:.0f} MB/s, {:.0f} records/s, index {:.1f} MB\n",
             t_index, size_mb / t_index, double(n) / t_index,
             double(serialize_index(index).size()) / 1e6);

  t0 = now_s();
  CorpusReader reader(index);
  std::uint64_t valid = 0;
  for (std::uint64_t b = 0; b < index.entries.size(); b += 4096)
    for (const Sample& s : reader.read(b, std::min<std::uint64_t>(index.entries.size(), b + 4096)))
      valid += s.status == Status::valid;
  double t_read = now_s() - t0;
  fmt::print("read back (seek + parse + validate): {:.2f} s, {:.0f} MB/s; valid {} of {}\n", t_read, size_mb / t_read,
             valid, n);
  fmt::print("peak RSS {} MB\n", peak_rss_mb());
  fs::remove(pool);
  return valid == n ? 0 : 1;
}
