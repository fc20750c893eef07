// Selection of the top fraction of each subset by score: the rule of both cascade
// stages. A pure function: every rank computes the same result from the same
// gathered scores.
//
// Order: score descending, then key ascending (keys are unique), NaN scores last.
// Per subset with N scored candidates, keep = floor(fraction * N) (Python's
// int(fraction * N) on doubles). With one_per_image, only the best-ordered candidate
// of each image in the subset is eligible (text-only candidates are each their own
// group); the kept ones are the first `keep` eligible candidates in order.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace align2 {

struct Candidate {
  std::uint64_t index = 0;  // pool index
  std::uint32_t subset = 0; // subset id (position in the subset name list)
  double score = 0;
  std::string key;          // record key, the tie-breaker
  std::string image;        // image path; "" for text-only
};

struct SubsetSelection {
  std::uint64_t scored = 0;    // candidates in the subset
  std::uint64_t eligible = 0;  // after the one-per-image rule
  std::uint64_t kept = 0;
  double threshold = 0;        // score of the last kept candidate (meaningful when kept > 0)
};

struct Selection {
  std::vector<std::uint8_t> kept;               // per candidate, in input order: 1 kept, 0 dropped
  std::map<std::uint32_t, SubsetSelection> by_subset;
};

Selection select_top_fraction(const std::vector<Candidate>& candidates, double fraction, bool one_per_image);

// True when a ranks before b in the global order.
bool ranks_before(double score_a, const std::string& key_a, double score_b, const std::string& key_b);

}  // namespace align2
