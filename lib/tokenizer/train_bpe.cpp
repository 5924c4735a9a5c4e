// A small, deterministic BPE trainer in SentencePiece's layout, for the default model's
// tokenizer and for tests. Words are counted once each; every merge step recounts the pairs of
// the distinct words, so the cost is O(merges × distinct-word characters): fine for vocabularies
// of a few thousand pieces, not meant for training a 32000-piece vocabulary on gigabytes.
#include <algorithm>
#include <cstdio>
#include <map>
#include <unordered_map>

#include "tokenizer/tokenizer.hpp"
#include "tokenizer/utf8.hpp"
#include "weft/error.hpp"

namespace weft::tok {

std::vector<Piece> train_bpe(std::string_view corpus, int vocab_size) {
  constexpr int kFixed = 3 + 256;
  if (vocab_size < kFixed)
    throw UsageError("train_bpe: vocab_size " + std::to_string(vocab_size) + " is below " + std::to_string(kFixed) +
                     " (<unk>, <s>, </s> and 256 byte pieces)");

  // Count words: each line gets a dummy prefix, spaces become "▁", and a word starts at each "▁".
  std::map<std::string, int64_t> word_counts;
  for (std::size_t start = 0; start < corpus.size();) {
    const std::size_t end = std::min(corpus.find('\n', start), corpus.size());
    const std::string_view line = corpus.substr(start, end - start);
    start = end + 1;
    if (line.empty()) continue;
    std::string word(utf8::kSpaceSymbol);
    for (std::size_t i = 0; i < line.size();) {
      const int len = utf8::classify(line.substr(i));
      if (line[i] == ' ') {
        word_counts[word]++;
        word = utf8::kSpaceSymbol;
        ++i;
      } else if (len <= 0) {
        word += utf8::kReplacement;
        ++i;
      } else {
        word += line.substr(i, static_cast<std::size_t>(len));
        i += static_cast<std::size_t>(len);
      }
    }
    word_counts[word]++;
  }

  // Symbols: characters first, then merged pieces. Words become sequences of symbol ids.
  std::vector<std::string> symbol_text;
  std::map<std::string, int32_t, std::less<>> symbol_id;
  const auto intern = [&](std::string_view s) {
    const auto it = symbol_id.find(s);
    if (it != symbol_id.end()) return it->second;
    const auto id = static_cast<int32_t>(symbol_text.size());
    symbol_text.emplace_back(s);
    symbol_id.emplace(std::string(s), id);
    return id;
  };
  struct Word {
    std::vector<int32_t> symbols;
    int64_t count;
  };
  std::vector<Word> words;
  std::map<std::string, int64_t> char_counts;
  for (const auto& [text, count] : word_counts) {
    Word w{{}, count};
    for (std::size_t i = 0; i < text.size();) {
      const auto len = static_cast<std::size_t>(utf8::classify(std::string_view(text).substr(i)));
      const std::string_view ch = std::string_view(text).substr(i, len);
      char_counts[std::string(ch)] += count;
      w.symbols.push_back(intern(ch));
      i += len;
    }
    words.push_back(std::move(w));
  }

  // The most frequent characters get a piece; pairs involving the rest are never merged.
  std::vector<std::pair<std::string, int64_t>> chars(char_counts.begin(), char_counts.end());
  std::stable_sort(chars.begin(), chars.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  chars.resize(std::min<std::size_t>(chars.size(), static_cast<std::size_t>(vocab_size - kFixed)));
  std::vector<bool> mergeable(symbol_text.size(), false);
  for (const auto& c : chars) mergeable[static_cast<std::size_t>(symbol_id.at(c.first))] = true;

  std::vector<std::string> merges;
  const std::size_t budget = static_cast<std::size_t>(vocab_size - kFixed) - chars.size();
  while (merges.size() < budget) {
    std::unordered_map<uint64_t, int64_t> pair_counts;
    for (const Word& w : words)
      for (std::size_t i = 0; i + 1 < w.symbols.size(); ++i) {
        const auto a = static_cast<uint32_t>(w.symbols[i]), b = static_cast<uint32_t>(w.symbols[i + 1]);
        if (mergeable[a] && mergeable[b]) pair_counts[(uint64_t{a} << 32) | b] += w.count;
      }
    if (pair_counts.empty()) break;
    // Most frequent pair; ties go to the smaller merged text, then the smaller ids (a total order).
    uint64_t best = 0;
    int64_t best_count = -1;
    std::string best_text;
    for (const auto& [key, count] : pair_counts) {
      if (count < best_count) continue;
      std::string text = symbol_text[key >> 32] + symbol_text[key & 0xFFFFFFFF];
      if (count > best_count || text < best_text || (text == best_text && key < best)) {
        best = key;
        best_count = count;
        best_text = std::move(text);
      }
    }
    const auto a = static_cast<int32_t>(best >> 32), b = static_cast<int32_t>(best & 0xFFFFFFFF);
    const std::size_t known = symbol_text.size();
    const int32_t merged = intern(best_text);
    if (symbol_text.size() > known) {
      merges.push_back(best_text);
      mergeable.push_back(true);
    }
    for (Word& w : words) {
      std::size_t out = 0;
      for (std::size_t i = 0; i < w.symbols.size(); ++i) {
        if (i + 1 < w.symbols.size() && w.symbols[i] == a && w.symbols[i + 1] == b) {
          w.symbols[out++] = merged;
          ++i;
        } else {
          w.symbols[out++] = w.symbols[i];
        }
      }
      w.symbols.resize(out);
    }
  }

  std::vector<Piece> pieces;
  pieces.reserve(static_cast<std::size_t>(vocab_size));
  pieces.push_back({"<unk>", 0.0f, PieceType::Unknown});
  pieces.push_back({"<s>", 0.0f, PieceType::Control});
  pieces.push_back({"</s>", 0.0f, PieceType::Control});
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    pieces.push_back({name, 0.0f, PieceType::Byte});
  }
  float score = 0.0f;
  for (const std::string& m : merges) pieces.push_back({m, score--, PieceType::Normal});
  for (const auto& c : chars) pieces.push_back({c.first, score--, PieceType::Normal});
  for (int k = 0; pieces.size() < static_cast<std::size_t>(vocab_size); ++k)
    pieces.push_back({"<unused" + std::to_string(k) + ">", 0.0f, PieceType::Unused});
  return pieces;
}

}  // namespace weft::tok
