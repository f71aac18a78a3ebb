/*
** server.c -- the server object: cores, groups, startup and shutdown.
**
** THREADING.  There are core_count cores; each is one thread running one
** event loop (loop.c).  Every core accepts connections on the shared
** listening socket and serves them to the end.  Stream state is split into
** raft_group_count groups; group g is owned by core g % core_count, and
** only that core's thread touches it.  Cores talk only by messages:
**
**     core A (connection)                core B (owns the stream's group)
**       parse request -> job  --mailbox-->  propose / apply / read
**       write response       <--mailbox--  job with its result
**
** A message to the core itself skips the mailbox: it is queued locally and
** run at the end of the current loop turn.  No lock is taken on the
** request path other than the mailbox's queue lock.
**
** WITHOUT THREADS (URSULA_ENABLE_THREADS=0) there is one core, whose loop
** runs in ursula_server_wait() on the caller, and the server starts no
** thread at all: recovery replays the groups one after another, a WAL
** sync runs on the core itself (its result still comes back as a message
** on the next turn, as from a syncer thread), and the cold tier carries
** out each request on the core (cold.c).
**
** ENVIRONMENT.  A server reads clocks and reaches the file system through
** its env (os.c): env_real() for ursula_server_start(), a simulator's
** own through server_start().  Its loops get it, and so does the cold
** tier.  (The lock on --wal-dir is a real flock() on the real directory.)
**
** SHUTDOWN.  ursula_server_stop() raises a flag and wakes every loop.  Each
** core then stops accepting, closes idle connections, ends live readers
** and finishes requests in flight (conn_drain).  A core with no connections
** left counts itself drained, but keeps serving messages for the groups it
** owns until every core is drained; then all loops stop.  A node of a
** cluster first hands over the leadership of its groups (GRACEFUL STOP,
** below), serving all the while; a second ursula_server_stop() cuts that
** short (SECOND STOP, below).
**
** RELOAD.  ursula_server_reload() (SIGHUP: main.c) reads the auth file
** into a new table on the caller's thread, then posts it to every core
** (one reference each: a struct server_auth_msg), where api_auth_take()
** swaps it for the core's old one and ends the live readers it revokes.
** The server keeps the table in force for the next reload; a table is
** freed by whoever lets it go last (auth.c, LIFETIME), so a core never
** reads freed entries and the request path takes no lock.  Messages
** from one reload reach each core in order after those of the reload
** before (auth_mu orders the posts), so every core ends on the newest.
** With --tls-cert it also loads the certificate and key again
** (tlss_creds_load) and, if they are good, swaps the server's reference
** under tls_mu: a connection takes a reference to the pair in force when
** it is accepted (conn.c) and keeps it until it closes, so the pair a
** reload replaces is freed by the last connection that used it.  A bad
** pair is logged and leaves the one in force.
**
** PLANTED BUGS.  -DSERVER_PLANT=n (default 0) compiles in one, to prove
** the tests catch it (make test-rolling-plants):
**   1  a node of a cluster stops at once, handing nothing over (the stop
**      before issue 14's graceful one): its groups wait for an election
**      timeout and an election, and the rolling restart test sees their
**      503s;
**   2  a second ursula_server_stop() during the handover is ignored (a
**      second SIGTERM or Ctrl-C did nothing before issue 14's SECOND
**      STOP): the node goes on handing over, and test/cluster.sh's
**      second-signal check sees it exit late, without the line.
*/
#include "internal.h"

#ifndef SERVER_PLANT
#define SERVER_PLANT 0
#endif
#define SERVER_BUG(n) (SERVER_PLANT == (n))

/* PLACEMENT.  A path's group is the FNV-1a hash (util_hash64) of the
** bytes that choose it, modulo the number of groups: the whole path, but
** for a stream at "/{b}/{aff}/{s}" (path-affinity-v1: api.c, BUCKETS)
** only "/{b}/{aff}", so that the streams of one affinity key share a
** group, and so its core and its leader.  A bucket's record lives in
** the group of "/{b}", the bucket route's own path.  Every lookup of a
** path's group goes through here (group.c, live.c, fork.c's jobs). */
URSULA_PRIVATE int server_group_of(const struct ursula_server *s,
                                   const char *path, size_t len) {
  struct util_bucket_path bp;
  util_bucket_path(path, len, &bp);
  return (int)(util_hash64(path, bp.group_len) % (uint64_t)s->n_groups);
}

URSULA_PRIVATE struct group *server_group(const struct ursula_server *s,
                                          int gid) {
  return s->groups[gid];
}

URSULA_PRIVATE int server_owner_of(const struct ursula_server *s, int gid) {
  return gid % s->n_cores;
}

URSULA_PRIVATE void server_send(struct core *from, int to, struct loop_msg *m) {
  m->next = NULL;
  if (from->id == to) {
    if (from->local_tail)
      from->local_tail->next = m;
    else
      from->local_head = m;
    from->local_tail = m;
  } else {
    loop_post(from->srv->cores[to].loop, m);
  }
}

static void server_check_drained(struct core *c) {
  struct ursula_server *s = c->srv;
  int i, all;
  if (!c->draining || c->drained || conn_table_count(&c->conns) > 0 ||
      c->n_flights > 0)
    return;
  c->drained = 1;
  pthread_mutex_lock(&s->mu);
  all = ++s->n_drained == s->n_cores;
  pthread_mutex_unlock(&s->mu);
  if (all) {
    for (i = 0; i < s->n_cores; i++) loop_stop(s->cores[i].loop);
  }
}

/* GRACEFUL STOP (issue 14).  A node of a cluster that is asked to stop
** (SIGTERM, SIGINT: ursula_server_stop) first hands the leadership of the
** groups it leads to other members, so that writes go on without the
** election timeout a vanished leader costs: each core tells its groups
** LEAVE at once and at every tick (raft.c, LEAVING: a transfer, thesis
** 3.10, to a member that holds the log, tried again if one is abandoned;
** the node campaigns no more, and its messages tell the others, whose
** leadership spread then skips it).  Meanwhile it serves as before:
** its clients' writes are forwarded to the new leaders.  Once no core
** leads a group, or every group it still leads has nobody to go to (the
** other members are stopping too: a whole cluster shut down at once), or
** SERVER_LEAVE_MS have passed, it stops as a single node does.  It logs
** how many groups it still leads once a second, and the outcome. */
#define SERVER_LEAVE_MS 5000

/* Stop now: every core drains (SHUTDOWN). */
static void server_stop_now(struct ursula_server *s) {
  int i;
  s->stop_requested = 1;
  for (i = 0; i < s->n_cores; i++) loop_wake(s->cores[i].loop);
}

/* One look of core c at its groups during the handover (at its start,
** then every tick): LEAVE to each, and the count it still leads; the
** look that finds every core's count 0, or the bound passed, stops. */
static void server_leave_step(struct core *c) {
  struct ursula_server *s = c->srv;
  uint64_t now = loop_now_ms(c->loop), waited;
  int g, i, led = 0, stuck = 0, total = 0, total_stuck = 0, stop = 0;
  int log_n = -1, first = 0;
  for (g = c->id; g < s->n_groups; g += s->n_cores) {
    int k = group_leave(c, s->groups[g]);
    led += k != GROUP_LEAVE_NONE;
    stuck += k == GROUP_LEAVE_STUCK;
  }
  pthread_mutex_lock(&s->mu);
  if (!c->leave_counted) {
    c->leave_counted = 1;
    s->leave_counted++;
  }
  c->leave_led = led;
  c->leave_stuck = stuck;
  if (s->leave_start_ms == 0) {
    s->leave_start_ms = now != 0 ? now : 1;
    first = 1;
  }
  for (i = 0; i < s->n_cores; i++) {
    total += s->cores[i].leave_led;
    total_stuck += s->cores[i].leave_stuck;
  }
  waited = now > s->leave_start_ms ? now - s->leave_start_ms : 0;
  if (!s->leave_done) {
    if ((s->leave_counted == s->n_cores && total == total_stuck) ||
        waited >= SERVER_LEAVE_MS) {
      s->leave_done = 1;
      stop = 1;
    } else if (s->leave_counted == s->n_cores &&
               s->leave_logged != waited / 1000 + 1) {
      s->leave_logged = waited / 1000 + 1;
      log_n = total;
    }
  }
  pthread_mutex_unlock(&s->mu);
  if (first)
    LOG_I("stopping: handing over the leadership of this node's groups "
          "first (at most %d ms)", SERVER_LEAVE_MS);
  if (log_n >= 0) LOG_I("draining: %d groups still led", log_n);
  if (!stop) return;
  if (total == 0)
    LOG_I("draining: no group led after %llu ms; stopping",
          (unsigned long long)waited);
  else if (total == total_stuck)
    LOG_W("draining: %d groups still led after %llu ms, and every other "
          "member is stopping too; stopping", total,
          (unsigned long long)waited);
  else
    LOG_W("draining: %d groups still led after %llu ms; stopping anyway "
          "(the others elect their leaders)",
          total, (unsigned long long)waited);
  server_stop_now(s);
}

/* SECOND STOP.  A second ursula_server_stop() during the handover (a
** second SIGTERM or Ctrl-C: main.c passes every signal on) ends it at
** once: the node stops as a single node does (SHUTDOWN: requests in
** flight are finished, and an append is acknowledged only once it is
** synced, so nothing acknowledged is lost), and for the groups it still
** leads the other members elect leaders after an election timeout, as
** after kill -9.  ursula_server_stop() only raises stop_hurried (it must
** stay async-signal-safe); each core, as it starts to drain, counts the
** groups it still leads, and the last core to count logs the one line.
** (A handover that ends by itself at the very moment of the second stop
** may leave a core draining uncounted: then the handover's own line is
** the last word, and this one is not logged.) */
static void server_hurry_count(struct core *c) {
  struct ursula_server *s = c->srv;
  struct group_status st;
  int g, led = 0, last, total;
  for (g = c->id; g < s->n_groups; g += s->n_cores) {
    group_status(s->groups[g], &st);
    led += st.role == RAFT_LEADER;
  }
  pthread_mutex_lock(&s->mu);
  s->hurry_led += led;
  last = ++s->hurry_counted == s->n_cores;
  total = s->hurry_led;
  pthread_mutex_unlock(&s->mu);
  (void)total; /* when logging is compiled out */
  if (last)
    LOG_W("second stop: stopping now, %d groups still led (their other "
          "members elect new leaders)", total);
}

