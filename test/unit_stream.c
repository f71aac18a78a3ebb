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
  uint64_t b[3] = {5, 9, 300};
  size_t cut;
  memset(&enc, 0, sizeof(enc));
  memset(&bounds, 0, sizeof(bounds));
  c.flags = CMD_F_PRODUCER | CMD_F_SEQ | CMD_F_CLOSE;
  c.data = util_str("hello\0world");
  c.producer_id = util_str("p1");
  c.producer_epoch = 3;
  c.producer_seq = (1ULL << 53) - 1;
  c.stream_seq = util_str("0009");
  c.inherited = util_str("abc");
  c.n_bounds = 3;
  c.bounds = b;
  ASSERT(cmd_encode(&c, &enc) == URSULA_OK);
  ASSERT(cmd_decode(enc.ptr, enc.len, &d, &bounds) == URSULA_OK);
  ASSERT(d.type == CMD_APPEND && d.flags == c.flags && d.time_ms == c.time_ms);
  ASSERT_MEM(d.path.ptr, d.path.len, "/v1/stream/a");
  ASSERT(d.producer_seq == c.producer_seq && d.producer_epoch == 3);
  ASSERT_MEM(d.stream_seq.ptr, d.stream_seq.len, "0009");
  ASSERT(d.n_bounds == 3 && d.bounds[0] == 5 && d.bounds[1] == 9 &&
         d.bounds[2] == 300);
  /* every truncation is detected, never read past the end */
  for (cut = 0; cut < enc.len; cut++)
    ASSERT(cmd_decode(enc.ptr, cut, &d, &bounds) == URSULA_ECORRUPT);
  enc.ptr[0] = 9; /* unknown version */
  ASSERT(cmd_decode(enc.ptr, enc.len, &d, &bounds) == URSULA_ECORRUPT);
  buf_free(&enc);
  buf_free(&bounds);
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

static void test_stream_fork_create(void) {
  struct stream_state st;
  struct stream_result r;
  struct cmd c;
  struct stream *s;
  uint64_t b[1] = {3};
  memset(&r, 0, sizeof(r));
  stream_state_init(&st);
  c = unit_cmd(CMD_CREATE, "/fork", 1);
  c.flags = CMD_F_FORK;
  c.fork_source = util_str("/src");
  c.inherited = util_str("abcde"); /* unit "abc", then a 2-byte prefix */
  c.n_bounds = 1;
  c.bounds = b;
  c.data = util_str("Z");
  ASSERT(unit_apply(&st, &c, &r) == 201 && r.tail == 6 && !r.release_source);
  s = stream_find(&st, util_str("/fork"));
  ASSERT(s != NULL && s->n_bounds == 3 && s->bounds[0] == 3 &&
         s->bounds[1] == 5 && s->bounds[2] == 6);
  ASSERT(unit_apply(&st, &c, &r) == 200 && r.release_source);
  c = unit_cmd(CMD_DELETE, "/fork", 2);
  ASSERT(unit_apply(&st, &c, &r) == 204);
  ASSERT(r.releases.len == 5 && memcmp(r.releases.ptr, "/src", 5) == 0);
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
  ASSERT(stream_oldest_index(&b) == 7);
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

static const struct unit_case unit_stream_cases[] = {
    {"stream_snapshot", test_stream_snapshot},
    {"stream_cmd_roundtrip", test_stream_cmd_roundtrip},
    {"stream_create_append", test_stream_create_append},
    {"stream_seq_and_close", test_stream_seq_and_close},
    {"stream_producer", test_stream_producer},
    {"stream_ttl_and_forks", test_stream_ttl_and_forks},
    {"stream_fork_create", test_stream_fork_create},
    {"stream_rfc3339", test_stream_rfc3339},
    {"stream_offsets", test_stream_offsets},
    {NULL, NULL}};
