#include "core/engine/llm_rewriter.h"

#include "core/engine/engine_runtime.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <numeric>

#include "core/engine/generation.h"
#include "core/model/image_preprocess.h"
#include "core/engine/llava_model.h"
#include "core/model/llava_prompt.h"
#include "core/model/memory_estimate.h"
#include "core/model/model_fingerprint.h"
#include "core/data/record_validation.h"
#include "core/engine/reward_model.h"
#include "core/model/tokenizer.h"
#include "core/data/record_text.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The sampling stream of a turn: the first 16 hex digits of the sample key, mixed with the turn.
std::uint64_t turn_seed(const Sample& s, std::size_t turn) {
  std::uint64_t key = s.key.size() >= 16 ? std::stoull(s.key.substr(0, 16), nullptr, 16) : 0;
  return key ^ (0x9e3779b97f4a7c15ull * (std::uint64_t(turn) + 1));
}

// Consecutive groups of `order` (positions sorted by length) of at most `batch_size`
// sequences and `batch_tokens` tokens (0 = no bound); a longer sequence is a group of its own.
std::vector<std::vector<std::size_t>> length_buckets(const std::vector<std::int64_t>& lengths,
                                                     std::uint64_t batch_size, std::uint64_t batch_tokens) {
  std::vector<std::size_t> order(lengths.size());
  std::iota(order.begin(), order.end(), std::size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return lengths[a] < lengths[b]; });
  std::vector<std::vector<std::size_t>> out;
  std::uint64_t tokens = 0;
  for (std::size_t i : order) {
    std::uint64_t len = std::uint64_t(lengths[i]);
    if (out.empty() || out.back().size() >= batch_size ||
        (batch_tokens && !out.back().empty() && tokens + len > batch_tokens)) {
      out.emplace_back();
      tokens = 0;
    }
    out.back().push_back(i);
    tokens += len;
  }
  return out;
}

}  // namespace

LlmRewriter::LlmRewriter(const std::string& model_dir, const std::string& image_root, at::ScalarType dtype,
                   RewriteSettings settings, RewriteTemplates templates, at::Device device)
    : image_root_(image_root), settings_(std::move(settings)), templates_(std::move(templates)) {
  device_ = device;
  spec_ = load_model_spec(model_dir);
  const ModelSpec& spec = spec_;
  dtype_ = dtype;
  if (!spec.has_llm) throw std::runtime_error(fmt::format("{}: the rewrite model has no language model", model_dir));
  // Refused when even one sequence of the model's full length (its KV cache included) cannot
  // fit. A batch's memory depends on its prompts' lengths, known only when it is built (the
  // estimate for a batch of 8 at LLaVA-1.5's 4096 positions is ~50 GB of activations and cache,
  // though real prompts are far shorter): it is not bounded here.
  require_memory(estimate_model_memory(spec, std::size_t(at::elementSize(dtype)), spec.llm.max_positions, 1, true),
                 memory_budget(device), "the rewrite model " + model_dir);
  tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::load(model_dir + "/tokenizer.model"));
  for (int k = 0; k < 2; ++k) {
    const std::string& label = k ? settings_.label_b : settings_.label_a;
    std::vector<std::int32_t> ids = tokenizer_->encode(label, /*add_bos=*/false);
    if (ids.empty()) throw std::runtime_error(fmt::format("review label \"{}\" has no tokens", label));
    label_ids_[k].assign(ids.begin(), ids.end());
  }
  if (label_ids_[0] == label_ids_[1])
    throw std::runtime_error(fmt::format("review labels \"{}\" and \"{}\" tokenize alike", settings_.label_a,
                                         settings_.label_b));
  std::string folders = model_folder_fingerprint(model_dir);
  if (!spec.vision_dir.empty() && spec.vision_dir != spec.dir)  // a separate CLIP folder
    folders += "+" + model_folder_fingerprint(spec.vision_dir);
  fingerprint_ = fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}", folders,
                             template_name(settings_.chat_template), settings_.max_new_tokens, settings_.temperature,
                             settings_.top_p, settings_.label_a, settings_.label_b, settings_.threshold,
                             settings_.limits.min_ratio, settings_.limits.max_ratio,
                             content_key(templates_.rewrite + "\n" + templates_.review),
                             dtype_name(dtype) + (device.is_cuda() ? "+cuda" : ""));
}

