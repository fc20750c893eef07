// align2 pairs: preference pairs for reward-model training (core/preference_pairs.h), one
// JSON line per pair, then the summary line {"groups": G, "pairs": P, "ties_dropped": T}.
#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "core/preference_pairs.h"
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

}  // namespace

int run_pairs(const Args& args) {
  const std::string kind = args.get("kind");
  const std::string input = args.get("input");
  if (kind.empty()) throw UsageError("--kind is required (question or answer)");
  if (kind != "question" && kind != "answer")
    throw UsageError(fmt::format("--kind {}: expected question or answer", kind));
  if (input.empty()) throw UsageError("--input is required");
  if (!args.positional.empty()) throw UsageError(fmt::format("unexpected argument '{}'", args.positional[0]));
  PairOptions options;
  options.kind = pair_kind_from_name(kind);
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
    std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(fmt::format("{}: cannot open for writing", out_path));
    out << lines;
    out.close();
    if (!out) throw std::runtime_error(fmt::format("{}: write error", out_path));
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