/* ------------------------------------------------------------ syncs

   GROUP COMMIT, PIPELINED.  At the end of a loop turn a core starts a
   commit of every group it owns that has new entries and no batch in
   flight: it writes the entries to the group's WAL and queues the sync
   for the syncer threads; the core goes on serving, and each finished
   sync comes back to it as a message, on which the group applies and
   answers its batch (group_synced).  Syncs of many groups overlap
   -- the file system commits concurrent syncs together -- and no core
   ever waits for the slowest of them.  A WAL is touched by one thread at
   a time: the syncer thread only calls sync() on the descriptor, all
   bookkeeping stays with the owner (wal_flush_fd / wal_flush_done). */

struct server_sync {
  struct loop_msg msg; /* posted back to the owner when done */
  struct server_sync *next;
  struct loop *owner;
  int gid;          /* the group; -1: the core's journal; -2: a checkpoint */
  int fd;
  int *fds, n_fds;  /* a checkpoint's: each synced, then closed */
  struct os_fs *fs; /* the server env's */
  int sync_errno;   /* 0: the sync worked (all of them) */
  uint64_t t0_us;   /* when it was queued (metrics) */
};

/* Do q's syncs (on a syncer thread, or on the owner without threads). */
static void server_sync_run(struct server_sync *q) {
  int i;
  if (q->fds == NULL) {
    q->sync_errno = q->fs->sync(q->fd) != 0 ? (errno ? errno : EIO) : 0;
    return;
  }
  q->sync_errno = 0;
  for (i = 0; i < q->n_fds; i++) {
    if (q->fs->sync(q->fds[i]) != 0 && q->sync_errno == 0)
      q->sync_errno = errno ? errno : EIO;
    q->fs->close(q->fds[i]);
  }
}

struct server_syncer {
  pthread_mutex_t mu;
  pthread_cond_t work; /* a sync was queued, or stop */
  struct server_sync *head, *tail;
  int stop;
  int n_threads;
  pthread_t threads[URSULA_SYNC_THREADS];
};

#if URSULA_ENABLE_THREADS
static void *server_syncer_main(void *arg) {
  struct server_syncer *y = (struct server_syncer *)arg;
  pthread_mutex_lock(&y->mu);
  for (;;) {
    struct server_sync *q;
    while (y->head == NULL && !y->stop) pthread_cond_wait(&y->work, &y->mu);
    if (y->head == NULL) break; /* stopping, and nothing is queued */
    q = y->head;
    y->head = q->next;
    if (y->head == NULL) y->tail = NULL;
    pthread_mutex_unlock(&y->mu);
    server_sync_run(q);
    loop_post(q->owner, &q->msg);
    pthread_mutex_lock(&y->mu);
  }
  pthread_mutex_unlock(&y->mu);
  return NULL;
}
#endif

static void server_syncer_stop(struct server_syncer *y) {
  int i;
  if (y == NULL) return;
  pthread_mutex_lock(&y->mu);
  y->stop = 1;
  pthread_cond_broadcast(&y->work);
  pthread_mutex_unlock(&y->mu);
  for (i = 0; i < y->n_threads; i++) pthread_join(y->threads[i], NULL);
  pthread_cond_destroy(&y->work);
  pthread_mutex_destroy(&y->mu);
  URSULA_FREE(y);
}

/* Start the syncer threads; without threads, none (s->syncer stays NULL
** and the cores sync themselves). */
static int server_syncer_start(struct ursula_server *s, char *err) {
#if URSULA_ENABLE_THREADS
  struct server_syncer *y;
  int i;
  y = (struct server_syncer *)URSULA_MALLOC(sizeof(*y));
  if (y == NULL) return URSULA_ENOMEM;
  memset(y, 0, sizeof(*y));
  pthread_mutex_init(&y->mu, NULL);
  pthread_cond_init(&y->work, NULL);
  for (i = 0; i < URSULA_SYNC_THREADS && i < s->n_groups; i++) {
    if (pthread_create(&y->threads[i], NULL, server_syncer_main, y) != 0) {
      snprintf(err, URSULA_ERRMSG_LEN, "pthread_create: %s", strerror(errno));
      server_syncer_stop(y);
      return URSULA_ESYS;
    }
    y->n_threads++;
  }
  s->syncer = y;
#else
  (void)s;
  (void)err;
#endif
  return URSULA_OK;
}

static void server_journal_synced(struct core *c, int sync_errno);
static void server_journal_checkpointed(struct core *c, int sync_errno);

/* A sync is back on the owner: the group applies and answers its batch
** (gid -1: the core's journal, for every group in its write; -2: a
** checkpoint's syncs). */
static void server_on_synced(struct loop *l, struct loop_msg *m) {
  struct server_sync *q = (struct server_sync *)(void *)m;
  struct core *c = (struct core *)loop_get_user(l);
  c->n_flights--;
  if (q->gid != -2)
    metrics_observe_sync(&c->metrics, os_now_us() - q->t0_us,
                         q->gid == -1 ? c->n_jr_flight : 0,
                         q->sync_errno != 0);
  if (q->gid == -2)
    server_journal_checkpointed(c, q->sync_errno);
  else if (q->gid < 0)
    server_journal_synced(c, q->sync_errno);
  else
    group_synced(c, server_group(c->srv, q->gid), q->sync_errno);
  URSULA_FREE(q->fds);
  URSULA_FREE(q);
}

/* Queue q (filled in but for the message) for the syncer threads;
** without them, run it here and post its result to c's own loop. */
static void server_queue_sync(struct core *c, struct server_sync *q) {
  struct server_syncer *y = c->srv->syncer;
  q->msg.on_msg = server_on_synced;
  q->owner = c->loop;
  q->t0_us = os_now_us();
  q->fs = c->srv->env->fs;
  c->n_flights++;
  if (y == NULL) {
    server_sync_run(q);
    loop_post(c->loop, &q->msg);
    return;
  }
  pthread_mutex_lock(&y->mu);
  if (y->tail != NULL)
    y->tail->next = q;
  else
    y->head = q;
  y->tail = q;
  pthread_cond_signal(&y->work);
  pthread_mutex_unlock(&y->mu);
}

/* Queue the sync of fd for group gid (owned by c; -1: c's journal).  Without syncer
** threads it runs here and now, and its result is posted to c's own
** loop: group_synced() runs on the next turn, from the same message
** a syncer thread would post.  Without memory for the request it runs
** here and group_synced() at once. */
static void server_start_sync(struct core *c, int gid, int fd) {
  struct os_fs *fs = c->srv->env->fs;
  struct server_sync *q = (struct server_sync *)URSULA_MALLOC(sizeof(*q));
  if (q == NULL) {
    int e = fs->sync(fd) != 0 ? errno : 0;
    if (gid < 0)
      server_journal_synced(c, e);
    else
      group_synced(c, server_group(c->srv, gid), e);
    return;
  }
  memset(q, 0, sizeof(*q));
  q->gid = gid;
  q->fd = fd;
  server_queue_sync(c, q);
}

/* ------------------------------------------------------------ journal

   THE CORE'S JOURNAL (journal.c).  With --wal-dir each core has one, and
   its groups' logs append through it: a batch that group_drive() wrote
   to its log waits in jr_pending; at the end of the turn, once the
   journal's last write is durable, every waiting batch goes out in one
   journal write and one sync (on a syncer thread), and the groups in it
   apply and answer when it is back.  So a core makes one sync per turn
   however many groups it serves, and the batch grows with the load.
   CHECKPOINT: past JOURNAL_BYTES, before a write, a new generation of
   the journal starts, and a syncer thread syncs every log file of the
   core before the old one goes.  A FAILED journal write or
   sync fails the groups in it, and the journal takes nothing until a
   checkpoint mends it (the sweep tries once a second); a log file whose
   sync fails at a checkpoint leaves the journal stuck: the core takes no
   writes until a restart redoes the journal. */

/* Answer the batches of groups gids[0..n) with sync_errno. */
static void server_journal_answer(struct core *c, const int *gids, int n,
                                  int sync_errno) {
  int i;
  for (i = 0; i < n; i++)
    group_synced(c, server_group(c->srv, gids[i]), sync_errno);
}

/* A log file's sync failed while appends to it were durable only in the
** journal. */
static void server_journal_stuck(struct core *c, int g, int e) {
  char which[32];
  journal_stuck(c->journal);
  if (g >= 0)
    snprintf(which, sizeof(which), "of group %d", g);
  else
    snprintf(which, sizeof(which), "files");
  LOG_E("core %d: syncing the log %s for a journal checkpoint failed (%s); "
        "appends are durable only in the journal, so the core takes no "
        "writes until ursula is restarted (the restart writes them again "
        "from the journal)",
        c->id, which, strerror(e));
  (void)e; /* when logging is compiled out */
}

/* CHECKPOINT (journal.c, rule 4): a new generation takes the writes at
** once, and a syncer thread syncs every log file the old one covers,
** through descriptors of its own (so the core may close or replace its
** files meanwhile); when they are back, the old generation goes
** (server_journal_checkpointed).  Called with no journal write out. */
static void server_journal_checkpoint_start(struct core *c) {
  struct ursula_server *s = c->srv;
  size_t per = (size_t)(s->n_groups / s->n_cores + 1);
  struct server_sync *q = (struct server_sync *)URSULA_MALLOC(sizeof(*q));
  int *fds = (int *)URSULA_MALLOC(sizeof(int) * per);
  int g, n = 0, fd, e;
  if (q == NULL || fds == NULL || journal_rotate(c->journal) != URSULA_OK) {
    URSULA_FREE(q); /* (no memory, or no new file: the next turn tries) */
    URSULA_FREE(fds);
    return;
  }
  for (g = c->id; g < s->n_groups; g += s->n_cores) {
    if ((fd = group_lazy_open(s->groups[g])) >= 0)
      fds[n++] = fd;
    else if (fd == -2 && (e = group_sync_lazy(s->groups[g])) != 0)
      server_journal_stuck(c, g, e);
  }
  memset(q, 0, sizeof(*q));
  q->gid = -2;
  q->fd = -1;
  q->fds = fds;
  q->n_fds = n;
  c->jr_checkpoint = 1;
  server_queue_sync(c, q);
}

