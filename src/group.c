/*
** group.c -- a group: its command log and its state machine, owned by one
** core.
**
** Every stream hashes to one group; each group is owned by one core, and
** only that core's thread touches the group.  A request reaches the owner
** as a job (struct job).  For a change, the owner builds a command,
** proposes it to the group's log, and once the command is committed it is
** applied to the state machine (stream.c) and the job goes back to the
** core that holds the connection, carrying the result.
**
** THE LOG INTERFACE.  group_propose() is the one way state changes:
**
**     propose(cmd) -> encode -> the Raft core (raft.c) gives it (term,
**       index) -> framed into the fill batch
**     ... end of the loop turn: group_drive() ...
**       -> persist the batch (wal_write, then a sync on another thread
**          while the core goes on) -> group_synced(): the core is told
**          what is durable, and says what is committed (THE RAFT DRIVER)
**       -> apply the committed entries in order (group_apply_entry, the
**          one apply path, also replay's) -> effects
**       -> each proposal answered by (term, index): its entry's result if
**          the entry committed at its index is its own, else a 503
**
** Commands are applied only once committed, in log order, so the state a
** reader sees never holds anything that could still be lost.  Whether a
** command succeeds (a producer's sequence, a closed stream, ...) is
** decided by the apply, which is deterministic, so a command that fails
** is logged too and fails the same way on every replay.  The state
** machine only ever sees the decoded log bytes, never the proposer's
** structs, so what is applied is exactly what a replay applies.
**
** GROUP COMMIT.  Proposals only buffer.  At the end of each loop turn the
** core starts a commit of every group that has proposals (server.c): one
** write of the group's WAL for everything proposed, then one sync on a
** syncer thread while the core goes on serving; when the sync is back,
** the applies and replies.  What a group's clients propose during a sync
** forms its next batch (pipelining: one batch syncing, one filling).
** Without --wal-dir the log is memory and the commit is immediate, but
** the path is the same.
**
** EFFECTS of a committed command, carried out by the owner:
**   - wake live readers: one `struct notify` per core that has readers of
**     the stream (not one per reader), carrying the appended bytes;
**   - a release (struct group_release) to the group of each fork source
**     whose fork went away: it may be on another core, so it travels as a
**     message, and its owner proposes FORK_RELEASE there (fork.c has the
**     fork protocol; group.c only carries out these effects).
**
** Reads are served from the owner's state directly (no log entry); a
** read of what a fork inherited hops to its source's owner and back
** (READS OF A FORK, below).
**
** JOBS.  group_dispatch() sends a job to its stream's owner, where
** group_run_job() proposes its command or serves its read.  A job of
** another protocol (a fork PUT, fork.c) carries its own handler in
** msg.on_msg and uses the functions below to route, propose and answer;
** a job parked on a cold-tier fetch runs again through that handler.
**
** PLANTED BUG.  -DGROUP_PLANT=1 (default 0) compiles in one bug, to prove
** that the fault harness (test/fault/, make test-fault-plants) catches
** it: a leader applies, and so answers, its entries once they are durable
** in its own log, without waiting for the commit index to reach them
** (before a majority holds them; Raft paper 5.3: an entry is applied,
** and its client answered, only once committed).  Its followers still
** apply only what is committed.  A leader cut off from the others and
** then killed takes such acknowledged appends with it
** (group_apply_committed).
**
** THE COLD TIER, when there is one, is tier.c's policy: the group embeds
** a struct tier, hands it what it works on (tier_attach), and calls it
** once a second (tier_tick), when a read needs a chunk that is not in
** memory (tier_fetch), and when committed commands leave objects that no
** stream names (tier_delete_objects).
*/
#include "internal.h"

/* PLANTED BUGS.  -DGROUP_PLANT=n (default 0) compiles in one bug, to
** prove the tests catch it:
**    1  a leader answers writes before they commit (the PLANTED BUG
**       above)                          test/fault/, make test-fault-plants
**    2  an installed snapshot image is not loaded: the follower goes on
**       from its old state machine     test/catchup.sh, test-catchup-plants
**    3  --lost-log is ignored: an empty log votes at once     (the same)
**    4  the status endpoint reports a group this node follows as led by
**       this node (the wrong leader)    test/cluster.sh, test-status-plants
**    5  every node moves data to the cold tier and sweeps it, leader or
**       not (with TIER_PLANT=1 too: the single node's tier run as it is
**       on each node of a cluster; a node alone on a stale log deletes
**       objects that entries it lacks name)
**                          test/cluster_cold.sh, make test-cold-plants
**    6  a read whose chunk is missing is answered 500 at once, without
**       a second run after a barrier (READS RACING A REMOVAL)
**                          test/cold_race.sh, make test-cold-plants */
#ifndef GROUP_PLANT
#define GROUP_PLANT 0
#endif
#define GROUP_BUG(n) (GROUP_PLANT == (n))

/* An entry of a batch: its payload is log[off, off+len) (with a WAL, the
** record header sits just before it), at (term, index).  type is WAL_CMD
** or WAL_NOOP.  A proposal's entry has a continuation (done, arg), answered
** by (term, index): if the entry committed at index carries another term,
** the proposal was replaced and fails. */
struct group_prop {
  group_done_fn done; /* NULL: no one waits (a leader's no-op) */
  void *arg;
  size_t off, len;
  uint64_t term, index;
  int type;
};

/* A batch of what this node writes to its log: records back to back
** (with a WAL, framed, so the WAL writes them from here without a copy),
** its entries in index order, and whether a hard state (term, vote) is
** among the records (made durable by the same sync). */
struct group_batch {
  struct buf log;
  struct group_prop *props;
  size_t n, cap;
  int has_hard;
  uint64_t hard_term, hard_vote, hard_seq;
};

/* A message the core gave (SEND), waiting to be handed to the transport:
** until the hard state framed before it (hard_seq) is durable (R1), and
** until entry (after_term, after_index) is (R2; dropped if it was
** replaced). */
struct group_send {
  struct raft_msg msg;
  uint64_t after_term, after_index, hard_seq;
};

/* An AppendEntries that arrived while a sync was in flight: stepped once
** it is back (a truncation must not race a sync: R3), with a copy of the
** records it carried. */
struct group_inmsg {
  struct raft_msg msg;
  struct buf records;
};

/* A read of a cluster's group waiting for its barrier (ReadIndex,
** thesis 6.4): READ_INDEX(ctx) gives the index it waits for (0: not
** yet); it is served once this node has applied that far. */
struct group_barrier {
  struct job *j;
  group_job_fn then; /* runs once the barrier passed */
  uint64_t ctx, index; /* ctx 0: waits for the next round */
  unsigned ticks; /* its age */
  int refused;    /* no leader confirmed it (or too old): 503 */
};

/* A proposal whose entry is durable here, waiting for its index to be
** committed and applied (answered by (term, index): group_answer). */
struct group_wait {
  group_done_fn done;
  void *arg;
  uint64_t term, index;
  unsigned ticks; /* since this node stopped leading its term */
};

/* A client's write this node forwarded to its group's leader, waiting
** for the leader's reply (then it waits in held, for its apply here). */
struct group_fwd {
  uint64_t req;
  group_done_fn done;
  void *arg;
  unsigned ticks;
};

/* SNAPSHOTS IN A CLUSTER (below): an image being sent to one follower
** (peer 0: the slot is free), and the one being received. */
struct group_snap_out {
  uint64_t peer;
  int fd;               /* the file "image", open for reading */
  uint64_t at, bytes;   /* sent so far; the file's size */
  uint64_t index, term; /* the image's last entry */
  uint64_t moved_ms;    /* mono ms of the last chunk the link took */
};
struct group_snap_in {
  int open;     /* an install file is being written (sw) */
  int complete; /* all of it came: waiting for the core's INSTALL */
  uint64_t from, term, index, snap_term, total, at;
  struct wal_snap_writer sw;
};

/* The Raft settings of a group (raft.c has what each means). */
#define GROUP_ELECTION_TICKS 10 /* T: elections after [T, 2T) ticks */
#define GROUP_TRAIL_RUNS 256   /* term runs the core remembers (one voter) */
#define GROUP_TRAIL_RUNS_CLUSTER 4096 /* (a cluster compacts only what
                                         its followers hold) */
#define GROUP_NODE_ID 1        /* a single node's id */

struct group {
  int id;
  int owner_core;
  struct env *env; /* the node's clocks and file system */
  struct stream_state sm;
  struct wal *wal;        /* NULL: the log lives in memory only */
  struct raft raft;       /* which entries are committed (raft.c) */
  struct raft_out out;    /* raft_step()'s actions (out.a: raft_out_cap) */
  uint64_t commit;        /* the last entry known committed */
  int storage_failed;     /* the core was told STORAGE_FAILED */
  int recovering;         /* the last SAVE_STATE's LOST LOG flag */
  struct group_cluster cl; /* n_voters 0: a single node (one voter) */
  uint64_t hard_seq;       /* HARD records framed so far */
  uint64_t hard_durable;   /* ... of which durable */
  struct group_send *outbox; /* SENDs not yet handed to the transport */
  size_t n_out, cap_out;
  struct group_inmsg *inbox; /* AppendEntries waiting for the sync */
  size_t n_in, cap_in;
  const void *in_records; /* the MSG being stepped: its records */
  size_t in_len;
  struct group_wait *held; /* durable proposals, ascending by index, */
  size_t held_head, n_held, cap_held; /* from held_head on */
  struct buf scratch;      /* records of a message being sent */
  int owe;                 /* flight was made durable in a step */
  int owe_rc;              /* a storage failure met in a step */
  uint64_t snap_refused;   /* SEND_SNAPSHOT to this peer: refused */
  struct group_snap_out snap_out[RAFT_MAX_VOTERS - 1]; /* images sent */
  uint64_t image_index, image_term; /* the file "image" (0: none yet) */
  struct group_snap_in snap_in;     /* an image received */
  uint64_t install_peer, install_term, install_index; /* INSTALL asked */
  struct buf snap_buf;              /* a chunk read or a snapshot loaded */
  struct group_barrier *reads; /* reads waiting for their barrier */
  size_t n_reads, cap_reads;
  uint64_t read_ctx;           /* the last READ_INDEX's ctx */
  uint64_t read_out;           /* the READ_INDEX in flight (0: none) */
  unsigned read_out_ticks;     /* its age */
  int read_later;              /* the last round was refused: ask again at
                                  the next tick, or once a leader is known */
  int reads_ready;             /* a READ_READY came in this step */
  int serving;                 /* group_serve_reads() is running */
  int draining;                /* group_drain_inbox() is running */
  struct group_fwd *fwds;      /* forwarded writes awaiting a reply */
  size_t n_fwds, cap_fwds;
  uint64_t fwd_seq;            /* the last forward's request id */
  struct buf fwd_buf;          /* a forward's encoded command */
  struct group_batch fill;   /* proposed this turn, not yet handed over */
  struct group_batch flight; /* handed to the log store: being persisted,
                                then applied */
  struct group_release *retry; /* releases the log refused: again at the
                                  next sweep (chained through msg.next) */
  int dirty;     /* on the core's list of groups to drive */
  int in_flight; /* flight is being synced */
  int wal_error;           /* the last failure, while the WAL is failed */
  uint64_t hot_max;        /* stream bytes kept in memory (with a WAL) */
  uint64_t replayed_last;  /* the log's last entry at start: entries up to
                              it are applied log-only (stream_state) */
  uint64_t snapshot_bytes; /* log bytes between snapshots (with a WAL) */
  uint64_t snapshot_size;  /* bytes of the last snapshot */
  uint64_t applied_index;  /* the last entry applied to sm */
  uint64_t applied_term;   /* its term */
  struct buf bounds;       /* decode scratch */
  struct stream_result res;
  struct tier tier; /* the cold tier's policy (tier.cold NULL: none) */
  int campaign_why; /* STATUS: why its last campaign began (GROUP_WHY_*) */
  uint64_t won, lost, installs; /* STATUS: leaderships won and lost,
                                   snapshot images installed here, since
                                   it started (metrics) */
  unsigned whys[8]; /* STATUS: leaderships won and lost, by why, since the
                       last group_leads_report() */
};

/* The node's clocks: monotonic ms (durations), Unix ms (stamped into
** commands, compared with TTLs). */
static uint64_t group_mono(const struct group *g) {
  return g->env->mono_ms(g->env);
}
URSULA_PRIVATE uint64_t group_wall(const struct group *g) {
  return g->env->wall_ms(g->env);
}

/* ------------------------------------------------------------ the driver */

/* THE RAFT DRIVER.  What decides which entries are committed is the
** group's Raft core (raft.c: pure; its contract lists every input, every
** action and the driver rules R1-R5).  group_step() feeds it one input
** and carries out the actions it gives back, in order:
**   SAVE_STATE  frame a HARD record (term, vote) into the fill batch: it
**               becomes durable with the entries framed before it, by the
**               same sync, and the core is told STATE_DURABLE after that
**               sync (group_persisted).  R1 holds because nothing is sent
**               before the batch that holds the state is durable;
**   APPEND      a leader's no-op: a NOOP entry into the fill batch; a
**               proposal's entry: the proposer frames it (group_propose);
**   APPEND      (of a MSG) the entries an AppendEntries carried, framed
**               verbatim from their WAL records;
**   TRUNCATE    a conflicting suffix cut (group_truncate; R3);
**   SEND        queued, and handed to the transport at the end of the
**               turn once R1 and R2 allow (group_flush_out);
**   COMMIT      entries up to it are committed: applied once durable here
**               (group_apply_committed);
**   READ_READY  a read's barrier passed (group_serve_reads);
**   ROLE        counted: each core logs once a second how many of its
**               groups this node leads, and why that changed (STATUS).
** A single node is one voter: its core elects itself at start
** (group_elect, one election timeout of ticks fed at once, so the first
** request does not wait a second) and, after a storage failure, once its
** log is verified again.  A cluster's groups (group_join: a voter on every
** node) elect by ticks (group_tick), exchange messages through the
** transport (group_recv), forward writes to their leader, read through a
** barrier, and spread leadership (FORWARDED WRITES, LEADERSHIP SPREAD,
** and group_barrier, below), and send and install snapshots (SNAPSHOTS
** IN A CLUSTER).  The cold tier acts only on a group's leader
** (group_lead_term; tier.c's WHO ACTS).
**
** Storage failures follow R5: a write or sync that fails (group_lost), or
** a record that cannot be framed (group_frame_failed: the log is then
** abandoned, as if its write had failed), tells the core STORAGE_FAILED;
** it steps down and refuses proposals until the sweep has verified the
** log again (wal_recover) and tells it STORAGE_RECOVERED. */

static void group_mark_dirty(struct core *c, struct group *g) {
  if (c != NULL && !g->dirty) { /* c NULL: at open; the first proposal */
    g->dirty = 1;
    c->dirty[c->n_dirty++] = g;
  }
}

/* Room in batch b for a record of n payload bytes (with a WAL, header
** room first): its start, or NULL (out of memory). */
static char *group_batch_room(struct group *g, struct group_batch *b,
                              size_t n) {
  size_t hdr = g->wal != NULL ? WAL_RECORD_HEADER : 0;
  if (buf_reserve(&b->log, hdr + n) != URSULA_OK) return NULL;
  return b->log.ptr + b->log.len;
}

/* Add entry (type, term, index) with payload p[0..n) to the fill batch
** (a no-op: n 0).  URSULA_OK, or why it could not be framed. */
static int group_batch_entry(struct group *g, int type, uint64_t term,
                             uint64_t index, size_t n) {
  struct group_batch *b = &g->fill;
  struct group_prop *p;
  size_t hdr = g->wal != NULL ? WAL_RECORD_HEADER : 0;
  char *rec = group_batch_room(g, b, n);
  int rc;
  if (rec == NULL) return URSULA_ENOMEM;
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 16;
    p = (struct group_prop *)URSULA_REALLOC(b->props, cap * sizeof(*p));
    if (p == NULL) return URSULA_ENOMEM;
    b->props = p;
    b->cap = cap;
  }
  if (g->wal != NULL &&
      (rc = wal_frame(g->wal, type, term, index, rec, n)) != URSULA_OK)
    return rc;
  p = &b->props[b->n++];
  memset(p, 0, sizeof(*p));
  p->off = b->log.len + hdr;
  p->len = n;
  p->term = term;
  p->index = index;
  p->type = type;
  b->log.len += hdr + n;
  return URSULA_OK;
}

/* A record the core counts on could not be framed: abandon the log (its
** next write fails, and group_lost tells the core), so that no index the
** core gave out is ever given to another entry. */
static void group_frame_failed(struct core *c, struct group *g, int rc) {
  LOG_E("group %d: could not add to the WAL (%s); the log is failed until "
        "it is verified again",
        g->id, ursula_strerror(rc));
  (void)rc; /* when logging is compiled out */
  if (g->wal != NULL) wal_abandon(g->wal);
  g->fill.log.len += 0;
  group_mark_dirty(c, g); /* the write that fails, at the end of the turn */
}

/* SAVE_STATE(term, vote, flags): a HARD record.  Its vote field holds
** the node voted for in bits 0-62 and, in bit 63, LOST LOG's recovering
** flag (flags 1: raft.c), so a node that lost its log still abstains
** after a crash while it catches up. */
#define GROUP_VOTE_RECOVERING ((uint64_t)1 << 63)
static void group_save_state(struct core *c, struct group *g, uint64_t term,
                             uint64_t vote, unsigned flags) {
  struct group_batch *b = &g->fill;
  if ((flags & 1) != (unsigned)g->recovering) {
    if (flags & 1)
      LOG_I("group %d: this node lost its log (--lost-log 1): it neither "
            "votes nor campaigns until it holds what the others committed",
            g->id);
    else
      LOG_I("group %d: caught up after losing its log: it votes again",
            g->id);
    g->recovering = (int)(flags & 1);
  }
  if (g->wal != NULL) {
    char *rec = group_batch_room(g, b, 16);
    int rc = rec == NULL ? URSULA_ENOMEM : URSULA_OK;
    if (rc == URSULA_OK) {
      wal_hard_payload(rec + WAL_RECORD_HEADER, term,
                       vote | ((flags & 1) ? GROUP_VOTE_RECOVERING : 0));
      rc = wal_frame(g->wal, WAL_HARD, term, wal_last_index(g->wal), rec, 16);
    }
    if (rc != URSULA_OK) {
      group_frame_failed(c, g, rc);
      return;
    }
    b->log.len += WAL_RECORD_HEADER + 16;
  }
  b->has_hard = 1;
  b->hard_term = term;
  b->hard_vote = vote;
  b->hard_seq = ++g->hard_seq;
  group_mark_dirty(c, g);
}

/* SEND: queue the message for the transport (group_flush_out). */
static void group_queue_send(struct core *c, struct group *g,
                             const struct raft_action *a) {
  struct group_send *q;
  if (g->cl.send == NULL) return; /* no transport: dropped */
  if (g->n_out == g->cap_out) {
    size_t cap = g->cap_out ? g->cap_out * 2 : 16;
    q = (struct group_send *)URSULA_REALLOC(g->outbox, cap * sizeof(*q));
    if (q == NULL) return; /* dropped: Raft sends again */
    g->outbox = q;
    g->cap_out = cap;
  }
  q = &g->outbox[g->n_out++];
  q->msg = a->msg;
  q->after_term = a->after_term;
  q->after_index = a->after_index;
  q->hard_seq = g->hard_seq;
  group_mark_dirty(c, g);
}

/* APPEND of the entries the MSG being stepped carried: lo..hi, framed
** from its records (their bytes verbatim). */
static void group_append_msg(struct core *c, struct group *g, uint64_t lo,
                             uint64_t hi) {
  const char *p = (const char *)g->in_records;
  size_t left = g->in_len, k;
  struct wal_entry e;
  int rc = URSULA_OK;
  while (lo <= hi && rc == URSULA_OK &&
         wal_record_check(p, left, &e, &k) == URSULA_OK) {
    p += k;
    left -= k;
    if (e.index < lo) continue;
    if (e.index != lo) break;
    {
      char *rec = group_batch_room(g, &g->fill, e.len);
      if (rec == NULL) {
        rc = URSULA_ENOMEM;
        break;
      }
      if (e.len > 0) memcpy(rec + WAL_RECORD_HEADER, e.data, e.len);
      rc = group_batch_entry(g, e.type, e.term, e.index, e.len);
    }
    lo++;
  }
  if (rc == URSULA_OK && lo <= hi) rc = URSULA_ECORRUPT; /* (transport) */
  if (rc != URSULA_OK) group_frame_failed(c, g, rc);
  else group_mark_dirty(c, g);
}

/* TRUNCATE(lo): entries from lo on conflict with the leader's (R3).  No
** sync is in flight here (an AppendEntries waits for it: group_recv);
** what the fill batch holds is written and synced first (the WAL cuts
** only a log with nothing buffered), on this thread -- a conflict is
** rare: it follows a change of leader -- and reported after the step
** (owe). */
static void group_truncate(struct group *g, uint64_t lo) {
  int rc = URSULA_OK;
  if (g->wal == NULL || g->in_flight) {
    g->owe_rc = URSULA_EIO; /* never: one voter, or a sync in flight */
    return;
  }
  if (g->fill.n > 0 || g->fill.has_hard) {
    struct group_batch tmp = g->flight;
    g->flight = g->fill;
    g->fill = tmp;
    g->in_flight = 1;
    rc = wal_write(g->wal, g->flight.log.ptr, g->flight.log.len);
    if (rc == URSULA_OK) rc = wal_flush(g->wal);
    if (rc == URSULA_OK) g->owe = 1;
  }
  if (rc == URSULA_OK) rc = wal_truncate_suffix(g->wal, lo);
  if (rc != URSULA_OK) g->owe_rc = rc;
}

