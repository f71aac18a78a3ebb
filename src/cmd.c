/*
** cmd.c -- the commands a group's log carries, and their byte encoding.
**
** A group is a state machine: it changes only by applying commands taken
** from its log, in log order (stream.c applies them).  The log stores each
** command as the bytes below; the same bytes will go into the WAL and be
** replicated by Raft, so the encoding is explicit and versioned.
**
** ENCODING (all integers are unsigned LEB128 varints: 7 bits per byte,
** least significant group first, high bit set on every byte but the last;
** at most 10 bytes):
**
**    offset  field
**    0       u8      version, CMD_VERSION (2; 1 is still decoded, below)
**    1       u8      type: 1 CREATE, 2 APPEND, 3 DELETE, 4 FORK_ACQUIRE,
**                    5 FORK_RELEASE, 6 EXPIRE, 7 COLD, 8 TOUCH,
**                    9 BUCKET_CREATE, 10 BUCKET_DELETE, 11 SNAPSHOT_PUT,
**                    12 RETAIN
**    2       varint  flags (CMD_F_*)
**    ..      varint  time_ms: the proposer's wall clock, Unix ms.  Apply
**                    uses it, never a clock of its own, so that replaying
**                    or replicating the log gives the same state.
**    ..      bytes   path              (varint length, then the bytes)
**    ..      bytes   content_type
**    ..      bytes   data
**    ..      varint  n_msgs            (JSON messages in data; FORK_ACQUIRE
**                                       with a sub-offset: the length of
**                                       the append at fork_offset in
**                                       Sub-Offset units, found by the
**                                       proposer where apply cannot see
**                                       it: the messages of a JSON
**                                       append, or, with CMD_F_UNIT, an
**                                       append the source inherited
**                                       (JSON messages or bytes); apply
**                                       reads no stream bytes and no
**                                       other stream)
**    ..      varint  ttl_s
**    ..      varint  expires_at_ms
**    ..      bytes   expires_text      (Stream-Expires-At as sent)
**    ..      bytes   stream_seq
**    ..      bytes   producer_id
**    ..      varint  producer_epoch
**    ..      varint  producer_seq
**    ..      bytes   fork_source
**    ..      varint  fork_offset
**    ..      varint  fork_sub
**    ..      varint  fork_base         (CREATE of a fork: the fork point,
**                                       where the fork's own bytes begin;
**                                       below it the fork reads its
**                                       source's bytes, which the command
**                                       does not carry)
**    ..      varint  fork_inc          (CREATE of a fork: the source's
**                                       incarnation, whose reference the
**                                       fork holds)
**
** Every field is always present (absent strings are empty, absent numbers
** 0), so a decoder never guesses; the flags say which are meaningful.
**
** Version 1 had, where fork_base and fork_inc are, the bytes a fork
** inherited (`bytes inherited`, copied from the source) and the ends of
** their append units (`varint n_bounds`, then n_bounds varints, deltas
** from the previous end, the first from 0); FORK_ACQUIRE had no
** incarnation.  Logs written by that build are decoded (a fork CREATE
** then makes those bytes the fork's own units); nothing encodes it.
**
** Type 4, FORK_ACQUIRE, carries one more field after those of every
** type:
**
**    ..      varint  incarnation       (of the source as the proposer saw
**                                       it, 0 for none: the facts it
**                                       found, n_msgs, hold for that one)
**
** Type 7, COLD (the stream's bytes [cold_start, cold_end) now live in the
** cold-tier object `object`), carries four more fields after those:
**
**    ..      varint  incarnation       (of the stream the object belongs to)
**    ..      varint  cold_start
**    ..      varint  cold_end
**    ..      bytes   object            (the object's name, cold.c)
**
** Type 8, TOUCH (the owner saw a read of the stream at time_ms: the
** sliding TTL window moves there), carries one more field after those
** of every type:
**
**    ..      varint  incarnation       (of the stream that was read)
**
** Types 9, BUCKET_CREATE, and 10, BUCKET_DELETE (a bucket's record, in
** the group of its path; api.c, BUCKETS), carry the fields of every
** type and nothing after them.  Of those they use two: path, the
** bucket route "/{b}" (b a bucket name: util_bucket_name_ok), and
** time_ms, which becomes a new record's created_ms; every other field
** is empty or 0 (flags 0).  For example BUCKET_CREATE of "/demo" at
** time_ms 1700000000000 is the 30 bytes
**
**    02 09 00 80 d0 95 ff bc 31 05 2f 64 65 6d 6f
**    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
**
** (version 2, type 9, flags 0, time_ms as a 6-byte varint, path as its
** length 5 and "/demo", then 15 empty fields, one 00 byte each: two
** strings, three numbers, three strings, two numbers, one string, four
** numbers; test/unit_stream.c checks these bytes).  These types came in without a new CMD_VERSION: the bytes
** of the older types did not change, and a build that does not know
** types 9 and 10 refuses such an entry (URSULA_ECORRUPT) rather than
** misreading it.  Version 1 never had them.
**
** JSON RECORDS (json-record-coordinates-v1; stream.c, "Records").  Two
** flags add one trailing varint each, after the fields of every type,
** only when set, so no other command's bytes changed:
**
**    ..      varint  record_match      (APPEND with CMD_F_RECORD_MATCH,
**                                       1 << 10: Stream-Record-Match, the
**                                       record the stream's next must be)
**    ..      varint  record_base       (CREATE with CMD_F_RECORD_BASE,
**                                       1 << 11: a JSON fork's records
**                                       below its fork point, found by the
**                                       proposer, fork.c)
**
** Either flag on another type, or on a version-1 entry, is refused
** (URSULA_ECORRUPT), as are bytes left after the last field.  For example
** an APPEND of [1] to "/j" (application/json) with Stream-Record-Match: 3
** at time_ms 1700000000000 is the 47 bytes
**
**    02 02 82 0a 80 d0 95 ff bc 31 02 2f 6a 10 61 70
**    70 6c 69 63 61 74 69 6f 6e 2f 6a 73 6f 6e 02 31
**    2c 01 00 00 00 00 00 00 00 00 00 00 00 00 03
**
** (version 2, type 2, flags 0x502 = JSON | CT | RECORD_MATCH as the varint
** 82 0a, time_ms, path "/j", content type, data "1," (the stored form of
** [1]), n_msgs 1, twelve empty fields, then record_match 3;
** test/unit_stream.c checks these bytes).
** Type 11, SNAPSHOT_PUT (publish a stream's snapshot: api.c, SNAPSHOTS;
** stream.c applies it), uses four of the fields of every type: path (the
** stream), content_type (the snapshot's), data (the snapshot's bytes:
** the log holds them, as it holds an append's) and flags (CMD_F_MATCH,
** 1 << 12: the request had Stream-Snapshot-Match); time_ms as always.
** It carries three more fields after them:
**
**    ..      varint  at                (the byte offset it is taken at)
**    ..      bytes   digest            ("sha256:" and 64 lowercase hex
**                                       digits, computed by the proposer)
**    ..      bytes   match             (Stream-Snapshot-Match as sent:
**                                       a digest, or "none")
**
** Type 12, RETAIN (the stream's bytes below `at` are no longer kept),
** uses path and carries one more field:
**
**    ..      varint  at
**
** For example RETAIN of "/demo/doc" at 300, time_ms 1700000000000, is
** the 32 bytes
**
**    02 0c 00 80 d0 95 ff bc 31 09 2f 64 65 6d 6f 2f 64 6f 63
**    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ac 02
**
** (the common fields as BUCKET_CREATE's above, the path "/demo/doc",
** then at, 300, as the varint ac 02; test/unit_stream.c checks them).
** They came in without a new CMD_VERSION, as types 9 and 10 did.
**
** Type 13, MULTI (appends to streams of one group in one entry: an
** append-batch, or with CMD_F_ATOMIC, 1 << 13, a $transaction; batch.c
** and stream.c), uses path (the stream of an append-batch, the group's
** "/{b}/{aff}" of a transaction: where it is routed), flags and time_ms,
** and carries after the fields of every type:
**
**    ..      varint  n_ops             (1 to CMD_MULTI_MAX, 512)
**    ..      bytes   op, n_ops times   (each a whole encoded APPEND of
**                                       this version, time_ms 0: the
**                                       MULTI's is every op's; no flag but
**                                       an append's; refused otherwise)
**
** An op's data is in the MULTI's bytes, so its offset there is where a
** unit's bytes are in the log entry, as for an APPEND of its own.
**
** Type 14, ATTRS (replace a stream's attributes, attrs.c), uses path and
** time_ms and carries one more field; a CREATE with CMD_F_ATTRS, 1 << 14
** (Stream-Attrs), carries the same field after its own:
**
**    ..      bytes   attrs             (attrs.c's stored form; empty:
**                                       none)
**
** For example ATTRS of "/demo/s" to {"title":"t"} at time_ms
** 1700000000000 is the 46 bytes
**
**    02 0e 00 80 d0 95 ff bc 31 07 2f 64 65 6d 6f 2f
**    73 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
**    0d 7b 22 74 69 74 6c 65 22 3a 22 74 22 7d
**
** (the common fields as BUCKET_CREATE's above, the path "/demo/s", then
** attrs, 13 bytes; test/unit_stream.c checks them).  Types 13 and 14 and
** the two flags came in without a new CMD_VERSION, as types 9 and 10 did.
*/
#include "internal.h"

