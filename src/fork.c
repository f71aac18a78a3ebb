/*
** fork.c -- making a fork: the protocol of a fork PUT across two groups.
**
** A fork (PUT with Stream-Forked-From) is a new stream that begins with
** the bytes of another stream, its source, up to a fork point.  The fork
** and its source may hash to different groups, owned by different cores,
** and only a group's owner touches it, so a fork PUT is a job (struct
** job) that travels between owners.  The job's fork_state says which step
** it is on; each step runs on the owner named, in fork_on_job():
**
**   api.c: fork_start()
**     |
**     v
**   FORK_ACQUIRE, at the owner of the source's group
**     proposes FORK_ACQUIRE(source, fork offset, sub-offset, content type)
**     |  refused by the apply (404, 409, 400): answer it.  Done; nothing
**     |  was taken.
**     v  committed: the source's refcount +1; the fork point in the result
**   FORK_COLLECT, at the same owner
**     copies the source's bytes [0, fork point) and the ends of its
**     appends before the fork point into the job, and fills in the
**     source's content type and TTL / Expires-At where the request left
**     them out.  A chunk of the source not in the cache (cold tier): the
**     job is parked on the chunk's fetch and comes back here when it is
**     in (or failed), copying on from the byte where it stopped.
**     |  failed (cold tier unreachable, damage, memory): RELEASE, answer
**     |  5xx.
**     v  copied
**   FORK_CREATE, at the owner of the fork's group
**     proposes CREATE(fork, inherited bytes, append ends)
**     |  created nothing (the path exists: 200 for the same fork, 409 for
**     |  another stream): RELEASE, since the existing stream holds no
**     |  reference of this PUT's
**     v  answer the apply's status (201: the fork holds the reference)
**
**   RELEASE(source) is a message of its own, not a job: a struct
**   group_release sent with group_send_release() to the owner of the
**   source's group, which proposes FORK_RELEASE(source) there: refcount
**   -1, and a source that was soft-deleted (or expired) and had no other
**   reference is removed (404 from then on; its own source gets a
**   RELEASE in turn).  It carries the source's path and nothing else, and
**   nothing answers it.  Sent here when a fork is not made after its
**   ACQUIRE, and by group.c as an effect of committed commands that
**   remove a fork (DELETE, EXPIRE, a RELEASE that removes one).
**
** What the job carries between owners: the request (fork path, source
** path, Stream-Fork-Offset and sub-offset in cmd, content type, TTL or
** Expires-At, body, producer headers) and its connection (origin core,
** connection id); after ACQUIRE also the fork point (cmd.fork_offset: the
** start of the append at the fork point; offset: the fork point itself);
** after COLLECT also the inherited bytes (inherit) and append ends
** (bounds), and the inherited configuration.
**
** Which steps may be repeated: COLLECT only reads, and is resumed after
** every fetch without copying a byte twice.  CREATE is a PUT, idempotent
** as the protocol says: a repeated CREATE of the same fork answers 200
** and releases the reference its own ACQUIRE took.  ACQUIRE and RELEASE
** are not: each counts once, and each is sent once and never retried.
**
** If the process dies between steps, nothing acknowledged is lost and no
** stream goes away too early, but a reference may stay taken: after an
** ACQUIRE committed and before the CREATE committed (the client saw no
** answer, and its retry acquires anew), or after a command that removed
** a fork and before the RELEASE it sends is committed at the source's
** group (effects are not replayed).  A source with such a stale reference
** is never removed: deleted, it stays soft-deleted (reads answer 410, not
** 404) and keeps its bytes.  That is the one known gap of this protocol
** (README, "Durability contract").
*/
#include "internal.h"

static void fork_on_job(struct loop *l, struct loop_msg *m);

/* Send j to the owner of the group of path, to go on in fork_on_job(). */
static void fork_send(struct core *c, struct job *j, const char *path,
                      size_t len) {
  j->msg.on_msg = fork_on_job;
  group_send(c, &j->msg, path, len);
}

URSULA_PRIVATE void fork_start(struct core *c, struct job *j) {
  j->fork_state = FORK_ACQUIRE;
  fork_send(c, j, j->fork_source, strlen(j->fork_source));
}

