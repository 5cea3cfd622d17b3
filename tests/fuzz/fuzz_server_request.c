/*
 * fuzz_server_request.c — libFuzzer target for edgellmd's validation of request bodies: the
 * input is validated as a chat-completions body and as a completions body. A refusal must carry
 * an OpenAI error object with a 4xx status; an acceptance must hold values inside the documented
 * ranges. Any crash, leak or sanitizer report is a bug.
 *
 * The server sources are compiled into the target directly (the fuzz build links only the
 * engine and compress libraries).
 */
#include "../../server/request.c"

#include <assert.h>

static void one(enum srv_kind kind, const uint8_t *data, size_t size) {
    struct srv_gen_request r;
    struct srv_error e;
    memset(&e, 0, sizeof(e));
    if (srv_gen_request_parse(kind, (const char *)data, size, 1000, &r, &e) == 0) {
        assert(r.model != NULL);
        assert(r.n >= 1 && r.n <= 128);
        assert(r.max_tokens == -1 || r.max_tokens >= 1);
        assert(r.sp.temperature >= 0 && r.sp.temperature <= 2);
        assert(r.n_stop <= SRV_MAX_STOP);
        for (int i = 0; i < r.n_bias; i++) assert(r.bias[i].token >= 0 && r.bias[i].token < 1000);
        if (kind == SRV_CHAT) {
            assert(r.n_msgs >= 1);
            for (int i = 0; i < r.n_msgs; i++) assert(r.msgs[i].role && r.msgs[i].content);
        } else {
            assert(r.n_prompts >= 1);
            for (int p = 0; p < r.n_prompts; p++)
                for (int i = 0; i < r.prompts[p].n_ids; i++)
                    assert(r.prompts[p].ids[i] >= 0 && r.prompts[p].ids[i] < 1000);
        }
        srv_gen_request_free(&r);
    } else {
        assert(e.status >= 400 && e.status < 600 && e.type && e.message[0]);
        json_t *j = srv_error_json(&e);
        assert(j != NULL);
        json_decref(j);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    one(SRV_CHAT, data, size);
    one(SRV_COMPLETION, data, size);
    return 0;
}
