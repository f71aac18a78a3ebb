/* unit_journal.c -- journal.c: the redo writes a group's appends again to
** its files, in order, and only those after its last MARK; a torn tail
** is left out, a damaged record with valid ones after it is refused
** (naming the journal and the byte); a record naming a file that does
** not exist is refused; a failed write or sync breaks the journal until
** a reset; a MARK drops the group's records not yet written. */

/* Two groups' "segment" files under unit_wal_dir, named as journal_redo
** is told: DIR/gN-SEG. */
static int unit_jr_path(void *arg, uint32_t group, uint64_t seg, char *out,
                        size_t cap) {
  (void)arg;
  if (group > 1) return URSULA_EINVAL;
  snprintf(out, cap, "%s/g%u-%llu", unit_wal_dir, (unsigned)group,
           (unsigned long long)seg);
  return URSULA_OK;
}

static void unit_jr_file(uint32_t group, uint64_t seg, const char *text) {
  char path[128];
  FILE *f;
  unit_jr_path(NULL, group, seg, path, sizeof(path));
  f = fopen(path, "wb");
  if (f == NULL) {
    unit_failed++;
    return;
  }
  fputs(text, f);
  fclose(f);
}

/* The file's bytes, NUL-terminated, into out (cap bytes): how many. */
static size_t unit_jr_read(uint32_t group, uint64_t seg, char *out,
                           size_t cap) {
  char path[128];
  size_t n = 0;
  FILE *f;
  unit_jr_path(NULL, group, seg, path, sizeof(path));
  out[0] = '\0';
  if ((f = fopen(path, "rb")) == NULL) return 0;
  n = fread(out, 1, cap - 1, f);
  out[n] = '\0';
  fclose(f);
  return n;
}

/* Add a WRITE and write and sync it, as a core does. */
static int unit_jr_put(struct journal *j, uint32_t group, uint64_t seg,
                       uint64_t off, const char *text) {
  int fd, rc = journal_add(j, group, seg, off, text, strlen(text));
  if (rc != URSULA_OK) return rc;
  if ((rc = journal_write(j, &fd)) != URSULA_OK) return rc;
  return journal_flush_done(j, fd >= 0 && os_fs()->sync(fd) != 0 ? errno : 0);
}

static void unit_jr_journal_path(char *out, size_t cap) {
  snprintf(out, cap, "%s/journal-000-00000000000000000001", unit_wal_dir);
}

static void test_journal_redo(void) {
  struct journal *j = NULL;
  struct journal_stats st;
  char err[URSULA_ERRMSG_LEN], got[256], path[128];
  unit_wal_mkdir();
  unit_jr_file(0, 1, "....");
  unit_jr_file(1, 5, "");
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  /* the group files never got these bytes (as if lost in a crash) */
  ASSERT(unit_jr_put(j, 0, 1, 4, "abc") == URSULA_OK);
  ASSERT(unit_jr_put(j, 1, 5, 0, "xyz") == URSULA_OK);
  ASSERT(unit_jr_put(j, 0, 1, 7, "def") == URSULA_OK);
  journal_close(j);
  ASSERT(journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err) ==
         URSULA_OK);
  unit_jr_read(0, 1, got, sizeof(got));
  ASSERT(strcmp(got, "....abcdef") == 0);
  unit_jr_read(1, 5, got, sizeof(got));
  ASSERT(strcmp(got, "xyz") == 0);
  ASSERT(st.journals == 1 && st.writes == 3 && st.bytes == 9);
  ASSERT(st.cut_bytes == 0);
  unit_jr_journal_path(path, sizeof(path));
  ASSERT(access(path, F_OK) != 0); /* removed once the files are synced */
  /* nothing to redo: nothing happens */
  ASSERT(journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err) ==
         URSULA_OK);
  ASSERT(st.journals == 0 && st.writes == 0);
  unit_wal_rmdir();
}

/* Rule 3: a group's records before its last MARK are not redone (the
** change after the MARK may have made their offsets mean other bytes);
** another group's are. */
static void test_journal_mark(void) {
  struct journal *j = NULL;
  struct journal_stats st;
  char err[URSULA_ERRMSG_LEN], got[256];
  int fd;
  unit_wal_mkdir();
  unit_jr_file(0, 1, "CUT");
  unit_jr_file(1, 1, "");
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  ASSERT(unit_jr_put(j, 0, 1, 0, "old-bytes") == URSULA_OK);
  ASSERT(unit_jr_put(j, 1, 1, 0, "one") == URSULA_OK);
  ASSERT(journal_mark(j, 0) == URSULA_OK);
  ASSERT(unit_jr_put(j, 0, 1, 3, "+new") == URSULA_OK);
  /* a MARK drops the group's records not yet written, no other's */
  ASSERT(journal_add(j, 0, 1, 7, "dropped", 7) == URSULA_OK);
  ASSERT(journal_add(j, 1, 1, 3, "+two", 4) == URSULA_OK);
  ASSERT(journal_mark(j, 0) == URSULA_OK);
  ASSERT(journal_write(j, &fd) == URSULA_OK && fd >= 0);
  ASSERT(journal_flush_done(j, 0) == URSULA_OK);
  journal_close(j);
  ASSERT(journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err) ==
         URSULA_OK);
  unit_jr_read(0, 1, got, sizeof(got));
  ASSERT(strcmp(got, "CUT") == 0); /* all of group 0's before a MARK */
  unit_jr_read(1, 1, got, sizeof(got));
  ASSERT(strcmp(got, "one+two") == 0);
  ASSERT(st.writes == 2);
  unit_wal_rmdir();
}

/* Write raw bytes at byte at of generation gen of core 0's journal. */
static void unit_jr_gen_write(int gen, long at, const void *p, size_t n) {
  char path[128];
  FILE *f;
  snprintf(path, sizeof(path), "%s/journal-000-%020d", unit_wal_dir, gen);
  if ((f = fopen(path, "r+b")) == NULL) {
    unit_failed++;
    return;
  }
  fseek(f, at, SEEK_SET);
  fwrite(p, 1, n, f);
  fclose(f);
}

