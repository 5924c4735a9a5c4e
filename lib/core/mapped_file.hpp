#pragma once
// A read-only memory map of a whole file. Weights are used straight from the map when their
// dtype allows, so loading a model costs page faults, not copies.
#include <cstddef>
#include <span>
#include <string>

namespace weft {

class MappedFile {
 public:
  // Maps `path` read-only. Throws InputError naming the path when it cannot be opened, is a
  // directory, or cannot be mapped. An empty file maps to an empty span.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;

  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  std::size_t size() const noexcept { return size_; }
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// Reads a whole (small) file into a string. Throws InputError naming the path on failure.
std::string read_text_file(const std::string& path);

}  // namespace weft
