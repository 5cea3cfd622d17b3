"""Check that the exported tokenizer.json tokenizes exactly like the SentencePiece model.

Owns: a small, literal reading of tokenizer.json (added-token split, Prepend/Replace normalizer,
BPE by merge rank with byte fallback, and the ByteFallback/Fuse/Strip decoder) and the
comparison with SentencePiece on the held-out text and on rendered ChatML conversations.
It is a check, not a tokenizer for production use.

Usage: check_tokenizer.py HF_DIR HELDOUT.txt [CHAT.jsonl [DUMP.jsonl]]
Exits non-zero on the first mismatch. DUMP.jsonl receives every input with SentencePiece's ids,
for check_tokenizer_js.cjs.
"""

import json
import os
import re
import sys

import sentencepiece as spm

from prepare import encode_with_specials, render_chatml


class JsonBpe:
    def __init__(self, path):
        tok = json.load(open(path, encoding="utf-8"))
        m = tok["model"]
        assert m["type"] == "BPE" and m["byte_fallback"] and m["fuse_unk"]
        self.vocab = m["vocab"]
        self.inv = {i: p for p, i in self.vocab.items()}
        self.ranks = {}
        for r, mg in enumerate(m["merges"]):
            a, b = mg.split(" ") if isinstance(mg, str) else mg
            self.ranks.setdefault((a, b), r)
        self.added = {a["content"]: a["id"] for a in tok["added_tokens"]}
        self.split_re = re.compile("(" + "|".join(re.escape(a) for a in
                                                  sorted(self.added, key=len, reverse=True)) + ")")
        self.unk = self.vocab[m["unk_token"]]

    def _bpe(self, word):
        syms = list(word)
        while len(syms) > 1:
            best = None
            for i in range(len(syms) - 1):
                r = self.ranks.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            syms[i:i + 2] = [syms[i] + syms[i + 1]]
        ids = []
        for s in syms:
            if s in self.vocab:
                ids.append(self.vocab[s])
            else:
                bs = ["<0x%02X>" % b for b in s.encode("utf-8")]
                if all(b in self.vocab for b in bs):
                    ids.extend(self.vocab[b] for b in bs)
                elif not ids or ids[-1] != self.unk:  # fuse_unk
                    ids.append(self.unk)
        return ids

    def encode(self, text):
        ids = []
        for part in self.split_re.split(text):
            if not part:
                continue
            if part in self.added:
                ids.append(self.added[part])
            else:
                ids.extend(self._bpe("\u2581" + part.replace(" ", "\u2581")))
        return ids

    def decode(self, ids):
        out, pending = [], b""
        for i in ids:
            p = self.inv[i]
            if i in self.added.values():
                continue
            m = re.fullmatch(r"<0x([0-9A-F]{2})>", p)
            if m:
                pending += bytes([int(m.group(1), 16)])
                continue
            if pending:
                out.append(pending.decode("utf-8", errors="replace"))
                pending = b""
            out.append(p.replace("\u2581", " "))
        if pending:
            out.append(pending.decode("utf-8", errors="replace"))
        s = "".join(out)
        return s[1:] if s.startswith(" ") else s


def main():
    hf_dir, heldout = sys.argv[1], sys.argv[2]
    sp = spm.SentencePieceProcessor(model_file=os.path.join(hf_dir, "tokenizer.model"))
    bpe = JsonBpe(os.path.join(hf_dir, "tokenizer.json"))
    assert len(bpe.vocab) == sp.get_piece_size()
    n_lines = n_tok = 0
    dump = open(sys.argv[4], "w", encoding="utf-8") if len(sys.argv) > 4 else None
    texts = [l.rstrip("\n") for l in open(heldout, encoding="utf-8")]
    texts.append("\n".join(texts[:40]))  # multi-line text, as `perplexity` reads a file
    texts += ["  two  spaces", "digits 1234567890 and 3:16", "naïve café — “quoted” 😀", ""]
    for t in texts:
        a, b = sp.encode(t), bpe.encode(t)
        if a != b:
            print("MISMATCH on %r:\n  spm  %s\n  json %s" % (t[:80], a[:40], b[:40]))
            sys.exit(1)
        if bpe.decode(b) != t:
            print("DECODE MISMATCH on %r: %r" % (t[:80], bpe.decode(b)[:80]))
            sys.exit(1)
        n_lines += 1
        n_tok += len(a)
        if dump:
            dump.write(json.dumps({"text": t, "ids": a}, ensure_ascii=False) + "\n")
    n_chat = 0
    if len(sys.argv) > 3:
        for line in open(sys.argv[3], encoding="utf-8"):
            msgs = json.loads(line)["messages"]
            s = render_chatml(msgs, add_generation_prompt=True)
            a, b = encode_with_specials(sp, s), bpe.encode(s)
            if a != b:
                print("CHAT MISMATCH on %r:\n  spm  %s\n  json %s" % (s[:80], a[:40], b[:40]))
                sys.exit(1)
            n_chat += 1
            if dump:
                dump.write(json.dumps({"chat": msgs, "ids": a}, ensure_ascii=False) + "\n")
    print("check_tokenizer: tokenizer.json == SentencePiece on %d texts (%d tokens) and %d "
          "conversations" % (n_lines, n_tok, n_chat))


if __name__ == "__main__":
    main()
