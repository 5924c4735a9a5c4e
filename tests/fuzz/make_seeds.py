#!/usr/bin/env python3
"""Writes the seed corpora for weft's fuzz targets into OUT/<target>/.

Small synthetic seeds are made here from scratch. Seeds derived from the real files in MODELS
(../shared/models) are cut down so that the fuzzer mutates kilobytes, not megabytes: the first
pieces of tokenizer.model and tokenizer.bin, the norm tensors of tiny-mistral's safetensors file,
the header of stories260K.bin. They are written at fuzz time only; never commit them.

usage: make_seeds.py OUT [MODELS]
"""
import json
import os
import struct
import sys

out = sys.argv[1]
models = sys.argv[2] if len(sys.argv) > 2 else ""


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def shared(name):
    p = os.path.join(models, name)
    return p if models and os.path.exists(p) else None


# --- safetensors -----------------------------------------------------------------------------
def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, bytes)] packed in order."""
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


put("safetensors", "synthetic-3-dtypes", safetensors(
    [("w", "F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)), ("b", "BF16", [3], b"\x80\x3f" * 3),
     ("h", "F16", [1, 2], b"\x00\x3c" * 2), ("empty", "F32", [0], b"")], {"format": "pt"}))
put("safetensors", "synthetic-scalar", safetensors([("s", "F32", [], struct.pack("<f", 0.5))]))
st = shared("tiny-mistral/model.safetensors")
if st:
    raw = open(st, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    norms = []
    for name, v in header.items():
        if name != "__metadata__" and len(v["shape"]) == 1:
            b, e = v["data_offsets"]
            norms.append((name, v["dtype"], v["shape"], raw[base + b:base + e]))
    put("safetensors", "tiny-mistral-norms", safetensors(norms, header.get("__metadata__")))
    put("safetensors", "tiny-mistral-header-truncated", raw[:base + 256])

# --- config.json -----------------------------------------------------------------------------
mistral = {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 64,
           "intermediate_size": 160, "num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 2,
           "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 8, "max_position_embeddings": 256,
           "vocab_size": 512, "tie_word_embeddings": False, "hidden_act": "silu"}
put("config", "synthetic-mistral", json.dumps(mistral, indent=2))
llama = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
         "num_attention_heads": 4, "vocab_size": 16, "head_dim": 8, "rope_scaling": None, "attention_bias": False}
put("config", "synthetic-llama", json.dumps(llama))
put("config", "synthetic-null-window", json.dumps(dict(mistral, sliding_window=None, head_dim=None)))
if shared("tiny-mistral/config.json"):
    put("config", "tiny-mistral", open(shared("tiny-mistral/config.json"), "rb").read())


# --- SentencePiece tokenizer.model -----------------------------------------------------------
def varint(v):
    v &= (1 << 64) - 1
    b = b""
    while v >= 0x80:
        b += bytes([(v & 0x7F) | 0x80])
        v >>= 7
    return b + bytes([v])


def field(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def piece(text, score, kind):
    return field(1, 2, field(1, 2, text.encode()) + field(2, 5, struct.pack("<f", score)) + field(3, 0, varint(kind)))


pieces = [piece("<unk>", 0, 2), piece("<s>", 0, 3), piece("</s>", 0, 3)]
pieces += [piece("<0x%02X>" % b, 0, 6) for b in range(256)]
pieces += [piece(t, -i, 1) for i, t in enumerate(["\u2581t", "he", "\u2581the", "\u2581a", "at", "\u2581c", "\u2581cat"])]
pieces += [piece("<user>", 0, 4), piece("unused", 0, 5)]
trainer = field(2, 2, field(3, 0, varint(2)) + field(35, 0, varint(1)) + field(40, 0, varint(0)) +
                field(41, 0, varint(1)) + field(42, 0, varint(2)) + field(43, 0, varint(-1)))
normalizer = field(3, 2, field(1, 2, b"identity") + field(3, 0, varint(1)) + field(4, 0, varint(0)) + field(5, 0, varint(1)))
put("sentencepiece", "synthetic", b"".join(pieces) + trainer + normalizer)
put("sentencepiece", "synthetic-no-bytes", b"".join(pieces[:3] + pieces[259:]) + trainer)


def read_varint(buf, pos):
    shift = value = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, pos


if shared("tokenizer.model"):
    # Keep the first 300 pieces and every other top-level field byte for byte.
    raw = open(shared("tokenizer.model"), "rb").read()
    kept, n_pieces, pos = b"", 0, 0
    while pos < len(raw):
        start = pos
        key, pos = read_varint(raw, pos)
        wire = key & 7
        if wire == 0:
            _, pos = read_varint(raw, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            length, pos = read_varint(raw, pos)
            pos += length
        if key >> 3 == 1:
            n_pieces += 1
            if n_pieces > 300:
                continue
        kept += raw[start:pos]
    put("sentencepiece", "llama-300-pieces", kept)


# --- llama2.c tokenizer.bin ------------------------------------------------------------------
def tokenizer_bin(tokens, max_len=16):
    b = struct.pack("<i", max_len)
    for text, score in tokens:
        raw = text.encode() if isinstance(text, str) else text
        b += struct.pack("<fi", score, len(raw)) + raw
    return b


toks = [("<unk>", 0), ("\n<s>\n", 0), ("\n</s>\n", 0)] + [("<0x%02X>" % b, 0) for b in range(256)]
toks += [(" t", -1), ("he", -2), (" the", -3), (" cat", -4), ("\xe6\x97\xa5", -5)]
put("tokenizer_bin", "synthetic", tokenizer_bin(toks))
put("tokenizer_bin", "synthetic-no-bytes", tokenizer_bin(toks[:3] + toks[259:]))
if shared("tok512.bin"):
    put("tokenizer_bin", "tok512", open(shared("tok512.bin"), "rb").read())
if shared("tokenizer.bin"):
    raw = open(shared("tokenizer.bin"), "rb").read()
    pos = 4
    for _ in range(300):
        (length,) = struct.unpack_from("<i", raw, pos + 4)
        pos += 8 + length
    put("tokenizer_bin", "llama-300-tokens", raw[:pos])


# --- llama2.c checkpoint ---------------------------------------------------------------------
def checkpoint(dim, hidden, layers, heads, kv_heads, vocab, seq_len):
    head = dim // heads
    kv = head * kv_heads
    n = (abs(vocab) * dim + layers * dim + layers * dim * dim + 2 * layers * kv * dim + layers * dim * dim +
         layers * dim + 3 * layers * hidden * dim + dim + seq_len * head)
    if vocab < 0:
        n += abs(vocab) * dim
    return struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab, seq_len) + \
        b"".join(struct.pack("<f", ((i * 37) % 19 - 9) / 10) for i in range(n))


put("llama2c", "synthetic-shared-classifier", checkpoint(4, 6, 1, 2, 1, 5, 3))
put("llama2c", "synthetic-own-classifier", checkpoint(4, 2, 2, 2, 2, -3, 2))
put("llama2c", "synthetic-head-2", checkpoint(2, 1, 1, 1, 1, 1, 1))
if shared("stories260K.bin"):
    put("llama2c", "stories260K-head", open(shared("stories260K.bin"), "rb").read(2048))

# --- encode: first byte picks the tokenizer, the rest is text ---------------------------------
texts = ["Once upon a time, there was a little girl named Lily.", "Hello world", "  leading and  double  spaces ",
         "caf\u00e9 \u65e5\u672c\u8a9e \U0001F642", "<s>[INST] hi [/INST]</s>", "tab\tnewline\n\x00nul"]
for i, t in enumerate(texts):
    put("encode", "text-%d" % i, bytes([i % 4 | (0x80 if i % 2 else 0)]) + t.encode())
put("encode", "invalid-utf8", b"\x01\xff\xfe\xc3(\xe2\x82\xf0\x9f\x99")

# --- GGUF ------------------------------------------------------------------------------------
GG_U8, GG_I8, GG_U16, GG_I16, GG_U32, GG_I32, GG_F32, GG_BOOL, GG_STR, GG_ARR, GG_U64, GG_I64, GG_F64 = range(13)
GG_FMT = {GG_U8: "<B", GG_I8: "<b", GG_U16: "<H", GG_I16: "<h", GG_U32: "<I", GG_I32: "<i", GG_F32: "<f",
          GG_BOOL: "<?", GG_U64: "<Q", GG_I64: "<q", GG_F64: "<d"}


def gg_str(s):
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(raw)) + raw


def gg_val(t, v):
    if t == GG_STR:
        return gg_str(v)
    if t == GG_ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(gg_val(et, x) for x in items)
    return struct.pack(GG_FMT[t], v)


def gguf(kvs, tensors, version=3, align=32):
    """kvs: [(key, type, value)]; tensors: [(name, ne (innermost first), ggml type, bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += gg_str(k) + struct.pack("<I", t) + gg_val(t, v)
    data, offsets = b"", []
    for name, ne, t, raw in tensors:
        offsets.append(len(data))
        data += raw + b"\0" * (-len(raw) % align)
    for (name, ne, t, raw), off in zip(tensors, offsets):
        out += gg_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", t, off)
    return out + b"\0" * (-len(out) % align) + data


def f32s(n, scale=0.1):
    return b"".join(struct.pack("<f", (((i * 37) % 19) - 9) * scale) for i in range(n))


# A complete llama model: dim 4, 2 heads, 1 KV head, hidden 6, 1 layer, 6 tokens, tied output.
vocab = ["<unk>", "<s>", "</s>", "\u2581a", "b", "\u2581ab"]
llama_kvs = [("general.architecture", GG_STR, "llama"), ("llama.context_length", GG_U32, 16),
             ("llama.embedding_length", GG_U32, 4), ("llama.block_count", GG_U32, 1),
             ("llama.feed_forward_length", GG_U32, 6), ("llama.attention.head_count", GG_U32, 2),
             ("llama.attention.head_count_kv", GG_U32, 1), ("llama.rope.dimension_count", GG_U32, 2),
             ("llama.rope.freq_base", GG_F32, 10000.0), ("llama.attention.layer_norm_rms_epsilon", GG_F32, 1e-5),
             ("llama.attention.sliding_window", GG_U32, 4),
             ("tokenizer.ggml.model", GG_STR, "llama"), ("tokenizer.ggml.tokens", GG_ARR, (GG_STR, vocab)),
             ("tokenizer.ggml.scores", GG_ARR, (GG_F32, [0.0, 0.0, 0.0, -1.0, -2.0, -3.0])),
             ("tokenizer.ggml.token_type", GG_ARR, (GG_I32, [2, 3, 3, 1, 1, 1])),
             ("tokenizer.ggml.bos_token_id", GG_U32, 1), ("tokenizer.ggml.eos_token_id", GG_U32, 2),
             ("tokenizer.ggml.add_bos_token", GG_BOOL, True)]
llama_tensors = [("token_embd.weight", [4, 6], 0, f32s(24)), ("blk.0.attn_norm.weight", [4], 0, f32s(4, 0.05)),
                 ("blk.0.attn_q.weight", [4, 4], 0, f32s(16)), ("blk.0.attn_k.weight", [4, 2], 0, f32s(8)),
                 ("blk.0.attn_v.weight", [4, 2], 0, f32s(8)), ("blk.0.attn_output.weight", [4, 4], 0, f32s(16)),
                 ("blk.0.ffn_norm.weight", [4], 0, f32s(4, 0.05)), ("blk.0.ffn_gate.weight", [4, 6], 0, f32s(24)),
                 ("blk.0.ffn_up.weight", [4, 6], 0, f32s(24)), ("blk.0.ffn_down.weight", [6, 4], 0, f32s(24)),
                 ("output_norm.weight", [4], 0, f32s(4, 0.05))]
put("gguf", "synthetic-llama", gguf(llama_kvs, llama_tensors))
put("gguf", "synthetic-llama-v2-align64", gguf(llama_kvs + [("general.alignment", GG_U32, 64)], llama_tensors, 2, 64))
put("gguf", "synthetic-all-types", gguf(
    [("u8", GG_U8, 1), ("i8", GG_I8, -1), ("u16", GG_U16, 2), ("i16", GG_I16, -2), ("u32", GG_U32, 3),
     ("i32", GG_I32, -3), ("f32", GG_F32, 0.5), ("bool", GG_BOOL, True), ("str", GG_STR, "x"),
     ("arr", GG_ARR, (GG_ARR, [(GG_STR, ["a", "bc"]), (GG_U64, [1, 2])])), ("u64", GG_U64, 4), ("i64", GG_I64, -4),
     ("f64", GG_F64, 0.25)],
    [("q8", [32, 2], 8, (b"\x00\x3c" + bytes(range(32))) * 2), ("q4k", [256], 12, bytes(144)),
     ("q6k", [256], 14, bytes(210)), ("bf16", [3], 30, b"\x80\x3f" * 3), ("f16", [2], 1, b"\x00\x3c" * 2),
     ("q40", [32], 2, bytes(18))]))
if shared("stories260K.gguf"):
    raw = open(shared("stories260K.gguf"), "rb").read()
    put("gguf", "stories260K-head", raw[:16384])
