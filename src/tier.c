/*
** tier.c -- the cold-tier policy of a group: what moves to chunk objects
** and when, the COLD commands that name them, reads parked on chunk
** fetches, the start-up sweep of unnamed objects, back-off.
**
** The mechanism -- the threads that talk to S3 or a folder, the chunk
** format, the per-core cache -- is cold.c's.  This part decides, for one
** group, what to ask of it.  All of it runs on the group's owner thread.
**
** MOVING DATA.  Once a second (tier_tick) the owner looks for streams
** with a chunk's worth of bytes past their cold end, or with bytes
** waiting longer than --cold-flush-age-ms, and moves them:
**
**     read the run from memory / the WAL -> a chunk object -> cold threads
**     -> PUT -> back on the owner: propose COLD(path, incarnation, run,
**     name) -> committed and applied: the stream reads the run from the
**     chunk, memory drops it, the next snapshot lets the WAL drop it
**
** One upload per stream at a time (runs must land in order), a few per
** group.  A failed upload backs the group off (1 s doubling to 30 s).
** Only a stream's own bytes move: runs start at its cold end, which for a
** fork starts at its fork point (stream.c); the bytes a fork inherits are
** its source's, moved (or not) by the source's group, and a read of them
** goes there (group.c).
**
** READS.  A read that needs a chunk not in the core's cache (stream_read
** returns URSULA_EAGAIN through tier_read_chunk) parks its job on a fetch
** of that chunk (tier_fetch); when the chunk arrives it is checked and
** cached, and each job waiting for it runs again from the start through
** its own handler (msg.on_msg), with fetch_rc saying whether the chunk
** came.  A chunk missing may belong to a stream removed meanwhile: the
** read runs once more after a barrier before it is taken for a loss
** (group.c, READS RACING A REMOVAL).
**
** GARBAGE.  The objects of removed streams are deleted once the removal
** is committed (tier_delete_objects, an effect of the apply).  Before
** anything moves (and again every TIER_SWEEP_MS), the group lists its
** objects and deletes those no stream names (left by a crash between an upload and its COLD command,
** by a leader that lost its term during an upload, or by deletions that
** were replayed or never carried out).
**
** WHO ACTS (issue 14: the cold tier in a cluster).  All nodes share one
** store; every node applies the COLD commands and reads chunks from it,
** but only a group's leader moves data and sweeps, and only once it has
** applied an entry of its own term T (lead_term: a single node after its
** self-election at start).  The rules that make this safe, with Raft's
** guarantees (paper 5.2-5.4):
**
**   1. An object is named (object name, cold.c) after the term T of the
**      leader that uploads it, and its COLD command is proposed only if
**      the node still leads in T when the upload ends: so an entry of
**      term T only ever names objects of term T.
**   2. The sweep of term T deletes an unnamed object only if its name's
**      term is below T.  Once the leader of T has applied an entry of T,
**      every entry of an earlier term that will ever be committed is
**      committed and applied here (a log's terms never decrease, and
**      every later leader holds this entry): no object of a term below T
**      can be named later.  Objects of T (this leader's uploads in
**      flight) and of later terms (a newer leader's) are left alone.
**
** So a sweep -- even a deposed leader's, even one whose node restarts
** with a stale log, which never leads before it catches up -- cannot
** delete an object that a leader has uploaded and is about to name.
** A node that stops leading lets its uploads end unnamed; the next
** leader's sweep deletes them.
**
** HOW IT REACHES THE GROUP.  This part is listed before group.c, which
** calls it; it never calls group.c.  struct group stays private to
** group.c: the group embeds a struct tier and, before tier_attach(),
** hands it the few things of its own the tier works on (its id, clocks,
** state machine, WAL) and one function pointer, group_propose(), for the
** COLD commands.  The cold threads' answers find their tier through the
** request's owner pointer; parked jobs run again through their own
** handler, and are freed, if the server stops first, through their
** on_drop.
*/
#include "internal.h"

/* A chunk being read back, and the jobs waiting for it (chained through
** their msg.next, which is free while a job is parked). */
struct tier_fetch {
  struct tier_fetch *next;
  struct job *waiting;
  char name[COLD_NAME_MAX];
};

