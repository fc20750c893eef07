// A deterministic Rewriter for tests (a test double: product code never uses it). Each turn's
// outcome is a pure function of the turn's text: about a third of the turns fall back with a
// reason, the rest are rewritten ("Rephrased: ..." / answer with a marker) and reviewed with
// a probability drawn from the text; samples whose image is `fail_image` fail as a whole.
#pragma once

#include "core/rewrite/rewriter.h"

namespace align2::test {

class TestRewriter : public Rewriter {
 public:
  std::vector<SampleRewrite> rewrite(const std::vector<const Sample*>& samples) override;
  const RewriteStats& stats() const override { return stats_; }
  std::string fingerprint() const override { return "test-rewriter-v1"; }
  void release() override { ++releases; }

  std::size_t samples_rewritten = 0;  // samples passed to rewrite() in all calls
  std::size_t largest_call = 0;       // most samples in one call
  std::string fail_image;
  std::size_t releases = 0;  // release() calls: one per rewrite stage

 private:
  RewriteStats stats_;
};

}  // namespace align2::test
