/*
** simfs_test.c -- the rules of simfs.c's model, each asserted (make
** test-sim runs it first).  Each check states the rule it rests on.
*/
#define URSULA_PRIVATE
#include "../../src/internal.h"
#include <stdio.h>

#include "simfs.c"

static int simfs_test_failed;

#define SIMFS_CHECK(cond, rule)                                         \
  do {                                                                  \
    if (!(cond)) {                                                      \
      printf("simfs_test: FAILED line %d: %s\n", __LINE__, rule);       \
      simfs_test_failed = 1;                                            \
    }                                                                   \
  } while (0)

static uint64_t simfs_test_fixed; /* what the rng returns next */
static uint64_t simfs_test_rnd(void *arg) {
  (void)arg;
  return simfs_test_fixed;
}

static struct os_fs *F;

static size_t simfs_test_read(const char *path, unsigned char *p, size_t n) {
  int fd = F->open(path, O_RDONLY, 0);
  ssize_t r;
  if (fd < 0) return (size_t)-1;
  r = F->pread(fd, p, n, 0);
  F->close(fd);
  return r < 0 ? (size_t)-1 : (size_t)r;
}

/* A node directory "/n1", durable. */
static void simfs_test_node(void) {
  simfs_reset();
  F = simfs_table();
  F->mkdir("/n1", 0755);
  F->sync_dir("/");
}

static void simfs_test_synced_kept(void) {
  unsigned char b[4096];
  int fd;
  simfs_test_node();
  fd = F->open("/n1/a", O_RDWR | O_CREAT, 0644);
  F->pwrite(fd, "hello", 5, 0);
  F->sync(fd);
  F->sync_dir("/n1");
  F->pwrite(fd, "HELLO world", 11, 0); /* unsynced: none of it survives */
  simfs_test_fixed = 0;
  simfs_crash("/n1/", simfs_test_rnd, NULL);
  SIMFS_CHECK(simfs_test_read("/n1/a", b, sizeof(b)) == 5 &&
                  memcmp(b, "hello", 5) == 0,
              "a crash keeps synced data and loses unsynced data");
  SIMFS_CHECK(F->pwrite(fd, "x", 1, 0) < 0 && errno == EBADF,
              "a crash closes the node's descriptors");
}

static void simfs_test_dir_entries(void) {
  unsigned char b[16];
  int fd;
  simfs_test_node();
  fd = F->open("/n1/old", O_RDWR | O_CREAT, 0644);
  F->sync(fd);
  F->close(fd);
  F->sync_dir("/n1");
  fd = F->open("/n1/new", O_RDWR | O_CREAT, 0644);
  F->pwrite(fd, "data", 4, 0);
  F->sync(fd); /* the data is durable, its name is not */
  F->close(fd);
  F->unlink("/n1/old"); /* not durable either */
  SIMFS_CHECK(!simfs_exists("/n1/old"), "unlink removes the name at once");
  simfs_crash("/n1/", simfs_test_rnd, NULL);
  SIMFS_CHECK(!simfs_exists("/n1/new"),
              "a created file is lost without sync_dir of its directory");
  SIMFS_CHECK(simfs_exists("/n1/old"),
              "an unlink is undone without sync_dir of its directory");
  fd = F->open("/n1/t", O_RDWR | O_CREAT, 0644);
  F->pwrite(fd, "v2", 2, 0);
  F->sync(fd);
  F->close(fd);
  F->rename("/n1/t", "/n1/old");
  F->sync_dir("/n1");
  simfs_crash("/n1/", simfs_test_rnd, NULL);
  SIMFS_CHECK(!simfs_exists("/n1/t") &&
                  simfs_test_read("/n1/old", b, sizeof(b)) == 2 &&
                  memcmp(b, "v2", 2) == 0,
              "a rename made durable by sync_dir survives a crash");
  F->mkdir("/n1/d", 0755);
  simfs_crash("/n1/", simfs_test_rnd, NULL);
  SIMFS_CHECK(!simfs_exists("/n1/d"),
              "a directory made without sync_dir of its parent is lost");
}

