#include "parallel/mpi_communicator.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <thread>
#include <type_traits>

#include "parallel/mpi_command_channel.hpp"

namespace weft::par {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kLineFloats = 16;      // slices are whole cache lines, as in-process
constexpr std::size_t kBlock = 256;          // floats summed per block (stack accumulator)
// All-reduces whose full exchange sends at most this many bytes per rank do it in one round
// (every rank sends its whole vector to every other: latency-bound decode vectors, e.g. a 4096
// float hidden state among up to 4 ranks); longer ones reduce-scatter + all-gather, which sends
// 2(w-1)/w of the vector per rank instead of (w-1) times it.
constexpr std::size_t kFullExchangeBytes = 64 * 1024;
constexpr int kReduceTag = 1;
constexpr std::size_t kMaxChunk = std::size_t{1} << 30;  // bytes per MPI call (counts are int)

// Rank r's slice [lo, hi) of n floats, split exactly as SharedMemoryCommunicator splits it.
void slice_of(std::size_t n, int world, int r, std::size_t& lo, std::size_t& hi) noexcept {
  const std::size_t lines = (n + kLineFloats - 1) / kLineFloats;
  const std::size_t per = (lines + static_cast<std::size_t>(world) - 1) / static_cast<std::size_t>(world) * kLineFloats;
  lo = std::min(n, per * static_cast<std::size_t>(r));
  hi = std::min(n, lo + per);
}

std::string mpi_error_string(int rc) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, buf, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(rc);
  return std::string(buf, static_cast<std::size_t>(len));
}

int to_int_count(std::size_t n, const char* op, const char* unit) {
  if (n > static_cast<std::size_t>(INT_MAX))
    throw UsageError(std::string("MPI ") + op + ": " + std::to_string(n) + " " + unit +
                     " in one call is more than MPI's int count allows (" + std::to_string(INT_MAX) + ")");
  return static_cast<int>(n);
}

std::string seconds_text(std::chrono::milliseconds t) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", static_cast<double>(t.count()) / 1000.0);
  return buf;
}

// Counts one public call and the wall time it took (waiting and local work) into the stats.
class OpTimer {
 public:
  explicit OpTimer(MpiCommStats& stats) noexcept : stats_(stats), start_(Clock::now()) {}
  ~OpTimer() {
    stats_.time += Clock::now() - start_;
    ++stats_.operations;
  }
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

 private:
  MpiCommStats& stats_;
  Clock::time_point start_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// MpiRuntime

MpiRuntime::MpiRuntime(int* argc, char*** argv, int required) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) throw UsageError("MPI is already initialized in this process: create one MpiRuntime per process");
  if (MPI_Init_thread(argc, argv, required, &provided_) != MPI_SUCCESS)
    throw MpiError("MPI_Init_thread failed: is this process started by mpirun, and is Open MPI installed?");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  if (provided_ < required) {
    MPI_Finalize();
    throw UsageError("MPI provides thread level " + std::to_string(provided_) + ", weft needs at least " +
                     std::to_string(required) + " (MPI_THREAD_FUNNELED is 1)");
  }
  uncaught_ = std::uncaught_exceptions();
}

MpiRuntime::~MpiRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (std::uncaught_exceptions() > uncaught_) abort(1, "an error ended this rank; ending the MPI job");
  MPI_Finalize();
}

void MpiRuntime::abort(int code, std::string_view message) noexcept {
  int rank = -1, initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (!message.empty()) {
    std::fprintf(stderr, "weft: rank %d: %.*s\n", rank, static_cast<int>(message.size()), message.data());
    std::fflush(stderr);
  }
  std::fflush(stdout);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; this is for when MPI is not running
}

bool MpiRuntime::launched_by_mpirun() noexcept {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS"})
    if (std::getenv(var) != nullptr) return true;
  return false;
}

// ---------------------------------------------------------------------------------------------
// MpiCommunicator

std::chrono::milliseconds MpiCommunicator::default_timeout() {
  const char* env = std::getenv("WEFT_MPI_TIMEOUT");
  if (env == nullptr || *env == '\0') return std::chrono::seconds(60);
  errno = 0;
  char* end = nullptr;
  const double s = std::strtod(env, &end);
  while (end != nullptr && (*end == ' ' || *end == 's')) ++end;
  if (errno != 0 || end == env || *end != '\0' || !std::isfinite(s) || s < 0 || s > 1e7)
    throw UsageError(std::string("WEFT_MPI_TIMEOUT must be a number of seconds >= 0 (0 waits forever), got '") +
                     env + "'");
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(s * 1000.0)));
}

