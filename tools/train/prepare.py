"""Tokenize the corpus for training: documents and ChatML conversations → uint16 token streams.

Owns: how training text is laid out in tokens (BOS + document + EOS; conversations rendered with
the same ChatML template that tokenizer_config.json ships), and the tokenization rule a
Llama-style runtime applies to a prompt containing special tokens: the special tokens are matched
first, and each piece of text between them is encoded on its own with SentencePiece's dummy
prefix. It does not train the tokenizer (spm_train does) or the model (train.py).

Usage: prepare.py DATA_DIR TOKENIZER.model OUT_DIR
Writes OUT_DIR/{text_train,chat_train,text_heldout,chat_heldout}.bin (little-endian uint16).
"""

import json
import os
import random
import re
import sys

import numpy as np
import sentencepiece as spm

SPECIALS = ["<|im_start|>", "<|im_end|>"]
DEFAULT_SYSTEM = "You are a helpful assistant."
SEED = 20240602


def render_chatml(messages, add_generation_prompt=False):
    """The Python twin of the Jinja chat_template in tokenizer_config.json (export_hf.py)."""
    s = ""
    if messages and messages[0]["role"] != "system":
        s += "<|im_start|>system\n" + DEFAULT_SYSTEM + "<|im_end|>\n"
    for m in messages:
        s += "<|im_start|>" + m["role"] + "\n" + m["content"] + "<|im_end|>\n"
    if add_generation_prompt:
        s += "<|im_start|>assistant\n"
    return s


def encode_with_specials(sp, text):
    ids = []
    special_re = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")
    for part in special_re.split(text):
        if not part:
            continue
        if part in SPECIALS:
            ids.append(sp.piece_to_id(part))
        else:
            ids.extend(sp.encode(part))
    return ids


def main():
    data_dir, model_path, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(out_dir, exist_ok=True)
    sp = spm.SentencePieceProcessor(model_file=model_path)
    bos, eos = sp.bos_id(), sp.eos_id()
    assert (sp.unk_id(), bos, eos) == (0, 1, 2)
    rng = random.Random(SEED)

    def load(name):
        with open(os.path.join(data_dir, name), encoding="utf-8") as f:
            return [json.loads(l) for l in f]

    def text_stream(docs):
        ids = []
        for d in docs:
            ids.append(bos)
            ids.extend(sp.encode(d["text"] + "\n"))
            ids.append(eos)
        return ids

    def chat_stream(chats):
        ids = []
        for c in chats:
            msgs = c["messages"]
            # Most runtimes put BOS before a rendered chat; some do not. Train for both, and
            # sometimes leave the default system message to the template, as clients often do.
            if rng.random() < 0.3 and msgs[0]["content"] == DEFAULT_SYSTEM:
                msgs = msgs[1:]
            if rng.random() < 0.8:
                ids.append(bos)
            ids.extend(encode_with_specials(sp, render_chatml(msgs)))
            ids.append(eos)
        return ids

    for split in ("train", "heldout"):
        for kind, fn in (("text", text_stream), ("chat", chat_stream)):
            src = ("docs_%s.jsonl" if kind == "text" else "chat_%s.jsonl") % split
            ids = fn(load(src))
            assert max(ids) < 65536
            np.asarray(ids, dtype="<u2").tofile(os.path.join(out_dir, "%s_%s.bin" % (kind, split)))
            print("prepare: %s_%s %d tokens" % (kind, split, len(ids)))


if __name__ == "__main__":
    main()
