#pragma once
// Helpers shared by weft's tests.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>

namespace weft::testing {

// ../shared beside the checkout (or $WEFT_SHARED): real models and golden outputs.
inline std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("WEFT_SHARED")) return env;
  return std::filesystem::path(WEFT_SOURCE_ROOT) / ".." / "shared";
}
inline bool have_shared() { return std::filesystem::exists(shared_dir() / "golden" / "README.md"); }

// A fresh directory <temp>/<prefix>_<pid>, made on first use and removed when the test program
// exits. One per prefix.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix)
      : path_(std::filesystem::temp_directory_path() / (prefix + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

// What a command line did.
struct CommandResult {
  int code = -1;  // exit status; 128 + the signal when killed (124 when `timeout` stopped it)
  std::string out, err;
  double seconds = 0;  // wall time from start to exit
};

// Runs a shell command line (/bin/sh, through popen) and waits for it; stdout and stderr are
// captured separately, stderr through a file in the temporary directory (one per test process,
// removed after each run). The stderr redirection is appended to the line, so with a pipeline
// or a list it applies to the last command only.
inline CommandResult run_command(const std::string& command) {
  static const std::filesystem::path err_file =
      std::filesystem::temp_directory_path() / ("weft_test_stderr_" + std::to_string(::getpid()));
  CommandResult r;
  const auto t0 = std::chrono::steady_clock::now();
  std::FILE* p = ::popen((command + " 2>" + err_file.string()).c_str(), "r");
  REQUIRE(p != nullptr);
  std::array<char, 4096> buf{};
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = ::pclose(p);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  {
    std::ifstream e(err_file, std::ios::binary);
    r.err.assign(std::istreambuf_iterator<char>(e), std::istreambuf_iterator<char>());
  }
  std::error_code ec;
  std::filesystem::remove(err_file, ec);
  return r;
}

// Checks |a[i] - b[i]| <= tol for all i and reports the worst index and values when not.
inline void expect_close(std::span<const float> a, std::span<const float> b, double tol) {
  REQUIRE(a.size() == b.size());
  double worst = -1.0;
  std::size_t worst_i = 0;
  bool nan = false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    if (std::isnan(d)) nan = true;
    if (d > worst || std::isnan(d)) {
      worst = d;
      worst_i = i;
    }
  }
  INFO("worst index " << worst_i << ": " << (a.empty() ? 0.f : a[worst_i]) << " vs "
                      << (b.empty() ? 0.f : b[worst_i]) << " (diff " << worst << ", tol " << tol << ")");
  CHECK_FALSE(nan);
  CHECK(worst <= tol);
}

}  // namespace weft::testing
