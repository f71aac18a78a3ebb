/*
** api.c -- HTTP connections and the Durable Streams request rules.
**
** A connection lives on the core that accepted it, from accept to close.
** Its life:
**
**   API_HEAD   reading a request head (header timeout while partial,
**              idle timeout while empty)
**   API_BODY   reading a Content-Length or chunked body
**   API_BUSY   a job is at the stream's owner; input is not read, so
**              pipelined requests wait their turn and replies stay in order
**   API_POLL   a long-poll waiting for data (long-poll timeout)
**   API_SSE    an SSE response in progress (keep-alive comments when idle)
**   API_LINGER the last response is written and our side shut down; what
**              the client still sends is read and dropped until it closes
**              or API_LINGER_MS pass.  Closing at once with unread input
**              would make the kernel send a reset, and the client could
**              lose the response (say, a 431 to a request it is still
**              sending).
**
** Everything that depends on a stream's state is decided by its group's
** owner (group.c); this file checks what can be checked from the request
** alone (syntax of headers, offsets and bodies, JSON validity) and turns
** results into responses.
**
** LIVE READERS.  A long-poll or SSE reader that reached the tail waits in
** this core's watch table (struct api_watch, one per stream path with
** readers here).  The owner wakes the core with one struct notify per
** append, carrying the new bytes, and every waiter whose position is where
** the new bytes start is served from that one message.  Waiters anywhere
** else re-read.  A core that gets a wake-up for a path it no longer
** watches tells the owner to stop (lazy unwatch), so the owner's list of
** interested cores is a superset that heals itself.
*/
#include "internal.h"

enum { API_HEAD = 0, API_BODY, API_BUSY, API_POLL, API_SSE, API_LINGER };

#define API_READ_CHUNK 65536
#define API_LINGER_MS 2000
#define API_MAX_OUT (64u * 1024 * 1024)      /* slow SSE reader: drop it */
#define API_CURSOR_EPOCH_MS 1728432000000ULL /* 2024-10-09T00:00:00Z */
#define API_CURSOR_INTERVAL_MS 20000

struct api_watch {
  struct api_watch *hnext;
  struct api_conn *waiters; /* doubly linked through wnext / wprev */
  int pending;              /* live reads in flight for this path */
  int owner;                /* core owning the stream's group */
  uint64_t hash;
  size_t path_len;
  char path[1];
};

