// Tests for the HDF5 shard store (core/store/shard_store.h): round trips, h5py
// interoperability, refusal of foreign / future / damaged files, partial record
// reads, byte-identical output and atomic writes.
//
// Files are inspected and tampered with through h5py (/usr/bin/python3), because
// the tests do not get HDF5's include path. h5py is a required test dependency
// (scripts/install-deps.sh installs python3-h5py): without it these tests fail.
#include "core/store/shard_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test/rewrite_columns.h"
#include "test/test_support.h"

namespace fs = std::filesystem;

namespace align2 {
namespace {


using test::read_file;
using test::run_command;
using test::scratch_dir;
using test::write_file;

const double kNaN = std::numeric_limits<double>::quiet_NaN();

ShardMeta sample_meta() {
  ShardMeta meta;
  meta.align2_version = "0.1.0+abc1234";
  meta.config_fingerprint = "c0ffee00c0ffee00c0ffee00c0ffee00";
  meta.input_fingerprint = "feedface0123456789abcdef01234567";
  meta.stage = "select_answers";
  meta.rank = 2;
  meta.world_size = 3;
  meta.input_records = 123456789012ULL;
  meta.stage_summary_json = R"({"kept":2,"threshold":0.5,"note":"阈值 ✓"})";
  meta.timings_json = R"({"score_s":1.25})";
  return meta;
}

// Four rows covering NaN scores, empty / long ragged columns, UTF-8 and empty strings.
std::vector<ShardRow> sample_rows() {
  std::vector<ShardRow> rows(4);

  rows[0].index = 0;
  rows[0].key = "0123456789abcdef0123456789abcdef";
  rows[0].id = "000000033471";
  rows[0].subset = "coco";
  rows[0].status = Status::valid;
  rows[0].image = "coco/train2017/000000033471.jpg";
  rows[0].record = R"({"id":"000000033471","conversations":[{"from":"human","value":"<image>\nWhat?"}]})";
  rows[0].question_score = 0.75;
  rows[0].answer_scores = {0.5f, 0.25f, 1.0f};
  rows[0].answer_score = (0.5 + 0.25 + 1.0) / 3;
  rows[0].selected_questions = 1;
  rows[0].selected_answers = 1;
  rows[0].kept = 1;
  rows[0].global_rank = 0;
  rows[0].rewritten_questions = {"问题一：图片里有什么？", "Second 🐱 question"};
  rows[0].rewritten_answers = {"一只猫 🐈 和一只狗。", ""};
  test::fill_rewrite_columns(rows[0], true);

  rows[1].index = 7;
  rows[1].key = "fedcba9876543210fedcba9876543210";
  rows[1].id = "ドキュメント-7";
  rows[1].subset = "";
  rows[1].status = Status::invalid;
  rows[1].reason = Reason::not_json;
  rows[1].message = "pool/part-0.json record 7 (id ドキュメント-7): unterminated string 😢";
  rows[1].record = "";
  // scores stay NaN, decisions -1, no answer_scores, no rewrites

  rows[2].index = 8;
  rows[2].key = "00000000000000000000000000000000";
  rows[2].id = "8";
  rows[2].subset = "textvqa";
  rows[2].status = Status::valid;
  rows[2].record = R"({"id":"8","text":"emoji 👩‍👩‍👧 and 中文"})";
  rows[2].question_score = -1.5e-300;
  rows[2].answer_scores = {};  // scored but no turns
  rows[2].answer_score = kNaN;
  rows[2].selected_questions = 0;
  rows[2].selected_answers = -1;
  rows[2].kept = 0;
  rows[2].global_rank = -1;

  rows[3].index = 9;
  rows[3].key = "ffffffffffffffffffffffffffffffff";
  rows[3].id = "9";
  rows[3].subset = "gqa";
  rows[3].status = Status::valid;
  rows[3].image = "gqa/图像/9.jpg";
  rows[3].record = std::string(100000, 'x');  // longer than one heap block
  rows[3].question_score = 1.0;
  rows[3].answer_scores = {std::nanf(""), -3.5f};
  rows[3].answer_score = kNaN;
  rows[3].selected_questions = 1;
  rows[3].selected_answers = 1;
  rows[3].kept = 1;
  rows[3].global_rank = 1;
  rows[3].rewritten_questions = {""};
  rows[3].rewritten_answers = {"只有答案"};
  test::fill_rewrite_columns(rows[3], true);
  return rows;
}

// `n` plain rows with per-row distinct contents (for large / chunk-crossing files).
std::vector<ShardRow> many_rows(std::size_t n) {
  std::vector<ShardRow> rows(n);
  for (std::size_t i = 0; i < n; ++i) {
    ShardRow& row = rows[i];
    row.index = i * 3;
    row.key = std::to_string(1000000 + i) + std::string(25, 'a');
    row.id = "id-" + std::to_string(i);
    row.subset = i % 2 ? "coco" : "ocr_vqa";
    row.status = Status::valid;
    row.record = "{\"id\":\"id-" + std::to_string(i) + "\",\"n\":" + std::to_string(i) + "}";
    row.question_score = i % 5 == 0 ? kNaN : 0.001 * static_cast<double>(i);
    row.answer_scores.assign(i % 4, 0.5f * static_cast<float>(i));
    row.kept = static_cast<std::int8_t>(i % 2);
    row.global_rank = i % 2 ? static_cast<std::int64_t>(i / 2) : -1;
    if (i % 3 == 0) {
      row.rewritten_questions = {"q" + std::to_string(i)};
      row.rewritten_answers = {"a" + std::to_string(i)};
      test::fill_rewrite_columns(row, true);
    }
  }
  return rows;
}

bool same_double(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

void expect_same_meta(const ShardMeta& want, const ShardMeta& got) {
  EXPECT_EQ(got.schema_version, kShardSchemaVersion);
  EXPECT_EQ(got.align2_version, want.align2_version);
  EXPECT_EQ(got.config_fingerprint, want.config_fingerprint);
  EXPECT_EQ(got.input_fingerprint, want.input_fingerprint);
  EXPECT_EQ(got.stage, want.stage);
  EXPECT_EQ(got.rank, want.rank);
  EXPECT_EQ(got.world_size, want.world_size);
  EXPECT_EQ(got.input_records, want.input_records);
  EXPECT_EQ(got.stage_summary_json, want.stage_summary_json);
  EXPECT_EQ(got.timings_json, want.timings_json);
}

void expect_same_rows(const std::vector<ShardRow>& want, const std::vector<ShardRow>& got, bool records = true) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE("row " + std::to_string(i));
    const ShardRow& w = want[i];
    const ShardRow& g = got[i];
    EXPECT_EQ(g.index, w.index);
    EXPECT_EQ(g.key, w.key);
    EXPECT_EQ(g.id, w.id);
    EXPECT_EQ(g.subset, w.subset);
    EXPECT_EQ(g.status, w.status);
    EXPECT_EQ(g.reason, w.reason);
    EXPECT_EQ(g.message, w.message);
    EXPECT_EQ(g.image, w.image);
    EXPECT_EQ(g.record, records ? w.record : std::string());
    EXPECT_TRUE(same_double(g.question_score, w.question_score)) << g.question_score << " vs " << w.question_score;
    EXPECT_TRUE(same_double(g.answer_score, w.answer_score)) << g.answer_score << " vs " << w.answer_score;
    ASSERT_EQ(g.answer_scores.size(), w.answer_scores.size());
    for (std::size_t j = 0; j < w.answer_scores.size(); ++j) {
      EXPECT_TRUE(same_double(g.answer_scores[j], w.answer_scores[j])) << "turn " << j;
    }
    EXPECT_EQ(g.selected_questions, w.selected_questions);
    EXPECT_EQ(g.selected_answers, w.selected_answers);
    EXPECT_EQ(g.kept, w.kept);
    EXPECT_EQ(g.global_rank, w.global_rank);
    EXPECT_EQ(g.rewritten_questions, w.rewritten_questions);
    EXPECT_EQ(g.rewritten_answers, w.rewritten_answers);
    EXPECT_EQ(g.rewrite_replies, w.rewrite_replies);
    EXPECT_EQ(g.rewrite_reasons, w.rewrite_reasons);
    EXPECT_EQ(g.rewrite_kept, w.rewrite_kept);
    EXPECT_EQ(g.review_p, w.review_p);
    EXPECT_EQ(g.review_p_order1, w.review_p_order1);
    EXPECT_EQ(g.review_p_order2, w.review_p_order2);
  }
}

// The message of the std::runtime_error `action` throws; records a failure and
// returns "" when it throws nothing or something else.
std::string runtime_error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const std::invalid_argument& e) {
    ADD_FAILURE() << "expected std::runtime_error, got std::invalid_argument: " << e.what();
    return "";
  } catch (const std::runtime_error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected std::runtime_error, got: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected std::runtime_error, nothing was thrown";
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Runs `script` with /usr/bin/python3 (h5py and numpy imported as h5py, np);
// sys.argv[1:] = args. Returns stdout; fails the test when the script fails.
std::string run_python(const std::string& script, const std::vector<std::string>& args) {
  const std::string dir = scratch_dir("py");
  const std::string script_path = dir + "/script.py";
  write_file(script_path, "import sys\nimport h5py\nimport numpy as np\n" + script);
  std::string command = "/usr/bin/python3 '" + script_path + "'";
  for (const std::string& arg : args) command += " '" + arg + "'";
  test::CommandResult result = run_command(command);
  fs::remove_all(dir);
  EXPECT_EQ(result.exit_code, 0) << "python failed (h5py is required: bash scripts/install-deps.sh):\n"
                                 << result.err;
  return result.out;
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// ---------------------------------------------------------------------------

TEST(ShardStore, H5pyIsAvailable) {
  test::CommandResult result = run_command("/usr/bin/python3 -c 'import h5py, numpy; print(h5py.__version__)'");
  ASSERT_EQ(result.exit_code, 0) << "/usr/bin/python3 cannot import h5py/numpy; these tests need it. "
                                    "Install it with: bash scripts/install-deps.sh\n"
                                 << result.err;
}

TEST(ShardStore, RoundTripsRowsAndMeta) {
  const std::string path = scratch_dir("store") + "/shards/select_answers/rank-00002.h5";
  const ShardMeta meta = sample_meta();
  const std::vector<ShardRow> rows = sample_rows();
  write_shard(path, meta, rows);  // also creates shards/select_answers/
  ASSERT_TRUE(fs::is_regular_file(path));
  EXPECT_EQ(list_dir(fs::path(path).parent_path().string()), std::vector<std::string>{"rank-00002.h5"})
      << "no temporary file may remain";

  ShardData data = read_shard(path);
  expect_same_meta(meta, data.meta);
  expect_same_rows(rows, data.rows);

  expect_same_meta(meta, read_shard_meta(path));

  ShardData without_records = read_shard(path, ShardReadOptions{false});
  expect_same_rows(rows, without_records.rows, /*records=*/false);
}

TEST(ShardStore, OverwritesAnExistingShard) {
  const std::string path = scratch_dir("store") + "/rank-00000.h5";
  write_shard(path, sample_meta(), sample_rows());
  std::vector<ShardRow> fewer = many_rows(2);
  ShardMeta meta = sample_meta();
  meta.stage = "rewrite";
  write_shard(path, meta, fewer);
  ShardData data = read_shard(path);
  EXPECT_EQ(data.meta.stage, "rewrite");
  expect_same_rows(fewer, data.rows);
}

TEST(ShardStore, EmptyShardRoundTripsAndIsReadableByH5py) {
  const std::string path = scratch_dir("store") + "/empty.h5";
  ShardMeta meta = sample_meta();
  meta.stage_summary_json = "";
  meta.timings_json = "";
  write_shard(path, meta, {});
  ShardData data = read_shard(path);
  expect_same_meta(meta, data.meta);
  EXPECT_TRUE(data.rows.empty());
  EXPECT_TRUE(read_shard_records(path, {}).empty());

  std::string out = run_python(R"(
f = h5py.File(sys.argv[1], "r")
names = ["index", "key", "id", "subset", "status", "reason", "message", "image", "record",
         "question_score", "answer_score", "selected_questions", "selected_answers", "kept",
         "global_rank", "answer_scores", "rewritten_questions", "rewritten_answers", "rewrite_replies",
         "rewrite_reasons", "rewrite_kept", "review_p", "review_p_order1", "review_p_order2"]
for name in names:
    assert f[name].shape == (0,), (name, f[name].shape)
    assert len(f[name][()]) == 0, name
print(list(f["answer_scores_offsets"][()]), list(f["rewritten_offsets"][()]), repr(f.attrs["timings_json"]))
)",
                               {path});
  EXPECT_EQ(out, "[0] [0] ''\n");
}

TEST(ShardStore, LargeShardCrossesChunksAndRoundTrips) {
  const std::string path = scratch_dir("store") + "/large.h5";
  const std::vector<ShardRow> rows = many_rows(10000);  // > 2 chunks of 4096
  write_shard(path, sample_meta(), rows);
  expect_same_rows(rows, read_shard(path).rows);
}

TEST(ShardStore, H5pyReadsKeysOffsetsAndAttributes) {
  const std::string path = scratch_dir("store") + "/rank-00002.h5";
  write_shard(path, sample_meta(), sample_rows());
  std::string out = run_python(R"(
f = h5py.File(sys.argv[1], "r")
print(f.attrs["format"])
print(int(f.attrs["schema_version"]), f.attrs["schema_version"].dtype)
print(f.attrs["stage"], int(f.attrs["rank"]), int(f.attrs["world_size"]), int(f.attrs["input_records"]))
print(f.attrs["stage_summary_json"])
print(",".join(f["key"].asstr()[()]))
print(list(f["answer_scores_offsets"][()]), f["answer_scores_offsets"].dtype)
print(list(f["rewritten_offsets"][()]))
print(f["id"].asstr()[1], f["rewritten_answers"].asstr()[0])
print(np.isnan(f["question_score"][1]), f["kept"].dtype, list(f["kept"][()]), f["answer_scores"].dtype)
print(f["index"].compression, f["index"].chunks)
)",
                               {path});
  const std::string expected =
      "align2-shard\n"
      "2 int32\n"
      "select_answers 2 3 123456789012\n"
      "{\"kept\":2,\"threshold\":0.5,\"note\":\"阈值 ✓\"}\n"
      "0123456789abcdef0123456789abcdef,fedcba9876543210fedcba9876543210,"
      "00000000000000000000000000000000,ffffffffffffffffffffffffffffffff\n"
      "[0, 3, 3, 3, 5] uint64\n"
      "[0, 2, 2, 2, 3]\n"
      "ドキュメント-7 一只猫 🐈 和一只狗。\n"
      "True int8 [1, -1, 0, 1] float32\n"
      "gzip (4,)\n";
  EXPECT_EQ(out, expected);
}

