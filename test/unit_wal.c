/* unit_wal.c -- wal.c: round trips, segments, the damage matrix (torn
** tails are cut; damage with valid records after it, damage in older
** segments, missing files are refused; reads check every record),
** injected faults (short writes, EIO, ENOSPC, failed syncs), suffix
** truncation and compaction (with a crash injected at every step), the
** hard state, streamed snapshots. */

/* ------------------------------------------------------------ helpers */

static char unit_wal_dir[64];

/* The records framed and not yet written, as a group keeps them. */
static struct buf unit_wal_recs;

static void unit_wal_mkdir(void) {
  strcpy(unit_wal_dir, "/tmp/ursula-unit-wal-XXXXXX");
  if (mkdtemp(unit_wal_dir) == NULL) {
    printf("# mkdtemp failed: %s\n", strerror(errno));
    unit_failed++;
  }
}

static void unit_wal_rmdir(void) {
  char cmd[128];
  buf_free(&unit_wal_recs);
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", unit_wal_dir);
  if (system(cmd) != 0) printf("# could not remove %s\n", unit_wal_dir);
}

/* The payload of entry i: deterministic, of varying length. */
static size_t unit_wal_payload(uint64_t i, char *out) {
  size_t n = (size_t)(i * 7 % 50) + 1, k;
  for (k = 0; k < n; k++) out[k] = (char)('a' + (i + k) % 26);
  return n;
}

/* What a replay saw. */
struct unit_wal_seen {
  uint64_t n, first, last;
  uint64_t bad; /* entries whose payload or term is not what was written */
};

static int unit_wal_check(void *arg, const struct wal_entry *e) {
  struct unit_wal_seen *s = (struct unit_wal_seen *)arg;
  char want[64];
  size_t n = unit_wal_payload(e->index, want);
  if (s->n == 0) s->first = e->index;
  if (e->len != n || memcmp(e->data, want, n) != 0 || e->term != 1) s->bad++;
  s->n++;
  s->last = e->index;
  return URSULA_OK;
}

/* The snapshot a replay was given (unit_wal_snapshot saves "snap:N"). */
static char unit_wal_snap[32];

static int unit_wal_restore(void *arg, const void *p, size_t len) {
  (void)arg;
  if (len >= sizeof(unit_wal_snap)) return URSULA_ECORRUPT;
  memcpy(unit_wal_snap, p, len);
  unit_wal_snap[len] = '\0';
  return URSULA_OK;
}

/* The replays' read buffer, kept from one log to the next as the
** server's recovery threads keep theirs (wal_replay's scratch): every
** case below replays through what the cases before it left there. */
static struct buf unit_wal_scratch;

/* Open the log in unit_wal_dir and replay it with unit_wal_check. */
static struct wal *unit_wal_open(struct unit_wal_seen *seen,
                                 struct wal_stats *st) {
  struct wal *w = NULL;
  char err[URSULA_ERRMSG_LEN];
  struct wal_stats tmp;
  if (st == NULL) st = &tmp;
  memset(seen, 0, sizeof(*seen));
  if (wal_open(&w, NULL, unit_wal_dir, 0, err) != URSULA_OK) {
    printf("# wal_open: %s\n", err);
    unit_failed++;
    return NULL;
  }
  err[0] = '\0';
  if (wal_replay(w, unit_wal_restore, unit_wal_check, seen, &unit_wal_scratch,
                 st, err) !=
      URSULA_OK) {
    printf("# wal_replay failed: %s\n", err);
    unit_failed++;
  }
  return w;
}

/* Frame one entry the way a group does: header room, payload, frame. */
static int unit_wal_append(struct wal *w, uint64_t term, uint64_t index,
                           const void *p, size_t n) {
  size_t at = unit_wal_recs.len;
  int rc;
  if (buf_reserve(&unit_wal_recs, WAL_RECORD_HEADER + n) != URSULA_OK)
    return URSULA_ENOMEM;
  unit_wal_recs.len += WAL_RECORD_HEADER;
  buf_append(&unit_wal_recs, p, n);
  rc = wal_frame(w, WAL_CMD, term, index, unit_wal_recs.ptr + at, n);
  if (rc != URSULA_OK) unit_wal_recs.len = at;
  return rc;
}

/* A fresh log in a fresh unit_wal_dir: segments of seg_bytes bytes (0:
** the default), entries 1..n of term 1, synced every `batch` entries.
** NULL (a failure counted) if it cannot be made. */
static int unit_wal_fill(struct wal *w, uint64_t from, uint64_t to, int batch);
static struct wal *unit_wal_new(int64_t seg_bytes, uint64_t n, int batch) {
  struct unit_wal_seen seen;
  struct wal *w;
  unit_wal_mkdir();
  if ((w = unit_wal_open(&seen, NULL)) == NULL) return NULL;
  if (seg_bytes > 0) wal_set_segment_bytes(w, seg_bytes);
  if (n > 0 && unit_wal_fill(w, 1, n, batch) != URSULA_OK) {
    printf("# unit_wal_new: the fill failed\n");
    unit_failed++;
  }
  return w;
}

/* Write what was framed, then sync it. */
static int unit_wal_sync(struct wal *w) {
  int rc = wal_write(w, unit_wal_recs.ptr, unit_wal_recs.len);
  unit_wal_recs.len = 0; /* written, or refused: either way it is gone */
  return rc == URSULA_OK ? wal_flush(w) : rc;
}

/* Append entries from..to (term 1), syncing every `batch` entries. */
static int unit_wal_fill(struct wal *w, uint64_t from, uint64_t to, int batch) {
  char p[64];
  uint64_t i;
  int rc;
  for (i = from; i <= to; i++) {
    size_t n = unit_wal_payload(i, p);
    if ((rc = unit_wal_append(w, 1, i, p, n)) != URSULA_OK)
      return rc;
    if ((i - from + 1) % (uint64_t)batch == 0 &&
        (rc = unit_wal_sync(w)) != URSULA_OK)
      return rc;
  }
  return unit_wal_sync(w);
}

static int unit_wal_count_segments(void) {
  DIR *d = opendir(unit_wal_dir);
  struct dirent *de;
  int n = 0;
  uint64_t first;
  if (d == NULL) return -1;
  while ((de = readdir(d)) != NULL)
    if (wal_seg_name(de->d_name, &first)) n++;
  closedir(d);
  return n;
}

/* The path of the segment file with the highest first index. */
static void unit_wal_last_segment(char *out, size_t cap) {
  DIR *d = opendir(unit_wal_dir);
  struct dirent *de;
  uint64_t first, best = 0;
  out[0] = '\0';
  if (d == NULL) return;
  while ((de = readdir(d)) != NULL)
    if (wal_seg_name(de->d_name, &first) && first >= best) {
      best = first;
      snprintf(out, cap, "%s/%.30s", unit_wal_dir, de->d_name);
    }
  closedir(d);
}

static off_t unit_wal_file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? st.st_size : -1;
}

/* ------------------------------------------------------------ faults */

static struct os_fs unit_wal_real;
/* Switched while a server's threads run (unit_server.c), hence volatile. */
static volatile int unit_fault_short;        /* pwrite writes at most this */
static volatile int unit_fault_pwrite_errno; /* pwrite fails with this */
static volatile int unit_fault_sync_errno;   /* sync fails with this */
static volatile int unit_fault_creat_errno;  /* open(O_CREAT) fails so */
static volatile int unit_fault_rdwr_errno;   /* open(O_RDWR) of a file
                                                that exists fails so */
static volatile int unit_fault_syncdir_errno; /* sync_dir fails with this */
static volatile int unit_fault_reopen_errno;  /* open(O_RDWR) of a
                                                 segment file fails so */

/* LOST WRITES (unit_fault_lose_wal): writes to WAL segment files are
** dropped, though they report success, and syncs of those files fail --
** as if the machine lost power before the files were ever synced (the
** failed syncs keep a server from making them durable another way). */
static volatile int unit_fault_lose_wal;
static unsigned char unit_fault_wal_fd[4096]; /* fd: a segment file */

static int unit_fault_is_wal(int fd) {
  return fd >= 0 && fd < (int)sizeof(unit_fault_wal_fd) &&
         unit_fault_wal_fd[fd];
}

static ssize_t unit_fault_pwrite(int fd, const void *p, size_t n, off_t off) {
  if (unit_fault_lose_wal && unit_fault_is_wal(fd)) return (ssize_t)n;
  if (unit_fault_pwrite_errno) {
    errno = unit_fault_pwrite_errno;
    return -1;
  }
  if (unit_fault_short > 0 && n > (size_t)unit_fault_short)
    n = (size_t)unit_fault_short;
  return unit_wal_real.pwrite(fd, p, n, off);
}

static volatile int unit_fault_sync_ms; /* each sync first sleeps this */

/* WRITE-BACK ERRORS (unit_fault_wb_error), as Linux reports them (errseq,
** 4.13 on): every open file -- a description: open() makes one, dup()
** would share it -- that is open on the file when its write-back fails
** sees the error at its next sync, once; a sync through another
** descriptor of the same open file after that succeeds. */
#define UNIT_FAULT_DESCS 65536
static unsigned unit_fault_desc[4096];             /* fd: its open file */
static unsigned char unit_fault_wb[UNIT_FAULT_DESCS]; /* open file: error */
static unsigned unit_fault_next_desc;

static void unit_fault_new_desc(int fd) {
  if (fd < 0 || fd >= (int)(sizeof(unit_fault_desc) / sizeof(unsigned)))
    return;
  unit_fault_next_desc = (unit_fault_next_desc + 1) % UNIT_FAULT_DESCS;
  if (unit_fault_next_desc == 0) unit_fault_next_desc = 1;
  unit_fault_desc[fd] = unit_fault_next_desc;
  unit_fault_wb[unit_fault_next_desc] = 0;
}

