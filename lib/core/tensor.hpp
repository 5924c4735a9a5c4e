#pragma once
// Non-owning views of tensors: a pointer, a dtype and a shape. The memory belongs to whoever
// made the view (a mapped file, an aligned buffer); views are cheap to copy.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/dtype.hpp"

namespace weft {

// A row-major tensor of at most two dimensions. A 1-D tensor has rows == 1.
struct TensorView {
  const void* data = nullptr;
  DType dtype = DType::F32;
  std::int64_t rows = 0;  // outer dimension (output features of a linear layer)
  std::int64_t cols = 0;  // inner, contiguous dimension (input features)
  int ndim = 0;
  // 0: rows stored one after another. kInterleaveRows (core/quant.hpp, block-quantized dtypes
  // only): the first rows / 16 * 16 rows are stored in groups of 16 rows interleaved block by
  // block for the kernels, the remaining rows plainly after them. Both layouts take the same bytes
  // per group of 16 rows, so bytes() and the start of every 16th row are the same; row() is only
  // valid for plain rows (read an interleaved row with read_row).
  int interleave = 0;

  bool empty() const noexcept { return data == nullptr; }
  std::int64_t numel() const noexcept { return rows * cols; }
  std::size_t row_bytes() const noexcept { return dtype_bytes(dtype, static_cast<std::size_t>(cols)); }
  std::size_t bytes() const noexcept { return row_bytes() * static_cast<std::size_t>(rows); }
  const std::byte* row(std::int64_t r) const noexcept {
    return static_cast<const std::byte*>(data) + static_cast<std::size_t>(r) * row_bytes();
  }
  // Rows [begin, begin + count) as a view of their own (a column-parallel shard). On an
  // interleaved view begin must be a multiple of interleave, and count too unless the slice runs
  // to the last row.
  TensorView row_slice(std::int64_t begin, std::int64_t count) const noexcept {
    TensorView v = *this;
    v.data = row(begin);
    v.rows = count;
    return v;
  }
  std::span<const float> f32() const noexcept {
    return {static_cast<const float*>(data), static_cast<std::size_t>(numel())};
  }
};

inline TensorView make_view_1d(const void* data, DType t, std::int64_t n) noexcept {
  return TensorView{data, t, 1, n, 1};
}
inline TensorView make_view_2d(const void* data, DType t, std::int64_t rows, std::int64_t cols) noexcept {
  return TensorView{data, t, rows, cols, 2};
}

}  // namespace weft
