/*
** floor.c -- the machine's floors for ursula's benchmarks: the fastest a
** server doing only the bare minimum goes on this box, measured in the
** same run as ursula with the same load (bench/load.c, bench/compare.sh).
**
**   cc -std=c99 -O2 bench/floor.c -o bench/floor -pthread      (Linux)
**
**   floor http --port P [--threads N]
**   floor http --port P [--threads N] --durable DIR
**   floor http --port P [--threads N] --durable DIR --files 64 --sync-threads 16
**   floor fanout --port P [--threads N]
**   floor sync DIR [--seconds S] [--batch B]
**
** A bench tool, not a server: Linux only (epoll, eventfd, SO_REUSEPORT,
** syncfs), loopback only, no streams, no checks beyond what framing needs.
**
** HTTP MODES.  N threads (default: one per online CPU, as ursula's
** --core-count), each with its own epoll set and its own listening socket
** on 127.0.0.1:P (SO_REUSEPORT, so the kernel spreads connections over the
** threads and no request crosses threads).  Each thread reads what a
** connection has, parses every whole request in it (request line, header
** lines up to the empty line, a Content-Length body; no chunked request
** bodies), and queues one answer per request in the connection's output,
** in order, so pipelined requests are answered in order.  Connections stay
** open until the client closes them (a "Connection: close" request is
** answered but the close is left to the client).  Answers, byte for byte
** the sizes of ursula's (the same header lines, measured against ursula at
** the commit this file came with):
**
**   POST  204 No Content with ursula's common header block and a
**         Stream-Next-Offset: 423 bytes; when the request carries
**         Producer-Epoch / Producer-Seq, 200 OK echoing both plus
**         Content-Length: 0, as ursula answers a producer's append (470
**         bytes for epoch 0, seq 0).  The offset is a per-thread running
**         sum of append bytes; it names nothing, it is there for its size.
**   PUT   201 Created with Location and Stream-Next-Offset, no body.
**   GET   200 with the 6-byte body "floor\n".
**   other 405, no body.
**
** --durable DIR: append bodies are also written to files and each POST's
** answer waits until the file holding its body has been fdatasync'ed
** after the write.  Two layouts:
**
**   per core (default)  one file per thread, DIR/core-<thread>.  Group
**                       commit: at the end of each epoll turn the thread
**                       writes everything the turn appended in one write(),
**                       calls fdatasync once, then sends all the answers.
**   --files F           ursula's layout: F files DIR/file-<i>, an append
**   --sync-threads T    goes to file hash(path) % F (FNV-1a of the request
**                       target); at the end of each turn the thread writes
**                       each touched file's bytes in one write() and queues
**                       the file for a pool of T sync threads; a sync
**                       thread takes a file, notes how many writes it has
**                       had, fdatasyncs it, and wakes the network threads,
**                       which send every answer whose write is now covered.
**
** FANOUT MODE.  As http in memory, and in addition a GET whose target has
** "live=sse" becomes a subscriber: it gets ursula's SSE answer head
** (chunked text/event-stream) and a first control event, then every POST
** (to any path) is broadcast to every subscriber on every thread as one
** chunk holding ursula's two events for an append:
**
**   event: data\n  data:<line>\n (one per line of the body)  \n
**   event: control\n  data:{"streamNextOffset":"...","streamCursor":"1",
**   "upToDate":true}\n  \n
**
** which is what bench/load --sse parses ("event: control" makes a
** subscriber ready; each "data:t=<ns>" line is an event's arrival).  The
** thread that reads the POST builds the frame once, puts it in a shared
** ring, wakes the other threads (eventfd) and answers the POST; at the end
** of its turn each thread writes every frame it has not yet sent to each of
** its subscribers, one write() per subscriber.
**
** SYNC MODE.  Raw disk probes in DIR, each for --seconds (2), printing one
** line "floor-sync probe=<name> ... appends_per_s=<n>".  Appends are 256
** bytes; a batch is --batch (256) appends:
**
**   one-sync     one thread: write one append, fdatasync, again.
**   group-one    one thread: write a batch to one file in one write(),
**                fdatasync, again.
**   files-64     the batch spread over 64 files (batch/64 appends each,
**                one write() per file), the 64 fdatasyncs shared by 16
**                threads; the batch is done when all 64 are.
**   files-syncfs the same 64 writes from one thread, then one syncfs().
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FLOOR_MAX_THREADS 64
#define FLOOR_RING 256 /* fan-out frames kept for threads behind */
#define FLOOR_READ 65536

