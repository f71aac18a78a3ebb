/*
** wal.c -- a group's write-ahead log: segment files of typed records, a
** snapshot file, and the rules that tell a crash's torn tail from damage.
**
** Each group logs its entries here before they are applied, and replays
** them on start.  The interface is the one a Raft log store needs:
** append entries at (term, index), make them durable together with the
** current term and vote (one sync), read entries and terms by index,
** truncate a suffix, compact a prefix, and keep a snapshot.
**
** FORMAT VERSION 2.  Version 1 directories ("URSWAL1" segments, a
** "state" file) are refused with a message that says so (wal_open).
**
** FILES.  One directory per group (the caller names it; stream names
** never become file names):
**
**     00000000000000000001.wal   segment: entries from index 1
**     00000000000000052113.wal   segment: entries from index 52113
**     snapshot                   the state machine as of some index
**
** A segment is named by the index of its first entry (20 decimal digits,
** so names sort like the numbers).  Only the last segment is written; a
** new one starts when the last reaches WAL_SEGMENT_BYTES.
**
** SEGMENT HEADER, 32 bytes, all integers little-endian:
**
**     0   8  magic "URSWAL2\n"
**     8   8  index of the first entry
**    16   8  zero
**    24   4  CRC32C of bytes 0..23
**    28   4  zero
**
** RECORD, 32 bytes + payload, back to back after the header:
**
**     0   4  CRC32C of bytes 4..(32+n-1)
**     4   4  n, the payload length (at most WAL_MAX_RECORD)
**     8   1  type: 1 CMD, 2 NOOP, 3 CONF (log entries); 16 HARD, 17 SEAL
**     9   7  zero
**    16   8  term
**    24   8  index
**    32   n  payload
**
**   Log entries (CMD: one encoded command, cmd.c; NOOP: a new leader's
**   empty entry; CONF: a configuration) take the next index: the
**   previous entry's + 1.  Their terms never decrease.
**   HARD (payload: term 8, vote 8; the vote's bit 63 is the group's LOST
**   LOG flag, group.c) is the Raft hard state as of here; the
**   last HARD record of the log is in force.  Its index field is the
**   last entry's index (it takes no index of its own), and it is written
**   in the same batch, and so made durable by the same sync, as entries.
**   Every segment starts with one, so compaction never loses it.
**   SEAL (payload: the next segment's first index, 8) ends a segment that
**   is complete: the segment it names must exist.  Its index field is
**   the last entry's index.
**
** SNAPSHOT FILE "snapshot" (format 3; format 2, "URSSNAP2", is refused
** with a message, unless its tail adds up as format 3's does: then the
** magic is a flipped bit, damage), written and read in chunks (a large one is never held
** twice in memory) and replaced atomically (written to snapshot.tmp,
** synced, renamed, the directory synced):
**
**     0   8  magic "URSSNAP3"
**     8   8  index of the last entry it covers
**    16   8  term of that entry
**    24   8  flags: 1 = an image, made to be installed on another node
**    32   n  payload: the state machine's snapshot (stream.c)
**  32+n   m  pieces: bytes of log entries, back to back, in the order of
**            the directory
**  ...   32k directory, one 32-byte entry per piece, ascending by (index,
**            offset), no two overlapping:
**              0  8 index of the entry   8  8 offset in its payload
**             16  8 length              24  4 CRC32C of the piece's bytes
**             28  4 zero
**  tail  32  n 8, m 8, k 8, then the CRC32C of the header, the payload,
**            the directory and these 24 bytes (4), zero (4)
**
**   The state names stream bytes by (entry index, offset), and the log
**   keeps the segments that hold them (compaction stops before the oldest
**   one a stream still reads).  Pieces carry the ones the log does not
**   hold: a snapshot carries the bytes it names below the log's first
**   entry (after an install, the image's), and an image carries every
**   byte its state names, so that another node can install it with
**   nothing else.  A read of such an entry is served from its piece, whose
**   CRC is checked on every read.
**
** INSTALL (wal_install_commit), crash-safe at every step: the image is
** written to install.tmp and synced, and checked whole (every CRC, the
** directory's order, the image flag, an index n past the snapshot's).
** If the log holds entry n with the image's term, the log agrees with it
** (Raft: it keeps the entries after n), and the image just becomes the
** snapshot.  Otherwise:
**   1. entries from n on, if any, are cut (wal_truncate_suffix: they
**      conflict with the image's, which is committed);
**   2. install.tmp is renamed to "snapshot", the directory synced;
**   3. a segment for n + 1 is created (the old log, all below n, is not
**      sealed to it: its entries do not lead there);
**   4. the old segments are removed, from the front.
** Replay finishes an install a crash cut short: with an image as the
** snapshot, segments below it are not checked (the image carries every
** byte the state names; the old log is not needed), a log that ends
** before the image goes on in a new segment at n + 1, and the old
** segments are removed.
**
** DURABILITY.  wal_frame() fills in the header of a record the caller
** has built in its own buffer (so the payload is never copied), and
** wal_write() writes the caller's run of framed records with pwrite();
** the file is then synced once (fdatasync, or F_FULLFSYNC on macOS), so
** many appends share one sync (group commit).  Only after the sync
** succeeds are the entries, and any HARD record among them, durable.
** The sync itself may run on another thread while the owner goes on
** (wal_flush_fd, wal_flush_done).
**
** FAILURES.  If a write or a sync fails, the buffered entries are dropped
** (nothing of them may be acknowledged), and the log refuses appends
** (w->failed).  After a failed sync the kernel may have dropped the dirty
** pages, so what the file holds is no longer trusted: wal_recover() closes
** the file, opens it again, cuts it back to the last durable size, syncs,
** and reads every record of the segment back, checking each CRC, before
** the log accepts appends again.
**
** RECOVERY: DAMAGE IS NEVER TAKEN FOR ABSENCE.  wal_replay() reads the
** snapshot and the segments after it in order, checking every record.
**   - A crash can tear only the records of the last batch written, at the
**     end of the last segment (records are written in order, and a
**     segment is synced whole and sealed before the next one starts).  So
**     a bad record at the end of the last segment, with no valid record
**     anywhere after it, is a torn tail: it is cut (and logged).
**   - A bad record with a valid record after it, or a bad record in any
**     segment but the last, is damage to acknowledged entries: replay
**     fails with URSULA_ECORRUPT, naming the file and the byte offset.
**   - A missing file that the log names is refused the same way: a gap in
**     the segments' indexes, a last segment that ends with a SEAL (its
**     successor is gone), segments that start after 1 with no snapshot,
**     no segment at all in a log that must exist (wal_open).
**   - Segments wholly covered by the snapshot are not read at start; the
**     first read from one checks it (wal_read), as every read checks the
**     record it reads: damage there is an error, never wrong bytes.
**
** CRASH SAFETY OF THE CHANGES.  Each step leaves a log that replays:
**   - a new segment is created (header and HARD synced, the directory
**     synced) before its predecessor is sealed;
**   - wal_truncate_suffix() works from the last segment back: first it
**     unseals the segment before (cuts its SEAL and appends a HARD
**     record, synced: the last segment still holds the latest HARD record
**     meanwhile), then removes the last one; then it replaces the segment
**     that holds the truncation point by its prefix and a HARD record,
**     through a temporary file and a rename;
**   - wal_compact() removes segments from the front, and only those a
**     durable snapshot covers.
*/
#include "internal.h"

#define WAL_HEADER_BYTES 32
#define WAL_HARD_BYTES 16                    /* HARD payload */
#define WAL_SEAL_BYTES 8                     /* SEAL payload */
#define WAL_SNAP_HEAD 32
#define WAL_SNAP_TAIL 32
#define WAL_READ_AHEAD (64 * 1024) /* bytes a read of the log reads ahead */
#ifndef WAL_SEGMENT_BYTES
#define WAL_SEGMENT_BYTES (64 * 1024 * 1024) /* roll to a new segment */
#endif

static const char wal_magic[8] = {'U', 'R', 'S', 'W', 'A', 'L', '2', '\n'};
static const char wal_magic_v1[8] = {'U', 'R', 'S', 'W', 'A', 'L', '1', '\n'};
static const char wal_snap_magic[8] = {'U', 'R', 'S', 'S', 'N', 'A', 'P', '3'};
static const char wal_snap_magic_v2[8] = {'U', 'R', 'S', 'S', 'N', 'A', 'P', '2'};

struct wal_seg {
  uint64_t first_index;
  int fd;         /* open for reads, or -1 (the last one reads through w->fd) */
  int mapped;     /* offs[] holds every entry the file has (to `damaged`) */
  uint64_t *offs; /* file offset of the record of entry first_index + i */
  size_t n_offs, cap_offs;
  int64_t damaged; /* byte offset of the first bad record seen, or -1 */
};

struct wal {
  struct os_fs *fs; /* every file call goes through it (the node's env) */
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
  uint64_t term, vote;           /* the durable hard state */
  uint64_t next_term, next_vote; /* as framed: durable once synced */
  /* what the last wal_write() wrote (framing may go on during its sync;
  ** only what was written becomes durable at wal_flush_done) */
  uint64_t written_index, written_term, written_hterm, written_hvote;
  int needs_reopen; /* a cut failed half-way: the files are right, the
                       in-memory view is not; only a restart recovers */
  int64_t segment_bytes;
  uint64_t snap_index, snap_term; /* the snapshot replay starts after */
  uint64_t snap_flags;            /* its flags (WAL_SNAP_IMAGE: installed) */
  struct wal_piece *pieces;       /* its pieces, ascending (index, off) */
  size_t n_pieces;
  int snap_fd;                    /* open on it for piece reads, or -1 */
  struct buf pc;                  /* the last piece read and checked, */
  uint64_t pc_pos;                /* at file byte pc_pos - 1 (0: none) */
  uint64_t since_snap;            /* log bytes written after it */
  /* READ-AHEAD.  rd holds bytes [rd_pos, rd_pos + rd.len) of segment
  ** rd_seg (its first index; 0: none), read ahead of the records asked
  ** for (WAL_READ_AHEAD), and never past what is durable; the record of
  ** entry rd_index (0: none), checked, starts at rd.ptr + rd_at.  Any
  ** change of the files other than an append forgets it (wal_rd_forget). */
  uint64_t rd_index;
  uint64_t rd_seg, rd_pos;
  size_t rd_at;
  struct buf rd;
  /* JOURNAL (wal_set_journal; NULL: none, each batch is synced in its
  ** own file).  Appends go to the core's journal too, whose sync makes
  ** them durable; the last segment's file is synced lazily (lazy: bytes
  ** were written to it since it was last synced). */
  struct journal *jr;
  uint32_t jr_group;
  int lazy;
  /* the journal generation whose checkpoint syncs this file through a
  ** descriptor of its own (wal_lazy_open), or 0: while it is there, the
  ** file's lazy appends before it are not known durable, though lazy is
  ** clear */
  uint64_t lazy_gen;
};

static int wal_fail(struct wal *w, int e);
static void wal_lazy_failed(struct wal *w, int e);

static void wal_rd_forget(struct wal *w) {
  w->rd_index = 0;
  w->rd_seg = 0;
  w->rd.len = 0;
}

/* ------------------------------------------------------------ bytes */

static int wal_errno_code(int e) {
  return e == ENOSPC ? URSULA_ENOSPC : URSULA_EIO;
}

static int wal_is_entry(int type) {
  return type == WAL_CMD || type == WAL_NOOP || type == WAL_CONF;
}

/* Fill in the header of the record at h (payload at h + 32, n bytes). */
static void wal_seal_record(unsigned char *h, int type, uint64_t term,
                            uint64_t index, size_t n) {
  uint32_t crc;
  util_put32(h + 4, (uint32_t)n);
  memset(h + 8, 0, 8);
  h[8] = (unsigned char)type;
  util_put64(h + 16, term);
  util_put64(h + 24, index);
  crc = util_crc32c(0, h + 4, WAL_RECORD_HEADER - 4);
  crc = util_crc32c(crc, h + WAL_RECORD_HEADER, n);
  util_put32(h, crc);
}

/* Whether p[0..avail) starts with a whole, valid record; its payload
** length in *n. */
static int wal_record_ok(const unsigned char *p, size_t avail, uint32_t *n) {
  size_t i;
  if (avail < WAL_RECORD_HEADER) return 0;
  *n = util_get32(p + 4);
  if (*n > WAL_MAX_RECORD || avail - WAL_RECORD_HEADER < *n) return 0;
  for (i = 9; i < 16; i++)
    if (p[i] != 0) return 0;
  if (!wal_is_entry(p[8]) && p[8] != WAL_HARD && p[8] != WAL_SEAL) return 0;
  if (p[8] == WAL_HARD && *n != WAL_HARD_BYTES) return 0;
  if (p[8] == WAL_SEAL && *n != WAL_SEAL_BYTES) return 0;
  return util_get32(p) == util_crc32c(0, p + 4, WAL_RECORD_HEADER - 4 + *n);
}