TEST(ShardStore, RefusesUnknownSchemaVersion) {
  const std::string path = scratch_dir("store") + "/future.h5";
  write_shard(path, sample_meta(), sample_rows());
  run_python(R"(
with h5py.File(sys.argv[1], "r+") as f:
    f.attrs["schema_version"] = np.int32(7)
)",
             {path});
  const std::string expected = path +
                               ": shard schema_version 7 is not supported by this align2 (supports 2); "
                               "re-run the stage or upgrade align2";
  EXPECT_EQ(runtime_error_of([&] { read_shard(path); }), expected);
  EXPECT_EQ(runtime_error_of([&] { read_shard_meta(path); }), expected);
  EXPECT_EQ(runtime_error_of([&] { read_shard_records(path, {0}); }), expected);

  // h5py's default for a Python int is int64; still read as a version number.
  run_python(R"(
with h5py.File(sys.argv[1], "r+") as f:
    f.attrs["schema_version"] = 0
)",
             {path});
  EXPECT_TRUE(contains(runtime_error_of([&] { read_shard_meta(path); }), "shard schema_version 0 is not supported"));
}

TEST(ShardStore, RefusesNonAlign2Hdf5Files) {
  const std::string dir = scratch_dir("store");
  const std::string plain = dir + "/plain.h5";
  const std::string other = dir + "/other.h5";
  run_python(R"(
with h5py.File(sys.argv[1], "w") as f:
    f["index"] = np.arange(3, dtype=np.uint64)
with h5py.File(sys.argv[2], "w") as f:
    f.attrs["format"] = "someone-elses-format"
    f.attrs["schema_version"] = 1
)",
             {plain, other});
  std::string message = runtime_error_of([&] { read_shard(plain); });
  EXPECT_TRUE(contains(message, plain + ": not an align2 shard")) << message;
  EXPECT_TRUE(contains(message, "no 'format' attribute")) << message;
  message = runtime_error_of([&] { read_shard_meta(other); });
  EXPECT_TRUE(contains(message, other + ": not an align2 shard (format is \"someone-elses-format\"")) << message;
  message = runtime_error_of([&] { read_shard_records(other, {}); });
  EXPECT_TRUE(contains(message, "not an align2 shard")) << message;
}

