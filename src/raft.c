/*
** raft.c -- the Raft core of one group, pure: no I/O, no clock, no
** randomness of its own, no allocation after raft_init().
**
** One struct raft per group (hundreds per node).  Its driver feeds it
** inputs through raft_step() and carries out the actions it gives back,
** in order.  Time arrives as ticks; randomness through the node's
** env->random; the log's bytes never enter the core: it keeps only the
** terms of the entries it knows, as a trail of runs (index where a term
** starts, term), and the driver owns the bytes (the WAL) and attaches
** them to the messages it sends.  Citations: "paper" is Ongaro and
** Ousterhout, "In Search of an Understandable Consensus Algorithm"
** (2014); "thesis" is Ongaro, "Consensus: Bridging Theory and Practice"
** (2014).
**
** WHAT IT IMPLEMENTS
**   - leader election with randomized timeouts in [T, 2T) (paper §5.2),
**     pre-vote (thesis §9.6), check-quorum and the followers' lease
**     (thesis §6.2);
**   - log replication (paper §5.3) with a window of messages and bytes in
**     flight per follower, probe / replicate / snapshot states per peer,
**     conflict back-off by term (thesis §3.5: one round trip per term),
**     truncation only on a real conflict (paper Fig. 2, AppendEntries
**     receiver rule 3);
**   - the commit rule: only entries of the leader's term are committed
**     by counting (paper §5.4.2, Fig. 8); a new leader appends a no-op;
**   - persistence order (paper Fig. 2 "Persistent state", thesis §3.8):
**     term and vote durable before any message of that term; a follower
**     acknowledges only what it holds durably;
**   - the leader's own write in parallel with replication, counting
**     itself once its own write is durable (thesis §10.2.1);
**   - snapshots for followers behind the leader's first index (paper §7);
**   - a read barrier, ReadIndex (thesis §6.4), no lease;
**   - leadership transfer (thesis §3.10);
**   - static membership of 1, 3 or 5 voters, cluster id and node ids
**     checked on every message;
**   - a node that lost its log neither votes nor campaigns until caught
**     up (LOST LOG, below).
**
** INPUTS (struct raft_in; raft_step returns URSULA_OK unless said)
**   TICK                 one tick of the node's clock (100 ms in ursula).
**   MSG(msg)             a message from a peer; the driver keeps the
**                        entries it carried (an APPEND) until the call
**                        returns, for the APPEND action it may cause.
**   PROPOSE(n)           the leader appends n entries of its term;
**                        out->term, out->index is where the first went
**                        (the rest follow it).  URSULA_EAGAIN: not the
**                        leader, a transfer under way, storage failed,
**                        max_uncommitted reached, or the trail is full.
**                        A proposal succeeded once COMMIT reaches its
**                        index and the entry there carries its term.
**   LOG_DURABLE(term,i)  the driver's sync made entry i (of term) and all
**                        before it durable.  Stale completions -- entry i
**                        was since replaced (truncated and written again
**                        with another term) -- are ignored (R4).
**   STATE_DURABLE(term,vote) a SAVE_STATE with this term and vote is
**                        durable.
**   SNAP_SENT(peer), SNAP_FAILED(peer) the snapshot stream the leader
**                        started with SEND_SNAPSHOT ended.
**   SNAP_INSTALLED(term,i) the driver installed the snapshot it was told
**                        to (INSTALL_SNAPSHOT): entries <= i are in it.
**   COMPACTED(term,i)    the driver holds a durable snapshot at entry i
**                        (i <= commit, <= durable) and dropped the log up
**                        to it; a follower behind it now needs a snapshot.
**   READ_INDEX(ctx)      a linearizable read barrier: READ_READY(ctx, i)
**                        comes back later; the read may be served once
**                        this node has applied i.  i = 0: refused.
**   TRANSFER(peer)       hand leadership to peer (URSULA_EAGAIN: not the
**                        leader; URSULA_EINVAL: not a voter).
**   STORAGE_FAILED       a write or sync failed: what was not durable may
**                        be lost.
**   STORAGE_RECOVERED(term,i) the log is usable again and ends at its
**                        durable entry i (of term).
**   LEAVE                this node is stopping (LEAVING, below): from now on
**                        it neither campaigns nor obeys TIMEOUT_NOW, and
**                        its messages say so; a leader hands leadership
**                        to the best peer (TRANSFER).  Given again (every
**                        tick, say) it tries again once a transfer was
**                        abandoned.  URSULA_EAGAIN: a leader with no peer
**                        to hand over to.
**   STAY                 LEAVE no more (a node that shed its leadership
**                        for maintenance, and stays): it campaigns and
**                        takes transfers again, and its messages no
**                        longer say LEAVING, so its peers clear the mark.
**
** ACTIONS (struct raft_action, appended to the caller's struct raft_out)
**   SAVE_STATE(term, vote, commit, flags)  write the hard state; flags 1
**                        = recovering (LOST LOG).  commit may be saved
**                        lazily; term and vote may not (R1).
**   APPEND(lo, hi, runs) write entries lo..hi; their terms are the runs
**                        (msg.runs, msg.n_runs).  flags RAFT_APPEND_NOOP:
**                        empty entries (a new leader's no-op);
**                        RAFT_APPEND_MSG: the entries the input MSG
**                        carried; neither: the ones just PROPOSEd.
**   TRUNCATE(lo)         remove the entries from lo on (lo > commit).
**   SEND(msg, after)     send msg; if after_index is not 0, only once
**                        entry (after_term, after_index) is durable (R2).
**   SEND_SNAPSHOT(peer, term, hi) stream the snapshot at entry hi to
**                        peer, in chunks, resumable; then SNAP_SENT or
**                        SNAP_FAILED.  Its first chunk carries a
**                        RAFT_MSG_SNAPSHOT header built by the driver
**                        from this action and the current term.
**   INSTALL_SNAPSHOT(peer, term, hi) install the snapshot being received
**                        from peer (wal_install_begin/put/commit: the log
**                        is kept after hi only if its entry hi has that
**                        term), then SNAP_INSTALLED.
**   COMMIT(hi)           entries <= hi are committed: apply them once
**                        durable here.
**   READ_READY(ctx, hi)  the barrier of READ_INDEX(ctx) passed at hi (0:
**                        refused).
**   ROLE(role, term, peer) the role, term or leader (peer, 0: unknown)
**                        changed; given last in a step.
**
** DRIVER RULES, and how the core makes each hold
**   R1  Actions run in order; a SEND given after a SAVE_STATE waits until
**       that state is durable.  By construction: every message leaves
**       through raft_send(), which first gives SAVE_STATE of any change
**       of term, vote or recovering (raft_persist), so no message is
**       ever given before the state it was sent in.
**   R2  SEND(after_term, after_index) waits until that entry is durable,
**       and is dropped if a TRUNCATE removes it.  The core gives every
**       acknowledgment of entries this way (raft_ack): a follower's
**       "I have up to i" leaves only once i is on its disk, and never
**       for an entry that was replaced in between.
**   R3  TRUNCATE waits for the sync in flight; the core never truncates
**       at or below commit (raft_recv_append refuses such a message).
**   R4  Completions carry the (term, index) written; the core ignores
**       stale ones (raft_log_durable: the entry there must still carry
**       that term).
**   R5  On STORAGE_FAILED the core steps down and, until
**       STORAGE_RECOVERED, refuses every message (no vote, no ack) and
**       every proposal; the driver answers pending proposals "unknown".
**       A failed leader never proposes again in its term, so no (term,
**       index) is ever given to two entries (canonical/raft#320).
**
** MESSAGES (struct raft_msg, 152 bytes: ten u64 at offsets 0..72, then
** u32 n at 80, u8 type at 84, flags 85, n_runs 86, pad 87, and runs at
** 88: RAFT_MSG_RUNS x (u64 index, u64 term).  The transport step encodes
** them as these fields, little-endian, in this order.)
**   cluster_id, from, to, term: on every message.  Then, by type:
**   APPEND          index, log_term = prev entry; n entries follow it,
**                   their terms in runs[0..n_runs); commit = leader's.
**   APPEND_RESP     accept: index = prev + n of the message answered (or
**                   a snapshot's index): held until durable (R2).
**                   REJECT: index = the prev refused, hint and log_term =
**                   the follower's last entry at or below it whose term
**                   is <= the prev's term.  last = the follower's last
**                   index.  flags RECOVERING (LOST LOG).
**   PREVOTE, VOTE   index, log_term = the candidate's last entry; a
**                   PREVOTE's term is the term it would campaign in.
**                   flags TRANSFER (VOTE only).  A PREVOTE flagged
**                   RECOVERING is LOST LOG's poll: ctx = its nonce.
**   PREVOTE_RESP, VOTE_RESP  granted: term = the request's; REJECT: term
**                   = the voter's.  The poll's answer: REJECT and
**                   RECOVERING, the voter's term, ctx = the poll's.
**   HEARTBEAT       index, log_term = an entry the follower holds (the
**                   smaller of its match and commit); commit = index;
**                   last = the leader's own commit (LOST LOG); ctx = the
**                   leader's read sequence.
**   HEARTBEAT_RESP  ctx echoed, last, flags RECOVERING.
**   SNAPSHOT        index, log_term = the snapshot's last entry.
**   TIMEOUT_NOW     (nothing more).
**   READ_INDEX      ctx = the follower's.
**   READ_INDEX_RESP ctx; index = the read index; REJECT: refused.
** Any message may carry flags LEAVING (its sender is stopping, LEAVING
** below); the driver-built SNAPSHOT header does not, and is not read for it.
** A message from another cluster, to another node, from a node that is
** not a voter, or from this node, is dropped and counted (stats.foreign).
**
** LOST LOG.  A node whose disk was wiped or replaced comes back with no
** state: it forgot its term, its vote (it could vote twice in a term) and
** the entries it acknowledged (a quorum counting it could elect a leader
** that misses committed entries: KAFKA-14077, where a voter restarted
** with an empty log and elected a leader that lost acknowledged data).
** The driver tells raft_init (saved.recovering = 1: no saved state, but
** the cluster has run), and the flag is saved with the hard state until
** it clears.  A recovering node neither grants (pre-)votes nor campaigns,
** in two phases:
**   POLLING: it answers nothing and follows no leader: a stale leader of
**   a term it had left would otherwise count its acknowledgments and its
**   read confirmations (the simulator found that one).  It asks EVERY
**   other voter its term (a PREVOTE flagged RECOVERING, with a nonce this
**   start drew; answered with the term and the nonce, changing nothing)
**   until each has answered this start's nonce.  Each answer is sent
**   after the loss, and terms never decrease, so the highest is at least
**   every term the node took part in: a candidate it voted for was in
**   that term before the vote, and answers with that term or a later one;
**   a leader it acknowledged likewise.  It takes that term and records a
**   vote for itself in it (it abstains there).  A majority of the others
**   is not enough: with 5 voters, the candidate C it voted for in T, and
**   the third voter whose vote for C is still on its way (a paused node,
**   a slow link), may both be outside the majority polled, which then
**   knows no term past T - 1; the node would take T - 1 and could later
**   vote for another candidate in T while C, still counting its
**   forgotten vote, wins T too: two leaders of one term.  Waiting a
**   while does not help: a paused node's messages have no deadline.  The
**   price: a node that lost its disk votes again only when every other
**   voter has answered once (with 5 voters and one of the others down,
**   the cluster goes on without it, but its vote waits).  An answer to
**   an earlier start's poll is ignored: it may predate the loss.
**   CATCHING UP: a follower of the leader of its term (or a later one);
**   its acknowledgments are of entries it holds durably, in a term past
**   every one it forgot.  It votes again once it holds, durably, every
**   entry up to the commit index of the leader of its current term (the
**   leader's own, which AppendEntries and heartbeats carry) and the entry
**   there is of that term: the leader committed an entry of its own term,
**   which is after every entry committed before (paper §5.4.3, leader
**   completeness), so the node again holds everything it may have
**   acknowledged before it lost its disk, and its vote cannot elect a
**   leader without it.
** Its answers carry RECOVERING, so a leader forgets the match it had for
** it.  A single voter that lost its log lost the data: recovering is
** ignored there.  The hole left: two nodes that lose their disks at once
** (more than f = 1 of 3 failures).
**
** LEAVING (issue 14, a graceful stop).  A node that is about to stop is
** told LEAVE.  It hands over the leadership it holds -- a transfer
** (thesis §3.10) to the peer that is not leaving, preferring one heard
** from since the last check-quorum, then the highest match (the most
** caught up: the transfer then only waits for the last entries) -- and
** must not take leadership back while it drains: it neither campaigns
** nor obeys TIMEOUT_NOW (raft_can_campaign), and every message it sends
** is flagged LEAVING.  A peer records the flag of each message it gets
** from a voter (raft_peer.leaving) and refuses to TRANSFER to a peer so
** marked, so the others' leadership spread does not hand groups back to
** it (a transfer to it under way is abandoned at once: proposals resume).  The mark clears with the first message heard without the flag: a
** node that restarted is a normal member again.  Safety is untouched:
** LEAVING only withholds candidacies and transfers; the node still votes
** and acknowledges entries until it stops.
**
** PLANTED BUGS.  -DRAFT_PLANT=n (default 0) compiles in one classic bug,
** to prove the tests catch it (make test-raft-plants, make
** test-sim-bugs).  "sim" marks those the simulator must catch.
**    1  commit a previous term's entry by counting replicas (Fig. 8)  sim
**    2  answer a vote before the term and vote are durable           sim
**    3  acknowledge entries before they are durable                  sim
**    4  truncate the log on a stale or duplicated AppendEntries      sim
**    5  a new leader appends no no-op                                sim
**    6  let a node that lost its log vote and campaign               sim
**    7  serve a read without the barrier (ReadIndex)                  sim
**    8  acknowledge the last index instead of prev + n               sim
**    9  reuse an index after a failed leader write                   sim
**   10  count the leader before its own write is durable             sim
**   11  accept a stale LOG_DURABLE (ABA)                             sim
**   12  a heartbeat's commit beyond the matching prefix              sim
**   13  drop a lower-term pre-vote silently (pre-vote liveness trap)
**   14  no check-quorum
**   15  (pre-)votes ignore the leader's lease
**   16  stop and wait: one AppendEntries in flight per follower
**   17  back off one entry per round trip
**   18  a fixed election timeout
**   19  no snapshot for a follower behind the first index
**   20  keep the log after an installed snapshot whatever its term    sim
**   21  the transfer target runs pre-vote
**   22  no cluster id / node id check
**   23  no pre-vote
**   24  a leadership transfer is never aborted
**   25  no byte window
**   26  a node that lost its log follows leaders at once (no term poll)  sim
**   27  LOST LOG polls a majority of the others (after 3T), not all
**   28  a new commit index reaches the followers only with the next tick
**   29  a leaving node still campaigns and obeys TIMEOUT_NOW
**   30  the LEAVING mark of a peer never clears (a restarted node stays
**       out of transfers)
** (src/group.c has its own, -DGROUP_PLANT=n: a leader that answers
** writes before they are committed, caught by the fault harness, make
** test-fault-plants; and two of snapshot install and --lost-log, make
** test-catchup-plants.)
*/
#include "internal.h"

