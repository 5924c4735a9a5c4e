// `weft quantize`: any checkpoint weft loads, written as a GGUF v3 file with a chosen weight type.
#include "weft/quantize.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <vector>

#include "core/dtype.hpp"
#include "io/gguf.hpp"
#include "io/weight_names.hpp"
#include "model/gguf_model.hpp"
#include "model/weights.hpp"
#include "parallel/exec_context.hpp"
#include "weft/error.hpp"

// The block-quantized formats come from core/quant.hpp (quantize_row / dequantize_row); until that
// header exists only the plain types can be converted.
#if __has_include("core/quant.hpp")
#include "core/quant.hpp"
#define WEFT_HAVE_QUANT 1
#else
#define WEFT_HAVE_QUANT 0
#endif

namespace weft {

namespace {

using io::WeightRole;
using model::MistralConfig;

struct TypePlan {
  DType base;           // most matrices
  bool k_mix = false;   // q4_k_m: Q6_K for output, and attn_v / ffn_down in some layers
  std::uint32_t file_type;  // general.file_type, llama.cpp's numbering
};

TypePlan parse_type(const std::string& t) {
  std::string s = t;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (s == "f32") return {DType::F32, false, 0};
  if (s == "f16") return {DType::F16, false, 1};
  if (s == "bf16") return {DType::BF16, false, 32};
  if (s == "q8_0") return {DType::Q8_0, false, 7};
  if (s == "q4_0") return {DType::Q4_0, false, 2};
  if (s == "q4_k") return {DType::Q4_K, false, 14};  // llama.cpp calls the pure Q4_K file Q4_K_S
  if (s == "q6_k") return {DType::Q6_K, false, 18};
  if (s == "q4_k_m") return {DType::Q4_K, true, 15};
  throw UsageError("quantize: unknown type \"" + t + "\" (expected one of f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, q4_k_m)");
}

// Layers that get more bits in the q4_k_m mix: the first and last eighth, and every third layer
// between them. Those layers' attn_v and ffn_down matter most for quality (measured by
// llama.cpp's authors on perplexity); everything else stays Q4_K.
bool more_bits_layer(int layer, int n_layers) {
  const int eighth = n_layers / 8;
  return layer < eighth || layer >= n_layers - eighth || (layer - eighth) % 3 == 2;
}

// One tensor to write: where it comes from and what it becomes.
struct Job {
  std::string name;
  TensorView src;      // in weft's layout (q/k rows in half-split order)
  DType dtype;         // written type
  bool rope_rows = false;  // q/k: rows go to the interleaved order
  int head_dim = 0;
  std::vector<std::int64_t> shape;
};

// src row widened to f32. Plain types inline; block types through core/quant.hpp.
void row_to_f32(const TensorView& v, std::int64_t r, float* out) {
  const std::byte* p = v.row(r);
  const auto n = static_cast<std::size_t>(v.cols);
  switch (v.dtype) {
    case DType::F32: std::memcpy(out, p, n * 4); return;
    case DType::F16:
    case DType::BF16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = v.dtype == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
      }
      return;
    default:
#if WEFT_HAVE_QUANT
      dequantize_row(v.dtype, p, v.cols, out);
      return;
#else
      throw UsageError("quantize: reading " + std::string(dtype_name(v.dtype)) +
                       " weights needs the quantized formats (core/quant.hpp), which this build lacks");
#endif
  }
}

void f32_to_row(DType t, const float* src, std::int64_t n, std::byte* dst) {
  switch (t) {
    case DType::F32: std::memcpy(dst, src, static_cast<std::size_t>(n) * 4); return;
    case DType::F16:
    case DType::BF16:
      for (std::int64_t i = 0; i < n; ++i) {
        const std::uint16_t h = t == DType::F16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    default:
#if WEFT_HAVE_QUANT
      quantize_row(t, src, n, dst);
      return;
#else
      throw UsageError("quantize: writing " + std::string(dtype_name(t)) +
                       " needs the quantized formats (core/quant.hpp), which this build lacks");
#endif
  }
}

// The type a matrix is written in: the plan's, unless its rows do not split into whole blocks.
DType matrix_type(DType want, std::int64_t cols, std::size_t& fallbacks) {
  if (cols % static_cast<std::int64_t>(dtype_block_size(want)) == 0) return want;
  ++fallbacks;
  return cols % static_cast<std::int64_t>(dtype_block_size(DType::Q8_0)) == 0 ? DType::Q8_0 : DType::F16;
}

}  // namespace

QuantizeSummary quantize_model(const std::string& in, const std::string& out, const QuantizeOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const TypePlan plan = parse_type(options.type);
  if (out.empty()) throw UsageError("quantize: no output path");
  std::error_code ec;
  if (std::filesystem::exists(in, ec) && std::filesystem::equivalent(in, out, ec))
    throw UsageError("quantize: the output " + out + " is the input");

  const model::LoadedModel m = model::load_model(in, options.tokenizer_path, true);
  const MistralConfig& c = m.config;
  const model::MistralWeights& w = m.weights;
  QuantizeSummary summary;

  // Tensors in llama.cpp's usual order: embedding, the layers, final norm, output.
  std::vector<Job> jobs;
  const auto add = [&](WeightRole role, int layer, const TensorView& v) {
    const io::WeightName& n = io::weight_name(role);
    Job j;
    j.name = n.per_layer ? io::layer_name(n.gguf, layer) : std::string(n.gguf);
    j.src = v;
    j.shape = v.ndim == 1 ? std::vector<std::int64_t>{v.cols} : std::vector<std::int64_t>{v.rows, v.cols};
    if (v.ndim == 1) {
      j.dtype = DType::F32;
    } else {
      DType want = plan.base;
      if (plan.k_mix && (role == WeightRole::Output ||
                         ((role == WeightRole::Wv || role == WeightRole::WDown) && more_bits_layer(layer, c.n_layers))))
        want = DType::Q6_K;
      j.dtype = matrix_type(want, v.cols, summary.fallbacks);
    }
    if (role == WeightRole::Wq || role == WeightRole::Wk) {
      j.rope_rows = true;
      j.head_dim = c.head_dim;
    }
    summary.bytes_in += v.bytes();
    jobs.push_back(std::move(j));
  };
  add(WeightRole::TokenEmbedding, -1, w.embedding);
  for (int l = 0; l < c.n_layers; ++l) {
    const model::LayerWeights& L = w.layers[static_cast<std::size_t>(l)];
    add(WeightRole::AttnNorm, l, L.attn_norm);
    add(WeightRole::Wq, l, L.wq);
    add(WeightRole::Wk, l, L.wk);
    add(WeightRole::Wv, l, L.wv);
    add(WeightRole::Wo, l, L.wo);
    add(WeightRole::FfnNorm, l, L.ffn_norm);
    add(WeightRole::WGate, l, L.w_gate);
    add(WeightRole::WUp, l, L.w_up);
    add(WeightRole::WDown, l, L.w_down);
  }
  add(WeightRole::OutputNorm, -1, w.final_norm);
  if (w.lm_head.data != w.embedding.data) add(WeightRole::Output, -1, w.lm_head);

  io::GgufWriter writer(out);
  writer.add_string("general.name", std::filesystem::path(in).filename().string());
  writer.add_u32("general.file_type", plan.file_type);
  writer.add_u32("general.quantization_version", 2);
  model::write_gguf_metadata(writer, c, m.tokenizer.get());
  std::vector<std::size_t> sizes;
  for (const Job& j : jobs) sizes.push_back(writer.add_tensor(j.name, j.dtype, j.shape));

  // Rows are converted independently (each output row depends on its source row alone), so the
  // threads' shares of a matrix give the same bytes as one thread. The k-quants' scale search
  // makes this most of the time: TinyLlama-1.1B's shape to Q4_K took 160 s on one thread.
  par::ExecContext exec(options.threads);
  std::vector<std::byte> buf;
  std::size_t done = 0;
  for (std::size_t k = 0; k < jobs.size(); ++k) {
    const Job& j = jobs[k];
    buf.assign(sizes[k], std::byte{0});
    const std::size_t out_row = sizes[k] / static_cast<std::size_t>(j.src.rows);
    const auto convert = [&](std::int64_t begin, std::int64_t end) {
      std::vector<float> row(j.dtype == j.src.dtype ? 0 : static_cast<std::size_t>(j.src.cols));
      for (std::int64_t r = begin; r < end; ++r) {
        const std::int64_t from = j.rope_rows ? model::rope_source_row(r, j.head_dim, model::RopeRowOrder::Interleaved) : r;
        std::byte* dst = buf.data() + static_cast<std::size_t>(r) * out_row;
        if (j.src.dtype == j.dtype) {
          std::memcpy(dst, j.src.row(from), out_row);  // same type: bytes as they are
        } else {
          row_to_f32(j.src, from, row.data());
          f32_to_row(j.dtype, row.data(), j.src.cols, dst);
        }
      }
    };
    exec.parallel_for(j.src.rows, exec.row_chunk(j.src.rows, static_cast<std::int64_t>(j.src.row_bytes())), convert);
    writer.write_tensor(buf);
    done += j.src.bytes();
    if (options.progress) options.progress(done, summary.bytes_in);
  }
  writer.finish();
  summary.tensors = jobs.size();
  summary.bytes_out = static_cast<std::size_t>(std::filesystem::file_size(out, ec));
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace weft
