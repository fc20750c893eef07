#include "core/reward/preference_pairs.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/model/chat_template.h"
#include "core/data/corpus_index.h"

namespace align2 {

namespace {

using json = nlohmann::json;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r' || (c >= '\x1c' && c <= '\x1f');
}




std::string join_words(const std::vector<std::string>& words) {
  std::string out;
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (i) out += ' ';
    out += words[i];
  }
  return out;
}

// Where a record sits, for messages: "FILE record #I (line L, id "X")".
struct Origin {
  const std::string* file;
  std::uint64_t index;
  std::uint64_t line;  // 0 = unknown (records of a JSON array)
  std::string id;
};

std::string where(const Origin& o) {
  std::string s = fmt::format("{} record #{}", *o.file, o.index);
  std::string extra;
  if (o.line) extra = fmt::format("line {}", o.line);
  if (!o.id.empty()) extra += fmt::format("{}id \"{}\"", extra.empty() ? "" : ", ", o.id);
  if (!extra.empty()) s += " (" + extra + ")";
  return s;
}

[[noreturn]] void fail(const Origin& o, const std::string& reason) { throw PairInputError(where(o) + ": " + reason); }

const char* type_name(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::string:
      return "string";
    case json::value_t::array:
      return "array";
    case json::value_t::object:
      return "object";
    case json::value_t::discarded:
      return "discarded value";
    default:
      return "number";
  }
}

std::string id_text(const json& rec) {
  auto it = rec.find("id");
  if (it == rec.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer() || it->is_number_unsigned()) return it->dump();
  return "";
}

void check_id(const json& rec, const Origin& o) {
  auto it = rec.find("id");
  if (it != rec.end() && !it->is_string() && !it->is_number_integer() && !it->is_number_unsigned())
    fail(o, fmt::format("\"id\" is a {}, expected a string or an integer", type_name(*it)));
}

std::string image_of(const json& rec, const Origin& o) {
  auto it = rec.find("image");
  if (it == rec.end() || it->is_null()) return "";
  if (!it->is_string()) fail(o, fmt::format("\"image\" is a {}, expected a string", type_name(*it)));
  return it->get<std::string>();
}

double score_at(const json& scores, std::size_t k, const Origin& o, const std::string& field) {
  const json& v = scores[k];
  if (!v.is_number()) fail(o, fmt::format("{}[{}] is a {}, expected a number", field, k, type_name(v)));
  const double d = v.get<double>();
  if (!std::isfinite(d)) fail(o, fmt::format("{}[{}] is not finite", field, k));
  return d;
}

// A question set: a string (one question) or a non-empty array of strings.
std::vector<std::string> question_set(const json& v, const Origin& o, const std::string& field) {
  if (v.is_string()) return {v.get<std::string>()};
  if (!v.is_array()) fail(o, fmt::format("{} is a {}, expected a list of question strings", field, type_name(v)));
  if (v.empty()) fail(o, fmt::format("{} is an empty list of questions", field));
  std::vector<std::string> out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string())
      fail(o, fmt::format("{}[{}] is a {}, expected a question string", field, i, type_name(v[i])));
    out.push_back(v[i].get<std::string>());
  }
  return out;
}

// The stream of one candidate: depends only on seed, group and candidate.
SplitMix64 candidate_rng(std::uint64_t seed, std::uint64_t group, std::uint64_t candidate) {
  return SplitMix64(splitmix64(splitmix64(seed ^ splitmix64(group)) ^ (candidate + 1) * 0xbf58476d1ce4e5b9ULL));
}

// k distinct values of [0, n), in the order drawn (partial Fisher-Yates).
std::vector<std::uint64_t> sample_indices(std::uint64_t n, std::uint64_t k, SplitMix64& rng) {
  std::vector<std::uint64_t> idx(n);
  for (std::uint64_t i = 0; i < n; ++i) idx[i] = i;
  for (std::uint64_t i = 0; i < k; ++i) std::swap(idx[i], idx[i + rng.below(n - i)]);
  idx.resize(k);
  return idx;
}

