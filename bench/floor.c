/*
 * The physical floor: the same system calls node-mmap makes, with nothing in between.
 * Compiled by bench/run.js with `cc -O2` into bench/.build/floor.
 *
 *   floor pairs FILE SIZE COUNT   mmap(SIZE bytes of FILE, PROT_READ, MAP_SHARED) + munmap,
 *                                 COUNT times after COUNT/10 warm-up pairs; prints the
 *                                 nanoseconds per pair.
 *   floor drop FILE               fdatasync, then posix_fadvise(POSIX_FADV_DONTNEED) over the
 *                                 whole file: drops its clean pages from the page cache (no root
 *                                 needed; pages some process has mapped stay). Prints "dropped".
 *
 * Exit status 1 with a message on stderr when a call fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int fail(const char *what, const char *path) {
  fprintf(stderr, "floor: %s %s: %s\n", what, path, strerror(errno));
  return 1;
}

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* mmap + munmap COUNT times; returns -1 on failure. */
static int pairs(int fd, size_t size, long count) {
  for (long i = 0; i < count; i++) {
    void *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return -1;
    if (munmap(p, size) != 0) return -1;
  }
  return 0;
}

static int run_pairs(const char *path, size_t size, long count) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail("open", path);
  if (pairs(fd, size, count / 10 + 1) != 0) return fail("mmap/munmap", path);
  long long start = now_ns();
  if (pairs(fd, size, count) != 0) return fail("mmap/munmap", path);
  long long elapsed = now_ns() - start;
  close(fd);
  printf("%.1f\n", (double)elapsed / (double)count);
  return 0;
}

static int run_drop(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail("open", path);
  if (fdatasync(fd) != 0) return fail("fdatasync", path);
  int err = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  if (err != 0) {
    errno = err;
    return fail("posix_fadvise", path);
  }
  close(fd);
  printf("dropped\n");
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], "pairs") == 0) {
    size_t size = strtoull(argv[3], NULL, 10);
    long count = strtol(argv[4], NULL, 10);
    if (size == 0 || count <= 0) {
      fprintf(stderr, "floor: SIZE and COUNT must be positive\n");
      return 2;
    }
    return run_pairs(argv[2], size, count);
  }
  if (argc == 3 && strcmp(argv[1], "drop") == 0) return run_drop(argv[2]);
  fprintf(stderr, "usage: floor pairs FILE SIZE COUNT | floor drop FILE\n");
  return 2;
}
