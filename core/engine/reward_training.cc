#include "core/engine/reward_training.h"

#include <ATen/core/grad_mode.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/model/image_preprocess.h"
#include "core/model/llava_prompt.h"
#include "core/reward/preference_pairs.h"
#include "core/model/safetensors.h"
#include "core/util/atomic_file.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;

// A stream seed from two values (seed, purpose or step).
std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
  return splitmix64(a * 0x9e3779b97f4a7c15ull ^ (b + 0x632be59bd9b4e019ull));
}

std::vector<float> to_vector(const at::Tensor& t) {
  at::Tensor c = t.detach().to(at::kFloat).contiguous().cpu();
  return {c.data_ptr<float>(), c.data_ptr<float>() + c.numel()};
}

// One trainable tensor with its AdamW state.
struct Param {
  std::string name;  // name in the checkpoint / output file
  at::Tensor* value;
  at::Tensor m, v;   // AdamW moments, float32, same shape
  bool projector = false;
};

class Trainer {
 public:
  Trainer(Comm& comm, const RewardTrainOptions& o)
      : comm_(comm), o_(o), device_(o.device < 0 ? at::Device(at::kCPU) : at::Device(at::kCUDA, at::DeviceIndex(o.device))) {
    ModelSpec spec = load_model_spec(o.base_model, o.vision_tower);
    model_ = std::make_unique<LlavaModel>(spec, o.bf16 ? at::kBFloat16 : at::kFloat, device_);
    if (model_->projector()) model_->projector()->to(at::kFloat);  // float32 master weights
    tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::load(o.base_model + "/tokenizer.model"));
    init_parameters();
    model_->llm().set_lora(&lora_);
    image_ = image_spec_for(spec);
  }
  ~Trainer() { model_->llm().set_lora(nullptr); }

  RewardTrainResult run(const std::function<void(const std::string&)>& log);
  double accuracy(const std::vector<PreferencePair>& pairs, std::int64_t* count);

 private:
  void init_parameters();
  at::Tensor score(const std::string& text, const std::string& image);
  at::Tensor features(const std::string& image);
  std::string fingerprint() const;
  void save_checkpoint(std::int64_t step);
  std::int64_t load_checkpoint();
  void save_outputs(const RewardTrainResult& r);
  std::vector<TensorData> state_tensors(bool with_moments) const;

  Comm& comm_;
  RewardTrainOptions o_;
  at::Device device_;  // where the model, the trained weights and their AdamW moments live
  std::unique_ptr<LlavaModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  ImageSpec image_;
  LoraWeights lora_;
  std::vector<std::string> lora_names_;  // PEFT prefix per linear index
  at::Tensor head_;                      // float32 [hidden]
  std::vector<Param> params_;
  std::map<std::string, at::Tensor> vision_cache_;  // image → frozen vision hidden [P, Hv], this step only
};

