// Fuzz target: a llama2.c tokenizer.bin; a file that loads is then used to encode and decode.
#include "fuzz_common.hpp"
#include "fuzz_tokenizer_common.hpp"
#include "weft/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = weft::fuzz::write_input("tokenizer.bin", data, size);
  try {
    const auto t = weft::tok::Tokenizer::from_llama2c_file(path);
    weft::fuzz::exercise_tokenizer(t);
  } catch (const weft::Error&) {
  }
  return 0;
}