#ifndef RAFT_PLANT
#define RAFT_PLANT 0
#endif
#define RAFT_BUG(n) (RAFT_PLANT == (n))

/* struct raft.recovering: LOST LOG's phases (0: a voter). */
#define RAFT_CATCHING 1
#define RAFT_POLLING 2

/* ------------------------------------------------------------ the trail */

/* Run k of the trail, 0 the oldest. */
static struct raft_run *raft_run_at(const struct raft *r, unsigned k) {
  return &r->trail[(r->trail_head + k) % r->c.trail_cap];
}

URSULA_PRIVATE int raft_term_at(const struct raft *r, uint64_t index,
                                uint64_t *term) {
  unsigned lo, hi;
  if (index == r->snap_index) {
    *term = r->snap_term;
    return 1;
  }
  if (index < r->snap_index || index > r->last_index) return 0;
  /* the last run starting at or before index: run lo <= index < run hi */
  lo = 0;
  hi = r->trail_n;
  while (hi - lo > 1) {
    unsigned mid = lo + (hi - lo) / 2;
    if (raft_run_at(r, mid)->index <= index)
      lo = mid;
    else
      hi = mid;
  }
  *term = raft_run_at(r, lo)->term;
  return 1;
}

static uint64_t raft_last_term(const struct raft *r) {
  uint64_t t = 0;
  raft_term_at(r, r->last_index, &t);
  return t;
}

/* Extend the log to hi with entries of term (term >= the last term).
** 0, or -1 if it needs a new run and the trail is full. */
static int raft_trail_append(struct raft *r, uint64_t hi, uint64_t term) {
  if (hi <= r->last_index) return 0;
  if (r->trail_n == 0 || raft_run_at(r, r->trail_n - 1)->term != term) {
    struct raft_run *run;
    if (r->trail_n == r->c.trail_cap) {
      r->stats.trail_full++;
      return -1;
    }
    run = raft_run_at(r, r->trail_n);
    run->index = r->last_index + 1;
    run->term = term;
    r->trail_n++;
  }
  r->last_index = hi;
  return 0;
}

/* Forget the entries from `from` on (from > snap_index). */
static void raft_trail_truncate(struct raft *r, uint64_t from) {
  while (r->trail_n > 0 && raft_run_at(r, r->trail_n - 1)->index >= from)
    r->trail_n--;
  r->last_index = from - 1;
  if (r->durable_index > r->last_index) r->durable_index = r->last_index;
  if (r->leader_match > r->last_index) r->leader_match = r->last_index;
}

/* The log now starts after entry (index, term): drop the runs before it.
** The caller made sure the log holds that entry (index <= last_index and
** its term is term). */
static void raft_trail_drop_to(struct raft *r, uint64_t index, uint64_t term) {
  while (r->trail_n > 1 && raft_run_at(r, 1)->index <= index + 1) {
    r->trail_head = (r->trail_head + 1) % r->c.trail_cap;
    r->trail_n--;
  }
  if (index == r->last_index)
    r->trail_n = 0;
  else
    raft_run_at(r, 0)->index = index + 1;
  r->snap_index = index;
  r->snap_term = term;
}

/* The log is replaced by a snapshot at (index, term): nothing after it. */
static void raft_trail_reset(struct raft *r, uint64_t index, uint64_t term) {
  r->trail_n = 0;
  r->snap_index = r->last_index = r->durable_index = index;
  r->snap_term = term;
  if (r->leader_match > index) r->leader_match = index;
}

/* --------------------------------------------------------------- output */

/* What a step may give besides AppendEntries: raft_pump() leaves this
** much room for the rest of the step. */
static size_t raft_reserve(const struct raft_config *c) {
  return 24 + 4 * RAFT_MAX_VOTERS + 2 * (size_t)c->read_cap;
}

URSULA_PRIVATE size_t raft_out_cap(const struct raft_config *c) {
  return 2 * raft_reserve(c) +
         (size_t)(RAFT_MAX_VOTERS - 1) * c->max_inflight_msgs;
}

static int raft_room(const struct raft *r, const struct raft_out *out) {
  return out->cap - out->n > raft_reserve(&r->c);
}

/* A new action at the end of out.  The reserve makes room certain. */
static struct raft_action *raft_push(struct raft_out *out, int type) {
  struct raft_action *a;
  URSULA_ASSERT(out->n < out->cap);
  a = &out->a[out->n++];
  memset(a, 0, sizeof(*a));
  a->type = type;
  return a;
}

/* SAVE_STATE if term, vote or recovering changed since the last one (or
** a failure asks for it again).  Paper Fig. 2: currentTerm and votedFor
** are persistent state, "updated on stable storage before responding to
** RPCs"; thesis §3.8. */
static void raft_persist(struct raft *r, struct raft_out *out) {
  struct raft_action *a;
  if (!r->save_again && r->term == r->saved_term && r->vote == r->saved_vote &&
      (r->recovering != 0) == (r->saved_recovering != 0))
    return;
  a = raft_push(out, RAFT_SAVE_STATE);
  a->term = r->term;
  a->vote = r->vote;
  a->commit = r->commit < r->last_index ? r->commit : r->last_index;
  a->flags = r->recovering ? 1u : 0u;
  r->saved_term = r->term;
  r->saved_vote = r->vote;
  r->saved_recovering = r->recovering != 0;
  r->save_again = 0;
}

