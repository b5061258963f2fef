/* prepare_text.c: text files -> GPT-2 BPE token shards in llm.c's format (data/shard.h), the
 * real-text data of doc/DESIGN.md section 5.
 *   prepare_text --out PREFIX [--vocab-dir DIR] [--val-every N] [--shard-tokens N]
 *                [--tokenizer-out PATH] FILE...      (options from common/options.h)
 * Documents: each FILE is one, numbered 0, 1, ... in command-line order; document i goes to the
 * val split when i % N == 0 (N = --val-every), else to train, so the split is deterministic and
 * both splits are non-empty for two or more files. Each split is the stream
 *   EOT doc EOT doc ...      (EOT = <|endoftext|>, 50256 in GPT-2, before every document, as llm.c does)
 * cut into PREFIX_train_000000.bin, PREFIX_train_000001.bin, ... (and _val_) of at most
 * --shard-tokens tokens; a document may go on in the next shard. Shards of an earlier run numbered
 * past this run's last are removed, so a glob over PREFIX finds this run's shards only.
 * Two passes: every file is first checked (readable, not empty, valid UTF-8; an error names the
 * file and the byte offset) and nothing is written unless all pass; then each file is read in
 * 1 MiB pieces and encoded up to bpe_stable_prefix(), which gives the tokens of the whole file.
 * Memory: one shard buffer per split (growing to --shard-tokens x 2 bytes) and the read buffer
 * (1 MiB plus the longest stretch with no non-space followed by whitespace); it does not grow with
 * the number or size of the files. Progress on stderr (every 0.5 s on a terminal, else every
 * 10 s), a summary on stdout.
 * checked by: tests/test_bpe.c "prepare_text" (splits, EOT placement, shard cuts, bad input). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/options.h"
#include "../common/util.h"
#include "bpe.h"
#include "shard.h"

#define READ_BYTES (1 << 20)
#define MAX_SHARD_TOKENS 1e9 /* 2 GB shards; llm.c's header counts tokens in an int32 */

typedef struct {
    const char *out_prefix;    /* shards are <out_prefix>_{train,val}_NNNNNN.bin */
    const char *vocab_dir;     /* holds encoder.json and vocab.bpe */
    const char *tokenizer_out; /* llm.c tokenizer file to write, or "" */
    int val_every;             /* document i goes to val when i % val_every == 0 */
    int shard_tokens;          /* at most this many tokens per shard */
    char **files;              /* (n_files) input documents */
    int n_files;
} Config;

static const char usage[] = "usage: prepare_text --out PREFIX [options] FILE...   (options first; each FILE is one "
                            "UTF-8 document)";

/* Options come first ("--name value", "--name=value"), then the files. */
static Config parse_args(int argc, char **argv) {
    Config c;
    Option opts[] = {
        {"--out", OPT_STRING, &c.out_prefix, "", 0, 0, NULL, NULL,
         "write PREFIX_train_NNNNNN.bin and PREFIX_val_NNNNNN.bin (required)", 0},
        {"--vocab-dir", OPT_STRING, &c.vocab_dir, "dev/data/gpt2", 0, 0, NULL, NULL,
         "GPT-2's encoder.json and vocab.bpe (make gpt2_vocab)", 0},
        {"--val-every", OPT_INT, &c.val_every, "20", 2, 1e9, NULL, NULL, "document i goes to val when i % N == 0", 0},
        {"--shard-tokens", OPT_INT, &c.shard_tokens, "100000000", 1, MAX_SHARD_TOKENS, NULL, NULL,
         "at most N tokens per shard", 0},
        {"--tokenizer-out", OPT_STRING, &c.tokenizer_out, "", 0, 0, NULL, NULL,
         "also write llm.c's tokenizer file (gpt2_tokenizer.bin) there", 0},
    };
    int n_opts = (int)(sizeof opts / sizeof opts[0]), first_file = 1;
    while (first_file < argc && argv[first_file][0] == '-')
        first_file += (strchr(argv[first_file], '=') || strcmp(argv[first_file], "-h") == 0) ? 1 : 2;
    if (first_file > argc) first_file = argc;
    char why[512];
    int rc = options_parse(opts, n_opts, first_file, argv, why, sizeof why);
    if (rc == 1) {
        options_help(stdout, usage, opts, n_opts);
        exit(0);
    }
    if (rc != 0) die("%s", why);
    c.files = argv + first_file;
    c.n_files = argc - first_file;
    if (!c.out_prefix[0]) die("--out PREFIX is required (prepare_text --help)");
    if (c.n_files < 2)
        die("%d input file(s): need at least 2 documents (document 0 goes to val, document 1 to train)", c.n_files);
    return c;
}

/* ------------------------------------------------------------------------------------------ */
/* progress */