LlmRewriter::~LlmRewriter() = default;

bool LlmRewriter::uses_images() const { return spec_.has_vision && spec_.has_projector; }

LlavaModel& LlmRewriter::model() const {
  if (!model_) {
    const auto start = std::chrono::steady_clock::now();
    model_ = std::make_unique<LlavaModel>(spec_, dtype_, device_);
    report_loaded("the rewrite model " + spec_.dir,
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), device_);
  }
  return *model_;
}

void LlmRewriter::release() {
  model_.reset();
  return_free_memory();
}

at::Tensor LlmRewriter::features(const Sample& s) const {
  if (s.image.empty() || !uses_images()) return at::Tensor();
  ImageSpec image = image_spec_for(spec_);
  at::Tensor pixels = at::empty({3, image.size, image.size}, at::kFloat);
  preprocess_image_file((fs::path(image_root_) / s.image).string(), image, pixels.data_ptr<float>());
  return model().project(model().encode_images(pixels.unsqueeze(0))).squeeze(0);
}

std::string LlmRewriter::rewrite_prompt(const Sample& s, std::size_t t) const {
  bool image = !s.image.empty() && uses_images();
  std::string instruction = rewrite_instruction(templates_, s.turns, t);
  return render_inference(settings_.chat_template, {}, image ? with_image_line(instruction) : instruction, image);
}

std::string LlmRewriter::review_prompt(const Sample& s, std::size_t t, const Turn& a, const Turn& b) const {
  bool image = !s.image.empty() && uses_images();
  std::string instruction = review_instruction(templates_, s.turns, t, a, b);
  return render_inference(settings_.chat_template, {}, image ? with_image_line(instruction) : instruction, image);
}

std::int64_t LlmRewriter::prompt_tokens(const std::string& prompt, const at::Tensor& image_features) const {
  std::vector<std::int64_t> ids = tokenize_with_images(*tokenizer_, prompt, spec_.image_token_index);
  std::int64_t n = std::int64_t(ids.size());
  if (image_features.defined())
    for (std::int64_t id : ids) n += id == spec_.image_token_index ? image_features.size(0) - 1 : 0;
  return n;
}

at::Tensor LlmRewriter::embed_prompt(const std::string& prompt, const at::Tensor& image_features) const {
  std::vector<std::int64_t> ids = tokenize_with_images(*tokenizer_, prompt, spec_.image_token_index);
  std::vector<at::Tensor> images;
  if (image_features.defined()) images.push_back(image_features);
  return model().splice(ids, images);
}

std::vector<std::array<double, 2>> LlmRewriter::label_logprobs(const std::vector<std::string>& prompts,
                                                            const at::Tensor& image_features) {
  std::vector<at::Tensor> embeds;
  for (const std::string& p : prompts) embeds.push_back(embed_prompt(p, image_features));
  // Two sequences per prompt: prompt + label A tokens, prompt + label B tokens.
  const LlamaModel& llm = model().llm();
  std::vector<at::Tensor> sequences;
  std::vector<std::int64_t> lengths;
  for (const at::Tensor& e : embeds)
    for (int k = 0; k < 2; ++k) {
      at::Tensor label = llm.embed(at::tensor(label_ids_[k], at::kLong).unsqueeze(0)).squeeze(0);
      sequences.push_back(at::cat({e, label.to(e.scalar_type())}, 0));
      lengths.push_back(sequences.back().size(0));
    }
  std::vector<std::array<double, 2>> out(prompts.size());
  auto t0 = Clock::now();
  for (const std::vector<std::size_t>& bucket : length_buckets(lengths, settings_.batch_size, settings_.batch_tokens)) {
    std::int64_t T = 0;
    for (std::size_t i : bucket) T = std::max(T, lengths[i]);
    const std::int64_t hidden = sequences[bucket[0]].size(1);
    at::Tensor batch = at::zeros({std::int64_t(bucket.size()), T, hidden}, sequences[bucket[0]].options());
    std::vector<std::int64_t> lens;
    for (std::size_t r = 0; r < bucket.size(); ++r) {
      batch[std::int64_t(r)].narrow(0, 0, lengths[bucket[r]]).copy_(sequences[bucket[r]]);
      lens.push_back(lengths[bucket[r]]);
      stats_.prompt_tokens += std::uint64_t(lengths[bucket[r]]);
    }
    at::Tensor h = llm.forward(batch, at::tensor(lens));  // [B, T, hidden]
    for (std::size_t r = 0; r < bucket.size(); ++r) {
      std::size_t seq = bucket[r], prompt = seq / 2;
      int k = int(seq % 2);
      const auto& ids = label_ids_[k];
      std::int64_t m = std::int64_t(ids.size()), start = lens[r] - m - 1;  // the position predicting ids[0]
      at::Tensor logp = at::log_softmax(llm.logits(h[std::int64_t(r)].narrow(0, start, m)), -1);  // [m, vocab] f32
      double sum = 0;
      for (std::int64_t j = 0; j < m; ++j) sum += logp[j][ids[std::size_t(j)]].item<double>();
      out[prompt][std::size_t(k)] = sum;
    }
  }
  stats_.review_s += seconds_since(t0);
  return out;
}

