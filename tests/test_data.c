/* test_data.c: checks the data layer (data/shard, data/dataloader, data/tokenizer_byte, data/flipflop).
 *  shard:      write + check + read round trip, bit-exact; bad files (empty, wrong magic, wrong
 *              version, truncated, zero tokens, missing) give 0 and a reason naming the problem.
 *  dataloader: batches equal the shards' token windows (sorted shard order, epoch wrap); shuffled
 *              epochs visit every window once, in a new order; ranks of world 3 read disjoint
 *              slices whose union is world 1's batch with 3x the rows; state save/restore resumes
 *              bit-exactly; mismatched states, bad config, no match, short shard and a token
 *              >= vocab are errors with a reason.
 *  tokenizer_byte: all 256 bytes round-trip; ids outside 0..255 decode to '?'.
 *  flipflop:   every sequence is valid FFLM (alternation, first w, last r, read = last written bit);
 *              targets are exactly the read bits; frequencies match p; deterministic from the seed.
 * Bars: exact comparisons except the frequencies, which are binomial: |f - p| / sigma <= 5 (a
 * 5-sigma deviation has probability < 1e-6 per check for a correct generator, while a wrong p(w)
 * or a missing forced last r shifts the statistic by far more than 5 sigma). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/rng.h"
#include "../common/util.h"
#include "../data/dataloader.h"
#include "../data/flipflop.h"
#include "../data/shard.h"
#include "../data/tokenizer_byte.h"
#include "check.h"

#define Z_BAR 5.0          /* binomial deviations, in standard deviations */
#define FF_SEQS 2000       /* flip-flop sequences per split for the frequency checks */
#define MAX_FILES 32

/* ---------------------------------------------------------------------------------------------
 * temporary files */

static char tmp_dir[] = "/tmp/test_data.XXXXXX";
static char *made[MAX_FILES];
static int n_made;

/* tmp_dir/name, remembered for removal at the end */
static const char *tmp_path(const char *name) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", tmp_dir, name);
    for (int k = 0; k < n_made; k++)
        if (strcmp(made[k], buf) == 0) return made[k];
    if (n_made == MAX_FILES) die("test_data: more than %d temporary files", MAX_FILES);
    made[n_made] = strcpy(mallocCheck(strlen(buf) + 1), buf);
    return made[n_made++];
}

static void remove_tmp(void) {
    for (int k = 0; k < n_made; k++) {
        unlink(made[k]);
        free(made[k]);
    }
    rmdir(tmp_dir);
}

static void write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *fp = fopenCheck(path, "wb");
    fwriteCheck(bytes, 1, n, fp);
    fcloseCheck(fp);
}

static void write_shard_or_die(const char *path, const uint16_t *tokens, size_t n) {
    if (shard_write(path, tokens, n) != 0) die("test_data: cannot write shard '%s'", path);
}

/* ---------------------------------------------------------------------------------------------
 * shard */

static void test_shard_roundtrip(void) {
    enum { N = 5000 };
    uint16_t tokens[N], back[N];
    Rng r;
    rng_init(&r, 1);
    for (int i = 0; i < N; i++) tokens[i] = (uint16_t)rng_below(&r, 65536);
    tokens[0] = 0;
    tokens[N - 1] = 65535;
    const char *path = tmp_path("round.bin");
    write_shard_or_die(path, tokens, N);
    char why[512];
    size_t n = shard_check(path, why, sizeof why);
    check_true("shard write/check token count", n == N && why[0] == '\0', "5000 tokens, no reason");
    shard_read(path, 0, N, back);
    check_true("shard write/read all tokens", memcmp(tokens, back, sizeof tokens) == 0, "bit-exact");
    shard_read(path, 1234, 777, back);
    check_true("shard read at offset", memcmp(tokens + 1234, back, 777 * sizeof(uint16_t)) == 0, "tokens 1234..2010 bit-exact");
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    check_true("shard write leaves no temp file", access(tmp, F_OK) != 0, "no <path>.tmp after rename");
}

typedef struct {
    const char *name, *file, *expect; /* test name, file name, text the reason must contain */
    int32_t magic, version, count;    /* header */
    size_t n_header_bytes;            /* header bytes written: SHARD_HEADER_BYTES, or fewer */
    size_t n_body;                    /* tokens written after a whole header */
} BadShard;

