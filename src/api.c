/*
** api.c -- the Durable Streams request rules.
**
** conn.c reads requests and writes responses; this file gives them their
** meaning, through conn.c's hooks (struct conn_ops, api_conn_ops below):
**
**   request head -> job     api_parse_head() and api_build_job() are pure:
**                           from a parsed request to a job, or to the
**                           status that refuses it (test/unit_api.c)
**   body -> job sent        api_on_request(): JSON validity, the body
**                           handed over; the job goes to the stream's
**                           owner (group.c), the connection waits
**   result -> response      api_on_job_done(): the head and body of the
**                           answer (catch-up, long-poll, SSE, changes)
**
** The paths "/__ursula" and "/__ursula/..." are the server's own, never
** a stream's (THE SERVER'S PATHS, below): GET /__ursula/cluster is the
** node's status.
**
** Everything that depends on a stream's state is decided by its group's
** owner (group.c); this file checks what can be checked from the request
** alone (syntax of headers, offsets and bodies, JSON validity) and turns
** results into responses.
**
** AUTHENTICATION.  With --auth-file, a request must carry a bearer token
** that auth.c's table grants (api_authorize, called from the on_head
** hooks before any job is made, so a refused request reaches no group):
**
**   public listener     GET, HEAD: read; PUT, POST, DELETE: write; the
**                       entry's prefix must cover the stream path.
**                       GET, HEAD /__ursula/cluster: admin.  OPTIONS (a
**                       CORS preflight, which browsers send without
**                       credentials: the Fetch standard) needs none.
**   admin listener      /metrics, /__ursula/cluster: admin; /healthz and
**                       /readyz need none (probes).
**
** Refusals (RFC 6750 section 3 and 3.1), each one text line, the
** connection then closing: no Authorization field, or another scheme:
** 401 with WWW-Authenticate: Bearer realm="ursula"; a malformed field, or
** a token no entry has: 401 with error="invalid_token"; a token without
** the scope or the path: 403 with error="insufficient_scope", whether or
** not the stream exists (the answer says nothing about existence).  They
** are counted (ursula_auth_refused_total), never logged above debug.
**
** REVOCATION.  A reload (server.c, RELOAD) hands each core the new
** table (api_auth_take): every live reader on it (a long-poll waiting,
** an SSE response under way) is checked again, by the SHA-256 of the
** token it was admitted with, for read on its path; one the new table
** refuses is ended at once: a long-poll is answered 401 or 403 (with
** its WWW-Authenticate) and closed, an SSE response ends its chunked
** body (the client's reconnect then meets the 401 or 403).  A live read
** whose first answer was still on its way at the swap is checked when
** that answer comes back (api_live_reply).  One INFO line per core says
** how many were ended.
**
** BUCKETS (issue 16; the peer's buckets and path-affinity-v1).
**
**   Which paths are buckets.  A bucket name is 4 to 64 bytes of
**   [a-z0-9_-] (the peer's rule) that does not start with "__" (those
**   names are reserved: "__ursula" is the server's, THE SERVER'S PATHS
**   below).  A stream id is 1 to 122 bytes without '/', NUL or "..",
**   other than the reserved ids streams, $transaction, append-batch,
**   attrs, bootstrap, retention and snapshot.  util.c sorts a path
**   (util_bucket_path):
**     /{b}               the bucket route (b a bucket name)
**     /{b}/streams       the bucket's listing
**     /{b}/{s}           stream s in bucket b
**     /{b}/{aff}/{s}     stream s in bucket b, affinity key aff
**     /{b}/{x}, /{b}/{aff}/{x} with x another reserved id: kept for
**                        the peer's routes of those names, 404 for now
**                        (but S/snapshot, S/retention, S/bootstrap and
**                        their offset forms, S a stream's path here:
**                        SNAPSHOTS below)
**   and every other path is a stream in no bucket, exactly as before
**   (/v1/stream/x: "v1" is too short to be a bucket name; /Demo, /ab,
**   /__abcd, /a/b/c/d).  So a stream can no longer be made at a path of
**   one segment that is a bucket name: PUT there makes the bucket.
**
**   Path affinity.  A stream at /{b}/{aff}/{s} belongs to the group of
**   "/{b}/{aff}", not of its whole path (server.c, PLACEMENT), so the
**   streams of one key share a group, its core and its leader.
**   Responses to requests on such a path, and only those, carry
**   Stream-Extensions: path-affinity-v1.  A stream a build before this
**   one made at such a path lives in the group of its whole path: at
**   recovery server.c finds any stream held by a group that is not its
**   path's and refuses to start, naming it (server_check_placement).
**
**   Records.  A bucket exists if it has a record or at least one stream
**   (streams make their bucket implicitly, as the peer's do).  A record
**   (name, created_ms: the command's time) lives in the bucket's home
**   group, the group of "/{b}", made by BUCKET_CREATE and removed by
**   BUCKET_DELETE (cmd.c), kept in the group's snapshot (stream.c).
**     PUT /{b}           201 and a record if it had none, else 200;
**                        Location: /{b}.  A body is ignored (the peer
**                        ignores it too).
**     GET, HEAD /{b}     200 application/json
**                        {"name":B,"streams":N,"bytes":T,"created_ms":M}
**                        (bytes: the sum of its streams' lengths, their
**                        next offsets; M null without a record), 404 if
**                        the bucket does not exist
**     DELETE /{b}        409 if it has a stream (one line says how many),
**                        else 204 if it had a record (removed), else 404
**     GET, HEAD /{b}/streams?prefix=P&after=A&limit=N
**                        200 {"bucket":B,"streams":[{"name":ID,
**                        "content_type":..,"next_offset":..,"closed":..}
**                        ,..],"next_after":ID|null}: the ids (an
**                        affinity stream's as "aff/s") that start with P
**                        and sort after A, bytewise, at most N (default
**                        100; 1..1000 in canonical decimal, else 400),
**                        in byte order; next_after is the last id given
**                        when more follow.  404 if the bucket does not
**                        exist.
**     GET, HEAD /__ursula/buckets
**                        200 [{"name":B,"streams":N,"bytes":T},..] by
**                        name: every bucket with a record or a stream
**   Other methods on /{b} and /{b}/streams are 405 with Allow (RFC 9110
**   section 15.5.6); OPTIONS is the CORS preflight, as for streams.
**
**   The delete race.  DELETE /{b} asks every group for the bucket's
**   streams, then, if none, removes the record in its group: a stream
**   created in the bucket between the two makes it exist again,
**   implicitly (a bucket with a stream and no record).  That is the
**   semantics, not a bug: a delete never removes a stream, and the
**   bucket it left is an implicit one.
**
**   Counting and listing are a scatter-gather, not a catalogue: a
**   bucket's streams are in every group, and a catalogue group would put
**   a second, cross-group write on every stream create and delete.  The
**   gathering visits every core (group.c, BUCKETS), each looking at its
**   own groups' streams on its own thread, as /__ursula/cluster does;
**   what each finds is added to the query as it passes, and the answer
**   is written on the requesting core.  The cost is O(streams on the
**   node) per GET /{b}, DELETE /{b}, listing page, or bucket list, and a
**   listing keeps at most 2 * (limit + 1) + 1 entries at a time.  In a
**   cluster each node answers from its applied state: a follower may be
**   a moment behind its leader (a read barrier per group before the
**   gathering is future work).  Writes (PUT, DELETE /{b}) go to the
**   record group's leader like any write.
**
**   Authentication.  With --auth-file a bucket route needs read (GET,
**   HEAD) or write (PUT, DELETE), as a stream does, with the token's
**   prefix checked against the path "/{b}" for /{b} and /{b}/streams
**   alike (a listing shows every stream of the bucket): a prefix "/demo"
**   covers them, a prefix "/demo/" (which covers demo's streams) does
**   not.  GET /__ursula/buckets needs read with a prefix that covers
**   "/__ursula/buckets" ('*' or "/", in practice): it names every bucket.
**
** RECORDS (json-record-coordinates-v1; issue 16, item 7; README, "JSON
** record coordinates").  On an application/json stream every message
** (a top-level value; each element of a top-level array) is a record,
** numbered from 0 over the stream's life; a fork's continue its
** source's.  The state machine counts them per append (stream.c,
** "Records"); here they are asked for and shown:
**   GET ?record=N|now, ?tail_records=N (from next - N, at least the
**     first), ?max_records=N (1.., with record or tail_records), and
**     ?record_view=envelope (with any start).  record, tail_records and
**     max_records exclude offset; each parameter at most once; numbers
**     up to 2^53 - 1; else 400.  A record start on a stream not JSON is
**     a 400, one below the first retained record a 410, one past the
**     next a 400, both with Stream-Record-First and Stream-Record-Next.
**     A live read (long-poll, SSE) may start at a record.  A record read
**     is one response (never a catch-up in parts), at most
**     --max-read-bytes as any read, and at most max_records records.
**   Stream-Record-First (the first retained record), Stream-Record-Start
**     (the first record of the response's data; a create's or an
**     append's first record appended) and Stream-Record-Next (the record
**     after the response's data; HEAD, create and append: the stream's
**     next) on every HEAD, read, long-poll, create and append of a JSON
**     stream; and Stream-Extensions: json-record-coordinates-v1 on every
**     response about one (with path-affinity-v1 as "a, b").
**   Offsets agree with records: Stream-Next-Offset of a record read is
**     the byte offset after its last record, also inside an append (a
**     max_records cut); a read from an offset inside an append that is a
**     record boundary starts at that record (the records of the append
**     before it are dropped, api_record_window), while an offset that is
**     no record boundary still reads the whole append, as before.
**   The envelope view answers Content-Type
**     application/vnd.durable-stream-records+ndjson, one line per record
**     {"record":N,"value":V}; on SSE each record is a data event of its
**     own, {"record":N,"value":V}, and the response says
**     Stream-Data-Content-Type: application/vnd.durable-stream-record+json.
**     Every SSE control event of a JSON stream carries streamFirstRecord
**     and streamNextRecord (sse.c).
**   Stream-Record-Match: N on an append: applied only if the stream's
**     next record is N, else 412 with Stream-Record-Next; decided by the
**     apply (stream.c), 400 there on a stream not JSON.  A producer's
**     duplicate answers as a duplicate first.
**
** LIVE READERS.  A long-poll or SSE reader that reached the tail waits in
** this core's live table (live.c), which wakes it through api_on_wake();
** its connection is then CONN_LIVE, and `phase` says which it is.  SSE
** events are framed by sse.c.
*/
#include "internal.h"

/* What a live reader is doing, while its connection is CONN_LIVE. */
enum { API_POLL = 1, API_SSE };

#define API_CURSOR_EPOCH_MS 1728432000000ULL /* 2024-10-09T00:00:00Z */
#define API_CURSOR_INTERVAL_MS 20000

/* A connection as the protocol sees it: conn.c's part, then the request
** being read and the live reader. */
struct api_conn {
  struct conn c; /* first: conn.c allocates and frees the whole */
  /* the request being read */
  struct job *job;
  char host[256]; /* the validated authority, for Location */
  /* If-None-Match, all its lines joined with ','; inm_state 0: none,
  ** 1: inm holds it, -1: too long to keep (the field is then ignored) */
  char inm[512];
  int inm_state;
  int has_cursor;
  uint64_t cursor;
  /* live reading */
  struct live_waiter lw; /* its watch and where this reader is (live.c) */
  int live;              /* JOB_LIVE_POLL or JOB_LIVE_SSE */
  int phase;             /* API_POLL or API_SSE, while CONN_LIVE */
  int live_json, live_b64;
  uint64_t sse_end_ms; /* loop time at which the SSE response ends */
  /* a catch-up response sent in parts (api_catchup_more): the read job,
  ** kept between parts while the last part is being sent, the end the
  ** response's head promised, the stream incarnation it is of */
  struct job *more;
  uint64_t more_end, more_inc;
  /* an SSE reader whose client is behind (conn_backlogged): it waits,
  ** in the wait list but sending nothing, until all is written, then
  ** reads on from lw.offset (api_sse_next) */
  int sse_held;
  char live_type[256]; /* the stream's content type */
  /* GET /__ursula/cluster: the gathering under way (its reply must find
  ** it here), and the Allow of a 405 on that path (NULL: the streams') */
  struct group_gather *gather;
  const char *allow;
  /* metrics: the request's method (metrics_method() + 1; 0: none read),
  ** the admin path asked (API_ADMIN_*), and for an append in flight when
  ** it was sent (os microseconds) and its body's bytes */
  int method;
  int admin_route;
  uint64_t t0_us, append_bytes;
  /* authentication: the WWW-Authenticate value of the 401 or 403 being
  ** answered (NULL: none), and the SHA-256 of the token the request was
  ** admitted with (auth_ok: one was) */
  const char *challenge;
  int auth_ok;
  unsigned char auth_hash[CRYPTO_SHA256_LEN];
  /* the admin paths /__ursula/backup...: the method (API_GET...), the
  ** group (-1: none or no such group), and the Range field (range_state
  ** 0: none, 1: range holds it, -1: too long, or more than one field) */
  int backup_method;
  int backup_group;
  char range[64];
  int range_state;
  /* BUCKETS: the request is on a "/{b}/{aff}/{s}" path (its response
  ** says Stream-Extensions: path-affinity-v1), and a DELETE /{b} whose
  ** job waits for the gathering that checks the bucket is empty */
  int affinity;
  struct job *bucket_delete;
  /* RECORDS: the response is about a JSON stream (Stream-Extensions);
  ** a live reader's view (envelope) and the records it has been sent:
  ** the first retained, and the next after what it got */
  int records;
  int envelope;
  uint64_t rec_first, rec_next;
  /* batch.c: Prefer: return=minimal was sent (RFC 7240) */
  int prefer_minimal;
};

enum { API_GET = 1, API_HEAD_M, API_PUT, API_POST, API_DELETE, API_OPTIONS };

/* ------------------------------------------------------------ headers */

static const char api_common_headers[] =
    "X-Content-Type-Options: nosniff\r\n"
    "Cross-Origin-Resource-Policy: cross-origin\r\n"
    "Access-Control-Allow-Origin: *\r\n"
    "Access-Control-Expose-Headers: Stream-Next-Offset, Stream-Cursor, "
    "Stream-Up-To-Date, Stream-Closed, Stream-SSE-Data-Encoding, "
    "Producer-Epoch, Producer-Seq, Producer-Expected-Seq, "
    "Producer-Received-Seq, ETag, Content-Type, Location, "
    "WWW-Authenticate, Stream-Extensions, Stream-Record-First, "
    "Stream-Record-Start, Stream-Record-Next, Stream-Data-Content-Type, "
    "Stream-Snapshot-Offset, Stream-Snapshot-Digest, "
    "Stream-Retained-Offset\r\n";

static const char api_preflight_headers[] =
    "Access-Control-Allow-Methods: GET, POST, PUT, DELETE, HEAD, OPTIONS\r\n"
    "Access-Control-Allow-Headers: content-type, authorization, "
    "if-none-match, Stream-Seq, Stream-TTL, Stream-Expires-At, "
    "Stream-Closed, Producer-Id, Producer-Epoch, Producer-Seq, "
    "Stream-Forked-From, Stream-Fork-Offset, Stream-Fork-Sub-Offset, "
    "Stream-Record-Match, Stream-Snapshot-Match\r\n"
    "Access-Control-Max-Age: 86400\r\n";

/* The extensions a response about a stream with an affinity key (or its
** group's $transaction) advertises: the key's streams share a group
** (path-affinity-v1), so they can be appended to together
** (group-append-transaction-v1, batch.c). */
#define API_AFFINITY_EXT "path-affinity-v1, group-append-transaction-v1"
/* RECORDS: the extension, and the media types of the envelope view */
#define API_RECORDS_EXT "json-record-coordinates-v1"
#define API_RECORDS_TYPE "application/vnd.durable-stream-records+ndjson"
#define API_RECORD_TYPE "application/vnd.durable-stream-record+json"

/* Start a response: status line and the headers every response has.
** Every response (but conn.c's 503 to a client it cannot take) starts
** here, so here it is counted. */
static void api_begin(struct api_conn *cn, int status) {
  metrics_count_request(
      &cn->c.core->metrics,
      cn->method > 0 ? cn->method - 1 : METRICS_N_METHODS - 1,
      cn->c.admin ? METRICS_ROUTE_ADMIN : METRICS_ROUTE_STREAM, status);
  cn->method = 0;
  buf_printf(conn_out(&cn->c), "HTTP/1.1 %d %s\r\n", status,
             http_status_text(status));
  if (cn->c.admin) /* no CORS: no web page may read the operator's paths */
    buf_append_str(conn_out(&cn->c), "X-Content-Type-Options: nosniff\r\n");
  else
    buf_append(conn_out(&cn->c), api_common_headers,
               sizeof(api_common_headers) - 1);
  if (!cn->c.keep_alive)
    buf_append_str(conn_out(&cn->c), "Connection: close\r\n");
  else if (cn->c.http10) /* persistence in 1.0 is opt-in: confirm it */
    buf_append_str(conn_out(&cn->c), "Connection: keep-alive\r\n");
  if (cn->affinity || cn->records) /* one response per request: spent */
    buf_printf(conn_out(&cn->c), "Stream-Extensions: %s%s%s\r\n",
               cn->affinity ? API_AFFINITY_EXT : "",
               cn->affinity && cn->records ? ", " : "",
               cn->records ? API_RECORDS_EXT : "");
  cn->affinity = 0;
  cn->records = 0;
}

/* The record headers of a JSON stream's response (RECORDS); start only
** if has_start. */
static void api_record_headers(struct api_conn *cn, uint64_t first,
                               int has_start, uint64_t start, uint64_t next) {
  buf_printf(conn_out(&cn->c), "Stream-Record-First: %llu\r\n",
             (unsigned long long)first);
  if (has_start)
    buf_printf(conn_out(&cn->c), "Stream-Record-Start: %llu\r\n",
               (unsigned long long)start);
  buf_printf(conn_out(&cn->c), "Stream-Record-Next: %llu\r\n",
             (unsigned long long)next);
}

static void api_offset_header(struct api_conn *cn, const char *name,
                              uint64_t off) {
  char text[40];
  util_offset(text, off);
  buf_printf(conn_out(&cn->c), "%s: %s\r\n", name, text);
}

/* End the head and add a body of len bytes (Content-Length). */
static void api_end(struct api_conn *cn, const void *body, size_t len) {
  buf_printf(conn_out(&cn->c), "Content-Length: %lu\r\n\r\n",
             (unsigned long)len);
  if (len && !cn->c.head) buf_append(conn_out(&cn->c), body, len);
}

/* api_end() for a read's data, taken from *data (emptied) rather than
** copied when it is large: a JSON stream's data "v1,v2," is answered as
** "[v1,v2]" (the last comma becomes the bracket, in place). */
static void api_end_data(struct api_conn *cn, int json, struct buf *data) {
  size_t len = json ? (data->len ? data->len + 1 : 2) : data->len;
  buf_printf(conn_out(&cn->c), "Content-Length: %lu\r\n\r\n",
             (unsigned long)len);
  if (cn->c.head) return;
  if (json) {
    buf_append(conn_out(&cn->c), data->len ? "[" : "[]", data->len ? 1 : 2);
    if (data->len) data->ptr[data->len - 1] = ']';
  }
  conn_out_body(&cn->c, data);
}

/* ------------------------------------------------------------ errors */

static void api_error(struct api_conn *cn, int status, const char *reason) {
  api_begin(cn, status);
  buf_append_str(conn_out(&cn->c),
                 "Content-Type: text/plain; charset=utf-8\r\n");
  if (status == 405)
    buf_printf(conn_out(&cn->c), "Allow: %s\r\n",
               cn->allow != NULL ? cn->allow
                                 : "GET, HEAD, PUT, POST, DELETE, OPTIONS");
  if (status == 503) /* RFC 9110 §10.2.3: when to try again */
    buf_append_str(conn_out(&cn->c), "Retry-After: 1\r\n");
  if ((status == 401 || status == 403) && cn->challenge != NULL)
    buf_printf(conn_out(&cn->c), "WWW-Authenticate: %s\r\n", cn->challenge);
  cn->challenge = NULL;
  buf_printf(conn_out(&cn->c), "Content-Length: %lu\r\n\r\n",
             (unsigned long)strlen(reason) + 1);
  if (!cn->c.head) buf_printf(conn_out(&cn->c), "%s\n", reason);
}

/* A 200 whose body is a JSON document of len bytes, not to be cached
** (the server's own paths: /__ursula/cluster, the backup paths). */
static void api_json_200(struct api_conn *cn, const void *body, size_t len) {
  api_begin(cn, 200);
  buf_append_str(conn_out(&cn->c),
                 "Content-Type: application/json\r\n"
                 "Cache-Control: no-store\r\n");
  api_end(cn, body, len);
}

/* conn.c's on_error hook. */
static void api_on_error(struct conn *c, int status, const char *reason) {
  api_error((struct api_conn *)(void *)c, status, reason);
}

static int api_polling(const struct api_conn *cn) {
  return cn->c.state == CONN_LIVE && cn->phase == API_POLL;
}

/* ------------------------------------------------------------ cursor */

/* Stream-Cursor: the current 20 s interval since the cursor epoch; if the
** client already holds that interval or a later one, a value strictly
** greater by a random 1..180 intervals, so cached responses never loop. */
static uint64_t api_cursor(struct api_conn *cn) {
  struct env *env = cn->c.core->srv->env;
  uint64_t now = env->wall_ms(env), cur = 0;
  if (now > API_CURSOR_EPOCH_MS)
    cur = (now - API_CURSOR_EPOCH_MS) / API_CURSOR_INTERVAL_MS;
  if (cn->has_cursor && cn->cursor >= cur) {
    uint64_t r = util_hash64(&now, sizeof(now)) ^ cn->c.id;
    cur = cn->cursor + 1 + r % 180;
  }
  return cur;
}

/* ------------------------------------------------------------ reads */

