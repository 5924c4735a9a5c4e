#pragma once
// UTF-8 helpers shared by the encoder and the streaming decoder (internal).
#include <string_view>

namespace weft::tok::utf8 {

inline constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";        // U+2581 "▁"
inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";        // U+FFFD
inline constexpr std::string_view kUnknownSurface = " \xE2\x81\x87 ";  // " ⁇ ", SentencePiece's <unk> text

// Classifies the start of `s` (non-empty): returns n > 0 when s begins with a valid n-byte
// character; 0 when s[0] cannot begin one (stray continuation, overlong form, surrogate, beyond
// U+10FFFF); -n when all n bytes of `s` are a valid but unfinished character.
inline int classify(std::string_view s) noexcept {
  const auto b0 = static_cast<unsigned char>(s[0]);
  if (b0 < 0x80) return 1;
  int len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // beyond U+10FFFF
  } else {
    return 0;
  }
  for (int i = 1; i < len; ++i) {
    if (static_cast<std::size_t>(i) == s.size()) return -i;
    const auto b = static_cast<unsigned char>(s[static_cast<std::size_t>(i)]);
    if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
  }
  return len;
}

}  // namespace weft::tok::utf8