/* A write-back of path failed: each of its open files reports it once. */
static void unit_fault_wb_error(const char *path) {
  struct stat want, st;
  int fd;
  if (stat(path, &want) != 0) {
    unit_failed++;
    return;
  }
  for (fd = 0; fd < (int)(sizeof(unit_fault_desc) / sizeof(unsigned)); fd++)
    if (unit_fault_desc[fd] != 0 && fstat(fd, &st) == 0 &&
        st.st_dev == want.st_dev && st.st_ino == want.st_ino)
      unit_fault_wb[unit_fault_desc[fd]] = 1;
}

static int unit_fault_sync(int fd) {
  if (fd >= 0 && fd < (int)(sizeof(unit_fault_desc) / sizeof(unsigned)) &&
      unit_fault_desc[fd] != 0 && unit_fault_wb[unit_fault_desc[fd]]) {
    unit_fault_wb[unit_fault_desc[fd]] = 0;
    errno = EIO;
    return -1;
  }
  if (unit_fault_sync_ms > 0) {
    struct timespec ts;
    ts.tv_sec = unit_fault_sync_ms / 1000;
    ts.tv_nsec = (long)(unit_fault_sync_ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
  }
  if (unit_fault_lose_wal && unit_fault_is_wal(fd)) {
    errno = EIO;
    return -1;
  }
  if (unit_fault_sync_errno) {
    errno = unit_fault_sync_errno;
    return -1;
  }
  return unit_wal_real.sync(fd);
}

static int unit_fault_sync_dir(const char *dir) {
  if (unit_fault_syncdir_errno) {
    errno = unit_fault_syncdir_errno;
    return -1;
  }
  return unit_wal_real.sync_dir(dir);
}

static int unit_fault_open(const char *path, int flags, int mode) {
  if (unit_fault_creat_errno && (flags & O_CREAT)) {
    errno = unit_fault_creat_errno;
    return -1;
  }
  if (unit_fault_rdwr_errno && (flags & O_RDWR) && !(flags & O_CREAT)) {
    errno = unit_fault_rdwr_errno;
    return -1;
  }
  {
    size_t n = strlen(path);
    int fd;
    if (unit_fault_reopen_errno && (flags & O_RDWR) && !(flags & O_CREAT) &&
        n > 4 && strcmp(path + n - 4, ".wal") == 0) {
      errno = unit_fault_reopen_errno;
      return -1;
    }
    fd = unit_wal_real.open(path, flags, mode);
    unit_fault_new_desc(fd);
    if (fd >= 0 && fd < (int)sizeof(unit_fault_wal_fd))
      unit_fault_wal_fd[fd] = n > 4 && strcmp(path + n - 4, ".wal") == 0;
    return fd;
  }
}

static void unit_fault_install(void) {
  unit_wal_real = *os_fs();
  unit_fault_short = unit_fault_pwrite_errno = unit_fault_sync_errno = 0;
  unit_fault_creat_errno = unit_fault_rdwr_errno = 0;
  unit_fault_syncdir_errno = unit_fault_reopen_errno = 0;
  unit_fault_lose_wal = unit_fault_sync_ms = 0;
  memset(unit_fault_wal_fd, 0, sizeof(unit_fault_wal_fd));
  memset(unit_fault_desc, 0, sizeof(unit_fault_desc));
  memset(unit_fault_wb, 0, sizeof(unit_fault_wb));
  unit_fault_next_desc = 0;
  os_fs()->pwrite = unit_fault_pwrite;
  os_fs()->sync = unit_fault_sync;
  os_fs()->open = unit_fault_open;
  os_fs()->sync_dir = unit_fault_sync_dir;
}

static void unit_fault_remove(void) {
  *os_fs() = unit_wal_real;
}

/* ------------------------------------------------------------ cases */

static void test_wal_roundtrip(void) {
  struct unit_wal_seen seen;
  struct wal_stats st;
  struct wal *w;
  unit_wal_mkdir();
  w = unit_wal_open(&seen, NULL);
  ASSERT(w != NULL && seen.n == 0 && wal_last_index(w) == 0);
  if (w == NULL) return;
  ASSERT(unit_wal_fill(w, 1, 100, 10) == URSULA_OK);
  ASSERT(wal_last_index(w) == 100);
  /* appends must continue the sequence */
  ASSERT(unit_wal_append(w, 1, 102, "x", 1) == URSULA_EINVAL);
  /* the term went back */
  ASSERT(unit_wal_append(w, 0, 101, "x", 1) == URSULA_EINVAL);
  wal_close(w);
  w = unit_wal_open(&seen, &st);
  ASSERT(seen.n == 100 && seen.first == 1 && seen.last == 100);
  ASSERT(seen.bad == 0);
  ASSERT(st.entries == 100 && st.cut_bytes == 0);
  ASSERT(w != NULL && wal_last_index(w) == 100 && wal_last_term(w) == 1);
  wal_close(w);
  unit_wal_rmdir();
}

static void test_wal_segments(void) {
  struct unit_wal_seen seen;
  struct wal *w;
  w = unit_wal_new(300, 200, 5);
  if (w == NULL) return;
  wal_close(w);
  ASSERT(unit_wal_count_segments() > 5);
  w = unit_wal_open(&seen, NULL);
  ASSERT(seen.n == 200 && seen.last == 200 && seen.bad == 0);
  wal_close(w);
  unit_wal_rmdir();
}

/* A torn last record is cut; appends go on from the last good entry. */
static void test_wal_torn_tail(void) {
  struct unit_wal_seen seen;
  struct wal_stats st;
  struct wal *w;
  char seg[256];
  off_t size;
  w = unit_wal_new(0, 50, 50);
  if (w == NULL) return;
  wal_close(w);
  unit_wal_last_segment(seg, sizeof(seg));
  size = unit_wal_file_size(seg);
  ASSERT(size > 100 && truncate(seg, size - 3) == 0);
  w = unit_wal_open(&seen, &st);
  ASSERT(seen.n == 49 && seen.last == 49 && seen.bad == 0);
  ASSERT(st.cut_bytes > 0 && st.cut_bytes < 80);
  ASSERT(unit_wal_file_size(seg) < size - 3); /* the cut is on disk */
  ASSERT(w != NULL && wal_last_index(w) == 49);
  ASSERT(unit_wal_fill(w, 50, 60, 3) == URSULA_OK);
  wal_close(w);
  w = unit_wal_open(&seen, &st);
  ASSERT(seen.n == 60 && seen.bad == 0 && st.cut_bytes == 0);
  wal_close(w);
  unit_wal_rmdir();
}

/* The path of the segment that holds entry index, and the file offset
** of that entry's record (walking the records: HARD and SEAL records take
** no index).  Returns 0, or -1. */
static int unit_wal_find(uint64_t index, char *path, size_t cap,
                         off_t *rec_at) {
  DIR *d = opendir(unit_wal_dir);
  struct dirent *de;
  uint64_t first, best = 0, i;
  unsigned char *img;
  off_t size, at = WAL_HEADER_BYTES;
  FILE *f;
  int rc = -1;
  if (d == NULL) return -1;
  while ((de = readdir(d)) != NULL)
    if (wal_seg_name(de->d_name, &first) && first <= index && first > best)
      best = first;
  closedir(d);
  snprintf(path, cap, "%s/%020llu.wal", unit_wal_dir, (unsigned long long)best);
  size = unit_wal_file_size(path);
  if (size <= 0 || (img = (unsigned char *)malloc((size_t)size)) == NULL)
    return -1;
  f = fopen(path, "rb");
  if (f != NULL && fread(img, 1, (size_t)size, f) == (size_t)size) {
    i = best;
    while (at + WAL_RECORD_HEADER <= size) {
      int type = img[at + 8];
      if (type >= WAL_CMD && type <= WAL_CONF) {
        if (i == index) {
          *rec_at = at;
          rc = 0;
          break;
        }
        i++;
      }
      at += WAL_RECORD_HEADER + util_get32(img + at + 4);
    }
  }
  if (f != NULL) fclose(f);
  free(img);
  return rc;
}

/* XOR the byte at off of path with x. */
static int unit_wal_poke(const char *path, off_t off, unsigned char x) {
  FILE *f = fopen(path, "r+b");
  int c, rc = -1;
  if (f == NULL) return -1;
  if (fseek(f, off, SEEK_SET) == 0 && (c = fgetc(f)) != EOF &&
      fseek(f, off, SEEK_SET) == 0 && fputc(c ^ x, f) != EOF)
    rc = 0;
  fclose(f);
  return rc;
}

/* Flip one bit of the payload of entry index; returns 0 on success. */
static int unit_wal_flip(uint64_t index) {
  char path[256];
  off_t at;
  if (unit_wal_find(index, path, sizeof(path), &at) != 0) return -1;
  return unit_wal_poke(path, at + WAL_RECORD_HEADER, 0x10);
}

/* Replay the log in unit_wal_dir; returns wal_replay()'s status, with its
** reason in unit_wal_err. */
static char unit_wal_err[URSULA_ERRMSG_LEN];

static int unit_wal_replay_rc(struct unit_wal_seen *seen,
                              struct wal_stats *st) {
  struct wal *w = NULL;
  struct wal_stats tmp;
  int rc;
  if (st == NULL) st = &tmp;
  memset(seen, 0, sizeof(*seen));
  unit_wal_err[0] = '\0';
  rc = wal_open(&w, NULL, unit_wal_dir, 1, unit_wal_err);
  if (rc != URSULA_OK) return rc;
  rc = wal_replay(w, unit_wal_restore, unit_wal_check, seen, &unit_wal_scratch,
                  st, unit_wal_err);
  wal_close(w);
  return rc;
}

/* Whether the refusal names the file (the full path) and the byte. */
static int unit_wal_names(const char *path, const char *what) {
  if (strstr(unit_wal_err, path) == NULL || strstr(unit_wal_err, what) == NULL) {
    printf("# reason: %s\n", unit_wal_err);
    return 0;
  }
  return 1;
}

/* A bit flip in the last record of the last segment is a torn tail: cut
** (nothing valid follows it, so it was the last write before a crash). */
static void test_wal_bit_flip_tail(void) {
  struct unit_wal_seen seen;
  struct wal_stats st;
  struct wal *w;
  w = unit_wal_new(400, 120, 4);
  if (w == NULL) return;
  wal_close(w);
  ASSERT(unit_wal_flip(120) == 0);
  w = unit_wal_open(&seen, &st);
  ASSERT(seen.n == 119 && seen.last == 119 && seen.bad == 0);
  ASSERT(st.cut_bytes > 0);
  ASSERT(w != NULL && wal_last_index(w) == 119);
  ASSERT(unit_wal_fill(w, 120, 125, 2) == URSULA_OK);
  wal_close(w);
  w = unit_wal_open(&seen, &st);
  ASSERT(seen.n == 125 && seen.bad == 0 && st.cut_bytes == 0);
  wal_close(w);
  unit_wal_rmdir();
}

/* A flipped bit in the middle of the last segment, with valid records
** after it, is damage, not a torn tail: refused, naming file and byte,
** and nothing is cut. */
static void test_wal_bit_flip_last_segment(void) {
  struct unit_wal_seen seen;
  struct wal *w;
  char path[256], want[64];
  off_t at, size;
  w = unit_wal_new(0, 10, 10); /* one batch, synced */
  if (w == NULL) return;
  wal_close(w);
  ASSERT(unit_wal_find(3, path, sizeof(path), &at) == 0);
  size = unit_wal_file_size(path);
  ASSERT(unit_wal_poke(path, at + WAL_RECORD_HEADER, 0x10) == 0);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_ECORRUPT);
  snprintf(want, sizeof(want), "byte %lld", (long long)at);
  ASSERT(unit_wal_names(path, want));
  ASSERT(unit_wal_file_size(path) == size); /* nothing was cut */
  /* the same flip in the header of the record, and in its length */
  ASSERT(unit_wal_poke(path, at + WAL_RECORD_HEADER, 0x10) == 0);
  ASSERT(unit_wal_poke(path, at + 4, 0x01) == 0);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_ECORRUPT);
  ASSERT(unit_wal_poke(path, at + 4, 0x01) == 0);
  ASSERT(unit_wal_poke(path, at + 16, 0x01) == 0); /* the term */
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_ECORRUPT);
  ASSERT(unit_wal_poke(path, at + 16, 0x01) == 0); /* repaired by hand */
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_OK && seen.n == 10);
  /* zeros from the damage to the end (a torn write of the last batch,
  ** never acknowledged): cut */
  ASSERT(truncate(path, at) == 0 && truncate(path, size) == 0);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_OK && seen.n == 2);
  unit_wal_rmdir();
}

