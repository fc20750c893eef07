// Preference pairs for reward-model training, built the Align2LLaVA way (arXiv 2409.18541,
// reference code DCDmllm/Align2LLaVA reward_model/llava/data/train_data.py): from groups of
// candidates with human scores, every ordered pair (better, worse) whose human score is
// strictly higher; tied pairs are dropped and counted. The question reward model f(I,Q)
// compares two question SETS of one image; the answer reward model g(I,Q,A) compares two
// answers to one question of one image.
//
// Input files (told apart by the first non-blank byte: '[' = one JSON array, '{' = JSONL,
// one record per line, blank lines skipped); the form of each record is told by its keys:
//   question group  {"id", "image", "questions": [[q, ...] x K], "score": [K numbers]}
//                   (a candidate may also be a single string: one question)
//   answer group    LLaVA record {"id", "image", "conversations": [human, gpt, human, gpt, ...]}
//                   whose gpt turns carry "value": [K answer strings] and "score": [K numbers];
//                   each (human, gpt) turn is one group
//   generic pair    {"image", "chosen", "rejected"} plus, for --kind answer, "question": string;
//                   for --kind question, chosen / rejected are a question string or a list of
//                   question strings (the question sets). Optional "id", "chosen_score",
//                   "rejected_score" (both or neither). Passed through after validation: each
//                   line is one group; equal scores are dropped as a tie; a chosen score below
//                   the rejected one is an error.
// Every record is validated; a bad record throws PairInputError naming the file, the
// 0-based record index, its line, its id and the reason. Nothing is skipped silently:
// a group of fewer than two candidates, or whose scores all tie, simply gives no pairs.
//
// Order: groups in file order; within a group, for each candidate i in order, its pairs
// (i, j) for j = 0..K-1 with score[i] > score[j], then its augmented pair if drawn (the
// reference code's order).
//
// Augmentation (augment_rate R, default 0): for each candidate, with probability R, one
// extra pair (candidate, corrupted copy of itself), scores both the candidate's, augmented
// = true. Draws come from splitmix64 seeded by (seed, group index, candidate index), so a
// candidate's augmentation depends only on the seed and its position, the same on every
// platform. Corruptions (words = runs of non-whitespace of the text with "<image>" removed;
// the copy joins them with single spaces):
//   shuffle    the words in a random order different from the original's
//   drop       a random subset of 1..n-1 of the n words, in their original order
//   duplicate  (question sets only) 1..m of the m questions repeated at random positions
// Answers draw shuffle or drop; question sets draw one of the three, and shuffle / drop
// apply to every question of the set. A copy always differs from the original in its word
// sequence; when the drawn corruption cannot change the candidate (e.g. a one-word text)
// the others are tried in order, and a candidate nothing can change gets no augmented pair
// (counted in augment_skipped). Generic pairs augment their chosen candidate.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/data/sample.h"
#include "core/reward/reward_text.h"
#include "core/util/splitmix64.h"

