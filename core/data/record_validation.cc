#include "core/data/record_validation.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cassert>
#include <climits>
#include <cstring>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <simdjson.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <charconv>
#include <iterator>
#include <vector>

#include "core/util/digest.h"
#include "core/data/record_text.h"

namespace align2 {

static_assert(simdjson::SIMDJSON_PADDING <= kRecordPadding, "kRecordPadding must cover simdjson's padding");

namespace {

using nlohmann::json;

const char* json_type(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    case json::value_t::number_float: return "number";
    case json::value_t::string: return "string";
    case json::value_t::array: return "array";
    case json::value_t::object: return "object";
    default: return "value";
  }
}

// Fills status/reason/message of `out` for a failed rule.
void fail(ValidatedRecord& out, const RecordOrigin& origin, Status status, Reason reason,
          const std::string& what) {
  Sample& s = out.sample;
  s.status = status;
  s.reason = reason;
  s.message = record_message(origin, s.id, what);
}

// Reads a required string field; false (with the failure filled) when absent or not a string.
bool string_field(const json& obj, const char* name, const std::string& where, std::string* value,
                  ValidatedRecord& out, const RecordOrigin& origin) {
  auto it = obj.find(name);
  if (it == obj.end()) {
    fail(out, origin, Status::invalid, Reason::missing_field, fmt::format("{} has no \"{}\"", where, name));
    return false;
  }
  if (!it->is_string()) {
    fail(out, origin, Status::invalid, Reason::wrong_type,
         fmt::format("\"{}\" of {} is {}, expected a string", name, where, json_type(*it)));
    return false;
  }
  *value = it->get<std::string>();
  return true;
}

}  // namespace

std::string record_message(const RecordOrigin& origin, const std::string& id, const std::string& what) {
  std::string id_part = id.empty() ? "" : fmt::format(", id {}", json(id).dump());
  return fmt::format("{} record #{} (line {}{}): {}", origin.file, origin.index_in_file, origin.line, id_part,
                     what);
}

std::string missing_image_detail(const std::string& image, const std::string& image_root) {
  return fmt::format("image {} is not a file under the image root {}", json(image).dump(), image_root);
}

bool is_valid_utf8(std::string_view text, std::uint64_t* bad_offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  std::size_t n = text.size(), i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c < 0x80) { ++i; continue; }
    std::size_t len;
    std::uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else { if (bad_offset) *bad_offset = i; return false; }
    if (i + len > n) { if (bad_offset) *bad_offset = i; return false; }
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) { if (bad_offset) *bad_offset = i; return false; }
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Overlongs (3/4-byte), surrogates, beyond U+10FFFF.
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      if (bad_offset) *bad_offset = i;
      return false;
    }
    i += len;
  }
  return true;
}

std::string printable_text(const std::string& text) {
  if (text.find('\0') == std::string::npos && is_valid_utf8(text, nullptr)) return text;
  std::string out;
  std::string_view rest(text);
  while (!rest.empty()) {
    std::uint64_t bad = rest.size();
    if (is_valid_utf8(rest, &bad)) bad = rest.size();
    std::string_view good = rest.substr(0, bad);
    for (char c : good) {
      if (c == '\0') out += "\\x00";
      else out += c;
    }
    if (bad == rest.size()) break;
    out += fmt::format("\\x{:02x}", static_cast<unsigned char>(rest[bad]));
    rest.remove_prefix(bad + 1);
  }
  return out;
}

std::string content_key(std::string_view bytes) { return sha256_hex(bytes, 16); }

void content_key(std::string_view bytes, std::uint8_t key[16]) {
  std::uint8_t digest[32];
  sha256(bytes, digest);
  std::memcpy(key, digest, 16);
}

