#pragma once
// Shared by weft's libFuzzer targets (tests/fuzz/README.md). Every parser in weft takes a path,
// so the input goes into a file first; a tmpfs file keeps that cheap.
//
// Contract checked by every target: bad input ends in weft::Error (what the CLI turns into exit
// code 1 or 2 with a message). Any other exception escapes LLVMFuzzerTestOneInput and aborts,
// which libFuzzer reports as a finding, just like a crash, a sanitizer report or a timeout.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace weft::fuzz {

// A per-process scratch directory, on tmpfs when there is one, removed at exit.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::error_code ec;
    std::filesystem::path base = std::filesystem::is_directory("/dev/shm", ec) && ::access("/dev/shm", W_OK) == 0
                                     ? std::filesystem::path("/dev/shm")
                                     : std::filesystem::temp_directory_path();
    std::filesystem::path d = base / ("weft-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code e;
      std::filesystem::remove_all(scratch_dir(), e);
    });
    return d;
  }();
  return dir;
}

// Replaces scratch file `name` with the input bytes and returns its path.
inline std::string write_input(const char* name, const std::uint8_t* data, std::size_t size) {
  const std::string path = (scratch_dir() / name).string();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();  // the harness itself is broken, not the input
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n <= 0) std::abort();
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return path;
}

// Reads every byte of a span so that ASan checks the whole range a parser handed out.
template <class Span>
inline unsigned touch(const Span& s) {
  unsigned sum = 0;
  for (const auto b : s) sum += static_cast<unsigned>(b);
  return sum;
}

}  // namespace weft::fuzz
