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

BatchGenerateResult generate_batch_ids(BatchSession& batch, const std::vector<std::vector<std::int32_t>>& prompts,
                                       const GenerateOptions& options, std::int32_t eos_id,
                                       const std::function<void(std::size_t, const GenerateResult&)>& on_done) {
  if (options.max_tokens < 0) throw UsageError("max_tokens must not be negative, got " + std::to_string(options.max_tokens));
  const auto limit = batch.context_limit();
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) throw UsageError("prompt " + std::to_string(i + 1) + " is empty");
    if (limit && static_cast<std::int64_t>(prompts[i].size()) > *limit)
      throw UsageError("prompt " + std::to_string(i + 1) + " has " + std::to_string(prompts[i].size()) +
                       " tokens but the context holds " + std::to_string(*limit) + " (raise -c/--context)");
  }
  const int vocab = batch.model().info().vocab_size;
  struct Active {
    std::size_t index;
    int seq;
    gen::Sampler sampler;
    std::vector<std::int32_t> history;
  };
  BatchGenerateResult out;
  out.results.resize(prompts.size());
  std::vector<Active> active;
  active.reserve(static_cast<std::size_t>(batch.max_sequences()));
  std::vector<float> logits(static_cast<std::size_t>(vocab));
  std::vector<int> seqs;
  std::vector<std::int32_t> tokens;
  const auto t_start = Clock::now();

  // Samples the next id of a from row; returns true when a is finished (and reports it).
  auto take = [&](Active& a, std::span<const float> row) {
    GenerateResult& r = out.results[a.index];
    std::copy(row.begin(), row.end(), logits.begin());
    const std::int32_t id = a.sampler.sample(logits, a.history);
    if (options.stop_at_eos && id == eos_id) {
      r.hit_eos = true;
      return true;
    }
    r.ids.push_back(id);
    a.history.push_back(id);
    ++out.generated;
    if (static_cast<int>(r.ids.size()) >= options.max_tokens) return true;
    if (limit && batch.position(a.seq) >= *limit) {
      r.hit_context_limit = true;
      return true;
    }
    return false;
  };
  auto finish = [&](std::size_t slot) {
    Active& a = active[slot];
    batch.close(a.seq);
    if (on_done) on_done(a.index, out.results[a.index]);
    active.erase(active.begin() + static_cast<std::ptrdiff_t>(slot));
  };

  std::size_t next = 0;
  while (next < prompts.size() || !active.empty()) {
    // Fill free slots with the next prompts.
    while (next < prompts.size() && static_cast<int>(active.size()) < batch.max_sequences()) {
      const std::size_t i = next++;
      GenerateResult& r = out.results[i];
      r.prompt_ids = prompts[i];
      if (options.max_tokens == 0) {
        if (on_done) on_done(i, r);
        continue;
      }
      const int seq = batch.open();
      active.push_back({i, seq, gen::Sampler(options.sampler, vocab), prompts[i]});
      const auto t0 = Clock::now();
      const std::span<const float> row = batch.prefill(seq, prompts[i]);
      r.prompt_seconds = seconds_since(t0);
      if (take(active.back(), row)) finish(active.size() - 1);
    }
    if (active.empty()) continue;
    seqs.clear();
    tokens.clear();
    for (const Active& a : active) {
      seqs.push_back(a.seq);
      tokens.push_back(a.history.back());
    }
    const auto t0 = Clock::now();
    const std::span<const float> rows = batch.decode(seqs, tokens);
    const double dt = seconds_since(t0);
    ++out.decode_steps;
    // Walk backwards so that finishing (erasing) a sequence keeps the earlier rows' indices.
    for (std::size_t k = active.size(); k-- > 0;) {
      out.results[active[k].index].decode_seconds += dt;
      if (take(active[k], rows.subspan(k * static_cast<std::size_t>(vocab), static_cast<std::size_t>(vocab)))) finish(k);
    }
  }
  out.seconds = seconds_since(t_start);
  return out;
}

BatchGenerateResult generate_batch(BatchSession& batch, const std::vector<std::string>& prompts,
                                   const GenerateOptions& options,
                                   const std::function<void(std::size_t, const std::string&, const GenerateResult&)>& on_done) {
  const Tokenizer* tok = batch.model().tokenizer();
  if (tok == nullptr)
    throw UsageError(batch.model().info().source + ": the model has no tokenizer (pass one with -z/--tokenizer)");
  std::vector<std::vector<std::int32_t>> ids;
  ids.reserve(prompts.size());
  for (const std::string& p : prompts) ids.push_back(tok->encode(p, true));
  return generate_batch_ids(batch, ids, options, tok->eos_id(), [&](std::size_t i, const GenerateResult& r) {
    if (!on_done) return;
    // As in generate(): a prompt with text before the generated ids keeps the first word's space.
    Tokenizer::Stream stream(*tok, r.prompt_ids.size() <= 1);
    std::string text;
    for (std::int32_t id : r.ids) text += stream.push(id);
    text += stream.flush();
    on_done(i, text, r);
  });
}

}  // namespace weft
