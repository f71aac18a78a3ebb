/*
** conn.c -- the HTTP/1.1 server connection engine.
**
** A connection lives on the core that accepted it, from accept to close,
** in that core's slot table (struct conn_table; conn id = generation << 32
** | slot, so a reply for a connection long gone finds nothing).  This file
** reads requests and writes responses; what a request means is the
** protocol layer's (api.c), reached through the table's hooks (struct
** conn_ops).  The raw socket calls go through struct conn_io, so another
** transport can take their place: with --tls-cert, a connection of the
** public listener gets a TLS engine at accept (cn->tls; tlsserve.c, THE
** ENGINE LOOP) and its calls go through it, plaintext on this side; its
** events also follow what the engine waits for (conn_tls_events), and
** it lingers behind a close_notify.  A plain connection, the admin
** listener's always, costs nothing more.  Its life:
**
**   CONN_HEAD   reading a request head: the idle timeout while nothing
**               of it has come; from its first byte on, the header
**               timeout, armed once: later bytes do not extend it, so it
**               bounds the whole head (a client sending a byte every few
**               seconds is cut, not kept for hours)
**   CONN_BODY   reading a Content-Length or chunked body: the body
**               timeout, armed when the head ends and again by every read
**               that brings body bytes, so a body must keep coming but may
**               take as long as it needs in all
**   CONN_BUSY   the protocol layer has the request (a job at the stream's
**               owner); input is read into `in` but not parsed, so
**               pipelined requests wait their turn and replies stay in
**               order.  The connection stays registered for reading, so
**               a request that goes to another core and back costs no
**               epoll_ctl: reading stops only when `in` holds
**               URSULA_MAX_HEADER_BYTES (until conn_done) or the client
**               has shut down its side (peer_eof: for good).  A client
**               that sends its request and shuts down its side is still
**               answered, pipelined requests before the shutdown too;
**               then the connection ends
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
**
** BODIES IN FLIGHT.  A request body is held whole in memory until it is
** handed on, so the bytes of bodies being received are charged to one
** budget of the server's, --max-body-inflight-bytes over all cores
** (struct conn_bounds): a Content-Length whole when its head is read, a
** chunked body as its bytes arrive.  A request that does not fit is
** answered 503 with Retry-After and its connection ends, the body unread
** (RFC 9110 section 15.6.4: 503 means "the server is currently unable to
** handle the request due to a temporary overload ... which will likely be
** alleviated after some delay"; "The server MAY send a Retry-After header
** field").  The charge is given back when the body is handed on
** (on_request), when the request fails, and at the latest when the
** connection lingers or closes.  The buffer a body is read into grows
** with what arrives (conn_body_room), so a client that stalls holds the
** memory of what it sent, not of what it announced.
*/
#include "internal.h"

#define CONN_READ_CHUNK 65536
#define CONN_READ_BODY_MAX (1024u * 1024) /* unparsed input read per turn */
#define CONN_NO_ROOM "too many request bodies in flight, retry"
#define CONN_LINGER_MS 2000
#define CONN_FD_PAUSE_MS 100 /* out of descriptors: accepting pauses */
#define CONN_MAX_OUT (64u * 1024 * 1024) /* plus 2 bodies: never reached */
#define CONN_COMPACT 65536 /* written bytes kept at the front of out */

/* ------------------------------------------------------------ sockets */

static ssize_t conn_plain_recv(struct conn *cn, void *p, size_t n) {
  return recv(cn->fd, p, n, 0);
}

/* Send iov[0..n) (MSG_NOSIGNAL where there is one). */
static ssize_t conn_plain_sendv(struct conn *cn, struct iovec *iov, int n) {
  struct msghdr m;
  memset(&m, 0, sizeof(m));
  m.msg_iov = iov;
  m.msg_iovlen = (size_t)n;
#if defined(MSG_NOSIGNAL)
  return sendmsg(cn->fd, &m, MSG_NOSIGNAL);
#else
  return sendmsg(cn->fd, &m, 0);
#endif
}

static int conn_plain_shutdown(struct conn *cn) {
  return shutdown(cn->fd, SHUT_WR);
}

static int conn_plain_close(struct conn *cn) {
  return close(cn->fd);
}

static const struct conn_io conn_plain_io = {
    conn_plain_recv, conn_plain_sendv, conn_plain_shutdown, conn_plain_close};

#if URSULA_ENABLE_TLS
/* HTTPS: the same calls through the connection's engine (tlsserve.c). */
static ssize_t conn_tls_recv(struct conn *cn, void *p, size_t n) {
  return tlss_recv(cn->tls, cn->fd, p, n);
}

static ssize_t conn_tls_sendv(struct conn *cn, struct iovec *iov, int n) {
  return tlss_sendv(cn->tls, cn->fd, iov, n);
}

static int conn_tls_shutdown(struct conn *cn) {
  return tlss_shutdown(cn->tls, cn->fd);
}

static int conn_tls_close(struct conn *cn) {
  tlss_conn_free(cn->tls);
  cn->tls = NULL;
  return close(cn->fd);
}

