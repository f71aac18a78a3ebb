/*
** wal.c -- fuzz WAL recovery: wal_open() and wal_replay() of a group's
** log directory whose files are built from the input, and the whole
** start-up of a group (group_open_wal: snapshot restored into the state
** machine, entries decoded and applied, every byte the state names
** checked to be in a segment or a piece).
**
** Input: 1 byte of options (bit 0: the directory must exist; bit 1: roll
** to a new segment at the next append; bit 2: start a group rather than
** a bare log), then files, each: 1 byte of kind, 2 bytes of length
** (little-endian), the bytes.  Kinds (low 3 bits; the rest picks a name
** or an offset): a segment named by the first index in its header, with
** its CRCs made right (0, 7) or as given (1); a segment misnamed by that
** index plus the high bits (2); the file "snapshot" with its lengths and
** CRCs made right (3) or as given (4); another file of the directory
** (5: state, LOCK, snapshot.tmp, install.tmp, image, a segment name with
** index 0, a short segment name, junk); a directory where a segment
** should be (6).  Making the CRCs right lets mutations reach the rules
** behind them (indexes, terms, seals, torn tails, pieces).
**
** Properties:
**   - wal_open() and wal_replay() return URSULA_OK or an error with a
**     message, and never crash; entries come to the callback in index
**     order, one after the other, terms never going down;
**   - after a replay that succeeded, every entry reads back (wal_entry_at)
**     as replay handed it, or with an error, never other bytes; the log
**     takes an append (also one that rolls to a new segment), and a
**     restart (wal_open with must_exist, wal_replay) brings back exactly
**     the entries handed before plus the new one;
**   - a group that started reads every stream back or fails the read
**     with an error; its state snapshots, restores and snapshots again to
**     the same bytes; after group_snapshot() (a snapshot written, the log
**     compacted, or refused with an error) a restart gives a group with
**     the same digest.
*/
#include "../../ursula.c"
#include "fuzz.h"

#define FUZZ_MAX_ENTRIES 4096

/* What a replay handed over. */
struct fuzz_seen {
  int has_snapshot;
  uint64_t snapshot_hash;
  size_t n;
  uint64_t index[FUZZ_MAX_ENTRIES], term[FUZZ_MAX_ENTRIES];
  uint64_t hash[FUZZ_MAX_ENTRIES]; /* of type and payload */
};

static uint64_t fuzz_entry_hash(const struct wal_entry *e) {
  unsigned char t = (unsigned char)e->type;
  return util_hash64(e->data, e->len) ^ util_hash64(&t, 1);
}

static int fuzz_on_restore(void *arg, const void *p, size_t len) {
  struct fuzz_seen *s = (struct fuzz_seen *)arg;
  s->has_snapshot = 1;
  s->snapshot_hash = util_hash64(p, len);
  return URSULA_OK;
}

static int fuzz_on_entry(void *arg, const struct wal_entry *e) {
  struct fuzz_seen *s = (struct fuzz_seen *)arg;
  FUZZ_CHECK(wal_is_entry(e->type));
  FUZZ_CHECK(e->index > 0);
  if (s->n > 0) {
    FUZZ_CHECK(e->index == s->index[s->n - 1] + 1);
    FUZZ_CHECK(e->term >= s->term[s->n - 1]);
  }
  if (s->n == FUZZ_MAX_ENTRIES) return URSULA_ETOOBIG; /* an error: fine */
  s->index[s->n] = e->index;
  s->term[s->n] = e->term;
  s->hash[s->n] = fuzz_entry_hash(e);
  s->n++;
  return URSULA_OK;
}

/* ------------------------------------------------------------ files */

static void fuzz_segment_name(char *out, size_t cap, uint64_t first) {
  snprintf(out, cap, "%020llu.wal", (unsigned long long)first);
}

