// plan_shards: coverage and contiguity, optimal bottleneck against brute force on
// small inputs, the edge cases (parts > n, zero costs, one huge record), the
// documented boundary rule, determinism, and a large input.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "distributed/shard_plan.h"
#include "core/data/record_cost.h"

namespace align2 {
namespace {

using Costs = std::vector<std::uint64_t>;

std::uint64_t range_cost(const Costs& costs, const ShardRange& r) {
  std::uint64_t sum = 0;
  for (std::uint64_t i = r.begin; i < r.end; ++i) sum += costs[i];
  return sum;
}

std::uint64_t bottleneck(const Costs& costs, const std::vector<ShardRange>& plan) {
  std::uint64_t worst = 0;
  for (const ShardRange& r : plan) worst = std::max(worst, range_cost(costs, r));
  return worst;
}

// Checks the structural promises of plan_shards' contract.
void expect_valid_plan(const Costs& costs, int parts, const std::vector<ShardRange>& plan) {
  const std::uint64_t n = costs.size();
  ASSERT_EQ(plan.size(), static_cast<std::size_t>(parts));
  EXPECT_EQ(plan.front().begin, 0u);
  EXPECT_EQ(plan.back().end, n);
  for (std::size_t k = 0; k < plan.size(); ++k) {
    EXPECT_LE(plan[k].begin, plan[k].end) << "range " << k;
    if (k > 0) {
      EXPECT_EQ(plan[k].begin, plan[k - 1].end) << "range " << k;
    }
    if (n >= static_cast<std::uint64_t>(parts)) {
      EXPECT_LT(plan[k].begin, plan[k].end) << "range " << k;
    }
  }
}

// Smallest possible largest-range cost over every split into `parts` contiguous
// (possibly empty) ranges: tries every set of boundaries.
std::uint64_t brute_force_bottleneck(const Costs& costs, int parts) {
  const std::size_t n = costs.size();
  std::uint64_t best = std::numeric_limits<std::uint64_t>::max();
  std::vector<std::size_t> bounds(static_cast<std::size_t>(parts) + 1, 0);
  bounds.back() = n;
  // Recursive enumeration of non-decreasing boundaries.
  std::function<void(std::size_t, std::size_t)> place = [&](std::size_t k, std::size_t from) {
    if (k == static_cast<std::size_t>(parts)) {
      std::uint64_t worst = 0;
      for (std::size_t j = 0; j < static_cast<std::size_t>(parts); ++j) {
        std::uint64_t sum = 0;
        for (std::size_t i = bounds[j]; i < bounds[j + 1]; ++i) sum += costs[i];
        worst = std::max(worst, sum);
      }
      best = std::min(best, worst);
      return;
    }
    for (std::size_t b = from; b <= n; ++b) {
      bounds[k] = b;
      place(k + 1, b);
    }
  };
  place(1, 0);
  return best;
}

TEST(ShardPlan, RejectsNonPositiveParts) {
  EXPECT_THROW(plan_shards({1, 2, 3}, 0), std::invalid_argument);
  EXPECT_THROW(plan_shards({1, 2, 3}, -4), std::invalid_argument);
}

TEST(ShardPlan, OnePartTakesEverything) {
  const Costs costs = {3, 1, 4, 1, 5};
  auto plan = plan_shards(costs, 1);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].begin, 0u);
  EXPECT_EQ(plan[0].end, 5u);
}

TEST(ShardPlan, EmptyInput) {
  auto plan = plan_shards({}, 3);
  expect_valid_plan({}, 3, plan);
  for (const auto& r : plan) EXPECT_EQ(r.begin, r.end);
}

TEST(ShardPlan, MorePartsThanRecords) {
  const Costs costs = {5, 0, 7};
  auto plan = plan_shards(costs, 5);
  expect_valid_plan(costs, 5, plan);
  const std::vector<std::pair<std::uint64_t, std::uint64_t>> expected = {{0, 1}, {1, 2}, {2, 3}, {3, 3}, {3, 3}};
  for (std::size_t k = 0; k < plan.size(); ++k) {
    EXPECT_EQ(plan[k].begin, expected[k].first);
    EXPECT_EQ(plan[k].end, expected[k].second);
  }
}

