/* checkpoint.c: see checkpoint.h.
 * layout: header slots and their encoding, the field table for comparisons, checksum, then the API. */
#include "checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/util.h"
#include "params.h"

#define HEADER_BYTES (CHECKPOINT_SLOTS * 8)

/* ---------------------------------------------------------------------------------------------
 * header slots */

enum {
    S_MAGIC, S_VERSION, S_CHECKSUM, S_N_PARAMS, S_STEP,
    S_MAX_SEQ_LEN, S_VOCAB, S_PADDED_VOCAB, S_N_LAYER, S_N_HEAD, S_N_EMBD, S_W_RANK, S_CONV_SIZE, S_ATTN,
    S_DOC_TOKEN, S_ROPE_THETA,
    S_B, S_T, S_GRAD_ACCUM, S_WORLD, S_DATA, S_FLIPFLOP_RNG,
    S_LOADER, /* 10 slots: DataLoaderState */
    S_END = S_LOADER + 10
};
_Static_assert(S_END <= CHECKPOINT_SLOTS, "checkpoint header slots must fit the header");
_Static_assert(sizeof(DataLoaderState) == 10 * 8, "DataLoaderState fills 10 slots");

static uint64_t i64(int64_t v) { return (uint64_t)v; }

static uint64_t f64_bits(double x) {
    uint64_t u;
    memcpy(&u, &x, 8);
    return u;
}

static double bits_f64(uint64_t u) {
    double x;
    memcpy(&x, &u, 8);
    return x;
}

static void encode(const CheckpointHeader *h, uint64_t s[CHECKPOINT_SLOTS]) {
    memset(s, 0, HEADER_BYTES);
    const ModelConfig *c = &h->cfg;
    s[S_MAGIC] = CHECKPOINT_MAGIC;
    s[S_VERSION] = CHECKPOINT_VERSION;
    s[S_N_PARAMS] = h->n_params;
    s[S_STEP] = i64(h->step);
    s[S_MAX_SEQ_LEN] = i64(c->max_seq_len);
    s[S_VOCAB] = i64(c->vocab_size);
    s[S_PADDED_VOCAB] = i64(c->padded_vocab_size);
    s[S_N_LAYER] = i64(c->n_layer);
    s[S_N_HEAD] = i64(c->n_head);
    s[S_N_EMBD] = i64(c->n_embd);
    s[S_W_RANK] = i64(c->w_rank);
    s[S_CONV_SIZE] = i64(c->conv_size);
    s[S_ATTN] = i64(c->attn);
    s[S_DOC_TOKEN] = i64(c->doc_token);
    s[S_ROPE_THETA] = f64_bits(c->rope_theta);
    s[S_B] = i64(h->B);
    s[S_T] = i64(h->T);
    s[S_GRAD_ACCUM] = i64(h->grad_accum);
    s[S_WORLD] = i64(h->world);
    s[S_DATA] = i64(h->data);
    s[S_FLIPFLOP_RNG] = h->flipflop_rng;
    memcpy(&s[S_LOADER], &h->loader, sizeof h->loader);
}

static void decode(const uint64_t s[CHECKPOINT_SLOTS], CheckpointHeader *h) {
    memset(h, 0, sizeof *h);
    ModelConfig *c = &h->cfg;
    h->n_params = s[S_N_PARAMS];
    h->step = (int64_t)s[S_STEP];
    c->max_seq_len = (int)(int64_t)s[S_MAX_SEQ_LEN];
    c->vocab_size = (int)(int64_t)s[S_VOCAB];
    c->padded_vocab_size = (int)(int64_t)s[S_PADDED_VOCAB];
    c->n_layer = (int)(int64_t)s[S_N_LAYER];
    c->n_head = (int)(int64_t)s[S_N_HEAD];
    c->n_embd = (int)(int64_t)s[S_N_EMBD];
    c->w_rank = (int)(int64_t)s[S_W_RANK];
    c->conv_size = (int)(int64_t)s[S_CONV_SIZE];
    c->attn = (AttnType)(int64_t)s[S_ATTN];
    c->doc_token = (int)(int64_t)s[S_DOC_TOKEN];
    c->rope_theta = (float)bits_f64(s[S_ROPE_THETA]);
    h->B = (int)(int64_t)s[S_B];
    h->T = (int)(int64_t)s[S_T];
    h->grad_accum = (int)(int64_t)s[S_GRAD_ACCUM];
    h->world = (int)(int64_t)s[S_WORLD];
    h->data = (CheckpointData)(int64_t)s[S_DATA];
    h->flipflop_rng = s[S_FLIPFLOP_RNG];
    memcpy(&h->loader, &s[S_LOADER], sizeof h->loader);
}

/* ---------------------------------------------------------------------------------------------
 * fields a resuming run must share with the checkpoint, in the order they are compared */

