#pragma once
// Text <-> token ids with a SentencePiece-style BPE vocabulary (byte fallback).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace weft {

namespace tok {
class Tokenizer;
class StreamDecoder;
}  // namespace tok

class Tokenizer {
 public:
  // Loads a SentencePiece tokenizer.model, or a llama2.c tokenizer.bin (by its .bin suffix).
  // Throws InputError naming the file when it cannot be read or parsed.
  static Tokenizer load(const std::string& path);

  // Token ids for text; BOS first when add_bos. Thread-safe (const).
  std::vector<std::int32_t> encode(std::string_view text, bool add_bos = true) const;
  // The text of a whole id sequence (BOS/EOS and other control tokens print nothing).
  std::string decode(std::span<const std::int32_t> ids) const;
  std::int32_t bos_id() const;
  std::int32_t eos_id() const;
  std::int32_t vocab_size() const;

  // Turns ids into text as they arrive, holding back incomplete UTF-8 sequences.
  class Stream {
   public:
    // at_text_start: the ids begin the text, so the space the tokenizer's dummy prefix put
    // before the first word is dropped; false when continuing after a prompt.
    explicit Stream(const Tokenizer& t, bool at_text_start = true);
    ~Stream();
    Stream(Stream&&) noexcept;
    // Text that is complete after this id (possibly empty).
    std::string push(std::int32_t id);
    // Whatever is still held back (an incomplete sequence becomes U+FFFD).
    std::string flush();

   private:
    std::unique_ptr<tok::StreamDecoder> impl_;
  };

  explicit Tokenizer(std::shared_ptr<const tok::Tokenizer> impl);
  const tok::Tokenizer& impl() const { return *impl_; }

 private:
  std::shared_ptr<const tok::Tokenizer> impl_;
};

}  // namespace weft
