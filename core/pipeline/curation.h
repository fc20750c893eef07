// The cascade over ranks: index (rank 0) → broadcast → stage 1 (question scores,
// gathered, top alpha per subset) → stage 2 (survivors re-sharded by cost, answer
// scores per turn, mean, top beta per subset) → per-rank HDF5 shards → merge on
// rank 0. Every rank calls run_curation with the same config; scores travel
// through the communicator so every rank computes the same thresholds. run_rewrite runs
// stage 3 alone over a whole pool (align2 rewrite) with the same machinery.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "core/data/corpus_index.h"
#include "core/pipeline/job_config.h"
#include "core/pipeline/merge.h"
#include "core/rewrite/rewriter.h"
#include "core/reward/scorer.h"
#include "distributed/comm.h"

namespace align2 {

struct CurationResult {
  MergeResult merged;        // filled on the merging rank (rank 0); empty elsewhere
  std::uint64_t input_records = 0;
  std::uint64_t stage1_kept = 0;
  std::uint64_t stage2_kept = 0;
  nlohmann::json rewrite;    // stages.rewrite of summary.json (null when stage 3 did not run)
};

// Thrown on every rank that saw a stop request (SIGTERM or SIGUSR1, e.g. Slurm's preemption
// warning) at its next chunk boundary: the chunks done so far are committed; rerunning the
// same command resumes.
struct Interrupted : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct CurationOptions {
  bool force = false;     // discard another run's state in output_dir instead of refusing (--force)
  bool progress = true;   // rank 0 shows per-stage progress on stderr (bar on a TTY, else lines)
};

// The pool's index on every rank of `comm`: each rank indexes its share of the pool's bytes
// (index_pool_part), every rank receives all parts and merges them (merge_pool_parts). Byte for
// byte build_index's index, for any number of ranks. Collective; a pool error, or any rank's
// failure to merge, is thrown on every rank (the lowest such rank's message).
PoolIndex share_index(Comm& comm, const PoolConfig& pool);
// The index options a job's pool section gives (what share_index indexes with).
IndexOptions index_options(const PoolConfig& pool);

// Collective: every rank of `comm` calls it. Work is committed in chunks under
// <output_dir>/work (core/store/work_dir.h): rerunning after a kill resumes; an output_dir that
// holds another run (config, model or pool changed) is refused unless options.force. Throws on bad input (a pool file that
// cannot be read) on every rank alike, or on I/O failure on the rank that saw it.
// With `rewriter`, stage 3 rewrites and reviews every turn of the curated samples
// (docs/rewrite.md); without, the run ends after stage 2.
CurationResult run_curation(Comm& comm, const JobConfig& config, Scorer& scorer,
                            const CurationOptions& options = {}, Rewriter* rewriter = nullptr);

// Stage 3 alone over every record of the config's pools (align2 rewrite): no reward models,
// no selection. The rewrite stage is the run's first and only stage: it holds every input
// record, in fixed groups of rewrite_batch consecutive records (the group's valid samples
// are one rewriter call; other records pass through with their status and no rewrite
// columns). The merge then keeps every valid record, in pool order: curated.json lists each
// with its kept rewrites applied, scores.h5 holds every input record, summary.json's
// stages.rewrite counts the valid records as attempted. Chunks, resume, the refusal of
// another run's folder (curate's included) and determinism (any rank count, any batch_size)
// are those of run_curation; stage1_kept and stage2_kept stay 0.
CurationResult run_rewrite(Comm& comm, const JobConfig& config, Rewriter& rewriter,
                           const CurationOptions& options = {});

}  // namespace align2
