#include "io/gguf.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <filesystem>
#include <limits>
#include <tuple>

#include "weft/error.hpp"

namespace weft::io {

namespace {

constexpr std::uint32_t kMaxDims = 4;                 // ggml's GGML_MAX_DIMS
constexpr std::uint64_t kMaxNameBytes = 1u << 16;     // keys and tensor names; real ones are < 100 bytes
constexpr int kMaxArrayDepth = 16;                    // nested arrays; real files use none

template <class T>
T load_le(const std::byte* p) noexcept {
  std::array<std::byte, sizeof(T)> b;
  std::memcpy(b.data(), p, sizeof(T));
  if constexpr (std::endian::native == std::endian::big) std::reverse(b.begin(), b.end());
  return std::bit_cast<T>(b);
}

// Encoded size of a fixed-size value type; 0 for string and array.
std::size_t scalar_bytes(GgufType t) noexcept {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::Bool: return 1;
    case GgufType::U16:
    case GgufType::I16: return 2;
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::F32: return 4;
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::F64: return 8;
    case GgufType::String:
    case GgufType::Array: return 0;
  }
  return 0;
}

// The fewest bytes a value of type t can take (a count of them must fit in what is left).
std::size_t min_bytes(GgufType t) noexcept {
  if (t == GgufType::String) return 8;
  if (t == GgufType::Array) return 12;
  return scalar_bytes(t);
}

bool valid_type(std::uint32_t t) noexcept { return t <= static_cast<std::uint32_t>(GgufType::F64); }

std::string quote_text(std::string_view s) {
  std::string out = "\"";
  for (const char c : s.substr(0, 200)) {
    if (static_cast<unsigned char>(c) < 0x20 || c == '"' || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + (s.size() > 200 ? "...\"" : "\"");
}

std::optional<DType> dtype_of_ggml(std::uint32_t id) noexcept {
  switch (id) {
    case kGgmlF32: return DType::F32;
    case kGgmlF16: return DType::F16;
    case kGgmlBF16: return DType::BF16;
    case kGgmlQ8_0: return DType::Q8_0;
    case kGgmlQ4_0: return DType::Q4_0;
    case kGgmlQ4_K: return DType::Q4_K;
    case kGgmlQ6_K: return DType::Q6_K;
    default: return std::nullopt;
  }
}

// Reads the header front to back; every read is bounds-checked and names the offset.
class Cursor {
 public:
  Cursor(const std::string& path, std::span<const std::byte> bytes) : path_(path), bytes_(bytes) {}

  [[noreturn]] void fail(const std::string& what) const { throw InputError(path_ + ": " + what); }
  std::size_t pos() const noexcept { return pos_; }
  std::size_t left() const noexcept { return bytes_.size() - pos_; }

  void need(std::size_t n, const std::string& what) const {
    if (n > left())
      fail("truncated at offset " + std::to_string(pos_) + " reading " + what + " (" + std::to_string(n) +
           " bytes needed, " + std::to_string(left()) + " left)");
  }
  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    const T v = load_le<T>(bytes_.data() + pos_);
    pos_ += sizeof(T);
    return v;
  }
  // A GGUF string of at most `max` bytes (names and keys) or whatever fits (values).
  std::string_view read_string(const std::string& what, std::uint64_t max = UINT64_MAX) {
    const std::size_t at = pos_;
    const auto len = read<std::uint64_t>(what + " length");
    if (len > max)
      fail(what + " at offset " + std::to_string(at) + " has length " + std::to_string(len) + ", more than the " +
           std::to_string(max) + " bytes allowed");
    if (len > left())
      fail(what + " at offset " + std::to_string(at) + " has length " + std::to_string(len) + " but only " +
           std::to_string(left()) + " bytes remain (truncated or corrupt)");
    const std::string_view s(reinterpret_cast<const char*>(bytes_.data() + pos_), static_cast<std::size_t>(len));
    pos_ += static_cast<std::size_t>(len);
    return s;
  }
  // Skips over one value of type t, checking it; returns its encoded bytes.
  std::span<const std::byte> skip_value(GgufType t, const std::string& what, int depth) {
    const std::size_t start = pos_;
    if (t == GgufType::String) {
      read_string(what);
    } else if (t == GgufType::Array) {
      if (depth >= kMaxArrayDepth) fail(what + ": arrays nested more than " + std::to_string(kMaxArrayDepth) + " deep");
      const auto et = read<std::uint32_t>(what + " element type");
      if (!valid_type(et)) fail(what + ": array element type " + std::to_string(et) + " is not a GGUF type (0..12)");
      const auto n = read<std::uint64_t>(what + " array length");
      const auto type = static_cast<GgufType>(et);
      if (n > left() / min_bytes(type))
        fail(what + ": array of " + std::to_string(n) + " " + gguf_type_name(type) + " values at offset " +
             std::to_string(start) + " cannot fit in the " + std::to_string(left()) + " bytes left (truncated or corrupt)");
      if (scalar_bytes(type) != 0) {
        pos_ += static_cast<std::size_t>(n) * scalar_bytes(type);
      } else {
        for (std::uint64_t i = 0; i < n; ++i) skip_value(type, what + "[" + std::to_string(i) + "]", depth + 1);
      }
    } else {
      need(scalar_bytes(t), what);
      if (t == GgufType::Bool && static_cast<std::uint8_t>(bytes_[pos_]) > 1)
        fail(what + ": bool value " + std::to_string(static_cast<unsigned>(bytes_[pos_])) + " is neither 0 nor 1");
      pos_ += scalar_bytes(t);
    }
    return bytes_.subspan(start, pos_ - start);
  }

 private:
  const std::string& path_;
  std::span<const std::byte> bytes_;
  std::size_t pos_ = 0;
};

std::string dims_text(const std::vector<std::int64_t>& d) {
  std::string s = "[";
  for (std::size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

std::string supported_types_text() { return "F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K"; }

}  // namespace

std::string gguf_type_name(GgufType t) {
  static constexpr std::array<const char*, 13> kNames = {"u8",  "i8",     "u16",   "i16", "u32", "i32", "f32",
                                                         "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<std::uint32_t>(t);
  return i < kNames.size() ? kNames[i] : "type " + std::to_string(i);
}

std::uint32_t ggml_type_of(DType t) noexcept {
  switch (t) {
    case DType::F32: return kGgmlF32;
    case DType::F16: return kGgmlF16;
    case DType::BF16: return kGgmlBF16;
    case DType::Q8_0: return kGgmlQ8_0;
    case DType::Q4_0: return kGgmlQ4_0;
    case DType::Q4_K: return kGgmlQ4_K;
    case DType::Q6_K: return kGgmlQ6_K;
  }
  return kGgmlF32;
}

std::string_view ggml_type_name(std::uint32_t id) noexcept {
  static constexpr std::array<std::string_view, 40> kNames = {
      "F32",     "F16",     "Q4_0",    "Q4_1",    "Q4_2 (removed)", "Q4_3 (removed)", "Q5_0",   "Q5_1",
      "Q8_0",    "Q8_1",    "Q2_K",    "Q3_K",    "Q4_K",           "Q5_K",           "Q6_K",   "Q8_K",
      "IQ2_XXS", "IQ2_XS",  "IQ3_XXS", "IQ1_S",   "IQ4_NL",         "IQ3_S",          "IQ2_S",  "IQ4_XS",
      "I8",      "I16",     "I32",     "I64",     "F64",            "IQ1_M",          "BF16",   "Q4_0_4_4 (removed)",
      "Q4_0_4_8 (removed)", "Q4_0_8_8 (removed)", "TQ1_0", "TQ2_0", "IQ4_NL_4_4 (removed)", "IQ4_NL_4_8 (removed)",
      "IQ4_NL_8_8 (removed)", "MXFP4"};
  return id < kNames.size() ? kNames[id] : "unknown";
}

// ---- GgufValue ------------------------------------------------------------------------------

std::size_t GgufValue::element_bytes(GgufType t, std::span<const std::byte> b) noexcept {
  if (t == GgufType::String) return 8 + static_cast<std::size_t>(load_le<std::uint64_t>(b.data()));
  if (t != GgufType::Array) return scalar_bytes(t);
  const auto et = static_cast<GgufType>(load_le<std::uint32_t>(b.data()));
  const auto n = load_le<std::uint64_t>(b.data() + 4);
  if (scalar_bytes(et) != 0) return 12 + static_cast<std::size_t>(n) * scalar_bytes(et);
  std::size_t pos = 12;
  for (std::uint64_t i = 0; i < n; ++i) pos += element_bytes(et, b.subspan(pos));
  return pos;
}

bool GgufValue::is_integer() const noexcept {
  switch (type_) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::U16:
    case GgufType::I16:
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::U64:
    case GgufType::I64: return true;
    default: return false;
  }
}

std::optional<std::int64_t> GgufValue::as_i64() const noexcept {
  const std::byte* p = raw_.data();
  switch (type_) {
    case GgufType::U8: return load_le<std::uint8_t>(p);
    case GgufType::I8: return load_le<std::int8_t>(p);
    case GgufType::U16: return load_le<std::uint16_t>(p);
    case GgufType::I16: return load_le<std::int16_t>(p);
    case GgufType::U32: return load_le<std::uint32_t>(p);
    case GgufType::I32: return load_le<std::int32_t>(p);
    case GgufType::I64: return load_le<std::int64_t>(p);
    case GgufType::U64: {
      const auto v = load_le<std::uint64_t>(p);
      if (v > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
      return static_cast<std::int64_t>(v);
    }
    default: return std::nullopt;
  }
}

std::optional<std::uint64_t> GgufValue::as_u64() const noexcept {
  if (type_ == GgufType::U64) return load_le<std::uint64_t>(raw_.data());
  const auto v = as_i64();
  if (!v || *v < 0) return std::nullopt;
  return static_cast<std::uint64_t>(*v);
}

std::optional<double> GgufValue::as_f64() const noexcept {
  if (type_ == GgufType::F32) return load_le<float>(raw_.data());
  if (type_ == GgufType::F64) return load_le<double>(raw_.data());
  return std::nullopt;
}

std::optional<bool> GgufValue::as_bool() const noexcept {
  if (type_ != GgufType::Bool) return std::nullopt;
  return static_cast<std::uint8_t>(raw_[0]) != 0;
}

std::optional<std::string_view> GgufValue::as_string() const noexcept {
  if (type_ != GgufType::String) return std::nullopt;
  return std::string_view(reinterpret_cast<const char*>(raw_.data() + 8), raw_.size() - 8);
}

GgufType GgufValue::array_type() const noexcept {
  return type_ == GgufType::Array ? static_cast<GgufType>(load_le<std::uint32_t>(raw_.data())) : GgufType::U8;
}

std::uint64_t GgufValue::array_size() const noexcept {
  return type_ == GgufType::Array ? load_le<std::uint64_t>(raw_.data() + 4) : 0;
}

GgufValue GgufValue::array_at(std::uint64_t i) const noexcept {
  const GgufType et = array_type();
  if (const std::size_t sb = scalar_bytes(et); sb != 0)
    return GgufValue(et, raw_.subspan(12 + static_cast<std::size_t>(i) * sb, sb));
  std::size_t pos = 12;
  for (std::uint64_t k = 0; k < i; ++k) pos += element_bytes(et, raw_.subspan(pos));
  return GgufValue(et, raw_.subspan(pos, element_bytes(et, raw_.subspan(pos))));
}

// ---- GgufFile -------------------------------------------------------------------------------

GgufFile::GgufFile(const std::string& path) : file_(path) {
  const std::span<const std::byte> bytes = file_.bytes();
  Cursor in(path, bytes);
  if (bytes.size() < 4 || std::memcmp(bytes.data(), "GGUF", 4) != 0) {
    std::string got;
    for (std::size_t i = 0; i < std::min<std::size_t>(4, bytes.size()); ++i) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned>(bytes[i]));
      got += buf;
    }
    in.fail("not a GGUF file: bad magic (expected \"GGUF\" = 47475546, found " +
            (got.empty() ? std::string("an empty file") : got) + ")");
  }
  in.read<std::uint32_t>("magic");
  version_ = in.read<std::uint32_t>("the version");
  if (version_ != 2 && version_ != 3) {
    if (version_ == 1) in.fail("GGUF version 1 is not supported (weft reads versions 2 and 3; re-convert the model)");
    if (version_ == 0x03000000u || version_ == 0x02000000u)
      in.fail("big-endian GGUF files are not supported (version field " + std::to_string(version_) + ")");
    in.fail("unsupported GGUF version " + std::to_string(version_) + " (weft reads versions 2 and 3)");
  }
  const auto n_tensors = in.read<std::uint64_t>("the tensor count");
  const auto n_kv = in.read<std::uint64_t>("the key/value count");
  // A key/value takes at least 13 bytes (key length, type, a 1-byte value); a tensor info 24.
  if (n_kv > in.left() / 13)
    in.fail("key/value count " + std::to_string(n_kv) + " cannot fit in the " + std::to_string(in.left()) +
            " bytes of the file after the header (truncated or corrupt)");
  if (n_tensors > in.left() / 24)
    in.fail("tensor count " + std::to_string(n_tensors) + " cannot fit in the " + std::to_string(in.left()) +
            " bytes of the file after the header (truncated or corrupt)");

  for (std::uint64_t i = 0; i < n_kv; ++i) {
    const std::string what = "key " + std::to_string(i);
    const std::string key(in.read_string(what, kMaxNameBytes));
    const auto type = in.read<std::uint32_t>("the type of key " + quote_text(key));
    if (!valid_type(type))
      in.fail("key " + quote_text(key) + " has value type " + std::to_string(type) + ", which is not a GGUF type (0..12)");
    const auto t = static_cast<GgufType>(type);
    const std::span<const std::byte> raw = in.skip_value(t, "the value of key " + quote_text(key), 0);
    if (!kv_index_.emplace(key, kvs_.size()).second) in.fail("key " + quote_text(key) + " appears more than once");
    kvs_.emplace_back(key, GgufValue(t, raw));
  }

  if (const GgufValue* a = find("general.alignment")) {
    const auto v = a->as_u64();
    if (!v || *v == 0 || *v > (1u << 30) || !std::has_single_bit(*v))
      fail_key("general.alignment", "must be a power of two (at most 2^30), got " +
                                        (v ? std::to_string(*v) : "a " + gguf_type_name(a->type())));
    alignment_ = static_cast<std::uint32_t>(*v);
  }

  struct Info {
    std::size_t index;
    std::uint64_t begin, end;
  };
  std::vector<Info> infos;
  for (std::uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    t.name = std::string(in.read_string("the name of tensor " + std::to_string(i), kMaxNameBytes));
    const std::string what = "tensor " + quote_text(t.name);
    const auto n_dims = in.read<std::uint32_t>("the dimension count of " + what);
    if (n_dims == 0 || n_dims > kMaxDims)
      in.fail(what + " has " + std::to_string(n_dims) + " dimensions (expected 1 to " + std::to_string(kMaxDims) + ")");
    std::uint64_t elements = 1;
    for (std::uint32_t d = 0; d < n_dims; ++d) {
      const auto ne = in.read<std::uint64_t>("dimension " + std::to_string(d) + " of " + what);
      if (ne == 0 || ne > static_cast<std::uint64_t>(INT64_MAX))
        in.fail(what + " has dimension ne[" + std::to_string(d) + "] = " + std::to_string(ne) +
                " (dimensions must be positive)");
      if (__builtin_mul_overflow(elements, ne, &elements) || elements > static_cast<std::uint64_t>(INT64_MAX))
        in.fail(what + " has too many elements (the product of its dimensions overflows)");
      t.ne.push_back(static_cast<std::int64_t>(ne));
    }
    t.shape.assign(t.ne.rbegin(), t.ne.rend());
    t.ggml_type = in.read<std::uint32_t>("the type of " + what);
    const auto dt = dtype_of_ggml(t.ggml_type);
    if (!dt)
      in.fail(what + ": type " + std::string(ggml_type_name(t.ggml_type)) + " (id " + std::to_string(t.ggml_type) +
              ") is not supported; supported: " + supported_types_text());
    t.dtype = *dt;
    t.offset = in.read<std::uint64_t>("the data offset of " + what);
    const std::uint64_t block = dtype_block_size(t.dtype);
    if (static_cast<std::uint64_t>(t.ne[0]) % block != 0)
      in.fail(what + " of type " + std::string(dtype_name(t.dtype)) + ": innermost dimension ne[0] = " +
              std::to_string(t.ne[0]) + " is not a multiple of the block size " + std::to_string(block));
    if (t.offset % alignment_ != 0)
      in.fail(what + ": data offset " + std::to_string(t.offset) + " is misaligned (not a multiple of the alignment " +
              std::to_string(alignment_) + ")");
    std::uint64_t n_bytes = 0;
    if (__builtin_mul_overflow(elements / block, static_cast<std::uint64_t>(dtype_block_bytes(t.dtype)), &n_bytes))
      in.fail(what + " is too large (its byte count overflows)");
    std::uint64_t end = 0;
    if (__builtin_add_overflow(t.offset, n_bytes, &end))
      in.fail(what + ": data offset " + std::to_string(t.offset) + " + " + std::to_string(n_bytes) + " bytes overflows");
    if (!tensor_index_.emplace(t.name, tensors_.size()).second) in.fail(what + " appears more than once");
    infos.push_back({tensors_.size(), t.offset, end});
    tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment after the tensor infos.
  const std::uint64_t header_end = in.pos();
  data_offset_ = (header_end + alignment_ - 1) / alignment_ * alignment_;
  const std::uint64_t data_size = bytes.size() > data_offset_ ? bytes.size() - data_offset_ : 0;

  std::sort(infos.begin(), infos.end(),
            [](const Info& a, const Info& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  const Info* furthest = nullptr;
  for (const Info& info : infos) {
    GgufTensor& t = tensors_[info.index];
    if (info.end > data_size)
      in.fail("tensor " + quote_text(t.name) + " (" + std::string(dtype_name(t.dtype)) + ", shape " + dims_text(t.shape) + ")" +
              ": data [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
              ") runs past the end of the data section, which has " + std::to_string(data_size) +
              " bytes (truncated file?)");
    if (furthest != nullptr && info.begin < furthest->end)
      in.fail("tensor " + quote_text(t.name) + ": data [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
              ") overlaps tensor " + quote_text(tensors_[furthest->index].name) + " [" + std::to_string(furthest->begin) +
              ", " + std::to_string(furthest->end) + ")");
    if (furthest == nullptr || info.end > furthest->end) furthest = &info;
    t.data = bytes.subspan(static_cast<std::size_t>(data_offset_ + info.begin),
                           static_cast<std::size_t>(info.end - info.begin));
  }
}

void GgufFile::fail_key(std::string_view key, const std::string& what) const {
  throw InputError(path() + ": key " + quote_text(key) + " " + what);
}

const GgufValue* GgufFile::find(std::string_view key) const {
  const auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second].second;
}

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufValue& GgufFile::require(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) throw InputError(path() + ": required key " + quote_text(key) + " is missing");
  return *v;
}

namespace {
// An integer value converted to T, or a message saying why not.
template <class T>
std::optional<T> int_as(const GgufValue& v, std::string& why) {
  if (!v.is_integer()) {
    why = "has type " + gguf_type_name(v.type()) + ", expected an integer";
    return std::nullopt;
  }
  if constexpr (std::is_signed_v<T>) {
    const auto x = v.as_i64();
    if (x && *x >= std::numeric_limits<T>::min() && *x <= std::numeric_limits<T>::max()) return static_cast<T>(*x);
  } else {
    const auto x = v.as_u64();
    if (x && *x <= std::numeric_limits<T>::max()) return static_cast<T>(*x);
  }
  const auto s = v.as_i64();
  why = "value " + (s ? std::to_string(*s) : std::to_string(*v.as_u64())) + " (" + gguf_type_name(v.type()) +
        ") does not fit in " + (std::is_signed_v<T> ? "i" : "u") + std::to_string(8 * sizeof(T));
  return std::nullopt;
}
}  // namespace

template <class T>
std::optional<T> GgufFile::try_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  std::string why;
  const auto x = int_as<T>(*v, why);
  if (!x) fail_key(key, why);
  return x;
}

std::optional<std::uint32_t> GgufFile::try_u32(std::string_view key) const { return try_int<std::uint32_t>(key); }
std::optional<std::int32_t> GgufFile::try_i32(std::string_view key) const { return try_int<std::int32_t>(key); }
std::optional<std::uint64_t> GgufFile::try_u64(std::string_view key) const { return try_int<std::uint64_t>(key); }

std::optional<float> GgufFile::try_f32(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  const auto x = v->as_f64();
  if (!x) fail_key(key, "has type " + gguf_type_name(v->type()) + ", expected f32");
  return static_cast<float>(*x);
}

std::optional<bool> GgufFile::try_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  const auto x = v->as_bool();
  if (!x) fail_key(key, "has type " + gguf_type_name(v->type()) + ", expected bool");
  return x;
}

std::optional<std::string> GgufFile::try_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  const auto x = v->as_string();
  if (!x) fail_key(key, "has type " + gguf_type_name(v->type()) + ", expected string");
  return std::string(*x);
}

