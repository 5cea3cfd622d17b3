/*
 * main.c — the `edgellm` command: dispatches to subcommands and holds the small argument
 * helpers they share. Subcommands do their own parsing and printing.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"info", cmd_info, "show a model's metadata, tensors and architecture"},
    {"logits", cmd_logits, "print logits for token ids as JSON (reference checks, debugging)"},
    {"compress", cmd_compress, "layer-wise compression of a model under a size budget"},
    {"bench", cmd_bench, "measure prompt processing and generation speed (tok/s)"},
    {"convert", cmd_convert, "convert a Hugging Face model directory to GGUF"},
    {"run", cmd_run, "generate text from a prompt, or chat, streaming to stdout"},
    {"perplexity", cmd_perplexity, "perplexity of a model on a text file (llama.cpp's method)"},
    {"tokenize", cmd_tokenize, "show how a model's tokenizer splits text"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: edgellm <command> [options]   (edgellm <command> --help for details)\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "edgellm: unknown command '%s' (edgellm --help lists them)\n", argv[1]);
    return 2;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "edgellm %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (edgellm %s --help)\n", cmd);
    return 2;
}

int cli_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "edgellm %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int cli_parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cli_parse_float(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cli_parse_ids(const char *s, int32_t **out) {
    int n = 1;
    for (const char *p = s; *p; p++) n += *p == ',';
    int32_t *ids = malloc((size_t)n * sizeof(*ids));
    if (!ids) return -1;
    const char *p = s;
    for (int i = 0; i < n; i++) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > INT32_MAX || (*end != ',' && *end != 0)) {
            free(ids);
            return -1;
        }
        ids[i] = (int32_t)v;
        p = end + (*end == ',');
    }
    *out = ids;
    return n;
}

bool cli_is_help(const char *arg) {
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}
