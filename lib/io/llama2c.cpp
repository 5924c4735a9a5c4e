#include "io/llama2c.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "weft/error.hpp"

namespace weft::io {

// The header and the weights are used in place, as the host's own int32 and float.
static_assert(std::endian::native == std::endian::little, "llama2.c checkpoints are little-endian");

namespace {
constexpr std::size_t kHeaderBytes = 7 * sizeof(std::int32_t);

struct Shape {
  std::uint64_t rows, cols;  // of one layer's tensor when the role is per-layer
  int ndim;
};

Shape role_shape(const Llama2cConfig& c, WeightRole role) {
  const std::uint64_t dim = c.dim, hidden = c.hidden_dim, vocab = c.vocab_size;
  const std::uint64_t kv_dim = dim / c.n_heads * c.n_kv_heads;
  switch (role) {
    case WeightRole::TokenEmbedding:
    case WeightRole::Output: return {vocab, dim, 2};
    case WeightRole::AttnNorm:
    case WeightRole::FfnNorm:
    case WeightRole::OutputNorm: return {1, dim, 1};
    case WeightRole::Wq:
    case WeightRole::Wo: return {dim, dim, 2};
    case WeightRole::Wk:
    case WeightRole::Wv: return {kv_dim, dim, 2};
    case WeightRole::WGate:
    case WeightRole::WUp: return {hidden, dim, 2};
    case WeightRole::WDown: return {dim, hidden, 2};
  }
  return {0, 0, 0};
}

// a * b * c, or nullopt on overflow.
std::optional<std::uint64_t> product(std::uint64_t a, std::uint64_t b, std::uint64_t c = 1) {
  std::uint64_t ab = 0, abc = 0;
  if (__builtin_mul_overflow(a, b, &ab) || __builtin_mul_overflow(ab, c, &abc)) return std::nullopt;
  return abc;
}
}  // namespace

Llama2cCheckpoint::Llama2cCheckpoint(const std::string& path) : file_(path) {
  const auto fail = [&](const std::string& what) { throw InputError(path + ": " + what); };
  const std::span<const std::byte> bytes = file_.bytes();
  if (bytes.size() < kHeaderBytes) {
    fail("truncated: expected at least " + std::to_string(kHeaderBytes) + " bytes of llama2.c header, file has " +
         std::to_string(bytes.size()));
  }
  std::int32_t h[7];
  std::memcpy(h, bytes.data(), kHeaderBytes);
  const char* names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
  for (int i = 0; i < 7; ++i) {
    if (h[i] == 0 || (h[i] < 0 && i != 5) || h[i] == INT32_MIN)
      fail(std::string("header: ") + names[i] + " is " + std::to_string(h[i]) + ", expected a positive value");
  }
  Llama2cConfig& c = config_;
  c = Llama2cConfig{h[0], h[1], h[2], h[3], h[4], h[5] < 0 ? -h[5] : h[5], h[6], h[5] > 0};
  if (c.dim % c.n_heads != 0)
    fail("header: dim " + std::to_string(c.dim) + " is not divisible by n_heads " + std::to_string(c.n_heads));
  if (c.n_heads % c.n_kv_heads != 0) {
    fail("header: n_heads " + std::to_string(c.n_heads) + " is not divisible by n_kv_heads " +
         std::to_string(c.n_kv_heads));
  }
  const std::uint64_t head_size = static_cast<std::uint64_t>(c.dim / c.n_heads);
  if (head_size % 2 != 0) fail("header: head size " + std::to_string(head_size) + " is odd; RoPE rotates pairs");

  // Walk the tensors in file order, adding up their sizes with overflow checks.
  std::vector<WeightName> order(weight_names().begin(), weight_names().end());
  std::sort(order.begin(), order.end(), [](auto& a, auto& b) { return a.llama2c_order < b.llama2c_order; });
  std::uint64_t pos = kHeaderBytes;
  bool overflow = false;
  const auto advance = [&](std::optional<std::uint64_t> n) {
    overflow = overflow || !n || __builtin_add_overflow(pos, *n, &pos);
  };
  for (const WeightName& n : order) {
    if (n.role == WeightRole::Output && c.shared_classifier) continue;
    offset_.at(static_cast<std::size_t>(n.llama2c_order)) = static_cast<std::size_t>(pos);
    const Shape s = role_shape(c, n.role);
    const auto one = product(s.rows, s.cols, sizeof(float));
    advance(one ? product(*one, n.per_layer ? c.n_layers : 1) : std::nullopt);
    // The unused RoPE tables (freq_cis_real, freq_cis_imag) sit between the final norm and wcls.
    if (n.role == WeightRole::OutputNorm) advance(product(2 * static_cast<std::uint64_t>(c.seq_len), head_size / 2, 4));
  }
  if (overflow || pos > SIZE_MAX) fail("header values imply a checkpoint too large to address");
  if (bytes.size() < pos)
    fail("truncated: expected " + std::to_string(pos) + " bytes, file has " + std::to_string(bytes.size()));
  if (bytes.size() > pos) {
    fail("expected " + std::to_string(pos) + " bytes, file has " + std::to_string(bytes.size()) +
         " (extra data: not a llama2.c legacy checkpoint, or its header is wrong)");
  }
}

TensorView Llama2cCheckpoint::tensor(WeightRole role, int layer) const {
  const WeightName& n = weight_name(role);
  if (n.per_layer ? (layer < 0 || layer >= config_.n_layers) : layer != -1) {
    throw UsageError(path() + ": layer " + std::to_string(layer) + " does not fit " + std::string(n.hf) + " (" +
                     std::to_string(config_.n_layers) + " layers; -1 for global tensors)");
  }
  if (role == WeightRole::Output && config_.shared_classifier) return {};
  const Shape s = role_shape(config_, role);
  const std::size_t layer_bytes = static_cast<std::size_t>(s.rows * s.cols * sizeof(float));
  const std::byte* p = file_.bytes().data() + offset_[static_cast<std::size_t>(n.llama2c_order)] +
                       (n.per_layer ? static_cast<std::size_t>(layer) * layer_bytes : 0);
  const auto rows = static_cast<std::int64_t>(s.rows), cols = static_cast<std::int64_t>(s.cols);
  return s.ndim == 1 ? make_view_1d(p, DType::F32, cols) : make_view_2d(p, DType::F32, rows, cols);
}

}  // namespace weft::io
