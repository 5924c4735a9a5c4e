// `weft plan`: the tensor-parallel split of a checkpoint, tensor by tensor, with per-rank memory,
// communication per token and a world size for a memory budget.
#include <cstdio>
#include <memory>
#include <string>

#include "commands.hpp"
#include "weft/weft.hpp"

namespace weft::cli {

Runner add_plan(CLI::App& app) {
  struct Args {
    std::string model, config, dtype = "BF16";
    int world_size = 1;
    std::uint64_t memory_per_rank = 0;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("plan", "Plan tensor parallelism: per-tensor strategy, per-rank memory, communication per token");
  auto* model = sub->add_option("-m,--model", a->model, "Hugging Face directory, GGUF file or llama2.c .bin (only headers are read)");
  auto* config = sub->add_option("--config", a->config, "plan from a Hugging Face config.json alone (no weights needed)")
                     ->check(CLI::ExistingFile);
  model->excludes(config);
  sub->add_option("--dtype", a->dtype, "with --config: the weights' dtype")
      ->check(CLI::IsMember({"BF16", "F16", "F32"}))->capture_default_str();
  sub->add_option("-w,--world-size", a->world_size, "tensor-parallel ranks")->check(CLI::Range(1, 65536))->required();
  sub->add_option("--memory-per-rank", a->memory_per_rank,
                  "memory budget per rank in bytes, for the suggested world size (default: this machine's smallest NUMA node)")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 60));
  sub->add_flag("--json", a->json, "print one JSON object");
  return [a] {
    if (a->model.empty() && a->config.empty()) throw UsageError("plan: give a model with -m/--model or a config.json with --config");
    const PlanOptions o{.world_size = a->world_size, .memory_per_rank = a->memory_per_rank};
    const TensorParallelPlan p = a->config.empty() ? plan_tensor_parallel(a->model, o)
                                                   : plan_tensor_parallel_from_config(a->config, o, a->dtype);
    const std::string out = a->json ? p.json() + "\n" : p.text();
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  };
}

}  // namespace weft::cli
