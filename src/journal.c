/*
** journal.c -- one core's journal: the appends of all the core's group
** logs, made durable together by one sync.
**
** WHY.  A disk does a fixed number of flushes a second however they are
** spread (about 11 thousand on the machine of bench/README), and with one
** sync per group log per batch, durable appends/s is that number.  The
** journal turns the many syncs of a turn into one: each group's append
** batch is written to its own segment file (wal.c) and, as a copy, to its
** core's journal; the journal is synced, and the batches of every group
** in it are durable.  The group files are synced lazily: at a
** checkpoint, which then starts the journal afresh.  Every log keeps its
** own files, indexes and rules (wal.c); the journal only redoes appends.
**
** FILES.  DIR/journal-CCC-GGGGGGGGGGGGGGGGGGGG (CCC: the core, 3 decimal
** digits at least; G: the generation, 20 decimal digits, from 1), one or
** two per core: a checkpoint starts generation G + 1 at once and removes
** G once its group files are synced.  DIR/journal-CCC.tmp while a new
** one is made (written, synced, renamed, the directory synced: a journal
** file is always whole from its header on).  A DIR/journal-CCC (the one
** file per core of the build before generations, same format) is redone
** as the core's oldest generation.
**
** HEADER, 32 bytes, integers little-endian:
**
**     0   8  magic "URSJRN1\n"
**     8   8  PREV: the byte where the records of the core's generation
**            before this one end (its file's size but for the room); 0:
**            none (the first generation, after a reset, or a build
**            before ROOM)
**    16   8  zero
**    24   4  CRC32C of bytes 0..23
**    28   4  zero
**
** RECORD, 32 bytes + payload, back to back after the header:
**
**     0   4  CRC32C of bytes 4..(32+n-1)
**     4   4  n, the payload length
**     8   1  type: 'J' (0x4A) WRITE, 'M' (0x4D) MARK
**     9   3  zero
**    12   4  group id
**    16   8  WRITE: the first index of the segment file written (the
**            file's name, wal.c); MARK: zero
**    24   8  WRITE: the byte offset in that file; MARK: zero
**    32   n  WRITE: the bytes written there (whole WAL records); MARK: none
**
**   The types are letters so that no WAL record (types 1-3, 16, 17) reads
**   as a journal record.
**
** ROOM.  After the last record the file holds zeros, up to a multiple of
** JOURNAL_ROOM_BYTES (1 MiB with the default bound): a write that would
** pass the end writes zeros up to the next multiple after it, so the
** file's size changes about once a MiB.  WHY: a sync of a file whose
** size did not change need not write the file's inode, and on some file
** systems (ext4 without its own journal, as on the machine of
** bench/README) that write is a second disk round trip in every sync.
** A zero byte never starts a valid record (type 0), and zeros after the
** records are room, not a torn tail.  In an older generation, whose
** records were all durable when the next began (rule 4), zeros where
** records should be would be damage: the next generation's header says
** where its records end (PREV), and the redo holds it to that.
**
** THE RULES.
**   1. A WRITE is framed (journal_add) right after its bytes are written
**      to the group file, so a group's WRITEs are in the order of its
**      file's appends.
**   2. One write of the journal at a time is not yet durable: the next
**      write starts after the sync of the last one (journal_write,
**      journal_flush_done; a MARK made while a write's sync is out syncs
**      that write before it is written, journal_mark).  So a crash tears only the last write, at the
**      end: a bad record with no valid record after it is a torn tail;
**      one with a valid record after it is damage (URSULA_ECORRUPT).
**   3. Before any change of a group's files other than an append (a cut,
**      a compaction, an install), the group's file is synced and a MARK
**      for the group is made durable (journal_mark): the redo skips the
**      group's records before its last MARK, whose bytes are in the file
**      and whose offsets may no longer mean what they did.
**   4. A checkpoint starts a new generation (journal_rotate) with no
**      write out, so every write of the old one is durable; the caller
**      then syncs every group file of the core (on another thread,
**      through descriptors of its own), and only then removes the old
**      generation (journal_drop_old).  After a failed write or sync the
**      journal takes nothing (URSULA_EIO) until journal_reset (the group
**      files synced first) removes every generation and starts anew:
**      what the file holds after a failed sync is not trusted.  After a
**      failed sync of a group file that holds appends durable only in
**      the journal, not even then (journal_stuck): the kernel may have
**      dropped them from the file, and a later sync succeeds without
**      them; only a restart's redo mends it.
**
** REDO (journal_redo, at start, before any group log is opened): the
** journal files in DIR, in the order of their names (each core's
** generations in order; a group's records are all in one core's), are
** checked (rule 2: only a core's newest generation may end torn; an
** older one was whole when the next began) and each group's WRITEs after
** its last MARK are written again to their files, in order; then every
** file written is synced, and the journals are removed.  A WRITE that
** names a file that does not exist is damage.  Idempotent: a crash in the
** middle of a redo redoes it.  Each journal is read whole into memory,
** twice (a checkpoint keeps it near JOURNAL_BYTES).
*/
#include "internal.h"