/* Append the response body for data bytes of a stream (JSON streams store
** "v1,v2," and answer "[v1,v2]"). */
static void api_body_bytes(struct buf *out, int json, const char *p,
                           size_t len) {
  if (json) {
    buf_append(out, "[", 1);
    if (len > 0) buf_append(out, p, len - 1);
    buf_append(out, "]", 1);
  } else {
    buf_append(out, p, len);
  }
}

/* RECORDS.  How many whole records of the stored JSON p[0..len) ("v1,
** v2,...,") take exactly `bytes` bytes; 0 if no run of them does. */
static uint64_t api_records_before(const char *p, size_t len, uint64_t bytes) {
  size_t at = 0;
  uint64_t k = 0;
  while (at < bytes) {
    size_t n = json_prefix_len(p + at, len - at, 1);
    if (n == (size_t)-1 || n == 0) return 0;
    at += n;
    k++;
  }
  return at == bytes ? k : 0;
}

/* Fit a JSON read's answer to what was asked (RECORDS): drop the records
** of its first append before the start asked (a record read's rec_skip,
** or an offset inside the append that is a record boundary), cut it
** after max_records, and set rec_end, the record after its data.  A
** cut moves tail (Stream-Next-Offset), and the answer is then not up to
** date.  0, or -1 if the data does not reach the record asked (a record
** a fork inherited, beyond one read's window). */
static int api_record_window(struct job *j) {
  uint64_t skip = 0;
  size_t cut;
  if (!j->json || j->status != 200) return 0;
  if (j->rec_mode != JOB_REC_NONE)
    skip = j->rec_skip;
  else if (!j->offset_now && j->offset > j->start && j->offset < j->tail)
    skip = api_records_before(j->data.ptr, j->data.len, j->offset - j->start);
  if (skip > 0) {
    cut = json_prefix_len(j->data.ptr, j->data.len, (size_t)skip);
    if (cut == (size_t)-1 || cut == j->data.len) return -1;
    buf_consume(&j->data, cut);
    j->start += cut;
    j->rec_start += skip;
  }
  j->rec_skip = 0;
  if (j->max_records > 0 && j->max_records < (uint64_t)j->data.len) {
    cut = json_prefix_len(j->data.ptr, j->data.len, (size_t)j->max_records);
    if (cut != (size_t)-1 && cut < j->data.len) {
      j->data.len = cut;
      j->tail = j->start + cut;
      j->up_to_date = 0;
      j->closed = 0;
    }
  }
  j->rec_end = j->rec_start + json_count(j->data.ptr, j->data.len);
  return 0;
}

/* The envelope view of the stored JSON p[0..len), its first record rec:
** one line {"record":N,"value":V} per record; sep ends each line. */
static void api_envelope(struct buf *out, const char *p, size_t len,
                         uint64_t rec, const char *sep) {
  size_t at = 0;
  while (at < len) {
    size_t n = json_prefix_len(p + at, len - at, 1);
    if (n == (size_t)-1 || n == 0) break; /* (stored whole: cannot be) */
    buf_printf(out, "{\"record\":%llu,\"value\":", (unsigned long long)rec++);
    buf_append(out, p + at, n - 1);
    buf_append_str(out, "}");
    buf_append_str(out, sep);
    at += n;
  }
}

/* End a read's head and add its data: the envelope view, or as
** api_end_data(). */
static void api_end_read(struct api_conn *cn, struct job *j) {
  struct buf body;
  if (!(j->json && j->envelope)) {
    api_end_data(cn, j->json, &j->data);
    return;
  }
  memset(&body, 0, sizeof(body));
  api_envelope(&body, j->data.ptr, j->data.len, j->rec_start, "\n");
  api_end(cn, body.ptr, body.len);
  buf_free(&body);
}

/* A record start refused (group.c, RECORDS: 400, 410): the error, with
** the stream's record headers. */
static void api_record_error(struct api_conn *cn, const struct job *j) {
  const char *reason = j->reason ? j->reason : "error";
  cn->records = 1;
  api_begin(cn, j->status);
  api_record_headers(cn, j->rec_first, 0, 0, j->rec_next);
  buf_printf(conn_out(&cn->c),
             "Content-Type: text/plain; charset=utf-8\r\n"
             "Content-Length: %lu\r\n\r\n",
             (unsigned long)strlen(reason) + 1);
  if (!cn->c.head) buf_printf(conn_out(&cn->c), "%s\n", reason);
}

static void api_read_headers(struct api_conn *cn, const struct job *j,
                             int live) {
  buf_printf(conn_out(&cn->c), "Content-Type: %s\r\n",
             j->json && j->envelope ? API_RECORDS_TYPE : j->res_type);
  api_offset_header(cn, "Stream-Next-Offset", j->tail);
  if (j->json)
    api_record_headers(cn, j->rec_first, j->rec_start_known, j->rec_start,
                       j->rec_end);
  if (j->up_to_date)
    buf_append_str(conn_out(&cn->c), "Stream-Up-To-Date: true\r\n");
  if (j->closed) buf_append_str(conn_out(&cn->c), "Stream-Closed: true\r\n");
  if (j->retained > 0)
    buf_printf(conn_out(&cn->c), "Stream-Retained-Offset: %llu\r\n",
               (unsigned long long)j->retained);
  if (live && !j->closed)
    buf_printf(conn_out(&cn->c), "Stream-Cursor: %llu\r\n",
               (unsigned long long)api_cursor(cn));
}

/* The ETag of the catch-up bytes [start, end) of a stream incarnation,
** with ":c" when the stream is closed and end is its tail.  GET and HEAD
** both take it from here (RFC 9110 section 9.3.2: a HEAD carries the
** fields its GET would). */
static void api_etag(char *out, size_t cap, uint64_t incarnation,
                     uint64_t start, uint64_t end, int closed_at_end,
                     int envelope) {
  snprintf(out, cap, "\"%llx:%llu:%llu%s%s\"", (unsigned long long)incarnation,
           (unsigned long long)start, (unsigned long long)end,
           closed_at_end ? ":c" : "", envelope ? ":e" : "");
}

/* Whether the request's If-None-Match is false for a response of this
** etag (NULL: none), i.e. the client has it (RFC 9110 section 13.1.2,
** weak comparison): a GET or HEAD is then answered 304. */
static int api_not_modified(const struct api_conn *cn, const char *etag) {
  struct str none;
  none.ptr = "";
  none.len = 0;
  if (cn->inm_state != 1) return 0;
  return http_if_none_match(util_str(cn->inm),
                            etag ? util_str(etag) : none) == 1;
}

/* 304 Not Modified: the fields a 200 would carry that describe the
** representation (RFC 9110 section 15.4.5), no content. */
static void api_reply_304(struct api_conn *cn, const char *etag,
                          uint64_t tail, const char *cache_control) {
  api_begin(cn, 304);
  if (etag) buf_printf(conn_out(&cn->c), "ETag: %s\r\n", etag);
  api_offset_header(cn, "Stream-Next-Offset", tail);
  buf_printf(conn_out(&cn->c), "Cache-Control: %s\r\n\r\n", cache_control);
}

#define API_CACHE_CATCHUP "public, max-age=60, stale-while-revalidate=300"

static void api_catchup_reply(struct api_conn *cn, struct job *j) {
  char etag[160];
  struct buf body;
  memset(&body, 0, sizeof(body));
  if (j->offset_now || j->rec_mode == JOB_REC_NOW) {
    if (api_not_modified(cn, NULL)) { /* only "*" can match no ETag */
      api_reply_304(cn, NULL, j->tail, "no-store");
      return;
    }
    cn->records = j->json;
    api_begin(cn, 200);
    api_read_headers(cn, j, 0);
    buf_append_str(conn_out(&cn->c), "Cache-Control: no-store\r\n");
    if (!(j->json && j->envelope)) api_body_bytes(&body, j->json, "", 0);
    api_end(cn, body.ptr, body.len);
    buf_free(&body);
    return;
  }
  api_etag(etag, sizeof(etag), j->incarnation, j->start, j->tail, j->closed,
           j->json && j->envelope);
  if (api_not_modified(cn, etag)) {
    api_reply_304(cn, etag, j->tail, API_CACHE_CATCHUP);
    return;
  }
  cn->records = j->json;
  api_begin(cn, 200);
  api_read_headers(cn, j, 0);
  buf_printf(conn_out(&cn->c), "ETag: %s\r\n", etag);
  buf_append_str(conn_out(&cn->c), "Cache-Control: " API_CACHE_CATCHUP "\r\n");
  api_end_read(cn, j);
}

/* CATCH-UP IN PARTS.  A catch-up GET answers everything from its offset
** up to the tail as it was at the first read, T, in one response (the
** official clients' non-live reads take one response as all there is),
** if T is at most --max-catchup-bytes away; past that, one part, and the
** reader follows Stream-Next-Offset.  The head goes out with the first
** part: Content-Length for [start, T) (a JSON stream's stored bytes
** "v1,v2," are sent as "[v1,v2]": one byte more), Stream-Next-Offset T,
** Stream-Up-To-Date, Stream-Closed if the stream was closed at T, and the
** ETag of [start, T).  Each further part, at most --max-read-bytes, is
** read (a job to the stream's owner, ending at T) only once the part
** before it has been written to the socket, so a reader holds at most
** about two parts of memory however large the range.  The bytes below T
** never change; if a later part cannot be read (the stream was deleted,
** or replaced by another incarnation, or a read failed), the connection
** is ended at once: the client sees the body cut short, never wrong
** bytes.  Returns 1 if the response goes on in parts (j is kept), 2 if
** it was answered 304, 0 if it is one part (api_catchup_reply). */
static int api_catchup_parts(struct api_conn *cn, struct job *j) {
  char etag[160];
  uint64_t start = j->start, end = j->stream_tail, len;
  struct job hj;
  if (j->offset_now || cn->c.head || j->tail >= end || end < start ||
      end - start > j->catchup_max || j->rec_mode != JOB_REC_NONE ||
      (j->json && j->envelope)) /* (RECORDS: one response) */
    return 0;
  api_etag(etag, sizeof(etag), j->incarnation, start, end, j->stream_closed,
           0);
  if (api_not_modified(cn, etag)) {
    api_reply_304(cn, etag, end, API_CACHE_CATCHUP);
    return 2;
  }
  hj = *j; /* the head as of T */
  hj.tail = end;
  hj.up_to_date = 1;
  hj.closed = j->stream_closed;
  hj.rec_end = j->rec_next; /* the record at T */
  cn->records = j->json;
  api_begin(cn, 200);
  api_read_headers(cn, &hj, 0);
  buf_printf(conn_out(&cn->c), "ETag: %s\r\n", etag);
  buf_append_str(conn_out(&cn->c), "Cache-Control: " API_CACHE_CATCHUP "\r\n");
  len = j->json ? end - start + 1 : end - start; /* start < end here */
  buf_printf(conn_out(&cn->c), "Content-Length: %llu\r\n\r\n",
             (unsigned long long)len);
  if (j->json) buf_append(conn_out(&cn->c), "[", 1);
  conn_out_body(&cn->c, &j->data);
  cn->more = j;
  cn->more_end = end;
  cn->more_inc = j->incarnation;
  conn_want_sent(&cn->c);
  return 1;
}

/* A later part came back (api_catchup_parts): send it, and either ask
** for the next once it is written, or end the response. */
static void api_catchup_part(struct api_conn *cn, struct job *j) {
  if (j->status != 200 || j->incarnation != cn->more_inc ||
      j->start != j->offset || j->tail <= j->start || j->tail > cn->more_end ||
      j->data.len != j->tail - j->start) {
    LOG_W("catch-up read of %.*s cut short at %llu of %llu: %s", (int)j->path_len,
          j->path, (unsigned long long)j->start,
          (unsigned long long)cn->more_end,
          j->status != 200 && j->reason ? j->reason : "the stream changed");
    job_free(j);
    conn_abort(&cn->c);
    return;
  }
  if (j->tail == cn->more_end) { /* the last part */
    if (j->json) j->data.ptr[j->data.len - 1] = ']';
    conn_out_body(&cn->c, &j->data);
    job_free(j);
    conn_done(&cn->c);
    return;
  }
  conn_out_body(&cn->c, &j->data);
  cn->more = j;
  conn_want_sent(&cn->c);
  conn_flush(&cn->c);
}

static void api_dispatch_read(struct api_conn *cn, uint64_t offset, int now);

/* conn.c's on_sent hook: all that was queued is written.  An SSE reader
** held back (api_sse_next) reads on; a catch-up in parts reads its next
** part. */
static void api_on_sent(struct conn *c) {
  struct api_conn *cn = (struct api_conn *)(void *)c;
  struct job *j = cn->more;
  if (cn->sse_held) { /* its client caught up with what was queued */
    cn->sse_held = 0;
    if (cn->lw.watch != NULL && cn->job == NULL && !cn->c.closing) {
      live_unwait(&cn->lw);
      api_dispatch_read(cn, cn->lw.offset, 0);
    }
    return;
  }
  if (j == NULL || cn->job != NULL) return;
  cn->more = NULL;
  j->offset = j->tail;
  j->offset_now = 0;
  j->offset_given = 1; /* below the retained offset now: 410, not others */
  j->fetch_missed = 0; /* (each part may miss a chunk once) */
  j->end_limit = cn->more_end;
  j->status = 0;
  j->reason = NULL;
  j->data.len = 0;
  j->msg.next = NULL;
  cn->job = j;
  group_dispatch(cn->c.core, j);
}

/* Long-poll answers: data (200), or nothing new (204). */
static void api_poll_reply(struct api_conn *cn, struct job *j) {
  cn->records = j->json;
  if (j->data.len == 0) {
    api_begin(cn, 204);
    api_read_headers(cn, j, 1);
    buf_append_str(conn_out(&cn->c), "Cache-Control: no-cache\r\n\r\n");
    return;
  }
  api_begin(cn, 200);
  api_read_headers(cn, j, 1);
  buf_append_str(conn_out(&cn->c), "Cache-Control: no-cache\r\n");
  cn->c.core->metrics.live_bytes += j->data.len;
  api_end_read(cn, j);
}

/* One "event: data" with payload p (sse.c frames it): a JSON stream's
** messages as one array, a binary stream's bytes as base64. */
static void api_sse_data(struct api_conn *cn, struct buf *ev, const char *p,
                         size_t len) {
  struct buf tmp;
  memset(&tmp, 0, sizeof(tmp));
  if (cn->live_json && cn->envelope) { /* RECORDS: one event per record */
    size_t at = 0;
    while (at < len) {
      size_t n = json_prefix_len(p + at, len - at, 1);
      if (n == (size_t)-1 || n == 0) break;
      tmp.len = 0;
      api_envelope(&tmp, p + at, n, cn->rec_next++, "");
      sse_event(ev, "data", tmp.ptr, tmp.len);
      at += n;
    }
    buf_free(&tmp);
    return;
  }
  if (cn->live_json) {
    api_body_bytes(&tmp, 1, p, len);
    p = tmp.ptr;
    len = tmp.len;
  } else if (cn->live_b64) {
    util_base64_append(&tmp, p, len);
    p = tmp.ptr ? tmp.ptr : "";
    len = tmp.len;
  }
  sse_event(ev, "data", p, len);
  buf_free(&tmp);
}

/* An SSE response lasts --sse-close-ms (protocol 2.10: servers should
** close SSE connections about every 60 s; the client reconnects from
** the last streamNextOffset).  It ends only between events: after a
** send (api_sse_send) or when its timer finds it idle. */
static int api_sse_over(const struct api_conn *cn) {
  return loop_now_ms(cn->c.core->loop) >= cn->sse_end_ms;
}

/* Wait idle: the timer fires for the next keep-alive comment, or for the
** end of the response if that comes first. */
static void api_sse_arm(struct api_conn *cn) {
  uint64_t now = loop_now_ms(cn->c.core->loop);
  uint64_t ms = (uint64_t)cn->c.core->srv->cfg.sse_keepalive_ms;
  if (cn->sse_end_ms <= now)
    ms = 0;
  else if (cn->sse_end_ms - now < ms)
    ms = cn->sse_end_ms - now;
  conn_arm(&cn->c, (int)ms);
}

/* Send data [.., tail) and its control event on an SSE response
** (cn->lw.offset becomes the offset after what was sent); end the
** response if the stream is closed there, or its time is up.  Text that
** stops short of the tail (a read cut at --max-read-bytes) is sent only
** up to the last whole UTF-8 character: the rest starts the next event,
** since a client decodes each event on its own. */
static void api_sse_send(struct api_conn *cn, const char *p, size_t len,
                         uint64_t tail, int up_to_date, int closed) {
  struct buf ev;
  if (!up_to_date && !cn->live_json && !cn->live_b64) {
    size_t whole = sse_utf8_cut(p, len);
    if (whole > 0) {
      tail -= len - whole;
      len = whole;
    }
  }
  memset(&ev, 0, sizeof(ev));
  cn->c.core->metrics.live_bytes += len;
  if (len > 0) api_sse_data(cn, &ev, p, len);
  if (cn->live_json && !cn->envelope) cn->rec_next += json_count(p, len);
  sse_control(&ev, tail, closed ? 0 : api_cursor(cn), up_to_date, closed,
              cn->live_json, cn->rec_first, cn->rec_next);
  conn_chunk(&cn->c, &ev);
  buf_free(&ev);
  cn->lw.offset = tail;
  if (closed || api_sse_over(cn)) conn_end_chunks(&cn->c);
}

/* An SSE reader goes on from lw.offset: a read now, or, if its client is
** backlogged (conn.c, OUTPUT BACK-PRESSURE), once everything queued is
** written (api_on_sent).  Meanwhile it stays in the wait list, so its
** watch lives, and the wake-ups it gets change nothing (api_on_wake). */
static void api_sse_next(struct api_conn *cn) {
  if (cn->sse_held || conn_backlogged(&cn->c)) {
    cn->sse_held = 1;
    if (!cn->lw.waiting) live_wait(&cn->lw);
    conn_want_sent(&cn->c);
    return;
  }
  api_dispatch_read(cn, cn->lw.offset, 0);
}

static void api_sse_reply(struct api_conn *cn, struct job *j, int first) {
  if (first) {
    /* An SSE response ends by closing the connection (the stream closed
    ** or went away, or the server stops), so say so up front: a client
    ** must not pool it for its next request. */
    cn->c.keep_alive = 0;
    cn->sse_end_ms = loop_now_ms(cn->c.core->loop) +
                     (uint64_t)cn->c.core->srv->cfg.sse_close_ms;
    cn->records = j->json;
    api_begin(cn, 200);
    buf_append_str(conn_out(&cn->c),
                   "Content-Type: text/event-stream\r\n"
                   "Cache-Control: no-cache\r\n");
    conn_begin_chunks(&cn->c);
    if (cn->live_b64)
      buf_append_str(conn_out(&cn->c), "Stream-SSE-Data-Encoding: base64\r\n");
    if (cn->live_json && cn->envelope)
      buf_append_str(conn_out(&cn->c),
                     "Stream-Data-Content-Type: " API_RECORD_TYPE "\r\n");
    buf_append_str(conn_out(&cn->c), "\r\n");
  }
  api_sse_send(cn, j->data.ptr, j->data.len, j->tail, j->up_to_date, j->closed);
}

/* ------------------------------------------------------------ SNAPSHOTS

   SNAPSHOTS, RETENTION AND BOOTSTRAP (issue 16, item 6: the Loro
   design).  On every stream path in a bucket, S = "/{b}/{s}" or
   "/{b}/{aff}/{s}" (BUCKETS), these routes (api_snap_route; the last
   segments are ids a stream cannot have):

     S/snapshot/{o}    PUT: publish the body as the snapshot at byte
                       offset o, its Content-Type beside it (default
                       application/octet-stream); 201, or 200 for the
                       same snapshot again, with Location:
                       S/snapshot/{o:020}, Stream-Snapshot-Offset: {o:020}
                       and Stream-Snapshot-Digest.  GET, HEAD: 200, its
                       bytes and type, the same two headers; 404 if the
                       snapshot is not at o.  DELETE: 409 on the visible
                       snapshot (it is only ever replaced), else 404.
     S/snapshot        GET, HEAD: 307 to S/snapshot/{o:020} (an absolute
                       path: RFC 9110 section 10.2.2), 404 if none.
     S/retention/{o}   PUT: 204, Stream-Retained-Offset: the retained
                       offset after it (unpadded, as the peer).
     S/bootstrap       GET, HEAD: 200 multipart/mixed (api_bootstrap).
     S/retention       PUT: 400 (the record form is not done).

   o is decimal (20 digits zero-padded or not) or an offset of this
   server ("0000000000000000_<o>").  Stream-Snapshot-Match on a PUT:
   the current snapshot's digest, or "none" for no snapshot yet; 409
   otherwise.  The digest is "sha256:" and the lowercase hex SHA-256 of
   the content type, a NUL byte and the bytes (the peer's is a BLAKE3:
   clients treat it as opaque).  What apply decides (400 offsets, 409
   conflicts) is stream.c's, SNAPSHOTS.  Reads at an offset given below
   the retained offset are 410 with Stream-Next-Offset: the retained
   offset; reads from the start (-1, no offset) begin there (group.c).
   HEAD and reads carry Stream-Retained-Offset when it is > 0.  With
   --auth-file: PUT, DELETE need write, GET, HEAD read, on S.  Other
   methods: 405 with Allow. */

/* "sha256:" and the hex SHA-256 of type, a NUL and body, into out. */
static void api_snap_digest(const char *type, const struct buf *body,
                            char *out) {
  struct crypto_sha256 h;
  unsigned char d[CRYPTO_SHA256_LEN];
  crypto_sha256_init(&h);
  crypto_sha256_update(&h, type, strlen(type) + 1); /* with its NUL */
  if (body->len) crypto_sha256_update(&h, body->ptr, body->len);
  crypto_sha256_final(&h, d);
  memcpy(out, "sha256:", 7);
  crypto_hex(d, sizeof(d), out + 7);
  out[STREAM_DIGEST_LEN] = '\0';
}

