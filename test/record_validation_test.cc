// One malformed example per validation rule, each giving its named reason; the
// number of output rows always equals the number of input records.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/data/corpus_index.h"
#include "core/data/corpus_reader.h"
#include "test/test_support.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;
using test::scratch_dir;
using test::write_file;

struct Case {
  const char* name;
  std::string line;  // one JSONL record
  Status status;
  Reason reason;
};

std::string conv(const std::string& id_json, const std::string& image_part, const std::string& turns) {
  return "{\"id\": " + id_json + image_part + ", \"conversations\": [" + turns + "]}";
}
const std::string kGoodTurns =
    R"({"from": "human", "value": "<image>\nWhat is in the picture?"}, {"from": "gpt", "value": "A cat."})";

std::vector<Case> cases() {
  return {
      {"valid", conv("\"a1\"", R"(, "image": "cat.jpg")", kGoodTurns), Status::valid, Reason::none},
      {"valid_text_only", conv("7", "", R"({"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."})"),
       Status::valid, Reason::none},
      {"image_tag_closing", conv("\"a2\"", R"(, "image": "cat.jpg")",
                                 R"({"from": "human", "value": "What is it?\n<image>"}, {"from": "gpt", "value": "A dog."})"),
       Status::valid, Reason::none},
      {"not_json", R"({"id": "b", "conversations": [)", Status::invalid, Reason::not_json},
      {"not_object", R"(["id", 1])", Status::invalid, Reason::not_object},
      {"missing_id", R"({"image": "cat.jpg", "conversations": [{"from": "human", "value": "<image>x"}, {"from": "gpt", "value": "y"}]})",
       Status::invalid, Reason::missing_field},
      {"missing_conversations", R"({"id": "c"})", Status::invalid, Reason::missing_field},
      {"missing_value", conv("\"c2\"", "", R"({"from": "human"}, {"from": "gpt", "value": "y"})"), Status::invalid,
       Reason::missing_field},
      {"id_wrong_type", conv("1.5", "", R"({"from": "human", "value": "q"}, {"from": "gpt", "value": "a"})"),
       Status::invalid, Reason::wrong_type},
      {"value_wrong_type", conv("\"d\"", "", R"({"from": "human", "value": 3}, {"from": "gpt", "value": "a"})"),
       Status::invalid, Reason::wrong_type},
      {"conversations_wrong_type", R"({"id": "d2", "conversations": "hi"})", Status::invalid, Reason::wrong_type},
      {"image_wrong_type", conv("\"d3\"", R"(, "image": 5)", kGoodTurns), Status::invalid, Reason::wrong_type},
      {"empty_conversation", R"({"id": "e", "image": "cat.jpg", "conversations": []})", Status::invalid,
       Reason::empty_conversation},
      {"starts_with_gpt", conv("\"f\"", "", R"({"from": "gpt", "value": "a"}, {"from": "human", "value": "q"})"),
       Status::invalid, Reason::bad_roles},
      {"ends_with_human", conv("\"f2\"", "", R"({"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}, {"from": "human", "value": "q2"})"),
       Status::invalid, Reason::bad_roles},
      {"unknown_role", conv("\"f3\"", "", R"({"from": "human", "value": "q"}, {"from": "assistant", "value": "a"})"),
       Status::invalid, Reason::bad_roles},
      {"image_without_tag", conv("\"g\"", R"(, "image": "cat.jpg")",
                                 R"({"from": "human", "value": "What?"}, {"from": "gpt", "value": "A cat."})"),
       Status::invalid, Reason::bad_image_tag},
      {"tag_in_later_turn", conv("\"g2\"", R"(, "image": "cat.jpg")",
                                 kGoodTurns + R"(, {"from": "human", "value": "<image> again"}, {"from": "gpt", "value": "b"})"),
       Status::invalid, Reason::bad_image_tag},
      {"tag_without_image", conv("\"g3\"", "", kGoodTurns), Status::invalid, Reason::bad_image_tag},
      {"absolute_image", conv("\"h\"", R"(, "image": "/etc/passwd")", kGoodTurns), Status::invalid,
       Reason::image_path_absolute},
      {"escaping_image", conv("\"i\"", R"(, "image": "sub/../../secret.jpg")", kGoodTurns), Status::invalid,
       Reason::image_path_escapes},
      {"symlink_out_of_root", conv("\"i2\"", R"(, "image": "link.jpg")", kGoodTurns), Status::invalid,
       Reason::image_path_escapes},
      {"missing_image", conv("\"j\"", R"(, "image": "absent.jpg")", kGoodTurns), Status::missing_image,
       Reason::missing_image},
      {"invalid_utf8", conv("\"k\"", "", "{\"from\": \"human\", \"value\": \"caf\xC3\x28\"}, {\"from\": \"gpt\", \"value\": \"a\"}"),
       Status::invalid, Reason::invalid_utf8},
      {"too_large", conv("\"l\"", "", R"({"from": "human", "value": "q"}, {"from": "gpt", "value": ")" +
                                        std::string(3000, 'x') + "\"}"),
       Status::invalid, Reason::record_too_large},
      {"duplicate", conv("\"a1-copy\"", R"(, "image": "cat.jpg")", kGoodTurns), Status::duplicate,
       Reason::duplicate},
  };
}

