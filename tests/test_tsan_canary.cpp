// ThreadSanitizer builds only (scripts/sanitize.sh tsan): a race planted between two ranks' steps
// must still be reported with tests/tsan.supp in force. A rank's step runs inside its oneTBB
// arena (task_arena::execute), so its stack holds oneTBB frames; suppression lines that match any
// oneTBB frame (the whole library, the tbb:: namespace, every oneTBB header) hide such races, and
// did until this test. The lines may name oneTBB's parallel-loop machinery only.
#include <string>

#include "parallel/rank_group.hpp"
#include "testing.hpp"

namespace {
int g_shared = 0;  // written by rank 1 and read by rank 0 in the same step, with nothing between
}  // namespace

// Skipped in the ordinary run; the canary below runs it in a child process.
TEST_CASE("planted race: two ranks' steps touch one int without synchronization" * doctest::skip()) {
  weft::par::RankGroup group(2, 1);
  long seen = 0;
  for (int step = 0; step < 100; ++step) {
    group.run([&](int r) {
      if (r == 1)
        g_shared = step;
      else
        seen += g_shared;
    });
  }
  MESSAGE("rank 0 read a sum of " << seen);
}

TEST_CASE("ThreadSanitizer reports a race between rank steps through the suppressions") {
  // The child inherits TSAN_OPTIONS (suppressions, halt_on_error) from scripts/sanitize.sh.
  const weft::testing::CommandResult r =
      weft::testing::run_command("/proc/" + std::to_string(::getpid()) + "/exe --no-skip --test-case='planted race*'");
  CAPTURE(r.err);
  CHECK(r.err.find("WARNING: ThreadSanitizer: data race") != std::string::npos);
  CHECK(r.err.find("test_tsan_canary.cpp") != std::string::npos);
  CHECK(r.code != 0);
}
