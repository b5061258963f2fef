/* dataloader.c: batches from llm.c token shards for rank r of world W; see dataloader.h.
 * layout: shard discovery (glob, check, windows), orders (permutations), reading, then the API. */
#include "dataloader.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/rng.h"
#include "../common/util.h"
#include "shard.h"

_Static_assert(sizeof(DataLoaderState) == 10 * 8, "DataLoaderState: ten 8-byte fields, no padding (checkpoint layout)");

/* ---------------------------------------------------------------------------------------------
 * shards */

static int64_t global_window(const DataLoader *dl) { return (int64_t)dl->B * dl->T * dl->world; }

static int check_config(const DataLoaderConfig *cfg, char *why, size_t why_len) {
    if (cfg->B < 1 || cfg->T < 1)
        snprintf(why, why_len, "dataloader: batch shape B %d x T %d must be positive", cfg->B, cfg->T);
    else if (cfg->world < 1 || cfg->rank < 0 || cfg->rank >= cfg->world)
        snprintf(why, why_len, "dataloader: rank %d is not in [0, world %d)", cfg->rank, cfg->world);
    else if (cfg->vocab < 1)
        snprintf(why, why_len, "dataloader: vocabulary size %d must be positive", cfg->vocab);
    return why[0] ? -1 : 0;
}

static int compare_paths(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* dl->paths: the files matching pattern, sorted by name */
static int find_shards(DataLoader *dl, const char *pattern, char *why, size_t why_len) {
    glob_t g;
    int rc = glob(pattern, GLOB_NOSORT, NULL, &g);
    if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
        snprintf(why, why_len, "dataloader: no files match '%s'", pattern);
    } else if (rc != 0) {
        snprintf(why, why_len, "dataloader: cannot list the files matching '%s' (read error or out of memory)", pattern);
    } else {
        dl->paths = callocCheck(g.gl_pathc, sizeof(char *));
        dl->n_shards = (int)g.gl_pathc;
        for (int s = 0; s < dl->n_shards; s++) {
            size_t len = strlen(g.gl_pathv[s]) + 1;
            dl->paths[s] = memcpy(mallocCheck(len), g.gl_pathv[s], len);
        }
        qsort(dl->paths, (size_t)dl->n_shards, sizeof(char *), compare_paths);
    }
    globfree(&g);
    return why[0] ? -1 : 0;
}

