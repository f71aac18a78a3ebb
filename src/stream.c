/*
** stream.c -- the state machine of a group: its streams and how each
** command changes them.
**
** stream_apply() is the only writer of a group's replicated state.  It is
** a pure function of (state, log index, command bytes): no clock (the
** proposer stamps the time into the command), no I/O, no failure half-way
** (out of memory aborts the process: a replica that diverged silently
** would be worse than one that stopped).  So every replica that applies
** the same log reaches the same state, byte for byte, and replaying the
** log brings the state back.  stream_digest() and the canonical snapshot
** (sorted by path) are how tests and, later, replicas compare states.
**
** Replicated and local.  Each stream's `local` member (struct
** stream_local) is this node's alone: the hot bytes in memory, live
** readers, cold-tier upload progress, the last read.  No apply decision
** reads it, and snapshots and digests leave it out.  Reads change only
** `local`: the sliding TTL window moves for a read when the owner logs a
** TOUCH command (group.c), so every replica expires a stream at the same
** log position, and the window survives a restart.
**
** Offsets.  A stream is a byte sequence; an offset is a byte position in
** it, shown on the wire as "%016llu_%016llu" (0, position).  JSON streams
** store each message followed by ',' so positions stay byte positions.
** Each append is one "unit"; bounds[] keeps every unit's end position, so
** reads can stop on message boundaries and forks can take a prefix of the
** unit that starts at their fork point (Stream-Fork-Sub-Offset).
**
** Hot and cold data.  The bytes of every unit are in the log already:
** locs[] names the entry that carried them (its log index, and the offset
** in its payload), an address that is the same on every replica.  So
** memory need only hold recent data: local.data keeps [local.hot_start,
** tail), stream_evict() moves hot_start forward when the group holds too
** much, and stream_read() fetches older bytes from the log through
** st->read_cold.  No byte is written twice.
**
** The cold tier.  With one, the group moves the oldest bytes of each
** stream into chunk objects (cold.c) and then logs a COLD command; once
** that is applied, the chunk is part of the stream: [0, cold_end) is
** read from chunks through st->read_chunk (the group fetches them off
** the core thread), and neither memory nor the WAL need those bytes any
** more.  A removed stream's chunk names go to r->garbage, for the group
** to delete.
**
** Forks.  A fork holds no byte of what it inherits.  Its CREATE names
** the source (path and incarnation) and the fork point, `base`: bytes
** [0, base) are the source's bytes as they were there, read from the
** source whenever a reader wants them (group.c; a fork of a fork reads
** through the chain), and the fork's own units, in memory, the log and
** the cold tier, cover [base, tail) only.  Offsets are the source's up
** to the fork point, so a client sees no difference.  The reference the
** fork holds (the source's refcount, taken by FORK_ACQUIRE) keeps the
** source, deleted or expired, soft-deleted with its bytes for as long as
** the fork lives.  Apply never reads the source: what a command needs to
** know of the inherited bytes (the append at a fork offset there) the
** proposer finds and puts in the command (fork.c).
**
** Records (json-record-coordinates-v1; README, "JSON record
** coordinates").  Each message of a JSON stream is one record, numbered
** from 0 over the stream's life; a fork's records continue its source's.
** The apply counts no bytes: an APPEND or CREATE carries n_msgs, its
** message count (the proposer flattened the body, json.c), and rec_ends[]
** keeps the count at the end of each unit, parallel to bounds[], so that
** a record and a byte offset map onto each other by binary search down to
** a unit, and within a unit by scanning its bytes ("v1,v2,...,":
** json_prefix_len).  A fork's CREATE carries rec_base, the records
** below its fork point (found by the proposer, fork.c).  An APPEND may
** carry record_match (Stream-Record-Match): it applies only if the
** stream's next record is that one, else 412 -- decided here, in log
** order, so every replica agrees and no racing append slips in between a
** check and the append.  A producer's duplicate answers as a duplicate
** (204, its original acknowledgement) before the match is looked at: a
** retry of an append that applied must not turn into a 412 because its
** own first try moved the next record.  The first retained record is
** stream_record_first() (the records below the retained offset: 0 until
** retention trims).
**
** Protocol rules applied here (see protocol.md of the Durable Streams
** Protocol): create idempotency, closure, idempotent producers, Stream-Seq
** ordering, soft delete with fork reference counts, and TTL expiry.
*/
#include "internal.h"

/* ------------------------------------------------------------ table */

/* Out of memory inside apply or restore: stop, rather than leave a state
** that another replica would not have. */
static void stream_oom(void) {
  LOG_E("out of memory while applying a command; stopping rather than "
        "diverging from the log");
  abort();
}

URSULA_PRIVATE void stream_state_init(struct stream_state *st) {
  memset(st, 0, sizeof(*st));
  st->next_incarnation = 1;
}

static void stream_free(struct stream_state *st, struct stream *s) {
  struct stream_producer *p, *next;
  size_t i;
  st->hot_bytes -= s->local.data.len;
  for (p = s->producers; p != NULL; p = next) {
    next = p->next;
    URSULA_FREE(p);
  }
  st->hot_bytes -= s->local.snap_data.len;
  buf_free(&s->local.data);
  buf_free(&s->local.snap_data);
  URSULA_FREE(s->snap_type);
  for (i = 0; i < s->n_chunks; i++) URSULA_FREE(s->chunks[i].name);
  URSULA_FREE(s->chunks);
  URSULA_FREE(s->bounds);
  URSULA_FREE(s->rec_ends);
  URSULA_FREE(s->locs);
  URSULA_FREE(s->path);
  URSULA_FREE(s->content_type);
  URSULA_FREE(s->expires_text);
  URSULA_FREE(s->stream_seq);
  URSULA_FREE(s->closed_by_id);
  URSULA_FREE(s->fork_source);
  URSULA_FREE(s->attrs);
  URSULA_FREE(s);
}

URSULA_PRIVATE void stream_state_free(struct stream_state *st) {
  size_t i;
  struct stream *s, *next;
  for (i = 0; i < st->cap; i++) {
    for (s = st->slots[i]; s != NULL; s = next) {
      next = s->hnext;
      stream_free(st, s);
    }
  }
  URSULA_FREE(st->slots);
  URSULA_FREE(st->buckets);
  memset(st, 0, sizeof(*st));
}

URSULA_PRIVATE struct stream *stream_find(struct stream_state *st,
                                          struct str path) {
  uint64_t h;
  struct stream *s;
  if (st->cap == 0) return NULL;
  h = util_hash64(path.ptr, path.len);
  for (s = st->slots[h & (st->cap - 1)]; s != NULL; s = s->hnext) {
    if (s->hash == h && s->path_len == path.len &&
        memcmp(s->path, path.ptr, path.len) == 0)
      return s;
  }
  return NULL;
}

static void stream_table_grow(struct stream_state *st) {
  size_t cap = st->cap ? st->cap * 2 : 64, i;
  struct stream **slots, *s, *next;
  slots = (struct stream **)URSULA_MALLOC(cap * sizeof(*slots));
  if (slots == NULL) stream_oom();
  for (i = 0; i < cap; i++) slots[i] = NULL;
  for (i = 0; i < st->cap; i++) {
    for (s = st->slots[i]; s != NULL; s = next) {
      next = s->hnext;
      s->hnext = slots[s->hash & (cap - 1)];
      slots[s->hash & (cap - 1)] = s;
    }
  }
  URSULA_FREE(st->slots);
  st->slots = slots;
  st->cap = cap;
}

static void stream_unlink(struct stream_state *st, struct stream *s) {
  struct stream **pp = &st->slots[s->hash & (st->cap - 1)];
  while (*pp != s) pp = &(*pp)->hnext;
  *pp = s->hnext;
  st->n--;
}

static char *stream_dup(struct str s) {
  char *p = (char *)URSULA_MALLOC(s.len + 1);
  if (p == NULL) stream_oom();
  if (s.len) memcpy(p, s.ptr, s.len);
  p[s.len] = '\0';
  return p;
}

/* ------------------------------------------------------------ helpers */

