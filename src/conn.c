/*
** conn.c -- the HTTP/1.1 server connection engine.
**
** A connection lives on the core that accepted it, from accept to close,
** in that core's slot table (struct conn_table; conn id = generation << 32
** | slot, so a reply for a connection long gone finds nothing).  This file
** reads requests and writes responses; what a request means is the
** protocol layer's (api.c), reached through the table's hooks (struct
** conn_ops).  The raw socket calls go through struct conn_io, so another
** transport (TLS) can take their place.  Its life:
**
**   CONN_HEAD   reading a request head (header timeout while partial,
**               idle timeout while empty)
**   CONN_BODY   reading a Content-Length or chunked body
**   CONN_BUSY   the protocol layer has the request (a job at the stream's
**               owner); input is not read, so pipelined requests wait
**               their turn and replies stay in order
**   CONN_LIVE   held as a live reader (long-poll, SSE): input is read and
**               dropped, the timer is the protocol layer's
**   CONN_LINGER the last response is written and our side shut down; what
**               the client still sends is read and dropped until it
**               closes or CONN_LINGER_MS pass.  Closing at once with
**               unread input would make the kernel send a reset, and the
**               client could lose the response (say, a 431 to a request
**               it is still sending).
**
** Responses are built in `out`; a large body may be queued without a copy
** (conn_out_body) and goes on the wire after the head, by sendmsg.
**
** OUTPUT BACK-PRESSURE.  No client can make the server hold its
** answers in memory without bound by not reading them.  What a
** connection has queued and not written (conn_pending) is counted in its
** core's out_pending, so the server-wide sum is known; written bytes
** leave `out` (it is compacted), so the count is the memory held.  A
** connection is backlogged (conn_backlogged) when it holds more than
** --max-read-bytes, or any byte at all while the server-wide sum is past
** --max-output-bytes.  Then nothing more is produced for it until its
** client reads: a pipelined request waits (the connection is paused:
** input is not read) and a live reader's next event waits (api.c), the
** reader resuming from its offset once everything is written.  So a
** connection holds about one answer and --max-read-bytes at most.  A
** client whose queued output has not moved for --idle-timeout-ms is
** dropped (conn_stalled; a paused one on its timer), and CONN_MAX_OUT
** is a last valve above all that.
*/
#include "internal.h"

#define CONN_READ_CHUNK 65536
#define CONN_LINGER_MS 2000
#define CONN_MAX_OUT (64u * 1024 * 1024) /* plus 2 bodies: never reached */
#define CONN_COMPACT 65536 /* written bytes kept at the front of out */

/* Loads and stores of a counter that other threads read (out_pending):
** atomic where the compiler has the builtins, else plain (an estimate
** either way, never used for memory safety). */
#if defined(__GNUC__)
#define CONN_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define CONN_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#else
#define CONN_LOAD(p) (*(p))
#define CONN_STORE(p, v) ((void)(*(p) = (v)))
#endif

/* ------------------------------------------------------------ sockets */

static ssize_t conn_plain_recv(int fd, void *p, size_t n) {
  return recv(fd, p, n, 0);
}

