/* zload-tls.h: makes zload (../shared/tools/zload.c) speak TLS without changing its source, so that the plain and the
   TLS runs of tls-vs-plain.sh use the same load generator, request for request:

       gcc -O2 -pthread -include Benchmarks/zload-tls.h -o zload-tls zload.c -lssl -lcrypto

   Forced in front of zload.c, it includes the system headers first (their include guards then make zload's own
   includes no-ops) and redefines connect, read and write: connect completes the TCP connect and then a TLS handshake,
   and read and write go through that connection's SSL object. The CA file that signs the server's certificate comes
   from $ZLOAD_TLS_CA; the handshake fails without it, as a client that verifies should. */
#ifndef ZLOAD_TLS_H
#define ZLOAD_TLS_H

/* zload.c asks for GNU extensions (memmem) before its includes; they have to be asked for before these. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

/* One SSL object per socket descriptor: zload passes descriptors around, never connection objects. */
#define ZLOAD_TLS_MAX_FD 65536
static SSL *zload_tls_by_fd[ZLOAD_TLS_MAX_FD];
static SSL_CTX *zload_tls_context;
static pthread_once_t zload_tls_once = PTHREAD_ONCE_INIT;

static void zload_tls_fail(const char *what) {
    fprintf(stderr, "zload-tls: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(2);
}

static void zload_tls_setup(void) {
    const char *ca = getenv("ZLOAD_TLS_CA");
    if (ca == NULL) zload_tls_fail("set ZLOAD_TLS_CA to the PEM file of the CA that signed the server's certificate");
    zload_tls_context = SSL_CTX_new(TLS_client_method());
    if (zload_tls_context == NULL) zload_tls_fail("SSL_CTX_new failed");
    if (SSL_CTX_load_verify_locations(zload_tls_context, ca, NULL) != 1) zload_tls_fail("cannot load ZLOAD_TLS_CA");
    SSL_CTX_set_verify(zload_tls_context, SSL_VERIFY_PEER, NULL);
}

static int zload_tls_connect(int fd, const struct sockaddr *address, socklen_t length) {
    if (connect(fd, address, length) < 0) return -1;
    pthread_once(&zload_tls_once, zload_tls_setup);
    if (fd >= ZLOAD_TLS_MAX_FD) zload_tls_fail("descriptor out of range");
    SSL *ssl = SSL_new(zload_tls_context);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) zload_tls_fail("SSL_new failed");
    if (SSL_connect(ssl) != 1) zload_tls_fail("TLS handshake failed");
    zload_tls_by_fd[fd] = ssl;
    return 0;
}

static ssize_t zload_tls_read(int fd, void *buffer, size_t count) {
    int n = SSL_read(zload_tls_by_fd[fd], buffer, count > 0x7fffffff ? 0x7fffffff : (int)count);
    return n > 0 ? n : -1;
}

static ssize_t zload_tls_write(int fd, const void *buffer, size_t count) {
    int n = SSL_write(zload_tls_by_fd[fd], buffer, count > 0x7fffffff ? 0x7fffffff : (int)count);
    return n > 0 ? n : -1;
}

#define connect(fd, address, length) zload_tls_connect(fd, address, length)
#define read(fd, buffer, count) zload_tls_read(fd, buffer, count)
#define write(fd, buffer, count) zload_tls_write(fd, buffer, count)

#endif
