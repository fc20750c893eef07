// A pool for end-to-end tests: the real LLaVA records of ../shared (two files as two
// subsets, the 90 typed GPT-4 records with their `type` field) plus a JSONL file of
// malformed and duplicate records, and the config that curates it.
#pragma once

#include <string>

#include "core/job_config.h"
#include "test/test_support.h"

namespace align2::test {

inline std::string write_bad_records(const std::string& dir) {
  std::string path = dir + "/bad.jsonl";
  std::string dup = read_file(shared_path("data/llava/coco2014_val_gpt4_qa_30x3.jsonl"));
  dup = dup.substr(0, dup.find('\n'));  // an exact copy of a real record: a duplicate
  write_file(path,
             "{\"id\": \"broken\", \"conversations\": [\n"
             "[1, 2]\n" +
                 dup +
                 "\n"
                 "{\"id\": \"x\", \"conversations\": [{\"from\": \"gpt\", \"value\": \"a\"}, {\"from\": \"human\", \"value\": \"q\"}]}\n"
                 "{\"id\": \"y\", \"image\": \"../../etc/passwd\", \"conversations\": [{\"from\": \"human\", \"value\": \"<image>q\"}, {\"from\": \"gpt\", \"value\": \"a\"}]}\n"
                 "{\"id\": \"latin1\", \"conversations\": [{\"from\": \"human\", \"value\": \"caf\xe9?\"}, {\"from\": \"gpt\", \"value\": \"a\"}]}\n" +
                 std::string("{\"id\": \"nul\0\"}\n", 14));
  return path;
}

// `write_pool`: write dir/bad.jsonl (false when another rank already did).
inline JobConfig pipeline_config(const std::string& dir, const std::string& output_dir, std::uint64_t batch_size,
                                 bool write_pool = true) {
  std::string bad = write_pool ? write_bad_records(dir) : dir + "/bad.jsonl";
  nlohmann::json j = {
      {"pools",
       {shared_path("data/llava/llava_instruct_60.json"), shared_path("data/llava/llava_instruct_40b.json"),
        shared_path("data/llava/coco2014_val_gpt4_qa_30x3.jsonl"), bad}},
      {"subsets", {{"llava_instruct_60.json", "conversation"}, {"llava_instruct_40b.json", "llava_b"}}},
      {"subset_field", "type"},
      {"alpha", 0.5},
      {"beta", 0.5},
      {"output_dir", output_dir},
      {"batch_size", batch_size}};
  return parse_job_config(j, dir, {}, "test config");
}

// summary.json without its "timings" key (the only part that may differ between runs).
inline std::string summary_without_timings(const std::string& path) {
  nlohmann::json j = nlohmann::json::parse(read_file(path));
  j.erase("timings");
  return j.dump(2);
}

}  // namespace align2::test