/* Damage before the last segment is not a crash's tail: replay refuses,
** and nothing is cut or removed.  So are missing and shortened files. */
static void test_wal_bit_flip_middle(void) {
  struct unit_wal_seen seen;
  struct wal *w;
  char path[256], last[256];
  off_t at;
  int segs;
  w = unit_wal_new(400, 120, 4);
  if (w == NULL) return;
  wal_close(w);
  segs = unit_wal_count_segments();
  ASSERT(segs > 3);
  ASSERT(unit_wal_find(40, path, sizeof(path), &at) == 0);
  ASSERT(unit_wal_flip(40) == 0);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_ECORRUPT);
  ASSERT(unit_wal_names(path, "damaged at byte"));
  ASSERT(unit_wal_count_segments() == segs);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_ECORRUPT); /* still */
  ASSERT(unit_wal_flip(40) == 0); /* repaired by hand: all of it is back */
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_OK && seen.n == 120);
  /* an older segment cut short */
  ASSERT(truncate(path, unit_wal_file_size(path) - 5) == 0);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_ECORRUPT);
  ASSERT(unit_wal_names(path, "damaged at byte"));
  /* a missing segment in the middle is refused too */
  ASSERT(unlink(path) == 0);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_ECORRUPT);
  ASSERT(strstr(unit_wal_err, "are missing") != NULL);
  ASSERT(unit_wal_count_segments() == segs - 1);
  /* the last segment gone: its predecessor's seal names it */
  unit_wal_rmdir();
  w = unit_wal_new(400, 60, 4);
  if (w == NULL) return;
  wal_close(w);
  unit_wal_last_segment(last, sizeof(last));
  ASSERT(unlink(last) == 0);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_ECORRUPT);
  ASSERT(strstr(unit_wal_err, "seal") != NULL &&
         strstr(unit_wal_err, last + strlen(unit_wal_dir) + 1) != NULL);
  unit_wal_rmdir();
}

/* Missing files the log names: the snapshot (segments start after 1),
** every segment, the directory itself (must_exist). */
static void test_wal_missing_files(void) {
  struct unit_wal_seen seen;
  struct wal *w;
  char path[256];
  w = unit_wal_new(300, 100, 4);
  if (w == NULL) return;
  ASSERT(wal_save_snapshot(w, 70, 1, "snap:70", 7) == URSULA_OK);
  ASSERT(wal_compact(w, 70) == URSULA_OK && wal_first_index(w) > 1);
  wal_close(w);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_OK && seen.last == 100);
  snprintf(path, sizeof(path), "%s/snapshot", unit_wal_dir);
  ASSERT(unlink(path) == 0);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_ECORRUPT);
  ASSERT(strstr(unit_wal_err, "no snapshot") != NULL);
  /* a segment the snapshot covers (not read at start), gone from between
  ** two others: the seal of the one before names the one that is gone */
  unit_wal_rmdir();
  w = unit_wal_new(300, 100, 4);
  if (w == NULL) return;
  ASSERT(wal_save_snapshot(w, 90, 1, "snap:90", 7) == URSULA_OK);
  wal_close(w);
  {
    off_t at;
    ASSERT(unit_wal_find(40, path, sizeof(path), &at) == 0);
    ASSERT(unlink(path) == 0);
  }
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_ECORRUPT);
  ASSERT(strstr(unit_wal_err, "does not end where") != NULL);
  /* a damaged snapshot: refused, never half-read */
  unit_wal_rmdir();
  w = unit_wal_new(0, 10, 4);
  if (w == NULL) return;
  ASSERT(wal_save_snapshot(w, 5, 1, "snap:5", 6) == URSULA_OK);
  wal_close(w);
  snprintf(path, sizeof(path), "%s/snapshot", unit_wal_dir);
  ASSERT(unit_wal_poke(path, 33, 0x04) == 0);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_ECORRUPT);
  ASSERT(unit_wal_names(path, "damaged"));
  /* no segment at all, in a log that must exist */
  unit_wal_rmdir();
  w = unit_wal_new(0, 3, 3);
  if (w == NULL) return;
  wal_close(w);
  unit_wal_last_segment(path, sizeof(path));
  ASSERT(unlink(path) == 0);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_ECORRUPT);
  ASSERT(unit_wal_names(unit_wal_dir, "no log segment"));
  /* the directory itself */
  unit_wal_rmdir();
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_ECORRUPT);
  ASSERT(unit_wal_names(unit_wal_dir, "is missing"));
}

/* Every read checks the record it reads: a flipped bit in an entry that
** replay did not read (covered by the snapshot) or that went bad after
** it was read is an error, never wrong bytes. */
static void test_wal_read_checks(void) {
  struct unit_wal_seen seen;
  struct wal *w;
  struct buf out;
  char p[64], path[256];
  size_t n;
  off_t at;
  memset(&out, 0, sizeof(out));
  w = unit_wal_new(400, 100, 4);
  if (w == NULL) return;
  ASSERT(wal_save_snapshot(w, 90, 1, "snap:90", 7) == URSULA_OK);
  n = unit_wal_payload(18, p);
  ASSERT(wal_read(w, 18, 0, n, &out) == URSULA_OK);
  ASSERT(out.len == n && memcmp(out.ptr, p, n) == 0);
  out.len = 0;
  ASSERT(wal_read(w, 18, 1, n - 1, &out) == URSULA_OK && out.len == n - 1 &&
         memcmp(out.ptr, p + 1, n - 1) == 0);
  ASSERT(wal_read(w, 18, 1, n, &out) == URSULA_EINVAL); /* past the end */
  ASSERT(wal_read(w, 101, 0, 1, &out) == URSULA_ENOTFOUND);
  wal_close(w);
  /* reopened: entries 1..90 are not read at start */
  ASSERT(unit_wal_flip(18) == 0);
  ASSERT(unit_wal_find(95, path, sizeof(path), &at) == 0);
  w = unit_wal_open(&seen, NULL);
  ASSERT(w != NULL && seen.first == 91 && seen.n == 10);
  if (w == NULL) return;
  out.len = 0;
  ASSERT(wal_read(w, 18, 0, n, &out) == URSULA_ECORRUPT && out.len == 0);
  n = unit_wal_payload(19, p); /* same batch, so same segment */
  ASSERT(wal_read(w, 19, 0, n, &out) == URSULA_ECORRUPT); /* after it */
  n = unit_wal_payload(95, p);
  ASSERT(wal_read(w, 95, 0, n, &out) == URSULA_OK);
  /* bit rot under a running log: the cached record goes stale */
  ASSERT(unit_wal_poke(path, at + WAL_RECORD_HEADER + 1, 0x08) == 0);
  out.len = 0;
  ASSERT(wal_read(w, 94, 0, 1, &out) == URSULA_OK);
  ASSERT(wal_read(w, 95, 0, n, &out) == URSULA_ECORRUPT);
  wal_close(w);
  buf_free(&out);
  unit_wal_rmdir();
}

/* A format-1 log is refused with a message that says so. */
static void test_wal_v1_refused(void) {
  struct unit_wal_seen seen;
  char path[256];
  FILE *f;
  unit_wal_mkdir();
  snprintf(path, sizeof(path), "%s/00000000000000000001.wal", unit_wal_dir);
  f = fopen(path, "wb");
  ASSERT(f != NULL);
  if (f != NULL) {
    fwrite("URSWAL1\n\1\0\0\0\0\0\0\0", 1, 16, f);
    fclose(f);
  }
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_EINVAL);
  ASSERT(unit_wal_names(path, "format 1"));
  unit_wal_rmdir();
}

