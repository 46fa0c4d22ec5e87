/*
 * counter: the simplest checkpointable workload of reel's tests.
 *
 *   counter [FILE [INTERVAL_MS]]        (defaults: /tmp/counter, 10)
 *
 * Increments an in-memory counter every INTERVAL_MS milliseconds and writes its value, as
 * one decimal line, both to FILE (rewritten in place at offset 0 through a descriptor kept
 * open) and to stdout. It never reads FILE: after a restore the count continues from the
 * value held in memory at checkpoint time, which is what the tests check. Read the FIRST
 * line of FILE (a shorter value written over a longer one can leave a stale tail for a
 * moment). SIGTERM and SIGINT end it cleanly (it is usually PID 1 of its container, where
 * the default action of those signals is ignored).
 *
 * Built with: cc -O2 -pthread -static -o counter counter.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 && argv[1][0] ? argv[1] : "/tmp/counter";
    long interval_ms = argc > 2 ? strtol(argv[2], NULL, 10) : 10;
    if (interval_ms <= 0)
        interval_ms = 10;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "counter: open %s: %s\n", path, strerror(errno));
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    unsigned long long n = 0;
    size_t last_len = 0;
    struct timespec ts = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
    while (!stop) {
        n++;
        char buf[32];
        int len = snprintf(buf, sizeof(buf), "%llu\n", n);
        if (pwrite(fd, buf, (size_t)len, 0) != len)
            fprintf(stderr, "counter: write %s: %s\n", path, strerror(errno));
        if ((size_t)len < last_len && ftruncate(fd, len) != 0)
            fprintf(stderr, "counter: truncate %s: %s\n", path, strerror(errno));
        last_len = (size_t)len;
        fputs(buf, stdout);
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop)
            ;
        ts.tv_sec = interval_ms / 1000;
        ts.tv_nsec = (interval_ms % 1000) * 1000000L;
    }
    close(fd);
    return 0;
}
