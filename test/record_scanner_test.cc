// The record scanner (core/data/record_scanner.h) splits a JSON array exactly as a plain
// byte-at-a-time walk does: strings, escapes (runs of backslashes of any length, at any place
// in a 64-byte chunk and across chunks and read blocks), brackets inside strings, and
// backslashes outside strings (not JSON, but the split must not depend on how the scanner
// steps). The reference walk here is the test's own, written for clarity, not speed.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/data/record_scanner.h"
#include "test/test_support.h"

namespace align2 {
namespace {

struct Split {
  std::uint64_t offset = 0, length = 0, line = 0;
  bool operator==(const Split& o) const { return offset == o.offset && length == o.length && line == o.line; }
};

// The records of a JSON array of objects, byte by byte: inside a string a backslash escapes
// the next byte; outside strings only quotes and brackets matter.
std::vector<Split> reference_split(const std::string& text) {
  std::vector<Split> out;
  std::size_t i = text.find('[') + 1;
  std::uint64_t line = 1 + std::uint64_t(std::count(text.begin(), text.begin() + std::ptrdiff_t(i), '\n'));
  auto blank = [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; };
  while (i < text.size()) {
    while (blank(text[i]) || text[i] == ',') line += text[i++] == '\n';
    if (text[i] == ']') break;
    Split s{i, 0, line};
    int depth = 0;
    bool in_string = false, escape = false;
    for (;; ++i) {
      const char c = text[i];
      line += c == '\n';
      if (in_string) {
        if (escape) escape = false;
        else if (c == '\\') escape = true;
        else if (c == '"') in_string = false;
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if ((c == '}' || c == ']') && --depth == 0) {
        break;
      }
    }
    s.length = ++i - s.offset;
    out.push_back(s);
  }
  return out;
}

// Text for inside a string: letters, escaped quotes and newlines, runs of escaped backslashes,
// brackets, raw newlines, multi-byte UTF-8.
std::string string_body(std::mt19937& rng, std::size_t max_len) {
  static const char* const kPieces[] = {"a", "b", " ", "\\\"", "\\n", "\\\\", "\\\\\\\\", "\\\\\\\"",
                                        "{", "}", "[", "]", "\n", "\xC3\xA9", "\\u00e9", ",", ":"};
  std::string s;
  const std::size_t len = rng() % (max_len + 1);
  while (s.size() < len) s += kPieces[rng() % (sizeof kPieces / sizeof *kPieces)];
  return s;
}

// One record: an object with nested arrays and objects, blanks of varied width (so that every
// byte of a 64-byte chunk is sometimes a quote, a backslash or a bracket), and now and then a
// backslash between tokens (not JSON).
std::string record(std::mt19937& rng, int depth) {
  std::string r = "{";
  const int fields = 1 + int(rng() % 4);
  for (int f = 0; f < fields; ++f) {
    if (f) r += std::string(rng() % 3, ' ') + ",";
    r += std::string(rng() % 4, rng() % 2 ? ' ' : '\n');
    if (rng() % 25 == 0) r += rng() % 2 ? "\\ " : "\\";  // a stray backslash, before a blank or a quote
    r += "\"" + string_body(rng, 12) + "\":";
    const unsigned kind = rng() % 4;
    if (kind == 0 && depth < 3) {
      r += "[";
      const int items = int(rng() % 4);
      for (int k = 0; k < items; ++k) r += (k ? "," : "") + record(rng, depth + 1);
      r += "]";
    } else if (kind == 1 && depth < 3) {
      r += record(rng, depth + 1);
    } else {
      r += "\"" + string_body(rng, 150) + "\"";
    }
  }
  return r + std::string(rng() % 3, '\n') + "}";
}

std::vector<Split> scanned(const std::string& path) {
  std::vector<Split> out;
  scan_records(path, ScanRange{}, 1u << 30, [&](RawRecord& raw) {
    EXPECT_EQ(raw.bytes.size(), raw.length) << "record at byte " << raw.offset;
    out.push_back({raw.offset, raw.length, raw.line});
  });
  return out;
}

void write_file(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

TEST(RecordScanner, SplitsEveryArrayAsTheByteWalkDoes) {
  const std::string dir = test::scratch_dir("record_scanner");
  std::mt19937 rng(20261206);
  for (int trial = 0; trial < 400; ++trial) {
    std::string text = std::string(rng() % 70, ' ') + "[";
    const int records = 1 + int(rng() % 12);
    for (int k = 0; k < records; ++k) text += (k ? ",\n" : "\n") + std::string(rng() % 65, ' ') + record(rng, 0);
    text += "\n]\n";
    const std::string path = dir + "/pool.json";
    write_file(path, text);
    const std::vector<Split> want = reference_split(text), got = scanned(path);
    ASSERT_EQ(got.size(), want.size()) << "trial " << trial;
    for (std::size_t k = 0; k < want.size(); ++k)
      ASSERT_TRUE(got[k] == want[k]) << "trial " << trial << ", record " << k << ": offset " << got[k].offset << " vs "
                                     << want[k].offset << ", length " << got[k].length << " vs " << want[k].length
                                     << ", line " << got[k].line << " vs " << want[k].line;
  }
}

TEST(RecordScanner, RecordsAcrossReadBlocksKeepTheirBytes) {
  // About 9 MB: records straddle the scanner's 4 MB read blocks; each record's bytes are
  // checked against the file's.
  const std::string dir = test::scratch_dir("record_scanner_blocks");
  std::mt19937 rng(7);
  std::string text = "[";
  for (int k = 0; text.size() < (9u << 20); ++k) text += (k ? ",\n " : "\n ") + record(rng, 0);
  text += "\n]";
  const std::string path = dir + "/pool.json";
  write_file(path, text);
  const std::vector<Split> want = reference_split(text);
  std::size_t k = 0;
  scan_records(path, ScanRange{}, 1u << 30, [&](RawRecord& raw) {
    ASSERT_LT(k, want.size());
    EXPECT_TRUE((Split{raw.offset, raw.length, raw.line}) == want[k]) << "record " << k;
    EXPECT_EQ(raw.bytes, std::string_view(text).substr(raw.offset, raw.length)) << "record " << k;
    ++k;
  });
  EXPECT_EQ(k, want.size());
}

}  // namespace
}  // namespace align2
