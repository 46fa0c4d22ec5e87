/*
 * netserver: one process holding a listening TCP socket and a unix socketpair, for the CRIU
 * driver's tests.
 *
 *   netserver DIR
 *
 * Daemonizes like tree.c (fork, setsid in the child), works in DIR, listens on 127.0.0.1 on a
 * port the kernel picks, and writes "PID PORT\n" to DIR/port (through a rename). For each
 * connection it reads one line, increments an in-memory counter, passes the counter through
 * its socketpair (written on one end, read back on the other) and answers
 * "hello N via socketpair\n", then closes the connection. After a restore, N goes on from
 * the value held in memory.
 *
 * Built with: cc -O2 -pthread -static -o netserver netserver.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what)
{
    perror(what);
    _exit(1);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: netserver DIR\n");
        return 2;
    }
    if (chdir(argv[1]))
        die("chdir");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid > 0)
        return 0;
    if (setsid() < 0)
        die("setsid");

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ls < 0)
        die("socket");
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (bind(ls, (struct sockaddr *)&addr, sizeof(addr)))
        die("bind");
    if (listen(ls, 16))
        die("listen");
    socklen_t alen = sizeof(addr);
    if (getsockname(ls, (struct sockaddr *)&addr, &alen))
        die("getsockname");

    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp))
        die("socketpair");

    char tmp[64];
    snprintf(tmp, sizeof(tmp), "port.%d", (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        die("fopen");
    fprintf(f, "%d %d\n", (int)getpid(), (int)ntohs(addr.sin_port));
    fclose(f);
    if (rename(tmp, "port"))
        die("rename");

    unsigned long n = 0;
    for (;;) {
        int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            die("accept");
        }
        char req[128];
        ssize_t got = read(c, req, sizeof(req));
        (void)got;
        n++;
        unsigned long back = 0;
        if (write(sp[0], &n, sizeof(n)) != sizeof(n) || read(sp[1], &back, sizeof(back)) != sizeof(back))
            die("socketpair");
        char out[128];
        int len = snprintf(out, sizeof(out), "hello %lu via socketpair\n", back);
        if (write(c, out, len) < 0) {
            /* the client went away: fine */
        }
        close(c);
    }
}