#define JOURNAL_HEADER_BYTES 32
#define JOURNAL_RECORD_HEADER 32
#define JOURNAL_WRITE 0x4A /* 'J' */
#define JOURNAL_MARK 0x4D  /* 'M' */

static const char journal_magic[8] = {'U', 'R', 'S', 'J', 'R', 'N', '1', '\n'};

struct journal {
  struct os_fs *fs;
  char dir[URSULA_PATH_LEN];
  int core;
  uint64_t gen;     /* the generation written, from 1 */
  uint64_t old_gen; /* the one a checkpoint is removing, or 0 */
  int fd;
  uint64_t size;       /* bytes of records written (durable or not) */
  uint64_t room;       /* the file's size: size, then zeros (ROOM) */
  uint64_t durable;    /* bytes of it known durable */
  uint64_t flight;     /* end of the write whose sync is out, or 0 */
  struct buf pending;  /* records framed, not yet written */
  int state;           /* JOURNAL_OK, _BROKEN or _STUCK */
  int untrusted;       /* a write or sync of the file failed (broken,
                          even if stuck since): until a new file */
};

/* ------------------------------------------------------------ records */

/* The file of generation gen of core's journal (gen 0: the .tmp file). */
static void journal_path(const char *dir, int core, uint64_t gen, char *out,
                         size_t cap) {
  if (gen == 0)
    snprintf(out, cap, "%s/journal-%03d.tmp", dir, core);
  else
    snprintf(out, cap, "%s/journal-%03d-%020llu", dir, core,
             (unsigned long long)gen);
}

/* Whether name is a journal's file name ("journal-", digits, "-", 20
** digits; or "journal-" and digits alone, the one file per core of the
** build before generations, same format, which sorts before the core's
** generations): 1; a leftover .tmp ("journal-", digits, ".tmp"): 2; else
** 0.  *core_len: the length of "journal-CCC" (a core's files share it). */
static int journal_name(const char *name, size_t *core_len) {
  size_t i = 8, n = strlen(name), d;
  if (n < 9 || memcmp(name, "journal-", 8) != 0) return 0;
  while (i < n && name[i] >= '0' && name[i] <= '9') i++;
  if (i == 8) return 0;
  *core_len = i;
  if (i == n) return 1;
  if (strcmp(name + i, ".tmp") == 0) return 2;
  if (name[i] != '-' || n - i - 1 != 20) return 0;
  for (d = i + 1; d < n; d++)
    if (name[d] < '0' || name[d] > '9') return 0;
  return 1;
}

static void journal_header(unsigned char *h, uint64_t prev) {
  memset(h, 0, JOURNAL_HEADER_BYTES);
  memcpy(h, journal_magic, 8);
  util_put64(h + 8, prev);
  util_put32(h + 24, util_crc32c(0, h, 24));
}

/* Frame a record's header at h for payload p[0..n) (n = 0 for a MARK):
** the CRC covers the header from byte 4 and the payload. */
static void journal_frame(unsigned char *h, int type, uint32_t group,
                          uint64_t seg, uint64_t off, const void *p,
                          size_t n) {
  uint32_t crc;
  memset(h, 0, JOURNAL_RECORD_HEADER);
  util_put32(h + 4, (uint32_t)n);
  h[8] = (unsigned char)type;
  util_put32(h + 12, group);
  util_put64(h + 16, seg);
  util_put64(h + 24, off);
  crc = util_crc32c(0, h + 4, JOURNAL_RECORD_HEADER - 4);
  if (n > 0) crc = util_crc32c(crc, p, n);
  util_put32(h, crc);
}