static void test_wal_short_writes(void) {
  struct unit_wal_seen seen;
  struct wal *w;
  unit_wal_mkdir();
  w = unit_wal_open(&seen, NULL);
  if (w == NULL) return;
  unit_fault_install();
  unit_fault_short = 7; /* every pwrite stops after 7 bytes */
  ASSERT(unit_wal_fill(w, 1, 30, 10) == URSULA_OK);
  unit_fault_remove();
  wal_close(w);
  w = unit_wal_open(&seen, NULL);
  ASSERT(seen.n == 30 && seen.bad == 0);
  wal_close(w);
  unit_wal_rmdir();
}

/* A failed write or sync: nothing buffered counts, appends are refused
** until wal_recover(), and after it the log holds exactly the durable
** entries. */
static void unit_wal_fault_case(int pwrite_errno, int sync_errno, int want_rc) {
  struct unit_wal_seen seen;
  struct wal *w;
  char p[64];
  w = unit_wal_new(0, 20, 20);
  if (w == NULL) return;
  unit_fault_install();
  unit_fault_pwrite_errno = pwrite_errno;
  unit_fault_sync_errno = sync_errno;
  ASSERT(unit_wal_append(w, 1, 21, p, unit_wal_payload(21, p)) ==
         URSULA_OK);
  ASSERT(unit_wal_append(w, 1, 22, p, unit_wal_payload(22, p)) ==
         URSULA_OK);
  ASSERT(unit_wal_sync(w) == want_rc);
  ASSERT(wal_failed(w) && wal_last_index(w) == 20);
  ASSERT(unit_wal_append(w, 1, 21, p, unit_wal_payload(21, p)) ==
         URSULA_EIO);
  if (sync_errno) /* the fault is still there: the check cannot pass */
    ASSERT(wal_recover(w) != URSULA_OK && wal_failed(w));
  unit_fault_remove();
  ASSERT(wal_recover(w) == URSULA_OK && !wal_failed(w));
  ASSERT(unit_wal_fill(w, 21, 25, 5) == URSULA_OK);
  wal_close(w);
  w = unit_wal_open(&seen, NULL);
  ASSERT(seen.n == 25 && seen.last == 25 && seen.bad == 0);
  wal_close(w);
  unit_wal_rmdir();
}

static void test_wal_fault_eio(void) {
  unit_wal_fault_case(EIO, 0, URSULA_EIO);
}
static void test_wal_fault_enospc(void) {
  unit_wal_fault_case(ENOSPC, 0, URSULA_ENOSPC);
}
/* The bytes reach the file but the sync fails: they must not survive. */
static void test_wal_fault_sync(void) {
  unit_wal_fault_case(0, EIO, URSULA_EIO);
}

/* A read while wal_recover() could not reopen the last segment (w->fd is
** then -1) must read no further than what is durable, and the recovery's
** cut must forget what was read ahead: else the bytes of a batch whose
** sync failed, read ahead then, are served later for the entry that
** takes its index after the recovery (here entry 21, term 2). */
static void test_wal_recover_read_ahead(void) {
  struct unit_wal_seen seen;
  struct wal *w;
  struct wal_entry e;
  struct buf out;
  char p[64], q[64];
  size_t n;
  memset(&out, 0, sizeof(out));
  w = unit_wal_new(0, 20, 20);
  if (w == NULL) return;
  unit_fault_install();
  unit_fault_sync_errno = EIO; /* entry 21 reaches the file, not the disk */
  ASSERT(unit_wal_append(w, 1, 21, p, unit_wal_payload(21, p)) ==
         URSULA_OK);
  ASSERT(unit_wal_sync(w) == URSULA_EIO && wal_failed(w));
  unit_fault_sync_errno = 0;
  unit_fault_rdwr_errno = EMFILE; /* the reopen fails: w->fd is -1 */
  ASSERT(wal_recover(w) != URSULA_OK && wal_failed(w));
  n = unit_wal_payload(20, p); /* a read of the last durable entry */
  ASSERT(wal_read(w, 20, 0, n, &out) == URSULA_OK && out.len == n &&
         memcmp(out.ptr, p, n) == 0);
  unit_fault_rdwr_errno = 0;
  ASSERT(wal_recover(w) == URSULA_OK && !wal_failed(w));
  unit_fault_remove();
  /* entry 21 anew, in a new term, with other bytes */
  memset(q, 'Z', sizeof(q));
  n = 9;
  ASSERT(unit_wal_append(w, 2, 21, q, n) == URSULA_OK);
  ASSERT(unit_wal_sync(w) == URSULA_OK);
  out.len = 0;
  ASSERT(wal_entry_at(w, 21, &e) == URSULA_OK && e.term == 2 && e.len == n &&
         memcmp(e.data, q, n) == 0);
  ASSERT(wal_read(w, 21, 0, n, &out) == URSULA_OK && out.len == n &&
         memcmp(out.ptr, q, n) == 0);
  wal_close(w);
  w = unit_wal_open(&seen, NULL); /* what the disk holds agrees */
  ASSERT(w != NULL && seen.n == 21 && seen.last == 21 && seen.bad == 1);
  wal_close(w);
  buf_free(&out);
  unit_wal_rmdir();
}

static void test_wal_truncate_suffix(void) {
  struct unit_wal_seen seen;
  struct wal *w;
  w = unit_wal_new(300, 100, 3);
  if (w == NULL) return;
  ASSERT(wal_truncate_suffix(w, 61) == URSULA_OK);
  ASSERT(wal_last_index(w) == 60 && wal_last_term(w) == 1);
  ASSERT(unit_wal_fill(w, 61, 70, 10) == URSULA_OK);
  wal_close(w);
  w = unit_wal_open(&seen, NULL);
  ASSERT(seen.n == 70 && seen.last == 70 && seen.bad == 0);
  /* cut at the very first entry of the log */
  ASSERT(w != NULL && wal_truncate_suffix(w, 1) == URSULA_OK);
  ASSERT(wal_last_index(w) == 0);
  ASSERT(unit_wal_fill(w, 1, 5, 5) == URSULA_OK);
  wal_close(w);
  w = unit_wal_open(&seen, NULL);
  ASSERT(seen.n == 5 && seen.bad == 0);
  wal_close(w);
  unit_wal_rmdir();
}

static void test_wal_compact(void) {
  struct unit_wal_seen seen;
  struct wal *w;
  int before;
  w = unit_wal_new(300, 100, 4);
  if (w == NULL) return;
  before = unit_wal_count_segments();
  ASSERT(wal_compact(w, 50) == URSULA_OK); /* no snapshot covers them */
  ASSERT(unit_wal_count_segments() == before && wal_first_index(w) == 1);
  ASSERT(wal_save_snapshot(w, 50, 1, "snap:50", 7) == URSULA_OK);
  ASSERT(wal_compact(w, 80) == URSULA_OK); /* at most what it covers */
  ASSERT(wal_first_index(w) > 1 && wal_first_index(w) <= 51);
  ASSERT(unit_wal_count_segments() < before);
  wal_close(w);
  w = unit_wal_open(&seen, NULL);
  ASSERT(seen.n == 50 && seen.first == 51 && seen.last == 100);
  ASSERT(seen.bad == 0);
  ASSERT(w != NULL && wal_first_index(w) > 1 && wal_first_index(w) <= 51);
  wal_close(w);
  unit_wal_rmdir();
}

/* The hard state: saved at once, or framed with entries and durable at
** their sync (not before, and not if the sync fails); it survives
** segment rolls, compaction and truncation. */
static void test_wal_state(void) {
  struct unit_wal_seen seen;
  struct wal *w;
  unsigned char rec[WAL_RECORD_HEADER + 16];
  unit_wal_mkdir();
  w = unit_wal_open(&seen, NULL);
  if (w == NULL) return;
  ASSERT(wal_term(w) == 0 && wal_vote(w) == 0);
  ASSERT(wal_save_state(w, 5, 2) == URSULA_OK);
  wal_close(w);
  w = unit_wal_open(&seen, NULL);
  ASSERT(w != NULL && wal_term(w) == 5 && wal_vote(w) == 2);
  if (w == NULL) return;
  /* framed in a batch: in force once the batch is durable */
  wal_set_segment_bytes(w, 300);
  ASSERT(unit_wal_fill(w, 1, 10, 10) == URSULA_OK);
  wal_hard_payload(rec + WAL_RECORD_HEADER, 6, 3);
  ASSERT(wal_frame(w, WAL_HARD, 6, 10, rec, 16) == URSULA_OK);
  ASSERT(wal_frame(w, WAL_HARD, 6, 11, rec, 16) == URSULA_EINVAL);
  ASSERT(buf_append(&unit_wal_recs, rec, sizeof(rec)) == URSULA_OK);
  ASSERT(wal_term(w) == 5); /* not yet durable */
  ASSERT(unit_wal_sync(w) == URSULA_OK);
  ASSERT(wal_term(w) == 6 && wal_vote(w) == 3);
  /* a HARD record whose sync fails never took effect */
  unit_fault_install();
  unit_fault_sync_errno = EIO;
  wal_hard_payload(rec + WAL_RECORD_HEADER, 7, 1);
  ASSERT(wal_frame(w, WAL_HARD, 7, 10, rec, 16) == URSULA_OK);
  ASSERT(buf_append(&unit_wal_recs, rec, sizeof(rec)) == URSULA_OK);
  ASSERT(unit_wal_sync(w) == URSULA_EIO);
  unit_fault_remove();
  ASSERT(wal_term(w) == 6 && wal_recover(w) == URSULA_OK);
  /* many segments later, the first ones compacted, and a truncation */
  ASSERT(unit_wal_fill(w, 11, 80, 3) == URSULA_OK);
  ASSERT(wal_save_snapshot(w, 60, 1, "snap:60", 7) == URSULA_OK);
  ASSERT(wal_compact(w, 60) == URSULA_OK && wal_first_index(w) > 10);
  ASSERT(wal_truncate_suffix(w, 70) == URSULA_OK);
  wal_close(w);
  w = unit_wal_open(&seen, NULL);
  ASSERT(w != NULL && wal_term(w) == 6 && wal_vote(w) == 3);
  ASSERT(w != NULL && wal_last_index(w) == 69 && seen.bad == 0);
  wal_close(w);
  unit_wal_rmdir();
}

