#pragma once
// Safetensors checkpoints, read straight from a memory map (no copies) and written tensor by tensor.
//
// Format: an 8-byte little-endian header length N, N bytes of JSON (an object mapping each tensor
// name to {"dtype", "shape", "data_offsets": [begin, end]}, plus an optional "__metadata__" object of
// strings), then the tensor data; offsets count from the start of the data.
//
// Alignment: the format does not promise any alignment of a tensor's data (the header length is
// arbitrary, and so are the offsets), so `SafetensorsEntry::data` may start at any byte address.
// Kernels reading weights from a mapping must use unaligned loads, or copy into an AlignedBuffer.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.hpp"
#include "core/mapped_file.hpp"

namespace weft::io {

struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;  // outermost first; empty for a scalar
  std::span<const std::byte> data;  // into the file's mapping; possibly unaligned (see above)
};

// One mapped .safetensors file. Immutable after construction, so safe to share between threads;
// the entries' data spans live as long as this object.
class SafetensorsFile {
 public:
  // Maps `path`, parses its header and validates every entry (dtype, shape, offsets, overlaps,
  // duplicates). Throws InputError naming the file and, where there is one, the tensor.
  explicit SafetensorsFile(const std::string& path);

  // The path the file was opened with.
  const std::string& path() const noexcept { return file_.path(); }
  // Every tensor, in the order of its data in the file.
  const std::vector<SafetensorsEntry>& entries() const noexcept { return entries_; }
  // The tensor called `name`, or nullptr when the file has none.
  const SafetensorsEntry* find(std::string_view name) const;
  // The header's "__metadata__" strings (empty when absent).
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }

 private:
  MappedFile file_;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::size_t, std::less<>> by_name_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint directory: either one model.safetensors, or the shards that
// model.safetensors.index.json lists. Immutable after construction; thread-safe to read.
class SafetensorsSet {
 public:
  // Opens the index's shards when `dir` has model.safetensors.index.json, else dir/model.safetensors;
  // a path to a .safetensors file opens that file alone. Checks that the index and the shards agree
  // (every listed tensor is in its shard, every shard tensor is listed for that shard) and throws
  // InputError naming the index and the shard otherwise.
  static SafetensorsSet open_directory(const std::string& dir);

  // The tensor called `name` in whichever file holds it, or nullptr.
  const SafetensorsEntry* find(std::string_view name) const;
  // The path of the file holding `name` (for error messages); an empty string when none does.
  const std::string& file_of(std::string_view name) const;
  // Every tensor name, sorted.
  std::vector<std::string> names() const;
  // The opened files, in the order they were opened.
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const noexcept { return files_; }

 private:
  struct Location {
    const SafetensorsEntry* entry;
    std::size_t file;
  };
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Location, std::less<>> by_name_;
};

// Writes a .safetensors file without holding it in memory: declare the tensors, then write()
// asks for each tensor's bytes in turn. Not thread-safe; one writer per output file.
class SafetensorsWriter {
 public:
  // Declares the next tensor. Throws UsageError on a duplicate or reserved name or a negative dim.
  void add(std::string name, DType dtype, std::vector<std::int64_t> shape);
  // Replaces the "__metadata__" strings written to the header.
  void set_metadata(std::map<std::string, std::string> m) { metadata_ = std::move(m); }
  // The tensors declared so far.
  std::size_t size() const noexcept { return tensors_.size(); }

  // Writes the header, then each tensor's bytes as fill(index, out) puts them in `out` (zeroed
  // first, exactly the tensor's size), in declaration order; only one tensor is in memory at a time.
  // The data start is padded to 8 bytes. The file appears at `path` only when complete (written to
  // a temporary beside it, then renamed). Throws InputError naming the path on I/O failure; an
  // exception from `fill` propagates after the temporary is removed.
  void write(const std::string& path,
             const std::function<void(std::size_t index, std::span<std::byte> out)>& fill) const;

 private:
  struct Tensor {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> shape;
    std::size_t bytes;
  };
  std::vector<Tensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace weft::io
