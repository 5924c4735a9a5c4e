// Streaming detokenization, following SentencePiece's decode: control tokens are invisible, a
// run of byte pieces is decoded as UTF-8 with U+FFFD for each byte that does not form a valid
// character, and the first text token loses the "▁" that the dummy prefix added.
#include "tokenizer/tokenizer.hpp"
#include "tokenizer/utf8.hpp"

namespace weft::tok {

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool strip_leading_space)
    : tokenizer_(&tokenizer),
      // SentencePiece strips only when the normalizer could have put a space there.
      at_start_(strip_leading_space && (tokenizer.add_dummy_prefix() || tokenizer.remove_extra_whitespaces())) {}

// Any non-byte token ends a run of byte pieces: what is still pending can no longer complete.
std::string StreamDecoder::drain_invalid() {
  std::string out;
  for (std::size_t i = 0; i < pending_.size(); ++i) out += utf8::kReplacement;
  pending_.clear();
  return out;
}

std::string StreamDecoder::push(int32_t id) {
  const Piece& p = tokenizer_->piece(id);  // throws for a bad id
  std::string out;
  if (p.type == PieceType::Byte) {
    pending_ += static_cast<char>(tokenizer_->byte_value(id));
    at_start_ = false;  // the byte becomes visible text, valid or not
    std::size_t i = 0;
    while (i < pending_.size()) {
      const int len = utf8::classify(std::string_view(pending_).substr(i));
      if (len < 0) break;  // unfinished character: hold it back
      if (len == 0) {
        out += utf8::kReplacement;
        ++i;
      } else {
        out.append(pending_, i, static_cast<std::size_t>(len));
        i += static_cast<std::size_t>(len);
      }
    }
    pending_.erase(0, i);
    return out;
  }
  out = drain_invalid();
  if (!out.empty()) at_start_ = false;
  if (p.type == PieceType::Control) return out;
  std::string surface = tokenizer_->token_bytes(id);
  if (at_start_ && p.type != PieceType::Unknown) {
    const bool had_space = !surface.empty() && surface[0] == ' ' && p.text.starts_with(utf8::kSpaceSymbol);
    if (had_space) surface.erase(0, 1);
    // SentencePiece drops one dummy-prefix space; with remove_extra_whitespaces it keeps dropping
    // leading space tokens until text appears.
    if ((had_space && !tokenizer_->remove_extra_whitespaces()) || !surface.empty()) at_start_ = false;
  }
  if (!surface.empty()) at_start_ = false;
  return out + surface;
}

std::string StreamDecoder::flush() {
  std::string out = drain_invalid();
  at_start_ = false;
  return out;
}

std::string decode(const Tokenizer& tokenizer, std::span<const int32_t> ids) {
  StreamDecoder decoder(tokenizer);
  std::string text;
  for (const int32_t id : ids) text += decoder.push(id);
  return text + decoder.flush();
}

}  // namespace weft::tok
