// `weft generate`: stream generated text to stdout, timings to stderr.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "commands.hpp"
#include "weft/weft.hpp"

namespace weft::cli {

namespace {
struct GenerateArgs {
  std::string model, shard_dir, tokenizer, prompt, prompts_file;
  int n = 128, threads = 0, context = 0, batch = 8, pp = 1, micro_batches = 4;
  std::string tp = "1";
  int ranks = 1;  // tensor-parallel ranks over all processes (from --tp)
  std::string topology;
  bool echo = false, no_mmap = false, no_repack = false, json = false, ignore_eos = false;
  SamplerOptions sampler;
  std::int64_t seed = -1;
};
// " in 4 tensor-parallel ranks (2 processes x 2)" for the timing line.
std::string ranks_text(int ranks) {
  if (ranks <= 1) return "";
  const int procs = processes().size();
  return " in " + std::to_string(ranks) + " tensor-parallel ranks" +
         (procs > 1 ? " (" + std::to_string(procs) + " processes x " + std::to_string(ranks / procs) + ")" : "");
}
}  // namespace

// --prompts-file: every non-empty line is a prompt; results are printed in input order as soon
// as every earlier prompt has finished, as text blocks or JSON lines.
int run_prompts_file(const GenerateArgs& a, const std::shared_ptr<const Model>& model, Context& ctx) {
  std::ifstream in(a.prompts_file);
  if (!in) throw InputError(a.prompts_file + ": cannot read the prompts file");
  std::vector<std::string> prompts;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) prompts.push_back(line);
  }
  if (prompts.empty()) throw InputError(a.prompts_file + ": the prompts file has no non-empty line");
  GenerateOptions opts;
  opts.max_tokens = a.n;
  opts.sampler = a.sampler;
  opts.stop_at_eos = !a.ignore_eos;
  int context = a.context;
  if (context == 0) {
    // Enough for the longest prompt plus the new tokens, not the model's whole context per sequence.
    const Tokenizer* tok = model->tokenizer();
    std::size_t longest = 0;
    if (tok)
      for (const std::string& p : prompts) longest = std::max(longest, tok->encode(p, true).size());
    const std::int64_t want = static_cast<std::int64_t>(longest) + a.n;
    const int max_pos = model->info().max_position > 0 ? model->info().max_position : 4096;
    context = static_cast<int>(std::clamp<std::int64_t>(want, 1, std::max(max_pos, 1)));
  }
  BatchSession batch(model, ctx, {.max_sequences = std::min<int>(a.batch, static_cast<int>(prompts.size())),
                                  .context = context, .pipeline_stages = a.pp, .micro_batches = a.micro_batches,
                                  .tp = a.ranks, .topology = a.topology, .processes = &processes()});
  std::map<std::size_t, std::string> ready;  // finished out of order, waiting for earlier prompts
  std::size_t printed = 0;
  const BatchGenerateResult r = generate_batch(batch, prompts, opts, [&](std::size_t i, const std::string& text,
                                                                        const GenerateResult& g) {
    std::string block;
    if (a.json) {
      nlohmann::ordered_json j;
      j["index"] = i;
      j["prompt"] = prompts[i];
      j["text"] = text;
      j["ids"] = g.ids;
      j["stop"] = g.hit_eos ? "eos" : (g.hit_context_limit ? "context" : "length");
      block = j.dump() + "\n";
    } else {
      block = (a.echo ? prompts[i] : std::string()) + text + "\n";
    }
    ready.emplace(i, std::move(block));
    for (auto it = ready.find(printed); it != ready.end(); it = ready.find(printed)) {
      std::fputs(it->second.c_str(), stdout);
      ready.erase(it);
      ++printed;
    }
    std::fflush(stdout);
  });
  std::fprintf(stderr,
               "weft: %s, %d threads, %d pipeline stage(s), %zu prompts in batches of %d: %lld tokens in %.1f ms "
               "(%.1f tokens/s over all sequences, %lld batched decode steps)\n",
               model->info().source.c_str(), ctx.threads(), a.pp, prompts.size(), batch.max_sequences(),
               static_cast<long long>(r.generated), r.seconds * 1e3, r.seconds > 0 ? r.generated / r.seconds : 0.0,
               static_cast<long long>(r.decode_steps));
  return 0;
}

