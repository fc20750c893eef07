#include "core/data/record_validation.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <climits>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "kernels/sha256.h"
#include "core/util/digest.h"
#include "core/data/record_text.h"

namespace align2 {
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

Reason check_image_path(const std::string& image, const std::string& image_root, std::string* detail) {
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
  if (image_root.empty()) return Reason::none;

  std::string joined = image_root + "/" + image;
  char root_real[PATH_MAX], file_real[PATH_MAX];
  if (!realpath(image_root.c_str(), root_real) || !realpath(joined.c_str(), file_real)) {
    *detail = missing_image_detail(image, image_root);
    return Reason::missing_image;
  }
  std::string root_s = root_real, file_s = file_real;
  if (root_s != "/" && (file_s.size() <= root_s.size() || file_s.compare(0, root_s.size(), root_s) != 0 ||
                        file_s[root_s.size()] != '/')) {
    *detail = fmt::format("image {} resolves to {}, outside the image root {}", json(image).dump(), file_s, root_s);
    return Reason::image_path_escapes;
  }
  struct stat st;
  if (stat(file_real, &st) != 0 || !S_ISREG(st.st_mode)) {
    *detail = missing_image_detail(image, image_root);
    return Reason::missing_image;
  }
  return Reason::none;
}

ValidatedRecord validate_record(std::string_view raw, const RecordOrigin& origin,
                                const ValidationOptions& options, std::uint64_t raw_length) {
  ValidatedRecord out;
  Sample& s = out.sample;
  s.raw = std::string(raw);
  s.subset = origin.file_subset.empty() ? "all" : origin.file_subset;
  // Until the content is known, invalid records are keyed by their bytes.
  out.canonical = "align2-raw-v1\n" + std::string(raw);

  if (raw_length > options.max_record_bytes) {
    out.canonical = fmt::format("align2-too-large-v1\n{}\n{}\n{}", origin.file, origin.index_in_file, raw_length);
    fail(out, origin, Status::invalid, Reason::record_too_large,
         fmt::format("record is {} bytes, above the bound of {} (max_record_bytes)", raw_length,
                     options.max_record_bytes));
    return out;
  }
  std::uint64_t bad = 0;
  if (!is_valid_utf8(raw, &bad)) {
    fail(out, origin, Status::invalid, Reason::invalid_utf8,
         fmt::format("invalid UTF-8 at byte {} of the record", bad));
    return out;
  }
  json rec;
  try {
    rec = json::parse(raw.begin(), raw.end());
  } catch (const json::parse_error& e) {
    fail(out, origin, Status::invalid, Reason::not_json, std::string("not JSON: ") + e.what());
    return out;
  }
  if (!rec.is_object()) {
    fail(out, origin, Status::invalid, Reason::not_object,
         fmt::format("record is a JSON {}, expected an object", json_type(rec)));
    return out;
  }

  // id
  auto id = rec.find("id");
  if (id == rec.end()) {
    fail(out, origin, Status::invalid, Reason::missing_field, "record has no \"id\"");
    return out;
  }
  if (id->is_string()) s.id = id->get<std::string>();
  else if (id->is_number_integer() || id->is_number_unsigned()) s.id = id->dump();
  else {
    fail(out, origin, Status::invalid, Reason::wrong_type,
         fmt::format("\"id\" is {}, expected a string or an integer", json_type(*id)));
    return out;
  }

  // image
  auto image = rec.find("image");
  if (image != rec.end() && !image->is_null()) {
    if (!image->is_string()) {
      fail(out, origin, Status::invalid, Reason::wrong_type,
           fmt::format("\"image\" is {}, expected a string", json_type(*image)));
      return out;
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
        return out;
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
      return out;
    }
    if (conv->empty()) {
      fail(out, origin, Status::invalid, Reason::empty_conversation, "\"conversations\" is empty");
      return out;
    }
    std::string question;
    for (std::size_t t = 0; t < conv->size(); ++t) {
      const json& turn = (*conv)[t];
      std::string where = fmt::format("conversations[{}]", t);
      if (!turn.is_object()) {
        fail(out, origin, Status::invalid, Reason::wrong_type,
             fmt::format("{} is {}, expected an object", where, json_type(turn)));
        return out;
      }
      std::string from, value;
      if (!string_field(turn, "from", where, &from, out, origin)) return out;
      if (!string_field(turn, "value", where, &value, out, origin)) return out;
      const char* expected = t % 2 == 0 ? "human" : "gpt";
      if (from != expected) {
        fail(out, origin, Status::invalid, Reason::bad_roles,
             fmt::format("{} is from {}, expected \"{}\" (turns alternate human, gpt, starting with human)",
                         where, json(from).dump(), expected));
        return out;
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
      return out;
    }
  } else if (rec.contains("instruction") || rec.contains("output")) {
    Turn turn;
    if (!string_field(rec, "instruction", "record", &turn.question, out, origin)) return out;
    if (!string_field(rec, "output", "record", &turn.answer, out, origin)) return out;
    s.turns.push_back(std::move(turn));
  } else {
    fail(out, origin, Status::invalid, Reason::missing_field,
         "record has no \"conversations\" (nor \"instruction\" and \"output\")");
    return out;
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
    return out;
  }
  if (!out.has_image && tags_total != 0) {
    fail(out, origin, Status::invalid, Reason::bad_image_tag,
         fmt::format("record has no image but {} <image> tag(s)", tags_total));
    s.turns.clear();
    return out;
  }

  // The content key: everything but the id, keys sorted, compact.
  rec.erase("id");
  out.canonical = "align2-record-v1\n" + rec.dump();

  if (out.has_image) {
    std::string detail;
    Reason r = check_image_path(s.image, options.image_root, &detail);
    if (r != Reason::none) {
      fail(out, origin, r == Reason::missing_image ? Status::missing_image : Status::invalid, r, detail);
      if (r != Reason::missing_image) s.turns.clear();
      return out;
    }
  }
  return out;
}

}  // namespace align2
