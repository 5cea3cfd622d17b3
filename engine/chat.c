/*
 * chat.c — chat templates: which family a model's Jinja template belongs to, and rendering
 * messages the way that family's template does.
 *
 * Owns: detection by the markers each family's template writes (<|im_start|>, <|start_header_id|>,
 * [INST] with or without <<SYS>>, <start_of_turn>, <|assistant|>/<|end|>), the details that vary
 * within a family and can be read off the template (a ChatML default system message, the Llama 3.1
 * knowledge-date preamble), and one hand-written renderer per family.
 *
 * Does not: interpret Jinja. Templates outside these families fall back to ChatML, and the
 * caller is told (known = false) so it can log a warning.
 *
 * Renderings (S system, U user, A assistant; "+gen" is the generation prompt):
 *   ChatML   <|im_start|>ROLE\nCONTENT<|im_end|>\n ...  +gen <|im_start|>assistant\n
 *   Llama 3  BOS<|start_header_id|>ROLE<|end_header_id|>\n\nTRIM(CONTENT)<|eot_id|> ...
 *            +gen <|start_header_id|>assistant<|end_header_id|>\n\n
 *   Llama 2  BOS[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A EOS BOS[INST] U [/INST]
 *   Mistral  BOS[INST] U [/INST]A EOS[INST] U [/INST]     (S is prepended to the first U + "\n\n")
 *   Gemma    BOS<start_of_turn>user\nTRIM(U)<end_of_turn>\n<start_of_turn>model\nTRIM(A)...
 *            +gen <start_of_turn>model\n                  (S is prepended to the first U + "\n\n")
 *   Phi-3    <|ROLE|>\nCONTENT<|end|>\n ...  +gen <|assistant|>\n
 */
#include "engine.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const family_names[ENG_CHAT_FAMILY_COUNT] = {
    [ENG_CHAT_CHATML] = "chatml",   [ENG_CHAT_LLAMA3] = "llama3", [ENG_CHAT_LLAMA2] = "llama2",
    [ENG_CHAT_MISTRAL] = "mistral", [ENG_CHAT_GEMMA] = "gemma",   [ENG_CHAT_PHI3] = "phi3",
};

const char *eng_chat_family_name(enum eng_chat_family f) {
    return (unsigned)f < ENG_CHAT_FAMILY_COUNT ? family_names[f] : "?";
}

int eng_chat_family_from_name(const char *name) {
    for (int i = 0; i < ENG_CHAT_FAMILY_COUNT; i++)
        if (name && !strcmp(name, family_names[i])) return i;
    return -1;
}

enum eng_chat_family eng_chat_detect(const char *tmpl, bool *known) {
    bool k = true;
    enum eng_chat_family f = ENG_CHAT_CHATML;
    if (!tmpl || !*tmpl)
        k = false;
    else if (strstr(tmpl, "<|im_start|>"))
        f = ENG_CHAT_CHATML;
    else if (strstr(tmpl, "<|start_header_id|>"))
        f = ENG_CHAT_LLAMA3;
    else if (strstr(tmpl, "<start_of_turn>"))
        f = ENG_CHAT_GEMMA;
    else if (strstr(tmpl, "<|assistant|>") && strstr(tmpl, "<|end|>"))
        f = ENG_CHAT_PHI3;
    else if (strstr(tmpl, "[INST]"))
        f = strstr(tmpl, "<<SYS>>") ? ENG_CHAT_LLAMA2 : ENG_CHAT_MISTRAL;
    else
        k = false;
    if (known) *known = k;
    return f;
}

/* The literal default system message of a ChatML template ('<|im_start|>system\nTEXT<|im_end|>'
 * written as one Jinja string), unescaped into out; false if there is none. */