static void test_shard_bad(void) {
    const BadShard cases[] = {
        {"shard bad: empty file", "empty.bin", "shorter than", SHARD_MAGIC, SHARD_VERSION, 10, 0, 0},
        {"shard bad: short header", "short.bin", "shorter than", SHARD_MAGIC, SHARD_VERSION, 10, 100, 0},
        {"shard bad: wrong magic", "magic.bin", "magic 1234", 1234, SHARD_VERSION, 10, SHARD_HEADER_BYTES, 10},
        {"shard bad: wrong version", "version.bin", "version 2", SHARD_MAGIC, 2, 10, SHARD_HEADER_BYTES, 10},
        {"shard bad: truncated body", "trunc.bin", "truncated", SHARD_MAGIC, SHARD_VERSION, 100, SHARD_HEADER_BYTES, 50},
        {"shard bad: extra bytes", "long.bin", "1044 bytes", SHARD_MAGIC, SHARD_VERSION, 5, SHARD_HEADER_BYTES, 10},
        {"shard bad: zero tokens", "zero.bin", "holds 0 tokens", SHARD_MAGIC, SHARD_VERSION, 0, SHARD_HEADER_BYTES, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const BadShard *b = &cases[c];
        unsigned char *bytes = callocCheck(SHARD_HEADER_BYTES + 2 * b->n_body, 1); /* header, zero tokens */
        int32_t header[3] = {b->magic, b->version, b->count};
        memcpy(bytes, header, sizeof header);
        const char *path = tmp_path(b->file);
        write_bytes(path, bytes, b->n_header_bytes + 2 * b->n_body);
        free(bytes);
        char why[512], detail[64];
        size_t n = shard_check(path, why, sizeof why);
        snprintf(detail, sizeof detail, "0, reason says \"%s\"", b->expect);
        check_true(b->name, n == 0 && strstr(why, b->expect) && strstr(why, path), detail);
    }
    char why[512];
    size_t n = shard_check(tmp_path("missing.bin"), why, sizeof why);
    check_true("shard bad: missing file", n == 0 && strstr(why, "cannot open"), "0, reason says \"cannot open\"");
}

/* ---------------------------------------------------------------------------------------------
 * dataloader over a corpus of three shards whose tokens are their global positions (all distinct) */

#define VOCAB 4096
#define N_CORPUS 3
static const size_t corpus_len[N_CORPUS] = {1000, 777, 1500}; /* c_00, c_01, c_02 */
static uint16_t *corpus[N_CORPUS];

static void make_corpus(void) {
    char name[32];
    int next = 0;
    for (int s = N_CORPUS - 1; s >= 0; s--) { /* written out of name order: the loader must sort */
        corpus[s] = mallocCheck(sizeof(uint16_t) * corpus_len[s]);
        for (size_t i = 0; i < corpus_len[s]; i++) corpus[s][i] = (uint16_t)next++;
        snprintf(name, sizeof name, "c_%02d.bin", s);
        write_shard_or_die(tmp_path(name), corpus[s], corpus_len[s]);
    }
}

static DataLoaderConfig corpus_config(int B, int T, int rank, int world, int shuffle, uint64_t seed) {
    static char pattern[256];
    snprintf(pattern, sizeof pattern, "%s/c_*.bin", tmp_dir);
    return (DataLoaderConfig){pattern, B, T, rank, world, VOCAB, shuffle, seed};
}

static void init_or_fail(DataLoader *dl, DataLoaderConfig cfg) {
    char why[1024];
    if (dataloader_init(dl, &cfg, why, sizeof why)) die("test_data: %s", why);
}

static void next_or_fail(DataLoader *dl, int *x, int *y) {
    char why[1024];
    if (dataloader_next(dl, x, y, why, sizeof why)) die("test_data: %s", why);
}

/* 1 if x, y are the window of shard s starting at token `first` (rows laid end to end) */
static int is_window(int s, size_t first, const int *x, const int *y, size_t BT) {
    if (first + BT + 1 > corpus_len[s]) return 0;
    for (size_t i = 0; i < BT; i++)
        if (x[i] != corpus[s][first + i] || y[i] != corpus[s][first + i + 1]) return 0;
    return 1;
}

/* shard and offset of a global token id */
static void locate(int id, int *s, size_t *offset) {
    for (*s = 0; *s < N_CORPUS - 1 && !(id >= corpus[*s][0] && id < corpus[*s][0] + (int)corpus_len[*s]); (*s)++) {}
    *offset = (size_t)(id - corpus[*s][0]);
}

static void test_windows_in_order(void) {
    enum { B = 2, T = 8, BT = B * T };
    DataLoader dl;
    init_or_fail(&dl, corpus_config(B, T, 0, 1, 0, 0));
    int64_t per_shard[N_CORPUS], expect_epoch = 0;
    for (int s = 0; s < N_CORPUS; s++) expect_epoch += per_shard[s] = (int64_t)(corpus_len[s] - 1) / BT;
    check_true("dataloader batches per epoch", dl.batches_per_epoch == expect_epoch && dl.n_shards == N_CORPUS,
               "sum of floor((n - 1) / (B*T))");
    int x[BT], y[BT], bad = 0, n_steps = 0;
    for (int epoch = 0; epoch < 2; epoch++)
        for (int s = 0; s < N_CORPUS; s++)
            for (int64_t k = 0; k < per_shard[s]; k++, n_steps++) {
                next_or_fail(&dl, x, y);
                bad += !is_window(s, (size_t)k * BT, x, y, BT);
            }
    char detail[64];
    snprintf(detail, sizeof detail, "%d batches, 2 epochs, %d differ", n_steps, bad);
    check_true("dataloader windows in shard order", bad == 0, detail);
    DataLoaderState st;
    dataloader_state(&dl, &st);
    check_true("dataloader epoch count", st.epoch == 2 && st.shard_pos == 0 && st.window_pos == 0, "epoch 2 after 2 passes");
    dataloader_reset(&dl);
    next_or_fail(&dl, x, y);
    check_true("dataloader reset", is_window(0, 0, x, y, BT), "first window of c_00 again");
    dataloader_free(&dl);
}

/* the first token of every batch of one epoch of a loader with shuffle on and this seed */
static void shuffled_epoch(uint64_t seed, int B, int T, int *first, int64_t n) {
    DataLoader dl;
    init_or_fail(&dl, corpus_config(B, T, 0, 1, 1, seed));
    int *x = mallocCheck(sizeof(int) * B * T), *y = mallocCheck(sizeof(int) * B * T);
    for (int64_t k = 0; k < n; k++) {
        next_or_fail(&dl, x, y);
        first[k] = x[0];
    }
    free(x);
    free(y);
    dataloader_free(&dl);
}

/* shuffle over EPOCHS epochs: every batch is a window and every window comes once per epoch; epoch 0
 * is not the file order; both the shard order and some shard's window order change between epochs */
static void test_shuffle(void) {
    enum { B = 3, T = 5, BT = B * T, EPOCHS = 4 };
    DataLoader dl;
    init_or_fail(&dl, corpus_config(B, T, 0, 1, 1, 1234));
    int64_t n = dl.batches_per_epoch, windows_before[N_CORPUS] = {0};
    for (int s = 1; s < N_CORPUS; s++) windows_before[s] = windows_before[s - 1] + (int64_t)(corpus_len[s - 1] - 1) / BT;
    int x[BT], y[BT], bad = 0, in_file_order = 1, shard_order_changes = 0, window_order_changes = 0;
    int *seen = callocCheck(VOCAB, sizeof(int)), *first_e0 = mallocCheck(sizeof(int) * (size_t)n);
    int *shard_e0 = mallocCheck(sizeof(int) * (size_t)n), *window_e0 = mallocCheck(sizeof(int) * (size_t)n);
    for (int epoch = 0; epoch < EPOCHS; epoch++) {
        int64_t nth_in_shard[N_CORPUS] = {0};
        memset(seen, 0, VOCAB * sizeof(int));
        for (int64_t k = 0; k < n; k++) {
            next_or_fail(&dl, x, y);
            int s;
            size_t off;
            locate(x[0], &s, &off);
            bad += off % BT != 0 || !is_window(s, off, x, y, BT) || seen[x[0]]++;
            int64_t slot = windows_before[s] + nth_in_shard[s]++; /* the j-th window read from shard s */
            if (epoch == 0) {
                first_e0[k] = x[0];
                shard_e0[k] = s;
                window_e0[slot] = (int)(off / BT);
                in_file_order &= windows_before[s] + (int64_t)(off / BT) == k;
            }
            shard_order_changes += shard_e0[k] != s;
            window_order_changes += window_e0[slot] != (int)(off / BT);
        }
    }
    check_true("dataloader shuffle: windows once per epoch", bad == 0, "4 epochs, each window once");
    check_true("dataloader shuffle: not file order", !in_file_order, "epoch 0 permuted");
    check_true("dataloader shuffle: shard order per epoch", shard_order_changes > 0, "changes between epochs");
    check_true("dataloader shuffle: window order per epoch", window_order_changes > 0, "changes between epochs");
    int *first = mallocCheck(sizeof(int) * (size_t)n);
    shuffled_epoch(1234, B, T, first, n);
    int same_seed = memcmp(first, first_e0, sizeof(int) * (size_t)n) == 0;
    shuffled_epoch(1235, B, T, first, n);
    int other_seed = memcmp(first, first_e0, sizeof(int) * (size_t)n) != 0;
    check_true("dataloader shuffle: seed determines order", same_seed && other_seed, "1234 repeats, 1235 differs");
    dataloader_free(&dl);
    free(seen);
    free(first_e0);
    free(shard_e0);
    free(window_e0);
    free(first);
}

/* ranks 0..W-1 with B rows each against world 1 with W*B rows, for 2.5 epochs */
static void test_ranks(int shuffle) {
    enum { W = 3, B = 2, T = 7, BT = B * T };
    DataLoader one, rank[W];
    init_or_fail(&one, corpus_config(W * B, T, 0, 1, shuffle, 99));
    for (int r = 0; r < W; r++) init_or_fail(&rank[r], corpus_config(B, T, r, W, shuffle, 99));
    int64_t n_steps = one.batches_per_epoch * 5 / 2;
    int X[W * BT], Y[W * BT], x[BT], y[BT], differ = 0, reread = 0, state_differs = 0;
    int *seen = callocCheck(VOCAB, sizeof(int));
    for (int64_t k = 0; k < n_steps; k++) {
        if (k % one.batches_per_epoch == 0) memset(seen, 0, VOCAB * sizeof(int));
        next_or_fail(&one, X, Y);
        DataLoaderState st0, st;
        for (int r = 0; r < W; r++) {
            next_or_fail(&rank[r], x, y);
            differ += memcmp(x, X + r * BT, sizeof x) != 0 || memcmp(y, Y + r * BT, sizeof y) != 0;
            for (int i = 0; i < BT; i++) reread += seen[x[i]]++ != 0;
            dataloader_state(&rank[r], &st);
            if (r == 0) st0 = st;
            state_differs += memcmp(&st, &st0, sizeof st) != 0;
        }
    }
    char name[64], detail[64];
    snprintf(name, sizeof name, "dataloader ranks = world 1 (shuffle %d)", shuffle);
    snprintf(detail, sizeof detail, "%lld steps x %d ranks, %d differ", (long long)n_steps, W, differ);
    check_true(name, differ == 0 && one.batches_per_epoch == rank[0].batches_per_epoch, detail);
    snprintf(name, sizeof name, "dataloader ranks disjoint (shuffle %d)", shuffle);
    check_true(name, reread == 0, "no position read twice per epoch");
    snprintf(name, sizeof name, "dataloader rank states equal (shuffle %d)", shuffle);
    check_true(name, state_differs == 0, "every rank saves the same state");
    for (int r = 0; r < W; r++) dataloader_free(&rank[r]);
    dataloader_free(&one);
    free(seen);
}

static void test_resume(void) {
    enum { B = 2, T = 6, BT = B * T, WARM = 17, W = 2 };
    DataLoader dl, fresh;
    init_or_fail(&dl, corpus_config(B, T, 1, W, 1, 7));
    int x[BT], y[BT], bad = 0;
    for (int k = 0; k < WARM; k++) next_or_fail(&dl, x, y);
    DataLoaderState st;
    dataloader_state(&dl, &st);
    int64_t n = dl.batches_per_epoch + 5; /* crosses an epoch boundary */
    int *ref = mallocCheck(sizeof(int) * 2 * BT * (size_t)n);
    for (int64_t k = 0; k < n; k++) next_or_fail(&dl, ref + 2 * BT * k, ref + 2 * BT * k + BT);
    init_or_fail(&fresh, corpus_config(B, T, 1, W, 1, 7));
    char why[1024];
    int rc = dataloader_restore(&fresh, &st, why, sizeof why);
    for (int64_t k = 0; k < n && rc == 0; k++) {
        next_or_fail(&fresh, x, y);
        bad += memcmp(x, ref + 2 * BT * k, sizeof x) != 0 || memcmp(y, ref + 2 * BT * k + BT, sizeof y) != 0;
    }
    check_true("dataloader resume in a fresh loader", rc == 0 && bad == 0, "bit-exact batches after restore");
    rc = dataloader_restore(&dl, &st, why, sizeof why);
    next_or_fail(&dl, x, y);
    check_true("dataloader resume in the same loader", rc == 0 && memcmp(x, ref, sizeof x) == 0, "rewinds to the saved batch");
    dataloader_free(&fresh);

    init_or_fail(&fresh, corpus_config(B, T, 0, 1, 1, 7));
    rc = dataloader_restore(&fresh, &st, why, sizeof why);
    check_true("dataloader restore: other world", rc == -1 && strstr(why, "world 2"), "-1, reason names world 2");
    dataloader_free(&fresh);
    init_or_fail(&fresh, corpus_config(B, T, 1, W, 1, 8));
    rc = dataloader_restore(&fresh, &st, why, sizeof why);
    check_true("dataloader restore: other seed", rc == -1 && strstr(why, "seed 7"), "-1, reason names seed 7");
    DataLoaderState bad_st = st;
    bad_st.seed = 8;
    bad_st.window_pos = 1000000;
    rc = dataloader_restore(&fresh, &bad_st, why, sizeof why);
    next_or_fail(&fresh, x, y);
    DataLoader start;
    int x0[BT], y0[BT];
    init_or_fail(&start, corpus_config(B, T, 1, W, 1, 8));
    next_or_fail(&start, x0, y0);
    check_true("dataloader restore: window out of range", rc == -1 && strstr(why, "past") && memcmp(x, x0, sizeof x) == 0,
               "-1, position unchanged");
    dataloader_free(&start);
    dataloader_free(&fresh);
    dataloader_free(&dl);
    free(ref);
}

static void expect_init_error(const char *name, DataLoaderConfig cfg, const char *expect) {
    DataLoader dl;
    char why[1024], detail[80];
    int rc = dataloader_init(&dl, &cfg, why, sizeof why);
    snprintf(detail, sizeof detail, "-1, reason says \"%s\"", expect);
    check_true(name, rc == -1 && strstr(why, expect) != NULL, detail);
    if (rc == 0) dataloader_free(&dl);
}

static void test_loader_errors(void) {
    char pattern[256];
    DataLoaderConfig cfg = corpus_config(2, 8, 0, 1, 0, 0);
    snprintf(pattern, sizeof pattern, "%s/none_*.bin", tmp_dir);
    cfg.pattern = pattern;
    expect_init_error("dataloader error: no match", cfg, "no files match");
    expect_init_error("dataloader error: rank >= world", corpus_config(2, 8, 2, 2, 0, 0), "rank 2");
    expect_init_error("dataloader error: B = 0", corpus_config(0, 8, 0, 1, 0, 0), "B 0");
    /* c_01 has 777 tokens: world 4 x 12 x 16 + 1 = 769 fits, world 5 does not */
    expect_init_error("dataloader error: shard shorter than a batch", corpus_config(12, 16, 0, 5, 0, 0),
                      "fewer than one global");
    DataLoader dl;
    char why[1024];
    DataLoaderConfig fits = corpus_config(12, 16, 0, 4, 0, 0);
    int fits_rc = dataloader_init(&dl, &fits, why, sizeof why);
    check_true("dataloader: shard of one global batch + 8", fits_rc == 0, "777 >= 769 accepted");
    if (fits_rc == 0) dataloader_free(&dl);

    uint16_t tokens[100];
    for (int i = 0; i < 100; i++) tokens[i] = (uint16_t)i;
    write_shard_or_die(tmp_path("b_00.bin"), tokens, 100);
    write_bytes(tmp_path("b_01.bin"), "not a shard", 11);
    snprintf(pattern, sizeof pattern, "%s/b_*.bin", tmp_dir);
    cfg.pattern = pattern;
    expect_init_error("dataloader error: bad shard in the set", cfg, "b_01.bin");

    /* token 16 is the last target of the first batch (B*T = 16): checked too */
    tokens[16] = VOCAB;
    write_shard_or_die(tmp_path("v_00.bin"), tokens, 100);
    snprintf(pattern, sizeof pattern, "%s/v_*.bin", tmp_dir);
    cfg.pattern = pattern;
    init_or_fail(&dl, cfg);
    int x[16], y[16];
    int rc = dataloader_next(&dl, x, y, why, sizeof why);
    DataLoaderState st;
    dataloader_state(&dl, &st);
    check_true("dataloader error: token >= vocab", rc == -1 && strstr(why, "v_00.bin") && strstr(why, "token 16 is 4096"),
               "-1, names shard and position");
    check_true("dataloader error: position kept", st.epoch == 0 && st.shard_pos == 0 && st.window_pos == 0, "not advanced");
    dataloader_free(&dl);
}

/* ---------------------------------------------------------------------------------------------
 * byte tokenizer */

static void test_tokenizer_byte(void) {
    char text[256], back[256];
    int ids[256];
    for (int b = 0; b < 256; b++) text[b] = (char)(unsigned char)b;
    tokenizer_byte_encode(text, 256, ids);
    int ids_ok = 1;
    for (int b = 0; b < 256; b++) ids_ok &= ids[b] == b;
    size_t n_bad = tokenizer_byte_decode(ids, 256, back);
    check_true("tokenizer_byte round trip", ids_ok && n_bad == 0 && memcmp(text, back, 256) == 0, "256 bytes, id = byte");
    const int odd[4] = {65, 256, -1, 300};
    n_bad = tokenizer_byte_decode(odd, 4, back);
    check_true("tokenizer_byte out-of-range ids", n_bad == 3 && memcmp(back, "A???", 4) == 0, "'?' marker, 3 counted");
}

/* ---------------------------------------------------------------------------------------------
 * flip-flop */

/* NULL if x is a valid FFLM sequence of T tokens, else what is wrong */
static const char *fflm_invalid(const int *x, int T) {
    int reg = -1;
    for (int k = 0; k < T / 2; k++) {
        int instr = x[2 * k], bit = x[2 * k + 1];
        if (instr != FLIPFLOP_W && instr != FLIPFLOP_R && instr != FLIPFLOP_I) return "even position not an instruction";
        if (bit != FLIPFLOP_BIT0 && bit != FLIPFLOP_BIT1) return "odd position not a bit";
        if (k == 0 && instr != FLIPFLOP_W) return "first instruction not w";
        if (k == T / 2 - 1 && instr != FLIPFLOP_R) return "last instruction not r";
        if (instr == FLIPFLOP_W) reg = bit;
        if (instr == FLIPFLOP_R && bit != reg) return "read bit differs from last write";
    }
    return NULL;
}

/* |f - p| / sigma for count successes of n Bernoulli(p) trials */
static double binomial_z(int64_t count, int64_t n, double p) {
    return fabs((double)count / n - p) / sqrt(p * (1 - p) / n);
}

static void test_flipflop_split(const char *split, double p_i, int paper_seqs, int paper_reads, uint64_t seed) {
    enum { T = FLIPFLOP_T };
    int *x = mallocCheck(sizeof(int) * T * FF_SEQS), *y = mallocCheck(sizeof(int) * T * FF_SEQS);
    Rng r;
    rng_init(&r, seed);
    flipflop_batch(&r, p_i, FF_SEQS, T, x, y);
    int invalid = 0, bad_targets = 0;
    int64_t n_instr[3] = {0}, n_noise = 0, n_ones = 0, n_reads = 0;
    for (int b = 0; b < FF_SEQS; b++) {
        const int *xs = x + b * T, *ys = y + b * T;
        invalid += fflm_invalid(xs, T) != NULL;
        for (int t = 0; t < T; t++) {
            int expect = t + 1 < T && xs[t] == FLIPFLOP_R ? xs[t + 1] : -1;
            bad_targets += ys[t] != expect;
            n_reads += ys[t] >= 0;
        }
        for (int k = 1; k < T / 2 - 1; k++) n_instr[xs[2 * k]]++; /* the free instructions */
        for (int k = 0; k < T / 2; k++) {
            if (xs[2 * k] == FLIPFLOP_R) continue;
            n_noise++;
            n_ones += xs[2 * k + 1] == FLIPFLOP_BIT1;
        }
    }
    char name[80], detail[64];
    snprintf(name, sizeof name, "flipflop %s valid FFLM", split);
    snprintf(detail, sizeof detail, "%d x %d tokens, %d invalid", FF_SEQS, T, invalid);
    check_true(name, invalid == 0, detail);
    snprintf(name, sizeof name, "flipflop %s targets = read bits", split);
    check_true(name, bad_targets == 0, "y[t]=x[t+1] iff x[t]=r, else -1");
    int64_t n_free = (int64_t)FF_SEQS * (T / 2 - 2);
    double p_wr = 0.5 * (1.0 - p_i);
    const char *iname[3] = {"w", "r", "i"};
    const double prob[3] = {p_wr, p_wr, p_i};
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "flipflop %s p(%s) = %.3g", split, iname[k], prob[k]);
        check_value(name, "z", binomial_z(n_instr[k], n_free, prob[k]), Z_BAR);
    }
    snprintf(name, sizeof name, "flipflop %s p(1 after w, i) = 0.5", split);
    check_value(name, "z", binomial_z(n_ones, n_noise, 0.5), Z_BAR);
    /* reads per sequence against the paper's test set (1 forced last r + (T/2 - 2) * p_r each) */
    double v = (T / 2 - 2) * p_wr * (1 - p_wr);
    double z = fabs((double)n_reads / FF_SEQS - (double)paper_reads / paper_seqs) / sqrt(v / FF_SEQS + v / paper_seqs);
    snprintf(name, sizeof name, "flipflop %s reads/seq vs paper %.2f", split, (double)paper_reads / paper_seqs);
    check_value(name, "z", z, Z_BAR);
    free(x);
    free(y);
}