URSULA_PRIVATE int wal_record_put(struct buf *out, const struct wal_entry *e) {
  size_t at = out->len;
  if (e->len > WAL_MAX_RECORD || !wal_is_entry(e->type)) return URSULA_EINVAL;
  if (buf_reserve(out, WAL_RECORD_HEADER + e->len) != URSULA_OK)
    return URSULA_ENOMEM;
  if (e->len > 0)
    memcpy(out->ptr + at + WAL_RECORD_HEADER, e->data, e->len);
  wal_seal_record((unsigned char *)out->ptr + at, e->type, e->term, e->index,
                  e->len);
  out->len += WAL_RECORD_HEADER + e->len;
  return URSULA_OK;
}

/* Whether p[0..avail) starts with a whole, valid log entry record (CMD,
** NOOP or CONF; the CRC checked): URSULA_OK and the entry in *e (e->data
** points into p) and the record's size in *size, else URSULA_ECORRUPT.
** For a transport that carries records verbatim (peer.c). */
URSULA_PRIVATE int wal_record_check(const void *p, size_t avail,
                                    struct wal_entry *e, size_t *size) {
  const unsigned char *r = (const unsigned char *)p;
  uint32_t n;
  if (!wal_record_ok(r, avail, &n) || !wal_is_entry(r[8]))
    return URSULA_ECORRUPT;
  e->type = r[8];
  e->term = util_get64(r + 16);
  e->index = util_get64(r + 24);
  e->data = r + WAL_RECORD_HEADER;
  e->len = n;
  *size = WAL_RECORD_HEADER + (size_t)n;
  return URSULA_OK;
}

/* ------------------------------------------------------------ paths */

URSULA_PRIVATE void wal_segment_file(const char *dir, uint64_t first,
                                     char *out, size_t cap) {
  snprintf(out, cap, "%s/%020llu.wal", dir, (unsigned long long)first);
}

static void wal_seg_path(const struct wal *w, uint64_t first, char *out,
                         size_t cap) {
  wal_segment_file(w->dir, first, out, cap);
}

/* Whether name is a segment file name; its first index in *first. */
static int wal_seg_name(const char *name, uint64_t *first) {
  size_t i;
  uint64_t v = 0;
  if (strlen(name) != 24 || strcmp(name + 20, ".wal") != 0) return 0;
  for (i = 0; i < 20; i++) {
    unsigned d = (unsigned)(name[i] - '0');
    if (name[i] < '0' || name[i] > '9') return 0;
    if (v > (UINT64_MAX - d) / 10) return 0; /* every name wal_seg_path makes */
    v = v * 10 + d;
  }
  *first = v;
  return v > 0;
}

static int wal_seg_push(struct wal *w, uint64_t first) {
  struct wal_seg *sg;
  if (w->n_segs == w->cap_segs) {
    size_t cap = w->cap_segs ? w->cap_segs * 2 : 8;
    struct wal_seg *s =
        (struct wal_seg *)URSULA_REALLOC(w->segs, cap * sizeof(*s));
    if (s == NULL) return URSULA_ENOMEM;
    w->segs = s;
    w->cap_segs = cap;
  }
  sg = &w->segs[w->n_segs++];
  memset(sg, 0, sizeof(*sg));
  sg->first_index = first;
  sg->fd = -1;
  sg->damaged = -1;
  return URSULA_OK;
}

static void wal_seg_release(struct os_fs *fs, struct wal_seg *sg) {
  if (sg->fd >= 0) fs->close(sg->fd);
  sg->fd = -1;
  URSULA_FREE(sg->offs);
  sg->offs = NULL;
  sg->n_offs = sg->cap_offs = 0;
}

/* Note that entry first_index + n_offs starts at file offset off. */
static int wal_seg_note(struct wal_seg *sg, uint64_t off) {
  if (sg->n_offs == sg->cap_offs) {
    size_t cap = sg->cap_offs ? sg->cap_offs * 2 : 64;
    uint64_t *o = (uint64_t *)URSULA_REALLOC(sg->offs, cap * sizeof(*o));
    if (o == NULL) return URSULA_ENOMEM;
    sg->offs = o;
    sg->cap_offs = cap;
  }
  sg->offs[sg->n_offs++] = off;
  return URSULA_OK;
}

static int wal_seg_cmp(const void *a, const void *b) {
  uint64_t x = ((const struct wal_seg *)a)->first_index;
  uint64_t y = ((const struct wal_seg *)b)->first_index;
  return x < y ? -1 : x > y;
}