/* Write raw bytes into the journal file (generation 1) at byte at (in
** its zeroed room, after its records: where the next write would go). */
static void unit_jr_write_at(long at, const void *p, size_t n) {
  unit_jr_gen_write(1, at, p, n);
}

/* Flip one bit at byte `at` of the journal file. */
static void unit_jr_flip(long at) {
  char path[128];
  FILE *f;
  int c;
  unit_jr_journal_path(path, sizeof(path));
  if ((f = fopen(path, "r+b")) == NULL) {
    unit_failed++;
    return;
  }
  fseek(f, at, SEEK_SET);
  c = fgetc(f);
  fseek(f, at, SEEK_SET);
  fputc(c ^ 0x10, f);
  fclose(f);
}

/* Rule 2: the end of the journal torn by a crash is left out; a bad
** record with a valid one after it is damage, refused, and the journal is
** kept. */
static void test_journal_torn_and_damage(void) {
  struct journal *j = NULL;
  struct journal_stats st;
  char err[URSULA_ERRMSG_LEN], got[256], path[128];
  unsigned char torn[40];
  unit_wal_mkdir();
  unit_jr_file(0, 1, "");
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  ASSERT(unit_jr_put(j, 0, 1, 0, "first") == URSULA_OK);  /* at byte 32 */
  ASSERT(unit_jr_put(j, 0, 1, 5, "second") == URSULA_OK); /* at byte 69 */
  journal_close(j);
  /* a torn last write: a header that promises more than is there */
  memset(torn, 'x', sizeof(torn));
  memset(torn, 0, 32);
  util_put32(torn + 4, 100);
  torn[8] = 0x4A;
  unit_jr_write_at(69 + 32 + 6, torn, sizeof(torn));
  ASSERT(journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err) ==
         URSULA_OK);
  ASSERT(st.cut_bytes == sizeof(torn) && st.writes == 2);
  unit_jr_read(0, 1, got, sizeof(got));
  ASSERT(strcmp(got, "firstsecond") == 0);

  /* a flipped bit in the first record, the second one valid after it */
  unit_jr_file(0, 1, "");
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  ASSERT(unit_jr_put(j, 0, 1, 0, "first") == URSULA_OK);
  ASSERT(unit_jr_put(j, 0, 1, 5, "second") == URSULA_OK);
  journal_close(j);
  unit_jr_flip(32 + 32 + 2); /* in "first" */
  err[0] = '\0';
  ASSERT(journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err) ==
         URSULA_ECORRUPT);
  ASSERT(strstr(err, "journal-000") != NULL);
  ASSERT(strstr(err, "byte 32") != NULL);
  unit_jr_journal_path(path, sizeof(path));
  ASSERT(access(path, F_OK) == 0); /* kept: it holds acknowledged appends */
  unit_jr_read(0, 1, got, sizeof(got));
  ASSERT(strcmp(got, "") == 0); /* nothing redone from a damaged journal */

  /* the same flip in the last record: a torn tail, cut */
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  ASSERT(unit_jr_put(j, 0, 1, 0, "first") == URSULA_OK);
  ASSERT(unit_jr_put(j, 0, 1, 5, "second") == URSULA_OK);
  journal_close(j);
  unit_jr_flip(69 + 32 + 2); /* in "second" */
  ASSERT(journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err) ==
         URSULA_OK);
  ASSERT(st.writes == 1 && st.cut_bytes == 32 + 6);
  unit_jr_read(0, 1, got, sizeof(got));
  ASSERT(strcmp(got, "first") == 0);

  /* a bad header is never taken for an empty journal */
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  journal_close(j);
  unit_jr_flip(3);
  ASSERT(journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err) ==
         URSULA_ECORRUPT);
  ASSERT(strstr(err, "header") != NULL);
  unit_wal_rmdir();
}

/* A record that names a file that is not there, or a group the server
** does not have, is refused. */
static void test_journal_missing_file(void) {
  struct journal *j = NULL;
  struct journal_stats st;
  char err[URSULA_ERRMSG_LEN], path[128];
  unit_wal_mkdir();
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  ASSERT(unit_jr_put(j, 0, 7, 0, "x") == URSULA_OK);
  journal_close(j);
  err[0] = '\0';
  ASSERT(journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err) ==
         URSULA_ECORRUPT);
  unit_jr_path(NULL, 0, 7, path, sizeof(path));
  ASSERT(strstr(err, path) != NULL);
  unit_jr_journal_path(path, sizeof(path));
  unlink(path);
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  ASSERT(unit_jr_put(j, 9, 1, 0, "x") == URSULA_OK);
  journal_close(j);
  ASSERT(journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err) ==
         URSULA_ECORRUPT);
  ASSERT(strstr(err, "group 9") != NULL);
  unit_wal_rmdir();
}

