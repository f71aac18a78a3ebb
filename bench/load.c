/*
** load.c -- an append load generator for Durable Streams servers.
**
**   cc -std=c99 -O2 bench/load.c -o bench/load
**   bench/load --port 4437 --streams 500 --conns 64 --seconds 10 --size 128
**
** It creates --streams text streams (PUT /v1/stream/<prefix>-<i>), then
** keeps --conns keep-alive connections busy, each with exactly one POST
** in flight (no pipelining), spreading the appends round-robin over all
** streams, never two at once to the same stream.  --producer 1 sends
** each stream's appends as an idempotent producer (Producer-Id,
** Producer-Epoch, Producer-Seq).  After one second of warm-up it counts for --seconds and
** prints one line:
**
**   appends=N appends_per_s=R p50_ms=.. p90_ms=.. p99_ms=.. p999_ms=..
**   max_ms=..
**   errors=E
**
** Latency is from the first byte sent to the last byte of the answer, on
** the monotonic clock.  Any answer other than 200/204, or a connection
** error, is an error; the program exits 1 if there was one.  Loopback
** only (127.0.0.1): it is a benchmark client, not a general one.
**
**   bench/load --port 4437 --sse 1000 --rate 50 --seconds 10
**
** SSE fan-out instead: --sse subscribers tail one stream
** (?offset=now&live=sse; with --sse-ports P1,P2,..., subscriber i on
** port P(i mod n), for a cluster's nodes; the stream is made and
** written on --port); once all have their first control event, one
** writer appends "t=<monotonic ns>" --rate times a second.  Each
** subscriber's latency for an event is from just before its POST to the
** arrival of its data line.  Prints events, delivered (of events x
** subscribers), missing, and p50 / p99 / max.
**
**   bench/load --port 4437 --catchup 1000 --bytes 1048576
**
** Catch-up replay: fills one stream with --bytes (64 KiB appends), opens
** --catchup connections, then has them all read it from the start at
** once, each following Stream-Next-Offset until Stream-Up-To-Date; the
** time each needs from the common start: p50 / p99 / max.
**
**   bench/load --port 4437 --longpoll 500
**
** Append-to-long-poll wake: a long-poll read waits at the tail (2 ms to
** park), an append is sent; the time from sending the append to the
** read's answer, --longpoll times: p50 / p99 / max.
**
**   bench/load --port 4437 --idle-streams 10000 --pid PID
**   bench/load --port 4437 --idle-sse 10000 --pid PID
**
** Memory: the server's resident set (VmRSS of /proc/PID/status, Linux)
** before and after creating that many small streams (64 bytes each), or
** opening that many SSE readers on one stream; the growth per stream or
** per connection.
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#ifdef __linux__
#include <sys/epoll.h>
#endif

static int load_port = 4437, load_streams = 500, load_conns = 64;
static int load_seconds = 10, load_size = 128;
static const char *load_prefix = "bench";
static int load_sse = 0, load_rate = 50;
static int load_producer = 0;        /* --producer: idempotent producers */
static unsigned char *load_busy;     /* per stream: an append in flight */
static unsigned long long *load_seq; /* per stream: next Producer-Seq */

static double load_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int load_connect_to(int port) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (fd < 0) return -1;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(0x7f000001);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

static int load_connect(void) { return load_connect_to(load_port); }

/* --sse-ports P,P,...: the ports subscriber i connects to, in turn
** (the writer stays on --port); none: all on --port. */
static int load_sse_ports[16], load_n_sse_ports;

/* The body of a chunked answer at p[0..len): its end offset (after the
** last chunk and the empty trailer line), with the data bytes in *data;
** 0 if incomplete, -1 if malformed. */
static long load_chunked(const char *p, size_t len, long *data) {
  size_t at = 0;
  *data = 0;
  for (;;) {
    size_t line = at;
    long size;
    char *end;
    while (line + 1 < len && !(p[line] == '\r' && p[line + 1] == '\n')) line++;
    if (line + 1 >= len) return 0;
    size = strtol(p + at, &end, 16);
    if (end == p + at || size < 0) return -1;
    at = line + 2;
    if (size == 0) { /* trailers end with an empty line */
      for (;;) {
        line = at;
        while (line + 1 < len && !(p[line] == '\r' && p[line + 1] == '\n'))
          line++;
        if (line + 1 >= len) return 0;
        if (line == at) return (long)(at + 2);
        at = line + 2;
      }
    }
    if (len < at + (size_t)size + 2) return 0;
    at += (size_t)size + 2;
    *data += size;
  }
}

