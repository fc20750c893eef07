#include "core/data/corpus_index.h"

#include <fmt/format.h>

#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <type_traits>
#include <unordered_map>

#include "core/util/byte_io.h"
#include "core/data/record_cost.h"
#include "core/util/digest.h"
#include "core/util/huge_pages.h"

namespace align2 {
namespace {

constexpr std::uint32_t kIndexFormat = 1;

// Adds the seconds from `since` to now to *sum and returns now; without a sum, returns `since`
// (no clock read: the pass is not being profiled).
std::chrono::steady_clock::time_point lap(std::chrono::steady_clock::time_point since, double* sum) {
  if (!sum) return since;
  const auto now = std::chrono::steady_clock::now();
  *sum += std::chrono::duration<double>(now - since).count();
  return now;
}

// Where a JSON array's element that does not parse fails: the byte at which nlohmann's parser
// stopped, its line and column, and validation's reason (from its `message`).
struct NotJsonAt {
  std::uint64_t offset = 0, line = 0, column = 0;
  std::string reason;
};

NotJsonAt not_json_at(const std::string& path, const RawRecord& raw, const std::string& message) {
  NotJsonAt at;
  at.offset = raw.offset;
  try {
    nlohmann::json parsed = nlohmann::json::parse(raw.bytes.begin(), raw.bytes.end());  // throws: validation saw it fail
  } catch (const nlohmann::json::parse_error& e) {
    at.offset = raw.offset + (e.byte > 0 ? e.byte - 1 : 0);
  }
  locate(path, at.offset, &at.line, &at.column);
  at.reason = message.substr(message.find("not JSON: ") + 10);
  return at;
}

// The error of a JSON array whose record #index_in_file does not parse: the whole file fails.
PoolFileError not_json_error(const std::string& path, const NotJsonAt& at, std::uint64_t index_in_file) {
  return PoolFileError(path, at.offset, at.line, at.column,
                       fmt::format("record #{} is not valid JSON: {}", index_in_file, at.reason));
}

// The entry of a scanned record, with its content key (a repeat's key needs the pool before
// it) and the cost of its own verdict; `index_in_file` and raw.line as the caller counts them.
IndexEntry record_entry(const RawRecord& raw, std::uint32_t f, std::uint64_t index_in_file, const ValidatedRecord& v,
                        const IndexOptions& options) {
  const Sample& s = v.sample;
  IndexEntry e;
  e.offset = raw.offset;
  e.length = raw.length;
  e.line = raw.line;
  e.index_in_file = index_in_file;
  e.file = f;
  e.status = s.status;
  e.reason = s.reason;
  e.has_image = v.has_image;
  e.question_bytes = v.counts.question_bytes;
  e.turns = std::uint32_t(std::min<std::uint64_t>(v.counts.turns, UINT32_MAX));
  e.cost = s.status == Status::valid ? estimate_record_cost(v.counts.text_bytes, e.has_image, options.image_cost) : 1;
  return e;
}

// The content keys seen so far: open addressing with linear probing over 32-byte slots, at most
// 70% full (a cache line or two per lookup, no allocation per key), in huge pages (a lookup
// misses every cache, but not the TLB). SHA-256 bytes are uniform, so a key's first 8 bytes pick
// its slot.
class SeenKeys {
 public:
  struct Slot {
    std::uint64_t lo = 0, hi = 0;         // the key's bytes 0-7 and 8-15
    std::uint64_t first_plus_one = 0;     // pool index of the key's first record + 1; 0: an empty slot
    std::uint64_t repeats = 0;            // repeats of it so far
  };

  SeenKeys() { rehash(kMinSlots); }