void Trainer::init_parameters() {
  LlamaModel& llm = model_->llm();
  const ModelSpec& spec = model_->spec();
  std::vector<std::string> names = llm.linear_names();
  lora_.A.resize(names.size());
  lora_.B.resize(names.size());
  lora_.scale = o_.lora_alpha / double(o_.lora_r);
  lora_.dropout = o_.lora_dropout;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const at::Tensor& w = llm.weight(names[i]);
    const std::int64_t out = w.size(0), in = w.size(1);
    // PEFT's initialisation: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0.
    SplitMix64 rng(mix(o_.seed, 1000 + i));
    std::vector<float> a(static_cast<std::size_t>(o_.lora_r * in));
    double bound = 1.0 / std::sqrt(double(in));
    for (float& x : a) x = float((2 * rng.uniform() - 1) * bound);
    lora_.A[i] = at::from_blob(a.data(), {o_.lora_r, in}, at::kFloat).clone().to(device_).set_requires_grad(true);
    lora_.B[i] = at::zeros({out, o_.lora_r}, at::TensorOptions().dtype(at::kFloat).device(device_)).set_requires_grad(true);
    std::string ckpt = spec.llm_weight(names[i]);
    lora_names_.push_back("base_model.model." + ckpt.substr(0, ckpt.size() - 7));
  }
  // Score head ~ N(0, 0.02) (transformers' initializer_range), Box–Muller on splitmix64.
  SplitMix64 rng(mix(o_.seed, 7));
  std::vector<float> h(static_cast<std::size_t>(spec.llm.hidden_size));
  for (float& x : h) {
    double u1 = std::max(rng.uniform(), 1e-300), u2 = rng.uniform();
    x = float(0.02 * std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2));
  }
  head_ = at::from_blob(h.data(), {std::int64_t(h.size())}, at::kFloat).clone().to(device_).set_requires_grad(true);

  for (std::size_t i = 0; i < names.size(); ++i) {
    params_.push_back({lora_names_[i] + ".lora_A.weight", &lora_.A[i], {}, {}});
    params_.push_back({lora_names_[i] + ".lora_B.weight", &lora_.B[i], {}, {}});
  }
  params_.push_back({"score.weight", &head_, {}, {}});
  if (o_.train_projector && model_->projector())
    for (auto& [name, t] : model_->projector()->parameters(spec)) {
      t->set_requires_grad(true);
      params_.push_back({name, t, {}, {}, true});
    }
  for (Param& p : params_) {
    p.m = at::zeros_like(p.value->detach());
    p.v = at::zeros_like(p.value->detach());
  }
}

at::Tensor Trainer::features(const std::string& image) {
  auto it = vision_cache_.find(image);
  if (it == vision_cache_.end()) {
    at::NoGradGuard no_grad;
    at::Tensor pixels = at::empty({1, 3, image_.size, image_.size}, at::kFloat);
    preprocess_image_file((fs::path(o_.image_root) / image).string(), image_, pixels.data_ptr<float>());
    it = vision_cache_.emplace(image, model_->encode_images(pixels)).first;  // frozen tower
  }
  return model_->project(it->second).squeeze(0);  // the projector may be trained
}

at::Tensor Trainer::score(const std::string& text, const std::string& image) {
  std::vector<std::int64_t> ids = tokenize_with_images(*tokenizer_, text, model_->spec().image_token_index);
  std::vector<at::Tensor> images;
  if (!image.empty()) images.push_back(features(image));
  at::Tensor seq = model_->splice(ids, images);
  if (seq.size(0) > o_.max_length) seq = seq.narrow(0, 0, o_.max_length);
  at::Tensor last = model_->last_hidden({seq}).squeeze(0);
  return at::dot(last.to(at::kFloat), head_);
}

double Trainer::accuracy(const std::vector<PreferencePair>& pairs, std::int64_t* count) {
  at::NoGradGuard no_grad;
  lora_.training = false;
  std::int64_t correct = 0, mine = 0;
  for (std::size_t j = std::size_t(comm_.rank()); j < pairs.size(); j += std::size_t(comm_.size())) {
    const PreferencePair& p = pairs[j];
    vision_cache_.clear();
    double c = score(reward_input(p.chosen_text, !p.image.empty()), p.image).item<double>();
    double r = score(reward_input(p.rejected_text, !p.image.empty()), p.image).item<double>();
    correct += c > r;
    ++mine;
  }
  std::int64_t totals[2] = {correct, mine};
  comm_.allreduce(totals, 2, ReduceOp::sum);
  *count = totals[1];
  return totals[1] ? double(totals[0]) / double(totals[1]) : 0.0;
}

