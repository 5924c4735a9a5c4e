// `weft generate`: stream generated text to stdout, timings to stderr.
#include <chrono>
#include <cstdio>
#include <random>

#include "commands.hpp"
#include "weft/weft.hpp"

namespace weft::cli {

namespace {
struct GenerateArgs {
  std::string model, tokenizer, prompt;
  int n = 128, threads = 0, context = 0;
  bool echo = false, no_mmap = false;
  SamplerOptions sampler;
  std::int64_t seed = -1;
};
}  // namespace

Runner add_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* sub = app.add_subcommand("generate", "Generate text from a prompt (text to stdout, timings to stderr)");
  sub->add_option("-m,--model", a->model, "Hugging Face directory or llama2.c .bin")->required();
  sub->add_option("-z,--tokenizer", a->tokenizer, "tokenizer.model or llama2.c tokenizer.bin (default: the model's)");
  sub->add_option("-p,--prompt", a->prompt, "prompt text")->required();
  sub->add_option("-n,--n-predict", a->n, "tokens to generate")->check(CLI::Range(0, 1 << 24))->capture_default_str();
  sub->add_option("-t,--threads", a->threads, "threads (0: all hardware threads)")->check(CLI::Range(0, 1024))->capture_default_str();
  sub->add_option("-c,--context", a->context, "context length in tokens (0: the model's)")->check(CLI::Range(0, 1 << 24));
  sub->add_option("--temp", a->sampler.temperature, "temperature (0: greedy)")->check(CLI::Range(0.0, 100.0))->capture_default_str();
  sub->add_option("--top-k", a->sampler.top_k, "top-k (0: off)")->check(CLI::Range(0, 1 << 30))->capture_default_str();
  sub->add_option("--top-p", a->sampler.top_p, "top-p (1: off)")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  sub->add_option("--min-p", a->sampler.min_p, "min-p (0: off)")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  sub->add_option("--repeat-penalty", a->sampler.repeat_penalty, "repetition penalty (1: off)")->check(CLI::Range(0.0, 100.0))->capture_default_str();
  sub->add_option("--repeat-last-n", a->sampler.repeat_last_n, "tokens the penalty looks back")->check(CLI::Range(0, 1 << 24))->capture_default_str();
  sub->add_option("-s,--seed", a->seed, "random seed (-1: random)")->capture_default_str();
  sub->add_flag("--echo", a->echo, "print the prompt before the generated text");
  sub->add_flag("--no-mmap", a->no_mmap, "copy the weights into huge-page memory (slower load, faster decode)");
  return [a] {
    if (a->seed < 0) a->sampler.seed = std::random_device{}();
    else a->sampler.seed = static_cast<std::uint64_t>(a->seed);
    auto model = Model::load(a->model, {.tokenizer_path = a->tokenizer, .mmap = !a->no_mmap});
    Context ctx(a->threads);
    Session session(model, ctx, {.context = a->context});
    GenerateOptions opts;
    opts.max_tokens = a->n;
    opts.sampler = a->sampler;
    if (a->echo) {
      std::fputs(a->prompt.c_str(), stdout);
      std::fflush(stdout);
    }
    const GenerateResult r = generate(session, a->prompt, opts, [](std::string_view text) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
    });
    std::fputc('\n', stdout);
    const double pp = r.prompt_seconds > 0 ? r.prompt_ids.size() / r.prompt_seconds : 0;
    const std::size_t decoded = r.ids.empty() ? 0 : r.ids.size() - 1;  // the first id comes from the prefill
    const double tg = r.decode_seconds > 0 ? decoded / r.decode_seconds : 0;
    std::fprintf(stderr,
                 "weft: %s (%s, %s), %d threads, seed %llu\n"
                 "weft: prompt %zu tokens in %.1f ms (%.1f tokens/s); decode %zu tokens in %.1f ms "
                 "(%.1f tokens/s, %.2f ms/token)%s\n",
                 model->info().source.c_str(), model->info().architecture.c_str(), model->info().weight_dtype.c_str(),
                 ctx.threads(), static_cast<unsigned long long>(opts.sampler.seed), r.prompt_ids.size(),
                 r.prompt_seconds * 1e3, pp, decoded, r.decode_seconds * 1e3, tg,
                 decoded ? r.decode_seconds * 1e3 / decoded : 0.0,
                 r.hit_eos ? " [end of sequence]" : (r.hit_context_limit ? " [context full]" : ""));
    return 0;
  };
}

}  // namespace weft::cli