  // The slot of `key`, taken for a first record at pool index `at` when the key is new (*fresh).
  Slot& find_or_add(const std::uint8_t key[16], std::uint64_t at, bool* fresh) {
    if (!room_for(used_ + 1, size_)) rehash(2 * size_);
    std::uint64_t lo, hi;
    std::memcpy(&lo, key, 8);
    std::memcpy(&hi, key + 8, 8);
    const std::size_t mask = size_ - 1;
    for (std::size_t i = std::size_t(lo) & mask;; i = (i + 1) & mask) {
      Slot& s = slots()[i];
      if (s.first_plus_one == 0) {
        s.lo = lo, s.hi = hi, s.first_plus_one = at + 1;
        ++used_;
        *fresh = true;
        return s;
      }
      if (s.lo == lo && s.hi == hi) {
        *fresh = false;
        return s;
      }
    }
  }

  // Room for n keys without growing: one table of the final size.
  void reserve(std::uint64_t n) {
    std::size_t size = size_;
    while (!room_for(n, size)) size *= 2;
    if (size != size_) rehash(size);
  }

  // Starts loading the slot where a lookup of `key` begins (the merge asks a few entries ahead:
  // a table of 10M keys is 512 MB, and each lookup would otherwise wait for memory).
  void prefetch(const std::uint8_t key[16]) const {
    std::uint64_t lo;
    std::memcpy(&lo, key, 8);
    __builtin_prefetch(&slots()[std::size_t(lo) & (size_ - 1)]);
  }

 private:
  static constexpr std::size_t kMinSlots = std::size_t(1) << 16;  // a power of two, as every size

  // Whether `size` slots hold n keys: at most 70% full (linear probing then looks at about 2
  // slots for a key present, 6 for a key absent; a 10M-key table is 512 MB).
  static bool room_for(std::uint64_t n, std::size_t size) { return 10 * n <= 7 * std::uint64_t(size); }

  Slot* slots() const { return static_cast<Slot*>(table_.data()); }

  // A table of `size` slots (zero bytes: every slot empty) holding the keys so far.
  void rehash(std::size_t size) {
    HugePageBuffer old = std::exchange(table_, HugePageBuffer(size * sizeof(Slot)));
    const Slot* from = static_cast<const Slot*>(old.data());
    const std::size_t old_size = size_, mask = size - 1;
    size_ = size;
    for (std::size_t k = 0; k < old_size && from; ++k) {
      const Slot& s = from[k];
      if (s.first_plus_one == 0) continue;
      std::size_t i = std::size_t(s.lo) & mask;
      while (slots()[i].first_plus_one != 0) i = (i + 1) & mask;
      slots()[i] = s;
    }
  }

  HugePageBuffer table_;  // [size_] Slots
  std::size_t size_ = 0;  // slots: a power of two
  std::uint64_t used_ = 0;
};

// The id of subset `name` in `names` (ids by first appearance; `ids` maps names to them), added
// when new. Looked up before anything is built: nearly every record names a known subset.
std::uint32_t subset_id(std::unordered_map<std::string, std::uint32_t>& ids, std::vector<std::string>& names,
                        const std::string& name) {
  if (auto it = ids.find(name); it != ids.end()) return it->second;
  const auto id = std::uint32_t(names.size());
  ids.emplace(name, id);
  names.push_back(name);
  return id;
}

// What the pool order decides: subset ids by first appearance, and repeats.
struct PoolOrder {
  std::unordered_map<std::string, std::uint32_t> subset_ids;
  SeenKeys seen;

  std::uint32_t subset_id(PoolIndex& index, const std::string& name) {
    return align2::subset_id(subset_ids, index.subsets, name);
  }

