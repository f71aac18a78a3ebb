/*
** wal.c -- a group's write-ahead log: segment files of framed records.
**
** Each group logs its commands (cmd.c) here before they are applied, and
** replays them on start.  The interface is the one a Raft log needs:
** append entries at (term, index), make them durable, truncate a suffix,
** compact a prefix, and keep the current term and vote.
**
** FILES.  One directory per group (the caller names it; stream names
** never become file names):
**
**     00000000000000000001.wal   segment: entries from index 1
**     00000000000000052113.wal   segment: entries from index 52113
**     state                      current term and vote
**
** A segment is named by the index of its first entry (20 decimal digits,
** so names sort like the numbers).  Only the last segment is written; a
** new one starts when the last reaches WAL_SEGMENT_BYTES.
**
** SEGMENT HEADER, 24 bytes, all integers little-endian:
**
**     0   8  magic "URSWAL1\n"
**     8   8  index of the first entry
**    16   4  CRC32C of bytes 0..15
**    20   4  zero
**
** RECORD, one per entry, 24 bytes + payload, back to back after the
** header:
**
**     0   4  CRC32C of bytes 4..(24+n-1): length, term, index, payload
**     4   4  n, the payload length (at most WAL_MAX_RECORD)
**     8   8  term
**    16   8  index (the previous record's index + 1)
**    24   n  payload: one encoded command (cmd.c)
**
** SNAPSHOT FILE "snapshot": the state machine as of an index, so that
** replay can start after it and older segments can go.  Replaced
** atomically like the state file:
**
**     0   8  magic "URSSNAP1"
**     8   8  index of the last entry it covers
**    16   8  term of that entry
**    24   8  n, the payload length
**    32   n  payload: the state machine's snapshot (stream.c)
**  32+n   4  CRC32C of bytes 0..(32+n-1)
**
** STATE FILE, 28 bytes: magic "URSTATE1", term (8), vote (8), CRC32C of
** bytes 0..23 (4).  Replaced atomically: written to state.tmp, synced,
** renamed over state, and the directory synced.
**
** DURABILITY.  wal_frame() fills in the header of a record the caller
** has built in its own buffer (so the payload is never copied), and
** wal_write() writes the caller's run of framed records with pwrite();
** wal_flush() then syncs the file once (fdatasync, or F_FULLFSYNC on
** macOS) -- so many appends share one sync (group commit).  Only after
** the sync succeeds are the entries durable.  The sync itself may run on
** another thread while the owner goes on (wal_flush_fd, wal_flush_done):
** the syncs of many groups then overlap, and the file system commits them
** together.
**
** FAILURES.  If a write or a sync fails, the buffered entries are dropped
** (nothing of them may be acknowledged), and the log refuses appends
** (w->failed).  After a failed sync the kernel may have dropped the dirty
** pages, so what the file holds is no longer trusted: wal_recover() closes
** the file, opens it again, cuts it back to the last durable size, syncs,
** and reads every record of the segment back, checking each CRC, before
** the log accepts appends again.
**
** RECOVERY.  wal_replay() reads the segments in order and hands each
** valid entry to a callback.  It stops at the first record that is torn
** (short), fails its CRC, or breaks the index sequence.  In the last
** segment that is the tail a crash left behind, never acknowledged
** (records are synced in order): the segment is cut there.  Anywhere
** else it is damage to acknowledged entries -- a segment is synced whole
** before the next one starts -- and replay fails with URSULA_ECORRUPT
** rather than drop everything after it.
*/
#include "internal.h"

#define WAL_HEADER_BYTES 24
#define WAL_MAX_RECORD (1024u * 1024 * 1024) /* bytes of one payload */
#define WAL_STATE_BYTES 28
#ifndef WAL_SEGMENT_BYTES
#define WAL_SEGMENT_BYTES (64 * 1024 * 1024) /* roll to a new segment */
#endif

static const char wal_magic[8] = {'U', 'R', 'S', 'W', 'A', 'L', '1', '\n'};
static const char wal_state_magic[8] = {'U', 'R', 'S', 'T', 'A', 'T', 'E', '1'};
static const char wal_snap_magic[8] = {'U', 'R', 'S', 'S', 'N', 'A', 'P', '1'};

struct wal_seg {
  uint64_t first_index;
  int fd; /* open for wal_pread(), or -1 (the last one reads through w->fd) */
};

