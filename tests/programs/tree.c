/*
 * tree: a small process tree for the CRIU driver's tests.
 *
 *   tree DIR
 *
 * Daemonizes (the started process forks and exits; the child calls setsid() and becomes
 * the root of the tree), works in DIR and keeps stdio as given (the tests pass /dev/null).
 *
 * The root R
 *   - ticks with a timerfd every 50 ms and writes an in-memory counter, +1 per wakeup, to
 *     DIR/counter (fixed width, pwrite at offset 0 through a descriptor kept open: the file
 *     never changes size, so CRIU's size check passes on restore; it never reads the file,
 *     so after a restore the count goes on from the value held in memory);
 *   - keeps DIR/root.log open (O_WRONLY|O_APPEND) and appends a line every 20 ticks;
 *   - reads fixed-size records {id, count} from a pipe shared with its two children and
 *     writes the last count of each child to DIR/received (fixed width).
 * Child A (id 1) counts SIGALRMs of an ITIMER_REAL interval timer (50 ms) and sends its count
 * over the pipe at each one. Child B (id 2) sends its count every 100 ms (nanosleep).
 *
 * When both files are first written, R writes "R A B\n" (the pids) to DIR/pids (through a
 * rename, so it is complete when it exists). Children die of SIGPIPE when R is gone; R exits
 * when the pipe has no writer left.
 *
 * Built with: cc -O2 -pthread -static -o tree tree.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

struct rec {
    uint64_t id;
    uint64_t count;
};

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

static void die(const char *what)
{
    perror(what);
    _exit(1);
}

static void send_rec(int fd, uint64_t id, uint64_t count)
{
    struct rec r = { id, count };
    if (write(fd, &r, sizeof(r)) != sizeof(r) && errno != EINTR)
        _exit(0); /* the root is gone */
}

static void child_a(int wfd)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = { { 0, 50000 }, { 0, 50000 } };
    if (setitimer(ITIMER_REAL, &it, NULL))
        die("setitimer");
    uint64_t sent = 0;
    for (;;) {
        pause();
        while (sent < (uint64_t)alarms)
            send_rec(wfd, 1, ++sent);
    }
}

static void child_b(int wfd)
{
    uint64_t n = 0;
    struct timespec ts = { 0, 100 * 1000 * 1000 };
    for (;;) {
        nanosleep(&ts, NULL);
        send_rec(wfd, 2, ++n);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: tree DIR\n");
        return 2;
    }
    if (chdir(argv[1]))
        die("chdir");

    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid > 0)
        return 0; /* the starter exits; the tree lives on */
    if (setsid() < 0)
        die("setsid");

    int counter = open("counter", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int received = open("received", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int log = open("root.log", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (counter < 0 || received < 0 || log < 0)
        die("open");

    int p[2];
    if (pipe(p))
        die("pipe");

    pid_t a = fork();
    if (a < 0)
        die("fork");
    if (a == 0) {
        close(p[0]);
        child_a(p[1]);
    }
    pid_t b = fork();
    if (b < 0)
        die("fork");
    if (b == 0) {
        close(p[0]);
        child_b(p[1]);
    }
    close(p[1]);

    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    if (tfd < 0)
        die("timerfd_create");
    struct itimerspec its = { { 0, 50 * 1000 * 1000 }, { 0, 50 * 1000 * 1000 } };
    if (timerfd_settime(tfd, 0, &its, NULL))
        die("timerfd_settime");

    uint64_t n = 0, last_a = 0, last_b = 0;
    char buf[128];
    int len = snprintf(buf, sizeof(buf), "%020llu\n", 0ULL);
    pwrite(counter, buf, len, 0);
    len = snprintf(buf, sizeof(buf), "%020llu %020llu\n", 0ULL, 0ULL);
    pwrite(received, buf, len, 0);

    char tmp[64], line[64];
    snprintf(tmp, sizeof(tmp), "pids.%d", (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        die("fopen");
    fprintf(f, "%d %d %d\n", (int)getpid(), (int)a, (int)b);
    fclose(f);
    if (rename(tmp, "pids"))
        die("rename");

    for (;;) {
        struct pollfd fds[2] = { { tfd, POLLIN, 0 }, { p[0], POLLIN, 0 } };
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        if (fds[0].revents & POLLIN) {
            uint64_t exp;
            if (read(tfd, &exp, sizeof(exp)) == sizeof(exp)) {
                n++;
                len = snprintf(buf, sizeof(buf), "%020llu\n", (unsigned long long)n);
                pwrite(counter, buf, len, 0);
                if (n % 20 == 0) {
                    int l = snprintf(line, sizeof(line), "tick %llu\n", (unsigned long long)n);
                    if (write(log, line, l) < 0)
                        die("write");
                }
            }
        }
        if (fds[1].revents & (POLLIN | POLLHUP)) {
            struct rec r;
            ssize_t got = read(p[0], &r, sizeof(r));
            if (got == 0)
                return 0; /* no writer left */
            if (got == sizeof(r)) {
                if (r.id == 1)
                    last_a = r.count;
                else if (r.id == 2)
                    last_b = r.count;
                len = snprintf(buf, sizeof(buf), "%020llu %020llu\n", (unsigned long long)last_a,
                               (unsigned long long)last_b);
                pwrite(received, buf, len, 0);
            }
        }
    }
}
