#include "distributed/shard_plan.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace align2 {

namespace {

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
using u128 = unsigned __int128;

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) { return b > kMax - a ? kMax : a + b; }

u128 abs_diff(u128 a, u128 b) { return a > b ? a - b : b - a; }

// prefix[i] = costs[0] + ... + costs[i-1]; n + 1 entries, non-decreasing.
using Prefix = std::vector<std::uint64_t>;

// Largest e in [s, n] with prefix[e] - prefix[s] <= bound: where a range starting
// at s and costing at most `bound` can end at the latest (zero-cost records after
// it are taken in).
std::size_t reach(const Prefix& prefix, std::size_t s, std::uint64_t bound) {
  const std::uint64_t limit = saturating_add(prefix[s], bound);
  return static_cast<std::size_t>(std::upper_bound(prefix.begin() + s, prefix.end(), limit) -
                                  prefix.begin()) -
         1;
}

// Whether greedy left-to-right filling with ranges of cost <= bound needs at most
// `parts` ranges. Needs bound >= every single cost (each jump then advances).
bool feasible(const Prefix& prefix, std::uint64_t bound, int parts) {
  const std::size_t n = prefix.size() - 1;
  std::size_t pos = 0;
  int used = 0;
  while (pos < n) {
    if (++used > parts) return false;
    pos = reach(prefix, pos, bound);
  }
  return true;
}

}  // namespace

std::vector<ShardRange> plan_shards(const std::vector<std::uint64_t>& costs, int parts) {
  if (parts < 1) {
    throw std::invalid_argument("plan_shards: parts must be >= 1, got " + std::to_string(parts));
  }
  const std::size_t n = costs.size();
  const std::size_t P = static_cast<std::size_t>(parts);
  std::vector<ShardRange> ranges(P);

  if (n < P) {  // one record each for the first n ranges, the rest empty
    for (std::size_t k = 0; k < P; ++k) {
      const std::uint64_t b = std::min<std::uint64_t>(k, n);
      const std::uint64_t e = std::min<std::uint64_t>(k + 1, n);
      ranges[k] = {b, e};
    }
    return ranges;
  }

  Prefix prefix(n + 1, 0);
  std::uint64_t max_cost = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (costs[i] > kMax - prefix[i]) {
      throw std::overflow_error("plan_shards: the sum of " + std::to_string(n) +
                                " costs exceeds 2^64-1");
    }
    prefix[i + 1] = prefix[i] + costs[i];
    max_cost = std::max(max_cost, costs[i]);
  }
  const std::uint64_t total = prefix[n];

  // Smallest feasible bottleneck. Lower bound: no range can cost less than the
  // biggest record or the average; `total` (one range) is always feasible.
  std::uint64_t lo = std::max(max_cost, total / P + (total % P != 0 ? 1 : 0));
  std::uint64_t hi = total;
  while (lo < hi) {
    const std::uint64_t mid = lo + (hi - lo) / 2;
    if (feasible(prefix, mid, parts)) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  const std::uint64_t bound = lo;

  // min_start[j]: smallest s such that records [s, n) fit in j ranges of cost
  // <= bound (greedy from the right, each range taking as much as it can).
  std::vector<std::size_t> min_start(P + 1, 0);
  min_start[0] = n;
  for (std::size_t j = 1; j <= P; ++j) {
    const std::size_t prev = min_start[j - 1];
    const std::uint64_t need = prefix[prev] >= bound ? prefix[prev] - bound : 0;
    min_start[j] = static_cast<std::size_t>(
        std::lower_bound(prefix.begin(), prefix.begin() + prev + 1, need) - prefix.begin());
  }

  // Boundaries left to right (see the rule in shard_plan.h). Keys compared in
  // 128-bit to stay exact: |prefix(p)*P - total*k| and |p*P - n*k|.
  std::size_t previous = 0;
  for (std::size_t k = 1; k < P; ++k) {
    const std::size_t a = std::max(min_start[P - k], previous + 1);
    const std::size_t b = std::min(reach(prefix, previous, bound), n - (P - k));
    // a <= b holds by construction (see shard_plan.h); a violation is a bug here.
    if (a > b) throw std::logic_error("plan_shards: empty boundary interval (bug)");

    const u128 cost_target = static_cast<u128>(total) * k;  // compared with prefix(p) * P
    const u128 count_target = static_cast<u128>(n) * k;     // compared with p * P
    auto cost_key = [&](std::size_t p) { return abs_diff(static_cast<u128>(prefix[p]) * P, cost_target); };
    auto count_key = [&](std::size_t p) { return abs_diff(static_cast<u128>(p) * P, count_target); };

    // First q in [a, b] with prefix(q) * P >= cost_target (b + 1 if none).
    std::size_t q_lo = a;
    std::size_t q_hi = b + 1;
    while (q_lo < q_hi) {
      const std::size_t mid = q_lo + (q_hi - q_lo) / 2;
      if (static_cast<u128>(prefix[mid]) * P >= cost_target) {
        q_hi = mid;
      } else {
        q_lo = mid + 1;
      }
    }
    const std::size_t q = q_lo;

    // The best cost key lies in the run of equal prefix values at q or at q - 1;
    // inside a run only the count key differs, best at floor/ceil of n*k/P clamped.
    const std::size_t count_floor = static_cast<std::size_t>(count_target / P);
    const std::size_t count_ceil = count_floor + (count_target % P != 0 ? 1 : 0);
    // At least one anchor below lies in [a, b] (q if q <= b, else q - 1 == b).
    bool have_best = false;
    std::size_t best = a;
    auto consider = [&](std::size_t p) {
      if (!have_best) {
        best = p;
        have_best = true;
        return;
      }
      const u128 c = cost_key(p), cb = cost_key(best);
      if (c != cb) {
        if (c < cb) best = p;
        return;
      }
      const u128 d = count_key(p), db = count_key(best);
      if (d != db) {
        if (d < db) best = p;
        return;
      }
      if (p < best) best = p;
    };
    for (std::size_t anchor : {q, q - 1}) {
      if (anchor < a || anchor > b) continue;  // (q >= a >= 1, so q - 1 does not wrap)
      const std::uint64_t v = prefix[anchor];
      const std::size_t run_first = std::max<std::size_t>(
          a, std::lower_bound(prefix.begin(), prefix.end(), v) - prefix.begin());
      const std::size_t run_last = std::min<std::size_t>(
          b, std::upper_bound(prefix.begin(), prefix.end(), v) - prefix.begin() - 1);
      consider(std::clamp(count_floor, run_first, run_last));
      consider(std::clamp(count_ceil, run_first, run_last));
    }
    ranges[k - 1] = {previous, best};
    previous = ranges[k - 1].end;
  }
  ranges[P - 1] = {previous, n};
  return ranges;
}

}  // namespace align2
