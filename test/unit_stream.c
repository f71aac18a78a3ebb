/* unit_stream.c -- cmd.c encoding and stream.c's state machine, plus the
** request-syntax helpers of api.c. */

static struct cmd unit_cmd(int type, const char *path, uint64_t time_ms) {
  struct cmd c;
  memset(&c, 0, sizeof(c));
  c.type = type;
  c.path = util_str(path);
  c.time_ms = time_ms;
  c.content_type = util_str("text/plain");
  return c;
}

/* When set, applied commands are the payload of this log index (0: in no
** log). */
static uint64_t unit_stream_index;

/* Encode, decode and apply, as a group does with its log. */
static int unit_apply(struct stream_state *st, const struct cmd *c,
                      struct stream_result *r) {
  struct buf enc, bounds;
  struct cmd d;
  int rc;
  memset(&enc, 0, sizeof(enc));
  memset(&bounds, 0, sizeof(bounds));
  ASSERT(cmd_encode(c, &enc) == URSULA_OK);
  rc = cmd_decode(enc.ptr, enc.len, &d, &bounds);
  ASSERT(rc == URSULA_OK);
  if (rc == URSULA_OK) stream_apply(st, unit_stream_index, &d, r);
  buf_free(&enc);
  buf_free(&bounds);
  return r->status;
}

static void test_stream_cmd_roundtrip(void) {
  struct cmd c = unit_cmd(CMD_APPEND, "/v1/stream/a", 1700000000123ULL), d;
  struct buf enc, bounds;
  size_t cut;
  memset(&enc, 0, sizeof(enc));
  memset(&bounds, 0, sizeof(bounds));
  c.flags = CMD_F_PRODUCER | CMD_F_SEQ | CMD_F_CLOSE;
  c.data = util_str("hello\0world");
  c.producer_id = util_str("p1");
  c.producer_epoch = 3;
  c.producer_seq = (1ULL << 53) - 1;
  c.stream_seq = util_str("0009");
  c.fork_base = 300;
  c.fork_inc = 9;
  ASSERT(cmd_encode(&c, &enc) == URSULA_OK);
  ASSERT(cmd_decode(enc.ptr, enc.len, &d, &bounds) == URSULA_OK);
  ASSERT(d.type == CMD_APPEND && d.flags == c.flags && d.time_ms == c.time_ms);
  ASSERT_MEM(d.path.ptr, d.path.len, "/v1/stream/a");
  ASSERT(d.producer_seq == c.producer_seq && d.producer_epoch == 3);
  ASSERT_MEM(d.stream_seq.ptr, d.stream_seq.len, "0009");
  ASSERT(d.fork_base == 300 && d.fork_inc == 9 && d.n_bounds == 0 &&
         d.inherited.len == 0);
  /* every truncation is detected, never read past the end */
  for (cut = 0; cut < enc.len; cut++)
    ASSERT(cmd_decode(enc.ptr, cut, &d, &bounds) == URSULA_ECORRUPT);
  enc.ptr[0] = 9; /* unknown version */
  ASSERT(cmd_decode(enc.ptr, enc.len, &d, &bounds) == URSULA_ECORRUPT);
  /* FORK_ACQUIRE carries the incarnation its proposer looked at */
  c = unit_cmd(CMD_FORK_ACQUIRE, "/src", 5);
  c.flags = CMD_F_FORK_OFFSET | CMD_F_UNIT;
  c.fork_offset = 12;
  c.fork_sub = 2;
  c.n_msgs = 4;
  c.incarnation = 77;
  enc.len = 0;
  ASSERT(cmd_encode(&c, &enc) == URSULA_OK);
  ASSERT(cmd_decode(enc.ptr, enc.len, &d, &bounds) == URSULA_OK);
  ASSERT(d.type == CMD_FORK_ACQUIRE && d.incarnation == 77 &&
         d.n_msgs == 4 && d.flags == c.flags && d.fork_offset == 12);
  for (cut = 0; cut < enc.len; cut++)
    ASSERT(cmd_decode(enc.ptr, cut, &d, &bounds) == URSULA_ECORRUPT);
  buf_free(&enc);
  buf_free(&bounds);
}

/* A version-1 fork CREATE (the build that copied what a fork inherits):
** the encoding of unit_cmd(CREATE "/fork") with the fork fields, by hand
** as cmd.c's header has it, with inherited "abcde" in units "abc", "de",
** then the PUT's body "Z".  Still decoded, and applied as then: the bytes
** are the fork's own units, from 0 (base 0). */
static void test_stream_fork_v1(void) {
  static const unsigned char v1[] = {
      1, CMD_CREATE, CMD_F_FORK, 1,         /* version, type, flags, time */
      5, '/', 'f', 'o', 'r', 'k',           /* path */
      10, 't', 'e', 'x', 't', '/', 'p', 'l', 'a', 'i', 'n', /* type */
      1, 'Z',                               /* data */
      0, 0, 0, 0, 0, 0, 0, 0,               /* n_msgs .. producer_seq */
      4, '/', 's', 'r', 'c', 5, 0,          /* fork_source, offset, sub */
      5, 'a', 'b', 'c', 'd', 'e', 1, 3};    /* inherited, 1 bound: 3 */
  struct stream_state st;
  struct stream_result r;
  struct buf bounds, out;
  struct cmd d;
  struct stream *s;
  memset(&r, 0, sizeof(r));
  memset(&bounds, 0, sizeof(bounds));
  memset(&out, 0, sizeof(out));
  stream_state_init(&st);
  ASSERT(cmd_decode(v1, sizeof(v1), &d, &bounds) == URSULA_OK);
  ASSERT(d.type == CMD_CREATE && d.fork_offset == 5 && d.fork_base == 0);
  ASSERT_MEM(d.inherited.ptr, d.inherited.len, "abcde");
  ASSERT(d.n_bounds == 1 && d.bounds[0] == 3);
  ASSERT(stream_apply(&st, 4, &d, &r) == URSULA_OK && r.status == 201 &&
         r.tail == 6 && !r.release_source);
  s = stream_find(&st, util_str("/fork"));
  ASSERT(s != NULL && s->base == 0 && s->n_bounds == 3 && s->bounds[0] == 3 &&
         s->bounds[1] == 5 && s->bounds[2] == 6);
  if (s != NULL) {
    ASSERT(stream_read(&st, s, 0, 6, &out) == URSULA_OK);
    ASSERT_MEM(out.ptr, out.len, "abcdeZ");
    /* the units' log locations: in entry 4, where the bytes are */
    ASSERT(s->locs[0].index == 4 && s->locs[2].index == 4 &&
           memcmp(v1 + s->locs[0].off, "abc", 3) == 0 &&
           memcmp(v1 + s->locs[1].off, "de", 2) == 0 &&
           memcmp(v1 + s->locs[2].off, "Z", 1) == 0);
  }
  buf_free(&out);
  buf_free(&bounds);
  buf_free(&r.releases);
  stream_state_free(&st);
}

static void test_stream_create_append(void) {
  struct stream_state st;
  struct stream_result r;
  struct cmd c;
  struct stream *s;
  memset(&r, 0, sizeof(r));
  stream_state_init(&st);
  c = unit_cmd(CMD_CREATE, "/s", 1000);
  ASSERT(unit_apply(&st, &c, &r) == 201 && r.tail == 0);
  ASSERT(unit_apply(&st, &c, &r) == 200); /* idempotent */
  c.content_type = util_str("TEXT/PLAIN; charset=utf-8");
  ASSERT(unit_apply(&st, &c, &r) == 200); /* same type after normalising */
  c.content_type = util_str("application/json");
  ASSERT(unit_apply(&st, &c, &r) == 409);
  c = unit_cmd(CMD_APPEND, "/s", 1001);
  c.data = util_str("abc");
  ASSERT(unit_apply(&st, &c, &r) == 204 && r.tail == 3 && r.notify);
  c.data = util_str("de");
  ASSERT(unit_apply(&st, &c, &r) == 204 && r.tail == 5);
  c.content_type = util_str("application/json");
  ASSERT(unit_apply(&st, &c, &r) == 409); /* type mismatch */
  s = stream_find(&st, util_str("/s"));
  ASSERT(s != NULL && s->n_bounds == 2 && s->bounds[0] == 3 &&
         s->bounds[1] == 5);
  ASSERT(memcmp(s->local.data.ptr, "abcde", 5) == 0);
  c = unit_cmd(CMD_APPEND, "/missing", 1001);
  c.data = util_str("x");
  ASSERT(unit_apply(&st, &c, &r) == 404);
  buf_free(&r.releases);
  stream_state_free(&st);
}

static void test_stream_seq_and_close(void) {
  struct stream_state st;
  struct stream_result r;
  struct cmd c;
  memset(&r, 0, sizeof(r));
  stream_state_init(&st);
  c = unit_cmd(CMD_CREATE, "/s", 1);
  unit_apply(&st, &c, &r);
  c = unit_cmd(CMD_APPEND, "/s", 2);
  c.data = util_str("x");
  c.flags = CMD_F_SEQ;
  c.stream_seq = util_str("2");
  ASSERT(unit_apply(&st, &c, &r) == 204);
  c.stream_seq = util_str("10"); /* "10" < "2" byte-wise */
  ASSERT(unit_apply(&st, &c, &r) == 409);
  c.stream_seq = util_str("2");
  ASSERT(unit_apply(&st, &c, &r) == 409);
  c.stream_seq = util_str("20");
  ASSERT(unit_apply(&st, &c, &r) == 204);
  c.flags = CMD_F_CLOSE;
  c.data = util_str("");
  ASSERT(unit_apply(&st, &c, &r) == 204 && r.closed && r.tail == 2);
  ASSERT(unit_apply(&st, &c, &r) == 204 && r.closed); /* idempotent close */
  c.flags = 0;
  c.data = util_str("y");
  ASSERT(unit_apply(&st, &c, &r) == 409 && r.closed && r.tail == 2);
  buf_free(&r.releases);
  stream_state_free(&st);
}

static void test_stream_producer(void) {
  struct stream_state st;
  struct stream_result r;
  struct cmd c;
  memset(&r, 0, sizeof(r));
  stream_state_init(&st);
  c = unit_cmd(CMD_CREATE, "/s", 1);
  unit_apply(&st, &c, &r);
  c = unit_cmd(CMD_APPEND, "/s", 2);
  c.flags = CMD_F_PRODUCER;
  c.producer_id = util_str("p");
  c.data = util_str("a");
  c.producer_seq = 1;
  ASSERT(unit_apply(&st, &c, &r) == 409 && r.seq_gap && r.expected_seq == 0);
  c.producer_seq = 0;
  ASSERT(unit_apply(&st, &c, &r) == 200 && r.producer_echo && r.tail == 1);
  ASSERT(unit_apply(&st, &c, &r) == 204 && r.tail == 1); /* duplicate */
  c.producer_seq = 3;
  ASSERT(unit_apply(&st, &c, &r) == 409 && r.expected_seq == 1 &&
         r.received_seq == 3);
  c.producer_seq = 1;
  ASSERT(unit_apply(&st, &c, &r) == 200 && r.tail == 2);
  c.producer_epoch = 1;
  ASSERT(unit_apply(&st, &c, &r) == 400); /* new epoch must start at 0 */
  c.producer_seq = 0;
  ASSERT(unit_apply(&st, &c, &r) == 200 && r.tail == 3);
  c.producer_epoch = 0;
  ASSERT(unit_apply(&st, &c, &r) == 403 && r.fenced && r.current_epoch == 1);
  /* close with the tuple; the same tuple again is a duplicate */
  c.producer_epoch = 1;
  c.producer_seq = 1;
  c.flags |= CMD_F_CLOSE;
  c.data = util_str("");
  ASSERT(unit_apply(&st, &c, &r) == 204 && r.closed && r.producer_seq == 1);
  c.data = util_str("other");
  ASSERT(unit_apply(&st, &c, &r) == 204 && r.closed && r.tail == 3);
  c.producer_seq = 2;
  ASSERT(unit_apply(&st, &c, &r) == 409 && r.closed);
  buf_free(&r.releases);
  stream_state_free(&st);
}

