#include "core/data/corpus_reader.h"

#include <fmt/format.h>

namespace align2 {

CorpusReader::CorpusReader(const PoolIndex& index) : index_(index), files_(index.files.size()) {}

CorpusReader::~CorpusReader() = default;

PoolFileReader& CorpusReader::file(std::uint32_t f) {
  if (!files_[f]) files_[f] = std::make_unique<PoolFileReader>(index_.files[f].path);
  return *files_[f];
}

Sample CorpusReader::read_one(std::uint64_t i) {
  const IndexEntry& e = index_.entries[i];
  const PoolFile& pf = index_.files[e.file];
  const ValidationOptions& options = index_.options;
  std::string bytes;
  if (e.length <= options.max_record_bytes) bytes = file(e.file).read(e.offset, e.length, e.index_in_file);
  // Disk checks were made once by the index pass; only its failures are looked at again (for their message).
  ValidationOptions lexical = options;
  lexical.image_root.clear();
  RecordOrigin origin{pf.path, e.index_in_file, e.line, pf.subset};
  ValidatedRecord v = validate_record(bytes, origin, lexical, e.length);
  Sample s = std::move(v.sample);
  s.index = i;
  s.key = index_.key(i);
  // Facts the index pass found on disk or across the pool apply on top of the
  // lexical result: duplicates, missing images, images resolving outside the root.
  bool disk_fact = (e.reason == Reason::missing_image || e.reason == Reason::image_path_escapes) &&
                   s.status == Status::valid;
  bool pool_fact = e.status == Status::duplicate || disk_fact;
  Status lexical_status = pool_fact ? Status::valid : e.status;
  bool changed = s.status != lexical_status || (!pool_fact && s.reason != e.reason) ||
                 s.subset != index_.subsets[e.subset] || record_key(v.canonical, e.repeat) != s.key;
  if (changed)
    throw std::runtime_error(fmt::format("{}: record #{} (line {}) no longer matches the pool index: the file "
                                         "changed while the job ran; rerun the job", pf.path, e.index_in_file,
                                         e.line));
  if (e.status == Status::duplicate) {
    s.status = Status::duplicate;
    s.reason = Reason::duplicate;
    s.message = record_message(origin, s.id, fmt::format("same content as pool record {}", e.duplicate_of));
  } else if (disk_fact) {
    std::string detail;
    if (check_image_path(s.image, options.image_root, &detail) != e.reason)  // changed on disk since
      detail = missing_image_detail(s.image, options.image_root);
    s.status = e.status;
    s.reason = e.reason;
    s.message = record_message(origin, s.id, detail);
    if (s.status == Status::invalid) s.turns.clear();
  }
  return s;
}

std::vector<Sample> CorpusReader::read(std::uint64_t begin, std::uint64_t end) {
  std::vector<Sample> out;
  out.reserve(end - begin);
  for (std::uint64_t i = begin; i < end; ++i) out.push_back(read_one(i));
  return out;
}

}  // namespace align2
