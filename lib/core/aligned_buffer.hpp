#pragma once
// Owning, 64-byte aligned, zero-initialised storage for activations and converted weights.
#include <sys/mman.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <span>

namespace weft {

inline constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

// `bytes` (rounded up to whole 2 MiB pages), 2 MiB aligned and advised for transparent huge pages
// before anything touches it; a refusal changes nothing. Free with std::free. For buffers a decode
// step streams: with 4 KiB pages a stream takes a TLB miss every 4 KiB.
inline void* allocate_huge_pages(std::size_t bytes) {
  const std::size_t rounded = (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  void* p = std::aligned_alloc(kHugePageBytes, rounded);
  if (p == nullptr) throw std::bad_alloc();
  ::madvise(p, rounded, MADV_HUGEPAGE);
  return p;
}

template <class T>
class AlignedBuffer {
 public:
  static constexpr std::size_t kAlignment = 64;
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t n) { resize(n); }

  // Replaces the contents with n zeroed elements. Not for the hot path: it allocates. With
  // huge_pages, a buffer of 2 MiB or more comes from allocate_huge_pages.
  void resize(std::size_t n, bool huge_pages = false) {
    if (n == 0) {
      data_.reset();
      size_ = 0;
      return;
    }
    const bool huge = huge_pages && n * sizeof(T) >= kHugePageBytes;
    const std::size_t align = huge ? kHugePageBytes : kAlignment;
    const std::size_t bytes = (n * sizeof(T) + align - 1) / align * align;
    void* p = huge ? allocate_huge_pages(bytes) : std::aligned_alloc(align, bytes);
    if (p == nullptr) throw std::bad_alloc();
    std::memset(p, 0, bytes);
    data_.reset(static_cast<T*>(p));
    size_ = n;
  }
  T* data() noexcept { return data_.get(); }
  const T* data() const noexcept { return data_.get(); }
  std::size_t size() const noexcept { return size_; }
  T& operator[](std::size_t i) noexcept { return data_.get()[i]; }
  const T& operator[](std::size_t i) const noexcept { return data_.get()[i]; }
  std::span<T> span() noexcept { return {data_.get(), size_}; }
  std::span<const T> span() const noexcept { return {data_.get(), size_}; }

 private:
  struct Free {
    void operator()(T* p) const noexcept { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  std::size_t size_ = 0;
};

}  // namespace weft
