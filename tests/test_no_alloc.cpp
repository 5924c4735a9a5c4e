// The decode path allocates nothing: every malloc-family call in the process is counted (this
// executable interposes glibc's allocator), including oneTBB's, and a decode step after warm-up
// must add none.
#include <atomic>
#include <cstdlib>
#include <malloc.h>

#include <vector>

#include "testing.hpp"
#include "weft/weft.hpp"

// Sanitizers bring their own allocator; under them this test has nothing to count.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WEFT_COUNT_ALLOCATIONS 0
#else
#define WEFT_COUNT_ALLOCATIONS 1
#endif

// Declared in every build: the test cases use them (and skip) under sanitizers too.
namespace {
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
[[maybe_unused]] void note() {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

#if WEFT_COUNT_ALLOCATIONS
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
}

extern "C" {
void* malloc(std::size_t n) {
  note();
  return __libc_malloc(n);
}
void* calloc(std::size_t a, std::size_t b) {
  note();
  return __libc_calloc(a, b);
}
void* realloc(void* p, std::size_t n) {
  note();
  return __libc_realloc(p, n);
}
void* aligned_alloc(std::size_t a, std::size_t n) {
  note();
  return __libc_memalign(a, n);
}
void* memalign(std::size_t a, std::size_t n) {
  note();
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, std::size_t a, std::size_t n) {
  note();
  *out = __libc_memalign(a, n);
  return *out ? 0 : 12;
}
}
#endif

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
