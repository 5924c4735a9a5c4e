// `weft`: one binary, subcommands. Errors go to stderr with a non-zero exit code.
#include <cstdio>
#include <exception>
#include <map>

#include "commands.hpp"
#include "weft/weft.hpp"

int main(int argc, char** argv) {
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
    const int code = app.exit(e);
    return code == 0 ? 0 : weft::cli::kExitUsage;
  }
  try {
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
  } catch (const weft::UsageError& e) {
    std::fprintf(stderr, "weft: error: %s\n", e.what());
    return weft::cli::kExitUsage;
  } catch (const weft::Error& e) {
    std::fprintf(stderr, "weft: error: %s\n", e.what());
    return weft::cli::kExitInput;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "weft: error: out of memory\n");
    return weft::cli::kExitInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "weft: error: %s\n", e.what());
    return weft::cli::kExitInput;
  }
  return weft::cli::kExitUsage;
}
