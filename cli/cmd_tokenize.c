/*
 * cmd_tokenize.c — `edgellm tokenize`: shows how a model's tokenizer splits text.
 *
 * Owns: the command's options and output formats, including the batch mode the tokenizer
 * tests use (--jsonl: one JSON string per input line → token ids and the round-tripped text).
 * Reads only the tokenizer metadata of the GGUF file, never the weights.
 */
#include "cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "tokenize"

static void usage(void) {
    printf("usage: edgellm tokenize [-m MODEL] TEXT [--ids] [--no-bos] [--no-special]\n"
           "       edgellm tokenize [-m MODEL] --jsonl FILE\n\n"
           "Prints the tokens of TEXT, one per line (id and the text it stands for).\n"
           "  -m MODEL       GGUF model (default %s)\n"
           "  --ids          print only the ids, as a JSON list\n"
           "  --no-bos       do not add the BOS/EOS tokens the model asks for\n"
           "  --no-special   treat special-token text such as <|im_start|> as plain text\n"
           "  --jsonl FILE   each line of FILE is a JSON string; prints one JSON object per line:\n"
           "                 {\"ids\": ids with BOS and special tokens parsed,\n"
           "                  \"text\": decode(encode(line)) without either}\n",
           CLI_DEFAULT_MODEL);
}

static void print_escaped(const char *s, int n) {
    putchar('"');
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            printf("\\n");
        else if (c == '\t')
            printf("\\t");
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* Tokenizes text into a malloc'd array; returns the count or a negative error. */
static int encode(const struct eng_tokenizer *t, const char *text, size_t len, unsigned flags,
                  int32_t **out) {
    int n = eng_tokenize(t, text, len, NULL, 0, flags);
    if (n < 0) return n;
    *out = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    if (!*out) return ENG_ENOMEM;
    return eng_tokenize(t, text, len, *out, n, flags);
}

static int run_jsonl(const struct eng_tokenizer *t, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return cli_fail(CMD, "%s: cannot open", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int lineno = 0, rc = 0;
    char *buf = NULL;
    int bufcap = 0;
    while ((got = getline(&line, &cap, f)) > 0) {
        lineno++;
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)got, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!json_is_string(j)) {
            json_decref(j);
            rc = cli_fail(CMD, "%s:%d: not a JSON string", path, lineno);
            break;
        }
        const char *s = json_string_value(j);
        size_t len = json_string_length(j);
        int32_t *ids = NULL, *rt = NULL;
        int n = encode(t, s, len, ENG_TOKENIZE_ADD_SPECIAL | ENG_TOKENIZE_PARSE_SPECIAL, &ids);
        int m = n >= 0 ? encode(t, s, len, 0, &rt) : n;
        if (n < 0 || m < 0) {
            free(ids);
            free(rt);
            json_decref(j);
            rc = cli_fail(CMD, "%s:%d: %s", path, lineno, eng_last_error());
            break;
        }
        int dn = eng_detokenize(t, rt, m, buf, bufcap, 0);
        if (dn >= bufcap) {
            bufcap = dn + 1;
            char *nb = realloc(buf, (size_t)bufcap);
            if (!nb) {
                rc = cli_fail(CMD, "out of memory");
                break;
            }
            buf = nb;
            dn = eng_detokenize(t, rt, m, buf, bufcap, 0);
        }
        json_t *arr = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(arr, json_integer(ids[i]));
        json_t *o = json_object();
        json_object_set_new(o, "ids", arr);
        json_t *txt = json_stringn(buf, (size_t)dn); /* NULL if not valid UTF-8 */
        json_object_set_new(o, "text", txt ? txt : json_null());
        char *dump = json_dumps(o, JSON_COMPACT);
        if (dump) puts(dump);
        free(dump);
        json_decref(o);
        json_decref(j);
        free(ids);
        free(rt);
    }
    free(buf);
    free(line);
    fclose(f);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL, *text = NULL, *jsonl = NULL;
    bool ids_only = false;
    unsigned flags = ENG_TOKENIZE_ADD_SPECIAL | ENG_TOKENIZE_PARSE_SPECIAL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage();
            return 0;
        } else if (!strcmp(a, "-m") && i + 1 < argc) {
            path = argv[++i];
        } else if (!strcmp(a, "--jsonl") && i + 1 < argc) {
            jsonl = argv[++i];
        } else if (!strcmp(a, "--ids")) {
            ids_only = true;
        } else if (!strcmp(a, "--no-bos")) {
            flags &= ~(unsigned)ENG_TOKENIZE_ADD_SPECIAL;
        } else if (!strcmp(a, "--no-special")) {
            flags &= ~(unsigned)ENG_TOKENIZE_PARSE_SPECIAL;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(CMD, "unknown or incomplete option '%s'", a);
        } else if (!text) {
            text = a;
        } else {
            return cli_usage_error(CMD, "more than one TEXT argument (quote the text)");
        }
    }
    if (!text && !jsonl) return cli_usage_error(CMD, "TEXT (or --jsonl FILE) is required");
    if (text && jsonl) return cli_usage_error(CMD, "give TEXT or --jsonl FILE, not both");
    if (!(path = cli_model_path(CMD, path))) return 1;
    struct eng_gguf *g = eng_gguf_open(path);
    if (!g) return cli_fail(CMD, "%s", eng_last_error());
    struct eng_tokenizer *t = eng_tokenizer_load(g);
    eng_gguf_close(g);
    if (!t) return cli_fail(CMD, "%s", eng_last_error());
    int rc = 0;
    if (jsonl) {
        rc = run_jsonl(t, jsonl);
    } else {
        int32_t *ids = NULL;
        int n = encode(t, text, strlen(text), flags, &ids);
        if (n < 0) {
            rc = cli_fail(CMD, "%s", eng_last_error());
        } else if (ids_only) {
            putchar('[');
            for (int i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
            printf("]\n");
        } else {
            int cap = eng_tokenizer_max_piece(t) + 1;
            char *piece = malloc((size_t)cap);
            for (int i = 0; piece && i < n; i++) {
                int len = eng_token_to_piece(t, ids[i], piece, cap, ENG_DETOK_RENDER_SPECIAL);
                printf("%6d  ", ids[i]);
                print_escaped(piece, len < 0 ? 0 : len);
                putchar('\n');
            }
            free(piece);
        }
        free(ids);
    }
    eng_tokenizer_free(t);
    return rc;
}
