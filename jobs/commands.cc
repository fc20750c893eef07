// The table of subcommands: names, options and help texts.
#include "jobs/cli.h"

namespace align2::cli {

int run_inspect(const Args&);
int run_merge(const Args&);

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"inspect", "[--image-root DIR] [--json] [options] POOL...",
       "count records per subset and status, and show what is wrong with the invalid ones",
       "Reads LLaVA pool files (JSON arrays or JSONL, told apart by their first byte) in one\n"
       "streaming pass and reports: records per subset and per status (valid, invalid,\n"
       "missing_image, duplicate), reason codes, a histogram of question-answer pairs per\n"
       "record, text lengths, the first invalid records with their reasons, and missing images.\n"
       "A JSON array with a syntax error is refused as a whole with its byte offset, line and\n"
       "column (exit 1); in JSONL a bad line is one invalid record.",
       {{"image-root", "DIR", "check that every record's image exists under DIR (status missing_image)"},
        {"json", "", "print one JSON object: records, valid, by_status, by_subset, turns, ..."},
        {"subset-field", "NAME", "take each record's subset from its field NAME (e.g. type)"},
        {"subset", "FILE=SUBSET", "records of pool file FILE belong to SUBSET", true},
        {"max-examples", "N", "invalid records and missing images listed (default 20)"},
        {"max-record-bytes", "N", "records longer than N bytes are invalid (default 16777216)"}},
       run_inspect},
      {"merge", "--output-dir DIR [SHARD...]",
       "merge stage shards into curated.json, scores.h5 and summary.json",
       "Reads the per-rank HDF5 shards of a run (default: every shard under DIR/shards),\n"
       "checks that every input record appears exactly once and that each stage holds exactly\n"
       "the records the stage before kept, orders the kept records globally (score descending,\n"
       "then key), and writes DIR/curated.json (LLaVA JSON, records verbatim), DIR/scores.h5\n"
       "(every input record with all columns) and DIR/summary.json.",
       {{"output-dir", "DIR", "where the outputs go (required)"}},
       run_merge},
  };
  return table;
}

}  // namespace align2::cli