/* The fork is not made: give back the reference that ACQUIRE took. */
static void fork_release(struct core *c, const struct job *j) {
  group_send_release(c, j->fork_source, strlen(j->fork_source));
}

/* The group of j's source (on its owner's thread). */
static struct group *fork_source_group(struct core *c, const struct job *j) {
  return group_of(c, j->fork_source, strlen(j->fork_source));
}

/* A fork into the middle of a JSON append (Stream-Fork-Sub-Offset): count
** the messages of the append at the fork offset into acq->n_msgs, since
** the apply reads no stream bytes.  (Any other case needs no count; the
** apply decides the errors.) */
static int fork_count(struct group *g, struct cmd *acq) {
  struct stream_state *sm = group_state(g);
  struct stream *s = stream_find(sm, acq->path);
  struct buf b;
  size_t u;
  int rc;
  if (s == NULL || !s->json || acq->fork_sub == 0 ||
      !(acq->flags & CMD_F_FORK_OFFSET))
    return URSULA_OK;
  u = stream_unit_at(s, acq->fork_offset);
  if (u >= s->n_bounds || u < s->cold_units ||
      (u > 0 ? s->bounds[u - 1] : 0) != acq->fork_offset)
    return URSULA_OK;
  memset(&b, 0, sizeof(b));
  rc = stream_read(sm, s, acq->fork_offset, s->bounds[u], &b);
  if (rc == URSULA_OK) acq->n_msgs = json_count(b.ptr, b.len);
  buf_free(&b);
  return rc;
}

static void fork_collect(struct core *c, struct group *g, struct job *j);

/* FORK_ACQUIRE committed (or refused): find the fork point, go on to
** FORK_COLLECT. */
static void fork_acquired(struct core *c, struct group *g,
                          const struct stream_result *r, void *arg) {
  struct job *j = (struct job *)arg;
  struct stream_state *sm = group_state(g);
  struct stream *s;
  struct str src;
  uint64_t off = r->tail, end;
  if (r->status != 200) {
    group_copy_result(j, r);
    group_reply(c, j);
    return;
  }
  src.ptr = j->fork_source;
  src.len = strlen(j->fork_source);
  s = stream_find(sm, src);
  end = off;
  j->inherit.len = j->bounds.len = 0;
  if (j->cmd.fork_sub > 0 && s->json) { /* a prefix of the unit at off
                                           (never cold: see the acquire) */
    size_t u = stream_unit_at(s, off);
    if (stream_read(sm, s, off, s->bounds[u], &j->inherit) != URSULA_OK) {
      fork_release(c, j);
      group_fail(c, j, 503, "could not read the fork source");
      return;
    }
    end = off + json_prefix_len(j->inherit.ptr, j->inherit.len,
                                (size_t)j->cmd.fork_sub);
    j->inherit.len = 0;
  } else if (j->cmd.fork_sub > 0) {
    end = off + j->cmd.fork_sub;
  }
  j->cmd.fork_offset = off;
  j->offset = end;
  j->fork_state = FORK_COLLECT;
  fork_collect(c, g, j);
}

