// Validation of one input record's JSON text into a Sample.
//
// Two record shapes are accepted:
//   LLaVA conversations: {"id": ..., "image": "rel/path.jpg"?, "conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}, ...]}
//   instruction/output:  {"id": ..., "image": ...?, "instruction": "...", "output": "..."}  (one turn; e.g. LLaVA's GPT-4 QA files)
// Rules (each failure has its own Reason, see sample.h): UTF-8, JSON, object, `id`
// (string or integer), conversations non-empty, roles human/gpt alternating from human
// and ending with gpt (or, with accept_open_question, with human), `value` strings, image path relative and inside the image
// root, exactly one <image> tag (opening or closing the first human turn, or anywhere
// in it) when the record has an image and none when it has not (conversation shape),
// size bound, and the image file present when an image root is given.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "core/data/sample.h"

namespace align2 {

struct ValidationOptions {
  std::string image_root;        // "" = do not look at image files on disk
  std::string subset_field;      // record field naming the subset ("" = none)
  std::uint64_t max_record_bytes = 16u << 20;  // longer records get Reason::record_too_large
  // Accept a conversation that ends with a human turn (a question to answer, as in an
  // evaluation set): its last Turn has answer "". Only `align2 prompt --inference` sets it;
  // a pool to curate needs answers. Never serialized (serialize_index asserts it is off).
  bool accept_open_question = false;
};

// Where a record came from, for messages and the subset.
struct RecordOrigin {
  std::string file;                // pool file path as given
  std::uint64_t index_in_file = 0; // 0-based
  std::uint64_t line = 0;          // 1-based line of the record's first byte
  std::string file_subset;         // subset mapped from the file name ("" = not mapped)
};

// The size of a record's text: what its turns hold (of sample.turns, whether kept or not).
struct TextCounts {
  std::uint64_t turns = 0;
  std::uint64_t text_bytes = 0;      // questions and answers, bytes
  std::uint64_t question_bytes = 0;  // questions, bytes
};

struct ValidatedRecord {
  Sample sample;          // all fields but index and key filled; raw = the text given
  std::string canonical;  // the bytes the key hashes (see content_key)
  bool has_image = false;
  TextCounts counts;      // sample.turns' sizes (also when ValidationPass::keep_text left them out)
};

// The disk checks of images during one pass over a pool (the index pass): the image root is
// resolved once, and each distinct image path's verdict is kept, since a pool names most images
// more than once (LLaVA-Instruct-158K: 158K records over 81K images). Gives exactly what
// check_image_path gives while the files do not change. Memory is bounded: past max_verdicts
// (about 100 bytes each) the kept verdicts are dropped and gathered again.
class ImageChecks {
 public:
  static constexpr std::size_t kMaxVerdicts = 1u << 20;
  explicit ImageChecks(std::string image_root, std::size_t max_verdicts = kMaxVerdicts);
  const std::string& image_root() const { return root_; }
  // check_image_path(image, image_root(), detail), from the kept verdict when there is one.
  Reason check(const std::string& image, std::string* detail);

 private:
  std::string root_;
  std::string root_real_;  // realpath of root_; "" when it does not resolve
  std::size_t max_verdicts_;
  std::unordered_map<std::string, std::pair<Reason, std::string>> verdicts_;  // image -> (reason, detail)
};

// Bytes past a record's end that a pass may let the parser read (ValidationPass::padded).
constexpr std::size_t kRecordPadding = 64;

// What a pass over many records lends validate_record, to go faster with the same result.
struct ValidationPass {
  ImageChecks* images = nullptr;  // image checks kept across records (root = options.image_root); nullptr: none kept
  bool keep_raw = true;           // false: sample.raw is left empty (the index pass never reads it)
  bool keep_text = true;          // false: sample.turns may be left empty (counts still tell their sizes)
  bool padded = false;            // true: kRecordPadding bytes after the record are readable (contents any)
};

// Validates `raw` (the record's exact bytes). Never throws for bad input: problems
// become sample.status / reason / message. `raw_length` is the record's true length
// when `raw` was not kept because it exceeded the bound (then raw is empty).
ValidatedRecord validate_record(std::string_view raw, const RecordOrigin& origin,
                                const ValidationOptions& options,
                                std::uint64_t raw_length, const ValidationPass& pass = {});
// The same into `out`, whose canonical buffer is reused (a pass over many records keeps one
// ValidatedRecord and saves an allocation per record); every field of `out` is replaced.
void validate_record(std::string_view raw, const RecordOrigin& origin, const ValidationOptions& options,
                     std::uint64_t raw_length, const ValidationPass& pass, ValidatedRecord& out);

// validate_record with nlohmann::json as the only reader. validate_record reads the common case
// (a record that keeps every rule) with simdjson and must give exactly this; tests compare them.
ValidatedRecord validate_record_reference(std::string_view raw, const RecordOrigin& origin,
                                          const ValidationOptions& options, std::uint64_t raw_length);

// Checks a relative image path lexically (not absolute, no escape through "..") and,
// when image_root is not empty, on disk (resolved path inside the root, a regular
// file). Returns Reason::none when fine; fills `detail` otherwise.
Reason check_image_path(const std::string& image, const std::string& image_root, std::string* detail);

// True when `text` is well-formed UTF-8; otherwise `bad_offset` gets the first bad byte.
bool is_valid_utf8(std::string_view text, std::uint64_t* bad_offset);

// "<file> record #<i> (line <l>, id "<id>"): <what>" - the form of every record message.
std::string record_message(const RecordOrigin& origin, const std::string& id, const std::string& what);
// The text of a missing_image message.
std::string missing_image_detail(const std::string& image, const std::string& image_root);

// `text` unchanged when it is well-formed UTF-8 without NUL bytes; otherwise every
// bad byte and NUL becomes the four characters \xNN, so it can be stored as text.
std::string printable_text(const std::string& text);

// 32 lowercase hex chars: the first 16 bytes of SHA-256 over `bytes`.
std::string content_key(std::string_view bytes);
// The same key as its 16 bytes (what an IndexEntry holds).
void content_key(std::string_view bytes, std::uint8_t key[16]);

}  // namespace align2