/* Send iov[0..n) (MSG_NOSIGNAL where there is one). */
static ssize_t conn_plain_sendv(int fd, struct iovec *iov, int n) {
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

static int conn_plain_shutdown(int fd) {
  return shutdown(fd, SHUT_WR);
}

static int conn_plain_close(int fd) {
  return close(fd);
}

static const struct conn_io conn_plain_io = {
    conn_plain_recv, conn_plain_sendv, conn_plain_shutdown, conn_plain_close};

/* ------------------------------------------------------------ output */

static void conn_close(struct conn *cn);
static void conn_linger(struct conn *cn);
static void conn_process(struct conn *cn);
static void conn_arm_idle(struct conn *cn);

static const struct conn_ops *conn_ops(const struct conn *cn) {
  return cn->core->conns.ops;
}

static const struct conn_io *conn_io(const struct conn *cn) {
  return cn->core->conns.io;
}

static void conn_set_events(struct conn *cn, int reading, int writing) {
  if (reading == cn->reading && writing == cn->want_write) return;
  cn->reading = reading;
  cn->want_write = writing;
  loop_mod(cn->core->loop, cn->fd,
           (unsigned)((reading ? LOOP_READ : 0) | (writing ? LOOP_WRITE : 0)));
}

URSULA_PRIVATE struct buf *conn_out(struct conn *cn) {
  return &cn->out;
}

URSULA_PRIVATE void conn_out_body(struct conn *cn, struct buf *data) {
  if (data->len < 16384 || cn->body.len > 0) { /* small, or one is queued */
    buf_append(&cn->out, data->ptr, data->len);
    return;
  }
  cn->body = *data;
  cn->body_off = 0;
  cn->body_at = cn->out.len;
  memset(data, 0, sizeof(*data));
}

URSULA_PRIVATE void conn_begin_chunks(struct conn *cn) {
  URSULA_ASSERT(!cn->keep_alive);
  if (!cn->http10) buf_append_str(&cn->out, "Transfer-Encoding: chunked\r\n");
}

URSULA_PRIVATE void conn_chunk(struct conn *cn, const struct buf *p) {
  if (p->len == 0) return;
  if (cn->http10) { /* the body simply runs until the close */
    buf_append(&cn->out, p->ptr, p->len);
    return;
  }
  buf_printf(&cn->out, "%lx\r\n", (unsigned long)p->len);
  buf_append(&cn->out, p->ptr, p->len);
  buf_append(&cn->out, "\r\n", 2);
}

URSULA_PRIVATE void conn_end_chunks(struct conn *cn) {
  if (!cn->http10) buf_append_str(&cn->out, "0\r\n\r\n");
  cn->closing = 1;
}

URSULA_PRIVATE size_t conn_pending(const struct conn *cn) {
  return cn->out.len - cn->out_off + cn->body.len - cn->body_off;
}

/* Bring cn's share of its core's out_pending up to date. */
static void conn_count_out(struct conn *cn, size_t pending) {
  struct core *c = cn->core;
  int64_t v = c->out_pending + (int64_t)pending - (int64_t)cn->out_counted;
  CONN_STORE(&c->out_pending, v);
  cn->out_counted = pending;
}

/* The server-wide sum of queued output is past --max-output-bytes. */
static int conn_output_over(const struct core *c) {
  const struct ursula_server *srv = c->srv;
  int64_t sum = 0;
  int i;
  for (i = 0; i < srv->n_cores; i++) sum += CONN_LOAD(&srv->cores[i].out_pending);
  return sum > srv->cfg.max_output_bytes;
}

URSULA_PRIVATE int conn_backlogged(const struct conn *cn) {
  size_t pending = conn_pending(cn);
  if (pending == 0) return 0;
  if (pending > (size_t)cn->core->srv->cfg.max_read_bytes) return 1;
  return conn_output_over(cn->core);
}

URSULA_PRIVATE int conn_stalled(const struct conn *cn) {
  const struct ursula_config *cfg = &cn->core->srv->cfg;
  return conn_pending(cn) > 0 &&
         loop_now_ms(cn->core->loop) - cn->write_ms >=
             (uint64_t)cfg->idle_timeout_ms;
}

/* Drop the written front of out once it is large: the bytes a slow
** reader has taken must not stay in memory behind the ones it has not. */
static void conn_compact(struct conn *cn) {
  size_t k = cn->out_off;
  if (k < CONN_COMPACT || k < cn->out.len / 2) return;
  if (cn->body.len > 0) { /* body_at is an index into out */
    if (k > cn->body_at) k = cn->body_at;
    cn->body_at -= k;
  }
  buf_consume(&cn->out, k);
  cn->out_off -= k;
}

/* Largest backlog a connection may hold before it is dropped. */
static size_t conn_max_out(const struct conn *cn) {
  uint64_t m = (uint64_t)CONN_MAX_OUT +
               2 * (uint64_t)cn->core->srv->cfg.max_body_bytes;
  return m > (uint64_t)SIZE_MAX ? SIZE_MAX : (size_t)m;
}

URSULA_PRIVATE int conn_flush(struct conn *cn) {
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
    sent = conn_io(cn)->sendv(cn->fd, iov, n);
    if (sent > 0) {
      size_t left = (size_t)sent;
      cn->write_ms = loop_now_ms(cn->core->loop);
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
      if (conn_pending(cn) > conn_max_out(cn)) {
        conn_close(cn); /* a reader this slow would hold memory forever */
        return -1;
      }
      conn_compact(cn);
      conn_count_out(cn, conn_pending(cn));
      conn_set_events(cn, cn->reading, 1);
      return 0;
    } else {
      conn_close(cn);
      return -1;
    }
  }
  cn->out.len = cn->out_off = 0;
  conn_count_out(cn, 0);
  if (cn->closing) {
    conn_linger(cn);
    return -1;
  }
  conn_set_events(cn, cn->reading, 0);
  if (cn->want_sent) { /* (it only queues work: no flush in there) */
    cn->want_sent = 0;
    if (conn_ops(cn)->on_sent != NULL) conn_ops(cn)->on_sent(cn);
  }
  return 0;
}

