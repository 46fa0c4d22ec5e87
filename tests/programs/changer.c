/*
 * changer: a container workload that makes known changes between two checkpoints, for
 * `reel diff` (issue #14).
 *
 *   changer STATUS GO
 *
 * First it opens /tmp/doomed.txt (kept open), starts a child named "changer-old", binds a
 * unix datagram socket at /tmp/changer.sock, maps a page read-write between two PROT_NONE
 * guard pages and fills it and a 16-page buffer with 'a'; then writes "ready <old pid>" to
 * STATUS (tmp + rename) and polls for the file GO. When GO appears it starts a child named
 * "changer-new", kills and reaps "changer-old", unlinks /tmp/doomed.txt, connects a new unix
 * datagram socket to /tmp/changer.sock, makes the guarded page read+exec (mprotect), fills
 * the buffer with 'b', starts a thread named "changer-tick", arms a POSIX timer (monotonic,
 * SIGUSR2, every 300 s) and blocks SIGUSR1 in its main thread; then writes "changed <new pid>"
 * to STATUS and waits.
 *
 * Built with: cc -O2 -pthread -static -o changer changer.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define SOCK "/tmp/changer.sock"

static char buffer[16 * PAGE] __attribute__((aligned(PAGE)));

static void die(const char *what)
{
	fprintf(stderr, "changer: %s: %s\n", what, strerror(errno));
	exit(1);
}

static pid_t child(const char *name)
{
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		prctl(PR_SET_NAME, name);
		for (;;)
			pause();
	}
	return pid;
}

static void status(const char *path, const char *text)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		die("status");
	fputs(text, f);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		die("status");
}

static void *tick_thread(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "changer-tick");
	for (;;)
		pause();
	return NULL;
}

static struct sockaddr_un addr(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strcpy(a.sun_path, SOCK);
	return a;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: changer STATUS GO\n");
		return 2;
	}
	char text[128];

	int fd = open("/tmp/doomed.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "doomed\n", 7) != 7)
		die("/tmp/doomed.txt");
	pid_t old = child("changer-old");

	unlink(SOCK);
	int srv = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct sockaddr_un a = addr();
	if (srv < 0 || bind(srv, (struct sockaddr *)&a, sizeof a) != 0)
		die("bind " SOCK);

	char *guard = mmap(NULL, 3 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (guard == MAP_FAILED || mprotect(guard + PAGE, PAGE, PROT_READ | PROT_WRITE) != 0)
		die("mmap");
	memset(guard + PAGE, 'a', PAGE);
	memset(buffer, 'a', sizeof buffer);

	snprintf(text, sizeof text, "ready %d\n", (int)old);
	status(argv[1], text);

	struct timespec tick = {0, 10 * 1000 * 1000};
	while (access(argv[2], F_OK) != 0)
		nanosleep(&tick, NULL);

	pid_t new = child("changer-new");
	kill(old, SIGKILL);
	waitpid(old, NULL, 0);
	if (unlink("/tmp/doomed.txt") != 0)
		die("unlink");
	int cli = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (cli < 0 || connect(cli, (struct sockaddr *)&a, sizeof a) != 0)
		die("connect " SOCK);
	if (mprotect(guard + PAGE, PAGE, PROT_READ | PROT_EXEC) != 0)
		die("mprotect");
	memset(buffer, 'b', sizeof buffer);
	pthread_t th;
	if (pthread_create(&th, NULL, tick_thread, NULL) != 0)
		die("pthread_create");
	signal(SIGUSR2, SIG_IGN);
	struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2};
	timer_t timer;
	struct itimerspec every = {.it_interval = {300, 0}, .it_value = {300, 0}};
	if (timer_create(CLOCK_MONOTONIC, &ev, &timer) != 0 || timer_settime(timer, 0, &every, NULL) != 0)
		die("timer");
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	if (pthread_sigmask(SIG_BLOCK, &usr1, NULL) != 0)
		die("sigmask");

	snprintf(text, sizeof text, "changed %d\n", (int)new);
	status(argv[1], text);
	for (;;)
		pause();
}