/* FORK_COLLECT: copy the bytes the fork inherits, [0, j->offset), into
** j->inherit (resumed after each chunk fetched from the cold tier), then
** pass the job on to the fork's owner. */
static void fork_collect(struct core *c, struct group *g, struct job *j) {
  struct stream_state *sm = group_state(g);
  struct stream *s;
  struct str src;
  uint64_t off = j->cmd.fork_offset;
  int rc;
  src.ptr = j->fork_source;
  src.len = strlen(j->fork_source);
  s = stream_find(sm, src); /* kept by the reference ACQUIRE took */
  if (s == NULL) {
    group_fail(c, j, 503, "fork source went away");
    return;
  }
  rc = stream_read(sm, s, j->inherit.len, j->offset, &j->inherit);
  if (rc == URSULA_EAGAIN) {
    /* comes back to fork_on_job once the chunk is here */
    if ((rc = group_park(c, g, j)) == URSULA_OK) return;
    fork_release(c, j);
    group_fail_fetch(c, j, rc);
    return;
  }
  j->bounds.len = 0;
  if (rc != URSULA_OK ||
      buf_append(&j->bounds, s->bounds,
                 stream_unit_at(s, off) * sizeof(uint64_t)) != URSULA_OK) {
    fork_release(c, j);
    group_fail(c, j, 503,
               rc == URSULA_OK || rc == URSULA_ENOMEM
                   ? "out of memory"
                   : "could not read the fork source");
    return;
  }
  /* the fork's configuration, inherited where the request left it out */
  if (!(j->cmd.flags & CMD_F_CT)) {
    size_t n = strlen(s->content_type);
    if (n >= sizeof(j->content_type)) n = sizeof(j->content_type) - 1;
    memcpy(j->content_type, s->content_type, n);
    j->content_type[n] = '\0';
  }
  if (s->json) j->cmd.flags |= CMD_F_JSON;
  if (!(j->cmd.flags & (CMD_F_TTL | CMD_F_EXPIRES))) {
    if (s->has_ttl) {
      j->cmd.flags |= CMD_F_TTL;
      j->cmd.ttl_s = s->ttl_s;
    } else if (s->has_expires) {
      size_t n = s->expires_text ? strlen(s->expires_text) : 0;
      if (n >= sizeof(j->expires_text)) n = sizeof(j->expires_text) - 1;
      j->cmd.flags |= CMD_F_EXPIRES;
      j->cmd.expires_at_ms = s->expires_at_ms;
      if (n) memcpy(j->expires_text, s->expires_text, n);
      j->expires_text[n] = '\0';
    }
  }
  j->fork_state = FORK_CREATE;
  fork_send(c, j, j->path, j->path_len);
}

/* The fork's CREATE committed (or refused): a CREATE that made no fork
** gives the reference back; then the answer, as for any PUT. */
static void fork_created(struct core *c, struct group *g,
                         const struct stream_result *r, void *arg) {
  /* refused (a failed write, a replaced entry): no fork holds it either */
  if (r->release_source || r->refused) fork_release(c, (const struct job *)arg);
  group_after_change(c, g, r, arg);
}

/* FORK_ACQUIRE: at the source's owner, propose the reference. */
static void fork_acquire(struct core *c, struct job *j) {
  struct group *g = fork_source_group(c, j);
  struct cmd acq;
  memset(&acq, 0, sizeof(acq));
  acq.type = CMD_FORK_ACQUIRE;
  acq.flags = j->cmd.flags & (CMD_F_FORK_OFFSET | CMD_F_CT);
  acq.time_ms = group_wall(g);
  acq.path = util_str(j->fork_source);
  acq.content_type = util_str(j->content_type);
  acq.fork_offset = j->cmd.fork_offset;
  acq.fork_sub = j->cmd.fork_sub;
  if (fork_count(g, &acq) != URSULA_OK) {
    group_fail(c, j, 503, "could not read the fork source");
    return;
  }
  group_propose(c, g, &acq, fork_acquired, j);
}

/* FORK_CREATE: at the fork's owner, propose the CREATE. */
static void fork_create(struct core *c, struct job *j) {
  struct group *g = group_of(c, j->path, j->path_len);
  j->cmd.type = CMD_CREATE;
  group_bind_cmd(g, j);
  group_propose(c, g, &j->cmd, fork_created, j);
}

/* A fork job arrives at an owner, or comes back from a chunk fetch. */
static void fork_on_job(struct loop *l, struct loop_msg *m) {
  struct core *c = (struct core *)loop_get_user(l);
  struct job *j = (struct job *)(void *)m;
  int rc = j->fetch_rc;
  switch (j->fork_state) {
    case FORK_ACQUIRE:
      fork_acquire(c, j);
      return;
    case FORK_COLLECT:
      if (rc != URSULA_OK) { /* the chunk it waited for could not be had */
        j->fetch_rc = URSULA_OK;
        fork_release(c, j);
        group_fail_fetch(c, j, rc);
        return;
      }
      fork_collect(c, fork_source_group(c, j), j);
      return;
    case FORK_CREATE:
      fork_create(c, j);
      return;
    default:
      group_fail(c, j, 500, "unknown job");
      return;
  }
}