/* A segment that holds HARD records only (votes, no entry) may pass the
** segment size: the next entry stays in it rather than roll to a segment
** of the same name, which would truncate it under the log (found by
** test/fuzz/wal.c; test/fuzz/regress/wal/roll-from-segment-without-entries). */
static void test_wal_state_only_segment(void) {
  struct unit_wal_seen seen;
  struct wal *w = unit_wal_new(100, 0, 1);
  int i;
  if (w == NULL) return;
  for (i = 1; i <= 4; i++) ASSERT(wal_save_state(w, (uint64_t)i, 0) == URSULA_OK);
  ASSERT(unit_wal_fill(w, 1, 3, 1) == URSULA_OK); /* 1 stays, 2 rolls */
  wal_close(w);
  w = unit_wal_open(&seen, NULL);
  ASSERT(w != NULL && wal_last_index(w) == 3 && seen.n == 3 && seen.bad == 0);
  ASSERT(w != NULL && wal_term(w) == 4);
  wal_close(w);
  unit_wal_rmdir();
}

/* ------------------------------------------------------------ crashes */

/* A crash injected through the fs table: the k-th mutating call
** (pwrite, sync, ftruncate, unlink, rename) and every call after it fail
** without doing anything, as if the process died just before it. */
static volatile int unit_crash_at, unit_crash_calls;

static int unit_crash_now(void) {
  int n = ++unit_crash_calls;
  return unit_crash_at > 0 && n >= unit_crash_at;
}
static ssize_t unit_crash_pwrite(int fd, const void *p, size_t n, off_t off) {
  if (unit_crash_now()) return errno = EIO, -1;
  return unit_wal_real.pwrite(fd, p, n, off);
}
static int unit_crash_sync(int fd) {
  if (unit_crash_now()) return errno = EIO, -1;
  return unit_wal_real.sync(fd);
}
static int unit_crash_ftruncate(int fd, off_t len) {
  if (unit_crash_now()) return errno = EIO, -1;
  return unit_wal_real.ftruncate(fd, len);
}
static int unit_crash_unlink(const char *path) {
  if (unit_crash_now()) return errno = EIO, -1;
  return unit_wal_real.unlink(path);
}
static int unit_crash_rename(const char *a, const char *b) {
  if (unit_crash_now()) return errno = EIO, -1;
  return unit_wal_real.rename(a, b);
}

static void unit_crash_install(int at) {
  unit_wal_real = *os_fs();
  unit_crash_at = at;
  unit_crash_calls = 0;
  os_fs()->pwrite = unit_crash_pwrite;
  os_fs()->sync = unit_crash_sync;
  os_fs()->ftruncate = unit_crash_ftruncate;
  os_fs()->unlink = unit_crash_unlink;
  os_fs()->rename = unit_crash_rename;
}

/* Build a log of 100 entries in 300-byte segments (hard state 4, 1) and
** a snapshot at 60; then run op(w) with a crash at its k-th mutating
** call; then replay with the real calls: it must open, keep entries
** 1..keep intact, end at or past keep, and keep the hard state.  Returns
** the number of mutating calls op made when no crash came (0 when k
** crashed it). */
static int unit_crash_case(int (*op)(struct wal *w), int k, uint64_t keep) {
  struct unit_wal_seen seen;
  struct wal *w;
  int calls;
  unit_wal_mkdir();
  w = unit_wal_open(&seen, NULL);
  if (w == NULL) return 0;
  wal_set_segment_bytes(w, 300);
  ASSERT(unit_wal_fill(w, 1, 100, 3) == URSULA_OK);
  ASSERT(wal_save_state(w, 4, 1) == URSULA_OK);
  ASSERT(wal_save_snapshot(w, 60, 1, "snap:60", 7) == URSULA_OK);
  unit_crash_install(k);
  op(w);
  calls = unit_crash_calls;
  unit_fault_remove();
  wal_close(w);
  if (unit_wal_replay_rc(&seen, NULL) != URSULA_OK) {
    printf("# crash at call %d: %s\n", k, unit_wal_err);
    unit_failed++;
  }
  ASSERT(seen.bad == 0 && seen.last >= keep);
  w = unit_wal_open(&seen, NULL);
  ASSERT(w != NULL && wal_term(w) == 4 && wal_vote(w) == 1);
  wal_close(w);
  unit_wal_rmdir();
  return calls;
}

static int unit_crash_truncate(struct wal *w) {
  return wal_truncate_suffix(w, 65);
}
static int unit_crash_compact(struct wal *w) {
  return wal_compact(w, 60);
}
static int unit_crash_snapshot(struct wal *w) {
  return wal_save_snapshot(w, 90, 1, "snap:90", 7);
}

/* A crash at every step of truncation, compaction and a snapshot leaves
** a log that opens, with everything before the change point intact. */
static void test_wal_crash_steps(void) {
  int k, n;
  n = unit_crash_case(unit_crash_truncate, 0, 64); /* count the steps */
  ASSERT(n >= 6);
  for (k = 1; k <= n + 1; k++) unit_crash_case(unit_crash_truncate, k, 64);
  n = unit_crash_case(unit_crash_compact, 0, 100);
  ASSERT(n >= 2);
  for (k = 1; k <= n + 1; k++) unit_crash_case(unit_crash_compact, k, 100);
  n = unit_crash_case(unit_crash_snapshot, 0, 100);
  ASSERT(n >= 3);
  for (k = 1; k <= n + 1; k++) unit_crash_case(unit_crash_snapshot, k, 100);
}

/* Replay starts after the snapshot; compaction drops what it covers. */
static void test_wal_snapshot(void) {
  struct unit_wal_seen seen;
  struct wal_stats st;
  struct wal *w;
  int before;
  w = unit_wal_new(300, 100, 4);
  if (w == NULL) return;
  ASSERT(wal_save_snapshot(w, 70, 1, "snap:70", 7) == URSULA_OK);
  ASSERT(wal_bytes_since_snapshot(w) == 0);
  before = unit_wal_count_segments();
  ASSERT(wal_compact(w, 70) == URSULA_OK);
  ASSERT(unit_wal_count_segments() < before);
  ASSERT(unit_wal_fill(w, 101, 110, 5) == URSULA_OK);
  ASSERT(wal_bytes_since_snapshot(w) > 0);
  wal_close(w);
  unit_wal_snap[0] = '\0';
  w = unit_wal_open(&seen, &st);
  ASSERT(strcmp(unit_wal_snap, "snap:70") == 0);
  ASSERT(st.snapshot_index == 70);
  ASSERT(seen.n == 40 && seen.first == 71 && seen.last == 110);
  ASSERT(seen.bad == 0 && st.entries == 40);
  ASSERT(w != NULL && wal_last_index(w) == 110);
  wal_close(w);
  unit_wal_rmdir();
}

/* ------------------------------------------------------------ review
** Cases found by a review that attacked the rules above; each failed
** before its fix. */

/* A zeroed page in the last segment with valid records after it is
** damage, however many records the page held. */
static void test_wal_zeroed_page(void) {
  struct unit_wal_seen seen;
  struct wal *w;
  char seg[256];
  unsigned char zeros[4096];
  off_t size, page;
  int fd;
  w = unit_wal_new(0, 240, 10);
  if (w == NULL) return;
  wal_close(w);
  unit_wal_last_segment(seg, sizeof(seg));
  size = unit_wal_file_size(seg);
  page = ((size - 600) / 4096 - 1) * 4096; /* whole page, 600+ bytes left */
  memset(zeros, 0, sizeof(zeros));
  fd = open(seg, O_WRONLY);
  ASSERT(fd >= 0 && pwrite(fd, zeros, sizeof(zeros), page) == 4096);
  if (fd >= 0) close(fd);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_ECORRUPT);
  ASSERT(unit_wal_file_size(seg) == size);
  unit_wal_rmdir();
}

/* "URSSNAP3" with its last bit flipped reads "URSSNAP2", format 2's
** magic: on a file whose tail adds up as format 3's, that is damage
** (ECORRUPT), not an older build's file (EINVAL, for a real format-2
** file, made here byte by byte as that build wrote it).  test/sim's seed
** 639 flipped that bit. */
static void test_wal_snapshot_magic_flip(void) {
  struct unit_wal_seen seen;
  struct wal *w;
  char path[256];
  unsigned char v2[32 + 40 + 16];
  int fd;
  w = unit_wal_new(300, 20, 4);
  if (w == NULL) return;
  ASSERT(wal_save_snapshot(w, 10, 1, "snap:10", 7) == URSULA_OK);
  wal_close(w);
  snprintf(path, sizeof(path), "%s/snapshot", unit_wal_dir);
  fd = open(path, O_WRONLY);
  ASSERT(fd >= 0 && pwrite(fd, "2", 1, 7) == 1);
  if (fd >= 0) close(fd);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_ECORRUPT);
  /* a format-2 file: header, a payload of 40 bytes, n, CRC32C, zero */
  memset(v2, 0, sizeof(v2));
  memcpy(v2, "URSSNAP2", 8);
  util_put64(v2 + 8, 10);
  util_put64(v2 + 16, 1);
  memset(v2 + 32, 'a', 40);
  util_put64(v2 + 72, 40);
  util_put32(v2 + 80, util_crc32c(0, v2, 80));
  fd = open(path, O_WRONLY | O_TRUNC);
  ASSERT(fd >= 0 && pwrite(fd, v2, sizeof(v2), 0) == (ssize_t)sizeof(v2));
  if (fd >= 0) close(fd);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_EINVAL);
  ASSERT(strstr(unit_wal_err, "snapshot format 2") != NULL);
  unit_wal_rmdir();
}

