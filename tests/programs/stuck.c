/*
 * stuck: a process whose threads wait in functions with known names, for the ELF cores of
 * `reel extract checkpoint --core` (tests/extract.rs).
 *
 *   stuck STATUS
 *
 * It copies a known string to the heap (reel_heap_marker points to it), others to an
 * anonymous MAP_SHARED region and to a mapped memfd, starts a thread that blocks in
 * reel_blocked_in_read() (a read on a pipe nobody writes), then writes to STATUS (tmp file +
 * rename) "ready <heap string> <tid of the blocked thread> <shared string> <memfd string>"
 * (addresses in hex) and blocks itself in reel_main_waits() (pause()).
 *
 * Built with: cc -O2 -pthread -static -o stuck stuck.c
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MARKER "reel-core-marker: the heap string gdb must print"
#define SHARED_MARKER "reel-core-marker: the shared string gdb must print"
#define MEMFD_MARKER "reel-core-marker: the memfd string gdb must print"

char *reel_heap_marker;
static int pipefd[2];
static volatile pid_t blocked_tid;

__attribute__((noinline)) void reel_blocked_in_read(void)
{
	char c;
	blocked_tid = (pid_t)syscall(SYS_gettid);
	for (;;) {
		ssize_t n = read(pipefd[0], &c, 1);
		__asm__ volatile("" ::: "memory");
		if (n == 0)
			break;
	}
}

static void *thread_main(void *arg)
{
	(void)arg;
	reel_blocked_in_read();
	return NULL;
}

__attribute__((noinline)) void reel_main_waits(void)
{
	for (;;) {
		pause();
		__asm__ volatile("" ::: "memory");
	}
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: stuck STATUS\n");
		return 2;
	}
	reel_heap_marker = malloc(sizeof(MARKER) + 4096);
	if (!reel_heap_marker || pipe(pipefd) < 0)
		return 1;
	strcpy(reel_heap_marker, MARKER);
	char *shared = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int mfd = memfd_create("stuck", 0);
	if (shared == MAP_FAILED || mfd < 0 || ftruncate(mfd, 16384) < 0)
		return 1;
	char *mem = mmap(NULL, 16384, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (mem == MAP_FAILED)
		return 1;
	strcpy(shared + 4096 + 100, SHARED_MARKER);
	strcpy(mem + 8192 + 200, MEMFD_MARKER);
	pthread_t t;
	if (pthread_create(&t, NULL, thread_main, NULL) != 0)
		return 1;
	while (!blocked_tid)
		usleep(1000);
	usleep(100000);
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return 1;
	fprintf(f, "ready %p %d %p %p\n", (void *)reel_heap_marker, (int)blocked_tid,
		(void *)(shared + 4096 + 100), (void *)(mem + 8192 + 200));
	fclose(f);
	rename(tmp, argv[1]);
	reel_main_waits();
	return 0;
}