class ValidationTable : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_dir("validation");
    root_ = dir_ + "/images";
    fs::create_directories(root_);
    write_file(root_ + "/cat.jpg", "not really a jpeg; only its presence is checked");
    write_file(dir_ + "/secret.jpg", "outside the root");
    fs::create_symlink(dir_ + "/secret.jpg", root_ + "/link.jpg");
    std::string pool;
    for (const Case& c : cases()) pool += c.line + "\n";
    pool_ = dir_ + "/pool.jsonl";
    write_file(pool_, pool);
  }
  std::string dir_, root_, pool_;
};

TEST_F(ValidationTable, EveryRuleGivesItsNamedReason) {
  IndexOptions options;
  options.validation.image_root = root_;
  options.validation.max_record_bytes = 2048;
  std::vector<Sample> seen;
  options.on_record = [&](const Sample& s, const IndexEntry&) { seen.push_back(s); };
  PoolIndex index = build_index({{pool_, ""}}, options);

  std::vector<Case> table = cases();
  ASSERT_EQ(index.entries.size(), table.size());
  ASSERT_EQ(seen.size(), table.size());
  CorpusReader reader(index);
  std::vector<Sample> reread = reader.read(0, index.entries.size());
  for (std::size_t i = 0; i < table.size(); ++i) {
    SCOPED_TRACE(table[i].name);
    EXPECT_EQ(status_name(seen[i].status), std::string(status_name(table[i].status))) << seen[i].message;
    EXPECT_EQ(reason_name(seen[i].reason), std::string(reason_name(table[i].reason))) << seen[i].message;
    EXPECT_EQ(index.entries[i].status, table[i].status);
    // The reading rank sees the same status, reason, message and key as the index pass.
    EXPECT_EQ(reread[i].status, seen[i].status);
    EXPECT_EQ(reread[i].reason, seen[i].reason);
    EXPECT_EQ(reread[i].message, seen[i].message);
    EXPECT_EQ(reread[i].key, index.key(i));
    if (table[i].status != Status::valid) {
      // Messages name the file, the record's index and line.
      EXPECT_NE(seen[i].message.find(pool_), std::string::npos) << seen[i].message;
      EXPECT_NE(seen[i].message.find("record #" + std::to_string(i)), std::string::npos) << seen[i].message;
      EXPECT_NE(seen[i].message.find("line " + std::to_string(i + 1)), std::string::npos) << seen[i].message;
    } else {
      EXPECT_TRUE(seen[i].message.empty());
    }
  }
  // Raw text is kept verbatim (the too-large record excepted).
  EXPECT_EQ(reread[0].raw, table[0].line);
  EXPECT_EQ(reread[0].id, "a1");
  EXPECT_EQ(reread[1].id, "7");
  EXPECT_EQ(reread[1].image, "");
  EXPECT_EQ(reread[0].turns.size(), 1u);
  EXPECT_EQ(reread[0].turns[0].question, "<image>\nWhat is in the picture?");
  // Duplicate points at its first occurrence and has its own key.
  std::size_t dup = table.size() - 1;
  EXPECT_EQ(index.entries[dup].duplicate_of, 0u);
  EXPECT_NE(index.key(dup), index.key(0));
  EXPECT_NE(seen[dup].message.find("same content as pool record 0"), std::string::npos);
  // Keys are unique.
  std::set<std::string> keys;
  for (std::size_t i = 0; i < index.entries.size(); ++i) keys.insert(index.key(i));
  EXPECT_EQ(keys.size(), index.entries.size());
}

