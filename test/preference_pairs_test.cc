// Preference pairs for reward-model training: counts on the Align2LLaVA authors' own
// annotations (checked against an independent count), the reward-model texts, ties,
// augmentation, generic pairs, bad input and the `align2 pairs` command; pairs with
// made-up negatives straight from a LLaVA pool (--from-pool) on the bundled real sample.
#include "core/reward/preference_pairs.h"
#include "core/data/record_validation.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "test/test_support.h"

namespace align2 {
namespace {

const char* const kDir = "realdata-candidates/align2llava/";

PairOptions options_for(RewardKind kind, double rate = 0, std::uint64_t seed = 0) {
  PairOptions o;
  o.kind = kind;
  o.augment_rate = rate;
  o.seed = seed;
  return o;
}

// Groups, strict ordered pairs and unordered ties of a file, counted by Python from the
// raw JSON, independently of the C++ reader.
struct Counts {
  std::uint64_t groups = 0, pairs = 0, ties = 0;
};

Counts python_counts(const std::string& path, RewardKind kind) {
  const std::string groups_expr =
      kind == RewardKind::question
          ? "[r['score'] for r in d]"
          : "[c[t+1]['score'] for r in d for c in [r['conversations']] for t in range(0, len(c), 2)]";
  const std::string script =
      "import json,sys\n"
      "d=json.load(open(sys.argv[1]))\n"
      "g=" +
      groups_expr +
      "\n"
      "p=sum(1 for s in g for a in s for b in s if float(a)>float(b))\n"
      "t=sum(1 for s in g for i in range(len(s)) for j in range(i+1,len(s)) if float(s[i])==float(s[j]))\n"
      "print(len(g),p,t)\n";
  const std::string dir = test::scratch_dir("pairs_python");
  test::write_file(dir + "/count.py", script);
  const test::CommandResult r = test::run_command("/usr/bin/python3 " + dir + "/count.py " + path);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  Counts c;
  std::istringstream in(r.out);
  in >> c.groups >> c.pairs >> c.ties;
  return c;
}

void expect_counts(const std::string& file, RewardKind kind) {
  const std::string path = test::shared_path(std::string(kDir) + file);
  const Counts want = python_counts(path, kind);
  ASSERT_GT(want.groups, 0u) << file;
  const PairSet got = build_preference_pairs(path, options_for(kind));
  EXPECT_EQ(got.groups, want.groups) << file;
  EXPECT_EQ(got.pairs.size(), want.pairs) << file;
  EXPECT_EQ(got.ties_dropped, want.ties) << file;
  EXPECT_EQ(got.augmented, 0u) << file;
  for (const PreferencePair& p : got.pairs) {
    ASSERT_GT(p.chosen_score, p.rejected_score) << file;
    ASSERT_FALSE(p.augmented);
    ASSERT_EQ(p.chosen_text.rfind("<image>\n", 0), 0u) << p.chosen_text;
  }
}

TEST(PreferencePairs, AuthorsQuestionTrainCounts) {
  const PairSet set = build_preference_pairs(test::shared_path(std::string(kDir) + "question_train.json"),
                                             options_for(RewardKind::question));
  EXPECT_EQ(set.groups, 700u);
  EXPECT_EQ(set.pairs.size(), 10242u);
  expect_counts("question_train.json", RewardKind::question);
}

TEST(PreferencePairs, AuthorsFilesMatchIndependentCount) {
  expect_counts("question_test.json", RewardKind::question);
  expect_counts("answer_train_head.json", RewardKind::answer);
  expect_counts("answer_test_first7.json", RewardKind::answer);
}

TEST(PreferencePairs, AuthorsAnswerPairsKeepTheQuestion) {
  const PairSet set = build_preference_pairs(test::shared_path(std::string(kDir) + "answer_test_first7.json"),
                                             options_for(RewardKind::answer));
  ASSERT_FALSE(set.pairs.empty());
  const PreferencePair& p = set.pairs.front();
  EXPECT_EQ(p.group_id, "000000203511");
  EXPECT_EQ(p.image, "000000203511.jpg");
  EXPECT_EQ(p.question, "<image>\nWhat potential issues might arise in this park situation?");
  EXPECT_EQ(p.chosen_text.rfind("<image>\nQuestion: What potential issues might arise in this park situation?\n"
                                "Answer: ",
                                0),
            0u);
}

TEST(PreferencePairs, RewardModelTexts) {
  EXPECT_EQ(question_rm_text({"<image>\nWhat is on the table?  ", " Why is it there?\n"}),
            "<image>\nWhat is on the table?\nWhy is it there?");
  EXPECT_EQ(question_rm_text({"Where is the dog?\n<image>"}), "<image>\nWhere is the dog?");
  EXPECT_EQ(answer_rm_text("What is this?\n<image>", "  A cat <image>on a mat.\n\n"),
            "<image>\nQuestion: What is this?\nAnswer: A cat on a mat.");
  EXPECT_EQ(answer_rm_text("<image>\nQ?", ""), "<image>\nQuestion: Q?\nAnswer:");
}

// The authors strip with Python's str.strip(): Unicode whitespace goes too (U+00A0 no-break
// space, U+3000 ideographic space, U+2003 em space, U+0085), inner spaces stay.
TEST(PreferencePairs, RewardModelTextsStripUnicodeSpaceAsPythonDoes) {
  const std::string record =
      R"({"id": "nbsp", "image": "a.jpg", "conversations": [)"
      R"({"from": "human", "value": "<image>\n\u00a0What is on the\u00a0table?\u3000"}, {"from": "gpt", "value": "\u2003A cup.\u0085"},)"
      R"({"from": "human", "value": "\u00a0"}, {"from": "gpt", "value": "x"}]})";
  ValidatedRecord v = validate_record(record, RecordOrigin{"pool.json", 0, 1, ""}, ValidationOptions{}, record.size());
  ASSERT_EQ(v.sample.status, Status::valid) << v.sample.message;
  ASSERT_EQ(v.sample.turns.size(), 2u);
  std::vector<std::string> questions;
  for (const Turn& t : v.sample.turns) questions.push_back(t.question);
  EXPECT_EQ(question_rm_text(questions), "<image>\nWhat is on the\u00a0table?");  // the empty last question's "\n" goes too
  EXPECT_EQ(answer_rm_text(v.sample.turns[0].question, v.sample.turns[0].answer),
            "<image>\nQuestion: What is on the\u00a0table?\nAnswer: A cup.");
  EXPECT_EQ(answer_rm_text("Q?", "\u00a0"), "<image>\nQuestion: Q?\nAnswer:");
}

const char* const kSmallQuestions =
    R"([{"id": "g1", "image": "a.jpg", "questions": [["<image>\nWhat?"], ["Why?", "How?"], ["Who?"], ["When?"]],)"
    R"( "score": [0.5, 0.7, 0.5, 0.9]}])";

TEST(PreferencePairs, StrictPairsInOrderTiesCounted) {
  const PairSet set = build_preference_pairs_from_text(kSmallQuestions, "small.json", options_for(RewardKind::question));
  EXPECT_EQ(set.groups, 1u);
  EXPECT_EQ(set.ties_dropped, 1u);  // candidates 0 and 2
  ASSERT_EQ(set.pairs.size(), 5u);
  const std::vector<std::pair<std::string, std::string>> want = {{"<image>\nWhy?\nHow?", "<image>\nWhat?"},
                                                                 {"<image>\nWhy?\nHow?", "<image>\nWho?"},
                                                                 {"<image>\nWhen?", "<image>\nWhat?"},
                                                                 {"<image>\nWhen?", "<image>\nWhy?\nHow?"},
                                                                 {"<image>\nWhen?", "<image>\nWho?"}};
  for (std::size_t k = 0; k < want.size(); ++k) {
    EXPECT_EQ(set.pairs[k].chosen_text, want[k].first) << k;
    EXPECT_EQ(set.pairs[k].rejected_text, want[k].second) << k;
    EXPECT_EQ(set.pairs[k].group_id, "g1");
    EXPECT_EQ(set.pairs[k].image, "a.jpg");
  }
  EXPECT_EQ(set.pairs[0].chosen_score, 0.7);
  EXPECT_EQ(set.pairs[0].rejected_score, 0.5);
}

TEST(PreferencePairs, AnswerGroupsPerTurn) {
  const std::string text =
      R"([{"id": 7, "image": "b.jpg", "conversations": [)"
      R"({"from": "human", "value": "<image>\nQ1?"}, {"from": "gpt", "value": ["x y", "z"], "score": [0.2, 0.4]},)"
      R"({"from": "human", "value": "Q2?"}, {"from": "gpt", "value": ["u", "v", "w"], "score": [1, 1, 0]}]}])";
  const PairSet set = build_preference_pairs_from_text(text, "a.json", options_for(RewardKind::answer));
  EXPECT_EQ(set.groups, 2u);
  EXPECT_EQ(set.ties_dropped, 1u);
  ASSERT_EQ(set.pairs.size(), 3u);
  EXPECT_EQ(set.pairs[0].chosen_text, "<image>\nQuestion: Q1?\nAnswer: z");
  EXPECT_EQ(set.pairs[0].rejected_text, "<image>\nQuestion: Q1?\nAnswer: x y");
  EXPECT_EQ(set.pairs[0].group_id, "7");
  EXPECT_EQ(set.pairs[0].turn, 0u);
  EXPECT_EQ(set.pairs[0].question, "<image>\nQ1?");
  EXPECT_EQ(set.pairs[1].turn, 1u);
  EXPECT_EQ(set.pairs[1].chosen_text, "<image>\nQuestion: Q2?\nAnswer: u");
  EXPECT_EQ(set.pairs[2].chosen_text, "<image>\nQuestion: Q2?\nAnswer: v");
  EXPECT_EQ(set.pairs[2].rejected_text, "<image>\nQuestion: Q2?\nAnswer: w");
}

TEST(PreferencePairs, GenericPairsPassThrough) {
  const std::string jsonl =
      "{\"id\": \"p1\", \"image\": \"c.jpg\", \"question\": \"Q?\", \"chosen\": \"good\", \"rejected\": \"bad\"}\n"
      "\n"
      "{\"image\": \"c.jpg\", \"question\": \"Q?\", \"chosen\": \"a\", \"rejected\": \"b\", \"chosen_score\": 0.5, "
      "\"rejected_score\": 0.5}\n";
  const PairSet set = build_preference_pairs_from_text(jsonl, "p.jsonl", options_for(RewardKind::answer));
  EXPECT_EQ(set.groups, 2u);
  EXPECT_EQ(set.ties_dropped, 1u);
  ASSERT_EQ(set.pairs.size(), 1u);
  EXPECT_EQ(set.pairs[0].chosen_text, "<image>\nQuestion: Q?\nAnswer: good");
  EXPECT_EQ(set.pairs[0].rejected_text, "<image>\nQuestion: Q?\nAnswer: bad");
  EXPECT_TRUE(std::isnan(set.pairs[0].chosen_score));
  const nlohmann::json line = nlohmann::json::parse(pair_to_json_line(set.pairs[0], RewardKind::answer));
  EXPECT_TRUE(line["chosen_score"].is_null());
  EXPECT_EQ(line["question"], "Q?");

  const std::string q = R"({"image": "d.jpg", "chosen": ["A?", "B?"], "rejected": "C?"})";
  const PairSet qs = build_preference_pairs_from_text(q, "q.jsonl", options_for(RewardKind::question));
  ASSERT_EQ(qs.pairs.size(), 1u);
  EXPECT_EQ(qs.pairs[0].chosen_text, "<image>\nA?\nB?");
  EXPECT_EQ(qs.pairs[0].rejected_text, "<image>\nC?");
}

std::multiset<std::string> words_of(const std::string& rm_text) {
  std::vector<std::string> w = split_words(rm_text);
  w.erase(std::remove(w.begin(), w.end(), "<image>"), w.end());
  return {w.begin(), w.end()};
}

TEST(PreferencePairs, SplitMixIsTheReferenceStream) {
  SplitMix64 rng(0);
  EXPECT_EQ(rng.next(), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(rng.next(), 0x6e789e6aa1b965f4ULL);
  SplitMix64 r2(1);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_LT(r2.below(7), 7u);
    const double u = r2.uniform();
    EXPECT_TRUE(u >= 0 && u < 1);
  }
}

TEST(PreferencePairs, Corruptions) {
  SplitMix64 rng(3);
  std::string out;
  const std::string text = "the  quick brown\nfox <image> jumps";
  const std::vector<std::string> words = {"the", "quick", "brown", "fox", "jumps"};
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(corrupt_text(text, Corruption::shuffle, rng, &out));
    std::vector<std::string> w = split_words(out);
    EXPECT_NE(w, words);
    EXPECT_TRUE(std::is_permutation(w.begin(), w.end(), words.begin(), words.end())) << out;
    ASSERT_TRUE(corrupt_text(text, Corruption::drop, rng, &out));
    w = split_words(out);
    EXPECT_GE(w.size(), 1u);
    EXPECT_LT(w.size(), words.size());
    EXPECT_TRUE([&] {  // a subsequence of the words
      std::size_t k = 0;
      for (const std::string& x : words)
        if (k < w.size() && w[k] == x) ++k;
      return k == w.size();
    }()) << out;
  }
  EXPECT_FALSE(corrupt_text("<image>\nWhy?", Corruption::shuffle, rng, &out));  // one word once the tag is gone
  EXPECT_FALSE(corrupt_text("Why?", Corruption::drop, rng, &out));
  EXPECT_FALSE(corrupt_text("no no no", Corruption::shuffle, rng, &out));
  EXPECT_TRUE(corrupt_text("no no no", Corruption::drop, rng, &out));