/* If buf[0..len) holds a whole answer, return its length and the status
** (and, when body_bytes is not NULL, the bytes of its body, by
** Content-Length or chunked framing); 0 if more is needed, -1 if it
** cannot be parsed. */
static long load_answer_body(const char *buf, size_t len, int *status,
                             long *body_bytes) {
  const char *end = NULL, *p;
  size_t i, head;
  long body = 0;
  int chunked = 0;
  for (i = 3; i < len; i++)
    if (memcmp(buf + i - 3, "\r\n\r\n", 4) == 0) {
      end = buf + i + 1;
      break;
    }
  if (end == NULL) return 0;
  head = (size_t)(end - buf);
  if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0) return -1;
  *status = atoi(buf + 9);
  for (p = buf; p < end; p++) { /* the framing headers, case-insensitively */
    char name[19];
    if (p != buf && p[-1] != '\n') continue;
    for (i = 0; i < 18 && p + i < end; i++) name[i] = (char)(p[i] | 0x20);
    name[i] = '\0';
    if (strncmp(name, "content-length:", 15) == 0) body = atol(p + 15);
    if (strncmp(name, "transfer-encoding:", 18) == 0 &&
        strstr(p, "chunked") != NULL && strstr(p, "chunked") < end)
      chunked = 1;
  }
  if (chunked) {
    long data, n = load_chunked(end, len - head, &data);
    if (n <= 0) return n;
    if (body_bytes != NULL) *body_bytes = data;
    return (long)head + n;
  }
  if (len < head + (size_t)body) return 0;
  if (body_bytes != NULL) *body_bytes = body;
  return (long)(head + (size_t)body);
}

static long load_answer(const char *buf, size_t len, int *status) {
  return load_answer_body(buf, len, status, NULL);
}

/* One blocking request on a fresh connection; returns the status. */
static int load_once(const char *req, size_t n) {
  char buf[8192];
  size_t len = 0;
  int fd = load_connect(), status = -1;
  if (fd < 0) return -1;
  if (write(fd, req, n) != (ssize_t)n) {
    close(fd);
    return -1;
  }
  while (len < sizeof(buf)) {
    ssize_t r = read(fd, buf + len, sizeof(buf) - len);
    if (r <= 0) break;
    len += (size_t)r;
    if (load_answer(buf, len, &status) > 0) break;
  }
  close(fd);
  return status;
}

struct load_conn {
  int fd;
  int stream;
  char *req;
  size_t req_len, sent;
  char in[4096];
  size_t in_len;
  double start;
};

static double *load_lat;
static size_t load_n_lat, load_cap_lat;
static long load_errors;

static void load_record(double ms) {
  if (load_n_lat == load_cap_lat) {
    size_t cap = load_cap_lat ? load_cap_lat * 2 : 65536;
    double *p = (double *)realloc(load_lat, cap * sizeof(*p));
    if (p == NULL) return;
    load_lat = p;
    load_cap_lat = cap;
  }
  load_lat[load_n_lat++] = ms;
}

static int load_cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static char *load_body;

/* The next stream with no append in flight, after *next. */
static int load_pick(int *next) {
  int i, s = 0;
  for (i = 0; i < load_streams; i++) {
    s = (*next)++ % load_streams;
    if (!load_busy[s]) break;
  }
  load_busy[s] = 1;
  return s;
}

static void load_build(struct load_conn *c) {
  char head[512], prod[160] = "";
  int n;
  if (load_producer)
    snprintf(prod, sizeof(prod),
             "Producer-Id: load-%d\r\nProducer-Epoch: 0\r\n"
             "Producer-Seq: %llu\r\n",
             c->stream, load_seq[c->stream]);
  n = snprintf(head, sizeof(head),
               "POST /v1/stream/%s-%d HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Content-Type: text/plain\r\n%sContent-Length: %d\r\n\r\n",
               load_prefix, c->stream, prod, load_size);
  free(c->req);
  c->req = (char *)malloc((size_t)n + (size_t)load_size);
  if (c->req == NULL) exit(2);
  memcpy(c->req, head, (size_t)n);
  memcpy(c->req + n, load_body, (size_t)load_size);
  c->req_len = (size_t)n + (size_t)load_size;
  c->sent = 0;
  c->in_len = 0;
  c->start = load_now_ms();
}

static void load_usage(void) {
  fprintf(stderr,
          "usage: load [--port N] [--streams N] [--conns N] [--seconds N]\n"
          "            [--size BYTES] [--prefix NAME] [--producer 0|1]\n"
          "       load [--port N] --sse SUBSCRIBERS [--rate N] [--seconds N]\n"
          "       load [--port N] --catchup READERS [--bytes N]\n"
          "       load [--port N] --longpoll ROUNDS\n"
          "       load [--port N] --idle-streams N --pid SERVER_PID\n"
          "       load [--port N] --idle-sse N --pid SERVER_PID\n");
  exit(2);
}

/* ------------------------------------------------------------ SSE */

struct load_sub {
  int fd;
  int ready; /* saw the first control event */
  char line[512];
  size_t len;
};

