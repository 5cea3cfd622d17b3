"""Generate the tokenizer test corpus: tests/tokenizer/corpus.jsonl (one JSON string per line).

usage: /usr/bin/python3 tests/tokenizer/make_corpus.py > tests/tokenizer/corpus.jsonl

Owns: what the tokenizer comparison covers. Lines are drawn with a fixed seed from categories
that stress different parts of a tokenizer: English prose, source code (this repository's own
files as they were when the corpus was made: indentation, operators, long identifiers), numbers,
runs of spaces/tabs/newlines (including CRLF and Unicode spaces), accented Latin text (some of
it in decomposed form, which NFC normalizers change), other scripts, CJK, emoji (ZWJ sequences,
flags, skin tones, keycaps), contractions in any case, special-token text (whole, partial,
adjacent, spaced) and mixtures of all of these. The output is committed so that the test does
not depend on when it is regenerated.
"""

import glob
import json
import os
import random
import sys
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N_LINES = 2400

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "A small device on the shelf answers questions without sending anything to the cloud.",
    "She said it wasn't the first time the lights had gone out during a storm.",
    "In the morning we'll walk to the market, buy bread, and come back before noon.",
    "Numbers like these don't lie, but they're easy to misread when you're tired.",
    "He'd never seen a river so wide; it looked more like a lake than a stream.",
    "Tokenizers split text into pieces that a model has learned to recognise.",
    "Why does the cat sit on the keyboard whenever I start typing?",
    "It was the best of times, it was the worst of times, it was the age of wisdom.",
    "Please send the report by Friday — preferably before lunch.",
    "The committee met on Tuesday; however, no decision was reached.",
    "\"Are you sure?\" she asked. \"Absolutely,\" he replied, without looking up.",
    "The recipe calls for two eggs, a cup of flour, and a pinch of salt.",
    "Rain fell all night, and by dawn the garden path had become a small brook.",
    "I'm not saying it's impossible; I'm saying it'll take longer than you think.",
    "The train leaves at 7:45 from platform 3, so don't be late!",
    "Every function says who owns the memory it returns, and who frees it.",
    "Photosynthesis converts light energy into chemical energy stored in sugars.",
    "The library closes early on holidays (see the notice by the door).",
    "Ships sailed west for weeks before the first gulls announced the coast.",
    "You can't always get what you want, but you might find you get what you need.",
    "Our neighbours' dog barks at the postman every single day at exactly ten.",
    "Mount Everest is 8,849 metres tall, give or take a few centimetres.",
    "THE MEETING IS CANCELLED. I REPEAT: THE MEETING IS CANCELLED.",
    "well... i guess that's that, then?! ok.",
    "To be, or not to be, that is the question.",
    "Don't panic; keep calm and carry a towel.",
    "e-mail me at someone@example.org or visit https://example.org/path?q=1&r=two#frag",
    "The U.S.A. and the U.K. signed the treaty in 1947 — or was it 1948?",
    "Mr. O'Brien's café serves crème brûlée on Sundays.",
]

CODE_FILES = sorted(glob.glob(os.path.join(ROOT, "engine", "*.c")))[:6] + sorted(
    glob.glob(os.path.join(ROOT, "tools", "reference", "*.py"))
)

ACCENTS = [
    "café", "naïve", "résumé", "déjà vu", "garçon", "Noël", "élève", "où", "ça va très bien",
    "Straße", "Müller", "Fußgängerübergänge", "schön", "Äpfel und Öl", "über",
    "año", "niño", "¿Qué tal?", "¡Olé!", "corazón", "pingüino",
    "coração", "não", "ação", "São Paulo", "Łódź", "zażółć gęślą jaźń", "Kraków",
    "İstanbul", "ağaç", "şeker", "Þingvellir", "Reykjavík", "Tiếng Việt", "người", "đường phố",
    "Dvořák", "Škoda", "ångström", "fjörður", "Ærø", "œuvre", "ﬁnancial",
]

SCRIPTS = [
    "Привет, мир! Как дела?", "Съешь же ещё этих мягких французских булок.",
    "Γειά σου κόσμε", "Ελληνικά γράμματα: αβγδε", "مرحبا بالعالم", "السلام عليكم",
    "שלום עולם", "नमस्ते दुनिया", "हिन्दी में लिखा गया वाक्य", "สวัสดีชาวโลก", "ภาษาไทย",
    "Բարև աշխարհ", "გამარჯობა", "ሰላም ለዓለም", "ᚠᚢᚦᚨᚱᚲ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙",
]

CJK = [
    "你好，世界！", "今天天气很好，我们去公园散步吧。", "机器学习模型在本地运行。", "中文分词测试",
    "こんにちは、世界！", "東京タワーに行きました。", "ひらがなとカタカナと漢字", "ｶﾀｶﾅ半角",
    "안녕하세요 세계", "한국어 문장을 토큰화합니다.", "日本語と中文と한국어", "「引用」『二重』【括弧】",
    "ＦＵＬＬＷＩＤＴＨ１２３", "〜波ダッシュ〜", "価格は１，０００円です。",
]

EMOJI = [
    "😀", "😂🤣", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵🇺🇸", "❤️", "#️⃣", "1️⃣2️⃣",
    "🧑🏿‍🚀", "🐈‍⬛", "☕", "✅❌", "🎉🎊", "🙏", "💯", "🔥🔥🔥", "👀", "🤖",
]

SPECIALS = [
    "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>",
    "<tool_call>", "</tool_call>", "<|vision_start|>", "<|fim_prefix|>", "<|im_start", "im_end|>",
    "< s>", "<s >", "<<s>>", "<|", "|>", "<|unknown_token|>",
]

