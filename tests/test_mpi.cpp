// MpiCommunicator and MpiCommandChannel under mpirun (tests/meson.build runs this with -np 2 and
// -np 3). Every rank runs the same test cases in the same order, so the collectives inside them
// match; each rank checks its own results against the serial computation, and main() fails the
// run if any rank failed. Only rank 0 prints doctest's summary.
#define DOCTEST_CONFIG_IMPLEMENT
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

#include "parallel/communicator.hpp"
#include "parallel/mpi_command_channel.hpp"
#include "parallel/mpi_communicator.hpp"
#include "mpi_doctest_main.hpp"
#include "testing.hpp"

using weft::par::Command;
using weft::par::MpiCommandChannel;
using weft::par::MpiCommunicator;
using weft::par::MpiReduction;
using weft::par::StepCommand;

namespace {

// Rank r's input element i in round `seed`: values of mixed sign and magnitude (2^-8..2^7), so
// the order of the additions shows in the last bits.
float value(int r, std::size_t i, int seed) {
  std::uint64_t h = (static_cast<std::uint64_t>(r) + 1) * 0x9e3779b97f4a7c15ull ^ (i + 1) * 0xbf58476d1ce4e5b9ull ^
                    (static_cast<std::uint64_t>(seed) + 7) * 0x94d049bb133111ebull;
  h ^= h >> 31;
  h *= 0xd6e8feb86659fd93ull;
  h ^= h >> 29;
  const float mant = static_cast<float>(static_cast<int>(h % 2001) - 1000) * 1e-3f;
  return std::ldexp(mant, static_cast<int>((h >> 20) % 16) - 8);
}

std::vector<float> input(int r, std::size_t n, int seed) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = value(r, i, seed);
  return v;
}

// The serial all-reduce: ((d_0 + d_1) + d_2) + ... in f32.
std::vector<float> serial_sum(int world, std::size_t n, int seed) {
  std::vector<float> s = input(0, n, seed);
  for (int r = 1; r < world; ++r)
    for (std::size_t i = 0; i < n; ++i) s[i] += value(r, i, seed);
  return s;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The first index where a and b differ, for messages.
std::size_t first_difference(const std::vector<float>& a, const std::vector<float>& b) {
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return i;
  return std::min(a.size(), b.size());
}

// Lengths: one float, less than a cache line, odd over a page, and one long enough for the
// reduce-scatter path (more than 64 KiB to send per rank).
const std::size_t kLengths[] = {1, 15, 16, 4097, 70001};

}  // namespace

TEST_CASE("the communicator sees the MPI world") {
  MpiCommunicator comm;
  int rank = -1, size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  CHECK(comm.rank() == rank);
  CHECK(comm.world_size() == size);
  CHECK(comm.world_size() >= 2);
  CHECK(comm.reduction() == MpiReduction::RankOrder);
}

TEST_CASE("all_reduce_sum in rank order equals the serial sum bit for bit, repeatedly") {
  MpiCommunicator comm;
  const int w = comm.world_size();
  for (int round = 0; round < 3; ++round) {
    for (std::size_t n : kLengths) {
      CAPTURE(n);
      CAPTURE(round);
      std::vector<float> v = input(comm.rank(), n, round);
      comm.all_reduce_sum(v.data(), n);
      const std::vector<float> want = serial_sum(w, n, round);
      INFO("first difference at " << first_difference(v, want));
      CHECK(same_bits(v, want));
    }
  }
  // The same buffer reused many times (a decode loop): sum of ones.
  std::vector<float> ones(2048);
  for (int i = 0; i < 50; ++i) {
    std::fill(ones.begin(), ones.end(), 1.0f);
    comm.all_reduce_sum(ones.data(), ones.size());
    REQUIRE(ones.front() == static_cast<float>(w));
    REQUIRE(ones.back() == static_cast<float>(w));
  }
  CHECK(comm.stats().operations >= 65);
  CHECK(comm.stats().bytes_sent > 0);
}

TEST_CASE("all_reduce_sum matches the in-process shared-memory world of the same size") {
  MpiCommunicator comm;
  const int w = comm.world_size();
  for (std::size_t n : {std::size_t{4097}, std::size_t{70001}}) {
    CAPTURE(n);
    std::vector<float> v = input(comm.rank(), n, 11);
    comm.all_reduce_sum(v.data(), n);

    weft::par::SharedMemoryWorld world(w, std::chrono::nanoseconds(0));
    std::vector<std::vector<float>> bufs;
    for (int r = 0; r < w; ++r) bufs.push_back(input(r, n, 11));
    std::vector<std::thread> threads;
    for (int r = 0; r < w; ++r)
      threads.emplace_back([&, r] { world.communicator(r).all_reduce_sum(bufs[static_cast<std::size_t>(r)].data(), n); });
    for (auto& t : threads) t.join();
    CHECK(same_bits(v, bufs[0]));
  }
}

