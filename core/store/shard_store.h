// HDF5 shard files: one per rank and stage (<output_dir>/shards/<stage>/rank-00003.h5),
// and the merged scores.h5, which uses the same schema. The schema is documented in
// docs/hdf5-schema.md; readers refuse files whose schema_version they do not know.
// This header is HDF5-free: the HDF5 C API stays in shard_store.cc.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/data/sample.h"

namespace align2 {


constexpr int kShardSchemaVersion = 2;  // 2: per-turn rewrite / review columns

// File-level attributes.
struct ShardMeta {
  int schema_version = kShardSchemaVersion;
  std::string align2_version;       // e.g. "0.1.0+abc1234"
  std::string config_fingerprint;   // hex digest of the job config that produced the file
  std::string input_fingerprint;    // hex digest of the pool (files, sizes, index)
  std::string stage;                // "select_questions", "select_answers", "rewrite", "merged"
  int rank = 0;                     // writer's rank (0 for merged files)
  int world_size = 1;               // ranks of the run that wrote it
  std::uint64_t input_records = 0;  // records in the whole pool, all ranks together
  std::string stage_summary_json;   // stage facts identical on every rank (counts, thresholds), JSON
  std::string timings_json;         // this rank's timings for the stage, JSON
};

// One input record as a stage saw it. Numeric columns hold NaN / -1 when they do not apply.
struct ShardRow {
  std::uint64_t index = 0;   // record's position in the pool, 0-based across all pool files
  std::string key;           // stable content key, 32 lowercase hex chars
  std::string id;            // the record's own id, as text
  std::string subset;
  Status status = Status::valid;  // stored by name: "valid", "invalid", "missing_image", "duplicate"
  Reason reason = Reason::none;   // stored by name (core/data/sample.h); "" for Reason::none
  std::string message;       // human-readable reason naming file, record index and id; "" if valid
  std::string image;         // relative image path; "" for text-only records
  std::string record;        // the input record's JSON text, verbatim (UTF-8)

  double question_score = std::numeric_limits<double>::quiet_NaN();  // f(I,Q)
  std::vector<float> answer_scores;  // g(I,Q,A), one per (question, answer) turn; empty if unscored
  double answer_score = std::numeric_limits<double>::quiet_NaN();    // mean of answer_scores
  std::int8_t selected_questions = -1;  // stage 1 decision: 1 kept, 0 dropped, -1 not considered
  std::int8_t selected_answers = -1;    // stage 2 decision, same coding
  std::int8_t kept = -1;                // final decision of the run, same coding
  std::int8_t truncated = -1;           // 1 when a reward-model input was cut to max_length, 0 when not, -1 unscored
  std::int64_t global_rank = -1;        // 0-based position among kept records in curated.json; -1 if not kept

  // Rewrite stage, one entry per turn each (all the same length; empty until that stage runs):
  std::vector<std::string> rewritten_questions;  // the parsed rewrite Q' ("" when it fell back)
  std::vector<std::string> rewritten_answers;    // the parsed rewrite A' ("" when it fell back)
  std::vector<std::string> rewrite_replies;      // the inner LLM's reply as generated
  std::vector<std::string> rewrite_reasons;      // why the rewrite fell back ("" when it was reviewed)
  std::vector<std::int8_t> rewrite_kept;         // 1: curated.json holds the rewrite, 0: the original
  std::vector<float> review_p;                   // P(rewrite better), mean of both orders; NaN if not reviewed
  std::vector<float> review_p_order1;            // P(rewrite better) shown as version B
  std::vector<float> review_p_order2;            // P(rewrite better) shown as version A
};

// The row of a sample with its identity and status columns filled (id, subset, image,
// message and the record text made storable by printable_text); score columns unset.
ShardRow sample_row(const Sample& sample);

struct ShardData {
  ShardMeta meta;
  std::vector<ShardRow> rows;
};

struct ShardReadOptions {
  bool records = true;  // false: leave ShardRow::record empty (merge reads it later, only for kept rows)
};

// `expected_rows` of a ShardWriter that does not know how many rows it will get.
constexpr std::uint64_t kUnknownRowCount = std::numeric_limits<std::uint64_t>::max();

// RAII owner of one shard file being written: rows are appended in blocks, attributes and
// the rename into place happen in commit(). Destroyed without commit: the temporary is removed.
// Memory holds one block at a time (plus HDF5's fixed-size caches), never the whole file.
//
//   ShardWriter out(path, expected);           // creates "<path>.tmp-<pid>" (parent folders too)
//   for (...) out.append(block);               // rows in file order, any number of blocks
//   out.commit(meta);                          // attributes, close, fsync, rename over path
//
// `expected_rows` sets only the chunk length of the datasets (min(expected_rows, 4096), at
// least 1; 4096 when unknown): pass the row count when known, so that small files stay small.
// The file's content does not depend on it. The same rows appended in the same blocks with the
// same `expected_rows` give byte-identical files. Errors: std::runtime_error naming `path`
// (the file system or HDF5 failed; the writer is then unusable and commit throws too);
// std::invalid_argument, before anything of the block is written, for the caller bugs that
// write_shard refuses (the writer stays usable; commit checks the meta alike); std::logic_error
// for append or commit after commit. Not thread-safe; one writer per path at a time. A
// moved-from writer may only be destroyed or assigned to.
class ShardWriter {
 public:
  explicit ShardWriter(const std::string& path, std::uint64_t expected_rows = kUnknownRowCount);
  ShardWriter(ShardWriter&&) noexcept;
  ShardWriter& operator=(ShardWriter&&) noexcept;
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;
  ~ShardWriter();