static void server_journal_checkpointed(struct core *c, int sync_errno) {
  c->jr_checkpoint = 0;
  if (sync_errno != 0) {
    server_journal_stuck(c, -1, sync_errno);
    return;
  }
  /* stuck meanwhile (a file synced here, not through the job, failed):
  ** the old generation stays for the restart (journal_drop_old) */
  if (journal_state(c->journal) == JOURNAL_STUCK) return;
  if (journal_drop_old(c->journal) != URSULA_OK)
    LOG_W("core %d: removing the journal's old generation failed; a "
          "restart writes its records again, which changes nothing",
          c->id);
}

/* Sync every log file of c's groups here, then start the journal anew
** (mending a broken one).  URSULA_OK, or an error (and the journal still
** broken, or stuck). */
static int server_journal_mend(struct core *c) {
  struct ursula_server *s = c->srv;
  int g, e, rc;
  for (g = c->id; g < s->n_groups; g += s->n_cores) {
    if ((e = group_sync_lazy(s->groups[g])) != 0) {
      server_journal_stuck(c, g, e);
      return URSULA_EIO;
    }
  }
  if ((rc = journal_reset(c->journal)) != URSULA_OK)
    LOG_W("core %d: starting the journal anew failed (%s); trying again "
          "later", c->id, ursula_strerror(rc));
  return rc;
}

/* End of a turn: write the waiting batches, if the last write is durable,
** and queue the sync.  Returns whether batches were answered here (a
** failure, or batches whose records a MARK made durable in their files). */
static int server_journal_kick(struct core *c) {
  struct journal *j = c->journal;
  int fd, rc, n = c->n_jr_pending;
  if (j == NULL || n == 0 || journal_in_flight(j)) return 0;
  if (!c->jr_checkpoint && journal_checkpoint_due(j))
    server_journal_checkpoint_start(c);
  rc = journal_write(j, &fd);
  c->n_jr_pending = 0;
  if (rc != URSULA_OK || fd < 0) {
    server_journal_answer(c, c->jr_pending, n, rc != URSULA_OK ? EIO : 0);
    return 1;
  }
  memcpy(c->jr_flight, c->jr_pending, sizeof(int) * (size_t)n);
  c->n_jr_flight = n;
  server_start_sync(c, -1, fd);
  return 0;
}

static void server_journal_synced(struct core *c, int sync_errno) {
  int rc = journal_flush_done(c->journal, sync_errno), n = c->n_jr_flight;
  if (rc != URSULA_OK && sync_errno == 0) sync_errno = EIO;
  if (sync_errno != 0)
    LOG_E("core %d: the journal's sync failed (%s): %d batches not written",
          c->id, strerror(sync_errno), n);
  c->n_jr_flight = 0;
  server_journal_answer(c, c->jr_flight, n, sync_errno);
}

/* The sweep, once a second: mend a broken journal. */
static void server_journal_sweep(struct core *c) {
  struct journal *j = c->journal;
  if (j == NULL || journal_state(j) != JOURNAL_BROKEN ||
      journal_in_flight(j) || c->jr_checkpoint)
    return;
  if (server_journal_mend(c) == URSULA_OK)
    LOG_I("core %d: the journal is started anew after a failed write or "
          "sync", c->id);
}

static void server_run_local(struct loop *l, struct core *c) {
  while (c->local_head != NULL) {
    struct loop_msg *m = c->local_head;
    c->local_head = m->next;
    if (c->local_head == NULL) c->local_tail = NULL;
    m->next = NULL;
    m->on_msg(l, m);
  }
}

/* End of every loop turn: notice a graceful stop's start, run same-core
** messages, start the commits of what the turn proposed (group commit:
** one WAL write and sync per group per batch), run what synchronous
** commits produced, notice a stop. */
static void server_on_turn_end(struct loop *l) {
  struct core *c = (struct core *)loop_get_user(l);
  struct group **batch = c->batch;
  /* GRACEFUL STOP: hand leadership over first (before the commits
  ** below, so that the transfers' messages leave with this turn's) */
  if (c->srv->leave_requested && !c->leaving && !c->srv->stop_requested) {
    c->leaving = 1;
    server_leave_step(c);
  }
  if (c->id == 0 && c->srv->reload_requested) { /* only without threads */
    c->srv->reload_requested = 0;
    ursula_server_reload(c->srv);
  }
  for (;;) {
    int i, n, applied = 0;
    server_run_local(l, c);
    n = c->n_dirty;
    /* take the list: continuations and new proposals refill it */
    if (n > 0) memcpy(batch, c->dirty, sizeof(*batch) * (size_t)n);
    c->n_dirty = 0;
    for (i = 0; i < n; i++) {
      struct group *g = batch[i];
      int fd;
      if (group_in_flight(g)) { /* its next batch waits for the sync */
        c->dirty[c->n_dirty++] = g;
        continue;
      }
      fd = group_drive(c, g);
      if (fd >= 0 && c->journal != NULL)
        c->jr_pending[c->n_jr_pending++] = group_id(g);
      else if (fd >= 0)
        server_start_sync(c, group_id(g), fd);
      else
        applied = 1; /* continuations may have proposed again */
    }
    /* even with no group dirty: batches wait for a write that is over */
    if (server_journal_kick(c)) applied = 1;
    if (!applied && (n == 0 || c->local_head == NULL)) break;
  }
  if (c->srv->stop_requested && !c->draining) {
    c->draining = 1;
    if (c->srv->stop_hurried) server_hurry_count(c); /* SECOND STOP */
    if (c->listening) {
      loop_del(l, c->srv->listen_fd);
      c->listening = 0;
    }
    if (c->admin_listening) {
      loop_del(l, c->srv->admin_fd);
      c->admin_listening = 0;
    }
    conn_drain(&c->conns);
    server_run_local(l, c); /* what draining queued */
  }
  if (c->srv->peer != NULL) peer_flush(c->srv->peer, c->id);
  server_check_drained(c);
}

/* A table on its way to a core (RELOAD). */
struct server_auth_msg {
  struct loop_msg msg;
  struct auth_table *t; /* one reference, the core's once taken */
};

static void server_on_auth(struct loop *l, struct loop_msg *m) {
  struct server_auth_msg *q = (struct server_auth_msg *)(void *)m;
  api_auth_take((struct core *)loop_get_user(l), q->t);
  URSULA_FREE(q);
}

/* The loop closed before it took the table. */
static void server_auth_drop(struct loop_msg *m) {
  auth_release(((struct server_auth_msg *)(void *)m)->t);
  URSULA_FREE(m);
}

static void server_on_sweep(struct loop *l, void *arg) {
  struct core *c = (struct core *)arg;
  struct ursula_server *s = c->srv;
  int g;
  server_journal_sweep(c); /* first: a group recovers only through it */
  for (g = c->id; g < s->n_groups; g += s->n_cores)
    group_sweep(c, s->groups[g]);
  group_leads_report(c);
  loop_timer_set(l, &c->sweep_timer, loop_now_ms(l) + 1000, server_on_sweep, c);
}

/* The core's loop has ended: with every batch answered, sync its groups'
** log files and remove the journal, so that a clean stop leaves logs
** that need no redo (a failure leaves the journal for the redo). */
static void server_journal_stop(struct core *c) {
  struct ursula_server *s = c->srv;
  int g;
  if (c->journal == NULL || journal_state(c->journal) == JOURNAL_STUCK ||
      journal_in_flight(c->journal) || c->n_jr_pending > 0 ||
      c->jr_checkpoint)
    return;
  for (g = c->id; g < s->n_groups; g += s->n_cores)
    if (group_sync_lazy(s->groups[g]) != 0) return;
  journal_remove(c->journal);
}

static void *server_core_main(void *arg) {
  struct core *c = (struct core *)arg;
  c->rc = loop_run(c->loop, server_on_turn_end);
  server_journal_stop(c);
  return NULL;
}

/* ------------------------------------------------------------ peers

   With --peer, the node's links to the others (peer.c): a listener, and
   one connection per (node, core).  Every group is a voter of the
   cluster (group_join): its Raft messages leave through peer_send and
   arrive through server_on_peer_raft, on the group's core; each core
   ticks its groups. */

/* A Raft message from a peer, on the core its connection belongs to:
** for that core's group (groups are spread over cores alike on every
** node: the handshake checked the counts). */
static void server_on_peer_raft(void *arg, int core, int group,
                                const struct raft_msg *m, const void *records,
                                size_t len) {
  struct ursula_server *s = (struct ursula_server *)arg;
  s->cores[core].peer_in++;
  if (group < 0 || group >= s->n_groups ||
      server_owner_of(s, group) != core) {
    LOG_W("core %d: a Raft message from node %llu for group %d, which "
          "this core does not own; dropped",
          core, (unsigned long long)m->from, group);
    return;
  }
  group_recv(&s->cores[core], s->groups[group], m, records, len);
}

/* group_send_fn: a group's Raft message to a peer, on the group's core;
** dropped (and counted by peer.c) while the link is down or full. */
static void server_raft_send(void *arg, struct group *g,
                             const struct raft_msg *m, const void *records,
                             size_t len) {
  struct ursula_server *s = (struct ursula_server *)arg;
  int gid = group_id(g);
  peer_send(s->peer, server_owner_of(s, gid), (int)m->to, gid, m, records,
            len);
}

/* group_snap_fn: a chunk of a group's snapshot image, on its core. */
static int server_send_snap(void *arg, struct group *g, uint64_t to,
                            const struct peer_snap *sn) {
  struct ursula_server *s = (struct ursula_server *)arg;
  return peer_send_snap(s->peer, server_owner_of(s, group_id(g)), (int)to,
                        sn);
}

/* group_forward_fn and group_reply_fn: writes forwarded to a leader, and
** its replies, on the group's core. */
static int server_forward(void *arg, struct group *g, uint64_t to,
                          uint64_t req, const void *cmd, size_t len) {
  struct ursula_server *s = (struct ursula_server *)arg;
  int gid = group_id(g);
  return peer_forward(s->peer, server_owner_of(s, gid), (int)to, gid, req,
                      cmd, len);
}

