/* test_train.c: checks the trainer's pieces (common/options, model/schedule, model/sampler,
 * model/checkpoint) and train.c itself, which it includes (its main() compiled out) to call
 * train_main and its option table in-process.
 *  options:    train.c's table parses its own defaults; unknown flag, bad number, out-of-range
 *              value, bad choice, missing value, repeated flag, positional argument and a bad
 *              environment value are rejected with a message naming them; flag > environment >
 *              default; --help lists every option with its default; cross-flag checks (rank below
 *              world, flags of the other data source, sample length against T).
 *  schedule:   warmup, cosine, linear and wsd values at known points; bad schedules rejected.
 *  sampler:    greedy = argmax; top-k 1 = argmax; top-k 2 draws only the two largest; frequencies
 *              at temperature 1 follow the softmax; padded columns never drawn; greedy generation
 *              through the key cache picks gpt_forward's argmax at every generated position.
 *  checkpoint: round trip (header fields, parameters, m, v bit-exact, re-save byte-identical, no
 *              temp file left); truncated, too short, bad magic, bad version, flipped body byte,
 *              other config, other world, other data source and a bad directory give -1 and a
 *              message naming the problem; a failed load leaves the model unchanged.
 *  mfu:        model_config_flops_per_token at the GPT-2 124M shape (learned, path, path-fox) equals
 *              6 N_mm + 6 L C T worked out by hand; the --log step lines of train_main carry mfu=
 *              with --peak-tflops given and not without it (this CPU build); the MFU equals
 *              flops x tok_per_s / peak from the same line.
 *  resume:     train_main on the flip-flop source and on a shard source written here: the step-4
 *              checkpoint of a straight 4-step run equals, byte for byte, that of a run resumed in
 *              a fresh model from the step-2 checkpoint (parameters, m, v, data position), with
 *              gradient accumulation, clipping, evaluation and sampling on the way.
 * Bars: exact comparisons, except the sampler frequencies: |f - p| / sigma <= 5 (binomial; a
 * correct sampler fails with probability < 1e-6 per check, a wrong temperature or cut by far more). */
#define PATHGPT_TRAIN_NO_MAIN
#include "../train.c"

#include <fcntl.h>
#include <unistd.h>

#include "../data/shard.h"
#include "check.h"

#define Z_BAR 5.0
#define SAMPLER_DRAWS 20000

static char tmp_dir[] = "/tmp/test_train.XXXXXX";

static const char *tmp_path(const char *name) {
    static char buf[8][512];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 512, "%s/%s", tmp_dir, name);
    return p;
}

static int contains(const char *text, const char *part) { return strstr(text, part) != NULL; }

/* one check line for a -1 result whose reason must contain part */
static void check_error(const char *name, int rc, const char *why, const char *part) {
    char detail[64];
    int ok = rc == -1 && contains(why, part);
    snprintf(detail, sizeof detail, "rc %d, message has '%.30s'", rc, part);
    check_true(name, ok, detail);
    if (!ok) printf("    message: %s\n", why);
}

/* ---------------------------------------------------------------------------------------------
 * options */

static int parse_train(Settings *s, Option *opts, int *n, int argc, const char *const *argv, char *why, size_t len) {
    *n = settings_table(s, opts);
    return options_parse(opts, *n, argc, (char **)argv, why, len);
}