/* Append v as a varint. */
URSULA_PRIVATE int cmd_put_varint(struct buf *b, uint64_t v) {
  unsigned char tmp[10];
  size_t n = 0;
  do {
    tmp[n] = (unsigned char)(v & 0x7f);
    v >>= 7;
    if (v) tmp[n] |= 0x80;
    n++;
  } while (v);
  return buf_append(b, tmp, n);
}

URSULA_PRIVATE int cmd_put_bytes(struct buf *b, struct str s) {
  if (cmd_put_varint(b, s.len) != URSULA_OK) return URSULA_ENOMEM;
  return buf_append(b, s.ptr, s.len);
}

/* Read a varint from *p (advanced) before end; -1 if truncated, too long,
** or not in the shortest form cmd_put_varint() writes (a last byte 0 after
** others, bits past 64): each value has one encoding, so decoding and
** encoding again gives the same bytes. */
URSULA_PRIVATE int cmd_get_varint(const unsigned char **p,
                                  const unsigned char *end, uint64_t *out) {
  uint64_t v = 0;
  unsigned shift = 0;
  while (*p < end && shift < 64) {
    unsigned char c = *(*p)++;
    if (shift == 63 && c > 1) return -1; /* past 64 bits */
    v |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      if (c == 0 && shift > 0) return -1; /* a needless last byte */
      *out = v;
      return 0;
    }
    shift += 7;
  }
  return -1;
}