std::vector<SampleRewrite> LlmRewriter::rewrite(const std::vector<const Sample*>& samples) {
  at::NoGradGuard no_grad;
  std::vector<SampleRewrite> out(samples.size());
  std::vector<at::Tensor> feats(samples.size());
  struct Request {
    std::size_t sample, turn;
    at::Tensor embeds;  // [T, hidden]
  };
  std::vector<Request> requests;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const Sample& s = *samples[i];
    out[i].turns.resize(s.turns.size());
    try {
      feats[i] = features(s);
    } catch (const ImageError& e) {
      out[i].failure = fmt::format("pool record {} (id \"{}\"): {} [{}]", s.index, s.id, e.what(), e.reason_code);
      continue;
    }
    for (std::size_t t = 0; t < s.turns.size(); ++t)
      requests.push_back({i, t, embed_prompt(rewrite_prompt(s, t), feats[i])});
  }

  // Rewrite: batched generation over length buckets.
  GenerationOptions options;
  options.max_new_tokens = settings_.max_new_tokens;
  options.temperature = settings_.temperature;
  options.top_p = settings_.top_p;
  options.eos_token_id = spec_.llm.eos_token_id;
  const std::int64_t positions = spec_.llm.max_positions;
  auto finish = [&](const Request& r, const GenerationResult& g) {
    std::vector<std::int32_t> ids(g.tokens.begin(), g.tokens.end());
    if (g.stopped_by_eos && !ids.empty()) ids.pop_back();
    TurnRewrite& tr = out[r.sample].turns[r.turn];
    tr.generated_tokens = g.tokens.size();
    stats_.generated_tokens += tr.generated_tokens;
    tr.reply = tokenizer_->decode(ids);
    ParsedRewrite parsed = parse_rewrite(tr.reply, g.stopped_by_eos, samples[r.sample]->turns[r.turn], settings_.limits);
    tr.reason = parsed.reason;
    tr.detail = parsed.detail;
    tr.rewrite = parsed.turn;
  };
  // Prompts with room for max_new_tokens go in length buckets; a prompt near the context's
  // end generates alone with the room it has (so no sequence's bound depends on its batchmates).
  std::vector<std::int64_t> lengths;
  std::vector<std::size_t> bucketed;
  auto t0 = Clock::now();
  for (std::size_t q = 0; q < requests.size(); ++q) {
    const Request& r = requests[q];
    std::int64_t T = r.embeds.size(0), room = positions - T;
    if (room >= settings_.max_new_tokens) {
      bucketed.push_back(q);
      lengths.push_back(T);
      continue;
    }
    if (room < 1) {
      TurnRewrite& tr = out[r.sample].turns[r.turn];
      tr.reason = RewriteFallback::too_long;
      tr.detail = fmt::format("the rewrite prompt has {} tokens; the model holds {}", T, positions);
      continue;
    }
    GenerationOptions alone = options;
    alone.max_new_tokens = room;
    stats_.prompt_tokens += std::uint64_t(T);
    finish(r, generate(model().llm(), {r.embeds}, {turn_seed(*samples[r.sample], r.turn)}, alone)[0]);
  }
  for (const std::vector<std::size_t>& bucket : length_buckets(lengths, settings_.batch_size, settings_.batch_tokens)) {
    std::vector<at::Tensor> prompts;
    std::vector<std::uint64_t> seeds;
    for (std::size_t j : bucket) {
      const Request& r = requests[bucketed[j]];
      prompts.push_back(r.embeds);
      seeds.push_back(turn_seed(*samples[r.sample], r.turn));
      stats_.prompt_tokens += std::uint64_t(lengths[j]);
    }
    std::vector<GenerationResult> results = generate(model().llm(), prompts, seeds, options);
    for (std::size_t j = 0; j < bucket.size(); ++j) finish(requests[bucketed[bucket[j]]], results[j]);
  }
  stats_.generate_s += seconds_since(t0);

  // Review: both orders of every well-formed rewrite that differs from its original.
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const Sample& s = *samples[i];
    std::vector<std::string> prompts;
    std::vector<std::size_t> turns;
    for (std::size_t t = 0; t < out[i].turns.size(); ++t) {
      TurnRewrite& tr = out[i].turns[t];
      if (!out[i].failure.empty() || tr.reason != RewriteFallback::none) continue;
      const Turn& original = s.turns[t];
      if (tr.rewrite.question == original.question && tr.rewrite.answer == original.answer) {
        tr.reviewed = true;  // nothing to choose: the original stays, at probability one half
        tr.review = decide_review(0, 0, 0, 0, settings_.threshold);
        tr.review.keep_rewrite = tr.keep_rewrite = false;
        continue;
      }
      std::string order1 = review_prompt(s, t, original, tr.rewrite);  // A = original
      std::string order2 = review_prompt(s, t, tr.rewrite, original);  // A = rewrite
      std::int64_t longest = std::max(prompt_tokens(order1, feats[i]), prompt_tokens(order2, feats[i])) +
                             std::int64_t(std::max(label_ids_[0].size(), label_ids_[1].size()));
      if (longest > positions) {
        tr.reason = RewriteFallback::too_long;
        tr.detail = fmt::format("the review prompt has {} tokens; the model holds {}", longest, positions);
        continue;
      }
      prompts.push_back(order1);
      prompts.push_back(order2);
      turns.push_back(t);
    }
    if (prompts.empty()) continue;
    std::vector<std::array<double, 2>> lp = label_logprobs(prompts, feats[i]);
    for (std::size_t j = 0; j < turns.size(); ++j) {
      TurnRewrite& tr = out[i].turns[turns[j]];
      tr.reviewed = true;
      tr.review = decide_review(lp[2 * j][0], lp[2 * j][1], lp[2 * j + 1][0], lp[2 * j + 1][1], settings_.threshold);
      tr.keep_rewrite = tr.review.keep_rewrite;
    }
  }
  return out;
}

RewriteSettings rewrite_settings(const RewriteConfig& config) {
  RewriteSettings settings;
  settings.chat_template = template_from_name(config.chat_template);
  settings.max_new_tokens = std::int64_t(config.max_new_tokens);
  settings.temperature = config.temperature;
  settings.top_p = config.top_p;
  settings.label_a = config.review_labels.at(0);
  settings.label_b = config.review_labels.at(1);
  settings.threshold = config.review_threshold;
  settings.limits = config.limits;
  settings.batch_size = config.batch;
  settings.batch_tokens = 0;  // a group is one call: its composition must not depend on lengths elsewhere
  return settings;
}

std::string rewrite_model_dir(const RewriteConfig& rewrite, const ModelsConfig& models) {
  if (!rewrite.model.empty()) return rewrite.model;
  if (models.question_model.empty())
    throw std::runtime_error("config key \"rewrite_model\" is empty and there is no question_model whose base model "
                             "could rewrite: name the LLaVA or LLaMA folder that rewrites (docs/rewrite.md)");
  return load_reward_config(models.question_model).base_model;
}

}  // namespace align2