std::uint32_t GgufFile::get_u32(std::string_view key) const {
  require(key);
  return *try_u32(key);
}
std::int32_t GgufFile::get_i32(std::string_view key) const {
  require(key);
  return *try_i32(key);
}
std::uint64_t GgufFile::get_u64(std::string_view key) const {
  require(key);
  return *try_u64(key);
}
float GgufFile::get_f32(std::string_view key) const {
  require(key);
  return *try_f32(key);
}
bool GgufFile::get_bool(std::string_view key) const {
  require(key);
  return *try_bool(key);
}
std::string GgufFile::get_string(std::string_view key) const {
  require(key);
  return *try_string(key);
}

template <class T, class Convert>
std::optional<std::vector<T>> GgufFile::try_array(std::string_view key, GgufType want, Convert convert) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type() != GgufType::Array)
    fail_key(key, "has type " + gguf_type_name(v->type()) + ", expected an array of " + gguf_type_name(want));
  std::vector<T> out;
  out.reserve(static_cast<std::size_t>(v->array_size()));
  v->for_each([&](const GgufValue& e) {
    std::string why;
    std::optional<T> x = convert(e, why);
    if (!x) fail_key(key, "element " + std::to_string(out.size()) + " " + why);
    out.push_back(std::move(*x));
  });
  return out;
}