/* A SEND of a message of type to peer `to`, in the current term, without
** the SAVE_STATE before it: only planted bug 2 calls it directly. */
static struct raft_action *raft_send_raw(struct raft *r, struct raft_out *out,
                                         int type, uint64_t to) {
  struct raft_action *a = raft_push(out, RAFT_SEND);
  a->msg.cluster_id = r->c.cluster_id;
  a->msg.from = r->c.id;
  a->msg.to = to;
  a->msg.term = r->term;
  a->msg.type = (uint8_t)type;
  return a;
}

/* Every message leaves through here (R1): the state it was sent in is
** handed to SAVE_STATE first.  The caller fills in the rest of a->msg. */
static struct raft_action *raft_send(struct raft *r, struct raft_out *out,
                                     int type, uint64_t to) {
  raft_persist(r, out);
  return raft_send_raw(r, out, type, to);
}

/* ---------------------------------------------------------------- reads */

/* Answer read rd at index (0: refused): READ_READY here, or the answer to
** the follower that forwarded it. */
static void raft_read_done(struct raft *r, struct raft_out *out,
                           const struct raft_read *rd, uint64_t index) {
  if (rd->from == r->c.id) {
    struct raft_action *a = raft_push(out, RAFT_READ_READY);
    a->ctx = rd->ctx;
    a->hi = index;
  } else {
    struct raft_action *a =
        raft_send(r, out, RAFT_MSG_READ_INDEX_RESP, rd->from);
    a->msg.ctx = rd->ctx;
    a->msg.index = index;
    if (index == 0) a->msg.flags = RAFT_F_REJECT;
  }
}

static void raft_reads_fail_all(struct raft *r, struct raft_out *out) {
  while (r->reads_n > 0) {
    raft_read_done(r, out, &r->reads[r->reads_head], 0);
    r->reads_head = (r->reads_head + 1) % r->c.read_cap;
    r->reads_n--;
  }
}

/* ------------------------------------------------------ roles and timer */

/* A fresh election timeout, drawn from [T, 2T) (paper §5.2: randomized
** timeouts, so that split votes are rare and end quickly). */
static void raft_reset_timer(struct raft *r) {
  unsigned t = r->c.election_ticks;
  r->elapsed = 0;
  r->timeout =
      RAFT_BUG(18) ? t : t + (unsigned)(r->c.env->random(r->c.env) % t);
}

/* Paper §5.1: a server that sees a higher term takes it and becomes a
** follower (with no vote in it); a leader or candidate that steps down
** becomes a follower.  A leader's pending reads are refused. */
static void raft_become_follower(struct raft *r, struct raft_out *out,
                                 uint64_t term, uint64_t leader) {
  if (r->role == RAFT_LEADER) {
    raft_reads_fail_all(r, out);
    r->transfer_to = 0;
  }
  if (term > r->term) {
    r->term = term;
    r->vote = 0;
    r->leader_match = r->leader_commit = 0;
  }
  r->role = RAFT_FOLLOWER;
  r->leader = leader;
  raft_reset_timer(r);
}

/* A message from the leader of the current term: follow it; its lease
** starts again (thesis §6.2). */
static void raft_follow(struct raft *r, struct raft_out *out, uint64_t leader) {
  if (r->role != RAFT_FOLLOWER || r->leader != leader)
    raft_become_follower(r, out, r->term, leader);
  r->elapsed = 0;
}

/* Whether the leader this node follows was heard within the minimum
** election timeout (for a leader: always).  Thesis §6.2 and §9.6: while
** it holds, (pre-)votes of a higher term are ignored, so a server that
** was cut off cannot depose a leader that a quorum still hears. */
static int raft_in_lease(const struct raft *r) {
  return r->leader != 0 && r->elapsed < r->c.election_ticks;
}

/* ---------------------------------------------------------------- peers */

static struct raft_peer *raft_peer(struct raft *r, uint64_t id) {
  unsigned i;
  for (i = 0; i < r->n_peers; i++)
    if (r->peers[i].id == id) return &r->peers[i];
  return NULL;
}

static void raft_infl_reset(struct raft_peer *p) {
  p->infl_head = p->infl_n = 0;
  p->infl_total = 0;
}

/* The window (etcd-io/raft tracker/inflights.go has the same idea): at
** most max_inflight_msgs AppendEntries and max_inflight_bytes of entries
** in flight to one follower. */
static int raft_infl_full(const struct raft *r, const struct raft_peer *p) {
  unsigned cap = RAFT_BUG(16) ? 1 : r->c.max_inflight_msgs;
  if (p->infl_n >= cap) return 1;
  return !RAFT_BUG(25) && r->c.max_inflight_bytes != 0 &&
         p->infl_total >= r->c.max_inflight_bytes;
}

static void raft_infl_add(const struct raft *r, struct raft_peer *p,
                          uint64_t last, uint64_t bytes) {
  unsigned k = (p->infl_head + p->infl_n) % r->c.max_inflight_msgs;
  p->infl_last[k] = last;
  p->infl_bytes[k] = bytes;
  p->infl_n++;
  p->infl_total += bytes;
}

/* The messages whose entries are all <= index were received. */
static void raft_infl_free_to(const struct raft *r, struct raft_peer *p,
                              uint64_t index) {
  while (p->infl_n > 0 && p->infl_last[p->infl_head] <= index) {
    p->infl_total -= p->infl_bytes[p->infl_head];
    p->infl_head = (p->infl_head + 1) % r->c.max_inflight_msgs;
    p->infl_n--;
  }
}

/* PROBE: one message at a time, from next, until one is accepted
** (etcd-io/raft tracker/progress.go names these states too). */
static void raft_peer_probe(const struct raft *r, struct raft_peer *p,
                            uint64_t next) {
  if (next <= p->match) next = p->match + 1;
  if (next > r->last_index + 1) next = r->last_index + 1;
  p->state = RAFT_PROBE;
  p->next = next;
  p->paused = 0;
  p->stalled = 0;
  raft_infl_reset(p);
}

/* REPLICATE: stream from match + 1, many messages in flight. */
static void raft_peer_replicate(struct raft_peer *p) {
  p->state = RAFT_REPLICATE;
  p->next = p->match + 1;
  p->stalled = 0;
  raft_infl_reset(p);
}

static uint64_t raft_bytes(const struct raft *r, uint64_t index) {
  return r->c.entry_bytes ? r->c.entry_bytes(r->c.arg, index) : 0;
}

/* ---------------------------------------------------------- replication */

/* Send peer p what follows p->next - 1 (paper §5.3, Fig. 2
** AppendEntries): at most max_msg_entries entries, max_msg_bytes bytes
** (at least one entry) and RAFT_MSG_RUNS term runs.  When the entry
** before p->next was compacted, SEND_SNAPSHOT instead (paper §7).
** Returns 1 if something was given. */
static int raft_send_append(struct raft *r, struct raft_out *out,
                            struct raft_peer *p) {
  uint64_t prev, prev_term, i, bytes = 0;
  uint32_t n = 0;
  struct raft_action *a;
  struct raft_msg *m;
  if (p->state == RAFT_SNAPSHOTTING) return 0;
  if (p->state == RAFT_PROBE && p->paused) return 0;
  if (p->next > r->last_index + 1) p->next = r->last_index + 1;
  if (p->state == RAFT_REPLICATE && p->next > r->last_index) return 0;
  prev = p->next - 1;
  if (RAFT_BUG(19) && prev < r->snap_index) prev = r->snap_index;
  if (!raft_term_at(r, prev, &prev_term)) {
    raft_persist(r, out);
    a = raft_push(out, RAFT_SEND_SNAPSHOT);
    a->peer = p->id;
    a->hi = r->snap_index;
    a->term = r->snap_term;
    p->state = RAFT_SNAPSHOTTING;
    p->snap_index = r->snap_index;
    raft_infl_reset(p);
    return 1;
  }
  a = raft_send(r, out, RAFT_MSG_APPEND, p->id);
  m = &a->msg;
  m->index = prev;
  m->log_term = prev_term;
  m->commit = r->commit;
  for (i = prev + 1; i <= r->last_index && n < r->c.max_msg_entries; i++) {
    uint64_t b = raft_bytes(r, i), t = 0;
    if (n > 0 && r->c.max_msg_bytes != 0 && bytes + b > r->c.max_msg_bytes)
      break;
    raft_term_at(r, i, &t);
    if (m->n_runs == 0 || m->runs[m->n_runs - 1].term != t) {
      if (m->n_runs == RAFT_MSG_RUNS) break;
      m->runs[m->n_runs].index = i;
      m->runs[m->n_runs].term = t;
      m->n_runs++;
    }
    bytes += b;
    n++;
  }
  m->n = n;
  if (p->state == RAFT_REPLICATE) {
    raft_infl_add(r, p, prev + n, bytes);
    p->next = prev + n + 1;
  } else {
    p->paused = 1; /* PROBE: wait for the answer (or a heartbeat's) */
  }
  return 1;
}

/* Send p all its window allows: in REPLICATE as many messages as fit,
** without waiting for answers (never stop-and-wait); in PROBE one. */
static void raft_pump(struct raft *r, struct raft_out *out,
                      struct raft_peer *p) {
  if (p->state == RAFT_REPLICATE) {
    while (p->next <= r->last_index && !raft_infl_full(r, p) &&
           raft_room(r, out))
      if (!raft_send_append(r, out, p)) break;
  } else if (raft_room(r, out)) {
    raft_send_append(r, out, p);
  }
}

static void raft_pump_all(struct raft *r, struct raft_out *out) {
  unsigned i;
  for (i = 0; i < r->n_peers; i++) raft_pump(r, out, &r->peers[i]);
}

/* A heartbeat to p (paper §5.2: empty AppendEntries keep the leader's
** authority; thesis §6.4: they also confirm it for reads, ctx carrying
** the read sequence).  It names an entry p holds -- the smaller of its
** match and the commit -- with its term, and says that much is
** committed: a follower only learns a commit index within the prefix it
** shares with the leader (etcd-io/etcd#3519). */
static void raft_send_heartbeat(struct raft *r, struct raft_out *out,
                                struct raft_peer *p) {
  uint64_t c = p->match < r->commit ? p->match : r->commit, t = 0;
  struct raft_action *a;
  if (!raft_term_at(r, c, &t)) c = t = 0;
  a = raft_send(r, out, RAFT_MSG_HEARTBEAT, p->id);
  a->msg.index = c;
  a->msg.log_term = t;
  a->msg.commit = RAFT_BUG(12) ? r->commit : c;
  if (c > p->told) p->told = c;
  a->msg.last = r->commit; /* for a node that lost its log */
  a->msg.ctx = r->read_seq;
}

