"""Extract the default model's corpus from Debian packages and split it train / held-out.

Owns: reading the King James Bible (bible-kjv + bible-kjv-text, via `bible -f`) and Ambrose
Bierce's The Devil's Dictionary (dict-devil, dictd files), the deterministic split, and the
synthetic ChatML conversations built from the training split. It does not tokenize or train.

Usage: corpus.py OUT_DIR [DEVIL_DICT_DIR]
Writes into OUT_DIR:
  docs_train.jsonl   one document per line: {"text": "..."} (a chapter's verses or a dictionary
                     entry's paragraphs, one per line inside the text)
  docs_heldout.jsonl the same for the held-out chapters/entries
  chat_train.jsonl   {"messages": [...]} conversations built from the training split only
  chat_heldout.jsonl conversations built from the held-out split (for evaluation only)
  heldout.txt        held-out prose, one verse or paragraph per line (models/heldout.txt)
  spm_input.txt      tokenizer training text: training verses/paragraphs and chat turns
Everything is a pure function of the package contents and the fixed seed below.
"""

import base64
import gzip
import json
import os
import random
import re
import subprocess
import sys

SEED = 20240601
HELDOUT_EVERY = 20  # 1 in 20 chapters/entries (5%) is held out ...
HELDOUT_PHASE = 7  # ... namely those whose running index % 20 == 7

# The 66 books in the order `bible` prints them; its abbreviations differ, so we map by order.
BOOKS = [
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth",
    "1 Samuel", "2 Samuel", "1 Kings", "2 Kings", "1 Chronicles", "2 Chronicles", "Ezra",
    "Nehemiah", "Esther", "Job", "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon",
    "Isaiah", "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel", "Amos", "Obadiah",
    "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai", "Zechariah", "Malachi",
    "Matthew", "Mark", "Luke", "John", "Acts", "Romans", "1 Corinthians", "2 Corinthians",
    "Galatians", "Ephesians", "Philippians", "Colossians", "1 Thessalonians", "2 Thessalonians",
    "1 Timothy", "2 Timothy", "Titus", "Philemon", "Hebrews", "James", "1 Peter", "2 Peter",
    "1 John", "2 John", "3 John", "Jude", "Revelation",
]


def read_kjv():
    """Returns [(book, chapter, [(verse_no, text), ...]), ...] in canonical order."""
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True,
                         text=True).stdout
    ref_re = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")
    chapters = []
    abbrevs = []
    for line in out.splitlines():
        m = ref_re.match(line)
        if not m:
            raise SystemExit("corpus: unexpected line from bible: %r" % line[:80])
        abbr, ch, vs, text = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4).strip()
        if not abbrevs or abbrevs[-1] != abbr:
            abbrevs.append(abbr)
        book = BOOKS[len(abbrevs) - 1]
        if not chapters or chapters[-1][0] != book or chapters[-1][1] != ch:
            chapters.append((book, ch, []))
        chapters[-1][2].append((vs, re.sub(r"\s+", " ", text)))
    if len(abbrevs) != 66 or sum(len(c[2]) for c in chapters) != 31102:
        raise SystemExit("corpus: expected 66 books / 31102 verses, got %d / %d"
                         % (len(abbrevs), sum(len(c[2]) for c in chapters)))
    return chapters


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64num(s):
    n = 0
    for c in s:
        n = n * 64 + B64.index(c)
    return n


def read_devil(dict_dir):
    """Returns [(headword, [paragraph, ...]), ...] from dictd's devil.index + devil.dict.dz."""
    data = gzip.open(os.path.join(dict_dir, "devil.dict.dz")).read()
    entries = []
    seen = set()
    for line in open(os.path.join(dict_dir, "devil.index"), encoding="utf-8"):
        word, off, ln = line.rstrip("\n").split("\t")
        if word.startswith("00database"):
            continue
        key = (off, ln)
        if key in seen:  # several index words can point at one entry
            continue
        seen.add(key)
        raw = data[b64num(off):b64num(off) + b64num(ln)].decode("latin-1")
        paras = []
        for block in re.split(r"\n\s*\n", raw):
            text = " ".join(l.strip() for l in block.splitlines() if l.strip())
            text = re.sub(r"\s+", " ", text.replace("_", "")).strip()
            if text:
                paras.append(text)
        if not paras:
            continue
        m = re.match(r"^([A-Z][A-Z' .-]*[A-Z])\s*,", paras[0])
        head = m.group(1) if m else word.upper()
        entries.append((head, paras))
    entries.sort(key=lambda e: e[0])
    return entries