#define TIER_MAX_UPLOADS 4 /* uploads in flight per group */
#define TIER_SWEEP_MS 600000 /* a leader sweeps again after this long */

/* PLANTED BUGS.  -DTIER_PLANT=n (default 0), never in a release build:
**   1  the sweep deletes unnamed objects of any term, its own and later
**      ones included (rule 2 broken): test/cold.sh's object of a later
**      term goes, and make test-cold-plants requires that it fails; the
**      unit case tier_terms fails too;
**   2  an upload's chunk is named whatever the node's term is when it
**      ends (rule 1 broken): the unit case tier_terms fails. */
#ifndef TIER_PLANT
#define TIER_PLANT 0
#endif
#define TIER_BUG(n) (TIER_PLANT == (n))

static uint64_t tier_wall(const struct tier *t) {
  return t->env->wall_ms(t->env);
}

static void tier_on_deleted(struct loop *l, struct loop_msg *m) {
  struct cold_req *q = (struct cold_req *)(void *)m;
  struct tier *t = (struct tier *)q->owner;
  (void)l; /* a failure is logged by the tier; a later sweep retries */
  t->n_deletes--;
  if (q->rc == URSULA_OK || q->rc == URSULA_ENOTFOUND)
    t->stats.deletes++;
  else
    t->stats.delete_failures++;
  cold_req_free(q);
}

URSULA_PRIVATE void tier_delete_objects(struct core *c, struct tier *t,
                                        const struct buf *names) {
  size_t off = 0;
  while (off < names->len) {
    const char *name = names->ptr + off;
    size_t len = strlen(name);
    struct cold_req *q;
    off += len + 1;
    if (len == 0 || len >= COLD_NAME_MAX) continue;
    if ((q = cold_req_new(COLD_DELETE, c->loop, tier_on_deleted)) == NULL)
      continue; /* a later sweep deletes it */
    memcpy(q->name, name, len + 1);
    q->group = t->id;
    q->owner = t;
    t->n_deletes++;
    cold_submit(t->cold, q);
  }
}

/* The term in which t may move data now (its sweep ran in it), or 0. */
static uint64_t tier_term(const struct tier *t) {
  uint64_t term = t->lead_term(t->group);
  return term != 0 && term == t->swept ? term : 0;
}

/* After a failure: no new cold-tier work for a while (1 s, doubling up to
** 30 s while failures go on). */
static void tier_backoff(struct tier *t) {
  t->backoff_ms = t->backoff_ms ? t->backoff_ms * 2 : 1000;
  if (t->backoff_ms > 30000) t->backoff_ms = 30000;
  t->retry_ms = tier_wall(t) + t->backoff_ms;
}

URSULA_PRIVATE int tier_read_chunk(struct tier *t, const struct stream *s,
                                   const struct stream_chunk *ch,
                                   const char **p) {
  if (t->cache != NULL && (*p = cold_cache_get(t->cache, ch->name)) != NULL) {
    t->stats.cache_hits++;
    return URSULA_OK;
  }
  t->want = ch;
  t->want_inc = s->incarnation;
  return t->cold != NULL ? URSULA_EAGAIN : URSULA_EIO;
}

URSULA_PRIVATE int tier_fetch_status(int rc, const char **reason) {
  if (rc == URSULA_ENOTFOUND) {
    *reason = "a chunk of this stream is missing from cold storage";
    return 500;
  }
  if (rc == URSULA_ECORRUPT) {
    *reason = "a chunk of this stream read from cold storage is damaged";
    return 500;
  }
  *reason =
      "cold storage is unavailable; the data is kept, try again "
      "later";
  return 503;
}