std::optional<std::vector<std::string>> GgufFile::try_string_array(std::string_view key) const {
  return try_array<std::string>(key, GgufType::String, [](const GgufValue& e, std::string& why) -> std::optional<std::string> {
    const auto s = e.as_string();
    if (!s) {
      why = "has type " + gguf_type_name(e.type()) + ", expected string";
      return std::nullopt;
    }
    return std::string(*s);
  });
}

std::optional<std::vector<float>> GgufFile::try_f32_array(std::string_view key) const {
  return try_array<float>(key, GgufType::F32, [](const GgufValue& e, std::string& why) -> std::optional<float> {
    const auto x = e.as_f64();
    if (!x) {
      why = "has type " + gguf_type_name(e.type()) + ", expected f32";
      return std::nullopt;
    }
    return static_cast<float>(*x);
  });
}

std::optional<std::vector<std::int32_t>> GgufFile::try_i32_array(std::string_view key) const {
  return try_array<std::int32_t>(key, GgufType::I32, [](const GgufValue& e, std::string& why) {
    return int_as<std::int32_t>(e, why);
  });
}

std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
  require(key);
  return *try_string_array(key);
}
std::vector<float> GgufFile::get_f32_array(std::string_view key) const {
  require(key);
  return *try_f32_array(key);
}
std::vector<std::int32_t> GgufFile::get_i32_array(std::string_view key) const {
  require(key);
  return *try_i32_array(key);
}

