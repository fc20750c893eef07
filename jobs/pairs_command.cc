// align2 pairs: preference pairs for reward-model training (core/reward/preference_pairs.h), one
// JSON line per pair, then the summary line {"groups": G, "pairs": P, "ties_dropped": T}.
// With --from-pool: pairs with negatives made from a LLaVA pool (generic pair lines that
// train-reward reads), optionally split into training and held-out files.
#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/reward/preference_pairs.h"
#include "jobs/cli.h"

namespace align2::cli {

namespace {

double parse_rate(const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const double r = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno != 0 || !(r >= 0 && r <= 1))
    throw UsageError(fmt::format("--augment-rate {}: expected a number in [0, 1]", text));
  return r;
}

std::uint64_t parse_seed(const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long s = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || text[0] == '-' || *end != '\0' || errno != 0)
    throw UsageError(fmt::format("--seed {}: expected an unsigned 64-bit integer", text));
  return s;
}

void write_lines(const std::string& path, const std::string& lines) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error(fmt::format("{}: cannot open for writing", path));
  out << lines;
  out.close();
  if (!out) throw std::runtime_error(fmt::format("{}: write error", path));
}

// --from-pool: pairs with negatives made from the pool itself.
int run_pool_pairs(const Args& args, RewardKind kind) {
  for (const char* unsupported : {"augment-rate"})
    if (args.flag(unsupported))
      throw UsageError(fmt::format("--{} applies to human-ranked input, not to --from-pool", unsupported));
  PoolPairOptions o;
  o.kind = kind;
  o.seed = parse_seed(args.get("seed", "0"));
  o.holdout = real_option(args, "holdout", 0, 0, 0.99);
  o.per_candidate = std::uint64_t(int_option(args, "per-candidate", 1, 1, 64));
  o.image_root = args.get("image-root");
  std::istringstream names(args.get("negatives"));
  for (std::string name; std::getline(names, name, ',');) {
    if (name.empty()) continue;
    try {
      o.negatives.push_back(negative_from_name(name));
    } catch (const std::invalid_argument& e) {
      throw UsageError(fmt::format("--negatives: {}", e.what()));
    }
  }
  const std::string out_path = args.get("out"), holdout_path = args.get("holdout-out");
  if (o.holdout > 0 && holdout_path.empty()) throw UsageError("--holdout needs --holdout-out FILE for the held-out pairs");
  if (o.holdout == 0 && !holdout_path.empty()) throw UsageError("--holdout-out needs --holdout R (R > 0)");
  PoolPairSet set;
  try {
    set = build_pool_pairs({args.get("input")}, o);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  auto lines_of = [&](const std::vector<PoolPair>& pairs) {
    std::string lines;
    for (const PoolPair& p : pairs) {
      lines += pool_pair_to_json_line(p, kind);
      lines += '\n';
    }
    return lines;
  };
  if (!out_path.empty()) write_lines(out_path, lines_of(set.train));
  else std::cout << lines_of(set.train);
  if (!holdout_path.empty()) write_lines(holdout_path, lines_of(set.held_out));
  if (set.no_negative)
    std::cerr << fmt::format("align2 pairs: {} pair(s) not made: no allowed negative could change the candidate\n",
                             set.no_negative);
  std::cout << fmt::format(
                   "{{\"records\": {}, \"valid_records\": {}, \"skipped_records\": {}, \"held_out_records\": {}, "
                   "\"pairs\": {}, \"held_out_pairs\": {}, \"no_negative\": {}, \"negatives\": {{\"shuffle\": {}, "
                   "\"drop\": {}, \"duplicate\": {}, \"other_record\": {}}}}}\n",
                   set.records, set.valid_records, set.skipped_records, set.held_out_records, set.train.size(),
                   set.held_out.size(), set.no_negative, set.by_negative[0], set.by_negative[1], set.by_negative[2],
                   set.by_negative[3])
            << std::flush;
  return std::cout ? 0 : 1;
}

}  // namespace

int run_pairs(const Args& args) {
  const std::string kind = args.get("kind");
  const std::string input = args.get("input");
  if (kind.empty()) throw UsageError("--kind is required (question or answer)");
  if (kind != "question" && kind != "answer")
    throw UsageError(fmt::format("--kind {}: expected question or answer", kind));
  if (input.empty()) throw UsageError("--input is required");
  if (!args.positional.empty()) throw UsageError(fmt::format("unexpected argument '{}'", args.positional[0]));
  if (args.flag("from-pool")) return run_pool_pairs(args, reward_kind_from_name(kind));
  for (const char* pool_only : {"negatives", "per-candidate", "holdout", "holdout-out", "image-root"})
    if (args.flag(pool_only)) throw UsageError(fmt::format("--{} needs --from-pool", pool_only));
  PairOptions options;
  options.kind = reward_kind_from_name(kind);
  options.augment_rate = parse_rate(args.get("augment-rate", "0"));
  options.seed = parse_seed(args.get("seed", "0"));

  const PairSet set = build_preference_pairs(input, options);

  std::string lines;
  for (const PreferencePair& p : set.pairs) {
    lines += pair_to_json_line(p, options.kind);
    lines += '\n';
  }
  const std::string out_path = args.get("out");
  if (!out_path.empty()) {
    write_lines(out_path, lines);
  } else {
    std::cout << lines;
  }
  if (set.augment_skipped)
    std::cerr << fmt::format(
        "align2 pairs: {} candidate(s) drawn for augmentation could not be corrupted "
        "(too few words); no augmented pair for them\n",
        set.augment_skipped);
  std::cout << fmt::format("{{\"groups\": {}, \"pairs\": {}, \"ties_dropped\": {}}}\n", set.groups, set.pairs.size(),
                           set.ties_dropped)
            << std::flush;
  return std::cout ? 0 : 1;
}

}  // namespace align2::cli