/* A chunk fetched for parked jobs: check it, cache it, run them again. */
static void tier_on_fetched(struct loop *l, struct loop_msg *m) {
  struct cold_req *q = (struct cold_req *)(void *)m;
  struct tier *t = (struct tier *)q->owner;
  struct tier_fetch **pp = &t->fetches, *f;
  int rc = q->rc;
  while (*pp != NULL && strcmp((*pp)->name, q->name) != 0) pp = &(*pp)->next;
  f = *pp;
  if (f != NULL) *pp = f->next;
  if (rc == URSULA_OK && cold_chunk_check(&q->data, q->incarnation, q->start,
                                          q->end) != URSULA_OK) {
    LOG_E("group %d: chunk %s read from the cold tier is damaged", t->id,
          q->name);
    rc = URSULA_ECORRUPT;
  } else if (rc == URSULA_ENOTFOUND) {
    LOG_W(
        "group %d: chunk %s is missing from the cold tier (its stream "
        "removed, and not yet here?): the reads that wanted it look again "
        "after a read barrier",
        t->id, q->name);
  }
  if (rc == URSULA_OK) {
    t->stats.fetches++;
    t->stats.fetch_bytes += q->data.len;
  } else {
    t->stats.fetch_failures++;
  }
  if (rc == URSULA_OK) cold_cache_put(t->cache, q->name, &q->data);
  while (f != NULL && f->waiting != NULL) { /* through their handlers */
    struct job *j = f->waiting;
    f->waiting = (struct job *)(void *)j->msg.next;
    j->msg.next = NULL;
    j->fetch_rc = rc;
    j->msg.on_msg(l, &j->msg);
  }
  URSULA_FREE(f);
  cold_req_free(q);
}

URSULA_PRIVATE int tier_fetch(struct core *c, struct tier *t, struct job *j) {
  const struct stream_chunk *ch = t->want;
  struct tier_fetch *f = t->fetches;
  while (f != NULL && strcmp(f->name, ch->name) != 0) f = f->next;
  if (f == NULL) {
    struct cold_req *q = cold_req_new(COLD_GET, c->loop, tier_on_fetched);
    f = (struct tier_fetch *)URSULA_MALLOC(sizeof(*f));
    if (q == NULL || f == NULL) {
      cold_req_free(q);
      URSULA_FREE(f);
      return URSULA_ENOMEM;
    }
    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", ch->name);
    snprintf(q->name, sizeof(q->name), "%s", ch->name);
    q->group = t->id;
    q->owner = t;
    q->incarnation = t->want_inc;
    q->start = ch->start;
    q->end = ch->end;
    f->next = t->fetches;
    t->fetches = f;
    cold_submit(t->cold, q);
  }
  j->msg.next = f->waiting != NULL ? &f->waiting->msg : NULL;
  f->waiting = j;
  return URSULA_OK;
}

static void tier_flush_stream(struct core *c, struct tier *t, struct stream *s,
                              uint64_t now);

/* A COLD command was committed (or refused). */
static void tier_cold_done(struct core *c, struct group *g,
                           const struct stream_result *r, void *arg) {
  struct cold_req *q = (struct cold_req *)arg;
  struct tier *t = (struct tier *)q->owner;
  struct str path;
  struct stream *s;
  uint64_t now = tier_wall(t);
  (void)g;
  path.ptr = q->path.ptr;
  path.len = q->path.len;
  s = stream_find(t->sm, path);
  if (s != NULL && s->incarnation == q->incarnation) {
    s->local.flushing = 0;
    s->local.unflushed_since = s->tail > s->cold_end ? now : 0;
    if (r->status == 204) {
      t->moved += q->end - q->start;
      tier_flush_stream(c, t, s, now); /* a backlog */
    }
  }
  /* refused: the object stays unnamed; the same run is uploaded again
  ** under the same name, and deleting it here could race that upload */
  cold_req_free(q);
}

/* An upload finished: name the chunk in the log. */
static void tier_on_uploaded(struct loop *l, struct loop_msg *m) {
  struct cold_req *q = (struct cold_req *)(void *)m;
  struct core *c = (struct core *)loop_get_user(l);
  struct tier *t = (struct tier *)q->owner;
  struct cmd cmd;
  t->n_uploads--;
  if (q->rc == URSULA_OK) {
    t->stats.uploads++;
    t->stats.upload_bytes += q->data.len;
  } else {
    t->stats.upload_failures++;
  }
  if (q->rc != URSULA_OK || (tier_term(t) != q->term && !TIER_BUG(2))) {
    struct str path;
    struct stream *s;
    path.ptr = q->path.ptr;
    path.len = q->path.len;
    s = stream_find(t->sm, path);
    if (s != NULL && s->incarnation == q->incarnation) s->local.flushing = 0;
    if (q->rc != URSULA_OK)
      tier_backoff(t);
    else /* rule 1: named in no other term; a later sweep deletes it */
      LOG_D("group %d: chunk %s uploaded, but this node no longer leads in "
            "term %llu: left unnamed",
            t->id, q->name, (unsigned long long)q->term);
    cold_req_free(q);
    return;
  }
  t->backoff_ms = 0;
  memset(&cmd, 0, sizeof(cmd));
  cmd.type = CMD_COLD;
  cmd.time_ms = tier_wall(t);
  cmd.path.ptr = q->path.ptr;
  cmd.path.len = q->path.len;
  cmd.incarnation = q->incarnation;
  cmd.cold_start = q->start;
  cmd.cold_end = q->end;
  cmd.object = util_str(q->name);
  t->propose(c, t->group, &cmd, tier_cold_done, q);
}

