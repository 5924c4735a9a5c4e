#pragma once
// GGUF files (llama.cpp's single-file model format), read straight from a memory map and written
// tensor by tensor.
//
// Layout (little-endian, GGUF v2 and v3; v1 used 32-bit counts and is not read):
//   "GGUF", u32 version, u64 tensor count, u64 key/value count,
//   key/values: string key, u32 value type, value
//     (string = u64 length + bytes, no terminator; array = u32 element type, u64 count, elements),
//   tensor infos: string name, u32 n_dims, u64 ne[n_dims] (innermost dimension first), u32 ggml type,
//     u64 offset (from the start of the data section, a multiple of the alignment),
//   padding to `general.alignment` (default 32), then the data section.
//
// Alignment: the data section starts at a multiple of the alignment and every tensor's offset is
// one, so in a page-aligned mapping each tensor's data is aligned to `alignment()` bytes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.hpp"
#include "core/mapped_file.hpp"

namespace weft::io {

// GGUF metadata value types, numbered as in the file.
enum class GgufType : std::uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
  String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};

// Lower-case name of a metadata type ("u32", "string", "array"); "type N" for unknown numbers.
std::string gguf_type_name(GgufType t);

// ggml tensor type ids weft reads, and the DType each maps to.
inline constexpr std::uint32_t kGgmlF32 = 0, kGgmlF16 = 1, kGgmlQ4_0 = 2, kGgmlQ8_0 = 8, kGgmlQ4_K = 12,
                               kGgmlQ6_K = 14, kGgmlBF16 = 30;
// The ggml type id of a DType (every DType has one).
std::uint32_t ggml_type_of(DType t) noexcept;
// The name ggml gives a type id ("Q5_1"), or "unknown" for ids it does not define.
std::string_view ggml_type_name(std::uint32_t id) noexcept;

// One metadata value: its type and a view of its encoded bytes inside the file's mapping (valid
// while the GgufFile lives). Cheap to copy. The bytes were validated when the file was parsed, so
// the accessors below do not fail on the encoding; they throw InputError (naming `key` of the
// owning entry) only when asked for a type the value does not have.
class GgufValue {
 public:
  GgufValue() = default;
  GgufValue(GgufType type, std::span<const std::byte> raw) : type_(type), raw_(raw) {}

  GgufType type() const noexcept { return type_; }
  // True for u8..i64 (not bool).
  bool is_integer() const noexcept;
  // An integer value as int64 / uint64; nullopt when not an integer or out of range.
  std::optional<std::int64_t> as_i64() const noexcept;
  std::optional<std::uint64_t> as_u64() const noexcept;
  // A float (f32 or f64) as double; nullopt for other types.
  std::optional<double> as_f64() const noexcept;
  // A bool; nullopt for other types.
  std::optional<bool> as_bool() const noexcept;
  // A string (a view into the mapping); nullopt for other types.
  std::optional<std::string_view> as_string() const noexcept;

  // For arrays: the element type and count (U8 / 0 for other types).
  GgufType array_type() const noexcept;
  std::uint64_t array_size() const noexcept;
  // Element i of an array (O(i) for strings and nested arrays, O(1) otherwise). Requires an array
  // and i < array_size().
  GgufValue array_at(std::uint64_t i) const noexcept;
  // Calls f(GgufValue) for every element in order, in one pass.
  template <class F>
  void for_each(F&& f) const {
    std::size_t pos = 12;
    const std::uint64_t n = array_size();
    const GgufType et = array_type();
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::size_t len = element_bytes(et, raw_.subspan(pos));
      f(GgufValue(et, raw_.subspan(pos, len)));
      pos += len;
    }
  }

  // Bytes an encoded value of type t takes at the start of `bytes` (which must hold a valid value).
  static std::size_t element_bytes(GgufType t, std::span<const std::byte> bytes) noexcept;

 private:
  GgufType type_ = GgufType::U8;
  std::span<const std::byte> raw_;  // strings: the characters; arrays: type, count, elements
};

struct GgufTensor {
  std::string name;
  DType dtype = DType::F32;
  std::uint32_t ggml_type = 0;
  std::vector<std::int64_t> ne;     // as in the file: innermost (contiguous) dimension first
  std::vector<std::int64_t> shape;  // outermost first (ne reversed), as safetensors and TensorView count
  std::uint64_t offset = 0;         // from the start of the data section
  std::span<const std::byte> data;  // into the mapping; aligned to the file's alignment
};

// One mapped GGUF file. Immutable after construction, so safe to share between threads; values
// and tensor spans live as long as this object.
class GgufFile {
 public:
  // Maps `path` and parses and validates everything: magic, version (2 or 3), every key/value
  // (bounds-checked; counts and lengths that cannot fit in the rest of the file are refused before
  // anything is allocated; duplicate keys), general.alignment (a power of two), every tensor
  // info (supported type, 1 to 4 positive dims whose product fits, ne[0] a whole number of blocks,
  // aligned offset, data inside the file, no overlaps, no duplicate names). Throws InputError
  // naming the file and the key or tensor at fault.
  explicit GgufFile(const std::string& path);

