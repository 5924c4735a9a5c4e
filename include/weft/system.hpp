#pragma once
// Facts about the machine weft runs on. A STREAM-like read-bandwidth probe: the ceiling a
// memory-bound decode step can reach.
#include <cstddef>

namespace weft {

struct ReadBandwidth {
  int threads = 0;
  std::size_t bytes = 0;   // buffer size read per repetition
  bool huge_pages = false; // the buffer was advised to use transparent huge pages
  double best_gbs = 0;     // fastest repetition, GB/s (1e9 bytes)
  double median_gbs = 0;   // median repetition, GB/s
};

// Reads a `bytes` buffer (each thread its own contiguous slice, first-touched by that thread)
// `repeats` times with `threads` threads and reports GB/s. Allocates and frees the buffer;
// takes a few hundred milliseconds for a 1 GiB buffer. Throws std::bad_alloc when the buffer
// cannot be allocated.
ReadBandwidth measure_read_bandwidth(int threads, std::size_t bytes, bool huge_pages, int repeats);

}  // namespace weft
