// Pool indexing throughput: builds a LLaVA-Instruct-150K-sized JSON array (default
// 229 MB) from the bundled real records, each made unique, then times
//   - the one-pass index on rank 0 (build_index: scan + validate + key + duplicates), with the
//     share of each phase;
//   - the index on all ranks as `align2 curate` builds it (share_index: every rank indexes its
//     share of the bytes, rank 0 merges, every rank receives the index), when run under mpirun;
//   - a full read-back through CorpusReader;
// and reports MB/s, records/s, peak RSS per rank and the index's bytes per record. Prints the
// CPU model.
// Usage: [mpirun -np R] index_bench [MEGABYTES] [SCRATCH_DIR]
#include <fmt/format.h>
#include <sys/resource.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench/cpu_info.h"
#include "core/data/corpus_index.h"
#include "core/data/corpus_reader.h"
#include "core/pipeline/curation.h"
#include "distributed/launch.h"
#include "distributed/mpi_comm.h"

using namespace align2;
namespace fs = std::filesystem;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

long peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024;
}

// The pool file: `megabytes` of unique records from the bundled ones, as one JSON array.
std::uint64_t write_pool(const fs::path& pool, std::uint64_t megabytes) {
  fs::path source = fs::path(ALIGN2_SOURCE_DIR) / "examples/demo/data/llava_instruct_60.json";
  std::ifstream in(source);
  nlohmann::json records = nlohmann::json::parse(in);
  std::uint64_t n = 0, bytes = 0;
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
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  MpiSession mpi(&argc, &argv);
  MpiComm comm;
  const bool root = comm.rank() == 0;
  std::uint64_t megabytes = argc > 1 ? std::stoull(argv[1]) : 229;
  fs::path dir = argc > 2 ? fs::path(argv[2]) : fs::temp_directory_path() / "align2-index-bench";
  fs::path pool = dir / "pool.json";
  std::uint64_t n = 0;
  if (root) {
    fs::create_directories(dir);
    n = write_pool(pool, megabytes);
  }
  comm.barrier();
  const double size_mb = double(fs::file_size(pool)) / 1e6;
  if (root) {
    fmt::print("cpu: {}\n", bench::cpu_model());
    fmt::print("pool: {} records, {:.1f} MB ({})\n", n, size_mb, pool.string());
  }

  double t_index = 0;
  PoolIndex index;
  if (root) {  // one rank alone
    IndexProfile profile;
    IndexOptions options;
    options.profile = &profile;
    const double t0 = now_s();
    index = build_index({{pool.string(), ""}}, options);
    t_index = now_s() - t0;
    fmt::print("1 rank, build_index (scan + validate + key + duplicates): {:.2f} s, {:.0f} MB/s, {:.0f} records/s, "
               "index {:.1f} MB ({:.0f} bytes/record)\n",
               t_index, size_mb / t_index, double(n) / t_index, double(serialize_index(index).size()) / 1e6,
               double(serialize_index(index).size()) / double(n));
    auto share = [&](double s) { return 100.0 * s / profile.total; };
    fmt::print("  phases: scan {:.1f}% | validate (UTF-8, parse, rules, canonical) {:.1f}% | hash {:.1f}% | "
               "duplicates {:.1f}%\n", share(profile.scan()), share(profile.validate), share(profile.hash),
               share(profile.duplicates));
  }
  comm.barrier();
  bool identical = true;  // share_index's index equals build_index's (rank 0 compares)
  {  // every rank, as `align2 curate` does
    PoolConfig config;
    config.files = {{pool.string(), ""}};
    const double t0 = now_s();
    PoolIndex shared = share_index(comm, config);
    comm.barrier();
    const double t_shared = now_s() - t0;
    if (root) identical = serialize_index(shared) == serialize_index(index);
    if (root) {
      fmt::print("{} rank{}, share_index (parts, gather, merge, broadcast): {:.2f} s, {:.0f} MB/s, {:.2f}x one rank; "
                 "index {}\n", comm.size(), comm.size() > 1 ? "s" : "", t_shared, size_mb / t_shared,
                 t_index / t_shared, identical ? "identical" : "DIFFERENT");
    }
  }

  std::uint64_t valid = 0;
  if (root) {
    const double t0 = now_s();
    CorpusReader reader(index);
    for (std::uint64_t b = 0; b < index.entries.size(); b += 4096)
      for (const Sample& s : reader.read(b, std::min<std::uint64_t>(index.entries.size(), b + 4096)))
        valid += s.status == Status::valid;
    const double t_read = now_s() - t0;
    fmt::print("read back (seek + parse + validate): {:.2f} s, {:.0f} MB/s; valid {} of {}\n", t_read,
               size_mb / t_read, valid, n);
  }
  std::int64_t rss[1] = {peak_rss_mb()};
  comm.allreduce(rss, 1, ReduceOp::max);
  if (root) {
    fmt::print("peak RSS {} MB (the largest of the ranks)\n", rss[0]);
    fs::remove(pool);
  }
  return !root || (valid == n && identical) ? 0 : 1;
}