/* Whether a whole, valid record starts at r (avail bytes from there); its
** payload length in *n. */
static int journal_record_ok(const unsigned char *r, size_t avail,
                             uint32_t *n) {
  uint32_t len;
  if (avail < JOURNAL_RECORD_HEADER) return 0;
  len = util_get32(r + 4);
  if (len > avail - JOURNAL_RECORD_HEADER) return 0;
  if (r[8] != JOURNAL_WRITE && r[8] != JOURNAL_MARK) return 0;
  if (r[9] != 0 || r[10] != 0 || r[11] != 0) return 0;
  if (r[8] == JOURNAL_MARK &&
      (len != 0 || util_get64(r + 16) != 0 || util_get64(r + 24) != 0))
    return 0;
  if (util_get32(r) != util_crc32c(0, r + 4, JOURNAL_RECORD_HEADER - 4 + len))
    return 0;
  *n = len;
  return 1;
}

/* ------------------------------------------------------------ writing */

static int journal_pwrite_all(struct os_fs *fs, int fd, const void *b,
                              size_t n, uint64_t off) {
  size_t done = 0;
  while (done < n) {
    ssize_t k = fs->pwrite(fd, (const char *)b + done, n - done,
                           (off_t)(off + done));
    if (k <= 0) return k < 0 ? errno : EIO;
    done += (size_t)k;
  }
  return 0;
}

/* Never written: the zeros of the room. */
static unsigned char journal_zeros[65536];

/* Write b[0..n) after the records (at j->size; j->size is the caller's to
** move) and, past the file's room, zeros up to the next multiple of
** JOURNAL_ROOM_BYTES after them (ROOM).  0 or an errno (of the records'
** write: the zeros are only for speed, and a failure to write them, say
** on a full disk, leaves the room as it was, to be tried again). */
static int journal_put(struct journal *j, const void *b, size_t n) {
  uint64_t end = j->size + n, room;
  int e = journal_pwrite_all(j->fs, j->fd, b, n, j->size);
  if (e != 0 || end <= j->room) return e;
  room = (end + JOURNAL_ROOM_BYTES - 1) / JOURNAL_ROOM_BYTES *
         (uint64_t)JOURNAL_ROOM_BYTES;
  while (e == 0 && end < room) {
    size_t k = room - end < sizeof(journal_zeros) ? (size_t)(room - end)
                                                  : sizeof(journal_zeros);
    e = journal_pwrite_all(j->fs, j->fd, journal_zeros, k, end);
    end += k;
  }
  if (e == 0) j->room = room;
  return 0;
}

/* Make the new, empty file of generation gen of j's core (tmp, sync,
** rename, sync the directory) and make it j's.  0 or an errno.  On a
** failure before the rename, j is as before.  Once renamed, j writes to
** the new file; if the directory's sync then fails, the rename may not be
** durable (a crash may lose the new file's name), so j takes nothing --
** not even a MARK -- until a new file's rename is (JOURNAL_BROKEN: a
** reset).  prev: its header's PREV. */
static int journal_start_file(struct journal *j, uint64_t gen,
                              uint64_t prev) {
  unsigned char h[JOURNAL_HEADER_BYTES];
  char tmp[URSULA_PATH_LEN + 48], path[URSULA_PATH_LEN + 48];
  struct os_fs *fs = j->fs;
  int fd, e = 0;
  journal_path(j->dir, j->core, 0, tmp, sizeof(tmp));
  journal_path(j->dir, j->core, gen, path, sizeof(path));
  fd = fs->open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return errno ? errno : EIO;
  journal_header(h, prev);
  if ((e = journal_pwrite_all(fs, fd, h, sizeof(h), 0)) == 0 &&
      fs->sync(fd) != 0)
    e = errno ? errno : EIO;
  if (e == 0 && fs->rename(tmp, path) != 0) e = errno ? errno : EIO;
  if (e != 0) {
    fs->close(fd);
    fs->unlink(tmp);
    return e;
  }
  if (j->fd >= 0) fs->close(j->fd);
  j->fd = fd;
  j->gen = gen;
  j->size = j->durable = j->room = JOURNAL_HEADER_BYTES;
  j->flight = 0;
  j->untrusted = 0;
  if (fs->sync_dir(j->dir) != 0) {
    e = errno ? errno : EIO;
    if (j->state == JOURNAL_OK) j->state = JOURNAL_BROKEN;
    j->untrusted = 1;
    j->pending.len = 0;
    return e;
  }
  return 0;
}

/* Remove generation gen's file.  0 or an errno. */
static int journal_unlink(struct journal *j, uint64_t gen) {
  char path[URSULA_PATH_LEN + 48];
  journal_path(j->dir, j->core, gen, path, sizeof(path));
  if (j->fs->unlink(path) != 0 && errno != ENOENT) return errno ? errno : EIO;
  return 0;
}