// The index pass keeps image verdicts (ImageChecks): each gives check_image_path's reason and
// detail, the first time and when asked again, also past the bound where the memo starts over.
TEST_F(ValidationTable, KeptImageChecksEqualFreshOnes) {
  fs::create_directories(root_ + "/sub");
  const std::vector<std::string> images = {"cat.jpg", "./cat.jpg", "sub/../cat.jpg", "missing.jpg", "sub",
                                           "link.jpg", "../secret.jpg", "sub/../../secret.jpg", "/etc/passwd",
                                           "", std::string("a\0b", 3)};
  for (const std::string& root : {root_, std::string(), dir_ + "/no-such-root"}) {
    ImageChecks kept(root);
    for (int round = 0; round < 2; ++round)
      for (const std::string& image : images) {
        SCOPED_TRACE(root + " | " + image);
        std::string fresh_detail, kept_detail;
        const Reason fresh = check_image_path(image, root, &fresh_detail);
        EXPECT_EQ(kept.check(image, &kept_detail), fresh);
        EXPECT_EQ(kept_detail, fresh_detail);
      }
  }
  ImageChecks bounded(root_, /*max_verdicts=*/4);
  std::string detail;
  for (int i = 0; i < 9; ++i) EXPECT_EQ(bounded.check("m" + std::to_string(i) + ".jpg", &detail), Reason::missing_image);
  EXPECT_EQ(bounded.check("cat.jpg", &detail), Reason::none);
  EXPECT_EQ(bounded.check("m0.jpg", &detail), Reason::missing_image);
  EXPECT_EQ(detail, missing_image_detail("m0.jpg", root_));
}

TEST_F(ValidationTable, WithoutImageRootNoFileIsLookedAt) {
  PoolIndex index = build_index({{pool_, ""}}, IndexOptions{});
  for (std::size_t i = 0; i < index.entries.size(); ++i) {
    if (std::string(cases()[i].name) == "missing_image" || std::string(cases()[i].name) == "symlink_out_of_root") {
      EXPECT_EQ(index.entries[i].status, Status::valid) << cases()[i].name;
    }
  }
}

TEST(Validation, KeysIgnoreIdAndWhitespace) {
  std::string dir = scratch_dir("keys");
  write_file(dir + "/a.jsonl", conv("\"x\"", R"(, "image": "a.jpg")", kGoodTurns) + "\n");
  write_file(dir + "/b.json", "[\n  " + conv("\"y\"", R"(,   "image":"a.jpg")", kGoodTurns) + "\n]\n");
  PoolIndex a = build_index({{dir + "/a.jsonl", ""}}, IndexOptions{});
  PoolIndex b = build_index({{dir + "/b.json", ""}}, IndexOptions{});
  EXPECT_EQ(a.key(0), b.key(0));
  PoolIndex both = build_index({{dir + "/a.jsonl", ""}, {dir + "/b.json", ""}}, IndexOptions{});
  EXPECT_EQ(both.entries[1].status, Status::duplicate);
}

TEST(Validation, RepeatedInvalidLinesStayInvalidWithUniqueKeys) {
  std::string dir = scratch_dir("repeat");
  write_file(dir + "/p.jsonl", "{broken\n{broken\n\n   \n{broken\n");
  PoolIndex index = build_index({{dir + "/p.jsonl", ""}}, IndexOptions{});
  ASSERT_EQ(index.entries.size(), 3u);  // blank lines are not records
  std::set<std::string> keys;
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(index.entries[i].status, Status::invalid);
    EXPECT_EQ(index.entries[i].reason, Reason::not_json);
    keys.insert(index.key(i));
  }
  EXPECT_EQ(keys.size(), 3u);
  EXPECT_EQ(index.entries[2].line, 5u);
  CorpusReader reader(index);
  EXPECT_EQ(reader.read(0, 3).size(), 3u);
}