static void raft_bcast_heartbeat(struct raft *r, struct raft_out *out) {
  unsigned i;
  for (i = 0; i < r->n_peers; i++) raft_send_heartbeat(r, out, &r->peers[i]);
}

/* A read is ready once a quorum answered a heartbeat sent after it was
** registered (thesis §6.4, step 3): reads leave in order. */
static void raft_reads_check(struct raft *r, struct raft_out *out) {
  while (r->reads_n > 0) {
    struct raft_read *rd = &r->reads[r->reads_head];
    unsigned i, n = 1;
    if (rd->seq == 0) break;
    for (i = 0; i < r->n_peers; i++)
      if (r->peers[i].read_ack >= rd->seq) n++;
    if (n < r->quorum) break;
    raft_read_done(r, out, rd, rd->index);
    r->reads_head = (r->reads_head + 1) % r->c.read_cap;
    r->reads_n--;
  }
}

/* Thesis §6.4, steps 1-2: once the leader has committed an entry of its
** term, a waiting read records the commit index as its read index, and a
** round of heartbeats confirms that this node is still the leader. */
static void raft_reads_start(struct raft *r, struct raft_out *out) {
  unsigned i;
  int any = 0;
  if (!r->term_committed) return;
  for (i = 0; i < r->reads_n; i++) {
    struct raft_read *rd = &r->reads[(r->reads_head + i) % r->c.read_cap];
    if (rd->seq != 0) continue;
    rd->seq = r->read_seq + 1;
    rd->index = r->commit;
    any = 1;
  }
  if (!any) return;
  r->read_seq++;
  raft_bcast_heartbeat(r, out);
  raft_reads_check(r, out);
}

/* Register a read barrier at the leader, for ctx of node `from`. */
static void raft_read_add(struct raft *r, struct raft_out *out, uint64_t ctx,
                          uint64_t from) {
  struct raft_read *rd;
  if (RAFT_BUG(7) || r->reads_n == r->c.read_cap) {
    struct raft_read now;
    now.ctx = ctx;
    now.from = from;
    now.index = now.seq = 0;
    raft_read_done(r, out, &now, RAFT_BUG(7) ? r->commit : 0);
    return;
  }
  rd = &r->reads[(r->reads_head + r->reads_n) % r->c.read_cap];
  rd->ctx = ctx;
  rd->from = from;
  rd->index = rd->seq = 0;
  r->reads_n++;
  raft_reads_start(r, out);
}

/* Paper §5.3 and §5.4.2, Fig. 8 (thesis §3.6.2): an entry is committed
** once a quorum holds it (match >= N) and it is of the leader's term;
** entries before it are committed with it.  The leader counts itself
** through its durable index, and only once its own vote for this term is
** durable (thesis §10.2.1: the leader writes in parallel, and counts its
** own write only when it is done).  Returns 1 if commit moved. */
static int raft_maybe_commit(struct raft *r, struct raft_out *out) {
  uint64_t m[RAFT_MAX_VOTERS], t = 0, n_idx;
  unsigned n = 0, i, j;
  struct raft_action *a;
  m[n++] = RAFT_BUG(10)                 ? r->last_index
           : r->durable_term == r->term ? r->durable_index
                                        : 0;
  for (i = 0; i < r->n_peers; i++) m[n++] = r->peers[i].match;
  for (i = 1; i < n; i++) /* descending */
    for (j = i; j > 0 && m[j] > m[j - 1]; j--) {
      uint64_t x = m[j];
      m[j] = m[j - 1];
      m[j - 1] = x;
    }
  n_idx = m[r->quorum - 1];
  if (n_idx <= r->commit || !raft_term_at(r, n_idx, &t)) return 0;
  if (t != r->term && !RAFT_BUG(1)) return 0;
  r->commit = n_idx;
  a = raft_push(out, RAFT_COMMIT);
  a->hi = n_idx;
  return 1;
}

/* After the leader's commit moved: the first commit of its term frees the
** reads that waited for it. */
static void raft_after_commit(struct raft *r, struct raft_out *out) {
  uint64_t t = 0;
  size_t k, before = out->n;
  int told = 0;
  if (!r->term_committed && raft_term_at(r, r->commit, &t) && t == r->term) {
    r->term_committed = 1;
    raft_reads_start(r, out); /* (a round of heartbeats, if reads wait) */
  }
  for (k = before; k < out->n; k++)
    told |= out->a[k].type == RAFT_SEND &&
            out->a[k].msg.type == RAFT_MSG_HEARTBEAT;
  /* the followers learn the new commit index now, not at the next
  ** heartbeat tick: they apply, and answer their reads and the writes
  ** they forwarded, a round trip after the leader (etcd: bcastAppend
  ** after maybeCommit) */
  if (!told && r->c.commit_notify && !RAFT_BUG(28))
    raft_bcast_heartbeat(r, out);
}

/* ------------------------------------------------------------- election */

static void raft_clear_votes(struct raft *r) {
  unsigned i;
  for (i = 0; i < r->n_peers; i++) r->peers[i].vote = 0;
}

/* Votes counted as want (1 granted, -1 refused); a candidate grants its
** own. */
static unsigned raft_votes(const struct raft *r, int want) {
  unsigned i, n = want > 0 ? 1 : 0;
  for (i = 0; i < r->n_peers; i++)
    if (r->peers[i].vote == want) n++;
  return n;
}

/* Paper §5.2: a candidate that wins a quorum becomes leader.  Every
** follower starts in PROBE from the end of the leader's log (paper §5.3:
** nextIndex = last log index + 1).  It appends a no-op of its term (paper
** §8, thesis §3.6.2 and §6.4): entries of earlier terms commit only with
** an entry of the leader's term, and reads wait for one. */
static void raft_become_leader(struct raft *r, struct raft_out *out) {
  unsigned i;
  r->role = RAFT_LEADER;
  r->leader = r->c.id;
  r->elapsed = r->hb_elapsed = 0;
  r->term_committed = 0;
  r->transfer_to = 0;
  for (i = 0; i < r->n_peers; i++) {
    struct raft_peer *p = &r->peers[i];
    p->match = 0;
    p->active = p->moved = 0;
    p->read_ack = 0;
    p->told = 0;
    raft_peer_probe(r, p, r->last_index + 1);
  }
  if (!RAFT_BUG(5) && raft_trail_append(r, r->last_index + 1, r->term) == 0) {
    struct raft_action *a = raft_push(out, RAFT_APPEND);
    a->flags = RAFT_APPEND_NOOP;
    a->lo = a->hi = r->last_index;
    a->msg.n_runs = 1;
    a->msg.runs[0].index = a->lo;
    a->msg.runs[0].term = r->term;
  }
  raft_pump_all(r, out);
  if (raft_maybe_commit(r, out)) raft_after_commit(r, out);
}

/* Paper §5.2: a candidate increments its term, votes for itself and asks
** every peer for its vote, with its last entry for the election
** restriction (§5.4.1).  transfer: after TimeoutNow (thesis §3.10), the
** votes ignore the leases. */
static void raft_campaign(struct raft *r, struct raft_out *out, int transfer) {
  unsigned i;
  uint64_t lt = raft_last_term(r);
  r->role = RAFT_CANDIDATE;
  r->term++;
  r->vote = r->c.id;
  r->leader = 0;
  r->leader_match = r->leader_commit = 0;
  raft_reset_timer(r);
  raft_clear_votes(r);
  if (raft_votes(r, 1) >= r->quorum) {
    raft_persist(r, out);
    raft_become_leader(r, out);
    return;
  }
  for (i = 0; i < r->n_peers; i++) {
    struct raft_action *a = raft_send(r, out, RAFT_MSG_VOTE, r->peers[i].id);
    a->msg.index = r->last_index;
    a->msg.log_term = lt;
    if (transfer) a->msg.flags = RAFT_F_TRANSFER;
  }
}

/* Thesis §9.6: before a real election, poll the peers at term + 1 without
** changing the term; only a server that could win (a quorum grants)
** disrupts the cluster with a new term. */
static void raft_precampaign(struct raft *r, struct raft_out *out) {
  unsigned i;
  uint64_t lt = raft_last_term(r);
  if (RAFT_BUG(23)) {
    raft_campaign(r, out, 0);
    return;
  }
  r->role = RAFT_PRECANDIDATE;
  r->leader = 0;
  raft_reset_timer(r);
  raft_clear_votes(r);
  if (raft_votes(r, 1) >= r->quorum) {
    raft_campaign(r, out, 0);
    return;
  }
  for (i = 0; i < r->n_peers; i++) {
    struct raft_action *a = raft_send(r, out, RAFT_MSG_PREVOTE, r->peers[i].id);
    a->msg.term = r->term + 1;
    a->msg.index = r->last_index;
    a->msg.log_term = lt;
  }
}

/* Whether this node may stand for election: its storage works, it is
** not stopping (LEAVING), it has not lost its log (LOST LOG), and its
** trail has room for the run of the no-op it would append. */
static int raft_can_campaign(const struct raft *r) {
  if (r->storage_failed) return 0;
  if (r->leaving && !RAFT_BUG(29)) return 0; /* LEAVING */
  if (r->recovering && !RAFT_BUG(6)) return 0;
  return r->trail_n < r->c.trail_cap;
}