URSULA_PRIVATE int journal_create(struct journal **out, struct env *env,
                                  const char *dir, int core, char *err) {
  struct journal *j;
  int e;
  *out = NULL;
  if (strlen(dir) >= URSULA_PATH_LEN) return URSULA_EINVAL;
  j = (struct journal *)URSULA_MALLOC(sizeof(*j));
  if (j == NULL) return URSULA_ENOMEM;
  memset(j, 0, sizeof(*j));
  j->fs = (env != NULL ? env : env_real())->fs;
  snprintf(j->dir, sizeof(j->dir), "%s", dir);
  j->core = core;
  j->fd = -1;
  if ((e = journal_start_file(j, 1, 0)) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "%s/journal-%03d: %s", dir, core,
             strerror(e));
    journal_close(j);
    return URSULA_EIO;
  }
  *out = j;
  return URSULA_OK;
}

URSULA_PRIVATE void journal_close(struct journal *j) {
  if (j == NULL) return;
  if (j->fd >= 0) j->fs->close(j->fd);
  buf_free(&j->pending);
  URSULA_FREE(j);
}

/* Nothing more is taken until a reset: what is framed is dropped. */
static int journal_break(struct journal *j) {
  if (j->state == JOURNAL_OK) j->state = JOURNAL_BROKEN;
  j->untrusted = 1;
  j->pending.len = 0;
  return URSULA_EIO;
}

URSULA_PRIVATE int journal_add(struct journal *j, uint32_t group, uint64_t seg,
                               uint64_t off, const void *p, size_t n) {
  unsigned char *h;
  if (j->state != JOURNAL_OK) return URSULA_EIO;
  if (n > UINT32_MAX) return URSULA_EINVAL;
  if (buf_reserve(&j->pending, JOURNAL_RECORD_HEADER + n) != URSULA_OK)
    return URSULA_ENOMEM;
  h = (unsigned char *)j->pending.ptr + j->pending.len;
  journal_frame(h, JOURNAL_WRITE, group, seg, off, p, n);
  memcpy(h + JOURNAL_RECORD_HEADER, p, n);
  j->pending.len += JOURNAL_RECORD_HEADER + n;
  return URSULA_OK;
}

URSULA_PRIVATE int journal_write(struct journal *j, int *fd) {
  int e;
  *fd = -1;
  if (j->state != JOURNAL_OK) return journal_break(j);
  if (j->flight != 0) return URSULA_EINVAL; /* one write at a time */
  if (j->pending.len == 0) return URSULA_OK;
  if ((e = journal_put(j, j->pending.ptr, j->pending.len)) != 0)
    return journal_break(j);
  j->size += j->pending.len;
  j->pending.len = 0;
  j->flight = j->size;
  *fd = j->fd;
  return URSULA_OK;
}

URSULA_PRIVATE int journal_flush_done(struct journal *j, int sync_errno) {
  uint64_t end = j->flight;
  j->flight = 0;
  if (sync_errno != 0) return journal_break(j);
  /* broken: the file is not trusted; stuck: it is, and the redo will
  ** write these records again (a log file's sync failed, not its own) --
  ** unless it was broken first: a MARK's sync of this write failed, the
  ** pages may be gone, and the error was reported to that sync alone */
  if (j->state == JOURNAL_BROKEN || j->untrusted) return URSULA_EIO;
  if (end > j->durable) j->durable = end;
  return URSULA_OK;
}

URSULA_PRIVATE int journal_in_flight(const struct journal *j) {
  return j->flight != 0;
}

/* Drop the group's records from what is framed and not yet written. */
static void journal_drop(struct journal *j, uint32_t group) {
  unsigned char *p = (unsigned char *)j->pending.ptr;
  size_t at = 0, keep = 0;
  while (at < j->pending.len) {
    size_t size = JOURNAL_RECORD_HEADER + util_get32(p + at + 4);
    if (util_get32(p + at + 12) != group) {
      if (keep != at) memmove(p + keep, p + at, size);
      keep += size;
    }
    at += size;
  }
  j->pending.len = keep;
}