static void test_stream_ttl_and_forks(void) {
  struct stream_state st;
  struct stream_result r;
  struct cmd c;
  memset(&r, 0, sizeof(r));
  stream_state_init(&st);
  c = unit_cmd(CMD_CREATE, "/src", 1000);
  c.flags = CMD_F_TTL;
  c.ttl_s = 2;
  c.data = util_str("abcdef");
  ASSERT(unit_apply(&st, &c, &r) == 201 && r.tail == 6);
  c = unit_cmd(CMD_FORK_ACQUIRE, "/src", 1500);
  c.flags = CMD_F_FORK_OFFSET;
  c.fork_offset = 7;
  ASSERT(unit_apply(&st, &c, &r) == 400); /* beyond the tail */
  c.fork_offset = 0;
  c.fork_sub = 7;
  ASSERT(unit_apply(&st, &c, &r) == 400); /* beyond the unit */
  c.fork_sub = 4;
  ASSERT(unit_apply(&st, &c, &r) == 200 && r.tail == 0);
  ASSERT(stream_find(&st, util_str("/src"))->refcount == 1);
  /* the TTL runs out while a fork holds it: soft-deleted, not gone */
  c = unit_cmd(CMD_EXPIRE, "/src", 4000);
  unit_apply(&st, &c, &r);
  ASSERT(stream_find(&st, util_str("/src")) != NULL &&
         stream_find(&st, util_str("/src"))->soft_deleted);
  c = unit_cmd(CMD_APPEND, "/src", 4001);
  c.data = util_str("x");
  ASSERT(unit_apply(&st, &c, &r) == 410);
  c = unit_cmd(CMD_CREATE, "/src", 4002);
  ASSERT(unit_apply(&st, &c, &r) == 409);
  /* the last fork goes: the source goes with it */
  c = unit_cmd(CMD_FORK_RELEASE, "/src", 4003);
  unit_apply(&st, &c, &r);
  ASSERT(stream_find(&st, util_str("/src")) == NULL);
  c = unit_cmd(CMD_CREATE, "/src", 4004);
  ASSERT(unit_apply(&st, &c, &r) == 201);
  buf_free(&r.releases);
  stream_state_free(&st);
}

/* Apply c (a fork CREATE) and return the size of its encoding. */
static size_t unit_fork_size(struct stream_state *st, const struct cmd *c,
                             struct stream_result *r) {
  struct buf enc;
  size_t n;
  memset(&enc, 0, sizeof(enc));
  ASSERT(cmd_encode(c, &enc) == URSULA_OK);
  n = enc.len;
  buf_free(&enc);
  unit_apply(st, c, r);
  return n;
}

/* A fork refers to its source instead of copying it: its CREATE carries
** the source's path and incarnation and the fork point, whatever the
** source's size; the fork holds in memory (and would log) only its own
** bytes, from the fork point; reads of its own range are byte-exact and
** a read below the fork point is no read of its own. */
static void test_stream_fork_create(void) {
  struct stream_state st;
  struct stream_result r;
  struct cmd c;
  struct stream *s, *src;
  struct buf big, out;
  uint64_t hot;
  size_t small_size, big_size;
  memset(&r, 0, sizeof(r));
  memset(&big, 0, sizeof(big));
  memset(&out, 0, sizeof(out));
  stream_state_init(&st);
  c = unit_cmd(CMD_CREATE, "/src", 1);
  c.data = util_str("abcdef");
  ASSERT(unit_apply(&st, &c, &r) == 201);
  c = unit_cmd(CMD_APPEND, "/src", 1);
  c.data = util_str("ghi");
  ASSERT(unit_apply(&st, &c, &r) == 204);
  src = stream_find(&st, util_str("/src"));
  ASSERT(src != NULL);
  if (src == NULL) return;
  /* the reference: the source's unit at 6 ("ghi"), two bytes of it */
  c = unit_cmd(CMD_FORK_ACQUIRE, "/src", 2);
  c.flags = CMD_F_FORK_OFFSET;
  c.fork_offset = 6;
  c.fork_sub = 2;
  ASSERT(unit_apply(&st, &c, &r) == 200 && r.tail == 6 && src->refcount == 1);
  hot = st.hot_bytes;
  c = unit_cmd(CMD_CREATE, "/fork", 3);
  c.flags = CMD_F_FORK | CMD_F_FORK_OFFSET;
  c.fork_source = util_str("/src");
  c.fork_offset = 6;
  c.fork_sub = 2;
  c.fork_base = 8;
  c.fork_inc = src->incarnation;
  c.data = util_str("Z");
  small_size = unit_fork_size(&st, &c, &r);
  ASSERT(r.status == 201 && r.tail == 9 && !r.release_source);
  s = stream_find(&st, util_str("/fork"));
  ASSERT(s != NULL && s->base == 8 && s->fork_inc == src->incarnation &&
         s->tail == 9 && s->n_bounds == 1 && s->bounds[0] == 9);
  if (s == NULL) return;
  /* memory holds the fork's own byte, nothing of the inherited eight */
  ASSERT(s->local.data.len == 1 && s->local.hot_start == 8 &&
         st.hot_bytes == hot + 1 && s->cold_end == 8);
  ASSERT(stream_read(&st, s, 8, 9, &out) == URSULA_OK);
  ASSERT_MEM(out.ptr, out.len, "Z");
  out.len = 0;
  ASSERT(stream_read(&st, s, 0, 9, &out) == URSULA_EINVAL && out.len == 0);
  ASSERT(stream_unit_start(s, 0) == 8);
  /* a fork of the fork inside what it inherited: the proposer found the
  ** append there (CMD_F_UNIT, its length); apply reads no other stream */
  c = unit_cmd(CMD_FORK_ACQUIRE, "/fork", 4);
  c.flags = CMD_F_FORK_OFFSET;
  c.fork_offset = 6;
  c.fork_sub = 1;
  c.incarnation = s->incarnation;
  ASSERT(unit_apply(&st, &c, &r) == 400); /* none found */
  c.flags |= CMD_F_UNIT;
  c.n_msgs = 2;
  c.fork_sub = 3;
  ASSERT(unit_apply(&st, &c, &r) == 400); /* beyond that append */
  c.fork_sub = 2;
  c.incarnation = s->incarnation + 100;
  ASSERT(unit_apply(&st, &c, &r) == 503); /* not the stream looked at */
  c.incarnation = s->incarnation;
  ASSERT(unit_apply(&st, &c, &r) == 200 && r.tail == 6 && s->refcount == 1);
  /* the CREATE's size does not grow with the source: 1 MiB more source
  ** bytes, the same command size */
  c = unit_cmd(CMD_APPEND, "/src", 5);
  ASSERT(buf_reserve(&big, 1 << 20) == URSULA_OK);
  memset(big.ptr, 'x', 1 << 20);
  big.len = 1 << 20;
  c.data.ptr = big.ptr;
  c.data.len = big.len;
  ASSERT(unit_apply(&st, &c, &r) == 204 && src->tail == (1 << 20) + 9);
  hot = st.hot_bytes;
  c = unit_cmd(CMD_CREATE, "/fbig", 6); /* as long as "/fork" */
  c.flags = CMD_F_FORK | CMD_F_FORK_OFFSET;
  c.fork_source = util_str("/src");
  c.fork_offset = 6;
  c.fork_sub = 2;
  c.fork_base = src->tail; /* the whole source, by reference */
  c.fork_inc = src->incarnation;
  c.data = util_str("Z");
  big_size = unit_fork_size(&st, &c, &r);
  ASSERT(r.status == 201 && r.tail == src->tail + 1);
  ASSERT(big_size <= small_size + 9 && big_size < 64); /* a wider varint */
  ASSERT(st.hot_bytes == hot + 1); /* its own byte only */
  /* a repeated CREATE is the same fork: 200, and it holds no reference */
  c = unit_cmd(CMD_CREATE, "/fork", 7);
  c.flags = CMD_F_FORK | CMD_F_FORK_OFFSET;
  c.fork_source = util_str("/src");
  c.fork_offset = 6;
  c.fork_sub = 2;
  c.fork_base = 8;
  c.fork_inc = src->incarnation;
  ASSERT(unit_apply(&st, &c, &r) == 200 && r.release_source && r.tail == 9);
  /* a malformed reference is refused: fork point before the offset, or
  ** past 0 with no incarnation */
  c.fork_base = 5;
  ASSERT(unit_apply(&st, &c, &r) == 400 && r.release_source);
  c.fork_base = 8;
  c.fork_inc = 0;
  ASSERT(unit_apply(&st, &c, &r) == 400);
  /* deleted while its own fork holds it: soft-deleted; once that one
  ** lets go, removed, and it lets go of its source in turn */
  c = unit_cmd(CMD_DELETE, "/fork", 8);
  ASSERT(unit_apply(&st, &c, &r) == 204 && r.releases.len == 0);
  s = stream_find(&st, util_str("/fork"));
  ASSERT(s != NULL && s->soft_deleted);
  c = unit_cmd(CMD_FORK_RELEASE, "/fork", 9);
  ASSERT(unit_apply(&st, &c, &r) == 204);
  ASSERT(r.releases.len == 5 && memcmp(r.releases.ptr, "/src", 5) == 0);
  ASSERT(stream_find(&st, util_str("/fork")) == NULL);
  buf_free(&big);
  buf_free(&out);
  buf_free(&r.releases);
  stream_state_free(&st);
}

static void test_stream_rfc3339(void) {
  uint64_t ms = 0;
  ASSERT(api_parse_rfc3339(util_str("1970-01-01T00:00:00Z"), &ms) == 0 &&
         ms == 0);
  ASSERT(api_parse_rfc3339(util_str("2024-10-09T00:00:00.000Z"), &ms) == 0 &&
         ms == 1728432000000ULL);
  ASSERT(api_parse_rfc3339(util_str("2024-10-09T02:00:00.5+02:00"), &ms) == 0 &&
         ms == 1728432000500ULL);
  ASSERT(api_parse_rfc3339(util_str("2024-02-30T00:00:00Z"), &ms) == -1);
  ASSERT(api_parse_rfc3339(util_str("2024-10-09T00:00:00"), &ms) == -1);
  ASSERT(api_parse_rfc3339(util_str("not a date"), &ms) == -1);
  ASSERT(api_parse_rfc3339(util_str("2024-10-09T00:00:00Zjunk"), &ms) == -1);
}

static void test_stream_offsets(void) {
  uint64_t v = 0;
  ASSERT(api_parse_offset(util_str("0000000000000000_0000000000000042"), &v) ==
             0 &&
         v == 42);
  ASSERT(api_parse_offset(util_str("0_1"), &v) == 0 && v == 1);
  ASSERT(api_parse_offset(util_str("0,1"), &v) == -1);
  ASSERT(api_parse_offset(util_str("../x"), &v) == -1);
  ASSERT(api_parse_offset(util_str("1_"), &v) == -1);
  ASSERT(api_parse_offset(util_str("_1"), &v) == -1);
  ASSERT(api_parse_offset(util_str("1_2_3"), &v) == -1);
  ASSERT(api_path_ok(util_str("/v1/stream/a.b")));
  ASSERT(!api_path_ok(util_str("/v1/../etc")));
  ASSERT(!api_path_ok(util_str("relative")));
}

