#include "core/data/record_scanner.h"

#include <fmt/format.h>

#include "core/data/record_validation.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string_view>
#include <fcntl.h>
#include <unistd.h>
#include <vector>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace align2 {
namespace {

// Bytes read per fread: about a core's L2 cache, so the bytes just read are still there when the
// scan and then the parser go over them.
constexpr std::size_t kBlock = 256u << 10;

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

FilePtr open_pool_file(const std::string& path) {
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (!f) throw PoolFileError(path, 0, 0, 0, fmt::format("cannot open the pool file: {}", std::strerror(errno)), false);
  return f;
}

// The index of the first '"', '\\' or '\n' in p[i, n), or n: the bytes that end a run of a
// JSON string's contents (or count a line). Sixteen bytes a step with SSE2.
std::size_t find_string_stop(const char* p, std::size_t n, std::size_t i) {
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), newline = _mm_set1_epi8('\n');
  for (; i + 16 <= n; i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    const int hits = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                                    _mm_cmpeq_epi8(v, newline)));
    if (hits) return i + std::size_t(__builtin_ctz(unsigned(hits)));
  }
#endif
  for (; i < n; ++i)
    if (p[i] == '"' || p[i] == '\\' || p[i] == '\n') return i;
  return n;
}

// The index of the first '"', bracket or '\n' in p[i, n), or n: the bytes that matter between
// strings inside a record (where commas, colons, blanks and scalars change nothing). Sixteen
// bytes a step with SSE2.
std::size_t find_structural(const char* p, std::size_t n, std::size_t i) {
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"'), newline = _mm_set1_epi8('\n'), lower = _mm_set1_epi8(0x20),
                open = _mm_set1_epi8('{'), close = _mm_set1_epi8('}');
  for (; i + 16 <= n; i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    const __m128i folded = _mm_or_si128(v, lower);  // '[' (0x5B) -> '{' (0x7B), ']' (0x5D) -> '}' (0x7D)
    const int hits = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, newline)),
                                                    _mm_or_si128(_mm_cmpeq_epi8(folded, open),
                                                                 _mm_cmpeq_epi8(folded, close))));
    if (hits) return i + std::size_t(__builtin_ctz(unsigned(hits)));
  }
#endif
  for (; i < n; ++i)
    if (p[i] == '"' || p[i] == '\n' || p[i] == '{' || p[i] == '}' || p[i] == '[' || p[i] == ']') return i;
  return n;
}

bool blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Where the bytes that matter to splitting a JSON array lie in 64 bytes: bit k stands for byte k.
struct ChunkMasks {
  std::uint64_t quote = 0, backslash = 0, newline = 0;
  std::uint64_t bracket = 0;  // '{', '[', '}' and ']'
};

#if defined(__SSE2__)
// The masks of p[0, 64), sixteen bytes a step.
ChunkMasks classify_chunk(const char* p) {
  const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), newline = _mm_set1_epi8('\n'),
                lower = _mm_set1_epi8(0x20), open = _mm_set1_epi8('{'), close = _mm_set1_epi8('}');
  ChunkMasks m;
  for (int k = 0; k < 64; k += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k));
    const __m128i folded = _mm_or_si128(v, lower);  // '[' (0x5B) -> '{' (0x7B), ']' (0x5D) -> '}' (0x7D)
    const auto bits = [](__m128i hit) { return std::uint64_t(std::uint16_t(_mm_movemask_epi8(hit))); };
    m.quote |= bits(_mm_cmpeq_epi8(v, quote)) << k;
    m.backslash |= bits(_mm_cmpeq_epi8(v, backslash)) << k;
    m.newline |= bits(_mm_cmpeq_epi8(v, newline)) << k;
    m.bracket |= bits(_mm_or_si128(_mm_cmpeq_epi8(folded, open), _mm_cmpeq_epi8(folded, close))) << k;
  }
  return m;
}

// Bit k: the xor of bits 0..k of x (with quotes: inside a string from its opening quote on).
std::uint64_t prefix_xor(std::uint64_t x) {
  for (int shift = 1; shift < 64; shift *= 2) x ^= x << shift;
  return x;
}