  std::vector<std::string> qs;
  ASSERT_TRUE(corrupt_questions({"Why?", "How?"}, Corruption::duplicate, rng, &qs));
  EXPECT_GT(qs.size(), 2u);
  for (const std::string& q : qs) EXPECT_TRUE(q == "Why?" || q == "How?");
  EXPECT_FALSE(corrupt_questions({"Why?", "How?"}, Corruption::shuffle, rng, &qs));
}

TEST(PreferencePairs, AugmentationDeterministicAndMadeOfTheCandidatesWords) {
  const std::string path = test::shared_path(std::string(kDir) + "question_test.json");
  const PairSet none = build_preference_pairs(path, options_for(RewardKind::question, 0, 5));
  EXPECT_EQ(none.augmented, 0u);

  const PairSet a = build_preference_pairs(path, options_for(RewardKind::question, 0.5, 11));
  const PairSet b = build_preference_pairs(path, options_for(RewardKind::question, 0.5, 11));
  const PairSet c = build_preference_pairs(path, options_for(RewardKind::question, 0.5, 12));
  ASSERT_EQ(a.pairs.size(), b.pairs.size());
  for (std::size_t i = 0; i < a.pairs.size(); ++i) {
    EXPECT_EQ(a.pairs[i].rejected_text, b.pairs[i].rejected_text);
    EXPECT_EQ(a.pairs[i].augmented, b.pairs[i].augmented);
  }
  EXPECT_GT(a.augmented, 0u);
  EXPECT_EQ(a.pairs.size(), none.pairs.size() + a.augmented);
  bool differs = a.pairs.size() != c.pairs.size();
  for (std::size_t i = 0; !differs && i < a.pairs.size(); ++i)
    differs = a.pairs[i].rejected_text != c.pairs[i].rejected_text;
  EXPECT_TRUE(differs) << "seeds 11 and 12 gave the same augmentation";

  // Rate 1: every candidate gets a corrupted copy unless nothing can change it.
  for (RewardKind kind : {RewardKind::question, RewardKind::answer}) {
    const std::string file = kind == RewardKind::question ? "question_test.json" : "answer_test_first7.json";
    const PairSet all = build_preference_pairs(test::shared_path(std::string(kDir) + file), options_for(kind, 1, 99));
    const PairSet plain = build_preference_pairs(test::shared_path(std::string(kDir) + file), options_for(kind));
    EXPECT_EQ(all.pairs.size(), plain.pairs.size() + all.augmented) << file;
    EXPECT_GT(all.augmented, 0u);
    for (const PreferencePair& p : all.pairs) {
      if (!p.augmented) continue;
      EXPECT_NE(p.chosen_text, p.rejected_text);
      EXPECT_EQ(p.chosen_score, p.rejected_score);
      const std::multiset<std::string> orig = words_of(p.chosen_text), copy = words_of(p.rejected_text);
      EXPECT_NE(std::vector<std::string>(split_words(p.chosen_text)),
                std::vector<std::string>(split_words(p.rejected_text)));
      for (const std::string& w : copy) EXPECT_EQ(orig.count(w) > 0, true) << w << " not in " << p.chosen_text;
    }
  }
}

std::string write_scratch(const std::string& name, const std::string& content) {
  const std::string path = test::scratch_dir("pairs_input") + "/" + name;
  test::write_file(path, content);
  return path;
}

void expect_error(const std::string& content, RewardKind kind, const std::vector<std::string>& parts) {
  const std::string path = write_scratch("bad.jsonl", content);
  try {
    build_preference_pairs(path, options_for(kind));
    ADD_FAILURE() << "no error for " << content;
  } catch (const PairInputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(path), std::string::npos) << m;
    for (const std::string& part : parts)
      EXPECT_NE(m.find(part), std::string::npos) << "'" << part << "' not in: " << m;
  }
}