/* A snapshot restores every stream exactly: snapshot(restore(x)) == x. */
static void test_stream_snapshot(void) {
  struct stream_state a, b;
  struct stream_result r;
  struct buf s1, s2;
  struct cmd c;
  struct stream *s;
  memset(&r, 0, sizeof(r));
  memset(&s1, 0, sizeof(s1));
  memset(&s2, 0, sizeof(s2));
  stream_state_init(&a);
  stream_state_init(&b);
  unit_stream_index = 7;
  c = unit_cmd(CMD_CREATE, "/plain", 1000);
  c.flags = CMD_F_TTL;
  c.ttl_s = 3600;
  ASSERT(unit_apply(&a, &c, &r) == 201);
  c = unit_cmd(CMD_APPEND, "/plain", 1001);
  c.data = util_str("hello ");
  c.flags = CMD_F_PRODUCER | CMD_F_SEQ;
  c.producer_id = util_str("p1");
  c.producer_epoch = 2;
  c.producer_seq = 0;
  c.stream_seq = util_str("0042");
  ASSERT(unit_apply(&a, &c, &r) == 200);
  c = unit_cmd(CMD_APPEND, "/plain", 1002);
  c.data = util_str("world");
  c.flags = CMD_F_CLOSE;
  ASSERT(unit_apply(&a, &c, &r) == 204);
  c = unit_cmd(CMD_CREATE, "/json", 1003);
  c.content_type = util_str("application/json");
  c.flags = CMD_F_JSON;
  ASSERT(unit_apply(&a, &c, &r) == 201);
  /* a bare unit only in memory cannot be snapshotted */
  unit_stream_index = 0;
  c = unit_cmd(CMD_APPEND, "/json", 1004);
  c.data = util_str("1,");
  c.n_msgs = 1;
  c.content_type = util_str("application/json");
  c.flags = CMD_F_JSON;
  ASSERT(unit_apply(&a, &c, &r) == 204);
  ASSERT(stream_snapshot(&a, &s1) == URSULA_EINVAL);
  stream_state_free(&a);
  stream_state_init(&a);
  unit_stream_index = 7;
  c = unit_cmd(CMD_CREATE, "/plain", 1000);
  ASSERT(unit_apply(&a, &c, &r) == 201);
  c = unit_cmd(CMD_APPEND, "/plain", 1001);
  c.data = util_str("hello ");
  c.flags = CMD_F_PRODUCER | CMD_F_CLOSE;
  c.producer_id = util_str("p1");
  c.producer_epoch = 2;
  c.producer_seq = 0;
  ASSERT(unit_apply(&a, &c, &r) == 200);
  s1.len = 0;
  ASSERT(stream_snapshot(&a, &s1) == URSULA_OK);
  ASSERT(stream_restore(&b, s1.ptr, s1.len) == URSULA_OK);
  ASSERT(stream_snapshot(&b, &s2) == URSULA_OK);
  ASSERT(s1.len == s2.len && memcmp(s1.ptr, s2.ptr, s1.len) == 0);
  s = stream_find(&b, util_str("/plain"));
  ASSERT(s != NULL && s->tail == 6 && s->closed && s->local.hot_start == 6);
  ASSERT(s != NULL && s->n_bounds == 1 && s->locs[0].index == 7);
  ASSERT(s != NULL && s->producers != NULL && s->producers->seq == 0);
  ASSERT(s != NULL && s->closed_by_id != NULL);
  ASSERT(stream_oldest_index(&b, 0) == 7);
  /* the restored state answers as the original: a duplicate is a dup */
  c = unit_cmd(CMD_APPEND, "/plain", 1005);
  c.data = util_str("x");
  c.flags = CMD_F_PRODUCER;
  c.producer_id = util_str("p1");
  c.producer_epoch = 2;
  c.producer_seq = 0;
  ASSERT(unit_apply(&b, &c, &r) == unit_apply(&a, &c, &r));
  /* damaged snapshots are refused */
  stream_state_free(&b);
  stream_state_init(&b);
  ASSERT(stream_restore(&b, s1.ptr, s1.len - 1) == URSULA_ECORRUPT);
  unit_stream_index = 0;
  buf_free(&s1);
  buf_free(&s2);
  buf_free(&r.releases);
  stream_state_free(&a);
  stream_state_free(&b);
}

/* ------------------------------------------------------------ forks */

/* One stream's snapshot, by hand as stream.c's format comment has it:
** text/plain, no TTL, producers or chunks unless chunk > 0 (one chunk of
** that length, "c"); units of the lengths given, each past the chunk in
** log entry 5. */
struct unit_snap {
  uint64_t version;
  const char *src; /* "" : not a fork */
  uint64_t tail, fork_offset, fork_sub, base, fork_inc, chunk;
  size_t n_units;
  uint64_t units[3];
};

static void unit_snap_build(struct buf *b, const struct unit_snap *u) {
  uint64_t at;
  size_t i;
  b->len = 0;
  cmd_put_varint(b, u->version);
  cmd_put_varint(b, 2); /* next_incarnation */
  cmd_put_varint(b, 1); /* one stream */
  cmd_put_bytes(b, util_str("/f"));
  cmd_put_bytes(b, util_str("text/plain"));
  cmd_put_varint(b, 0);       /* flags */
  cmd_put_varint(b, u->tail); /* tail */
  cmd_put_varint(b, 0);       /* ttl_s */
  cmd_put_varint(b, 0);       /* expires_at_ms */
  cmd_put_bytes(b, util_str(""));
  cmd_put_varint(b, 0); /* last_access_ms */
  cmd_put_bytes(b, util_str(""));
  cmd_put_varint(b, 0); /* producers */
  cmd_put_bytes(b, util_str(""));
  cmd_put_varint(b, 0);
  cmd_put_varint(b, 0);
  cmd_put_bytes(b, util_str(u->src));
  cmd_put_varint(b, u->fork_offset);
  cmd_put_varint(b, u->fork_sub);
  if (u->version >= 4) {
    cmd_put_varint(b, u->base);
    cmd_put_varint(b, u->fork_inc);
  }
  cmd_put_varint(b, 0); /* refcount */
  cmd_put_varint(b, 1); /* incarnation */
  cmd_put_varint(b, u->chunk > 0);
  if (u->chunk > 0) {
    cmd_put_varint(b, u->chunk);
    cmd_put_bytes(b, util_str("c"));
  }
  cmd_put_varint(b, u->n_units);
  at = u->version >= 4 ? u->base : 0; /* where the first unit starts */
  for (i = 0; i < u->n_units; i++) {
    cmd_put_varint(b, u->units[i]);
    /* as restore reads it: a unit from the chunk's end on has a location */
    if (at >= (u->version >= 4 ? u->base : 0) + u->chunk) {
      cmd_put_varint(b, 5);
      cmd_put_varint(b, 0);
    }
    at += u->units[i];
  }
}

static int unit_snap_restore(const struct unit_snap *u) {
  struct stream_state st;
  struct buf b;
  int rc;
  memset(&b, 0, sizeof(b));
  unit_snap_build(&b, u);
  stream_state_init(&st);
  rc = stream_restore(&st, b.ptr, b.len);
  stream_state_free(&st);
  buf_free(&b);
  return rc;
}

/* Forks in snapshots: the reference (fork point, source incarnation)
** round-trips and is in the digest; restore accepts what apply makes and
** refuses every length or offset out of order or range. */
static void test_stream_fork_snapshot(void) {
  struct stream_state a, b;
  struct stream_result r;
  struct buf s1, s2;
  struct cmd c;
  struct stream *f;
  uint64_t da, db;
  struct unit_snap u;
  memset(&r, 0, sizeof(r));
  memset(&s1, 0, sizeof(s1));
  memset(&s2, 0, sizeof(s2));
  stream_state_init(&a);
  unit_stream_index = 9;
  c = unit_cmd(CMD_CREATE, "/src", 1);
  c.data = util_str("abcdefghi");
  ASSERT(unit_apply(&a, &c, &r) == 201);
  c = unit_cmd(CMD_CREATE, "/f", 2);
  c.flags = CMD_F_FORK | CMD_F_FORK_OFFSET;
  c.fork_source = util_str("/src");
  c.fork_offset = 0;
  c.fork_sub = 8;
  c.fork_base = 8;
  c.fork_inc = 1;
  c.data = util_str("Z");
  ASSERT(unit_apply(&a, &c, &r) == 201);
  c = unit_cmd(CMD_APPEND, "/f", 3);
  c.data = util_str("YY");
  ASSERT(unit_apply(&a, &c, &r) == 204);
  c = unit_cmd(CMD_CREATE, "/ff", 4); /* a fork of /f inside its base */
  c.flags = CMD_F_FORK | CMD_F_FORK_OFFSET;
  c.fork_source = util_str("/f");
  c.fork_offset = 0;
  c.fork_sub = 4;
  c.fork_base = 4;
  c.fork_inc = 2;
  ASSERT(unit_apply(&a, &c, &r) == 201 && r.tail == 4);
  ASSERT(stream_snapshot(&a, &s1) == URSULA_OK);
  stream_state_init(&b);
  ASSERT(stream_restore(&b, s1.ptr, s1.len) == URSULA_OK);
  ASSERT(stream_snapshot(&b, &s2) == URSULA_OK);
  ASSERT(s1.len == s2.len && memcmp(s1.ptr, s2.ptr, s1.len) == 0);
  ASSERT(stream_digest(&a, &da) == URSULA_OK &&
         stream_digest(&b, &db) == URSULA_OK && da == db);
  f = stream_find(&b, util_str("/f"));
  ASSERT(f != NULL && f->base == 8 && f->fork_inc == 1 && f->tail == 11 &&
         f->n_bounds == 2 && f->bounds[0] == 9 && f->bounds[1] == 11 &&
         f->cold_end == 8 && f->local.hot_start == 11 && f->locs[0].index == 9);
  f = stream_find(&b, util_str("/ff"));
  ASSERT(f != NULL && f->base == 4 && f->tail == 4 && f->n_bounds == 0);
  /* the digest covers the reference: another fork point or source
  ** incarnation is another state */
  f = stream_find(&b, util_str("/f"));
  if (f != NULL) {
    f->fork_inc = 3;
    ASSERT(stream_digest(&b, &db) == URSULA_OK && db != da);
    f->fork_inc = 1;
    f->base = 7;
    f->bounds[0] = 9; /* still its units' ends: only base differs */
    ASSERT(stream_digest(&b, &db) == URSULA_OK && db != da);
  }
  /* every truncation is refused */
  {
    size_t cut;
    for (cut = 0; cut < s1.len; cut++) {
      struct stream_state bad;
      stream_state_init(&bad);
      ASSERT(stream_restore(&bad, s1.ptr, cut) != URSULA_OK);
      stream_state_free(&bad);
    }
  }
  /* crafted records: what apply makes is accepted, the rest refused */
  memset(&u, 0, sizeof(u));
  u.version = 4;
  u.src = "/src";
  u.tail = 11;
  u.fork_offset = 6;
  u.fork_sub = 2;
  u.base = 8;
  u.fork_inc = 1;
  u.n_units = 2;
  u.units[0] = 1;
  u.units[1] = 2;
  ASSERT(unit_snap_restore(&u) == URSULA_OK);
  u.base = 12; /* past the tail */
  ASSERT(unit_snap_restore(&u) == URSULA_ECORRUPT);
  u.base = 8;
  u.fork_offset = 9; /* the fork offset after the fork point */
  ASSERT(unit_snap_restore(&u) == URSULA_ECORRUPT);
  u.fork_offset = 6;
  u.fork_inc = 0; /* a fork point with no source incarnation */
  ASSERT(unit_snap_restore(&u) == URSULA_ECORRUPT);
  u.fork_inc = 1;
  u.units[1] = 3; /* units past the tail */
  ASSERT(unit_snap_restore(&u) == URSULA_ECORRUPT);
  u.units[1] = UINT64_MAX; /* a length that wraps */
  ASSERT(unit_snap_restore(&u) == URSULA_ECORRUPT);
  u.tail = 8; /* lengths that wrap (to 2), then end at the tail */
  u.units[0] = UINT64_MAX - 5;
  u.units[1] = 6;
  ASSERT(unit_snap_restore(&u) == URSULA_ECORRUPT);
  u.tail = 11;
  u.units[0] = 1;
  u.units[1] = 1; /* units short of the tail */
  ASSERT(unit_snap_restore(&u) == URSULA_ECORRUPT);
  u.units[1] = 2;
  u.chunk = UINT64_MAX - 3; /* a chunk that wraps (to 4, below base) */
  ASSERT(unit_snap_restore(&u) == URSULA_ECORRUPT);
  u.chunk = 1; /* a chunk of the first own unit, from the fork point */
  ASSERT(unit_snap_restore(&u) == URSULA_OK);
  u.chunk = 2; /* a chunk that ends inside a unit */
  ASSERT(unit_snap_restore(&u) == URSULA_ECORRUPT);
  u.chunk = 0;
  u.src = ""; /* not a fork, yet a fork point */
  ASSERT(unit_snap_restore(&u) == URSULA_ECORRUPT);
  u.base = u.fork_inc = u.fork_offset = u.fork_sub = 0;
  u.units[0] = 9;
  ASSERT(unit_snap_restore(&u) == URSULA_OK);
  /* version 3: no reference fields; its forks hold copies (base 0) */
  u.version = 3;
  u.src = "/src";
  u.fork_offset = 6;
  ASSERT(unit_snap_restore(&u) == URSULA_OK);
  unit_stream_index = 0;
  buf_free(&s1);
  buf_free(&s2);
  buf_free(&r.releases);
  stream_state_free(&a);
  stream_state_free(&b);
}

