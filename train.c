/* train.c: the training program (doc/DESIGN.md section 4). Linked with model/gpt_cpu.c it is
 * train_cpu; linked with model/gpt_gpu.c, the GPU trainer. It sees the model only through
 * model/gpt.h, so nothing here knows the backend (gpt_on_gpu decides only whether the step line shows
 * MFU by default).
 *
 * Flow: flags (one option table: parser, --help, settings print) -> the processes join (comm/comm.h)
 * -> ModelConfig and the model -> per step: grad_accum micro-batches of B x T tokens per rank from the
 * flip-flop generator (the default, no files) or llm.c shards -> gpt_forward / gpt_backward with
 * grad_scale = 1 / (valid targets over all micro-batches and ranks), so the gradient is that of the
 * mean loss -> the gradient buffer summed over the ranks, once per step -> global norm -> AdamW with
 * grad_mult = min(1, clip / norm) and lr from model/schedule -> evaluation, sampling, checkpoints
 * (rank 0 only).
 * Evaluation: shards: mean loss over the first --val-batches batches of --val-data. Flip-flop: loss
 * and FFLM error (wrong predictions of the bits after r, doc/DESIGN.md section 7) on three held-out
 * sets drawn from fixed seeds (the same sequences in every run and at every evaluation):
 * in-distribution p(i) = 0.8, sparse 0.98, dense 0.1; the val loss is the in-distribution set's.
 * Output: a settings table, the parameter count per tensor, one line per step, eval and sample
 * lines, to stdout; warnings and errors to stderr; --log appends key=value lines. The step line's MFU
 * (GPU trainer, or --peak-tflops): model_config_flops_per_token x tokens/s per device / peak.
 * Processes (data parallel; README, "Multiple processes and GPUs"): under mpirun, MPI gives rank and
 * world; otherwise --rank / --world (RANK / WORLD_SIZE) and --rendezvous tcp:HOST:PORT or file:PATH.
 * Every rank holds the whole model and reads its own rows of every global batch (world W with B rows
 * per rank trains on the batches of world 1 with W B rows); per step the ranks sum their valid-target
 * counts (before backward: the gradient scale), their losses and their gradient buffers, so every rank
 * takes the same AdamW step and the weights stay identical. The gradient sum (--overlap 1, the default):
 * the last micro-batch's backward hands each layer's finished gradients to comm_allreduce_sum as it goes
 * (gpt_set_grad_ready; the GPU model queues them on a side stream, so they overlap the layers below), and
 * the step waits for them (comm_wait) before the norm; --overlap 0: one all-reduce of the whole buffer
 * after backward. Both add the same numbers, so the weights are the same bits. --zero 1 (ZeRO-1): rank
 * r keeps AdamW's moments only for its shard [r S, (r+1) S) of the flat parameters (S = ceil(n / W)
 * rounded up to 64: shard_size; the model's buffers padded to W S: gpt_shard_optimizer), so they take
 * 1/W of the memory; per step the gradient buffer is reduce-scattered after backward (each rank gets the
 * sum of its shard; no overlap), the norm is the square root of the shards' sums of squares added over
 * the ranks, each rank runs AdamW on its shard and the ranks all-gather the parameter buffer, all in the
 * model's memory (device memory on GPUs). AdamW is elementwise, so the weights equal ZeRO off's bit for
 * bit as long as clipping is inactive; the norm adds in another order and may differ in its last bits,
 * and with it an active clip factor. Before a checkpoint the ranks all-gather the moments in host
 * memory, so rank 0's file holds the whole state, the same file as without ZeRO. Rank 0 alone prints,
 * logs, evaluates, samples and writes checkpoints; on resume it reads the checkpoint and sends header,
 * parameters and moments to the others, and (ZeRO-1) each rank then keeps its shard of the moments.
 * checked by: tests/test_train.c (options, bit-exact resume through train_main, checkpoint files),
 * tests/test_data_parallel.c (train_cpu in 2 processes against one, overlap on and off, ZeRO-1 and its
 * memory, tcp/file, resume), tests/test_train_gpu.c (the GPU trainer: resume, mid-run saves, user
 * errors). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "comm/comm.h"
#include "common/options.h"
#include "common/rng.h"
#include "common/util.h"
#include "data/bpe.h"
#include "data/dataloader.h"
#include "data/flipflop.h"
#include "data/tokenizer_byte.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/gpt.h"
#include "model/params.h"
#include "model/sampler.h"
#include "model/schedule.h"

/* ---------------------------------------------------------------------------------------------
 * settings: every flag, and the one table that parses, documents and prints them */

typedef struct {
    int attn, n_layer, n_head, n_embd, w_rank, conv_size, doc_token;
    double rope_theta;
    const char *train_data, *val_data, *tokenizer;
    int vocab, shuffle, val_batches;
    double ff_p;
    int ff_eval_id, ff_eval_sparse, ff_eval_dense, ff_eval_paper;
    int B, T, grad_accum, steps, warmup, schedule, seed;
    double lr, min_lr, decay_frac, beta1, beta2, eps, weight_decay, clip;
    int eval_every, sample_every, sample_len, sample_prompt, top_k;
    double temperature;
    const char *log_path, *ckpt_dir, *resume, *rendezvous;
    int ckpt_every, rank, world, local_rank, zero, overlap;
    double join_timeout, peak_tflops;
} Settings;

#define MAX_OPTIONS 64
#define BIG 1e9 /* upper bound of counts that have no natural one */

/* "path|path-fox|..." from config.c's names, so the choices cannot drift from AttnType */
static const char *attn_choices(void) {
    static char buf[128];
    buf[0] = '\0';
    for (int a = 0; a < ATTN_COUNT; a++) {
        if (a) strcat(buf, "|");
        strcat(buf, attn_type_name((AttnType)a));
    }
    return buf;
}

