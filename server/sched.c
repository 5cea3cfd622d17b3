/*
 * sched.c — the engine thread: loads the model, then runs continuous batching over the
 * context's sequence slots. Each step puts one decode token of every running sequence and a
 * bounded chunk of pending prompt tokens into one eng_forward call (one pass over the weights),
 * then samples, detokenizes, matches stop strings and hands text to the loop thread.
 *
 * Order of a step: admit queued jobs into free slots → drop cancelled / expired jobs → build the
 * batch (decode tokens first, then prefill chunks in arrival order) → forward → sample per output.
 * A job with several choices prefills its prompt once and copies the KV cache to its siblings.
 *
 * It does not touch HTTP: results go into the job's output under the scheduler mutex, the job is
 * put on the dirty list and the loop is woken with srv_wake_send (which coalesces). Running
 * streams' tokens wake the loop at most once per stream_interval: at hundreds of tokens per
 * second a wake-up, an HTTP write and the client's read per token take the cores the engine
 * decodes on. A job's first token, its end and errors wake it at once.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

enum seq_phase {
    SEQ_PREFILL = 0, /* feeding prompt tokens */
    SEQ_WAIT = 1,    /* sibling waiting for its group's prefill */
    SEQ_DECODE = 2,  /* generating */
};

/* Engine thread only. One per slot; job == NULL means the slot is free. */
struct seq {
    struct srv_job *job;
    int choice, group;
    enum seq_phase phase;
    int n_past;              /* positions of the slot filled */
    int32_t next;            /* token to feed at position n_past (decode) */
    int out_idx;             /* output index in the current step, -1 if none */
    int chunk;               /* prompt tokens fed in the current step */
    uint64_t order;          /* admission order: earlier jobs prefill first */
    struct eng_sampler *smp; /* the slot's sampler (srv_sched.smps) while job is set */
    struct eng_detok detok;
    struct eng_stop *stop;
    int n_gen;
    double t_last; /* time of the previous token (inter-token latency) */
};

struct srv_sched {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct srv_wake *wake;
    char *model_path;
    struct srv_sched_params p;

    _Atomic int state;
    char error[512]; /* written before state becomes FAILED */

    /* Written by the engine thread before state becomes READY, then read-only. */
    struct eng_model *model;
    struct eng_tokenizer *tok;
    struct eng_ctx *ctx;
    int n_ctx, n_slots;

    /* Guarded by mu. */
    struct srv_job *q_head, *q_tail;
    int q_len;
    int n_active;
    bool stop;
    struct srv_job *dirty;

    /* Engine thread only. */
    struct seq *seqs;                /* (n_slots) */
    struct eng_sampler **smps;       /* (n_slots) each slot's sampler, kept across jobs */
    int32_t *b_tok, *b_pos, *b_slot; /* (batch) */
    int8_t *b_out;                   /* (batch) */
    char *piece;                     /* (piece_cap) text of one token */
    int piece_cap;
    uint64_t order;
    bool undelivered; /* jobs were marked dirty since the last wake-up */
    bool wake_now;    /* ... and one of them must not wait for stream_interval */
    double t_wake;    /* time of the last wake-up for new output */

    _Atomic double stream_interval; /* seconds */
    struct eng_deferred wake_later; /* deliver's wake-up made by an engine worker */
};

/* ---- jobs ---- */

struct srv_job *srv_job_new(int n_groups, int n_per_group) {
    struct srv_job *j = calloc(1, sizeof(*j));
    if (!j) return NULL;
    atomic_init(&j->refs, 1);
    atomic_init(&j->cancel, false);
    j->n_groups = n_groups;
    j->n_per_group = n_per_group;
    j->n_choices = n_groups * n_per_group;
    j->prompt = calloc((size_t)n_groups, sizeof(*j->prompt));
    j->n_prompt = calloc((size_t)n_groups, sizeof(*j->n_prompt));
    j->out = calloc((size_t)j->n_choices, sizeof(*j->out));
    if (!j->prompt || !j->n_prompt || !j->out) {
        srv_job_unref(j);
        return NULL;
    }
    return j;
}

void srv_job_ref(struct srv_job *j) {
    atomic_fetch_add(&j->refs, 1);
}

