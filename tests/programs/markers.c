/*
 * markers: a container workload that places known bytes in its memory, for `reel search`
 * and the memory findings of `reel inspect --maps` (issue #13).
 *
 *   markers STATUS
 *
 * It places:
 *   heap      the ASCII secret REEL-SECRET-5f1d9c3e in a malloc'd block ([heap]);
 *   utf16     the same secret as UTF-16LE in an mmap'd anonymous read-write region;
 *   stack     the 16 bytes c0 ff ee 11 22 33 44 55 66 77 88 99 aa bb cc dd on the stack of a
 *             second thread (which then sleeps);
 *   straddle  STRADDLE-MARKER-0042, starting 8 bytes before the end of a page of a two-page
 *             anonymous region;
 *   rwx       RWX-PAYLOAD-9e8d followed by c3 in an anonymous region mapped read-write-exec;
 *   text      the first byte of its own function patched() made int3 (mprotect rwx, write,
 *             mprotect r-x back);
 *   shared    SHARED-MARKER-7c2a at offset 100 of the second page of a three-page
 *             MAP_SHARED|MAP_ANONYMOUS region (its pages are in CRIU's shared-memory images);
 *   memfd     MEMFD-MARKER-3b9e at offset 300 of the first page of a two-page MAP_SHARED
 *             mapping of a memfd (its pages too); the descriptor stays open;
 *   sysv      SYSV-MARKER-5d1e at offset 500 of the second page of a two-page System V
 *             shared memory segment it attaches (CRIU keeps its pages with the IPC namespace);
 * then writes "NAME 0xADDRESS" lines, one per marker, and "pid N" to STATUS (tmp + rename)
 * and sleeps. No marker is a literal in the binary: each is decoded (XOR 0x5a) where it goes.
 *
 * Built with: cc -O2 -Wall -pthread -static -o markers markers.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>

#define PAGE 4096
#define KEY 0x5a

/* "REEL-SECRET-5f1d9c3e" ^ 0x5a */
static const unsigned char SECRET[] = { 0x08, 0x1f, 0x1f, 0x16, 0x77, 0x09, 0x1f, 0x19, 0x08,
					0x1f, 0x0e, 0x77, 0x6f, 0x3c, 0x6b, 0x3e, 0x63, 0x39,
					0x69, 0x3f };
/* "STRADDLE-MARKER-0042" ^ 0x5a */
static const unsigned char STRADDLE[] = { 0x09, 0x0e, 0x08, 0x1b, 0x1e, 0x1e, 0x16, 0x1f, 0x77,
					  0x17, 0x1b, 0x08, 0x11, 0x1f, 0x08, 0x77, 0x6a, 0x6a,
					  0x6e, 0x68 };
/* "RWX-PAYLOAD-9e8d" ^ 0x5a, then c3 ^ 0x5a */
static const unsigned char RWX[] = { 0x08, 0x0d, 0x02, 0x77, 0x0a, 0x1b, 0x03, 0x16, 0x15,
				     0x1b, 0x1e, 0x77, 0x63, 0x3f, 0x62, 0x3e, 0x99 };
/* c0 ff ee 11 22 33 44 55 66 77 88 99 aa bb cc dd ^ 0x5a */
static const unsigned char STACKPAT[] = { 0x9a, 0xa5, 0xb4, 0x4b, 0x78, 0x69, 0x1e, 0x0f,
					  0x3c, 0x2d, 0xd2, 0xc3, 0xf0, 0xe1, 0x96, 0x87 };

/* "SHARED-MARKER-7c2a" ^ 0x5a */
static const unsigned char SHARED[] = { 0x09, 0x12, 0x1b, 0x08, 0x1f, 0x1e, 0x77, 0x17, 0x1b,
					0x08, 0x11, 0x1f, 0x08, 0x77, 0x6d, 0x39, 0x68, 0x3b };
/* "MEMFD-MARKER-3b9e" ^ 0x5a */
static const unsigned char MEMFD[] = { 0x17, 0x1f, 0x17, 0x1c, 0x1e, 0x77, 0x17, 0x1b, 0x08,
				       0x11, 0x1f, 0x08, 0x77, 0x69, 0x38, 0x63, 0x3f };

/* "SYSV-MARKER-5d1e" ^ 0x5a */
static const unsigned char SYSV[] = { 0x09, 0x03, 0x09, 0x0c, 0x77, 0x17, 0x1b, 0x08,
				      0x11, 0x1f, 0x08, 0x77, 0x6f, 0x3e, 0x6b, 0x3f };

static volatile uintptr_t stack_addr;