static void group_snap_start(struct group *g, const struct raft_action *a);

static void group_act(struct core *c, struct group *g,
                      const struct raft_action *a) {
  int rc;
  switch (a->type) {
    case RAFT_SAVE_STATE:
      group_save_state(c, g, a->term, a->vote, a->flags);
      break;
    case RAFT_APPEND:
      if (a->flags & RAFT_APPEND_MSG) {
        group_append_msg(c, g, a->lo, a->hi);
      } else if (a->flags & RAFT_APPEND_NOOP) {
        rc = group_batch_entry(g, WAL_NOOP, a->msg.runs[0].term, a->lo, 0);
        if (rc != URSULA_OK) group_frame_failed(c, g, rc);
        else group_mark_dirty(c, g);
      } /* else a proposal's: the proposer frames it */
      break;
    case RAFT_TRUNCATE:
      group_truncate(g, a->lo);
      break;
    case RAFT_SEND:
      group_queue_send(c, g, a);
      break;
    case RAFT_SEND_SNAPSHOT:
      group_snap_start(g, a);
      break;
    case RAFT_INSTALL_SNAPSHOT: /* after the step: group_install_try */
      g->install_peer = a->peer;
      g->install_term = a->term;
      g->install_index = a->hi;
      break;
    case RAFT_COMMIT:
      if (a->hi > g->commit) g->commit = a->hi;
      group_mark_dirty(c, g);
      break;
    case RAFT_ROLE: /* counted for the core's line: group_note_role */
      if (a->role == RAFT_LEADER && g->cl.n_voters > 1)
        LOG_D("group %d: this node leads it (term %llu)", g->id,
              (unsigned long long)a->term);
      else
        LOG_D("group %d: term %llu, %s (leader %llu)", g->id,
              (unsigned long long)a->term,
              a->role == RAFT_LEADER ? "leader" : "not the leader",
              (unsigned long long)a->peer);
      break;
    case RAFT_READ_READY: {
      size_t k;
      if (a->ctx == 0) break; /* no round's: ctx 0 is a read still waiting */
      if (a->ctx == g->read_out) g->read_out = 0; /* the round is over */
      for (k = 0; k < g->n_reads; k++) {
        if (g->reads[k].ctx != a->ctx || g->reads[k].index != 0) continue;
        if (a->hi == 0) { /* no leader, or not one now: the next round */
          g->reads[k].ctx = 0;
          g->read_later = 1;
        } else {
          g->reads[k].index = a->hi;
          g->reads_ready = 1;
        }
      }
      break;
    }
    default:
      break;
  }
}

static void group_lost(struct core *c, struct group *g, int rc);
static void group_persisted(struct core *c, struct group *g);
static void group_install_try(struct core *c, struct group *g);
static void group_serve_reads(struct core *c, struct group *g);
static void group_note_role(struct group *g, const struct raft_in *in,
                            int role, uint64_t term, uint64_t transfer_to);

/* Feed one input to the core and carry out its actions; then what the
** actions left for after the step (a truncation's synchronous write, a
** storage failure, a snapshot it cannot send).  The core's answer:
** URSULA_OK, or URSULA_EAGAIN for a PROPOSE it refused; g->out.term and
** g->out.index stay those of a PROPOSE. */
static void group_read_round(struct core *c, struct group *g);

/* The round in flight will not be answered, or not by the leader now
** (its READ_INDEX went to another, or was lost): its reads wait for the
** next round, which asks the leader after they arrived, as the first
** would have. */
static void group_read_abandon(struct group *g) {
  size_t k;
  for (k = 0; k < g->n_reads; k++)
    if (g->reads[k].ctx == g->read_out && g->reads[k].index == 0 &&
        !g->reads[k].refused)
      g->reads[k].ctx = 0;
  g->read_out = 0;
}

static int group_step(struct core *c, struct group *g,
                      const struct raft_in *in) {
  size_t i;
  int rc;
  uint64_t term, index, was_leader = g->raft.leader;
  int role = g->raft.role;
  uint64_t was_term = g->raft.term, was_transfer = g->raft.transfer_to;
  g->out.n = 0;
  rc = raft_step(&g->raft, in, &g->out);
  if (g->raft.role != role || g->raft.term != was_term)
    group_note_role(g, in, role, was_term, was_transfer);
  for (i = 0; i < g->out.n; i++) group_act(c, g, &g->out.a[i]);
  term = g->out.term;
  index = g->out.index;
  if (g->owe_rc != URSULA_OK) {
    int e = g->owe_rc;
    g->owe_rc = URSULA_OK;
    g->owe = 0;
    if (g->wal != NULL) wal_abandon(g->wal);
    group_lost(c, g, e);
  } else if (g->owe) {
    g->owe = 0;
    group_persisted(c, g);
  }
  if (g->reads_ready) {
    g->reads_ready = 0;
    group_serve_reads(c, g);
  }
  if (g->read_out != 0 && g->raft.leader != was_leader)
    group_read_abandon(g); /* asked the leader that was */
  if (g->raft.leader != was_leader && g->raft.leader != 0) g->read_later = 0;
  if (g->read_out == 0 && g->n_reads > 0) group_read_round(c, g);
  if (g->install_peer != 0) group_install_try(c, g);
  if (g->snap_refused != 0) {
    struct raft_in f;
    memset(&f, 0, sizeof(f));
    f.type = RAFT_IN_SNAP_FAILED;
    f.peer = g->snap_refused;
    g->snap_refused = 0;
    group_step(c, g, &f);
  }
  g->out.term = term;
  g->out.index = index;
  return rc;
}

static void group_step_type(struct core *c, struct group *g, int type) {
  struct raft_in in;
  memset(&in, 0, sizeof(in));
  in.type = type;
  group_step(c, g, &in);
}

/* A single voter elects itself now: ticks until its election timeout
** (at most 2T) instead of waiting for them. */
static void group_elect(struct core *c, struct group *g) {
  unsigned k;
  if (g->raft.c.n_voters > 1) return; /* a cluster's elect by ticks */
  /* no room in the core's trail for the new term's run (one run per
  ** election since the last snapshot): a snapshot lets the old ones go
  ** (one voter: all of the log is applied once nothing is in flight) */
  if (g->raft.trail_n + 1 >= GROUP_TRAIL_RUNS && g->wal != NULL &&
      !g->in_flight && g->applied_index == g->raft.last_index)
    group_snapshot(g);
  for (k = 0; k <= 2 * GROUP_ELECTION_TICKS; k++) {
    if (g->raft.role == RAFT_LEADER || g->raft.storage_failed) return;
    group_step_type(c, g, RAFT_IN_TICK);
  }
}

/* Start the core from what the log holds (s), and elect.  URSULA_OK,
** or an error with a reason in err. */
static int group_start(struct group *g, const struct raft_saved *s,
                       char *err) {
  struct raft_config rc;
  int e;
  memset(&rc, 0, sizeof(rc));
  if (g->cl.n_voters > 1) {
    rc.cluster_id = g->cl.cluster_id;
    rc.id = g->cl.node;
    memcpy(rc.voters, g->cl.voters, sizeof(rc.voters));
    rc.n_voters = g->cl.n_voters;
  } else {
    rc.id = GROUP_NODE_ID;
    rc.voters[0] = GROUP_NODE_ID;
    rc.n_voters = 1;
  }
  rc.election_ticks = GROUP_ELECTION_TICKS;
  rc.heartbeat_ticks = 1;
  rc.max_inflight_msgs = 256;
  rc.max_inflight_bytes = 8u << 20;
  rc.max_msg_entries = 256;
  rc.max_msg_bytes = 1u << 20;
  rc.trail_cap =
      rc.n_voters > 1 ? GROUP_TRAIL_RUNS_CLUSTER : GROUP_TRAIL_RUNS;
  rc.read_cap = 64;
  rc.commit_notify = 1;
  rc.env = g->env;
  raft_free(&g->raft);
  URSULA_FREE(g->out.a);
  g->out.cap = raft_out_cap(&rc);
  g->out.a = (struct raft_action *)URSULA_MALLOC(g->out.cap *
                                                 sizeof(*g->out.a));
  if (g->out.a == NULL) {
    snprintf(err, URSULA_ERRMSG_LEN, "group %d: out of memory", g->id);
    return URSULA_ENOMEM;
  }
  if ((e = raft_init(&g->raft, &rc, s)) != URSULA_OK) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "group %d: the log's terms do not start a Raft core (%s)", g->id,
             ursula_strerror(e));
    return e;
  }
  g->commit = s->commit;
  memset(g->whys, 0, sizeof(g->whys)); /* a new core: nothing led yet */
  if (rc.n_voters == 1) group_elect(NULL, g); /* a cluster's: by ticks */
  return URSULA_OK;
}

/* loop_close() of a core with a job still in its mailbox. */
static void group_job_drop(struct loop_msg *m) {
  job_free((struct job *)(void *)m);
}

URSULA_PRIVATE struct job *job_new(void) {
  struct job *j = (struct job *)URSULA_MALLOC(sizeof(*j));
  if (j != NULL) {
    memset(j, 0, sizeof(*j));
    j->msg.on_drop = group_job_drop;
  }
  return j;
}

URSULA_PRIVATE void job_free(struct job *j) {
  if (j == NULL) return;
  buf_free(&j->body);
  buf_free(&j->parts);
  buf_free(&j->data);
  buf_free(&j->snap);
  buf_free(&j->attrs);
  URSULA_FREE(j);
}

static void group_on_job(struct loop *l, struct loop_msg *m) {
  struct core *c = (struct core *)loop_get_user(l);
  group_run_job(c, (struct job *)(void *)m);
}

URSULA_PRIVATE struct group *group_of(struct core *c, const char *path,
                                      size_t len) {
  return server_group(c->srv, server_group_of(c->srv, path, len));
}

URSULA_PRIVATE struct stream_state *group_state(struct group *g) {
  return &g->sm;
}

URSULA_PRIVATE void group_send(struct core *c, struct loop_msg *m,
                               const char *path, size_t len) {
  int gid = server_group_of(c->srv, path, len);
  server_send(c, server_owner_of(c->srv, gid), m);
}

URSULA_PRIVATE void group_dispatch(struct core *c, struct job *j) {
  j->msg.on_msg = group_on_job;
  group_send(c, &j->msg, j->path, j->path_len);
}

URSULA_PRIVATE struct group *group_new(int id, int owner_core,
                                       struct env *env) {
  struct group *g = (struct group *)URSULA_MALLOC(sizeof(*g));
  if (g == NULL) return NULL;
  memset(g, 0, sizeof(*g));
  g->id = id;
  g->owner_core = owner_core;
  g->env = env != NULL ? env : env_real();
  stream_state_init(&g->sm);
  { /* in memory until group_open_wal(): a new log, elected at once */
    struct raft_saved empty;
    char err[URSULA_ERRMSG_LEN];
    memset(&empty, 0, sizeof(empty));
    if (group_start(g, &empty, err) != URSULA_OK) {
      group_free(g);
      return NULL;
    }
  }
  return g;
}

/* Replay state: one group's recovery, and the terms of the entries it
** replayed (runs: where each term starts) for the Raft core. */
struct group_replay {
  struct group *g;
  uint64_t started_ms, last_report_ms;
  struct buf runs; /* struct raft_run, ascending */
  int rc;          /* out of memory for runs */
};

static int group_apply_entry(struct core *c, struct group *g,
                             const struct wal_entry *e,
                             struct stream_result *r);
static int group_take_snapshot(struct group *g);

static int group_replay_entry(void *arg, const struct wal_entry *e) {
  struct group_replay *rp = (struct group_replay *)arg;
  struct group *g = rp->g;
  int rc;
  /* no core: effects (wake-ups, fork releases) are not replayed, since
  ** nothing waits yet and the releases a command sent were logged by
  ** their groups */
  /* a cluster's voter does not know what is committed (the commit index
  ** is volatile: Raft paper, Fig. 2): its leader says, and the entries
  ** are applied then (from the log) */
  if (g->cl.n_voters <= 1) {
    if ((rc = group_apply_entry(NULL, g, e, &g->res)) != URSULA_OK) return rc;
    stream_evict(&g->sm, g->hot_max);
  }
  {
    size_t n = rp->runs.len / sizeof(struct raft_run);
    const struct raft_run *last =
        n > 0 ? (const struct raft_run *)(void *)rp->runs.ptr + n - 1 : NULL;
    if (last == NULL || last->term != e->term) {
      struct raft_run run;
      run.index = e->index;
      run.term = e->term;
      if (buf_append(&rp->runs, &run, sizeof(run)) != URSULA_OK)
        return URSULA_ENOMEM;
    }
  }
  if ((e->index & 4095) == 0) {
    uint64_t now = group_mono(g);
    if (now - rp->last_report_ms >= 2000) {
      LOG_I("group %d: recovering, %llu entries so far (%.1f s)", g->id,
            (unsigned long long)(e->index - wal_first_index(g->wal) + 1),
            (double)(now - rp->started_ms) / 1000.0);
      rp->last_report_ms = now;
    }
  }
  return URSULA_OK;
}

/* wal_replay's restore: the state machine from the snapshot. */
static int group_restore(void *arg, const void *p, size_t len) {
  struct group_replay *rp = (struct group_replay *)arg;
  rp->g->snapshot_size = len;
  return stream_restore(&rp->g->sm, p, len);
}

/* Every unit's bytes that are not in the log's segments (below its first
** entry) must be in the snapshot's pieces: refuse to start otherwise. */
static int group_check_pieces(struct group *g, const char *dir, char *err) {
  struct buf units;
  const struct stream_piece *pc;
  size_t i, n;
  int rc;
  memset(&units, 0, sizeof(units));
  rc = stream_log_units(&g->sm, wal_first_index(g->wal), &units);
  pc = (const struct stream_piece *)units.ptr;
  n = rc == URSULA_OK ? units.len / sizeof(*pc) : 0;
  for (i = 0; i < n; i++)
    if (!wal_has_piece(g->wal, pc[i].index, pc[i].off, pc[i].len)) {
      snprintf(err, URSULA_ERRMSG_LEN,
               "group %d: %.1200s: streams read bytes from log entry %llu, "
               "but the log starts at entry %llu and the snapshot does not "
               "carry them: a segment file is missing; not starting "
               "without it",
               g->id, dir, (unsigned long long)pc[i].index,
               (unsigned long long)wal_first_index(g->wal));
      rc = URSULA_ECORRUPT;
      break;
    }
  if (rc == URSULA_ENOMEM)
    snprintf(err, URSULA_ERRMSG_LEN, "group %d: out of memory", g->id);
  buf_free(&units);
  return rc;
}

/* stream_state's read_cold: stream bytes that are only in the WAL. */
static int group_read_cold(void *ctx, const struct stream_loc *loc,
                           uint64_t len, struct buf *out) {
  struct group *g = (struct group *)ctx;
  return wal_read(g->wal, loc->index, loc->off, len, out);
}

/* Start the Raft core from the replayed log: one voter, so everything
** durable is committed and replay applied it all.  A log with more term
** runs than the core remembers (a restart is an election, and one run)
** is first snapshotted, so that its runs start over. */
static int group_start_replayed(struct group *g, struct group_replay *rp,
                                const struct wal_stats *st, char *err) {
  struct raft_saved sv;
  memset(&sv, 0, sizeof(sv));
  sv.snap_index = st->snapshot_index;
  if (sv.snap_index > 0 &&
      wal_term_at(g->wal, sv.snap_index, &sv.snap_term) != URSULA_OK)
    sv.snap_term = g->applied_term;
  sv.runs = (const struct raft_run *)(void *)rp->runs.ptr;
  sv.n_runs = rp->runs.len / sizeof(struct raft_run);
  sv.last_index = wal_last_index(g->wal);
  if (g->cl.n_voters <= 1 && sv.n_runs + 1 >= GROUP_TRAIL_RUNS &&
      group_take_snapshot(g) == URSULA_OK) {
    sv.snap_index = sv.last_index;
    sv.snap_term = g->applied_term;
    sv.n_runs = 0;
  }
  if (sv.last_index == sv.snap_index) {
    sv.n_runs = 0;
    g->applied_term = sv.snap_term;
  }
  sv.term = wal_term(g->wal);
  sv.vote = wal_vote(g->wal) & ~GROUP_VOTE_RECOVERING;
  sv.recovering = (wal_vote(g->wal) & GROUP_VOTE_RECOVERING) != 0;
  if (g->cl.n_voters > 1 && g->cl.lost_log && !GROUP_BUG(3) &&
      sv.last_index == 0 &&
      sv.snap_index == 0 && sv.term == 0)
    sv.recovering = 1; /* an empty log of a member that had one */
  g->recovering = sv.recovering;
  if (sv.recovering)
    LOG_I("group %d: this node lost its log (--lost-log 1): it neither "
          "votes nor campaigns until it holds what the others committed",
          g->id);
  sv.commit = g->cl.n_voters > 1 ? sv.snap_index : sv.last_index;
  g->applied_index = sv.commit;
  /* the in-memory start of group_new() is replaced, not continued */
  g->fill.n = 0;
  g->fill.log.len = 0;
  g->fill.has_hard = 0;
  g->hard_seq = g->hard_durable = 0;
  return group_start(g, &sv, err);
}

URSULA_PRIVATE void group_set_journal(struct group *g, struct journal *j) {
  if (g->wal != NULL) wal_set_journal(g->wal, j, (uint32_t)g->id);
}

URSULA_PRIVATE int group_sync_lazy(struct group *g) {
  return g->wal != NULL ? wal_sync_lazy(g->wal) : 0;
}

URSULA_PRIVATE int group_lazy_open(struct group *g) {
  return g->wal != NULL ? wal_lazy_open(g->wal) : -1;
}

URSULA_PRIVATE int group_open_wal(struct group *g, const char *dir,
                                  int must_exist, uint64_t hot_max,
                                  uint64_t snapshot_bytes,
                                  struct buf *scratch, char *err) {
  struct group_replay rp;
  struct wal_stats st;
  char why[URSULA_ERRMSG_LEN];
  int rc = wal_open(&g->wal, g->env, dir, must_exist, why);
  if (rc != URSULA_OK) {
    snprintf(err, URSULA_ERRMSG_LEN, "group %d: %.1500s", g->id, why);
    return rc;
  }
  g->hot_max = hot_max;
  g->snapshot_bytes = snapshot_bytes;
  g->sm.read_cold = group_read_cold;
  g->sm.read_ctx = g;
  memset(&rp, 0, sizeof(rp));
  rp.g = g;
  rp.started_ms = rp.last_report_ms = group_mono(g);
  why[0] = '\0';
  g->sm.log_only = 1; /* the bytes replayed stay in the log */
  rc = wal_replay(g->wal, group_restore, group_replay_entry, &rp, scratch,
                  &st, why);
  g->sm.log_only = 0;
  if (rc == URSULA_OK) g->replayed_last = wal_last_index(g->wal);
  if (rc != URSULA_OK) {
    buf_free(&rp.runs);
    if (why[0] == '\0')
      snprintf(why, sizeof(why), "%.1400s: %s", dir, ursula_strerror(rc));
    snprintf(err, URSULA_ERRMSG_LEN, "group %d: %.1500s", g->id, why);
    return rc;
  }
  if ((rc = group_check_pieces(g, dir, err)) != URSULA_OK) {
    buf_free(&rp.runs);
    return rc;
  }
  g->res.releases.len = 0;
  g->res.garbage.len = 0; /* the start-up sweep deletes what replay freed */
  rc = group_start_replayed(g, &rp, &st, err);
  buf_free(&rp.runs);
  if (rc != URSULA_OK) return rc;
  if (st.cut_bytes > 0)
    LOG_W(
        "group %d: cut a torn tail: %llu bytes at byte %llu of %s/%020llu.wal "
        "(the last write before a crash; nothing valid followed it)",
        g->id, (unsigned long long)st.cut_bytes, (unsigned long long)st.cut_at,
        dir, (unsigned long long)st.cut_segment);
  if (st.entries > 0)
    LOG_I("group %d: recovered %llu entries (%.1f MB, %d streams) in %llu ms",
          g->id, (unsigned long long)st.entries, (double)st.bytes / 1e6,
          (int)g->sm.n, (unsigned long long)(group_mono(g) - rp.started_ms));
  return URSULA_OK;
}

