/*
** seeds.c -- writes the checked-in seed corpus of every harness
** (test/fuzz/corpus/<harness>/) and the hand-made regression inputs of
** the snapshot decoder's rules (test/fuzz/regress/snapshot/).
**
**   make fuzz-seeds        rebuild and run it (from the top directory)
**
** Each seed is a valid input in its harness's input format: requests,
** bodies and values from the unit tests, commands encoded by cmd_encode,
** snapshots of states built by stream_apply, log directories written by
** the WAL itself (and by a group: snapshots, images), chunks sealed by
** cold_chunk_seal, S3 answers as S3 sends them.  The fuzzer starts from
** these and mutates; the files are small so that make fuzz-regress stays
** fast.
*/
#include "../../ursula.c"
#include "fuzz.h"

static const char *seeds_root = "test/fuzz/corpus";
static int seeds_count;

/* Write one seed: dir/harness/name. */
static void seed(const char *harness, const char *name, const void *p,
                 size_t n) {
  char dir[512];
  snprintf(dir, sizeof(dir), "%s/%s", seeds_root, harness);
  mkdir(seeds_root, 0755);
  mkdir(dir, 0755);
  fuzz_write_file(dir, name, p, n);
  seeds_count++;
}

/* A seed made of a prefix (pre, npre bytes) and a C string. */
static void seed_pre(const char *harness, const char *name, const void *pre,
                     size_t npre, const char *text) {
  struct buf b;
  memset(&b, 0, sizeof(b));
  buf_append(&b, pre, npre);
  buf_append_str(&b, text);
  seed(harness, name, b.ptr ? b.ptr : "", b.len);
  buf_free(&b);
}

/* ------------------------------------------------------------ text */

static void seeds_http(void) {
  static const char *const heads[] = {
      "GET /v1/stream/a?offset=-1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
      "POST /v1/stream/chat HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain"
      "\r\nContent-Length: 6\r\nProducer-Id: p1\r\nProducer-Epoch: 0\r\n"
      "Producer-Seq: 0\r\n\r\nhello ",
      "PUT /v1/stream/j HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
      "\r\nStream-TTL: 3600\r\nTransfer-Encoding: chunked\r\n\r\n",
      "\r\n\nGET / HTTP/1.0\nHost: a\n\n",
      "GET /s?offset=0000000000000000_0000000000000006&live=sse&cursor=7 "
      "HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"e\"\r\n\r\nGET /next "
      "HTTP/1.1\r\n\r\n",
      "DELETE /v1/stream/a HTTP/1.1\r\nHost:  spaced  \t\r\nX-Empty:\r\n"
      "Connection: close\r\n\r\n",
      "OPTIONS * HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",
      "GET /folded HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
      "GET /bad\rHTTP/1.1\r\n\r\n",
      "HEAD /v1/stream/a HTTP/1.1\r\nHost: h\r\nStream-Forked-From: /src\r\n"
      "Stream-Fork-Offset: 0000000000000000_0000000000000003\r\n\r\n"};
  static const char *const bodies[] = {
      "5\r\nhello\r\n0\r\n\r\n",
      "3;name=value\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n"
      "\r\nGET / HTTP/1.1\r\n\r\n",
      "1\nx\n0\n\n",
      "000A\r\n0123456789\r\n00\r\n\r\n",
      "fffffffffffffffff\r\n",
      "5\r\nhel",
      "2 \t;ext\r\nab\r\n0\r\nA: 1\r\nB: 2\r\n\r\n"};
  unsigned char cut[4];
  size_t i;
  char name[32];
  for (i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
    size_t n = strlen(heads[i]) / 2;
    cut[0] = (unsigned char)n;
    cut[1] = (unsigned char)(n >> 8);
    snprintf(name, sizeof(name), "head-%02u", (unsigned)i);
    seed_pre("http_head", name, cut, 2, heads[i]);
  }
  for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
    size_t n = strlen(bodies[i]);
    cut[0] = (unsigned char)(n / 3);
    cut[1] = 0;
    cut[2] = (unsigned char)(2 * n / 3);
    cut[3] = 0;
    snprintf(name, sizeof(name), "body-%02u", (unsigned)i);
    seed_pre("http_chunked", name, cut, 4, bodies[i]);
  }
}

static void seeds_query(void) {
  static const char *const targets[] = {
      "/v1/stream/a?offset=0000000000000000_0000000000000006",
      "/v1/stream/a?offset=-1&live=long-poll&cursor=123456",
      "/v1/stream/a?live=sse&offset=now&offset=1_2&x&=y&cursor",
      "/p?offset=18446744073709551615_18446744073709551615",
      "/no-query"};
  static const char *const numbers[] = {"0", "0010", "18446744073709551615",
                                        "18446744073709551616", "-1", "1e3",
                                        "00000000000000000000000042"};
  static const char *const times[] = {
      "2026-01-02T03:04:05.678Z", "2026-01-02T03:04:05+01:00",
      "1970-01-01T00:00:00Z",     "2024-02-29t23:59:60.5-12:30",
      "9999-12-31 23:59:59.999999z", "2023-02-29T00:00:00Z"};
  static const char *const paths[] = {"/v1/stream/a", "/a/./b", "/a/../b",
                                      "/..", "relative", "/a//b/", "/.x/..y"};
  static const unsigned char max_all[8] = {1, 0, 0, 0, 0, 0, 0, 0};
  static const unsigned char max_100[8] = {100, 0, 0, 0, 0, 0, 0, 0};
  unsigned char pre[9];
  char name[32];
  size_t i;
  for (i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
    pre[0] = 0;
    snprintf(name, sizeof(name), "target-%02u", (unsigned)i);
    seed_pre("query", name, pre, 1, targets[i]);
  }
  for (i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
    pre[0] = 1;
    memcpy(pre + 1, i % 2 ? max_100 : max_all, 8);
    snprintf(name, sizeof(name), "number-%02u", (unsigned)i);
    seed_pre("query", name, pre, 9, numbers[i]);
  }
  for (i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
    pre[0] = 2;
    snprintf(name, sizeof(name), "time-%02u", (unsigned)i);
    seed_pre("query", name, pre, 1, times[i]);
  }
  for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
    pre[0] = 3;
    snprintf(name, sizeof(name), "path-%02u", (unsigned)i);
    seed_pre("query", name, pre, 1, paths[i]);
  }
}

