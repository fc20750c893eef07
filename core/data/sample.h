// A sample: one input record of the pool, valid or not. Every input record becomes
// exactly one Sample, so that nothing is lost: invalid records carry a status, a
// reason code and a message instead of turns.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace align2 {

// What became of a record at validation.
enum class Status : std::uint8_t {
  valid = 0,
  invalid = 1,        // malformed record: see Reason
  missing_image = 2,  // well-formed, but its image file is not under the image root
  duplicate = 3,      // same content as an earlier record of the pool
};

// Why a record is not valid. `none` for valid records.
enum class Reason : std::uint8_t {
  none = 0,
  not_json,             // JSONL line that is not JSON
  not_object,           // a JSON value that is not an object
  missing_field,        // id / conversations (or instruction+output) / from / value absent
  wrong_type,           // a field of the wrong JSON type
  empty_conversation,   // conversations is []
  bad_roles,            // roles not human/gpt alternating, starting with human, ending with gpt
  bad_image_tag,        // <image> missing, repeated, outside the first human turn, or without an image
  image_path_absolute,  // image path is absolute
  image_path_escapes,   // image path leaves the image root ("..", symlink out)
  missing_image,        // image file absent under the image root
  invalid_utf8,         // bytes that are not UTF-8
  record_too_large,     // record longer than the configured bound
  duplicate,            // same content as an earlier record
  bad_image,            // the image file exists but cannot be used (unreadable, unsupported, CMYK, too large)
};
constexpr Reason kLastReason = Reason::bad_image;

const char* status_name(Status s);
const char* reason_name(Reason r);
// Inverse of status_name / reason_name; throws std::invalid_argument for unknown names.
Status status_from_name(const std::string& name);
Reason reason_from_name(const std::string& name);

struct Turn {
  std::string question;  // human turn, verbatim (with <image> if it held it)
  std::string answer;    // gpt turn, verbatim
};

struct Sample {
  std::uint64_t index = 0;  // position in the pool, 0-based across all pool files
  std::string key;          // stable content key: 32 lowercase hex chars (see corpus_index.h)
  std::string id;           // the record's id as text ("" when absent or unreadable)
  std::string image;        // relative image path; "" for text-only records
  std::string subset;       // "conversation", "detail", "complex", ... or "all"
  std::vector<Turn> turns;  // (question, answer) pairs; empty unless status is valid/missing_image/duplicate
  std::string raw;          // the record's JSON text exactly as in the input file
  Status status = Status::valid;
  Reason reason = Reason::none;
  std::string message;      // human-readable: file, record index, id and what is wrong; "" if valid
};

}  // namespace align2
