#include "parallel/exec_context.hpp"

#include <oneapi/tbb/info.h>

#include <algorithm>

namespace weft::par {

namespace {
int resolve_threads(int threads) {
  return threads > 0 ? threads : std::max(1, tbb::info::default_concurrency());
}
}  // namespace

ExecContext::ExecContext(int threads)
    : threads_(resolve_threads(threads)),
      shares_(std::make_unique<Share[]>(static_cast<std::size_t>(threads_))),
      arena_(threads_),
      stats_(threads_) {}

std::int64_t ExecContext::row_chunk(std::int64_t rows, std::int64_t row_bytes) const noexcept {
  return plan_chunks(WorkDistributionConfig{}, {.rows = rows, .row_bytes = row_bytes}, threads_).chunk();
}

}  // namespace weft::par
