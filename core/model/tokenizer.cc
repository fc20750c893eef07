// Native SentencePiece BPE (see tokenizer.h). The behaviour follows libsentencepiece
// 0.1.97: normalizer.cc (identity normalization), bpe_model.cc (merge loop),
// model_interface.cc (vocabulary tables) and sentencepiece_processor.cc (unknown and
// byte-fallback handling on encode, surfaces on decode).
#include "core/model/tokenizer.h"

#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <queue>
#include <stdexcept>
#include <utility>

namespace align2 {
namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581 "▁"
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// ---------------------------------------------------------------------------------
// Protobuf wire format (https://protobuf.dev/programming-guides/encoding/): every
// field is a varint key (field number << 3 | wire type) followed by a varint (0), 8
// bytes (1), a varint length and that many bytes (2), or 4 bytes (5). Groups (3, 4)
// are not used by sentencepiece and are refused.

enum Wire { kVarint = 0, kFixed64 = 1, kLength = 2, kFixed32 = 5 };

struct Field {
  std::uint32_t number = 0;
  int wire = 0;
  std::uint64_t varint = 0;      // kVarint
  std::string_view bytes;        // kLength
  std::uint32_t fixed32 = 0;     // kFixed32
  std::size_t offset = 0;        // file offset of the key
};

class WireReader {
 public:
  // `bytes` is a message starting at file offset `base`; `message` names it for errors.
  WireReader(std::string_view bytes, std::size_t base, const std::string& file, const char* message)
      : bytes_(bytes), base_(base), file_(file), message_(message) {}

  bool done() const { return pos_ >= bytes_.size(); }

  Field next() {
    Field f;
    f.offset = base_ + pos_;
    const std::uint64_t key = varint();
    f.number = static_cast<std::uint32_t>(key >> 3);
    f.wire = static_cast<int>(key & 7);
    if (key >> 3 == 0 || key >> 3 > 536870911u) fail(fmt::format("invalid field number {}", key >> 3), f.offset);
    switch (f.wire) {
      case kVarint:
        f.varint = varint();
        break;
      case kFixed64:
        need(8, "8-byte field");
        pos_ += 8;
        break;
      case kLength: {
        const std::uint64_t n = varint();
        if (n > bytes_.size() - pos_)
          fail(fmt::format("field {} claims {} bytes but only {} remain in the {} (truncated file?)", f.number, n,
                           bytes_.size() - pos_, message_),
               f.offset);
        f.bytes = bytes_.substr(pos_, static_cast<std::size_t>(n));
        pos_ += static_cast<std::size_t>(n);
        break;
      }
      case kFixed32:
        need(4, "4-byte field");
        std::memcpy(&f.fixed32, bytes_.data() + pos_, 4);  // little-endian host
        pos_ += 4;
        break;
      default:
        fail(fmt::format("field {} has unsupported wire type {}", f.number, f.wire), f.offset);
    }
    return f;
  }

  // Typed access to a field of a known number; a different wire type is malformed.
  std::uint64_t as_varint(const Field& f) const {
    expect(f, kVarint, "a varint");
    return f.varint;
  }
  bool as_bool(const Field& f) const { return as_varint(f) != 0; }
  std::int32_t as_int32(const Field& f) const {
    return static_cast<std::int32_t>(static_cast<std::uint32_t>(as_varint(f)));  // two's complement, as protobuf
  }
  std::string_view as_bytes(const Field& f) const {
    expect(f, kLength, "length-delimited");
    return f.bytes;
  }
  float as_float(const Field& f) const {
    expect(f, kFixed32, "a 32-bit float");
    float v;
    std::memcpy(&v, &f.fixed32, 4);
    return v;
  }
  // File offset of a length-delimited field's payload (for nested readers).
  std::size_t payload_offset(const Field& f) const {
    return base_ + static_cast<std::size_t>(f.bytes.data() - bytes_.data());
  }

