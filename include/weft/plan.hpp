#pragma once
// Tensor-parallel planning and sharding: what `weft plan` and `weft shard` do.
//
// A plan lists every weight of a checkpoint with its role and its tensor-parallel strategy
// (Megatron naming: column-parallel splits the output features, row-parallel the input
// features, "none" is replicated on every rank), the bytes each rank would hold, the
// communication per token, and a world size that fits a memory budget. The split rules are the
// ones the tensor-parallel model runs with, so the plan's per-rank bytes are what the ranks hold.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace weft {

struct TensorPlan {
  std::string name;                 // checkpoint (Hugging Face) name, "model.layers.0.self_attn.q_proj.weight"
  std::string role;                 // "attn.q", "mlp.down", "embedding", ...
  std::string strategy;             // "none", "column" or "row"
  std::string dtype;                // "BF16", "Q8_0", ...
  std::vector<std::int64_t> shape;  // full shape, outermost first
  std::uint64_t bytes = 0;          // bytes of the full tensor
  std::uint64_t parameters = 0;
  std::vector<std::uint64_t> rank_bytes;  // bytes rank r holds (all of it when replicated)
  bool tied = false;                // lm_head tied to the embedding: each rank copies its rows of the embedding
};

struct TensorParallelPlan {
  std::string source, format;
  int world_size = 1;
  int dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, vocab_size = 0;
  int q_heads_per_rank = 0, kv_heads_per_rank = 0;
  int kv_copies = 1;  // ranks holding each KV head (> 1: KV heads replicated)

  std::vector<TensorPlan> tensors;
  std::uint64_t total_bytes = 0;       // all rows (a tied lm_head counted as the copy the ranks make)
  std::uint64_t parallel_bytes = 0;    // column- and row-parallel tensors
  std::uint64_t replicated_bytes = 0;  // strategy none
  std::uint64_t total_parameters = 0;
  double parallel_percent = 0;         // parallel_bytes / total_bytes, in percent
  // Extra bytes when there are more ranks than KV heads: each k/v projection row is held by
  // kv_copies ranks, so (kv_copies - 1) x the k/v bytes.
  std::uint64_t kv_copy_bytes = 0;
  // Weight bytes per rank; they add up to what all ranks hold:
  // total_bytes + replicated_bytes * (world_size - 1) + kv_copy_bytes.
  std::vector<std::uint64_t> rank_bytes;
  std::uint64_t rank_buffer_bytes = 0;  // per rank: activations of one token and the logits gather buffer
  std::uint64_t kv_bytes_per_1k_positions = 0;  // per rank and sequence

  // Communication per decoded token: 2 all-reduces of dim floats per layer, then the gather of
  // the logits (vocab floats); payload sizes, and what one rank sends with reduce-scatter +
  // all-gather all-reduces.
  std::uint64_t allreduce_bytes_per_token = 0;
  std::uint64_t gather_bytes_per_token = 0;
  std::uint64_t comm_bytes_per_token = 0;
  std::uint64_t rank_sent_bytes_per_token = 0;

  std::uint64_t memory_per_rank = 0;  // the budget used for suggested_world_size
  std::string memory_source;          // where the budget came from
  int suggested_world_size = 0;       // the smallest valid world size that fits the budget; 0: none does
  std::vector<int> valid_world_sizes;  // world sizes up to 64 the model splits into
  std::vector<std::pair<std::string, std::string>> recommendations;

  // A readable report: header, one table row per tensor, totals, per-rank memory, recommendations.
  std::string text() const;
  // The same as one JSON object.
  std::string json() const;
};

struct PlanOptions {
  int world_size = 1;
  std::uint64_t memory_per_rank = 0;  // 0: the memory of this machine's smallest NUMA node
};

// Plans tensor parallelism for the model at `path` (a Hugging Face directory, a GGUF file or a
// llama2.c .bin; only headers are read, weights are mapped, not loaded). Throws UsageError when
// the model does not split over world_size ranks, naming the dimension; InputError for a bad model.
TensorParallelPlan plan_tensor_parallel(const std::string& path, const PlanOptions& options);

// The same from a Hugging Face config.json alone, every tensor of dtype `dtype` ("BF16", "F16",
// "F32"): for shapes one does not have the weights of.
TensorParallelPlan plan_tensor_parallel_from_config(const std::string& config_json, const PlanOptions& options,
                                                    const std::string& dtype = "BF16");

struct ShardOptions {
  int world_size = 1;
  std::string output_dir;      // created when missing
  std::string tokenizer_path;  // tokenizer to copy beside the shards; "": the model's tokenizer.model, if any
};

struct ShardResult {
  std::string manifest;                // path of manifest.json
  std::vector<std::string> files;      // rank r's safetensors file
  std::vector<std::uint64_t> file_bytes;
  std::string tokenizer;               // copied tokenizer file ("" when none)
};

// Writes one safetensors file per rank into options.output_dir, each holding that rank's shards
// (rows or columns already cut) and the replicated tensors, plus config.json, manifest.json
// (world size, files, each tensor's strategy and per-rank offsets and shapes) and the tokenizer.
// Model::load(output_dir) gives a model whose sessions run tensor-parallel with each rank reading
// only its own file. Throws UsageError when the model does not split over world_size ranks or
// holds quantized tensors (safetensors stores F32, F16 and BF16), InputError on I/O failure.
ShardResult shard_model(const std::string& path, const ShardOptions& options);

}  // namespace weft