static int settings_table(Settings *s, Option out[MAX_OPTIONS]) {
    const Option t[] = {
        /* model */
        OPTION("--attn", OPT_CHOICE, &s->attn, "path", 0, 0, attn_choices(), NULL, "attention type (doc/DESIGN.md section 3)"),
        OPTION("--layers", OPT_INT, &s->n_layer, "1", 1, 1024, NULL, NULL, "transformer blocks"),
        OPTION("--heads", OPT_INT, &s->n_head, "2", 1, 1024, NULL, NULL, "attention heads (head dim = width / heads)"),
        OPTION("--width", OPT_INT, &s->n_embd, "64", 1, 65536, NULL, NULL, "model width C"),
        OPTION("--w-rank", OPT_INT, &s->w_rank, "32", 1, 65536, NULL, NULL, "PaTH: rank of the w projection C -> R -> C"),
        OPTION("--conv-size", OPT_INT, &s->conv_size, "3", 1, 64, NULL, NULL, "PaTH: taps of the causal conv on w"),
        OPTION("--doc-token", OPT_INT, &s->doc_token, "-1", -1, 65535, NULL, NULL,
         "token that starts a document (attention never crosses one); -1: none"),
        OPTION("--rope-theta", OPT_DOUBLE, &s->rope_theta, "10000", 1, 1e12, NULL, NULL, "rope: rotary base"),
        /* data */
        OPTION("--train-data", OPT_STRING, &s->train_data, "", 0, 0, NULL, NULL,
         "glob of llm.c token shards; empty: the built-in flip-flop task"),
        OPTION("--val-data", OPT_STRING, &s->val_data, "", 0, 0, NULL, NULL, "shards: glob of validation shards; empty: no val loss"),
        OPTION("--vocab", OPT_INT, &s->vocab, "0", 0, 65536, NULL, NULL, "shards: vocabulary size; 0: the tokenizer's"),
        OPTION("--tokenizer", OPT_STRING, &s->tokenizer, "", 0, 0, NULL, NULL,
         "shards: 'byte', or llm.c's tokenizer file (gpt2_tokenizer.bin); decodes samples; empty: token ids"),
        OPTION("--shuffle", OPT_INT, &s->shuffle, "1", 0, 1, NULL, NULL, "shards: 1 permutes shards and windows every epoch"),
        OPTION("--val-batches", OPT_INT, &s->val_batches, "20", 1, BIG, NULL, NULL, "shards: batches per evaluation (at most the val set)"),
        OPTION("--ff-p", OPT_DOUBLE, &s->ff_p, "0.8", 0, 1, NULL, NULL, "flip-flop: p(ignore) of the training data"),
        OPTION("--ff-eval-id", OPT_INT, &s->ff_eval_id, "256", 0, BIG, NULL, NULL, "flip-flop: held-out sequences, p(i) = 0.8"),
        OPTION("--ff-eval-sparse", OPT_INT, &s->ff_eval_sparse, "256", 0, BIG, NULL, NULL, "flip-flop: held-out sequences, p(i) = 0.98"),
        OPTION("--ff-eval-dense", OPT_INT, &s->ff_eval_dense, "64", 0, BIG, NULL, NULL, "flip-flop: held-out sequences, p(i) = 0.1"),
        OPTION("--ff-eval-paper", OPT_INT, &s->ff_eval_paper, "0", 0, 1, NULL, NULL,
         "flip-flop: 1 uses the paper's sizes 1000 / 100000 / 3000 instead of --ff-eval-*"),
        /* batch and optimisation */
        OPTION("--batch", OPT_INT, &s->B, "16", 1, BIG, NULL, NULL, "rows per micro-batch and rank"),
        OPTION("--seq-len", OPT_INT, &s->T, "512", 1, BIG, NULL, NULL, "tokens per row (T)"),
        OPTION("--grad-accum", OPT_INT, &s->grad_accum, "1", 1, BIG, NULL, NULL, "micro-batches per optimizer step"),
        OPTION("--steps", OPT_INT, &s->steps, "200", 1, BIG, NULL, NULL, "optimizer steps of the whole run"),
        OPTION("--lr", OPT_DOUBLE, &s->lr, "3e-3", 0, 10, NULL, NULL, "peak learning rate"),
        OPTION("--min-lr", OPT_DOUBLE, &s->min_lr, "0", 0, 10, NULL, NULL, "learning rate at the end of the decay"),
        OPTION("--schedule", OPT_CHOICE, &s->schedule, "linear", 0, 0, SCHEDULE_NAMES, NULL,
         "decay after warmup (model/schedule.h)"),
        OPTION("--warmup", OPT_INT, &s->warmup, "50", 0, BIG, NULL, NULL, "linear warmup steps"),
        OPTION("--decay-frac", OPT_DOUBLE, &s->decay_frac, "0.2", 0, 1, NULL, NULL, "wsd: fraction of the steps spent decaying"),
        OPTION("--beta1", OPT_DOUBLE, &s->beta1, "0.9", 0, 0.999999, NULL, NULL, "AdamW beta1"),
        OPTION("--beta2", OPT_DOUBLE, &s->beta2, "0.999", 0, 0.999999, NULL, NULL, "AdamW beta2"),
        OPTION("--eps", OPT_DOUBLE, &s->eps, "1e-8", 1e-30, 1, NULL, NULL, "AdamW epsilon"),
        OPTION("--weight-decay", OPT_DOUBLE, &s->weight_decay, "0.1", 0, 10, NULL, NULL,
         "AdamW decoupled weight decay, on the tensors params.h marks decay"),
        OPTION("--clip", OPT_DOUBLE, &s->clip, "1", 0, 1e30, NULL, NULL, "clip the global gradient norm to this; 0: no clipping"),
        OPTION("--seed", OPT_INT, &s->seed, "1337", 0, 2147483647, NULL, NULL, "initialisation, data order and sampling"),
        /* evaluation and sampling */
        OPTION("--eval-every", OPT_INT, &s->eval_every, "50", 0, BIG, NULL, NULL, "evaluate every N steps and at the end; 0: only at the end"),
        OPTION("--sample-every", OPT_INT, &s->sample_every, "100", 0, BIG, NULL, NULL, "sample every N steps and at the end; 0: never"),
        OPTION("--sample-len", OPT_INT, &s->sample_len, "0", 0, BIG, NULL, NULL,
               "tokens generated (shards) or flip-flop sequence length of a sample; 0: 64, or less to fit --seq-len"),
        OPTION("--sample-prompt", OPT_INT, &s->sample_prompt, "16", 1, BIG, NULL, NULL,
         "shards: prompt tokens, from the start of the val (else train) data"),
        OPTION("--temperature", OPT_DOUBLE, &s->temperature, "1", 0, 100, NULL, NULL, "sampling temperature; 0: greedy"),
        OPTION("--top-k", OPT_INT, &s->top_k, "0", 0, 65536, NULL, NULL, "sample among the k most likely tokens; 0: all"),
        /* output and processes */
        OPTION("--log", OPT_STRING, &s->log_path, "", 0, 0, NULL, NULL, "append key=value lines to this file"),
        OPTION("--peak-tflops", OPT_DOUBLE, &s->peak_tflops, "989", 0, 1e6, NULL, NULL,
               "peak TFLOP/s of one device, for the MFU of the step line (989: H100 SXM bf16 dense); shown by the "
               "GPU trainer, and by train_cpu only when given; 0: no MFU"),
        OPTION("--ckpt-dir", OPT_STRING, &s->ckpt_dir, "", 0, 0, NULL, NULL, "write checkpoints here (created if missing); empty: none"),
        OPTION("--ckpt-every", OPT_INT, &s->ckpt_every, "0", 0, BIG, NULL, NULL, "checkpoint every N steps and at the end; 0: only at the end"),
        OPTION("--resume", OPT_STRING, &s->resume, "", 0, 0, NULL, NULL, "continue bit-exactly from this checkpoint (same flags)"),
        OPTION("--rank", OPT_INT, &s->rank, "0", 0, 65535, NULL, "RANK", "this process's rank (under mpirun: MPI's)"),
        OPTION("--world", OPT_INT, &s->world, "1", 1, 65536, NULL, "WORLD_SIZE", "number of processes (under mpirun: MPI's)"),
        OPTION("--local-rank", OPT_INT, &s->local_rank, "-1", -1, 65535, NULL, "LOCAL_RANK",
               "index of this process on its machine, the GPU it uses; -1: MPI's, else --rank (one machine)"),
        OPTION("--rendezvous", OPT_STRING, &s->rendezvous, "", 0, 0, NULL, "PATHGPT_RENDEZVOUS",
               "how the processes meet: mpi, tcp:HOST:PORT (rank 0 listens), file:PATH; empty: mpi under mpirun, else one process"),
        OPTION("--join-timeout", OPT_DOUBLE, &s->join_timeout, "300", 0.1, 1e6, NULL, NULL,
               "seconds for every rank to join (tcp, file)"),
        OPTION("--zero", OPT_INT, &s->zero, "0", 0, 1, NULL, NULL,
               "1: ZeRO-1, each rank keeps AdamW's moments for its 1/world of the parameters and updates those "
               "(gradients reduce-scattered, parameters all-gathered); 0: every rank all of them"),
        OPTION("--overlap", OPT_INT, &s->overlap, "1", 0, 1, NULL, NULL,
               "several ranks: 1 sums each layer's gradients as soon as the step's last backward has them (GPUs: on "
               "a side stream, while backward goes on); 0: the whole buffer after backward; ZeRO-1 reduce-scatters "
               "after backward either way"),
    };
    _Static_assert(sizeof t / sizeof t[0] <= MAX_OPTIONS, "MAX_OPTIONS must hold the table");
    int n = (int)(sizeof t / sizeof t[0]);
    memcpy(out, t, sizeof t);
    return n;
}