TEST_CASE("all_reduce_sum with MPI's own reduction is close to the serial sum and equal on every rank") {
  MpiCommunicator comm;
  comm.set_reduction(MpiReduction::Native);
  const int w = comm.world_size();
  for (std::size_t n : kLengths) {
    CAPTURE(n);
    std::vector<float> v = input(comm.rank(), n, 5);
    comm.all_reduce_sum(v.data(), n);
    const std::vector<float> want = serial_sum(w, n, 5);
    // Each input is below 2^7 in magnitude; reordering w additions moves a sum by at most
    // (w-1) * 2^7 * eps per element.
    weft::testing::expect_close(v, want, (w - 1) * 128.0 * 1.2e-7);
    std::vector<float> root = v;
    comm.broadcast(root.data(), root.size() * sizeof(float), 0);
    CHECK(same_bits(v, root));
  }
}

TEST_CASE("all_gather, in place and not, equals the serial concatenation") {
  MpiCommunicator comm;
  const int w = comm.world_size();
  for (std::size_t n : {std::size_t{1}, std::size_t{15}, std::size_t{4097}}) {
    CAPTURE(n);
    std::vector<float> want;
    for (int r = 0; r < w; ++r) {
      const auto part = input(r, n, 3);
      want.insert(want.end(), part.begin(), part.end());
    }
    std::vector<float> out(n * static_cast<std::size_t>(w), -1.0f);
    const auto mine = input(comm.rank(), n, 3);
    comm.all_gather(mine.data(), n, out.data());
    CHECK(same_bits(out, want));

    std::vector<float> in_place(n * static_cast<std::size_t>(w), -1.0f);
    std::copy(mine.begin(), mine.end(), in_place.begin() + static_cast<std::ptrdiff_t>(n * static_cast<std::size_t>(comm.rank())));
    comm.all_gather(in_place.data() + n * static_cast<std::size_t>(comm.rank()), n, in_place.data());
    CHECK(same_bits(in_place, want));
  }
}

TEST_CASE("all_gatherv with uneven counts, one of them zero, equals the serial concatenation") {
  MpiCommunicator comm;
  const int w = comm.world_size();
  for (std::size_t base : {std::size_t{1}, std::size_t{15}, std::size_t{4097}}) {
    std::vector<std::size_t> counts(static_cast<std::size_t>(w));
    for (int r = 0; r < w; ++r) counts[static_cast<std::size_t>(r)] = r == 1 ? 0 : base + static_cast<std::size_t>(r);
    CAPTURE(base);
    std::vector<float> want;
    for (int r = 0; r < w; ++r) {
      const auto part = input(r, counts[static_cast<std::size_t>(r)], 4);
      want.insert(want.end(), part.begin(), part.end());
    }
    std::vector<float> out(want.size(), -1.0f);
    const auto mine = input(comm.rank(), counts[static_cast<std::size_t>(comm.rank())], 4);
    comm.all_gatherv(mine.data(), counts, out.data());
    CHECK(same_bits(out, want));
  }
  std::vector<std::size_t> wrong(static_cast<std::size_t>(w) + 1, 1);
  std::vector<float> out(wrong.size());
  CHECK_THROWS_AS(comm.all_gatherv(out.data(), wrong, out.data()), weft::UsageError);
}

TEST_CASE("broadcast from every root delivers the root's bytes") {
  MpiCommunicator comm;
  const int w = comm.world_size();
  for (int root = 0; root < w; ++root) {
    for (std::size_t n : {std::size_t{1}, std::size_t{15}, std::size_t{4097}}) {
      CAPTURE(root);
      CAPTURE(n);
      std::vector<float> v = comm.rank() == root ? input(root, n, 9) : std::vector<float>(n, -1.0f);
      comm.broadcast(v.data(), n * sizeof(float), root);
      CHECK(same_bits(v, input(root, n, 9)));
    }
  }
  int x = 0;
  CHECK_THROWS_AS(comm.broadcast(&x, sizeof x, w), weft::UsageError);
}