URSULA_PRIVATE void conn_want_sent(struct conn *cn) {
  cn->want_sent = 1;
}

URSULA_PRIVATE void conn_abort(struct conn *cn) {
  conn_close(cn);
}

/* The client is not reading its answers: its next request waits, and
** input is not read, until the output drains (conn_on_io), or it is
** dropped once its output has not moved for --idle-timeout-ms
** (conn_on_timer). */
static void conn_pause(struct conn *cn) {
  cn->paused = 1;
  conn_set_events(cn, 0, 1);
  conn_arm(cn, cn->core->srv->cfg.idle_timeout_ms);
}

URSULA_PRIVATE void conn_done(struct conn *cn) {
  if (!cn->keep_alive) cn->closing = 1;
  cn->state = CONN_HEAD;
  if (conn_flush(cn) < 0) return;
  if (conn_backlogged(cn)) {
    conn_pause(cn);
    return;
  }
  conn_set_events(cn, 1, cn->want_write);
  conn_arm_idle(cn);
  if (cn->in.len > 0) conn_process(cn);
}

URSULA_PRIVATE void conn_fatal(struct conn *cn, int status,
                               const char *reason) {
  cn->keep_alive = 0;
  conn_ops(cn)->on_error(cn, status, reason);
  cn->closing = 1;
  cn->state = CONN_HEAD;
  conn_flush(cn);
}

URSULA_PRIVATE int conn_continue(struct conn *cn,
                                 const struct http_request *req) {
  if ((cn->chunked || cn->body_left > 0) && http_expects_continue(req)) {
    buf_append_str(&cn->out, "HTTP/1.1 100 Continue\r\n\r\n");
    if (conn_flush(cn) < 0) return -1;
  }
  return 0;
}

/* ------------------------------------------------------------ states */

static void conn_on_timer(struct loop *l, void *arg);

URSULA_PRIVATE void conn_arm(struct conn *cn, int ms) {
  loop_timer_set(cn->core->loop, &cn->timer,
                 loop_now_ms(cn->core->loop) + (uint64_t)ms, conn_on_timer, cn);
}

URSULA_PRIVATE void conn_disarm(struct conn *cn) {
  loop_timer_cancel(cn->core->loop, &cn->timer);
}

static void conn_arm_idle(struct conn *cn) {
  const struct ursula_config *cfg = &cn->core->srv->cfg;
  conn_arm(cn, cn->in.len > 0 ? cfg->header_timeout_ms : cfg->idle_timeout_ms);
}

URSULA_PRIVATE void conn_busy(struct conn *cn) {
  cn->state = CONN_BUSY;
  conn_disarm(cn);
  conn_set_events(cn, 0, cn->want_write);
}

URSULA_PRIVATE void conn_live(struct conn *cn) {
  cn->state = CONN_LIVE;
  conn_set_events(cn, 1, cn->want_write);
}

static void conn_on_timer(struct loop *l, void *arg) {
  struct conn *cn = (struct conn *)arg;
  (void)l;
  if (cn->paused || (cn->state == CONN_HEAD && cn->in.len == 0 &&
                     conn_pending(cn) > 0)) {
    /* answers on their way: the client is idle only once they stop */
    uint64_t idle = (uint64_t)cn->core->srv->cfg.idle_timeout_ms;
    uint64_t quiet = loop_now_ms(cn->core->loop) - cn->write_ms;
    if (quiet >= idle)
      conn_close(cn);
    else
      conn_arm(cn, (int)(idle - quiet));
  } else if (cn->state == CONN_LIVE) {
    conn_ops(cn)->on_live_timer(cn);
  } else if (cn->state == CONN_HEAD || cn->state == CONN_BODY) {
    if (cn->in.len > 0 || cn->state == CONN_BODY)
      conn_fatal(cn, 408, "request timed out");
    else
      conn_close(cn);
  } else if (cn->state == CONN_LINGER) {
    conn_close(cn);
  }
}

