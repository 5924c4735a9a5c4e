// `weft tokenize`: print the ids of a text, comma-separated, BOS first.
#include <charconv>
#include <cstdio>

#include "commands.hpp"
#include "weft/weft.hpp"

namespace weft::cli {

std::vector<std::int32_t> parse_ids(const std::string& text) {
  std::vector<std::int32_t> ids;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(start, end - start);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    std::int32_t v = 0;
    const auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc{} || p != item.data() + item.size())
      throw UsageError("--tokens: \"" + item + "\" is not a token id (expected comma-separated integers)");
    ids.push_back(v);
    start = end + 1;
  }
  return ids;
}

Runner add_tokenize(CLI::App& app) {
  struct Args {
    std::string model, tokenizer, text;
    bool no_bos = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("tokenize", "Print the token ids of a text, comma-separated, BOS first");
  auto* m = sub->add_option("-m,--model", a->model, "model whose tokenizer to use");
  auto* z = sub->add_option("-z,--tokenizer", a->tokenizer, "tokenizer.model or llama2.c tokenizer.bin");
  m->excludes(z);
  sub->add_option("text", a->text, "text to encode")->required();
  sub->add_flag("--no-bos", a->no_bos, "do not prepend the BOS id");
  return [a] {
    std::optional<Tokenizer> own;
    std::shared_ptr<const Model> model;
    const Tokenizer* tok = nullptr;
    if (!a->tokenizer.empty()) {
      own.emplace(Tokenizer::load(a->tokenizer));
      tok = &*own;
    } else if (!a->model.empty()) {
      model = Model::load(a->model);
      tok = model->tokenizer();
      // A usage error, as in `generate`: the remedy is a flag.
      if (tok == nullptr) throw UsageError(a->model + ": the model has no tokenizer (use -z)");
    } else {
      throw UsageError("tokenize needs -m MODEL or -z TOKENIZER");
    }
    const auto ids = tok->encode(a->text, !a->no_bos);
    for (std::size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? "," : "", ids[i]);
    std::printf("\n");
    return 0;
  };
}

}  // namespace weft::cli