/* The segment that holds index (the last one whose first is <= index). */
static size_t wal_seg_of(const struct wal *w, uint64_t index) {
  size_t lo = 0, hi = w->n_segs;
  while (lo < hi) { /* first k with first_index > index */
    size_t mid = lo + (hi - lo) / 2;
    if (w->segs[mid].first_index <= index)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo > 0 ? lo - 1 : 0;
}

/* ------------------------------------------------------------ files */

/* Read the whole file at path into b.  URSULA_OK, URSULA_ENOTFOUND, or
** an I/O error. */
static int wal_read_path(struct os_fs *fs, const char *path, struct buf *b) {
  uint64_t size;
  int fd, rc = URSULA_OK;
  off_t off = 0;
  b->len = 0;
  fd = fs->open(path, O_RDONLY, 0);
  if (fd < 0) return errno == ENOENT ? URSULA_ENOTFOUND : URSULA_EIO;
  if (fs->size(fd, &size) != 0 || size > SIZE_MAX) {
    fs->close(fd);
    return URSULA_EIO;
  }
  if (buf_reserve(b, (size_t)size) != URSULA_OK) {
    fs->close(fd);
    return URSULA_ENOMEM;
  }
  while ((uint64_t)off < size) {
    ssize_t n = fs->pread(fd, b->ptr + off, (size_t)(size - (uint64_t)off),
                          off);
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

/* Write b[0..n) at off of fd, all of it.  0 or an errno. */
static int wal_pwrite_all(struct os_fs *fs, int fd, const void *b, size_t n,
                          off_t off) {
  size_t done = 0;
  while (done < n) {
    ssize_t k = fs->pwrite(fd, (const char *)b + done, n - done,
                                off + (off_t)done);
    if (k <= 0) return k < 0 ? errno : EIO;
    done += (size_t)k;
  }
  return 0;
}

/* ------------------------------------------------------------ snapshot */

/* A piece of the snapshot file: bytes [off, off + len) of the payload of
** log entry `index`, kept at byte pos of the file. */
struct wal_piece {
  uint64_t index, off, len, pos;
  uint32_t crc;
};

/* Check a directory of k entries (32 bytes each) whose pieces hold m
** bytes, for a snapshot as of entry `last`, and turn it into pieces
** (stored at base + ...) in *out (NULL: check only).  0, or -1 if it is
** out of order, overlaps, names an entry past `last`, or does not add up
** to m. */
static int wal_dir_parse(const unsigned char *d, uint64_t k, uint64_t m,
                         uint64_t last, uint64_t base, struct wal_piece *out) {
  uint64_t i, sum = 0, pi = 0, pend = 0;
  for (i = 0; i < k; i++, d += 32) {
    uint64_t index = util_get64(d), off = util_get64(d + 8),
             len = util_get64(d + 16);
    if (index == 0 || index > last || len > WAL_MAX_RECORD ||
        off > WAL_MAX_RECORD || util_get32(d + 28) != 0)
      return -1;
    if (i > 0 && (index < pi || (index == pi && off < pend))) return -1;
    if (len > m - sum) return -1;
    if (out != NULL) {
      out[i].index = index;
      out[i].off = off;
      out[i].len = len;
      out[i].pos = base + sum;
      out[i].crc = util_get32(d + 24);
    }
    sum += len;
    pi = index;
    pend = off + len;
  }
  return sum == m ? 0 : -1;
}

static int wal_snap_start(struct wal *w, struct wal_snap_writer *sw,
                          const char *name, uint64_t index, uint64_t term,
                          uint64_t flags) {
  unsigned char h[WAL_SNAP_HEAD];
  char tmp[URSULA_PATH_LEN + 32];
  int e;
  memset(sw, 0, sizeof(*sw));
  sw->fs = w->fs;
  sw->name = name;
  snprintf(tmp, sizeof(tmp), "%s/%s.tmp", w->dir, name);
  sw->fd = w->fs->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (sw->fd < 0) return wal_errno_code(errno);
  if (index == 0) return URSULA_OK; /* an install: raw bytes follow */
  memset(h, 0, sizeof(h));
  memcpy(h, wal_snap_magic, 8);
  util_put64(h + 8, index);
  util_put64(h + 16, term);
  util_put64(h + 24, flags);
  sw->index = index;
  sw->term = term;
  sw->crc = util_crc32c(0, h, sizeof(h));
  if ((e = wal_pwrite_all(w->fs, sw->fd, h, sizeof(h), 0)) != 0) {
    wal_snap_abort(w, sw);
    return wal_errno_code(e);
  }
  sw->at = WAL_SNAP_HEAD;
  return URSULA_OK;
}

URSULA_PRIVATE int wal_snap_begin(struct wal *w, struct wal_snap_writer *sw,
                                  uint64_t index, uint64_t term) {
  return index == 0 ? URSULA_EINVAL
                    : wal_snap_start(w, sw, "snapshot", index, term, 0);
}

URSULA_PRIVATE int wal_image_begin(struct wal *w, struct wal_snap_writer *sw,
                                   uint64_t index, uint64_t term) {
  return index == 0 ? URSULA_EINVAL
                    : wal_snap_start(w, sw, "image", index, term,
                                     WAL_SNAP_IMAGE);
}

/* The file "image" as raw bytes, for a leader to send to a follower
** (the follower checks it whole: wal_install_commit). */
URSULA_PRIVATE int wal_image_open(struct wal *w, int *fd, uint64_t *bytes) {
  char path[URSULA_PATH_LEN + 32];
  snprintf(path, sizeof(path), "%s/image", w->dir);
  *fd = w->fs->open(path, O_RDONLY, 0);
  if (*fd < 0) return wal_errno_code(errno);
  if (w->fs->size(*fd, bytes) != 0) {
    int e = errno;
    w->fs->close(*fd);
    *fd = -1;
    return wal_errno_code(e);
  }
  return URSULA_OK;
}

URSULA_PRIVATE long wal_image_read(struct wal *w, int fd, void *p, size_t n,
                                   uint64_t at) {
  ssize_t k = w->fs->pread(fd, p, n, (off_t)at);
  return k < 0 ? -1 : (long)k;
}

URSULA_PRIVATE void wal_image_close(struct wal *w, int fd) {
  if (fd >= 0) w->fs->close(fd);
}

URSULA_PRIVATE void wal_image_remove(struct wal *w) {
  char path[URSULA_PATH_LEN + 32];
  snprintf(path, sizeof(path), "%s/image", w->dir);
  (void)w->fs->unlink(path);
}

URSULA_PRIVATE int wal_snap_put(struct wal_snap_writer *sw, const void *p,
                                size_t n) {
  int e;
  if (sw->fd < 0 || sw->index == 0 || sw->in_pieces) return URSULA_EINVAL;
  if ((e = wal_pwrite_all(sw->fs, sw->fd, p, n, (off_t)sw->at)) != 0)
    return wal_errno_code(e);
  sw->crc = util_crc32c(sw->crc, p, n);
  sw->at += n;
  sw->payload += n;
  return URSULA_OK;
}

URSULA_PRIVATE int wal_snap_piece(struct wal_snap_writer *sw, uint64_t index,
                                  uint64_t off, const void *p, size_t n) {
  unsigned char d[32];
  int e;
  if (sw->fd < 0 || sw->index == 0 || index == 0 || index > sw->index ||
      n > WAL_MAX_RECORD)
    return URSULA_EINVAL;
  if (sw->dir.len > 0) { /* ascending, no overlap */
    const unsigned char *q =
        (const unsigned char *)sw->dir.ptr + sw->dir.len - 32;
    uint64_t qi = util_get64(q), qend = util_get64(q + 8) + util_get64(q + 16);
    if (index < qi || (index == qi && off < qend)) return URSULA_EINVAL;
  }
  util_put64(d, index);
  util_put64(d + 8, off);
  util_put64(d + 16, n);
  util_put32(d + 24, util_crc32c(0, p, n));
  util_put32(d + 28, 0);
  if (buf_append(&sw->dir, d, sizeof(d)) != URSULA_OK) return URSULA_ENOMEM;
  sw->in_pieces = 1;
  if ((e = wal_pwrite_all(sw->fs, sw->fd, p, n, (off_t)sw->at)) != 0)
    return wal_errno_code(e);
  sw->at += n;
  sw->pieces += n;
  return URSULA_OK;
}

URSULA_PRIVATE void wal_snap_abort(struct wal *w, struct wal_snap_writer *sw) {
  char tmp[URSULA_PATH_LEN + 32];
  if (sw->fd >= 0) w->fs->close(sw->fd);
  sw->fd = -1;
  buf_free(&sw->dir);
  if (sw->name == NULL) return;
  snprintf(tmp, sizeof(tmp), "%s/%s.tmp", w->dir, sw->name);
  w->fs->unlink(tmp);
}

/* Open the snapshot file w->dir/name for reading; see wal_snap_open. */
static int wal_snap_open_file(struct wal *w, struct wal_snap_reader *sr,
                              const char *name, char *err) {
  struct os_fs *fs = w->fs;
  unsigned char h[WAL_SNAP_HEAD], t[WAL_SNAP_TAIL];
  char path[URSULA_PATH_LEN + 32];
  uint64_t size = 0, n, m, k;
  int whole = 0; /* a header and a tail were read */
  memset(sr, 0, sizeof(*sr));
  memset(h, 0, sizeof(h));
  memset(t, 0, sizeof(t));
  sr->fs = fs;
  snprintf(path, sizeof(path), "%s/%s", w->dir, name);
  sr->fd = fs->open(path, O_RDONLY, 0);
  if (sr->fd < 0) {
    if (errno == ENOENT) return URSULA_ENOTFOUND;
    snprintf(err, URSULA_ERRMSG_LEN, "%s: %s", path, strerror(errno));
    return URSULA_EIO;
  }
  n = m = k = 0;
  if (fs->size(sr->fd, &size) == 0 && size >= WAL_SNAP_HEAD + WAL_SNAP_TAIL &&
      fs->pread(sr->fd, h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
      fs->pread(sr->fd, t, sizeof(t), (off_t)(size - WAL_SNAP_TAIL)) ==
          (ssize_t)sizeof(t)) {
    n = util_get64(t);
    m = util_get64(t + 8);
    k = util_get64(t + 16);
    whole = 1;
  }
  size -= size >= WAL_SNAP_HEAD + WAL_SNAP_TAIL ? WAL_SNAP_HEAD + WAL_SNAP_TAIL
                                                : size;
  /* "URSSNAP2" is one bit from "URSSNAP3": a format-2 magic on a file
  ** whose tail adds up as format 3's does is that flip, damage (a real
  ** format-2 file has no such tail), not an older build's file */
  if (memcmp(h, wal_snap_magic_v2, 8) == 0 &&
      !(whole && n <= size && m <= size - n && k <= (size - n - m) / 32 &&
        n + m + 32 * k == size)) {
    fs->close(sr->fd);
    sr->fd = -1;
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s is in snapshot format 2 (written by an older build of "
             "ursula); this build reads format 3 only: read the data out "
             "with the older build, or start on an empty --wal-dir",
             path);
    return URSULA_EINVAL;
  }
  if (memcmp(h, wal_snap_magic, 8) != 0 || n > size || m > size - n ||
      k > (size - n - m) / 32 || n + m + 32 * k != size ||
      util_get64(h + 8) == 0 || util_get64(h + 8) == UINT64_MAX || /* no next */
      (util_get64(h + 24) & ~(uint64_t)WAL_SNAP_IMAGE) != 0) {
    fs->close(sr->fd);
    sr->fd = -1;
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s is damaged (bad header or lengths); the state it holds is "
             "lost unless it is restored from a backup",
             path);
    return URSULA_ECORRUPT;
  }
  sr->index = util_get64(h + 8);
  sr->term = util_get64(h + 16);
  sr->flags = util_get64(h + 24);
  sr->size = n;
  sr->pieces = m;
  sr->n_pieces = k;
  sr->at = 0;
  sr->crc = util_crc32c(0, h, sizeof(h));
  sr->want_crc = util_get32(t + 24);
  return URSULA_OK;
}

URSULA_PRIVATE int wal_snap_open(struct wal *w, struct wal_snap_reader *sr,
                                 char *err) {
  return wal_snap_open_file(w, sr, "snapshot", err);
}

URSULA_PRIVATE long wal_snap_read(struct wal_snap_reader *sr, void *p,
                                  size_t n) {
  ssize_t k;
  unsigned char t[24];
  uint64_t dn;
  if (sr->fd < 0) return -1;
  if (n > sr->size - sr->at) n = (size_t)(sr->size - sr->at);
  if (n == 0) { /* the end: the directory, then the CRC of it all */
    if (sr->dir.len > 0 || sr->n_pieces > SIZE_MAX / 32) return -1;
    dn = sr->n_pieces * 32;
    if (buf_reserve(&sr->dir, (size_t)dn) != URSULA_OK) return -1;
    if (dn > 0 && sr->fs->pread(sr->fd, sr->dir.ptr, (size_t)dn,
                                (off_t)(WAL_SNAP_HEAD + sr->size +
                                        sr->pieces)) != (ssize_t)dn)
      return -1;
    sr->dir.len = (size_t)dn;
    util_put64(t, sr->size); /* the CRC covers the lengths too */
    util_put64(t + 8, sr->pieces);
    util_put64(t + 16, sr->n_pieces);
    if (util_crc32c(util_crc32c(sr->crc, sr->dir.ptr, sr->dir.len), t, 24) !=
            sr->want_crc ||
        wal_dir_parse((const unsigned char *)sr->dir.ptr, sr->n_pieces,
                      sr->pieces, sr->index, 0, NULL) != 0)
      return -1;
    return 0;
  }
  k = sr->fs->pread(sr->fd, p, n, (off_t)(WAL_SNAP_HEAD + sr->at));
  if (k <= 0) return -1;
  sr->crc = util_crc32c(sr->crc, p, (size_t)k);
  sr->at += (uint64_t)k;
  return (long)k;
}

URSULA_PRIVATE void wal_snap_close(struct wal_snap_reader *sr) {
  if (sr->fd >= 0) sr->fs->close(sr->fd);
  sr->fd = -1;
  buf_free(&sr->dir);
}

/* The pieces of the directory dir (k entries, m bytes) into w, as the
** current snapshot's.  URSULA_OK or URSULA_ENOMEM. */
static int wal_take_pieces(struct wal *w, const struct buf *dir, uint64_t k,
                           uint64_t m, uint64_t payload) {
  struct wal_piece *pc = NULL;
  if (k > 0) {
    pc = (struct wal_piece *)URSULA_MALLOC((size_t)k * sizeof(*pc));
    if (pc == NULL) return URSULA_ENOMEM;
    wal_dir_parse((const unsigned char *)dir->ptr, k, m, UINT64_MAX,
                  WAL_SNAP_HEAD + payload, pc);
  }
  URSULA_FREE(w->pieces);
  w->pieces = pc;
  w->n_pieces = (size_t)k;
  if (w->snap_fd >= 0) w->fs->close(w->snap_fd);
  w->snap_fd = -1;
  w->pc_pos = 0;
  return URSULA_OK;
}

/* Finish the file of sw: the directory and the tail, synced; renamed from
** its temporary name to `name`, the directory synced.  0 or an errno. */
static int wal_snap_finish(struct wal *w, struct wal_snap_writer *sw,
                           const char *name) {
  unsigned char t[WAL_SNAP_TAIL];
  char tmp[URSULA_PATH_LEN + 32], path[URSULA_PATH_LEN + 32];
  struct os_fs *fs = w->fs;
  uint32_t crc;
  int e;
  util_put64(t, sw->payload);
  util_put64(t + 8, sw->pieces);
  util_put64(t + 16, (uint64_t)sw->dir.len / 32);
  crc = util_crc32c(sw->crc, sw->dir.ptr, sw->dir.len);
  util_put32(t + 24, util_crc32c(crc, t, 24));
  util_put32(t + 28, 0);
  snprintf(tmp, sizeof(tmp), "%s/%s.tmp", w->dir, sw->name);
  snprintf(path, sizeof(path), "%s/%s", w->dir, name);
  e = wal_pwrite_all(fs, sw->fd, sw->dir.ptr, sw->dir.len, (off_t)sw->at);
  if (e == 0)
    e = wal_pwrite_all(fs, sw->fd, t, sizeof(t),
                       (off_t)(sw->at + sw->dir.len));
  if (e == 0 && fs->sync(sw->fd) != 0) e = errno;
  fs->close(sw->fd);
  sw->fd = -1;
  if (e == 0 && fs->rename(tmp, path) != 0) e = errno;
  if (e == 0 && fs->sync_dir(w->dir) != 0) e = errno ? errno : EIO;
  if (e != 0) fs->unlink(tmp);
  return e;
}

URSULA_PRIVATE int wal_snap_commit(struct wal *w, struct wal_snap_writer *sw) {
  int e, local;
  if (sw->fd < 0 || sw->index == 0) return URSULA_EIO;
  local = strcmp(sw->name, "snapshot") == 0;
  e = wal_snap_finish(w, sw, sw->name);
  if (e == 0 && local) {
    w->snap_index = sw->index;
    w->snap_term = sw->term;
    w->snap_flags = 0;
    w->since_snap = 0;
    /* the old file's pieces are gone with it: only the new ones count */
    if (wal_take_pieces(w, &sw->dir, sw->dir.len / 32, sw->pieces,
                        sw->payload) != URSULA_OK) {
      buf_free(&sw->dir);
      return wal_fail(w, ENOMEM);
    }
  }
  buf_free(&sw->dir);
  return e != 0 ? wal_errno_code(e) : URSULA_OK;
}

URSULA_PRIVATE int wal_save_snapshot(struct wal *w, uint64_t index,
                                     uint64_t term, const void *p, size_t n) {
  struct wal_snap_writer sw;
  size_t off = 0;
  int rc = wal_snap_begin(w, &sw, index, term);
  if (rc != URSULA_OK) return rc;
  while (rc == URSULA_OK && off < n) { /* in chunks, as a sender would */
    size_t k = n - off < WAL_SNAP_CHUNK ? n - off : WAL_SNAP_CHUNK;
    rc = wal_snap_put(&sw, (const char *)p + off, k);
    off += k;
  }
  if (rc == URSULA_OK) return wal_snap_commit(w, &sw);
  wal_snap_abort(w, &sw);
  return rc;
}

/* Read the snapshot's payload whole into out (for the state machine's
** restore), checking its CRC, and take its pieces.  URSULA_OK (out empty
** and snap_index 0 if there is none) or URSULA_ECORRUPT / an I/O error
** with err set. */
static int wal_load_snapshot(struct wal *w, struct buf *out, char *err) {
  struct wal_snap_reader sr;
  int rc = wal_snap_open(w, &sr, err);
  long k;
  out->len = 0;
  if (rc == URSULA_ENOTFOUND) return URSULA_OK;
  if (rc != URSULA_OK) return rc;
  if (sr.size > SIZE_MAX || buf_reserve(out, (size_t)sr.size) != URSULA_OK) {
    wal_snap_close(&sr);
    return URSULA_ENOMEM;
  }
  for (;;) {
    size_t want = out->cap - out->len - 1; /* (the NUL's byte stays) */
    if (want > WAL_SNAP_CHUNK) want = WAL_SNAP_CHUNK;
    k = wal_snap_read(&sr, out->ptr + out->len, want);
    if (k <= 0) break;
    out->len += (size_t)k;
  }
  if (k < 0 || out->len != sr.size) {
    wal_snap_close(&sr);
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s/snapshot is damaged (CRC mismatch, or its directory of "
             "pieces is out of order); the state it holds is lost unless it "
             "is restored from a backup",
             w->dir);
    return URSULA_ECORRUPT;
  }
  rc = wal_take_pieces(w, &sr.dir, sr.n_pieces, sr.pieces, sr.size);
  wal_snap_close(&sr);
  if (rc != URSULA_OK) return rc;
  w->snap_index = sr.index;
  w->snap_term = sr.term;
  w->snap_flags = sr.flags;
  return URSULA_OK;
}

/* The piece that holds bytes [off, off + len) of entry index, or NULL. */
static const struct wal_piece *wal_piece_find(const struct wal *w,
                                              uint64_t index, uint64_t off,
                                              uint64_t len) {
  size_t lo = 0, hi = w->n_pieces;
  const struct wal_piece *p;
  while (lo < hi) { /* the first piece after (index, off) */
    size_t mid = lo + (hi - lo) / 2;
    p = &w->pieces[mid];
    if (p->index < index || (p->index == index && p->off <= off))
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0) return NULL;
  p = &w->pieces[lo - 1];
  if (p->index != index || off - p->off > p->len || len > p->len - (off - p->off))
    return NULL;
  return p;
}

/* Append bytes [off, off + len) of entry index from piece p to out; the
** whole piece is read and its CRC checked (the last one read is kept). */
static int wal_piece_read(struct wal *w, const struct wal_piece *p,
                          uint64_t off, uint64_t len, struct buf *out) {
  if (w->pc_pos != p->pos + 1) {
    char path[URSULA_PATH_LEN + 32];
    snprintf(path, sizeof(path), "%s/snapshot", w->dir);
    if (w->snap_fd < 0 && (w->snap_fd = w->fs->open(path, O_RDONLY, 0)) < 0)
      return errno == ENOENT ? URSULA_ECORRUPT : URSULA_EIO;
    w->pc_pos = 0;
    w->pc.len = 0;
    if (buf_reserve(&w->pc, (size_t)p->len) != URSULA_OK) return URSULA_ENOMEM;
    if ((p->len > 0 && w->fs->pread(w->snap_fd, w->pc.ptr, (size_t)p->len,
                                    (off_t)p->pos) != (ssize_t)p->len) ||
        util_crc32c(0, w->pc.ptr, (size_t)p->len) != p->crc) {
      LOG_E("%s: the piece of entry %llu at byte %llu fails its check", path,
            (unsigned long long)p->index, (unsigned long long)p->pos);
      return URSULA_ECORRUPT;
    }
    w->pc.len = (size_t)p->len;
    w->pc_pos = p->pos + 1;
  }
  return buf_append(out, w->pc.ptr + (off - p->off), (size_t)len);
}

URSULA_PRIVATE int wal_has_piece(const struct wal *w, uint64_t index,
                                 uint64_t off, uint64_t len) {
  return wal_piece_find(w, index, off, len) != NULL;
}

URSULA_PRIVATE uint64_t wal_bytes_since_snapshot(const struct wal *w) {
  return w->since_snap;
}

/* ------------------------------------------------------------ open */

/* Build the HARD record of (term, vote) at out (48 bytes). */
static void wal_hard_record(unsigned char *out, uint64_t term, uint64_t vote,
                            uint64_t index) {
  util_put64(out + WAL_RECORD_HEADER, term);
  util_put64(out + WAL_RECORD_HEADER + 8, vote);
  wal_seal_record(out, WAL_HARD, term, index, WAL_HARD_BYTES);
}

/* Start a new last segment whose first entry will be `first`: its header
** and a HARD record of the durable hard state, synced, the directory
** synced.  The previous last segment (if any) is then sealed. */
static int wal_seg_create(struct wal *w, uint64_t first) {
  struct os_fs *fs = w->fs;
  unsigned char h[WAL_HEADER_BYTES + WAL_RECORD_HEADER + WAL_HARD_BYTES];
  unsigned char seal[WAL_RECORD_HEADER + WAL_SEAL_BYTES];
  char path[URSULA_PATH_LEN + 32];
  int fd, e, prev_fd = w->fd;
  memset(h, 0, sizeof(h));
  memcpy(h, wal_magic, 8);
  util_put64(h + 8, first);
  util_put32(h + 24, util_crc32c(0, h, 24));
  wal_hard_record(h + WAL_HEADER_BYTES, w->term, w->vote, first - 1);
  wal_seg_path(w, first, path, sizeof(path));
  fd = fs->open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return wal_errno_code(errno);
  if ((e = wal_pwrite_all(w->fs, fd, h, sizeof(h), 0)) != 0 ||
      (fs->sync(fd) != 0 && (e = errno) != 0) ||
      (w->fs->sync_dir(w->dir) != 0 && (e = errno ? errno : EIO) != 0)) {
    fs->close(fd);
    fs->unlink(path);
    return wal_errno_code(e);
  }
  if (prev_fd >= 0) { /* seal the previous segment: it is complete */
    int lost = 0, cut;   /* a sync of it failed; the SEAL was cut again */
    util_put64(seal + WAL_RECORD_HEADER, first);
    wal_seal_record(seal, WAL_SEAL, w->last_term, first - 1, WAL_SEAL_BYTES);
    if ((e = wal_pwrite_all(w->fs, prev_fd, seal, sizeof(seal), w->size)) ==
            0 &&
        fs->sync(prev_fd) != 0) {
      e = errno ? errno : EIO;
      lost = 1;
    }
    if (e != 0) {
      /* part of the SEAL may be there.  Cut it off again, then drop the
      ** new segment: the log is as before the roll.  If even the cut
      ** fails, keep the new segment (a sealed segment needs its
      ** successor) and fail the log: wal_recover() cuts again.  A failed
      ** sync may have lost appends the journal holds: wal_lazy_failed. */
      cut = fs->ftruncate(prev_fd, w->size) == 0;
      if (cut && fs->sync(prev_fd) != 0) {
        cut = 0;
        lost = 1;
      }
      if (lost) wal_lazy_failed(w, e);
      fs->close(fd);
      if (!cut) return wal_fail(w, e);
      fs->unlink(path);
      w->fs->sync_dir(w->dir);
      return wal_errno_code(e);
    }
  }
  if (wal_seg_push(w, first) != URSULA_OK) {
    fs->close(fd);
    return URSULA_ENOMEM;
  }
  w->segs[w->n_segs - 1].mapped = 1;
  if (prev_fd >= 0) fs->close(prev_fd);
  w->fd = fd;
  w->size = w->written = (off_t)sizeof(h);
  w->lazy = 0; /* the new file is synced, the old one sealed and synced */
  return URSULA_OK;
}

/* wal_open's listing: note each segment file. */
static int wal_open_entry(void *arg, const char *name) {
  struct wal *w = (struct wal *)arg;
  uint64_t first;
  return wal_seg_name(name, &first) ? wal_seg_push(w, first) : URSULA_OK;
}

/* Whether path exists (an open that does not fail with ENOENT). */
static int wal_exists(struct os_fs *fs, const char *path) {
  int fd = fs->open(path, O_RDONLY, 0);
  if (fd >= 0) fs->close(fd);
  return fd >= 0 || errno != ENOENT;
}

URSULA_PRIVATE int wal_open(struct wal **out, struct env *env, const char *dir,
                            int must_exist, char *err) {
  struct os_fs *fs = (env != NULL ? env : env_real())->fs;
  struct wal *w;
  char path[URSULA_PATH_LEN + 32];
  int rc;
  *out = NULL;
  if (strlen(dir) >= URSULA_PATH_LEN) {
    snprintf(err, URSULA_ERRMSG_LEN, "WAL directory path is too long");
    return URSULA_EINVAL;
  }
  if (must_exist && !wal_exists(fs, dir)) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s is missing, but the data directory says this group has a "
             "log; not starting without it (restore it, or start on an "
             "empty --wal-dir to begin anew)",
             dir);
    return URSULA_ECORRUPT;
  }
  if (fs->mkdir(dir, 0755) != 0 && errno != EEXIST) {
    snprintf(err, URSULA_ERRMSG_LEN, "mkdir %s: %s", dir, strerror(errno));
    return URSULA_EIO;
  }
  w = (struct wal *)URSULA_MALLOC(sizeof(*w));
  if (w == NULL) return URSULA_ENOMEM;
  memset(w, 0, sizeof(*w));
  w->fs = fs;
  memcpy(w->dir, dir, strlen(dir) + 1);
  w->fd = -1;
  w->snap_fd = -1;
  w->segment_bytes = WAL_SEGMENT_BYTES;
  w->first_index = 1;
  snprintf(path, sizeof(path), "%.1024s/state", dir);
  if (wal_exists(fs, path)) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s holds a log in WAL format 1 (written by an older ursula); "
             "this build reads format 2 only: read the data out with the "
             "older build, or start on an empty --wal-dir",
             dir);
    URSULA_FREE(w);
    return URSULA_EINVAL;
  }
  rc = fs->list(dir, wal_open_entry, w);
  if (rc != 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "listing %s: %s", dir,
             rc < 0 ? strerror(errno) : ursula_strerror(rc));
    wal_close(w);
    return rc < 0 ? URSULA_EIO : rc;
  }
  if (w->n_segs > 1) qsort(w->segs, w->n_segs, sizeof(*w->segs), wal_seg_cmp);
  if (w->n_segs > 0) w->first_index = w->segs[0].first_index;
  if (must_exist && w->n_segs == 0) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s has no log segment, but the data directory says this group "
             "has a log; not starting without it (restore the *.wal files)",
             dir);
    wal_close(w);
    return URSULA_ECORRUPT;
  }
  w->last_index = w->durable_index = w->first_index - 1;
  *out = w;
  return URSULA_OK;
}