// A candidate of a group: what the reward model compares.
struct Candidate {
  std::vector<std::string> questions;  // question kind
  std::string answer;                  // answer kind
  double score = 0;
};

struct Builder {
  const PairOptions& options;
  PairSet& set;

  std::string text_of(const Candidate& c, const std::string& question) const {
    return options.kind == RewardKind::question ? question_rm_text(c.questions) : answer_rm_text(question, c.answer);
  }

  // The augmented pair of candidate `c` (index `k` of group `group`), if drawn.
  void maybe_augment(const Candidate& c, const std::string& question, std::uint64_t group, std::uint64_t k,
                     PreferencePair base) {
    if (options.augment_rate <= 0) return;
    SplitMix64 rng = candidate_rng(options.seed, group, k);
    if (!(rng.uniform() < options.augment_rate)) return;
    const bool questions = options.kind == RewardKind::question;
    const std::vector<Corruption> modes =
        questions ? std::vector<Corruption>{Corruption::shuffle, Corruption::drop, Corruption::duplicate}
                  : std::vector<Corruption>{Corruption::shuffle, Corruption::drop};
    const std::uint64_t first = rng.below(modes.size());
    for (std::size_t t = 0; t < modes.size(); ++t) {
      const Corruption mode = modes[(first + t) % modes.size()];
      Candidate copy = c;
      const bool changed = questions ? corrupt_questions(c.questions, mode, rng, &copy.questions)
                                     : corrupt_text(c.answer, mode, rng, &copy.answer);
      if (!changed) continue;
      base.chosen_text = text_of(c, question);
      base.rejected_text = text_of(copy, question);
      base.chosen_score = base.rejected_score = c.score;
      base.augmented = true;
      set.pairs.push_back(std::move(base));
      ++set.augmented;
      return;
    }
    ++set.augment_skipped;
  }

  // Every strictly ordered pair of one group, in the reference code's order.
  void add_group(const std::vector<Candidate>& cands, const std::string& question, const PreferencePair& base) {
    const std::uint64_t group = set.groups++;
    for (std::size_t i = 0; i < cands.size(); ++i)
      for (std::size_t j = i + 1; j < cands.size(); ++j)
        if (cands[i].score == cands[j].score) ++set.ties_dropped;
    for (std::size_t i = 0; i < cands.size(); ++i) {
      for (std::size_t j = 0; j < cands.size(); ++j) {
        if (!(cands[i].score > cands[j].score)) continue;
        PreferencePair p = base;
        p.chosen_text = text_of(cands[i], question);
        p.rejected_text = text_of(cands[j], question);
        p.chosen_score = cands[i].score;
        p.rejected_score = cands[j].score;
        set.pairs.push_back(std::move(p));
      }
      maybe_augment(cands[i], question, group, i, base);
    }
  }

  void question_group(const json& rec, const Origin& o) {
    auto q = rec.find("questions");
    auto s = rec.find("score");
    if (s == rec.end()) fail(o, "question record has no \"score\"");
    if (!q->is_array()) fail(o, fmt::format("\"questions\" is a {}, expected a list of candidates", type_name(*q)));
    if (!s->is_array()) fail(o, fmt::format("\"score\" is a {}, expected a list of numbers", type_name(*s)));
    if (q->size() != s->size())
      fail(o, fmt::format("{} candidates in \"questions\" but {} numbers in \"score\"", q->size(), s->size()));
    std::vector<Candidate> cands(q->size());
    for (std::size_t k = 0; k < q->size(); ++k) {
      cands[k].questions = question_set((*q)[k], o, fmt::format("questions[{}]", k));
      cands[k].score = score_at(*s, k, o, "score");
    }
    PreferencePair base;
    base.group_id = o.id;
    base.record = o.index;
    base.image = image_of(rec, o);
    add_group(cands, "", base);
  }

