// Shared by the fuzz targets of test/fuzz: each target defines LLVMFuzzerTestOneInput and is
// built twice: with libFuzzer (ALIGN2_FUZZ, scripts/fuzz.sh) and with fuzz_replay.cc as a plain
// main that runs it over files (the ctest fuzz_* tests replay the seeds and every kept crash).
//
// Policy of every target: the product's documented errors (std::runtime_error and what derives
// from it: ImageError, PoolFileError) are expected outcomes of bad input. Anything else - another
// exception type (std::logic_error, nlohmann::json::exception, std::bad_alloc), a broken
// property, or what ASan/UBSan report - is a finding: fuzz_fail() prints it and aborts, which
// libFuzzer (and the replay runner) report as a crash.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <typeinfo>

#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace align2::fuzz {

[[noreturn]] inline void fuzz_fail(const std::string& target, const std::string& what) {
  std::fprintf(stderr, "fuzz_%s: FINDING: %s\n", target.c_str(), what.c_str());
  std::fflush(stderr);
  std::abort();
}

#define FUZZ_CHECK(target, cond, what)                                                        \
  do {                                                                                        \
    if (!(cond)) ::align2::fuzz::fuzz_fail(target, std::string("check failed: " #cond ": ") + (what)); \
  } while (0)

// Runs `f`; std::runtime_error (and subclasses) is an accepted refusal, anything else a finding.
// Returns true when f returned normally; `error` (when given) gets the refusal's message.
template <class F>
bool expect_clean_errors(const char* target, F&& f, std::string* error = nullptr) {
  try {
    f();
    return true;
  } catch (const std::runtime_error& e) {
    if (error) *error = e.what();
    return false;
  } catch (const std::exception& e) {
    fuzz_fail(target, std::string("unexpected exception ") + typeid(e).name() + ": " + e.what());
  } catch (...) {
    fuzz_fail(target, "unexpected non-std exception");
  }
}

// A folder private to this process (removed at exit), for targets whose API reads files.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::filesystem::path p = std::filesystem::path(base && *base ? base : "/tmp") /
                              ("align2-fuzz-" + std::to_string(::getpid()));
    std::filesystem::remove_all(p);
    std::filesystem::create_directories(p);
    static struct Cleanup {
      std::filesystem::path p;
      ~Cleanup() {
        std::error_code ec;
        std::filesystem::remove_all(p, ec);
      }
    } cleanup{p};
    return p;
  }();
  return dir;
}

inline void write_bytes(const std::filesystem::path& path, const std::uint8_t* data, std::size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) fuzz_fail("common", "cannot write scratch file " + path.string());
}

}  // namespace align2::fuzz