// ---- GgufWriter -----------------------------------------------------------------------------

namespace {
template <class T>
void append_le(std::string& out, T v) {
  std::array<char, sizeof(T)> b = std::bit_cast<std::array<char, sizeof(T)>>(v);
  if constexpr (std::endian::native == std::endian::big) std::reverse(b.begin(), b.end());
  out.append(b.data(), b.size());
}
void append_string(std::string& out, std::string_view s) {
  append_le<std::uint64_t>(out, s.size());
  out.append(s);
}
}  // namespace

GgufWriter::GgufWriter(std::string path, std::uint32_t alignment)
    : path_(std::move(path)), tmp_(path_ + ".tmp"), alignment_(alignment) {
  if (alignment == 0 || !std::has_single_bit(alignment))
    throw UsageError("gguf writer: alignment " + std::to_string(alignment) + " is not a power of two");
  if (alignment != 32) add_u32("general.alignment", alignment);
}

GgufWriter::~GgufWriter() {
  if (out_ != nullptr) std::fclose(out_);
  if (!finished_ && header_written_) std::remove(tmp_.c_str());
}

void GgufWriter::add_kv(std::string key, GgufType type, std::string_view encoded) {
  if (header_written_) throw UsageError("gguf writer: key " + key + " added after tensor data was written");
  if (std::find(keys_.begin(), keys_.end(), key) != keys_.end())
    throw UsageError("gguf writer: key " + key + " added twice");
  append_string(kv_bytes_, key);
  append_le<std::uint32_t>(kv_bytes_, static_cast<std::uint32_t>(type));
  kv_bytes_.append(encoded);
  keys_.push_back(std::move(key));
  ++kv_count_;
}