static const struct conn_io conn_tls_io = {conn_tls_recv, conn_tls_sendv,
                                           conn_tls_shutdown, conn_tls_close};
#endif

/* ------------------------------------------------------------ bounds

   The counters of struct conn_bounds are shared by the core threads: GCC
   and Clang change them with atomic operations (relaxed: each is a count
   that orders nothing else), other compilers under the struct's mutex. */

#if defined(__GNUC__)
#define CONN_ATOMIC 1
#else
#define CONN_ATOMIC 0
#endif

/* Loads and stores of a counter that other threads read (a core's
** out_pending, written by its own thread only): an estimate either way,
** never used for memory safety. */
#if CONN_ATOMIC
#define CONN_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define CONN_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
/* (a flag whose store must be seen before what follows: sequentially
** consistent) */
#define CONN_FLAG_LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define CONN_FLAG_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#else
#define CONN_LOAD(p) (*(p))
#define CONN_STORE(p, v) ((void)(*(p) = (v)))
#define CONN_FLAG_LOAD(p) (*(volatile int *)(p))
#define CONN_FLAG_STORE(p, v) ((void)(*(volatile int *)(p) = (v)))
#endif

/* A descriptor to hold in reserve (struct conn_bounds, spare_fd), or -1:
** /dev/null, or a socket where there is no /dev/null. */
static int conn_spare_open(void) {
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd >= 0) os_set_cloexec(fd);
  }
  return fd;
}

URSULA_PRIVATE void conn_bounds_init(struct conn_bounds *b) {
  memset(b, 0, sizeof(*b));
  pthread_mutex_init(&b->mu, NULL);
  pthread_mutex_init(&b->spare_mu, NULL);
  b->spare_fd = conn_spare_open();
  b->spare_out = b->spare_fd < 0;
}

URSULA_PRIVATE void conn_bounds_free(struct conn_bounds *b) {
  if (b->spare_fd >= 0) close(b->spare_fd);
  pthread_mutex_destroy(&b->spare_mu);
  pthread_mutex_destroy(&b->mu);
}

/* Add n to the counter *v of b if the sum stays at most max: 1 if it was
** added, 0 if not (then *v is unchanged). */
static int conn_bounds_add(struct conn_bounds *b, uint64_t *v, uint64_t n,
                           uint64_t max) {
#if CONN_ATOMIC
  uint64_t cur = __atomic_load_n(v, __ATOMIC_RELAXED);
  (void)b;
  do {
    if (n > max || cur > max - n) return 0;
  } while (!__atomic_compare_exchange_n(v, &cur, cur + n, 1, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED));
  return 1;
#else
  int ok;
  pthread_mutex_lock(&b->mu);
  ok = n <= max && *v <= max - n;
  if (ok) *v += n;
  pthread_mutex_unlock(&b->mu);
  return ok;
#endif
}

/* Take n (added before) off the counter *v of b. */
static void conn_bounds_sub(struct conn_bounds *b, uint64_t *v, uint64_t n) {
#if CONN_ATOMIC
  (void)b;
  __atomic_fetch_sub(v, n, __ATOMIC_RELAXED);
#else
  pthread_mutex_lock(&b->mu);
  *v -= n;
  pthread_mutex_unlock(&b->mu);
#endif
}

/* Charge n more bytes of the body being read to the server's budget of
** bodies in flight: 0, or -1 if they do not fit (nothing is charged). */
static int conn_charge(struct conn *cn, uint64_t n) {
  struct ursula_server *s = cn->core->srv;
  if (n == 0) return 0;
  if (!conn_bounds_add(&s->bounds, &s->bounds.body_bytes, n,
                       (uint64_t)s->cfg.max_body_inflight_bytes))
    return -1;
  cn->charged += n;
  return 0;
}

/* Give back all the body being read has charged (handed on, failed, or
** the connection ends). */
static void conn_uncharge(struct conn *cn) {
  struct ursula_server *s = cn->core->srv;
  if (cn->charged == 0) return;
  conn_bounds_sub(&s->bounds, &s->bounds.body_bytes, cn->charged);
  cn->charged = 0;
}

/* ------------------------------------------------------------ output */

static void conn_close(struct conn *cn);
static void conn_linger(struct conn *cn);
static void conn_process(struct conn *cn);
static void conn_arm_idle(struct conn *cn);

static const struct conn_ops *conn_ops(const struct conn *cn) {
  return cn->core->conns.ops;
}

static const struct conn_io *conn_io(const struct conn *cn) {
  return cn->io;
}

#if URSULA_ENABLE_TLS
static void conn_on_kick(struct loop *l, void *arg);

/* The events an HTTPS connection waits for, given ev, what its HTTP side
** wants (tlsserve.c, THE ENGINE LOOP): writability while the engine has
** records to write, and only then if it takes no plaintext yet (the
** handshake); decrypted bytes waiting while it reads are no event at
** all, so its reader runs again at the next turn (kick). */
static unsigned conn_tls_events(struct conn *cn, unsigned ev) {
  unsigned w = tlss_wants(cn->tls);
  if (!(w & TLSS_CAN_SEND)) ev &= ~(unsigned)LOOP_WRITE;
  if (w & TLSS_SEND) ev |= LOOP_WRITE;
  if ((w & TLSS_PLAIN) && (ev & LOOP_READ))
    loop_timer_set(cn->core->loop, &cn->kick, loop_now_ms(cn->core->loop),
                   conn_on_kick, cn);
  return ev;
}
#endif

