// Fuzz target: a GGUF file (header, typed key/values, tensor infos, aligned data). Every tensor
// that parses must lie inside the file (its bytes are read so ASan checks the span) and hold
// exactly its shape's bytes; every value is walked through the typed accessors; then the model
// metadata, the tokenizer and the whole loader run on it.
#include "fuzz_common.hpp"
#include "io/gguf.hpp"
#include "model/gguf_model.hpp"
#include "model/weights.hpp"
#include "weft/error.hpp"

namespace {

unsigned walk(const weft::io::GgufValue& v, int depth) {
  unsigned sum = 0;
  if (v.as_i64()) sum += static_cast<unsigned>(*v.as_i64());
  if (v.as_u64()) sum += static_cast<unsigned>(*v.as_u64());
  if (v.as_f64()) sum += *v.as_f64() > 0 ? 1u : 0u;
  if (v.as_bool()) sum += *v.as_bool() ? 1u : 0u;
  if (const auto s = v.as_string()) sum += weft::fuzz::touch(*s);
  if (v.type() == weft::io::GgufType::Array) {
    std::uint64_t n = 0;
    v.for_each([&](const weft::io::GgufValue& e) {
      sum += walk(e, depth + 1);
      ++n;
    });
    if (n != v.array_size()) std::abort();
    if (n > 0) sum += walk(v.array_at(n - 1), depth + 1);
  }
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = weft::fuzz::write_input("model.gguf", data, size);
  try {
    const weft::io::GgufFile file(path);
    volatile unsigned sink = 0;
    for (const auto& [key, value] : file.metadata()) {
      if (file.find(key) != &value) std::abort();  // the key index must agree with the list
      sink = sink + walk(value, 0);
    }
    for (const auto& t : file.tensors()) {
      sink = sink + weft::fuzz::touch(t.data);
      if (file.find_tensor(t.name) != &t) std::abort();
      std::size_t n = 1;
      for (auto d : t.ne) n *= static_cast<std::size_t>(d);
      if (t.data.size() != weft::dtype_bytes(t.dtype, n) || t.offset % file.alignment() != 0) std::abort();
    }
    try {
      (void)weft::model::config_from_gguf(file);
    } catch (const weft::Error&) {
    }
    try {
      if (weft::model::gguf_has_tokenizer(file)) {
        const auto tok = weft::model::tokenizer_from_gguf(file);
        sink = sink + static_cast<unsigned>(tok.encode("Hello world", true).size());
      }
    } catch (const weft::Error&) {
    }
    const weft::model::LoadedModel m = weft::model::load_model(path, "", true);
    sink = sink + static_cast<unsigned>(m.weights.layers.size());
  } catch (const weft::Error&) {
  }
  return 0;
}