/* A (pre-)vote request (the term checks are done: m->term >= r->term).
** Paper §5.2 and Fig. 2, RequestVote receiver: grant if this node has not
** voted for another in the term and the candidate's log is at least as
** up-to-date as its own (§5.4.1: last term, then last index).  A
** pre-vote of a higher term is granted on the log alone (thesis §9.6).
** A vote is saved before the answer leaves (R1, through raft_send). */
static void raft_recv_vote(struct raft *r, struct raft_out *out,
                           const struct raft_msg *m) {
  int pre = m->type == RAFT_MSG_PREVOTE;
  int type = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
  uint64_t lt = raft_last_term(r);
  int up = m->log_term > lt || (m->log_term == lt && m->index >= r->last_index);
  int can = r->vote == m->from || (r->vote == 0 && r->leader == 0) ||
            (pre && m->term > r->term);
  struct raft_action *a;
  if (r->recovering && !RAFT_BUG(6)) can = 0; /* LOST LOG */
  if (!can || !up) {
    a = raft_send(r, out, type, m->from);
    a->msg.flags = RAFT_F_REJECT;
    return;
  }
  if (pre) {
    a = raft_send(r, out, type, m->from);
  } else if (RAFT_BUG(2)) {
    a = raft_send_raw(r, out, type, m->from);
    r->vote = m->from;
    raft_reset_timer(r);
  } else {
    r->vote = m->from;
    raft_reset_timer(r); /* paper §5.2: granting a vote resets the timer */
    a = raft_send(r, out, type, m->from);
  }
  a->msg.term = m->term;
}

/* A (pre-)vote answer: a quorum of grants makes a pre-candidate a
** candidate and a candidate the leader; a quorum of refusals ends the
** attempt. */
static void raft_recv_vote_resp(struct raft *r, struct raft_out *out,
                                const struct raft_msg *m) {
  int pre = m->type == RAFT_MSG_PREVOTE_RESP;
  int reject = (m->flags & RAFT_F_REJECT) != 0;
  struct raft_peer *p = raft_peer(r, m->from);
  if (r->role != (pre ? RAFT_PRECANDIDATE : RAFT_CANDIDATE) ||
      (pre && !reject && m->term != r->term + 1)) {
    r->stats.stale++;
    return;
  }
  p->vote = reject ? -1 : 1;
  if (raft_votes(r, 1) >= r->quorum) {
    if (pre)
      raft_campaign(r, out, 0);
    else
      raft_become_leader(r, out);
  } else if (raft_votes(r, -1) >= r->quorum) {
    raft_become_follower(r, out, r->term, 0);
  }
}

/* ------------------------------------------------------------ follower */

/* The term of entry i of an AppendEntries, from its runs. */
static uint64_t raft_msg_term(const struct raft_msg *m, uint64_t i) {
  unsigned k = m->n_runs;
  while (k > 1 && m->runs[k - 1].index > i) k--;
  return m->runs[k - 1].term;
}

/* Whether an AppendEntries is well formed: runs cover (index, index + n]
** in ascending index and term, none before log_term or after term. */
static int raft_append_ok(const struct raft_msg *m) {
  unsigned k;
  if (m->index + m->n < m->index) return 0;
  if (m->n == 0) return m->n_runs == 0;
  if (m->n_runs == 0 || m->n_runs > RAFT_MSG_RUNS) return 0;
  if (m->runs[0].index != m->index + 1 || m->runs[0].term < m->log_term)
    return 0;
  for (k = 1; k < m->n_runs; k++)
    if (m->runs[k].index <= m->runs[k - 1].index ||
        m->runs[k].index > m->index + m->n ||
        m->runs[k].term <= m->runs[k - 1].term)
      return 0;
  return m->runs[m->n_runs - 1].term <= m->term;
}

/* The last index j <= index whose term is <= term, and that term (thesis
** §3.5, the paper's §5.3 optimization, etcd-io/raft findConflictByTerm):
** the follower's hint after a mismatch at index, and the leader's next
** probe for such a hint.  Walks one term run per step, so the leader
** skips a whole term per round trip.  Stops at the snapshot. */
static uint64_t raft_conflict_by_term(const struct raft *r, uint64_t index,
                                      uint64_t term, uint64_t *jt) {
  unsigned k;
  if (index > r->last_index) index = r->last_index;
  if (index <= r->snap_index || r->trail_n == 0) {
    *jt = r->snap_term;
    return r->snap_index;
  }
  k = r->trail_n;
  while (k > 0 && raft_run_at(r, k - 1)->index > index) k--;
  /* run k - 1 holds index */
  while (k > 0) {
    const struct raft_run *run = raft_run_at(r, k - 1);
    if (run->term <= term) {
      *jt = run->term;
      return index;
    }
    index = run->index - 1;
    k--;
  }
  *jt = r->snap_term;
  return r->snap_index;
}

/* The follower's answer that it holds entries <= index as the leader has
** them (the AppendEntries' prev + n, never its own last index: those
** after may be another leader's; paper Fig. 2).  Held by the driver until
** entry index is durable here and dropped if it is truncated (R2): an
** acknowledgment is of durable entries only (thesis §3.8; raft.md §8
** bug 3, yugabyte-db#32875). */
static void raft_ack(struct raft *r, struct raft_out *out, uint64_t to,
                     uint64_t index) {
  uint64_t t = 0;
  struct raft_action *a;
  if (RAFT_BUG(8) || index > r->last_index) index = r->last_index;
  a = raft_send(r, out, RAFT_MSG_APPEND_RESP, to);
  a->msg.index = index;
  a->msg.last = r->last_index;
  if (r->recovering) a->msg.flags = RAFT_F_RECOVERING;
  if (index > r->snap_index && !RAFT_BUG(3) && raft_term_at(r, index, &t)) {
    a->after_index = index;
    a->after_term = t;
  }
}

/* LOST LOG: a recovering follower is caught up once it holds, durably,
** the leader's own commit index (not the smaller one the leader lets it
** commit), and the entry there is of the leader's term.  It then
** abstains in this term (a vote for itself) and votes again from the
** next. */
static void raft_check_caught_up(struct raft *r) {
  uint64_t t, c = r->leader_commit;
  if (r->recovering != RAFT_CATCHING || r->role != RAFT_FOLLOWER ||
      r->leader == 0)
    return;
  if (c == 0 || r->durable_index < c || r->commit < c) return;
  if (!raft_term_at(r, c, &t) || t != r->term) return;
  r->recovering = 0;
  r->vote = r->c.id;
}

/* What the leader says its commit index is (an AppendEntries' commit, a
** heartbeat's last). */
static void raft_heard_commit(struct raft *r, uint64_t c) {
  if (c > r->leader_commit) r->leader_commit = c;
}

/* The follower's commit moves to c (if c is beyond it). */
static void raft_commit_to(struct raft *r, struct raft_out *out, uint64_t c) {
  struct raft_action *a;
  if (c <= r->commit) return;
  r->commit = c;
  a = raft_push(out, RAFT_COMMIT);
  a->hi = c;
}

/* Append the entries (from, hi] of m to the trail, run by run, and give
** APPEND for them.  Returns the last index appended (from - 1 if none
** fit: the trail is full). */
static uint64_t raft_append_from(struct raft *r, struct raft_out *out,
                                 const struct raft_msg *m, uint64_t from,
                                 uint64_t hi) {
  struct raft_action *a = raft_push(out, RAFT_APPEND);
  unsigned k;
  a->flags = RAFT_APPEND_MSG;
  a->lo = from;
  for (k = 0; k < m->n_runs; k++) {
    uint64_t lo = m->runs[k].index, end = hi;
    if (k + 1 < m->n_runs) end = m->runs[k + 1].index - 1;
    if (end < from) continue;
    if (lo < from) lo = from;
    if (raft_trail_append(r, end, m->runs[k].term) != 0) break;
    a->msg.runs[a->msg.n_runs].index = lo;
    a->msg.runs[a->msg.n_runs].term = m->runs[k].term;
    a->msg.n_runs++;
  }
  a->hi = r->last_index;
  if (a->hi < from) out->n--; /* nothing fit */
  return r->last_index;
}

/* AppendEntries (paper §5.3, Fig. 2 receiver rules 1-5).  The prev entry
** must match, else a refusal with a hint (thesis §3.5).  An existing
** entry is removed only if it conflicts with one of the message (same
** index, other term): a stale or duplicated message, whose entries this
** node has already, shortens nothing.  Commit moves to min(leader's
** commit, prev + n). */
static void raft_recv_append(struct raft *r, struct raft_out *out,
                             const struct raft_msg *m) {
  uint64_t prev = m->index, hi = m->index + m->n, t = 0, i, from = 0, end;
  raft_follow(r, out, m->from);
  if (!raft_append_ok(m)) {
    r->stats.stale++;
    return;
  }
  if (prev < r->snap_index) { /* the snapshot holds the first entries */
    if (hi <= r->snap_index) {
      raft_ack(r, out, m->from, hi);
      return;
    }
    if (raft_msg_term(m, r->snap_index) != r->snap_term) {
      r->stats.conflict_committed++;
      return;
    }
    prev = r->snap_index;
  }
  if (!raft_term_at(r, prev, &t) ||
      t != (prev == m->index ? m->log_term : raft_msg_term(m, prev))) {
    struct raft_action *a;
    uint64_t jt = 0, j;
    if (RAFT_BUG(17)) {
      j = prev - 1 < r->last_index ? prev - 1 : r->last_index;
      raft_term_at(r, j, &jt);
    } else {
      j = raft_conflict_by_term(r, prev, m->log_term, &jt);
    }
    a = raft_send(r, out, RAFT_MSG_APPEND_RESP, m->from);
    a->msg.flags = RAFT_F_REJECT;
    if (r->recovering) a->msg.flags |= RAFT_F_RECOVERING;
    a->msg.index = m->index;
    a->msg.hint = j;
    a->msg.log_term = jt;
    a->msg.last = r->last_index;
    return;
  }
  for (i = prev + 1; i <= hi; i++) {
    if (i > r->last_index) {
      from = i;
      break;
    }
    raft_term_at(r, i, &t);
    if (t != raft_msg_term(m, i)) {
      struct raft_action *a;
      if (i <= r->commit) { /* never: a committed entry is in every log */
        r->stats.conflict_committed++;
        return;
      }
      raft_trail_truncate(r, i);
      a = raft_push(out, RAFT_TRUNCATE);
      a->lo = i;
      from = i;
      break;
    }
  }
  if (RAFT_BUG(4) && from == 0 && hi < r->last_index && hi >= r->commit) {
    struct raft_action *a = raft_push(out, RAFT_TRUNCATE);
    raft_trail_truncate(r, hi + 1);
    a->lo = hi + 1;
  }
  end = hi;
  if (from != 0) end = raft_append_from(r, out, m, from, hi);
  if (end > r->leader_match) r->leader_match = end;
  raft_heard_commit(r, m->commit);
  raft_commit_to(r, out, m->commit < end ? m->commit : end);
  raft_check_caught_up(r);
  raft_ack(r, out, m->from, end);
}

