// Includes only the public header and links only the public `weft` dependency, as an embedder does.
#include <weft/weft.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

int main() {
  const std::filesystem::path shared = std::filesystem::path(WEFT_SOURCE_ROOT) / ".." / "shared";
  if (!std::filesystem::exists(shared / "models" / "stories260K.bin")) {
    std::fprintf(stderr, "SKIP: %s not found; this test needs ../shared\n", shared.string().c_str());
    return 77;
  }
  try {
    auto model = weft::Model::load((shared / "models" / "stories260K.bin").string(),
                                   {.tokenizer_path = (shared / "models" / "tok512.bin").string()});
    weft::Context ctx(2);
    weft::Session session(model, ctx);
    weft::GenerateOptions opts;
    opts.max_tokens = 12;
    opts.sampler.temperature = 0;
    std::string text;
    weft::generate(session, "Once upon a time", opts, [&](std::string_view t) { text += t; });
    if (text != ", there was a little girl named Lily. She") {  // the golden greedy text begins so
      std::fprintf(stderr, "unexpected text: [%s]\n", text.c_str());
      return 1;
    }
    // Errors cross the API as weft::Error.
    try {
      weft::Model::load("/nonexistent/model");
      return 1;
    } catch (const weft::InputError& e) {
      if (std::string(e.what()).find("/nonexistent/model") == std::string::npos) return 1;
    }
  } catch (const weft::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  std::printf("public API ok\n");
  return 0;
}