void GgufWriter::add_u8(std::string key, std::uint8_t v) { add_kv(std::move(key), GgufType::U8, std::string(1, static_cast<char>(v))); }
void GgufWriter::add_u32(std::string key, std::uint32_t v) {
  std::string e;
  append_le(e, v);
  add_kv(std::move(key), GgufType::U32, e);
}
void GgufWriter::add_i32(std::string key, std::int32_t v) {
  std::string e;
  append_le(e, v);
  add_kv(std::move(key), GgufType::I32, e);
}
void GgufWriter::add_u64(std::string key, std::uint64_t v) {
  std::string e;
  append_le(e, v);
  add_kv(std::move(key), GgufType::U64, e);
}
void GgufWriter::add_f32(std::string key, float v) {
  std::string e;
  append_le(e, v);
  add_kv(std::move(key), GgufType::F32, e);
}
void GgufWriter::add_bool(std::string key, bool v) { add_kv(std::move(key), GgufType::Bool, std::string(1, v ? '\1' : '\0')); }
void GgufWriter::add_string(std::string key, std::string_view v) {
  std::string e;
  append_string(e, v);
  add_kv(std::move(key), GgufType::String, e);
}
void GgufWriter::add_string_array(std::string key, const std::vector<std::string>& v) {
  std::string e;
  append_le<std::uint32_t>(e, static_cast<std::uint32_t>(GgufType::String));
  append_le<std::uint64_t>(e, v.size());
  for (const std::string& s : v) append_string(e, s);
  add_kv(std::move(key), GgufType::Array, e);
}
void GgufWriter::add_f32_array(std::string key, std::span<const float> v) {
  std::string e;
  append_le<std::uint32_t>(e, static_cast<std::uint32_t>(GgufType::F32));
  append_le<std::uint64_t>(e, v.size());
  for (const float x : v) append_le(e, x);
  add_kv(std::move(key), GgufType::Array, e);
}
void GgufWriter::add_i32_array(std::string key, std::span<const std::int32_t> v) {
  std::string e;
  append_le<std::uint32_t>(e, static_cast<std::uint32_t>(GgufType::I32));
  append_le<std::uint64_t>(e, v.size());
  for (const std::int32_t x : v) append_le(e, x);
  add_kv(std::move(key), GgufType::Array, e);
}