URSULA_PRIVATE void group_free(struct group *g) {
  if (g == NULL) return;
  tier_free(&g->tier);
  while (g->retry != NULL) {
    struct group_release *rel = g->retry;
    g->retry = (struct group_release *)(void *)rel->msg.next;
    URSULA_FREE(rel);
  }
  buf_free(&g->res.garbage);
  stream_state_free(&g->sm);
  {
    size_t k;
    for (k = 0; k < RAFT_MAX_VOTERS - 1; k++)
      if (g->snap_out[k].peer != 0) wal_image_close(g->wal, g->snap_out[k].fd);
  }
  if (g->snap_in.open) wal_snap_abort(g->wal, &g->snap_in.sw);
  buf_free(&g->snap_buf);
  wal_close(g->wal);
  buf_free(&g->fill.log);
  URSULA_FREE(g->fill.props);
  buf_free(&g->flight.log);
  URSULA_FREE(g->flight.props);
  buf_free(&g->bounds);
  buf_free(&g->res.releases);
  buf_free(&g->res.ops);
  raft_free(&g->raft);
  URSULA_FREE(g->out.a);
  URSULA_FREE(g->outbox);
  while (g->n_in > 0) buf_free(&g->inbox[--g->n_in].records);
  URSULA_FREE(g->inbox);
  URSULA_FREE(g->held);
  URSULA_FREE(g->fwds); /* (their jobs are freed with the core's) */
  buf_free(&g->fwd_buf);
  while (g->n_reads > 0) job_free(g->reads[--g->n_reads].j);
  URSULA_FREE(g->reads);
  buf_free(&g->scratch);
  URSULA_FREE(g);
}

/* ------------------------------------------------------------ effects */

static void group_notify_drop(struct loop_msg *m) {
  struct notify *n = (struct notify *)(void *)m;
  buf_free(&n->data);
  URSULA_FREE(n);
}

/* Wake the live readers of the stream at path on every core in mask. */
static void group_notify(struct core *c, struct group *g, struct str path,
                         const struct stream_result *r) {
  struct stream *s = r->deleted ? NULL : stream_find(&g->sm, path);
  int i;
  for (i = 0; i < c->srv->n_cores && i < 64; i++) {
    struct notify *n;
    if (!(r->watch_mask & ((uint64_t)1 << i))) continue;
    n = (struct notify *)URSULA_MALLOC(sizeof(*n) + path.len);
    if (n == NULL) continue; /* readers time out and retry */
    memset(n, 0, sizeof(*n));
    n->msg.on_msg = live_on_notify;
    n->msg.on_drop = group_notify_drop;
    n->prev_tail = r->prev_tail;
    n->deleted = r->deleted;
    n->path_len = path.len;
    memcpy(n->path, path.ptr, path.len);
    n->path[path.len] = '\0';
    if (s != NULL) {
      n->tail = s->tail;
      n->closed = s->closed;
      if (s->tail > r->prev_tail &&
          stream_read(&g->sm, s, r->prev_tail, s->tail, &n->data) !=
              URSULA_OK) {
        buf_free(&n->data);
        n->prev_tail = n->tail = ~(uint64_t)0; /* readers re-read */
      }
    } else {
      n->tail = r->prev_tail;
    }
    server_send(c, i, &n->msg);
  }
}

static void group_ignore_done(struct core *c, struct group *g,
                              const struct stream_result *r, void *arg);
/* A release arrives at the owner of its source's group (below). */
static void group_on_release(struct loop *l, struct loop_msg *m);

URSULA_PRIVATE void group_send_release(struct core *c, const char *src,
                                       size_t len) {
  struct group_release *rel;
  if (len > URSULA_MAX_PATH_BYTES) return; /* no stream has such a path */
  rel = (struct group_release *)URSULA_MALLOC(sizeof(*rel) + len);
  if (rel == NULL) return; /* the source keeps a reference: see fork.c */
  memset(rel, 0, sizeof(*rel));
  rel->msg.on_msg = group_on_release;
  rel->path_len = len;
  memcpy(rel->path, src, len);
  rel->path[len] = '\0';
  group_send(c, &rel->msg, src, len);
}

/* Send a release for each source path in r->releases. */
static void group_send_releases(struct core *c, const struct stream_result *r) {
  size_t off = 0;
  while (off < r->releases.len) {
    const char *src = r->releases.ptr + off;
    size_t len = strlen(src);
    off += len + 1;
    group_send_release(c, src, len);
  }
}

/* ------------------------------------------------------------ the log */

/* Answer a continuation without a commit (the log refused the entry). */
static void group_refuse(struct core *c, struct group *g, group_done_fn done,
                         void *arg, int status, const char *reason) {
  struct stream_result *r = &g->res;
  memset(r, 0, offsetof(struct stream_result, garbage));
  r->status = status;
  r->reason = reason;
  r->refused = 1;
  done(c, g, r, arg);
}

/* The same for an entry whose outcome is unknown here: it may commit yet
** (503; r->unknown, so that no one acts on its absence: a fork's
** reference is not given back, a release is not proposed again). */
static void group_refuse_unknown(struct core *c, struct group *g,
                                 group_done_fn done, void *arg,
                                 const char *reason) {
  struct stream_result *r = &g->res;
  memset(r, 0, offsetof(struct stream_result, garbage));
  r->status = 503;
  r->reason = reason;
  r->refused = 1;
  r->unknown = 1;
  done(c, g, r, arg);
}

/* Why an entry was refused before anything of it was written. */
static const char *group_wal_reason(int rc) {
  return rc == URSULA_ENOSPC
             ? "write-ahead log: no space left on device; nothing was written"
             : "write-ahead log: I/O error; nothing was written";
}

/* Why an entry whose write or sync failed is not acknowledged: its bytes
** may have reached the disk, so after a restart it may be there. */
static const char *group_lost_reason(int rc) {
  return rc == URSULA_ENOSPC
             ? "write-ahead log: no space left on device; not acknowledged, "
               "and it may or may not be there after a restart (retry with "
               "the same Producer-Id/Epoch/Seq to append it exactly once)"
             : "write-ahead log: I/O error; not acknowledged, and it may or "
               "may not be there after a restart (retry with the same "
               "Producer-Id/Epoch/Seq to append it exactly once)";
}

/* Whether s has expired at now, as this node sees it: its reads count
** (local.read_ms) though the log may not have their TOUCH yet. */
static int group_expired(const struct stream *s, uint64_t now) {
  uint64_t last = s->last_access_ms;
  if (s->local.read_ms > last) last = s->local.read_ms;
  return stream_expired(s, last, now);
}

/* Log the last read of s as a TOUCH if the log does not have it yet, so
** that the TTL window it slid is the same on every replica and after a
** restart. */
static void group_touch(struct core *c, struct group *g, struct stream *s) {
  struct cmd t;
  uint64_t covered = s->last_access_ms, before = g->raft.last_index;
  if (!s->has_ttl || s->soft_deleted) return;
  if (g->cl.n_voters > 1 && g->raft.role != RAFT_LEADER)
    return; /* a follower's reads go to the leader: group_touch_forward */
  /* a TOUCH on its way (proposed, not applied yet, not lost with a
  ** failed write: group_lost forgets those) covers the reads up to it */
  if (s->local.touch_index > g->applied_index && s->local.touch_ms > covered)
    covered = s->local.touch_ms;
  if (s->local.read_ms <= covered) return;
  memset(&t, 0, sizeof(t));
  t.type = CMD_TOUCH;
  t.time_ms = s->local.read_ms;
  t.path.ptr = s->path;
  t.path.len = s->path_len;
  t.incarnation = s->incarnation;
  group_propose(c, g, &t, group_ignore_done, NULL);
  if (g->raft.last_index != before) { /* the log took it */
    s->local.touch_ms = s->local.read_ms;
    s->local.touch_index = g->raft.last_index;
  }
}

/* group_propose(); 1 and the entry's (term, index) if the log took it, 0
** if done was answered with a refusal. */
static int group_propose_at(struct core *c, struct group *g,
                            const struct cmd *cmd, group_done_fn done,
                            void *arg, uint64_t *term, uint64_t *index) {
  struct group_batch *b = &g->fill;
  struct raft_in in;
  size_t off, hdr = g->wal != NULL ? WAL_RECORD_HEADER : 0, n;
  int rc;
  if (cmd->type != CMD_TOUCH && cmd->type != CMD_COLD) {
    /* a read this node saw slides the window first: the command after
    ** it must not find the stream expired that the read kept alive */
    struct stream *s = stream_find(&g->sm, cmd->path);
    if (s != NULL) group_touch(c, g, s);
  }
  if ((g->wal != NULL && wal_failed(g->wal)) || g->storage_failed) {
    group_refuse(c, g, done, arg, 503,
                 "write-ahead log failed; writes are refused until it is "
                 "verified again");
    return 0;
  }
  /* the entry is built in place: (with a WAL) header room, then the
  ** payload, so that the WAL writes it from here without a copy (after
  ** the TOUCH above, if it added one) */
  off = b->log.len;
  rc = buf_reserve(&b->log, hdr);
  if (rc == URSULA_OK) {
    b->log.len += hdr;
    rc = cmd_encode(cmd, &b->log);
  }
  n = b->log.len - off - hdr;
  b->log.len = off; /* group_batch_entry() takes the bytes from here */
  if (rc != URSULA_OK || n > WAL_MAX_RECORD) {
    group_refuse(c, g, done, arg, rc != URSULA_OK ? 503 : 413,
                 rc != URSULA_OK ? "out of memory" : "entry is too large");
    return 0;
  }
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_PROPOSE;
  in.n = 1;
  if (group_step(c, g, &in) != URSULA_OK) {
    group_refuse(c, g, done, arg, 503,
                 "this node does not lead the stream's group now; retry");
    return 0;
  }
  rc = group_batch_entry(g, WAL_CMD, g->out.term, g->out.index, n);
  if (rc != URSULA_OK) {
    group_frame_failed(c, g, rc);
    group_refuse(c, g, done, arg, 503,
                 rc == URSULA_ENOMEM ? "out of memory" : group_wal_reason(rc));
    return 0;
  }
  b->props[b->n - 1].done = done;
  b->props[b->n - 1].arg = arg;
  *term = b->props[b->n - 1].term;
  *index = b->props[b->n - 1].index;
  group_mark_dirty(c, g);
  return 1;
}

URSULA_PRIVATE void group_propose(struct core *c, struct group *g,
                                  const struct cmd *cmd, group_done_fn done,
                                  void *arg) {
  uint64_t term, index;
  group_propose_at(c, g, cmd, done, arg, &term, &index);
}

/* ------------------------------------------------------------ apply */

/* Whether this node carries out the effects of entry e that reach
** beyond it (a release to another group, deleting cold objects): each
** must happen at most once in the cluster, though every node applies e.
** A single node does.  In a cluster, the leader of e's own term does,
** if it still leads when it applies e: there is at most one leader per
** term (paper 5.2), and it never applies e twice (a restart is a new
** term).  If it lost its term first, no node does: a release not sent
** leaves a stale reference (the source is kept, never lost too early),
** and an object not deleted is garbage left in the store -- the known
** price (fork.c), never a second release of one reference. */
static int group_effects_here(const struct group *g,
                              const struct wal_entry *e) {
  if (g->cl.n_voters <= 1) return 1;
  return g->raft.role == RAFT_LEADER && g->raft.term == e->term;
}

/* THE APPLY PATH, the only one: replay (c NULL: no effects), and committed
** entries of this node's proposals (and, with Raft, of a leader's).
** Applies entry e to the state machine, then carries out its effects.
** URSULA_ECORRUPT if a command entry does not decode. */
static int group_apply_entry(struct core *c, struct group *g,
                             const struct wal_entry *e,
                             struct stream_result *r) {
  struct cmd applied;
  URSULA_ASSERT(e->index == g->applied_index + 1 || g->applied_index == 0 ||
                c == NULL);
  g->applied_index = e->index;
  g->applied_term = e->term;
  if (e->type != WAL_CMD) { /* a no-op changes nothing */
    memset(r, 0, offsetof(struct stream_result, garbage));
    r->releases.len = r->garbage.len = r->ops.len = 0;
    return URSULA_OK;
  }
  if (cmd_decode(e->data, e->len, &applied, &g->bounds) != URSULA_OK) {
    LOG_E("group %d: log entry %llu does not decode as a command", g->id,
          (unsigned long long)e->index);
    return URSULA_ECORRUPT;
  }
  if (e->index <= g->replayed_last) { /* in the log at start: there it stays */
    int keep = g->sm.log_only;
    g->sm.log_only = 1;
    stream_apply(&g->sm, e->index, &applied, r);
    g->sm.log_only = keep;
  } else {
    stream_apply(&g->sm, e->index, &applied, r);
  }
  if (c == NULL) return URSULA_OK;
  if (r->notify && r->watch_mask) group_notify(c, g, applied.path, r);
  if (applied.type == CMD_MULTI) { /* each op's stream has its readers */
    size_t k;
    for (k = 0; k + sizeof(struct stream_op) <= r->ops.len;
         k += sizeof(struct stream_op)) {
      struct stream_op o;
      memcpy(&o, r->ops.ptr + k, sizeof(o));
      if (o.r.notify && o.r.watch_mask) group_notify(c, g, o.path, &o.r);
    }
  }
  if (!group_effects_here(g, e)) return URSULA_OK;
  if (r->releases.len) group_send_releases(c, r);
  if (r->garbage.len && g->tier.cold != NULL)
    tier_delete_objects(c, &g->tier, &r->garbage);
  return URSULA_OK;
}

/* SNAPSHOTS IN A CLUSTER (paper §7; issue 14: catch-up by snapshot).
** Every node snapshots its own log as a single node does
** (group_after_apply, group_sweep), but a leader drops no segment that
** an active follower still needs (group_peer_floor), and its core lets go
** of entries only once its WAL has (group_raft_floor; or when the core's
** trail of terms fills): a follower that was down or cut off while the
** segments it lacks were dropped (they held only deleted or moved bytes)
** needs the state itself.  The core then says SEND_SNAPSHOT(peer, hi):
**   - the leader writes an IMAGE of its applied state (wal.c: the
**     snapshot with every stream byte it names, so another node needs
**     nothing else), as of its last applied entry A >= hi (committed, so
**     any such image will do; one image serves every follower while it
**     is at least hi), synchronously on the core, and streams the file
**     in chunks of GROUP_SNAP_CHUNK (peer.c's SNAP_CHUNK: group, the
**     leader's term, A and its term, offset, total, last) at most
**     GROUP_SNAP_TICK_BYTES a tick, while the link takes them
**     (peer_send_snap: a link with over 4 MiB unwritten waits, so
**     heartbeats are never starved);
**   - the follower writes the chunks, in order, to its install file
**     (wal_install_put; a chunk out of order drops it); with the last one
**     whole it steps the SNAPSHOT message the chunks stand for (queued
**     behind a sync in flight, as an AppendEntries is).  If its core asks
**     to INSTALL it (it does not hold the entries already), the install
**     waits until nothing is being written, then wal_install_commit
**     checks the image whole and makes it the log's snapshot (the log
**     after A is kept only if its entry A has the image's term), the
**     state machine is loaded from it (group_load_image), and the core
**     is told SNAP_INSTALLED; its acknowledgment of A, once durable, puts
**     the leader back to replicating from A + 1.
**   - the leader gives up on a stream that made no progress for
**     GROUP_SNAP_STALL_MS (the link is down, the chunks were dropped, or
**     no acknowledgment came): SNAP_FAILED, and its core asks again after
**     its next probe.
** What waited on the follower for entries the image now covers is
** answered as the single apply would have been unable to tell: forwarded
** writes held for an index <= A get 503 "outcome unknown" (their entries
** may be in the image; a retry with producer headers is exactly-once);
** reads waiting for their barrier are served from the new state; live
** readers of each stream are woken with what the new state holds. */

#define GROUP_SNAP_CHUNK ((size_t)256 << 10)
#define GROUP_SNAP_TICK_BYTES ((uint64_t)8 << 20) /* ~80 MB/s a group */
#define GROUP_SNAP_STALL_MS 10000

/* The last entry a cluster's leader lets its log compact to: its applied
** entry, but not past what an active follower holds (one that is down or
** cut off is not waited for: it gets a snapshot).  A follower's or a
** single node's: its applied entry. */
static uint64_t group_peer_floor(const struct group *g) {
  uint64_t f = g->applied_index;
  unsigned i;
  if (g->cl.n_voters <= 1 || g->raft.role != RAFT_LEADER) return f;
  for (i = 0; i < g->raft.n_peers; i++) {
    const struct raft_peer *p = &g->raft.peers[i];
    if (p->active && p->state != RAFT_SNAPSHOTTING && p->match < f)
      f = p->match;
  }
  return f;
}

/* What a cluster's Raft core lets go of (COMPACTED): the entries the WAL
** no longer holds, so that a follower behind gets entries while the log
** still has them (most stay: they hold the streams' bytes); everything
** applied once the core's trail of terms is half full. */
static uint64_t group_raft_floor(const struct group *g) {
  uint64_t x = wal_first_index(g->wal) - 1;
  if (2 * g->raft.trail_n >= g->raft.c.trail_cap) x = g->applied_index;
  return x < g->applied_index ? x : g->applied_index;
}

/* The last entry that WAL compaction may cover: everything applied, but
** not the segment of the oldest bytes a stream still reads from the log's
** segments (those before it hold only deleted or moved data, or bytes the
** snapshot carries as pieces), nor what a leader's followers still need
** (group_peer_floor). */
static uint64_t group_compact_upto(struct group *g) {
  uint64_t oldest = stream_oldest_index(&g->sm, wal_first_index(g->wal));
  uint64_t upto = oldest <= g->applied_index ? oldest - 1 : g->applied_index;
  uint64_t floor = group_peer_floor(g);
  return floor < upto ? floor : upto;
}

/* Write g's state as of the last applied entry through sw (begun at that
** entry): the payload, then as pieces the bytes of every unit whose
** entry is below `below`, read from the log (or the pieces of the
** snapshot before).  URSULA_OK or an error (sw is then aborted). */
static int group_write_snapshot(struct group *g, struct wal_snap_writer *sw,
                                uint64_t below, uint64_t *payload) {
  struct buf b, units;
  const struct stream_piece *pc;
  size_t i, n, off = 0;
  int rc;
  memset(&b, 0, sizeof(b));
  memset(&units, 0, sizeof(units));
  rc = stream_snapshot(&g->sm, &b);
  *payload = b.len;
  while (rc == URSULA_OK && off < b.len) { /* in chunks, as a sender would */
    size_t k = b.len - off < WAL_SNAP_CHUNK ? b.len - off : WAL_SNAP_CHUNK;
    rc = wal_snap_put(sw, b.ptr + off, k);
    off += k;
  }
  if (rc == URSULA_OK) rc = stream_log_units(&g->sm, below, &units);
  pc = (const struct stream_piece *)units.ptr;
  n = rc == URSULA_OK ? units.len / sizeof(*pc) : 0;
  for (i = 0; i < n && rc == URSULA_OK; i++) {
    b.len = 0;
    rc = wal_read(g->wal, pc[i].index, pc[i].off, pc[i].len, &b);
    if (rc == URSULA_OK)
      rc = wal_snap_piece(sw, pc[i].index, pc[i].off, b.ptr, b.len);
  }
  buf_free(&b);
  buf_free(&units);
  if (rc == URSULA_OK) rc = wal_snap_commit(g->wal, sw);
  if (rc != URSULA_OK) wal_snap_abort(g->wal, sw);
  return rc;
}

/* Write a snapshot of the state machine as of the last applied entry,
** then drop the WAL segments that nothing needs any more: those wholly
** before the snapshot that hold no unit's bytes.  The snapshot carries
** the bytes the state names below the log's first entry (after an
** install, the pieces of the image). */
static int group_take_snapshot(struct group *g) {
  struct wal_snap_writer sw;
  uint64_t t0 = group_mono(g), size = 0;
  int rc = wal_snap_begin(g->wal, &sw, g->applied_index, g->applied_term);
  if (rc == URSULA_OK)
    rc = group_write_snapshot(g, &sw, wal_first_index(g->wal), &size);
  if (rc != URSULA_OK) {
    LOG_W("group %d: snapshot failed (%s); replay stays longer", g->id,
          ursula_strerror(rc));
    return rc;
  }
  g->snapshot_size = size;
  g->tier.moved = 0;
  rc = wal_compact(g->wal, group_compact_upto(g));
  LOG_D("group %d: snapshot at entry %llu (%llu bytes) in %llu ms%s", g->id,
        (unsigned long long)g->applied_index,
        (unsigned long long)g->snapshot_size,
        (unsigned long long)(group_mono(g) - t0),
        rc == URSULA_OK ? "" : "; compaction failed");
  (void)t0;
  return URSULA_OK;
}

URSULA_PRIVATE int group_snapshot(struct group *g) {
  struct raft_in in;
  int rc = group_take_snapshot(g);
  if (rc != URSULA_OK) return rc;
  /* the core lets go of the terms the snapshot covers (its trail); a
  ** cluster's leader of those its followers still need only later, so
  ** that it sends them entries, not the snapshot */
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_COMPACTED;
  in.term = g->applied_term;
  in.index = g->applied_index;
  if (g->cl.n_voters > 1) {
    in.index = group_raft_floor(g);
    if (!raft_term_at(&g->raft, in.index, &in.term)) return URSULA_OK;
  }
  group_step(NULL, g, &in);
  return URSULA_OK;
}

