/*
 * unicode.c — UTF-8 coding and NFC normalization over the generated tables (unicode_data.c).
 *
 * Owns: decoding that never fails (bad bytes become U+FFFD, one byte at a time, so a tokenizer
 * can still account for every input byte), and canonical composition as Unicode's normalization
 * algorithm defines it (full canonical decomposition, canonical ordering, composition; Hangul
 * done arithmetically). It does not do compatibility (NFKC/NFKD) forms or case folding.
 */
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

int eng_utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

int eng_utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned char c = u[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        *cp = 0xFFFD;
        return 1;
    }
    if ((size_t)len > n) {
        *cp = 0xFFFD;
        return 1;
    }
    for (int i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) {
            *cp = 0xFFFD;
            return 1;
        }
        v = (v << 6) | (u[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = 0xFFFD;
        return 1;
    }
    *cp = v;
    return len;
}

int eng_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- normalization ---- */

#define HANGUL_S0 0xAC00
#define HANGUL_L0 0x1100
#define HANGUL_V0 0x1161
#define HANGUL_T0 0x11A7
#define HANGUL_LN 19
#define HANGUL_VN 21
#define HANGUL_TN 28
#define HANGUL_NN (HANGUL_VN * HANGUL_TN)
#define HANGUL_SN (HANGUL_LN * HANGUL_NN)

static bool in_nfc_qc(uint32_t cp) {
    int lo = 0, hi = eng_ucd_n_nfc_qc - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < eng_ucd_nfc_qc[mid].lo)
            hi = mid - 1;
        else if (cp > eng_ucd_nfc_qc[mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

static int ccc_of(uint32_t cp) {
    if (cp < 0x300) return 0;
    int lo = 0, hi = eng_ucd_n_ccc - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < eng_ucd_ccc[mid].lo)
            hi = mid - 1;
        else if (cp > eng_ucd_ccc[mid].hi)
            lo = mid + 1;
        else
            return eng_ucd_ccc[mid].ccc;
    }
    return 0;
}

static const struct eng_ucd_decomp *decomp_of(uint32_t cp) {
    int lo = 0, hi = eng_ucd_n_decomp - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < eng_ucd_decomp[mid].cp)
            hi = mid - 1;
        else if (cp > eng_ucd_decomp[mid].cp)
            lo = mid + 1;
        else
            return &eng_ucd_decomp[mid];
    }
    return NULL;
}

/* Composite of (a, b), or 0. */
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= HANGUL_L0 && a < HANGUL_L0 + HANGUL_LN && b >= HANGUL_V0 && b < HANGUL_V0 + HANGUL_VN)
        return HANGUL_S0 + ((a - HANGUL_L0) * HANGUL_VN + (b - HANGUL_V0)) * HANGUL_TN;
    if (a >= HANGUL_S0 && a < HANGUL_S0 + HANGUL_SN && (a - HANGUL_S0) % HANGUL_TN == 0 &&
        b > HANGUL_T0 && b < HANGUL_T0 + HANGUL_TN)
        return a + (b - HANGUL_T0);
    int lo = 0, hi = eng_ucd_n_comp - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const struct eng_ucd_comp *c = &eng_ucd_comp[mid];
        if (a < c->first || (a == c->first && b < c->second))
            hi = mid - 1;
        else if (a > c->first || b > c->second)
            lo = mid + 1;
        else
            return c->composite;
    }
    return 0;
}

bool eng_nfc_needed(const char *s, size_t n) {
    int last_ccc = 0;
    for (size_t i = 0; i < n;) {
        if ((unsigned char)s[i] < 0xCC) { /* every code point below U+0300 is NFC-stable */
            i++;
            last_ccc = 0;
            continue;
        }
        uint32_t cp;
        i += (size_t)eng_utf8_decode(s + i, n - i, &cp);
        int c = ccc_of(cp);
        if (in_nfc_qc(cp) || (c && last_ccc > c)) return true; /* or marks out of order */
        last_ccc = c;
    }
    return false;
}

/* One decoded unit: a code point, or (cp = UINT32_MAX) an invalid byte kept as it is. */
struct unit {
    uint32_t cp;
    uint8_t ccc;
    uint8_t byte;
};

char *eng_nfc(const char *s, size_t n, size_t *out_n) {
    /* A code point decomposes into at most 18 (the UCD's longest canonical decomposition is
     * 4; Hangul 3); 4n units is a safe bound. */
    struct unit *u = malloc((4 * n + 1) * sizeof(*u));
    char *out = malloc(4 * n + 1);
    if (!u || !out) {
        free(u);
        free(out);
        return NULL;
    }
    size_t m = 0;
    /* 1. full canonical decomposition */
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int len = eng_utf8_decode(s + i, n - i, &cp);
        if (cp == 0xFFFD && len == 1) { /* invalid byte: kept, never composed */
            u[m++] = (struct unit){UINT32_MAX, 0, (uint8_t)s[i]};
            i += (size_t)len;
            continue;
        }
        i += (size_t)len;
        if (cp >= HANGUL_S0 && cp < HANGUL_S0 + HANGUL_SN) {
            uint32_t k = cp - HANGUL_S0;
            u[m++] = (struct unit){HANGUL_L0 + k / HANGUL_NN, 0, 0};
            u[m++] = (struct unit){HANGUL_V0 + (k % HANGUL_NN) / HANGUL_TN, 0, 0};
            if (k % HANGUL_TN) u[m++] = (struct unit){HANGUL_T0 + k % HANGUL_TN, 0, 0};
            continue;
        }
        const struct eng_ucd_decomp *d = cp >= 0xC0 ? decomp_of(cp) : NULL;
        if (d) {
            for (int j = 0; j < d->len; j++) {
                uint32_t c = eng_ucd_decomp_data[d->off + j];
                u[m++] = (struct unit){c, (uint8_t)ccc_of(c), 0};
            }
        } else {
            u[m++] = (struct unit){cp, (uint8_t)ccc_of(cp), 0};
        }
    }
    /* 2. canonical ordering: stable insertion sort of each run of non-starters */
    for (size_t i = 1; i < m; i++) {
        if (!u[i].ccc) continue;
        struct unit x = u[i];
        size_t j = i;
        while (j > 0 && u[j - 1].ccc > x.ccc) {
            u[j] = u[j - 1];
            j--;
        }
        u[j] = x;
    }
    /* 3. canonical composition */
    size_t starter = SIZE_MAX, w = 0;
    int last_ccc = -1;
    for (size_t i = 0; i < m; i++) {
        struct unit x = u[i];
        if (x.cp != UINT32_MAX && starter != SIZE_MAX) {
            bool blocked = last_ccc != -1 && (last_ccc == 0 || last_ccc >= x.ccc);
            uint32_t c = blocked ? 0 : compose(u[starter].cp, x.cp);
            if (c) {
                u[starter].cp = c;
                u[starter].ccc = (uint8_t)ccc_of(c);
                continue;
            }
        }
        if (x.cp != UINT32_MAX && x.ccc == 0) {
            starter = w;
            last_ccc = -1;
        } else {
            last_ccc = x.cp == UINT32_MAX ? 0 : x.ccc;
            if (x.cp == UINT32_MAX) starter = SIZE_MAX;
        }
        u[w++] = x;
    }
    size_t o = 0;
    for (size_t i = 0; i < w; i++) {
        if (u[i].cp == UINT32_MAX)
            out[o++] = (char)u[i].byte;
        else
            o += (size_t)eng_utf8_encode(u[i].cp, out + o);
    }
    out[o] = 0;
    free(u);
    *out_n = o;
    return out;
}
