/* test_bpe.c: checks the GPT-2 BPE tokenizer (data/bpe.h), the corpus tool (data/prepare_text.c)
 * and llm.c file compatibility.
 *  1. GPT-2's vocabulary (dev/data/gpt2, `make gpt2_vocab`; skipped with the reason when absent):
 *     the ids of a text with punctuation, numbers, whitespace runs, Unicode and emoji equal those
 *     of gpt-3-encoder's own JavaScript encoder (made by dev/gpt2_reference_ids.js from
 *     `test_bpe --print-text`), decoding gives the text back, streaming at bpe_stable_prefix()
 *     cuts gives the same ids, and llm.c's tokenizer file written from it reads back equal;
 *  2. a small vocabulary the test writes (256 bytes + 4 merges): merge order by rank, and
 *     malformed encoder.json / vocab.bpe files rejected with a reason;
 *  3. llm.c's tokenizer file (versions 1 and 2) and token shard written byte by byte here, bad
 *     tokenizer files, and bpe_check_shard() finding an id outside the vocabulary;
 *  4. strict UTF-8 (overlong forms, surrogates, truncation);
 *  5. ./prepare_text on the small vocabulary: split, end-of-text placement, shard cuts, a 1.5 MB
 *     file read in pieces, stale shards, and bad input (invalid UTF-8 with the offset, empty
 *     files) leaving nothing written.
 * All checks are exact (token ids, bytes, message fragments). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/util.h"
#include "../data/bpe.h"
#include "../data/shard.h"
#include "check.h"

#define GPT2_DIR "dev/data/gpt2"
#define PREPARE_TEXT "./prepare_text"
#define MAX_TOKENS (1 << 21) /* of a split in the prepare_text checks */

/* Punctuation, contractions, numbers, whitespace runs (spaces, tabs, CRLF, no-break and
 * ideographic spaces), accents and combining marks, several scripts, emoji with skin tones, ZWJ
 * sequences and flags, the end-of-text text, and trailing spaces. */
static const char test_text[] =
    "Hello, world! It's 3:14 p.m. -- aren't we 'quoted'? They'll say we'd've... I'M LOUD, you're 'Sup.\n"
    "Numbers: 1234567, 3.14159, -42, 1,000,000, 10e-3, ²½Ⅻ, ٣٤٥ and १२३.\n"
    "Whitespace:  two  spaces,\tA\t\ttab, trailing   \n\n\nthree newlines,\r\nCRLF, "
    "\u00a0nbsp and \u3000ideographic.\n"
    "Unicode: café naïve (e\u0301) Straße Ωμέγα Привет 中文字符 日本語のテキスト 한국어 مرحبا नमस्ते ﬁ.\n"
    "Emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ 🏳️‍🌈 and <|endoftext|> as plain text.   ";

static const int test_ids[] = {
    /* 270 ids from gpt-3-encoder 1.1.4 (dev/gpt2_reference_ids.js) */
    15496, 11, 995, 0, 632, 338, 513, 25, 1415, 279, 13, 76,
    13, 1377, 3588, 470, 356, 705, 421, 5191, 30960, 1119, 1183, 910,
    356, 1549, 1053, 986, 314, 6, 44, 406, 2606, 35, 11, 345,
    821, 705, 40784, 13, 198, 49601, 25, 17031, 2231, 3134, 11, 513,
    13, 1415, 19707, 11, 532, 3682, 11, 352, 11, 830, 11, 830,
    11, 838, 68, 12, 18, 11, 1587, 110, 23141, 158, 227, 104,
    11, 18923, 96, 149, 97, 149, 98, 290, 220, 24231, 100, 24231,
    101, 24231, 102, 13, 198, 1199, 2737, 10223, 25, 220, 734, 220,
    9029, 11, 197, 32, 197, 197, 8658, 11, 25462, 220, 220, 220,
    628, 198, 15542, 649, 6615, 11, 201, 198, 34, 7836, 37, 11,
    220, 1849, 77, 24145, 290, 220, 5099, 222, 485, 6826, 13, 198,
    3118, 291, 1098, 25, 40304, 41492, 357, 68, 136, 223, 8, 15195,
    39683, 68, 7377, 102, 34703, 138, 255, 42063, 17394, 12466, 253, 21169,
    18849, 38857, 16843, 20375, 220, 40792, 23877, 229, 27764, 245, 163, 105,
    99, 10545, 245, 98, 17312, 105, 45739, 252, 5641, 24336, 25084, 43302,
    220, 47991, 250, 166, 113, 255, 168, 244, 112, 47048, 26897, 148,
    255, 39848, 12919, 28225, 101, 11976, 106, 11976, 116, 24231, 235, 11976,
    97, 24231, 229, 27332, 105, 223, 13, 198, 36, 5908, 7285, 25,
    30325, 222, 50169, 235, 8582, 237, 121, 50169, 101, 447, 235, 41840,
    102, 447, 235, 41840, 100, 447, 235, 41840, 99, 12520, 229, 104,
    8582, 229, 115, 43074, 97, 37929, 12520, 237, 111, 37929, 447, 235,
    8582, 234, 230, 290, 1279, 91, 437, 1659, 5239, 91, 29, 355,
    8631, 2420, 13, 220, 220, 220,
};
#define N_TEST_IDS (sizeof test_ids / sizeof test_ids[0])

