/* comm_tcp.c: the TCP hub transport of comm.h ("tcp:HOST:PORT" and "file:PATH"): joining, then the
 * collectives with rank 0 as the hub.
 * Joining: rank 0 listens (tcp: on PORT, every interface; file: on a free port, then writes
 * "PORT NAME ADDR ...\n" to PATH.tmp and renames it to PATH: its host name (gethostname), then its
 * IPv4 addresses, loopback last, so a host name that does not resolve costs nothing); every other rank
 * tries the addresses in order (at most CONNECT_TRY_S each), retrying every RETRY_MS until its
 * deadline (rank 0 may start later; file: PATH is re-read each time, so a stale file from an old run
 * only delays it), and sends HELLO {magic, version, rank, world}. Rank 0 answers each HELLO at once
 * with {magic, version, 0, world}, so a rank with another world finds out, checks the rank (in range,
 * not taken) and, once all world - 1 have joined, sends READY to each; then it closes the listener and
 * removes PATH.
 * Collectives, as the hub sees them (every other rank sends its part and reads the answer):
 *   sum        per chunk of TCP_CHUNK_BYTES: read rank 1's chunk and add it, then rank 2's, ...; send
 *              the sum back to ranks 1, 2, ...: the order (x0 + x1) + x2 ... is fixed and the result
 *              the same on every rank
 *   allgather  read each rank's part into place, then send the whole buffer to every rank
 *   broadcast  send rank 0's bytes to every rank
 * Failures: during joining, -1 with a reason; in a collective, a closed connection or a socket error
 * ends the process naming this rank, the call and the peer; tcp_lost_peer lets a rank that waits on
 * something else (NCCL) notice a peer that is gone (rank 0 sees every rank; the others see rank 0,
 * which exits when it sees one go).
 * Limits: IPv4; all hosts of one byte order (floats travel raw). checked by: tests/test_comm.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../common/util.h"
#include "comm_internal.h"

#define TCP_MAGIC 0x70617468u           /* "path" */
#define TCP_VERSION 1u
#define TCP_CHUNK_BYTES ((size_t)4 << 20) /* hub scratch per sum: bounded whatever the buffer */
#define RETRY_MS 50                     /* between attempts to reach rank 0 */
#define READY_SLACK_S 2.0               /* a rank waits for READY this much past its own timeout */
#define HELLO_WAIT_S 5.0                /* rank 0 drops a connection that says nothing for this long */
#define CONNECT_TRY_S 2.0               /* per address of rank 0 */
#define MAX_ADDRS 16                    /* addresses of rank 0 in the rendezvous file */