void srv_job_unref(struct srv_job *j) {
    if (!j || atomic_fetch_sub(&j->refs, 1) != 1) return;
    for (int g = 0; j->prompt && g < j->n_groups; g++) free(j->prompt[g]);
    free(j->prompt);
    free(j->n_prompt);
    for (int c = 0; j->out && c < j->n_choices; c++) {
        srv_buf_free(&j->out[c].text);
        free(j->out[c].lp);
    }
    free(j->out);
    free(j->bias);
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    free(j);
}

/* ---- helpers (mu held where noted) ---- */

static void wake_loop(struct srv_sched *s) {
    srv_wake_send(s->wake);
}

static void wake_from_worker(void *wake) {
    srv_wake_from_worker(wake);
}

/* mu held; engine thread. A non-stream job is handed over once done: the loop would only resume
 * its connection to find nothing to send. */
static void mark_dirty(struct srv_sched *s, struct srv_job *j) {
    if (!j->stream && !j->done) return;
    s->undelivered = true;
    if (j->done) s->wake_now = true;
    if (j->dirty) return;
    j->dirty = true;
    srv_job_ref(j);
    j->next_dirty = s->dirty;
    s->dirty = j;
}

static int live_seqs(struct srv_sched *s, const struct srv_job *j) {
    int n = 0;
    for (int i = 0; i < s->n_slots; i++) n += s->seqs[i].job == j;
    return n;
}

/* Frees a slot. The job reference held by the engine is dropped with the job's last slot. */
static void seq_release(struct srv_sched *s, struct seq *q) {
    struct srv_job *j = q->job;
    eng_stop_free(q->stop); /* the sampler stays with the slot (srv_sched.smps) */
    memset(q, 0, sizeof(*q));
    pthread_mutex_lock(&s->mu);
    s->n_active--;
    srv_metrics_set_active(s->n_active, s->n_slots);
    pthread_mutex_unlock(&s->mu);
    if (j && live_seqs(s, j) == 0) srv_job_unref(j);
}

/* Ends every sequence of j with an error (status, message) unless it already finished. */
static void fail_job(struct srv_sched *s, struct srv_job *j, int status, const char *msg) {
    srv_job_ref(j); /* keep j alive across the releases below */
    pthread_mutex_lock(&s->mu);
    if (!j->done) {
        j->done = true;
        j->err_status = status;
        snprintf(j->err_msg, sizeof(j->err_msg), "%s", msg);
        mark_dirty(s, j);
    }
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n_slots; i++)
        if (s->seqs[i].job == j) seq_release(s, &s->seqs[i]);
    srv_job_unref(j);
}

/* mu held. Appends emitted text to a choice. */
static void push_text(struct srv_sched *s, struct srv_job *j, int c, const char *t, size_t n) {
    if (n == 0) return;
    if (srv_buf_append(&j->out[c].text, t, n)) {
        /* Out of memory: the loop sees a failed job rather than silently missing text. */
        j->err_status = 500;
        snprintf(j->err_msg, sizeof(j->err_msg), "out of memory while generating");
        j->done = true;
    }
    mark_dirty(s, j);
}

/* ---- admission ---- */

static int free_slots(struct srv_sched *s) {
    int n = 0;
    for (int i = 0; i < s->n_slots; i++) n += s->seqs[i].job == NULL;
    return n;
}

/* Sets up the sequences of job j in free slots. Engine thread; mu not held. */
static int admit(struct srv_sched *s, struct srv_job *j) {
    uint64_t order = s->order++;
    int placed = 0;
    for (int i = 0; i < s->n_slots && placed < j->n_choices; i++) {
        struct seq *q = &s->seqs[i];
        if (q->job) continue;
        int c = placed++;
        memset(q, 0, sizeof(*q));
        q->job = j;
        q->choice = c;
        q->group = c / j->n_per_group;
        q->phase = c % j->n_per_group == 0 ? SEQ_PREFILL : SEQ_WAIT;
        q->order = order;
        q->out_idx = -1;
        struct eng_sampler_params sp = j->sp;
        /* Each choice has its own stream of random numbers; the slot does not matter. */
        sp.seed = j->sp.seed + (uint64_t)c;
        /* The slot's sampler from an earlier job takes the new parameters: new buffers of the
         * vocabulary's size page-faulted in while the other slots' streams waited (sampler.c). */
        struct eng_sampler **smp = &s->smps[i];
        if (*smp ? eng_sampler_set_params(*smp, &sp) == 0
                 : (*smp = eng_sampler_new(&sp, eng_model_hparams(s->model)->n_vocab)) != NULL)
            q->smp = *smp;
        if (j->n_stop) q->stop = eng_stop_new((const char *const *)j->stop, j->n_stop);
        eng_detok_init(&q->detok, s->tok, 0);
        q->detok.at_start = !j->continues;
        pthread_mutex_lock(&s->mu);
        s->n_active++;
        srv_metrics_set_active(s->n_active, s->n_slots);
        pthread_mutex_unlock(&s->mu);
        if (!q->smp || (j->n_stop && !q->stop)) {
            char msg[256];
            snprintf(msg, sizeof(msg), "cannot start generation: %s", eng_last_error());
            fail_job(s, j, 400, msg);
            return -1;
        }
        for (int t = 0; t < j->n_prompt[q->group]; t++)
            eng_sampler_accept(q->smp, j->prompt[q->group][t]);
    }
    return 0;
}

