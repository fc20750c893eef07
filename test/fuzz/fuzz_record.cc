// Fuzz target: one pool record through validation, and the same bytes as a whole pool file.
//   1. validate_record on the bytes (a JSONL line / one JSON object): it never throws; a
//      valid record has turns, a 32-hex key, and validating again gives the same result; its
//      simdjson reader gives exactly what validate_record_reference (nlohmann only) gives.
//   2. The bytes written as a pool file, indexed (build_index: JSON array when the first
//      non-blank byte is '[', JSONL otherwise) and read back by CorpusReader: every Sample
//      the reader gives equals what the index pass recorded (status, reason, key).
//      The same file indexed in 2 and 3 parts and merged gives the same index or the same
//      error; when nlohmann reads it as a JSON array, each record is one of its elements.
//   3. The index's byte form round-trips (serialize_index / deserialize_index), and
//      deserialize_index on the raw input bytes refuses them cleanly or parses them.
// Seeds: test/fuzz/corpus/record/ (real LLaVA records from shared/data/llava).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/data/corpus_index.h"
#include "core/data/corpus_reader.h"
#include "core/data/record_validation.h"
#include "test/fuzz/fuzz_common.h"

#include <nlohmann/json.hpp>

using namespace align2;
using align2::fuzz::expect_clean_errors;

namespace {

constexpr const char* kTarget = "record";

bool is_hex32(const std::string& s) {
  if (s.size() != 32) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

bool utf8(const std::string& s) {
  std::uint64_t bad = 0;
  return is_valid_utf8(s, &bad);
}

void check_validation(std::string_view raw) {
  ValidationOptions options;
  options.subset_field = "type";
  RecordOrigin origin{"fuzz.jsonl", 0, 1, ""};
  ValidatedRecord v;
  try {  // documented never to throw for bad input
    v = validate_record(raw, origin, options, raw.size());
  } catch (const std::exception& e) {
    align2::fuzz::fuzz_fail(kTarget, std::string("validate_record threw: ") + e.what());
  }
  const Sample& s = v.sample;
  if (s.status == Status::valid) {
    FUZZ_CHECK(kTarget, s.reason == Reason::none, reason_name(s.reason));
    FUZZ_CHECK(kTarget, !s.turns.empty(), "a valid record without turns");
    FUZZ_CHECK(kTarget, s.message.empty(), s.message);
    FUZZ_CHECK(kTarget, utf8(s.id), "id is not UTF-8");
  } else {
    FUZZ_CHECK(kTarget, s.reason != Reason::none, "an invalid record without reason");
    FUZZ_CHECK(kTarget, !s.message.empty(), "an invalid record without message");
  }
  FUZZ_CHECK(kTarget, is_hex32(content_key(v.canonical)), "content_key");
  // Deterministic: the same bytes give the same verdict and the same canonical bytes.
  ValidatedRecord again = validate_record(raw, origin, options, raw.size());
  FUZZ_CHECK(kTarget, again.sample.status == s.status && again.sample.reason == s.reason &&
                          again.canonical == v.canonical && again.sample.message == s.message,
             "validation is not deterministic");
  // The simdjson reader gives exactly what the nlohmann reference gives.
  ValidatedRecord reference = validate_record_reference(raw, origin, options, raw.size());
  FUZZ_CHECK(kTarget, reference.sample.status == s.status && reference.sample.reason == s.reason &&
                          reference.canonical == v.canonical && reference.sample.message == s.message &&
                          reference.sample.id == s.id && reference.sample.image == s.image &&
                          reference.sample.subset == s.subset && reference.sample.turns.size() == s.turns.size() &&
                          reference.has_image == v.has_image,
             "the fast reader differs from the nlohmann reference");
  for (std::size_t t = 0; t < s.turns.size() && t < reference.sample.turns.size(); ++t)
    FUZZ_CHECK(kTarget, reference.sample.turns[t].question == s.turns[t].question &&
                            reference.sample.turns[t].answer == s.turns[t].answer,
               "the fast reader's turns differ from the nlohmann reference");
  // The index pass's mode (no raw text, no turn text) keeps the verdict, the key and the counts.
  ValidatedRecord lean = validate_record(raw, origin, options, raw.size(), ValidationPass{nullptr, false, false});
  FUZZ_CHECK(kTarget, lean.sample.status == s.status && lean.sample.reason == s.reason &&
                          lean.canonical == v.canonical && lean.sample.message == s.message &&
                          lean.counts.turns == reference.counts.turns &&
                          lean.counts.text_bytes == reference.counts.text_bytes &&
                          lean.counts.question_bytes == reference.counts.question_bytes && lean.sample.raw.empty(),
             "the index pass's mode differs from a full validation");
  // printable_text always gives UTF-8 without NUL.
  const std::string printable = printable_text(std::string(raw));
  FUZZ_CHECK(kTarget, utf8(printable) && printable.find('\0') == std::string::npos,
             "printable_text");
}

// The pool file indexed in 2 and 3 parts and merged gives the one-pass index byte for byte
// (`one_pass`, when `indexed`), or the one-pass error.
void check_parts(const std::string& path, const IndexOptions& options, bool indexed,
                 const std::vector<std::uint8_t>& one_pass, const std::string& error) {
  for (int n : {2, 3}) {
    std::vector<std::vector<std::uint8_t>> parts;
    for (int p = 0; p < n; ++p) parts.push_back(index_pool_part({{path, ""}}, options, p, n));
    PoolIndex merged;
    std::string merge_error;
    const bool ok = expect_clean_errors(kTarget, [&] { merged = merge_pool_parts({{path, ""}}, options, parts); },
                                        &merge_error);
    FUZZ_CHECK(kTarget, ok == indexed, std::to_string(n) + " parts: " + (ok ? "indexed" : merge_error) +
                                           "; one pass: " + (indexed ? "indexed" : error));
    if (ok) FUZZ_CHECK(kTarget, serialize_index(merged) == one_pass, std::to_string(n) + " parts: another index");
    else FUZZ_CHECK(kTarget, merge_error == error, std::to_string(n) + " parts: " + merge_error + " | one pass: " + error);
  }
}

// When nlohmann reads the pool file (`file`, its bytes) as one JSON array, the index has one
// record per element, each entry's bytes being that element (the same value, in order).
void check_array_elements(std::string_view file, bool indexed, const PoolIndex& index) {
  std::string_view text = file;
  if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // a byte-order mark
  const std::size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos || text[first] != '[') return;
  const nlohmann::json array = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!array.is_array()) return;
  FUZZ_CHECK(kTarget, indexed, "nlohmann reads the file as a JSON array, build_index refused it");
  FUZZ_CHECK(kTarget, array.size() == index.entries.size(),
             std::to_string(array.size()) + " elements, " + std::to_string(index.entries.size()) + " records");
  for (std::size_t i = 0; i < array.size(); ++i) {
    const IndexEntry& e = index.entries[i];
    if (e.reason == Reason::record_too_large) continue;  // its bytes are not kept
    const nlohmann::json element = nlohmann::json::parse(file.substr(e.offset, e.length), nullptr, false);
    FUZZ_CHECK(kTarget, element == array[i], "record " + std::to_string(i) + " is not the array's element");
  }
}

