// Files that appear whole or not at all: written to "<path>.tmp-<pid>" and renamed over
// `path`, so a reader (or a rerun after a kill) never sees half a file.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace align2 {

// Writes `content` to `path` through a temporary file and a rename.
void write_file_atomic(const std::string& path, const std::string& content);

// A file written piece by piece through "<path>.tmp-<pid>" and renamed over `path` by
// commit(); destroyed without commit, the temporary is removed and `path` is untouched.
// Creates parent folders. Errors: std::runtime_error naming `path` ("cannot write (disk
// full?)", "cannot rename the finished file into place: ..."). write_file_atomic is one
// write and commit.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(const std::string& path);
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter();

  void write(std::string_view bytes);
  void commit();

 private:
  [[noreturn]] void fail_write();

  std::string path_;
  std::string tmp_;
  std::FILE* file_ = nullptr;  // open until commit or failure
  bool committed_ = false;
};

}  // namespace align2
