/*
 * cmd_info.c — `edgellm info MODEL`: metadata, tensor table, parameter count, bits per weight
 * and the architecture summary. Works on any valid GGUF, also one this build cannot run (it then
 * says why and exits 1).
 */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static void print_scalar(const struct eng_gguf_value *v) {
    switch (v->type) {
    case ENG_GGUF_U8:
    case ENG_GGUF_U16:
    case ENG_GGUF_U32:
    case ENG_GGUF_U64:
        printf("%" PRIu64, v->v.u64);
        break;
    case ENG_GGUF_I8:
    case ENG_GGUF_I16:
    case ENG_GGUF_I32:
    case ENG_GGUF_I64:
        printf("%" PRId64, v->v.i64);
        break;
    case ENG_GGUF_F32:
    case ENG_GGUF_F64:
        printf("%g", v->v.f64);
        break;
    case ENG_GGUF_BOOL:
        printf("%s", v->v.u64 ? "true" : "false");
        break;
    default:
        break;
    }
}

/* Prints a string escaped and cut to max bytes. */
static void print_str(const char *s, uint64_t len, uint64_t max) {
    putchar('"');
    for (uint64_t i = 0; i < len && i < max; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\n')
            fputs("\\n", stdout);
        else if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            printf("\\x%02x", ch);
        else
            putchar(ch);
    }
    putchar('"');
    if (len > max) printf("... (%" PRIu64 " bytes)", len);
}

static void print_value(const struct eng_gguf_value *v) {
    if (v->type == ENG_GGUF_STRING) {
        print_str(v->v.str.s, v->v.str.len, 120);
    } else if (v->type == ENG_GGUF_ARRAY) {
        uint64_t n = v->v.arr.n, show = n < 6 ? n : 6;
        printf("[%s x %" PRIu64 "]", eng_gguf_vtype_name(v->v.arr.elem_type), n);
        if (!show) return;
        printf(" [");
        for (uint64_t i = 0; i < show; i++) {
            if (i) printf(", ");
            enum eng_gguf_vtype et = v->v.arr.elem_type;
            if (et == ENG_GGUF_STRING) {
                const struct eng_gguf_str *s = &((const struct eng_gguf_str *)v->v.arr.data)[i];
                print_str(s->s, s->len, 24);
            } else if (et == ENG_GGUF_ARRAY) {
                print_value(&((const struct eng_gguf_value *)v->v.arr.data)[i]);
            } else {
                struct eng_gguf_value e = {.type = et};
                const uint8_t *p = (const uint8_t *)v->v.arr.data + i * eng_gguf_vtype_size(et);
                switch (et) {
                case ENG_GGUF_U8:
                case ENG_GGUF_BOOL:
                    e.v.u64 = *p;
                    break;
                case ENG_GGUF_I8:
                    e.v.i64 = (int8_t)*p;
                    break;
                case ENG_GGUF_U16: {
                    uint16_t x;
                    memcpy(&x, p, 2);
                    e.v.u64 = x;
                    break;
                }
                case ENG_GGUF_I16: {
                    int16_t x;
                    memcpy(&x, p, 2);
                    e.v.i64 = x;
                    break;
                }
                case ENG_GGUF_U32: {
                    uint32_t x;
                    memcpy(&x, p, 4);
                    e.v.u64 = x;
                    break;
                }
                case ENG_GGUF_I32: {
                    int32_t x;
                    memcpy(&x, p, 4);
                    e.v.i64 = x;
                    break;
                }
                case ENG_GGUF_F32: {
                    float x;
                    memcpy(&x, p, 4);
                    e.v.f64 = x;
                    break;
                }
                case ENG_GGUF_U64:
                    memcpy(&e.v.u64, p, 8);
                    break;
                case ENG_GGUF_I64:
                    memcpy(&e.v.i64, p, 8);
                    break;
                case ENG_GGUF_F64:
                    memcpy(&e.v.f64, p, 8);
                    break;
                default:
                    break;
                }
                print_scalar(&e);
            }
        }
        printf("%s]", n > show ? ", ..." : "");
    } else {
        print_scalar(v);
    }
}