constexpr bool kChunkWalk = true;
#else
ChunkMasks classify_chunk(const char*) { return {}; }
std::uint64_t prefix_xor(std::uint64_t x) { return x; }
constexpr bool kChunkWalk = false;
#endif

// The set bits of x (without the libgcc call __builtin_popcountll makes where the target lacks POPCNT).
std::uint64_t bit_count(std::uint64_t x) {
  x = x - ((x >> 1) & 0x5555555555555555ull);
  x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
  x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0Full;
  return (x * 0x0101010101010101ull) >> 56;
}

// The low k + 1 bits set (bytes 0..k of a chunk).
std::uint64_t through_bit(unsigned k) { return k >= 63 ? ~std::uint64_t(0) : (std::uint64_t(2) << k) - 1; }

// Streams one file block by block and calls `emit` for every record. JSONL is split at
// newlines (memchr). A JSON array's elements are split by tracking strings, escapes and bracket
// nesting. Inside a record, 64 bytes go in one step: bit masks of their quotes, backslashes,
// brackets and newlines, the escaped bytes from the backslash runs, the strings' extent by a
// prefix xor of the unescaped quotes, and then only the brackets outside strings one by one (a
// record of 2 KB has a dozen). Where a backslash lies outside a string (not JSON), those 64 bytes
// go a string run or a byte at a time instead, as do a block's last bytes and the few bytes
// between records. A record is handed over in place in the read block; one that spans two blocks
// is copied, up to the keep bound.
class RecordScanner {
 public:
  RecordScanner(const std::string& path, const ScanRange& range, std::uint64_t keep_bound,
                const std::function<void(RawRecord&)>& emit)
      : path_(path), range_(range), keep_bound_(keep_bound), emit_(emit) {}

  ScanEnd run() {
    FilePtr f = open_pool_file(path_);
    if (range_.begin > 0) {  // a record's first byte, in the middle of the file
      if (fseeko(f.get(), off_t(range_.begin), SEEK_SET) != 0)
        throw PoolFileError(path_, range_.begin, 0, 0, fmt::format("cannot seek: {}", std::strerror(errno)), false);
      block_pos_ = pos_ = range_.begin;
      state_ = range_.in_array ? State::array_value : State::jsonl;
      if (state_ == State::jsonl) begin_record();
    }
    // [kBlock] bytes of the file from block_pos_, and kRecordPadding more readable (RawRecord::bytes).
    std::vector<char> block(kBlock + kRecordPadding);
    for (bool first = range_.begin == 0; !stopped_; first = false) {
      const std::size_t n = std::fread(block.data(), 1, kBlock, f.get());
      if (n == 0) {
        if (std::ferror(f.get()))
          throw PoolFileError(path_, pos_, line_, 0, fmt::format("read error: {}", std::strerror(errno)), false);
        break;
      }
      // A whole UTF-8 byte-order mark at the very start is skipped (a partial one is data).
      if (first && n >= 3 && std::memcmp(block.data(), "\xEF\xBB\xBF", 3) == 0) pos_ = 3;
      consume(block.data(), n);
      block_pos_ += n;
    }
    if (!stopped_) finish();
    ScanEnd end;
    end.stopped = stopped_;
    end.stopped_at = stopped_ ? pos_ : 0;
    end.newlines = line_ - 1;
    end.in_array = state_ != State::jsonl && state_ != State::start;
    return end;
  }

 private:
  enum class State { start, array_value, array_value_or_end, in_value, after_value, array_end, jsonl };

  // The error at pos_ (line and column found by reading the file again: errors are rare).
  PoolFileError error(const std::string& what) const {
    std::uint64_t line = 0, column = 0;
    locate(path_, pos_, &line, &column);
    return PoolFileError(path_, pos_, line, column, what);
  }