/* ------------------------------------------------------------ TOUCH */

/* A read slides the TTL window only through a logged TOUCH: the window
** moves forward only, for the right incarnation, and a TOUCH finds the
** stream even where the log alone would have expired it (the read saw
** it alive). */
static void test_stream_touch(void) {
  struct stream_state st;
  struct stream_result r;
  struct cmd c;
  struct stream *s;
  memset(&r, 0, sizeof(r));
  stream_state_init(&st);
  c = unit_cmd(CMD_CREATE, "/t", 1000);
  c.flags = CMD_F_TTL;
  c.ttl_s = 2;
  ASSERT(unit_apply(&st, &c, &r) == 201);
  s = stream_find(&st, util_str("/t"));
  ASSERT(s != NULL && s->last_access_ms == 1000);
  if (s == NULL) return;
  c = unit_cmd(CMD_TOUCH, "/t", 2500);
  c.incarnation = s->incarnation + 1; /* another incarnation: ignored */
  ASSERT(unit_apply(&st, &c, &r) == 204 && s->last_access_ms == 1000);
  c.incarnation = s->incarnation;
  ASSERT(unit_apply(&st, &c, &r) == 204 && s->last_access_ms == 2500);
  c.time_ms = 2000; /* an older read: the window does not go back */
  ASSERT(unit_apply(&st, &c, &r) == 204 && s->last_access_ms == 2500);
  /* expiry counts from the touch: alive at 4499, gone at 4500 */
  c = unit_cmd(CMD_EXPIRE, "/t", 4499);
  unit_apply(&st, &c, &r);
  ASSERT(stream_find(&st, util_str("/t")) != NULL);
  c = unit_cmd(CMD_EXPIRE, "/t", 4500);
  unit_apply(&st, &c, &r);
  ASSERT(stream_find(&st, util_str("/t")) == NULL && r.deleted);
  /* reads alone (local.read_ms) change nothing replicated */
  c = unit_cmd(CMD_CREATE, "/u", 5000);
  c.flags = CMD_F_TTL;
  c.ttl_s = 1;
  ASSERT(unit_apply(&st, &c, &r) == 201);
  s = stream_find(&st, util_str("/u"));
  if (s != NULL) s->local.read_ms = 5900;
  c = unit_cmd(CMD_EXPIRE, "/u", 6000);
  unit_apply(&st, &c, &r);
  ASSERT(stream_find(&st, util_str("/u")) == NULL);
  buf_free(&r.releases);
  buf_free(&r.garbage);
  stream_state_free(&st);
}

/* ------------------------------------------------------------ determinism */

/* The log of the determinism test: encoded commands, entry i + 1 at
** [i]; the read_cold of its states reads from here by (index, offset),
** as a group reads from its WAL. */
struct unit_det_log {
  struct buf *entries;
  size_t n, cap;
};

static int unit_det_read(void *ctx, const struct stream_loc *loc, uint64_t len,
                         struct buf *out) {
  struct unit_det_log *lg = (struct unit_det_log *)ctx;
  const struct buf *e;
  if (loc->index == 0 || loc->index > lg->n) return URSULA_ENOTFOUND;
  e = &lg->entries[loc->index - 1];
  if (loc->off > e->len || len > e->len - loc->off) return URSULA_EINVAL;
  return buf_append(out, e->ptr + loc->off, (size_t)len);
}

