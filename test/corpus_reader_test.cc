// The reader on real LLaVA data from ../shared: fields, both <image> placements,
// subsets, JSON arrays and JSONL; expected values come from a plain DOM parse.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/data/corpus_index.h"
#include "core/data/corpus_reader.h"
#include "test/test_support.h"

namespace align2 {
namespace {

using nlohmann::json;
using test::shared_path;

json load_dom(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

TEST(CorpusReader, RealLlavaInstructRecords) {
  std::string path = shared_path("data/llava/llava_instruct_60.json");
  json dom = load_dom(path);
  PoolIndex index = build_index({{path, "conversation"}}, IndexOptions{});
  ASSERT_EQ(index.entries.size(), dom.size());
  CorpusReader reader(index);
  std::vector<Sample> samples = reader.read(0, index.entries.size());
  std::string text = test::read_file(path);
  int opens = 0, closes = 0;
  for (std::size_t i = 0; i < dom.size(); ++i) {
    const Sample& s = samples[i];
    SCOPED_TRACE(s.id);
    EXPECT_EQ(s.status, Status::valid) << s.message;
    EXPECT_EQ(s.index, i);
    EXPECT_EQ(s.id, dom[i]["id"].get<std::string>());
    EXPECT_EQ(s.image, dom[i]["image"].get<std::string>());
    EXPECT_EQ(s.subset, "conversation");
    const json& conv = dom[i]["conversations"];
    ASSERT_EQ(s.turns.size() * 2, conv.size());
    for (std::size_t t = 0; t < s.turns.size(); ++t) {
      EXPECT_EQ(s.turns[t].question, conv[2 * t]["value"].get<std::string>());
      EXPECT_EQ(s.turns[t].answer, conv[2 * t + 1]["value"].get<std::string>());
    }
    const std::string& q0 = s.turns[0].question;
    opens += q0.rfind("<image>", 0) == 0;
    closes += q0.size() >= 7 && q0.compare(q0.size() - 7, 7, "<image>") == 0;
    // Raw text is verbatim: it is a slice of the file that parses to the DOM record.
    EXPECT_EQ(text.substr(index.entries[i].offset, index.entries[i].length), s.raw);
    EXPECT_EQ(json::parse(s.raw), dom[i]);
    EXPECT_EQ(s.key.size(), 32u);
  }
  // Both placements occur in the real data (25 open, 35 close the first human turn).
  EXPECT_EQ(opens, 25);
  EXPECT_EQ(closes, 35);
}

TEST(CorpusReader, TypedGpt4RecordsTakeTheirSubsetFromAField) {
  std::string path = shared_path("data/llava/coco2014_val_gpt4_qa_30x3.jsonl");
  IndexOptions options;
  options.validation.subset_field = "type";
  PoolIndex index = build_index({{path, ""}}, options);
  ASSERT_EQ(index.entries.size(), 90u);
  std::map<std::string, int> per_subset;
  CorpusReader reader(index);
  std::ifstream in(path);
  std::string line;
  for (std::uint64_t i = 0; std::getline(in, line); ++i) {
    json dom = json::parse(line);
    Sample s = reader.read_one(i);
    EXPECT_EQ(s.status, Status::valid) << s.message;
    EXPECT_EQ(s.subset, dom["type"].get<std::string>());
    ASSERT_EQ(s.turns.size(), 1u);
    EXPECT_EQ(s.turns[0].question, dom["instruction"].get<std::string>());
    EXPECT_EQ(s.turns[0].answer, dom["output"].get<std::string>());
    EXPECT_EQ(s.raw, line);
    ++per_subset[s.subset];
  }
  EXPECT_EQ(per_subset, (std::map<std::string, int>{{"complex", 30}, {"conv", 30}, {"detail", 30}}));
  EXPECT_EQ(index.subsets.size(), 3u);
}

TEST(CorpusReader, FileMappingWinsAndFilesConcatenate) {
  std::string a = shared_path("data/llava/llava_instruct_60.json");
  std::string b = shared_path("data/llava/llava_instruct_40b.json");
  PoolIndex index = build_index({{a, "conversation"}, {b, "detail"}}, IndexOptions{});
  ASSERT_EQ(index.entries.size(), 100u);
  CorpusReader reader(index);
  EXPECT_EQ(reader.read_one(59).subset, "conversation");
  Sample s = reader.read_one(60);
  EXPECT_EQ(s.subset, "detail");
  EXPECT_EQ(index.entries[60].index_in_file, 0u);
  EXPECT_EQ(s.id, load_dom(b)[0]["id"].get<std::string>());
  // The same content under another order gives the same keys.
  PoolIndex swapped = build_index({{b, "detail"}, {a, "conversation"}}, IndexOptions{});
  EXPECT_EQ(swapped.key(0), index.key(60));
}

TEST(CorpusReader, MissingImagesUnderARealImageRoot) {
  std::string path = shared_path("data/llava/llava_instruct_60.json");
  IndexOptions options;
  options.validation.image_root = shared_path("data/images");
  PoolIndex index = build_index({{path, ""}}, options);
  CorpusReader reader(index);
  for (std::size_t i = 0; i < index.entries.size(); ++i) {
    EXPECT_EQ(index.entries[i].status, Status::missing_image);  // COCO files are not in shared/
    Sample s = reader.read_one(i);
    EXPECT_EQ(s.status, Status::missing_image);
    EXPECT_FALSE(s.turns.empty());  // well-formed: turns are kept
    EXPECT_NE(s.message.find(s.image), std::string::npos);
  }
}

}  // namespace
}  // namespace align2
