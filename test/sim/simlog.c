/*
** simlog.c -- the storage of one group on one node: the REAL write-ahead
** log (src/wal.c) over the node's simulated disk (simfs.c, through its
** env->fs).  This is the ONE interface between the simulator's driver
** (sim.c) and a log.
**
** WHAT IS WHERE.  Every entry and every hard state (term, vote) goes
** through wal.c: framed (wal_frame, WAL_NOOP for a leader's no-op,
** WAL_CMD for a proposal, WAL_HARD for the state), written in one batch
** when a sync starts (wal_write), and made durable by the simulated
** fs->sync after a sampled latency (wal_flush_fd, then wal_flush_done
** with the sync's errno).  An entry's payload is its command (simsm.c's
** encoding of the proposal's client op, sim_cmd_of(tag); none for a
** no-op) followed by SIMLOG_SIDE bytes of side data for the checks: its
** tag, its prefix hash and its size.  A command's bytes start at payload
** offset 0, so that the (entry index, offset) stream.c records for them
** is where wal_read finds them.  The state machine (l->sm, simsm.c) is
** the log's: restored by replay from the snapshot, applied by the driver
** from payloads read back from the WAL (simlog_payload).  Beside the
** WAL, the driver keeps a copy in memory (e[], last, durable, hs): what
** the core was told.  It is rebuilt from wal_replay() of the
** simulated disk at every start (simlog_open): what a node KNOWS after a
** restart comes from its disk alone, and replay checks every entry's
** chain (phash(i) = mix(phash(i - 1), term, tag)).  The copy's durable
** part is what the WAL reported durable (wal_durable_index); the driver
** checks after a restart that the disk kept it (simlog_open's `before`).
**
** SNAPSHOTS (simlog_compact; group.c's scheme, simplified).  The
** snapshot's payload is SIMLOG_SNAP bytes (index, term, prefix hash, the
** state's digest) followed by stream_snapshot() of the state at index;
** beside it, as the WAL's pieces (wal_snap_piece), the bytes of EVERY
** unit the state names (stream_log_units below index + 1), read with
** wal_read (from the segments, or the pieces of the snapshot before).  So
** the segments a snapshot covers can all go (wal_compact to its index)
** without group.c's stream_oldest_index bound; the cost is a snapshot
** that carries all the streams' bytes (small here).  An image for
** another node (simlog_image) is the same, made from the current
** snapshot's payload (l->snap).  After replay or an install the state
** starts from stream_restore(), all its bytes out of memory: reads of
** them go through the state's read_cold hook to wal_read.
**
** THE RULES the WAL sets, and how this file keeps them:
**   - one sync at a time, and no write, truncation, compaction or install
**     while one is in flight: a truncation or an install first SETTLES
**     (the sync in flight completes now, fault-free, and anything framed
**     since is written and synced at once; the driver still reports the
**     sync in flight at its time, R4, and `owe` asks for a sync that
**     reports the rest); compaction of segments (wal_compact) runs when
**     the next sync starts;
**   - a failed write (ENOSPC) or sync (EIO): the WAL drops what was not
**     durable and refuses appends until wal_recover() (simlog_recover);
**   - a truncation is crash-safe and durable when it returns; so are a
**     snapshot (wal_save_snapshot) and an install (wal_install_commit).
**
** THE HARD STATE.  term and vote are the WAL's HARD records.  The commit
** index is NOT durable (Raft paper, Fig. 2: commitIndex is volatile
** state; raft.c: "commit may be saved lazily"): a node restarts with
** commit at its snapshot and learns the rest from its leader.  The
** simulator checks instead that the committed prefix never changes (state
** machine safety) and that what the WAL reported durable survives a
** restart.  The LOST LOG flag (recovering) is not in the WAL's format: it
** is a marker file "g<g>.rec" beside the group's directory, created and
** made durable (sync_dir) at the start of a node with a replaced disk,
** and removed only once a hard state saved with the flag clear is
** durable; a crash in between keeps the flag (safe: the node recovers
** again).
**
** Errors the simulator does not inject on a path (a truncation, a
** snapshot, an install, a read) can still come from damage (a flipped
** bit): they set `broken`, and the driver stops the node (sim.c).
*/

#define SIMLOG_SIDE 24      /* after the command: tag 8, phash 8, bytes 8 */
#define SIMLOG_SNAP 32      /* index 8, term 8, phash 8, state 8 */
#define SIMLOG_SEGMENT 4096 /* segment bytes: rolls and compactions happen */