TEST(Validation, JsonArraySyntaxErrorFailsTheFileWithPosition) {
  std::string dir = scratch_dir("syntax");
  // Missing comma between records: line 3, column 3.
  write_file(dir + "/bad.json", "[\n  {\"id\": \"a\", \"conversations\": []}\n  {\"id\": \"b\"}\n]\n");
  try {
    build_index({{dir + "/bad.json", ""}}, IndexOptions{});
    FAIL() << "a JSON array syntax error must fail the file";
  } catch (const PoolFileError& e) {
    EXPECT_EQ(e.line, 3u);
    EXPECT_EQ(e.column, 3u);
    EXPECT_EQ(e.offset, 39u);
    std::string what = e.what();
    EXPECT_NE(what.find(dir + "/bad.json"), std::string::npos) << what;
    EXPECT_NE(what.find("line 3, column 3"), std::string::npos) << what;
    EXPECT_NE(what.find("whole file is refused"), std::string::npos) << what;
  }
  // An error inside a record (balanced brackets) is a file error too, at its byte.
  write_file(dir + "/bad2.json", "[{\"id\": \"a\"},\n {\"id\": tru}]");
  try {
    build_index({{dir + "/bad2.json", ""}}, IndexOptions{});
    FAIL();
  } catch (const PoolFileError& e) {
    EXPECT_EQ(e.line, 2u);
    EXPECT_GE(e.column, 9u);
  }
  // Truncated file.
  write_file(dir + "/cut.json", "[{\"id\": \"a\", \"conversations\": [{\"from\": \"hu");
  EXPECT_THROW(build_index({{dir + "/cut.json", ""}}, IndexOptions{}), PoolFileError);
  // Data after the end.
  write_file(dir + "/tail.json", "[] x");
  EXPECT_THROW(build_index({{dir + "/tail.json", ""}}, IndexOptions{}), PoolFileError);
}

TEST(Validation, JsonArrayRecordLevelProblemsStayRecordLevel) {
  std::string dir = scratch_dir("array");
  write_file(dir + "/p.json", "[" + conv("\"a\"", "", "{\"from\": \"human\", \"value\": \"\xff\"}, {\"from\": \"gpt\", \"value\": \"a\"}") +
                                  ", 42, \"text\", " + conv("\"b\"", "", R"({"from": "gpt", "value": "a"})") + "]");
  PoolIndex index = build_index({{dir + "/p.json", ""}}, IndexOptions{});
  ASSERT_EQ(index.entries.size(), 4u);
  EXPECT_EQ(index.entries[0].reason, Reason::invalid_utf8);
  EXPECT_EQ(index.entries[1].reason, Reason::not_object);
  EXPECT_EQ(index.entries[2].reason, Reason::not_object);
  EXPECT_EQ(index.entries[3].reason, Reason::bad_roles);
}

TEST(Validation, FileChangedAfterIndexingIsRefused) {
  std::string dir = scratch_dir("changed");
  std::string path = dir + "/p.jsonl";
  write_file(path, conv("\"a\"", "", R"({"from": "human", "value": "q"}, {"from": "gpt", "value": "a"})") + "\n");
  PoolIndex index = build_index({{path, ""}}, IndexOptions{});
  write_file(path, conv("\"a\"", "", R"({"from": "human", "value": "Q"}, {"from": "gpt", "value": "a"})") + "\n");
  CorpusReader reader(index);
  EXPECT_THROW(reader.read(0, 1), std::runtime_error);
}