URSULA_PRIVATE void wal_close(struct wal *w) {
  size_t i;
  if (w == NULL) return;
  if (w->fd >= 0) w->fs->close(w->fd);
  for (i = 0; i < w->n_segs; i++) wal_seg_release(w->fs, &w->segs[i]);
  URSULA_FREE(w->segs);
  buf_free(&w->rd);
  if (w->snap_fd >= 0) w->fs->close(w->snap_fd);
  URSULA_FREE(w->pieces);
  buf_free(&w->pc);
  URSULA_FREE(w);
}

/* ------------------------------------------------------------ scanning */

/* What wal_scan() found in one segment image. */
struct wal_scan {
  size_t good;          /* bytes of the valid prefix (0: bad header) */
  uint64_t last;        /* last entry index in the valid prefix */
  uint64_t last_term;   /* its term (in: the term before the segment) */
  int sealed;           /* the valid prefix ends with a SEAL record */
  int hard;             /* a HARD record was seen: */
  uint64_t term, vote;  /* the last one's */
  int v1;               /* the header is a format-1 header */
};

/* Check the segment image p[0..len) whose name says `first`, noting the
** file offset of each entry in sg (when sg is not NULL) and calling fn
** for each valid entry above `skip` (when fn is not NULL).  Stops at the
** first bad record, or when fn fails (*fn_rc). */
static void wal_scan(const unsigned char *p, size_t len, uint64_t first,
                     struct wal_seg *sg, uint64_t skip,
                     int (*fn)(void *, const struct wal_entry *), void *arg,
                     int *fn_rc, struct wal_scan *out) {
  size_t at = WAL_HEADER_BYTES;
  uint64_t expect = first;
  out->good = 0;
  out->last = first - 1;
  out->sealed = out->hard = out->v1 = 0;
  *fn_rc = URSULA_OK;
  if (len >= 8 && memcmp(p, wal_magic_v1, 8) == 0) out->v1 = 1;
  if (len < WAL_HEADER_BYTES || memcmp(p, wal_magic, 8) != 0 ||
      util_get64(p + 8) != first || util_get32(p + 24) != util_crc32c(0, p, 24))
    return;
  if (sg != NULL) sg->n_offs = 0;
  for (;;) {
    const unsigned char *r = p + at;
    uint32_t n;
    int type;
    uint64_t term, index;
    if (out->sealed || !wal_record_ok(r, len - at, &n)) break;
    type = r[8];
    term = util_get64(r + 16);
    index = util_get64(r + 24);
    if (wal_is_entry(type)) {
      struct wal_entry e;
      if (index != expect || term < out->last_term) break;
      if (sg != NULL && wal_seg_note(sg, at) != URSULA_OK) {
        *fn_rc = URSULA_ENOMEM;
        break;
      }
      if (fn != NULL && index > skip) { /* at or below skip: snapshotted */
        e.term = term;
        e.index = index;
        e.type = type;
        e.data = r + WAL_RECORD_HEADER;
        e.len = n;
        if ((*fn_rc = fn(arg, &e)) != URSULA_OK) break;
      }
      out->last = index;
      out->last_term = term;
      expect++;
    } else {
      if (index != expect - 1) break;
      if (type == WAL_HARD) {
        out->hard = 1;
        out->term = util_get64(r + WAL_RECORD_HEADER);
        out->vote = util_get64(r + WAL_RECORD_HEADER + 8);
      } else if (util_get64(r + WAL_RECORD_HEADER) != expect) {
        break; /* a SEAL must name the next index */
      } else {
        out->sealed = 1;
      }
    }
    at += WAL_RECORD_HEADER + n;
  }
  out->good = at;
}

/* Whether a valid record whose index could follow `last` starts anywhere
** in p[from..len): if one does, the bad bytes before it are not a torn
** tail but damage. */
static int wal_valid_after(const unsigned char *p, size_t len, size_t from,
                           uint64_t last) {
  size_t at;
  for (at = from; at + WAL_RECORD_HEADER <= len; at++) {
    const unsigned char *r = p + at;
    uint64_t index = util_get64(r + 24);
    uint32_t n;
    /* cheap filters first: a plausible index, the zero bytes, a type */
    if (index < last ||
        index - last > (uint64_t)(at - from + 1) / WAL_RECORD_HEADER + 2)
      continue; /* entries lost in the bad bytes: at most one per header */
    if (r[9] != 0 || r[15] != 0 || r[8] == 0) continue;
    if (wal_record_ok(r, len - at, &n)) return 1;
  }
  return 0;
}

/* ------------------------------------------------------------ replay */

static int wal_seal_file(struct wal *w, const char *path, off_t at,
                         uint64_t last, uint64_t term);

