// The resumable state of a run inside its output folder:
//
//   <output_dir>/run.json                        what the folder is a run of (fingerprints)
//   <output_dir>/work/<stage>/<begin>-<end>.h5   committed chunks: the rows of stage items
//                                                [begin, end), one HDF5 shard file each
//
// A stage's items are the pool indices it scores, in stage order (stage 1: every record;
// stage 2: the survivors of stage 1, ascending). Each rank scores a contiguous range of
// item positions, cut into chunks at the multiples of `chunk_records` (so chunks never
// depend on which rank made them, and most survive a change of rank count). A chunk is
// written atomically once it is scored; a rerun reuses every chunk whose fingerprints and
// rows match and recomputes the rest. Chunk rows leave `record` empty: the text is read
// from the pool again when the rank's stage shard is assembled.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/data/corpus_index.h"
#include "core/store/shard_store.h"

namespace align2 {

// [begin, end) in item positions of a stage.
struct ChunkRange {
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

// Cuts [begin, end) at the multiples of `chunk_records` (> 0).
std::vector<ChunkRange> chunk_ranges(std::uint64_t begin, std::uint64_t end, std::uint64_t chunk_records);

// <output_dir>/work/<stage>/<begin>-<end>.h5 with 12-digit zero-padded positions.
std::string chunk_path(const std::string& output_dir, const std::string& stage, ChunkRange range);

// What identifies a run; a folder holding another run's state is refused unless forced.
struct RunIdentity {
  std::string config_fingerprint;  // job config (result-changing keys) + models
  std::string input_fingerprint;   // the pool index
};

// Called by one process (rank 0) before any rank writes. When <output_dir>/run.json
// exists and names another run: with `force`, removes run.json, work/, shards/ and the
// outputs (curated.json, scores.h5, summary.json, report.html) and starts afresh;
// without, throws std::runtime_error saying what changed and that --force starts over.
// Removes stale temporary files ("*.tmp-<pid>") under work/ and shards/, and those of the
// outputs (curated.json, scores.h5, summary.json, report.html, run.json) in output_dir: a
// killed writer's leftovers. Writes run.json. Returns the number of committed chunk files
// found (0 for a fresh run).
std::uint64_t open_run(const std::string& output_dir, const RunIdentity& run, bool force);

// SHA-256 (64 hex chars) over every column of `rows`, in order: a chunk file carries it in
// its stage_summary_json ({"begin", "end", "rows_sha256"}), so that damage that HDF5's own
// checks cannot see (a byte of a variable-length string) is found on resume.
std::string chunk_rows_digest(const std::vector<ShardRow>& rows);

// Writes a chunk file atomically (write_shard) with the rows checksum added to
// meta.stage_summary_json (a JSON object, e.g. {"begin", "end"}), then "<path>.sha256", the
// SHA-256 of the file's bytes, which read_chunk checks before HDF5 opens the file.
void write_chunk(const std::string& path, const ShardMeta& meta, const std::vector<ShardRow>& rows);

// Reads the chunk file of `range` when it exists, matches its "<path>.sha256" and belongs to this run: stage,
// fingerprints, the chunk's range and rows checksum in its attributes, one row per item with the
// expected pool index and key (`items[p]` is the pool index at position p). Returns false when there is no file; when the file exists but is
// unreadable or does not match, returns false and sets *problem, a sentence naming the
// file (the caller recomputes the chunk and says so).
bool read_chunk(const std::string& path, const ShardMeta& expected, ChunkRange range,
                const std::vector<std::uint64_t>& items, const PoolIndex& index, std::vector<ShardRow>* rows, std::string* problem);

// Claims the chunk `range` of `stage` for this process within the attempt `attempt` (a name
// all ranks of one attempt share): atomically creates
// <output_dir>/work/<stage>/claims-<attempt>/<begin>-<end> (O_CREAT | O_EXCL, which shared
// filesystems honour). True for exactly one caller per chunk and attempt. open_run removes
// the claims of earlier attempts. Throws std::runtime_error naming the path on I/O errors.
bool claim_chunk(const std::string& output_dir, const std::string& stage, const std::string& attempt,
                 ChunkRange range);

// Items covered by chunk files of `stage` present under <output_dir>/work/<stage>/ whose
// names are in `wanted` (progress: what every rank has committed so far).
std::uint64_t committed_items(const std::string& output_dir, const std::string& stage,
                              const std::vector<ChunkRange>& wanted);

}  // namespace align2