URSULA_PRIVATE int journal_mark(struct journal *j, uint32_t group) {
  unsigned char h[JOURNAL_RECORD_HEADER];
  if (j->state != JOURNAL_OK) return URSULA_EIO;
  /* the caller synced the group's file: its framed records are durable
  ** there, and written after the MARK they would be redone over a file
  ** that the change has made different */
  journal_drop(j, group);
  journal_frame(h, JOURNAL_MARK, group, 0, 0, NULL, 0);
  /* rule 2: a write whose sync is out (on a syncer thread) is synced
  ** here first, so that the MARK is the only write not yet durable: a
  ** crash that kept the MARK and lost that write before it would leave a
  ** bad record with a valid one after it -- damage to the redo, and a
  ** server that does not start */
  if (j->size > j->durable) {
    if (j->fs->sync(j->fd) != 0) return journal_break(j);
    j->durable = j->size;
  }
  if (journal_put(j, h, sizeof(h)) != 0 || j->fs->sync(j->fd) != 0)
    return journal_break(j);
  j->size += sizeof(h);
  j->durable = j->size;
  return URSULA_OK;
}

URSULA_PRIVATE int journal_state(const struct journal *j) {
  return j->state;
}

URSULA_PRIVATE uint64_t journal_old_gen(const struct journal *j) {
  return j->old_gen;
}

URSULA_PRIVATE uint64_t journal_bytes(const struct journal *j) {
  return j->size + j->pending.len;
}

URSULA_PRIVATE int journal_checkpoint_due(const struct journal *j) {
  return j->state == JOURNAL_OK && j->old_gen == 0 && j->flight == 0 &&
         journal_bytes(j) > JOURNAL_BYTES;
}

URSULA_PRIVATE int journal_rotate(struct journal *j) {
  uint64_t old = j->gen;
  int e;
  if (j->state != JOURNAL_OK) return URSULA_EIO;
  if (j->flight != 0 || j->old_gen != 0) return URSULA_EINVAL;
  e = journal_start_file(j, old + 1, j->size); /* every write durable */
  if (j->gen != old) j->old_gen = old; /* switched, even if broken now */
  return e == 0 ? URSULA_OK : URSULA_EIO;
}

URSULA_PRIVATE int journal_drop_old(struct journal *j) {
  int e;
  if (j->old_gen == 0) return URSULA_OK;
  /* stuck: a log file's sync failed (the checkpoint's own, or one on the
  ** core, say where no descriptor could be made for the checkpoint), and
  ** the old generation may hold the only durable copy of its appends */
  if (j->state == JOURNAL_STUCK) return URSULA_EIO;
  e = journal_unlink(j, j->old_gen);
  j->old_gen = 0; /* if it stays, a redo only writes synced bytes again */
  if (e == 0 && j->fs->sync_dir(j->dir) != 0) e = errno ? errno : EIO;
  return e == 0 ? URSULA_OK : URSULA_EIO;
}

URSULA_PRIVATE int journal_reset(struct journal *j) {
  uint64_t gen = j->gen;
  if (j->state == JOURNAL_STUCK) return URSULA_EIO;
  if (j->flight != 0) return URSULA_EINVAL;
  j->state = JOURNAL_BROKEN; /* until the new file is in place */
  j->pending.len = 0;
  /* the old generations go first: a broken one may end in bytes of a
  ** failed write, which as an older generation would read as damage */
  if ((j->old_gen != 0 && journal_unlink(j, j->old_gen) != 0) ||
      journal_unlink(j, gen) != 0 || j->fs->sync_dir(j->dir) != 0)
    return URSULA_EIO;
  j->old_gen = 0;
  if (journal_start_file(j, gen + 1, 0) != 0) return URSULA_EIO;
  j->state = JOURNAL_OK;
  return URSULA_OK;
}

URSULA_PRIVATE int journal_remove(struct journal *j) {
  int e = 0;
  if (j->flight != 0 || j->state == JOURNAL_STUCK) return URSULA_EINVAL;
  if (j->fd >= 0) j->fs->close(j->fd);
  j->fd = -1;
  j->state = JOURNAL_BROKEN; /* takes nothing more */
  j->pending.len = 0;
  if (j->old_gen != 0) e = journal_unlink(j, j->old_gen);
  if (e == 0) e = journal_unlink(j, j->gen);
  if (e != 0 || j->fs->sync_dir(j->dir) != 0) return URSULA_EIO;
  return URSULA_OK;
}

URSULA_PRIVATE void journal_stuck(struct journal *j) {
  j->state = JOURNAL_STUCK;
  j->pending.len = 0;
}

/* ------------------------------------------------------------ redo */

/* Whether a valid record starts anywhere in p[from..len). */
static int journal_valid_after(const unsigned char *p, size_t len,
                               size_t from) {
  size_t at;
  uint32_t n;
  for (at = from; at + JOURNAL_RECORD_HEADER <= len; at++) {
    if (p[at + 8] != JOURNAL_WRITE && p[at + 8] != JOURNAL_MARK) continue;
    if (journal_record_ok(p + at, len - at, &n)) return 1;
  }
  return 0;
}