static uint64_t unit_det_rand(uint64_t *x) { /* splitmix64 */
  uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/* Append a random command, encoded, to the log: creates (some with a
** TTL, some JSON, some forks), appends (some with producer headers, a
** Stream-Seq, a close), deletes, expiries, touches, fork references and
** cold moves, over a few paths, with the clock moving forward. */
static void unit_det_gen(uint64_t *rng, uint64_t *now, struct unit_det_log *lg,
                         const struct stream_state *ref) {
  static const char *const paths[] = {"/a", "/b", "/c", "/d", "/e",
                                      "/f", "/g", "/h", "/j/k"};
  char path[16], data[300], seq[16], obj[32];
  uint64_t r = unit_det_rand(rng);
  struct cmd c;
  struct stream *s;
  size_t i, n;
  int json;
  *now += unit_det_rand(rng) % 700;
  snprintf(path, sizeof(path), "%s", paths[r % 9]);
  r /= 9;
  s = stream_find((struct stream_state *)ref, util_str(path));
  json = s != NULL ? s->json : (int)(r % 4 == 0);
  memset(&c, 0, sizeof(c));
  c.path = util_str(path);
  c.time_ms = *now;
  c.content_type = util_str(json ? "application/json" : "text/plain");
  if (json) c.flags |= CMD_F_JSON;
  n = (size_t)(unit_det_rand(rng) % 120) + 1;
  for (i = 0; i < n; i++) data[i] = (char)('a' + unit_det_rand(rng) % 26);
  if (json) { /* a run of JSON messages as json_flatten stores them */
    n = (size_t)(unit_det_rand(rng) % 4) + 1;
    for (i = 0; i < n; i++) memcpy(data + 4 * i, "\"x\",", 4);
    c.n_msgs = n;
    n *= 4;
  }
  c.data.ptr = data;
  c.data.len = n;
  switch ((r >> 8) % 16) {
    case 0:
    case 1:
      c.type = CMD_CREATE;
      if (r & 0x10000) {
        c.flags |= CMD_F_TTL;
        c.ttl_s = 1 + (r >> 17) % 3;
      }
      if (r & 0x40000) { /* a fork: a reference, bytes below its base */
        c.flags |= CMD_F_FORK;
        c.fork_source = util_str(paths[(r >> 19) % 9]);
        c.fork_offset = (r >> 23) % 40;
        c.fork_sub = (r >> 29) % 3;
        c.fork_base = c.fork_offset + c.fork_sub * 2;
        c.fork_inc = 1 + (r >> 31) % 7;
      }
      break;
    case 2:
      c.type = CMD_DELETE;
      break;
    case 3:
      c.type = CMD_EXPIRE;
      break;
    case 4:
      c.type = CMD_TOUCH;
      c.incarnation = s != NULL ? s->incarnation : 1;
      break;
    case 5:
      c.type = CMD_FORK_ACQUIRE;
      if (r & 0x10000) {
        c.flags |= CMD_F_FORK_OFFSET;
        c.fork_offset = s != NULL && s->n_bounds > 0 ? s->bounds[0] : 0;
        c.fork_sub = (r >> 17) % 3;
        c.n_msgs = 2;
        if (s != NULL && (r & 0x100000)) { /* looked at, in the chain */
          c.flags |= CMD_F_UNIT;
          c.incarnation = (r & 0x200000) ? s->incarnation : 999;
          c.fork_offset = s->base > 0 ? s->base - 1 : 0;
        }
      }
      break;
    case 6:
      c.type = CMD_FORK_RELEASE;
      break;
    case 7: /* move the next append or two to the cold tier */
      c.type = CMD_COLD;
      c.incarnation = s != NULL ? s->incarnation : 1;
      c.cold_start = s != NULL ? s->cold_end : 0;
      c.cold_end = s != NULL && s->n_bounds > s->cold_units
                       ? s->bounds[s->cold_units + (r >> 16) % 2 <
                                           s->n_bounds
                                       ? s->cold_units + (r >> 16) % 2
                                       : s->cold_units]
                       : 1;
      snprintf(obj, sizeof(obj), "obj-%llu", (unsigned long long)r % 100000);
      c.object = util_str(obj);
      break;
    default:
      c.type = CMD_APPEND;
      if (r & 0x10000) {
        c.flags |= CMD_F_PRODUCER;
        c.producer_id = util_str((r & 0x20000) ? "p1" : "p2");
        c.producer_epoch = (r >> 18) % 2;
        c.producer_seq = (r >> 19) % 4;
      }
      if (r & 0x200000) {
        snprintf(seq, sizeof(seq), "%04llu", (unsigned long long)(r >> 22) % 40);
        c.flags |= CMD_F_SEQ;
        c.stream_seq = util_str(seq);
      }
      if ((r >> 8) % 16 == 15 && (r & 0x400000)) c.flags |= CMD_F_CLOSE;
      break;
  }
  if (lg->n == lg->cap) {
    lg->cap = lg->cap ? lg->cap * 2 : 256;
    lg->entries = (struct buf *)realloc(lg->entries, lg->cap * sizeof(*lg->entries));
  }
  memset(&lg->entries[lg->n], 0, sizeof(struct buf));
  ASSERT(cmd_encode(&c, &lg->entries[lg->n]) == URSULA_OK);
  lg->n++;
}

/* Apply log entry `index` (decoded from its bytes, as a group does). */
static void unit_det_apply(struct stream_state *st, struct unit_det_log *lg,
                           uint64_t index, struct stream_result *r,
                           struct buf *bounds) {
  struct cmd c;
  const struct buf *e = &lg->entries[index - 1];
  ASSERT(cmd_decode(e->ptr, e->len, &c, bounds) == URSULA_OK);
  stream_apply(st, index, &c, r);
}

/* Every stream's bytes in a and b, read through stream_read, agree. */
static int unit_det_same_bytes(struct stream_state *a, struct stream_state *b) {
  size_t k;
  int same = 1;
  struct buf x, y;
  memset(&x, 0, sizeof(x));
  memset(&y, 0, sizeof(y));
  for (k = 0; k < a->cap; k++) {
    struct stream *s, *t;
    for (s = a->slots[k]; s != NULL; s = s->hnext) {
      t = stream_find(b, stream_str(s->path, s->path_len));
      if (t == NULL || t->tail != s->tail) {
        same = 0;
        continue;
      }
      x.len = y.len = 0;
      /* the cold part would need the chunk store: compare what follows */
      if (stream_read(a, s, s->cold_end, s->tail, &x) != URSULA_OK ||
          stream_read(b, t, t->cold_end, t->tail, &y) != URSULA_OK ||
          x.len != y.len || (x.len > 0 && memcmp(x.ptr, y.ptr, x.len) != 0))
        same = 0;
    }
  }
  buf_free(&x);
  buf_free(&y);
  return same;
}

/* The same command log applied into states with different histories --
** A: everything in memory; B: a small hot limit (eviction after every
** entry, bytes read back from the log by (index, offset)), node-local
** reads, and a snapshot-and-restore every few hundred entries; C: a
** hash table grown large beforehand -- gives equal digests and equal
** snapshot bytes at every checkpoint, and every stream reads back the
** same; a snapshot restored into a fresh state has the same digest. */
static void test_stream_determinism(void) {
  struct unit_det_log lg;
  struct stream_state a, b, c, d;
  struct stream_result ra, rb, rc;
  struct buf sa, sb, sc, bounds;
  uint64_t rng = 20261130, now = 1700000000000ULL, i, da, db, dc, dd;
  int seed, mismatches = 0, checks = 0, restores = 0, forks = 0;
  memset(&lg, 0, sizeof(lg));
  memset(&ra, 0, sizeof(ra));
  memset(&rb, 0, sizeof(rb));
  memset(&rc, 0, sizeof(rc));
  memset(&sa, 0, sizeof(sa));
  memset(&sb, 0, sizeof(sb));
  memset(&sc, 0, sizeof(sc));
  memset(&bounds, 0, sizeof(bounds));
  for (seed = 0; seed < 4; seed++) {
    stream_state_init(&a);
    stream_state_init(&b);
    stream_state_init(&c);
    a.read_cold = b.read_cold = c.read_cold = unit_det_read;
    a.read_ctx = b.read_ctx = c.read_ctx = &lg;
    stream_table_grow(&c);
    stream_table_grow(&c);
    stream_table_grow(&c);
    rng = 20261130 + (uint64_t)seed * 7919;
    for (i = 1; i <= 1500; i++) {
      unit_det_gen(&rng, &now, &lg, &a);
      unit_det_apply(&a, &lg, lg.n, &ra, &bounds);
      unit_det_apply(&b, &lg, lg.n, &rb, &bounds);
      unit_det_apply(&c, &lg, lg.n, &rc, &bounds);
      if (ra.status != rb.status || ra.status != rc.status ||
          ra.tail != rb.tail) {
        if (mismatches++ < 3)
          printf("# entry %llu: replies %d / %d / %d\n", (unsigned long long)i,
                 ra.status, rb.status, rc.status);
      }
      stream_evict(&b, 64); /* B keeps almost nothing in memory */
      if (unit_det_rand(&rng) % 3 == 0) { /* reads on B only, after now */
        static const char *const rp[] = {"/a", "/b", "/c", "/d", "/e"};
        struct stream *s = stream_find(&b, util_str(rp[i % 5]));
        if (s != NULL) s->local.read_ms = now + unit_det_rand(&rng) % 3000;
      }
      if (i % 100 == 0 || i == 1500) {
        size_t k;
        struct stream *f;
        checks++;
        for (k = 0; k < a.cap; k++) /* forks by reference in the states */
          for (f = a.slots[k]; f != NULL; f = f->hnext)
            forks += f->base > 0;
        sa.len = sb.len = sc.len = 0;
        ASSERT(stream_digest(&a, &da) == URSULA_OK);
        ASSERT(stream_digest(&b, &db) == URSULA_OK);
        ASSERT(stream_digest(&c, &dc) == URSULA_OK);
        ASSERT(stream_snapshot(&a, &sa) == URSULA_OK);
        ASSERT(stream_snapshot(&b, &sb) == URSULA_OK);
        ASSERT(stream_snapshot(&c, &sc) == URSULA_OK);
        if (da != db || da != dc || sa.len != sb.len || sa.len != sc.len ||
            memcmp(sa.ptr, sb.ptr, sa.len) != 0 ||
            memcmp(sa.ptr, sc.ptr, sa.len) != 0 || !unit_det_same_bytes(&a, &b)) {
          if (mismatches++ < 3)
            printf("# seed %d entry %llu: digests %016llx %016llx %016llx\n",
                   seed, (unsigned long long)i, (unsigned long long)da,
                   (unsigned long long)db, (unsigned long long)dc);
        }
      }
      if (i % 350 == 0) { /* B restarts from its own snapshot */
        sb.len = 0;
        ASSERT(stream_snapshot(&b, &sb) == URSULA_OK);
        stream_state_free(&b);
        stream_state_init(&b);
        b.read_cold = unit_det_read;
        b.read_ctx = &lg;
        ASSERT(stream_restore(&b, sb.ptr, sb.len) == URSULA_OK);
        restores++;
      }
    }
    /* a snapshot installed into a fresh state */
    sa.len = 0;
    ASSERT(stream_snapshot(&a, &sa) == URSULA_OK);
    stream_state_init(&d);
    ASSERT(stream_restore(&d, sa.ptr, sa.len) == URSULA_OK);
    ASSERT(stream_digest(&d, &dd) == URSULA_OK && stream_digest(&a, &da) == URSULA_OK);
    ASSERT(dd == da);
    ASSERT(a.n > 0); /* the log did build streams */
    stream_state_free(&a);
    stream_state_free(&b);
    stream_state_free(&c);
    stream_state_free(&d);
  }
  ASSERT(mismatches == 0 && checks == 4 * 15 && restores == 4 * 4);
  ASSERT(forks > 0);
  for (i = 0; i < lg.n; i++) buf_free(&lg.entries[i]);
  free(lg.entries);
  buf_free(&sa);
  buf_free(&sb);
  buf_free(&sc);
  buf_free(&bounds);
  buf_free(&ra.releases);
  buf_free(&ra.garbage);
  buf_free(&rb.releases);
  buf_free(&rb.garbage);
  buf_free(&rc.releases);
  buf_free(&rc.garbage);
}

/* ------------------------------------------------------------ install */

/* A restore that takes any snapshot (the tests that use it only append). */
static int unit_gi_restore(void *arg, const void *p, size_t len) {
  (void)arg;
  (void)p;
  (void)len;
  return URSULA_OK;
}

/* Write entries from..to of lg (term 1) to the log in dir, synced every
** 16 entries. */
static int unit_gi_log(const char *dir, struct unit_det_log *lg, uint64_t from,
                       uint64_t to) {
  char err[URSULA_ERRMSG_LEN];
  struct wal_stats st;
  struct wal *w = NULL;
  struct buf recs;
  uint64_t i;
  int rc = wal_open(&w, NULL, dir, 0, err);
  memset(&recs, 0, sizeof(recs));
  if (rc == URSULA_OK)
    rc = wal_replay(w, unit_gi_restore, NULL, NULL, NULL, &st, err);
  if (rc == URSULA_OK) wal_set_segment_bytes(w, 4096);
  for (i = from; i <= to && rc == URSULA_OK; i++) {
    const struct buf *e = &lg->entries[i - 1];
    size_t at = recs.len;
    if ((rc = buf_reserve(&recs, WAL_RECORD_HEADER + e->len)) != URSULA_OK)
      break;
    recs.len += WAL_RECORD_HEADER;
    buf_append(&recs, e->ptr, e->len);
    rc = wal_frame(w, WAL_CMD, 1, i, recs.ptr + at, e->len);
    if (rc == URSULA_OK && (i % 16 == 0 || i == to)) {
      rc = wal_write(w, recs.ptr, recs.len);
      if (rc == URSULA_OK) rc = wal_flush(w);
      recs.len = 0;
    }
  }
  if (rc != URSULA_OK) printf("# unit_gi_log: %s\n", ursula_strerror(rc));
  buf_free(&recs);
  wal_close(w);
  return rc;
}

/* A group on the log in dir, replayed, with almost no bytes in memory
** (reads go to the log).  NULL (a failure counted) if it does not open. */
static struct group *unit_gi_open(const char *dir) {
  char err[URSULA_ERRMSG_LEN];
  struct group *g = group_new(0, 0, NULL);
  if (g == NULL ||
      group_open_wal(g, dir, 1, 64, UINT64_MAX / 4, NULL, err) != URSULA_OK) {
    printf("# group_open_wal %s: %s\n", dir, g ? err : "no memory");
    unit_failed++;
    group_free(g);
    return NULL;
  }
  return g;
}

/* Install the file dir_from/image into the log in dir_to, 64 KiB at a
** time. */
static int unit_gi_install(const char *from, const char *to) {
  char path[96], err[URSULA_ERRMSG_LEN];
  struct wal_snap_writer sw;
  struct wal_stats st;
  struct wal *w = NULL;
  struct buf img;
  size_t at;
  int rc;
  memset(&img, 0, sizeof(img));
  snprintf(path, sizeof(path), "%s/image", from);
  rc = wal_read_path(os_fs(), path, &img);
  if (rc == URSULA_OK) rc = wal_open(&w, NULL, to, 0, err);
  if (rc == URSULA_OK)
    rc = wal_replay(w, unit_gi_restore, NULL, NULL, NULL, &st, err);
  if (rc == URSULA_OK) rc = wal_install_begin(w, &sw);
  for (at = 0; rc == URSULA_OK && at < img.len; at += 65536)
    rc = wal_install_put(&sw, at, img.ptr + at,
                         img.len - at < 65536 ? img.len - at : 65536);
  if (rc == URSULA_OK) rc = wal_install_commit(w, &sw, err);
  if (rc != URSULA_OK) printf("# install: %s\n", ursula_strerror(rc));
  wal_close(w);
  buf_free(&img);
  return rc;
}

/* A snapshot installed on another node: group A replays a random command
** log (in 4 KiB segments, bytes read back from the log), takes a snapshot
** of its own (compacting its log) and writes an image; a fresh log B
** installs the image; a group on B has A's digest and reads every byte
** A reads -- the image carried them.  B then goes on with the same later
** entries as A (equal again), takes a snapshot of its own (which carries
** the image's bytes on), and after a restart still agrees, with no byte
** in memory and every byte the reference's. */
static void test_group_install(void) {
  struct unit_det_log lg;
  struct stream_state ref;
  struct stream_result r;
  struct buf bounds;
  struct group *a = NULL, *b = NULL;
  char da_dir[64], db_dir[64], cmd[160];
  uint64_t rng = 4242, now = 1700000000000ULL, i, ha = 0, hb = 0;
  memset(&lg, 0, sizeof(lg));
  memset(&r, 0, sizeof(r));
  memset(&bounds, 0, sizeof(bounds));
  strcpy(da_dir, "/tmp/ursula-unit-gia-XXXXXX");
  strcpy(db_dir, "/tmp/ursula-unit-gib-XXXXXX");
  ASSERT(mkdtemp(da_dir) != NULL && mkdtemp(db_dir) != NULL);
  stream_state_init(&ref);
  for (i = 1; i <= 1500; i++) { /* the log, and a reference state */
    unit_det_gen(&rng, &now, &lg, &ref);
    unit_det_apply(&ref, &lg, lg.n, &r, &bounds);
  }
  ASSERT(unit_gi_log(da_dir, &lg, 1, 1200) == URSULA_OK);
  if ((a = unit_gi_open(da_dir)) == NULL) goto out;
  ASSERT(group_snapshot(a) == URSULA_OK); /* its own, then compaction */
  ASSERT(group_write_image(a) == URSULA_OK);
  ASSERT(unit_gi_install(da_dir, db_dir) == URSULA_OK);
  if ((b = unit_gi_open(db_dir)) == NULL) goto out;
  ASSERT(stream_digest(group_state(a), &ha) == URSULA_OK &&
         stream_digest(group_state(b), &hb) == URSULA_OK && ha == hb);
  ASSERT(group_state(a)->n > 0 &&
         unit_det_same_bytes(group_state(a), group_state(b)));
  ASSERT(unit_det_same_bytes(group_state(b), group_state(a)));
  ASSERT(wal_first_index(b->wal) == 1201); /* none of A's log came along */
  group_snapshot(b); /* carries the image's pieces on */
  group_free(a);
  group_free(b);
  a = b = NULL;
  /* the same later entries on both */
  ASSERT(unit_gi_log(da_dir, &lg, 1201, 1500) == URSULA_OK);
  ASSERT(unit_gi_log(db_dir, &lg, 1201, 1500) == URSULA_OK);
  if ((a = unit_gi_open(da_dir)) == NULL) goto out;
  if ((b = unit_gi_open(db_dir)) == NULL) goto out;
  ASSERT(stream_digest(group_state(a), &ha) == URSULA_OK &&
         stream_digest(group_state(b), &hb) == URSULA_OK && ha == hb);
  ASSERT(stream_digest(&ref, &hb) == URSULA_OK && ha == hb);
  ASSERT(unit_det_same_bytes(group_state(a), group_state(b)) &&
         unit_det_same_bytes(group_state(b), group_state(a)));
  /* a replay copies no stream byte into memory (group_open_wal): every
  ** byte is read back from the log, and is the reference's */
  ASSERT(group_state(a)->hot_bytes == 0 && group_state(b)->hot_bytes == 0);
  ASSERT(unit_det_same_bytes(group_state(a), &ref) &&
         unit_det_same_bytes(&ref, group_state(a)));
out:
  group_free(a);
  group_free(b);
  stream_state_free(&ref);
  for (i = 0; i < lg.n; i++) buf_free(&lg.entries[i]);
  free(lg.entries);
  buf_free(&bounds);
  buf_free(&r.releases);
  buf_free(&r.garbage);
  snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", da_dir, db_dir);
  if (system(cmd) != 0) printf("# could not remove the test folders\n");
}

/* A log whose entries span more terms than the Raft core's trail holds
** (a single node's every restart is an election: a new term, and a run
** of the trail) still starts: the group snapshots first, so that the
** core starts with the snapshot and no runs, and it elects itself in the
** next term.  Entries: no-ops of terms 1..n, one term each. */
static void test_group_many_terms(void) {
  char dir[64], cmd[96], err[URSULA_ERRMSG_LEN];
  struct wal *w = NULL;
  struct wal_stats st;
  struct buf recs;
  struct group *g = NULL;
  uint64_t i, n = GROUP_TRAIL_RUNS + 44;
  int rc;
  memset(&recs, 0, sizeof(recs));
  strcpy(dir, "/tmp/ursula-unit-terms-XXXXXX");
  ASSERT(mkdtemp(dir) != NULL);
  rc = wal_open(&w, NULL, dir, 0, err);
  if (rc == URSULA_OK)
    rc = wal_replay(w, unit_gi_restore, NULL, NULL, NULL, &st, err);
  for (i = 1; i <= n && rc == URSULA_OK; i++) {
    size_t at = recs.len;
    rc = buf_reserve(&recs, WAL_RECORD_HEADER);
    recs.len += WAL_RECORD_HEADER;
    if (rc == URSULA_OK) rc = wal_frame(w, WAL_NOOP, i, i, recs.ptr + at, 0);
    if (rc == URSULA_OK && (i % 50 == 0 || i == n)) {
      rc = wal_write(w, recs.ptr, recs.len);
      if (rc == URSULA_OK) rc = wal_flush(w);
      recs.len = 0;
    }
  }
  if (rc == URSULA_OK) rc = wal_save_state(w, n, 1);
  ASSERT(rc == URSULA_OK);
  wal_close(w);
  buf_free(&recs);
  g = group_new(0, 0, NULL);
  ASSERT(g != NULL);
  if (g != NULL) {
    rc = group_open_wal(g, dir, 1, 64, UINT64_MAX / 4, NULL, err);
    if (rc != URSULA_OK) printf("# group_open_wal: %s\n", err);
    ASSERT(rc == URSULA_OK);
    ASSERT(g->raft.role == RAFT_LEADER && g->raft.term == n + 1);
    ASSERT(g->raft.snap_index == n && g->applied_index == n);
    group_free(g);
  }
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0) printf("# could not remove the test folder\n");
}