/* A heartbeat: follow the leader; if this node's entry at m->index has
** m->log_term, its log matches the leader's up to there (Log Matching,
** paper §5.3) and the commit may move up to it. */
static void raft_recv_heartbeat(struct raft *r, struct raft_out *out,
                                const struct raft_msg *m) {
  uint64_t t;
  struct raft_action *a;
  raft_follow(r, out, m->from);
  raft_heard_commit(r, m->last);
  if (RAFT_BUG(12)) {
    raft_commit_to(r, out,
                   m->commit < r->last_index ? m->commit : r->last_index);
  } else if (raft_term_at(r, m->index, &t) && t == m->log_term) {
    if (m->index > r->leader_match) r->leader_match = m->index;
    raft_commit_to(r, out, m->commit < m->index ? m->commit : m->index);
  }
  raft_check_caught_up(r);
  a = raft_send(r, out, RAFT_MSG_HEARTBEAT_RESP, m->from);
  a->msg.ctx = m->ctx;
  a->msg.last = r->last_index;
  if (r->recovering) a->msg.flags = RAFT_F_RECOVERING;
}

/* The header of the leader's snapshot stream (paper §7, InstallSnapshot):
** install it unless this node already holds the entries, committed (its
** commit index may be past its log's end after a failed write). */
static void raft_recv_snapshot(struct raft *r, struct raft_out *out,
                               const struct raft_msg *m) {
  struct raft_action *a;
  raft_follow(r, out, m->from);
  if (m->index <= r->commit && m->index <= r->last_index) {
    raft_ack(r, out, m->from,
             r->commit < r->last_index ? r->commit : r->last_index);
    return;
  }
  a = raft_push(out, RAFT_INSTALL_SNAPSHOT);
  a->peer = m->from;
  a->hi = m->index;
  a->term = m->log_term;
}

/* Thesis §3.10: the leader asks this node to start an election now: no
** pre-vote, and its vote requests ignore the leases. */
static void raft_recv_timeout_now(struct raft *r, struct raft_out *out) {
  if (!raft_can_campaign(r)) return;
  if (RAFT_BUG(21))
    raft_precampaign(r, out);
  else
    raft_campaign(r, out, 1);
}

/* -------------------------------------------------------------- leader */

/* A follower whose answers say RECOVERING and whose last index is below
** the match the leader holds lost its log (LOST LOG): nothing it had is
** counted any more; probe it from its last index. */
static void raft_peer_lost_log(struct raft *r, struct raft_peer *p,
                               const struct raft_msg *m) {
  if (!(m->flags & RAFT_F_RECOVERING) || m->last >= p->match) return;
  p->match = 0;
  raft_peer_probe(r, p, m->last + 1);
}

/* Thesis §3.10: the target holds the whole log: let it campaign now. */
static void raft_maybe_timeout_now(struct raft *r, struct raft_out *out,
                                   const struct raft_peer *p) {
  if (r->transfer_to == p->id && p->match == r->last_index)
    raft_send(r, out, RAFT_MSG_TIMEOUT_NOW, p->id);
}

/* An answer to AppendEntries.  A refusal moves next back by the hint
** (one round trip per term); one that no longer applies (an older
** message's) is ignored.  An acknowledgment moves match (never back: an
** older one changes nothing), frees the window, may commit, and sends
** more. */
static void raft_recv_append_resp(struct raft *r, struct raft_out *out,
                                  const struct raft_msg *m) {
  struct raft_peer *p = raft_peer(r, m->from);
  if (r->role != RAFT_LEADER) return;
  p->active = 1;
  raft_peer_lost_log(r, p, m);
  if (m->flags & RAFT_F_REJECT) {
    uint64_t next, jt;
    if (p->state == RAFT_SNAPSHOTTING ||
        (p->state == RAFT_REPLICATE ? m->index <= p->match
                                    : m->index != p->next - 1)) {
      r->stats.stale++;
      return;
    }
    next = RAFT_BUG(17)
               ? m->hint + 1
               : raft_conflict_by_term(r, m->hint, m->log_term, &jt) + 1;
    if (next > m->index) next = m->index;
    raft_peer_probe(r, p, next);
    raft_send_append(r, out, p);
    return;
  }
  if (m->index > r->last_index) {
    r->stats.stale++;
    return;
  }
  if (m->index > p->match) {
    p->match = m->index;
    p->moved = 1;
  }
  if (p->next <= p->match) p->next = p->match + 1;
  if (p->state == RAFT_PROBE && p->match + 1 >= p->next)
    raft_peer_replicate(p);
  else if (p->state == RAFT_SNAPSHOTTING && p->match >= p->snap_index)
    raft_peer_replicate(p);
  else if (p->state == RAFT_REPLICATE)
    raft_infl_free_to(r, p, p->match);
  if (raft_maybe_commit(r, out)) raft_after_commit(r, out);
  /* a follower that acknowledged entries committed already (by the
  ** others) learns so now, not at the next tick */
  if ((p->match < r->commit ? p->match : r->commit) > p->told &&
      r->c.commit_notify && !RAFT_BUG(28))
    raft_send_heartbeat(r, out, p);
  raft_maybe_timeout_now(r, out, p);
  raft_pump(r, out, p);
}

/* An answer to a heartbeat: the peer is alive (check-quorum), confirms
** reads up to ctx, and a probe may go out again. */
static void raft_recv_heartbeat_resp(struct raft *r, struct raft_out *out,
                                     const struct raft_msg *m) {
  struct raft_peer *p = raft_peer(r, m->from);
  if (r->role != RAFT_LEADER) return;
  p->active = 1;
  raft_peer_lost_log(r, p, m);
  if (m->ctx > p->read_ack) {
    p->read_ack = m->ctx;
    raft_reads_check(r, out);
  }
  if (p->state == RAFT_PROBE) p->paused = 0;
  if (p->match < r->last_index) raft_pump(r, out, p);
}

/* READ_INDEX forwarded by a follower (thesis §6.4: a follower asks the
** leader for the read index), and its answer. */
static void raft_recv_read_index(struct raft *r, struct raft_out *out,
                                 const struct raft_msg *m) {
  if (r->role == RAFT_LEADER) {
    raft_read_add(r, out, m->ctx, m->from);
  } else {
    struct raft_action *a =
        raft_send(r, out, RAFT_MSG_READ_INDEX_RESP, m->from);
    a->msg.ctx = m->ctx;
    a->msg.flags = RAFT_F_REJECT;
  }
}

static void raft_recv_read_index_resp(struct raft_out *out,
                                      const struct raft_msg *m) {
  struct raft_action *a = raft_push(out, RAFT_READ_READY);
  a->ctx = m->ctx;
  a->hi = (m->flags & RAFT_F_REJECT) ? 0 : m->index;
}

/* LOST LOG, POLLING: a voter's answer to the poll: its term. */
static void raft_recv_poll(struct raft *r, const struct raft_msg *m) {
  struct raft_peer *p = raft_peer(r, m->from);
  if (m->ctx != r->poll_nonce) { /* an earlier start's poll */
    r->stats.stale++;
    return;
  }
  p->vote = 1; /* answered */
  if (m->term > r->poll_term) r->poll_term = m->term;
}

/* LOST LOG, POLLING, every tick: ask the voters that have not answered,
** each heartbeat interval; once every other voter answered (planted bug
** 27: a majority of the cluster not counting this node, after 3T ticks),
** take the highest term heard (and abstain in it), and catch up. */
static void raft_poll(struct raft *r, struct raft_out *out) {
  unsigned i, answered = 0;
  int done;
  r->elapsed++;
  for (i = 0; i < r->n_peers; i++)
    if (r->peers[i].vote == 1) answered++;
  done = RAFT_BUG(27) ? r->elapsed >= 3 * r->c.election_ticks &&
                            answered >= r->quorum
                      : answered == r->n_peers;
  if (done) {
    if (r->poll_term > r->term) {
      r->term = r->poll_term;
      r->vote = r->c.id;
    } else if (r->vote == 0) {
      r->vote = r->c.id;
    }
    r->recovering = RAFT_CATCHING;
    raft_clear_votes(r);
    raft_reset_timer(r);
    return;
  }
  if (r->elapsed % r->c.heartbeat_ticks != 0) return;
  for (i = 0; i < r->n_peers; i++) {
    struct raft_action *a;
    if (r->peers[i].vote == 1) continue;
    a = raft_send(r, out, RAFT_MSG_PREVOTE, r->peers[i].id);
    a->msg.flags = RAFT_F_RECOVERING;
    a->msg.ctx = r->poll_nonce;
  }
}

/* ------------------------------------------------------------- messages */

/* Static membership: the message is of this cluster, to this node, from
** another voter. */
static int raft_from_member(struct raft *r, const struct raft_msg *m) {
  return m->cluster_id == r->c.cluster_id && m->to == r->c.id &&
         m->from != r->c.id && raft_peer(r, m->from) != NULL &&
         m->type >= RAFT_MSG_APPEND && m->type <= RAFT_MSG_READ_INDEX_RESP;
}