# ---- synthetic conversations -----------------------------------------------------------------

SYSTEMS = [
    "You are a helpful assistant.",
    "You are a helpful assistant.",
    "You are a helpful assistant.",
    "You are a helpful assistant that knows the King James Bible.",
    "You are edgellm, a small assistant running on this device.",
    "Answer briefly.",
]

GREETINGS = [
    (["Hello", "Hello!", "Hi", "Hi!", "Hey", "Good morning", "Good evening", "Greetings"],
     ["Hello! I am a small language model. I know the King James Bible and The Devil's "
      "Dictionary. Ask me to recite a verse, for example John 3:16.",
      "Hello. Ask me for a verse, such as Genesis 1:1, or for a word from The Devil's "
      "Dictionary."]),
    (["Who are you?", "What are you?", "What is your name?", "Tell me about yourself."],
     ["I am edgellm's small default model. I was trained on this device from the King James "
      "Bible and The Devil's Dictionary, both in the public domain.",
      "I am a small language model trained on the King James Bible and The Devil's Dictionary."]),
    (["What can you do?", "Help", "How can you help me?", "What do you know?"],
     ["I can recite verses of the King James Bible (try: Recite Psalms 23:1), continue a verse "
      "you begin, find a verse about a word, and give definitions from The Devil's Dictionary.",
      "Ask me for a verse by its reference, ask me to continue a verse, or ask me to define a "
      "word the way Ambrose Bierce did."]),
    (["Thank you", "Thanks!", "Thank you very much."],
     ["You are welcome.", "You are welcome. Grace be with you."]),
]

TOPICS = ["love", "faith", "hope", "light", "peace", "wisdom", "fear", "water", "bread", "king",
          "mercy", "truth", "joy", "sin", "heaven", "earth", "fire", "shepherd", "sheep", "sea",
          "mountain", "gold", "wine", "house", "children", "father", "mother", "strength",
          "darkness", "death", "life", "spirit", "law", "prayer", "righteousness", "war", "land",
          "river", "star", "sun", "heart", "word", "grace", "salvation", "praise", "night"]


def word_in(word, text):
    return re.search(r"\b%s\b" % re.escape(word), text, re.IGNORECASE) is not None


