/* unit_peer.c -- peer.c: the frame codec (round trips of random messages
** of every type with random records, every truncation, flipped bytes,
** each check of an APPEND's records), the HELLO checks one by one, two
** endpoints on two loops exchanging batches in order, a link that comes
** up once its peer listens, drops counted while a link is down; and the
** cluster flags (conf.c) with each refusal.  Every wait is bounded. */

#define UNIT_PEER_WAIT_MS 6000

static uint64_t unit_peer_rng = 0x9E3779B97F4A7C15ull;

static uint64_t unit_peer_rand(void) {
  uint64_t z = (unit_peer_rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* A value of a random size class, so varints of every length appear. */
static uint64_t unit_peer_value(void) {
  switch (unit_peer_rand() % 4) {
    case 0:
      return unit_peer_rand() % 128;
    case 1:
      return unit_peer_rand() % 70000;
    case 2:
      return unit_peer_rand() >> (unit_peer_rand() % 64);
    default:
      return unit_peer_rand();
  }
}

/* One WAL record as wal.c's format (its top comment) spells it, built
** here by hand: CRC32C of bytes 4.. of the header and the payload. */
static void unit_peer_record(struct buf *b, int type, uint64_t term,
                             uint64_t index, const void *payload, size_t n) {
  unsigned char h[WAL_RECORD_HEADER];
  uint32_t crc;
  memset(h, 0, sizeof(h));
  util_put32(h + 4, (uint32_t)n);
  h[8] = (unsigned char)type;
  util_put64(h + 16, term);
  util_put64(h + 24, index);
  crc = util_crc32c(util_crc32c(0, h + 4, WAL_RECORD_HEADER - 4), payload, n);
  util_put32(h, crc);
  buf_append(b, h, sizeof(h));
  if (n > 0) buf_append(b, payload, n);
}

static const struct peer_hello unit_peer_hello = {7, 2, 1, 0, 1, 64, 99, {0}};

/* A random message of type t; for an APPEND, its records into rec. */
static void unit_peer_msg(int t, struct raft_msg *m, struct buf *rec) {
  int i;
  memset(m, 0, sizeof(*m));
  m->cluster_id = unit_peer_hello.cluster_id;
  m->from = unit_peer_hello.from;
  m->to = unit_peer_hello.to;
  m->type = (uint8_t)t;
  m->flags = (uint8_t)(unit_peer_rand() % 16);
  m->term = unit_peer_value();
  m->index = unit_peer_value() >> 1;
  m->log_term = unit_peer_value();
  m->commit = unit_peer_value();
  m->hint = unit_peer_value();
  m->last = unit_peer_value();
  m->ctx = unit_peer_value();
  rec->len = 0;
  if (t != RAFT_MSG_APPEND) {
    m->n = (uint32_t)unit_peer_value();
    m->n_runs = (uint8_t)(unit_peer_rand() % (RAFT_MSG_RUNS + 1));
    for (i = 0; i < m->n_runs; i++) {
      m->runs[i].index = unit_peer_value();
      m->runs[i].term = unit_peer_value();
    }
    return;
  }
  m->n = (uint32_t)(unit_peer_rand() % 6);
  m->n_runs = 0;
  if (m->n > 0) {
    uint64_t term = m->log_term % 1000 + 1, k;
    int runs = 1 + (int)(unit_peer_rand() % RAFT_MSG_RUNS);
    m->runs[0].index = m->index + 1;
    m->runs[0].term = term;
    m->n_runs = 1;
    for (i = 1; i < runs; i++) {
      uint64_t at = m->runs[m->n_runs - 1].index + 1 + unit_peer_rand() % 2;
      if (at > m->index + m->n) break;
      m->runs[m->n_runs].index = at;
      m->runs[m->n_runs].term = term + (uint64_t)i;
      m->n_runs++;
    }
    for (k = 0; k < m->n; k++) {
      unsigned char payload[300];
      uint64_t index = m->index + 1 + k, t2 = m->runs[0].term;
      size_t n = (size_t)(unit_peer_rand() % sizeof(payload)), j;
      for (i = 0; i < m->n_runs; i++)
        if (m->runs[i].index <= index) t2 = m->runs[i].term;
      for (j = 0; j < n; j++) payload[j] = (unsigned char)unit_peer_rand();
      unit_peer_record(rec, 1 + (int)(unit_peer_rand() % 3), t2, index,
                       payload, n);
    }
  }
}

static int unit_peer_msg_eq(const struct raft_msg *a, const struct raft_msg *b) {
  int i;
  if (a->cluster_id != b->cluster_id || a->from != b->from || a->to != b->to ||
      a->term != b->term || a->index != b->index ||
      a->log_term != b->log_term || a->commit != b->commit ||
      a->hint != b->hint || a->last != b->last || a->ctx != b->ctx ||
      a->n != b->n || a->type != b->type || a->flags != b->flags ||
      a->n_runs != b->n_runs)
    return 0;
  for (i = 0; i < a->n_runs; i++)
    if (a->runs[i].index != b->runs[i].index ||
        a->runs[i].term != b->runs[i].term)
      return 0;
  return 1;
}

/* A BATCH frame of one item (m with its records) into out. */
static void unit_peer_batch1(struct buf *out, int group,
                             const struct raft_msg *m, const struct buf *rec) {
  size_t start;
  out->len = 0;
  ASSERT(peer_frame_reserve(out, &start) == URSULA_OK);
  ASSERT(peer_item_put(out, group, m, rec->ptr, rec->len) == URSULA_OK);
  peer_frame_seal(out, start, PEER_BATCH);
}

/* Decode a whole BATCH frame p[0..n): URSULA_OK and the item count, or
** the first error. */
static int unit_peer_decode(const void *p, size_t n, int *items) {
  struct peer_frame f;
  size_t used;
  const unsigned char *q, *end;
  const char *why = NULL;
  int rc = peer_frame_get(p, n, &f, &used, &why);
  *items = 0;
  if (rc != URSULA_OK) return rc;
  if (f.kind != PEER_BATCH) return URSULA_EINVAL;
  q = f.body;
  end = f.body + f.len;
  while (q < end) {
    struct peer_item it;
    rc = peer_item_get(&q, end, &unit_peer_hello, &it, &why);
    if (rc != URSULA_OK) {
      ASSERT(why != NULL);
      return rc;
    }
    ASSERT(it.records >= f.body && it.records + it.len <= end);
    (*items)++;
  }
  return URSULA_OK;
}

/* Random messages of every type, many per frame: encode, decode, compare
** field by field (records byte for byte). */
static void test_peer_codec_roundtrip(void) {
  int round, t;
  for (round = 0; round < 200; round++) {
    struct raft_msg msgs[12];
    struct buf recs[12], frame;
    int groups[12], i = 0;
    size_t start;
    memset(&frame, 0, sizeof(frame));
    ASSERT(peer_frame_reserve(&frame, &start) == URSULA_OK);
    for (t = RAFT_MSG_APPEND; t <= RAFT_MSG_READ_INDEX_RESP; t++, i++) {
      memset(&recs[i], 0, sizeof(recs[i]));
      unit_peer_msg(t, &msgs[i], &recs[i]);
      groups[i] = (int)(unit_peer_rand() % 64);
      ASSERT(peer_item_put(&frame, groups[i], &msgs[i], recs[i].ptr,
                           recs[i].len) == URSULA_OK);
    }
    peer_frame_seal(&frame, start, PEER_BATCH);
    {
      struct peer_frame f;
      size_t used = 0;
      const char *why = NULL;
      const unsigned char *q, *end;
      ASSERT(peer_frame_get(frame.ptr, frame.len, &f, &used, &why) ==
             URSULA_OK);
      ASSERT(used == frame.len && f.kind == PEER_BATCH);
      q = f.body;
      end = f.body + f.len;
      for (i = 0; i < 12; i++) {
        struct peer_item it;
        int rc = peer_item_get(&q, end, &unit_peer_hello, &it, &why);
        ASSERT(rc == URSULA_OK);
        if (rc != URSULA_OK) {
          printf("# type %d: %s\n", i + 1, why);
          break;
        }
        ASSERT(it.group == groups[i]);
        ASSERT(unit_peer_msg_eq(&it.msg, &msgs[i]));
        ASSERT(it.len == recs[i].len &&
               (it.len == 0 || memcmp(it.records, recs[i].ptr, it.len) == 0));
      }
      ASSERT(q == end);
    }
    for (i = 0; i < 12; i++) buf_free(&recs[i]);
    buf_free(&frame);
  }
  { /* HELLO and SNAP_CHUNK */
    struct peer_hello h = {1, 2, 3, 4, 5, 6, 0xFFFFFFFFFFFFFFFFull, {0}}, h2;
    struct peer_snap s, s2;
    struct peer_frame f;
    struct buf b;
    size_t used;
    const char *why;
    memset(&b, 0, sizeof(b));
    ASSERT(peer_hello_put(&b, &h) == URSULA_OK);
    ASSERT(b.len == PEER_HEADER + PEER_HELLO_BODY);
    ASSERT(peer_frame_get(b.ptr, b.len, &f, &used, &why) == URSULA_OK);
    ASSERT(peer_hello_get(&f, &h2, &why) == URSULA_OK);
    ASSERT(h2.cluster_id == 1 && h2.from == 2 && h2.to == 3 && h2.core == 4 &&
           h2.cores == 5 && h2.groups == 6 && h2.boot_id == h.boot_id);
    b.len = 0;
    memset(&s, 0, sizeof(s));
    s.group = 63;
    s.term = 5;
    s.snap_index = 1000;
    s.snap_term = 4;
    s.offset = 1 << 20;
    s.total = (1 << 20) + 5;
    s.last = 1;
    s.data = (const unsigned char *)"hello";
    s.len = 5;
    ASSERT(peer_snap_put(&b, &s) == URSULA_OK);
    ASSERT(peer_frame_get(b.ptr, b.len, &f, &used, &why) == URSULA_OK);
    ASSERT(peer_snap_get(&f, &unit_peer_hello, &s2, &why) == URSULA_OK);
    ASSERT(s2.group == 63 && s2.term == 5 && s2.snap_index == 1000 &&
           s2.snap_term == 4 && s2.offset == (1 << 20) &&
           s2.total == (1 << 20) + 5 && s2.last == 1 && s2.len == 5 &&
           memcmp(s2.data, "hello", 5) == 0);
    s.total = s.offset + 4; /* the bytes go past the total */
    b.len = 0;
    ASSERT(peer_snap_put(&b, &s) == URSULA_OK);
    ASSERT(peer_frame_get(b.ptr, b.len, &f, &used, &why) == URSULA_OK);
    ASSERT(peer_snap_get(&f, &unit_peer_hello, &s2, &why) == URSULA_ECORRUPT);
    buf_free(&b);
  }
}

/* Every strict prefix of a valid frame is "need more", read from a heap
** copy of exactly that size (ASan sees any read past it). */
static void test_peer_codec_truncation(void) {
  struct raft_msg m;
  struct buf rec, frame;
  size_t cut;
  memset(&rec, 0, sizeof(rec));
  memset(&frame, 0, sizeof(frame));
  do unit_peer_msg(RAFT_MSG_APPEND, &m, &rec);
  while (m.n < 3);
  unit_peer_batch1(&frame, 5, &m, &rec);
  for (cut = 0; cut < frame.len; cut++) {
    unsigned char *copy = (unsigned char *)malloc(cut > 0 ? cut : 1);
    struct peer_frame f;
    size_t used;
    const char *why;
    memcpy(copy, frame.ptr, cut);
    ASSERT(peer_frame_get(copy, cut, &f, &used, &why) == URSULA_EAGAIN);
    free(copy);
  }
  { /* and the item decoder over every cut of the body */
    const unsigned char *body = (const unsigned char *)frame.ptr + PEER_HEADER;
    size_t blen = frame.len - PEER_HEADER;
    for (cut = 0; cut < blen; cut++) {
      unsigned char *copy = (unsigned char *)malloc(cut > 0 ? cut : 1);
      const unsigned char *q = copy;
      struct peer_item it;
      const char *why;
      memcpy(copy, body, cut);
      ASSERT(peer_item_get(&q, copy + cut, &unit_peer_hello, &it, &why) ==
             URSULA_ECORRUPT);
      free(copy);
    }
  }
  buf_free(&rec);
  buf_free(&frame);
}

/* Flipped bytes: a protocol error or a valid (different) frame, never a
** crash; with the CRC made right again, the body's decoders see them. */
static void test_peer_codec_flips(void) {
  struct raft_msg m;
  struct buf rec, frame;
  int round, items, ok = 0, bad = 0;
  memset(&rec, 0, sizeof(rec));
  memset(&frame, 0, sizeof(frame));
  for (round = 0; round < 3000; round++) {
    size_t at;
    int rc;
    unit_peer_msg(1 + (int)(unit_peer_rand() % 12), &m, &rec);
    unit_peer_batch1(&frame, 5, &m, &rec);
    at = (size_t)(unit_peer_rand() % frame.len);
    frame.ptr[at] ^= (char)(1 + unit_peer_rand() % 255);
    rc = unit_peer_decode(frame.ptr, frame.len, &items);
    ASSERT(rc == URSULA_ECORRUPT || rc == URSULA_EAGAIN || rc == URSULA_EINVAL);
    if (at >= PEER_HEADER) { /* the CRC made right: the body's checks */
      peer_frame_seal(&frame, 0, PEER_BATCH);
      rc = unit_peer_decode(frame.ptr, frame.len, &items);
      ASSERT(rc == URSULA_OK || rc == URSULA_ECORRUPT);
      if (rc == URSULA_OK) ok++;
      else bad++;
    }
  }
  ASSERT(bad > 1000); /* the checks do catch most flips */
  ASSERT(ok > 0);     /* and a flip in a value is a valid other frame */
  buf_free(&rec);
  buf_free(&frame);
}

/* Build an APPEND item with n records of the given terms at indexes from
** first, then decode it: what peer_item_get returns. */
static int unit_peer_append_case(uint64_t prev, uint32_t n, const uint64_t *rec_index,
                                 const uint64_t *rec_term, int n_recs,
                                 int flip_payload, const char **why) {
  struct raft_msg m;
  struct buf rec, frame;
  const unsigned char *q, *end;
  struct peer_item it;
  int i, rc;
  memset(&m, 0, sizeof(m));
  memset(&rec, 0, sizeof(rec));
  memset(&frame, 0, sizeof(frame));
  m.type = RAFT_MSG_APPEND;
  m.from = unit_peer_hello.from;
  m.index = prev;
  m.n = n;
  m.n_runs = 2;
  m.runs[0].index = prev + 1;
  m.runs[0].term = 3;
  m.runs[1].index = prev + 2;
  m.runs[1].term = 4;
  for (i = 0; i < n_recs; i++)
    unit_peer_record(&rec, WAL_CMD, rec_term[i], rec_index[i], "abc", 3);
  if (flip_payload) rec.ptr[rec.len - 1] ^= 1;
  ASSERT(peer_item_put(&frame, 1, &m, rec.ptr, rec.len) == URSULA_OK);
  q = (const unsigned char *)frame.ptr;
  end = q + frame.len;
  rc = peer_item_get(&q, end, &unit_peer_hello, &it, why);
  buf_free(&rec);
  buf_free(&frame);
  return rc;
}

/* Each check of an APPEND's records, and of the frame and item headers. */
static void test_peer_codec_checks(void) {
  const uint64_t idx[3] = {11, 12, 13}, term[3] = {3, 4, 4};
  const uint64_t idx_gap[3] = {11, 13, 14}, term_bad[3] = {3, 3, 4};
  const char *why = NULL;
  ASSERT(unit_peer_append_case(10, 3, idx, term, 3, 0, &why) == URSULA_OK);
  ASSERT(unit_peer_append_case(10, 3, idx, term, 3, 1, &why) ==
         URSULA_ECORRUPT);
  ASSERT(strstr(why, "damaged") != NULL);
  ASSERT(unit_peer_append_case(10, 3, idx_gap, term, 3, 0, &why) ==
         URSULA_ECORRUPT);
  ASSERT(strstr(why, "index") != NULL);
  ASSERT(unit_peer_append_case(10, 3, idx, term_bad, 3, 0, &why) ==
         URSULA_ECORRUPT);
  ASSERT(strstr(why, "term") != NULL);
  ASSERT(unit_peer_append_case(10, 3, idx, term, 2, 0, &why) ==
         URSULA_ECORRUPT); /* fewer records than n */
  ASSERT(unit_peer_append_case(10, 2, idx, term, 3, 0, &why) ==
         URSULA_ECORRUPT); /* more */
  ASSERT(strstr(why, "more") != NULL);
  ASSERT(unit_peer_append_case(9, 3, idx, term, 3, 0, &why) ==
         URSULA_ECORRUPT); /* runs[0] not at index + 1 */
  { /* headers: size bound (before the body comes), version, kind, flags,
    ** a reserved item kind, a varint not in its shortest form, from */
    unsigned char h[PEER_HEADER + 8];
    struct peer_frame f;
    struct peer_item it;
    struct buf b;
    size_t used, start;
    const unsigned char *q;
    memset(h, 0, sizeof(h));
    util_put32(h, PEER_MAX_FRAME + 1);
    h[4] = 2;
    h[5] = PEER_BATCH;
    ASSERT(peer_frame_get(h, PEER_HEADER, &f, &used, &why) == URSULA_ECORRUPT);
    util_put32(h, 0);
    h[4] = 1; /* version 1 (before CHALLENGE) and 3 are not ours */
    ASSERT(peer_frame_get(h, PEER_HEADER, &f, &used, &why) == URSULA_ECORRUPT);
    h[4] = 3;
    ASSERT(peer_frame_get(h, PEER_HEADER, &f, &used, &why) == URSULA_ECORRUPT);
    h[4] = 2;
    h[5] = 5;
    ASSERT(peer_frame_get(h, PEER_HEADER, &f, &used, &why) == URSULA_ECORRUPT);
    h[5] = PEER_BATCH;
    h[6] = 1;
    ASSERT(peer_frame_get(h, PEER_HEADER, &f, &used, &why) == URSULA_ECORRUPT);
    h[6] = 0;
    ASSERT(peer_frame_get(h, PEER_HEADER, &f, &used, &why) == URSULA_ECORRUPT);
    ASSERT(strstr(why, "CRC") != NULL);
    memset(&b, 0, sizeof(b));
    ASSERT(peer_frame_reserve(&b, &start) == URSULA_OK);
    peer_frame_seal(&b, start, PEER_BATCH); /* an empty batch: valid */
    ASSERT(peer_frame_get(b.ptr, b.len, &f, &used, &why) == URSULA_OK);
    ASSERT(f.len == 0 && used == PEER_HEADER);
    b.len = 0;
    buf_append(&b, "\x04", 1); /* a reserved item kind */
    q = (const unsigned char *)b.ptr;
    ASSERT(peer_item_get(&q, q + b.len, &unit_peer_hello, &it, &why) ==
           URSULA_ECORRUPT);
    ASSERT(strstr(why, "reserved") != NULL);
    { /* flags: bit 3 (LEAVING) is known; bit 4 is refused */
      struct raft_msg m;
      memset(&m, 0, sizeof(m));
      m.type = RAFT_MSG_HEARTBEAT;
      m.from = unit_peer_hello.from;
      m.flags = RAFT_F_LEAVING;
      b.len = 0;
      ASSERT(peer_item_put(&b, 1, &m, NULL, 0) == URSULA_OK);
      q = (const unsigned char *)b.ptr;
      ASSERT(peer_item_get(&q, q + b.len, &unit_peer_hello, &it, &why) ==
                 URSULA_OK &&
             it.msg.flags == RAFT_F_LEAVING);
      m.flags = 16;
      b.len = 0;
      ASSERT(peer_item_put(&b, 1, &m, NULL, 0) == URSULA_OK);
      q = (const unsigned char *)b.ptr;
      ASSERT(peer_item_get(&q, q + b.len, &unit_peer_hello, &it, &why) ==
             URSULA_ECORRUPT);
    }
    { /* FWD and FWD_REPLY round-trip; a request id 0 is refused */
      struct peer_item w, r;
      memset(&w, 0, sizeof(w));
      w.kind = PEER_ITEM_FWD;
      w.group = 5;
      w.req = 300;
      w.records = (const unsigned char *)"cmd-bytes";
      w.len = 9;
      b.len = 0;
      ASSERT(peer_item_encode(&b, &w) == URSULA_OK);
      q = (const unsigned char *)b.ptr;
      ASSERT(peer_item_get(&q, q + b.len, &unit_peer_hello, &r, &why) ==
             URSULA_OK);
      ASSERT(r.kind == PEER_ITEM_FWD && r.group == 5 && r.req == 300 &&
             r.len == 9 && memcmp(r.records, "cmd-bytes", 9) == 0 &&
             q == (const unsigned char *)b.ptr + b.len);
      w.kind = PEER_ITEM_FWD_REPLY;
      w.outcome = PEER_FWD_ACCEPTED;
      w.term = 7;
      w.index = 1u << 20;
      b.len = 0;
      ASSERT(peer_item_encode(&b, &w) == URSULA_OK);
      q = (const unsigned char *)b.ptr;
      ASSERT(peer_item_get(&q, q + b.len, &unit_peer_hello, &r, &why) ==
             URSULA_OK);
      ASSERT(r.kind == PEER_ITEM_FWD_REPLY && r.req == 300 &&
             r.outcome == PEER_FWD_ACCEPTED && r.term == 7 &&
             r.index == (1u << 20));
      b.len = 0;
      buf_append(&b, "\x03\x05\x00\x00\x07\x01", 6); /* req 0 */
      q = (const unsigned char *)b.ptr;
      ASSERT(peer_item_get(&q, q + b.len, &unit_peer_hello, &r, &why) ==
             URSULA_ECORRUPT);
      b.len = 0;
      buf_append(&b, "\x03\x05\x09\x02\x07\x01", 6); /* outcome 2 */
      q = (const unsigned char *)b.ptr;
      ASSERT(peer_item_get(&q, q + b.len, &unit_peer_hello, &r, &why) ==
             URSULA_ECORRUPT);
    }
    b.len = 0;
    buf_append(&b, "\x01\x81\x00", 3); /* group 1 in two bytes */
    q = (const unsigned char *)b.ptr;
    ASSERT(peer_item_get(&q, q + b.len, &unit_peer_hello, &it, &why) ==
           URSULA_ECORRUPT);
    b.len = 0;
    {
      struct raft_msg m;
      memset(&m, 0, sizeof(m));
      m.type = RAFT_MSG_VOTE;
      m.from = 3; /* not the HELLO's */
      ASSERT(peer_item_put(&b, 1, &m, NULL, 0) == URSULA_OK);
      q = (const unsigned char *)b.ptr;
      ASSERT(peer_item_get(&q, q + b.len, &unit_peer_hello, &it, &why) ==
             URSULA_ECORRUPT);
      b.len = 0;
      m.from = 2;
      ASSERT(peer_item_put(&b, 64, &m, NULL, 0) == URSULA_OK); /* group */
      q = (const unsigned char *)b.ptr;
      ASSERT(peer_item_get(&q, q + b.len, &unit_peer_hello, &it, &why) ==
             URSULA_ECORRUPT);
      b.len = 0;
      ASSERT(peer_item_put(&b, 63, &m, "x", 1) == URSULA_OK); /* records */
      q = (const unsigned char *)b.ptr;
      ASSERT(peer_item_get(&q, q + b.len, &unit_peer_hello, &it, &why) ==
             URSULA_ECORRUPT);
      b.len = 0;
      ASSERT(peer_item_put(&b, 63, &m, NULL, 0) == URSULA_OK);
      q = (const unsigned char *)b.ptr;
      ASSERT(peer_item_get(&q, q + b.len, &unit_peer_hello, &it, &why) ==
             URSULA_OK);
      ASSERT(it.msg.cluster_id == 7 && it.msg.to == 1 && it.group == 63);
    }
    buf_free(&b);
  }
}

/* ------------------------------------------------------------ endpoints */

struct unit_peer_sink {
  int n;
  uint64_t next_ctx; /* the ctx of the next message expected */
  int out_of_order;
  int bad_records;
};

static void unit_peer_on_raft(void *arg, int core, int group,
                              const struct raft_msg *m, const void *records,
                              size_t len) {
  struct unit_peer_sink *s = (struct unit_peer_sink *)arg;
  (void)core;
  if (m->ctx != s->next_ctx || group != (int)(m->ctx % 16)) s->out_of_order++;
  s->next_ctx = m->ctx + 1;
  if (m->type == RAFT_MSG_APPEND &&
      (len < WAL_RECORD_HEADER || records == NULL))
    s->bad_records++;
  s->n++;
}

/* Node `id` of a two-node config (1 and 2, both on 127.0.0.1). */
static struct peer *unit_peer_open(int id, struct loop *l,
                                   struct unit_peer_sink *sink, int port,
                                   uint64_t cluster) {
  struct peer_config c;
  struct peer *p = NULL;
  char err[URSULA_ERRMSG_LEN];
  memset(&c, 0, sizeof(c));
  c.cluster_id = cluster;
  c.node_id = id;
  c.n_nodes = 2;
  c.nodes[0].id = 1;
  c.nodes[1].id = 2;
  snprintf(c.nodes[0].host, sizeof(c.nodes[0].host), "127.0.0.1");
  snprintf(c.nodes[1].host, sizeof(c.nodes[1].host), "127.0.0.1");
  snprintf(c.listen_host, sizeof(c.listen_host), "127.0.0.1");
  snprintf(c.bind_host, sizeof(c.bind_host), "127.0.0.1");
  c.listen_port = port;
  c.n_cores = 1;
  c.n_groups = 16;
  c.on_raft = unit_peer_on_raft;
  c.arg = sink;
  err[0] = '\0';
  ASSERT(peer_open(&p, &c, &l, err) == URSULA_OK);
  if (p == NULL) printf("# peer_open: %s\n", err);
  return p;
}

/* Turn both loops until cond(arg) holds or UNIT_PEER_WAIT_MS passed. */
static int unit_peer_run(struct loop *a, struct loop *b,
                         int (*cond)(void *), void *arg) {
  uint64_t end = os_now_ms() + UNIT_PEER_WAIT_MS;
  while (os_now_ms() < end) {
    if (cond(arg)) return 1;
    if (a != NULL) loop_run_once(a, 5, NULL);
    if (b != NULL) loop_run_once(b, 5, NULL);
  }
  return cond(arg);
}

struct unit_peer_pair {
  struct peer *p1, *p2;
  struct unit_peer_sink s1, s2;
  int want1, want2; /* messages each sink must have */
};

static int unit_peer_both_up(void *arg) {
  struct unit_peer_pair *x = (struct unit_peer_pair *)arg;
  struct peer_link_stats a, b;
  peer_stats(x->p1, 0, 2, &a);
  peer_stats(x->p2, 0, 1, &b);
  return a.up && b.up && x->p1->cores[0].links[1].announced &&
         x->p2->cores[0].links[0].announced;
}

static int unit_peer_got_all(void *arg) {
  struct unit_peer_pair *x = (struct unit_peer_pair *)arg;
  return x->s1.n >= x->want1 && x->s2.n >= x->want2;
}

/* Send count messages from p (node from) to node to, ctx first.., in
** batches of 10 per flush; the last is an APPEND with records. */
static void unit_peer_send_many(struct peer *p, int from, int to,
                                uint64_t first, int count) {
  struct buf rec;
  int i;
  memset(&rec, 0, sizeof(rec));
  for (i = 0; i < count; i++) {
    struct raft_msg m;
    memset(&m, 0, sizeof(m));
    m.from = (uint64_t)from;
    m.type = RAFT_MSG_HEARTBEAT;
    m.term = 3;
    m.ctx = first + (uint64_t)i;
    rec.len = 0;
    if (i % 7 == 0) { /* an APPEND of two entries */
      m.type = RAFT_MSG_APPEND;
      m.index = 100 + (uint64_t)i;
      m.n = 2;
      m.n_runs = 1;
      m.runs[0].index = m.index + 1;
      m.runs[0].term = 3;
      unit_peer_record(&rec, WAL_CMD, 3, m.index + 1, "payload-one", 11);
      unit_peer_record(&rec, WAL_NOOP, 3, m.index + 2, "", 0);
    }
    ASSERT(peer_send(p, 0, to, (int)(m.ctx % 16), &m, rec.ptr, rec.len) ==
           URSULA_OK);
    if (i % 10 == 9) peer_flush(p, 0);
  }
  peer_flush(p, 0);
  buf_free(&rec);
}

/* Two endpoints on two loops: links come up both ways, batches arrive in
** order with their records, and the counters agree. */
static void test_peer_link_exchange(void) {
  struct loop *l1 = unit_loop_open(), *l2 = unit_loop_open();
  struct unit_peer_pair x;
  struct peer_link_stats a, b;
  char err[URSULA_ERRMSG_LEN];
  memset(&x, 0, sizeof(x));
  x.p1 = unit_peer_open(1, l1, &x.s1, 0, 7);
  x.p2 = unit_peer_open(2, l2, &x.s2, 0, 7);
  if (x.p1 == NULL || x.p2 == NULL) return;
  peer_set_port(x.p1, 2, peer_port(x.p2));
  peer_set_port(x.p2, 1, peer_port(x.p1));
  ASSERT(peer_start(x.p1, err) == URSULA_OK);
  ASSERT(peer_start(x.p2, err) == URSULA_OK);
  ASSERT(unit_peer_run(l1, l2, unit_peer_both_up, &x));
  unit_peer_send_many(x.p1, 1, 2, 0, 500);
  unit_peer_send_many(x.p2, 2, 1, 0, 300);
  x.want1 = 300;
  x.want2 = 500;
  ASSERT(unit_peer_run(l1, l2, unit_peer_got_all, &x));
  ASSERT(x.s2.n == 500 && x.s2.out_of_order == 0 && x.s2.bad_records == 0);
  ASSERT(x.s1.n == 300 && x.s1.out_of_order == 0 && x.s1.bad_records == 0);
  peer_stats(x.p1, 0, 2, &a);
  peer_stats(x.p2, 0, 1, &b);
  ASSERT(a.up && a.items_out == 500 && a.dropped == 0);
  ASSERT(a.frames_out >= 50 && a.bytes_out > 0);
  ASSERT(b.items_in == 500 && b.frames_in >= 50 && b.bytes_in > 0);
  ASSERT(a.items_in == 300 && b.items_out == 300);
  ASSERT(peer_send(x.p1, 0, 1, 0, NULL, NULL, 0) == URSULA_EINVAL); /* self */
  ASSERT(peer_send(x.p1, 0, 3, 0, NULL, NULL, 0) == URSULA_EINVAL);
  peer_close(x.p1);
  peer_close(x.p2);
  loop_close(l1);
  loop_close(l2);
}

/* Frames larger than the receive buffer's first steps (an APPEND of one
** 1 000 000-byte entry, twelve times, queued at the sender first): a
** read may fill the buffer before a frame is whole, and all twelve still
** arrive intact.  (Run
** under ASan, make test-unit: reading into the byte a struct buf keeps
** for its NUL was a heap overflow in buf_consume.) */
static void test_peer_link_large(void) {
  struct loop *l1 = unit_loop_open(), *l2 = unit_loop_open();
  struct unit_peer_pair x;
  struct buf rec;
  char err[URSULA_ERRMSG_LEN], *big;
  int i;
  memset(&x, 0, sizeof(x));
  memset(&rec, 0, sizeof(rec));
  big = (char *)malloc(1000000);
  x.p1 = unit_peer_open(1, l1, &x.s1, 0, 7);
  x.p2 = unit_peer_open(2, l2, &x.s2, 0, 7);
  if (x.p1 == NULL || x.p2 == NULL || big == NULL) goto done;
  memset(big, 'x', 1000000);
  peer_set_port(x.p1, 2, peer_port(x.p2));
  peer_set_port(x.p2, 1, peer_port(x.p1));
  ASSERT(peer_start(x.p1, err) == URSULA_OK);
  ASSERT(peer_start(x.p2, err) == URSULA_OK);
  ASSERT(unit_peer_run(l1, l2, unit_peer_both_up, &x));
  for (i = 0; i < 12; i++) {
    struct raft_msg m;
    memset(&m, 0, sizeof(m));
    m.from = 1;
    m.type = RAFT_MSG_APPEND;
    m.term = 3;
    m.ctx = (uint64_t)i;
    m.index = 10 + (uint64_t)i;
    m.n = 1;
    m.n_runs = 1;
    m.runs[0].index = m.index + 1;
    m.runs[0].term = 3;
    rec.len = 0;
    unit_peer_record(&rec, WAL_CMD, 3, m.index + 1, big, 1000000);
    ASSERT(peer_send(x.p1, 0, 2, (int)(m.ctx % 16), &m, rec.ptr, rec.len) ==
           URSULA_OK);
    peer_flush(x.p1, 0);
  }
  for (i = 0; i < 40; i++) /* the sender alone: the bytes queue up there */
    loop_run_once(l1, 5, NULL);
  x.want2 = 12;
  ASSERT(unit_peer_run(l1, l2, unit_peer_got_all, &x));
  ASSERT(x.s2.n == 12 && x.s2.out_of_order == 0 && x.s2.bad_records == 0);
done:
  free(big);
  buf_free(&rec);
  if (x.p1 != NULL) peer_close(x.p1);
  if (x.p2 != NULL) peer_close(x.p2);
  loop_close(l1);
  loop_close(l2);
}

static int unit_peer_one_up(void *arg) {
  struct unit_peer_pair *x = (struct unit_peer_pair *)arg;
  struct peer_link_stats a;
  peer_stats(x->p1, 0, 2, &a);
  return a.up && x->p1->cores[0].links[1].announced;
}

static int unit_peer_never(void *arg) {
  (void)arg;
  return 0;
}

/* A link to a port where nothing listens is down, drops (and counts) what
** is sent, and comes up once the listener appears there. */
static void test_peer_link_reconnect(void) {
  struct loop *l1 = unit_loop_open(), *l2 = unit_loop_open();
  struct unit_peer_pair x;
  struct peer_link_stats a;
  struct raft_msg m;
  char err[URSULA_ERRMSG_LEN];
  int port = 0, fd;
  uint64_t end;
  memset(&x, 0, sizeof(x));
  fd = net_listen("127.0.0.1", 0, &port, err); /* a free port, then closed */
  ASSERT(fd >= 0);
  close(fd);
  x.p1 = unit_peer_open(1, l1, &x.s1, 0, 7);
  if (x.p1 == NULL) return;
  peer_set_port(x.p1, 2, port);
  ASSERT(peer_start(x.p1, err) == URSULA_OK);
  end = os_now_ms() + 400;
  while (os_now_ms() < end) loop_run_once(l1, 5, NULL);
  peer_stats(x.p1, 0, 2, &a);
  ASSERT(!a.up);
  memset(&m, 0, sizeof(m));
  m.from = 1;
  m.type = RAFT_MSG_VOTE;
  ASSERT(peer_send(x.p1, 0, 2, 0, &m, NULL, 0) == URSULA_EAGAIN);
  ASSERT(peer_send(x.p1, 0, 2, 1, &m, NULL, 0) == URSULA_EAGAIN);
  peer_flush(x.p1, 0);
  peer_stats(x.p1, 0, 2, &a);
  ASSERT(a.dropped == 2 && a.items_out == 0 && a.frames_out == 0);
  x.p2 = unit_peer_open(2, l2, &x.s2, port, 7); /* the listener appears */
  if (x.p2 == NULL) return;
  ASSERT(unit_peer_run(l1, l2, unit_peer_one_up, &x));
  unit_peer_send_many(x.p1, 1, 2, 0, 20);
  x.want2 = 20;
  ASSERT(unit_peer_run(l1, l2, unit_peer_got_all, &x));
  ASSERT(x.s2.n == 20 && x.s2.out_of_order == 0);
  /* the peer goes away: the link goes down, and sends are dropped */
  peer_close(x.p2);
  x.p2 = NULL;
  end = os_now_ms() + UNIT_PEER_WAIT_MS;
  do {
    loop_run_once(l1, 5, NULL);
    peer_stats(x.p1, 0, 2, &a);
  } while (a.up && os_now_ms() < end);
  ASSERT(!a.up);
  ASSERT(peer_send(x.p1, 0, 2, 0, &m, NULL, 0) == URSULA_EAGAIN);
  (void)unit_peer_never;
  peer_close(x.p1);
  loop_close(l1);
  loop_close(l2);
}

/* Each refusal of peer_check_hello, and what it accepts. */
static void test_peer_hello_checks(void) {
  struct loop *l = unit_loop_open();
  struct unit_peer_sink s;
  struct peer *p;
  struct peer_hello h, ok;
  char why[400];
  memset(&s, 0, sizeof(s));
  p = unit_peer_open(1, l, &s, 0, 7);
  if (p == NULL) return;
  ok.cluster_id = 7;
  ok.from = 2;
  ok.to = 1;
  ok.core = 0;
  ok.cores = 1;
  ok.groups = 16;
  ok.boot_id = 1111;
  h = ok;
  h.cluster_id = 3;
  ASSERT(peer_check_hello(p, &h, 1000, why, sizeof(why)) != NULL);
  ASSERT(strstr(why, "cluster id 3 is not ours (7)") != NULL);
  h = ok;
  h.to = 4;
  ASSERT(peer_check_hello(p, &h, 1000, why, sizeof(why)) != NULL);
  ASSERT(strstr(why, "says it is node 2 to node 4, but this is node 1") != NULL);
  h = ok;
  h.from = 1;
  ASSERT(peer_check_hello(p, &h, 1000, why, sizeof(why)) != NULL);
  ASSERT(strstr(why, "duplicate node id") != NULL);
  h = ok;
  h.from = 9;
  ASSERT(peer_check_hello(p, &h, 1000, why, sizeof(why)) != NULL);
  ASSERT(strstr(why, "node 9 is not a configured peer") != NULL);
  h = ok;
  h.groups = 64;
  ASSERT(peer_check_hello(p, &h, 1000, why, sizeof(why)) != NULL);
  ASSERT(strstr(why, "node 2 has 64 groups, this node 16") != NULL);
  h = ok;
  h.cores = 2;
  ASSERT(peer_check_hello(p, &h, 1000, why, sizeof(why)) != NULL);
  ASSERT(strstr(why, "node 2 has 2 cores") != NULL);
  h = ok;
  h.core = 1;
  ASSERT(peer_check_hello(p, &h, 1000, why, sizeof(why)) != NULL);
  /* accepted; the same boot again (a reconnect) too */
  ASSERT(peer_check_hello(p, &ok, 1000, why, sizeof(why)) == NULL);
  ASSERT(peer_check_hello(p, &ok, 1100, why, sizeof(why)) == NULL);
  /* another process as node 2 while node 2's connection is alive */
  h = ok;
  h.boot_id = 2222;
  ASSERT(peer_check_hello(p, &h, 2000, why, sizeof(why)) != NULL);
  ASSERT(strstr(why, "connected already from another process") != NULL);
  /* silent past PEER_STALE_MS: taken for a restart, replaced */
  ASSERT(peer_check_hello(p, &h, 1100 + PEER_STALE_MS, why, sizeof(why)) ==
         NULL);
  /* and closed connections of the old boot do not count */
  peer_seen_closed(p, 1, 0, 1111);
  ASSERT(peer_seen_of(p, 1, 0)->open == 1);
  peer_seen_closed(p, 1, 0, 2222);
  h.boot_id = 3333;
  ASSERT(peer_check_hello(p, &h, 1200 + PEER_STALE_MS, why, sizeof(why)) ==
         NULL);
  peer_close(p);
  loop_close(l);
}

/* Two endpoints of different clusters: the link never comes up, and the
** listener refused it (its table remembers the cause). */
static void test_peer_link_refused(void) {
  struct loop *l1 = unit_loop_open(), *l2 = unit_loop_open();
  struct unit_peer_pair x;
  struct peer_link_stats a;
  char err[URSULA_ERRMSG_LEN];
  uint64_t end;
  memset(&x, 0, sizeof(x));
  x.p1 = unit_peer_open(1, l1, &x.s1, 0, 7);
  x.p2 = unit_peer_open(2, l2, &x.s2, 0, 8);
  if (x.p1 == NULL || x.p2 == NULL) return;
  peer_set_port(x.p1, 2, peer_port(x.p2));
  ASSERT(peer_start(x.p1, err) == URSULA_OK);
  end = os_now_ms() + 800;
  while (os_now_ms() < end) {
    loop_run_once(l1, 5, NULL);
    loop_run_once(l2, 5, NULL);
  }
  peer_stats(x.p1, 0, 2, &a);
  ASSERT(!x.p1->cores[0].links[1].announced);
  ASSERT(strstr(x.p1->cores[0].links[1].cause, "refused") != NULL);
  ASSERT(strstr(x.p2->refusals[0].why, "is not ours") != NULL);
  ASSERT(x.p2->cores[0].ins == NULL);
  peer_close(x.p1);
  peer_close(x.p2);
  loop_close(l1);
  loop_close(l2);
}

/* AUTHENTICATION (peer.c): the CHALLENGE's codec; a HELLO's MAC is
** HMAC-SHA256 (RFC 2104) keyed with the secret over "URSAUTH1", the
** nonce and the HELLO's first 52 bytes as they go on the wire -- built
** here from the wire bytes peer_hello_put() wrote, so the test follows
** the format written at the top of peer.c; and the MAC checks fail for
** another key, another nonce, any field changed, any bit of the MAC. */
static void test_peer_auth_codec(void) {
  static const char key[] = "a secret of the cluster";
  unsigned char nonce[PEER_NONCE], got[PEER_NONCE], msg[8 + PEER_NONCE + 52],
      want[PEER_MAC];
  struct peer_hello h = {7, 1, 2, 3, 4, 64, 0x0102030405060708ull, {0}}, h2;
  struct peer_frame f;
  struct buf b;
  size_t used;
  const char *why;
  int i;
  for (i = 0; i < PEER_NONCE; i++) nonce[i] = (unsigned char)(i * 7 + 1);
  memset(&b, 0, sizeof(b));
  ASSERT(peer_challenge_put(&b, nonce) == URSULA_OK);
  ASSERT(b.len == PEER_HEADER + PEER_NONCE && b.ptr[4] == 2 && b.ptr[5] == 4);
  ASSERT(peer_frame_get(b.ptr, b.len, &f, &used, &why) == URSULA_OK);
  ASSERT(peer_challenge_get(&f, got, &why) == URSULA_OK);
  ASSERT(memcmp(got, nonce, PEER_NONCE) == 0);
  b.len = 0;
  peer_hello_sign(&h, nonce, key, sizeof(key) - 1);
  ASSERT(peer_hello_put(&b, &h) == URSULA_OK);
  ASSERT(b.len == PEER_HEADER + 84);
  memcpy(msg, "URSAUTH1", 8);
  memcpy(msg + 8, nonce, PEER_NONCE);
  memcpy(msg + 8 + PEER_NONCE, b.ptr + PEER_HEADER, 52);
  crypto_hmac_sha256(key, sizeof(key) - 1, msg, sizeof(msg), want);
  ASSERT(memcmp(b.ptr + PEER_HEADER + 52, want, PEER_MAC) == 0);
  ASSERT(peer_frame_get(b.ptr, b.len, &f, &used, &why) == URSULA_OK);
  ASSERT(peer_hello_get(&f, &h2, &why) == URSULA_OK);
  ASSERT(memcmp(h2.mac, want, PEER_MAC) == 0);
  ASSERT(peer_hello_verify(&h2, nonce, key, sizeof(key) - 1));
  ASSERT(!peer_hello_verify(&h2, nonce, key, sizeof(key) - 2));
  ASSERT(!peer_hello_verify(&h2, nonce, "", 0));
  nonce[31] ^= 1;
  ASSERT(!peer_hello_verify(&h2, nonce, key, sizeof(key) - 1));
  nonce[31] ^= 1;
  for (i = 0; i < 7; i++) {
    struct peer_hello x = h2;
    switch (i) {
      case 0: x.cluster_id++; break;
      case 1: x.from++; break;
      case 2: x.to++; break;
      case 3: x.core++; break;
      case 4: x.cores++; break;
      case 5: x.groups++; break;
      default: x.boot_id++; break;
    }
    ASSERT(!peer_hello_verify(&x, nonce, key, sizeof(key) - 1));
  }
  for (i = 0; i < PEER_MAC * 8; i++) {
    struct peer_hello x = h2;
    x.mac[i / 8] ^= (unsigned char)(1u << (i % 8));
    ASSERT(!peer_hello_verify(&x, nonce, key, sizeof(key) - 1));
  }
  peer_hello_sign(&h, nonce, "", 0); /* no secret: the empty key */
  ASSERT(peer_hello_verify(&h, nonce, "", 0));
  ASSERT(!peer_hello_verify(&h, nonce, key, sizeof(key) - 1));
  b.len = 0; /* a CHALLENGE of another size */
  ASSERT(peer_challenge_put(&b, nonce) == URSULA_OK);
  ASSERT(peer_frame_get(b.ptr, b.len, &f, &used, &why) == URSULA_OK);
  f.len = 31;
  ASSERT(peer_challenge_get(&f, got, &why) == URSULA_ECORRUPT);
  buf_free(&b);
}

/* Two endpoints with secrets k1, k2 (NULL: none): whether the link 1->2
** comes up, and if not, what node 2 says. */
static void unit_peer_auth_pair(const char *k1, const char *k2, int up) {
  struct loop *l1 = unit_loop_open(), *l2 = unit_loop_open();
  struct unit_peer_pair x;
  char err[URSULA_ERRMSG_LEN];
  uint64_t end;
  memset(&x, 0, sizeof(x));
  x.p1 = unit_peer_open(1, l1, &x.s1, 0, 7);
  x.p2 = unit_peer_open(2, l2, &x.s2, 0, 7);
  if (x.p1 == NULL || x.p2 == NULL) return;
  if (k1 != NULL) {
    memcpy(x.p1->cfg.secret, k1, strlen(k1));
    x.p1->cfg.secret_len = strlen(k1);
  }
  if (k2 != NULL) {
    memcpy(x.p2->cfg.secret, k2, strlen(k2));
    x.p2->cfg.secret_len = strlen(k2);
  }
  peer_set_port(x.p1, 2, peer_port(x.p2));
  peer_set_port(x.p2, 1, peer_port(x.p1));
  ASSERT(peer_start(x.p1, err) == URSULA_OK);
  ASSERT(peer_start(x.p2, err) == URSULA_OK);
  if (up) {
    ASSERT(unit_peer_run(l1, l2, unit_peer_both_up, &x));
    unit_peer_send_many(x.p1, 1, 2, 0, 20);
    x.want2 = 20;
    ASSERT(unit_peer_run(l1, l2, unit_peer_got_all, &x));
  } else {
    end = os_now_ms() + 800;
    while (os_now_ms() < end) {
      loop_run_once(l1, 5, NULL);
      loop_run_once(l2, 5, NULL);
    }
    ASSERT(!x.p1->cores[0].links[1].announced);
    ASSERT(!x.p2->cores[0].links[0].announced);
    ASSERT(strstr(x.p2->refusals[0].why,
                  "not signed with this cluster's secret") != NULL);
    ASSERT(x.p2->cores[0].ins == NULL && x.s2.n == 0);
  }
  peer_close(x.p1);
  peer_close(x.p2);
  loop_close(l1);
  loop_close(l2);
}

/* The same secret: up, messages pass; another secret, or a secret on one
** side only: refused by the listener before anything else of the HELLO
** counts. */
static void test_peer_auth_links(void) {
  unit_peer_auth_pair("0123456789abcdef-one", "0123456789abcdef-one", 1);
  unit_peer_auth_pair(NULL, NULL, 1);
  unit_peer_auth_pair("0123456789abcdef-one", "0123456789abcdef-two", 0);
  unit_peer_auth_pair(NULL, "0123456789abcdef-two", 0);
  unit_peer_auth_pair("0123456789abcdef-one", NULL, 0);
}

/* ------------------------------------------------------------ flags */

static int unit_peer_args(const char *const *argv, char *err) {
  struct ursula_config c;
  int argc = 0;
  while (argv[argc] != NULL) argc++;
  ursula_config_init(&c);
  err[0] = '\0';
  return conf_parse_args(&c, argc, (char **)(uintptr_t)argv, NULL, err);
}

static void test_peer_flags(void) {
  char err[URSULA_ERRMSG_LEN];
  struct ursula_config c;
  {
    const char *a[] = {"u", "--node-id", "2", "--peer", "1=127.0.0.1:4001",
                       "--peer", "2=127.0.0.1:4002", "--peer",
                       "3=[::1]:4003", "--cluster-id", "prod-1.a_b",
                       "--wal-dir", "/tmp/ursula-unit-peer-flags", NULL};
    int argc = 13;
    ursula_config_init(&c);
    ASSERT(conf_parse_args(&c, argc, (char **)(uintptr_t)a, NULL, err) ==
           CONF_RUN);
    ASSERT(c.node_id == 2 && c.peer_count == 3 && c.peers[2].id == 3 &&
           strcmp(c.peers[2].host, "::1") == 0 && c.peers[2].port == 4003 &&
           strcmp(c.cluster_id, "prod-1.a_b") == 0);
  }
  {
    const char *a[] = {"u", "--peer", "1=127.0.0.1:4001", NULL};
    ASSERT(unit_peer_args(a, err) == URSULA_EINVAL);
    ASSERT(strstr(err, "needs --node-id") != NULL);
  }
  { /* a cluster needs every node's log on disk */
    const char *a[] = {"u", "--node-id", "1", "--peer", "1=127.0.0.1:4001",
                       "--peer", "2=127.0.0.1:4002", "--peer",
                       "3=127.0.0.1:4003", NULL};
    ASSERT(unit_peer_args(a, err) == URSULA_EINVAL);
    ASSERT(strstr(err, "a cluster needs --wal-dir") != NULL);
  }
  {
    const char *a[] = {"u", "--node-id", "4", "--peer", "1=h:1", "--peer",
                       "2=h:2", "--peer", "3=h:3", NULL};
    ASSERT(unit_peer_args(a, err) == URSULA_EINVAL);
    ASSERT(strstr(err, "4 is not among the --peer entries") != NULL);
  }
  {
    const char *a[] = {"u", "--node-id", "1", "--peer", "1=h:1", "--peer",
                       "1=h:2", NULL};
    ASSERT(unit_peer_args(a, err) == URSULA_EINVAL);
    ASSERT(strstr(err, "node id 1 is given twice") != NULL);
  }
  {
    const char *a[] = {"u", "--node-id", "1", "--peer", "0=h:1", NULL};
    ASSERT(unit_peer_args(a, err) == URSULA_EINVAL);
    ASSERT(strstr(err, "from 1 to 255") != NULL);
  }
  {
    const char *a[] = {"u", "--node-id", "256", "--peer", "1=h:1", NULL};
    ASSERT(unit_peer_args(a, err) == URSULA_EINVAL);
  }
  {
    const char *a[] = {"u", "--node-id", "1", "--peer", "1=h:1", "--peer",
                       "2=h:2", NULL};
    ASSERT(unit_peer_args(a, err) == URSULA_EINVAL);
    ASSERT(strstr(err, "2 members; Raft here runs 1, 3 or 5 voters") != NULL);
  }
  {
    const char *a[] = {"u", "--node-id", "1", "--peer", "1=h:1", "--peer",
                       "2=h:2", "--peer", "3=h:3", "--peer", "4=h:4", NULL};
    ASSERT(unit_peer_args(a, err) == URSULA_EINVAL);
    ASSERT(strstr(err, "4 members") != NULL);
  }
  {
    const char *a[] = {"u",      "--node-id", "1",      "--peer", "1=h:1",
                       "--peer", "2=h:2",     "--peer", "3=h:3",  "--peer",
                       "4=h:4",  "--peer",    "5=h:5",  "--peer", "6=h:6",
                       NULL};
    ASSERT(unit_peer_args(a, err) == URSULA_EINVAL);
    ASSERT(strstr(err, "more than 5 members") != NULL);
  }
  {
    const char *a[] = {"u", "--node-id", "1", "--peer", "1=nohostport", NULL};
    ASSERT(unit_peer_args(a, err) == URSULA_EINVAL);
    ASSERT(strstr(err, "expected HOST:PORT") != NULL);
  }
  {
    const char *a[] = {"u", "--node-id", "1", "--peer", "1=h:0", NULL};
    ASSERT(unit_peer_args(a, err) == URSULA_EINVAL);
  }
  {
    const char *a[] = {"u", "--cluster-id", "a b", NULL};
    ASSERT(unit_peer_args(a, err) == URSULA_EINVAL);
    ASSERT(strstr(err, "cluster-id") != NULL);
  }
  {
    const char *a[] = {"u", "--node-id", "1", NULL};
    ASSERT(unit_peer_args(a, err) == URSULA_EINVAL);
    ASSERT(strstr(err, "needs --peer") != NULL);
  }
  ursula_config_init(&c);
  ASSERT(strcmp(c.cluster_id, "ursula") == 0 && c.peer_count == 0 &&
         c.node_id == 0);
  ASSERT(ursula_config_set(&c, "peer", "3=10.0.0.3:4438", err) == URSULA_OK);
  ASSERT(ursula_config_set(&c, "peer", "", err) == URSULA_OK); /* clears */
  ASSERT(c.peer_count == 0);
  ASSERT(peer_cluster_hash("ursula") == util_hash64("ursula", 6));
}

static const struct unit_case unit_peer_cases[] = {
    {"peer_codec_roundtrip", test_peer_codec_roundtrip},
    {"peer_codec_truncation", test_peer_codec_truncation},
    {"peer_codec_flips", test_peer_codec_flips},
    {"peer_codec_checks", test_peer_codec_checks},
    {"peer_hello_checks", test_peer_hello_checks},
    {"peer_link_exchange", test_peer_link_exchange},
    {"peer_auth_codec", test_peer_auth_codec},
    {"peer_auth_links", test_peer_auth_links},
    {"peer_link_large", test_peer_link_large},
    {"peer_link_reconnect", test_peer_link_reconnect},
    {"peer_link_refused", test_peer_link_refused},
    {"peer_flags", test_peer_flags},
    {NULL, NULL}};