  const std::string& path() const noexcept { return file_.path(); }
  std::uint32_t version() const noexcept { return version_; }
  std::uint32_t alignment() const noexcept { return alignment_; }
  // File offset of the data section.
  std::uint64_t data_offset() const noexcept { return data_offset_; }

  // Every key/value in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const noexcept { return kvs_; }
  // The value of `key`, or nullptr.
  const GgufValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }

  // Typed getters. The try_ forms return nullopt when the key is absent and throw InputError
  // (naming the file and key, expected and actual type) when it has the wrong type or its value
  // does not fit; the plain forms also throw when the key is absent. Integer getters accept any
  // integer type whose value fits; float getters accept f32 and f64.
  std::optional<std::uint32_t> try_u32(std::string_view key) const;
  std::optional<std::int32_t> try_i32(std::string_view key) const;
  std::optional<std::uint64_t> try_u64(std::string_view key) const;
  std::optional<float> try_f32(std::string_view key) const;
  std::optional<bool> try_bool(std::string_view key) const;
  std::optional<std::string> try_string(std::string_view key) const;
  std::uint32_t get_u32(std::string_view key) const;
  std::int32_t get_i32(std::string_view key) const;
  std::uint64_t get_u64(std::string_view key) const;
  float get_f32(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  std::string get_string(std::string_view key) const;
  // Arrays, converted element by element with the same rules (nullopt when absent; InputError
  // naming the key and index for a wrong element type or a value that does not fit).
  std::optional<std::vector<std::string>> try_string_array(std::string_view key) const;
  std::optional<std::vector<float>> try_f32_array(std::string_view key) const;
  std::optional<std::vector<std::int32_t>> try_i32_array(std::string_view key) const;
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<float> get_f32_array(std::string_view key) const;
  std::vector<std::int32_t> get_i32_array(std::string_view key) const;

  // Every tensor, in file (info) order.
  const std::vector<GgufTensor>& tensors() const noexcept { return tensors_; }
  // The tensor called `name`, or nullptr.
  const GgufTensor* find_tensor(std::string_view name) const;

 private:
  [[noreturn]] void fail_key(std::string_view key, const std::string& what) const;
  const GgufValue& require(std::string_view key) const;
  template <class T>
  std::optional<T> try_int(std::string_view key) const;
  template <class T, class Convert>
  std::optional<std::vector<T>> try_array(std::string_view key, GgufType want, Convert convert) const;

  MappedFile file_;
  std::uint32_t version_ = 0;
  std::uint32_t alignment_ = 32;
  std::uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kvs_;
  std::map<std::string, std::size_t, std::less<>> kv_index_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

// Writes a GGUF v3 file as a stream: add the metadata and declare every tensor, then write each
// tensor's bytes in declaration order, then finish(). Only one tensor need be in memory at a time.
// The file is written to `path + ".tmp"` and renamed to `path` by finish(); a writer destroyed
// before finish() removes the temporary. Not thread-safe; one writer per output file.
class GgufWriter {
 public:
  // Starts a file with the given data alignment (a power of two; UsageError otherwise). An
  // alignment other than 32 is recorded as general.alignment.
  explicit GgufWriter(std::string path, std::uint32_t alignment = 32);
  ~GgufWriter();
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // Metadata, written in the order added. UsageError for a duplicate key or after the first
  // tensor's data was written.
  void add_u8(std::string key, std::uint8_t v);
  void add_u32(std::string key, std::uint32_t v);
  void add_i32(std::string key, std::int32_t v);
  void add_u64(std::string key, std::uint64_t v);
  void add_f32(std::string key, float v);
  void add_bool(std::string key, bool v);
  void add_string(std::string key, std::string_view v);
  void add_string_array(std::string key, const std::vector<std::string>& v);
  void add_f32_array(std::string key, std::span<const float> v);
  void add_i32_array(std::string key, std::span<const std::int32_t> v);

  // Declares the next tensor: `shape` outermost first (written reversed, as ne). UsageError for a
  // duplicate name, 0 or more than 4 dims, a non-positive dim, an innermost dim that is not a
  // whole number of blocks, or after data was written. Returns the tensor's byte size.
  std::size_t add_tensor(std::string name, DType dtype, std::vector<std::int64_t> shape);

  // Writes the next declared tensor's bytes (exactly its size; UsageError otherwise), padded to
  // the alignment. The first call writes the header. Throws InputError naming the path on I/O failure.
  void write_tensor(std::span<const std::byte> bytes);
  // Writes the header if no tensor was written, checks every declared tensor was written
  // (UsageError otherwise), closes and renames the temporary into place.
  void finish();

 private:
  struct Tensor {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> shape;
    std::size_t bytes;
    std::uint64_t offset;
  };
  void add_kv(std::string key, GgufType type, std::string_view encoded);
  void write_header();
  void put(const void* p, std::size_t n);

  std::string path_, tmp_;
  std::uint32_t alignment_;
  std::vector<std::string> keys_;
  std::string kv_bytes_;
  std::uint64_t kv_count_ = 0;
  std::vector<Tensor> tensors_;
  std::uint64_t next_offset_ = 0;
  std::size_t written_ = 0;
  std::FILE* out_ = nullptr;
  bool header_written_ = false, finished_ = false;
};

}  // namespace weft::io