static double load_ns_to_ms(long long ns) { return (double)ns / 1e6; }

static long long load_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Feed bytes of an SSE response (chunked) to a subscriber: whole lines
** are looked at; "data:t=N" lines are events, "event: control" marks it
** ready.  Chunk-size lines and headers are simply other lines. */
static void load_sub_feed(struct load_sub *u, const char *p, size_t n,
                          long *delivered) {
  size_t i;
  for (i = 0; i < n; i++) {
    if (p[i] != '\n') {
      if (u->len < sizeof(u->line) - 1) u->line[u->len++] = p[i];
      continue;
    }
    u->line[u->len] = '\0';
    if (strncmp(u->line, "data:t=", 7) == 0) {
      long long t = atoll(u->line + 7);
      load_record(load_ns_to_ms(load_now_ns() - t));
      (*delivered)++;
    } else if (strncmp(u->line, "event: control", 14) == 0) {
      u->ready = 1;
    }
    u->len = 0;
  }
}

static int load_sse_run(void) {
  struct load_sub *subs;
  struct pollfd *pf;
  char req[512], buf[65536];
  int i, n_ready = 0, writer = -1, wbusy = 0, n;
#ifdef __linux__
  int ep = -1;
#endif
  long delivered = 0, sent = 0;
  double t_next = 0, t_end = 0, t_grace = 0, now, t_ready_by;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { /* 1000 sockets need room */
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  n = snprintf(req, sizeof(req),
               "PUT /v1/stream/%s-sse HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Content-Type: text/plain\r\nContent-Length: 0\r\n"
               "Connection: close\r\n\r\n",
               load_prefix);
  i = load_once(req, (size_t)n);
  if (i != 200 && i != 201) {
    fprintf(stderr, "load: PUT answered %d\n", i);
    return 1;
  }
  subs = (struct load_sub *)calloc((size_t)load_sse, sizeof(*subs));
  pf = (struct pollfd *)calloc((size_t)load_sse + 1, sizeof(*pf));
  if (subs == NULL || pf == NULL) return 2;
  n = snprintf(req, sizeof(req),
               "GET /v1/stream/%s-sse?offset=now&live=sse HTTP/1.1\r\n"
               "Host: 127.0.0.1\r\n\r\n",
               load_prefix);
  for (i = 0; i < load_sse; i++) {
    if ((subs[i].fd = load_n_sse_ports > 0
                          ? load_connect_to(
                                load_sse_ports[i % load_n_sse_ports])
                          : load_connect()) < 0 ||
        write(subs[i].fd, req, (size_t)n) != n) {
      fprintf(stderr, "load: subscriber %d: %s\n", i, strerror(errno));
      return 1;
    }
    fcntl(subs[i].fd, F_SETFL, fcntl(subs[i].fd, F_GETFL) | O_NONBLOCK);
  }
  if ((writer = load_connect()) < 0) return 1;
  t_ready_by = load_now_ms() + 20000.0;
  for (;;) {
    now = load_now_ms();
    if (n_ready == load_sse && t_end == 0) { /* all listening: go */
      t_next = now;
      t_end = now + 1000.0 * load_seconds;
      t_grace = t_end + 1000.0;
    }
    if (t_end == 0 && now > t_ready_by) {
      fprintf(stderr, "load: only %d of %d subscribers became ready\n",
              n_ready, load_sse);
      for (i = 0; i < load_sse; i++)
        if (!subs[i].ready)
          fprintf(stderr, "load: subscriber %d (port %d) not ready\n", i,
                  load_n_sse_ports > 0
                      ? load_sse_ports[i % load_n_sse_ports]
                      : load_port);
      return 1;
    }
    if (t_grace != 0 && now >= t_grace) break;
    if (t_end != 0 && now < t_end && now >= t_next && !wbusy) {
      char body[64], post[256];
      int bl = snprintf(body, sizeof(body), "t=%lld\n", load_now_ns());
      int pl = snprintf(post, sizeof(post),
                        "POST /v1/stream/%s-sse HTTP/1.1\r\nHost: 127.0.0.1"
                        "\r\nContent-Type: text/plain\r\nContent-Length: %d"
                        "\r\n\r\n%s",
                        load_prefix, bl, body);
      if (write(writer, post, (size_t)pl) != pl) return 1;
      wbusy = 1;
      sent++;
      t_next += 1000.0 / load_rate;
    }
#ifdef __linux__
    /* epoll: the cost of a wait does not grow with the subscribers, so
    ** the generator's own share of the latency stays small */
    if (ep < 0) {
      ep = epoll_create1(0);
      for (i = 0; i <= load_sse && ep >= 0; i++) {
        struct epoll_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        ev.data.u32 = (uint32_t)i;
        epoll_ctl(ep, EPOLL_CTL_ADD, i < load_sse ? subs[i].fd : writer, &ev);
      }
      if (ep < 0) return 2;
    }
    {
      struct epoll_event evs[256];
      int k, ne = epoll_wait(ep, evs, 256, 1);
      if (ne < 0 && errno != EINTR) return 2;
      for (i = 0; i <= load_sse; i++) pf[i].revents = 0;
      for (k = 0; k < ne; k++) pf[evs[k].data.u32].revents = POLLIN;
    }
#else
    for (i = 0; i < load_sse; i++) {
      pf[i].fd = subs[i].fd;
      pf[i].events = POLLIN;
      pf[i].revents = 0;
    }
    pf[load_sse].fd = writer;
    pf[load_sse].events = POLLIN;
    pf[load_sse].revents = 0;
    if (poll(pf, (nfds_t)load_sse + 1, 1) < 0 && errno != EINTR) return 2;
#endif
    for (i = 0; i < load_sse; i++) {
      ssize_t r;
      int was;
      if (pf[i].revents == 0) continue;
      r = read(subs[i].fd, buf, sizeof(buf));
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        fprintf(stderr, "load: subscriber %d closed\n", i);
        return 1;
      }
      was = subs[i].ready;
      load_sub_feed(&subs[i], buf, (size_t)r, &delivered);
      if (!was && subs[i].ready) n_ready++;
    }
    if (pf[load_sse].revents) { /* the writer's answer: one at a time */
      int status = 0;
      ssize_t r = read(writer, buf, sizeof(buf));
      if (r <= 0 || load_answer(buf, (size_t)r, &status) <= 0 ||
          (status != 200 && status != 204)) {
        fprintf(stderr, "load: append failed (%d)\n", status);
        return 1;
      }
      wbusy = 0;
    }
  }
  if (load_n_lat == 0) {
    fprintf(stderr, "load: no event was delivered\n");
    return 1;
  }
  qsort(load_lat, load_n_lat, sizeof(*load_lat), load_cmp);
  printf("subscribers=%d rate=%d seconds=%d events=%ld delivered=%ld "
         "missing=%ld p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
         load_sse, load_rate, load_seconds, sent, delivered,
         sent * load_sse - delivered, load_lat[load_n_lat / 2],
         load_lat[(size_t)(load_n_lat * 0.99)], load_lat[load_n_lat - 1]);
  return sent * load_sse == delivered ? 0 : 1;
}