static bool chatml_default_system(const char *tmpl, char *out, size_t size) {
    static const char marker[] = "<|im_start|>system\\n";
    for (const char *p = tmpl; (p = strstr(p, marker)); p++) {
        const char *s = p + strlen(marker), *e = strstr(s, "<|im_end|>");
        if (!e || e == s) continue;
        bool literal = true;
        for (const char *q = s; q < e; q++) literal &= *q != '\'' && *q != '"' && *q != '{';
        if (!literal) continue;
        size_t o = 0;
        for (const char *q = s; q < e && o + 1 < size; q++) {
            if (q[0] == '\\' && q + 1 < e) {
                q++;
                out[o++] = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q;
            } else {
                out[o++] = *q;
            }
        }
        out[o] = 0;
        return true;
    }
    return false;
}

void eng_chat_template_parse(struct eng_chat_template *ct, const char *tmpl) {
    memset(ct, 0, sizeof(*ct));
    ct->family = eng_chat_detect(tmpl, &ct->known);
    if (!tmpl) return;
    if (ct->family == ENG_CHAT_CHATML &&
        chatml_default_system(tmpl, ct->storage, sizeof(ct->storage)))
        ct->default_system = ct->storage;
    if (ct->family == ENG_CHAT_LLAMA3 && strstr(tmpl, "Cutting Knowledge Date")) ct->llama31 = true;
}

/* ---- a growable string ---- */

struct sb {
    char *s;
    size_t n, cap;
    bool oom;
};

