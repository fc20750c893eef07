// Pool indexing throughput: builds a LLaVA-Instruct-150K-sized JSON array (default
// 229 MB) from the bundled real records, each made unique, then times
//   - the one-pass index on rank 0 (build_index: scan + validate + key + duplicates), then one
//     more pass with each phase clocked for its share;
//   - the index on all ranks as `align2 curate` builds it (share_index: every rank indexes its
//     share of the bytes, every rank gathers the parts and merges them), when run under mpirun;
//   - a full read-back through CorpusReader;
// and reports MB/s, records/s, the index's bytes per record, and each rank's peak RSS twice: over
// the whole run, and during share_index alone (the high-water mark reset before it, with rank 0's
// one-rank index already released). Prints the CPU model, and the floor: what parsing and
// hashing alone cost per byte on this CPU. The two index passes are timed --repeat times (5 on
// the generated pool, 1 on given files): the median is reported, the fastest beside it (a
// shared VM's speed drifts by a fifth between runs).
// Usage: [mpirun -np R] index_bench [MEGABYTES [SCRATCH_DIR [--repeat N]]]
//        [mpirun -np R] index_bench --pool FILE... [--image-root DIR] [--subset-field NAME] [--no-read-back]
//                                   [--repeat N]
// The second form indexes the given pool files (bench/large_pool.sh) and leaves them in place.
#include <fmt/format.h>
#include <malloc.h>
#include <simdjson.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench/cpu_info.h"
#include "core/data/corpus_index.h"
#include "core/data/corpus_reader.h"
#include "core/pipeline/curation.h"
#include "core/util/byte_io.h"
#include "core/util/digest.h"
#include "distributed/launch.h"
#include "distributed/mpi_comm.h"

using namespace align2;
namespace fs = std::filesystem;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// This process's peak resident set (VmHWM), MB.
long peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6)) / 1024;
  return u.ru_maxrss / 1024;
}

// Returns freed heap to the system, then sets VmHWM back to the current resident set (Linux >= 4.0:
// "5" to /proc/self/clear_refs).
bool reset_peak_rss() {
  malloc_trim(0);
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  return bool(clear.flush());
}

// Every rank's value, in rank order, on rank 0.
std::vector<long> per_rank(Comm& comm, long mine) {
  ByteWriter w;
  w.u64(std::uint64_t(mine));
  std::vector<long> out;
  for (const std::vector<std::uint8_t>& part : comm.gatherv(w.bytes, 0)) {
    ByteReader r(part);
    out.push_back(long(r.u64()));
  }
  return out;
}

std::string mb_list(const std::vector<long>& mb) {
  std::string s;
  for (std::size_t r = 0; r < mb.size(); ++r) s += fmt::format("{}rank {} {} MB", r ? ", " : "", r, mb[r]);
  return s;
}

// What any index must do per byte, on this CPU, each alone: parse a record (simdjson's DOM
// parser, the bundled records compacted, one at a time) and hash it (libcrypto's SHA-256 over
// the same bytes, one call per record). Their harmonic sum is a ceiling for one rank's index
// pass (which also scans, checks rules, writes the canonical form and marks duplicates).
void print_floor() {
  std::ifstream in(fs::path(ALIGN2_SOURCE_DIR) / "examples/demo/data/llava_instruct_60.json");
  std::vector<std::string> records;
  for (const nlohmann::json& r : nlohmann::json::parse(in)) records.push_back(r.dump());
  std::size_t bytes = 0;
  for (const std::string& r : records) bytes += r.size();
  std::vector<simdjson::padded_string> padded(records.begin(), records.end());
  const int rounds = int(200e6 / double(bytes)) + 1;  // ~200 MB each
  simdjson::dom::parser parser;
  double t0 = now_s();
  std::size_t ok = 0;
  for (int k = 0; k < rounds; ++k)
    for (const simdjson::padded_string& r : padded) ok += !parser.parse(r).error();
  const double parse_s = now_s() - t0;
  std::uint8_t digest[32];
  t0 = now_s();
  for (int k = 0; k < rounds; ++k)
    for (const std::string& r : records) sha256(r, digest);
  const double hash_s = now_s() - t0;
  const double mb = double(bytes) * rounds / 1e6;
  fmt::print("floor on this CPU, one core: simdjson parse {:.0f} MB/s, SHA-256 {:.0f} MB/s (records of {:.0f} bytes); "
             "both: {:.0f} MB/s{}\n", mb / parse_s, mb / hash_s, double(bytes) / records.size(),
             mb / (parse_s + hash_s), ok == records.size() * rounds ? "" : " (PARSE FAILED)");
}