static char tmp_dir[] = "/tmp/test_bpe.XXXXXX";

/* ------------------------------------------------------------------------------------------ */
/* helpers */

static void write_file(const char *path, const void *data, size_t n) {
    FILE *fp = fopenCheck(path, "wb");
    fwriteCheck(data, 1, n, fp);
    fcloseCheck(fp);
}

static const char *tmp_path(const char *name) {
    static char paths[8][512];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 512, "%s/%s", tmp_dir, name);
    return p;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Decodes ids into buf (cap bytes); returns the length, or -1 on a bad id or overflow. */
static long decode(const Bpe *t, const int *ids, size_t n, char *buf, size_t cap) {
    size_t len = 0;
    for (size_t k = 0; k < n; k++) {
        size_t m;
        const char *p = bpe_piece(t, ids[k], &m);
        if (!p || len + m > cap) return -1;
        memcpy(buf + len, p, m);
        len += m;
    }
    return (long)len;
}

static int same_ids(const int *a, size_t na, const int *b, size_t nb, char *detail, size_t len) {
    size_t k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    if (k == na && k == nb) snprintf(detail, len, "%zu ids equal", na);
    else snprintf(detail, len, "%zu vs %zu ids, differ at %zu", na, nb, k);
    return k == na && k == nb;
}

/* ------------------------------------------------------------------------------------------ */
/* 1. GPT-2's vocabulary */