static void floor_die(const char *what) {
  fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void *floor_alloc(void *p, size_t n) {
  p = realloc(p, n);
  if (p == NULL) {
    fprintf(stderr, "floor: out of memory\n");
    exit(1);
  }
  return p;
}

static double floor_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ buffers */

/* A growable byte buffer: bytes p[0..len) of cap. */
struct floor_buf {
  char *p;
  size_t len, cap;
};

static void floor_buf_add(struct floor_buf *b, const char *s, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2 + 256;
    b->p = (char *)floor_alloc(b->p, b->cap);
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static void floor_buf_str(struct floor_buf *b, const char *s) {
  floor_buf_add(b, s, strlen(s));
}

/* v in decimal, zero-padded to at least `width` digits (no printf: the
** floor should not pay for formatting). */
static void floor_buf_num(struct floor_buf *b, unsigned long long v,
                          int width) {
  char d[24];
  int n = 0;
  do {
    d[sizeof(d) - 1 - n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n < width && n < (int)sizeof(d)) d[sizeof(d) - 1 - n++] = '0';
  floor_buf_add(b, d + sizeof(d) - n, (size_t)n);
}

static void floor_buf_hex(struct floor_buf *b, size_t v) {
  char d[20];
  int n = 0;
  do {
    d[sizeof(d) - 1 - n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  floor_buf_add(b, d + sizeof(d) - n, (size_t)n);
}

/* The header lines ursula puts on every answer (same bytes). */
static const char floor_common[] =
    "X-Content-Type-Options: nosniff\r\n"
    "Cross-Origin-Resource-Policy: cross-origin\r\n"
    "Access-Control-Allow-Origin: *\r\n"
    "Access-Control-Expose-Headers: Stream-Next-Offset, Stream-Cursor, "
    "Stream-Up-To-Date, Stream-Closed, Stream-SSE-Data-Encoding, "
    "Producer-Epoch, Producer-Seq, Producer-Expected-Seq, "
    "Producer-Received-Seq, ETag, Content-Type, Location\r\n";

/* "0000000000000000_<off, 16 digits>", ursula's offset shape. */
static void floor_buf_offset(struct floor_buf *b, unsigned long long off) {
  floor_buf_str(b, "0000000000000000_");
  floor_buf_num(b, off, 16);
}

/* ------------------------------------------------------------ durable files */

/* One file appended to by network threads and made durable by fdatasync.
** `written` counts write() calls made to it; `synced` is the count that a
** finished fdatasync covers.  An answer gated on (file, w) may go once
** synced >= w.  All fields under mu. */
struct floor_file {
  pthread_mutex_t mu;
  int fd;
  unsigned long long written, synced;
  int queued, syncing; /* in the sync queue / being synced now */
};

static struct floor_file *floor_files;
static int floor_n_files;
static int floor_pool;        /* sync threads; 0: per-core group commit */
static int floor_durable;     /* --durable given */
static int floor_fanout;      /* fanout mode */
static int floor_n_threads;

/* The sync queue: file indexes, each at most once (queued flag). */
static pthread_mutex_t floor_q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t floor_q_cv = PTHREAD_COND_INITIALIZER;
static int *floor_q;
static int floor_q_head, floor_q_len;

/* Queue file f for a sync unless it is queued; if it is being synced, the
** sync thread requeues it when it sees writes newer than its target.
** Caller holds f's mu. */
static void floor_queue_locked(int f) {
  struct floor_file *ff = &floor_files[f];
  if (ff->queued || ff->syncing) return;
  ff->queued = 1;
  pthread_mutex_lock(&floor_q_mu);
  floor_q[(floor_q_head + floor_q_len++) % floor_n_files] = f;
  pthread_cond_signal(&floor_q_cv);
  pthread_mutex_unlock(&floor_q_mu);
}

/* ------------------------------------------------------------ connections */

/* An answer that may not be sent before file `file` has `seq` writes
** synced.  `at` is the absolute output position where the answer starts
** (bytes ever queued on the connection before it); seq 0: the write that
** carries its body has not happened yet (it happens at the turn's end). */
struct floor_gate {
  unsigned long long at, seq;
  int file;
};

struct floor_conn {
  int fd;
  int sub;      /* fan-out subscriber: index in its thread's subs + 1 */
  int dead;     /* closed; freed when off the waiting list */
  int waiting;  /* on its thread's waiting list */
  int pollout;  /* EPOLLOUT is in its interest set */
  char *in;
  size_t in_len, in_cap;
  struct floor_buf out;
  size_t out_sent;            /* bytes of out already written */
  unsigned long long out_base; /* absolute position of out.p[0] */
  struct floor_gate *gates;
  int n_gates, cap_gates;
};

/* One network thread. */
struct floor_thread {
  int id, ep, lfd, efd;
  pthread_t tid;
  unsigned long long offset; /* running sum of append bytes */
  struct floor_buf *stage;   /* per file: bytes appended this turn */
  int *touched, n_touched;   /* files with staged bytes */
  unsigned long long *turn_seq; /* per file: the write of this turn */
  struct floor_conn **waiting;
  int n_waiting, cap_waiting;
  struct floor_conn **subs;
  int n_subs, cap_subs;
  unsigned long long sent_frames; /* fan-out frames already sent */
  struct floor_buf frames;        /* this turn's frames, concatenated */
};

static struct floor_thread floor_threads[FLOOR_MAX_THREADS];
static int floor_port = 0;

/* The fan-out ring: frame k is ring[k % FLOOR_RING] while k >= head-RING. */
static pthread_mutex_t floor_ring_mu = PTHREAD_MUTEX_INITIALIZER;
static struct floor_buf floor_ring[FLOOR_RING];
static unsigned long long floor_ring_head;
static unsigned long long floor_ring_offset; /* stream bytes, for control */

static char floor_tag_listen, floor_tag_event; /* epoll data markers */

static void floor_set_interest(struct floor_thread *t, struct floor_conn *c,
                               int pollout) {
  struct epoll_event ev;
  if (c->pollout == pollout) return;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN | (pollout ? EPOLLOUT : 0);
  ev.data.ptr = c;
  epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
  c->pollout = pollout;
}

/* How many bytes of c's output may go now: up to the first gate whose
** file has not synced its write yet. */
static size_t floor_sendable(struct floor_conn *c) {
  int i, done = 0;
  size_t limit = c->out.len;
  for (i = 0; i < c->n_gates; i++) {
    struct floor_file *ff = &floor_files[c->gates[i].file];
    int ok;
    if (c->gates[i].seq == 0) ok = 0;
    else {
      pthread_mutex_lock(&ff->mu);
      ok = ff->synced >= c->gates[i].seq;
      pthread_mutex_unlock(&ff->mu);
    }
    if (!ok) {
      limit = (size_t)(c->gates[i].at - c->out_base);
      break;
    }
    done++;
  }
  if (done > 0) {
    memmove(c->gates, c->gates + done,
            (size_t)(c->n_gates - done) * sizeof(*c->gates));
    c->n_gates -= done;
  }
  return limit;
}

static void floor_close(struct floor_thread *t, struct floor_conn *c);

/* Write what may go of c's output; EPOLLOUT only while a write is short. */
static void floor_flush(struct floor_thread *t, struct floor_conn *c) {
  size_t limit = c->n_gates ? floor_sendable(c) : c->out.len;
  while (c->out_sent < limit) {
    ssize_t r = send(c->fd, c->out.p + c->out_sent, limit - c->out_sent,
                     MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) break;
    if (r <= 0) {
      floor_close(t, c);
      return;
    }
    c->out_sent += (size_t)r;
  }
  if (c->out_sent == c->out.len) { /* all gone: start over */
    c->out_base += c->out.len;
    c->out.len = 0;
    c->out_sent = 0;
  }
  floor_set_interest(t, c, c->out_sent < limit);
}

static void floor_free(struct floor_conn *c) {
  free(c->in);
  free(c->out.p);
  free(c->gates);
  free(c);
}

static void floor_close(struct floor_thread *t, struct floor_conn *c) {
  if (c->dead) return;
  c->dead = 1;
  epoll_ctl(t->ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  if (c->sub) { /* swap-remove from the subscribers */
    struct floor_conn *last = t->subs[--t->n_subs];
    t->subs[c->sub - 1] = last;
    last->sub = c->sub;
    c->sub = 0;
  }
  if (!c->waiting) floor_free(c);
}

static void floor_wait_on(struct floor_thread *t, struct floor_conn *c) {
  if (c->waiting) return;
  if (t->n_waiting == t->cap_waiting) {
    t->cap_waiting = t->cap_waiting * 2 + 16;
    t->waiting = (struct floor_conn **)floor_alloc(
        t->waiting, (size_t)t->cap_waiting * sizeof(*t->waiting));
  }
  t->waiting[t->n_waiting++] = c;
  c->waiting = 1;
}

/* ------------------------------------------------------------ requests */

/* Case-insensitive: does line [p, e) start with the header name `name`
** (lower case, with its colon)? Then *v is the value, spaces skipped. */
static int floor_header(const char *p, const char *e, const char *name,
                        const char **v) {
  size_t n = strlen(name), i;
  if ((size_t)(e - p) < n) return 0;
  for (i = 0; i < n; i++)
    if ((p[i] | 0x20) != name[i]) return 0;
  p += n;
  while (p < e && *p == ' ') p++;
  *v = p;
  return 1;
}

/* FNV-1a of the request target: which of the files an append goes to. */
static unsigned floor_hash(const char *p, size_t n) {
  unsigned h = 2166136261u;
  size_t i;
  for (i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 16777619u;
  return h;
}

/* Build the fan-out frame of an append body (see the file's header) into
** b: one HTTP chunk. */
static void floor_frame(struct floor_buf *b, const char *body, size_t n,
                        unsigned long long next) {
  struct floor_buf e = {NULL, 0, 0};
  size_t i = 0, s;
  floor_buf_str(&e, "event: data\n");
  for (;;) { /* one data line per line of the body */
    for (s = i; i < n && body[i] != '\n'; i++) {
    }
    floor_buf_str(&e, "data:");
    floor_buf_add(&e, body + s, i - s);
    floor_buf_str(&e, "\n");
    if (i == n) break;
    i++;
  }
  floor_buf_str(&e, "\nevent: control\ndata:{\"streamNextOffset\":\"");
  floor_buf_offset(&e, next);
  floor_buf_str(&e, "\",\"streamCursor\":\"1000000\",\"upToDate\":true}\n\n");
  floor_buf_hex(b, e.len);
  floor_buf_str(b, "\r\n");
  floor_buf_add(b, e.p, e.len);
  floor_buf_str(b, "\r\n");
  free(e.p);
}

/* Put a fan-out frame for body into the shared ring; wake the other
** threads. */
static void floor_broadcast(struct floor_thread *t, const char *body,
                            size_t n) {
  int i;
  uint64_t one = 1;
  pthread_mutex_lock(&floor_ring_mu);
  floor_ring_offset += n;
  {
    struct floor_buf *slot = &floor_ring[floor_ring_head % FLOOR_RING];
    slot->len = 0;
    floor_frame(slot, body, n, floor_ring_offset);
  }
  floor_ring_head++;
  pthread_mutex_unlock(&floor_ring_mu);
  for (i = 0; i < floor_n_threads; i++)
    if (i != t->id && write(floor_threads[i].efd, &one, sizeof(one)) < 0) {
    }
}

/* One whole request: method [m, m+ml), target [u, u+ul), body [b, b+bl).
** Queue its answer on c. */
static void floor_answer(struct floor_thread *t, struct floor_conn *c,
                         const char *m, size_t ml, const char *u, size_t ul,
                         const char *b, size_t bl, const char *epoch,
                         size_t epl, const char *seq, size_t sql) {
  struct floor_buf *o = &c->out;
  if (ml == 4 && memcmp(m, "POST", 4) == 0) {
    unsigned long long at = c->out_base + o->len;
    t->offset += bl;
    if (epoch != NULL && seq != NULL) {
      floor_buf_str(o, "HTTP/1.1 200 OK\r\n");
      floor_buf_str(o, floor_common);
    } else {
      floor_buf_str(o, "HTTP/1.1 204 No Content\r\n");
      floor_buf_str(o, floor_common);
    }
    floor_buf_str(o, "Stream-Next-Offset: ");
    floor_buf_offset(o, t->offset);
    floor_buf_str(o, "\r\n");
    if (epoch != NULL && seq != NULL) {
      floor_buf_str(o, "Producer-Epoch: ");
      floor_buf_add(o, epoch, epl);
      floor_buf_str(o, "\r\nProducer-Seq: ");
      floor_buf_add(o, seq, sql);
      floor_buf_str(o, "\r\nContent-Length: 0\r\n");
    }
    floor_buf_str(o, "\r\n");
    if (floor_durable) { /* stage the body; gate the answer on its sync */
      int f = floor_pool ? (int)(floor_hash(u, ul) % (unsigned)floor_n_files)
                         : t->id;
      if (t->stage[f].len == 0) t->touched[t->n_touched++] = f;
      floor_buf_add(&t->stage[f], b, bl);
      if (c->n_gates == c->cap_gates) {
        c->cap_gates = c->cap_gates * 2 + 4;
        c->gates = (struct floor_gate *)floor_alloc(
            c->gates, (size_t)c->cap_gates * sizeof(*c->gates));
      }
      c->gates[c->n_gates].at = at;
      c->gates[c->n_gates].seq = 0;
      c->gates[c->n_gates].file = f;
      c->n_gates++;
      floor_wait_on(t, c);
    }
    if (floor_fanout) floor_broadcast(t, b, bl);
  } else if (ml == 3 && memcmp(m, "PUT", 3) == 0) {
    floor_buf_str(o, "HTTP/1.1 201 Created\r\n");
    floor_buf_str(o, floor_common);
    floor_buf_str(o, "Content-Type: text/plain\r\nLocation: http://127.0.0.1");
    floor_buf_add(o, u, ul);
    floor_buf_str(o, "\r\nStream-Next-Offset: ");
    floor_buf_offset(o, 0);
    floor_buf_str(o, "\r\nContent-Length: 0\r\n\r\n");
  } else if (ml == 3 && memcmp(m, "GET", 3) == 0) {
    int sse = 0;
    size_t i;
    for (i = 0; i + 8 <= ul; i++)
      if (memcmp(u + i, "live=sse", 8) == 0) sse = 1;
    if (floor_fanout && sse && !c->sub) {
      floor_buf_str(o, "HTTP/1.1 200 OK\r\n");
      floor_buf_str(o, floor_common);
      floor_buf_str(o, "Connection: close\r\nContent-Type: text/event-stream"
                       "\r\nCache-Control: no-cache\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n");
      {
        struct floor_buf e = {NULL, 0, 0};
        floor_buf_str(&e, "event: control\ndata:{\"streamNextOffset\":\"");
        pthread_mutex_lock(&floor_ring_mu);
        floor_buf_offset(&e, floor_ring_offset);
        pthread_mutex_unlock(&floor_ring_mu);
        floor_buf_str(&e, "\",\"streamCursor\":\"1000000\",\"upToDate\":true}\n\n");
        floor_buf_hex(o, e.len);
        floor_buf_str(o, "\r\n");
        floor_buf_add(o, e.p, e.len);
        floor_buf_str(o, "\r\n");
        free(e.p);
      }
      if (t->n_subs == t->cap_subs) {
        t->cap_subs = t->cap_subs * 2 + 64;
        t->subs = (struct floor_conn **)floor_alloc(
            t->subs, (size_t)t->cap_subs * sizeof(*t->subs));
      }
      t->subs[t->n_subs++] = c;
      c->sub = t->n_subs;
      return;
    }
    floor_buf_str(o, "HTTP/1.1 200 OK\r\n");
    floor_buf_str(o, floor_common);
    floor_buf_str(o, "Content-Type: text/plain\r\nStream-Next-Offset: ");
    floor_buf_offset(o, t->offset);
    floor_buf_str(o, "\r\nStream-Up-To-Date: true\r\nContent-Length: 6"
                     "\r\n\r\nfloor\n");
  } else {
    floor_buf_str(o, "HTTP/1.1 405 Method Not Allowed\r\n");
    floor_buf_str(o, floor_common);
    floor_buf_str(o, "Content-Length: 0\r\n\r\n");
  }
}

/* Parse and answer every whole request in c->in; keep the rest.  Returns
** -1 if the input cannot be HTTP/1.1 (the caller closes). */
static int floor_parse(struct floor_thread *t, struct floor_conn *c) {
  size_t at = 0;
  for (;;) {
    const char *p = c->in + at, *e = c->in + c->in_len, *line, *head_end;
    const char *m, *u, *epoch = NULL, *seq = NULL, *v;
    size_t ml, ul, epl = 0, sql = 0, body = 0, i;
    head_end = NULL;
    for (i = 3; p + i < e; i++) /* the empty line ends the head */
      if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' &&
          p[i - 3] == '\r') {
        head_end = p + i + 1;
        break;
      }
    if (head_end == NULL) break;
    m = p; /* request line: METHOD SP TARGET SP VERSION */
    for (line = p; *line != ' ' && *line != '\r'; line++) {
    }
    if (*line != ' ') return -1;
    ml = (size_t)(line - m);
    u = line + 1;
    for (line = u; *line != ' ' && *line != '\r'; line++) {
    }
    ul = (size_t)(line - u);
    while (*line != '\n') line++;
    for (line++; line < head_end - 2;) { /* header lines */
      const char *le = line;
      while (*le != '\r') le++;
      if (floor_header(line, le, "content-length:", &v))
        body = (size_t)strtoul(v, NULL, 10);
      else if (floor_header(line, le, "producer-epoch:", &v))
        epoch = v, epl = (size_t)(le - v);
      else if (floor_header(line, le, "producer-seq:", &v))
        seq = v, sql = (size_t)(le - v);
      line = le + 2;
    }
    if ((size_t)(e - head_end) < body) break; /* the body is not all here */
    floor_answer(t, c, m, ml, u, ul, head_end, body, epoch, epl, seq, sql);
    at = (size_t)(head_end - c->in) + body;
  }
  if (at > 0) {
    memmove(c->in, c->in + at, c->in_len - at);
    c->in_len -= at;
  }
  return 0;
}

/* EPOLLIN on c: read once, answer what is whole. */
static void floor_on_read(struct floor_thread *t, struct floor_conn *c) {
  ssize_t r;
  if (c->in_cap - c->in_len < FLOOR_READ) {
    c->in_cap = c->in_len + FLOOR_READ * 2;
    c->in = (char *)floor_alloc(c->in, c->in_cap);
  }
  r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (r <= 0) {
    floor_close(t, c);
    return;
  }
  c->in_len += (size_t)r;
  if (c->sub) { /* a subscriber has nothing more to say */
    c->in_len = 0;
    return;
  }
  if (floor_parse(t, c) < 0) {
    floor_close(t, c);
    return;
  }
  floor_flush(t, c);
}

static void floor_accept(struct floor_thread *t) {
  for (;;) {
    struct epoll_event ev;
    struct floor_conn *c;
    int one = 1, fd = accept4(t->lfd, NULL, NULL, SOCK_NONBLOCK);
    if (fd < 0) return;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c = (struct floor_conn *)floor_alloc(NULL, sizeof(*c));
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close(fd);
      floor_free(c);
    }
  }
}

/* End of a turn, durable: write each touched file's staged bytes in one
** write(); per core, fdatasync it now; with a pool, queue it.  Then give
** this turn's gates their write's number. */
static void floor_commit(struct floor_thread *t) {
  int i, k;
  for (i = 0; i < t->n_touched; i++) {
    int f = t->touched[i];
    struct floor_file *ff = &floor_files[f];
    struct floor_buf *s = &t->stage[f];
    size_t done = 0;
    pthread_mutex_lock(&ff->mu);
    while (done < s->len) {
      ssize_t r = write(ff->fd, s->p + done, s->len - done);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) floor_die("write");
      done += (size_t)r;
    }
    t->turn_seq[f] = ++ff->written;
    if (floor_pool) floor_queue_locked(f);
    pthread_mutex_unlock(&ff->mu);
    s->len = 0;
    if (!floor_pool) { /* group commit: one fdatasync for the turn */
      if (fdatasync(ff->fd) != 0) floor_die("fdatasync");
      pthread_mutex_lock(&ff->mu);
      ff->synced = t->turn_seq[f];
      pthread_mutex_unlock(&ff->mu);
    }
  }
  t->n_touched = 0;
  for (i = 0; i < t->n_waiting; i++) {
    struct floor_conn *c = t->waiting[i];
    for (k = c->n_gates - 1; k >= 0 && c->gates[k].seq == 0; k--)
      c->gates[k].seq = t->turn_seq[c->gates[k].file];
  }
}

/* Send what the syncs allow on every waiting connection; drop those with
** nothing left to wait for. */
static void floor_release(struct floor_thread *t) {
  int i = 0;
  while (i < t->n_waiting) {
    struct floor_conn *c = t->waiting[i];
    if (!c->dead) floor_flush(t, c);
    if (c->dead || c->n_gates == 0) {
      t->waiting[i] = t->waiting[--t->n_waiting];
      c->waiting = 0;
      if (c->dead) floor_free(c);
      continue;
    }
    i++;
  }
}

/* End of a turn, fan-out: every frame this thread has not sent yet goes
** to each of its subscribers in one write(). */
static void floor_send_frames(struct floor_thread *t) {
  int i;
  unsigned long long k;
  pthread_mutex_lock(&floor_ring_mu);
  if (floor_ring_head == t->sent_frames) {
    pthread_mutex_unlock(&floor_ring_mu);
    return;
  }
  if (floor_ring_head - t->sent_frames > FLOOR_RING) {
    fprintf(stderr, "floor: thread %d fell %llu frames behind\n", t->id,
            floor_ring_head - t->sent_frames);
    t->sent_frames = floor_ring_head - FLOOR_RING;
  }
  t->frames.len = 0;
  for (k = t->sent_frames; k < floor_ring_head; k++) {
    struct floor_buf *slot = &floor_ring[k % FLOOR_RING];
    floor_buf_add(&t->frames, slot->p, slot->len);
  }
  t->sent_frames = floor_ring_head;
  pthread_mutex_unlock(&floor_ring_mu);
  for (i = t->n_subs - 1; i >= 0; i--) { /* backwards: closes swap-remove */
    struct floor_conn *c = t->subs[i];
    if (c->out.len == 0) { /* the usual case: straight to the socket */
      ssize_t r = send(c->fd, t->frames.p, t->frames.len, MSG_NOSIGNAL);
      if (r < 0 && errno != EAGAIN && errno != EINTR) {
        floor_close(t, c);
        continue;
      }
      if (r < 0) r = 0;
      if ((size_t)r < t->frames.len) {
        floor_buf_add(&c->out, t->frames.p + r, t->frames.len - (size_t)r);
        floor_set_interest(t, c, 1);
      }
    } else {
      floor_buf_add(&c->out, t->frames.p, t->frames.len);
      floor_flush(t, c);
    }
  }
}

static void *floor_net_main(void *arg) {
  struct floor_thread *t = (struct floor_thread *)arg;
  struct epoll_event evs[256];
  for (;;) {
    int i, n = epoll_wait(t->ep, evs, 256, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) floor_die("epoll_wait");
    for (i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == &floor_tag_listen) {
        floor_accept(t);
      } else if (p == &floor_tag_event) {
        uint64_t v;
        if (read(t->efd, &v, sizeof(v)) < 0) {
        }
      } else {
        struct floor_conn *c = (struct floor_conn *)p;
        if (c->dead) continue;
        if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
          floor_on_read(t, c);
        if (!c->dead && (evs[i].events & EPOLLOUT)) floor_flush(t, c);
      }
    }
    if (floor_durable) {
      floor_commit(t);
      floor_release(t);
    }
    if (floor_fanout) floor_send_frames(t);
  }
  return NULL;
}

/* A file's sync thread: take a queued file, sync what it has, wake the
** network threads. */
static void *floor_sync_main(void *arg) {
  (void)arg;
  for (;;) {
    int f, i, again;
    unsigned long long target;
    struct floor_file *ff;
    uint64_t one = 1;
    pthread_mutex_lock(&floor_q_mu);
    while (floor_q_len == 0) pthread_cond_wait(&floor_q_cv, &floor_q_mu);
    f = floor_q[floor_q_head];
    floor_q_head = (floor_q_head + 1) % floor_n_files;
    floor_q_len--;
    pthread_mutex_unlock(&floor_q_mu);
    ff = &floor_files[f];
    pthread_mutex_lock(&ff->mu);
    ff->queued = 0;
    ff->syncing = 1;
    target = ff->written;
    pthread_mutex_unlock(&ff->mu);
    if (fdatasync(ff->fd) != 0) floor_die("fdatasync");
    pthread_mutex_lock(&ff->mu);
    ff->synced = target;
    ff->syncing = 0;
    again = ff->written > target;
    if (again) floor_queue_locked(f);
    pthread_mutex_unlock(&ff->mu);
    for (i = 0; i < floor_n_threads; i++)
      if (write(floor_threads[i].efd, &one, sizeof(one)) < 0) {
      }
  }
  return NULL;
}

static int floor_listen(int port) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  if (fd < 0) floor_die("socket");
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(0x7f000001);
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) floor_die("bind");
  if (listen(fd, 4096) != 0) floor_die("listen");
  return fd;
}

static int floor_http(const char *dir, int files, int sync_threads) {
  int i;
  signal(SIGPIPE, SIG_IGN);
  if (floor_n_threads < 1 || floor_n_threads > FLOOR_MAX_THREADS) {
    fprintf(stderr, "floor: --threads 1..%d\n", FLOOR_MAX_THREADS);
    return 2;
  }
  if (dir != NULL) {
    floor_durable = 1;
    floor_pool = files > 0 ? sync_threads : 0;
    floor_n_files = files > 0 ? files : floor_n_threads;
    if (floor_pool < 0 || (files > 0 && floor_pool < 1)) {
      fprintf(stderr, "floor: --files needs --sync-threads >= 1\n");
      return 2;
    }
    mkdir(dir, 0755);
    floor_files = (struct floor_file *)floor_alloc(
        NULL, (size_t)floor_n_files * sizeof(*floor_files));
    floor_q = (int *)floor_alloc(NULL, (size_t)floor_n_files * sizeof(int));
    for (i = 0; i < floor_n_files; i++) {
      char path[4096];
      snprintf(path, sizeof(path), "%s/%s-%d", dir,
               files > 0 ? "file" : "core", i);
      memset(&floor_files[i], 0, sizeof(floor_files[i]));
      pthread_mutex_init(&floor_files[i].mu, NULL);
      floor_files[i].fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND,
                               0644);
      if (floor_files[i].fd < 0) floor_die(path);
    }
  }
  for (i = 0; i < floor_n_threads; i++) {
    struct floor_thread *t = &floor_threads[i];
    struct epoll_event ev;
    t->id = i;
    t->ep = epoll_create1(0);
    t->lfd = floor_listen(floor_port);
    t->efd = eventfd(0, EFD_NONBLOCK);
    if (t->ep < 0 || t->efd < 0) floor_die("epoll/eventfd");
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = &floor_tag_listen;
    epoll_ctl(t->ep, EPOLL_CTL_ADD, t->lfd, &ev);
    ev.data.ptr = &floor_tag_event;
    epoll_ctl(t->ep, EPOLL_CTL_ADD, t->efd, &ev);
    if (floor_durable) {
      t->stage = (struct floor_buf *)floor_alloc(
          NULL, (size_t)floor_n_files * sizeof(*t->stage));
      memset(t->stage, 0, (size_t)floor_n_files * sizeof(*t->stage));
      t->touched = (int *)floor_alloc(NULL, (size_t)floor_n_files * sizeof(int));
      t->turn_seq = (unsigned long long *)floor_alloc(
          NULL, (size_t)floor_n_files * sizeof(*t->turn_seq));
    }
  }
  for (i = 0; i < floor_pool; i++) {
    pthread_t tid;
    if (pthread_create(&tid, NULL, floor_sync_main, NULL) != 0)
      floor_die("pthread_create");
  }
  for (i = 0; i < floor_n_threads; i++)
    if (pthread_create(&floor_threads[i].tid, NULL, floor_net_main,
                       &floor_threads[i]) != 0)
      floor_die("pthread_create");
  fprintf(stderr, "floor: %s on 127.0.0.1:%d, %d threads%s%s\n",
          floor_fanout ? "fanout" : "http", floor_port, floor_n_threads,
          floor_durable ? (floor_pool ? ", durable, file pool" : ", durable, "
                                                                 "per core")
                        : "",
          "");
  pthread_join(floor_threads[0].tid, NULL);
  return 0;
}