static void simfs_test_torn(void) {
  static unsigned char w[2000], b[4096];
  size_t i, n;
  int fd, ok = 1;
  uint64_t c;
  for (i = 0; i < sizeof(w); i++) w[i] = (unsigned char)(i * 7 + 1);
  for (c = 0; c < 8; c++) {
    simfs_test_node();
    fd = F->open("/n1/s", O_RDWR | O_CREAT, 0644);
    F->pwrite(fd, w, 100, 0);
    F->sync(fd);
    F->sync_dir("/n1");
    F->pwrite(fd, w + 100, 1900, 100); /* bytes 100..1999, unsynced */
    simfs_test_fixed = c;              /* keep = c % 2; cut choice c */
    simfs_crash("/n1/", simfs_test_rnd, NULL);
    n = simfs_test_read("/n1/s", b, sizeof(b));
    /* survives whole (2000), or torn at a sector boundary inside the
    ** write (512, 1024, 1536), or not at all (100) */
    if (!(n == 100 || n == 512 || n == 1024 || n == 1536 || n == 2000) ||
        memcmp(b, w, n) != 0)
      ok = 0;
    if (c == 0 && n != 100) ok = 0;
    if (c == 1 && n != 2000) ok = 0;
    if (c == 2 && n != 1024) ok = 0; /* choice 2: the second boundary */
  }
  SIMFS_CHECK(ok,
              "an unsynced write survives whole, torn at a sector boundary, "
              "or not at all, and the bytes kept are the bytes written");
}

static void simfs_test_faults(void) {
  unsigned char b[16];
  int fd;
  simfs_test_node();
  fd = F->open("/n1/f", O_RDWR | O_CREAT, 0644);
  F->sync_dir("/n1");
  F->pwrite(fd, "lost", 4, 0);
  simfs_fail_syncs(1);
  SIMFS_CHECK(F->sync(fd) < 0 && errno == EIO, "an armed sync fails with EIO");
  SIMFS_CHECK(F->sync(fd) == 0, "a retried sync after EIO returns 0");
  SIMFS_CHECK(simfs_test_read("/n1/f", b, sizeof(b)) == 4,
              "after a failed sync reads still see the data");
  simfs_test_fixed = 1;
  simfs_crash("/n1/", simfs_test_rnd, NULL);
  SIMFS_CHECK(simfs_test_read("/n1/f", b, sizeof(b)) == 0,
              "what a failed sync covered is not durable, even after a "
              "retried sync returned 0 (fsyncgate)");
  fd = F->open("/n1/f", O_RDWR, 0);
  simfs_fail_writes(1);
  SIMFS_CHECK(F->pwrite(fd, "x", 1, 0) < 0 && errno == ENOSPC &&
                  simfs_test_read("/n1/f", b, sizeof(b)) == 0,
              "an armed pwrite fails with ENOSPC and writes nothing");
  F->close(fd);
}

static void simfs_test_flip(void) {
  static unsigned char w[3000], b[4096];
  size_t i, diff = 0;
  int fd;
  simfs_test_node();
  for (i = 0; i < sizeof(w); i++) w[i] = (unsigned char)i;
  fd = F->open("/n1/1.wal", O_RDWR | O_CREAT, 0644);
  F->pwrite(fd, w, sizeof(w), 0);
  F->sync(fd);
  F->close(fd);
  SIMFS_CHECK(simfs_flip("/n1/", simfs_test_rnd, NULL) == 0,
              "only durable names are flipped");
  F->sync_dir("/n1");
  simfs_test_fixed = 12345;
  SIMFS_CHECK(simfs_flip("/n1/", simfs_test_rnd, NULL) == 1,
              "a durable segment can be flipped");
  simfs_crash("/n1/", simfs_test_rnd, NULL);
  simfs_test_read("/n1/1.wal", b, sizeof(b));
  for (i = 0; i < sizeof(w); i++)
    if (b[i] != w[i]) diff += i < sizeof(w) - SIMFS_FLIP_TAIL ? 1 : 100;
  SIMFS_CHECK(diff == 1,
              "a flip changes one byte of the durable bytes, before the "
              "segment's tail, and survives a crash");
  SIMFS_CHECK(simfs_has_flip("/n1/") && !simfs_has_flip("/n2/"),
              "a flipped file is known while it is named");
  F->unlink("/n1/1.wal");
  SIMFS_CHECK(simfs_has_flip("/n1/"),
              "a flipped file unlinked without sync_dir can come back");
  F->sync_dir("/n1");
  SIMFS_CHECK(!simfs_has_flip("/n1/"),
              "a flipped file durably removed takes its flip with it");
}

static void simfs_test_wipe(void) {
  int fd;
  simfs_test_node();
  fd = F->open("/n1/w", O_RDWR | O_CREAT, 0644);
  F->sync(fd);
  F->sync_dir("/n1");
  simfs_wipe("/n1/");
  simfs_crash("/n1/", simfs_test_rnd, NULL);
  SIMFS_CHECK(!simfs_exists("/n1/w") && simfs_exists("/n1"),
              "a wiped node has nothing left under its prefix, durably");
}

int main(void) {
  simfs_test_wipe();
  simfs_test_synced_kept();
  simfs_test_dir_entries();
  simfs_test_torn();
  simfs_test_faults();
  simfs_test_flip();
  simfs_reset();
  if (simfs_test_failed) return 1;
  printf("simfs_test: every rule of the model held\n");
  return 0;
}
