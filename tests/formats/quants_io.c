/*
 * quants_io.c — the engine's block-format conversions as a filter, so tests/formats/run.py can
 * compare them with the independent numpy implementation (tools/reference/quants.py):
 *
 *   quants_io [--active] dequantize TYPE  < whole blocks of TYPE  > float32 values
 *   quants_io [--active] quantize TYPE    < float32 values        > blocks of TYPE
 *
 * Reads all of stdin and writes the result to stdout, both in native byte order. By default it
 * uses the scalar reference kernels (eng_type_traits_ref); --active uses the table the engine
 * runs with (SIMD kernels installed for this CPU). Exit status 0; 1 with a message on stderr for
 * an unknown type, a type without a quantizer, input that is not whole blocks, or an I/O error;
 * 2 for bad usage. It compares nothing itself.
 */
#include "quants.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* All of f in one malloc'd buffer (caller frees); *len gets its size. NULL on error. */
static unsigned char *read_all(FILE *f, size_t *len) {
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) return NULL;
    for (;;) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        unsigned char *grown = realloc(buf, cap * 2);
        if (!grown) {
            free(buf);
            return NULL;
        }
        buf = grown;
        cap *= 2;
    }
    if (ferror(f)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static int usage(void) {
    fprintf(stderr, "usage: quants_io [--active] dequantize|quantize TYPE < input > output\n");
    return 2;
}

int main(int argc, char **argv) {
    int a = 1;
    bool active = a < argc && strcmp(argv[a], "--active") == 0;
    if (active) a++;
    if (argc - a != 2) return usage();
    bool quantize = strcmp(argv[a], "quantize") == 0;
    if (!quantize && strcmp(argv[a], "dequantize") != 0) return usage();

    int t = eng_type_from_name(argv[a + 1]);
    const struct eng_type_traits *tr = t < 0    ? NULL
                                       : active ? eng_type_traits((enum eng_type)t)
                                                : eng_type_traits_ref(t);
    if (!tr || !tr->is_quantized || (quantize && !tr->from_float)) {
        fprintf(stderr, "quants_io: %s: not a block format with %s here\n", argv[a + 1],
                quantize ? "a quantizer" : "a dequantizer");
        return 1;
    }

    size_t len;
    unsigned char *in = read_all(stdin, &len);
    if (!in) {
        fprintf(stderr, "quants_io: cannot read stdin\n");
        return 1;
    }
    /* element count, and the size of the other side */
    size_t in_unit = quantize ? sizeof(float) * (size_t)tr->blck_size : tr->type_size;
    size_t out_unit = quantize ? tr->type_size : sizeof(float) * (size_t)tr->blck_size;
    if (len % in_unit) {
        fprintf(stderr, "quants_io: %zu input bytes are not whole %s blocks\n", len, tr->name);
        free(in);
        return 1;
    }
    size_t n_blocks = len / in_unit;
    int64_t n = (int64_t)n_blocks * tr->blck_size;
    unsigned char *out = malloc(n_blocks * out_unit + 1);
    if (!out) {
        fprintf(stderr, "quants_io: out of memory\n");
        free(in);
        return 1;
    }
    if (quantize)
        tr->from_float((const float *)in, out, n);
    else
        tr->to_float(in, (float *)out, n);

    int rc = 0;
    if (fwrite(out, 1, n_blocks * out_unit, stdout) != n_blocks * out_unit || fflush(stdout)) {
        fprintf(stderr, "quants_io: write error\n");
        rc = 1;
    }
    free(in);
    free(out);
    return rc;
}
