/* unit_raft.c -- raft.c: each required feature of the core, with the rule
** it checks taken from the paper or thesis, not from the code.  Each case
** named in unit_raft_plants[] fails when raft.c is built with that
** planted bug (make test-raft-plants).
**
** Two ways to drive cores: one core fed crafted messages (ur_*), and a
** small cluster (ucl_*) whose storage is made durable at the end of every
** step and whose network delivers in order, with links that can be cut.
** test/sim/ is the randomized simulator; these are the scripted cases. */

/* ------------------------------------------------------------ one core */

#define UR_ACTS 512
#define UR_LOG 512
#define UR_CLUSTER 77

struct ur_node {
  struct raft r;
  struct env env;
  uint64_t rnd;
  struct raft_action acts[UR_ACTS];
  struct raft_out out;
  int up, started;
  /* what the cluster driver stored for it (always durable here) */
  uint64_t term, vote, commit;
  int recovering;
  uint64_t snap_index, snap_term, last;
  uint64_t terms[UR_LOG]; /* the term of each entry, by index */
  uint64_t reads[16];     /* READ_READY index by ctx, +1 (0: none yet) */
};

static uint64_t ur_random(struct env *e) {
  struct ur_node *u = (struct ur_node *)e->impl;
  uint64_t z = (u->rnd += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void ur_config(struct ur_node *u, struct raft_config *c, uint64_t id,
                      unsigned n) {
  unsigned i;
  memset(c, 0, sizeof(*c));
  c->cluster_id = UR_CLUSTER;
  c->id = id;
  for (i = 0; i < n; i++) c->voters[i] = i + 1;
  c->n_voters = n;
  c->election_ticks = 10;
  c->heartbeat_ticks = 1;
  c->max_inflight_msgs = 8;
  c->max_msg_entries = 4;
  c->trail_cap = 16;
  c->read_cap = 8;
  c->commit_notify = 1;
  c->env = &u->env;
}

/* Start u with config c from saved state s (NULL: empty, not lost). */
static int ur_start_cfg(struct ur_node *u, const struct raft_config *c,
                        const struct raft_saved *s) {
  struct raft_saved empty;
  int rc;
  memset(&empty, 0, sizeof(empty));
  if (u->started) raft_free(&u->r);
  u->started = 0;
  u->env.random = ur_random;
  u->env.impl = u;
  u->out.a = u->acts;
  u->out.cap = UR_ACTS;
  u->out.n = 0;
  rc = raft_init(&u->r, c, s ? s : &empty);
  if (rc == URSULA_OK) u->started = 1;
  u->up = rc == URSULA_OK;
  return rc;
}

static int ur_start(struct ur_node *u, uint64_t id, unsigned n,
                    const struct raft_saved *s) {
  struct raft_config c;
  if (u->rnd == 0) u->rnd = id * 1000003u;
  ur_config(u, &c, id, n);
  return ur_start_cfg(u, &c, s);
}

static void ur_stop(struct ur_node *u) {
  if (u->started) raft_free(&u->r);
  u->started = 0;
  u->up = 0;
}

/* One step; the actions it gave are u->out.a[0..n). */
static int ur_step(struct ur_node *u, const struct raft_in *in) {
  u->out.n = 0;
  return raft_step(&u->r, in, &u->out);
}

static int ur_in(struct ur_node *u, int type) {
  struct raft_in in;
  memset(&in, 0, sizeof(in));
  in.type = type;
  return ur_step(u, &in);
}

static int ur_tick(struct ur_node *u) {
  return ur_in(u, RAFT_IN_TICK);
}

static int ur_msg(struct ur_node *u, const struct raft_msg *m) {
  struct raft_in in;
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_MSG;
  in.msg = m;
  return ur_step(u, &in);
}

static int ur_propose(struct ur_node *u, uint32_t n) {
  struct raft_in in;
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_PROPOSE;
  in.n = n;
  return ur_step(u, &in);
}

static int ur_in2(struct ur_node *u, int type, uint64_t term, uint64_t index) {
  struct raft_in in;
  memset(&in, 0, sizeof(in));
  in.type = type;
  in.term = term;
  in.index = index;
  return ur_step(u, &in);
}

static int ur_peer_in(struct ur_node *u, int type, uint64_t peer) {
  struct raft_in in;
  memset(&in, 0, sizeof(in));
  in.type = type;
  in.peer = peer;
  return ur_step(u, &in);
}

static int ur_read(struct ur_node *u, uint64_t ctx) {
  struct raft_in in;
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_READ_INDEX;
  in.ctx = ctx;
  return ur_step(u, &in);
}

/* Both durability completions for what u holds now. */
static void ur_all_durable(struct ur_node *u) {
  uint64_t t = 0;
  struct raft_in in;
  raft_term_at(&u->r, u->r.last_index, &t);
  ur_in2(u, RAFT_IN_LOG_DURABLE, t, u->r.last_index);
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_STATE_DURABLE;
  in.term = u->r.term;
  in.vote = u->r.vote;
  ur_step(u, &in);
}

/* The k-th action of type in the last step (NULL: none), and its
** position. */
static const struct raft_action *ur_act(const struct ur_node *u, int type,
                                        int k) {
  size_t i;
  for (i = 0; i < u->out.n; i++)
    if (u->out.a[i].type == type && k-- == 0) return &u->out.a[i];
  return NULL;
}

static int ur_pos(const struct ur_node *u, int type, int msg_type) {
  size_t i;
  for (i = 0; i < u->out.n; i++)
    if (u->out.a[i].type == type &&
        (msg_type == 0 || u->out.a[i].msg.type == msg_type))
      return (int)i;
  return -1;
}

/* The k-th message of msg_type sent to `to` (0: anyone) in the last step. */
static const struct raft_action *ur_sent(const struct ur_node *u, int msg_type,
                                         uint64_t to, int k) {
  size_t i;
  for (i = 0; i < u->out.n; i++) {
    const struct raft_action *a = &u->out.a[i];
    if (a->type == RAFT_SEND && a->msg.type == msg_type &&
        (to == 0 || a->msg.to == to) && k-- == 0)
      return a;
  }
  return NULL;
}

static int ur_nsent(const struct ur_node *u, int msg_type, uint64_t to) {
  int n = 0;
  while (ur_sent(u, msg_type, to, n) != NULL) n++;
  return n;
}

static struct raft_msg ur_m(int type, uint64_t from, uint64_t to,
                            uint64_t term) {
  struct raft_msg m;
  memset(&m, 0, sizeof(m));
  m.cluster_id = UR_CLUSTER;
  m.type = (uint8_t)type;
  m.from = from;
  m.to = to;
  m.term = term;
  return m;
}

/* An AppendEntries from `from` in term: prev (index, log_term), then n
** entries all of term et, commit. */
static struct raft_msg ur_append(uint64_t from, uint64_t to, uint64_t term,
                                 uint64_t prev, uint64_t prev_term, uint32_t n,
                                 uint64_t et, uint64_t commit) {
  struct raft_msg m = ur_m(RAFT_MSG_APPEND, from, to, term);
  m.index = prev;
  m.log_term = prev_term;
  m.n = n;
  m.commit = commit;
  if (n > 0) {
    m.n_runs = 1;
    m.runs[0].index = prev + 1;
    m.runs[0].term = et;
  }
  return m;
}

static struct raft_msg ur_ack(uint64_t from, uint64_t to, uint64_t term,
                              uint64_t index) {
  struct raft_msg m = ur_m(RAFT_MSG_APPEND_RESP, from, to, term);
  m.index = index;
  m.last = index;
  return m;
}

/* Saved state with a log of `last` entries whose terms come from runs. */
static struct raft_saved ur_saved(uint64_t term, uint64_t vote, uint64_t commit,
                                  uint64_t last, const struct raft_run *runs,
                                  size_t n_runs) {
  struct raft_saved s;
  memset(&s, 0, sizeof(s));
  s.term = term;
  s.vote = vote;
  s.commit = commit;
  s.last_index = last;
  s.runs = runs;
  s.n_runs = n_runs;
  return s;
}

/* Make node 1 of n the leader of term+1 by crafted (pre-)vote grants, from
** saved state s; its no-op is appended.  Returns 1 on success. */
static int ur_make_leader(struct ur_node *u, unsigned n,
                          const struct raft_saved *s) {
  unsigned i, k;
  uint64_t t;
  if (ur_start(u, 1, n, s) != URSULA_OK) return 0;
  for (k = 0; k < 40 && u->r.role != RAFT_PRECANDIDATE; k++) ur_tick(u);
  if (n == 1) return u->r.role == RAFT_LEADER;
  t = u->r.term + 1;
  for (i = 2; i <= n && u->r.role == RAFT_PRECANDIDATE; i++) {
    struct raft_msg m = ur_m(RAFT_MSG_PREVOTE_RESP, i, 1, t);
    ur_msg(u, &m);
  }
  for (i = 2; i <= n && u->r.role == RAFT_CANDIDATE; i++) {
    struct raft_msg m = ur_m(RAFT_MSG_VOTE_RESP, i, 1, t);
    ur_msg(u, &m);
  }
  return u->r.role == RAFT_LEADER;
}

/* -------------------------------------------------------- small cluster */

#define UCL_MAX 5
#define UCL_Q 8192

struct ucl {
  unsigned n;
  struct ur_node node[UCL_MAX + 1]; /* 1-based */
  int link[UCL_MAX + 1][UCL_MAX + 1];
  struct raft_msg q[UCL_Q];
  unsigned qh, qn;
  unsigned steps;
  unsigned rejects[UCL_MAX + 1]; /* AppendEntries refused, by node */
};

static void ucl_restart(struct ucl *cl, unsigned i);

/* n nodes, all connected, empty logs (a new cluster). */
static void ucl_init(struct ucl *cl, unsigned n) {
  unsigned i, j;
  memset(cl, 0, sizeof(*cl));
  cl->n = n;
  for (i = 1; i <= n; i++) {
    cl->node[i].rnd = 0x5eed0000u + i;
    for (j = 1; j <= n; j++) cl->link[i][j] = 1;
    ucl_restart(cl, i);
  }
}

static void ucl_free(struct ucl *cl) {
  unsigned i;
  for (i = 1; i <= cl->n; i++) ur_stop(&cl->node[i]);
}

/* Start node i again from what its storage holds. */
static void ucl_restart(struct ucl *cl, unsigned i) {
  struct ur_node *u = &cl->node[i];
  struct raft_run runs[UR_LOG];
  struct raft_saved s;
  size_t n = 0;
  uint64_t k;
  for (k = u->snap_index + 1; k <= u->last; k++)
    if (n == 0 || runs[n - 1].term != u->terms[k]) {
      runs[n].index = k;
      runs[n].term = u->terms[k];
      n++;
    }
  s = ur_saved(u->term, u->vote, u->commit, u->last, runs, n);
  s.recovering = u->recovering;
  s.snap_index = u->snap_index;
  s.snap_term = u->snap_term;
  ur_start(u, i, cl->n, &s);
}

static void ucl_send(struct ucl *cl, unsigned from, const struct raft_msg *m) {
  if (m->type == RAFT_MSG_APPEND_RESP && (m->flags & RAFT_F_REJECT))
    cl->rejects[from]++;
  if (m->to < 1 || m->to > cl->n || !cl->link[from][m->to]) return;
  if (cl->qn == UCL_Q) return;
  cl->q[(cl->qh + cl->qn) % UCL_Q] = *m;
  cl->qn++;
}

/* Step node i with in and carry out its actions: storage is made durable
** at once (the completions are fed back), messages are queued.  Returns
** what raft_step returned (URSULA_EAGAIN for a node that is down). */
static int ucl_run(struct ucl *cl, unsigned i, const struct raft_in *in) {
  struct ur_node *u = &cl->node[i];
  struct raft_action *acts;
  size_t n, k;
  int log_dirty = 0, state_dirty = 0, rc;
  struct raft_in next;
  if (!u->up) return URSULA_EAGAIN;
  cl->steps++;
  rc = ur_step(u, in);
  n = u->out.n;
  acts = (struct raft_action *)malloc((n ? n : 1) * sizeof(*acts));
  memcpy(acts, u->out.a, n * sizeof(*acts));
  for (k = 0; k < n; k++) {
    const struct raft_action *a = &acts[k];
    uint64_t x;
    unsigned r;
    switch (a->type) {
      case RAFT_SAVE_STATE:
        u->term = a->term;
        u->vote = a->vote;
        u->commit = a->commit;
        u->recovering = (int)a->flags;
        state_dirty = 1;
        break;
      case RAFT_APPEND:
        for (x = a->lo; x <= a->hi && x < UR_LOG; x++) {
          for (r = a->msg.n_runs; r > 1 && a->msg.runs[r - 1].index > x;) r--;
          u->terms[x] = a->msg.runs[r - 1].term;
        }
        u->last = a->hi;
        log_dirty = 1;
        break;
      case RAFT_TRUNCATE:
        u->last = a->lo - 1;
        break;
      case RAFT_SEND:
        ucl_send(cl, i, &a->msg);
        break;
      case RAFT_SEND_SNAPSHOT: {
        struct raft_msg m = ur_m(RAFT_MSG_SNAPSHOT, i, a->peer, u->r.term);
        m.index = a->hi;
        m.log_term = a->term;
        ucl_send(cl, i, &m);
        memset(&next, 0, sizeof(next));
        next.type = RAFT_IN_SNAP_SENT;
        next.peer = a->peer;
        ucl_run(cl, i, &next);
        break;
      }
      case RAFT_INSTALL_SNAPSHOT: {
        struct ur_node *from = &cl->node[a->peer];
        if (!(u->last > a->hi && u->terms[a->hi] == a->term)) u->last = a->hi;
        for (x = 1; x <= a->hi; x++) u->terms[x] = from->terms[x];
        u->snap_index = a->hi;
        u->snap_term = a->term;
        memset(&next, 0, sizeof(next));
        next.type = RAFT_IN_SNAP_INSTALLED;
        next.term = a->term;
        next.index = a->hi;
        ucl_run(cl, i, &next);
        break;
      }
      case RAFT_COMMIT:
        u->commit = a->hi;
        break;
      case RAFT_READ_READY:
        if (a->ctx < 16) u->reads[a->ctx] = a->hi + 1;
        break;
      default:
        break;
    }
  }
  free(acts);
  if (log_dirty) {
    memset(&next, 0, sizeof(next));
    next.type = RAFT_IN_LOG_DURABLE;
    next.index = u->last;
    next.term = u->terms[u->last];
    if (u->last == u->snap_index) next.term = u->snap_term;
    ucl_run(cl, i, &next);
  }
  if (state_dirty) {
    memset(&next, 0, sizeof(next));
    next.type = RAFT_IN_STATE_DURABLE;
    next.term = u->term;
    next.vote = u->vote;
    ucl_run(cl, i, &next);
  }
  return rc;
}

static void ucl_deliver(struct ucl *cl) {
  unsigned guard = 0;
  while (cl->qn > 0 && guard++ < 100000) {
    struct raft_msg m = cl->q[cl->qh];
    struct raft_in in;
    cl->qh = (cl->qh + 1) % UCL_Q;
    cl->qn--;
    if (!cl->link[m.from][m.to]) continue;
    memset(&in, 0, sizeof(in));
    in.type = RAFT_IN_MSG;
    in.msg = &m;
    ucl_run(cl, (unsigned)m.to, &in);
  }
}

/* rounds ticks of every node that is up, delivering after each. */
static void ucl_tick(struct ucl *cl, unsigned rounds) {
  unsigned k, i;
  struct raft_in in;
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_TICK;
  for (k = 0; k < rounds; k++) {
    for (i = 1; i <= cl->n; i++) ucl_run(cl, i, &in);
    ucl_deliver(cl);
  }
}

/* The node that is up and leads the highest term (0: none). */
static unsigned ucl_leader(const struct ucl *cl) {
  unsigned i, best = 0;
  for (i = 1; i <= cl->n; i++)
    if (cl->node[i].up && cl->node[i].r.role == RAFT_LEADER &&
        (best == 0 || cl->node[i].r.term > cl->node[best].r.term))
      best = i;
  return best;
}

/* Tick until some node leads, at most `rounds`; returns it (0: none). */
static unsigned ucl_elect(struct ucl *cl, unsigned rounds) {
  unsigned k;
  for (k = 0; k < rounds && ucl_leader(cl) == 0; k++) ucl_tick(cl, 1);
  return ucl_leader(cl);
}

static void ucl_cut(struct ucl *cl, unsigned i, int cut) {
  unsigned j;
  for (j = 1; j <= cl->n; j++)
    if (j != i) cl->link[i][j] = cl->link[j][i] = !cut;
}

static int ucl_propose(struct ucl *cl, unsigned i, uint32_t n) {
  struct raft_in in;
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_PROPOSE;
  in.n = n;
  return ucl_run(cl, i, &in);
}

static int ucl_transfer(struct ucl *cl, unsigned i, uint64_t to) {
  struct raft_in in;
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_TRANSFER;
  in.peer = to;
  return ucl_run(cl, i, &in);
}

static int ucl_leave(struct ucl *cl, unsigned i) {
  struct raft_in in;
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_LEAVE;
  return ucl_run(cl, i, &in);
}

static int ucl_stay(struct ucl *cl, unsigned i) {
  struct raft_in in;
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_STAY;
  return ucl_run(cl, i, &in);
}

/* ------------------------------------------------------------- 1. timer */

/* Paper §5.2: election timeouts are chosen randomly from a fixed interval
** (here [T, 2T) with T = 10 ticks), so that split votes are rare. */
static void test_raft_timeout_random(void) {
  struct ur_node u;
  int seen[20];
  unsigned k, distinct = 0, i;
  memset(&u, 0, sizeof(u));
  memset(seen, 0, sizeof(seen));
  ASSERT(ur_start(&u, 2, 3, NULL) == URSULA_OK);
  for (k = 0; k < 300; k++) {
    unsigned ticks = 0;
    uint64_t term = u.r.term;
    do {
      ur_tick(&u);
      ticks++;
    } while (ur_nsent(&u, RAFT_MSG_PREVOTE, 0) == 0 && ticks < 100);
    ASSERT(ticks >= 10 && ticks < 20);
    ASSERT(u.r.term == term); /* a pre-vote changes no term */
    if (ticks < 20 && !seen[ticks]) {
      seen[ticks] = 1;
      distinct++;
    }
  }
  ASSERT(distinct >= 8); /* spread over the interval, not one value */
  /* the timer starts over after a timeout: a lone node keeps retrying */
  for (i = 0; i < 20; i++) ur_tick(&u);
  ASSERT(u.r.role == RAFT_PRECANDIDATE);
  ur_stop(&u);
}

/* --------------------------------------------------------- 2. pre-vote */

/* Thesis §9.6: a server cut off from the others polls them first and does
** not raise its term when it cannot win; when it comes back, the leader
** stays. */
static void test_raft_prevote_no_term_inflation(void) {
  static struct ucl cl;
  unsigned l, x, k;
  uint64_t term;
  ucl_init(&cl, 3);
  l = ucl_elect(&cl, 200);
  ASSERT(l != 0);
  if (l == 0) return;
  term = cl.node[l].r.term;
  x = l == 3 ? 2 : 3;
  ucl_cut(&cl, x, 1);
  ucl_tick(&cl, 300); /* 30 election timeouts alone */
  ASSERT(cl.node[x].r.term == term);
  ucl_cut(&cl, x, 0);
  ucl_tick(&cl, 50);
  ASSERT(ucl_leader(&cl) == l);
  for (k = 1; k <= 3; k++) ASSERT(cl.node[k].r.term == term);
  ucl_free(&cl);
}

/* The pre-vote liveness traps (etcd-io/etcd#8501; #8243): the leader
** crashed, and the node left has the longer log but a lower term than
** the other, whose log is shorter.  The lower-term node's pre-votes must
** not be dropped in silence: the higher-term one refuses with its term,
** the other takes it, and wins.  A leader within 10 election timeouts. */
static void test_raft_prevote_stale_term(void) {
  static struct ucl cl;
  unsigned k, l;
  ucl_init(&cl, 3);
  /* node 2: term 2, entries 1..5 of term 2; node 3: term 7, entries 1..3
  ** of term 2 (it ran elections of its own); node 1 (the leader) down */
  cl.node[2].term = 2;
  cl.node[2].last = 5;
  cl.node[3].term = 7;
  cl.node[3].last = 3;
  for (k = 1; k <= 5; k++) cl.node[2].terms[k] = cl.node[3].terms[k] = 2;
  ucl_restart(&cl, 2);
  ucl_restart(&cl, 3);
  ur_stop(&cl.node[1]);
  l = ucl_elect(&cl, 100);
  ASSERT(l == 2); /* node 3 cannot win: its log is behind */
  ASSERT(l != 0 && cl.node[l].r.term > 7);
  ucl_free(&cl);
}

/* ---------------------------------------------------- 3. check-quorum */

/* Thesis §6.2: a leader that hears from no quorum for an election timeout
** steps down (so that a minority leader stops serving). */
static void test_raft_check_quorum(void) {
  static struct ucl cl;
  unsigned l, k, l2;
  ucl_init(&cl, 3);
  l = ucl_elect(&cl, 200);
  ASSERT(l != 0);
  if (l == 0) return;
  ucl_cut(&cl, l, 1);
  for (k = 0; k < 25 && cl.node[l].r.role == RAFT_LEADER; k++) ucl_tick(&cl, 1);
  ASSERT(cl.node[l].r.role != RAFT_LEADER);
  ASSERT(k <= 2 * 10); /* within two election timeouts */
  l2 = ucl_elect(&cl, 100);
  ASSERT(l2 != 0 && l2 != l);
  ucl_free(&cl);
}

/* Thesis §6.2 / §9.6: while its leader's lease holds (it heard from the
** leader within the minimum election timeout), a follower ignores
** (pre-)votes of a higher term: no grant, no new term. */
static void test_raft_lease_ignores_votes(void) {
  static struct ucl cl;
  unsigned l, a, b, k;
  uint64_t term;
  struct ur_node *u;
  struct raft_msg m;
  ucl_init(&cl, 3);
  l = ucl_elect(&cl, 200);
  ASSERT(l != 0);
  if (l == 0) return;
  ucl_tick(&cl, 3);
  a = l == 1 ? 2 : 1;
  b = 6 - l - a;
  u = &cl.node[b];
  term = u->r.term;
  m = ur_m(RAFT_MSG_PREVOTE, a, b, term + 1);
  m.index = u->r.last_index;
  m.log_term = cl.node[l].r.term;
  ur_msg(u, &m);
  ASSERT(ur_sent(u, RAFT_MSG_PREVOTE_RESP, a, 0) == NULL);
  m.type = RAFT_MSG_VOTE;
  ur_msg(u, &m);
  ASSERT(ur_sent(u, RAFT_MSG_VOTE_RESP, a, 0) == NULL);
  ASSERT(u->r.term == term && u->r.vote != a);
  ASSERT(u->r.stats.lease == 2);
  /* once the leader is silent for the timeout, the pre-vote is granted */
  for (k = 0; k < 10; k++) ur_tick(u);
  m.type = RAFT_MSG_PREVOTE;
  ur_msg(u, &m);
  ASSERT(ur_sent(u, RAFT_MSG_PREVOTE_RESP, a, 0) != NULL &&
         !(ur_sent(u, RAFT_MSG_PREVOTE_RESP, a, 0)->msg.flags & RAFT_F_REJECT));
  ucl_free(&cl);
}

/* ------------------------------------------------------- 4. replication */

/* A leader and one follower (node 2 of 3) in REPLICATE: prepared by an
** election from the given log and an acknowledgment of the probe. */
static int ur_leader_replicating(struct ur_node *u, unsigned max_msgs,
                                 uint64_t max_bytes, unsigned per_msg,
                                 uint64_t (*bytes)(void *, uint64_t)) {
  struct raft_config c;
  struct raft_saved s;
  struct raft_msg m;
  unsigned k;
  memset(&s, 0, sizeof(s));
  u->rnd = 99;
  ur_config(u, &c, 1, 3);
  c.max_inflight_msgs = max_msgs;
  c.max_inflight_bytes = max_bytes;
  c.max_msg_entries = per_msg;
  c.entry_bytes = bytes;
  if (ur_start_cfg(u, &c, &s) != URSULA_OK) return 0;
  for (k = 0; k < 40 && u->r.role != RAFT_PRECANDIDATE; k++) ur_tick(u);
  m = ur_m(RAFT_MSG_PREVOTE_RESP, 2, 1, 1);
  ur_msg(u, &m);
  m = ur_m(RAFT_MSG_VOTE_RESP, 2, 1, 1);
  ur_msg(u, &m);
  if (u->r.role != RAFT_LEADER) return 0;
  m = ur_ack(2, 1, 1, 1); /* the no-op, probed */
  ur_msg(u, &m);
  return u->r.peers[0].state == RAFT_REPLICATE;
}

static uint64_t ur_bytes_100(void *arg, uint64_t index) {
  (void)arg;
  (void)index;
  return 100;
}

/* A new leader probes (one message per follower until one is accepted),
** then streams: 20 entries go out as 4 messages of up to 4 entries at
** once, up to the window of 4 messages, without waiting for answers;
** acknowledgments open the window again.  (The paper's Fig. 2 allows it;
** etcd-io/raft and thesis §10.2 pipeline the same way.) */
static void test_raft_pipeline_window(void) {
  struct ur_node u;
  struct raft_msg m;
  int k;
  memset(&u, 0, sizeof(u));
  ASSERT(ur_start(&u, 1, 3, NULL) == URSULA_OK);
  /* the probe: one message until answered */
  ASSERT(ur_make_leader(&u, 3, NULL));
  ASSERT(u.r.peers[0].state == RAFT_PROBE);
  ASSERT(ur_propose(&u, 3) == URSULA_OK);
  ASSERT(ur_nsent(&u, RAFT_MSG_APPEND, 2) == 0); /* probe out already */
  ur_stop(&u);

  memset(&u, 0, sizeof(u));
  ASSERT(ur_leader_replicating(&u, 4, 0, 4, NULL));
  ASSERT(ur_propose(&u, 20) == URSULA_OK);
  ASSERT(ur_nsent(&u, RAFT_MSG_APPEND, 2) == 4);
  for (k = 0; k < 4; k++) {
    const struct raft_action *a = ur_sent(&u, RAFT_MSG_APPEND, 2, k);
    ASSERT(a != NULL && a->msg.n == 4 && a->msg.index == 1 + 4 * (uint64_t)k);
    ASSERT(a != NULL && a->after_index == 0); /* not held for the disk */
  }
  /* an acknowledgment of the first two messages frees two slots */
  m = ur_ack(2, 1, 1, 9);
  ur_msg(&u, &m);
  ASSERT(ur_nsent(&u, RAFT_MSG_APPEND, 2) == 1); /* entries 18..21 only */
  ASSERT(ur_sent(&u, RAFT_MSG_APPEND, 2, 0) != NULL &&
         ur_sent(&u, RAFT_MSG_APPEND, 2, 0)->msg.index == 17);
  ur_stop(&u);
}

/* The byte window: entries of 100 bytes, one per message, at most 300
** bytes in flight: three messages, though eight would fit by count. */
static void test_raft_byte_window(void) {
  struct ur_node u;
  memset(&u, 0, sizeof(u));
  ASSERT(ur_leader_replicating(&u, 8, 300, 1, ur_bytes_100));
  ASSERT(ur_propose(&u, 10) == URSULA_OK);
  ASSERT(ur_nsent(&u, RAFT_MSG_APPEND, 2) == 3);
  ASSERT(u.r.peers[0].infl_total == 300);
  ur_stop(&u);
}

/* Thesis §3.5 (paper §5.3's optimization): after a mismatch, the
** follower names the last index at or below it whose term is <= the
** prev's term, and the leader skips a whole term per round trip.  The
** follower holds 10 entries of a term the leader never had: two
** refusals, not ten. */
static void test_raft_fast_backoff(void) {
  static struct ucl cl;
  unsigned k, rejects;
  struct ur_node *f;
  ucl_init(&cl, 3);
  /* node 1: 1..3 term 1, 4..13 term 2, 14..15 term 4; node 2: 1..3 term
  ** 1, 4..13 term 3; node 3: 1..3 term 1 */
  for (k = 1; k <= 15; k++) {
    cl.node[1].terms[k] = k <= 3 ? 1 : k <= 13 ? 2 : 4;
    cl.node[2].terms[k] = k <= 3 ? 1 : 3;
    cl.node[3].terms[k] = 1;
  }
  cl.node[1].last = 15;
  cl.node[1].term = 4;
  cl.node[2].last = 13;
  cl.node[2].term = 3;
  cl.node[3].last = 3;
  cl.node[3].term = 1;
  for (k = 1; k <= 3; k++) ucl_restart(&cl, k);
  ur_stop(&cl.node[3]);
  /* node 1 wins (node 2 cannot: node 1's log is more up-to-date) */
  ASSERT(ucl_elect(&cl, 200) == 1);
  /* node 2 caught up (within the election's ticks); count its refusals */
  f = &cl.node[2];
  ucl_tick(&cl, 2);
  rejects = cl.rejects[2];
  ASSERT(f->r.last_index == cl.node[1].r.last_index);
  ASSERT(rejects >= 1 && rejects <= 3);
  for (k = 4; k <= 13; k++) ASSERT(f->terms[k] == 2);
  ucl_free(&cl);
}

/* Paper Fig. 2, AppendEntries receiver rule 3: "If an existing entry
** conflicts with a new one (same index but different terms), delete the
** existing entry and all that follow it" -- only then.  A stale or
** duplicated message whose entries the follower has shortens nothing. */
static void test_raft_stale_append_keeps_log(void) {
  struct ur_node u;
  struct raft_run runs[1] = {{1, 1}};
  struct raft_saved s = ur_saved(1, 0, 2, 10, runs, 1);
  struct raft_msg m;
  const struct raft_action *a;
  memset(&u, 0, sizeof(u));
  ASSERT(ur_start(&u, 2, 3, &s) == URSULA_OK);
  m = ur_append(1, 2, 1, 3, 1, 2, 1, 2); /* entries 4..5, resent */
  ur_msg(&u, &m);
  ASSERT(ur_act(&u, RAFT_TRUNCATE, 0) == NULL);
  ASSERT(ur_act(&u, RAFT_APPEND, 0) == NULL);
  ASSERT(u.r.last_index == 10);
  a = ur_sent(&u, RAFT_MSG_APPEND_RESP, 1, 0);
  ASSERT(a != NULL && !(a->msg.flags & RAFT_F_REJECT) && a->msg.index == 5);
  /* a real conflict: entries 6..7 of term 2 replace 6..10 of term 1 */
  m = ur_append(1, 2, 2, 5, 1, 2, 2, 2);
  ur_msg(&u, &m);
  a = ur_act(&u, RAFT_TRUNCATE, 0);
  ASSERT(a != NULL && a->lo == 6);
  a = ur_act(&u, RAFT_APPEND, 0);
  ASSERT(a != NULL && a->lo == 6 && a->hi == 7 && a->msg.runs[0].term == 2);
  ASSERT(ur_pos(&u, RAFT_TRUNCATE, 0) < ur_pos(&u, RAFT_APPEND, 0));
  ASSERT(u.r.last_index == 7);
  /* the first message again, late: still nothing removed */
  m = ur_append(1, 2, 2, 3, 1, 2, 1, 2);
  ur_msg(&u, &m);
  ASSERT(ur_act(&u, RAFT_TRUNCATE, 0) == NULL && u.r.last_index == 7);
  ur_stop(&u);
}

/* ------------------------------------------------------ 5. commit rule */

/* Paper §5.4.2, Fig. 8: S1, leader of term 4 (after terms 2 and 3 of
** Fig. 8 (a)-(c)), holds entry 2 of term 2, and S2, S3 hold it too: a
** majority of 5, yet it must not be committed by counting, since S5 (log
** 1:1 2:3) could still be elected and overwrite it.  Once the leader's
** own no-op (entry 3, term 4) is on a majority, both commit. */
static void test_raft_commit_fig8(void) {
  struct ur_node u;
  struct raft_run runs[2] = {{1, 1}, {2, 2}};
  struct raft_saved s = ur_saved(3, 0, 1, 2, runs, 2);
  struct raft_msg m;
  const struct raft_action *a;
  unsigned k;
  memset(&u, 0, sizeof(u));
  ASSERT(ur_make_leader(&u, 5, &s));
  ASSERT(u.r.term == 4 && u.r.last_index == 3);
  ur_all_durable(&u);
  ASSERT(ur_act(&u, RAFT_COMMIT, 0) == NULL);
  for (k = 2; k <= 3; k++) { /* S2, S3 hold entry 2 */
    m = ur_ack((uint64_t)k, 1, 4, 2);
    ur_msg(&u, &m);
    ASSERT(ur_act(&u, RAFT_COMMIT, 0) == NULL);
  }
  ASSERT(u.r.commit == 1);
  m = ur_ack(2, 1, 4, 3);
  ur_msg(&u, &m);
  ASSERT(ur_act(&u, RAFT_COMMIT, 0) == NULL); /* S1, S2: not a majority */
  m = ur_ack(3, 1, 4, 3);
  ur_msg(&u, &m);
  a = ur_act(&u, RAFT_COMMIT, 0);
  ASSERT(a != NULL && a->hi == 3); /* S1, S2 and S3 hold entry 3 */
  ASSERT(u.r.commit == 3);
  ur_stop(&u);
}

/* Paper §8 / thesis §6.4: a new leader appends a no-op of its term at
** once (and sends it to every follower). */
static void test_raft_leader_noop(void) {
  struct ur_node u;
  struct raft_run runs[1] = {{1, 1}};
  struct raft_saved s = ur_saved(1, 0, 0, 4, runs, 1);
  const struct raft_action *a;
  memset(&u, 0, sizeof(u));
  ASSERT(ur_make_leader(&u, 3, &s));
  a = ur_act(&u, RAFT_APPEND, 0);
  ASSERT(a != NULL && (a->flags & RAFT_APPEND_NOOP) && a->lo == 5 &&
         a->hi == 5 && a->msg.runs[0].term == 2);
  ASSERT(u.r.last_index == 5);
  ASSERT(ur_nsent(&u, RAFT_MSG_APPEND, 2) == 1 &&
         ur_nsent(&u, RAFT_MSG_APPEND, 3) == 1);
  ur_stop(&u);
}

/* ------------------------------------------------ 6. persistence order */

/* Paper Fig. 2: currentTerm and votedFor are "updated on stable storage
** before responding to RPCs".  A granted vote: SAVE_STATE (term, vote)
** comes before the answer (which the driver holds until it is durable,
** R1).  A candidate saves its term and vote before asking; a pre-vote
** saves nothing (it changes nothing). */
static void test_raft_persist_vote_order(void) {
  struct ur_node u;
  struct raft_msg m;
  const struct raft_action *a;
  int save, send;
  memset(&u, 0, sizeof(u));
  ASSERT(ur_start(&u, 2, 3, NULL) == URSULA_OK);
  m = ur_m(RAFT_MSG_VOTE, 3, 2, 5);
  ur_msg(&u, &m);
  save = ur_pos(&u, RAFT_SAVE_STATE, 0);
  send = ur_pos(&u, RAFT_SEND, RAFT_MSG_VOTE_RESP);
  ASSERT(save >= 0 && send >= 0 && save < send);
  a = ur_act(&u, RAFT_SAVE_STATE, 0);
  ASSERT(a != NULL && a->term == 5 && a->vote == 3);
  a = ur_sent(&u, RAFT_MSG_VOTE_RESP, 3, 0);
  ASSERT(a != NULL && !(a->msg.flags & RAFT_F_REJECT) && a->msg.term == 5);
  /* a second candidate of the same term is refused */
  m = ur_m(RAFT_MSG_VOTE, 1, 2, 5);
  ur_msg(&u, &m);
  a = ur_sent(&u, RAFT_MSG_VOTE_RESP, 1, 0);
  ASSERT(a != NULL && (a->msg.flags & RAFT_F_REJECT));
  ur_stop(&u);

  memset(&u, 0, sizeof(u));
  ASSERT(ur_start(&u, 1, 3, NULL) == URSULA_OK);
  while (u.r.role != RAFT_PRECANDIDATE) ur_tick(&u);
  ASSERT(ur_act(&u, RAFT_SAVE_STATE, 0) == NULL); /* pre-vote */
  m = ur_m(RAFT_MSG_PREVOTE_RESP, 2, 1, 1);
  ur_msg(&u, &m);
  ASSERT(u.r.role == RAFT_CANDIDATE);
  save = ur_pos(&u, RAFT_SAVE_STATE, 0);
  send = ur_pos(&u, RAFT_SEND, RAFT_MSG_VOTE);
  ASSERT(save >= 0 && send > save);
  ur_stop(&u);
}

/* Thesis §3.8 (raft.md §8, bug 3): a follower acknowledges only entries
** it holds durably: the acknowledgment is held for its last entry. */
static void test_raft_ack_durable(void) {
  struct ur_node u;
  struct raft_msg m;
  const struct raft_action *a;
  memset(&u, 0, sizeof(u));
  ASSERT(ur_start(&u, 2, 3, NULL) == URSULA_OK);
  m = ur_append(1, 2, 1, 0, 0, 3, 1, 0);
  ur_msg(&u, &m);
  a = ur_act(&u, RAFT_APPEND, 0);
  ASSERT(a != NULL && a->lo == 1 && a->hi == 3 && (a->flags & RAFT_APPEND_MSG));
  a = ur_sent(&u, RAFT_MSG_APPEND_RESP, 1, 0);
  ASSERT(a != NULL && a->msg.index == 3);
  ASSERT(a != NULL && a->after_index == 3 && a->after_term == 1);
  ASSERT(ur_pos(&u, RAFT_APPEND, 0) < ur_pos(&u, RAFT_SEND, 0));
  ur_stop(&u);
}

/* Paper Fig. 2: success means the follower's log matches the leader's
** through prev + n; entries after that may be another leader's.  The
** acknowledgment is prev + n, never the follower's last index. */
static void test_raft_ack_prev_len(void) {
  struct ur_node u;
  struct raft_run runs[1] = {{1, 1}};
  struct raft_saved s = ur_saved(1, 0, 0, 10, runs, 1);
  struct raft_msg m;
  const struct raft_action *a;
  memset(&u, 0, sizeof(u));
  ASSERT(ur_start(&u, 2, 3, &s) == URSULA_OK);
  /* the leader of term 2 holds 1..6 of term 1, not 7..10 */
  m = ur_append(1, 2, 2, 4, 1, 2, 1, 0);
  ur_msg(&u, &m);
  a = ur_sent(&u, RAFT_MSG_APPEND_RESP, 1, 0);
  ASSERT(a != NULL && a->msg.index == 6 && a->msg.last == 10);
  ur_stop(&u);
}

/* ------------------------------------------ 7. parallel leader write */

/* Thesis §10.2.1: the leader sends new entries before its own write is
** durable, and counts itself only once it is: with one follower's
** acknowledgment (2 of 3 needed) nothing commits until LOG_DURABLE. */
static void test_raft_leader_counts_self_durable(void) {
  struct ur_node u;
  struct raft_msg m;
  const struct raft_action *a;
  memset(&u, 0, sizeof(u));
  ASSERT(ur_leader_replicating(&u, 8, 0, 8, NULL));
  ur_all_durable(&u);
  ASSERT(u.r.commit == 1);
  ASSERT(ur_propose(&u, 2) == URSULA_OK && u.out.index == 2);
  ASSERT(ur_pos(&u, RAFT_APPEND, 0) >= 0);
  a = ur_sent(&u, RAFT_MSG_APPEND, 2, 0);
  ASSERT(a != NULL && a->msg.n == 2 && a->after_index == 0);
  m = ur_ack(2, 1, 1, 3);
  ur_msg(&u, &m);
  ASSERT(ur_act(&u, RAFT_COMMIT, 0) == NULL && u.r.commit == 1);
  ur_in2(&u, RAFT_IN_LOG_DURABLE, 1, 3);
  a = ur_act(&u, RAFT_COMMIT, 0);
  ASSERT(a != NULL && a->hi == 3);
  ur_stop(&u);
}

/* R5 (canonical/raft#320): a leader whose write fails steps down, takes
** no proposal, answers no message until recovered, and never gives an
** index of its term to a second entry. */
static void test_raft_storage_failed_leader(void) {
  struct ur_node u;
  struct raft_msg m;
  unsigned k;
  memset(&u, 0, sizeof(u));
  ASSERT(ur_leader_replicating(&u, 8, 0, 8, NULL));
  ur_all_durable(&u);
  ASSERT(ur_propose(&u, 2) == URSULA_OK && u.out.index == 2);
  ur_in(&u, RAFT_IN_STORAGE_FAILED);
  ASSERT(u.r.role == RAFT_FOLLOWER);
  ASSERT(ur_propose(&u, 1) == URSULA_EAGAIN);
  m = ur_m(RAFT_MSG_VOTE, 3, 1, 9);
  m.index = 100;
  m.log_term = 9;
  ur_msg(&u, &m);
  ASSERT(u.out.n == 0 && u.r.term == 1);
  m = ur_append(2, 1, 1, 1, 1, 0, 0, 1);
  ur_msg(&u, &m);
  ASSERT(u.out.n == 0);
  for (k = 0; k < 30; k++) ur_tick(&u); /* no campaign either */
  ASSERT(u.r.role == RAFT_FOLLOWER);
  ASSERT(ur_in2(&u, RAFT_IN_STORAGE_RECOVERED, 1, 1) == URSULA_OK);
  ASSERT(u.r.last_index == 1);
  ASSERT(ur_act(&u, RAFT_SAVE_STATE, 0) != NULL); /* saved again */
  /* entries 2..3 of term 1 may be on followers: term 1 never reuses them */
  ASSERT(u.r.role != RAFT_LEADER || u.r.term > 1);
  ur_stop(&u);
}

/* R4 (etcd async_storage_writes_append_aba_race): a completion for an
** entry that was since replaced is ignored: entries 1..5 of term 1 are
** written, 3..5 are replaced by 3..4 of term 2 before the first sync
** comes back; its LOG_DURABLE(1, 5) and LOG_DURABLE(1, 4) do not make
** the new entries durable. */
static void test_raft_durable_aba(void) {
  struct ur_node u;
  struct raft_msg m;
  memset(&u, 0, sizeof(u));
  ASSERT(ur_start(&u, 2, 3, NULL) == URSULA_OK);
  m = ur_append(1, 2, 1, 0, 0, 5, 1, 0);
  ur_msg(&u, &m);
  m = ur_append(3, 2, 2, 2, 1, 2, 2, 0);
  ur_msg(&u, &m);
  ASSERT(ur_act(&u, RAFT_TRUNCATE, 0) != NULL && u.r.last_index == 4);
  ur_in2(&u, RAFT_IN_LOG_DURABLE, 1, 5);
  ur_in2(&u, RAFT_IN_LOG_DURABLE, 1, 4);
  ASSERT(u.r.durable_index == 0);
  ASSERT(u.r.stats.stale_durable == 2);
  ur_in2(&u, RAFT_IN_LOG_DURABLE, 1, 2);
  ASSERT(u.r.durable_index == 2);
  ur_in2(&u, RAFT_IN_LOG_DURABLE, 2, 4);
  ASSERT(u.r.durable_index == 4);
  ur_stop(&u);
}

/* raft.md §8 bug 7 (etcd-io/etcd#3519): a heartbeat moves the commit
** only within the prefix the follower shares with the leader.  This
** follower holds 4..5 of an old term that the new leader never had. */
static void test_raft_heartbeat_commit(void) {
  struct ur_node u;
  struct raft_run runs[1] = {{1, 1}};
  struct raft_saved s = ur_saved(1, 0, 3, 5, runs, 1);
  struct raft_msg m;
  memset(&u, 0, sizeof(u));
  ASSERT(ur_start(&u, 2, 3, &s) == URSULA_OK);
  /* leader 1 of term 2, commit 6, knows no match for node 2 yet: it names
  ** entry 0; a commit beyond that must not be taken */
  m = ur_m(RAFT_MSG_HEARTBEAT, 1, 2, 2);
  m.commit = 6;
  m.index = 0;
  ur_msg(&u, &m);
  ASSERT(ur_act(&u, RAFT_COMMIT, 0) == NULL && u.r.commit == 3);
  ASSERT(ur_sent(&u, RAFT_MSG_HEARTBEAT_RESP, 1, 0) != NULL);
  /* it learns the match 3 (term 1): the commit may move to 3, no further */
  m.index = 3;
  m.log_term = 1;
  ur_msg(&u, &m);
  ASSERT(u.r.commit == 3 && ur_act(&u, RAFT_COMMIT, 0) == NULL);
  /* the leader's side: its heartbeat carries min(match, commit) */
  ur_stop(&u);
  memset(&u, 0, sizeof(u));
  ASSERT(ur_leader_replicating(&u, 8, 0, 8, NULL));
  ur_all_durable(&u);
  ASSERT(u.r.commit == 1);
  ur_tick(&u);
  ASSERT(ur_sent(&u, RAFT_MSG_HEARTBEAT, 3, 0) != NULL &&
         ur_sent(&u, RAFT_MSG_HEARTBEAT, 3, 0)->msg.commit == 0);
  ASSERT(ur_sent(&u, RAFT_MSG_HEARTBEAT, 2, 0) != NULL &&
         ur_sent(&u, RAFT_MSG_HEARTBEAT, 2, 0)->msg.commit == 1);
  ur_stop(&u);
}

/* -------------------------------------------------------- 8. snapshots */

/* Paper §7: a follower whose next entry the leader has compacted away
** gets the snapshot (SEND_SNAPSHOT), and nothing else until the stream
** ends; then the leader probes after it, and replicates once answered. */
static void test_raft_snapshot_send(void) {
  struct ur_node u;
  struct raft_run runs[1] = {{1, 1}};
  struct raft_saved s = ur_saved(1, 0, 10, 10, runs, 1);
  struct raft_msg m;
  const struct raft_action *a;
  memset(&u, 0, sizeof(u));
  ASSERT(ur_make_leader(&u, 3, &s));
  ur_all_durable(&u);
  m = ur_ack(3, 1, 2, 11); /* node 3 is up to date */
  ur_msg(&u, &m);
  ASSERT(u.r.commit == 11);
  ASSERT(ur_in2(&u, RAFT_IN_COMPACTED, 1, 10) == URSULA_OK);
  ASSERT(u.r.snap_index == 10);
  /* node 2 refuses the probe: it holds nothing */
  m = ur_m(RAFT_MSG_APPEND_RESP, 2, 1, 2);
  m.flags = RAFT_F_REJECT;
  m.index = 10;
  m.hint = 0;
  m.log_term = 0;
  ur_msg(&u, &m);
  a = ur_act(&u, RAFT_SEND_SNAPSHOT, 0);
  ASSERT(a != NULL && a->peer == 2 && a->hi == 10 && a->term == 1);
  ASSERT(ur_nsent(&u, RAFT_MSG_APPEND, 2) == 0);
  ASSERT(ur_propose(&u, 1) == URSULA_OK);
  ASSERT(ur_nsent(&u, RAFT_MSG_APPEND, 2) == 0); /* not while streaming */
  ASSERT(ur_nsent(&u, RAFT_MSG_APPEND, 3) == 1);
  ur_peer_in(&u, RAFT_IN_SNAP_SENT, 2);
  m = ur_ack(2, 1, 2, 10); /* installed */
  ur_msg(&u, &m);
  a = ur_sent(&u, RAFT_MSG_APPEND, 2, 0);
  ASSERT(a != NULL && a->msg.index == 10 && a->msg.n == 2);
  ASSERT(u.r.peers[0].state == RAFT_REPLICATE);
  ur_stop(&u);
}

/* Paper §7: "If existing log entry has same index and term as snapshot's
** last included entry, retain log entries following it"; otherwise the
** whole log goes. */
static void test_raft_snapshot_install_suffix(void) {
  struct ur_node u;
  struct raft_run runs[1] = {{1, 1}};
  struct raft_saved s = ur_saved(2, 0, 2, 10, runs, 1);
  struct raft_msg m;
  const struct raft_action *a;
  uint64_t t;
  memset(&u, 0, sizeof(u));
  ASSERT(ur_start(&u, 2, 3, &s) == URSULA_OK);
  m = ur_m(RAFT_MSG_SNAPSHOT, 1, 2, 2);
  m.index = 5;
  m.log_term = 1;
  ur_msg(&u, &m);
  a = ur_act(&u, RAFT_INSTALL_SNAPSHOT, 0);
  ASSERT(a != NULL && a->hi == 5 && a->term == 1 && a->peer == 1);
  ur_in2(&u, RAFT_IN_SNAP_INSTALLED, 1, 5);
  ASSERT(u.r.snap_index == 5 && u.r.last_index == 10 && u.r.commit == 5);
  a = ur_sent(&u, RAFT_MSG_APPEND_RESP, 1, 0);
  ASSERT(a != NULL && a->msg.index == 5);
  ur_stop(&u);

  memset(&u, 0, sizeof(u));
  ASSERT(ur_start(&u, 2, 3, &s) == URSULA_OK);
  m = ur_m(RAFT_MSG_SNAPSHOT, 1, 2, 3);
  m.index = 5;
  m.log_term = 3; /* its entry 5 is of term 1: conflict */
  ur_msg(&u, &m);
  ASSERT(ur_act(&u, RAFT_INSTALL_SNAPSHOT, 0) != NULL);
  ur_in2(&u, RAFT_IN_SNAP_INSTALLED, 3, 5);
  ASSERT(u.r.snap_index == 5 && u.r.last_index == 5);
  ASSERT(raft_term_at(&u.r, 5, &t) && t == 3 && !raft_term_at(&u.r, 6, &t));
  ur_stop(&u);
}

/* A leader tells the followers a new commit index at once (a heartbeat
** carries it, up to what each holds: raft.c, HEARTBEAT), not at its next
** tick, so that they apply -- and answer their reads and the writes they
** forwarded -- a round trip after the leader does (etcd: bcastAppend
** after maybeCommit).  One round: a read waiting for the commit does not
** make it two. */
static void test_raft_commit_notify(void) {
  struct ur_node u;
  struct raft_msg m;
  const struct raft_action *a;
  memset(&u, 0, sizeof(u));
  ASSERT(ur_make_leader(&u, 3, NULL));
  ur_all_durable(&u);
  m = ur_ack(2, 1, 1, 1); /* the no-op: a quorum with the leader */
  ur_msg(&u, &m);
  ASSERT(u.r.commit == 1);
  a = ur_sent(&u, RAFT_MSG_HEARTBEAT, 2, 0);
  ASSERT(a != NULL && a->msg.commit == 1 && a->msg.index == 1);
  a = ur_sent(&u, RAFT_MSG_HEARTBEAT, 3, 0); /* holds nothing known yet */
  ASSERT(a != NULL && a->msg.commit == 0);
  ASSERT(ur_nsent(&u, RAFT_MSG_HEARTBEAT, 0) == 2);
  /* node 3 acknowledges the entry, committed already: it learns so now */
  m = ur_ack(3, 1, 1, 1);
  ur_msg(&u, &m);
  a = ur_sent(&u, RAFT_MSG_HEARTBEAT, 3, 0);
  ASSERT(a != NULL && a->msg.commit == 1);
  ASSERT(ur_nsent(&u, RAFT_MSG_HEARTBEAT, 0) == 1);
  m = ur_ack(2, 1, 1, 1); /* nothing new to tell: no message */
  ur_msg(&u, &m);
  ASSERT(ur_nsent(&u, RAFT_MSG_HEARTBEAT, 0) == 0);
  ur_stop(&u);
}

/* ------------------------------------------------------ 9. read barrier */

/* Thesis §6.4, ReadIndex: (1) the leader waits until an entry of its term
** is committed, (2) records the commit index, (3) confirms it is still
** the leader with a round of heartbeats answered by a quorum, then (4)
** the read is served at that index.  A follower forwards the request. */
static void test_raft_read_barrier(void) {
  struct ur_node u, f;
  struct raft_msg m;
  const struct raft_action *a;
  uint64_t seq;
  memset(&u, 0, sizeof(u));
  ASSERT(ur_make_leader(&u, 3, NULL));
  ur_all_durable(&u);
  ur_read(&u, 9);
  ASSERT(ur_act(&u, RAFT_READ_READY, 0) == NULL); /* no commit of term 1 */
  ASSERT(ur_nsent(&u, RAFT_MSG_HEARTBEAT, 0) == 0);
  m = ur_ack(2, 1, 1, 1);
  ur_msg(&u, &m);
  ASSERT(u.r.commit == 1);
  ASSERT(ur_act(&u, RAFT_READ_READY, 0) == NULL);
  ASSERT(ur_nsent(&u, RAFT_MSG_HEARTBEAT, 0) == 2);
  a = ur_sent(&u, RAFT_MSG_HEARTBEAT, 3, 0);
  seq = a != NULL ? a->msg.ctx : 0;
  ASSERT(seq > 0);
  /* an answer to an older heartbeat does not count */
  m = ur_m(RAFT_MSG_HEARTBEAT_RESP, 3, 1, 1);
  m.ctx = seq - 1;
  ur_msg(&u, &m);
  ASSERT(ur_act(&u, RAFT_READ_READY, 0) == NULL);
  m.ctx = seq;
  ur_msg(&u, &m);
  a = ur_act(&u, RAFT_READ_READY, 0);
  ASSERT(a != NULL && a->ctx == 9 && a->hi == 1);
  /* a read at a leader that is deposed before the round ends: refused */
  ur_read(&u, 10);
  m = ur_m(RAFT_MSG_APPEND, 2, 1, 2);
  ur_msg(&u, &m);
  a = ur_act(&u, RAFT_READ_READY, 0);
  ASSERT(a != NULL && a->ctx == 10 && a->hi == 0);
  ur_stop(&u);

  /* a follower forwards, and passes the leader's answer on */
  memset(&f, 0, sizeof(f));
  ASSERT(ur_start(&f, 2, 3, NULL) == URSULA_OK);
  m = ur_m(RAFT_MSG_HEARTBEAT, 1, 2, 1);
  ur_msg(&f, &m);
  ur_read(&f, 5);
  a = ur_sent(&f, RAFT_MSG_READ_INDEX, 1, 0);
  ASSERT(a != NULL && a->msg.ctx == 5);
  m = ur_m(RAFT_MSG_READ_INDEX_RESP, 1, 2, 1);
  m.ctx = 5;
  m.index = 7;
  ur_msg(&f, &m);
  a = ur_act(&f, RAFT_READ_READY, 0);
  ASSERT(a != NULL && a->ctx == 5 && a->hi == 7);
  ur_stop(&f);
}

/* ----------------------------------------------- 10. leadership transfer */

/* Thesis §3.10: the leader stops taking proposals, brings the target up
** to date, and sends TimeoutNow; the target campaigns at once, without
** pre-vote, and its votes are granted although the lease holds. */
static void test_raft_transfer(void) {
  static struct ucl cl;
  unsigned l, t, k;
  uint64_t term;
  ucl_init(&cl, 3);
  l = ucl_elect(&cl, 200);
  ASSERT(l != 0);
  if (l == 0) return;
  t = l == 3 ? 2 : 3;
  /* the target falls behind */
  cl.link[l][t] = 0;
  for (k = 0; k < 5; k++) ASSERT(ucl_propose(&cl, l, 2) == URSULA_OK);
  ucl_tick(&cl, 2);
  ASSERT(cl.node[t].r.last_index < cl.node[l].r.last_index);
  cl.link[l][t] = 1;
  term = cl.node[l].r.term;
  ASSERT(ucl_transfer(&cl, l, t) == URSULA_OK);
  ASSERT(cl.node[l].r.transfer_to == t);
  ASSERT(ucl_propose(&cl, l, 1) == URSULA_EAGAIN); /* stop proposing */
  ucl_deliver(&cl);
  for (k = 0; k < 10 && ucl_leader(&cl) != t; k++) ucl_tick(&cl, 1);
  ASSERT(ucl_leader(&cl) == t);
  ASSERT(cl.node[t].r.term == term + 1);
  ucl_free(&cl);
}

/* Thesis §3.10: a transfer that does not finish within an election
** timeout is abandoned, and the leader takes proposals again. */
static void test_raft_transfer_abort(void) {
  static struct ucl cl;
  unsigned l, t;
  ucl_init(&cl, 3);
  l = ucl_elect(&cl, 200);
  ASSERT(l != 0);
  if (l == 0) return;
  t = l == 3 ? 2 : 3;
  cl.link[l][t] = 0; /* the target never catches up */
  ASSERT(ucl_propose(&cl, l, 1) == URSULA_OK);
  ASSERT(ucl_transfer(&cl, l, t) == URSULA_OK);
  ASSERT(ucl_propose(&cl, l, 1) == URSULA_EAGAIN);
  ucl_tick(&cl, 10);
  ASSERT(ucl_leader(&cl) == l);
  ASSERT(ucl_propose(&cl, l, 1) == URSULA_OK);
  ucl_free(&cl);
}

/* LEAVING (raft.c; a graceful stop, thesis §3.10's transfer): a leader
** told LEAVE hands leadership to a peer that holds its log; from then on
** it never leads again -- it obeys no TimeoutNow and does not campaign
** when the new leader falls silent -- and its messages say LEAVING, so
** the others refuse to transfer leadership back to it.  It still votes:
** the two others elect a leader without it being a candidate. */
static void test_raft_leave(void) {
  static struct ucl cl;
  unsigned l, n, o, k, led = 0;
  struct raft_msg m;
  ucl_init(&cl, 3);
  l = ucl_elect(&cl, 200);
  ASSERT(l != 0);
  if (l == 0) return;
  ASSERT(ucl_propose(&cl, l, 3) == URSULA_OK);
  ucl_tick(&cl, 2);
  ASSERT(ucl_leave(&cl, l) == URSULA_OK);
  ASSERT(cl.node[l].r.transfer_to != 0);
  ASSERT(ur_nsent(&cl.node[l], RAFT_MSG_TIMEOUT_NOW, 0) == 1);
  ASSERT(ur_sent(&cl.node[l], RAFT_MSG_TIMEOUT_NOW, 0, 0)->msg.flags &
         RAFT_F_LEAVING);
  ucl_deliver(&cl);
  for (k = 0; k < 10 && (ucl_leader(&cl) == l || ucl_leader(&cl) == 0); k++)
    ucl_tick(&cl, 1);
  n = ucl_leader(&cl);
  ASSERT(n != 0 && n != l);
  if (n == 0 || n == l) return;
  o = 6 - l - n;
  /* the new leader heard LEAVING: it will not hand leadership back */
  ASSERT(raft_peer(&cl.node[n].r, l)->leaving);
  ASSERT(!raft_peer(&cl.node[n].r, o)->leaving);
  ASSERT(ucl_transfer(&cl, n, l) == URSULA_EAGAIN);
  /* a TimeoutNow (a stale one, a spread that did not know) changes nothing */
  m = ur_m(RAFT_MSG_TIMEOUT_NOW, n, l, cl.node[n].r.term);
  ucl_send(&cl, n, &m);
  ucl_deliver(&cl);
  ucl_tick(&cl, 3);
  ASSERT(ucl_leader(&cl) == n);
  /* the new leader goes silent: the third node leads next, never l */
  ucl_cut(&cl, n, 1);
  for (k = 0; k < 200; k++) {
    ucl_tick(&cl, 1);
    if (cl.node[l].r.role == RAFT_LEADER ||
        cl.node[l].r.role == RAFT_CANDIDATE ||
        cl.node[l].r.role == RAFT_PRECANDIDATE)
      led = 1;
  }
  ASSERT(!led);
  ASSERT(cl.node[o].r.role == RAFT_LEADER);
  ASSERT(cl.node[o].r.term > cl.node[n].r.term);
  ASSERT(ucl_propose(&cl, o, 1) == URSULA_OK);
  ucl_tick(&cl, 2);
  ASSERT(cl.node[o].r.commit == cl.node[o].r.last_index); /* l still acks */
  ucl_free(&cl);
}

/* LEAVING: the mark clears when the node is heard from without the flag:
** a node that stopped and came back is a normal member again, and
** leadership may be handed to it.  A LEAVE given to a follower makes it
** hand nothing, and a leader whose peers are all leaving has nobody to
** hand over to (EAGAIN). */
static void test_raft_leave_clears(void) {
  static struct ucl cl;
  unsigned l, f, k;
  ucl_init(&cl, 3);
  l = ucl_elect(&cl, 200);
  ASSERT(l != 0);
  if (l == 0) return;
  f = l == 1 ? 2 : 1;
  ASSERT(ucl_leave(&cl, f) == URSULA_OK);
  ASSERT(cl.node[f].r.leaving && cl.node[f].r.transfer_to == 0);
  ucl_tick(&cl, 2);
  ASSERT(raft_peer(&cl.node[l].r, f)->leaving);
  ASSERT(ucl_transfer(&cl, l, f) == URSULA_EAGAIN);
  ASSERT(ucl_leader(&cl) == l);
  ucl_restart(&cl, f); /* it stopped and came back */
  for (k = 0; k < 3; k++) ucl_tick(&cl, 1);
  ASSERT(!raft_peer(&cl.node[l].r, f)->leaving);
  ASSERT(ucl_transfer(&cl, l, f) == URSULA_OK);
  ucl_deliver(&cl);
  for (k = 0; k < 10 && ucl_leader(&cl) != f; k++) ucl_tick(&cl, 1);
  ASSERT(ucl_leader(&cl) == f);
  { /* both others leaving: nobody to hand over to */
    struct ur_node u;
    struct raft_msg m;
    unsigned i;
    memset(&u, 0, sizeof(u));
    ASSERT(ur_make_leader(&u, 3, NULL));
    for (i = 2; i <= 3; i++) {
      m = ur_m(RAFT_MSG_HEARTBEAT_RESP, i, 1, u.r.term);
      m.flags = RAFT_F_LEAVING;
      ur_msg(&u, &m);
    }
    ASSERT(ur_in(&u, RAFT_IN_LEAVE) == URSULA_EAGAIN);
    ASSERT(u.r.transfer_to == 0 && u.r.role == RAFT_LEADER);
    ur_stop(&u);
  }
  { /* a transfer under way to a peer that says LEAVING is abandoned at
    ** once: the leader takes proposals again */
    struct ur_node u;
    struct raft_msg m;
    memset(&u, 0, sizeof(u));
    ASSERT(ur_make_leader(&u, 3, NULL));
    ASSERT(ur_peer_in(&u, RAFT_IN_TRANSFER, 2) == URSULA_OK);
    ASSERT(ur_propose(&u, 1) == URSULA_EAGAIN);
    m = ur_m(RAFT_MSG_HEARTBEAT_RESP, 2, 1, u.r.term);
    m.flags = RAFT_F_LEAVING;
    ur_msg(&u, &m);
    ASSERT(u.r.transfer_to == 0);
    ASSERT(ur_propose(&u, 1) == URSULA_OK);
    ur_stop(&u);
  }
  ucl_free(&cl);
}

/* STAY (LEAVING ended without a stop: maintenance over): the leader that
** left hands over (LEAVE), then, told STAY, is heard without the flag:
** its peers clear the mark and a transfer to it is taken again, and it
** leads once more. */
static void test_raft_stay(void) {
  static struct ucl cl;
  unsigned l, o, k;
  ucl_init(&cl, 3);
  l = ucl_elect(&cl, 200);
  ASSERT(l != 0);
  if (l == 0) return;
  o = l == 1 ? 2 : 1;
  ASSERT(ucl_leave(&cl, l) == URSULA_OK);
  ucl_deliver(&cl);
  for (k = 0; k < 10 && ucl_leader(&cl) == l; k++) ucl_tick(&cl, 1);
  ASSERT(ucl_leader(&cl) != l && ucl_leader(&cl) != 0);
  ucl_tick(&cl, 2);
  ASSERT(raft_peer(&cl.node[ucl_leader(&cl)].r, l)->leaving);
  ASSERT(ucl_stay(&cl, l) == URSULA_OK);
  ASSERT(!cl.node[l].r.leaving);
  for (k = 0; k < 3; k++) ucl_tick(&cl, 1);
  o = ucl_leader(&cl);
  ASSERT(!raft_peer(&cl.node[o].r, l)->leaving);
  ASSERT(ucl_transfer(&cl, o, l) == URSULA_OK);
  ucl_deliver(&cl);
  for (k = 0; k < 10 && ucl_leader(&cl) != l; k++) ucl_tick(&cl, 1);
  ASSERT(ucl_leader(&cl) == l);
  ucl_free(&cl);
}

/* --------------------------------------------------- 11. membership */

/* Static membership: 1, 3 or 5 voters; a message from another cluster, to
** another node, from a stranger or from this node itself is dropped and
** counted, and changes nothing. */
static void test_raft_membership_ids(void) {
  struct ur_node u;
  struct raft_config c;
  struct raft_msg m;
  memset(&u, 0, sizeof(u));
  ur_config(&u, &c, 1, 3);
  c.n_voters = 2;
  ASSERT(ur_start_cfg(&u, &c, NULL) == URSULA_EINVAL);
  c.n_voters = 4;
  c.voters[3] = 4;
  ASSERT(ur_start_cfg(&u, &c, NULL) == URSULA_EINVAL);
  ur_config(&u, &c, 9, 3);
  ASSERT(ur_start_cfg(&u, &c, NULL) == URSULA_EINVAL); /* not a voter */
  ur_config(&u, &c, 1, 5);
  ASSERT(ur_start_cfg(&u, &c, NULL) == URSULA_OK);
  ur_stop(&u);
  ASSERT(ur_start(&u, 2, 3, NULL) == URSULA_OK);
  m = ur_append(1, 2, 5, 0, 0, 1, 5, 0);
  m.cluster_id = UR_CLUSTER + 1;
  ur_msg(&u, &m);
  m.cluster_id = UR_CLUSTER;
  m.to = 3;
  ur_msg(&u, &m);
  m.to = 2;
  m.from = 4;
  ur_msg(&u, &m);
  m.from = 2;
  ur_msg(&u, &m);
  ASSERT(u.r.stats.foreign == 4);
  ASSERT(u.r.term == 0 && u.r.last_index == 0 && u.out.n == 0);
  m.from = 1;
  ur_msg(&u, &m);
  ASSERT(u.r.term == 5 && u.r.last_index == 1);
  ur_stop(&u);
}

/* A single voter elects itself and commits once its own write (and its
** vote) is durable; a read needs no round. */
static void test_raft_single_voter(void) {
  struct ur_node u;
  const struct raft_action *a;
  memset(&u, 0, sizeof(u));
  ASSERT(ur_make_leader(&u, 1, NULL));
  ASSERT(u.r.term == 1 && u.r.last_index == 1);
  ASSERT(ur_propose(&u, 2) == URSULA_OK && u.out.index == 2);
  ur_in2(&u, RAFT_IN_LOG_DURABLE, 1, 3);
  ASSERT(u.r.commit == 0); /* its vote for term 1 is not durable yet */
  ur_all_durable(&u);
  ASSERT(u.r.commit == 3);
  ur_read(&u, 4);
  a = ur_act(&u, RAFT_READ_READY, 0);
  ASSERT(a != NULL && a->ctx == 4 && a->hi == 3);
  ur_stop(&u);
}

/* ---------------------------------------------------------- 12. lost log */

/* LOST LOG (KAFKA-14077): a node that comes back with no state first
** polls: it follows nobody (a stale leader of a term it had left would
** count it) until every other voter told its term, answering this start's
** nonce; it takes the highest and abstains in it.  It neither grants a
** (pre-)vote nor campaigns until it holds, durably, the commit index of
** the leader of its term whose entry is of that term; then it votes from
** the next term.  Its answers say RECOVERING, and a leader forgets the
** match it had for it.  A poll is answered with the term, nothing else. */
static void test_raft_wiped_no_vote(void) {
  struct ur_node u, l;
  struct raft_saved s;
  struct raft_msg m;
  const struct raft_action *a;
  unsigned k;
  uint64_t nonce;
  memset(&u, 0, sizeof(u));
  memset(&s, 0, sizeof(s));
  s.recovering = 1;
  ASSERT(ur_start(&u, 3, 3, &s) == URSULA_OK);
  ur_tick(&u);
  a = ur_sent(&u, RAFT_MSG_PREVOTE, 1, 0);
  ASSERT(a != NULL && (a->msg.flags & RAFT_F_RECOVERING) && a->msg.ctx != 0);
  if (a == NULL) { /* (no poll: planted bug 26) */
    ur_stop(&u);
    return;
  }
  nonce = a->msg.ctx;
  /* polling: a leader of term 5 is not followed, nothing is answered */
  m = ur_append(1, 3, 5, 0, 0, 2, 5, 2);
  ur_msg(&u, &m);
  ASSERT(u.out.n == 0 && u.r.term == 0 && u.r.last_index == 0);
  m = ur_m(RAFT_MSG_PREVOTE_RESP, 1, 3, 5);
  m.flags = RAFT_F_REJECT | RAFT_F_RECOVERING;
  m.ctx = nonce;
  ur_msg(&u, &m);
  m.from = 2;
  m.term = 6;
  m.ctx = nonce + 2; /* an answer to another start's poll */
  ur_msg(&u, &m);
  for (k = 0; k < 40; k++) ur_tick(&u);
  ASSERT(u.r.term == 0 && u.r.recovering != 0); /* node 2 has not answered */
  m.ctx = nonce;
  ur_msg(&u, &m);
  ur_tick(&u);
  ASSERT(u.r.term == 6 && u.r.vote == 3 && u.r.recovering != 0);
  a = ur_act(&u, RAFT_SAVE_STATE, 0);
  ASSERT(a != NULL && a->term == 6 && a->vote == 3 && a->flags == 1);
  for (k = 0; k < 100; k++) ur_tick(&u);
  ASSERT(u.r.role == RAFT_FOLLOWER && u.r.term == 6); /* no campaign */
  m = ur_m(RAFT_MSG_PREVOTE, 2, 3, 7);
  ur_msg(&u, &m);
  a = ur_sent(&u, RAFT_MSG_PREVOTE_RESP, 2, 0);
  ASSERT(a != NULL && (a->msg.flags & RAFT_F_REJECT));
  m.type = RAFT_MSG_VOTE;
  ur_msg(&u, &m);
  a = ur_sent(&u, RAFT_MSG_VOTE_RESP, 2, 0);
  ASSERT(a != NULL && (a->msg.flags & RAFT_F_REJECT));
  ASSERT(u.r.vote == 0 && u.r.term == 7);
  /* leader 2 of term 7: entries 1..3 of term 4, 4 of term 7, commit 2 */
  m = ur_append(2, 3, 7, 0, 0, 4, 4, 2);
  m.n_runs = 2;
  m.runs[1].index = 4;
  m.runs[1].term = 7;
  ur_msg(&u, &m);
  a = ur_sent(&u, RAFT_MSG_APPEND_RESP, 2, 0);
  ASSERT(a != NULL && (a->msg.flags & RAFT_F_RECOVERING));
  ur_in2(&u, RAFT_IN_LOG_DURABLE, 7, 4);
  ASSERT(u.r.recovering != 0); /* the leader's commit 2 is of term 4 */
  m = ur_m(RAFT_MSG_HEARTBEAT, 2, 3, 7);
  m.index = 4;
  m.log_term = 7;
  m.commit = 4;
  m.last = 4; /* the leader's own commit */
  ur_msg(&u, &m);
  ASSERT(u.r.recovering == 0 && u.r.vote == 3);
  a = ur_act(&u, RAFT_SAVE_STATE, 0);
  ASSERT(a != NULL && a->flags == 0 && a->vote == 3 && a->term == 7);
  /* from the next term on it votes */
  for (k = 0; k < 20; k++) ur_tick(&u); /* the lease runs out */
  m = ur_m(RAFT_MSG_VOTE, 1, 3, 9);
  m.index = 4;
  m.log_term = 7;
  ur_msg(&u, &m);
  a = ur_sent(&u, RAFT_MSG_VOTE_RESP, 1, 0);
  ASSERT(a != NULL && !(a->msg.flags & RAFT_F_REJECT));
  /* a poll is answered with the term, and changes nothing */
  m = ur_m(RAFT_MSG_PREVOTE, 1, 3, 0);
  m.flags = RAFT_F_RECOVERING;
  ur_msg(&u, &m);
  a = ur_sent(&u, RAFT_MSG_PREVOTE_RESP, 1, 0);
  ASSERT(a != NULL && a->msg.term == 9 && (a->msg.flags & RAFT_F_REJECT));
  ASSERT(u.r.term == 9 && u.r.vote == 1);
  ur_stop(&u);

  /* the leader's side: match 1 of node 2 is forgotten */
  memset(&l, 0, sizeof(l));
  ASSERT(ur_leader_replicating(&l, 8, 0, 8, NULL));
  ASSERT(l.r.peers[0].match == 1);
  m = ur_m(RAFT_MSG_HEARTBEAT_RESP, 2, 1, 1);
  m.flags = RAFT_F_RECOVERING;
  m.last = 0;
  ur_msg(&l, &m);
  ASSERT(l.r.peers[0].match == 0);
  ASSERT(ur_sent(&l, RAFT_MSG_APPEND, 2, 0) != NULL &&
         ur_sent(&l, RAFT_MSG_APPEND, 2, 0)->msg.index == 0);
  ur_stop(&l);
}

/* LOST LOG with 5 voters: the poll waits for EVERY other voter, not a
** majority of them.  Node 5 voted for candidate 1 in term 9 and lost its
** disk; node 2's vote for 1 is still on its way.  Nodes 2, 3 and 4 (a
** majority of the others) answer term 8: taking 8 would let node 5 vote
** for another candidate in 9 while 1 wins 9 with the forgotten vote.
** Only node 1's answer (term 9) ends the poll, however long it takes. */
static void test_raft_wiped_polls_all(void) {
  struct ur_node u;
  struct raft_saved s;
  struct raft_msg m;
  const struct raft_action *a;
  unsigned k;
  uint64_t from, nonce;
  memset(&u, 0, sizeof(u));
  memset(&s, 0, sizeof(s));
  s.recovering = 1;
  ASSERT(ur_start(&u, 5, 5, &s) == URSULA_OK);
  ur_tick(&u);
  a = ur_sent(&u, RAFT_MSG_PREVOTE, 2, 0);
  ASSERT(a != NULL && (a->msg.flags & RAFT_F_RECOVERING));
  if (a == NULL) { /* (no poll: planted bug 26) */
    ur_stop(&u);
    return;
  }
  nonce = a->msg.ctx;
  for (from = 2; from <= 4; from++) {
    m = ur_m(RAFT_MSG_PREVOTE_RESP, from, 5, 8);
    m.flags = RAFT_F_REJECT | RAFT_F_RECOVERING;
    m.ctx = nonce;
    ur_msg(&u, &m);
  }
  for (k = 0; k < 100; k++) ur_tick(&u); /* 10T */
  ASSERT(u.r.term == 0 && u.r.vote == 0 && u.r.recovering != 0);
  /* still asking node 1, and only node 1 */
  for (k = 0; k < 10; k++) {
    ur_tick(&u);
    ASSERT(ur_sent(&u, RAFT_MSG_PREVOTE, 2, 0) == NULL);
    if (ur_sent(&u, RAFT_MSG_PREVOTE, 1, 0) != NULL) break;
  }
  ASSERT(k < 10);
  m = ur_m(RAFT_MSG_PREVOTE_RESP, 1, 5, 9);
  m.flags = RAFT_F_REJECT | RAFT_F_RECOVERING;
  m.ctx = nonce;
  ur_msg(&u, &m);
  ur_tick(&u);
  ASSERT(u.r.term == 9 && u.r.vote == 5);
  /* so a candidate of term 9 is refused */
  m = ur_m(RAFT_MSG_VOTE, 3, 5, 9);
  ur_msg(&u, &m);
  a = ur_sent(&u, RAFT_MSG_VOTE_RESP, 3, 0);
  ASSERT(a == NULL || (a->msg.flags & RAFT_F_REJECT));
  ASSERT(u.r.vote == 5);
  ur_stop(&u);
}

/* ------------------------------------------------------------- contract */

/* The message layout the header of raft.c states, byte for byte. */
static void test_raft_msg_layout(void) {
  ASSERT(offsetof(struct raft_msg, cluster_id) == 0);
  ASSERT(offsetof(struct raft_msg, term) == 24);
  ASSERT(offsetof(struct raft_msg, ctx) == 72);
  ASSERT(offsetof(struct raft_msg, n) == 80);
  ASSERT(offsetof(struct raft_msg, type) == 84);
  ASSERT(offsetof(struct raft_msg, n_runs) == 86);
  ASSERT(offsetof(struct raft_msg, runs) == 88);
  ASSERT(sizeof(struct raft_msg) == 152);
}

/* Election safety on a small cluster: with a leader cut off, the others
** elect one of a higher term; when it returns, it follows. */
static void test_raft_election_rejoin(void) {
  static struct ucl cl;
  unsigned l, l2, k;
  ucl_init(&cl, 5);
  l = ucl_elect(&cl, 200);
  ASSERT(l != 0);
  if (l == 0) return;
  for (k = 0; k < 3; k++) ASSERT(ucl_propose(&cl, l, 1) == URSULA_OK);
  ucl_tick(&cl, 2);
  ucl_cut(&cl, l, 1);
  ucl_tick(&cl, 40);
  l2 = ucl_leader(&cl);
  ASSERT(l2 != 0 && l2 != l && cl.node[l].r.role != RAFT_LEADER);
  ucl_cut(&cl, l, 0);
  ucl_tick(&cl, 20);
  ASSERT(ucl_leader(&cl) == l2);
  for (k = 1; k <= 5; k++) {
    ASSERT(cl.node[k].r.term == cl.node[l2].r.term);
    ASSERT(cl.node[k].r.commit == cl.node[l2].r.last_index);
  }
  ucl_free(&cl);
}

static const struct unit_case unit_raft_cases[] = {
    {"raft_timeout_random", test_raft_timeout_random},
    {"raft_prevote_no_term_inflation", test_raft_prevote_no_term_inflation},
    {"raft_prevote_stale_term", test_raft_prevote_stale_term},
    {"raft_check_quorum", test_raft_check_quorum},
    {"raft_lease_ignores_votes", test_raft_lease_ignores_votes},
    {"raft_pipeline_window", test_raft_pipeline_window},
    {"raft_byte_window", test_raft_byte_window},
    {"raft_fast_backoff", test_raft_fast_backoff},
    {"raft_stale_append_keeps_log", test_raft_stale_append_keeps_log},
    {"raft_commit_fig8", test_raft_commit_fig8},
    {"raft_leader_noop", test_raft_leader_noop},
    {"raft_persist_vote_order", test_raft_persist_vote_order},
    {"raft_ack_durable", test_raft_ack_durable},
    {"raft_ack_prev_len", test_raft_ack_prev_len},
    {"raft_leader_counts_self_durable", test_raft_leader_counts_self_durable},
    {"raft_storage_failed_leader", test_raft_storage_failed_leader},
    {"raft_durable_aba", test_raft_durable_aba},
    {"raft_heartbeat_commit", test_raft_heartbeat_commit},
    {"raft_snapshot_send", test_raft_snapshot_send},
    {"raft_snapshot_install_suffix", test_raft_snapshot_install_suffix},
    {"raft_read_barrier", test_raft_read_barrier},
    {"raft_transfer", test_raft_transfer},
    {"raft_transfer_abort", test_raft_transfer_abort},
    {"raft_membership_ids", test_raft_membership_ids},
    {"raft_single_voter", test_raft_single_voter},
    {"raft_wiped_no_vote", test_raft_wiped_no_vote},
    {"raft_wiped_polls_all", test_raft_wiped_polls_all},
    {"raft_msg_layout", test_raft_msg_layout},
    {"raft_election_rejoin", test_raft_election_rejoin},
    {"raft_commit_notify", test_raft_commit_notify},
    {"raft_leave", test_raft_leave},
    {"raft_leave_clears", test_raft_leave_clears},
    {"raft_stay", test_raft_stay},
    {NULL, NULL}};

/* Which case each planted bug of raft.c must make fail. */
static const struct {
  int plant;
  const char *name;
} unit_raft_plants[] = {{1, "raft_commit_fig8"},
                        {2, "raft_persist_vote_order"},
                        {3, "raft_ack_durable"},
                        {4, "raft_stale_append_keeps_log"},
                        {5, "raft_leader_noop"},
                        {6, "raft_wiped_no_vote"},
                        {7, "raft_read_barrier"},
                        {8, "raft_ack_prev_len"},
                        {9, "raft_storage_failed_leader"},
                        {10, "raft_leader_counts_self_durable"},
                        {11, "raft_durable_aba"},
                        {12, "raft_heartbeat_commit"},
                        {13, "raft_prevote_stale_term"},
                        {14, "raft_check_quorum"},
                        {15, "raft_lease_ignores_votes"},
                        {16, "raft_pipeline_window"},
                        {17, "raft_fast_backoff"},
                        {18, "raft_timeout_random"},
                        {19, "raft_snapshot_send"},
                        {20, "raft_snapshot_install_suffix"},
                        {21, "raft_transfer"},
                        {22, "raft_membership_ids"},
                        {23, "raft_prevote_no_term_inflation"},
                        {24, "raft_transfer_abort"},
                        {25, "raft_byte_window"},
                        {26, "raft_wiped_no_vote"},
                        {27, "raft_wiped_polls_all"},
                        {28, "raft_commit_notify"},
                        {29, "raft_leave"},
                        {30, "raft_leave_clears"},
                        {0, NULL}};