static void seeds_json(void) {
  static const char *const bodies[] = {
      "[1, {\"a\": 2} ,\"x\"]",
      "[[1,2],3]",
      " {\"a\":1}\n",
      "[]",
      "\"caf\\u00e9 \\\"q\\\" \\\\ \\/ \\b\\f\\n\\r\\t \\uD83D\\uDE00\"",
      "[-0.5e10, 0, 1E+2, 3.25, true, false, null]",
      "{\"k\":[{\"n\":[[[]]]},\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"]}",
      "[1,]",
      "[\"\xed\xa0\x80\"]",
      "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"};
  char name[32];
  size_t i;
  for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
    snprintf(name, sizeof(name), "body-%02u", (unsigned)i);
    seed("json", name, bodies[i], strlen(bodies[i]));
  }
}

static void seeds_conf(void) {
  static const char kv[] = "\001listen\000[::1]:0";
  static const char kv2[] = "\001log-level\000debug";
  static const char args[] =
      "\002--listen=127.0.0.1:0\000--core-count\0002\000--wal-dir\000/tmp/w"
      "\000--s3-bucket=b\000--hot-max-bytes\00065536";
  static const char file[] =
      "\000\xEF\xBB\xBF# a comment\r\nlisten 0.0.0.0:8080 # note\n"
      "\tcore-count\t4\nwal-dir /var/lib/ursula#notacomment\n"
      "log-level warn\nraft-log-dir /x\ns3-region eu-west-1\n\n";
  struct buf b;
  FILE *f = fopen("cluster.conf.example", "rb");
  memset(&b, 0, sizeof(b));
  buf_append(&b, "\000", 1);
  if (f != NULL) { /* every key with its default, documented */
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) buf_append(&b, tmp, n);
    fclose(f);
    seed("conf", "cluster-conf-example", b.ptr, b.len);
  }
  buf_free(&b);
  seed("conf", "file-small", file, sizeof(file) - 1);
  seed("conf", "set-listen", kv, sizeof(kv) - 1);
  seed("conf", "set-level", kv2, sizeof(kv2) - 1);
  seed("conf", "args", args, sizeof(args) - 1);
}

/* ------------------------------------------------------------ commands */

static struct cmd seed_cmd(int type, const char *path, uint64_t t) {
  struct cmd c;
  memset(&c, 0, sizeof(c));
  c.type = type;
  c.path = util_str(path);
  c.time_ms = t;
  c.content_type = util_str("text/plain");
  return c;
}