namespace align2 {


struct PreferencePair {
  std::string group_id;       // the record's "id" as text ("" when absent)
  std::uint64_t record = 0;   // 0-based record index in the input file
  std::uint64_t turn = 0;     // answer kind: 0-based (human, gpt) turn of the record; else 0
  std::string image;          // relative image path ("" for a text-only record)
  std::string question;       // answer kind: the human turn verbatim; "" for the question kind
  std::string chosen_text;    // reward-model input of the preferred candidate
  std::string rejected_text;  // reward-model input of the other one
  double chosen_score = 0;    // human scores; NaN for a generic pair without scores
  double rejected_score = 0;
  bool augmented = false;  // rejected is a corrupted copy of chosen
};

struct PairOptions {
  RewardKind kind = RewardKind::question;
  double augment_rate = 0;  // in [0, 1]
  std::uint64_t seed = 0;
};

struct PairSet {
  std::vector<PreferencePair> pairs;
  std::uint64_t groups = 0;           // groups read (question records, answer turns, generic lines)
  std::uint64_t ties_dropped = 0;     // unordered candidate pairs with equal scores
  std::uint64_t augmented = 0;        // augmented pairs among `pairs`
  std::uint64_t augment_skipped = 0;  // candidates drawn for augmentation that no corruption changes
};

// A record that cannot be used: the message names file, record index, line, id and reason.
struct PairInputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Reads and validates `path`, then builds the pairs. Throws PairInputError for bad input
// (including an unreadable file), std::invalid_argument for bad options.
PairSet build_preference_pairs(const std::string& path, const PairOptions& options);

// Same, from the file's text; `name` is used in messages.
PairSet build_preference_pairs_from_text(const std::string& text, const std::string& name, const PairOptions& options);

// The words of a text: runs of characters that are not whitespace (space, \t, \n, \v, \f,
// \r and \x1c-\x1f: Python's ASCII whitespace).
std::vector<std::string> split_words(const std::string& text);

enum class Corruption { shuffle, drop, duplicate };

// The corruptions, exposed for tests. They work on the text with "<image>" removed (so that
// moving the tag alone never counts as a change); the copy holds no "<image>".
// A corrupted copy of one text (shuffle or drop); false (out unspecified) when `c` cannot
// change its word sequence (fewer than two words; for shuffle, all words alike).
bool corrupt_text(const std::string& text, Corruption c, SplitMix64& rng, std::string* out);
// A corrupted copy of a question set (shuffle / drop apply to every question); false when
// `c` cannot change the set.
bool corrupt_questions(const std::vector<std::string>& questions, Corruption c, SplitMix64& rng,
                       std::vector<std::string>* out);

// One pair as a JSON line (no newline): group_id, record, turn, image, question (answer
// kind only), chosen_text, rejected_text, chosen_score, rejected_score (null when NaN),
// augmented.
std::string pair_to_json_line(const PreferencePair& pair, RewardKind kind);

// ---------------------------------------------------------------------------------------
// Pairs straight from a LLaVA pool, without human scores: every negative is made from the
// pool itself (for demos and smoke tests; the paper's reward models learn from human
// rankings, which a pool does not hold).
//
//   question kind   per valid record (the candidate): chosen = the record's question set
//                   (every human turn), rejected = a negative of it
//   answer kind     per (question, answer) turn of a valid record (the candidate): chosen =
//                   the real answer, rejected = a negative of it, for the same question
//
// Each candidate gives per_candidate pairs. Negatives: the first pair draws one uniformly
// among those allowed, the r-th pair takes the one r places after it in the list (so with
// per_candidate = the number allowed, one of each); when a negative cannot change the
// candidate the next ones are tried in order, and a pair none can make is not made
// (counted in `no_negative`):
//   shuffle       the words in another order      (corrupt_text / corrupt_questions)
//   drop          a random 1..n-1 of the n words   (idem)
//   duplicate     question sets only: questions repeated at random positions
//   other_record  the question set of another record (question kind), or the answer of a
//                 random turn of another record (answer kind), whose reward-model text
//                 differs from the candidate's; drawn from the same split (training or
//                 held-out), so held-out texts never appear in training pairs
// Held-out split: round(holdout × N) of the N valid records (at least 1 and at most N - 1
// when holdout > 0 and N >= 2), chosen by a seeded permutation; all their pairs go to
// `held_out`. Every draw comes from splitmix64 streams seeded by the seed and the record's
// pool index (and turn): the output depends only on the pool, the options and the seed.
// Records that are not valid (see core/data/record_validation.h; with image_root, also records
// whose image is missing) give no pairs and are counted.
enum class Negative { shuffle, drop, duplicate, other_record };
const char* negative_name(Negative n);  // "shuffle", "drop", "duplicate", "other_record"
// Inverse of negative_name; throws std::invalid_argument for unknown names.
Negative negative_from_name(const std::string& name);

struct PoolPairOptions {
  RewardKind kind = RewardKind::question;
  std::uint64_t seed = 0;
  double holdout = 0;               // in [0, 1)
  std::uint64_t per_candidate = 1;  // pairs per candidate, 1 to 64
  std::vector<Negative> negatives;  // allowed negatives, in this order; empty = all that apply to the kind
  std::string image_root;           // "" = image files are not checked
  std::string subset_field;         // passed to validation (no effect on the pairs)
};

struct PoolPair {
  std::string id;            // the record's id; answer kind: id + "#" + turn
  std::uint64_t record = 0;  // pool index (0-based across the pool files)
  std::uint64_t turn = 0;    // answer kind: 0-based turn; else 0
  std::string image;
  std::string question;      // answer kind: the human turn verbatim
  std::vector<std::string> chosen_questions, rejected_questions;  // question kind
  std::string chosen_answer, rejected_answer;                     // answer kind
  Negative negative = Negative::shuffle;
  std::uint64_t other_record = 0;  // other_record negatives: pool index of the record it came from
};

struct PoolPairSet {
  std::vector<PoolPair> train, held_out;
  std::uint64_t records = 0;           // input records
  std::uint64_t valid_records = 0;     // records that give pairs
  std::uint64_t skipped_records = 0;   // records that are not valid (or whose image is missing)
  std::uint64_t held_out_records = 0;
  std::uint64_t no_negative = 0;       // pairs not made: no allowed negative could change the candidate
  std::uint64_t by_negative[4] = {};   // pairs per Negative (train + held out)
};

// Reads the pool files (LLaVA JSON arrays or JSONL, as `align2 inspect` does) and builds the
// pairs. Throws PoolFileError (core/data/corpus_index.h) for an unreadable file,
// std::invalid_argument for bad options (holdout outside [0, 1), per_candidate outside
// 1..64, duplicate for answers, a negative given twice).
PoolPairSet build_pool_pairs(const std::vector<std::string>& pools, const PoolPairOptions& options);

// The same from records already read: `turns`, `id` and `image` of each valid sample are
// used; samples whose status is not valid are skipped (counted).
PoolPairSet build_pool_pairs_from_samples(const std::vector<Sample>& samples, const PoolPairOptions& options);

// A pool pair as one JSON line (no newline) in the generic pair form that
// build_preference_pairs and `align2 train-reward` read: {"id", "image", "question"
// (answer kind), "chosen", "rejected", "negative", "record", "turn" (answer kind),
// "other_record" (other_record negatives)}.
std::string pool_pair_to_json_line(const PoolPair& pair, RewardKind kind);

}  // namespace align2
