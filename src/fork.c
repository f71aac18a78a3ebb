/*
** fork.c -- making a fork: the protocol of a fork PUT across groups.
**
** A fork (PUT with Stream-Forked-From) is a new stream that begins with
** the bytes of another stream, its source, up to a fork point.  It copies
** none of them: it refers to them (stream.c, "Forks").  Its CREATE names
** the source (path and incarnation) and the fork point, and the fork
** holds a reference on the source (the source's refcount) that keeps
** the source and its bytes, soft-deleted if it is deleted or expires,
** for as long as the fork lives.  Reads of the inherited bytes go to the
** source's owner (group.c, "reads of a fork").  The fork and its source
** may hash to different groups, owned by different cores, and only a
** group's owner touches it, so a fork PUT is a job (struct job) that
** travels between owners.  Its fork_state names the step it is on; each
** step runs on the owner named, in fork_on_job():
**
**   api.c: fork_start()
**     |
**     v
**   FORK_ACQUIRE, at the owner of the source's group
**     looks at the source (read only).  With a Stream-Fork-Sub-Offset
**     at a Stream-Fork-Offset it finds the append that starts there
**     and, for JSON, counts its messages and measures the prefix the
**     sub-offset takes (apply reads no stream bytes).  If that offset is
**     in what the source itself inherited (a fork of a fork), the append
**     is in the source's own sources: FORK_UNIT finds it and the job
**     comes back here (unit_state set).  A JSON source's fork offset
**     must be an append boundary, found the same way: else 400, and
**     nothing is proposed.  Then it proposes
**     FORK_ACQUIRE(source, the incarnation it looked at when it found
**     something, fork offset, sub-offset, content type, what it found:
**     n_msgs, CMD_F_UNIT).
**     |  refused by the apply (404, 409, 400; 503 if the source was
**     |  re-created since the look): answer it.  Done; nothing was taken.
**     v  committed: the source's refcount +1, and the fork point: the
**        fork offset (given, or the source's tail) plus the prefix the
**        sub-offset takes; the source's incarnation, content type, and
**        TTL / Expires-At where the request left them out, into the job
**   FORK_CREATE, at the owner of the fork's group
**     proposes CREATE(fork, source path and incarnation, fork offset,
**     sub-offset, fork point, configuration, the PUT's body): no byte of
**     the source
**     |  created nothing (the path exists: 200 for the same fork, 409 for
**     |  another stream; or the log refused the entry): RELEASE, since
**     |  the existing stream holds no reference of this PUT's
**     v  answer the apply's status (201: the fork holds the reference)
**
**   FORK_UNIT(stream, incarnation, limit), at the owner of a stream the
**     source inherits from (read only).  The append at the fork offset
**     is the one of that stream, cut at limit (the fork point of the
**     fork above it in the chain).  If the offset is in what this stream
**     inherited in turn, on to its source (limit: the lower of limit and
**     this stream's fork point).  Else back to FORK_ACQUIRE with whether
**     an append starts at the offset, its length in Sub-Offset units and,
**     for JSON, the bytes of the prefix; reading those may park the job
**     on a cold-tier fetch of that stream's chunk, after which the step
**     runs again.  A stream not there under the incarnation named: the
**     PUT is answered 503, nothing was taken (while the source lives it
**     holds its own source, so this is a source re-created meanwhile).
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
** connection id); during FORK_UNIT the stream it looks at (hop_path,
** hop_inc, hop_limit); after it, what it found (unit_*); after ACQUIRE
** the fork point (cmd.fork_offset: the fork offset; cmd.fork_base: the
** fork point), the source's incarnation (cmd.fork_inc), for JSON the
** records below the fork point (cmd.record_base: the fork's records
** continue its source's) and the inherited configuration.  No stream
** bytes.
**
** Which steps may be repeated: FORK_UNIT and the look of FORK_ACQUIRE
** only read (what they find of the inherited bytes never changes), so
** they run again freely, after every cold-tier fetch; the ACQUIRE is
** proposed once per PUT.  CREATE is a PUT, idempotent as the protocol
** says: a repeated CREATE of the same fork answers 200 and releases the
** reference its own ACQUIRE took.  ACQUIRE and RELEASE are not: each
** counts once, and each is sent once and never retried (a RELEASE that
** the log refused is proposed again by its group, group.c).
**
** IN A CLUSTER every group is replicated on every node, and the steps
** run on this node's replicas (the owner cores here): each look (the
** look of FORK_ACQUIRE, FORK_UNIT) first passes a read barrier on its
** group (group_barrier), so that it sees every change acknowledged
** before it; each proposal goes through group_write(), which forwards it
** to its group's leader when this node does not lead, and continues once
** this node has applied the entry (the result is this replica's apply,
** the same on every node).  A proposal whose outcome is unknown (a
** leader change, no answer: r->unknown) is treated as made, never as
** refused: an ACQUIRE then keeps its reference, and a CREATE's is not
** given back.  The RELEASE a committed DELETE, EXPIRE or FORK_RELEASE
** owes is sent by one node only, the leader of that entry's term if it
** still leads when it applies it (group.c, group_effects_here); when
** none does, the reference stays taken (the gap below).
**
** If the process dies between steps, nothing acknowledged is lost and no
** stream goes away too early, but a reference may stay taken: after an
** ACQUIRE committed and before the CREATE committed (the client saw no
** answer, and its retry acquires anew), or after a command that removed
** a fork and before the RELEASE it sends is committed at the source's
** group (effects are not replayed).  A source with such a stale reference
** is never removed: deleted, it stays soft-deleted (reads answer 410, not
** 404) and keeps its bytes (its log segments, its cold chunks).  A crash
** during FORK_UNIT or the look leaves nothing.  That is the one known gap
** of this protocol (README, "Durability contract").
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
  j->unit_state = 0;
  j->hops = 0;
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

/* The append of s that starts at off (off >= s->base: one of s's own),
** cut at limit, into j: unit_found, unit_len (bytes, or JSON messages)
** and unit_prefix (JSON: the bytes of the first cmd.fork_sub messages,
** if there are that many).  A JSON append in the cold tier is read from
** it only if read_cold (else not counted: unit_len 0).  URSULA_OK,
** URSULA_EAGAIN (a chunk is being fetched: park), or a read error. */
static int fork_find_unit(struct stream_state *sm, const struct stream *s,
                          uint64_t off, uint64_t limit, int read_cold,
                          struct job *j) {
  struct buf b;
  size_t u = stream_unit_at(s, off);
  uint64_t end;
  int rc;
  j->unit_found = 0;
  j->unit_len = j->unit_prefix = 0;
  if (u >= s->n_bounds || stream_unit_start(s, u) != off || off >= limit)
    return URSULA_OK;
  end = s->bounds[u] < limit ? s->bounds[u] : limit;
  j->unit_found = 1;
  j->unit_rec = stream_record_at(s, off);
  if (!s->json || j->cmd.fork_sub == 0) { /* (JSON: only found) */
    j->unit_len = end - off;
    return URSULA_OK;
  }
  if (u < s->cold_units && !read_cold) return URSULA_OK;
  memset(&b, 0, sizeof(b));
  rc = stream_read(sm, s, off, end, &b);
  if (rc == URSULA_OK) {
    size_t n =
        json_prefix_len(b.ptr ? b.ptr : "", b.len, (size_t)j->cmd.fork_sub);
    j->unit_len = json_count(b.ptr ? b.ptr : "", b.len);
    if (n != (size_t)-1) j->unit_prefix = n;
  }
  buf_free(&b);
  return rc;
}