/* ------------------------------------------------------------ input */

/* A request head is parsed: settle the connection's part (keep-alive,
** HEAD, body framing, the target's authority), then hand it to the
** protocol layer.  Returns 0 to read the body, -1 if the request was
** answered (and the connection is ending). */
static int conn_on_head(struct conn *cn, struct http_request *req) {
  struct http_framing f;
  const char *reason = NULL;
  int status;
  cn->keep_alive = http_keep_alive(req);
  if (cn->core->draining) cn->keep_alive = 0;
  cn->http10 = req->minor_version == 0;
  cn->head = util_str_eq(req->method, "HEAD");
  /* body framing first: even an error answer must know where it ends */
  cn->chunked = 0;
  cn->body_left = 0;
  cn->raw.len = 0;
  memset(&cn->chunk, 0, sizeof(cn->chunk));
  if ((status = http_framing(req, &f, &reason)) != 0 ||
      (status = http_authority(req, &reason)) != 0) {
    conn_fatal(cn, status, reason);
    return -1;
  }
  cn->chunked = f.kind == HTTP_BODY_CHUNKED;
  cn->body_left = f.length;
  if (cn->body_left > (uint64_t)cn->core->srv->cfg.max_body_bytes) {
    conn_fatal(cn, 413, "request body is too large");
    return -1;
  }
  return conn_ops(cn)->on_head(cn, req);
}

/* Work through buffered input: heads, bodies, requests. */
static void conn_process(struct conn *cn) {
  while (cn->fd >= 0 && !cn->closing && !cn->paused) {
    if (cn->state == CONN_HEAD) {
      struct http_request req;
      int n, rc;
      if (cn->in.len == 0) return;
      n = http_parse_request(cn->in.ptr, cn->in.len, &req);
      if (n == URSULA_EAGAIN) {
        if (cn->in.len > URSULA_MAX_HEADER_BYTES)
          conn_fatal(cn, 431, "request header fields are too large");
        return;
      }
      if (n == HTTP_ETOOMANY || n > URSULA_MAX_HEADER_BYTES) {
        conn_fatal(cn, 431, "request header fields are too large");
        return;
      }
      if (n == HTTP_EVERSION) { /* RFC 9110 section 15.6.6 */
        conn_fatal(cn, 505, "only HTTP/1.x is served");
        return;
      }
      if (n < 0) {
        conn_fatal(cn, 400, "malformed request");
        return;
      }
      rc = conn_on_head(cn, &req);
      buf_consume(&cn->in, (size_t)n);
      if (rc != 0) return;
      cn->state = CONN_BODY;
    }
    if (cn->state == CONN_BODY) {
      if (cn->chunked) {
        int done = 0;
        long used = http_chunked_feed(&cn->chunk, cn->in.ptr, cn->in.len,
                                      &cn->raw, &done);
        if (used < 0) {
          conn_ops(cn)->on_abort(cn);
          conn_fatal(cn, 400, "malformed chunked body");
          return;
        }
        buf_consume(&cn->in, (size_t)used);
        if (cn->raw.len > (size_t)cn->core->srv->cfg.max_body_bytes) {
          conn_ops(cn)->on_abort(cn);
          conn_fatal(cn, 413, "request body is too large");
          return;
        }
        if (!done) return;
      } else {
        size_t take =
            cn->in.len < cn->body_left ? cn->in.len : (size_t)cn->body_left;
        if (cn->raw.len == 0 && cn->body_left > 0 &&
            buf_reserve(&cn->raw, (size_t)cn->body_left) != URSULA_OK) {
          conn_ops(cn)->on_abort(cn);
          conn_fatal(cn, 503, "out of memory");
          return;
        }
        if (take > 0) {
          buf_append(&cn->raw, cn->in.ptr, take);
          buf_consume(&cn->in, take);
          cn->body_left -= take;
        }
        if (cn->body_left > 0) return;
      }
      conn_ops(cn)->on_request(cn);
      if (cn->state != CONN_HEAD) return; /* the protocol layer has it */
      continue;
    }
    return;
  }
}

