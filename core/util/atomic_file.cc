#include "core/util/atomic_file.h"

#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>

namespace align2 {

namespace fs = std::filesystem;

AtomicFileWriter::AtomicFileWriter(const std::string& path)
    : path_(path), tmp_(fmt::format("{}.tmp-{}", path, getpid())) {
  fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  file_ = std::fopen(tmp_.c_str(), "wb");
  if (file_ == nullptr) fail_write();
}

AtomicFileWriter::~AtomicFileWriter() {
  if (committed_) return;
  if (file_ != nullptr) std::fclose(file_);
  std::error_code ec;
  fs::remove(tmp_, ec);
}

void AtomicFileWriter::fail_write() {
  if (file_ != nullptr) std::fclose(file_);
  file_ = nullptr;
  std::error_code ec;
  fs::remove(tmp_, ec);
  throw std::runtime_error(fmt::format("{}: cannot write (disk full?)", path_));
}

void AtomicFileWriter::write(std::string_view bytes) {
  if (committed_) throw std::logic_error(fmt::format("AtomicFileWriter {}: write after commit", path_));
  if (file_ == nullptr) fail_write();  // an earlier write failed
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) fail_write();
}

void AtomicFileWriter::commit() {
  if (committed_) throw std::logic_error(fmt::format("AtomicFileWriter {}: committed twice", path_));
  if (file_ == nullptr) fail_write();
  bool failed = std::fflush(file_) != 0 || std::ferror(file_) != 0;
  failed = std::fclose(file_) != 0 || failed;
  file_ = nullptr;
  if (failed) fail_write();
  std::error_code ec;
  fs::rename(tmp_, path_, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp_, ignored);
    throw std::runtime_error(fmt::format("{}: cannot rename the finished file into place: {}", path_, ec.message()));
  }
  committed_ = true;
}

void write_file_atomic(const std::string& path, const std::string& content) {
  AtomicFileWriter out(path);
  out.write(content);
  out.commit();
}

}  // namespace align2