/* dl->n_windows and the totals; every shard must be valid and hold at least one window */
static int count_windows(DataLoader *dl, char *why, size_t why_len) {
    int64_t G = global_window(dl);
    dl->n_windows = callocCheck((size_t)dl->n_shards, sizeof(int64_t));
    for (int s = 0; s < dl->n_shards; s++) {
        size_t n = shard_check(dl->paths[s], why, why_len);
        if (n == 0) return -1;
        dl->n_windows[s] = ((int64_t)n - 1) / G;
        if (dl->n_windows[s] == 0) {
            snprintf(why, why_len,
                     "dataloader: shard '%s' holds %zu tokens, fewer than one global batch of B*T*world + 1 = "
                     "%lld (B %d, T %d, world %d)", dl->paths[s], n, (long long)(G + 1), dl->B, dl->T, dl->world);
            return -1;
        }
        dl->total_tokens += (int64_t)n;
        dl->batches_per_epoch += dl->n_windows[s];
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * orders: sigma_e over shards, pi_{e,s} over a shard's windows */

/* One rng stream per (seed, epoch, shard); shard -1 is the shard order. rng_init hashes the sum. */
static uint64_t stream_seed(uint64_t seed, int64_t epoch, int64_t shard) {
    return seed + 0x9e3779b97f4a7c15ULL * (uint64_t)(epoch + 1) + 0xd1b54a32d192ed03ULL * (uint64_t)(shard + 2);
}

/* order = 0..n-1, then Fisher-Yates shuffled if shuffle */
static void fill_order(int64_t *order, int64_t n, int shuffle, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    if (!shuffle) return;
    Rng r;
    rng_init(&r, seed);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = rng_below(&r, (uint32_t)(i + 1));
        int64_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
}

static void ensure_shard_order(DataLoader *dl, int64_t epoch) {
    if (dl->order_epoch == epoch) return;
    fill_order(dl->shard_order, dl->n_shards, dl->shuffle, stream_seed(dl->seed, epoch, -1));
    dl->order_epoch = epoch;
}

/* both orders for the current position; returns the current shard */
static int64_t ensure_orders(DataLoader *dl) {
    ensure_shard_order(dl, dl->epoch);
    int64_t s = dl->shard_order[dl->shard_pos];
    if (dl->window_epoch != dl->epoch || dl->window_shard != s) {
        fill_order(dl->window_order, dl->n_windows[s], dl->shuffle, stream_seed(dl->seed, dl->epoch, s));
        dl->window_epoch = dl->epoch;
        dl->window_shard = s;
    }
    return s;
}

static void advance(DataLoader *dl) {
    if (++dl->window_pos < dl->n_windows[dl->shard_order[dl->shard_pos]]) return;
    dl->window_pos = 0;
    if (++dl->shard_pos < dl->n_shards) return;
    dl->shard_pos = 0;
    dl->epoch++;
}

/* ---------------------------------------------------------------------------------------------
 * reading */

static int ensure_open(DataLoader *dl, int64_t s, char *why, size_t why_len) {
    if (dl->fd_shard == s) return 0;
    if (dl->fd >= 0) close(dl->fd);
    dl->fd_shard = -1;
    dl->fd = open(dl->paths[s], O_RDONLY | O_CLOEXEC);
    if (dl->fd < 0) {
        snprintf(why, why_len, "dataloader: cannot open shard '%s': %s", dl->paths[s], strerror(errno));
        return -1;
    }
    dl->fd_shard = s;
    return 0;
}

/* NULL, or why n_bytes at offset could not be read */
static const char *read_exact(int fd, void *buf, size_t n_bytes, off_t offset) {
    char *p = buf;
    while (n_bytes > 0) {
        ssize_t got = pread(fd, p, n_bytes, offset);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return strerror(errno);
        if (got == 0) return "unexpected end of file";
        p += got;
        n_bytes -= (size_t)got;
        offset += got;
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * API */

int dataloader_init(DataLoader *dl, const DataLoaderConfig *cfg, char *why, size_t why_len) {
    memset(dl, 0, sizeof *dl);
    dl->fd = dl->fd_shard = -1;
    why[0] = '\0';
    if (check_config(cfg, why, why_len)) return -1;
    dl->B = cfg->B;
    dl->T = cfg->T;
    dl->rank = cfg->rank;
    dl->world = cfg->world;
    dl->vocab = cfg->vocab;
    dl->shuffle = cfg->shuffle != 0;
    dl->seed = cfg->seed;
    if (find_shards(dl, cfg->pattern, why, why_len) || count_windows(dl, why, why_len)) {
        dataloader_free(dl);
        return -1;
    }
    int64_t max_windows = 0;
    for (int s = 0; s < dl->n_shards; s++) max_windows = dl->n_windows[s] > max_windows ? dl->n_windows[s] : max_windows;
    dl->shard_order = mallocCheck(sizeof(int64_t) * (size_t)dl->n_shards);
    dl->window_order = mallocCheck(sizeof(int64_t) * (size_t)max_windows);
    dl->buf = mallocCheck(sizeof(uint16_t) * ((size_t)dl->B * dl->T + 1));
    dataloader_reset(dl);
    return 0;
}

void dataloader_init_or_die(DataLoader *dl, const DataLoaderConfig *cfg) {
    char why[1024];
    if (dataloader_init(dl, cfg, why, sizeof why)) die("%s", why);
}

void dataloader_free(DataLoader *dl) {
    if (dl->fd >= 0) close(dl->fd);
    for (int s = 0; s < dl->n_shards && dl->paths; s++) free(dl->paths[s]);
    free(dl->paths);
    free(dl->n_windows);
    free(dl->shard_order);
    free(dl->window_order);
    free(dl->buf);
    memset(dl, 0, sizeof *dl);
    dl->fd = dl->fd_shard = -1;
}

int dataloader_next(DataLoader *dl, int *inputs, int *targets, char *why, size_t why_len) {
    why[0] = '\0';
    int64_t s = ensure_orders(dl);
    size_t BT = (size_t)dl->B * dl->T;
    int64_t first = dl->window_order[dl->window_pos] * global_window(dl) + (int64_t)dl->rank * (int64_t)BT;
    if (ensure_open(dl, s, why, why_len)) return -1;
    const char *err = read_exact(dl->fd, dl->buf, sizeof(uint16_t) * (BT + 1), (off_t)(SHARD_HEADER_BYTES + 2 * first));
    if (err) {
        snprintf(why, why_len, "dataloader: cannot read tokens %lld..%lld of shard '%s': %s (changed since it was checked?)",
                 (long long)first, (long long)(first + (int64_t)BT), dl->paths[s], err);
        return -1;
    }
    for (size_t i = 0; i <= BT; i++) {
        if (dl->buf[i] >= dl->vocab) {
            snprintf(why, why_len, "dataloader: shard '%s' token %lld is %d, not below the vocabulary size %d",
                     dl->paths[s], (long long)(first + (int64_t)i), dl->buf[i], dl->vocab);
            return -1;
        }
    }
    for (size_t i = 0; i < BT; i++) {
        inputs[i] = dl->buf[i];
        targets[i] = dl->buf[i + 1];
    }
    advance(dl);
    return 0;
}

void dataloader_next_or_die(DataLoader *dl, int *inputs, int *targets) {
    char why[1024];
    if (dataloader_next(dl, inputs, targets, why, sizeof why)) die("%s", why);
}

void dataloader_reset(DataLoader *dl) {
    dl->epoch = dl->shard_pos = dl->window_pos = 0;
    dl->order_epoch = dl->window_epoch = dl->window_shard = -1;
}

void dataloader_state(const DataLoader *dl, DataLoaderState *st) {
    *st = (DataLoaderState){dl->epoch, dl->shard_pos, dl->window_pos, dl->seed, dl->B, dl->T, dl->world,
                            dl->shuffle, dl->n_shards, dl->total_tokens};
}

int dataloader_restore(DataLoader *dl, const DataLoaderState *st, char *why, size_t why_len) {
    why[0] = '\0';
    const struct { const char *name; int64_t saved, have; } field[] = {
        {"B", st->B, dl->B}, {"T", st->T, dl->T}, {"world", st->world, dl->world}, {"shuffle", st->shuffle, dl->shuffle},
        {"shard count", st->n_shards, dl->n_shards}, {"total tokens", st->total_tokens, dl->total_tokens},
    };
    for (size_t f = 0; f < sizeof field / sizeof field[0]; f++) {
        if (field[f].saved != field[f].have) {
            snprintf(why, why_len, "dataloader: the saved data position has %s %lld, this loader %lld",
                     field[f].name, (long long)field[f].saved, (long long)field[f].have);
            return -1;
        }
    }
    if (st->seed != dl->seed) {
        snprintf(why, why_len, "dataloader: the saved data position has seed %llu, this loader %llu",
                 (unsigned long long)st->seed, (unsigned long long)dl->seed);
        return -1;
    }
    if (st->epoch < 0 || st->shard_pos < 0 || st->shard_pos >= dl->n_shards || st->window_pos < 0) {
        snprintf(why, why_len, "dataloader: the saved data position (epoch %lld, shard %lld, window %lld) is invalid",
                 (long long)st->epoch, (long long)st->shard_pos, (long long)st->window_pos);
        return -1;
    }
    ensure_shard_order(dl, st->epoch);
    int64_t s = dl->shard_order[st->shard_pos];
    if (st->window_pos >= dl->n_windows[s]) {
        snprintf(why, why_len, "dataloader: the saved data position (window %lld) is past the %lld windows of shard '%s'",
                 (long long)st->window_pos, (long long)dl->n_windows[s], dl->paths[s]);
        return -1;
    }
    dl->epoch = st->epoch;
    dl->shard_pos = st->shard_pos;
    dl->window_pos = st->window_pos;
    return 0;
}