TEST(ShardPlan, AllZeroCostsSplitByCount) {
  const Costs costs(10, 0);
  auto plan = plan_shards(costs, 3);
  expect_valid_plan(costs, 3, plan);
  // Boundaries at the equal-count positions 10/3 = 3.33 -> 3 and 20/3 = 6.67 -> 7.
  EXPECT_EQ(plan[0].end, 3u);
  EXPECT_EQ(plan[1].end, 7u);
}

TEST(ShardPlan, UniformCostsDifferByAtMostOneRecord) {
  for (int n = 1; n <= 40; ++n) {
    for (int parts = 1; parts <= n; ++parts) {
      const Costs costs(static_cast<std::size_t>(n), 7);
      auto plan = plan_shards(costs, parts);
      expect_valid_plan(costs, parts, plan);
      std::uint64_t lo = n, hi = 0;
      for (const auto& r : plan) {
        lo = std::min<std::uint64_t>(lo, r.end - r.begin);
        hi = std::max<std::uint64_t>(hi, r.end - r.begin);
      }
      EXPECT_LE(hi - lo, 1u) << "n=" << n << " parts=" << parts;
    }
  }
}

TEST(ShardPlan, OneHugeRecordGetsItsOwnRange) {
  Costs costs(20, 1);
  costs[7] = 1'000'000;
  auto plan = plan_shards(costs, 4);
  expect_valid_plan(costs, 4, plan);
  EXPECT_EQ(bottleneck(costs, plan), 1'000'000u);
  // The huge record's range holds nothing else only if that does not raise the
  // bottleneck - it does not, and the others still split the rest non-empty.
  for (const auto& r : plan) {
    if (r.begin <= 7 && 7 < r.end) {
      EXPECT_LE(range_cost(costs, r), 1'000'000u + 19u);
    }
  }
  // Huge record at the very end, with zero-cost records before it.
  Costs tail(6, 0);
  tail.push_back(std::numeric_limits<std::uint64_t>::max() / 2);
  auto plan2 = plan_shards(tail, 3);
  expect_valid_plan(tail, 3, plan2);
  EXPECT_EQ(bottleneck(tail, plan2), tail.back());
}

TEST(ShardPlan, ZeroCostRecordsMixedIn) {
  const Costs costs = {0, 0, 5, 0, 0, 5, 0, 0, 5, 0, 0};
  auto plan = plan_shards(costs, 3);
  expect_valid_plan(costs, 3, plan);
  EXPECT_EQ(bottleneck(costs, plan), 5u);
}

TEST(ShardPlan, OverflowingTotalThrows) {
  const Costs costs = {std::numeric_limits<std::uint64_t>::max(), 1};
  EXPECT_THROW(plan_shards(costs, 2), std::overflow_error);
}

TEST(ShardPlan, MatchesBruteForceOptimumOnRandomSmallInputs) {
  std::mt19937_64 rng(20240611);
  for (int trial = 0; trial < 3000; ++trial) {
    const int n = static_cast<int>(rng() % 11);  // 0..10 records
    const int parts = 1 + static_cast<int>(rng() % 6);
    Costs costs(static_cast<std::size_t>(n));
    const int shape = trial % 4;
    for (auto& c : costs) {
      switch (shape) {
        case 0: c = rng() % 10; break;                           // small, zeros common
        case 1: c = (rng() % 4 == 0) ? rng() % 1000 : rng() % 3; break;  // skewed
        case 2: c = rng() % 2; break;                             // zeros and ones
        default: c = 1 + rng() % 100; break;                      // positive
      }
    }
    auto plan = plan_shards(costs, parts);
    SCOPED_TRACE("trial " + std::to_string(trial));
    expect_valid_plan(costs, parts, plan);
    EXPECT_EQ(bottleneck(costs, plan), brute_force_bottleneck(costs, parts));
  }
}

