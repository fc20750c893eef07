// align2 train-reward: a reward model from human preference pairs, on one process or
// under mpirun / srun (data parallel: gradients summed over ranks).
#include <fmt/format.h>

#include <cstdlib>
#include <iostream>
#include <memory>

#include "core/engine/reward_training.h"
#include "distributed/launch.h"
#include "distributed/nccl_comm.h"
#include "jobs/cli.h"
#include "jobs/engine_args.h"

namespace align2::cli {


int run_train_reward(const Args& args) {
  RewardTrainOptions o;
  try {
    o.kind = reward_kind_from_name(args.get("kind"));
  } catch (const std::invalid_argument& e) {
    throw UsageError(fmt::format("--kind: {}", e.what()));
  }
  o.base_model = args.get("base");
  o.vision_tower = args.get("vision-tower");
  o.data = args.get("data");
  o.eval = args.get("eval");
  o.image_root = args.get("image-root");
  o.output_dir = args.get("output-dir");
  if (o.base_model.empty() || o.data.empty() || o.output_dir.empty())
    throw UsageError("--base, --data and --output-dir are required");
  const RewardTrainOptions d;  // the authors' recipe
  o.lora_r = int_option(args, "lora-r", d.lora_r, 1, 4096);
  o.lora_alpha = real_option(args, "lora-alpha", d.lora_alpha, 0, 1e6);
  o.lora_dropout = real_option(args, "lora-dropout", d.lora_dropout, 0, 0.99);
  o.lr = real_option(args, "lr", d.lr, 0, 10);
  o.projector_lr = real_option(args, "projector-lr", o.lr, 0, 10);
  o.weight_decay = real_option(args, "weight-decay", d.weight_decay, 0, 10);
  o.warmup_ratio = real_option(args, "warmup-ratio", d.warmup_ratio, 0, 1);
  o.max_grad_norm = real_option(args, "max-grad-norm", d.max_grad_norm, 0, 1e9);
  o.epochs = int_option(args, "epochs", d.epochs, 1, 1000);
  o.batch_size = int_option(args, "batch-size", d.batch_size, 1, 1 << 20);
  if (args.flag("grad-accum") && args.flag("pairs-per-step"))
    throw UsageError("--grad-accum and --pairs-per-step exclude each other (pairs per step = batch size x ranks x "
                     "accumulation steps)");
  o.grad_accum = int_option(args, "grad-accum", d.grad_accum, 1, 1 << 20);
  o.pairs_per_step = args.flag("grad-accum") ? 0 : int_option(args, "pairs-per-step", d.pairs_per_step, 1, 1 << 30);
  o.save_every = int_option(args, "save-every", d.save_every, 0, 1ll << 40);
  o.max_steps = int_option(args, "max-steps", d.max_steps, 0, 1ll << 40);
  o.max_length = int_option(args, "max-length", d.max_length, 2, 1 << 20);
  o.seed = std::uint64_t(int_option(args, "seed", std::int64_t(d.seed), 0, INT64_MAX));
  o.augment_rate = real_option(args, "augment-rate", d.augment_rate, 0, 1);
  o.train_projector = !args.flag("freeze-projector");
  o.resume = args.flag("resume");
  parse_threads(args);

  World world = open_world();  // under mpirun / srun the ranks work together; alone, one process
  std::unique_ptr<Comm>& comm = world.comm;
  try {
    const EngineChoice engine = parse_engine(args);
    if (engine.dtype == at::kHalf) throw UsageError("--dtype f16: train-reward runs the frozen model in f32 or bf16");
    o.bf16 = engine.dtype == at::kBFloat16;
    o.device = engine.device.is_cuda() ? int(engine.device.index()) : -1;
    DataComm data(*comm, o.device);  // the gradient all-reduce: NCCL between GPU ranks, else MPI
    RewardTrainResult r = train_reward_model(data.comm(), o, [](const std::string& line) { std::cout << line << "\n"; });
    if (comm->rank() == 0) {
      std::cout << fmt::format("{}: {} reward model, {} steps, last loss {:.4f}", o.output_dir, reward_kind_name(o.kind),
                               r.steps, r.last_loss);
      if (!o.eval.empty()) std::cout << fmt::format(", pairwise accuracy {:.4f} on {} pairs", r.eval_accuracy, r.eval_pairs);
      std::cout << "\n";
    }
  } catch (const std::exception& e) {
    if (comm->size() > 1) abort_job(comm.get(), "train-reward", e.what());
    throw;
  }
  return 0;
}

}  // namespace align2::cli