std::size_t GgufWriter::add_tensor(std::string name, DType dtype, std::vector<std::int64_t> shape) {
  const std::string what = "gguf writer: tensor " + name;
  if (header_written_) throw UsageError(what + " declared after tensor data was written");
  for (const Tensor& t : tensors_)
    if (t.name == name) throw UsageError(what + " declared twice");
  if (shape.empty() || shape.size() > kMaxDims)
    throw UsageError(what + " has " + std::to_string(shape.size()) + " dimensions (1 to 4 allowed)");
  std::uint64_t elements = 1;
  for (const std::int64_t d : shape)
    if (d <= 0 || __builtin_mul_overflow(elements, static_cast<std::uint64_t>(d), &elements))
      throw UsageError(what + " has shape " + dims_text(shape) + " (dims must be positive, product must fit)");
  if (static_cast<std::uint64_t>(shape.back()) % dtype_block_size(dtype) != 0)
    throw UsageError(what + ": innermost dimension " + std::to_string(shape.back()) + " is not a multiple of " +
                     std::string(dtype_name(dtype)) + "'s block size " + std::to_string(dtype_block_size(dtype)));
  const std::uint64_t bytes = elements / dtype_block_size(dtype) * dtype_block_bytes(dtype);
  if (bytes > SIZE_MAX / 2) throw UsageError(what + " is too large");
  tensors_.push_back(Tensor{std::move(name), dtype, std::move(shape), static_cast<std::size_t>(bytes), next_offset_});
  next_offset_ += (bytes + alignment_ - 1) / alignment_ * alignment_;
  return static_cast<std::size_t>(bytes);
}