TEST_CASE("barrier waits for the slowest rank") {
  MpiCommunicator comm;
  for (int i = 0; i < 20; ++i) comm.barrier();
  const auto start = std::chrono::steady_clock::now();
  if (comm.rank() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  comm.barrier();
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited >= std::chrono::milliseconds(90));
}

TEST_CASE("send and recv pass activations down a pipeline of ranks and back") {
  MpiCommunicator comm;
  const int w = comm.world_size();
  const int r = comm.rank();
  for (std::size_t n : {std::size_t{1}, std::size_t{15}, std::size_t{4097}}) {
    for (int round = 0; round < 3; ++round) {
      CAPTURE(n);
      // Stage r adds r + 1 to every element and hands the vector to stage r + 1; the last stage
      // returns it to rank 0.
      std::vector<float> v(n);
      if (r == 0) {
        v = input(0, n, round);
      } else {
        comm.recv(v.data(), n, r - 1, round);
      }
      for (auto& x : v) x += static_cast<float>(r + 1);
      comm.send(v.data(), n, (r + 1) % w, round);
      if (r == 0) {
        comm.recv(v.data(), n, w - 1, round);
        std::vector<float> want = input(0, n, round);
        for (int s = 0; s < w; ++s)
          for (auto& x : want) x += static_cast<float>(s + 1);
        CHECK(same_bits(v, want));
      }
    }
  }
  // Bytes, e.g. token ids for the next stage.
  if (r == 0) {
    const std::int32_t ids[3] = {1, 22, 333};
    comm.send_bytes(ids, sizeof ids, 1, 5);
  } else if (r == 1) {
    std::int32_t ids[3] = {};
    comm.recv_bytes(ids, sizeof ids, 0, 5);
    CHECK(ids[0] == 1);
    CHECK(ids[2] == 333);
  }
  // A shorter message than expected is a UsageError naming both lengths.
  if (r == 0) {
    std::vector<float> ten(10, 1.0f);
    comm.send(ten.data(), ten.size(), 1, 6);
  } else if (r == 1) {
    std::vector<float> twelve(12);
    CHECK_THROWS_WITH_AS(comm.recv(twelve.data(), twelve.size(), 0, 6), doctest::Contains("expected 12 floats"),
                         weft::UsageError);
  }
  float x = 0;
  CHECK_THROWS_AS(comm.send(&x, 1, r, 0), weft::UsageError);
  CHECK_THROWS_AS(comm.send(&x, 1, w, 0), weft::UsageError);
  CHECK_THROWS_AS(comm.recv(&x, 1, -1, 0), weft::UsageError);
  comm.barrier();
}

TEST_CASE("the command channel runs the root's steps on every rank until Stop") {
  MpiCommunicator comm;
  MpiCommandChannel channel(comm);
  const int w = comm.world_size();

  // What every rank does for a step: meet the others at an all-reduce (as a model step would)
  // and fold the command into a checksum.
  std::uint64_t checksum = 0, handled = 0;
  bool step_sums_ok = true;
  auto step = [&](const StepCommand& c) {
    double token_sum = 0;
    const auto* ids = static_cast<const std::int32_t*>(c.data);
    if (c.kind == Command::Prefill || c.kind == Command::Decode)
      for (std::int64_t i = 0; i < c.count; ++i) token_sum += ids[i];
    float v[3] = {static_cast<float>(c.position), static_cast<float>(c.count), static_cast<float>(token_sum)};
    comm.all_reduce_sum(v, 3);
    step_sums_ok = step_sums_ok && v[0] == static_cast<float>(w * c.position) && v[1] == static_cast<float>(w * c.count);
    checksum = checksum * 1000003u + static_cast<std::uint64_t>(c.kind) * 7919u +
               static_cast<std::uint64_t>(c.position) * 31u + static_cast<std::uint64_t>(c.count) +
               static_cast<std::uint64_t>(token_sum);
    ++handled;
  };

  if (channel.is_root()) {
    CHECK_THROWS_AS(channel.receive(), weft::UsageError);
    channel.dispatch({Command::Reset, 0, 0, nullptr}, 0, step);
    std::vector<std::int32_t> prompt(300);  // longer than the inline payload
    std::iota(prompt.begin(), prompt.end(), 100);
    channel.dispatch({Command::Prefill, 0, 300, prompt.data()}, prompt.size() * sizeof(std::int32_t), step);
    for (int t = 0; t < 20; ++t) {
      const std::int32_t token = 1000 + t;
      channel.dispatch({Command::Decode, 300 + t, 1, &token}, sizeof token, step);
    }
    channel.dispatch({Command::Stop, 0, 0, nullptr}, 0, step);
    CHECK_THROWS_AS(channel.post({Command::Decode, -1, 1, nullptr}, 0), weft::UsageError);
  } else {
    CHECK_THROWS_AS(channel.post({Command::Decode, 0, 0, nullptr}, 0), weft::UsageError);
    const std::uint64_t n = channel.serve(step);
    CHECK(n == 23);
  }
  CHECK(handled == 23);
  CHECK(channel.commands() == 23);
  CHECK(step_sums_ok);
  // Every rank ran the same commands with the same payloads.
  std::vector<float> sums(static_cast<std::size_t>(w) * 2);
  float mine[2] = {static_cast<float>(checksum % 16777216u), static_cast<float>((checksum >> 24) % 16777216u)};
  comm.all_gather(mine, 2, sums.data());
  for (int r = 1; r < w; ++r) {
    CHECK(sums[static_cast<std::size_t>(2 * r)] == sums[0]);
    CHECK(sums[static_cast<std::size_t>(2 * r + 1)] == sums[1]);
  }
}

