// `align2 inspect`: what a pool holds, one streaming pass (the pool index pass).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/data/corpus_index.h"

namespace align2 {

struct InspectOptions {
  ValidationOptions validation;
  std::size_t max_examples = 20;  // invalid records and missing images listed
};

// The report as JSON:
// {"records": N, "valid": N, "by_status": {"valid": n, ...}, "by_reason": {...},
//  "by_subset": {"<subset>": records}, "valid_by_subset": {...},
//  "turns": {"<question-answer pairs>": valid records},
//  "text_bytes": {"question": {min, median, mean, p95, max}, "answer": {...}},
//  "invalid_examples": [{"index", "file", "id", "status", "reason", "message"}...],
//  "missing_images": [{"index", "id", "image"}...], "files": [{"path", "format", "records"}...],
//  "fingerprint": "..."}
// Throws PoolFileError for a JSON array file that cannot be read.
nlohmann::json inspect_pool(const std::vector<PoolFile>& files, const InspectOptions& options);

// The same report as text for a person.
std::string format_inspect_report(const nlohmann::json& report);

}  // namespace align2
