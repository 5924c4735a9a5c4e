#pragma once
// What the tokenizer targets do with a tokenizer that loaded: encode a few texts and decode
// every id, so a vocabulary that parses but breaks the BPE engine or the decoder is found too.
#include <cstdlib>
#include <string_view>

#include "tokenizer/tokenizer.hpp"

namespace weft::fuzz {

inline void exercise_tokenizer(const tok::Tokenizer& t) {
  static constexpr std::string_view kTexts[] = {
      "Hello world", "  two  spaces ", "\xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x99\x82 caf\xC3\xA9", "<s> \xFF\xC3 </s>", ""};
  for (const std::string_view text : kTexts) {
    for (const bool bos : {false, true}) {
      if (bos && t.bos_id() < 0) continue;  // encode would refuse with UsageError: tested elsewhere
      for (const std::int32_t id : t.encode(text, bos))
        if (id < 0 || id >= t.vocab_size()) std::abort();  // encode produced an id outside the vocabulary
    }
  }
  tok::StreamDecoder d(t);
  std::size_t n = 0;
  for (std::int32_t id = 0; id < t.vocab_size(); ++id) n += d.push(id).size() + t.token_bytes(id).size();
  n += d.flush().size();
  (void)n;
}

}  // namespace weft::fuzz
