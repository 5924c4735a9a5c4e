// doctest main for weft's tests. Executables built with WEFT_NEEDS_SHARED skip (exit 77, which
// meson reports as SKIP) when ../shared is absent, e.g. on a user's fresh clone.
#define DOCTEST_CONFIG_IMPLEMENT
#include <cstdio>

#include "testing.hpp"

int main(int argc, char** argv) {
#ifdef WEFT_NEEDS_SHARED
  if (!weft::testing::have_shared()) {
    std::fprintf(stderr, "SKIP: %s not found; this test needs ../shared (models and golden outputs)\n",
                 weft::testing::shared_dir().string().c_str());
    return 77;
  }
#endif
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
