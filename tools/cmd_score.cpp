// `weft score`: write float32 logits [n_tokens, vocab], row i after tokens 0..i.
#include <cstdio>
#include <vector>

#include "commands.hpp"
#include "weft/weft.hpp"

namespace weft::cli {

Runner add_score(CLI::App& app) {
  struct Args {
    std::string model, tokenizer, tokens, out, tp = "1";
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("score", "Write the logits after each token (float32 LE, row-major [tokens, vocab])");
  sub->add_option("-m,--model", a->model, "Hugging Face directory, GGUF file, llama2.c .bin or weft shard directory")->required();
  sub->add_option("--tokens", a->tokens, "token ids, comma-separated")->required();
  sub->add_option("--logits-out", a->out, "output file")->required();
  sub->add_option("-t,--threads", a->threads, "threads (0: all)")->check(CLI::Range(0, 1024));
  auto* tp = sub->add_option("--tp", a->tp,
                             "tensor-parallel ranks (every layer split over N ranks); under mpirun: ranks of all "
                             "processes (default one per process), or PxL");
  return [a, tp] {
    const int ranks = tensor_parallel_ranks(a->tp, tp->count() > 0);
    const std::vector<std::int32_t> ids = parse_ids(a->tokens);
    auto model = Model::load(a->model);
    Context ctx(a->threads);
    if (serve_if_not_root(model, ctx)) return 0;
    Session session(model, ctx, {.context = static_cast<int>(ids.size()), .tp = ranks, .processes = &processes()});
    std::vector<float> logits(ids.size() * static_cast<std::size_t>(model->info().vocab_size));
    session.score(ids, logits);
    std::FILE* f = std::fopen(a->out.c_str(), "wb");
    if (f == nullptr) throw InputError(a->out + ": cannot open for writing");
    const std::size_t written = std::fwrite(logits.data(), sizeof(float), logits.size(), f);
    const bool ok = std::fclose(f) == 0 && written == logits.size();
    if (!ok) throw InputError(a->out + ": write failed");
    std::fprintf(stderr, "weft: wrote %zu x %d logits to %s\n", ids.size(), model->info().vocab_size, a->out.c_str());
    return 0;
  };
}

}  // namespace weft::cli