static void conn_on_io(struct loop *l, int fd, unsigned events, void *arg) {
  struct conn *cn = (struct conn *)arg;
  (void)l, (void)fd;
  if (events & LOOP_WRITE) {
    if (conn_flush(cn) < 0) return;
    if (cn->paused && !conn_backlogged(cn)) { /* its answers drained */
      cn->paused = 0;
      conn_set_events(cn, 1, cn->want_write);
      conn_arm_idle(cn);
      conn_process(cn);
      return;
    }
  }
  if ((events & (LOOP_READ | LOOP_ERROR)) && cn->state == CONN_LINGER) {
    char sink[4096];
    for (;;) {
      ssize_t n = conn_io(cn)->recv(cn->fd, sink, sizeof(sink));
      if (n > 0) continue;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      conn_close(cn); /* the client is done too */
      return;
    }
  }
  if (events & (LOOP_READ | LOOP_ERROR)) {
    for (;;) {
      ssize_t n;
      if (buf_reserve(&cn->in, CONN_READ_CHUNK) != URSULA_OK) {
        conn_close(cn);
        return;
      }
      n = conn_io(cn)->recv(cn->fd, cn->in.ptr + cn->in.len, CONN_READ_CHUNK);
      if (n > 0) {
        cn->in.len += (size_t)n;
        if ((size_t)n < CONN_READ_CHUNK) break;
        if (cn->state == CONN_HEAD && cn->in.len > URSULA_MAX_HEADER_BYTES * 2)
          break;
      } else if (n == 0) {
        conn_close(cn); /* peer closed; a half-sent request is dropped */
        return;
      } else if (errno == EINTR) {
        continue;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      } else {
        conn_close(cn);
        return;
      }
    }
    if (cn->state == CONN_LIVE) {
      cn->in.len = 0; /* a live reader has nothing more to say */
      return;
    }
    if (cn->state == CONN_HEAD) conn_arm_idle(cn);
    conn_process(cn);
  }
}

/* ------------------------------------------------------------ accept */

URSULA_PRIVATE void conn_table_init(struct conn_table *t, int max_conns,
                                    const struct conn_ops *ops) {
  memset(t, 0, sizeof(*t));
  t->max_conns = max_conns;
  t->ops = ops;
  t->io = &conn_plain_io;
}

URSULA_PRIVATE int conn_table_count(const struct conn_table *t) {
  return t->n_conns;
}

URSULA_PRIVATE struct conn *conn_by_id(struct conn_table *t, uint64_t id) {
  uint32_t slot = (uint32_t)(id & 0xffffffffu);
  struct conn *cn;
  if (slot >= t->n_slots) return NULL;
  cn = t->slots[slot];
  return (cn != NULL && cn->id == id) ? cn : NULL;
}

static int conn_slot_alloc(struct conn_table *t, struct conn *cn) {
  uint32_t slot;
  if (t->n_free > 0) {
    slot = t->free_slots[--t->n_free];
  } else {
    if (t->n_slots == t->cap_slots) {
      uint32_t cap = t->cap_slots ? t->cap_slots * 2 : 256;
      struct conn **s =
          (struct conn **)URSULA_REALLOC(t->slots, cap * sizeof(*s));
      uint32_t *f;
      if (s == NULL) return -1;
      t->slots = s;
      f = (uint32_t *)URSULA_REALLOC(t->free_slots, cap * sizeof(*f));
      if (f == NULL) return -1;
      t->free_slots = f;
      t->cap_slots = cap;
    }
    slot = t->n_slots++;
  }
  t->slots[slot] = cn;
  cn->id = ((uint64_t)++t->next_gen << 32) | slot;
  return 0;
}

