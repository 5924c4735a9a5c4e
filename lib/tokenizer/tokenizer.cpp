#include "tokenizer/tokenizer.hpp"

#include <algorithm>
#include <functional>
#include <limits>
#include <queue>
#include <utility>

#include "tokenizer/utf8.hpp"
#include "weft/error.hpp"

namespace weft::tok {

namespace {

// The byte named by a byte piece's text "<0xXX>", or -1.
int parse_byte_piece(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  int value = 0;
  for (char c : text.substr(3, 2)) {
    value *= 16;
    if (c >= '0' && c <= '9') value += c - '0';
    else if (c >= 'A' && c <= 'F') value += c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') value += c - 'a' + 10;
    else return -1;
  }
  return value;
}

}  // namespace

Tokenizer::Tokenizer(std::vector<Piece> pieces, const Options& options, std::string name)
    : name_(std::move(name)),
      pieces_(std::move(pieces)),
      bos_id_(options.bos_id),
      eos_id_(options.eos_id),
      unk_id_(options.unk_id),
      byte_fallback_(options.byte_fallback),
      add_dummy_prefix_(options.add_dummy_prefix),
      remove_extra_whitespaces_(options.remove_extra_whitespaces),
      escape_whitespaces_(options.escape_whitespaces) {
  const std::size_t n = pieces_.size();
  if (n == 0) throw InputError(name_ + ": the vocabulary has no pieces");
  if (n > static_cast<std::size_t>(std::numeric_limits<int32_t>::max()))
    throw InputError(name_ + ": too many pieces (" + std::to_string(n) + ")");
  const auto check_id = [&](const char* what, int id, bool optional) {
    if ((optional && id == -1) || (id >= 0 && static_cast<std::size_t>(id) < n)) return;
    throw InputError(name_ + ": " + what + " " + std::to_string(id) + " is out of range for " + std::to_string(n) +
                     " pieces");
  };
  check_id("unk_id", unk_id_, false);
  check_id("bos_id", bos_id_, true);
  check_id("eos_id", eos_id_, true);

  std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
  byte_value_.assign(n, -1);
  mergeable_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const Piece& p = pieces_[i];
    const auto id = static_cast<int32_t>(i);
    const auto type = static_cast<int>(p.type);
    if (type < 1 || type > 6)
      throw InputError(name_ + ": piece " + std::to_string(i) + " has invalid type " + std::to_string(type));
    if (p.type == PieceType::Byte) {
      const int b = parse_byte_piece(p.text);
      if (b < 0)
        throw InputError(name_ + ": piece " + std::to_string(i) + " has type Byte but its text '" + p.text +
                         "' is not <0xXX>");
      byte_value_[i] = static_cast<int16_t>(b);
      if (byte_ids_[b] < 0) byte_ids_[b] = id;
    } else if (p.type == PieceType::Normal || p.type == PieceType::UserDefined || p.type == PieceType::Unused) {
      if (p.text.empty()) continue;  // nothing can produce it
      mergeable_.emplace(p.text, id);  // a duplicate keeps its first id
      if (p.type == PieceType::UserDefined) {
        user_defined_.emplace(p.text, id);
        max_user_defined_len_ = std::max(max_user_defined_len_, p.text.size());
      }
    }
  }
}

Tokenizer Tokenizer::from_pieces(std::vector<Piece> pieces, int bos_id, int eos_id, int unk_id, bool add_dummy_prefix,
                                 std::string name) {
  Options o;
  o.bos_id = bos_id;
  o.eos_id = eos_id;
  o.unk_id = unk_id;
  o.add_dummy_prefix = add_dummy_prefix;
  o.byte_fallback = std::any_of(pieces.begin(), pieces.end(), [](const Piece& p) { return p.type == PieceType::Byte; });
  return Tokenizer(std::move(pieces), o, std::move(name));
}

const Piece& Tokenizer::piece(int32_t id) const {
  if (id < 0 || id >= vocab_size())
    throw InputError(name_ + ": token id " + std::to_string(id) + " is out of range for " +
                     std::to_string(vocab_size()) + " pieces");
  return pieces_[static_cast<std::size_t>(id)];
}

std::string Tokenizer::token_bytes(int32_t id) const {
  const Piece& p = piece(id);
  switch (p.type) {
    case PieceType::Control: return {};
    case PieceType::Unknown: return std::string(utf8::kUnknownSurface);
    case PieceType::Byte: return std::string(1, static_cast<char>(byte_value_[static_cast<std::size_t>(id)]));
    default: break;
  }
  std::string out;
  out.reserve(p.text.size());
  for (std::size_t i = 0; i < p.text.size();) {
    if (std::string_view(p.text).substr(i, 3) == utf8::kSpaceSymbol) {
      out += ' ';
      i += 3;
    } else {
      out += p.text[i++];
    }
  }
  return out;
}