std::chrono::nanoseconds MpiCommunicator::default_spin() {
  const char* env = std::getenv("WEFT_MPI_SPIN_US");
  if (env == nullptr || *env == '\0') return std::chrono::milliseconds(1);
  errno = 0;
  char* end = nullptr;
  const long long us = std::strtoll(env, &end, 10);
  if (errno != 0 || end == env || *end != '\0' || us < 0 || us > 10'000'000)
    throw UsageError(std::string("WEFT_MPI_SPIN_US must be a whole number of microseconds in [0, 10000000], got '") +
                     env + "'");
  return std::chrono::microseconds(us);
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm)
    : base_(comm), timeout_(default_timeout()), spin_(default_spin()) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) throw MpiError("MpiCommunicator needs MPI to be initialized first (create an MpiRuntime)");
  MPI_Comm_rank(comm, &rank_);
  MPI_Comm_size(comm, &size_);
  check(MPI_Comm_dup(comm, &coll_), "MPI_Comm_dup", "duplicating the communicator");
  check(MPI_Comm_dup(comm, &p2p_), "MPI_Comm_dup", "duplicating the communicator");
  MPI_Comm_set_errhandler(coll_, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(p2p_, MPI_ERRORS_RETURN);
  std::string name = "weft collectives";
  MPI_Comm_set_name(coll_, name.data());
  name = "weft point-to-point";
  MPI_Comm_set_name(p2p_, name.data());
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (coll_ != MPI_COMM_NULL) MPI_Comm_free(&coll_);
  if (p2p_ != MPI_COMM_NULL) MPI_Comm_free(&p2p_);
}

void MpiCommunicator::check(int rc, const char* call, std::string_view what) const {
  if (rc == MPI_SUCCESS) return;
  throw MpiError("weft: " + std::string(call) + " (" + std::string(what) + ") failed on rank " +
                 std::to_string(rank_) + " of " + std::to_string(size_) + ": " + mpi_error_string(rc));
}

void MpiCommunicator::check_rank(int r, const char* op, const char* role) const {
  if (r < 0 || r >= size_)
    throw UsageError(std::string("MPI ") + op + ": " + role + " rank " + std::to_string(r) +
                     " is outside the world of " + std::to_string(size_) + " ranks");
}

void MpiCommunicator::wait_all(std::span<MPI_Request> reqs, std::span<const int> peers, const Wait& w,
                               MPI_Status* statuses) {
  const auto start = Clock::now();
  const auto deadline = w.timeout.count() > 0 ? start + w.timeout : Clock::time_point::max();
  auto backoff = std::chrono::microseconds(10);
  for (;;) {
    int done = 0;
    check(MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done,
                      statuses != nullptr ? statuses : MPI_STATUSES_IGNORE),
          "MPI_Testall", w.op);
    if (done) return;
    const auto now = Clock::now();
    if (now >= deadline) timed_out(reqs, peers, w);
    if (now - start < spin_) {
      // Poll flat out for a round trip's time, then let other threads on this core run between
      // polls (more processes than cores: the peer may need this core to answer).
      if (now - start > std::chrono::microseconds(20)) std::this_thread::yield();
      continue;
    }
    // Sleep, doubling up to 1 ms inside a step and 20 ms for a worker idle for over a second: a
    // waiting rank then costs a few hundred wake-ups a second at most.
    std::this_thread::sleep_for(backoff);
    const auto cap = w.idle && now - start > std::chrono::seconds(1) ? std::chrono::microseconds(20000)
                                                                      : std::chrono::microseconds(1000);
    backoff = std::min(backoff * 2, cap);
  }
}