struct api_conn {
  struct core *core;
  int fd;
  uint64_t id;
  int state;
  int keep_alive;
  int closing;    /* close once out is written */
  int want_write; /* LOOP_WRITE registered */
  int reading;    /* LOOP_READ registered */
  struct buf in;
  struct buf out;
  size_t out_off;
  /* a large response body, sent from the job's own buffer (no copy): it
  ** goes on the wire after out[0..body_at) and before the rest of out */
  struct buf body;
  size_t body_off, body_at;
  struct loop_timer timer;
  /* the request being read */
  struct job *job;
  int method;
  uint64_t body_left;
  int chunked;
  struct http_chunked chunk;
  struct buf raw; /* request body as received */
  int is_json;    /* request Content-Type is application/json */
  int close_flag; /* Stream-Closed: true */
  int has_ct;
  char host[256];
  char etag_req[160]; /* If-None-Match */
  int has_cursor;
  uint64_t cursor;
  /* live reading */
  struct api_watch *watch;
  struct api_conn *wnext, *wprev;
  int waiting;          /* in watch->waiters */
  int live;             /* JOB_LIVE_POLL or JOB_LIVE_SSE */
  uint64_t live_offset; /* where this reader is */
  int live_json, live_b64;
  char live_type[256]; /* the stream's content type */
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
    "Producer-Received-Seq, ETag, Content-Type, Location\r\n";

static const char api_preflight_headers[] =
    "Access-Control-Allow-Methods: GET, POST, PUT, DELETE, HEAD, OPTIONS\r\n"
    "Access-Control-Allow-Headers: content-type, authorization, "
    "if-none-match, Stream-Seq, Stream-TTL, Stream-Expires-At, "
    "Stream-Closed, Producer-Id, Producer-Epoch, Producer-Seq, "
    "Stream-Forked-From, Stream-Fork-Offset, Stream-Fork-Sub-Offset\r\n"
    "Access-Control-Max-Age: 86400\r\n";

/* Start a response: status line and the headers every response has. */
static void api_begin(struct api_conn *cn, int status) {
  buf_printf(&cn->out, "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
  buf_append(&cn->out, api_common_headers, sizeof(api_common_headers) - 1);
  if (!cn->keep_alive) buf_append_str(&cn->out, "Connection: close\r\n");
}

static void api_offset_header(struct api_conn *cn, const char *name,
                              uint64_t off) {
  buf_printf(&cn->out, "%s: %016llu_%016llu\r\n", name, 0ULL,
             (unsigned long long)off);
}

/* End the head and add a body of len bytes (Content-Length). */
static void api_end(struct api_conn *cn, const void *body, size_t len) {
  buf_printf(&cn->out, "Content-Length: %lu\r\n\r\n", (unsigned long)len);
  if (len && cn->method != API_HEAD_M) buf_append(&cn->out, body, len);
}

/* api_end() for a read's data, taken from *data (emptied) rather than
** copied when it is large: a JSON stream's data "v1,v2," is answered as
** "[v1,v2]" (the last comma becomes the bracket, in place). */
static void api_end_data(struct api_conn *cn, int json, struct buf *data) {
  size_t len = json ? (data->len ? data->len + 1 : 2) : data->len;
  buf_printf(&cn->out, "Content-Length: %lu\r\n\r\n", (unsigned long)len);
  if (cn->method == API_HEAD_M) return;
  if (json) {
    buf_append(&cn->out, data->len ? "[" : "[]", data->len ? 1 : 2);
    if (data->len) data->ptr[data->len - 1] = ']';
  }
  if (data->len < 16384 || cn->body.len > 0) { /* small, or one is queued */
    buf_append(&cn->out, data->ptr, data->len);
    return;
  }
  cn->body = *data;
  cn->body_off = 0;
  cn->body_at = cn->out.len;
  memset(data, 0, sizeof(*data));
}

/* ------------------------------------------------------------ I/O */

static void api_close(struct api_conn *cn);
static void api_linger(struct api_conn *cn);
static void api_process(struct api_conn *cn);
static void api_arm_idle(struct api_conn *cn);

static void api_set_events(struct api_conn *cn, int reading, int writing) {
  if (reading == cn->reading && writing == cn->want_write) return;
  cn->reading = reading;
  cn->want_write = writing;
  loop_mod(cn->core->loop, cn->fd,
           (unsigned)((reading ? LOOP_READ : 0) | (writing ? LOOP_WRITE : 0)));
}

/* Send iov[0..n) (MSG_NOSIGNAL where there is one). */
static ssize_t api_sendv(int fd, struct iovec *iov, int n) {
  struct msghdr m;
  memset(&m, 0, sizeof(m));
  m.msg_iov = iov;
  m.msg_iovlen = (size_t)n;
#if defined(MSG_NOSIGNAL)
  return sendmsg(fd, &m, MSG_NOSIGNAL);
#else
  return sendmsg(fd, &m, 0);
#endif
}

/* Write what is pending: out, with the body (if any) at its place.
** Returns -1 if the connection was closed. */
static int api_flush(struct api_conn *cn) {
  for (;;) {
    struct iovec iov[3];
    size_t head_end = cn->body.len ? cn->body_at : cn->out.len, k;
    int n = 0;
    ssize_t sent;
    if (cn->out_off < head_end) {
      iov[n].iov_base = cn->out.ptr + cn->out_off;
      iov[n++].iov_len = head_end - cn->out_off;
    }
    if (cn->body.len) {
      iov[n].iov_base = cn->body.ptr + cn->body_off;
      iov[n++].iov_len = cn->body.len - cn->body_off;
      if (cn->out.len > head_end) {
        iov[n].iov_base = cn->out.ptr + head_end;
        iov[n++].iov_len = cn->out.len - head_end;
      }
    }
    if (n == 0) break; /* all written */
    sent = api_sendv(cn->fd, iov, n);
    if (sent > 0) {
      size_t left = (size_t)sent;
      k = head_end - cn->out_off < left ? head_end - cn->out_off : left;
      cn->out_off += k; /* the part of out before the body */
      left -= k;
      if (cn->body.len && left > 0) {
        k = cn->body.len - cn->body_off < left ? cn->body.len - cn->body_off
                                               : left;
        cn->body_off += k;
        left -= k;
      }
      if (cn->body.len && cn->body_off == cn->body.len) {
        buf_free(&cn->body); /* done with it: out goes on alone */
        cn->body_off = cn->body_at = 0;
      }
      cn->out_off += left; /* out after the body */
    } else if (sent < 0 && errno == EINTR) {
      continue;
    } else if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (cn->out.len - cn->out_off + cn->body.len - cn->body_off >
          API_MAX_OUT) {
        api_close(cn); /* a reader this slow would hold memory forever */
        return -1;
      }
      api_set_events(cn, cn->reading, 1);
      return 0;
    } else {
      api_close(cn);
      return -1;
    }
  }
  cn->out.len = cn->out_off = 0;
  if (cn->closing) {
    api_linger(cn);
    return -1;
  }
  api_set_events(cn, cn->reading, 0);
  return 0;
}

/* A response was completed: flush it and go on with the next request. */
static void api_done(struct api_conn *cn) {
  if (!cn->keep_alive) cn->closing = 1;
  cn->state = API_HEAD;
  if (api_flush(cn) < 0) return;
  api_set_events(cn, 1, cn->want_write);
  api_arm_idle(cn);
  if (cn->in.len > 0) api_process(cn);
}

static void api_error(struct api_conn *cn, int status, const char *reason) {
  api_begin(cn, status);
  buf_append_str(&cn->out, "Content-Type: text/plain; charset=utf-8\r\n");
  if (status == 405)
    buf_append_str(&cn->out,
                   "Allow: GET, HEAD, PUT, POST, DELETE, OPTIONS\r\n");
  buf_printf(&cn->out, "Content-Length: %lu\r\n\r\n",
             (unsigned long)strlen(reason) + 1);
  if (cn->method != API_HEAD_M) buf_printf(&cn->out, "%s\n", reason);
}

/* Answer an error that ends the connection (bad framing, limits). */
static void api_fatal(struct api_conn *cn, int status, const char *reason) {
  cn->keep_alive = 0;
  api_error(cn, status, reason);
  cn->closing = 1;
  cn->state = API_HEAD;
  api_flush(cn);
}

/* ------------------------------------------------------------ watches */

static struct api_watch *api_watch_find(struct core *c, const char *path,
                                        size_t len, uint64_t h) {
  struct api_watch *w;
  if (c->watch_cap == 0) return NULL;
  for (w = c->watch[h & (c->watch_cap - 1)]; w != NULL; w = w->hnext) {
    if (w->hash == h && w->path_len == len && memcmp(w->path, path, len) == 0)
      return w;
  }
  return NULL;
}

static struct api_watch *api_watch_get(struct core *c, const char *path,
                                       size_t len) {
  uint64_t h = util_hash64(path, len);
  struct api_watch *w = api_watch_find(c, path, len, h);
  if (w != NULL) return w;
  if (c->watch_n + 1 > c->watch_cap / 2) {
    size_t cap = c->watch_cap ? c->watch_cap * 2 : 64, i;
    struct api_watch **t = (struct api_watch **)URSULA_MALLOC(cap * sizeof(*t));
    if (t == NULL) return NULL;
    for (i = 0; i < cap; i++) t[i] = NULL;
    for (i = 0; i < c->watch_cap; i++) {
      struct api_watch *x, *next;
      for (x = c->watch[i]; x != NULL; x = next) {
        next = x->hnext;
        x->hnext = t[x->hash & (cap - 1)];
        t[x->hash & (cap - 1)] = x;
      }
    }
    URSULA_FREE(c->watch);
    c->watch = t;
    c->watch_cap = cap;
  }
  w = (struct api_watch *)URSULA_MALLOC(sizeof(*w) + len);
  if (w == NULL) return NULL;
  memset(w, 0, sizeof(*w));
  w->hash = h;
  w->path_len = len;
  memcpy(w->path, path, len);
  w->path[len] = '\0';
  w->owner = server_owner_of(c->srv, server_group_of(c->srv, path, len));
  w->hnext = c->watch[h & (c->watch_cap - 1)];
  c->watch[h & (c->watch_cap - 1)] = w;
  c->watch_n++;
  return w;
}

/* Free w if nothing uses it any more. */
static void api_watch_gc(struct core *c, struct api_watch *w) {
  struct api_watch **pp;
  if (w->waiters != NULL || w->pending > 0) return;
  pp = &c->watch[w->hash & (c->watch_cap - 1)];
  while (*pp != w) pp = &(*pp)->hnext;
  *pp = w->hnext;
  c->watch_n--;
  URSULA_FREE(w);
}

static void api_unwait(struct api_conn *cn) {
  if (!cn->waiting) return;
  if (cn->wprev)
    cn->wprev->wnext = cn->wnext;
  else
    cn->watch->waiters = cn->wnext;
  if (cn->wnext) cn->wnext->wprev = cn->wprev;
  cn->wnext = cn->wprev = NULL;
  cn->waiting = 0;
}

static void api_wait(struct api_conn *cn) {
  struct api_watch *w = cn->watch;
  cn->wprev = NULL;
  cn->wnext = w->waiters;
  if (w->waiters) w->waiters->wprev = cn;
  w->waiters = cn;
  cn->waiting = 1;
}

/* Leave the watch table (the connection ends or stops being live). */
static void api_unwatch_conn(struct api_conn *cn) {
  if (cn->watch == NULL) return;
  api_unwait(cn);
  api_watch_gc(cn->core, cn->watch);
  cn->watch = NULL;
}

struct api_unwatch_msg {
  struct loop_msg msg;
  int from;
  size_t len;
  char path[1];
};

static void api_on_unwatch(struct loop *l, struct loop_msg *m) {
  struct api_unwatch_msg *u = (struct api_unwatch_msg *)(void *)m;
  group_unwatch((struct core *)loop_get_user(l), u->from, u->path, u->len);
  URSULA_FREE(u);
}

static void api_send_unwatch(struct core *c, const char *path, size_t len) {
  int owner = server_owner_of(c->srv, server_group_of(c->srv, path, len));
  struct api_unwatch_msg *u =
      (struct api_unwatch_msg *)URSULA_MALLOC(sizeof(*u) + len);
  if (u == NULL) return;
  u->msg.on_msg = api_on_unwatch;
  u->msg.on_drop = NULL;
  u->from = c->id;
  u->len = len;
  memcpy(u->path, path, len);
  u->path[len] = '\0';
  server_send(c, owner, &u->msg);
}

/* ------------------------------------------------------------ timers */

static void api_on_timer(struct loop *l, void *arg);

static void api_arm(struct api_conn *cn, int ms) {
  loop_timer_set(cn->core->loop, &cn->timer,
                 loop_now_ms(cn->core->loop) + (uint64_t)ms, api_on_timer, cn);
}

static void api_arm_idle(struct api_conn *cn) {
  const struct ursula_config *cfg = &cn->core->srv->cfg;
  api_arm(cn, cn->in.len > 0 ? cfg->header_timeout_ms : cfg->idle_timeout_ms);
}

/* ------------------------------------------------------------ cursor */

/* Stream-Cursor: the current 20 s interval since the cursor epoch; if the
** client already holds that interval or a later one, a value strictly
** greater by a random 1..180 intervals, so cached responses never loop. */
static uint64_t api_cursor(struct api_conn *cn) {
  uint64_t now = os_wall_ms(), cur = 0;
  if (now > API_CURSOR_EPOCH_MS)
    cur = (now - API_CURSOR_EPOCH_MS) / API_CURSOR_INTERVAL_MS;
  if (cn->has_cursor && cn->cursor >= cur) {
    uint64_t r = util_hash64(&now, sizeof(now)) ^ cn->id;
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

static void api_read_headers(struct api_conn *cn, const struct job *j,
                             int live) {
  buf_printf(&cn->out, "Content-Type: %s\r\n", j->res_type);
  api_offset_header(cn, "Stream-Next-Offset", j->tail);
  if (j->up_to_date) buf_append_str(&cn->out, "Stream-Up-To-Date: true\r\n");
  if (j->closed) buf_append_str(&cn->out, "Stream-Closed: true\r\n");
  if (live && !j->closed)
    buf_printf(&cn->out, "Stream-Cursor: %llu\r\n",
               (unsigned long long)api_cursor(cn));
}

static void api_catchup_reply(struct api_conn *cn, struct job *j) {
  char etag[160];
  struct buf body;
  memset(&body, 0, sizeof(body));
  if (j->offset_now) {
    api_begin(cn, 200);
    api_read_headers(cn, j, 0);
    buf_append_str(&cn->out, "Cache-Control: no-store\r\n");
    api_body_bytes(&body, j->json, "", 0);
    api_end(cn, body.ptr, body.len);
    buf_free(&body);
    return;
  }
  snprintf(etag, sizeof(etag), "\"%llx:%llu:%llu%s\"",
           (unsigned long long)j->incarnation, (unsigned long long)j->start,
           (unsigned long long)j->tail, j->closed ? ":c" : "");
  if (cn->etag_req[0] && strcmp(cn->etag_req, etag) == 0) {
    api_begin(cn, 304);
    buf_printf(&cn->out, "ETag: %s\r\n", etag);
    api_offset_header(cn, "Stream-Next-Offset", j->tail);
    buf_append_str(&cn->out, "\r\n");
    return;
  }
  api_begin(cn, 200);
  api_read_headers(cn, j, 0);
  buf_printf(&cn->out, "ETag: %s\r\n", etag);
  buf_append_str(&cn->out,
                 "Cache-Control: public, max-age=60, "
                 "stale-while-revalidate=300\r\n");
  api_end_data(cn, j->json, &j->data);
}

/* Long-poll answers: data (200), or nothing new (204). */
static void api_poll_reply(struct api_conn *cn, struct job *j) {
  if (j->data.len == 0) {
    api_begin(cn, 204);
    api_read_headers(cn, j, 1);
    buf_append_str(&cn->out, "Cache-Control: no-cache\r\n\r\n");
    return;
  }
  api_begin(cn, 200);
  api_read_headers(cn, j, 1);
  buf_append_str(&cn->out, "Cache-Control: no-cache\r\n");
  api_end_data(cn, j->json, &j->data);
}

/* SSE body bytes go out as HTTP chunks. */
static void api_sse_chunk(struct api_conn *cn, const struct buf *ev) {
  if (ev->len == 0) return;
  buf_printf(&cn->out, "%lx\r\n", (unsigned long)ev->len);
  buf_append(&cn->out, ev->ptr, ev->len);
  buf_append(&cn->out, "\r\n", 2);
}

/* One "event: data" with payload p (sse.c frames it): a JSON stream's
** messages as one array, a binary stream's bytes as base64. */
static void api_sse_data(struct api_conn *cn, struct buf *ev, const char *p,
                         size_t len) {
  struct buf tmp;
  memset(&tmp, 0, sizeof(tmp));
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

/* Send data [.., tail) and its control event on an SSE response; end the
** response if the stream is closed at tail. */
static void api_sse_send(struct api_conn *cn, const char *p, size_t len,
                         uint64_t tail, int up_to_date, int closed) {
  struct buf ev;
  memset(&ev, 0, sizeof(ev));
  if (len > 0) api_sse_data(cn, &ev, p, len);
  sse_control(&ev, tail, closed ? 0 : api_cursor(cn), up_to_date, closed);
  api_sse_chunk(cn, &ev);
  buf_free(&ev);
  cn->live_offset = tail;
  if (closed) {
    buf_append_str(&cn->out, "0\r\n\r\n");
    cn->closing = 1;
  }
}

static void api_dispatch_read(struct api_conn *cn, uint64_t offset, int now);

static void api_sse_reply(struct api_conn *cn, struct job *j, int first) {
  if (first) {
    /* An SSE response ends by closing the connection (the stream closed
    ** or went away, or the server stops), so say so up front: a client
    ** must not pool it for its next request. */
    cn->keep_alive = 0;
    api_begin(cn, 200);
    buf_append_str(&cn->out,
                   "Content-Type: text/event-stream\r\n"
                   "Cache-Control: no-cache\r\n"
                   "Transfer-Encoding: chunked\r\n");
    if (cn->live_b64)
      buf_append_str(&cn->out, "Stream-SSE-Data-Encoding: base64\r\n");
    buf_append_str(&cn->out, "\r\n");
  }
  api_sse_send(cn, j->data.ptr, j->data.len, j->tail, j->up_to_date, j->closed);
}

/* ------------------------------------------------------------ job replies */

static void api_reply_change(struct api_conn *cn, struct job *j) {
  const struct stream_result *r = &j->res;
  if (j->status >= 400) {
    api_begin(cn, j->status);
    if (j->status == 409 && r->closed) {
      buf_append_str(&cn->out, "Stream-Closed: true\r\n");
      api_offset_header(cn, "Stream-Next-Offset", r->tail);
    }
    if (r->seq_gap)
      buf_printf(
          &cn->out,
          "Producer-Expected-Seq: %llu\r\nProducer-Received-Seq: %llu\r\n",
          (unsigned long long)r->expected_seq,
          (unsigned long long)r->received_seq);
    if (r->fenced)
      buf_printf(&cn->out, "Producer-Epoch: %llu\r\n",
                 (unsigned long long)r->current_epoch);
    buf_append_str(&cn->out, "Content-Type: text/plain; charset=utf-8\r\n");
    buf_printf(&cn->out, "Content-Length: %lu\r\n\r\n%s\n",
               (unsigned long)strlen(j->reason ? j->reason : "") + 1,
               j->reason ? j->reason : "");
    return;
  }
  api_begin(cn, j->status);
  if (j->op == JOB_CREATE) {
    buf_printf(&cn->out, "Content-Type: %s\r\n", j->res_type);
    if (j->status == 201)
      buf_printf(&cn->out, "Location: http://%s%.*s\r\n", cn->host,
                 (int)j->path_len, j->path);
  }
  if (j->op != JOB_DELETE) api_offset_header(cn, "Stream-Next-Offset", r->tail);
  if (r->closed && j->op != JOB_DELETE)
    buf_append_str(&cn->out, "Stream-Closed: true\r\n");
  if (r->producer_echo)
    buf_printf(&cn->out, "Producer-Epoch: %llu\r\nProducer-Seq: %llu\r\n",
               (unsigned long long)r->producer_epoch,
               (unsigned long long)r->producer_seq);
  if (j->status == 204)
    buf_append_str(&cn->out, "\r\n");
  else
    api_end(cn, "", 0);
}

static void api_reply_head(struct api_conn *cn, struct job *j) {
  api_begin(cn, 200);
  buf_printf(&cn->out, "Content-Type: %s\r\n", j->res_type);
  api_offset_header(cn, "Stream-Next-Offset", j->tail);
  if (j->has_ttl)
    buf_printf(&cn->out, "Stream-TTL: %llu\r\n", (unsigned long long)j->ttl_s);
  if (j->res_expires[0])
    buf_printf(&cn->out, "Stream-Expires-At: %s\r\n", j->res_expires);
  if (j->closed) buf_append_str(&cn->out, "Stream-Closed: true\r\n");
  buf_append_str(&cn->out, "Cache-Control: no-store\r\n\r\n");
}

static struct api_conn *api_conn_by_id(struct core *c, uint64_t id) {
  uint32_t slot = (uint32_t)(id & 0xffffffffu);
  struct api_conn *cn;
  if (slot >= c->n_slots) return NULL;
  cn = c->conns[slot];
  return (cn != NULL && cn->id == id) ? cn : NULL;
}

/* A read came back for a live connection. */
static void api_live_reply(struct api_conn *cn, struct job *j) {
  int first = cn->state == API_BUSY;
  if (cn->watch) {
    cn->watch->pending--;
  }
  if (j->status != 200) {
    api_unwatch_conn(cn);
    if (first || cn->state == API_POLL) {
      api_error(cn, j->status, j->reason ? j->reason : "error");
      api_done(cn);
    } else { /* SSE already answered 200: end it */
      buf_append_str(&cn->out, "0\r\n\r\n");
      cn->closing = 1;
      api_flush(cn);
    }
    return;
  }
  cn->live_json = j->json;
  if (first) {
    char norm[64];
    snprintf(cn->live_type, sizeof(cn->live_type), "%s", j->res_type);
    stream_norm_type(util_str(j->res_type), norm, sizeof(norm));
    cn->live_b64 =
        strncmp(norm, "text/", 5) != 0 && strcmp(norm, "application/json") != 0;
  }
  if (j->live == JOB_LIVE_POLL) {
    if (j->data.len > 0 || j->closed || !j->registered) {
      api_poll_reply(cn, j);
      api_unwatch_conn(cn);
      api_done(cn);
      return;
    }
    cn->state = API_POLL;
    cn->live_offset = j->tail;
    api_wait(cn);
    api_arm(cn, cn->core->srv->cfg.long_poll_timeout_ms);
    api_set_events(cn, 1, cn->want_write);
    return;
  }
  /* SSE */
  api_sse_reply(cn, j, first);
  cn->state = API_SSE;
  if (cn->closing) {
    api_unwatch_conn(cn);
    api_flush(cn);
    return;
  }
  if (!j->up_to_date) {
    api_dispatch_read(cn, j->tail, 0); /* catching up: next chunk */
  } else if (j->registered) {
    api_wait(cn);
    api_arm(cn, cn->core->srv->cfg.sse_keepalive_ms);
  } else {
    api_dispatch_read(cn, j->tail, 0);
  }
  api_set_events(cn, 1, cn->want_write);
  api_flush(cn);
}

URSULA_PRIVATE void api_on_job_done(struct loop *l, struct loop_msg *m) {
  struct job *j = (struct job *)(void *)m;
  struct core *c = (struct core *)loop_get_user(l);
  struct api_conn *cn = api_conn_by_id(c, j->conn_id);
  if (cn == NULL || cn->job != j) {
    job_free(j);
    return;
  }
  cn->job = NULL;
  if (cn->state == API_LINGER) { /* the connection is ending anyway */
    job_free(j);
    return;
  }
  if (j->op == JOB_READ && j->live != JOB_LIVE_NONE) {
    api_live_reply(cn, j);
    job_free(j);
    return;
  }
  if (j->status >= 400 && (j->op == JOB_READ || j->op == JOB_HEAD))
    api_error(cn, j->status, j->reason ? j->reason : "error");
  else if (j->op == JOB_READ)
    api_catchup_reply(cn, j);
  else if (j->op == JOB_HEAD)
    api_reply_head(cn, j);
  else
    api_reply_change(cn, j);
  job_free(j);
  api_done(cn);
}

/* Wake-up from a stream's owner: serve the waiters of that stream here. */
URSULA_PRIVATE void api_on_notify(struct loop *l, struct loop_msg *m) {
  struct notify *n = (struct notify *)(void *)m;
  struct core *c = (struct core *)loop_get_user(l);
  struct api_watch *w = api_watch_find(c, n->path, n->path_len,
                                       util_hash64(n->path, n->path_len));
  struct api_conn *cn, *next;
  if (w == NULL || (w->waiters == NULL && w->pending == 0)) {
    if (!n->deleted) api_send_unwatch(c, n->path, n->path_len);
    if (w != NULL) api_watch_gc(c, w);
    buf_free(&n->data);
    URSULA_FREE(n);
    return;
  }
  for (cn = w->waiters; cn != NULL; cn = next) {
    next = cn->wnext;
    if (n->deleted) {
      api_unwait(cn);
      cn->watch = NULL;
      if (cn->state == API_POLL) {
        api_error(cn, 404, "stream was deleted");
        api_done(cn);
      } else {
        buf_append_str(&cn->out, "0\r\n\r\n");
        cn->closing = 1;
        api_flush(cn);
      }
    } else if (cn->live_offset == n->prev_tail &&
               (n->data.len > 0 || n->closed)) {
      if (cn->state == API_POLL) {
        struct job j;
        memset(&j, 0, sizeof(j));
        j.json = cn->live_json;
        j.data = n->data;
        j.tail = n->tail;
        j.up_to_date = 1;
        j.closed = n->closed;
        memcpy(j.res_type, cn->live_type, sizeof(j.res_type));
        api_unwait(cn);
        cn->watch = NULL;
        api_poll_reply(cn, &j);
        api_done(cn);
      } else {
        api_sse_send(cn, n->data.ptr, n->data.len, n->tail, 1, n->closed);
        if (cn->closing) {
          api_unwait(cn);
          cn->watch = NULL;
        } else {
          api_arm(cn, c->srv->cfg.sse_keepalive_ms);
        }
        api_flush(cn);
      }
    } else if (cn->live_offset != n->tail) {
      /* behind or lost track: read again from where this reader is */
      api_unwait(cn);
      api_dispatch_read(cn, cn->live_offset, 0);
    }
  }
  api_watch_gc(c, w);
  buf_free(&n->data);
  URSULA_FREE(n);
}

static void api_on_timer(struct loop *l, void *arg) {
  struct api_conn *cn = (struct api_conn *)arg;
  (void)l;
  if (cn->state == API_POLL) {
    struct job j;
    memset(&j, 0, sizeof(j));
    j.tail = cn->live_offset;
    j.up_to_date = 1;
    api_unwatch_conn(cn);
    api_begin(cn, 204);
    api_offset_header(cn, "Stream-Next-Offset", j.tail);
    buf_append_str(&cn->out, "Stream-Up-To-Date: true\r\n");
    buf_printf(&cn->out, "Stream-Cursor: %llu\r\n",
               (unsigned long long)api_cursor(cn));
    buf_append_str(&cn->out, "Cache-Control: no-cache\r\n\r\n");
    api_done(cn);
  } else if (cn->state == API_SSE) {
    struct buf ev;
    memset(&ev, 0, sizeof(ev));
    sse_comment(&ev, "keep-alive");
    api_sse_chunk(cn, &ev);
    buf_free(&ev);
    api_arm(cn, cn->core->srv->cfg.sse_keepalive_ms);
    api_flush(cn);
  } else if (cn->state == API_HEAD || cn->state == API_BODY) {
    if (cn->in.len > 0 || cn->state == API_BODY)
      api_fatal(cn, 408, "request timed out");
    else
      api_close(cn);
  } else if (cn->state == API_LINGER) {
    api_close(cn);
  }
}

/* ------------------------------------------------------------ requests */

/* Send cn's job to the stream's owner. */
static void api_send_job(struct api_conn *cn, struct job *j) {
  cn->job = j;
  cn->state = API_BUSY;
  j->origin_core = cn->core->id;
  j->conn_id = cn->id;
  loop_timer_cancel(cn->core->loop, &cn->timer);
  api_set_events(cn, cn->state >= API_POLL, cn->want_write);
  group_dispatch(cn->core, j);
}

static void api_dispatch_read(struct api_conn *cn, uint64_t offset, int now) {
  struct job *j = job_new();
  if (j == NULL) {
    api_fatal(cn, 503, "out of memory");
    return;
  }
  memcpy(j->path, cn->watch->path, cn->watch->path_len);
  j->path_len = cn->watch->path_len;
  j->op = JOB_READ;
  j->offset = offset;
  j->offset_now = now;
  j->live = cn->live;
  j->max_bytes = (uint64_t)cn->core->srv->cfg.max_read_bytes;
  cn->watch->pending++;
  cn->job = j;
  j->origin_core = cn->core->id;
  j->conn_id = cn->id;
  if (cn->state == API_POLL) loop_timer_cancel(cn->core->loop, &cn->timer);
  group_dispatch(cn->core, j);
}

/* Split "path?query" and find the query parameters we know. */
struct api_query {
  struct str path;
  struct str offset;
  int n_offset;
  struct str live;
  int has_live;
  struct str cursor;
  int has_cursor;
};

static void api_parse_target(struct str t, struct api_query *q) {
  size_t i = 0, start;
  memset(q, 0, sizeof(*q));
  while (i < t.len && t.ptr[i] != '?') i++;
  q->path.ptr = t.ptr;
  q->path.len = i;
  while (i < t.len) {
    struct str name, value;
    size_t eq = 0;
    start = ++i;
    while (i < t.len && t.ptr[i] != '&') {
      if (t.ptr[i] == '=' && eq == 0) eq = i;
      i++;
    }
    name.ptr = t.ptr + start;
    name.len = (eq ? eq : i) - start;
    value.ptr = eq ? t.ptr + eq + 1 : t.ptr + i;
    value.len = eq ? i - eq - 1 : 0;
    if (util_str_eq(name, "offset")) {
      q->offset = value;
      q->n_offset++;
    } else if (util_str_eq(name, "live")) {
      q->live = value;
      q->has_live = 1;
    } else if (util_str_eq(name, "cursor")) {
      q->cursor = value;
      q->has_cursor = 1;
    }
  }
}

/* Parse "%016llu_%016llu"-style offsets (digits '_' digits). */
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
  if (util_parse_u64(hi, UINT64_MAX, &h) != 0) return -1;
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
static const char *api_build_put(struct api_conn *cn,
                                 const struct http_request *req,
                                 struct job *j) {
  const struct http_header *h;
  const struct http_header *ttl = http_find_header(req, "Stream-TTL");
  const struct http_header *exp = http_find_header(req, "Stream-Expires-At");
  const struct http_header *ff = http_find_header(req, "Stream-Forked-From");
  const struct http_header *fo = http_find_header(req, "Stream-Fork-Offset");
  const struct http_header *fs =
      http_find_header(req, "Stream-Fork-Sub-Offset");
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
  (void)cn;
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
  if (ct && api_copy(j->content_type, sizeof(j->content_type), ct->value) == 0)
    j->cmd.flags |= CMD_F_CT;
  return NULL;
}

/* The request head is parsed: check it, and either answer at once or
** start reading the body. */
static void api_on_head(struct api_conn *cn, const struct http_request *req) {
  const struct http_header *h;
  struct api_query q;
  struct job *j;
  const char *bad = NULL;
  struct str m = req->method;
  cn->keep_alive = req->minor_version >= 1;
  h = http_find_header(req, "Connection");
  if (h && util_str_ieq(h->value, "close")) cn->keep_alive = 0;
  if (h && util_str_ieq(h->value, "keep-alive")) cn->keep_alive = 1;
  if (cn->core->draining) cn->keep_alive = 0;
  cn->method = util_str_eq(m, "GET")       ? API_GET
               : util_str_eq(m, "HEAD")    ? API_HEAD_M
               : util_str_eq(m, "PUT")     ? API_PUT
               : util_str_eq(m, "POST")    ? API_POST
               : util_str_eq(m, "DELETE")  ? API_DELETE
               : util_str_eq(m, "OPTIONS") ? API_OPTIONS
                                           : 0;
  h = http_find_header(req, "Host");
  if (h == NULL || api_copy(cn->host, sizeof(cn->host), h->value) != 0)
    snprintf(cn->host, sizeof(cn->host), "%.240s:%d",
             cn->core->srv->cfg.listen_host, cn->core->srv->port);
  cn->etag_req[0] = '\0';
  h = http_find_header(req, "If-None-Match");
  if (h) api_copy(cn->etag_req, sizeof(cn->etag_req), h->value);
  /* body framing first: even an error answer must know where it ends */
  cn->chunked = 0;
  cn->body_left = 0;
  cn->raw.len = 0;
  memset(&cn->chunk, 0, sizeof(cn->chunk));
  h = http_find_header(req, "Transfer-Encoding");
  if (h != NULL) {
    if (!util_str_ieq(h->value, "chunked")) {
      api_fatal(cn, 501, "only chunked transfer coding is supported");
      return;
    }
    cn->chunked = 1;
  } else if ((h = http_find_header(req, "Content-Length")) != NULL) {
    if (util_parse_u64(h->value, UINT64_MAX, &cn->body_left) != 0) {
      api_fatal(cn, 400, "bad Content-Length");
      return;
    }
    if (cn->body_left > (uint64_t)cn->core->srv->cfg.max_body_bytes) {
      api_fatal(cn, 413, "request body is too large");
      return;
    }
  }
  if (cn->method == 0) {
    api_fatal(cn, 405, "method not allowed");
    return;
  }
  api_parse_target(req->target, &q);
  if (q.path.len > URSULA_MAX_PATH_BYTES) {
    api_fatal(cn, 414, "path is too long");
    return;
  }
  if (!api_path_ok(q.path)) {
    api_fatal(cn, 400, "bad path");
    return;
  }
  if ((cn->chunked || cn->body_left > 0) &&
      (h = http_find_header(req, "Expect")) != NULL &&
      util_str_ieq(h->value, "100-continue")) {
    buf_append_str(&cn->out, "HTTP/1.1 100 Continue\r\n\r\n");
    if (api_flush(cn) < 0) return;
  }
  j = job_new();
  if (j == NULL) {
    api_fatal(cn, 503, "out of memory");
    return;
  }
  memcpy(j->path, q.path.ptr, q.path.len);
  j->path_len = q.path.len;
  cn->job = j;
  cn->is_json = 0;
  cn->close_flag = api_is_true(http_find_header(req, "Stream-Closed"));
  if (cn->close_flag) j->cmd.flags |= CMD_F_CLOSE;
  switch (cn->method) {
    case API_OPTIONS:
      j->op = 0;
      break;
    case API_PUT:
      j->op = JOB_CREATE;
      bad = api_build_put(cn, req, j);
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
      break;
    default: /* GET */
      j->op = JOB_READ;
      if (q.n_offset > 1) {
        bad = "offset is given more than once";
      } else if (q.n_offset == 1) {
        if (util_str_eq(q.offset, "-1"))
          j->offset = 0;
        else if (util_str_eq(q.offset, "now"))
          j->offset_now = 1;
        else if (api_parse_offset(q.offset, &j->offset) != 0)
          bad = "offset must be -1, now, or an offset from this server";
      }
      if (q.has_live) {
        if (util_str_eq(q.live, "long-poll"))
          j->live = JOB_LIVE_POLL;
        else if (util_str_eq(q.live, "sse"))
          j->live = JOB_LIVE_SSE;
        else
          bad = "live must be long-poll or sse";
        if (q.n_offset == 0) bad = "live reads need an offset";
      }
      cn->has_cursor = q.has_cursor &&
                       util_parse_u64(q.cursor, UINT64_MAX, &cn->cursor) == 0;
      j->max_bytes = (uint64_t)cn->core->srv->cfg.max_read_bytes;
      break;
  }
  if (cn->method == API_PUT || cn->method == API_POST) {
    char norm[64];
    stream_norm_type(util_str(j->content_type), norm, sizeof(norm));
    cn->is_json = strcmp(norm, "application/json") == 0;
    cn->has_ct = (j->cmd.flags & CMD_F_CT) != 0;
    if (cn->is_json) j->cmd.flags |= CMD_F_JSON;
  }
  if (bad != NULL) {
    /* answer after the body has been read, to keep the framing */
    j->status = 400;
    j->reason = bad;
  }
  cn->state = API_BODY;
}

/* The whole request is in: finish the job and send it off. */
static void api_on_request(struct api_conn *cn) {
  struct job *j = cn->job;
  size_t n_msgs = 0;
  cn->job = NULL;
  if (j->status != 0) {
    api_error(cn, j->status, j->reason);
    job_free(j);
    api_done(cn);
    return;
  }
  if (j->op == 0) { /* OPTIONS: CORS preflight */
    job_free(j);
    api_begin(cn, 204);
    buf_append(&cn->out, api_preflight_headers,
               sizeof(api_preflight_headers) - 1);
    buf_append_str(&cn->out, "\r\n");
    api_done(cn);
    return;
  }
  if (j->op == JOB_APPEND) {
    if (cn->raw.len == 0 && !cn->close_flag) {
      job_free(j);
      api_error(cn, 400, "empty body (send Stream-Closed: true to close)");
      api_done(cn);
      return;
    }
    if (cn->raw.len > 0 && !cn->has_ct) {
      job_free(j);
      api_error(cn, 400, "Content-Type is required with a body");
      api_done(cn);
      return;
    }
  }
  if ((j->op == JOB_CREATE || j->op == JOB_APPEND) && cn->raw.len > 0) {
    if (cn->is_json) {
      int rc = json_flatten(cn->raw.ptr, cn->raw.len, &j->body, &n_msgs);
      if (rc != URSULA_OK) {
        job_free(j);
        if (rc == URSULA_ENOMEM)
          api_error(cn, 503, "out of memory");
        else
          api_error(cn, 400, "body is not valid JSON");
        api_done(cn);
        return;
      }
      if (n_msgs == 0 && j->op == JOB_APPEND) {
        job_free(j);
        api_error(cn, 400, "an empty JSON array appends nothing");
        api_done(cn);
        return;
      }
      j->cmd.n_msgs = n_msgs;
    } else {
      /* hand the body over without copying */
      j->body = cn->raw;
      memset(&cn->raw, 0, sizeof(cn->raw));
    }
  }
  if (j->op == JOB_READ && j->live != JOB_LIVE_NONE) {
    cn->watch = api_watch_get(cn->core, j->path, j->path_len);
    if (cn->watch == NULL) {
      job_free(j);
      api_fatal(cn, 503, "out of memory");
      return;
    }
    cn->watch->pending++;
    cn->live = j->live;
  }
  api_send_job(cn, j);
}

/* Work through buffered input: heads, bodies, requests. */
static void api_process(struct api_conn *cn) {
  while (cn->fd >= 0 && !cn->closing) {
    if (cn->state == API_HEAD) {
      struct http_request req;
      int n;
      if (cn->in.len == 0) return;
      n = http_parse_request(cn->in.ptr, cn->in.len, &req);
      if (n == URSULA_EAGAIN) {
        if (cn->in.len > URSULA_MAX_HEADER_BYTES)
          api_fatal(cn, 431, "request header fields are too large");
        return;
      }
      if (n == HTTP_ETOOMANY || n > URSULA_MAX_HEADER_BYTES) {
        api_fatal(cn, 431, "request header fields are too large");
        return;
      }
      if (n < 0) {
        api_fatal(cn, 400, "malformed request");
        return;
      }
      api_on_head(cn, &req);
      buf_consume(&cn->in, (size_t)n);
      if (cn->state != API_BODY) return;
    }
    if (cn->state == API_BODY) {
      if (cn->chunked) {
        int done = 0;
        long used = http_chunked_feed(&cn->chunk, cn->in.ptr, cn->in.len,
                                      &cn->raw, &done);
        if (used < 0) {
          job_free(cn->job);
          cn->job = NULL;
          api_fatal(cn, 400, "malformed chunked body");
          return;
        }
        buf_consume(&cn->in, (size_t)used);
        if (cn->raw.len > (size_t)cn->core->srv->cfg.max_body_bytes) {
          job_free(cn->job);
          cn->job = NULL;
          api_fatal(cn, 413, "request body is too large");
          return;
        }
        if (!done) return;
      } else {
        size_t take =
            cn->in.len < cn->body_left ? cn->in.len : (size_t)cn->body_left;
        if (cn->raw.len == 0 && cn->body_left > 0 &&
            buf_reserve(&cn->raw, (size_t)cn->body_left) != URSULA_OK) {
          job_free(cn->job);
          cn->job = NULL;
          api_fatal(cn, 503, "out of memory");
          return;
        }
        if (take > 0) {
          buf_append(&cn->raw, cn->in.ptr, take);
          buf_consume(&cn->in, take);
          cn->body_left -= take;
        }
        if (cn->body_left > 0) return;
      }
      api_on_request(cn);
      if (cn->state != API_HEAD) return; /* waiting for a job */
      continue;
    }
    return;
  }
}

static void api_on_io(struct loop *l, int fd, unsigned events, void *arg) {
  struct api_conn *cn = (struct api_conn *)arg;
  (void)l, (void)fd;
  if (events & LOOP_WRITE) {
    if (api_flush(cn) < 0) return;
  }
  if ((events & (LOOP_READ | LOOP_ERROR)) && cn->state == API_LINGER) {
    char sink[4096];
    for (;;) {
      ssize_t n = recv(cn->fd, sink, sizeof(sink), 0);
      if (n > 0) continue;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      api_close(cn); /* the client is done too */
      return;
    }
  }
  if (events & (LOOP_READ | LOOP_ERROR)) {
    for (;;) {
      ssize_t n;
      if (buf_reserve(&cn->in, API_READ_CHUNK) != URSULA_OK) {
        api_close(cn);
        return;
      }
      n = recv(cn->fd, cn->in.ptr + cn->in.len, API_READ_CHUNK, 0);
      if (n > 0) {
        cn->in.len += (size_t)n;
        if ((size_t)n < API_READ_CHUNK) break;
        if (cn->state == API_HEAD && cn->in.len > URSULA_MAX_HEADER_BYTES * 2)
          break;
      } else if (n == 0) {
        api_close(cn); /* peer closed; a half-sent request is dropped */
        return;
      } else if (errno == EINTR) {
        continue;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      } else {
        api_close(cn);
        return;
      }
    }
    if (cn->state == API_POLL || cn->state == API_SSE) {
      cn->in.len = 0; /* a live reader has nothing more to say */
      return;
    }
    if (cn->state == API_HEAD) api_arm_idle(cn);
    api_process(cn);
  }
}

/* ------------------------------------------------------------ accept */

static int api_slot_alloc(struct core *c, struct api_conn *cn) {
  uint32_t slot;
  if (c->n_free > 0) {
    slot = c->free_slots[--c->n_free];
  } else {
    if (c->n_slots == c->cap_slots) {
      uint32_t cap = c->cap_slots ? c->cap_slots * 2 : 256;
      struct api_conn **t =
          (struct api_conn **)URSULA_REALLOC(c->conns, cap * sizeof(*t));
      uint32_t *f;
      if (t == NULL) return -1;
      c->conns = t;
      f = (uint32_t *)URSULA_REALLOC(c->free_slots, cap * sizeof(*f));
      if (f == NULL) return -1;
      c->free_slots = f;
      c->cap_slots = cap;
    }
    slot = c->n_slots++;
  }
  c->conns[slot] = cn;
  cn->id = ((uint64_t)++c->next_gen << 32) | slot;
  return 0;
}

URSULA_PRIVATE void api_on_accept(struct loop *l, int fd, unsigned events,
                                  void *arg) {
  struct core *c = (struct core *)arg;
  int i;
  (void)events;
  for (i = 0; i < 64; i++) {
    struct api_conn *cn;
    int one = 1;
    int cfd = accept(fd, NULL, NULL);
    if (cfd < 0) return; /* EAGAIN: another core took it, or none left */
    os_set_nonblock(cfd);
    os_set_cloexec(cfd);
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (c->n_conns >= c->max_conns || c->draining) {
      static const char busy[] =
          "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
          "Content-Type: text/plain\r\nContent-Length: 24\r\n\r\n"
          "too many connections, retry\n";
      ssize_t w = send(cfd, busy, sizeof(busy) - 1, 0);
      (void)w;
      close(cfd);
      continue;
    }
    cn = (struct api_conn *)URSULA_MALLOC(sizeof(*cn));
    if (cn == NULL) {
      close(cfd);
      continue;
    }
    memset(cn, 0, sizeof(*cn));
    cn->core = c;
    cn->fd = cfd;
    cn->reading = 1;
    if (api_slot_alloc(c, cn) != 0 ||
        loop_add(l, cfd, LOOP_READ, api_on_io, cn) != URSULA_OK) {
      close(cfd);
      URSULA_FREE(cn);
      continue;
    }
    c->n_conns++;
    api_arm_idle(cn);
  }
}

/* Stop waiting for stream changes (a connection on its way out). */
static void api_leave_watch(struct api_conn *cn) {
  api_unwait(cn);
  if (cn->watch != NULL) {
    if (cn->job != NULL && cn->state != API_BODY)
      cn->watch->pending--; /* its reply will be dropped */
    api_watch_gc(cn->core, cn->watch);
    cn->watch = NULL;
  }
}

/* The response is out and the connection ends: see API_LINGER. */
static void api_linger(struct api_conn *cn) {
  api_leave_watch(cn);
  if (cn->job != NULL && cn->state == API_BODY) {
    job_free(cn->job);
    cn->job = NULL;
  }
  if (shutdown(cn->fd, SHUT_WR) != 0) {
    api_close(cn);
    return;
  }
  cn->state = API_LINGER;
  cn->in.len = 0;
  api_set_events(cn, 1, 0);
  api_arm(cn, API_LINGER_MS);
}

static void api_close(struct api_conn *cn) {
  struct core *c = cn->core;
  uint32_t slot;
  if (cn->fd < 0) return;
  api_leave_watch(cn);
  loop_timer_cancel(c->loop, &cn->timer);
  loop_del(c->loop, cn->fd);
  close(cn->fd);
  cn->fd = -1;
  slot = (uint32_t)(cn->id & 0xffffffffu);
  c->conns[slot] = NULL;
  c->free_slots[c->n_free++] = slot;
  c->n_conns--;
  if (cn->job != NULL && cn->state == API_BODY) job_free(cn->job);
  /* a job in flight is freed when its reply finds no connection */
  buf_free(&cn->in);
  buf_free(&cn->out);
  buf_free(&cn->body);
  buf_free(&cn->raw);
  URSULA_FREE(cn);
}

URSULA_PRIVATE void api_drain(struct core *c) {
  uint32_t i;
  for (i = 0; i < c->n_slots; i++) {
    struct api_conn *cn = c->conns[i];
    if (cn == NULL) continue;
    cn->keep_alive = 0;
    if (cn->state == API_HEAD && cn->in.len == 0 && cn->out.len == 0) {
      api_close(cn);
    } else if (cn->state == API_POLL) {
      api_on_timer(c->loop, cn); /* answer 204 now, then close */
    } else if (cn->state == API_SSE) {
      api_unwatch_conn(cn);
      buf_append_str(&cn->out, "0\r\n\r\n");
      cn->closing = 1;
      api_flush(cn);
    }
  }
}

URSULA_PRIVATE void api_core_free(struct core *c) {
  uint32_t i;
  size_t k;
  for (i = 0; i < c->n_slots; i++) {
    struct api_conn *cn = c->conns[i];
    if (cn == NULL) continue;
    if (cn->fd >= 0) close(cn->fd);
    buf_free(&cn->in);
    buf_free(&cn->out);
    buf_free(&cn->body);
    buf_free(&cn->raw);
    URSULA_FREE(cn);
  }
  for (k = 0; k < c->watch_cap; k++) {
    struct api_watch *w, *next;
    for (w = c->watch[k]; w != NULL; w = next) {
      next = w->hnext;
      URSULA_FREE(w);
    }
  }
  URSULA_FREE(c->watch);
  URSULA_FREE(c->conns);
  URSULA_FREE(c->free_slots);
}

#undef API_READ_CHUNK
#undef API_MAX_OUT
#undef API_CURSOR_EPOCH_MS
#undef API_CURSOR_INTERVAL_MS
