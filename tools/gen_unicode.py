"""Generate engine/unicode_data.c from the Unicode Character Database (Debian's unicode-data).

usage: /usr/bin/python3 tools/gen_unicode.py [UCD_DIR] > engine/unicode_data.c
       (UCD_DIR defaults to /usr/share/unicode)

Owns: turning UnicodeData.txt, and DerivedNormalizationProps.txt into
the C tables the tokenizer needs:
  - a per-code-point class byte (letter, number, punctuation, symbol, mark, separator, other, and
    whitespace as the pre-tokenizer regexes' \\s understands it), as a two-stage table;
  - canonical combining classes, full canonical decompositions, primary composites and the
    code points whose NFC quick-check is not "Yes" (for NFC normalization).
It does not implement anything: engine/unicode.c does. The output is committed; `make
check-unicode-tables` regenerates it and compares, so the two cannot drift apart silently.
"""

import os
import sys

BLOCK = 128  # code points per second-stage block

# Class bits; keep in sync with engine/unicode.h.
L, N, P, S, M, Z, C, SPACE = 1, 2, 4, 8, 16, 32, 64, 128
CAT_BITS = {"L": L, "N": N, "P": P, "S": S, "M": M, "Z": Z, "C": C}

# \s of the pre-tokenizer regexes (ECMAScript WhiteSpace + LineTerminator, which is what the
# JavaScript reference tokenizers use): TAB, LF, VT, FF, CR, SPACE, NBSP, ZWNBSP, every Zs,
# LINE SEPARATOR, PARAGRAPH SEPARATOR.
SPACE_EXTRA = [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0xA0, 0xFEFF, 0x2028, 0x2029]


def parse_unicode_data(path):
    """Returns (category by cp, ccc by cp, canonical decomposition by cp)."""
    cat, ccc, decomp = {}, {}, {}
    first = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split(";")
            cp = int(fields[0], 16)
            name, gc, cc, dm = fields[1], fields[2], int(fields[3]), fields[5]
            if name.endswith(", First>"):
                first = cp
                continue
            lo = first if name.endswith(", Last>") else cp
            first = None
            for c in range(lo, cp + 1):
                cat[c] = gc
                if cc:
                    ccc[c] = cc
            if dm and not dm.startswith("<"):
                decomp[cp] = [int(x, 16) for x in dm.split()]
    return cat, ccc, decomp


def parse_ranges(path, prop, value=None):
    """Code points listed with `prop` (and `value`, if given) in a UCD property file."""
    out = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = [p.strip() for p in line.split(";")]
            if len(parts) == 1:  # CompositionExclusions.txt: bare code points
                if prop is not None:
                    continue
            elif parts[1] != prop or (value is not None and (len(parts) < 3 or parts[2] != value)):
                continue
            r = parts[0].split("..")
            lo = int(r[0], 16)
            hi = int(r[1], 16) if len(r) > 1 else lo
            out.update(range(lo, hi + 1))
    return out


def full_decomposition(cp, decomp):
    if cp not in decomp:
        return [cp]
    out = []
    for c in decomp[cp]:
        out.extend(full_decomposition(c, decomp))
    return out


def emit_array(name, ctype, values, per_line, fmt):
    print("const %s %s[%d] = {" % (ctype, name, len(values)))
    for i in range(0, len(values), per_line):
        print("    " + ", ".join(fmt % v for v in values[i : i + per_line]) + ",")
    print("};")


