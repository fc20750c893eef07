// The align2 binary as users run it: inspect --json on real LLaVA files and on a
// pool with one malformed record per rule; merge; help and usage errors.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/pipeline/merge.h"
#include "core/store/shard_store.h"
#include "test/test_support.h"
#include "core/store/output_layout.h"

namespace align2 {
namespace {

using nlohmann::json;
using test::run_command;

std::string bin() { return test::align2_bin(); }

TEST(Cli, InspectJsonOnRealLlavaFiles) {
  std::string a = test::shared_path("data/llava/llava_instruct_60.json");
  std::string b = test::shared_path("data/llava/llava_instruct_40b.json");
  auto r = run_command(bin() + " inspect --json " + a + " " + b);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json report = json::parse(r.out);
  // Expected values from a plain DOM parse of the same files.
  std::map<std::string, int> turns;
  int records = 0;
  for (const std::string& p : {a, b}) {
    std::ifstream in(p);
    for (const json& rec : json::parse(in)) {
      ++records;
      ++turns[std::to_string(rec["conversations"].size() / 2)];
    }
  }
  EXPECT_EQ(report["records"], records);
  EXPECT_EQ(report["valid"], records);
  EXPECT_EQ(report["by_status"], json({{"valid", records}}));
  EXPECT_EQ(report["by_subset"], json({{"all", records}}));
  EXPECT_EQ(report["turns"], json(turns));
}

TEST(Cli, InspectJsonSubsetsFromFieldAndFileMapping) {
  std::string typed = test::shared_path("data/llava/coco2014_val_gpt4_qa_30x3.jsonl");
  std::string conv = test::shared_path("data/llava/llava_instruct_60.json");
  auto r = run_command(bin() + " inspect --json --subset-field type --subset llava_instruct_60.json=conversation " +
                       typed + " " + conv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json report = json::parse(r.out);
  EXPECT_EQ(report["by_subset"], json({{"complex", 30}, {"conv", 30}, {"detail", 30}, {"conversation", 60}}));
  EXPECT_EQ(report["turns"]["1"], 90);
}

TEST(Cli, InspectJsonNamesEveryMalformedRecord) {
  std::string dir = test::scratch_dir("cli-inspect");
  test::write_file(dir + "/images/a.jpg", "x");
  std::string good = R"({"id": "ok", "image": "a.jpg", "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]})";
  std::vector<std::pair<std::string, std::string>> lines = {
      {good, "valid"},
      {"{oops", "not_json"},
      {"17", "not_object"},
      {R"({"conversations": []})", "missing_field"},
      {R"({"id": null, "conversations": []})", "wrong_type"},
      {R"({"id": "e", "conversations": []})", "empty_conversation"},
      {R"({"id": "r", "conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]})", "bad_roles"},
      {R"({"id": "t", "image": "a.jpg", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]})", "bad_image_tag"},
      {R"({"id": "abs", "image": "/a.jpg", "conversations": [{"from": "human", "value": "<image>q"}, {"from": "gpt", "value": "a"}]})", "image_path_absolute"},
      {R"({"id": "up", "image": "../a.jpg", "conversations": [{"from": "human", "value": "<image>q"}, {"from": "gpt", "value": "a"}]})", "image_path_escapes"},
      {R"({"id": "m", "image": "b.jpg", "conversations": [{"from": "human", "value": "<image>q"}, {"from": "gpt", "value": "a"}]})", "missing_image"},
      {"{\"id\": \"u\", \"conversations\": [{\"from\": \"human\", \"value\": \"\xe2\x82\"}, {\"from\": \"gpt\", \"value\": \"a\"}]}", "invalid_utf8"},
      {good, "duplicate"},
  };
  std::string pool;
  for (auto& [line, reason] : lines) pool += line + "\n";
  test::write_file(dir + "/pool.jsonl", pool);
  auto r = run_command(bin() + " inspect --json --image-root " + dir + "/images " + dir + "/pool.jsonl");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json report = json::parse(r.out);
  EXPECT_EQ(report["records"], lines.size());
  EXPECT_EQ(report["valid"], 1);
  EXPECT_EQ(report["by_status"], json({{"valid", 1}, {"invalid", 10}, {"missing_image", 1}, {"duplicate", 1}}));
  // Every malformed record is listed with its own reason, in order, naming its line.
  ASSERT_EQ(report["invalid_examples"].size(), 11u);
  std::size_t k = 0;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].second == "missing_image") {
      EXPECT_EQ(report["missing_images"][0]["index"], i);
      continue;
    }
    const json& e = report["invalid_examples"][k++];
    EXPECT_EQ(e["index"], i);
    EXPECT_EQ(e["reason"], lines[i].second) << e.dump();
    EXPECT_NE(e["message"].get<std::string>().find("line " + std::to_string(i + 1)), std::string::npos) << e.dump();
  }
  // Human-readable form too.
  auto text = run_command(bin() + " inspect --image-root " + dir + "/images " + dir + "/pool.jsonl");
  EXPECT_EQ(text.exit_code, 0);
  EXPECT_NE(text.out.find("bad_roles"), std::string::npos);
}

