#!/usr/bin/env python3
"""Write a byte-level llama2.c tokenizer.bin for a checkpoint that has no
tokenizer of its own (../shared/models/stories260K.bin: vocabulary 512).

    python3 scripts/lm_byte_tokenizer.py OUT.tok [VOCAB]   (VOCAB default 512)

Ids 0..2 are <unk> <s> </s>; printable ASCII (32..126) takes ids 259..353,
the other 161 bytes ids 3..163; the remaining ids are pieces that never
merge. No piece is two bytes long, so llama2.c's encode of a text is the
dummy space and then one id per byte (enc() below). The ids are not the
ones stories260K was trained with: its probabilities mean nothing for
English, but the computation is real and exactly reproducible, which is
what tests/lm_theory and the docs/LM_THEORY.md tour use it for.
"""
import struct
import sys

_OTHER = [b for b in range(256) if not 32 <= b <= 126]


def byte_id(b):
    return 259 + b - 32 if 32 <= b <= 126 else 3 + _OTHER.index(b)


def write_tokenizer(path, vocab=512):
    if vocab < 354:
        raise ValueError("vocab %d: this layout needs at least 354 ids" % vocab)
    pieces = {0: (b"<unk>", 0.0), 1: (b"<s>", 0.0), 2: (b"</s>", 0.0)}
    for b in range(256):
        pieces[byte_id(b)] = (bytes([b]), 0.0)
    for i in range(vocab):
        pieces.setdefault(i, (b"<x%03d>" % i, -1e10))
    with open(path, "wb") as f:
        f.write(struct.pack("<i", 8))
        for i in range(vocab):
            p, s = pieces[i]
            f.write(struct.pack("<fi", s, len(p)) + p)


def enc(text):
    """llama2.c encode() (no BOS) under this tokenizer."""
    return [byte_id(b) for b in (" " + text).encode()] if text else []


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.split("\n\n")[1])
    write_tokenizer(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else 512)