def main():
    ucd = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/unicode"
    cat, ccc, decomp = parse_unicode_data(os.path.join(ucd, "UnicodeData.txt"))
    dnp = os.path.join(ucd, "DerivedNormalizationProps.txt")
    excluded = parse_ranges(dnp, "Full_Composition_Exclusion")
    nfc_no = parse_ranges(dnp, "NFC_QC", "N") | parse_ranges(dnp, "NFC_QC", "M")

    # ---- class table ----
    space = set(SPACE_EXTRA) | {c for c, g in cat.items() if g == "Zs"}
    classes = bytearray(0x110000)
    for c in range(0x110000):
        g = cat.get(c, "Cn")
        v = CAT_BITS[g[0]]
        if c in space:
            v |= SPACE
        classes[c] = v
    blocks, index = {}, []
    for b in range(0x110000 // BLOCK):
        blk = bytes(classes[b * BLOCK : (b + 1) * BLOCK])
        if blk not in blocks:
            blocks[blk] = len(blocks)
        index.append(blocks[blk])
    stage2 = b"".join(sorted(blocks, key=blocks.get))

    # ---- normalization tables ----
    ccc_ranges = []
    for c in sorted(ccc):
        if ccc_ranges and ccc_ranges[-1][1] == c - 1 and ccc_ranges[-1][2] == ccc[c]:
            ccc_ranges[-1][1] = c
        else:
            ccc_ranges.append([c, c, ccc[c]])
    dec_entries, dec_data = [], []
    for c in sorted(decomp):
        seq = full_decomposition(c, decomp)
        dec_entries.append((c, len(dec_data), len(seq)))
        dec_data.extend(seq)
    comps = []
    for c in sorted(decomp):
        d = decomp[c]
        if len(d) == 2 and c not in excluded:
            comps.append((d[0], d[1], c))
    comps.sort()
    qc_ranges = []
    for c in sorted(nfc_no):
        if qc_ranges and qc_ranges[-1][1] == c - 1:
            qc_ranges[-1][1] = c
        else:
            qc_ranges.append([c, c])

    print("/*")
    print(" * unicode_data.c — GENERATED by tools/gen_unicode.py from the Unicode Character Database")
    print(" * (UnicodeData.txt, DerivedNormalizationProps.txt). Do not edit: regenerate with")
    print(" *   /usr/bin/python3 tools/gen_unicode.py > engine/unicode_data.c")
    print(" * Tables only; engine/unicode.c holds the code that reads them.")
    print(" */")
    print('#include "unicode.h"')
    print()
    print("/* clang-format off */")
    print("/* Class byte of code point c: eng_ucd_stage2[eng_ucd_stage1[c >> %d] * %d + (c & %d)]. */"
          % (BLOCK.bit_length() - 1, BLOCK, BLOCK - 1))
    emit_array("eng_ucd_stage1", "uint16_t", index, 16, "%d")
    emit_array("eng_ucd_stage2", "uint8_t", list(stage2), 24, "%d")
    print()
    print("/* Canonical combining classes: ranges [lo, hi] of one non-zero class, sorted. */")
    print("const struct eng_ucd_ccc eng_ucd_ccc[%d] = {" % len(ccc_ranges))
    for lo, hi, v in ccc_ranges:
        print("    {0x%04X, 0x%04X, %d}," % (lo, hi, v))
    print("};")
    print("const int eng_ucd_n_ccc = %d;" % len(ccc_ranges))
    print()
    print("/* Full canonical decompositions (Hangul syllables excepted: they are algorithmic). */")
    print("const struct eng_ucd_decomp eng_ucd_decomp[%d] = {" % len(dec_entries))
    for c, off, n in dec_entries:
        print("    {0x%04X, %d, %d}," % (c, off, n))
    print("};")
    print("const int eng_ucd_n_decomp = %d;" % len(dec_entries))
    emit_array("eng_ucd_decomp_data", "uint32_t", dec_data, 10, "0x%04X")
    print()
    print("/* Primary composites: (first, second) -> composite, sorted by first then second. */")
    print("const struct eng_ucd_comp eng_ucd_comp[%d] = {" % len(comps))
    for a, b, c in comps:
        print("    {0x%04X, 0x%04X, 0x%04X}," % (a, b, c))
    print("};")
    print("const int eng_ucd_n_comp = %d;" % len(comps))
    print()
    print("/* Code points whose NFC quick-check is No or Maybe: ranges [lo, hi], sorted. */")
    print("const struct eng_ucd_range eng_ucd_nfc_qc[%d] = {" % len(qc_ranges))
    for lo, hi in qc_ranges:
        print("    {0x%04X, 0x%04X}," % (lo, hi))
    print("};")
    print("const int eng_ucd_n_nfc_qc = %d;" % len(qc_ranges))
    print("/* clang-format on */")


if __name__ == "__main__":
    main()