static void server_fwd_reply(void *arg, struct group *g, uint64_t to,
                             uint64_t req, int accepted, uint64_t term,
                             uint64_t index) {
  struct ursula_server *s = (struct ursula_server *)arg;
  int gid = group_id(g);
  peer_fwd_reply(s->peer, server_owner_of(s, gid), (int)to, gid, req,
                 accepted ? PEER_FWD_ACCEPTED : PEER_FWD_REFUSED, term, index);
}

/* A FWD or FWD_REPLY from a peer, on the core its connection belongs to. */
static void server_on_peer_fwd(void *arg, int core, uint64_t from,
                               const struct peer_item *it) {
  struct ursula_server *s = (struct ursula_server *)arg;
  struct group *g;
  if (it->group < 0 || it->group >= s->n_groups ||
      server_owner_of(s, it->group) != core)
    return;
  g = s->groups[it->group];
  if (it->kind == PEER_ITEM_FWD)
    group_recv_forward(&s->cores[core], g, from, it->req, it->records,
                       it->len);
  else
    group_recv_reply(&s->cores[core], g, it->req,
                     it->outcome == PEER_FWD_ACCEPTED, it->term, it->index);
}

/* SHEDDING (maintenance without a stop; the admin listener's
** /__ursula/leadership-shed/maintenance, api.c).  While shed_requested
** is set, each core tells its groups LEAVE at every tick, as a graceful
** stop does (raft.c, LEAVING): the node hands over what it leads, takes
** nothing back, and its peers' spread skips it -- but it keeps serving,
** forwarding its clients' writes to the new leaders, and it votes and
** holds the log as any member.  Once cleared, each core tells its groups
** STAY: its messages lose the LEAVING flag, its peers clear the mark,
** and the spread hands its preferred groups back within seconds.  A
** graceful stop under way takes over (its LEAVE is for good).  With
** every other member shedding too, a group whose leader is lost has no
** candidate until one is cleared: the route says so in the README. */
static void server_shed_step(struct core *c) {
  struct ursula_server *s = c->srv;
  int g, want = s->shed_requested != 0;
  if (!want && !c->shedding) return;
  for (g = c->id; g < s->n_groups; g += s->n_cores) {
    if (want)
      (void)group_leave(c, s->groups[g]);
    else
      group_stay(c, s->groups[g]);
  }
  if (want != c->shedding)
    LOG_I("core %d: %s", c->id,
          want ? "shedding leadership: the groups this core leads are "
                 "handed over, and none taken"
               : "shedding over: the groups may be led here again");
  c->shedding = want;
}

/* Every core ticks its cluster groups' Raft clocks (GROUP_TICK_MS). */
static void server_on_tick(struct loop *l, void *arg) {
  struct core *c = (struct core *)arg;
  struct ursula_server *s = c->srv;
  int g;
  for (g = c->id; g < s->n_groups; g += s->n_cores)
    group_tick(c, s->groups[g]);
  if (c->leaving && !s->stop_requested) server_leave_step(c);
  else if (!c->leaving && !s->stop_requested) server_shed_step(c);
  loop_timer_set(l, &c->tick_timer, loop_now_ms(l) + GROUP_TICK_MS,
                 server_on_tick, c);
}

/* With peers, every group is a voter of the cluster: the members' ids
** (before the logs are replayed: a voter of a cluster applies only
** what its leader says is committed). */
static int server_join_groups(struct ursula_server *s, char *err) {
  const struct ursula_config *cfg = &s->cfg;
  struct group_cluster cl;
  int i;
  if (cfg->peer_count <= 1) return URSULA_OK;
  memset(&cl, 0, sizeof(cl));
  cl.cluster_id = peer_cluster_hash(cfg->cluster_id);
  cl.node = (uint64_t)cfg->node_id;
  for (i = 0; i < cfg->peer_count; i++)
    cl.voters[i] = (uint64_t)cfg->peers[i].id;
  cl.n_voters = (unsigned)cfg->peer_count;
  cl.send = server_raft_send;
  cl.forward = server_forward;
  cl.reply = server_fwd_reply;
  cl.send_snap = server_send_snap;
  cl.lost_log = s->cfg.lost_log;
  cl.arg = s;
  for (i = 0; i < s->n_groups; i++)
    if (group_join(s->groups[i], &cl) != URSULA_OK) {
      snprintf(err, URSULA_ERRMSG_LEN, "group %d: bad cluster membership",
               i);
      return URSULA_EINVAL;
    }
  return URSULA_OK;
}

/* A chunk of a leader's snapshot image, on the core its connection
** belongs to: for that core's group, as a Raft message is. */
static void server_on_peer_snap(void *arg, int core, uint64_t from,
                                const struct peer_snap *sn) {
  struct ursula_server *s = (struct ursula_server *)arg;
  s->cores[core].peer_in++;
  if (sn->group < 0 || sn->group >= s->n_groups ||
      server_owner_of(s, sn->group) != core) {
    LOG_W("core %d: a snapshot chunk from node %llu for group %d, which "
          "this core does not own; dropped",
          core, (unsigned long long)from, sn->group);
    return;
  }
  group_recv_snap(&s->cores[core], s->groups[sn->group], from, sn);
}

/* The cluster secret from path (--cluster-secret-file; peer.c,
** AUTHENTICATION): the file's bytes, less one trailing "\n" or "\r\n",
** PEER_SECRET_MIN to PEER_SECRET_MAX of them.  URSULA_OK, or
** URSULA_EINVAL / URSULA_ESYS with err set.  A file that others than its
** owner may read is taken, with a warning if warn. */
static int server_read_secret(const char *path, unsigned char *out,
                              size_t *len, int warn, char *err) {
  FILE *f = fopen(path, "rb");
  struct stat st;
  unsigned char raw[PEER_SECRET_MAX + 2]; /* room to tell "too long" */
  size_t n;
  if (f == NULL) {
    snprintf(err, URSULA_ERRMSG_LEN, "cluster-secret-file %.300s: %s", path,
             strerror(errno));
    return URSULA_ESYS;
  }
  n = fread(raw, 1, sizeof(raw), f);
  if (warn && fstat(fileno(f), &st) == 0 && (st.st_mode & 077) != 0)
    LOG_W("cluster-secret-file %s can be read by others than its owner "
          "(chmod 600 it)", path);
  fclose(f);
  if (n > 0 && raw[n - 1] == '\n') n--;
  if (n > 0 && raw[n - 1] == '\r') n--;
  if (n < PEER_SECRET_MIN || n > PEER_SECRET_MAX) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "cluster-secret-file %.300s: the secret must be %d to %d bytes "
             "(one trailing newline aside); it is %s",
             path, PEER_SECRET_MIN, PEER_SECRET_MAX,
             n < PEER_SECRET_MIN ? "shorter" : "longer");
    return URSULA_EINVAL;
  }
  memcpy(out, raw, n);
  memset(raw, 0, sizeof(raw));
  *len = n;
  return URSULA_OK;
}

/* Open the peer listener and arm the links (the loops exist, not yet
** running). */
static int server_peers_start(struct ursula_server *s, char *err) {
  const struct ursula_config *cfg = &s->cfg;
  struct peer_config pc;
  struct loop *loops[URSULA_MAX_CORES];
  int i, rc;
  if (cfg->peer_count == 0) return URSULA_OK;
  memset(&pc, 0, sizeof(pc));
  pc.cluster_id = peer_cluster_hash(cfg->cluster_id);
  pc.node_id = cfg->node_id;
  pc.n_nodes = cfg->peer_count;
  for (i = 0; i < cfg->peer_count; i++) {
    pc.nodes[i].id = cfg->peers[i].id;
    memcpy(pc.nodes[i].host, cfg->peers[i].host, sizeof(pc.nodes[i].host));
    pc.nodes[i].port = cfg->peers[i].port;
    if (cfg->peers[i].id == cfg->node_id) {
      memcpy(pc.listen_host, cfg->peers[i].host, sizeof(pc.listen_host));
      pc.listen_port = cfg->peers[i].port;
    }
  }
  if (cfg->peer_listen_host[0] != '\0') {
    memcpy(pc.listen_host, cfg->peer_listen_host, sizeof(pc.listen_host));
    pc.listen_port = cfg->peer_listen_port;
  }
  memcpy(pc.bind_host, pc.listen_host, sizeof(pc.bind_host));
  pc.n_cores = s->n_cores;
  pc.n_groups = s->n_groups;
  pc.env = s->env;
  if (cfg->cluster_secret_file[0] != '\0') {
    if ((rc = server_read_secret(cfg->cluster_secret_file, pc.secret,
                                 &pc.secret_len, 1, err)) != URSULA_OK)
      return rc;
  } else {
    LOG_W("peer links are not authenticated: give every node the same "
          "--cluster-secret-file");
  }
  pc.on_raft = server_on_peer_raft;
  pc.on_snap = server_on_peer_snap;
  pc.on_fwd = server_on_peer_fwd;
  pc.arg = s;
  for (i = 0; i < s->n_cores; i++) loops[i] = s->cores[i].loop;
  if ((rc = peer_open(&s->peer, &pc, loops, err)) != URSULA_OK) return rc;
  if ((rc = peer_start(s->peer, err)) != URSULA_OK) return rc;
  LOG_I("node %d of cluster %s: peers at %s:%d, %d members", cfg->node_id,
        cfg->cluster_id, pc.listen_host, peer_port(s->peer), pc.n_nodes);
  return URSULA_OK;
}

/* After the loops stopped (or never ran): close every link. */
static void server_peers_stop(struct ursula_server *s) {
  peer_close(s->peer);
  s->peer = NULL;
}