/* Moves queued jobs into slots in arrival order while the head fits; drops cancelled and expired
 * ones. Engine thread. */
static void admit_queued(struct srv_sched *s, double now) {
    for (;;) {
        pthread_mutex_lock(&s->mu);
        /* Drop dead jobs anywhere in the queue. */
        struct srv_job **pp = &s->q_head, *dead = NULL;
        s->q_tail = NULL;
        while (*pp) {
            struct srv_job *j = *pp;
            if (atomic_load(&j->cancel) || now > j->deadline) {
                *pp = j->next_queued;
                s->q_len--;
                j->next_queued = dead;
                dead = j;
            } else {
                s->q_tail = j;
                pp = &j->next_queued;
            }
        }
        struct srv_job *j = s->q_head;
        bool fits = j && j->n_choices <= free_slots(s);
        if (fits) {
            s->q_head = j->next_queued;
            if (!s->q_head) s->q_tail = NULL;
            s->q_len--;
            j->next_queued = NULL;
        }
        srv_metrics_set_queue(s->q_len);
        pthread_mutex_unlock(&s->mu);
        while (dead) {
            struct srv_job *d = dead;
            dead = d->next_queued;
            bool cancelled = atomic_load(&d->cancel);
            if (cancelled) srv_metrics_cancelled();
            pthread_mutex_lock(&s->mu);
            d->done = true;
            d->err_status = cancelled ? 499 : 504;
            snprintf(d->err_msg, sizeof(d->err_msg), "%s",
                     cancelled ? "request cancelled"
                               : "the request waited in the queue longer than request_timeout");
            mark_dirty(s, d);
            pthread_mutex_unlock(&s->mu);
            srv_job_unref(d); /* the queue's reference */
            wake_loop(s);
        }
        if (!fits) return;
        admit(s, j);
    }
}

/* Ends jobs whose client went away or whose deadline passed, before the next step. */
static void drop_dead(struct srv_sched *s, double now) {
    for (int i = 0; i < s->n_slots; i++) {
        struct srv_job *j = s->seqs[i].job;
        if (!j) continue;
        if (atomic_load(&j->cancel)) {
            srv_metrics_cancelled();
            fail_job(s, j, 499, "request cancelled");
            wake_loop(s);
        } else if (now > j->deadline) {
            srv_metrics_cancelled();
            fail_job(s, j, 504, "the request took longer than request_timeout and was stopped");
            wake_loop(s);
        }
    }
}

/* ---- sampling ---- */

/* Finishes choice q with reason; flushes held-back text unless a stop string matched. */
static void finish_seq(struct srv_sched *s, struct seq *q, const char *reason, bool flush) {
    struct srv_job *j = q->job;
    char tail[64];
    int n = flush ? eng_detok_flush(&q->detok, tail, sizeof(tail)) : 0;
    const char *emit = NULL, *emit2 = NULL;
    size_t n_emit = 0, n_emit2 = 0;
    bool matched = false;
    if (q->stop && flush) {
        if (n > 0) matched = eng_stop_push(q->stop, tail, (size_t)n, &emit, &n_emit);
        if (matched)
            reason = "stop";
        else
            eng_stop_flush(q->stop, &emit2, &n_emit2);
    } else if (n > 0) {
        emit = tail;
        n_emit = (size_t)n;
    }
    pthread_mutex_lock(&s->mu);
    push_text(s, j, q->choice, emit, n_emit);
    push_text(s, j, q->choice, emit2, n_emit2);
    j->out[q->choice].finish = reason;
    bool all = true;
    for (int c = 0; c < j->n_choices; c++) all &= j->out[c].finish != NULL;
    if (all) j->done = true;
    mark_dirty(s, j);
    pthread_mutex_unlock(&s->mu);
    seq_release(s, q);
}

