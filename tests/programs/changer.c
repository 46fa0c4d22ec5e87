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
 * datagram socket to /tmp/changer.sock, makes the guarded page read+exec (mprotect) and
 * fills the buffer with 'b'; then writes "changed <new pid>" to STATUS and waits.
 *
 * Built with: cc -O2 -static -o changer changer.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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

	snprintf(text, sizeof text, "changed %d\n", (int)new);
	status(argv[1], text);
	for (;;)
		pause();
}