void MpiCommunicator::timed_out(std::span<MPI_Request> reqs, std::span<const int> peers, const Wait& w) {
  // Which peers have not delivered? MPI_Testall left the requests unchanged; test them one by one.
  std::vector<int> silent;
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    int done = 0;
    if (MPI_Test(&reqs[i], &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || !done) {
      const int p = i < peers.size() ? peers[i] : -1;
      if (p >= 0 && std::find(silent.begin(), silent.end(), p) == silent.end()) silent.push_back(p);
    }
  }
  std::string who;
  if (!silent.empty()) {
    std::sort(silent.begin(), silent.end());
    for (std::size_t i = 0; i < silent.size(); ++i) who += (i ? ", " : "") + std::to_string(silent[i]);
    who = (silent.size() == 1 ? "rank " : "ranks ") + who;
  } else {
    who = size_ == 2 ? "rank " + std::to_string(1 - rank_) : "one of the other " + std::to_string(size_ - 1) + " ranks";
  }
  const std::string size = *w.unit != '\0' ? " (" + std::to_string(w.items) + " " + w.unit + ")" : "";
  const std::string msg = "MPI " + std::string(w.op) + size + " on rank " +
                          std::to_string(rank_) + " of " + std::to_string(size_) + " timed out after " +
                          seconds_text(w.timeout) + " waiting for " + who + ": " + who +
                          " stopped answering or died (crashed, was killed, hangs, or is in a different "
                          "operation). Set WEFT_MPI_TIMEOUT (seconds) to wait longer.";
  if (action_ == MpiTimeoutAction::Throw) {
    // A receive left posted would swallow a later message; cancel the point-to-point ones. (A
    // half-done collective cannot be cancelled: the caller must end the job.)
    for (std::size_t i = 0; i < reqs.size(); ++i) {
      if (reqs[i] == MPI_REQUEST_NULL || i >= peers.size() || peers[i] < 0) continue;
      MPI_Cancel(&reqs[i]);
      MPI_Request_free(&reqs[i]);
    }
    throw MpiError("weft: rank " + std::to_string(rank_) + ": " + msg);
  }
  MpiRuntime::abort(kMpiFaultExitCode, msg);
}

void MpiCommunicator::all_reduce_sum(float* data, std::size_t n) {
  const OpTimer timer(stats_);
  if (size_ == 1 || n == 0) return;
  if (reduction_ == MpiReduction::RankOrder) {
    reduce_rank_order(data, n);
    return;
  }
  const int count = to_int_count(n, "all_reduce_sum", "floats");
  MPI_Request req = MPI_REQUEST_NULL;
  check(MPI_Iallreduce(MPI_IN_PLACE, data, count, MPI_FLOAT, MPI_SUM, coll_, &req), "MPI_Iallreduce",
        "all_reduce_sum");
  stats_.bytes_sent += n * sizeof(float);
  const int peer = -1;
  wait_all({&req, 1}, {&peer, 1}, {"all_reduce_sum", n, "floats", timeout_});
}

void MpiCommunicator::reduce_rank_order(float* data, std::size_t n) {
  const int w = size_;
  to_int_count(n, "all_reduce_sum", "floats");  // the all-gather's displacements are ints
  const bool full = (static_cast<std::size_t>(w) - 1) * n * sizeof(float) <= kFullExchangeBytes;
  // Phase 1: gather, from every rank, the part of its vector that this rank sums: all of it
  // (full exchange) or this rank's slice (reduce-scatter).
  std::size_t lo = 0, hi = n;
  if (!full) slice_of(n, w, rank_, lo, hi);
  const std::size_t len = hi - lo;
  scratch_.resize(std::max(scratch_.size(), (static_cast<std::size_t>(w) - 1) * len));
  reqs_.clear();
  peers_.clear();
  auto peer_buf = [&](int p) { return scratch_.data() + static_cast<std::size_t>(p < rank_ ? p : p - 1) * len; };
  for (int p = 0; p < w; ++p) {
    if (p == rank_) continue;
    if (len > 0) {
      reqs_.push_back(MPI_REQUEST_NULL);
      peers_.push_back(p);
      check(MPI_Irecv(peer_buf(p), to_int_count(len, "all_reduce_sum", "floats"), MPI_FLOAT, p, kReduceTag, coll_,
                      &reqs_.back()),
            "MPI_Irecv", "all_reduce_sum");
    }
    std::size_t plo = 0, phi = n;
    if (!full) slice_of(n, w, p, plo, phi);
    if (phi > plo) {
      reqs_.push_back(MPI_REQUEST_NULL);
      peers_.push_back(p);
      check(MPI_Isend(data + plo, to_int_count(phi - plo, "all_reduce_sum", "floats"), MPI_FLOAT, p, kReduceTag,
                      coll_, &reqs_.back()),
            "MPI_Isend", "all_reduce_sum");
      stats_.bytes_sent += (phi - plo) * sizeof(float);
    }
  }
  const Wait wait{"all_reduce_sum", n, "floats", timeout_};
  wait_all(reqs_, peers_, wait);

  // Phase 2: sum in rank order (((d_0 + d_1) + d_2) + ...), exactly as in-process ranks do.
  float acc[kBlock];
  for (std::size_t b = 0; b < len; b += kBlock) {
    const std::size_t m = std::min(kBlock, len - b);
    const float* p0 = rank_ == 0 ? data + lo + b : peer_buf(0) + b;
    for (std::size_t i = 0; i < m; ++i) acc[i] = p0[i];
    for (int p = 1; p < w; ++p) {
      const float* src = p == rank_ ? data + lo + b : peer_buf(p) + b;
      for (std::size_t i = 0; i < m; ++i) acc[i] += src[i];
    }
    std::memcpy(data + lo + b, acc, m * sizeof(float));
  }
  if (!full) {
    // Phase 3: every rank gets every reduced slice.
    counts_.resize(static_cast<std::size_t>(w));
    displs_.resize(static_cast<std::size_t>(w));
    for (int p = 0; p < w; ++p) {
      std::size_t plo, phi;
      slice_of(n, w, p, plo, phi);
      counts_[static_cast<std::size_t>(p)] = static_cast<int>(phi - plo);
      displs_[static_cast<std::size_t>(p)] = static_cast<int>(plo);
    }
    MPI_Request req = MPI_REQUEST_NULL;
    check(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, counts_.data(), displs_.data(), MPI_FLOAT, coll_,
                          &req),
          "MPI_Iallgatherv", "all_reduce_sum");
    stats_.bytes_sent += len * sizeof(float) * (static_cast<std::size_t>(w) - 1);
    const int peer = -1;
    wait_all({&req, 1}, {&peer, 1}, wait);
  }
}