static void server_free(struct ursula_server *s) {
  int i;
  cold_close(s->cold); /* first: its threads post to the cores' loops */
  server_peers_stop(s); /* then the links: they live on the loops */
  if (s->cores != NULL) {
    for (i = 0; i < s->n_cores; i++) {
      struct core *c = &s->cores[i];
      if (c->loop == NULL) continue;
      api_core_free(c);
      loop_close(c->loop);
    }
    for (i = 0; i < s->n_cores; i++) {
      URSULA_FREE(s->cores[i].dirty);
      URSULA_FREE(s->cores[i].batch);
      URSULA_FREE(s->cores[i].jr_pending);
      URSULA_FREE(s->cores[i].jr_flight);
      journal_close(s->cores[i].journal);
      cold_cache_free(s->cores[i].cold_cache);
      auth_release(s->cores[i].auth);
    }
    URSULA_FREE(s->cores);
  }
  if (s->groups != NULL) {
    for (i = 0; i < s->n_groups; i++) group_free(s->groups[i]);
    URSULA_FREE(s->groups);
  }
  if (s->listen_fd >= 0) close(s->listen_fd);
  if (s->admin_fd >= 0) close(s->admin_fd);
  server_syncer_stop(s->syncer);
  if (s->dir_lock_fd >= 0) close(s->dir_lock_fd); /* releases the lock */
  pthread_mutex_destroy(&s->mu);
  conn_bounds_free(&s->bounds);
  auth_release(s->auth);
  pthread_mutex_destroy(&s->auth_mu);
  tlss_creds_release(s->tls);
  pthread_mutex_destroy(&s->tls_mu);
  URSULA_FREE(s);
}

/* ------------------------------------------------------------ --wal-dir

   DIR             locked with flock() on the directory itself while the
                   server runs, so two servers never write the same logs
                   (a lock file could be deleted under a running server)
   DIR/layout      "ursula-wal 2\ngroups N\n": the WAL format, and the N
                   groups streams hash to (a restart with another
                   --raft-group-count would not find them; the server
                   refuses to start instead).  Written once every group's
                   log exists: from then on a missing group is damage.
   DIR/cold-store  "ursula-cold-store 1\nnode ID\n", ID 32 lowercase hex
                   digits, written when a cold tier is first used, then
                   "claimed\n" added once a claim of the store succeeded
                   at a start: a single node names itself by ID in the
                   store's marker, and "claimed" says a marker was there
                   (cold.c, THE STORE'S MARKER)
   DIR/g00000/ ... one WAL directory per group (wal.c) */

URSULA_PRIVATE int server_write_layout(struct os_fs *fs, const char *dir,
                                       int n_groups, char *err) {
  char tmp[URSULA_PATH_LEN + 32], path[URSULA_PATH_LEN + 32], want[64];
  int fd;
  snprintf(want, sizeof(want), "ursula-wal 2\ngroups %d\n", n_groups);
  snprintf(tmp, sizeof(tmp), "%s/layout.tmp", dir);
  snprintf(path, sizeof(path), "%s/layout", dir);
  fd = fs->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 ||
      fs->pwrite(fd, want, strlen(want), 0) != (ssize_t)strlen(want) ||
      fs->sync(fd) != 0 || fs->close(fd) != 0 || fs->rename(tmp, path) != 0 ||
      fs->sync_dir(dir) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "--wal-dir %s: writing layout: %s", dir,
             strerror(errno));
    return URSULA_EIO;
  }
  return URSULA_OK;
}

static int server_layout_write(struct ursula_server *s, char *err) {
  return server_write_layout(s->env->fs, s->cfg.wal_dir, s->n_groups, err);
}

/* Lock DIR and check its layout; *existed = whether it has one (then
** every group's log must be there). */
static int server_open_dir(struct ursula_server *s, int *existed, char *err) {
  const char *dir = s->cfg.wal_dir;
  char path[URSULA_PATH_LEN + 32], want[64], have[64];
  struct os_fs *fs = s->env->fs;
  int fd, n, groups = -1, version = -1;
  *existed = 0;
  if (fs->mkdir(dir, 0755) != 0 && errno != EEXIST) {
    snprintf(err, URSULA_ERRMSG_LEN, "--wal-dir %s: %s", dir, strerror(errno));
    return URSULA_EIO;
  }
  { /* from here on the full path, so that every message names the file
    ** whatever the working directory was */
    char *abs = realpath(dir, NULL);
    if (abs != NULL && strlen(abs) < sizeof(s->cfg.wal_dir))
      memcpy(s->cfg.wal_dir, abs, strlen(abs) + 1);
    free(abs);
  }
  s->dir_lock_fd = open(dir, O_RDONLY | O_CLOEXEC);
  if (s->dir_lock_fd < 0 || flock(s->dir_lock_fd, LOCK_EX | LOCK_NB) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "--wal-dir %s: cannot lock it (%s); another ursula is using it",
             dir, strerror(errno));
    return URSULA_EIO;
  }
  snprintf(want, sizeof(want), "ursula-wal 2\ngroups %d\n", s->n_groups);
  snprintf(path, sizeof(path), "%s/layout", dir);
  fd = fs->open(path, O_RDONLY, 0);
  if (fd < 0) return URSULA_OK; /* a new directory */
  n = (int)fs->pread(fd, have, sizeof(have) - 1, 0);
  fs->close(fd);
  have[n > 0 ? n : 0] = '\0';
  *existed = 1;
  if (strcmp(have, want) == 0) return URSULA_OK;
  if (sscanf(have, "ursula-wal %d groups %d", &version, &groups) < 1)
    version = -1;
  if (version == 1) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "--wal-dir %s holds WAL format 1 (written by an older ursula); "
             "this build reads format 2 only: read the data out with the "
             "older build, or start on an empty --wal-dir",
             dir);
  } else if (version == 2) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "--wal-dir %s holds %d groups; start with --raft-group-count %d "
             "(it cannot change)",
             dir, groups, groups);
  } else {
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s is damaged; not starting (it records the WAL format and "
             "the group count: \"ursula-wal 2\\ngroups N\\n\")",
             path);
  }
  return URSULA_EINVAL;
}

/* journal_redo's name of group `group`'s segment file `seg`. */
static int server_journal_path(void *arg, uint32_t group, uint64_t seg,
                               char *out, size_t cap) {
  struct ursula_server *s = (struct ursula_server *)arg;
  char dir[URSULA_PATH_LEN + 16];
  if (group >= (uint32_t)s->n_groups) return URSULA_EINVAL;
  snprintf(dir, sizeof(dir), "%s/g%05d", s->cfg.wal_dir, (int)group);
  wal_segment_file(dir, seg, out, cap);
  return URSULA_OK;
}

/* Write the journals' appends again to the logs, before any log is read
** (journal.c, REDO). */
static int server_redo(struct ursula_server *s, char *err) {
  struct journal_stats st;
  int rc = journal_redo(s->env, s->cfg.wal_dir, server_journal_path, s, &st,
                        err); /* err names the journal */
  if (rc != URSULA_OK) return rc;
  if (st.journals > 0)
    LOG_I("journal: %llu appends (%llu bytes) from %llu journals written "
          "again to their logs%s",
          (unsigned long long)st.writes, (unsigned long long)st.bytes,
          (unsigned long long)st.journals,
          st.cut_bytes > 0 ? ", a torn tail left out" : "");
  return URSULA_OK;
}

/* Core c's journal, and its groups' logs appending through it. */
static int server_journal_open(struct core *c, char *err) {
  struct ursula_server *s = c->srv;
  size_t per = (size_t)(s->n_groups / s->n_cores + 1);
  int g, rc;
  c->jr_pending = (int *)URSULA_MALLOC(sizeof(int) * per);
  c->jr_flight = (int *)URSULA_MALLOC(sizeof(int) * per);
  if (c->jr_pending == NULL || c->jr_flight == NULL) return URSULA_ENOMEM;
  if ((rc = journal_create(&c->journal, s->env, s->cfg.wal_dir, c->id,
                           err)) != URSULA_OK)
    return rc;
  for (g = c->id; g < s->n_groups; g += s->n_cores)
    group_set_journal(s->groups[g], c->journal);
  return URSULA_OK;
}

/* One recovery thread: groups first, first + step, ... */
struct server_recovery {
  struct ursula_server *srv;
  int first, step;
  int must_exist; /* the layout says every group's log exists */
  int rc;
  int started; /* thread is running (joined by the caller) */
  pthread_t thread;
  struct buf scratch; /* segments are read into it, group after group */
  char err[URSULA_ERRMSG_LEN];
};

static void *server_recover_main(void *arg) {
  struct server_recovery *r = (struct server_recovery *)arg;
  char path[URSULA_PATH_LEN + 32];
  int i;
  r->rc = URSULA_OK;
  for (i = r->first; i < r->srv->n_groups && r->rc == URSULA_OK; i += r->step) {
    snprintf(path, sizeof(path), "%s/g%05d", r->srv->cfg.wal_dir, i);
    r->rc = group_open_wal(r->srv->groups[i], path, r->must_exist,
                           (uint64_t)r->srv->cfg.hot_max_bytes,
                           (uint64_t)r->srv->cfg.snapshot_bytes, &r->scratch,
                           r->err);
  }
  buf_free(&r->scratch);
  return NULL;
}

/* UPGRADE TO PATH AFFINITY.  A build before path-affinity-v1 placed a
** stream at "/{b}/{aff}/{s}" in the group of its whole path; this one
** looks for it in the group of "/{b}/{aff}" (server.c, PLACEMENT), so
** such a stream, recovered where it was, could not be found: it would
** read as absent.  So after recovery every group's streams are checked
** against their paths' groups, and one held by another group stops the
** start, naming it (damage, or an old placement, is never taken for
** absence).  The way out: with the earlier build, copy such streams to
** paths outside the rule (or delete them), then upgrade. */
static int server_check_placement(struct ursula_server *s, char *err) {
  int gid;
  for (gid = 0; gid < s->n_groups; gid++) {
    const struct stream_state *st = group_state(s->groups[gid]);
    const struct stream *x;
    size_t i;
    for (i = 0; i < st->cap; i++)
      for (x = st->slots[i]; x != NULL; x = x->hnext) {
        if (server_group_of(s, x->path, x->path_len) == gid) continue;
        snprintf(err, URSULA_ERRMSG_LEN,
                 "the stream %.*s is held by group %d, but its path "
                 "belongs to group %d (path-affinity-v1 places "
                 "/{bucket}/{affinity}/{stream} by /{bucket}/{affinity}): it "
                 "was made by an earlier build; refusing to start rather "
                 "than lose it (README, Buckets: upgrading)",
                 (int)(x->path_len > 300 ? 300 : x->path_len), x->path, gid,
                 server_group_of(s, x->path, x->path_len));
        return URSULA_ECORRUPT;
      }
  }
  return URSULA_OK;
}