void check_pool_file(const std::uint8_t* data, std::size_t size) {
  const auto path = (align2::fuzz::scratch_dir() / "pool.jsonl").string();
  align2::fuzz::write_bytes(path, data, size);
  IndexOptions options;
  options.validation.subset_field = "type";
  options.validation.max_record_bytes = 4096;  // small enough that fuzzed records reach the bound
  PoolIndex index;
  std::string one_pass_error;
  const bool indexed = expect_clean_errors(kTarget, [&] { index = build_index({{path, ""}}, options); }, &one_pass_error);
  check_parts(path, options, indexed, indexed ? serialize_index(index) : std::vector<std::uint8_t>(), one_pass_error);
  check_array_elements(std::string_view(reinterpret_cast<const char*>(data), size), indexed, index);
  if (!indexed) return;
  FUZZ_CHECK(kTarget, index.fingerprint.size() == 64, "fingerprint");

  CorpusReader reader(index);
  const std::uint64_t n = index.entries.size();
  std::vector<Sample> samples;
  expect_clean_errors(kTarget, [&] { samples = reader.read(0, n); });
  FUZZ_CHECK(kTarget, samples.size() == n, "reader gave " + std::to_string(samples.size()) + " of " + std::to_string(n));
  for (std::uint64_t i = 0; i < n; ++i) {
    const IndexEntry& e = index.entries[i];
    const Sample& s = samples[i];
    FUZZ_CHECK(kTarget, s.status == e.status && s.reason == e.reason,
               "record " + std::to_string(i) + ": reader " + status_name(s.status) + "/" + reason_name(s.reason) +
                   ", index " + status_name(e.status) + "/" + reason_name(e.reason));
    FUZZ_CHECK(kTarget, s.key == index.key(i), "record " + std::to_string(i) + ": key differs");
    FUZZ_CHECK(kTarget, e.offset + e.length <= size, "entry past the end of the file");
  }

  // The byte form round-trips.
  const std::vector<std::uint8_t> bytes = serialize_index(index);
  PoolIndex back = deserialize_index(bytes);
  FUZZ_CHECK(kTarget, back.entries.size() == n && back.fingerprint == index.fingerprint &&
                          serialize_index(back) == bytes,
             "serialize_index / deserialize_index round trip");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  check_validation(raw);
  check_pool_file(data, size);
  // deserialize_index on arbitrary bytes: a clean refusal or an index.
  expect_clean_errors(kTarget, [&] { deserialize_index(std::vector<std::uint8_t>(data, data + size)); });
  return 0;
}
