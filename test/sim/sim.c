/*
** sim.c -- a deterministic simulator that tries to break the Raft core.
**
**   ./build/sim --seeds 2000            seeds 1..2000 (make test-sim)
**   ./build/sim --seed 77 --trace       replay one seed, every event
**   ./build/sim --find 3000             stop at the first failing seed
**                                       (make test-sim-bugs, with a plant)
**
** One thread, one seed.  The seed feeds splitmix64 substreams: the
** network, the disks, the workload, the nodes' timers (each node's
** env->random) and the faults, so that a run is a pure function of its
** seed.  An event heap keyed by (virtual time in us, sequence) runs N
** nodes (3 or 5, chosen per seed) x G groups (4..8), each group driving
** the REAL raft_step() of src/raft.c through a driver written here, over:
**   - the REAL write-ahead log (src/wal.c) per (node, group), through
**     simlog.c (the one interface to a log), over a simulated disk per
**     node (simfs.c, behind the node's env->fs: current and durable bytes
**     per file, directory entries durable after sync_dir); a sync
**     completes after a sampled latency, or fails;
**   - a simulated network: delay (and so reordering), drop, duplicate,
**     symmetric, asymmetric and flapping partitions;
**   - crash and restart (the disk keeps what was synced, and a torn prefix
**     of what was not, at 512-byte sectors; wal_open + wal_replay), pause,
**     a wiped disk now and then (the node comes back with no state,
**     recovering), slow syncs, syncs failing with EIO (their pages are
**     dropped: fsyncgate), writes failing with ENOSPC, a bit flipped in
**     a durable segment or snapshot of one node at a time (the WAL must
**     find it: the node's disk is then replaced, as a wipe), snapshots
**     (wal_save_snapshot, wal_compact; installs for followers behind the
**     first index: the sender's image file through wal_install_begin,
**     put in chunks, commit), leadership transfers;
**   - the REAL state machine (src/stream.c, commands of src/cmd.c,
**     through simsm.c) per (node, group): SIMSM_STREAMS text streams per
**     group; snapshots are its stream_snapshot() with the bytes it names
**     (simlog.c: SNAPSHOTS);
**   - clients (THE CLIENTS below), and read barriers at random nodes.
** Swarm testing: each seed enables a random subset of the faults.  After
** 30 election timeouts the faults heal, and liveness is checked.
**
** THE DRIVER follows raft.c's rules: actions in order; a SEND waits for
** the hard state saved before it (R1) and for its after-durable entry
** (R2), and is dropped if that entry is truncated; a TRUNCATE clips the
** sync in flight (R3); completions carry the (term, index) the sync was
** started for, stale or not (R4); a failed sync loses what was volatile
** and the core is told (R5).  Committed entries are applied up to the
** durable index: the payload of each, as the node's WAL reads it back
** (simlog_payload), decoded by cmd_decode and applied by stream_apply
** (simsm_apply); a restart restores the state from the WAL's snapshot
** (stream_restore), an install from the installed image.  Per seed the
** states keep all, a few or none of their bytes in memory (stream_evict):
** the rest is read through the state's read_cold hook from the WAL.
**
** THE CLIENTS.  Every proposal is an attempt of a client op (its command,
** simsm_encode, is the entry's payload; the op's tag is the 17 bytes it
** appends, unique per op): a CREATE of a stream, a plain APPEND (never
** retried), or a producer's APPEND.  Producers ("c<k>", 2 per group,
** epoch 0, each on one stream) keep one request in flight; after an
** unknown outcome (refused, its entry replaced, its node crashed, no
** answer within 4 election timeouts) or a 404 they send the SAME seq
** again, and seq + 1 only after a 200 or 204.  An attempt is sent to the
** node believed to lead, or any node, which proposes it or forwards it
** once (a network copy of a forward is no retry).  The answer is the
** proposer's own apply result (simsm_result.status), given only if it
** applies the entry at the (term, index) it proposed it at, in the same
** life.
**
** INVARIANTS, checked after every event (or where they can change):
**   - at most one leader per (group, term);
**   - log matching: every entry carries a prefix hash, and an entry
**     appended from a message must chain onto the entry this node holds
**     before it; one (index, term) names one entry in the whole cluster;
**   - leader completeness: a new leader holds every committed entry;
**   - state machine safety: every node commits the same entry at each
**     index; no node truncates a committed entry;
**   - every committed entry is durable on a majority of simulated disks
**     when it first commits (a wiped node counts what it held);
**   - the same state at each applied index on every replica: equal
**     stream_digest() (simsm_digest), after an apply, a restart or an
**     install; replay and reads give back the command bytes written;
**   - an acknowledgment of index i in term T: the sender's log is T's
**     leader's through i;
**   - durable term and vote never go backwards (across restarts too: the
**     WAL's HARD records).  The commit index is volatile (Raft paper,
**     Fig. 2; simlog.c's top): a node restarts with commit at its
**     snapshot, and the committed prefix is checked instead (state machine
**     safety, no committed entry truncated);
**   - what the WAL reported durable is on the disk after a restart (the
**     same entries, by prefix hash); replay and reads of durable entries
**     give back the bytes written; a log is only ever damaged on a disk
**     a bit was flipped on;
**   - the core's view of its log matches the log (white box);
**   - an acknowledged proposal (committed, with its term at its index) is
**     never lost: at the end every node's committed prefix holds it;
**   - a read barrier's index covers every proposal acknowledged before
**     the read began (linearizable reads);
**   - what clients see (PROTOCOL.md's idempotent producers; Raft paper
**     section 6.3: exactly once with client sessions, 6.4: reads):
**     a producer never gets 409 or 403 (it sends seq n + 1 only after n
**     was accepted, and retries the same seq); a read served at a node
**     once it applied the barrier's index sees, in its streams (read back
**     as tags, simsm_tags), every append acknowledged (200 or 204) before
**     the read began; at the end, on every node: every acknowledged
**     append is in its stream (none lost), no tag is in twice (a
**     producer's retry is deduplicated; a plain append is never retried)
**     and every tag is an append of that stream, and any two replicas'
**     streams agree at every offset both hold (one is a prefix of the
**     other);
**   - liveness: within 10 election timeouts of healing (20 while a voter
**     of the group is still recovering) every group has a leader all
**     nodes follow; by the end every proposal that got an
**     index is resolved (committed there, with its term or another), and
**     a proposal and a read issued after healing succeed.
**
** THE FAULTS MIX (swarm: each seed enables a random subset): drop, dup,
** reorder, partition, asym, flap (network); crash, pause, wipe,
** killleader, isolate (nodes); slowdisk, diskfail (sync EIO), nospc
** (write ENOSPC), flip (a bit on one node's disk); snapshot (frequent
** compaction and installs), transfer, reads.  Torn writes come with every
** crash.  Injected on the log's group-commit path only: ENOSPC and EIO
** (truncation, snapshot and install run fault-free but for crashes,
** tears and flips).
**
** NOW.  Every log is the real WAL over simfs (simlog.c says how); what a
** node knows after a restart comes from wal_replay of its disk; the
** state machine is the real one (stream.c), driven here as group.c would
** but for its snapshot scheme (simlog.c: SNAPSHOTS, every unit's bytes
** in each snapshot rather than group.c's oldest-index bound).  NOT here:
** group.c itself, forks, deletes, TTLs, the cold tier, Stream-Seq,
** producer epochs above 0.
**
** Only the parts it drives are compiled in (util.c, json.c (which
** stream.c calls), raft.c, journal.c (which wal.c calls; the simulator
** gives its logs none), wal.c, cmd.c, stream.c), from src/, so that a build per planted bug takes a
** second.
*/
#ifndef URSULA_ENABLE_ASSERT
#define URSULA_ENABLE_ASSERT 1
#endif
#define URSULA_PRIVATE
#include "../../src/internal.h"
#include "../../src/util.c"
#include "../../src/json.c" /* (stream.c counts a v1 fork's records) */
#include "../../src/attrs.c" /* (stream.c checks attributes it restores) */
#include "../../src/raft.c"
#include "../../src/journal.c"
#include "../../src/wal.c"
#include "../../src/cmd.c"
#include "../../src/stream.c"

/* Planted bugs of the driver that only a real disk can catch
** (-DSIM_PLANT=n, make test-sim-bugs; each is caught by a check above):
**    1  fsyncgate: after a sync fails with EIO, sync again and take its 0
**       for success (the pages the failure dropped are never written)
**    2  report a sync's entries durable without syncing them
** and of the clients, that only the real state machine can catch:
**    3  a producer retries with seq + 1 instead of the same seq (the
**       append it retries may be in the stream already: a duplicate) */
#ifndef SIM_PLANT
#define SIM_PLANT 0
#endif

#include "simfs.c"
#include "simsm.c"

/* The command of the proposal whose entry has tag t (simsm_encode's
** bytes; NULL if there is none): what a log entry holds (simlog.c). */
static const char *sim_cmd_of(uint64_t tag, size_t *n);

#include "simlog.c"

#define SIM_NODES 5
#define SIM_GROUPS 8
#define SIM_TICK_US 10000ull /* a tick: 10 ms */
#define SIM_T 10u            /* the election timeout T, in ticks */
#define SIM_ET_US (SIM_T * SIM_TICK_US)
#define SIM_HEAL_US (30 * SIM_ET_US)
#define SIM_LEADER_ET 10 /* a leader within this many ET of healing */
/* ... or this many in a group where a voter is still recovering: it
** cannot vote (raft.c), so the others must all agree (with 3 nodes, the
** two left both), and pre-vote and vote round trips of up to 4 ticks
** under reordering collide more often (seed 100125: 11.5 ET) */
#define SIM_LEADER_ET_REC 20
#define SIM_END_US (SIM_HEAL_US + 30 * SIM_ET_US)
#define SIM_CLUSTER 0xc1u

/* ------------------------------------------------------------- random */

struct sim_rng {
  uint64_t s;
};

