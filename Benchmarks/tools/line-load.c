/* The caller of Benchmarks/proxy-vs-nginx.sh's TCP service when called directly: wrk's shape for a newline-framed
 * service (one thread, epoll, CONNECTIONS connections, one request in flight on each).
 *
 *   line-load HOST PORT CONNECTIONS SECONDS [EXPECTED]
 *
 * Sends "q\n", waits for one reply line, checks it is EXPECTED (default "hello"), sends the next; after one second of
 * warm-up counts replies for SECONDS and prints `rate=N errors=E`. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: line-load HOST PORT CONNECTIONS SECONDS [EXPECTED]\n"); return 2; }
    int connections = atoi(argv[3]);
    double seconds = atof(argv[4]);
    const char *expected = argc > 5 ? argv[5] : "hello";
    size_t expected_len = strlen(expected);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
    inet_pton(AF_INET, argv[1], &address.sin_addr);
    int poll = epoll_create1(0);
    int one = 1;
    char (*lines)[256] = calloc(connections, 256);
    size_t *filled = calloc(connections, sizeof *filled);
    int *fds = calloc(connections, sizeof *fds);
    for (int i = 0; i < connections; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fds[i], (struct sockaddr *)&address, sizeof address) < 0) { perror("line-load: connect"); return 1; }
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event event = { .events = EPOLLIN, .data.u32 = i };
        epoll_ctl(poll, EPOLL_CTL_ADD, fds[i], &event);
        if (write(fds[i], "q\n", 2) != 2) { perror("line-load: write"); return 1; }
    }
    double start = now() + 1, end = start + seconds;
    long replies = 0, errors = 0;
    struct epoll_event events[256];
    char buffer[4096];
    for (;;) {
        double t = now();
        if (t >= end) break;
        int count = epoll_wait(poll, events, 256, 100);
        int measuring = t >= start;
        for (int e = 0; e < count; e++) {
            int i = events[e].data.u32;
            ssize_t got = read(fds[i], buffer, sizeof buffer);
            if (got <= 0) {
                if (got < 0 && errno == EINTR) continue;
                fprintf(stderr, "line-load: connection %d closed\n", i);
                return 1;
            }
            for (ssize_t k = 0; k < got; k++) {
                if (buffer[k] != '\n') {
                    if (filled[i] < 255) lines[i][filled[i]++] = buffer[k];
                    continue;
                }
                if (filled[i] != expected_len || memcmp(lines[i], expected, expected_len) != 0) errors++;
                else if (measuring) replies++;
                filled[i] = 0;
                if (write(fds[i], "q\n", 2) != 2) { perror("line-load: write"); return 1; }
            }
        }
    }
    printf("rate=%.0f errors=%ld\n", replies / seconds, errors);
    return 0;
}