static int given(const Option *opts, int n, const char *name) {
    const Option *o = options_find(opts, n, name);
    return o && o->source != OPT_FROM_DEFAULT;
}

/* --sample-len, with 0 resolved: 64 tokens, or what fits in T (after the prompt, for shards) */
static int sample_length(const Settings *s) {
    int room = s->train_data[0] ? s->T - s->sample_prompt : s->T;
    return s->sample_len ? s->sample_len : room < 64 ? room : 64;
}

/* Checks across flags, after parsing. 0, or -1 with one line in why. */
static int settings_check(const Settings *s, const Option *opts, int n, char *why, size_t len) {
    static const char *shard_only[] = {"--val-data", "--vocab", "--tokenizer", "--shuffle", "--val-batches", "--sample-prompt"};
    static const char *flipflop_only[] = {"--ff-p", "--ff-eval-id", "--ff-eval-sparse", "--ff-eval-dense", "--ff-eval-paper"};
    int shards = s->train_data[0] != '\0';
    why[0] = '\0';
    for (size_t i = 0; i < sizeof shard_only / sizeof shard_only[0] && !shards; i++)
        if (given(opts, n, shard_only[i]))
            snprintf(why, len, "%s applies to shard data (--train-data); the flip-flop task does not use it", shard_only[i]);
    for (size_t i = 0; i < sizeof flipflop_only / sizeof flipflop_only[0] && shards; i++)
        if (given(opts, n, flipflop_only[i]))
            snprintf(why, len, "%s applies to the flip-flop task, not to shard data (--train-data)", flipflop_only[i]);
    if (why[0]) return -1;
    if (s->rank >= s->world)
        snprintf(why, len, "--rank %d is not below --world %d", s->rank, s->world);
    else if (s->zero && s->overlap && given(opts, n, "--overlap"))
        snprintf(why, len, "--overlap 1 applies without --zero 1 (ZeRO-1 reduce-scatters the gradients after backward)");
    else if (s->ff_eval_paper && (given(opts, n, "--ff-eval-id") || given(opts, n, "--ff-eval-sparse") ||
                                  given(opts, n, "--ff-eval-dense")))
        snprintf(why, len, "--ff-eval-paper 1 sets the held-out sizes; do not also give --ff-eval-id/-sparse/-dense");
    else if (!shards && flipflop_check(s->ff_p, s->T, why, len) != 0)
        return -1;
    else if (s->sample_every && !shards && (sample_length(s) < 4 || sample_length(s) % 2 || sample_length(s) > s->T))
        snprintf(why, len, "--sample-len %d: a flip-flop sample is a sequence of even length in [4, --seq-len %d]",
                 s->sample_len, s->T);
    else if (s->sample_every && shards && sample_length(s) < 1)
        snprintf(why, len, "--sample-prompt %d leaves no room to generate within --seq-len %d (lower it, or give "
                           "--sample-every 0)", s->sample_prompt, s->T);
    else if (s->sample_every && shards && s->sample_prompt + sample_length(s) > s->T)
        snprintf(why, len, "--sample-prompt %d + --sample-len %d exceed --seq-len %d (the model's longest sequence)",
                 s->sample_prompt, s->sample_len, s->T);
    else if ((long long)s->B * s->T > 2147483647LL / 8)
        snprintf(why, len, "--batch %d x --seq-len %d is too many tokens per micro-batch", s->B, s->T);
    return why[0] ? -1 : 0;
}

/* ---------------------------------------------------------------------------------------------
 * the run: model, data, tokenizer, log */

enum { TOK_IDS, TOK_BYTE, TOK_BPE };

typedef struct {
    Settings s;
    ModelConfig cfg;
    Gpt *model;
    Comm *comm;              /* the ranks (comm/comm.h); world 1: no transport */
    int zero;                /* ZeRO-1 with world > 1 */
    int overlap;             /* --overlap with world > 1 and no ZeRO-1 */
    void *overlap_stream;    /* the stream gpt_set_grad_ready's callback was last given (NULL on the CPU) */
    size_t shard;            /* ZeRO-1: S, parameters per rank (shard_size) */
    size_t shard_begin, shard_end; /* the parameters this rank's AdamW updates: all, or (ZeRO-1) its shard */
    Schedule sched;
    AdamWConfig opt;
    SamplerConfig sampler;
    int shards;              /* 0: flip-flop generator */
    Rng ff_rng;              /* flip-flop: the training data generator */
    DataLoader train_dl;     /* shards */
    DataLoader val_dl;       /* shards with --val-data */
    int has_val, val_batches;
    int tok;                 /* TOK_*: how samples print */
    Bpe bpe;
    int *prompt;             /* (sample_prompt) shards: start of every sample */
    int *inputs, *targets;   /* (grad_accum, B, T) one step's micro-batches */
    int *row_x, *row_y;      /* (T) flip-flop rows of other ranks */
    int main_rank;
    FILE *log;
    double flops_per_token;  /* model_config_flops_per_token at T: training FLOPs per token */
    double peak_flops;       /* FLOP/s of one device for the MFU print; 0: no MFU */
} Run;

/* Seeds of the run's random streams, all from --seed: the initialisation takes --seed itself;
 * the others differ from it in bits 32 and up (rng_init hashes its seed, so streams are unrelated). */