static void die(const char *what)
{
	fprintf(stderr, "markers: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void decode(volatile unsigned char *to, const unsigned char *from, size_t n)
{
	for (size_t i = 0; i < n; i++)
		to[i] = from[i] ^ KEY;
}

static void *stack_thread(void *arg)
{
	volatile unsigned char pat[64];
	(void)arg;
	memset((void *)pat, 0, sizeof pat);
	decode(pat + 16, STACKPAT, sizeof STACKPAT);
	stack_addr = (uintptr_t)(pat + 16);
	for (;;)
		pause();
	return NULL;
}

/* Page-aligned: the page patched starts with this function. */
__attribute__((noinline, aligned(PAGE))) int patched(int x)
{
	return x * 3 + 1;
}

static void *map(size_t len, int prot)
{
	void *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	return p;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: markers STATUS\n");
		return 2;
	}
	size_t n = sizeof SECRET;

	unsigned char *heap = malloc(256);
	if (!heap)
		die("malloc");
	memset(heap, 0, 256);
	decode(heap + 32, SECRET, n);

	/* Guard pages around each region keep the kernel from merging them. */
	unsigned char *area = map(6 * PAGE, PROT_NONE);
	unsigned char *u16 = area + PAGE;
	if (mprotect(u16, PAGE, PROT_READ | PROT_WRITE))
		die("mprotect utf16");
	for (size_t i = 0; i < n; i++) {
		u16[200 + 2 * i] = SECRET[i] ^ KEY;
		u16[200 + 2 * i + 1] = 0;
	}
	unsigned char *two = area + 3 * PAGE;
	if (mprotect(two, 2 * PAGE, PROT_READ | PROT_WRITE))
		die("mprotect straddle");
	two[0] = 1; /* the first page is dumped whole */
	decode(two + PAGE - 8, STRADDLE, sizeof STRADDLE);

	unsigned char *rwx = map(PAGE, PROT_READ | PROT_WRITE | PROT_EXEC);
	decode(rwx + 64, RWX, sizeof RWX);

	int before = patched(argc); /* never run again once patched */
	uintptr_t text = (uintptr_t)&patched;
	unsigned char *tpage = (unsigned char *)(text & ~(uintptr_t)(PAGE - 1));
	if (mprotect(tpage, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC))
		die("mprotect text rwx");
	/* Patch the function's first byte (an int3). */
	*(volatile unsigned char *)text = 0xcc;
	if (mprotect(tpage, PAGE, PROT_READ | PROT_EXEC))
		die("mprotect text r-x");

	unsigned char *shared =
		mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED)
		die("mmap shared");
	decode(shared + PAGE + 100, SHARED, sizeof SHARED);

	int mfd = memfd_create("markers-memfd", 0);
	if (mfd < 0)
		die("memfd_create");
	if (ftruncate(mfd, 2 * PAGE))
		die("ftruncate memfd");
	unsigned char *mem = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (mem == MAP_FAILED)
		die("mmap memfd");
	decode(mem + 300, MEMFD, sizeof MEMFD);

	int shmid = shmget(IPC_PRIVATE, 2 * PAGE, IPC_CREAT | 0600);
	if (shmid < 0)
		die("shmget");
	unsigned char *sysv = shmat(shmid, NULL, 0);
	if (sysv == (void *)-1)
		die("shmat");
	decode(sysv + PAGE + 500, SYSV, sizeof SYSV);

	pthread_t th;
	if (pthread_create(&th, NULL, stack_thread, NULL))
		die("pthread_create");
	while (!stack_addr)
		usleep(1000);

	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
	FILE *f = fopen(tmp, "w");
	if (!f)
		die("fopen");
	fprintf(f, "pid %d\n", getpid());
	fprintf(f, "heap %p\n", (void *)(heap + 32));
	fprintf(f, "utf16 %p\n", (void *)(u16 + 200));
	fprintf(f, "stack %p\n", (void *)stack_addr);
	fprintf(f, "straddle %p\n", (void *)(two + PAGE - 8));
	fprintf(f, "rwx %p\n", (void *)rwx);
	fprintf(f, "text %p\n", (void *)text);
	fprintf(f, "patched %d\n", before);
	fprintf(f, "shared %p\n", (void *)(shared + PAGE + 100));
	fprintf(f, "memfd %p\n", (void *)(mem + 300));
	fprintf(f, "sysv %p\n", (void *)(sysv + PAGE + 500));
	if (fclose(f))
		die("fclose");
	if (rename(tmp, argv[1]))
		die("rename");
	for (;;)
		pause();
}
