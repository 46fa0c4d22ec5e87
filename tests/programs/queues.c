/*
 * queues: one process whose descriptors hold data CRIU saves after an image entry (a
 * payload), for the tests of reel-core's CRIU image reader.
 *
 *   queues DIR
 *
 * Daemonizes like tree.c (fork, setsid in the child), works in DIR, and keeps, never read:
 *   - a pipe holding "pipe payload"                         (pipes-data.img)
 *   - a unix datagram socketpair with "queued datagram"     (sk-queues.img)
 *     queued on one end
 *   - a TCP connection over 127.0.0.1 whose server end has  (tcp-stream-*.img, with
 *     "to the server" to read and whose client end has      --tcp-established)
 *     "to the client" to read
 *   - the file DIR/ghost, open and deleted, holding          (ghost-file-*.img)
 *     "deleted but open"
 * then writes "PID\n" to DIR/pid (through a rename) and sleeps until killed.
 *
 * Built with: cc -O2 -pthread -static -o queues queues.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
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

static void put(int fd, const char *s)
{
    if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
        die("write");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: queues DIR\n");
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

    int p[2];
    if (pipe(p))
        die("pipe");
    put(p[1], "pipe payload");

    int sp[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sp))
        die("socketpair");
    put(sp[0], "queued datagram");

    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0)
        die("socket");
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&addr, sizeof(addr)) || listen(ls, 1))
        die("listen");
    socklen_t alen = sizeof(addr);
    if (getsockname(ls, (struct sockaddr *)&addr, &alen))
        die("getsockname");
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&addr, sizeof(addr)))
        die("connect");
    int s = accept(ls, NULL, NULL);
    if (s < 0)
        die("accept");
    close(ls);
    put(c, "to the server");
    put(s, "to the client");

    int g = open("ghost", O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (g < 0)
        die("open ghost");
    put(g, "deleted but open");
    if (unlink("ghost"))
        die("unlink ghost");

    char tmp[64];
    snprintf(tmp, sizeof(tmp), "pid.%d", (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        die("fopen");
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    if (rename(tmp, "pid"))
        die("rename");
    for (;;)
        pause();
}