enum { STREAM_FLIPFLOP = 1, STREAM_SAMPLE = 2 };
static uint64_t stream_seed(const Settings *s, uint64_t stream, uint64_t step) {
    return ((uint64_t)s->seed << 40) ^ (stream << 32) ^ step;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* progress line to stdout, rank 0 only */
static void say(const Run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const Run *r, const char *fmt, ...) {
    if (!r->main_rank) return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

/* one key=value line to the --log file */
static void log_kv(const Run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_kv(const Run *r, const char *fmt, ...) {
    if (!r->log) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(r->log, fmt, ap);
    va_end(ap);
    fputc('\n', r->log);
    fflush(r->log);
}

/* bytes as one double-quoted line: valid UTF-8 characters as they are; \\, \", \n, \t, and \xNN for
 * other control bytes and for bytes that are not part of a valid UTF-8 character */
static char *quoted(const char *bytes, size_t n) {
    char *out = mallocCheck(4 * n + 3), *p = out;
    *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)bytes[i];
        size_t k = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1; /* length a lead byte announces */
        if (c == '\\' || c == '"') { *p++ = '\\'; *p++ = (char)c; }
        else if (c == '\n') { *p++ = '\\'; *p++ = 'n'; }
        else if (c == '\t') { *p++ = '\\'; *p++ = 't'; }
        else if (c < 0x20 || c == 0x7f || (c >= 0x80 && (k == 1 || k > n - i || bpe_utf8_prefix(bytes + i, k) != k)))
            p += sprintf(p, "\\x%02x", c);
        else {
            memcpy(p, bytes + i, k);
            p += k;
            i += k - 1;
        }
    }
    *p++ = '"';
    *p = '\0';
    return out;
}

/* vocabulary from --tokenizer and --vocab (shards) */
static int setup_tokenizer(Run *r) {
    const Settings *s = &r->s;
    char why[1024];
    int vocab = s->vocab;
    r->tok = TOK_IDS;
    if (strcmp(s->tokenizer, "byte") == 0) {
        r->tok = TOK_BYTE;
    } else if (s->tokenizer[0]) {
        if (bpe_init_file(&r->bpe, s->tokenizer, why, sizeof why)) die("--tokenizer: %s", why);
        r->tok = TOK_BPE;
    }
    int tok_vocab = r->tok == TOK_BYTE ? TOKENIZER_BYTE_VOCAB : r->tok == TOK_BPE ? r->bpe.vocab_size : 0;
    if (vocab == 0 && tok_vocab == 0) die("shard data needs the vocabulary size: give --vocab or --tokenizer");
    if (vocab && tok_vocab && vocab != tok_vocab)
        die("--vocab %d differs from the tokenizer's vocabulary of %d", vocab, tok_vocab);
    return vocab ? vocab : tok_vocab;
}

static void setup_shards(Run *r) {
    const Settings *s = &r->s;
    DataLoaderConfig dc = {s->train_data, s->B, s->T, s->rank, s->world, r->cfg.vocab_size, s->shuffle, (uint64_t)s->seed};
    dataloader_init_or_die(&r->train_dl, &dc);
    DataLoaderConfig first = dc; /* samples start with the first tokens of the val (else train) data */
    first.rank = 0;
    first.world = 1;
    first.shuffle = 0;
    if (s->val_data[0]) first.pattern = s->val_data;
    DataLoader tmp;
    dataloader_init_or_die(&tmp, &first);
    dataloader_next_or_die(&tmp, r->inputs, r->targets);
    r->prompt = mallocCheck(sizeof(int) * (size_t)s->sample_prompt);
    memcpy(r->prompt, r->inputs, sizeof(int) * (size_t)s->sample_prompt);
    dataloader_free(&tmp);
    if (!s->val_data[0]) return;
    dataloader_init_or_die(&r->val_dl, &first);
    r->has_val = 1;
    r->val_batches = s->val_batches < r->val_dl.batches_per_epoch ? s->val_batches : (int)r->val_dl.batches_per_epoch;
}

/* ZeRO-1: S = ceil(n / world) rounded up to a multiple of 64, so that every shard starts on a 256-byte
 * boundary (the GPU's AdamW loads 16 bytes at once where the moments and the parameters align alike; NCCL
 * is fastest on aligned buffers). Rank r's shard is [r S, (r+1) S) within [0, n); the model's buffers
 * are padded to world S for the collectives. */
static size_t shard_size(size_t n, int world) {
    size_t per_rank = (n + (size_t)world - 1) / (size_t)world;
    return (per_rank + 63) / 64 * 64;
}

static void run_init(Run *r, const Settings *s, Comm *comm) {
    memset(r, 0, sizeof *r);
    r->s = *s;
    r->comm = comm;
    r->main_rank = s->rank == 0;
    r->shards = s->train_data[0] != '\0';
    int vocab = r->shards ? setup_tokenizer(r) : FLIPFLOP_VOCAB;
    r->cfg = model_config_make((AttnType)s->attn, s->n_layer, s->n_head, s->n_embd, vocab, s->T);
    r->cfg.w_rank = s->w_rank;
    r->cfg.conv_size = s->conv_size;
    r->cfg.doc_token = s->doc_token;
    r->cfg.rope_theta = (float)s->rope_theta;
    char why[1024];
    if (model_config_check(&r->cfg, why, sizeof why)) die("model: %s", why);
    r->sched = (Schedule){(ScheduleType)s->schedule, s->lr, s->min_lr, s->warmup, s->steps, s->decay_frac};
    if (schedule_check(&r->sched, why, sizeof why)) die("schedule: %s", why);
    r->opt = (AdamWConfig){(float)s->beta1, (float)s->beta2, (float)s->eps, (float)s->weight_decay};
    r->sampler = (SamplerConfig){s->temperature, s->top_k};
    size_t n = (size_t)s->grad_accum * s->B * s->T;
    r->inputs = mallocCheck(sizeof(int) * n);
    r->targets = mallocCheck(sizeof(int) * n);
    r->row_x = mallocCheck(sizeof(int) * (size_t)s->T);
    r->row_y = mallocCheck(sizeof(int) * (size_t)s->T);
    if (r->shards) setup_shards(r);
    rng_init(&r->ff_rng, stream_seed(s, STREAM_FLIPFLOP, 0));
    if (r->main_rank && s->log_path[0]) r->log = fopenCheck(s->log_path, "a");
    r->model = gpt_create(&r->cfg, s->B, s->T, (uint64_t)s->seed);
    size_t n_params = gpt_num_params(r->model);
    r->zero = s->zero && s->world > 1;
    r->overlap = s->overlap && s->world > 1 && !r->zero;
    r->shard = shard_size(n_params, s->world);
    size_t first = (size_t)s->rank * r->shard, last = first + r->shard; /* ZeRO-1's, clipped to [0, n) below */
    r->shard_begin = !r->zero ? 0 : first < n_params ? first : n_params;
    r->shard_end = !r->zero || last > n_params ? n_params : last;
}

static void run_free(Run *r) {
    gpt_free(r->model);
    if (r->shards) dataloader_free(&r->train_dl);
    if (r->has_val) dataloader_free(&r->val_dl);
    if (r->tok == TOK_BPE) bpe_free(&r->bpe);
    if (r->log) fcloseCheck(r->log);
    free(r->prompt);
    free(r->inputs);
    free(r->targets);
    free(r->row_x);
    free(r->row_y);
}

/* MFU on the step line: the GPU trainer by default; train_cpu only with --peak-tflops given */
static void setup_mfu(Run *r, const Option *opts, int n) {
    r->flops_per_token = model_config_flops_per_token(&r->cfg, r->s.T);
    int show = gpt_on_gpu() || given(opts, n, "--peak-tflops");
    r->peak_flops = show ? 1e12 * r->s.peak_tflops : 0.0;
}

/* ---------------------------------------------------------------------------------------------
 * the start: settings, model, data */

/* the held-out flip-flop sets: fixed seeds, independent of --seed */
static const struct { const char *name, *key; double p_i; uint64_t seed; } ff_sets[3] = {
    {"in-dist", "id", FLIPFLOP_P_TRAIN, 0xf11bf10b0001ULL},
    {"sparse", "sparse", FLIPFLOP_P_SPARSE, 0xf11bf10b0002ULL},
    {"dense", "dense", FLIPFLOP_P_DENSE, 0xf11bf10b0003ULL},
};

static int ff_set_size(const Settings *s, int k) {
    static const int paper[3] = {FLIPFLOP_EVAL_SEQS_ID, FLIPFLOP_EVAL_SEQS_SPARSE, FLIPFLOP_EVAL_SEQS_DENSE};
    int mine[3] = {s->ff_eval_id, s->ff_eval_sparse, s->ff_eval_dense};
    return s->ff_eval_paper ? paper[k] : mine[k];
}


/* the settings table; the --log start line holds them all as key=value */
static void print_settings(const Run *r, const Option *opts, int n, int start_step) {
    char value[512], line[8192];
    int len = snprintf(line, sizeof line, "event=start time=%lld start_step=%d", (long long)time(NULL), start_step);
    say(r, "settings (flag > environment > default):\n");
    for (int i = 0; i < n; i++) {
        options_format(&opts[i], value, sizeof value);
        say(r, "  %-18s %-24s %s\n", opts[i].name, value[0] ? value : "\"\"", options_source_name(opts[i].source));
        char *q = opts[i].type == OPT_STRING ? quoted(value, strlen(value)) : NULL; /* only strings need quotes */
        if (len < (int)sizeof line) len += snprintf(line + len, sizeof line - len, " %s=%s", opts[i].name + 2, q ? q : value);
        free(q);
    }
    log_kv(r, "%s", line);
}

static void print_model(const Run *r) {
    const ModelConfig *c = &r->cfg;
    say(r, "model: %s attention, layers %d, heads %d (dim %d), width %d, vocab %d (padded %d), T %d; GPT-2 blocks, "
           "init N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)) (GPT-2's rule)\n",
        attn_type_name(c->attn), c->n_layer, c->n_head, c->n_embd / c->n_head, c->n_embd, c->vocab_size,
        c->padded_vocab_size, c->max_seq_len);
    ParamSpec specs[NUM_PARAM_TENSORS];
    size_t total = param_specs(c, specs);
    say(r, "parameters:\n");
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        if (!specs[i].n_elems) continue;
        char shape[64] = "(";
        for (int d = 0; d < specs[i].ndim; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%d", d ? ", " : "", specs[i].shape[d]);
        strcat(shape, ")");
        say(r, "  %-9s %-18s %10zu%s\n", specs[i].name, shape, specs[i].n_elems, specs[i].decay ? "  decay" : "");
    }
    say(r, "  %-9s %-18s %10zu\n", "total", "", total);
    if (r->peak_flops > 0)
        say(r, "MFU: %.4g MFLOPs per token at T %d (forward + backward, model/config.h), peak %g TFLOP/s per device\n",
            1e-6 * r->flops_per_token, r->s.T, 1e-12 * r->peak_flops);
    log_kv(r, "event=model attn=%s n_params=%zu", attn_type_name(c->attn), total);
}

static void print_data(const Run *r, int start_step) {
    const Settings *s = &r->s;
    if (r->shards) {
        say(r, "data: shards '%s' (%d files, %lld tokens, %lld steps per epoch), %s\n", s->train_data,
            r->train_dl.n_shards, (long long)r->train_dl.total_tokens,
            (long long)(r->train_dl.batches_per_epoch / s->grad_accum),
            r->has_val ? "val loss over the first batches of --val-data" : "no --val-data: no val loss");
    } else {
        say(r, "data: flip-flop, p(i) %g, T %d; held-out sets from fixed seeds%s:", s->ff_p, s->T,
            s->ff_eval_paper ? " (the paper's sizes)" : "");
        for (int k = 0; k < 3; k++)
            say(r, "%s %s %d seqs (p(i) %g)", k ? "," : "", ff_sets[k].name, ff_set_size(s, k), ff_sets[k].p_i);
        say(r, "\n");
    }
    say(r, "batch: %d rows x %d tokens x %d micro-batches x %d ranks = %lld tokens per step; %d steps\n", s->B,
        s->T, s->grad_accum, s->world, (long long)s->B * s->T * s->grad_accum * s->world, s->steps);
    if (start_step) say(r, "resumed from '%s' at step %d\n", s->resume, start_step);
}

/* how the ranks joined, how a step combines them, and the model state each rank holds (rank 0's figures;
 * under ZeRO-1 the last ranks' shards may be shorter) */
static void print_processes(const Run *r) {
    const Settings *s = &r->s;
    double mb = 1.0 / (1 << 20);
    size_t params = gpt_state_bytes(r->model, GPT_PARAMS), grads = gpt_state_bytes(r->model, GPT_GRADS);
    size_t moments = gpt_state_bytes(r->model, GPT_ADAM_M) + gpt_state_bytes(r->model, GPT_ADAM_V);
    if (s->world == 1) say(r, "processes: 1 (%s)\n", comm_describe(r->comm));
    else say(r, "processes: world %d, %s; rank 0 is local rank %d\n", s->world, comm_describe(r->comm), s->local_rank);
    char when[96];
    if (r->overlap) snprintf(when, sizeof when, "layer by layer during the backward of micro-batch %d of %d", s->grad_accum,
                             s->grad_accum);
    else snprintf(when, sizeof when, "after %d micro-batch%s", s->grad_accum, s->grad_accum > 1 ? "es" : "");
    if (s->world > 1)
        say(r, "  every step: valid targets, losses and gradients summed over the ranks (gradients once, %s); %s\n", when,
            r->zero ? "ZeRO-1: gradients reduce-scattered, AdamW on each rank's shard, then the parameters all-gathered"
                    : "AdamW on every rank");
    if (s->zero && !r->zero) say(r, "  --zero 1 with one process: nothing to shard, AdamW runs on all parameters\n");
    say(r, "memory per rank (model state; activations come on top): parameters %.2f MB, gradients %.2f MB, AdamW m and "
           "v %.2f MB", params * mb, grads * mb, moments * mb);
    if (r->zero)
        say(r, " (ZeRO-1: this rank's shard, %zu of %zu parameters; each checkpoint gathers the moments in %.2f MB of "
               "host memory)", r->shard_end - r->shard_begin, gpt_num_params(r->model), 8.0 * s->world * r->shard * mb);
    say(r, "\n");
    log_kv(r, "event=processes world=%d zero=%d overlap=%d shard=%zu param_bytes=%zu grad_bytes=%zu moment_bytes=%zu",
           s->world, r->zero, r->overlap, r->shard_end - r->shard_begin, params, grads, moments);
}

/* ---------------------------------------------------------------------------------------------
 * training */

/* B rows of T tokens for this rank. Flip-flop: the global batch is B x world rows drawn in order
 * from the generator; rank r keeps rows [r B, (r+1) B), as the dataloader slices shards. */
static void next_batch(Run *r, int *inputs, int *targets) {
    const Settings *s = &r->s;
    if (r->shards) {
        dataloader_next_or_die(&r->train_dl, inputs, targets);
        return;
    }
    for (int row = 0; row < s->B * s->world; row++) {
        int mine = row / s->B == s->rank;
        size_t o = (size_t)(row % s->B) * s->T;
        flipflop_batch(&r->ff_rng, s->ff_p, 1, s->T, mine ? inputs + o : r->row_x, mine ? targets + o : r->row_y);
    }
}

typedef struct {
    double loss, lr;
    float norm;
} StepResult;

/* gpt_set_grad_ready's callback (--overlap): a range of the step's gradients, final, summed over the ranks */
static void sum_range(void *ctx, float *grads, size_t begin, size_t end, void *stream) {
    Run *r = ctx;
    comm_allreduce_sum(r->comm, grads + begin, end - begin, stream);
    r->overlap_stream = stream;
}

/* The gradients summed over the ranks and their global norm. --overlap: backward has queued the sums
 * (sum_range); they are waited for here, watching for a failed rank. ZeRO-1: only this rank's shard is
 * summed (reduce-scatter), and the norm comes from the shards' sums of squares, added over the ranks in
 * double: another order than gpt_grad_norm's, so it may differ in the last bits (and so may the clip
 * factor). */
static float sum_gradients(Run *r) {
    float *grads = gpt_grad_buffer(r->model);
    if (!r->zero) {
        if (r->overlap) comm_wait(r->comm, r->overlap_stream);
        else comm_allreduce_sum(r->comm, grads, gpt_num_params(r->model), NULL);
        return gpt_grad_norm(r->model);
    }
    comm_reduce_scatter_sum(r->comm, grads, r->shard, NULL);
    double sum = gpt_grad_sum_squares(r->model, r->shard_begin, r->shard_end);
    comm_sum_host(r->comm, &sum, 1);
    return (float)sqrt(sum);
}

/* AdamW step t on this rank's parameters; ZeRO-1: then every rank's updated shard to every rank */
static void update(Run *r, float lr, float grad_mult, int t) {
    gpt_update(r->model, &r->opt, lr, grad_mult, t, r->shard_begin, r->shard_end);
    if (!r->zero) return;
    comm_allgather(r->comm, gpt_param_buffer(r->model), r->shard, NULL);
    gpt_params_written(r->model);
}

/* ZeRO-1: AdamW moment which (GPT_ADAM_M or GPT_ADAM_V) from every rank's shard, on every rank: a host
 * array of world S floats whose first n_params are the moment in table order (free it) */
static float *gather_moments(Run *r, int which) {
    float *buf = callocCheck((size_t)r->s.world * r->shard, sizeof(float));
    gpt_copy_out(r->model, which, buf); /* this rank's [begin, end) = [rank S, ...) of it */
    comm_allgather_host(r->comm, buf, r->shard);
    return buf;
}

/* One optimizer step (0-based step). */
static StepResult train_step(Run *r, int step) {
    const Settings *s = &r->s;
    size_t BT = (size_t)s->B * s->T;
    long long n_valid = 0;
    for (int a = 0; a < s->grad_accum; a++) {
        next_batch(r, r->inputs + a * BT, r->targets + a * BT);
        for (size_t i = 0; i < BT; i++) n_valid += r->targets[a * BT + i] >= 0;
    }
    double all_valid = (double)n_valid; /* over the ranks: exact below 2^53 */
    comm_sum_host(r->comm, &all_valid, 1);
    n_valid = (long long)all_valid;
    float grad_scale = n_valid > 0 ? 1.0f / (float)n_valid : 0.0f;
    double loss_sum = 0.0;
    for (int a = 0; a < s->grad_accum; a++) {
        GptLoss l = gpt_forward(r->model, r->inputs + a * BT, r->targets + a * BT, s->B, s->T);
        loss_sum += (double)l.loss * l.n_valid;
        if (r->overlap && a == s->grad_accum - 1) gpt_set_grad_ready(r->model, sum_range, r); /* final gradients */
        gpt_backward(r->model, grad_scale);
    }
    gpt_set_grad_ready(r->model, NULL, NULL);
    comm_sum_host(r->comm, &loss_sum, 1);
    StepResult res = {n_valid ? loss_sum / n_valid : 0.0, schedule_lr(&r->sched, step), sum_gradients(r)};
    if (!isfinite(res.norm) || !isfinite(res.loss))
        die("step %d: loss %g, gradient norm %g; stopping (try a lower --lr)", step + 1, res.loss, res.norm);
    float grad_mult = s->clip > 0 && res.norm > s->clip ? (float)(s->clip / res.norm) : 1.0f;
    update(r, (float)res.lr, grad_mult, step + 1);
    gpt_zero_grad(r->model);
    return res;
}

static void report_step(const Run *r, int done, const StepResult *res, double seconds) {
    double tokens = (double)r->s.B * r->s.T * r->s.grad_accum * r->s.world;
    double tps = tokens / seconds;
    double mfu = r->peak_flops > 0 ? r->flops_per_token * tps / r->s.world / r->peak_flops : 0.0; /* per device */
    char mfu_text[32] = "", mfu_kv[32] = "";
    if (r->peak_flops > 0) {
        snprintf(mfu_text, sizeof mfu_text, " | MFU %.1f%%", 100.0 * mfu);
        snprintf(mfu_kv, sizeof mfu_kv, " mfu=%.4f", mfu); /* a fraction */
    }
    say(r, "step %d/%d | loss %.4f | norm %.3f | lr %.2e | %.0f ms | %.1f%s tok/s%s\n", done, r->s.steps, res->loss,
        res->norm, res->lr, 1e3 * seconds, tps >= 1e6 ? tps / 1e6 : tps / 1e3, tps >= 1e6 ? "M" : "k", mfu_text);
    log_kv(r, "event=step step=%d loss=%.6g norm=%.6g lr=%.6g ms=%.3f tok_per_s=%.1f%s", done, res->loss, res->norm,
           res->lr, 1e3 * seconds, tps, mfu_kv);
}

/* ---------------------------------------------------------------------------------------------
 * evaluation */

typedef struct {
    double loss_sum;
    long long n_valid, n_correct;
} Tally;

static void tally_add(Tally *t, GptLoss l) {
    t->loss_sum += (double)l.loss * l.n_valid;
    t->n_valid += l.n_valid;
    t->n_correct += l.n_correct;
}

static Tally eval_flipflop_set(Run *r, int k) {
    const Settings *s = &r->s;
    Tally t = {0};
    Rng rng;
    rng_init(&rng, ff_sets[k].seed);
    for (int done = 0, n = ff_set_size(s, k); done < n; done += s->B) {
        int rows = n - done < s->B ? n - done : s->B;
        flipflop_batch(&rng, ff_sets[k].p_i, rows, s->T, r->inputs, r->targets);
        tally_add(&t, gpt_forward(r->model, r->inputs, r->targets, rows, s->T));
    }
    return t;
}

static void evaluate_shards(Run *r, int done) {
    double t0 = now_s();
    Tally t = {0};
    dataloader_reset(&r->val_dl);
    for (int b = 0; b < r->val_batches; b++) {
        dataloader_next_or_die(&r->val_dl, r->inputs, r->targets);
        tally_add(&t, gpt_forward(r->model, r->inputs, r->targets, r->s.B, r->s.T));
    }
    double loss = t.loss_sum / (double)t.n_valid;
    say(r, "eval step %d | val loss %.4f | %d batches, %lld tokens | %.1f s\n", done, loss, r->val_batches, t.n_valid,
        now_s() - t0);
    log_kv(r, "event=eval step=%d val_loss=%.6g val_tokens=%lld", done, loss, t.n_valid);
}

static void evaluate_flipflop(Run *r, int done) {
    double t0 = now_s();
    char line[1024], kv[1024];
    int len = snprintf(line, sizeof line, "eval step %d", done), kvlen = snprintf(kv, sizeof kv, "event=eval step=%d", done);
    const char *sep = " | FFLM error ";
    for (int k = 0; k < 3; k++) {
        if (ff_set_size(&r->s, k) == 0) continue;
        Tally t = eval_flipflop_set(r, k);
        double err = t.n_valid ? 1.0 - (double)t.n_correct / t.n_valid : 0.0;
        if (k == 0) {
            len += snprintf(line + len, sizeof line - len, " | val loss %.4f", t.loss_sum / t.n_valid);
            kvlen += snprintf(kv + kvlen, sizeof kv - kvlen, " val_loss=%.6g", t.loss_sum / t.n_valid);
        }
        len += snprintf(line + len, sizeof line - len, "%s%s %.3f%% (%lld/%lld)", sep, ff_sets[k].name, 100.0 * err,
                        t.n_valid - t.n_correct, t.n_valid);
        kvlen += snprintf(kv + kvlen, sizeof kv - kvlen, " fflm_err_%s=%.6g fflm_reads_%s=%lld", ff_sets[k].key, err,
                          ff_sets[k].key, t.n_valid);
        sep = ", ";
    }
    say(r, "%s | %.1f s\n", line, now_s() - t0);
    log_kv(r, "%s", kv);
}

/* ---------------------------------------------------------------------------------------------
 * sampling: a fresh generator per step (--seed, step), so samples carry no state across a resume */

/* tokens as text (NUL-terminated; *len bytes): flip-flop symbols, bytes, BPE pieces, or ids */
static char *detokenize(const Run *r, const int *ids, int n, size_t *len) {
    char *out;
    if (!r->shards) {
        out = mallocCheck(2 * (size_t)n + 1);
        flipflop_decode(ids, n, out);
        *len = strlen(out);
    } else if (r->tok == TOK_BYTE) {
        out = mallocCheck((size_t)n + 1);
        tokenizer_byte_decode(ids, (size_t)n, out);
        *len = (size_t)n;
    } else if (r->tok == TOK_BPE) { /* an id without a piece prints as '?' */
        size_t total = 0, k;
        for (int i = 0; i < n; i++) total += bpe_piece(&r->bpe, ids[i], &k) ? k : 1;
        out = mallocCheck(total + 1);
        *len = 0;
        for (int i = 0; i < n; i++) {
            const char *piece = bpe_piece(&r->bpe, ids[i], &k);
            memcpy(out + *len, piece ? piece : "?", piece ? k : 1);
            *len += piece ? k : 1;
        }
    } else {
        out = mallocCheck(12 * (size_t)n + 1);
        *len = 0;
        for (int i = 0; i < n; i++) *len += (size_t)sprintf(out + *len, "%s%d", i ? " " : "", ids[i]);
    }
    out[*len] = '\0';
    return out;
}

/* tokens as a double-quoted one-line string (free it) */
static char *quoted_tokens(const Run *r, const int *ids, int n) {
    size_t n_bytes;
    char *text = detokenize(r, ids, n, &n_bytes), *q = quoted(text, n_bytes);
    free(text);
    return q;
}

/* flip-flop: a fresh sequence in which the model fills the bit after every r */
static void sample_flipflop(Run *r, int done, Rng *rng) {
    int len = sample_length(&r->s), n_free = 0, n_right = 0;
    int *tokens = mallocCheck(sizeof(int) * (size_t)len), *truth = mallocCheck(sizeof(int) * (size_t)len);
    unsigned char *fixed = mallocCheck((size_t)len);
    flipflop_batch(rng, r->s.ff_p, 1, len, truth, tokens); /* tokens: scratch for the targets */
    for (int t = 0; t < len; t++) {
        fixed[t] = !(t > 0 && truth[t - 1] == FLIPFLOP_R);
        tokens[t] = truth[t];
    }
    sampler_generate(r->model, &r->sampler, rng, 1, len, tokens, fixed);
    for (int t = 0; t < len; t++) {
        n_free += !fixed[t];
        n_right += !fixed[t] && tokens[t] == truth[t];
    }
    char *q = quoted_tokens(r, tokens, len);
    say(r, "sample step %d | flip-flop, the model fills the bits after r: %d/%d right | %s\n", done, n_right, n_free, q);
    log_kv(r, "event=sample step=%d reads=%d right=%d text=%s", done, n_free, n_right, q);
    free(q);
    free(tokens);
    free(truth);
    free(fixed);
}

/* shards: the prompt, then sample_length generated tokens */
static void sample_shards(Run *r, int done, Rng *rng) {
    int P = r->s.sample_prompt, len = P + sample_length(&r->s);
    int *tokens = mallocCheck(sizeof(int) * (size_t)len);
    unsigned char *fixed = mallocCheck((size_t)len);
    memcpy(tokens, r->prompt, sizeof(int) * (size_t)P);
    for (int t = 0; t < len; t++) fixed[t] = t < P;
    sampler_generate(r->model, &r->sampler, rng, 1, len, tokens, fixed);
    char *prompt = quoted_tokens(r, tokens, P), *gen = quoted_tokens(r, tokens + P, len - P);
    say(r, "sample step %d | prompt %s | generated %s\n", done, prompt, gen);
    log_kv(r, "event=sample step=%d prompt=%s generated=%s", done, prompt, gen);
    free(prompt);
    free(gen);
    free(tokens);
    free(fixed);
}

static void sample(Run *r, int done) {
    Rng rng;
    rng_init(&rng, stream_seed(&r->s, STREAM_SAMPLE, (uint64_t)done));
    if (r->shards) sample_shards(r, done, &rng);
    else sample_flipflop(r, done, &rng);
}

/* ---------------------------------------------------------------------------------------------
 * checkpoints */

static CheckpointHeader run_header(const Run *r, int done) {
    CheckpointHeader h;
    memset(&h, 0, sizeof h);
    h.cfg = r->cfg;
    h.B = r->s.B;
    h.T = r->s.T;
    h.grad_accum = r->s.grad_accum;
    h.world = r->s.world;
    h.step = done;
    h.data = r->shards ? CHECKPOINT_DATA_SHARDS : CHECKPOINT_DATA_FLIPFLOP;
    h.flipflop_rng = r->shards ? 0 : r->ff_rng.state;
    if (r->shards) dataloader_state(&r->train_dl, &h.loader);
    return h;
}

/* m, v: NULL, or (ZeRO-1) the gathered moments */
static void save_checkpoint(Run *r, int done, const float *m, const float *v) {
    const char *dir = r->s.ckpt_dir;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) die("--ckpt-dir: cannot create '%s': %s", dir, strerror(errno));
    char path[4096], why[1024];
    snprintf(path, sizeof path, "%s/ckpt_%08d.bin", dir, done);
    CheckpointHeader h = run_header(r, done);
    double t0 = now_s();
    if (checkpoint_save(path, r->model, &h, m, v, why, sizeof why)) die("%s", why);
    say(r, "checkpoint step %d | %s | %.1f s\n", done, path, now_s() - t0);
    log_kv(r, "event=checkpoint step=%d path=%s", done, path);
}

