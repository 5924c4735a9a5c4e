// `weft bench`: prompt processing and decode speed in llama-bench's spirit, judged against the
// machine's read bandwidth measured in the same run.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>

#include "commands.hpp"
#include "weft/weft.hpp"

namespace weft::cli {

namespace {
using Clock = std::chrono::steady_clock;

struct Stat {
  double mean = 0, sd = 0;
  std::vector<double> samples;
};
Stat stat_of(std::vector<double> v) {
  Stat s;
  s.samples = v;
  if (v.empty()) return s;
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  double ss = 0;
  for (double x : v) ss += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0.0;
  return s;
}

// Deterministic token ids in [0, vocab): benchmarks feed ids, they do not sample.
std::vector<std::int32_t> bench_tokens(int n, int vocab, std::uint64_t seed) {
  std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
  for (auto& id : ids) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    id = static_cast<std::int32_t>((seed >> 33) % static_cast<std::uint64_t>(vocab));
  }
  return ids;
}

std::vector<int> parse_int_list(const std::string& s, const char* what) {
  std::vector<int> out;
  for (auto id : parse_ids(s)) {
    if (id < 1 || id > 1024) throw UsageError(std::string(what) + ": " + std::to_string(id) + " is out of range [1, 1024]");
    out.push_back(id);
  }
  return out;
}
// The read bandwidth at `threads` threads: the better of the median with and without huge pages
// over `repeats` reads of `bytes`; each measurement is appended to `log` when given.
double read_roof(int threads, std::size_t bytes, int repeats, nlohmann::ordered_json* log = nullptr) {
  double roof = 0;
  for (bool huge : {false, true}) {
    const ReadBandwidth b = measure_read_bandwidth(threads, bytes, huge, repeats);
    roof = std::max(roof, b.median_gbs);
    if (log != nullptr)
      log->push_back({{"huge_pages", huge}, {"bytes", b.bytes}, {"best_gbs", b.best_gbs}, {"median_gbs", b.median_gbs}});
  }
  return roof;
}

double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// " tp4 (2 processes x 2)" for the table.
std::string ranks_label(int ranks, int processes) {
  if (ranks <= 1) return "";
  return " tp" + std::to_string(ranks) +
         (processes > 1 ? " (" + std::to_string(processes) + " processes x " + std::to_string(ranks / processes) + ")" : "");
}
}  // namespace