// Straightforward O(P n^2) reference of the contract in shard_plan.h: the optimum
// bottleneck by dynamic programming, then each boundary by scanning every
// allowed position and applying the documented tie-break keys.
std::vector<ShardRange> reference_plan(const Costs& costs, int parts) {
  const std::size_t n = costs.size();
  const std::size_t P = static_cast<std::size_t>(parts);
  std::vector<ShardRange> plan(P);
  if (n < P) {
    for (std::size_t k = 0; k < P; ++k) plan[k] = {std::min(k, n), std::min(k + 1, n)};
    return plan;
  }
  std::vector<std::uint64_t> prefix(n + 1, 0);
  for (std::size_t i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + costs[i];
  const std::uint64_t total = prefix[n];
  // best[j][i]: smallest largest-range cost splitting records [0, i) into j ranges.
  const std::uint64_t inf = std::numeric_limits<std::uint64_t>::max();
  std::vector<std::vector<std::uint64_t>> best(P + 1, std::vector<std::uint64_t>(n + 1, inf));
  best[0][0] = 0;
  for (std::size_t j = 1; j <= P; ++j) {
    for (std::size_t i = 0; i <= n; ++i) {
      for (std::size_t s = 0; s <= i; ++s) {
        if (best[j - 1][s] == inf) continue;
        best[j][i] = std::min(best[j][i], std::max(best[j - 1][s], prefix[i] - prefix[s]));
      }
    }
  }
  const std::uint64_t bound = best[P][n];
  // Can records [p, n) be split into exactly m non-empty ranges of cost <= bound?
  auto suffix_ok = [&](std::size_t p, std::size_t m) {
    if (n - p < m) return false;
    std::size_t used = 0, pos = p;
    while (pos < n) {
      std::size_t end = pos;
      while (end < n && prefix[end + 1] - prefix[pos] <= bound) ++end;
      if (end == pos) return false;
      pos = end;
      ++used;
    }
    return used <= m && (m > 0 || p == n);
  };
  using u128 = unsigned __int128;
  auto dist = [](u128 a, u128 b) { return a > b ? a - b : b - a; };
  std::size_t previous = 0;
  for (std::size_t k = 1; k < P; ++k) {
    bool found = false;
    std::size_t chosen = 0;
    for (std::size_t p = previous + 1; p + (P - k) <= n; ++p) {
      if (prefix[p] - prefix[previous] > bound || !suffix_ok(p, P - k)) continue;
      if (!found) {
        chosen = p;
        found = true;
        continue;
      }
      const u128 c1 = dist(u128(prefix[p]) * P, u128(total) * k);
      const u128 c0 = dist(u128(prefix[chosen]) * P, u128(total) * k);
      const u128 d1 = dist(u128(p) * P, u128(n) * k);
      const u128 d0 = dist(u128(chosen) * P, u128(n) * k);
      if (c1 < c0 || (c1 == c0 && d1 < d0)) chosen = p;  // equal keys: keep the smaller p
    }
    EXPECT_TRUE(found) << "reference found no boundary " << k;
    plan[k - 1] = {previous, chosen};
    previous = chosen;
  }
  plan[P - 1] = {previous, n};
  return plan;
}

TEST(ShardPlan, FollowsDocumentedBoundaryRule) {
  std::mt19937_64 rng(99);
  for (int trial = 0; trial < 1500; ++trial) {
    const std::size_t n = rng() % 41;  // 0..40 records
    const int parts = 1 + static_cast<int>(rng() % 8);
    Costs costs(n);
    for (auto& c : costs) {
      switch (trial % 3) {
        case 0: c = rng() % 4; break;                               // many zeros and ties
        case 1: c = (rng() % 10 == 0) ? 200 + rng() % 800 : rng() % 20; break;  // skewed
        default: c = 1 + rng() % 1000; break;
      }
    }
    const auto plan = plan_shards(costs, parts);
    const auto want = reference_plan(costs, parts);
    SCOPED_TRACE("trial " + std::to_string(trial) + " n=" + std::to_string(n) +
                 " parts=" + std::to_string(parts));
    expect_valid_plan(costs, parts, plan);
    ASSERT_EQ(plan.size(), want.size());
    for (std::size_t k = 0; k < plan.size(); ++k) {
      EXPECT_EQ(plan[k].begin, want[k].begin) << "range " << k;
      EXPECT_EQ(plan[k].end, want[k].end) << "range " << k;
    }
  }
}

TEST(ShardPlan, Deterministic) {
  std::mt19937_64 rng(7);
  Costs costs(50'000);
  for (auto& c : costs) c = rng() % 5000;
  const auto first = plan_shards(costs, 17);
  for (int i = 0; i < 3; ++i) {
    const Costs copy = costs;
    const auto again = plan_shards(copy, 17);
    ASSERT_EQ(again.size(), first.size());
    for (std::size_t k = 0; k < first.size(); ++k) {
      EXPECT_EQ(again[k].begin, first[k].begin);
      EXPECT_EQ(again[k].end, first[k].end);
    }
  }
}

TEST(ShardPlan, BeatsEqualCountSplitOnSkewedCosts) {
  // Image records (expensive) cluster at the front, as in a corpus sorted by source.
  std::mt19937_64 rng(11);
  Costs costs;
  for (int i = 0; i < 2000; ++i) costs.push_back(estimate_record_cost(200 + rng() % 800, true, 576));
  for (int i = 0; i < 8000; ++i) costs.push_back(estimate_record_cost(100 + rng() % 400, false, 576));
  const int parts = 8;
  auto plan = plan_shards(costs, parts);
  expect_valid_plan(costs, parts, plan);

  std::vector<ShardRange> equal_count(parts);
  for (int k = 0; k < parts; ++k) {
    equal_count[k] = {costs.size() * k / parts, costs.size() * (k + 1) / parts};
  }
  const std::uint64_t planned = bottleneck(costs, plan);
  const std::uint64_t naive = bottleneck(costs, equal_count);
  EXPECT_LT(planned, naive);
  std::uint64_t total = 0;
  for (auto c : costs) total += c;
  // Near the ideal share: within one record's cost of total / parts.
  std::uint64_t max_cost = *std::max_element(costs.begin(), costs.end());
  EXPECT_LE(planned, total / parts + max_cost);
  // The plan is also balanced beneath the bottleneck: no range far below the average.
  for (const auto& r : plan) EXPECT_GE(range_cost(costs, r) + max_cost, total / parts);
}

TEST(ShardPlan, EstimateRecordCost) {
  EXPECT_EQ(estimate_record_cost(0, false, 576), 0u);
  EXPECT_EQ(estimate_record_cost(1, false, 576), 1u);
  EXPECT_EQ(estimate_record_cost(8, false, 576), 2u);
  EXPECT_EQ(estimate_record_cost(9, false, 576), 3u);
  EXPECT_EQ(estimate_record_cost(8, true, 576), 578u);
  EXPECT_EQ(estimate_record_cost(0, true, 576), 576u);
  EXPECT_EQ(estimate_record_cost(400, true, std::numeric_limits<std::uint64_t>::max()),
            std::numeric_limits<std::uint64_t>::max());
}

TEST(ShardPlan, TenMillionRecordsQuickly) {
  std::mt19937_64 rng(3);
  Costs costs(10'000'000);
  for (auto& c : costs) c = (rng() % 8 == 0) ? 576 + rng() % 300 : rng() % 300;
  const auto start = std::chrono::steady_clock::now();
  auto plan = plan_shards(costs, 64);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  expect_valid_plan(costs, 64, plan);
  EXPECT_LT(seconds, 10.0);  // typically well under a second; generous for slow CI
  std::uint64_t total = 0;
  for (auto c : costs) total += c;
  EXPECT_LE(bottleneck(costs, plan), total / 64 + 876);
}

}  // namespace
}  // namespace align2