struct wal {
  char dir[URSULA_PATH_LEN];
  struct wal_seg *segs; /* ascending; the last one is open for writing */
  size_t n_segs, cap_segs;
  int fd;               /* the last segment, or -1 */
  off_t size;           /* bytes of the last segment that are durable */
  off_t written;        /* bytes written to it (durable or not yet) */
  uint64_t first_index; /* first entry in the log (1 until compacted) */
  uint64_t last_index;  /* last entry appended (durable or buffered) */
  uint64_t last_term;
  uint64_t durable_index; /* last entry known durable */
  uint64_t durable_term;
  size_t pending; /* bytes framed but not yet written */
  int failed;     /* a write or sync failed: appends refused */
  uint64_t term, vote;
  int64_t segment_bytes;
  uint64_t snap_index, snap_term; /* the snapshot replay starts after */
  uint64_t since_snap;            /* log bytes written after it */
};

/* ------------------------------------------------------------ bytes */

static void wal_put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

static void wal_put64(unsigned char *p, uint64_t v) {
  wal_put32(p, (uint32_t)v);
  wal_put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t wal_get32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static uint64_t wal_get64(const unsigned char *p) {
  return (uint64_t)wal_get32(p) | (uint64_t)wal_get32(p + 4) << 32;
}

static int wal_errno_code(int e) {
  return e == ENOSPC ? URSULA_ENOSPC : URSULA_EIO;
}

/* ------------------------------------------------------------ paths */

static void wal_seg_path(const struct wal *w, uint64_t first, char *out,
                         size_t cap) {
  snprintf(out, cap, "%s/%020llu.wal", w->dir, (unsigned long long)first);
}

/* Whether name is a segment file name; its first index in *first. */
static int wal_seg_name(const char *name, uint64_t *first) {
  size_t i;
  uint64_t v = 0;
  if (strlen(name) != 24 || strcmp(name + 20, ".wal") != 0) return 0;
  for (i = 0; i < 20; i++) {
    if (name[i] < '0' || name[i] > '9') return 0;
    if (v > (UINT64_MAX - 9) / 10) return 0;
    v = v * 10 + (uint64_t)(name[i] - '0');
  }
  *first = v;
  return v > 0;
}

static int wal_seg_push(struct wal *w, uint64_t first) {
  if (w->n_segs == w->cap_segs) {
    size_t cap = w->cap_segs ? w->cap_segs * 2 : 8;
    struct wal_seg *s =
        (struct wal_seg *)URSULA_REALLOC(w->segs, cap * sizeof(*s));
    if (s == NULL) return URSULA_ENOMEM;
    w->segs = s;
    w->cap_segs = cap;
  }
  w->segs[w->n_segs].first_index = first;
  w->segs[w->n_segs++].fd = -1;
  return URSULA_OK;
}

static int wal_seg_cmp(const void *a, const void *b) {
  uint64_t x = ((const struct wal_seg *)a)->first_index;
  uint64_t y = ((const struct wal_seg *)b)->first_index;
  return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------ state */

URSULA_PRIVATE int wal_save_state(struct wal *w, uint64_t term, uint64_t vote) {
  struct os_fs *fs = os_fs();
  unsigned char b[WAL_STATE_BYTES];
  char tmp[URSULA_PATH_LEN + 16], path[URSULA_PATH_LEN + 16];
  int fd;
  ssize_t n;
  memcpy(b, wal_state_magic, 8);
  wal_put64(b + 8, term);
  wal_put64(b + 16, vote);
  wal_put32(b + 24, util_crc32c(0, b, 24));
  snprintf(tmp, sizeof(tmp), "%s/state.tmp", w->dir);
  snprintf(path, sizeof(path), "%s/state", w->dir);
  fd = fs->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return wal_errno_code(errno);
  n = fs->pwrite(fd, b, sizeof(b), 0);
  if (n != (ssize_t)sizeof(b) || fs->sync(fd) != 0) {
    int e = n < 0 ? errno : EIO;
    fs->close(fd);
    return wal_errno_code(e);
  }
  fs->close(fd);
  if (fs->rename(tmp, path) != 0 || os_sync_dir(w->dir) != 0)
    return wal_errno_code(errno);
  w->term = term;
  w->vote = vote;
  return URSULA_OK;
}

static int wal_load_state(struct wal *w) {
  struct os_fs *fs = os_fs();
  unsigned char b[WAL_STATE_BYTES];
  char path[URSULA_PATH_LEN + 16];
  int fd;
  ssize_t n;
  snprintf(path, sizeof(path), "%s/state", w->dir);
  fd = fs->open(path, O_RDONLY, 0);
  if (fd < 0) return errno == ENOENT ? URSULA_OK : URSULA_EIO;
  n = fs->pread(fd, b, sizeof(b), 0);
  fs->close(fd);
  if (n != (ssize_t)sizeof(b) || memcmp(b, wal_state_magic, 8) != 0 ||
      wal_get32(b + 24) != util_crc32c(0, b, 24))
    return URSULA_ECORRUPT; /* it is only ever replaced whole */
  w->term = wal_get64(b + 8);
  w->vote = wal_get64(b + 16);
  return URSULA_OK;
}

URSULA_PRIVATE uint64_t wal_term(const struct wal *w) {
  return w->term;
}
URSULA_PRIVATE uint64_t wal_vote(const struct wal *w) {
  return w->vote;
}

/* ------------------------------------------------------------ snapshot */

/* Write path from p[0..n) atomically: a temporary file, synced, renamed
** over path, and the directory synced. */
static int wal_replace_file(struct wal *w, const char *name,
                            const struct buf *b) {
  struct os_fs *fs = os_fs();
  char tmp[URSULA_PATH_LEN + 32], path[URSULA_PATH_LEN + 32];
  size_t done = 0;
  int fd, e = 0;
  snprintf(tmp, sizeof(tmp), "%s/%s.tmp", w->dir, name);
  snprintf(path, sizeof(path), "%s/%s", w->dir, name);
  fd = fs->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return wal_errno_code(errno);
  while (done < b->len && e == 0) {
    ssize_t n = fs->pwrite(fd, b->ptr + done, b->len - done, (off_t)done);
    if (n <= 0)
      e = n < 0 ? errno : EIO;
    else
      done += (size_t)n;
  }
  if (e == 0 && fs->sync(fd) != 0) e = errno;
  fs->close(fd);
  if (e == 0 && fs->rename(tmp, path) != 0) e = errno;
  if (e == 0 && os_sync_dir(w->dir) != 0) e = errno;
  if (e != 0) fs->unlink(tmp);
  return e ? wal_errno_code(e) : URSULA_OK;
}

URSULA_PRIVATE int wal_save_snapshot(struct wal *w, uint64_t index,
                                     uint64_t term, const void *p, size_t n) {
  struct buf b;
  unsigned char h[32], c[4];
  int rc;
  memset(&b, 0, sizeof(b));
  memcpy(h, wal_snap_magic, 8);
  wal_put64(h + 8, index);
  wal_put64(h + 16, term);
  wal_put64(h + 24, (uint64_t)n);
  wal_put32(c, util_crc32c(util_crc32c(0, h, sizeof(h)), p, n));
  if (buf_reserve(&b, sizeof(h) + n + 4) != URSULA_OK) return URSULA_ENOMEM;
  buf_append(&b, h, sizeof(h));
  buf_append(&b, p, n);
  buf_append(&b, c, 4);
  rc = wal_replace_file(w, "snapshot", &b);
  buf_free(&b);
  if (rc == URSULA_OK) {
    w->snap_index = index;
    w->snap_term = term;
    w->since_snap = 0;
  }
  return rc;
}

/* Read DIR/snapshot into out (the payload) and w->snap_index/snap_term.
** URSULA_OK (out empty if there is none), or URSULA_ECORRUPT. */
static int wal_load_snapshot(struct wal *w, struct buf *out) {
  struct os_fs *fs = os_fs();
  char path[URSULA_PATH_LEN + 32];
  struct stat sb;
  unsigned char *q;
  uint64_t n;
  off_t off = 0;
  int fd;
  snprintf(path, sizeof(path), "%s/snapshot", w->dir);
  out->len = 0;
  fd = fs->open(path, O_RDONLY, 0);
  if (fd < 0) return errno == ENOENT ? URSULA_OK : URSULA_EIO;
  if (fstat(fd, &sb) != 0 || sb.st_size < 36 ||
      buf_reserve(out, (size_t)sb.st_size) != URSULA_OK) {
    fs->close(fd);
    return sb.st_size < 36 ? URSULA_ECORRUPT : URSULA_ENOMEM;
  }
  while (off < sb.st_size) {
    ssize_t r = fs->pread(fd, out->ptr + off, (size_t)(sb.st_size - off), off);
    if (r <= 0) break;
    off += r;
  }
  fs->close(fd);
  q = (unsigned char *)out->ptr;
  n = wal_get64(q + 24);
  if (off != sb.st_size || memcmp(q, wal_snap_magic, 8) != 0 ||
      n != (uint64_t)sb.st_size - 36 ||
      wal_get32(q + 32 + n) != util_crc32c(0, q, 32 + (size_t)n))
    return URSULA_ECORRUPT; /* it is only ever replaced whole */
  w->snap_index = wal_get64(q + 8);
  w->snap_term = wal_get64(q + 16);
  memmove(out->ptr, out->ptr + 32, (size_t)n);
  out->len = (size_t)n;
  return URSULA_OK;
}

URSULA_PRIVATE uint64_t wal_bytes_since_snapshot(const struct wal *w) {
  return w->since_snap;
}

/* ------------------------------------------------------------ open */

/* Start a new last segment whose first entry will be `first`. */
static int wal_seg_create(struct wal *w, uint64_t first) {
  struct os_fs *fs = os_fs();
  unsigned char h[WAL_HEADER_BYTES];
  char path[URSULA_PATH_LEN + 32];
  int fd, e;
  memcpy(h, wal_magic, 8);
  wal_put64(h + 8, first);
  wal_put32(h + 16, util_crc32c(0, h, 16));
  wal_put32(h + 20, 0);
  wal_seg_path(w, first, path, sizeof(path));
  fd = fs->open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return wal_errno_code(errno);
  if (fs->pwrite(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
      fs->sync(fd) != 0 || os_sync_dir(w->dir) != 0) {
    e = errno;
    fs->close(fd);
    fs->unlink(path);
    return wal_errno_code(e);
  }
  if (wal_seg_push(w, first) != URSULA_OK) {
    fs->close(fd);
    return URSULA_ENOMEM;
  }
  if (w->fd >= 0) fs->close(w->fd);
  w->fd = fd;
  w->size = w->written = WAL_HEADER_BYTES;
  return URSULA_OK;
}

URSULA_PRIVATE int wal_open(struct wal **out, const char *dir, char *err) {
  struct wal *w;
  DIR *d;
  struct dirent *de;
  int rc;
  *out = NULL;
  if (strlen(dir) >= URSULA_PATH_LEN) {
    snprintf(err, URSULA_ERRMSG_LEN, "WAL directory path is too long");
    return URSULA_EINVAL;
  }
  if (os_mkdir(dir) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "mkdir %.200s: %s", dir, strerror(errno));
    return URSULA_EIO;
  }
  w = (struct wal *)URSULA_MALLOC(sizeof(*w));
  if (w == NULL) return URSULA_ENOMEM;
  memset(w, 0, sizeof(*w));
  memcpy(w->dir, dir, strlen(dir) + 1);
  w->fd = -1;
  w->segment_bytes = WAL_SEGMENT_BYTES;
  w->first_index = 1;
  if ((d = opendir(dir)) == NULL) {
    snprintf(err, URSULA_ERRMSG_LEN, "opendir %.200s: %s", dir,
             strerror(errno));
    URSULA_FREE(w);
    return URSULA_EIO;
  }
  rc = URSULA_OK;
  while (rc == URSULA_OK && (de = readdir(d)) != NULL) {
    uint64_t first;
    if (wal_seg_name(de->d_name, &first)) rc = wal_seg_push(w, first);
  }
  closedir(d);
  if (rc == URSULA_OK) rc = wal_load_state(w);
  if (rc != URSULA_OK) {
    snprintf(err, URSULA_ERRMSG_LEN, "%.200s: %s", dir,
             rc == URSULA_ECORRUPT ? "the state file is corrupt"
                                   : ursula_strerror(rc));
    wal_close(w);
    return rc;
  }
  if (w->n_segs > 1) qsort(w->segs, w->n_segs, sizeof(*w->segs), wal_seg_cmp);
  if (w->n_segs > 0) w->first_index = w->segs[0].first_index;
  w->last_index = w->durable_index = w->first_index - 1;
  *out = w;
  return URSULA_OK;
}

URSULA_PRIVATE void wal_close(struct wal *w) {
  size_t i;
  if (w == NULL) return;
  if (w->fd >= 0) os_fs()->close(w->fd);
  for (i = 0; i < w->n_segs; i++)
    if (w->segs[i].fd >= 0) os_fs()->close(w->segs[i].fd);
  URSULA_FREE(w->segs);
  URSULA_FREE(w);
}

/* ------------------------------------------------------------ reading */

/* Read a whole segment file into b.  Returns URSULA_OK or an error. */
static int wal_read_file(struct wal *w, uint64_t first, struct buf *b) {
  struct os_fs *fs = os_fs();
  char path[URSULA_PATH_LEN + 32];
  struct stat st;
  int fd, rc = URSULA_OK;
  off_t off = 0;
  wal_seg_path(w, first, path, sizeof(path));
  b->len = 0;
  fd = fs->open(path, O_RDONLY, 0);
  if (fd < 0) return URSULA_EIO;
  if (fstat(fd, &st) != 0 || buf_reserve(b, (size_t)st.st_size) != URSULA_OK) {
    fs->close(fd);
    return URSULA_ENOMEM;
  }
  while (off < st.st_size) {
    ssize_t n = fs->pread(fd, b->ptr + off, (size_t)(st.st_size - off), off);
    if (n < 0) {
      rc = URSULA_EIO;
      break;
    }
    if (n == 0) break; /* shrank under us: what we have is what there is */
    off += n;
  }
  b->len = (size_t)off;
  fs->close(fd);
  return rc;
}

/* Check the segment image p[0..len) whose name says `first`.  Calls fn
** for each valid record (when fn is not NULL) and stops at the first bad
** one.  Returns the byte length of the valid prefix (0 if even the header
** is bad); *last and *last_term get the last valid entry. */
static size_t wal_scan(const unsigned char *p, size_t len, uint64_t first,
                       uint64_t *last, uint64_t *last_term,
                       int (*fn)(void *, const struct wal_entry *), void *arg,
                       int *fn_rc, uint64_t skip, uint64_t *called) {
  size_t at = WAL_HEADER_BYTES;
  uint64_t expect = first;
  *last = first - 1;
  if (len < WAL_HEADER_BYTES || memcmp(p, wal_magic, 8) != 0 ||
      wal_get64(p + 8) != first || wal_get32(p + 16) != util_crc32c(0, p, 16))
    return 0;
  while (len - at >= WAL_RECORD_HEADER) {
    const unsigned char *r = p + at;
    uint32_t n = wal_get32(r + 4);
    struct wal_entry e;
    if (n > WAL_MAX_RECORD || len - at - WAL_RECORD_HEADER < n) break;
    if (wal_get32(r) != util_crc32c(0, r + 4, WAL_RECORD_HEADER - 4 + n)) break;
    e.term = wal_get64(r + 8);
    e.index = wal_get64(r + 16);
    if (e.index != expect || e.term < *last_term) break;
    e.data = r + WAL_RECORD_HEADER;
    e.len = n;
    e.seg = first;
    e.off = at + WAL_RECORD_HEADER;
    if (fn != NULL && e.index > skip) { /* at or below skip: snapshotted */
      if ((*fn_rc = fn(arg, &e)) != URSULA_OK) break;
      (*called)++;
    }
    *last = e.index;
    *last_term = e.term;
    expect++;
    at += WAL_RECORD_HEADER + n;
  }
  return at;
}

/* Drop segments [from, n_segs) from the directory and the list. */
static void wal_drop_segs(struct wal *w, size_t from) {
  char path[URSULA_PATH_LEN + 32];
  while (w->n_segs > from) {
    if (w->segs[w->n_segs - 1].fd >= 0)
      os_fs()->close(w->segs[w->n_segs - 1].fd);
    wal_seg_path(w, w->segs[w->n_segs - 1].first_index, path, sizeof(path));
    os_fs()->unlink(path);
    w->n_segs--;
  }
  os_sync_dir(w->dir);
}

URSULA_PRIVATE int wal_replay(struct wal *w,
                              int (*restore)(void *arg, const void *p,
                                             size_t len),
                              int (*fn)(void *arg, const struct wal_entry *e),
                              void *arg, struct wal_stats *st) {
  struct os_fs *fs = os_fs();
  struct buf img;
  size_t i = 0, good = 0;
  int rc, fn_rc = URSULA_OK;
  uint64_t last, term = 0;
  char path[URSULA_PATH_LEN + 32];
  memset(st, 0, sizeof(*st));
  memset(&img, 0, sizeof(img));
  /* the snapshot first, then the entries after it */
  rc = wal_load_snapshot(w, &img);
  if (rc == URSULA_OK && w->snap_index > 0) {
    st->snapshot_index = w->snap_index;
    rc = restore != NULL ? restore(arg, img.ptr, img.len) : URSULA_EINVAL;
  }
  if (rc != URSULA_OK) {
    buf_free(&img);
    return rc;
  }
  if (w->snap_index > 0) { /* skip segments wholly covered by it */
    while (i + 1 < w->n_segs && w->segs[i + 1].first_index <= w->snap_index + 1)
      i++;
    if (w->n_segs > 0 && w->segs[i].first_index > w->snap_index + 1) {
      st->cut_segment = w->segs[i].first_index; /* entries are missing */
      buf_free(&img);
      return URSULA_ECORRUPT;
    }
  }
  last = w->n_segs > 0 ? w->segs[i].first_index - 1 : w->snap_index;
  term = w->snap_term;
  for (; i < w->n_segs; i++) {
    uint64_t seg_last;
    if (w->segs[i].first_index != last + 1) { /* a segment is missing */
      st->cut_segment = w->segs[i].first_index;
      rc = URSULA_ECORRUPT;
      break;
    }
    if ((rc = wal_read_file(w, w->segs[i].first_index, &img)) != URSULA_OK)
      break;
    good = wal_scan((const unsigned char *)img.ptr, img.len,
                    w->segs[i].first_index, &seg_last, &term, fn, arg, &fn_rc,
                    w->snap_index, &st->entries);
    if (fn_rc != URSULA_OK) {
      rc = fn_rc;
      break;
    }
    st->bytes += good;
    last = seg_last;
    if (good < img.len) { /* torn or corrupt */
      st->cut_bytes = img.len - good;
      st->cut_segment = w->segs[i].first_index;
      st->cut_at = good;
      /* Only the last segment can be torn by a crash: a segment is
      ** synced whole before the next one starts.  Damage anywhere else
      ** is corruption of acknowledged entries, and cutting there would
      ** drop every later one: refuse instead. */
      if (i + 1 < w->n_segs) rc = URSULA_ECORRUPT;
      break;
    }
  }
  if (rc == URSULA_OK && last < w->snap_index) rc = URSULA_ECORRUPT;
  w->since_snap = st->bytes;
  buf_free(&img);
  if (rc != URSULA_OK) return rc;
  w->last_index = w->durable_index = last;
  w->last_term = w->durable_term = term;
  if (w->n_segs == 0) return wal_seg_create(w, last + 1);
  if (good < WAL_HEADER_BYTES) {
    /* the last segment's header is bad: a crash while it was created */
    wal_drop_segs(w, w->n_segs - 1);
    return wal_seg_create(w, last + 1);
  }
  wal_seg_path(w, w->segs[w->n_segs - 1].first_index, path, sizeof(path));
  w->fd = fs->open(path, O_RDWR, 0);
  if (w->fd < 0) return wal_errno_code(errno);
  w->size = w->written = (off_t)good;
  if (st->cut_bytes > 0) { /* make the cut itself durable */
    if (fs->ftruncate(w->fd, w->size) != 0 || fs->sync(w->fd) != 0)
      return wal_errno_code(errno);
  }
  return URSULA_OK;
}

/* ------------------------------------------------------------ writing */

URSULA_PRIVATE int wal_frame(struct wal *w, uint64_t term, uint64_t index,
                             void *rec, size_t n, uint64_t *seg,
                             uint64_t *off) {
  unsigned char *h = (unsigned char *)rec;
  uint32_t crc;
  if (w->failed) return URSULA_EIO;
  if (index != w->last_index + 1 || term < w->last_term) return URSULA_EINVAL;
  if (n > WAL_MAX_RECORD) return URSULA_ETOOBIG;
  if (w->pending == 0 && w->written == w->size && w->size >= w->segment_bytes) {
    int rc = wal_seg_create(w, index); /* everything before is durable */
    if (rc != URSULA_OK) return rc;
  }
  wal_put32(h + 4, (uint32_t)n);
  wal_put64(h + 8, term);
  wal_put64(h + 16, index);
  crc = util_crc32c(0, h + 4, WAL_RECORD_HEADER - 4);
  crc = util_crc32c(crc, h + WAL_RECORD_HEADER, n);
  wal_put32(h, crc);
  *seg = w->segs[w->n_segs - 1].first_index;
  *off = (uint64_t)w->written + w->pending + WAL_RECORD_HEADER;
  w->pending += WAL_RECORD_HEADER + n;
  w->last_index = index;
  w->last_term = term;
  return URSULA_OK;
}

URSULA_PRIVATE int wal_pread(struct wal *w, uint64_t seg, uint64_t off,
                             uint64_t len, struct buf *out) {
  struct os_fs *fs = os_fs();
  size_t lo = 0, hi = w->n_segs, k;
  int fd;
  while (lo < hi) { /* the segment whose first index is seg */
    size_t mid = lo + (hi - lo) / 2;
    if (w->segs[mid].first_index < seg)
      lo = mid + 1;
    else
      hi = mid;
  }
  k = lo;
  if (k == w->n_segs || w->segs[k].first_index != seg) return URSULA_ENOTFOUND;
  if (k == w->n_segs - 1 && w->fd >= 0) {
    fd = w->fd;
  } else {
    if (w->segs[k].fd < 0) {
      char path[URSULA_PATH_LEN + 32];
      wal_seg_path(w, seg, path, sizeof(path));
      w->segs[k].fd = fs->open(path, O_RDONLY, 0);
      if (w->segs[k].fd < 0) return wal_errno_code(errno);
    }
    fd = w->segs[k].fd;
  }
  if (len > SIZE_MAX || buf_reserve(out, (size_t)len) != URSULA_OK)
    return URSULA_ENOMEM;
  while (len > 0) {
    ssize_t n = fs->pread(fd, out->ptr + out->len, (size_t)len, (off_t)off);
    if (n <= 0) return URSULA_EIO; /* 0: the file is shorter than it was */
    out->len += (size_t)n;
    off += (uint64_t)n;
    len -= (uint64_t)n;
  }
  return URSULA_OK;
}

/* A write or sync failed: nothing unsynced may be acknowledged, and the
** file is not trusted until wal_recover(). */
static int wal_fail(struct wal *w, int e) {
  w->failed = 1;
  w->pending = 0;
  w->written = w->size;
  w->last_index = w->durable_index;
  w->last_term = w->durable_term;
  return wal_errno_code(e);
}

URSULA_PRIVATE int wal_write(struct wal *w, const void *p, size_t len) {
  struct os_fs *fs = os_fs();
  size_t done = 0;
  if (w->failed) return URSULA_EIO;
  if (len != w->pending) return URSULA_EINVAL; /* not what was framed */
  while (done < len) {
    ssize_t n = fs->pwrite(w->fd, (const char *)p + done, len - done,
                           w->written + (off_t)done);
    if (n <= 0) return wal_fail(w, n < 0 ? errno : EIO);
    done += (size_t)n; /* a short write: go on from where it stopped */
  }
  w->written += (off_t)len;
  w->since_snap += len;
  w->pending = 0;
  return URSULA_OK;
}

URSULA_PRIVATE int wal_flush_fd(const struct wal *w) {
  return w->failed || w->written == w->size ? -1 : w->fd;
}

URSULA_PRIVATE int wal_flush_done(struct wal *w, int sync_errno) {
  if (w->failed) return URSULA_EIO;
  if (w->written == w->size) return URSULA_OK;
  if (sync_errno != 0) return wal_fail(w, sync_errno);
  w->size = w->written;
  w->durable_index = w->last_index;
  w->durable_term = w->last_term;
  return URSULA_OK;
}

URSULA_PRIVATE int wal_flush(struct wal *w) {
  int fd = wal_flush_fd(w), e = 0;
  if (fd >= 0 && os_fs()->sync(fd) != 0) e = errno;
  return wal_flush_done(w, e);
}

URSULA_PRIVATE int wal_recover(struct wal *w) {
  struct os_fs *fs = os_fs();
  char path[URSULA_PATH_LEN + 32];
  struct buf img;
  uint64_t first, last, term = 0;
  size_t good;
  int rc, fn_rc = URSULA_OK;
  if (!w->failed) return URSULA_OK;
  first = w->segs[w->n_segs - 1].first_index;
  wal_seg_path(w, first, path, sizeof(path));
  if (w->fd >= 0) fs->close(w->fd);
  w->fd = fs->open(path, O_RDWR, 0);
  if (w->fd < 0) return wal_errno_code(errno);
  if (fs->ftruncate(w->fd, w->size) != 0 || fs->sync(w->fd) != 0)
    return wal_errno_code(errno);
  memset(&img, 0, sizeof(img));
  rc = wal_read_file(w, first, &img);
  if (rc == URSULA_OK) {
    good = wal_scan((const unsigned char *)img.ptr, img.len, first, &last,
                    &term, NULL, NULL, &fn_rc, 0, NULL);
    if (good != (size_t)w->size || last != w->durable_index)
      rc = URSULA_ECORRUPT; /* acknowledged records did not survive */
  }
  buf_free(&img);
  if (rc == URSULA_OK) w->failed = 0;
  return rc;
}

/* ------------------------------------------------------------ cutting */

/* The term of the last entry of segment k (0 if it has none). */
static uint64_t wal_seg_last_term(struct wal *w, size_t k) {
  struct buf img;
  uint64_t last, term = 0;
  int fn_rc = URSULA_OK;
  memset(&img, 0, sizeof(img));
  if (wal_read_file(w, w->segs[k].first_index, &img) == URSULA_OK)
    wal_scan((const unsigned char *)img.ptr, img.len, w->segs[k].first_index,
             &last, &term, NULL, NULL, &fn_rc, 0, NULL);
  buf_free(&img);
  return term;
}

URSULA_PRIVATE int wal_truncate_suffix(struct wal *w, uint64_t index) {
  struct os_fs *fs = os_fs();
  char path[URSULA_PATH_LEN + 32];
  struct buf img;
  const unsigned char *p;
  size_t k, at;
  uint64_t i, term = 0;
  int rc;
  if (w->failed || w->pending > 0 || w->written != w->size)
    return URSULA_EINVAL;
  if (index > w->last_index) return URSULA_OK;
  if (index < w->first_index) return URSULA_EINVAL; /* behind a snapshot */
  for (k = w->n_segs - 1; w->segs[k].first_index > index; k--) {
  } /* segment k holds index */
  fs->close(w->fd);
  w->fd = -1;
  wal_drop_segs(w, k + 1);
  if (w->segs[k].first_index == index) { /* all of segment k goes */
    wal_drop_segs(w, k);
    if (k > 0) term = wal_seg_last_term(w, k - 1);
    w->last_index = w->durable_index = index - 1;
    w->last_term = w->durable_term = term;
    return wal_seg_create(w, index);
  }
  /* cut segment k, now the last, before the record of index */
  memset(&img, 0, sizeof(img));
  if ((rc = wal_read_file(w, w->segs[k].first_index, &img)) != URSULA_OK) {
    buf_free(&img);
    return rc;
  }
  p = (const unsigned char *)img.ptr;
  at = WAL_HEADER_BYTES; /* the records were validated when replayed */
  for (i = w->segs[k].first_index; i < index; i++) {
    term = wal_get64(p + at + 8);
    at += WAL_RECORD_HEADER + wal_get32(p + at + 4);
  }
  buf_free(&img);
  wal_seg_path(w, w->segs[k].first_index, path, sizeof(path));
  w->fd = fs->open(path, O_RDWR, 0);
  if (w->fd < 0) return wal_errno_code(errno);
  if (fs->ftruncate(w->fd, (off_t)at) != 0 || fs->sync(w->fd) != 0)
    return wal_errno_code(errno);
  w->size = w->written = (off_t)at;
  w->last_index = w->durable_index = index - 1;
  w->last_term = w->durable_term = term;
  return URSULA_OK;
}

URSULA_PRIVATE int wal_can_compact(const struct wal *w, uint64_t upto) {
  return w->n_segs > 1 && w->segs[1].first_index <= upto + 1;
}

URSULA_PRIVATE int wal_compact(struct wal *w, uint64_t upto) {
  char path[URSULA_PATH_LEN + 32];
  size_t drop = 0, k;
  /* a segment can go when the next one starts at or before upto + 1 */
  while (drop + 1 < w->n_segs && w->segs[drop + 1].first_index <= upto + 1)
    drop++;
  if (drop == 0) return URSULA_OK;
  for (k = 0; k < drop; k++) {
    if (w->segs[k].fd >= 0) os_fs()->close(w->segs[k].fd);
    w->segs[k].fd = -1;
    wal_seg_path(w, w->segs[k].first_index, path, sizeof(path));
    if (os_fs()->unlink(path) != 0) return wal_errno_code(errno);
  }
  memmove(w->segs, w->segs + drop, (w->n_segs - drop) * sizeof(*w->segs));
  w->n_segs -= drop;
  w->first_index = w->segs[0].first_index;
  os_sync_dir(w->dir);
  return URSULA_OK;
}

URSULA_PRIVATE uint64_t wal_first_index(const struct wal *w) {
  return w->first_index;
}
URSULA_PRIVATE uint64_t wal_last_index(const struct wal *w) {
  return w->last_index;
}
URSULA_PRIVATE uint64_t wal_last_term(const struct wal *w) {
  return w->last_term;
}
URSULA_PRIVATE int wal_failed(const struct wal *w) {
  return w->failed;
}
URSULA_PRIVATE void wal_set_segment_bytes(struct wal *w, int64_t n) {
  w->segment_bytes = n;
}