/* MULTI and ATTRS (cmd.c, stream.c): ATTRS's bytes as cmd.c writes them
** out; a MULTI's ops decoded back with their offsets in the entry; an
** atomic MULTI with a failing op changes nothing; the attributes in a
** state-machine snapshot, canonically. */
static void test_stream_multi_attrs(void) {
  static const unsigned char want[] = {
      0x02, 0x0e, 0x00, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31, 0x07, 0x2f, 0x64,
      0x65, 0x6d, 0x6f, 0x2f, 0x73, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0d, 0x7b, 0x22, 0x74,
      0x69, 0x74, 0x6c, 0x65, 0x22, 0x3a, 0x22, 0x74, 0x22, 0x7d};
  struct stream_state a, b;
  struct stream_result r;
  struct buf enc, bounds, ops, one, s1, s2;
  struct cmd c, d, op;
  struct str rest, e;
  struct stream *s;
  int k;
  memset(&enc, 0, sizeof(enc));
  memset(&bounds, 0, sizeof(bounds));
  memset(&ops, 0, sizeof(ops));
  memset(&one, 0, sizeof(one));
  memset(&s1, 0, sizeof(s1));
  memset(&s2, 0, sizeof(s2));
  memset(&r, 0, sizeof(r));
  c = unit_cmd(CMD_ATTRS, "/demo/s", 1700000000000ULL);
  c.content_type = util_str("");
  c.attrs = util_str("{\"title\":\"t\"}");
  ASSERT(cmd_encode(&c, &enc) == URSULA_OK);
  ASSERT(enc.len == sizeof(want) && memcmp(enc.ptr, want, sizeof(want)) == 0);
  ASSERT(cmd_decode(enc.ptr, enc.len, &d, &bounds) == URSULA_OK &&
         d.type == CMD_ATTRS);
  ASSERT_MEM(d.attrs.ptr, d.attrs.len, "{\"title\":\"t\"}");
  ASSERT(cmd_decode(enc.ptr, enc.len - 1, &d, &bounds) == URSULA_ECORRUPT);
  /* a MULTI of two appends to /m/a and /m/b; the second one fails */
  for (k = 0; k < 2; k++) {
    op = unit_cmd(CMD_APPEND, k ? "/m/b" : "/m/a", 0);
    op.flags = CMD_F_CT;
    op.content_type = util_str("text/plain");
    op.data = util_str(k ? "BB" : "AAA");
    one.len = 0;
    ASSERT(cmd_encode(&op, &one) == URSULA_OK);
    e.ptr = one.ptr;
    e.len = one.len;
    ASSERT(cmd_put_bytes(&ops, e) == URSULA_OK);
  }
  c = unit_cmd(CMD_MULTI, "/m", 5);
  c.content_type = util_str("");
  c.flags = CMD_F_ATOMIC;
  c.ops.ptr = ops.ptr;
  c.ops.len = ops.len;
  c.n_ops = 2;
  enc.len = 0;
  ASSERT(cmd_encode(&c, &enc) == URSULA_OK);
  ASSERT(cmd_decode(enc.ptr, enc.len, &d, &bounds) == URSULA_OK &&
         d.n_ops == 2);
  rest = d.ops;
  ASSERT(cmd_op_next(&d, &rest, &op) == 1 && op.time_ms == 5);
  ASSERT_MEM(op.data.ptr, op.data.len, "AAA");
  ASSERT(op.raw == d.raw && op.data.ptr > enc.ptr &&
         op.data.ptr < enc.ptr + enc.len); /* its offset is in the entry */
  ASSERT(cmd_op_next(&d, &rest, &op) == 1 && cmd_op_next(&d, &rest, &op) == 0);
  /* n_ops not the ops' count: damage */
  enc.ptr[enc.len - ops.len - 1] = 3;
  ASSERT(cmd_decode(enc.ptr, enc.len, &d, &bounds) == URSULA_ECORRUPT);
  enc.ptr[enc.len - ops.len - 1] = 2;
  stream_state_init(&a);
  stream_state_init(&b);
  c = unit_cmd(CMD_CREATE, "/m/a", 1);
  c.flags = CMD_F_CT | CMD_F_ATTRS;
  c.content_type = util_str("text/plain");
  c.attrs = util_str("{\"title\":\"a\"}");
  ASSERT(unit_apply(&a, &c, &r) == 201);
  c = unit_cmd(CMD_CREATE, "/m/b", 1);
  c.flags = CMD_F_CT | CMD_F_CLOSE; /* closed: the second op fails */
  c.content_type = util_str("text/plain");
  ASSERT(unit_apply(&a, &c, &r) == 201);
  ASSERT(cmd_decode(enc.ptr, enc.len, &d, &bounds) == URSULA_OK);
  ASSERT(stream_apply(&a, 9, &d, &r) == URSULA_OK && r.status == 409 &&
         r.ops.len == 2 * sizeof(struct stream_op));
  s = stream_find(&a, util_str("/m/a"));
  ASSERT(s != NULL && s->tail == 0); /* the first op did not apply */
  d.flags = 0; /* each on its own: the first applies, the second fails */
  ASSERT(stream_apply(&a, 10, &d, &r) == URSULA_OK && r.status == 200);
  ASSERT(s->tail == 3);
  {
    struct stream_op o[2];
    memcpy(o, r.ops.ptr, sizeof(o));
    ASSERT(o[0].r.status == 204 && o[1].r.status == 409);
  }
  /* the attributes in a snapshot, and back */
  ASSERT(stream_snapshot(&a, &s1) == URSULA_OK);
  ASSERT(stream_restore(&b, s1.ptr, s1.len) == URSULA_OK);
  ASSERT(stream_snapshot(&b, &s2) == URSULA_OK);
  ASSERT(s1.len == s2.len && memcmp(s1.ptr, s2.ptr, s1.len) == 0);
  s = stream_find(&b, util_str("/m/a"));
  ASSERT(s != NULL);
  ASSERT_MEM(s->attrs, s->attrs_len, "{\"title\":\"a\"}");
  stream_state_free(&a);
  stream_state_free(&b);
  buf_free(&r.ops);
  buf_free(&r.garbage);
  buf_free(&r.releases);
  buf_free(&enc);
  buf_free(&bounds);
  buf_free(&ops);
  buf_free(&one);
  buf_free(&s1);
  buf_free(&s2);
}