  void answer_groups(const json& rec, const Origin& o) {
    const json& conv = rec["conversations"];
    if (!conv.is_array()) fail(o, fmt::format("\"conversations\" is a {}, expected a list", type_name(conv)));
    if (conv.empty()) fail(o, "\"conversations\" is empty");
    if (conv.size() % 2) fail(o, fmt::format("\"conversations\" has {} turns, expected human/gpt pairs", conv.size()));
    const std::string image = image_of(rec, o);
    for (std::size_t t = 0; t < conv.size(); t += 2) {
      const json& h = conv[t];
      const json& g = conv[t + 1];
      for (std::size_t u : {t, t + 1}) {
        const json& turn = conv[u];
        const char* role = u == t ? "human" : "gpt";
        if (!turn.is_object())
          fail(o, fmt::format("conversations[{}] is a {}, expected an object", u, type_name(turn)));
        if (!turn.contains("from") || turn["from"] != role)
          fail(o, fmt::format("conversations[{}] should be from \"{}\"", u, role));
        if (!turn.contains("value")) fail(o, fmt::format("conversations[{}] has no \"value\"", u));
      }
      if (!h["value"].is_string())
        fail(o, fmt::format("conversations[{}].value is a {}, expected a string", t, type_name(h["value"])));
      const json& answers = g["value"];
      if (!answers.is_array())
        fail(o, fmt::format("conversations[{}].value is a {}, expected a list of candidate answers", t + 1,
                            type_name(answers)));
      if (!g.contains("score")) fail(o, fmt::format("conversations[{}] has no \"score\"", t + 1));
      const json& scores = g["score"];
      const std::string score_field = fmt::format("conversations[{}].score", t + 1);
      if (!scores.is_array())
        fail(o, fmt::format("{} is a {}, expected a list of numbers", score_field, type_name(scores)));
      if (answers.size() != scores.size())
        fail(o, fmt::format("conversations[{}] has {} answers but {} scores", t + 1, answers.size(), scores.size()));
      std::vector<Candidate> cands(answers.size());
      for (std::size_t k = 0; k < answers.size(); ++k) {
        if (!answers[k].is_string())
          fail(o,
               fmt::format("conversations[{}].value[{}] is a {}, expected a string", t + 1, k, type_name(answers[k])));
        cands[k].answer = answers[k].get<std::string>();
        cands[k].score = score_at(scores, k, o, score_field);
      }
      PreferencePair base;
      base.group_id = o.id;
      base.record = o.index;
      base.turn = t / 2;
      base.image = image;
      base.question = h["value"].get<std::string>();
      add_group(cands, base.question, base);
    }
  }

  void generic_pair(const json& rec, const Origin& o) {
    if (!rec.contains("rejected")) fail(o, "pair record has \"chosen\" but no \"rejected\"");
    const bool questions = options.kind == RewardKind::question;
    Candidate chosen, rejected;
    std::string question;
    if (questions) {
      for (const char* f : {"question", "questions"})
        if (rec.contains(f))
          fail(o, fmt::format("a --kind question pair holds its question sets in \"chosen\" and \"rejected\"; "
                              "\"{}\" belongs to --kind answer pairs",
                              f));
      chosen.questions = question_set(rec["chosen"], o, "chosen");
      rejected.questions = question_set(rec["rejected"], o, "rejected");
    } else {
      if (!rec.contains("question")) fail(o, "answer pair record has no \"question\"");
      if (!rec["question"].is_string())
        fail(o, fmt::format("\"question\" is a {}, expected a string", type_name(rec["question"])));
      question = rec["question"].get<std::string>();
      for (const char* f : {"chosen", "rejected"})
        if (!rec[f].is_string())
          fail(o, fmt::format("\"{}\" is a {}, expected an answer string", f, type_name(rec[f])));
      chosen.answer = rec["chosen"].get<std::string>();
      rejected.answer = rec["rejected"].get<std::string>();
    }
    const bool has_c = rec.contains("chosen_score"), has_r = rec.contains("rejected_score");
    if (has_c != has_r) fail(o, "give both \"chosen_score\" and \"rejected_score\" or neither");
    chosen.score = rejected.score = std::nan("");
    if (has_c) {
      for (const char* f : {"chosen_score", "rejected_score"})
        if (!rec[f].is_number() || !std::isfinite(rec[f].get<double>()))
          fail(o, fmt::format("\"{}\" is a {}, expected a finite number", f, type_name(rec[f])));
      chosen.score = rec["chosen_score"].get<double>();
      rejected.score = rec["rejected_score"].get<double>();
      if (chosen.score < rejected.score)
        fail(o, fmt::format("chosen_score {} is below rejected_score {}", chosen.score, rejected.score));
    }
    PreferencePair base;
    base.group_id = o.id;
    base.record = o.index;
    base.image = image_of(rec, o);
    base.question = question;
    const std::uint64_t group = set.groups++;
    if (has_c && chosen.score == rejected.score) {
      ++set.ties_dropped;
    } else {
      PreferencePair p = base;
      p.chosen_text = text_of(chosen, question);
      p.rejected_text = text_of(rejected, question);
      p.chosen_score = chosen.score;
      p.rejected_score = rejected.score;
      set.pairs.push_back(std::move(p));
    }
    maybe_augment(chosen, question, group, 0, base);
  }