/* An image of g's applied state through sw, begun by begin (the file
** "image" or "backup"): the payload and every byte the state names,
** whether the log holds it or the snapshot's pieces do. */
static int group_write_image_with(struct group *g,
                                  int (*begin)(struct wal *,
                                               struct wal_snap_writer *,
                                               uint64_t, uint64_t)) {
  struct wal_snap_writer sw;
  uint64_t size = 0;
  int rc;
  if (g->wal == NULL || g->applied_index == 0) return URSULA_EINVAL;
  rc = begin(g->wal, &sw, g->applied_index, g->applied_term);
  if (rc != URSULA_OK) return rc;
  return group_write_snapshot(g, &sw, g->applied_index + 1, &size);
}

URSULA_PRIVATE int group_write_image(struct group *g) {
  return group_write_image_with(g, wal_image_begin);
}

/* After applying: keep memory bounded, and snapshot once the log since
** the last snapshot outgrows both the setting and twice the snapshot
** itself (so rewriting it costs at most half of what the log grew); or
** once as much has moved to the cold tier (so the WAL can let it go). */
static void group_after_apply(struct group *g) {
  if (g->wal == NULL) return;
  stream_evict(&g->sm, g->hot_max);
  if ((wal_bytes_since_snapshot(g->wal) >= g->snapshot_bytes &&
       wal_bytes_since_snapshot(g->wal) >= 2 * g->snapshot_size) ||
      (g->tier.moved >= g->snapshot_bytes &&
       g->tier.moved >= 2 * g->snapshot_size))
    group_snapshot(g);
}

/* Batch b's entry at index i, or NULL (its entries have consecutive
** indexes). */
static const struct group_prop *group_batch_at(const struct group_batch *b,
                                               uint64_t i) {
  const struct group_prop *p;
  if (b->n == 0 || i < b->props[0].index || i - b->props[0].index >= b->n)
    return NULL;
  p = &b->props[i - b->props[0].index];
  return p->index == i ? p : NULL;
}

/* Entry i of the log for the apply: from the flight batch if it holds
** it (and it was not replaced since), else read back from the WAL. */
static int group_entry(struct group *g, uint64_t i, struct wal_entry *e) {
  const struct group_batch *b = &g->flight;
  const struct group_prop *p = group_batch_at(b, i);
  uint64_t t;
  if (p != NULL && raft_term_at(&g->raft, i, &t) && t == p->term) {
    e->term = p->term;
    e->index = p->index;
    e->type = p->type;
    e->data = b->log.ptr + p->off;
    e->len = p->len;
    return URSULA_OK;
  }
  if (g->wal == NULL) return URSULA_ENOTFOUND;
  return wal_entry_at(g->wal, i, e);
}

/* Answer the proposals waiting for entry e, now applied with result r
** (g->res): by (term, index), its result if e is the proposal's own
** entry, else 503 (another leader's entry took the index: the proposal
** was not applied, a retry is safe).  held[held_head..n_held) is
** ascending by index; it grows only at a persist (group_hold), never in
** a continuation, so answering from its front is safe. */
static void group_answer(struct core *c, struct group *g,
                         const struct wal_entry *e) {
  while (g->held_head < g->n_held && g->held[g->held_head].index <= e->index) {
    struct group_wait w = g->held[g->held_head++];
    if (w.index == e->index && w.term == e->term)
      w.done(c, g, &g->res, w.arg);
    else
      group_refuse(c, g, w.done, w.arg, 503,
                   "the entry was replaced by another leader's and not "
                   "applied; a retry is safe");
  }
  if (g->held_head == g->n_held) g->held_head = g->n_held = 0;
}

/* Apply the committed entries, in index order, up to the commit index
** and no further than what is durable here, and answer the proposals
** waiting for them (group_answer). */
static void group_apply_committed(struct core *c, struct group *g) {
  uint64_t upto = g->commit < g->raft.durable_index ? g->commit
                                                     : g->raft.durable_index;
  if (GROUP_BUG(1) && g->raft.role == RAFT_LEADER) /* the PLANTED BUG: */
    upto = g->raft.durable_index; /* applied and answered uncommitted */
  while (g->applied_index < upto) {
    struct wal_entry e;
    uint64_t i = g->applied_index + 1;
    int rc = group_entry(g, i, &e);
    if (rc != URSULA_OK) { /* damage: stop here, never apply around it */
      LOG_E("group %d: committed entry %llu cannot be read (%s); nothing "
            "after it is applied",
            g->id, (unsigned long long)i, ursula_strerror(rc));
      break;
    }
    if (group_apply_entry(c, g, &e, &g->res) != URSULA_OK) {
      LOG_E("group %d: a committed entry does not decode", g->id);
      abort(); /* the encoder and decoder disagree: a bug, not bad input */
    }
    group_answer(c, g, &e);
  }
  group_after_apply(g);
  if (g->n_reads > 0) group_serve_reads(c, g);
}

/* The flight batch's proposals are durable here: they wait in held for
** their commit (and so do writes this node forwarded, once the leader
** said where it put them).  A wait at an index some held one has too (or
** below) means the log was cut there (here, or at the leader that took
** a later forward): those held from it on can never commit with their
** term (leader completeness: the leader that gave the lower index does
** not hold them), and are answered 503 now. */
static void group_hold_one(struct core *c, struct group *g,
                           group_done_fn done, void *arg, uint64_t term,
                           uint64_t index) {
  struct group_wait *h;
  while (g->n_held > g->held_head && g->held[g->n_held - 1].index >= index) {
    struct group_wait w = g->held[--g->n_held];
    group_refuse(c, g, w.done, w.arg, 503,
                 "the entry was replaced by another leader's and not "
                 "applied; a retry is safe");
  }
  if (g->n_held == g->cap_held && g->held_head > 0) { /* slide down */
    memmove(g->held, g->held + g->held_head,
            (g->n_held - g->held_head) * sizeof(*g->held));
    g->n_held -= g->held_head;
    g->held_head = 0;
  }
  if (g->n_held == g->cap_held) {
    size_t cap = g->cap_held ? g->cap_held * 2 : 16;
    h = (struct group_wait *)URSULA_REALLOC(g->held, cap * sizeof(*h));
    if (h == NULL) abort(); /* (answers owed: out of memory aborts) */
    g->held = h;
    g->cap_held = cap;
  }
  h = &g->held[g->n_held++];
  h->ticks = 0;
  h->done = done;
  h->arg = arg;
  h->term = term;
  h->index = index;
}

static void group_hold(struct core *c, struct group *g) {
  struct group_batch *b = &g->flight;
  size_t i;
  for (i = 0; i < b->n; i++) {
    const struct group_prop *p = &b->props[i];
    if (p->done != NULL)
      group_hold_one(c, g, p->done, p->arg, p->term, p->index);
  }
}

/* Refuse every proposal of batch b: their entries are not in the log
** (unknown 0), or, in a cluster, may have reached other nodes' logs and
** commit there yet (unknown 1). */
static void group_refuse_batch(struct core *c, struct group *g,
                               struct group_batch *b, const char *reason,
                               int unknown) {
  size_t i, n = b->n, cap = b->cap;
  struct group_prop *props = b->props;
  /* continuations may propose again: into a fresh fill batch */
  b->props = NULL;
  b->n = b->cap = 0;
  b->log.len = 0;
  b->has_hard = 0;
  for (i = 0; i < n; i++)
    if (props[i].done == NULL) /* (a no-op has no one to answer) */
      continue;
    else if (unknown)
      group_refuse_unknown(c, g, props[i].done, props[i].arg, reason);
    else
      group_refuse(c, g, props[i].done, props[i].arg, 503, reason);
  if (b->props == NULL) {
    b->props = props; /* keep the array */
    b->cap = cap;
  } else {
    URSULA_FREE(props);
  }
}

/* A write or sync failed, or a record could not be framed: nothing of
** flight (nor of fill, framed after it) is durable.  The core is told
** (R5: it steps down and takes nothing until the log is verified again,
** group_sweep); every proposal of both batches is refused. */
static void group_lost(struct core *c, struct group *g, int rc) {
  size_t n = g->flight.n + g->fill.n;
  g->wal_error = rc;
  if (!g->storage_failed) {
    g->storage_failed = 1;
    group_step_type(c, g, RAFT_IN_STORAGE_FAILED);
  }
  LOG_E(
      "group %d: WAL write failed (%s): %lu writes refused; the group "
      "takes no writes until its log is verified again",
      g->id, ursula_strerror(rc), (unsigned long)n);
  (void)n; /* when logging is compiled out */
  g->in_flight = 0;
  { /* TOUCHes on their way were lost too: the sweep proposes them anew */
    size_t k;
    struct stream *s;
    for (k = 0; k < g->sm.cap; k++)
      for (s = g->sm.slots[k]; s != NULL; s = s->hnext)
        s->local.touch_index = 0;
  }
  /* flight was written (perhaps in part) when it failed; fill was not.
  ** A cluster's leader sends entries while it writes them (thesis
  ** 10.2.1), so both may be in other nodes' logs: outcome unknown */
  group_refuse_batch(c, g, &g->flight, group_lost_reason(rc),
                     g->cl.n_voters > 1);
  group_refuse_batch(c, g, &g->fill, group_wal_reason(rc), g->cl.n_voters > 1);
}

/* The record bytes of entry i for a message: from a batch (framed, not
** necessarily durable yet: the leader sends while it writes, thesis
** 10.2.1) or read back from the WAL, appended to out. */
static int group_entry_record(struct group *g, uint64_t i, struct buf *out) {
  const struct group_batch *bs[2];
  struct wal_entry e;
  int k, rc;
  bs[0] = &g->fill;
  bs[1] = &g->flight;
  for (k = 0; k < 2; k++) {
    const struct group_prop *p = group_batch_at(bs[k], i);
    if (p != NULL)
      return buf_append(out, bs[k]->log.ptr + p->off - WAL_RECORD_HEADER,
                        WAL_RECORD_HEADER + p->len);
  }
  if ((rc = wal_entry_at(g->wal, i, &e)) != URSULA_OK) return rc;
  return wal_record_put(out, &e);
}

/* Hand one message to the transport, with the records of the entries
** an APPEND carries; one that cannot be built is dropped (Raft sends
** again). */
static void group_transmit(struct group *g, const struct raft_msg *m) {
  uint64_t i;
  int rc = URSULA_OK;
  g->scratch.len = 0;
  if (m->type == RAFT_MSG_APPEND)
    for (i = m->index + 1; i <= m->index + m->n && rc == URSULA_OK; i++)
      rc = group_entry_record(g, i, &g->scratch);
  if (rc != URSULA_OK) {
    LOG_W("group %d: an AppendEntries to node %llu was dropped: entries "
          "from %llu could not be read (%s)",
          g->id, (unsigned long long)m->to,
          (unsigned long long)m->index + 1, ursula_strerror(rc));
    return;
  }
  g->cl.send(g->cl.arg, g, m, g->scratch.ptr, g->scratch.len);
}

/* Hand the queued messages to the transport, in order, each once it may
** go: R1 (the hard state framed before it is durable) and R2 (entry
** (after_term, after_index) is durable here; if that entry was replaced
** meanwhile, the message is dropped).  The first that must wait stops
** the rest (answers keep their order). */
static void group_flush_out(struct group *g) {
  size_t k = 0;
  while (k < g->n_out) {
    const struct group_send *q = &g->outbox[k];
    if (q->hard_seq > g->hard_durable) break;
    if (q->after_index != 0) {
      uint64_t t;
      /* replaced or cut first: an entry a failed write lost (the core's
      ** log was cut back to the durable end at STORAGE_RECOVERED) never
      ** becomes durable, and waiting for it held every later message */
      if (!raft_term_at(&g->raft, q->after_index, &t) ||
          t != q->after_term) {
        k++; /* replaced: dropped */
        continue;
      }
      if (q->after_index > g->raft.durable_index) break;
    }
    group_transmit(g, &q->msg);
    k++;
  }
  if (k > 0) {
    memmove(g->outbox, g->outbox + k, (g->n_out - k) * sizeof(*g->outbox));
    g->n_out -= k;
  }
}

static void group_step_msg(struct core *c, struct group *g,
                           const struct raft_msg *m, const void *records,
                           size_t len) {
  struct raft_in in;
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_MSG;
  in.msg = m;
  g->in_records = records;
  g->in_len = len;
  group_step(c, g, &in);
  g->in_records = NULL;
  g->in_len = 0;
}

/* Step the AppendEntries that waited for the sync, once none is in
** flight (one may start a synchronous write: group_truncate). */
static void group_drain_inbox(struct core *c, struct group *g) {
  size_t k = 0;
  if (g->draining) return; /* (a truncation's write persists in a step) */
  g->draining = 1;
  while (k < g->n_in && !g->in_flight) {
    struct group_inmsg *q = &g->inbox[k++];
    group_step_msg(c, g, &q->msg, q->records.ptr, q->records.len);
    buf_free(&q->records);
  }
  if (k > 0) {
    memmove(g->inbox, g->inbox + k, (g->n_in - k) * sizeof(*g->inbox));
    g->n_in -= k;
  }
  g->draining = 0;
}

/* The flight batch is durable: tell the core its hard state and its
** last entry are (STATE_DURABLE, LOG_DURABLE), hold its proposals for
** their commit, apply what is committed, and let out the messages that
** waited for this. */
static void group_persisted(struct core *c, struct group *g) {
  struct group_batch *b = &g->flight;
  struct raft_in in;
  if (b->has_hard) {
    memset(&in, 0, sizeof(in));
    in.type = RAFT_IN_STATE_DURABLE;
    in.term = b->hard_term;
    in.vote = b->hard_vote;
    g->hard_durable = b->hard_seq;
    b->has_hard = 0;
    group_step(c, g, &in);
  }
  if (b->n > 0) {
    memset(&in, 0, sizeof(in));
    in.type = RAFT_IN_LOG_DURABLE;
    in.term = b->props[b->n - 1].term;
    in.index = b->props[b->n - 1].index;
    group_step(c, g, &in);
  }
  group_hold(c, g);
  group_apply_committed(c, g); /* (reads the flight batch where it can) */
  b->n = 0;
  b->log.len = 0;
  g->in_flight = 0;
  if (g->n_out > 0) group_flush_out(g);
  if (g->n_in > 0) group_drain_inbox(c, g);
  if (g->install_peer != 0) group_install_try(c, g);
}

static int group_fill_pending(const struct group *g) {
  return g->fill.n > 0 || g->fill.has_hard;
}

URSULA_PRIVATE int group_id(const struct group *g) {
  return g->id;
}

URSULA_PRIVATE int group_in_flight(const struct group *g) {
  return g->in_flight;
}

URSULA_PRIVATE int group_drive(struct core *c, struct group *g) {
  struct group_batch tmp;
  int rc, fd = -1;
  g->dirty = 0;
  if (g->n_out > 0) group_flush_out(g); /* before this turn's write */
  if (g->in_flight) return -1;
  if (g->wal != NULL && wal_failed(g->wal) && !g->storage_failed) {
    group_lost(c, g, URSULA_EIO); /* a record could not be framed */
    return -1;
  }
  if (group_fill_pending(g)) {
    /* hand the fill batch to the log store; the next one fills the spare
    ** buffers */
    tmp = g->flight;
    g->flight = g->fill;
    g->fill = tmp;
    g->in_flight = 1;
    if (g->wal == NULL) {
      group_persisted(c, g); /* memory: durable at once */
    } else if ((rc = wal_write(g->wal, g->flight.log.ptr,
                               g->flight.log.len)) != URSULA_OK) {
      group_lost(c, g, rc);
      return -1;
    } else if ((fd = wal_flush_fd(g->wal)) < 0) {
      group_persisted(c, g); /* nothing to sync */
    }
    return fd; /* the caller syncs it: group_synced */
  }
  if (g->commit > g->applied_index) group_apply_committed(c, g);
  return -1;
}

URSULA_PRIVATE void group_synced(struct core *c, struct group *g,
                                 int sync_errno) {
  int rc = wal_flush_done(g->wal, sync_errno);
  if (rc != URSULA_OK) {
    group_lost(c, g, rc);
    return;
  }
  group_persisted(c, g);
  if (group_fill_pending(g) || g->n_out > 0)
    group_mark_dirty(c, g); /* proposed or sent meanwhile */
}

URSULA_PRIVATE int group_join(struct group *g, const struct group_cluster *cl) {
  unsigned i, j, self = 0;
  if (cl->n_voters != 1 && cl->n_voters != 3 && cl->n_voters != 5)
    return URSULA_EINVAL;
  for (i = 0; i < cl->n_voters; i++) {
    if (cl->voters[i] == 0) return URSULA_EINVAL;
    if (cl->voters[i] == cl->node) self++;
    for (j = 0; j < i; j++)
      if (cl->voters[j] == cl->voters[i]) return URSULA_EINVAL;
  }
  if (self != 1) return URSULA_EINVAL;
  g->cl = *cl;
  for (i = 1; i < cl->n_voters; i++) /* ascending: alike on every node */
    for (j = i; j > 0 && g->cl.voters[j - 1] > g->cl.voters[j]; j--) {
      uint64_t t = g->cl.voters[j];
      g->cl.voters[j] = g->cl.voters[j - 1];
      g->cl.voters[j - 1] = t;
    }
  return URSULA_OK;
}

/* LEADERSHIP SPREAD (issue 14: every node leads about G/N groups, so all
** share the writes).  Group g prefers the (g mod N)-th voter in id order.
** Once a second its leader, if it is not that node, hands leadership
** over (TRANSFER: thesis 3.10; the core catches the target up, sends
** TimeoutNow, and gives up after an election timeout) -- only while the
** preferred node is heard from and holds the whole log, so a node that
** is down costs no failed transfers; after a failure heals, leadership
** comes back to it.  All nodes prefer the same node: it is a function
** of g and the voters.  A node that is stopping (its messages say
** LEAVING: raft.c) is not handed anything until it is heard from again
** without the flag (a restart); the core refuses such a TRANSFER too. */
static void group_spread(struct core *c, struct group *g) {
  uint64_t want;
  unsigned i;
  if (g->cl.n_voters <= 1 || g->raft.role != RAFT_LEADER ||
      g->raft.transfer_to != 0)
    return;
  want = g->cl.voters[(unsigned)g->id % g->cl.n_voters];
  if (want == g->cl.node) return;
  for (i = 0; i < g->raft.n_peers; i++) {
    const struct raft_peer *p = &g->raft.peers[i];
    if (p->id == want && p->active && !p->leaving &&
        p->match == g->raft.last_index) {
      struct raft_in in;
      memset(&in, 0, sizeof(in));
      in.type = RAFT_IN_TRANSFER;
      in.peer = want;
      group_step(c, g, &in);
      LOG_D("group %d: leadership to node %llu, which it prefers", g->id,
            (unsigned long long)want);
      return;
    }
  }
}

URSULA_PRIVATE int group_leave(struct core *c, struct group *g) {
  struct raft_in in;
  uint64_t was = g->raft.transfer_to;
  int rc;
  if (g->cl.n_voters <= 1) return GROUP_LEAVE_NONE;
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_LEAVE;
  rc = group_step(c, g, &in);
  if (g->raft.role != RAFT_LEADER) return GROUP_LEAVE_NONE;
  if (rc == URSULA_EAGAIN) return GROUP_LEAVE_STUCK; /* all leaving */
  if (g->raft.transfer_to != 0 && g->raft.transfer_to != was)
    LOG_D("group %d: stopping: leadership to node %llu", g->id,
          (unsigned long long)g->raft.transfer_to);
  return GROUP_LEAVE_LED;
}

URSULA_PRIVATE void group_stay(struct core *c, struct group *g) {
  if (g->cl.n_voters > 1) group_step_type(c, g, RAFT_IN_STAY);
}

URSULA_PRIVATE void group_recv(struct core *c, struct group *g,
                               const struct raft_msg *m, const void *records,
                               size_t len) {
  if ((m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_SNAPSHOT) &&
      (g->in_flight || g->n_in > 0)) {
    struct group_inmsg *q;
    if (g->n_in == g->cap_in) {
      size_t cap = g->cap_in ? g->cap_in * 2 : 8;
      q = (struct group_inmsg *)URSULA_REALLOC(g->inbox, cap * sizeof(*q));
      if (q == NULL) return; /* dropped: the leader sends again */
      g->inbox = q;
      g->cap_in = cap;
    }
    q = &g->inbox[g->n_in];
    memset(q, 0, sizeof(*q));
    q->msg = *m;
    if (buf_append(&q->records, records, len) != URSULA_OK) {
      buf_free(&q->records);
      return;
    }
    g->n_in++;
    return;
  }
  group_step_msg(c, g, m, records, len);
}

/* SNAPSHOTS IN A CLUSTER: sending and installing (the rules are above
** group_peer_floor). */

static struct group_snap_out *group_snap_slot(struct group *g,
                                              uint64_t peer) {
  size_t k;
  struct group_snap_out *free_slot = NULL;
  for (k = 0; k < RAFT_MAX_VOTERS - 1; k++) {
    if (g->snap_out[k].peer == peer) return &g->snap_out[k];
    if (g->snap_out[k].peer == 0 && free_slot == NULL)
      free_slot = &g->snap_out[k];
  }
  return free_slot;
}