Runner add_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* sub = app.add_subcommand("generate", "Generate text from a prompt (text to stdout, timings to stderr)");
  auto* model = sub->add_option("-m,--model", a->model, "Hugging Face directory, GGUF file, llama2.c .bin or weft shard directory");
  auto* shards = sub->add_option("--shard-dir", a->shard_dir,
                                 "a directory written by `weft shard`: each rank (and process) reads only its own shard file")
                     ->check(CLI::ExistingDirectory);
  model->excludes(shards);
  sub->add_option("-z,--tokenizer", a->tokenizer, "tokenizer.model or llama2.c tokenizer.bin (default: the model's)");
  auto* prompt = sub->add_option("-p,--prompt", a->prompt, "prompt text");
  auto* file = sub->add_option("--prompts-file", a->prompts_file,
                               "run every line of FILE as a prompt, decoded together in batches; results in input order")
                   ->check(CLI::ExistingFile);
  prompt->excludes(file);
  sub->add_option("--batch", a->batch, "with --prompts-file: sequences decoded together")
      ->check(CLI::Range(1, 1024))->capture_default_str();
  sub->add_flag("--json", a->json, "with --prompts-file: one JSON object per prompt (index, prompt, text, ids, stop)");
  sub->add_option("--pp", a->pp, "with --prompts-file: pipeline stages (contiguous layer ranges, one rank each)")
      ->check(CLI::Range(1, 1024))->capture_default_str();
  sub->add_option("--micro-batches", a->micro_batches, "with --pp: micro-batches in flight")
      ->check(CLI::Range(1, 1024))->capture_default_str();
  auto* tp = sub->add_option("--tp", a->tp,
                             "tensor-parallel ranks: every layer split over N ranks of threads/N threads each; under "
                             "mpirun N counts the ranks of all processes (default: one per process), and PxL means P "
                             "processes x L ranks each")
                 ->capture_default_str();
  sub->add_option("--topology", a->topology,
                  "with --tp: place the ranks on an hwloc synthetic topology or XML file instead of this machine (no pinning)");
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
  sub->add_flag("--ignore-eos", a->ignore_eos, "keep generating after the end-of-sequence token (until -n or the context is full)");
  sub->add_flag("--no-mmap", a->no_mmap, "copy the weights into huge-page memory (slower load, faster decode)");
  sub->add_flag("--no-repack", a->no_repack, "keep quantized weights in the file's layout (not the kernels' interleaved one)");
  return [a, prompt, tp] {
    if (a->seed < 0) a->sampler.seed = std::random_device{}();
    else a->sampler.seed = static_cast<std::uint64_t>(a->seed);
    // An explicitly empty -p "" goes on to generate(), which names the problem itself.
    if (a->prompts_file.empty() && prompt->count() == 0)
      throw UsageError("generate: give a prompt with -p/--prompt or a file of prompts with --prompts-file");
    if (a->model.empty() && a->shard_dir.empty()) throw UsageError("generate: give a model with -m/--model or --shard-dir");
    a->ranks = tensor_parallel_ranks(a->tp, tp->count() > 0, a->pp > 1);
    auto model = Model::load(a->shard_dir.empty() ? a->model : a->shard_dir,
                             {.tokenizer_path = a->tokenizer, .mmap = !a->no_mmap, .repack = !a->no_repack});
    Context ctx(a->threads);
    if (serve_if_not_root(model, ctx)) return 0;
    if (!a->prompts_file.empty()) return run_prompts_file(*a, model, ctx);
    if (a->pp > 1) throw UsageError("generate: --pp needs --prompts-file (pipelining helps only many sequences)");
    Session session(model, ctx, {.context = a->context, .tp = a->ranks, .topology = a->topology, .processes = &processes()});
    GenerateOptions opts;
    opts.max_tokens = a->n;
    opts.sampler = a->sampler;
    opts.stop_at_eos = !a->ignore_eos;
    if (a->echo) {
      std::fputs(a->prompt.c_str(), stdout);
      std::fflush(stdout);
    }
    const GenerateResult r = generate(session, a->prompt, opts, [](std::string_view text) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
    });
    std::fputc('\n', stdout);
    std::fflush(stdout);  // the text's last line before the timings on stderr, in a shared terminal too
    const double pp = r.prompt_seconds > 0 ? r.prompt_ids.size() / r.prompt_seconds : 0;
    const std::size_t decoded = r.ids.empty() ? 0 : r.ids.size() - 1;  // the first id comes from the prefill
    const double tg = r.decode_seconds > 0 ? decoded / r.decode_seconds : 0;
    std::fprintf(stderr,
                 "weft: %s (%s, %s), %d threads%s, seed %llu\n"
                 "weft: prompt %zu tokens in %.1f ms (%.1f tokens/s); decode %zu tokens in %.1f ms "
                 "(%.1f tokens/s, %.2f ms/token)%s\n",
                 model->info().source.c_str(), model->info().architecture.c_str(), model->info().weight_dtype.c_str(),
                 ctx.threads(), ranks_text(a->ranks).c_str(),
                 static_cast<unsigned long long>(opts.sampler.seed), r.prompt_ids.size(),
                 r.prompt_seconds * 1e3, pp, decoded, r.decode_seconds * 1e3, tg,
                 decoded ? r.decode_seconds * 1e3 / decoded : 0.0,
                 r.hit_eos ? " [end of sequence]" : (r.hit_context_limit ? " [context full]" : ""));
    return 0;
  };
}

}  // namespace weft::cli
