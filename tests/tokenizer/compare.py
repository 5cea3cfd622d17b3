"""Compare edgellm's tokenization of a corpus with a reference's.

usage: /usr/bin/python3 tests/tokenizer/compare.py NAME CORPUS.jsonl OURS.jsonl REFERENCE.jsonl

OURS is `edgellm tokenize --jsonl` output, REFERENCE is reference.js output; both one JSON object
per corpus line ({"ids": [...], "text": ...}). Requires every line's ids to be equal and our
round-tripped text to equal the reference's expected text. Prints a summary line and the first
mismatches; exits 1 on any mismatch.
"""

import json
import sys


def main():
    name, corpus, ours, ref = sys.argv[1:5]
    lines = [json.loads(l) for l in open(corpus, encoding="utf-8") if l.strip()]
    a = [json.loads(l) for l in open(ours, encoding="utf-8")]
    b = [json.loads(l) for l in open(ref, encoding="utf-8")]
    if not (len(lines) == len(a) == len(b)):
        print(f"{name}: line counts differ: corpus {len(lines)}, ours {len(a)}, reference {len(b)}")
        return 1
    bad_ids = [i for i in range(len(a)) if a[i]["ids"] != b[i]["ids"]]
    bad_rt = [i for i in range(len(a)) if a[i]["text"] != b[i]["text"]]
    n_tok = sum(len(x["ids"]) for x in b)
    print(f"{name}: {len(a) - len(bad_ids)}/{len(a)} lines with identical ids ({n_tok} tokens), "
          f"{len(a) - len(bad_rt)}/{len(a)} decode(encode(x)) == x")
    for i in bad_ids[:5]:
        print(f"  ids differ on line {i + 1}: {json.dumps(lines[i], ensure_ascii=False)[:200]}")
        print(f"    ours      {a[i]['ids'][:40]}")
        print(f"    reference {b[i]['ids'][:40]}")
    for i in bad_rt[:5]:
        print(f"  round trip differs on line {i + 1}: {json.dumps(lines[i], ensure_ascii=False)[:200]}")
        print(f"    got {json.dumps(a[i]['text'], ensure_ascii=False)[:200]}")
    return 1 if bad_ids or bad_rt else 0


if __name__ == "__main__":
    sys.exit(main())