/* Buckets: the path rule (util.c), BUCKET_CREATE's bytes as cmd.c
** writes them out, apply, and the records in a snapshot (version 5;
** version 4, which has none, still read). */
static void test_stream_buckets(void) {
  static const unsigned char want[] = {
      0x02, 0x09, 0x00, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31, 0x05, 0x2f,
      0x64, 0x65, 0x6d, 0x6f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  struct util_bucket_path bp;
  struct stream_state a, b;
  struct stream_result r;
  struct buf enc, s1, s2;
  struct cmd c;
  const char *p;
  memset(&r, 0, sizeof(r));
  memset(&enc, 0, sizeof(enc));
  memset(&s1, 0, sizeof(s1));
  memset(&s2, 0, sizeof(s2));
  p = "/demo";
  util_bucket_path(p, strlen(p), &bp);
  ASSERT(bp.kind == UTIL_PATH_BUCKET && bp.group_len == 5);
  p = "/demo/streams";
  util_bucket_path(p, strlen(p), &bp);
  ASSERT(bp.kind == UTIL_PATH_LIST);
  p = "/demo/s1";
  util_bucket_path(p, strlen(p), &bp);
  ASSERT(bp.kind == UTIL_PATH_IN_BUCKET && bp.group_len == 8);
  ASSERT_MEM(bp.id.ptr, bp.id.len, "s1");
  p = "/demo/k/s1";
  util_bucket_path(p, strlen(p), &bp);
  ASSERT(bp.kind == UTIL_PATH_AFFINITY && bp.group_len == 7);
  ASSERT_MEM(bp.id.ptr, bp.id.len, "k/s1");
  /* a stream's sub-resource: its stream, group, id and rest */
  p = "/demo/k/attrs";
  util_bucket_path(p, strlen(p), &bp);
  ASSERT(bp.kind == UTIL_PATH_SUB && bp.stream_len == 7 && bp.group_len == 7);
  ASSERT_MEM(bp.sub.ptr, bp.sub.len, "attrs");
  ASSERT(bp.rest.len == 0);
  p = "/demo/k/s1/snapshot/5";
  util_bucket_path(p, strlen(p), &bp);
  ASSERT(bp.kind == UTIL_PATH_SUB && bp.stream_len == 10 && bp.group_len == 7);
  ASSERT_MEM(bp.id.ptr, bp.id.len, "k/s1");
  ASSERT_MEM(bp.rest.ptr, bp.rest.len, "5");
  p = "/demo/k/$transaction";
  util_bucket_path(p, strlen(p), &bp);
  ASSERT(bp.kind == UTIL_PATH_TXN && bp.group_len == 7);
  p = "/demo/k/streams";
  util_bucket_path(p, strlen(p), &bp);
  ASSERT(bp.kind == UTIL_PATH_RESERVED);
  p = "/demo/snapshot";
  util_bucket_path(p, strlen(p), &bp);
  ASSERT(bp.kind == UTIL_PATH_RESERVED);
  /* no bucket: too short, upper case, "__", 4 segments, "..", empty */
  p = "/v1/stream/x";
  util_bucket_path(p, strlen(p), &bp);
  ASSERT(bp.kind == UTIL_PATH_PLAIN && bp.group_len == 12);
  p = "/Demo";
  util_bucket_path(p, strlen(p), &bp);
  ASSERT(bp.kind == UTIL_PATH_PLAIN);
  p = "/__ursula";
  util_bucket_path(p, strlen(p), &bp);
  ASSERT(bp.kind == UTIL_PATH_PLAIN);
  p = "/demo/a/b/c";
  util_bucket_path(p, strlen(p), &bp);
  ASSERT(bp.kind == UTIL_PATH_PLAIN && bp.group_len == 11);
  p = "/demo/a..b";
  util_bucket_path(p, strlen(p), &bp);
  ASSERT(bp.kind == UTIL_PATH_PLAIN);
  p = "/demo/";
  util_bucket_path(p, strlen(p), &bp);
  ASSERT(bp.kind == UTIL_PATH_PLAIN);
  ASSERT(util_bucket_name_ok(util_str("a_b-9")) &&
         !util_bucket_name_ok(util_str("abc")) &&
         util_bucket_name_ok(util_str(
             "0123456789012345678901234567890123456789012345678901234567890123")) &&
         !util_bucket_name_ok(util_str(
             "01234567890123456789012345678901234567890123456789012345678901234")));
  /* the bytes of cmd.c's example */
  c = unit_cmd(CMD_BUCKET_CREATE, "/demo", 1700000000000ULL);
  c.content_type = util_str("");
  ASSERT(cmd_encode(&c, &enc) == URSULA_OK);
  ASSERT(enc.len == sizeof(want) && memcmp(enc.ptr, want, sizeof(want)) == 0);
  /* apply: 201, 200 (the first time kept), 204, 404; a bad name 400 */
  stream_state_init(&a);
  stream_state_init(&b);
  ASSERT(unit_apply(&a, &c, &r) == 201);
  c.time_ms = 1700000000999ULL;
  ASSERT(unit_apply(&a, &c, &r) == 200);
  ASSERT(stream_bucket_find(&a, util_str("demo")) != NULL &&
         stream_bucket_find(&a, util_str("demo"))->created_ms ==
             1700000000000ULL);
  c = unit_cmd(CMD_BUCKET_CREATE, "/abcd", 5);
  ASSERT(unit_apply(&a, &c, &r) == 201);
  c = unit_cmd(CMD_BUCKET_CREATE, "/zzzz", 6);
  ASSERT(unit_apply(&a, &c, &r) == 201);
  c = unit_cmd(CMD_BUCKET_DELETE, "/zzzz", 7);
  ASSERT(unit_apply(&a, &c, &r) == 204);
  ASSERT(unit_apply(&a, &c, &r) == 404);
  c = unit_cmd(CMD_BUCKET_CREATE, "/ab", 8);
  ASSERT(unit_apply(&a, &c, &r) == 400);
  ASSERT(a.n_buckets == 2);
  /* the records survive a snapshot, canonically */
  ASSERT(stream_snapshot(&a, &s1) == URSULA_OK);
  ASSERT(s1.len > 0 && (unsigned char)s1.ptr[0] == 8);
  ASSERT(stream_restore(&b, s1.ptr, s1.len) == URSULA_OK);
  ASSERT(b.n_buckets == 2 && stream_bucket_find(&b, util_str("abcd")) != NULL &&
         stream_bucket_find(&b, util_str("abcd"))->created_ms == 5);
  ASSERT(stream_snapshot(&b, &s2) == URSULA_OK);
  ASSERT(s2.len == s1.len && memcmp(s2.ptr, s1.ptr, s1.len) == 0);
  stream_state_free(&b);
  stream_state_init(&b);
  /* version 4: the same without the records (here: none, no streams) */
  {
    static const unsigned char v4[] = {4, 1, 0};
    ASSERT(stream_restore(&b, v4, sizeof(v4)) == URSULA_OK &&
           b.n_buckets == 0);
  }
  stream_state_free(&b);
  stream_state_free(&a);
  buf_free(&enc);
  buf_free(&s1);
  buf_free(&s2);
  buf_free(&r.releases);
  buf_free(&r.garbage);
}

/* JSON records (stream.c, "Records"): APPEND's Stream-Record-Match as
** cmd.c writes it out, the flags refused where they do not belong, the
** counts per unit (an array of 3 is 3 records), the 412, a producer's
** duplicate answered before the match, record <-> offset, a fork's
** record base, and the counts in a snapshot (version 6; a version-5
** stream counts none). */
static void test_stream_records(void) {
  static const unsigned char want[] = {
      0x02, 0x02, 0x82, 0x0a, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31, 0x02, 0x2f,
      0x6a, 0x10, 0x61, 0x70, 0x70, 0x6c, 0x69, 0x63, 0x61, 0x74, 0x69, 0x6f,
      0x6e, 0x2f, 0x6a, 0x73, 0x6f, 0x6e, 0x02, 0x31, 0x2c, 0x01, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03};
  struct stream_state a, b;
  struct stream_result r;
  struct buf enc, bounds, s1, s2;
  struct cmd c, d;
  struct stream *s;
  uint64_t off, skip;
  memset(&r, 0, sizeof(r));
  memset(&enc, 0, sizeof(enc));
  memset(&bounds, 0, sizeof(bounds));
  memset(&s1, 0, sizeof(s1));
  memset(&s2, 0, sizeof(s2));
  c = unit_cmd(CMD_APPEND, "/j", 1700000000000ULL);
  c.flags = CMD_F_JSON | CMD_F_CT | CMD_F_RECORD_MATCH;
  c.content_type = util_str("application/json");
  c.data = util_str("1,");
  c.n_msgs = 1;
  c.record_match = 3;
  ASSERT(cmd_encode(&c, &enc) == URSULA_OK);
  ASSERT(enc.len == sizeof(want) && memcmp(enc.ptr, want, sizeof(want)) == 0);
  ASSERT(cmd_decode(enc.ptr, enc.len, &d, &bounds) == URSULA_OK &&
         d.record_match == 3 && (d.flags & CMD_F_RECORD_MATCH));
  /* a byte more, a byte less, the flag without its field */
  ASSERT(buf_append(&enc, "", 1) == URSULA_OK);
  ASSERT(cmd_decode(enc.ptr, enc.len, &d, &bounds) == URSULA_ECORRUPT);
  ASSERT(cmd_decode(enc.ptr, enc.len - 2, &d, &bounds) == URSULA_ECORRUPT);
  /* without the flag the old bytes: the trailing 03 is refused */
  enc.len = 0;
  c.flags &= ~(uint32_t)CMD_F_RECORD_MATCH;
  ASSERT(cmd_encode(&c, &enc) == URSULA_OK && enc.len == sizeof(want) - 1);
  ASSERT(cmd_decode(want, sizeof(want), &d, &bounds) == URSULA_OK);
  {
    unsigned char bad[sizeof(want)];
    memcpy(bad, want, sizeof(want));
    bad[2] = 0x02; /* flags JSON | CT: 0x102 is 82 02 */
    bad[3] = 0x02;
    ASSERT(cmd_decode(bad, sizeof(bad), &d, &bounds) == URSULA_ECORRUPT);
    bad[1] = CMD_CREATE; /* RECORD_MATCH on a CREATE */
    bad[3] = 0x0a;
    ASSERT(cmd_decode(bad, sizeof(bad), &d, &bounds) == URSULA_ECORRUPT);
  }
  /* apply */
  unit_stream_index = 7; /* (snapshots name the units' entries) */
  stream_state_init(&a);
  stream_state_init(&b);
  c = unit_cmd(CMD_CREATE, "/j", 1);
  c.flags = CMD_F_JSON | CMD_F_CT;
  c.content_type = util_str("application/json");
  c.data = util_str("1,2,");
  c.n_msgs = 2;
  ASSERT(unit_apply(&a, &c, &r) == 201);
  ASSERT(r.rec_first == 0 && r.rec_start == 0 && r.rec_next == 2);
  c.type = CMD_APPEND;
  c.data = util_str("[3,4],{\"a\":5},6,"); /* the stored form of an array of 3 */
  c.n_msgs = 3;
  ASSERT(unit_apply(&a, &c, &r) == 204);
  ASSERT(r.rec_start == 2 && r.rec_next == 5);
  c.flags |= CMD_F_RECORD_MATCH;
  c.record_match = 4; /* stale */
  c.data = util_str("7,");
  c.n_msgs = 1;
  ASSERT(unit_apply(&a, &c, &r) == 412 && r.rec_next == 5);
  s = stream_find(&a, util_str("/j"));
  ASSERT(s != NULL && s->tail == 20 && stream_record_next(s) == 5);
  c.record_match = 5;
  ASSERT(unit_apply(&a, &c, &r) == 204 && r.rec_start == 5 && r.rec_next == 6);
  /* a producer: the duplicate is answered before the (now stale) match */
  c.flags = CMD_F_JSON | CMD_F_CT | CMD_F_PRODUCER | CMD_F_RECORD_MATCH;
  c.producer_id = util_str("p");
  c.record_match = 6;
  ASSERT(unit_apply(&a, &c, &r) == 200 && r.rec_next == 7);
  ASSERT(unit_apply(&a, &c, &r) == 204 && r.producer_echo && r.rec_next == 7);
  c.producer_seq = 1; /* a new one with the stale match: 412 */
  ASSERT(unit_apply(&a, &c, &r) == 412 && r.rec_next == 7);
  /* record <-> offset: "1,2," "[3,4],{"a":5},6," "7," "7," */
  s = stream_find(&a, util_str("/j"));
  stream_record_find(s, 0, &off, &skip);
  ASSERT(off == 0 && skip == 0);
  stream_record_find(s, 3, &off, &skip);
  ASSERT(off == 4 && skip == 1);
  stream_record_find(s, 6, &off, &skip);
  ASSERT(off == 22 && skip == 0);
  stream_record_find(s, 7, &off, &skip);
  ASSERT(off == s->tail && skip == 0);
  ASSERT(stream_record_at(s, 4) == 2 && stream_record_at(s, s->tail) == 7);
  /* a text stream: the match is a 400, no records */
  c = unit_cmd(CMD_CREATE, "/t", 2);
  c.data = util_str("abc");
  ASSERT(unit_apply(&a, &c, &r) == 201);
  c.type = CMD_APPEND;
  c.flags = CMD_F_RECORD_MATCH;
  ASSERT(unit_apply(&a, &c, &r) == 400);
  /* a fork with its record base */
  c = unit_cmd(CMD_CREATE, "/f", 3);
  c.flags = CMD_F_JSON | CMD_F_CT | CMD_F_FORK | CMD_F_FORK_OFFSET |
            CMD_F_RECORD_BASE;
  c.content_type = util_str("application/json");
  c.fork_source = util_str("/j");
  c.fork_offset = c.fork_base = 22;
  c.fork_inc = 1;
  c.record_base = 6;
  c.data = util_str("8,");
  c.n_msgs = 1;
  ASSERT(unit_apply(&a, &c, &r) == 201 && r.rec_start == 6 && r.rec_next == 7);
  s = stream_find(&a, util_str("/f"));
  stream_record_find(s, 6, &off, &skip);
  ASSERT(off == 22 && skip == 0 && stream_record_at(s, 22) == 6);
  /* the counts survive a snapshot, canonically */
  ASSERT(stream_snapshot(&a, &s1) == URSULA_OK);
  ASSERT(s1.len > 0 && (unsigned char)s1.ptr[0] == 8);
  ASSERT(stream_restore(&b, s1.ptr, s1.len) == URSULA_OK);
  s = stream_find(&b, util_str("/j"));
  ASSERT(s != NULL && stream_record_next(s) == 7);
  stream_record_find(s, 3, &off, &skip);
  ASSERT(off == 4 && skip == 1);
  s = stream_find(&b, util_str("/f"));
  ASSERT(s != NULL && s->rec_base == 6 && stream_record_next(s) == 7);
  ASSERT(stream_snapshot(&b, &s2) == URSULA_OK);
  ASSERT(s2.len == s1.len && memcmp(s2.ptr, s1.ptr, s1.len) == 0);
  stream_state_free(&b);
  stream_state_init(&b);
  /* version 5: a JSON stream of one unit "1," (log index 9, offset 0),
  ** read with no record counted */
  {
    static const unsigned char v5[] = {
        5, 2, 1, 2, '/', 'k', 16, 'a', 'p', 'p', 'l', 'i', 'c', 'a', 't',
        'i', 'o', 'n', '/', 'j', 's', 'o', 'n', 1, 2, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 2, 9, 0, 0};
    ASSERT(stream_restore(&b, v5, sizeof(v5)) == URSULA_OK);
    s = stream_find(&b, util_str("/k"));
    ASSERT(s != NULL && s->json && s->tail == 2 && stream_record_next(s) == 0);
  }
  stream_state_free(&b);
  stream_state_free(&a);
  unit_stream_index = 0;
  buf_free(&enc);
  buf_free(&bounds);
  buf_free(&s1);
  buf_free(&s2);
  buf_free(&r.releases);
  buf_free(&r.garbage);
}

/* Snapshots and retention (stream.c, SNAPSHOTS): RETAIN's bytes as
** cmd.c writes them out, SNAPSHOT_PUT's round trip, the rules of both,
** the bytes kept in the log (oldest index, pieces), and both in a state
** machine snapshot (format 6; 5 still read). */
static void test_stream_snapshots(void) {
  static const unsigned char want[] = {
      0x02, 0x0c, 0x00, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31, 0x09, 0x2f,
      0x64, 0x65, 0x6d, 0x6f, 0x2f, 0x64, 0x6f, 0x63, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0xac, 0x02};
  static const char d1[] =
      "sha256:1111111111111111111111111111111111111111111111111111111111111111";
  static const char d2[] =
      "sha256:2222222222222222222222222222222222222222222222222222222222222222";
  struct stream_state a, b;
  struct stream_result r;
  struct buf enc, bounds, s1, s2, out;
  struct cmd c, d;
  struct stream *s;
  memset(&r, 0, sizeof(r));
  memset(&enc, 0, sizeof(enc));
  memset(&bounds, 0, sizeof(bounds));
  memset(&s1, 0, sizeof(s1));
  memset(&s2, 0, sizeof(s2));
  memset(&out, 0, sizeof(out));
  /* the bytes of cmd.c's example */
  c = unit_cmd(CMD_RETAIN, "/demo/doc", 1700000000000ULL);
  c.content_type = util_str("");
  c.at = 300;
  ASSERT(cmd_encode(&c, &enc) == URSULA_OK);
  ASSERT(enc.len == sizeof(want) && memcmp(enc.ptr, want, sizeof(want)) == 0);
  /* SNAPSHOT_PUT: every field back */
  c = unit_cmd(CMD_SNAPSHOT_PUT, "/demo/doc", 7);
  c.content_type = util_str("application/x-loro");
  c.data = util_str("SNAP");
  c.at = 4;
  c.digest = util_str(d1);
  c.match = util_str("none");
  c.flags = CMD_F_MATCH;
  enc.len = 0;
  ASSERT(cmd_encode(&c, &enc) == URSULA_OK);
  ASSERT(cmd_decode(enc.ptr, enc.len, &d, &bounds) == URSULA_OK);
  ASSERT(d.type == CMD_SNAPSHOT_PUT && d.at == 4 &&
         util_str_eq(d.digest, d1) && util_str_eq(d.match, "none") &&
         util_str_eq(d.data, "SNAP") && d.flags == CMD_F_MATCH);
  ASSERT(cmd_decode(enc.ptr, enc.len - 1, &d, &bounds) == URSULA_ECORRUPT);
  /* a stream of three appends: 0 [u1] 2 [u2] 4 [u3] 6 */
  stream_state_init(&a);
  stream_state_init(&b);
  unit_stream_index = 10;
  c = unit_cmd(CMD_CREATE, "/demo/doc", 1);
  ASSERT(unit_apply(&a, &c, &r) == 201);
  c = unit_cmd(CMD_APPEND, "/demo/doc", 2);
  c.data = util_str("u1");
  unit_stream_index = 11;
  ASSERT(unit_apply(&a, &c, &r) == 204);
  c.data = util_str("u2");
  unit_stream_index = 12;
  ASSERT(unit_apply(&a, &c, &r) == 204);
  c.data = util_str("u3");
  unit_stream_index = 13;
  ASSERT(unit_apply(&a, &c, &r) == 204);
  c = unit_cmd(CMD_SNAPSHOT_PUT, "/demo/doc", 3);
  c.content_type = util_str("application/x-loro");
  c.data = util_str("SNAP");
  c.digest = util_str(d1);
  c.at = 7;
  ASSERT(unit_apply(&a, &c, &r) == 400); /* past the tail */
  c.at = 3;
  ASSERT(unit_apply(&a, &c, &r) == 400); /* not a boundary */
  c.at = 4;
  c.flags = CMD_F_MATCH;
  c.match = util_str(d1);
  ASSERT(unit_apply(&a, &c, &r) == 409); /* there is none yet */
  c.match = util_str("none");
  unit_stream_index = 14;
  ASSERT(unit_apply(&a, &c, &r) == 201);
  ASSERT(unit_apply(&a, &c, &r) == 200); /* the same again */
  c.flags = 0;
  c.digest = util_str(d2);
  ASSERT(unit_apply(&a, &c, &r) == 409); /* other bytes, same offset */
  c.at = 2;
  ASSERT(unit_apply(&a, &c, &r) == 409); /* below the current one */
  s = stream_find(&a, util_str("/demo/doc"));
  ASSERT(s != NULL && s->has_snap && s->snap_at == 4 && s->snap_len == 4 &&
         s->snap_loc.index == 14 && strcmp(s->snap_digest, d1) == 0);
  ASSERT(stream_read_snapshot(&a, s, &out) == URSULA_OK &&
         out.len == 4 && memcmp(out.ptr, "SNAP", 4) == 0);
  /* the snapshot's entry pins the log; it travels as a piece below */
  ASSERT(stream_oldest_index(&a, 1) == 11);
  ASSERT(stream_log_units(&a, 15, &s1) == URSULA_OK &&
         s1.len == 4 * sizeof(struct stream_piece));
  /* RETAIN: rules */
  c = unit_cmd(CMD_RETAIN, "/demo/doc", 4);
  c.at = 7;
  ASSERT(unit_apply(&a, &c, &r) == 400);
  c.at = 3;
  ASSERT(unit_apply(&a, &c, &r) == 400);
  c.at = 6;
  ASSERT(unit_apply(&a, &c, &r) == 409); /* past the snapshot */
  c.at = 4;
  ASSERT(unit_apply(&a, &c, &r) == 204 && s->retained == 4 &&
         s->retained_units == 2 && s->local.hot_start == 4);
  c.at = 2;
  ASSERT(unit_apply(&a, &c, &r) == 204 && s->retained == 4); /* no back */
  c = unit_cmd(CMD_SNAPSHOT_PUT, "/demo/doc", 5);
  c.digest = util_str(d2);
  c.at = 2;
  ASSERT(unit_apply(&a, &c, &r) == 400); /* below the retained offset */
  /* the units below pin the log no more */
  ASSERT(stream_oldest_index(&a, 1) == 13);
  ASSERT(stream_log_units(&a, 15, &s1) == URSULA_OK &&
         s1.len == 2 * sizeof(struct stream_piece));
  /* both survive a snapshot, canonically */
  s1.len = 0;
  ASSERT(stream_snapshot(&a, &s1) == URSULA_OK && s1.ptr[0] == 8);
  ASSERT(stream_restore(&b, s1.ptr, s1.len) == URSULA_OK);
  s = stream_find(&b, util_str("/demo/doc"));
  ASSERT(s != NULL && s->retained == 4 && s->retained_units == 2 &&
         s->has_snap && s->snap_at == 4 && s->snap_len == 4 &&
         s->snap_loc.index == 14 && !s->local.snap_hot &&
         strcmp(s->snap_type, "application/x-loro") == 0 &&
         strcmp(s->snap_digest, d1) == 0);
  ASSERT(stream_snapshot(&b, &s2) == URSULA_OK);
  ASSERT(s2.len == s1.len && memcmp(s2.ptr, s1.ptr, s1.len) == 0);
  /* a damaged retained offset (not a boundary) is refused */
  {
    size_t k;
    int refused = 0;
    for (k = 0; k + 3 < s1.len; k++) /* retained 4, has 1, at 4, type 18 */
      if (memcmp(s1.ptr + k, "\4\1\4\22", 4) == 0) {
        struct stream_state x;
        s1.ptr[k] = 3;
        stream_state_init(&x);
        refused = stream_restore(&x, s1.ptr, s1.len) == URSULA_ECORRUPT;
        stream_state_free(&x);
        s1.ptr[k] = 4;
        break;
      }
    ASSERT(refused);
  }
  stream_state_free(&b);
  /* retained to the tail, the snapshot there: its entry alone pins the
  ** log, and is the one piece below it */
  stream_state_init(&b);
  unit_stream_index = 20;
  c = unit_cmd(CMD_CREATE, "/solo", 1);
  c.data = util_str("xyz");
  ASSERT(unit_apply(&b, &c, &r) == 201);
  unit_stream_index = 21;
  c = unit_cmd(CMD_SNAPSHOT_PUT, "/solo", 2);
  c.data = util_str("SNAPSHOT");
  c.digest = util_str(d1);
  c.at = 3;
  ASSERT(unit_apply(&b, &c, &r) == 201);
  unit_stream_index = 22;
  c = unit_cmd(CMD_RETAIN, "/solo", 3);
  c.at = 3;
  ASSERT(unit_apply(&b, &c, &r) == 204);
  ASSERT(stream_oldest_index(&b, 1) == 21);
  ASSERT(stream_log_units(&b, 22, &s2) == URSULA_OK &&
         s2.len == sizeof(struct stream_piece) &&
         ((const struct stream_piece *)(void *)s2.ptr)->index == 21 &&
         ((const struct stream_piece *)(void *)s2.ptr)->len == 8);
  s2.len = 0;
  stream_state_free(&b);
  /* version 5: no retained offset and no snapshot */
  stream_state_init(&b);
  {
    static const unsigned char v5[] = {5, 1, 0, 0};
    ASSERT(stream_restore(&b, v5, sizeof(v5)) == URSULA_OK);
  }
  stream_state_free(&b);
  stream_state_free(&a);
  unit_stream_index = 0;
  buf_free(&enc);
  buf_free(&bounds);
  buf_free(&s1);
  buf_free(&s2);
  buf_free(&out);
  buf_free(&r.releases);
  buf_free(&r.garbage);
}

static const struct unit_case unit_stream_cases[] = {
    {"stream_records", test_stream_records},
    {"stream_snapshots", test_stream_snapshots},
    {"stream_multi_attrs", test_stream_multi_attrs},
    {"stream_buckets", test_stream_buckets},
    {"stream_snapshot", test_stream_snapshot},
    {"stream_cmd_roundtrip", test_stream_cmd_roundtrip},
    {"stream_create_append", test_stream_create_append},
    {"stream_seq_and_close", test_stream_seq_and_close},
    {"stream_producer", test_stream_producer},
    {"stream_ttl_and_forks", test_stream_ttl_and_forks},
    {"stream_fork_create", test_stream_fork_create},
    {"stream_fork_v1", test_stream_fork_v1},
    {"stream_fork_snapshot", test_stream_fork_snapshot},
    {"stream_rfc3339", test_stream_rfc3339},
    {"stream_offsets", test_stream_offsets},
    {"stream_touch", test_stream_touch},
    {"stream_determinism", test_stream_determinism},
    {"group_install", test_group_install},
    {"group_many_terms", test_group_many_terms},
    {NULL, NULL}};