  [[noreturn]] void fail(const std::string& what, std::size_t offset) const {
    throw std::runtime_error(fmt::format("{}: not a valid sentencepiece model: {}: {} (byte {})", file_, message_,
                                         what, offset));
  }

 private:
  std::uint64_t varint() {
    const std::size_t start = base_ + pos_;
    std::uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (pos_ >= bytes_.size()) fail("truncated varint", start);
      const auto b = static_cast<std::uint8_t>(bytes_[pos_++]);
      if (shift == 63 && b > 1) fail("varint longer than 64 bits", start);
      v |= static_cast<std::uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint longer than 10 bytes", start);
  }
  void need(std::size_t n, const char* what) const {
    if (bytes_.size() - pos_ < n) fail(fmt::format("truncated {}", what), base_ + pos_);
  }
  void expect(const Field& f, int wire, const char* what) const {
    if (f.wire != wire)
      fail(fmt::format("field {} should be {} but has wire type {}", f.number, what, f.wire), f.offset);
  }

  std::string_view bytes_;
  std::size_t base_;
  std::size_t pos_ = 0;
  const std::string& file_;
  const char* message_;
};

// ---------------------------------------------------------------------------------
// UTF-8 as sentencepiece's util.cc reads it.

// Bytes of the character that starts with `lead`, from the lead byte alone (OneCharLen).
std::size_t one_char_length(char lead) {
  static constexpr std::uint8_t kLength[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLength[static_cast<std::uint8_t>(lead) >> 4];
}

bool is_trail(char c) { return (static_cast<std::uint8_t>(c) & 0xC0) == 0x80; }
bool is_valid_codepoint(std::uint32_t c) { return c < 0xD800 || (c >= 0xE000 && c <= 0x10FFFF); }

// Length of the well-formed UTF-8 character at the start of `s` (1..4), or 0 when the
// first byte does not start one (sentencepiece's DecodeUTF8 + IsValidDecodeUTF8:
// overlong forms, surrogates, code points above U+10FFFF and truncated sequences are
// invalid; a literal U+FFFD is valid). `s` must not be empty.
std::size_t valid_char_length(std::string_view s) {
  const auto b0 = static_cast<std::uint8_t>(s[0]);
  const std::size_t n = s.size();
  if (b0 < 0x80) return 1;
  if (n >= 2 && (b0 & 0xE0) == 0xC0) {
    const std::uint32_t cp = ((b0 & 0x1Fu) << 6) | (static_cast<std::uint8_t>(s[1]) & 0x3Fu);
    if (is_trail(s[1]) && cp >= 0x80 && is_valid_codepoint(cp)) return 2;
  } else if (n >= 3 && (b0 & 0xF0) == 0xE0) {
    const std::uint32_t cp = ((b0 & 0x0Fu) << 12) | ((static_cast<std::uint8_t>(s[1]) & 0x3Fu) << 6) |
                             (static_cast<std::uint8_t>(s[2]) & 0x3Fu);
    if (is_trail(s[1]) && is_trail(s[2]) && cp >= 0x800 && is_valid_codepoint(cp)) return 3;
  } else if (n >= 4 && (b0 & 0xF8) == 0xF0) {
    const std::uint32_t cp = ((b0 & 0x07u) << 18) | ((static_cast<std::uint8_t>(s[1]) & 0x3Fu) << 12) |
                             ((static_cast<std::uint8_t>(s[2]) & 0x3Fu) << 6) |
                             (static_cast<std::uint8_t>(s[3]) & 0x3Fu);
    if (is_trail(s[1]) && is_trail(s[2]) && is_trail(s[3]) && cp >= 0x10000 && is_valid_codepoint(cp))
      return 4;
  }
  return 0;
}

// "<0x41>" -> 0x41; -1 for anything else (sentencepiece's PieceToByte: exactly the
// form "<0x%02X>", upper-case hex digits).
int piece_to_byte(std::string_view piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const int hi = hex(piece[3]), lo = hex(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string byte_to_piece(unsigned byte) { return fmt::format("<0x{:02X}>", byte); }

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}
bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A self-test sample of the model file: an input and its expected pieces, space-joined.
struct SelfTestSample {
  std::string input, expected;
};

}  // namespace

// ---------------------------------------------------------------------------------
// Loading

Tokenizer Tokenizer::load(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw std::runtime_error(fmt::format("{}: is a folder; give the tokenizer.model file inside it", path));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot open tokenizer model", path));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw std::runtime_error(fmt::format("{}: cannot read tokenizer model", path));
  return from_bytes(bytes, path);
}

Tokenizer Tokenizer::from_bytes(std::string_view bytes, const std::string& name) {
  Tokenizer t;
  t.name_ = name;
  int model_type = 1;  // proto default: UNIGRAM
  bool treat_whitespace_as_suffix = false;
  std::string normalizer_name, precompiled_charsmap, denormalizer_charsmap;
  std::vector<SelfTestSample> self_test;

  WireReader model(bytes, 0, name, "ModelProto");
  while (!model.done()) {
    const Field f = model.next();
    switch (f.number) {
      case 1: {  // repeated SentencePiece pieces
        WireReader r(model.as_bytes(f), model.payload_offset(f), name, "ModelProto.pieces");
        Piece p;
        while (!r.done()) {
          const Field g = r.next();
          if (g.number == 1) {
            p.text = std::string(r.as_bytes(g));
          } else if (g.number == 2) {
            p.score = r.as_float(g);
          } else if (g.number == 3) {
            const std::uint64_t v = r.as_varint(g);
            if (v < 1 || v > 6)
              r.fail(fmt::format("piece #{} has unknown type {}", t.pieces_.size(), v), g.offset);
            p.type = static_cast<PieceType>(v);
          }
        }
        t.pieces_.push_back(std::move(p));
        break;
      }
      case 2: {  // TrainerSpec
        WireReader r(model.as_bytes(f), model.payload_offset(f), name, "TrainerSpec");
        while (!r.done()) {
          const Field g = r.next();
          switch (g.number) {
            case 3: model_type = static_cast<int>(r.as_varint(g)); break;
            case 24: treat_whitespace_as_suffix = r.as_bool(g); break;
            case 35: t.byte_fallback_ = r.as_bool(g); break;
            case 44: t.unk_surface_ = std::string(r.as_bytes(g)); break;
            case 45: t.unk_piece_ = std::string(r.as_bytes(g)); break;
            case 46: t.bos_piece_ = std::string(r.as_bytes(g)); break;
            case 47: t.eos_piece_ = std::string(r.as_bytes(g)); break;
            case 48: t.pad_piece_ = std::string(r.as_bytes(g)); break;
            default: break;  // training-only settings (and unk/bos/eos/pad ids, which
                             // sentencepiece re-derives from the pieces)
          }
        }
        break;
      }
      case 3:    // NormalizerSpec
      case 5: {  // denormalizer NormalizerSpec
        const bool denormalizer = f.number == 5;
        WireReader r(model.as_bytes(f), model.payload_offset(f), name,
                     denormalizer ? "denormalizer_spec" : "normalizer_spec");
        while (!r.done()) {
          const Field g = r.next();
          switch (g.number) {
            case 1:
              if (!denormalizer) normalizer_name = std::string(r.as_bytes(g));
              break;
            case 2:
              (denormalizer ? denormalizer_charsmap : precompiled_charsmap) = std::string(r.as_bytes(g));
              break;
            case 3:
              if (!denormalizer) t.add_dummy_prefix_ = r.as_bool(g);
              break;
            case 4:
              if (!denormalizer) t.remove_extra_whitespaces_ = r.as_bool(g);
              break;
            case 5:
              if (!denormalizer) t.escape_whitespaces_ = r.as_bool(g);
              break;
            default: break;  // normalization_rule_tsv: training input only
          }
        }
        break;
      }
      case 4: {  // SelfTestData
        WireReader r(model.as_bytes(f), model.payload_offset(f), name, "SelfTestData");
        while (!r.done()) {
          const Field g = r.next();
          if (g.number != 1) continue;
          WireReader s(r.as_bytes(g), r.payload_offset(g), name, "SelfTestData.samples");
          SelfTestSample sample;
          while (!s.done()) {
            const Field h = s.next();
            if (h.number == 1) sample.input = std::string(s.as_bytes(h));
            if (h.number == 2) sample.expected = std::string(s.as_bytes(h));
          }
          self_test.push_back(std::move(sample));
        }
        break;
      }
      default:
        break;  // unknown fields are skipped, as protobuf does
    }
  }

  if (t.pieces_.empty())
    throw std::runtime_error(fmt::format("{}: not a sentencepiece model: it holds no pieces", name));
  if (model_type != 2) {
    static const char* const kTypes[] = {"?", "UNIGRAM", "BPE", "WORD", "CHAR"};
    throw std::runtime_error(fmt::format(
        "{}: sentencepiece model type {} is not supported: only BPE models (LLaMA's) are", name,
        model_type >= 1 && model_type <= 4 ? kTypes[model_type] : std::to_string(model_type).c_str()));
  }
  if (!precompiled_charsmap.empty())
    throw std::runtime_error(fmt::format(
        "{}: the normalizer '{}' has a precompiled character map ({} bytes), which this tokenizer does not "
        "implement; only the identity normalizer (LLaMA's) is supported",
        name, normalizer_name, precompiled_charsmap.size()));
  if (!denormalizer_charsmap.empty())
    throw std::runtime_error(fmt::format(
        "{}: the model has a denormalizer with a precompiled character map, which this tokenizer does not implement",
        name));
  if (treat_whitespace_as_suffix)
    throw std::runtime_error(
        fmt::format("{}: treat_whitespace_as_suffix is set; this tokenizer supports whitespace prefixes only", name));
  // sentencepiece treats an empty special piece name as its default.
  if (t.unk_piece_.empty()) t.unk_piece_ = "<unk>";
  if (t.bos_piece_.empty()) t.bos_piece_ = "<s>";
  if (t.eos_piece_.empty()) t.eos_piece_ = "</s>";
  if (t.pad_piece_.empty()) t.pad_piece_ = "<pad>";
  t.finish_load();

  // sentencepiece refuses a model whose own self-test samples fail.
  for (const SelfTestSample& s : self_test) {
    std::vector<std::int32_t> ids;
    std::vector<std::string> pieces;
    t.encode_impl(s.input, &ids, &pieces);
    std::string joined;
    for (std::size_t i = 0; i < pieces.size(); ++i) joined += (i ? " " : "") + pieces[i];
    if (joined != s.expected)
      throw std::runtime_error(fmt::format("{}: self-test sample '{}' encodes to '{}', the model expects '{}'", name,
                                           s.input, joined, s.expected));
  }
  return t;
}

void Tokenizer::finish_load() {
  std::int32_t unknown = -1;
  bool byte_found[256] = {};
  for (std::size_t i = 0; i < pieces_.size(); ++i) {
    const Piece& p = pieces_[i];
    const auto id = static_cast<std::int32_t>(i);
    if (p.text.empty()) throw std::runtime_error(fmt::format("{}: piece #{} is empty", name_, i));
    const bool is_normal =
        p.type == PieceType::normal || p.type == PieceType::user_defined || p.type == PieceType::unused;
    auto& table = is_normal ? normal_ids_ : reserved_ids_;
    if (!table.emplace(std::string_view(p.text), id).second)
      throw std::runtime_error(fmt::format("{}: piece '{}' (#{}) is defined twice", name_, p.text, i));
    if (p.type == PieceType::user_defined) {
      user_defined_.insert(std::string_view(p.text));
      max_user_defined_length_ = std::max(max_user_defined_length_, p.text.size());
    }
    if (p.type == PieceType::unknown) {
      if (unknown >= 0)
        throw std::runtime_error(fmt::format("{}: two unknown pieces (#{} and #{})", name_, unknown, i));
      unknown = id;
    }
    if (p.type == PieceType::byte) {
      if (!byte_fallback_)
        throw std::runtime_error(
            fmt::format("{}: byte piece '{}' (#{}) although byte_fallback is off", name_, p.text, i));
      const int b = piece_to_byte(p.text);
      if (b < 0) throw std::runtime_error(fmt::format("{}: byte piece '{}' (#{}) is not <0xNN>", name_, p.text, i));
      byte_found[b] = true;
    }
  }
  if (unknown < 0) throw std::runtime_error(fmt::format("{}: the vocabulary has no unknown piece", name_));
  model_unk_ = unknown;
  if (byte_fallback_) {
    for (unsigned b = 0; b < 256; ++b) {
      if (!byte_found[b])
        throw std::runtime_error(fmt::format("{}: byte_fallback is on but the byte piece {} is missing", name_,
                                             byte_to_piece(b)));
      byte_ids_[b] = lookup(byte_to_piece(b));
    }
  }
  decode_ids_.resize(pieces_.size());
  for (std::size_t i = 0; i < pieces_.size(); ++i) decode_ids_[i] = lookup(pieces_[i].text);
  auto special = [this](const std::string& text, PieceType type) {
    const std::int32_t id = lookup(text);
    return pieces_[id].type == type ? id : -1;
  };
  unk_id_ = special(unk_piece_, PieceType::unknown);
  bos_id_ = special(bos_piece_, PieceType::control);
  eos_id_ = special(eos_piece_, PieceType::control);
  pad_id_ = special(pad_piece_, PieceType::control);
}

// ---------------------------------------------------------------------------------
// Lookups

void Tokenizer::check_id(std::int32_t id) const {
  if (id < 0 || id >= vocab_size())
    throw std::out_of_range(
        fmt::format("token id {} is outside the vocabulary [0, {}) of {}", id, vocab_size(), name_));
}

std::string Tokenizer::piece(std::int32_t id) const {
  check_id(id);
  return pieces_[id].text;
}

PieceType Tokenizer::piece_type(std::int32_t id) const {
  check_id(id);
  return pieces_[id].type;
}

float Tokenizer::score(std::int32_t id) const {
  check_id(id);
  return pieces_[id].score;
}

std::int32_t Tokenizer::lookup(std::string_view text) const {
  if (auto it = reserved_ids_.find(text); it != reserved_ids_.end()) return it->second;
  if (auto it = normal_ids_.find(text); it != normal_ids_.end()) return it->second;
  return model_unk_;
}

std::size_t Tokenizer::match_user_defined(std::string_view text) const {
  for (std::size_t n = std::min(max_user_defined_length_, text.size()); n > 0; --n)
    if (user_defined_.count(text.substr(0, n))) return n;
  return 0;
}

// ---------------------------------------------------------------------------------
// Encoding

std::string Tokenizer::normalize(std::string_view input) const {
  // One unit of input as sentencepiece's NormalizePrefix yields it: a user-defined
  // piece verbatim, one well-formed character, or U+FFFD for one byte that is not.
  auto next_unit = [this](std::string_view in) -> std::pair<std::string_view, std::size_t> {
    if (const std::size_t n = match_user_defined(in)) return {in.substr(0, n), n};
    const std::size_t n = valid_char_length(in);
    if (n == 0) return {kReplacement, 1};
    return {in.substr(0, n), n};
  };
  const std::string_view space = escape_whitespaces_ ? kSpaceSymbol : std::string_view(" ");

  std::string out;
  if (input.empty()) return out;
  if (remove_extra_whitespaces_) {  // drop leading spaces
    while (!input.empty()) {
      const auto unit = next_unit(input);
      if (unit.first != " ") break;
      input.remove_prefix(unit.second);
    }
    if (input.empty()) return out;
  }
  out.reserve(input.size() * 3);
  if (add_dummy_prefix_) out += space;
  bool prev_space = remove_extra_whitespaces_;
  while (!input.empty()) {
    const auto unit = next_unit(input);
    std::string_view sp = unit.first;
    while (prev_space && !sp.empty() && sp[0] == ' ') sp.remove_prefix(1);  // collapse space runs
    if (!sp.empty()) {
      for (char c : sp) {
        if (escape_whitespaces_ && c == ' ') out += kSpaceSymbol;
        else out += c;
      }
      prev_space = sp.back() == ' ';
    }
    input.remove_prefix(unit.second);
    if (!remove_extra_whitespaces_) prev_space = false;
  }
  if (remove_extra_whitespaces_)  // drop trailing spaces
    while (ends_with(out, space)) out.resize(out.size() - space.size());
  return out;
}

std::vector<Tokenizer::Segment> Tokenizer::bpe(std::string_view normalized) const {
  std::vector<Segment> result;
  if (normalized.empty()) return result;

  // Symbols form a doubly linked list over the normalized text; a merge grows the left
  // symbol over the right one and empties the right one.
  struct Symbol {
    int prev;     // -1 at the start
    int next;     // -1 at the end
    bool frozen;  // a user-defined piece: never merged
    std::string_view text;
  };
  // A candidate merge of two adjacent symbols. `size` (bytes of the merged text) tells
  // a stale candidate: once either symbol changed, the sizes no longer add up.
  struct Candidate {
    int left, right;
    float score;
    std::size_t size;
  };
  // Highest score first; on equal scores the leftmost pair.
  struct Lower {
    bool operator()(const Candidate& a, const Candidate& b) const {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, Lower> agenda;
  std::vector<Symbol> symbols;
  symbols.reserve(normalized.size());
  // For merges into UNUSED pieces, which are split back afterwards: merged text ->
  // the two texts it was last formed from.
  std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> unused_merges;

  auto add_candidate = [&](int left, int right) {
    if (left == -1 || right == -1 || symbols[left].frozen || symbols[right].frozen) return;
    const std::string_view merged(symbols[left].text.data(), symbols[left].text.size() + symbols[right].text.size());
    const auto it = normal_ids_.find(merged);
    if (it == normal_ids_.end()) return;
    const Piece& p = pieces_[it->second];
    agenda.push(Candidate{left, right, p.score, merged.size()});
    if (p.type == PieceType::unused) unused_merges[merged] = {symbols[left].text, symbols[right].text};
  };

  for (std::string_view rest = normalized; !rest.empty();) {
    Symbol s;
    std::size_t n = match_user_defined(rest);
    s.frozen = n > 0;
    if (!s.frozen) n = std::min(rest.size(), one_char_length(rest[0]));
    s.text = rest.substr(0, n);
    const int index = static_cast<int>(symbols.size());
    s.prev = index - 1;
    rest.remove_prefix(n);
    s.next = rest.empty() ? -1 : index + 1;
    symbols.push_back(s);
  }
  for (std::size_t i = 1; i < symbols.size(); ++i) add_candidate(static_cast<int>(i) - 1, static_cast<int>(i));

  while (!agenda.empty()) {
    const Candidate top = agenda.top();
    agenda.pop();
    Symbol& left = symbols[top.left];
    Symbol& right = symbols[top.right];
    if (left.text.empty() || right.text.empty() || left.text.size() + right.text.size() != top.size) continue;
    left.text = std::string_view(left.text.data(), top.size);
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.left;
    right.text = std::string_view();
    add_candidate(left.prev, top.left);
    add_candidate(top.left, left.next);
  }

  // Emits a final symbol; an UNUSED piece is split back into the pieces it came from.
  std::function<void(std::string_view)> emit = [&](std::string_view text) {
    const std::int32_t id = lookup(text);
    if (pieces_[id].type == PieceType::unused) {
      const auto it = unused_merges.find(text);
      if (it != unused_merges.end()) {
        emit(it->second.first);
        emit(it->second.second);
        return;
      }
    }
    result.push_back(Segment{text, id});
  };
  for (int i = 0; i != -1; i = symbols[i].next) emit(symbols[i].text);
  return result;
}

void Tokenizer::encode_impl(std::string_view text, std::vector<std::int32_t>* ids,
                            std::vector<std::string>* pieces) const {
  const std::string normalized = normalize(text);
  const std::vector<Segment> segments = bpe(normalized);
  std::size_t consumed = 0;
  bool prev_unknown = false;
  for (const Segment& s : segments) {
    const PieceType type = pieces_[s.id].type;
    const bool unknown = type == PieceType::unknown;
    if (type == PieceType::control) {
      // A control piece has no surface (only reachable with unusual vocabularies).
      ids->push_back(s.id);
      if (pieces) pieces->emplace_back(s.text);
    } else {
      if (unknown && byte_fallback_) {
        for (char c : s.text) {
          const auto b = static_cast<std::uint8_t>(c);
          ids->push_back(byte_ids_[b]);
          if (pieces) pieces->push_back(byte_to_piece(b));
        }
      } else if (unknown && prev_unknown) {
        // Consecutive unknown pieces become one <unk>.
        if (pieces) pieces->back() += s.text;
      } else {
        ids->push_back(s.id);
        if (pieces) pieces->emplace_back(s.text);
      }
      consumed += s.text.size();
    }
    prev_unknown = unknown;
  }
  if (consumed != normalized.size())
    throw std::runtime_error(fmt::format("{}: encoding did not consume the whole text ({} of {} bytes)", name_,
                                         consumed, normalized.size()));
}

std::vector<std::int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<std::int32_t> ids;
  if (add_bos) {
    if (bos_id_ < 0)
      throw std::runtime_error(fmt::format("{}: the model has no BOS control piece '{}'", name_, bos_piece_));
    ids.push_back(bos_id_);
  }
  encode_impl(text, &ids, nullptr);
  return ids;
}

// ---------------------------------------------------------------------------------
// Decoding

std::string Tokenizer::decode(const std::vector<std::int32_t>& ids) const {
  std::string text;
  std::string bytes;  // a pending run of byte pieces
  auto flush_bytes = [&]() {
    for (std::size_t offset = 0; offset < bytes.size();) {
      const std::size_t n = valid_char_length(std::string_view(bytes).substr(offset));
      if (n == 0) {
        text += kReplacement;
        offset += 1;
      } else {
        text.append(bytes, offset, n);
        offset += n;
      }
    }
    bytes.clear();
  };
  const bool strip_prefix = add_dummy_prefix_ || remove_extra_whitespaces_;
  bool at_start = true;       // no visible text yet: a leading "▁" may be the dummy prefix
  bool prefix_eaten = false;  // the previous piece gave up its leading "▁"
  for (const std::int32_t raw_id : ids) {
    check_id(raw_id);
    const std::int32_t id = decode_ids_[raw_id];  // DecodeIds goes id -> piece -> id
    const Piece& p = pieces_[id];
    if (p.type == PieceType::byte) {
      bytes.push_back(static_cast<char>(piece_to_byte(p.text)));
      continue;
    }
    flush_bytes();
    if (prefix_eaten || !text.empty()) at_start = false;
    prefix_eaten = false;
    if (p.type == PieceType::control) continue;
    if (p.type == PieceType::unknown) {
      text += unk_surface_;
      continue;
    }
    std::string_view piece = p.text;
    if (at_start && strip_prefix && starts_with(piece, kSpaceSymbol)) {
      piece.remove_prefix(kSpaceSymbol.size());
      // With remove_extra_whitespaces every leading "▁" goes, not just the first.
      prefix_eaten = !remove_extra_whitespaces_;
    }
    for (std::size_t i = 0; i < piece.size();) {
      if (piece.compare(i, kSpaceSymbol.size(), kSpaceSymbol) == 0) {
        text += ' ';
        i += kSpaceSymbol.size();
      } else {
        text += piece[i++];
      }
    }
  }
  flush_bytes();
  return text;
}

}  // namespace align2
