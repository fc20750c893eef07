#include "core/data/corpus_index.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/util/byte_io.h"
#include "core/data/record_cost.h"
#include "kernels/sha256.h"
#include "core/util/digest.h"

namespace align2 {
namespace {

constexpr std::size_t kBlock = 4u << 20;  // bytes read per fread
constexpr std::uint32_t kIndexFormat = 1;

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

// A record's bytes as the scanner found them.
struct RawRecord {
  std::uint64_t offset = 0, length = 0, line = 0;
  std::string bytes;  // empty when length > bound (not kept)
  bool in_array = false;  // element of a JSON array (else a JSONL line)
};

// Streams one file block by block and calls `emit` for every record. JSON arrays are
// split by tracking strings, escapes and bracket nesting; JSONL by newlines.
class RecordScanner {
 public:
  RecordScanner(const std::string& path, std::uint64_t keep_bound,
                std::function<void(RawRecord&)> emit)
      : path_(path), keep_bound_(keep_bound), emit_(std::move(emit)) {}

  void run() {
    FilePtr f(std::fopen(path_.c_str(), "rb"));
    if (!f)
      throw PoolFileError(path_, 0, 0, 0, fmt::format("cannot open the pool file: {}", std::strerror(errno)), false);
    std::vector<char> block(kBlock);
    // A whole UTF-8 byte-order mark at the very start is skipped (a partial one is data).
    std::size_t head = std::fread(block.data(), 1, 3, f.get());
    if (head == 3 && std::memcmp(block.data(), "\xEF\xBB\xBF", 3) == 0) {
      pos_ = 3;
      column_ = 4;
    } else {
      for (std::size_t i = 0; i < head; ++i) step(block[i]);
    }
    for (;;) {
      std::size_t n = std::fread(block.data(), 1, block.size(), f.get());
      if (n == 0) {
        if (std::ferror(f.get()))
          throw PoolFileError(path_, pos_, line_, column_, fmt::format("read error: {}", std::strerror(errno)), false);
        break;
      }
      for (std::size_t i = 0; i < n; ++i) step(block[i]);
    }
    finish();
  }

 private:
  enum class State { start, array_value, array_value_or_end, in_value, after_value, array_end, jsonl };

  PoolFileError error(const std::string& what) const {
    return PoolFileError(path_, pos_, line_, column_, what);
  }

  // Keeps at most bound + 1 bytes (a JSONL line of exactly `bound` bytes plus its '\r'
  // must survive); end_record drops the bytes of longer records.
  void keep(char c) {
    if (current_.length <= keep_bound_) current_.bytes.push_back(c);
    else current_.bytes.clear();  // too large: only the length counts
    ++current_.length;
    last_cr_ = c == '\r';
  }

  // Removes a '\r' that ended a JSONL line (CRLF line endings).
  void strip_cr() {
    if (!last_cr_) return;
    if (!current_.bytes.empty()) current_.bytes.pop_back();
    --current_.length;
    last_cr_ = false;
  }

  void begin_record() {
    last_cr_ = false;
    current_ = RawRecord{};
    current_.offset = pos_;
    current_.line = line_;
  }

  void end_record() {
    if (current_.length > keep_bound_) current_.bytes.clear();
    current_.in_array = state_ != State::jsonl;
    emit_(current_);
    current_ = RawRecord{};
  }

  static bool blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

  void step(char c) {
    switch (state_) {
      case State::start:
        if (blank(c)) break;
        if (c == '[') { state_ = State::array_value_or_end; break; }
        state_ = State::jsonl;
        begin_record();
        step_jsonl(c);
        advance(c);
        return;
      case State::jsonl:
        step_jsonl(c);
        break;
      case State::array_value_or_end:
      case State::array_value:
        if (blank(c)) break;
        if (c == ']' && state_ == State::array_value_or_end) { state_ = State::array_end; break; }
        if (c == ']' || c == ',')
          throw error(fmt::format("expected a record, found '{}'", c));
        begin_record();
        state_ = State::in_value;
        in_string_ = escape_ = false;
        closers_.clear();
        step_value(c);
        break;
      case State::in_value:
        step_value(c);
        break;
      case State::after_value:
        if (blank(c)) break;
        if (c == ',') { state_ = State::array_value; break; }
        if (c == ']') { state_ = State::array_end; break; }
        throw error(fmt::format("expected ',' or ']' after a record, found '{}'", printable(c)));
      case State::array_end:
        if (!blank(c)) throw error(fmt::format("data after the closing ']': '{}'", printable(c)));
        break;
    }
    advance(c);
  }

