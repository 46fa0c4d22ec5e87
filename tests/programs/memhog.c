/*
 * memhog: a workload holding N MiB of anonymous memory that feels every pause.
 *
 *   memhog MIB [DIR]        (DIR default /tmp)
 *
 * Maps MIB MiB of private anonymous memory and fills it: the first half with compressible
 * text (words drawn from a small vocabulary), the second half with pseudo-random bytes. Then
 * it creates DIR/memhog.ready and ticks every millisecond: each tick measures the time since
 * the previous one, and every gap longer than 5 ms is appended to DIR/memhog.stalls as
 * "<CLOCK_REALTIME ms at the end of the gap> <gap ms>" (so a benchmark can attribute stalls to
 * the window of an operation); the longest gap so far is kept in DIR/memhog.max (rewritten).
 * A tick also dirties one word of the buffer, as a real workload would.
 *
 * Built with: cc -O2 -pthread -static -o memhog memhog.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double now_ms(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const char *words[] = {
    "checkpoint", "container", "memory", "process", "restore", "kernel", "socket", "thread",
    "the", "of", "and", "a", "to", "in", "is", "for", "that", "with", "on", "as", "page",
    "frozen", "archive", "evidence", "incident", "responder", "secret", "timer", "signal",
    "file", "descriptor", "namespace", "cgroup", "image", "dump", "stream", "zstd", "tar",
};

int main(int argc, char **argv)
{
    long mib = argc > 1 ? strtol(argv[1], NULL, 10) : 64;
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    if (mib <= 0)
        mib = 64;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    size_t size = (size_t)mib << 20;
    unsigned char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                              -1, 0);
    if (mem == MAP_FAILED) {
        perror("memhog: mmap");
        return 1;
    }
    size_t half = size / 2, pos = 0;
    size_t nwords = sizeof(words) / sizeof(words[0]);
    while (pos < half) {
        const char *w = words[next() % nwords];
        size_t len = strlen(w);
        if (pos + len + 1 > half)
            break;
        memcpy(mem + pos, w, len);
        pos += len;
        mem[pos++] = (next() % 9 == 0) ? '\n' : ' ';
    }
    memset(mem + pos, ' ', half - pos);
    for (size_t i = half; i + 8 <= size; i += 8) {
        uint64_t v = next();
        memcpy(mem + i, &v, 8);
    }

    char path[512];
    snprintf(path, sizeof(path), "%s/memhog.stalls", dir);
    int stalls = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    snprintf(path, sizeof(path), "%s/memhog.max", dir);
    int maxfd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    snprintf(path, sizeof(path), "%s/memhog.ready", dir);
    int ready = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (stalls < 0 || maxfd < 0 || ready < 0) {
        fprintf(stderr, "memhog: cannot create files in %s: %s\n", dir, strerror(errno));
        return 1;
    }
    dprintf(ready, "%ld\n", mib);
    close(ready);

    double last = now_ms(CLOCK_MONOTONIC), max = 0;
    struct timespec tick = {0, 1000000L};
    uint64_t n = 0;
    while (!stop) {
        nanosleep(&tick, NULL);
        double t = now_ms(CLOCK_MONOTONIC);
        double gap = t - last;
        last = t;
        n++;
        mem[(n * 4096) % size] ^= 1;
        if (gap > 5.0) {
            char line[64];
            int len = snprintf(line, sizeof(line), "%.0f %.1f\n", now_ms(CLOCK_REALTIME), gap);
            if (write(stalls, line, (size_t)len) < 0)
                break;
        }
        if (gap > max) {
            max = gap;
            char line[32];
            int len = snprintf(line, sizeof(line), "%.1f\n", max);
            if (pwrite(maxfd, line, (size_t)len, 0) < 0)
                break;
        }
    }
    return 0;
}