struct sim_entry {
  uint64_t term, tag, phash;
  uint32_t bytes;
};

struct sim_hs { /* the hard state */
  uint64_t term, vote, commit;
  int recovering;
};

struct simlog {
  struct sim_entry *e; /* e[0] is entry snap_index + 1 */
  size_t cap;
  uint64_t snap_index, snap_term, snap_phash, snap_sm;
  uint64_t last, durable;
  struct sim_hs hs, hs_durable;
  uint64_t write_seq;  /* writes so far */
  uint64_t synced_seq; /* writes made durable */
  uint64_t hs_seq;     /* the write of the last hard state saved */
  int syncing;         /* a sync is in flight */
  uint64_t sync_seq, sync_last, sync_term;
  struct sim_hs sync_hs;
  /* the real log */
  struct wal *w;
  struct env *env;
  char dir[40];    /* "/n3/g2" */
  char marker[40]; /* "/n3/g2.rec": the recovering flag */
  unsigned char *batch; /* records framed, not written yet */
  size_t batch_len, batch_cap;
  int flush_fd;   /* the sync in flight: the fd to sync (-1: none) */
  int settled;    /* the sync in flight completed early (a settle) */
  int write_rc;   /* the batch's write failed with this */
  int owe;        /* entries made durable by a settle: report them */
  int broken;     /* an error no fault was injected for (damage?) */
  int wrong;      /* replay or a read gave bytes that were not written */
  int hs_unframed; /* a hard state saved while the log had failed */
  /* the state machine: the state after the entries the driver applied */
  struct simsm sm;
  struct buf snap; /* the current snapshot's payload */
};

