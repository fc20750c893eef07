// Splitting a pool file into records, block by block: the first step of indexing
// (corpus_index.h). JSONL splits at newlines; a JSON array's elements by tracking strings,
// escapes and bracket nesting. A scan reads a whole file, or a range of it that starts at a
// record's first byte and stops before the first record at or after a given offset: one
// rank's part of a parallel index.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>

namespace align2 {

// A file that cannot be read on: a JSON array's syntax error or truncation (`syntax`), or an
// I/O error.
struct PoolFileError : std::runtime_error {
  // `syntax`: a JSON syntax error (the message then says the file is refused as a whole).
  PoolFileError(const std::string& path, std::uint64_t offset, std::uint64_t line, std::uint64_t column,
                const std::string& what, bool syntax = true);
  std::string path;
  std::uint64_t offset, line, column;
  std::string detail;  // `what` as given
  bool syntax;
};

// A record's bytes as the scanner found them.
struct RawRecord {
  std::uint64_t offset = 0;  // file offset of its first byte
  std::uint64_t length = 0;  // bytes (a JSONL line without its newline and a '\r' before it)
  std::uint64_t line = 0;    // 1-based, counted from the scan's begin
  // The record's bytes, empty when length > the keep bound; valid during the `emit` call only.
  // kRecordPadding (record_validation.h) more bytes after them are readable, contents any, so a
  // parser may read the record in place. They lie in the scanner's read block, or in its own
  // copy for a record that spans two blocks.
  std::string_view bytes;
  bool in_array = false;     // element of a JSON array (else a JSONL line)
};

// The bytes of a file a scan reads.
struct ScanRange {
  std::uint64_t begin = 0;  // 0 (the file from its start), or the first byte of a record
  bool in_array = false;    // with begin > 0: the file is a JSON array (else JSONL)
  std::uint64_t stop = std::numeric_limits<std::uint64_t>::max();  // records starting here or later are not read
};

// How a scan ended.
struct ScanEnd {
  bool stopped = false;          // it reached a record at or after ScanRange::stop (not read)
  std::uint64_t stopped_at = 0;  // that record's offset, when stopped
  std::uint64_t newlines = 0;    // '\n' bytes between the range's begin and where the scan ended
  bool in_array = false;         // the file is a JSON array (its first non-blank byte is '[')
};

// Calls `emit` for every record of `range` in file order. Records keep their bytes up to
// `keep_bound` (longer ones: no bytes, their true length). A UTF-8 byte-order mark at the very
// start is skipped. Throws PoolFileError for a JSON array's syntax error or truncation and for
// I/O errors; a JSONL line that is not JSON is a record like any other.
ScanEnd scan_records(const std::string& path, const ScanRange& range, std::uint64_t keep_bound,
                     const std::function<void(RawRecord&)>& emit);

// Whether the file is a JSON array: its first non-blank byte (after a UTF-8 byte-order mark) is
// '['. Throws PoolFileError when it cannot be read.
bool pool_file_is_array(const std::string& path);

// A pool file open to read records again by offset (the merge's repeats): one descriptor for
// many reads.
class PoolFileReader {
 public:
  // Throws PoolFileError when the file cannot be opened.
  explicit PoolFileReader(const std::string& path);
  ~PoolFileReader();
  PoolFileReader(const PoolFileReader&) = delete;
  PoolFileReader& operator=(const PoolFileReader&) = delete;

  // The `length` bytes of record #index_in_file at `offset`. Throws PoolFileError naming the
  // record when they cannot be read (the file changed or shrank since it was scanned).
  std::string read(std::uint64_t offset, std::uint64_t length, std::uint64_t index_in_file) const;

 private:
  std::string path_;
  int fd_ = -1;
};

// Line and column (1-based) of byte `offset` of a file; for error messages only.
void locate(const std::string& path, std::uint64_t offset, std::uint64_t* line, std::uint64_t* column);

// Where a range that should begin near `target` (> 0) begins, or the file's size when no record
// starts after it. JSONL: the first line start at or after target, exact. JSON array: a guess,
// the first '{' of a '}' ',' '{' sequence (blanks between) at or after target that does not open
// a conversation turn (first key "from", "value", "role" or "content"); it holds only when the
// scan of the range before it stops exactly there (ScanEnd::stopped_at).
std::uint64_t record_start_near(const std::string& path, std::uint64_t target, bool in_array);

}  // namespace align2