void MpiCommunicator::all_gather(const float* in, std::size_t n_per_rank, float* out) {
  const OpTimer timer(stats_);
  float* mine = out + static_cast<std::size_t>(rank_) * n_per_rank;
  if (in != mine && n_per_rank > 0) std::memmove(mine, in, n_per_rank * sizeof(float));
  if (size_ == 1 || n_per_rank == 0) return;
  to_int_count(n_per_rank * static_cast<std::size_t>(size_), "all_gather", "floats");
  MPI_Request req = MPI_REQUEST_NULL;
  check(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, out, static_cast<int>(n_per_rank), MPI_FLOAT, coll_, &req),
        "MPI_Iallgather", "all_gather");
  stats_.bytes_sent += n_per_rank * sizeof(float);
  const int peer = -1;
  wait_all({&req, 1}, {&peer, 1}, {"all_gather", n_per_rank * static_cast<std::size_t>(size_), "floats", timeout_});
}

void MpiCommunicator::all_gatherv(const float* in, std::span<const std::size_t> counts, float* out) {
  const OpTimer timer(stats_);
  if (counts.size() != static_cast<std::size_t>(size_))
    throw UsageError("MPI all_gatherv: counts has " + std::to_string(counts.size()) + " entries, the world has " +
                     std::to_string(size_) + " ranks");
  counts_.resize(counts.size());
  displs_.resize(counts.size());
  std::size_t total = 0;
  for (std::size_t r = 0; r < counts.size(); ++r) {
    counts_[r] = to_int_count(counts[r], "all_gatherv", "floats");
    displs_[r] = to_int_count(total, "all_gatherv", "floats");
    total += counts[r];
  }
  to_int_count(total, "all_gatherv", "floats");
  const auto me = static_cast<std::size_t>(rank_);
  float* mine = out + displs_[me];
  if (in != mine && counts[me] > 0) std::memmove(mine, in, counts[me] * sizeof(float));
  if (size_ == 1 || total == 0) return;
  MPI_Request req = MPI_REQUEST_NULL;
  check(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, out, counts_.data(), displs_.data(), MPI_FLOAT, coll_,
                        &req),
        "MPI_Iallgatherv", "all_gatherv");
  stats_.bytes_sent += counts[me] * sizeof(float);
  const int peer = -1;
  wait_all({&req, 1}, {&peer, 1}, {"all_gatherv", total, "floats", timeout_});
}

void MpiCommunicator::broadcast(void* data, std::size_t bytes, int root) {
  broadcast_with(data, bytes, root, {"broadcast", bytes, "bytes", timeout_});
}