/* FORK_ACQUIRE committed (or refused): the fork point, the inherited
** configuration; on to FORK_CREATE. */
static void fork_acquired(struct core *c, struct group *g,
                          const struct stream_result *r, void *arg) {
  struct job *j = (struct job *)arg;
  struct stream *s;
  uint64_t off = r->tail, end = off;
  if (r->status != 200) {
    group_copy_result(j, r);
    group_reply(c, j);
    return;
  }
  s = stream_find(group_state(g), util_str(j->fork_source));
  if (s == NULL) { /* cannot be: the ACQUIRE just applied holds it */
    fork_release(c, j);
    group_fail(c, j, 500, "fork source went away");
    return;
  }
  if (j->cmd.fork_sub > 0) {
    /* JSON: the apply accepted the sub-offset, so the look counted
    ** at least that many messages and measured their bytes */
    end = off + (s->json ? j->unit_prefix : j->cmd.fork_sub);
    if (s->json && j->unit_prefix == 0) {
      fork_release(c, j);
      group_fail(c, j, 500, "fork point not found");
      return;
    }
  }
  j->cmd.fork_offset = off;
  j->cmd.fork_base = end;
  j->cmd.fork_inc = s->incarnation;
  /* JSON: the records below the fork point, where the fork's own begin
  ** (stream.c, "Records"): those before the fork offset -- an append
  ** boundary of s, or of a stream s inherits from, whose look found it
  ** (unit_rec) -- and the sub-offset's messages */
  if (s->json) {
    j->cmd.flags |= CMD_F_RECORD_BASE;
    j->cmd.record_base =
        (off >= s->base ? stream_record_at(s, off) : j->unit_rec) +
        j->cmd.fork_sub;
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
  /* refused (a failed write, a replaced entry): no fork holds it either.
  ** Not if its outcome is unknown (a cluster): the fork may be made yet,
  ** and hold it; the reference then stays taken (see above) */
  if (r->release_source || (r->refused && !r->unknown))
    fork_release(c, (const struct job *)arg);
  group_after_change(c, g, r, arg);
}

/* Send j to FORK_UNIT at the owner of s's source, which holds the bytes
** below s's fork point; limit: where what the look wants ends. */
static void fork_unit_send(struct core *c, struct job *j,
                           const struct stream *s, uint64_t limit) {
  if (s->fork_source == NULL || s->fork_source_len > URSULA_MAX_PATH_BYTES ||
      ++j->hops > JOB_MAX_HOPS) {
    group_fail(c, j, 500, "a fork's chain of sources is broken");
    return;
  }
  memcpy(j->hop_path, s->fork_source, s->fork_source_len);
  j->hop_path[s->fork_source_len] = '\0';
  j->hop_len = s->fork_source_len;
  j->hop_inc = s->fork_inc;
  j->hop_limit = limit < s->base ? limit : s->base;
  j->fork_state = FORK_UNIT;
  fork_send(c, j, j->hop_path, j->hop_len);
}

/* FORK_ACQUIRE: at the source's owner, look, then propose the
** reference. */
static void fork_acquire(struct core *c, struct group *g, struct job *j) {
  struct stream_state *sm = group_state(g);
  struct stream *s = stream_find(sm, util_str(j->fork_source));
  struct cmd acq;
  memset(&acq, 0, sizeof(acq));
  acq.type = CMD_FORK_ACQUIRE;
  acq.flags = j->cmd.flags & (CMD_F_FORK_OFFSET | CMD_F_CT);
  acq.time_ms = group_wall(g);
  acq.path = util_str(j->fork_source);
  acq.content_type = util_str(j->content_type);
  acq.fork_offset = j->cmd.fork_offset;
  acq.fork_sub = j->cmd.fork_sub;
  /* A JSON stream's offsets are its append boundaries (api.c: a read
  ** from inside an append starts at the append): a fork offset inside one
  ** would cut a message, so it is refused (400; the protocol lets a
  ** server reject fork offsets off an append boundary).  Seen here, not
  ** in the apply, because below s's base the boundaries are its
  ** sources'; they never change, so what the look finds stays true. */
  if (s != NULL && !s->soft_deleted && s->json && acq.fork_sub == 0 &&
      (acq.flags & CMD_F_FORK_OFFSET) && acq.fork_offset <= s->tail) {
    if (acq.fork_offset >= s->base) {
      if (stream_unit_floor(s, acq.fork_offset) != acq.fork_offset) {
        group_fail(c, j, 400, "fork offset is inside a JSON message");
        return;
      }
    } else if (j->unit_state == 0) {
      j->unit_inc = s->incarnation;
      fork_unit_send(c, j, s, s->base);
      return;
    } else if (!j->unit_found) {
      group_fail(c, j, 400, "fork offset is inside a JSON message");
      return;
    }
  }
  /* a sub-offset at a given offset: the append there (any other case
  ** needs nothing found; the apply decides the errors) */
  if (s != NULL && !s->soft_deleted && acq.fork_sub > 0 &&
      (acq.flags & CMD_F_FORK_OFFSET) && acq.fork_offset <= s->tail) {
    if (acq.fork_offset < s->base) { /* one s inherited */
      if (j->unit_state == 0) {
        j->unit_inc = s->incarnation;
        fork_unit_send(c, j, s, s->base);
        return;
      }
      if (j->unit_found) {
        acq.flags |= CMD_F_UNIT;
        acq.n_msgs = j->unit_len;
      }
      acq.incarnation = j->unit_inc; /* re-created since: apply says 503 */
    } else if (s->json) { /* one of s's own: its messages */
      if (fork_find_unit(sm, s, acq.fork_offset, s->tail, 0, j) != URSULA_OK) {
        group_fail(c, j, 503, "could not read the fork source");
        return;
      }
      acq.n_msgs = j->unit_len;
      acq.incarnation = s->incarnation;
    }
  }
  group_write(c, g, &acq, fork_acquired, j);
}

/* FORK_UNIT: at the owner of a stream the source inherits from, find the
** append at the fork offset; back to FORK_ACQUIRE with it. */
static void fork_unit(struct core *c, struct group *g, struct job *j) {
  struct stream_state *sm = group_state(g);
  struct str path;
  struct stream *s;
  uint64_t off = j->cmd.fork_offset;
  int rc;
  path.ptr = j->hop_path;
  path.len = j->hop_len;
  s = stream_find(sm, path);
  if (s == NULL || s->incarnation != j->hop_inc || j->hop_limit > s->tail ||
      off >= j->hop_limit) {
    group_fail(c, j, 503, "the fork source changed meanwhile; retry");
    return;
  }
  if (off < s->base) { /* further down the chain */
    fork_unit_send(c, j, s, j->hop_limit);
    return;
  }
  rc = fork_find_unit(sm, s, off, j->hop_limit, 1, j);
  if (rc == URSULA_EAGAIN) { /* runs again once the chunk is here */
    if ((rc = group_park(c, g, j)) != URSULA_OK) group_fail_fetch(c, j, rc);
    return;
  }
  if (rc != URSULA_OK) {
    group_fail(c, j, rc == URSULA_ECORRUPT ? 500 : 503,
               "could not read the fork source");
    return;
  }
  j->unit_state = 1;
  j->fork_state = FORK_ACQUIRE;
  fork_send(c, j, j->fork_source, strlen(j->fork_source));
}

/* FORK_CREATE: at the fork's owner, propose the CREATE. */
static void fork_create(struct core *c, struct job *j) {
  struct group *g = group_of(c, j->path, j->path_len);
  j->cmd.type = CMD_CREATE;
  group_bind_cmd(g, j);
  group_write(c, g, &j->cmd, fork_created, j);
}

/* A fork job arrives at an owner, or comes back from a chunk fetch. */
static void fork_on_job(struct loop *l, struct loop_msg *m) {
  struct core *c = (struct core *)loop_get_user(l);
  struct job *j = (struct job *)(void *)m;
  int rc = j->fetch_rc;
  if (rc != URSULA_OK) { /* the chunk a look waited for could not be had:
                            nothing was taken yet */
    j->fetch_rc = URSULA_OK;
    if (!group_fetch_again(j, rc)) {
      group_fail_fetch(c, j, rc);
      return;
    } /* (a barrier first: group.c, READS RACING A REMOVAL) */
  }
  switch (j->fork_state) {
    case FORK_ACQUIRE: /* (each look sees what was acknowledged) */
      group_barrier(c, fork_source_group(c, j), j, fork_acquire);
      return;
    case FORK_UNIT:
      group_barrier(c, group_of(c, j->hop_path, j->hop_len), j, fork_unit);
      return;
    case FORK_CREATE:
      fork_create(c, j);
      return;
    default:
      group_fail(c, j, 500, "unknown job");
      return;
  }
}