namespace {

// The lexical half of check_image_path: empty, NUL, absolute, climbing above the root.
Reason check_image_lexically(const std::string& image, std::string* detail) {
  if (image.empty()) {
    *detail = "image path is empty";
    return Reason::image_path_escapes;
  }
  if (image.find('\0') != std::string::npos) {
    *detail = "image path contains a NUL byte";
    return Reason::image_path_escapes;
  }
  if (image[0] == '/' || image[0] == '\\') {
    *detail = fmt::format("image path {} is absolute; it must be relative to the image root", json(image).dump());
    return Reason::image_path_absolute;
  }
  // Lexical walk: ".." may not climb above the root.
  int depth = 0;
  std::size_t start = 0;
  while (start <= image.size()) {
    std::size_t end = image.find('/', start);
    if (end == std::string::npos) end = image.size();
    std::string_view part(image.data() + start, end - start);
    if (part == "..") {
      if (--depth < 0) {
        *detail = fmt::format("image path {} leaves the image root", json(image).dump());
        return Reason::image_path_escapes;
      }
    } else if (!part.empty() && part != ".") {
      ++depth;
    }
    start = end + 1;
  }
  return Reason::none;
}

// The disk half: the file resolves inside the root (root_real: the root's realpath, "" when it
// does not resolve) and is a regular file.
Reason check_image_on_disk(const std::string& image, const std::string& image_root, const std::string& root_real,
                           std::string* detail) {
  std::string joined = image_root + "/" + image;
  char file_real[PATH_MAX];
  if (root_real.empty() || !realpath(joined.c_str(), file_real)) {
    *detail = missing_image_detail(image, image_root);
    return Reason::missing_image;
  }
  const std::string file_s = file_real;
  if (root_real != "/" && (file_s.size() <= root_real.size() || file_s.compare(0, root_real.size(), root_real) != 0 ||
                           file_s[root_real.size()] != '/')) {
    *detail = fmt::format("image {} resolves to {}, outside the image root {}", json(image).dump(), file_s, root_real);
    return Reason::image_path_escapes;
  }
  struct stat st;
  if (stat(file_real, &st) != 0 || !S_ISREG(st.st_mode)) {
    *detail = missing_image_detail(image, image_root);
    return Reason::missing_image;
  }
  return Reason::none;
}

std::string real_path(const std::string& path) {
  char out[PATH_MAX];
  return realpath(path.c_str(), out) ? std::string(out) : std::string();
}

}  // namespace

Reason check_image_path(const std::string& image, const std::string& image_root, std::string* detail) {
  const Reason lexical = check_image_lexically(image, detail);
  if (lexical != Reason::none || image_root.empty()) return lexical;
  return check_image_on_disk(image, image_root, real_path(image_root), detail);
}

ImageChecks::ImageChecks(std::string image_root, std::size_t max_verdicts)
    : root_(std::move(image_root)),
      root_real_(root_.empty() ? std::string() : real_path(root_)),
      max_verdicts_(std::max<std::size_t>(max_verdicts, 1)) {}

Reason ImageChecks::check(const std::string& image, std::string* detail) {
  const Reason lexical = check_image_lexically(image, detail);
  if (lexical != Reason::none || root_.empty()) return lexical;
  auto found = verdicts_.find(image);
  if (found == verdicts_.end()) {
    if (verdicts_.size() >= max_verdicts_) verdicts_.clear();
    std::string why;
    const Reason r = check_image_on_disk(image, root_, root_real_, &why);
    found = verdicts_.emplace(image, std::make_pair(r, std::move(why))).first;
  }
  if (found->second.first != Reason::none) *detail = found->second.second;
  return found->second.first;
}