/* Close o's stream; the image file goes with the last one (it holds a
** copy of every byte of the group's streams). */
static void group_snap_close(struct group *g, struct group_snap_out *o) {
  size_t k;
  wal_image_close(g->wal, o->fd);
  memset(o, 0, sizeof(*o));
  for (k = 0; k < RAFT_MAX_VOTERS - 1; k++)
    if (g->snap_out[k].peer != 0) return;
  wal_image_remove(g->wal);
  g->image_index = g->image_term = 0;
}

/* SEND_SNAPSHOT(peer, hi): an image at hi or later, opened for the
** stream (pumped by group_snap_tick); if none can be made or opened, the
** core is told SNAP_FAILED after the step. */
static void group_snap_start(struct group *g, const struct raft_action *a) {
  struct group_snap_out *o;
  int rc = URSULA_OK;
  if (g->wal == NULL || g->cl.send_snap == NULL ||
      (o = group_snap_slot(g, a->peer)) == NULL) {
    g->snap_refused = a->peer;
    return;
  }
  if (o->peer != 0) group_snap_close(g, o); /* asked again: start over */
  if (g->image_index < a->hi || g->image_index == 0) {
    uint64_t t0 = group_mono(g);
    rc = group_write_image(g);
    if (rc == URSULA_OK) {
      g->image_index = g->applied_index;
      g->image_term = g->applied_term;
      LOG_I("group %d: wrote a snapshot image at entry %llu in %llu ms",
            g->id, (unsigned long long)g->image_index,
            (unsigned long long)(group_mono(g) - t0));
    }
    (void)t0;
  }
  if (rc == URSULA_OK) rc = wal_image_open(g->wal, &o->fd, &o->bytes);
  if (rc != URSULA_OK) {
    LOG_W("group %d: no snapshot image for node %llu (%s); it stays "
          "behind until the next try",
          g->id, (unsigned long long)a->peer, ursula_strerror(rc));
    memset(o, 0, sizeof(*o));
    g->snap_refused = a->peer;
    return;
  }
  o->peer = a->peer;
  o->at = 0;
  o->index = g->image_index;
  o->term = g->image_term;
  o->moved_ms = group_mono(g);
  LOG_I("group %d: node %llu is behind the log's first entry: sending it "
        "a snapshot image (entry %llu, %llu bytes)",
        g->id, (unsigned long long)o->peer, (unsigned long long)o->index,
        (unsigned long long)o->bytes);
}

/* Send what the link takes of o's image, at most GROUP_SNAP_TICK_BYTES.
** URSULA_OK, or an error reading the file (the stream is dropped). */
static int group_snap_pump(struct group *g, struct group_snap_out *o) {
  uint64_t sent = 0;
  if (buf_reserve(&g->snap_buf, GROUP_SNAP_CHUNK) != URSULA_OK)
    return URSULA_ENOMEM;
  while (o->at < o->bytes && sent < GROUP_SNAP_TICK_BYTES) {
    struct peer_snap ps;
    size_t n = o->bytes - o->at < GROUP_SNAP_CHUNK ? (size_t)(o->bytes - o->at)
                                                   : GROUP_SNAP_CHUNK;
    long k = wal_image_read(g->wal, o->fd, g->snap_buf.ptr, n, o->at);
    if (k != (long)n) return URSULA_EIO;
    memset(&ps, 0, sizeof(ps));
    ps.group = g->id;
    ps.term = g->raft.term;
    ps.snap_index = o->index;
    ps.snap_term = o->term;
    ps.offset = o->at;
    ps.total = o->bytes;
    ps.last = o->at + n == o->bytes;
    ps.data = (const unsigned char *)g->snap_buf.ptr;
    ps.len = n;
    if (g->cl.send_snap(g->cl.arg, g, o->peer, &ps) != URSULA_OK) break;
    o->at += n;
    sent += n;
    o->moved_ms = group_mono(g);
  }
  return URSULA_OK;
}

/* Each tick: the images being sent go on; one whose follower has
** acknowledged it (its core no longer snapshots it), or whose leader no
** longer leads, is closed; one stalled for GROUP_SNAP_STALL_MS fails. */
static void group_snap_tick(struct core *c, struct group *g) {
  size_t k;
  for (k = 0; k < RAFT_MAX_VOTERS - 1; k++) {
    struct group_snap_out *o = &g->snap_out[k];
    const struct raft_peer *p = NULL;
    unsigned i;
    int rc;
    if (o->peer == 0) continue;
    for (i = 0; i < g->raft.n_peers; i++)
      if (g->raft.peers[i].id == o->peer) p = &g->raft.peers[i];
    if (g->raft.role != RAFT_LEADER || p == NULL ||
        p->state != RAFT_SNAPSHOTTING) {
      if (p != NULL && p->match >= o->index)
        LOG_I("group %d: node %llu installed the snapshot image (entry "
              "%llu)",
              g->id, (unsigned long long)o->peer,
              (unsigned long long)o->index);
      group_snap_close(g, o);
      continue;
    }
    rc = group_snap_pump(g, o);
    if (rc != URSULA_OK ||
        group_mono(g) - o->moved_ms >= GROUP_SNAP_STALL_MS) {
      struct raft_in in;
      LOG_W("group %d: the snapshot image for node %llu %s; trying again",
            g->id, (unsigned long long)o->peer,
            rc != URSULA_OK ? "could not be read" : "made no progress");
      memset(&in, 0, sizeof(in));
      in.type = RAFT_IN_SNAP_FAILED;
      in.peer = o->peer;
      group_snap_close(g, o);
      group_step(c, g, &in);
    }
  }
}

static void group_snap_in_drop(struct group *g) {
  if (g->snap_in.open) wal_snap_abort(g->wal, &g->snap_in.sw);
  memset(&g->snap_in, 0, sizeof(g->snap_in));
}

URSULA_PRIVATE void group_recv_snap(struct core *c, struct group *g,
                                    uint64_t from,
                                    const struct peer_snap *sn) {
  struct group_snap_in *in = &g->snap_in;
  struct raft_msg m;
  if (g->wal == NULL || g->cl.n_voters <= 1 || sn->term < g->raft.term)
    return; /* a deposed leader's */
  if (sn->offset == 0) { /* a stream starts (or starts over) */
    group_snap_in_drop(g);
    if (wal_install_begin(g->wal, &in->sw) != URSULA_OK) {
      LOG_W("group %d: cannot write a snapshot image to install", g->id);
      return;
    }
    in->open = 1;
    in->from = from;
    in->term = sn->term;
    in->index = sn->snap_index;
    in->snap_term = sn->snap_term;
    in->total = sn->total;
  } else if (!in->open || in->complete || in->from != from ||
             in->term != sn->term || in->index != sn->snap_index ||
             in->total != sn->total || sn->offset != in->at) {
    return; /* a gap or another stream's: its leader starts over */
  }
  if (wal_install_put(&in->sw, sn->offset, sn->data, sn->len) != URSULA_OK) {
    LOG_W("group %d: writing a snapshot image to install failed", g->id);
    group_snap_in_drop(g);
    return;
  }
  in->at += sn->len;
  if (!sn->last) return;
  if (in->at != in->total) {
    group_snap_in_drop(g);
    return;
  }
  in->complete = 1;
  memset(&m, 0, sizeof(m));
  m.cluster_id = g->cl.cluster_id;
  m.from = from;
  m.to = g->cl.node;
  m.term = sn->term;
  m.type = RAFT_MSG_SNAPSHOT;
  m.index = sn->snap_index;
  m.log_term = sn->snap_term;
  group_recv(c, g, &m, NULL, 0);
}

/* Replace the state machine by the log's snapshot, an image just
** installed at (term, index), and wake the live readers of every stream
** that had some with what the new state holds (a stream that is gone,
** or was made again, wakes them as deleted). */
static int group_load_image(struct core *c, struct group *g, uint64_t index,
                            uint64_t term) {
  struct wal_snap_reader sr;
  struct stream_state fresh;
  struct buf *b = &g->snap_buf, watched;
  char err[URSULA_ERRMSG_LEN];
  size_t i, at;
  long k = 0;
  int rc = wal_snap_open(g->wal, &sr, err);
  if (rc != URSULA_OK) return rc;
  b->len = 0;
  rc = sr.size > SIZE_MAX / 2 ? URSULA_ENOMEM
                              : buf_reserve(b, (size_t)sr.size);
  while (rc == URSULA_OK &&
         (k = wal_snap_read(&sr, b->ptr + b->len, sr.size - b->len)) > 0)
    b->len += (size_t)k;
  if (rc == URSULA_OK && (k < 0 || b->len != sr.size)) rc = URSULA_ECORRUPT;
  wal_snap_close(&sr);
  if (rc != URSULA_OK) return rc;
  stream_state_init(&fresh);
  fresh.read_cold = g->sm.read_cold;
  fresh.read_chunk = g->sm.read_chunk;
  fresh.read_ctx = g->sm.read_ctx;
  if ((rc = stream_restore(&fresh, b->ptr, b->len)) != URSULA_OK) {
    stream_state_free(&fresh);
    return rc;
  }
  memset(&watched, 0, sizeof(watched)); /* (mask, tail, incarnation,
                                           length) then the path */
  for (i = 0; i < g->sm.cap; i++) {
    const struct stream *s;
    for (s = g->sm.slots[i]; s != NULL; s = s->hnext) {
      uint64_t w[4];
      if (s->local.watch_mask == 0) continue;
      w[0] = s->local.watch_mask;
      w[1] = s->tail;
      w[2] = s->incarnation;
      w[3] = s->path_len;
      if (buf_append(&watched, w, sizeof(w)) != URSULA_OK ||
          buf_append(&watched, s->path, s->path_len) != URSULA_OK)
        break; /* out of memory: those readers time out and retry */
    }
  }
  stream_state_free(&g->sm);
  g->sm = fresh;
  g->snapshot_size = b->len;
  g->applied_index = index;
  g->applied_term = term;
  if (g->commit < index) g->commit = index;
  g->image_index = g->image_term = 0; /* an older state's, if any */
  for (at = 0; at + 4 * sizeof(uint64_t) <= watched.len;) {
    uint64_t w[4];
    struct stream_result r;
    struct stream *ns;
    struct str path;
    memcpy(w, watched.ptr + at, sizeof(w));
    at += sizeof(w);
    path.ptr = watched.ptr + at;
    path.len = (size_t)w[3];
    at += path.len;
    ns = stream_find(&g->sm, path);
    memset(&r, 0, offsetof(struct stream_result, garbage));
    r.watch_mask = w[0];
    r.prev_tail = w[1];
    if (ns != NULL && ns->incarnation == w[2] && ns->tail >= w[1])
      ns->local.watch_mask |= w[0];
    else
      r.deleted = 1;
    group_notify(c, g, path, &r);
  }
  buf_free(&watched);
  return URSULA_OK;
}

/* INSTALL_SNAPSHOT(peer, term, index), once nothing is being written
** (called after the step that asked, and after each write): the image
** received, if it is that one, becomes the log's snapshot and the state;
** then SNAP_INSTALLED. */
static void group_install_try(struct core *c, struct group *g) {
  struct group_snap_in *in = &g->snap_in;
  uint64_t peer = g->install_peer, term = g->install_term;
  uint64_t index = g->install_index, t0;
  char err[URSULA_ERRMSG_LEN];
  struct raft_in ri;
  int rc;
  if (c == NULL || g->in_flight || group_fill_pending(g)) return;
  g->install_peer = 0;
  if (!in->open || !in->complete || in->from != peer || in->index != index ||
      in->snap_term != term)
    return; /* not the image received: its leader sends it again */
  t0 = group_mono(g);
  rc = wal_install_commit(g->wal, &in->sw, err);
  in->open = 0; /* (the commit closed or removed the file) */
  group_snap_in_drop(g);
  if (rc != URSULA_OK) {
    LOG_W("group %d: the snapshot image from node %llu was not installed: "
          "%s",
          g->id, (unsigned long long)peer, err[0] ? err : ursula_strerror(rc));
    if (wal_failed(g->wal)) group_lost(c, g, rc);
    return;
  }
  if (!GROUP_BUG(2) && (rc = group_load_image(c, g, index, term)) != URSULA_OK) {
    LOG_E("group %d: the installed snapshot image does not load (%s); the "
          "log is failed until it is verified again",
          g->id, ursula_strerror(rc));
    wal_abandon(g->wal);
    group_lost(c, g, rc);
    return;
  }
  while (g->held_head < g->n_held && g->held[g->held_head].index <= index) {
    struct group_wait w = g->held[g->held_head++];
    group_refuse_unknown(c, g, w.done, w.arg,
                         "this node caught up by a snapshot that may hold "
                         "the write: its outcome is unknown; retry with the "
                         "same Producer-Id/Epoch/Seq to apply it exactly "
                         "once");
  }
  if (g->held_head == g->n_held) g->held_head = g->n_held = 0;
  memset(&ri, 0, sizeof(ri));
  ri.type = RAFT_IN_SNAP_INSTALLED;
  ri.term = term;
  ri.index = index;
  group_step(c, g, &ri);
  g->installs++;
  LOG_I("group %d: installed a snapshot image from node %llu: entry %llu, "
        "%d streams, in %llu ms",
        g->id, (unsigned long long)peer, (unsigned long long)index,
        (int)g->sm.n, (unsigned long long)(group_mono(g) - t0));
  (void)t0;
  if (g->n_reads > 0) group_serve_reads(c, g);
}

/* FORWARDED WRITES (issue 14: writes on any node; raft.md section 4).
** A client's write that reaches a follower goes to the leader it knows as
** the encoded command (FWD); the leader stamps it with its own clock,
** proposes it, and replies with where the entry went, (term, index), or
** that it refused it.  The follower answers its client when it has
** applied that index itself: the entry's result if it carries that term
** (the apply is deterministic, so the result is the leader's), else 503
** ("replaced", a retry is safe).  No reply within 2 election timeouts, or
** the reply's term ending without the index applied: 503, outcome unknown
** (group_age_held).  A follower that knows no leader answers 503 at once. */
static void group_fwd_refused(struct core *c, struct group *g,
                              group_done_fn done, void *arg, int unknown) {
  if (unknown)
    group_refuse_unknown(c, g, done, arg,
                         "the write went to the stream's group leader, which "
                         "did not answer in time: its outcome is unknown; "
                         "retry with the same Producer-Id/Epoch/Seq to apply "
                         "it exactly once");
  else
    group_refuse(c, g, done, arg, 503,
                 "the stream's group leader refused the write (it no longer "
                 "leads, or its log failed); retry");
}

/* Propose cmd here if this node leads its group (or is a single node),
** else forward it to the leader. */
URSULA_PRIVATE void group_write(struct core *c, struct group *g,
                                const struct cmd *cmd, group_done_fn done,
                                void *arg) {
  struct group_fwd *f;
  if (g->cl.n_voters <= 1 || g->cl.forward == NULL ||
      g->raft.role == RAFT_LEADER || g->raft.leader == 0) {
    group_propose(c, g, cmd, done, arg);
    return;
  }
  if (g->n_fwds == g->cap_fwds) {
    size_t cap = g->cap_fwds ? g->cap_fwds * 2 : 16;
    f = (struct group_fwd *)URSULA_REALLOC(g->fwds, cap * sizeof(*f));
    if (f == NULL) {
      group_refuse(c, g, done, arg, 503, "out of memory");
      return;
    }
    g->fwds = f;
    g->cap_fwds = cap;
  }
  g->fwd_buf.len = 0;
  if (cmd_encode(cmd, &g->fwd_buf) != URSULA_OK) {
    group_refuse(c, g, done, arg, 503, "out of memory");
    return;
  }
  if (g->cl.forward(g->cl.arg, g, g->raft.leader, g->fwd_seq + 1,
                    g->fwd_buf.ptr, g->fwd_buf.len) != URSULA_OK) {
    group_refuse(c, g, done, arg, 503,
                 "the stream's group leader cannot be reached from this "
                 "node now; nothing was written; retry");
    return;
  }
  f = &g->fwds[g->n_fwds++];
  f->req = ++g->fwd_seq;
  f->done = done;
  f->arg = arg;
  f->ticks = 0;
}

URSULA_PRIVATE void group_recv_forward(struct core *c, struct group *g,
                                       uint64_t from, uint64_t req,
                                       const void *cmd, size_t len) {
  struct cmd m;
  struct buf bounds;
  uint64_t term = 0, index = 0;
  int ok = 0;
  memset(&bounds, 0, sizeof(bounds));
  if (g->cl.reply == NULL) return;
  if (g->raft.role == RAFT_LEADER &&
      cmd_decode(cmd, len, &m, &bounds) == URSULA_OK &&
      (m.type == CMD_CREATE || m.type == CMD_APPEND ||
       m.type == CMD_DELETE || m.type == CMD_TOUCH ||
       m.type == CMD_FORK_ACQUIRE || m.type == CMD_FORK_RELEASE ||
       m.type == CMD_BUCKET_CREATE || m.type == CMD_BUCKET_DELETE ||
       m.type == CMD_SNAPSHOT_PUT || m.type == CMD_RETAIN ||
       m.type == CMD_MULTI || m.type == CMD_ATTRS)) {
    m.time_ms = group_wall(g); /* the leader stamps what it proposes */
    ok = group_propose_at(c, g, &m, group_ignore_done, NULL, &term, &index);
  }
  buf_free(&bounds);
  g->cl.reply(g->cl.arg, g, from, req, ok, term, index);
}

URSULA_PRIVATE void group_recv_reply(struct core *c, struct group *g,
                                     uint64_t req, int accepted,
                                     uint64_t term, uint64_t index) {
  size_t k;
  for (k = 0; k < g->n_fwds && g->fwds[k].req != req; k++) continue;
  if (k == g->n_fwds) return; /* answered already (timed out) */
  {
    struct group_fwd f = g->fwds[k];
    memmove(g->fwds + k, g->fwds + k + 1,
            (g->n_fwds - k - 1) * sizeof(*g->fwds));
    g->n_fwds--;
    if (!accepted)
      group_fwd_refused(c, g, f.done, f.arg, 0);
    else if (index <= g->applied_index) /* (never: replies come first) */
      group_fwd_refused(c, g, f.done, f.arg, 1);
    else
      group_hold_one(c, g, f.done, f.arg, term, index);
  }
}

/* Forwards without a reply for 2 election timeouts: outcome unknown. */
static void group_age_fwds(struct core *c, struct group *g) {
  size_t k, n = 0;
  for (k = 0; k < g->n_fwds; k++) {
    struct group_fwd f = g->fwds[k];
    if (++f.ticks <= 2 * GROUP_ELECTION_TICKS) {
      g->fwds[n++] = f;
      continue;
    }
    group_fwd_refused(c, g, f.done, f.arg, 1);
  }
  g->n_fwds = n;
}

/* A release was committed (done), or refused by the log: then it is
** kept and proposed again at the next sweep (a refused entry is not in
** the log: wal_recover cuts what a failed write left; a cluster's leader
** refused it before taking it), since the reference it gives back would
** otherwise be held for ever.  One whose outcome is unknown is not: a
** second release of one reference could remove a source a fork still
** reads; a reference held for ever only keeps a source (fork.c). */
static void group_release_done(struct core *c, struct group *g,
                               const struct stream_result *r, void *arg) {
  struct group_release *rel = (struct group_release *)arg;
  (void)c;
  if (!r->refused || r->unknown) { /* (unknown: it may count already) */
    URSULA_FREE(rel);
    return;
  }
  rel->msg.next = g->retry != NULL ? &g->retry->msg : NULL;
  g->retry = rel;
}

static void group_propose_release(struct core *c, struct group *g,
                                  struct group_release *rel) {
  struct cmd cmd;
  memset(&cmd, 0, sizeof(cmd));
  cmd.type = CMD_FORK_RELEASE;
  cmd.time_ms = group_wall(g);
  cmd.path.ptr = rel->path;
  cmd.path.len = rel->path_len;
  group_write(c, g, &cmd, group_release_done, rel); /* no answer */
}

static void group_on_release(struct loop *l, struct loop_msg *m) {
  struct group_release *rel = (struct group_release *)(void *)m;
  struct core *c = (struct core *)loop_get_user(l);
  group_propose_release(c, group_of(c, rel->path, rel->path_len), rel);
}

/* A read on a cluster's follower slides the TTL window at the leader,
** which alone decides expiry (group_sweep): the read's TOUCH is sent to
** the leader at once -- at most one per stream every GROUP_TOUCH_FWD_MS,
** the sweep sends the last one -- and the leader stamps it with its own
** clock.  local.touch_ms is the last read_ms sent.  A TOUCH lost on its
** way (no leader, a leader change) is not sent again: the next read
** sends its own. */
#define GROUP_TOUCH_FWD_MS 100
static void group_touch_forward(struct core *c, struct group *g,
                                struct stream *s, int sweep) {
  struct cmd t;
  uint64_t read = s->local.read_ms;
  if (!s->has_ttl || s->soft_deleted || g->raft.leader == 0) return;
  if (read <= s->last_access_ms || read <= s->local.touch_ms) return;
  if (!sweep && read < s->local.touch_ms + GROUP_TOUCH_FWD_MS) return;
  memset(&t, 0, sizeof(t));
  t.type = CMD_TOUCH;
  t.time_ms = read;
  t.path.ptr = s->path;
  t.path.len = s->path_len;
  t.incarnation = s->incarnation;
  s->local.touch_ms = read;
  group_write(c, g, &t, group_ignore_done, NULL);
}