/* ------------------------------------------------------------ sync probes */

#define FLOOR_APPEND 256
#define FLOOR_SPREAD 64 /* files of the spread probes */
#define FLOOR_SYNCERS 16

static double floor_sync_seconds = 2.0;
static int floor_batch = 256;
static char floor_append_bytes[FLOOR_APPEND];

static int floor_open(const char *dir, const char *name, int i) {
  char path[4096];
  int fd;
  snprintf(path, sizeof(path), "%s/%s-%d", dir, name, i);
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  if (fd < 0) floor_die(path);
  return fd;
}

static void floor_write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t r = write(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) floor_die("write");
    p += r;
    n -= (size_t)r;
  }
}

/* The 16 syncers of files-64: round r syncs files [w*4, w*4+4) for
** worker w; the main thread waits for all before the next round. */
static pthread_mutex_t floor_sp_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t floor_sp_cv = PTHREAD_COND_INITIALIZER;
static long floor_sp_round;   /* the round to do; -1: stop */
static int floor_sp_left;     /* syncers not done with the round */
static int floor_sp_fds[FLOOR_SPREAD];

static void *floor_syncer_main(void *arg) {
  int w = (int)(intptr_t)arg, i, per = FLOOR_SPREAD / FLOOR_SYNCERS;
  long seen = 0;
  for (;;) {
    pthread_mutex_lock(&floor_sp_mu);
    while (floor_sp_round == seen) pthread_cond_wait(&floor_sp_cv, &floor_sp_mu);
    seen = floor_sp_round;
    pthread_mutex_unlock(&floor_sp_mu);
    if (seen < 0) return NULL;
    for (i = 0; i < per; i++)
      if (fdatasync(floor_sp_fds[w * per + i]) != 0) floor_die("fdatasync");
    pthread_mutex_lock(&floor_sp_mu);
    if (--floor_sp_left == 0) pthread_cond_broadcast(&floor_sp_cv);
    pthread_mutex_unlock(&floor_sp_mu);
  }
}