static void conn_set_events(struct conn *cn, int reading, int writing) {
  unsigned ev;
  if (cn->fd < 0) return; /* closed (conn_close) */
  if (cn->peer_eof) reading = 0; /* nothing more can come */
  cn->reading = reading;
  cn->want_write = writing;
  ev = (unsigned)((reading ? LOOP_READ : 0) | (writing ? LOOP_WRITE : 0));
#if URSULA_ENABLE_TLS
  if (cn->tls != NULL) ev = conn_tls_events(cn, ev);
#endif
  if (ev == cn->events) return;
  cn->events = ev;
  loop_mod(cn->core->loop, cn->fd, ev);
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
  if (cn->fd < 0) return -1; /* closed (conn_close) */
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
    sent = conn_io(cn)->sendv(cn, iov, n);
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
#if URSULA_ENABLE_TLS
  if (cn->tls != NULL && tlss_push(cn->tls, cn->fd) != 0) {
    conn_close(cn); /* (records the engine still holds: see conn_set_events) */
    return -1;
  }
#endif
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

/* cn leaves CONN_LIVE (or was not in it): the core's count of live
** connections (n_live, for metrics) drops it.  Every change of state
** other than conn_live() and every close come through here. */
static void conn_leave_live(struct conn *cn) {
  if (!cn->live_counted) return;
  cn->live_counted = 0;
  cn->core->conns.n_live--;
}

URSULA_PRIVATE void conn_done(struct conn *cn) {
  if (!cn->keep_alive) cn->closing = 1;
  conn_leave_live(cn);
  cn->state = CONN_HEAD;
  if (conn_flush(cn) < 0) return;
  if (conn_backlogged(cn)) {
    conn_pause(cn);
    return;
  }
  conn_set_events(cn, 1, cn->want_write);
  conn_arm_idle(cn);
  if (cn->in.len > 0) conn_process(cn);
  if (cn->fd >= 0 && cn->peer_eof && cn->state == CONN_HEAD && !cn->closing) {
    cn->closing = 1; /* the client shut down its side: no request follows */
    conn_flush(cn);
  }
}

URSULA_PRIVATE void conn_fatal(struct conn *cn, int status,
                               const char *reason) {
  cn->keep_alive = 0;
  conn_ops(cn)->on_error(cn, status, reason);
  cn->closing = 1;
  conn_leave_live(cn);
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
static void conn_body_fail(struct conn *cn, int status, const char *reason);

URSULA_PRIVATE void conn_arm(struct conn *cn, int ms) {
  if (cn->fd < 0) return; /* closed: no timer may outlive it */
  loop_timer_set(cn->core->loop, &cn->timer,
                 loop_now_ms(cn->core->loop) + (uint64_t)ms, conn_on_timer, cn);
}

URSULA_PRIVATE void conn_disarm(struct conn *cn) {
  loop_timer_cancel(cn->core->loop, &cn->timer);
}

/* Waiting for a request head: the idle timeout while nothing of it has
** come, else the header timeout.  Called when the wait begins and when
** the head's first bytes come in, never for its later bytes (see
** CONN_HEAD). */
static void conn_arm_idle(struct conn *cn) {
  const struct ursula_config *cfg = &cn->core->srv->cfg;
  conn_arm(cn, cn->in.len > 0 ? cfg->header_timeout_ms : cfg->idle_timeout_ms);
}

/* Reading a body: it must bring more bytes within the body timeout. */
static void conn_arm_body(struct conn *cn) {
  conn_arm(cn, cn->core->srv->cfg.body_timeout_ms);
}

/* (The protocol layer has taken what it needs of the body: raw goes.) */
URSULA_PRIVATE void conn_busy(struct conn *cn) {
  conn_leave_live(cn);
  cn->state = CONN_BUSY;
  conn_disarm(cn);
  if (cn->in.len >= URSULA_MAX_HEADER_BYTES) /* (see CONN_BUSY) */
    conn_set_events(cn, 0, cn->want_write);
  buf_free(&cn->raw);
}

URSULA_PRIVATE void conn_live(struct conn *cn) {
  if (!cn->live_counted) cn->core->conns.n_live++;
  cn->live_counted = 1;
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
  } else if (cn->state == CONN_BODY) { /* RFC 9110 section 15.5.9 */
    conn_body_fail(cn, 408, "request body timed out");
  } else if (cn->state == CONN_HEAD) {
    if (cn->in.len > 0)
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
  buf_free(&cn->raw); /* (what a body before left) */
  URSULA_ASSERT(cn->charged == 0);
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
  if (conn_charge(cn, cn->body_left) != 0) { /* see BODIES IN FLIGHT */
    conn_fatal(cn, 503, CONN_NO_ROOM);
    return -1;
  }
  return conn_ops(cn)->on_head(cn, req);
}

/* The body being read is dropped and the request answered with status
** (the connection then ends): its job goes and its charge is given back. */
static void conn_body_fail(struct conn *cn, int status, const char *reason) {
  conn_ops(cn)->on_abort(cn);
  conn_uncharge(cn);
  conn_fatal(cn, status, reason);
}

/* Make room in raw for take more body bytes, of at most left more (take
** among them).  raw grows with what arrives: by as much as it holds (at
** least CONN_READ_CHUNK) and never past left, so it is at most about
** twice what was sent, and a client that stalls holds what it sent, not
** what it announced; growing by what it holds keeps the copies of
** realloc to a few per body. */
static int conn_body_room(struct conn *cn, size_t take, uint64_t left) {
  struct buf *b = &cn->raw;
  size_t ahead = b->len < CONN_READ_CHUNK ? CONN_READ_CHUNK : b->len, cap;
  char *p;
  if (take == 0 || b->cap > b->len + take) return URSULA_OK; /* (+ NUL) */
  if ((uint64_t)ahead > left - take) ahead = (size_t)(left - take);
  if (ahead > SIZE_MAX - b->len - take - 1) return URSULA_ENOMEM;
  cap = b->len + take + ahead + 1;
  p = (char *)URSULA_REALLOC(b->ptr, cap);
  if (p == NULL) return URSULA_ENOMEM;
  b->ptr = p;
  b->cap = cap;
  return URSULA_OK;
}

/* Read what input holds of a chunked body, charging its bytes as they
** come: 1 once it is all in, 0 to wait for more, -1 if the request was
** answered (413, 400, 503). */
static int conn_body_chunked(struct conn *cn) {
  uint64_t max = (uint64_t)cn->core->srv->cfg.max_body_bytes;
  size_t had = cn->raw.len, take = cn->in.len;
  int done = 0;
  long used;
  if ((uint64_t)take > max - had) take = (size_t)(max - had);
  if (conn_body_room(cn, take, max - had) != URSULA_OK) {
    conn_body_fail(cn, 503, "out of memory");
    return -1;
  }
  used = http_chunked_feed(&cn->chunk, cn->in.ptr, cn->in.len, &cn->raw, &done);
  if (used < 0) {
    if (used == URSULA_ENOMEM)
      conn_body_fail(cn, 503, "out of memory");
    else
      conn_body_fail(cn, 400, "malformed chunked body");
    return -1;
  }
  buf_consume(&cn->in, (size_t)used);
  if (cn->raw.len > max) {
    conn_body_fail(cn, 413, "request body is too large");
    return -1;
  }
  if (conn_charge(cn, cn->raw.len - had) != 0) {
    conn_body_fail(cn, 503, CONN_NO_ROOM);
    return -1;
  }
  if (done) return 1;
  if (cn->raw.len > had) conn_arm_body(cn); /* it came on */
  return 0;
}

/* Read what input holds of a Content-Length body (charged whole with its
** head): 1 once it is all in, 0 to wait for more, -1 if answered. */
static int conn_body_length(struct conn *cn) {
  size_t take = cn->in.len < cn->body_left ? cn->in.len : (size_t)cn->body_left;
  if (take > 0) {
    if (conn_body_room(cn, take, cn->body_left) != URSULA_OK) {
      conn_body_fail(cn, 503, "out of memory");
      return -1;
    }
    buf_append(&cn->raw, cn->in.ptr, take); /* (in the room made) */
    buf_consume(&cn->in, take);
    cn->body_left -= take;
  }
  if (cn->body_left == 0) return 1;
  if (take > 0) conn_arm_body(cn); /* it came on */
  return 0;
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
      conn_leave_live(cn);
      cn->state = CONN_BODY;
      if (cn->chunked || cn->body_left > 0) conn_arm_body(cn);
    }
    if (cn->state == CONN_BODY) {
      if ((cn->chunked ? conn_body_chunked(cn) : conn_body_length(cn)) <= 0)
        return;          /* more to come, or answered */
      conn_uncharge(cn); /* handed on: no longer being received */
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
  if ((events & LOOP_WRITE) && cn->state != CONN_LINGER) {
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
      ssize_t n = conn_io(cn)->recv(cn, sink, sizeof(sink));
      if (n > 0) continue;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      conn_close(cn); /* the client is done too */
      return;
    }
  }
  if (events & (LOOP_READ | LOOP_ERROR)) {
    size_t had = cn->in.len;
    for (;;) {
      ssize_t n;
      if (buf_reserve(&cn->in, CONN_READ_CHUNK) != URSULA_OK) {
        conn_close(cn);
        return;
      }
      n = conn_io(cn)->recv(cn, cn->in.ptr + cn->in.len, CONN_READ_CHUNK);
      if (n > 0) {
        cn->in.len += (size_t)n;
        if ((size_t)n < CONN_READ_CHUNK) break;
        if (cn->state == CONN_HEAD && cn->in.len > URSULA_MAX_HEADER_BYTES * 2)
          break;
        if (cn->state == CONN_BODY && cn->in.len >= CONN_READ_BODY_MAX)
          break; /* the rest next turn, once this is parsed */
        if (cn->state == CONN_BUSY && cn->in.len >= URSULA_MAX_HEADER_BYTES)
          break;
      } else if (n == 0 && cn->state == CONN_BUSY) {
        cn->peer_eof = 1; /* answer what came first (see CONN_BUSY) */
        conn_set_events(cn, 0, cn->want_write);
        return;
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
    if (cn->state == CONN_BUSY) { /* its turn comes at conn_done */
      if (cn->in.len >= URSULA_MAX_HEADER_BYTES)
        conn_set_events(cn, 0, cn->want_write);
      return;
    }
    if (cn->state == CONN_HEAD && had == 0 && cn->in.len > 0)
      conn_arm_idle(cn); /* a head begins: its clock starts, once */
    conn_process(cn);
  }
}

#if URSULA_ENABLE_TLS
/* An HTTPS connection lingers (its close_notify is out or on its way):
** the records still in the engine go out; once they are, a client that
** has shut down its side has nothing more to say. */
static void conn_tls_linger_write(struct conn *cn) {
  if (tlss_push(cn->tls, cn->fd) != 0 ||
      (cn->peer_eof && !(tlss_wants(cn->tls) & TLSS_SEND))) {
    conn_close(cn);
    return;
  }
  conn_set_events(cn, 1, 0);
}

/* The loop handler of an HTTPS connection: conn_on_io, then the events
** brought up to date with what the engine now waits for (the handshake
** may have records to write; decrypted bytes may wait unread). */
static void conn_on_tls_io(struct loop *l, int fd, unsigned events,
                           void *arg) {
  struct conn *cn = (struct conn *)arg;
  if ((events & LOOP_WRITE) && cn->state == CONN_LINGER) {
    conn_tls_linger_write(cn);
    if (cn->fd < 0) return;
  }
  conn_on_io(l, fd, events, arg);
  if (cn->fd >= 0) conn_set_events(cn, cn->reading, cn->want_write);
}

/* Decrypted bytes were left in the engine while the connection reads:
** read them now, as a level-triggered poll would for a plain socket. */
static void conn_on_kick(struct loop *l, void *arg) {
  struct conn *cn = (struct conn *)arg;
  if (cn->fd >= 0 && (cn->events & LOOP_READ))
    conn_on_tls_io(l, cn->fd, LOOP_READ, cn);
}
#endif

/* ------------------------------------------------------------ accept */

URSULA_PRIVATE void conn_table_init(struct conn_table *t, int max_conns,
                                    const struct conn_ops *ops) {
  memset(t, 0, sizeof(*t));
  t->max_conns = max_conns;
  t->ops = ops;
  t->io = &conn_plain_io;
}

URSULA_PRIVATE int conn_table_count(const struct conn_table *t) {
  return t->n_conns + t->n_admin;
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

static void conn_slot_free(struct conn_table *t, const struct conn *cn) {
  uint32_t slot = (uint32_t)(cn->id & 0xffffffffu);
  t->slots[slot] = NULL;
  t->free_slots[t->n_free++] = slot;
}

/* Answer a client refused before it is a connection with plain bytes on
** its socket, and close it (counted on core c): 503 with Retry-After (RFC
** 9110 sections 15.6.4 and 10.2.3), the Content-Length counted from the
** body itself.  A client of the HTTPS listener (admin == 0 with
** --tls-cert) is only closed: it expects a TLS handshake, which would
** read those bytes as a broken record, and a handshake made only to
** refuse would spend on an overloaded server what the refusal saves. */
static void conn_refuse(struct core *c, int cfd, int admin) {
  static const char body[] = "too many connections, retry\n";
  char busy[256];
  int n;
  ssize_t w;
  if (!admin && c->srv->cfg.tls_cert[0] != '\0') {
    close(cfd);
    c->metrics.conns_refused++;
    return;
  }
  os_set_nonblock(cfd);
  n = snprintf(busy, sizeof(busy),
               "HTTP/1.1 503 Service Unavailable\r\n"
               "Connection: close\r\nRetry-After: 1\r\n"
               "Content-Type: text/plain\r\n"
               "Content-Length: %u\r\n\r\n%s",
               (unsigned)(sizeof(body) - 1), body);
  w = n > 0 ? send(cfd, busy, (size_t)n, 0) : 0;
  (void)w;
  close(cfd);
  c->metrics.conns_refused++;
}

/* Make the accepted socket cfd a connection of core c (the server-wide
** count already has it): 0, or -1 if it could not be (cfd is left). */
#if URSULA_ENABLE_TLS
/* A new connection's engine, with the credentials in force now (a reload
** swaps them for the connections after it): NULL if out of memory. */
static struct tlss_conn *conn_tls_new(struct ursula_server *s) {
  struct tlss_creds *cr;
  struct tlss_conn *t;
  pthread_mutex_lock(&s->tls_mu);
  cr = tlss_creds_hold(s->tls);
  pthread_mutex_unlock(&s->tls_mu);
  t = tlss_conn_new(cr);
  tlss_creds_release(cr);
  return t;
}
#endif

/* The plain connection cn (or its engine) goes, before it was admitted. */
static void conn_unadmit(struct conn *cn) {
#if URSULA_ENABLE_TLS
  tlss_conn_free(cn->tls);
#endif
  URSULA_FREE(cn);
}

static int conn_admit(struct loop *l, struct core *c, int cfd, int admin) {
  struct conn_table *t = &c->conns;
  struct conn *cn = (struct conn *)URSULA_MALLOC(t->ops->size);
  loop_io_fn on_io = conn_on_io;
  if (cn == NULL) return -1;
  memset(cn, 0, t->ops->size);
  cn->core = c;
  cn->fd = cfd;
  cn->admin = admin;
  cn->reading = 1;
  cn->events = LOOP_READ;
  cn->io = t->io;
  cn->write_ms = loop_now_ms(l);
#if URSULA_ENABLE_TLS
  if (!admin && c->srv->cfg.tls_cert[0] != '\0') { /* the admin's stay plain */
    if ((cn->tls = conn_tls_new(c->srv)) == NULL) {
      URSULA_FREE(cn);
      return -1;
    }
    cn->io = &conn_tls_io;
    on_io = conn_on_tls_io;
  }
#endif
  if (conn_slot_alloc(t, cn) != 0) {
    conn_unadmit(cn);
    return -1;
  }
  if (loop_add(l, cfd, LOOP_READ, on_io, cn) != URSULA_OK) {
    conn_slot_free(t, cn);
    conn_unadmit(cn);
    return -1;
  }
  if (admin)
    t->n_admin++;
  else
    t->n_conns++;
  conn_arm_idle(cn);
  return 0;
}

/* ------------------------------------------------------------ fd limit

   Past the open-file limit accept() fails (EMFILE, ENFILE) and leaves the
   client queued, the listener readable.  The server keeps one descriptor
   in reserve (struct conn_bounds, spare_fd) and gives it up to accept
   such a client, answer it 503 and close it, then takes it back.

   The descriptor given up is free for any thread of the process, and the
   other cores accept on the same listener: one of them may take it for
   a client of its own, and then the spare cannot be taken back.  A spare
   lost for good would leave every later client queued unanswered (seen
   with 8 cores).  So the spare is one for the whole server, given up and
   taken back under spare_mu, and spare_out is raised before it is given
   up: a core whose accept() succeeds while spare_out is up takes the
   mutex and, if the spare is still gone, knows that it took the spare's
   descriptor (or one as scarce): it answers its client 503 and takes the
   spare back.  Whichever thread takes a descriptor, the spare returns at
   the next accept or the next resume (conn_on_accept_resume). */

/* Take the spare back if it is gone (b->spare_mu held): 0, or -1 if
** there is still no descriptor for it. */
static int conn_spare_retake(struct conn_bounds *b) {
  if (b->spare_fd < 0) b->spare_fd = conn_spare_open();
  if (b->spare_fd < 0) return -1;
  CONN_FLAG_STORE(&b->spare_out, 0);
  return 0;
}

/* The listener is watched again after a pause (conn_on_fd_limit), unless
** the core has stopped accepting since. */
static void conn_on_accept_resume(struct loop *l, void *arg) {
  struct core *c = (struct core *)arg;
  struct conn_bounds *b = &c->srv->bounds;
  pthread_mutex_lock(&b->spare_mu);
  (void)conn_spare_retake(b);
  pthread_mutex_unlock(&b->spare_mu);
  if (c->listening && !c->draining) loop_mod(l, c->srv->listen_fd, LOOP_READ);
}

/* Give the spare up to accept a client on lfd, answer it 503 and close
** it, and take the spare back (b->spare_mu held): 0, or -1 if there was
** no spare or no client (or still no descriptor for it). */
static int conn_refuse_spare(struct core *c, int lfd) {
  struct conn_bounds *b = &c->srv->bounds;
  int cfd;
  if (conn_spare_retake(b) != 0) return -1;
  CONN_FLAG_STORE(&b->spare_out, 1);
  close(b->spare_fd);
  b->spare_fd = -1;
  cfd = accept(lfd, NULL, NULL);
  if (cfd >= 0) conn_refuse(c, cfd, 0);
  if (conn_spare_retake(b) != 0) return -1;
  return cfd >= 0 ? 0 : -1;
}

/* accept() on the listener lfd failed with err, EMFILE or ENFILE: the
** spare is given up, again and again, to accept the clients queued and
** answer each 503; then this core stops watching the listener for
** CONN_FD_PAUSE_MS (descriptors come back as connections close), so
** that its loop does not spin on a listener that stays readable.
**
** Logged at most once a second over all cores, and the log lines' own
** times are a second apart: the check and the line are made under
** spare_mu with a fresh clock, and the time kept is read after the line
** is written (a core's loop time is that of its turn's start, and a
** thread may be descheduled between a check and its line).  The time
** kept is 1 ms late: that covers the clocks' millisecond truncation, and
** 0 stays "never". */
static void conn_on_fd_limit(struct loop *l, struct core *c, int lfd, int err) {
  struct conn_bounds *b = &c->srv->bounds;
  uint64_t now;
  int i;
  pthread_mutex_lock(&b->spare_mu);
  for (i = 0; i < 64; i++)
    if (conn_refuse_spare(c, lfd) != 0) break;
  now = os_now_ms();
  if (b->fd_log_ms == 0 || now >= b->fd_log_ms + 1000) {
    LOG_W(
        "accept: %s: open-file limit reached, new connections are "
        "answered 503 until some close; raise it (ulimit -n)",
        strerror(err));
    b->fd_log_ms = os_now_ms() + 1;
  }
  pthread_mutex_unlock(&b->spare_mu);
  (void)err; /* when logging is compiled out */
  loop_mod(l, lfd, 0);
  loop_timer_set(l, &c->conns.accept_timer, loop_now_ms(l) + CONN_FD_PAUSE_MS,
                 conn_on_accept_resume, c);
}

/* A client cfd was accepted while the spare was out: 1 if cfd may have
** taken the spare's descriptor (then cfd is answered 503 and closed and
** the spare taken back), 0 if it is a client like any other. */
static int conn_took_spare(struct core *c, int cfd) {
  struct conn_bounds *b = &c->srv->bounds;
  int took;
  pthread_mutex_lock(&b->spare_mu);
  took = b->spare_fd < 0;
  if (took) {
    conn_refuse(c, cfd, 0);
    (void)conn_spare_retake(b);
  }
  pthread_mutex_unlock(&b->spare_mu);
  return took;
}

/* A socket just accepted: non-blocking, close-on-exec, no Nagle delay. */
static void conn_accepted(int cfd) {
  int one = 1;
  os_set_nonblock(cfd);
  os_set_cloexec(cfd);
  setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* --max-connections counts the open connections of every core together
** (struct conn_bounds): a core accepts while the total is below it,
** however the connections happen to spread over the cores. */
URSULA_PRIVATE void conn_on_accept(struct loop *l, int fd, unsigned events,
                                   void *arg) {
  struct core *c = (struct core *)arg;
  struct conn_bounds *b = &c->srv->bounds;
  int i;
  (void)events;
  for (i = 0; i < 64; i++) {
    int cfd = accept(fd, NULL, NULL);
    if (cfd < 0 && (errno == EMFILE || errno == ENFILE)) {
      conn_on_fd_limit(l, c, fd, errno);
      return;
    }
    if (cfd < 0) return; /* EAGAIN: another core took it, or none left */
    if (CONN_FLAG_LOAD(&b->spare_out) && conn_took_spare(c, cfd)) continue;
    conn_accepted(cfd);
    if (c->draining ||
        !conn_bounds_add(b, &b->conns, 1, (uint64_t)c->conns.max_conns)) {
      conn_refuse(c, cfd, 0);
    } else if (conn_admit(l, c, cfd, 0) != 0) {
      conn_bounds_sub(b, &b->conns, 1);
      close(cfd);
    }
  }
}

/* THE ADMIN LISTENER (--admin-listen) is watched by core 0 alone; its
** connections are served by the same engine, marked admin (the protocol
** layer routes them to the admin paths), and are counted apart from
** --max-connections: at most CONN_ADMIN_MAX at once, so that a server
** full of clients still answers its probes and scrapes, and a flood on
** the admin port cannot take the clients' share.  Past the open-file
** limit an admin client waits in the backlog (the spare is the
** clients'), and core 0 stops watching the admin listener for
** CONN_FD_PAUSE_MS (it stays readable: the loop would spin).  A request
** with a body is refused at its head (413, api.c): the admin paths take
** none, so no admin client is charged to --max-body-inflight-bytes.
** With CONN_ADMIN_MAX open, a new client takes the place of the one
** waiting longest for a request head (idle between requests, or slow to
** send one: conn_admin_evict), so that idle keep-alive scrapers or a
** slow client cannot lock the probes out for the idle timeout; only when
** every admin connection is being answered is the new one refused 503. */
#define CONN_ADMIN_MAX 64

/* Close the admin connection of core c that has waited longest for a
** request head (CONN_HEAD; by the loop time its last output moved, or
** of its accept): 1, or 0 if none waits for one.  Scans the core's
** slots, only when the admin connections are all taken. */
static int conn_admin_evict(struct core *c) {
  struct conn_table *t = &c->conns;
  struct conn *old = NULL;
  uint32_t i;
  for (i = 0; i < t->n_slots; i++) {
    struct conn *cn = t->slots[i];
    if (cn != NULL && cn->admin && cn->state == CONN_HEAD &&
        (old == NULL || cn->write_ms < old->write_ms))
      old = cn;
  }
  if (old == NULL) return 0;
  LOG_D("admin: %d connections open: the one idle longest is closed for "
        "a new one",
        CONN_ADMIN_MAX);
  conn_close(old);
  return 1;
}
/* The admin listener is watched again after a pause at the fd limit. */
static void conn_on_admin_resume(struct loop *l, void *arg) {
  struct core *c = (struct core *)arg;
  if (c->admin_listening && !c->draining)
    loop_mod(l, c->srv->admin_fd, LOOP_READ);
}

URSULA_PRIVATE void conn_on_admin_accept(struct loop *l, int fd,
                                         unsigned events, void *arg) {
  struct core *c = (struct core *)arg;
  int i;
  (void)events;
  for (i = 0; i < 16; i++) {
    int cfd = accept(fd, NULL, NULL);
    if (cfd < 0 && (errno == EMFILE || errno == ENFILE)) {
      /* the client stays queued; the listener stays readable: stop
      ** watching it for a while, or this loop spins */
      loop_mod(l, fd, 0);
      loop_timer_set(l, &c->conns.admin_timer,
                     loop_now_ms(l) + CONN_FD_PAUSE_MS, conn_on_admin_resume,
                     c);
      return;
    }
    if (cfd < 0) return;
    conn_accepted(cfd);
    if (c->draining || (c->conns.n_admin >= CONN_ADMIN_MAX &&
                        !conn_admin_evict(c)))
      conn_refuse(c, cfd, 1);
    else if (conn_admit(l, c, cfd, 1) != 0)
      close(cfd);
  }
}

/* ------------------------------------------------------------ the end */

/* An HTTPS connection's engine still holds records to write (its last
** response, its close_notify); 0 on a plain one. */
static int conn_tls_sending(const struct conn *cn) {
#if URSULA_ENABLE_TLS
  if (cn->tls != NULL) return (tlss_wants(cn->tls) & TLSS_SEND) != 0;
#else
  (void)cn;
#endif
  return 0;
}

/* The response is out and the connection ends: see CONN_LINGER.  An
** HTTPS connection sends close_notify instead of the bare FIN, and
** lingers, even after the client's end, until its records are out. */
static void conn_linger(struct conn *cn) {
  conn_ops(cn)->on_end(cn);
  conn_uncharge(cn);
  if (cn->peer_eof && !conn_tls_sending(cn)) {
    conn_close(cn); /* (after peer_eof, no input is left unread) */
    return;
  }
  if (conn_io(cn)->shutdown(cn) != 0 ||
      (cn->peer_eof && !conn_tls_sending(cn))) {
    conn_close(cn);
    return;
  }
  conn_leave_live(cn);
  cn->state = CONN_LINGER;
  cn->in.len = 0;
  conn_set_events(cn, 1, 0);
  conn_arm(cn, CONN_LINGER_MS);
}

/* Free the connections closed since the last turn (conn_close). */
static void conn_on_reap(struct loop *l, void *arg) {
  struct conn_table *t = (struct conn_table *)arg;
  (void)l;
  while (t->dead != NULL) {
    struct conn *cn = t->dead;
    t->dead = cn->next_dead;
    buf_free(&cn->in); /* (what a caller may have added since) */
    buf_free(&cn->out);
    buf_free(&cn->body);
    buf_free(&cn->raw);
    URSULA_FREE(cn);
  }
}

/* Close cn: its socket, slot, timer, counts and buffers go at once, but
** the struct itself lives until the loop's next turn (conn_on_reap), so
** that the callers up the stack that closed it -- a failed send inside
** a reply, inside conn_process -- may still look at it: its fd is -1
** from here on, and everything that would act on it (conn_process, a
** flush, conn_set_events, conn_arm) checks that first. */
static void conn_close(struct conn *cn) {
  struct core *c = cn->core;
  struct conn_table *t = &c->conns;
  if (cn->fd < 0) return;
  conn_ops(cn)->on_end(cn);
  conn_uncharge(cn);
  conn_leave_live(cn);
  loop_timer_cancel(c->loop, &cn->timer);
  loop_timer_cancel(c->loop, &cn->kick);
  loop_del(c->loop, cn->fd);
  conn_io(cn)->close(cn);
  cn->fd = -1;
  conn_count_out(cn, 0);
  conn_slot_free(t, cn);
  if (cn->admin) {
    t->n_admin--;
  } else {
    t->n_conns--;
    conn_bounds_sub(&c->srv->bounds, &c->srv->bounds.conns, 1);
  }
  buf_free(&cn->in);
  buf_free(&cn->out);
  buf_free(&cn->body);
  buf_free(&cn->raw);
  cn->out_off = cn->body_off = cn->body_at = 0;
  cn->next_dead = t->dead;
  t->dead = cn;
  loop_timer_set(c->loop, &t->reap_timer, loop_now_ms(c->loop), conn_on_reap,
                 t);
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
    if (cn->fd >= 0) conn_io(cn)->close(cn);
    buf_free(&cn->in);
    buf_free(&cn->out);
    buf_free(&cn->body);
    buf_free(&cn->raw);
    URSULA_FREE(cn);
  }
  if (t->dead != NULL) conn_on_reap(NULL, t);
  URSULA_FREE(t->slots);
  URSULA_FREE(t->free_slots);
  memset(t, 0, sizeof(*t));
}

#undef CONN_READ_CHUNK
#undef CONN_READ_BODY_MAX
#undef CONN_NO_ROOM
#undef CONN_ATOMIC
#undef CONN_LINGER_MS
#undef CONN_FD_PAUSE_MS
#undef CONN_MAX_OUT
#undef CONN_COMPACT
#undef CONN_LOAD
#undef CONN_STORE
#undef CONN_FLAG_LOAD
#undef CONN_FLAG_STORE
