#pragma once
// Models, execution contexts and sessions: the objects an embedder works with.
//
//   auto model = weft::Model::load("path/to/hf-dir");
//   weft::Context ctx(2);                 // two threads
//   weft::Session session(model, ctx);    // owns its KV cache and activations
//   auto logits = session.prefill(ids);
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "weft/tokenizer.hpp"

namespace weft {

class Processes;

struct ModelInfo {
  std::string source;        // path it was loaded from
  std::string format;        // "safetensors", "gguf" or "llama2c"
  std::string architecture;  // "mistral" or "llama"
  std::string weight_dtype;  // dtype of the largest weights ("BF16", ...)
  int dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, vocab_size = 0;
  int sliding_window = 0;  // 0: none
  int max_position = 0;
  std::size_t weight_bytes = 0;  // bytes of all weights, as stored in memory
  std::size_t decode_bytes = 0;  // weight bytes one decode step reads (every matrix once, one embedding row)
};

struct LoadOptions {
  std::string tokenizer_path;  // tokenizer.model or tokenizer.bin; empty: the checkpoint's own
  // true: use the weights straight from the memory-mapped file (instant load, shared page cache).
  // false: copy them into anonymous memory on transparent huge pages; loading reads the whole
  // file, but decoding streams weights with fewer TLB misses (llama.cpp's --no-mmap).
  bool mmap = true;
  // true: quantized matrices (Q8_0, Q4_0, Q4_K) are copied at load into the interleaved 16-row
  // layout the CPU's kernels read fastest, when they have one (AVX512-VNNI), like llama.cpp's
  // weight repacking; they then live in anonymous memory even with mmap. false: the file's layout.
  bool repack = true;
};

class Model {
 public:
  // Loads a Hugging Face directory, a GGUF file or a llama2.c .bin, memory-mapped. The model is immutable and
  // may be shared by any number of sessions on any threads. Throws InputError on bad files.
  static std::shared_ptr<const Model> load(const std::string& path, const LoadOptions& options = {});
  ~Model();
  const ModelInfo& info() const noexcept;
  // The model's tokenizer, or nullptr when it has none (then encode ids yourself).
  const Tokenizer* tokenizer() const noexcept;

  struct Impl;
  const Impl& impl() const noexcept { return *impl_; }

 private:
  Model();
  std::unique_ptr<Impl> impl_;
};

// Threads to compute on. Pass one to every Session; sessions sharing a context take turns.
class Context {
 public:
  // threads <= 0: one per hardware thread.
  explicit Context(int threads = 0);
  ~Context();
  int threads() const noexcept;

  // Work-stealing statistics of the parallel loops run on this context: off by default (then
  // free); reset_stats() zeroes them. stats_text() is one readable line, stats_json() a JSON
  // object with per-thread counts (tasks created, run, stolen, chunks, busy ns) and steal_ratio.
  void set_stats(bool on) noexcept;
  void reset_stats() noexcept;
  std::string stats_text() const;
  std::string stats_json() const;

  struct Impl;
  Impl& impl() noexcept { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

struct SessionOptions {
  int context = 0;      // positions the KV cache holds; 0: the model's max_position, at most 4096 (a sliding-window model needs only the window)
  int block_size = 64;  // prefill processes the prompt in blocks of this many tokens
  // Tensor parallelism: > 1 splits every layer over this many in-process ranks, each with the
  // context's threads / tp threads pinned to its cores and its weight shards in its NUMA node's
  // memory (weft plan shows the split). Logits equal the single-rank model's within float
  // rounding. A model loaded from a `weft shard` directory runs with the directory's world size.
  int tp = 1;
  std::string topology{};  // "": place the ranks on this machine; else an hwloc synthetic string or XML file (no pinning)
  // The processes of an MPI job (weft/processes.hpp), on rank 0: with more than one, tp counts the
  // ranks of all processes (a multiple of them; tp / processes in each) and every step runs on all
  // of them, the others following in Processes::serve().
  Processes* processes = nullptr;
};

// One sequence: its KV cache, activations and position. Not thread-safe; use one per thread.
class Session {
 public:
  Session(std::shared_ptr<const Model> model, Context& context, const SessionOptions& options = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Feeds tokens at the current position and returns the logits after the last one (vocab_size
  // floats, valid until the next call). Throws UsageError for an empty block, ids outside the
  // vocabulary, or when the context would overflow.
  std::span<const float> prefill(std::span<const std::int32_t> tokens);
  // prefill() of a single token.
  std::span<const float> decode(std::int32_t token);
  // Feeds tokens and writes the logits after each of them to out ([tokens, vocab_size], row-major).
  void score(std::span<const std::int32_t> tokens, std::span<float> out);
  // Forgets every token (position 0, empty cache).
  void reset() noexcept;
  std::int64_t position() const noexcept;
  // How many positions fit; std::nullopt when unlimited (a rolling sliding-window cache).
  std::optional<std::int64_t> context_limit() const noexcept;
  const Model& model() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct BatchOptions {
  int max_sequences = 8;  // sequences open at once (each has its own KV cache)
  int context = 0;        // positions each sequence's KV cache holds; 0 as in SessionOptions
  int block_size = 64;    // prefill block; a decode step takes up to max(block_size, max_sequences) rows
  // Pipeline parallelism: > 1 cuts the layers into this many contiguous stages, each a rank with
  // its share of the context's threads, and decodes the sequences as micro_batches micro-batches
  // in flight at once (stage k on one while stage k+1 runs the previous). Raises throughput only
  // across memory domains; see docs/parallelism.md.
  int pipeline_stages = 1;
  int micro_batches = 4;
  int tp = 1;            // tensor-parallel ranks, as SessionOptions::tp
  std::string topology{};  // as SessionOptions::topology
  Processes* processes = nullptr;  // as SessionOptions::processes
};

// Several sequences, each with its own KV cache and position, decoded together: one decode step
// for n sequences reads each weight once for all of them (the matrix-vector products become small
// matrix products), so n sequences cost about one pass over the weights. Sequences open and close
// at any time (continuous batching). Not thread-safe; use one per thread.
class BatchSession {
 public:
  BatchSession(std::shared_ptr<const Model> model, Context& context, const BatchOptions& options = {});
  ~BatchSession();
  BatchSession(const BatchSession&) = delete;
  BatchSession& operator=(const BatchSession&) = delete;

  // Starts a sequence at position 0 in a free slot and returns its id (0 <= id < max_sequences()).
  // Throws UsageError when every slot is in use.
  int open();
  // Ends a sequence; a later open() may reuse its slot. Throws UsageError when seq is not open.
  void close(int seq);
  // Feeds tokens to one sequence (alone) and returns the logits after the last one (vocab_size
  // floats, valid until the next call). Errors as Session::prefill, or seq not open.
  std::span<const float> prefill(int seq, std::span<const std::int32_t> tokens);
  // Feeds tokens[i] to sequence seqs[i] for every i, in one pass over the weights, and returns the
  // logits ([seqs.size(), vocab_size], row i for seqs[i]; valid until the next call). Throws
  // UsageError for a sequence not open or given twice, mismatched sizes, a bad id or a full context.
  std::span<const float> decode(std::span<const int> seqs, std::span<const std::int32_t> tokens);
  std::int64_t position(int seq) const;
  // How many positions each sequence holds; std::nullopt when unlimited (rolling sliding-window cache).
  std::optional<std::int64_t> context_limit() const noexcept;
  int max_sequences() const noexcept;
  const Model& model() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft
