/* The legacy TCP service of Benchmarks/proxy-vs-nginx.sh: the TCP twin of nginx serving a 5-byte file.
 *
 *   line-service PORT [REPLY]
 *
 * Newline framing (the `tcp` adapter's default): every request line read gets REPLY (default "hello") and a newline.
 * One thread and epoll, like nginx with one worker; pipelined lines are answered in order, all replies of one read in
 * one write. Runs until killed. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>

#define MAX_OUT 65536

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: line-service PORT [REPLY]\n"); return 2; }
    const char *reply = argc > 2 ? argv[2] : "hello";
    size_t reply_len = strlen(reply);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0 || listen(listener, 1024) < 0) {
        perror("line-service: bind/listen");
        return 1;
    }
    int poll = epoll_create1(0);
    struct epoll_event event = { .events = EPOLLIN, .data.fd = listener };
    epoll_ctl(poll, EPOLL_CTL_ADD, listener, &event);
    struct epoll_event events[256];
    static char in[16384], out[MAX_OUT];
    for (;;) {
        int count = epoll_wait(poll, events, 256, -1);
        for (int i = 0; i < count; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int client;
                while ((client = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event added = { .events = EPOLLIN, .data.fd = client };
                    epoll_ctl(poll, EPOLL_CTL_ADD, client, &added);
                }
                continue;
            }
            ssize_t got = read(fd, in, sizeof in);
            if (got <= 0) {
                if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                close(fd);  /* also leaves the epoll set */
                continue;
            }
            /* A partial line at the end of a read is answered with the read that completes it; the benchmark's
             * callers send one short line at a time, so it never splits in practice. */
            size_t used = 0;
            for (ssize_t k = 0; k < got; k++) {
                if (in[k] != '\n') continue;
                if (used + reply_len + 1 > MAX_OUT) break;
                memcpy(out + used, reply, reply_len);
                used += reply_len;
                out[used++] = '\n';
            }
            if (used > 0 && write(fd, out, used) < 0) close(fd);
        }
    }
}
