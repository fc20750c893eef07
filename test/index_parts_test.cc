// The parallel index (core/data/corpus_index.h): parts merged give build_index's index byte for
// byte for any number of parts, and the same errors.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "core/data/corpus_index.h"
#include "test/pool_fixture.h"
#include "test/test_support.h"

namespace align2 {
namespace {

PoolIndex merged(const std::vector<PoolFile>& files, const IndexOptions& options, int n) {
  std::vector<std::vector<std::uint8_t>> parts;
  for (int p = 0; p < n; ++p) parts.push_back(index_pool_part(files, options, p, n));
  return merge_pool_parts(files, options, parts);
}

TEST(IndexParts, MergedPartsEqualTheOnePassIndex) {
  const std::vector<PoolFile> files = test::write_mixed_pool(test::scratch_dir("index-parts"));
  const IndexOptions options = test::mixed_pool_options();
  const PoolIndex index = build_index(files, options);
  // The pool holds what the merge must get right.
  std::size_t duplicates = 0, repeats = 0, invalid = 0, too_large = 0;
  for (const IndexEntry& e : index.entries) {
    duplicates += e.status == Status::duplicate;
    repeats += e.repeat > 0;
    invalid += e.status == Status::invalid;
    too_large += e.reason == Reason::record_too_large;
  }
  EXPECT_GE(duplicates, 10u);
  EXPECT_GT(repeats, duplicates);  // repeats of invalid lines too
  EXPECT_GE(invalid, 5u);
  EXPECT_EQ(too_large, 1u);
  EXPECT_GE(index.subsets.size(), 4u);
  const std::vector<std::uint8_t> one = serialize_index(index);
  for (int n = 1; n <= 9; ++n) EXPECT_EQ(serialize_index(merged(files, options, n)), one) << n << " parts";
}

// Many records (more than the table of seen keys holds before it first grows, 32,768), a
// seventh of them repeating earlier content: each record's duplicate_of and repeat are those a
// plain map of content gives, on one pass and on merged parts.
TEST(IndexParts, RepeatsAcrossManyRecordsAreCountedExactly) {
  const std::string dir = test::scratch_dir("index-parts-many");
  const std::size_t n = 70000;
  std::string pool;
  std::vector<std::size_t> content(n);  // record i carries content number content[i]
  for (std::size_t i = 0; i < n; ++i) {
    // A seventh repeat the content of an earlier record picked by a fixed hash of i.
    content[i] = i % 7 == 3 ? content[(i * 48271u + 11u) % 2147483647u % i] : i;
    pool += R"({"id": ")" + std::to_string(i) + R"(", "instruction": "q)" + std::to_string(content[i]) +
            R"(", "output": "a"})" + "\n";
  }
  test::write_file(dir + "/many.jsonl", pool);
  const std::vector<PoolFile> files = {{dir + "/many.jsonl", ""}};
  const PoolIndex index = build_index(files, IndexOptions{});
  ASSERT_EQ(index.entries.size(), n);
  std::map<std::size_t, std::pair<std::size_t, std::size_t>> seen;  // content -> (first record, repeats)
  std::size_t duplicates = 0;
  for (std::size_t i = 0; i < n; ++i) {
    auto [it, fresh] = seen.emplace(content[i], std::make_pair(i, std::size_t(0)));
    const IndexEntry& e = index.entries[i];
    if (fresh) {
      ASSERT_EQ(e.status, Status::valid) << i;
      ASSERT_EQ(e.repeat, 0u) << i;
      continue;
    }
    ++duplicates;
    ASSERT_EQ(e.status, Status::duplicate) << i;
    ASSERT_EQ(e.duplicate_of, it->second.first) << i;
    ASSERT_EQ(e.repeat, ++it->second.second) << i;
  }
  EXPECT_GT(duplicates, n / 8);
  const std::vector<std::uint8_t> one = serialize_index(index);
  for (int parts : {2, 3}) EXPECT_EQ(serialize_index(merged(files, IndexOptions{}, parts)), one) << parts << " parts";
}

// The message build_index throws for `files`, or "" when it indexes them.
std::string one_pass_error(const std::vector<PoolFile>& files, const IndexOptions& options) {
  try {
    build_index(files, options);
  } catch (const PoolFileError& e) {
    return e.what();
  }
  return "";
}

TEST(IndexParts, PoolErrorsAreThoseOfTheOnePass) {
  const std::string dir = test::scratch_dir("index-parts-errors");
  std::vector<PoolFile> files = test::write_mixed_pool(dir);
  const IndexOptions options = test::mixed_pool_options();
  const std::string array = test::read_file(dir + "/b.json");
  const std::size_t middle = array.find("},\n {", array.size() / 2);
  ASSERT_NE(middle, std::string::npos);
  const std::vector<std::string> broken = {
      array.substr(0, middle + 1) + "\n" + array.substr(middle + 2),                              // a missing comma
      array.substr(0, middle + 2) + R"( {"id": "x", "v": tru},)" + array.substr(middle + 2),      // not JSON
      array.substr(0, array.size() / 3),                                                             // truncated
  };
  for (const std::string& text : broken) {
    test::write_file(dir + "/b.json", text);
    const std::string expected = one_pass_error(files, options);
    ASSERT_FALSE(expected.empty());
    for (int n = 1; n <= 5; ++n) {
      try {
        merged(files, options, n);
        ADD_FAILURE() << n << " parts: no error; expected " << expected;
      } catch (const PoolFileError& e) {
        EXPECT_EQ(e.what(), expected) << n << " parts";
      }
    }
  }
  test::write_file(dir + "/b.json", array);
  files.push_back({dir + "/missing.jsonl", ""});
  const std::string expected = one_pass_error(files, options);
  ASSERT_NE(expected.find("cannot open the pool file"), std::string::npos) << expected;
  for (int n = 1; n <= 3; ++n) EXPECT_THROW(merged(files, options, n), PoolFileError);
}

}  // namespace
}  // namespace align2