TEST(ShardStore, RefusesDamagedAndMissingFiles) {
  const std::string dir = scratch_dir("store");
  const std::string path = dir + "/truncated.h5";
  write_shard(path, sample_meta(), many_rows(500));
  const std::string bytes = read_file(path);
  ASSERT_GT(bytes.size(), 1000u);
  write_file(path, bytes.substr(0, bytes.size() / 2));
  std::string message = runtime_error_of([&] { read_shard(path); });
  EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << message;
  message = runtime_error_of([&] { read_shard_meta(path); });
  EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << message;

  const std::string text = dir + "/not-hdf5.h5";
  write_file(text, "{\"this is\": \"json\"}\n");
  message = runtime_error_of([&] { read_shard(text); });
  EXPECT_TRUE(contains(message, text + ": cannot open as an HDF5 file")) << message;

  const std::string missing = dir + "/missing.h5";
  EXPECT_EQ(runtime_error_of([&] { read_shard(missing); }), missing + ": no such file");
}

TEST(ShardStore, RefusesInconsistentDatasets) {
  const std::string dir = scratch_dir("store");
  const std::string original = dir + "/good.h5";
  write_shard(original, sample_meta(), sample_rows());

  struct Case {
    std::string name;
    std::string python;    // modifies the file sys.argv[1]
    std::string message;   // expected part of the error
  };
  const std::vector<Case> cases = {
      {"missing", "del f['kept']", "dataset 'kept' is missing"},
      {"short", "f['global_rank'].resize((3,))", "dataset 'global_rank' has 3 elements, expected 4"},
      {"decreasing", "f['answer_scores_offsets'][2] = 1", "dataset 'answer_scores_offsets' decreases at row 1"},
      {"past_end", "f['answer_scores_offsets'][1] = 99", "dataset 'answer_scores_offsets' points past the end"},
      {"bad_start", "f['rewritten_offsets'][0] = 1", "dataset 'rewritten_offsets' does not start at 0"},
      {"bad_end", "f['answer_scores'].resize((9,))", "dataset 'answer_scores_offsets' ends at 5"},
      {"unpaired", "f['rewritten_answers'].resize((2,))", "dataset 'rewritten_answers' has 2 elements"},
      {"huge", "f['index'].resize((10**15,))", "dataset 'index' claims 1000000000000000 elements"},
      {"wrong_type", "del f['key']; f['key'] = np.zeros(4)", "dataset 'key' has the wrong element type"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = dir + "/" + c.name + ".h5";
    fs::copy_file(original, path);
    run_python("with h5py.File(sys.argv[1], 'r+') as f:\n    " + c.python + "\n", {path});
    std::string message = runtime_error_of([&] { read_shard(path); });
    EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << message;
    EXPECT_TRUE(contains(message, c.message)) << message;
  }
}

TEST(ShardStore, ReadsSelectedRecordsInTheOrderAsked) {
  const std::string path = scratch_dir("store") + "/records.h5";
  const std::vector<ShardRow> rows = many_rows(9000);  // three chunks
  write_shard(path, sample_meta(), rows);

  const std::vector<std::uint64_t> wanted = {8999, 3, 4500, 0, 4096, 4095, 3, 7000};  // shuffled, one repeat
  std::vector<std::string> got = read_shard_records(path, wanted);
  ASSERT_EQ(got.size(), wanted.size());
  for (std::size_t i = 0; i < wanted.size(); ++i) EXPECT_EQ(got[i], rows[wanted[i]].record) << "asked #" << i;

  EXPECT_TRUE(read_shard_records(path, {}).empty());

  const std::string utf8_path = scratch_dir("store") + "/utf8.h5";
  const std::vector<ShardRow> sample = sample_rows();
  write_shard(utf8_path, sample_meta(), sample);
  got = read_shard_records(utf8_path, {3, 1, 2});
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], sample[3].record);
  EXPECT_EQ(got[1], "");
  EXPECT_EQ(got[2], sample[2].record);

  std::string message = runtime_error_of([&] { read_shard_records(path, {1, 9000}); });
  EXPECT_TRUE(contains(message, path + ": read_shard_records: row 9000 is out of range (the shard has 9000 rows)"))
      << message;
}

