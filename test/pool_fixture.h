// Pool files with every shape the index handles, for the tests of the parallel index: JSONL
// (byte-order mark, blank and whitespace lines, CRLF lines, lines that are not JSON, repeats,
// a record over the size bound, no final newline), a pretty-printed JSON array whose strings
// hold "}, {" (which the guess of a record start can mistake for a boundary), repeats across
// files, a scalar element, a pretty-printed JSON array without them, a one-line JSON array, an
// empty file and an empty array.
#pragma once

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/data/corpus_index.h"
#include "test/test_support.h"

namespace align2::test {

// The bundled records (examples/demo), each with a distinct id.
inline std::vector<nlohmann::json> demo_records() {
  std::ifstream in(std::string(ALIGN2_SOURCE_DIR) + "/examples/demo/data/llava_instruct_60.json");
  std::vector<nlohmann::json> out;
  for (const nlohmann::json& r : nlohmann::json::parse(in)) out.push_back(r);
  return out;
}

// The mixed pool's files in `dir`, in pool order (c.json mapped to subset "mapped").
inline std::vector<PoolFile> mixed_pool_files(const std::string& dir) {
  return {{dir + "/a.jsonl", ""}, {dir + "/b.json", ""}, {dir + "/f.json", ""}, {dir + "/c.json", "mapped"},
          {dir + "/d.jsonl", ""}, {dir + "/e.json", ""}};
}

// Writes the mixed pool into `dir`; its files in pool order. Index it with
// mixed_pool_options() (max_record_bytes = kMixedPoolBound, subset_field "type").
constexpr std::uint64_t kMixedPoolBound = 6000;
inline std::vector<PoolFile> write_mixed_pool(const std::string& dir) {
  const std::vector<nlohmann::json> records = demo_records();
  std::string jsonl = "\xEF\xBB\xBF\n";
  for (std::size_t i = 0; i < records.size(); ++i) {
    nlohmann::json r = records[i];
    if (i % 5 == 0) r["type"] = i % 10 == 0 ? "detail" : "conv";
    std::string line = r.dump();
    if (i % 9 == 4) line += "\r";
    jsonl += line + "\n";
    if (i % 11 == 3) jsonl += "  \t \n";
    if (i % 13 == 6) jsonl += "{broken line " + std::to_string(i) + "\n";
    if (i % 7 == 2) jsonl += records[i / 2].dump() + "\n";  // a repeat of an earlier record
    if (i == 30) {
      nlohmann::json big = records[i];
      big["conversations"][1]["value"] = std::string(kMixedPoolBound, 'x');
      jsonl += big.dump() + "\n";
    }
  }
  jsonl += "{broken line 9\n{broken line 9\n";  // a repeated invalid line
  jsonl += records[3].dump();                    // no final newline
  write_file(dir + "/a.jsonl", jsonl);

  nlohmann::json array = nlohmann::json::array();
  for (std::size_t i = 0; i < records.size(); ++i) {
    nlohmann::json r = records[(i * 7) % records.size()];
    r["id"] = fmt::format("b{}", i);
    r["note"] = fmt::format("see }}, {{\"id\": {}}} and }},{{ here", i);  // a false record boundary
    array.push_back(r);
    if (i == 17) array.push_back(42);
    if (i % 8 == 1) array.push_back(records[i]);  // repeats of file a's records
  }
  write_file(dir + "/b.json", array.dump(1));
  nlohmann::json plain = nlohmann::json::array();  // no false boundaries: the guesses hold
  for (std::size_t i = 0; i < records.size(); ++i) plain.push_back(records[(i * 11) % records.size()]);
  write_file(dir + "/f.json", plain.dump(2));
  nlohmann::json compact = nlohmann::json::array();
  for (std::size_t i = 0; i < 12; ++i) compact.push_back(records[(i * 5) % records.size()]);
  write_file(dir + "/c.json", compact.dump());
  write_file(dir + "/d.jsonl", "");
  write_file(dir + "/e.json", " [ ] \n");
  return mixed_pool_files(dir);
}

inline IndexOptions mixed_pool_options() {
  IndexOptions options;
  options.validation.subset_field = "type";
  options.validation.max_record_bytes = kMixedPoolBound;
  return options;
}

}  // namespace align2::test
