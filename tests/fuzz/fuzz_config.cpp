// Fuzz target: a Hugging Face config.json. A config that parses has passed validation, so the
// sizes the loader derives from it must be usable.
#include "fuzz_common.hpp"
#include "model/config.hpp"
#include "weft/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = weft::fuzz::write_input("config.json", data, size);
  try {
    const weft::model::MistralConfig c = weft::model::parse_hf_config(path);
    // The loader multiplies these as int; UBSan reports an overflow, a wrap to <= 0 aborts.
    if (c.q_dim() <= 0 || c.kv_dim() <= 0) std::abort();
  } catch (const weft::Error&) {
  }
  return 0;
}