static void human_bytes(double b, char *out, size_t n) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) b /= 1024, i++;
    snprintf(out, n, i ? "%.2f %s" : "%.0f %s", b, u[i]);
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            printf("usage: edgellm info MODEL.gguf\n\n"
                   "Shows the file's metadata, every tensor (name, type, shape, bytes), the\n"
                   "parameter count, bits per weight and the architecture summary.\n"
                   "Exit code 1 if the file is invalid or this build cannot run the model.\n");
            return 0;
        }
        if (argv[i][0] == '-') return cli_usage_error("info", "unknown option '%s'", argv[i]);
        if (path) return cli_usage_error("info", "one model file expected");
        path = argv[i];
    }
    if (!path) return cli_usage_error("info", "missing MODEL argument");
    struct eng_gguf *g = eng_gguf_open(path);
    if (!g) return cli_fail("info", "%s", eng_last_error());

    char hb[32];
    human_bytes((double)eng_gguf_file_size(g), hb, sizeof(hb));
    printf("file:       %s\n", path);
    printf("format:     GGUF v%u, %zu bytes (%s), alignment %zu, data at %zu\n",
           eng_gguf_version(g), eng_gguf_file_size(g), hb, eng_gguf_alignment(g),
           eng_gguf_data_offset(g));
    printf("\nmetadata (%" PRId64 " keys):\n", eng_gguf_n_kv(g));
    for (int64_t i = 0; i < eng_gguf_n_kv(g); i++) {
        const struct eng_gguf_kv *kv = eng_gguf_kv_at(g, i);
        printf("  %-44s ", kv->key.s);
        if (kv->val.type != ENG_GGUF_ARRAY) printf("%-6s ", eng_gguf_vtype_name(kv->val.type));
        print_value(&kv->val);
        putchar('\n');
    }
    int64_t n_params = 0;
    size_t n_bytes = 0;
    int64_t type_count[ENG_TYPE_COUNT] = {0};
    printf("\ntensors (%" PRId64 "):\n", eng_gguf_n_tensors(g));
    printf("  %-36s %-7s %-24s %12s\n", "name", "type", "shape", "bytes");
    for (int64_t i = 0; i < eng_gguf_n_tensors(g); i++) {
        const struct eng_tensor *t = eng_gguf_tensor_at(g, i);
        char shape[64] = "";
        int64_t ne = 1;
        for (int d = 0; d < t->n_dims; d++) {
            char part[24];
            snprintf(part, sizeof(part), d ? " x %lld" : "%lld", (long long)t->ne[d]);
            strncat(shape, part, sizeof(shape) - strlen(shape) - 1);
            ne *= t->ne[d];
        }
        printf("  %-36s %-7s %-24s %12zu\n", t->name, eng_type_name(t->type), shape, t->nbytes);
        n_params += ne;
        n_bytes += t->nbytes;
        type_count[t->type]++;
    }
    printf("\nparameters: %" PRId64 " (%.2f M)\n", n_params, n_params / 1e6);
    human_bytes((double)n_bytes, hb, sizeof(hb));
    printf("weights:    %zu bytes (%s), %.3f bits per weight\n", n_bytes, hb,
           n_params ? 8.0 * (double)n_bytes / (double)n_params : 0.0);
    printf("types:     ");
    for (int t = 0; t < ENG_TYPE_COUNT; t++)
        if (type_count[t]) printf(" %s x %" PRId64, eng_type_name(t), type_count[t]);
    printf("\n");
    eng_gguf_close(g);

    struct eng_model *m = eng_model_load(path, NULL);
    if (!m) return cli_fail("info", "cannot run this model: %s", eng_last_error());
    const struct eng_hparams *hp = eng_model_hparams(m);
    printf("\narchitecture: %s\n", eng_arch_name(hp->arch));
    printf("  layers %d, embedding %d, feed-forward %d, vocabulary %d, trained context %d\n",
           hp->n_layer, hp->n_embd, hp->n_ff, hp->n_vocab, hp->n_ctx_train);
    printf("  attention: %d heads, %d KV heads (%s), head dim %d\n", hp->n_head, hp->n_head_kv,
           hp->n_head_kv == hp->n_head ? "MHA"
           : hp->n_head_kv == 1        ? "MQA"
                                       : "GQA",
           hp->head_dim);
    printf("  rope: %s pairing, %d dims, base %g, linear scale %g%s\n",
           hp->rope_mode == ENG_ROPE_NORM ? "normal" : "neox", hp->n_rot, hp->rope_base,
           hp->rope_scale, hp->has_rope_freqs ? ", frequency factors (llama3 scaling)" : "");
    printf("  rms eps %g, output head %s%s%s\n", hp->rms_eps, hp->tied_output ? "tied" : "separate",
           hp->has_qkv_bias ? ", qkv bias" : "", hp->has_qk_norm ? ", q/k norm" : "");
    eng_model_free(m);
    return 0;
}