typedef struct {
    const char *what;          /* "checking" or "encoding" */
    size_t total_bytes, bytes; /* input bytes in all, and done */
    size_t tokens;             /* tokens written so far (encoding) */
    double start, last;        /* seconds */
    int tty, shown;
} Progress;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void progress_init(Progress *p, const char *what, size_t total_bytes) {
    *p = (Progress){what, total_bytes, 0, 0, now_s(), now_s(), isatty(2), 0};
}

static void progress_show(Progress *p) {
    double t = now_s();
    if (t - p->last < (p->tty ? 0.5 : 10.0)) return;
    p->last = t;
    p->shown = 1;
    double frac = p->total_bytes ? (double)p->bytes / (double)p->total_bytes : 1.0;
    char bar[31];
    for (int k = 0; k < 30; k++) bar[k] = k < (int)(30 * frac) ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr, "%sprepare_text: %s [%s] %5.1f%% | %.1f/%.1f MB | %.2fM tokens | %.1f MB/s%s", p->tty ? "\r" : "",
            p->what, bar, 100.0 * frac, 1e-6 * (double)p->bytes, 1e-6 * (double)p->total_bytes,
            1e-6 * (double)p->tokens, 1e-6 * (double)p->bytes / (t - p->start + 1e-9), p->tty ? "" : "\n");
}

static void progress_end(const Progress *p) {
    if (p->tty && p->shown) fputc('\n', stderr);
}

/* ------------------------------------------------------------------------------------------ */
/* pass 1: every file readable, not empty, valid UTF-8 */

/* The files' sizes added up (for the progress bar). */
static size_t total_size(const Config *c) {
    size_t total = 0;
    for (int i = 0; i < c->n_files; i++) {
        struct stat st;
        if (stat(c->files[i], &st) != 0) die("cannot open '%s': %s", c->files[i], strerror(errno));
        total += (size_t)st.st_size;
    }
    return total;
}

/* Reads up to max bytes; dies on a read error. Returns the count (less than max only at EOF). */
static size_t read_some(FILE *fp, const char *path, char *buf, size_t max) {
    size_t got = fread(buf, 1, max, fp);
    if (got < max && ferror(fp)) die("cannot read '%s': %s", path, strerror(errno));
    return got;
}

static size_t check_file(const char *path, char *buf, Progress *p) {
    FILE *fp = fopen(path, "rb");
    if (!fp) die("cannot open '%s': %s", path, strerror(errno));
    size_t offset = 0, carry = 0; /* bytes of buf[0, carry) are a character cut by the last read */
    for (;;) {
        size_t got = read_some(fp, path, buf + carry, READ_BYTES);
        size_t n = carry + got, ok = bpe_utf8_prefix(buf, n);
        if (ok < n && (got < READ_BYTES || n - ok >= 4))
            die("'%s' is not valid UTF-8 at byte %zu (0x%02X)", path, offset + ok, (unsigned char)buf[ok]);
        memmove(buf, buf + ok, n - ok);
        carry = n - ok;
        offset += ok;
        p->bytes += got;
        progress_show(p);
        if (got < READ_BYTES) break;
    }
    fclose(fp);
    if (offset == 0) die("'%s' is empty: every document needs text", path);
    return offset;
}

/* ------------------------------------------------------------------------------------------ */
/* pass 2: encode into shards */

typedef struct {
    const char *name; /* "train" or "val" */
    uint16_t *buf;    /* (cap) the shard being filled, n tokens so far */
    size_t n, cap;
    int n_shards;     /* shards written */
    size_t n_tokens, n_docs;
} Split;

static void shard_path(char *path, size_t len, const Config *c, const char *split, int index) {
    if ((size_t)snprintf(path, len, "%s_%s_%06d.bin", c->out_prefix, split, index) >= len)
        die("output prefix '%s' is too long", c->out_prefix);
}

static void split_flush(const Config *c, Split *s) {
    char path[4096];
    shard_path(path, sizeof path, c, s->name, s->n_shards);
    if (shard_write(path, s->buf, s->n) != 0) die("cannot write shard '%s': %s", path, strerror(errno));
    s->n_shards++;
    s->n = 0;
}

static void split_push(const Config *c, Split *s, const int *ids, size_t n) {
    for (size_t k = 0; k < n; k++) {
        if (s->n == (size_t)c->shard_tokens) split_flush(c, s);
        if (s->n == s->cap) {
            s->cap = s->cap ? 2 * s->cap : 1 << 16;
            if (s->cap > (size_t)c->shard_tokens) s->cap = (size_t)c->shard_tokens;
            s->buf = realloc(s->buf, s->cap * sizeof(uint16_t));
            if (!s->buf) die("out of memory for a %zu-token shard buffer", s->cap);
        }
        s->buf[s->n++] = (uint16_t)ids[k];
    }
    s->n_tokens += n;
}

