// Shard planning: which contiguous run of records each rank processes, balanced
// by estimated cost instead of record count. Pure functions of their input: every
// rank computes the same plan from the same costs, so no communication is needed.
#pragma once

#include <cstdint>
#include <vector>

namespace align2 {

// Records [begin, end), as positions in the record order the costs were given in.
struct ShardRange {
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

// Splits records 0..costs.size() (costs[i] = cost of record i, any units, zero
// allowed) into exactly `parts` contiguous ranges, in order: range 0 starts at 0,
// range k+1 starts where range k ends, the last ends at costs.size().
//
// Result, with n = costs.size(), P = parts, prefix(i) = costs[0] + ... + costs[i-1],
// total = prefix(n):
//   * n < P: range k = [k, k+1) for k < n and [n, n) (empty) for k >= n.
//   * n >= P: every range holds at least one record, and the largest range cost
//     is the minimum possible, B* (the "linear partition" bottleneck: binary
//     search on B for the smallest B that greedy left-to-right filling covers
//     with <= P ranges).
//     Boundary rule (how ties between the many optimal plans are broken): the
//     boundaries b_1 < ... < b_{P-1} (b_k = end of range k-1 = begin of range k)
//     are chosen left to right. b_k may be any position that keeps range k-1 at
//     cost <= B* and nonempty, and leaves records [b_k, n) splittable into P-k
//     nonempty ranges of cost <= B*. Among those it takes the position p whose
//     prefix(p) is closest to the ideal share total*k/P; ties go to the p closest
//     to the equal-count position n*k/P; remaining ties to the smaller p.
//     (So all-zero costs give an equal-count split, and uniform costs give ranges
//     whose sizes differ by at most one record.)
//
// Exact integer arithmetic throughout: identical output on every machine for
// identical input. Cost O(n) for a prefix-sum array (8 bytes per record: 80 MB
// for 10 million records) plus O(P log n) per binary-search step, about 64 steps.
// Throws std::invalid_argument for parts < 1 and std::overflow_error when the
// sum of all costs exceeds UINT64_MAX.
std::vector<ShardRange> plan_shards(const std::vector<std::uint64_t>& costs, int parts);

}  // namespace align2