/* ------------------------------------------------------------ catch-up */

/* A response header's value (case-insensitive name), copied into out;
** 1 if present. */
static int load_hdr(const char *head, size_t len, const char *name, char *out,
                    size_t cap) {
  size_t n = strlen(name), i = 0, k;
  while (i + n + 1 < len) {
    if ((i == 0 || head[i - 1] == '\n') && head[i + n] == ':') {
      for (k = 0; k < n; k++)
        if ((head[i + k] | 0x20) != (name[k] | 0x20)) break;
      if (k == n) {
        const char *v = head + i + n + 1, *e;
        while (*v == ' ') v++;
        for (e = v; e < head + len && *e != '\r' && *e != '\n'; e++) {
        }
        if ((size_t)(e - v) >= cap) return 0;
        memcpy(out, v, (size_t)(e - v));
        out[e - v] = '\0';
        return 1;
      }
    }
    i++;
  }
  return 0;
}

struct load_reader {
  int fd;
  char offset[96]; /* where the next read starts */
  char *in;        /* the answer being read */
  size_t in_len, in_cap;
  long long bytes; /* body bytes so far */
  double done_ms;  /* 0: not finished */
};

static void load_reader_send(struct load_reader *r) {
  char req[256];
  int n = snprintf(req, sizeof(req),
                   "GET /v1/stream/%s-catchup?offset=%s HTTP/1.1\r\n"
                   "Host: 127.0.0.1\r\n\r\n",
                   load_prefix, r->offset);
  if (write(r->fd, req, (size_t)n) != n) {
    fprintf(stderr, "load: catch-up request failed\n");
    exit(1);
  }
  r->in_len = 0;
}

/* Fill <prefix>-catchup with `total` bytes in appends of 64 KiB. */
static int load_fill(const char *name, long long total) {
  char head[256];
  static char chunk[65536];
  long long done = 0;
  int n, st;
  memset(chunk, 'c', sizeof(chunk));
  n = snprintf(head, sizeof(head),
               "PUT /v1/stream/%s-%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Content-Type: application/octet-stream\r\nContent-Length: 0"
               "\r\nConnection: close\r\n\r\n",
               load_prefix, name);
  st = load_once(head, (size_t)n);
  if (st != 200 && st != 201) return -1;
  while (done < total) {
    int len = total - done < (long long)sizeof(chunk) ? (int)(total - done)
                                                      : (int)sizeof(chunk);
    char *req = (char *)malloc(sizeof(head) + (size_t)len);
    if (req == NULL) return -1;
    n = snprintf(req, sizeof(head),
                 "POST /v1/stream/%s-%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Content-Type: application/octet-stream\r\nContent-Length: "
                 "%d\r\nConnection: close\r\n\r\n",
                 load_prefix, name, len);
    memcpy(req + n, chunk, (size_t)len);
    st = load_once(req, (size_t)n + (size_t)len);
    free(req);
    if (st != 200 && st != 204) return -1;
    done += len;
  }
  return 0;
}