void GgufWriter::put(const void* p, std::size_t n) {
  if (n != 0 && std::fwrite(p, 1, n, out_) != n) throw InputError(path_ + ": write failed (disk full?)");
}

void GgufWriter::write_header() {
  out_ = std::fopen(tmp_.c_str(), "wb");
  if (out_ == nullptr) throw InputError(path_ + ": cannot create " + tmp_);
  header_written_ = true;
  std::string h = "GGUF";
  append_le<std::uint32_t>(h, 3);
  append_le<std::uint64_t>(h, tensors_.size());
  append_le<std::uint64_t>(h, kv_count_);
  h += kv_bytes_;
  for (const Tensor& t : tensors_) {
    append_string(h, t.name);
    append_le<std::uint32_t>(h, static_cast<std::uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) append_le<std::uint64_t>(h, static_cast<std::uint64_t>(*it));
    append_le<std::uint32_t>(h, ggml_type_of(t.dtype));
    append_le<std::uint64_t>(h, t.offset);
  }
  h.append((alignment_ - h.size() % alignment_) % alignment_, '\0');
  put(h.data(), h.size());
}

void GgufWriter::write_tensor(std::span<const std::byte> bytes) {
  if (finished_) throw UsageError("gguf writer: " + path_ + " is already finished");
  if (!header_written_) write_header();
  if (written_ >= tensors_.size())
    throw UsageError("gguf writer: more tensors written than the " + std::to_string(tensors_.size()) + " declared");
  const Tensor& t = tensors_[written_];
  if (bytes.size() != t.bytes)
    throw UsageError("gguf writer: tensor " + t.name + " needs " + std::to_string(t.bytes) + " bytes, got " +
                     std::to_string(bytes.size()));
  put(bytes.data(), bytes.size());
  static constexpr std::array<char, 256> kZeros{};
  for (std::size_t pad = (alignment_ - t.bytes % alignment_) % alignment_; pad > 0;) {
    const std::size_t n = std::min(pad, kZeros.size());
    put(kZeros.data(), n);
    pad -= n;
  }
  ++written_;
}

void GgufWriter::finish() {
  if (finished_) return;
  if (!header_written_) write_header();
  if (written_ != tensors_.size())
    throw UsageError("gguf writer: " + std::to_string(written_) + " of " + std::to_string(tensors_.size()) +
                     " tensors written; tensor " + tensors_[written_].name + " is missing");
  const int closed = std::fclose(out_);
  out_ = nullptr;
  if (closed != 0) throw InputError(path_ + ": write failed when closing (disk full?)");
  std::error_code ec;
  std::filesystem::rename(tmp_, path_, ec);
  if (ec) throw InputError(path_ + ": cannot move " + tmp_ + " into place: " + ec.message());
  finished_ = true;
}

}  // namespace weft::io