/* An error whose answer says where to read on (a 410 below retention). */
static void api_error_next(struct api_conn *cn, int status, const char *reason,
                           uint64_t next) {
  const char *why = reason ? reason : "error";
  api_begin(cn, status);
  api_offset_header(cn, "Stream-Next-Offset", next);
  buf_printf(conn_out(&cn->c),
             "Content-Type: text/plain; charset=utf-8\r\n"
             "Content-Length: %lu\r\n\r\n",
             (unsigned long)strlen(why) + 1);
  if (!cn->c.head) buf_printf(conn_out(&cn->c), "%s\n", why);
}

/* Stream-Snapshot-Offset and -Digest of j's snapshot. */
static void api_snap_headers(struct api_conn *cn, const struct job *j) {
  buf_printf(conn_out(&cn->c),
             "Stream-Snapshot-Offset: %020llu\r\n"
             "Stream-Snapshot-Digest: %s\r\n",
             (unsigned long long)j->snap_at, j->snap_digest);
}

/* Whether the n bytes at p hold the string b. */
static int api_holds(const char *p, size_t n, const char *b) {
  size_t k = strlen(b), i;
  for (i = 0; n >= k && i <= n - k; i++)
    if (p[i] == b[0] && memcmp(p + i, b, k) == 0) return 1;
  return 0;
}

/* A boundary that occurs in no part (RFC 2046 section 5.1.1): 16 random
** hex digits, drawn again (rarely) while a part holds it. */
static int api_boundary(const struct job *j, char *out, size_t cap) {
  int tries;
  for (tries = 0; tries < 16; tries++) {
    unsigned char r[8];
    char hex[17];
    if (os_random_bytes(r, sizeof(r)) != 0) return -1;
    crypto_hex(r, sizeof(r), hex);
    hex[16] = '\0';
    snprintf(out, cap, "ursula-bootstrap-%s", hex);
    if (!api_holds(j->snap.ptr ? j->snap.ptr : "", j->snap.len, out) &&
        !api_holds(j->data.ptr ? j->data.ptr : "", j->data.len, out))
      return 0;
  }
  return -1;
}

/* GET .../bootstrap: multipart/mixed (RFC 2046 section 5.1), the
** snapshot (or an empty application/octet-stream part) and then one part
** per append unit, each with the stream's type (a JSON unit's messages
** as an array).  Each delimiter is preceded by CRLF, which belongs to it;
** the last is "--B--". */
static void api_bootstrap(struct api_conn *cn, struct job *j) {
  struct buf body;
  char b[64];
  const uint64_t *lens = (const uint64_t *)(void *)j->parts.ptr;
  size_t i, n = j->parts.len / sizeof(uint64_t), at = 0;
  int bad = 0;
  if (api_boundary(j, b, sizeof(b)) != 0) {
    api_error(cn, 503, "no multipart boundary could be drawn");
    return;
  }
  memset(&body, 0, sizeof(body));
  bad |= buf_printf(&body, "--%s\r\nContent-Type: %s\r\n\r\n", b,
                    j->has_snap && j->snap_type[0] ? j->snap_type
                                                   : "application/octet-stream");
  if (j->snap.len) bad |= buf_append(&body, j->snap.ptr, j->snap.len);
  for (i = 0; i < n; i++) {
    const char *p = j->data.ptr + at;
    size_t len = (size_t)lens[i];
    bad |= buf_printf(&body, "\r\n--%s\r\nContent-Type: %s\r\n\r\n", b,
                      j->res_type);
    if (j->json) { /* "v1,v2," -> "[v1,v2]" */
      bad |= buf_append(&body, "[", 1);
      bad |= buf_append(&body, p, len - 1);
      bad |= buf_append(&body, "]", 1);
    } else {
      bad |= buf_append(&body, p, len);
    }
    at += len;
  }
  bad |= buf_printf(&body, "\r\n--%s--\r\n", b);
  if (bad) {
    buf_free(&body);
    api_error(cn, 503, "out of memory");
    return;
  }
  api_begin(cn, 200);
  buf_printf(conn_out(&cn->c),
             "Content-Type: multipart/mixed; boundary=%s\r\n"
             "Cache-Control: no-store\r\n",
             b);
  if (j->has_snap)
    buf_printf(conn_out(&cn->c), "Stream-Snapshot-Offset: %020llu\r\n",
               (unsigned long long)j->snap_at);
  else
    buf_append_str(conn_out(&cn->c), "Stream-Snapshot-Offset: -1\r\n");
  api_offset_header(cn, "Stream-Next-Offset", j->tail);
  if (j->up_to_date)
    buf_append_str(conn_out(&cn->c), "Stream-Up-To-Date: true\r\n");
  if (j->closed) buf_append_str(conn_out(&cn->c), "Stream-Closed: true\r\n");
  if (j->retained > 0)
    buf_printf(conn_out(&cn->c), "Stream-Retained-Offset: %llu\r\n",
               (unsigned long long)j->retained);
  api_end(cn, body.ptr, body.len);
  buf_free(&body);
}

/* The answer to a JOB_SNAP_PUT, JOB_SNAP_GET, JOB_RETAIN or
** JOB_BOOTSTRAP. */
static void api_snap_reply(struct api_conn *cn, struct job *j) {
  if (j->status >= 400) {
    api_error(cn, j->status, j->reason ? j->reason : "error");
    return;
  }
  if (j->op == JOB_BOOTSTRAP) {
    api_bootstrap(cn, j);
  } else if (j->op == JOB_RETAIN) {
    api_begin(cn, 204);
    buf_printf(conn_out(&cn->c), "Stream-Retained-Offset: %llu\r\n\r\n",
               (unsigned long long)j->retained);
  } else if (j->op == JOB_SNAP_PUT || !j->offset_given) {
    /* published (201, 200), or GET .../snapshot: where it is (307) */
    api_begin(cn, j->op == JOB_SNAP_PUT ? j->status : 307);
    buf_printf(conn_out(&cn->c), "Location: %.*s/snapshot/%020llu\r\n",
               (int)j->path_len, j->path, (unsigned long long)j->snap_at);
    api_snap_headers(cn, j);
    api_end(cn, "", 0);
  } else if (j->snap_delete) {
    api_error(cn, 409,
              "the visible snapshot is not deleted alone: publish a newer "
              "one to replace it");
  } else {
    api_begin(cn, 200);
    buf_printf(conn_out(&cn->c), "Content-Type: %s\r\n",
               j->snap_type[0] ? j->snap_type : "application/octet-stream");
    api_snap_headers(cn, j);
    buf_append_str(conn_out(&cn->c), "Cache-Control: no-store\r\n");
    api_end(cn, j->snap.ptr, j->snap.len);
  }
}

/* ------------------------------------------------------------ job replies */

static void api_reply_change(struct api_conn *cn, struct job *j) {
  const struct stream_result *r = &j->res;
  cn->records = j->json && j->op != JOB_DELETE;
  if (j->status >= 400) {
    int rec = cn->records && (j->op == JOB_APPEND || j->op == JOB_CREATE);
    api_begin(cn, j->status);
    if (rec && j->status == 412) /* RECORDS: what the next record is */
      api_record_headers(cn, r->rec_first, 0, 0, r->rec_next);
    if (j->status == 409 && r->closed) {
      buf_append_str(conn_out(&cn->c), "Stream-Closed: true\r\n");
      api_offset_header(cn, "Stream-Next-Offset", r->tail);
    }
    if (r->seq_gap)
      buf_printf(
          conn_out(&cn->c),
          "Producer-Expected-Seq: %llu\r\nProducer-Received-Seq: %llu\r\n",
          (unsigned long long)r->expected_seq,
          (unsigned long long)r->received_seq);
    if (r->fenced)
      buf_printf(conn_out(&cn->c), "Producer-Epoch: %llu\r\n",
                 (unsigned long long)r->current_epoch);
    if (j->status == 503) /* RFC 9110 §10.2.3: when to try again */
      buf_append_str(conn_out(&cn->c), "Retry-After: 1\r\n");
    buf_append_str(conn_out(&cn->c),
                   "Content-Type: text/plain; charset=utf-8\r\n");
    buf_printf(conn_out(&cn->c), "Content-Length: %lu\r\n\r\n%s\n",
               (unsigned long)strlen(j->reason ? j->reason : "") + 1,
               j->reason ? j->reason : "");
    return;
  }
  if (j->op == JOB_APPEND)
    metrics_observe_append(&cn->c.core->metrics,
                           os_now_us() - cn->t0_us, cn->append_bytes);
  api_begin(cn, j->status);
  if (j->op == JOB_CREATE) {
    buf_printf(conn_out(&cn->c), "Content-Type: %s\r\n", j->res_type);
    if (j->status == 201)
      buf_printf(conn_out(&cn->c), "Location: http://%s%.*s\r\n", cn->host,
                 (int)j->path_len, j->path);
  }
  if (j->op != JOB_DELETE) api_offset_header(cn, "Stream-Next-Offset", r->tail);
  if (r->closed && j->op != JOB_DELETE)
    buf_append_str(conn_out(&cn->c), "Stream-Closed: true\r\n");
  if (j->json && j->op != JOB_DELETE)
    api_record_headers(cn, r->rec_first, 1, r->rec_start, r->rec_next);
  if (r->producer_echo)
    buf_printf(conn_out(&cn->c),
               "Producer-Epoch: %llu\r\nProducer-Seq: %llu\r\n",
               (unsigned long long)r->producer_epoch,
               (unsigned long long)r->producer_seq);
  if (j->status == 204)
    buf_append_str(conn_out(&cn->c), "\r\n");
  else
    api_end(cn, "", 0);
}

/* HEAD: the stream's metadata (Stream-Next-Offset is the tail), and the
** ETag that a GET of the same target would carry, with its 304. */
static void api_reply_head(struct api_conn *cn, struct job *j) {
  char etag[160];
  etag[0] = '\0';
  if (!j->offset_now && j->rec_mode != JOB_REC_NOW)
    api_etag(etag, sizeof(etag), j->incarnation, j->start, j->read_end,
             j->closed && j->read_end == j->tail, j->json && j->envelope);
  if (api_not_modified(cn, etag[0] ? etag : NULL)) {
    api_reply_304(cn, etag[0] ? etag : NULL, j->tail, "no-store");
    return;
  }
  cn->records = j->json;
  api_begin(cn, 200);
  buf_printf(conn_out(&cn->c), "Content-Type: %s\r\n", j->res_type);
  api_offset_header(cn, "Stream-Next-Offset", j->tail);
  if (j->json) /* RECORDS: Start is where a GET would start */
    api_record_headers(cn, j->rec_first, j->rec_start_known,
                       j->rec_start + j->rec_skip, j->rec_next);
  if (etag[0]) buf_printf(conn_out(&cn->c), "ETag: %s\r\n", etag);
  if (j->has_ttl)
    buf_printf(conn_out(&cn->c), "Stream-TTL: %llu\r\n",
               (unsigned long long)j->ttl_s);
  if (j->res_expires[0])
    buf_printf(conn_out(&cn->c), "Stream-Expires-At: %s\r\n", j->res_expires);
  if (j->closed) buf_append_str(conn_out(&cn->c), "Stream-Closed: true\r\n");
  if (j->retained > 0)
    buf_printf(conn_out(&cn->c), "Stream-Retained-Offset: %llu\r\n",
               (unsigned long long)j->retained);
  if (j->has_snap)
    buf_printf(conn_out(&cn->c),
               "Stream-Snapshot-Offset: %020llu\r\n"
               "Stream-Snapshot-Digest: %s\r\n",
               (unsigned long long)j->snap_at, j->snap_digest);
  buf_append_str(conn_out(&cn->c), "Cache-Control: no-store\r\n\r\n");
}

#define API_CHALLENGE "Bearer realm=\"ursula\""

/* REVOCATION: whether the table this core holds now still lets cn's
** token read path[0..len); if not, end the live reader (answer a
** long-poll, or one not answered yet, 401 or 403; end an SSE response)
** and return 1. */
static int api_revoked(struct api_conn *cn, const char *path, size_t len) {
  const struct auth_table *t = cn->c.core->auth;
  int status;
  if (t == NULL) return 0;
  status = !cn->auth_ok ? 401
                        : auth_check_hash(t, cn->auth_hash, AUTH_READ, path,
                                          len, NULL);
  if (status == 0) return 0;
  if (cn->lw.watch != NULL && cn->job != NULL)
    cn->lw.watch->pending--; /* its read's reply will find no watch */
  live_leave(&cn->c.core->live, &cn->lw);
  if (cn->c.state == CONN_BUSY || cn->phase == API_POLL) {
    cn->c.keep_alive = 0; /* a read in flight is then dropped */
    cn->challenge = status == 401 ? API_CHALLENGE ", error=\"invalid_token\""
                                  : API_CHALLENGE
                        ", error=\"insufficient_scope\"";
    api_error(cn, status,
              status == 401 ? "invalid token (revoked)"
                            : "insufficient scope (revoked)");
    conn_done(&cn->c);
  } else {
    conn_end_chunks(&cn->c);
    conn_flush(&cn->c);
  }
  return 1;
}

URSULA_PRIVATE void api_auth_take(struct core *c, struct auth_table *t) {
  struct auth_table *old = c->auth;
  uint32_t i;
  int live = 0, ended = 0;
  c->auth = t;
  for (i = 0; i < c->conns.n_slots; i++) {
    struct api_conn *cn = (struct api_conn *)(void *)c->conns.slots[i];
    if (cn == NULL || cn->c.admin || cn->c.state != CONN_LIVE ||
        cn->c.closing || cn->lw.watch == NULL)
      continue;
    live++;
    ended += api_revoked(cn, cn->lw.watch->path, cn->lw.watch->path_len);
  }
  auth_release(old);
  LOG_I("core %d: took the reloaded auth table (%d token(s)): %d of %d "
        "live reader(s) ended, their token no longer reads their stream",
        c->id, auth_count(t), ended, live);
  (void)ended; /* (read by the log line alone) */
  (void)live;
}

/* A read came back for a live connection. */
static void api_live_reply(struct api_conn *cn, struct job *j) {
  int first = cn->c.state == CONN_BUSY;
  if (cn->lw.watch) {
    cn->lw.watch->pending--;
  }
  if (cn->c.closing) return; /* the SSE response ended meanwhile */
  if (first && api_revoked(cn, j->path, j->path_len)) return;
  if (j->status == 200 && api_record_window(j) != 0) {
    j->status = 501;
    j->reason = "a record this fork inherits beyond one read's window: read "
                "the fork by offset, or its source by record";
  }
  if (j->status != 200) {
    live_leave(&cn->c.core->live, &cn->lw);
    if (first && j->status == 410 && j->offset_given && j->tail > 0) {
      api_error_next(cn, j->status, j->reason, j->tail); /* retention */
      conn_done(&cn->c);
    } else if (first || api_polling(cn)) {
      if (j->rec_refused)
        api_record_error(cn, j);
      else
        api_error(cn, j->status, j->reason ? j->reason : "error");
      conn_done(&cn->c);
    } else { /* SSE already answered 200: end it */
      conn_end_chunks(&cn->c);
      conn_flush(&cn->c);
    }
    return;
  }
  cn->live_json = j->json;
  if (j->json && j->rec_start_known) { /* RECORDS: where this reader is */
    cn->rec_first = j->rec_first;
    cn->rec_next = j->rec_start;
  }
  if (first) {
    char norm[64];
    cn->envelope = j->envelope;
    snprintf(cn->live_type, sizeof(cn->live_type), "%s", j->res_type);
    stream_norm_type(util_str(j->res_type), norm, sizeof(norm));
    cn->live_b64 =
        strncmp(norm, "text/", 5) != 0 && strcmp(norm, "application/json") != 0;
  }
  if (j->live == JOB_LIVE_POLL) {
    if (j->data.len > 0 || j->closed || !j->registered) {
      j->envelope = cn->envelope;
      api_poll_reply(cn, j);
      live_leave(&cn->c.core->live, &cn->lw);
      conn_done(&cn->c);
      return;
    }
    cn->phase = API_POLL;
    cn->lw.offset = j->tail;
    live_wait(&cn->lw);
    conn_arm(&cn->c, cn->c.core->srv->cfg.long_poll_timeout_ms);
    conn_live(&cn->c);
    return;
  }
  /* SSE */
  api_sse_reply(cn, j, first);
  cn->phase = API_SSE;
  conn_live(&cn->c);
  if (cn->c.closing) {
    live_leave(&cn->c.core->live, &cn->lw);
    conn_flush(&cn->c);
    return;
  }
  if (j->up_to_date && j->registered) {
    live_wait(&cn->lw);
    api_sse_arm(cn);
  } else { /* catching up (the next part), or not registered: read on */
    api_sse_next(cn);
    if (cn->sse_held) api_sse_arm(cn); /* keep-alive, and the stall check */
  }
  conn_flush(&cn->c);
}

static void api_reply_backup(struct api_conn *cn, const struct job *j);
static void api_bucket_reply(struct api_conn *cn, struct job *j);
static void api_reply_multi(struct api_conn *cn, struct job *j);
static void api_reply_attrs(struct api_conn *cn, struct job *j);

URSULA_PRIVATE void api_on_job_done(struct loop *l, struct loop_msg *m) {
  struct job *j = (struct job *)(void *)m;
  struct core *c = (struct core *)loop_get_user(l);
  struct api_conn *cn =
      (struct api_conn *)(void *)conn_by_id(&c->conns, j->conn_id);
  if (cn == NULL || cn->job != j) {
    job_free(j);
    return;
  }
  cn->job = NULL;
  if (cn->c.state == CONN_LINGER) { /* the connection is ending anyway */
    job_free(j);
    return;
  }
  if (j->op == JOB_BACKUP || j->op == JOB_SNAPSHOT) {
    api_reply_backup(cn, j);
    job_free(j);
    conn_done(&cn->c);
    return;
  }
  if (j->op == JOB_READ && j->live != JOB_LIVE_NONE) {
    api_live_reply(cn, j);
    job_free(j);
    return;
  }
  if (j->op == JOB_READ && j->end_limit != 0) { /* a later part */
    api_catchup_part(cn, j);
    return;
  }
  if (j->op == JOB_READ && j->status == 200 && api_record_window(j) != 0) {
    j->status = 501;
    j->reason = "a record this fork inherits beyond one read's window: read "
                "the fork by offset, or its source by record";
  }
  if (j->op == JOB_BUCKET_CREATE || j->op == JOB_BUCKET_DELETE)
    api_bucket_reply(cn, j);
  else if (j->rec_refused && (j->op == JOB_READ || j->op == JOB_HEAD))
    api_record_error(cn, j);
  else if (j->op == JOB_SNAP_PUT || j->op == JOB_SNAP_GET ||
           j->op == JOB_RETAIN || j->op == JOB_BOOTSTRAP)
    api_snap_reply(cn, j);
  else if (j->status == 410 && j->offset_given &&
           (j->op == JOB_READ || j->op == JOB_HEAD) && j->tail > 0)
    api_error_next(cn, j->status, j->reason, j->tail);
  else if (j->op == JOB_MULTI)
    api_reply_multi(cn, j);
  else if (j->op == JOB_HEAD && j->sub != JOB_SUB_NONE && j->status < 400)
    api_reply_attrs(cn, j);
  else if (j->status >= 400 && (j->op == JOB_READ || j->op == JOB_HEAD))
    api_error(cn, j->status, j->reason ? j->reason : "error");
  else if (j->op == JOB_READ) {
    int parts = api_catchup_parts(cn, j);
    if (parts == 1) {
      conn_flush(&cn->c); /* the first part; on_sent asks for the next */
      return;
    }
    if (parts == 0) api_catchup_reply(cn, j);
  }
  else if (j->op == JOB_HEAD)
    api_reply_head(cn, j);
  else
    api_reply_change(cn, j);
  job_free(j);
  conn_done(&cn->c);
}

/* A live reader here was woken by its stream's owner (live.c sorts the
** waiters of a struct notify; see there). */
static void api_on_wake(struct live_waiter *x, int why,
                        const struct notify *n) {
  struct api_conn *cn =
      (struct api_conn *)(void *)((char *)x - offsetof(struct api_conn, lw));
  if (why == LIVE_DELETED) {
    if (cn->phase == API_POLL) {
      api_error(cn, 404, "stream was deleted");
      conn_done(&cn->c);
    } else {
      conn_end_chunks(&cn->c);
      conn_flush(&cn->c);
    }
  } else if (why == LIVE_DATA) {
    if (cn->phase == API_POLL) {
      struct job j;
      memset(&j, 0, sizeof(j));
      j.json = cn->live_json;
      /* a copy: the reply may take its buffer over, or end it with ']',
      ** and the notification is shared with the other waiters */
      if (buf_append(&j.data, n->data.ptr, n->data.len) != URSULA_OK) {
        live_unwait(&cn->lw);
        cn->lw.watch = NULL;
        api_error(cn, 503, "out of memory");
        conn_done(&cn->c);
        return;
      }
      j.tail = n->tail;
      j.up_to_date = 1;
      j.closed = n->closed;
      j.envelope = cn->envelope;
      j.rec_first = cn->rec_first; /* RECORDS: from where it waited */
      j.rec_start = cn->rec_next;
      j.rec_start_known = 1;
      j.rec_end = j.rec_start + json_count(j.data.ptr, j.data.len);
      memcpy(j.res_type, cn->live_type, sizeof(j.res_type));
      live_unwait(&cn->lw);
      cn->lw.watch = NULL;
      api_poll_reply(cn, &j);
      buf_free(&j.data); /* unless the reply took it */
      conn_done(&cn->c);
    } else if (cn->sse_held || conn_backlogged(&cn->c)) {
      api_sse_next(cn); /* read from lw.offset once its client has read */
    } else {
      api_sse_send(cn, n->data.ptr, n->data.len, n->tail, 1, n->closed);
      if (cn->c.closing) {
        live_unwait(&cn->lw);
        cn->lw.watch = NULL;
      } else {
        api_sse_arm(cn);
      }
      conn_flush(&cn->c);
    }
  } else if (cn->phase == API_SSE) { /* LIVE_BEHIND */
    api_sse_next(cn);
  } else {
    api_dispatch_read(cn, cn->lw.offset, 0);
  }
}