namespace {

// Reads the record with nlohmann::json and applies every rule up to the content key: true with
// the sample's fields and out.canonical filled, or false with the failed rule in `out`. The
// reference for read_record_fast, and the path that words every failure.
bool read_record_nlohmann(std::string_view raw, const RecordOrigin& origin, const ValidationOptions& options,
                          ValidatedRecord& out) {
  Sample& s = out.sample;
  json rec;
  try {
    rec = json::parse(raw.begin(), raw.end());
  } catch (const json::parse_error& e) {
    fail(out, origin, Status::invalid, Reason::not_json, std::string("not JSON: ") + e.what());
    return false;
  }
  if (!rec.is_object()) {
    fail(out, origin, Status::invalid, Reason::not_object,
         fmt::format("record is a JSON {}, expected an object", json_type(rec)));
    return false;
  }

  // id
  auto id = rec.find("id");
  if (id == rec.end()) {
    fail(out, origin, Status::invalid, Reason::missing_field, "record has no \"id\"");
    return false;
  }
  if (id->is_string()) s.id = id->get<std::string>();
  else if (id->is_number_integer() || id->is_number_unsigned()) s.id = id->dump();
  else {
    fail(out, origin, Status::invalid, Reason::wrong_type,
         fmt::format("\"id\" is {}, expected a string or an integer", json_type(*id)));
    return false;
  }

  // image
  auto image = rec.find("image");
  if (image != rec.end() && !image->is_null()) {
    if (!image->is_string()) {
      fail(out, origin, Status::invalid, Reason::wrong_type,
           fmt::format("\"image\" is {}, expected a string", json_type(*image)));
      return false;
    }
    s.image = image->get<std::string>();
    out.has_image = true;
  }

  // subset from a record field (a file mapping wins)
  if (origin.file_subset.empty() && !options.subset_field.empty()) {
    auto f = rec.find(options.subset_field);
    if (f != rec.end()) {
      if (!f->is_string() || f->get<std::string>().empty()) {
        fail(out, origin, Status::invalid, Reason::wrong_type,
             fmt::format("subset field \"{}\" is {}, expected a non-empty string", options.subset_field,
                         json_type(*f)));
        return false;
      }
      s.subset = f->get<std::string>();
    }
  }

  // turns
  auto conv = rec.find("conversations");
  bool conversation_shape = conv != rec.end();
  if (conversation_shape) {
    if (!conv->is_array()) {
      fail(out, origin, Status::invalid, Reason::wrong_type,
           fmt::format("\"conversations\" is {}, expected an array", json_type(*conv)));
      return false;
    }
    if (conv->empty()) {
      fail(out, origin, Status::invalid, Reason::empty_conversation, "\"conversations\" is empty");
      return false;
    }
    std::string question;
    for (std::size_t t = 0; t < conv->size(); ++t) {
      const json& turn = (*conv)[t];
      std::string where = fmt::format("conversations[{}]", t);
      if (!turn.is_object()) {
        fail(out, origin, Status::invalid, Reason::wrong_type,
             fmt::format("{} is {}, expected an object", where, json_type(turn)));
        return false;
      }
      std::string from, value;
      if (!string_field(turn, "from", where, &from, out, origin)) return false;
      if (!string_field(turn, "value", where, &value, out, origin)) return false;
      const char* expected = t % 2 == 0 ? "human" : "gpt";
      if (from != expected) {
        fail(out, origin, Status::invalid, Reason::bad_roles,
             fmt::format("{} is from {}, expected \"{}\" (turns alternate human, gpt, starting with human)",
                         where, json(from).dump(), expected));
        return false;
      }
      if (t % 2 == 0) question = std::move(value);
      else s.turns.push_back({std::move(question), std::move(value)});
    }
    if (conv->size() % 2 != 0 && options.accept_open_question) {
      s.turns.push_back({std::move(question), ""});
    } else if (conv->size() % 2 != 0) {
      fail(out, origin, Status::invalid, Reason::bad_roles,
           fmt::format("the conversation ends with a human turn (conversations[{}]) that has no answer",
                       conv->size() - 1));
      s.turns.clear();
      return false;
    }
  } else if (rec.contains("instruction") || rec.contains("output")) {
    Turn turn;
    if (!string_field(rec, "instruction", "record", &turn.question, out, origin)) return false;
    if (!string_field(rec, "output", "record", &turn.answer, out, origin)) return false;
    s.turns.push_back(std::move(turn));
  } else {
    fail(out, origin, Status::invalid, Reason::missing_field,
         "record has no \"conversations\" (nor \"instruction\" and \"output\")");
    return false;
  }

  // <image> tags
  std::size_t tags_total = 0, tags_first = count_image_tags(s.turns[0].question);
  for (const Turn& t : s.turns) tags_total += count_image_tags(t.question) + count_image_tags(t.answer);
  if (conversation_shape && out.has_image && (tags_first != 1 || tags_total != 1)) {
    fail(out, origin, Status::invalid, Reason::bad_image_tag,
         tags_total == 0 ? std::string("record has an image but no <image> tag in its first human turn")
                         : fmt::format("expected exactly one <image> tag, in the first human turn; found {} "
                                       "({} in the first human turn)", tags_total, tags_first));
    s.turns.clear();
    return false;
  }
  if (!out.has_image && tags_total != 0) {
    fail(out, origin, Status::invalid, Reason::bad_image_tag,
         fmt::format("record has no image but {} <image> tag(s)", tags_total));
    s.turns.clear();
    return false;
  }

  // The content key: everything but the id, keys sorted, compact.
  rec.erase("id");
  out.canonical = "align2-record-v1\n" + rec.dump();
  return true;
}

// --- The fast reader: simdjson, for records that pass every rule --------------------------------

// Whether a JSON string writes byte c escaped: the quote, the backslash, bytes below 0x20.
bool escaped_byte(unsigned char c) { return c < 0x20 || c == '"' || c == '\\'; }

// Writes byte c (escaped_byte) as nlohmann::json::dump does (ensure_ascii off) at `to`: the
// quote, the backslash, backspace, form feed, newline, carriage return and tab as a backslash
// and a letter, the other bytes below 0x20 as \u00xx (lowercase hex). Returns the bytes written.
std::size_t write_escape(char* to, unsigned char c) {
  char letter = 0;
  switch (c) {
    case '"': letter = '"'; break;
    case '\\': letter = '\\'; break;
    case '\b': letter = 'b'; break;
    case '\f': letter = 'f'; break;
    case '\n': letter = 'n'; break;
    case '\r': letter = 'r'; break;
    case '\t': letter = 't'; break;
    default: {
      static constexpr char kHex[] = "0123456789abcdef";
      const char u[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
      std::memcpy(to, u, 6);
      return 6;
    }
  }
  to[0] = '\\';
  to[1] = letter;
  return 2;
}

// Key order of nlohmann's objects (std::map<std::string>): bytes compared as unsigned chars.
bool key_less(std::string_view a, std::string_view b) {
  const std::size_t n = std::min(a.size(), b.size());
  for (std::size_t k = 0; k < n; ++k)
    if (a[k] != b[k]) return static_cast<unsigned char>(a[k]) < static_cast<unsigned char>(b[k]);
  return a.size() < b.size();
}

// An item of a record's "conversations" as the canonical writer saw it (views into simdjson's
// parse, valid until the next parse).
struct TurnItem {
  bool is_object = false;
  bool has_from = false, has_value = false;  // it has a string member "from", "value"
  std::string_view from, value;
};

// The compact, key-sorted text nlohmann::json::dump gives for a value, appended to a string
// through a write cursor: room is made once per string or token, then bytes are stored without
// further checks (the string's size runs ahead of the text; finish() trims it).
class CanonicalText {
 public:
  // Appends to `out`; `expected`: about how many bytes will follow (the record's size).
  CanonicalText(std::string& out, std::size_t expected) : out_(out), used_(out.size()) { room(expected); }

  // Appends a record (an object), leaving out its key "id", and notes in `turns` each item of
  // its "conversations" array while writing it (so the rules need not look the turns up again).
  // False where the text could differ from nlohmann's: a floating-point number (nlohmann prints
  // those its own way) or an object with a repeated key (nlohmann keeps the last one).
  bool record(simdjson::dom::object record, std::vector<TurnItem>* turns) {
    turns->clear();
    return object(record, Fields{/*drop_id=*/true, turns, nullptr});
  }
  void finish() { out_.resize(used_); }

 private:
  static constexpr std::size_t kOverrun = 16;  // a 16-byte store may write this far past the text

  // At least n bytes writable from used_ on.
  void room(std::size_t n) {
    if (out_.size() - used_ < n) out_.resize(std::max(2 * out_.size(), used_ + n));
  }
  void put(char c) {
    room(1);
    out_[used_++] = c;
  }
  void put(std::string_view text) {
    room(text.size());
    std::memcpy(&out_[used_], text.data(), text.size());
    used_ += text.size();
  }
  // What an object's fields are written with: the record's drops "id" and notes its turns; a
  // turn notes its "from" and "value".
  struct Fields {
    bool drop_id = false;
    std::vector<TurnItem>* turns = nullptr;  // the record: where its "conversations" items go
    TurnItem* turn = nullptr;                // a turn: where its "from" and "value" go
  };

  // Appends `value` (the same falses as record()); see the definition for `turns`.
  bool value(simdjson::dom::element value, std::vector<TurnItem>* turns);
  void string(std::string_view text);
  bool short_string(const char* p, std::size_t n);
  bool object(simdjson::dom::object object, const Fields& fields);

  std::string& out_;
  std::size_t used_;  // bytes of out_ written; the rest is room
};

// A string of n < 16 bytes with nothing to escape (most keys and many values: "from", "gpt"),
// quoted, in a few loads and stores that stay inside p[0, n): false, writing nothing, when a byte
// needs escaping. Room for n + 2 bytes is made.
bool CanonicalText::short_string(const char* p, std::size_t n) {
#if defined(__SSE2__)
  // Bytes of p[0, n) in a vector; `valid`: the movemask bits that hold them. Two overlapping
  // loads cover any length: 8 + 8 bytes for n >= 8, 4 + 4 for n >= 4, three single bytes below.
  std::uint64_t lo = 0, hi = 0;
  int valid = 0;
  if (n >= 8) {
    std::memcpy(&lo, p, 8);
    std::memcpy(&hi, p + n - 8, 8);
    valid = 0xFFFF;
  } else if (n >= 4) {
    std::uint32_t a, b;
    std::memcpy(&a, p, 4);
    std::memcpy(&b, p + n - 4, 4);
    lo = a | std::uint64_t(b) << 32;
    valid = 0xFF;
  } else if (n > 0) {
    lo = std::uint64_t(std::uint8_t(p[0])) | std::uint64_t(std::uint8_t(p[n >> 1])) << 8 |
         std::uint64_t(std::uint8_t(p[n - 1])) << 16;
    valid = 0x7;
  }
  const __m128i v = _mm_set_epi64x(std::int64_t(hi), std::int64_t(lo));
  const __m128i control = _mm_set1_epi8(0x1F);
  const __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                                _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                                   _mm_cmpeq_epi8(_mm_max_epu8(v, control), control));  // v <= 0x1F
  if (_mm_movemask_epi8(hit) & valid) return false;
  char* to = &out_[used_];
  to[0] = '"';
  if (n >= 8) {
    std::memcpy(to + 1, &lo, 8);
    std::memcpy(to + 1 + n - 8, &hi, 8);
  } else if (n >= 4) {
    std::memcpy(to + 1, &lo, 4);
    std::memcpy(to + 1 + n - 4, reinterpret_cast<const char*>(&lo) + 4, 4);
  } else if (n > 0) {
    to[1] = p[0];
    to[1 + (n >> 1)] = p[n >> 1];
    to[n] = p[n - 1];
  }
  to[n + 1] = '"';
  used_ += n + 2;
  return true;
#else
  (void)p;
  (void)n;
  return false;
#endif
}

// `text` quoted, escaped as write_escape does. Sixteen bytes a step with SSE2: stored, then
// checked; a step that holds an escaped byte keeps only the bytes before it.
void CanonicalText::string(std::string_view text) {
  const char* p = text.data();
  const std::size_t n = text.size();
  room(n + 2 + kOverrun);
  if (n < 16 && short_string(p, n)) return;
  // The cursor lives in locals: a store through a char pointer may alias any member.
  char* to = &out_[used_];
  char* start = to;
  *to++ = '"';
  std::size_t i = 0;
  while (i < n) {
    std::size_t run = 0;  // bytes from p[i] on copied as they are
#if defined(__SSE2__)
    if (i + 16 <= n) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(to), v);
      const __m128i control = _mm_set1_epi8(0x1F);
      const __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                                    _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                                       _mm_cmpeq_epi8(_mm_max_epu8(v, control), control));  // v <= 0x1F
      const int bits = _mm_movemask_epi8(hit);
      run = bits ? std::size_t(__builtin_ctz(unsigned(bits))) : 16;
    } else
