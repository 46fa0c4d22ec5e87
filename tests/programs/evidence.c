/*
 * evidence: a container workload holding one of everything `reel inspect` must report
 * (issue #12). Every fact is known in advance, so a test can assert it from the checkpoint.
 *
 *   evidence STATUS
 *
 * The main process (comm "evidence") sets the host name to "insp-evidence" (when allowed),
 * writes /etc/evidence.conf, creates /tmp/suid-tool (mode 04755), deletes /bin/counter; opens
 * /tmp/unlinked.txt, writes DELETED_TEXT and unlinks it; makes memfd "insp-memfd" holding
 * MEMFD_TEXT; a pipe holding PIPE_TEXT unread; a unix socketpair; a TCP listener on
 * 127.0.0.1:7201 and, from a child, an established connection to it with CLIENT_TEXT unread
 * by the server and SERVER_TEXT unread by the client; a POSIX timer (CLOCK_MONOTONIC,
 * SIGUSR2, next 1000 s, interval 500 s) and a timerfd (CLOCK_MONOTONIC, next 2000 s,
 * interval 100 s). Its threads: "blocker", blocked in pause(2) with SIGUSR1 blocked and
 * pending, and "sleeper", in nanosleep. Children: "evidence-cli" (the TCP client),
 * "evidence-jail" (capabilities dropped to net_bind_service, no_new_privs, a seccomp filter,
 * still uid 0), a shell "sh -c 'sleep 100000; :'" with its sleep, and "evidence-drop": a
 * copy of this program run from /tmp/dropper, which it deletes. When all is set it
 * writes "ready <pid>\n" to STATUS (tmp + rename) and waits.
 *
 * Built with: cc -O2 -pthread -static -o evidence evidence.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DELETED_TEXT "evidence: contents of a deleted file\n"
#define MEMFD_TEXT "evidence: contents of a memfd, never on disk\n"
#define PIPE_TEXT "evidence: unread pipe data\n"
#define CLIENT_TEXT "evidence: client to server, unread\n"
#define SERVER_TEXT "evidence: server to client, longer and unread\n"
#define PORT 7201

static void die(const char *what)
{
	fprintf(stderr, "evidence: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void forever(void)
{
	for (;;)
		sleep(1000);
}

static void *blocker(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "blocker");
	for (;;)
		syscall(SYS_pause);
	return NULL;
}

static void *sleeper(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "sleeper");
	for (;;) {
		struct timespec ts = { 1000, 0 };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		die(path);
	fchmod(fd, mode);
	close(fd);
}

static void jail(void)
{
	prctl(PR_SET_NAME, "evidence-jail");
	for (int c = 0; c <= CAP_LAST_CAP; c++)
		if (c != CAP_NET_BIND_SERVICE)
			prctl(PR_CAPBSET_DROP, c, 0, 0, 0);
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof(d));
	d[0].effective = d[0].permitted = 1u << CAP_NET_BIND_SERVICE;
	if (syscall(SYS_capset, &h, d) < 0)
		die("capset");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die("no_new_privs");
	struct sock_filter f[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
	struct sock_fprog prog = { 1, f };
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
		die("seccomp");
	forever();
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: evidence STATUS\n");
		return 2;
	}
	if (strcmp(argv[1], "--dropped") == 0) {
		/* A copy of this program, run from a file it deletes: code mapped from a deleted file. */
		prctl(PR_SET_NAME, "evidence-drop");
		unlink("/tmp/dropper");
		forever();
	}
	const char *status = argv[1];
	sethostname("insp-evidence", strlen("insp-evidence"));

	/* The rootfs diff. */
	write_file("/etc/evidence.conf", "written by evidence\n", 0644);
	write_file("/tmp/suid-tool", "#!/bin/sh\n", 04755);
	unlink("/bin/counter");

	/* A deleted file, still open. */
	int del = open("/tmp/unlinked.txt", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (del < 0 || write(del, DELETED_TEXT, strlen(DELETED_TEXT)) < 0)
		die("deleted file");
	fsync(del);
	unlink("/tmp/unlinked.txt");

	int mfd = memfd_create("insp-memfd", 0);
	if (mfd < 0 || write(mfd, MEMFD_TEXT, strlen(MEMFD_TEXT)) < 0)
		die("memfd");

	int p[2];
	if (pipe(p) < 0 || write(p[1], PIPE_TEXT, strlen(PIPE_TEXT)) < 0)
		die("pipe");

	int sp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) < 0)
		die("socketpair");

	int l = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(PORT) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 8) < 0)
		die("listen");

	pid_t cli = fork();
	if (cli == 0) {
		prctl(PR_SET_NAME, "evidence-cli");
		int c = socket(AF_INET, SOCK_STREAM, 0);
		if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0)
			die("connect");
		if (write(c, CLIENT_TEXT, strlen(CLIENT_TEXT)) < 0)
			die("client write");
		forever();
	}
	int s = accept(l, NULL, NULL);
	if (s < 0 || write(s, SERVER_TEXT, strlen(SERVER_TEXT)) < 0)
		die("accept");

	pid_t j = fork();
	if (j == 0)
		jail();

	pid_t sh = fork();
	if (sh == 0) {
		execl("/bin/sh", "sh", "-c", "sleep 100000; :", (char *)NULL);
		die("exec sh");
	}

	pid_t drop = fork();
	if (drop == 0) {
		int in = open("/proc/self/exe", O_RDONLY);
		int out = open("/tmp/dropper", O_WRONLY | O_CREAT | O_TRUNC, 0755);
		char buf[65536];
		ssize_t n;
		if (in < 0 || out < 0)
			die("copy exe");
		while ((n = read(in, buf, sizeof(buf))) > 0)
			if (write(out, buf, n) != n)
				die("copy exe");
		close(in);
		close(out);
		execl("/tmp/dropper", "dropper", "--dropped", (char *)NULL);
		die("exec dropper");
	}
	for (int i = 0; i < 500 && access("/tmp/dropper", F_OK) == 0; i++)
		usleep(10000);

	/* Timers. */
	signal(SIGUSR2, SIG_IGN);
	timer_t t;
	struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2 };
	struct itimerspec its = { .it_value = { 1000, 0 }, .it_interval = { 500, 0 } };
	if (timer_create(CLOCK_MONOTONIC, &sev, &t) < 0 || timer_settime(t, 0, &its, NULL) < 0)
		die("timer");
	int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	struct itimerspec tts = { .it_value = { 2000, 0 }, .it_interval = { 100, 0 } };
	if (tfd < 0 || timerfd_settime(tfd, 0, &tts, NULL) < 0)
		die("timerfd");

	/* Threads: SIGUSR1 blocked everywhere, then sent to the blocker only. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	pthread_t b, z;
	if (pthread_create(&b, NULL, blocker, NULL) || pthread_create(&z, NULL, sleeper, NULL))
		die("threads");
	usleep(100000);
	pthread_kill(b, SIGUSR1);

	/* Wait for the client's bytes to arrive before saying ready. */
	for (int i = 0; i < 100; i++) {
		int n = 0;
		if (ioctl(s, FIONREAD, &n) == 0 && n == (int)strlen(CLIENT_TEXT))
			break;
		usleep(10000);
	}
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", status);
	FILE *f = fopen(tmp, "w");
	if (!f)
		die(tmp);
	fprintf(f, "ready %d %d %d %d\n", getpid(), cli, j, sh);
	fclose(f);
	rename(tmp, status);
	for (;;) {
		int st;
		if (waitpid(-1, &st, 0) < 0 && errno == ECHILD)
			forever();
	}
}
