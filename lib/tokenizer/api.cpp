// The public weft::Tokenizer over the internal BPE tokenizer.
#include "tokenizer/tokenizer.hpp"
#include "weft/tokenizer.hpp"

namespace weft {

Tokenizer Tokenizer::load(const std::string& path) {
  return Tokenizer(std::make_shared<const tok::Tokenizer>(path.ends_with(".bin") ? tok::Tokenizer::from_llama2c_file(path)
                                                                                 : tok::Tokenizer::from_sentencepiece_file(path)));
}

Tokenizer::Tokenizer(std::shared_ptr<const tok::Tokenizer> impl) : impl_(std::move(impl)) {}

std::vector<std::int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const { return impl_->encode(text, add_bos); }
std::string Tokenizer::decode(std::span<const std::int32_t> ids) const { return tok::decode(*impl_, ids); }
std::int32_t Tokenizer::bos_id() const { return impl_->bos_id(); }
std::int32_t Tokenizer::eos_id() const { return impl_->eos_id(); }
std::int32_t Tokenizer::vocab_size() const { return impl_->vocab_size(); }

Tokenizer::Stream::Stream(const Tokenizer& t, bool at_text_start)
    : impl_(std::make_unique<tok::StreamDecoder>(t.impl(), at_text_start)) {}
Tokenizer::Stream::~Stream() = default;
Tokenizer::Stream::Stream(Stream&&) noexcept = default;
std::string Tokenizer::Stream::push(std::int32_t id) { return impl_->push(id); }
std::string Tokenizer::Stream::flush() { return impl_->flush(); }

}  // namespace weft