/* Open and replay every group's WAL, one thread per core (groups are
** independent, so they recover in parallel); without threads, one group
** after another on the caller. */
static int server_recover(struct ursula_server *s, char *err) {
  struct server_recovery *r;
  uint64_t t0 = s->env->mono_ms(s->env);
  int i, n = s->n_cores, rc, existed;
  if ((rc = server_open_dir(s, &existed, err)) != URSULA_OK ||
      (rc = server_redo(s, err)) != URSULA_OK)
    return rc;
  if (n > s->n_groups) n = s->n_groups;
  r = (struct server_recovery *)URSULA_MALLOC(sizeof(*r) * (size_t)n);
  if (r == NULL) return URSULA_ENOMEM;
  for (i = 0; i < n; i++) {
    r[i].srv = s;
    r[i].first = i;
    r[i].step = n;
    r[i].must_exist = existed;
    memset(&r[i].scratch, 0, sizeof(r[i].scratch));
    r[i].err[0] = '\0';
#if URSULA_ENABLE_THREADS
    r[i].started =
        pthread_create(&r[i].thread, NULL, server_recover_main, &r[i]) == 0;
#else
    r[i].started = 0;
#endif
    if (!r[i].started) server_recover_main(&r[i]); /* do it here */
  }
  rc = URSULA_OK;
  for (i = 0; i < n; i++) {
    if (r[i].started) pthread_join(r[i].thread, NULL);
    if (r[i].rc != URSULA_OK && rc == URSULA_OK) {
      rc = r[i].rc;
      memcpy(err, r[i].err, URSULA_ERRMSG_LEN);
    }
  }
  URSULA_FREE(r);
  if (rc == URSULA_OK) rc = server_check_placement(s, err);
  if (rc == URSULA_OK && !existed) rc = server_layout_write(s, err);
  if (rc == URSULA_OK)
    LOG_I("recovered %d groups from %s in %llu ms", s->n_groups, s->cfg.wal_dir,
          (unsigned long long)(s->env->mono_ms(s->env) - t0));
  (void)t0; /* when logging is compiled out */
  return rc;
}

/* ------------------------------------------------------------ bounds */

/* The budget of request bodies in flight must hold the largest body, or
** such a body could never be taken. */
static int server_check_bounds(const struct ursula_config *cfg, char *err) {
  if (cfg->max_body_inflight_bytes >= cfg->max_body_bytes) return URSULA_OK;
  snprintf(err, URSULA_ERRMSG_LEN,
           "--max-body-inflight-bytes %lld is below --max-body-bytes %lld: "
           "it must be at least that, or the largest body would never fit",
           (long long)cfg->max_body_inflight_bytes,
           (long long)cfg->max_body_bytes);
  return URSULA_EINVAL;
}

/* ------------------------------------------------------------ cold tier */

/* Check the cold-tier settings, taking credentials from the environment
** where the configuration leaves them empty. */
static int server_check_cold(struct ursula_config *cfg, char *err) {
  const char *v;
  if (cfg->cold_dir[0] == '\0' && cfg->s3_endpoint[0] == '\0') return URSULA_OK;
  if (cfg->cold_dir[0] != '\0' && cfg->s3_endpoint[0] != '\0') {
    snprintf(err, URSULA_ERRMSG_LEN,
             "--cold-dir and --s3-endpoint: choose one cold tier");
    return URSULA_EINVAL;
  }
  if (cfg->wal_dir[0] == '\0') {
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s needs --wal-dir: data moves to the cold tier from the WAL",
             cfg->cold_dir[0] ? "--cold-dir" : "--s3-endpoint");
    return URSULA_EINVAL;
  }
  if (cfg->cold_dir[0] != '\0') return URSULA_OK;
  if (strncmp(cfg->s3_endpoint, "http://", 7) != 0 &&
      strncmp(cfg->s3_endpoint, "https://", 8) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "--s3-endpoint %.100s: expected http://HOST[:PORT] or "
             "https://HOST[:PORT]",
             cfg->s3_endpoint);
    return URSULA_EINVAL;
  }
  if (!URSULA_ENABLE_TLS && strncmp(cfg->s3_endpoint, "https://", 8) == 0) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "--s3-endpoint %.100s: this build has no TLS (build with "
             "make TLS=1, which needs BearSSL)",
             cfg->s3_endpoint);
    return URSULA_ENOTSUP;
  }
  if (cfg->s3_bucket[0] == '\0') {
    snprintf(err, URSULA_ERRMSG_LEN, "--s3-endpoint needs --s3-bucket");
    return URSULA_EINVAL;
  }
  if (cfg->s3_access_key[0] == '\0' && (v = getenv("AWS_ACCESS_KEY_ID")))
    snprintf(cfg->s3_access_key, sizeof(cfg->s3_access_key), "%s", v);
  if (cfg->s3_secret_key[0] == '\0' && (v = getenv("AWS_SECRET_ACCESS_KEY")))
    snprintf(cfg->s3_secret_key, sizeof(cfg->s3_secret_key), "%s", v);
  if (cfg->s3_session_token[0] == '\0' && (v = getenv("AWS_SESSION_TOKEN")))
    snprintf(cfg->s3_session_token, sizeof(cfg->s3_session_token), "%s", v);
  if (cfg->s3_access_key[0] == '\0' || cfg->s3_secret_key[0] == '\0') {
    snprintf(err, URSULA_ERRMSG_LEN,
             "--s3-endpoint needs credentials: --s3-access-key and "
             "--s3-secret-key, or AWS_ACCESS_KEY_ID and "
             "AWS_SECRET_ACCESS_KEY");
    return URSULA_EINVAL;
  }
  return URSULA_OK;
}

/* ------------------------------------------------------------ https */

/* --tls-cert and --tls-key come together, in a build with TLS. */
static int server_check_tls_flags(const struct ursula_config *cfg, char *err) {
  int cert = cfg->tls_cert[0] != '\0', key = cfg->tls_key[0] != '\0';
  if (!cert && !key) return URSULA_OK;
  if (!URSULA_ENABLE_TLS) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s: this build has no TLS: build with make TLS=1",
             cert ? "--tls-cert" : "--tls-key");
    return URSULA_ENOTSUP;
  }
  if (cert != key) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s without %s: HTTPS needs both the certificate and its key",
             cert ? "--tls-cert" : "--tls-key",
             cert ? "--tls-key" : "--tls-cert");
    return URSULA_EINVAL;
  }
  return URSULA_OK;
}

/* The pair loads and matches (then is let go). */
static int server_check_tls(const struct ursula_config *cfg, char *err) {
  struct tlss_creds *c = NULL;
  int rc = server_check_tls_flags(cfg, err);
  if (rc != URSULA_OK || cfg->tls_cert[0] == '\0') return rc;
  rc = tlss_creds_load(cfg->tls_cert, cfg->tls_key, &c, err);
  tlss_creds_release(c);
  return rc;
}

/* Load the certificate and key into s (a start). */
static int server_start_tls(struct ursula_server *s, char *err) {
  int rc;
  if (s->cfg.tls_cert[0] == '\0') return URSULA_OK;
  rc = tlss_creds_load(s->cfg.tls_cert, s->cfg.tls_key, &s->tls, err);
#if URSULA_ENABLE_TLS
  if (rc == URSULA_OK)
    LOG_I("tls: HTTPS with the %s key of %s and the chain of %s (%lu "
          "bytes of engine per connection)",
          tlss_creds_kind(s->tls), s->cfg.tls_key, s->cfg.tls_cert,
          (unsigned long)tlss_conn_size());
#endif
  return rc;
}

/* Re-read the certificate and key (RELOAD): a good pair serves the
** connections accepted from now on; a bad one is logged and leaves the
** pair in force. */
static int server_reload_tls(struct ursula_server *srv) {
  struct tlss_creds *c = NULL, *old;
  char err[URSULA_ERRMSG_LEN];
  int rc;
  if (srv->cfg.tls_cert[0] == '\0') return URSULA_OK;
  err[0] = '\0';
  rc = tlss_creds_load(srv->cfg.tls_cert, srv->cfg.tls_key, &c, err);
  if (rc != URSULA_OK) {
    LOG_E("tls: reload failed, the certificate in force stays: %s", err);
    return rc;
  }
  pthread_mutex_lock(&srv->tls_mu);
  old = srv->tls;
  srv->tls = c;
  pthread_mutex_unlock(&srv->tls_mu);
  tlss_creds_release(old); /* (freed with the last connection using it) */
  LOG_I("tls: reloaded %s and %s; new connections use them",
        srv->cfg.tls_cert, srv->cfg.tls_key);
  return URSULA_OK;
}

/* The files the settings name and start-up reads whole: the tokens
** (--auth-file), the cluster secret (--cluster-secret-file) and the
** HTTPS pair (--tls-cert, --tls-key) load (then are let go). */
static int server_check_files(const struct ursula_config *cfg, char *err) {
  unsigned char secret[PEER_SECRET_MAX];
  size_t len = 0;
  int rc = URSULA_OK;
  if (cfg->auth_file[0] != '\0') {
    struct auth_table *t = NULL;
    char why[URSULA_ERRMSG_LEN];
    if ((rc = auth_load(cfg->auth_file, &t, why)) != URSULA_OK) {
      snprintf(err, URSULA_ERRMSG_LEN, "auth-file: %.1400s", why);
      return rc;
    }
    auth_release(t);
  }
  if (cfg->cluster_secret_file[0] != '\0')
    rc = server_read_secret(cfg->cluster_secret_file, secret, &len, 0, err);
  memset(secret, 0, sizeof(secret));
  if (rc == URSULA_OK) rc = server_check_tls(cfg, err);
  return rc;
}

URSULA_PRIVATE int server_check_config(struct ursula_config *cfg,
                                       char *err) {
  int rc;
  if ((rc = conf_check_cluster(cfg, err)) != URSULA_OK ||
      (rc = server_check_bounds(cfg, err)) != URSULA_OK ||
      (rc = server_check_cold(cfg, err)) != URSULA_OK ||
      (rc = server_check_tls_flags(cfg, err)) != URSULA_OK ||
      (rc = server_check_files(cfg, err)) != URSULA_OK)
    return rc;
  return URSULA_OK;
}