/* The sweep's TOUCH of s: logged here (a single node, a leader) or sent
** to the leader (a follower). */
static void group_touch_any(struct core *c, struct group *g,
                            struct stream *s) {
  if (g->cl.n_voters > 1 && g->raft.role != RAFT_LEADER)
    group_touch_forward(c, g, s, 1);
  else
    group_touch(c, g, s);
}

/* Writes waiting for their index to be applied, once the term they were
** given in is over (or no leader is known): if the index is not applied
** within 2 election timeouts (raft.md section 4), the outcome is unknown
** to this node -- the entry may yet commit under the next leader, or be
** replaced -- and the client is told so rather than kept waiting. */
static void group_age_held(struct core *c, struct group *g) {
  size_t k, n = g->held_head;
  int led = g->raft.role == RAFT_LEADER || g->raft.leader != 0;
  for (k = g->held_head; k < g->n_held; k++) {
    struct group_wait w = g->held[k];
    if (led && w.term == g->raft.term) {
      g->held[n++] = w;
      continue;
    }
    if (++w.ticks <= 2 * GROUP_ELECTION_TICKS) {
      g->held[n++] = w;
      continue;
    }
    group_refuse_unknown(c, g, w.done, w.arg,
                         "this node stopped leading the stream's group "
                         "before the write was committed: its outcome is "
                         "unknown; retry with the same Producer-Id/Epoch/Seq "
                         "to apply it exactly once");
  }
  g->n_held = n;
  if (g->held_head == g->n_held) g->held_head = g->n_held = 0;
}

URSULA_PRIVATE void group_tick(struct core *c, struct group *g) {
  size_t k;
  if (g->raft.c.n_voters <= 1) return;
  group_step_type(c, g, RAFT_IN_TICK);
  group_snap_tick(c, g);
  if (g->n_held > g->held_head) group_age_held(c, g);
  if (g->n_fwds > 0) group_age_fwds(c, g);
  for (k = 0; k < g->n_reads; k++) /* a lost READ_INDEX is not resent */
    if (++g->reads[k].ticks > 2 * GROUP_ELECTION_TICKS && !g->reads[k].index)
      g->reads[k].refused = 1;
  if (g->read_out != 0 && ++g->read_out_ticks > GROUP_ELECTION_TICKS)
    group_read_abandon(g); /* lost (a message to the leader dropped) */
  g->read_later = 0;
  if (g->n_reads > 0) group_serve_reads(c, g);
  if (g->read_out == 0 && g->n_reads > 0) group_read_round(c, g);
}

/* ------------------------------------------------------------ jobs */

static void group_ignore_done(struct core *c, struct group *g,
                              const struct stream_result *r, void *arg) {
  (void)c, (void)g, (void)r;
  job_free((struct job *)arg); /* NULL for commands without a job */
}

URSULA_PRIVATE void group_reply(struct core *c, struct job *j) {
  if (j->origin_core < 0) {
    job_free(j);
    return;
  }
  j->msg.on_msg = api_on_job_done;
  server_send(c, j->origin_core, &j->msg);
}

URSULA_PRIVATE void group_fail(struct core *c, struct job *j, int status,
                               const char *reason) {
  j->status = status;
  j->reason = reason;
  group_reply(c, j);
}

URSULA_PRIVATE void group_copy_result(struct job *j,
                                      const struct stream_result *r) {
  struct buf keep = j->res.releases, keep_g = j->res.garbage,
             keep_o = j->res.ops;
  j->res = *r;
  j->res.releases = keep;
  j->res.garbage = keep_g;
  j->res.ops = keep_o; /* (unused: a MULTI's ops go to j->data) */
  if (j->cmd.type == CMD_MULTI && !r->refused &&
      buf_append(&j->data, r->ops.ptr, r->ops.len) != URSULA_OK) {
    j->status = 503;
    j->reason = "out of memory";
    return;
  }
  j->status = r->status;
  j->reason = r->reason;
  j->tail = r->tail;
  j->closed = r->closed;
}

static void group_fill_meta(struct job *j, const struct stream *s) {
  size_t n = strlen(s->content_type);
  if (n >= sizeof(j->res_type)) n = sizeof(j->res_type) - 1;
  memcpy(j->res_type, s->content_type, n);
  j->res_type[n] = '\0';
  j->json = s->json;
  j->rec_first = stream_record_first(s);
  j->rec_next = stream_record_next(s);
  j->incarnation = s->incarnation;
  j->has_ttl = s->has_ttl;
  j->ttl_s = s->ttl_s;
  j->res_expires[0] = '\0';
  if (s->has_expires && s->expires_text != NULL) {
    n = strlen(s->expires_text);
    if (n >= sizeof(j->res_expires)) n = sizeof(j->res_expires) - 1;
    memcpy(j->res_expires, s->expires_text, n);
    j->res_expires[n] = '\0';
  }
  j->retained = s->retained;
  j->has_snap = s->has_snap;
  j->snap_at = s->snap_at;
  if (s->has_snap) {
    memcpy(j->snap_digest, s->snap_digest, sizeof(j->snap_digest));
    snprintf(j->snap_type, sizeof(j->snap_type), "%s", s->snap_type);
  }
  if (j->sub == JOB_SUB_ATTRS) {
    j->attrs.len = 0;
    if (s->attrs_len > 0 &&
        buf_append(&j->attrs, s->attrs, s->attrs_len) != URSULA_OK)
      j->sub = JOB_SUB_NOMEM;
  }
}

URSULA_PRIVATE void group_after_change(struct core *c, struct group *g,
                                       const struct stream_result *r,
                                       void *arg) {
  struct job *j = (struct job *)arg;
  struct stream *s;
  group_copy_result(j, r);
  s = stream_find(&g->sm, j->cmd.path);
  if (s != NULL) group_fill_meta(j, s);
  group_reply(c, j);
}

/* Answer a read of stream bytes that failed with rc: damage is a 500
** that says so (never wrong bytes), anything else a 503. */
static void group_read_failed(struct core *c, struct job *j, int rc) {
  if (rc == URSULA_ECORRUPT)
    group_fail(c, j, 500,
               "the write-ahead log record holding these bytes is damaged "
               "(the server log names the file)");
  else
    group_fail(c, j, 503,
               rc == URSULA_ENOMEM ? "out of memory"
                                   : "could not read the stream from the WAL");
}

/* The stream for a read, or NULL after answering 404 / 410. */
static struct stream *group_read_target(struct core *c, struct group *g,
                                        struct job *j, uint64_t now) {
  struct str path;
  struct stream *s;
  path.ptr = j->path;
  path.len = j->path_len;
  s = stream_find(&g->sm, path);
  if (s != NULL && !s->soft_deleted && group_expired(s, now)) {
    /* log the expiry; answer as the stream will be once it is applied */
    struct cmd e;
    int forked = s->refcount > 0;
    memset(&e, 0, sizeof(e));
    e.type = CMD_EXPIRE;
    e.time_ms = now;
    e.path = path;
    group_propose(c, g, &e, group_ignore_done, NULL);
    group_fail(c, j, forked ? 410 : 404,
               forked ? "stream was deleted" : "stream not found");
    return NULL;
  }
  if (s == NULL) {
    group_fail(c, j, 404, "stream not found");
    return NULL;
  }
  if (s->soft_deleted) {
    group_fail(c, j, 410, "stream was deleted");
    return NULL;
  }
  return s;
}

/* READS OF A FORK.  A fork holds only its own bytes, [base, tail); the
** bytes below base are its source's (stream.c, "Forks"), and the source
** may belong to another group, owned by another core.  A read is planned
** at the owner of the stream it reads, as for any stream (group_read:
** where it starts, where it ends: max_bytes, an append boundary for
** JSON, at most one cold chunk), and reads the part that is the stream's
** own there.  If the range starts below base, the job hops:
**
**   JOB_HOP_PLAN, at the fork's owner: plan [start, end), read its own
**     part [base, end)
**   JOB_HOP_SOURCE, at the owner of the fork's source: read the source's
**     own part of [start, min(end, base)); while the range starts below
**     that stream's base too (a fork of a fork), on to its source
**   JOB_HOP_BACK, at the fork's owner again: if the fork is still the
**     one planned for (path and incarnation), decide Stream-Up-To-Date,
**     Stream-Closed and the live reader's registration, and answer --
**     in one turn, as every read does, so that no wake-up of the fork's
**     readers can overtake the answer.  If it is not (deleted,
**     re-created), the read starts over there.
**
** Each hop checks that the stream it reads is the one named by the
** reference of the fork above it (hop_path, hop_inc): the fork holds a
** reference on its source, which holds one on its own, so while the fork
** lives so do they (a deleted one soft-deleted, with its bytes).  A
** source is read as it is: reads through a fork neither expire it nor
** slide its TTL, and a soft-deleted one serves its forks.  The bytes
** below a fork point never change, so the parts read at different times
** make one consistent answer.  A hop that finds its stream gone answers
** through JOB_HOP_BACK (the fork was deleted meanwhile: 404).
**
** Parts.  Each hop reads its stream's part into a buffer of its own (a
** hop parked on a cold-tier fetch runs again from its start, having
** changed nothing) and puts it in j->data after the parts of the hops
** above (highest first; j->parts has their lengths); the lowest hop
** puts them in order.
**
** JSON.  The append boundaries below a fork's base are its source's,
** cut at the fork point, and the fork point is one (stream.c).  A JSON
** read larger than max_bytes ends on the last boundary that fits (at
** least one append): a hop that finds none at or above its stream's
** base leaves the end to the hop below (hop_flex, hop_limit).
**
** Cold.  A hop's part needs at most one chunk of its stream; a chunk
** that ends before the part does ends the whole read there (the parts
** above are dropped), as any read that starts in moved data ends with
** its chunk. */

static void group_on_read_hop(struct loop *l, struct loop_msg *m);

/* A JSON stream's offsets are its append boundaries: the server hands
** out no other (a JSON read ends on one, group_read_end; a JSON fork
** offset must be one, fork.c).  A read from an offset inside an append,
** start, reads from the start of that append (s's own: start >= base),
** so that every answer is whole JSON messages: the append whose end is
** past the offset is sent whole, as the reference server answers. */
static uint64_t group_json_start(const struct stream *s, uint64_t start) {
  return stream_unit_floor(s, start);
}

/* The end of what a read hop wants of s: [start, *end), at most limit (s's
** tail, or the fork point of the fork above; start < limit).  Without
** flex, limit.  With flex (a JSON read larger than max_bytes), the last
** append boundary b with b - start <= max, or else the first one after
** start: 1 and *end if that is at or above s->base, 0 if it is below
** (the hop below finds it, within min(limit, s->base)). */
static int group_read_end(const struct stream *s, uint64_t start,
                          uint64_t limit, int flex, uint64_t max,
                          uint64_t *end) {
  size_t u;
  uint64_t e;
  if (!flex) {
    *end = limit;
    return 1;
  }
  if (start >= s->base) { /* at least the append at start, cut at limit */
    u = stream_unit_at(s, start);
    e = s->bounds[u] < limit ? s->bounds[u] : limit;
    while (u + 1 < s->n_bounds && s->bounds[u + 1] <= limit &&
           s->bounds[u + 1] - start <= max)
      e = s->bounds[++u];
    *end = e;
    return 1;
  }
  if (s->base > limit || s->base - start > max) return 0;
  e = s->base; /* the fork point is a boundary: the last inherited one */
  for (u = 0;
       u < s->n_bounds && s->bounds[u] <= limit && s->bounds[u] - start <= max;
       u++)
    e = s->bounds[u];
  *end = e;
  return 1;
}

/* The read's parts in order: the lowest, low (taken), then those in
** j->data, last first; into j->data. */
static int group_read_join(struct job *j, struct buf *low) {
  size_t n = j->parts.len / sizeof(uint64_t), i, off = j->data.len;
  int rc = URSULA_OK;
  for (i = n; i-- > 0 && rc == URSULA_OK;) {
    uint64_t len;
    memcpy(&len, j->parts.ptr + i * sizeof(uint64_t), sizeof(len));
    off -= (size_t)len;
    rc = buf_append(low, j->data.ptr + off, (size_t)len);
  }
  buf_free(&j->data);
  j->data = *low;
  memset(low, 0, sizeof(*low));
  j->parts.len = 0;
  return rc;
}

/* Answer j, planned and read, with the state of s (the stream it reads,
** on its owner): up to date, closed, and a live reader registered, all
** in this turn (group_reply posts it before any later wake-up). */
static void group_read_answer(struct core *c, struct job *j, struct stream *s) {
  j->stream_tail = s->tail;
  j->stream_closed = s->closed;
  j->rec_first = stream_record_first(s);
  j->rec_next = stream_record_next(s); /* the record at stream_tail */
  j->up_to_date = j->tail == s->tail;
  j->closed = s->closed && j->up_to_date;
  if (j->live != JOB_LIVE_NONE && j->up_to_date && !s->closed &&
      j->origin_core >= 0 && j->origin_core < 64) {
    s->local.watch_mask |= (uint64_t)1 << j->origin_core;
    j->registered = 1;
  }
  group_reply(c, j);
}

/* Send j back to the owner of the stream it reads (JOB_HOP_BACK). */
static void group_read_back(struct core *c, struct job *j) {
  j->read_hop = JOB_HOP_BACK;
  j->msg.on_msg = group_on_read_hop;
  group_send(c, &j->msg, j->path, j->path_len);
}

/* One hop of a read at s, the stream read (JOB_HOP_PLAN) or one it
** inherits from (JOB_HOP_SOURCE), on s's owner: what is wanted of s is
** [j->start, limit), its end to be found if j->hop_flex.  Reads s's own
** part; then on to the hop below, or, at the lowest, the parts joined
** and the answer (at once if s is the stream read, else through
** JOB_HOP_BACK).  j is not changed unless the part was read (parked on
** a fetch, the hop runs again). */
static void group_read_hop(struct core *c, struct group *g, struct stream *s,
                           struct job *j, uint64_t limit) {
  uint64_t start = j->start, end = limit, from;
  struct buf part;
  int found = 1, cut = 0, rc = URSULA_OK;
  if (start < limit)
    found = group_read_end(s, start, limit, j->hop_flex, j->max_bytes, &end);
  /* JSON, at the lowest hop: the read starts at the start of the append
  ** that holds the offset (its end was planned from the offset, hop by
  ** hop, so that a fork reads as a stream of the same appends would) */
  if (s->json && start >= s->base && start < limit)
    j->start = start = group_json_start(s, start);
  from = start > s->base ? start : s->base;
  if (found && from < end && from < s->cold_end) {
    /* at most one chunk: no two need be cached */
    size_t k = stream_chunk_at(s, from);
    if (end > s->chunks[k].end) {
      end = s->chunks[k].end;
      cut = 1;
    }
  }
  memset(&part, 0, sizeof(part));
  if (found && from < end) rc = stream_read(&g->sm, s, from, end, &part);
  if (rc == URSULA_EAGAIN) { /* runs again once the chunk is here */
    buf_free(&part);
    if ((rc = group_park(c, g, j)) != URSULA_OK) group_fail_fetch(c, j, rc);
    return;
  }
  if (rc != URSULA_OK) {
    buf_free(&part);
    group_read_failed(c, j, rc);
    return;
  }
  /* the end of the whole read: planned where it starts, found here (a
  ** JSON end), or cut here (the read ends in this chunk: the parts above
  ** go); else it is the plan's, and end only where this hop's part does */
  if (found && (j->read_hop == JOB_HOP_PLAN || j->hop_flex || cut)) {
    if (cut) {
      j->data.len = 0;
      j->parts.len = 0;
    }
    j->tail = end;
  }
  if (found) j->hop_flex = 0;
  if (start < s->base && start < limit) { /* below: s's source's bytes */
    uint64_t len = part.len;
    if (s->fork_source == NULL || s->fork_source_len > URSULA_MAX_PATH_BYTES ||
        ++j->hops > JOB_MAX_HOPS) {
      buf_free(&part);
      group_fail(c, j, 500, "a fork's chain of sources is broken");
      return;
    }
    if (part.len > 0 &&
        (buf_append(&j->data, part.ptr, part.len) != URSULA_OK ||
         buf_append(&j->parts, &len, sizeof(len)) != URSULA_OK)) {
      buf_free(&part);
      group_fail(c, j, 503, "out of memory");
      return;
    }
    buf_free(&part);
    memcpy(j->hop_path, s->fork_source, s->fork_source_len);
    j->hop_path[s->fork_source_len] = '\0';
    j->hop_len = s->fork_source_len;
    j->hop_inc = s->fork_inc;
    limit = found ? end : limit;
    j->hop_limit = limit < s->base ? limit : s->base;
    j->read_hop = JOB_HOP_SOURCE;
    j->msg.on_msg = group_on_read_hop;
    group_send(c, &j->msg, j->hop_path, j->hop_len);
    return;
  }
  /* the lowest part: the read is complete, and its data starts on an
  ** append boundary of s (JSON), whose record s knows */
  if (s->json && j->start >= s->base && j->start <= s->tail) {
    j->rec_start = stream_record_at(s, j->start);
    j->rec_start_known = 1;
  }
  if (j->parts.len > 0) {
    rc = group_read_join(j, &part);
  } else { /* the only part (data holds none) */
    buf_free(&j->data);
    j->data = part;
  }
  if (rc != URSULA_OK) {
    group_fail(c, j, 503, "out of memory");
    return;
  }
  if (j->read_hop == JOB_HOP_PLAN)
    group_read_answer(c, j, s);
  else
    group_read_back(c, j);
}

/* Where a catch-up GET of s from start (<= tail) ends, for a HEAD's ETag
** (HEAD answers what a GET of the same target would, without the bytes):
** the tail, or sooner after max_bytes (on an append boundary for JSON,
** at least one append), and within one cold chunk.  A GET of a fork from
** below its base plans its end hop by hop (its sources' boundaries and
** chunks), which this does not follow: there a HEAD's ETag may differ
** from its GET's, and a conditional GET is then answered in full. */
static uint64_t group_catchup_end(const struct stream *s, uint64_t start,
                                  uint64_t max_bytes) {
  uint64_t end = s->tail;
  if (end - start > max_bytes) {
    if (s->json && s->n_bounds > 0) { /* an append boundary, at least one */
      size_t u = stream_unit_at(s, start);
      end = s->bounds[u];
      while (u + 1 < s->n_bounds && s->bounds[u + 1] - start <= max_bytes)
        end = s->bounds[++u];
    } else {
      end = start + max_bytes;
    }
  }
  if (start >= s->base && start < s->cold_end) { /* one chunk at most */
    size_t k = stream_chunk_at(s, start);
    if (end > s->chunks[k].end) end = s->chunks[k].end;
  }
  return end;
}

/* RECORDS.  A read that starts at a record (record=, tail_records=;
** api.c) is planned as a read from the start of the append that holds
** it, and the records of that append before it are dropped from the
** answer (j->rec_skip, api.c): the state knows where each append starts
** in records, not where each record starts in bytes.  A record a fork
** inherited (below rec_base) is in its sources, whose appends the fork
** does not know: that read starts at byte 0 (record 0 of every chain)
** and skips the records before.  Refused, with the record headers: a
** stream not JSON (400), a record below the first retained (410) or
** past the next (400).  0, or 1 when j is answered. */
static int group_read_records(struct core *c, struct stream *s,
                              struct job *j) {
  uint64_t first = stream_record_first(s), next = stream_record_next(s), rec;
  if (j->rec_mode == JOB_REC_NONE) return 0;
  if (!s->json) {
    group_fail(c, j, 400, "record coordinates need an application/json stream");
    return 1;
  }
  rec = j->rec_mode == JOB_REC_NOW ? next
        : j->rec_mode == JOB_REC_TAIL
            ? (j->rec_arg < next - first ? next - j->rec_arg : first)
            : j->rec_arg;
  if (rec < first || rec > next) {
    j->rec_refused = 1;
    group_fail(c, j, rec < first ? 410 : 400,
               rec < first ? "record is below the first retained record"
                           : "record is past the stream's next record");
    return 1;
  }
  if (rec >= s->rec_base) {
    stream_record_find(s, rec, &j->offset, &j->rec_skip);
  } else {
    j->offset = 0;
    j->rec_skip = rec;
  }
  j->offset_now = 0;
  return 0;
}

/* A read below s's retained offset (SNAPSHOTS, stream.c): one at an
** offset given is 410 (api.c adds Stream-Next-Offset: the retained
** offset), one from the start (-1, or no offset) starts there.  1 if it
** was answered. */
static int group_read_retained(struct core *c, struct job *j,
                               const struct stream *s) {
  if (j->offset_now || j->offset >= s->retained) return 0;
  if (!j->offset_given) {
    j->offset = s->retained;
    return 0;
  }
  j->tail = s->retained;
  group_fail(c, j, 410,
             "the offset is below the stream's retained offset: those "
             "bytes are no longer kept (Stream-Next-Offset is the first "
             "one kept)");
  return 1;
}