static void test_gpt2(void) {
    Bpe t;
    char why[1024], detail[256];
    if (!file_exists(GPT2_DIR "/encoder.json") || !file_exists(GPT2_DIR "/vocab.bpe")) {
        check_skip("bpe gpt2", GPT2_DIR "/encoder.json and vocab.bpe not found (make gpt2_vocab)");
        return;
    }
    int rc = bpe_init_json(&t, GPT2_DIR "/encoder.json", GPT2_DIR "/vocab.bpe", why, sizeof why);
    if (!check_true("bpe gpt2 load", rc == 0, rc ? why : "encoder.json + vocab.bpe")) return;
    check_true("bpe gpt2 vocab", t.vocab_size == BPE_GPT2_VOCAB && t.eot == BPE_GPT2_EOT, "50257 tokens, eot 50256");
    int bytes_ok = t.byte_id[' '] == 220 && t.byte_id['!'] == 0 && t.byte_id[0] == 188;
    for (int b = 0; b < 256; b++) {
        size_t m;
        const char *p = bpe_piece(&t, t.byte_id[b], &m);
        bytes_ok = bytes_ok && m == 1 && (unsigned char)p[0] == b;
    }
    check_true("bpe gpt2 byte tokens", bytes_ok, "256 single bytes, ' '=220 '!'=0");

    const char *no = bpe_encode_unavailable(&t);
    if (no) {
        check_skip("bpe gpt2 encode", no);
    } else {
        size_t n = strlen(test_text), bad;
        BpeTokens tok = {0};
        bpe_encode(&t, test_text, n, &tok, &bad);
        check_true("bpe gpt2 encode known ids", same_ids(tok.ids, tok.n, test_ids, N_TEST_IDS, detail, sizeof detail),
                   detail);
        /* streaming: every split point L, cut back to bpe_stable_prefix, encoded in two pieces */
        int stream_ok = 1;
        for (size_t L = 1; L <= n && stream_ok; L++) {
            size_t cut = bpe_stable_prefix(test_text, L);
            BpeTokens two = {0};
            bpe_encode(&t, test_text, cut, &two, &bad);
            bpe_encode(&t, test_text + cut, n - cut, &two, &bad);
            stream_ok = two.n == tok.n && memcmp(two.ids, tok.ids, tok.n * sizeof(int)) == 0;
            free(two.ids);
        }
        check_true("bpe gpt2 encode in pieces", stream_ok, "all cuts at stable prefixes");
        BpeTokens none = {0};
        check_true("bpe gpt2 encode empty", bpe_encode(&t, "", 0, &none, &bad) == 0 && none.n == 0, "0 tokens");
        free(tok.ids);
    }
    char buf[4096];
    long len = decode(&t, test_ids, N_TEST_IDS, buf, sizeof buf);
    check_true("bpe gpt2 decode known ids", len == (long)strlen(test_text) && memcmp(buf, test_text, (size_t)len) == 0,
               "bytes equal the text");

    /* llm.c's tokenizer file from the JSON vocabulary, read back */
    const char *bin = tmp_path("gpt2_tokenizer.bin");
    Bpe f = {0};
    rc = bpe_write_file(&t, bin, why, sizeof why);
    if (rc == 0) rc = bpe_init_file(&f, bin, why, sizeof why);
    if (check_true("bpe gpt2 tokenizer file", rc == 0, rc ? why : "written, read back")) {
        int same = f.vocab_size == t.vocab_size && f.eot == t.eot &&
                   memcmp(f.piece_start, t.piece_start, (size_t)(t.vocab_size + 1) * sizeof(uint32_t)) == 0 &&
                   memcmp(f.piece_bytes, t.piece_bytes, t.piece_start[t.vocab_size]) == 0;
        len = decode(&f, test_ids, N_TEST_IDS, buf, sizeof buf);
        same = same && len == (long)strlen(test_text) && memcmp(buf, test_text, (size_t)len) == 0;
        check_true("bpe gpt2 tokenizer file round trip", same, "every token, eot, decode");
        check_true("bpe gpt2 tokenizer file decode only", bpe_encode_unavailable(&f) != NULL, "encode unavailable");
        bpe_free(&f);
    }
    bpe_free(&t);
}

/* ------------------------------------------------------------------------------------------ */
/* 2. a small vocabulary written here */

/* GPT-2's byte-to-unicode map, written again from its definition. */
static unsigned byte_char(int b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return (unsigned)b;
    int k = 0;
    for (int c = 0; c < b; c++) k += !((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF));
    return 256u + (unsigned)k;
}

/* The small vocabulary: byte b is token b, then he 256, ll 257, hel 258, hell 259, eot 260. */
static const char *small_extra[] = {"he", "ll", "hel", "hell", "<|endoftext|>"};
static const char small_merges[] = "#version: 0.2\nh e\nl l\nhe l\nhe ll\n";
#define SMALL_EOT 260