/* conn.c's on_live_timer hook: a long-poll that waited long enough
** answers 204; an idle SSE response gets a keep-alive comment, or ends
** if its time is up. */
static void api_on_live_timer(struct conn *c) {
  struct api_conn *cn = (struct api_conn *)(void *)c;
  if (cn->phase == API_POLL) {
    struct job j;
    memset(&j, 0, sizeof(j));
    j.tail = cn->lw.offset;
    j.up_to_date = 1;
    live_leave(&cn->c.core->live, &cn->lw);
    cn->records = cn->live_json;
    api_begin(cn, 204);
    api_offset_header(cn, "Stream-Next-Offset", j.tail);
    if (cn->live_json)
      api_record_headers(cn, cn->rec_first, 1, cn->rec_next, cn->rec_next);
    buf_append_str(conn_out(&cn->c), "Stream-Up-To-Date: true\r\n");
    buf_printf(conn_out(&cn->c), "Stream-Cursor: %llu\r\n",
               (unsigned long long)api_cursor(cn));
    buf_append_str(conn_out(&cn->c), "Cache-Control: no-cache\r\n\r\n");
    conn_done(&cn->c);
  } else if (conn_stalled(&cn->c)) {
    conn_abort(&cn->c); /* its client stopped reading: it resumes from
                           the last offset it got, when it comes back */
  } else if (api_sse_over(cn)) {
    live_leave(&cn->c.core->live, &cn->lw);
    conn_end_chunks(&cn->c);
    conn_flush(&cn->c);
  } else if (conn_pending(&cn->c) > 0) {
    api_sse_arm(cn); /* bytes are on their way: no keep-alive needed */
  } else {
    struct buf ev;
    memset(&ev, 0, sizeof(ev));
    sse_comment(&ev, "keep-alive");
    conn_chunk(&cn->c, &ev);
    buf_free(&ev);
    api_sse_arm(cn);
    conn_flush(&cn->c);
  }
}

/* conn.c's on_drain hook: the server stops; end a live reader now. */
static void api_on_drain(struct conn *c) {
  struct api_conn *cn = (struct api_conn *)(void *)c;
  if (cn->phase == API_POLL) {
    api_on_live_timer(c); /* answer 204 now, then close */
  } else {
    live_leave(&cn->c.core->live, &cn->lw);
    conn_end_chunks(&cn->c);
    conn_flush(&cn->c);
  }
}

/* ------------------------------------------------------------ the server's paths */

/* THE SERVER'S PATHS.  "/__ursula" and every path under "/__ursula/" are
** reserved for the server: no stream has such a name (any method on one
** of them that is not served answers 404).  The protocol lets a stream
** live at any path, but its conformance suite and clients use none of
** these (the suite's streams are under /v1/stream/, its subscription
** routes under /v1/stream/__ds).  Served:
**
**   GET /__ursula/cluster, HEAD (the same head, no body): this node's
**   view of its cluster, read on each group's own core (group.c, STATUS)
**   and written by api_status_json(); 200, Content-Type application/json,
**   Cache-Control no-store (a status is stale at once).  Any other method
**   is 405 with "Allow: GET, HEAD" (RFC 9110 section 15.5.6).  The query
**   is ignored.
**
**   GET /__ursula/buckets, HEAD: every bucket of this node (BUCKETS,
**   below), always served on the public listener; 405 as above. */
enum { API_PATH_STREAM = 0, API_PATH_RESERVED, API_PATH_CLUSTER,
       API_PATH_BUCKETS };
#define API_RESERVED_PREFIX "/__ursula"
#define API_CLUSTER_PATH "/__ursula/cluster"
#define API_BUCKETS_PATH "/__ursula/buckets"
#define API_CLUSTER_ALLOW "GET, HEAD"

/* The path of a request-target: what comes before '?'. */
static struct str api_target_path(struct str t) {
  size_t i = 0;
  while (i < t.len && t.ptr[i] != '?') i++;
  t.len = i;
  return t;
}

/* API_PATH_CLUSTER for "/__ursula/cluster", API_PATH_BUCKETS for
** "/__ursula/buckets", API_PATH_RESERVED for any other reserved path,
** API_PATH_STREAM for a stream's (or a bucket's: BUCKETS). */
static int api_reserved(struct str path) {
  size_t n = sizeof(API_RESERVED_PREFIX) - 1;
  if (path.len < n || memcmp(path.ptr, API_RESERVED_PREFIX, n) != 0 ||
      (path.len > n && path.ptr[n] != '/'))
    return API_PATH_STREAM;
  return util_str_eq(path, API_CLUSTER_PATH)   ? API_PATH_CLUSTER
         : util_str_eq(path, API_BUCKETS_PATH) ? API_PATH_BUCKETS
                                               : API_PATH_RESERVED;
}

/* Fill j (op JOB_STATUS, or JOB_BUCKETS for /__ursula/buckets) for a
** request to a reserved path: served (GET or HEAD of /__ursula/cluster
** or /__ursula/buckets: status 0), 405 or 404. */
static void api_build_reserved(struct str path, int method, struct job *j) {
  j->op = JOB_STATUS;
  if (api_reserved(path) == API_PATH_BUCKETS) {
    j->op = JOB_BUCKETS;
    j->bucket_mode = GROUP_BQ_ALL;
    if (method != API_GET && method != API_HEAD_M) {
      j->status = 405;
      j->reason = "method not allowed (GET, HEAD)";
    }
  } else if (api_reserved(path) != API_PATH_CLUSTER) {
    j->status = 404;
    j->reason = "no such path: /__ursula/ is reserved for the server";
  } else if (method != API_GET && method != API_HEAD_M) {
    j->status = 405;
    j->reason = "method not allowed (GET, HEAD)";
  }
}

static const char *api_role_name(int role) {
  switch (role) {
    case RAFT_LEADER:
      return "leader";
    case RAFT_CANDIDATE:
      return "candidate";
    case RAFT_PRECANDIDATE:
      return "precandidate";
    default:
      return "follower";
  }
}

/* The body of GET /__ursula/cluster, from a gathering: one JSON object
** and a newline.  URSULA_OK or URSULA_ENOMEM.  Fields:
**
**   node      this node's id (--node-id; 1 for a single node, the id its
**             groups' Raft cores use)
**   cluster   true with --peer members, false for a single node
**   cores     this node's cores (threads)
**   peers     the other members, in --peer order ([] for a single node):
**     id             its node id
**     address        its --peer address, "HOST:PORT"
**     connected      true if every core's link to it is up (this node
**                    can send to it on every core)
**     links_up       how many of the cores' links to it are up
**     last_heard_ms  milliseconds since any core last received a frame
**                    from it (a live peer sends one at least every
**                    second); null: none since this node started
**   groups    every group, by id:
**     group       its id
**     role        "leader", "follower", "candidate" or "precandidate"
**                 (a pre-vote, Raft thesis 9.6), as this node sees it
**     term        its current term here
**     leader      the node id of the leader this node knows in that term
**                 (its own when it leads), or null: none known
**     commit      the highest log index this node knows committed
**     applied     the last log index applied to its streams here
**     last_index  the last index of its log here
**
** Raft keeps applied <= commit; commit <= last_index except for a
** moment after a storage failure (the log is cut to what is durable). */
static int api_status_json(struct buf *out, const struct group_gather *gg) {
  int i, rc;
  rc = buf_printf(out, "{\"node\":%d,\"cluster\":%s,\"cores\":%d,\"peers\":[",
                  gg->node, gg->cluster ? "true" : "false", gg->n_cores);
  for (i = 0; i < gg->n_peers && rc == URSULA_OK; i++) {
    const struct group_peer_status *p = &gg->peers[i];
    rc = buf_printf(out, "%s{\"id\":%d,\"address\":", i > 0 ? "," : "", p->id);
    if (rc == URSULA_OK) rc = json_put_string(out, p->address);
    if (rc == URSULA_OK)
      rc = buf_printf(out, ",\"connected\":%s,\"links_up\":%d,",
                      p->links_up == gg->n_cores ? "true" : "false",
                      p->links_up);
    if (rc == URSULA_OK)
      rc = p->heard ? buf_printf(out, "\"last_heard_ms\":%llu}",
                                 (unsigned long long)p->heard_age_ms)
                    : buf_append_str(out, "\"last_heard_ms\":null}");
  }
  if (rc == URSULA_OK) rc = buf_append_str(out, "],\"groups\":[");
  for (i = 0; i < gg->n_groups && rc == URSULA_OK; i++) {
    const struct group_status *g = &gg->groups[i];
    char leader[24];
    if (g->leader != 0)
      snprintf(leader, sizeof(leader), "%llu", (unsigned long long)g->leader);
    else
      snprintf(leader, sizeof(leader), "null");
    rc = buf_printf(out,
                    "%s{\"group\":%d,\"role\":\"%s\",\"term\":%llu,"
                    "\"leader\":%s,\"commit\":%llu,\"applied\":%llu,"
                    "\"last_index\":%llu}",
                    i > 0 ? "," : "", g->group, api_role_name(g->role),
                    (unsigned long long)g->term, leader,
                    (unsigned long long)g->commit,
                    (unsigned long long)g->applied,
                    (unsigned long long)g->last_index);
  }
  if (rc == URSULA_OK) rc = buf_append_str(out, "]}\n");
  return rc;
}

/* ------------------------------------------------------------ buckets */

static void api_send_job(struct api_conn *cn, struct job *j);

/* The reply to PUT /{b} (201 made, 200 there already) or to DELETE /{b}
** (204 removed; 404 no record, nor any stream: the check came first). */
static void api_bucket_reply(struct api_conn *cn, struct job *j) {
  if (j->status >= 400) {
    api_error(cn, j->status, j->reason ? j->reason : "error");
    return;
  }
  api_begin(cn, j->status);
  if (j->op == JOB_BUCKET_DELETE) {
    buf_append_str(conn_out(&cn->c), "\r\n");
    return;
  }
  buf_printf(conn_out(&cn->c), "Location: %.*s\r\n", (int)j->path_len,
             j->path);
  api_end(cn, "", 0);
}

/* The body of GET /{b}. */
static int api_bucket_json(struct buf *out,
                           const struct group_bucket_query *bq) {
  int rc = buf_append_str(out, "{\"name\":");
  if (rc == URSULA_OK) rc = json_put_string(out, bq->bucket);
  if (rc == URSULA_OK)
    rc = buf_printf(out, ",\"streams\":%llu,\"bytes\":%llu,\"created_ms\":",
                    (unsigned long long)bq->streams,
                    (unsigned long long)bq->bytes);
  if (rc == URSULA_OK)
    rc = bq->has_record ? buf_printf(out, "%llu}\n",
                                     (unsigned long long)bq->created_ms)
                        : buf_append_str(out, "null}\n");
  return rc;
}

/* The body of GET /{b}/streams: the first limit entries (gathered in
** order, at most limit + 1), and next_after, the last id given, when
** more follow. */
static int api_list_json(struct buf *out,
                         const struct group_bucket_query *bq) {
  size_t i, n = bq->n_entries < bq->limit ? bq->n_entries : bq->limit;
  int rc = buf_append_str(out, "{\"bucket\":");
  if (rc == URSULA_OK) rc = json_put_string(out, bq->bucket);
  if (rc == URSULA_OK) rc = buf_append_str(out, ",\"streams\":[");
  for (i = 0; i < n && rc == URSULA_OK; i++) {
    const struct group_bucket_entry *e = &bq->entries[i];
    rc = buf_append_str(out, i > 0 ? ",{\"name\":" : "{\"name\":");
    if (rc == URSULA_OK) rc = json_put_string(out, e->name);
    if (rc == URSULA_OK) rc = buf_append_str(out, ",\"content_type\":");
    if (rc == URSULA_OK) rc = json_put_string(out, e->content_type);
    if (rc == URSULA_OK)
      rc = buf_printf(out, ",\"next_offset\":\"%016llu_%016llu\","
                      "\"closed\":%s}", 0ULL, (unsigned long long)e->tail,
                      e->closed ? "true" : "false");
  }
  if (rc == URSULA_OK) rc = buf_append_str(out, "],\"next_after\":");
  if (rc == URSULA_OK)
    rc = bq->n_entries > n ? json_put_string(out, bq->entries[n - 1].name)
                           : buf_append_str(out, "null");
  if (rc == URSULA_OK) rc = buf_append_str(out, "}\n");
  return rc;
}

/* The body of GET /__ursula/buckets. */
static int api_buckets_json(struct buf *out,
                            const struct group_bucket_query *bq) {
  size_t i;
  int rc = buf_append_str(out, "[");
  for (i = 0; i < bq->n_entries && rc == URSULA_OK; i++) {
    const struct group_bucket_entry *e = &bq->entries[i];
    rc = buf_append_str(out, i > 0 ? ",{\"name\":" : "{\"name\":");
    if (rc == URSULA_OK) rc = json_put_string(out, e->name);
    if (rc == URSULA_OK)
      rc = buf_printf(out, ",\"streams\":%llu,\"bytes\":%llu}",
                      (unsigned long long)e->streams,
                      (unsigned long long)e->bytes);
  }
  if (rc == URSULA_OK) rc = buf_append_str(out, "]\n");
  return rc;
}

/* A bucket gathering is back on the connection's core: answer from it,
** or (DELETE /{b}) send the delete on if the bucket has no stream. */
static void api_on_bucket_done(struct loop *l, struct loop_msg *m) {
  struct group_gather *gg = (struct group_gather *)(void *)m;
  struct core *c = (struct core *)loop_get_user(l);
  struct api_conn *cn =
      (struct api_conn *)(void *)conn_by_id(&c->conns, gg->conn_id);
  const struct group_bucket_query *bq = gg->bq;
  struct job *j;
  struct buf body;
  int rc;
  if (cn == NULL || cn->gather != gg || cn->c.state == CONN_LINGER) {
    if (cn != NULL && cn->gather == gg) cn->gather = NULL;
    group_gather_free(gg);
    return;
  }
  cn->gather = NULL;
  j = cn->bucket_delete;
  cn->bucket_delete = NULL;
  memset(&body, 0, sizeof(body));
  if (bq->failed) {
    api_error(cn, 503, "out of memory");
  } else if (j != NULL && bq->streams > 0) {
    char why[128];
    snprintf(why, sizeof(why),
             "bucket is not empty: it has %llu stream(s); delete them first",
             (unsigned long long)bq->streams);
    api_error(cn, 409, why);
  } else if (j != NULL) {
    group_gather_free(gg);
    api_send_job(cn, j); /* on to the record's group */
    return;
  } else if (bq->mode != GROUP_BQ_ALL && bq->streams == 0 &&
             !bq->has_record) {
    api_error(cn, 404, "no such bucket");
  } else {
    rc = bq->mode == GROUP_BQ_ONE    ? api_bucket_json(&body, bq)
         : bq->mode == GROUP_BQ_LIST ? api_list_json(&body, bq)
                                     : api_buckets_json(&body, bq);
    if (rc != URSULA_OK) {
      api_error(cn, 503, "out of memory");
    } else {
      api_begin(cn, 200);
      buf_append_str(conn_out(&cn->c),
                     "Content-Type: application/json\r\n"
                     "Cache-Control: no-store\r\n");
      api_end(cn, body.ptr, body.len);
    }
  }
  job_free(j);
  buf_free(&body);
  group_gather_free(gg);
  conn_done(&cn->c);
}

/* Start the gathering job j asks for (JOB_BUCKETS), or a DELETE /{b}'s
** check (JOB_BUCKET_DELETE: j waits in cn->bucket_delete).  Takes j. */
static void api_bucket_start(struct api_conn *cn, struct job *j) {
  struct group_gather *gg = group_gather_new(cn->c.core);
  struct group_bucket_query *bq =
      (struct group_bucket_query *)URSULA_MALLOC(sizeof(*bq));
  if (gg == NULL || bq == NULL) {
    group_gather_free(gg);
    URSULA_FREE(bq);
    job_free(j);
    api_error(cn, 503, "out of memory");
    conn_done(&cn->c);
    return;
  }
  memset(bq, 0, sizeof(*bq));
  gg->bq = bq;
  bq->mode = j->op == JOB_BUCKET_DELETE ? GROUP_BQ_ONE : j->bucket_mode;
  if (bq->mode != GROUP_BQ_ALL) { /* "/{b}" or "/{b}/streams" */
    struct util_bucket_path bp;
    util_bucket_path(j->path, j->path_len, &bp);
    memcpy(bq->bucket, bp.bucket.ptr, bp.bucket.len);
    bq->bucket_len = bp.bucket.len;
  }
  bq->limit = j->list_limit;
  bq->prefix_len = strlen(j->list_prefix);
  memcpy(bq->prefix, j->list_prefix, bq->prefix_len);
  bq->after_len = strlen(j->list_after);
  memcpy(bq->after, j->list_after, bq->after_len);
  bq->has_after = j->has_after;
  if (j->op == JOB_BUCKET_DELETE)
    cn->bucket_delete = j;
  else
    job_free(j);
  gg->conn_id = cn->c.id;
  cn->gather = gg;
  conn_busy(&cn->c);
  group_gather_start(cn->c.core, gg, api_on_bucket_done);
}

/* ------------------------------------------------------------ authentication */

/* With an auth table on this core: may req do scope (AUTH_*) on path
** (NULL: an admin path)?  0: yes (or no table), cn->auth_hash then holds
** its token's hash; else the request was answered 401 or 403 (see
** AUTHENTICATION at the top) and the connection ends: -1. */
static int api_authorize(struct api_conn *cn, const struct http_request *req,
                         unsigned scope, const char *path, size_t path_len) {
  const struct auth_table *t = cn->c.core->auth;
  const struct http_header *h = NULL;
  struct str token;
  const char *reason;
  size_t i;
  int n = 0, kind = AUTH_NO_BEARER, status;
  cn->auth_ok = 0;
  if (t == NULL) return 0;
  for (i = 0; i < req->n_headers; i++) {
    if (util_str_ieq(req->headers[i].name, "Authorization")) {
      h = &req->headers[i];
      n++;
    }
  }
  if (n == 1)
    kind = auth_bearer(h->value, &token);
  else if (n > 1) /* a field of one value (RFC 9110 section 11.6.2) */
    kind = AUTH_MALFORMED;
  if (kind == AUTH_NO_BEARER) {
    status = 401;
    cn->challenge = API_CHALLENGE;
    reason = "authentication required: send Authorization: Bearer TOKEN";
  } else if (kind == AUTH_MALFORMED ||
             (status = auth_check(t, token.ptr, token.len, scope, path,
                                  path_len, cn->auth_hash)) == 401) {
    status = 401;
    cn->challenge = API_CHALLENGE ", error=\"invalid_token\"";
    reason = "invalid token";
  } else if (status == 403) {
    cn->challenge = API_CHALLENGE ", error=\"insufficient_scope\"";
    reason = "insufficient scope: this token may not do that here";
  } else {
    cn->auth_ok = 1;
    return 0;
  }
  cn->c.core->metrics.auth_refused[status == 401 ? 0 : 1]++;
  LOG_D("auth: %d for %.*s %.*s", status, (int)req->method.len,
        req->method.ptr, path != NULL ? (int)(path_len > 200 ? 200 : path_len)
                                      : 5,
        path != NULL ? path : "admin");
  conn_fatal(&cn->c, status, reason);
  return -1;
}

/* ------------------------------------------------------------ the admin listener

   THE ADMIN LISTENER'S PATHS (--admin-listen; conn.c, THE ADMIN
   LISTENER).  Its connections are served these paths and no other (404,
   naming them); each answers GET, and HEAD with the same head and no
   body; any other method is 405 with "Allow: GET, HEAD" (RFC 9110
   section 15.5.6).  The query is ignored.  Each is answered from a
   gathering (group.c, STATUS), so that every core's loop has turned to
   answer it:

     /metrics          200, the Prometheus text format (metrics.c, THE
                       FORMAT): api_metrics_text()
     /healthz          200 "ok": the process is alive and every core's
                       loop turns (a loop that is stuck never lets the
                       gathering back: the probe's own timeout says so)
     /readyz           200 "ready", or 503 with one line saying why not
                       (api_readiness())
     /__ursula/cluster the node's status, as on the public listener

   and the backup paths (issue 17, item 7; README, Backup and restore),
   which are not gatherings and answer other methods too.  With
   --auth-file they need the admin scope, as /metrics and
   /__ursula/cluster do; without --wal-dir they answer 409 (nothing is
   durable to back up); a body is refused 413 as on every admin path:

     /__ursula/backup     GET, HEAD (else 405, "Allow: GET, HEAD"): 200,
                          JSON, what a backup's MANIFEST records of the
                          node (api_backup_layout):
                          {"groups":N,"node_id":ID,"cluster_id":"NAME",
                           "store_id":"HEX" or null,"cold":"none"|"dir"|
                           "s3","cold_dir":"PATH","s3_bucket":"B",
                           "s3_prefix":"P"}
                          (node_id 0: a single node; store_id: the id its
                          --wal-dir's cold-store keeps, server.c)
     /__ursula/backup/G   G the group, decimal, below the group count
                          (else 404); "Allow: GET, HEAD, POST, DELETE":
       POST               writes G's backup image (group.c, BACKUP IMAGES;
                          on G's owner core, after a read barrier), then
                          200 {"group":G,"index":I,"term":T,"bytes":N,
                          "crc32c":C}: its last entry, its size, and the
                          CRC32C its tail holds (wal.c, the snapshot file),
                          decimal; index 0 and bytes 0 (and no file): the
                          group has applied nothing, it has no state.  503:
                          no leader confirmed the barrier (retry).  A POST
                          replaces the group's last image.
       GET                with "Range: bytes=A-B" or "bytes=A-" (RFC 9110
                          section 14.1.2; one range): 206, the bytes
                          [A, min(B, A + 4 MiB - 1, N - 1)] of the image,
                          with "Content-Range: bytes A-E/N" saying which
                          (a larger range is answered in part: the client
                          asks again from E + 1; RFC 9110 section 14.4);
                          A >= N: 416, its Content-Range "bytes *" then
                          "/N" (RFC 9110 section 14.4);
                          no Range field, or one this server does not
                          take (several ranges, a suffix range): 400.
                          At most API_BACKUP_RANGE_MAX bytes in memory
                          per request; the file is read (pread) on the
                          admin listener's core.  404: no image written.
       HEAD               200 with the image's Content-Length, no body.
       DELETE             204, the image removed; 404 if there was none.

   and the maintenance path, with the admin scope, in a cluster only (409
   on a single node: nobody to hand leadership to):

     /__ursula/leadership-shed/maintenance   GET, HEAD, POST, DELETE:
                          POST starts shedding (server.c, SHEDDING: the
                          node hands over the groups it leads and takes
                          none), DELETE ends it; each answers 200
                          {"shedding":true|false}, the state after it.

   and the snapshot path, the same way (admin scope, 409 without
   --wal-dir, 413 for a body):

     /__ursula/raft/G/snapshot   POST only ("Allow: POST"); G as above:
                          group G snapshots its state now and drops the
                          log before it (group.c, SNAPSHOT NOW), then
                          200 {"group":G,"index":I,"term":T,"bytes":N}:
                          the snapshot's entry and term and the size of
                          its state; all 0 for a group that has applied
                          nothing.  503: its log takes no writes.

   On the public listener the same paths are streams' and buckets' (a
   one-segment "/metrics" is a bucket's, BUCKETS): the two listeners'
   paths never meet. */