#endif
    {
      for (; i + run < n && !escaped_byte(static_cast<unsigned char>(p[i + run])); ++run) to[run] = p[i + run];
    }
    i += run;
    to += run;
    if (i == n || run == 16) continue;
    used_ += std::size_t(to - start);
    room(6 + (n - i) + 1 + kOverrun);  // this escape, the rest of the text and its closing quote
    to = start = &out_[used_];
    to += write_escape(to, static_cast<unsigned char>(p[i++]));
  }
  *to++ = '"';  // room made above
  used_ += std::size_t(to - start);
}

bool CanonicalText::object(simdjson::dom::object object, const Fields& how) {
  // The fields sorted by key; small objects (records, turns) without a heap allocation.
  using Field = std::pair<std::string_view, simdjson::dom::element>;
  Field few[16];
  std::vector<Field> many;
  const std::size_t n = object.size();
  Field* fields = n <= 16 ? few : (many.resize(n), many.data());
  std::size_t count = 0;
  for (simdjson::dom::key_value_pair field : object) {
    if (count == n) return false;  // not reached: size() counts every field
    fields[count++] = {field.key, field.value};
  }
  std::sort(fields, fields + count, [](const Field& x, const Field& y) { return key_less(x.first, y.first); });
  put('{');
  bool first = true;
  for (std::size_t i = 0; i < count; ++i) {
    const auto& [key, item] = fields[i];
    if (i > 0 && key == fields[i - 1].first) return false;
    if (how.drop_id && key == "id") continue;
    if (!first) put(',');
    first = false;
    string(key);
    put(':');
    std::vector<TurnItem>* turns = how.turns && key == "conversations" ? how.turns : nullptr;
    if (!value(item, turns)) return false;
    if (how.turn && item.type() == simdjson::dom::element_type::STRING) {
      if (key == "from") how.turn->from = item.get_string().value_unsafe(), how.turn->has_from = true;
      if (key == "value") how.turn->value = item.get_string().value_unsafe(), how.turn->has_value = true;
    }
  }
  put('}');
  return true;
}