void MpiCommunicator::broadcast_with(void* data, std::size_t bytes, int root, const Wait& w) {
  const OpTimer timer(stats_);
  check_rank(root, w.op, "root");
  if (size_ == 1 || bytes == 0) return;
  reqs_.clear();
  peers_.clear();
  auto* p = static_cast<unsigned char*>(data);
  for (std::size_t off = 0; off < bytes; off += kMaxChunk) {
    const std::size_t m = std::min(kMaxChunk, bytes - off);
    reqs_.push_back(MPI_REQUEST_NULL);
    // Waiting for the root names the root; the root waits on everyone.
    peers_.push_back(rank_ == root ? -1 : root);
    check(MPI_Ibcast(p + off, static_cast<int>(m), MPI_BYTE, root, coll_, &reqs_.back()), "MPI_Ibcast", w.op);
  }
  if (rank_ == root) stats_.bytes_sent += bytes;
  wait_all(reqs_, peers_, w);
}

void MpiCommunicator::barrier() {
  const OpTimer timer(stats_);
  if (size_ == 1) return;
  MPI_Request req = MPI_REQUEST_NULL;
  check(MPI_Ibarrier(coll_, &req), "MPI_Ibarrier", "barrier");
  const int peer = -1;
  wait_all({&req, 1}, {&peer, 1}, {"barrier", 0, "", timeout_});
}

void MpiCommunicator::send(const float* data, std::size_t n, int dest, int tag) {
  const OpTimer timer(stats_);
  check_rank(dest, "send", "destination");
  if (dest == rank_) throw UsageError("MPI send: rank " + std::to_string(rank_) + " cannot send to itself");
  MPI_Request req = MPI_REQUEST_NULL;
  // The message is formatted only on failure: a pipeline's decode step must not allocate.
  if (const int rc = MPI_Isend(data, to_int_count(n, "send", "floats"), MPI_FLOAT, dest, tag, p2p_, &req);
      rc != MPI_SUCCESS)
    check(rc, "MPI_Isend", "send to rank " + std::to_string(dest));
  stats_.bytes_sent += n * sizeof(float);
  wait_all({&req, 1}, {&dest, 1}, {"send", n, "floats", timeout_});
}

void MpiCommunicator::recv(float* data, std::size_t n, int source, int tag) {
  const OpTimer timer(stats_);
  check_rank(source, "recv", "source");
  if (source == rank_) throw UsageError("MPI recv: rank " + std::to_string(rank_) + " cannot receive from itself");
  MPI_Request req = MPI_REQUEST_NULL;
  if (const int rc = MPI_Irecv(data, to_int_count(n, "recv", "floats"), MPI_FLOAT, source, tag, p2p_, &req);
      rc != MPI_SUCCESS)
    check(rc, "MPI_Irecv", "recv from rank " + std::to_string(source));
  MPI_Status status;
  wait_all({&req, 1}, {&source, 1}, {"recv", n, "floats", timeout_}, &status);
  int got = 0;
  MPI_Get_count(&status, MPI_FLOAT, &got);
  if (static_cast<std::size_t>(got) != n)
    throw UsageError("MPI recv on rank " + std::to_string(rank_) + ": expected " + std::to_string(n) +
                     " floats from rank " + std::to_string(source) + " (tag " + std::to_string(tag) + "), got " +
                     std::to_string(got));
}

void MpiCommunicator::send_bytes(const void* data, std::size_t bytes, int dest, int tag) {
  const OpTimer timer(stats_);
  check_rank(dest, "send_bytes", "destination");
  if (dest == rank_) throw UsageError("MPI send_bytes: rank " + std::to_string(rank_) + " cannot send to itself");
  MPI_Request req = MPI_REQUEST_NULL;
  if (const int rc = MPI_Isend(data, to_int_count(bytes, "send_bytes", "bytes"), MPI_BYTE, dest, tag, p2p_, &req);
      rc != MPI_SUCCESS)
    check(rc, "MPI_Isend", "send_bytes to rank " + std::to_string(dest));
  stats_.bytes_sent += bytes;
  wait_all({&req, 1}, {&dest, 1}, {"send_bytes", bytes, "bytes", timeout_});
}

void MpiCommunicator::recv_bytes(void* data, std::size_t bytes, int source, int tag) {
  const OpTimer timer(stats_);
  check_rank(source, "recv_bytes", "source");
  if (source == rank_)
    throw UsageError("MPI recv_bytes: rank " + std::to_string(rank_) + " cannot receive from itself");
  MPI_Request req = MPI_REQUEST_NULL;
  if (const int rc = MPI_Irecv(data, to_int_count(bytes, "recv_bytes", "bytes"), MPI_BYTE, source, tag, p2p_, &req);
      rc != MPI_SUCCESS)
    check(rc, "MPI_Irecv", "recv_bytes from rank " + std::to_string(source));
  wait_all({&req, 1}, {&source, 1}, {"recv_bytes", bytes, "bytes", timeout_});
}

