/*
 * model_path.c — the default model of the commands that take `-m MODEL` as optional (run,
 * tokenize, perplexity): models/default.gguf, the model bundled with edgellm.
 */
#include "cli.h"

#include <stdio.h>
#include <unistd.h>

const char *cli_model_path(const char *cmd, const char *given) {
    if (given) return given;
    if (access(CLI_DEFAULT_MODEL, R_OK) == 0) return CLI_DEFAULT_MODEL;
    cli_fail(cmd,
             "no -m MODEL given and the default model %s does not exist (build it, or pass "
             "-m MODEL.gguf)",
             CLI_DEFAULT_MODEL);
    return NULL;
}