/* Whether segment k's header is whole and right. */
static int wal_header_ok(struct wal *w, size_t k) {
  unsigned char h[WAL_HEADER_BYTES];
  char path[URSULA_PATH_LEN + 32];
  int fd, ok;
  wal_seg_path(w, w->segs[k].first_index, path, sizeof(path));
  if ((fd = w->fs->open(path, O_RDONLY, 0)) < 0) return 0;
  ok = w->fs->pread(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
       memcmp(h, wal_magic, 8) == 0 &&
       util_get64(h + 8) == w->segs[k].first_index &&
       util_get32(h + 24) == util_crc32c(0, h, 24);
  w->fs->close(fd);
  return ok;
}

/* Segment k (not the last) is one replay does not read (the snapshot
** covers it): check that it ends with the SEAL naming segment k + 1, so a
** segment missing between them is refused here, not found by a read.  One
** that a crashed roll left unsealed is read whole instead, and sealed if
** its entries run up to segment k + 1. */
static int wal_check_seal(struct wal *w, size_t k, char *err) {
  unsigned char r[WAL_RECORD_HEADER + WAL_SEAL_BYTES];
  char path[URSULA_PATH_LEN + 32];
  uint64_t next = w->segs[k + 1].first_index, size = 0;
  struct wal_scan sc;
  struct buf img;
  uint32_t n;
  int fd, fn_rc, rc = URSULA_OK;
  wal_seg_path(w, w->segs[k].first_index, path, sizeof(path));
  fd = w->fs->open(path, O_RDONLY, 0);
  if (fd < 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "%s: %s", path, strerror(errno));
    return URSULA_EIO;
  }
  if (w->fs->size(fd, &size) == 0 && size >= sizeof(r) &&
      w->fs->pread(fd, r, sizeof(r), (off_t)(size - sizeof(r))) ==
          (ssize_t)sizeof(r) &&
      wal_record_ok(r, sizeof(r), &n) && r[8] == WAL_SEAL &&
      util_get64(r + WAL_RECORD_HEADER) == next) {
    w->fs->close(fd);
    return URSULA_OK;
  }
  w->fs->close(fd);
  memset(&img, 0, sizeof(img));
  memset(&sc, 0, sizeof(sc));
  if ((rc = wal_read_path(w->fs, path, &img)) == URSULA_OK) {
    wal_scan((const unsigned char *)img.ptr, img.len, w->segs[k].first_index,
             NULL, 0, NULL, NULL, &fn_rc, &sc);
    if (sc.good != img.len || sc.last + 1 != next)
      rc = URSULA_ECORRUPT;
    else if (!sc.sealed && wal_header_ok(w, k + 1))
      rc = wal_seal_file(w, path, (off_t)sc.good, sc.last, sc.last_term);
    /* (if the next one's header is bad, the crash came while it was
    ** created: replay drops it and seals this one to a new one) */
  }
  buf_free(&img);
  if (rc == URSULA_ECORRUPT)
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s does not end where segment %020llu.wal begins: the entries "
             "between are missing, or the file is damaged at byte %llu; not "
             "starting without them",
             path, (unsigned long long)next, (unsigned long long)sc.good);
  else if (rc != URSULA_OK)
    snprintf(err, URSULA_ERRMSG_LEN, "%s: %s", path, ursula_strerror(rc));
  return rc;
}

/* Append a SEAL to the segment file at path, whose valid bytes end at `at`
** and whose last entry is (last, term): the next segment starts at
** last + 1.  Synced. */
static int wal_seal_file(struct wal *w, const char *path, off_t at,
                         uint64_t last, uint64_t term) {
  unsigned char seal[WAL_RECORD_HEADER + WAL_SEAL_BYTES];
  int fd = w->fs->open(path, O_RDWR, 0), e;
  if (fd < 0) return wal_errno_code(errno);
  util_put64(seal + WAL_RECORD_HEADER, last + 1);
  wal_seal_record(seal, WAL_SEAL, term, last, WAL_SEAL_BYTES);
  e = wal_pwrite_all(w->fs, fd, seal, sizeof(seal), at);
  if (e == 0 && w->fs->sync(fd) != 0) e = errno;
  w->fs->close(fd);
  return e != 0 ? wal_errno_code(e) : URSULA_OK;
}

/* Read segment k whole (one replay skipped) and scan it: its valid size,
** its last HARD record, whether it is sealed.  URSULA_OK; URSULA_ECORRUPT
** (err set) if it is damaged; or an I/O error. */
static int wal_rescan(struct wal *w, size_t k, struct wal_scan *out,
                      char *err) {
  char path[URSULA_PATH_LEN + 32];
  struct buf img;
  int fn_rc, rc;
  memset(&img, 0, sizeof(img));
  memset(out, 0, sizeof(*out));
  wal_seg_path(w, w->segs[k].first_index, path, sizeof(path));
  if ((rc = wal_read_path(w->fs, path, &img)) == URSULA_OK) {
    wal_scan((const unsigned char *)img.ptr, img.len, w->segs[k].first_index,
             NULL, 0, NULL, NULL, &fn_rc, out);
    if (out->good != img.len || out->good < WAL_HEADER_BYTES) {
      snprintf(err, URSULA_ERRMSG_LEN,
               "%s is damaged at byte %llu; not starting rather than "
               "dropping acknowledged entries",
               path, (unsigned long long)out->good);
      rc = URSULA_ECORRUPT;
    }
  } else {
    snprintf(err, URSULA_ERRMSG_LEN, "%s: %s", path, ursula_strerror(rc));
  }
  buf_free(&img);
  return rc;
}

URSULA_PRIVATE int wal_replay(struct wal *w,
                              int (*restore)(void *arg, const void *p,
                                             size_t len),
                              int (*fn)(void *arg, const struct wal_entry *e),
                              void *arg, struct buf *scratch,
                              struct wal_stats *st, char *err) {
  struct os_fs *fs = w->fs;
  struct buf own, *img = scratch != NULL ? scratch : &own;
  size_t i = 0, k, first_read;
  int rc, fn_rc = URSULA_OK, prev_sealed = 0;
  size_t prev_good = 0; /* valid bytes of the segment before the last */
  size_t pend_good = 0; /* the segment before is unsealed: its bytes, */
  uint64_t pend_last = 0, pend_term = 0; /* last entry and its term */
  uint64_t last, term;
  struct wal_scan sc;
  char path[URSULA_PATH_LEN + 32];
  memset(st, 0, sizeof(*st));
  memset(&own, 0, sizeof(own));
  memset(&sc, 0, sizeof(sc));
  err[0] = '\0';
  /* the snapshot first, then the entries after it */
  rc = wal_load_snapshot(w, img, err);
  if (rc == URSULA_OK && w->snap_index > 0) {
    st->snapshot_index = w->snap_index;
    rc = restore != NULL ? restore(arg, img->ptr, img->len) : URSULA_EINVAL;
    if (rc != URSULA_OK)
      snprintf(err, URSULA_ERRMSG_LEN, "%s/snapshot: %s", w->dir,
               rc == URSULA_ECORRUPT ? "does not decode as a state"
                                     : ursula_strerror(rc));
  }
  if (rc != URSULA_OK) goto out;
  rc = URSULA_ECORRUPT;
  if (w->n_segs == 0 && w->snap_index > 0) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s has a snapshot at entry %llu but no log segment; not "
             "starting without them (restore the *.wal files)",
             w->dir, (unsigned long long)w->snap_index);
    goto out;
  }
  if (w->n_segs > 0 && w->snap_index == 0 && w->segs[0].first_index != 1) {
    wal_seg_path(w, w->segs[0].first_index, path, sizeof(path));
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s: the log starts at entry %llu, but there is no snapshot of "
             "the entries before it (the file \"snapshot\" beside it is "
             "missing); not starting without it",
             path, (unsigned long long)w->segs[0].first_index);
    goto out;
  }
  if (w->snap_index > 0) { /* skip segments wholly covered by it */
    while (i + 1 < w->n_segs && w->segs[i + 1].first_index <= w->snap_index + 1)
      i++;
    /* not read, but none may be missing: streams may name their entries
    ** (not so under an installed image, which carries every byte the
    ** state names up to its index: what is below it is an old log) */
    for (k = 0; k < i && !(w->snap_flags & WAL_SNAP_IMAGE); k++)
      if ((rc = wal_check_seal(w, k, err)) != URSULA_OK) goto out;
    rc = URSULA_ECORRUPT;
    if (w->segs[i].first_index > w->snap_index + 1) {
      wal_seg_path(w, w->segs[i].first_index, path, sizeof(path));
      snprintf(err, URSULA_ERRMSG_LEN,
               "%s: entries %llu to %llu are missing (after the snapshot, "
               "before this segment); not starting without them",
               path, (unsigned long long)w->snap_index + 1,
               (unsigned long long)w->segs[i].first_index - 1);
      goto out;
    }
  }
  first_read = i;
  last = w->n_segs > 0 ? w->segs[i].first_index - 1 : w->snap_index;
  term = w->snap_term;
  sc.last_term = 0;
  for (; i < w->n_segs; i++) {
    struct wal_seg *sg = &w->segs[i];
    int is_last = i + 1 == w->n_segs;
    wal_seg_path(w, sg->first_index, path, sizeof(path));
    if (sg->first_index != last + 1) { /* a segment is missing */
      snprintf(err, URSULA_ERRMSG_LEN,
               "%s: entries %llu to %llu are missing (a segment file before "
               "this one is gone); not starting without them",
               path, (unsigned long long)last + 1,
               (unsigned long long)sg->first_index - 1);
      goto out;
    }
    if ((rc = wal_read_path(w->fs, path, img)) != URSULA_OK) {
      snprintf(err, URSULA_ERRMSG_LEN, "%s: %s", path, ursula_strerror(rc));
      goto out;
    }
    rc = URSULA_ECORRUPT;
    /* the first segment read may hold entries before the snapshot, of
    ** older terms than the snapshot's */
    sc.last_term = sg->first_index <= w->snap_index ? 0 : term;
    wal_scan((const unsigned char *)img->ptr, img->len, sg->first_index, sg,
             w->snap_index, fn, arg, &fn_rc, &sc);
    if (fn_rc != URSULA_OK) {
      rc = fn_rc;
      if (err[0] == '\0')
        snprintf(err, URSULA_ERRMSG_LEN, "%s: %s", path, ursula_strerror(rc));
      goto out;
    }
    sg->mapped = 1;
    { /* entries of this segment handed to fn */
      uint64_t lo = sg->first_index > w->snap_index ? sg->first_index
                                                    : w->snap_index + 1;
      if (sc.last >= lo) st->entries += sc.last - lo + 1;
    }
    st->bytes += sc.good;
    last = sc.last;
    term = sc.last_term;
    if (sc.hard) {
      w->term = sc.term;
      w->vote = sc.vote;
    }
    if (sc.v1) {
      snprintf(err, URSULA_ERRMSG_LEN,
               "%s is in WAL format 1 (written by an older ursula); this "
               "build reads format 2 only: read the data out with the older "
               "build, or start on an empty --wal-dir",
               path);
      rc = URSULA_EINVAL;
      goto out;
    }
    if (sc.good < img->len || (sc.good == 0 && !is_last) ||
        (sc.good == 0 && prev_sealed)) {
      int bad_head = sc.good == 0 && prev_sealed;
      st->cut_at = sc.good;
      if (!is_last || bad_head ||
          wal_valid_after((const unsigned char *)img->ptr, img->len,
                          sc.good + 1, last)) {
        snprintf(err, URSULA_ERRMSG_LEN,
                 "%s is damaged at byte %llu (the record there fails its "
                 "check, and %s); not starting rather than dropping "
                 "acknowledged entries: restore the file, or move the data "
                 "directory aside",
                 path, (unsigned long long)sc.good,
                 !is_last      ? "later segments follow it"
                 : bad_head ? "the segment before it is sealed"
                               : "valid records follow it");
        goto out;
      }
      st->cut_bytes = img->len - sc.good; /* a torn tail: cut below */
    }
    if (pend_good > 0 && sc.good > 0) {
      /* a crash came between creating this segment and sealing the one
      ** before: this one's header is good, so seal that one now, and
      ** losing this one later is seen as such */
      wal_seg_path(w, w->segs[i - 1].first_index, path, sizeof(path));
      if ((rc = wal_seal_file(w, path, (off_t)pend_good, pend_last,
                              pend_term)) != URSULA_OK) {
        snprintf(err, URSULA_ERRMSG_LEN, "%s: sealing it: %s", path,
                 ursula_strerror(rc));
        goto out;
      }
      rc = URSULA_ECORRUPT;
      wal_seg_path(w, sg->first_index, path, sizeof(path));
    }
    pend_good = !is_last && !sc.sealed ? sc.good : 0;
    pend_last = last;
    pend_term = term;
    if (!is_last) prev_good = sc.good;
    prev_sealed = sc.sealed;
    if (is_last && sc.sealed) {
      snprintf(err, URSULA_ERRMSG_LEN,
               "%s ends with a seal naming segment %020llu.wal, which is "
               "missing; not starting without it",
               path, (unsigned long long)last + 1);
      goto out;
    }
  }
  if (last < w->snap_index && (w->snap_flags & WAL_SNAP_IMAGE)) {
    /* an install cut short after its image became the snapshot
    ** (wal_install_commit): the old log is wholly below it; finish */
    w->since_snap = 0;
    w->last_index = w->durable_index = w->snap_index;
    w->last_term = w->durable_term = w->snap_term;
    w->next_term = w->term;
    w->next_vote = w->vote;
    LOG_I("%s: finishing the install of the snapshot at entry %llu", w->dir,
          (unsigned long long)w->snap_index);
    if ((rc = wal_seg_create(w, w->snap_index + 1)) == URSULA_OK)
      rc = wal_compact(w, w->snap_index);
    goto out;
  }
  if (last < w->snap_index) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s: the log ends at entry %llu, before its snapshot (%llu)",
             w->dir, (unsigned long long)last,
             (unsigned long long)w->snap_index);
    goto out;
  }
  rc = URSULA_OK;
  w->since_snap = st->bytes;
  w->last_index = w->durable_index = last;
  w->last_term = w->durable_term = term;
  w->next_term = w->term;
  w->next_vote = w->vote;
  if (w->n_segs == 0) {
    rc = wal_seg_create(w, last + 1);
    goto out;
  }
  if (sc.good < WAL_HEADER_BYTES) {
    /* the last segment's header is bad: a crash while it was created
    ** (its predecessor is not sealed: checked above, or below if replay
    ** skipped it) */
    uint64_t bad_first = w->segs[w->n_segs - 1].first_index;
    /* an install's first segment: the old log below is not sealed to it */
    int fresh = (w->snap_flags & WAL_SNAP_IMAGE) &&
                bad_first == w->snap_index + 1;
    wal_seg_path(w, bad_first, path, sizeof(path));
    wal_seg_release(w->fs, &w->segs[w->n_segs - 1]);
    w->n_segs--;
    fs->unlink(path);
    w->fs->sync_dir(w->dir);
    if (w->n_segs > 0 && first_read > w->n_segs - 1) {
      /* the one before was skipped (the snapshot covers it), but its size
      ** and the latest hard state are in it: read it now */
      struct wal_scan ps;
      if ((rc = wal_rescan(w, w->n_segs - 1, &ps, err)) != URSULA_OK)
        goto out;
      rc = URSULA_ECORRUPT;
      if (ps.sealed && !fresh) {
        wal_seg_path(w, w->segs[w->n_segs - 1].first_index, path,
                     sizeof(path));
        snprintf(err, URSULA_ERRMSG_LEN,
                 "%s is sealed, but the segment after it (%020llu.wal) has "
                 "a damaged header; not starting without it",
                 path, (unsigned long long)bad_first);
        goto out;
      }
      prev_good = ps.good;
      if (ps.hard) {
        w->term = w->next_term = ps.term;
        w->vote = w->next_vote = ps.vote;
      }
    }
    if (fresh) {
      rc = wal_seg_create(w, last + 1);
      if (rc == URSULA_OK) rc = wal_compact(w, w->snap_index);
      goto out;
    }
    if (w->n_segs > 0) { /* created anew after it, which it then seals */
      wal_seg_path(w, w->segs[w->n_segs - 1].first_index, path, sizeof(path));
      if ((w->fd = fs->open(path, O_RDWR, 0)) < 0) {
        rc = wal_errno_code(errno);
        goto out;
      }
      w->size = w->written = (off_t)prev_good;
    }
    rc = wal_seg_create(w, last + 1);
    goto out;
  }
  wal_seg_path(w, w->segs[w->n_segs - 1].first_index, path, sizeof(path));
  w->fd = fs->open(path, O_RDWR, 0);
  if (w->fd < 0) {
    rc = wal_errno_code(errno);
    goto out;
  }
  w->size = w->written = (off_t)sc.good;
  if (st->cut_bytes > 0) { /* make the cut itself durable */
    st->cut_segment = w->segs[w->n_segs - 1].first_index;
    if (fs->ftruncate(w->fd, w->size) != 0 || fs->sync(w->fd) != 0)
      rc = wal_errno_code(errno);
  }
  /* an install cut short before the old log went: it goes now */
  if (rc == URSULA_OK && (w->snap_flags & WAL_SNAP_IMAGE))
    rc = wal_compact(w, w->snap_index);
