// Resident memory stays flat during a long generation once the sliding window is full: the KV
// cache is a rolling buffer of `sliding_window` slots, activations are allocated once per session,
// and the sampler reuses its buffers. Measured with /proc/self/statm through the public API.
//
// Model: tiny-mistral from ../shared (window 8) when present, else the default model written by
// weft-make-model (window 128); with neither, SKIP.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <weft/weft.hpp>

#include "testing.hpp"

namespace fs = std::filesystem;

namespace {
// Resident set size in bytes (the second field of /proc/self/statm, in pages).
long rss_bytes() {
  std::ifstream in("/proc/self/statm");
  long size = 0, resident = 0;
  in >> size >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif
}  // namespace

TEST_CASE("a 10,000-token generation keeps resident memory flat once the window is full") {
  fs::path model_dir;
  const fs::path made = fs::temp_directory_path() / ("weft_memory_model_" + std::to_string(::getpid()));
  if (weft::testing::have_shared()) {
    model_dir = weft::testing::shared_dir() / "models" / "tiny-mistral";
  } else if (const char* mk = std::getenv("WEFT_MAKE_MODEL")) {
    REQUIRE(std::system((std::string(mk) + " -o " + made.string() + " >/dev/null").c_str()) == 0);
    model_dir = made;
  } else {
    MESSAGE("SKIP: neither ../shared nor WEFT_MAKE_MODEL");
    return;
  }

  auto model = weft::Model::load(model_dir.string());
  const int window = model->info().sliding_window;
  REQUIRE(window > 0);
  REQUIRE(window < 10000);
  weft::Context ctx(1);
  weft::Session session(model, ctx);
  REQUIRE_FALSE(session.context_limit().has_value());  // rolling: no context limit

  weft::GenerateOptions opts;
  opts.max_tokens = 10000;
  opts.stop_at_eos = false;
  opts.sampler.temperature = 1.0f;  // sampled, so the ids wander over the vocabulary
  opts.sampler.seed = 42;
  const std::vector<std::int32_t> prompt = {1, 20, 30};
  std::map<int, long> rss;  // tokens generated -> bytes resident
  const int marks[] = {window * 4, 1000, 2500, 5000, 7500, 10000};
  int generated = 0;
  const long before = rss_bytes();
  const auto r = weft::generate_ids(session, prompt, opts, -1, [&](std::int32_t) {
    ++generated;
    for (int m : marks)
      if (generated == m) rss[m] = rss_bytes();
    return true;
  });
  fs::remove_all(made);
  REQUIRE(r.ids.size() == 10000u);
  REQUIRE(rss.size() == std::size(marks));

  const long base = rss[marks[0]];
  std::string line = std::string(model_dir == made ? "default model" : "tiny-mistral") + " (window " + std::to_string(window) + "): RSS before " +
                     std::to_string(before / 1024) + " KiB";
  for (const auto& [tokens, bytes] : rss)
    line += ", after " + std::to_string(tokens) + " tokens " + std::to_string(bytes / 1024) + " KiB";
  line += "; growth from " + std::to_string(marks[0]) + " to 10000 tokens: " + std::to_string((rss[10000] - base) / 1024) + " KiB";
  MESSAGE(line);
  std::printf("%s\n", line.c_str());
  // The only growing state is the list of generated ids itself (two int32 vectors reserved up
  // front, paged in as they fill: 80 KB for 10,000 tokens); allow that plus allocator noise.
  // Sanitizer runtimes keep shadow memory, quarantines and (TSan) per-thread access histories of
  // their own that fill up over the first thousand steps, so there the bound is looser and
  // counts from token 1000.
  const long allowed = kSanitized ? 8L << 20 : 512L << 10;
  if (!kSanitized) CHECK(rss[10000] - base < allowed);
  CHECK(rss[10000] - rss[1000] < allowed);
}