TEST(Validation, IndexSerializationRoundTrips) {
  std::string dir = scratch_dir("serialize");
  write_file(dir + "/p.jsonl", conv("\"a\"", "", R"({"from": "human", "value": "q"}, {"from": "gpt", "value": "a"})") +
                                   "\n{bad\n");
  IndexOptions options;
  options.validation.subset_field = "type";
  PoolIndex index = build_index({{dir + "/p.jsonl", "conv"}}, options);
  PoolIndex back = deserialize_index(serialize_index(index));
  EXPECT_EQ(back.fingerprint, index.fingerprint);
  ASSERT_EQ(back.entries.size(), 2u);
  EXPECT_EQ(back.key(1), index.key(1));
  EXPECT_EQ(back.entries[1].offset, index.entries[1].offset);
  EXPECT_EQ(back.subsets, index.subsets);
  EXPECT_EQ(back.options.subset_field, "type");
  std::vector<std::uint8_t> bytes = serialize_index(index);
  bytes.resize(bytes.size() - 3);
  EXPECT_THROW(deserialize_index(bytes), std::runtime_error);
}

}  // namespace
}  // namespace align2

namespace align2 {
namespace {

TEST(Validation, RepeatKeysNeverCollideWithContentKeys) {
  // Found in review: "xyz" twice and then "xyz#1" once gave two records one key.
  std::string dir = test::scratch_dir("repeat-keys");
  write_file(dir + "/p.jsonl", conv("\"a\"", "", R"({"from": "human", "value": "q"}, {"from": "gpt", "value": "a"})") +
                                   "\nxyz\nxyz\nxyz#1\n");
  PoolIndex index = build_index({{dir + "/p.jsonl", ""}}, IndexOptions{});
  std::set<std::string> keys;
  for (std::size_t i = 0; i < index.entries.size(); ++i) keys.insert(index.key(i));
  EXPECT_EQ(keys.size(), 4u);
}

TEST(Validation, ByteOrderMarkWholeOrNotAtAll) {
  std::string dir = test::scratch_dir("bom");
  std::string rec = conv("\"a\"", "", R"({"from": "human", "value": "q"}, {"from": "gpt", "value": "a"})");
  write_file(dir + "/bom.jsonl", "\xEF\xBB\xBF" + rec + "\n");
  write_file(dir + "/bom.json", "\xEF\xBB\xBF[" + rec + "]");
  write_file(dir + "/partial.jsonl", "\xEF" + rec + "\n");
  PoolIndex a = build_index({{dir + "/bom.jsonl", ""}}, IndexOptions{});
  PoolIndex b = build_index({{dir + "/bom.json", ""}}, IndexOptions{});
  PoolIndex c = build_index({{dir + "/partial.jsonl", ""}}, IndexOptions{});
  EXPECT_EQ(a.entries[0].status, Status::valid);
  EXPECT_EQ(a.entries[0].offset, 3u);
  EXPECT_EQ(b.entries[0].status, Status::valid);
  EXPECT_EQ(c.entries[0].reason, Reason::invalid_utf8);  // a lone 0xEF is data, not a mark
  EXPECT_EQ(c.entries[0].offset, 0u);
}

TEST(Validation, CrlfLineExactlyAtTheBoundIsKept) {
  std::string dir = test::scratch_dir("crlf");
  std::string rec = conv("\"a\"", "", R"({"from": "human", "value": "q"}, {"from": "gpt", "value": "a"})");
  write_file(dir + "/p.jsonl", rec + "\r\n" + rec + "x\r\n");
  IndexOptions options;
  options.validation.max_record_bytes = rec.size();
  PoolIndex index = build_index({{dir + "/p.jsonl", ""}}, options);
  ASSERT_EQ(index.entries.size(), 2u);
  EXPECT_EQ(index.entries[0].status, Status::valid);
  EXPECT_EQ(index.entries[0].length, rec.size());
  EXPECT_EQ(index.entries[1].reason, Reason::record_too_large);
  CorpusReader reader(index);
  EXPECT_EQ(reader.read_one(0).raw, rec);
}

// Expects `got` to have the verdict, message, fields, canonical form and counts of `ref`, and
// its turns too unless `lean` (the index pass leaves the text out).
void expect_same_record(const ValidatedRecord& got, const ValidatedRecord& ref, bool lean) {
  EXPECT_EQ(got.sample.status, ref.sample.status);
  EXPECT_EQ(got.sample.reason, ref.sample.reason);
  EXPECT_EQ(got.sample.message, ref.sample.message);
  EXPECT_EQ(got.sample.id, ref.sample.id);
  EXPECT_EQ(got.sample.image, ref.sample.image);
  EXPECT_EQ(got.sample.subset, ref.sample.subset);
  EXPECT_EQ(got.has_image, ref.has_image);
  EXPECT_EQ(got.canonical, ref.canonical);
  EXPECT_EQ(got.counts.turns, ref.counts.turns);
  EXPECT_EQ(got.counts.text_bytes, ref.counts.text_bytes);
  EXPECT_EQ(got.counts.question_bytes, ref.counts.question_bytes);
  if (lean) return;
  EXPECT_EQ(got.sample.turns.size(), ref.sample.turns.size());
  for (std::size_t t = 0; t < std::min(ref.sample.turns.size(), got.sample.turns.size()); ++t) {
    EXPECT_EQ(got.sample.turns[t].question, ref.sample.turns[t].question);
    EXPECT_EQ(got.sample.turns[t].answer, ref.sample.turns[t].answer);
  }
}

// Validates `raw` with the fast reader (fresh, and in the index pass's lean mode into `reused`)
// and with the nlohmann reference, and expects the same from all (expect_same_record). True
// when the reference finds the record valid.
bool expect_fast_equals_reference(const std::string& raw, const ValidationOptions& options, ValidatedRecord& reused) {
  RecordOrigin origin{"pool.jsonl", 3, 4, ""};
  const ValidatedRecord ref = validate_record_reference(raw, origin, options, raw.size());
  SCOPED_TRACE(raw.substr(0, 200));
  expect_same_record(validate_record(raw, origin, options, raw.size()), ref, /*lean=*/false);
  // The index pass's mode (no raw text, no turn text, the record read in place, one
  // ValidatedRecord reused) keeps every verdict, key and count.
  std::string padded = raw;  // read in place: kRecordPadding more bytes readable after the record
  padded.reserve(raw.size() + kRecordPadding);
  validate_record(padded, origin, options, raw.size(), ValidationPass{nullptr, false, false, true}, reused);
  EXPECT_TRUE(reused.sample.raw.empty());
  expect_same_record(reused, ref, /*lean=*/true);
  return ref.sample.status == Status::valid;
}

// validate_record reads records that keep every rule with simdjson and must give exactly what
// the nlohmann reader gives: the same fields, turns, canonical bytes (hence keys) and, for the
// records it hands over, the same verdict and message.
TEST(Validation, FastReaderEqualsTheNlohmannReference) {
  const std::string turns = kGoodTurns;
  std::vector<std::string> records = {
      conv("\"a1\"", R"(, "image": "cat.jpg")", turns),
      conv("42", R"(, "image": "cat.jpg")", turns),
      conv("-42", R"(, "image": "cat.jpg")", turns),
      conv("18446744073709551615", R"(, "image": "cat.jpg")", turns),      // uint64 max
      conv("18446744073709551616", R"(, "image": "cat.jpg")", turns),      // beyond: a double
      conv("1.5", R"(, "image": "cat.jpg")", turns),
      conv("-0", R"(, "image": "cat.jpg")", turns),
      conv("true", R"(, "image": "cat.jpg")", turns),
      conv("\"a\"", R"(, "image": null)", R"({"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Yo."})"),
      conv("\"a\"", R"(, "image": 3)", turns),
      conv("\"a\"", "", turns),                                           // a tag without image
      conv("\"a\"", R"(, "image": "cat.jpg", "type": "conv")", turns),
      conv("\"a\"", R"(, "image": "cat.jpg", "type": "")", turns),
      conv("\"a\"", R"(, "image": "cat.jpg", "type": 7)", turns),
      // keys to sort (non-ASCII and escaped ones), escapes of every kind, numbers in the content
      R"({"zeta": [1, -2, 18446744073709551615, true, false, null, {}, []], "id": "k", "Éclair": "\u00e9\t\u0001\u007f\"\\\/",)"
      R"( "\u0061lpha": {"b": 1, "a": [{"y": 2, "x": 3}]}, "conversations": [{"value": "Q \ud83d\ude00", "from": "human"},)"
      R"( {"from": "gpt", "value": "A\r\n\b\f"}]})",
      R"({"id": "f", "score": 0.5, "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]})",
      R"({"id": "e", "score": 1e3, "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]})",
      R"({"id": "d", "id": "d2", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]})",
      R"({"id": "d", "conversations": [{"from": "human", "from": "gpt", "value": "Q"}, {"from": "gpt", "value": "A"}]})",
      R"({"id": "d", "x": {"a": 1, "\u0061": 2}, "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]})",
      R"({"id": "s", "conversations": [{"from": "human", "value": "lone \ud800"}, {"from": "gpt", "value": "A"}]})",
      R"({"id": "i", "instruction": "What?", "output": "That."})",
      R"({"id": "i", "instruction": "What?"})",
      R"({"id": "i", "instruction": "What?", "output": 3})",
      R"({"id": "o", "conversations": [{"from": "human", "value": "Q"}]})",
      R"({"id": "o", "conversations": []})",
      R"({"id": "o", "conversations": {}})",
      R"({"id": "o", "conversations": [{"from": "gpt", "value": "A"}, {"from": "human", "value": "Q"}]})",
      R"({"id": "o", "conversations": [{"from": "human", "value": "Q"}, "A"]})",
      R"({"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]})",
      R"(  {"id": "w", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}  )",
      R"({"id": "t", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]} x)",
      "\xEF\xBB\xBF" R"({"id": "b", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]})",
      "{\"id\": \"c\", \"conversations\": [{\"from\": \"human\", \"value\": \"Q\tA\"}, "  // a raw tab in a string
      "{\"from\": \"gpt\", \"value\": \"A\"}]}",
      "[1, 2]", "\"text\"", "", "{", "{}",
      std::string(2000, '[') + std::string(2000, ']'),
      "{\"id\": \"n\", \"x\": " + std::string(1500, '[') + std::string(1500, ']') +
          R"(, "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]})",
  };
  // The bundled real records, as written and re-dumped with other spacing and escaping.
  std::ifstream in(std::string(ALIGN2_SOURCE_DIR) + "/examples/demo/data/llava_instruct_60.json");
  for (const nlohmann::json& r : nlohmann::json::parse(in)) {
    records.push_back(r.dump());
    records.push_back(r.dump(2));
    records.push_back(r.dump(-1, ' ', /*ensure_ascii=*/true));
  }
  for (bool open_question : {false, true}) {
    ValidationOptions options;
    options.subset_field = "type";
    options.accept_open_question = open_question;
    std::size_t valid = 0;
    ValidatedRecord reused;  // the index pass's way: one record's buffers kept across all
    for (const std::string& raw : records) valid += expect_fast_equals_reference(raw, options, reused);
    EXPECT_GE(valid, 180u);  // the comparison covers the common case, not only failures
  }
}