/* Writes the last shard, then removes shards of an earlier run numbered past it. */
static void split_finish(const Config *c, Split *s) {
    if (s->n > 0) split_flush(c, s);
    free(s->buf);
    char path[4096];
    int removed = 0;
    for (;; removed++) {
        shard_path(path, sizeof path, c, s->name, s->n_shards + removed);
        if (unlink(path) != 0) break;
    }
    shard_path(path, sizeof path, c, s->name, s->n_shards);
    if (removed) printf("prepare_text: removed %d %s shard(s) of an earlier run, %s and on\n", removed, s->name, path);
}

/* Appends the tokens of one file to s; buf holds READ_BYTES and grows with *buf_cap. */
static void encode_file(const Config *c, const Bpe *t, const char *path, char **buf, size_t *buf_cap, Split *s,
                        Progress *p) {
    FILE *fp = fopen(path, "rb");
    if (!fp) die("cannot open '%s': %s", path, strerror(errno));
    BpeTokens tok = {0};
    size_t len = 0, offset = 0, bad; /* buf[0, len) is text from file byte offset on */
    for (int eof = 0; !eof;) {
        if (len + READ_BYTES > *buf_cap) {
            *buf_cap = 2 * (len + READ_BYTES);
            *buf = realloc(*buf, *buf_cap);
            if (!*buf) die("out of memory: '%s' has over %zu bytes without a word break", path, len);
        }
        size_t got = read_some(fp, path, *buf + len, READ_BYTES);
        eof = got < READ_BYTES;
        len += got;
        size_t cut = eof ? len : bpe_stable_prefix(*buf, len);
        tok.n = 0;
        if (bpe_encode(t, *buf, cut, &tok, &bad) != 0)
            die("'%s' changed while being read: not valid UTF-8 at byte %zu", path, offset + bad);
        split_push(c, s, tok.ids, tok.n);
        memmove(*buf, *buf + cut, len - cut);
        len -= cut;
        offset += cut;
        p->bytes += got;
        p->tokens += tok.n;
        progress_show(p);
    }
    free(tok.ids);
    fclose(fp);
}

static void load_tokenizer(const Config *c, Bpe *t) {
    char enc[4096], merges[4096], why[1024];
    snprintf(enc, sizeof enc, "%s/encoder.json", c->vocab_dir);
    snprintf(merges, sizeof merges, "%s/vocab.bpe", c->vocab_dir);
    if (access(enc, F_OK) != 0 && access(merges, F_OK) != 0)
        die("no GPT-2 vocabulary in '%s' (run make gpt2_vocab, or pass --vocab-dir)", c->vocab_dir);
    if (bpe_init_json(t, enc, merges, why, sizeof why) != 0) die("%s", why);
    const char *no = bpe_encode_unavailable(t);
    if (no) die("cannot encode: %s", no);
    if (t->eot < 0) die("'%s' has no <|endoftext|> token to put between documents", enc);
}

int main(int argc, char **argv) {
    util_set_progname("prepare_text");
    Config c = parse_args(argc, argv);
    Bpe t;
    load_tokenizer(&c, &t);

    size_t total = 0, buf_cap = 2 * READ_BYTES;
    char *buf = mallocCheck(buf_cap);
    Progress p;
    progress_init(&p, "checking", total_size(&c));
    for (int i = 0; i < c.n_files; i++) total += check_file(c.files[i], buf, &p);
    progress_end(&p);

    char why[1024];
    if (c.tokenizer_out[0] && bpe_write_file(&t, c.tokenizer_out, why, sizeof why) != 0) die("%s", why);
    Split train = {.name = "train"}, val = {.name = "val"};
    progress_init(&p, "encoding", total);
    for (int i = 0; i < c.n_files; i++) {
        Split *s = i % c.val_every == 0 ? &val : &train;
        s->n_docs++;
        split_push(&c, s, &t.eot, 1);
        p.tokens++;
        encode_file(&c, &t, c.files[i], &buf, &buf_cap, s, &p);
    }
    progress_end(&p);
    split_finish(&c, &train);
    split_finish(&c, &val);

    printf("prepare_text: %d documents, %.2f MB of text -> %zu GPT-2 tokens (end-of-text before each document)\n",
           c.n_files, 1e-6 * (double)total, train.n_tokens + val.n_tokens);
    const Split *splits[2] = {&train, &val};
    for (int k = 0; k < 2; k++)
        printf("prepare_text: %-5s %zu documents, %zu tokens in %d shard(s) %s_%s_*.bin\n", splits[k]->name,
               splits[k]->n_docs, splits[k]->n_tokens, splits[k]->n_shards, c.out_prefix, splits[k]->name);
    free(buf);
    bpe_free(&t);
    return 0;
}