/* A snapshot in a later term than entries before it in the first segment
** replay reads: older terms there are not damage. */
static void test_wal_snapshot_term(void) {
  struct unit_wal_seen seen;
  struct wal *w;
  char p[64];
  uint64_t i, snap;
  for (snap = 51; snap <= 56; snap++) {
    unit_wal_mkdir();
    w = unit_wal_open(&seen, NULL);
    if (w == NULL) return;
    wal_set_segment_bytes(w, 300);
    for (i = 1; i <= 100; i++) {
      ASSERT(unit_wal_append(w, i <= 50 ? 1 : 2, i, p, unit_wal_payload(i, p)) ==
             URSULA_OK);
      if (i % 3 == 0) ASSERT(unit_wal_sync(w) == URSULA_OK);
    }
    ASSERT(unit_wal_sync(w) == URSULA_OK);
    ASSERT(wal_save_snapshot(w, snap, 2, "snap", 4) == URSULA_OK);
    wal_close(w);
    ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_OK && seen.last == 100);
    unit_wal_rmdir();
  }
}

/* Group commit pipelined: records framed while a batch syncs are not
** durable with it; a failed write of the next batch leaves the log at the
** durable batch, and wal_recover() brings it back. */
static void test_wal_pipeline(void) {
  struct unit_wal_seen seen;
  struct wal *w;
  struct buf out;
  char p[64];
  uint64_t i;
  int fd;
  memset(&out, 0, sizeof(out));
  w = unit_wal_new(0, 10, 10);
  if (w == NULL) return;
  for (i = 11; i <= 12; i++)
    ASSERT(unit_wal_append(w, 1, i, p, unit_wal_payload(i, p)) == URSULA_OK);
  ASSERT(wal_write(w, unit_wal_recs.ptr, unit_wal_recs.len) == URSULA_OK);
  unit_wal_recs.len = 0;
  fd = wal_flush_fd(w);
  for (i = 13; i <= 15; i++) /* framed during the sync */
    ASSERT(unit_wal_append(w, 1, i, p, unit_wal_payload(i, p)) == URSULA_OK);
  ASSERT(fd >= 0 && fsync(fd) == 0);
  ASSERT(wal_flush_done(w, 0) == URSULA_OK);
  ASSERT(wal_durable_index(w) == 12 && wal_last_index(w) == 15);
  ASSERT(wal_read(w, 14, 0, 1, &out) == URSULA_ENOTFOUND);
  unit_fault_install();
  unit_fault_pwrite_errno = EIO;
  ASSERT(wal_write(w, unit_wal_recs.ptr, unit_wal_recs.len) == URSULA_EIO);
  unit_wal_recs.len = 0;
  unit_fault_remove();
  ASSERT(wal_last_index(w) == 12);
  ASSERT(wal_recover(w) == URSULA_OK && !wal_failed(w));
  ASSERT(unit_wal_fill(w, 13, 20, 4) == URSULA_OK);
  wal_close(w);
  w = unit_wal_open(&seen, NULL);
  ASSERT(seen.n == 20 && seen.last == 20 && seen.bad == 0);
  wal_close(w);
  buf_free(&out);
  unit_wal_rmdir();
}

/* wal_save_state whose write or sync fails: the old pair stays in force,
** the log fails (wal_recover cuts the half-written record), and a restart
** opens. */
static void test_wal_save_state_fails(void) {
  struct unit_wal_seen seen;
  struct wal *w;
  int k;
  for (k = 0; k < 2; k++) {
    unit_wal_mkdir();
    w = unit_wal_open(&seen, NULL);
    if (w == NULL) return;
    ASSERT(wal_save_state(w, 3, 1) == URSULA_OK);
    wal_set_segment_bytes(w, 300);
    ASSERT(unit_wal_fill(w, 1, 5, 5) == URSULA_OK);
    unit_fault_install();
    if (k == 0) unit_fault_pwrite_errno = EIO;
    else unit_fault_sync_errno = EIO;
    ASSERT(wal_save_state(w, 4, 2) == URSULA_EIO);
    unit_fault_remove();
    ASSERT(wal_term(w) == 3 && wal_vote(w) == 1 && wal_failed(w));
    ASSERT(wal_recover(w) == URSULA_OK);
    ASSERT(unit_wal_fill(w, 6, 12, 2) == URSULA_OK); /* rolls segments */
    wal_close(w);
    w = unit_wal_open(&seen, NULL);
    ASSERT(w != NULL && seen.last == 12 && wal_term(w) == 3);
    wal_close(w);
    unit_wal_rmdir();
  }
}

/* A crash during a segment roll, at each step: the restart seals what the
** crash left unsealed, so that losing the newer segment later is refused,
** not taken for the end of the log. */
static void test_wal_roll_crash(void) {
  struct unit_wal_seen seen;
  struct wal *w;
  char p[64], last[256];
  int k, two = 0;
  for (k = 1; k <= 8; k++) {
    w = unit_wal_new(300, 6, 6);
    if (w == NULL) return;
    unit_crash_install(k);
    unit_wal_append(w, 1, 7, p, unit_wal_payload(7, p));
    unit_fault_remove();
    unit_wal_recs.len = 0;
    wal_close(w); /* the process is gone */
    w = unit_wal_open(&seen, NULL);
    if (w == NULL) return;
    ASSERT(seen.last == 6);
    wal_set_segment_bytes(w, 1 << 20);
    ASSERT(unit_wal_fill(w, 7, 40, 2) == URSULA_OK);
    wal_close(w);
    if (unit_wal_count_segments() == 2) { /* the crash left two */
      unit_wal_last_segment(last, sizeof(last));
      ASSERT(unlink(last) == 0);
      ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_ECORRUPT);
      two++;
    }
    unit_wal_rmdir();
  }
  ASSERT(two > 0); /* some crash point left the new segment unsealed */
}

/* A roll whose SEAL cannot be synced leaves a log that opens. */
static volatile int unit_sync_calls, unit_sync_fail_at;
static int unit_counting_sync(int fd) {
  if (++unit_sync_calls == unit_sync_fail_at) {
    errno = EIO;
    return -1;
  }
  return unit_wal_real.sync(fd);
}
static void test_wal_seal_sync_fails(void) {
  struct unit_wal_seen seen;
  struct wal *w;
  char p[64];
  w = unit_wal_new(300, 6, 6);
  if (w == NULL) return;
  unit_wal_real = *os_fs();
  os_fs()->sync = unit_counting_sync;
  unit_sync_calls = 0;
  unit_sync_fail_at = 3; /* the new segment, the directory, the SEAL */
  ASSERT(unit_wal_append(w, 1, 7, p, unit_wal_payload(7, p)) != URSULA_OK);
  unit_fault_remove();
  unit_wal_recs.len = 0;
  wal_close(w);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_OK && seen.last == 6);
  unit_wal_rmdir();
}

/* Truncating at the first entry of a segment; and a truncation that fails
** half-way stops appends (they could land anywhere) until a restart. */
static void test_wal_truncate_edges(void) {
  struct unit_wal_seen seen;
  struct wal *w;
  char p[64];
  uint64_t f;
  w = unit_wal_new(300, 100, 3);
  if (w == NULL) return;
  f = w->segs[w->n_segs - 3].first_index;
  ASSERT(wal_truncate_suffix(w, f) == URSULA_OK && wal_last_index(w) == f - 1);
  ASSERT(unit_wal_fill(w, f, f + 5, 3) == URSULA_OK);
  wal_close(w);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_OK && seen.last == f + 5);
  w = unit_wal_open(&seen, NULL);
  if (w == NULL) return;
  unit_crash_install(4); /* a step in the middle fails */
  ASSERT(wal_truncate_suffix(w, 40) != URSULA_OK);
  unit_fault_remove();
  ASSERT(wal_failed(w) && wal_recover(w) != URSULA_OK);
  ASSERT(unit_wal_append(w, 1, wal_last_index(w) + 1, p, 1) == URSULA_EIO);
  unit_wal_recs.len = 0;
  wal_close(w);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_OK && seen.last >= 39);
  unit_wal_rmdir();
}

/* ------------------------------------------------------------ pieces,
** images and installs */

/* The bytes of the piece (index, off) that unit_wal_image puts: 5 bytes
** derived from both, so a piece read from the wrong place shows. */
static void unit_wal_piece_bytes(uint64_t index, uint64_t off, char *out) {
  int k;
  for (k = 0; k < 5; k++) out[k] = (char)('A' + (index * 3 + off + k) % 26);
}

/* The entries whose bytes an image of entry n carries: 3, 10, n - 1. */
static const uint64_t unit_wal_piece_at[3] = {3, 10, 0};

/* An image of entry n, term t ("img:n" and three pieces), made by
** wal_image_begin in a directory of its own: its file's bytes into img. */
static int unit_wal_image(uint64_t n, uint64_t t, struct buf *img) {
  char dir[64], path[96], payload[32], cmd[128], p[5];
  struct wal_snap_writer sw;
  struct wal_stats st;
  struct wal *w = NULL;
  int rc, i;
  strcpy(dir, "/tmp/ursula-unit-img-XXXXXX");
  if (mkdtemp(dir) == NULL) return URSULA_EIO;
  rc = wal_open(&w, NULL, dir, 0, unit_wal_err);
  if (rc == URSULA_OK)
    rc = wal_replay(w, NULL, NULL, NULL, NULL, &st, unit_wal_err);
  if (rc == URSULA_OK) rc = wal_image_begin(w, &sw, n, t);
  snprintf(payload, sizeof(payload), "img:%llu", (unsigned long long)n);
  if (rc == URSULA_OK) rc = wal_snap_put(&sw, payload, strlen(payload));
  for (i = 0; i < 3 && rc == URSULA_OK; i++) {
    uint64_t at = unit_wal_piece_at[i] ? unit_wal_piece_at[i] : n - 1;
    unit_wal_piece_bytes(at, 2, p);
    rc = wal_snap_piece(&sw, at, 2, p, 5);
  }
  if (rc == URSULA_OK) rc = wal_snap_commit(w, &sw);
  snprintf(path, sizeof(path), "%s/image", dir);
  if (rc == URSULA_OK) rc = wal_read_path(os_fs(), path, img);
  wal_close(w);
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0) printf("# could not remove %s\n", dir);
  return rc;
}