TEST(ShardStore, IdenticalInputsGiveIdenticalBytes) {
  const std::string dir = scratch_dir("store");
  std::vector<ShardRow> rows = many_rows(5000);  // last chunk of every column is partial
  const std::vector<ShardRow> sample = sample_rows();
  rows.insert(rows.end(), sample.begin(), sample.end());
  write_shard(dir + "/a.h5", sample_meta(), rows);
  // Something else in between, and more than a second apart (timestamps would differ).
  write_shard(dir + "/other.h5", ShardMeta{}, many_rows(777));
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  write_shard(dir + "/b.h5", sample_meta(), rows);
  const std::string a = read_file(dir + "/a.h5");
  const std::string b = read_file(dir + "/b.h5");
  EXPECT_EQ(a.size(), b.size());
  EXPECT_TRUE(a == b) << "the two files differ";

  write_shard(dir + "/empty-a.h5", ShardMeta{}, {});
  write_shard(dir + "/empty-b.h5", ShardMeta{}, {});
  EXPECT_TRUE(read_file(dir + "/empty-a.h5") == read_file(dir + "/empty-b.h5"));
}

TEST(ShardStore, FailedWritesLeaveNothingBehind) {
  const std::string dir = scratch_dir("store");

  // Parent "folder" is a regular file.
  write_file(dir + "/blocker", "not a folder");
  const std::string under_file = dir + "/blocker/shards/rank-00000.h5";
  std::string message = runtime_error_of([&] { write_shard(under_file, sample_meta(), sample_rows()); });
  EXPECT_EQ(message.rfind(under_file + ": ", 0), 0u) << message;
  EXPECT_TRUE(contains(message, "creating parent folder")) << message;
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"blocker"});
  EXPECT_EQ(read_file(dir + "/blocker"), "not a folder");

  // The final rename fails (target is a non-empty folder): the temp file must go.
  fs::create_directories(dir + "/taken.h5/inside");
  message = runtime_error_of([&] { write_shard(dir + "/taken.h5", sample_meta(), sample_rows()); });
  EXPECT_TRUE(contains(message, dir + "/taken.h5: renaming")) << message;
  EXPECT_EQ(list_dir(dir), (std::vector<std::string>{"blocker", "taken.h5"}));
  EXPECT_EQ(list_dir(dir + "/taken.h5"), std::vector<std::string>{"inside"});

  // Unpaired rewrites are a caller bug: invalid_argument, and an existing shard stays as it was.
  const std::string path = dir + "/rank-00001.h5";
  write_shard(path, sample_meta(), sample_rows());
  const std::string before = read_file(path);
  std::vector<ShardRow> bad = sample_rows();
  bad[2].rewritten_questions = {"q1", "q2"};
  bad[2].rewritten_answers = {"a1"};
  EXPECT_THROW(write_shard(path, sample_meta(), bad), std::invalid_argument);
  EXPECT_TRUE(read_file(path) == before);
  EXPECT_EQ(list_dir(dir), (std::vector<std::string>{"blocker", "rank-00001.h5", "taken.h5"}));

  // Text HDF5 would cut short is refused too.
  bad = sample_rows();
  bad[0].record = std::string("abc\0def", 7);
  EXPECT_THROW(write_shard(path, sample_meta(), bad), std::invalid_argument);
  EXPECT_TRUE(read_file(path) == before);
}

}  // namespace
}  // namespace align2

