/*
 * cli.h — shared pieces of the edgellm command: the subcommand table entries and small
 * argument helpers. Each subcommand lives in cli/cmd_<name>.c and exports
 * `int cmd_<name>(int argc, char **argv)` returning the process exit code (0 ok, 1 failure,
 * 2 usage error).
 */
#ifndef EDGELLM_CLI_H
#define EDGELLM_CLI_H

#include "engine.h"

#include <stdbool.h>
#include <stdint.h>

int cmd_info(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_compress(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);

/* The model used when -m is not given (run, tokenize, perplexity). */
#define CLI_DEFAULT_MODEL "models/default.gguf"
/* given; or, when given is NULL, the bundled model (CLI_DEFAULT_MODEL in the working directory,
 * else next to the executable, as edgellmd finds it); else prints a one-line error for cmd and
 * returns NULL. The result is static or given: do not free. */
const char *cli_model_path(const char *cmd, const char *given);

/* Prints "edgellm <cmd>: <message>" to stderr and returns 2 (usage) — for one-line errors. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "edgellm <cmd>: <message>" to stderr and returns 1 (failure). */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Strict integer parse: whole string, within [lo, hi]. Returns 0 or -1. */
int cli_parse_int(const char *s, long lo, long hi, long *out);
int cli_parse_float(const char *s, double lo, double hi, double *out);
/* Parses "1,2,3" into a fresh array (caller frees). Returns count, or -1 on a malformed list. */
int cli_parse_ids(const char *s, int32_t **out);
/* True if argv[i] is "--help" or "-h". */
bool cli_is_help(const char *arg);

#endif
