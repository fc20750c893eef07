// kernels/rms_norm, rope and decode_attention micro-benchmark at decode shapes (one new token per
// sequence; hidden 1024, 16 heads of 64), float32 and bfloat16: each fused kernel (its rows or
// (sequence, head) items split over threads with at::parallel_for, as the engine does) against
// the chain of ATen ops core/engine/llama_model.cc runs for the same step. Microseconds per call (for
// attention, per layer: the caches of enough layers to exceed the last-level cache are cycled
// through, as decode does), the speed-up, and attention's K/V bytes read per second against
// this machine's copy bandwidth measured in the same run.
// Usage: decode_kernels_bench [THREADS]    (unset OPENBLAS_CORETYPE for this command only)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <limits>
#include <thread>

#include "bench/machine_limits.h"
#include "core/engine/engine_runtime.h"
#include "kernels/decode_attention.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"

using namespace align2::bench;

namespace {

// Seconds per call of fn: enough calls for ~20 ms per timing, the best of 5 timings.
double per_call(const std::function<void()>& fn) {
  fn();
  const double once = std::max(best_time(1, fn), 1e-7);
  const int calls = int(std::min(10000.0, std::max(1.0, 0.02 / once)));
  return best_time(5, [&] {
           for (int i = 0; i < calls; ++i) fn();
         }) /
         calls;
}

template <class T>
T* ptr(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

void row(const std::string& what, double fused, double aten, const std::string& extra = "") {
  fmt::print("{:44} fused {:9.2f} us | ATen {:9.2f} us | x{:6.1f}{}\n", what, fused * 1e6, aten * 1e6, aten / fused,
             extra);
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::stoi(argv[1]) : int(std::thread::hardware_concurrency());
  align2::configure_cpu_engine(threads);
  at::NoGradGuard no_grad;
  const double bw = copy_bandwidth();
  fmt::print("threads {}; copy bandwidth {:.1f} GB/s\n", threads, bw / 1e9);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const bool bf16 = dtype == at::kBFloat16;
    const char* name = bf16 ? "bf16" : "fp32";

    // ---- rms_norm: rows x 1024, the chain of LlamaModel::rms_norm.
    for (std::int64_t rows : {1, 32}) {
      const std::int64_t n = 1024;
      const float eps = 1e-5f;
      at::Tensor x = at::randn({rows, n}).to(dtype), w = (1 + 0.1 * at::randn({n})).to(dtype), y = at::empty_like(x);
      const double fused = per_call([&] {
        at::parallel_for(0, rows, 8, [&](std::int64_t r0, std::int64_t r1) {
          if (bf16)
            align2::rms_norm_bf16(ptr<std::uint16_t>(x) + r0 * n, ptr<std::uint16_t>(w),
                                  ptr<std::uint16_t>(y) + r0 * n, r1 - r0, n, eps);
          else
            align2::rms_norm_f32(ptr<float>(x) + r0 * n, ptr<float>(w), ptr<float>(y) + r0 * n, r1 - r0, n, eps);
        });
      });
      const double aten = per_call([&] {
        at::Tensor h = x.to(at::kFloat);
        at::Tensor var = h.pow(2).mean({-1}, /*keepdim=*/true);
        h = h * at::rsqrt(var + eps);
        at::Tensor out = w * h.to(dtype);
      });
      row(fmt::format("rms_norm {} rows={:2} n={}", name, rows, n), fused, aten);
    }

    // ---- rope: q of rows tokens, 16 heads of 64; ATen: LlamaModel::rope's cos/sin tables, then
    // q * cos + rotate_half(q) * sin (the tables are built once per step, used by 2 x layers).
    for (std::int64_t rows : {1, 32}) {
      const std::int64_t heads = 16, hd = 64, half = hd / 2;
      at::Tensor inv_freq =
          1.0 / at::pow(at::scalar_tensor(10000.0, at::kFloat),
                        at::arange(0, hd, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) / float(hd));
      at::Tensor positions = at::randint(0, 800, {rows}, at::TensorOptions().dtype(at::kLong));
      at::Tensor x = at::randn({rows, heads, hd}).to(dtype);
      const double fused = per_call([&] {
        at::parallel_for(0, rows, 8, [&](std::int64_t r0, std::int64_t r1) {
          if (bf16)
            align2::rope_bf16(ptr<std::uint16_t>(x) + r0 * heads * hd, ptr<std::int64_t>(positions) + r0,
                              ptr<float>(inv_freq), r1 - r0, heads, hd);
          else
            align2::rope_f32(ptr<float>(x) + r0 * heads * hd, ptr<std::int64_t>(positions) + r0, ptr<float>(inv_freq),
                             r1 - r0, heads, hd);
        });
      });
      at::Tensor cos, sin;
      auto tables = [&] {
        at::Tensor freqs = positions.view({rows, 1}).to(at::kFloat).unsqueeze(-1) * inv_freq;  // [B, 1, hd/2]
        at::Tensor emb = at::cat({freqs, freqs}, -1).unsqueeze(1);                             // [B, 1, 1, hd]
        cos = emb.cos().to(dtype);
        sin = emb.sin().to(dtype);
      };
      at::Tensor q = x.view({rows, 1, heads, hd}).transpose(1, 2);  // [B, heads, 1, hd]
      auto apply = [&] {
        at::Tensor rotated = at::cat({-q.narrow(-1, half, half), q.narrow(-1, 0, half)}, -1);
        at::Tensor out = q * cos + rotated * sin;
      };
      tables();
      const double aten_apply = per_call(apply);
      const double aten = per_call([&] {
        tables();
        apply();
      });
      row(fmt::format("rope {} rows={:2} heads={} hd={}", name, rows, heads, hd), fused, aten,
          fmt::format("   (ATen without the tables {:.2f} us: x{:.1f})", aten_apply * 1e6, aten_apply / fused));
    }

    // ---- attention: batch x 16 heads (16 kv heads) of 64 against caches of length L; ATen: the
    // matmul / mask / softmax / matmul of LlamaModel::layer_forward.
    for (std::int64_t batch : {1, 32}) {
      for (std::int64_t L : {32, 512}) {
        const std::int64_t heads = 16, kv_heads = 16, rep = heads / kv_heads, hd = 64, capacity = L,
                           elem = bf16 ? 2 : 4;
        const double kv_bytes = 2.0 * double(batch * kv_heads * L * hd * elem);
        const std::int64_t layers = std::max<std::int64_t>(1, std::int64_t((64 << 20) / kv_bytes));
        std::vector<at::Tensor> ks, vs;
        for (std::int64_t l = 0; l < layers; ++l) {
          ks.push_back(at::randn({batch, kv_heads, capacity, hd}).to(dtype));
          vs.push_back(at::randn({batch, kv_heads, capacity, hd}).to(dtype));
        }
        at::Tensor q = at::randn({batch, heads, hd}).to(dtype), out = at::empty_like(q);
        at::Tensor lengths = at::full({batch}, L, at::TensorOptions().dtype(at::kLong));
        const float scale = 1.0f / std::sqrt(float(hd));
        const double fused = per_call([&] {
          for (std::int64_t l = 0; l < layers; ++l)
            at::parallel_for(0, batch * heads, 1, [&](std::int64_t p0, std::int64_t p1) {
              if (bf16)
                align2::decode_attention_bf16(ptr<std::uint16_t>(q), ptr<std::uint16_t>(ks[l]),
                                              ptr<std::uint16_t>(vs[l]), ptr<std::int64_t>(lengths),
                                              ptr<std::uint16_t>(out), batch, heads, kv_heads, capacity, hd, scale,
                                              p0, p1);
              else
                align2::decode_attention_f32(ptr<float>(q), ptr<float>(ks[l]), ptr<float>(vs[l]),
                                             ptr<std::int64_t>(lengths), ptr<float>(out), batch, heads, kv_heads,
                                             capacity, hd, scale, p0, p1);
            });
        }) / double(layers);
        // The decode mask [B, 1, 1, S]: key j visible when j < length (built once per step).
        const std::int64_t S = L;
        at::Tensor keys = at::arange(S, at::TensorOptions().dtype(at::kLong));
        at::Tensor mask = at::zeros({batch, 1, S}, at::TensorOptions().dtype(dtype))
                              .masked_fill(keys.view({1, 1, S}).ge(lengths.view({batch, 1, 1})),
                                           -std::numeric_limits<float>::infinity())
                              .unsqueeze(1);
        const double aten = per_call([&] {
          for (std::int64_t l = 0; l < layers; ++l) {
            at::Tensor qg = q.view({batch, heads, 1, hd}).reshape({batch, kv_heads, rep, hd});
            at::Tensor k_all = ks[l].narrow(2, 0, S), v_all = vs[l].narrow(2, 0, S);
            at::Tensor scores = at::matmul(qg, k_all.transpose(-1, -2)).view({batch, kv_heads, rep, 1, S}) *
                                (1.0 / std::sqrt(double(hd)));
            scores = scores + mask.unsqueeze(1);
            at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(dtype);
            at::Tensor attn = at::matmul(probs.view({batch, kv_heads, rep, S}), v_all)
                                  .view({batch, heads, 1, hd})
                                  .transpose(1, 2)
                                  .reshape({batch, 1, heads * hd});
          }
        }) / double(layers);
        row(fmt::format("attention {} B={:2} heads={}/{} hd={} L={:3}", name, batch, heads, kv_heads, hd, L), fused,
            aten,
            fmt::format("   K/V read {:5.1f} GB/s ({:3.0f}% of copy bw) | ATen {:5.1f} GB/s", kv_bytes / fused / 1e9,
                        100 * kv_bytes / fused / bw, kv_bytes / aten / 1e9));
      }
    }
  }
  return 0;
}