typedef struct {
    uint32_t magic, version, rank, world;
} Hello;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int ms_left(double deadline) {
    double left = deadline - now_s();
    return left <= 0 ? 0 : (int)(left * 1e3) + 1;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------------------------------------
 * joining: I/O with a deadline; 0 done, -1 timeout, -2 closed by the peer, -3 error (errno) */

static int recv_by(int fd, void *buf, size_t n, double deadline) {
    char *p = buf;
    while (n) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int ms = ms_left(deadline);
        if (ms == 0) return -1;
        int ready = poll(&pfd, 1, ms);
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) return -3;
        if (ready == 0) continue;
        ssize_t k = recv(fd, p, n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -3;
        if (k == 0) return -2;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int send_hello(int fd, uint32_t rank, uint32_t world) {
    Hello h = {TCP_MAGIC, TCP_VERSION, rank, world};
    return send(fd, &h, sizeof h, MSG_NOSIGNAL) == (ssize_t)sizeof h ? 0 : -3;
}

static void no_delay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* "HOST:PORT" (the last colon splits) into host and port; 0, or -1 with a reason */
static int parse_host_port(const char *address, char *host, size_t host_len, int *port, char *why, size_t len) {
    const char *colon = strrchr(address, ':');
    long p;
    if (!colon || colon == address || (size_t)(colon - address) >= host_len || parse_long(colon + 1, 1, 65535, &p)) {
        snprintf(why, len, "rendezvous tcp:%s: give tcp:HOST:PORT with PORT in [1, 65535]", address);
        return -1;
    }
    memcpy(host, address, (size_t)(colon - address));
    host[colon - address] = '\0';
    *port = (int)p;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * rank 0 */

static int hub_listen(int port, int *fd_out, int *port_out, char *why, size_t len) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {0};
    socklen_t alen = sizeof a;
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons((uint16_t)port);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        listen(fd, 128) || getsockname(fd, (struct sockaddr *)&a, &alen)) {
        snprintf(why, len, "rank 0: cannot listen on port %d: %s", port, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    *fd_out = fd;
    *port_out = ntohs(a.sin_port);
    return 0;
}

/* this machine's IPv4 addresses as text, loopback (127.x) after the others */
static void print_addresses(FILE *fp) {
    struct ifaddrs *list;
    if (getifaddrs(&list)) return;
    for (int loopback = 0; loopback < 2; loopback++)
        for (struct ifaddrs *a = list; a; a = a->ifa_next) {
            char text[INET_ADDRSTRLEN];
            if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET) continue;
            struct in_addr ip = ((struct sockaddr_in *)a->ifa_addr)->sin_addr;
            if ((ntohl(ip.s_addr) >> 24 == 127) != loopback) continue;
            if (inet_ntop(AF_INET, &ip, text, sizeof text)) fprintf(fp, " %s", text);
        }
    freeifaddrs(list);
}

/* "PORT NAME ADDR ...\n" to path, atomically (path.tmp, then rename) */
static int write_address(const char *path, int port, char *why, size_t len) {
    char host[256], tmp[4096];
    if (gethostname(host, sizeof host)) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    int ok = fp && fprintf(fp, "%d %s", port, host) > 0;
    if (ok) print_addresses(fp);
    if (ok) ok = fputc('\n', fp) != EOF;
    if (fp) ok = fclose(fp) == 0 && ok;
    if (!ok || rename(tmp, path)) {
        snprintf(why, len, "rank 0: cannot write the rendezvous file '%s': %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static void list_missing(const TcpGroup *g, char *buf, size_t len) {
    int shown = 0, n = 0;
    buf[0] = '\0';
    for (int r = 1; r < g->world; r++) {
        if (g->fd[r] >= 0) continue;
        if (shown < 8) n += snprintf(buf + n, len - (size_t)n, "%s%d", shown ? ", " : "", r);
        else if (shown == 8) n += snprintf(buf + n, len - (size_t)n, ", ...");
        shown++;
        if ((size_t)n >= len) break;
    }
}

/* Accepts world - 1 ranks by the deadline. Connections that do not say HELLO are dropped. */
static int hub_accept(TcpGroup *g, int lfd, const char *where, double timeout_s, double deadline, char *why, size_t len) {
    int joined = 0;
    while (joined < g->world - 1) {
        int ms = ms_left(deadline);
        if (ms == 0) {
            char missing[128];
            list_missing(g, missing, sizeof missing);
            snprintf(why, len, "rank 0: only %d of %d ranks joined at %s within %g s; missing rank %s", joined + 1,
                     g->world, where, timeout_s, missing);
            return -1;
        }
        struct pollfd pfd = {lfd, POLLIN, 0};
        if (poll(&pfd, 1, ms) <= 0) continue;
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) continue;
        Hello h;
        double hello_by = now_s() + HELLO_WAIT_S < deadline ? now_s() + HELLO_WAIT_S : deadline;
        if (recv_by(fd, &h, sizeof h, hello_by) || h.magic != TCP_MAGIC || h.version != TCP_VERSION ||
            send_hello(fd, 0, (uint32_t)g->world)) {
            close(fd);
            continue;
        }
        if (h.world != (uint32_t)g->world || h.rank < 1 || h.rank >= (uint32_t)g->world || g->fd[h.rank] >= 0) {
            if (h.world != (uint32_t)g->world)
                snprintf(why, len, "rank 0: rank %u joined with world %u, this rank has world %d (give every rank the "
                         "same world)", h.rank, h.world, g->world);
            else if (h.rank < 1 || h.rank >= (uint32_t)g->world)
                snprintf(why, len, "rank 0: a process joined as rank %u, outside 1..%d", h.rank, g->world - 1);
            else
                snprintf(why, len, "rank 0: two processes joined as rank %u (give each process its own rank)", h.rank);
            close(fd);
            return -1;
        }
        no_delay(fd);
        g->fd[h.rank] = fd;
        joined++;
    }
    for (int r = 1; r < g->world; r++) {
        uint32_t ready = TCP_MAGIC;
        if (send(g->fd[r], &ready, sizeof ready, MSG_NOSIGNAL) != (ssize_t)sizeof ready) {
            snprintf(why, len, "rank 0: rank %d left before the run started: %s", r, strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int hub_join(TcpGroup *g, int file, const char *address, double timeout_s, char *why, size_t len) {
    char host[256];
    int port = 0, lfd;
    if (!file && parse_host_port(address, host, sizeof host, &port, why, len)) return -1;
    if (hub_listen(port, &lfd, &port, why, len)) return -1;
    if (file && write_address(address, port, why, len)) {
        close(lfd);
        return -1;
    }
    char where[4200];
    snprintf(where, sizeof where, file ? "the address in '%s'" : "%s", address);
    int rc = hub_accept(g, lfd, where, timeout_s, now_s() + timeout_s, why, len);
    close(lfd);
    if (file) unlink(address);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * other ranks */

/* A connected socket to host:port by the deadline, or -1 with the last error in last. */
static int connect_by(const char *host, int port, double deadline, char *last, size_t len) {
    struct addrinfo hints = {0}, *list;
    char port_s[16];
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port_s, sizeof port_s, "%d", port);
    int err = getaddrinfo(host, port_s, &hints, &list);
    if (err) {
        snprintf(last, len, "cannot resolve '%.255s': %s", host, gai_strerror(err));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = list; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) continue;
        int flags = fcntl(fd, F_GETFL, 0), soerr = 0;
        socklen_t slen = sizeof soerr;
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        int rc = connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc && errno == EINPROGRESS) {
            struct pollfd pfd = {fd, POLLOUT, 0};
            rc = poll(&pfd, 1, ms_left(deadline)) == 1 && !getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) && !soerr ? 0 : -1;
            if (soerr) errno = soerr;
            else if (rc) errno = ETIMEDOUT;
        }
        if (rc) {
            snprintf(last, len, "%s", strerror(errno));
            close(fd);
            fd = -1;
            continue;
        }
        fcntl(fd, F_SETFL, flags);
    }
    freeaddrinfo(list);
    return fd;
}

/* The hub's addresses (host[0..n)) and port: the one of tcp:HOST:PORT, or the rendezvous file's; their
 * count, or 0 with the reason in last. */
static int hub_addresses(int file, const char *address, char host[MAX_ADDRS][256], int *port, char *last, size_t len) {
    if (!file) return parse_host_port(address, host[0], sizeof host[0], port, last, len) ? 0 : 1;
    FILE *fp = fopen(address, "r");
    if (!fp) {
        snprintf(last, len, "'%s': %s", address, strerror(errno));
        return 0;
    }
    int n = 0;
    if (fscanf(fp, "%d", port) == 1)
        while (n < MAX_ADDRS && fscanf(fp, "%255s", host[n]) == 1) n++;
    fclose(fp);
    if (!n) snprintf(last, len, "'%s' does not hold 'PORT NAME ...'", address);
    return n;
}

/* Connects to the first of the hub's addresses that answers HELLO as rank 0; the socket, or -1. */
static int reach_hub(TcpGroup *g, int file, const char *address, double deadline, Hello *h, char *last, size_t len) {
    char host[MAX_ADDRS][256];
    int port = 0, n = hub_addresses(file, address, host, &port, last, len);
    for (int i = 0; i < n; i++) {
        double by = now_s() + CONNECT_TRY_S < deadline ? now_s() + CONNECT_TRY_S : deadline;
        int fd = connect_by(host[i], port, by, last, len);
        if (fd < 0) continue;
        if (!send_hello(fd, (uint32_t)g->rank, (uint32_t)g->world) && !recv_by(fd, h, sizeof *h, by) &&
            h->magic == TCP_MAGIC && h->version == TCP_VERSION)
            return fd;
        snprintf(last, len, "%.255s:%d accepted but did not answer as rank 0 of a pathgpt run", host[i], port);
        close(fd);
    }
    return -1;
}

static int rank_join(TcpGroup *g, int file, const char *address, double timeout_s, char *why, size_t len) {
    char last[512] = "no attempt", host[256];
    int port;
    if (!file && parse_host_port(address, host, sizeof host, &port, why, len)) return -1;
    double deadline = now_s() + timeout_s;
    Hello h;
    while ((g->fd[0] = reach_hub(g, file, address, deadline, &h, last, sizeof last)) < 0) {
        if (ms_left(deadline) == 0) {
            snprintf(why, len, "rank %d: could not join rank 0 (%s%s) within %g s: %s", g->rank, file ? "file:" : "tcp:",
                     address, timeout_s, last);
            return -1;
        }
        sleep_ms(RETRY_MS);
    }
    if (h.world != (uint32_t)g->world) {
        snprintf(why, len, "rank %d: rank 0 has world %u, this rank has world %d (give every rank the same world)", g->rank,
                 h.world, g->world);
        return -1;
    }
    uint32_t ready;
    int rc = recv_by(g->fd[0], &ready, sizeof ready, now_s() + timeout_s + READY_SLACK_S);
    if (rc == 0 && ready == TCP_MAGIC) {
        no_delay(g->fd[0]);
        return 0;
    }
    if (rc == -1)
        snprintf(why, len, "rank %d: joined rank 0, but not every rank joined within %g s", g->rank, timeout_s);
    else
        snprintf(why, len, "rank %d: rank 0 gave up before the run started (see its message)", g->rank);
    return -1;
}

int tcp_join(TcpGroup *g, int rank, int world, int file, const char *address, double timeout_s, char *why, size_t why_len) {
    g->rank = rank;
    g->world = world;
    g->fd = mallocCheck(sizeof(int) * (size_t)world);
    for (int r = 0; r < world; r++) g->fd[r] = -1;
    int rc = rank == 0 ? hub_join(g, file, address, timeout_s, why, why_len)
                       : rank_join(g, file, address, timeout_s, why, why_len);
    if (rc) tcp_leave(g);
    return rc;
}

int tcp_lost_peer(const TcpGroup *g) {
    for (int r = 0; r < g->world; r++) {
        struct pollfd pfd = {g->fd[r], POLLRDHUP, 0};
        if (g->fd[r] >= 0 && poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR))) return r;
    }
    return -1;
}

void tcp_leave(TcpGroup *g) {
    for (int r = 0; r < g->world; r++)
        if (g->fd[r] >= 0) close(g->fd[r]);
    free(g->fd);
    g->fd = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * collectives: all-or-die I/O with peer (on a non-hub rank always 0) */

static void send_all(const TcpGroup *g, int peer, const void *buf, size_t n, const char *call) {
    const char *p = buf;
    while (n) {
        ssize_t k = send(g->fd[peer], p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) die("rank %d: %s: sending to rank %d failed: %s (did it exit? see its messages)", g->rank, call, peer,
                       strerror(errno));
        p += k;
        n -= (size_t)k;
    }
}

static void recv_all(const TcpGroup *g, int peer, void *buf, size_t n, const char *call) {
    char *p = buf;
    while (n) {
        ssize_t k = recv(g->fd[peer], p, n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) die("rank %d: %s: receiving from rank %d failed: %s", g->rank, call, peer, strerror(errno));
        if (k == 0) die("rank %d: %s: rank %d closed its connection (did it exit? see its messages)", g->rank, call, peer);
        p += k;
        n -= (size_t)k;
    }
}

static void add_into(void *acc, const void *x, size_t n_bytes, size_t elem_bytes) {
    if (elem_bytes == sizeof(double)) {
        double *a = acc;
        const double *b = x;
        for (size_t i = 0; i < n_bytes / sizeof(double); i++) a[i] += b[i];
    } else {
        float *a = acc;
        const float *b = x;
        for (size_t i = 0; i < n_bytes / sizeof(float); i++) a[i] += b[i];
    }
}

void tcp_sum(TcpGroup *g, void *buf, size_t n, size_t elem_bytes, const char *call) {
    char *p = buf;
    size_t total = n * elem_bytes, chunk = TCP_CHUNK_BYTES < total ? TCP_CHUNK_BYTES : total;
    if (g->world == 1 || total == 0) return;
    if (g->rank != 0) {
        for (size_t off = 0; off < total; off += chunk) {
            size_t k = total - off < chunk ? total - off : chunk;
            send_all(g, 0, p + off, k, call);
            recv_all(g, 0, p + off, k, call);
        }
        return;
    }
    char *tmp = mallocCheck(chunk);
    for (size_t off = 0; off < total; off += chunk) {
        size_t k = total - off < chunk ? total - off : chunk;
        for (int r = 1; r < g->world; r++) {
            recv_all(g, r, tmp, k, call);
            add_into(p + off, tmp, k, elem_bytes);
        }
        for (int r = 1; r < g->world; r++) send_all(g, r, p + off, k, call);
    }
    free(tmp);
}

void tcp_broadcast(TcpGroup *g, void *bytes, size_t n_bytes, const char *call) {
    if (g->rank != 0) {
        recv_all(g, 0, bytes, n_bytes, call);
        return;
    }
    for (int r = 1; r < g->world; r++) send_all(g, r, bytes, n_bytes, call);
}

void tcp_allgather(TcpGroup *g, void *buf, size_t bytes_per_rank, const char *call) {
    char *p = buf;
    size_t total = bytes_per_rank * (size_t)g->world;
    if (g->rank != 0) {
        send_all(g, 0, p + (size_t)g->rank * bytes_per_rank, bytes_per_rank, call);
        recv_all(g, 0, p, total, call);
        return;
    }
    for (int r = 1; r < g->world; r++) recv_all(g, r, p + (size_t)r * bytes_per_rank, bytes_per_rank, call);
    for (int r = 1; r < g->world; r++) send_all(g, r, p, total, call);
}
