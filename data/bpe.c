/* bpe.c: the GPT-2 byte-level BPE tokenizer; the format and the algorithm are in bpe.h.
 * layout: UTF-8 and character classes, the pre-tokenizer, the merge loop and bpe_encode, then the
 * loaders (encoder.json, vocab.bpe, llm.c's tokenizer file), the writer and the shard check. */
#include "bpe.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/util.h"
#include "shard.h"

#ifdef PATHGPT_HAVE_UTF8PROC
#include <utf8proc.h>
#endif

#define NO_MERGE INT32_MAX
#define STALE (-1)            /* a pair rank that must be looked up again */
#define MAX_ALPHABET_CP 0x144 /* byte_to_unicode() maps every byte below U+0144 */
#define SHARD_CHECK_BLOCK (1 << 20)
#define MAX_TEXT_FILE ((size_t)1 << 28) /* encoder.json or vocab.bpe: GPT-2's are 1.0 and 0.5 MB */

static int fail(char *why, size_t why_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *why, size_t why_len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
    return -1;
}

/* Makes room for need elements of elem bytes in *p (capacity *cap, doubling). */
static void grow(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*(void **)p, c * elem);
    if (!q) die("out of memory growing a tokenizer buffer to %zu bytes", c * elem);
    *(void **)p = q;
    *cap = c;
}

/* ------------------------------------------------------------------------------------------ */
/* UTF-8 and character classes */

/* The character at s[0, n): its length 1..4 and *cp, or 0 if it is not whole, valid UTF-8. */
static int utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    int len;
    uint32_t c, min;
    if (b >= 0xC2 && b <= 0xDF) { len = 2; c = b & 0x1F; min = 0x80; }
    else if (b >= 0xE0 && b <= 0xEF) { len = 3; c = b & 0x0F; min = 0x800; }
    else if (b >= 0xF0 && b <= 0xF4) { len = 4; c = b & 0x07; min = 0x10000; }
    else return 0;
    if ((size_t)len > n) return 0;
    for (int k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        c = c << 6 | (s[k] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    *cp = c;
    return len;
}

size_t bpe_utf8_prefix(const char *text, size_t n) {
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        int len = utf8_decode(s + i, n - i, &cp);
        if (!len) break;
        i += len;
    }
    return i;
}

typedef enum { CH_LETTER, CH_NUMBER, CH_SPACE, CH_OTHER } CharClass; /* \p{L}, \p{N}, \s, the rest */

#ifdef PATHGPT_HAVE_UTF8PROC
static const char *const unicode_missing = NULL;
static CharClass class_above_ascii(uint32_t cp) {
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: return CH_LETTER;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO: return CH_NUMBER;
    case UTF8PROC_CATEGORY_ZS: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP: return CH_SPACE;
    default: return cp == 0x85 ? CH_SPACE : CH_OTHER; /* NEL: White_Space, category Cc */
    }
}
#else
static const char *const unicode_missing =
    "this build has no Unicode character classes (install libutf8proc-dev, then make)";
static CharClass class_above_ascii(uint32_t cp) {
    (void)cp;
    die("GPT-2 BPE encoding: %s", unicode_missing);
}
#endif

static CharClass char_class(uint32_t cp) {
    if (cp >= 0x80) return class_above_ascii(cp);
    if ((cp | 0x20) - 'a' < 26) return CH_LETTER;
    if (cp - '0' < 10) return CH_NUMBER;
    if (cp == ' ' || (cp >= '\t' && cp <= '\r')) return CH_SPACE;
    return CH_OTHER;
}

/* ------------------------------------------------------------------------------------------ */
/* pre-tokenizer: the regex of bpe.h, on valid UTF-8 */

/* The class of the character at s[i] (valid UTF-8) and its length. */
static CharClass class_at(const uint8_t *s, size_t n, size_t i, int *len) {
    uint32_t cp = 0;
    *len = utf8_decode(s + i, n - i, &cp);
    return char_class(cp);
}

/* End of the run of characters of class c that starts at s[i]. */
static size_t run_end(const uint8_t *s, size_t n, size_t i, CharClass c) {
    int len;
    while (i < n && class_at(s, n, i, &len) == c) i += (size_t)len;
    return i;
}