/* Samples the next token of q from logits (and their chunk maxima, or NULL) and hands its text
 * over. */
static void sample(struct srv_sched *s, struct seq *q, const float *logits, const float *cmax,
                   double now) {
    struct srv_job *j = q->job;
    struct eng_sample smp;
    if (eng_sampler_sample_chunked(q->smp, logits, cmax, &smp) != 0) {
        char msg[256];
        snprintf(msg, sizeof(msg), "sampling failed: %s", eng_last_error());
        fail_job(s, j, 500, msg);
        return;
    }
    if (q->n_gen == 0 && q->choice == 0) srv_metrics_ttft(now - j->t_submit);
    if (q->n_gen > 0) srv_metrics_itl(now - q->t_last);
    q->t_last = now;
    if (eng_token_is_eog(s->tok, smp.token)) {
        finish_seq(s, q, "stop", true);
        return;
    }
    q->n_gen++;
    if (q->n_gen == 1 && j->stream) s->wake_now = true; /* time to first token is not held back */
    srv_metrics_tokens(0, 1);
    char *piece = s->piece;
    int n = eng_detok_push(&q->detok, smp.token, piece, s->piece_cap);
    if (n < 0) n = 0;
    const char *emit = piece;
    size_t n_emit = (size_t)n;
    bool matched = q->stop ? eng_stop_push(q->stop, piece, (size_t)n, &emit, &n_emit) : false;
    pthread_mutex_lock(&s->mu);
    struct srv_choice_out *o = &j->out[q->choice];
    o->n_tokens = q->n_gen;
    if (j->want_lp) {
        if (o->n_lp == o->cap_lp) {
            int cap = o->cap_lp ? o->cap_lp * 2 : 16;
            struct srv_tok_lp *lp = realloc(o->lp, (size_t)cap * sizeof(*lp));
            if (lp) {
                o->lp = lp;
                o->cap_lp = cap;
            }
        }
        if (o->n_lp < o->cap_lp) {
            struct srv_tok_lp *e = &o->lp[o->n_lp++];
            e->token = smp.token;
            e->logprob = smp.logprob;
            e->n_top = smp.n_top;
            memcpy(e->top, smp.top, sizeof(e->top));
        }
    }
    push_text(s, j, q->choice, emit, n_emit);
    pthread_mutex_unlock(&s->mu);
    if (matched)
        finish_seq(s, q, "stop", false);
    else if (q->n_gen >= j->max_tokens || q->n_past >= s->n_ctx)
        finish_seq(s, q, "length", true);
    else
        q->next = smp.token;
}

/* ---- the step ---- */