  void record(const json& rec, const Origin& o) {
    if (!rec.is_object()) fail(o, fmt::format("record is a JSON {}, expected an object", type_name(rec)));
    check_id(rec, o);
    const bool questions = options.kind == RewardKind::question;
    if (rec.contains("chosen")) return generic_pair(rec, o);
    if (rec.contains("questions")) {
      if (!questions) fail(o, "a question-preference record (\"questions\") given to --kind answer");
      return question_group(rec, o);
    }
    if (rec.contains("conversations")) {
      if (questions) fail(o, "an answer-preference record (\"conversations\") given to --kind question");
      return answer_groups(rec, o);
    }
    fail(o, questions ? "record has neither \"questions\" (question group) nor \"chosen\" (pair)"
                      : "record has neither \"conversations\" (answer group) nor \"chosen\" (pair)");
  }
};

}  // namespace



std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> words;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_space(text[i])) ++i;
    const std::size_t b = i;
    while (i < text.size() && !is_space(text[i])) ++i;
    if (i > b) words.push_back(text.substr(b, i - b));
  }
  return words;
}


bool corrupt_text(const std::string& text, Corruption c, SplitMix64& rng, std::string* out) {
  const std::vector<std::string> words = split_words(remove_image_tags(text));
  const std::uint64_t n = words.size();
  if (n < 2) return false;
  if (c == Corruption::shuffle) {
    if (std::all_of(words.begin(), words.end(), [&](const std::string& w) { return w == words[0]; })) return false;
    std::vector<std::string> w = words;
    for (int attempt = 0; attempt < 64 && w == words; ++attempt)
      for (std::uint64_t i = n - 1; i > 0; --i) std::swap(w[i], w[rng.below(i + 1)]);
    if (w == words) {  // vanishingly rare: swap the first two words that differ
      std::size_t i = 0;
      while (w[i] == w[i + 1]) ++i;
      std::swap(w[i], w[i + 1]);
    }
    *out = join_words(w);
    return true;
  }
  if (c == Corruption::drop) {
    const std::uint64_t keep = 1 + rng.below(n - 1);  // 1 .. n-1 words
    std::vector<std::uint64_t> idx = sample_indices(n, keep, rng);
    std::sort(idx.begin(), idx.end());
    std::vector<std::string> w;
    for (std::uint64_t i : idx) w.push_back(words[i]);
    *out = join_words(w);
    return true;
  }
  return false;  // duplicate applies to question sets only
}