TEST(Cli, InspectRefusesABrokenJsonArrayWithPosition) {
  std::string dir = test::scratch_dir("cli-broken");
  test::write_file(dir + "/p.json", "[\n{\"id\": \"a\"},\n{\"id\": \"b\"\n");
  auto r = run_command(bin() + " inspect --json " + dir + "/p.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.out.empty());
  EXPECT_NE(r.err.find("p.json: byte"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(line 4, column 1)"), std::string::npos) << r.err;
}

TEST(Cli, MergeCommandWritesOutputs) {
  std::string out = test::scratch_dir("cli-merge");
  ShardMeta m;
  m.config_fingerprint = "c";
  m.input_fingerprint = "p";
  m.stage = "select_questions";
  m.input_records = 2;
  ShardRow a, b;
  a.index = 0; a.key = std::string(32, 'a'); a.status = Status::valid; a.record = "{\"id\": 1}"; a.question_score = 1; a.selected_questions = 1;
  b.index = 1; b.key = std::string(32, 'b'); b.status = Status::valid; b.record = "{\"id\": 2}"; b.question_score = 0; b.selected_questions = 0;
  write_shard(shard_path(out, "select_questions", 0), m, {a, b});
  auto r = run_command(bin() + " merge --output-dir " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::read_file(out + "/curated.json"), "[\n{\"id\": 1}\n]\n");
  // A missing record fails with a message and a non-zero code.
  write_shard(shard_path(out, "select_questions", 0), m, {a});
  r = run_command(bin() + " merge --output-dir " + out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("missing: pool indices 1"), std::string::npos) << r.err;
}

TEST(Cli, HelpAndUsage) {
  auto r = run_command(bin() + " --help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* c : {"inspect", "merge"}) {
    EXPECT_NE(r.out.find(c), std::string::npos);
    auto h = run_command(bin() + " " + c + " --help");
    EXPECT_EQ(h.exit_code, 0);
    EXPECT_NE(h.out.find(std::string("usage: align2 ") + c), std::string::npos);
  }
  EXPECT_EQ(run_command(bin() + " frobnicate").exit_code, 2);
  auto bad = run_command(bin() + " inspect --no-such-flag x.json");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("unknown option --no-such-flag"), std::string::npos);
  EXPECT_EQ(run_command(bin() + " inspect").exit_code, 2);
  auto negative = run_command(bin() + " inspect --max-examples -1 x.json");
  EXPECT_EQ(negative.exit_code, 2);
  EXPECT_NE(negative.err.find("--max-examples -1"), std::string::npos) << negative.err;
  EXPECT_EQ(run_command(bin() + " inspect --max-record-bytes 0 x.json").exit_code, 2);
}

}  // namespace
}  // namespace align2