WORDS = ("time people way day man thing woman life child world school state family student "
         "group country problem hand part place case week company system program question work "
         "government number night point home water room mother area money story fact month "
         "lot right study book eye job word business issue side kind head house service friend "
         "father power hour game line end member law car city community name president team "
         "minute idea kid body information back parent face others level office door health "
         "person art war history party result change morning reason research girl guy moment "
         "air teacher force education").split()


def code_lines(rng):
    fn = rng.choice(CODE_FILES)
    with open(fn, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = rng.randrange(len(lines))
    return "\n".join(lines[i : i + rng.randint(1, 5)])


def number(rng):
    k = rng.randrange(10)
    if k == 0:
        return str(rng.randrange(10 ** rng.randint(1, 15)))
    if k == 1:
        return "%.*f" % (rng.randint(1, 6), rng.uniform(-1e4, 1e4))
    if k == 2:
        return "{:,}".format(rng.randrange(10 ** 10))
    if k == 3:
        return "%04d-%02d-%02d" % (rng.randint(1000, 2999), rng.randint(1, 12), rng.randint(1, 28))
    if k == 4:
        return "0x%X" % rng.randrange(1 << 32)
    if k == 5:
        return "%d%%" % rng.randint(0, 100)
    if k == 6:
        return "+1 (%03d) %03d-%04d" % (rng.randrange(1000), rng.randrange(1000), rng.randrange(10000))
    if k == 7:
        return "%de%d" % (rng.randint(1, 9), rng.randint(-30, 30))
    if k == 8:
        return "v%d.%d.%d" % (rng.randrange(20), rng.randrange(100), rng.randrange(1000))
    return "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 40)))


def spaces(rng):
    return rng.choice([" ", "  ", "   ", "    ", " " * rng.randint(5, 20), "\t", "\t\t", "\n", "\n\n",
                       "\n\n\n", "\r\n", " \n ", "\n    ", "\u00a0", "\u3000", " \t \n", "\u2028",
                       "\n" * rng.randint(4, 9), " " * rng.randint(2, 6) + "\n"])


def contraction(rng):
    w = rng.choice(["I'm", "don't", "it's", "they're", "we've", "you'll", "she'd", "can't",
                    "I'M", "DON'T", "They'Re", "WE'VE", "You'LL", "it'S", "O'Neil", "rock 'n' roll",
                    "'tis", "'s", "''", "'''quoted'''", "the dogs' bowls"])
    return w


def special(rng):
    return rng.choice(SPECIALS)


def accent(rng):
    w = rng.choice(ACCENTS)
    if rng.random() < 0.25:  # decomposed (NFD): NFC normalizers recompose it
        w = unicodedata.normalize("NFD", w)
    return w


def words(rng):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))


GENERATORS = [
    (lambda r: " ".join(r.choice(PROSE) for _ in range(r.randint(1, 3))), 14),
    (code_lines, 12),
    (lambda r: " ".join(number(r) for _ in range(r.randint(1, 5))), 6),
    (lambda r: spaces(r).join(words(r) for _ in range(r.randint(2, 4))) + (spaces(r) if r.random() < 0.5 else ""), 10),
    (lambda r: " ".join(accent(r) for _ in range(r.randint(1, 6))), 8),
    (lambda r: " ".join(r.choice(SCRIPTS) for _ in range(r.randint(1, 2))), 5),
    (lambda r: "".join(r.choice(CJK) for _ in range(r.randint(1, 3))), 6),
    (lambda r: "".join(r.choice(EMOJI) + r.choice(["", " ", "!", "ok", "\n"]) for _ in range(r.randint(1, 5))), 6),
    (lambda r: " ".join(contraction(r) for _ in range(r.randint(1, 4))), 4),
    (lambda r: r.choice(["", " ", "\n"]).join(
        r.choice([special(r), words(r), special(r) + special(r), " " + special(r) + " "])
        for _ in range(r.randint(1, 5))), 9),
    (lambda r: "".join(r.choice([words(r), number(r), spaces(r), accent(r), r.choice(CJK),
                                r.choice(EMOJI), special(r), contraction(r), r.choice(PROSE)])
                       for _ in range(r.randint(2, 7))), 16),
    (lambda r: r.choice(["", " ", "a", "\n", "  leading", "trailing  ", "\t\tindented", "x" * 300,
                         "!" * 40, "-" * 64, "=" * 33, "." * 7, "é" * 20, "😀" * 12,
                         "\x01\x02 control \x7f", "tab\tseparated\tvalues", "a\r\nb\rc\nd",
                         "ab" * 150, " " * 100 + "x", "\n" * 30, "\u200bzero\u200bwidth",
                         "\ufeffBOM", "soft\u00adhyphen", "ﬁ ﬂ ligatures", "½ ¼ ¾ ² ³ ⅞",
                         "Ⅻ roman", "①②③", "𝟙𝟚𝟛"]), 4),
]


def main():
    rng = random.Random(20240523)
    total = sum(w for _, w in GENERATORS)
    out = []
    fixed = [  # always present
        "", " ", "Hello world", " Hello world", "Hello  world", "hello\nworld", "\n", "<s>",
        "<s>Hello</s>", "<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n",
        "e\u0301", "caf\u0065\u0301 au lait", "I'm done. You're not. They'LL see.",
        "   leading spaces", "trailing spaces   ", "1234567890", "3.14159265358979",
    ]
    out.extend(fixed)
    while len(out) < N_LINES:
        x = rng.uniform(0, total)
        for gen, wgt in GENERATORS:
            if x < wgt:
                out.append(gen(rng))
                break
            x -= wgt
    for s in out:
        sys.stdout.write(json.dumps(s, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
