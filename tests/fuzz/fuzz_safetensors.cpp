// Fuzz target: a .safetensors file (8-byte header length, JSON header, tensor data).
// Every entry that parses must lie inside the file: its bytes are read to let ASan check.
#include "fuzz_common.hpp"
#include "io/safetensors.hpp"
#include "weft/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = weft::fuzz::write_input("model.safetensors", data, size);
  try {
    const weft::io::SafetensorsFile file(path);
    volatile unsigned sink = 0;
    for (const auto& e : file.entries()) {
      sink = sink + weft::fuzz::touch(e.data);
      if (file.find(e.name) != &e) std::abort();  // the name table must agree with the entries
      if (e.data.size() != weft::dtype_bytes(e.dtype, 1) * [&] {
            std::size_t n = 1;
            for (auto d : e.shape) n *= static_cast<std::size_t>(d);
            return n;
          }())
        std::abort();  // a parsed entry's byte count must match its shape
    }
    for (const auto& [k, v] : file.metadata()) sink = sink + static_cast<unsigned>(k.size() + v.size());
  } catch (const weft::Error&) {
  }
  return 0;
}