/* Build the directory from the input; returns the options byte. */
static int fuzz_build(const char *dir, const uint8_t *data, size_t size) {
  static const char *const others[] = {
      "state",       "LOCK",  "snapshot.tmp",
      "install.tmp", "image", "00000000000000000000.wal",
      "0000000000000000001.wal", "junk"};
  size_t at = 1;
  mkdir(dir, 0755);
  while (at + 3 <= size) {
    int kind = data[at];
    size_t len = (size_t)fuzz_le(data + at + 1, 2, 2);
    unsigned char *p;
    char name[64];
    uint64_t first;
    at += 3;
    if (len > size - at) len = size - at;
    p = (unsigned char *)fuzz_copy(data + at, len);
    at += len;
    first = len >= 16 ? util_get64(p + 8) : 1;
    switch (kind & 7) {
      case 1:
        fuzz_segment_name(name, sizeof(name), first);
        break;
      case 2:
        fuzz_fix_segment(p, len);
        fuzz_segment_name(name, sizeof(name), first + (uint64_t)(kind >> 3));
        break;
      case 3:
        fuzz_fix_snapshot(p, len);
        snprintf(name, sizeof(name), "snapshot");
        break;
      case 4:
        snprintf(name, sizeof(name), "snapshot");
        break;
      case 5:
        snprintf(name, sizeof(name), "%s", others[(kind >> 3) % 8]);
        break;
      case 6: {
        char path[1024];
        fuzz_segment_name(name, sizeof(name), (uint64_t)(kind >> 3) + 1);
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        mkdir(path, 0755);
        free(p);
        continue;
      }
      default:
        fuzz_fix_segment(p, len);
        fuzz_segment_name(name, sizeof(name), first);
        break;
    }
    {
      char path[1024];
      struct stat sb;
      snprintf(path, sizeof(path), "%s/%s", dir, name);
      if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) { /* kind 6 made it */
        free(p);
        continue;
      }
    }
    fuzz_write_file(dir, name, p, len);
    free(p);
  }
  return size > 0 ? data[0] : 0;
}

/* ------------------------------------------------------------ the log */

static void fuzz_log(const char *dir, int opts) {
  static struct fuzz_seen seen, again;
  struct wal *w = NULL;
  struct wal_stats st;
  char err[URSULA_ERRMSG_LEN];
  unsigned char rec[WAL_RECORD_HEADER + 16];
  uint64_t last, term, i;
  int rc;
  memset(&seen, 0, sizeof(seen));
  err[0] = '\0';
  rc = wal_open(&w, NULL, dir, opts & 1, err);
  if (rc != URSULA_OK) {
    FUZZ_CHECK(err[0] != '\0' && w == NULL);
    return;
  }
  err[0] = '\0';
  rc = wal_replay(w, fuzz_on_restore, fuzz_on_entry, &seen, NULL, &st, err);
  if (rc != URSULA_OK) {
    FUZZ_CHECK(err[0] != '\0');
    wal_close(w);
    return;
  }
  /* what it says it holds */
  last = wal_last_index(w);
  FUZZ_CHECK(seen.n == 0 || seen.index[seen.n - 1] == last);
  FUZZ_CHECK(seen.n == 0 || seen.index[0] == st.snapshot_index + 1 ||
             (st.snapshot_index == 0 && seen.index[0] == wal_first_index(w)));
  FUZZ_CHECK(st.entries == seen.n);
  FUZZ_CHECK(seen.has_snapshot == (st.snapshot_index > 0));
  for (i = 0; i < seen.n; i++) { /* each entry reads back as handed */
    struct wal_entry e;
    rc = wal_entry_at(w, seen.index[i], &e);
    FUZZ_CHECK(rc == URSULA_OK || rc == URSULA_ECORRUPT ||
               rc == URSULA_EIO);
    if (rc == URSULA_OK) {
      FUZZ_CHECK(e.index == seen.index[i] && e.term == seen.term[i]);
      FUZZ_CHECK(fuzz_entry_hash(&e) == seen.hash[i]);
    }
    FUZZ_CHECK(wal_term_at(w, seen.index[i], &term) != URSULA_ENOTFOUND);
  }
  if (last > 0) (void)wal_term_at(w, 1, &term);
  /* one more entry, durable; then a restart brings back all of them */
  if (last == UINT64_MAX) { /* (no index left for one) */
    wal_close(w);
    return;
  }
  term = wal_last_term(w) > 0 ? wal_last_term(w) : 1;
  memcpy(rec + WAL_RECORD_HEADER, "fuzz-append-0123", 16);
  if (opts & 2) wal_set_segment_bytes(w, 1); /* roll first */
  rc = wal_frame(w, WAL_CMD, term, last + 1, rec, 16);
  if (rc == URSULA_OK) rc = wal_write(w, rec, sizeof(rec));
  if (rc == URSULA_OK) rc = wal_flush(w);
  FUZZ_CHECK(rc == URSULA_OK);
  wal_close(w);
  memset(&again, 0, sizeof(again));
  err[0] = '\0';
  rc = wal_open(&w, NULL, dir, 1, err);
  if (rc == URSULA_OK)
    rc = wal_replay(w, fuzz_on_restore, fuzz_on_entry, &again, NULL, &st, err);
  if (rc != URSULA_OK) fprintf(stderr, "restart: %s\n", err);
  FUZZ_CHECK(rc == URSULA_OK);
  FUZZ_CHECK(again.n == seen.n + 1);
  FUZZ_CHECK(again.has_snapshot == seen.has_snapshot &&
             again.snapshot_hash == seen.snapshot_hash);
  for (i = 0; i < seen.n; i++)
    FUZZ_CHECK(again.index[i] == seen.index[i] &&
               again.term[i] == seen.term[i] && again.hash[i] == seen.hash[i]);
  FUZZ_CHECK(again.index[seen.n] == last + 1 && again.term[seen.n] == term);
  FUZZ_CHECK(wal_last_index(w) == last + 1);
  wal_close(w);
}