// SentencePiece's normalizer with identity rules: invalid bytes become U+FFFD, spaces become
// "▁", a dummy "▁" goes in front, and with remove_extra_whitespaces spaces are trimmed and
// collapsed. Only ' ' counts as whitespace, as with identity rules in SentencePiece.
std::string Tokenizer::normalize(std::string_view text) const {
  std::size_t i = 0;
  if (remove_extra_whitespaces_)
    while (i < text.size() && text[i] == ' ') ++i;
  if (i == text.size()) return {};
  const std::string_view space = escape_whitespaces_ ? utf8::kSpaceSymbol : std::string_view(" ");
  std::string out;
  out.reserve(text.size() + text.size() / 2 + 3);
  if (add_dummy_prefix_) out += space;
  bool prev_space = remove_extra_whitespaces_;
  while (i < text.size()) {
    const int len = utf8::classify(text.substr(i));
    if (len <= 0) {
      out += utf8::kReplacement;
      prev_space = false;
      ++i;
    } else if (text[i] == ' ') {
      if (!prev_space) out += space;
      prev_space = remove_extra_whitespaces_;
      ++i;
    } else {
      out.append(text.substr(i, static_cast<std::size_t>(len)));
      prev_space = false;
      i += static_cast<std::size_t>(len);
    }
  }
  if (remove_extra_whitespaces_)
    while (out.size() >= space.size() && std::string_view(out).substr(out.size() - space.size()) == space)
      out.resize(out.size() - space.size());
  return out;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> ids;
  if (add_bos) {
    if (bos_id_ < 0) throw UsageError(name_ + ": cannot add BOS, the vocabulary has no BOS token");
    ids.push_back(bos_id_);
  }
  const std::string normalized = normalize(text);
  if (!normalized.empty()) encode_normalized(normalized, ids);
  return ids;
}

// BPE as SentencePiece does it: start from characters (user-defined pieces whole and frozen),
// repeatedly merge the adjacent pair whose concatenation is the highest-scoring piece (ties: the
// leftmost), using a linked list of symbols and a priority queue of candidate pairs; stale
// candidates are recognised by their length and skipped. Symbols without a piece fall back to
// byte pieces, or to <unk>.
void Tokenizer::encode_normalized(const std::string& text, std::vector<int32_t>& out) const {
  struct Symbol {
    uint32_t begin, len;  // the bytes of `text` it covers; len 0 once merged into its left neighbour
    int32_t prev, next;   // -1 at the ends
    bool frozen;
  };
  struct Candidate {
    float score;
    int32_t left, right;
    uint32_t len;
  };
  const auto worse = [](const Candidate& a, const Candidate& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> agenda(worse);
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  const std::string_view view(text);
  // Unused pieces may serve as merge steps but are split back into what formed them.
  std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> unmerge;

  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t len = 0;
    bool frozen = false;
    for (std::size_t l = std::min(max_user_defined_len_, text.size() - pos); l > 0 && len == 0; --l)
      if (user_defined_.find(view.substr(pos, l)) != user_defined_.end()) len = l, frozen = true;
    if (len == 0) len = static_cast<std::size_t>(std::max(1, std::abs(utf8::classify(view.substr(pos)))));
    len = std::min(len, text.size() - pos);
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({static_cast<uint32_t>(pos), static_cast<uint32_t>(len), index - 1,
                       pos + len < text.size() ? index + 1 : -1, frozen});
    pos += len;
  }

  const auto consider = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0 || symbols[left].frozen || symbols[right].frozen) return;
    const std::string_view joined = view.substr(symbols[left].begin, symbols[left].len + symbols[right].len);
    const auto it = mergeable_.find(joined);
    if (it == mergeable_.end()) return;
    const Piece& p = pieces_[static_cast<std::size_t>(it->second)];
    agenda.push({p.score, left, right, static_cast<uint32_t>(joined.size())});
    if (p.type == PieceType::Unused)
      unmerge[joined] = {view.substr(symbols[left].begin, symbols[left].len),
                         view.substr(symbols[right].begin, symbols[right].len)};
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) consider(i - 1, i);

  while (!agenda.empty()) {
    const Candidate top = agenda.top();
    agenda.pop();
    Symbol& l = symbols[top.left];
    Symbol& r = symbols[top.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != top.len) continue;  // stale
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) symbols[r.next].prev = top.left;
    consider(l.prev, top.left);
    consider(top.left, l.next);
  }

  bool prev_unk = false;
  const std::function<void(std::string_view)> emit = [&](std::string_view s) {
    const auto it = mergeable_.find(s);
    if (it != mergeable_.end()) {
      const auto u = unmerge.find(s);
      if (pieces_[static_cast<std::size_t>(it->second)].type == PieceType::Unused && u != unmerge.end()) {
        emit(u->second.first);
        emit(u->second.second);
        return;
      }
      out.push_back(it->second);
      prev_unk = false;
    } else if (byte_fallback_) {
      for (char c : s) out.push_back(byte_ids_[static_cast<unsigned char>(c)] >= 0
                                         ? byte_ids_[static_cast<unsigned char>(c)] : unk_id_);
      prev_unk = false;
    } else {
      if (!prev_unk) out.push_back(unk_id_);  // SentencePiece folds a run of unknowns into one
      prev_unk = true;
    }
  };
  for (int32_t i = 0; i >= 0; i = symbols[i].next) emit(view.substr(symbols[i].begin, symbols[i].len));
}

}  // namespace weft::tok