/* Builds and runs one batch; returns the number of tokens processed (0: nothing to do). */
static int step(struct srv_sched *s) {
    const int cap = s->p.batch;
    int nb = 0;
    for (int i = 0; i < s->n_slots; i++) {
        struct seq *q = &s->seqs[i];
        q->out_idx = -1;
        q->chunk = 0;
        if (!q->job || q->phase != SEQ_DECODE) continue;
        s->b_tok[nb] = q->next;
        s->b_pos[nb] = q->n_past;
        s->b_slot[nb] = i;
        s->b_out[nb] = 1;
        q->out_idx = nb++;
    }
    /* Prompt chunks, oldest job first, within the prefill budget of this step. */
    int budget = s->p.prefill_chunk < cap - nb ? s->p.prefill_chunk : cap - nb;
    while (budget > 0) {
        struct seq *best = NULL;
        int best_i = -1;
        for (int i = 0; i < s->n_slots; i++) {
            struct seq *q = &s->seqs[i];
            if (q->job && q->phase == SEQ_PREFILL && q->chunk == 0 &&
                (!best || q->order < best->order)) {
                best = q;
                best_i = i;
            }
        }
        if (!best) break;
        const int32_t *prompt = best->job->prompt[best->group];
        int n_prompt = best->job->n_prompt[best->group];
        int take = n_prompt - best->n_past;
        if (take > budget) take = budget;
        for (int t = 0; t < take; t++) {
            int pos = best->n_past + t;
            s->b_tok[nb] = prompt[pos];
            s->b_pos[nb] = pos;
            s->b_slot[nb] = best_i;
            s->b_out[nb] = pos == n_prompt - 1;
            if (s->b_out[nb]) best->out_idx = nb;
            nb++;
        }
        best->chunk = take;
        budget -= take;
    }
    if (nb == 0) return 0;
    struct eng_batch b = {
        .n_tokens = nb, .token = s->b_tok, .pos = s->b_pos, .slot = s->b_slot, .output = s->b_out};
    int n_seqs = 0;
    for (int i = 0; i < s->n_slots; i++) {
        const struct seq *q = &s->seqs[i];
        n_seqs += q->out_idx >= 0 || q->chunk > 0;
        /* an output sampled greedily: the pass takes the logits' chunk maxima */
        if (q->out_idx >= 0 && q->smp && eng_sampler_uses_chunk_max(q->smp)) b.logits_max = true;
    }
    srv_metrics_step(n_seqs);
    int rc = eng_forward(s->ctx, &b);
    double now = srv_now();
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof(msg), "engine error: %s", eng_last_error());
        srv_log(SRV_LOG_ERROR, "%s", msg);
        for (int i = 0; i < s->n_slots; i++)
            if (s->seqs[i].job && (s->seqs[i].out_idx >= 0 || s->seqs[i].chunk > 0))
                fail_job(s, s->seqs[i].job, 500, msg);
        wake_loop(s);
        return nb;
    }
    /* Map batch index → output index (outputs are numbered in batch order). */
    for (int i = 0; i < s->n_slots; i++) {
        struct seq *q = &s->seqs[i];
        if (!q->job) continue;
        if (q->chunk > 0) q->n_past += q->chunk;
        if (q->out_idx < 0) continue;
        int k = 0;
        for (int t = 0; t < q->out_idx; t++) k += s->b_out[t] != 0;
        q->out_idx = k;
    }
    for (int i = 0; i < s->n_slots; i++) {
        struct seq *q = &s->seqs[i];
        if (!q->job || q->out_idx < 0) continue;
        struct srv_job *j = q->job;
        const float *logits = eng_logits(s->ctx, q->out_idx);
        const float *cmax = eng_logits_chunk_max(s->ctx, q->out_idx);
        if (q->phase == SEQ_DECODE) {
            q->n_past++;
            sample(s, q, logits, cmax, now);
            continue;
        }
        /* Prefill of this group finished: the first choice samples, then its siblings take a
         * copy of the KV cache (slot i keeps its cache even if its choice ends right away; no
         * slot is reused within a step) and sample from the same logits. */
        q->phase = SEQ_DECODE;
        int g = q->group, n_prompt = j->n_prompt[g];
        srv_metrics_tokens(n_prompt, 0);
        srv_job_ref(j);
        sample(s, q, logits, cmax, now);
        for (int k = 0; k < s->n_slots; k++) {
            struct seq *sib = &s->seqs[k];
            if (sib->job != j || sib->group != g || sib->phase != SEQ_WAIT) continue;
            if (eng_slot_copy(s->ctx, k, i, n_prompt)) {
                fail_job(s, j, 500, "engine error: KV cache copy failed");
                break;
            }
            sib->n_past = n_prompt;
            sib->phase = SEQ_DECODE;
            sample(s, sib, logits, cmax, now);
        }
        srv_job_unref(j);
    }
    return nb;
}