/* The file a redo writes to: one open at a time per (group, segment). */
struct journal_target {
  uint32_t group;
  uint64_t seg;
  int fd;
};

struct journal_mark_at;

struct journal_redo_ctx {
  struct os_fs *fs;
  const char *dir;
  int (*path_of)(void *arg, uint32_t group, uint64_t seg, char *out,
                 size_t cap);
  void *arg;
  struct journal_target *t; /* every file written, kept open to sync */
  size_t n_t, cap_t;
  struct journal_mark_at *marks; /* per group: its last MARK (pass 1) */
  size_t n_marks;
  struct journal_stats *st;
  char *err;
};

/* Write one WRITE record's bytes to its file.  URSULA_OK, or an error
** with err set (the journal named, and the record's byte offset). */
static int journal_apply(struct journal_redo_ctx *x, const char *name,
                         size_t at, const unsigned char *r, uint32_t n) {
  uint32_t group = util_get32(r + 12);
  uint64_t seg = util_get64(r + 16), off = util_get64(r + 24);
  char path[URSULA_PATH_LEN + 64];
  struct journal_target *t = NULL;
  size_t i;
  int e;
  for (i = x->n_t; i > 0; i--) /* the latest first: a group's last segment */
    if (x->t[i - 1].group == group && x->t[i - 1].seg == seg) {
      t = &x->t[i - 1];
      break;
    }
  if (t == NULL) {
    if (x->path_of(x->arg, group, seg, path, sizeof(path)) != URSULA_OK) {
      snprintf(x->err, URSULA_ERRMSG_LEN,
               "%s/%s: the record at byte %lu names group %lu, which this "
               "server does not have",
               x->dir, name, (unsigned long)at, (unsigned long)group);
      return URSULA_ECORRUPT;
    }
    if (x->n_t == x->cap_t) {
      size_t cap = x->cap_t ? x->cap_t * 2 : 16;
      void *p = URSULA_REALLOC(x->t, cap * sizeof(*x->t));
      if (p == NULL) return URSULA_ENOMEM;
      x->t = (struct journal_target *)p;
      x->cap_t = cap;
    }
    t = &x->t[x->n_t];
    t->fd = x->fs->open(path, O_RDWR, 0);
    if (t->fd < 0) {
      e = errno;
      snprintf(x->err, URSULA_ERRMSG_LEN,
               "%.400s/%.64s: the record at byte %lu names %.600s: %s", x->dir,
               name, (unsigned long)at, path, strerror(e));
      return e == ENOENT ? URSULA_ECORRUPT : URSULA_EIO;
    }
    t->group = group;
    t->seg = seg;
    x->n_t++;
  }
  if ((e = journal_pwrite_all(x->fs, t->fd, r + JOURNAL_RECORD_HEADER, n,
                              off)) != 0) {
    snprintf(x->err, URSULA_ERRMSG_LEN, "redo from %s/%s: %s", x->dir, name,
             strerror(e));
    return URSULA_EIO;
  }
  x->st->writes++;
  x->st->bytes += n;
  return URSULA_OK;
}

/* A group's last MARK: in the file of index file + 1 (0: none) of the
** ordered list, at byte at. */
struct journal_mark_at {
  size_t file, at;
};

