// weft::Processes: joining an MPI job, and the serving loop of the processes other than rank 0.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <string>
#include <vector>
#include <algorithm>

#include "model/model_impl.hpp"
#include "model/processes_impl.hpp"
#if WEFT_HAVE_MPI
#include "model/process_pipeline.hpp"
#endif
#include "parallel/exec_context.hpp"
#include "weft/error.hpp"

namespace weft {

namespace {

#if WEFT_HAVE_MPI
// Reads what rank 0 wrote into a command's payload, refusing to read past its end.
class PayloadReader {
 public:
  PayloadReader(std::span<const std::byte> bytes, int rank) : bytes_(bytes), rank_(rank) {}
  template <class T>
  T get() {
    T v;
    read(&v, sizeof v);
    return v;
  }
  template <class T>
  void get(std::vector<T>& out, std::size_t n) {
    out.resize(n);
    read(out.data(), n * sizeof(T));
  }
  void done() const {
    if (at_ != bytes_.size()) fail();
  }

 private:
  void read(void* dst, std::size_t n) {
    if (n > bytes_.size() - at_) fail();
    if (n > 0) std::memcpy(dst, bytes_.data() + at_, n);
    at_ += n;
  }
  [[noreturn]] void fail() const {
    throw par::MpiError("weft: rank " + std::to_string(rank_) + " received a command whose payload (" +
                        std::to_string(bytes_.size()) + " bytes) does not match its header: the processes run "
                        "different versions of weft or are out of step");
  }
  std::span<const std::byte> bytes_;
  std::size_t at_ = 0;
  int rank_;
};

void append(std::vector<std::byte>& out, const void* data, std::size_t n) {
  if (n == 0) return;
  const std::size_t at = out.size();
  out.resize(at + n);
  std::memcpy(out.data() + at, data, n);
}
#endif

}  // namespace

Processes::Processes(int* argc, char*** argv) : impl_(std::make_unique<Impl>()) {
  if (!launched_by_mpirun()) return;
#if WEFT_HAVE_MPI
  Impl& m = *impl_;
  m.runtime.emplace(argc, argv);
  m.rank = m.runtime->rank();
  m.size = m.runtime->world_size();
  if (m.size > 1) {
    m.comm = std::make_unique<par::MpiCommunicator>();
    m.channel = std::make_unique<par::MpiCommandChannel>(*m.comm, 0);
  }
#else
  (void)argc;
  (void)argv;
  throw UsageError("this process was started by mpirun, but this weft was built without MPI "
                   "(install libopenmpi-dev and rebuild with -Dmpi=enabled)");
#endif
}

Processes::~Processes() {
#if WEFT_HAVE_MPI
  Impl& m = *impl_;
  if (m.channel && m.channel->is_root() && m.leading) {
    m.close();
    try {
      m.channel->post({.kind = par::Command::Stop}, 0);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "weft: rank 0: could not tell the other processes to stop: %s\n", e.what());
    }
  }
  m.channel.reset();
  m.comm.reset();
#endif
}

int Processes::rank() const noexcept { return impl_->rank; }
bool Processes::started_serving() const noexcept { return impl_->served; }
void Processes::lead() noexcept { impl_->leading = impl_->rank == 0 && impl_->size > 1; }
int Processes::size() const noexcept { return impl_->size; }
bool Processes::built_with_mpi() noexcept { return WEFT_HAVE_MPI != 0; }

bool Processes::launched_by_mpirun() noexcept {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS"})
    if (std::getenv(var) != nullptr) return true;
  return false;
}

void Processes::set_idle_timeout(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds))
    throw UsageError("the idle timeout must be a number of seconds >= 0, got " + std::to_string(seconds));
#if WEFT_HAVE_MPI
  if (impl_->channel)
    impl_->channel->set_idle_timeout(std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(seconds * 1000))));
#endif
}

double Processes::timeout_seconds() const noexcept {
#if WEFT_HAVE_MPI
  if (impl_->comm) return static_cast<double>(impl_->comm->timeout().count()) / 1000.0;
#endif
  return 0;
}

void Processes::abort(int code, const std::string& message) noexcept {
#if WEFT_HAVE_MPI
  if (impl_->runtime) par::MpiRuntime::abort(code, message);
#endif
  if (!message.empty()) std::fprintf(stderr, "weft: rank %d: %s\n", impl_->rank, message.c_str());
  std::exit(code);
}

Processes::Stats Processes::stats() const noexcept {
  Stats s;
#if WEFT_HAVE_MPI
  if (impl_->comm) {
    const par::MpiCommStats& c = impl_->comm->stats();
    s.operations = c.operations;
    s.bytes_sent = c.bytes_sent;
    s.seconds = std::chrono::duration<double>(c.time).count();
  }
#endif
  return s;
}

void Processes::reset_stats() noexcept {
#if WEFT_HAVE_MPI
  if (impl_->comm) impl_->comm->reset_stats();
#endif
}