/* Upload the next run of s: whole appends from its cold end (at or past
** a fork's fork point: its own bytes only), about a chunk's worth. */
static void tier_upload(struct core *c, struct tier *t, struct stream *s,
                        uint64_t term) {
  uint64_t start = s->cold_end, end = start;
  size_t u = s->cold_units;
  struct cold_req *q;
  int rc;
  while (u < s->n_bounds && end - start < t->chunk_bytes) end = s->bounds[u++];
  if (end == start) return;
  if ((q = cold_req_new(COLD_PUT, c->loop, tier_on_uploaded)) == NULL) return;
  rc = buf_reserve(&q->data, COLD_HEADER + (size_t)(end - start));
  if (rc == URSULA_OK) rc = buf_append(&q->path, s->path, s->path_len);
  if (rc == URSULA_OK) {
    q->data.len = COLD_HEADER;
    rc = stream_read(t->sm, s, start, end, &q->data);
  }
  if (rc != URSULA_OK) {
    LOG_W("group %d: cannot read %.*s for the cold tier: %s", t->id,
          (int)s->path_len, s->path, ursula_strerror(rc));
    cold_req_free(q);
    return;
  }
  cold_chunk_seal(&q->data, s->incarnation, start);
  cold_chunk_name(q->name, t->id, s->incarnation, start, end, term);
  q->term = term;
  q->group = t->id;
  q->owner = t;
  q->incarnation = s->incarnation;
  q->start = start;
  q->end = end;
  s->local.flushing = 1;
  t->n_uploads++;
  cold_submit(t->cold, q);
}

/* Move s's next run if it is a chunk's worth or has waited long enough
** (only as the leader of a swept term). */
static void tier_flush_stream(struct core *c, struct tier *t, struct stream *s,
                              uint64_t now) {
  uint64_t term;
  if (s->local.flushing || s->soft_deleted || s->tail == s->cold_end ||
      t->n_uploads >= TIER_MAX_UPLOADS || now < t->retry_ms ||
      wal_failed(t->wal) || (term = tier_term(t)) == 0)
    return;
  if (s->local.unflushed_since == 0) s->local.unflushed_since = now;
  if (s->tail - s->cold_end >= t->chunk_bytes ||
      (t->flush_age_ms > 0 &&
       now - s->local.unflushed_since >= t->flush_age_ms))
    tier_upload(c, t, s, term);
}