URSULA_PRIVATE void conn_on_accept(struct loop *l, int fd, unsigned events,
                                   void *arg) {
  struct core *c = (struct core *)arg;
  struct conn_table *t = &c->conns;
  int i;
  (void)events;
  for (i = 0; i < 64; i++) {
    struct conn *cn;
    int one = 1;
    int cfd = accept(fd, NULL, NULL);
    if (cfd < 0) return; /* EAGAIN: another core took it, or none left */
    os_set_nonblock(cfd);
    os_set_cloexec(cfd);
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (t->n_conns >= t->max_conns || c->draining) {
      /* refused before it is a connection: plain bytes on the socket,
      ** the Content-Length counted from the body itself */
      static const char body[] = "too many connections, retry\n";
      char busy[256];
      int n = snprintf(busy, sizeof(busy),
                       "HTTP/1.1 503 Service Unavailable\r\n"
                       "Connection: close\r\nRetry-After: 1\r\n"
                       "Content-Type: text/plain\r\n"
                       "Content-Length: %u\r\n\r\n%s",
                       (unsigned)(sizeof(body) - 1), body);
      ssize_t w = n > 0 ? send(cfd, busy, (size_t)n, 0) : 0;
      (void)w;
      close(cfd);
      continue;
    }
    cn = (struct conn *)URSULA_MALLOC(t->ops->size);
    if (cn == NULL) {
      close(cfd);
      continue;
    }
    memset(cn, 0, t->ops->size);
    cn->core = c;
    cn->fd = cfd;
    cn->reading = 1;
    cn->write_ms = loop_now_ms(l);
    if (conn_slot_alloc(t, cn) != 0 ||
        loop_add(l, cfd, LOOP_READ, conn_on_io, cn) != URSULA_OK) {
      close(cfd);
      URSULA_FREE(cn);
      continue;
    }
    t->n_conns++;
    conn_arm_idle(cn);
  }
}

/* ------------------------------------------------------------ the end */

/* The response is out and the connection ends: see CONN_LINGER. */
static void conn_linger(struct conn *cn) {
  conn_ops(cn)->on_end(cn);
  if (conn_io(cn)->shutdown(cn->fd) != 0) {
    conn_close(cn);
    return;
  }
  cn->state = CONN_LINGER;
  cn->in.len = 0;
  conn_set_events(cn, 1, 0);
  conn_arm(cn, CONN_LINGER_MS);
}

static void conn_close(struct conn *cn) {
  struct core *c = cn->core;
  struct conn_table *t = &c->conns;
  uint32_t slot;
  if (cn->fd < 0) return;
  conn_ops(cn)->on_end(cn);
  loop_timer_cancel(c->loop, &cn->timer);
  loop_del(c->loop, cn->fd);
  conn_io(cn)->close(cn->fd);
  cn->fd = -1;
  conn_count_out(cn, 0);
  slot = (uint32_t)(cn->id & 0xffffffffu);
  t->slots[slot] = NULL;
  t->free_slots[t->n_free++] = slot;
  t->n_conns--;
  buf_free(&cn->in);
  buf_free(&cn->out);
  buf_free(&cn->body);
  buf_free(&cn->raw);
  URSULA_FREE(cn);
}

URSULA_PRIVATE void conn_drain(struct conn_table *t) {
  uint32_t i;
  for (i = 0; i < t->n_slots; i++) {
    struct conn *cn = t->slots[i];
    if (cn == NULL) continue;
    cn->keep_alive = 0;
    if (cn->paused) {
      conn_close(cn); /* not reading its answers: not waited for */
    } else if (cn->state == CONN_HEAD && cn->in.len == 0 && cn->out.len == 0) {
      conn_close(cn);
    } else if (cn->state == CONN_LIVE) {
      t->ops->on_drain(cn);
    }
  }
}

URSULA_PRIVATE void conn_table_free(struct conn_table *t) {
  uint32_t i;
  for (i = 0; i < t->n_slots; i++) {
    struct conn *cn = t->slots[i];
    if (cn == NULL) continue;
    if (cn->fd >= 0) t->io->close(cn->fd);
    buf_free(&cn->in);
    buf_free(&cn->out);
    buf_free(&cn->body);
    buf_free(&cn->raw);
    URSULA_FREE(cn);
  }
  URSULA_FREE(t->slots);
  URSULA_FREE(t->free_slots);
  memset(t, 0, sizeof(*t));
}

#undef CONN_READ_CHUNK
#undef CONN_LINGER_MS
#undef CONN_MAX_OUT
#undef CONN_COMPACT
#undef CONN_LOAD
#undef CONN_STORE