  // Entry `e` (pool index `at`, key = its content key) against the records before it: the n-th
  // repeat of a content gets repeat n and, when valid or only missing its image, status
  // duplicate, duplicate_of and cost 1. Returns n (0 for a first occurrence); the caller then
  // sets the repeat's key (record_key), which needs the canonical form.
  std::uint64_t mark_repeat(std::uint64_t at, IndexEntry& e) {
    bool unseen = false;
    SeenKeys::Slot& first = seen.find_or_add(e.key, at, &unseen);
    if (unseen) return 0;
    e.repeat = ++first.repeats;
    if (e.status == Status::valid || e.status == Status::missing_image) {
      e.status = Status::duplicate;
      e.reason = Reason::duplicate;
      e.duplicate_of = first.first_plus_one - 1;
      e.cost = 1;
    }
    return e.repeat;
  }
};

// Indexes file `f` whole, in order, into `index` (build_index's pass over one file); `images`
// keeps the pass's image checks.
void index_file(PoolIndex& index, PoolOrder& order, std::uint32_t f, const IndexOptions& options,
                ImageChecks& images) {
  IndexProfile* prof = options.profile;
  const PoolFile& file = index.files[f];
  const ValidationPass pass{&images, /*keep_raw=*/false, /*keep_text=*/bool(options.on_record), /*padded=*/true};
  std::uint64_t index_in_file = 0;
  RecordOrigin origin{file.path, 0, 0, file.subset};
  ValidatedRecord v;  // reused: its canonical buffer keeps its capacity
  scan_records(file.path, ScanRange{}, options.validation.max_record_bytes, [&](RawRecord& raw) {
    origin.index_in_file = index_in_file;
    origin.line = raw.line;
    auto t = prof ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    validate_record(raw.bytes, origin, options.validation, raw.length, pass, v);
    t = lap(t, prof ? &prof->validate : nullptr);
    Sample& s = v.sample;
    if (raw.in_array && s.reason == Reason::not_json)
      throw not_json_error(file.path, not_json_at(file.path, raw, s.message), index_in_file);
    IndexEntry e = record_entry(raw, f, index_in_file++, v, options);
    e.subset = order.subset_id(index, s.subset);
    content_key(v.canonical, e.key);
    t = lap(t, prof ? &prof->hash : nullptr);
    const std::uint64_t pool_index = index.entries.size();
    const std::uint64_t repeat = order.mark_repeat(pool_index, e);
    t = lap(t, prof ? &prof->duplicates : nullptr);
    if (repeat) {
      record_key(v.canonical, repeat, e.key);
      lap(t, prof ? &prof->hash : nullptr);
    }
    index.entries.push_back(e);
    if (options.on_record) {
      s.index = pool_index;
      s.key = to_hex(e.key, 16);
      if (e.status == Status::duplicate) {
        s.status = e.status;
        s.reason = e.reason;
        s.message = record_message(origin, s.id, fmt::format("same content as pool record {}", e.duplicate_of));
      }
      options.on_record(s, e);
    }
  });
}

// Fingerprint: file subsets, validation settings and every entry's key and status.
std::string pool_fingerprint(const PoolIndex& index) {
  Sha256 h;
  h.update(fmt::format("align2-pool-v1\n{}\n{}\n{}\n", index.options.image_root.empty() ? 0 : 1,
                       index.options.subset_field, index.options.max_record_bytes));
  for (const PoolFile& f : index.files) h.update(f.subset.data(), f.subset.size() + 1);
  // Per entry: key (16 bytes), status, reason, subset name and its NUL; absorbed 64 KB at a time.
  std::string block;
  block.reserve(1 << 16);
  for (const IndexEntry& e : index.entries) {
    block.append(reinterpret_cast<const char*>(e.key), 16);
    block.push_back(char(e.status));
    block.push_back(char(e.reason));
    const std::string& subset = index.subsets[e.subset];
    block.append(subset.c_str(), subset.size() + 1);
    if (block.size() >= (1 << 16) - 512) {
      h.update(block);
      block.clear();
    }
  }
  h.update(block);
  return h.hex();
}

constexpr std::size_t kEntryBytes = 8 * 8 + 3 * 4 + 3 + 16;  // write_entry's bytes
constexpr std::size_t kEntryKeyAt = kEntryBytes - 16;         // where the key lies in them
static_assert(sizeof(Status) == 1 && sizeof(Reason) == 1 && sizeof(bool) == 1, "one byte each in kEntryBytes");

// Calls f on each field of an entry in its packed form's order (e const: f only reads).
template <class Entry, class F>
void for_each_field(Entry& e, F&& f) {
  f(e.offset), f(e.length), f(e.line), f(e.index_in_file), f(e.cost), f(e.question_bytes), f(e.turns);
  f(e.duplicate_of), f(e.repeat), f(e.file), f(e.subset), f(e.status), f(e.reason), f(e.has_image), f(e.key);
}

// An entry as write_entry packs it: kEntryBytes little-endian bytes, one bounds check a read.
void write_entry(ByteWriter& w, const IndexEntry& e) {
  std::uint8_t bytes[kEntryBytes];
  std::size_t at = 0;
  for_each_field(e, [&](const auto& value) {
    std::memcpy(bytes + at, &value, sizeof value);
    at += sizeof value;
  });
  assert(at == kEntryBytes);
  w.raw(bytes, kEntryBytes);
}

// Reads one entry; files and subsets bound its file and subset ids.
IndexEntry read_entry(ByteReader& r, std::size_t files, std::size_t subsets, const char* what) {
  std::uint8_t bytes[kEntryBytes];
  r.raw(bytes, kEntryBytes);
  IndexEntry e;
  std::size_t at = 0;
  for_each_field(e, [&](auto& value) {
    using T = std::remove_reference_t<decltype(value)>;
    if constexpr (std::is_same_v<T, bool>) value = bytes[at] != 0;
    else std::memcpy(&value, bytes + at, sizeof value);
    at += sizeof value;
  });
  if (e.file >= files || e.subset >= subsets || std::uint8_t(e.status) > std::uint8_t(Status::duplicate) ||
      std::uint8_t(e.reason) > std::uint8_t(kLastReason))
    throw std::runtime_error(fmt::format("{}: entry out of range", what));
  return e;
}

}  // namespace

std::string PoolIndex::key(std::uint64_t i) const { return to_hex(entries[i].key, 16); }

PoolIndex build_index(const std::vector<PoolFile>& files, const IndexOptions& options) {
  IndexProfile* prof = options.profile;
  if (prof) *prof = IndexProfile{};
  const auto start = std::chrono::steady_clock::now();
  PoolIndex index;
  index.files = files;
  index.options = options.validation;
  PoolOrder order;
  ImageChecks images(options.validation.image_root);
  for (std::uint32_t f = 0; f < files.size(); ++f) index_file(index, order, f, options, images);
  seal_index(index);
  lap(start, prof ? &prof->total : nullptr);
  return index;
}

// --- A parallel index ------------------------------------------------------------------------

namespace {

constexpr std::uint32_t kPartFormat = 1;
constexpr std::uint64_t kUnknownSize = std::numeric_limits<std::uint64_t>::max();

// How a part's scan of a segment failed.
enum class PartError : std::uint8_t { none, file, not_json, other };

// One file's share of a part: the records that start in [begin, stop).
struct PartSegment {
  std::uint32_t file = 0;
  std::uint64_t begin = 0;  // 0, or where record_start_near placed it (a guess in a JSON array)
  ScanEnd end;
  std::vector<std::string> subsets;  // local subset ids -> names
  std::vector<IndexEntry> entries;   // index_in_file and line counted from begin; key = content key
  // A segment read back from its part's bytes (deserialize_part) leaves its entries there:
  std::size_t part = 0;              // which part's bytes
  std::size_t entries_at = 0;        // where its entries begin in them (kEntryBytes each)
  std::uint64_t entry_count = 0;     // how many
  PartError error = PartError::none;
  std::string detail;                // file: PoolFileError::detail; not_json: the parser's reason; other: what()
  std::uint64_t offset = 0, line = 0, column = 0;  // file and not_json errors
  std::uint64_t record = 0;          // not_json: the element's number counted from begin
  bool syntax = false;               // file: PoolFileError::syntax
};

// Sizes of the pool files, kUnknownSize where the size cannot be had (the merge then indexes
// the file itself, which reports why).
std::vector<std::uint64_t> pool_file_sizes(const std::vector<PoolFile>& files) {
  std::vector<std::uint64_t> sizes;
  for (const PoolFile& file : files) {
    std::error_code ec;
    const std::uintmax_t n = std::filesystem::file_size(file.path, ec);
    sizes.push_back(ec ? kUnknownSize : std::uint64_t(n));
  }
  return sizes;
}

// Scans segment `seg` (begin set) up to `stop`, filling its entries or its error; `images` keeps
// the part's image checks.
void scan_segment(const PoolFile& file, std::uint64_t stop, bool in_array, const IndexOptions& options,
                  ImageChecks& images, PartSegment& seg) {
  struct NotJsonStop {};  // ends the scan at a JSON array element that does not parse
  std::unordered_map<std::string, std::uint32_t> subset_ids;
  const ValidationPass pass{&images, /*keep_raw=*/false, /*keep_text=*/false, /*padded=*/true};
  ValidatedRecord v;  // reused: its canonical buffer keeps its capacity
  try {
    seg.end = scan_records(file.path, ScanRange{seg.begin, in_array, stop}, options.validation.max_record_bytes,
                           [&, origin = RecordOrigin{file.path, 0, 0, file.subset}](RawRecord& raw) mutable {
      const std::uint64_t local = seg.entries.size();
      origin.index_in_file = local;
      origin.line = raw.line;
      validate_record(raw.bytes, origin, options.validation, raw.length, pass, v);
      if (raw.in_array && v.sample.reason == Reason::not_json) {
        NotJsonAt at = not_json_at(file.path, raw, v.sample.message);
        seg.error = PartError::not_json;
        seg.offset = at.offset, seg.line = at.line, seg.column = at.column, seg.record = local;
        seg.detail = std::move(at.reason);
        throw NotJsonStop{};
      }
      IndexEntry e = record_entry(raw, seg.file, local, v, options);
      e.subset = subset_id(subset_ids, seg.subsets, v.sample.subset);
      // A record over the bound is keyed by its global number: the merge keys it.
      if (e.reason != Reason::record_too_large) content_key(v.canonical, e.key);
      seg.entries.push_back(e);
    });
  } catch (const NotJsonStop&) {
  } catch (const PoolFileError& e) {
    seg.error = PartError::file;
    seg.detail = e.detail, seg.syntax = e.syntax;
    seg.offset = e.offset, seg.line = e.line, seg.column = e.column;
  } catch (const std::exception& e) {
    seg.error = PartError::other;
    seg.detail = e.what();
  }
}

// The segments of part `part` of `parts`: its equal share of the pool's bytes (the files
// end to end), each file's piece moved to record starts.
std::vector<PartSegment> part_segments(const std::vector<PoolFile>& files, const IndexOptions& options, int part,
                                       int parts) {
  const std::vector<std::uint64_t> sizes = pool_file_sizes(files);
  std::uint64_t total = 0;
  for (std::uint64_t n : sizes)
    if (n != kUnknownSize) total += n;
  const auto share = [&](int p) { return std::uint64_t((unsigned __int128)total * unsigned(p) / unsigned(parts)); };
  const std::uint64_t from = share(part), to = share(part + 1);
  std::vector<PartSegment> segments;
  ImageChecks images(options.validation.image_root);
  std::uint64_t at = 0;  // where file f starts, the files end to end
  for (std::uint32_t f = 0; f < files.size(); ++f) {
    if (sizes[f] == kUnknownSize || sizes[f] == 0) continue;  // the merge indexes these itself
    const std::uint64_t size = sizes[f], lo = std::max(from, at), hi = std::min(to, at + size);
    at += size;
    if (lo >= hi) continue;
    PartSegment seg;
    seg.file = f;
    try {
      const bool mid = lo > at - size || hi < at;
      const bool in_array = mid && pool_file_is_array(files[f].path);
      seg.begin = lo == at - size ? 0 : record_start_near(files[f].path, lo - (at - size), in_array);
      const std::uint64_t stop = hi == at ? std::numeric_limits<std::uint64_t>::max()
                                          : record_start_near(files[f].path, hi - (at - size), in_array);
      if (seg.begin < size) scan_segment(files[f], stop, in_array, options, images, seg);
    } catch (const PoolFileError& e) {
      seg.error = PartError::file;
      seg.detail = e.detail, seg.syntax = e.syntax;
      seg.offset = e.offset, seg.line = e.line, seg.column = e.column;
    }
    segments.push_back(std::move(seg));
  }
  return segments;
}

std::vector<std::uint8_t> serialize_part(const std::vector<PartSegment>& segments) {
  ByteWriter w;
  w.u32(kPartFormat);
  w.u64(segments.size());
  for (const PartSegment& s : segments) {
    w.u32(s.file);
    w.u64(s.begin);
    w.u8(s.end.stopped ? 1 : 0);
    w.u64(s.end.stopped_at);
    w.u64(s.end.newlines);
    w.u8(std::uint8_t(s.error));
    w.str(s.detail);
    w.u64(s.offset);
    w.u64(s.line);
    w.u64(s.column);
    w.u64(s.record);
    w.u8(s.syntax ? 1 : 0);
    w.u64(s.subsets.size());
    for (const std::string& name : s.subsets) w.str(name);
    w.u64(s.entries.size());
    for (const IndexEntry& e : s.entries) write_entry(w, e);
  }
  return std::move(w.bytes);
}

// Part `part`'s segments from its bytes; the entries stay in the bytes (entries_at, entry_count)
// for the merge to read in place, once, straight into the index.
std::vector<PartSegment> deserialize_part(const std::vector<std::uint8_t>& bytes, std::size_t part, std::size_t files) {
  ByteReader r(bytes);
  if (r.u32() != kPartFormat) throw std::runtime_error("pool index part: unknown format version");
  const std::uint64_t n = r.u64();
  if (n > files) throw std::runtime_error("pool index part: more segments than files");
  std::vector<PartSegment> segments(n);
  for (PartSegment& s : segments) {
    s.file = r.u32();
    s.begin = r.u64();
    s.end.stopped = r.u8() != 0;
    s.end.stopped_at = r.u64();
    s.end.newlines = r.u64();
    const std::uint8_t error = r.u8();
    if (s.file >= files || error > std::uint8_t(PartError::other))
      throw std::runtime_error("pool index part: segment out of range");
    s.error = PartError(error);
    s.detail = r.str();
    s.offset = r.u64();
    s.line = r.u64();
    s.column = r.u64();
    s.record = r.u64();
    s.syntax = r.u8() != 0;
    const std::uint64_t subsets = r.u64();
    if (subsets > bytes.size()) throw std::runtime_error("pool index part: truncated");
    for (std::uint64_t i = 0; i < subsets; ++i) s.subsets.push_back(r.str());
    const std::uint64_t entries = r.u64();
    if (entries > (bytes.size() - r.pos) / kEntryBytes) throw std::runtime_error("pool index part: truncated");
    s.part = part;
    s.entries_at = r.pos;
    s.entry_count = entries;
    r.pos += entries * kEntryBytes;
  }
  if (!r.done()) throw std::runtime_error("pool index part: trailing bytes");
  return segments;
}

// Whether a file's segments tile it as one scan would read it: each begins where the one before
// stopped (a JSON array's guessed begin confirmed), the last reaches the end. Throws the
// file's error when a segment that begins in the right place failed.
bool segments_tile(const PoolFile& file, const std::vector<PartSegment*>& segs, std::uint64_t base_index) {
  std::uint64_t expected = 0, records = base_index, size = kUnknownSize;
  std::error_code ec;
  size = std::filesystem::file_size(file.path, ec);
  if (ec) return false;
  for (const PartSegment* s : segs) {
    if (s->begin != expected) return false;
    switch (s->error) {
      case PartError::none: break;
      case PartError::file: throw PoolFileError(file.path, s->offset, s->line, s->column, s->detail, s->syntax);
      case PartError::not_json:
        throw not_json_error(file.path, NotJsonAt{s->offset, s->line, s->column, s->detail}, records + s->record);
      case PartError::other: throw std::runtime_error(fmt::format("{}: {}", file.path, s->detail));
    }
    records += s->entry_count;
    expected = s->end.stopped ? s->end.stopped_at : size;
  }
  return expected == size;
}

// The repeat key of entry `e`: its record read again for its canonical form (which does not
// depend on the disk: no image is looked at).
void set_repeat_key(const PoolFile& file, PoolFileReader& reader, const ValidationOptions& validation, IndexEntry& e) {
  RecordOrigin origin{file.path, e.index_in_file, e.line, file.subset};
  const std::string bytes = reader.read(e.offset, e.length, e.index_in_file);
  ValidationOptions lexical = validation;
  lexical.image_root.clear();
  record_key(validate_record(bytes, origin, lexical, e.length, ValidationPass{nullptr, false, false}).canonical, e.repeat,
             e.key);
}

// Appends file f's entries from its segments (which tile it, in order) to the index: their
// numbers and lines made global, subset ids the pool's, duplicates marked in pool order.
void merge_file(const PoolFile& file, const ValidationOptions& validation,
                const std::vector<std::vector<std::uint8_t>>& parts, const std::vector<PartSegment*>& segs,
                PoolOrder& order, PoolIndex& index, std::vector<std::uint64_t>* deferred_repeats) {
  constexpr std::uint64_t kAhead = 16;  // entries between a key table prefetch and its lookup
  std::optional<PoolFileReader> reader;  // opened at the file's first repeat
  std::uint64_t base_index = 0, base_line = 1;
  for (const PartSegment* s : segs) {
    std::vector<std::uint32_t> subset_of;  // the segment's subset ids -> the pool's
    for (const std::string& name : s->subsets) subset_of.push_back(order.subset_id(index, name));
    const std::vector<std::uint8_t>& bytes = parts[s->part];
    ByteReader r(bytes);
    r.pos = s->entries_at;
    for (std::uint64_t k = 0; k < s->entry_count; ++k) {
      if (k + kAhead < s->entry_count) order.seen.prefetch(&bytes[s->entries_at + (k + kAhead) * kEntryBytes + kEntryKeyAt]);
      IndexEntry e = read_entry(r, index.files.size(), s->subsets.size(), "pool index part");
      e.index_in_file += base_index;
      e.line += base_line - 1;
      e.subset = subset_of[e.subset];
      if (e.reason == Reason::record_too_large)
        content_key(fmt::format("align2-too-large-v1\n{}\n{}\n{}", file.path, e.index_in_file, e.length), e.key);
      if (order.mark_repeat(index.entries.size(), e)) {
        if (deferred_repeats) {
          deferred_repeats->push_back(index.entries.size());
        } else {
          if (!reader) reader.emplace(file.path);
          set_repeat_key(file, *reader, validation, e);
        }
      }
      index.entries.push_back(e);
    }
    base_index += s->entry_count;
    base_line += s->end.newlines;
  }
}

}  // namespace

std::vector<std::uint8_t> index_pool_part(const std::vector<PoolFile>& files, const IndexOptions& options, int part,
                                          int parts) {
  if (parts < 1 || part < 0 || part >= parts) throw std::invalid_argument("index_pool_part: part out of range");
  std::vector<PartSegment> segments;
  try {
    segments = part_segments(files, options, part, parts);
  } catch (const std::exception& e) {  // e.g. out of memory: the merge names it
    PartSegment failed;
    failed.error = PartError::other;
    failed.detail = e.what();
    segments.assign(1, std::move(failed));
  }
  return serialize_part(segments);
}

PoolIndex merge_pool_parts(const std::vector<PoolFile>& files, const IndexOptions& options,
                           std::vector<std::vector<std::uint8_t>> parts, std::vector<std::uint64_t>* deferred_repeats) {
  // The entries are read from the parts' bytes straight into the index, and each part's bytes
  // are freed once its last segment is merged: the merge holds about one copy of the entries
  // besides the index, not two.
  std::vector<std::vector<PartSegment>> all;
  std::vector<std::size_t> unmerged;  // per part: its segments not yet merged
  std::uint64_t total = 0;            // entries in the parts
  for (std::size_t p = 0; p < parts.size(); ++p) {
    all.push_back(deserialize_part(parts[p], p, std::max<std::size_t>(files.size(), 1)));
    unmerged.push_back(all.back().size());
    for (const PartSegment& s : all.back()) total += s.entry_count;
  }
  PoolIndex index;
  index.files = files;
  index.options = options.validation;
  PoolOrder order;
  index.entries.reserve(total);
  order.seen.reserve(total);
  ImageChecks images(options.validation.image_root);  // for files the merge indexes itself
  IndexOptions whole = options;
  whole.profile = nullptr;
  whole.on_record = nullptr;
  for (std::uint32_t f = 0; f < files.size(); ++f) {
    std::vector<PartSegment*> segs;  // file f's segments, in part order
    for (std::vector<PartSegment>& part : all)
      for (PartSegment& s : part)
        if (s.file == f) segs.push_back(&s);
    if (segs.empty() || !segments_tile(files[f], segs, 0)) {  // indexed here, in one pass
      index_file(index, order, f, whole, images);
    } else {
      merge_file(files[f], options.validation, parts, segs, order, index, deferred_repeats);
    }
    for (PartSegment* s : segs)
      if (--unmerged[s->part] == 0) std::vector<std::uint8_t>().swap(parts[s->part]);
  }
  if (!deferred_repeats) seal_index(index);
  return index;
}

void set_repeat_keys(PoolIndex& index, const std::vector<std::uint64_t>& which) {
  std::optional<PoolFileReader> reader;  // the file of the last record read
  std::uint32_t reader_file = 0;
  for (std::uint64_t i : which) {
    if (i >= index.entries.size() || index.entries[i].repeat == 0)
      throw std::logic_error("set_repeat_keys: not a repeat of the index");
    IndexEntry& e = index.entries[i];
    const PoolFile& file = index.files[e.file];
    if (!reader || reader_file != e.file) {
      reader.reset();
      reader.emplace(file.path);
      reader_file = e.file;
    }
    set_repeat_key(file, *reader, index.options, e);
  }
}

void seal_index(PoolIndex& index) { index.fingerprint = pool_fingerprint(index); }

void record_key(std::string_view canonical, std::uint64_t repeat, std::uint8_t key[16]) {
  // Repeats hash in their own domain: no first-occurrence canonical form starts with
  // "align2-repeat-v1", and the decimal count ends at the first newline.
  if (repeat == 0) return content_key(canonical, key);
  thread_local Sha256 hasher;
  hasher.update(fmt::format("align2-repeat-v1\n{}\n", repeat));
  hasher.update(canonical);
  std::uint8_t digest[32];
  hasher.final(digest);
  std::memcpy(key, digest, 16);
}

std::string record_key(std::string_view canonical, std::uint64_t repeat) {
  std::uint8_t key[16];
  record_key(canonical, repeat, key);
  return to_hex(key, 16);
}

std::vector<std::uint8_t> serialize_index(const PoolIndex& index) {
  if (index.options.accept_open_question)  // a prompt-only option: curation never sets it
    throw std::logic_error("serialize_index: an index read with accept_open_question is not for ranks");
  ByteWriter w;
  w.bytes.reserve(4096 + index.entries.size() * kEntryBytes);  // the entries and a little more
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
  for (const IndexEntry& e : index.entries) write_entry(w, e);
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
  if (n > (bytes.size() - r.pos) / kEntryBytes) throw std::runtime_error("pool index message: truncated");
  index.entries.reserve(n);
  for (std::uint64_t i = 0; i < n; ++i)
    index.entries.push_back(read_entry(r, index.files.size(), index.subsets.size(), "pool index message"));
  if (!r.done()) throw std::runtime_error("pool index message: trailing bytes");
  return index;
}

}  // namespace align2
