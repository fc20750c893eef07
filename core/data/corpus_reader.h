// Reads records of the pool by index position, using the byte ranges of a PoolIndex:
// a rank reads only its own ranges. Each record is validated again (the same
// function as the index pass) and the index's pool-wide facts are applied (key,
// duplicate and missing-image status), so a Sample here equals the one the index
// pass saw. A file that changed since indexing is detected and refused.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/data/corpus_index.h"
#include "core/data/sample.h"

namespace align2 {

class CorpusReader {
 public:
  explicit CorpusReader(const PoolIndex& index);  // keeps a reference: `index` must outlive the reader
  ~CorpusReader();
  CorpusReader(const CorpusReader&) = delete;
  CorpusReader& operator=(const CorpusReader&) = delete;

  // Records [begin, end) of the pool, in order. Throws std::runtime_error (PoolFileError when
  // its bytes cannot be read) naming the file when it cannot be read or no longer matches the
  // index.
  std::vector<Sample> read(std::uint64_t begin, std::uint64_t end);
  Sample read_one(std::uint64_t i);

 private:
  PoolFileReader& file(std::uint32_t f);
  const PoolIndex& index_;
  std::vector<std::unique_ptr<PoolFileReader>> files_;  // opened lazily
};

}  // namespace align2