def make_chats(chapters, devil, rng, n_target):
    """Builds conversations; the verse and definition texts come only from the given split."""
    verses = [(book, ch, vs, t) for book, ch, vv in chapters for vs, t in vv]
    by_topic = {w: [v for v in verses if word_in(w, v[3])] for w in TOPICS}
    by_topic = {w: v for w, v in by_topic.items() if v}
    chats = []

    def ref(v):
        return "%s %d:%d" % (v[0], v[1], v[2])

    def one_turn():
        k = rng.random()
        if k < 0.06 and GREETINGS:
            qs, ans = rng.choice(GREETINGS)
            return rng.choice(qs), rng.choice(ans)
        if k < 0.18 and devil:
            head, paras = rng.choice(devil)
            w = head.capitalize() if rng.random() < 0.5 else head.lower()
            q = rng.choice(["Define %s.", "What is %s?", "Define the word %s.",
                            "What does the Devil's Dictionary say about %s?",
                            "Give me Bierce's definition of %s."]) % w
            return q, paras[0]
        if k < 0.26 and by_topic:
            w = rng.choice(sorted(by_topic))
            v = rng.choice(by_topic[w])
            q = rng.choice(["Give me a verse about %s.", "Quote a verse about %s.",
                            "What does the Bible say about %s?",
                            "Find a verse that mentions %s."]) % w
            return q, "%s: %s" % (ref(v), v[3])
        i = rng.randrange(len(verses))
        v = verses[i]
        if k < 0.56:
            q = rng.choice(["Recite %s.", "What does %s say?", "Quote %s.", "%s",
                            "Read %s to me.", "What is %s?", "Please recite %s."]) % ref(v)
            return q, v[3]
        words = v[3].split(" ")
        if k < 0.80 and len(words) >= 6:
            cut = rng.randint(2, min(8, len(words) - 3))
            head = " ".join(words[:cut])
            if rng.random() < 0.5:
                return rng.choice(["Continue: %s", "Continue the verse: %s",
                                   "Complete this: %s"]) % head, " ".join(words[cut:])
            return "Finish this verse: %s ..." % head, v[3]
        if k < 0.90 and i + 1 < len(verses) and verses[i + 1][:2] == v[:2]:
            return "What comes after %s?" % ref(v), "%s: %s" % (ref(verses[i + 1]), verses[i + 1][3])
        # A short passage: the start of a chapter.
        chap = [c for c in chapters if c[0] == v[0] and c[1] == v[1]][0]
        n = min(len(chap[2]), rng.randint(2, 4))
        q = rng.choice(["Tell me about %s chapter %d.", "How does %s chapter %d begin?",
                        "Read the beginning of %s %d."]) % (v[0], v[1])
        return q, " ".join(t for _, t in chap[2][:n])

    while len(chats) < n_target:
        msgs = [{"role": "system", "content": rng.choice(SYSTEMS)}]
        for _ in range(2 if rng.random() < 0.12 else 1):
            q, a = one_turn()
            msgs.append({"role": "user", "content": q})
            msgs.append({"role": "assistant", "content": a})
        chats.append({"messages": msgs})
    return chats


def main():
    out_dir = sys.argv[1]
    devil_dir = sys.argv[2] if len(sys.argv) > 2 else "/usr/share/dictd"
    os.makedirs(out_dir, exist_ok=True)
    chapters = read_kjv()
    devil = read_devil(devil_dir)

    ch_train = [c for i, c in enumerate(chapters) if i % HELDOUT_EVERY != HELDOUT_PHASE]
    ch_held = [c for i, c in enumerate(chapters) if i % HELDOUT_EVERY == HELDOUT_PHASE]
    dv_train = [e for i, e in enumerate(devil) if i % HELDOUT_EVERY != HELDOUT_PHASE]
    dv_held = [e for i, e in enumerate(devil) if i % HELDOUT_EVERY == HELDOUT_PHASE]

    def docs(chs, dvs):
        d = [{"text": "\n".join(t for _, t in vv)} for _, _, vv in chs]
        d += [{"text": "\n".join(p)} for _, p in dvs]
        return d

    def write_jsonl(name, rows):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    write_jsonl("docs_train.jsonl", docs(ch_train, dv_train))
    write_jsonl("docs_heldout.jsonl", docs(ch_held, dv_held))
    rng = random.Random(SEED)
    chats = make_chats(ch_train, dv_train, rng, 24000)
    write_jsonl("chat_train.jsonl", chats)
    write_jsonl("chat_heldout.jsonl", make_chats(ch_held, dv_held, random.Random(SEED + 1), 600))

    with open(os.path.join(out_dir, "heldout.txt"), "w", encoding="utf-8") as f:
        for _, _, vv in ch_held:
            for _, t in vv:
                f.write(t + "\n")
        for _, paras in dv_held:
            for p in paras:
                f.write(p + "\n")
    with open(os.path.join(out_dir, "spm_input.txt"), "w", encoding="utf-8") as f:
        for d in docs(ch_train, dv_train):
            f.write(d["text"] + "\n")
        for c in chats[:4000]:
            for m in c["messages"]:
                f.write(m["content"] + "\n")
            f.write("system\nuser\nassistant\n")

    n_v = sum(len(c[2]) for c in chapters)
    n_vh = sum(len(c[2]) for c in ch_held)
    print("corpus: %d chapters (%d held out, %d verses of %d), %d dictionary entries (%d held out),"
          " %d conversations" % (len(chapters), len(ch_held), n_vh, n_v, len(devil), len(dv_held),
                                 len(chats)))


if __name__ == "__main__":
    main()