/* Write DIR/cold-store: id, and the line "claimed" if claimed (synced,
** through a temporary file). */
URSULA_PRIVATE int server_write_cold_store(struct os_fs *fs, const char *dir,
                                           const char *id, int claimed,
                                           char *err) {
  char path[URSULA_PATH_LEN + 32], tmp[URSULA_PATH_LEN + 32], text[80];
  int fd, n, ok;
  n = snprintf(text, sizeof(text), "ursula-cold-store 1\nnode %s\n%s", id,
               claimed ? "claimed\n" : "");
  snprintf(path, sizeof(path), "%s/cold-store", dir);
  snprintf(tmp, sizeof(tmp), "%s/cold-store.tmp", dir);
  fd = fs->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) goto fail;
  errno = EIO; /* (a short write sets none) */
  ok = fs->pwrite(fd, text, (size_t)n, 0) == (ssize_t)n && fs->sync(fd) == 0;
  if (fs->close(fd) != 0) ok = 0;
  if (!ok || fs->rename(tmp, path) != 0 || fs->sync_dir(dir) != 0) goto fail;
  return URSULA_OK;
fail:
  snprintf(err, URSULA_ERRMSG_LEN, "--wal-dir %s: writing cold-store: %s", dir,
           strerror(errno));
  return URSULA_EIO;
}

static int server_cold_store_write(struct ursula_server *s, const char *id,
                                   int claimed, char *err) {
  return server_write_cold_store(s->env->fs, s->cfg.wal_dir, id, claimed,
                                 err);
}

/* Who this node is to the store (struct cold_owner): the id kept in
** DIR/cold-store, made and written (synced) now if there is none, and
** whether a claim with it succeeded before. */
static int server_cold_owner(struct ursula_server *s, struct cold_owner *o,
                             char *id, char *err) {
  const char *dir = s->cfg.wal_dir;
  char path[URSULA_PATH_LEN + 32], text[80];
  struct os_fs *fs = s->env->fs;
  int fd, n, rc;
  snprintf(o->cluster_id, sizeof(o->cluster_id), "%s", s->cfg.cluster_id);
  o->groups = s->n_groups;
  snprintf(path, sizeof(path), "%s/cold-store", dir);
  fd = fs->open(path, O_RDONLY, 0);
  if (fd < 0 && errno != ENOENT) {
    snprintf(err, URSULA_ERRMSG_LEN, "%s: %s", path, strerror(errno));
    return URSULA_EIO;
  }
  if (fd >= 0) {
    n = (int)fs->pread(fd, text, sizeof(text) - 1, 0);
    if (n < 0) {
      snprintf(err, URSULA_ERRMSG_LEN, "reading %s: %s", path,
               strerror(errno));
      fs->close(fd);
      return URSULA_EIO;
    }
    fs->close(fd);
    text[n] = '\0';
    if ((n != 58 && (n != 66 || strcmp(text + 58, "claimed\n") != 0)) ||
        strncmp(text, "ursula-cold-store 1\nnode ", 25) != 0 ||
        text[57] != '\n' || strspn(text + 25, "0123456789abcdef") != 32) {
      snprintf(err, URSULA_ERRMSG_LEN,
               "%s is damaged; not starting (it holds \"ursula-cold-store "
               "1\\nnode ID\\n\", ID 32 hex digits, then \"claimed\\n\" "
               "once a claim succeeded)",
               path);
      return URSULA_EINVAL;
    }
    memcpy(id, text + 25, 32);
    o->claimed_before = n == 66;
  } else {
    snprintf(id, 33, "%016llx%016llx",
             (unsigned long long)s->env->random(s->env),
             (unsigned long long)s->env->random(s->env));
    if ((rc = server_cold_store_write(s, id, 0, err)) != URSULA_OK) return rc;
    o->claimed_before = 0;
  }
  id[32] = '\0';
  if (s->cfg.peer_count <= 1)
    memcpy(o->node, id, 33);
  else
    o->node[0] = '\0'; /* the nodes of a cluster write one marker */
  return URSULA_OK;
}

/* Start the cold tier (after recovery, before the cores), or refuse to
** start when the WAL names chunks but no cold tier is configured, or the
** store is not this node's (cold_claim). */
static int server_start_cold(struct ursula_server *s, char *err) {
  const struct ursula_config *cfg = &s->cfg;
  struct cold_owner me;
  char id[33];
  uint64_t chunks = 0;
  int i, rc;
  if (cfg->wal_dir[0] == '\0') return URSULA_OK;
  for (i = 0; i < s->n_groups; i++) chunks += group_cold_chunks(s->groups[i]);
  if (cfg->cold_dir[0] == '\0' && cfg->s3_endpoint[0] == '\0') {
    if (chunks == 0) return URSULA_OK;
    snprintf(err, URSULA_ERRMSG_LEN,
             "--wal-dir %.100s names %llu chunks in a cold tier; start with "
             "the same --cold-dir or --s3-* settings",
             cfg->wal_dir, (unsigned long long)chunks);
    return URSULA_EINVAL;
  }
  memset(&me, 0, sizeof(me));
  if ((rc = server_cold_owner(s, &me, id, err)) != URSULA_OK) return rc;
  me.chunks = chunks;
  if ((rc = cold_open(&s->cold, cfg, s->env, err)) != URSULA_OK) return rc;
  rc = cold_claim(s->cold, &me, err);
  if (rc == URSULA_EINVAL) return rc;
  if (rc == URSULA_OK && !me.claimed_before &&
      (rc = server_cold_store_write(s, id, 1, err)) != URSULA_OK)
    return rc;
  if (rc != URSULA_OK)
    LOG_E("cold storage unavailable at start: its marker could not be "
          "checked (%s); appends go on into the WAL, and nothing moves to "
          "the store or is deleted from it until it can be",
          err);
  for (i = 0; i < s->n_cores; i++) {
    s->cores[i].cold_cache =
        cold_cache_new((uint64_t)cfg->cold_cache_bytes / (uint64_t)s->n_cores);
    if (s->cores[i].cold_cache == NULL) return URSULA_ENOMEM;
  }
  for (i = 0; i < s->n_groups; i++)
    group_attach_cold(s->groups[i], s->cold,
                      s->cores[server_owner_of(s, i)].cold_cache,
                      (uint64_t)cfg->cold_flush_age_ms);
  if (cfg->s3_endpoint[0])
    LOG_I("cold tier: s3 bucket %s at %s, prefix \"%s\"", cfg->s3_bucket,
          cfg->s3_endpoint, cfg->s3_prefix);
  else
    LOG_I("cold tier: folder %s", cfg->cold_dir);
  return URSULA_OK;
}

/* The admin listener (--admin-listen; conn.c, THE ADMIN LISTENER): none
** if it is off; if its default address (127.0.0.1:4438) cannot be bound
** -- another server on this host has it -- a warning and none, so that
** several servers run side by side; any other address must bind.
** URSULA_OK, or URSULA_ESYS with err set. */
static int server_admin_open(struct ursula_server *s, char *err) {
  const struct ursula_config *cfg = &s->cfg;
  if (cfg->admin_listen_host[0] == '\0') return URSULA_OK;
  s->admin_fd = net_listen(cfg->admin_listen_host, cfg->admin_listen_port,
                           &s->admin_port, err);
  if (s->admin_fd >= 0) return URSULA_OK;
  if (strcmp(cfg->admin_listen_host, URSULA_DEFAULT_HOST) == 0 &&
      cfg->admin_listen_port == URSULA_DEFAULT_ADMIN_PORT) {
    LOG_W("no admin listener: %s (set --admin-listen HOST:PORT, or off)",
          err);
    err[0] = '\0';
    return URSULA_OK;
  }
  {
    char why[URSULA_ERRMSG_LEN];
    snprintf(why, sizeof(why), "%s", err);
    snprintf(err, URSULA_ERRMSG_LEN, "admin-listen: %.400s", why);
  }
  return URSULA_ESYS;
}

