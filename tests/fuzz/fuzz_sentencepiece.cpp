// Fuzz target: a SentencePiece tokenizer.model (ModelProto protobuf), read from a file as the
// loader does; a model that loads is then used to encode and decode.
#include "fuzz_common.hpp"
#include "fuzz_tokenizer_common.hpp"
#include "weft/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = weft::fuzz::write_input("tokenizer.model", data, size);
  try {
    const auto t = weft::tok::Tokenizer::from_sentencepiece_file(path);
    weft::fuzz::exercise_tokenizer(t);
  } catch (const weft::Error&) {
  }
  return 0;
}
