/*
 * conns: a workload holding what a forensic checkpoint must keep by default (issue #10): live
 * TCP connections, a deleted-but-open file, a unix stream connection to a listener outside
 * the container. It checks itself all the time, so a test can tell whether a checkpoint
 * kept every connection working.
 *
 *   conns serve-tcp ADDR PORT        echo server (one thread per client), runs outside
 *   conns serve-unix PATH            echo server on a unix stream listener, runs outside
 *   conns client -s STATUS [-t ADDR:PORT]... [-u PATH]... [-g FILE:BYTES]... [-m NAME:BYTES]...
 *                [-i MS]
 *
 * The client opens every -g FILE, fills it with BYTES of a known pattern (byte i is
 * (i * 131 + 7) mod 251), keeps it open and unlinks it; makes a memfd NAME of BYTES of the
 * same pattern for every -m and keeps it open; connects to every -t and -u peer;
 * then every MS milliseconds (default 50) sends "<conn> <round>\n" on each connection and
 * reads the same line back. After each round it rewrites STATUS (tmp file + rename):
 *
 *   ok <rounds> conns <n> echoes <total>
 *   fail <round> <what>: <detail>
 *
 * A reset, an end of file or a wrong echo is a failure and ends the client (status says
 * why). SIGTERM/SIGINT end it.
 *
 * Built with: cc -O2 -pthread -static -o conns conns.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 16
#define MAX_GHOSTS 8

static const char *status_path = "/tmp/status";

static void write_status(const char *fmt, ...)
{
	char tmp[4096], line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	snprintf(tmp, sizeof(tmp), "%s.tmp", status_path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return;
	fprintf(f, "%s\n", line);
	fclose(f);
	rename(tmp, status_path);
}

static int read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	while (n + 1 < cap) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r == 0)
			return -2; /* end of file */
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf[n++] = c;
		if (c == '\n')
			break;
	}
	buf[n] = 0;
	return (int)n;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, buf, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += w;
		len -= (size_t)w;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Servers                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static void *echo(void *arg)
{
	int fd = (int)(long)arg;
	char buf[4096];
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r == 0 || (r < 0 && errno != EINTR))
			break;
		if (r > 0 && write_all(fd, buf, (size_t)r) < 0)
			break;
	}
	close(fd);
	return NULL;
}

static int serve(int lfd)
{
	/* As real servers do: a peer that went away (a connection restored closed by CRIU's
	 * tcp-close, with bytes still queued to echo) is EPIPE for its thread, not SIGPIPE for
	 * the whole server. */
	signal(SIGPIPE, SIG_IGN);
	if (listen(lfd, 64) < 0) {
		perror("listen");
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	for (;;) {
		int c = accept(lfd, NULL, NULL);
		if (c < 0) {
			/* As real servers do: a connection that went away before it was accepted
			 * (ECONNABORTED, EPROTO; after a restore with tcp-close too) is no reason to stop. */
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO || errno == EAGAIN)
				continue;
			perror("accept");
			return 1;
		}
		pthread_t t;
		pthread_create(&t, NULL, echo, (void *)(long)c);
		pthread_detach(t);
	}
}

static int serve_tcp(const char *addr, int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1 || bind(fd, (void *)&sa, sizeof(sa)) < 0) {
		perror("bind");
		return 1;
	}
	return serve(fd);
}

static int serve_unix(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	if (bind(fd, (void *)&sa, sizeof(sa)) < 0) {
		perror("bind");
		return 1;
	}
	chmod(path, 0777);
	return serve(fd);
}

/* ------------------------------------------------------------------------------------------ */
/* Client                                                                                     */
/* ------------------------------------------------------------------------------------------ */

struct conn {
	char what[128];
	int fd;
};

static int connect_tcp(const char *spec)
{
	char addr[64];
	const char *colon = strrchr(spec, ':');
	if (!colon || (size_t)(colon - spec) >= sizeof(addr))
		return -1;
	memcpy(addr, spec, (size_t)(colon - spec));
	addr[colon - spec] = 0;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(colon + 1)) };
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		return -1;
	for (int attempt = 0; attempt < 100; attempt++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(fd, (void *)&sa, sizeof(sa)) == 0) {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			return fd;
		}
		close(fd);
		usleep(100 * 1000);
	}
	return -1;
}