static void sb_addn(struct sb *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void sb_add(struct sb *b, const char *s) {
    if (s) sb_addn(b, s, strlen(s));
}

/* Appends s without leading/trailing whitespace (Jinja's trim / Python's strip). */
static void sb_add_trim(struct sb *b, const char *s) {
    if (!s) return;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    sb_addn(b, s, n);
}

static bool is(const char *role, const char *name) {
    return role && !strcmp(role, name);
}

/* Checks the user/assistant alternation (after an optional leading system message). */
static int check_alternation(const struct eng_chat_msg *m, int n, int from, const char *fam) {
    for (int i = from; i < n; i++) {
        bool want_user = (i - from) % 2 == 0;
        if (is(m[i].role, "user") != want_user || (!want_user && !is(m[i].role, "assistant")))
            return eng_fail(ENG_EINVAL,
                            "chat template %s: roles must alternate user/assistant after an "
                            "optional system message (message %d is '%s')",
                            fam, i, m[i].role ? m[i].role : "(null)");
    }
    return 0;
}

char *eng_chat_template_apply(const struct eng_chat_template *ct, const struct eng_chat_msg *msgs,
                              int n, bool add_generation_prompt, const char *bos, const char *eos) {
    struct sb b = {0};
    const char *fam = eng_chat_family_name(ct->family);
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content) {
            eng_fail(ENG_EINVAL, "chat: message %d has no role or content", i);
            return NULL;
        }
    bool has_sys = n > 0 && is(msgs[0].role, "system");
    sb_add(&b, ""); /* an empty conversation still gives "" */
    switch (ct->family) {
    case ENG_CHAT_CHATML:
        if (ct->default_system && !has_sys) {
            sb_add(&b, "<|im_start|>system\n");
            sb_add(&b, ct->default_system);
            sb_add(&b, "<|im_end|>\n");
        }
        for (int i = 0; i < n; i++) {
            sb_add(&b, "<|im_start|>");
            sb_add(&b, msgs[i].role);
            sb_add(&b, "\n");
            sb_add(&b, msgs[i].content);
            sb_add(&b, "<|im_end|>\n");
        }
        if (add_generation_prompt) sb_add(&b, "<|im_start|>assistant\n");
        break;
    case ENG_CHAT_LLAMA3:
        sb_add(&b, bos);
        if (ct->llama31) { /* 3.1+: the system turn always comes first, with the dates */
            sb_add(&b, "<|start_header_id|>system<|end_header_id|>\n\n"
                       "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n");
            if (has_sys) sb_add_trim(&b, msgs[0].content);
            sb_add(&b, "<|eot_id|>");
        }
        for (int i = ct->llama31 && has_sys ? 1 : 0; i < n; i++) {
            sb_add(&b, "<|start_header_id|>");
            sb_add(&b, msgs[i].role);
            sb_add(&b, "<|end_header_id|>\n\n");
            sb_add_trim(&b, msgs[i].content);
            sb_add(&b, "<|eot_id|>");
        }
        if (add_generation_prompt) sb_add(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case ENG_CHAT_LLAMA2:
        if (check_alternation(msgs, n, has_sys, fam)) goto err;
        for (int i = has_sys; i < n; i++) {
            if (is(msgs[i].role, "user")) {
                sb_add(&b, bos);
                sb_add(&b, "[INST] ");
                if (i == 1 && has_sys) {
                    /* the template strips the combined "<<SYS>>...U" */
                    struct sb c = {0};
                    sb_add(&c, "<<SYS>>\n");
                    sb_add(&c, msgs[0].content);
                    sb_add(&c, "\n<</SYS>>\n\n");
                    sb_add(&c, msgs[i].content);
                    if (c.oom) {
                        free(c.s);
                        goto oom;
                    }
                    sb_add_trim(&b, c.s);
                    free(c.s);
                } else {
                    sb_add_trim(&b, msgs[i].content);
                }
                sb_add(&b, " [/INST]");
            } else {
                sb_add(&b, " ");
                sb_add_trim(&b, msgs[i].content);
                sb_add(&b, " ");
                sb_add(&b, eos);
            }
        }
        break;
    case ENG_CHAT_MISTRAL:
    case ENG_CHAT_GEMMA:
        if (check_alternation(msgs, n, has_sys, fam)) goto err;
        sb_add(&b, bos);
        for (int i = has_sys; i < n; i++) {
            bool user = is(msgs[i].role, "user");
            bool first_user = user && i == (int)has_sys;
            if (ct->family == ENG_CHAT_MISTRAL) {
                if (user) {
                    sb_add(&b, "[INST] ");
                    if (first_user && has_sys) {
                        sb_add(&b, msgs[0].content);
                        sb_add(&b, "\n\n");
                    }
                    sb_add(&b, msgs[i].content);
                    sb_add(&b, " [/INST]");
                } else {
                    sb_add(&b, msgs[i].content);
                    sb_add(&b, eos);
                }
            } else {
                sb_add(&b, user ? "<start_of_turn>user\n" : "<start_of_turn>model\n");
                if (first_user && has_sys) {
                    sb_add_trim(&b, msgs[0].content);
                    sb_add(&b, "\n\n");
                }
                sb_add_trim(&b, msgs[i].content);
                sb_add(&b, "<end_of_turn>\n");
            }
        }
        if (ct->family == ENG_CHAT_GEMMA && add_generation_prompt)
            sb_add(&b, "<start_of_turn>model\n");
        break;
    case ENG_CHAT_PHI3:
        for (int i = 0; i < n; i++) {
            if (!is(msgs[i].role, "system") && !is(msgs[i].role, "user") &&
                !is(msgs[i].role, "assistant")) {
                eng_fail(ENG_EINVAL, "chat template phi3: role '%s' is not supported",
                         msgs[i].role);
                goto err;
            }
            sb_add(&b, "<|");
            sb_add(&b, msgs[i].role);
            sb_add(&b, "|>\n");
            sb_add(&b, msgs[i].content);
            sb_add(&b, "<|end|>\n");
        }
        if (add_generation_prompt) sb_add(&b, "<|assistant|>\n");
        break;
    default:
        eng_fail(ENG_EINVAL, "chat: unknown template family %d", (int)ct->family);
        goto err;
    }
    if (b.oom) goto oom;
    return b.s;
oom:
    eng_fail(ENG_ENOMEM, "chat: out of memory");
err:
    free(b.s);
    return NULL;
}

char *eng_chat_render(enum eng_chat_family f, const struct eng_chat_msg *msgs, int n,
                      bool add_generation_prompt, const char *bos, const char *eos) {
    struct eng_chat_template ct = {.family = f, .known = true};
    return eng_chat_template_apply(&ct, msgs, n, add_generation_prompt, bos, eos);
}
