// `weft`: one binary, subcommands. Errors go to stderr with a non-zero exit code.
#include <cstdio>
#include <exception>
#include <map>
#include <optional>
#include <string>

#include "commands.hpp"
#include "weft/weft.hpp"

namespace weft::cli {

namespace {
Processes* g_processes = nullptr;
}

Processes& processes() { return *g_processes; }

int tensor_parallel_ranks(const std::string& text, bool given, bool pipelined) {
  const Processes& procs = processes();
  if (!given) return pipelined ? 1 : procs.size();
  const std::size_t x = text.find('x');
  auto number = [&](const std::string& part) {
    std::size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (part.empty() || used != part.size() || v < 1 || v > 1024)
      throw UsageError("--tp: expected N or PxL (whole numbers 1..1024), got '" + text + "'");
    return v;
  };
  if (x == std::string::npos) return number(text);
  const int p = number(text.substr(0, x)), l = number(text.substr(x + 1));
  if (p != procs.size())
    throw UsageError("--tp " + text + " means " + std::to_string(p) + " processes x " + std::to_string(l) +
                     " ranks each, but this job has " + std::to_string(procs.size()) + " process(es)" +
                     (procs.size() == 1 ? " (start it with mpirun -np " + std::to_string(p) + ")" : ""));
  return p * l;
}

bool serve_if_not_root(const std::shared_ptr<const Model>& model, Context& context) {
  Processes& procs = processes();
  if (procs.size() == 1) return false;
  // Commands follow each other without pauses: a rank 0 that stops answering ends the job.
  procs.set_idle_timeout(procs.timeout_seconds());
  if (procs.is_root()) {
    procs.lead();
    return false;
  }
  procs.serve(model, context);
  return true;
}

}  // namespace weft::cli

int main(int argc, char** argv) {
  std::optional<weft::Processes> procs;
  try {
    procs.emplace(&argc, &argv);
  } catch (const weft::Error& e) {
    std::fprintf(stderr, "weft: error: %s\n", e.what());
    return weft::cli::kExitUsage;
  }
  weft::cli::g_processes = &*procs;
  CLI::App app{"weft: CPU-first inference for Mistral-family language models", "weft"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "weft 0.1.0");
  std::map<CLI::App*, weft::cli::Runner> runners;
  auto add = [&](weft::cli::Runner (*f)(CLI::App&)) {
    const std::size_t before = app.get_subcommands({}).size();
    weft::cli::Runner r = f(app);
    runners[app.get_subcommands({})[before]] = std::move(r);
  };
  add(weft::cli::add_generate);
  add(weft::cli::add_tokenize);
  add(weft::cli::add_score);
  add(weft::cli::add_bench);
  add(weft::cli::add_topo);
  add(weft::cli::add_quantize);
  add(weft::cli::add_plan);
  add(weft::cli::add_shard);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Every process parses the same arguments, so under mpirun only rank 0 prints.
    const int code = procs->is_root() ? app.exit(e) : e.get_exit_code();
    return code == 0 ? 0 : weft::cli::kExitUsage;
  }
  int code = weft::cli::kExitUsage;
  std::string error;
  try {
    for (auto& [sub, run] : runners)
      if (sub->parsed()) {
        // Under mpirun, the commands that run a model split it over the processes; the others
        // (tokenize, quantize, plan, shard, topo) run once, on rank 0.
        const std::string name = sub->get_name();
        const bool spread = name == "generate" || name == "score" || name == "bench";
        code = spread || procs->is_root() ? run() : 0;
        break;
      }
  } catch (const weft::UsageError& e) {
    code = weft::cli::kExitUsage, error = e.what();
  } catch (const weft::Error& e) {
    code = weft::cli::kExitInput, error = e.what();
  } catch (const std::bad_alloc&) {
    code = weft::cli::kExitInput, error = "out of memory";
  } catch (const std::exception& e) {
    code = weft::cli::kExitInput, error = e.what();
  }
  if (error.empty()) return code;
  if (procs->size() > 1 && !procs->is_root()) {
    // Serving, rank 0 may be waiting for this process inside a step: end the whole job now.
    // Before, every process failed the same check or file alike, and rank 0 says so itself.
    if (procs->started_serving()) procs->abort(code, "error: " + error);
    std::fprintf(stderr, "weft: rank %d: error: %s\n", procs->rank(), error.c_str());
    return code;
  }
  std::fprintf(stderr, "weft: error: %s\n", error.c_str());
  return code;
}
