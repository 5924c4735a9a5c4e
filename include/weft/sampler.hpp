#pragma once
// Sampling options, with llama.cpp's defaults. temperature == 0 means greedy decoding.
#include <cstdint>

namespace weft {

struct SamplerOptions {
  float temperature = 0.8f;     // 0: greedy (argmax, ties to the lowest id)
  int top_k = 40;               // keep the k most likely tokens; <= 0 keeps all
  float top_p = 0.95f;          // nucleus: smallest set whose probability reaches p; 1 keeps all
  float min_p = 0.05f;          // drop tokens below min_p * p(most likely); 0 keeps all
  float repeat_penalty = 1.0f;  // >1 discourages tokens seen in the last repeat_last_n; 1 is off
  int repeat_last_n = 64;       // how many recent tokens the penalty looks at
  std::uint64_t seed = 0;       // random stream; the same seed gives the same text
};

}  // namespace weft
