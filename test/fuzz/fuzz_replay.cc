// A plain main for a fuzz target (no libFuzzer): runs LLVMFuzzerTestOneInput once on every
// file named on the command line, and on every regular file below every folder named (sorted,
// recursive). Used by the ctest fuzz_* tests to replay the seed corpora and every kept crash
// input (test/fuzz/regressions/<target>/) in every build, sanitized or not.
// Usage: fuzz_replay_<target> PATH...   exit 0 when every input ran; a finding aborts.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "test/fuzz/fuzz_common.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    const fs::path arg = argv[i];
    if (fs::is_directory(arg)) {
      for (const auto& entry : fs::recursive_directory_iterator(arg))
        if (entry.is_regular_file() && entry.path().filename().string()[0] != '.') files.push_back(entry.path());
    } else if (fs::is_regular_file(arg)) {
      files.push_back(arg);
    } else {
      std::fprintf(stderr, "fuzz_replay: %s is neither a file nor a folder\n", argv[i]);
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.eof() && in.fail()) {
      std::fprintf(stderr, "fuzz_replay: cannot read %s\n", file.c_str());
      return 1;
    }
    std::fprintf(stderr, "fuzz_replay: %s (%zu bytes)\n", file.c_str(), bytes.size());
    // A copy in a buffer of exactly its size, so that ASan sees reads past the end.
    std::vector<std::uint8_t> data(bytes.begin(), bytes.end());
    static std::uint8_t empty_input = 0;  // libFuzzer never passes a null pointer either
    LLVMFuzzerTestOneInput(data.empty() ? &empty_input : data.data(), data.size());
  }
  std::printf("fuzz_replay: %zu inputs ran cleanly\n", files.size());
  return 0;
}