/* Wakes the loop for the output marked since the last wake-up: at once for a first token, a
 * finished or failed job, or when no sequence is left running; otherwise once stream_interval
 * has passed since the last one (the text waits in the jobs' buffers until then). Engine
 * thread: n_active, guarded by mu for the loop's readers, is written only here, so reading it
 * unlocked is safe.
 *
 * The interval's wake-ups, while sequences run on, are made by an engine worker as it leaves
 * its part of a job of the next pass (eng_ctx_defer), not here: the loop thread runs on a
 * worker's CPU (daemon.c place_loop), and woken from here it preempted that worker, often
 * while the worker held rows of a product that the pass then waited for, and then the client
 * it sent to did the same; woken by the worker between two jobs, it preempts no rows, and the
 * engine thread takes the jobs alone meanwhile. The engine thread's eventfd write, a wake-up
 * across CPUs of 45-55 us on this host, leaves the passes' path as well. L110M Q4_0, 2
 * threads, streams of 128 tokens, the daemons in turns with a long-lived engine process's
 * tg128 (30 rounds of three streams each): one stream 0.964 -> 0.984 of the engine (faster in
 * 19 of 30 rounds), and 0.965 -> 0.975 (18 of 30) with the daemons' order swapped; four
 * streams +1.6% (16 of 20). In a run with a third daemon that sends nothing between a
 * stream's first token and its end (--stream-interval 1, the bound of what fewer wake-ups can
 * give): 0.962 from the engine thread, 0.981 from the workers, 0.984 with none. L1B even (5 of
 * 10): a pass of 12 ms makes a wake-up per token, and each costs little against it. What the
 * interval's wake-ups cost moves with the host's phase: against --stream-interval 1, one
 * stream's share of the engine 96.5/99.3%, 97.8/100.3% (12 rounds each), 98.0/101.3% (30), and
 * nothing in a direct alternation of the two daemons (0.994, 60 rounds); 0.025 and 0.05 s
 * 98.8% and 99.7% in the 30-round run. The default stays at 0.01 s.
 *
 * A first token's wake-up made here while the next pass runs reached the loop thread 1-4 ms
 * late in about one request of eight (the worker kept the loop's CPU; traced, 90th percentile
 * 2.1-2.8 ms against a median of 0.12 ms): one stream's time to first token was 1.4-1.6 ms at
 * the median and 3.3-5 ms at the 90th percentile. Where the loop shares one worker's CPU
 * (srv_wake_hands_off), every wake-up due while sequences run, a first token's and a job's end
 * too, goes to the workers, and the worker that makes it sleeps until the loop has handled it
 * (wake.c srv_wake_from_worker): the loop runs at once. L110M Q4_0, 2 threads, two daemons,
 * each switching the handoff on and off between measurements (a throwaway signal handler), the
 * order swapped every round; a measurement is three streams of 128 tokens from one client, the
 * first a warm-up. One stream, 30 rounds per daemon: time to first token at the 90th
 * percentile 4.60 and 3.97 ms -> 1.65 and 1.65 ms, mean 2.39 and 2.15 -> 1.53 and 1.47 ms;
 * tok/s on/off 0.999 (on faster in 14 of 30) and 1.007 (18 of 30). Four streams, 25 rounds:
 * 1.003 (14 of 25) and 1.000 (12 of 25). Daemons compared across builds instead differed by
 * up to 7% from one another whatever the build, in an order that changed between runs. Tried and
 * dropped before that: the wake-up made by a worker which then yields its CPU to the loop
 * (sched_yield) took the 90th percentile to 1.6-1.8 ms, but cost tokens per second in some of this
 * host's phases: +0.6% (24 of 40 rounds) and +1.4% (21 of 30) in one, -5.6% (faster in 1 of 30) in
 * another; the interval's wake-ups yielding too, -2.4% and -2.8%; the first token's wake-up
 * deferred without the yield, or a 0.1 ms scheduler slice for the loop thread (sched_setattr), left
 * the 90th percentile at 3.5-3.7 ms. */
static void deliver(struct srv_sched *s, double now) {
    if (!s->undelivered) return;
    double gap = atomic_load_explicit(&s->stream_interval, memory_order_relaxed);
    bool running = s->n_active > 0;
    if (running && !s->wake_now && now - s->t_wake < gap) return;
    /* a wake-up due at once goes to the workers too when they hand their CPU over */
    bool defer = running && (!s->wake_now || srv_wake_hands_off(s->wake));
    s->undelivered = s->wake_now = false;
    s->t_wake = now;
    /* a wake-up left to the workers that is still pending (no worker joined a job since) is
     * made here, with this one */
    bool stale = eng_ctx_defer_cancel(s->ctx);
    if (defer && !stale && eng_ctx_defer(s->ctx, &s->wake_later)) return;
    wake_loop(s);
}

/* ---- the thread ---- */

static void set_failed(struct srv_sched *s, const char *what) {
    snprintf(s->error, sizeof(s->error), "%s", what);
    atomic_store(&s->state, SRV_SCHED_FAILED);
    wake_loop(s);
}