  void step_jsonl(char c) {
    if (c == '\n') {
      strip_cr();
      if (!is_blank_line()) end_record();
      begin_record();
      current_.offset = pos_ + 1;
      current_.line = line_ + 1;
      return;
    }
    keep(c);
    if (!blank(c)) line_has_text_ = true;
  }

  bool is_blank_line() {
    bool blank_line = !line_has_text_;
    line_has_text_ = false;
    return blank_line;
  }

  // Inside an array element: strings, escapes and bracket nesting decide where it ends.
  void step_value(char c) {
    if (in_string_) {
      keep(c);
      if (escape_) escape_ = false;
      else if (c == '\\') escape_ = true;
      else if (c == '"') in_string_ = false;
      return;
    }
    switch (c) {
      case '"':
        in_string_ = true;
        keep(c);
        return;
      case '{':
      case '[':
        closers_.push_back(c == '{' ? '}' : ']');
        keep(c);
        return;
      case '}':
      case ']':
        if (closers_.empty()) {
          if (c == ']' && current_.length > 0) {  // a scalar element ended by the array's end
            end_scalar();
            state_ = State::array_end;
            return;
          }
          throw error(fmt::format("unexpected '{}'", c));
        }
        if (closers_.back() != c) throw error(fmt::format("expected '{}', found '{}'", closers_.back(), c));
        closers_.pop_back();
        keep(c);
        if (closers_.empty()) {
          end_record();
          state_ = State::after_value;
        }
        return;
      case ',':
        if (closers_.empty()) {  // a scalar element ended by a comma
          end_scalar();
          state_ = State::array_value;
          return;
        }
        keep(c);
        return;
      default:
        if (closers_.empty() && blank(c)) {
          end_scalar();
          state_ = State::after_value;
          return;
        }
        keep(c);
    }
  }

  void end_scalar() { end_record(); }

  static std::string printable(char c) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) return std::string(1, c);
    return fmt::format("\\x{:02x}", u);
  }

  void advance(char c) {
    ++pos_;
    if (c == '\n') {
      ++line_;
      column_ = 1;
    } else {
      ++column_;
    }
  }