URSULA_PRIVATE int server_start(const struct ursula_config *cfg,
                                struct env *env, struct ursula_server **out,
                                char *err) {
  struct ursula_server *s;
  int i, rc = URSULA_OK;
  char tmp[URSULA_ERRMSG_LEN];
  if (err == NULL) err = tmp;
  err[0] = '\0';
  s = (struct ursula_server *)URSULA_MALLOC(sizeof(*s));
  if (s == NULL) return URSULA_ENOMEM;
  memset(s, 0, sizeof(*s));
  s->cfg = *cfg;
  s->env = env != NULL ? env : env_real();
  s->listen_fd = -1;
  s->admin_fd = -1;
  s->dir_lock_fd = -1;
  pthread_mutex_init(&s->mu, NULL);
  pthread_mutex_init(&s->auth_mu, NULL);
  pthread_mutex_init(&s->tls_mu, NULL);
  conn_bounds_init(&s->bounds);
  log_set_level(cfg->log_level);
  log_set_json(cfg->log_format);
  s->n_cores = cfg->core_count > 0 ? cfg->core_count : os_cpu_count();
#if !URSULA_ENABLE_THREADS
  s->n_cores = 1;
#endif
  if (s->n_cores > URSULA_MAX_CORES) s->n_cores = URSULA_MAX_CORES;
  s->n_groups = cfg->raft_group_count > 0 ? cfg->raft_group_count : 1;
  if (s->n_groups > URSULA_MAX_GROUPS) s->n_groups = URSULA_MAX_GROUPS;
  s->groups =
      (struct group **)URSULA_MALLOC(sizeof(*s->groups) * (size_t)s->n_groups);
  s->cores =
      (struct core *)URSULA_MALLOC(sizeof(*s->cores) * (size_t)s->n_cores);
  if (s->groups == NULL || s->cores == NULL) {
    rc = URSULA_ENOMEM;
    goto fail;
  }
  memset(s->groups, 0, sizeof(*s->groups) * (size_t)s->n_groups);
  memset(s->cores, 0, sizeof(*s->cores) * (size_t)s->n_cores);
  for (i = 0; i < s->n_groups; i++) {
    if ((s->groups[i] = group_new(i, i % s->n_cores, s->env)) == NULL) {
      rc = URSULA_ENOMEM;
      goto fail;
    }
  }
  { /* every connection is a descriptor; so are WAL segments, and each
    ** core's loop (3) and spare for accepting at the limit (conn.c) */
    long want =
        (long)cfg->max_connections + 64 + 4L * s->n_groups + 4L * s->n_cores;
    long have = os_raise_fd_limit(want);
    if (have >= 0 && have < want)
      LOG_W(
          "open-file limit is %ld, below the %ld that --max-connections "
          "%d needs; raise it (ulimit -n): past it, new connections are "
          "answered 503",
          have, want, cfg->max_connections);
  }
  if ((rc = server_check_config(&s->cfg, err)) != URSULA_OK ||
      (rc = server_join_groups(s, err)) != URSULA_OK)
    goto fail;
  if (cfg->auth_file[0] != '\0') {
    if ((rc = auth_load(cfg->auth_file, &s->auth, err)) != URSULA_OK)
      goto fail;
    LOG_I("auth: %d token(s) from %s; every request needs one",
          auth_count(s->auth), cfg->auth_file);
  }
  if ((rc = server_start_tls(s, err)) != URSULA_OK) goto fail;
  if (cfg->wal_dir[0] != '\0' &&
      ((rc = server_recover(s, err)) != URSULA_OK ||
       (rc = server_syncer_start(s, err)) != URSULA_OK ||
       (rc = server_start_cold(s, err)) != URSULA_OK))
    goto fail;
  s->listen_fd = net_listen(cfg->listen_host, cfg->listen_port, &s->port, err);
  if (s->listen_fd < 0 || (rc = server_admin_open(s, err)) != URSULA_OK) {
    rc = URSULA_ESYS;
    goto fail;
  }
  for (i = 0; i < s->n_cores; i++) {
    struct core *c = &s->cores[i];
    c->id = i;
    c->srv = s;
    /* each owned group at most twice: once before its commit in a pass,
    ** once re-proposed by a continuation after it */
    c->dirty = (struct group **)URSULA_MALLOC(
        sizeof(*c->dirty) * 2 * (size_t)(s->n_groups / s->n_cores + 1));
    c->batch = (struct group **)URSULA_MALLOC(
        sizeof(*c->batch) * 2 * (size_t)(s->n_groups / s->n_cores + 1));
    if (c->dirty == NULL || c->batch == NULL) {
      rc = URSULA_ENOMEM;
      goto fail;
    }
    if (cfg->wal_dir[0] != '\0' &&
        (rc = server_journal_open(c, err)) != URSULA_OK)
      goto fail;
    if ((rc = loop_open(&c->loop, i, s->env, err)) != URSULA_OK) goto fail;
    loop_set_user(c->loop, c);
    api_core_init(c, cfg->max_connections); /* one count for all cores */
    c->auth = auth_hold(s->auth);
    if ((rc = loop_add(c->loop, s->listen_fd, LOOP_READ, conn_on_accept, c)) !=
        URSULA_OK)
      goto fail;
    c->listening = 1;
    if (i == 0 && s->admin_fd >= 0) {
      if ((rc = loop_add(c->loop, s->admin_fd, LOOP_READ, conn_on_admin_accept,
                         c)) != URSULA_OK)
        goto fail;
      c->admin_listening = 1;
    }
    loop_timer_set(c->loop, &c->sweep_timer, loop_now_ms(c->loop) + 1000,
                   server_on_sweep, c);
    if (cfg->peer_count > 1)
      loop_timer_set(c->loop, &c->tick_timer,
                     loop_now_ms(c->loop) + GROUP_TICK_MS, server_on_tick, c);
  }
  if ((rc = server_peers_start(s, err)) != URSULA_OK) goto fail;
#if URSULA_ENABLE_THREADS
  for (i = 0; i < s->n_cores; i++) {
    if (pthread_create(&s->cores[i].thread, NULL, server_core_main,
                       &s->cores[i]) != 0) {
      snprintf(err, URSULA_ERRMSG_LEN, "pthread_create: %s", strerror(errno));
      s->stop_requested = 1;
      while (--i >= 0) {
        loop_stop(s->cores[i].loop);
        pthread_join(s->cores[i].thread, NULL);
      }
      rc = URSULA_ESYS;
      goto fail;
    }
  }
#endif
  s->running = 1;
  LOG_I("listening on %s://%s:%d (cores %d, groups %d, %s%s)",
        s->tls != NULL ? "https" : "http", cfg->listen_host, s->port, s->n_cores, s->n_groups,
        cfg->wal_dir[0] ? "WAL in " : "in memory", s->cfg.wal_dir);
  if (s->admin_fd >= 0)
    LOG_I("admin on http://%s:%d (/metrics, /healthz, /readyz, "
          "/__ursula/cluster)",
          cfg->admin_listen_host, s->admin_port);
  *out = s;
  return URSULA_OK;
fail:
  if (err[0] == '\0')
    snprintf(err, URSULA_ERRMSG_LEN, "%s", ursula_strerror(rc));
  server_free(s);
  return rc;
}

URSULA_API int ursula_server_start(const struct ursula_config *cfg,
                                   struct ursula_server **out, char *err) {
  return server_start(cfg, NULL, out, err);
}

URSULA_API int ursula_server_port(const struct ursula_server *srv) {
  return srv->port;
}

URSULA_API int ursula_server_admin_port(const struct ursula_server *srv) {
  return srv->admin_fd >= 0 ? srv->admin_port : 0;
}

/* A full memory barrier where the compiler offers one (the flags below
** are written on one thread and read on another). */
static void server_barrier(void) {
#if defined(__GNUC__) || defined(__clang__)
  __sync_synchronize();
#endif
}

URSULA_API void ursula_server_stop(struct ursula_server *srv) {
  int i;
  /* The loops may end as soon as they see stop_requested, and the thread
  ** in ursula_server_wait() then frees srv: stop_busy, set first, holds
  ** that off until the wake-ups below are done.  A node of a cluster
  ** hands its leadership over first (GRACEFUL STOP); asked again, it
  ** stops at once (SECOND STOP). */
  if (SERVER_BUG(2) && srv->leave_requested) return;
  srv->stop_busy = 1;
  server_barrier();
  if (srv->cfg.peer_count > 1 && !srv->leave_requested && !SERVER_BUG(1)) {
    srv->leave_requested = 1;
  } else {
    if (srv->leave_requested && !srv->stop_requested) {
      srv->stop_hurried = 1; /* before the cores can see stop_requested */
      server_barrier();
    }
    srv->stop_requested = 1;
  }
  for (i = 0; i < srv->n_cores; i++) loop_wake(srv->cores[i].loop);
  server_barrier();
  srv->stop_busy = 0;
}

/* Re-read the auth file (RELOAD). */
static int server_reload_auth(struct ursula_server *srv) {
  struct server_auth_msg *q[URSULA_MAX_CORES];
  struct auth_table *t = NULL, *old;
  char err[URSULA_ERRMSG_LEN];
  int i, rc;
  if (srv->cfg.auth_file[0] == '\0') {
    if (srv->cfg.tls_cert[0] == '\0')
      LOG_I("reload: no --auth-file, nothing to re-read");
    return URSULA_OK;
  }
  pthread_mutex_lock(&srv->auth_mu);
  rc = auth_load(srv->cfg.auth_file, &t, err);
  for (i = 0; i < srv->n_cores && rc == URSULA_OK; i++) {
    q[i] = (struct server_auth_msg *)URSULA_MALLOC(sizeof(*q[i]));
    if (q[i] == NULL) {
      while (--i >= 0) URSULA_FREE(q[i]);
      auth_release(t);
      snprintf(err, sizeof(err), "%s", ursula_strerror(URSULA_ENOMEM));
      rc = URSULA_ENOMEM;
    }
  }
  if (rc != URSULA_OK) {
    pthread_mutex_unlock(&srv->auth_mu);
    LOG_E("auth: reload failed, the table in force stays: %s", err);
    return rc;
  }
  for (i = 0; i < srv->n_cores; i++) {
    memset(q[i], 0, sizeof(*q[i]));
    q[i]->msg.on_msg = server_on_auth;
    q[i]->msg.on_drop = server_auth_drop;
    q[i]->t = auth_hold(t);
    loop_post(srv->cores[i].loop, &q[i]->msg);
  }
  old = srv->auth;
  srv->auth = t; /* the reference auth_load() gave */
  pthread_mutex_unlock(&srv->auth_mu);
  auth_release(old);
  LOG_I("auth: reloaded %s: %d token(s)", srv->cfg.auth_file, auth_count(t));
  return URSULA_OK;
}

URSULA_API int ursula_server_reload(struct ursula_server *srv) {
  int rc = server_reload_auth(srv), rc_tls;
  pthread_mutex_lock(&srv->auth_mu); /* one reload at a time, this too */
  rc_tls = server_reload_tls(srv);
  pthread_mutex_unlock(&srv->auth_mu);
  return rc != URSULA_OK ? rc : rc_tls;
}

#if !URSULA_ENABLE_THREADS
URSULA_PRIVATE void server_request_reload(struct ursula_server *srv) {
  srv->reload_requested = 1;
  loop_wake(srv->cores[0].loop);
}
#endif

URSULA_PRIVATE int server_wait_cores(struct ursula_server *srv) {
  int i, rc = URSULA_OK;
#if URSULA_ENABLE_THREADS
  for (i = 0; i < srv->n_cores; i++) pthread_join(srv->cores[i].thread, NULL);
#else
  server_core_main(&srv->cores[0]);
#endif
  for (i = 0; i < srv->n_cores; i++) {
    if (srv->cores[i].rc != URSULA_OK && rc == URSULA_OK) rc = srv->cores[i].rc;
  }
  LOG_I("stopped");
  return rc;
}

URSULA_PRIVATE void server_release(struct ursula_server *srv) {
  server_barrier();
  while (srv->stop_busy) { /* a stop is still waking the loops */
    os_sleep_ms(1);
    server_barrier();
  }
  server_free(srv);
}

URSULA_API int ursula_server_wait(struct ursula_server *srv) {
  int rc = server_wait_cores(srv);
  server_release(srv);
  return rc;
}