out:
  if (img == &own) buf_free(&own);
  else img->len = 0;
  if (rc != URSULA_OK && err[0] == '\0') /* every failure says something */
    snprintf(err, URSULA_ERRMSG_LEN, "%s: replay: %s", w->dir,
             ursula_strerror(rc));
  return rc;
}

/* ------------------------------------------------------------ writing */

URSULA_PRIVATE int wal_frame(struct wal *w, int type, uint64_t term,
                             uint64_t index, void *rec, size_t n) {
  unsigned char *h = (unsigned char *)rec;
  if (w->failed) return URSULA_EIO;
  if (n > WAL_MAX_RECORD) return URSULA_ETOOBIG;
  if (wal_is_entry(type)) {
    if (index != w->last_index + 1 || index == 0 || term < w->last_term)
      return URSULA_EINVAL; /* (index 0: the indexes ran out) */
  } else if (type != WAL_HARD || n != WAL_HARD_BYTES ||
             index != w->last_index) {
    return URSULA_EINVAL;
  }
  /* roll once all before is durable, and only past a segment that holds
  ** an entry: one of HARD records alone (votes) has the next one's name */
  if (w->pending == 0 && w->written == w->size && w->size >= w->segment_bytes &&
      w->last_index >= w->segs[w->n_segs - 1].first_index) {
    int rc = wal_seg_create(w, w->last_index + 1);
    if (rc != URSULA_OK) return rc;
  }
  if (wal_is_entry(type)) {
    struct wal_seg *sg = &w->segs[w->n_segs - 1];
    if (wal_seg_note(sg, (uint64_t)w->written + w->pending) != URSULA_OK)
      return URSULA_ENOMEM;
    w->last_index = index;
    w->last_term = term;
  } else {
    w->next_term = util_get64(h + WAL_RECORD_HEADER);
    w->next_vote = util_get64(h + WAL_RECORD_HEADER + 8);
  }
  wal_seal_record(h, type, term, index, n);
  w->pending += WAL_RECORD_HEADER + n;
  return URSULA_OK;
}

URSULA_PRIVATE void wal_hard_payload(void *payload, uint64_t term,
                                     uint64_t vote) {
  util_put64((unsigned char *)payload, term);
  util_put64((unsigned char *)payload + 8, vote);
}

/* Make sure segment k's map of entry offsets is built: read the file and
** check every record (segments covered by the snapshot were not read at
** start).  Records past the first bad one stay unmapped. */
static int wal_seg_map(struct wal *w, size_t k) {
  struct wal_seg *sg = &w->segs[k];
  struct wal_scan sc;
  struct buf img;
  char path[URSULA_PATH_LEN + 32];
  int fn_rc, rc;
  if (sg->mapped) return URSULA_OK;
  memset(&img, 0, sizeof(img));
  memset(&sc, 0, sizeof(sc));
  wal_seg_path(w, sg->first_index, path, sizeof(path));
  rc = wal_read_path(w->fs, path, &img);
  if (rc == URSULA_OK) {
    wal_scan((const unsigned char *)img.ptr, img.len, sg->first_index, sg, 0,
             NULL, NULL, &fn_rc, &sc);
    if (fn_rc != URSULA_OK) rc = fn_rc;
    if (sc.good < img.len) {
      sg->damaged = (int64_t)sc.good;
      LOG_E("%s is damaged at byte %llu: reads of the entries from there on "
            "fail",
            path, (unsigned long long)sc.good);
    }
  }
  buf_free(&img);
  if (rc == URSULA_OK) sg->mapped = 1;
  return rc == URSULA_ENOTFOUND ? URSULA_ECORRUPT : rc;
}

/* Make the record of entry index w->rd's current one (rd_at), checked:
** from the read-ahead window when it holds the whole record, else by
** reading a new window at the record (WAL_READ_AHEAD bytes, or the whole
** record if larger, never past the last segment's durable size). */
static int wal_load_record(struct wal *w, uint64_t index) {
  struct os_fs *fs = w->fs;
  size_t k, at;
  struct wal_seg *sg;
  const unsigned char *r;
  uint64_t pos, end;
  uint32_t n;
  int fd, rc;
  if (w->rd_index == index && index != 0) return URSULA_OK;
  if (index > w->durable_index || index == 0) return URSULA_ENOTFOUND;
  if (index < w->first_index || w->n_segs == 0) {
    LOG_E("%s: entry %llu is read but the log starts at %llu (a segment "
          "is missing)",
          w->dir, (unsigned long long)index,
          (unsigned long long)w->first_index);
    return URSULA_ECORRUPT; /* someone names it: it must have been here */
  }
  k = wal_seg_of(w, index);
  sg = &w->segs[k];
  if ((rc = wal_seg_map(w, k)) != URSULA_OK) return rc;
  if (index - sg->first_index >= sg->n_offs) return URSULA_ECORRUPT;
  pos = sg->offs[index - sg->first_index];
  w->rd_index = 0;
  if (!(w->rd_seg == sg->first_index && pos >= w->rd_pos &&
        pos - w->rd_pos + WAL_RECORD_HEADER <= w->rd.len &&
        (uint64_t)util_get32((const unsigned char *)w->rd.ptr +
                             (pos - w->rd_pos) + 4) +
                WAL_RECORD_HEADER <=
            w->rd.len - (pos - w->rd_pos))) {
    /* not all in the window: a new one, at the record */
    ssize_t got;
    size_t want = WAL_READ_AHEAD;
    /* the last segment: never past what is durable, whichever descriptor
    ** reads it (w->fd is -1 after a failed reopen in wal_recover) */
    if (k == w->n_segs - 1) {
      end = (uint64_t)w->size;
      if (pos >= end || end - pos < WAL_RECORD_HEADER) return URSULA_ECORRUPT;
      if (end - pos < want) want = (size_t)(end - pos);
    }
    if (k == w->n_segs - 1 && w->fd >= 0) {
      fd = w->fd;
    } else {
      if (sg->fd < 0) {
        char path[URSULA_PATH_LEN + 32];
        wal_seg_path(w, sg->first_index, path, sizeof(path));
        sg->fd = fs->open(path, O_RDONLY, 0);
        if (sg->fd < 0) return errno == ENOENT ? URSULA_ECORRUPT : URSULA_EIO;
      }
      fd = sg->fd;
    }
    w->rd_seg = 0;
    w->rd.len = 0;
    if (want < WAL_RECORD_HEADER) want = WAL_RECORD_HEADER;
    if (buf_reserve(&w->rd, want) != URSULA_OK) return URSULA_ENOMEM;
    got = fs->pread(fd, w->rd.ptr, want, (off_t)pos);
    if (got < (ssize_t)WAL_RECORD_HEADER)
      return URSULA_ECORRUPT; /* shorter than the map says */
    w->rd.len = (size_t)got;
    n = util_get32((const unsigned char *)w->rd.ptr + 4);
    if (n > WAL_MAX_RECORD) return URSULA_ECORRUPT;
    if (WAL_RECORD_HEADER + (size_t)n > w->rd.len) { /* the rest of it */
      size_t more = WAL_RECORD_HEADER + (size_t)n - w->rd.len;
      if (buf_reserve(&w->rd, more) != URSULA_OK) return URSULA_ENOMEM;
      if (fs->pread(fd, w->rd.ptr + w->rd.len, more,
                    (off_t)(pos + w->rd.len)) != (ssize_t)more)
        return URSULA_ECORRUPT;
      w->rd.len += more;
    }
    w->rd_seg = sg->first_index;
    w->rd_pos = pos;
  }
  at = (size_t)(pos - w->rd_pos);
  r = (const unsigned char *)w->rd.ptr + at;
  if (!wal_record_ok(r, w->rd.len - at, &n) || !wal_is_entry(r[8]) ||
      util_get64(r + 24) != index) {
    char path[URSULA_PATH_LEN + 32];
    wal_seg_path(w, sg->first_index, path, sizeof(path));
    LOG_E("%s: the record of entry %llu at byte %llu fails its check", path,
          (unsigned long long)index, (unsigned long long)pos);
    return URSULA_ECORRUPT;
  }
  w->rd_at = at;
  w->rd_index = index;
  return URSULA_OK;
}

URSULA_PRIVATE int wal_read(struct wal *w, uint64_t index, uint64_t off,
                            uint64_t len, struct buf *out) {
  const struct wal_piece *p;
  size_t n;
  int rc;
  /* a piece the snapshot carries wins over a segment it covers (after an
  ** install, such a segment may hold another log's entry) */
  if (index <= w->snap_index && w->n_pieces > 0 &&
      (p = wal_piece_find(w, index, off, len)) != NULL)
    return wal_piece_read(w, p, off, len, out);
  if ((rc = wal_load_record(w, index)) != URSULA_OK) return rc;
  n = util_get32((const unsigned char *)w->rd.ptr + w->rd_at + 4);
  if (off > n || len > n - off) return URSULA_EINVAL;
  return buf_append(out, w->rd.ptr + w->rd_at + WAL_RECORD_HEADER + off,
                    (size_t)len);
}

