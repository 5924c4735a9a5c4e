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

}  // namespace weft