// Appends `value`; with `turns`, it is a record's "conversations": each item goes to `turns`
// (an object item with its "from" and "value" noted).
bool CanonicalText::value(simdjson::dom::element value, std::vector<TurnItem>* turns) {
  using simdjson::dom::element_type;
  switch (value.type()) {
    case element_type::OBJECT: {
      simdjson::dom::object object;
      return !value.get_object().get(object) && this->object(object, Fields{});
    }
    case element_type::ARRAY: {
      simdjson::dom::array array;
      if (value.get_array().get(array)) return false;
      put('[');
      bool first = true;
      for (simdjson::dom::element item : array) {
        if (!first) put(',');
        first = false;
        if (!turns) {
          if (!this->value(item, nullptr)) return false;
          continue;
        }
        TurnItem& turn = turns->emplace_back();
        simdjson::dom::object object;
        turn.is_object = !item.get_object().get(object);
        if (!(turn.is_object ? this->object(object, Fields{false, nullptr, &turn}) : this->value(item, nullptr)))
          return false;
      }
      put(']');
      return true;
    }
    case element_type::STRING: string(value.get_string().value_unsafe()); return true;
    case element_type::INT64:
    case element_type::UINT64: {
      room(24);
      char* to = &out_[used_];
      const std::to_chars_result r = value.type() == element_type::INT64
                                         ? std::to_chars(to, to + 24, value.get_int64().value_unsafe())
                                         : std::to_chars(to, to + 24, value.get_uint64().value_unsafe());
      used_ += std::size_t(r.ptr - to);
      return true;
    }
    case element_type::BOOL: put(value.get_bool().value_unsafe() ? "true" : "false"); return true;
    case element_type::NULL_VALUE: put("null"); return true;
    default: return false;  // DOUBLE
  }
}