TEST_CASE("a timed-out wait names the operation, the silent rank and the timeout (throwing mode)") {
  MpiCommunicator comm;
  comm.set_timeout(std::chrono::milliseconds(300));
  comm.set_timeout_action(weft::par::MpiTimeoutAction::Throw);
  if (comm.rank() == 0) {
    float x = 0;
    const auto start = std::chrono::steady_clock::now();
    // Rank 1 never sends with tag 77.
    const std::string want = "recv (1 floats) on rank 0 of " + std::to_string(comm.world_size()) +
                             " timed out after 0.3 s waiting for rank 1: rank 1 stopped answering or died";
    CHECK_THROWS_WITH_AS(comm.recv(&x, 1, 1, 77), doctest::Contains(want.c_str()), weft::par::MpiError);
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(took >= std::chrono::milliseconds(290));
    CHECK(took < std::chrono::seconds(3));
  }
  comm.set_timeout(std::chrono::seconds(20));
  comm.barrier();
}

TEST_CASE("WEFT_MPI_TIMEOUT sets the default timeout in seconds") {
  const char* old = std::getenv("WEFT_MPI_TIMEOUT");
  const std::string saved = old != nullptr ? old : "";
  ::unsetenv("WEFT_MPI_TIMEOUT");
  CHECK(MpiCommunicator::default_timeout() == std::chrono::seconds(60));
  ::setenv("WEFT_MPI_TIMEOUT", "2.5", 1);
  CHECK(MpiCommunicator::default_timeout() == std::chrono::milliseconds(2500));
  ::setenv("WEFT_MPI_TIMEOUT", "0", 1);
  CHECK(MpiCommunicator::default_timeout() == std::chrono::milliseconds(0));
  ::setenv("WEFT_MPI_TIMEOUT", "soon", 1);
  CHECK_THROWS_WITH_AS(MpiCommunicator::default_timeout(), doctest::Contains("WEFT_MPI_TIMEOUT"), weft::UsageError);
  ::setenv("WEFT_MPI_TIMEOUT", "-1", 1);
  CHECK_THROWS_AS(MpiCommunicator::default_timeout(), weft::UsageError);
  if (old != nullptr) ::setenv("WEFT_MPI_TIMEOUT", saved.c_str(), 1);
  else ::unsetenv("WEFT_MPI_TIMEOUT");
}

TEST_CASE("WEFT_MPI_SPIN_US sets how long waits poll before sleeping") {
  const char* old = std::getenv("WEFT_MPI_SPIN_US");
  const std::string saved = old != nullptr ? old : "";
  ::unsetenv("WEFT_MPI_SPIN_US");
  CHECK(MpiCommunicator::default_spin() == std::chrono::milliseconds(1));
  ::setenv("WEFT_MPI_SPIN_US", "0", 1);
  CHECK(MpiCommunicator::default_spin() == std::chrono::nanoseconds(0));
  ::setenv("WEFT_MPI_SPIN_US", "1.5", 1);
  CHECK_THROWS_WITH_AS(MpiCommunicator::default_spin(), doctest::Contains("WEFT_MPI_SPIN_US"), weft::UsageError);
  if (old != nullptr) ::setenv("WEFT_MPI_SPIN_US", saved.c_str(), 1);
  else ::unsetenv("WEFT_MPI_SPIN_US");
}

int main(int argc, char** argv) { return weft::testing::run_doctest_under_mpi(argc, argv, "test_mpi", false); }
