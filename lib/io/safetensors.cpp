#include "io/safetensors.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <tuple>

#include "weft/error.hpp"

namespace weft::io {

namespace {
using nlohmann::json;
namespace fs = std::filesystem;

constexpr std::string_view kMetadataKey = "__metadata__";

[[noreturn]] void fail(const std::string& file, const std::string& what) { throw InputError(file + ": " + what); }
[[noreturn]] void fail_tensor(const std::string& file, const std::string& tensor, const std::string& what) {
  throw InputError(file + ": tensor " + tensor + ": " + what);
}

std::optional<DType> parse_dtype(std::string_view s) {
  if (s == "F32") return DType::F32;
  if (s == "F16") return DType::F16;
  if (s == "BF16") return DType::BF16;
  return std::nullopt;
}

// The dtypes of the safetensors format that weft does not read (so they get a precise message).
bool is_other_safetensors_dtype(std::string_view s) {
  constexpr std::array<std::string_view, 17> kOthers = {
      "BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F64", "C64",
      "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2"};
  return std::find(kOthers.begin(), kOthers.end(), s) != kOthers.end();
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Bytes of a tensor, or nullopt when the count does not fit in 64 bits.
std::optional<std::uint64_t> tensor_bytes(DType dtype, const std::vector<std::int64_t>& shape) {
  std::uint64_t n = dtype_bytes(dtype, 1);
  for (const std::int64_t d : shape)
    if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(d), &n)) return std::nullopt;
  return n;
}

// A non-negative JSON integer, or nullopt (negative, fractional, not a number).
std::optional<std::uint64_t> as_count(const json& j) {
  if (j.is_number_unsigned()) return j.get<std::uint64_t>();
  return std::nullopt;
}

struct Parsed {
  SafetensorsEntry entry;
  std::uint64_t begin, end;
};

// One header entry, checked on its own; its data span is set once the offsets are checked against the file.
Parsed parse_entry(const std::string& path, const std::string& name, const json& v) {
  if (!v.is_object()) fail_tensor(path, name, "header entry is not a JSON object");
  const auto dtype_it = v.find("dtype");
  const auto shape_it = v.find("shape");
  const auto offsets_it = v.find("data_offsets");
  if (dtype_it == v.end() || !dtype_it->is_string()) fail_tensor(path, name, "missing \"dtype\" string");
  if (shape_it == v.end() || !shape_it->is_array()) fail_tensor(path, name, "missing \"shape\" array");
  if (offsets_it == v.end() || !offsets_it->is_array() || offsets_it->size() != 2)
    fail_tensor(path, name, "missing \"data_offsets\" [begin, end]");

  Parsed p;
  p.entry.name = name;
  const std::string dtype = dtype_it->get<std::string>();
  const auto dt = parse_dtype(dtype);
  if (!dt) {
    throw InputError((is_other_safetensors_dtype(dtype) ? "unsupported dtype " : "unknown dtype ") + dtype +
                     " for tensor " + name + " in " + path + " (weft reads F32, F16, BF16)");
  }
  p.entry.dtype = *dt;

  for (const json& d : *shape_it) {
    if (!d.is_number_integer()) fail_tensor(path, name, "shape " + shape_it->dump() + " has a non-integer dimension");
    if (d.is_number_unsigned() ? d.get<std::uint64_t>() > INT64_MAX : d.get<std::int64_t>() < 0)
      fail_tensor(path, name, "shape " + shape_it->dump() + " has a negative or out-of-range dimension");
    p.entry.shape.push_back(d.get<std::int64_t>());
  }

  const auto begin = as_count((*offsets_it)[0]), end = as_count((*offsets_it)[1]);
  if (!begin || !end)
    fail_tensor(path, name, "data_offsets " + offsets_it->dump() + " are not two non-negative integers");
  p.begin = *begin;
  p.end = *end;
  if (p.begin > p.end)
    fail_tensor(path, name, "data_offsets begin " + std::to_string(p.begin) + " > end " + std::to_string(p.end));

  const auto bytes = tensor_bytes(p.entry.dtype, p.entry.shape);
  if (!bytes) fail_tensor(path, name, "shape " + shape_text(p.entry.shape) + " is too large (byte count overflows)");
  if (*bytes != p.end - p.begin) {
    fail_tensor(path, name,
                "shape " + shape_text(p.entry.shape) + " of " + dtype + " needs " + std::to_string(*bytes) +
                    " bytes, but data_offsets [" + std::to_string(p.begin) + ", " + std::to_string(p.end) +
                    "] hold " + std::to_string(p.end - p.begin));
  }
  return p;
}
}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  const std::span<const std::byte> bytes = file_.bytes();
  if (bytes.size() < 8)
    fail(path, "file has " + std::to_string(bytes.size()) + " bytes, shorter than the 8-byte header length");
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<std::uint8_t>(bytes[i]);
  if (header_len > bytes.size() - 8) {
    fail(path, "header length " + std::to_string(header_len) + " is larger than the " +
                   std::to_string(bytes.size() - 8) + " bytes after it (truncated or not a safetensors file)");
  }
  const auto* text = reinterpret_cast<const char*>(bytes.data() + 8);
  const std::span<const std::byte> data = bytes.subspan(8 + header_len);

  // nlohmann keeps the last of duplicate keys, so the duplicates are caught as the keys are parsed.
  std::set<std::string, std::less<>> keys;
  std::string duplicate;
  const json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && !keys.insert(parsed.get<std::string>()).second &&
        duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  json header;
  try {
    header = json::parse(text, text + header_len, on_event);
  } catch (const json::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");
  if (!duplicate.empty()) fail_tensor(path, duplicate, "name appears more than once in the header");

  std::vector<Parsed> parsed;
  for (const auto& [name, value] : header.items()) {
    if (name == kMetadataKey) {
      if (!value.is_object()) fail(path, "\"__metadata__\" is not a JSON object");
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) fail(path, "\"__metadata__\" value for key " + k + " is not a string");
        metadata_.emplace(k, v.get<std::string>());
      }
      continue;
    }
    parsed.push_back(parse_entry(path, name, value));
  }

  // In data order, so a truncated file names its first incomplete tensor; an empty tensor overlaps nothing.
  std::sort(parsed.begin(), parsed.end(),
            [](const Parsed& a, const Parsed& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  const Parsed* furthest = nullptr;
  for (Parsed& p : parsed) {
    if (p.end > data.size()) {
      fail_tensor(path, p.entry.name,
                  "data ends at byte " + std::to_string(p.end) + " of the data section, which has only " +
                      std::to_string(data.size()) + " bytes (truncated file?)");
    }
    p.entry.data = data.subspan(p.begin, p.end - p.begin);
    if (p.begin == p.end) continue;
    if (furthest != nullptr && p.begin < furthest->end) {
      fail_tensor(path, p.entry.name,
                  "data [" + std::to_string(p.begin) + ", " + std::to_string(p.end) + ") overlaps tensor " +
                      furthest->entry.name + " [" + std::to_string(furthest->begin) + ", " +
                      std::to_string(furthest->end) + ")");
    }
    if (furthest == nullptr || p.end > furthest->end) furthest = &p;
  }
  entries_.reserve(parsed.size());
  for (Parsed& p : parsed) {
    by_name_.emplace(p.entry.name, entries_.size());
    entries_.push_back(std::move(p.entry));
  }
}

const SafetensorsEntry* SafetensorsFile::find(std::string_view name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

SafetensorsSet SafetensorsSet::open_directory(const std::string& dir) {
  SafetensorsSet set;
  std::error_code ec;
  const fs::path root(dir);
  const fs::path index = root / "model.safetensors.index.json";

  if (fs::is_regular_file(root, ec) || (fs::is_directory(root, ec) && !fs::exists(index, ec))) {
    const fs::path single = fs::is_directory(root, ec) ? root / "model.safetensors" : root;
    if (!fs::exists(single, ec))
      throw InputError(dir + ": has neither model.safetensors nor model.safetensors.index.json");
    set.files_.push_back(std::make_unique<SafetensorsFile>(single.string()));
    for (const SafetensorsEntry& e : set.files_[0]->entries()) set.by_name_.emplace(e.name, Location{&e, 0});
    return set;
  }
  if (!fs::is_directory(root, ec)) throw InputError(dir + ": no such file or directory");

  const std::string index_path = index.string();
  json j;
  try {
    j = json::parse(read_text_file(index_path));
  } catch (const json::exception& e) {
    fail(index_path, std::string("not valid JSON: ") + e.what());
  }
  const auto map_it = j.is_object() ? j.find("weight_map") : j.end();
  if (!j.is_object() || map_it == j.end() || !map_it->is_object() || map_it->empty())
    fail(index_path, "has no \"weight_map\" object listing tensors");

  std::map<std::string, std::size_t> shard_index;  // shard file name -> position in files_
  for (const auto& [name, value] : map_it->items()) {
    if (!value.is_string()) fail_tensor(index_path, name, "weight_map value is not a file name");
    const std::string shard = value.get<std::string>();
    const std::string shard_path = (root / shard).string();
    auto [it, added] = shard_index.emplace(shard, set.files_.size());
    if (added) {
      if (!fs::is_regular_file(shard_path, ec))
        fail_tensor(index_path, name, "is mapped to " + shard_path + ", which does not exist");
      set.files_.push_back(std::make_unique<SafetensorsFile>(shard_path));
    }
    const SafetensorsEntry* e = set.files_[it->second]->find(name);
    if (e == nullptr) fail_tensor(index_path, name, "is mapped to " + shard_path + ", which has no such tensor");
    set.by_name_.emplace(name, Location{e, it->second});
  }
  // The converse: a shard must not hold tensors the index does not send to it.
  for (std::size_t f = 0; f < set.files_.size(); ++f) {
    for (const SafetensorsEntry& e : set.files_[f]->entries()) {
      const auto it = set.by_name_.find(e.name);
      if (it == set.by_name_.end() || it->second.file != f) {
        fail_tensor(set.files_[f]->path(), e.name,
                    "is not mapped to this file by " + index_path +
                        (it == set.by_name_.end() ? " (not listed)" : " (listed for " + set.file_of(e.name) + ")"));
      }
    }
  }
  return set;
}

const SafetensorsEntry* SafetensorsSet::find(std::string_view name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second.entry;
}

const std::string& SafetensorsSet::file_of(std::string_view name) const {
  static const std::string kNone;
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? kNone : files_[it->second.file]->path();
}

std::vector<std::string> SafetensorsSet::names() const {
  std::vector<std::string> out;
  out.reserve(by_name_.size());
  for (const auto& [name, loc] : by_name_) out.push_back(name);
  return out;
}

void SafetensorsWriter::add(std::string name, DType dtype, std::vector<std::int64_t> shape) {
  if (name == kMetadataKey) throw UsageError("safetensors writer: tensor name " + name + " is reserved");
  for (const Tensor& t : tensors_)
    if (t.name == name) throw UsageError("safetensors writer: tensor " + name + " declared twice");
  for (const std::int64_t d : shape)
    if (d < 0) throw UsageError("safetensors writer: tensor " + name + " has negative shape " + shape_text(shape));
  const auto bytes = tensor_bytes(dtype, shape);
  if (!bytes || *bytes > SIZE_MAX) throw UsageError("safetensors writer: tensor " + name + " is too large");
  tensors_.push_back(Tensor{std::move(name), dtype, std::move(shape), static_cast<std::size_t>(*bytes)});
}

void SafetensorsWriter::write(const std::string& path,
                              const std::function<void(std::size_t, std::span<std::byte>)>& fill) const {
  // Tensors stay in declaration order and packed without gaps, as the reference implementation
  // requires; so a tensor after an odd number of 2-byte elements starts unaligned (allowed).
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) header[std::string(kMetadataKey)] = metadata_;
  std::uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes}}};
    offset += t.bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-aligned

  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  std::FILE* out = std::fopen(tmp.c_str(), "wb");
  if (out == nullptr) throw InputError(path + ": cannot create " + tmp);
  struct Cleanup {  // removes the temporary unless the rename happened
    std::FILE*& f;
    const std::string& tmp;
    bool done = false;
    ~Cleanup() {
      if (f != nullptr) std::fclose(f);
      if (!done) std::remove(tmp.c_str());
    }
  } cleanup{out, tmp};

  auto put = [&](const void* p, std::size_t n) {
    if (n != 0 && std::fwrite(p, 1, n, out) != n) throw InputError(path + ": write failed (disk full?)");
  };
  std::array<unsigned char, 8> len{};
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(static_cast<std::uint64_t>(text.size()) >> (8 * i));
  put(len.data(), len.size());
  put(text.data(), text.size());
  std::vector<std::byte> buf;
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    buf.assign(tensors_[i].bytes, std::byte{0});
    fill(i, buf);
    put(buf.data(), buf.size());
  }
  const int closed = std::fclose(out);
  out = nullptr;
  if (closed != 0) throw InputError(path + ": write failed when closing (disk full?)");
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw InputError(path + ": cannot move " + tmp + " into place: " + ec.message());
  cleanup.done = true;
}

}  // namespace weft::io
