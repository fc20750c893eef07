// A pool for end-to-end tests: the real LLaVA records of ../shared (two files as two
// subsets, the 90 typed GPT-4 records with their `type` field) plus a JSONL file of
// malformed and duplicate records, and the config that curates it.
#pragma once

#include <string>

#include <gtest/gtest.h>

#include "core/pipeline/job_config.h"
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

// What LLaVA's training (LazySupervisedDataset, preprocess_multimodal) needs of a curated
// record: "conversations" whose roles alternate human, gpt, starting with human, string
// values, and exactly one "<image>" (in a human turn) when the record has an image.
inline void expect_llava_training_form(const nlohmann::json& record) {
  const std::string where = record.dump().substr(0, 120);
  ASSERT_TRUE(record.is_object()) << where;
  ASSERT_TRUE(record.contains("conversations") && record["conversations"].is_array()) << where;
  const nlohmann::json& conv = record["conversations"];
  ASSERT_FALSE(conv.empty()) << where;
  EXPECT_EQ(conv.size() % 2, 0u) << where;
  std::size_t tags = 0;
  for (std::size_t t = 0; t < conv.size(); ++t) {
    EXPECT_EQ(conv[t].value("from", ""), t % 2 == 0 ? "human" : "gpt") << where;
    ASSERT_TRUE(conv[t].contains("value") && conv[t]["value"].is_string()) << where;
    const std::string v = conv[t]["value"].get<std::string>();
    for (std::size_t p = v.find("<image>"); p != std::string::npos; p = v.find("<image>", p + 1)) {
      ++tags;
      EXPECT_EQ(t % 2, 0u) << "an <image> tag in a gpt turn: " << where;
    }
  }
  const bool has_image = record.contains("image") && !record["image"].is_null();
  EXPECT_EQ(tags, has_image ? 1u : 0u) << where;
}

// summary.json without its "timings" key (the only part that may differ between runs).
inline std::string summary_without_timings(const std::string& path) {
  nlohmann::json j = nlohmann::json::parse(read_file(path));
  j.erase("timings");
  return j.dump(2);
}

}  // namespace align2::test
