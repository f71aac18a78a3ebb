/*
** snapfile.c -- fuzz the snapshot file reader (wal_snap_open,
** wal_snap_read: header, lengths, payload, the directory of pieces, the
** CRC of it all) and the install of an image another node sent
** (wal_install_begin, _put, _commit: checked whole before it replaces
** anything).
**
** Input: 1 byte of options (bit 0: make the file's lengths and CRCs
** right first; bit 1: install it as an image rather than read it as the
** snapshot), 1 byte that picks the size of each read or put, then the
** file's bytes.  Properties:
**   - reading: open returns URSULA_OK, URSULA_ECORRUPT or URSULA_EINVAL
**     (with a message), or URSULA_EIO; an open file's lengths add up to
**     its size; reads in any chunk size return the payload bytes exactly
**     as they are in the file, then 0 (the CRC and the directory checked:
**     pieces in (index, offset) order, not overlapping, inside the file,
**     none past the snapshot's index) or -1;
**   - installing into a log of three entries: a refused image (with a
**     message) changes nothing: the log replays its three entries and no
**     snapshot; an installed one becomes the snapshot: the log replays it,
**     then the entries after its index if the log agreed with it (same
**     term at that index), else none; and the log takes an append.
*/
#include "../../ursula.c"
#include "fuzz.h"

struct fuzz_seen {
  int snapshots;
  uint64_t snap_hash;
  size_t n;
  uint64_t index[8];
};

static int fuzz_on_restore(void *arg, const void *p, size_t len) {
  struct fuzz_seen *s = (struct fuzz_seen *)arg;
  s->snapshots++;
  s->snap_hash = util_hash64(p, len);
  return URSULA_OK;
}

static int fuzz_on_entry(void *arg, const struct wal_entry *e) {
  struct fuzz_seen *s = (struct fuzz_seen *)arg;
  if (s->n < 8) s->index[s->n] = e->index;
  s->n++;
  return URSULA_OK;
}

static struct wal *fuzz_open(const char *dir, struct fuzz_seen *seen,
                             struct wal_stats *st) {
  struct wal *w = NULL;
  char err[URSULA_ERRMSG_LEN];
  memset(seen, 0, sizeof(*seen));
  err[0] = '\0';
  if (wal_open(&w, NULL, dir, 0, err) != URSULA_OK ||
      wal_replay(w, fuzz_on_restore, fuzz_on_entry, seen, NULL, st, err) !=
          URSULA_OK) {
    fprintf(stderr, "open: %s\n", err);
    FUZZ_CHECK(0);
  }
  return w;
}

static int fuzz_append(struct wal *w, uint64_t term) {
  unsigned char rec[WAL_RECORD_HEADER + 4];
  int rc;
  memcpy(rec + WAL_RECORD_HEADER, "data", 4);
  rc = wal_frame(w, WAL_CMD, term, wal_last_index(w) + 1, rec, 4);
  if (rc == URSULA_OK) rc = wal_write(w, rec, sizeof(rec));
  if (rc == URSULA_OK) rc = wal_flush(w);
  return rc;
}

static void fuzz_read(const char *dir, const unsigned char *p, size_t n,
                      size_t chunk) {
  struct wal_snap_reader sr;
  struct fuzz_seen seen;
  struct wal_stats st;
  struct wal *w = fuzz_open(dir, &seen, &st);
  char err[URSULA_ERRMSG_LEN];
  unsigned char *buf = (unsigned char *)malloc(chunk);
  uint64_t at = 0;
  long k = 0;
  int rc;
  FUZZ_CHECK(buf != NULL);
  fuzz_write_file(dir, "snapshot", p, n);
  err[0] = '\0';
  rc = wal_snap_open(w, &sr, err);
  if (rc != URSULA_OK) {
    FUZZ_CHECK(rc == URSULA_ECORRUPT || rc == URSULA_EINVAL ||
               rc == URSULA_EIO);
    FUZZ_CHECK(err[0] != '\0');
  } else {
    FUZZ_CHECK(sr.index > 0 && (sr.flags & ~(uint64_t)WAL_SNAP_IMAGE) == 0);
    FUZZ_CHECK(WAL_SNAP_HEAD + sr.size + sr.pieces + 32 * sr.n_pieces +
                   WAL_SNAP_TAIL ==
               n);
    while ((k = wal_snap_read(&sr, buf, chunk)) > 0) {
      FUZZ_CHECK((size_t)k <= chunk && at + (uint64_t)k <= sr.size);
      FUZZ_CHECK(memcmp(buf, p + WAL_SNAP_HEAD + at, (size_t)k) == 0);
      at += (uint64_t)k;
    }
    FUZZ_CHECK(k == 0 || k == -1);
    if (k == 0) { /* the CRC and the directory checked out */
      uint64_t i, prev_index = 0, prev_end = 0, sum = 0;
      const unsigned char *d = (const unsigned char *)sr.dir.ptr;
      FUZZ_CHECK(at == sr.size && sr.dir.len == 32 * sr.n_pieces);
      for (i = 0; i < sr.n_pieces; i++, d += 32) {
        uint64_t index = util_get64(d), off = util_get64(d + 8),
                 len = util_get64(d + 16);
        FUZZ_CHECK(index > 0 && index <= sr.index);
        FUZZ_CHECK(i == 0 || index > prev_index ||
                   (index == prev_index && off >= prev_end));
        FUZZ_CHECK(len <= sr.pieces - sum);
        sum += len;
        prev_index = index;
        prev_end = off + len;
      }
      FUZZ_CHECK(sum == sr.pieces);
    }
    wal_snap_close(&sr);
  }
  free(buf);
  wal_close(w);
}