enum { API_ADMIN_NONE = 0, API_ADMIN_METRICS, API_ADMIN_HEALTHZ,
       API_ADMIN_READYZ, API_ADMIN_CLUSTER, API_ADMIN_BACKUP,
       API_ADMIN_BACKUP_GROUP, API_ADMIN_SNAPSHOT, API_ADMIN_SHED };
#define API_SHED_PATH "/__ursula/leadership-shed/maintenance"
#define API_BACKUP_PATH "/__ursula/backup"
#define API_BACKUP_ALLOW "GET, HEAD, POST, DELETE"
#define API_BACKUP_RANGE_MAX ((uint64_t)4 << 20)
#define API_RAFT_PATH "/__ursula/raft/"
#define API_SNAPSHOT_TAIL "/snapshot"

/* The group number of "G" + tail at p[0..n) (G decimal, at most 9
** digits): G, or -1 if the text is not of that form; G may be past the
** group count (the caller says 404). */
static long api_admin_group_of(const char *p, size_t n, const char *tail) {
  size_t i = 0, t = strlen(tail);
  long g = 0;
  if (n < t || memcmp(p + n - t, tail, t) != 0) return -1;
  n -= t;
  if (n == 0 || n > 9) return -1;
  for (i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    g = g * 10 + (p[i] - '0');
  }
  return g;
}

/* The admin path of a request's path, or API_ADMIN_NONE; for
** /__ursula/backup/G and /__ursula/raft/G/snapshot, *group = G, or -1 if
** there is no such group (of n_groups). */
static int api_admin_route(struct str path, int n_groups, int *group) {
  size_t nb = sizeof(API_BACKUP_PATH), nr = sizeof(API_RAFT_PATH) - 1;
  long g;
  int route;
  *group = -1;
  if (util_str_eq(path, "/metrics")) return API_ADMIN_METRICS;
  if (util_str_eq(path, "/healthz")) return API_ADMIN_HEALTHZ;
  if (util_str_eq(path, "/readyz")) return API_ADMIN_READYZ;
  if (util_str_eq(path, API_CLUSTER_PATH)) return API_ADMIN_CLUSTER;
  if (util_str_eq(path, API_BACKUP_PATH)) return API_ADMIN_BACKUP;
  if (util_str_eq(path, API_SHED_PATH)) return API_ADMIN_SHED;
  if (path.len > nb && memcmp(path.ptr, API_BACKUP_PATH "/", nb) == 0) {
    g = api_admin_group_of(path.ptr + nb, path.len - nb, "");
    route = API_ADMIN_BACKUP_GROUP;
  } else if (path.len > nr && memcmp(path.ptr, API_RAFT_PATH, nr) == 0) {
    g = api_admin_group_of(path.ptr + nr, path.len - nr, API_SNAPSHOT_TAIL);
    route = API_ADMIN_SNAPSHOT;
  } else {
    return API_ADMIN_NONE;
  }
  if (g < 0) return API_ADMIN_NONE;
  if (g < n_groups) *group = (int)g;
  return route;
}

/* A peer counts as reached when every core's link to it is up and a
** frame came from it within API_PEER_HEARD_MS (a live peer sends one
** every second, peer.c's PEER_KEEPALIVE_MS; a frozen or cut-off one
** leaves a link "up" for as long as TCP lets it).  The same 3 s after
** which peer.c takes a silent connection for dead (PEER_STALE_MS). */
#define API_PEER_HEARD_MS 3000
static int api_peer_reached(const struct group_peer_status *p, int n_cores) {
  return p->links_up == n_cores && p->heard &&
         p->heard_age_ms < API_PEER_HEARD_MS;
}

/* Whether the node is ready for traffic, from a gathering: 1, or 0 with
** why in reason (one line).  Not ready when (in this order):
**   - it is stopping (a stop was asked: balancers should drain it);
**   - a core's journal is stuck or broken (--wal-dir: the core takes no
**     writes; server.c, THE CORE'S JOURNAL);
**   - in a cluster, it reaches fewer than a majority of the members,
**     itself included, on every core's link (Raft needs a quorum to
**     commit: paper 5.2, 5.3);
**   - in a cluster, a group has no leader this node knows of (its
**     writes and linearizable reads wait for an election).
** Recovery is over before the listeners open, so a node that answers is
** past it. */
static int api_readiness(const struct group_gather *gg,
                         const struct ursula_server *s, char *reason,
                         size_t cap) {
  int i, reach = 1, members = s->cfg.peer_count, leaderless = 0;
  if (s->stop_requested || s->leave_requested) {
    snprintf(reason, cap, "not ready: stopping");
    return 0;
  }
  if (gg->journals_stuck > 0 || gg->journals_broken > 0) {
    snprintf(reason, cap,
             "not ready: the journal of %d core(s) takes no writes (see the "
             "log)",
             gg->journals_stuck + gg->journals_broken);
    return 0;
  }
  if (!gg->cluster) return 1;
  for (i = 0; i < gg->n_peers; i++) /* links up, and heard from lately */
    if (api_peer_reached(&gg->peers[i], gg->n_cores)) reach++;
  if (reach < members / 2 + 1) {
    snprintf(reason, cap,
             "not ready: reaches %d of %d members (a majority is %d)", reach,
             members, members / 2 + 1);
    return 0;
  }
  for (i = 0; i < gg->n_groups; i++)
    if (gg->groups[i].leader == 0) leaderless++;
  if (leaderless > 0) {
    snprintf(reason, cap, "not ready: %d of %d groups have no known leader",
             leaderless, gg->n_groups);
    return 0;
  }
  return 1;
}

/* A family of one gauge per core. */
static int api_metrics_per_core(struct buf *out, const char *name,
                                const char *type, const char *help,
                                const uint64_t *v, int n) {
  int i, rc = metrics_write_head(out, name, type, help);
  for (i = 0; i < n && rc == URSULA_OK; i++)
    rc = buf_printf(out, "%s{core=\"%d\"} %llu\n", name, i,
                    (unsigned long long)v[i]);
  return rc;
}

/* A gauge family with one sample per group: the uint64_t field at byte
** offset off of each struct group_status. */
static int api_metrics_per_group(struct buf *out, const struct group_gather *gg,
                                 const char *name, const char *help,
                                 size_t off) {
  int i, rc = metrics_write_head(out, name, "gauge", help);
  for (i = 0; i < gg->n_groups && rc == URSULA_OK; i++) {
    const char *g = (const char *)&gg->groups[i];
    uint64_t v;
    memcpy(&v, g + off, sizeof(v));
    rc = buf_printf(out, "%s{group=\"%d\"} %llu\n", name, i,
                    (unsigned long long)v);
  }
  return rc;
}

/* A counter family with one sample per peer (none for a single node):
** the uint64_t field at byte offset off of each struct
** group_peer_status. */
static int api_metrics_per_peer(struct buf *out, const struct group_gather *gg,
                                const char *name, const char *help,
                                size_t off) {
  int i, rc;
  if (gg->n_peers == 0) return URSULA_OK;
  rc = metrics_write_head(out, name, "counter", help);
  for (i = 0; i < gg->n_peers && rc == URSULA_OK; i++) {
    uint64_t v;
    memcpy(&v, (const char *)&gg->peers[i] + off, sizeof(v));
    rc = buf_printf(out, "%s{peer=\"%d\"} %llu\n", name, gg->peers[i].id,
                    (unsigned long long)v);
  }
  return rc;
}

/* The indexes of api_metrics_text()'s one-sample families. */
enum {
  API_M_CONNS = 0, API_M_CONNS_MAX, API_M_LIVE, API_M_QUEUED, API_M_STREAMS,
  API_M_HOT, API_M_RSS, API_M_GROUPS, API_M_LED, API_M_LEADERLESS, API_M_WON,
  API_M_LOST, API_M_INSTALLS, API_M_UPLOADS, API_M_UPLOAD_BYTES,
  API_M_UPLOAD_FAILURES, API_M_FETCHES, API_M_FETCH_BYTES,
  API_M_FETCH_FAILURES, API_M_CACHE_HITS, API_M_DELETES,
  API_M_DELETE_FAILURES
};

/* The body of GET /metrics (metrics.c, THE FORMAT): the counters of
** every core added up, then what the gathering read (connections, loops,
** memory, streams, Raft), then build facts. */
static int api_metrics_text(struct buf *out, const struct group_gather *gg,
                            const struct ursula_server *s) {
  /* the families of one sample without labels, in the order written */
  struct {
    const char *name, *type, *help;
    uint64_t v;
  } one[] = {
      {"ursula_connections", "gauge",
       "open client connections (not the admin listener's)", 0},
      {"ursula_connections_max", "gauge", "--max-connections", 0},
      {"ursula_live_connections", "gauge",
       "connections holding a long-poll or SSE response", 0},
      {"ursula_output_queued_bytes", "gauge",
       "response bytes queued and not yet written, all connections", 0},
      {"ursula_streams", "gauge", "streams on this node", 0},
      {"ursula_hot_bytes", "gauge", "stream bytes held in memory", 0},
      {"ursula_resident_memory_bytes", "gauge",
       "the process's resident memory", 0},
      {"ursula_raft_groups", "gauge",
       "Raft groups (every node has every group)", 0},
      {"ursula_raft_groups_led", "gauge", "groups this node leads", 0},
      {"ursula_raft_groups_leaderless", "gauge",
       "groups with no leader this node knows of", 0},
      {"ursula_raft_leaderships_won_total", "counter",
       "times this node became a group's leader", 0},
      {"ursula_raft_leaderships_lost_total", "counter",
       "times this node stopped leading a group", 0},
      {"ursula_raft_snapshot_installs_total", "counter",
       "snapshot images installed here from a leader", 0},
      {"ursula_cold_uploads_total", "counter",
       "chunks written to the cold tier", 0},
      {"ursula_cold_upload_bytes_total", "counter",
       "bytes of the chunks written", 0},
      {"ursula_cold_upload_failures_total", "counter",
       "chunk writes that failed", 0},
      {"ursula_cold_fetches_total", "counter",
       "chunks read back from the cold tier", 0},
      {"ursula_cold_fetch_bytes_total", "counter",
       "bytes of the chunks read back", 0},
      {"ursula_cold_fetch_failures_total", "counter",
       "chunk reads that failed (missing, damaged, or the store "
       "unreachable)", 0},
      {"ursula_cold_cache_hits_total", "counter",
       "chunk reads served from the cores' caches", 0},
      {"ursula_cold_deletes_total", "counter",
       "chunks deleted (or found gone)", 0},
      {"ursula_cold_delete_failures_total", "counter",
       "chunk deletes that failed", 0}};
  uint64_t per[URSULA_MAX_CORES];
  size_t k;
  int i, rc = metrics_write_counters(out, &gg->sum);
  for (i = 0; i < gg->n_cores; i++) {
    one[API_M_CONNS].v += (uint64_t)gg->conns[i];
    one[API_M_LIVE].v += (uint64_t)gg->live[i];
    if (gg->out_pending[i] > 0) one[API_M_QUEUED].v += (uint64_t)gg->out_pending[i];
  }
  one[API_M_CONNS_MAX].v = (uint64_t)s->cfg.max_connections;
  one[API_M_RSS].v = os_rss_bytes();
  one[API_M_GROUPS].v = (uint64_t)gg->n_groups;
  for (i = 0; i < gg->n_groups; i++) {
    const struct group_status *g = &gg->groups[i];
    one[API_M_STREAMS].v += g->streams;
    one[API_M_HOT].v += g->hot_bytes;
    one[API_M_LED].v += g->role == RAFT_LEADER;
    one[API_M_LEADERLESS].v += g->leader == 0;
    one[API_M_WON].v += g->won;
    one[API_M_LOST].v += g->lost;
    one[API_M_INSTALLS].v += g->installs;
    one[API_M_UPLOADS].v += g->tier.uploads;
    one[API_M_UPLOAD_BYTES].v += g->tier.upload_bytes;
    one[API_M_UPLOAD_FAILURES].v += g->tier.upload_failures;
    one[API_M_FETCHES].v += g->tier.fetches;
    one[API_M_FETCH_BYTES].v += g->tier.fetch_bytes;
    one[API_M_FETCH_FAILURES].v += g->tier.fetch_failures;
    one[API_M_CACHE_HITS].v += g->tier.cache_hits;
    one[API_M_DELETES].v += g->tier.deletes;
    one[API_M_DELETE_FAILURES].v += g->tier.delete_failures;
  }
  for (k = 0; k < sizeof(one) / sizeof(one[0]) && rc == URSULA_OK; k++)
    rc = metrics_write_value(out, one[k].name, one[k].type, one[k].help,
                             one[k].v);
  if (rc == URSULA_OK) {
    rc = metrics_write_head(out, "ursula_core_busy_seconds_total", "counter",
                            "time each core's loop spent in turns, not "
                            "waiting");
    for (i = 0; i < gg->n_cores && rc == URSULA_OK; i++) {
      rc = buf_printf(out, "ursula_core_busy_seconds_total{core=\"%d\"} ", i);
      if (rc == URSULA_OK) rc = metrics_write_us(out, gg->loops[i].busy_us);
      if (rc == URSULA_OK) rc = buf_append_str(out, "\n");
    }
  }
  for (i = 0; i < gg->n_cores; i++) per[i] = gg->loops[i].turns;
  if (rc == URSULA_OK)
    rc = api_metrics_per_core(out, "ursula_core_turns_total", "counter",
                              "turns of each core's loop", per, gg->n_cores);
  for (i = 0; i < gg->n_cores; i++) per[i] = gg->loops[i].msgs;
  if (rc == URSULA_OK)
    rc = api_metrics_per_core(out, "ursula_core_messages_total", "counter",
                              "messages each core's mailbox delivered "
                              "(requests and replies between cores, syncs "
                              "done)", per, gg->n_cores);
  for (i = 0; i < gg->n_cores; i++) per[i] = gg->loops[i].queued;
  if (rc == URSULA_OK)
    rc = api_metrics_per_core(out, "ursula_core_mailbox_depth", "gauge",
                              "messages waiting in each core's mailbox "
                              "when the scrape visited it", per,
                              gg->n_cores);
  if (rc == URSULA_OK)
    rc = api_metrics_per_group(out, gg, "ursula_raft_term",
                               "each group's current term here",
                               offsetof(struct group_status, term));
  if (rc == URSULA_OK)
    rc = api_metrics_per_group(out, gg, "ursula_raft_commit_index",
                               "each group's highest index known committed",
                               offsetof(struct group_status, commit));
  if (rc == URSULA_OK)
    rc = api_metrics_per_group(out, gg, "ursula_raft_applied_index",
                               "each group's last index applied here",
                               offsetof(struct group_status, applied));
  if (rc == URSULA_OK && gg->n_peers > 0) {
    rc = metrics_write_head(out, "ursula_peer_up", "gauge",
                            "1 if every core's link to the peer is up and "
                            "it was heard within 3 s");
    for (i = 0; i < gg->n_peers && rc == URSULA_OK; i++)
      rc = buf_printf(out, "ursula_peer_up{peer=\"%d\"} %d\n",
                      gg->peers[i].id,
                      api_peer_reached(&gg->peers[i], gg->n_cores));
  }
  if (rc == URSULA_OK)
    rc = api_metrics_per_peer(out, gg, "ursula_peer_sent_bytes_total",
                              "bytes of frames sent to the peer",
                              offsetof(struct group_peer_status, bytes_out));
  if (rc == URSULA_OK)
    rc = api_metrics_per_peer(out, gg, "ursula_peer_received_bytes_total",
                              "bytes of frames received from the peer",
                              offsetof(struct group_peer_status, bytes_in));
  if (rc == URSULA_OK)
    rc = api_metrics_per_peer(out, gg, "ursula_peer_dropped_total",
                              "Raft messages to the peer dropped (link down "
                              "or its queue full; Raft sends again)",
                              offsetof(struct group_peer_status, dropped));
  if (rc == URSULA_OK)
    rc = metrics_write_head(out, "ursula_build_info", "gauge",
                            "1, with the version as a label");
  if (rc == URSULA_OK)
    rc = buf_printf(out, "ursula_build_info{version=\"%s\"} 1\n",
                    URSULA_VERSION);
  return rc;
}