// A string member of `obj`, or false when it is absent or not a string.
bool string_member(simdjson::dom::object obj, std::string_view name, std::string_view* value) {
  return !obj.at_key(name).get_string().get(*value);
}

// Adds one (question, answer) turn to `counts`.
void count_turn(TextCounts& counts, std::string_view question, std::string_view answer) {
  counts.turns += 1;
  counts.text_bytes += question.size() + answer.size();
  counts.question_bytes += question.size();
}

// A turn as views into simdjson's parse (valid until the next parse).
struct TurnView {
  std::string_view question, answer;
};

// The (question, answer) turns of a record's "conversations" (`items`: its items as the
// canonical writer noted them) when it keeps every rule: a non-empty array of objects with
// string "from" and "value", human and gpt alternating from human, ending with gpt unless
// accept_open_question. False otherwise.
bool read_conversation(simdjson::dom::element conversation, const std::vector<TurnItem>& items,
                       bool accept_open_question, std::vector<TurnView>* turns) {
  if (!conversation.is_array() || items.empty()) return false;
  std::string_view question;
  std::size_t t = 0;
  for (const TurnItem& item : items) {
    if (!item.is_object || !item.has_from || !item.has_value) return false;
    if (item.from != (t % 2 == 0 ? "human" : "gpt")) return false;
    if (t++ % 2 == 0) question = item.value;
    else turns->push_back({question, item.value});
  }
  if (t % 2 != 0) {
    if (!accept_open_question) return false;
    turns->push_back({question, std::string_view()});
  }
  return true;
}