/* Rule 4: after a failed write or sync the journal takes nothing (what
** its file holds is not trusted) until a reset starts a new file; a
** stuck journal not even then. */
static void test_journal_broken(void) {
  struct journal *j = NULL;
  struct journal_stats st;
  char err[URSULA_ERRMSG_LEN], got[256];
  int fd;
  unit_wal_mkdir();
  unit_jr_file(0, 1, "");
  unit_fault_install();
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  ASSERT(unit_jr_put(j, 0, 1, 0, "kept") == URSULA_OK);
  ASSERT(journal_add(j, 0, 1, 4, "lost", 4) == URSULA_OK);
  ASSERT(journal_write(j, &fd) == URSULA_OK && fd >= 0);
  ASSERT(journal_in_flight(j));
  ASSERT(journal_write(j, &fd) == URSULA_EINVAL); /* one at a time */
  ASSERT(journal_flush_done(j, EIO) == URSULA_EIO);
  ASSERT(journal_state(j) == JOURNAL_BROKEN);
  ASSERT(journal_add(j, 0, 1, 4, "more", 4) == URSULA_EIO);
  ASSERT(journal_mark(j, 0) == URSULA_EIO);
  ASSERT(journal_write(j, &fd) == URSULA_EIO);
  /* a failed write breaks it too, and drops what was framed */
  ASSERT(journal_reset(j) == URSULA_OK);
  ASSERT(journal_state(j) == JOURNAL_OK);
  ASSERT(journal_bytes(j) == 32);
  ASSERT(journal_add(j, 0, 1, 4, "anew", 4) == URSULA_OK);
  unit_fault_pwrite_errno = EIO;
  ASSERT(journal_write(j, &fd) == URSULA_EIO);
  unit_fault_pwrite_errno = 0;
  ASSERT(journal_state(j) == JOURNAL_BROKEN);
  ASSERT(journal_reset(j) == URSULA_OK);
  ASSERT(unit_jr_put(j, 0, 1, 4, "anew") == URSULA_OK);
  journal_stuck(j);
  ASSERT(journal_reset(j) == URSULA_EIO);
  ASSERT(journal_add(j, 0, 1, 8, "x", 1) == URSULA_EIO);
  journal_close(j);
  unit_fault_remove();
  /* the redo sees only the new file: "kept" and "lost" were in the old */
  ASSERT(journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err) ==
         URSULA_OK);
  ASSERT(st.writes == 1);
  ASSERT(unit_jr_read(0, 1, got, sizeof(got)) == 8);
  ASSERT(memcmp(got, "\0\0\0\0anew", 8) == 0);
  unit_wal_rmdir();
}

/* CRASH IMAGES.  Each sync of the journal's file is a moment a crash may
** come.  As wal.c assumes, a write reaches the disk as a prefix of it, on
** its own: of the writes made since the file's last sync, the last one
** may be there whole and the ones before it not at all (zeros where the
** file grew past them, the synced bytes where it did not).
** unit_jr_crash_sync keeps that image at each sync: the file as of its
** last sync, its current size, and only the last write since. */
#define UNIT_JR_IMG (JOURNAL_ROOM_BYTES + 16384)
static int unit_jr_crash_fd = -1;
static unsigned char unit_jr_synced[UNIT_JR_IMG]; /* as of the last sync */
static size_t unit_jr_synced_len;
static unsigned char unit_jr_last[65536]; /* the last write since */
static size_t unit_jr_last_len;
static uint64_t unit_jr_last_off;
static unsigned char unit_jr_img[4][UNIT_JR_IMG];
static size_t unit_jr_img_len[4];
static int unit_jr_n_img;

static ssize_t unit_jr_crash_pwrite(int fd, const void *p, size_t n,
                                    off_t off) {
  if (fd == unit_jr_crash_fd) {
    if (n > sizeof(unit_jr_last)) unit_failed++; /* widen the model */
    unit_jr_last_len = n < sizeof(unit_jr_last) ? n : sizeof(unit_jr_last);
    memcpy(unit_jr_last, p, unit_jr_last_len);
    unit_jr_last_off = (uint64_t)off;
  }
  return unit_wal_real.pwrite(fd, p, n, off);
}

static int unit_jr_crash_sync(int fd) {
  struct stat st;
  size_t size;
  int rc;
  if (fd == unit_jr_crash_fd && fstat(fd, &st) == 0 &&
      (uint64_t)st.st_size <= UNIT_JR_IMG) {
    size = (size_t)st.st_size;
    if (unit_jr_n_img < 4) {
      unsigned char *img = unit_jr_img[unit_jr_n_img];
      memset(img, 0, size);
      memcpy(img, unit_jr_synced,
             unit_jr_synced_len < size ? unit_jr_synced_len : size);
      if (unit_jr_last_len > 0 && unit_jr_last_off + unit_jr_last_len <= size)
        memcpy(img + unit_jr_last_off, unit_jr_last, unit_jr_last_len);
      unit_jr_img_len[unit_jr_n_img++] = size;
    }
    rc = unit_wal_real.sync(fd);
    if (rc == 0) {
      if (pread(fd, unit_jr_synced, size, 0) != (ssize_t)size) unit_failed++;
      unit_jr_synced_len = size;
      unit_jr_last_len = 0;
    }
    return rc;
  }
  if (fd == unit_jr_crash_fd) unit_failed++; /* larger than the model */
  return unit_wal_real.sync(fd);
}

/* Review: rule 2 with a MARK.  A MARK (a cut, compaction, install or
** recovery of one group: the sweep, or a commit heard from peers) may be
** made while the core's journal write for other groups is still being
** synced on a syncer thread.  The MARK was written after that write and
** synced: two writes at the end not yet durable, and a crash could keep
** the MARK and lose the write before it -- a bad record with a valid one
** after it, which the redo refuses as damage, so a crash left a server
** that does not start.  Every crash image must redo. */
static void test_journal_mark_in_flight(void) {
  struct journal *j = NULL;
  struct journal_stats st;
  char err[URSULA_ERRMSG_LEN], path[128];
  static char big[3000];
  int fd, i, rc;
  unit_wal_mkdir();
  unit_jr_file(0, 1, "");
  unit_jr_file(1, 1, "");
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  if (j == NULL) return;
  unit_fault_install();
  os_fs()->sync = unit_jr_crash_sync;
  os_fs()->pwrite = unit_jr_crash_pwrite;
  unit_jr_crash_fd = j->fd;
  unit_jr_synced_len = 32; /* the header: synced */
  if (pread(j->fd, unit_jr_synced, 32, 0) != 32) unit_failed++;
  unit_jr_last_len = 0;
  unit_jr_n_img = 0;
  memset(big, 'x', sizeof(big));
  /* group 1's batch: written, its sync out */
  ASSERT(journal_add(j, 1, 1, 0, big, sizeof(big)) == URSULA_OK);
  ASSERT(journal_write(j, &fd) == URSULA_OK && fd >= 0);
  /* meanwhile group 0 compacts: its MARK */
  ASSERT(journal_mark(j, 0) == URSULA_OK);
  /* the flight's sync comes back */
  ASSERT(journal_flush_done(j, os_fs()->sync(fd) != 0 ? errno : 0) ==
         URSULA_OK);
  unit_fault_remove();
  unit_jr_crash_fd = -1;
  journal_close(j);
  ASSERT(unit_jr_n_img >= 2);
  unit_jr_journal_path(path, sizeof(path));
  for (i = 0; i < unit_jr_n_img; i++) {
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
      unit_failed++;
      break;
    }
    fwrite(unit_jr_img[i], 1, unit_jr_img_len[i], f);
    fclose(f);
    err[0] = '\0';
    rc = journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err);
    if (rc != URSULA_OK) printf("# crash at sync %d: %s\n", i + 1, err);
    ASSERT(rc == URSULA_OK); /* a crash's tail is cut, never refused */
  }
  unit_wal_rmdir();
}