bool corrupt_questions(const std::vector<std::string>& questions, Corruption c, SplitMix64& rng,
                       std::vector<std::string>* out) {
  const std::uint64_t m = questions.size();
  if (m == 0) return false;
  if (c == Corruption::duplicate) {
    // As the reference code: d of the m questions (in the order drawn) inserted at d
    // random positions of the longer list; the originals keep their order.
    const std::uint64_t d = 1 + rng.below(m);
    const std::vector<std::uint64_t> dup = sample_indices(m, d, rng);
    std::vector<std::uint64_t> pos = sample_indices(m + d, d, rng);
    std::sort(pos.begin(), pos.end());
    out->clear();
    std::uint64_t used = 0;
    for (std::uint64_t i = 0; i < m + d; ++i) {
      if (used < d && i == pos[used])
        out->push_back(questions[dup[used++]]);
      else
        out->push_back(questions[i - used]);
    }
    return true;
  }
  bool changed = false;
  *out = questions;
  for (std::uint64_t i = 0; i < m; ++i) {
    std::string copy;
    if (corrupt_text(questions[i], c, rng, &copy)) {
      (*out)[i] = std::move(copy);
      changed = true;
    }
  }
  return changed;
}

PairSet build_preference_pairs_from_text(const std::string& text, const std::string& name, const PairOptions& options) {
  if (!(options.augment_rate >= 0 && options.augment_rate <= 1))
    throw std::invalid_argument(fmt::format("augment rate {} is not in [0, 1]", options.augment_rate));
  PairSet set;
  Builder builder{options, set};
  const std::size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) throw PairInputError(fmt::format("{}: the file is empty", name));
  if (text[first] == '[') {
    json array;
    try {
      array = json::parse(text);
    } catch (const json::parse_error& e) {
      throw PairInputError(fmt::format("{}: not a JSON array (byte {}): {}", name, e.byte, e.what()));
    }
    for (std::size_t i = 0; i < array.size(); ++i) {
      const json& rec = array[i];
      builder.record(rec, Origin{&name, i, 0, rec.is_object() ? id_text(rec) : ""});
    }
    return set;
  }
  if (text[first] != '{')
    throw PairInputError(
        fmt::format("{}: expected a JSON array ('[') or JSONL objects ('{{'), found '{}'", name, text[first]));
  std::istringstream in(text);
  std::uint64_t line_number = 0, index = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Origin o{&name, index++, line_number, ""};
    json rec;
    try {
      rec = json::parse(line);
    } catch (const json::parse_error& e) {
      fail(o, fmt::format("not JSON: {}", e.what()));
    }
    if (rec.is_object()) o.id = id_text(rec);
    builder.record(rec, o);
  }
  return set;
}

PairSet build_preference_pairs(const std::string& path, const PairOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw PairInputError(fmt::format("{}: cannot open", path));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw PairInputError(fmt::format("{}: read error", path));
  return build_preference_pairs_from_text(buffer.str(), path, options);
}