URSULA_PRIVATE int cmd_get_bytes(const unsigned char **p,
                                 const unsigned char *end, struct str *out) {
  uint64_t n;
  if (cmd_get_varint(p, end, &n) != 0 || n > (uint64_t)(end - *p)) return -1;
  out->ptr = (const char *)*p;
  out->len = (size_t)n;
  *p += n;
  return 0;
}

URSULA_PRIVATE int cmd_encode(const struct cmd *c, struct buf *out) {
  size_t start = out->len;
  unsigned char head[2];
  int rc = URSULA_OK;
  head[0] = CMD_VERSION;
  head[1] = (unsigned char)c->type;
  rc |= buf_append(out, head, 2);
  rc |= cmd_put_varint(out, c->flags);
  rc |= cmd_put_varint(out, c->time_ms);
  rc |= cmd_put_bytes(out, c->path);
  rc |= cmd_put_bytes(out, c->content_type);
  rc |= cmd_put_bytes(out, c->data);
  rc |= cmd_put_varint(out, c->n_msgs);
  rc |= cmd_put_varint(out, c->ttl_s);
  rc |= cmd_put_varint(out, c->expires_at_ms);
  rc |= cmd_put_bytes(out, c->expires_text);
  rc |= cmd_put_bytes(out, c->stream_seq);
  rc |= cmd_put_bytes(out, c->producer_id);
  rc |= cmd_put_varint(out, c->producer_epoch);
  rc |= cmd_put_varint(out, c->producer_seq);
  rc |= cmd_put_bytes(out, c->fork_source);
  rc |= cmd_put_varint(out, c->fork_offset);
  rc |= cmd_put_varint(out, c->fork_sub);
  rc |= cmd_put_varint(out, c->fork_base);
  rc |= cmd_put_varint(out, c->fork_inc);
  if (c->type == CMD_TOUCH || c->type == CMD_FORK_ACQUIRE)
    rc |= cmd_put_varint(out, c->incarnation);
  if (c->type == CMD_APPEND && (c->flags & CMD_F_RECORD_MATCH))
    rc |= cmd_put_varint(out, c->record_match);
  if (c->type == CMD_CREATE && (c->flags & CMD_F_RECORD_BASE))
    rc |= cmd_put_varint(out, c->record_base);
  if (c->type == CMD_COLD) {
    rc |= cmd_put_varint(out, c->incarnation);
    rc |= cmd_put_varint(out, c->cold_start);
    rc |= cmd_put_varint(out, c->cold_end);
    rc |= cmd_put_bytes(out, c->object);
  }
  if (c->type == CMD_SNAPSHOT_PUT || c->type == CMD_RETAIN)
    rc |= cmd_put_varint(out, c->at);
  if (c->type == CMD_SNAPSHOT_PUT) {
    rc |= cmd_put_bytes(out, c->digest);
    rc |= cmd_put_bytes(out, c->match);
  }
  if (c->type == CMD_MULTI) { /* the ops are encoded already */
    rc |= cmd_put_varint(out, c->n_ops);
    rc |= buf_append(out, c->ops.ptr, c->ops.len);
  }
  if (c->type == CMD_ATTRS ||
      (c->type == CMD_CREATE && (c->flags & CMD_F_ATTRS)))
    rc |= cmd_put_bytes(out, c->attrs);
  if (rc != URSULA_OK) {
    out->len = start;
    return URSULA_ENOMEM;
  }
  return URSULA_OK;
}

