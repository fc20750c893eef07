#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/pipeline/ranking.h"

namespace align2 {
namespace {

Candidate c(std::uint64_t index, std::uint32_t subset, double score, const std::string& key,
            const std::string& image = "") {
  return Candidate{index, subset, score, key, image};
}

TEST(Ranking, KeepsFloorOfFractionPerSubsetLikePython) {
  // int(0.3 * 10) == 3 in Python (0.3 * 10 = 3.0000000000000004); int(0.3 * 7) == 2.
  std::vector<Candidate> cs;
  for (int i = 0; i < 10; ++i) cs.push_back(c(i, 0, i, "k" + std::to_string(i)));
  for (int i = 0; i < 7; ++i) cs.push_back(c(100 + i, 1, -i, "m" + std::to_string(i)));
  Selection s = select_top_fraction(cs, 0.3, false);
  EXPECT_EQ(s.by_subset[0].kept, 3u);
  EXPECT_EQ(s.by_subset[1].kept, 2u);
  // The best three of subset 0 are scores 9, 8, 7; of subset 1 scores 0, -1.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(s.kept[i], i >= 7 ? 1 : 0) << i;
  for (int i = 0; i < 7; ++i) EXPECT_EQ(s.kept[10 + i], i < 2 ? 1 : 0) << i;
  EXPECT_EQ(s.by_subset[0].threshold, 7.0);
  EXPECT_EQ(s.by_subset[1].threshold, -1.0);
  // 0.29 * 100 = 28.999999999999996 → 28 (Python int truncates).
  std::vector<Candidate> hundred;
  for (int i = 0; i < 100; ++i) hundred.push_back(c(i, 0, i, std::to_string(1000 + i)));
  EXPECT_EQ(select_top_fraction(hundred, 0.29, false).by_subset[0].kept, 28u);
}

TEST(Ranking, TiesBreakByKey) {
  std::vector<Candidate> cs = {c(0, 0, 1.0, "b"), c(1, 0, 1.0, "a"), c(2, 0, 1.0, "c"), c(3, 0, 0.5, "0")};
  Selection s = select_top_fraction(cs, 0.5, false);
  EXPECT_EQ(s.kept, (std::vector<std::uint8_t>{1, 1, 0, 0}));
  // Order of the input does not matter.
  std::vector<Candidate> rev(cs.rbegin(), cs.rend());
  Selection r = select_top_fraction(rev, 0.5, false);
  EXPECT_EQ(r.kept, (std::vector<std::uint8_t>{0, 0, 1, 1}));
}

TEST(Ranking, OnePerImagePerSubset) {
  std::vector<Candidate> cs = {c(0, 0, 0.9, "a", "x.jpg"), c(1, 0, 0.8, "b", "x.jpg"), c(2, 0, 0.7, "c", "y.jpg"),
                               c(3, 0, 0.6, "d", ""), c(4, 0, 0.5, "e", ""), c(5, 1, 0.1, "f", "x.jpg")};
  Selection s = select_top_fraction(cs, 0.8, true);  // subset 0: floor(0.8*5) = 4 of 4 eligible
  EXPECT_EQ(s.by_subset[0].eligible, 4u);
  EXPECT_EQ(s.kept, (std::vector<std::uint8_t>{1, 0, 1, 1, 1, 0}));
  EXPECT_EQ(s.by_subset[1].kept, 0u);  // floor(0.8 * 1) = 0
  Selection off = select_top_fraction(cs, 0.8, false);
  EXPECT_EQ(off.kept, (std::vector<std::uint8_t>{1, 1, 1, 1, 0, 0}));
}

TEST(Ranking, NanScoresRankLast) {
  double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<Candidate> cs = {c(0, 0, nan, "a"), c(1, 0, -5, "b")};
  Selection s = select_top_fraction(cs, 0.5, false);
  EXPECT_EQ(s.kept, (std::vector<std::uint8_t>{0, 1}));
  EXPECT_TRUE(ranks_before(-1e30, "z", nan, "a"));
  EXPECT_FALSE(ranks_before(nan, "a", -1e30, "z"));
}

TEST(Ranking, RejectsBadFraction) {
  EXPECT_THROW(select_top_fraction({}, 1.5, false), std::invalid_argument);
  EXPECT_THROW(select_top_fraction({}, std::nan(""), false), std::invalid_argument);
  EXPECT_TRUE(select_top_fraction({}, 0.3, true).kept.empty());
}

}  // namespace
}  // namespace align2
