#include "core/engine/engine_factory.h"

#include "core/engine/engine_runtime.h"
#include "core/engine/llm_rewriter.h"
#include "core/engine/reward_scorer.h"
#include "core/rewrite/rewrite_prompt.h"

namespace align2 {
namespace {

at::Device device_of(int index) { return index < 0 ? at::Device(at::kCPU) : at::Device(at::kCUDA, at::DeviceIndex(index)); }

}  // namespace

int configure_engine_threads(unsigned long long configured) {
  const int threads = threads_per_rank(configured);
  configure_cpu_engine(threads);
  return threads;
}

int engine_device_index(const ModelsConfig& models) {
  const at::Device device = engine_device(models.device);
  return device.is_cuda() ? int(device.index()) : -1;
}

std::unique_ptr<Scorer> make_reward_scorer(const ModelsConfig& models, const std::string& image_root, int device) {
  const at::Device on = device_of(device);
  const std::int64_t batch = models.score_batch ? std::int64_t(models.score_batch) : on.is_cuda() ? 8 : 1;
  return std::make_unique<RewardScorer>(models.question_model, models.answer_model, image_root,
                                        run_dtype(models.dtype, on), models.image_aspect, on, batch);
}

std::unique_ptr<Rewriter> make_rewriter(const RewriteConfig& rewrite, const ModelsConfig& models,
                                        const std::string& image_root, int device) {
  const at::Device on = device_of(device);
  return std::make_unique<LlmRewriter>(rewrite_model_dir(rewrite, models), image_root, run_dtype(models.dtype, on),
                                       rewrite_settings(rewrite),
                                       load_rewrite_templates(rewrite.rewrite_prompt, rewrite.review_prompt), on);
}

}  // namespace align2