/* --catchup N: N readers read the same --bytes stream from the start at
** once, each following Stream-Next-Offset until Stream-Up-To-Date. */
static int load_catchup_run(int n_readers, long long total) {
  struct load_reader *rs;
  struct pollfd *pf;
  double t0, now;
  int i, left = n_readers;
  long long bad = 0;
  if (load_fill("catchup", total) != 0) {
    fprintf(stderr, "load: could not fill the catch-up stream\n");
    return 1;
  }
  rs = (struct load_reader *)calloc((size_t)n_readers, sizeof(*rs));
  pf = (struct pollfd *)calloc((size_t)n_readers, sizeof(*pf));
  if (rs == NULL || pf == NULL) return 2;
  for (i = 0; i < n_readers; i++) { /* connect all first, then start */
    if ((rs[i].fd = load_connect()) < 0) {
      fprintf(stderr, "load: reader %d: %s\n", i, strerror(errno));
      return 1;
    }
    strcpy(rs[i].offset, "-1");
  }
  t0 = load_now_ms();
  for (i = 0; i < n_readers; i++) load_reader_send(&rs[i]);
  while (left > 0) {
    now = load_now_ms();
    if (now - t0 > 120000.0) {
      fprintf(stderr, "load: catch-up took over 2 minutes\n");
      return 1;
    }
    for (i = 0; i < n_readers; i++) {
      pf[i].fd = rs[i].done_ms > 0 ? -1 : rs[i].fd;
      pf[i].events = POLLIN;
      pf[i].revents = 0;
    }
    if (poll(pf, (nfds_t)n_readers, 100) < 0 && errno != EINTR) return 2;
    for (i = 0; i < n_readers; i++) {
      struct load_reader *r = &rs[i];
      char tmp[65536], v[96];
      ssize_t got;
      long used, body = 0;
      int status = 0;
      if (pf[i].revents == 0) continue;
      got = read(r->fd, tmp, sizeof(tmp));
      if (got <= 0) {
        fprintf(stderr, "load: reader %d: connection closed\n", i);
        return 1;
      }
      if (r->in_len + (size_t)got > r->in_cap) {
        r->in_cap = (r->in_len + (size_t)got) * 2;
        r->in = (char *)realloc(r->in, r->in_cap);
        if (r->in == NULL) return 2;
      }
      memcpy(r->in + r->in_len, tmp, (size_t)got);
      r->in_len += (size_t)got;
      used = load_answer_body(r->in, r->in_len, &status, &body);
      if (used < 0) return 1;
      if (used == 0) continue;
      if (status != 200) {
        fprintf(stderr, "load: reader %d: status %d\n", i, status);
        return 1;
      }
      r->bytes += body;
      if (!load_hdr(r->in, (size_t)used, "stream-next-offset", r->offset,
                    sizeof(r->offset)))
        return 1;
      if (load_hdr(r->in, (size_t)used, "stream-up-to-date", v, sizeof(v)) &&
          strcmp(v, "true") == 0) {
        r->done_ms = load_now_ms();
        load_record(r->done_ms - t0);
        if (r->bytes != total) bad++;
        close(r->fd);
        left--;
      } else {
        load_reader_send(r);
      }
    }
  }
  qsort(load_lat, load_n_lat, sizeof(*load_lat), load_cmp);
  printf("readers=%d bytes=%lld complete=%d wrong_size=%lld p50_ms=%.1f "
         "p99_ms=%.1f max_ms=%.1f\n",
         n_readers, total, n_readers, bad, load_lat[load_n_lat / 2],
         load_lat[(size_t)(load_n_lat * 0.99)], load_lat[load_n_lat - 1]);
  return bad ? 1 : 0;
}

/* ------------------------------------------------------------ long-poll */