std::string Trainer::fingerprint() const {
  auto absolute = [](const std::string& p) { return p.empty() ? p : fs::absolute(p).lexically_normal().string(); };
  json j = {{"kind", reward_kind_name(o_.kind)}, {"base", absolute(o_.base_model)}, {"vision", absolute(o_.vision_tower)},
            {"data", absolute(o_.data)}, {"r", o_.lora_r},
            {"alpha", o_.lora_alpha}, {"dropout", o_.lora_dropout}, {"lr", o_.lr}, {"projector_lr", o_.projector_lr},
            {"wd", o_.weight_decay}, {"warmup", o_.warmup_ratio}, {"clip", o_.max_grad_norm}, {"epochs", o_.epochs},
            {"batch", o_.batch_size}, {"accum", o_.grad_accum}, {"world", comm_.size()}, {"max_length", o_.max_length},
            {"seed", o_.seed}, {"augment", o_.augment_rate}, {"projector", o_.train_projector}, {"bf16", o_.bf16}};
  return j.dump();
}

std::vector<TensorData> Trainer::state_tensors(bool with_moments) const {
  std::vector<TensorData> t;
  for (const Param& p : params_) {
    t.push_back(float_tensor(p.name, p.value->sizes().vec(), to_vector(*p.value)));
    if (with_moments) {
      t.push_back(float_tensor("adam_m." + p.name, p.m.sizes().vec(), to_vector(p.m)));
      t.push_back(float_tensor("adam_v." + p.name, p.v.sizes().vec(), to_vector(p.v)));
    }
  }
  return t;
}

void Trainer::save_checkpoint(std::int64_t step) {
  if (comm_.rank() != 0) return;
  fs::path dir = fs::path(o_.output_dir) / "checkpoints" / fmt::format("step-{:08d}", step);
  fs::create_directories(dir);
  write_safetensors((dir / "state.safetensors").string(), state_tensors(true));
  // state.json last: a checkpoint without it is incomplete and ignored.
  write_file_atomic((dir / "state.json").string(), json{{"step", step}, {"fingerprint", fingerprint()}}.dump() + "\n");
}