// ---------------------------------------------------------------------------
// Streaming: ShardWriter (blocks) and ShardReader (row ranges).

namespace align2 {
namespace {

// Writes `rows` through a ShardWriter in blocks of `block` rows.
void write_in_blocks(const std::string& path, const ShardMeta& meta, const std::vector<ShardRow>& rows,
                     std::size_t block, std::uint64_t expected_rows = kUnknownRowCount) {
  ShardWriter writer(path, expected_rows);
  for (std::size_t b = 0; b < rows.size(); b += block) {
    writer.append(std::vector<ShardRow>(rows.begin() + std::ptrdiff_t(b),
                                        rows.begin() + std::ptrdiff_t(std::min(rows.size(), b + block))));
    EXPECT_EQ(writer.rows_written(), std::min(rows.size(), b + block));
  }
  writer.commit(meta);
}

// many_rows with the sample rows (UTF-8, NaN, long and empty ragged values) spread among them.
std::vector<ShardRow> mixed_rows(std::size_t n) {
  std::vector<ShardRow> rows = many_rows(n);
  const std::vector<ShardRow> sample = sample_rows();
  for (std::size_t i = 0; i < sample.size(); ++i) rows.insert(rows.begin() + std::ptrdiff_t(i * n / 4), sample[i]);
  return rows;
}

TEST(ShardWriter, BlocksOfAnySizeGiveTheRowsOfOneWrite) {
  const std::string dir = scratch_dir("writer");
  const std::vector<ShardRow> rows = mixed_rows(9000);  // three chunks, ragged columns continue across blocks
  for (std::size_t block : {std::size_t(1000), std::size_t(4096), std::size_t(7), rows.size()}) {
    SCOPED_TRACE("block " + std::to_string(block));
    const std::string path = dir + "/blocks-" + std::to_string(block) + ".h5";
    // Few blocks of 7 rows (the writer's speed is not under test here): the first 300 rows.
    const std::vector<ShardRow> part =
        block == 7 ? std::vector<ShardRow>(rows.begin(), rows.begin() + 300) : rows;
    write_in_blocks(path, sample_meta(), part, block);
    ShardData data = read_shard(path);
    expect_same_meta(sample_meta(), data.meta);
    expect_same_rows(part, data.rows);
  }
  std::vector<std::string> names = list_dir(dir);
  for (const std::string& name : names) EXPECT_EQ(name.find(".tmp-"), std::string::npos) << name;

  // Offsets continue across appends (h5py sees one file).
  std::string out = run_python(R"(
f = h5py.File(sys.argv[1], "r")
off = f["answer_scores_offsets"][()]
roff = f["rewritten_offsets"][()]
print(len(off), off[0], int(off[-1]) == len(f["answer_scores"]), bool((np.diff(off) >= 0).all()))
print(len(roff), int(roff[-1]) == len(f["rewritten_questions"]) == len(f["rewritten_answers"]))
print(f["index"].chunks, f["record"].chunks)
)",
                               {dir + "/blocks-1000.h5"});
  EXPECT_EQ(out, "9005 0 True True\n9005 True\n(4096,) (4096,)\n");
}

TEST(ShardWriter, SameBlocksGiveIdenticalBytes) {
  const std::string dir = scratch_dir("writer");
  const std::vector<ShardRow> rows = mixed_rows(5000);
  write_in_blocks(dir + "/a.h5", sample_meta(), rows, 1000);
  write_in_blocks(dir + "/other.h5", ShardMeta{}, many_rows(777), 100);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // timestamps would differ
  write_in_blocks(dir + "/b.h5", sample_meta(), rows, 1000);
  EXPECT_TRUE(read_file(dir + "/a.h5") == read_file(dir + "/b.h5")) << "the two files differ";

  // write_shard is one block with the row count as expected_rows.
  write_shard(dir + "/c.h5", sample_meta(), rows);
  write_in_blocks(dir + "/d.h5", sample_meta(), rows, rows.size(), rows.size());
  EXPECT_TRUE(read_file(dir + "/c.h5") == read_file(dir + "/d.h5")) << "write_shard differs from one append";

  // Small shards get small chunks when the writer knows their size; the content is the same.
  write_in_blocks(dir + "/small-known.h5", sample_meta(), sample_rows(), 2, 4);
  write_in_blocks(dir + "/small-unknown.h5", sample_meta(), sample_rows(), 2);
  expect_same_rows(read_shard(dir + "/small-known.h5").rows, read_shard(dir + "/small-unknown.h5").rows);
  std::string out = run_python("print(h5py.File(sys.argv[1])['key'].chunks, h5py.File(sys.argv[2])['key'].chunks)\n",
                               {dir + "/small-known.h5", dir + "/small-unknown.h5"});
  EXPECT_EQ(out, "(4,) (4096,)\n");
}

TEST(ShardWriter, WithoutCommitLeavesNothingAndKeepsTheOldFile) {
  const std::string dir = scratch_dir("writer");
  const std::string path = dir + "/shards/rank-00000.h5";
  {
    ShardWriter writer(path);
    writer.append(sample_rows());
    EXPECT_EQ(list_dir(dir + "/shards").size(), 1u);  // the temporary
    EXPECT_FALSE(fs::exists(path));
  }
  EXPECT_TRUE(list_dir(dir + "/shards").empty());

  write_shard(path, sample_meta(), sample_rows());
  const std::string before = read_file(path);
  {
    ShardWriter writer(path);
    writer.append(many_rows(10));
  }
  EXPECT_TRUE(read_file(path) == before);
  EXPECT_EQ(list_dir(dir + "/shards"), std::vector<std::string>{"rank-00000.h5"});

  // Moving the writer moves the ownership of the temporary.
  {
    ShardWriter first(path);
    first.append(many_rows(3));
    ShardWriter second = std::move(first);
    second.append(many_rows(2));
    EXPECT_EQ(second.rows_written(), 5u);
    EXPECT_EQ(second.path(), path);
    second.commit(sample_meta());
  }
  EXPECT_EQ(shard_row_count(path), 5u);
  EXPECT_EQ(list_dir(dir + "/shards"), std::vector<std::string>{"rank-00000.h5"});
}

TEST(ShardWriter, RefusesBadBlocksAndStaysUsable) {
  const std::string dir = scratch_dir("writer");
  const std::string path = dir + "/rank-00001.h5";
  ShardWriter writer(path);
  writer.append(many_rows(5));
  std::vector<ShardRow> bad = many_rows(3);
  bad[1].message = std::string("a\0b", 3);
  try {
    writer.append(bad);
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    // The message names the file's row (5 rows were written before this block).
    EXPECT_TRUE(contains(e.what(), "write_shard " + path + ": row 6 (index 3) column message contains a NUL byte"))
        << e.what();
  }
  bad = many_rows(1);
  bad[0].rewritten_questions = {"q1", "q2"};  // two questions, one answer
  EXPECT_THROW(writer.append(bad), std::invalid_argument);
  EXPECT_EQ(writer.rows_written(), 5u);
  ShardMeta future = sample_meta();
  future.schema_version = kShardSchemaVersion + 1;
  EXPECT_THROW(writer.commit(future), std::invalid_argument);

  writer.append(many_rows(2));
  writer.commit(sample_meta());
  std::vector<ShardRow> expected = many_rows(5);
  for (ShardRow& row : many_rows(2)) expected.push_back(row);
  expect_same_rows(expected, read_shard(path).rows);
  EXPECT_THROW(writer.append(many_rows(1)), std::logic_error);
  EXPECT_THROW(writer.commit(sample_meta()), std::logic_error);
}

TEST(ShardWriter, FailuresNameThePathAndLeaveNothing) {
  const std::string dir = scratch_dir("writer");
  write_file(dir + "/blocker", "not a folder");
  const std::string under_file = dir + "/blocker/rank-00000.h5";
  std::string message = runtime_error_of([&] { ShardWriter writer(under_file); });
  EXPECT_EQ(message.rfind(under_file + ": creating parent folder", 0), 0u) << message;

  fs::create_directories(dir + "/taken.h5/inside");
  message = runtime_error_of([&] {
    ShardWriter writer(dir + "/taken.h5");
    writer.append(sample_rows());
    writer.commit(sample_meta());
  });
  EXPECT_TRUE(contains(message, dir + "/taken.h5: renaming")) << message;
  EXPECT_EQ(list_dir(dir), (std::vector<std::string>{"blocker", "taken.h5"}));
}

TEST(ShardReader, ReadsRowRanges) {
  const std::string path = scratch_dir("reader") + "/rank-00000.h5";
  const std::vector<ShardRow> rows = mixed_rows(9000);
  write_in_blocks(path, sample_meta(), rows, 3000);
  EXPECT_EQ(shard_row_count(path), rows.size());

  ShardReader reader(path);
  EXPECT_EQ(reader.rows(), rows.size());
  EXPECT_EQ(reader.path(), path);
  expect_same_meta(sample_meta(), reader.meta());
  std::vector<ShardRow> all;
  for (std::uint64_t b = 0; b < reader.rows(); b += 1000) {  // blocks not aligned with the chunks
    std::vector<ShardRow> block = reader.read_rows(b, std::min<std::uint64_t>(reader.rows(), b + 1000));
    for (ShardRow& row : block) all.push_back(std::move(row));
  }
  expect_same_rows(rows, all);

  for (auto [b, e] : {std::pair<std::uint64_t, std::uint64_t>{0, 0}, {4095, 4097}, {2250, 2251}, {8990, 9004}}) {
    SCOPED_TRACE(std::to_string(b) + ".." + std::to_string(e));
    expect_same_rows(std::vector<ShardRow>(rows.begin() + std::ptrdiff_t(b), rows.begin() + std::ptrdiff_t(e)),
                     read_shard_rows(path, b, e));
    expect_same_rows(std::vector<ShardRow>(rows.begin() + std::ptrdiff_t(b), rows.begin() + std::ptrdiff_t(e)),
                     reader.read_rows(b, e, ShardReadOptions{false}), /*records=*/false);
  }

  std::string message = runtime_error_of([&] { read_shard_rows(path, 9000, 9005); });
  EXPECT_EQ(message, path + ": read_rows: rows [9000, 9005) are out of range (the shard has 9004 rows)");
  message = runtime_error_of([&] { reader.read_rows(5, 4); });
  EXPECT_TRUE(contains(message, "rows [5, 4) are out of range")) << message;
  EXPECT_EQ(runtime_error_of([&] { shard_row_count(path + ".missing"); }), path + ".missing: no such file");
}

TEST(ShardReader, ChecksOffsetsOfEveryRange) {
  const std::string dir = scratch_dir("reader");
  const std::string original = dir + "/good.h5";
  write_shard(original, sample_meta(), mixed_rows(100));  // 104 rows
  struct Case {
    std::string name;
    std::string python;
    std::uint64_t begin, end;  // a range that does not contain the damage
    std::string message;
  };
  const std::vector<Case> cases = {
      {"bad_start", "f['answer_scores_offsets'][0] = 1", 50, 60, "dataset 'answer_scores_offsets' does not start at 0"},
      {"bad_end",
       "for n in ['rewritten_questions', 'rewritten_answers', 'rewrite_replies', 'rewrite_reasons', 'rewrite_kept',"
       " 'review_p', 'review_p_order1', 'review_p_order2']: f[n].resize((999,))",
       10, 20,
       "dataset 'rewritten_offsets' ends at"},
      {"decreasing", "f['answer_scores_offsets'][30] = 0", 20, 40, "dataset 'answer_scores_offsets' decreases at row 29"},
      {"past_end", "f['answer_scores_offsets'][31] = 10**9", 25, 35, "dataset 'answer_scores_offsets' points past the end"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = dir + "/" + c.name + ".h5";
    fs::copy_file(original, path);
    run_python("with h5py.File(sys.argv[1], 'r+') as f:\n    " + c.python + "\n", {path});
    std::string message = runtime_error_of([&] { read_shard_rows(path, c.begin, c.end); });
    EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << message;
    EXPECT_TRUE(contains(message, c.message)) << message;
  }
  // Datasets of the wrong length are refused when the reader opens the file.
  const std::string path = dir + "/short.h5";
  fs::copy_file(original, path);
  run_python("with h5py.File(sys.argv[1], 'r+') as f:\n    f['kept'].resize((3,))\n", {path});
  EXPECT_TRUE(contains(runtime_error_of([&] { ShardReader reader(path); }), "dataset 'kept' has 3 elements"));
}

}  // namespace
}  // namespace align2