TEST(PreferencePairs, BadInputNamesFileRecordAndReason) {
  const std::string good = R"({"id": "a", "questions": [["Q?"], ["R?"]], "score": [0.1, 0.2]})";
  expect_error(good + "\n" + R"({"id": "b", "questions": [["Q?"], ["R?"]], "score": [0.1]})" + "\n", RewardKind::question,
               {"record #1", "line 2", "id \"b\"", "2 candidates", "1 numbers"});
  expect_error(good + "\n\n" + R"({"id": "c", "questions": [["Q?"], []], "score": [0.1, 0.2]})", RewardKind::question,
               {"record #1", "line 3", "questions[1] is an empty list"});
  expect_error(R"({"id": "d", "questions": [["Q?"], [3]], "score": [0.1, 0.2]})", RewardKind::question,
               {"record #0", "questions[1][0] is a number"});
  expect_error(R"({"id": "e", "questions": [["Q?"], ["R?"]], "score": [0.1, "x"]})", RewardKind::question,
               {"score[1] is a string"});
  expect_error(good + "\nnot json\n", RewardKind::question, {"record #1", "line 2", "not JSON"});
  expect_error(good, RewardKind::answer, {"record #0", "given to --kind answer"});
  expect_error(R"([{"id": "f", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}])",
               RewardKind::answer, {"record #0", "id \"f\"", "conversations[1].value is a string"});
  expect_error(
      R"([{"id": "g", "conversations": [{"from": "gpt", "value": "Q"}, {"from": "gpt", "value": ["A"], "score": [1]}]}])",
      RewardKind::answer, {"conversations[0] should be from \"human\""});
  expect_error(
      R"({"id": "h", "question": "Q", "chosen": "a", "rejected": "b", "chosen_score": 0.1, "rejected_score": 0.2})",
      RewardKind::answer, {"record #0", "below rejected_score"});
  expect_error(R"({"id": "i", "chosen": "a"})", RewardKind::question, {"no \"rejected\""});
  expect_error("[{\"id\": 1}, ", RewardKind::question, {"not a JSON array"});
  EXPECT_THROW(build_preference_pairs("/nonexistent/pairs.json", options_for(RewardKind::question)), PairInputError);
  EXPECT_THROW(build_preference_pairs_from_text(good, "x", options_for(RewardKind::question, 1.5)),
               std::invalid_argument);
}