std::int64_t Trainer::load_checkpoint() {
  fs::path root = fs::path(o_.output_dir) / "checkpoints";
  std::int64_t best = -1;
  fs::path best_dir;
  // Rank 0 chooses; every rank then loads that checkpoint (output_dir must be shared).
  std::string error;
  if (comm_.rank() == 0 && fs::is_directory(root)) try {
    for (const auto& e : fs::directory_iterator(root)) {
      fs::path state = e.path() / "state.json";
      if (!fs::exists(state)) continue;
      std::ifstream in(state);
      json j = json::parse(in, nullptr, false);
      if (j.is_discarded() || !j.contains("step")) continue;
      if (j.value("fingerprint", "") != fingerprint())
        throw std::runtime_error(fmt::format("{}: the checkpoint was written with other training options; resume "
                                             "with the same options or use a new --output-dir", state.string()));
      if (j["step"].get<std::int64_t>() > best) {
        best = j["step"].get<std::int64_t>();
        best_dir = e.path();
      }
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  std::vector<std::uint8_t> choice;
  if (comm_.rank() == 0) {
    std::string text = error.empty() ? std::to_string(best) + "\n" + best_dir.string() : "!" + error;
    choice.assign(text.begin(), text.end());
  }
  comm_.broadcast(choice, 0);
  std::string text(choice.begin(), choice.end());
  if (!text.empty() && text[0] == '!') throw std::runtime_error(text.substr(1));
  best = std::stoll(text.substr(0, text.find('\n')));
  best_dir = text.substr(text.find('\n') + 1);
  if (best < 0) return 0;
  Checkpoint ckpt((best_dir / "state.safetensors").string());
  at::NoGradGuard no_grad;
  for (Param& p : params_) {
    std::vector<std::int64_t> shape = p.value->sizes().vec();
    p.value->copy_(load_tensor(ckpt, p.name, shape, at::kFloat));
    p.m.copy_(load_tensor(ckpt, "adam_m." + p.name, shape, at::kFloat));
    p.v.copy_(load_tensor(ckpt, "adam_v." + p.name, shape, at::kFloat));
  }
  return best;
}

void Trainer::save_outputs(const RewardTrainResult& r) {
  if (comm_.rank() != 0) return;
  fs::path out(o_.output_dir);
  fs::create_directories(out);
  std::vector<TensorData> adapter, projector;
  for (const Param& p : params_) {
    TensorData t = float_tensor(p.name, p.value->sizes().vec(), to_vector(*p.value));
    if (p.name == "score.weight") {
      t.shape = {1, t.shape[0]};
      write_safetensors((out / "score_head.safetensors").string(), {t});
    } else if (p.projector) {
      projector.push_back(std::move(t));
    } else {
      adapter.push_back(std::move(t));
    }
  }
  write_safetensors((out / "adapter_model.safetensors").string(), adapter);
  if (!projector.empty()) write_safetensors((out / "projector.safetensors").string(), projector);
  json adapter_config = {{"peft_type", "LORA"}, {"task_type", "SEQ_CLS"}, {"r", o_.lora_r},
                         {"lora_alpha", o_.lora_alpha}, {"lora_dropout", o_.lora_dropout}, {"bias", "none"},
                         {"fan_in_fan_out", false}, {"use_rslora", false}, {"inference_mode", true},
                         {"target_modules", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}},
                         {"base_model_name_or_path", fs::absolute(o_.base_model).lexically_normal().string()}};
  write_file_atomic((out / "adapter_config.json").string(), adapter_config.dump(2) + "\n");
  // Folders relative to the reward model's own: a models folder moved or copied as a whole keeps working.
  auto from_out = [&](const std::string& dir) {
    return fs::absolute(dir).lexically_normal().lexically_relative(fs::absolute(out).lexically_normal()).string();
  };
  json reward = {{"format", "align2-reward-model"}, {"version", 1}, {"kind", reward_kind_name(o_.kind)},
                 {"base_model", from_out(o_.base_model)}, {"max_length", o_.max_length}};
  if (!o_.vision_tower.empty()) reward["vision_tower"] = from_out(o_.vision_tower);
  write_file_atomic((out / "reward_config.json").string(), reward.dump(2) + "\n");
  if (!o_.eval.empty())
    write_file_atomic((out / "eval.json").string(),
                      json{{"pairs", r.eval_pairs}, {"pairwise_accuracy", r.eval_accuracy}, {"steps", r.steps}}.dump(2) + "\n");
}

RewardTrainResult Trainer::run(const std::function<void(const std::string&)>& log) {
  PairOptions po;
  po.kind = o_.kind;
  po.augment_rate = o_.augment_rate;
  po.seed = o_.seed;
  std::vector<PreferencePair> pairs = build_preference_pairs(o_.data, po).pairs;
  if (pairs.empty()) throw std::runtime_error(fmt::format("{}: no preference pairs (all candidates tied?)", o_.data));
  const std::int64_t N = std::int64_t(pairs.size()), world = comm_.size();
  const std::int64_t G = o_.batch_size * world * o_.grad_accum;  // pairs per optimizer step
  const std::int64_t per_epoch = (N + G - 1) / G;
  // The schedule spans every epoch; max_steps only stops early (an interrupted run).
  const std::int64_t total = o_.epochs * per_epoch;
  const std::int64_t stop = o_.max_steps > 0 ? std::min(total, o_.max_steps) : total;
  const std::int64_t warmup = std::int64_t(std::ceil(o_.warmup_ratio * double(total)));

  RewardTrainResult result;
  std::int64_t start = o_.resume ? load_checkpoint() : 0;
  std::ofstream train_log;
  if (comm_.rank() == 0) {
    fs::create_directories(o_.output_dir);
    // On resume keep only the lines of steps up to the checkpoint (later ones are redone).
    fs::path log_path = fs::path(o_.output_dir) / "train_log.jsonl";
    std::string kept;
    if (start > 0) {
      std::ifstream in(log_path);
      std::string line;
      while (std::getline(in, line)) {
        json j = json::parse(line, nullptr, false);
        if (!j.is_discarded() && j.value("step", std::int64_t(0)) <= start) kept += line + "\n";
      }
    }
    train_log.open(log_path.string(), std::ios::trunc);
    train_log << kept;
    if (!train_log) throw std::runtime_error(fmt::format("{}: cannot write the training log", log_path.string()));
  }
  std::vector<std::int64_t> order;
  std::int64_t order_epoch = -1;
  for (std::int64_t step = start; step < stop; ++step) {
    std::int64_t epoch = step / per_epoch;
    if (epoch != order_epoch) {  // the epoch's pair order: Fisher–Yates on splitmix64(seed, epoch)
      order.resize(std::size_t(N));
      for (std::int64_t i = 0; i < N; ++i) order[std::size_t(i)] = i;
      SplitMix64 rng(mix(o_.seed, std::uint64_t(epoch) + 1));
      for (std::int64_t i = N - 1; i > 0; --i) std::swap(order[std::size_t(i)], order[rng.below(std::uint64_t(i) + 1)]);
      order_epoch = epoch;
    }
    const std::int64_t begin = (step % per_epoch) * G, end = std::min(N, begin + G), count = end - begin;
    for (Param& p : params_)
      if (p.value->grad().defined()) p.value->mutable_grad().zero_();
    lora_.training = true;
    double loss_sum = 0;
    vision_cache_.clear();
    for (std::int64_t j = begin + comm_.rank(); j < end; j += world) {
      const PreferencePair& p = pairs[std::size_t(order[std::size_t(j)])];
      bool img = !p.image.empty();
      lora_.dropout_seed = mix(mix(o_.seed, std::uint64_t(step)), std::uint64_t(j) * 2);
      at::Tensor sc = score(reward_input(p.chosen_text, img), p.image);
      lora_.dropout_seed = mix(mix(o_.seed, std::uint64_t(step)), std::uint64_t(j) * 2 + 1);
      at::Tensor sr = score(reward_input(p.rejected_text, img), p.image);
      at::Tensor loss = at::softplus(sr - sc) / double(count);  // -log σ(s_c - s_r)
      loss.backward();
      loss_sum += loss.item<double>() * double(count);
    }
    // Sum gradients and losses over ranks in one float32 buffer of host memory (the loss last),
    // through the job's data communicator: MPI on CPU ranks, NCCL on GPU ranks (DataComm).
    std::vector<std::int64_t> sizes;
    std::size_t total_size = 1;
    for (const Param& p : params_) total_size += std::size_t(p.value->numel());
    std::vector<float> flat;
    flat.reserve(total_size);
    for (Param& p : params_) {
      sizes.push_back(p.value->numel());
      if (p.value->grad().defined()) {
        at::Tensor g = p.value->grad().to(at::kFloat).contiguous().cpu();
        flat.insert(flat.end(), g.data_ptr<float>(), g.data_ptr<float>() + g.numel());
      } else {
        flat.insert(flat.end(), std::size_t(p.value->numel()), 0.0f);
      }
    }
    flat.push_back(float(loss_sum));
    if (world > 1) comm_.allreduce(flat.data(), flat.size(), ReduceOp::sum);
    double norm2 = 0;
    for (std::size_t i = 0; i + 1 < flat.size(); ++i) norm2 += double(flat[i]) * flat[i];
    double norm = std::sqrt(norm2), clip = o_.max_grad_norm > 0 ? std::min(1.0, o_.max_grad_norm / (norm + 1e-6)) : 1.0;
    // Learning rate: linear warm-up, then cosine to zero.
    double factor = step < warmup ? double(step) / double(std::max<std::int64_t>(1, warmup))
                                   : 0.5 * (1.0 + std::cos(M_PI * double(step - warmup) /
                                                           double(std::max<std::int64_t>(1, total - warmup))));
    {
      at::NoGradGuard no_grad;
      std::size_t offset = 0, k = 0;
      const double t = double(step + 1), bc1 = 1 - std::pow(kBeta1, t), bc2 = 1 - std::pow(kBeta2, t);
      for (Param& p : params_) {
        at::Tensor grad = at::from_blob(flat.data() + offset, p.value->sizes(), at::kFloat).to(device_) * clip;
        offset += std::size_t(sizes[k++]);
        double lr = (p.projector ? o_.projector_lr : o_.lr) * factor;
        at::Tensor& w = *p.value;
        // Decoupled weight decay, not on biases (as transformers' Trainer groups parameters).
        bool bias = p.name.size() >= 5 && p.name.compare(p.name.size() - 5, 5, ".bias") == 0;
        if (!bias) w.mul_(1 - lr * o_.weight_decay);
        p.m.mul_(kBeta1).add_(grad, 1 - kBeta1);
        p.v.mul_(kBeta2).addcmul_(grad, grad, 1 - kBeta2);
        at::Tensor denom = (p.v.sqrt() / std::sqrt(bc2)).add_(kEps);
        w.addcdiv_(p.m, denom, -lr / bc1);
      }
    }
    result.steps = step + 1;
    result.last_loss = flat.back() / double(count);
    if (comm_.rank() == 0) {
      std::string line = json{{"step", step + 1}, {"loss", result.last_loss}, {"lr_factor", factor},
                              {"grad_norm", norm}, {"pairs", count}}.dump();
      train_log << line << "\n" << std::flush;
      if (log) log(line);
    }
    if (o_.save_every > 0 && (step + 1) % o_.save_every == 0) save_checkpoint(step + 1);
  }
  if (result.steps == 0) result.steps = start;
  if (!o_.eval.empty()) {
    std::vector<PreferencePair> eval = build_preference_pairs(o_.eval, PairOptions{po.kind, 0.0, 0}).pairs;
    result.eval_accuracy = accuracy(eval, &result.eval_pairs);
  }
  save_outputs(result);
  comm_.barrier();
  return result;
}

}  // namespace