/* ------------------------------------------------------------ a group */

/* Read every stream of g back (bounded), checking what comes back. */
static void fuzz_read_all(struct group *g) {
  struct stream_state *sm = group_state(g);
  size_t i;
  for (i = 0; i < sm->cap; i++) {
    struct stream *s;
    for (s = sm->slots[i]; s != NULL; s = s->hnext) {
      struct buf out;
      uint64_t end = s->tail > 65536 ? 65536 : s->tail;
      int rc;
      memset(&out, 0, sizeof(out));
      rc = stream_read(sm, s, 0, end, &out);
      FUZZ_CHECK(rc == URSULA_OK || rc == URSULA_ECORRUPT ||
                 rc == URSULA_EIO || rc == URSULA_EINVAL ||
                 rc == URSULA_ENOTFOUND);
      if (rc == URSULA_OK) FUZZ_CHECK(out.len == end);
      buf_free(&out);
    }
  }
}

static void fuzz_group(const char *dir, int opts) {
  struct group *g = group_new(0, 0, NULL);
  struct stream_state copy;
  struct buf a, b;
  char err[URSULA_ERRMSG_LEN];
  uint64_t d1 = 0, d2 = 0;
  int rc;
  FUZZ_CHECK(g != NULL);
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  err[0] = '\0';
  rc = group_open_wal(g, dir, opts & 1, 256, (uint64_t)1 << 40, NULL, err);
  if (rc != URSULA_OK) {
    FUZZ_CHECK(err[0] != '\0');
    group_free(g);
    return;
  }
  fuzz_read_all(g);
  /* what apply made, snapshot and restore agree on */
  rc = stream_snapshot(group_state(g), &a);
  FUZZ_CHECK(rc == URSULA_OK);
  stream_state_init(&copy);
  FUZZ_CHECK(stream_restore(&copy, a.ptr, a.len) == URSULA_OK);
  FUZZ_CHECK(stream_snapshot(&copy, &b) == URSULA_OK);
  FUZZ_CHECK(a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0);
  stream_state_free(&copy);
  /* a snapshot and a compaction (or a refusal: a piece of the snapshot
  ** before may be damaged, and is checked only when read), then a
  ** restart: the same state */
  FUZZ_CHECK(stream_digest(group_state(g), &d1) == URSULA_OK);
  if (wal_last_index(g->wal) > 0) {
    rc = group_snapshot(g);
    FUZZ_CHECK(rc == URSULA_OK || rc == URSULA_ECORRUPT ||
               rc == URSULA_EINVAL);
  }
  group_free(g);
  g = group_new(0, 0, NULL);
  FUZZ_CHECK(g != NULL);
  err[0] = '\0';
  rc = group_open_wal(g, dir, 1, 256, (uint64_t)1 << 40, NULL, err);
  if (rc != URSULA_OK) fprintf(stderr, "restart: %s\n", err);
  FUZZ_CHECK(rc == URSULA_OK);
  FUZZ_CHECK(stream_digest(group_state(g), &d2) == URSULA_OK);
  FUZZ_CHECK(d1 == d2);
  fuzz_read_all(g);
  group_free(g);
  buf_free(&a);
  buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char dir[512];
  int opts;
  fuzz_quiet();
  fuzz_no_sync();
  fuzz_clear();
  snprintf(dir, sizeof(dir), "%s/g", fuzz_dir());
  opts = fuzz_build(dir, data, size);
  if (opts & 4)
    fuzz_group(dir, opts);
  else
    fuzz_log(dir, opts);
  return 0;
}