  void finish() {
    switch (state_) {
      case State::start:
        return;  // empty file: no records
      case State::jsonl:
        strip_cr();
        if (line_has_text_) end_record();
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
  std::uint64_t keep_bound_;
  std::function<void(RawRecord&)> emit_;
  State state_ = State::start;
  bool in_string_ = false, escape_ = false, line_has_text_ = false, last_cr_ = false;
  std::string closers_;
  RawRecord current_;
  std::uint64_t pos_ = 0, line_ = 1, column_ = 1;
};

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

struct KeyHash {
  std::size_t operator()(const std::string& k) const { return std::hash<std::string>()(k); }
};

}  // namespace

PoolFileError::PoolFileError(const std::string& p, std::uint64_t o, std::uint64_t l, std::uint64_t c,
                             const std::string& what, bool syntax)
    : std::runtime_error(syntax ? fmt::format("{}: byte {} (line {}, column {}): {}; a JSON array cannot be "
                                              "resynchronised after a syntax error, so the whole file is refused",
                                              p, o, l, c, what)
                                : fmt::format("{}: {}", p, what)),
      path(p), offset(o), line(l), column(c) {}

std::string PoolIndex::key(std::uint64_t i) const { return to_hex(entries[i].key, 16); }

PoolIndex build_index(const std::vector<PoolFile>& files, const IndexOptions& options) {
  PoolIndex index;
  index.files = files;
  index.options = options.validation;
  std::unordered_map<std::string, std::uint32_t> subset_ids;
  // content key -> (first pool index, repeats so far)
  std::unordered_map<std::string, std::pair<std::uint64_t, std::uint64_t>, KeyHash> seen;

  for (std::uint32_t f = 0; f < files.size(); ++f) {
    const PoolFile& file = files[f];
    std::uint64_t index_in_file = 0;
    RecordScanner scanner(file.path, options.validation.max_record_bytes, [&](RawRecord& raw) {
      RecordOrigin origin{file.path, index_in_file, raw.line, file.subset};
      ValidatedRecord v = validate_record(raw.bytes, origin, options.validation, raw.length);
      Sample& s = v.sample;
      // In a JSON array, a record that does not parse is a syntax error of the file.
      if (raw.in_array && s.reason == Reason::not_json) {
        std::uint64_t at = raw.offset, line = 0, column = 0;
        try {
          nlohmann::json parsed = nlohmann::json::parse(raw.bytes);  // throws: validation saw it fail
        } catch (const nlohmann::json::parse_error& e) {
          at = raw.offset + (e.byte > 0 ? e.byte - 1 : 0);
        }
        locate(file.path, at, &line, &column);
        throw PoolFileError(file.path, at, line, column,
                            fmt::format("record #{} is not valid JSON: {}", index_in_file,
                                        s.message.substr(s.message.find("not JSON: ") + 10)));
      }
      IndexEntry e;
      e.offset = raw.offset;
      e.length = raw.length;
      e.line = raw.line;
      e.index_in_file = index_in_file++;
      e.file = f;
      e.status = s.status;
      e.reason = s.reason;
      e.has_image = v.has_image;
      auto [it, fresh] = subset_ids.emplace(s.subset, std::uint32_t(index.subsets.size()));
      if (fresh) index.subsets.push_back(s.subset);
      e.subset = it->second;

      std::uint64_t pool_index = index.entries.size();
      std::string key = content_key(v.canonical);
      auto [first, unseen] = seen.emplace(key, std::make_pair(pool_index, std::uint64_t(0)));
      if (!unseen) {
        std::uint64_t repeat = ++first->second.second;
        if (s.status == Status::valid || s.status == Status::missing_image) {
          e.status = s.status = Status::duplicate;
          e.reason = s.reason = Reason::duplicate;
          e.duplicate_of = first->second.first;
          s.message = record_message(origin, s.id, fmt::format("same content as pool record {}", e.duplicate_of));
        }
        e.repeat = repeat;
        key = record_key(v.canonical, repeat);
      }
      from_hex(key, e.key, 16);  // a key is always 32 hex chars

      std::uint64_t text_bytes = 0;
      for (const Turn& t : s.turns) {
        text_bytes += t.question.size() + t.answer.size();
        e.question_bytes += t.question.size();
      }
      e.turns = std::uint32_t(std::min<std::size_t>(s.turns.size(), UINT32_MAX));
      e.cost = s.status == Status::valid ? estimate_record_cost(text_bytes, e.has_image, options.image_cost) : 1;

      index.entries.push_back(e);
      if (options.on_record) {
        s.index = pool_index;
        s.key = key;
        options.on_record(s, e);
      }
    });
    scanner.run();
  }

  // Fingerprint: file subsets, validation settings and every entry's key and status.
  Sha256State h;
  sha256_init(&h);
  std::string head = fmt::format("align2-pool-v1\n{}\n{}\n{}\n", index.options.image_root.empty() ? 0 : 1,
                                 index.options.subset_field, index.options.max_record_bytes);
  sha256_update(&h, head.data(), head.size());
  for (const PoolFile& f : files) sha256_update(&h, f.subset.data(), f.subset.size() + 1);
  for (const IndexEntry& e : index.entries) {
    sha256_update(&h, e.key, 16);
    std::uint8_t st[2] = {std::uint8_t(e.status), std::uint8_t(e.reason)};
    sha256_update(&h, st, 2);
    const std::string& subset = index.subsets[e.subset];
    sha256_update(&h, subset.data(), subset.size() + 1);
  }
  index.fingerprint = sha256_hex(&h);
  return index;
}

std::string record_key(const std::string& canonical, std::uint64_t repeat) {
  // Repeats hash in their own domain: no first-occurrence canonical form starts with
  // "align2-repeat-v1", and the decimal count ends at the first newline.
  if (repeat == 0) return content_key(canonical);
  return content_key("align2-repeat-v1\n" + std::to_string(repeat) + "\n" + canonical);
}

std::vector<std::uint8_t> serialize_index(const PoolIndex& index) {
  if (index.options.accept_open_question)  // a prompt-only option: curation never sets it
    throw std::logic_error("serialize_index: an index read with accept_open_question is not for ranks");
  ByteWriter w;
  w.u32(kIndexFormat);
  w.u64(index.files.size());
  for (const PoolFile& f : index.files) {
    w.str(f.path);
    w.str(f.subset);
  }
  w.u64(index.subsets.size());
  for (const std::string& s : index.subsets) w.str(s);
  w.str(index.options.image_root);
  w.str(index.options.subset_field);
  w.u64(index.options.max_record_bytes);
  w.str(index.fingerprint);
  w.u64(index.entries.size());
  for (const IndexEntry& e : index.entries) {
    w.u64(e.offset);
    w.u64(e.length);
    w.u64(e.line);
    w.u64(e.index_in_file);
    w.u64(e.cost);
    w.u64(e.question_bytes);
    w.u32(e.turns);
    w.u64(e.duplicate_of);
    w.u64(e.repeat);
    w.u32(e.file);
    w.u32(e.subset);
    w.u8(std::uint8_t(e.status));
    w.u8(std::uint8_t(e.reason));
    w.u8(e.has_image ? 1 : 0);
    w.raw(e.key, 16);
  }
  return std::move(w.bytes);
}

PoolIndex deserialize_index(const std::vector<std::uint8_t>& bytes) {
  ByteReader r(bytes);
  if (r.u32() != kIndexFormat) throw std::runtime_error("pool index message: unknown format version");
  PoolIndex index;
  std::uint64_t nf = r.u64();
  for (std::uint64_t i = 0; i < nf; ++i) {
    PoolFile f;
    f.path = r.str();
    f.subset = r.str();
    index.files.push_back(std::move(f));
  }
  std::uint64_t ns = r.u64();
  for (std::uint64_t i = 0; i < ns; ++i) index.subsets.push_back(r.str());
  index.options.image_root = r.str();
  index.options.subset_field = r.str();
  index.options.max_record_bytes = r.u64();
  index.fingerprint = r.str();
  std::uint64_t n = r.u64();
  constexpr std::size_t kEntryBytes = 8 * 8 + 3 * 4 + 3 + 16;
  if (n > (bytes.size() - r.pos) / kEntryBytes) throw std::runtime_error("pool index message: truncated");
  index.entries.resize(n);
  for (IndexEntry& e : index.entries) {
    e.offset = r.u64();
    e.length = r.u64();
    e.line = r.u64();
    e.index_in_file = r.u64();
    e.cost = r.u64();
    e.question_bytes = r.u64();
    e.turns = r.u32();
    e.duplicate_of = r.u64();
    e.repeat = r.u64();
    e.file = r.u32();
    e.subset = r.u32();
    e.status = Status(r.u8());
    e.reason = Reason(r.u8());
    e.has_image = r.u8() != 0;
    r.raw(e.key, 16);
    if (e.file >= index.files.size() || e.subset >= index.subsets.size() ||
        std::uint8_t(e.status) > std::uint8_t(Status::duplicate) ||
        std::uint8_t(e.reason) > std::uint8_t(kLastReason))
      throw std::runtime_error("pool index message: entry out of range");
  }
  if (!r.done()) throw std::runtime_error("pool index message: trailing bytes");
  return index;
}

}  // namespace align2