std::string pair_to_json_line(const PreferencePair& pair, RewardKind kind) {
  nlohmann::ordered_json j;
  j["group_id"] = pair.group_id;
  j["record"] = pair.record;
  j["turn"] = pair.turn;
  j["image"] = pair.image;
  if (kind == RewardKind::answer) j["question"] = pair.question;
  j["chosen_text"] = pair.chosen_text;
  j["rejected_text"] = pair.rejected_text;
  j["chosen_score"] =
      std::isnan(pair.chosen_score) ? nlohmann::ordered_json() : nlohmann::ordered_json(pair.chosen_score);
  j["rejected_score"] =
      std::isnan(pair.rejected_score) ? nlohmann::ordered_json() : nlohmann::ordered_json(pair.rejected_score);
  j["augmented"] = pair.augmented;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// ----------------------------------------------------------------------------------------
// Pairs from a pool, with negatives made from the pool itself.

const char* negative_name(Negative n) {
  switch (n) {
    case Negative::shuffle:
      return "shuffle";
    case Negative::drop:
      return "drop";
    case Negative::duplicate:
      return "duplicate";
    case Negative::other_record:
      return "other_record";
  }
  return "?";
}

Negative negative_from_name(const std::string& name) {
  for (Negative n : {Negative::shuffle, Negative::drop, Negative::duplicate, Negative::other_record})
    if (name == negative_name(n)) return n;
  throw std::invalid_argument(
      fmt::format("unknown negative '{}' (expected shuffle, drop, duplicate or other_record)", name));
}

namespace {

// Stream tags, so that the split and the per-record draws never share a stream.
constexpr std::uint64_t kSplitTag = 0x53504c4954ULL;  // "SPLIT"
constexpr std::uint64_t kPairTag = 0x5041495253ULL;   // "PAIRS"

std::vector<std::string> questions_of(const Sample& s) {
  std::vector<std::string> q;
  for (const Turn& t : s.turns) q.push_back(t.question);
  return q;
}

struct PoolBuilder {
  const PoolPairOptions& o;
  const std::vector<const Sample*>& records;  // valid records, pool order
  PoolPairSet& set;
  std::vector<Negative> modes;
  std::vector<std::vector<std::size_t>> split_members;  // [0] training, [1] held out: positions in `records`
  std::vector<int> split_of;                            // per position in `records`

  // A record of the same split, not `self`; SIZE_MAX when there is none.
  std::size_t other_in_split(std::size_t self, SplitMix64& rng) const {
    const std::vector<std::size_t>& members = split_members[split_of[self]];
    if (members.size() < 2) return SIZE_MAX;
    std::size_t k = static_cast<std::size_t>(rng.below(members.size() - 1));
    if (members[k] == self) k = members.size() - 1;  // the last member stands in for self
    return members[k];
  }

  // Fills the rejected side of `p` with negative `mode`; false when it cannot change the candidate.
  bool negative(Negative mode, std::size_t self, SplitMix64& rng, PoolPair* p) const {
    const bool questions = o.kind == RewardKind::question;
    if (mode == Negative::other_record) {
      for (int attempt = 0; attempt < 8; ++attempt) {
        const std::size_t other = other_in_split(self, rng);
        if (other == SIZE_MAX) return false;
        const Sample& r = *records[other];
        if (questions) {
          std::vector<std::string> q = questions_of(r);
          if (question_rm_text(q) == question_rm_text(p->chosen_questions)) continue;
          p->rejected_questions = std::move(q);
        } else {
          const std::string& a = r.turns[static_cast<std::size_t>(rng.below(r.turns.size()))].answer;
          if (answer_rm_text(p->question, a) == answer_rm_text(p->question, p->chosen_answer)) continue;
          p->rejected_answer = a;
        }
        p->negative = mode;
        p->other_record = r.index;
        return true;
      }
      return false;
    }
    const Corruption c = mode == Negative::shuffle ? Corruption::shuffle
                         : mode == Negative::drop  ? Corruption::drop
                                                   : Corruption::duplicate;
    const bool changed = questions ? corrupt_questions(p->chosen_questions, c, rng, &p->rejected_questions)
                                   : corrupt_text(p->chosen_answer, c, rng, &p->rejected_answer);
    if (changed) p->negative = mode;
    return changed;
  }

  // The candidate's pairs: the r-th starts at the drawn negative + r, so that a candidate
  // with as many pairs as allowed negatives gets one of each (when each can change it).
  void add(const PoolPair& p, std::size_t self, std::uint64_t turn) {
    SplitMix64 rng = candidate_rng(o.seed ^ kPairTag, records[self]->index, turn);
    const std::uint64_t first = rng.below(modes.size());
    for (std::uint64_t r = 0; r < o.per_candidate; ++r) {
      bool made = false;
      for (std::size_t t = 0; t < modes.size() && !made; ++t) {
        PoolPair q = p;
        if (negative(modes[(first + r + t) % modes.size()], self, rng, &q)) {
          ++set.by_negative[static_cast<int>(q.negative)];
          (split_of[self] ? set.held_out : set.train).push_back(std::move(q));
          made = true;
        }
      }
      if (!made) ++set.no_negative;
    }
  }

  void run() {
    for (std::size_t i = 0; i < records.size(); ++i) {
      const Sample& s = *records[i];
      if (o.kind == RewardKind::question) {
        PoolPair p;
        p.id = s.id;
        p.record = s.index;
        p.image = s.image;
        p.chosen_questions = questions_of(s);
        add(p, i, 0);
      } else {
        for (std::size_t t = 0; t < s.turns.size(); ++t) {
          PoolPair p;
          p.id = fmt::format("{}#{}", s.id, t);
          p.record = s.index;
          p.turn = t;
          p.image = s.image;
          p.question = s.turns[t].question;
          p.chosen_answer = s.turns[t].answer;
          add(p, i, t);
        }
      }
    }
  }
};

}  // namespace

PoolPairSet build_pool_pairs_from_samples(const std::vector<Sample>& samples, const PoolPairOptions& o) {
  if (!(o.holdout >= 0 && o.holdout < 1))
    throw std::invalid_argument(fmt::format("held-out share {} is not in [0, 1)", o.holdout));
  if (o.per_candidate < 1 || o.per_candidate > 64)
    throw std::invalid_argument(fmt::format("{} pairs per candidate: expected 1 to 64", o.per_candidate));
  std::vector<Negative> modes = o.negatives;
  if (modes.empty())
    modes = o.kind == RewardKind::question
                ? std::vector<Negative>{Negative::shuffle, Negative::drop, Negative::duplicate, Negative::other_record}
                : std::vector<Negative>{Negative::shuffle, Negative::drop, Negative::other_record};
  for (std::size_t i = 0; i < modes.size(); ++i) {
    if (modes[i] == Negative::duplicate && o.kind == RewardKind::answer)
      throw std::invalid_argument("the duplicate negative repeats questions of a question set: question kind only");
    for (std::size_t j = 0; j < i; ++j)
      if (modes[i] == modes[j])
        throw std::invalid_argument(fmt::format("negative {} given twice", negative_name(modes[i])));
  }

  PoolPairSet set;
  std::vector<const Sample*> records;
  for (const Sample& s : samples) {
    ++set.records;
    if (s.status == Status::valid && !s.turns.empty()) records.push_back(&s);
    else ++set.skipped_records;
  }
  set.valid_records = records.size();

  // The held-out split: the first k of a seeded permutation of the valid records.
  const std::size_t n = records.size();
  std::size_t k = 0;
  if (o.holdout > 0 && n >= 2)
    k = std::min(n - 1, std::max<std::size_t>(1, static_cast<std::size_t>(std::floor(o.holdout * double(n) + 0.5))));
  std::vector<int> split_of(n, 0);
  {
    SplitMix64 rng(splitmix64(o.seed ^ kSplitTag));
    for (std::uint64_t idx : sample_indices(n, k, rng)) split_of[idx] = 1;
  }
  std::vector<std::vector<std::size_t>> members(2);
  for (std::size_t i = 0; i < n; ++i) members[split_of[i]].push_back(i);
  set.held_out_records = k;

  PoolBuilder b{o, records, set, modes, members, split_of};
  b.run();
  return set;
}

PoolPairSet build_pool_pairs(const std::vector<std::string>& pools, const PoolPairOptions& o) {
  if (pools.empty()) throw std::invalid_argument("no pool files given");
  std::vector<PoolFile> files;
  for (const std::string& p : pools) files.push_back(PoolFile{p, ""});
  IndexOptions io;
  io.validation.image_root = o.image_root;
  io.validation.subset_field = o.subset_field;
  std::vector<Sample> samples;
  io.on_record = [&](const Sample& s, const IndexEntry&) {
    samples.push_back(s);  // without raw text: the pairs need the turns only
  };
  build_index(files, io);
  return build_pool_pairs_from_samples(samples, o);
}

std::string pool_pair_to_json_line(const PoolPair& p, RewardKind kind) {
  nlohmann::ordered_json j;
  j["id"] = p.id;
  j["image"] = p.image;
  if (kind == RewardKind::answer) {
    j["question"] = p.question;
    j["chosen"] = p.chosen_answer;
    j["rejected"] = p.rejected_answer;
  } else {
    j["chosen"] = p.chosen_questions;
    j["rejected"] = p.rejected_questions;
  }
  j["negative"] = negative_name(p.negative);
  j["record"] = p.record;
  if (kind == RewardKind::answer) j["turn"] = p.turn;
  if (p.negative == Negative::other_record) j["other_record"] = p.other_record;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace align2