/* Review: a checkpoint whose directory sync fails after the rename of
** the new generation: the rename may not be durable, so appends taken
** into the new file could be in no journal a redo finds (their log files
** are synced only at the next checkpoint), and lost in a power cut.
** Whatever the journal takes after such a failure, a redo must have. */
static void test_journal_reset_dir_sync(void) {
  struct journal *j = NULL;
  struct journal_stats st;
  char err[URSULA_ERRMSG_LEN], got[256];
  int rc;
  unit_wal_mkdir();
  unit_jr_file(0, 1, "");
  unit_fault_install();
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  if (j == NULL) {
    unit_fault_remove();
    return;
  }
  ASSERT(unit_jr_put(j, 0, 1, 0, "aa") == URSULA_OK);
  unit_jr_file(0, 1, "aa"); /* the checkpoint synced the log file */
  unit_fault_syncdir_errno = EIO;
  ASSERT(journal_rotate(j) != URSULA_OK); /* renamed, the directory not synced */
  unit_fault_syncdir_errno = 0;
  rc = unit_jr_put(j, 0, 1, 2, "bb");
  if (rc != URSULA_OK) { /* refused: the next checkpoint mends it */
    ASSERT(journal_reset(j) == URSULA_OK);
    ASSERT(unit_jr_put(j, 0, 1, 2, "bb") == URSULA_OK);
  }
  journal_close(j); /* a crash: the log file never got "bb" */
  unit_fault_remove();
  ASSERT(journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err) ==
         URSULA_OK);
  unit_jr_read(0, 1, got, sizeof(got));
  ASSERT(strcmp(got, "aabb") == 0);
  unit_wal_rmdir();
}

/* ------------------------------------------------------------ with wal.c */

/* Group 0 is the log in unit_wal_dir. */
static int unit_jr_wal_path(void *arg, uint32_t group, uint64_t seg,
                            char *out, size_t cap) {
  (void)arg;
  if (group != 0) return URSULA_EINVAL;
  wal_segment_file(unit_wal_dir, seg, out, cap);
  return URSULA_OK;
}

/* Write what was framed, then make it durable as a core does: one
** journal write and sync, reported to the log. */
static int unit_jr_wal_sync(struct wal *w, struct journal *j) {
  int fd, rc = wal_write(w, unit_wal_recs.ptr, unit_wal_recs.len);
  unit_wal_recs.len = 0;
  if (rc != URSULA_OK) return rc;
  if ((rc = journal_write(j, &fd)) != URSULA_OK) return rc;
  rc = journal_flush_done(j, fd >= 0 && os_fs()->sync(fd) != 0 ? errno : 0);
  return wal_flush_done(w, rc == URSULA_OK ? 0 : EIO);
}

/* Append entries from..to of term `term` through the journal, 3 a batch. */
static int unit_jr_wal_fill(struct wal *w, struct journal *j, uint64_t term,
                            uint64_t from, uint64_t to) {
  char p[64];
  uint64_t i;
  int rc;
  for (i = from; i <= to; i++) {
    size_t n = unit_wal_payload(i, p);
    if ((rc = unit_wal_append(w, term, i, p, n)) != URSULA_OK) return rc;
    if ((i - from + 1) % 3 == 0 && (rc = unit_jr_wal_sync(w, j)) != URSULA_OK)
      return rc;
  }
  return unit_jr_wal_sync(w, j);
}

/* What a replay saw: the term of each entry (0: none), payloads checked. */
struct unit_jr_seen {
  uint64_t term[128];
  uint64_t n, bad;
};

static int unit_jr_seen_entry(void *arg, const struct wal_entry *e) {
  struct unit_jr_seen *s = (struct unit_jr_seen *)arg;
  char want[64];
  size_t n = unit_wal_payload(e->index, want);
  if (e->index >= 128 || e->len != n || memcmp(e->data, want, n) != 0)
    s->bad++;
  else
    s->term[e->index] = e->term;
  s->n++;
  return URSULA_OK;
}

/* Redo the journal, then replay the log into *seen.  URSULA_OK or the
** first error. */
static int unit_jr_redo_replay(struct unit_jr_seen *seen) {
  struct journal_stats st;
  struct wal_stats ws;
  struct wal *w = NULL;
  char err[URSULA_ERRMSG_LEN];
  int rc;
  memset(seen, 0, sizeof(*seen));
  err[0] = '\0';
  rc = journal_redo(NULL, unit_wal_dir, unit_jr_wal_path, NULL, &st, err);
  if (rc == URSULA_OK && (rc = wal_open(&w, NULL, unit_wal_dir, 1, err)) ==
                             URSULA_OK)
    rc = wal_replay(w, unit_wal_restore, unit_jr_seen_entry, seen,
                    &unit_wal_scratch, &ws, err);
  if (rc != URSULA_OK) printf("# redo and replay: %s\n", err);
  wal_close(w);
  return rc;
}