URSULA_PRIVATE int wal_entry_at(struct wal *w, uint64_t index,
                                struct wal_entry *e) {
  int rc = wal_load_record(w, index);
  const unsigned char *r;
  if (rc != URSULA_OK) return rc;
  r = (const unsigned char *)w->rd.ptr + w->rd_at;
  e->type = r[8];
  e->term = util_get64(r + 16);
  e->index = index;
  e->data = r + WAL_RECORD_HEADER;
  e->len = util_get32(r + 4);
  return URSULA_OK;
}

URSULA_PRIVATE int wal_term_at(struct wal *w, uint64_t index, uint64_t *term) {
  struct wal_entry e;
  int rc;
  if (index == 0) {
    *term = 0;
    return URSULA_OK;
  }
  if (index == w->snap_index) {
    *term = w->snap_term;
    return URSULA_OK;
  }
  if (index == w->last_index) {
    *term = w->last_term;
    return URSULA_OK;
  }
  if (index > w->last_index || index < w->first_index) return URSULA_ENOTFOUND;
  rc = wal_entry_at(w, index, &e);
  if (rc == URSULA_OK) *term = e.term;
  return rc;
}

/* A write or sync failed: nothing unsynced may be acknowledged, and the
** file is not trusted until wal_recover(). */
static int wal_fail(struct wal *w, int e) {
  struct wal_seg *sg = &w->segs[w->n_segs - 1];
  w->failed = 1;
  w->pending = 0;
  w->written = w->size;
  w->last_index = w->durable_index;
  w->last_term = w->durable_term;
  w->next_term = w->term;
  w->next_vote = w->vote;
  /* the batch was in the last segment (a new one starts only when all is
  ** durable): forget the offsets of its entries */
  sg->n_offs = w->durable_index + 1 > sg->first_index
                   ? (size_t)(w->durable_index + 1 - sg->first_index)
                   : 0;
  wal_rd_forget(w);
  return wal_errno_code(e);
}

URSULA_PRIVATE int wal_write(struct wal *w, const void *p, size_t len) {
  int e;
  if (w->failed) return URSULA_EIO;
  if (len != w->pending) return URSULA_EINVAL; /* not what was framed */
  if ((e = wal_pwrite_all(w->fs, w->fd, p, len, w->written)) != 0)
    return wal_fail(w, e);
  if (w->jr != NULL) {
    if (journal_add(w->jr, w->jr_group, w->segs[w->n_segs - 1].first_index,
                    (uint64_t)w->written, p, len) != URSULA_OK)
      return wal_fail(w, EIO);
    w->lazy = 1;
  }
  w->written += (off_t)len;
  w->since_snap += len;
  w->pending = 0;
  w->written_index = w->last_index;
  w->written_term = w->last_term;
  w->written_hterm = w->next_term;
  w->written_hvote = w->next_vote;
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
  w->durable_index = w->written_index;
  w->durable_term = w->written_term;
  w->term = w->written_hterm;
  w->vote = w->written_hvote;
  return URSULA_OK;
}

URSULA_PRIVATE int wal_flush(struct wal *w) {
  int fd = wal_flush_fd(w), e = 0;
  if (fd >= 0 && w->fs->sync(fd) != 0) {
    e = errno ? errno : EIO;
    wal_lazy_failed(w, e);
  } else if (fd >= 0) {
    w->lazy = 0;
  }
  return wal_flush_done(w, e);
}

URSULA_PRIVATE void wal_set_journal(struct wal *w, struct journal *j,
                                    uint32_t group) {
  w->jr = j;
  w->jr_group = group;
}

/* A sync of the last segment's file failed while appends written to it
** lazily are durable only in the journal.  The kernel may have dropped
** those pages, and a later sync of the file succeeds without them (the
** error is reported once): the journal holds their only durable copy, so
** it is stuck -- never started anew, no MARK skips them -- until a
** restart redoes it (as after a checkpoint's failed sync, server.c). */
static void wal_lazy_failed(struct wal *w, int e) {
  if (w->jr == NULL || journal_state(w->jr) == JOURNAL_STUCK) return;
  /* a checkpoint's sync of the file may be out (wal_lazy_open): it may
  ** still succeed without the pages this one lost (a kernel that reports
  ** a failed write-back once, not once per open file) */
  if (!w->lazy &&
      (w->lazy_gen == 0 || w->lazy_gen != journal_old_gen(w->jr)))
    return;
  journal_stuck(w->jr);
  LOG_E("%s: syncing the log failed (%s) while appends to it are durable "
        "only in the journal; the core takes no writes until ursula is "
        "restarted (the restart writes them again from the journal)",
        w->dir, strerror(e));
  (void)e; /* when logging is compiled out */
}

URSULA_PRIVATE int wal_lazy_open(struct wal *w) {
  char path[URSULA_PATH_LEN + 32];
  int fd;
  if (!w->lazy || w->fd < 0) return -1;
  /* not dup(w->fd): a failed write-back is reported once to each open
  ** file, and a dup shares w->fd's -- if the checkpoint's sync took the
  ** error, a barrier's sync here would succeed without the lost pages,
  ** and its MARK would have the redo skip the only copy of them */
  wal_seg_path(w, w->segs[w->n_segs - 1].first_index, path, sizeof(path));
  if ((fd = w->fs->open(path, O_RDWR, 0)) < 0) return -2;
  w->lazy = 0;
  w->lazy_gen = journal_old_gen(w->jr);
  return fd;
}

URSULA_PRIVATE int wal_sync_lazy(struct wal *w) {
  if (!w->lazy || w->fd < 0) return 0;
  if (w->fs->sync(w->fd) != 0) return errno ? errno : EIO;
  w->lazy = 0;
  return 0;
}

/* Before a change of the files other than an append (journal.c, rule 3):
** the last segment's appends made durable in it, then the journal's MARK
** made durable.  URSULA_OK, or an error: the change must not go ahead. */
static int wal_journal_barrier(struct wal *w) {
  int e;
  if (w->jr == NULL) return URSULA_OK;
  if (w->fd >= 0 && w->fs->sync(w->fd) != 0) {
    e = errno ? errno : EIO;
    wal_lazy_failed(w, e);
    return wal_errno_code(e);
  }
  w->lazy = 0;
  return journal_mark(w->jr, w->jr_group);
}

URSULA_PRIVATE int wal_recover(struct wal *w) {
  struct os_fs *fs = w->fs;
  char path[URSULA_PATH_LEN + 32];
  struct buf img;
  struct wal_seg *sg;
  struct wal_scan sc;
  int rc, fn_rc = URSULA_OK;
  if (!w->failed) return URSULA_OK;
  if (w->needs_reopen) return URSULA_EIO; /* only a restart (wal_truncate) */
  if ((rc = wal_journal_barrier(w)) != URSULA_OK) return rc;
  wal_rd_forget(w); /* the file is cut back below: read it anew */
  sg = &w->segs[w->n_segs - 1];
  wal_seg_path(w, sg->first_index, path, sizeof(path));
  if (w->fd >= 0) fs->close(w->fd);
  w->fd = fs->open(path, O_RDWR, 0);
  if (w->fd < 0) return wal_errno_code(errno);
  if (fs->ftruncate(w->fd, w->size) != 0 || fs->sync(w->fd) != 0)
    return wal_errno_code(errno);
  memset(&img, 0, sizeof(img));
  memset(&sc, 0, sizeof(sc));
  rc = wal_read_path(w->fs, path, &img);
  if (rc == URSULA_OK) {
    sc.last_term = 0;
    wal_scan((const unsigned char *)img.ptr, img.len, sg->first_index, sg, 0,
             NULL, NULL, &fn_rc, &sc);
    if (fn_rc != URSULA_OK) rc = fn_rc;
    if (sc.good != (size_t)w->size || sc.last != w->durable_index)
      rc = URSULA_ECORRUPT; /* acknowledged records did not survive */
  }
  buf_free(&img);
  if (rc == URSULA_OK) w->failed = 0;
  return rc;
}

/* Append a HARD record (term, vote) at the end of the last segment, whose
** last entry is `index`, and sync: 0, or the errno of the failure (the
** record may then be partly there, past w->size). */
static int wal_append_hard(struct wal *w, uint64_t term, uint64_t vote,
                           uint64_t index) {
  unsigned char r[WAL_RECORD_HEADER + WAL_HARD_BYTES];
  int e;
  wal_hard_record(r, term, vote, index);
  if ((e = wal_pwrite_all(w->fs, w->fd, r, sizeof(r), w->size)) != 0)
    return e;
  if (w->fs->sync(w->fd) != 0) {
    e = errno ? errno : EIO;
    wal_lazy_failed(w, e);
    return e;
  }
  w->size = w->written = w->size + (off_t)sizeof(r);
  return 0;
}

URSULA_PRIVATE int wal_save_state(struct wal *w, uint64_t term, uint64_t vote) {
  int e;
  if (w->failed || w->pending > 0 || w->written != w->size)
    return URSULA_EINVAL;
  /* in force only once durable; a failure leaves the old pair, and the
  ** log failed (wal_recover cuts what was half written) */
  if ((e = wal_append_hard(w, term, vote, w->last_index)) != 0)
    return wal_fail(w, e);
  w->term = w->next_term = term;
  w->vote = w->next_vote = vote;
  return URSULA_OK;
}

URSULA_PRIVATE uint64_t wal_term(const struct wal *w) {
  return w->term;
}
URSULA_PRIVATE uint64_t wal_vote(const struct wal *w) {
  return w->vote;
}

/* ------------------------------------------------------------ cutting */

/* Open segment k (now the last) for writing as w->fd, its size `size`. */
static int wal_reopen_last(struct wal *w, size_t k, off_t size) {
  char path[URSULA_PATH_LEN + 32];
  if (w->fd >= 0) w->fs->close(w->fd);
  if (w->segs[k].fd >= 0) w->fs->close(w->segs[k].fd);
  w->segs[k].fd = -1;
  wal_seg_path(w, w->segs[k].first_index, path, sizeof(path));
  w->fd = w->fs->open(path, O_RDWR, 0);
  if (w->fd < 0) return wal_errno_code(errno);
  w->size = w->written = size;
  return URSULA_OK;
}

/* Cut segment k (now the last) at byte `at`, then append a HARD record
** whose index is `last`, the last entry the segment keeps.  In place:
** for cutting a SEAL, when the segment after k still holds the latest
** HARD record until this is durable. */
static int wal_cut_last(struct wal *w, size_t k, off_t at, uint64_t last) {
  int rc = wal_reopen_last(w, k, at), e;
  if (rc != URSULA_OK) return rc;
  if (w->fs->ftruncate(w->fd, at) != 0) return wal_errno_code(errno);
  e = wal_append_hard(w, w->term, w->vote, last);
  return e != 0 ? wal_errno_code(e) : URSULA_OK;
}

/* Replace segment k (the last) by its first `at` bytes and a HARD record
** (index `last`), atomically: written to a temporary file, synced, renamed
** over the segment, the directory synced.  A crash leaves the old segment
** or the new one, never a segment whose latest HARD record was cut. */
static int wal_rewrite_last(struct wal *w, size_t k, off_t at, uint64_t last) {
  struct os_fs *fs = w->fs;
  char path[URSULA_PATH_LEN + 32], tmp[URSULA_PATH_LEN + 40];
  struct buf img;
  int fd, e = 0, rc;
  memset(&img, 0, sizeof(img));
  wal_seg_path(w, w->segs[k].first_index, path, sizeof(path));
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  rc = wal_read_path(w->fs, path, &img);
  if (rc == URSULA_OK && img.len < (size_t)at) rc = URSULA_ECORRUPT;
  if (rc == URSULA_OK) rc = buf_reserve(&img, WAL_RECORD_HEADER + WAL_HARD_BYTES);
  if (rc != URSULA_OK) {
    buf_free(&img);
    return rc;
  }
  img.len = (size_t)at;
  wal_hard_record((unsigned char *)img.ptr + img.len, w->term, w->vote, last);
  img.len += WAL_RECORD_HEADER + WAL_HARD_BYTES;
  fd = fs->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) e = errno;
  if (e == 0) e = wal_pwrite_all(w->fs, fd, img.ptr, img.len, 0);
  if (e == 0 && fs->sync(fd) != 0) e = errno;
  if (fd >= 0) fs->close(fd);
  if (e == 0 && fs->rename(tmp, path) != 0) e = errno;
  if (e == 0 && w->fs->sync_dir(w->dir) != 0) e = errno ? errno : EIO;
  if (e != 0) fs->unlink(tmp);
  buf_free(&img);
  if (e != 0) return wal_errno_code(e);
  return wal_reopen_last(w, k, (off_t)(at + WAL_RECORD_HEADER +
                                       WAL_HARD_BYTES));
}