Runner add_bench(CLI::App& app) {
  struct Args {
    std::string model, threads, batches;
    int p = 128, n = 64, r = 3, pp = 1, micro_batches = 4, ranks = 1;
    std::string tp = "1";
    std::string topology;
    bool json = false, membw = false, stats = false, no_mmap = false, no_repack = false;
    std::size_t membw_bytes = std::size_t{1} << 30;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("bench", "Measure prompt processing (pp) and decode (tg) tokens/s");
  sub->add_option("-m,--model", a->model, "model to benchmark")->required();
  sub->add_option("-p,--n-prompt", a->p, "prompt tokens for the pp test (0: skip)")->check(CLI::Range(0, 1 << 20))->capture_default_str();
  sub->add_option("-n,--n-gen", a->n, "tokens for the tg test (0: skip)")->check(CLI::Range(0, 1 << 20))->capture_default_str();
  sub->add_option("-r,--repetitions", a->r, "repetitions of each test")->check(CLI::Range(1, 1000))->capture_default_str();
  sub->add_option("-t,--threads", a->threads, "thread counts, comma-separated (default: all hardware threads)");
  sub->add_option("-b,--batch", a->batches,
                  "also decode this many sequences together (comma-separated list): aggregate tokens/s of n steps")
      ->capture_default_str();
  sub->add_option("--pp", a->pp, "with -b: pipeline stages (contiguous layer ranges, one rank each)")
      ->check(CLI::Range(1, 1024))->capture_default_str();
  sub->add_option("--micro-batches", a->micro_batches, "with --pp: micro-batches in flight")
      ->check(CLI::Range(1, 1024))->capture_default_str();
  auto* tp = sub->add_option("--tp", a->tp,
                             "tensor-parallel ranks: every layer split over N ranks of threads/N threads each; under "
                             "mpirun the ranks of all processes (default one per process), or PxL")
                 ->capture_default_str();
  sub->add_option("--topology", a->topology, "with --tp: place the ranks on an hwloc synthetic topology or XML file (no pinning)");
  sub->add_flag("--json", a->json, "print one JSON document with every number and the configuration");
  sub->add_flag("--membw", a->membw, "measure the read bandwidth at each thread count and report % of it");
  sub->add_option("--membw-bytes", a->membw_bytes, "buffer size of the read test")->check(CLI::Range(std::size_t{1} << 21, std::size_t{1} << 34));
  sub->add_flag("--stats", a->stats, "collect and print work-stealing statistics");
  sub->add_flag("--no-mmap", a->no_mmap, "copy the weights into huge-page memory before measuring");
  sub->add_flag("--no-repack", a->no_repack, "keep quantized weights in the file's layout (not the kernels' interleaved one)");
  return [a, tp] {
    a->ranks = tensor_parallel_ranks(a->tp, tp->count() > 0, a->pp > 1);
    Processes& procs = processes();
    const auto load_start = Clock::now();
    auto model = Model::load(a->model, {.tokenizer_path = {}, .mmap = !a->no_mmap, .repack = !a->no_repack});
    const double load_seconds = std::chrono::duration<double>(Clock::now() - load_start).count();
    const ModelInfo& info = model->info();
    std::vector<int> thread_counts = a->threads.empty() ? std::vector<int>{Context(0).threads()}
                                                        : parse_int_list(a->threads, "--threads");
    if (procs.size() > 1) {
      if (thread_counts.size() != 1)
        throw UsageError("bench under mpirun takes one thread count per process (-t N), got '" + a->threads + "'");
      Context worker_ctx(thread_counts[0]);
      if (serve_if_not_root(model, worker_ctx)) return 0;
    }
    nlohmann::ordered_json doc;
    doc["model"] = {{"path", info.source},           {"format", info.format},         {"architecture", info.architecture},
                    {"dtype", info.weight_dtype},      {"dim", info.dim},               {"hidden_dim", info.hidden_dim},
                    {"n_layers", info.n_layers},       {"n_heads", info.n_heads},       {"n_kv_heads", info.n_kv_heads},
                    {"vocab_size", info.vocab_size},   {"sliding_window", info.sliding_window},
                    {"weight_bytes", info.weight_bytes}, {"decode_bytes_per_token", info.decode_bytes}};
    const std::vector<int> batch_sizes = a->batches.empty() ? std::vector<int>{} : parse_int_list(a->batches, "--batch");
    doc["config"] = {{"n_prompt", a->p}, {"batch", batch_sizes}, {"pipeline_stages", a->pp}, {"micro_batches", a->micro_batches}, {"tensor_parallel", a->ranks}, {"processes", procs.size()}, {"n_gen", a->n}, {"repetitions", a->r}, {"threads", thread_counts},
                     {"membw", a->membw}, {"membw_bytes", a->membw_bytes}, {"mmap", !a->no_mmap}, {"repack", !a->no_repack}, {"load_seconds", load_seconds}, {"reference_kernels", std::getenv("WEFT_REFERENCE") != nullptr},
                     {"isa", std::getenv("WEFT_ISA") ? std::getenv("WEFT_ISA") : "auto"}};
    doc["results"] = nlohmann::ordered_json::array();

    if (!a->json)
      std::printf("| model | dtype | size GB | threads | test | tokens/s | GB/s | %% of read bw |\n"
                  "|---|---|---:|---:|---|---:|---:|---:|\n");
    for (int threads : thread_counts) {
      // The read bandwidth before the tests; the decode test also measures it right before and right
      // after each repetition and compares each repetition with the mean of those two, since the
      // bandwidth a shared machine leaves this process drifts over seconds.
      nlohmann::ordered_json bw = nlohmann::ordered_json::array();
      const double roof = a->membw ? read_roof(threads, a->membw_bytes, 9, &bw) : 0.0;
      std::vector<double> tg_roof, tg_pct;  // per decode repetition: adjacent read bandwidth, % of it
      Context ctx(threads);
      if (a->stats) ctx.set_stats(true);
      const auto prompt = bench_tokens(std::max(a->p, 1), info.vocab_size, 42);
      const auto gen = bench_tokens(std::max(a->n, 1), info.vocab_size, 7);
      std::vector<double> pp, tg, comm_ms;  // comm_ms: time inside messages to other processes per decoded token
      // One sequence; not when the processes of an MPI job are pipeline stages (they run batches).
      // The session closes before the batch tests: the processes hold one session at a time.
      if (procs.size() == 1 || a->pp == 1) {
        Session session(model, ctx, {.context = std::max(a->p, a->n) + 1, .tp = a->ranks, .topology = a->topology,
                                     .processes = &procs});
        // Warm-up: fault the mapped weights in and let the threads start.
        session.prefill(std::span(prompt).first(std::min<std::size_t>(prompt.size(), 16)));
        session.decode(gen[0]);
        if (a->stats) ctx.reset_stats();
        for (int rep = 0; rep < a->r; ++rep) {
          if (a->p > 0) {
            session.reset();
            const auto t0 = Clock::now();
            session.prefill(prompt);
            pp.push_back(a->p / std::chrono::duration<double>(Clock::now() - t0).count());
          }
          if (a->n > 0) {
            session.reset();
            procs.reset_stats();
            const double before = a->membw ? read_roof(threads, a->membw_bytes, 5) : 0.0;
            const auto t0 = Clock::now();
            for (int i = 0; i < a->n; ++i) session.decode(gen[static_cast<std::size_t>(i)]);
            tg.push_back(a->n / std::chrono::duration<double>(Clock::now() - t0).count());
            if (a->membw) {
              tg_roof.push_back(0.5 * (before + read_roof(threads, a->membw_bytes, 5)));
              tg_pct.push_back(100.0 * tg.back() * static_cast<double>(info.decode_bytes) / 1e9 / tg_roof.back());
            }
            if (procs.size() > 1) comm_ms.push_back(procs.stats().seconds * 1e3 / a->n);
          }
        }
      }
      auto report = [&](const char* test, int tokens, const std::vector<double>& v) {
        if (v.empty()) return;
        const Stat s = stat_of(v);
        const bool decode = std::string(test) == "tg";
        const double gbs = decode ? s.mean * static_cast<double>(info.decode_bytes) / 1e9 : 0.0;
        // Decode: the median over repetitions of each one's share of its adjacent read bandwidth.
        const bool paired = decode && !tg_pct.empty();
        const double rep_roof = median_of(tg_roof), pct = median_of(tg_pct);
        nlohmann::ordered_json row = {{"test", std::string(test) + std::to_string(tokens)}, {"threads", threads},
                                      {"tokens", tokens}, {"tokens_per_s_mean", s.mean}, {"tokens_per_s_sd", s.sd},
                                      {"samples", s.samples}, {"tensor_parallel", a->ranks}, {"processes", procs.size()}};
        if (decode) {
          row["bytes_per_token"] = info.decode_bytes;
          if (!comm_ms.empty()) row["comm_ms_per_token_mean"] = stat_of(comm_ms).mean;
          row["gbs"] = gbs;
          if (paired) {
            row["read_bw_gbs"] = rep_roof, row["pct_of_read_bw"] = pct;
            row["read_bw_gbs_per_rep"] = tg_roof, row["pct_of_read_bw_per_rep"] = tg_pct;
            row["read_bw_gbs_before"] = roof;
          }
        }
        if (a->membw) row["membw"] = bw;
        if (a->stats) row["work_stealing"] = nlohmann::ordered_json::parse(ctx.stats_json());
        doc["results"].push_back(row);
        if (!a->json) {
          char gb[32] = "", pc[32] = "";
          if (decode) std::snprintf(gb, sizeof gb, "%.1f", gbs);
          if (paired) std::snprintf(pc, sizeof pc, "%.0f%% of %.1f", pct, rep_roof);
          std::printf("| %s | %s | %.2f | %d | %s%d%s | %.2f ± %.2f | %s | %s |\n", info.source.c_str(),
                      info.weight_dtype.c_str(), static_cast<double>(info.weight_bytes) / 1e9, threads, test, tokens,
                      ranks_label(a->ranks, procs.size()).c_str(), s.mean, s.sd, gb, pc);
          if (decode && !comm_ms.empty())
            std::printf("|  |  |  |  | tg%d: messages between the %d processes | %.3f ms/token | | |\n", tokens,
                        procs.size(), stat_of(comm_ms).mean);
        }
      };
      report("pp", a->p, pp);
      report("tg", a->n, tg);

      // Many sequences: each prefilled with 16 prompt tokens, then n steps that decode one token of
      // every sequence together. tokens/s counts all sequences; GB/s counts the weights once per step.
      for (int b : batch_sizes) {
        if (a->n <= 0) break;
        BatchSession batch(model, ctx, {.max_sequences = b, .context = a->n + 17, .pipeline_stages = a->pp,
                                        .micro_batches = a->micro_batches, .tp = a->ranks, .topology = a->topology,
                                        .processes = &procs});
        std::vector<int> seqs;
        for (int i = 0; i < b; ++i) seqs.push_back(batch.open());
        std::vector<double> agg, step_comm_ms;
        for (int rep = 0; rep < a->r; ++rep) {
          for (int q : seqs) {
            batch.close(q);
            batch.open();
            batch.prefill(q, std::span(prompt).first(std::min<std::size_t>(prompt.size(), 16)));
          }
          std::vector<std::int32_t> step(static_cast<std::size_t>(b));
          procs.reset_stats();
          const auto t0 = Clock::now();
          for (int i = 0; i < a->n; ++i) {
            std::fill(step.begin(), step.end(), gen[static_cast<std::size_t>(i)]);
            batch.decode(seqs, step);
          }
          agg.push_back(static_cast<double>(b) * a->n / std::chrono::duration<double>(Clock::now() - t0).count());
          if (procs.size() > 1) step_comm_ms.push_back(procs.stats().seconds * 1e3 / a->n);
        }
        const Stat st = stat_of(agg);
        const double gbs = st.mean / b * static_cast<double>(info.decode_bytes) / 1e9;
        nlohmann::ordered_json row = {{"test", "tg" + std::to_string(a->n) + "x" + std::to_string(b)}, {"threads", threads},
                                      {"sequences", b}, {"pipeline_stages", a->pp}, {"tokens", a->n}, {"tokens_per_s_mean", st.mean},
                                      {"tokens_per_s_sd", st.sd}, {"samples", st.samples},
                                      {"tokens_per_s_per_sequence", st.mean / b}, {"weight_gbs", gbs}};
        if (roof > 0) row["read_bw_gbs"] = roof;
        if (!step_comm_ms.empty()) row["comm_ms_per_step_mean"] = stat_of(step_comm_ms).mean;
        doc["results"].push_back(row);
        if (!a->json)
          std::printf("| %s | %s | %.2f | %d | tg%d x %d seq%s | %.2f ± %.2f | %.1f | |\n", info.source.c_str(),
                      info.weight_dtype.c_str(), static_cast<double>(info.weight_bytes) / 1e9, threads, a->n, b,
                      (a->pp > 1 ? " pp" + std::to_string(a->pp) : ranks_label(a->ranks, procs.size())).c_str(), st.mean,
                      st.sd, gbs);
        if (!a->json && !step_comm_ms.empty())
          std::printf("|  |  |  |  | tg%d x %d: rank 0's messages to the other processes | %.3f ms/step | | |\n", a->n, b,
                      stat_of(step_comm_ms).mean);
      }
      if (a->stats && !a->json) std::printf("\nwork stealing (%d threads): %s\n\n", threads, ctx.stats_text().c_str());
    }
    if (a->json) std::printf("%s\n", doc.dump(2).c_str());
    return 0;
  };
}

}  // namespace weft::cli
