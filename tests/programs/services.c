/*
 * services: a workload holding what real services hold, checking itself all the time, so a
 * test can tell whether a checkpoint/restore kept every piece working.
 *
 *   services [-s STATUS_FILE] [-p PORT] [-a] [-e] [-T] [-i INTERVAL_MS] [-t THREADS]
 *
 *   -s FILE  status file (default /tmp/status), rewritten (tmp file + rename, so keep it in a
 *            directory you can watch, e.g. a bind-mounted dir) after every round
 *   -p PORT  TCP port to listen on (default 8080)
 *   -a       listen on 0.0.0.0 instead of 127.0.0.1
 *   -e       also keep an ESTABLISHED TCP connection to itself and echo over it every round
 *            (a checkpoint then needs CRIU's tcp_established)
 *   -T       run the TCP accept check in every round (see below)
 *   -i MS    interval between rounds (default 100)
 *   -t N     worker threads (default 3)
 *
 * What it holds: N worker threads (each ticks a heartbeat and the eventfd), an acceptor
 * thread, a child process (fork) talking over a unix socketpair, an eventfd, a periodic
 * timerfd, a memfd (also mapped shared), a MAP_SHARED mapping of a file next to the status
 * file (STATUS_FILE.map, shared with the child) and a listening TCP socket.
 *
 * Every round checks: each thread's heartbeat advanced; the child answers a ping over the
 * socketpair with the generation number it reads from the shared file mapping (so the
 * mapping is still shared after a restore); the eventfd and the timerfd ticked; the memfd
 * content (read through the fd and through its mapping) and the file mapping are intact;
 * with -e, the established connection echoes. It then writes one line to the status file:
 *
 *   ok <rounds> tcp <tcp_checks> pid <getpid()>
 *   fail <round> <what>: <detail>
 *
 * The TCP accept check (connect to the listener, the acceptor answers, compare) opens a
 * connected socket for a moment; a checkpoint taken during that moment fails without
 * tcp_established. So by default it runs at start, after any pause longer than a second
 * (a freeze, a checkpoint, a restore) and when the process gets SIGUSR1; -T runs it in
 * every round. `tcp <k>` counts successful accept checks: after a restore, wait until both
 * the round count and k have grown. SIGTERM/SIGINT end it (and the child).
 *
 * Built with: cc -O2 -pthread -static -o services services.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64
#define MEMFD_SIZE (64 * 1024)
#define MAP_SIZE (64 * 1024)

static volatile sig_atomic_t stop, tcp_requested;
static const char *status_path = "/tmp/status";
static int port = 8080, bind_any, established, tcp_every_round;
static long interval_ms = 100;
static int nthreads = 3;

static volatile uint64_t heartbeat[MAX_THREADS];
static int efd, tfd, memfd, listen_fd, est_client = -1;
static volatile int est_server = -1;
static unsigned char *memfd_map, *file_map;
static int sp_parent, sp_child;
static pid_t child_pid;

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        tcp_requested = 1;
    else
        stop = 1;
}

static void die(const char *what)
{
    fprintf(stderr, "services: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop)
        ;
}

static void write_status(const char *fmt, ...)
{
    char line[512], tmp[4096];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (len < 0)
        return;
    if (len > (int)sizeof(line) - 2)
        len = (int)sizeof(line) - 2;
    line[len++] = '\n';
    snprintf(tmp, sizeof(tmp), "%s.tmp", status_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "services: open %s: %s\n", tmp, strerror(errno));
        return;
    }
    ssize_t w = write(fd, line, (size_t)len);
    close(fd);
    if (w != len || rename(tmp, status_path) != 0)
        fprintf(stderr, "services: write %s: %s\n", status_path, strerror(errno));
    fwrite(line, 1, (size_t)len, stdout);
    fflush(stdout);
}

static void fill_pattern(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i * 31u + seed) & 0xff);
}

static int check_pattern(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)((i * 31u + seed) & 0xff))
            return (int)i + 1;
    return 0;
}

/* ---- threads ---- */

static void *worker(void *arg)
{
    int idx = (int)(intptr_t)arg;
    uint64_t one = 1;
    while (!stop) {
        heartbeat[idx]++;
        if (idx == 0 && write(efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            fprintf(stderr, "services: eventfd write: %s\n", strerror(errno));
        sleep_ms(10);
    }
    return NULL;
}

/* Answers each accepted connection with "hello <port>\n". */
static void *acceptor(void *arg)
{
    (void)arg;
    while (!stop) {
        int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno != EINTR && errno != ECONNABORTED)
                sleep_ms(10);
            continue;
        }
        if (established && est_server < 0) {
            est_server = c; /* the first connection is the long-lived one: echo forever */
            continue;
        }
        char msg[64];
        int len = snprintf(msg, sizeof(msg), "hello %d\n", port);
        if (write(c, msg, (size_t)len) != len)
            fprintf(stderr, "services: acceptor write: %s\n", strerror(errno));
        close(c);
    }
    return NULL;
}