/* world > 1: rank 0 has loaded the checkpoint; its header, parameters and moments go to every rank */
static void share_checkpoint(Run *r, CheckpointHeader *saved) {
    size_t n = gpt_num_params(r->model);
    float *buf = mallocCheck(sizeof(float) * n);
    comm_broadcast_host(r->comm, saved, sizeof *saved);
    for (int which = GPT_PARAMS; which <= GPT_ADAM_V; which++) {
        if (r->main_rank) gpt_copy_out(r->model, which, buf);
        comm_broadcast_host(r->comm, buf, sizeof(float) * n);
        if (!r->main_rank) gpt_copy_in(r->model, which, buf);
    }
    free(buf);
}

/* Loads --resume (rank 0 reads it) into the model and the data position; returns the steps already done. */
static int resume(Run *r) {
    CheckpointHeader run = run_header(r, 0), saved;
    char why[1024];
    memset(&saved, 0, sizeof saved);
    if (r->main_rank && checkpoint_load(r->s.resume, r->model, &run, &saved, why, sizeof why)) die("%s", why);
    if (r->s.world > 1) share_checkpoint(r, &saved);
    if (saved.step > r->s.steps)
        die("--resume: checkpoint '%s' is at step %lld, past --steps %d", r->s.resume, (long long)saved.step, r->s.steps);
    if (!r->shards) r->ff_rng.state = saved.flipflop_rng;
    else if (dataloader_restore(&r->train_dl, &saved.loader, why, sizeof why))
        die("--resume: checkpoint '%s': %s", r->s.resume, why);
    return (int)saved.step;
}

