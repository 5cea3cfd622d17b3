/*
 * fuzz_server_config.c — libFuzzer target for edgellmd's config-file parser: the input is parsed
 * as a config file; an accepted file must print (--print-config) into text that parses again to
 * the same values. Any crash, leak or sanitizer report is a bug; refusals are expected.
 *
 * The server sources are compiled into the target directly (the fuzz build links only the
 * engine and compress libraries).
 */
#include "../../server/config.c"

#include <assert.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct srv_config c, d;
    char err[512];
    if (cfg_init(&c)) return 0;
    if (cfg_parse_text(&c, (const char *)data, size, "fuzz", err, sizeof(err)) == 0) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (f) {
            cfg_print(&c, f);
            fclose(f);
            if (cfg_init(&d) == 0) {
                int rc = cfg_parse_text(&d, buf, len, "printed", err, sizeof(err));
                int n;
                const struct cfg_key *k = cfg_keys(&n);
                for (int i = 0; rc == 0 && i < n; i++)
                    if (!(k[i].flags & CFG_SECRET)) assert(!cfg_differs(&c, &d, &k[i]));
                cfg_free(&d);
            }
            free(buf);
        }
        cfg_check(&c, 0, err, sizeof(err));
    } else {
        assert(err[0] != 0);
    }
    cfg_free(&c);
    return 0;
}