/* Install img into w, in parts, the middle part sent twice. */
static int unit_wal_install(struct wal *w, const struct buf *img) {
  struct wal_snap_writer sw;
  size_t third = img->len / 3;
  int rc = wal_install_begin(w, &sw);
  if (rc != URSULA_OK) return rc;
  rc = wal_install_put(&sw, 0, img->ptr, third);
  if (rc == URSULA_OK)
    rc = wal_install_put(&sw, third, img->ptr + third, third);
  if (rc == URSULA_OK) /* sent again: the same bytes at the same place */
    rc = wal_install_put(&sw, third, img->ptr + third, third);
  if (rc == URSULA_OK)
    rc = wal_install_put(&sw, 2 * third, img->ptr + 2 * third,
                         img->len - 2 * third);
  if (rc != URSULA_OK) {
    wal_snap_abort(w, &sw);
    return rc;
  }
  return wal_install_commit(w, &sw, unit_wal_err);
}

/* Whether the three pieces of an image of entry n read back right. */
static int unit_wal_pieces_ok(struct wal *w, uint64_t n) {
  struct buf b;
  char want[5];
  int i, ok = 1;
  memset(&b, 0, sizeof(b));
  for (i = 0; i < 3; i++) {
    uint64_t at = unit_wal_piece_at[i] ? unit_wal_piece_at[i] : n - 1;
    unit_wal_piece_bytes(at, 2, want);
    b.len = 0;
    if (wal_read(w, at, 3, 3, &b) != URSULA_OK || b.len != 3 ||
        memcmp(b.ptr, want + 1, 3) != 0)
      ok = 0; /* a part of the piece, from inside it */
  }
  buf_free(&b);
  return ok;
}

/* What a replay after an install saw: entries of any term. */
static int unit_wal_any(void *arg, const struct wal_entry *e) {
  struct unit_wal_seen *s = (struct unit_wal_seen *)arg;
  char want[64];
  size_t n = unit_wal_payload(e->index, want);
  if (s->n == 0) s->first = e->index;
  if (e->len != n || memcmp(e->data, want, n) != 0) s->bad++;
  s->n++;
  s->last = e->index;
  return URSULA_OK;
}

static struct wal *unit_wal_reopen_any(struct unit_wal_seen *seen) {
  struct wal *w = NULL;
  struct wal_stats st;
  memset(seen, 0, sizeof(*seen));
  unit_wal_err[0] = '\0';
  unit_wal_snap[0] = '\0';
  if (wal_open(&w, NULL, unit_wal_dir, 1, unit_wal_err) != URSULA_OK ||
      wal_replay(w, unit_wal_restore, unit_wal_any, seen, NULL, &st,
                 unit_wal_err) != URSULA_OK) {
    printf("# reopen: %s\n", unit_wal_err);
    wal_close(w);
    return NULL;
  }
  return w;
}

/* Entries from..to of term t, synced. */
static int unit_wal_fill_term(struct wal *w, uint64_t from, uint64_t to,
                              uint64_t t) {
  char p[64];
  uint64_t i;
  int rc;
  for (i = from; i <= to; i++)
    if ((rc = unit_wal_append(w, t, i, p, unit_wal_payload(i, p))) !=
        URSULA_OK)
      return rc;
  return unit_wal_sync(w);
}

/* A snapshot's pieces: written in order (out of order refused), read back
** whole or in part, each read checked (a flipped bit: an error, never
** wrong bytes), a damaged directory refused at start. */
static void test_wal_snapshot_pieces(void) {
  struct wal_snap_writer sw;
  struct unit_wal_seen seen;
  struct buf b;
  char path[96], p[5];
  struct wal *w = unit_wal_new(300, 100, 4);
  int fd;
  if (w == NULL) return;
  memset(&b, 0, sizeof(b));
  ASSERT(wal_snap_begin(w, &sw, 90, 1) == URSULA_OK);
  ASSERT(wal_snap_put(&sw, "snap:90", 7) == URSULA_OK);
  unit_wal_piece_bytes(10, 2, p);
  ASSERT(wal_snap_piece(&sw, 10, 2, p, 5) == URSULA_OK);
  ASSERT(wal_snap_piece(&sw, 10, 4, p, 5) == URSULA_EINVAL); /* overlaps */
  ASSERT(wal_snap_piece(&sw, 3, 2, p, 5) == URSULA_EINVAL);  /* goes back */
  ASSERT(wal_snap_piece(&sw, 91, 2, p, 5) == URSULA_EINVAL); /* past it */
  ASSERT(wal_snap_put(&sw, "x", 1) == URSULA_EINVAL); /* payload is done */
  unit_wal_piece_bytes(89, 2, p);
  ASSERT(wal_snap_piece(&sw, 89, 2, p, 5) == URSULA_OK);
  ASSERT(wal_snap_commit(w, &sw) == URSULA_OK);
  ASSERT(wal_has_piece(w, 10, 2, 5) && wal_has_piece(w, 10, 3, 4) &&
         !wal_has_piece(w, 10, 3, 5) && !wal_has_piece(w, 11, 2, 1));
  ASSERT(wal_compact(w, 90) == URSULA_OK);
  wal_close(w);
  w = unit_wal_reopen_any(&seen);
  ASSERT(w != NULL && strcmp(unit_wal_snap, "snap:90") == 0 &&
         seen.first == 91 && seen.last == 100);
  if (w != NULL) {
    unit_wal_piece_bytes(10, 2, p);
    ASSERT(wal_read(w, 10, 2, 5, &b) == URSULA_OK && b.len == 5 &&
           memcmp(b.ptr, p, 5) == 0);
    b.len = 0;
    unit_wal_piece_bytes(89, 2, p);
    ASSERT(wal_read(w, 89, 4, 2, &b) == URSULA_OK && b.len == 2 &&
           memcmp(b.ptr, p + 2, 2) == 0);
    wal_close(w);
  }
  /* a flipped bit in the first piece's bytes (right after the payload) */
  snprintf(path, sizeof(path), "%s/snapshot", unit_wal_dir);
  fd = open(path, O_RDWR);
  ASSERT(fd >= 0 && pread(fd, p, 1, 32 + 7) == 1);
  p[0] ^= 4;
  ASSERT(fd >= 0 && pwrite(fd, p, 1, 32 + 7) == 1);
  w = unit_wal_reopen_any(&seen); /* the payload and directory are intact */
  ASSERT(w != NULL);
  if (w != NULL) {
    b.len = 0;
    ASSERT(wal_read(w, 10, 2, 5, &b) == URSULA_ECORRUPT && b.len == 0);
    ASSERT(wal_read(w, 89, 2, 5, &b) == URSULA_OK && b.len == 5);
    wal_close(w);
  }
  /* a flipped bit in the directory: the snapshot is refused */
  ASSERT(fd >= 0 && pread(fd, p, 1, 32 + 7 + 10 + 8) == 1);
  p[0] ^= 1;
  ASSERT(fd >= 0 && pwrite(fd, p, 1, 32 + 7 + 10 + 8) == 1);
  if (fd >= 0) close(fd);
  ASSERT(unit_wal_replay_rc(&seen, NULL) == URSULA_ECORRUPT &&
         unit_wal_names(path, "damaged"));
  buf_free(&b);
  unit_wal_rmdir();
}

/* An install into a log of entries 1..100 (term 1, hard state 4/1) with a
** snapshot at 60: behind it (n = 150), in conflict with it (n = 80, term
** 2: Raft's rule is that the log after a disagreeing entry goes), and in
** agreement (n = 90, term 1: the log after it stays). */
static struct wal *unit_wal_install_base(void) {
  struct wal *w = unit_wal_new(300, 100, 4);
  if (w == NULL) return NULL;
  ASSERT(wal_save_state(w, 4, 1) == URSULA_OK);
  ASSERT(wal_save_snapshot(w, 60, 1, "snap:60", 7) == URSULA_OK);
  return w;
}

