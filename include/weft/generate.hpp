#pragma once
// The generation loop: prompt in, sampled tokens out, streamed as they come.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "weft/model.hpp"
#include "weft/sampler.hpp"

namespace weft {

struct GenerateOptions {
  int max_tokens = 128;      // stop after this many new tokens
  SamplerOptions sampler;    // temperature 0: greedy
  bool stop_at_eos = true;   // stop when the end-of-sequence token is sampled
};

struct GenerateResult {
  std::vector<std::int32_t> prompt_ids;
  std::vector<std::int32_t> ids;  // generated ids, EOS excluded
  double prompt_seconds = 0;      // prefill time
  double decode_seconds = 0;      // time for the remaining tokens
  bool hit_eos = false;
  bool hit_context_limit = false;
};

// Runs the prompt ids through session (from its current position) and samples up to
// max_tokens more, calling on_token(id) for each as soon as it exists (return false to stop).
// eos_id < 0 disables the EOS stop. Throws UsageError for an empty prompt or one that does
// not fit the context.
GenerateResult generate_ids(Session& session, std::span<const std::int32_t> prompt, const GenerateOptions& options,
                            std::int32_t eos_id, const std::function<bool(std::int32_t)>& on_token);

// Encodes the prompt (BOS first) with the model's tokenizer and streams the generated text to
// on_text in complete UTF-8 pieces. Throws UsageError when the model has no tokenizer.
GenerateResult generate(Session& session, std::string_view prompt, const GenerateOptions& options,
                        const std::function<void(std::string_view)>& on_text);

// Many prompts through one BatchSession: up to batch.max_sequences() at a time, decoded together
// (one pass over the weights per step for all of them); when a sequence ends, the next prompt
// starts in its slot (continuous batching). Each sequence gets its own sampler seeded with
// options.sampler.seed, so its ids are those generate_ids() gives for that prompt alone (greedy:
// identical). on_done(index, result) is called as each prompt finishes (in completion order, not
// input order); the returned vector is in input order. Throws UsageError for an empty prompt or
// one that does not fit the context, before any work starts.
struct BatchGenerateResult {
  std::vector<GenerateResult> results;  // in input order; prompt_seconds is the prompt's own prefill
  double seconds = 0;                   // wall time for everything
  std::int64_t generated = 0;           // ids generated over all prompts
  std::int64_t decode_steps = 0;        // batched forward passes after the prefills
};
BatchGenerateResult generate_batch_ids(BatchSession& batch, const std::vector<std::vector<std::int32_t>>& prompts,
                                       const GenerateOptions& options, std::int32_t eos_id,
                                       const std::function<void(std::size_t, const GenerateResult&)>& on_done);

// generate_batch_ids() on text: each prompt encoded with BOS first, on_done(index, text, result)
// with the decoded text of the generated ids.
BatchGenerateResult generate_batch(BatchSession& batch, const std::vector<std::string>& prompts,
                                   const GenerateOptions& options,
                                   const std::function<void(std::size_t, const std::string&, const GenerateResult&)>& on_done);

}  // namespace weft
