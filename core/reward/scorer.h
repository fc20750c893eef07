// Where the engine plugs into the cascade: a Scorer gives the question score f(I,Q)
// of a sample and the answer score g(I,Q,A) of each of its turns. The reward-model
// scorers (libtorch) implement it; tests use a deterministic double under test/.
//
// Contract: a score depends only on the sample itself and, for a scorer whose group_size() is
// above 1, on the fixed group it is scored with, so results are identical for any rank count.
#pragma once

#include <string>
#include <vector>

#include "core/data/sample.h"

namespace align2 {

// A sample the scorer could not score (its image cannot be decoded, say): it leaves the
// cascade with status invalid and this reason; nothing else of it is read.
struct ScoreFailure {
  std::size_t sample = 0;  // position in the `samples` argument
  Reason reason = Reason::bad_image;
  std::string message;     // names the record and what is wrong
};

class Scorer {
 public:
  virtual ~Scorer() = default;

  // One score per sample: out[i] for samples[i]. `out` has samples.size() entries.
  // Samples that cannot be scored are appended to `failures` (their out[i] is ignored).
  virtual void score_questions(const std::vector<const Sample*>& samples, float* out,
                               std::vector<ScoreFailure>* failures) = 0;

  // One score per (question, answer) turn: out[i] gets samples[i]->turns.size() values,
  // except for samples appended to `failures`.
  virtual void score_answers(const std::vector<const Sample*>& samples, std::vector<std::vector<float>>* out,
                             std::vector<ScoreFailure>* failures) = 0;

  // Identifies the models (weights, settings); part of every shard's config fingerprint.
  virtual std::string fingerprint() const = 0;

  // What the scores of one stage ("select_questions" or "select_answers") depend on besides
  // the sample: that stage's model and its settings. It keys the score cache
  // (core/store/score_cache.h), so that retraining one model keeps the other stage's cache.
  virtual std::string stage_fingerprint(const std::string& stage) const { return fingerprint(); }

  // Called when a stage is done with the scorer (collective point: every rank calls it at the
  // same stage boundary). A scorer that holds models frees them here, so that a rank holds one
  // stage's model at a time; the next score_* call loads what it needs again.
  virtual void release() {}

  // Samples the scorer wants per call: 1 = any grouping (its scores never depend on the call's
  // other samples). Above 1 its forward passes batch sequences, whose arithmetic depends on
  // their batchmates in the last bits; the pipeline then calls it on fixed groups of this many
  // consecutive items of a stage's order (only those of a group that need the model), so that
  // results are identical for any number of ranks.
  virtual std::size_t group_size() const { return 1; }
};

}  // namespace align2
