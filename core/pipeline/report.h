// report.html: a human-readable report of a curation run, written beside summary.json
// and scores.h5. One self-contained HTML file (inline CSS and SVG, no scripts, no
// external resources) that prints well: run facts, counts, score histograms with the
// selection thresholds, per-rank busy time, the rewrite stage's outcome (counts, fallback
// reasons, per subset, before/after and fallback examples), and a few examples. See
// docs/report.md.
//
// Deterministic: the same summary.json and scores.h5 give a byte-identical report (fixed
// number formats, no clock).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/store/shard_store.h"

namespace align2 {

// Reads <output_dir>/summary.json and <output_dir>/scores.h5 and writes <output_dir>/report.html
// atomically. scores.h5 is streamed in blocks of rows, twice (counts, score ranges and example
// candidates; then histogram bins), without the record column; record texts are read only for
// the examples shown. Memory does not grow with the number of records (only with the number of
// subsets, statuses and reasons). Returns the report's path. Throws std::runtime_error naming the file when
// summary.json is missing, not JSON or not a run summary, when scores.h5 cannot be read,
// or when the two disagree on the number of input records.
std::string write_report(const std::string& output_dir);

// The rows (positions in `rows`) whose record text the report shows: per subset the top
// and bottom examples by final score, and the rewrite stage's before/after examples (the
// first rows in curated.json order with a turn whose rewrite was kept). The rewrite
// fallback examples show no record text and are not among them. Sorted, unique.
std::vector<std::uint64_t> report_example_rows(const std::vector<ShardRow>& rows);

// The report as a string. `summary` is summary.json's object; `meta` the scores.h5
// attributes (for align2_version; may be default); `rows` one per input record, in any
// order. Only the rows named by report_example_rows need their `record` text: examples
// without it are shown without question and answer. Missing summary keys are shown as
// absent, never thrown on.
std::string render_report(const nlohmann::json& summary, const ShardMeta& meta, const std::vector<ShardRow>& rows);

}  // namespace align2