/* Pass 1 over file i (image p[0..len), named name; newest: the newest
** generation of its core, the only one that may end torn): check it,
** note each group's last MARK in x->marks, where its valid records end in
** *end, and its header's PREV in *prev. */
static int journal_scan_one(struct journal_redo_ctx *x, size_t i,
                            const char *name, int newest,
                            const unsigned char *p, size_t len,
                            size_t *end, uint64_t *prev) {
  size_t at, used;
  uint32_t n;
  if (len < JOURNAL_HEADER_BYTES || memcmp(p, journal_magic, 8) != 0 ||
      util_get32(p + 24) != util_crc32c(0, p, 24)) {
    snprintf(x->err, URSULA_ERRMSG_LEN,
             "%s/%s: not a journal of this version (bad header); it may "
             "hold acknowledged appends, so it is not ignored",
             x->dir, name);
    return URSULA_ECORRUPT;
  }
  *prev = util_get64(p + 8);
  for (at = JOURNAL_HEADER_BYTES; journal_record_ok(p + at, len - at, &n);
       at += JOURNAL_RECORD_HEADER + n) {
    uint32_t group = util_get32(p + at + 12);
    if (p[at + 8] != JOURNAL_MARK) continue;
    if (group >= x->n_marks) {
      size_t cap = (size_t)group + 1;
      void *q = URSULA_REALLOC(x->marks, cap * sizeof(*x->marks));
      if (q == NULL) return URSULA_ENOMEM;
      x->marks = (struct journal_mark_at *)q;
      memset(x->marks + x->n_marks, 0,
             (cap - x->n_marks) * sizeof(*x->marks));
      x->n_marks = cap;
    }
    x->marks[group].file = i + 1;
    x->marks[group].at = at;
  }
  *end = at;
  used = len; /* the room's zeros are not a tail (ROOM) */
  while (used > at && p[used - 1] == 0) used--;
  if (at < used) {
    if (!newest || journal_valid_after(p, len, at + 1)) {
      snprintf(x->err, URSULA_ERRMSG_LEN,
               "%s/%s: damaged record at byte %lu, %s (not a torn tail)",
               x->dir, name, (unsigned long)at,
               newest ? "with valid records after it"
                      : "in a generation older than its core's newest");
      return URSULA_ECORRUPT;
    }
    x->st->cut_bytes += used - at; /* the last write, torn by a crash */
  }
  return URSULA_OK;
}

/* Pass 2 over file i: each group's WRITEs after its last MARK, in order,
** up to end. */
static int journal_redo_one(struct journal_redo_ctx *x, size_t i,
                            const char *name, const unsigned char *p,
                            size_t end) {
  size_t at;
  uint32_t n;
  int rc = URSULA_OK;
  for (at = JOURNAL_HEADER_BYTES; at < end && rc == URSULA_OK;
       at += JOURNAL_RECORD_HEADER + n) {
    uint32_t group = util_get32(p + at + 12);
    n = util_get32(p + at + 4);
    if (p[at + 8] != JOURNAL_WRITE) continue;
    if (group < x->n_marks && x->marks[group].file != 0 &&
        (x->marks[group].file > i + 1 ||
         (x->marks[group].file == i + 1 && x->marks[group].at > at)))
      continue; /* before the group's last MARK */
    rc = journal_apply(x, name, at, p + at, n);
  }
  return rc;
}

struct journal_list {
  char (*names)[64];
  size_t n, cap;
  int rc;
};

static int journal_list_entry(void *arg, const char *name) {
  struct journal_list *l = (struct journal_list *)arg;
  size_t n = strlen(name), core_len;
  if (n >= sizeof(l->names[0]) || journal_name(name, &core_len) == 0)
    return 0;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 8;
    void *p = URSULA_REALLOC(l->names, cap * sizeof(*l->names));
    if (p == NULL) {
      l->rc = URSULA_ENOMEM;
      return 1;
    }
    l->names = (char(*)[64])p;
    l->cap = cap;
  }
  memcpy(l->names[l->n++], name, n + 1);
  return 0;
}

static int journal_cmp(const void *a, const void *b) {
  return strcmp((const char *)a, (const char *)b);
}

/* Read the journal file name into img.  URSULA_OK or URSULA_EIO (err). */
static int journal_read(struct journal_redo_ctx *x, const char *name,
                        struct buf *img) {
  char path[URSULA_PATH_LEN + 80];
  uint64_t size;
  off_t off = 0;
  int fd;
  snprintf(path, sizeof(path), "%s/%s", x->dir, name);
  fd = x->fs->open(path, O_RDONLY, 0);
  if (fd < 0 || x->fs->size(fd, &size) != 0 || size > SIZE_MAX ||
      buf_reserve(img, (size_t)size) != URSULA_OK) {
    snprintf(x->err, URSULA_ERRMSG_LEN, "%.1400s: %s", path, strerror(errno));
    if (fd >= 0) x->fs->close(fd);
    return URSULA_EIO;
  }
  while ((uint64_t)off < size) {
    ssize_t k = x->fs->pread(fd, img->ptr + off,
                             (size_t)(size - (uint64_t)off), off);
    if (k <= 0) break;
    off += k;
  }
  x->fs->close(fd);
  if ((uint64_t)off != size) {
    snprintf(x->err, URSULA_ERRMSG_LEN, "%.1400s: short read", path);
    return URSULA_EIO;
  }
  img->len = (size_t)size;
  return URSULA_OK;
}