typedef enum { AS_INT, AS_ATTN, AS_REAL, AS_DATA } Shown;
static const struct { const char *name; int slot; Shown shown; } compared[] = {
    {"attention", S_ATTN, AS_ATTN}, {"n_layer", S_N_LAYER, AS_INT}, {"n_head", S_N_HEAD, AS_INT},
    {"n_embd", S_N_EMBD, AS_INT}, {"vocab_size", S_VOCAB, AS_INT}, {"padded_vocab_size", S_PADDED_VOCAB, AS_INT},
    {"max_seq_len", S_MAX_SEQ_LEN, AS_INT}, {"w_rank", S_W_RANK, AS_INT}, {"conv_size", S_CONV_SIZE, AS_INT},
    {"doc_token", S_DOC_TOKEN, AS_INT}, {"rope_theta", S_ROPE_THETA, AS_REAL}, {"data source", S_DATA, AS_DATA},
    {"B (rows per rank)", S_B, AS_INT}, {"T (tokens per row)", S_T, AS_INT}, {"grad_accum", S_GRAD_ACCUM, AS_INT},
};

static void shown_text(Shown shown, uint64_t v, char *buf, size_t len) {
    switch (shown) {
    case AS_INT: snprintf(buf, len, "%lld", (long long)(int64_t)v); return;
    case AS_ATTN: snprintf(buf, len, "%s", attn_type_name((AttnType)(int64_t)v)); return;
    case AS_REAL: snprintf(buf, len, "%g", bits_f64(v)); return;
    case AS_DATA: snprintf(buf, len, "%s", v == CHECKPOINT_DATA_SHARDS ? "shards" : "flip-flop"); return;
    }
}

