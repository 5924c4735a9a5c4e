#pragma once
// TensorParallelMistral: the Mistral forward pass split over in-process ranks (Megatron style).
// Every rank runs the same forward_runs() as the single-rank model, on a local config (its
// query/KV heads, its slice of the MLP width, its rows of lm_head) and local weights:
//   q, k, v, gate, up, lm_head  column-parallel (the rank's rows),
//   o, down                     row-parallel (the rank's columns; partial sums all-reduced),
//   embedding, norms            replicated (views of the shared model, or of the rank's shard file).
// Two all-reduces per layer (after o-proj and after down), then the ranks' logit slices are
// gathered into full rows. When there are more ranks than KV heads, each KV head is copied to
// the tp / n_kv_heads ranks whose query heads use it.
//
// The caller's thread drives rank 0 and broadcasts each step (RankGroup::run); the other ranks
// have driver threads that sleep between steps. Weight shards are copied by each rank's own
// threads into memory on its NUMA node.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.hpp"
#include "io/weight_names.hpp"
#include "model/config.hpp"
#include "model/forward.hpp"
#include "model/weights.hpp"
#include "parallel/communicator.hpp"
#include "parallel/rank_group.hpp"
#include "parallel/tensor_parallel.hpp"

namespace weft::model {

// How a model's weights split over `tp` ranks: which rows or columns of each matrix a rank
// holds. The one source of these rules for TensorParallelMistral, `weft plan` and `weft shard`.
struct TensorParallelLayout {
  int tp = 1;
  int q_heads = 0;                   // query heads per rank
  int kv_heads = 0;                  // KV heads per rank (1 when KV heads are replicated)
  int kv_copies = 1;                 // ranks holding each KV head (tp / n_kv_heads when > 1)
  std::int64_t hidden_granule = 16;  // the MLP width is split in units of this many columns
  std::int64_t vocab_granule = 16;   // lm_head rows are split in units of this many rows
  MistralConfig full;                // the whole model's config

  // The split of config c over tp ranks. down_dtype is the dtype of the down projections (a
  // quantized one makes the MLP split fall on its block boundaries). Throws UsageError naming
  // the dimension that cannot be split ("num_key_value_heads (8) is not divisible by
  // tensor-parallel size 3").
  static TensorParallelLayout make(const MistralConfig& c, int tp, DType down_dtype = DType::F32);

  // How rank r cuts a tensor of `role`: the strategy, and the (world, rank) pair and granule
  // that par::make_shard takes (KV heads shared by several ranks use world = n_kv_heads).
  struct Cut {
    par::TensorParallelStrategy strategy = par::TensorParallelStrategy::None;
    par::TensorParallelConfig cfg;
    std::int64_t granule = 1;
  };
  Cut cut(io::WeightRole role, int rank) const;

  // Rank r's part of a (rows, cols) tensor of `role` and `dtype`: its first row (column-parallel)
  // or column (row-parallel) and its local shape. A replicated tensor gives offset 0 and the
  // full shape.
  struct Part {
    std::int64_t offset = 0;
    std::int64_t rows = 0, cols = 0;
  };
  Part part(io::WeightRole role, int rank, std::int64_t rows, std::int64_t cols, DType dtype) const;

  // Rank r's config: its head counts, MLP width and vocabulary slice (dim and the rest unchanged).
  MistralConfig local_config(int rank) const;
  // Rank r's first vocabulary row.
  std::int64_t vocab_offset(int rank) const;
};

// What `weft shard` wrote: the manifest of a shard directory.
struct ShardManifest {
  std::string dir;                 // the directory
  int world_size = 1;
  MistralConfig config;            // the whole model's (from DIR/config.json)
  std::vector<std::string> files;  // rank r's safetensors file, relative to dir
  std::string format;              // the format of the model that was sharded
  std::string tokenizer;           // tokenizer file in dir ("" when none)
  std::string weight_dtype;        // dtype of the largest weights ("BF16", ...)
  std::uint64_t weight_bytes = 0;  // bytes of the whole model's weights
};

// True when `path` is a directory with a manifest.json written by `weft shard`.
bool is_shard_dir(const std::string& path);
// Reads DIR/manifest.json and DIR/config.json. Throws InputError naming the file and key.
ShardManifest read_shard_manifest(const std::string& dir);
// The model a shard directory describes, without weights (the ranks read those): its config,
// source and tokenizer (tokenizer_path, else the directory's own). Throws InputError.
LoadedModel load_shard_info(const ShardManifest& manifest, const std::string& tokenizer_path);

struct TensorParallelOptions {
  int tp = 1;            // ranks, over all processes
  int threads = 0;       // threads of this process (<= 0: the machine's); each of its ranks gets threads / its ranks, at least 1
  std::string topology{};  // "": this machine; else an hwloc synthetic string or XML file (placement only, no pinning)
  // The processes of an MPI job (rank = this process, world size = processes), or null for one
  // process. With P processes, each holds tp / P consecutive ranks (process p: ranks p*tp/P ..),
  // the collectives go inside the process and then across (HierarchicalCommunicator), and every
  // process must construct the model and call forward() with the same arguments in the same
  // order. Only this process's thread that constructed the model may call into `processes`.
  par::Communicator* processes = nullptr;
};

class TensorParallelMistral {
 public:
  // Splits `model` over options.tp ranks. The model must outlive this object (replicated
  // tensors are views into it). Throws UsageError when the model cannot be split that way or
  // the ranks do not fit the topology.
  TensorParallelMistral(const LoadedModel& model, const TensorParallelOptions& options);
  // Loads a shard directory: rank r maps and copies only manifest.files[r]. options.tp must be
  // manifest.world_size (or 0/1 for "the manifest's"). Throws InputError naming a missing or
  // mismatched file or tensor.
  TensorParallelMistral(const ShardManifest& manifest, const TensorParallelOptions& options);
  ~TensorParallelMistral();
  TensorParallelMistral(const TensorParallelMistral&) = delete;
  TensorParallelMistral& operator=(const TensorParallelMistral&) = delete;

