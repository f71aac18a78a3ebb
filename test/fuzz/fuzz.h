/*
** fuzz.h -- what the libFuzzer harnesses of test/fuzz/ share.  Included
** by each harness right after the amalgamation (#include
** "../../ursula.c", built with URSULA_ENABLE_MAIN=0), so it reaches every
** internal function.
**
** A harness defines LLVMFuzzerTestOneInput() and checks its properties
** with FUZZ_CHECK, which aborts (a libFuzzer crash, a failed replay in
** make fuzz-regress) with the file, line and expression.  The same file
** links against libFuzzer's main (make fuzz) or against driver.c (make
** fuzz-regress), which replays files and directories of inputs.
**
** Harnesses that need files use one scratch directory per process
** (fuzz_dir(), under $FUZZ_TMPDIR, /dev/shm or /tmp), emptied before each
** input with fuzz_clear() and removed at exit.  Syncs are made no-ops
** (fuzz_no_sync()): the properties are about bytes, not power loss.
*/
#ifndef URSULA_FUZZ_H
#define URSULA_FUZZ_H

#include <stdint.h>
#include <stddef.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(x)                                                   \
  do {                                                                  \
    if (!(x)) {                                                         \
      fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed\n", __FILE__,       \
              __LINE__, #x);                                            \
      abort();                                                          \
    }                                                                   \
  } while (0)

/* A heap copy of exactly n bytes (at least one byte is allocated), so
** that ASan sees any read past the end of the input. */
static URSULA_UNUSED char *fuzz_copy(const void *p, size_t n) {
  char *q = (char *)malloc(n > 0 ? n : 1);
  FUZZ_CHECK(q != NULL);
  if (n > 0) memcpy(q, p, n);
  return q;
}

/* Little-endian integers from the front of an input (missing bytes: 0). */
static URSULA_UNUSED uint64_t fuzz_le(const uint8_t *p, size_t avail,
                                      size_t n) {
  uint64_t v = 0;
  size_t i;
  for (i = 0; i < n && i < avail; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* Quiet logs: a harness feeds damage on purpose, and each input would
** print its error line. */
static URSULA_UNUSED void fuzz_quiet(void) {
  static int done;
  if (!done) {
    log_set_level(-1);
    done = 1;
  }
}

/* ------------------------------------------------------------ files */

static char fuzz_dir_path[256];

static URSULA_UNUSED void fuzz_rm_tree(const char *path, int keep_top) {
  DIR *d = opendir(path);
  struct dirent *e;
  if (d != NULL) {
    while ((e = readdir(d)) != NULL) {
      char sub[512];
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
      if (unlink(sub) != 0) fuzz_rm_tree(sub, 0);
    }
    closedir(d);
  }
  if (!keep_top) rmdir(path);
}

static URSULA_UNUSED void fuzz_dir_remove(void) {
  if (fuzz_dir_path[0] != '\0') fuzz_rm_tree(fuzz_dir_path, 0);
}

/* The process's scratch directory (made on first use). */
static URSULA_UNUSED const char *fuzz_dir(void) {
  if (fuzz_dir_path[0] == '\0') {
    const char *base = getenv("FUZZ_TMPDIR");
    struct stat sb;
    if (base == NULL || base[0] == '\0')
      base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) &&
                     access("/dev/shm", W_OK) == 0
                 ? "/dev/shm"
                 : "/tmp";
    snprintf(fuzz_dir_path, sizeof(fuzz_dir_path), "%s/ursula-fuzz-XXXXXX",
             base);
    FUZZ_CHECK(mkdtemp(fuzz_dir_path) != NULL);
    atexit(fuzz_dir_remove);
  }
  return fuzz_dir_path;
}

/* Empty the scratch directory. */
static URSULA_UNUSED void fuzz_clear(void) {
  fuzz_rm_tree(fuzz_dir(), 1);
}

/* Write p[0..n) to dir/name (created or replaced). */
static URSULA_UNUSED void fuzz_write_file(const char *dir, const char *name,
                                          const void *p, size_t n) {
  char path[1200];
  FILE *f;
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  f = fopen(path, "wb");
  FUZZ_CHECK(f != NULL);
  FUZZ_CHECK(n == 0 || fwrite(p, 1, n, f) == n);
  FUZZ_CHECK(fclose(f) == 0);
}

static URSULA_UNUSED int fuzz_sync_noop(int fd) {
  (void)fd;
  return 0;
}
static URSULA_UNUSED int fuzz_sync_dir_noop(const char *dir) {
  (void)dir;
  return 0;
}

/* Syncs cost milliseconds and prove nothing here. */
static URSULA_UNUSED void fuzz_no_sync(void) {
  os_fs()->sync = fuzz_sync_noop;
  os_fs()->sync_dir = fuzz_sync_dir_noop;
}

/* ------------------------------------------------------------ WAL files
** Inputs that stand for WAL files carry CRCs; making them right lets
** mutations reach the rules behind the CRCs (wal.c has the formats). */

/* Make the header CRC and every whole record's CRC right. */
static URSULA_UNUSED void fuzz_fix_segment(unsigned char *p, size_t n) {
  size_t at = WAL_HEADER_BYTES;
  if (n < WAL_HEADER_BYTES) return;
  memcpy(p, wal_magic, 8);
  util_put32(p + 24, util_crc32c(0, p, 24));
  while (at + WAL_RECORD_HEADER <= n) {
    uint32_t len = util_get32(p + at + 4);
    if (len > n - at - WAL_RECORD_HEADER) break; /* a torn record */
    util_put32(p + at, util_crc32c(util_crc32c(0, p + at + 4, 28),
                                  p + at + WAL_RECORD_HEADER, len));
    at += WAL_RECORD_HEADER + len;
  }
}

/* Make a snapshot file's lengths, piece CRCs and file CRC right: the
** lengths in its tail are taken modulo what the file holds. */
static URSULA_UNUSED void fuzz_fix_snapshot(unsigned char *p, size_t size) {
  uint64_t body, n, m, k, i, sum = 0;
  unsigned char *t;
  uint32_t crc;
  if (size < WAL_SNAP_HEAD + WAL_SNAP_TAIL) return;
  t = p + size - WAL_SNAP_TAIL;
  body = size - WAL_SNAP_HEAD - WAL_SNAP_TAIL;
  memcpy(p, wal_snap_magic, 8);
  p[24] &= 1; /* the one flag there is */
  memset(p + 25, 0, 7);
  n = util_get64(t) % (body + 1);
  k = util_get64(t + 16) % ((body - n) / 32 + 1);
  m = body - n - 32 * k;
  for (i = 0; i < k; i++) { /* each piece's length and CRC */
    unsigned char *d = p + WAL_SNAP_HEAD + n + m + 32 * i;
    uint64_t len = i + 1 < k ? util_get64(d + 16) % (m - sum + 1) : m - sum;
    util_put64(d + 16, len);
    util_put32(d + 24, util_crc32c(0, p + WAL_SNAP_HEAD + n + sum, (size_t)len));
    util_put32(d + 28, 0);
    sum += len;
  }
  util_put64(t, n);
  util_put64(t + 8, m);
  util_put64(t + 16, k);
  crc = util_crc32c(0, p, WAL_SNAP_HEAD + (size_t)n);
  crc = util_crc32c(crc, p + WAL_SNAP_HEAD + n + m, (size_t)(32 * k));
  util_put32(t + 24, util_crc32c(crc, t, 24));
  util_put32(t + 28, 0);
}

#endif /* URSULA_FUZZ_H */