URSULA_PRIVATE void stream_norm_type(struct str ct, char *out, size_t cap) {
  size_t i, n = 0;
  struct str t = ct;
  for (i = 0; i < t.len; i++) {
    if (t.ptr[i] == ';') {
      t.len = i;
      break;
    }
  }
  t = util_str_trim(t);
  for (i = 0; i < t.len && n + 1 < cap; i++) {
    char c = t.ptr[i];
    out[n++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
  }
  out[n] = '\0';
}

static int stream_same_type(struct str a, const char *b) {
  char na[256], nb[256];
  stream_norm_type(a, na, sizeof(na));
  stream_norm_type(util_str(b), nb, sizeof(nb));
  return strcmp(na, nb) == 0;
}

/* Bytewise order of two byte strings, a prefix first. */
static int stream_bytes_cmp(const char *a, size_t an, const char *b,
                            size_t bn) {
  int c = memcmp(a, b, an < bn ? an : bn);
  if (c != 0) return c;
  return an < bn ? -1 : an > bn;
}

URSULA_PRIVATE int stream_expired(const struct stream *s,
                                  uint64_t last_access_ms, uint64_t now_ms) {
  if (s->has_expires && s->expires_at_ms <= now_ms) return 1;
  if (s->has_ttl && last_access_ms + s->ttl_s * 1000u <= now_ms) return 1;
  return 0;
}

URSULA_PRIVATE uint64_t stream_unit_start(const struct stream *s, size_t u) {
  return u > 0 ? s->bounds[u - 1] : s->base;
}

URSULA_PRIVATE size_t stream_unit_at(const struct stream *s, uint64_t off) {
  size_t lo = 0, hi = s->n_bounds;
  while (lo < hi) { /* first i with bounds[i] > off */
    size_t mid = lo + (hi - lo) / 2;
    if (s->bounds[mid] <= off)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

URSULA_PRIVATE uint64_t stream_unit_floor(const struct stream *s,
                                          uint64_t off) {
  return stream_unit_start(s, stream_unit_at(s, off));
}

URSULA_PRIVATE uint64_t stream_record_first(const struct stream *s) {
  if (s->retained == 0) return 0;
  return s->retained_units > 0 ? s->rec_ends[s->retained_units - 1]
                               : s->rec_base;
}

URSULA_PRIVATE uint64_t stream_record_next(const struct stream *s) {
  return s->n_bounds > 0 ? s->rec_ends[s->n_bounds - 1] : s->rec_base;
}

URSULA_PRIVATE uint64_t stream_record_at(const struct stream *s,
                                         uint64_t off) {
  size_t u = stream_unit_at(s, off); /* the unit starting at off */
  return u > 0 ? s->rec_ends[u - 1] : s->rec_base;
}

URSULA_PRIVATE void stream_record_find(const struct stream *s, uint64_t rec,
                                       uint64_t *off, uint64_t *skip) {
  size_t lo = 0, hi = s->n_bounds;
  while (lo < hi) { /* the first unit whose end count is past rec */
    size_t mid = lo + (hi - lo) / 2;
    if (s->rec_ends[mid] <= rec)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == s->n_bounds) {
    *off = s->tail;
    *skip = 0;
    return;
  }
  *off = stream_unit_start(s, lo);
  *skip = rec - (lo > 0 ? s->rec_ends[lo - 1] : s->rec_base);
}

/* Append p[0..len) as one unit ending at the new tail, holding n_recs
** records: the payload of log entry `index` holds it from byte `off` on. */
static void stream_add_unit(struct stream_state *st, struct stream *s,
                            const char *p, size_t len, uint64_t n_recs,
                            uint64_t index, uint64_t off) {
  if (len == 0) return;
  if (s->n_bounds == s->cap_bounds) {
    size_t cap = s->cap_bounds ? s->cap_bounds * 2 : 4;
    uint64_t *b = (uint64_t *)URSULA_REALLOC(s->bounds, cap * sizeof(*b));
    struct stream_loc *l;
    if (b == NULL) stream_oom();
    s->bounds = b;
    b = (uint64_t *)URSULA_REALLOC(s->rec_ends, cap * sizeof(*b));
    if (b == NULL) stream_oom();
    s->rec_ends = b;
    l = (struct stream_loc *)URSULA_REALLOC(s->locs, cap * sizeof(*l));
    if (l == NULL) stream_oom();
    s->locs = l;
    s->cap_bounds = cap;
  }
  if (st->log_only && index != 0 && s->local.data.len == 0) {
    s->local.hot_start += len; /* == the new tail: read from the log */
  } else {
    if (buf_append(&s->local.data, p, len) != URSULA_OK) stream_oom();
    st->hot_bytes += len;
  }
  s->locs[s->n_bounds].index = index;
  s->locs[s->n_bounds].off = off;
  s->tail += len;
  s->rec_ends[s->n_bounds] = stream_record_next(s) + (s->json ? n_recs : 0);
  s->bounds[s->n_bounds++] = s->tail;
}

URSULA_PRIVATE size_t stream_chunk_at(const struct stream *s, uint64_t off) {
  size_t lo = 0, hi = s->n_chunks;
  while (lo < hi) { /* first k with chunks[k].end > off */
    size_t mid = lo + (hi - lo) / 2;
    if (s->chunks[mid].end <= off)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* The part of stream_read() below cold_end: chunk by chunk. */
static int stream_read_chunks(struct stream_state *st, const struct stream *s,
                              uint64_t *start, uint64_t end, struct buf *out) {
  size_t k = stream_chunk_at(s, *start);
  while (*start < end && *start < s->cold_end) {
    const struct stream_chunk *ch = &s->chunks[k++];
    uint64_t stop = ch->end < end ? ch->end : end;
    const char *p;
    int rc;
    if (st->read_chunk == NULL) return URSULA_EIO;
    rc = st->read_chunk(st->read_ctx, s, ch, &p);
    if (rc != URSULA_OK) return rc;
    rc = buf_append(out, p + (*start - ch->start), (size_t)(stop - *start));
    if (rc != URSULA_OK) return rc;
    *start = stop;
  }
  return URSULA_OK;
}

URSULA_PRIVATE int stream_read(struct stream_state *st, const struct stream *s,
                               uint64_t start, uint64_t end, struct buf *out) {
  size_t u;
  /* only the stream's own bytes: a fork's inherited ones are its source's */
  if (start < s->base || end < start || end > s->tail) return URSULA_EINVAL;
  if (start < s->cold_end) {
    int rc = stream_read_chunks(st, s, &start, end, out);
    if (rc != URSULA_OK) return rc;
  }
  if (start < end && start < s->local.hot_start) { /* in the WAL, unit by unit */
    u = stream_unit_at(s, start);
    while (start < end && start < s->local.hot_start) {
      uint64_t ustart = stream_unit_start(s, u), stop = s->bounds[u];
      struct stream_loc loc;
      int rc;
      if (stop > end) stop = end;
      if (stop > s->local.hot_start) stop = s->local.hot_start;
      loc.index = s->locs[u].index;
      loc.off = s->locs[u].off + (start - ustart);
      if (st->read_cold == NULL || loc.index == 0) return URSULA_EIO;
      rc = st->read_cold(st->read_ctx, &loc, stop - start, out);
      if (rc != URSULA_OK) return rc;
      start = stop;
      u++;
    }
  }
  if (end <= start) return URSULA_OK;
  return buf_append(out, s->local.data.ptr + (start - s->local.hot_start),
                    (size_t)(end - start));
}

/* Drop s's hot units that the log holds, oldest first, keeping at least
** the last `keep` bytes, until st->hot_bytes <= target. */
static void stream_snap_cool(struct stream_state *st, struct stream *s);

/* Let memory go of s's bytes below `to` (they are in the log, the cold
** tier, or no longer kept); its buffer shrinks once mostly empty.  Local:
** no apply decision reads it. */
static void stream_drop_hot(struct stream_state *st, struct stream *s,
                            uint64_t to) {
  uint64_t drop;
  if (to <= s->local.hot_start) return;
  drop = to - s->local.hot_start;
  buf_consume(&s->local.data, (size_t)drop);
  s->local.hot_start = to;
  st->hot_bytes -= drop;
  if (s->local.data.len == 0) {
    buf_free(&s->local.data);
  } else if (s->local.data.cap > 65536 && s->local.data.len < s->local.data.cap / 4) {
    char *p = (char *)URSULA_REALLOC(s->local.data.ptr, s->local.data.len + 1);
    if (p != NULL) { /* give the memory back */
      s->local.data.ptr = p;
      s->local.data.cap = s->local.data.len + 1;
    }
  }
}

static void stream_evict_one(struct stream_state *st, struct stream *s,
                             uint64_t keep, uint64_t target) {
  size_t u = stream_unit_at(s, s->local.hot_start);
  uint64_t to = s->local.hot_start;
  /* a published snapshot the log holds goes first: it is read once per
  ** bootstrap, not followed as the tail is */
  if (s->local.snap_hot && s->snap_loc.index != 0 && st->hot_bytes > target)
    stream_snap_cool(st, s);
  while (u < s->n_bounds && s->locs[u].index != 0 &&
         s->bounds[u] + keep <= s->tail &&
         st->hot_bytes - (to - s->local.hot_start) > target)
    to = s->bounds[u++];
  stream_drop_hot(st, s, to);
}

URSULA_PRIVATE void stream_evict(struct stream_state *st, uint64_t max) {
  uint64_t target = max / 2, keep;
  size_t k, slot;
  int pass;
  if (st->hot_bytes <= max || st->cap == 0 || st->read_cold == NULL) return;
  /* first every stream keeps a fair share of recent bytes, then none */
  for (pass = 0; pass < 2; pass++) {
    keep = pass == 0 ? target / (st->n + 1) : 0;
    for (k = 0; k < st->cap; k++) {
      struct stream *s;
      slot = (st->evict_cursor + k) & (st->cap - 1);
      for (s = st->slots[slot]; s != NULL; s = s->hnext) {
        stream_evict_one(st, s, keep, target);
        if (st->hot_bytes <= target) {
          st->evict_cursor = slot + 1; /* fairness: start after it */
          return;
        }
      }
    }
  }
}

static struct stream_producer *stream_producer_find(const struct stream *s,
                                                    struct str id) {
  struct stream_producer *p;
  for (p = s->producers; p != NULL; p = p->next) {
    if (p->id_len == id.len && memcmp(p->id, id.ptr, id.len) == 0) return p;
  }
  return NULL;
}

static void stream_set_str(char **dst, size_t *dst_len, struct str v) {
  char *p = stream_dup(v);
  URSULA_FREE(*dst);
  *dst = p;
  if (dst_len) *dst_len = v.len;
}

/* Queue a cold-tier object for deletion by the group. */
static void stream_garbage(struct stream_result *r, struct str name) {
  if (buf_append(&r->garbage, name.ptr, name.len) != URSULA_OK ||
      buf_append(&r->garbage, "", 1) != URSULA_OK)
    stream_oom();
}

static void stream_fail(struct stream_result *r, int status,
                        const char *reason) {
  r->status = status;
  r->reason = reason;
}

/* Take s out of the table for good: wake its readers, and if it is a fork,
** queue the release of its source. */
static void stream_remove(struct stream_state *st, struct stream *s,
                          struct stream_result *r) {
  size_t i;
  r->notify = 1;
  r->deleted = 1;
  r->watch_mask |= s->local.watch_mask;
  r->prev_tail = s->tail;
  if (s->fork_source != NULL &&
      buf_append(&r->releases, s->fork_source, s->fork_source_len + 1) !=
          URSULA_OK)
    stream_oom();
  for (i = 0; i < s->n_chunks; i++)
    stream_garbage(r, util_str(s->chunks[i].name));
  stream_unlink(st, s);
  stream_free(st, s);
}

/* Find the stream at c->path as the command's clock sees it: an expired
** stream without forks is removed (as if it were never there), one with
** forks becomes soft-deleted. */
static struct stream *stream_live(struct stream_state *st, const struct cmd *c,
                                  struct stream_result *r) {
  struct stream *s = stream_find(st, c->path);
  if (s != NULL && !s->soft_deleted &&
      stream_expired(s, s->last_access_ms, c->time_ms)) {
    if (s->refcount > 0) {
      s->soft_deleted = 1;
      r->notify = 1;
      r->deleted = 1;
      r->watch_mask |= s->local.watch_mask;
      s->local.watch_mask = 0;
    } else {
      stream_remove(st, s, r);
      s = NULL;
    }
  }
  return s;
}

/* ------------------------------------------------------------ CREATE */

static int stream_config_matches(const struct stream *s, const struct cmd *c) {
  if (!stream_same_type(c->content_type, s->content_type)) return 0;
  if (!!(c->flags & CMD_F_TTL) != s->has_ttl) return 0;
  if (s->has_ttl && c->ttl_s != s->ttl_s) return 0;
  if (!!(c->flags & CMD_F_EXPIRES) != s->has_expires) return 0;
  if (s->has_expires && c->expires_at_ms != s->expires_at_ms) return 0;
  if (!!(c->flags & CMD_F_CLOSE) != s->closed) return 0;
  if (c->flags & CMD_F_FORK) {
    if (s->fork_source == NULL || s->fork_source_len != c->fork_source.len ||
        memcmp(s->fork_source, c->fork_source.ptr, c->fork_source.len) != 0)
      return 0;
    if ((c->flags & CMD_F_FORK_OFFSET) && c->fork_offset != s->fork_offset)
      return 0;
    if (c->fork_sub != s->fork_sub) return 0;
    /* the same fork point of the same source: the PUT that made it */
  }
  /* Stream-Attrs, when sent, must be what the stream holds (attributes
  ** change by PUT .../attrs, so a create without them asks nothing) */
  if ((c->flags & CMD_F_ATTRS) &&
      stream_bytes_cmp(c->attrs.ptr, c->attrs.len, s->attrs ? s->attrs : "",
                       s->attrs_len) != 0)
    return 0;
  return 1;
}

/* The offset of p, a view into the encoded command, in the command's
** bytes (its log entry's payload); 0 for a command that was not decoded
** from bytes (it is then in no log). */
static uint64_t stream_off(const struct cmd *c, const char *p) {
  return c->raw != NULL ? (uint64_t)(p - c->raw) : 0;
}

static void stream_apply_create(struct stream_state *st, uint64_t index,
                                const struct cmd *c, struct stream_result *r) {
  struct stream *s;
  size_t i;
  uint64_t prev = 0;
  int copied = c->inherited.len > 0 || c->n_bounds > 0; /* version 1 */
  if (c->flags & CMD_F_FORK) {
    r->release_source = 1;
    /* the fork point is at or after the fork offset (the sub-offset's
    ** prefix lies between them), and a fork point past 0 names the
    ** source's incarnation (what snapshots require: stream_restore) */
    if (c->fork_source.len == 0 ||
        (!copied && (c->fork_base < c->fork_offset ||
                     (c->fork_base > 0 && c->fork_inc == 0)))) {
      stream_fail(r, 400, "malformed fork reference");
      return;
    }
  }
  if (c->path.len == 0) { /* a snapshot could not name it (HTTP never does) */
    stream_fail(r, 400, "empty stream path");
    return;
  }
  if ((c->flags & CMD_F_ATTRS) && c->attrs.len > 0 &&
      !attrs_canonical(c->attrs)) { /* nor these */
    stream_fail(r, 400, "malformed attributes");
    return;
  }
  s = stream_live(st, c, r);
  if (s != NULL) {
    if (s->soft_deleted) {
      stream_fail(r, 409, "stream was deleted and still has forks");
    } else if (!stream_config_matches(s, c)) {
      stream_fail(r, 409, "stream exists with a different configuration");
    } else {
      r->status = 200;
    }
    if (s != NULL) {
      r->tail = s->tail;
      r->closed = s->closed;
      r->rec_first = stream_record_first(s);
      r->rec_start = r->rec_next = stream_record_next(s);
    }
    return;
  }
  if (st->n + 1 > st->cap / 2) stream_table_grow(st);
  s = (struct stream *)URSULA_MALLOC(sizeof(*s));
  if (s == NULL) stream_oom();
  memset(s, 0, sizeof(*s));
  s->hash = util_hash64(c->path.ptr, c->path.len);
  s->path = stream_dup(c->path);
  s->path_len = c->path.len;
  s->content_type = stream_dup(c->content_type);
  s->json = (c->flags & CMD_F_JSON) != 0;
  s->has_ttl = (c->flags & CMD_F_TTL) != 0;
  s->ttl_s = c->ttl_s;
  s->has_expires = (c->flags & CMD_F_EXPIRES) != 0;
  s->expires_at_ms = c->expires_at_ms;
  if (s->has_expires) s->expires_text = stream_dup(c->expires_text);
  s->last_access_ms = c->time_ms;
  s->incarnation = st->next_incarnation++;
  if ((c->flags & CMD_F_ATTRS) && c->attrs.len > 0)
    stream_set_str(&s->attrs, &s->attrs_len, c->attrs);
  if (c->flags & CMD_F_FORK) {
    stream_set_str(&s->fork_source, &s->fork_source_len, c->fork_source);
    s->fork_offset = c->fork_offset;
    s->fork_sub = c->fork_sub;
    /* the reference: [0, base) is the source's; own bytes start there */
    s->base = s->tail = s->cold_end = s->local.hot_start = c->fork_base;
    s->fork_inc = c->fork_inc;
    if (s->json && (c->flags & CMD_F_RECORD_BASE)) s->rec_base = c->record_base;
    if (copied) { /* a version-1 entry carries the inherited bytes (base
                     0): its units, then the sub-offset prefix as a unit
                     of its own */
      uint64_t at = stream_off(c, c->inherited.ptr);
      for (i = 0; i < c->n_bounds; i++) {
        if (c->bounds[i] <= prev || c->bounds[i] > c->inherited.len) break;
        size_t n = (size_t)(c->bounds[i] - prev);
        stream_add_unit(st, s, c->inherited.ptr + prev, n,
                        json_count(c->inherited.ptr + prev, n), index,
                        at + prev);
        prev = c->bounds[i];
      }
      stream_add_unit(st, s, c->inherited.ptr + prev,
                      (size_t)(c->inherited.len - prev),
                      json_count(c->inherited.ptr + prev,
                                 (size_t)(c->inherited.len - prev)),
                      index, at + prev);
    }
    r->release_source = 0; /* the new fork holds the reference now */
  }
  r->rec_start = stream_record_next(s);
  stream_add_unit(st, s, c->data.ptr, c->data.len, c->n_msgs, index,
                  stream_off(c, c->data.ptr));
  s->closed = (c->flags & CMD_F_CLOSE) != 0;
  s->hnext = st->slots[s->hash & (st->cap - 1)];
  st->slots[s->hash & (st->cap - 1)] = s;
  st->n++;
  r->status = 201;
  r->tail = s->tail;
  r->closed = s->closed;
  r->rec_first = stream_record_first(s);
  r->rec_next = stream_record_next(s);
}

/* ------------------------------------------------------------ APPEND */

/* Check the producer tuple of c against s.  Returns 0 to go on with the
** append, or 1 when *r already holds the reply (duplicate or error). */
static int stream_check_producer(const struct stream *s, const struct cmd *c,
                                 struct stream_result *r) {
  struct stream_producer *p = stream_producer_find(s, c->producer_id);
  uint64_t epoch = c->producer_epoch, seq = c->producer_seq;
  if (p == NULL) {
    if (seq != 0) {
      stream_fail(r, 409, "producer sequence gap");
      r->seq_gap = 1;
      r->expected_seq = 0;
      r->received_seq = seq;
      return 1;
    }
    return 0;
  }
  if (epoch < p->epoch) {
    stream_fail(r, 403, "stale producer epoch");
    r->fenced = 1;
    r->current_epoch = p->epoch;
    return 1;
  }
  if (epoch > p->epoch) {
    if (seq != 0) {
      stream_fail(r, 400, "a new producer epoch must start at sequence 0");
      return 1;
    }
    return 0;
  }
  if (seq <= p->seq) { /* duplicate: acknowledged before, append nothing */
    r->status = 204;
    r->producer_echo = 1;
    r->producer_epoch = p->epoch;
    r->producer_seq = p->seq;
    r->tail = s->tail;
    r->closed = s->closed;
    return 1;
  }
  if (seq != p->seq + 1) {
    stream_fail(r, 409, "producer sequence gap");
    r->seq_gap = 1;
    r->expected_seq = p->seq + 1;
    r->received_seq = seq;
    return 1;
  }
  return 0;
}

static void stream_record_producer(struct stream *s, const struct cmd *c) {
  struct stream_producer *p = stream_producer_find(s, c->producer_id);
  if (p == NULL) {
    p = (struct stream_producer *)URSULA_MALLOC(sizeof(*p) +
                                                c->producer_id.len);
    if (p == NULL) stream_oom();
    p->id_len = c->producer_id.len;
    memcpy(p->id, c->producer_id.ptr, p->id_len);
    p->id[p->id_len] = '\0';
    p->next = s->producers;
    s->producers = p;
  }
  p->epoch = c->producer_epoch;
  p->seq = c->producer_seq;
}

static int stream_seq_le(const struct stream *s, struct str seq) {
  size_t n = s->stream_seq_len < seq.len ? s->stream_seq_len : seq.len;
  int cmp = memcmp(seq.ptr, s->stream_seq, n);
  if (cmp == 0) return seq.len <= s->stream_seq_len;
  return cmp < 0;
}

/* Stream-Record-Match (CMD_F_RECORD_MATCH): 0 to go on with the append,
** or 1 when *r holds the refusal -- 400 on a stream that is not JSON (it
** has no records), 412 when the stream's next record is not the one
** named (r->rec_next says which it is). */
static int stream_record_mismatch(const struct stream *s, const struct cmd *c,
                                  struct stream_result *r) {
  if (!(c->flags & CMD_F_RECORD_MATCH)) return 0;
  if (!s->json) {
    stream_fail(r, 400, "Stream-Record-Match needs an application/json stream");
    return 1;
  }
  if (c->record_match != stream_record_next(s)) {
    stream_fail(r, 412, "Stream-Record-Match does not match the next record");
    return 1;
  }
  return 0;
}

/* Whether c, an APPEND, adds a unit to s (found live at c's time): 1,
** or 0 with the reply in *r -- an error, or a 204 that changes nothing
** (a producer's retry, closing a closed stream).  Pure: s is only read,
** so that a transaction can ask it of every op before any applies. */
static int stream_append_verdict(const struct stream *s, const struct cmd *c,
                                 struct stream_result *r) {
  int producer = (c->flags & CMD_F_PRODUCER) != 0;
  if (s->soft_deleted) {
    stream_fail(r, 410, "stream was deleted");
    return 0;
  }
  r->tail = s->tail;
  r->closed = s->closed;
  r->rec_first = stream_record_first(s);
  r->rec_start = r->rec_next = stream_record_next(s);
  if (s->closed) {
    if (producer && s->closed_by_id != NULL &&
        s->closed_by_id_len == c->producer_id.len &&
        memcmp(s->closed_by_id, c->producer_id.ptr, c->producer_id.len) == 0 &&
        s->closed_by_epoch == c->producer_epoch &&
        s->closed_by_seq == c->producer_seq) {
      r->status = 204; /* the request that closed it, retried */
      r->producer_echo = 1;
      r->producer_epoch = c->producer_epoch;
      r->producer_seq = c->producer_seq;
    } else if (c->data.len == 0 && !producer) {
      r->status = 204; /* closing a closed stream is idempotent */
    } else {
      stream_fail(r, 409, "stream is closed");
    }
    return 0;
  }
  if (c->data.len > 0 && !stream_same_type(c->content_type, s->content_type)) {
    stream_fail(r, 409, "content type does not match the stream");
    r->type_mismatch = 1;
    return 0;
  }
  if (producer && stream_check_producer(s, c, r)) return 0;
  if (stream_record_mismatch(s, c, r)) return 0;
  if ((c->flags & CMD_F_SEQ) && s->stream_seq != NULL &&
      stream_seq_le(s, c->stream_seq)) {
    stream_fail(r, 409, "Stream-Seq is not greater than the last one");
    return 0;
  }
  return 1;
}

/* Append c's unit to s (its verdict was 1) and note the reply in *r. */
static void stream_append_commit(struct stream_state *st, uint64_t index,
                                 struct stream *s, const struct cmd *c,
                                 struct stream_result *r) {
  int producer = (c->flags & CMD_F_PRODUCER) != 0;
  r->prev_tail = s->tail;
  stream_add_unit(st, s, c->data.ptr, c->data.len, c->n_msgs, index,
                  stream_off(c, c->data.ptr));
  if (producer) stream_record_producer(s, c);
  if (c->flags & CMD_F_SEQ)
    stream_set_str(&s->stream_seq, &s->stream_seq_len, c->stream_seq);
  if (c->flags & CMD_F_CLOSE) {
    s->closed = 1;
    if (producer) {
      stream_set_str(&s->closed_by_id, &s->closed_by_id_len, c->producer_id);
      s->closed_by_epoch = c->producer_epoch;
      s->closed_by_seq = c->producer_seq;
    }
  }
  r->status = (producer && c->data.len > 0) ? 200 : 204;
  if (producer) {
    r->producer_echo = 1;
    r->producer_epoch = c->producer_epoch;
    r->producer_seq = c->producer_seq;
  }
  r->tail = s->tail;
  r->closed = s->closed;
  r->rec_next = stream_record_next(s);
  r->notify = 1;
  r->watch_mask |= s->local.watch_mask;
}

static void stream_apply_append(struct stream_state *st, uint64_t index,
                                const struct cmd *c, struct stream_result *r) {
  struct stream *s = stream_live(st, c, r);
  if (s == NULL) {
    stream_fail(r, 404, "stream not found");
    return;
  }
  if (!s->soft_deleted && c->time_ms > s->last_access_ms)
    s->last_access_ms = c->time_ms;
  if (stream_append_verdict(s, c, r)) stream_append_commit(st, index, s, c, r);
}

/* ------------------------------------------------------------ MULTI

   A MULTI's ops are APPENDs to streams of this group (cmd.c), applied in
   order at the MULTI's time, each with a result of its own in r->ops
   (struct stream_op).  Without CMD_F_ATOMIC (an append-batch) each op
   applies or fails on its own, exactly as the APPEND it stands for.
   With it (a $transaction) every op is first judged against the state
   as it is (stream_append_verdict: pure), and only if none fails do
   they all apply; a stream named twice fails the whole (the second op
   would be judged against a state the first has not made yet).  An op
   whose verdict is a 204 that changes nothing (a producer's retry) does
   not fail it: a retried transaction answers as it did the first time.
   A failed transaction changes nothing at all: r and the failing op's
   result say why, the other ops have status 0.  r->status is 200 when
   the ops applied (each op's own status says how). */

static void stream_op_add(struct stream_result *r, struct str path,
                          const struct stream_result *t) {
  struct stream_op o;
  memset(&o, 0, sizeof(o));
  o.path = path;
  o.r = *t;
  memset(&o.r.garbage, 0, sizeof(o.r.garbage));
  memset(&o.r.releases, 0, sizeof(o.r.releases));
  memset(&o.r.ops, 0, sizeof(o.r.ops));
  if (buf_append(&r->ops, &o, sizeof(o)) != URSULA_OK) stream_oom();
}

/* The first op of an atomic MULTI c that would fail, judged without
** applying any (its result in *fail); c->n_ops if none would. */
static uint64_t stream_multi_judge(struct stream_state *st,
                                   const struct cmd *c,
                                   struct stream_result *fail) {
  struct str rest = c->ops, prev;
  struct cmd op, other;
  uint64_t i, k;
  for (i = 0; cmd_op_next(c, &rest, &op) == 1; i++) {
    const struct stream *s = stream_find(st, op.path);
    memset(fail, 0, offsetof(struct stream_result, garbage));
    for (k = 0, prev = c->ops; k < i && cmd_op_next(c, &prev, &other) == 1;
         k++)
      if (stream_bytes_cmp(other.path.ptr, other.path.len, op.path.ptr,
                           op.path.len) == 0)
        break;
    if (k < i) {
      stream_fail(fail, 400, "a transaction names a stream twice");
      return i;
    }
    if (s == NULL || (!s->soft_deleted && s->refcount == 0 &&
                      stream_expired(s, s->last_access_ms, c->time_ms))) {
      stream_fail(fail, 404, "stream not found"); /* as stream_live */
      return i;
    }
    if (!s->soft_deleted && stream_expired(s, s->last_access_ms, c->time_ms)) {
      stream_fail(fail, 410, "stream was deleted"); /* forks keep it */
      return i;
    }
    if (!stream_append_verdict(s, &op, fail) &&
        (fail->status < 200 || fail->status > 299))
      return i;
  }
  return i;
}

static void stream_apply_multi(struct stream_state *st, uint64_t index,
                               const struct cmd *c, struct stream_result *r) {
  struct str rest = c->ops;
  struct cmd op;
  struct stream_result t;
  uint64_t i, bad = c->n_ops;
  memset(&t, 0, sizeof(t));
  if (c->flags & CMD_F_ATOMIC) bad = stream_multi_judge(st, c, &t);
  if (bad < c->n_ops) { /* nothing applies */
    struct stream_result none;
    memset(&none, 0, sizeof(none));
    for (i = 0; cmd_op_next(c, &rest, &op) == 1; i++)
      stream_op_add(r, op.path, i == bad ? &t : &none);
    r->status = t.status;
    r->reason = t.reason;
    return;
  }
  while (cmd_op_next(c, &rest, &op) == 1) {
    memset(&t, 0, sizeof(t));
    t.garbage = r->garbage; /* an expired stream's removal adds to them */
    t.releases = r->releases;
    stream_apply_append(st, index, &op, &t);
    r->garbage = t.garbage;
    r->releases = t.releases;
    stream_op_add(r, op.path, &t);
    r->tail = t.tail;
    r->closed = t.closed;
  }
  r->status = 200;
}

/* ------------------------------------------------------------ ATTRS */

static void stream_apply_attrs(struct stream_state *st, const struct cmd *c,
                               struct stream_result *r) {
  struct stream *s = stream_live(st, c, r);
  if (s == NULL) {
    stream_fail(r, 404, "stream not found");
    return;
  }
  if (s->soft_deleted) {
    stream_fail(r, 410, "stream was deleted");
    return;
  }
  if (c->attrs.len > 0 && !attrs_canonical(c->attrs)) {
    stream_fail(r, 400, "malformed attributes"); /* (HTTP never sends) */
    return;
  }
  if (c->attrs.len > 0) {
    stream_set_str(&s->attrs, &s->attrs_len, c->attrs);
  } else {
    URSULA_FREE(s->attrs);
    s->attrs = NULL;
    s->attrs_len = 0;
  }
  r->status = 204;
  r->tail = s->tail;
  r->closed = s->closed;
}

/* ------------------------------------------------------------ DELETE */

static void stream_apply_delete(struct stream_state *st, const struct cmd *c,
                                struct stream_result *r) {
  struct stream *s = stream_live(st, c, r);
  if (s == NULL) {
    stream_fail(r, 404, "stream not found");
  } else if (s->soft_deleted) {
    stream_fail(r, 410, "stream was deleted");
  } else if (s->refcount > 0) {
    s->soft_deleted = 1; /* forks still read it */
    r->status = 204;
    r->notify = 1;
    r->deleted = 1;
    r->watch_mask |= s->local.watch_mask;
    s->local.watch_mask = 0;
  } else {
    stream_remove(st, s, r);
    r->status = 204;
  }
}

/* ------------------------------------------------------------ forks */

static void stream_apply_fork_acquire(struct stream_state *st,
                                      const struct cmd *c,
                                      struct stream_result *r) {
  struct stream *s = stream_live(st, c, r);
  uint64_t off;
  size_t unit;
  if (s == NULL) {
    stream_fail(r, 404, "fork source not found");
    return;
  }
  if (s->soft_deleted) {
    stream_fail(r, 409, "fork source was deleted");
    return;
  }
  if (c->incarnation != 0 && c->incarnation != s->incarnation) {
    /* what the proposer found (n_msgs) was of another stream there */
    stream_fail(r, 503, "the fork source was re-created meanwhile; retry");
    return;
  }
  off = (c->flags & CMD_F_FORK_OFFSET) ? c->fork_offset : s->tail;
  if (off > s->tail) {
    stream_fail(r, 400, "Stream-Fork-Offset is beyond the source's tail");
    return;
  }
  if (off < s->retained) {
    stream_fail(r, 410, "Stream-Fork-Offset is below the source's retained "
                        "offset: those bytes are no longer kept");
    return;
  }
  if (s->retained > 0) { /* a fork reads its source from 0 (SNAPSHOTS) */
    stream_fail(r, 409, "the source's bytes below its retained offset are "
                        "no longer kept: it cannot be forked");
    return;
  }
  if ((c->flags & CMD_F_CT) &&
      !stream_same_type(c->content_type, s->content_type)) {
    stream_fail(r, 409, "content type does not match the fork source");
    r->type_mismatch = 1;
    return;
  }
  if (c->fork_sub > 0 && off < s->base) {
    /* an append s inherited: the proposer found it in s's sources */
    if (!(c->flags & CMD_F_UNIT)) {
      stream_fail(r, 400, "no append starts at Stream-Fork-Offset");
      return;
    }
    if (c->fork_sub > c->n_msgs) {
      stream_fail(r, 400, "Stream-Fork-Sub-Offset is beyond the append");
      return;
    }
  } else if (c->fork_sub > 0) {
    uint64_t start, end, len;
    unit = stream_unit_at(s, off);
    start = unit < s->n_bounds ? stream_unit_start(s, unit) : s->tail;
    if (unit >= s->n_bounds || start != off) {
      stream_fail(r, 400, "no append starts at Stream-Fork-Offset");
      return;
    }
    end = s->bounds[unit];
    len = end - start;
    if (s->json && unit < s->cold_units) { /* apply reads no cold tier */
      stream_fail(r, 400,
                  "Stream-Fork-Sub-Offset into data already moved to cold "
                  "storage is not supported");
      return;
    }
    /* a JSON append's length is its message count: the proposer read
    ** the append and counted them (apply reads nothing) */
    if (s->json) len = c->n_msgs;
    if (c->fork_sub > len) {
      stream_fail(r, 400, "Stream-Fork-Sub-Offset is beyond the append");
      return;
    }
  }
  s->refcount++;
  r->status = 200;
  r->tail = off;
  r->closed = s->closed;
}

static void stream_apply_fork_release(struct stream_state *st,
                                      const struct cmd *c,
                                      struct stream_result *r) {
  struct stream *s = stream_find(st, c->path);
  r->status = 204;
  if (s == NULL || s->refcount == 0) return;
  s->refcount--;
  if (s->refcount == 0 &&
      (s->soft_deleted || stream_expired(s, s->last_access_ms, c->time_ms))) {
    stream_remove(st, s, r); /* cascades to its own source */
  }
}

/* ------------------------------------------------------------ COLD */

/* Whether c may move bytes of s to the cold tier: the right incarnation,
** the next run after cold_end, ending on a unit boundary, every unit in
** the WAL (so the bytes uploaded were durable ones), and an object name
** without NUL (chunk names are C strings: a snapshot could not carry
** one, and stream_restore refuses it). */
static int stream_cold_fits(const struct stream *s, const struct cmd *c) {
  size_t u;
  if (s == NULL || s->incarnation != c->incarnation ||
      s->cold_end != c->cold_start || c->cold_end <= c->cold_start ||
      c->cold_end > s->tail || c->object.len == 0 ||
      memchr(c->object.ptr, '\0', c->object.len) != NULL) /* a C string */
    return 0;
  u = stream_unit_at(s, c->cold_end - 1);
  if (u >= s->n_bounds || s->bounds[u] != c->cold_end) return 0;
  for (; u + 1 > s->cold_units; u--)
    if (s->locs[u].index == 0) return 0;
  return 1;
}

static void stream_apply_cold(struct stream_state *st, const struct cmd *c,
                              struct stream_result *r) {
  struct stream *s = stream_find(st, c->path);
  struct stream_chunk *ch;
  if (!stream_cold_fits(s, c)) {
    /* stale (the stream changed meanwhile): the object is garbage, unless
    ** this very object is already the stream's (a repeated command) */
    size_t k = s != NULL && c->cold_start < s->cold_end
                   ? stream_chunk_at(s, c->cold_start)
                   : 0;
    if (s == NULL || k >= s->n_chunks ||
        strlen(s->chunks[k].name) != c->object.len ||
        memcmp(s->chunks[k].name, c->object.ptr, c->object.len) != 0)
      stream_garbage(r, c->object);
    stream_fail(r, 409, "stale cold-tier move");
    return;
  }
  if (s->n_chunks == s->cap_chunks) {
    size_t cap = s->cap_chunks ? s->cap_chunks * 2 : 4;
    ch = (struct stream_chunk *)URSULA_REALLOC(s->chunks, cap * sizeof(*ch));
    if (ch == NULL) stream_oom();
    s->chunks = ch;
    s->cap_chunks = cap;
  }
  ch = &s->chunks[s->n_chunks];
  ch->start = c->cold_start;
  ch->end = c->cold_end;
  ch->name = stream_dup(c->object);
  s->n_chunks++;
  s->cold_end = c->cold_end;
  s->cold_units = stream_unit_at(s, c->cold_end);
  stream_drop_hot(st, s, s->cold_end); /* memory need not keep them */
  r->status = 204;
  r->tail = s->tail;
}

static void stream_apply_expire(struct stream_state *st, const struct cmd *c,
                                struct stream_result *r) {
  (void)stream_live(st, c, r);
  r->status = 204;
}

/* TOUCH: the owner saw a read of the stream at c->time_ms, which slides
** its TTL window.  The window moves only forward, and no expiry is
** checked: the read found the stream alive, and the owner logs the TOUCH
** before any command that could expire it (group.c). */
static void stream_apply_touch(struct stream_state *st, const struct cmd *c,
                               struct stream_result *r) {
  struct stream *s = stream_find(st, c->path);
  r->status = 204;
  if (s == NULL || s->soft_deleted || s->incarnation != c->incarnation) return;
  if (c->time_ms > s->last_access_ms) s->last_access_ms = c->time_ms;
}

/* ------------------------------------------------------------ buckets */

/* BUCKET RECORDS.  A group holds the records of the buckets whose route
** "/{b}" it owns (server.c, PLACEMENT), in an array sorted by name: a
** record is its name and the time of the command that made it.  Whether
** a bucket exists, and its streams, are not this group's to know (they
** live in every group): api.c asks every group (BUCKETS there); apply
** decides only on the record. */

/* The index of the record of name, or where it would go (*found 0). */
static size_t stream_bucket_at(const struct stream_state *st, struct str name,
                               int *found) {
  size_t lo = 0, hi = st->n_buckets;
  *found = 0;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const struct stream_bucket *b = &st->buckets[mid];
    int c = stream_bytes_cmp(b->name, b->name_len, name.ptr, name.len);
    if (c == 0) {
      *found = 1;
      return mid;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

URSULA_PRIVATE const struct stream_bucket *stream_bucket_find(
    const struct stream_state *st, struct str name) {
  int found;
  size_t i = stream_bucket_at(st, name, &found);
  return found ? &st->buckets[i] : NULL;
}

/* Insert a record at i (the array kept sorted by the caller). */
static void stream_bucket_insert(struct stream_state *st, size_t i,
                                 struct str name, uint64_t created_ms) {
  struct stream_bucket *b;
  if (st->n_buckets == st->cap_buckets) {
    size_t cap = st->cap_buckets ? st->cap_buckets * 2 : 8;
    b = (struct stream_bucket *)URSULA_REALLOC(st->buckets, cap * sizeof(*b));
    if (b == NULL) stream_oom();
    st->buckets = b;
    st->cap_buckets = cap;
  }
  memmove(st->buckets + i + 1, st->buckets + i,
          (st->n_buckets - i) * sizeof(*st->buckets));
  b = &st->buckets[i];
  memset(b, 0, sizeof(*b));
  memcpy(b->name, name.ptr, name.len);
  b->name_len = name.len;
  b->created_ms = created_ms;
  st->n_buckets++;
}

/* The bucket name of a BUCKET_* command's path "/{b}"; 0 if it is not
** one (HTTP never sends such a command: api.c routes only bucket paths
** here). */
static int stream_bucket_name(const struct cmd *c, struct str *name) {
  if (c->path.len < 2 || c->path.ptr[0] != '/') return 0;
  name->ptr = c->path.ptr + 1;
  name->len = c->path.len - 1;
  return util_bucket_name_ok(*name);
}

/* BUCKET_CREATE: 201 and a record made at the command's time, or 200 if
** the record was there already (it keeps its first created_ms). */
static void stream_apply_bucket_create(struct stream_state *st,
                                       const struct cmd *c,
                                       struct stream_result *r) {
  struct str name;
  int found;
  size_t i;
  if (!stream_bucket_name(c, &name)) {
    stream_fail(r, 400, "not a bucket name");
    return;
  }
  i = stream_bucket_at(st, name, &found);
  r->status = found ? 200 : 201;
  if (!found) stream_bucket_insert(st, i, name, c->time_ms);
}

/* BUCKET_DELETE: 204 and the record removed, or 404 if there was none.
** Whether the bucket still has streams was asked of every group before
** this was proposed (api.c); apply looks at the record alone. */
static void stream_apply_bucket_delete(struct stream_state *st,
                                       const struct cmd *c,
                                       struct stream_result *r) {
  struct str name;
  int found;
  size_t i;
  if (!stream_bucket_name(c, &name)) {
    stream_fail(r, 400, "not a bucket name");
    return;
  }
  i = stream_bucket_at(st, name, &found);
  if (!found) {
    stream_fail(r, 404, "no such bucket");
    return;
  }
  memmove(st->buckets + i, st->buckets + i + 1,
          (st->n_buckets - i - 1) * sizeof(*st->buckets));
  st->n_buckets--;
  r->status = 204;
}

/* ------------------------------------------------------------ SNAPSHOTS

   SNAPSHOTS AND RETENTION (issue 16, item 6: the Loro design; the
   routes and their answers are api.c's, SNAPSHOTS).  A stream has at
   most one published snapshot: opaque bytes a client made of the
   stream's first snap_at bytes (a CRDT document, say), with their
   content type and digest.  SNAPSHOT_PUT carries the bytes, so the log
   holds them exactly as it holds an append's: the state keeps the
   metadata (offset, type, digest, length) and where they are
   (snap_loc: the entry and the offset in its payload), and memory keeps
   the bytes only while hot (local.snap_data, counted in hot_bytes):
   eviction drops them first once the log holds them, a restart never
   loads them, and a read takes them from the log then (st->read_cold).
   They pin the log as a unit does (stream_oldest_index), and when the
   log is compacted past them they travel as a piece of the snapshot
   file (stream_log_units), so they survive both.  The cold tier does not
   move them (they stay in the log and its snapshot pieces).

   Rules, in the order apply checks them:
     SNAPSHOT_PUT at `at`: 404 no stream (410 soft-deleted); 400 if at is
       past the tail, below the retained offset, or not an append
       boundary (0, or the end of an append; a fork: not below its fork
       point); 200 if the same digest is published at the same offset
       (a retry: the digest covers the type and the bytes); 409 if
       CMD_F_MATCH and match is not the current digest ("none": there is
       no snapshot); 409 if another snapshot is at that offset, or one
       at a higher offset; else 201: it replaces the old one, whose
       bytes are freed.
     RETAIN at `at`: 404, 410 as above; 400 past the tail or not an
       append boundary; 204 and nothing changes if at <= retained; 409
       if a fork holds a reference (refcount > 0: a fork reads its
       source's bytes from 0) or if a snapshot is published below at
       (its bootstrap would miss the bytes between); else 204: retained
       = at, the hot bytes below it are freed, and its units wholly below
       it pin the log no more.  Chunks of the cold tier below it stay
       (not deleted: left for later).
   With a cold tier, the retained units still pin the log until the
   tier has moved them (it reads them from there: stream_first_kept); the
   chunks that hold them then stay.  A fork of a stream with a retained
   offset is refused (410 below it, 409 else: a fork would read its
   source from 0). */

/* Whether at is where an append of s starts or ends: 0 .. tail. */
static int stream_is_boundary(const struct stream *s, uint64_t at) {
  return at >= s->base && stream_unit_floor(s, at) == at;
}

/* Drop the hot copy of s's snapshot: the log has it. */
static void stream_snap_cool(struct stream_state *st, struct stream *s) {
  st->hot_bytes -= s->local.snap_data.len;
  buf_free(&s->local.snap_data);
  s->local.snap_hot = 0;
}

URSULA_PRIVATE int stream_read_snapshot(struct stream_state *st,
                                        const struct stream *s,
                                        struct buf *out) {
  if (!s->has_snap || s->snap_len == 0) return URSULA_OK;
  if (s->local.snap_hot)
    return buf_append(out, s->local.snap_data.ptr, (size_t)s->snap_len);
  if (st->read_cold == NULL || s->snap_loc.index == 0) return URSULA_EIO;
  return st->read_cold(st->read_ctx, &s->snap_loc, s->snap_len, out);
}

static void stream_apply_snapshot_put(struct stream_state *st, uint64_t index,
                                      const struct cmd *c,
                                      struct stream_result *r) {
  struct stream *s = stream_live(st, c, r);
  const char *cur;
  if (s == NULL || s->soft_deleted) {
    stream_fail(r, s == NULL ? 404 : 410,
                s == NULL ? "stream not found" : "stream was deleted");
    return;
  }
  r->tail = s->tail;
  r->closed = s->closed;
  if (c->at > s->tail) {
    stream_fail(r, 400, "the snapshot offset is beyond the stream's tail");
  } else if (c->at < s->retained) {
    stream_fail(r, 400, "the snapshot offset is below the retained offset");
  } else if (!stream_is_boundary(s, c->at)) {
    stream_fail(r, 400, "the snapshot offset is not an append boundary");
  } else if (c->digest.len != STREAM_DIGEST_LEN ||
             memchr(c->content_type.ptr, '\0', c->content_type.len)) {
    stream_fail(r, 400, "malformed snapshot command");
  } else if (s->has_snap && s->snap_at == c->at &&
             memcmp(s->snap_digest, c->digest.ptr, STREAM_DIGEST_LEN) == 0) {
    r->status = 200; /* the same snapshot again: a retry */
  } else if ((cur = s->has_snap ? s->snap_digest : "none"),
             (c->flags & CMD_F_MATCH) && !util_str_eq(c->match, cur)) {
    stream_fail(r, 409, "Stream-Snapshot-Match does not name the current "
                        "snapshot");
  } else if (s->has_snap && s->snap_at == c->at) {
    stream_fail(r, 409, "a different snapshot is published at this offset");
  } else if (s->has_snap && s->snap_at > c->at) {
    stream_fail(r, 409, "a snapshot at a higher offset is published");
  } else {
    if (s->local.snap_hot) stream_snap_cool(st, s);
    stream_set_str(&s->snap_type, NULL, c->content_type);
    memcpy(s->snap_digest, c->digest.ptr, STREAM_DIGEST_LEN);
    s->snap_digest[STREAM_DIGEST_LEN] = '\0';
    s->has_snap = 1;
    s->snap_at = c->at;
    s->snap_len = c->data.len;
    s->snap_loc.index = index;
    s->snap_loc.off = stream_off(c, c->data.ptr);
    if (!(st->log_only && index != 0) && c->data.len > 0) {
      if (buf_append(&s->local.snap_data, c->data.ptr, c->data.len) !=
          URSULA_OK)
        stream_oom();
      st->hot_bytes += c->data.len;
      s->local.snap_hot = 1;
    }
    r->status = 201;
  }
}

static void stream_apply_retain(struct stream_state *st, const struct cmd *c,
                                struct stream_result *r) {
  struct stream *s = stream_live(st, c, r);
  if (s == NULL || s->soft_deleted) {
    stream_fail(r, s == NULL ? 404 : 410,
                s == NULL ? "stream not found" : "stream was deleted");
    return;
  }
  r->tail = s->tail;
  r->closed = s->closed;
  if (c->at > s->tail) {
    stream_fail(r, 400, "the retention offset is beyond the stream's tail");
  } else if (c->at <= s->retained) {
    r->status = 204; /* never moves back: the current one stands */
  } else if (!stream_is_boundary(s, c->at)) {
    stream_fail(r, 400, "the retention offset is not an append boundary");
  } else if (s->refcount > 0) {
    stream_fail(r, 409, "a fork of this stream still reads its bytes: "
                        "retention cannot move while it has forks");
  } else if (s->has_snap && s->snap_at < c->at) {
    stream_fail(r, 409, "the published snapshot is below this offset: "
                        "publish one at or above it first");
  } else {
    s->retained = c->at;
    s->retained_units = stream_unit_at(s, c->at);
    stream_drop_hot(st, s, c->at); /* memory need not keep them */
    r->status = 204;
  }
}

/* ------------------------------------------------------------ apply */

URSULA_PRIVATE int stream_apply(struct stream_state *st, uint64_t index,
                                const struct cmd *c, struct stream_result *r) {
  struct buf releases = r->releases, garbage = r->garbage, ops = r->ops;
  memset(r, 0, sizeof(*r));
  r->releases = releases;
  r->releases.len = 0;
  r->garbage = garbage;
  r->garbage.len = 0;
  r->ops = ops;
  r->ops.len = 0;
  if (st->cap == 0) stream_table_grow(st);
  switch (c->type) {
    case CMD_CREATE:
      stream_apply_create(st, index, c, r);
      break;
    case CMD_APPEND:
      stream_apply_append(st, index, c, r);
      break;
    case CMD_DELETE:
      stream_apply_delete(st, c, r);
      break;
    case CMD_FORK_ACQUIRE:
      stream_apply_fork_acquire(st, c, r);
      break;
    case CMD_FORK_RELEASE:
      stream_apply_fork_release(st, c, r);
      break;
    case CMD_EXPIRE:
      stream_apply_expire(st, c, r);
      break;
    case CMD_COLD:
      stream_apply_cold(st, c, r);
      break;
    case CMD_TOUCH:
      stream_apply_touch(st, c, r);
      break;
    case CMD_BUCKET_CREATE:
      stream_apply_bucket_create(st, c, r);
      break;
    case CMD_BUCKET_DELETE:
      stream_apply_bucket_delete(st, c, r);
      break;
    case CMD_SNAPSHOT_PUT:
      stream_apply_snapshot_put(st, index, c, r);
      break;
    case CMD_RETAIN:
      stream_apply_retain(st, c, r);
      break;
    case CMD_MULTI:
      stream_apply_multi(st, index, c, r);
      break;
    case CMD_ATTRS:
      stream_apply_attrs(st, c, r);
      break;
    default:
      stream_fail(r, 500, "unknown command");
      return URSULA_ECORRUPT;
  }
  return URSULA_OK;
}

/* ------------------------------------------------------------ snapshots

   SNAPSHOT FORMAT.  v = varint (cmd.c), b = varint length + bytes.  The
   form is canonical: the same replicated state gives the same bytes on
   every node, whatever its history (hash-table size, eviction, restarts):
   streams in path order (bytewise, a prefix first), producers in id
   order, and nothing of struct stream_local.

     v 8 (format version)   v next_incarnation   v number of streams
     per stream:
       b path   b content_type
       v flags: 1 json, 2 closed, 4 soft_deleted, 8 has_ttl, 16 has_expires
       v tail   v ttl_s   v expires_at_ms   b expires_text
       v last_access_ms   b stream_seq (empty: none)
       v producers, then per producer: b id, v epoch, v seq
       b closed_by_id (empty: none)   v closed_by_epoch   v closed_by_seq
       b fork_source (empty: not a fork)   v fork_offset   v fork_sub
       v base (the fork point: the stream's own bytes start there)
       v fork_inc (the source's incarnation)
       v rec_base (JSON records below base: a fork's inherited ones)
       v refcount   v incarnation
       b attrs (its attributes, attrs.c's stored form; empty: none; from
         version 8)
       v chunks, then per chunk: v length, b object name (the chunks hold
         the stream's first own bytes, back to back from base)
       v units, then per unit: v length (the first from base), v records
         (JSON messages in the unit; 0 for a stream not JSON), then, for
         the units past the chunks' end only, v log index, v offset in
         that entry's payload
       v retained (0: all kept; else the end of a unit; from version 7)
       v snapshot (from version 7; 0: none, 1: one, then:)
         v snap_at   b snap_type   b digest (71 bytes)   v length
         v log index   v offset in that entry's payload (both 0 for
         an empty snapshot)
     v number of bucket records, then per record (in name order,
       bytewise, each name once): b name (a bucket name, without the
       '/'), v created_ms

   The bytes of units past the chunks stay in the log entries named (the
   log keeps them: group.c compacts only what no stream reads), or travel
   beside this payload as pieces of the snapshot file (wal.c) when the
   log does not hold those entries (after an install from another node); a fork's
   bytes below base are its source's, in the source's record.  Restore
   checks every length and offset for order and range before it uses
   one: base <= tail, fork_offset <= base (a copied fork: base 0), a
   stream that is no fork has none of the fork fields, chunks and units
   are non-empty and end exactly at a unit end and at the tail, and no
   sum wraps; record counts are 0 on a stream not JSON and add up to at
   most URSULA_MAX_RECORD; retained and snap_at are unit boundaries,
   retained <= snap_at.  Version 7 is version 8 without attrs (a stream
   of that build had none), and is read.  Version 6 is version 7 without retained and
   snapshot (none then), and is read.  Version 5 is version 6 without
   rec_base and the units' record counts, and is read: its streams count
   0 records (their records were appended by a build that did not count
   them: the record headers of such a stream count from the first append
   after the upgrade, README, "JSON record coordinates").  Version 4 is
   version 5 without the bucket records (a
   group of that build had none), and is read.  Version 3 is version 4
   without base and fork_inc (its forks hold copies of what they
   inherited: base 0), and is read.
   Versions 1 and 2 named WAL files and offsets instead; they came with
   WAL format 1, which is refused, so they are not read.

   stream_restore() accepts this canonical form only, so that restoring
   and snapshotting again gives the same bytes: shortest varints, paths
   and producer ids strictly ascending, no unknown flag, no NUL in a
   content type, expires_text or chunk name, and lengths that add up
   without wrapping. */

#define STREAM_SNAP_VERSION 8

static struct str stream_str(const char *p, size_t len) {
  struct str s;
  s.ptr = p ? p : "";
  s.len = p ? len : 0;
  return s;
}

static int stream_path_cmp(const void *x, const void *y) {
  const struct stream *a = *(const struct stream *const *)x;
  const struct stream *b = *(const struct stream *const *)y;
  return stream_bytes_cmp(a->path, a->path_len, b->path, b->path_len);
}

static int stream_producer_cmp(const void *x, const void *y) {
  const struct stream_producer *a = *(const struct stream_producer *const *)x;
  const struct stream_producer *b = *(const struct stream_producer *const *)y;
  return stream_bytes_cmp(a->id, a->id_len, b->id, b->id_len);
}

/* One stream's record of the snapshot. */
static int stream_snapshot_one(const struct stream *s, struct buf *out) {
  const struct stream_producer *pr, **prs = NULL;
  uint64_t n = 0, prev = s->base, recs = s->rec_base, i;
  int bad = 0;
  for (pr = s->producers; pr != NULL; pr = pr->next) n++;
  if (n > 0) {
    prs = (const struct stream_producer **)URSULA_MALLOC(
        (size_t)n * sizeof(*prs));
    if (prs == NULL) return URSULA_ENOMEM;
    for (i = 0, pr = s->producers; pr != NULL; pr = pr->next) prs[i++] = pr;
    qsort((void *)prs, (size_t)n, sizeof(*prs), stream_producer_cmp);
  }
  bad |= cmd_put_bytes(out, stream_str(s->path, s->path_len));
  bad |= cmd_put_bytes(out, util_str(s->content_type));
  bad |= cmd_put_varint(
      out, (uint64_t)(s->json | s->closed << 1 | s->soft_deleted << 2 |
                      s->has_ttl << 3 | s->has_expires << 4));
  bad |= cmd_put_varint(out, s->tail);
  bad |= cmd_put_varint(out, s->ttl_s);
  bad |= cmd_put_varint(out, s->expires_at_ms);
  bad |= cmd_put_bytes(out, util_str(s->expires_text ? s->expires_text : ""));
  bad |= cmd_put_varint(out, s->last_access_ms);
  bad |= cmd_put_bytes(out, stream_str(s->stream_seq, s->stream_seq_len));
  bad |= cmd_put_varint(out, n);
  for (i = 0; i < n; i++) {
    bad |= cmd_put_bytes(out, stream_str(prs[i]->id, prs[i]->id_len));
    bad |= cmd_put_varint(out, prs[i]->epoch);
    bad |= cmd_put_varint(out, prs[i]->seq);
  }
  URSULA_FREE((void *)prs);
  bad |= cmd_put_bytes(out, stream_str(s->closed_by_id, s->closed_by_id_len));
  bad |= cmd_put_varint(out, s->closed_by_epoch);
  bad |= cmd_put_varint(out, s->closed_by_seq);
  bad |= cmd_put_bytes(out, stream_str(s->fork_source, s->fork_source_len));
  bad |= cmd_put_varint(out, s->fork_offset);
  bad |= cmd_put_varint(out, s->fork_sub);
  bad |= cmd_put_varint(out, s->base);
  bad |= cmd_put_varint(out, s->fork_inc);
  bad |= cmd_put_varint(out, s->rec_base);
  bad |= cmd_put_varint(out, s->refcount);
  bad |= cmd_put_varint(out, s->incarnation);
  bad |= cmd_put_bytes(out, stream_str(s->attrs, s->attrs_len));
  bad |= cmd_put_varint(out, s->n_chunks);
  for (i = 0; i < s->n_chunks; i++) {
    bad |= cmd_put_varint(out, s->chunks[i].end - s->chunks[i].start);
    bad |= cmd_put_bytes(out, util_str(s->chunks[i].name));
  }
  bad |= cmd_put_varint(out, s->n_bounds);
  for (i = 0; i < s->n_bounds; i++) {
    bad |= cmd_put_varint(out, s->bounds[i] - prev);
    bad |= cmd_put_varint(out, s->rec_ends[i] - recs);
    prev = s->bounds[i];
    recs = s->rec_ends[i];
    if (i < s->cold_units) continue;
    if (s->locs[i].index == 0) return URSULA_EINVAL; /* in no log */
    bad |= cmd_put_varint(out, s->locs[i].index);
    bad |= cmd_put_varint(out, s->locs[i].off);
  }
  bad |= cmd_put_varint(out, s->retained);
  bad |= cmd_put_varint(out, (uint64_t)s->has_snap);
  if (s->has_snap) {
    if (s->snap_len > 0 && s->snap_loc.index == 0) return URSULA_EINVAL;
    bad |= cmd_put_varint(out, s->snap_at);
    bad |= cmd_put_bytes(out, util_str(s->snap_type));
    bad |= cmd_put_bytes(out, stream_str(s->snap_digest, STREAM_DIGEST_LEN));
    bad |= cmd_put_varint(out, s->snap_len);
    bad |= cmd_put_varint(out, s->snap_len ? s->snap_loc.index : 0);
    bad |= cmd_put_varint(out, s->snap_len ? s->snap_loc.off : 0);
  }
  return bad ? URSULA_ENOMEM : URSULA_OK;
}

URSULA_PRIVATE int stream_snapshot(const struct stream_state *st,
                                   struct buf *out) {
  const struct stream **all = NULL, *s;
  size_t i, n = 0;
  int rc = URSULA_OK, bad = 0;
  if (st->n > 0) {
    all = (const struct stream **)URSULA_MALLOC(st->n * sizeof(*all));
    if (all == NULL) return URSULA_ENOMEM;
    for (i = 0; i < st->cap; i++)
      for (s = st->slots[i]; s != NULL; s = s->hnext) all[n++] = s;
    qsort((void *)all, n, sizeof(*all), stream_path_cmp);
  }
  bad |= cmd_put_varint(out, STREAM_SNAP_VERSION);
  bad |= cmd_put_varint(out, st->next_incarnation);
  bad |= cmd_put_varint(out, n);
  for (i = 0; i < n && rc == URSULA_OK; i++) rc = stream_snapshot_one(all[i], out);
  URSULA_FREE((void *)all);
  bad |= cmd_put_varint(out, st->n_buckets);
  for (i = 0; i < st->n_buckets; i++) {
    bad |= cmd_put_bytes(out, stream_str(st->buckets[i].name,
                                         st->buckets[i].name_len));
    bad |= cmd_put_varint(out, st->buckets[i].created_ms);
  }
  if (rc == URSULA_OK && bad) rc = URSULA_ENOMEM;
  return rc;
}

URSULA_PRIVATE int stream_digest(const struct stream_state *st,
                                 uint64_t *digest) {
  struct buf b;
  int rc;
  memset(&b, 0, sizeof(b));
  rc = stream_snapshot(st, &b);
  *digest = rc == URSULA_OK ? util_hash64(b.ptr ? b.ptr : "", b.len) : 0;
  buf_free(&b);
  return rc;
}

/* Copy a snapshot string; "" becomes NULL when empty means none. */
static void stream_take(char **dst, size_t *len, struct str v, int null_empty) {
  *dst = NULL;
  if (len) *len = 0;
  if (null_empty && v.len == 0) return;
  stream_set_str(dst, len, v);
}

/* Decode the chunk list of a stream. */
static int stream_restore_chunks(const unsigned char **p,
                                 const unsigned char *end, struct stream *s) {
  uint64_t n, i, len;
  struct str name;
  if (cmd_get_varint(p, end, &n) || n > (uint64_t)(end - *p) / 2) return -1;
  if (n == 0) return 0;
  s->chunks =
      (struct stream_chunk *)URSULA_MALLOC((size_t)n * sizeof(*s->chunks));
  if (s->chunks == NULL) stream_oom();
  s->cap_chunks = (size_t)n;
  for (i = 0; i < n; i++) {
    struct stream_chunk *ch = &s->chunks[i];
    if (cmd_get_varint(p, end, &len) || len == 0 ||
        len > s->tail - s->cold_end || cmd_get_bytes(p, end, &name) ||
        name.len == 0 || memchr(name.ptr, '\0', name.len) != NULL)
      return -1;
    ch->name = stream_dup(name);
    s->n_chunks++;
    ch->start = s->cold_end;
    ch->end = s->cold_end += len;
  }
  return 0;
}

static int stream_is_boundary(const struct stream *s, uint64_t at);

/* Decode the retained offset and the published snapshot of s (format 6);
** 0, or -1 for bad input. */
static int stream_restore_snap(const unsigned char **p,
                               const unsigned char *end, struct stream *s) {
  uint64_t has = 0;
  struct str ct, dg;
  if (cmd_get_varint(p, end, &s->retained) || s->retained > s->tail ||
      (s->retained > 0 && !stream_is_boundary(s, s->retained)) ||
      cmd_get_varint(p, end, &has) || has > 1)
    return -1;
  s->retained_units = stream_unit_at(s, s->retained);
  if (has == 0) return 0;
  if (cmd_get_varint(p, end, &s->snap_at) || cmd_get_bytes(p, end, &ct) ||
      cmd_get_bytes(p, end, &dg) || cmd_get_varint(p, end, &s->snap_len) ||
      cmd_get_varint(p, end, &s->snap_loc.index) ||
      cmd_get_varint(p, end, &s->snap_loc.off) || s->snap_at > s->tail ||
      s->snap_at < s->retained || !stream_is_boundary(s, s->snap_at) ||
      memchr(ct.ptr, '\0', ct.len) != NULL || dg.len != STREAM_DIGEST_LEN ||
      memchr(dg.ptr, '\0', dg.len) != NULL ||
      (s->snap_len > 0) != (s->snap_loc.index > 0) ||
      (s->snap_len == 0 && s->snap_loc.off != 0))
    return -1;
  s->has_snap = 1;
  stream_take(&s->snap_type, NULL, ct, 0);
  memcpy(s->snap_digest, dg.ptr, STREAM_DIGEST_LEN);
  s->snap_digest[STREAM_DIGEST_LEN] = '\0';
  return 0;
}

/* Decode one stream of a snapshot of format `version`; 0, or -1 for bad
** input. */
static int stream_restore_one(const unsigned char **p, const unsigned char *end,
                              struct stream *s, uint64_t version) {
  struct str path = {"", 0}, ct = {"", 0}, exp = {"", 0}, seq, by, src, id,
             prev_id = {NULL, 0};
  uint64_t flags = 0, n = 0, i, prev = 0, recs;
  int bad = 0;
  bad |= cmd_get_bytes(p, end, &path);
  bad |= cmd_get_bytes(p, end, &ct);
  bad |= cmd_get_varint(p, end, &flags);
  bad |= cmd_get_varint(p, end, &s->tail);
  bad |= cmd_get_varint(p, end, &s->ttl_s);
  bad |= cmd_get_varint(p, end, &s->expires_at_ms);
  bad |= cmd_get_bytes(p, end, &exp);
  bad |= cmd_get_varint(p, end, &s->last_access_ms);
  bad |= cmd_get_bytes(p, end, &seq);
  if (bad || path.len == 0 || flags >> 5 != 0 ||
      memchr(ct.ptr, '\0', ct.len) != NULL ||
      memchr(exp.ptr, '\0', exp.len) != NULL)
    return -1;
  s->json = (int)(flags & 1);
  s->closed = (int)(flags >> 1 & 1);
  s->soft_deleted = (int)(flags >> 2 & 1);
  s->has_ttl = (int)(flags >> 3 & 1);
  s->has_expires = (int)(flags >> 4 & 1);
  s->hash = util_hash64(path.ptr, path.len);
  stream_take(&s->path, &s->path_len, path, 0);
  stream_take(&s->content_type, NULL, ct, 0);
  stream_take(&s->expires_text, NULL, exp, 1);
  stream_take(&s->stream_seq, &s->stream_seq_len, seq, 1);
  if (cmd_get_varint(p, end, &n)) return -1;
  for (i = 0; i < n; i++) {
    struct stream_producer *pr;
    uint64_t epoch, sq;
    if (cmd_get_bytes(p, end, &id) || cmd_get_varint(p, end, &epoch) ||
        cmd_get_varint(p, end, &sq) ||
        (i > 0 && stream_bytes_cmp(prev_id.ptr, prev_id.len, id.ptr,
                                   id.len) >= 0)) /* ascending, no twice */
      return -1;
    prev_id = id;
    pr = (struct stream_producer *)URSULA_MALLOC(sizeof(*pr) + id.len);
    if (pr == NULL) stream_oom();
    pr->id_len = id.len;
    memcpy(pr->id, id.ptr, id.len);
    pr->id[id.len] = '\0';
    pr->epoch = epoch;
    pr->seq = sq;
    pr->next = s->producers;
    s->producers = pr;
  }
  bad |= cmd_get_bytes(p, end, &by);
  bad |= cmd_get_varint(p, end, &s->closed_by_epoch);
  bad |= cmd_get_varint(p, end, &s->closed_by_seq);
  bad |= cmd_get_bytes(p, end, &src);
  bad |= cmd_get_varint(p, end, &s->fork_offset);
  bad |= cmd_get_varint(p, end, &s->fork_sub);
  if (version >= 4) {
    bad |= cmd_get_varint(p, end, &s->base);
    bad |= cmd_get_varint(p, end, &s->fork_inc);
  }
  if (version >= 6) bad |= cmd_get_varint(p, end, &s->rec_base);
  bad |= cmd_get_varint(p, end, &s->refcount);
  bad |= cmd_get_varint(p, end, &s->incarnation);
  if (version >= 8) {
    struct str attrs = {"", 0};
    bad |= cmd_get_bytes(p, end, &attrs);
    if (!bad && attrs.len > 0 && !attrs_canonical(attrs)) return -1;
    if (!bad) stream_take(&s->attrs, &s->attrs_len, attrs, 1);
  }
  /* the fork fields: all zero but for a fork; a fork's own bytes start at
  ** or after its fork offset (or at 0: a copied fork) */
  if (bad || s->base > s->tail ||
      (src.len == 0 && (s->base != 0 || s->fork_inc != 0 ||
                        s->fork_offset != 0 || s->fork_sub != 0)) ||
      (s->base > 0 && (s->fork_offset > s->base || s->fork_inc == 0)) ||
      (!s->json && s->rec_base != 0) || s->rec_base > URSULA_MAX_RECORD)
    return -1;
  s->cold_end = s->base;
  bad |= stream_restore_chunks(p, end, s);
  bad |= cmd_get_varint(p, end, &n);
  if (bad || n > (uint64_t)(end - *p)) /* a unit takes at least 1 byte */
    return -1;
  stream_take(&s->closed_by_id, &s->closed_by_id_len, by, 1);
  stream_take(&s->fork_source, &s->fork_source_len, src, 1);
  if (n > 0) {
    s->bounds = (uint64_t *)URSULA_MALLOC((size_t)n * sizeof(*s->bounds));
    s->rec_ends =
        (uint64_t *)URSULA_MALLOC((size_t)n * sizeof(*s->rec_ends));
    s->locs = (struct stream_loc *)URSULA_MALLOC((size_t)n * sizeof(*s->locs));
    if (s->bounds == NULL || s->rec_ends == NULL || s->locs == NULL)
      stream_oom();
    s->cap_bounds = (size_t)n;
  }
  prev = s->base;
  recs = s->rec_base;
  for (i = 0; i < n; i++) {
    uint64_t len, k = 0;
    if (cmd_get_varint(p, end, &len) || len == 0 || len > s->tail - prev ||
        (version >= 6 && cmd_get_varint(p, end, &k)) ||
        (!s->json && k != 0) || k > URSULA_MAX_RECORD - recs)
      return -1;
    recs += k;
    s->rec_ends[i] = recs;
    if (prev < s->cold_end) { /* in a chunk: no log location */
      s->locs[i].index = s->locs[i].off = 0;
      s->cold_units = (size_t)i + 1;
    } else if (cmd_get_varint(p, end, &s->locs[i].index) ||
               cmd_get_varint(p, end, &s->locs[i].off) ||
               s->locs[i].index == 0) {
      return -1;
    }
    prev += len;
    s->bounds[i] = prev;
  }
  s->n_bounds = (size_t)n;
  if (prev != s->tail || s->cold_end > s->tail ||
      (s->cold_units > 0 && s->bounds[s->cold_units - 1] != s->cold_end))
    return -1;
  s->local.hot_start = s->tail; /* nothing in memory: read from the log */
  return version >= 7 ? stream_restore_snap(p, end, s) : 0;
}

/* Decode the bucket records of a snapshot: names valid and strictly
** ascending.  0, or -1 for bad input. */
static int stream_restore_buckets(struct stream_state *st,
                                  const unsigned char **p,
                                  const unsigned char *end) {
  uint64_t n, i, created;
  struct str name;
  if (cmd_get_varint(p, end, &n) || n > (uint64_t)(end - *p) / 2) return -1;
  for (i = 0; i < n; i++) {
    if (cmd_get_bytes(p, end, &name) || !util_bucket_name_ok(name) ||
        cmd_get_varint(p, end, &created) ||
        (i > 0 && stream_bytes_cmp(st->buckets[i - 1].name,
                                   st->buckets[i - 1].name_len, name.ptr,
                                   name.len) >= 0))
      return -1;
    stream_bucket_insert(st, st->n_buckets, name, created);
  }
  return 0;
}

URSULA_PRIVATE int stream_restore(struct stream_state *st, const void *p,
                                  size_t len) {
  const unsigned char *q = (const unsigned char *)p, *end = q + len;
  const struct stream *last = NULL; /* the stream before: paths ascend */
  uint64_t version, n, i;
  if (cmd_get_varint(&q, end, &version) ||
      version < 3 || version > STREAM_SNAP_VERSION ||
      cmd_get_varint(&q, end, &st->next_incarnation) ||
      cmd_get_varint(&q, end, &n))
    return URSULA_ECORRUPT;
  for (i = 0; i < n; i++) {
    struct stream *s;
    if (st->n + 1 > st->cap / 2) stream_table_grow(st);
    s = (struct stream *)URSULA_MALLOC(sizeof(*s));
    if (s == NULL) stream_oom();
    memset(s, 0, sizeof(*s));
    if (stream_restore_one(&q, end, s, version) != 0 ||
        (last != NULL && stream_bytes_cmp(last->path, last->path_len, s->path,
                                          s->path_len) >= 0) ||
        stream_find(st, stream_str(s->path, s->path_len)) != NULL) {
      stream_free(st, s);
      return URSULA_ECORRUPT;
    }
    s->hnext = st->slots[s->hash & (st->cap - 1)];
    st->slots[s->hash & (st->cap - 1)] = s;
    st->n++;
    last = s;
  }
  if (version >= 5 && stream_restore_buckets(st, &q, end) != 0)
    return URSULA_ECORRUPT;
  return q == end ? URSULA_OK : URSULA_ECORRUPT;
}

/* The first unit of s, not in the cold tier, whose entry is at or after
** floor (a stream's units are logged in order); s->n_bounds if none. */
/* The first unit of s whose bytes the log must keep: past the cold tier's
** chunks and, without a cold tier, past the retained offset (SNAPSHOTS;
** with one, the tier still moves the retained bytes out of the log, which
** reads them, and they stop pinning it then). */
static size_t stream_first_kept(const struct stream_state *st,
                                const struct stream *s) {
  if (st->read_chunk == NULL && s->retained_units > s->cold_units)
    return s->retained_units;
  return s->cold_units;
}

static size_t stream_first_unit_from(const struct stream_state *st,
                                     const struct stream *s, uint64_t floor) {
  size_t lo = stream_first_kept(st, s), hi = s->n_bounds;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (s->locs[mid].index < floor)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

URSULA_PRIVATE uint64_t stream_oldest_index(const struct stream_state *st,
                                            uint64_t floor) {
  uint64_t oldest = UINT64_MAX;
  size_t i, u;
  const struct stream *s;
  /* units in the cold tier need the log no more */
  for (i = 0; i < st->cap; i++)
    for (s = st->slots[i]; s != NULL; s = s->hnext) {
      u = stream_first_unit_from(st, s, floor > 0 ? floor : 1);
      if (u < s->n_bounds && s->locs[u].index < oldest)
        oldest = s->locs[u].index;
      if (s->has_snap && s->snap_len > 0 && s->snap_loc.index >= floor &&
          s->snap_loc.index < oldest) /* the snapshot's bytes (SNAPSHOTS) */
        oldest = s->snap_loc.index;
    }
  return oldest;
}

static int stream_piece_cmp(const void *x, const void *y) {
  const struct stream_piece *a = (const struct stream_piece *)x;
  const struct stream_piece *b = (const struct stream_piece *)y;
  if (a->index != b->index) return a->index < b->index ? -1 : 1;
  return a->off < b->off ? -1 : a->off > b->off;
}

URSULA_PRIVATE int stream_log_units(const struct stream_state *st,
                                    uint64_t below, struct buf *out) {
  size_t i, u;
  const struct stream *s;
  out->len = 0;
  for (i = 0; i < st->cap; i++)
    for (s = st->slots[i]; s != NULL; s = s->hnext) {
      if (s->has_snap && s->snap_len > 0 && s->snap_loc.index != 0 &&
          s->snap_loc.index < below) { /* the snapshot's bytes */
        struct stream_piece pc;
        pc.index = s->snap_loc.index;
        pc.off = s->snap_loc.off;
        pc.len = s->snap_len;
        if (buf_append(out, &pc, sizeof(pc)) != URSULA_OK)
          return URSULA_ENOMEM;
      }
      for (u = stream_first_kept(st, s); u < s->n_bounds; u++) {
        struct stream_piece pc;
        if (s->locs[u].index == 0) continue; /* in memory only */
        if (s->locs[u].index >= below) break; /* logged in order */
        pc.index = s->locs[u].index;
        pc.off = s->locs[u].off;
        pc.len = s->bounds[u] - stream_unit_start(s, u);
        if (buf_append(out, &pc, sizeof(pc)) != URSULA_OK)
          return URSULA_ENOMEM;
      }
    }
  if (out->len > 0)
    qsort(out->ptr, out->len / sizeof(struct stream_piece),
          sizeof(struct stream_piece), stream_piece_cmp);
  return URSULA_OK;
}