  // Bytes p[0, n) of the file from block_pos_; pos_ (>= block_pos_) is the next byte to read.
  void consume(const char* p, std::size_t n) {
    std::size_t i = pos_ - block_pos_;
    while (i < n && !stopped_) {
      pos_ = block_pos_ + i;
      switch (state_) {
        case State::jsonl: i = scan_line(p, n, i); break;
        case State::in_value: i = scan_value(p, n, i); break;
        default:
          if (step_between(p[i])) {
            if (p[i] == '\n') ++line_;
            ++i;
          }
      }
    }
    if (stopped_) return;  // pos_ is the first record of the next range
    pos_ = block_pos_ + n;
    if (state_ == State::jsonl || state_ == State::in_value) keep_until(p, n);
  }

  // Copies the record's bytes up to p[upto) (not yet copied ones only) into spill_, at most
  // bound + 1 of them (a JSONL line of exactly `bound` bytes plus its '\r' must survive); past
  // that, only the length counts. Called for a record that goes on past its block.
  void keep_until(const char* p, std::size_t upto) {
    const std::uint64_t from = kept_to_ - block_pos_, n = upto - from;
    kept_to_ = block_pos_ + upto;
    if (too_large_ || n == 0) return;
    if (spill_.size() + n > keep_bound_ + 1) {
      too_large_ = true;
      std::string().swap(spill_);
      return;
    }
    spill_.append(p + from, n);
  }

  // A record starts at pos_; at or after the range's stop, the scan ends before it instead.
  void begin_record() {
    if (pos_ >= range_.stop) {
      stopped_ = true;
      return;
    }
    current_.bytes = {};
    spill_.clear();  // keeps its capacity for the next records
    current_.length = 0;
    current_.in_array = false;
    current_.offset = kept_to_ = pos_;
    current_.line = line_;
    too_large_ = last_cr_ = line_has_text_ = false;
  }

  // The record ends before p[end]; a JSONL line drops a '\r' before its newline (CRLF).
  void end_record(const char* p, std::size_t end) {
    current_.length = block_pos_ + end - current_.offset;
    current_.in_array = state_ != State::jsonl;
    if (!current_.in_array && last_cr_) --current_.length;
    if (current_.length > keep_bound_) {
      current_.bytes = {};
    } else if (current_.offset >= block_pos_) {  // all in this block: handed over in place
      current_.bytes = std::string_view(p + (current_.offset - block_pos_), current_.length);
    } else {
      keep_until(p, end);
      spill_.append(kRecordPadding, '\0');  // readable after the record (RawRecord::bytes)
      current_.bytes = std::string_view(spill_.data(), current_.length);
    }
    emit_(current_);
  }

  // One JSONL line's run from p[i]: up to and including its newline, or the block's end.
  std::size_t scan_line(const char* p, std::size_t n, std::size_t i) {
    const auto* nl = static_cast<const char*>(std::memchr(p + i, '\n', n - i));
    const std::size_t end = nl ? std::size_t(nl - p) : n;
    for (std::size_t k = i; k < end && !line_has_text_; ++k) line_has_text_ = !blank(p[k]);
    if (end > i) last_cr_ = p[end - 1] == '\r';
    if (!nl) return n;
    if (line_has_text_) end_record(p, end);
    pos_ = block_pos_ + end + 1;
    ++line_;
    begin_record();
    return end + 1;  // (when that stopped the scan, consume returns)
  }

