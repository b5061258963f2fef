/* shard.c: llm.c-format token shards; see shard.h. */
#include "shard.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/util.h"

size_t shard_check(const char *path, char *why, size_t why_len) {
    why[0] = '\0';
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(why, why_len, "cannot open shard '%s': %s", path, strerror(errno));
        return 0;
    }
    int32_t header[SHARD_HEADER_INTS];
    size_t got = fread(header, 4, SHARD_HEADER_INTS, fp);
    struct stat st;
    int stat_ok = fstat(fileno(fp), &st) == 0;
    fclose(fp);
    if (got != SHARD_HEADER_INTS) {
        snprintf(why, why_len, "shard '%s' is shorter than its %d-byte header (truncated?)", path, SHARD_HEADER_BYTES);
    } else if (header[0] != SHARD_MAGIC) {
        snprintf(why, why_len, "shard '%s' has magic %d, expected %d (not an llm.c token shard?)", path, header[0], SHARD_MAGIC);
    } else if (header[1] != SHARD_VERSION) {
        snprintf(why, why_len, "shard '%s' has version %d, expected %d", path, header[1], SHARD_VERSION);
    } else if (header[2] <= 0) {
        snprintf(why, why_len, "shard '%s' holds %d tokens, expected a positive count", path, header[2]);
    } else if (!stat_ok) {
        snprintf(why, why_len, "cannot stat shard '%s'", path);
    } else if ((size_t)st.st_size != SHARD_HEADER_BYTES + 2 * (size_t)header[2]) {
        snprintf(why, why_len, "shard '%s' is %lld bytes, its header says %d tokens = %zu bytes (truncated or corrupt)",
                 path, (long long)st.st_size, header[2], SHARD_HEADER_BYTES + 2 * (size_t)header[2]);
    }
    return why[0] ? 0 : (size_t)header[2];
}

size_t shard_count_or_die(const char *path) {
    char why[512];
    size_t n = shard_check(path, why, sizeof why);
    if (n == 0) die("%s", why);
    return n;
}

void shard_read(const char *path, size_t offset, size_t n, uint16_t *out) {
    FILE *fp = fopenCheck(path, "rb");
    if (fseek(fp, (long)(SHARD_HEADER_BYTES + 2 * offset), SEEK_SET) != 0) die("cannot seek in shard '%s'", path);
    freadCheck(out, sizeof(uint16_t), n, fp);
    fcloseCheck(fp);
}

int shard_write(const char *path, const uint16_t *tokens, size_t n) {
    if (n == 0 || n > INT32_MAX) { errno = EINVAL; return -1; }
    size_t len = strlen(path);
    char *tmp = mallocCheck(len + 5);
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".tmp", 5);
    int32_t header[SHARD_HEADER_INTS] = {SHARD_MAGIC, SHARD_VERSION, (int32_t)n};
    FILE *fp = fopen(tmp, "wb");
    int ok = fp != NULL;
    ok = ok && fwrite(header, 4, SHARD_HEADER_INTS, fp) == SHARD_HEADER_INTS;
    ok = ok && fwrite(tokens, 2, n, fp) == n;
    ok = ok && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    if (fp && fclose(fp) != 0) ok = 0;
    ok = ok && rename(tmp, path) == 0;
    if (!ok) {
        int e = errno;
        unlink(tmp);
        errno = e;
    }
    free(tmp);
    return ok ? 0 : -1;
}
