#include "core/engine/generation.h"

#include "core/util/splitmix64.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace align2 {
namespace {

// Uniform in [0, 1) with 53 random bits: draw `step` of a counter-based splitmix64 stream, so
// draw k of seed s needs no state.
double uniform(std::uint64_t seed, std::uint64_t step) {
  return double(splitmix64(splitmix64(seed) ^ step) >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace

std::int64_t sample_token(const float* logits, std::int64_t vocab, const GenerationOptions& o, std::uint64_t seed,
                          std::uint64_t step) {
  if (o.temperature <= 0.0) {
    std::int64_t best = 0;
    for (std::int64_t i = 1; i < vocab; ++i)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  // Softmax of logits / temperature in double, most likely first (ties: lower id first).
  std::vector<std::int64_t> order(static_cast<std::size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return logits[a] > logits[b]; });
  double top = double(logits[order[0]]) / o.temperature;
  std::vector<double> p(static_cast<std::size_t>(vocab));
  double sum = 0;
  for (std::size_t k = 0; k < p.size(); ++k) {
    p[k] = std::exp(double(logits[order[k]]) / o.temperature - top);
    sum += p[k];
  }
  // Nucleus: keep the smallest prefix whose mass reaches top_p (at least one token).
  std::size_t keep = p.size();
  if (o.top_p < 1.0) {
    double mass = 0;
    for (std::size_t k = 0; k < p.size(); ++k) {
      mass += p[k] / sum;
      if (mass >= o.top_p) {
        keep = k + 1;
        break;
      }
    }
  }
  double kept = 0;
  for (std::size_t k = 0; k < keep; ++k) kept += p[k];
  double u = uniform(seed, step) * kept, acc = 0;
  for (std::size_t k = 0; k < keep; ++k) {
    acc += p[k];
    if (u < acc) return order[k];
  }
  return order[keep - 1];
}

std::vector<GenerationResult> generate(const LlamaModel& model, const std::vector<at::Tensor>& prompts,
                                       const std::vector<std::uint64_t>& seeds, const GenerationOptions& o) {
  const std::int64_t B = std::int64_t(prompts.size());
  std::vector<GenerationResult> out(prompts.size());
  if (B == 0) return out;
  if (seeds.size() != prompts.size()) throw std::invalid_argument("generate: one seed per prompt");
  const std::int64_t H = model.config().hidden_size, vocab = model.config().vocab_size;
  std::int64_t T = 0;
  std::vector<std::int64_t> lens;
  for (const at::Tensor& p : prompts) {
    if (p.dim() != 2 || p.size(0) < 1 || p.size(1) != H)
      throw std::invalid_argument("generate: each prompt must be [T >= 1, hidden]");
    lens.push_back(p.size(0));
    T = std::max(T, p.size(0));
  }
  if (o.max_new_tokens < 0 || o.max_new_tokens > model.config().max_positions - T)
    throw std::runtime_error(fmt::format("prompt of {} tokens + {} new tokens exceeds the model's {} positions", T,
                                         o.max_new_tokens, model.config().max_positions));
  // Right-padded batch.
  at::Tensor embeds = at::zeros({B, T, H}, at::TensorOptions().dtype(model.dtype()).device(model.device()));
  for (std::int64_t b = 0; b < B; ++b) embeds[b].narrow(0, 0, lens[std::size_t(b)]).copy_(prompts[std::size_t(b)]);
  at::Tensor lengths = at::tensor(lens, at::TensorOptions().dtype(at::kLong));
  KVCache cache;
  at::Tensor hidden = model.forward(embeds, lengths, &cache, T + o.max_new_tokens);

  // Logits at each row's last prompt position.
  at::Tensor last_index = (lengths - 1).to(model.device()).view({B, 1, 1}).expand({B, 1, H});
  at::Tensor last = hidden.gather(1, last_index).squeeze(1);
  if (o.keep_logits)
    for (std::int64_t b = 0; b < B; ++b)
      out[std::size_t(b)].logits = model.logits(hidden[b].narrow(0, 0, lens[std::size_t(b)])).cpu();

  std::vector<bool> done(std::size_t(B), false);
  std::int64_t remaining = B;
  for (std::int64_t step = 0; step < o.max_new_tokens && remaining > 0; ++step) {
    at::Tensor logits = model.logits(last).cpu().contiguous();  // [B, vocab] float32
    if (o.keep_logits && step > 0)  // the rows that were fed a real token last step
      for (std::int64_t b = 0; b < B; ++b)
        if (!done[std::size_t(b)])
          out[std::size_t(b)].logits = at::cat({out[std::size_t(b)].logits, logits[b].unsqueeze(0)}, 0);
    std::vector<std::int64_t> next(std::size_t(B), o.eos_token_id);
    for (std::int64_t b = 0; b < B; ++b) {
      if (done[std::size_t(b)]) continue;
      std::int64_t t = sample_token(logits[b].data_ptr<float>(), vocab, o, seeds[std::size_t(b)], std::uint64_t(step));
      next[std::size_t(b)] = t;
      GenerationResult& r = out[std::size_t(b)];
      r.tokens.push_back(t);
      if (t == o.eos_token_id || std::int64_t(r.tokens.size()) == o.max_new_tokens) {
        r.stopped_by_eos = t == o.eos_token_id;
        done[std::size_t(b)] = true;
        --remaining;
      }
    }
    if (remaining == 0) break;
    // Feed every row (finished rows feed EOS; their results are no longer read).
    at::Tensor ids = at::tensor(next, at::TensorOptions().dtype(at::kLong)).view({B, 1});
    last = model.decode(model.embed(ids), cache).squeeze(1);
  }
  return out;
}

}  // namespace align2