/* Rule 3 in the log: a suffix cut (the file holding the cut is replaced)
** is preceded by a MARK, so the redo does not write the old entries'
** bytes over the new file.  The files are intact here: a right redo
** changes nothing. */
static void test_journal_wal_truncate(void) {
  struct unit_wal_seen seen0;
  struct unit_jr_seen seen;
  struct journal *j = NULL;
  struct wal *w;
  char err[URSULA_ERRMSG_LEN];
  uint64_t i;
  unit_wal_mkdir();
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  w = unit_wal_open(&seen0, NULL);
  if (w == NULL || j == NULL) return;
  wal_set_journal(w, j, 0);
  ASSERT(unit_jr_wal_fill(w, j, 1, 1, 30) == URSULA_OK);
  ASSERT(wal_truncate_suffix(w, 21) == URSULA_OK);
  ASSERT(unit_jr_wal_fill(w, j, 2, 21, 25) == URSULA_OK);
  wal_close(w);
  journal_close(j);
  ASSERT(unit_jr_redo_replay(&seen) == URSULA_OK);
  ASSERT(seen.n == 25 && seen.bad == 0);
  for (i = 1; i <= 25; i++) ASSERT(seen.term[i] == (i <= 20 ? 1u : 2u));
  unit_wal_rmdir();
}

/* ... and compaction: the segments it removes are named by records
** before its MARK, which the redo does not look for. */
static void test_journal_wal_compact(void) {
  struct unit_wal_seen seen0;
  struct unit_jr_seen seen;
  struct journal *j = NULL;
  struct wal *w;
  char err[URSULA_ERRMSG_LEN];
  uint64_t i;
  int before;
  unit_wal_mkdir();
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  w = unit_wal_open(&seen0, NULL);
  if (w == NULL || j == NULL) return;
  wal_set_journal(w, j, 0);
  wal_set_segment_bytes(w, 300);
  ASSERT(unit_jr_wal_fill(w, j, 1, 1, 100) == URSULA_OK);
  before = unit_wal_count_segments();
  ASSERT(wal_save_snapshot(w, 50, 1, "snap:50", 7) == URSULA_OK);
  ASSERT(wal_compact(w, 50) == URSULA_OK);
  ASSERT(unit_wal_count_segments() < before);
  ASSERT(unit_jr_wal_fill(w, j, 1, 101, 110) == URSULA_OK);
  wal_close(w);
  journal_close(j);
  ASSERT(unit_jr_redo_replay(&seen) == URSULA_OK);
  ASSERT(seen.bad == 0);
  for (i = 51; i <= 110; i++) ASSERT(seen.term[i] == 1);
  unit_wal_rmdir();
}

/* Review: a failed sync of a log file whose appends are durable only in
** the journal.  After a failed fsync the kernel may have dropped the
** file's dirty pages, and the next fsync of it succeeds without them (the
** error is reported once): the journal then holds the only durable copy
** of the appends written to the file lazily, and must stay until a
** restart redoes it -- as a checkpoint's failed sync leaves it stuck.
** Before, a failed sync in a MARK's barrier (here a compaction), or of a
** HARD record (wal_save_state), let a later checkpoint start the journal
** anew, or wal_recover's MARK skip those appends: acknowledged appends
** gone after a power cut.  Lost writes (unit_fault_lose_wal) stand for
** the dropped pages. */
static void test_journal_lazy_sync_failure(void) {
  struct unit_wal_seen seen0;
  struct unit_jr_seen seen;
  struct journal *j = NULL;
  struct wal *w;
  char err[URSULA_ERRMSG_LEN];
  uint64_t i;
  int round;
  for (round = 0; round < 2; round++) {
    unit_wal_mkdir();
    unit_fault_install(); /* before the log's files are opened */
    ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
    w = unit_wal_open(&seen0, NULL);
    if (w == NULL || j == NULL) {
      unit_fault_remove();
      return;
    }
    wal_set_journal(w, j, 0);
    wal_set_segment_bytes(w, 300);
    ASSERT(unit_jr_wal_fill(w, j, 1, 1, 60) == URSULA_OK);
    wal_set_segment_bytes(w, 1 << 20); /* no roll from here on */
    ASSERT(wal_save_snapshot(w, 30, 1, "snap:30", 7) == URSULA_OK);
    unit_fault_lose_wal = 1;
    /* acknowledged: the journal's sync worked */
    ASSERT(unit_jr_wal_fill(w, j, 1, 61, 70) == URSULA_OK);
    if (round == 0)
      ASSERT(wal_compact(w, 30) != URSULA_OK); /* the barrier's sync fails */
    else
      ASSERT(wal_save_state(w, 2, 1) != URSULA_OK); /* the HARD's sync */
    unit_fault_lose_wal = 0; /* the disk answers again */
    /* what the core does next: the sweep's recovery, a checkpoint */
    wal_recover(w);
    if (wal_sync_lazy(w) == 0) journal_reset(j);
    wal_close(w);
    journal_close(j);
    unit_fault_remove();
    ASSERT(unit_jr_redo_replay(&seen) == URSULA_OK);
    ASSERT(seen.bad == 0);
    for (i = 31; i <= 70; i++) {
      if (seen.term[i] != 1) printf("# round %d: entry %llu lost\n", round,
                                    (unsigned long long)i);
      ASSERT(seen.term[i] == 1);
      if (seen.term[i] != 1) break;
    }
    unit_wal_rmdir();
  }
}