int checkpoint_compare(const CheckpointHeader *saved, const CheckpointHeader *run, char *why, size_t why_len) {
    uint64_t a[CHECKPOINT_SLOTS], b[CHECKPOINT_SLOTS];
    encode(saved, a);
    encode(run, b);
    why[0] = '\0';
    if (saved->world != run->world) {
        snprintf(why, why_len,
                 "checkpoint was written by a run of world %d (processes), this run has world %d: the data "
                 "position belongs to the global batch of %d ranks; resume with world %d",
                 saved->world, run->world, saved->world, saved->world);
        return -1;
    }
    for (size_t f = 0; f < sizeof compared / sizeof compared[0]; f++) {
        int s = compared[f].slot;
        if (a[s] == b[s]) continue;
        char had[64], have[64];
        shown_text(compared[f].shown, a[s], had, sizeof had);
        shown_text(compared[f].shown, b[s], have, sizeof have);
        snprintf(why, why_len, "checkpoint has %s %s, this run has %s", compared[f].name, had, have);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * checksum: 64-bit FNV-1a */

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * FNV_PRIME;
    return h;
}

/* ---------------------------------------------------------------------------------------------
 * API */

static int fail(char *why, size_t why_len, const char *fmt, const char *path, const char *detail) {
    snprintf(why, why_len, fmt, path, detail);
    return -1;
}

/* Writes the whole file at tmp; 0, or -1 with a reason (the temp file is removed). The checksum
 * slot is filled in last, by rewriting the header once the body has been hashed. */
static int write_file(const char *tmp, Gpt *g, const CheckpointHeader *h, const float *m, const float *v, char *why,
                      size_t why_len) {
    size_t n = gpt_num_params(g);
    if (!m && gpt_state_bytes(g, GPT_ADAM_M) < sizeof(float) * n)
        die("checkpoint_save: the model holds a shard of the AdamW moments; pass the gathered m and v");
    FILE *fp = fopen(tmp, "wb");
    if (!fp) return fail(why, why_len, "cannot create checkpoint '%s': %s", tmp, strerror(errno));
    CheckpointHeader hn = *h;
    hn.n_params = n;
    uint64_t slots[CHECKPOINT_SLOTS];
    encode(&hn, slots);
    uint64_t sum = fnv1a(FNV_OFFSET, slots, HEADER_BYTES);
    int ok = fwrite(slots, 1, HEADER_BYTES, fp) == HEADER_BYTES;
    float *buf = mallocCheck(sizeof(float) * n);
    const float *given[3] = {NULL, m, v}; /* by GPT_PARAMS, GPT_ADAM_M, GPT_ADAM_V */
    for (int which = GPT_PARAMS; which <= GPT_ADAM_V && ok; which++) {
        if (!given[which]) gpt_copy_out(g, which, buf);
        const float *x = given[which] ? given[which] : buf;
        sum = fnv1a(sum, x, sizeof(float) * n);
        ok = fwrite(x, sizeof(float), n, fp) == n;
    }
    free(buf);
    slots[S_CHECKSUM] = sum;
    ok = ok && fseek(fp, 0, SEEK_SET) == 0 && fwrite(slots, 1, HEADER_BYTES, fp) == HEADER_BYTES;
    ok = ok && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    const char *err = ok ? NULL : strerror(errno);
    if (fclose(fp) != 0 && !err) err = strerror(errno);
    if (!err) return 0;
    unlink(tmp);
    return fail(why, why_len, "cannot write checkpoint '%s': %s", tmp, err);
}

int checkpoint_save(const char *path, Gpt *g, const CheckpointHeader *h, const float *m, const float *v, char *why,
                    size_t why_len) {
    why[0] = '\0';
    size_t len = strlen(path) + 5;
    char *tmp = mallocCheck(len);
    snprintf(tmp, len, "%s.tmp", path);
    int rc = write_file(tmp, g, h, m, v, why, why_len);
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = fail(why, why_len, "cannot rename the new checkpoint to '%s': %s", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

/* Opens path and reads its header slots, checking magic, version, config and size; returns the
 * open file positioned after the header, or NULL with a reason. */
static FILE *open_checked(const char *path, uint64_t slots[CHECKPOINT_SLOTS], CheckpointHeader *h, char *why,
                          size_t why_len) {
    why[0] = '\0';
    FILE *fp = fopen(path, "rb");
    struct stat st;
    if (!fp) {
        fail(why, why_len, "cannot open checkpoint '%s': %s", path, strerror(errno));
        return NULL;
    }
    long long size = fstat(fileno(fp), &st) == 0 ? (long long)st.st_size : -1;
    char cfg_why[256];
    if (size < HEADER_BYTES || fread(slots, 1, HEADER_BYTES, fp) != HEADER_BYTES) {
        snprintf(why, why_len, "checkpoint '%s' is truncated: %lld bytes, shorter than its %d-byte header", path,
                 size, HEADER_BYTES);
    } else if (slots[S_MAGIC] != CHECKPOINT_MAGIC) {
        snprintf(why, why_len, "'%s' is not a pathgpt checkpoint (magic %llu, expected %d)", path,
                 (unsigned long long)slots[S_MAGIC], CHECKPOINT_MAGIC);
    } else if (slots[S_VERSION] != CHECKPOINT_VERSION) {
        snprintf(why, why_len, "checkpoint '%s' has format version %llu; this build reads version %d", path,
                 (unsigned long long)slots[S_VERSION], CHECKPOINT_VERSION);
    } else {
        decode(slots, h);
        ParamSpec specs[NUM_PARAM_TENSORS];
        long long expect = 0;
        if (model_config_check(&h->cfg, cfg_why, sizeof cfg_why) != 0)
            snprintf(why, why_len, "checkpoint '%s' is corrupt: its model config is invalid: %s", path, cfg_why);
        else if (param_specs(&h->cfg, specs) != h->n_params)
            snprintf(why, why_len, "checkpoint '%s' is corrupt: it holds %llu parameters, its config needs %zu",
                     path, (unsigned long long)h->n_params, param_specs(&h->cfg, specs));
        else if (size != (expect = HEADER_BYTES + 12LL * (long long)h->n_params))
            snprintf(why, why_len, "checkpoint '%s' is %s: %lld bytes, expected %lld (header + 3 x %llu fp32)",
                     path, size < expect ? "truncated" : "too long", size, expect, (unsigned long long)h->n_params);
    }
    if (!why[0]) return fp;
    fclose(fp);
    return NULL;
}

int checkpoint_read_header(const char *path, CheckpointHeader *h, char *why, size_t why_len) {
    uint64_t slots[CHECKPOINT_SLOTS];
    FILE *fp = open_checked(path, slots, h, why, why_len);
    if (!fp) return -1;
    fclose(fp);
    return 0;
}

int checkpoint_load(const char *path, Gpt *g, const CheckpointHeader *run, CheckpointHeader *saved,
                    char *why, size_t why_len) {
    uint64_t slots[CHECKPOINT_SLOTS];
    FILE *fp = open_checked(path, slots, saved, why, why_len);
    if (!fp) return -1;
    char diff[512];
    size_t n = gpt_num_params(g);
    if (checkpoint_compare(saved, run, diff, sizeof diff) != 0) {
        snprintf(why, why_len, "cannot resume from '%s': %s", path, diff);
        fclose(fp);
        return -1;
    }
    if (saved->n_params != n) { /* the configs agree, so only a mismatched model gets here */
        snprintf(why, why_len, "cannot resume from '%s': it holds %llu parameters, the model has %zu", path,
                 (unsigned long long)saved->n_params, n);
        fclose(fp);
        return -1;
    }
    float *body = mallocCheck(sizeof(float) * 3 * n);
    int ok = fread(body, sizeof(float), 3 * n, fp) == 3 * n;
    fclose(fp);
    uint64_t stored = slots[S_CHECKSUM];
    slots[S_CHECKSUM] = 0;
    uint64_t sum = fnv1a(fnv1a(FNV_OFFSET, slots, HEADER_BYTES), body, sizeof(float) * 3 * n);
    if (!ok) snprintf(why, why_len, "cannot read the body of checkpoint '%s'", path);
    else if (sum != stored) snprintf(why, why_len, "checkpoint '%s' is corrupt: its checksum does not match its contents", path);
    else
        for (int which = GPT_PARAMS; which <= GPT_ADAM_V; which++) gpt_copy_in(g, which, body + (size_t)which * n);
    free(body);
    return why[0] ? -1 : 0;
}