static int load(struct srv_sched *s) {
    char msg[512];
    struct eng_model_params mp = {
        .use_mlock = s->p.mlock, .populate = true, .interleave = s->p.interleave};
    if (!(s->model = eng_model_load(s->model_path, &mp))) {
        snprintf(msg, sizeof(msg), "cannot load model: %s", eng_last_error());
        set_failed(s, msg);
        return -1;
    }
    if (!(s->tok = eng_tokenizer_load(eng_model_gguf(s->model)))) {
        snprintf(msg, sizeof(msg), "cannot load the tokenizer of %s: %s", s->model_path,
                 eng_last_error());
        set_failed(s, msg);
        return -1;
    }
    struct eng_ctx_params cp;
    eng_ctx_params_default(s->model, &cp);
    cp.n_slots = s->p.slots;
    if (s->p.ctx > 0) cp.n_ctx = s->p.ctx;
    cp.n_batch = s->p.batch;
    cp.n_outputs = s->p.slots;
    if (s->p.threads > 0) cp.n_threads = s->p.threads;
    cp.kv_f16 = s->p.kv_f16;
    cp.pin_threads = s->p.pin_threads;
    if (!(s->ctx = eng_ctx_new(s->model, &cp))) {
        snprintf(msg, sizeof(msg), "cannot create the inference context (%d slots x %d tokens): %s",
                 cp.n_slots, cp.n_ctx, eng_last_error());
        set_failed(s, msg);
        return -1;
    }
    s->n_ctx = eng_ctx_get_params(s->ctx)->n_ctx;
    s->n_slots = cp.n_slots;
    size_t B = (size_t)s->p.batch;
    s->seqs = calloc((size_t)s->n_slots, sizeof(*s->seqs));
    s->smps = calloc((size_t)s->n_slots, sizeof(*s->smps));
    s->b_tok = malloc(B * sizeof(int32_t));
    s->b_pos = malloc(B * sizeof(int32_t));
    s->b_slot = malloc(B * sizeof(int32_t));
    s->b_out = malloc(B);
    s->piece_cap = eng_detok_max(s->tok) > 64 ? eng_detok_max(s->tok) : 64;
    s->piece = malloc((size_t)s->piece_cap);
    if (!s->seqs || !s->smps || !s->b_tok || !s->b_pos || !s->b_slot || !s->b_out || !s->piece) {
        set_failed(s, "out of memory");
        return -1;
    }
    srv_metrics_set_active(0, s->n_slots);
    srv_metrics_set_loaded(true);
    atomic_store(&s->state, SRV_SCHED_READY);
    wake_loop(s);
    return 0;
}

static void *engine_main(void *arg) {
    struct srv_sched *s = arg;
    if (load(s) == 0) {
        for (;;) {
            pthread_mutex_lock(&s->mu);
            while (!s->stop && !s->q_head && s->n_active == 0) pthread_cond_wait(&s->cv, &s->mu);
            bool stop = s->stop;
            pthread_mutex_unlock(&s->mu);
            if (stop) break;
            double now = srv_now();
            admit_queued(s, now);
            drop_dead(s, now);
            step(s);
            deliver(s, srv_now());
        }
        /* Shutdown: everything still running or queued ends with 503. */
        for (int i = 0; i < s->n_slots; i++)
            if (s->seqs[i].job) fail_job(s, s->seqs[i].job, 503, "the server is shutting down");
        pthread_mutex_lock(&s->mu);
        struct srv_job *q = s->q_head;
        s->q_head = s->q_tail = NULL;
        s->q_len = 0;
        while (q) {
            struct srv_job *n = q->next_queued;
            q->done = true;
            q->err_status = 503;
            snprintf(q->err_msg, sizeof(q->err_msg), "the server is shutting down");
            mark_dirty(s, q);
            srv_job_unref(q);
            q = n;
        }
        pthread_mutex_unlock(&s->mu);
        wake_loop(s);
    }
    return NULL;
}

struct srv_sched *srv_sched_start(const struct srv_sched_params *p, struct srv_wake *wake) {
    struct srv_sched *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->p = *p;
    s->wake = wake;
    s->wake_later = (struct eng_deferred){wake_from_worker, wake};
    atomic_init(&s->stream_interval, p->stream_interval);
    atomic_init(&s->state, SRV_SCHED_LOADING);
    if (!(s->model_path = strdup(p->model_path))) goto err_free;
    if (pthread_mutex_init(&s->mu, NULL)) goto err_free;
    if (pthread_cond_init(&s->cv, NULL)) goto err_mutex;
    if (pthread_create(&s->thread, NULL, engine_main, s)) goto err_cond;
    return s;
err_cond:
    pthread_cond_destroy(&s->cv);
err_mutex:
    pthread_mutex_destroy(&s->mu);
err_free:
    free(s->model_path);
    free(s);
    return NULL;
}