// ---------------------------------------------------------------------------------------------
// MpiCommandChannel

namespace {

constexpr std::uint32_t kCommandMagic = 0x77656674;  // "weft"

// One command on the wire: fixed size, so a worker knows what to receive before it knows the
// command.
struct WireCommand {
  std::uint32_t magic = kCommandMagic;
  std::uint8_t kind = 0;
  std::uint8_t pad[3] = {};
  std::uint64_t seq = 0;
  std::int64_t position = 0;
  std::int64_t count = 0;
  std::uint64_t payload_bytes = 0;
  std::byte inline_payload[MpiCommandChannel::kInlinePayload] = {};
};
static_assert(std::is_trivially_copyable_v<WireCommand>);

const char* command_name(Command c) noexcept {
  switch (c) {
    case Command::Prefill: return "Prefill";
    case Command::Decode: return "Decode";
    case Command::Reset: return "Reset";
    case Command::Stop: return "Stop";
    case Command::Open: return "Open";
    case Command::Close: return "Close";
  }
  return "?";
}

}  // namespace

MpiCommandChannel::MpiCommandChannel(MpiCommunicator& comm, int root) : comm_(comm), root_(root) {
  comm.check_rank(root, "command channel", "root");
}

void MpiCommandChannel::post(const StepCommand& cmd, std::size_t payload_bytes) {
  if (!is_root())
    throw UsageError("MPI command channel: rank " + std::to_string(comm_.rank()) + " cannot post commands, only root rank " +
                     std::to_string(root_) + " drives the others");
  if (cmd.position < 0 || cmd.count < 0)
    throw UsageError(std::string("MPI command channel: ") + command_name(cmd.kind) + " command with position " +
                     std::to_string(cmd.position) + " and count " + std::to_string(cmd.count) +
                     " (both must be >= 0)");
  if (payload_bytes > 0 && cmd.data == nullptr)
    throw UsageError("MPI command channel: " + std::to_string(payload_bytes) + " payload bytes but no data");
  WireCommand w;
  w.kind = static_cast<std::uint8_t>(cmd.kind);
  w.seq = ++seq_;
  w.position = cmd.position;
  w.count = cmd.count;
  w.payload_bytes = payload_bytes;
  const bool inline_payload = payload_bytes <= kInlinePayload;
  if (inline_payload && payload_bytes > 0) std::memcpy(w.inline_payload, cmd.data, payload_bytes);
  comm_.broadcast_with(&w, sizeof w, root_, {"command broadcast", sizeof w, "bytes", comm_.timeout_});
  if (!inline_payload)
    comm_.broadcast_with(const_cast<void*>(cmd.data), payload_bytes, root_,
                         {"command payload broadcast", payload_bytes, "bytes", comm_.timeout_});
}

StepCommand MpiCommandChannel::receive() {
  if (is_root())
    throw UsageError("MPI command channel: root rank " + std::to_string(root_) +
                     " posts commands (dispatch), it does not receive them");
  WireCommand w;
  MpiCommunicator::Wait wait{"wait for the next command", sizeof w, "bytes", idle_timeout_};
  wait.idle = true;
  comm_.broadcast_with(&w, sizeof w, root_, wait);
  if (w.magic != kCommandMagic || w.kind > static_cast<std::uint8_t>(kLastCommand) || w.seq != seq_ + 1 ||
      w.position < 0 || w.count < 0)
    throw MpiError("weft: rank " + std::to_string(comm_.rank()) + " received a malformed or out-of-step command (seq " +
                   std::to_string(w.seq) + ", expected " + std::to_string(seq_ + 1) +
                   "): the ranks no longer call the same operations in the same order");
  seq_ = w.seq;
  payload_size_ = static_cast<std::size_t>(w.payload_bytes);
  if (payload_.size() < payload_size_) payload_.resize(payload_size_);
  if (payload_size_ <= kInlinePayload) {
    if (payload_size_ > 0) std::memcpy(payload_.data(), w.inline_payload, payload_size_);
  } else {
    comm_.broadcast_with(payload_.data(), payload_size_, root_,
                         {"command payload broadcast", payload_size_, "bytes", comm_.timeout_});
  }
  StepCommand cmd;
  cmd.kind = static_cast<Command>(w.kind);
  cmd.position = w.position;
  cmd.count = w.count;
  cmd.data = payload_size_ > 0 ? payload_.data() : nullptr;
  return cmd;
}

}  // namespace weft::par