// The common case, fast: a record that keeps every rule up to the content key, read with
// simdjson and its canonical form written from that parse (no nlohmann tree; bench/index_bench
// gives the index pass's speed). Fills the sample's fields and out.canonical, byte for
// byte what read_record_nlohmann gives (test/record_validation_test.cc compares the two). False
// at anything it does not handle or any broken rule, leaving `out` untouched but for
// out.canonical (which every other path then assigns): the nlohmann reader then decides, and
// words the failure.
bool read_record_fast(std::string_view raw, const RecordOrigin& origin, const ValidationOptions& options,
                      const ValidationPass& pass, ValidatedRecord& out) {
  const bool keep_text = pass.keep_text;
  thread_local std::vector<TurnView> turns;  // views into the parser's strings
  thread_local std::vector<TurnItem> items;  // "conversations", as the canonical writer saw it
  turns.clear();
  thread_local simdjson::dom::parser parser;
  thread_local std::vector<char> padded;  // the record and SIMDJSON_PADDING bytes, reused
  const char* input = raw.data();  // raw.size() bytes and SIMDJSON_PADDING more, readable
  if (!pass.padded) {
    if (padded.size() < raw.size() + simdjson::SIMDJSON_PADDING) padded.resize(raw.size() + simdjson::SIMDJSON_PADDING);
    std::memcpy(padded.data(), raw.data(), raw.size());
    input = padded.data();
  }
  simdjson::dom::element doc;
  simdjson::dom::object rec;
  // The parse also checks UTF-8: a record read here is well-formed UTF-8.
  if (parser.parse(input, raw.size(), /*realloc_if_needed=*/false).get(doc) || doc.get_object().get(rec))
    return false;
  std::string& canonical = out.canonical;  // its capacity reused; every other path assigns it
  canonical.assign("align2-record-v1\n");
  CanonicalText writer(canonical, raw.size() + 64);
  if (!writer.record(rec, &items)) return false;
  writer.finish();

  Sample s;
  simdjson::dom::element id, field;
  if (rec.at_key("id").get(id)) return false;
  std::string_view text;
  std::int64_t signed_id;
  std::uint64_t unsigned_id;
  if (!id.get_string().get(text)) s.id = std::string(text);
  else if (!id.get_int64().get(signed_id)) s.id = std::to_string(signed_id);
  else if (!id.get_uint64().get(unsigned_id)) s.id = std::to_string(unsigned_id);
  else return false;

  bool has_image = false;
  if (!rec.at_key("image").get(field) && !field.is_null()) {
    if (field.get_string().get(text)) return false;
    s.image = std::string(text);
    has_image = true;
  }
  if (origin.file_subset.empty() && !options.subset_field.empty() && !rec.at_key(options.subset_field).get(field)) {
    if (field.get_string().get(text) || text.empty()) return false;
    s.subset = std::string(text);
  }

  const bool conversation_shape = !rec.at_key("conversations").get(field);
  if (conversation_shape) {
    if (!read_conversation(field, items, options.accept_open_question, &turns)) return false;
  } else {
    std::string_view question, answer;
    if (!string_member(rec, "instruction", &question) || !string_member(rec, "output", &answer)) return false;
    turns.push_back({question, answer});
  }

  std::size_t tags_total = 0, tags_first = count_image_tags(turns[0].question);
  for (const TurnView& t : turns) tags_total += count_image_tags(t.question) + count_image_tags(t.answer);
  if (conversation_shape && has_image && (tags_first != 1 || tags_total != 1)) return false;
  if (!has_image && tags_total != 0) return false;

  Sample& o = out.sample;
  o.id = std::move(s.id);
  o.image = std::move(s.image);
  if (!s.subset.empty()) o.subset = std::move(s.subset);
  out.counts = TextCounts{};
  for (const TurnView& t : turns) {
    if (keep_text) o.turns.push_back({std::string(t.question), std::string(t.answer)});
    count_turn(out.counts, t.question, t.answer);
  }
  out.has_image = has_image;
  return true;
}