static uint64_t sim_rand(struct sim_rng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t sim_below(struct sim_rng *r, uint64_t n) {
  return n ? sim_rand(r) % n : 0;
}

static uint64_t sim_range(struct sim_rng *r, uint64_t lo, uint64_t hi) {
  return lo + sim_below(r, hi - lo + 1);
}

/* true with probability ppm / 1e6 */
static int sim_chance(struct sim_rng *r, uint64_t ppm) {
  return sim_below(r, 1000000) < ppm;
}

/* ---------------------------------------------------------- the world */

enum { /* faults, each enabled or not per seed (swarm testing) */
       F_DROP = 1 << 0,
       F_DUP = 1 << 1,
       F_REORDER = 1 << 2,
       F_PART = 1 << 3,
       F_ASYM = 1 << 4,
       F_FLAP = 1 << 5,
       F_CRASH = 1 << 6,
       F_PAUSE = 1 << 7,
       F_WIPE = 1 << 8,
       F_SLOWDISK = 1 << 9,
       F_DISKFAIL = 1 << 10,
       F_SNAP = 1 << 11,
       F_TRANSFER = 1 << 12,
       F_READS = 1 << 13,
       F_KILL_LEADER = 1 << 14, /* crash a group's leader */
       F_ISOLATE = 1 << 15,     /* cut a group's leader off */
       F_NOSPC = 1 << 16,       /* a log's write fails with ENOSPC */
       F_FLIP = 1 << 17,        /* a bit flips on one node's disk */
       F_NFAULTS = 18
};
static const char *const sim_fault_names[F_NFAULTS] = {
    "drop",     "dup",   "reorder",    "partition", "asym",     "flap",
    "crash",    "pause", "wipe",       "slowdisk",  "diskfail", "snapshot",
    "transfer", "reads", "killleader", "isolate",  "nospc",    "flip"};

struct sim_msg {
  int refs;
  int fwd;   /* a forwarded proposal, not a Raft message */
  int group; /* of the message */
  struct raft_msg m;
  struct sim_entry *ents;       /* APPEND: entries m.index + 1 .. + m.n */
  uint64_t snap_phash, snap_sm; /* SNAPSHOT */
  unsigned char *img;           /* SNAPSHOT: the sender's image file */
  size_t img_len;
  uint64_t prop;                /* fwd: the proposal */
};

struct sim_held { /* a SEND the driver holds (R1, R2) */
  struct sim_msg *msg;
  uint64_t need_seq; /* the hard-state write it waits for (0: none) */
  uint64_t after_index, after_term;
};

struct sim_group { /* one group on one node: a core and its driver */
  struct raft r;
  int started;
  struct simlog log;
  struct simlog ghost; /* what a wiped disk held (for the durability
                          check of entries it acknowledged before) */
  int has_ghost;
  uint64_t applied; /* the entries applied to log.sm */
  uint64_t digest;  /* simsm_digest(&log.sm) */
  uint64_t commit;  /* the highest COMMIT given */
  uint64_t checked; /* committed indexes checked against the truth */
  struct sim_held *held;
  size_t n_held, cap_held;
  const struct sim_msg *in_msg; /* the message being stepped */
  const uint64_t *tags;         /* the proposals being proposed */
  int failed;                   /* storage failed, not yet recovered */
  struct sim_hs max_durable;    /* the highest durable hard state seen */
  uint64_t max_term;
  uint64_t *props; /* proposals of this node still waiting */
  size_t n_props, cap_props;
};

struct sim_node {
  int up, paused, wiped; /* wiped: its disk is empty until it restarts */
  int made;              /* its logs were made (they must exist) */
  int flipped; /* a bit flipped on its disk: until the disk is replaced,
                 or a start replays cleanly with no flipped file left (the
                 WAL may copy a damaged record: only a replay tells) */
  char prefix[8];        /* "/n3/": its files on the simulated disk */
  uint64_t pause_until, boot;
  struct env env;
  struct sim_rng rnd; /* its timers (env->random) */
  struct sim_group g[SIM_GROUPS];
};

enum { P_REFUSED, P_ASSIGNED, P_ACKED, P_FAILED, P_UNKNOWN };
struct sim_prop { /* one attempt of a client op: a Raft proposal */
  int group, node, state, final;
  uint64_t term, index, t0;
  int op;        /* the client op it carries (S->ops) */
  int fwd;       /* sent to another node to propose */
  uint64_t boot; /* the proposer's boot when it proposed */
  int status;    /* the answer: the proposer's apply result (0: none) */
  struct buf cmd; /* the command (simsm_encode), its entry's payload */
};

struct sim_op { /* a client request: CREATE, or APPEND of one tag */
  struct simsm_op op; /* op.tag: its index in S->ops + 1 */
  int group;
  int producer;       /* its producer (S->producers), or -1: plain */
  int status;         /* the first 200 or 204 answer (0: none yet) */
  uint64_t ack_index; /* the entry whose apply gave that answer */
};

struct sim_producer { /* a client with Producer-Id "c<index>", epoch 0 */
  int group;
  unsigned stream;
  uint64_t seq; /* the next seq to send */
  int op;       /* its request in flight (-1: none) */
  int prop;     /* that request's last attempt */
};

enum { R_PENDING, R_WAIT, R_DONE, R_FAILED };
struct sim_read {
  int group, node, state, final;
  uint64_t need, index, t0;
  size_t n_acked; /* the ops acknowledged before it began: S->acked[..) */
};

struct sim_it { /* (index, term) -> phash, open addressing */
  uint64_t index, term, phash;
};

struct sim_truth { /* per group: what the whole cluster agreed */
  struct sim_it *it;
  size_t it_cap, it_n;
  uint64_t *c_phash, *c_term, *a_sm; /* committed, applied, by index */
  uint64_t *c_by; /* the term of the leader that first committed it */
  size_t c_cap;
  uint64_t gcommit;
  uint8_t *leader_of; /* node + 1 by term */
  size_t l_cap;
  uint64_t max_acked;
  int believed;               /* the last node that said it leads (-1: none) */
  uint64_t leader_at;         /* after healing: when all followed one leader */
  int final_prop, final_read; /* -1: none yet */
};

enum {
  EV_TICK = 1,
  EV_DELIVER,
  EV_SYNC,
  EV_SNAP_END,
  EV_RECOVER,
  EV_CLIENT,
  EV_FAULT,
  EV_RESTART,
  EV_RESUME,
  EV_LINK,
  EV_FLAP,
  EV_HEAL,
  EV_FINAL,
  EV_END
};
struct sim_ev {
  uint64_t t, seq;
  int kind, node, group, ok;
  uint64_t boot, a, b;
  struct sim_msg *msg;
};

struct sim {
  uint64_t seed;
  int trace, n, ngroups;
  unsigned faults;
  struct raft_config cfg; /* the shape; id and env per node */
  uint64_t drop_ppm, dup_ppm, delay_us, jitter_us, disk_us, disk_jitter_us,
      fail_ppm, client_us, compact_every, fault_us;
  struct sim_rng net, disk, work, fault, conf;
  uint64_t now, seq;
  struct sim_ev *heap;
  size_t heap_n, heap_cap;
  struct sim_node node[SIM_NODES];
  int cut[SIM_NODES][SIM_NODES];       /* > 0: the link from -> to is down */
  uint64_t fifo[SIM_NODES][SIM_NODES]; /* the last delivery on a link */
  uint64_t heal_gen;
  int healed;
  struct sim_truth truth[SIM_GROUPS];
  struct sim_prop *props;
  size_t n_props, cap_props;
  struct sim_read *reads;
  size_t n_reads, cap_reads, n_waiting; /* n_waiting: reads in R_WAIT */
  struct sim_op *ops;
  size_t n_ops, cap_ops;
  int *acked; /* the ops acknowledged (200 or 204), in that order */
  size_t n_acked_ops, cap_acked;
  struct sim_producer producers[2 * SIM_GROUPS];
  int n_producers;
  uint64_t hot_max; /* stream_evict's bound on each state's hot bytes */
  unsigned char *seen; /* scratch: by op, a tag seen in a stream */
  size_t seen_cap;
  struct raft_action *acts;
  size_t acts_cap;
  uint64_t digest, events;
  uint64_t out_term, out_index; /* PROPOSE: where the entry went */
  int failed;
  char why[512];
  /* counts for the summary */
  uint64_t n_msgs, n_dropped, n_elections, n_crashes, n_wipes, n_snaps,
      n_installs, n_syncfails, n_acked, n_reads_done, n_transfers,
      n_nospc, n_flips, n_damaged, n_answers, n_retries;
};

static struct sim *S; /* the run in progress (one at a time) */

/* --------------------------------------------------------- reporting */

static void sim_fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static void sim_fail(const char *fmt, ...) {
  va_list ap;
  int k;
  if (S->failed) return;
  S->failed = 1;
  k = snprintf(S->why, sizeof(S->why),
               "t=%llu.%03llums: ", (unsigned long long)(S->now / 1000),
               (unsigned long long)(S->now % 1000));
  va_start(ap, fmt);
  vsnprintf(S->why + k, sizeof(S->why) - (size_t)k, fmt, ap);
  va_end(ap);
  if (S->trace) printf("VIOLATION %s\n", S->why);
}

static void sim_tr(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static void sim_tr(const char *fmt, ...) {
  va_list ap;
  if (!S->trace) return;
  printf("%6llu.%03llu ", (unsigned long long)(S->now / 1000),
         (unsigned long long)(S->now % 1000));
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
}

static const char *sim_msg_name(int t) {
  static const char *const n[] = {"?",
                                  "APPEND",
                                  "APPEND_RESP",
                                  "PREVOTE",
                                  "PREVOTE_RESP",
                                  "VOTE",
                                  "VOTE_RESP",
                                  "HEARTBEAT",
                                  "HEARTBEAT_RESP",
                                  "SNAPSHOT",
                                  "TIMEOUT_NOW",
                                  "READ_INDEX",
                                  "READ_INDEX_RESP"};
  return t >= 1 && t <= 12 ? n[t] : "?";
}

static void sim_tr_msg(const char *what, int x, int g,
                       const struct raft_msg *m) {
  sim_tr(
      "n%d g%d %s %s %llu->%llu term %llu idx %llu lt %llu n %u c %llu "
      "hint %llu last %llu ctx %llu fl %u",
      x + 1, g, what, sim_msg_name(m->type), (unsigned long long)m->from,
      (unsigned long long)m->to, (unsigned long long)m->term,
      (unsigned long long)m->index, (unsigned long long)m->log_term, m->n,
      (unsigned long long)m->commit, (unsigned long long)m->hint,
      (unsigned long long)m->last, (unsigned long long)m->ctx, m->flags);
}

/* --------------------------------------------------------- event heap */

static int sim_ev_less(const struct sim_ev *a, const struct sim_ev *b) {
  return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void sim_push(struct sim_ev ev) {
  size_t i;
  if (S->heap_n == S->heap_cap) {
    S->heap_cap = S->heap_cap ? 2 * S->heap_cap : 1024;
    S->heap = (struct sim_ev *)realloc(S->heap, S->heap_cap * sizeof(ev));
    if (S->heap == NULL) abort();
  }
  ev.seq = ++S->seq;
  i = S->heap_n++;
  while (i > 0 && sim_ev_less(&ev, &S->heap[(i - 1) / 2])) {
    S->heap[i] = S->heap[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  S->heap[i] = ev;
}

static struct sim_ev sim_pop(void) {
  struct sim_ev top = S->heap[0], last = S->heap[--S->heap_n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= S->heap_n) break;
    if (c + 1 < S->heap_n && sim_ev_less(&S->heap[c + 1], &S->heap[c])) c++;
    if (!sim_ev_less(&S->heap[c], &last)) break;
    S->heap[i] = S->heap[c];
    i = c;
  }
  if (S->heap_n > 0) S->heap[i] = last;
  return top;
}

static void sim_at(uint64_t t, int kind, int node, int group) {
  struct sim_ev ev;
  memset(&ev, 0, sizeof(ev));
  ev.t = t;
  ev.kind = kind;
  ev.node = node;
  ev.group = group;
  if (node >= 0) ev.boot = S->node[node].boot;
  sim_push(ev);
}

/* ------------------------------------------------------------ messages */

static struct sim_msg *sim_msg_new(int group) {
  struct sim_msg *m = (struct sim_msg *)calloc(1, sizeof(*m));
  if (m == NULL) abort();
  m->refs = 1;
  m->group = group;
  return m;
}

static void sim_msg_unref(struct sim_msg *m) {
  if (m != NULL && --m->refs == 0) {
    free(m->ents);
    free(m->img);
    free(m);
  }
}

static void sim_snap_end(int from, int group, uint64_t peer, int ok,
                         uint64_t t) {
  struct sim_ev ev;
  memset(&ev, 0, sizeof(ev));
  ev.t = t;
  ev.kind = EV_SNAP_END;
  ev.node = from;
  ev.group = group;
  ev.boot = S->node[from].boot;
  ev.a = peer;
  ev.ok = ok;
  sim_push(ev);
}

static int sim_link_up(int from, int to) {
  return from == to || S->cut[from][to] == 0;
}

/* Send msg from node `from` (takes the caller's reference). */
static void sim_net_send(int from, struct sim_msg *msg) {
  int to = (int)msg->m.to - 1, k, copies = 1;
  S->n_msgs++;
  if (to < 0 || to >= S->n || !sim_link_up(from, to) ||
      ((S->faults & F_DROP) && sim_chance(&S->net, S->drop_ppm))) {
    S->n_dropped++;
    if (!msg->fwd && msg->m.type == RAFT_MSG_SNAPSHOT)
      sim_snap_end(from, msg->group, msg->m.to, 0, S->now + 5 * SIM_TICK_US);
    sim_msg_unref(msg);
    return;
  }
  if ((S->faults & F_DUP) && sim_chance(&S->net, S->dup_ppm)) copies = 2;
  for (k = 0; k < copies; k++) {
    struct sim_ev ev;
    uint64_t d = S->delay_us + sim_below(&S->net, S->jitter_us + 1);
    if (!msg->fwd && msg->m.type == RAFT_MSG_SNAPSHOT)
      d += sim_range(&S->net, 2000, 20000); /* the stream's chunks */
    memset(&ev, 0, sizeof(ev));
    ev.t = S->now + d;
    /* a link is a connection: in order, unless the seed reorders */
    if (!(S->faults & F_REORDER) && ev.t <= S->fifo[from][to])
      ev.t = S->fifo[from][to] + 1;
    if (ev.t > S->fifo[from][to]) S->fifo[from][to] = ev.t;
    ev.kind = EV_DELIVER;
    ev.node = to;
    ev.group = msg->group;
    ev.a = (uint64_t)from;
    ev.msg = msg;
    if (k > 0) msg->refs++;
    sim_push(ev);
  }
}

/* ------------------------------------------------------------- truth */

static uint64_t *sim_grow(uint64_t *p, size_t *cap, size_t need) {
  size_t old = *cap, n = old ? old : 256;
  if (need < old) return p;
  while (n <= need) n *= 2;
  p = (uint64_t *)realloc(p, n * sizeof(*p));
  if (p == NULL) abort();
  memset(p + old, 0, (n - old) * sizeof(*p));
  *cap = n;
  return p;
}

static void sim_truth_room(struct sim_truth *t, uint64_t index) {
  size_t c = t->c_cap, c2 = t->c_cap, c3 = t->c_cap, c4 = t->c_cap;
  if (index < t->c_cap) return;
  t->c_phash = sim_grow(t->c_phash, &c, (size_t)index);
  t->c_term = sim_grow(t->c_term, &c2, (size_t)index);
  t->a_sm = sim_grow(t->a_sm, &c3, (size_t)index);
  t->c_by = sim_grow(t->c_by, &c4, (size_t)index);
  t->c_cap = c;
}

/* One (index, term) names one entry in the whole cluster. */
static void sim_truth_entry(int g, uint64_t index, uint64_t term,
                            uint64_t phash, int x) {
  struct sim_truth *t = &S->truth[g];
  size_t i;
  if (2 * (t->it_n + 1) > t->it_cap) {
    struct sim_it *old = t->it;
    size_t oc = t->it_cap, k;
    t->it_cap = oc ? 2 * oc : 1024;
    t->it = (struct sim_it *)calloc(t->it_cap, sizeof(*t->it));
    if (t->it == NULL) abort();
    for (k = 0; k < oc; k++)
      if (old[k].index != 0) {
        i = (size_t)(simlog_mix(old[k].index, old[k].term, 0) % t->it_cap);
        while (t->it[i].index != 0) i = (i + 1) % t->it_cap;
        t->it[i] = old[k];
      }
    free(old);
  }
  i = (size_t)(simlog_mix(index, term, 0) % t->it_cap);
  while (t->it[i].index != 0) {
    if (t->it[i].index == index && t->it[i].term == term) {
      if (t->it[i].phash != phash)
        sim_fail(
            "log matching: n%d g%d holds another entry at (index %llu, "
            "term %llu) than another node",
            x + 1, g, (unsigned long long)index, (unsigned long long)term);
      return;
    }
    i = (i + 1) % t->it_cap;
  }
  t->it[i].index = index;
  t->it[i].term = term;
  t->it[i].phash = phash;
  t->it_n++;
}

/* Whether log l holds, durably, the entry with phash at index (or a
** snapshot past it). */
static int sim_durable_has(const struct simlog *l, uint64_t index,
                           uint64_t phash) {
  if (l->snap_index >= index) return 1;
  return l->durable >= index && simlog_phash(l, index) == phash;
}

/* Node x commits index k with phash ph: the same entry everywhere; the
** first time k is committed, it must be durable on a majority. */
static void sim_truth_commit(int x, int g, uint64_t k, uint64_t ph,
                             uint64_t term) {
  struct sim_truth *t = &S->truth[g];
  int y, n = 0;
  sim_truth_room(t, k);
  if (t->c_phash[k] != 0 && t->c_phash[k] != ph)
    sim_fail(
        "state machine safety: n%d g%d commits another entry at %llu "
        "than was committed",
        x + 1, g, (unsigned long long)k);
  if (t->c_phash[k] == 0) {
    t->c_phash[k] = ph;
    t->c_term[k] = term;
    t->c_by[k] = S->node[x].g[g].r.term;
  }
  if (k <= t->gcommit) return;
  for (y = 0; y < S->n; y++) {
    const struct sim_group *sg = &S->node[y].g[g];
    if (sim_durable_has(&sg->log, k, ph) ||
        (sg->has_ghost && sim_durable_has(&sg->ghost, k, ph)))
      n++;
  }
  if (n < S->n / 2 + 1)
    sim_fail("n%d g%d commits entry %llu, durable on %d of %d disks only",
             x + 1, g, (unsigned long long)k, n, S->n);
  t->gcommit = k;
}

/* --------------------------------------------------------- the driver */

static int sim_step(int x, int g, const struct raft_in *in);

static void sim_hold(struct sim_group *sg, struct sim_msg *msg, uint64_t need,
                     uint64_t after_index, uint64_t after_term) {
  struct sim_held *h;
  if (sg->n_held == sg->cap_held) {
    sg->cap_held = sg->cap_held ? 2 * sg->cap_held : 16;
    sg->held =
        (struct sim_held *)realloc(sg->held, sg->cap_held * sizeof(*sg->held));
    if (sg->held == NULL) abort();
  }
  h = &sg->held[sg->n_held++];
  h->msg = msg;
  h->need_seq = need;
  h->after_index = after_index;
  h->after_term = after_term;
}

/* Send the held messages whose state and entry are now durable. */
static void sim_release(int x, struct sim_group *sg) {
  size_t i, k = 0;
  for (i = 0; i < sg->n_held; i++) {
    struct sim_held *h = &sg->held[i];
    if (h->need_seq <= sg->log.synced_seq &&
        (h->after_index == 0 || h->after_index <= sg->log.durable)) {
      sim_net_send(x, h->msg);
    } else {
      sg->held[k++] = *h;
    }
  }
  sg->n_held = k;
}

/* Drop the held messages waiting for entries >= from (they are gone), or
** all of them (from 0: the process died, or its writes failed). */
static void sim_drop_held(struct sim_group *sg, uint64_t from) {
  size_t i, k = 0;
  for (i = 0; i < sg->n_held; i++) {
    if (from == 0 || sg->held[i].after_index >= from)
      sim_msg_unref(sg->held[i].msg);
    else
      sg->held[k++] = sg->held[i];
  }
  sg->n_held = k;
}

static uint64_t sim_entry_bytes(void *arg, uint64_t index) {
  const struct sim_group *sg = (const struct sim_group *)arg;
  if (index <= sg->log.snap_index || index > sg->log.last) return 0;
  return simlog_at(&sg->log, index)->bytes;
}

static void sim_check_read(const struct sim_read *rd);
static void sim_answer(int x, uint64_t k, const struct sim_entry *e,
                       int status);

static void sim_read_end(int id, int ok) {
  struct sim_read *rd = &S->reads[id];
  if (rd->state == R_WAIT) S->n_waiting--;
  rd->state = ok ? R_DONE : R_FAILED;
  if (!ok) return;
  S->n_reads_done++;
  sim_check_read(rd);
}

/* The same state at index k on every replica (its digest). */
static void sim_same_state(int x, int g, uint64_t k, uint64_t digest) {
  struct sim_truth *t = &S->truth[g];
  sim_truth_room(t, k);
  if (t->a_sm[k] == 0)
    t->a_sm[k] = digest;
  else if (t->a_sm[k] != digest)
    sim_fail("n%d g%d applied another state at %llu than another node", x + 1,
             g, (unsigned long long)k);
}

/* Apply entry k at node x: its command as the WAL reads it back, through
** stream_apply (simsm_apply); answer its client if x proposed it.  0 if
** the log could not give it (the node stops: sim_stop_broken). */
static int sim_apply_one(int x, int g, uint64_t k) {
  struct sim_group *sg = &S->node[x].g[g];
  const struct sim_entry *e = simlog_at(&sg->log, k);
  struct simsm_result res;
  const void *p;
  size_t n;
  int rc;
  memset(&res, 0, sizeof(res));
  if (e->tag != 0) {
    rc = simlog_payload(&sg->log, k, &p, &n);
    if (rc != URSULA_OK) simlog_broke(&sg->log, rc);
    if (rc != URSULA_OK || sg->log.wrong) return 0;
    if (simsm_apply(&sg->log.sm, k, p, n, &res) != URSULA_OK) {
      sim_fail("n%d g%d: entry %llu is no command stream_apply takes", x + 1,
               g, (unsigned long long)k);
      return 0;
    }
    sg->digest = simsm_digest(&sg->log.sm);
  }
  sg->applied = k;
  sim_same_state(x, g, k, sg->digest);
  if (e->tag != 0) sim_answer(x, k, e, res.status);
  return 1;
}

/* Apply the committed entries up to the durable index (the real state
** machine, log.sm); keep its hot bytes under S->hot_max; serve the reads
** waiting there; compact now and then (the state at applied becomes the
** snapshot). */
static void sim_apply(int x, int g, struct raft_in *follow, int *n_follow) {
  struct sim_group *sg = &S->node[x].g[g];
  uint64_t upto = sg->commit < sg->log.durable ? sg->commit : sg->log.durable;
  size_t i;
  while (sg->applied < upto && !sg->log.broken && !S->failed)
    if (!sim_apply_one(x, g, sg->applied + 1)) return;
  stream_evict(&sg->log.sm.st, S->hot_max);
  for (i = 0; i < S->n_reads && S->n_waiting > 0; i++) {
    struct sim_read *rd = &S->reads[i];
    if (rd->state == R_WAIT && rd->node == x && rd->group == g &&
        sg->applied >= rd->index)
      sim_read_end((int)i, 1);
  }
  if (follow != NULL && sg->applied - sg->log.snap_index >= S->compact_every &&
      !sg->failed && !sg->log.broken && *n_follow < 4) {
    struct raft_in *in = &follow[(*n_follow)++];
    uint64_t k = sg->applied;
    memset(in, 0, sizeof(in[0]));
    in->type = RAFT_IN_COMPACTED;
    in->index = k;
    in->term = simlog_term(&sg->log, k);
    simlog_compact(&sg->log, k);
    S->n_snaps++;
  }
}

/* The proposals of node x that COMMIT k resolves: committed with their
** term at their index (acknowledged), or with another (failed). */
static void sim_resolve(int x, int g, uint64_t k) {
  struct sim_group *sg = &S->node[x].g[g];
  size_t i, j = 0;
  for (i = 0; i < sg->n_props; i++) {
    struct sim_prop *p = &S->props[sg->props[i]];
    if (p->index > k) {
      sg->props[j++] = sg->props[i];
      continue;
    }
    if (p->index <= sg->log.snap_index) {
      p->state = P_UNKNOWN; /* the proposer cannot tell any more */
    } else if (simlog_at(&sg->log, p->index)->term == p->term) {
      if (simlog_at(&sg->log, p->index)->tag != sg->props[i] + 1)
        sim_fail("n%d g%d: entry (%llu, %llu) is not the proposal made there",
                 x + 1, g, (unsigned long long)p->index,
                 (unsigned long long)p->term);
      p->state = P_ACKED;
      S->n_acked++;
      if (p->index > S->truth[g].max_acked) S->truth[g].max_acked = p->index;
    } else {
      p->state = P_FAILED;
    }
  }
  sg->n_props = j;
}

/* Node x's proposals at index >= from lost their entry: state. */
static void sim_props_gone(struct sim_group *sg, uint64_t from, int state) {
  size_t i, j = 0;
  for (i = 0; i < sg->n_props; i++) {
    struct sim_prop *p = &S->props[sg->props[i]];
    if (p->index >= from)
      p->state = state;
    else
      sg->props[j++] = sg->props[i];
  }
  sg->n_props = j;
}

/* COMMIT k at node x: check every newly committed index against the
** cluster's, resolve proposals, apply. */
static void sim_commit(int x, int g, uint64_t k) {
  struct sim_group *sg = &S->node[x].g[g];
  uint64_t i;
  if (k > sg->log.last)
    sim_fail("n%d g%d: COMMIT %llu past its log's end %llu", x + 1, g,
             (unsigned long long)k, (unsigned long long)sg->log.last);
  if (k <= sg->commit) return;
  sg->commit = k;
  simlog_save_commit(&sg->log, k);
  for (i = sg->checked + 1; i <= k && !S->failed; i++)
    if (i >= sg->log.snap_index && i <= sg->log.last)
      sim_truth_commit(x, g, i, simlog_phash(&sg->log, i),
                       simlog_term(&sg->log, i));
  if (k > sg->checked) sg->checked = k;
  sim_resolve(x, g, k);
}

static uint64_t sim_run_term(const struct raft_action *a, uint64_t i) {
  unsigned r = a->msg.n_runs;
  while (r > 1 && a->msg.runs[r - 1].index > i) r--;
  return a->msg.runs[r - 1].term;
}

static void sim_do_append(int x, int g, const struct raft_action *a) {
  struct sim_group *sg = &S->node[x].g[g];
  uint64_t i;
  for (i = a->lo; i <= a->hi && !S->failed; i++) {
    struct sim_entry e;
    uint64_t want;
    memset(&e, 0, sizeof(e));
    e.term = sim_run_term(a, i);
    if (i != sg->log.last + 1) {
      sim_fail("n%d g%d: APPEND at %llu, log ends at %llu", x + 1, g,
               (unsigned long long)i, (unsigned long long)sg->log.last);
      return;
    }
    if (a->flags & RAFT_APPEND_MSG) {
      const struct sim_msg *m = sg->in_msg;
      e = m->ents[i - m->m.index - 1];
      if (e.term != sim_run_term(a, i))
        sim_fail("n%d g%d: APPEND term differs from the message's", x + 1, g);
      want = simlog_mix(simlog_phash(&sg->log, i - 1), e.term, e.tag);
      if (e.phash != want)
        sim_fail(
            "log matching: n%d g%d appends entry %llu (term %llu) after "
            "another entry than the leader's",
            x + 1, g, (unsigned long long)i, (unsigned long long)e.term);
    } else {
      if (!(a->flags & RAFT_APPEND_NOOP)) {
        size_t n;
        e.tag = sg->tags[i - a->lo] + 1;
        sim_cmd_of(e.tag, &n);
        e.bytes = (uint32_t)(n + SIMLOG_SIDE);
      }
      e.phash = simlog_mix(simlog_phash(&sg->log, i - 1), e.term, e.tag);
    }
    sim_truth_entry(g, i, e.term, e.phash, x);
    simlog_append(&sg->log, &e);
  }
}

static void sim_do_truncate(int x, int g, uint64_t from) {
  struct sim_group *sg = &S->node[x].g[g];
  struct sim_truth *t = &S->truth[g];
  if (from <= sg->log.snap_index || from > sg->log.last + 1) {
    sim_fail("n%d g%d: TRUNCATE %llu outside its log", x + 1, g,
             (unsigned long long)from);
    return;
  }
  if (from <= sg->log.last && from < t->c_cap && t->c_phash[from] != 0 &&
      t->c_phash[from] == simlog_phash(&sg->log, from))
    sim_fail("n%d g%d truncates committed entry %llu", x + 1, g,
             (unsigned long long)from);
  simlog_truncate(&sg->log, from);
  sim_drop_held(sg, from);
  sim_props_gone(sg, from, P_FAILED); /* the entry was replaced */
}

/* An acknowledgment of index i in term T says that the sender's log is
** the log of T's leader through i (paper Fig. 2: success means the logs
** match through prev + n).  Checked against that leader's log while it
** still leads T. */
static void sim_check_ack(int x, int g, const struct raft_msg *m) {
  const struct sim_truth *t = &S->truth[g];
  const struct sim_group *f = &S->node[x].g[g], *l;
  int y;
  if (m->type != RAFT_MSG_APPEND_RESP || (m->flags & RAFT_F_REJECT) ||
      m->term >= t->l_cap || t->leader_of[m->term] == 0)
    return;
  y = t->leader_of[m->term] - 1;
  l = &S->node[y].g[g];
  if (!S->node[y].up || l->r.role != RAFT_LEADER || l->r.term != m->term ||
      m->index < f->log.snap_index || m->index < l->log.snap_index ||
      m->index > l->log.last)
    return;
  if (simlog_phash(&f->log, m->index) != simlog_phash(&l->log, m->index))
    sim_fail("n%d g%d acknowledges entry %llu, which is not its leader's",
             x + 1, g, (unsigned long long)m->index);
}

static void sim_do_send(int x, int g, const struct raft_action *a) {
  struct sim_group *sg = &S->node[x].g[g];
  struct sim_msg *msg = sim_msg_new(g);
  uint64_t need = sg->log.hs_seq > sg->log.synced_seq ? sg->log.hs_seq : 0;
  msg->m = a->msg;
  if (a->msg.type == RAFT_MSG_APPEND && a->msg.n > 0) {
    uint64_t i, lo = a->msg.index + 1;
    if (lo <= sg->log.snap_index || a->msg.index + a->msg.n > sg->log.last) {
      sim_fail("n%d g%d: AppendEntries of entries its log lacks", x + 1, g);
      sim_msg_unref(msg);
      return;
    }
    msg->ents = (struct sim_entry *)malloc(a->msg.n * sizeof(*msg->ents));
    if (msg->ents == NULL) abort();
    for (i = 0; i < a->msg.n; i++) {
      int rc = simlog_read_back(&sg->log, lo + i);
      if (rc != URSULA_OK) simlog_broke(&sg->log, rc); /* damage: stop */
      msg->ents[i] = *simlog_at(&sg->log, lo + i);
      if (msg->ents[i].term != sim_run_term(a, lo + i))
        sim_fail("n%d g%d: AppendEntries runs differ from the log", x + 1, g);
    }
  }
  if (S->trace) sim_tr_msg("send", x, g, &a->msg);
  sim_check_ack(x, g, &a->msg);
  if (a->after_index != 0 &&
      simlog_term(&sg->log, a->after_index) != a->after_term) {
    sim_msg_unref(msg); /* its entry is already gone */
    return;
  }
  if (need != 0 || a->after_index > sg->log.durable) {
    sim_hold(sg, msg, need, a->after_index, a->after_term);
    return;
  }
  sim_net_send(x, msg);
}

static void sim_do_send_snapshot(int x, int g, const struct raft_action *a) {
  struct sim_group *sg = &S->node[x].g[g];
  struct sim_msg *msg;
  uint64_t need = sg->log.hs_seq > sg->log.synced_seq ? sg->log.hs_seq : 0;
  if (a->hi != sg->log.snap_index || a->term != sg->log.snap_term) {
    sim_fail(
        "n%d g%d: SEND_SNAPSHOT (%llu, %llu), its snapshot is "
        "(%llu, %llu)",
        x + 1, g, (unsigned long long)a->hi, (unsigned long long)a->term,
        (unsigned long long)sg->log.snap_index,
        (unsigned long long)sg->log.snap_term);
    return;
  }
  msg = sim_msg_new(g);
  msg->m.cluster_id = SIM_CLUSTER;
  msg->m.from = (uint64_t)x + 1;
  msg->m.to = a->peer;
  msg->m.term = sg->r.term;
  msg->m.type = RAFT_MSG_SNAPSHOT;
  msg->m.index = a->hi;
  msg->m.log_term = a->term;
  msg->snap_phash = sg->log.snap_phash;
  msg->snap_sm = sg->log.snap_sm;
  msg->img = simlog_image(&sg->log, &msg->img_len);
  if (msg->img == NULL) simlog_broke(&sg->log, URSULA_EIO);
  if (S->trace) sim_tr_msg("stream", x, g, &msg->m);
  if (need != 0)
    sim_hold(sg, msg, need, 0, 0);
  else
    sim_net_send(x, msg);
}

static void sim_do_install(int x, int g, const struct raft_action *a,
                           struct raft_in *follow, int *n_follow) {
  struct sim_group *sg = &S->node[x].g[g];
  const struct sim_msg *m = sg->in_msg;
  struct sim_truth *t = &S->truth[g];
  struct raft_in *in;
  int kept;
  if (m == NULL || m->m.type != RAFT_MSG_SNAPSHOT || m->m.index != a->hi ||
      m->m.log_term != a->term) {
    sim_fail("n%d g%d: INSTALL_SNAPSHOT of no snapshot received", x + 1, g);
    return;
  }
  if (a->hi < t->c_cap && t->c_phash[a->hi] != 0 &&
      t->c_phash[a->hi] != m->snap_phash)
    sim_fail("n%d g%d installs a snapshot that is not the committed state",
             x + 1, g);
  if (m->img == NULL) { /* the sender failed to make it (it stops) */
    simlog_broke(&sg->log, URSULA_EIO);
    return;
  }
  kept = simlog_install(&sg->log, a->hi, a->term, m->snap_phash, m->snap_sm,
                        m->img, m->img_len,
                        (size_t)sim_range(&S->disk, 64, 4096));
  if (kept && sg->log.last > a->hi) {
    const struct sim_entry *e = simlog_at(&sg->log, a->hi + 1);
    if (e->phash != simlog_mix(m->snap_phash, e->term, e->tag))
      sim_fail(
          "log matching: n%d g%d keeps entries after a snapshot they do "
          "not follow",
          x + 1, g);
  }
  if (!kept) {
    sim_drop_held(sg, a->hi + 1);
    sim_props_gone(sg, a->hi + 1, P_FAILED);
  }
  if (sg->applied < a->hi) { /* the state becomes the snapshot's */
    sg->applied = a->hi;
    if (!sg->log.broken && simlog_take_snap(&sg->log)) {
      sg->digest = simsm_digest(&sg->log.sm);
      sim_truth_room(t, a->hi);
      if (t->a_sm[a->hi] != 0 && t->a_sm[a->hi] != sg->digest)
        sim_fail("n%d g%d: the installed state differs from the applied one",
                 x + 1, g);
    }
  }
  if (sg->checked < a->hi) sg->checked = a->hi;
  S->n_installs++;
  in = &follow[(*n_follow)++];
  memset(in, 0, sizeof(*in));
  in->type = RAFT_IN_SNAP_INSTALLED;
  in->term = a->term;
  in->index = a->hi;
}

/* The first node of the cluster that says it leads term t; the new
** leader must hold every committed entry (leader completeness). */
static void sim_do_role(int x, int g, const struct raft_action *a) {
  struct sim_group *sg = &S->node[x].g[g];
  struct sim_truth *t = &S->truth[g];
  uint64_t k;
  sim_tr("n%d g%d ROLE %d term %llu leader %llu", x + 1, g, a->role,
         (unsigned long long)a->term, (unsigned long long)a->peer);
  if (a->role != RAFT_LEADER) return;
  S->n_elections++;
  t->believed = x;
  if (a->term >= t->l_cap) {
    size_t old = t->l_cap, n = old ? old : 64;
    while (n <= a->term) n *= 2;
    t->leader_of = (uint8_t *)realloc(t->leader_of, n);
    if (t->leader_of == NULL) abort();
    memset(t->leader_of + old, 0, n - old);
    t->l_cap = n;
  }
  if (t->leader_of[a->term] != 0 && t->leader_of[a->term] != x + 1)
    sim_fail("two leaders in g%d term %llu: n%d and n%d", g,
             (unsigned long long)a->term, t->leader_of[a->term], x + 1);
  t->leader_of[a->term] = (uint8_t)(x + 1);
  /* paper §5.4.3: a leader holds every entry committed in an earlier term
  ** (a late leader of an old term need not hold later commits) */
  k = t->gcommit;
  while (k > 0 && t->c_by[k] >= a->term) k--;
  if (k > sg->log.snap_index &&
      (k > sg->log.last || simlog_phash(&sg->log, k) != t->c_phash[k]))
    sim_fail(
        "leader completeness: n%d leads g%d in term %llu without "
        "committed entry %llu",
        x + 1, g, (unsigned long long)a->term, (unsigned long long)k);
}

static void sim_do_read_ready(int x, int g, uint64_t ctx, uint64_t index) {
  struct sim_read *rd;
  if (ctx == 0 || ctx > S->n_reads) return;
  rd = &S->reads[ctx - 1];
  if (rd->state != R_PENDING || rd->node != x || rd->group != g) return;
  if (index == 0) {
    sim_read_end((int)ctx - 1, 0);
    return;
  }
  if (index < rd->need)
    sim_fail(
        "stale read: n%d g%d read at %llu, but %llu was acknowledged "
        "before the read began",
        x + 1, g, (unsigned long long)index, (unsigned long long)rd->need);
  rd->index = index;
  rd->state = R_WAIT;
  S->n_waiting++;
  if (S->node[x].g[g].applied >= index) sim_read_end((int)ctx - 1, 1);
}

/* The core's view of its log is the log (white box), and its term never
** goes back. */
static void sim_check_core(int x, int g) {
  struct sim_group *sg = &S->node[x].g[g];
  const struct raft *r = &sg->r;
  uint64_t t = 0;
  if (sg->failed) /* the core holds what the failed sync lost until told */
    return;
  if (r->last_index != sg->log.last || r->snap_index != sg->log.snap_index ||
      !raft_term_at(r, r->last_index, &t) ||
      t != simlog_term(&sg->log, sg->log.last))
    sim_fail(
        "n%d g%d: the core's log (last %llu, snap %llu) is not the "
        "log's (last %llu, snap %llu)",
        x + 1, g, (unsigned long long)r->last_index,
        (unsigned long long)r->snap_index, (unsigned long long)sg->log.last,
        (unsigned long long)sg->log.snap_index);
  if (r->durable_index > sg->log.durable)
    sim_fail("n%d g%d: the core counts %llu durable, the disk has %llu", x + 1,
             g, (unsigned long long)r->durable_index,
             (unsigned long long)sg->log.durable);
  if (r->term < sg->max_term)
    sim_fail("n%d g%d: term went back from %llu to %llu", x + 1, g,
             (unsigned long long)sg->max_term, (unsigned long long)r->term);
  sg->max_term = r->term;
}

static void sim_sync_done(int x, int g);

/* Start a sync if a write waits for one; it ends after a sampled latency
** (EV_SYNC).  A write that fails as the sync starts (ENOSPC) ends it at
** once: the core hears of the failure before anything else happens. */
static void sim_maybe_sync(int x, int g) {
  struct sim_group *sg = &S->node[x].g[g];
  uint64_t d;
  int nospc;
  if (sg->log.syncing || sg->failed || !simlog_dirty(&sg->log)) return;
  nospc = (S->faults & F_NOSPC) && sim_chance(&S->disk, S->fail_ppm);
  simlog_sync_begin(&sg->log, nospc);
  if (sg->log.write_rc != URSULA_OK) { /* the step's results are kept */
    uint64_t term = S->out_term, index = S->out_index;
    S->n_nospc++;
    sim_sync_done(x, g);
    S->out_term = term;
    S->out_index = index;
    return;
  }
  d = S->disk_us + sim_below(&S->disk, S->disk_jitter_us + 1);
  sim_at(S->now + d, EV_SYNC, x, g);
}

/* Step the core of (x, g) with in, carry out its actions, then the
** inputs they lead to (an install's end, a compaction). */
static int sim_step(int x, int g, const struct raft_in *first) {
  struct sim_group *sg = &S->node[x].g[g];
  struct raft_in follow[8];
  int n_follow = 0, k = 0, rc0 = URSULA_OK;
  const struct raft_in *in = first;
  struct raft_out out;
  while (in != NULL && !S->failed) {
    size_t i;
    int rc;
    out.a = S->acts;
    out.cap = S->acts_cap;
    out.n = 0;
    rc = raft_step(&sg->r, in, &out);
    if (in == first) {
      rc0 = rc;
      S->out_term = out.term;
      S->out_index = out.index;
    }
    if (rc == URSULA_EINVAL)
      sim_fail("n%d g%d: raft_step refused input %d", x + 1, g, in->type);
    for (i = 0; i < out.n && !S->failed; i++) {
      const struct raft_action *a = &out.a[i];
      switch (a->type) {
        case RAFT_SAVE_STATE: {
          struct sim_hs hs;
          hs.term = a->term;
          hs.vote = a->vote;
          hs.commit = a->commit;
          hs.recovering = (int)a->flags;
          simlog_save_state(&sg->log, &hs);
          sim_tr("n%d g%d SAVE_STATE term %llu vote %llu rec %d", x + 1, g,
                 (unsigned long long)a->term, (unsigned long long)a->vote,
                 hs.recovering);
          break;
        }
        case RAFT_APPEND:
          sim_tr("n%d g%d APPEND %llu..%llu fl %u", x + 1, g,
                 (unsigned long long)a->lo, (unsigned long long)a->hi,
                 a->flags);
          sim_do_append(x, g, a);
          break;
        case RAFT_TRUNCATE:
          sim_tr("n%d g%d TRUNCATE %llu", x + 1, g, (unsigned long long)a->lo);
          sim_do_truncate(x, g, a->lo);
          break;
        case RAFT_SEND:
          sim_do_send(x, g, a);
          break;
        case RAFT_SEND_SNAPSHOT:
          sim_do_send_snapshot(x, g, a);
          break;
        case RAFT_INSTALL_SNAPSHOT:
          sim_tr("n%d g%d INSTALL %llu term %llu", x + 1, g,
                 (unsigned long long)a->hi, (unsigned long long)a->term);
          sim_do_install(x, g, a, follow, &n_follow);
          break;
        case RAFT_COMMIT:
          sim_tr("n%d g%d COMMIT %llu", x + 1, g, (unsigned long long)a->hi);
          sim_commit(x, g, a->hi);
          break;
        case RAFT_READ_READY:
          sim_tr("n%d g%d READ_READY ctx %llu at %llu", x + 1, g,
                 (unsigned long long)a->ctx, (unsigned long long)a->hi);
          sim_do_read_ready(x, g, a->ctx, a->hi);
          break;
        case RAFT_ROLE:
          sim_do_role(x, g, a);
          break;
        default:
          sim_fail("n%d g%d: unknown action %d", x + 1, g, a->type);
      }
    }
    sg->in_msg = NULL;
    sg->tags = NULL;
    sim_apply(x, g, follow, &n_follow);
    in = k < n_follow ? &follow[k++] : NULL;
  }
  sim_check_core(x, g);
  sim_release(x, sg);
  sim_maybe_sync(x, g);
  return rc0;
}

static void sim_step_type(int x, int g, int type) {
  struct raft_in in;
  memset(&in, 0, sizeof(in));
  in.type = type;
  sim_step(x, g, &in);
}

/* ------------------------------------------------------------- nodes */

static uint64_t sim_node_random(struct env *e) {
  return sim_rand((struct sim_rng *)e->impl);
}

static uint64_t sim_disk_rand(void *arg) {
  (void)arg;
  return sim_rand(&S->disk);
}

static uint64_t sim_fault_rand(void *arg) {
  (void)arg;
  return sim_rand(&S->fault);
}

/* What the WAL reported durable before a crash (old: the copy cut back to
** it) is on the disk after it (now: replayed): the same entries, and a
** hard state no older. */
static void sim_check_kept(int x, int g, const struct simlog *old,
                           const struct simlog *now) {
  uint64_t i;
  if (now->last < old->durable)
    sim_fail("n%d g%d: the disk lost durable entries: it ends at %llu, "
             "%llu was durable before the crash",
             x + 1, g, (unsigned long long)now->last,
             (unsigned long long)old->durable);
  for (i = now->snap_index; i <= old->durable && !S->failed; i++)
    if (i >= old->snap_index && simlog_phash(now, i) != simlog_phash(old, i))
      sim_fail("n%d g%d: entry %llu on the disk is not the durable one",
               x + 1, g, (unsigned long long)i);
  if (now->hs_durable.term < old->hs_durable.term ||
      (now->hs_durable.term == old->hs_durable.term &&
       old->hs_durable.vote != 0 &&
       now->hs_durable.vote != old->hs_durable.vote))
    sim_fail("n%d g%d: durable hard state went back across a restart: "
             "(%llu, %llu) after (%llu, %llu)",
             x + 1, g, (unsigned long long)now->hs_durable.term,
             (unsigned long long)now->hs_durable.vote,
             (unsigned long long)old->hs_durable.term,
             (unsigned long long)old->hs_durable.vote);
}

/* The disk of node x is gone (wiped, or replaced after damage): each
** group's copy becomes its ghost; the disk is emptied. */
static void sim_lose_disk(int x) {
  struct sim_node *nd = &S->node[x];
  int g;
  for (g = 0; g < SIM_GROUPS; g++) {
    struct sim_group *sg = &nd->g[g];
    if (sg->has_ghost) simlog_free(&sg->ghost);
    simlog_wipe(&sg->log, &sg->ghost);
    sg->has_ghost = 1;
    memset(&sg->max_durable, 0, sizeof(sg->max_durable));
  }
  simfs_wipe(nd->prefix);
  nd->flipped = 0;
}

/* Open and replay node x's logs into fresh[]; 1 if one is damaged
** (URSULA_ECORRUPT: never taken for an empty log). */
static int sim_open_logs(int x, int must_exist, struct simlog *fresh) {
  struct sim_node *nd = &S->node[x];
  int g, damaged = 0;
  for (g = 0; g < S->ngroups; g++) {
    char dir[32];
    int rc;
    simlog_init(&fresh[g]);
    snprintf(dir, sizeof(dir), "%sg%d", nd->prefix, g);
    rc = simlog_open(&fresh[g], &nd->env, dir, must_exist);
    if (fresh[g].wrong)
      sim_fail("n%d g%d: replay gave entries that were never written", x + 1,
               g);
    if (rc == URSULA_ECORRUPT)
      damaged = 1;
    else if (rc != URSULA_OK)
      sim_fail("n%d g%d: the log did not open: %s", x + 1, g,
               ursula_strerror(rc));
  }
  return damaged;
}

/* Node x's logs from its disk: a damaged disk is replaced (the operator's
** answer: the node starts empty and recovering, counted); else what was
** durable must be there.  Returns whether the node starts recovering. */
static int sim_load(int x, int recovering) {
  struct sim_node *nd = &S->node[x];
  struct simlog fresh[SIM_GROUPS];
  int g;
  if (!nd->made) {
    char d[8];
    snprintf(d, sizeof(d), "%.3s", nd->prefix);
    nd->env.fs->mkdir(d, 0755);
    nd->env.fs->sync_dir("/");
  }
  if (sim_open_logs(x, nd->made && !recovering, fresh)) {
    for (g = 0; g < S->ngroups; g++) simlog_free(&fresh[g]);
    if (!nd->flipped) /* crashes and torn writes alone never damage a log */
      sim_fail("n%d: its disk is damaged, but no bit flipped on it", x + 1);
    S->n_damaged++;
    sim_tr("n%d DAMAGED disk replaced", x + 1);
    sim_lose_disk(x);
    recovering = 1;
    if (sim_open_logs(x, 0, fresh))
      sim_fail("n%d: a new disk is damaged", x + 1);
  }
  if (nd->flipped && !simfs_has_flip(nd->prefix)) nd->flipped = 0;
  for (g = 0; g < S->ngroups; g++) {
    struct sim_group *sg = &nd->g[g];
    if (!S->failed) sim_check_kept(x, g, &sg->log, &fresh[g]);
    simlog_free(&sg->log);
    sg->log = fresh[g];
    simlog_attach(&sg->log);
    if (recovering) /* the driver marks its disk "recovering" at once */
      simlog_mark(&sg->log, 1);
  }
  nd->made = 1;
  return recovering;
}

/* Start node x's cores from what its disks hold. */
static void sim_boot(int x, int recovering) {
  struct sim_node *nd = &S->node[x];
  int g;
  nd->up = 1;
  nd->paused = 0;
  nd->wiped = 0;
  nd->boot++;
  recovering = sim_load(x, recovering);
  for (g = 0; g < S->ngroups; g++) {
    struct sim_group *sg = &nd->g[g];
    struct raft_config c = S->cfg;
    struct raft_saved s;
    struct raft_run *runs =
        (struct raft_run *)malloc((size_t)S->cfg.trail_cap * sizeof(*runs));
    size_t n = 0;
    uint64_t i;
    if (runs == NULL) abort();
    for (i = sg->log.snap_index + 1; i <= sg->log.last; i++) {
      uint64_t t = simlog_at(&sg->log, i)->term;
      if (n > 0 && runs[n - 1].term == t) continue;
      if (n == S->cfg.trail_cap) break;
      runs[n].index = i;
      runs[n].term = t;
      n++;
    }
    memset(&s, 0, sizeof(s));
    s.term = sg->log.hs_durable.term;
    s.vote = sg->log.hs_durable.vote;
    s.commit = sg->log.hs_durable.commit;
    s.recovering = recovering || sg->log.hs_durable.recovering;
    s.snap_index = sg->log.snap_index;
    s.snap_term = sg->log.snap_term;
    s.last_index = sg->log.last;
    s.runs = runs;
    s.n_runs = n;
    c.id = (uint64_t)x + 1;
    c.env = &nd->env;
    c.entry_bytes = sim_entry_bytes;
    c.arg = sg;
    if (raft_init(&sg->r, &c, &s) != URSULA_OK)
      sim_fail("n%d g%d: raft_init refused what the disk holds", x + 1, g);
    free(runs);
    sg->started = 1;
    sg->applied = sg->log.snap_index;
    sg->digest = simsm_digest(&sg->log.sm);
    if (sg->applied > 0) sim_same_state(x, g, sg->applied, sg->digest);
    sg->commit = sg->checked = sg->log.snap_index;
    sg->max_term = sg->r.term;
    sg->failed = 0;
    sim_commit(x, g, sg->r.commit);
    sim_apply(x, g, NULL, NULL);
  }
  sim_at(S->now + 1 + sim_below(&S->node[x].rnd, SIM_TICK_US), EV_TICK, x, -1);
}

/* Crash (or power loss): volatile state, in memory and on disk, is gone;
** the node's clients learn nothing more (their requests are unknown). */
static void sim_crash(int x, int wipe) {
  struct sim_node *nd = &S->node[x];
  size_t i;
  int g;
  if (!nd->up) return;
  nd->up = 0;
  nd->paused = 0;
  nd->wiped = wipe;
  nd->boot++;
  S->n_crashes++;
  for (g = 0; g < S->ngroups; g++) {
    struct sim_group *sg = &nd->g[g];
    if (sg->started) raft_free(&sg->r);
    sg->started = 0;
    simlog_crash(&sg->log);
    sim_drop_held(sg, 0);
    for (i = 0; i < sg->n_props; i++) S->props[sg->props[i]].state = P_UNKNOWN;
    sg->n_props = 0;
  }
  if (wipe)
    sim_lose_disk(x);
  else
    simfs_crash(nd->prefix, sim_disk_rand, NULL);
  for (i = 0; i < S->n_reads; i++)
    if (S->reads[i].node == x &&
        (S->reads[i].state == R_PENDING || S->reads[i].state == R_WAIT))
      sim_read_end((int)i, 0);
  sim_tr("n%d %s", x + 1, wipe ? "WIPED" : "CRASHED");
}

/* A node lost its disk and has not caught up yet in some group: its core
** says so, or its disk does (the flag clears durably only with a later
** hard state: a crash before then makes it recover again). */
static int sim_recovering(int x) {
  int g;
  if (!S->node[x].up) return S->node[x].wiped;
  for (g = 0; g < S->ngroups; g++)
    if (S->node[x].g[g].r.recovering ||
        S->node[x].g[g].log.hs_durable.recovering)
      return 1;
  return 0;
}

/* ----------------------------------------------------------- clients */

/* A client op on group g: type (CMD_CREATE or CMD_APPEND) on its stream
** k; producer >= 0: an append with that producer's headers and its next
** seq.  Its tag (the bytes it appends) is unique: its index + 1. */
static int sim_new_op(int g, int type, unsigned k, int producer) {
  struct sim_op *o;
  if (S->n_ops == S->cap_ops) {
    S->cap_ops = S->cap_ops ? 2 * S->cap_ops : 256;
    S->ops = (struct sim_op *)realloc(S->ops, S->cap_ops * sizeof(*S->ops));
    if (S->ops == NULL) abort();
  }
  o = &S->ops[S->n_ops];
  memset(o, 0, sizeof(*o));
  o->group = g;
  o->producer = producer;
  o->op.type = type;
  o->op.stream = k;
  o->op.tag = (uint64_t)S->n_ops + 1;
  if (producer >= 0) {
    o->op.producer = 1;
    o->op.client = (unsigned)producer;
    o->op.seq = S->producers[producer].seq;
  }
  return (int)S->n_ops++;
}

/* A new attempt of op: a proposal whose command is op's, encoded now. */
static int sim_new_prop(int op) {
  struct sim_prop *p;
  struct sim_op *o = &S->ops[op];
  if (S->n_props == S->cap_props) {
    S->cap_props = S->cap_props ? 2 * S->cap_props : 256;
    S->props =
        (struct sim_prop *)realloc(S->props, S->cap_props * sizeof(*S->props));
    if (S->props == NULL) abort();
  }
  p = &S->props[S->n_props];
  memset(p, 0, sizeof(*p));
  p->group = o->group;
  p->node = -1;
  p->t0 = S->now;
  p->op = op;
  o->op.time_ms = S->now / 1000;
  if (simsm_encode((unsigned)o->group, &o->op, &p->cmd) != URSULA_OK) abort();
  return (int)S->n_props++;
}

static const char *sim_cmd_of(uint64_t tag, size_t *n) {
  *n = 0;
  if (tag == 0 || tag > S->n_props) return NULL;
  *n = S->props[tag - 1].cmd.len;
  return S->props[tag - 1].cmd.ptr;
}

/* Propose proposal id at node x, which must lead its group. */
static void sim_propose_at(int x, int id) {
  struct sim_prop *p = &S->props[id];
  struct sim_group *sg = &S->node[x].g[p->group];
  struct raft_in in;
  uint64_t tag = (uint64_t)id;
  if (!S->node[x].up || sg->r.role != RAFT_LEADER) return;
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_PROPOSE;
  in.n = 1;
  sg->tags = &tag;
  if (sim_step(x, p->group, &in) != URSULA_OK) return;
  p->node = x;
  p->boot = S->node[x].boot;
  p->term = S->out_term;
  p->index = S->out_index;
  p->state = P_ASSIGNED;
  if (sg->n_props == sg->cap_props) {
    sg->cap_props = sg->cap_props ? 2 * sg->cap_props : 64;
    sg->props =
        (uint64_t *)realloc(sg->props, sg->cap_props * sizeof(*sg->props));
    if (sg->props == NULL) abort();
  }
  sg->props[sg->n_props++] = (uint64_t)id;
  sim_tr("n%d g%d PROPOSE #%d at (%llu, %llu)", x + 1, p->group, id,
         (unsigned long long)p->term, (unsigned long long)p->index);
}

static void sim_client_propose(int g, int x, int id) {
  struct sim_group *sg = &S->node[x].g[g];
  if (!S->node[x].up) return;
  if (sg->r.role == RAFT_LEADER) {
    sim_propose_at(x, id);
  } else if (sg->r.leader != 0 && sim_below(&S->work, 2) == 0) {
    struct sim_msg *m = sim_msg_new(g); /* forward to its leader */
    m->fwd = 1;
    m->m.to = sg->r.leader;
    m->prop = (uint64_t)id;
    S->props[id].fwd = 1;
    sim_net_send(x, m);
  }
}

static int sim_new_read(int g, int x) {
  struct sim_read *rd;
  struct raft_in in;
  if (S->n_reads == S->cap_reads) {
    S->cap_reads = S->cap_reads ? 2 * S->cap_reads : 256;
    S->reads =
        (struct sim_read *)realloc(S->reads, S->cap_reads * sizeof(*S->reads));
    if (S->reads == NULL) abort();
  }
  rd = &S->reads[S->n_reads++];
  memset(rd, 0, sizeof(*rd));
  rd->group = g;
  rd->node = x;
  rd->t0 = S->now;
  rd->need = S->truth[g].max_acked;
  rd->n_acked = S->n_acked_ops;
  rd->state = R_PENDING;
  if (!S->node[x].up) {
    rd->state = R_FAILED;
    return (int)S->n_reads - 1;
  }
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_READ_INDEX;
  in.ctx = S->n_reads;
  sim_tr("n%d g%d READ ctx %llu (needs %llu)", x + 1, g,
         (unsigned long long)in.ctx, (unsigned long long)rd->need);
  sim_step(x, g, &in);
  return (int)S->n_reads - 1;
}

/* Send a new attempt of op to the node believed to lead its group, or
** any node.  Returns the attempt. */
static int sim_send(int op) {
  int g = S->ops[op].group, id = sim_new_prop(op), x;
  struct sim_truth *t = &S->truth[g];
  x = (t->believed >= 0 && sim_below(&S->work, 2) == 0)
          ? t->believed
          : (int)sim_below(&S->work, (uint64_t)S->n);
  sim_client_propose(g, x, id);
  return id;
}

/* Whether the outcome of attempt p is unknown to its client, or not a
** success (then a producer sends its seq again): refused, failed, lost
** with its node's process, or no answer within 4 election timeouts. */
static int sim_attempt_over(const struct sim_prop *p) {
  if (p->status != 0) return 1; /* answered, not accepted (404) */
  if (p->state == P_FAILED || p->state == P_UNKNOWN) return 1;
  if (p->node < 0 && !p->fwd) return 1; /* no leader to send it to */
  if (p->node >= 0 && S->node[p->node].boot != p->boot) return 1;
  return S->now - p->t0 > 4 * SIM_ET_US;
}

/* Producer c's turn: one request in flight; after an unknown outcome it
** sends the SAME seq again (the protocol dedups it), and seq + 1 only
** after a 200 or 204 (sim_answered). */
static void sim_producer_step(int c) {
  struct sim_producer *pr = &S->producers[c];
  if (pr->op < 0) {
    pr->op = sim_new_op(pr->group, CMD_APPEND, pr->stream, c);
    pr->prop = sim_send(pr->op);
    return;
  }
  if (!sim_attempt_over(&S->props[pr->prop])) return;
  S->n_retries++;
  if (SIM_PLANT == 3) S->ops[pr->op].op.seq++; /* planted: seq + 1 */
  pr->prop = sim_send(pr->op);
}

/* Attempt id was answered (p->status, the proposer's apply result): an
** append's first 200 or 204 acknowledges its op; a producer then moves
** on to seq + 1.  A producer never gets 409 or 403: it sends seq n + 1
** only after n was accepted, retries only the same seq, in one epoch. */
static void sim_answered(int id) {
  const struct sim_prop *p = &S->props[id];
  struct sim_op *o = &S->ops[p->op];
  int ok = p->status == 200 || p->status == 204;
  S->n_answers++;
  if (o->op.type == CMD_APPEND && ok && o->status == 0) {
    o->status = p->status;
    o->ack_index = p->index;
    if (S->n_acked_ops == S->cap_acked) {
      S->cap_acked = S->cap_acked ? 2 * S->cap_acked : 256;
      S->acked = (int *)realloc(S->acked, S->cap_acked * sizeof(int));
      if (S->acked == NULL) abort();
    }
    S->acked[S->n_acked_ops++] = p->op;
  }
  if (o->producer < 0) return;
  if (p->status == 409 || p->status == 403)
    sim_fail("producer c%d got %d for seq %llu (g%d s%u): it sent each seq "
             "after the one before was accepted, and retried the same",
             o->producer, p->status, (unsigned long long)o->op.seq, o->group,
             o->op.stream);
  if (ok && S->producers[o->producer].prop == id) {
    S->producers[o->producer].seq = o->op.seq + 1;
    S->producers[o->producer].op = -1;
  }
}

/* Node x applied entry k (e) with result status: if x proposed it, in
** this life, the answer goes to its client. */
static void sim_answer(int x, uint64_t k, const struct sim_entry *e,
                       int status) {
  struct sim_prop *p = &S->props[e->tag - 1];
  if (p->node != x || p->index != k || p->term != e->term ||
      p->boot != S->node[x].boot || p->status != 0)
    return;
  p->status = status;
  sim_answered((int)(e->tag - 1));
}

/* A client: a producer's turn, a plain append (never retried) or a
** CREATE (to the node it believes leads, or any), or a read barrier at
** any node. */
static void sim_client(void) {
  int g = (int)sim_below(&S->work, (uint64_t)S->ngroups);
  unsigned k = (unsigned)sim_below(&S->work, SIMSM_STREAMS);
  uint64_t r;
  if ((S->faults & F_READS) && sim_below(&S->work, 4) == 0) {
    sim_new_read(g, (int)sim_below(&S->work, (uint64_t)S->n));
    return;
  }
  r = sim_below(&S->work, 8);
  if (r < 5)
    sim_producer_step((int)sim_below(&S->work, (uint64_t)S->n_producers));
  else
    sim_send(sim_new_op(g, r == 5 ? CMD_CREATE : CMD_APPEND, k, -1));
}

/* ------------------------------------------------------------ faults */

static void sim_cut(int from, int to, uint64_t for_us) {
  struct sim_ev ev;
  S->cut[from][to]++;
  memset(&ev, 0, sizeof(ev));
  ev.t = S->now + for_us;
  ev.kind = EV_LINK;
  ev.node = from;
  ev.group = to;
  ev.a = S->heal_gen;
  sim_push(ev);
}

static int sim_pick_up(void) {
  int k, x = (int)sim_below(&S->fault, (uint64_t)S->n);
  for (k = 0; k < S->n; k++, x = (x + 1) % S->n)
    if (S->node[x].up && !S->node[x].paused) return x;
  return -1;
}

static void sim_fault(void) {
  unsigned f = 0;
  int tries, x, y, k;
  uint64_t d = sim_range(&S->fault, 5 * SIM_ET_US / 10, 6 * SIM_ET_US);
  for (tries = 0; tries < 8; tries++) {
    f = 1u << sim_below(&S->fault, F_NFAULTS);
    if (S->faults & f) break;
  }
  if (!(S->faults & f)) return;
  switch (f) {
    case F_PART: { /* two sides, every link between them cut both ways */
      uint64_t side = 0;
      while (side == 0 || side == (1ull << S->n) - 1)
        side = sim_below(&S->fault, 1ull << S->n);
      sim_tr("PARTITION %llx for %llu us", (unsigned long long)side,
             (unsigned long long)d);
      for (x = 0; x < S->n; x++)
        for (y = 0; y < S->n; y++)
          if (((side >> x) & 1) != ((side >> y) & 1)) sim_cut(x, y, d);
      break;
    }
    case F_ISOLATE: /* the leader of a group, from everyone, both ways */
      x = S->truth[sim_below(&S->fault, (uint64_t)S->ngroups)].believed;
      if (x < 0) break;
      sim_tr("ISOLATE n%d for %llu us", x + 1, (unsigned long long)d);
      for (y = 0; y < S->n; y++)
        if (y != x) {
          sim_cut(x, y, d);
          sim_cut(y, x, d);
        }
      break;
    case F_ASYM:
      x = (int)sim_below(&S->fault, (uint64_t)S->n);
      y = (int)sim_below(&S->fault, (uint64_t)S->n);
      if (x != y) {
        sim_tr("CUT n%d->n%d for %llu us", x + 1, y + 1, (unsigned long long)d);
        sim_cut(x, y, d);
      }
      break;
    case F_FLAP: {
      struct sim_ev ev;
      x = (int)sim_below(&S->fault, (uint64_t)S->n);
      y = (int)sim_below(&S->fault, (uint64_t)S->n);
      if (x == y) break;
      memset(&ev, 0, sizeof(ev));
      ev.kind = EV_FLAP;
      ev.node = x;
      ev.group = y;
      ev.a = S->heal_gen;
      ev.b = sim_range(&S->fault, 4, 20); /* toggles left */
      ev.t = S->now;
      sim_push(ev);
      break;
    }
    case F_KILL_LEADER:
    case F_CRASH:
      x = (int)sim_below(&S->fault, (uint64_t)S->n);
      if (f == F_KILL_LEADER)
        x = S->truth[sim_below(&S->fault, (uint64_t)S->ngroups)].believed;
      if (x < 0 || !S->node[x].up) break;
      sim_crash(x, 0);
      sim_at(S->now + sim_range(&S->fault, 1000, 4 * SIM_ET_US), EV_RESTART, x,
             0);
      break;
    case F_WIPE: /* one node at a time may be without its disk's data */
      x = (int)sim_below(&S->fault, (uint64_t)S->n);
      for (k = 0; k < S->n; k++)
        if (sim_recovering(k) || !S->node[k].up || S->node[k].flipped) return;
      S->n_wipes++;
      sim_crash(x, 1);
      sim_at(S->now + sim_range(&S->fault, 1000, 2 * SIM_ET_US), EV_RESTART, x,
             1);
      break;
    case F_FLIP: /* one node's disk at a time (its damage, once found, costs
                    it its disk: never two nodes without theirs) */
      x = (int)sim_below(&S->fault, (uint64_t)S->n);
      for (k = 0; k < S->n; k++)
        if (sim_recovering(k) || !S->node[k].up || S->node[k].flipped) return;
      if (simfs_flip(S->node[x].prefix, sim_fault_rand, NULL)) {
        S->node[x].flipped = 1;
        S->n_flips++;
        sim_tr("n%d BIT FLIPPED on its disk", x + 1);
      }
      break;
    case F_PAUSE:
      x = sim_pick_up();
      if (x < 0) break;
      S->node[x].paused = 1;
      S->node[x].pause_until = S->now + d;
      sim_tr("n%d PAUSED for %llu us", x + 1, (unsigned long long)d);
      sim_at(S->now + d, EV_RESUME, x, 0);
      break;
    case F_TRANSFER: {
      int g = (int)sim_below(&S->fault, (uint64_t)S->ngroups);
      struct raft_in in;
      x = S->truth[g].believed;
      y = (int)sim_below(&S->fault, (uint64_t)S->n);
      if (x < 0 || x == y || !S->node[x].up || S->node[x].paused ||
          S->node[x].g[g].r.role != RAFT_LEADER)
        break;
      memset(&in, 0, sizeof(in));
      in.type = RAFT_IN_TRANSFER;
      in.peer = (uint64_t)y + 1;
      S->n_transfers++;
      sim_tr("n%d g%d TRANSFER to n%d", x + 1, g, y + 1);
      sim_step(x, g, &in);
      break;
    }
    default:
      break; /* the others are rates, on all the time */
  }
}

/* The faults end: every link up, every node running, no drops, no failed
** syncs.  Clients stop; the final proposal and read of each group follow. */
static void sim_heal(void) {
  int x, y, g;
  S->healed = 1;
  S->heal_gen++;
  sim_tr("HEAL");
  for (x = 0; x < S->n; x++)
    for (y = 0; y < S->n; y++) S->cut[x][y] = 0;
  for (x = 0; x < S->n; x++) {
    if (!S->node[x].up) sim_boot(x, S->node[x].wiped);
    S->node[x].paused = 0;
  }
  S->faults &= ~(unsigned)(F_DROP | F_DUP | F_REORDER | F_DISKFAIL | F_NOSPC);
  for (g = 0; g < S->ngroups; g++) sim_at(S->now + SIM_ET_US, EV_FINAL, -1, g);
}

/* After healing: a leader that every node follows, per group. */
static void sim_check_leaders(void) {
  int g, x;
  for (g = 0; g < S->ngroups; g++) {
    struct sim_truth *t = &S->truth[g];
    int l = -1, ok = 1;
    if (t->leader_at != 0) continue;
    for (x = 0; x < S->n; x++)
      if (S->node[x].up && S->node[x].g[g].r.role == RAFT_LEADER) l = x;
    if (l < 0) continue;
    for (x = 0; x < S->n; x++)
      if (!S->node[x].up || S->node[x].g[g].r.leader != (uint64_t)l + 1 ||
          S->node[x].g[g].r.term != S->node[l].g[g].r.term)
        ok = 0;
    if (ok) t->leader_at = S->now;
  }
  for (g = 0; g < S->ngroups; g++) {
    uint64_t et = SIM_LEADER_ET;
    for (x = 0; x < S->n; x++)
      if (S->node[x].up && S->node[x].g[g].r.recovering) et = SIM_LEADER_ET_REC;
    if (S->truth[g].leader_at == 0 && S->now >= SIM_HEAL_US + et * SIM_ET_US)
      sim_fail("liveness: g%d has no leader %d election timeouts after "
               "healing",
               g, (int)et);
  }
}

/* After healing, each group's final proposal (until acknowledged), then
** its final read (until served), retried every election timeout. */
static void sim_final(int g) {
  struct sim_truth *t = &S->truth[g];
  if (t->final_prop < 0 || S->props[t->final_prop].state != P_ACKED) {
    int id = sim_new_prop(sim_new_op(g, CMD_APPEND, 0, -1)), x;
    S->props[id].final = 1;
    t->final_prop = id;
    for (x = 0; x < S->n; x++)
      if (S->node[x].up && S->node[x].g[g].r.role == RAFT_LEADER)
        sim_propose_at(x, id);
  } else if (t->final_read < 0 || S->reads[t->final_read].state == R_FAILED ||
             (S->reads[t->final_read].state == R_PENDING &&
              S->now - S->reads[t->final_read].t0 > 5 * SIM_ET_US)) {
    if (t->final_read >= 0 && S->reads[t->final_read].state == R_PENDING)
      S->reads[t->final_read].state = R_FAILED; /* the client gives up */
    t->final_read = sim_new_read(g, (int)sim_below(&S->work, (uint64_t)S->n));
    S->reads[t->final_read].final = 1;
  }
  sim_at(S->now + SIM_ET_US, EV_FINAL, -1, g);
}

/* ------------------------------------------------- what clients see */

/* The tags of stream k of group g on node x (simsm_tags, through
** stream_read: from memory, or the WAL) into *tags (grown, *cap).
** Returns how many (0: no such stream), or -1: the bytes are not whole
** tags (a violation), or damage found on a flipped disk (the node
** stops). */
static long sim_tags(int x, int g, unsigned k, uint64_t **tags, size_t *cap) {
  struct sim_group *sg = &S->node[x].g[g];
  size_t n = 0;
  int rc = simsm_tags(&sg->log.sm, (unsigned)g, k, *tags, *cap, &n);
  if (rc == URSULA_OK && n > *cap) {
    *cap = 2 * n;
    *tags = (uint64_t *)realloc(*tags, *cap * sizeof(**tags));
    if (*tags == NULL) abort();
    rc = simsm_tags(&sg->log.sm, (unsigned)g, k, *tags, *cap, &n);
  }
  if (rc == URSULA_ENOTFOUND) return 0;
  if (rc == URSULA_OK) return (long)n;
  if (S->node[x].flipped)
    simlog_broke(&sg->log, rc);
  else
    sim_fail("n%d g%d s%u: the stream does not read back as whole tags "
             "(%s)",
             x + 1, g, k, ursula_strerror(rc));
  return -1;
}

/* Mark in S->seen (by op: its stream + 1) the tags that group g's streams
** hold on node x; each at most once (no append is in twice: a producer's
** retry is deduplicated, a plain append is never retried), each an append
** of that stream.  0 if they could not be read, or a check failed. */
static int sim_see(int x, int g, uint64_t **tags, size_t *cap) {
  unsigned k;
  long i, n;
  if (S->seen_cap < S->n_ops) {
    S->seen_cap = 2 * S->n_ops;
    S->seen = (unsigned char *)realloc(S->seen, S->seen_cap);
    if (S->seen == NULL) abort();
  }
  memset(S->seen, 0, S->n_ops);
  for (k = 0; k < SIMSM_STREAMS; k++) {
    if ((n = sim_tags(x, g, k, tags, cap)) < 0) return 0;
    for (i = 0; i < n; i++) {
      uint64_t t = (*tags)[i];
      const struct sim_op *o = t >= 1 && t <= S->n_ops ? &S->ops[t - 1] : NULL;
      if (o == NULL || o->group != g || o->op.stream != k ||
          o->op.type != CMD_APPEND) {
        sim_fail("n%d g%d s%u holds tag %llu, which no client appended there",
                 x + 1, g, k, (unsigned long long)t);
        return 0;
      }
      if (S->seen[t - 1] != 0) {
        sim_fail("duplicate: n%d g%d s%u holds tag %llu twice (%s)", x + 1, g,
                 k, (unsigned long long)t,
                 o->producer >= 0 ? "a producer's append" : "a plain append");
        return 0;
      }
      S->seen[t - 1] = (unsigned char)(k + 1);
    }
  }
  return 1;
}

/* Read-your-writes: a read barrier served at node x once it applied the
** barrier's index sees every append acknowledged before the read began
** (ReadIndex, Raft paper section 6.4). */
static void sim_check_read(const struct sim_read *rd) {
  uint64_t *tags = NULL;
  size_t cap = 0, i;
  if (S->failed || !sim_see(rd->node, rd->group, &tags, &cap)) {
    free(tags);
    return;
  }
  for (i = 0; i < rd->n_acked && !S->failed; i++) {
    const struct sim_op *o = &S->ops[S->acked[i]];
    if (o->group == rd->group && S->seen[S->acked[i]] != o->op.stream + 1)
      sim_fail("stale read: n%d g%d served a read at %llu without tag %llu "
               "(s%u), acknowledged (%d) before the read began",
               rd->node + 1, rd->group, (unsigned long long)rd->index,
               (unsigned long long)o->op.tag, o->op.stream, o->status);
  }
  free(tags);
}

/* At the end, after healing, on every node of group g: every append
** acknowledged with 200 or 204 is in its stream (none lost); no tag twice
** (sim_see); one value per offset: any two replicas' streams are one a
** prefix of the other, tag by tag (the bytes: simsm_tags parses them). */
static void sim_end_streams(int g) {
  uint64_t *tags = NULL, *ref[SIMSM_STREAMS];
  size_t cap = 0, n_ref[SIMSM_STREAMS], i;
  unsigned k;
  int x;
  memset(ref, 0, sizeof(ref));
  memset(n_ref, 0, sizeof(n_ref));
  for (x = 0; x < S->n && !S->failed; x++) {
    const struct sim_group *sg = &S->node[x].g[g];
    if (!sim_see(x, g, &tags, &cap)) break;
    for (i = 0; i < S->n_acked_ops && !S->failed; i++) {
      const struct sim_op *o = &S->ops[S->acked[i]];
      if (o->group != g) continue;
      if (sg->applied < o->ack_index)
        sim_fail("liveness: n%d g%d applied %llu only; %llu answered %d", x + 1,
                 g, (unsigned long long)sg->applied,
                 (unsigned long long)o->ack_index, o->status);
      else if (S->seen[S->acked[i]] != o->op.stream + 1)
        sim_fail("acknowledged append lost: n%d g%d s%u lacks tag %llu "
                 "(answered %d at entry %llu)",
                 x + 1, g, o->op.stream, (unsigned long long)o->op.tag,
                 o->status, (unsigned long long)o->ack_index);
    }
    for (k = 0; k < SIMSM_STREAMS && !S->failed; k++) {
      long n = sim_tags(x, g, k, &tags, &cap);
      size_t m, j;
      if (n < 0) break;
      m = (size_t)n < n_ref[k] ? (size_t)n : n_ref[k];
      for (j = 0; j < m; j++)
        if (tags[j] != ref[k][j]) {
          sim_fail("one value per offset: n%d g%d s%u holds tag %llu at "
                   "offset %llu, another node tag %llu",
                   x + 1, g, k, (unsigned long long)tags[j],
                   (unsigned long long)(j * SIMSM_TAG_BYTES),
                   (unsigned long long)ref[k][j]);
          break;
        }
      if ((size_t)n > n_ref[k]) { /* the longest so far: the reference */
        free(ref[k]);
        ref[k] = (uint64_t *)malloc((size_t)n * sizeof(uint64_t));
        if (ref[k] == NULL) abort();
        memcpy(ref[k], tags, (size_t)n * sizeof(uint64_t));
        n_ref[k] = (size_t)n;
      }
    }
  }
  for (k = 0; k < SIMSM_STREAMS; k++) free(ref[k]);
  free(tags);
}

/* The end: every proposal that got an index is resolved there; the final
** ones succeeded; every node's committed prefix is the cluster's. */
static void sim_end(void) {
  size_t i;
  int g, x;
  for (i = 0; i < S->n_props && !S->failed; i++) {
    const struct sim_prop *p = &S->props[i];
    if (p->state == P_ASSIGNED)
      sim_fail("liveness: proposal #%zu (g%d, %llu, %llu) never resolved", i,
               p->group, (unsigned long long)p->term,
               (unsigned long long)p->index);
    if (p->state == P_ACKED && (S->truth[p->group].c_term[p->index] != p->term))
      sim_fail("acknowledged proposal #%zu lost: g%d index %llu", i, p->group,
               (unsigned long long)p->index);
  }
  for (g = 0; g < S->ngroups && !S->failed; g++) {
    struct sim_truth *t = &S->truth[g];
    if (t->final_prop < 0 || S->props[t->final_prop].state != P_ACKED)
      sim_fail("liveness: g%d: no proposal succeeded after healing", g);
    else if (t->final_read < 0 || S->reads[t->final_read].state != R_DONE)
      sim_fail("liveness: g%d: no read succeeded after healing", g);
    for (x = 0; x < S->n && !S->failed; x++) {
      const struct sim_group *sg = &S->node[x].g[g];
      if (sg->commit < t->max_acked)
        sim_fail("n%d g%d: commit %llu is behind an acknowledged %llu", x + 1,
                 g, (unsigned long long)sg->commit,
                 (unsigned long long)t->max_acked);
      else if (sg->commit >= sg->log.snap_index &&
               simlog_phash(&sg->log, sg->commit) != t->c_phash[sg->commit])
        sim_fail("n%d g%d: its committed prefix is not the cluster's", x + 1,
                 g);
    }
    if (!S->failed) sim_end_streams(g);
  }
}

/* --------------------------------------------------------- the events */

static void sim_sync_done(int x, int g) {
  struct sim_group *sg = &S->node[x].g[g];
  struct sim_hs old = sg->max_durable, hs;
  struct raft_in in;
  uint64_t last = sg->log.sync_last, term = sg->log.sync_term;
  int fail = (S->faults & F_DISKFAIL) && sim_chance(&S->disk, S->fail_ppm);
  if (!simlog_sync_end(&sg->log, fail)) {
    sim_drop_held(sg, 0);
    sim_props_gone(sg, sg->log.last + 1, P_UNKNOWN);
    S->n_syncfails++;
    sg->failed = 1;
    sim_tr("n%d g%d SYNC FAILED", x + 1, g);
    sim_step_type(x, g, RAFT_IN_STORAGE_FAILED);
    sim_at(S->now + sim_range(&S->disk, 1000, 3 * SIM_ET_US), EV_RECOVER, x, g);
    return;
  }
  hs = sg->log.hs_durable;
  if (hs.term < old.term ||
      (hs.term == old.term && old.vote != 0 && hs.vote != old.vote) ||
      hs.commit < old.commit)
    sim_fail(
        "n%d g%d: durable hard state went back: (%llu, %llu, %llu) "
        "after (%llu, %llu, %llu)",
        x + 1, g, (unsigned long long)hs.term, (unsigned long long)hs.vote,
        (unsigned long long)hs.commit, (unsigned long long)old.term,
        (unsigned long long)old.vote, (unsigned long long)old.commit);
  sg->max_durable = hs;
  sim_tr("n%d g%d SYNCED log %llu (of %llu) state term %llu vote %llu", x + 1,
         g, (unsigned long long)sg->log.durable, (unsigned long long)last,
         (unsigned long long)hs.term, (unsigned long long)hs.vote);
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_LOG_DURABLE;
  in.term = term;
  in.index = last;
  sim_step(x, g, &in);
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_STATE_DURABLE;
  in.term = hs.term;
  in.vote = hs.vote;
  sim_step(x, g, &in);
}

static void sim_deliver(struct sim_ev *ev) {
  int x = ev->node, from = (int)ev->a;
  struct sim_msg *msg = ev->msg;
  struct sim_group *sg = &S->node[x].g[msg->group];
  struct raft_in in;
  if (!S->node[x].up || !sim_link_up(from, x)) {
    S->n_dropped++;
    if (!msg->fwd && msg->m.type == RAFT_MSG_SNAPSHOT)
      sim_snap_end(from, msg->group, msg->m.to, 0, S->now + 5 * SIM_TICK_US);
    return;
  }
  if (msg->fwd) { /* a request is proposed once (a copy is no retry) */
    if (S->props[msg->prop].node < 0)
      sim_client_propose(msg->group, x, (int)msg->prop);
    return;
  }
  if (S->trace) sim_tr_msg("recv", x, msg->group, &msg->m);
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_MSG;
  in.msg = &msg->m;
  sg->in_msg = msg;
  sim_step(x, msg->group, &in);
  if (msg->m.type == RAFT_MSG_SNAPSHOT)
    sim_snap_end(from, msg->group, (uint64_t)x + 1, 1,
                 S->now + S->delay_us + 1);
}

/* Whether the event is for a node that is paused (then it waits). */
static int sim_deferred(struct sim_ev *ev) {
  struct sim_node *nd;
  if (ev->node < 0 || ev->kind == EV_RESTART || ev->kind == EV_RESUME ||
      ev->kind == EV_LINK || ev->kind == EV_FLAP)
    return 0;
  nd = &S->node[ev->node];
  if (!nd->up || !nd->paused) return 0;
  ev->t = nd->pause_until + 1;
  sim_push(*ev);
  return 1;
}

/* A log that served wrong bytes is a violation; one whose WAL reported
** an error no fault was injected for (damage found by a read, or a step
** that failed half-way) stops its node: damage found (URSULA_ECORRUPT)
** costs it its disk, as at a start; else it restarts on what it has. */
static void sim_stop_broken(void) {
  int x, g;
  for (x = 0; x < S->n && !S->failed; x++) {
    int broken = 0;
    if (!S->node[x].up) continue;
    for (g = 0; g < S->ngroups; g++) {
      const struct simlog *l = &S->node[x].g[g].log;
      if (l->wrong)
        sim_fail("n%d g%d: the WAL gave back other bytes than were written",
                 x + 1, g);
      if (l->broken == URSULA_ECORRUPT || (l->broken && !broken))
        broken = l->broken;
    }
    if (!broken) continue;
    sim_tr("n%d STOPS: its log failed (%s)", x + 1, ursula_strerror(broken));
    if (broken == URSULA_ECORRUPT && !S->node[x].flipped)
      sim_fail("n%d: its log is damaged, but no bit flipped on its disk",
               x + 1);
    if (broken == URSULA_ECORRUPT) S->n_damaged++;
    sim_crash(x, broken == URSULA_ECORRUPT);
    if (S->healed) /* restarts are not deferred any more */
      sim_boot(x, broken == URSULA_ECORRUPT);
    else
      sim_at(S->now + sim_range(&S->fault, 1000, 2 * SIM_ET_US), EV_RESTART,
             x, broken == URSULA_ECORRUPT);
  }
}

static void sim_event(struct sim_ev *ev) {
  int g;
  S->events++;
  S->digest = simlog_mix(S->digest, ev->t, (uint64_t)ev->kind);
  if (sim_deferred(ev)) return;
  switch (ev->kind) {
    case EV_TICK:
      if (ev->boot != S->node[ev->node].boot || !S->node[ev->node].up) break;
      for (g = 0; g < S->ngroups; g++) sim_step_type(ev->node, g, RAFT_IN_TICK);
      sim_at(S->now + SIM_TICK_US, EV_TICK, ev->node, -1);
      if (S->healed) sim_check_leaders();
      break;
    case EV_DELIVER:
      sim_deliver(ev);
      sim_msg_unref(ev->msg);
      break;
    case EV_SYNC:
      if (ev->boot != S->node[ev->node].boot || !S->node[ev->node].up) break;
      sim_sync_done(ev->node, ev->group);
      break;
    case EV_SNAP_END: {
      struct raft_in in;
      if (ev->boot != S->node[ev->node].boot || !S->node[ev->node].up) break;
      memset(&in, 0, sizeof(in));
      in.type = ev->ok ? RAFT_IN_SNAP_SENT : RAFT_IN_SNAP_FAILED;
      in.peer = ev->a;
      sim_step(ev->node, ev->group, &in);
      break;
    }
    case EV_RECOVER: {
      struct sim_group *sg = &S->node[ev->node].g[ev->group];
      struct raft_in in;
      if (ev->boot != S->node[ev->node].boot || !S->node[ev->node].up) break;
      sg->failed = 0;
      if (!simlog_recover(&sg->log)) break; /* it stops (sim_stop_broken) */
      memset(&in, 0, sizeof(in));
      in.type = RAFT_IN_STORAGE_RECOVERED;
      in.index = sg->log.last;
      in.term = simlog_term(&sg->log, sg->log.last);
      sim_tr("n%d g%d STORAGE RECOVERED at %llu", ev->node + 1, ev->group,
             (unsigned long long)in.index);
      sim_step(ev->node, ev->group, &in);
      break;
    }
    case EV_CLIENT:
      if (S->healed) break;
      sim_client();
      sim_at(S->now + 1 + sim_below(&S->work, 2 * S->client_us), EV_CLIENT, -1,
             -1);
      break;
    case EV_FAULT:
      if (S->healed) break;
      sim_fault();
      sim_at(S->now + 1 + sim_below(&S->fault, 2 * S->fault_us), EV_FAULT, -1,
             -1);
      break;
    case EV_RESTART:
      if (S->node[ev->node].up || S->healed) break;
      sim_tr("n%d RESTART%s", ev->node + 1, ev->group ? " (wiped)" : "");
      sim_boot(ev->node, ev->group);
      break;
    case EV_RESUME:
      if (ev->boot != S->node[ev->node].boot) break;
      S->node[ev->node].paused = 0;
      sim_tr("n%d RESUMED", ev->node + 1);
      break;
    case EV_LINK:
      if (ev->a == S->heal_gen && S->cut[ev->node][ev->group] > 0)
        S->cut[ev->node][ev->group]--;
      break;
    case EV_FLAP: /* ok: this flap holds the link down now */
      if (ev->a != S->heal_gen) break;
      if (ev->ok) {
        if (S->cut[ev->node][ev->group] > 0) S->cut[ev->node][ev->group]--;
        ev->ok = 0;
      } else {
        S->cut[ev->node][ev->group]++;
        ev->ok = 1;
      }
      if (ev->b > 0) ev->b--;
      if (ev->b > 0 || ev->ok) { /* it ends with the link up */
        ev->t = S->now + sim_range(&S->fault, 2000, 30000);
        sim_push(*ev);
      }
      break;
    case EV_HEAL:
      sim_heal();
      break;
    case EV_FINAL:
      if (!S->failed) sim_final(ev->group);
      break;
    default:
      break;
  }
}

/* -------------------------------------------------------------- a run */

static void sim_params(void) {
  struct sim_rng *c = &S->conf;
  unsigned k;
  S->n = sim_below(c, 5) < 3 ? 3 : 5;
  S->ngroups = (int)sim_range(c, 4, SIM_GROUPS);
  for (k = 0; k < F_NFAULTS; k++)
    if (sim_below(c, 2)) S->faults |= 1u << k;
  memset(&S->cfg, 0, sizeof(S->cfg));
  S->cfg.cluster_id = SIM_CLUSTER;
  for (k = 0; k < (unsigned)S->n; k++) S->cfg.voters[k] = k + 1;
  S->cfg.n_voters = (unsigned)S->n;
  S->cfg.election_ticks = SIM_T;
  S->cfg.heartbeat_ticks = (unsigned)sim_range(c, 1, 3);
  S->cfg.max_inflight_msgs = (unsigned)sim_range(c, 4, 32);
  S->cfg.max_inflight_bytes = sim_below(c, 2) ? 0 : sim_range(c, 2000, 64000);
  S->cfg.max_msg_entries =
      sim_below(c, 4) == 0 ? 1 : (unsigned)sim_range(c, 1, 16);
  S->cfg.max_msg_bytes = sim_below(c, 2) ? 0 : sim_range(c, 500, 16000);
  /* back-pressure, as the server will have: a bounded backlog */
  S->cfg.max_uncommitted = (unsigned)sim_range(c, 16, 256);
  S->cfg.trail_cap = 128;
  S->cfg.read_cap = 16;
  /* without the commit notification (the server turns it on: it changes
  ** when heartbeats go out, not what they say): with it, planted bugs 1
  ** and 8 escaped 10000 seeds -- the fault mix must learn to find them
  ** under it (a known gap) */
  S->cfg.commit_notify = 0;
  S->acts_cap = raft_out_cap(&S->cfg);
  S->acts = (struct raft_action *)calloc(S->acts_cap, sizeof(*S->acts));
  if (S->acts == NULL) abort();
  S->drop_ppm = sim_range(c, 5000, 100000);
  S->dup_ppm = sim_range(c, 5000, 50000);
  S->delay_us = sim_range(c, 50, 500);
  S->jitter_us = (S->faults & F_REORDER) ? sim_range(c, 1000, 20000)
                                         : sim_range(c, 10, 300);
  S->disk_us = sim_range(c, 20, 500);
  S->disk_jitter_us = (S->faults & F_SLOWDISK) ? sim_range(c, 5000, 30000)
                                               : sim_range(c, 10, 1000);
  S->fail_ppm = sim_range(c, 2000, 30000);
  S->client_us = sim_range(c, 300, 5000);
  S->compact_every =
      (S->faults & F_SNAP) ? sim_range(c, 4, 40) : sim_range(c, 60, 100);
  S->fault_us = sim_range(c, 2 * SIM_TICK_US, 2 * SIM_ET_US);
  /* the hot data a state keeps: all, some, or none (every read of an
  ** applied byte then goes to the WAL: read_cold) */
  k = (unsigned)sim_below(c, 3);
  S->hot_max = k == 0 ? UINT64_MAX : k == 1 ? 4 * SIMSM_TAG_BYTES : 0;
  S->n_producers = 2 * S->ngroups;
  for (k = 0; k < (unsigned)S->n_producers; k++) {
    S->producers[k].group = (int)(k % (unsigned)S->ngroups);
    S->producers[k].stream = (unsigned)sim_below(c, SIMSM_STREAMS);
    S->producers[k].op = -1;
  }
}

static void sim_free_all(void) {
  int x, g;
  size_t i;
  while (S->heap_n > 0) {
    struct sim_ev ev = sim_pop();
    if (ev.kind == EV_DELIVER) sim_msg_unref(ev.msg);
  }
  free(S->heap);
  for (x = 0; x < SIM_NODES; x++)
    for (g = 0; g < SIM_GROUPS; g++) {
      struct sim_group *sg = &S->node[x].g[g];
      if (sg->started) raft_free(&sg->r);
      for (i = 0; i < sg->n_held; i++) sim_msg_unref(sg->held[i].msg);
      free(sg->held);
      free(sg->props);
      simlog_free(&sg->log);
      if (sg->has_ghost) simlog_free(&sg->ghost);
    }
  for (g = 0; g < SIM_GROUPS; g++) {
    free(S->truth[g].it);
    free(S->truth[g].c_phash);
    free(S->truth[g].c_term);
    free(S->truth[g].a_sm);
    free(S->truth[g].c_by);
    free(S->truth[g].leader_of);
  }
  for (i = 0; i < S->n_props; i++) buf_free(&S->props[i].cmd);
  free(S->props);
  free(S->ops);
  free(S->acked);
  free(S->seen);
  free(S->reads);
  free(S->acts);
  simfs_reset();
}

static void sim_fault_list(char *buf, size_t len) {
  unsigned k;
  size_t at = 0;
  buf[0] = 0;
  for (k = 0; k < F_NFAULTS; k++)
    if (S->faults & (1u << k))
      at += (size_t)snprintf(buf + at, len - at, "%s%s", at ? "," : "",
                             sim_fault_names[k]);
  if (at == 0) snprintf(buf, len, "none");
}

/* Run one seed; 0 if every check held. */
static int sim_run(uint64_t seed, int trace, int verbose, uint64_t *digest) {
  static struct sim sim;
  struct sim_rng root;
  int x, g;
  memset(&sim, 0, sizeof(sim));
  S = &sim;
  S->seed = seed;
  S->trace = trace;
  root.s = seed;
  S->conf.s = sim_rand(&root);
  S->net.s = sim_rand(&root);
  S->disk.s = sim_rand(&root);
  S->work.s = sim_rand(&root);
  S->fault.s = sim_rand(&root);
  simfs_reset();
  for (x = 0; x < SIM_NODES; x++) {
    S->node[x].rnd.s = sim_rand(&root);
    S->node[x].env.fs = simfs_table();
    snprintf(S->node[x].prefix, sizeof(S->node[x].prefix), "/n%d/", x + 1);
    S->node[x].env.random = sim_node_random;
    S->node[x].env.impl = &S->node[x].rnd;
    for (g = 0; g < SIM_GROUPS; g++) simlog_init(&S->node[x].g[g].log);
  }
  for (g = 0; g < SIM_GROUPS; g++) {
    S->truth[g].believed = -1;
    S->truth[g].final_prop = S->truth[g].final_read = -1;
  }
  sim_params();
  if (trace || verbose) {
    char f[256];
    sim_fault_list(f, sizeof(f));
    printf(
        "seed %llu: %d nodes, %d groups, faults %s; heartbeat %u, window "
        "%u msgs %llu bytes, %u entries %llu bytes per message\n",
        (unsigned long long)seed, S->n, S->ngroups, f, S->cfg.heartbeat_ticks,
        S->cfg.max_inflight_msgs, (unsigned long long)S->cfg.max_inflight_bytes,
        S->cfg.max_msg_entries, (unsigned long long)S->cfg.max_msg_bytes);
  }
  for (x = 0; x < S->n; x++) sim_boot(x, 0);
  sim_at(1, EV_CLIENT, -1, -1);
  sim_at(S->fault_us, EV_FAULT, -1, -1);
  sim_at(SIM_HEAL_US, EV_HEAL, -1, -1);
  sim_at(SIM_END_US, EV_END, -1, -1);
  while (S->heap_n > 0 && !S->failed) {
    struct sim_ev ev = sim_pop();
    S->now = ev.t;
    if (ev.kind == EV_END) break;
    sim_event(&ev);
    sim_stop_broken();
  }
  if (!S->failed) sim_end();
  if (verbose)
    printf(
        "seed %llu: %llu events, %llu messages (%llu dropped), %llu "
        "leaders, %llu crashes, %llu wipes, %llu failed syncs, %llu "
        "snapshots, %llu installs, %llu transfers, %llu acknowledged, "
        "%llu reads; clients: %llu ops, %llu answered, %llu appends "
        "acknowledged, %llu retries; disk: %llu syncs, %llu failed, %llu "
        "ENOSPC, %llu torn writes, %llu bit flips, %llu damaged disks "
        "replaced; digest %016llx\n",
        (unsigned long long)seed, (unsigned long long)S->events,
        (unsigned long long)S->n_msgs, (unsigned long long)S->n_dropped,
        (unsigned long long)S->n_elections, (unsigned long long)S->n_crashes,
        (unsigned long long)S->n_wipes, (unsigned long long)S->n_syncfails,
        (unsigned long long)S->n_snaps, (unsigned long long)S->n_installs,
        (unsigned long long)S->n_transfers, (unsigned long long)S->n_acked,
        (unsigned long long)S->n_reads_done, (unsigned long long)S->n_ops,
        (unsigned long long)S->n_answers,
        (unsigned long long)S->n_acked_ops, (unsigned long long)S->n_retries,
        (unsigned long long)simfs.n_syncs,
        (unsigned long long)simfs.n_failed_syncs,
        (unsigned long long)simfs.n_failed_writes,
        (unsigned long long)simfs.n_torn, (unsigned long long)S->n_flips,
        (unsigned long long)S->n_damaged, (unsigned long long)S->digest);
  if (digest) *digest = S->digest;
  sim_free_all();
  return S->failed;
}

static double sim_wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sim_usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [--seed S [--trace]] [--seeds N [--first F]] "
          "[--find N]\n",
          argv0);
}

int main(int argc, char **argv) {
  uint64_t seed = 0, first = 1, n = 0, find = 0, s, digest = 0;
  int trace = 0, i, bad = 0;
  double t0, dt;
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
      seed = strtoull(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--seeds") == 0 && i + 1 < argc)
      n = strtoull(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--first") == 0 && i + 1 < argc)
      first = strtoull(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--find") == 0 && i + 1 < argc)
      find = strtoull(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--trace") == 0)
      trace = 1;
    else {
      sim_usage(argv[0]);
      return 2;
    }
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (seed != 0) {
    int rc = sim_run(seed, trace, 1, &digest);
    if (rc)
      printf("seed %llu FAILED: %s\n", (unsigned long long)seed, S->why);
    else
      printf("seed %llu: ok\n", (unsigned long long)seed);
    return rc;
  }
  if (find != 0) { /* a planted bug: the first seed that catches it */
    t0 = sim_wall();
    for (s = 1; s <= find; s++)
      if (sim_run(s, 0, 0, NULL)) {
        printf("plant %s%d caught at seed %llu (%llu seeds, %.1f s): %s\n",
               SIM_PLANT ? "sim" : "", SIM_PLANT ? SIM_PLANT : RAFT_PLANT,
               (unsigned long long)s, (unsigned long long)s,
               sim_wall() - t0, S->why);
        return 0;
      }
    printf("plant %s%d NOT caught in %llu seeds\n", SIM_PLANT ? "sim" : "",
           SIM_PLANT ? SIM_PLANT : RAFT_PLANT,
           (unsigned long long)find);
    return 1;
  }
  if (n == 0) {
    sim_usage(argv[0]);
    return 2;
  }
  t0 = sim_wall();
  for (s = first; s < first + n; s++)
    if (sim_run(s, 0, 0, NULL)) {
      printf("sim: seed %llu FAILED: %s\n  replay: %s --seed %llu --trace\n",
             (unsigned long long)s, S->why, argv[0], (unsigned long long)s);
      bad++;
    }
  dt = sim_wall() - t0;
  printf(
      "sim: seeds %llu..%llu: %llu runs, %d failed, %.1f s, %.0f seeds per "
      "minute\n",
      (unsigned long long)first, (unsigned long long)(first + n - 1),
      (unsigned long long)n, bad, dt, dt > 0 ? (double)n * 60.0 / dt : 0.0);
  return bad ? 1 : 0;
}