/* Checkpoint generations (rule 4): a redo reads a core's generations in
** order, as one journal -- a group's MARK in the new one skips its
** records in the old one -- and only the newest may end torn. */
static void test_journal_generations(void) {
  struct journal *j = NULL;
  struct journal_stats st;
  char err[URSULA_ERRMSG_LEN], got[256];
  unsigned char torn[40];
  FILE *f;
  unit_wal_mkdir();
  unit_jr_file(0, 1, "");
  unit_jr_file(1, 1, "CC");
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  ASSERT(unit_jr_put(j, 0, 1, 0, "aa") == URSULA_OK);
  ASSERT(unit_jr_put(j, 1, 1, 0, "xx") == URSULA_OK);
  ASSERT(journal_rotate(j) == URSULA_OK);
  ASSERT(journal_rotate(j) == URSULA_EINVAL); /* one at a time */
  ASSERT(unit_jr_put(j, 0, 1, 2, "bb") == URSULA_OK);
  ASSERT(journal_mark(j, 1) == URSULA_OK);
  ASSERT(unit_jr_put(j, 1, 1, 2, "yy") == URSULA_OK);
  journal_close(j); /* a crash before the old generation went */
  ASSERT(journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err) ==
         URSULA_OK);
  ASSERT(st.journals == 2 && st.writes == 3);
  unit_jr_read(0, 1, got, sizeof(got));
  ASSERT(strcmp(got, "aabb") == 0);
  unit_jr_read(1, 1, got, sizeof(got));
  ASSERT(strcmp(got, "CCyy") == 0); /* "xx", before the MARK: not redone */

  /* once the log files are synced, the old generation goes */
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  ASSERT(unit_jr_put(j, 0, 1, 4, "cc") == URSULA_OK);
  ASSERT(journal_rotate(j) == URSULA_OK);
  ASSERT(journal_drop_old(j) == URSULA_OK);
  ASSERT(access(unit_wal_dir, F_OK) == 0);
  ASSERT(unit_jr_put(j, 0, 1, 6, "dd") == URSULA_OK);
  ASSERT(journal_rotate(j) == URSULA_OK); /* (gen 3; gen 2 stays) */
  journal_close(j);
  /* a torn end in an older generation is damage: it was whole when the
  ** next began */
  memset(torn, 0, sizeof(torn));
  util_put32(torn + 4, 100);
  torn[8] = 0x4A;
  unit_jr_gen_write(2, 32 + 34, torn, sizeof(torn)); /* after "dd" */
  err[0] = '\0';
  ASSERT(journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err) ==
         URSULA_ECORRUPT);
  ASSERT(strstr(err, "journal-000-00000000000000000002") != NULL);
  ASSERT(strstr(err, "older") != NULL);

  /* ROOM: the last records of an older generation read back as zeros
  ** (a lost write of the disk): damage, never room -- the next
  ** generation's header says where they end (PREV) */
  unit_wal_rmdir();
  unit_wal_mkdir();
  unit_jr_file(0, 1, "");
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  ASSERT(unit_jr_put(j, 0, 1, 0, "aa") == URSULA_OK); /* bytes 32..66 */
  ASSERT(unit_jr_put(j, 0, 1, 2, "bb") == URSULA_OK); /* bytes 66..100 */
  ASSERT(journal_rotate(j) == URSULA_OK);
  ASSERT(unit_jr_put(j, 0, 1, 4, "cc") == URSULA_OK);
  journal_close(j);
  memset(torn, 0, sizeof(torn));
  unit_jr_gen_write(1, 66, torn, 34);
  err[0] = '\0';
  ASSERT(journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err) ==
         URSULA_ECORRUPT);
  ASSERT(strstr(err, "journal-000-00000000000000000001") != NULL);
  ASSERT(strstr(err, "byte 66") != NULL && strstr(err, "says 100") != NULL);
  unit_jr_read(0, 1, got, sizeof(got));
  ASSERT(strcmp(got, "") == 0); /* nothing redone */
  (void)f;
  unit_wal_rmdir();
}

/* Review: a checkpoint takes a descriptor of each log file with lazy
** appends (wal_lazy_open; a dup then), which clears the file's lazy flag:
** its sync is the syncer's now.  If a sync of the file on the core (a
** MARK's barrier, a HARD record, a roll's SEAL) failed before the
** syncer's, wal_lazy_failed saw no lazy appends and left the journal as
** it was; a kernel that reports a failed write-back once (to one open
** file; the dup shared the log's) let the syncer's sync then succeed
** without the dropped pages, and the old generation, the only durable
** copy of those appends, was removed.  Lost writes (unit_fault_lose_wal)
** stand for the dropped pages. */
static void test_journal_checkpoint_lazy_cleared(void) {
  struct unit_wal_seen seen0;
  struct unit_jr_seen seen;
  struct journal *j = NULL;
  struct wal *w;
  char err[URSULA_ERRMSG_LEN];
  uint64_t i;
  int round, fd;
  for (round = 0; round < 2; round++) {
    unit_wal_mkdir();
    unit_fault_install();
    ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
    w = unit_wal_open(&seen0, NULL);
    if (w == NULL || j == NULL) {
      unit_fault_remove();
      return;
    }
    wal_set_journal(w, j, 0);
    wal_set_segment_bytes(w, 300);
    ASSERT(unit_jr_wal_fill(w, j, 1, 1, 60) == URSULA_OK);
    wal_set_segment_bytes(w, 1 << 20); /* no roll from here on */
    ASSERT(wal_save_snapshot(w, 30, 1, "snap:30", 7) == URSULA_OK);
    unit_fault_lose_wal = 1;
    /* acknowledged: the journal's sync worked */
    ASSERT(unit_jr_wal_fill(w, j, 1, 61, 70) == URSULA_OK);
    /* a checkpoint: the new generation, the file's descriptor for the
    ** syncer */
    ASSERT(journal_rotate(j) == URSULA_OK);
    fd = wal_lazy_open(w);
    ASSERT(fd >= 0);
    /* meanwhile, on the core, a sync of the file fails */
    if (round == 0)
      ASSERT(wal_compact(w, 30) != URSULA_OK); /* the barrier's */
    else
      ASSERT(wal_save_state(w, 2, 1) != URSULA_OK); /* the HARD's */
    unit_fault_lose_wal = 0; /* reported once: the syncer's sync works */
    if (fd >= 0) {
      ASSERT(os_fs()->sync(fd) == 0);
      os_fs()->close(fd);
    }
    /* the job is back (server_journal_checkpointed) */
    if (journal_state(j) != JOURNAL_STUCK) journal_drop_old(j);
    wal_close(w);
    journal_close(j);
    unit_fault_remove();
    ASSERT(unit_jr_redo_replay(&seen) == URSULA_OK);
    ASSERT(seen.bad == 0);
    for (i = 31; i <= 70; i++) {
      if (seen.term[i] != 1) printf("# round %d: entry %llu lost\n", round,
                                    (unsigned long long)i);
      ASSERT(seen.term[i] == 1);
      if (seen.term[i] != 1) break;
    }
    unit_wal_rmdir();
  }
}

