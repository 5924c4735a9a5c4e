// Fuzz target: a llama2.c checkpoint (.bin). A header that passes must describe the file
// exactly: every tensor view is read end to end (ASan checks the bounds). Then the checkpoint is
// loaded through the public API and run for a few tokens, since odd but valid shapes (head size
// 2, one hidden unit, a vocabulary of 1) reach the forward pass only this way.
#include <algorithm>
#include <vector>

#include "fuzz_common.hpp"
#include "io/llama2c.hpp"
#include "io/weight_names.hpp"
#include "weft/error.hpp"
#include "weft/weft.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = weft::fuzz::write_input("model.bin", data, size);
  try {
    {
      const weft::io::Llama2cCheckpoint ck(path);
      volatile unsigned sink = 0;
      for (const auto& n : weft::io::weight_names()) {
        for (int l = n.per_layer ? 0 : -1; l < (n.per_layer ? ck.config().n_layers : 0); ++l) {
          const weft::TensorView v = ck.tensor(n.role, l);
          if (v.empty()) continue;
          const auto* p = static_cast<const unsigned char*>(v.data);
          sink = sink + weft::fuzz::touch(std::span(p, v.bytes()));
        }
      }
    }
    static weft::Context ctx(1);  // one arena for the whole run: making threads per input is slow
    const auto model = weft::Model::load(path);
    const int vocab = model->info().vocab_size;
    weft::Session session(model, ctx, {.context = 4, .block_size = 2});
    const std::vector<std::int32_t> prompt = {0, std::min(1, vocab - 1), vocab - 1};
    (void)session.prefill(prompt);
    (void)session.decode(vocab - 1);
  } catch (const weft::Error&) {
  }
  return 0;
}
