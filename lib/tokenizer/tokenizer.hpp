#pragma once
// SentencePiece-style BPE tokenizer with byte fallback, loaded from a SentencePiece
// tokenizer.model, a llama2.c tokenizer.bin or explicit pieces (GGUF). Both file formats go
// through one BPE engine: pieces are kept in SentencePiece's form, with U+2581 "▁" for a space.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace weft::tok {

// Values as in SentencePiece's ModelProto and GGUF's tokenizer.ggml.token_type.
enum class PieceType : uint8_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

struct Piece {
  std::string text;  // SentencePiece form: "▁the", "<0x0A>", "<s>"
  float score = 0.0f;
  PieceType type = PieceType::Normal;
  bool operator==(const Piece&) const = default;
};

class Tokenizer {
 public:
  // Loads a SentencePiece tokenizer.model (a ModelProto protobuf, BPE only). Throws InputError
  // naming the path for an unreadable, truncated or malformed file or a non-BPE model.
  static Tokenizer from_sentencepiece_file(const std::string& path);
  // Parses a SentencePiece ModelProto held in memory; `name_for_errors` names it in messages.
  // The bytes are copied, so `data` may be released afterwards.
  static Tokenizer from_sentencepiece_bytes(std::span<const std::byte> data, const std::string& name_for_errors);
  // Loads a llama2.c tokenizer.bin (int32 max_token_length, then per token: float32 score, int32
  // length, bytes). Spaces in its pieces become "▁"; ids 0, 1, 2 are <unk>, <s>, </s>; pieces
  // spelled <0xXX> are byte pieces. Throws InputError naming the path when the file is malformed.
  static Tokenizer from_llama2c_file(const std::string& path);
  // Builds a tokenizer from explicit pieces (ids are positions), e.g. a GGUF vocabulary. Byte
  // fallback is on when there are Byte pieces. bos_id/eos_id may be -1 (none); unk_id must be valid.
  static Tokenizer from_pieces(std::vector<Piece> pieces, int bos_id, int eos_id, int unk_id, bool add_dummy_prefix,
                               std::string name);

  // Encodes UTF-8 text into token ids, with BOS first when `add_bos`. Control tokens are never
  // produced from text ("<s>" in the text is just characters). Invalid UTF-8 bytes become
  // U+FFFD, as in SentencePiece. O(n log n) in the text length; thread-safe (const).
  std::vector<int32_t> encode(std::string_view text, bool add_bos) const;

  // The BOS id, or -1 when the vocabulary has none.
  int32_t bos_id() const noexcept { return bos_id_; }
  // The EOS id, or -1 when the vocabulary has none.
  int32_t eos_id() const noexcept { return eos_id_; }
  // The id emitted for text that has no piece and no byte piece.
  int32_t unk_id() const noexcept { return unk_id_; }
  // The number of pieces; valid ids are [0, vocab_size()).
  int32_t vocab_size() const noexcept { return static_cast<int32_t>(pieces_.size()); }
  // Whether encode() prepends "▁" to non-empty text (and decoding drops that space again).
  bool add_dummy_prefix() const noexcept { return add_dummy_prefix_; }
  // The name given at load time (a path, usually), used in error messages.
  const std::string& name() const noexcept { return name_; }
  // All pieces in id order.
  const std::vector<Piece>& pieces() const noexcept { return pieces_; }
  // The piece for `id`; throws InputError naming the tokenizer when the id is out of range.
  const Piece& piece(int32_t id) const;
  // The raw bytes a token stands for: a byte piece gives its byte, "▁" becomes ' ', control
  // tokens give "", the unknown token gives " ⁇ " (SentencePiece's surface for it). Does not
  // drop the dummy-prefix space; StreamDecoder does that. Throws InputError for a bad id.
  std::string token_bytes(int32_t id) const;
  // The byte a Byte piece stands for, or -1 for other pieces. Requires a valid id.
  int byte_value(int32_t id) const noexcept { return byte_value_[static_cast<std::size_t>(id)]; }
  // Whether decoding should drop leading whitespace until the first visible text (SentencePiece's
  // remove_extra_whitespaces), rather than only the single dummy-prefix space.
  bool remove_extra_whitespaces() const noexcept { return remove_extra_whitespaces_; }

