// `weft quantize IN OUT --type TYPE`: any checkpoint weft loads, written as a GGUF file.
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "commands.hpp"
#include "weft/weft.hpp"

namespace weft::cli {

namespace {

std::string human_bytes(std::size_t b) {
  char buf[32];
  const double x = static_cast<double>(b);
  if (x >= 1e9) std::snprintf(buf, sizeof buf, "%.2f GB", x / 1e9);
  else if (x >= 1e6) std::snprintf(buf, sizeof buf, "%.2f MB", x / 1e6);
  else if (x >= 1e3) std::snprintf(buf, sizeof buf, "%.1f kB", x / 1e3);
  else std::snprintf(buf, sizeof buf, "%zu B", b);
  return buf;
}

// A progress bar on stderr: one line redrawn with \r on a terminal; otherwise a line at every
// further 10% (logs and pipes get a handful of lines, not thousands of carriage returns).
class Progress {
 public:
  Progress() : tty_(::isatty(::fileno(stderr)) == 1) {}
  void update(std::size_t done, std::size_t total) {
    const int pct = total == 0 ? 100 : static_cast<int>(100.0 * static_cast<double>(done) / static_cast<double>(total));
    if (tty_) {
      constexpr int kWidth = 30;
      const int filled = pct * kWidth / 100;
      std::fprintf(stderr, "\rquantize: [%.*s%*s] %3d%%  %s / %s", filled, "##############################",
                   kWidth - filled, "", pct, human_bytes(done).c_str(), human_bytes(total).c_str());
      if (done >= total) std::fputc('\n', stderr);
      std::fflush(stderr);
    } else if (pct >= next_ || done >= total) {
      std::fprintf(stderr, "quantize: %3d%%  %s / %s\n", pct, human_bytes(done).c_str(), human_bytes(total).c_str());
      while (next_ <= pct) next_ += 10;
    }
  }

 private:
  bool tty_;
  int next_ = 10;
};

}  // namespace

Runner add_quantize(CLI::App& app) {
  struct Args {
    std::string in, out, type = "q8_0", tokenizer;
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("quantize", "Convert a checkpoint (HF directory, GGUF, llama2.c .bin) to a GGUF file");
  sub->add_option("input", a->in, "checkpoint to read: a Hugging Face directory, a .gguf or a llama2.c .bin")->required();
  sub->add_option("output", a->out, "GGUF file to write")->required();
  sub->add_option("--type", a->type,
                  "weight type: q8_0, q4_0, q4_k, q6_k, q4_k_m (Q4_K with Q6_K for output, and attn_v/ffn_down "
                  "in some layers), bf16, f16, f32; norms stay f32")
      ->capture_default_str();
  sub->add_option("-z,--tokenizer", a->tokenizer, "tokenizer to embed (tokenizer.model or a llama2.c tokenizer.bin)");
  sub->add_option("-t,--threads", a->threads, "threads converting rows (0: all hardware threads)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  return [a] {
    Progress bar;
    QuantizeOptions o;
    o.type = a->type;
    o.tokenizer_path = a->tokenizer;
    o.threads = a->threads;
    o.progress = [&bar](std::size_t done, std::size_t total) { bar.update(done, total); };
    const QuantizeSummary s = quantize_model(a->in, a->out, o);
    std::fprintf(stderr,
                 "quantize: wrote %s: %zu tensors, %s in, %s out (ratio %.2f), %.2f s%s\n", a->out.c_str(), s.tensors,
                 human_bytes(s.bytes_in).c_str(), human_bytes(s.bytes_out).c_str(),
                 s.bytes_out == 0 ? 0.0 : static_cast<double>(s.bytes_in) / static_cast<double>(s.bytes_out), s.seconds,
                 s.fallbacks == 0 ? "" : (", " + std::to_string(s.fallbacks) + " matrices in a fallback type (rows not a whole number of blocks)").c_str());
    return 0;
  };
}

}  // namespace weft::cli
