/*
 * The physical floor: the same system calls node-mmap makes, with nothing in between.
 * Compiled by bench/run.js with `cc -O2` into bench/.build/floor.
 *
 *   floor pairs FILE SIZE COUNT   mmap(SIZE bytes of FILE, PROT_READ, MAP_SHARED) + munmap,
 *                                 COUNT times after COUNT/10 warm-up pairs; prints the
 *                                 nanoseconds per pair.
 *   floor random FILE COUNT       COUNT reads at the random record offsets of bench/workloads/
 *                                 random.js (same generator), twice: one byte of each 64-byte
 *                                 record read in place from a mapping of the whole file (mmap,
 *                                 the reads, munmap, all timed), then each record read with
 *                                 pread(2) into one buffer (open, the reads, close). Prints the
 *                                 nanoseconds per read of each and the sum of the bytes read:
 *                                 "INPLACE PREAD SUM".
 *   floor drop FILE               fdatasync, then posix_fadvise(POSIX_FADV_DONTNEED) over the
 *                                 whole file: drops its clean pages from the page cache (no root
 *                                 needed; pages some process has mapped stay). Prints "dropped".
 *
 * Exit status 1 with a message on stderr when a call fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

/* The offsets of random.js: xorshift32 from the same seed, two draws per offset. */
static void random_offsets(double *out, long count, double span) {
  uint32_t x = 0x2545f491u;
  for (long i = 0; i < count; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    double hi = (double)x / 4294967296.0;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    double lo = (double)x / 4294967296.0;
    out[i] = (double)(uint64_t)((hi + lo / 4294967296.0) * span); /* Math.floor: it is >= 0 */
  }
}

static int run_random(const char *path, long count) {
  enum { RECORD = 64 };
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail("open", path);
  struct stat st;
  if (fstat(fd, &st) != 0) return fail("fstat", path);
  close(fd);
  size_t size = (size_t)st.st_size;
  if (size < RECORD) {
    fprintf(stderr, "floor: %s is smaller than a record\n", path);
    return 1;
  }
  double *offsets = malloc(sizeof(double) * (size_t)count);
  if (offsets == NULL) return fail("malloc", "offsets");
  random_offsets(offsets, count, (double)(size - RECORD + 1));

  unsigned long long sum_in_place = 0;
  long long start = now_ns();
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail("open", path);
  const volatile unsigned char *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return fail("mmap", path);
  close(fd);
  for (long i = 0; i < count; i++) sum_in_place += p[(size_t)offsets[i] + (size_t)(i & (RECORD - 1))];
  if (munmap((void *)p, size) != 0) return fail("munmap", path);
  long long in_place = now_ns() - start;

  unsigned long long sum_pread = 0;
  unsigned char record[RECORD];
  start = now_ns();
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail("open", path);
  for (long i = 0; i < count; i++) {
    if (pread(fd, record, RECORD, (off_t)offsets[i]) != RECORD) return fail("pread", path);
    sum_pread += record[i & (RECORD - 1)];
  }
  close(fd);
  long long by_pread = now_ns() - start;
  free(offsets);
  if (sum_in_place != sum_pread) {
    fprintf(stderr, "floor: the two readers disagree (%llu, %llu)\n", sum_in_place, sum_pread);
    return 1;
  }
  printf("%.2f %.2f %llu\n", (double)in_place / (double)count, (double)by_pread / (double)count, sum_in_place);
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
  if (argc == 4 && strcmp(argv[1], "random") == 0) {
    long count = strtol(argv[3], NULL, 10);
    if (count <= 0) {
      fprintf(stderr, "floor: COUNT must be positive\n");
      return 2;
    }
    return run_random(argv[2], count);
  }
  if (argc == 3 && strcmp(argv[1], "drop") == 0) return run_drop(argv[2]);
  fprintf(stderr, "usage: floor pairs FILE SIZE COUNT | floor random FILE COUNT | floor drop FILE\n");
  return 2;
}