static void group_read(struct core *c, struct group *g, struct job *j) {
  uint64_t now = group_wall(g), start, end;
  struct stream *s = group_read_target(c, g, j, now);
  if (s == NULL) return;
  group_fill_meta(j, s);
  if (group_read_retained(c, j, s)) return;
  j->status = 200;
  j->reason = NULL;
  j->rec_start_known = 0;
  if (group_read_records(c, s, j)) return;
  if (j->op == JOB_HEAD) { /* what a GET would answer, without the bytes */
    start = j->offset_now ? s->tail : j->offset;
    if (start > s->tail) start = s->tail;
    /* (a JSON GET starts at the append that holds the offset, its end
    ** planned from the offset: group_read_hop) */
    j->start = s->json && start >= s->base ? group_json_start(s, start) : start;
    if (s->json && (j->start >= s->base || j->start == 0)) {
      j->rec_start = j->start >= s->base ? stream_record_at(s, j->start) : 0;
      j->rec_start_known = 1;
    }
    /* a GET answers up to the tail in one response (api.c), unless that
    ** is past catchup_max */
    j->read_end = s->tail - j->start <= j->catchup_max
                      ? s->tail
                      : group_catchup_end(s, start, j->max_bytes);
    j->tail = s->tail;
    j->closed = s->closed;
    group_reply(c, j);
    return;
  }
  /* reads slide the TTL window (not HEAD): logged as a TOUCH by the
  ** sweep, or before the next command on the stream */
  if (now > s->local.read_ms) s->local.read_ms = now;
  if (g->cl.n_voters > 1 && g->raft.role != RAFT_LEADER)
    group_touch_forward(c, g, s, 0);
  /* a job re-run after a fetch, or re-planned, starts over */
  j->read_hop = JOB_HOP_PLAN;
  j->hops = 0;
  j->hop_linear = 0;
  j->data.len = 0;
  j->parts.len = 0;
  start = j->offset_now ? s->tail : j->offset;
  if (start > s->tail) start = s->tail;
  end = s->tail;
  if (j->end_limit > start && j->end_limit < end) end = j->end_limit;
  j->start = j->tail = start;
  /* at most max_bytes: a JSON read on an append boundary (found hop by
  ** hop, group_read_end), another one byte-exact */
  j->hop_flex = s->json && end - start > j->max_bytes;
  if (!s->json && end - start > j->max_bytes) end = start + j->max_bytes;
  group_read_hop(c, g, s, j, end);
}

/* Serve the reads whose barrier passed (in order of arrival: a read is
** never served before one that came earlier), and refuse those no
** leader confirmed. */
static void group_serve_reads(struct core *c, struct group *g) {
  size_t k = 0, n = 0;
  if (g->serving) return; /* (a read may propose: an EXPIRE) */
  g->serving = 1;
  while (k < g->n_reads) {
    struct group_barrier r = g->reads[k];
    if (r.refused) {
      k++;
      group_fail(c, r.j, 503,
                 "the read could not be confirmed with the stream's group "
                 "leader (no leader now?); retry");
    } else if (r.index != 0 && r.index <= g->applied_index) {
      k++;
      r.then(c, g, r.j);
    } else {
      g->reads[n++] = g->reads[k++]; /* waits on */
    }
  }
  g->n_reads = n;
  g->serving = 0;
}

/* Start a round for the reads that wait for one (ctx 0), if none is in
** flight: one READ_INDEX for all of them.  A read never joins a round
** already in flight: that READ_INDEX may have been taken by the leader
** before the read arrived, and its index miss writes acknowledged in
** between.  So N reads that come together cost at most two rounds, and
** the leader's queue of reads (read_cap) holds one per node and group.
** A round refused (no leader known here, or the node asked no longer
** leads) leaves its reads waiting for the next round, asked at the next
** tick or as soon as a leader is known (read_later): an election is not
** an error to a reader.  A read still unconfirmed after two election
** timeouts is answered 503 (group_tick). */
static void group_read_round(struct core *c, struct group *g) {
  struct raft_in in;
  size_t k;
  int any = 0;
  if (g->read_out != 0 || g->read_later) return;
  for (k = 0; k < g->n_reads; k++)
    if (g->reads[k].ctx == 0 && !g->reads[k].refused) {
      if (!any) g->read_ctx++;
      g->reads[k].ctx = g->read_ctx;
      any = 1;
    }
  if (!any) return;
  g->read_out = g->read_ctx;
  g->read_out_ticks = 0;
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_READ_INDEX;
  in.ctx = g->read_ctx;
  group_step(c, g, &in);
}

/* A read of a cluster's group is linearizable (issue 14; thesis 6.4,
** ReadIndex): it reflects every append acknowledged, by any node, before
** it arrived.  The core confirms the leader's commit index with a round
** of heartbeats (a follower asks the leader; reads that arrive together
** share one, group_read_round); the read is served once this node has
** applied that far.  A single node serves at once. */
URSULA_PRIVATE void group_barrier(struct core *c, struct group *g,
                                  struct job *j, group_job_fn then) {
  struct group_barrier *r;
  if (g->raft.c.n_voters <= 1) {
    then(c, g, j);
    return;
  }
  if (g->n_reads == g->cap_reads) {
    size_t cap = g->cap_reads ? g->cap_reads * 2 : 16;
    r = (struct group_barrier *)URSULA_REALLOC(g->reads, cap * sizeof(*r));
    if (r == NULL) {
      group_fail(c, j, 503, "out of memory");
      return;
    }
    g->reads = r;
    g->cap_reads = cap;
  }
  r = &g->reads[g->n_reads++];
  memset(r, 0, sizeof(*r));
  r->j = j;
  r->then = then; /* ctx 0: the next round's */
  group_read_round(c, g);
}

/* JOB_HOP_SOURCE: read what j's fork inherits from the stream at
** hop_path, in g.  A cluster's replica here may not have applied yet
** what the fork's own group had (the two groups' logs are apart): the
** source's bytes below the fork point were committed before the fork
** was, so after a barrier on g they are here (and never change). */
static void group_read_source(struct core *c, struct group *g,
                              struct job *j) {
  struct str path;
  struct stream *s;
  path.ptr = j->hop_path;
  path.len = j->hop_len;
  s = stream_find(&g->sm, path);
  if (s == NULL || s->incarnation != j->hop_inc || j->hop_limit > s->tail) {
    if (g->cl.n_voters > 1 && !j->hop_linear) {
      j->hop_linear = 1;
      group_barrier(c, g, j, group_read_source);
      return;
    }
    /* the fork above let go of it: it went away meanwhile, and its
    ** owner answers */
    j->status = 500;
    j->reason = "a stream this fork inherits from is missing";
    group_read_back(c, j);
    return;
  }
  j->hop_linear = 0; /* (the next hop down looks anew) */
  group_read_hop(c, g, s, j, j->hop_limit);
}

/* A read's job arrives at the owner of a stream it inherits from
** (JOB_HOP_SOURCE; or runs again there after a chunk fetch), or back at
** the owner of the stream it reads (JOB_HOP_BACK). */
static void group_on_read_hop(struct loop *l, struct loop_msg *m) {
  struct core *c = (struct core *)loop_get_user(l);
  struct job *j = (struct job *)(void *)m;
  struct group *g;
  struct stream *s;
  if (j->read_hop == JOB_HOP_BACK) {
    g = group_of(c, j->path, j->path_len);
    s = group_read_target(c, g, j, group_wall(g));
    if (s == NULL) return; /* answered: 404, 410 */
    if (s->incarnation != j->incarnation) { /* another stream now */
      group_read(c, g, j);
      return;
    }
    if (j->status != 200) {
      group_reply(c, j);
      return;
    }
    group_read_answer(c, j, s);
    return;
  }
  g = group_of(c, j->hop_path, j->hop_len);
  if (j->fetch_rc != URSULA_OK) { /* the chunk it waited for failed */
    int rc = j->fetch_rc;
    j->fetch_rc = URSULA_OK;
    if (!group_fetch_again(j, rc)) {
      group_fail_fetch(c, j, rc);
      return;
    }
    j->hop_linear = 1; /* (READS RACING A REMOVAL) */
    group_barrier(c, g, j, group_read_source);
    return;
  }
  group_read_source(c, g, j);
}

/* SNAPSHOTS (stream.c has the state, api.c the routes).  Both reads go
** through the read barrier, as every read does. */

/* JOB_SNAP_GET: the stream's snapshot (its metadata; with offset_given,
** 404 unless it is at j->offset; its bytes into j->snap unless the job
** is a DELETE's). */
static void group_snap_read(struct core *c, struct group *g, struct job *j) {
  struct stream *s = group_read_target(c, g, j, group_wall(g));
  int rc;
  if (s == NULL) return;
  group_fill_meta(j, s);
  j->tail = s->tail;
  if (!s->has_snap || (j->offset_given && s->snap_at != j->offset)) {
    group_fail(c, j, 404,
               s->has_snap ? "no snapshot at this offset"
                           : "the stream has no snapshot");
    return;
  }
  j->status = 200;
  j->reason = NULL;
  j->snap.len = 0;
  if (!j->snap_delete && (rc = stream_read_snapshot(&g->sm, s, &j->snap)) !=
                             URSULA_OK) {
    group_read_failed(c, j, rc);
    return;
  }
  group_reply(c, j);
}

/* JOB_BOOTSTRAP: the snapshot into j->snap, then the append units from
** its offset (the retained offset if none) to the tail, or to where the
** units' bytes pass j->catchup_max (at least one unit), into j->data,
** their lengths into j->parts; j->tail: where they end. */
static void group_bootstrap(struct core *c, struct group *g, struct job *j) {
  struct stream *s = group_read_target(c, g, j, group_wall(g));
  uint64_t start, end;
  size_t u;
  int rc;
  if (s == NULL) return;
  group_fill_meta(j, s);
  start = s->has_snap ? s->snap_at : s->retained;
  if (start < s->base) {
    group_fail(c, j, 501,
               "a bootstrap of a fork's inherited bytes is not supported: "
               "publish a snapshot at or above its fork point");
    return;
  }
  j->snap.len = j->data.len = j->parts.len = 0;
  rc = stream_read_snapshot(&g->sm, s, &j->snap);
  end = start;
  for (u = stream_unit_at(s, start); rc == URSULA_OK && u < s->n_bounds;
       u++) {
    uint64_t len = s->bounds[u] - stream_unit_start(s, u);
    if (end > start && s->bounds[u] - start > j->catchup_max) break;
    if (buf_append(&j->parts, &len, sizeof(len)) != URSULA_OK)
      rc = URSULA_ENOMEM;
    end = s->bounds[u];
  }
  if (rc == URSULA_OK && end > start)
    rc = stream_read(&g->sm, s, start, end, &j->data);
  if (rc == URSULA_EAGAIN) { /* runs again once the chunk is here */
    if ((rc = group_park(c, g, j)) != URSULA_OK) group_fail_fetch(c, j, rc);
    return;
  }
  if (rc != URSULA_OK) {
    group_read_failed(c, j, rc);
    return;
  }
  j->start = start;
  j->tail = end;
  j->up_to_date = end == s->tail;
  j->closed = s->closed && end == s->tail;
  j->status = 200;
  j->reason = NULL;
  group_reply(c, j);
}

/* Point the views of j->cmd at j's own fields. */
URSULA_PRIVATE void group_bind_cmd(struct group *g, struct job *j) {
  struct cmd *m = &j->cmd;
  m->path.ptr = j->path;
  m->path.len = j->path_len;
  m->content_type = util_str(j->content_type);
  m->data.ptr = j->body.ptr ? j->body.ptr : "";
  m->data.len = j->body.len;
  m->expires_text = util_str(j->expires_text);
  m->stream_seq = util_str(j->stream_seq);
  m->producer_id = util_str(j->producer_id);
  m->fork_source = util_str(j->fork_source);
  m->attrs.ptr = j->attrs.ptr ? j->attrs.ptr : "";
  m->attrs.len = j->attrs.len;
  if (m->type == CMD_MULTI) { /* the body holds the ops (batch.c) */
    m->ops = m->data;
    m->data.ptr = "";
    m->data.len = 0;
  }
  m->time_ms = group_wall(g);
}

URSULA_PRIVATE void group_run_job(struct core *c, struct job *j) {
  struct group *g = group_of(c, j->path, j->path_len);
  int refetch = 0;
  if (j->fetch_rc != URSULA_OK) { /* the chunk it waited for failed */
    int rc = j->fetch_rc;
    j->fetch_rc = URSULA_OK;
    refetch = 1;
    if (!group_fetch_again(j, rc)) {
      group_fail_fetch(c, j, rc);
      return;
    }
  } /* (then from the start, READS RACING A REMOVAL) */
  switch (j->op) {
    case JOB_READ:
    case JOB_HEAD:
      /* a later part of a catch-up in parts (api.c) reads below the
      ** tail T its first part's barrier confirmed, here: bytes this node
      ** has applied, which never change (unless the stream is gone,
      ** which group_read finds).  Only a rerun after a failed fetch
      ** looks again through a barrier (READS RACING A REMOVAL). */
      if (j->op == JOB_READ && j->end_limit != 0 && !refetch)
        group_read(c, g, j);
      else
        group_barrier(c, g, j, group_read);
      return;
    case JOB_CREATE:
      j->cmd.type = CMD_CREATE;
      break;
    case JOB_APPEND:
      j->cmd.type = CMD_APPEND;
      break;
    case JOB_DELETE:
      j->cmd.type = CMD_DELETE;
      break;
    case JOB_BUCKET_CREATE:
      j->cmd.type = CMD_BUCKET_CREATE;
      break;
    case JOB_BUCKET_DELETE:
      j->cmd.type = CMD_BUCKET_DELETE;
      break;
    case JOB_SNAP_PUT:
      j->cmd.type = CMD_SNAPSHOT_PUT;
      break;
    case JOB_RETAIN:
      j->cmd.type = CMD_RETAIN;
      break;
    case JOB_SNAP_GET:
      group_barrier(c, g, j, group_snap_read);
      return;
    case JOB_BOOTSTRAP:
      group_barrier(c, g, j, group_bootstrap);
      return;
    case JOB_MULTI:
      j->cmd.type = CMD_MULTI;
      break;
    case JOB_ATTRS:
      j->cmd.type = CMD_ATTRS;
      break;
    default:
      group_fail(c, j, 500, "unknown job");
      return;
  }
  group_bind_cmd(g, j);
  if (j->op == JOB_SNAP_PUT || j->op == JOB_RETAIN) {
    j->cmd.at = j->offset;
    j->cmd.digest = util_str(j->snap_digest);
    j->cmd.match = util_str(j->snap_match);
    if (j->has_match) j->cmd.flags |= CMD_F_MATCH;
  }
  group_write(c, g, &j->cmd, group_after_change, j);
}

URSULA_PRIVATE void group_unwatch(struct core *c, int from_core,
                                  const char *path, size_t path_len) {
  struct str p;
  struct stream *s;
  int gid = server_group_of(c->srv, path, path_len);
  p.ptr = path;
  p.len = path_len;
  s = stream_find(&server_group(c->srv, gid)->sm, p);
  if (s != NULL && from_core < 64) s->local.watch_mask &= ~((uint64_t)1 << from_core);
}

/* ------------------------------------------------------------ backups

   BACKUP IMAGES (issue 17, item 7; README, Backup and restore).  POST
   /__ursula/backup/G on the admin listener becomes a JOB_BACKUP sent to
   G's owner core (group_backup).  The image must hold every append
   acknowledged before the request, by any node: so it is written only
   after group_barrier() passes, the barrier reads have (thesis 6.4,
   ReadIndex).  On the leader that confirms its leadership and commit
   index with a round of heartbeats; on a follower it asks the leader for
   its commit index as of now and waits until this node has applied that
   far.  Either way applied_index is then at least every acknowledged
   append's entry, and the image is as of applied_index.  A single node
   writes at once (everything applied was acknowledged, and nothing
   acknowledged is unapplied).  A group that has applied nothing (a
   single node's group no stream ever hashed to) has no image: the
   answer says index 0 and 0 bytes, and no file is written.
   The image is written on the core, synchronously, like the install
   image (group_write_image_with: wal.c's file "backup", never "image", so
   a catch-up streaming "image" meanwhile is not disturbed); the core
   serves nothing else meanwhile (README: its cost per GiB). */

static void group_backup_write(struct core *c, struct group *g,
                               struct job *j) {
  uint64_t t0 = group_mono(g);
  int rc;
  if (g->applied_index == 0) { /* a group nothing was ever written to */
    j->image_index = j->image_term = j->image_bytes = 0;
    j->image_crc = 0;
    j->status = 200;
    j->reason = NULL;
    group_reply(c, j);
    return;
  }
  rc = group_write_image_with(g, wal_backup_begin);
  if (rc == URSULA_OK)
    rc = wal_backup_stat(g->wal, &j->image_bytes, &j->image_crc);
  if (rc != URSULA_OK) {
    LOG_W("group %d: writing the backup image failed (%s)", g->id,
          ursula_strerror(rc));
    group_fail(c, j, 500,
               rc == URSULA_ENOSPC ? "no space left for the backup image"
                                   : "writing the backup image failed (the "
                                     "node's log says why)");
    return;
  }
  j->image_index = g->applied_index;
  j->image_term = g->applied_term;
  j->status = 200;
  j->reason = NULL;
  LOG_I("group %d: wrote a backup image at entry %llu (%llu bytes) in %llu "
        "ms",
        g->id, (unsigned long long)j->image_index,
        (unsigned long long)j->image_bytes,
        (unsigned long long)(group_mono(g) - t0));
  (void)t0;
  group_reply(c, j);
}

/* JOB_BACKUP arrives at the group's owner. */
static void group_on_backup(struct loop *l, struct loop_msg *m) {
  struct core *c = (struct core *)loop_get_user(l);
  struct job *j = (struct job *)(void *)m;
  struct group *g = server_group(c->srv, j->group);
  if (g->wal == NULL) {
    group_fail(c, j, 409, "this node has no --wal-dir: nothing to back up");
    return;
  }
  group_barrier(c, g, j, group_backup_write);
}

URSULA_PRIVATE void group_backup(struct core *c, struct job *j) {
  j->msg.on_msg = group_on_backup;
  server_send(c, server_owner_of(c->srv, j->group), &j->msg);
}

/* SNAPSHOT NOW (the admin listener's POST /__ursula/raft/G/snapshot):
** the snapshot the log's growth would bring, taken at once -- before a
** backup of the files, or to shorten the next start's replay.  Not a
** barrier: it is of this node's own applied state, which is what its
** log holds. */
static void group_on_snapshot_now(struct loop *l, struct loop_msg *m) {
  struct core *c = (struct core *)loop_get_user(l);
  struct job *j = (struct job *)(void *)m;
  struct group *g = server_group(c->srv, j->group);
  int rc;
  if (g->wal == NULL) {
    group_fail(c, j, 409, "this node has no --wal-dir: no log to snapshot");
    return;
  }
  if (wal_failed(g->wal) || g->storage_failed) {
    group_fail(c, j, 503, "the group's log takes no writes now");
    return;
  }
  j->image_index = j->image_term = j->image_bytes = 0;
  if (g->applied_index > 0) { /* else: nothing applied, no state */
    if ((rc = group_snapshot(g)) != URSULA_OK) {
      group_fail(c, j, 500, rc == URSULA_ENOSPC
                                ? "no space left for the snapshot"
                                : "the snapshot failed (the node's log says "
                                  "why)");
      return;
    }
    j->image_index = g->applied_index;
    j->image_term = g->applied_term;
    j->image_bytes = g->snapshot_size;
    LOG_I("group %d: snapshot at entry %llu, asked for (%llu bytes)", g->id,
          (unsigned long long)j->image_index,
          (unsigned long long)j->image_bytes);
  }
  j->status = 200;
  j->reason = NULL;
  group_reply(c, j);
}

URSULA_PRIVATE void group_snapshot_now(struct core *c, struct job *j) {
  j->msg.on_msg = group_on_snapshot_now;
  server_send(c, server_owner_of(c->srv, j->group), &j->msg);
}

/* ------------------------------------------------------------ cold tier */

/* stream_state's read_chunk: the tier's. */
static int group_read_chunk(void *ctx, const struct stream *s,
                            const struct stream_chunk *ch, const char **p) {
  return tier_read_chunk(&((struct group *)ctx)->tier, s, ch, p);
}

URSULA_PRIVATE int group_park(struct core *c, struct group *g, struct job *j) {
  return tier_fetch(c, &g->tier, j);
}

/* READS RACING A REMOVAL.  A replica serves a read after a barrier from
** its applied state; if that names a chunk the read must fetch, the
** stream may be removed meanwhile, and the leader of the removal's term
** deletes the chunk once the removal commits (tier_delete_objects), while
** this replica may not have applied it yet.  So a chunk found missing is
** not yet a loss: the job runs once more from its start, through a new
** barrier (group_barrier).  That barrier's read index is at least the
** commit index of the moment its leader answers it, and the removal was
** committed before its objects went, so this replica then has the
** removal applied: the read answers 404, or reads a stream created there
** since.  Only a chunk missing again is a loss (500).  A single node
** deletes objects after its own apply, so there the job simply runs
** again.  (GROUP_PLANT=6: no second run.) */
URSULA_PRIVATE int group_fetch_again(struct job *j, int rc) {
  if (rc != URSULA_ENOTFOUND || j->fetch_missed || GROUP_BUG(6)) return 0;
  j->fetch_missed = 1;
  return 1;
}

