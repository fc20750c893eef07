// A synthetic but learnable preference for reward-model training tests: the chosen answer
// holds one of 8 "good" words, the rejected one one of 8 "bad" words, each in an unrelated
// random sentence. An untrained model's leanings over 8 word pairs average out near
// chance; a trained one must learn which words are good.
#pragma once

#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "test/test_support.h"

namespace align2::test {

inline std::string random_sentence(std::mt19937& rng, const std::string& colour) {
  static const char* words[] = {"the", "cat", "dog", "sun", "tree", "ball", "girl", "boy", "park", "happy",
                                "big", "small", "ran", "saw", "played", "with", "a", "little", "house", "bird"};
  std::string s;
  std::size_t n = 5 + rng() % 4, at = rng() % n;
  for (std::size_t i = 0; i < n; ++i) {
    if (i) s += " ";
    s += i == at ? colour : words[rng() % 20];
  }
  return s + ".";
}

// Writes `count` generic answer pairs as JSONL to `path`.
inline void write_colour_pairs(const std::string& path, int count, unsigned seed) {
  std::mt19937 rng(seed);
  std::string out;
  for (int i = 0; i < count; ++i) {
    static const char* good[] = {"blue", "green", "kind", "bright", "warm", "sweet", "nice", "fun"};
    static const char* bad[] = {"red", "grey", "mean", "dark", "cold", "sour", "bad", "sad"};
    nlohmann::json j = {{"id", "p" + std::to_string(i)},
                        {"question", "What do you see?"},
                        {"chosen", random_sentence(rng, good[rng() % 8])},
                        {"rejected", random_sentence(rng, bad[rng() % 8])}};
    out += j.dump() + "\n";
  }
  write_file(path, out);
}

}  // namespace align2::test
