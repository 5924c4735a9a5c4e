// The generation loop over the public Session: prefill the prompt, then sample and decode one
// token at a time.
#include <chrono>
#include <vector>

#include "generate/sampler.hpp"
#include "weft/error.hpp"
#include "weft/generate.hpp"

namespace weft {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

GenerateResult generate_ids(Session& session, std::span<const std::int32_t> prompt, const GenerateOptions& options,
                            std::int32_t eos_id, const std::function<bool(std::int32_t)>& on_token) {
  if (options.max_tokens < 0) throw UsageError("max_tokens must not be negative, got " + std::to_string(options.max_tokens));
  if (prompt.empty()) throw UsageError("the prompt is empty");
  const auto limit = session.context_limit();
  if (limit && session.position() + static_cast<std::int64_t>(prompt.size()) > *limit)
    throw UsageError("the prompt has " + std::to_string(prompt.size()) + " tokens but the context holds " +
                     std::to_string(*limit - session.position()) + " more (raise -c/--context)");

  const int vocab = session.model().info().vocab_size;
  gen::Sampler sampler(options.sampler, vocab);
  GenerateResult r;
  r.prompt_ids.assign(prompt.begin(), prompt.end());
  std::vector<std::int32_t> history(prompt.begin(), prompt.end());
  history.reserve(prompt.size() + static_cast<std::size_t>(options.max_tokens));
  r.ids.reserve(static_cast<std::size_t>(options.max_tokens));
  std::vector<float> logits(static_cast<std::size_t>(vocab));

  auto t0 = Clock::now();
  std::span<const float> out = session.prefill(prompt);
  r.prompt_seconds = seconds_since(t0);
  t0 = Clock::now();
  for (int i = 0; i < options.max_tokens; ++i) {
    std::copy(out.begin(), out.end(), logits.begin());
    const std::int32_t id = sampler.sample(logits, history);
    if (options.stop_at_eos && id == eos_id) {
      r.hit_eos = true;
      break;
    }
    r.ids.push_back(id);
    history.push_back(id);
    if (on_token && !on_token(id)) break;
    if (i + 1 == options.max_tokens) break;  // the last token needs no forward pass
    if (limit && session.position() >= *limit) {
      r.hit_context_limit = true;
      break;
    }
    out = session.decode(id);
  }
  r.decode_seconds = seconds_since(t0);
  return r;
}

GenerateResult generate(Session& session, std::string_view prompt, const GenerateOptions& options,
                        const std::function<void(std::string_view)>& on_text) {
  const Tokenizer* tok = session.model().tokenizer();
  if (tok == nullptr)
    throw UsageError(session.model().info().source + ": the model has no tokenizer (pass one with -z/--tokenizer)");
  const std::vector<std::int32_t> ids = tok->encode(prompt, true);
  // A prompt with text before the generated ids keeps the space of the first generated word.
  Tokenizer::Stream stream(*tok, ids.size() <= 1);
  GenerateResult r = generate_ids(session, ids, options, tok->eos_id(), [&](std::int32_t id) {
    const std::string text = stream.push(id);
    if (on_text && !text.empty()) on_text(text);
    return true;
  });
  const std::string rest = stream.flush();
  if (on_text && !rest.empty()) on_text(rest);
  return r;
}

}  // namespace weft