static void test_options(void) {
    Settings s;
    Option opts[MAX_OPTIONS];
    int n;
    char why[1024];
    const char *none[] = {"train"};
    int rc = parse_train(&s, opts, &n, 1, none, why, sizeof why);
    check_true("options defaults parse", rc == 0 && s.n_layer == 1 && s.n_head == 2 && s.n_embd == 64 && s.T == 512 &&
                                             s.B == 16 && s.attn == ATTN_PATH && s.warmup == 50,
               "L 1, heads 2, C 64, T 512, B 16, path");
    check_true("options defaults pass settings_check", settings_check(&s, opts, n, why, sizeof why) == 0, why);

    const char *good[] = {"train", "--lr=0.01", "--attn", "rope", "--steps", "7", "--schedule", "wsd"};
    rc = parse_train(&s, opts, &n, 8, good, why, sizeof why);
    check_true("options flags set values", rc == 0 && s.lr == 0.01 && s.attn == ATTN_ROPE && s.steps == 7 &&
                                               s.schedule == SCHEDULE_WSD && options_find(opts, n, "--lr")->source == OPT_FROM_FLAG,
               "--lr=0.01 --attn rope --steps 7 --schedule wsd");

    static const struct { const char *name; const char *argv[3]; int argc; const char *part; } bad[] = {
        {"options unknown flag", {"train", "--lr-max", "1"}, 3, "unknown option '--lr-max'"},
        {"options bad number", {"train", "--lr", "fast"}, 3, "--lr 'fast' is not a finite number"},
        {"options bad integer", {"train", "--steps", "1.5"}, 3, "--steps '1.5' is not an integer"},
        {"options out of range", {"train", "--layers", "0"}, 3, "--layers 0 is out of range"},
        {"options negative lr", {"train", "--lr", "-1e-3"}, 3, "--lr -1e-3 is out of range"},
        {"options bad choice", {"train", "--attn", "alibi"}, 3, "is not one of path|path-fox|fox|rope|nope|learned"},
        {"options missing value", {"train", "--lr"}, 2, "--lr needs a value"},
        {"options repeated flag", {"train", "--seed=1", "--seed=2"}, 3, "--seed is given twice"},
        {"options positional argument", {"train", "data.bin"}, 2, "unexpected argument 'data.bin'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rc = parse_train(&s, opts, &n, bad[i].argc, bad[i].argv, why, sizeof why);
        check_error(bad[i].name, rc, why, bad[i].part);
    }

    setenv("WORLD_SIZE", "x3", 1);
    rc = parse_train(&s, opts, &n, 1, none, why, sizeof why);
    check_error("options bad environment value", rc, why, "environment variable WORLD_SIZE (for --world) 'x3'");
    setenv("WORLD_SIZE", "3", 1);
    setenv("RANK", "2", 1);
    rc = parse_train(&s, opts, &n, 1, none, why, sizeof why);
    check_true("options environment sets rank, world", rc == 0 && s.world == 3 && s.rank == 2 &&
                                                           options_find(opts, n, "--world")->source == OPT_FROM_ENV,
               "RANK=2 WORLD_SIZE=3");
    check_true("options world 3 passes the settings check", settings_check(&s, opts, n, why, sizeof why) == 0,
               "RANK=2 WORLD_SIZE=3 (comm_init checks the rendezvous)");
    const char *flag_wins[] = {"train", "--world", "1", "--rank", "0"};
    rc = parse_train(&s, opts, &n, 5, flag_wins, why, sizeof why);
    check_true("options flag beats environment", rc == 0 && s.world == 1 && s.rank == 0, "--world 1 over WORLD_SIZE=3");
    unsetenv("WORLD_SIZE");
    unsetenv("RANK");

    static const struct { const char *name; const char *argv[3]; int argc; const char *part; } cross[] = {
        {"options shard flag without shards", {"train", "--vocab", "300"}, 3, "--vocab applies to shard data"},
        {"options flip-flop flag with shards", {"train", "--train-data=x*.bin", "--ff-p=0.5"}, 3, "--ff-p applies to the flip-flop task"},
        {"options odd flip-flop length", {"train", "--seq-len", "33"}, 3, "length 33 must be even"},
        {"options rank not below world", {"train", "--rank", "1"}, 3, "--rank 1 is not below --world 1"},
        {"options overlap with ZeRO-1", {"train", "--zero=1", "--overlap=1"}, 3, "--overlap 1 applies without --zero 1"},
    };
    for (size_t i = 0; i < sizeof cross / sizeof cross[0]; i++) {
        rc = parse_train(&s, opts, &n, cross[i].argc, cross[i].argv, why, sizeof why);
        if (rc == 0) rc = settings_check(&s, opts, n, why, sizeof why);
        check_error(cross[i].name, rc, why, cross[i].part);
    }

    const char *short_seq[] = {"train", "--seq-len", "16"};
    rc = parse_train(&s, opts, &n, 3, short_seq, why, sizeof why);
    check_true("options short sequences fit the default sample", rc == 0 && !settings_check(&s, opts, n, why, sizeof why) &&
                                                                   sample_length(&s) == 16, "--seq-len 16: sample of 16");

    char *help = NULL;
    size_t help_len = 0;
    FILE *fp = open_memstream(&help, &help_len);
    n = settings_table(&s, opts);
    options_help(fp, usage_text(), opts, n);
    fclose(fp);
    int listed = 0;
    for (int i = 0; i < n; i++) {
        char line_start[64], dflt[128];
        snprintf(line_start, sizeof line_start, "  %s ", opts[i].name);
        snprintf(dflt, sizeof dflt, "(default: %s", opts[i].def[0] ? opts[i].def : "\"\"");
        const char *at = strstr(help, line_start);
        const char *eol = at ? strchr(at, '\n') : NULL;
        const char *d = at ? strstr(at, dflt) : NULL;
        listed += at && d && d < eol;
    }
    char detail[64];
    snprintf(detail, sizeof detail, "%d of %d options with their defaults", listed, n);
    check_true("options --help lists every option", listed == n, detail);
    free(help);
}

/* ---------------------------------------------------------------------------------------------
 * schedule */

static void check_lr(const char *name, const Schedule *sch, int step, double expect) {
    char full[96];
    snprintf(full, sizeof full, "schedule %s lr(%d)", name, step);
    check_value(full, "abs_err", fabs(schedule_lr(sch, step) - expect), 1e-12 * sch->lr);
}

static void test_schedule(void) {
    Schedule csn = {SCHEDULE_COSINE, 1e-3, 1e-4, 10, 111, 0.0};
    check_lr("warmup", &csn, 0, 1e-4);
    check_lr("warmup", &csn, 4, 5e-4);
    check_lr("warmup end", &csn, 9, 1e-3);
    check_lr("cosine start", &csn, 10, 1e-3);
    check_lr("cosine middle", &csn, 60, 5.5e-4);
    check_lr("cosine quarter", &csn, 35, 1e-4 + 9e-4 * 0.5 * (1.0 + cos(M_PI * 0.25)));
    check_lr("cosine end", &csn, 110, 1e-4);
    Schedule lin = {SCHEDULE_LINEAR, 2e-3, 0.0, 0, 101, 0.0};
    check_lr("linear no warmup", &lin, 0, 2e-3);
    check_lr("linear quarter", &lin, 25, 1.5e-3);
    check_lr("linear end", &lin, 100, 0.0);
    Schedule wsd = {SCHEDULE_WSD, 1e-3, 0.0, 5, 100, 0.2};
    check_lr("wsd stable", &wsd, 5, 1e-3);
    check_lr("wsd last stable", &wsd, 79, 1e-3);
    check_lr("wsd first decay", &wsd, 80, 1e-3 * 19.0 / 20.0);
    check_lr("wsd half decay", &wsd, 89, 5e-4);
    check_lr("wsd end", &wsd, 99, 0.0);
    char why[256];
    Schedule bad = wsd;
    bad.warmup = 90;
    check_error("schedule wsd warmup + decay > steps", schedule_check(&bad, why, sizeof why), why, "exceed the 100 steps");
    bad = csn;
    bad.min_lr = 2e-3;
    check_error("schedule min_lr above lr", schedule_check(&bad, why, sizeof why), why, "min learning rate");
    check_true("schedule good ones pass", !schedule_check(&csn, why, sizeof why) && !schedule_check(&wsd, why, sizeof why) &&
                                              !schedule_check(&lin, why, sizeof why), "cosine, linear, wsd");
}

/* ---------------------------------------------------------------------------------------------
 * sampler */

static ModelConfig tiny_config(AttnType attn, int vocab, int T) { return model_config_make(attn, 1, 2, 16, vocab, T); }

static void test_sampler(void) {
    enum { V = 6, VP = 8 };
    float logits[VP] = {0.5f, 2.0f, -1.0f, 1.5f, 0.0f, 1.9f, 50.0f, 50.0f}; /* the padded tail must never win */
    float scratch[V];
    Rng rng;
    rng_init(&rng, 7);
    SamplerConfig greedy = {0.0, 0}, top1 = {1.0, 1}, top2 = {1.0, 2}, all = {1.0, 0};
    check_true("sampler greedy", sampler_pick(logits, V, &greedy, &rng, scratch) == 1, "argmax 1");
    int top1_ok = 1, top2_ok = 1;
    for (int i = 0; i < 200; i++) {
        top1_ok &= sampler_pick(logits, V, &top1, &rng, scratch) == 1;
        int k = sampler_pick(logits, V, &top2, &rng, scratch);
        top2_ok &= k == 1 || k == 5;
    }
    check_true("sampler top-k 1", top1_ok, "always the argmax");
    check_true("sampler top-k 2", top2_ok, "only ids 1 and 5");
    int count[V] = {0};
    for (int i = 0; i < SAMPLER_DRAWS; i++) count[sampler_pick(logits, V, &all, &rng, scratch)]++;
    double z = 0.0, sum = 0.0;
    for (int i = 0; i < V; i++) sum += exp(logits[i]);
    for (int i = 0; i < V; i++) {
        double p = exp(logits[i]) / sum, f = (double)count[i] / SAMPLER_DRAWS;
        double dev = fabs(f - p) / sqrt(p * (1 - p) / SAMPLER_DRAWS);
        if (dev > z) z = dev;
    }
    check_value("sampler frequencies at temperature 1", "max_z", z, Z_BAR);

    /* greedy generation through the key cache equals gpt_forward's argmax at every generated token */
    enum { T = 24, N = 2, PROMPT = 5 };
    ModelConfig cfg = tiny_config(ATTN_PATH, 11, T);
    Gpt *g = gpt_create(&cfg, N, T, 3);
    int tokens[N * T], targets[N * T];
    unsigned char fixed[N * T];
    for (int i = 0; i < N * T; i++) {
        tokens[i] = (i * 7 + 3) % 11;
        fixed[i] = i % T < PROMPT;
    }
    sampler_generate(g, &greedy, &rng, N, T, tokens, fixed);
    for (int i = 0; i < N * T; i++) targets[i] = (i % T) + 1 < T && !fixed[i + 1] ? tokens[i + 1] : -1;
    GptLoss l = gpt_forward(g, tokens, targets, N, T);
    char detail[64];
    snprintf(detail, sizeof detail, "%d of %d generated tokens", l.n_correct, l.n_valid);
    check_true("sampler greedy generation = forward argmax", l.n_valid == N * (T - PROMPT) && l.n_correct == l.n_valid, detail);
    gpt_free(g);
}

/* ---------------------------------------------------------------------------------------------
 * checkpoint */

static float *state_of(Gpt *g, int which) {
    float *x = mallocCheck(sizeof(float) * gpt_num_params(g));
    gpt_copy_out(g, which, x);
    return x;
}

/* 1 if parameters, m and v of a and b are bitwise equal */
static int same_state(Gpt *a, Gpt *b) {
    size_t n = gpt_num_params(a);
    int same = n == gpt_num_params(b);
    for (int which = GPT_PARAMS; which <= GPT_ADAM_V && same; which++) {
        float *x = state_of(a, which), *y = state_of(b, which);
        same = memcmp(x, y, sizeof(float) * n) == 0;
        free(x);
        free(y);
    }
    return same;
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *fp = fopenCheck(path, "rb");
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = mallocCheck(*n);
    freadCheck(b, 1, *n, fp);
    fcloseCheck(fp);
    return b;
}

static void write_all(const char *path, const void *b, size_t n) {
    FILE *fp = fopenCheck(path, "wb");
    fwriteCheck(b, 1, n, fp);
    fcloseCheck(fp);
}

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    unsigned char *x = read_all(a, &na), *y = read_all(b, &nb);
    int same = na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* two AdamW steps on a few flip-flop rows, so m and v are not zero */
static void train_a_little(Gpt *g, int T) {
    int in[2 * 64], tg[2 * 64];
    Rng r;
    rng_init(&r, 5);
    AdamWConfig opt = {0.9f, 0.999f, 1e-8f, 0.1f};
    for (int t = 1; t <= 2; t++) {
        flipflop_batch(&r, 0.5, 2, T, in, tg);
        GptLoss l = gpt_forward(g, in, tg, 2, T);
        gpt_backward(g, 1.0f / (float)l.n_valid);
        gpt_update(g, &opt, 1e-2f, 1.0f, t, 0, gpt_num_params(g));
        gpt_zero_grad(g);
    }
}

static void test_checkpoint(void) {
    enum { T = 32 };
    ModelConfig cfg = tiny_config(ATTN_PATH_FOX, FLIPFLOP_VOCAB, T);
    Gpt *g = gpt_create(&cfg, 2, T, 11);
    train_a_little(g, T);
    CheckpointHeader h;
    memset(&h, 0, sizeof h);
    h = (CheckpointHeader){cfg, 2, T, 3, 1, 42, CHECKPOINT_DATA_FLIPFLOP, 0x123456789abcdefULL, {0}, 0};
    h.loader.epoch = 7;
    const char *path = tmp_path("a.ckpt"), *again = tmp_path("b.ckpt");
    char why[1024];
    int rc = checkpoint_save(path, g, &h, NULL, NULL, why, sizeof why);
    check_true("checkpoint save", rc == 0 && access(tmp_path("a.ckpt.tmp"), F_OK) != 0, rc ? why : "no temp file left");

    CheckpointHeader got;
    rc = checkpoint_read_header(path, &got, why, sizeof why);
    check_true("checkpoint header round trip",
               rc == 0 && memcmp(&got.cfg, &cfg, sizeof cfg) == 0 && got.B == 2 && got.T == T && got.grad_accum == 3 &&
                   got.world == 1 && got.step == 42 && got.data == CHECKPOINT_DATA_FLIPFLOP &&
                   got.flipflop_rng == h.flipflop_rng && got.loader.epoch == 7 && got.n_params == gpt_num_params(g),
               "config, shape, step, data state");
    Gpt *fresh = gpt_create(&cfg, 2, T, 99);
    rc = checkpoint_load(path, fresh, &h, &got, why, sizeof why);
    check_true("checkpoint load: parameters, m, v bit-exact", rc == 0 && same_state(g, fresh), rc ? why : "3 x n_params");
    rc = checkpoint_save(again, fresh, &h, NULL, NULL, why, sizeof why);
    check_true("checkpoint re-save byte-identical", rc == 0 && same_file(path, again), "file bytes");

    size_t n;
    unsigned char *bytes = read_all(path, &n);
    const char *bad = tmp_path("bad.ckpt");
    Gpt *other = gpt_create(&cfg, 2, T, 5);
    float *before = state_of(other, GPT_PARAMS);
    write_all(bad, bytes, n - 4);
    check_error("checkpoint truncated", checkpoint_read_header(bad, &got, why, sizeof why), why, "is truncated");
    write_all(bad, bytes, 100);
    check_error("checkpoint shorter than header", checkpoint_read_header(bad, &got, why, sizeof why), why, "shorter than its 1024-byte header");
    bytes[0] ^= 0xff;
    write_all(bad, bytes, n);
    check_error("checkpoint bad magic", checkpoint_read_header(bad, &got, why, sizeof why), why, "is not a pathgpt checkpoint");
    bytes[0] ^= 0xff;
    bytes[8] = 9;
    write_all(bad, bytes, n);
    check_error("checkpoint bad version", checkpoint_read_header(bad, &got, why, sizeof why), why, "format version 9");
    bytes[8] = CHECKPOINT_VERSION;
    bytes[n - 5] ^= 0x10;
    write_all(bad, bytes, n);
    check_error("checkpoint flipped body byte", checkpoint_load(bad, other, &h, &got, why, sizeof why), why, "checksum");
    float *after = state_of(other, GPT_PARAMS);
    check_true("checkpoint failed load leaves the model", memcmp(before, after, sizeof(float) * gpt_num_params(other)) == 0,
               "parameters unchanged");
    free(bytes);
    free(before);
    free(after);

    CheckpointHeader run = h;
    run.cfg.n_layer = 4;
    check_error("checkpoint other n_layer", checkpoint_compare(&h, &run, why, sizeof why), why,
                "checkpoint has n_layer 1, this run has 4");
    run = h;
    run.cfg.attn = ATTN_PATH;
    check_error("checkpoint other attention", checkpoint_compare(&h, &run, why, sizeof why), why,
                "checkpoint has attention path-fox, this run has path");
    run = h;
    run.grad_accum = 1;
    check_error("checkpoint other grad_accum", checkpoint_compare(&h, &run, why, sizeof why), why,
                "checkpoint has grad_accum 3, this run has 1");
    run = h;
    run.data = CHECKPOINT_DATA_SHARDS;
    check_error("checkpoint other data source", checkpoint_compare(&h, &run, why, sizeof why), why,
                "checkpoint has data source flip-flop, this run has shards");
    run = h;
    run.world = 2;
    check_error("checkpoint other world", checkpoint_compare(&h, &run, why, sizeof why), why,
                "written by a run of world 1 (processes), this run has world 2");
    ModelConfig cfg2 = cfg;
    cfg2.n_embd = 32;
    Gpt *wide = gpt_create(&cfg2, 2, T, 1);
    run = h;
    run.cfg = cfg2;
    check_error("checkpoint load into another config", checkpoint_load(path, wide, &run, &got, why, sizeof why), why,
                "checkpoint has n_embd 16, this run has 32");
    check_error("checkpoint missing directory", checkpoint_save(tmp_path("no/such/dir.ckpt"), g, &h, NULL, NULL, why, sizeof why), why,
                "cannot create checkpoint");
    unlink(path);
    unlink(again);
    unlink(bad);
    gpt_free(g);
    gpt_free(fresh);
    gpt_free(other);
    gpt_free(wide);
}

/* ---------------------------------------------------------------------------------------------
 * bit-exact resume through train_main */

/* train_main(argv) with its stdout discarded */
static void run_quietly(const char **args, int argc) {
    fflush(stdout);
    int saved = dup(STDOUT_FILENO), null = open("/dev/null", O_WRONLY);
    dup2(null, STDOUT_FILENO);
    train_main(argc, (char **)args);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(null);
    close(saved);
}

/* base flags + extra flags (NULL-terminated lists) */
static void run_with(const char *const *base, const char *const *extra) {
    const char *args[64];
    int argc = 0;
    args[argc++] = "train";
    for (int i = 0; base[i]; i++) args[argc++] = base[i];
    for (int i = 0; extra[i]; i++) args[argc++] = extra[i];
    run_quietly(args, argc);
}

static void resume_case(const char *name, const char *const *base) {
    char dir_a[512], dir_b[512], dir_c[512], mid[600], end_a[600], end_b[600], end_c[600];
    snprintf(dir_a, sizeof dir_a, "%s", tmp_path("straight"));
    snprintf(dir_b, sizeof dir_b, "%s", tmp_path("with_mid"));
    snprintf(dir_c, sizeof dir_c, "%s", tmp_path("resumed"));
    const char *a[] = {"--ckpt-dir", dir_a, NULL};
    const char *b[] = {"--ckpt-dir", dir_b, "--ckpt-every", "2", NULL};
    snprintf(mid, sizeof mid, "%s/ckpt_00000002.bin", dir_b);
    const char *c[] = {"--ckpt-dir", dir_c, "--resume", mid, NULL};
    run_with(base, a);
    run_with(base, b);
    run_with(base, c);
    snprintf(end_a, sizeof end_a, "%s/ckpt_00000004.bin", dir_a);
    snprintf(end_b, sizeof end_b, "%s/ckpt_00000004.bin", dir_b);
    snprintf(end_c, sizeof end_c, "%s/ckpt_00000004.bin", dir_c);
    char full[96];
    snprintf(full, sizeof full, "resume %s: mid-run save changes nothing", name);
    check_true(full, same_file(end_a, end_b), "step 4 files byte-identical");
    snprintf(full, sizeof full, "resume %s: 2 + load + 2 = 4 steps", name);
    check_true(full, same_file(end_a, end_c), "step 4 files byte-identical");
    CheckpointHeader h;
    char why[1024];
    snprintf(full, sizeof full, "resume %s: checkpoint at step 4", name);
    check_true(full, checkpoint_read_header(end_c, &h, why, sizeof why) == 0 && h.step == 4, "header step");
    const char *files[] = {end_a, end_b, mid, end_c};
    for (int i = 0; i < 4; i++) unlink(files[i]);
    rmdir(dir_a);
    rmdir(dir_b);
    rmdir(dir_c);
}

static void test_resume(void) {
    static const char *const flipflop[] = {
        "--seq-len", "16", "--batch", "2", "--width", "16", "--grad-accum", "2", "--steps", "4", "--warmup", "1",
        "--lr", "1e-2", "--clip", "0.5", "--eval-every", "1", "--ff-eval-id", "3", "--ff-eval-sparse", "2",
        "--ff-eval-dense", "2", "--sample-every", "1", "--sample-len", "8", NULL};
    resume_case("flip-flop", flipflop);

    enum { N_TOKENS = 3000, VOCAB = 40 };
    uint16_t tokens[N_TOKENS];
    Rng r;
    rng_init(&r, 21);
    for (int i = 0; i < N_TOKENS; i++) tokens[i] = (uint16_t)rng_below(&r, VOCAB);
    const char *shard = tmp_path("tokens_000.bin");
    if (shard_write(shard, tokens, N_TOKENS) != 0) die("test_train: cannot write '%s'", shard);
    char pattern[512];
    snprintf(pattern, sizeof pattern, "%s", tmp_path("tokens_*.bin"));
    const char *const shards[] = {
        "--train-data", pattern, "--val-data", pattern, "--vocab", "40", "--attn", "path-fox", "--seq-len", "16",
        "--batch", "2", "--width", "16", "--grad-accum", "2", "--steps", "4", "--warmup", "1", "--lr", "1e-2",
        "--eval-every", "2", "--val-batches", "2", "--sample-every", "2", "--sample-prompt", "3", "--sample-len", "5",
        "--top-k", "5", NULL};
    resume_case("shards (shuffled)", shards);
    unlink(shard);
}

/* ---------------------------------------------------------------------------------------------
 * MFU: the FLOP count and the step line */

static void test_mfu_flops(void) {
    /* GPT-2 124M: L 12, C 768, NH 12, Vp 50304, T 1024; PaTH R 32, K 3 */
    const double L = 12, C = 768, T = 1024;
    const double mm = L * 12 * C * C + 50304 * C, attn = 6 * L * C * T;
    const double path = L * (2 * 32 * C + 3 * C + 12 * C), gate = L * 12 * C;
    const struct { AttnType a; double expect; } cases[] = {
        {ATTN_LEARNED, 6 * mm + attn}, {ATTN_PATH, 6 * (mm + path) + attn}, {ATTN_PATH_FOX, 6 * (mm + path + gate) + attn}};
    for (int i = 0; i < 3; i++) {
        ModelConfig c = model_config_make(cases[i].a, 12, 12, 768, 50257, 1024);
        char name[96];
        snprintf(name, sizeof name, "mfu flops per token gpt2-124M %s", attn_type_name(cases[i].a));
        check_value(name, "abs_err", fabs(model_config_flops_per_token(&c, 1024) - cases[i].expect), 0.0);
    }
}

/* the last "event=step" line of a --log file, or "" */
static void last_step_line(const char *path, char *out, size_t len) {
    char *text = check_read_text(path), *line = text, *next;
    out[0] = '\0';
    for (; *line; line = next) {
        next = strchr(line, '\n');
        next = next ? next + 1 : line + strlen(line);
        if (strncmp(line, "event=step ", 11) == 0) snprintf(out, len, "%.*s", (int)(next - line), line);
    }
    free(text);
}

static void test_mfu_line(void) {
    const char *log_with = tmp_path("mfu_with.log"), *log_without = tmp_path("mfu_without.log");
    const char *const base[] = {"--seq-len", "16", "--batch", "2", "--width", "16", "--steps", "2", "--eval-every", "0",
                                "--sample-every", "0", "--ff-eval-id", "2", "--ff-eval-sparse", "2", "--ff-eval-dense", "2", NULL};
    const char *const with[] = {"--log", log_with, "--peak-tflops", "1e-6", NULL};
    const char *const without[] = {"--log", log_without, NULL};
    run_with(base, with);
    run_with(base, without);
    char line[1024];
    last_step_line(log_without, line, sizeof line);
    check_true("mfu absent from train_cpu's step line without --peak-tflops", line[0] && !contains(line, "mfu="),
               "event=step line without mfu=");
    last_step_line(log_with, line, sizeof line);
    const char *tps = strstr(line, " tok_per_s="), *mfu = strstr(line, " mfu=");
    check_true("mfu in the step line with --peak-tflops", tps && mfu, "event=step line with tok_per_s= and mfu=");
    if (tps && mfu) {
        ModelConfig c = model_config_make(ATTN_PATH, 1, 2, 16, FLIPFLOP_VOCAB, 16);
        double expect = model_config_flops_per_token(&c, 16) * strtod(tps + 11, NULL) / 1e6; /* peak 1e-6 TFLOP/s */
        check_value("mfu = flops x tok_per_s / peak", "rel_err", fabs(strtod(mfu + 5, NULL) / expect - 1), 1e-3);
    }
    unlink(log_with);
    unlink(log_without);
}

int main(void) {
    if (!mkdtemp(tmp_dir)) die("test_train: cannot create a temporary directory: %s", strerror(errno));
    test_options();
    test_schedule();
    test_sampler();
    test_checkpoint();
    test_mfu_flops();
    test_mfu_line();
    test_resume();
    rmdir(tmp_dir);
    return check_finish();
}
