// What identifies a model folder for fingerprints (runs, resume, the score cache): SHA-256 over
// its top-level regular files, in name order. Files up to 64 MiB (configs, tokenizers, score
// heads, small models) are hashed whole; larger ones (weights) by name, size, their first MiB
// (the safetensors header) and 1024 blocks of 4 KiB spread evenly over the rest, so that a
// 14 GB checkpoint costs a few MiB of reads. Retraining, merging a LoRA or converting dtypes
// changes (nearly) every block and is seen; an edit of a few bytes deep inside a large weight
// file can go unseen (docs/reliability.md).
#pragma once

#include <string>

namespace align2 {

// 32 lowercase hex chars. Throws std::runtime_error naming the file when one cannot be read.
std::string model_folder_fingerprint(const std::string& dir);

}  // namespace align2