static void test_wal_install(void) {
  static const struct {
    uint64_t n, t, last; /* the image, and the log's last entry after */
  } cases[] = {{150, 2, 150}, {80, 2, 80}, {90, 1, 100}};
  struct unit_wal_seen seen;
  struct buf img;
  struct wal *w;
  size_t c;
  uint64_t term = 0;
  memset(&img, 0, sizeof(img));
  for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    char want[32];
    ASSERT(unit_wal_image(cases[c].n, cases[c].t, &img) == URSULA_OK);
    if ((w = unit_wal_install_base()) == NULL) continue;
    if (unit_wal_install(w, &img) != URSULA_OK) {
      printf("# install of %llu: %s\n", (unsigned long long)cases[c].n,
             unit_wal_err);
      unit_failed++;
    }
    ASSERT(wal_last_index(w) == cases[c].last);
    ASSERT(wal_term_at(w, cases[c].n, &term) == URSULA_OK &&
           term == cases[c].t);
    ASSERT(unit_wal_pieces_ok(w, cases[c].n));
    ASSERT(unit_wal_fill_term(w, cases[c].last + 1, cases[c].last + 5, 2) ==
           URSULA_OK);
    wal_close(w);
    w = unit_wal_reopen_any(&seen);
    snprintf(want, sizeof(want), "img:%llu", (unsigned long long)cases[c].n);
    ASSERT(w != NULL && strcmp(unit_wal_snap, want) == 0 && seen.bad == 0);
    ASSERT(seen.first == cases[c].n + 1 && seen.last == cases[c].last + 5);
    if (w != NULL) {
      ASSERT(wal_term(w) == 4 && wal_vote(w) == 1); /* the hard state */
      ASSERT(unit_wal_pieces_ok(w, cases[c].n));
      /* replaced logs are gone: nothing but the new log is left */
      ASSERT(cases[c].last == 100 || wal_first_index(w) == cases[c].n + 1);
      wal_close(w);
    }
    unit_wal_rmdir();
  }
  /* refused, with nothing changed: a damaged image, an image not after
  ** the snapshot, a local snapshot (not made for install) */
  ASSERT(unit_wal_image(150, 2, &img) == URSULA_OK);
  if ((w = unit_wal_install_base()) != NULL) {
    img.ptr[40] ^= 1; /* a bit of the payload */
    ASSERT(unit_wal_install(w, &img) == URSULA_ECORRUPT);
    img.ptr[40] ^= 1;
    img.ptr[img.len - 40] ^= 1; /* a bit of the directory */
    ASSERT(unit_wal_install(w, &img) == URSULA_ECORRUPT);
    img.ptr[img.len - 40] ^= 1;
    img.ptr[32 + 7] ^= 1; /* a bit of the first piece */
    ASSERT(unit_wal_install(w, &img) == URSULA_ECORRUPT);
    ASSERT(wal_last_index(w) == 100 && !wal_failed(w));
    wal_close(w);
    w = unit_wal_reopen_any(&seen);
    ASSERT(w != NULL && strcmp(unit_wal_snap, "snap:60") == 0 &&
           seen.last == 100);
    if (w != NULL) {
      ASSERT(unit_wal_image(50, 1, &img) == URSULA_OK);
      ASSERT(unit_wal_install(w, &img) == URSULA_EINVAL);
      wal_close(w);
    }
    {
      char path[96];
      snprintf(path, sizeof(path), "%s/snapshot", unit_wal_dir);
      w = unit_wal_reopen_any(&seen);
      ASSERT(w != NULL && wal_read_path(os_fs(), path, &img) == URSULA_OK);
      if (w != NULL) {
        ASSERT(unit_wal_install(w, &img) == URSULA_ECORRUPT); /* no flag */
        wal_close(w);
      }
    }
  }
  buf_free(&img);
  unit_wal_rmdir();
}

/* A crash at every step of an install (through the fs table) leaves a log
** that opens, as it was or as installed, never in between: the old
** snapshot with entries up to 100 (or, for a conflict, the cut at n), or
** the image with its pieces and the log going on at n + 1.  Returns the
** steps of a run with no crash. */
static int unit_crash_install_case(uint64_t n, uint64_t t, int k) {
  struct unit_wal_seen seen;
  struct buf img;
  struct wal *w;
  char want[32];
  int calls, ok;
  memset(&img, 0, sizeof(img));
  ASSERT(unit_wal_image(n, t, &img) == URSULA_OK);
  if ((w = unit_wal_install_base()) == NULL) return 0;
  unit_crash_install(k);
  unit_wal_install(w, &img);
  calls = unit_crash_calls;
  unit_fault_remove();
  wal_close(w);
  buf_free(&img);
  w = unit_wal_reopen_any(&seen);
  snprintf(want, sizeof(want), "img:%llu", (unsigned long long)n);
  ok = w != NULL && seen.bad == 0 && wal_term(w) == 4 && wal_vote(w) == 1;
  if (ok && strcmp(unit_wal_snap, "snap:60") == 0) /* as it was */
    ok = seen.first == 61 && seen.last >= (n - 1 < 100 ? n - 1 : 100) &&
         seen.last <= 100;
  else if (ok) /* as installed */
    ok = strcmp(unit_wal_snap, want) == 0 && seen.n == 0 &&
         wal_last_index(w) == n && unit_wal_pieces_ok(w, n);
  if (!ok)
    printf("# install of %llu, crash at call %d: snapshot \"%s\", entries "
           "%llu..%llu, last %llu, pieces %d, bad %llu, hard %llu/%llu; %s\n",
           (unsigned long long)n, k, unit_wal_snap,
           (unsigned long long)seen.first, (unsigned long long)seen.last,
           (unsigned long long)(w ? wal_last_index(w) : 0),
           w ? unit_wal_pieces_ok(w, n) : -1, (unsigned long long)seen.bad,
           (unsigned long long)(w ? wal_term(w) : 0),
           (unsigned long long)(w ? wal_vote(w) : 0), unit_wal_err);
  ASSERT(ok);
  if (w != NULL) { /* and the log takes entries where it ends */
    uint64_t next = wal_last_index(w) + 1;
    ASSERT(unit_wal_fill_term(w, next, next + 2, t) == URSULA_OK);
    wal_close(w);
    w = unit_wal_reopen_any(&seen);
    ASSERT(w != NULL && seen.last == next + 2);
    wal_close(w);
  }
  unit_wal_rmdir();
  return calls;
}

static void test_wal_install_crash_steps(void) {
  int k, n;
  n = unit_crash_install_case(150, 2, 0);
  ASSERT(n >= 5);
  for (k = 1; k <= n + 1; k++) unit_crash_install_case(150, 2, k);
  n = unit_crash_install_case(80, 2, 0);
  ASSERT(n >= 8);
  for (k = 1; k <= n + 1; k++) unit_crash_install_case(80, 2, k);
}

/* A crash while the segment right after the snapshot was created: replay
** skips the segments the snapshot covers, but the one before the damaged
** new one holds the latest hard state and ends where it ended: it must be
** read, kept intact, and sealed (not overwritten from byte 0). */
static void test_wal_roll_after_snapshot(void) {
  struct unit_wal_seen seen;
  struct buf b;
  char path[96], p[64];
  struct wal *w = unit_wal_new(300, 50, 4);
  uint64_t f;
  if (w == NULL) return;
  memset(&b, 0, sizeof(b));
  ASSERT(wal_save_state(w, 4, 1) == URSULA_OK);
  ASSERT(unit_wal_fill(w, 51, 100, 4) == URSULA_OK);
  f = w->segs[w->n_segs - 1].first_index; /* the last segment's first */
  ASSERT(f > 60 && w->n_segs > 3);
  ASSERT(wal_save_snapshot(w, f - 1, 1, "snap", 4) == URSULA_OK);
  wal_close(w);
  /* as if the roll to f crashed: f's header torn, f - 1's SEAL not yet
  ** written (a SEAL record is 40 bytes) */
  snprintf(path, sizeof(path), "%s/%020llu.wal", unit_wal_dir,
           (unsigned long long)f);
  ASSERT(truncate(path, 10) == 0);
  {
    struct stat sb;
    uint64_t e = 0;
    size_t k;
    char prev[96];
    /* the segment that holds f - 1 */
    for (k = 1; k < f; k++) {
      snprintf(prev, sizeof(prev), "%s/%020llu.wal", unit_wal_dir,
               (unsigned long long)(f - k));
      if (stat(prev, &sb) == 0) {
        e = f - k;
        break;
      }
    }
    ASSERT(e > 0 && truncate(prev, sb.st_size - 40) == 0);
  }
  w = unit_wal_open(&seen, NULL);
  ASSERT(w != NULL);
  if (w != NULL) {
    ASSERT(wal_term(w) == 4 && wal_vote(w) == 1);
    ASSERT(wal_last_index(w) == f - 1);
    ASSERT(wal_read(w, f - 1, 0, unit_wal_payload(f - 1, p), &b) ==
           URSULA_OK);
    ASSERT(unit_wal_fill(w, f, f + 3, 2) == URSULA_OK);
    wal_close(w);
  }
  w = unit_wal_open(&seen, NULL); /* and it opens again, all there */
  ASSERT(w != NULL && seen.first == f && seen.last == f + 3 && seen.bad == 0);
  if (w != NULL) {
    ASSERT(wal_term(w) == 4 && wal_vote(w) == 1);
    b.len = 0;
    ASSERT(wal_read(w, f - 2, 0, unit_wal_payload(f - 2, p), &b) ==
           URSULA_OK && memcmp(b.ptr, p, b.len) == 0);
    wal_close(w);
  }
  buf_free(&b);
  unit_wal_rmdir();
}

static const struct unit_case unit_wal_cases[] = {
    {"wal_roundtrip", test_wal_roundtrip},
    {"wal_segments", test_wal_segments},
    {"wal_torn_tail", test_wal_torn_tail},
    {"wal_bit_flip_tail", test_wal_bit_flip_tail},
    {"wal_bit_flip_middle", test_wal_bit_flip_middle},
    {"wal_short_writes", test_wal_short_writes},
    {"wal_fault_eio", test_wal_fault_eio},
    {"wal_fault_enospc", test_wal_fault_enospc},
    {"wal_fault_sync", test_wal_fault_sync},
    {"wal_recover_read_ahead", test_wal_recover_read_ahead},
    {"wal_truncate_suffix", test_wal_truncate_suffix},
    {"wal_compact", test_wal_compact},
    {"wal_state", test_wal_state},
    {"wal_state_only_segment", test_wal_state_only_segment},
    {"wal_bit_flip_last_segment", test_wal_bit_flip_last_segment},
    {"wal_missing_files", test_wal_missing_files},
    {"wal_read_checks", test_wal_read_checks},
    {"wal_v1_refused", test_wal_v1_refused},
    {"wal_crash_steps", test_wal_crash_steps},
    {"wal_zeroed_page", test_wal_zeroed_page},
    {"wal_snapshot_magic_flip", test_wal_snapshot_magic_flip},
    {"wal_snapshot_term", test_wal_snapshot_term},
    {"wal_pipeline", test_wal_pipeline},
    {"wal_save_state_fails", test_wal_save_state_fails},
    {"wal_roll_crash", test_wal_roll_crash},
    {"wal_seal_sync_fails", test_wal_seal_sync_fails},
    {"wal_truncate_edges", test_wal_truncate_edges},
    {"wal_snapshot", test_wal_snapshot},
    {"wal_snapshot_pieces", test_wal_snapshot_pieces},
    {"wal_install", test_wal_install},
    {"wal_install_crash_steps", test_wal_install_crash_steps},
    {"wal_roll_after_snapshot", test_wal_roll_after_snapshot},
    {NULL, NULL}};
