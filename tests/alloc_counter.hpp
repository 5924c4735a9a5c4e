#pragma once
// Counts every malloc-family call in the process while `counting` is set: the executable that
// includes this header (in exactly one of its files) interposes glibc's allocator, so oneTBB's
// and Open MPI's allocations count too. Sanitizers bring their own allocator; under them nothing
// is interposed and WEFT_COUNT_ALLOCATIONS is 0 (tests that count then skip).
#include <malloc.h>

#include <atomic>
#include <cstddef>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WEFT_COUNT_ALLOCATIONS 0
#else
#define WEFT_COUNT_ALLOCATIONS 1
#endif

namespace weft::testing {
inline std::atomic<bool> counting{false};
inline std::atomic<long> allocations{0};
inline void note_allocation() noexcept {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace weft::testing

#if WEFT_COUNT_ALLOCATIONS
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void* malloc(std::size_t n) {
  weft::testing::note_allocation();
  return __libc_malloc(n);
}
void* calloc(std::size_t a, std::size_t b) {
  weft::testing::note_allocation();
  return __libc_calloc(a, b);
}
void* realloc(void* p, std::size_t n) {
  weft::testing::note_allocation();
  return __libc_realloc(p, n);
}
void* aligned_alloc(std::size_t a, std::size_t n) {
  weft::testing::note_allocation();
  return __libc_memalign(a, n);
}
void* memalign(std::size_t a, std::size_t n) {
  weft::testing::note_allocation();
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, std::size_t a, std::size_t n) {
  weft::testing::note_allocation();
  *out = __libc_memalign(a, n);
  return *out ? 0 : 12;
}
}
#endif
