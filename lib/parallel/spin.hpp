#pragma once
// Waiting on an atomic the way every rank primitive does: a short bounded spin (a step that
// comes back within microseconds is caught without a system call), then C++20 atomic wait,
// which sleeps in the kernel (futex) until notified. Never an unbounded busy loop.
#include <atomic>
#include <chrono>

namespace weft::par::detail {

// A hint to the core that this is a spin loop (x86 PAUSE); nothing elsewhere.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Returns once a.load() != old (acquire), spinning for at most `spin` before sleeping.
template <class T>
T wait_while_equal(const std::atomic<T>& a, T old, std::chrono::nanoseconds spin) noexcept {
  T v = a.load(std::memory_order_acquire);
  if (v != old) return v;
  if (spin.count() > 0) {
    const auto until = std::chrono::steady_clock::now() + spin;
    do {
      for (int i = 0; i < 32; ++i) {
        cpu_relax();
        if ((v = a.load(std::memory_order_acquire)) != old) return v;
      }
    } while (std::chrono::steady_clock::now() < until);
  }
  while ((v = a.load(std::memory_order_acquire)) == old) a.wait(old, std::memory_order_acquire);
  return v;
}

}  // namespace weft::par::detail