  // An array element's run from p[i], to its end or the block's end.
  std::size_t scan_value(const char* p, std::size_t n, std::size_t i) {
    std::size_t stepwise_to = i;  // bytes before this go a step at a time (a backslash is near)
    while (i < n) {
      if (kChunkWalk && i >= stepwise_to && !closers_.empty() && i + 64 <= n) {
        const std::size_t next = walk_chunk(p, i, classify_chunk(p + i));
        if (next == kStepwise) {
          stepwise_to = i + 64;
        } else {
          if (next != i + 64 || state_ != State::in_value) return next;  // the record ended
          i = next;
          continue;
        }
      }
      if (in_string_) {
        if (escape_) {
          escape_ = false;
          if (p[i++] == '\n') ++line_;
          continue;
        }
        const std::size_t stop = find_string_stop(p, n, i);
        if (stop == n) return n;
        const char c = p[stop];
        i = stop + 1;
        if (c == '\n') ++line_;
        else if (c == '\\') escape_ = true;
        else in_string_ = false;
        continue;
      }
      if (!closers_.empty()) {  // inside the record's brackets: on to the next byte that matters
        i = find_structural(p, n, i);
        if (i == n) return n;
      }
      const char c = p[i];
      pos_ = block_pos_ + i;
      switch (c) {
        case '"':
          in_string_ = true;
          break;
        case '{':
        case '[':
          closers_.push_back(c == '{' ? '}' : ']');
          break;
        case '}':
        case ']':
          if (closers_.empty()) {
            if (c == ']' && pos_ > current_.offset) {  // a scalar element ended by the array's end
              end_record(p, i);
              state_ = State::array_end;
              return i + 1;
            }
            throw error(fmt::format("unexpected '{}'", c));
          }
          if (closers_.back() != c) throw error(fmt::format("expected '{}', found '{}'", closers_.back(), c));
          closers_.pop_back();
          if (closers_.empty()) {
            end_record(p, i + 1);
            state_ = State::after_value;
            return i + 1;
          }
          break;
        case ',':
          if (closers_.empty()) {  // a scalar element ended by a comma
            end_record(p, i);
            state_ = State::array_value;
            return i + 1;
          }
          break;
        default:
          if (closers_.empty() && blank(c)) {  // a scalar element ended by a blank
            end_record(p, i);
            state_ = State::after_value;
            if (c == '\n') ++line_;
            return i + 1;
          }
          if (c == '\n') ++line_;
      }
      ++i;
    }
    return n;
  }

  static constexpr std::size_t kStepwise = std::numeric_limits<std::size_t>::max();

  // The 64 bytes p[i, i + 64) of a record, inside its brackets: the index after the record's
  // closing bracket when it is among them, else i + 64; or kStepwise, with no state changed,
  // when a backslash lies outside a string (not JSON; the stepwise scan then reads them, so
  // that every file splits exactly as it does byte by byte).
  std::size_t walk_chunk(const char* p, std::size_t i, const ChunkMasks& m) {
    // Escaped bytes, as the stepwise scan finds them inside strings: the byte after each
    // backslash that is not itself escaped (escape_: byte 0 is).
    std::uint64_t escaped = escape_ ? 1 : 0;
    bool escape_out = false;  // byte 63 is a backslash that escapes the next chunk's byte 0
    for (std::uint64_t backslashes = m.backslash & ~escaped; backslashes != 0; backslashes &= backslashes - 1) {
      const unsigned k = unsigned(__builtin_ctzll(backslashes));
      if (k == 63) {
        escape_out = true;
        break;
      }
      escaped |= std::uint64_t(1) << (k + 1);
      backslashes &= ~(std::uint64_t(1) << (k + 1));  // an escaped backslash escapes nothing
    }
    // Bit k set: byte k lies in a string (its opening quote included, its closing quote not).
    const std::uint64_t in_string = prefix_xor(m.quote & ~escaped) ^ (in_string_ ? ~std::uint64_t(0) : 0);
    if ((m.backslash & ~in_string) != 0) return kStepwise;
    for (std::uint64_t brackets = m.bracket & ~in_string; brackets != 0; brackets &= brackets - 1) {
      const unsigned k = unsigned(__builtin_ctzll(brackets));
      const char c = p[i + k];
      if (c == '{' || c == '[') {
        closers_.push_back(c == '{' ? '}' : ']');
        continue;
      }
      if (closers_.back() != c) {
        pos_ = block_pos_ + i + k;
        throw error(fmt::format("expected '{}', found '{}'", closers_.back(), c));
      }
      closers_.pop_back();
      if (closers_.empty()) {
        line_ += bit_count(m.newline & through_bit(k));
        in_string_ = escape_ = false;
        pos_ = block_pos_ + i + k;
        end_record(p, i + k + 1);
        state_ = State::after_value;
        return i + k + 1;
      }
    }
    line_ += bit_count(m.newline);
    in_string_ = (in_string >> 63) != 0;
    escape_ = escape_out;
    return i + 64;
  }