/* encoder.json of the small vocabulary, with the first `from` replaced by `to` (if from). */
static void write_small_vocab(const char *dir, const char *from, const char *to, const char *merges) {
    static char json[16384];
    size_t n = 0;
    n += (size_t)snprintf(json + n, sizeof json - n, "{");
    for (int b = 0; b < 256; b++) {
        unsigned c = byte_char(b);
        const char *q = (c == '"' || c == '\\') ? "\\" : "";
        if (c < 0x80) n += (size_t)snprintf(json + n, sizeof json - n, "\"%s%c\": %d, ", q, (char)c, b);
        else n += (size_t)snprintf(json + n, sizeof json - n, "\"\\u%04x\": %d, ", c, b);
    }
    for (int k = 0; k < 5; k++)
        n += (size_t)snprintf(json + n, sizeof json - n, "\"%s\": %d%s", small_extra[k], 256 + k, k < 4 ? ", " : "}\n");
    char *at = from ? strstr(json, from) : NULL;
    if (from && !at) die("test bug: '%s' not in the small vocabulary", from);
    static char out[16384];
    if (at) snprintf(out, sizeof out, "%.*s%s%s", (int)(at - json), json, to, at + strlen(from));
    else memcpy(out, json, n + 1);
    char path[600];
    snprintf(path, sizeof path, "%s/encoder.json", dir);
    write_file(path, out, strlen(out));
    snprintf(path, sizeof path, "%s/vocab.bpe", dir);
    write_file(path, merges, strlen(merges));
}

static int load_vocab_dir(Bpe *t, const char *dir, char *why, size_t len) {
    char enc[640], mer[640];
    snprintf(enc, sizeof enc, "%s/encoder.json", dir);
    snprintf(mer, sizeof mer, "%s/vocab.bpe", dir);
    return bpe_init_json(t, enc, mer, why, len);
}

/* Writes the valid small vocabulary into tmp_dir/small and loads it. */
static int load_small(Bpe *t, char *why, size_t len) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/small", tmp_dir);
    mkdir(dir, 0700);
    write_small_vocab(dir, NULL, NULL, small_merges);
    return load_vocab_dir(t, dir, why, len);
}

