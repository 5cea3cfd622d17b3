/*
 * model_path.c — the default model of the commands that take `-m MODEL` as optional (run,
 * tokenize, perplexity): the model bundled with edgellm. Looked up as models/default.gguf in the
 * working directory, then next to the executable the way edgellmd does it: an installed
 * <prefix>/bin/edgellm finds <prefix>/share/edgellm/default.gguf, a build tree's binary the
 * checkout's models/default.gguf.
 */
#include "cli.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *cli_model_path(const char *cmd, const char *given) {
    if (given) return given;
    if (access(CLI_DEFAULT_MODEL, R_OK) == 0) return CLI_DEFAULT_MODEL;
    static char found[PATH_MAX];
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        static const char *const rel[] = {"/../share/edgellm/default.gguf",
                                          "/../models/default.gguf", "/../../models/default.gguf",
                                          "/../../../models/default.gguf"};
        for (size_t i = 0; slash && i < sizeof(rel) / sizeof(rel[0]); i++) {
            char p[PATH_MAX + 64];
            snprintf(p, sizeof(p), "%s%s", exe, rel[i]);
            if (realpath(p, found) && access(found, R_OK) == 0) return found;
        }
    }
    cli_fail(cmd,
             "no -m MODEL given and the bundled default model was not found (looked for %s here "
             "and next to the executable); build it with `make default-model`, or pass -m "
             "MODEL.gguf",
             CLI_DEFAULT_MODEL);
    return NULL;
}