/* ---------------------------------------------------------------------------------------------
 * main */

static const char *usage_text(void) {
    static char buf[512];
    snprintf(buf, sizeof buf,
             "usage: %s [--option value ...]\n"
             "Trains a GPT-2-layout model with PaTH attention (or another --attn). With no options: the flip-flop\n"
             "task (doc/DESIGN.md section 7), 1 layer, 2 heads, width 64, T 512, batch 16. Options (--name value\n"
             "or --name=value):", util_progname());
    return buf;
}

/* Joins the other processes (comm/comm.h) and takes rank, world and local rank from the result; under
 * mpirun those are MPI's, and --rank / --world, if given, must agree. */
static Comm *join_processes(Settings *s, const Option *opts, int n) {
    CommConfig cc = {s->rendezvous, s->rank, s->world, s->local_rank, s->join_timeout};
    Comm *c;
    char why[1024];
    if (comm_init(&c, &cc, why, sizeof why)) die("processes: %s", why);
    if ((given(opts, n, "--world") && comm_world(c) != s->world) || (given(opts, n, "--rank") && comm_rank(c) != s->rank))
        die("processes: MPI made this rank %d of world %d, but --rank %d / --world %d (flags or RANK / WORLD_SIZE) "
            "say otherwise; under mpirun leave them out", comm_rank(c), comm_world(c), s->rank, s->world);
    s->rank = comm_rank(c);
    s->world = comm_world(c);
    s->local_rank = comm_local_rank(c);
    return c;
}

