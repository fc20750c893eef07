// A native LLaMA SentencePiece BPE tokenizer, bit-exact with libsentencepiece 0.1.97
// (Debian 12) for encode and decode, without linking it: Debian's libsentencepiece
// embeds protobuf 3.14 and crashes any process that also links libtorch.
//
// Loading reads `tokenizer.model` (a serialized sentencepiece.ModelProto) with a small
// protobuf wire-format reader: the pieces (text, score, type), the trainer spec
// (model_type must be BPE; byte_fallback; unk/bos/eos/pad pieces; unk_surface) and the
// normalizer spec (add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces).
// Refused with a message naming the file: malformed protobuf, a model type other than
// BPE, normalization rules this reader does not implement (a non-empty precompiled
// charsmap in the normalizer or denormalizer, treat_whitespace_as_suffix), and every
// vocabulary that libsentencepiece itself refuses (empty or repeated piece, no or two
// <unk>, byte pieces without byte_fallback, byte_fallback without all 256 byte pieces,
// failing self-test samples).
//
// Encoding, as sentencepiece does it:
//   1. normalize: every byte sequence that is not UTF-8 becomes U+FFFD, one per bad
//      byte; ' ' (U+0020 only: tabs and newlines stay) becomes U+2581 "▁"; a dummy "▁"
//      is put in front (add_dummy_prefix); with remove_extra_whitespaces, leading,
//      trailing and repeated spaces are dropped (LLaMA: off). Empty text stays empty.
//   2. split into characters (user-defined pieces are kept whole and never merged);
//   3. repeatedly merge the adjacent pair whose concatenation is a piece of highest
//      score, the leftmost pair first on equal scores (a priority queue over a linked
//      list of symbols: O(n log n));
//   4. a symbol that is not a piece is <unk>; with byte_fallback it becomes one
//      <0xNN> piece per UTF-8 byte, without it consecutive unknowns become one <unk>.
// Decoding: control pieces (<s>, </s>) give "", <unk> gives the unk surface " ⁇ ",
// "▁" becomes ' ', the first piece after the start (and after leading control pieces)
// loses its leading "▁" (the dummy prefix), runs of byte pieces are reassembled into
// UTF-8 and every byte that does not form a valid character becomes U+FFFD.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace align2 {

// sentencepiece.ModelProto.SentencePiece.Type, same numbers.
enum class PieceType : std::uint8_t {
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

class Tokenizer {
 public:
  // Reads a sentencepiece `tokenizer.model`. Throws std::runtime_error naming `path`
  // when the file cannot be read, is malformed, or uses features refused above.
  static Tokenizer load(const std::string& path);
  // The same from the file's bytes; `name` stands for the file in messages.
  static Tokenizer from_bytes(std::string_view bytes, const std::string& name);

  Tokenizer(Tokenizer&&) = default;
  Tokenizer& operator=(Tokenizer&&) = default;
  // Not copyable: the lookup tables hold views into pieces_ (stable under moves).
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Token ids of `text` (any bytes); bos_id() first when `add_bos` (throws
  // std::runtime_error when the model has no BOS control piece).
  std::vector<std::int32_t> encode(std::string_view text, bool add_bos) const;
  // Text of `ids`. Throws std::out_of_range for an id outside [0, vocab_size()).
  std::string decode(const std::vector<std::int32_t>& ids) const;

  // The piece text of `id` ("▁the", "<0x0A>", "<s>"); std::out_of_range for bad ids.
  std::string piece(std::int32_t id) const;
  PieceType piece_type(std::int32_t id) const;  // std::out_of_range for bad ids
  float score(std::int32_t id) const;           // std::out_of_range for bad ids

  // As SentencePieceProcessor: the id of the trainer spec's bos/eos/pad piece ("<s>",
  // "</s>", "<pad>" by default) when it is a control piece, else -1; unk_id() the id of
  // the unknown piece.
  std::int32_t bos_id() const { return bos_id_; }
  std::int32_t eos_id() const { return eos_id_; }
  std::int32_t pad_id() const { return pad_id_; }
  std::int32_t unk_id() const { return unk_id_; }
  std::int32_t vocab_size() const { return static_cast<std::int32_t>(pieces_.size()); }
  const std::string& name() const { return name_; }  // the path it was loaded from

 private:
  Tokenizer() = default;

  struct Piece {
    std::string text;
    float score = 0.0f;
    PieceType type = PieceType::normal;
  };

  // Result of the BPE step: a substring of the normalized text and its id.
  struct Segment {
    std::string_view text;
    std::int32_t id;
  };

  void check_id(std::int32_t id) const;
  // sentencepiece's PieceToId: control/unknown/byte pieces first, then the others,
  // else the unknown id.
  std::int32_t lookup(std::string_view text) const;
  // Length in bytes of the longest user-defined piece that starts `text`, 0 if none.
  std::size_t match_user_defined(std::string_view text) const;
  std::string normalize(std::string_view text) const;
  std::vector<Segment> bpe(std::string_view normalized) const;
  // Appends the ids of `text` (no BOS) and, when `pieces` is given, their piece texts
  // as sentencepiece reports them (for the model's self-test samples).
  void encode_impl(std::string_view text, std::vector<std::int32_t>* ids, std::vector<std::string>* pieces) const;
  void finish_load();  // builds the lookup tables and checks the vocabulary

  std::string name_;
  std::vector<Piece> pieces_;  // id -> piece
  // Views into pieces_[i].text (heap or inline storage inside the vector's buffer,
  // which a move keeps in place).
  std::unordered_map<std::string_view, std::int32_t> normal_ids_;    // normal, user_defined, unused
  std::unordered_map<std::string_view, std::int32_t> reserved_ids_;  // control, unknown, byte
  std::unordered_set<std::string_view> user_defined_;
  std::size_t max_user_defined_length_ = 0;
  std::vector<std::int32_t> decode_ids_;  // id -> lookup(piece(id)), as DecodeIds does
  std::int32_t byte_ids_[256] = {};       // byte -> id of "<0xNN>" (byte_fallback only)

  // trainer_spec
  bool byte_fallback_ = false;
  std::string unk_surface_ = " \xE2\x81\x87 ";
  std::string unk_piece_ = "<unk>", bos_piece_ = "<s>", eos_piece_ = "</s>", pad_piece_ = "<pad>";
  // normalizer_spec (proto defaults)
  bool add_dummy_prefix_ = true;
  bool remove_extra_whitespaces_ = true;
  bool escape_whitespaces_ = true;

  std::int32_t model_unk_ = 0;  // the unknown piece: what lookup() gives for unknown text
  std::int32_t unk_id_ = -1, bos_id_ = -1, eos_id_ = -1, pad_id_ = -1;
};

}  // namespace align2