  // Ranks over all processes, and those of this process: global ranks first_rank() ..
  // first_rank() + local_ranks() - 1. The per-rank accessors below take a local rank.
  int world_size() const noexcept { return layout_.tp; }
  int local_ranks() const noexcept { return static_cast<int>(ranks_.size()); }
  int first_rank() const noexcept { return first_rank_; }
  const MistralConfig& config() const noexcept { return layout_.full; }
  const TensorParallelLayout& layout() const noexcept { return layout_; }
  const MistralConfig& local_config(int r) const noexcept { return ranks_[static_cast<std::size_t>(r)]->config; }
  const MistralWeights& local_weights(int r) const noexcept { return ranks_[static_cast<std::size_t>(r)]->weights; }
  // Bytes of the weights rank r owns (its copied shards; replicated views not counted).
  std::size_t shard_bytes(int r) const noexcept { return ranks_[static_cast<std::size_t>(r)]->shard_bytes; }
  // The shard files rank r opened (empty unless loaded from a shard directory).
  const std::vector<std::string>& files_read(int r) const noexcept { return ranks_[static_cast<std::size_t>(r)]->files; }
  // Threads of each rank.
  int threads_per_rank() const noexcept;
  // The rank group (placement, pinning state).
  par::RankGroup& group() noexcept { return *group_; }

  // The sequences one session (or batch) keeps: per rank, a KV cache per sequence and the
  // activations for blocks of up to max_block rows.
  struct State {
    struct PerRank {
      std::vector<KVCache> caches;    // one per sequence, of the rank's KV heads
      ForwardState fwd;               // activations; fwd.logits holds the rank's vocabulary slice
      std::vector<SequenceRun> runs;  // reserved once: a step allocates nothing
      AlignedBuffer<float> gather;    // [max_block][vocab]: the gathered logits
    };
    std::vector<PerRank> ranks;
    int max_block = 0;
    int capacity = 0;      // positions each cache holds
    bool rolling = false;  // a sliding-window rolling buffer
  };
  // State for `sequences` sequences of `context` positions, blocks of up to max_block rows.
  // Each rank allocates (and first touches) its part on its own threads.
  std::unique_ptr<State> make_state(int sequences, int context, int max_block);

  // A run of consecutive tokens of one sequence inside a block (SequenceRun with a sequence
  // index instead of a cache).
  struct Run {
    int seq = 0;
    int first_row = 0;
    int n_rows = 0;
    std::int64_t pos0 = 0;
  };

  // forward_runs() over the ranks: tokens[0..n) as `runs` (covering rows 0..n-1 in order), keys
  // and values appended to each run's sequence caches. Writes full logits rows to `logits`
  // ([rows][vocab]: every row when all_logits, else one per run). Call from one thread at a time
  // (the one that drives the group); positions and ids are checked by the caller. With several
  // processes every process calls it with the same arguments; each gets the full logits.
  void forward(State& state, std::span<const Run> runs, const std::int32_t* tokens, int n, bool all_logits,
               float* logits);

  // Steps run so far.
  std::uint64_t steps() const noexcept { return steps_; }

 private:
  struct RankData {
    MistralConfig config;
    MistralWeights weights;
    std::vector<par::WeightShard> shards;
    std::unique_ptr<io::SafetensorsFile> file;  // from a shard directory: the rank's own file
    std::vector<std::string> files;
    std::size_t shard_bytes = 0;
    int global_rank = 0;
    par::Communicator* comm = nullptr;
    std::uint64_t reduce_bytes = 0, reduce_calls = 0;  // since the last step (WEFT_DEBUG=tp)
  };
  void start(const TensorParallelOptions& options);
  void log_shards() const;
  static void all_reduce_hook(void* ctx, float* data, std::size_t n) noexcept;

  TensorParallelLayout layout_;
  std::unique_ptr<par::RankGroup> group_;
  std::unique_ptr<par::SharedMemoryWorld> world_;
  std::vector<std::unique_ptr<par::Communicator>> process_comms_;  // two-level communicators (several processes)
  std::vector<std::unique_ptr<RankData>> ranks_;                   // this process's ranks
  int first_rank_ = 0;                                             // global rank of ranks_[0]
  std::vector<std::size_t> counts_;      // logits floats per global rank in the current step
  std::vector<std::size_t> rank_vocab_;  // vocabulary rows of each global rank
  std::uint64_t steps_ = 0;
  bool debug_ = false;
};

// Whether WEFT_DEBUG (a comma-separated list) names `topic`.
bool debug_enabled(const char* topic) noexcept;

}  // namespace weft::model