/* Review: the reverse order.  The checkpoint's sync of a log file fails
** on the syncer (a failed write-back, its pages dropped), and before the
** job is back on the core, a change of the group's files (a compaction,
** a recovery) syncs the file on the core and makes its MARK.  With a dup
** (before), the core's descriptor shared the syncer's open file, which
** had reported the error: its sync succeeded, the MARK went into the new
** generation, and the restart's redo (the journal stuck once the job was
** back) skipped the group's records before it -- acknowledged appends
** gone.  The write-back error is modelled as Linux reports it
** (unit_fault_wb_error: once per open file). */
static void test_journal_checkpoint_mark_after_failure(void) {
  struct unit_wal_seen seen0;
  struct unit_jr_seen seen;
  struct journal *j = NULL;
  struct wal *w;
  char err[URSULA_ERRMSG_LEN], path[256];
  uint64_t i;
  int round, fd;
  for (round = 0; round < 2; round++) {
    unit_wal_mkdir();
    unit_fault_install();
    ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
    w = unit_wal_open(&seen0, NULL);
    if (w == NULL || j == NULL) {
      unit_fault_remove();
      return;
    }
    wal_set_journal(w, j, 0);
    wal_set_segment_bytes(w, 300);
    ASSERT(unit_jr_wal_fill(w, j, 1, 1, 60) == URSULA_OK);
    wal_set_segment_bytes(w, 1 << 20); /* no roll from here on */
    ASSERT(wal_save_snapshot(w, 30, 1, "snap:30", 7) == URSULA_OK);
    unit_fault_lose_wal = 1; /* the pages the write-back will drop */
    ASSERT(unit_jr_wal_fill(w, j, 1, 61, 70) == URSULA_OK); /* acked */
    unit_fault_lose_wal = 0;
    /* a checkpoint: the new generation, the file's descriptor for the
    ** syncer, whose sync meets the failed write-back */
    ASSERT(journal_rotate(j) == URSULA_OK);
    fd = wal_lazy_open(w);
    ASSERT(fd >= 0);
    unit_wal_last_segment(path, sizeof(path));
    unit_fault_wb_error(path);
    if (fd >= 0) {
      ASSERT(os_fs()->sync(fd) != 0);
      os_fs()->close(fd);
    }
    /* the job is not back yet; on the core, a change of the files */
    if (round == 0) {
      wal_compact(w, 30);
    } else { /* a failed write, and the recovery of the log */
      unit_fault_pwrite_errno = EIO;
      ASSERT(unit_jr_wal_fill(w, j, 1, 71, 71) != URSULA_OK);
      unit_fault_pwrite_errno = 0;
      wal_recover(w);
    }
    /* the job is back: stuck (server_journal_checkpointed) */
    journal_stuck(j);
    wal_close(w);
    journal_close(j);
    unit_fault_remove();
    ASSERT(unit_jr_redo_replay(&seen) == URSULA_OK);
    ASSERT(seen.bad == 0);
    for (i = 31; i <= 70; i++) {
      if (seen.term[i] != 1) printf("# round %d: entry %llu lost\n", round,
                                    (unsigned long long)i);
      ASSERT(seen.term[i] == 1);
      if (seen.term[i] != 1) break;
    }
    unit_wal_rmdir();
  }
}

/* Review: a stuck journal acknowledges a write whose own sync worked --
** but not one whose sync failed meanwhile.  A MARK made while the write's
** sync is out syncs it first (rule 2); if that sync fails the journal is
** broken, and the syncer's sync of the same file then succeeds (the
** error was reported once).  A failed sync of a log file on the core
** (wal_lazy_failed) then made the journal stuck, which forgot it was
** broken: journal_flush_done acknowledged the write, whose pages the
** failed sync may have dropped -- lost in a power cut. */
static void test_journal_stuck_after_broken(void) {
  struct journal *j = NULL;
  struct journal_stats st;
  char err[URSULA_ERRMSG_LEN], got[256], path[128];
  int fd = -1, rc;
  unit_wal_mkdir();
  unit_jr_file(0, 1, "");
  unit_jr_file(1, 1, "");
  unit_fault_install();
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  if (j == NULL) {
    unit_fault_remove();
    return;
  }
  /* group 1's batch: written, its sync out */
  ASSERT(journal_add(j, 1, 1, 0, "flight", 6) == URSULA_OK);
  ASSERT(journal_write(j, &fd) == URSULA_OK && fd >= 0);
  /* group 0's MARK syncs that write first: the sync fails */
  unit_fault_sync_errno = EIO;
  ASSERT(journal_mark(j, 0) == URSULA_EIO);
  unit_fault_sync_errno = 0;
  ASSERT(journal_state(j) == JOURNAL_BROKEN);
  /* a log file's sync fails on the core: stuck */
  journal_stuck(j);
  /* the syncer's sync of the write is back, without an error */
  rc = journal_flush_done(j, fd >= 0 && os_fs()->sync(fd) != 0 ? errno : 0);
  ASSERT(rc == URSULA_EIO);
  journal_close(j);
  unit_fault_remove();
  /* a power cut: the pages the failed sync dropped are not on the disk */
  unit_jr_journal_path(path, sizeof(path));
  ASSERT(truncate(path, 32) == 0);
  ASSERT(journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err) ==
         URSULA_OK);
  unit_jr_read(1, 1, got, sizeof(got));
  if (rc == URSULA_OK) ASSERT(strcmp(got, "flight") == 0); /* acknowledged */
  unit_wal_rmdir();
}