URSULA_PRIVATE void group_fail_fetch(struct core *c, struct job *j, int rc) {
  const char *reason;
  int status = tier_fetch_status(rc, &reason);
  if (rc == URSULA_ENOTFOUND)
    LOG_E("a read of %.*s: a chunk it needs is missing from the cold tier",
          (int)j->path_len, j->path);
  group_fail(c, j, status, reason);
}

/* The tier's lead_term: the term in which this node leads g and has
** applied every entry of earlier terms that will ever commit (tier.c's
** rule 2), else 0.  In a cluster, that is once it has applied an entry
** of its own term; a single node applied its whole log at replay (its
** no-op waits for the first write, group_elect). */
static uint64_t group_lead_term(const struct group *g) {
  if (GROUP_BUG(5)) return g->raft.term; /* the PLANTED BUG: any role */
  if (g->raft.role != RAFT_LEADER || g->raft.storage_failed ||
      g->raft.transfer_to != 0 || /* (its proposals are refused) */
      (g->cl.n_voters > 1 && g->applied_term != g->raft.term))
    return 0;
  return g->raft.term;
}

URSULA_PRIVATE void group_attach_cold(struct group *g, struct cold *cold,
                                      struct cold_cache *cache,
                                      uint64_t flush_age_ms) {
  struct tier *t = &g->tier;
  t->group = g; /* what the tier works on: see tier.c */
  t->id = g->id;
  t->env = g->env;
  t->sm = &g->sm;
  t->wal = g->wal;
  t->propose = group_propose;
  t->lead_term = group_lead_term;
  tier_attach(t, cold, cache, flush_age_ms, g->hot_max);
  g->sm.read_chunk = group_read_chunk;
  g->sm.read_ctx = g;
}

URSULA_PRIVATE uint64_t group_cold_chunks(struct group *g) {
  uint64_t n = 0;
  size_t k;
  const struct stream *s;
  for (k = 0; k < g->sm.cap; k++)
    for (s = g->sm.slots[k]; s != NULL; s = s->hnext) n += s->n_chunks;
  return n;
}

URSULA_PRIVATE void group_sweep(struct core *c, struct group *g) {
  uint64_t now = group_wall(g);
  size_t i;
  if (g->retry != NULL && (g->wal == NULL || !wal_failed(g->wal))) {
    struct group_release *rel = g->retry; /* again, each once */
    g->retry = NULL;
    while (rel != NULL) {
      struct group_release *next = (struct group_release *)(void *)rel->msg.next;
      group_propose_release(c, g, rel);
      rel = next;
    }
  }
  /* segments freed by deletions or moves go now, not at the next
  ** snapshot the log's growth would bring (which may never come) */
  if (g->wal != NULL && !g->in_flight && !wal_failed(g->wal) &&
      wal_can_compact(g->wal, group_compact_upto(g)))
    group_snapshot(g);
  if (g->wal != NULL && wal_failed(g->wal) && !g->in_flight) {
    int rc;
    if (!g->storage_failed) group_lost(c, g, URSULA_EIO); /* (framing) */
    rc = wal_recover(g->wal);
    if (rc == URSULA_OK) {
      LOG_W("group %d: WAL verified again after the failure; writes resume",
            g->id);
    } else if (rc != g->wal_error) {
      g->wal_error = rc;
      LOG_E("group %d: WAL still failed (%s); writes stay refused", g->id,
            ursula_strerror(rc));
    }
  }
  if (g->storage_failed && !g->in_flight &&
      (g->wal == NULL || !wal_failed(g->wal))) {
    /* the log ends at its durable entry again: the core goes on from
    ** there, in a new term (R5: no index of the failed one is reused) */
    struct raft_in in;
    memset(&in, 0, sizeof(in));
    in.type = RAFT_IN_STORAGE_RECOVERED;
    in.term = g->wal != NULL ? wal_last_term(g->wal) : 0;
    in.index = g->wal != NULL ? wal_last_index(g->wal) : 0;
    g->storage_failed = 0;
    group_step(c, g, &in);
    group_elect(c, g);
  }
  for (i = 0; i < g->sm.cap; i++) {
    struct stream *s = g->sm.slots[i];
    while (s != NULL) {
      struct stream *next = s->hnext;
      if (!s->soft_deleted && group_expired(s, now)) {
        struct cmd e;
        memset(&e, 0, sizeof(e));
        e.type = CMD_EXPIRE;
        e.time_ms = now;
        e.path.ptr = s->path;
        e.path.len = s->path_len;
        group_propose(c, g, &e, group_ignore_done, NULL); /* applied later */
      } else {
        group_touch_any(c, g, s); /* at most one TOUCH a second here */
      }
      s = next;
    }
  }
  tier_tick(c, &g->tier);
  group_spread(c, g);
}

/* ------------------------------------------------------------ status */

/* STATUS.  GET /__ursula/cluster (api.c) answers from a struct
** group_gather: a message that visits the cores in turn (core 0, 1, ...),
** each filling in the groups it owns -- read on their own thread, as
** every group's state is -- and its own links to the peers, and then goes
** back to the core of the connection that asked.  So the answer holds one
** snapshot per core, each taken at one moment of that core; groups of
** different cores are read a few loop turns apart.
**
** LEADERSHIP LOG.  A failover changes the leader of many groups at once,
** so a group logs its own change at DEBUG only; it counts why in whys[]
** (group_note_role), and once a second each core logs one INFO line if
** the number of its groups this node leads changed, or leaderships came
** and went (group_leads_report), with the counts by why:
**   won   after no leader was heard for an election timeout (paper 5.2),
**         by a transfer to this node (TimeoutNow, thesis 3.10), or as the
**         only voter (a single node, at start and after a storage
**         failure);
**   lost  for a higher term (paper 5.1), handed over (a transfer this
**         leader began, then its target's higher term, thesis 3.10), no
**         quorum heard for an election timeout (check-quorum, thesis
**         6.2), or a storage failure (R5). */
enum {
  GROUP_WHY_SILENT = 0,
  GROUP_WHY_TRANSFER,
  GROUP_WHY_ALONE,
  GROUP_WHY_HIGHER, /* the first of the losses */
  GROUP_WHY_HANDED,
  GROUP_WHY_QUORUM,
  GROUP_WHY_STORAGE,
  GROUP_WHY_N
};
static const char *const group_why_text[GROUP_WHY_N] = {
    "elected, no leader heard for an election timeout",
    "by a transfer to this node",
    "as the only voter",
    "stepped down for a higher term",
    "handed over to another node",
    "stepped down: no quorum heard",
    "stepped down: storage failed"};

/* Whether in is a TimeoutNow (a leader hands this node its group). */
static int group_in_timeout_now(const struct raft_in *in) {
  return in->type == RAFT_IN_MSG && in->msg != NULL &&
         in->msg->type == RAFT_MSG_TIMEOUT_NOW;
}

/* After a step of input in changed g's role or term (from role, term;
** transfer_to: the transfer the leader had under way, 0: none): note why
** a campaign began, and count a leadership won or lost. */
static void group_note_role(struct group *g, const struct raft_in *in,
                            int role, uint64_t term, uint64_t transfer_to) {
  int now = g->raft.role;
  if (now == RAFT_PRECANDIDATE || now == RAFT_CANDIDATE) {
    if (group_in_timeout_now(in))
      g->campaign_why = GROUP_WHY_TRANSFER;
    else if (in->type == RAFT_IN_TICK)
      g->campaign_why = GROUP_WHY_SILENT;
  } else if (now == RAFT_LEADER && role != RAFT_LEADER) {
    g->won++;
    g->whys[g->raft.c.n_voters == 1    ? GROUP_WHY_ALONE
            : group_in_timeout_now(in) ? GROUP_WHY_TRANSFER
                                       : g->campaign_why]++;
  }
  if (role == RAFT_LEADER && now != RAFT_LEADER) g->lost++;
  if (role == RAFT_LEADER && now != RAFT_LEADER)
    g->whys[g->raft.term > term ? (transfer_to != 0 ? GROUP_WHY_HANDED
                                                    : GROUP_WHY_HIGHER)
            : in->type == RAFT_IN_STORAGE_FAILED ? GROUP_WHY_STORAGE
                                                 : GROUP_WHY_QUORUM]++;
}

URSULA_PRIVATE void group_status(const struct group *g,
                                 struct group_status *out) {
  memset(out, 0, sizeof(*out));
  out->group = g->id;
  out->role = g->raft.role;
  out->term = g->raft.term;
  out->leader = g->raft.leader;
  if (GROUP_BUG(4) && g->raft.role != RAFT_LEADER) out->leader = g->raft.c.id;
  out->commit = g->raft.commit;
  out->applied = g->applied_index;
  out->last_index = g->raft.last_index;
  out->streams = g->sm.n;
  out->hot_bytes = g->sm.hot_bytes;
  out->tier = g->tier.stats;
  out->won = g->won;
  out->lost = g->lost;
  out->installs = g->installs;
}

URSULA_PRIVATE void group_leads_report(struct core *c) {
  const struct ursula_server *s = c->srv;
  unsigned whys[GROUP_WHY_N];
  char text[640];
  size_t n = 0;
  int gid, k, led = 0, mine = 0, any = 0;
  memset(whys, 0, sizeof(whys));
  for (gid = c->id; gid < s->n_groups; gid += s->n_cores) {
    struct group *g = s->groups[gid];
    mine++;
    if (g->raft.role == RAFT_LEADER) led++;
    for (k = 0; k < GROUP_WHY_N; k++) {
      whys[k] += g->whys[k];
      any |= g->whys[k] != 0;
      g->whys[k] = 0;
    }
  }
  if (led == c->leads && !any) return;
  text[0] = '\0';
  for (k = 0; k < GROUP_WHY_N && n < sizeof(text); k++)
    if (whys[k] != 0) {
      int w = snprintf(text + n, sizeof(text) - n, "%s%c%u %s",
                       n > 0 ? "; " : "", k < GROUP_WHY_HIGHER ? '+' : '-',
                       whys[k], group_why_text[k]);
      if (w < 0) break;
      n += (size_t)w;
    }
  LOG_I("core %d: this node leads %d of its %d groups (was %d)%s%s", c->id,
        led, mine, c->leads, n > 0 ? ": " : "", text);
  (void)mine; /* when logging is compiled out */
  c->leads = led;
}

static void group_gather_drop(struct loop_msg *m) {
  group_gather_free((struct group_gather *)(void *)m);
}

URSULA_PRIVATE void group_gather_free(struct group_gather *gg) {
  if (gg == NULL) return;
  if (gg->bq != NULL) URSULA_FREE(gg->bq->entries);
  URSULA_FREE(gg->bq);
  URSULA_FREE(gg->groups);
  URSULA_FREE(gg);
}

URSULA_PRIVATE struct group_gather *group_gather_new(struct core *c) {
  const struct ursula_server *s = c->srv;
  const struct ursula_config *cfg = &s->cfg;
  struct group_gather *gg =
      (struct group_gather *)URSULA_MALLOC(sizeof(*gg));
  int i;
  if (gg == NULL) return NULL;
  memset(gg, 0, sizeof(*gg));
  gg->groups = (struct group_status *)URSULA_MALLOC(
      sizeof(*gg->groups) * (size_t)s->n_groups);
  if (gg->groups == NULL) {
    URSULA_FREE(gg);
    return NULL;
  }
  memset(gg->groups, 0, sizeof(*gg->groups) * (size_t)s->n_groups);
  gg->msg.on_drop = group_gather_drop;
  gg->origin_core = c->id;
  gg->n_cores = s->n_cores;
  gg->n_groups = s->n_groups;
  gg->cluster = cfg->peer_count > 1;
  gg->node = gg->cluster ? cfg->node_id : GROUP_NODE_ID;
  for (i = 0; gg->cluster && i < cfg->peer_count; i++) {
    struct group_peer_status *ps;
    if (cfg->peers[i].id == cfg->node_id) continue;
    ps = &gg->peers[gg->n_peers++];
    ps->id = cfg->peers[i].id;
    snprintf(ps->address, sizeof(ps->address), "%.256s:%d",
             cfg->peers[i].host, cfg->peers[i].port);
  }
  return gg;
}

/* Core c's links to each peer: up or not, and the newest frame heard. */
static void group_gather_peers(struct core *c, struct group_gather *gg) {
  uint64_t now = loop_now_ms(c->loop);
  int i;
  for (i = 0; i < gg->n_peers; i++) {
    struct group_peer_status *ps = &gg->peers[i];
    struct peer_link_stats st;
    peer_stats(c->srv->peer, c->id, ps->id, &st);
    if (st.up) ps->links_up++;
    ps->bytes_out += st.bytes_out;
    ps->bytes_in += st.bytes_in;
    ps->dropped += st.dropped;
    if (st.heard_ms != 0) {
      uint64_t age = now > st.heard_ms ? now - st.heard_ms : 0;
      if (!ps->heard || age < ps->heard_age_ms) ps->heard_age_ms = age;
      ps->heard = 1;
    }
  }
}

/* BUCKETS.  A bucket's streams are in every group (placement hashes
** their paths), so what api.c answers of a bucket (GET /{b}, DELETE's
** check, GET /{b}/streams, GET /__ursula/buckets) is gathered: the
** gathering above, with a struct group_bucket_query, visits every core,
** and each core looks at the streams and bucket records of its own
** groups, on its own thread, adding what it finds to the query (one core
** at a time holds it).  So an answer costs O(streams on the node), and
** the groups of different cores are read a few loop turns apart; each
** group is read as applied here (a follower's may be a moment behind).
** A stream counts when it is visible: not soft-deleted (a deleted
** stream a fork still reads) and not expired now. */

/* Entries by name, bytewise (qsort). */
static int group_entry_cmp(const void *x, const void *y) {
  const struct group_bucket_entry *a = (const struct group_bucket_entry *)x;
  const struct group_bucket_entry *b = (const struct group_bucket_entry *)y;
  int c = memcmp(a->name, b->name,
                 a->name_len < b->name_len ? a->name_len : b->name_len);
  if (c != 0) return c;
  return a->name_len < b->name_len ? -1 : a->name_len > b->name_len;
}

/* A new entry at the end (NULL: out of memory, and bq->failed). */
static struct group_bucket_entry *group_entry_add(
    struct group_bucket_query *bq, struct str name) {
  struct group_bucket_entry *e;
  if (bq->n_entries == bq->cap_entries) {
    size_t cap = bq->cap_entries ? bq->cap_entries * 2 : 64;
    e = (struct group_bucket_entry *)URSULA_REALLOC(bq->entries,
                                                    cap * sizeof(*e));
    if (e == NULL) {
      bq->failed = 1;
      return NULL;
    }
    bq->entries = e;
    bq->cap_entries = cap;
  }
  e = &bq->entries[bq->n_entries++];
  memset(e, 0, sizeof(*e));
  memcpy(e->name, name.ptr, name.len < sizeof(e->name) ? name.len
                                                       : sizeof(e->name) - 1);
  e->name_len = name.len < sizeof(e->name) ? name.len : sizeof(e->name) - 1;
  return e;
}

/* ALL: the entry of bucket name, made (in name order) if it is new. */
static struct group_bucket_entry *group_entry_of(struct group_bucket_query *bq,
                                                 struct str name) {
  struct group_bucket_entry key, *e;
  size_t lo = 0, hi = bq->n_entries;
  memset(&key, 0, sizeof(key));
  memcpy(key.name, name.ptr, name.len);
  key.name_len = name.len;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = group_entry_cmp(&bq->entries[mid], &key);
    if (c == 0) return &bq->entries[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  if ((e = group_entry_add(bq, name)) == NULL) return NULL;
  memmove(bq->entries + lo + 1, bq->entries + lo,
          (bq->n_entries - 1 - lo) * sizeof(*e));
  bq->entries[lo] = key;
  return &bq->entries[lo];
}

/* LIST: keep the first limit + 1 ids (one more than an answer holds, so
** that it knows whether more follow). */
URSULA_PRIVATE void group_bucket_trim(struct group_bucket_query *bq) {
  if (bq->n_entries == 0) return;
  qsort(bq->entries, bq->n_entries, sizeof(*bq->entries), group_entry_cmp);
  if (bq->n_entries > bq->limit + 1) bq->n_entries = bq->limit + 1;
}

/* Whether id is one a listing wants: the prefix, and after `after`. */
static int group_list_wants(const struct group_bucket_query *bq,
                            struct str id) {
  if (id.len < bq->prefix_len || memcmp(id.ptr, bq->prefix, bq->prefix_len))
    return 0;
  if (bq->has_after) {
    int c = memcmp(id.ptr, bq->after,
                   id.len < bq->after_len ? id.len : bq->after_len);
    if (c < 0 || (c == 0 && id.len <= bq->after_len)) return 0;
  }
  return 1;
}

/* One visible stream s (its path split as bp) for the query. */
static void group_bucket_stream(struct group_bucket_query *bq,
                                const struct stream *s,
                                const struct util_bucket_path *bp) {
  struct group_bucket_entry *e;
  if (bq->mode == GROUP_BQ_ALL) {
    if ((e = group_entry_of(bq, bp->bucket)) == NULL) return;
    e->streams++;
    e->bytes += s->tail;
    return;
  }
  if (bp->bucket.len != bq->bucket_len ||
      memcmp(bp->bucket.ptr, bq->bucket, bq->bucket_len) != 0)
    return;
  bq->streams++;
  bq->bytes += s->tail;
  if (bq->mode != GROUP_BQ_LIST || !group_list_wants(bq, bp->id)) return;
  if ((e = group_entry_add(bq, bp->id)) == NULL) return;
  snprintf(e->content_type, sizeof(e->content_type), "%s",
           s->content_type ? s->content_type : "");
  e->tail = s->tail;
  e->closed = s->closed;
  if (bq->n_entries > 2 * (bq->limit + 1)) group_bucket_trim(bq);
}

URSULA_PRIVATE void group_bucket_visit(struct group *g,
                                       struct group_bucket_query *bq) {
  const struct stream_state *st = &g->sm;
  uint64_t now = group_wall(g);
  size_t i;
  for (i = 0; i < st->cap && !bq->failed; i++) {
    const struct stream *s;
    for (s = st->slots[i]; s != NULL && !bq->failed; s = s->hnext) {
      struct util_bucket_path bp;
      if (s->soft_deleted || group_expired(s, now)) continue;
      util_bucket_path(s->path, s->path_len, &bp);
      if (bp.kind == UTIL_PATH_IN_BUCKET || bp.kind == UTIL_PATH_AFFINITY)
        group_bucket_stream(bq, s, &bp);
    }
  }
  if (bq->mode == GROUP_BQ_ONE) {
    const struct stream_bucket *b;
    struct str name;
    name.ptr = bq->bucket;
    name.len = bq->bucket_len;
    if ((b = stream_bucket_find(st, name)) != NULL) {
      bq->has_record = 1;
      bq->created_ms = b->created_ms;
    }
  } else if (bq->mode == GROUP_BQ_ALL) {
    for (i = 0; i < st->n_buckets && !bq->failed; i++) {
      struct str name;
      name.ptr = st->buckets[i].name;
      name.len = st->buckets[i].name_len;
      group_entry_of(bq, name);
    }
  }
}

/* On core gg->at: its part, then on to the next core, or back. */
static void group_gather_visit(struct loop *l, struct loop_msg *m) {
  struct core *c = (struct core *)loop_get_user(l);
  struct group_gather *gg = (struct group_gather *)(void *)m;
  const struct ursula_server *s = c->srv;
  int gid;
  for (gid = c->id; gid < gg->n_groups; gid += gg->n_cores) {
    if (gg->bq != NULL)
      group_bucket_visit(s->groups[gid], gg->bq);
    else
      group_status(s->groups[gid], &gg->groups[gid]);
  }
  if (gg->bq != NULL && gg->bq->mode == GROUP_BQ_LIST)
    group_bucket_trim(gg->bq);
  if (s->peer != NULL) group_gather_peers(c, gg);
  if (c->journal != NULL && journal_state(c->journal) == JOURNAL_BROKEN)
    gg->journals_broken++;
  if (c->journal != NULL && journal_state(c->journal) == JOURNAL_STUCK)
    gg->journals_stuck++;
  if (gg->want_metrics) {
    metrics_merge(&gg->sum, &c->metrics);
    loop_stats(l, &gg->loops[c->id]);
    gg->conns[c->id] = c->conns.n_conns;
    gg->live[c->id] = c->conns.n_live;
    gg->out_pending[c->id] = c->out_pending;
  }
  if (++gg->at < gg->n_cores) {
    gg->msg.on_msg = group_gather_visit;
    server_send(c, gg->at, m);
  } else {
    gg->msg.on_msg = gg->done;
    server_send(c, gg->origin_core, m);
  }
}

URSULA_PRIVATE void group_gather_start(struct core *c, struct group_gather *gg,
                                       loop_msg_fn done) {
  gg->done = done;
  gg->at = 0;
  gg->msg.on_msg = group_gather_visit;
  server_send(c, 0, &gg->msg);
}