static void floor_report(const char *probe, const char *what, long appends,
                         double secs) {
  printf("floor-sync probe=%s %s appends=%ld seconds=%.2f appends_per_s=%.0f\n",
         probe, what, appends, secs, (double)appends / secs);
  fflush(stdout);
}

static int floor_sync(const char *dir) {
  char *batch, what[128];
  int i, per_file;
  long n;
  double t0, t;
  pthread_t tids[FLOOR_SYNCERS];
  if (floor_batch < FLOOR_SPREAD || floor_batch % FLOOR_SPREAD != 0) {
    fprintf(stderr, "floor: --batch must be a multiple of %d\n", FLOOR_SPREAD);
    return 2;
  }
  mkdir(dir, 0755);
  for (i = 0; i < FLOOR_APPEND; i++)
    floor_append_bytes[i] = (char)('a' + i % 26);
  batch = (char *)floor_alloc(NULL, (size_t)floor_batch * FLOOR_APPEND);
  for (i = 0; i < floor_batch; i++)
    memcpy(batch + (size_t)i * FLOOR_APPEND, floor_append_bytes, FLOOR_APPEND);

  { /* one-sync */
    int fd = floor_open(dir, "one", 0);
    t0 = floor_now();
    for (n = 0; (t = floor_now() - t0) < floor_sync_seconds; n++) {
      floor_write_all(fd, floor_append_bytes, FLOOR_APPEND);
      if (fdatasync(fd) != 0) floor_die("fdatasync");
    }
    close(fd);
    floor_report("one-sync", "files=1 batch=1", n, t);
  }
  { /* group-one */
    int fd = floor_open(dir, "group", 0);
    t0 = floor_now();
    for (n = 0; (t = floor_now() - t0) < floor_sync_seconds; n += floor_batch) {
      floor_write_all(fd, batch, (size_t)floor_batch * FLOOR_APPEND);
      if (fdatasync(fd) != 0) floor_die("fdatasync");
    }
    close(fd);
    snprintf(what, sizeof(what), "files=1 batch=%d", floor_batch);
    floor_report("group-one", what, n, t);
  }
  per_file = floor_batch / FLOOR_SPREAD;
  { /* files-64: 16 syncers */
    for (i = 0; i < FLOOR_SPREAD; i++) floor_sp_fds[i] = floor_open(dir, "spread", i);
    for (i = 0; i < FLOOR_SYNCERS; i++)
      if (pthread_create(&tids[i], NULL, floor_syncer_main,
                         (void *)(intptr_t)i) != 0)
        floor_die("pthread_create");
    t0 = floor_now();
    for (n = 0; (t = floor_now() - t0) < floor_sync_seconds; n += floor_batch) {
      for (i = 0; i < FLOOR_SPREAD; i++)
        floor_write_all(floor_sp_fds[i], batch, (size_t)per_file * FLOOR_APPEND);
      pthread_mutex_lock(&floor_sp_mu);
      floor_sp_left = FLOOR_SYNCERS;
      floor_sp_round++;
      pthread_cond_broadcast(&floor_sp_cv);
      while (floor_sp_left > 0) pthread_cond_wait(&floor_sp_cv, &floor_sp_mu);
      pthread_mutex_unlock(&floor_sp_mu);
    }
    pthread_mutex_lock(&floor_sp_mu);
    floor_sp_round = -1;
    pthread_cond_broadcast(&floor_sp_cv);
    pthread_mutex_unlock(&floor_sp_mu);
    for (i = 0; i < FLOOR_SYNCERS; i++) pthread_join(tids[i], NULL);
    snprintf(what, sizeof(what), "files=%d sync_threads=%d batch=%d",
             FLOOR_SPREAD, FLOOR_SYNCERS, floor_batch);
    floor_report("files-64", what, n, t);
  }
  { /* files-syncfs: the same writes, one syncfs */
    t0 = floor_now();
    for (n = 0; (t = floor_now() - t0) < floor_sync_seconds; n += floor_batch) {
      for (i = 0; i < FLOOR_SPREAD; i++)
        floor_write_all(floor_sp_fds[i], batch, (size_t)per_file * FLOOR_APPEND);
      if (syncfs(floor_sp_fds[0]) != 0) floor_die("syncfs");
    }
    for (i = 0; i < FLOOR_SPREAD; i++) close(floor_sp_fds[i]);
    snprintf(what, sizeof(what), "files=%d batch=%d", FLOOR_SPREAD,
             floor_batch);
    floor_report("files-syncfs", what, n, t);
  }
  free(batch);
  return 0;
}