static void fuzz_install(const char *dir, const unsigned char *p, size_t n,
                         size_t chunk) {
  struct wal_snap_writer sw;
  struct fuzz_seen seen, after;
  struct wal_stats st;
  struct wal *w = fuzz_open(dir, &seen, &st);
  char err[URSULA_ERRMSG_LEN];
  uint64_t index = n >= 16 ? util_get64(p + 8) : 0;
  uint64_t term = n >= 24 ? util_get64(p + 16) : 0, payload = 0;
  size_t at = 0;
  int rc, i;
  for (i = 0; i < 3; i++) FUZZ_CHECK(fuzz_append(w, 1) == URSULA_OK);
  FUZZ_CHECK(wal_install_begin(w, &sw) == URSULA_OK);
  while (at < n) { /* in parts, as they would come */
    size_t k = n - at < chunk ? n - at : chunk;
    FUZZ_CHECK(wal_install_put(&sw, at, p + at, k) == URSULA_OK);
    at += k;
  }
  err[0] = '\0';
  rc = wal_install_commit(w, &sw, err);
  if (rc == URSULA_OK) {
    FUZZ_CHECK(index > 0 && index < UINT64_MAX && wal_last_index(w) >= index);
    FUZZ_CHECK(fuzz_append(w, term > 1 ? term : 1) == URSULA_OK);
  } else {
    FUZZ_CHECK(err[0] != '\0');
  }
  wal_close(w);
  w = fuzz_open(dir, &after, &st);
  if (rc == URSULA_OK) { /* the image is the snapshot now */
    int agreed = index <= 3 && term == 1;
    uint64_t want = agreed ? 3 - index + 1 : 1; /* then the append */
    FUZZ_CHECK(after.snapshots == 1 && st.snapshot_index == index);
    FUZZ_CHECK(after.n == want);
    FUZZ_CHECK(after.n == 0 || after.index[0] == index + 1);
    payload = n >= WAL_SNAP_HEAD + WAL_SNAP_TAIL
                  ? util_get64(p + n - WAL_SNAP_TAIL)
                  : 0;
    FUZZ_CHECK(after.snap_hash ==
               util_hash64(p + WAL_SNAP_HEAD, (size_t)payload));
  } else if (rc == URSULA_EINVAL || rc == URSULA_ECORRUPT) {
    /* refused: nothing changed */
    FUZZ_CHECK(after.snapshots == 0 && after.n == 3);
    FUZZ_CHECK(after.index[0] == 1 && after.index[2] == 3);
  }
  if (wal_last_index(w) < UINT64_MAX) /* (else the indexes ran out) */
    FUZZ_CHECK(fuzz_append(w, wal_last_term(w) > 0 ? wal_last_term(w) : 1) ==
               URSULA_OK);
  wal_close(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const size_t chunks[8] = {1, 3, 7, 32, 100, 4096, 65536, 1 << 20};
  char dir[512];
  unsigned char *p;
  size_t n, chunk;
  if (size < 2) return 0;
  fuzz_quiet();
  fuzz_no_sync();
  fuzz_clear();
  snprintf(dir, sizeof(dir), "%s/g", fuzz_dir());
  n = size - 2;
  p = (unsigned char *)fuzz_copy(data + 2, n);
  chunk = chunks[data[1] % 8];
  if (data[0] & 1) fuzz_fix_snapshot(p, n);
  if (data[0] & 2)
    fuzz_install(dir, p, n, chunk);
  else
    fuzz_read(dir, p, n, chunk);
  free(p);
  return 0;
}
