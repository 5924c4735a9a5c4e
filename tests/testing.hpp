#pragma once
// Helpers shared by weft's tests.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
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