static void *echoer(void *arg)
{
    (void)arg;
    char buf[256];
    while (!stop) {
        if (est_server < 0) {
            sleep_ms(5);
            continue;
        }
        ssize_t n = read(est_server, buf, sizeof(buf));
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            sleep_ms(100);
            continue;
        }
        if (write(est_server, buf, (size_t)n) != n)
            fprintf(stderr, "services: echo write: %s\n", strerror(errno));
    }
    return NULL;
}

/* ---- the child: answers "ping <n>" with "pong <n> <generation from the shared map>" ---- */

static void child_main(void)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_NAME, "services-child");
    close(sp_parent);
    char buf[128];
    for (;;) {
        ssize_t n = read(sp_child, buf, sizeof(buf) - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(0);
        buf[n] = 0;
        unsigned long long seq = strtoull(buf + 5, NULL, 10);
        uint64_t gen;
        memcpy(&gen, file_map, sizeof(gen));
        char out[128];
        int len = snprintf(out, sizeof(out), "pong %llu %llu", seq, (unsigned long long)gen);
        if (write(sp_child, out, (size_t)len) != len)
            _exit(1);
    }
}

/* ---- checks: return NULL when fine, or a static description ---- */

static char detail[256];

static const char *fail_fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return detail;
}

static int read_with_timeout(int fd, char *buf, size_t len, int timeout_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    double deadline = now_s() + timeout_ms / 1000.0;
    for (;;) {
        int left = (int)((deadline - now_s()) * 1000);
        if (left < 0)
            left = 0;
        int r = poll(&p, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        ssize_t n = read(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        return (int)n;
    }
}

static const char *check_threads(uint64_t *last)
{
    for (int i = 0; i < nthreads; i++) {
        double deadline = now_s() + 2.0;
        while (heartbeat[i] == last[i] && now_s() < deadline)
            sleep_ms(5);
        if (heartbeat[i] == last[i])
            return fail_fmt("thread %d: heartbeat stuck at %llu", i,
                            (unsigned long long)last[i]);
        last[i] = heartbeat[i];
    }
    return NULL;
}

static const char *check_child(unsigned long long seq, uint64_t gen)
{
    char msg[64], buf[128], want[128];
    memcpy(file_map, &gen, sizeof(gen));
    int len = snprintf(msg, sizeof(msg), "ping %llu", seq);
    if (write(sp_parent, msg, (size_t)len) != len)
        return fail_fmt("socketpair write: %s", strerror(errno));
    int n = read_with_timeout(sp_parent, buf, sizeof(buf) - 1, 2000);
    if (n <= 0)
        return fail_fmt("child did not answer over the socketpair (%s)",
                        n == 0 ? "EOF" : "timeout");
    buf[n] = 0;
    snprintf(want, sizeof(want), "pong %llu %llu", seq, (unsigned long long)gen);
    if (strcmp(buf, want) != 0)
        return fail_fmt("child answered '%s', want '%s'", buf, want);
    if (waitpid(child_pid, NULL, WNOHANG) != 0)
        return fail_fmt("child %d exited", (int)child_pid);
    return NULL;
}

static const char *check_counter_fd(int fd, const char *name)
{
    uint64_t v = 0;
    int n = read_with_timeout(fd, (char *)&v, sizeof(v), 2000);
    if (n != (int)sizeof(v) || v == 0)
        return fail_fmt("%s did not tick (%s)", name, n < 0 ? strerror(errno) : "short read");
    return NULL;
}

static const char *check_memory(void)
{
    static unsigned char buf[MEMFD_SIZE];
    int bad;
    if (pread(memfd, buf, MEMFD_SIZE, 0) != MEMFD_SIZE)
        return fail_fmt("memfd read: %s", strerror(errno));
    if ((bad = check_pattern(buf, MEMFD_SIZE, 7)))
        return fail_fmt("memfd content differs at byte %d", bad - 1);
    if ((bad = check_pattern(memfd_map, MEMFD_SIZE, 7)))
        return fail_fmt("memfd mapping differs at byte %d", bad - 1);
    if ((bad = check_pattern(file_map + 64, MAP_SIZE - 64, 11)))
        return fail_fmt("file mapping differs at byte %d", bad - 1 + 64);
    return NULL;
}

static const char *check_tcp_accept(void)
{
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0)
        return fail_fmt("socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const char *err = NULL;
    char buf[64], want[64];
    if (connect(c, (struct sockaddr *)&a, sizeof(a)) != 0) {
        err = fail_fmt("connect 127.0.0.1:%d: %s", port, strerror(errno));
    } else {
        int n = read_with_timeout(c, buf, sizeof(buf) - 1, 2000);
        snprintf(want, sizeof(want), "hello %d\n", port);
        if (n <= 0)
            err = fail_fmt("no answer from the listener");
        else {
            buf[n] = 0;
            if (strcmp(buf, want) != 0)
                err = fail_fmt("listener answered '%s'", buf);
        }
    }
    close(c);
    return err;
}

static const char *check_established(unsigned long long seq)
{
    char msg[64], buf[64];
    int len = snprintf(msg, sizeof(msg), "echo %llu\n", seq);
    if (write(est_client, msg, (size_t)len) != len)
        return fail_fmt("established write: %s", strerror(errno));
    int got = 0;
    while (got < len) {
        int n = read_with_timeout(est_client, buf + got, (size_t)(len - got), 2000);
        if (n <= 0)
            return fail_fmt("established connection: no echo (%s)", n == 0 ? "EOF" : "timeout");
        got += n;
    }
    if (memcmp(buf, msg, (size_t)len) != 0)
        return fail_fmt("established connection echoed something else");
    return NULL;
}

/* ---- setup ---- */

static void setup(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        die("socketpair");
    sp_parent = sv[0];
    sp_child = sv[1];

    efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0)
        die("eventfd");

    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (tfd < 0)
        die("timerfd_create");
    struct itimerspec its = {{0, 10000000L}, {0, 10000000L}};
    if (timerfd_settime(tfd, 0, &its, NULL) != 0)
        die("timerfd_settime");

    memfd = memfd_create("services-memfd", MFD_CLOEXEC);
    if (memfd < 0)
        die("memfd_create");
    if (ftruncate(memfd, MEMFD_SIZE) != 0)
        die("memfd ftruncate");
    memfd_map = mmap(NULL, MEMFD_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (memfd_map == MAP_FAILED)
        die("memfd mmap");
    fill_pattern(memfd_map, MEMFD_SIZE, 7);

    char map_path[4096];
    snprintf(map_path, sizeof(map_path), "%s.map", status_path);
    int mfd = open(map_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (mfd < 0)
        die("open the shared file");
    if (ftruncate(mfd, MAP_SIZE) != 0)
        die("ftruncate the shared file");
    file_map = mmap(NULL, MAP_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (file_map == MAP_FAILED)
        die("mmap the shared file");
    close(mfd); /* the mapping alone keeps it */
    memset(file_map, 0, 64);
    fill_pattern(file_map + 64, MAP_SIZE - 64, 11);

    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd < 0)
        die("socket");
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(bind_any ? INADDR_ANY : INADDR_LOOPBACK);
    if (bind(listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        die("bind");
    if (listen(listen_fd, 16) != 0)
        die("listen");

    child_pid = fork();
    if (child_pid < 0)
        die("fork");
    if (child_pid == 0)
        child_main();
    close(sp_child);
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "s:p:aeTi:t:")) != -1) {
        switch (opt) {
        case 's': status_path = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'a': bind_any = 1; break;
        case 'e': established = 1; break;
        case 'T': tcp_every_round = 1; break;
        case 'i': interval_ms = atol(optarg); break;
        case 't': nthreads = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: %s [-s STATUS] [-p PORT] [-a] [-e] [-T] [-i MS] [-t N]\n",
                    argv[0]);
            return 2;
        }
    }
    if (nthreads < 1)
        nthreads = 1;
    if (nthreads > MAX_THREADS)
        nthreads = MAX_THREADS;
    if (interval_ms <= 0)
        interval_ms = 100;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    setup();

    pthread_t t;
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&t, NULL, worker, (void *)(intptr_t)i) != 0)
            die("pthread_create");
    if (pthread_create(&t, NULL, acceptor, NULL) != 0)
        die("pthread_create");
    if (established) {
        if (pthread_create(&t, NULL, echoer, NULL) != 0)
            die("pthread_create");
        est_client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (est_client < 0 || connect(est_client, (struct sockaddr *)&a, sizeof(a)) != 0)
            die("connect the established connection");
        int one = 1;
        setsockopt(est_client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }

    uint64_t last[MAX_THREADS] = {0};
    unsigned long long rounds = 0, tcp_ok = 0, seq = 0;
    int tcp_due = 1; /* at start */
    double last_round = now_s();
    while (!stop) {
        double t0 = now_s();
        if (t0 - last_round > 1.0 + interval_ms / 1000.0)
            tcp_due = 1; /* we were paused: frozen, checkpointed, restored */
        if (tcp_requested) {
            tcp_requested = 0;
            tcp_due = 1;
        }
        seq++;
        const char *what = "threads", *err = check_threads(last);
        if (!err && (what = "child", err = check_child(seq, seq * 1000 + 1)) == NULL &&
            (what = "eventfd", err = check_counter_fd(efd, "eventfd")) == NULL &&
            (what = "timerfd", err = check_counter_fd(tfd, "timerfd")) == NULL &&
            (what = "memory", err = check_memory()) == NULL && established)
            what = "established", err = check_established(seq);
        if (!err && (tcp_due || tcp_every_round)) {
            what = "tcp";
            err = check_tcp_accept();
            if (!err) {
                tcp_ok++;
                tcp_due = 0;
            }
        }
        if (err) {
            write_status("fail %llu %s: %s", seq, what, err);
        } else {
            rounds++;
            write_status("ok %llu tcp %llu pid %d", rounds, tcp_ok, (int)getpid());
        }
        last_round = now_s();
        sleep_ms(interval_ms);
    }
    kill(child_pid, SIGKILL);
    waitpid(child_pid, NULL, 0);
    return 0;
}
