#include "core/pipeline/ranking.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <stdexcept>
#include <unordered_set>

namespace align2 {

bool ranks_before(double score_a, const std::string& key_a, double score_b, const std::string& key_b) {
  bool nan_a = std::isnan(score_a), nan_b = std::isnan(score_b);
  if (nan_a != nan_b) return nan_b;
  if (!nan_a && score_a != score_b) return score_a > score_b;
  return key_a < key_b;
}

Selection select_top_fraction(const std::vector<Candidate>& candidates, double fraction, bool one_per_image) {
  if (!(fraction >= 0.0 && fraction <= 1.0))
    throw std::invalid_argument("selection fraction must lie in [0, 1]");
  Selection result;
  result.kept.assign(candidates.size(), 0);

  std::map<std::uint32_t, std::vector<std::size_t>> groups;
  for (std::size_t i = 0; i < candidates.size(); ++i) groups[candidates[i].subset].push_back(i);

  for (auto& [subset, members] : groups) {
    std::sort(members.begin(), members.end(), [&](std::size_t a, std::size_t b) {
      const Candidate &x = candidates[a], &y = candidates[b];
      return ranks_before(x.score, x.key, y.score, y.key);
    });
    SubsetSelection& sel = result.by_subset[subset];
    sel.scored = members.size();
    std::uint64_t keep = std::uint64_t(std::floor(fraction * double(members.size())));
    std::unordered_set<std::string> images_seen;
    for (std::size_t i : members) {
      const Candidate& c = candidates[i];
      if (one_per_image && !c.image.empty() && !images_seen.insert(c.image).second) continue;
      ++sel.eligible;
      if (sel.kept < keep) {
        result.kept[i] = 1;
        ++sel.kept;
        sel.threshold = c.score;
      }
    }
  }
  return result;
}

}  // namespace align2