par::Communicator* Processes::Impl::communicator() noexcept {
#if WEFT_HAVE_MPI
  return comm.get();
#else
  return nullptr;
#endif
}

void Processes::Impl::open(const model::OpenSession& o) {
#if WEFT_HAVE_MPI
  if (session_open)
    throw UsageError("a session over the " + std::to_string(size) +
                     " processes is already open: the processes run one session at a time");
  channel->post({.kind = par::Command::Open, .count = 1, .data = &o}, sizeof o);
  session_open = leading = true;
#else
  (void)o;
#endif
}

void Processes::Impl::close() noexcept {
#if WEFT_HAVE_MPI
  if (!session_open) return;
  session_open = false;
  try {
    channel->post({.kind = par::Command::Close}, 0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "weft: rank 0: could not close the session on the other processes: %s\n", e.what());
  }
#endif
}

void Processes::Impl::post_forward(std::span<const model::TensorParallelMistral::Run> runs, const std::int32_t* tokens,
                                   int n, bool all_logits) {
#if WEFT_HAVE_MPI
  const model::StepHeader h{.op = model::StepHeader::kTensorParallel, .items = static_cast<std::int32_t>(runs.size()),
                            .n = n, .all_logits = all_logits ? 1 : 0};
  message.clear();
  append(message, &h, sizeof h);
  append(message, runs.data(), runs.size_bytes());
  append(message, tokens, static_cast<std::size_t>(n) * sizeof(std::int32_t));
  channel->post({.kind = par::Command::Decode, .count = n, .data = message.data()}, message.size());
#else
  (void)runs, (void)tokens, (void)n, (void)all_logits;
#endif
}

void Processes::Impl::post_prefill(int seq, std::int64_t pos0, std::span<const std::int32_t> tokens) {
#if WEFT_HAVE_MPI
  const model::StepHeader h{.op = model::StepHeader::kPipelinePrefill, .items = 1,
                            .n = static_cast<std::int32_t>(tokens.size()), .pos0 = pos0, .seq = seq};
  message.clear();
  append(message, &h, sizeof h);
  append(message, tokens.data(), tokens.size_bytes());
  channel->post({.kind = par::Command::Prefill, .count = h.n, .data = message.data()}, message.size());
#else
  (void)seq, (void)pos0, (void)tokens;
#endif
}

void Processes::Impl::post_decode(std::span<const int> seqs, std::span<const std::int64_t> positions,
                                  std::span<const std::int32_t> tokens) {
#if WEFT_HAVE_MPI
  const model::StepHeader h{.op = model::StepHeader::kPipelineDecode, .items = static_cast<std::int32_t>(seqs.size()),
                            .n = static_cast<std::int32_t>(tokens.size())};
  message.clear();
  append(message, &h, sizeof h);
  append(message, seqs.data(), seqs.size_bytes());
  append(message, positions.data(), positions.size_bytes());
  append(message, tokens.data(), tokens.size_bytes());
  channel->post({.kind = par::Command::Decode, .count = h.n, .data = message.data()}, message.size());
#else
  (void)seqs, (void)positions, (void)tokens;
#endif
}

