/*
 * auth.c — API keys: loaded from the api_keys list and api_key_file, checked in time that does
 * not reveal how much of a guess was right. It does not parse HTTP headers (http.c extracts the
 * key from "Authorization: Bearer" or "x-api-key").
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void srv_auth_free(struct srv_auth *a) {
    for (int i = 0; i < a->n; i++) {
        /* Keys are secrets: clear them before giving the memory back. */
        explicit_bzero(a->keys[i], strlen(a->keys[i]));
        free(a->keys[i]);
    }
    free(a->keys);
    a->keys = NULL;
    a->n = 0;
}

static int add_key(struct srv_auth *a, const char *k, size_t n) {
    char **v = realloc(a->keys, (size_t)(a->n + 1) * sizeof(char *));
    if (!v) return ENG_ENOMEM;
    a->keys = v;
    if (!(a->keys[a->n] = strndup(k, n))) return ENG_ENOMEM;
    a->n++;
    return 0;
}

int srv_auth_load(struct srv_auth *out, const struct srv_config *c, char *err, size_t errlen) {
    struct srv_auth a = {0, NULL};
    for (int i = 0; i < c->api_keys.n; i++)
        if (add_key(&a, c->api_keys.v[i], strlen(c->api_keys.v[i]))) goto nomem;
    if (c->api_key_file && *c->api_key_file) {
        FILE *f = fopen(c->api_key_file, "r");
        if (!f) {
            snprintf(err, errlen, "api_key_file: %s: %s", c->api_key_file, strerror(errno));
            srv_auth_free(&a);
            return ENG_EIO;
        }
        char line[4096];
        int lineno = 0;
        while (fgets(line, sizeof(line), f)) {
            lineno++;
            size_t n = strlen(line);
            while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                         line[n - 1] == '\t'))
                line[--n] = 0;
            char *s = line;
            while (*s == ' ' || *s == '\t') s++;
            if (!*s || *s == '#') continue;
            if (add_key(&a, s, strlen(s))) {
                fclose(f);
                goto nomem;
            }
        }
        explicit_bzero(line, sizeof(line));
        fclose(f);
    }
    srv_auth_free(out);
    *out = a;
    return 0;
nomem:
    srv_auth_free(&a);
    snprintf(err, errlen, "out of memory");
    return ENG_ENOMEM;
}

/* Compares every byte of the longer of the two strings; the result depends on all of them. */
static bool ct_equal(const char *a, size_t na, const char *b, size_t nb) {
    size_t n = na > nb ? na : nb;
    unsigned diff = na != nb;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < na ? (unsigned char)a[i] : 0;
        unsigned char y = i < nb ? (unsigned char)b[i] : 0;
        diff |= (unsigned)(x ^ y);
    }
    return diff == 0;
}

bool srv_auth_check(const struct srv_auth *a, const char *key, size_t len) {
    if (a->n == 0) return true;
    if (!key) return false;
    bool ok = false;
    /* No early exit: every configured key is compared. */
    for (int i = 0; i < a->n; i++) ok |= ct_equal(a->keys[i], strlen(a->keys[i]), key, len);
    return ok;
}
