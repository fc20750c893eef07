// Where the LLM plugs into stage 3 (LLM characteristic alignment): a Rewriter turns each
// kept sample's (question, answer) turns into rewrites and review decisions. The LLM
// implementation is core/engine/llm_rewriter.h (libtorch); tests use a deterministic double under test/.
//
// Contract: a sample's result depends only on the sample and on the samples passed in the
// same call, and callers pass fixed groups (rewrite_batch consecutive samples of the stage's
// order), so results are identical for any rank count and any batch_size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/rewrite/rewrite_prompt.h"
#include "core/data/sample.h"

namespace align2 {

// One turn's outcome.
struct TurnRewrite {
  std::string reply;                // the model's reply, as generated (EOS excluded)
  Turn rewrite;                     // the parsed rewrite ("" / "" when it fell back)
  RewriteFallback reason = RewriteFallback::none;
  std::string detail;               // why it fell back; "" otherwise
  bool reviewed = false;            // the review ran (reason == none)
  ReviewDecision review;            // probabilities (0.5 each when not reviewed)
  bool keep_rewrite = false;        // the turn that ends in curated.json is the rewrite
  std::uint64_t generated_tokens = 0;
};

struct SampleRewrite {
  std::vector<TurnRewrite> turns;   // one per sample turn
  std::string failure;              // non-empty: the sample could not be rewritten at all (its image)
};

struct RewriteStats {
  std::uint64_t prompt_tokens = 0;     // prefill tokens, rewrite and review
  std::uint64_t generated_tokens = 0;  // decode tokens
  double generate_s = 0;               // seconds in rewrite generation
  double review_s = 0;                 // seconds in review forwards
};

class Rewriter {
 public:
  virtual ~Rewriter() = default;
  // One result per sample, in order, each with one TurnRewrite per sample turn. A sample
  // whose image cannot be used gets `failure` (its turns keep their originals).
  virtual std::vector<SampleRewrite> rewrite(const std::vector<const Sample*>& samples) = 0;
  virtual const RewriteStats& stats() const = 0;
  // Identifies the model, prompts and settings; part of the run's fingerprint.
  virtual std::string fingerprint() const = 0;
  // Called when the stage is done with the rewriter: a rewriter that holds a model frees it;
  // the next rewrite() loads it again.
  virtual void release() {}
};

}  // namespace align2