/* --longpoll N: N round trips of: a long-poll read waits at the tail;
** an append is sent; time from sending the append to the read's answer. */
static int load_longpoll_run(int rounds) {
  char req[512], buf[8192], off[96] = "now";
  int reader, writer, i, n, status;
  static const char body[] = "x";
  if (load_fill("lp", 1) != 0) return 1;
  if ((reader = load_connect()) < 0 || (writer = load_connect()) < 0)
    return 1;
  /* the tail: one catch-up read */
  n = snprintf(req, sizeof(req),
               "GET /v1/stream/%s-lp?offset=-1 HTTP/1.1\r\nHost: 127.0.0.1"
               "\r\n\r\n",
               load_prefix);
  if (write(reader, req, (size_t)n) != n) return 1;
  for (n = 0;;) {
    ssize_t r = read(reader, buf + n, sizeof(buf) - (size_t)n);
    long used;
    if (r <= 0) return 1;
    n += (int)r;
    if ((used = load_answer(buf, (size_t)n, &status)) > 0) {
      load_hdr(buf, (size_t)used, "stream-next-offset", off, sizeof(off));
      break;
    }
  }
  for (i = 0; i < rounds; i++) {
    double t_post;
    struct timespec ts = {0, 2000000}; /* 2 ms: the read is parked */
    int pl;
    n = snprintf(req, sizeof(req),
                 "GET /v1/stream/%s-lp?offset=%s&live=long-poll HTTP/1.1\r\n"
                 "Host: 127.0.0.1\r\n\r\n",
                 load_prefix, off);
    if (write(reader, req, (size_t)n) != n) return 1;
    nanosleep(&ts, NULL);
    pl = snprintf(req, sizeof(req),
                  "POST /v1/stream/%s-lp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  "Content-Type: application/octet-stream\r\n"
                  "Content-Length: 1\r\n\r\n%s",
                  load_prefix, body);
    t_post = load_now_ms();
    if (write(writer, req, (size_t)pl) != pl) return 1;
    for (n = 0;;) { /* the long-poll's answer */
      ssize_t r = read(reader, buf + n, sizeof(buf) - (size_t)n);
      long used;
      if (r <= 0) return 1;
      n += (int)r;
      if ((used = load_answer(buf, (size_t)n, &status)) > 0) {
        load_record(load_now_ms() - t_post);
        if (status != 200) {
          fprintf(stderr, "load: long-poll answered %d\n", status);
          return 1;
        }
        load_hdr(buf, (size_t)used, "stream-next-offset", off, sizeof(off));
        break;
      }
    }
    for (n = 0;;) { /* the append's answer */
      ssize_t r = read(writer, buf + n, sizeof(buf) - (size_t)n);
      if (r <= 0) return 1;
      n += (int)r;
      if (load_answer(buf, (size_t)n, &status) > 0) break;
    }
  }
  qsort(load_lat, load_n_lat, sizeof(*load_lat), load_cmp);
  printf("rounds=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n", rounds,
         load_lat[load_n_lat / 2], load_lat[(size_t)(load_n_lat * 0.99)],
         load_lat[load_n_lat - 1]);
  return 0;
}

/* ------------------------------------------------------------ memory */

/* The resident set of process pid, in KiB (from /proc), or -1. */
static long load_rss_kib(int pid) {
  char path[64], line[256];
  long kib = -1;
  FILE *f;
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  if ((f = fopen(path, "r")) == NULL) return -1;
  while (fgets(line, sizeof(line), f) != NULL)
    if (strncmp(line, "VmRSS:", 6) == 0) kib = atol(line + 6);
  fclose(f);
  return kib;
}

static void load_settle(void) {
  struct timespec ts = {1, 0};
  nanosleep(&ts, NULL);
}

/* --idle-streams N --pid P: the server's RSS growth per stream after
** creating N small streams (one 64-byte append each). */
static int load_idle_streams_run(int n, int pid) {
  long before, after;
  int i;
  char req[512];
  load_settle();
  before = load_rss_kib(pid);
  for (i = 0; i < n; i++) {
    int len = snprintf(req, sizeof(req),
                       "PUT /v1/stream/%s-idle-%d HTTP/1.1\r\nHost: "
                       "127.0.0.1\r\nContent-Type: text/plain\r\n"
                       "Content-Length: 64\r\nConnection: close\r\n\r\n"
                       "%064d",
                       load_prefix, i, i);
    int st = load_once(req, (size_t)len);
    if (st != 201 && st != 200) {
      fprintf(stderr, "load: PUT answered %d\n", st);
      return 1;
    }
  }
  load_settle();
  after = load_rss_kib(pid);
  if (before < 0 || after < 0) return 1;
  printf("idle_streams=%d rss_before_kib=%ld rss_after_kib=%ld "
         "bytes_per_stream=%.0f\n",
         n, before, after, (double)(after - before) * 1024.0 / n);
  return 0;
}

