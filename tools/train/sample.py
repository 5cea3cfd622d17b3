"""Greedy samples from a trained checkpoint with PyTorch (a sanity check before GGUF export).

Owns nothing the product uses: the engine's own generation is what models/README.md quotes.
Usage: sample.py RUN_DIR TOKENIZER.model [--ckpt]   (--ckpt: use run/ckpt.pt, a run in progress)
"""

import json
import os
import sys

import sentencepiece as spm
import torch

from model import Config, Llama
from prepare import encode_with_specials, render_chatml

CHAT_PROMPTS = ["Recite John 3:16.", "What does Genesis 1:3 say?", "Continue: In the beginning God",
                "Hello!", "Give me a verse about love.", "Define cynic.", "Who are you?"]
TEXT_PROMPTS = ["And God said,", "The LORD is my shepherd;"]


@torch.no_grad()
def greedy(model, ids, stop, n=80):
    out = []
    for _ in range(n):
        logits = model(torch.tensor([ids[-512:]]))[0, -1]
        t = int(logits.argmax())
        if t in stop:
            break
        ids.append(t)
        out.append(t)
    return out


def main():
    run, tok = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    cfg = Config(**json.load(open(os.path.join(run, "config.json"))))
    model = Llama(cfg)
    if "--ckpt" in sys.argv:
        model.load_state_dict(torch.load(os.path.join(run, "ckpt.pt"))["model"])
    else:
        model.load_state_dict(torch.load(os.path.join(run, "model.pt")))
    model.eval()
    sp = spm.SentencePieceProcessor(model_file=tok)
    im_end = sp.piece_to_id("<|im_end|>")
    for p in CHAT_PROMPTS:
        ids = [sp.bos_id()] + encode_with_specials(
            sp, render_chatml([{"role": "user", "content": p}], add_generation_prompt=True))
        print("USER: %s\nMODEL: %s\n" % (p, sp.decode(greedy(model, ids, {im_end, sp.eos_id()}))))
    for p in TEXT_PROMPTS:
        ids = [sp.bos_id()] + sp.encode(p)
        print("TEXT: %s ⟶ %s\n" % (p, sp.decode(greedy(model, ids, {sp.eos_id()}, 40))))


if __name__ == "__main__":
    main()
