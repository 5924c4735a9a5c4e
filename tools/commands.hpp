#pragma once
// The weft command line: each subcommand registers its options and a run function.
#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>

#include "weft/weft.hpp"

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

// The processes of the MPI job this weft runs in (one process when not started by mpirun).
Processes& processes();
// --tp: "N" ranks, or "PxL": P processes of the MPI job x L ranks in each. Returns the ranks over
// all processes; when the option was not given, one rank per process (1 when `pipelined`: the
// processes are pipeline stages then). Throws UsageError naming the value when it is malformed or
// P is not the job's process count.
int tensor_parallel_ranks(const std::string& text, bool given, bool pipelined = false);
// generate, score and bench once the model is loaded: on rank 0 returns false (go on; the other
// processes follow its sessions); on the other processes serves rank 0's sessions until it ends
// and returns true (the command is done here, it prints nothing).
bool serve_if_not_root(const std::shared_ptr<const Model>& model, Context& context);

}  // namespace weft::cli
