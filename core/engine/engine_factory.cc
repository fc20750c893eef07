#include "core/engine/engine_factory.h"

#include "core/engine/engine_runtime.h"
#include "core/engine/llm_rewriter.h"
#include "core/engine/reward_scorer.h"
#include "core/rewrite/rewrite_prompt.h"

namespace align2 {
namespace {

at::ScalarType run_dtype(const ModelsConfig& models) { return models.dtype == "bf16" ? at::kBFloat16 : at::kFloat; }

}  // namespace

int configure_engine_threads(unsigned long long configured) {
  const int threads = threads_per_rank(configured);
  configure_cpu_engine(threads);
  return threads;
}

std::unique_ptr<Scorer> make_reward_scorer(const ModelsConfig& models, const std::string& image_root) {
  return std::make_unique<RewardScorer>(models.question_model, models.answer_model, image_root, run_dtype(models),
                                        models.image_aspect);
}

std::unique_ptr<Rewriter> make_rewriter(const RewriteConfig& rewrite, const ModelsConfig& models,
                                        const std::string& image_root) {
  return std::make_unique<LlmRewriter>(rewrite_model_dir(rewrite, models), image_root, run_dtype(models),
                                       rewrite_settings(rewrite),
                                       load_rewrite_templates(rewrite.rewrite_prompt, rewrite.review_prompt));
}

}  // namespace align2
