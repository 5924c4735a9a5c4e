#pragma once
// main() for doctest programs that run under mpirun: every process runs the same test cases in the
// same order (so the collectives inside them match) and checks its own results; only process 0
// prints doctest's summary, and the run passes only if every process passed. Include it in the
// program's one file that defines DOCTEST_CONFIG_IMPLEMENT, then
//   int main(int argc, char** argv) { return weft::testing::run_doctest_under_mpi(argc, argv, "test_x", false); }
#include <mpi.h>

#include <cstdio>

#include "parallel/mpi_communicator.hpp"
#include "testing.hpp"

namespace weft::testing {

// needs_shared: the cases read ../shared; without it every process skips (exit 77, meson's SKIP).
inline int run_doctest_under_mpi(int argc, char** argv, const char* name, bool needs_shared) {
  par::MpiRuntime mpi(&argc, &argv);
  if (needs_shared && !have_shared()) {
    if (mpi.is_root())
      std::fprintf(stderr, "SKIP: %s not found; %s needs ../shared (models)\n", shared_dir().string().c_str(), name);
    return 77;
  }
  doctest::Context ctx(argc, argv);
  ctx.setOption("no-colors", true);                    // mpirun forwards the output through a pseudo-terminal
  if (!mpi.is_root()) ctx.setOption("minimal", true);  // failures only: one summary per run
  const int failed = ctx.run() != 0 ? 1 : 0;
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (any && mpi.is_root() && !failed) std::fprintf(stderr, "%s: another process failed (see its output above)\n", name);
  if (ctx.shouldExit()) return failed;
  return any;
}

}  // namespace weft::testing