URSULA_PRIVATE int journal_redo(struct env *env, const char *dir,
                                int (*path_of)(void *arg, uint32_t group,
                                               uint64_t seg, char *out,
                                               size_t cap),
                                void *arg, struct journal_stats *st,
                                char *err) {
  struct journal_redo_ctx x;
  struct journal_list l;
  struct buf img;
  char path[URSULA_PATH_LEN + 80];
  size_t i, *ends = NULL;
  unsigned char *older = NULL; /* file i is a generation but its core's
                                  newest (pass 1) */
  int rc = URSULA_OK, pass;
  memset(st, 0, sizeof(*st));
  memset(&x, 0, sizeof(x));
  memset(&l, 0, sizeof(l));
  memset(&img, 0, sizeof(img));
  x.fs = (env != NULL ? env : env_real())->fs;
  x.dir = dir;
  x.path_of = path_of;
  x.arg = arg;
  x.st = st;
  x.err = err;
  if (x.fs->list(dir, journal_list_entry, &l) != 0 && l.rc == URSULA_OK &&
      errno != ENOENT) {
    snprintf(err, URSULA_ERRMSG_LEN, "%s: %s", dir, strerror(errno));
    l.rc = URSULA_EIO;
  }
  if (l.rc == URSULA_OK && l.n > 0 &&
      ((ends = (size_t *)URSULA_MALLOC(l.n * sizeof(*ends))) == NULL ||
       (older = (unsigned char *)URSULA_MALLOC(l.n)) == NULL))
    l.rc = URSULA_ENOMEM;
  if (l.rc != URSULA_OK) {
    URSULA_FREE(ends);
    URSULA_FREE(l.names);
    return l.rc;
  }
  if (l.n > 0) memset(older, 0, l.n);
  /* by name: each core's generations in order, a core's newest last */
  if (l.n > 1) qsort(l.names, l.n, sizeof(*l.names), journal_cmp);
  for (pass = 1; pass <= 2; pass++) {
    for (i = 0; i < l.n && rc == URSULA_OK; i++) {
      size_t core_len, next_len;
      int newest;
      if (journal_name(l.names[i], &core_len) != 1) continue; /* a .tmp */
      newest = i + 1 == l.n ||
               journal_name(l.names[i + 1], &next_len) != 1 ||
               next_len != core_len ||
               memcmp(l.names[i], l.names[i + 1], core_len) != 0;
      if ((rc = journal_read(&x, l.names[i], &img)) != URSULA_OK) break;
      if (pass == 1) {
        uint64_t prev = 0;
        st->journals++;
        rc = journal_scan_one(&x, i, l.names[i], newest,
                              (const unsigned char *)img.ptr, img.len,
                              &ends[i], &prev);
        /* ROOM: the core's generation before this one, if it is still
        ** here (a checkpoint removes it), ends where this one's header
        ** says (0: it does not say) */
        if (rc == URSULA_OK && prev != 0 && i > 0 && older[i - 1] &&
            ends[i - 1] != prev) {
          snprintf(err, URSULA_ERRMSG_LEN,
                   "%s/%s: its records end at byte %lu, but the next "
                   "generation's header says %llu: damage, not room",
                   dir, l.names[i - 1], (unsigned long)ends[i - 1],
                   (unsigned long long)prev);
          rc = URSULA_ECORRUPT;
        }
        older[i] = !newest;
      } else {
        rc = journal_redo_one(&x, i, l.names[i],
                              (const unsigned char *)img.ptr, ends[i]);
      }
    }
  }
  buf_free(&img);
  URSULA_FREE(ends);
  URSULA_FREE(older);
  URSULA_FREE(x.marks);
  /* every file written is synced before any journal goes */
  for (i = 0; i < x.n_t; i++) {
    if (rc == URSULA_OK && x.fs->sync(x.t[i].fd) != 0) {
      snprintf(err, URSULA_ERRMSG_LEN, "redo: sync: %s", strerror(errno));
      rc = URSULA_EIO;
    }
    x.fs->close(x.t[i].fd);
  }
  URSULA_FREE(x.t);
  for (i = 0; i < l.n && rc == URSULA_OK; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, l.names[i]);
    if (x.fs->unlink(path) != 0 && errno != ENOENT) {
      snprintf(err, URSULA_ERRMSG_LEN, "%.1400s: %s", path, strerror(errno));
      rc = URSULA_EIO;
    }
  }
  if (rc == URSULA_OK && l.n > 0 && x.fs->sync_dir(dir) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "%s: %s", dir, strerror(errno));
    rc = URSULA_EIO;
  }
  URSULA_FREE(l.names);
  return rc;
}