/* ------------------------------------------------------------ main */

static void floor_usage(void) {
  fprintf(stderr,
          "usage: floor http --port P [--threads N] [--durable DIR\n"
          "                  [--files F --sync-threads T]]\n"
          "       floor fanout --port P [--threads N]\n"
          "       floor sync DIR [--seconds S] [--batch B]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *dir = NULL;
  int i, files = 0, sync_threads = 0;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  floor_n_threads = cpus > 0 ? (int)cpus : 1;
  if (argc < 2) floor_usage();
  if (strcmp(argv[1], "sync") == 0) {
    if (argc < 3) floor_usage();
    for (i = 3; i + 1 < argc; i += 2) {
      if (strcmp(argv[i], "--seconds") == 0) floor_sync_seconds = atof(argv[i + 1]);
      else if (strcmp(argv[i], "--batch") == 0) floor_batch = atoi(argv[i + 1]);
      else floor_usage();
    }
    if (i != argc) floor_usage();
    return floor_sync(argv[2]);
  }
  if (strcmp(argv[1], "fanout") == 0) floor_fanout = 1;
  else if (strcmp(argv[1], "http") != 0) floor_usage();
  for (i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--port") == 0) floor_port = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--threads") == 0) floor_n_threads = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--durable") == 0 && !floor_fanout) dir = argv[i + 1];
    else if (strcmp(argv[i], "--files") == 0) files = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--sync-threads") == 0) sync_threads = atoi(argv[i + 1]);
    else floor_usage();
  }
  if (i != argc || floor_port <= 0) floor_usage();
  if (files > 0 && dir == NULL) floor_usage();
  return floor_http(dir, files, sync_threads);
}
