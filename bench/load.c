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
** (?offset=now&live=sse); once all have their first control event, one
** writer appends "t=<monotonic ns>" --rate times a second.  Each
** subscriber's latency for an event is from just before its POST to the
** arrival of its data line.  Prints events, delivered (of events x
** subscribers), missing, and p50 / p99 / max.
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

static int load_connect(void) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (fd < 0) return -1;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)load_port);
  a.sin_addr.s_addr = htonl(0x7f000001);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

/* If buf[0..len) holds a whole answer, return its length and the status;
** 0 if more is needed, -1 if it cannot be parsed. */
static long load_answer(const char *buf, size_t len, int *status) {
  const char *end = NULL, *p;
  size_t i, head;
  long body = 0;
  for (i = 3; i < len; i++)
    if (memcmp(buf + i - 3, "\r\n\r\n", 4) == 0) {
      end = buf + i + 1;
      break;
    }
  if (end == NULL) return 0;
  head = (size_t)(end - buf);
  if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0) return -1;
  *status = atoi(buf + 9);
  for (p = buf; p < end; p++) { /* Content-Length, case-insensitively */
    if ((*p == 'C' || *p == 'c') && end - p > 15 &&
        (p == buf || p[-1] == '\n')) {
      char name[16];
      for (i = 0; i < 15; i++) name[i] = (char)(p[i] | 0x20);
      name[15] = '\0';
      if (memcmp(name, "content-length:", 15) == 0) body = atol(p + 15);
    }
  }
  if (len < head + (size_t)body) return 0;
  return (long)(head + (size_t)body);
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
          "       load [--port N] --sse SUBSCRIBERS [--rate N] [--seconds N]\n");
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
    if ((subs[i].fd = load_connect()) < 0 ||
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
    for (i = 0; i < load_sse; i++) {
      pf[i].fd = subs[i].fd;
      pf[i].events = POLLIN;
      pf[i].revents = 0;
    }
    pf[load_sse].fd = writer;
    pf[load_sse].events = POLLIN;
    pf[load_sse].revents = 0;
    if (poll(pf, (nfds_t)load_sse + 1, 1) < 0 && errno != EINTR) return 2;
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

int main(int argc, char **argv) {
  struct load_conn *cs;
  struct pollfd *pf;
  double t_start, t_count, t_end, now;
  long counted = 0;
  int i, next_stream = 0;
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
    else if (strcmp(argv[i], "--producer") == 0) load_producer = atoi(argv[++i]);
    else load_usage();
  }
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