/* whether a periodic action (every N steps, 0: never, and at the last step) is due after step done */
static int due(int done, int every, int last) { return last || (every > 0 && done % every == 0); }

static int train_main(int argc, char **argv) {
    const char *slash = strrchr(argv[0], '/');
    util_set_progname(slash ? slash + 1 : argv[0]);
    Settings s;
    Option opts[MAX_OPTIONS];
    int n = settings_table(&s, opts);
    char why[1024];
    int rc = options_parse(opts, n, argc, argv, why, sizeof why);
    if (rc == 1) {
        options_help(stdout, usage_text(), opts, n);
        return 0;
    }
    if (rc < 0 || settings_check(&s, opts, n, why, sizeof why)) die("%s", why);
    Comm *comm = join_processes(&s, opts, n);
    Run r;
    run_init(&r, &s, comm);
    setup_mfu(&r, opts, n);
    int start = s.resume[0] ? resume(&r) : 0;
    if (r.zero) /* after resume, whose broadcast needs rank 0's whole moments */
        gpt_shard_optimizer(r.model, r.shard_begin, r.shard_end, (size_t)s.world * r.shard);
    print_settings(&r, opts, n, start);
    print_model(&r);
    print_data(&r, start);
    print_processes(&r);
    double t_start = now_s(), t_train = 0.0;
    for (int step = start; step < s.steps; step++) {
        double t0 = now_s();
        StepResult res = train_step(&r, step);
        double dt = now_s() - t0;
        t_train += dt;
        int done = step + 1, last = done == s.steps;
        report_step(&r, done, &res, dt);
        int ckpt = s.ckpt_dir[0] && due(done, s.ckpt_every, last);
        float *m = NULL, *v = NULL; /* ZeRO-1: every rank's shard of the moments, for rank 0's file */
        if (ckpt && r.zero) {
            m = gather_moments(&r, GPT_ADAM_M);
            v = gather_moments(&r, GPT_ADAM_V);
        }
        if (r.main_rank) {
            if (due(done, s.eval_every, last) && !r.shards) evaluate_flipflop(&r, done);
            if (due(done, s.eval_every, last) && r.has_val) evaluate_shards(&r, done);
            if (s.sample_every && due(done, s.sample_every, last)) sample(&r, done);
            if (ckpt) save_checkpoint(&r, done, m, v);
        }
        free(m);
        free(v);
    }
    say(&r, "done: %d steps in %.1f s (%.1f s of training steps)\n", s.steps - start, now_s() - t_start, t_train);
    log_kv(&r, "event=done steps=%d seconds=%.3f train_seconds=%.3f", s.steps - start, now_s() - t_start, t_train);
    run_free(&r);
    comm_free(comm);
    return 0;
}

#ifndef PATHGPT_TRAIN_NO_MAIN
int main(int argc, char **argv) { return train_main(argc, argv); }
#endif
