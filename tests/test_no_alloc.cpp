// The decode path allocates nothing: every malloc-family call in the process is counted (this
// executable interposes glibc's allocator), including oneTBB's, and a decode step after warm-up
// must add none.
#include <cstdlib>
#include <vector>

#include "alloc_counter.hpp"
#include "testing.hpp"
#include "weft/weft.hpp"

using weft::testing::allocations;
using weft::testing::counting;

using namespace weft;

TEST_CASE("the counter sees allocations") {
  if (!WEFT_COUNT_ALLOCATIONS) {
    MESSAGE("SKIP: built with a sanitizer, which owns the allocator");
    return;
  }
  counting = true;
  void* volatile p = std::malloc(100);  // volatile: the compiler may not elide the pair
  int* volatile q = new int[10];
  std::vector<float> v(1000);
  counting = false;
  std::free(p);
  delete[] q;
  CHECK(v.size() == 1000);
  CHECK(allocations.exchange(0) >= 3);
}

TEST_CASE("decode allocates nothing after warm-up, at 1 and 2 threads") {
  if (!WEFT_COUNT_ALLOCATIONS) return;
  for (const char* path : {"models/tiny-mistral", "models/stories260K.bin"}) {
    auto model = Model::load((weft::testing::shared_dir() / path).string());
    for (int threads : {1, 2}) {
      CAPTURE(path);
      CAPTURE(threads);
      Context ctx(threads);
      Session s(model, ctx);
      const std::vector<std::int32_t> prompt = {1, 20, 30, 40, 50, 60, 70, 80, 90, 100};
      s.prefill(prompt);
      for (int i = 0; i < 8; ++i) s.decode(5 + i);  // warm-up: threads started, pools filled
      allocations = 0;
      counting = true;
      for (int i = 0; i < 64; ++i) s.decode(17 + i);
      counting = false;
      CHECK(allocations.load() == 0);
    }
  }
}
