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
