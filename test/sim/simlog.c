/*
** simlog.c -- the simulated storage of one group on one node: its log
** and its hard state, each with a durable and a volatile part.  This is
** the ONE interface between the simulator's driver (sim.c) and a log:
** the next step replaces this file by the real WAL (src/wal.c, through a
** simulated struct os_fs) behind the same functions, and nothing else in
** the simulator changes.
**
** THE MODEL.  Every write (an entry appended, the hard state saved) is
** volatile until a sync that started after it completes.  One sync at a
** time per log (the WAL's group commit): it covers every write made
** before it started.  A crash or power loss keeps only what is durable:
** the entries up to `durable` and `hs_durable`.  A truncation (R3: the
** real one, wal_truncate_suffix, is itself crash-safe) is durable at once,
** and a sync in flight then covers only the entries below it: its
** completion names the entry it was started for (ABA: the core must see
** it is stale).  A failed sync loses every volatile write (the WAL cuts
** the log back to what was durable).  A snapshot (compaction, or an
** install from another node) is durable at once (the WAL's snapshot and
** install commits sync before they return).
**
** Entries carry a tag (the client proposal, 0 for a leader's no-op), a
** size in bytes, and a prefix hash: phash(i) = mix(phash(i - 1), term,
** tag), so that two logs agree up to i exactly when their phash(i) agree
** (the simulator's log-matching checks rest on this).
*/

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
  uint64_t sync_seq, sync_last, sync_term, sync_cut;
  struct sim_hs sync_hs;
};

static uint64_t simlog_mix(uint64_t h, uint64_t a, uint64_t b) {
  uint64_t z = h ^ (a * 0x9e3779b97f4a7c15ull) ^ (b + 0x632be59bd9b4e019ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void simlog_init(struct simlog *l) {
  memset(l, 0, sizeof(*l));
}

static void simlog_free(struct simlog *l) {
  free(l->e);
  memset(l, 0, sizeof(*l));
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

/* Append entry e at last + 1 (volatile). */
static void simlog_append(struct simlog *l, const struct sim_entry *e) {
  size_t k = (size_t)(l->last - l->snap_index);
  if (k == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 64;
    l->e = (struct sim_entry *)realloc(l->e, l->cap * sizeof(*l->e));
    if (l->e == NULL) abort();
  }
  l->e[k] = *e;
  l->last++;
  l->write_seq++;
}

/* Remove the entries from `from` on, durably. */
static void simlog_truncate(struct simlog *l, uint64_t from) {
  if (from > l->last) return;
  l->last = from - 1;
  if (l->durable > l->last) l->durable = l->last;
  if (l->syncing && (l->sync_cut == 0 || from < l->sync_cut))
    l->sync_cut = from;
}

static void simlog_save_state(struct simlog *l, const struct sim_hs *hs) {
  l->hs = *hs;
  l->hs_seq = ++l->write_seq;
}

/* The commit index is saved lazily: volatile, durable with the next sync
** (capped at the log's end, as the hard state must never name entries
** the log lacks). */
static void simlog_save_commit(struct simlog *l, uint64_t commit) {
  if (commit > l->last) commit = l->last;
  if (commit > l->hs.commit) l->hs.commit = commit;
}

/* Whether a write waits for a sync (a commit index alone does not ask
** for one). */
static int simlog_dirty(const struct simlog *l) {
  return l->write_seq > l->synced_seq;
}

/* Start a sync: it covers every write made so far. */
static void simlog_sync_begin(struct simlog *l) {
  l->syncing = 1;
  l->sync_seq = l->write_seq;
  l->sync_last = l->last;
  l->sync_term = simlog_term(l, l->last);
  l->sync_cut = 0;
  l->sync_hs = l->hs;
}

/* The sync ended.  ok: what it covered is durable (entries below a
** truncation made since).  Failed: every volatile write is lost. */
static void simlog_sync_end(struct simlog *l, int ok) {
  l->syncing = 0;
  if (ok) {
    uint64_t d = l->sync_last;
    if (l->sync_cut != 0 && d >= l->sync_cut) d = l->sync_cut - 1;
    if (d > l->durable) l->durable = d;
    if (l->sync_seq > l->synced_seq) l->synced_seq = l->sync_seq;
    l->hs_durable = l->sync_hs;
    return;
  }
  l->last = l->durable;
  l->hs = l->hs_durable;
  l->synced_seq = l->write_seq;
}

/* A crash or a power loss: only the durable part is left. */
static void simlog_crash(struct simlog *l) {
  l->last = l->durable;
  l->hs = l->hs_durable;
  l->syncing = 0;
  l->synced_seq = l->write_seq;
}

/* A wiped or replaced disk: nothing is left.  What it held moves to
** *ghost (the simulator's checks still count what it had made durable);
** the caller frees it. */
static void simlog_wipe(struct simlog *l, struct simlog *ghost) {
  *ghost = *l;
  simlog_init(l);
}

/* Drop the entries up to index into a snapshot of the state machine
** (sm) at index (index <= durable). */
static void simlog_compact(struct simlog *l, uint64_t index, uint64_t sm) {
  size_t k = (size_t)(index - l->snap_index);
  l->snap_term = simlog_term(l, index);
  l->snap_phash = simlog_phash(l, index);
  memmove(l->e, l->e + k, (size_t)(l->last - index) * sizeof(*l->e));
  l->snap_index = index;
  l->snap_sm = sm;
}

/* Install another node's snapshot at (index, term): the log goes on after
** it if its entry index has that term (wal_install_commit's rule), else
** the log is the snapshot alone.  Returns 1 if the log was kept. */
static int simlog_install(struct simlog *l, uint64_t index, uint64_t term,
                          uint64_t phash, uint64_t sm) {
  int keep =
      index < l->last && index > l->snap_index && simlog_term(l, index) == term;
  if (keep) {
    simlog_compact(l, index, sm);
    l->snap_phash = phash;
    if (l->durable < index) l->durable = index;
    return 1;
  }
  l->last = l->durable = l->snap_index = index;
  l->snap_term = term;
  l->snap_phash = phash;
  l->snap_sm = sm;
  if (l->syncing && (l->sync_cut == 0 || l->sync_cut > index + 1))
    l->sync_cut = index + 1;
  return 0;
}