  // A byte outside any record (pos_ is its offset): false when it starts one, which the
  // record's scan then reads.
  bool step_between(char c) {
    switch (state_) {
      case State::start:
        if (blank(c)) return true;
        if (c == '[') {
          state_ = State::array_value_or_end;
          return true;
        }
        state_ = State::jsonl;
        begin_record();
        return stopped_;
      case State::array_value_or_end:
      case State::array_value:
        if (blank(c)) return true;
        if (c == ']' && state_ == State::array_value_or_end) {
          state_ = State::array_end;
          return true;
        }
        if (c == ']' || c == ',') throw error(fmt::format("expected a record, found '{}'", c));
        begin_record();
        if (stopped_) return false;
        state_ = State::in_value;
        in_string_ = escape_ = false;
        closers_.clear();
        return false;
      case State::after_value:
        if (blank(c)) return true;
        if (c == ',') state_ = State::array_value;
        else if (c == ']') state_ = State::array_end;
        else throw error(fmt::format("expected ',' or ']' after a record, found '{}'", printable(c)));
        return true;
      case State::array_end:
        if (!blank(c)) throw error(fmt::format("data after the closing ']': '{}'", printable(c)));
        return true;
      default:
        return true;  // not reached: records are scanned by scan_line / scan_value
    }
  }

  static std::string printable(char c) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) return std::string(1, c);
    return fmt::format("\\x{:02x}", u);
  }

  void finish() {
    switch (state_) {
      case State::start:
        return;  // empty file: no records
      case State::jsonl:
        if (line_has_text_) end_record(nullptr, pos_ - block_pos_);
        return;
      case State::array_end:
        return;
      case State::in_value:
        if (closers_.empty() && !in_string_) {
          throw error("unexpected end of file after a record: the array is not closed with ']'");
        }
        throw error(in_string_ ? "unexpected end of file inside a string (truncated file?)"
                               : "unexpected end of file inside a record (truncated file?)");
      default:
        throw error("unexpected end of file: the array is not closed with ']' (truncated file?)");
    }
  }

  std::string path_;
  ScanRange range_;
  std::uint64_t keep_bound_;
  const std::function<void(RawRecord&)>& emit_;
  bool stopped_ = false;                       // a record at or after range_.stop began: not read
  State state_ = State::start;
  bool in_string_ = false, escape_ = false;    // array element: inside a string, after a backslash
  bool line_has_text_ = false, last_cr_ = false;  // JSONL line: a non-blank byte seen, last byte '\r'
  bool too_large_ = false;                     // the record passed the keep bound: bytes dropped
  std::string closers_;                        // array element: the brackets that close its nesting
  RawRecord current_;
  std::string spill_;            // current_'s bytes so far, for a record that spans blocks
  std::uint64_t block_pos_ = 0;  // file offset of the block being read
  std::uint64_t pos_ = 0;        // file offset of the next byte
  std::uint64_t kept_to_ = 0;    // file offset up to which current_ has its bytes
  std::uint64_t line_ = 1;       // 1-based line of pos_, counted from range_.begin
};

}  // namespace

PoolFileError::PoolFileError(const std::string& p, std::uint64_t o, std::uint64_t l, std::uint64_t c,
                             const std::string& what, bool syntax)
    : std::runtime_error(syntax ? fmt::format("{}: byte {} (line {}, column {}): {}; a JSON array cannot be "
                                              "resynchronised after a syntax error, so the whole file is refused",
                                              p, o, l, c, what)
                                : fmt::format("{}: {}", p, what)),
      path(p), offset(o), line(l), column(c), detail(what), syntax(syntax) {}

ScanEnd scan_records(const std::string& path, const ScanRange& range, std::uint64_t keep_bound,
                     const std::function<void(RawRecord&)>& emit) {
  return RecordScanner(path, range, keep_bound, emit).run();
}

// Line and column (1-based) of byte `offset` of a file; for error messages only.
void locate(const std::string& path, std::uint64_t offset, std::uint64_t* line, std::uint64_t* column) {
  *line = 1;
  *column = 1;
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (!f) return;
  std::vector<char> block(kBlock);
  std::uint64_t pos = 0;
  while (pos < offset) {
    std::size_t n = std::fread(block.data(), 1, std::min<std::uint64_t>(block.size(), offset - pos), f.get());
    if (n == 0) return;
    for (std::size_t i = 0; i < n; ++i) {
      if (block[i] == '\n') { ++*line; *column = 1; }
      else ++*column;
    }
    pos += n;
  }
}

