#include "parallel/exec_context.hpp"

#include <oneapi/tbb/info.h>

namespace weft::par {

namespace {
int resolve_threads(int threads) {
  return threads > 0 ? threads : std::max(1, tbb::info::default_concurrency());
}
}  // namespace

ExecContext::ExecContext(int threads) : threads_(resolve_threads(threads)), arena_(threads_) {}

std::int64_t ExecContext::row_chunk(std::int64_t rows, std::int64_t row_bytes) const noexcept {
  constexpr std::int64_t kMinChunkBytes = 16 * 1024;  // below this, scheduling costs more than it saves
  const std::int64_t by_threads = (rows + 4 * threads_ - 1) / (4 * threads_);
  const std::int64_t by_bytes = (kMinChunkBytes + row_bytes - 1) / std::max<std::int64_t>(1, row_bytes);
  return std::max<std::int64_t>({1, by_threads, std::min(by_bytes, rows)});
}

}  // namespace weft::par