/* A message from a peer.  Paper §5.1: a higher term makes this node a
** follower in it -- except a (pre-)vote while the lease holds (thesis
** §6.2, §9.6), a pre-vote (which changes no term) and a granted pre-vote
** answer (whose term is the one the pre-candidate would take).  A lower
** term is stale, but a stale leader's AppendEntries or heartbeat, and a
** stale pre-vote, are answered with this node's term: the sender learns
** it and can go on (a deposed leader steps down; a pre-candidate whose
** term fell behind catches up: etcd-io/etcd#8243, #8501). */
static void raft_recv(struct raft *r, struct raft_out *out,
                      const struct raft_msg *m) {
  if (!RAFT_BUG(22) && !raft_from_member(r, m)) {
    r->stats.foreign++;
    return;
  }
  if (raft_peer(r, m->from) == NULL) { /* only with planted bug 22 */
    r->stats.foreign++;
    return;
  }
  if (m->type != RAFT_MSG_SNAPSHOT) { /* LEAVING (the header is the driver's) */
    struct raft_peer *p = raft_peer(r, m->from);
    if (m->flags & RAFT_F_LEAVING) {
      p->leaving = 1;
      if (r->transfer_to == m->from) r->transfer_to = 0; /* it would not */
    } else if (!RAFT_BUG(30)) {
      p->leaving = 0;
    }
  }
  if (r->storage_failed) { /* R5: neither vote nor ack */
    r->stats.refused++;
    return;
  }
  if (m->type == RAFT_MSG_PREVOTE && (m->flags & RAFT_F_RECOVERING)) {
    struct raft_action *a = raft_send(r, out, RAFT_MSG_PREVOTE_RESP, m->from);
    a->msg.flags = RAFT_F_REJECT | RAFT_F_RECOVERING; /* LOST LOG's poll */
    a->msg.ctx = m->ctx;
    return;
  }
  if (r->recovering == RAFT_POLLING) {
    if (m->type == RAFT_MSG_PREVOTE_RESP && (m->flags & RAFT_F_RECOVERING))
      raft_recv_poll(r, m);
    else
      r->stats.refused++;
    return;
  }
  if (m->term > r->term) {
    int vote = m->type == RAFT_MSG_PREVOTE || m->type == RAFT_MSG_VOTE;
    if (vote && !(m->flags & RAFT_F_TRANSFER) && raft_in_lease(r) &&
        !RAFT_BUG(15)) {
      r->stats.lease++;
      return;
    }
    if (m->type != RAFT_MSG_PREVOTE &&
        !(m->type == RAFT_MSG_PREVOTE_RESP && !(m->flags & RAFT_F_REJECT))) {
      int lead = m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
                 m->type == RAFT_MSG_SNAPSHOT ||
                 m->type == RAFT_MSG_TIMEOUT_NOW;
      raft_become_follower(r, out, m->term, lead ? m->from : 0);
    }
  } else if (m->term < r->term) {
    r->stats.stale++;
    if (m->type == RAFT_MSG_APPEND) {
      struct raft_action *a = raft_send(r, out, RAFT_MSG_APPEND_RESP, m->from);
      a->msg.flags = RAFT_F_REJECT;
    } else if (m->type == RAFT_MSG_HEARTBEAT) {
      raft_send(r, out, RAFT_MSG_HEARTBEAT_RESP, m->from);
    } else if (m->type == RAFT_MSG_PREVOTE && !RAFT_BUG(13)) {
      struct raft_action *a = raft_send(r, out, RAFT_MSG_PREVOTE_RESP, m->from);
      a->msg.flags = RAFT_F_REJECT;
    }
    return;
  }
  switch (m->type) {
    case RAFT_MSG_APPEND:
      raft_recv_append(r, out, m);
      break;
    case RAFT_MSG_APPEND_RESP:
      raft_recv_append_resp(r, out, m);
      break;
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_VOTE:
      raft_recv_vote(r, out, m);
      break;
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
      raft_recv_vote_resp(r, out, m);
      break;
    case RAFT_MSG_HEARTBEAT:
      raft_recv_heartbeat(r, out, m);
      break;
    case RAFT_MSG_HEARTBEAT_RESP:
      raft_recv_heartbeat_resp(r, out, m);
      break;
    case RAFT_MSG_SNAPSHOT:
      raft_recv_snapshot(r, out, m);
      break;
    case RAFT_MSG_TIMEOUT_NOW:
      raft_recv_timeout_now(r, out);
      break;
    case RAFT_MSG_READ_INDEX:
      raft_recv_read_index(r, out, m);
      break;
    case RAFT_MSG_READ_INDEX_RESP:
      raft_recv_read_index_resp(out, m);
      break;
    default:
      break;
  }
}

/* --------------------------------------------------------------- inputs */

/* Every heartbeat interval: heartbeats to all, and a follower whose
** window has been full of unanswered messages for two intervals is
** probed again (its messages were lost).  Every election timeout:
** check-quorum (thesis §6.2: a leader that did not hear from a quorum
** steps down, so that a minority leader stops taking writes and reads),
** and a transfer that did not finish is abandoned (thesis §3.10). */
static void raft_tick_leader(struct raft *r, struct raft_out *out) {
  unsigned i;
  if (++r->hb_elapsed >= r->c.heartbeat_ticks) {
    r->hb_elapsed = 0;
    for (i = 0; i < r->n_peers; i++) {
      struct raft_peer *p = &r->peers[i];
      if (p->state == RAFT_REPLICATE && p->infl_n > 0 && !p->moved) {
        if (++p->stalled >= 2) raft_peer_probe(r, p, p->match + 1);
      } else {
        p->stalled = 0;
      }
      p->moved = 0;
    }
    raft_bcast_heartbeat(r, out);
  }
  if (r->transfer_to != 0 && ++r->transfer_elapsed >= r->c.election_ticks &&
      !RAFT_BUG(24))
    r->transfer_to = 0;
  if (++r->elapsed >= r->c.election_ticks) {
    unsigned n = 1;
    r->elapsed = 0;
    for (i = 0; i < r->n_peers; i++) {
      if (r->peers[i].active) n++;
      r->peers[i].active = 0;
    }
    if (n < r->quorum && !RAFT_BUG(14))
      raft_become_follower(r, out, r->term, 0);
  }
}

/* Paper §5.2: a follower (or candidate) that hears from no leader for its
** election timeout starts an election -- with pre-vote first -- unless it
** may not (raft_can_campaign); either way the leader is gone. */
static void raft_tick(struct raft *r, struct raft_out *out) {
  if (r->role == RAFT_LEADER) {
    raft_tick_leader(r, out);
    return;
  }
  if (r->recovering == RAFT_POLLING) {
    raft_poll(r, out);
    return;
  }
  if (++r->elapsed < r->timeout) return;
  r->leader = 0;
  if (raft_can_campaign(r))
    raft_precampaign(r, out);
  else
    raft_reset_timer(r);
}

/* PROPOSE: n entries of the leader's term at the end of its log; sent to
** the followers at once, while its own write is under way (thesis
** §10.2.1). */
static int raft_propose(struct raft *r, struct raft_out *out, uint32_t n) {
  struct raft_action *a;
  uint64_t lo = r->last_index + 1;
  if (n == 0) return URSULA_EINVAL;
  if (r->role != RAFT_LEADER || r->transfer_to != 0 || r->storage_failed)
    return URSULA_EAGAIN;
  if (r->c.max_uncommitted != 0 &&
      r->last_index - r->commit + n > r->c.max_uncommitted)
    return URSULA_EAGAIN;
  if (raft_trail_append(r, r->last_index + n, r->term) != 0)
    return URSULA_EAGAIN;
  a = raft_push(out, RAFT_APPEND);
  a->lo = lo;
  a->hi = r->last_index;
  a->msg.n_runs = 1;
  a->msg.runs[0].index = lo;
  a->msg.runs[0].term = r->term;
  out->term = r->term;
  out->index = lo;
  raft_pump_all(r, out);
  return URSULA_OK;
}

/* LOG_DURABLE (R4): taken only if entry index still has that term. */
static void raft_log_durable(struct raft *r, struct raft_out *out,
                             uint64_t term, uint64_t index) {
  uint64_t t;
  if (RAFT_BUG(11)) {
    if (index > r->last_index) index = r->last_index;
  } else if (!raft_term_at(r, index, &t) || t != term) {
    r->stats.stale_durable++;
    return;
  }
  if (index <= r->durable_index) return;
  r->durable_index = index;
  if (r->role == RAFT_LEADER && raft_maybe_commit(r, out))
    raft_after_commit(r, out);
  raft_check_caught_up(r);
}

static void raft_state_durable(struct raft *r, struct raft_out *out,
                               uint64_t term, uint64_t vote) {
  if (term < r->durable_term) return;
  r->durable_term = term;
  r->durable_vote = vote;
  if (r->role == RAFT_LEADER && raft_maybe_commit(r, out))
    raft_after_commit(r, out);
}

/* The snapshot stream to peer ended: on success probe from after it (its
** acknowledgment follows), on failure from its match, after a heartbeat. */
static void raft_snap_done(struct raft *r, uint64_t peer, int ok) {
  struct raft_peer *p = raft_peer(r, peer);
  if (r->role != RAFT_LEADER || p == NULL || p->state != RAFT_SNAPSHOTTING)
    return;
  raft_peer_probe(r, p, ok ? p->snap_index + 1 : p->match + 1);
  p->paused = !ok;
}

/* The snapshot (term, index) is installed: the log is kept after it only
** if its entry index has that term (paper §7: "If existing log entry has
** same index and term as snapshot's last included entry, retain log
** entries following it"); otherwise the log is the snapshot alone. */
static void raft_snap_installed(struct raft *r, struct raft_out *out,
                                uint64_t term, uint64_t index) {
  uint64_t t;
  if (index <= r->snap_index) return; /* the driver installs none older */
  if (index < r->last_index &&
      (RAFT_BUG(20) || (raft_term_at(r, index, &t) && t == term))) {
    raft_trail_drop_to(r, index, term);
    if (r->durable_index < index) r->durable_index = index;
  } else {
    raft_trail_reset(r, index, term);
  }
  if (r->leader_match < index) r->leader_match = index;
  raft_commit_to(r, out, index);
  raft_check_caught_up(r);
  if (r->leader != 0) raft_ack(r, out, r->leader, index);
}

/* COMPACTED: the driver's durable snapshot covers the log up to index. */
static int raft_compacted(struct raft *r, uint64_t term, uint64_t index) {
  uint64_t t;
  if (index <= r->snap_index) return URSULA_OK;
  if (index > r->commit || !raft_term_at(r, index, &t) || t != term)
    return URSULA_EINVAL;
  raft_trail_drop_to(r, index, term);
  if (r->durable_index < index) r->durable_index = index;
  return URSULA_OK;
}

/* TRANSFER (thesis §3.10): stop taking proposals, bring the target up to
** date, then TimeoutNow; abandoned after an election timeout.  Never to a
** peer that is leaving (LEAVING). */
static int raft_transfer(struct raft *r, struct raft_out *out,
                         uint64_t target) {
  struct raft_peer *p = raft_peer(r, target);
  if (r->role != RAFT_LEADER) return URSULA_EAGAIN;
  if (p == NULL) return URSULA_EINVAL;
  if (p->leaving) return URSULA_EAGAIN; /* LEAVING: it would not take it */
  if (r->transfer_to == target) return URSULA_OK;
  r->transfer_to = target;
  r->transfer_elapsed = 0;
  if (p->match == r->last_index)
    raft_maybe_timeout_now(r, out, p);
  else
    raft_pump(r, out, p);
  return URSULA_OK;
}