static void test_flipflop(void) {
    char why[256];
    check_true("flipflop_check T = 512, p 0.8", flipflop_check(0.8, 512, why, sizeof why) == 0, "accepted");
    check_true("flipflop_check odd T", flipflop_check(0.8, 511, why, sizeof why) == -1 && strstr(why, "511"), "-1, names 511");
    check_true("flipflop_check T = 2", flipflop_check(0.8, 2, why, sizeof why) == -1, "-1");
    check_true("flipflop_check p = 1.5", flipflop_check(1.5, 512, why, sizeof why) == -1 && strstr(why, "1.5"), "-1, names 1.5");
    /* the paper's held-out sets (appendix B.2): sequences and read instructions they contain */
    test_flipflop_split("in-dist", FLIPFLOP_P_TRAIN, 1000, 26508, 11);
    test_flipflop_split("sparse", FLIPFLOP_P_SPARSE, 100000, 353875, 12);
    test_flipflop_split("dense", FLIPFLOP_P_DENSE, 3000, 345781, 13);

    enum { B = 4, T = 64 };
    int x1[B * T], y1[B * T], x2[B * T], y2[B * T];
    Rng r1, r2;
    rng_init(&r1, 5);
    rng_init(&r2, 5);
    flipflop_batch(&r1, 0.8, B, T, x1, y1);
    flipflop_batch(&r2, 0.8, B, T, x2, y2);
    int same = memcmp(x1, x2, sizeof x1) == 0 && memcmp(y1, y2, sizeof y1) == 0 && r1.state == r2.state;
    rng_init(&r2, 6);
    flipflop_batch(&r2, 0.8, B, T, x2, y2);
    check_true("flipflop deterministic from the seed", same && memcmp(x1, x2, sizeof x1) != 0, "seed 5 repeats, seed 6 differs");

    const int seq[8] = {FLIPFLOP_W, FLIPFLOP_BIT1, FLIPFLOP_I, FLIPFLOP_BIT0, FLIPFLOP_R, FLIPFLOP_BIT1, FLIPFLOP_W, 7};
    char text[2 * 8 + 1];
    flipflop_decode(seq, 8, text);
    check_true("flipflop_decode", strcmp(text, "w1 i0 r1 w?") == 0, "\"w1 i0 r1 w?\"");
}

int main(void) {
    util_set_progname("test_data");
    if (!mkdtemp(tmp_dir)) die("cannot create a temporary directory from %s", tmp_dir);
    test_shard_roundtrip();
    test_shard_bad();
    make_corpus();
    test_windows_in_order();
    test_shuffle();
    test_ranks(0);
    test_ranks(1);
    test_resume();
    test_loader_errors();
    test_tokenizer_byte();
    test_flipflop();
    remove_tmp();
    for (int s = 0; s < N_CORPUS; s++) free(corpus[s]);
    return check_finish();
}