#if WEFT_HAVE_MPI
namespace {

// Pipeline stages in processes: this process's stage of the session rank 0 opened, then its steps.
void serve_pipeline(const Model& model, Context& context, Processes::Impl& m, const model::OpenSession& o) {
  const std::string who = "rank " + std::to_string(m.rank);
  model::ProcessPipelineMistral pipe(model.impl().loaded, *m.comm,
                                     {.threads = context.threads(), .max_sequences = o.sequences, .context = o.context,
                                      .block = o.block, .micro_batches = o.micro_batches});
  std::vector<int> seqs;
  std::vector<std::int64_t> positions;
  std::vector<std::int32_t> tokens;
  seqs.reserve(static_cast<std::size_t>(o.sequences));
  positions.reserve(static_cast<std::size_t>(o.sequences));
  tokens.reserve(static_cast<std::size_t>(std::max(o.block, o.sequences)));
  for (;;) {
    const par::StepCommand cmd = m.channel->receive();
    if (cmd.kind == par::Command::Close) return;
    PayloadReader in(m.channel->payload(), m.rank);
    const auto h = in.get<model::StepHeader>();
    if (cmd.kind == par::Command::Prefill && h.op == model::StepHeader::kPipelinePrefill && h.n >= 1) {
      in.get(tokens, static_cast<std::size_t>(h.n));
      in.done();
      pipe.prefill(h.seq, h.pos0, tokens, nullptr);  // checks seq, positions and ids itself
    } else if (cmd.kind == par::Command::Decode && h.op == model::StepHeader::kPipelineDecode && h.items >= 0 &&
               h.items <= o.sequences && h.n == h.items) {
      in.get(seqs, static_cast<std::size_t>(h.items));
      in.get(positions, static_cast<std::size_t>(h.items));
      in.get(tokens, static_cast<std::size_t>(h.n));
      in.done();
      pipe.decode(seqs, positions, tokens, nullptr);
    } else {
      throw par::MpiError("weft: " + who + ": expected a pipeline step or Close from rank 0, got command " +
                          std::to_string(static_cast<int>(cmd.kind)) + " (op " + std::to_string(h.op) + ")");
    }
  }
}

// One session on a serving process: the model rank 0 described, then its steps until Close.
void serve_session(const Model& model, Context& context, Processes::Impl& m, const model::OpenSession& o) {
  const Model::Impl& mi = model.impl();
  const model::MistralConfig& c = mi.loaded.config;
  const std::string who = "rank " + std::to_string(m.rank);
  auto differs = [&](const char* what, std::int64_t root, std::int64_t mine) {
    if (root != mine)
      throw InputError(mi.loaded.source + ": " + who + " loaded a model with " + what + " = " + std::to_string(mine) +
                       " but rank 0's has " + std::to_string(root) + ": every process must load the same model");
  };
  differs("hidden_size", o.dim, c.dim);
  differs("num_hidden_layers", o.n_layers, c.n_layers);
  differs("num_attention_heads", o.n_heads, c.n_heads);
  differs("num_key_value_heads", o.n_kv_heads, c.n_kv_heads);
  differs("intermediate_size", o.hidden_dim, c.hidden_dim);
  differs("vocab_size", o.vocab_size, c.vocab_size);
  if (o.mode == 2) return serve_pipeline(model, context, m, o);
  if (o.mode != 1) throw par::MpiError("weft: " + who + ": rank 0 opened a session of unknown kind " + std::to_string(o.mode));

  const model::TensorParallelOptions to{.tp = o.ranks, .threads = context.threads(), .processes = m.communicator()};
  auto tp = mi.shards ? std::make_unique<model::TensorParallelMistral>(*mi.shards, to)
                      : std::make_unique<model::TensorParallelMistral>(mi.loaded, to);
  auto state = tp->make_state(o.sequences, o.context, o.block);
  std::vector<float> logits(static_cast<std::size_t>(o.block) * static_cast<std::size_t>(c.vocab_size));
  std::vector<model::TensorParallelMistral::Run> runs;
  std::vector<std::int32_t> tokens;
  runs.reserve(static_cast<std::size_t>(o.sequences));
  tokens.reserve(static_cast<std::size_t>(o.block));
  for (;;) {
    const par::StepCommand cmd = m.channel->receive();
    if (cmd.kind == par::Command::Close) return;
    if (cmd.kind != par::Command::Decode)
      throw par::MpiError("weft: " + who + ": expected a step or Close from rank 0, got command " +
                          std::to_string(static_cast<int>(cmd.kind)));
    PayloadReader in(m.channel->payload(), m.rank);
    const auto h = in.get<model::StepHeader>();
    if (h.op != model::StepHeader::kTensorParallel || h.items < 1 || h.items > o.sequences || h.n < 1 || h.n > o.block ||
        (h.all_logits ? h.n : h.items) > o.block)
      throw par::MpiError("weft: " + who + ": rank 0 sent a step that does not fit the session (" +
                          std::to_string(h.items) + " runs, " + std::to_string(h.n) + " tokens)");
    in.get(runs, static_cast<std::size_t>(h.items));
    in.get(tokens, static_cast<std::size_t>(h.n));
    in.done();
    for (const auto& r : runs)
      if (r.seq < 0 || r.seq >= o.sequences || r.first_row < 0 || r.n_rows < 1 || r.first_row + r.n_rows > h.n || r.pos0 < 0)
        throw par::MpiError("weft: " + who + ": rank 0 sent a run outside the session (sequence " +
                            std::to_string(r.seq) + ", rows " + std::to_string(r.first_row) + "+" +
                            std::to_string(r.n_rows) + ")");
    tp->forward(*state, runs, tokens.data(), h.n, h.all_logits != 0, logits.data());
  }
}

}  // namespace
#endif

void Processes::serve(std::shared_ptr<const Model> model, Context& context) {
  if (is_root()) throw UsageError("Processes::serve: rank 0 drives the sessions; only the other processes serve");
  if (!model) throw UsageError("Processes::serve: model is null");
#if WEFT_HAVE_MPI
  Impl& m = *impl_;
  m.served = true;
  for (;;) {
    const par::StepCommand cmd = m.channel->receive();
    if (cmd.kind == par::Command::Stop) return;
    if (cmd.kind != par::Command::Open)
      throw par::MpiError("weft: rank " + std::to_string(m.rank) + ": expected Open or Stop from rank 0, got command " +
                          std::to_string(static_cast<int>(cmd.kind)));
    PayloadReader in(m.channel->payload(), m.rank);
    const auto o = in.get<model::OpenSession>();
    in.done();
    if (o.magic != model::OpenSession{}.magic)
      throw par::MpiError("weft: rank " + std::to_string(m.rank) + ": rank 0's Open command is malformed");
    serve_session(*model, context, m, o);
  }
#else
  (void)context;
#endif
}

}  // namespace weft