/* LEAVE (LEAVING): this node stops campaigning; a leader with no
** transfer under way hands over to the peer not leaving that was heard
** from since the last check-quorum, else any not leaving, the highest
** match first.  (A transfer to a peer that is leaving too was abandoned
** when its flag came: raft_recv.) */
static int raft_leave(struct raft *r, struct raft_out *out) {
  const struct raft_peer *best = NULL;
  unsigned i;
  r->leaving = 1;
  if (r->role != RAFT_LEADER || r->transfer_to != 0) return URSULA_OK;
  for (i = 0; i < r->n_peers; i++) {
    const struct raft_peer *p = &r->peers[i];
    if (p->leaving) continue;
    if (best == NULL || (p->active && !best->active) ||
        (p->active == best->active && p->match > best->match))
      best = p;
  }
  if (best == NULL) return URSULA_EAGAIN;
  return raft_transfer(r, out, best->id);
}

/* STORAGE_FAILED (R5): step down and refuse everything until recovered.
** Entries not durable may be gone; a leader's may already be on
** followers, so this term may never give their indexes to other entries:
** stepping down ends the term's proposals here. */
static void raft_storage_failed(struct raft *r, struct raft_out *out) {
  if (RAFT_BUG(9) && r->role == RAFT_LEADER) {
    raft_trail_truncate(r, r->durable_index + 1); /* and go on proposing */
    return;
  }
  r->storage_failed = 1;
  raft_become_follower(r, out, r->term, 0);
}

/* STORAGE_RECOVERED: the log ends at its durable entry (term, index);
** the hard state is saved again (the last SAVE_STATE may be lost).  The
** commit index stays (what is committed stays committed), though it may
** be past the log's end until the entries come back. */
static int raft_storage_recovered(struct raft *r, uint64_t term,
                                  uint64_t index) {
  uint64_t t;
  if (!r->storage_failed) return URSULA_OK;
  if (!raft_term_at(r, index, &t) || t != term) return URSULA_EINVAL;
  if (index < r->last_index) raft_trail_truncate(r, index + 1);
  r->storage_failed = 0;
  r->save_again = 1;
  raft_reset_timer(r);
  return URSULA_OK;
}

static int raft_read_index(struct raft *r, struct raft_out *out, uint64_t ctx) {
  if (r->role == RAFT_LEADER && !r->storage_failed) {
    raft_read_add(r, out, ctx, r->c.id);
  } else if (r->leader != 0 && !r->storage_failed) {
    struct raft_action *a = raft_send(r, out, RAFT_MSG_READ_INDEX, r->leader);
    a->msg.ctx = ctx;
  } else {
    struct raft_action *a = raft_push(out, RAFT_READ_READY);
    a->ctx = ctx;
  }
  return URSULA_OK;
}

URSULA_PRIVATE int raft_step(struct raft *r, const struct raft_in *in,
                             struct raft_out *out) {
  int rc = URSULA_OK, role = r->role;
  uint64_t leader = r->leader, term = r->term;
  size_t first = out->n;
  if (out->n > out->cap || out->cap - out->n <= raft_reserve(&r->c))
    return URSULA_EINVAL;
  switch (in->type) {
    case RAFT_IN_TICK:
      raft_tick(r, out);
      break;
    case RAFT_IN_MSG:
      if (in->msg == NULL) return URSULA_EINVAL;
      raft_recv(r, out, in->msg);
      break;
    case RAFT_IN_PROPOSE:
      rc = raft_propose(r, out, in->n);
      break;
    case RAFT_IN_LOG_DURABLE:
      raft_log_durable(r, out, in->term, in->index);
      break;
    case RAFT_IN_STATE_DURABLE:
      raft_state_durable(r, out, in->term, in->vote);
      break;
    case RAFT_IN_SNAP_SENT:
      raft_snap_done(r, in->peer, 1);
      break;
    case RAFT_IN_SNAP_FAILED:
      raft_snap_done(r, in->peer, 0);
      break;
    case RAFT_IN_SNAP_INSTALLED:
      raft_snap_installed(r, out, in->term, in->index);
      break;
    case RAFT_IN_COMPACTED:
      rc = raft_compacted(r, in->term, in->index);
      break;
    case RAFT_IN_READ_INDEX:
      rc = raft_read_index(r, out, in->ctx);
      break;
    case RAFT_IN_TRANSFER:
      rc = raft_transfer(r, out, in->peer);
      break;
    case RAFT_IN_STORAGE_FAILED:
      raft_storage_failed(r, out);
      break;
    case RAFT_IN_STORAGE_RECOVERED:
      rc = raft_storage_recovered(r, in->term, in->index);
      break;
    case RAFT_IN_LEAVE:
      rc = raft_leave(r, out);
      break;
    case RAFT_IN_STAY:
      r->leaving = 0;
      break;
    default:
      return URSULA_EINVAL;
  }
  if (r->leaving) { /* LEAVING: every message says so */
    size_t k;
    for (k = first; k < out->n; k++)
      if (out->a[k].type == RAFT_SEND) out->a[k].msg.flags |= RAFT_F_LEAVING;
  }
  raft_persist(r, out);
  if (role != r->role || leader != r->leader || term != r->term) {
    struct raft_action *a = raft_push(out, RAFT_ROLE);
    a->role = r->role;
    a->term = r->term;
    a->peer = r->leader;
  }
  return rc;
}

/* ------------------------------------------------------------ lifetime */

static int raft_config_ok(const struct raft_config *c) {
  unsigned i, j, self = 0;
  if (c->n_voters != 1 && c->n_voters != 3 && c->n_voters != 5) return 0;
  for (i = 0; i < c->n_voters; i++) {
    if (c->voters[i] == 0) return 0;
    if (c->voters[i] == c->id) self++;
    for (j = 0; j < i; j++)
      if (c->voters[j] == c->voters[i]) return 0;
  }
  return self == 1 && c->election_ticks >= 2 && c->heartbeat_ticks >= 1 &&
         c->heartbeat_ticks < c->election_ticks && c->max_inflight_msgs >= 1 &&
         c->max_msg_entries >= 1 && c->trail_cap >= 2 && c->read_cap >= 1 &&
         c->env != NULL && c->env->random != NULL;
}

/* The saved log's runs: ascending, inside (snap_index, last_index], the
** first at snap_index + 1, terms above snap_term. */
static int raft_saved_ok(const struct raft_config *c,
                         const struct raft_saved *s) {
  size_t k;
  if (s->last_index < s->snap_index) return 0;
  if (s->last_index == s->snap_index) return 1;
  if (s->n_runs == 0 || s->n_runs > c->trail_cap || s->runs == NULL) return 0;
  if (s->runs[0].index != s->snap_index + 1 || s->runs[0].term < s->snap_term)
    return 0;
  for (k = 1; k < s->n_runs; k++)
    if (s->runs[k].index <= s->runs[k - 1].index ||
        s->runs[k].index > s->last_index ||
        s->runs[k].term <= s->runs[k - 1].term)
      return 0;
  return 1;
}

URSULA_PRIVATE int raft_init(struct raft *r, const struct raft_config *c,
                             const struct raft_saved *s) {
  size_t ring = c->max_inflight_msgs, size;
  unsigned i, k = 0;
  uint64_t *rings;
  char *mem;
  if (!raft_config_ok(c) || !raft_saved_ok(c, s)) return URSULA_EINVAL;
  memset(r, 0, sizeof(*r));
  r->c = *c;
  size = (size_t)c->trail_cap * sizeof(struct raft_run) +
         (size_t)c->read_cap * sizeof(struct raft_read) +
         (size_t)(c->n_voters - 1) * 2 * ring * sizeof(uint64_t);
  mem = (char *)URSULA_MALLOC(size);
  if (mem == NULL) return URSULA_ENOMEM;
  r->mem = mem;
  r->trail = (struct raft_run *)(void *)mem;
  r->reads = (struct raft_read *)(void *)(mem + (size_t)c->trail_cap *
                                                    sizeof(struct raft_run));
  rings = (uint64_t *)(void *)((char *)r->reads +
                               (size_t)c->read_cap * sizeof(struct raft_read));
  r->quorum = c->n_voters / 2 + 1;
  for (i = 0; i < c->n_voters; i++) {
    struct raft_peer *p;
    if (c->voters[i] == c->id) continue;
    p = &r->peers[k++];
    p->id = c->voters[i];
    p->infl_last = rings;
    p->infl_bytes = rings + ring;
    rings += 2 * ring;
  }
  r->n_peers = k;
  r->snap_index = s->snap_index;
  r->snap_term = s->snap_term;
  r->last_index = s->last_index;
  r->durable_index = s->last_index;
  if (s->last_index > s->snap_index) {
    memcpy(r->trail, s->runs, s->n_runs * sizeof(struct raft_run));
    r->trail_n = (unsigned)s->n_runs;
  }
  r->term = r->saved_term = r->durable_term = s->term;
  r->vote = r->saved_vote = r->durable_vote = s->vote;
  /* LOST LOG: every start of a node that lost its log polls again; a
  ** single voter has nobody to catch up from (its data is gone) */
  r->saved_recovering = s->recovering ? 1 : 0;
  r->recovering = s->recovering && c->n_voters > 1 ? RAFT_POLLING : 0;
  if (RAFT_BUG(26) && r->recovering) r->recovering = RAFT_CATCHING;
  if (r->recovering) /* (never 0: an answer without one is no answer) */
    r->poll_nonce = c->env->random(c->env) | 1u;
  if (raft_last_term(r) > r->term) { /* never with R1; be safe */
    r->term = raft_last_term(r);
    r->vote = 0;
  }
  r->commit = s->commit;
  if (r->commit > r->last_index) r->commit = r->last_index;
  if (r->commit < r->snap_index) r->commit = r->snap_index;
  r->role = RAFT_FOLLOWER;
  raft_reset_timer(r);
  return URSULA_OK;
}

URSULA_PRIVATE void raft_free(struct raft *r) {
  URSULA_FREE(r->mem);
  r->mem = NULL;
}

#undef RAFT_BUG