  void append(const std::vector<ShardRow>& rows);  // any number of times, rows in file order
  void commit(const ShardMeta& meta);              // once; afterwards the writer only reports
  std::uint64_t rows_written() const;
  const std::string& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Writes `rows` to `path` atomically: into "<path>.tmp-<pid>", then renamed over `path`.
// Creates parent folders. Throws std::runtime_error naming the path on any failure;
// on failure no file exists at `path` that was not there before.
// Throws std::invalid_argument, before touching the disk, for caller bugs: a row whose
// rewritten_questions and rewritten_answers differ in length, a string holding a NUL
// byte (HDF5 strings are NUL-terminated), or meta.schema_version != kShardSchemaVersion.
// Equal inputs give byte-identical files. It is ShardWriter(path, rows.size()), one append
// and commit.
void write_shard(const std::string& path, const ShardMeta& meta, const std::vector<ShardRow>& rows);

// Reads a whole shard. Throws std::runtime_error naming the path when the file is
// not an align2 shard, its schema_version is unknown, or a dataset is missing or
// inconsistent (lengths, offsets).
ShardData read_shard(const std::string& path, const ShardReadOptions& options = {});

// Reads only the file attributes (with the same `format` / `schema_version` checks).
ShardMeta read_shard_meta(const std::string& path);

// RAII reader of one shard for reading it in row ranges (blocks) without loading the whole
// file. The constructor does read_shard's checks on the attributes and on every dataset's
// type and length; read_rows checks the offsets it uses (start at 0, never decrease within
// the range, stay within the values, end at the values' length). Errors: std::runtime_error
// naming the path, with read_shard's messages.
class ShardReader {
 public:
  explicit ShardReader(const std::string& path);
  ShardReader(ShardReader&&) noexcept;
  ShardReader& operator=(ShardReader&&) noexcept;
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;
  ~ShardReader();

  const ShardMeta& meta() const;
  std::uint64_t rows() const;  // N
  const std::string& path() const;
  // Rows [begin, end) of the file, 0 <= begin <= end <= rows().
  std::vector<ShardRow> read_rows(std::uint64_t begin, std::uint64_t end, const ShardReadOptions& options = {}) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The shard's row count N (with ShardReader's checks).
std::uint64_t shard_row_count(const std::string& path);

// Rows [begin, end) of the shard at `path` (ShardReader(path).read_rows(begin, end, options)).
std::vector<ShardRow> read_shard_rows(const std::string& path, std::uint64_t begin, std::uint64_t end,
                                      const ShardReadOptions& options = {});

// Reads the `record` column for the given row positions (0-based rows of the file,
// any order, repeats allowed); returns them in the order asked. Checks `format` and
// `schema_version` like read_shard; a row past the end throws std::runtime_error.
std::vector<std::string> read_shard_records(const std::string& path,
                                            const std::vector<std::uint64_t>& rows);

}  // namespace align2