/* --idle-sse N --pid P: the server's RSS growth per connection with N
** SSE readers tailing one stream (all have had their first event). */
static int load_idle_sse_run(int n, int pid) {
  char req[256], buf[4096];
  long before, after;
  int i, n_ready = 0, *fds, *ready;
  double t_end;
  struct pollfd *pf;
  if (load_fill("idle-sse", 1) != 0) return 1;
  fds = (int *)calloc((size_t)n, sizeof(*fds));
  ready = (int *)calloc((size_t)n, sizeof(*ready));
  pf = (struct pollfd *)calloc((size_t)n, sizeof(*pf));
  if (fds == NULL || ready == NULL || pf == NULL) return 2;
  load_settle();
  before = load_rss_kib(pid);
  int len = snprintf(req, sizeof(req),
                     "GET /v1/stream/%s-idle-sse?offset=now&live=sse "
                     "HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                     load_prefix);
  for (i = 0; i < n; i++) {
    if ((fds[i] = load_connect()) < 0 ||
        write(fds[i], req, (size_t)len) != len) {
      fprintf(stderr, "load: SSE reader %d: %s\n", i, strerror(errno));
      return 1;
    }
  }
  t_end = load_now_ms() + 60000.0;
  while (n_ready < n && load_now_ms() < t_end) { /* first bytes from each */
    for (i = 0; i < n; i++) {
      pf[i].fd = ready[i] ? -1 : fds[i];
      pf[i].events = POLLIN;
      pf[i].revents = 0;
    }
    if (poll(pf, (nfds_t)n, 100) < 0 && errno != EINTR) return 2;
    for (i = 0; i < n; i++) {
      if (pf[i].revents == 0) continue;
      if (read(fds[i], buf, sizeof(buf)) <= 0) {
        fprintf(stderr, "load: SSE reader %d closed\n", i);
        return 1;
      }
      ready[i] = 1;
      n_ready++;
    }
  }
  load_settle();
  after = load_rss_kib(pid);
  if (n_ready < n || before < 0 || after < 0) {
    fprintf(stderr, "load: %d of %d SSE readers answered\n", n_ready, n);
    return 1;
  }
  printf("idle_sse=%d rss_before_kib=%ld rss_after_kib=%ld "
         "bytes_per_conn=%.0f\n",
         n, before, after, (double)(after - before) * 1024.0 / n);
  for (i = 0; i < n; i++) close(fds[i]);
  return 0;
}

int main(int argc, char **argv) {
  struct load_conn *cs;
  struct pollfd *pf;
  double t_start, t_count, t_end, now;
  long counted = 0;
  int i, next_stream = 0;
  int catchup = 0, longpoll = 0, idle_streams = 0, idle_sse = 0, pid = 0;
  long long bytes = 1048576;
  for (i = 1; i < argc; i++) {
    if (i + 1 >= argc) load_usage();
    if (strcmp(argv[i], "--port") == 0) load_port = atoi(argv[++i]);
    else if (strcmp(argv[i], "--streams") == 0) load_streams = atoi(argv[++i]);
    else if (strcmp(argv[i], "--conns") == 0) load_conns = atoi(argv[++i]);
    else if (strcmp(argv[i], "--seconds") == 0) load_seconds = atoi(argv[++i]);
    else if (strcmp(argv[i], "--size") == 0) load_size = atoi(argv[++i]);
    else if (strcmp(argv[i], "--prefix") == 0) load_prefix = argv[++i];
    else if (strcmp(argv[i], "--sse") == 0) load_sse = atoi(argv[++i]);
    else if (strcmp(argv[i], "--rate") == 0) load_rate = atoi(argv[++i]);
    else if (strcmp(argv[i], "--sse-ports") == 0) {
      char *p = argv[++i];
      while (*p != '\0' && load_n_sse_ports < 16) {
        load_sse_ports[load_n_sse_ports++] = (int)strtol(p, &p, 10);
        if (*p == ',') p++;
        else break;
      }
    }
    else if (strcmp(argv[i], "--producer") == 0) load_producer = atoi(argv[++i]);
    else if (strcmp(argv[i], "--catchup") == 0) catchup = atoi(argv[++i]);
    else if (strcmp(argv[i], "--bytes") == 0) bytes = atoll(argv[++i]);
    else if (strcmp(argv[i], "--longpoll") == 0) longpoll = atoi(argv[++i]);
    else if (strcmp(argv[i], "--idle-streams") == 0) idle_streams = atoi(argv[++i]);
    else if (strcmp(argv[i], "--idle-sse") == 0) idle_sse = atoi(argv[++i]);
    else if (strcmp(argv[i], "--pid") == 0) pid = atoi(argv[++i]);
    else load_usage();
  }
  {
    struct rlimit rl; /* thousands of sockets need room */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
  }
  if (catchup > 0) return load_catchup_run(catchup, bytes);
  if (longpoll > 0) return load_longpoll_run(longpoll);
  if (idle_streams > 0 && pid > 0) return load_idle_streams_run(idle_streams, pid);
  if (idle_sse > 0 && pid > 0) return load_idle_sse_run(idle_sse, pid);
  if (load_sse > 0) {
    if (load_rate < 1 || load_seconds < 1) load_usage();
    return load_sse_run();
  }
  if (load_streams < 1 || load_conns < 1 || load_seconds < 1 || load_size < 1)
    load_usage();
  if (load_conns > load_streams) load_conns = load_streams; /* one each */
  load_body = (char *)malloc((size_t)load_size);
  load_busy = (unsigned char *)calloc((size_t)load_streams, 1);
  load_seq = (unsigned long long *)calloc((size_t)load_streams,
                                          sizeof(*load_seq));
  if (load_body == NULL || load_busy == NULL || load_seq == NULL) return 2;
  for (i = 0; i < load_size; i++) load_body[i] = (char)('a' + i % 26);
  for (i = 0; i < load_streams; i++) { /* create the streams */
    char req[256];
    int n = snprintf(req, sizeof(req),
                     "PUT /v1/stream/%s-%d HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: text/plain\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n",
                     load_prefix, i);
    int st = load_once(req, (size_t)n);
    if (st != 200 && st != 201) {
      fprintf(stderr, "load: PUT stream %d answered %d\n", i, st);
      return 1;
    }
  }
  cs = (struct load_conn *)calloc((size_t)load_conns, sizeof(*cs));
  pf = (struct pollfd *)calloc((size_t)load_conns, sizeof(*pf));
  if (cs == NULL || pf == NULL) return 2;
  for (i = 0; i < load_conns; i++) {
    if ((cs[i].fd = load_connect()) < 0) {
      fprintf(stderr, "load: connect: %s\n", strerror(errno));
      return 1;
    }
    fcntl(cs[i].fd, F_SETFL, fcntl(cs[i].fd, F_GETFL) | O_NONBLOCK);
    cs[i].stream = load_pick(&next_stream);
    load_build(&cs[i]);
  }
  t_start = load_now_ms();
  t_count = t_start + 1000.0; /* one second of warm-up */
  t_end = t_count + 1000.0 * load_seconds;
  for (;;) {
    now = load_now_ms();
    if (now >= t_end) break;
    for (i = 0; i < load_conns; i++) {
      pf[i].fd = cs[i].fd;
      pf[i].events = cs[i].sent < cs[i].req_len ? POLLOUT : POLLIN;
      pf[i].revents = 0;
    }
    if (poll(pf, (nfds_t)load_conns, 100) < 0 && errno != EINTR) return 2;
    for (i = 0; i < load_conns; i++) {
      struct load_conn *c = &cs[i];
      ssize_t r;
      long used;
      int status = 0;
      if (pf[i].revents == 0) continue;
      if (c->sent < c->req_len) {
        r = write(c->fd, c->req + c->sent, c->req_len - c->sent);
        if (r > 0) c->sent += (size_t)r;
        else if (r < 0 && errno != EAGAIN) goto broken;
        continue;
      }
      r = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
      if (r == 0 || (r < 0 && errno != EAGAIN)) goto broken;
      if (r < 0) continue;
      c->in_len += (size_t)r;
      used = load_answer(c->in, c->in_len, &status);
      if (used < 0 || (used == 0 && c->in_len == sizeof(c->in))) goto broken;
      if (used == 0) continue;
      now = load_now_ms();
      if (status != 200 && status != 204) {
        if (load_errors++ < 5)
          fprintf(stderr, "load: stream %d answered %d\n", c->stream, status);
      } else {
        load_seq[c->stream]++;
        if (c->start >= t_count) {
          load_record(now - c->start);
          counted++;
        }
      }
      load_busy[c->stream] = 0;
      c->stream = load_pick(&next_stream);
      load_build(c);
      continue;
    broken:
      if (load_errors++ < 5) fprintf(stderr, "load: connection failed\n");
      close(c->fd);
      if ((c->fd = load_connect()) < 0) return 1;
      fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
      load_build(c);
    }
  }
  if (load_n_lat == 0) {
    fprintf(stderr, "load: nothing was acknowledged\n");
    return 1;
  }
  qsort(load_lat, load_n_lat, sizeof(*load_lat), load_cmp);
  printf("streams=%d conns=%d size=%d producer=%d seconds=%d appends=%ld "
         "appends_per_s=%.0f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f p999_ms=%.2f "
         "max_ms=%.2f errors=%ld\n",
         load_streams, load_conns, load_size, load_producer, load_seconds,
         counted,
         (double)counted / load_seconds, load_lat[load_n_lat / 2],
         load_lat[(size_t)(load_n_lat * 0.9)],
         load_lat[(size_t)(load_n_lat * 0.99)],
         load_lat[(size_t)(load_n_lat * 0.999)], load_lat[load_n_lat - 1],
         load_errors);
  return load_errors ? 1 : 0;
}