/* The command script the state seeds are made of: creates, appends with
** producers and Stream-Seq, JSON (an append with Stream-Record-Match), a
** fork with inherited units, TTLs and Expires-At, touches, a close, a cold
** move, a delete, bucket records made and removed, a snapshot published
** and a retained offset, attributes, and a transaction of two appends. */
static size_t seed_script(struct cmd *out, uint64_t *bounds) {
  size_t n = 0;
  struct cmd c;
  c = seed_cmd(CMD_CREATE, "/v1/stream/a", 1700000000000ULL);
  c.flags = CMD_F_TTL | CMD_F_CT;
  c.ttl_s = 3600;
  out[n++] = c;
  c = seed_cmd(CMD_APPEND, "/v1/stream/a", 1700000000100ULL);
  c.data = util_str("hello ");
  c.flags = CMD_F_PRODUCER | CMD_F_SEQ;
  c.producer_id = util_str("p1");
  c.producer_epoch = 2;
  c.stream_seq = util_str("0001");
  out[n++] = c;
  c = seed_cmd(CMD_APPEND, "/v1/stream/a", 1700000000200ULL);
  c.data = util_str("world");
  c.flags = CMD_F_PRODUCER;
  c.producer_id = util_str("p0");
  out[n++] = c;
  c = seed_cmd(CMD_CREATE, "/v1/stream/j", 1700000000300ULL);
  c.content_type = util_str("application/json");
  c.flags = CMD_F_JSON | CMD_F_EXPIRES;
  c.expires_at_ms = 1800000000000ULL;
  c.expires_text = util_str("2027-01-15T08:00:00Z");
  c.data = util_str("1,{\"a\":2},");
  c.n_msgs = 2;
  out[n++] = c;
  c = seed_cmd(CMD_APPEND, "/v1/stream/j", 1700000000400ULL);
  c.content_type = util_str("application/json");
  c.flags = CMD_F_JSON | CMD_F_RECORD_MATCH; /* (the create's 2 records) */
  c.record_match = 2;
  c.data = util_str("\"x\",");
  c.n_msgs = 1;
  out[n++] = c;
  c = seed_cmd(CMD_FORK_ACQUIRE, "/v1/stream/a", 1700000000500ULL);
  out[n++] = c;
  c = seed_cmd(CMD_CREATE, "/v1/stream/f", 1700000000600ULL);
  c.flags = CMD_F_FORK | CMD_F_FORK_OFFSET;
  c.fork_source = util_str("/v1/stream/a");
  c.fork_offset = 8;
  c.inherited = util_str("hello wo");
  bounds[0] = 6;
  c.n_bounds = 1;
  c.bounds = bounds;
  c.data = util_str("!");
  out[n++] = c;
  c = seed_cmd(CMD_TOUCH, "/v1/stream/a", 1700000000700ULL);
  c.incarnation = 1;
  out[n++] = c;
  c = seed_cmd(CMD_COLD, "/v1/stream/a", 1700000000800ULL);
  c.incarnation = 1;
  c.cold_start = 0;
  c.cold_end = 6;
  c.object = util_str("g00000/0000000000000001/0000000000000000-0000000000000006");
  out[n++] = c;
  c = seed_cmd(CMD_APPEND, "/v1/stream/j", 1700000000900ULL);
  c.flags = CMD_F_CLOSE;
  out[n++] = c;
  c = seed_cmd(CMD_CREATE, "/v1/stream/d", 1700000001000ULL);
  out[n++] = c;
  c = seed_cmd(CMD_DELETE, "/v1/stream/d", 1700000001100ULL);
  out[n++] = c;
  c = seed_cmd(CMD_EXPIRE, "/v1/stream/a", 1700000001200ULL);
  out[n++] = c;
  c = seed_cmd(CMD_FORK_RELEASE, "/v1/stream/zz", 1700000001300ULL);
  out[n++] = c;
  c = seed_cmd(CMD_BUCKET_CREATE, "/demo", 1700000001400ULL);
  c.content_type = util_str("");
  out[n++] = c;
  c = seed_cmd(CMD_BUCKET_CREATE, "/zz-z", 1700000001500ULL);
  c.content_type = util_str("");
  out[n++] = c;
  c = seed_cmd(CMD_BUCKET_CREATE, "/abcd", 1700000001600ULL);
  c.content_type = util_str("");
  out[n++] = c;
  c = seed_cmd(CMD_BUCKET_DELETE, "/zz-z", 1700000001700ULL);
  c.content_type = util_str("");
  out[n++] = c;
  /* a published snapshot and a retained offset (stream.c, SNAPSHOTS) */
  c = seed_cmd(CMD_CREATE, "/demo/s", 1700000001800ULL);
  c.data = util_str("abc");
  out[n++] = c;
  c = seed_cmd(CMD_APPEND, "/demo/s", 1700000001900ULL);
  c.data = util_str("de");
  out[n++] = c;
  c = seed_cmd(CMD_SNAPSHOT_PUT, "/demo/s", 1700000002000ULL);
  c.content_type = util_str("application/x-loro");
  c.data = util_str("SNAPSHOT");
  c.at = 3;
  c.digest = util_str(
      "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
  c.match = util_str("none");
  c.flags = CMD_F_MATCH;
  out[n++] = c;
  c = seed_cmd(CMD_RETAIN, "/demo/s", 1700000002100ULL);
  c.content_type = util_str("");
  c.at = 3;
  out[n++] = c;
  c = seed_cmd(CMD_ATTRS, "/demo/s", 1700000002200ULL);
  c.attrs = util_str("{\"title\":\"t\",\"metadata\":{\"a\":1}}");
  out[n++] = c;
  { /* a transaction of two appends to /demo/s (the second a producer's) */
    static struct buf ops;
    struct cmd op = seed_cmd(CMD_APPEND, "/demo/s", 0);
    struct buf one;
    size_t k;
    memset(&one, 0, sizeof(one));
    ops.len = 0;
    for (k = 0; k < 2; k++) {
      struct str e;
      op.data = util_str(k ? "gh" : "fg");
      if (k) {
        op.flags |= CMD_F_PRODUCER;
        op.producer_id = util_str("p2");
      }
      one.len = 0;
      cmd_encode(&op, &one);
      e.ptr = one.ptr;
      e.len = one.len;
      cmd_put_bytes(&ops, e);
    }
    buf_free(&one);
    c = seed_cmd(CMD_MULTI, "/demo", 1700000002300ULL);
    c.content_type = util_str("");
    c.flags = CMD_F_ATOMIC;
    c.ops.ptr = ops.ptr;
    c.ops.len = ops.len;
    c.n_ops = 2;
    out[n++] = c;
  }
  return n;
}

static void seeds_cmd(void) {
  struct cmd script[32];
  uint64_t bounds[4];
  size_t n = seed_script(script, bounds), i;
  char name[32];
  for (i = 0; i < n; i++) {
    struct buf b;
    memset(&b, 0, sizeof(b));
    buf_append(&b, "\007", 1); /* the cut of the truncation check */
    cmd_encode(&script[i], &b);
    snprintf(name, sizeof(name), "cmd-%02u-type-%d", (unsigned)i,
             script[i].type);
    seed("cmd", name, b.ptr, b.len);
    buf_free(&b);
  }
}

/* ------------------------------------------------------------ states */

/* Apply the script (entry i + 1 carries command i) into st. */
static void seed_apply_script(struct stream_state *st, size_t upto) {
  struct cmd script[32], d;
  uint64_t bounds[4];
  struct stream_result r;
  struct buf enc, bs;
  size_t n = seed_script(script, bounds), i;
  memset(&r, 0, sizeof(r));
  memset(&enc, 0, sizeof(enc));
  memset(&bs, 0, sizeof(bs));
  for (i = 0; i < n && i < upto; i++) {
    enc.len = 0;
    cmd_encode(&script[i], &enc);
    if (cmd_decode(enc.ptr, enc.len, &d, &bs) == URSULA_OK)
      stream_apply(st, i + 1, &d, &r);
  }
  buf_free(&enc);
  buf_free(&bs);
  buf_free(&r.garbage);
  buf_free(&r.releases);
}

static void seeds_snapshot(void) {
  size_t upto[] = {0, 3, 5, 9, 32};
  char name[32];
  size_t i;
  for (i = 0; i < sizeof(upto) / sizeof(upto[0]); i++) {
    struct stream_state st;
    struct buf b;
    memset(&b, 0, sizeof(b));
    stream_state_init(&st);
    seed_apply_script(&st, upto[i]);
    if (stream_snapshot(&st, &b) == URSULA_OK) {
      snprintf(name, sizeof(name), "state-after-%u", (unsigned)upto[i]);
      seed("snapshot", name, b.ptr, b.len);
    }
    stream_state_free(&st);
    buf_free(&b);
  }
}

/* A snapshot payload written by hand, field by field (stream.c has the
** format), for the regression inputs of the rules restore enforces. */
struct seed_snap_stream {
  const char *path, *ct, *exp;
  uint64_t flags;
  const char *prod[2]; /* producer ids, in the order written */
  uint64_t chunk_len;  /* 0: no chunk */
  const char *chunk;   /* its name (NUL-terminated unless chunk_n) */
  size_t chunk_n;
  size_t ct_n;
  uint64_t units[2]; /* unit lengths; 0: none */
};

static void seed_snap_put(struct buf *b, const struct seed_snap_stream *s) {
  struct str ct;
  uint64_t tail = s->units[0] + s->units[1];
  size_t np = (s->prod[0] != NULL) + (s->prod[1] != NULL), i;
  ct.ptr = s->ct;
  ct.len = s->ct_n ? s->ct_n : strlen(s->ct);
  cmd_put_bytes(b, util_str(s->path));
  cmd_put_bytes(b, ct);
  cmd_put_varint(b, s->flags);
  cmd_put_varint(b, tail);
  cmd_put_varint(b, 0);
  cmd_put_varint(b, 0);
  cmd_put_bytes(b, util_str(s->exp));
  cmd_put_varint(b, 1700000000000ULL);
  cmd_put_bytes(b, util_str(""));
  cmd_put_varint(b, np);
  for (i = 0; i < np; i++) {
    cmd_put_bytes(b, util_str(s->prod[i]));
    cmd_put_varint(b, 1);
    cmd_put_varint(b, 2);
  }
  cmd_put_bytes(b, util_str(""));
  cmd_put_varint(b, 0);
  cmd_put_varint(b, 0);
  cmd_put_bytes(b, util_str(""));
  cmd_put_varint(b, 0);
  cmd_put_varint(b, 0);
  cmd_put_varint(b, 0);
  cmd_put_varint(b, 1);
  cmd_put_varint(b, s->chunk_len > 0);
  if (s->chunk_len > 0) {
    struct str nm;
    nm.ptr = s->chunk;
    nm.len = s->chunk_n ? s->chunk_n : strlen(s->chunk);
    cmd_put_varint(b, s->chunk_len);
    cmd_put_bytes(b, nm);
  }
  cmd_put_varint(b, (s->units[0] > 0) + (s->units[1] > 0));
  for (i = 0; i < 2; i++) {
    if (s->units[i] == 0) continue;
    cmd_put_varint(b, s->units[i]);
    if (i == 0 && s->chunk_len > 0) continue; /* in the chunk */
    cmd_put_varint(b, 7);
    cmd_put_varint(b, 0);
  }
}

static void seed_snap(const char *dir, const char *name,
                      const struct seed_snap_stream *s, size_t n) {
  struct buf b;
  size_t i;
  memset(&b, 0, sizeof(b));
  cmd_put_varint(&b, 3);
  cmd_put_varint(&b, 9);
  cmd_put_varint(&b, n);
  for (i = 0; i < n; i++) seed_snap_put(&b, &s[i]);
  if (dir == NULL) {
    seed("snapshot", name, b.ptr, b.len);
  } else {
    mkdir(dir, 0755);
    fuzz_write_file(dir, name, b.ptr, b.len);
  }
  buf_free(&b);
}

/* Each breaks one rule of stream_restore (stream.c, SNAPSHOT FORMAT);
** before those rules were enforced, each restored and then snapshotted
** to other bytes (or to a state whose units did not ascend). */
static void seeds_snapshot_rules(void) {
  const char *dir = "test/fuzz/regress/snapshot";
  struct seed_snap_stream a, b, two[2];
  memset(&a, 0, sizeof(a));
  a.path = "/a";
  a.ct = "text/plain";
  a.exp = "";
  a.units[0] = 5;
  seed_snap(NULL, "hand-one-stream", &a, 1); /* valid: a seed */
  b = a;
  b.flags = 64;
  seed_snap(dir, "unknown-flag", &b, 1);
  b = a;
  b.ct = "text\0/plain";
  b.ct_n = 11;
  seed_snap(dir, "nul-in-content-type", &b, 1);
  b = a;
  b.prod[0] = "p2";
  b.prod[1] = "p1";
  seed_snap(dir, "producers-out-of-order", &b, 1);
  b.prod[1] = "p2";
  seed_snap(dir, "producer-twice", &b, 1);
  two[0] = a;
  two[1] = a;
  two[0].path = "/b";
  seed_snap(dir, "streams-out-of-order", two, 2);
  b = a;
  b.units[0] = UINT64_MAX;
  b.units[1] = 6; /* wraps to a tail of 5 */
  seed_snap(dir, "unit-lengths-wrap", &b, 1);
  b = a;
  b.chunk_len = 5;
  b.chunk = "g00000/x\0y";
  b.chunk_n = 10;
  seed_snap(dir, "nul-in-chunk-name", &b, 1);
  b = a;
  b.chunk_len = 5;
  b.chunk = "g00000/chunk";
  seed_snap(NULL, "hand-cold-chunk", &b, 1); /* valid: a seed */
}

/* ------------------------------------------------------------ logs */

/* The input of the wal harness that builds the directory dir as it is:
** opts, then each file (segments: kind 0, the snapshot: kind 3). */
static void seed_dir(const char *harness, const char *name, const char *dir,
                     int opts) {
  struct buf in, f;
  DIR *d = opendir(dir);
  struct dirent *e;
  unsigned char o = (unsigned char)opts;
  memset(&in, 0, sizeof(in));
  memset(&f, 0, sizeof(f));
  buf_append(&in, &o, 1);
  while (d != NULL && (e = readdir(d)) != NULL) {
    char path[1024];
    unsigned char h[3];
    uint64_t first;
    int kind;
    if (wal_seg_name(e->d_name, &first))
      kind = 0;
    else if (strcmp(e->d_name, "snapshot") == 0)
      kind = 3;
    else
      continue;
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    if (wal_read_path(os_fs(), path, &f) != URSULA_OK || f.len > 65535)
      continue;
    h[0] = (unsigned char)kind;
    h[1] = (unsigned char)f.len;
    h[2] = (unsigned char)(f.len >> 8);
    buf_append(&in, h, 3);
    buf_append(&in, f.ptr, f.len);
  }
  if (d != NULL) closedir(d);
  seed(harness, name, in.ptr, in.len);
  buf_free(&in);
  buf_free(&f);
}

/* Append the script's commands (from, to] as entries of term 1 to the log
** in dir, syncing every `batch`; segments of seg bytes. */
static struct wal *seed_log(const char *dir, int64_t seg, size_t to,
                            int raw) {
  struct cmd script[32];
  uint64_t bounds[4];
  struct buf recs;
  struct wal_stats st;
  struct wal *w = NULL;
  char err[URSULA_ERRMSG_LEN];
  size_t n = seed_script(script, bounds), i;
  memset(&recs, 0, sizeof(recs));
  FUZZ_CHECK(wal_open(&w, NULL, dir, 0, err) == URSULA_OK);
  FUZZ_CHECK(wal_replay(w, NULL, NULL, NULL, NULL, &st, err) == URSULA_OK);
  FUZZ_CHECK(wal_save_state(w, 1, 0) == URSULA_OK);
  if (seg > 0) wal_set_segment_bytes(w, seg);
  for (i = 0; i < n && i < to; i++) {
    size_t at = 0;
    recs.len = WAL_RECORD_HEADER;
    if (raw) {
      char p[32];
      snprintf(p, sizeof(p), "entry %u", (unsigned)i);
      buf_append_str(&recs, p);
    } else {
      cmd_encode(&script[i], &recs);
    }
    FUZZ_CHECK(wal_frame(w, WAL_CMD, 1, i + 1, recs.ptr + at,
                         recs.len - WAL_RECORD_HEADER) == URSULA_OK);
    FUZZ_CHECK(wal_write(w, recs.ptr, recs.len) == URSULA_OK);
    FUZZ_CHECK(wal_flush(w) == URSULA_OK);
  }
  buf_free(&recs);
  return w;
}

static void seeds_wal(void) {
  char dir[600], err[URSULA_ERRMSG_LEN], path[700];
  struct wal *w;
  struct group *g;
  struct buf f;
  memset(&f, 0, sizeof(f));
  fuzz_no_sync();
  snprintf(dir, sizeof(dir), "%s/g", fuzz_dir());
  /* a bare log of a few entries; the same with a torn tail */
  fuzz_clear();
  wal_close(seed_log(dir, 0, 4, 1));
  seed_dir("wal", "log-4-entries", dir, 0);
  seed_dir("wal", "log-4-entries-roll", dir, 2);
  /* many small segments, then a snapshot that covers some */
  fuzz_clear();
  w = seed_log(dir, 200, 12, 1);
  FUZZ_CHECK(wal_save_snapshot(w, 6, 1, "state-at-6", 10) == URSULA_OK);
  FUZZ_CHECK(wal_compact(w, 3) == URSULA_OK);
  wal_close(w);
  seed_dir("wal", "log-segments-snapshot", dir, 1);
  /* a group's log of commands, started as a group */
  fuzz_clear();
  wal_close(seed_log(dir, 300, 32, 0));
  seed_dir("wal", "group-commands", dir, 4 | 1);
  /* the same after the group wrote a snapshot and compacted; and its
  ** image, for the install */
  g = group_new(0, 0, NULL);
  FUZZ_CHECK(group_open_wal(g, dir, 1, 16, (uint64_t)1 << 40, NULL, err) ==
             URSULA_OK);
  FUZZ_CHECK(group_snapshot(g) == URSULA_OK);
  FUZZ_CHECK(group_write_image(g) == URSULA_OK);
  group_free(g);
  seed_dir("wal", "group-snapshot", dir, 4 | 1);
  snprintf(path, sizeof(path), "%s/snapshot", dir);
  if (wal_read_path(os_fs(), path, &f) == URSULA_OK) {
    struct buf in;
    memset(&in, 0, sizeof(in));
    buf_append(&in, "\000\005", 2); /* read, 100 bytes at a time */
    buf_append(&in, f.ptr, f.len);
    seed("snapfile", "group-snapshot", in.ptr, in.len);
    buf_free(&in);
  }
  snprintf(path, sizeof(path), "%s/image", dir);
  if (wal_read_path(os_fs(), path, &f) == URSULA_OK) {
    struct buf in;
    memset(&in, 0, sizeof(in));
    buf_append(&in, "\002\003", 2); /* install, 32 bytes at a time */
    buf_append(&in, f.ptr, f.len);
    seed("snapfile", "group-image-install", in.ptr, in.len);
    in.ptr[0] = 0; /* and read */
    seed("snapfile", "group-image-read", in.ptr, in.len);
    buf_free(&in);
  }
  /* a small snapshot file with two pieces, by the writer */
  fuzz_clear();
  w = seed_log(dir, 0, 3, 1);
  {
    struct wal_snap_writer sw;
    FUZZ_CHECK(wal_snap_begin(w, &sw, 3, 1) == URSULA_OK);
    FUZZ_CHECK(wal_snap_put(&sw, "payload", 7) == URSULA_OK);
    FUZZ_CHECK(wal_snap_piece(&sw, 1, 0, "entr", 4) == URSULA_OK);
    FUZZ_CHECK(wal_snap_piece(&sw, 2, 2, "try", 3) == URSULA_OK);
    FUZZ_CHECK(wal_snap_commit(w, &sw) == URSULA_OK);
  }
  wal_close(w);
  snprintf(path, sizeof(path), "%s/snapshot", dir);
  if (wal_read_path(os_fs(), path, &f) == URSULA_OK) {
    struct buf in;
    memset(&in, 0, sizeof(in));
    buf_append(&in, "\001\002", 2); /* fixed up, read 7 at a time */
    buf_append(&in, f.ptr, f.len);
    seed("snapfile", "two-pieces", in.ptr, in.len);
    in.ptr[0] = 3;              /* installed (not an image: refused) */
    in.ptr[2 + 24] = 1;         /* as an image, agreeing at entry 3 */
    seed("snapfile", "two-pieces-image-install", in.ptr, in.len);
    buf_free(&in);
  }
  seed_dir("wal", "log-snapshot-pieces", dir, 0);
  fuzz_clear();
  buf_free(&f);
}

/* A group's log of the commands cs[0..n) (entry i + 1 carries cs[i]), as
** an input of the wal harness (a group started on it) named name, under
** seeds_root or, when dir is not NULL, in that directory. */
static void seed_group_log(const char *to_dir, const char *name,
                           const struct cmd *cs, size_t n) {
  char dir[600], err[URSULA_ERRMSG_LEN];
  struct wal *w = NULL;
  struct wal_stats st;
  struct buf recs;
  size_t i;
  memset(&recs, 0, sizeof(recs));
  fuzz_clear();
  snprintf(dir, sizeof(dir), "%s/g", fuzz_dir());
  FUZZ_CHECK(wal_open(&w, NULL, dir, 0, err) == URSULA_OK);
  FUZZ_CHECK(wal_replay(w, NULL, NULL, NULL, NULL, &st, err) == URSULA_OK);
  FUZZ_CHECK(wal_save_state(w, 1, 0) == URSULA_OK);
  for (i = 0; i < n; i++) {
    recs.len = WAL_RECORD_HEADER;
    cmd_encode(&cs[i], &recs);
    FUZZ_CHECK(wal_frame(w, WAL_CMD, 1, i + 1, recs.ptr,
                         recs.len - WAL_RECORD_HEADER) == URSULA_OK);
    FUZZ_CHECK(wal_write(w, recs.ptr, recs.len) == URSULA_OK);
    FUZZ_CHECK(wal_flush(w) == URSULA_OK);
  }
  wal_close(w);
  if (to_dir != NULL) {
    const char *root = seeds_root;
    seeds_root = to_dir;
    seed_dir(".", name, dir, 4 | 1);
    seeds_root = root;
  } else {
    seed_dir("wal", name, dir, 4 | 1);
  }
  buf_free(&recs);
  fuzz_clear();
}

/* Commands a log may hold that HTTP never sends: what apply accepts, a
** snapshot must hold and restore.  A CREATE of the empty path was applied,
** and the snapshot of that state did not restore (issue 12, part 7):
** a regression input. */
static void seeds_wal_rules(void) {
  struct cmd c[2];
  c[0] = seed_cmd(CMD_CREATE, "", 1000);
  c[0].data = util_str("x");
  seed_group_log("test/fuzz/regress/wal", "create-empty-path", c, 1);
  c[0] = seed_cmd(CMD_CREATE, "/a", 1000);
  c[0].content_type.ptr = "text\0/x";
  c[0].content_type.len = 7;
  c[0].flags = CMD_F_EXPIRES;
  c[0].expires_text.ptr = "2027\0x";
  c[0].expires_text.len = 6;
  seed_group_log(NULL, "group-nul-in-strings", c, 1);
  c[0] = seed_cmd(CMD_CREATE, "/a", 1000);
  c[0].data = util_str("hello");
  c[1] = seed_cmd(CMD_COLD, "/a", 1001);
  c[1].incarnation = 1;
  c[1].cold_end = 5;
  c[1].object.ptr = "g0\0x";
  c[1].object.len = 4;
  seed_group_log(NULL, "group-cold-nul-in-name", c, 2);
}

/* ------------------------------------------------------------ cold, S3 */

static void seeds_cold(void) {
  struct buf obj;
  char name[32];
  int i;
  for (i = 0; i < 3; i++) {
    const char *data = i == 0 ? "" : i == 1 ? "hello" : "{\"a\":1},[2],";
    uint64_t start = (uint64_t)i * 4096;
    memset(&obj, 0, sizeof(obj));
    buf_append(&obj, "\000", 1); /* the expectation from the header */
    buf_reserve(&obj, COLD_HEADER);
    obj.len += COLD_HEADER;
    buf_append_str(&obj, data);
    {
      struct buf chunk;
      chunk.ptr = obj.ptr + 1;
      chunk.len = obj.len - 1;
      chunk.cap = obj.cap - 1;
      cold_chunk_seal(&chunk, (uint64_t)i + 1, start);
    }
    snprintf(name, sizeof(name), "chunk-%d", i);
    seed("cold", name, obj.ptr, obj.len);
    buf_free(&obj);
  }
}

static void seeds_s3(void) {
  static const char *const answers[] = {
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\nhello",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
      "0\r\n\r\n",
      "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-3/10\r\n"
      "Connection: close\r\n\r\nread to the close",
      "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n"
      "Content-Length: 165\r\n\r\n<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
      "<Error><Code>SignatureDoesNotMatch</Code><Message>The request "
      "signature &amp; &lt;calculated&gt;</Message><RequestId>1</RequestId>"
      "</Error>",
      "HTTP/1.1 404 Not Found\r\nContent-Length: 57\r\n\r\n<Error><Code>"
      "NoSuchKey</Code><Message>none</Message></Error>",
      "HTTP/1.1 204 No Content\r\n\r\n",
      "HTTP/1.1 503 Slow Down\r\nTransfer-Encoding: chunked\r\n\r\n"
      "2b\r\n<Error><Code>SlowDown</Code></Error>    \r\n0\r\n\r\n"};
  static const char list[] =
      "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n"
      "Transfer-Encoding: chunked\r\n\r\n17c\r\n<?xml version=\"1.0\" "
      "encoding=\"UTF-8\"?><ListBucketResult><Name>bucket</Name><Prefix>"
      "g00001/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>"
      "<IsTruncated>true</IsTruncated><Contents><Key>g00001/a&amp;b</Key>"
      "<Size>5</Size></Contents><Contents><Key>g00001/c</Key><Size>18446744073709551615</Size>"
      "</Contents><NextContinuationToken>tok/+=</NextContinuationToken>"
      "</ListBucketResult>\r\n0\r\n\r\n";
  unsigned char pre[6];
  char name[32];
  size_t i;
  for (i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
    size_t n = strlen(answers[i]);
    pre[0] = (unsigned char)(i == 5 ? 2 : i % 2); /* GET, LIST, HEAD */
    pre[1] = 2;                                   /* two cuts */
    pre[2] = (unsigned char)(n / 3);
    pre[3] = 0;
    pre[4] = (unsigned char)(n - 4);
    pre[5] = 0;
    snprintf(name, sizeof(name), "answer-%02u", (unsigned)i);
    seed_pre("s3", name, pre, 6, answers[i]);
  }
  pre[0] = 1;
  pre[1] = 0;
  seed_pre("s3", "list-page", pre, 2, list);
  pre[0] = 7;
  seed_pre("s3", "endpoint-http", pre, 2, "http://127.0.0.1:4568");
  seed_pre("s3", "endpoint-https", pre, 2, "https://s3.eu-west-1.amazonaws.com/");
  seed_pre("s3", "endpoint-bad-port", pre, 2, "http://[::1]:99999");
}

/* ------------------------------------------------------------ peer */

/* A WAL entry record as wal.c frames it (its CRC over bytes 4.. and the
** payload), appended to b. */
static void seed_peer_record(struct buf *b, int type, uint64_t term,
                             uint64_t index, const char *payload) {
  unsigned char h[WAL_RECORD_HEADER];
  size_t n = strlen(payload);
  uint32_t crc;
  int i;
  memset(h, 0, sizeof(h));
  for (i = 0; i < 4; i++) h[4 + i] = (unsigned char)(n >> (8 * i));
  h[8] = (unsigned char)type;
  for (i = 0; i < 8; i++) {
    h[16 + i] = (unsigned char)(term >> (8 * i));
    h[24 + i] = (unsigned char)(index >> (8 * i));
  }
  crc = util_crc32c(util_crc32c(0, h + 4, WAL_RECORD_HEADER - 4), payload, n);
  for (i = 0; i < 4; i++) h[i] = (unsigned char)(crc >> (8 * i));
  buf_append(b, h, sizeof(h));
  buf_append(b, payload, n);
}

/* A BATCH of one message of every type (an APPEND of three entries in two
** terms with its records) from node 2 to node 1. */
static void seed_peer_batch(struct buf *b) {
  struct buf rec;
  size_t start;
  int t;
  memset(&rec, 0, sizeof(rec));
  peer_frame_reserve(b, &start);
  for (t = RAFT_MSG_APPEND; t <= RAFT_MSG_READ_INDEX_RESP; t++) {
    struct raft_msg m;
    memset(&m, 0, sizeof(m));
    m.from = 2;
    m.type = (uint8_t)t;
    m.term = 5;
    m.index = 40 + (uint64_t)t;
    m.log_term = 4;
    m.commit = 30;
    m.ctx = 1000 + (uint64_t)t;
    rec.len = 0;
    if (t == RAFT_MSG_APPEND) {
      m.n = 3;
      m.n_runs = 2;
      m.runs[0].index = m.index + 1;
      m.runs[0].term = 4;
      m.runs[1].index = m.index + 2;
      m.runs[1].term = 5;
      seed_peer_record(&rec, WAL_CMD, 4, m.index + 1, "a command");
      seed_peer_record(&rec, WAL_NOOP, 5, m.index + 2, "");
      seed_peer_record(&rec, WAL_CMD, 5, m.index + 3, "another");
    } else if (t == RAFT_MSG_APPEND_RESP) {
      m.flags = RAFT_F_REJECT;
      m.hint = 12;
      m.last = 44;
    }
    peer_item_put(b, t % 64, &m, rec.ptr, rec.len);
  }
  peer_frame_seal(b, start, PEER_BATCH);
  buf_free(&rec);
}

static void seeds_peer(void) {
  struct peer_hello h = {7, 2, 1, 0, 1, 64, 0x1234567890ull, {0}};
  struct peer_snap s;
  struct buf b, all;
  size_t start;
  memset(&b, 0, sizeof(b));
  memset(&all, 0, sizeof(all));
  {
    unsigned char nonce[PEER_NONCE];
    memset(nonce, 0xA5, sizeof(nonce));
    peer_challenge_put(&b, nonce);
    seed("peer", "challenge", b.ptr, b.len);
    b.len = 0;
    peer_hello_sign(&h, nonce, "0123456789abcdef", 16);
  }
  peer_hello_put(&b, &h);
  seed("peer", "hello", b.ptr, b.len);
  buf_append(&all, b.ptr, b.len);
  b.len = 0;
  seed_peer_batch(&b);
  seed("peer", "batch-every-type", b.ptr, b.len);
  buf_append(&all, b.ptr, b.len);
  b.len = 0;
  peer_frame_reserve(&b, &start);
  peer_frame_seal(&b, start, PEER_BATCH);
  seed("peer", "batch-empty", b.ptr, b.len);
  buf_append(&all, b.ptr, b.len);
  b.len = 0;
  { /* a write forwarded to a leader, and the leader's reply */
    struct peer_item it;
    struct cmd c;
    struct buf cb;
    memset(&cb, 0, sizeof(cb));
    memset(&c, 0, sizeof(c));
    c.type = CMD_APPEND;
    c.time_ms = 1700000000000ull;
    c.path.ptr = "/v1/stream/f";
    c.path.len = 12;
    c.data.ptr = "hello";
    c.data.len = 5;
    cmd_encode(&c, &cb);
    peer_frame_reserve(&b, &start);
    memset(&it, 0, sizeof(it));
    it.kind = PEER_ITEM_FWD;
    it.group = 5;
    it.req = 9;
    it.records = (const unsigned char *)cb.ptr;
    it.len = cb.len;
    peer_item_encode(&b, &it);
    it.kind = PEER_ITEM_FWD_REPLY;
    it.outcome = PEER_FWD_ACCEPTED;
    it.term = 3;
    it.index = 77;
    peer_item_encode(&b, &it);
    peer_frame_seal(&b, start, PEER_BATCH);
    seed("peer", "batch-forward", b.ptr, b.len);
    buf_append(&all, b.ptr, b.len);
    b.len = 0;
    buf_free(&cb);
  }
  memset(&s, 0, sizeof(s));
  s.group = 3;
  s.term = 5;
  s.snap_index = 400;
  s.snap_term = 4;
  s.offset = 0;
  s.total = 10;
  s.data = (const unsigned char *)"URSSNAP3..";
  s.len = 10;
  s.last = 1;
  peer_snap_put(&b, &s);
  seed("peer", "snap-chunk", b.ptr, b.len);
  buf_append(&all, b.ptr, b.len);
  seed("peer", "stream", all.ptr, all.len);
  buf_free(&b);
  buf_free(&all);
}

int main(int argc, char **argv) {
  if (argc > 1) seeds_root = argv[1];
  fuzz_quiet();
  seeds_http();
  seeds_query();
  seeds_json();
  seeds_conf();
  seeds_cmd();
  seeds_snapshot();
  seeds_snapshot_rules();
  seeds_wal();
  seeds_wal_rules();
  seeds_cold();
  seeds_s3();
  seeds_peer();
  printf("seeds: %d files under %s\n", seeds_count, seeds_root);
  return 0;
}