/* Length of the contraction ('s 't 're 've 'm 'll 'd) after an apostrophe, or 0. */
static size_t contraction_len(const uint8_t *s, size_t n) {
    static const char *const suffix[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    for (size_t k = 0; k < sizeof suffix / sizeof suffix[0]; k++) {
        size_t len = strlen(suffix[k]);
        if (len <= n && memcmp(s, suffix[k], len) == 0) return len;
    }
    return 0;
}

/* End of the pre-token (the regex's match) that starts at s[i], i < n. */
static size_t pretoken_end(const uint8_t *s, size_t n, size_t i) {
    if (s[i] == '\'') {
        size_t k = contraction_len(s + i + 1, n - i - 1);
        if (k) return i + 1 + k;
    }
    int len;
    CharClass c = class_at(s, n, i, &len);
    size_t j = i + (size_t)len;
    if (s[i] == ' ' && j < n) { /* " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+" */
        CharClass next = class_at(s, n, j, &len);
        if (next != CH_SPACE) return run_end(s, n, j, next);
    }
    if (c != CH_SPACE) return run_end(s, n, i, c);
    size_t last = i; /* start of the whitespace run's last character */
    while (j < n && class_at(s, n, j, &len) == CH_SPACE) {
        last = j;
        j += (size_t)len;
    }
    /* "\s+(?!\S)" takes the run up to its end of text, or all but its last character when a
     * non-space follows; a single space character before a non-space falls to "\s+". */
    return (j == n || last == i) ? j : last;
}

size_t bpe_stable_prefix(const char *text, size_t n) {
    const uint8_t *s = (const uint8_t *)text;
    for (size_t c = n; c-- > 1;) {
        if (!(s[c] == ' ' || (s[c] >= '\t' && s[c] <= '\r'))) continue;
        size_t b = c - 1; /* start of the character that ends at c */
        while (b > 0 && c - b < 4 && (s[b] & 0xC0) == 0x80) b--;
        uint32_t cp;
        if (utf8_decode(s + b, c - b, &cp) == (int)(c - b) && char_class(cp) != CH_SPACE) return c;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* merges and encoding */

static uint64_t pair_key(int a, int b) { return ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1; }

static size_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

/* The slot of pair (a, b): its entry, or the empty slot where it would go. */
static BpeMerge *merge_slot(BpeMerge *table, size_t cap, int a, int b) {
    uint64_t key = pair_key(a, b);
    size_t i = hash_u64(key) & (cap - 1);
    while (table[i].key != 0 && table[i].key != key) i = (i + 1) & (cap - 1);
    return &table[i];
}

static int32_t pair_rank(const Bpe *t, int a, int b) {
    const BpeMerge *m = merge_slot(t->merges, t->merge_cap, a, b);
    return m->key ? m->rank : NO_MERGE;
}

typedef struct {
    int *ids;      /* (len) tokens of the pre-token being merged */
    int32_t *rank; /* (len) rank[k]: merge rank of (ids[k], ids[k+1]) */
    size_t cap;
} Scratch;

/* Merges pair (a, b) into m at every non-overlapping occurrence, left to right, in place; ranks of
 * pairs that now touch m are marked STALE. Returns the new length. */
static size_t merge_all(int *ids, int32_t *rank, size_t n, int a, int b, int m) {
    size_t j = 0;
    for (size_t i = 0; i < n; j++) {
        if (i + 1 < n && ids[i] == a && ids[i + 1] == b) {
            ids[j] = m;
            rank[j] = STALE;
            if (j > 0) rank[j - 1] = STALE;
            i += 2;
        } else {
            ids[j] = ids[i];
            rank[j] = rank[i];
            i++;
        }
    }
    return j;
}

/* Appends the BPE tokens of one pre-token's bytes w[0, len) to out. */
static void encode_pretoken(const Bpe *t, const uint8_t *w, size_t len, Scratch *sc, BpeTokens *out) {
    size_t cap = sc->cap; /* ids and rank share one capacity */
    grow(&sc->ids, &cap, len, sizeof(int));
    grow(&sc->rank, &sc->cap, len, sizeof(int32_t));
    int *ids = sc->ids;
    int32_t *rank = sc->rank;
    for (size_t k = 0; k < len; k++) ids[k] = t->byte_id[w[k]];
    for (size_t k = 0; k + 1 < len; k++) rank[k] = pair_rank(t, ids[k], ids[k + 1]);
    size_t n = len;
    while (n > 1) {
        size_t best = 0;
        for (size_t k = 1; k + 1 < n; k++)
            if (rank[k] < rank[best]) best = k;
        if (rank[best] == NO_MERGE) break;
        int a = ids[best], b = ids[best + 1];
        n = merge_all(ids, rank, n, a, b, merge_slot(t->merges, t->merge_cap, a, b)->id);
        for (size_t k = 0; k + 1 < n; k++)
            if (rank[k] == STALE) rank[k] = pair_rank(t, ids[k], ids[k + 1]);
    }
    grow(&out->ids, &out->cap, out->n + n, sizeof(int));
    memcpy(out->ids + out->n, ids, n * sizeof(int));
    out->n += n;
}

const char *bpe_encode_unavailable(const Bpe *t) {
    if (!t->merges)
        return "this tokenizer has no merges (llm.c's tokenizer file holds none): load encoder.json and "
               "vocab.bpe to encode";
    return unicode_missing;
}

int bpe_encode(const Bpe *t, const char *text, size_t n, BpeTokens *out, size_t *bad_at) {
    const char *why = bpe_encode_unavailable(t);
    if (why) die("GPT-2 BPE encoding: %s", why);
    size_t valid = bpe_utf8_prefix(text, n);
    if (valid < n) {
        *bad_at = valid;
        return -1;
    }
    const uint8_t *s = (const uint8_t *)text;
    Scratch sc = {0};
    for (size_t i = 0; i < n;) {
        size_t j = pretoken_end(s, n, i);
        encode_pretoken(t, s + i, j - i, &sc, out);
        i = j;
    }
    free(sc.ids);
    free(sc.rank);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* loading encoder.json and vocab.bpe */

/* GPT-2's byte-to-unicode map: printable bytes ! .. ~, ¡ .. ¬, ® .. ÿ stand for themselves, the
 * other 68 bytes for U+0100 + k in byte order. Fills u2b, its inverse (-1 off the alphabet). */
static void unicode_to_byte_map(int u2b[MAX_ALPHABET_CP]) {
    for (int cp = 0; cp < MAX_ALPHABET_CP; cp++) u2b[cp] = -1;
    int k = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        u2b[printable ? b : 256 + k++] = b;
    }
}

/* Whole file of at most max bytes into a malloc'd buffer (NUL-terminated), or NULL with a reason. */
static char *read_whole(const char *path, size_t max, size_t *n, char *why, size_t why_len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fail(why, why_len, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    char *buf = NULL;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fail(why, why_len, "'%s' is not a regular file", path);
    } else if ((size_t)st.st_size > max) {
        fail(why, why_len, "'%s' is %lld bytes, more than a tokenizer file can be (%zu)", path, (long long)st.st_size, max);
    } else {
        buf = mallocCheck((size_t)st.st_size + 1);
        *n = fread(buf, 1, (size_t)st.st_size, fp);
        if (*n != (size_t)st.st_size) {
            fail(why, why_len, "cannot read '%s': %s", path, ferror(fp) ? strerror(errno) : "file shrank");
            free(buf);
            buf = NULL;
        } else {
            buf[*n] = '\0';
        }
    }
    fclose(fp);
    return buf;
}

typedef struct {
    const char *path;
    const uint8_t *s;
    size_t n, i;
    const int *u2b;
    char *why;
    size_t why_len;
} Json;

static void json_ws(Json *j) {
    while (j->i < j->n && (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\n' || j->s[j->i] == '\r'))
        j->i++;
}

static int json_expect(Json *j, char c, const char *what) {
    json_ws(j);
    if (j->i < j->n && j->s[j->i] == c) {
        j->i++;
        return 0;
    }
    return fail(j->why, j->why_len, "%s: byte %zu: expected %s (not GPT-2's encoder.json?)", j->path, j->i, what);
}

static int json_hex4(Json *j, uint32_t *v) {
    *v = 0;
    for (int k = 0; k < 4; k++, j->i++) {
        int c = j->i < j->n ? j->s[j->i] : -1;
        int lower = c | 0x20;
        int d = (c >= '0' && c <= '9') ? c - '0' : (lower >= 'a' && lower <= 'f') ? lower - 'a' + 10 : -1;
        if (d < 0) return fail(j->why, j->why_len, "%s: byte %zu: bad \\u escape", j->path, j->i);
        *v = *v << 4 | (uint32_t)d;
    }
    return 0;
}

/* The next character of a JSON string body (after escapes), or -1 on an error. */
static int json_char(Json *j, uint32_t *cp) {
    const uint8_t *s = j->s;
    size_t at = j->i;
    if (s[at] < 0x20) return fail(j->why, j->why_len, "%s: byte %zu: control character in a string", j->path, at);
    if (s[at] != '\\') {
        int len = utf8_decode(s + at, j->n - at, cp);
        if (!len) return fail(j->why, j->why_len, "%s: byte %zu: not valid UTF-8", j->path, at);
        j->i += (size_t)len;
        return 0;
    }
    if (at + 1 >= j->n) return fail(j->why, j->why_len, "%s: byte %zu: unfinished escape", j->path, at);
    j->i += 2;
    const char *simple = strchr("\"\\/bfnrt", s[at + 1]);
    if (simple && s[at + 1]) {
        *cp = (uint32_t)"\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
        return 0;
    }
    if (s[at + 1] != 'u') return fail(j->why, j->why_len, "%s: byte %zu: unknown escape", j->path, at);
    if (json_hex4(j, cp)) return -1;
    if (*cp >= 0xDC00 && *cp <= 0xDFFF) return fail(j->why, j->why_len, "%s: byte %zu: lone surrogate", j->path, at);
    if (*cp < 0xD800 || *cp > 0xDBFF) return 0;
    uint32_t lo;
    if (j->i + 2 > j->n || s[j->i] != '\\' || s[j->i + 1] != 'u')
        return fail(j->why, j->why_len, "%s: byte %zu: lone surrogate", j->path, at);
    j->i += 2;
    if (json_hex4(j, &lo)) return -1;
    if (lo < 0xDC00 || lo > 0xDFFF) return fail(j->why, j->why_len, "%s: byte %zu: bad surrogate pair", j->path, at);
    *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
    return 0;
}

/* A JSON string naming a token: its characters, mapped back to bytes, are appended to
 * (*bytes, *n, *cap). */
static int json_token(Json *j, char **bytes, size_t *n, size_t *cap) {
    if (json_expect(j, '"', "'\"' opening a token")) return -1;
    size_t start = j->i;
    while (j->i < j->n && j->s[j->i] != '"') {
        uint32_t cp;
        if (json_char(j, &cp)) return -1;
        if (cp >= MAX_ALPHABET_CP || j->u2b[cp] < 0)
            return fail(j->why, j->why_len, "%s: byte %zu: token has U+%04X, not in GPT-2's byte alphabet",
                        j->path, start, cp);
        grow(bytes, cap, *n + 1, 1);
        (*bytes)[(*n)++] = (char)j->u2b[cp];
    }
    return json_expect(j, '"', "'\"' closing a token");
}

static int json_id(Json *j, long *id) {
    json_ws(j);
    size_t at = j->i;
    *id = 0;
    while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9' && *id <= BPE_MAX_VOCAB)
        *id = *id * 10 + (j->s[j->i++] - '0');
    if (j->i == at || (j->i < j->n && strchr(".eE-+0123456789", j->s[j->i]) && j->s[j->i]))
        return fail(j->why, j->why_len, "%s: byte %zu: expected a token id (an integer 0..%d)", j->path, at,
                    BPE_MAX_VOCAB - 1);
    return 0;
}

/* Reads {"token": id, ...} into t->piece_bytes / t->piece_start, ordered by id. */
static int load_encoder(Bpe *t, const char *path, char *why, size_t why_len) {
    size_t n;
    char *text = read_whole(path, MAX_TEXT_FILE, &n, why, why_len);
    if (!text) return -1;
    int u2b[MAX_ALPHABET_CP];
    unicode_to_byte_map(u2b);
    Json j = {path, (const uint8_t *)text, n, 0, u2b, why, why_len};
    typedef struct { size_t start, len; long id; } Entry; /* one "token": id, in file order */
    Entry *e = NULL;
    char *bytes = NULL;
    size_t n_bytes = 0, bytes_cap = 0, n_tok = 0, e_cap = 0;
    int rc = json_expect(&j, '{', "'{'");
    json_ws(&j);
    while (rc == 0 && !(j.i < n && text[j.i] == '}')) {
        grow(&e, &e_cap, n_tok + 1, sizeof(Entry));
        e[n_tok].start = n_bytes;
        rc = json_token(&j, &bytes, &n_bytes, &bytes_cap);
        e[n_tok].len = n_bytes - e[n_tok].start;
        if (rc == 0) rc = json_expect(&j, ':', "':'");
        if (rc == 0) rc = json_id(&j, &e[n_tok].id);
        if (rc == 0 && ++n_tok > BPE_MAX_VOCAB)
            rc = fail(why, why_len, "%s: more than %d tokens (ids must fit in uint16 shards)", path, BPE_MAX_VOCAB);
        json_ws(&j);
        if (rc == 0 && !(j.i < n && text[j.i] == '}')) rc = json_expect(&j, ',', "',' or '}'");
    }
    if (rc == 0) rc = json_expect(&j, '}', "'}'");
    json_ws(&j);
    if (rc == 0 && j.i != n) rc = fail(why, why_len, "%s: byte %zu: text after the closing '}'", path, j.i);
    if (rc == 0 && n_tok == 0) rc = fail(why, why_len, "%s: holds no tokens", path);
    long *where = mallocCheck(n_tok * sizeof(long)); /* (V) file entry of each id, -1 if none yet */
    for (size_t k = 0; k < n_tok; k++) where[k] = -1;
    for (size_t k = 0; k < n_tok && rc == 0; k++) {
        if (e[k].id >= (long)n_tok)
            rc = fail(why, why_len, "%s: id %ld is out of range: %zu tokens need ids 0..%zu", path, e[k].id, n_tok,
                      n_tok - 1);
        else if (where[e[k].id] >= 0)
            rc = fail(why, why_len, "%s: id %ld is given to two tokens", path, e[k].id);
        else
            where[e[k].id] = (long)k;
    }
    if (rc == 0) {
        t->vocab_size = (int)n_tok;
        t->piece_bytes = mallocCheck(n_bytes);
        t->piece_start = mallocCheck((n_tok + 1) * sizeof(uint32_t));
        size_t at = 0;
        for (size_t id = 0; id < n_tok; id++) {
            const Entry *x = &e[where[id]];
            t->piece_start[id] = (uint32_t)at;
            memcpy(t->piece_bytes + at, bytes + x->start, x->len);
            at += x->len;
        }
        t->piece_start[n_tok] = (uint32_t)at;
    }
    free(where);
    free(text);
    free(bytes);
    free(e);
    return rc;
}

/* An index from token bytes to ids: open addressing over ids (-1 empty), cap a power of two. */
typedef struct {
    int32_t *slot;
    size_t cap;
} PieceIndex;

static size_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t k = 0; k < n; k++) h = (h ^ (uint8_t)s[k]) * 1099511628211ULL;
    return hash_u64(h);
}

/* The slot holding the token with bytes s[0, n), or the empty slot where it would go. */
static int32_t *piece_slot(const Bpe *t, const PieceIndex *x, const char *s, size_t n) {
    size_t i = hash_bytes(s, n) & (x->cap - 1);
    for (;; i = (i + 1) & (x->cap - 1)) {
        int32_t id = x->slot[i];
        if (id < 0) return &x->slot[i];
        size_t len = t->piece_start[id + 1] - t->piece_start[id];
        if (len == n && memcmp(t->piece_bytes + t->piece_start[id], s, n) == 0) return &x->slot[i];
    }
}

static int piece_lookup(const Bpe *t, const PieceIndex *x, const char *s, size_t n) {
    return *piece_slot(t, x, s, n);
}

static int index_pieces(const Bpe *t, PieceIndex *x, const char *path, char *why, size_t why_len) {
    x->cap = 1;
    while (x->cap < 2 * (size_t)t->vocab_size) x->cap *= 2;
    x->slot = mallocCheck(x->cap * sizeof(int32_t));
    for (size_t i = 0; i < x->cap; i++) x->slot[i] = -1;
    for (int id = 0; id < t->vocab_size; id++) {
        size_t len = t->piece_start[id + 1] - t->piece_start[id];
        int32_t *slot = piece_slot(t, x, t->piece_bytes + t->piece_start[id], len);
        if (*slot >= 0) return fail(why, why_len, "%s: tokens %d and %d are the same bytes", path, *slot, id);
        if (len == 0) return fail(why, why_len, "%s: token %d is empty", path, id);
        *slot = id;
    }
    return 0;
}

/* Appends the bytes that the characters of s[0, n) (UTF-8, GPT-2's alphabet) stand for. */
static int alphabet_to_bytes(const int *u2b, const uint8_t *s, size_t n, char **buf, size_t *len, size_t *cap) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = utf8_decode(s + i, n - i, &cp);
        if (!l || cp >= MAX_ALPHABET_CP || u2b[cp] < 0) return -1;
        grow(buf, cap, *len + 1, 1);
        (*buf)[(*len)++] = (char)u2b[cp];
        i += (size_t)l;
    }
    return 0;
}

/* One merge line "A B" (without its newline): enters pair (A, B) -> AB with the given rank. */
static int add_merge(Bpe *t, const PieceIndex *x, const int *u2b, const char *line, size_t len, int32_t rank,
                     char **buf, size_t *cap, const char *where, char *why, size_t why_len) {
    const char *sp = memchr(line, ' ', len);
    if (!sp || sp == line || sp == line + len - 1 || memchr(sp + 1, ' ', (size_t)(line + len - sp - 1)))
        return fail(why, why_len, "%s: expected two tokens separated by one space", where);
    size_t n = 0;
    if (alphabet_to_bytes(u2b, (const uint8_t *)line, (size_t)(sp - line), buf, &n, cap)) n = SIZE_MAX;
    size_t n_left = n;
    if (n != SIZE_MAX && alphabet_to_bytes(u2b, (const uint8_t *)sp + 1, (size_t)(line + len - sp - 1), buf, &n, cap))
        n = SIZE_MAX;
    if (n == SIZE_MAX) return fail(why, why_len, "%s: not UTF-8 in GPT-2's byte alphabet", where);
    int a = piece_lookup(t, x, *buf, n_left), b = piece_lookup(t, x, *buf + n_left, n - n_left);
    int made = piece_lookup(t, x, *buf, n);
    if (a < 0 || b < 0) return fail(why, why_len, "%s: merges a token that encoder.json does not have", where);
    if (made < 0) return fail(why, why_len, "%s: makes a token that encoder.json does not have", where);
    BpeMerge *slot = merge_slot(t->merges, t->merge_cap, a, b);
    if (slot->key) return fail(why, why_len, "%s: the same pair is merged on line %d", where, slot->rank + 2);
    *slot = (BpeMerge){pair_key(a, b), rank, made};
    return 0;
}

/* Reads vocab.bpe: "#version ..." then one merge "A B" per line, rank = line - 2. */
static int load_merges(Bpe *t, const PieceIndex *x, const char *path, char *why, size_t why_len) {
    size_t n;
    char *text = read_whole(path, MAX_TEXT_FILE, &n, why, why_len);
    if (!text) return -1;
    int u2b[MAX_ALPHABET_CP];
    unicode_to_byte_map(u2b);
    size_t n_lines = 1;
    for (size_t i = 0; i < n; i++) n_lines += text[i] == '\n';
    t->merge_cap = 1;
    while (t->merge_cap < 2 * n_lines) t->merge_cap *= 2;
    t->merges = callocCheck(t->merge_cap, sizeof(BpeMerge));
    int rc = 0;
    if (strncmp(text, "#version", 8) != 0)
        rc = fail(why, why_len, "%s: line 1 is not '#version: ...' (not GPT-2's vocab.bpe?)", path);
    char *buf = NULL, where[64 + 256];
    size_t cap = 0, line_no = 1;
    const char *p = memchr(text, '\n', n);
    for (p = p ? p + 1 : text + n; rc == 0 && p < text + n; line_no++) {
        const char *eol = memchr(p, '\n', (size_t)(text + n - p));
        size_t len = (size_t)((eol ? eol : text + n) - p);
        size_t body = len - (len > 0 && p[len - 1] == '\r');
        snprintf(where, sizeof where, "%s: line %zu ('%.*s')", path, line_no + 1, (int)(body < 40 ? body : 40), p);
        if (body == 0 && strspn(p, "\r\n") != (size_t)(text + n - p))
            rc = fail(why, why_len, "%s: line %zu is empty", path, line_no + 1);
        else if (body > 0)
            rc = add_merge(t, x, u2b, p, body, (int32_t)(line_no - 1), &buf, &cap, where, why, why_len);
        p += len + 1;
    }
    free(buf);
    free(text);
    return rc;
}

int bpe_init_json(Bpe *t, const char *encoder_json, const char *vocab_bpe, char *why, size_t why_len) {
    memset(t, 0, sizeof *t);
    t->eot = -1;
    PieceIndex x = {0};
    int rc = load_encoder(t, encoder_json, why, why_len);
    if (rc == 0) rc = index_pieces(t, &x, encoder_json, why, why_len);
    for (int b = 0; rc == 0 && b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = piece_lookup(t, &x, &c, 1);
        if (t->byte_id[b] < 0)
            rc = fail(why, why_len, "%s: no token for the byte 0x%02X (not a byte-level BPE vocabulary)", encoder_json, b);
    }
    if (rc == 0) {
        t->eot = piece_lookup(t, &x, "<|endoftext|>", 13);
        rc = load_merges(t, &x, vocab_bpe, why, why_len);
    }
    free(x.slot);
    if (rc) bpe_free(t);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* llm.c's tokenizer file */

int bpe_init_file(Bpe *t, const char *path, char *why, size_t why_len) {
    memset(t, 0, sizeof *t);
    t->eot = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    size_t n;
    uint8_t *buf = (uint8_t *)read_whole(path, 4 * 256 + (size_t)BPE_MAX_VOCAB * 256, &n, why, why_len);
    if (!buf) return -1;
    uint32_t h[4];
    if (n >= 4 * 256) memcpy(h, buf, sizeof h);
    int rc = 0;
    if (n < 4 * 256)
        rc = fail(why, why_len, "tokenizer file '%s' is shorter than its 1024-byte header", path);
    else if (h[0] != BPE_FILE_MAGIC)
        rc = fail(why, why_len, "'%s' has magic %u, expected %d (not an llm.c tokenizer file?)", path, h[0], BPE_FILE_MAGIC);
    else if (h[1] != 1 && h[1] != 2)
        rc = fail(why, why_len, "tokenizer file '%s' has version %u, expected 1 or 2", path, h[1]);
    else if (h[2] == 0 || h[2] > BPE_MAX_VOCAB)
        rc = fail(why, why_len, "tokenizer file '%s' has vocabulary size %u, expected 1..%d", path, h[2], BPE_MAX_VOCAB);
    else if (h[1] == 1 && h[2] != BPE_GPT2_VOCAB)
        rc = fail(why, why_len, "tokenizer file '%s' is version 1 with %u tokens; version 1 means GPT-2's %d", path,
                  h[2], BPE_GPT2_VOCAB);
    else if (h[1] == 2 && h[3] >= h[2])
        rc = fail(why, why_len, "tokenizer file '%s' has end-of-text id %u, outside its %u tokens", path, h[3], h[2]);
    if (rc == 0) {
        t->vocab_size = (int)h[2];
        t->eot = h[1] == 1 ? BPE_GPT2_EOT : (int)h[3];
        t->piece_start = mallocCheck(((size_t)t->vocab_size + 1) * sizeof(uint32_t));
        t->piece_bytes = mallocCheck(n);
        size_t at = 4 * 256, out = 0;
        for (int id = 0; id < t->vocab_size && rc == 0; id++) {
            size_t len = at < n ? buf[at] : 0;
            if (at >= n || at + 1 + len > n)
                rc = fail(why, why_len, "tokenizer file '%s' ends inside token %d of %d (truncated?)", path, id,
                          t->vocab_size);
            else if (len == 0)
                rc = fail(why, why_len, "tokenizer file '%s': token %d has length 0", path, id);
            else {
                t->piece_start[id] = (uint32_t)out;
                memcpy(t->piece_bytes + out, buf + at + 1, len);
                out += len;
                at += 1 + len;
            }
        }
        t->piece_start[t->vocab_size] = (uint32_t)out;
        if (rc == 0 && at != n)
            rc = fail(why, why_len, "tokenizer file '%s' has %zu bytes after its last token", path, n - at);
    }
    free(buf);
    if (rc) bpe_free(t);
    return rc;
}

int bpe_write_file(const Bpe *t, const char *path, char *why, size_t why_len) {
    if (t->eot < 0) return fail(why, why_len, "cannot write '%s': llm.c's tokenizer file needs an end-of-text token", path);
    size_t n = 4 * 256 + (size_t)t->vocab_size + t->piece_start[t->vocab_size];
    uint8_t *buf = callocCheck(n, 1);
    uint32_t h[4] = {BPE_FILE_MAGIC, 2, (uint32_t)t->vocab_size, (uint32_t)t->eot};
    memcpy(buf, h, sizeof h);
    size_t at = 4 * 256;
    for (int id = 0; id < t->vocab_size; id++) {
        size_t len;
        const char *p = bpe_piece(t, id, &len);
        if (len == 0 || len > 255) {
            free(buf);
            return fail(why, why_len, "cannot write '%s': token %d is %zu bytes, the format allows 1..255", path, id, len);
        }
        buf[at++] = (uint8_t)len;
        memcpy(buf + at, p, len);
        at += len;
    }
    size_t plen = strlen(path);
    char *tmp = mallocCheck(plen + 5);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *fp = fopen(tmp, "wb");
    int ok = fp && fwrite(buf, 1, n, fp) == n && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    if (fp && fclose(fp) != 0) ok = 0;
    ok = ok && rename(tmp, path) == 0;
    int rc = ok ? 0 : fail(why, why_len, "cannot write '%s': %s", path, strerror(errno));
    if (!ok) unlink(tmp);
    free(tmp);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */

void bpe_free(Bpe *t) {
    free(t->piece_bytes);
    free(t->piece_start);
    free(t->merges);
    memset(t, 0, sizeof *t);
    t->eot = -1;
}

const char *bpe_piece(const Bpe *t, int id, size_t *n_bytes) {
    if (id < 0 || id >= t->vocab_size) return NULL;
    *n_bytes = t->piece_start[id + 1] - t->piece_start[id];
    return t->piece_bytes + t->piece_start[id];
}

size_t bpe_check_shard(const Bpe *t, const char *path, char *why, size_t why_len) {
    size_t n = shard_check(path, why, why_len);
    if (n == 0) return 0;
    uint16_t *block = mallocCheck(SHARD_CHECK_BLOCK * sizeof(uint16_t));
    for (size_t at = 0; at < n && n != 0; at += SHARD_CHECK_BLOCK) {
        size_t m = n - at < SHARD_CHECK_BLOCK ? n - at : SHARD_CHECK_BLOCK;
        shard_read(path, at, m, block);
        for (size_t k = 0; k < m; k++) {
            if (block[k] < t->vocab_size) continue;
            fail(why, why_len, "shard '%s': token %zu is id %u, outside the vocabulary 0..%d", path, at + k,
                 block[k], t->vocab_size - 1);
            n = 0;
            break;
        }
    }
    free(block);
    return n;
}
