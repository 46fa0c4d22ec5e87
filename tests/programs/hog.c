/*
 * hog: a workload holding MIB MiB of touched memory that counts.
 *
 *   hog MIB FILE
 *
 * Allocates MIB MiB, fills every page with pseudo-random bytes (so every page is present and
 * CRIU must write it), then counts every 10 ms into FILE like counter.c (first line, rewritten
 * at offset 0) and flips a byte of the memory each round. SIGTERM/SIGINT end it.
 *
 * Built with: cc -O2 -pthread -static -o hog hog.c
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

int main(int argc, char **argv)
{
    long mib = argc > 1 ? strtol(argv[1], NULL, 10) : 512;
    const char *path = argc > 2 ? argv[2] : "/tmp/counter";
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    size_t len = (size_t)(mib > 0 ? mib : 1) << 20;
    unsigned char *p = malloc(len);
    if (!p) { perror("hog: malloc"); return 1; }
    unsigned long x = 88172645463325252UL;
    for (size_t i = 0; i + 8 <= len; i += 8) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        memcpy(p + i, &x, 8);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) { perror("hog: open"); return 1; }
    unsigned long n = 0;
    char buf[32];
    struct timespec ts = { 0, 10 * 1000 * 1000 };
    while (!stop) {
        n++;
        p[(n * 4096) % len] ^= 1;
        int k = snprintf(buf, sizeof buf, "%lu\n", n);
        if (pwrite(fd, buf, k, 0) < 0) { perror("hog: pwrite"); return 1; }
        nanosleep(&ts, NULL);
    }
    return 0;
}