static void test_small_vocab(void) {
    char dir[600], why[1024], detail[256];
    snprintf(dir, sizeof dir, "%s/small", tmp_dir);
    Bpe t;
    int rc = load_small(&t, why, sizeof why);
    if (!check_true("bpe small load", rc == 0, rc ? why : "256 bytes + 4 merges + eot")) return;
    check_true("bpe small vocab", t.vocab_size == 261 && t.eot == SMALL_EOT && t.byte_id['"'] == '"', "261 tokens, eot 260");
    const char *no = bpe_encode_unavailable(&t);
    if (no) {
        check_skip("bpe small encode", no);
    } else {
        /* " hello": he (rank 0), then ll (rank 1) before he+l (rank 2), then he+ll: " " hell o */
        static const int want[] = {' ', 259, 'o'};
        BpeTokens tok = {0};
        size_t bad;
        bpe_encode(&t, " hello", 6, &tok, &bad);
        check_true("bpe small merge order", same_ids(tok.ids, tok.n, want, 3, detail, sizeof detail), detail);
        free(tok.ids);
        tok = (BpeTokens){0};
        rc = bpe_encode(&t, "ab\xc3(", 4, &tok, &bad);
        check_true("bpe small encode invalid utf-8", rc == -1 && bad == 2 && tok.n == 0, "-1 at byte 2, no tokens");
    }
    bpe_free(&t);

    typedef struct {
        const char *name, *from, *to, *merges, *expect;
    } Bad;
    static const Bad bad[] = {
        {"not an object", "{", "[", NULL, "expected '{'"},
        {"id not an integer", "\"he\": 256", "\"he\": 256.5", NULL, "expected a token id"},
        {"id out of range", "\"he\": 256", "\"he\": 300", NULL, "out of range"},
        {"id given twice", "\"he\": 256", "\"he\": 257", NULL, "given to two tokens"},
        {"char off the alphabet", "\"hell\": 259", "\"h\\u0200\": 259", NULL, "not in GPT-2's byte alphabet"},
        {"byte missing", "\"A\": 65", "\"AA\": 65", NULL, "no token for the byte 0x41"},
        {"broken syntax", ", \"he\"", "", NULL, "expected ',' or '}'"},
        {"merges unversioned", NULL, NULL, "h e\n", "line 1 is not '#version"},
        {"merge of three", NULL, NULL, "#version: 0.2\nh e l\n", "two tokens separated by one space"},
        {"merge unknown token", NULL, NULL, "#version: 0.2\nhq e\n", "merges a token that encoder.json does not have"},
        {"merge result unknown", NULL, NULL, "#version: 0.2\ne h\n", "makes a token that encoder.json does not have"},
        {"merge twice", NULL, NULL, "#version: 0.2\nh e\nh e\n", "the same pair is merged on line 2"},
        {"merge empty line", NULL, NULL, "#version: 0.2\nh e\n\nl l\n", "line 3 is empty"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        write_small_vocab(dir, bad[k].from, bad[k].to, bad[k].merges ? bad[k].merges : small_merges);
        rc = load_vocab_dir(&t, dir, why, sizeof why);
        char name[128];
        snprintf(name, sizeof name, "bpe malformed vocab: %s", bad[k].name);
        int ok = rc == -1 && strstr(why, bad[k].expect) != NULL;
        check_true(name, ok, rc ? why : "accepted");
        if (rc == 0) bpe_free(&t);
    }
    rc = bpe_init_json(&t, tmp_path("missing.json"), tmp_path("missing.bpe"), why, sizeof why);
    check_true("bpe malformed vocab: missing file", rc == -1 && strstr(why, "cannot open") != NULL, why);
}

/* ------------------------------------------------------------------------------------------ */
/* 3. llm.c's tokenizer file and shard, written byte by byte as llm.c's Python writers do */

/* A tokenizer file: version, header vocab and eot fields, then tokens "t<i>" (or custom). */
static void write_llmc_tokenizer(const char *path, uint32_t version, uint32_t vocab, uint32_t eot, int zero_len_at,
                                 int extra_bytes) {
    FILE *fp = fopenCheck(path, "wb");
    uint32_t header[256] = {BPE_FILE_MAGIC, version, vocab, eot};
    fwriteCheck(header, 4, 256, fp);
    for (uint32_t i = 0; i < vocab; i++) {
        char tok[32];
        int n = i == (uint32_t)zero_len_at ? 0 : snprintf(tok, sizeof tok, "t%u ", i);
        unsigned char len = (unsigned char)n;
        fwriteCheck(&len, 1, 1, fp);
        fwriteCheck(tok, 1, (size_t)n, fp);
    }
    for (int k = 0; k < extra_bytes; k++) fputc(0, fp);
    fcloseCheck(fp);
}

static void write_llmc_shard(const char *path, const uint16_t *tokens, int32_t n) {
    FILE *fp = fopenCheck(path, "wb");
    int32_t header[256] = {20240520, 1, n};
    fwriteCheck(header, 4, 256, fp);
    fwriteCheck(tokens, 2, (size_t)n, fp);
    fcloseCheck(fp);
}

static void test_llmc_files(void) {
    char why[1024];
    Bpe t;
    const char *path = tmp_path("tok_v2.bin");
    write_llmc_tokenizer(path, 2, 5, 4, -1, 0);
    int rc = bpe_init_file(&t, path, why, sizeof why);
    if (check_true("llmc tokenizer v2", rc == 0 && t.vocab_size == 5 && t.eot == 4, rc ? why : "5 tokens, eot 4")) {
        static const int ids[] = {3, 0, 4};
        char buf[64];
        long len = decode(&t, ids, 3, buf, sizeof buf);
        check_true("llmc tokenizer v2 decode", len == 9 && memcmp(buf, "t3 t0 t4 ", 9) == 0, "\"t3 t0 t4 \"");
        check_true("llmc tokenizer v2 decode only", bpe_encode_unavailable(&t) != NULL, "encode unavailable");
        const uint16_t tokens[] = {4, 1, 2, 4, 3};
        const char *shard = tmp_path("llmc_shard.bin");
        write_llmc_shard(shard, tokens, 5);
        size_t n = bpe_check_shard(&t, shard, why, sizeof why);
        uint16_t back[5] = {0};
        if (n == 5) shard_read(shard, 0, 5, back);
        check_true("llmc shard read", n == 5 && memcmp(back, tokens, sizeof back) == 0, n ? "5 tokens equal" : why);
        const uint16_t wild[] = {4, 1, 7, 0};
        write_llmc_shard(shard, wild, 4);
        n = bpe_check_shard(&t, shard, why, sizeof why);
        check_true("llmc shard id out of vocab", n == 0 && strstr(why, "token 2 is id 7, outside the vocabulary 0..4"),
                   n ? "accepted" : why);
        bpe_free(&t);
    }
    path = tmp_path("tok_v1.bin");
    write_llmc_tokenizer(path, 1, BPE_GPT2_VOCAB, 0, -1, 0);
    rc = bpe_init_file(&t, path, why, sizeof why);
    check_true("llmc tokenizer v1", rc == 0 && t.vocab_size == BPE_GPT2_VOCAB && t.eot == BPE_GPT2_EOT,
               rc ? why : "50257 tokens, eot 50256");
    if (rc == 0) bpe_free(&t);

    typedef struct {
        const char *name;
        uint32_t version, vocab, eot;
        int zero_len_at, extra, truncate;
        const char *expect;
    } Bad;
    static const Bad bad[] = {
        {"version 3", 3, 5, 4, -1, 0, 0, "version 3, expected 1 or 2"},
        {"version 1 not 50257", 1, 5, 4, -1, 0, 0, "version 1 with 5 tokens"},
        {"eot outside", 2, 5, 5, -1, 0, 0, "end-of-text id 5"},
        {"zero-length token", 2, 5, 4, 2, 0, 0, "token 2 has length 0"},
        {"trailing bytes", 2, 5, 4, -1, 3, 0, "3 bytes after its last token"},
        {"truncated", 2, 5, 4, -1, 0, 2, "ends inside token 4"},
        {"header only", 2, 0, 0, -1, 0, 10, "shorter than its 1024-byte header"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        write_llmc_tokenizer(path, bad[k].version, bad[k].vocab, bad[k].eot, bad[k].zero_len_at, bad[k].extra);
        if (bad[k].truncate) {
            struct stat st;
            stat(path, &st);
            if (truncate(path, st.st_size - bad[k].truncate) != 0) die("truncate failed");
        }
        rc = bpe_init_file(&t, path, why, sizeof why);
        char name[128];
        snprintf(name, sizeof name, "llmc tokenizer bad: %s", bad[k].name);
        int ok = rc == -1 && strstr(why, bad[k].expect) != NULL;
        check_true(name, ok, rc ? why : "accepted");
        if (rc == 0) bpe_free(&t);
    }
    uint32_t wrong[256] = {20240520, 2, 5, 4};
    write_file(path, wrong, sizeof wrong);
    rc = bpe_init_file(&t, path, why, sizeof why);
    check_true("llmc tokenizer bad: magic", rc == -1 && strstr(why, "magic 20240520, expected 20240328"), why);
}

/* ------------------------------------------------------------------------------------------ */
/* 4. UTF-8 */

static void test_utf8(void) {
    typedef struct {
        const char *name, *s;
        size_t valid;
    } Case;
    static const Case cases[] = {
        {"ascii and 2-4 byte chars", "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10},
        {"overlong", "ab\xc0\xaf", 2},
        {"overlong 3-byte", "a\xe0\x80\xaf", 1},
        {"surrogate", "a\xed\xa0\x80", 1},
        {"above U+10FFFF", "a\xf4\x90\x80\x80", 1},
        {"stray continuation", "abc\x80", 3},
        {"truncated", "ab\xe2\x82", 2},
        {"byte 0xff", "\xff", 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char name[96], detail[64];
        size_t got = bpe_utf8_prefix(cases[k].s, strlen(cases[k].s));
        snprintf(name, sizeof name, "utf8 %s", cases[k].name);
        snprintf(detail, sizeof detail, "valid prefix %zu, want %zu", got, cases[k].valid);
        check_true(name, got == cases[k].valid, detail);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* 5. prepare_text */

/* Runs prepare_text with args; returns its exit status and its output (stdout + stderr) in out. */
static int run_prepare(const char *args, char *out, size_t cap) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s --vocab-dir %s/small %s 2>&1", PREPARE_TEXT, tmp_dir, args);
    FILE *p = popen(cmd, "r");
    if (!p) die("popen failed");
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* All tokens of the shards <prefix>_<split>_000000.bin, ... into out; returns the count and
 * the number of shards in *n_shards. */
static size_t read_split(const char *prefix, const char *split, uint16_t *out, size_t cap, int *n_shards) {
    size_t n = 0;
    char path[700], why[512];
    for (*n_shards = 0;; (*n_shards)++) {
        snprintf(path, sizeof path, "%s_%s_%06d.bin", prefix, split, *n_shards);
        if (!file_exists(path)) break;
        size_t m = shard_check(path, why, sizeof why);
        if (m == 0 || n + m > cap) return (size_t)-1;
        shard_read(path, 0, m, out + n);
        n += m;
    }
    return n;
}

/* EOT + tokens of each listed document, appended to want. */
static size_t expected_tokens(const Bpe *t, const char *const *docs, int n_docs, uint16_t *want) {
    size_t n = 0, bad;
    for (int d = 0; d < n_docs; d++) {
        BpeTokens tok = {0};
        bpe_encode(t, docs[d], strlen(docs[d]), &tok, &bad);
        want[n++] = SMALL_EOT;
        for (size_t k = 0; k < tok.n; k++) want[n++] = (uint16_t)tok.ids[k];
        free(tok.ids);
    }
    return n;
}

static void test_prepare_text(void) {
    Bpe t;
    char why[1024], out[8192], args[4096], detail[128];
    if (!file_exists(PREPARE_TEXT)) {
        check_skip("prepare_text", PREPARE_TEXT " is not built (make prepare_text)");
        return;
    }
    if (load_small(&t, why, sizeof why) != 0) die("small vocabulary: %s", why);
    if (bpe_encode_unavailable(&t)) {
        check_skip("prepare_text", bpe_encode_unavailable(&t));
        bpe_free(&t);
        return;
    }
    static const char *const docs[] = {"hello world\n", " hello\n\nhell", "h\xc3\xa9llo hello", "he said 'hello'"};
    for (int d = 0; d < 4; d++) {
        char name[32];
        snprintf(name, sizeof name, "doc%d.txt", d);
        write_file(tmp_path(name), docs[d], strlen(docs[d]));
    }
    const char *prefix = tmp_path("out/small");
    mkdir(tmp_path("out"), 0700);
    snprintf(args, sizeof args, "--out %s --val-every 2 --shard-tokens 4 %s/doc0.txt %s/doc1.txt %s/doc2.txt %s/doc3.txt",
             prefix, tmp_dir, tmp_dir, tmp_dir, tmp_dir);
    int status = run_prepare(args, out, sizeof out);
    check_true("prepare_text runs", status == 0, status ? out : "exit 0");
    static uint16_t got[MAX_TOKENS], want[MAX_TOKENS];
    const char *const train_docs[] = {docs[1], docs[3]}, *const val_docs[] = {docs[0], docs[2]};
    int n_shards;
    size_t n = read_split(prefix, "train", got, MAX_TOKENS, &n_shards);
    size_t m = expected_tokens(&t, train_docs, 2, want);
    snprintf(detail, sizeof detail, "%zu tokens in %d shards", n, n_shards);
    check_true("prepare_text train split", n == m && memcmp(got, want, 2 * m) == 0 && n_shards == (int)(m + 3) / 4,
               detail);
    n = read_split(prefix, "val", got, MAX_TOKENS, &n_shards);
    m = expected_tokens(&t, val_docs, 2, want);
    snprintf(detail, sizeof detail, "%zu tokens in %d shards", n, n_shards);
    check_true("prepare_text val split", n == m && memcmp(got, want, 2 * m) == 0, detail);

    /* again with one shard per split: the earlier run's extra shards go */
    snprintf(args, sizeof args, "--out %s --val-every 2 %s/doc0.txt %s/doc1.txt %s/doc2.txt %s/doc3.txt", prefix,
             tmp_dir, tmp_dir, tmp_dir, tmp_dir);
    status = run_prepare(args, out, sizeof out);
    n = read_split(prefix, "train", got, MAX_TOKENS, &n_shards);
    out[strcspn(out, "\n")] = '\0';
    check_true("prepare_text stale shards removed", status == 0 && n_shards == 1 && strstr(out, "removed"), out);

    /* a 1.5 MB document read in 1 MiB pieces, a 2-byte character across the first boundary */
    size_t big_n = 1536 * 1024;
    char *big = mallocCheck(big_n + 1);
    for (size_t k = 0; k < big_n; k++) big[k] = "hello world  \n\tab'll"[k % 20];
    memcpy(big + (1 << 20) - 1, "\xc3\xa9", 2);
    big[big_n] = '\0';
    write_file(tmp_path("big.txt"), big, big_n);
    snprintf(args, sizeof args, "--out %s %s/big.txt %s/doc1.txt", prefix, tmp_dir, tmp_dir);
    status = run_prepare(args, out, sizeof out);
    n = read_split(prefix, "val", got, MAX_TOKENS, &n_shards);
    const char *const big_doc[] = {big};
    m = expected_tokens(&t, big_doc, 1, want);
    snprintf(detail, sizeof detail, "%zu vs %zu tokens", n, m);
    check_true("prepare_text large file in pieces", status == 0 && n == m && memcmp(got, want, 2 * m) == 0, detail);
    memcpy(big + (1 << 20) + 5, "\xe2\x28", 2);
    write_file(tmp_path("big.txt"), big, big_n);
    free(big);

    typedef struct {
        const char *name, *args, *expect;
    } Bad;
    static const Bad bad[] = {
        {"invalid utf-8", "bad.txt doc1.txt", "bad.txt' is not valid UTF-8 at byte 5 (0xFF)"},
        {"invalid utf-8 late", "doc1.txt big.txt", "big.txt' is not valid UTF-8 at byte 1048581 (0xE2)"},
        {"cut character at end", "doc0.txt cut.txt", "cut.txt' is not valid UTF-8 at byte 3 (0xE2)"},
        {"empty file", "doc0.txt empty.txt", "empty.txt' is empty"},
        {"missing file", "doc0.txt nothere.txt", "cannot open"},
        {"one file", "doc0.txt", "need at least 2 documents"},
    };
    write_file(tmp_path("bad.txt"), "hello\xff world", 12);
    write_file(tmp_path("cut.txt"), "abc\xe2\x82", 5);
    write_file(tmp_path("empty.txt"), "", 0);
    const char *fresh = tmp_path("out/fresh");
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char files[512] = "", *f = files;
        char copy[256];
        snprintf(copy, sizeof copy, "%s", bad[k].args);
        for (char *tok = strtok(copy, " "); tok; tok = strtok(NULL, " "))
            f += snprintf(f, (size_t)(files + sizeof files - f), " %s/%s", tmp_dir, tok);
        snprintf(args, sizeof args, "--out %s%s", fresh, files);
        status = run_prepare(args, out, sizeof out);
        char name[96], shard[700];
        snprintf(name, sizeof name, "prepare_text bad input: %s", bad[k].name);
        snprintf(shard, sizeof shard, "%s_val_000000.bin", fresh);
        out[strcspn(out, "\n")] = '\0';
        int ok = status == 1 && strstr(out, "prepare_text: error:") == out && strstr(out, bad[k].expect) &&
                 !file_exists(shard);
        check_true(name, ok, out);
    }
    status = run_prepare("--shard-tokens 0 --out x a b", out, sizeof out);
    out[strcspn(out, "\n")] = '\0';
    check_true("prepare_text bad option", status == 1 && strstr(out, "--shard-tokens 0 is out of range"), out);
    bpe_free(&t);
}

int main(int argc, char **argv) {
    util_set_progname("test_bpe");
    if (argc == 2 && strcmp(argv[1], "--print-text") == 0) {
        fputs(test_text, stdout);
        return 0;
    }
    if (!mkdtemp(tmp_dir)) die("cannot make a temporary folder");
    test_gpt2();
    test_small_vocab();
    test_llmc_files();
    test_utf8();
    test_prepare_text();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) warn("could not remove %s", tmp_dir);
    return check_finish();
}
