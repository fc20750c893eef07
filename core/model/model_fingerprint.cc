#include "core/model/model_fingerprint.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "core/util/digest.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kWholeFile = 64ull << 20;  // bytes: files up to this are hashed whole
constexpr std::uint64_t kHead = 1ull << 20;        // bytes hashed at the start of a larger file
constexpr std::uint64_t kBlock = 4096;             // bytes per sampled block
constexpr std::uint64_t kBlocks = 1024;            // sampled blocks after the head

// Hashes `n` bytes of `f` from `offset` into `h`.
void hash_range(std::FILE* f, const std::string& path, std::uint64_t offset, std::uint64_t n, Sha256* h) {
  if (std::fseek(f, long(offset), SEEK_SET) != 0)
    throw std::runtime_error(fmt::format("{}: cannot seek to byte {} (model fingerprint)", path, offset));
  std::vector<std::uint8_t> buffer(1 << 16);
  while (n > 0) {
    std::size_t want = std::size_t(std::min<std::uint64_t>(n, buffer.size()));
    std::size_t got = std::fread(buffer.data(), 1, want, f);
    if (got != want) throw std::runtime_error(fmt::format("{}: cannot read (model fingerprint)", path));
    h->update(buffer.data(), got);
    n -= got;
  }
}

}  // namespace

std::string model_folder_fingerprint(const std::string& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  Sha256 h;
  for (const fs::path& file : files) {
    const std::string path = file.string();
    const std::uint64_t size = fs::file_size(file);
    const std::string head = fmt::format("{}\n{}\n", file.filename().string(), size);
    h.update(head);
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw std::runtime_error(fmt::format("{}: cannot open (model fingerprint)", path));
    try {
      if (size <= kWholeFile) {
        hash_range(f, path, 0, size, &h);
      } else {
        hash_range(f, path, 0, kHead, &h);
        const std::uint64_t step = (size - kHead - kBlock) / kBlocks;
        for (std::uint64_t b = 0; b < kBlocks; ++b) hash_range(f, path, kHead + b * step + step / 2, kBlock, &h);
        hash_range(f, path, size - kBlock, kBlock, &h);
      }
    } catch (...) {
      std::fclose(f);
      throw;
    }
    std::fclose(f);
  }
  return h.hex(16);
}

}  // namespace align2