// Rank 0 arrives when done; the others sleep until it has (polling `flag`, a file rank 0
// creates), then all meet at a barrier and the flag is removed. An empty `flag` (no folder
// every rank sees could be written) is a plain barrier.
void wait_asleep(Comm& comm, const std::string& flag) {
  if (!flag.empty()) {
    if (comm.rank() == 0) std::ofstream(flag) << "done\n";
    else
      while (!fs::exists(flag)) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  comm.barrier();
  if (comm.rank() == 0 && !flag.empty()) fs::remove(flag);
}

// The flag file of wait_asleep, beside the first pool file (a folder every rank reads), decided
// on rank 0 and sent to all; "" when rank 0 cannot write there.
std::string sleep_flag(Comm& comm, const fs::path& pool_file) {
  std::string flag;
  if (comm.rank() == 0) {
    const fs::path path = pool_file.parent_path() / fmt::format(".index_bench-done-{}", ::getpid());
    if (std::ofstream(path)) flag = path.string();  // writable: the file is removed again below
    std::error_code ec;
    fs::remove(path, ec);
  }
  ByteWriter w;
  w.str(flag);
  std::vector<std::uint8_t> bytes = w.bytes;
  comm.broadcast(bytes, 0);
  ByteReader r(bytes);
  return r.str();
}

struct BenchArgs {
  std::uint64_t megabytes = 229;
  fs::path dir = fs::temp_directory_path() / "align2-index-bench";
  PoolConfig pool;  // given with --pool; else the bench writes one file
  bool read_back = true;  // --no-read-back skips it (for profiling the index alone)
  int repeat = 0;         // --repeat N: timed passes of each kind (0: 5 for a generated pool, 1 with --pool)
};

// Seconds of repeated passes: their median is what the bench reports, the fastest beside it.
struct Passes {
  std::vector<double> seconds;

  double median() const {
    std::vector<double> s = seconds;
    std::sort(s.begin(), s.end());
    const std::size_t n = s.size();
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  }
  double best() const { return *std::min_element(seconds.begin(), seconds.end()); }
  // "0.62 s, 387 MB/s (median of 5; fastest 0.60 s, 400 MB/s)"
  std::string text(double megabytes) const {
    if (seconds.size() == 1) return fmt::format("{:.2f} s, {:.0f} MB/s", median(), megabytes / median());
    return fmt::format("{:.2f} s, {:.0f} MB/s (median of {}; fastest {:.2f} s, {:.0f} MB/s)", median(),
                       megabytes / median(), seconds.size(), best(), megabytes / best());
  }
};

// `text` as a whole number from 1 on (`what` names it in the error).
std::uint64_t whole_number(const std::string& text, const char* what) {
  std::size_t used = 0;
  std::uint64_t n = 0;
  try {
    n = std::stoull(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || n < 1 || text[0] == '-')
    throw std::invalid_argument(fmt::format("index_bench: {} needs a whole number from 1 on, not '{}'", what, text));
  return n;
}

// The N of --repeat N: 1 to 1,000 passes.
int repeat_count(const std::string& text) {
  const std::uint64_t n = whole_number(text, "--repeat");
  if (n > 1000) throw std::invalid_argument(fmt::format("index_bench: --repeat {} is above 1000 passes", n));
  return int(n);
}

BenchArgs parse_args(int argc, char** argv) {
  BenchArgs a;
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] != "--pool") {
    if (args.size() > 0) a.megabytes = whole_number(args[0], "MEGABYTES");
    if (args.size() > 1) a.dir = args[1];
    if (args.size() > 2 && (args.size() != 4 || args[2] != "--repeat"))
      throw std::invalid_argument(fmt::format("index_bench: unexpected arguments after {}", args[1]));
    if (args.size() == 4) a.repeat = repeat_count(args[3]);
    a.repeat = a.repeat ? a.repeat : 5;
    return a;
  }
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--image-root" && i + 1 < args.size()) a.pool.image_root = args[++i];
    else if (args[i] == "--subset-field" && i + 1 < args.size()) a.pool.subset_field = args[++i];
    else if (args[i] == "--no-read-back") a.read_back = false;
    else if (args[i] == "--repeat" && i + 1 < args.size()) a.repeat = repeat_count(args[++i]);
    else if (fs::is_regular_file(args[i])) a.pool.files.push_back({args[i], ""});
    else throw std::invalid_argument(fmt::format("index_bench: {} is not a file", args[i]));
  }
  if (a.pool.files.empty()) throw std::invalid_argument("index_bench: --pool needs at least one file");
  a.repeat = a.repeat ? a.repeat : 1;
  return a;
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
  BenchArgs args;
  try {  // every rank reads the same arguments: all leave together
    args = parse_args(argc, argv);
  } catch (const std::exception& e) {
    if (root) fmt::print(stderr, "{}\nusage: index_bench [MEGABYTES [SCRATCH_DIR [--repeat N]]] | --pool FILE... [--image-root DIR] "
                                 "[--subset-field NAME] [--no-read-back] [--repeat N]\n", e.what());
    return 2;
  }
  const bool generated = args.pool.files.empty();
  fs::path pool = args.dir / "pool.json";
  if (generated) {
    args.pool.files = {{pool.string(), ""}};
    if (root) {
      fs::create_directories(args.dir);
      write_pool(pool, args.megabytes);
    }
  }
  comm.barrier();
  std::uint64_t bytes = 0;
  for (const PoolFile& f : args.pool.files) bytes += fs::file_size(f.path);
  const double size_mb = double(bytes) / 1e6;
  if (root) {
    fmt::print("cpu: {}\n", bench::cpu_model());
    fmt::print("pool: {} file(s), {:.1f} MB\n", args.pool.files.size(), size_mb);
  }
  // Rank 0 measures alone while the other ranks sleep (an MPI barrier would spin a core,
  // which slows rank 0's pass by about a tenth on this machine).
  const std::string flag = sleep_flag(comm, args.pool.files[0].path);
  if (root) print_floor();

  Passes one_rank, shared;
  std::string one_rank_digest;  // SHA-256 of the one-rank index's bytes (the index itself is released)
  std::uint64_t n = 0;
  if (root) {  // one rank alone: the timed passes, then one more with the phases clocked
    for (int k = 0; k < args.repeat; ++k) {
      const double t0 = now_s();
      PoolIndex index = build_index(args.pool.files, index_options(args.pool));
      one_rank.seconds.push_back(now_s() - t0);
      if (k > 0) continue;
      n = index.entries.size();
      const std::vector<std::uint8_t> bytes_of = serialize_index(index);
      one_rank_digest = sha256_hex(std::string_view(reinterpret_cast<const char*>(bytes_of.data()), bytes_of.size()));
      fmt::print("index: {} records, {:.1f} MB ({:.0f} bytes/record)\n", n, double(bytes_of.size()) / 1e6,
                 double(bytes_of.size()) / double(n));
    }
    const double t = one_rank.median();
    fmt::print("1 rank, build_index (scan + validate + key + duplicates): {}, {:.0f} records/s\n",
               one_rank.text(size_mb), double(n) / t);
    IndexProfile profile;
    IndexOptions options = index_options(args.pool);
    options.profile = &profile;
    build_index(args.pool.files, options);
    auto share = [&](double s) { return 100.0 * s / profile.total; };
    fmt::print("  phases (one more pass, clocked per record): scan {:.1f}% | validate (UTF-8, parse, rules, "
               "canonical) {:.1f}% | hash {:.1f}% | duplicates {:.1f}%\n", share(profile.scan()),
               share(profile.validate), share(profile.hash), share(profile.duplicates));
  }
  wait_asleep(comm, flag);
  const std::vector<long> before_share = per_rank(comm, peak_rss_mb());
  const bool reset = reset_peak_rss();
  bool identical = true;  // share_index's index equals build_index's (rank 0 compares digests)
  PoolIndex index;
  for (int k = 0; k < args.repeat; ++k) {
    index = PoolIndex{};
    comm.barrier();
    const double t0 = now_s();
    index = share_index(comm, args.pool);
    comm.barrier();
    shared.seconds.push_back(now_s() - t0);
  }
  const std::vector<long> during_share = per_rank(comm, peak_rss_mb());
  if (root) {
    const std::vector<std::uint8_t> bytes_of = serialize_index(index);
    identical = sha256_hex(std::string_view(reinterpret_cast<const char*>(bytes_of.data()), bytes_of.size())) == one_rank_digest;
    fmt::print("{} rank{}, share_index (parts, allgather, merge on every rank): {}, {:.2f}x one rank (medians); "
               "index {}\n", comm.size(), comm.size() > 1 ? "s" : "", shared.text(size_mb),
               one_rank.median() / shared.median(), identical ? "identical" : "DIFFERENT");
    fmt::print("peak RSS before share_index: {}\n", mb_list(before_share));
    fmt::print("peak RSS during share_index{}: {}\n", reset ? "" : " (NOT reset: whole run)", mb_list(during_share));
  }

  std::uint64_t valid = 0, read = 0;
  if (root && args.read_back) {
    const double t1 = now_s();
    CorpusReader reader(index);
    for (std::uint64_t b = 0; b < index.entries.size(); b += 4096)
      for (const Sample& s : reader.read(b, std::min<std::uint64_t>(index.entries.size(), b + 4096))) {
        valid += s.status == Status::valid;
        ++read;
      }
    const double t_read = now_s() - t1;
    fmt::print("read back (seek + parse + validate): {:.2f} s, {:.0f} MB/s; valid {} of {}\n", t_read,
               size_mb / t_read, valid, read);
  }
  const std::vector<long> whole = per_rank(comm, peak_rss_mb());
  if (root) {
    fmt::print("peak RSS {}: {}\n", args.read_back ? "after read-back" : "at the end (no read-back)", mb_list(whole));
    if (generated) fs::remove(pool);
  }
  // A generated pool has only valid records; a given pool has what it has.
  return !root || ((!args.read_back || read == n) && (!generated || !args.read_back || valid == n) && identical) ? 0 : 1;
}