static uint64_t simlog_mix(uint64_t h, uint64_t a, uint64_t b) {
  uint64_t z = h ^ (a * 0x9e3779b97f4a7c15ull) ^ (b + 0x632be59bd9b4e019ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* wal.c asks for the process's env only when given none; every log here
** is given its node's. */
struct env *env_real(void) {
  abort();
}

/* wal.c's messages (a torn tail cut, damage found): the simulator counts
** what it needs itself and keeps quiet. */
void log_write(int level, const char *fmt, ...) {
  (void)level;
  (void)fmt;
}

static void simlog_init(struct simlog *l) {
  memset(l, 0, sizeof(*l));
  l->flush_fd = -1;
  simsm_init(&l->sm);
}

/* The copy in memory and the state, without the WAL (a ghost keeps
** them). */
static void simlog_free(struct simlog *l) {
  wal_close(l->w);
  free(l->e);
  free(l->batch);
  simsm_free(&l->sm);
  buf_free(&l->snap);
  simlog_init(l);
}

/* The state's read_cold: bytes that are only in the WAL (its segments or
** its snapshot's pieces). */
static int simlog_read_cold(void *ctx, const struct stream_loc *loc,
                            uint64_t len, struct buf *out) {
  struct simlog *l = (struct simlog *)ctx;
  if (l->w == NULL) return URSULA_EIO;
  return wal_read(l->w, loc->index, loc->off, len, out);
}

/* Point the state's read_cold at l (again after l moved). */
static void simlog_attach(struct simlog *l) {
  l->sm.st.read_cold = simlog_read_cold;
  l->sm.st.read_ctx = l;
}

/* Entry i, snap_index < i <= last. */
static const struct sim_entry *simlog_at(const struct simlog *l, uint64_t i) {
  return &l->e[i - l->snap_index - 1];
}

/* The term and prefix hash of entry i (the snapshot's at snap_index);
** 0 outside [snap_index, last]. */
static uint64_t simlog_term(const struct simlog *l, uint64_t i) {
  if (i == l->snap_index) return l->snap_term;
  if (i < l->snap_index || i > l->last) return 0;
  return simlog_at(l, i)->term;
}

static uint64_t simlog_phash(const struct simlog *l, uint64_t i) {
  if (i == l->snap_index) return l->snap_phash;
  if (i < l->snap_index || i > l->last) return 0;
  return simlog_at(l, i)->phash;
}

static void simlog_put64(unsigned char *p, uint64_t v) {
  int k;
  for (k = 0; k < 8; k++) p[k] = (unsigned char)(v >> (8 * k));
}

static uint64_t simlog_get64(const unsigned char *p) {
  uint64_t v = 0;
  int k;
  for (k = 7; k >= 0; k--) v = v << 8 | p[k];
  return v;
}

/* The command of an entry with this tag (none for a no-op's 0). */
static const char *simlog_cmd(uint64_t tag, size_t *n) {
  *n = 0;
  return tag == 0 ? "" : sim_cmd_of(tag, n);
}

/* The payload of e into p: its command, then the side data.  Returns its
** size. */
static size_t simlog_encode(const struct sim_entry *e, unsigned char *p) {
  size_t n;
  const char *c = simlog_cmd(e->tag, &n);
  memcpy(p, c, n);
  simlog_put64(p + n, e->tag);
  simlog_put64(p + n + 8, e->phash);
  simlog_put64(p + n + 16, e->bytes);
  return n + SIMLOG_SIDE;
}

/* The entry a WAL record holds, checked: its command is the one its tag
** names, byte for byte; its prefix hash chains from prev (the entry
** before it). */
static int simlog_decode(const struct wal_entry *we, uint64_t prev,
                         struct sim_entry *e) {
  const unsigned char *p = (const unsigned char *)we->data, *side;
  const char *c;
  size_t n;
  if (we->len < SIMLOG_SIDE) return 0;
  side = p + we->len - SIMLOG_SIDE;
  e->term = we->term;
  e->tag = simlog_get64(side);
  e->phash = simlog_get64(side + 8);
  e->bytes = (uint32_t)simlog_get64(side + 16);
  if ((we->type == WAL_NOOP) != (e->tag == 0)) return 0;
  c = simlog_cmd(e->tag, &n);
  if (c == NULL || we->len != n + SIMLOG_SIDE || memcmp(p, c, n) != 0)
    return 0;
  return e->phash == simlog_mix(prev, e->term, e->tag);
}

/* Copy e to the end of the copy in memory. */
static void simlog_push(struct simlog *l, const struct sim_entry *e) {
  size_t k = (size_t)(l->last - l->snap_index);
  if (k == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 64;
    l->e = (struct sim_entry *)realloc(l->e, l->cap * sizeof(*l->e));
    if (l->e == NULL) abort();
  }
  l->e[k] = *e;
  l->last++;
}

/* Room for one more record of n payload bytes in the batch. */
static unsigned char *simlog_batch_room(struct simlog *l, size_t n) {
  size_t need = l->batch_len + WAL_RECORD_HEADER + n;
  if (need > l->batch_cap) {
    l->batch_cap = need * 2 > 4096 ? need * 2 : 4096;
    l->batch = (unsigned char *)realloc(l->batch, l->batch_cap);
    if (l->batch == NULL) abort();
  }
  return l->batch + l->batch_len;
}

static void simlog_broke(struct simlog *l, int rc) {
  if (l->broken == 0) l->broken = rc;
}

/* Append entry e at last + 1 (framed: written when the next sync starts).
** Once the log has failed (a write failed when its sync started, and the
** core is told when the sync ends) an append is lost with the rest of
** what was not durable (simlog_failed). */
static void simlog_append(struct simlog *l, const struct sim_entry *e) {
  size_t n;
  unsigned char *r;
  int rc;
  if (wal_failed(l->w)) {
    simlog_push(l, e);
    l->write_seq++;
    return;
  }
  simlog_cmd(e->tag, &n);
  r = simlog_batch_room(l, n + SIMLOG_SIDE);
  n = simlog_encode(e, r + WAL_RECORD_HEADER);
  rc = wal_frame(l->w, e->tag == 0 ? WAL_NOOP : WAL_CMD, e->term, l->last + 1,
                 r, n);
  if (rc != URSULA_OK) simlog_broke(l, rc);
  else l->batch_len += WAL_RECORD_HEADER + n;
  simlog_push(l, e);
  l->write_seq++;
}

static void simlog_save_state(struct simlog *l, const struct sim_hs *hs) {
  unsigned char *r = simlog_batch_room(l, 16);
  int rc;
  l->hs = *hs;
  l->hs_seq = ++l->write_seq;
  if (wal_failed(l->w)) { /* framed once the log recovers */
    l->hs_unframed = 1;
    return;
  }
  wal_hard_payload(r + WAL_RECORD_HEADER, hs->term, hs->vote);
  rc = wal_frame(l->w, WAL_HARD, hs->term, wal_last_index(l->w), r, 16);
  if (rc != URSULA_OK) simlog_broke(l, rc);
  else l->batch_len += WAL_RECORD_HEADER + 16;
}

/* The commit index is volatile (see the top). */
static void simlog_save_commit(struct simlog *l, uint64_t commit) {
  if (commit > l->last) commit = l->last;
  if (commit > l->hs.commit) l->hs.commit = commit;
}

/* Whether a write waits for a sync (a commit index alone does not ask
** for one), or a settle made entries durable the core was not told of. */
static int simlog_dirty(const struct simlog *l) {
  return l->write_seq > l->synced_seq || l->owe;
}

/* What the WAL says is durable, into the copy. */
static void simlog_take_durable(struct simlog *l) {
  l->durable = wal_durable_index(l->w);
  if (l->durable > l->last) l->durable = l->last;
  l->hs_durable.term = wal_term(l->w);
  l->hs_durable.vote = wal_vote(l->w);
  l->hs_durable.commit = 0;
}

/* The durable flag: the marker file exists. */
static int simlog_marked(const struct simlog *l) {
  int fd = l->env->fs->open(l->marker, O_RDONLY, 0);
  if (fd < 0) return 0;
  l->env->fs->close(fd);
  return 1;
}

/* Set (durably) or clear the recovering marker. */
static void simlog_mark(struct simlog *l, int on) {
  struct os_fs *fs = l->env->fs;
  char parent[40];
  char *s;
  snprintf(parent, sizeof(parent), "%s", l->dir);
  s = strrchr(parent, '/');
  if (s != NULL) *s = 0;
  if (on) {
    int fd = fs->open(l->marker, O_RDWR | O_CREAT, 0644);
    if (fd < 0) {
      simlog_broke(l, URSULA_EIO);
      return;
    }
    fs->close(fd);
  } else if (fs->unlink(l->marker) != 0) {
    return;
  }
  if (fs->sync_dir(parent) != 0) simlog_broke(l, URSULA_EIO);
  l->hs_durable.recovering = l->hs.recovering = on;
}

/* Start a sync: compact what a snapshot covers, write the batch (nospc:
** the write fails with ENOSPC), and note what the sync covers. */
static void simlog_sync_begin(struct simlog *l, int nospc) {
  l->syncing = 1;
  l->settled = 0;
  l->owe = 0;
  l->write_rc = URSULA_OK;
  l->sync_seq = l->write_seq;
  l->sync_last = l->last;
  l->sync_term = simlog_term(l, l->last);
  l->sync_hs = l->hs;
  if (!wal_failed(l->w) && wal_can_compact(l->w, l->snap_index) &&
      wal_compact(l->w, l->snap_index) != URSULA_OK)
    simlog_broke(l, URSULA_EIO);
  if (l->batch_len > 0) {
    simfs_fail_writes(nospc);
    l->write_rc = wal_write(l->w, l->batch, l->batch_len);
    simfs_fail_writes(0);
    l->batch_len = 0;
  }
  l->flush_fd = wal_flush_fd(l->w);
}

/* The WAL failed: the copy goes back to what is durable. */
static void simlog_failed(struct simlog *l) {
  l->batch_len = 0;
  l->last = wal_last_index(l->w);
  if (l->last < l->snap_index) l->last = l->snap_index;
  simlog_take_durable(l);
  l->hs.term = l->hs_durable.term;
  l->hs.vote = l->hs_durable.vote;
  l->synced_seq = l->write_seq;
}

/* The sync ends: fs->sync of what was written (fail: with EIO), then
** wal_flush_done.  Returns 1 if it worked; a sync a settle completed
** worked already.  On failure every volatile write is lost. */
static int simlog_sync_end(struct simlog *l, int fail) {
  int e = 0, rc = l->write_rc;
  l->syncing = 0;
  if (!l->settled && rc == URSULA_OK) {
    if (l->flush_fd >= 0 && SIM_PLANT != 2) {
      simfs_fail_syncs(fail);
      if (l->env->fs->sync(l->flush_fd) != 0) e = errno ? errno : EIO;
      simfs_fail_syncs(0);
      if (SIM_PLANT == 1 && e != 0 && l->env->fs->sync(l->flush_fd) == 0)
        e = 0; /* planted: fsyncgate */
    }
    rc = wal_flush_done(l->w, e);
  }
  l->flush_fd = -1;
  if (rc != URSULA_OK || wal_failed(l->w)) {
    simlog_failed(l);
    return 0;
  }
  if (l->sync_seq > l->synced_seq) l->synced_seq = l->sync_seq;
  simlog_take_durable(l);
  if (l->hs_durable.recovering && !l->sync_hs.recovering) simlog_mark(l, 0);
  return 1;
}

/* A sync in flight completes now, and whatever was framed since is
** written and synced: the WAL then takes a truncation or an install. */
static int simlog_settle(struct simlog *l) {
  int rc = URSULA_OK;
  if (l->syncing && !l->settled) {
    l->settled = 1;
    rc = l->write_rc;
    if (rc == URSULA_OK) rc = wal_flush(l->w);
    l->write_rc = rc;
  }
  if (rc == URSULA_OK && l->batch_len > 0) {
    rc = wal_write(l->w, l->batch, l->batch_len);
    l->batch_len = 0;
    if (rc == URSULA_OK) rc = wal_flush(l->w);
    l->owe = 1;
  }
  if (rc != URSULA_OK) {
    simlog_broke(l, rc);
    return rc;
  }
  l->synced_seq = l->write_seq;
  simlog_take_durable(l);
  return URSULA_OK;
}

/* Remove the entries from `from` on, durably (wal_truncate_suffix). */
static void simlog_truncate(struct simlog *l, uint64_t from) {
  if (from > l->last) return;
  if (simlog_settle(l) == URSULA_OK) {
    int rc = wal_truncate_suffix(l->w, from);
    if (rc != URSULA_OK) simlog_broke(l, rc);
  }
  l->last = from - 1;
  if (l->durable > l->last) l->durable = l->last;
}

/* After a failed write or sync: wal_recover; a hard state saved since
** is framed now (it waits for the next sync).  0 if it failed. */
static int simlog_recover(struct simlog *l) {
  uint64_t seq = l->write_seq, hs_seq = l->hs_seq;
  struct sim_hs hs = l->hs;
  int rc = wal_recover(l->w);
  if (rc != URSULA_OK) {
    simlog_broke(l, rc);
    return 0;
  }
  simlog_failed(l);
  if (l->hs_unframed) {
    l->hs_unframed = 0;
    l->write_seq--;
    simlog_save_state(l, &hs);
    l->write_seq = seq;
    l->hs_seq = hs_seq;
    l->synced_seq = hs_seq - 1;
  }
  return 1;
}

/* The crash: the WAL is closed as it is (nothing more is written); the
** copy keeps only its durable part, which the disk must still hold. */
static void simlog_crash(struct simlog *l) {
  wal_close(l->w);
  l->w = NULL;
  l->last = l->durable;
  l->hs = l->hs_durable;
  l->syncing = 0;
  l->settled = 0;
  l->owe = 0;
  l->batch_len = 0;
  l->flush_fd = -1;
  l->synced_seq = l->write_seq;
}

/* A wiped or replaced disk: nothing is left.  What it held moves to
** *ghost (the simulator's checks still count what it had made durable);
** the caller frees it. */
static void simlog_wipe(struct simlog *l, struct simlog *ghost) {
  wal_close(l->w);
  l->w = NULL;
  *ghost = *l;
  ghost->batch = NULL;
  ghost->batch_len = ghost->batch_cap = 0;
  free(l->batch);
  simlog_init(l);
}

/* The snapshot's header (index, term, prefix hash, the state's digest)
** into p (SIMLOG_SNAP bytes). */
static void simlog_snap_header(const struct simlog *l, unsigned char *p) {
  simlog_put64(p, l->snap_index);
  simlog_put64(p + 8, l->snap_term);
  simlog_put64(p + 16, l->snap_phash);
  simlog_put64(p + 24, l->snap_sm);
}

/* Through sw (begun at the snapshot's index): the payload p[0..n), then
** as pieces the bytes of every unit that st (the state the payload
** holds) names, read from the log.  URSULA_OK, or an error (sw is then
** aborted). */
static int simlog_write_snap(struct simlog *l, struct wal_snap_writer *sw,
                             const struct stream_state *st, const void *p,
                             size_t n) {
  struct buf units, b;
  const struct stream_piece *pc;
  size_t i, k;
  int rc = wal_snap_put(sw, p, n);
  memset(&units, 0, sizeof(units));
  memset(&b, 0, sizeof(b));
  if (rc == URSULA_OK) rc = stream_log_units(st, sw->index + 1, &units);
  pc = (const struct stream_piece *)units.ptr;
  k = rc == URSULA_OK ? units.len / sizeof(*pc) : 0;
  for (i = 0; i < k && rc == URSULA_OK; i++) {
    b.len = 0;
    rc = wal_read(l->w, pc[i].index, pc[i].off, pc[i].len, &b);
    if (rc == URSULA_OK)
      rc = wal_snap_piece(sw, pc[i].index, pc[i].off, b.ptr, b.len);
  }
  buf_free(&units);
  buf_free(&b);
  if (rc == URSULA_OK) rc = wal_snap_commit(l->w, sw);
  if (rc != URSULA_OK) wal_snap_abort(l->w, sw);
  return rc;
}

/* Drop the entries up to index into a snapshot of the state machine at
** index (index = the entries applied, <= durable): its payload (the
** header, stream_snapshot) and its pieces, through wal_snap_begin; the
** segments it covers go at the next sync's start. */
static void simlog_compact(struct simlog *l, uint64_t index) {
  size_t k = (size_t)(index - l->snap_index);
  struct wal_snap_writer sw;
  unsigned char h[SIMLOG_SNAP];
  int rc;
  l->snap_term = simlog_term(l, index);
  l->snap_phash = simlog_phash(l, index);
  memmove(l->e, l->e + k, (size_t)(l->last - index) * sizeof(*l->e));
  l->snap_index = index;
  l->snap_sm = simsm_digest(&l->sm);
  simlog_snap_header(l, h);
  l->snap.len = 0;
  rc = buf_append(&l->snap, h, sizeof(h));
  if (rc == URSULA_OK) rc = stream_snapshot(&l->sm.st, &l->snap);
  if (rc == URSULA_OK) rc = wal_snap_begin(l->w, &sw, index, l->snap_term);
  if (rc == URSULA_OK)
    rc = simlog_write_snap(l, &sw, &l->sm.st, l->snap.ptr, l->snap.len);
  if (rc != URSULA_OK) simlog_broke(l, rc);
}

/* A state restored from a snapshot's payload p[0..n) (header first) into
** sm (empty); 0 if the payload is not one, or its state is not the
** digest its header says. */
static int simlog_restore_sm(struct simsm *sm, const unsigned char *p,
                             size_t n) {
  if (n < SIMLOG_SNAP ||
      stream_restore(&sm->st, p + SIMLOG_SNAP, n - SIMLOG_SNAP) != URSULA_OK)
    return 0;
  return simsm_digest(sm) == simlog_get64(p + 24);
}

/* The image another node installs: the bytes of the file "image" that
** wal_image_begin writes, as of this node's snapshot (its payload, and
** the pieces of the state it holds).  Returns the bytes (malloc'ed, *n
** of them) or NULL. */
static unsigned char *simlog_image(struct simlog *l, size_t *n) {
  struct wal_snap_writer sw;
  struct simsm at;
  unsigned char *img = NULL;
  char path[64];
  uint64_t size = 0;
  int fd, rc;
  simsm_init(&at);
  if (!simlog_restore_sm(&at, (const unsigned char *)l->snap.ptr,
                         l->snap.len)) {
    simsm_free(&at);
    return NULL;
  }
  rc = wal_image_begin(l->w, &sw, l->snap_index, l->snap_term);
  if (rc == URSULA_OK)
    rc = simlog_write_snap(l, &sw, &at.st, l->snap.ptr, l->snap.len);
  simsm_free(&at);
  if (rc != URSULA_OK) return NULL;
  snprintf(path, sizeof(path), "%s/image", l->dir);
  if ((fd = l->env->fs->open(path, O_RDONLY, 0)) < 0) return NULL;
  if (l->env->fs->size(fd, &size) == 0 && size > 0 &&
      (img = (unsigned char *)malloc((size_t)size)) != NULL &&
      l->env->fs->pread(fd, img, (size_t)size, 0) != (ssize_t)size) {
    free(img);
    img = NULL;
  }
  l->env->fs->close(fd);
  *n = (size_t)size;
  return img;
}

/* The payload of the WAL's snapshot into l->snap (wal_snap_open / read,
** as a node that installed it reads it).  URSULA_OK or an error. */
static int simlog_load_snap(struct simlog *l) {
  struct wal_snap_reader sr;
  char err[URSULA_ERRMSG_LEN], chunk[4096];
  long got;
  int rc = wal_snap_open(l->w, &sr, err);
  if (rc != URSULA_OK) return rc;
  l->snap.len = 0;
  while ((got = wal_snap_read(&sr, chunk, sizeof(chunk))) > 0)
    if (buf_append(&l->snap, chunk, (size_t)got) != URSULA_OK) got = -1;
  wal_snap_close(&sr);
  return got == 0 ? URSULA_OK : URSULA_ECORRUPT;
}

/* The state machine becomes the snapshot's (after an install that the
** applied state is behind).  0 if the snapshot is no state (`wrong`). */
static int simlog_take_snap(struct simlog *l) {
  simsm_free(&l->sm);
  simsm_init(&l->sm);
  simlog_attach(l);
  if (!simlog_restore_sm(&l->sm, (const unsigned char *)l->snap.ptr,
                         l->snap.len)) {
    l->wrong = 1;
    return 0;
  }
  return 1;
}

/* Install another node's image (img, n bytes: its snapshot at (index,
** term), phash, sm), through wal_install_begin/put/commit in chunks of
** `chunk` bytes, and its payload read back into l->snap (the caller
** restores the state from it: simlog_take_snap).  The model's rule
** (wal_install_commit's): the log goes on after it if its entry index
** has that term, else the log is the snapshot alone.  Returns 1 if the
** log was kept; sets `wrong` if the WAL's log does not end where that
** rule says, or the snapshot installed is not the one sent. */
static int simlog_install(struct simlog *l, uint64_t index, uint64_t term,
                          uint64_t phash, uint64_t sm, const unsigned char *img,
                          size_t n, size_t chunk) {
  struct wal_snap_writer sw;
  char err[URSULA_ERRMSG_LEN];
  size_t at;
  int keep =
      index < l->last && index > l->snap_index && simlog_term(l, index) == term;
  int rc = simlog_settle(l);
  if (rc == URSULA_OK) rc = wal_install_begin(l->w, &sw);
  for (at = 0; rc == URSULA_OK && at < n; at += chunk)
    rc = wal_install_put(&sw, at, img + at, n - at < chunk ? n - at : chunk);
  if (rc == URSULA_OK) rc = wal_install_commit(l->w, &sw, err);
  if (rc != URSULA_OK) simlog_broke(l, rc);
  if (keep) {
    size_t k = (size_t)(index - l->snap_index);
    memmove(l->e, l->e + k, (size_t)(l->last - index) * sizeof(*l->e));
  } else {
    l->last = index;
  }
  l->snap_index = index;
  l->snap_term = term;
  l->snap_phash = phash;
  l->snap_sm = sm;
  if (rc == URSULA_OK) {
    if (wal_last_index(l->w) != l->last) l->wrong = 1;
    simlog_take_durable(l);
    rc = simlog_load_snap(l);
    if (rc != URSULA_OK)
      simlog_broke(l, rc);
    else if (l->snap.len < SIMLOG_SNAP ||
             simlog_get64((const unsigned char *)l->snap.ptr) != index ||
             simlog_get64((const unsigned char *)l->snap.ptr + 16) != phash ||
             simlog_get64((const unsigned char *)l->snap.ptr + 24) != sm)
      l->wrong = 1; /* the installed snapshot is not the one sent */
  } else if (l->durable < index) {
    l->durable = index;
  }
  return keep;
}

/* Entry i as the WAL reads it back from the disk (durable, not failed):
** URSULA_OK and its bytes match the copy; URSULA_ECORRUPT (damage,
** detected); or `wrong` set if it read other bytes than were written. */
static int simlog_read_back(struct simlog *l, uint64_t i) {
  struct wal_entry we;
  struct sim_entry e;
  int rc;
  if (l->w == NULL || wal_failed(l->w) || i > l->durable || i <= l->snap_index ||
      i < wal_first_index(l->w))
    return URSULA_OK;
  rc = wal_entry_at(l->w, i, &we);
  if (rc != URSULA_OK) return rc;
  if (!simlog_decode(&we, simlog_phash(l, i - 1), &e) ||
      e.phash != simlog_at(l, i)->phash || e.tag != simlog_at(l, i)->tag ||
      e.term != simlog_at(l, i)->term)
    l->wrong = 1;
  return URSULA_OK;
}

/* The command of durable entry i (snap_index < i <= durable) as the WAL
** reads it back from the disk: *p, *n (valid until the log's next read;
** *n 0 for a no-op).  URSULA_OK; a read's error (damage: ECORRUPT); or
** URSULA_OK with `wrong` set if the record is not the entry written. */
static int simlog_payload(struct simlog *l, uint64_t i, const void **p,
                          size_t *n) {
  struct wal_entry we;
  struct sim_entry e;
  int rc;
  *p = NULL;
  *n = 0;
  if (l->w == NULL || i > l->durable || i <= l->snap_index) return URSULA_EIO;
  rc = wal_entry_at(l->w, i, &we);
  if (rc != URSULA_OK) return rc;
  if (!simlog_decode(&we, simlog_phash(l, i - 1), &e) ||
      e.phash != simlog_at(l, i)->phash || e.tag != simlog_at(l, i)->tag ||
      e.term != simlog_at(l, i)->term) {
    l->wrong = 1;
    return URSULA_OK;
  }
  *p = we.data;
  *n = we.len - SIMLOG_SIDE;
  return URSULA_OK;
}

/* ------------------------------------------------------------- start */

/* wal_replay's restore: the header, and the state (stream_restore). */
static int simlog_restore(void *arg, const void *p, size_t len) {
  struct simlog *l = (struct simlog *)arg;
  const unsigned char *b = (const unsigned char *)p;
  if (!simlog_restore_sm(&l->sm, b, len) ||
      buf_append(&l->snap, p, len) != URSULA_OK) {
    l->wrong = 1;
    return URSULA_ECORRUPT;
  }
  l->snap_index = l->last = simlog_get64(b);
  l->snap_term = simlog_get64(b + 8);
  l->snap_phash = simlog_get64(b + 16);
  l->snap_sm = simlog_get64(b + 24);
  return URSULA_OK;
}

static int simlog_entry(void *arg, const struct wal_entry *we) {
  struct simlog *l = (struct simlog *)arg;
  struct sim_entry e;
  if (we->index <= l->snap_index) return URSULA_OK;
  if (we->index != l->last + 1 ||
      !simlog_decode(we, simlog_phash(l, l->last), &e)) {
    l->wrong = 1;
    return URSULA_ECORRUPT;
  }
  simlog_push(l, &e);
  return URSULA_OK;
}

/* Open the log of directory dir ("/n<x>/g<g>") on env's disk and replay
** it into the copy (which must be empty: simlog_init).  must_exist: the
** node made it before.  URSULA_OK; URSULA_ECORRUPT (damage: never taken
** for an empty log); or another error.  `wrong` set: replay handed over
** entries that were never written. */
static int simlog_open(struct simlog *l, struct env *env, const char *dir,
                       int must_exist) {
  char err[URSULA_ERRMSG_LEN];
  struct wal_stats st;
  int rc;
  l->env = env;
  simlog_attach(l);
  snprintf(l->dir, sizeof(l->dir), "%s", dir);
  snprintf(l->marker, sizeof(l->marker), "%s.rec", dir);
  if (!must_exist) {
    char parent[40], *s;
    snprintf(parent, sizeof(parent), "%s", dir);
    s = strrchr(parent, '/');
    if (s != NULL) *s = 0;
    if (env->fs->mkdir(dir, 0755) != 0 && errno != EEXIST) return URSULA_EIO;
    if (env->fs->sync_dir(parent) != 0) return URSULA_EIO;
  }
  rc = wal_open(&l->w, env, dir, must_exist, err);
  if (rc != URSULA_OK) return rc;
  wal_set_segment_bytes(l->w, SIMLOG_SEGMENT);
  memset(&st, 0, sizeof(st));
  rc = wal_replay(l->w, simlog_restore, simlog_entry, l, NULL, &st, err);
  if (rc != URSULA_OK) return rc;
  if (wal_last_index(l->w) != l->last) l->wrong = 1;
  l->durable = l->last;
  simlog_take_durable(l);
  l->hs.term = l->hs_durable.term;
  l->hs.vote = l->hs_durable.vote;
  l->hs_durable.recovering = l->hs.recovering = simlog_marked(l);
  return URSULA_OK;
}