void srv_sched_stop(struct srv_sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    /* Jobs left on the dirty list belong to nobody now. */
    struct srv_job **d = NULL;
    int nd = srv_sched_take_dirty(s, &d);
    for (int i = 0; i < nd; i++) srv_job_unref(d[i]);
    free(d);
    eng_ctx_free(s->ctx);
    eng_tokenizer_free(s->tok);
    eng_model_free(s->model);
    free(s->seqs);
    for (int i = 0; s->smps && i < s->n_slots; i++) eng_sampler_free(s->smps[i]);
    free(s->smps);
    free(s->b_tok);
    free(s->b_pos);
    free(s->b_slot);
    free(s->b_out);
    free(s->piece);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->model_path);
    free(s);
}

enum srv_sched_state srv_sched_state(struct srv_sched *s) {
    return atomic_load(&s->state);
}

const char *srv_sched_error(struct srv_sched *s) {
    return s->error;
}

const struct eng_model *srv_sched_model(struct srv_sched *s) {
    return srv_sched_state(s) == SRV_SCHED_READY ? s->model : NULL;
}

const struct eng_tokenizer *srv_sched_tokenizer(struct srv_sched *s) {
    return srv_sched_state(s) == SRV_SCHED_READY ? s->tok : NULL;
}

int srv_sched_n_ctx(struct srv_sched *s) {
    return s->n_ctx;
}

const struct eng_ctx *srv_sched_ctx(struct srv_sched *s) {
    return s->ctx;
}

int srv_sched_n_slots(struct srv_sched *s) {
    return s->n_slots;
}

int srv_sched_submit(struct srv_sched *s, struct srv_job *job, int max_queue, bool defer_wake) {
    if (srv_sched_state(s) != SRV_SCHED_READY) return ENG_EINVAL;
    if (job->n_choices > s->n_slots) return ENG_ERANGE;
    pthread_mutex_lock(&s->mu);
    if (s->stop || s->q_len >= max_queue) {
        pthread_mutex_unlock(&s->mu);
        return ENG_EBUSY;
    }
    srv_job_ref(job);
    job->next_queued = NULL;
    if (s->q_tail)
        s->q_tail->next_queued = job;
    else
        s->q_head = job;
    s->q_tail = job;
    s->q_len++;
    srv_metrics_set_queue(s->q_len);
    /* deferred only while later requests could still join the first step */
    if (!defer_wake || s->q_len >= s->n_slots - s->n_active) pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void srv_sched_wake(struct srv_sched *s) {
    pthread_mutex_lock(&s->mu);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void srv_sched_cancel(struct srv_sched *s, struct srv_job *job) {
    atomic_store(&job->cancel, true);
    srv_sched_wake(s);
}

int srv_sched_take_dirty(struct srv_sched *s, struct srv_job ***out) {
    *out = NULL;
    pthread_mutex_lock(&s->mu);
    int n = 0;
    for (struct srv_job *j = s->dirty; j; j = j->next_dirty) n++;
    struct srv_job **v = n ? malloc((size_t)n * sizeof(*v)) : NULL;
    if (n && !v) {
        /* Try again on the next wake-up; the list stays as it is. */
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    int i = 0;
    for (struct srv_job *j = s->dirty; j; j = j->next_dirty) {
        j->dirty = false;
        v[i++] = j;
    }
    s->dirty = NULL;
    pthread_mutex_unlock(&s->mu);
    *out = v;
    return n;
}

void srv_sched_lock(struct srv_sched *s) {
    pthread_mutex_lock(&s->mu);
}

void srv_sched_unlock(struct srv_sched *s) {
    pthread_mutex_unlock(&s->mu);
}

void srv_sched_set_stream_interval(struct srv_sched *s, double seconds) {
    atomic_store_explicit(&s->stream_interval, seconds, memory_order_relaxed);
}

void srv_sched_counts(struct srv_sched *s, int *queued, int *active) {
    pthread_mutex_lock(&s->mu);
    *queued = s->q_len;
    *active = s->n_active;
    pthread_mutex_unlock(&s->mu);
}
