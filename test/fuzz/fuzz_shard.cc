// Fuzz target: the HDF5 shard reader on mutated shard files.
// The input is written as a file and read with every reader of core/store/shard_store.h:
// ShardReader (meta, row count, all rows, and the rows again in two blocks), read_shard,
// read_shard_meta, shard_row_count and read_shard_records. Each must read the file or refuse
// it with std::runtime_error; what the readers return must agree with each other.
// Note: libhdf5 itself is Debian's build (not instrumented): ASan sees its heap use, but
// libFuzzer's coverage guidance stops at align2's own code.
// Seeds: test/fuzz/corpus/shard/ (tiny shards written by align2's ShardWriter from real
// LLaVA records).
#include <cstdint>
#include <string>
#include <vector>

#include "core/store/shard_store.h"
#include "test/fuzz/fuzz_common.h"

using namespace align2;
using align2::fuzz::expect_clean_errors;

namespace {

constexpr const char* kTarget = "shard";

bool same_row(const ShardRow& a, const ShardRow& b) {
  auto same_double = [](double x, double y) { return (x != x && y != y) || x == y; };
  return a.index == b.index && a.key == b.key && a.id == b.id && a.subset == b.subset && a.status == b.status &&
         a.reason == b.reason && a.message == b.message && a.image == b.image && a.record == b.record &&
         same_double(a.question_score, b.question_score) && same_double(a.answer_score, b.answer_score) &&
         a.answer_scores.size() == b.answer_scores.size() && a.selected_questions == b.selected_questions &&
         a.selected_answers == b.selected_answers && a.kept == b.kept && a.truncated == b.truncated &&
         a.global_rank == b.global_rank && a.rewritten_questions == b.rewritten_questions &&
         a.rewritten_answers == b.rewritten_answers && a.rewrite_replies == b.rewrite_replies &&
         a.rewrite_reasons == b.rewrite_reasons && a.rewrite_kept == b.rewrite_kept &&
         a.review_p.size() == b.review_p.size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = (align2::fuzz::scratch_dir() / "shard.h5").string();
  align2::fuzz::write_bytes(path, data, size);

  std::vector<ShardRow> rows;
  std::uint64_t n = 0;
  const bool reader_ok = expect_clean_errors(kTarget, [&] {
    ShardReader reader(path);
    n = reader.rows();
    rows = reader.read_rows(0, n);
    FUZZ_CHECK(kTarget, rows.size() == n, "read_rows(0, N) gave " + std::to_string(rows.size()) + " rows");
    const std::uint64_t half = n / 2;
    std::vector<ShardRow> first = reader.read_rows(0, half), second = reader.read_rows(half, n);
    FUZZ_CHECK(kTarget, first.size() == half && second.size() == n - half, "blocks");
    for (std::uint64_t i = 0; i < n; ++i)
      FUZZ_CHECK(kTarget, same_row(i < half ? first[i] : second[i - half], rows[i]),
                 "row " + std::to_string(i) + " differs when read in blocks");
    const std::vector<ShardRow> none = reader.read_rows(n, n);
    FUZZ_CHECK(kTarget, none.empty(), "read_rows(N, N)");
  });

  ShardData whole;
  const bool whole_ok = expect_clean_errors(kTarget, [&] { whole = read_shard(path); });
  FUZZ_CHECK(kTarget, reader_ok == whole_ok,
             std::string("ShardReader ") + (reader_ok ? "read" : "refused") + " the file, read_shard " +
                 (whole_ok ? "read" : "refused") + " it");
  if (reader_ok && whole_ok) {
    FUZZ_CHECK(kTarget, whole.rows.size() == n, "read_shard and ShardReader disagree on the row count");
    for (std::uint64_t i = 0; i < n; ++i)
      FUZZ_CHECK(kTarget, same_row(whole.rows[i], rows[i]), "row " + std::to_string(i) + " differs");
  }
  expect_clean_errors(kTarget, [&] { read_shard_meta(path); });
  expect_clean_errors(kTarget, [&] {
    const std::uint64_t count = shard_row_count(path);
    if (reader_ok) FUZZ_CHECK(kTarget, count == n, "shard_row_count");
  });
  if (reader_ok && n > 0) {
    expect_clean_errors(kTarget, [&] {
      const std::vector<std::string> records = read_shard_records(path, {n - 1, 0, n - 1});
      FUZZ_CHECK(kTarget, records.size() == 3 && records[0] == rows[n - 1].record && records[1] == rows[0].record,
                 "read_shard_records differs from read_rows");
    });
  }
  return 0;
}