/* The size of segment k without its SEAL record (if it ends with one). */
static int wal_unsealed_size(struct wal *w, size_t k, off_t *size) {
  char path[URSULA_PATH_LEN + 32];
  unsigned char r[WAL_RECORD_HEADER + WAL_SEAL_BYTES];
  uint64_t sz;
  uint32_t n;
  int fd;
  ssize_t got;
  wal_seg_path(w, w->segs[k].first_index, path, sizeof(path));
  fd = w->fs->open(path, O_RDONLY, 0);
  if (fd < 0) return wal_errno_code(errno);
  if (w->fs->size(fd, &sz) != 0) {
    w->fs->close(fd);
    return URSULA_EIO;
  }
  *size = (off_t)sz;
  got = sz >= sizeof(r)
            ? w->fs->pread(fd, r, sizeof(r), (off_t)(sz - sizeof(r)))
            : -1;
  w->fs->close(fd);
  if (got == (ssize_t)sizeof(r) && wal_record_ok(r, sizeof(r), &n) &&
      r[8] == WAL_SEAL)
    *size -= (off_t)sizeof(r);
  return URSULA_OK;
}

/* wal_truncate_suffix's steps, after the checks; any failure half-way
** leaves files that replay (each step does), but not the view in memory. */
static int wal_truncate_steps(struct wal *w, uint64_t index, uint64_t term) {
  off_t size;
  size_t k;
  int rc;
  /* whole segments from the back: unseal the one before, then remove */
  while (w->n_segs > 1 && w->segs[w->n_segs - 1].first_index > index) {
    size_t prev = w->n_segs - 2;
    char path[URSULA_PATH_LEN + 32];
    if ((rc = wal_unsealed_size(w, prev, &size)) != URSULA_OK ||
        (rc = wal_cut_last(w, prev, size,
                           w->segs[prev + 1].first_index - 1)) != URSULA_OK)
      return rc;
    wal_seg_path(w, w->segs[w->n_segs - 1].first_index, path, sizeof(path));
    wal_seg_release(w->fs, &w->segs[w->n_segs - 1]);
    w->n_segs--;
    if (w->fs->unlink(path) != 0 || w->fs->sync_dir(w->dir) != 0)
      return wal_errno_code(errno);
  }
  k = w->n_segs - 1;
  if ((rc = wal_seg_map(w, k)) != URSULA_OK) return rc;
  if (index - w->segs[k].first_index >= w->segs[k].n_offs) {
    if (w->segs[k].first_index != index) return URSULA_ECORRUPT;
    rc = wal_rewrite_last(w, k, WAL_HEADER_BYTES, index - 1);
  } else {
    rc = wal_rewrite_last(
        w, k, (off_t)w->segs[k].offs[index - w->segs[k].first_index],
        index - 1);
  }
  if (rc != URSULA_OK) return rc;
  w->segs[k].n_offs = (size_t)(index - w->segs[k].first_index);
  w->last_index = w->durable_index = w->written_index = index - 1;
  w->last_term = w->durable_term = w->written_term = term;
  return URSULA_OK;
}

URSULA_PRIVATE int wal_truncate_suffix(struct wal *w, uint64_t index) {
  uint64_t term = 0;
  int rc;
  if (w->failed || w->pending > 0 || w->written != w->size)
    return URSULA_EINVAL;
  if (index > w->last_index) return URSULA_OK;
  if (index <= w->snap_index || index < w->first_index) return URSULA_EINVAL;
  if ((rc = wal_term_at(w, index - 1, &term)) != URSULA_OK) return rc;
  if ((rc = wal_journal_barrier(w)) != URSULA_OK) return rc;
  wal_rd_forget(w);
  rc = wal_truncate_steps(w, index, term);
  if (rc != URSULA_OK) { /* appends now could land anywhere: stop them */
    w->failed = 1;
    w->needs_reopen = 1;
    LOG_E("%s: cutting the log at entry %llu failed (%s); the group takes "
          "no writes until it is restarted (the files replay as they are)",
          w->dir, (unsigned long long)index, ursula_strerror(rc));
  }
  return rc;
}

URSULA_PRIVATE int wal_can_compact(const struct wal *w, uint64_t upto) {
  if (upto > w->snap_index) upto = w->snap_index;
  return w->n_segs > 1 && w->segs[1].first_index <= upto + 1;
}

URSULA_PRIVATE int wal_compact(struct wal *w, uint64_t upto) {
  char path[URSULA_PATH_LEN + 32];
  size_t drop = 0, k;
  int rc = URSULA_OK;
  if (upto > w->snap_index) upto = w->snap_index; /* only what it covers */
  /* a segment can go when the next one starts at or before upto + 1 */
  while (drop + 1 < w->n_segs && w->segs[drop + 1].first_index <= upto + 1)
    drop++;
  if (drop == 0) return URSULA_OK;
  if ((rc = wal_journal_barrier(w)) != URSULA_OK) return rc;
  for (k = 0; k < drop && rc == URSULA_OK; k++) { /* from the front */
    wal_seg_path(w, w->segs[k].first_index, path, sizeof(path));
    if (w->fs->unlink(path) != 0 && errno != ENOENT)
      rc = wal_errno_code(errno);
  }
  drop = k - (rc != URSULA_OK); /* the failed one stays listed */
  for (k = 0; k < drop; k++) wal_seg_release(w->fs, &w->segs[k]);
  memmove(w->segs, w->segs + drop, (w->n_segs - drop) * sizeof(*w->segs));
  w->n_segs -= drop;
  w->first_index = w->segs[0].first_index;
  wal_rd_forget(w);
  w->fs->sync_dir(w->dir);
  return rc;
}

/* ------------------------------------------------------------ install */

URSULA_PRIVATE int wal_install_begin(struct wal *w,
                                     struct wal_snap_writer *sw) {
  return wal_snap_start(w, sw, "install", 0, 0, 0);
}

URSULA_PRIVATE int wal_install_put(struct wal_snap_writer *sw, uint64_t at,
                                   const void *p, size_t n) {
  int e;
  if (sw->fd < 0 || sw->index != 0 || at > sw->at) return URSULA_EINVAL;
  if ((e = wal_pwrite_all(sw->fs, sw->fd, p, n, (off_t)at)) != 0)
    return wal_errno_code(e);
  if (at + n > sw->at) sw->at = at + n;
  return URSULA_OK;
}

/* Check the whole image in w->dir/install.tmp: header, lengths, the CRC
** of header, payload and directory, the directory's order, and the CRC
** of every piece.  URSULA_OK (sr left open on it) or URSULA_ECORRUPT with
** err set. */
static int wal_install_check(struct wal *w, struct wal_snap_reader *sr,
                             char *err) {
  struct buf chunk;
  struct wal_piece *pc = NULL;
  long k;
  uint64_t i;
  int rc = wal_snap_open_file(w, sr, "install.tmp", err);
  if (rc == URSULA_ENOTFOUND) rc = URSULA_EIO;
  if (rc != URSULA_OK) return rc;
  memset(&chunk, 0, sizeof(chunk));
  rc = URSULA_ECORRUPT;
  if (!(sr->flags & WAL_SNAP_IMAGE) ||
      buf_reserve(&chunk, WAL_SNAP_CHUNK) != URSULA_OK)
    goto out;
  while ((k = wal_snap_read(sr, chunk.ptr, WAL_SNAP_CHUNK)) > 0) {
  }
  if (k < 0) goto out;
  if (sr->n_pieces > 0) {
    pc = (struct wal_piece *)URSULA_MALLOC((size_t)sr->n_pieces * sizeof(*pc));
    if (pc == NULL) goto out;
    wal_dir_parse((const unsigned char *)sr->dir.ptr, sr->n_pieces,
                  sr->pieces, sr->index, WAL_SNAP_HEAD + sr->size, pc);
  }
  for (i = 0; i < sr->n_pieces; i++) { /* every piece's CRC, in chunks */
    uint64_t at = 0;
    uint32_t crc = 0;
    while (at < pc[i].len) {
      size_t n = pc[i].len - at < WAL_SNAP_CHUNK ? (size_t)(pc[i].len - at)
                                                 : WAL_SNAP_CHUNK;
      if (w->fs->pread(sr->fd, chunk.ptr, n, (off_t)(pc[i].pos + at)) !=
          (ssize_t)n)
        goto out;
      crc = util_crc32c(crc, chunk.ptr, n);
      at += n;
    }
    if (crc != pc[i].crc) goto out;
  }
  rc = URSULA_OK;
out:
  if (rc != URSULA_OK) {
    wal_snap_close(sr);
    if (err[0] == '\0')
      snprintf(err, URSULA_ERRMSG_LEN,
               "%s/install.tmp is not a whole snapshot image (bad CRC, "
               "lengths or directory, or not made for install)",
               w->dir);
  }
  URSULA_FREE(pc);
  buf_free(&chunk);
  return rc;
}

/* The steps of an install after the checks (see wal_install_commit). */
static int wal_install_steps(struct wal *w, struct wal_snap_reader *sr) {
  char tmp[URSULA_PATH_LEN + 32], path[URSULA_PATH_LEN + 32];
  uint64_t n = sr->index, term = 0;
  int match, rc;
  match = n <= w->last_index && wal_term_at(w, n, &term) == URSULA_OK &&
          term == sr->term;
  /* 1. a suffix from n on that disagrees with the image goes first */
  if (!match && n <= w->last_index &&
      (rc = wal_truncate_suffix(w, n)) != URSULA_OK)
    return rc;
  /* 2. the image becomes the snapshot */
  snprintf(tmp, sizeof(tmp), "%s/install.tmp", w->dir);
  snprintf(path, sizeof(path), "%s/snapshot", w->dir);
  if (w->fs->rename(tmp, path) != 0 || w->fs->sync_dir(w->dir) != 0)
    return wal_errno_code(errno ? errno : EIO);
  w->snap_index = n;
  w->snap_term = sr->term;
  w->snap_flags = sr->flags;
  w->since_snap = 0;
  if ((rc = wal_take_pieces(w, &sr->dir, sr->n_pieces, sr->pieces,
                            sr->size)) != URSULA_OK)
    return rc;
  if (match) return URSULA_OK; /* the log goes on after it, as it is */
  /* 3. the log goes on at n + 1, in a segment of its own; the old one,
  ** all below n, is not sealed to it (its entries do not lead there) */
  if (w->fd >= 0) w->fs->close(w->fd);
  w->fd = -1;
  w->last_index = w->durable_index = w->written_index = n;
  w->last_term = w->durable_term = w->written_term = sr->term;
  wal_rd_forget(w);
  if ((rc = wal_seg_create(w, n + 1)) != URSULA_OK) return rc;
  /* 4. the old segments go */
  return wal_compact(w, n);
}

URSULA_PRIVATE int wal_install_commit(struct wal *w,
                                      struct wal_snap_writer *sw, char *err) {
  struct wal_snap_reader sr;
  int rc, e = 0;
  err[0] = '\0';
  if (sw->fd < 0 || sw->index != 0) return URSULA_EINVAL;
  if (w->failed || w->pending > 0 || w->written != w->size) {
    wal_snap_abort(w, sw);
    snprintf(err, URSULA_ERRMSG_LEN, "%s: the log is busy or failed", w->dir);
    return URSULA_EINVAL;
  }
  if (w->fs->sync(sw->fd) != 0) e = errno;
  w->fs->close(sw->fd);
  sw->fd = -1;
  if (e != 0) {
    wal_snap_abort(w, sw);
    return wal_errno_code(e);
  }
  if ((rc = wal_install_check(w, &sr, err)) != URSULA_OK) {
    wal_snap_abort(w, sw);
    return rc;
  }
  if (sr.index <= w->snap_index) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s: the image is as of entry %llu, not after the snapshot "
             "(%llu)",
             w->dir, (unsigned long long)sr.index,
             (unsigned long long)w->snap_index);
    wal_snap_close(&sr);
    wal_snap_abort(w, sw);
    return URSULA_EINVAL;
  }
  if ((rc = wal_journal_barrier(w)) != URSULA_OK) { /* nothing changed */
    snprintf(err, URSULA_ERRMSG_LEN, "%s: syncing before the install: %s",
             w->dir, ursula_strerror(rc));
    wal_snap_close(&sr);
    wal_snap_abort(w, sw);
    return rc;
  }
  rc = wal_install_steps(w, &sr);
  wal_snap_close(&sr);
  if (rc != URSULA_OK) {
    wal_snap_abort(w, sw);
    /* the files replay (each step does, and replay finishes an install
    ** cut short), but the view in memory may not match them */
    w->failed = 1;
    w->needs_reopen = 1;
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s: installing the snapshot failed half-way (%s); the group "
             "takes no writes until it is restarted",
             w->dir, ursula_strerror(rc));
    LOG_E("%s", err);
  }
  return rc;
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
URSULA_PRIVATE uint64_t wal_durable_index(const struct wal *w) {
  return w->durable_index;
}
URSULA_PRIVATE int wal_failed(const struct wal *w) {
  return w->failed;
}
URSULA_PRIVATE void wal_abandon(struct wal *w) {
  if (!w->failed) wal_fail(w, EIO);
}
URSULA_PRIVATE void wal_set_segment_bytes(struct wal *w, int64_t n) {
  w->segment_bytes = n;
}