 private:
  struct Options {
    int bos_id = 1, eos_id = 2, unk_id = 0;
    bool byte_fallback = true, add_dummy_prefix = true, remove_extra_whitespaces = false, escape_whitespaces = true;
  };
  Tokenizer(std::vector<Piece> pieces, const Options& options, std::string name);
  std::string normalize(std::string_view text) const;
  void encode_normalized(const std::string& normalized, std::vector<int32_t>& out) const;

  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  using PieceMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

  std::string name_;
  std::vector<Piece> pieces_;
  std::vector<int16_t> byte_value_;   // per id: the byte of a Byte piece, else -1
  PieceMap mergeable_;                 // Normal, UserDefined and Unused pieces: what BPE may produce
  PieceMap user_defined_;              // matched whole in the text and never merged further
  std::size_t max_user_defined_len_ = 0;
  int32_t byte_ids_[256];              // byte -> its byte piece, or -1
  int32_t bos_id_ = -1, eos_id_ = -1, unk_id_ = 0;
  bool byte_fallback_ = true, add_dummy_prefix_ = true, remove_extra_whitespaces_ = false, escape_whitespaces_ = true;
};

// Streaming detokenizer: feed ids one at a time and get back only complete UTF-8 text. Bytes of
// a character split across byte-fallback tokens are held back until the character is complete;
// bytes that cannot form a valid character become U+FFFD, one per byte, as in SentencePiece.
// Drops the single leading space that the dummy prefix put on the first text token, as
// SentencePiece's decode does. Holds a reference to the tokenizer, which must outlive it.
// Not thread-safe; use one per sequence.
class StreamDecoder {
 public:
  // Starts decoding a sequence. With `strip_leading_space` false the first token keeps its
  // leading space: use that when the ids continue a sequence whose beginning was decoded elsewhere.
  explicit StreamDecoder(const Tokenizer& tokenizer, bool strip_leading_space = true);
  // Adds one token and returns the text that became complete (often empty while a multi-byte
  // character is pending). Throws InputError for an id out of range.
  std::string push(int32_t id);
  // Ends the sequence: returns U+FFFD for each byte of an unfinished character, and resets.
  std::string flush();

 private:
  std::string drain_invalid();
  const Tokenizer* tokenizer_;
  std::string pending_;  // bytes of an incomplete UTF-8 character
  bool at_start_;        // no visible text yet: the dummy-prefix space may still be dropped
};

// Decodes a whole sequence of ids to text via StreamDecoder (so the same rules apply).
std::string decode(const Tokenizer& tokenizer, std::span<const int32_t> ids);

// Serialises pieces and ids/flags as a SentencePiece ModelProto (BPE, identity normalization, no
// extra-whitespace removal) that SentencePiece and from_sentencepiece_bytes can load. Throws
// UsageError when an id is out of range.
std::string write_sentencepiece_model(const std::vector<Piece>& pieces, int unk_id, int bos_id, int eos_id,
                                      bool byte_fallback, bool add_dummy_prefix);

// Learns a BPE vocabulary of exactly `vocab_size` pieces from `corpus`: <unk>, <s>, </s>, the 256
// byte pieces, then merged pieces with descending scores, then the corpus's characters (most
// frequent first, as many as fit), padded with Unused pieces if the corpus runs out of merges.
// Lines are trained separately, each with a dummy prefix; '\n' itself is left to byte fallback.
// Deterministic: the same input gives the same pieces. Throws UsageError when vocab_size < 259.
std::vector<Piece> train_bpe(std::string_view corpus, int vocab_size);

}  // namespace weft::tok
