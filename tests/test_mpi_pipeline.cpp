// ProcessPipelineMistral under mpirun (tests/meson.build runs this with -np 2 and -np 3): every
// process is one pipeline stage; the logits that reach process 0 must equal, bit for bit, those of
// the whole model run in one process with the same thread count (1), for prompts longer than a
// block and for decode steps of several sequences at different positions with 1, 2 and 4
// micro-batches, on the real models in ../shared. Every process runs the same test cases in the
// same order (the pipeline's calls are collective); each checks its own results, and main() fails
// the run if any process failed. Only process 0 prints doctest's summary.
#define DOCTEST_CONFIG_IMPLEMENT
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "model/forward.hpp"
#include "model/process_pipeline.hpp"
#include "model/weights.hpp"
#include "parallel/exec_context.hpp"
#include "alloc_counter.hpp"
#include "parallel/mpi_communicator.hpp"
#include "mpi_doctest_main.hpp"
#include "testing.hpp"

// Every malloc-family call in the process is counted while `counting` is set (Open MPI's
// allocations included). The MPI tests do not run in sanitizer builds.
using weft::testing::allocations;
using weft::testing::counting;

using namespace weft;
using model::ProcessPipelineMistral;
using model::ProcessPipelineOptions;
using par::MpiCommunicator;
using weft::testing::shared_dir;