// Every rule, in order; the reader is simdjson's when `fast` and the record is in its common
// case, else nlohmann's. *text_in_turns: false when out.counts were set by a reader that left
// the turns out (else the caller counts sample.turns).
// Fills `out`, which holds a fresh ValidatedRecord but for the capacity of its canonical buffer.
void validate_rules(std::string_view raw, const RecordOrigin& origin, const ValidationOptions& options,
                    std::uint64_t raw_length, bool fast, const ValidationPass& pass, bool* text_in_turns,
                    ValidatedRecord& out) {
  assert(!pass.images || pass.images->image_root() == options.image_root);
  Sample& s = out.sample;
  if (pass.keep_raw) s.raw = std::string(raw);
  s.subset = origin.file_subset.empty() ? "all" : origin.file_subset;

  if (raw_length > options.max_record_bytes) {
    out.canonical = fmt::format("align2-too-large-v1\n{}\n{}\n{}", origin.file, origin.index_in_file, raw_length);
    fail(out, origin, Status::invalid, Reason::record_too_large,
         fmt::format("record is {} bytes, above the bound of {} (max_record_bytes)", raw_length,
                     options.max_record_bytes));
    return;
  }
  // simdjson's parse checks UTF-8 too: the fast reader's records need no separate check.
  const bool fast_read = fast && read_record_fast(raw, origin, options, pass, out);
  std::uint64_t bad = 0;
  const bool utf8 = fast_read || simdjson::validate_utf8(raw.data(), raw.size()) || is_valid_utf8(raw, &bad);
  *text_in_turns = !fast_read || pass.keep_text;
  if (!utf8 || !(fast_read || read_record_nlohmann(raw, origin, options, out))) {
    // Until the content is known, invalid records are keyed by their bytes.
    out.canonical = "align2-raw-v1\n" + std::string(raw);
    if (!utf8) fail(out, origin, Status::invalid, Reason::invalid_utf8, fmt::format("invalid UTF-8 at byte {} of the record", bad));
    return;
  }
  if (out.has_image) {
    std::string detail;
    Reason r = pass.images ? pass.images->check(s.image, &detail) : check_image_path(s.image, options.image_root, &detail);
    if (r != Reason::none) {
      fail(out, origin, r == Reason::missing_image ? Status::missing_image : Status::invalid, r, detail);
      if (r != Reason::missing_image) {
        s.turns.clear();
        *text_in_turns = true;  // none
      }
    }
  }
}

// validate_rules into `out` (its canonical buffer reused), with out.counts filled.
void validate(std::string_view raw, const RecordOrigin& origin, const ValidationOptions& options,
              std::uint64_t raw_length, bool fast, const ValidationPass& pass, ValidatedRecord& out) {
  std::string canonical = std::move(out.canonical);
  canonical.clear();
  out = ValidatedRecord{};
  out.canonical = std::move(canonical);
  bool text_in_turns = true;
  validate_rules(raw, origin, options, raw_length, fast, pass, &text_in_turns, out);
  if (text_in_turns) {
    out.counts = TextCounts{};
    for (const Turn& t : out.sample.turns) count_turn(out.counts, t.question, t.answer);
  }
}

}  // namespace

ValidatedRecord validate_record(std::string_view raw, const RecordOrigin& origin,
                                const ValidationOptions& options, std::uint64_t raw_length,
                                const ValidationPass& pass) {
  ValidatedRecord out;
  validate(raw, origin, options, raw_length, /*fast=*/true, pass, out);
  return out;
}

void validate_record(std::string_view raw, const RecordOrigin& origin, const ValidationOptions& options,
                     std::uint64_t raw_length, const ValidationPass& pass, ValidatedRecord& out) {
  validate(raw, origin, options, raw_length, /*fast=*/true, pass, out);
}

ValidatedRecord validate_record_reference(std::string_view raw, const RecordOrigin& origin,
                                          const ValidationOptions& options, std::uint64_t raw_length) {
  ValidatedRecord out;
  validate(raw, origin, options, raw_length, /*fast=*/false, ValidationPass{}, out);
  return out;
}

}  // namespace align2