/* An op of a MULTI: an APPEND of this version, of no other flags than
** an append's, with a path, and time_ms 0 (the MULTI's is the op's). */
static int cmd_op_ok(const struct cmd *op) {
  const uint32_t allowed = CMD_F_CLOSE | CMD_F_JSON | CMD_F_PRODUCER |
                           CMD_F_SEQ | CMD_F_CT;
  return op->type == CMD_APPEND && (op->flags & ~allowed) == 0 &&
         op->path.len > 0 && op->time_ms == 0;
}

/* (cmd_decode decodes a MULTI's ops with itself, one level deep: an op
** is an APPEND, its type byte checked before it is decoded) */
URSULA_PRIVATE int cmd_decode(const void *p, size_t len, struct cmd *c,
                              struct buf *bounds_store);

/* MULTI's ops at *q: n_ops, then that many ops, each checked whole
** (cmd_op_ok).  0, or -1: c is damage. */
static int cmd_get_ops(const unsigned char **q, const unsigned char *end,
                       struct cmd *c) {
  struct str rest;
  struct cmd op;
  uint64_t i;
  int rc = 0;
  if (cmd_get_varint(q, end, &c->n_ops) != 0 || c->n_ops == 0 ||
      c->n_ops > CMD_MULTI_MAX)
    return -1;
  c->ops.ptr = (const char *)*q;
  c->ops.len = (size_t)(end - *q);
  rest = c->ops;
  for (i = 0; i < c->n_ops && rc == 0; i++)
    rc = cmd_op_next(c, &rest, &op) == 1 ? 0 : -1;
  c->ops.len -= rest.len;
  *q += c->ops.len;
  return rc;
}

URSULA_PRIVATE int cmd_op_next(const struct cmd *multi, struct str *rest,
                               struct cmd *op) {
  const unsigned char *q = (const unsigned char *)rest->ptr;
  const unsigned char *end = q + rest->len;
  struct str one;
  struct buf none;
  if (rest->len == 0) return 0;
  memset(&none, 0, sizeof(none));
  if (cmd_get_bytes(&q, end, &one) != 0 || one.len < 2 ||
      (unsigned char)one.ptr[0] != CMD_VERSION || one.ptr[1] != CMD_APPEND ||
      cmd_decode(one.ptr, one.len, op, &none) != URSULA_OK || !cmd_op_ok(op))
    return -1;
  op->raw = multi->raw;
  op->time_ms = multi->time_ms;
  rest->len -= (size_t)((const char *)q - rest->ptr);
  rest->ptr = (const char *)q;
  return 1;
}

