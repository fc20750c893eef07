// The pool index: one streaming pass over the pool files that finds every record's
// byte range, validates it, gives it a stable key, marks duplicates and estimates its
// cost. The ranks build it in parts (index_pool_part, merge_pool_parts below) or one
// process alone (build_index); every rank receives it (serialize/deserialize) and reads
// only its own record ranges (corpus_reader.h). The whole file never sits in memory:
// files are read in blocks and one record at a time is parsed.
//
// File formats, told apart by the first non-blank byte: '[' = a JSON array of records
// (LLaVA's .json), '{' = JSONL, one record per line (blank lines skipped). A syntax
// error in a JSON array cannot be resynchronised: the file fails as a whole
// (PoolFileError with byte offset, line and column). In JSONL a bad line is one
// invalid record (Reason::not_json) and the scan goes on.
//
// Keys: 32 hex chars of SHA-256 over the record's content without its id (keys
// sorted, compact JSON), or over its bytes when it does not parse. A record whose
// content repeats an earlier record gets Status::duplicate and the key of its
// content with "#<n>" appended before hashing (n = 1, 2, ... per repeat), so that
// every record has a unique key that depends only on the pool's content and order.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/data/record_scanner.h"
#include "core/data/record_validation.h"
#include "core/data/sample.h"

namespace align2 {

struct PoolFile {
  std::string path;
  std::string subset;  // subset for every record of this file ("" = from the record field, else "all")
};

struct IndexEntry {
  std::uint64_t offset = 0;         // byte offset of the record's first byte in its file
  std::uint64_t length = 0;         // record length in bytes
  std::uint64_t line = 0;           // 1-based line of the record's first byte
  std::uint64_t index_in_file = 0;  // 0-based position within its file
  std::uint64_t cost = 0;           // estimated tokens (text bytes / 4 + image tokens); 1 for invalid records
  std::uint64_t question_bytes = 0; // bytes of all its questions (the question reward model's text)
  std::uint32_t turns = 0;          // (question, answer) turns
  std::uint64_t duplicate_of = 0;   // pool index of the first occurrence when status == duplicate
  std::uint64_t repeat = 0;         // n when the content repeats an earlier record for the n-th time, else 0
  std::uint32_t file = 0;           // index into PoolIndex::files
  std::uint32_t subset = 0;         // index into PoolIndex::subsets
  Status status = Status::valid;
  Reason reason = Reason::none;
  bool has_image = false;
  std::uint8_t key[16] = {};        // binary form of the 32-hex-char key
};

struct PoolIndex {
  std::vector<PoolFile> files;
  std::vector<std::string> subsets;  // names, in order of first appearance
  std::vector<IndexEntry> entries;   // one per record, in pool order (files in the order given)
  ValidationOptions options;         // what validation used (image root, subset field, bound)
  std::string fingerprint;           // 64 hex chars over files' subsets and every entry's key/status

  std::string key(std::uint64_t i) const;  // 32 hex chars
};

// Where build_index spent its time (seconds of one thread), for bench/index_bench.
struct IndexProfile {
  double total = 0;       // the whole pass
  double validate = 0;    // validate_record: UTF-8, JSON parse, rules, canonical form
  double hash = 0;        // SHA-256 keys (content_key / record_key)
  double duplicates = 0;  // the content-key table
  // The rest (total less the above): reading, splitting records, entries, the fingerprint.
  double scan() const { return total - validate - hash - duplicates; }
};

struct IndexOptions {
  ValidationOptions validation;
  std::uint64_t image_cost = 576;  // tokens an image adds (CLIP ViT-L/14-336: 24x24 patches)
  // Called once per record, in pool order, after validation and duplicate marking. The Sample
  // has no raw text (the index pass does not keep it: CorpusReader gives it).
  std::function<void(const Sample&, const IndexEntry&)> on_record;
  IndexProfile* profile = nullptr;  // filled when set
};

// One pass over all files. Throws PoolFileError for an unreadable file.
PoolIndex build_index(const std::vector<PoolFile>& files, const IndexOptions& options);

// A parallel index. Part p of n (index_pool_part, on rank p) indexes the records that start in
// the p-th n-th of the pool's bytes (the files end to end): a JSONL piece begins at a line start,
// a JSON array's piece at a record start found by a structural scan (a guess, confirmed when the
// piece before it stops exactly there). merge_pool_parts (on every rank) joins the parts in order
// and decides what needs the whole pool (repeats and their keys, subset ids, line numbers), and
// gives the index build_index gives, byte for byte, for any number of parts. A file whose pieces
// do not join up (a wrong guess) or that no part could size is indexed by the merge itself, in
// one pass. Pool errors reach the merge inside the parts: it throws what build_index would.
// on_record and profile are not used. The part's bytes are for Comm::allgatherv.
std::vector<std::uint8_t> index_pool_part(const std::vector<PoolFile>& files, const IndexOptions& options, int part,
                                          int parts);
// With `deferred_repeats`, the merge leaves the keys of the repeats it would read again from
// disk (their pool indices, in pool order, go there) and the fingerprint: the ranks then share
// those reads (set_repeat_keys) and seal the index (seal_index).
PoolIndex merge_pool_parts(const std::vector<PoolFile>& files, const IndexOptions& options,
                           std::vector<std::vector<std::uint8_t>> parts,
                           std::vector<std::uint64_t>* deferred_repeats = nullptr);
// Sets the keys of the repeats `which` (pool indices of entries with repeat > 0; a logic_error
// otherwise), each record read again from its file. Throws PoolFileError when one cannot be.
void set_repeat_keys(PoolIndex& index, const std::vector<std::uint64_t>& which);
// Computes the index's fingerprint once every key is final.
void seal_index(PoolIndex& index);

// Portable byte form (little-endian, versioned), for messages and tests.
std::vector<std::uint8_t> serialize_index(const PoolIndex& index);
// Throws std::runtime_error on a malformed or wrong-version buffer.
PoolIndex deserialize_index(const std::vector<std::uint8_t>& bytes);

// The key of a record from its canonical bytes and its repeat count (see above): 32 hex chars,
// or its 16 bytes.
std::string record_key(std::string_view canonical, std::uint64_t repeat);
void record_key(std::string_view canonical, std::uint64_t repeat, std::uint8_t key[16]);

}  // namespace align2
