// `weft shard`: one safetensors file per tensor-parallel rank plus a manifest, so that each rank
// (or host) reads only its own part.
#include <cstdio>
#include <memory>
#include <string>

#include "commands.hpp"
#include "weft/weft.hpp"

namespace weft::cli {

Runner add_shard(CLI::App& app) {
  struct Args {
    std::string model, tokenizer, out;
    int world_size = 1;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("shard", "Write per-rank tensor-parallel shards (safetensors) and a manifest");
  sub->add_option("-m,--model", a->model, "Hugging Face directory, GGUF file (F32/F16/BF16) or llama2.c .bin")->required();
  sub->add_option("-z,--tokenizer", a->tokenizer, "tokenizer to copy beside the shards (default: the model's tokenizer.model)");
  sub->add_option("-w,--world-size", a->world_size, "tensor-parallel ranks")->check(CLI::Range(1, 65536))->required();
  sub->add_option("-o,--output", a->out, "output directory (created when missing)")->required();
  return [a] {
    const ShardResult r = shard_model(a->model, {.world_size = a->world_size, .output_dir = a->out, .tokenizer_path = a->tokenizer});
    for (std::size_t i = 0; i < r.files.size(); ++i)
      std::printf("rank %zu: %s (%llu bytes)\n", i, r.files[i].c_str(), static_cast<unsigned long long>(r.file_bytes[i]));
    if (!r.tokenizer.empty()) std::printf("tokenizer: %s\n", r.tokenizer.c_str());
    std::printf("manifest: %s\n", r.manifest.c_str());
    return 0;
  };
}

}  // namespace weft::cli