static int connect_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	for (int attempt = 0; attempt < 100; attempt++) {
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(fd, (void *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		usleep(100 * 1000);
	}
	return -1;
}

static int fill(int fd, long long size)
{
	char buf[65536];
	for (long long off = 0; off < size;) {
		size_t n = sizeof(buf);
		if ((long long)n > size - off)
			n = (size_t)(size - off);
		for (size_t i = 0; i < n; i++)
			buf[i] = (char)(((off + (long long)i) * 131 + 7) % 251);
		if (write_all(fd, buf, n) < 0)
			return -1;
		off += (long long)n;
	}
	return 0;
}

/* Splits "WHAT:BYTES": WHAT into buf (cap bytes), returns BYTES (-1 when malformed). */
static long long split_spec(const char *spec, char *buf, size_t cap)
{
	const char *colon = strrchr(spec, ':');
	if (!colon || (size_t)(colon - spec) >= cap)
		return -1;
	memcpy(buf, spec, (size_t)(colon - spec));
	buf[colon - spec] = 0;
	return atoll(colon + 1);
}

static int make_ghost(const char *spec)
{
	char path[512];
	long long size = split_spec(spec, path, sizeof(path));
	if (size < 0)
		return -1;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || fill(fd, size) < 0)
		return -1;
	fsync(fd);
	if (unlink(path) < 0)
		return -1;
	return fd;
}

static int make_memfd(const char *spec)
{
	char name[128];
	long long size = split_spec(spec, name, sizeof(name));
	if (size < 0)
		return -1;
	int fd = memfd_create(name, 0);
	if (fd < 0 || fill(fd, size) < 0)
		return -1;
	return fd;
}

static void on_term(int sig)
{
	(void)sig;
	_exit(0);
}

static int client(int argc, char **argv)
{
	struct conn conns[MAX_CONNS];
	int nconns = 0, nghosts = 0, interval = 50;
	int ghosts[MAX_GHOSTS];
	int opt;
	while ((opt = getopt(argc, argv, "s:t:u:g:m:i:")) != -1) {
		switch (opt) {
		case 's':
			status_path = optarg;
			break;
		case 't':
		case 'u':
			if (nconns == MAX_CONNS)
				return 2;
			snprintf(conns[nconns].what, sizeof(conns[nconns].what), "%s %s",
				 opt == 't' ? "tcp" : "unix", optarg);
			conns[nconns].fd = opt == 't' ? connect_tcp(optarg) : connect_unix(optarg);
			if (conns[nconns].fd < 0) {
				write_status("fail 0 connect %s: %s", conns[nconns].what, strerror(errno));
				return 1;
			}
			nconns++;
			break;
		case 'g':
			if (nghosts == MAX_GHOSTS)
				return 2;
			ghosts[nghosts] = make_ghost(optarg);
			if (ghosts[nghosts] < 0) {
				write_status("fail 0 ghost %s: %s", optarg, strerror(errno));
				return 1;
			}
			nghosts++;
			break;
		case 'm':
			if (nghosts == MAX_GHOSTS)
				return 2;
			ghosts[nghosts] = make_memfd(optarg);
			if (ghosts[nghosts] < 0) {
				write_status("fail 0 memfd %s: %s", optarg, strerror(errno));
				return 1;
			}
			nghosts++;
			break;
		case 'i':
			interval = atoi(optarg);
			break;
		default:
			return 2;
		}
	}
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	signal(SIGPIPE, SIG_IGN);
	unsigned long long echoes = 0;
	for (unsigned long round = 1;; round++) {
		for (int c = 0; c < nconns; c++) {
			char out[64], in[64];
			int len = snprintf(out, sizeof(out), "%d %lu\n", c, round);
			if (write_all(conns[c].fd, out, (size_t)len) < 0) {
				write_status("fail %lu send %s: %s", round, conns[c].what, strerror(errno));
				return 1;
			}
			int r = read_line(conns[c].fd, in, sizeof(in));
			if (r == -2) {
				write_status("fail %lu recv %s: end of file", round, conns[c].what);
				return 1;
			}
			if (r < 0) {
				write_status("fail %lu recv %s: %s", round, conns[c].what, strerror(errno));
				return 1;
			}
			if (strcmp(in, out) != 0) {
				write_status("fail %lu echo %s: sent %.*s got %.*s", round, conns[c].what,
					     len - 1, out, r > 0 ? r - 1 : 0, in);
				return 1;
			}
			echoes++;
		}
		write_status("ok %lu conns %d echoes %llu", round, nconns, echoes);
		usleep((useconds_t)interval * 1000);
	}
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc >= 4 && strcmp(argv[1], "serve-tcp") == 0)
		return serve_tcp(argv[2], atoi(argv[3]));
	if (argc >= 3 && strcmp(argv[1], "serve-unix") == 0)
		return serve_unix(argv[2]);
	if (argc >= 2 && strcmp(argv[1], "client") == 0)
		return client(argc - 1, argv + 1);
	fprintf(stderr,
		"usage: conns serve-tcp ADDR PORT | serve-unix PATH | client -s STATUS [-t ADDR:PORT]... "
		"[-u PATH]... [-g FILE:BYTES]... [-i MS]\n");
	return 2;
}