namespace {

std::string tiny_path() { return (shared_dir() / "models" / "tiny-mistral").string(); }
std::string stories_path() { return (shared_dir() / "models" / "stories260K.bin").string(); }

// The same ids on every process (a fixed seed), in [3, vocab).
std::vector<std::int32_t> some_tokens(int n, int vocab, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  for (auto& id : t) id = std::uniform_int_distribution<std::int32_t>(3, vocab - 1)(rng);
  return t;
}

bool same_bits(const float* a, const float* b, std::size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

// The whole model in this process, on one thread: the reference the pipeline must match.
struct Reference {
  const model::LoadedModel& m;
  par::ExecContext ctx{1};
  std::vector<model::KVCache> caches;
  model::ForwardState state;
  std::vector<model::SequenceRun> runs;

  Reference(const model::LoadedModel& lm, int sequences, int context, int rows) : m(lm) {
    for (int i = 0; i < sequences; ++i) caches.emplace_back(m.config, context);
    state = model::ForwardState(m.config, rows, caches.front().capacity, 1);
  }
  std::size_t vocab() const { return static_cast<std::size_t>(m.config.vocab_size); }

  // The prompt in blocks of `block`, like the pipeline; the logits after its last token.
  std::vector<float> prefill(int seq, std::int64_t pos0, const std::vector<std::int32_t>& tokens, int block) {
    for (std::size_t b = 0; b < tokens.size(); b += static_cast<std::size_t>(block)) {
      const int n = static_cast<int>(std::min(tokens.size() - b, static_cast<std::size_t>(block)));
      model::forward_block(m.config, m.weights, ctx, caches[static_cast<std::size_t>(seq)], state, tokens.data() + b, n,
                           pos0 + static_cast<std::int64_t>(b), false);
    }
    return {state.logits.data(), state.logits.data() + vocab()};
  }

  // One step of all the sequences in one batch (one run each), as a single-process batch decodes.
  std::vector<float> decode(const std::vector<int>& seqs, const std::vector<std::int64_t>& pos,
                            const std::vector<std::int32_t>& tokens) {
    runs.clear();
    for (std::size_t i = 0; i < seqs.size(); ++i)
      runs.push_back({.cache = &caches[static_cast<std::size_t>(seqs[i])], .first_row = static_cast<int>(i),
                      .n_rows = 1, .pos0 = pos[i]});
    model::forward_runs(m.config, m.weights, ctx, runs, state, tokens.data(), static_cast<int>(seqs.size()), false);
    return {state.logits.data(), state.logits.data() + seqs.size() * vocab()};
  }
};

// model m with its first n layers only (views into the same weights).
model::LoadedModel first_layers(const model::LoadedModel& m, int n) {
  model::LoadedModel out = m;
  out.config.n_layers = n;
  out.weights.layers.resize(static_cast<std::size_t>(n));
  return out;
}

}  // namespace

TEST_CASE("the layers are split into contiguous ranges, the first stages taking the remainder") {
  MpiCommunicator comm;
  const model::LoadedModel lm = model::load_model(stories_path(), "");  // 5 layers
  const int S = comm.world_size();
  ProcessPipelineMistral pp(lm, comm, {.threads = 1, .max_sequences = 1, .context = 16, .block = 4});
  CHECK(pp.stages() == S);
  CHECK(pp.stage() == comm.rank());
  int next = 0;
  for (int k = 0; k < S; ++k) {
    CAPTURE(k);
    const int count = 5 / S + (k < 5 % S ? 1 : 0);
    CHECK(pp.layer_begin(k) == next);
    CHECK(pp.layer_end(k) == next + count);
    next += count;
  }
  CHECK(next == 5);
}

TEST_CASE("a prompt in blocks through the stages gives the single-process logits bit for bit") {
  MpiCommunicator comm;
  for (const std::string& path : {stories_path(), tiny_path()}) {
    CAPTURE(path);
    const model::LoadedModel lm = model::load_model(path, "");
    const auto& c = lm.config;
    const auto vocab = static_cast<std::size_t>(c.vocab_size);
    const ProcessPipelineOptions o{.threads = 1, .max_sequences = 3, .context = 64, .block = 4, .micro_batches = 2};
    ProcessPipelineMistral pp(lm, comm, o);
    Reference ref(lm, 3, 64, 4);
    // tiny-mistral's window is 8: its caches roll, and the second prompt runs past the first window.
    CHECK(pp.cache_rolling() == (c.sliding_window > 0));
    const bool root = comm.rank() == 0;
    std::vector<float> logits(vocab, -1.0f);
    // 11 tokens in blocks 4 + 4 + 3; then 6 more of the same sequence (its caches carried over);
    // then one token of another sequence.
    struct Prompt {
      int seq;
      std::int64_t pos0;
      int n;
    };
    for (const Prompt& p : {Prompt{1, 0, 11}, Prompt{1, 11, 6}, Prompt{0, 0, 1}}) {
      CAPTURE(p.seq);
      CAPTURE(p.pos0);
      const auto tokens = some_tokens(p.n, c.vocab_size, static_cast<std::uint32_t>(p.seq * 100 + p.pos0));
      pp.prefill(p.seq, p.pos0, tokens, root ? logits.data() : nullptr);
      const auto want = ref.prefill(p.seq, p.pos0, tokens, 4);
      if (root) CHECK(same_bits(logits.data(), want.data(), vocab));
    }
    // What each process sent: the hidden states of 18 prompt rows to the next stage, or (the last
    // stage) one logits row per prompt to process 0.
    const auto& s = pp.stats();
    CHECK(s.prefill_tokens == 18);
    CHECK(s.decode_tokens == 0);
    const int S = comm.world_size(), k = comm.rank();
    const std::uint64_t blocks = 3 + 2 + 1;
    if (k < S - 1) CHECK(s.bytes_sent == 18u * static_cast<std::uint64_t>(c.dim) * sizeof(float));
    if (k == S - 1) CHECK(s.bytes_sent == (S > 1 ? 3u * vocab * sizeof(float) : 0));
    // Messages: a receive per block (stages after the first), a send per block (all but the last),
    // and one logits message per prompt at each end of the ring (none in one process).
    const std::uint64_t want_messages =
        (k > 0 ? blocks : 0) + (k < S - 1 ? blocks : 0) + (S > 1 && (k == 0 || k == S - 1) ? 3 : 0);
    CHECK(s.messages == want_messages);
    CHECK(s.compute_time.count() > 0);
    pp.reset_stats();
    CHECK(pp.stats().messages == 0);
  }
}

TEST_CASE("decode steps of 1 to 5 sequences at different positions, 1, 2 and 4 micro-batches, bit for bit") {
  MpiCommunicator comm;
  const bool root = comm.rank() == 0;
  for (const std::string& path : {stories_path(), tiny_path()}) {
    CAPTURE(path);
    const model::LoadedModel lm = model::load_model(path, "");
    const auto& c = lm.config;
    const auto vocab = static_cast<std::size_t>(c.vocab_size);
    for (int mb : {1, 2, 4}) {
      CAPTURE(mb);
      ProcessPipelineMistral pp(lm, comm, {.threads = 1, .max_sequences = 5, .context = 64, .block = 4, .micro_batches = mb});
      Reference ref(lm, 5, 64, 5);
      // Prompts of different lengths, so that the sequences decode at different positions.
      std::vector<std::int64_t> pos = {3, 7, 1, 10, 5};
      std::vector<float> logits(5 * vocab, -1.0f);
      for (int seq = 0; seq < 5; ++seq) {
        const auto prompt = some_tokens(static_cast<int>(pos[static_cast<std::size_t>(seq)]), c.vocab_size,
                                        static_cast<std::uint32_t>(seq + 10));
        pp.prefill(seq, 0, prompt, root ? logits.data() : nullptr);
        ref.prefill(seq, 0, prompt, 4);
      }
      pp.reset_stats();
      // Steps of all five (in two orders), of three in no particular order, of two and of one.
      const std::vector<std::vector<int>> steps = {{0, 1, 2, 3, 4}, {4, 0, 2}, {1, 3}, {2, 4, 1, 0, 3}, {3}, {0, 1, 2, 3, 4}};
      std::int64_t tokens_decoded = 0;
      for (std::size_t t = 0; t < steps.size(); ++t) {
        CAPTURE(t);
        const auto& seqs = steps[t];
        std::vector<std::int64_t> at;
        for (int s : seqs) at.push_back(pos[static_cast<std::size_t>(s)]);
        const auto tokens = some_tokens(static_cast<int>(seqs.size()), c.vocab_size, static_cast<std::uint32_t>(1000 + t));
        std::fill(logits.begin(), logits.end(), -1.0f);
        pp.decode(seqs, at, tokens, root ? logits.data() : nullptr);
        const auto want = ref.decode(seqs, at, tokens);
        if (root) {
          for (std::size_t i = 0; i < seqs.size(); ++i) {
            CAPTURE(i);
            CHECK(same_bits(logits.data() + i * vocab, want.data() + i * vocab, vocab));
          }
        }
        for (int s : seqs) ++pos[static_cast<std::size_t>(s)];
        tokens_decoded += static_cast<std::int64_t>(seqs.size());
      }
      const auto& s = pp.stats();
      CHECK(s.decode_tokens == tokens_decoded);
      CHECK(s.decode_calls == static_cast<std::int64_t>(steps.size()));
      const int S = comm.world_size(), k = comm.rank();
      // Every decoded row's hidden state to the next stage, or its logits row to process 0.
      if (k < S - 1) CHECK(s.bytes_sent == static_cast<std::uint64_t>(tokens_decoded) * static_cast<std::uint64_t>(c.dim) * sizeof(float));
      if (k == S - 1 && S > 1) CHECK(s.bytes_sent == static_cast<std::uint64_t>(tokens_decoded) * vocab * sizeof(float));
      // One message per micro-batch in and out of each stage, and one logits message per step.
      std::uint64_t micro = 0;
      for (const auto& seqs : steps) micro += static_cast<std::uint64_t>(std::min<int>(mb, static_cast<int>(seqs.size())));
      const std::uint64_t want_messages = (k > 0 ? micro : 0) + (k < S - 1 ? micro : 0) +
                                          (S > 1 && (k == 0 || k == S - 1) ? steps.size() : 0);
      CHECK(s.messages == want_messages);
    }
  }
}

TEST_CASE("a decode step allocates nothing after warm-up, on every process") {
  MpiCommunicator comm;
  const bool root = comm.rank() == 0;
  for (const std::string& path : {stories_path(), tiny_path()}) {
    CAPTURE(path);
    const model::LoadedModel lm = model::load_model(path, "");
    const auto vocab = static_cast<std::size_t>(lm.config.vocab_size);
    ProcessPipelineMistral pp(lm, comm, {.threads = 2, .max_sequences = 4, .context = 128, .block = 4, .micro_batches = 2});
    std::vector<float> logits(4 * vocab);
    const std::vector<int> seqs = {0, 1, 2, 3};
    std::vector<std::int64_t> pos = {0, 0, 0, 0};
    const auto tokens = some_tokens(4, lm.config.vocab_size, 7);
    auto step = [&] {
      pp.decode(seqs, pos, tokens, root ? logits.data() : nullptr);
      for (auto& p : pos) ++p;
    };
    for (int i = 0; i < 8; ++i) step();  // warm-up: threads started, MPI's buffers in place
    // Three windows of 16 steps, the same on every process (the steps are collective). Open MPI
    // may still grow an internal pool once when messages arrive in an unusual order (seen once in
    // a loaded full-suite run: 1 allocation in 32 steps); an allocation per step shows in all three.
    long fewest = -1;
    for (int w = 0; w < 3; ++w) {
      allocations = 0;
      counting = true;
      for (int i = 0; i < 16; ++i) step();
      counting = false;
      fewest = fewest < 0 ? allocations.load() : std::min(fewest, allocations.load());
    }
    CHECK(fewest == 0);
  }
}

TEST_CASE("a stage count above the layer count is refused on every process, naming both") {
  MpiCommunicator comm;
  const int S = comm.world_size();
  const model::LoadedModel lm = model::load_model(stories_path(), "");
  const ProcessPipelineOptions o{.threads = 1, .max_sequences = 1, .context = 16, .block = 4};
  const model::LoadedModel fewer = first_layers(lm, S - 1);
  const std::string want = std::to_string(S) + " stages (MPI processes) but the model has only " +
                           std::to_string(S - 1) + " layers";
  CHECK_THROWS_WITH_AS(ProcessPipelineMistral(fewer, comm, o), doctest::Contains(want.c_str()), UsageError);
  // As many layers as stages: one each.
  const model::LoadedModel exact = first_layers(lm, S);
  ProcessPipelineMistral pp(exact, comm, o);
  CHECK(pp.layer_begin(comm.rank()) == comm.rank());
  CHECK(pp.layer_end(comm.rank()) == comm.rank() + 1);
}

TEST_CASE("bad arguments throw on every process before any message, and the pipeline still runs") {
  MpiCommunicator comm;
  const bool root = comm.rank() == 0;
  const model::LoadedModel lm = model::load_model(tiny_path(), "");  // context 16 without a window: not rolling
  const auto vocab = static_cast<std::size_t>(lm.config.vocab_size);
  model::LoadedModel no_window = lm;
  no_window.config.sliding_window = 0;
  const ProcessPipelineOptions o{.threads = 1, .max_sequences = 2, .context = 16, .block = 4, .micro_batches = 2};
  for (auto bad : {&ProcessPipelineOptions::max_sequences, &ProcessPipelineOptions::context, &ProcessPipelineOptions::block,
                   &ProcessPipelineOptions::micro_batches, &ProcessPipelineOptions::threads}) {
    ProcessPipelineOptions b = o;
    b.*bad = 0;
    CHECK_THROWS_WITH_AS(ProcessPipelineMistral(no_window, comm, b), doctest::Contains("must be at least 1, got 0"), UsageError);
  }
  ProcessPipelineMistral pp(no_window, comm, o);
  CHECK_FALSE(pp.cache_rolling());
  std::vector<float> logits(2 * vocab);
  float* out = root ? logits.data() : nullptr;
  const std::vector<std::int32_t> two = {5, 6};
  const std::vector<std::int64_t> at = {0, 0};
  CHECK_THROWS_WITH_AS(pp.prefill(0, 0, {}, out), "process pipeline prefill: no tokens", UsageError);
  CHECK_THROWS_WITH_AS(pp.prefill(2, 0, two, out), doctest::Contains("sequence 2 is outside [0, 2)"), UsageError);
  CHECK_THROWS_WITH_AS(pp.prefill(0, 15, two, out), doctest::Contains("15 + 2 tokens of sequence 0 exceed the context of 16"),
                       UsageError);
  const std::vector<std::int32_t> outside = {5, 512};
  CHECK_THROWS_WITH_AS(pp.prefill(0, 0, outside, out), doctest::Contains("token id 512 is outside the vocabulary [0, 512)"),
                       UsageError);
  CHECK_THROWS_WITH_AS(pp.decode(std::vector<int>{1, 1}, at, two, out), doctest::Contains("given twice"), UsageError);
  CHECK_THROWS_WITH_AS(pp.decode(std::vector<int>{0}, at, two, out), doctest::Contains("1 sequences, 2 positions and 2 tokens"),
                       UsageError);
  CHECK_THROWS_WITH_AS(pp.decode(std::vector<int>{0, 1}, std::vector<std::int64_t>{0, -1}, two, out),
                       doctest::Contains("position -1 of sequence 1 is negative"), UsageError);
  CHECK(pp.stats().messages == 0);
  // Nothing was left half sent: a good step still matches the single-process model.
  Reference ref(no_window, 2, 16, 4);
  pp.decode(std::vector<int>{0, 1}, at, two, out);
  const auto want = ref.decode({0, 1}, at, two);
  if (root) CHECK(same_bits(logits.data(), want.data(), 2 * vocab));
  pp.decode({}, {}, {}, out);  // no sequences: nothing to do
  CHECK(pp.stats().decode_calls == 1);
}

TEST_CASE("processes constructed with different options, or one with a bad option, all refuse") {
  MpiCommunicator comm;
  const model::LoadedModel lm = model::load_model(tiny_path(), "");
  ProcessPipelineOptions o{.threads = 1, .max_sequences = 2, .context = 16, .block = 4};
  if (comm.world_size() > 1) {
    if (comm.rank() == comm.world_size() - 1) o.block = 8;
    const std::string want = "block is 4 on process 0 but 8 on process " + std::to_string(comm.world_size() - 1);
    CHECK_THROWS_WITH_AS(ProcessPipelineMistral(lm, comm, o), doctest::Contains(want.c_str()), UsageError);
  }
  // Threads may differ between processes, but a bad count on one process is refused by all.
  const int last = comm.world_size() - 1;
  ProcessPipelineOptions t{.threads = comm.rank() == last ? 0 : 1, .max_sequences = 2, .context = 16, .block = 4};
  const std::string refused = comm.rank() == last ? "threads must be at least 1, got 0"
                                                  : "process " + std::to_string(last) + " refused its options";
  CHECK_THROWS_WITH_AS(ProcessPipelineMistral(lm, comm, t), doctest::Contains(refused.c_str()), UsageError);
  t.threads = comm.rank() + 1;
  ProcessPipelineMistral pp(lm, comm, t);
  CHECK(pp.stages() == comm.world_size());
  comm.barrier();
}

int main(int argc, char** argv) { return weft::testing::run_doctest_under_mpi(argc, argv, "test_mpi_pipeline", true); }