static int tier_name_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The sweep's LIST came back: delete what no stream names and a term
** below the sweep's names (rule 2). */
static void tier_on_listed(struct loop *l, struct loop_msg *m) {
  struct cold_req *q = (struct cold_req *)(void *)m;
  struct core *c = (struct core *)loop_get_user(l);
  struct tier *t = (struct tier *)q->owner;
  const struct stream_state *sm = t->sm;
  const char **names = NULL;
  unsigned char *named = NULL;
  struct buf garbage;
  size_t n = 0, i, off, k;
  t->listing = 0;
  memset(&garbage, 0, sizeof(garbage));
  if (q->rc != URSULA_OK) {
    tier_backoff(t);
    cold_req_free(q);
    return;
  }
  for (off = 0; off < q->data.len; off += strlen(q->data.ptr + off) + 1) n++;
  names = (const char **)URSULA_MALLOC((n + 1) * sizeof(*names));
  named = (unsigned char *)URSULA_MALLOC(n + 1);
  if (names == NULL || named == NULL) {
    tier_backoff(t);
    goto done;
  }
  for (i = 0, off = 0; i < n; i++, off += strlen(q->data.ptr + off) + 1)
    names[i] = q->data.ptr + off;
  qsort(names, n, sizeof(*names), tier_name_cmp);
  memset(named, 0, n + 1);
  for (k = 0; k < sm->cap; k++) {
    const struct stream *s;
    for (s = sm->slots[k]; s != NULL; s = s->hnext) {
      for (i = 0; i < s->n_chunks; i++) {
        const char *key = s->chunks[i].name;
        const char **hit = (const char **)bsearch(
            &key, names, n, sizeof(*names), tier_name_cmp);
        if (hit != NULL) named[hit - names] = 1;
      }
    }
  }
  for (i = 0; i < n; i++)
    if (!named[i] && (cold_chunk_term(names[i]) < q->term || TIER_BUG(1)))
      buf_append(&garbage, names[i], strlen(names[i]) + 1);
  if (garbage.len > 0) {
    LOG_I(
        "group %d: cold tier sweep in term %llu: %lu objects, deleting "
        "those no stream names from earlier terms",
        t->id, (unsigned long long)q->term, (unsigned long)n);
    tier_delete_objects(c, t, &garbage);
  }
  t->swept = q->term;
  t->backoff_ms = 0;
done:
  URSULA_FREE(names);
  URSULA_FREE(named);
  buf_free(&garbage);
  cold_req_free(q);
}

/* List the group's objects for a sweep in term (tier_on_listed). */
static void tier_sweep(struct core *c, struct tier *t, uint64_t term) {
  struct cold_req *q;
  if ((q = cold_req_new(COLD_LIST, c->loop, tier_on_listed)) == NULL) return;
  snprintf(q->name, sizeof(q->name), "g%05d/", t->id);
  q->term = term;
  q->group = t->id;
  q->owner = t;
  t->listing = 1;
  t->swept_ms = tier_wall(t);
  cold_submit(t->cold, q);
}

/* Once a second on the group's owner: a leader sweeps first in each
** term, and again every TIER_SWEEP_MS (garbage left meanwhile: a
** deposed leader's late upload, a failed delete), and moves data. */
URSULA_PRIVATE void tier_tick(struct core *c, struct tier *t) {
  uint64_t now, term;
  size_t k;
  if (t->cold == NULL) return; /* no cold tier, or not attached yet */
  now = tier_wall(t);
  if (now < t->retry_ms) return;
  term = t->lead_term(t->group);
  if (term == 0) return; /* a follower: nothing to move or sweep */
  if (t->swept != term) { /* first the sweep of this term */
    if (!t->listing) tier_sweep(c, t, term);
    return;
  }
  if (!t->listing && now - t->swept_ms >= TIER_SWEEP_MS)
    tier_sweep(c, t, term); /* (moves go on meanwhile) */
  for (k = 0; k < t->sm->cap && t->n_uploads < TIER_MAX_UPLOADS; k++) {
    struct stream *s;
    for (s = t->sm->slots[k]; s != NULL; s = s->hnext)
      tier_flush_stream(c, t, s, now);
  }
}

URSULA_PRIVATE void tier_attach(struct tier *t, struct cold *cold,
                                struct cold_cache *cache, uint64_t flush_age_ms,
                                uint64_t hot_max) {
  t->cold = cold;
  t->cache = cache;
  t->flush_age_ms = flush_age_ms;
  t->chunk_bytes = hot_max / 4;
  if (t->chunk_bytes < 4096) t->chunk_bytes = 4096;
  if (t->chunk_bytes > 4194304) t->chunk_bytes = 4194304;
}

URSULA_PRIVATE void tier_free(struct tier *t) {
  while (t->fetches != NULL) { /* stopped while chunks were on their way */
    struct tier_fetch *f = t->fetches;
    t->fetches = f->next;
    while (f->waiting != NULL) {
      struct loop_msg *m = &f->waiting->msg;
      f->waiting = (struct job *)(void *)m->next;
      if (m->on_drop != NULL)
        m->on_drop(m); /* never delivered: as loop_close() drops it */
      else
        URSULA_FREE(m);
    }
    URSULA_FREE(f);
  }
}