std::string last_line(const std::string& out) {
  std::string s = out;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  const std::size_t nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

TEST(PreferencePairs, Cli) {
  const std::string input = test::shared_path(std::string(kDir) + "question_train.json");
  test::CommandResult r = test::run_command(test::align2_bin() + " pairs --kind question --input " + input);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(last_line(r.out), R"({"groups": 700, "pairs": 10242, "ties_dropped": 2224})");
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 10243);
  const nlohmann::json first = nlohmann::json::parse(r.out.substr(0, r.out.find('\n')));
  EXPECT_EQ(first["group_id"], "000000137730");
  EXPECT_EQ(first["image"], "000000137730.jpg");
  EXPECT_FALSE(first.contains("question"));
  EXPECT_EQ(first["augmented"], false);

  const std::string out = test::scratch_dir("pairs_cli") + "/pairs.jsonl";
  const std::string answers = test::shared_path(std::string(kDir) + "answer_test_first7.json");
  r = test::run_command(test::align2_bin() + " pairs --kind answer --input " + answers +
                        " --augment-rate 0.5 --seed 4 --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const PairSet want = build_preference_pairs(answers, options_for(RewardKind::answer, 0.5, 4));
  EXPECT_EQ(r.out, "{\"groups\": 7, \"pairs\": " + std::to_string(want.pairs.size()) + ", \"ties_dropped\": 36}\n");
  const std::string written = test::read_file(out);
  std::istringstream lines(written);
  std::size_t n = 0;
  for (std::string line; std::getline(lines, line); ++n) {
    ASSERT_LT(n, want.pairs.size());
    EXPECT_EQ(line, pair_to_json_line(want.pairs[n], RewardKind::answer));
  }
  EXPECT_EQ(n, want.pairs.size());

  const std::string bad = write_scratch("bad.json", R"([{"id": "z", "questions": [["Q"]], "score": []}])");
  r = test::run_command(test::align2_bin() + " pairs --kind question --input " + bad);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(bad + " record #0 (id \"z\")"), std::string::npos) << r.err;
  r = test::run_command(test::align2_bin() + " pairs --kind question --input " + input + " --augment-rate 2");
  EXPECT_EQ(r.exit_code, 2);
  r = test::run_command(test::align2_bin() + " pairs --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("ties_dropped"), std::string::npos);
}

// ---- pairs from a pool (--from-pool)

const char* const kDemoPool = "examples/demo/data/llava_instruct_60.json";

PoolPairOptions pool_options(RewardKind kind, std::uint64_t seed = 0, double holdout = 0) {
  PoolPairOptions o;
  o.kind = kind;
  o.seed = seed;
  o.holdout = holdout;
  return o;
}

std::vector<std::string> lines_of(const std::vector<PoolPair>& pairs, RewardKind kind) {
  std::vector<std::string> out;
  for (const PoolPair& p : pairs) out.push_back(pool_pair_to_json_line(p, kind));
  return out;
}

// The bundled pool as independent Python reads it: per record id, questions and answers.
std::map<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>> python_pool(const std::string& path) {
  const std::string dir = test::scratch_dir("pool_python");
  test::write_file(dir + "/read.py",
                   "import json,sys\n"
                   "d=json.load(open(sys.argv[1]))\n"
                   "print(json.dumps({r['id']: [[c['value'] for c in r['conversations'][0::2]],"
                   " [c['value'] for c in r['conversations'][1::2]]] for r in d}))\n");
  const test::CommandResult r = test::run_command("/usr/bin/python3 " + dir + "/read.py " + path);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>> out;
  const nlohmann::json all = nlohmann::json::parse(r.out);
  for (auto it = all.begin(); it != all.end(); ++it)
    out[it.key()] = {it.value()[0].get<std::vector<std::string>>(), it.value()[1].get<std::vector<std::string>>()};
  return out;
}

TEST(PoolPairs, QuestionPairsOnTheBundledSample) {
  const std::string pool = test::source_path(kDemoPool);
  const auto truth = python_pool(pool);
  const PoolPairSet set = build_pool_pairs({pool}, pool_options(RewardKind::question, 3, 0.2));
  EXPECT_EQ(set.records, 60u);
  EXPECT_EQ(set.valid_records, 60u);
  EXPECT_EQ(set.skipped_records, 0u);
  EXPECT_EQ(set.held_out_records, 12u);  // round(0.2 x 60)
  EXPECT_EQ(set.no_negative, 0u);
  EXPECT_EQ(set.train.size(), 48u);  // one pair per record
  EXPECT_EQ(set.held_out.size(), 12u);
  std::set<std::uint64_t> train_records, held_records;
  std::uint64_t counted[4] = {};
  for (const auto* part : {&set.train, &set.held_out}) {
    for (const PoolPair& p : *part) {
      (part == &set.train ? train_records : held_records).insert(p.record);
      ++counted[static_cast<int>(p.negative)];
      // chosen = the record's real questions, verbatim; rejected differs as the reward model reads it.
      ASSERT_TRUE(truth.count(p.id)) << p.id;
      EXPECT_EQ(p.chosen_questions, truth.at(p.id).first);
      EXPECT_NE(question_rm_text(p.rejected_questions), question_rm_text(p.chosen_questions));
      EXPECT_EQ(p.image, p.id + ".jpg");
      if (p.negative == Negative::other_record) {
        EXPECT_NE(p.other_record, p.record);
      } else if (p.negative != Negative::duplicate) {
        // shuffle / drop keep only the set's own words
        std::multiset<std::string> own = words_of(question_rm_text(p.chosen_questions));
        for (const std::string& w : words_of(question_rm_text(p.rejected_questions))) EXPECT_TRUE(own.count(w)) << w;
      }
    }
  }
  for (int n = 0; n < 4; ++n) {
    EXPECT_EQ(counted[n], set.by_negative[n]);
    EXPECT_GT(set.by_negative[n], 0u) << negative_name(static_cast<Negative>(n));  // every kind drawn on 60 records
  }
  // Whole records are held out, and other-record negatives never cross the split.
  for (std::uint64_t r : held_records) EXPECT_FALSE(train_records.count(r));
  for (const PoolPair& p : set.train)
    if (p.negative == Negative::other_record) EXPECT_TRUE(train_records.count(p.other_record));
  for (const PoolPair& p : set.held_out)
    if (p.negative == Negative::other_record) EXPECT_TRUE(held_records.count(p.other_record));
}

TEST(PoolPairs, AnswerPairsPerTurnAndReadableByTraining) {
  const std::string pool = test::source_path(kDemoPool);
  const auto truth = python_pool(pool);
  std::size_t turns = 0;
  for (const auto& [id, qa] : truth) turns += qa.second.size();
  const PoolPairSet set = build_pool_pairs({pool}, pool_options(RewardKind::answer, 5, 0.25));
  EXPECT_EQ(set.train.size() + set.held_out.size() + set.no_negative, turns);
  EXPECT_EQ(set.by_negative[static_cast<int>(Negative::duplicate)], 0u);
  for (const PoolPair& p : set.train) {
    const auto& qa = truth.at(p.id.substr(0, p.id.find('#')));
    EXPECT_EQ(p.id, p.id.substr(0, p.id.find('#')) + "#" + std::to_string(p.turn));
    EXPECT_EQ(p.question, qa.first.at(p.turn));
    EXPECT_EQ(p.chosen_answer, qa.second.at(p.turn));
    EXPECT_NE(answer_rm_text(p.question, p.rejected_answer), answer_rm_text(p.question, p.chosen_answer));
  }
  // The lines are generic pairs: the trainer's reader takes them back unchanged.
  std::string jsonl;
  for (const std::string& line : lines_of(set.train, RewardKind::answer)) jsonl += line + "\n";
  const PairSet back = build_preference_pairs_from_text(jsonl, "train.jsonl", options_for(RewardKind::answer));
  ASSERT_EQ(back.pairs.size(), set.train.size());
  for (std::size_t i = 0; i < back.pairs.size(); ++i) {
    EXPECT_EQ(back.pairs[i].chosen_text, answer_rm_text(set.train[i].question, set.train[i].chosen_answer));
    EXPECT_EQ(back.pairs[i].rejected_text, answer_rm_text(set.train[i].question, set.train[i].rejected_answer));
    EXPECT_EQ(back.pairs[i].image, set.train[i].image);
  }
  std::string qjsonl;
  const PoolPairSet qs = build_pool_pairs({pool}, pool_options(RewardKind::question, 5));
  for (const std::string& line : lines_of(qs.train, RewardKind::question)) qjsonl += line + "\n";
  const PairSet qback = build_preference_pairs_from_text(qjsonl, "q.jsonl", options_for(RewardKind::question));
  ASSERT_EQ(qback.pairs.size(), 60u);
  EXPECT_EQ(qback.pairs[0].chosen_text, question_rm_text(qs.train[0].chosen_questions));
  EXPECT_EQ(qback.pairs[0].rejected_text, question_rm_text(qs.train[0].rejected_questions));
}

TEST(PoolPairs, DeterministicBySeed) {
  const std::string pool = test::source_path(kDemoPool);
  for (RewardKind kind : {RewardKind::question, RewardKind::answer}) {
    const PoolPairSet a = build_pool_pairs({pool}, pool_options(kind, 11, 0.2));
    const PoolPairSet b = build_pool_pairs({pool}, pool_options(kind, 11, 0.2));
    const PoolPairSet c = build_pool_pairs({pool}, pool_options(kind, 12, 0.2));
    EXPECT_EQ(lines_of(a.train, kind), lines_of(b.train, kind));
    EXPECT_EQ(lines_of(a.held_out, kind), lines_of(b.held_out, kind));
    EXPECT_NE(lines_of(a.train, kind), lines_of(c.train, kind));
  }
  // A fixed line: the draws are splitmix64 (portable), so this holds on every platform.
  const PoolPairSet q = build_pool_pairs({pool}, pool_options(RewardKind::question, 0));
  const nlohmann::json first = nlohmann::json::parse(pool_pair_to_json_line(q.train[0], RewardKind::question));
  EXPECT_EQ(first["id"], "000000379143");
  EXPECT_EQ(first["record"], 0);
  EXPECT_EQ(first["chosen"].size(), 5u);
}

TEST(PoolPairs, SeveralPairsPerCandidateTakeEachNegativeInTurn) {
  const std::string pool = test::source_path(kDemoPool);
  PoolPairOptions o = pool_options(RewardKind::question, 2, 0.25);
  o.per_candidate = 4;
  const PoolPairSet set = build_pool_pairs({pool}, o);
  EXPECT_EQ(set.no_negative, 0u);
  EXPECT_EQ(set.train.size(), 4u * 45);
  EXPECT_EQ(set.held_out.size(), 4u * 15);
  for (int n = 0; n < 4; ++n) EXPECT_EQ(set.by_negative[n], 60u);  // one of each per record
  std::map<std::uint64_t, std::set<int>> kinds;
  for (const PoolPair& p : set.train) kinds[p.record].insert(static_cast<int>(p.negative));
  for (const auto& [record, k] : kinds) EXPECT_EQ(k.size(), 4u) << record;
  // The first pair of each candidate is the one per_candidate = 1 makes.
  const PoolPairSet one = build_pool_pairs({pool}, pool_options(RewardKind::question, 2, 0.25));
  for (std::size_t i = 0; i < one.train.size(); ++i)
    EXPECT_EQ(pool_pair_to_json_line(one.train[i], RewardKind::question),
              pool_pair_to_json_line(set.train[4 * i], RewardKind::question));
  o.per_candidate = 0;
  EXPECT_THROW(build_pool_pairs({pool}, o), std::invalid_argument);
}

TEST(PoolPairs, OnlyTheNegativesAskedFor) {
  std::vector<Sample> samples(3);
  const char* ids[] = {"a", "b", "c"};
  for (int i = 0; i < 3; ++i) {
    samples[i].index = i;
    samples[i].id = ids[i];
    samples[i].image = std::string(ids[i]) + ".jpg";
    samples[i].turns = {{"What is shown in picture " + std::to_string(i) + "?",
                         "Answer number " + std::to_string(i) + " is here."}};
  }
  samples[2].status = Status::invalid;
  PoolPairOptions o = pool_options(RewardKind::answer, 1);
  o.negatives = {Negative::other_record};
  PoolPairSet set = build_pool_pairs_from_samples(samples, o);
  EXPECT_EQ(set.skipped_records, 1u);
  ASSERT_EQ(set.train.size(), 2u);
  EXPECT_EQ(set.train[0].rejected_answer, samples[1].turns[0].answer);  // the only other valid record
  EXPECT_EQ(set.train[1].rejected_answer, samples[0].turns[0].answer);
  EXPECT_EQ(set.train[0].other_record, 1u);

  // A one-word answer cannot be shuffled or dropped: no pair, counted.
  samples[0].turns[0].answer = "Yes.";
  o.negatives = {Negative::shuffle, Negative::drop};
  set = build_pool_pairs_from_samples(samples, o);
  EXPECT_EQ(set.train.size(), 1u);
  EXPECT_EQ(set.no_negative, 1u);

  o.negatives = {Negative::duplicate};
  EXPECT_THROW(build_pool_pairs_from_samples(samples, o), std::invalid_argument);
  o = pool_options(RewardKind::question, 0, 1.0);
  EXPECT_THROW(build_pool_pairs_from_samples(samples, o), std::invalid_argument);
  EXPECT_THROW(negative_from_name("swap"), std::invalid_argument);
  EXPECT_EQ(negative_from_name("other_record"), Negative::other_record);
}

TEST(PoolPairs, Cli) {
  const std::string pool = test::source_path(kDemoPool);
  const std::string dir = test::scratch_dir("pool_pairs_cli");
  test::CommandResult r =
      test::run_command(test::align2_bin() + " pairs --from-pool --kind question --input " + pool +
                        " --holdout 0.2 --holdout-out " + dir + "/eval.jsonl --seed 3 --out " + dir + "/train.jsonl");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const PoolPairSet want = build_pool_pairs({pool}, pool_options(RewardKind::question, 3, 0.2));
  std::string train, eval;
  for (const std::string& l : lines_of(want.train, RewardKind::question)) train += l + "\n";
  for (const std::string& l : lines_of(want.held_out, RewardKind::question)) eval += l + "\n";
  EXPECT_EQ(test::read_file(dir + "/train.jsonl"), train);
  EXPECT_EQ(test::read_file(dir + "/eval.jsonl"), eval);
  const nlohmann::json summary = nlohmann::json::parse(r.out);
  EXPECT_EQ(summary["records"], 60);
  EXPECT_EQ(summary["pairs"], 48);
  EXPECT_EQ(summary["held_out_pairs"], 12);
  // The trainer's own reader accepts the file as it is.
  EXPECT_EQ(build_preference_pairs(dir + "/train.jsonl", options_for(RewardKind::question)).pairs.size(), 48u);

  r = test::run_command(test::align2_bin() + " pairs --from-pool --kind answer --input " + pool +
                        " --negatives drop,other_record");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(last_line(r.out).find("\"shuffle\": 0,"), std::string::npos) << last_line(r.out);
  // Usage errors: --holdout without its file, pool-only options without --from-pool, unknown negative.
  for (const std::string& bad : {" --from-pool --kind question --holdout 0.2", " --kind question --negatives drop",
                                 " --from-pool --kind question --negatives swap",
                                 " --from-pool --kind answer --negatives duplicate",
                                 " --from-pool --kind question --augment-rate 0.5"}) {
    r = test::run_command(test::align2_bin() + " pairs --input " + pool + bad);
    EXPECT_EQ(r.exit_code, 2) << bad << "\n" << r.err;
  }
}

}  // namespace
}  // namespace align2