/* Review: a journal left by the build before generations (one file per
** core, DIR/journal-CCC, the same format), found after a crash by this
** one, was not a journal's name to it: not redone, never removed, and
** the acknowledged appends it held were lost (after a power cut). */
static void test_journal_previous_name(void) {
  struct journal *j = NULL;
  struct journal_stats st;
  char err[URSULA_ERRMSG_LEN], got[256], path[128], old[128];
  unit_wal_mkdir();
  unit_jr_file(0, 1, "");
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  ASSERT(unit_jr_put(j, 0, 1, 0, "acked") == URSULA_OK);
  journal_close(j);
  unit_jr_journal_path(path, sizeof(path));
  snprintf(old, sizeof(old), "%s/journal-000", unit_wal_dir);
  ASSERT(rename(path, old) == 0);
  ASSERT(journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err) ==
         URSULA_OK);
  ASSERT(st.journals == 1 && st.writes == 1);
  unit_jr_read(0, 1, got, sizeof(got));
  ASSERT(strcmp(got, "acked") == 0);
  ASSERT(access(old, F_OK) != 0);
  unit_wal_rmdir();
}

/* The journal file's size in bytes (-1: none). */
static long unit_jr_size(void) {
  char path[128];
  struct stat st;
  unit_jr_journal_path(path, sizeof(path));
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* ROOM (journal.c): the file grows by JOURNAL_ROOM_BYTES of zeros at a
** time, so that most syncs are of a file whose size did not change; the
** zeros after the records are neither redone nor a torn tail, and do not
** hide damage: a valid record after them is refused (rule 2). */
static void test_journal_room(void) {
  struct journal *j = NULL;
  struct journal_stats st;
  char err[URSULA_ERRMSG_LEN], got[256];
  static char big[JOURNAL_ROOM_BYTES];
  unsigned char rec[32 + 5];
  FILE *f;
  long room = JOURNAL_ROOM_BYTES;
  int i;
  unit_wal_mkdir();
  unit_jr_file(0, 1, "");
  unit_jr_file(1, 1, "");
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  ASSERT(unit_jr_size() == 32); /* the header alone */
  ASSERT(unit_jr_put(j, 0, 1, 0, "first") == URSULA_OK);
  ASSERT(unit_jr_size() == room);
  for (i = 0; i < 10; i++)
    ASSERT(unit_jr_put(j, 0, 1, 5 + (uint64_t)i, "+") == URSULA_OK);
  ASSERT(unit_jr_size() == room); /* the same size through ten syncs */
  ASSERT(journal_mark(j, 1) == URSULA_OK);
  ASSERT(unit_jr_size() == room);
  ASSERT(journal_bytes(j) == 32 + 37 + 10 * 33 + 32); /* records only */
  /* a write past the room: zeros up to the next multiple after it */
  memset(big, 'b', sizeof(big));
  ASSERT(journal_add(j, 1, 1, 0, big, sizeof(big)) == URSULA_OK);
  ASSERT(unit_jr_put(j, 1, 1, sizeof(big), "!") == URSULA_OK);
  ASSERT(unit_jr_size() == 2 * room); /* the end is below 2 * room */
  journal_close(j);
  ASSERT(journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err) ==
         URSULA_OK);
  ASSERT(st.writes == 13 && st.cut_bytes == 0);
  unit_jr_read(0, 1, got, sizeof(got));
  ASSERT(strcmp(got, "first++++++++++") == 0);
  ASSERT(unit_jr_read(1, 1, got, sizeof(got)) == sizeof(got) - 1);
  ASSERT(got[0] == 'b');

  /* a valid record far into the room, after the zeros: damage */
  unit_jr_file(0, 1, "");
  ASSERT(journal_create(&j, NULL, unit_wal_dir, 0, err) == URSULA_OK);
  ASSERT(unit_jr_put(j, 0, 1, 0, "first") == URSULA_OK); /* bytes 32..69 */
  journal_close(j);
  unit_jr_journal_path(got, sizeof(got));
  if ((f = fopen(got, "rb")) != NULL) {
    ASSERT(fseek(f, 32, SEEK_SET) == 0 && fread(rec, 1, sizeof(rec), f) ==
                                              sizeof(rec));
    fclose(f);
  }
  unit_jr_write_at(room - 64, rec, sizeof(rec)); /* room >= 4096 */
  err[0] = '\0';
  ASSERT(journal_redo(NULL, unit_wal_dir, unit_jr_path, NULL, &st, err) ==
         URSULA_ECORRUPT);
  ASSERT(strstr(err, "byte 69") != NULL);
  unit_wal_rmdir();
}

static const struct unit_case unit_journal_cases[] = {
    {"journal_wal_truncate", test_journal_wal_truncate},
    {"journal_generations", test_journal_generations},
    {"journal_wal_compact", test_journal_wal_compact},
    {"journal_redo", test_journal_redo},
    {"journal_room", test_journal_room},
    {"journal_mark", test_journal_mark},
    {"journal_torn_and_damage", test_journal_torn_and_damage},
    {"journal_missing_file", test_journal_missing_file},
    {"journal_broken", test_journal_broken},
    {"journal_mark_in_flight", test_journal_mark_in_flight},
    {"journal_lazy_sync_failure", test_journal_lazy_sync_failure},
    {"journal_reset_dir_sync", test_journal_reset_dir_sync},
    {"journal_checkpoint_lazy_cleared", test_journal_checkpoint_lazy_cleared},
    {"journal_checkpoint_mark_after_failure",
     test_journal_checkpoint_mark_after_failure},
    {"journal_stuck_after_broken", test_journal_stuck_after_broken},
    {"journal_previous_name", test_journal_previous_name},
    {NULL, NULL}};
