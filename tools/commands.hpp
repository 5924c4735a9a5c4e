#pragma once
// The weft command line: each subcommand registers its options and a run function.
#include <CLI/CLI.hpp>

#include <functional>
#include <string>

namespace weft::cli {

// Exit codes: 0 ok, 1 usage (bad flags or values), 2 bad input (paths, files, models).
inline constexpr int kExitUsage = 1;
inline constexpr int kExitInput = 2;

// Adds a subcommand to app; the returned function runs it after parsing.
using Runner = std::function<int()>;
Runner add_generate(CLI::App& app);
Runner add_tokenize(CLI::App& app);
Runner add_score(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_topo(CLI::App& app);
Runner add_quantize(CLI::App& app);
Runner add_plan(CLI::App& app);
Runner add_shard(CLI::App& app);

// Parses "1,2,3" into ids; throws weft::UsageError naming the bad item.
std::vector<std::int32_t> parse_ids(const std::string& text);

}  // namespace weft::cli