// Strings of every length up to past two 16-byte steps, with nothing to escape or one byte to
// escape at each position, as values and as keys: the canonical writer's short (< 16 bytes) and
// stepwise paths and their ends, against nlohmann's dump().
TEST(Validation, StringsOfEveryLengthAndEscapePositionMatchTheReference) {
  ValidationOptions options;
  ValidatedRecord reused;
  const std::vector<std::string> escapes = {"\\\"", "\\\\", "\\n", "\\u0001", "\\u001f", "\\/", "\\u00e9", "\xC3\xA9"};
  std::size_t valid = 0;
  for (std::size_t n = 0; n <= 40; ++n) {
    for (std::size_t at = 0; at <= n; ++at) {  // at == n: nothing escaped
      for (const std::string& escape : escapes) {
        std::string text;
        for (std::size_t k = 0; k < n; ++k) text += k == at ? escape : std::string(1, char('a' + k % 26));
        const std::string turns = R"({"from": "human", "value": ")" + text + R"("}, {"from": "gpt", "value": "A"})";
        valid += expect_fast_equals_reference(
            R"({"id": "s", "k)" + text + R"(": ")" + text + R"(", "conversations": [)" + turns + "]}", options, reused);
        if (at == n) break;  // the same string for every escape
      }
    }
  }
  EXPECT_EQ(valid, 41u + 8u * (40u * 41u / 2));  // every one of them is a valid record
}

}  // namespace
}  // namespace align2