PoolFileReader::PoolFileReader(const std::string& path) : path_(path), fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
  if (fd_ < 0) throw PoolFileError(path, 0, 0, 0, fmt::format("cannot open the pool file: {}", std::strerror(errno)), false);
}

PoolFileReader::~PoolFileReader() { ::close(fd_); }

std::string PoolFileReader::read(std::uint64_t offset, std::uint64_t length, std::uint64_t index_in_file) const {
  std::string bytes(length, '\0');
  std::uint64_t done = 0;
  while (done < length) {
    const ssize_t n = pread(fd_, bytes.data() + done, length - done, off_t(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw PoolFileError(path_, offset, 0, 0,
                          fmt::format("record #{} ({} bytes at byte {}) cannot be read again: the file changed "
                                      "while it was indexed?", index_in_file, length, offset),
                          false);
    done += std::uint64_t(n);
  }
  return bytes;
}

bool pool_file_is_array(const std::string& path) {
  FilePtr f = open_pool_file(path);
  std::vector<char> block(1u << 16);
  for (std::uint64_t at = 0;;) {
    const std::size_t n = std::fread(block.data(), 1, block.size(), f.get());
    if (n == 0) {
      if (std::ferror(f.get())) throw PoolFileError(path, at, 0, 0, fmt::format("read error: {}", std::strerror(errno)), false);
      return false;
    }
    std::size_t i = at == 0 && n >= 3 && std::memcmp(block.data(), "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    for (; i < n; ++i)
      if (!blank(block[i])) return block[i] == '[';
    at += n;
  }
}

namespace {

// Whether the object whose '{' is just before `offset` starts like a conversation turn (first
// key "from", "value", "role" or "content": LLaVA's and the chat formats' turns), which a record
// boundary's pattern also matches inside a record's "conversations" array.
bool opens_a_turn(std::FILE* f, std::uint64_t offset) {
  char head[64];
  const ssize_t n = pread(fileno(f), head, sizeof head, off_t(offset));
  std::size_t i = 0;
  while (n > 0 && i < std::size_t(n) && blank(head[i])) ++i;
  if (n <= 0 || i >= std::size_t(n) || head[i] != '"') return false;
  const std::string_view rest(head + i + 1, std::size_t(n) - i - 1);
  for (std::string_view key : {"from\"", "value\"", "role\"", "content\""})
    if (rest.substr(0, key.size()) == key) return true;
  return false;
}

}  // namespace

std::uint64_t record_start_near(const std::string& path, std::uint64_t target, bool in_array) {
  FilePtr f = open_pool_file(path);
  const std::uint64_t from = target > 0 ? target - 1 : 0;  // JSONL: a newline just before target counts
  if (fseeko(f.get(), off_t(from), SEEK_SET) != 0)
    throw PoolFileError(path, from, 0, 0, fmt::format("cannot seek: {}", std::strerror(errno)), false);
  std::vector<char> block(1u << 16);
  // JSON array: the state of the pattern '}' blank* ',' blank* '{' (0 none, 1 after '}', 2 after ',').
  int seen = 0;
  for (std::uint64_t at = from;;) {
    const std::size_t n = std::fread(block.data(), 1, block.size(), f.get());
    if (n == 0) {
      if (std::ferror(f.get())) throw PoolFileError(path, at, 0, 0, fmt::format("read error: {}", std::strerror(errno)), false);
      return at;  // the file's size: no record starts after target
    }
    for (std::size_t i = 0; i < n; ++i, ++at) {
      const char c = block[i];
      if (!in_array) {
        if (c == '\n' && at + 1 >= target) return at + 1;
        continue;
      }
      if (at < target) continue;
      if (c == '}') seen = 1;
      else if (c == ',' && seen >= 1) seen = 2;
      else if (c == '{' && seen == 2 && !opens_a_turn(f.get(), at + 1)) return at;
      else if (!blank(c)) seen = 0;
    }
  }
}

}  // namespace align2