/* The gathering is back on the connection's core: answer from it. */
static void api_on_status_done(struct loop *l, struct loop_msg *m) {
  struct group_gather *gg = (struct group_gather *)(void *)m;
  struct core *c = (struct core *)loop_get_user(l);
  struct api_conn *cn =
      (struct api_conn *)(void *)conn_by_id(&c->conns, gg->conn_id);
  struct buf body;
  if (cn == NULL || cn->gather != gg || cn->c.state == CONN_LINGER) {
    if (cn != NULL && cn->gather == gg) cn->gather = NULL;
    group_gather_free(gg);
    return;
  }
  cn->gather = NULL;
  memset(&body, 0, sizeof(body));
  if (cn->admin_route == API_ADMIN_HEALTHZ) {
    api_begin(cn, 200);
    buf_append_str(conn_out(&cn->c),
                   "Content-Type: text/plain; charset=utf-8\r\n"
                   "Cache-Control: no-store\r\n");
    api_end(cn, "ok\n", 3);
  } else if (cn->admin_route == API_ADMIN_READYZ) {
    char why[160];
    if (!api_readiness(gg, cn->c.core->srv, why, sizeof(why))) {
      api_error(cn, 503, why);
    } else {
      api_begin(cn, 200);
      buf_append_str(conn_out(&cn->c),
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Cache-Control: no-store\r\n");
      api_end(cn, "ready\n", 6);
    }
  } else if (cn->admin_route == API_ADMIN_METRICS) {
    if (api_metrics_text(&body, gg, cn->c.core->srv) != URSULA_OK) {
      api_error(cn, 503, "out of memory");
    } else {
      api_begin(cn, 200);
      buf_append_str(conn_out(&cn->c),
                     "Content-Type: text/plain; version=0.0.4; "
                     "charset=utf-8\r\n"
                     "Cache-Control: no-store\r\n");
      api_end(cn, body.ptr, body.len);
    }
  } else if (api_status_json(&body, gg) != URSULA_OK) {
    api_error(cn, 503, "out of memory");
  } else {
    api_json_200(cn, body.ptr, body.len);
  }
  buf_free(&body);
  group_gather_free(gg);
  conn_done(&cn->c);
}

/* GET or HEAD /__ursula/cluster: gather each core's part, then answer. */
static void api_status_start(struct api_conn *cn) {
  struct group_gather *gg = group_gather_new(cn->c.core);
  if (gg == NULL) {
    api_error(cn, 503, "out of memory");
    conn_done(&cn->c);
    return;
  }
  gg->conn_id = cn->c.id;
  gg->want_metrics = cn->admin_route == API_ADMIN_METRICS;
  cn->gather = gg;
  conn_busy(&cn->c);
  group_gather_start(cn->c.core, gg, api_on_status_done);
}

/* conn.c's on_head for a connection of the admin listener: 404, 405,
** or a JOB_STATUS job (answered by api_status_start once the body, if
** any, is read and dropped). */
/* The method of an admin request on route: API_GET, API_HEAD_M, or for
** a group's backup path and the maintenance path API_POST and API_DELETE
** too; the snapshot path API_POST alone; 0 otherwise. */
static int api_admin_method(int route, struct str m) {
  if (route == API_ADMIN_SNAPSHOT) return util_str_eq(m, "POST") ? API_POST : 0;
  if (util_str_eq(m, "GET")) return API_GET;
  if (util_str_eq(m, "HEAD")) return API_HEAD_M;
  if (route != API_ADMIN_BACKUP_GROUP && route != API_ADMIN_SHED) return 0;
  if (util_str_eq(m, "POST")) return API_POST;
  if (util_str_eq(m, "DELETE")) return API_DELETE;
  return 0;
}

/* Keep req's Range field in cn (range_state). */
static void api_keep_range(struct api_conn *cn,
                           const struct http_request *req) {
  size_t i;
  cn->range_state = 0;
  for (i = 0; i < req->n_headers; i++) {
    struct str v = req->headers[i].value;
    if (!util_str_ieq(req->headers[i].name, "Range")) continue;
    if (cn->range_state != 0 || v.len >= sizeof(cn->range)) {
      cn->range_state = -1;
      return;
    }
    memcpy(cn->range, v.ptr, v.len);
    cn->range[v.len] = '\0';
    cn->range_state = 1;
  }
}

/* conn.c's on_head for a connection of the admin listener: 404, 405,
** 409, or a job: JOB_STATUS (answered by api_status_start), JOB_BACKUP
** (api_backup_run), once the body, if any, is read and dropped. */
static int api_admin_head(struct api_conn *cn, const struct http_request *req) {
  const struct ursula_server *s = cn->c.core->srv;
  int group, route = api_admin_route(api_target_path(req->target),
                                     s->n_groups, &group);
  int backup = route == API_ADMIN_BACKUP || route == API_ADMIN_BACKUP_GROUP;
  int logged = backup || route == API_ADMIN_SNAPSHOT; /* needs --wal-dir */
  int shed = route == API_ADMIN_SHED;
  int method = api_admin_method(route, req->method);
  struct job *j;
  cn->allow = route == API_ADMIN_BACKUP_GROUP || shed ? API_BACKUP_ALLOW
              : route == API_ADMIN_SNAPSHOT   ? "POST"
                                              : API_CLUSTER_ALLOW;
  cn->admin_route = route;
  if (route == API_ADMIN_NONE) {
    conn_fatal(&cn->c, 404,
               "no such path: the admin listener serves /metrics, /healthz, "
               "/readyz, /__ursula/cluster, /__ursula/backup, "
               "/__ursula/backup/GROUP, /__ursula/raft/GROUP/snapshot and "
               API_SHED_PATH);
    return -1;
  }
  if ((route == API_ADMIN_BACKUP_GROUP || route == API_ADMIN_SNAPSHOT) &&
      group < 0) {
    conn_fatal(&cn->c, 404,
               "no such group: G in /__ursula/backup/G and "
               "/__ursula/raft/G/snapshot is from 0 to the group count - 1, "
               "in decimal");
    return -1;
  }
  if (method == 0) {
    conn_fatal(&cn->c, 405,
               route == API_ADMIN_BACKUP_GROUP || shed
                   ? "method not allowed (GET, HEAD, POST, DELETE)"
               : route == API_ADMIN_SNAPSHOT
                   ? "method not allowed (POST)"
                   : "method not allowed (GET, HEAD)");
    return -1;
  }
  if ((route == API_ADMIN_METRICS || route == API_ADMIN_CLUSTER || logged ||
       shed) &&
      api_authorize(cn, req, AUTH_ADMIN, NULL, 0) != 0)
    return -1;
  if (cn->c.chunked || cn->c.body_left > 0) { /* not charged to the
    ** clients' --max-body-inflight-bytes: the admin paths take no body */
    conn_fatal(&cn->c, 413, "the admin paths take no request body");
    return -1;
  }
  if (shed && s->cfg.peer_count <= 1) {
    conn_fatal(&cn->c, 409,
               "a single node: there is no other member to hand leadership "
               "to");
    return -1;
  }
  if (logged && s->cfg.wal_dir[0] == '\0') {
    conn_fatal(&cn->c, 409,
               backup ? "this node has no --wal-dir: its streams are in "
                        "memory only, and there is nothing to back up"
                      : "this node has no --wal-dir: no log to snapshot");
    return -1;
  }
  if ((j = job_new()) == NULL) {
    conn_fatal(&cn->c, 503, "out of memory");
    return -1;
  }
  j->op = backup                        ? JOB_BACKUP
          : route == API_ADMIN_SNAPSHOT ? JOB_SNAPSHOT
          : shed                        ? JOB_SHED
                                        : JOB_STATUS;
  j->group = group;
  cn->backup_method = method;
  cn->backup_group = group;
  if (backup) api_keep_range(cn, req);
  cn->job = j;
  return 0;
}

/* ------------------------------------------------------------ backups */

/* The file of group g's backup image, into path. */
static void api_backup_file(const struct api_conn *cn, int g, char *path,
                            size_t cap) {
  snprintf(path, cap, "%s/g%05d/backup", cn->c.core->srv->cfg.wal_dir, g);
}

/* The id kept in --wal-dir's cold-store (32 hex digits) into id, or ""
** if there is none (no cold tier used yet). */
static void api_backup_store_id(const struct ursula_server *s, char *id) {
  char path[URSULA_PATH_LEN + 32], text[80];
  struct os_fs *fs = s->env->fs;
  int fd, n;
  id[0] = '\0';
  snprintf(path, sizeof(path), "%s/cold-store", s->cfg.wal_dir);
  if ((fd = fs->open(path, O_RDONLY, 0)) < 0) return;
  n = (int)fs->pread(fd, text, sizeof(text) - 1, 0);
  fs->close(fd);
  if (n < 58 || strncmp(text, "ursula-cold-store 1\nnode ", 25) != 0 ||
      strspn(text + 25, "0123456789abcdef") < 32)
    return;
  memcpy(id, text + 25, 32);
  id[32] = '\0';
}

/* GET /__ursula/backup: the node's layout, for a backup's MANIFEST. */
static void api_backup_layout(struct api_conn *cn) {
  const struct ursula_server *s = cn->c.core->srv;
  const struct ursula_config *cfg = &s->cfg;
  struct buf b;
  char id[33];
  int rc;
  memset(&b, 0, sizeof(b));
  api_backup_store_id(s, id);
  rc = buf_printf(&b, "{\"groups\":%d,\"node_id\":%d,\"cluster_id\":",
                  s->n_groups, cfg->peer_count > 1 ? cfg->node_id : 0);
  if (rc == URSULA_OK) rc = json_put_string(&b, cfg->cluster_id);
  if (rc == URSULA_OK)
    rc = id[0] ? buf_printf(&b, ",\"store_id\":\"%s\"", id)
               : buf_append_str(&b, ",\"store_id\":null");
  if (rc == URSULA_OK)
    rc = buf_printf(&b, ",\"cold\":\"%s\",\"cold_dir\":",
                    cfg->cold_dir[0]       ? "dir"
                    : cfg->s3_endpoint[0] ? "s3"
                                           : "none");
  if (rc == URSULA_OK) rc = json_put_string(&b, cfg->cold_dir);
  if (rc == URSULA_OK) rc = buf_append_str(&b, ",\"s3_bucket\":");
  if (rc == URSULA_OK) rc = json_put_string(&b, cfg->s3_bucket);
  if (rc == URSULA_OK) rc = buf_append_str(&b, ",\"s3_prefix\":");
  if (rc == URSULA_OK) rc = json_put_string(&b, cfg->s3_prefix);
  if (rc == URSULA_OK) rc = buf_append_str(&b, "}\n");
  if (rc != URSULA_OK)
    api_error(cn, 503, "out of memory");
  else
    api_json_200(cn, b.ptr, b.len);
  buf_free(&b);
}

/* "bytes=A-B" or "bytes=A-" into *a, *b (B: UINT64_MAX if absent); 0,
** or -1 for any other form. */
static int api_parse_range(const char *v, uint64_t *a, uint64_t *b) {
  const char *p;
  char *stop;
  if (strncmp(v, "bytes=", 6) != 0 || v[6] < '0' || v[6] > '9') return -1;
  errno = 0;
  *a = (uint64_t)strtoull(v + 6, &stop, 10);
  if (errno != 0 || *stop != '-') return -1;
  p = stop + 1;
  if (*p == '\0') {
    *b = UINT64_MAX;
    return 0;
  }
  if (*p < '0' || *p > '9') return -1;
  *b = (uint64_t)strtoull(p, &stop, 10);
  return errno == 0 && *stop == '\0' && *b >= *a ? 0 : -1;
}

/* GET or HEAD /__ursula/backup/G: the image's bytes asked for, at most
** API_BACKUP_RANGE_MAX (read here, on this core), or its size. */
static void api_backup_range(struct api_conn *cn) {
  struct os_fs *fs = cn->c.core->srv->env->fs;
  char path[URSULA_PATH_LEN + 32];
  struct buf data;
  uint64_t size = 0, a = 0, b = 0, e;
  int fd;
  api_backup_file(cn, cn->backup_group, path, sizeof(path));
  if ((fd = fs->open(path, O_RDONLY, 0)) < 0 || fs->size(fd, &size) != 0) {
    int missing = errno == ENOENT;
    if (fd >= 0) fs->close(fd);
    api_error(cn, missing ? 404 : 500,
              missing ? "no backup image of this group: POST first"
                      : "the backup image cannot be read");
    return;
  }
  if (cn->backup_method == API_HEAD_M) {
    fs->close(fd);
    api_begin(cn, 200);
    buf_append_str(conn_out(&cn->c),
                   "Content-Type: application/octet-stream\r\n"
                   "Accept-Ranges: bytes\r\nCache-Control: no-store\r\n");
    api_end(cn, NULL, (size_t)size);
    return;
  }
  if (cn->range_state != 1 || api_parse_range(cn->range, &a, &b) != 0) {
    fs->close(fd);
    api_error(cn, 400,
              "send one range, Range: bytes=A-B or bytes=A- (at most 4 MiB "
              "are answered a request)");
    return;
  }
  if (a >= size) {
    fs->close(fd);
    api_begin(cn, 416);
    buf_printf(conn_out(&cn->c),
               "Content-Type: text/plain; charset=utf-8\r\n"
               "Content-Range: bytes */%llu\r\n",
               (unsigned long long)size);
    api_end(cn, "the range starts past the image's end\n", 38);
    return;
  }
  e = b < size - 1 ? b : size - 1;
  if (e - a >= API_BACKUP_RANGE_MAX) e = a + API_BACKUP_RANGE_MAX - 1;
  memset(&data, 0, sizeof(data));
  if (buf_reserve(&data, (size_t)(e - a + 1)) != URSULA_OK ||
      fs->pread(fd, data.ptr, (size_t)(e - a + 1), (off_t)a) !=
          (ssize_t)(e - a + 1)) {
    fs->close(fd);
    buf_free(&data);
    api_error(cn, 500, "the backup image cannot be read");
    return;
  }
  fs->close(fd);
  data.len = (size_t)(e - a + 1);
  api_begin(cn, 206);
  buf_printf(conn_out(&cn->c),
             "Content-Type: application/octet-stream\r\n"
             "Content-Range: bytes %llu-%llu/%llu\r\n"
             "Cache-Control: no-store\r\n",
             (unsigned long long)a, (unsigned long long)e,
             (unsigned long long)size);
  api_end_data(cn, 0, &data);
  buf_free(&data);
}

/* DELETE /__ursula/backup/G. */
static void api_backup_delete(struct api_conn *cn) {
  char path[URSULA_PATH_LEN + 32];
  api_backup_file(cn, cn->backup_group, path, sizeof(path));
  if (cn->c.core->srv->env->fs->unlink(path) != 0) {
    api_error(cn, errno == ENOENT ? 404 : 500,
              errno == ENOENT ? "no backup image of this group"
                              : "the backup image cannot be removed");
    return;
  }
  api_begin(cn, 204);
  buf_append_str(conn_out(&cn->c), "\r\n");
}

/* The answer to a POST's JOB_BACKUP or JOB_SNAPSHOT, back from the
** group's owner (the backup image's CRC after the fields both have). */
static void api_reply_backup(struct api_conn *cn, const struct job *j) {
  char body[256];
  int n;
  if (j->status != 200) {
    api_error(cn, j->status, j->reason ? j->reason : "error");
    return;
  }
  n = snprintf(body, sizeof(body),
               "{\"group\":%d,\"index\":%llu,\"term\":%llu,\"bytes\":%llu",
               j->group, (unsigned long long)j->image_index,
               (unsigned long long)j->image_term,
               (unsigned long long)j->image_bytes);
  if (j->op == JOB_BACKUP)
    n += snprintf(body + n, sizeof(body) - (size_t)n, ",\"crc32c\":%lu",
                  (unsigned long)j->image_crc);
  n += snprintf(body + n, sizeof(body) - (size_t)n, "}\n");
  api_json_200(cn, body, (size_t)n);
}

static void api_send_job(struct api_conn *cn, struct job *j);

/* The maintenance path (SHEDDING): POST sets the server's flag, DELETE
** clears it (each core acts on it at its next tick); the answer is the
** state after. */
static void api_shed(struct api_conn *cn) {
  struct ursula_server *s = cn->c.core->srv;
  char body[64];
  int n;
  if (cn->backup_method == API_POST || cn->backup_method == API_DELETE) {
    int want = cn->backup_method == API_POST;
    if ((s->shed_requested != 0) != want)
      LOG_I("leadership shedding %s (the admin listener)",
            want ? "asked for" : "ended");
    s->shed_requested = want;
  }
  n = snprintf(body, sizeof(body), "{\"shedding\":%s}\n",
               s->shed_requested ? "true" : "false");
  api_json_200(cn, body, (size_t)n);
}

/* A JOB_BACKUP whose request is in: answered here, or (a POST) sent to
** the group's owner and answered by api_on_job_done. */
static void api_backup_run(struct api_conn *cn, struct job *j) {
  if (cn->admin_route == API_ADMIN_BACKUP_GROUP &&
      cn->backup_method == API_POST) {
    api_send_job(cn, j);
    return;
  }
  job_free(j);
  if (cn->admin_route == API_ADMIN_BACKUP)
    api_backup_layout(cn);
  else if (cn->backup_method == API_DELETE)
    api_backup_delete(cn);
  else
    api_backup_range(cn);
  conn_done(&cn->c);
}

/* ------------------------------------------------------------ requests */

/* Send cn's job to the stream's owner. */
static void api_send_job(struct api_conn *cn, struct job *j) {
  cn->job = j;
  j->origin_core = cn->c.core->id;
  j->conn_id = cn->c.id;
  conn_busy(&cn->c);
  if (j->op == JOB_CREATE && (j->cmd.flags & CMD_F_FORK))
    fork_start(cn->c.core, j);
  else if (j->op == JOB_BACKUP)
    group_backup(cn->c.core, j);
  else if (j->op == JOB_SNAPSHOT)
    group_snapshot_now(cn->c.core, j);
  else
    group_dispatch(cn->c.core, j);
}

static void api_dispatch_read(struct api_conn *cn, uint64_t offset, int now) {
  struct job *j = job_new();
  if (j == NULL) {
    conn_fatal(&cn->c, 503, "out of memory");
    return;
  }
  memcpy(j->path, cn->lw.watch->path, cn->lw.watch->path_len);
  j->path_len = cn->lw.watch->path_len;
  j->op = JOB_READ;
  j->offset = offset;
  j->offset_now = now;
  j->live = cn->live;
  j->max_bytes = (uint64_t)cn->c.core->srv->cfg.max_read_bytes;
  cn->lw.watch->pending++;
  cn->job = j;
  j->origin_core = cn->c.core->id;
  j->conn_id = cn->c.id;
  if (api_polling(cn)) conn_disarm(&cn->c);
  group_dispatch(cn->c.core, j);
}

/* A query parameter we know, percent-decoded (RFC 3986 section 2.1)
** before anything looks at it: "offset=%2D1" is offset -1.  A decoded
** value longer than API_PARAM_MAX bytes cannot be a valid one of ours
** and is kept as too_long. */
#define API_PARAM_MAX 256
struct api_param {
  int n;        /* times given */
  int too_long; /* the last one did not fit v */
  size_t len;
  char v[API_PARAM_MAX];
};

/* The request-target split into the path (as sent: a stream's name is
** its bytes) and the query parameters we know; others are ignored. */
struct api_query {
  struct str path;
  struct api_param offset, live, cursor;
  struct api_param prefix, after, limit; /* GET /{b}/streams */
  struct api_param record, tail_records, max_records, record_view; /* RECORDS */
};

static struct str api_param_str(const struct api_param *p) {
  struct str v;
  v.ptr = p->v;
  v.len = p->len;
  return v;
}

/* Fill q from t.  Returns 0, or -1 if a name or value holds a '%' that
** does not start an escape (the request-line parser already refuses
** such a target; this keeps the rule true for any caller). */
static int api_parse_target(struct str t, struct api_query *q) {
  size_t i = 0, start;
  memset(q, 0, sizeof(*q));
  while (i < t.len && t.ptr[i] != '?') i++;
  q->path.ptr = t.ptr;
  q->path.len = i;
  while (i < t.len) {
    struct str name, value;
    struct api_param *p = NULL;
    char nm[16];
    size_t eq = 0, nlen;
    int rc;
    start = ++i;
    while (i < t.len && t.ptr[i] != '&') {
      if (t.ptr[i] == '=' && eq == 0) eq = i;
      i++;
    }
    name.ptr = t.ptr + start;
    name.len = (eq ? eq : i) - start;
    value.ptr = eq ? t.ptr + eq + 1 : t.ptr + i;
    value.len = eq ? i - eq - 1 : 0;
    rc = http_pct_decode(name, nm, sizeof(nm), &nlen);
    if (rc == HTTP_EMALFORMED) return -1;
    if (rc == URSULA_OK) {
      struct str n;
      n.ptr = nm;
      n.len = nlen;
      p = util_str_eq(n, "offset")   ? &q->offset
          : util_str_eq(n, "live")   ? &q->live
          : util_str_eq(n, "cursor") ? &q->cursor
          : util_str_eq(n, "prefix") ? &q->prefix
          : util_str_eq(n, "after")  ? &q->after
          : util_str_eq(n, "limit")  ? &q->limit
          : util_str_eq(n, "record") ? &q->record
          : util_str_eq(n, "tail_records") ? &q->tail_records
          : util_str_eq(n, "max_records")  ? &q->max_records
          : util_str_eq(n, "record_view")  ? &q->record_view
                                           : NULL;
    }
    if (p == NULL) { /* not ours: only its escapes matter */
      char sink[1];
      size_t ignored;
      if (http_pct_decode(value, sink, 0, &ignored) == HTTP_EMALFORMED)
        return -1;
      continue;
    }
    p->n++;
    rc = http_pct_decode(value, p->v, sizeof(p->v), &p->len);
    if (rc == HTTP_EMALFORMED) return -1;
    p->too_long = rc != URSULA_OK;
  }
  return 0;
}

/* An offset of this server: "%016llu_%016llu" as api_offset_header()
** writes it, read back as two 1*DIGIT numbers of which the first (the
** log epoch, always 0 here) must be 0 and the second is the byte offset.
** A first part other than 0 is not an offset this server gave. */
static int api_parse_offset(struct str s, uint64_t *out) {
  size_t i = 0;
  struct str hi, lo;
  uint64_t h, v;
  while (i < s.len && s.ptr[i] != '_') i++;
  if (i == s.len) return -1;
  hi.ptr = s.ptr;
  hi.len = i;
  lo.ptr = s.ptr + i + 1;
  lo.len = s.len - i - 1;
  if (util_parse_u64(hi, 0, &h) != 0) return -1;
  if (util_parse_u64(lo, UINT64_MAX, &v) != 0) return -1;
  *out = v;
  return 0;
}

/* Copy header value v into a fixed field; -1 if it does not fit. */
static int api_copy(char *dst, size_t cap, struct str v) {
  if (v.len >= cap) return -1;
  memcpy(dst, v.ptr, v.len);
  dst[v.len] = '\0';
  return 0;
}

static int api_is_true(const struct http_header *h) {
  return h != NULL && util_str_ieq(h->value, "true");
}

/* "^(0|[1-9][0-9]*)$" up to max. */
static int api_parse_canonical(struct str v, uint64_t max, uint64_t *out) {
  if (v.len == 0 || (v.len > 1 && v.ptr[0] == '0')) return -1;
  return util_parse_u64(v, max, out);
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t api_days(int64_t y, int m, int d) {
  int64_t era;
  unsigned yoe, doy, doe;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = (unsigned)(y - era * 400);
  doy = (unsigned)((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1);
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static int api_digits(const char *p, int n, int *out) {
  int i, v = 0;
  for (i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    v = v * 10 + (p[i] - '0');
  }
  *out = v;
  return 0;
}

/* RFC 3339 date-time ("2026-01-02T03:04:05.678Z", "...+01:00") to Unix
** milliseconds.  Returns 0 or -1. */
static int api_parse_rfc3339(struct str s, uint64_t *out_ms) {
  const char *p = s.ptr;
  size_t i = 19;
  int y, mo, d, h, mi, sec, ms = 0, tzh = 0, tzm = 0, sign = 0, mdays;
  int64_t t;
  static const int dim[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (s.len < 20) return -1;
  if (api_digits(p, 4, &y) || p[4] != '-' || api_digits(p + 5, 2, &mo) ||
      p[7] != '-' || api_digits(p + 8, 2, &d) ||
      (p[10] != 'T' && p[10] != 't' && p[10] != ' ') ||
      api_digits(p + 11, 2, &h) || p[13] != ':' || api_digits(p + 14, 2, &mi) ||
      p[16] != ':' || api_digits(p + 17, 2, &sec))
    return -1;
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 60) return -1;
  mdays = dim[mo - 1];
  if (mo == 2 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) mdays = 28;
  if (d > mdays) return -1;
  if (i < s.len && p[i] == '.') {
    int digits = 0;
    i++;
    while (i < s.len && p[i] >= '0' && p[i] <= '9') {
      if (digits < 3) ms = ms * 10 + (p[i] - '0');
      digits++;
      i++;
    }
    if (digits == 0) return -1;
    while (digits < 3) ms *= 10, digits++;
  }
  if (i >= s.len) return -1;
  if (p[i] == 'Z' || p[i] == 'z') {
    i++;
  } else if (p[i] == '+' || p[i] == '-') {
    sign = p[i] == '+' ? 1 : -1;
    if (i + 6 > s.len || api_digits(p + i + 1, 2, &tzh) || p[i + 3] != ':' ||
        api_digits(p + i + 4, 2, &tzm) || tzh > 23 || tzm > 59)
      return -1;
    i += 6;
  } else {
    return -1;
  }
  if (i != s.len) return -1;
  t = api_days(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
  t -= sign * (tzh * 3600 + tzm * 60);
  if (t < 0) return -1;
  *out_ms = (uint64_t)t * 1000u + (uint64_t)ms;
  return 0;
}

/* Validate a stream path: absolute, no ".." or "." segments, no NUL. */
static int api_path_ok(struct str p) {
  size_t i, seg = 1;
  if (p.len == 0 || p.ptr[0] != '/') return 0;
  for (i = 1; i <= p.len; i++) {
    if (i == p.len || p.ptr[i] == '/') {
      size_t n = i - seg;
      if ((n == 1 && p.ptr[seg] == '.') ||
          (n == 2 && p.ptr[seg] == '.' && p.ptr[seg + 1] == '.'))
        return 0;
      seg = i + 1;
    }
  }
  return 1;
}

/* Fill the parts of a PUT job that come from headers.  Returns NULL or an
** error reason (400). */
static const char *api_build_put(const struct http_request *req,
                                 struct job *j) {
  const struct http_header *h;
  const struct http_header *ttl = http_find_header(req, "Stream-TTL");
  const struct http_header *exp = http_find_header(req, "Stream-Expires-At");
  const struct http_header *ff = http_find_header(req, "Stream-Forked-From");
  const struct http_header *fo = http_find_header(req, "Stream-Fork-Offset");
  const struct http_header *fs =
      http_find_header(req, "Stream-Fork-Sub-Offset");
  const struct http_header *attrs = http_find_header(req, "Stream-Attrs");
  if (ttl && exp) return "Stream-TTL and Stream-Expires-At are exclusive";
  if (ttl) {
    if (api_parse_canonical(ttl->value, (uint64_t)1 << 40, &j->cmd.ttl_s) != 0)
      return "Stream-TTL must be a whole number of seconds";
    j->cmd.flags |= CMD_F_TTL;
  }
  if (exp) {
    if (api_parse_rfc3339(exp->value, &j->cmd.expires_at_ms) != 0 ||
        api_copy(j->expires_text, sizeof(j->expires_text), exp->value) != 0)
      return "Stream-Expires-At must be an RFC 3339 timestamp";
    j->cmd.flags |= CMD_F_EXPIRES;
  }
  if (attrs) { /* attrs.c: the stored form, compared with an existing
                 stream's by apply (409 if they differ) */
    const char *why = NULL;
    int rc = attrs_normalize(attrs->value.ptr, attrs->value.len, &j->attrs,
                             &why);
    if (rc != URSULA_OK)
      return rc == URSULA_EINVAL ? why : "out of memory";
    j->cmd.flags |= CMD_F_ATTRS;
  }
  if (fs && !ff) return "Stream-Fork-Sub-Offset needs Stream-Forked-From";
  if (fo && !ff) return "Stream-Fork-Offset needs Stream-Forked-From";
  if (ff) {
    if (ff->value.len == 0 || !api_path_ok(ff->value) ||
        api_copy(j->fork_source, sizeof(j->fork_source), ff->value) != 0)
      return "Stream-Forked-From must be a stream path";
    j->cmd.flags |= CMD_F_FORK;
    if (fo) {
      if (api_parse_offset(fo->value, &j->cmd.fork_offset) != 0)
        return "Stream-Fork-Offset is not a valid offset";
      j->cmd.flags |= CMD_F_FORK_OFFSET;
    }
    if (fs && api_parse_canonical(fs->value, UINT64_MAX, &j->cmd.fork_sub) != 0)
      return "Stream-Fork-Sub-Offset must be a whole number";
  }
  h = http_find_header(req, "Content-Type");
  if (h && h->value.len > 0 && memchr(h->value.ptr, '/', h->value.len) &&
      api_copy(j->content_type, sizeof(j->content_type), h->value) == 0) {
    j->cmd.flags |= CMD_F_CT;
  } else {
    strcpy(j->content_type, "application/octet-stream");
  }
  return NULL;
}

/* Fill the parts of a POST job that come from headers. */
static const char *api_build_post(const struct http_request *req,
                                  struct job *j) {
  const struct http_header *pid = http_find_header(req, "Producer-Id");
  const struct http_header *pep = http_find_header(req, "Producer-Epoch");
  const struct http_header *psq = http_find_header(req, "Producer-Seq");
  const struct http_header *seq = http_find_header(req, "Stream-Seq");
  const struct http_header *ct = http_find_header(req, "Content-Type");
  const struct http_header *rm = http_find_header(req, "Stream-Record-Match");
  const uint64_t max53 = ((uint64_t)1 << 53) - 1;
  if (pid || pep || psq) {
    if (!pid || !pep || !psq)
      return "Producer-Id, Producer-Epoch and Producer-Seq go together";
    if (pid->value.len == 0) return "Producer-Id must not be empty";
    if (api_copy(j->producer_id, sizeof(j->producer_id), pid->value) != 0)
      return "Producer-Id is too long";
    if (util_parse_u64(pep->value, max53, &j->cmd.producer_epoch) != 0)
      return "Producer-Epoch must be an integer";
    if (util_parse_u64(psq->value, max53, &j->cmd.producer_seq) != 0)
      return "Producer-Seq must be an integer";
    j->cmd.flags |= CMD_F_PRODUCER;
  }
  if (seq) {
    if (api_copy(j->stream_seq, sizeof(j->stream_seq), seq->value) != 0)
      return "Stream-Seq is too long";
    j->cmd.flags |= CMD_F_SEQ;
  }
  if (rm) { /* decided at apply, in log order (stream.c, "Records") */
    if (util_parse_u64(rm->value, URSULA_MAX_RECORD, &j->cmd.record_match) !=
        0)
      return "Stream-Record-Match must be a record number up to 2^53 - 1";
    j->cmd.flags |= CMD_F_RECORD_MATCH;
  }
  if (ct && api_copy(j->content_type, sizeof(j->content_type), ct->value) == 0)
    j->cmd.flags |= CMD_F_CT;
  return NULL;
}

/* What a request head asks for, besides its job. */
struct api_head {
  int method; /* API_GET ...; 0: not a method we serve */
  struct api_query q;
};

/* Check the method and the target of req into h.  Returns 0, or the
** status to answer at once, the connection then closing (the request
** cannot be served whatever its body): 405 for a method we do not serve,
** 414 for a path longer than URSULA_MAX_PATH_BYTES, 400 for a path that
** is not absolute or has "." or ".." segments; *reason says why. */
static int api_parse_head(const struct http_request *req, struct api_head *h,
                          const char **reason) {
  struct str m = req->method;
  h->method = util_str_eq(m, "GET")       ? API_GET
              : util_str_eq(m, "HEAD")    ? API_HEAD_M
              : util_str_eq(m, "PUT")     ? API_PUT
              : util_str_eq(m, "POST")    ? API_POST
              : util_str_eq(m, "DELETE")  ? API_DELETE
              : util_str_eq(m, "OPTIONS") ? API_OPTIONS
                                          : 0;
  if (h->method == 0) {
    /* RFC 9110 section 9.1: 405 (with Allow) for a method we know but do
    ** not serve (those of RFC 9110, and PATCH), 501 for any other */
    if (util_str_eq(m, "CONNECT") || util_str_eq(m, "TRACE") ||
        util_str_eq(m, "PATCH")) {
      *reason = "method not allowed";
      return 405;
    }
    *reason = "method not implemented";
    return 501;
  }
  if (h->method == API_OPTIONS && util_str_eq(req->target, "*")) {
    memset(&h->q, 0, sizeof(h->q)); /* the server as a whole (9112 3.2.4) */
    h->q.path = req->target;
    return 0;
  }
  if (api_parse_target(req->target, &h->q) != 0) {
    *reason = "malformed percent-escape in the query";
    return 400;
  }
  if (h->q.path.len > URSULA_MAX_PATH_BYTES) {
    *reason = "path is too long";
    return 414;
  }
  if (!api_path_ok(h->q.path)) {
    *reason = "bad path";
    return 400;
  }
  return 0;
}

/* A record number of a query or header: decimal, at most 2^53 - 1 (as
** producer numbers); 0 or -1. */
static int api_parse_record(const struct api_param *p, uint64_t *out) {
  return p->too_long ? -1
                     : util_parse_u64(api_param_str(p), URSULA_MAX_RECORD, out);
}

/* The record parameters of a read (RECORDS, at the top of the file) into
** j: NULL, or why the request is a 400. */
static const char *api_record_query(const struct api_query *q, struct job *j) {
  if (q->record.n > 1 || q->tail_records.n > 1 || q->max_records.n > 1 ||
      q->record_view.n > 1)
    return "record, tail_records, max_records and record_view may each be "
           "given once";
  if ((q->record.n || q->tail_records.n || q->max_records.n) && q->offset.n)
    return "record parameters and offset exclude each other";
  if (q->record.n && q->tail_records.n)
    return "record and tail_records exclude each other";
  if (q->record.n == 1) {
    if (!q->record.too_long &&
        util_str_eq(api_param_str(&q->record), "now"))
      j->rec_mode = JOB_REC_NOW;
    else if (api_parse_record(&q->record, &j->rec_arg) == 0)
      j->rec_mode = JOB_REC_AT;
    else
      return "record must be now or a record number up to 2^53 - 1";
  }
  if (q->tail_records.n == 1) {
    if (api_parse_record(&q->tail_records, &j->rec_arg) != 0)
      return "tail_records must be a number up to 2^53 - 1";
    j->rec_mode = JOB_REC_TAIL;
  }
  if (q->max_records.n == 1) {
    if (api_parse_record(&q->max_records, &j->max_records) != 0 ||
        j->max_records == 0)
      return "max_records must be a number from 1 to 2^53 - 1";
    if (j->rec_mode == JOB_REC_NONE)
      return "max_records needs record or tail_records";
  }
  if (q->record_view.n == 1) {
    if (q->record_view.too_long ||
        !util_str_eq(api_param_str(&q->record_view), "envelope"))
      return "record_view must be envelope";
    j->envelope = 1;
  }
  return NULL;
}

/* What the query says about a read (GET, or HEAD, which answers as the
** GET of the same target would): the offset, live mode and cursor, each
** percent-decoded first.  Returns NULL or why the request is a 400. */
static const char *api_read_query(const struct api_query *q, struct job *j,
                                  int *has_cursor, uint64_t *cursor) {
  const char *bad = NULL;
  struct str off = api_param_str(&q->offset);
  struct str live = api_param_str(&q->live);
  if (q->offset.n > 1) {
    bad = "offset is given more than once";
  } else if (q->offset.n == 1) {
    if (q->offset.too_long)
      bad = "offset must be -1, now, or an offset from this server";
    else if (util_str_eq(off, "-1"))
      j->offset = 0;
    else if (util_str_eq(off, "now"))
      j->offset_now = 1;
    else if (api_parse_offset(off, &j->offset) != 0)
      bad = "offset must be -1, now, or an offset from this server";
    else
      j->offset_given = 1;
  }
  if (q->live.n > 1) {
    bad = "live is given more than once";
  } else if (q->live.n == 1) {
    if (!q->live.too_long && util_str_eq(live, "long-poll"))
      j->live = JOB_LIVE_POLL;
    else if (!q->live.too_long && util_str_eq(live, "sse"))
      j->live = JOB_LIVE_SSE;
    else
      bad = "live must be long-poll or sse";
    if (q->offset.n == 0 && q->record.n == 0 && q->tail_records.n == 0)
      bad = "live reads need an offset or a record";
  }
  if (bad == NULL) bad = api_record_query(q, j);
  /* a cursor that is missing, repeated or not a number up to 2^53 - 1
  ** (what clients can hold exactly) is no cursor (protocol 2.14) */
  *has_cursor = q->cursor.n == 1 && !q->cursor.too_long &&
                util_parse_u64(api_param_str(&q->cursor),
                               ((uint64_t)1 << 53) - 1, cursor) == 0;
  return bad;
}

/* The largest stream id a listing can show: "aff/s", two ids of at
** most 122 bytes (util.c, bucket paths). */
#define API_LIST_ID_MAX 245
#define API_LIST_DEFAULT 100
#define API_LIST_MAX 1000

/* A listing's query: prefix, after and limit (each at most once) into
** j.  NULL, or why the request is a 400. */
static const char *api_list_query(const struct api_query *q, struct job *j) {
  uint64_t limit = API_LIST_DEFAULT;
  if (q->prefix.n > 1 || q->after.n > 1 || q->limit.n > 1)
    return "prefix, after and limit may each be given once";
  if (q->prefix.too_long || q->prefix.len > API_LIST_ID_MAX ||
      q->after.too_long || q->after.len > API_LIST_ID_MAX)
    return "prefix and after are stream ids: at most 245 bytes";
  if (q->limit.n == 1 &&
      (q->limit.too_long ||
       api_parse_canonical(api_param_str(&q->limit), API_LIST_MAX, &limit) !=
           0 ||
       limit == 0))
    return "limit must be a whole number from 1 to 1000";
  memcpy(j->list_prefix, q->prefix.v, q->prefix.len);
  j->list_prefix[q->prefix.len] = '\0';
  memcpy(j->list_after, q->after.v, q->after.len);
  j->list_after[q->after.len] = '\0';
  j->has_after = q->after.n == 1;
  j->list_limit = (size_t)limit;
  return NULL;
}

/* The Allow of a bucket path's 405 (BUCKETS); NULL: not a bucket's. */
static const char *api_bucket_allow(struct str path) {
  struct util_bucket_path bp;
  util_bucket_path(path.ptr, path.len, &bp);
  if (bp.kind == UTIL_PATH_BUCKET) return "GET, HEAD, PUT, DELETE, OPTIONS";
  if (bp.kind == UTIL_PATH_LIST) return "GET, HEAD, OPTIONS";
  return NULL;
}

/* Fill j for a request on a bucket's own path (bp: BUCKET, LIST or
** RESERVED; BUCKETS at the top of the file): the job, or the status
** that refuses it. */
static void api_build_bucket(const struct api_head *h,
                             const struct util_bucket_path *bp,
                             struct job *j) {
  int m = h->method;
  const char *bad = NULL;
  j->op = JOB_BUCKETS;
  if (m == API_OPTIONS && bp->kind != UTIL_PATH_RESERVED) {
    j->op = 0;
  } else if (bp->kind == UTIL_PATH_RESERVED) {
    j->status = 404;
    j->reason = "no such route: this id is reserved for a bucket's routes";
  } else if (bp->kind == UTIL_PATH_LIST) {
    if (m != API_GET && m != API_HEAD_M) {
      j->status = 405;
      j->reason = "method not allowed (GET, HEAD)";
    } else {
      j->bucket_mode = GROUP_BQ_LIST;
      bad = api_list_query(&h->q, j);
    }
  } else if (m == API_GET || m == API_HEAD_M) {
    j->bucket_mode = GROUP_BQ_ONE;
  } else if (m == API_PUT) {
    j->op = JOB_BUCKET_CREATE;
  } else if (m == API_DELETE) {
    j->op = JOB_BUCKET_DELETE;
  } else {
    j->status = 405;
    j->reason = "method not allowed (GET, HEAD, PUT, DELETE)";
  }
  if (bad != NULL) {
    j->status = 400;
    j->reason = bad;
  }
}

enum {
  API_SNAP_NONE = 0,
  API_SNAP_LATEST,  /* S/snapshot */
  API_SNAP_AT,      /* S/snapshot/{o} */
  API_SNAP_RETAIN,  /* S/retention/{o} */
  API_SNAP_RETAIN0, /* S/retention */
  API_SNAP_BOOT     /* S/bootstrap */
};

struct api_snap_route {
  int kind;          /* API_SNAP_* */
  size_t stream_len; /* the bytes of the path that are S */
  struct str off;    /* API_SNAP_AT, API_SNAP_RETAIN: o as written */
};

/* The kind x names as the last segment (no offset after it), or as the
** one before an offset (with_off); API_SNAP_NONE if neither. */
static int api_snap_kind(struct str x, int with_off) {
  if (util_str_eq(x, "snapshot")) return with_off ? API_SNAP_AT : API_SNAP_LATEST;
  if (util_str_eq(x, "retention"))
    return with_off ? API_SNAP_RETAIN : API_SNAP_RETAIN0;
  if (util_str_eq(x, "bootstrap") && !with_off) return API_SNAP_BOOT;
  return API_SNAP_NONE;
}

/* Sort path into a snapshot route (*r; kind API_SNAP_NONE: it is none):
** "/{b}/{s}/x", "/{b}/{s}/x/{o}", "/{b}/{aff}/{s}/x", "/{b}/{aff}/{s}/x/{o}"
** with b a bucket name, s and aff stream ids.  "/{b}/{s}/snapshot/{o}"
** and "/{b}/{aff}/{s}/snapshot" both have four segments: the third tells
** them apart (a stream id is never "snapshot"). */
static void api_snap_route(struct str path, struct api_snap_route *r) {
  struct str seg[5];
  size_t i, start = 1, n = 0, ns = 0;
  memset(r, 0, sizeof(*r));
  if (path.len < 2 || path.ptr[0] != '/') return;
  for (i = 1; i <= path.len; i++) {
    if (i < path.len && path.ptr[i] != '/') continue;
    if (n == 5) return;
    seg[n].ptr = path.ptr + start;
    seg[n].len = i - start;
    n++;
    start = i + 1;
  }
  if (n < 3 || !util_bucket_name_ok(seg[0]) || !util_stream_id_ok(seg[1]))
    return;
  if (n == 3) {
    r->kind = api_snap_kind(seg[2], 0);
    ns = 2;
  } else if (n == 4 && api_snap_kind(seg[2], 1) != API_SNAP_NONE) {
    r->kind = api_snap_kind(seg[2], 1);
    r->off = seg[3];
    ns = 2;
  } else if (util_stream_id_ok(seg[2])) {
    r->kind = api_snap_kind(seg[3], n == 5);
    if (n == 5) r->off = seg[4];
    ns = 3;
  }
  if (r->kind != API_SNAP_NONE)
    r->stream_len = (size_t)(seg[ns].ptr - 1 - path.ptr);
}

/* The Allow of a snapshot route's 405. */
static const char *api_snap_allow(int kind) {
  switch (kind) {
    case API_SNAP_AT:
      return "GET, HEAD, PUT, DELETE, OPTIONS";
    case API_SNAP_RETAIN:
    case API_SNAP_RETAIN0:
      return "PUT, OPTIONS";
    default:
      return "GET, HEAD, OPTIONS";
  }
}

/* Fill j for a request on snapshot route r (j->path: its stream S), or
** set the status that refuses it. */
static void api_build_snap(const struct http_request *req,
                           const struct api_head *h,
                           const struct api_snap_route *r, struct job *j) {
  int m = h->method;
  const char *bad = NULL;
  const struct http_header *f;
  j->path_len = r->stream_len;
  j->path[j->path_len] = '\0';
  if (m == API_OPTIONS) {
    j->op = 0;
    return;
  }
  if (r->kind == API_SNAP_AT || r->kind == API_SNAP_RETAIN) {
    j->offset_given = 1;
    if (util_parse_u64(r->off, UINT64_MAX, &j->offset) != 0 &&
        api_parse_offset(r->off, &j->offset) != 0)
      bad = "the offset must be a decimal byte offset (20 digits, or "
            "fewer) or an offset of this server";
  }
  if (r->kind == API_SNAP_AT && m == API_PUT) {
    j->op = JOB_SNAP_PUT;
    f = http_find_header(req, "Content-Type");
    snprintf(j->content_type, sizeof(j->content_type), "%.*s",
             f != NULL ? (int)util_str_trim(f->value).len : 24,
             f != NULL ? util_str_trim(f->value).ptr
                       : "application/octet-stream");
    if (f != NULL && (util_str_trim(f->value).len == 0 ||
                      util_str_trim(f->value).len >= sizeof(j->content_type)))
      bad = "Content-Type must be 1 to 255 bytes";
    if ((f = http_find_header(req, "Stream-Snapshot-Match")) != NULL) {
      struct str v = util_str_trim(f->value);
      j->has_match = 1;
      /* longer than any digest: it matches nothing */
      snprintf(j->snap_match, sizeof(j->snap_match), "%.*s",
               v.len <= STREAM_DIGEST_LEN ? (int)v.len : 1,
               v.len <= STREAM_DIGEST_LEN ? v.ptr : "-");
    }
  } else if (r->kind == API_SNAP_AT && m == API_DELETE) {
    j->op = JOB_SNAP_GET;
    j->snap_delete = 1;
  } else if ((r->kind == API_SNAP_AT || r->kind == API_SNAP_LATEST) &&
             (m == API_GET || m == API_HEAD_M)) {
    j->op = JOB_SNAP_GET;
  } else if (r->kind == API_SNAP_RETAIN && m == API_PUT) {
    j->op = JOB_RETAIN;
  } else if (r->kind == API_SNAP_RETAIN0 && m == API_PUT) {
    bad = "retention needs an offset: PUT .../retention/{offset} (the "
          "record form is not supported yet)";
  } else if (r->kind == API_SNAP_BOOT && (m == API_GET || m == API_HEAD_M)) {
    j->op = JOB_BOOTSTRAP;
    if (h->q.live.n > 0) bad = "a bootstrap is not a live read: no live";
  } else {
    j->status = 405;
    j->reason = "method not allowed on this route";
    return;
  }
  if (bad != NULL) {
    j->status = 400;
    j->reason = bad;
  }
}

/* ------------------------------------------------------------ batches, attrs

   A stream's sub-resources (util_bucket_path: UTIL_PATH_SUB) and a
   group's $transaction (UTIL_PATH_TXN).  batch.c has append-batch and
   $transaction (their bodies, their answers), attrs.c the attributes:
     POST .../append-batch      JOB_MULTI, each frame on its own
     POST /{b}/{aff}/$transaction  JOB_MULTI, CMD_F_ATOMIC
     GET, HEAD .../attrs        200 application/json: the attributes ({}
                                when none), as of the read barrier
     PUT .../attrs              JOB_ATTRS: 204, the body replaces them
   Other sub-resources (snapshot, retention, bootstrap) are 404 here. */

/* The answer to a MULTI (batch.c has its form). */
static void api_reply_multi(struct api_conn *cn, struct job *j) {
  struct buf body;
  int all_ok = 0, rc;
  if (j->data.len == 0) { /* refused before it applied (503, ...) */
    api_reply_change(cn, j);
    return;
  }
  memset(&body, 0, sizeof(body));
  if (j->status >= 400) /* a transaction that failed: nothing applied */
    rc = batch_render_failure(&body, &j->data);
  else
    rc = batch_render(&body, &j->data, &all_ok);
  if (rc != URSULA_OK) {
    buf_free(&body);
    api_error(cn, 503, "out of memory");
    return;
  }
  if (j->status < 400 && all_ok && cn->prefer_minimal) {
    api_begin(cn, 204);
    buf_append_str(conn_out(&cn->c), "Preference-Applied: return=minimal\r\n");
    if (!(j->cmd.flags & CMD_F_ATOMIC))
      api_offset_header(cn, "Stream-Next-Offset", j->res.tail);
    buf_append_str(conn_out(&cn->c), "\r\n");
    buf_free(&body);
    return;
  }
  api_begin(cn, j->status >= 400 ? j->status : 200);
  if (j->status < 400 && !(j->cmd.flags & CMD_F_ATOMIC))
    api_offset_header(cn, "Stream-Next-Offset", j->res.tail);
  buf_append_str(conn_out(&cn->c), "Content-Type: application/json\r\n");
  api_end(cn, body.ptr, body.len);
  buf_free(&body);
}

/* GET, HEAD .../attrs: the stream's attributes. */
static void api_reply_attrs(struct api_conn *cn, struct job *j) {
  if (j->sub == JOB_SUB_NOMEM) {
    api_error(cn, 503, "out of memory");
    return;
  }
  api_begin(cn, 200);
  buf_append_str(conn_out(&cn->c), "Content-Type: application/json\r\n");
  if (j->attrs.len == 0)
    api_end(cn, "{}", 2);
  else
    api_end(cn, j->attrs.ptr, j->attrs.len);
}

/* Fill j for a request on a stream's sub-resource or a $transaction (bp:
** SUB or TXN): the job, or the status that refuses it. */
static void api_build_sub(const struct http_request *req,
                          const struct api_head *h,
                          const struct util_bucket_path *bp, struct job *j) {
  int m = h->method;
  const char *bad = NULL;
  size_t n = bp->kind == UTIL_PATH_TXN ? bp->group_len : bp->stream_len;
  j->path_len = n; /* the stream's path, or the group's "/{b}/{aff}" */
  j->path[n] = '\0';
  if (m == API_OPTIONS) {
    j->op = 0;
  } else if (bp->kind == UTIL_PATH_TXN || util_str_eq(bp->sub, "append-batch")) {
    j->op = JOB_MULTI;
    if (bp->rest.len > 0) {
      j->status = 404;
      j->reason = "no such route";
    } else if (m != API_POST) {
      j->status = 405;
      j->reason = "method not allowed (POST)";
    } else if (http_find_header(req, "Stream-Closed") ||
               http_find_header(req, "Stream-Seq") ||
               http_find_header(req, "Stream-Record-Match")) {
      bad = "Stream-Closed, Stream-Seq and Stream-Record-Match are not taken "
            "by a batch: send them with a single append";
    } else if (bp->kind == UTIL_PATH_TXN) {
      const struct http_header *ct = http_find_header(req, "Content-Type");
      char norm[64];
      stream_norm_type(ct ? ct->value : util_str(""), norm, sizeof(norm));
      j->cmd.flags = CMD_F_ATOMIC;
      if (http_find_header(req, "Producer-Id"))
        bad = "a transaction's producers go in its operations";
      if (strcmp(norm, "application/json") != 0) {
        j->status = 415; /* RFC 9110 section 15.5.16 */
        j->reason = "a transaction's body is application/json";
      }
    } else {
      char norm[64];
      bad = api_build_post(req, j);
      stream_norm_type(util_str(j->content_type), norm, sizeof(norm));
      if (strcmp(norm, "application/json") == 0) j->cmd.flags |= CMD_F_JSON;
    }
  } else if (util_str_eq(bp->sub, "attrs") && bp->rest.len == 0) {
    if (m == API_GET || m == API_HEAD_M) {
      j->op = JOB_HEAD;
      j->sub = JOB_SUB_ATTRS;
      j->offset_now = 1;
    } else if (m == API_PUT) {
      j->op = JOB_ATTRS;
    } else {
      j->status = 405;
      j->reason = "method not allowed (GET, HEAD, PUT)";
    }
  } else {
    j->status = 404;
    j->reason = "no such route on this server";
  }
  if (bad != NULL) {
    j->status = 400;
    j->reason = bad;
  }
}

/* The body of a JOB_MULTI or JOB_ATTRS, in: into j's ops or attributes.
** 0, or the status to answer (reason in why). */
static int api_finish_sub(struct api_conn *cn, struct job *j, char *why,
                          size_t cap) {
  const char *p = cn->c.raw.ptr ? cn->c.raw.ptr : "";
  size_t len = cn->c.raw.len;
  struct buf ops;
  struct str path;
  int rc;
  if (j->op == JOB_ATTRS) {
    const char *reason = NULL;
    rc = attrs_normalize(p, len, &j->attrs, &reason);
    if (rc == URSULA_EINVAL) snprintf(why, cap, "%s", reason);
    return rc == URSULA_OK ? 0 : rc == URSULA_EINVAL ? 400 : 503;
  }
  memset(&ops, 0, sizeof(ops));
  path.ptr = j->path;
  path.len = j->path_len;
  if (j->cmd.flags & CMD_F_ATOMIC) {
    rc = batch_txn(p, len, path, &ops, &j->cmd.n_ops, why, cap);
  } else {
    struct cmd tmpl = j->cmd;
    if (!(j->cmd.flags & CMD_F_CT)) {
      snprintf(why, cap, "Content-Type is required (every frame's)");
      return 400;
    }
    tmpl.type = CMD_APPEND;
    tmpl.path = path;
    tmpl.content_type = util_str(j->content_type);
    tmpl.producer_id = util_str(j->producer_id);
    rc = batch_frames(p, len, &tmpl, &ops, &j->cmd.n_ops, why, cap);
    j->cmd.flags = 0; /* the MULTI's own: its ops carry theirs */
    j->producer_id[0] = j->content_type[0] = '\0';
  }
  if (rc != URSULA_OK) {
    buf_free(&ops);
    if (rc == URSULA_ENOMEM) snprintf(why, cap, "out of memory");
    return rc == URSULA_EINVAL ? 400 : 503;
  }
  buf_free(&j->body);
  j->body = ops;
  return 0;
}

/* Fill j (fresh from job_new()) from req, checked by api_parse_head()
** into h: the operation (0 for OPTIONS), the path, and what the headers
** and the query say.  A request the protocol refuses gets j->status 400
** and j->reason: it is answered once its body is read, which keeps the
** framing.  *has_cursor and *cursor get a GET's cursor parameter. */
static void api_build_job(const struct http_request *req,
                          const struct api_head *h, uint64_t max_read_bytes,
                          struct job *j, int *has_cursor, uint64_t *cursor) {
  const struct api_query *q = &h->q;
  const char *bad = NULL;
  struct util_bucket_path bp;
  memcpy(j->path, q->path.ptr, q->path.len);
  j->path_len = q->path.len;
  *has_cursor = 0;
  if (api_reserved(q->path) != API_PATH_STREAM) {
    api_build_reserved(q->path, h->method, j);
    return;
  }
  {
    struct api_snap_route sr;
    api_snap_route(q->path, &sr);
    if (sr.kind != API_SNAP_NONE) { /* SNAPSHOTS */
      api_build_snap(req, h, &sr, j);
      return;
    }
  }
  util_bucket_path(q->path.ptr, q->path.len, &bp);
  if (bp.kind == UTIL_PATH_BUCKET || bp.kind == UTIL_PATH_LIST ||
      bp.kind == UTIL_PATH_RESERVED) {
    api_build_bucket(h, &bp, j);
    return;
  }
  if (bp.kind == UTIL_PATH_SUB || bp.kind == UTIL_PATH_TXN) {
    api_build_sub(req, h, &bp, j);
    return;
  }
  if (api_is_true(http_find_header(req, "Stream-Closed")))
    j->cmd.flags |= CMD_F_CLOSE;
  switch (h->method) {
    case API_OPTIONS:
      j->op = 0;
      break;
    case API_PUT:
      j->op = JOB_CREATE;
      bad = api_build_put(req, j);
      break;
    case API_POST:
      j->op = JOB_APPEND;
      bad = api_build_post(req, j);
      break;
    case API_DELETE:
      j->op = JOB_DELETE;
      break;
    case API_HEAD_M:
      j->op = JOB_HEAD;
      bad = api_read_query(q, j, has_cursor, cursor);
      j->live = JOB_LIVE_NONE; /* a HEAD has no body to wait for */
      j->max_bytes = max_read_bytes;
      break;
    default: /* GET */
      j->op = JOB_READ;
      bad = api_read_query(q, j, has_cursor, cursor);
      j->max_bytes = max_read_bytes;
      break;
  }
  if (h->method == API_PUT || h->method == API_POST) {
    char norm[64];
    stream_norm_type(util_str(j->content_type), norm, sizeof(norm));
    if (strcmp(norm, "application/json") == 0) j->cmd.flags |= CMD_F_JSON;
  }
  if (bad != NULL) {
    j->status = 400;
    j->reason = bad;
  }
}

/* Keep what the answer needs of req's head: the host for Location (the
** authority http_authority() validated, else this server's address),
** and If-None-Match (RFC 9110 section 5.3: all its lines as one list). */
static void api_keep_head(struct api_conn *cn, const struct http_request *req) {
  const struct ursula_config *cfg = &cn->c.core->srv->cfg;
  size_t i, n = 0;
  if (req->host.len == 0 || api_copy(cn->host, sizeof(cn->host), req->host) != 0)
    snprintf(cn->host, sizeof(cn->host), "%.240s:%d", cfg->listen_host,
             cn->c.core->srv->port);
  cn->inm_state = 0;
  for (i = 0; i < req->n_headers && cn->inm_state >= 0; i++) {
    struct str v = req->headers[i].value;
    if (!util_str_ieq(req->headers[i].name, "If-None-Match")) continue;
    if (n + v.len + 2 > sizeof(cn->inm)) {
      cn->inm_state = -1;
      break;
    }
    if (n > 0) cn->inm[n++] = ',';
    memcpy(cn->inm + n, v.ptr, v.len);
    n += v.len;
    cn->inm[n] = '\0';
    cn->inm_state = 1;
  }
}

/* Whether req's Prefer fields ask for return=minimal (RFC 7240: section
** 2, preferences are a comma list of token [BWS "=" BWS (token /
** quoted-string)] with parameters after ';', ignored here; section 4.2,
** return=minimal; names case-insensitive, and the value too here). */
static int api_prefers_minimal(const struct http_request *req) {
  size_t i, k;
  for (i = 0; i < req->n_headers; i++) {
    struct str v = req->headers[i].value;
    if (!util_str_ieq(req->headers[i].name, "Prefer")) continue;
    for (k = 0; k < v.len;) { /* one preference: up to ',' outside quotes */
      struct str name, val;
      size_t e = k, a;
      int q = 0;
      while (e < v.len && (q || v.ptr[e] != ',')) {
        if (v.ptr[e] == '"') q = !q;
        e++;
      }
      a = k;
      while (a < e && (v.ptr[a] == ' ' || v.ptr[a] == '\t')) a++;
      name.ptr = v.ptr + a;
      while (a < e && v.ptr[a] != '=' && v.ptr[a] != ';' && v.ptr[a] != ' ' &&
             v.ptr[a] != '\t')
        a++;
      name.len = (size_t)(v.ptr + a - name.ptr);
      while (a < e && (v.ptr[a] == ' ' || v.ptr[a] == '\t')) a++;
      val.ptr = "";
      val.len = 0;
      if (a < e && v.ptr[a] == '=') { /* BWS "=" BWS value */
        a++;
        while (a < e && (v.ptr[a] == ' ' || v.ptr[a] == '\t')) a++;
        val.ptr = v.ptr + a;
        if (a < e && v.ptr[a] == '"') { /* a quoted-string: its content */
          val.ptr++;
          a++;
          while (a < e && v.ptr[a] != '"') a++;
        } else {
          while (a < e && v.ptr[a] != ';' && v.ptr[a] != ' ' &&
                 v.ptr[a] != '\t')
            a++;
        }
        val.len = (size_t)(v.ptr + a - val.ptr);
      }
      if (util_str_ieq(name, "return") && util_str_ieq(val, "minimal"))
        return 1;
      k = e + 1;
    }
  }
  return 0;
}

/* conn.c's on_head hook: check the head, and either answer at once or
** make the job and read the body. */
static int api_on_head(struct conn *c, const struct http_request *req) {
  struct api_conn *cn = (struct api_conn *)(void *)c;
  const struct ursula_config *cfg = &c->core->srv->cfg;
  struct util_bucket_path bp;
  struct api_snap_route sr;
  struct api_head head;
  const char *reason = NULL;
  struct job *j;
  int status;
  api_keep_head(cn, req);
  cn->method = metrics_method(req->method) + 1;
  cn->affinity = 0;
  if (c->admin) return api_admin_head(cn, req);
  {
    struct str tp = api_target_path(req->target);
    int rp = api_reserved(tp);
    cn->allow = rp == API_PATH_CLUSTER || rp == API_PATH_BUCKETS
                    ? API_CLUSTER_ALLOW
                    : api_bucket_allow(tp);
  }
  if ((status = api_parse_head(req, &head, &reason)) != 0) {
    conn_fatal(c, status, reason);
    return -1;
  }
  api_snap_route(head.q.path, &sr);
  if (sr.kind != API_SNAP_NONE) { /* SNAPSHOTS: the stream's path */
    cn->allow = api_snap_allow(sr.kind);
    util_bucket_path(head.q.path.ptr, sr.stream_len, &bp);
  } else {
    util_bucket_path(head.q.path.ptr, head.q.path.len, &bp);
  }
  cn->affinity = bp.kind == UTIL_PATH_AFFINITY || bp.kind == UTIL_PATH_TXN ||
                 (bp.kind == UTIL_PATH_SUB && bp.group_len != bp.stream_len);
  cn->prefer_minimal = api_prefers_minimal(req);
  if (head.method != API_OPTIONS) {
    int cluster = api_reserved(head.q.path) == API_PATH_CLUSTER;
    unsigned scope = cluster ? AUTH_ADMIN
                     : head.method == API_GET || head.method == API_HEAD_M
                         ? AUTH_READ
                         : AUTH_WRITE;
    /* a bucket's own routes are the bucket's: "/{b}" (BUCKETS); a
    ** stream's sub-routes are the stream's; a $transaction writes to any
    ** stream of its key: it needs a token that covers "/{b}/{aff}/" */
    size_t len = bp.kind == UTIL_PATH_LIST ? bp.bucket.len + 1
                 : sr.kind != API_SNAP_NONE ? sr.stream_len
                 : bp.kind == UTIL_PATH_SUB ? bp.stream_len
                 : bp.kind == UTIL_PATH_TXN ? bp.group_len + 1
                                            : head.q.path.len;
    if (api_authorize(cn, req, scope, cluster ? NULL : head.q.path.ptr,
                      len) != 0)
      return -1;
  }
  if (conn_continue(c, req) < 0) return -1;
  j = job_new();
  if (j == NULL) {
    conn_fatal(c, 503, "out of memory");
    return -1;
  }
  cn->job = j;
  api_build_job(req, &head, (uint64_t)cfg->max_read_bytes, j, &cn->has_cursor,
                &cn->cursor);
  if (j->op == JOB_STATUS && j->status == 0 && !cfg->public_status) {
    j->status = 404; /* as any reserved path: the admin listener has it */
    j->reason =
        "no such path here: the status is on the admin listener "
        "(--admin-listen), or here with --public-status 1";
  }
  j->catchup_max = (uint64_t)cfg->max_catchup_bytes;
  return 0;
}

/* conn.c's on_request hook: the whole request is in; finish the job and
** send it off. */
static void api_on_request(struct conn *c) {
  struct api_conn *cn = (struct api_conn *)(void *)c;
  struct job *j = cn->job;
  size_t n_msgs = 0;
  cn->job = NULL;
  cn->append_bytes = 0;
  if (j->status != 0) {
    api_error(cn, j->status, j->reason);
    job_free(j);
    conn_done(&cn->c);
    return;
  }
  if (j->op == JOB_STATUS) {
    job_free(j);
    api_status_start(cn);
    return;
  }
  if (j->op == JOB_BACKUP) {
    api_backup_run(cn, j);
    return;
  }
  if (j->op == JOB_SNAPSHOT) { /* to the group's owner */
    api_send_job(cn, j);
    return;
  }
  if (j->op == JOB_SHED) {
    job_free(j);
    api_shed(cn);
    conn_done(&cn->c);
    return;
  }
  if (j->op == JOB_BUCKETS || j->op == JOB_BUCKET_DELETE) {
    api_bucket_start(cn, j); /* a DELETE's check first */
    return;
  }
  if (j->op == 0) { /* OPTIONS: CORS preflight */
    job_free(j);
    api_begin(cn, 204);
    buf_append(conn_out(&cn->c), api_preflight_headers,
               sizeof(api_preflight_headers) - 1);
    buf_append_str(conn_out(&cn->c), "\r\n");
    conn_done(&cn->c);
    return;
  }
  if (j->op == JOB_MULTI || j->op == JOB_ATTRS) {
    char why[160];
    int status = api_finish_sub(cn, j, why, sizeof(why));
    if (status != 0) {
      job_free(j);
      api_error(cn, status, why);
      conn_done(&cn->c);
      return;
    }
    if (j->op == JOB_MULTI) cn->t0_us = os_now_us();
  }
  if (j->op == JOB_APPEND) {
    if (cn->c.raw.len == 0 && !(j->cmd.flags & CMD_F_CLOSE)) {
      job_free(j);
      api_error(cn, 400, "empty body (send Stream-Closed: true to close)");
      conn_done(&cn->c);
      return;
    }
    if (cn->c.raw.len > 0 && !(j->cmd.flags & CMD_F_CT)) {
      job_free(j);
      api_error(cn, 400, "Content-Type is required with a body");
      conn_done(&cn->c);
      return;
    }
  }
  if ((j->op == JOB_CREATE || j->op == JOB_APPEND) && cn->c.raw.len > 0) {
    if (j->cmd.flags & CMD_F_JSON) {
      int rc = json_flatten(cn->c.raw.ptr, cn->c.raw.len, &j->body, &n_msgs);
      if (rc != URSULA_OK) {
        job_free(j);
        if (rc == URSULA_ENOMEM)
          api_error(cn, 503, "out of memory");
        else
          api_error(cn, 400, "body is not valid JSON");
        conn_done(&cn->c);
        return;
      }
      if (n_msgs == 0 && j->op == JOB_APPEND) {
        job_free(j);
        api_error(cn, 400, "an empty JSON array appends nothing");
        conn_done(&cn->c);
        return;
      }
      j->cmd.n_msgs = n_msgs;
      cn->append_bytes = cn->c.raw.len;
    } else {
      /* hand the body over without copying */
      cn->append_bytes = cn->c.raw.len;
      j->body = cn->c.raw;
      memset(&cn->c.raw, 0, sizeof(cn->c.raw));
    }
  }
  if (j->op == JOB_READ && j->live != JOB_LIVE_NONE) {
    cn->lw.watch = live_get(cn->c.core, j->path, j->path_len);
    if (cn->lw.watch == NULL) {
      job_free(j);
      conn_fatal(&cn->c, 503, "out of memory");
      return;
    }
    cn->lw.watch->pending++;
    cn->live = j->live;
    cn->c.core->metrics.live_started[j->live == JOB_LIVE_SSE
                                         ? METRICS_LIVE_SSE
                                         : METRICS_LIVE_POLL]++;
  }
  if (j->op == JOB_SNAP_PUT) { /* the body as is, and its digest */
    j->body = cn->c.raw;
    memset(&cn->c.raw, 0, sizeof(cn->c.raw));
    api_snap_digest(j->content_type, &j->body, j->snap_digest);
  }
  if (j->op == JOB_APPEND) cn->t0_us = os_now_us();
  api_send_job(cn, j);
}

/* conn.c's on_abort hook: the request being read is dropped. */
static void api_on_abort(struct conn *c) {
  struct api_conn *cn = (struct api_conn *)(void *)c;
  job_free(cn->job);
  cn->job = NULL;
  job_free(cn->bucket_delete);
  cn->bucket_delete = NULL;
}

/* conn.c's on_end hook: the connection ends; stop waiting for stream
** changes, and drop the request being read.  A job in flight is freed
** when its reply finds no connection. */
static void api_on_end(struct conn *c) {
  struct api_conn *cn = (struct api_conn *)(void *)c;
  live_unwait(&cn->lw);
  if (cn->lw.watch != NULL) {
    if (cn->job != NULL && c->state != CONN_BODY)
      cn->lw.watch->pending--; /* its reply will be dropped */
    live_gc(&c->core->live, cn->lw.watch);
    cn->lw.watch = NULL;
  }
  if (cn->job != NULL && c->state == CONN_BODY) {
    job_free(cn->job);
    cn->job = NULL;
  }
  job_free(cn->more); /* a catch-up between parts */
  cn->more = NULL;
  cn->gather = NULL; /* its reply, if any, finds no connection: freed */
  job_free(cn->bucket_delete);
  cn->bucket_delete = NULL;
}

static const struct conn_ops api_conn_ops = {sizeof(struct api_conn),
                                             api_on_head,
                                             api_on_request,
                                             api_on_abort,
                                             api_on_error,
                                             api_on_live_timer,
                                             api_on_drain,
                                             api_on_end,
                                             api_on_sent};

URSULA_PRIVATE void api_core_init(struct core *c, int max_conns) {
  conn_table_init(&c->conns, max_conns, &api_conn_ops);
  live_table_init(&c->live, api_on_wake);
}

URSULA_PRIVATE void api_core_free(struct core *c) {
  conn_table_free(&c->conns);
  live_table_free(&c->live);
}

#undef API_CURSOR_EPOCH_MS
#undef API_CURSOR_INTERVAL_MS
#undef API_RESERVED_PREFIX
#undef API_CLUSTER_PATH
#undef API_CLUSTER_ALLOW
#undef API_BACKUP_PATH
#undef API_BACKUP_ALLOW
#undef API_BACKUP_RANGE_MAX
#undef API_CHALLENGE