URSULA_PRIVATE int cmd_decode(const void *p, size_t len, struct cmd *c,
                              struct buf *bounds_store) {
  const unsigned char *q = (const unsigned char *)p, *end = q + len;
  uint64_t v = 0, i, prev = 0;
  int bad = 0, version;
  memset(c, 0, sizeof(*c));
  bounds_store->len = 0;
  if (len < 2 || (q[0] != CMD_VERSION && q[0] != 1) || q[1] < CMD_CREATE ||
      q[1] > (q[0] == 1 ? CMD_TOUCH : CMD_TYPE_MAX))
    return URSULA_ECORRUPT;
  version = q[0];
  c->type = q[1];
  c->raw = (const char *)p;
  q += 2;
  bad |= cmd_get_varint(&q, end, &v);
  bad |= v > UINT32_MAX ? -1 : 0; /* the flags are 32 bits */
  c->flags = (uint32_t)v;
  bad |= cmd_get_varint(&q, end, &c->time_ms);
  bad |= cmd_get_bytes(&q, end, &c->path);
  bad |= cmd_get_bytes(&q, end, &c->content_type);
  bad |= cmd_get_bytes(&q, end, &c->data);
  bad |= cmd_get_varint(&q, end, &c->n_msgs);
  bad |= cmd_get_varint(&q, end, &c->ttl_s);
  bad |= cmd_get_varint(&q, end, &c->expires_at_ms);
  bad |= cmd_get_bytes(&q, end, &c->expires_text);
  bad |= cmd_get_bytes(&q, end, &c->stream_seq);
  bad |= cmd_get_bytes(&q, end, &c->producer_id);
  bad |= cmd_get_varint(&q, end, &c->producer_epoch);
  bad |= cmd_get_varint(&q, end, &c->producer_seq);
  bad |= cmd_get_bytes(&q, end, &c->fork_source);
  bad |= cmd_get_varint(&q, end, &c->fork_offset);
  bad |= cmd_get_varint(&q, end, &c->fork_sub);
  if (version == CMD_VERSION) {
    bad |= cmd_get_varint(&q, end, &c->fork_base);
    bad |= cmd_get_varint(&q, end, &c->fork_inc);
    if (bad) return URSULA_ECORRUPT;
    v = 0;
  } else { /* version 1: the inherited bytes and their append ends */
    bad |= cmd_get_bytes(&q, end, &c->inherited);
    bad |= cmd_get_varint(&q, end, &v);
    if (bad || v > (uint64_t)(end - q)) return URSULA_ECORRUPT;
    if (buf_reserve(bounds_store, (size_t)v * sizeof(uint64_t)) != URSULA_OK)
      return URSULA_ENOMEM;
    for (i = 0; i < v; i++) {
      uint64_t d;
      if (cmd_get_varint(&q, end, &d) != 0) return URSULA_ECORRUPT;
      prev += d;
      memcpy(bounds_store->ptr + i * sizeof(uint64_t), &prev, sizeof(prev));
    }
  }
  /* the record fields: each only on its type, and only with its flag
  ** (a build that sees either flag on another type, or on a version-1
  ** entry, refuses the entry rather than misreading it) */
  if (((c->flags & CMD_F_RECORD_MATCH) &&
       (c->type != CMD_APPEND || version != CMD_VERSION ||
        cmd_get_varint(&q, end, &c->record_match))) ||
      ((c->flags & CMD_F_RECORD_BASE) &&
       (c->type != CMD_CREATE || version != CMD_VERSION ||
        cmd_get_varint(&q, end, &c->record_base))))
    return URSULA_ECORRUPT;
  if (c->type == CMD_COLD && (cmd_get_varint(&q, end, &c->incarnation) ||
                              cmd_get_varint(&q, end, &c->cold_start) ||
                              cmd_get_varint(&q, end, &c->cold_end) ||
                              cmd_get_bytes(&q, end, &c->object)))
    return URSULA_ECORRUPT;
  if ((c->type == CMD_TOUCH ||
       (c->type == CMD_FORK_ACQUIRE && version == CMD_VERSION)) &&
      cmd_get_varint(&q, end, &c->incarnation))
    return URSULA_ECORRUPT;
  if ((c->type == CMD_SNAPSHOT_PUT || c->type == CMD_RETAIN) &&
      cmd_get_varint(&q, end, &c->at))
    return URSULA_ECORRUPT;
  if (c->type == CMD_SNAPSHOT_PUT && (cmd_get_bytes(&q, end, &c->digest) ||
                                      cmd_get_bytes(&q, end, &c->match)))
    return URSULA_ECORRUPT;
  if (c->type == CMD_MULTI && cmd_get_ops(&q, end, c) != 0)
    return URSULA_ECORRUPT;
  if ((c->type == CMD_ATTRS ||
       (c->type == CMD_CREATE && (c->flags & CMD_F_ATTRS))) &&
      cmd_get_bytes(&q, end, &c->attrs))
    return URSULA_ECORRUPT;
  if (q != end) return URSULA_ECORRUPT;
  c->n_bounds = (size_t)v;
  c->bounds = (const uint64_t *)(void *)bounds_store->ptr;
  return URSULA_OK;
}