RewardTrainResult train_reward_model(Comm& comm, const RewardTrainOptions& options,
                                     const std::function<void(const std::string&)>& log) {
  if (options.lora_r < 1 || options.batch_size < 1 || options.grad_accum < 1 || options.epochs < 1 ||
      options.pairs_per_step < 0)
    throw std::invalid_argument("lora r, batch size, accumulation steps and epochs must be at least 1");
  RewardTrainOptions resolved = options;
  if (options.pairs_per_step > 0) {  // every rank reaches the same verdict
    const std::int64_t per_pass = options.batch_size * comm.size();
    if (options.pairs_per_step % per_pass != 0)
      throw std::runtime_error(fmt::format("{} pairs per step is not a multiple of the batch size {} x {} rank(s) = {}",
                                           options.pairs_per_step, options.batch_size, comm.size(), per_pass));
    resolved.grad_accum = options.pairs_per_step / per_pass;
  }
  Trainer trainer(comm, resolved);
  return trainer.run(log);
}

double evaluate_reward_model(const std::string& model_dir, const std::string& pairs_file, const std::string& image_root,
                             std::int64_t* pairs_evaluated) {
  RewardModel rm(model_dir, at::kFloat, at::Device(at::kCPU));
  PairOptions po;
  po.kind = rm.config().kind;
  std::vector<PreferencePair> pairs = build_preference_pairs(pairs_file, po).pairs;
  ImageSpec image = image_spec_for(rm.llava().spec());
  std::int64_t correct = 0;
  for (const PreferencePair& p : pairs) {
    at::Tensor f;
    if (!p.image.empty()) {
      at::Tensor pixels = at::empty({3, image.size, image.size}, at::kFloat);
      preprocess_image_file((fs::path(image_root) / p.image).string(), image, pixels.data_ptr<float>());
      f = rm.image_features(pixels);
    }
    bool img = !p.image.empty();
    correct += rm.score(reward_input(p.chosen_text, img), f).score > rm.score(reward_input(p.rejected_text, img), f).score;
  }
  *pairs_evaluated = std::int64_t(pairs.size());
  return pairs.empty() ? 0.0 : double(correct) / double(pairs.size());
}

}  // namespace align2
