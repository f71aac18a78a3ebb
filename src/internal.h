/*
** internal.h -- system headers, shared internal types and the prototypes
** that cross part boundaries.  Only this header includes system headers.
**
** Every cross-part function is declared URSULA_PRIVATE: `static` in the
** amalgamation (nothing but ursula_* leaves the object file), empty when
** the parts are compiled one by one (make test-split).
*/
#ifndef URSULA_INTERNAL_H
#define URSULA_INTERNAL_H

#include "prefix.h"
#include "config.h"
#include "../ursula.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>
#include <pthread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <dirent.h>
#include <sys/file.h>
#if URSULA_ENABLE_EPOLL
#include <sys/epoll.h>
#endif
#if URSULA_ENABLE_TLS
#include <bearssl.h>
#endif

#ifndef URSULA_PRIVATE
#define URSULA_PRIVATE
#endif

/* Marks the parts of an interface that the next roadmap step (Raft) calls
** and the unit tests exercise already, so the single-node build does not
** warn that they are unused. */
#if defined(__GNUC__)
#define URSULA_UNUSED __attribute__((unused))
#else
#define URSULA_UNUSED
#endif

#if URSULA_ENABLE_ASSERT
#define URSULA_ASSERT(x) \
  ((x) ? (void)0 : util_assert_fail(#x, __FILE__, __LINE__))
#else
#define URSULA_ASSERT(x) ((void)0)
#endif

/* ------------------------------------------------------------------ util.c
** Byte views, growable buffers, hashing, checksums, encodings. */

/* A non-owning view of bytes; not NUL-terminated in general. */
struct str {
  const char *ptr;
  size_t len;
};

/* A growable byte buffer.  Zero-initialised is empty and valid.  Owns ptr;
** buf_free() releases it.  ptr may move on every append. */
struct buf {
  char *ptr;
  size_t len;
  size_t cap;
};

#if URSULA_ENABLE_ASSERT
URSULA_PRIVATE void util_assert_fail(const char *expr, const char *file,
                                     int line);
#endif
URSULA_PRIVATE struct str util_str(const char *cstr);
URSULA_PRIVATE int util_str_eq(struct str a, const char *cstr); /* exact */
/* ASCII case-insensitive */
URSULA_PRIVATE int util_str_ieq(struct str a, const char *cstr);
/* s without SP/HTAB at its ends */
URSULA_PRIVATE struct str util_str_trim(struct str s);
/* Parse a decimal integer in [0, max]: 1*DIGIT, no sign, no spaces, no
** other base; leading zeros are allowed, and a value over max (or over
** 2^64 - 1) is refused without overflowing.  Returns 0 and sets *out, or
** -1.  Every number read from a request (header, query) or a config file
** is parsed here, each with the range it may take. */
URSULA_PRIVATE int util_parse_u64(struct str s, uint64_t max, uint64_t *out);
URSULA_PRIVATE uint64_t util_hash64(const void *p, size_t len); /* FNV-1a */
/* Little-endian integers of on-disk and on-wire formats. */
URSULA_PRIVATE void util_put32(unsigned char *p, uint32_t v);
URSULA_PRIVATE void util_put64(unsigned char *p, uint64_t v);
URSULA_PRIVATE uint32_t util_get32(const unsigned char *p);
URSULA_PRIVATE uint64_t util_get64(const unsigned char *p);
URSULA_PRIVATE uint32_t util_crc32c(uint32_t crc, const void *p, size_t len);

URSULA_PRIVATE int buf_reserve(struct buf *b, size_t extra);
URSULA_PRIVATE int buf_append(struct buf *b, const void *p, size_t len);
URSULA_PRIVATE int buf_append_str(struct buf *b, const char *cstr);
URSULA_PRIVATE int buf_printf(struct buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Drop n bytes from the front. */
URSULA_PRIVATE void buf_consume(struct buf *b, size_t n);
URSULA_PRIVATE void buf_free(struct buf *b);

/* Standard base64 (RFC 4648, padded) of p[0..len) appended to out. */
URSULA_PRIVATE int util_base64_append(struct buf *out, const void *p,
                                      size_t len);
/* Append the bytes that p[0..len), standard base64 (RFC 4648 section 4,
** padded, no blanks), stands for.  Strict: a length not a multiple of 4,
** a byte outside the alphabet, '=' other than one or two at the end, or
** pad bits not zero (section 3.5) is URSULA_EINVAL (out as it was);
** URSULA_ENOMEM. */
URSULA_PRIVATE int util_base64_decode(struct buf *out, const char *p,
                                      size_t len);
/* An offset as the server writes them (Stream-Next-Offset): 33 bytes and
** a NUL into out. */
URSULA_PRIVATE void util_offset(char out[40], uint64_t off);

/* BUCKET PATHS (api.c's top comment has the rules and why).  A bucket
** name is 4..64 bytes of [a-z0-9_-] not starting with "__"; a stream id
** is 1..122 bytes without '/', NUL or "..", and not one of the reserved
** ids (streams, $transaction, append-batch, attrs, bootstrap, retention,
** snapshot).  util_bucket_path() sorts a request path into: */
enum {
  UTIL_PATH_PLAIN = 0, /* a stream in no bucket (every other path) */
  UTIL_PATH_BUCKET,    /* "/{b}": the bucket route */
  UTIL_PATH_LIST,      /* "/{b}/streams": the bucket's listing */
  UTIL_PATH_RESERVED,  /* "/{b}/{x}" (x a reserved id other than that
                          listing), "/{b}/{s}/streams", "/{b}/{aff}/{x}"
                          (x reserved, not a sub-resource's): 404 */
  UTIL_PATH_IN_BUCKET, /* "/{b}/{s}": stream s in bucket b */
  UTIL_PATH_AFFINITY,  /* "/{b}/{aff}/{s}": in bucket b, affinity key aff */
  UTIL_PATH_SUB,       /* "/{b}/{s}/{x}[/{r}]" or "/{b}/{aff}/{s}/{x}[/{r}]"
                          with x a reserved id other than streams and
                          $transaction: a sub-resource of that stream */
  UTIL_PATH_TXN        /* "/{b}/{aff}/$transaction" */
};
struct util_bucket_path {
  int kind;          /* UTIL_PATH_* */
  struct str bucket; /* b (every kind but PLAIN) */
  struct str id;     /* IN_BUCKET: "s"; AFFINITY: "aff/s" (as listed);
                        SUB: the stream's, the same way */
  size_t group_len;  /* the bytes of the path that choose its group: the
                        whole path, for AFFINITY and TXN "/{b}/{aff}",
                        for SUB its stream's */
  size_t stream_len; /* SUB: the stream's path is the path's first
                        stream_len bytes */
  struct str sub;    /* SUB: x */
  struct str rest;   /* SUB: r (empty: none) */
};
URSULA_PRIVATE int util_bucket_name_ok(struct str name);
URSULA_PRIVATE int util_stream_id_ok(struct str id);
URSULA_PRIVATE void util_bucket_path(const char *path, size_t len,
                                     struct util_bucket_path *out);

/* -------------------------------------------------------------------- os.c
** Clocks and the system-call table the WAL goes through. */
URSULA_PRIVATE uint64_t os_now_ms(void);  /* monotonic milliseconds */
URSULA_PRIVATE uint64_t os_now_us(void);  /* monotonic microseconds */
/* The process's resident memory in bytes (Linux: /proc/self/statm; else
** the peak, from getrusage), or 0 if unknown. */
URSULA_PRIVATE uint64_t os_rss_bytes(void);
/* n bytes from the system's cryptographic generator (/dev/urandom): 0,
** or -1 with errno (nothing to fall back on: callers fail closed). */
URSULA_PRIVATE int os_random_bytes(void *out, size_t n);
URSULA_PRIVATE uint64_t os_wall_ms(void); /* Unix time, milliseconds */
/* Block the calling thread for ms milliseconds (resumed after signals). */
URSULA_PRIVATE void os_sleep_ms(uint64_t ms);
URSULA_PRIVATE int os_cpu_count(void);
URSULA_PRIVATE int os_set_nonblock(int fd);
URSULA_PRIVATE int os_set_cloexec(int fd);
/* Raise the soft limit on open files towards want (at most the hard
** limit); returns the limit now in force. */
URSULA_PRIVATE long os_raise_fd_limit(long want);

/* The file system calls of durable storage (the WAL, --wal-dir, a
** --cold-dir).  Each behaves as its POSIX namesake (-1 and errno on
** failure; EINTR is retried inside), and:
**   sync      makes a file's data durable (fdatasync, or F_FULLFSYNC on
**             macOS);
**   size      sets *out to the size of the open file fd (fstat);
**   mkdir     creates one directory (mode as for mkdir(2)); EEXIST is a
**             failure here, os_mkdir() is the forgiving wrapper;
**   list      calls fn(arg, name) for each entry of dir but "." and ".."
**             (any order; names starting with '.' are passed on); fn
**             returns 0 to go on or a positive value to stop.  Returns 0
**             after the last entry, fn's positive value if it stopped, or
**             -1 and errno (ENOENT: dir does not exist);
**   sync_dir  makes the renames, creations and removals of entries in dir
**             durable (the real one opens, syncs and closes dir through
**             this table's open, sync and close, so their faults apply). */
struct os_fs {
  int (*open)(const char *path, int flags, int mode);
  ssize_t (*pwrite)(int fd, const void *p, size_t n, off_t off);
  ssize_t (*pread)(int fd, void *p, size_t n, off_t off);
  int (*sync)(int fd);
  int (*ftruncate)(int fd, off_t len);
  int (*close)(int fd);
  int (*unlink)(const char *path);
  int (*rename)(const char *from, const char *to);
  int (*size)(int fd, uint64_t *out);
  int (*mkdir)(const char *path, int mode);
  int (*rmdir)(const char *path);
  int (*list)(const char *dir, int (*fn)(void *arg, const char *name),
              void *arg);
  int (*sync_dir)(const char *dir);
};
/* The real table, process-wide; tests replace entries to inject faults
** (while no server runs).  env_real()->fs is this table. */
URSULA_PRIVATE URSULA_UNUSED struct os_fs *os_fs(void);
/* os_fs()->sync_dir(dir): make renames durable */
URSULA_PRIVATE URSULA_UNUSED int os_sync_dir(const char *dir);
/* os_fs()->mkdir(path, 0755), but 0 also if path exists already */
URSULA_PRIVATE URSULA_UNUSED int os_mkdir(const char *path);

/* A node's environment: everything it reads from the outside world that
** a simulator must control -- clocks, randomness, the file system.  The
** process's real one is env_real(); a simulator running several nodes in
** one thread gives each its own (impl is the provider's).  Every call
** gets the env itself, so one set of functions can serve many nodes.
** Contracts: mono_ms never goes backwards; wall_ms is Unix time and may
** jump; random returns 64 uniformly distributed bits. */
struct env {
  uint64_t (*mono_ms)(struct env *e); /* monotonic milliseconds */
  uint64_t (*wall_ms)(struct env *e); /* Unix time, milliseconds */
  uint64_t (*random)(struct env *e);  /* 64 random bits */
  struct os_fs *fs;                   /* the file-system call table */
  void *impl;                         /* the provider's state */
};
/* The real environment: os_now_ms(), os_wall_ms(), a splitmix64 generator
** seeded from the clocks and the pid on first use (not for secrets; safe
** for concurrent callers: the state is advanced under a mutex), and
** os_fs().  Lives as long as the process. */
URSULA_PRIVATE struct env *env_real(void);

/* ------------------------------------------------------------------- log.c */
enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };
URSULA_PRIVATE void log_set_level(int level);
/* 1: records as JSON lines (--log-format json; the top of log.c). */
URSULA_PRIVATE void log_set_json(int json);
/* s[0..n) as the inside of a JSON string, into out[0..cap): the bytes
** written; whole characters and escapes only (invalid UTF-8: \ufffd). */
URSULA_PRIVATE URSULA_UNUSED size_t log_json_escape(char *out, size_t cap,
                                                    const char *s, size_t n);
/* Timestamps from e->wall_ms(e) from now on; NULL: the real wall clock
** (the default).  e must outlive its use; set while no other thread
** logs.  For simulators (and the unit tests). */
URSULA_PRIVATE URSULA_UNUSED void log_set_clock(struct env *e);
#if URSULA_ENABLE_LOG
URSULA_PRIVATE void log_write(int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
#endif
#if URSULA_ENABLE_LOG
#define LOG_E(...) log_write(LOG_ERROR, __VA_ARGS__)
#define LOG_W(...) log_write(LOG_WARN, __VA_ARGS__)
#define LOG_I(...) log_write(LOG_INFO, __VA_ARGS__)
#define LOG_D(...) log_write(LOG_DEBUG, __VA_ARGS__)
#else
#define LOG_E(...) ((void)0)
#define LOG_W(...) ((void)0)
#define LOG_I(...) ((void)0)
#define LOG_D(...) ((void)0)
#endif

/* ------------------------------------------------------------------ loop.c
** One event loop per core thread: file descriptors, timers, and a mailbox
** that other threads post messages to.  Everything but loop_post() and
** loop_stop() is called only by the loop's own thread. */

enum { LOOP_READ = 1, LOOP_WRITE = 2, LOOP_ERROR = 4 };

struct loop;
struct loop_msg;
typedef void (*loop_io_fn)(struct loop *l, int fd, unsigned events, void *arg);
typedef void (*loop_timer_fn)(struct loop *l, void *arg);
typedef void (*loop_msg_fn)(struct loop *l, struct loop_msg *m);

/* A timer, embedded in its owner.  Zero-initialised is disarmed. */
struct loop_timer {
  uint64_t deadline_ms; /* the loop's env->mono_ms clock */
  size_t heap_index;    /* 0 = not armed; else 1-based slot in the heap */
  loop_timer_fn on_fire;
  void *arg;
};

/* A mailbox message.  Embed it as the first member of a larger struct; the
** receiver's on_msg owns the whole struct and frees it. */
struct loop_msg {
  struct loop_msg *next;
  loop_msg_fn on_msg;
  /* frees a message never delivered (the loop closed first); NULL:
  ** URSULA_FREE of the message alone */
  void (*on_drop)(struct loop_msg *m);
};

/* Open a loop that reads time from env (NULL: env_real()). */
URSULA_PRIVATE int loop_open(struct loop **out, int id, struct env *env,
                             char *err);
URSULA_PRIVATE void loop_close(struct loop *l); /* frees undelivered msgs */
URSULA_PRIVATE void *loop_get_user(const struct loop *l);
URSULA_PRIVATE void loop_set_user(struct loop *l, void *user);
URSULA_PRIVATE uint64_t loop_now_ms(const struct loop *l); /* cached per turn */
/* Watch fd for events (LOOP_READ|LOOP_WRITE).  LOOP_ERROR is always
** reported.  A fd is registered at most once. */
URSULA_PRIVATE int loop_add(struct loop *l, int fd, unsigned events,
                            loop_io_fn fn, void *arg);
URSULA_PRIVATE int loop_mod(struct loop *l, int fd, unsigned events);
URSULA_PRIVATE void loop_del(struct loop *l, int fd); /* before close(fd) */
/* Arm (or re-arm) t to fire once at deadline_ms.  Disarm with
** loop_timer_cancel(); a fired timer is disarmed before on_fire runs. */
URSULA_PRIVATE void loop_timer_set(struct loop *l, struct loop_timer *t,
                                   uint64_t deadline_ms, loop_timer_fn fn,
                                   void *arg);
URSULA_PRIVATE void loop_timer_cancel(struct loop *l, struct loop_timer *t);
/* Post m to l's mailbox from any thread; l's thread runs m->on_msg(l, m)
** on a later turn.  Messages from one sender arrive in order. */
URSULA_PRIVATE void loop_post(struct loop *l, struct loop_msg *m);
/* Run until loop_stop(); each turn polls fds, fires due timers and drains
** the mailbox.  on_turn_end (may be NULL) runs at the end of every turn:
** the place for work batched per turn, such as group commit. */
URSULA_PRIVATE int loop_run(struct loop *l, void (*on_turn_end)(struct loop *));
/* Run exactly one turn, its wait capped at max_wait_ms (0: do not block;
** negative: no cap of the caller's), stop flag or not.  URSULA_OK or
** URSULA_ESYS.  How a simulator with a fake clock drives a loop. */
URSULA_PRIVATE int loop_run_once(struct loop *l, int max_wait_ms,
                                 void (*on_turn_end)(struct loop *));
URSULA_PRIVATE void loop_stop(struct loop *l); /* any thread */
/* What l's thread has done since it opened (read on that thread): time
** in turns outside the wait (the real clock, os_now_us, whatever env
** says), turns, mailbox messages run; and the messages queued in its
** mailbox now, not yet taken (posted since the turn's batch). */
struct loop_stats {
  uint64_t busy_us, turns, msgs, queued;
};
URSULA_PRIVATE void loop_stats(struct loop *l, struct loop_stats *out);
/* Make l's thread finish its current wait and run a turn (so it notices
** flags set by other threads).  Any thread; async-signal-safe. */
URSULA_PRIVATE void loop_wake(struct loop *l);

/* --------------------------------------------------------------- metrics.c
** Per-core counters and the Prometheus text format they are written in
** (GET /metrics on the admin listener).  See the top of metrics.c. */
#define METRICS_N_BOUNDS 12  /* bounds of a histogram (+Inf is one more) */
#define METRICS_N_CODES 26   /* status codes counted apart, and "other" */
#define METRICS_N_METHODS 7  /* GET HEAD PUT POST DELETE OPTIONS other */
enum { METRICS_ROUTE_STREAM = 0, METRICS_ROUTE_ADMIN, METRICS_N_ROUTES };
enum { METRICS_LIVE_POLL = 0, METRICS_LIVE_SSE };
struct metrics_hist {
  uint64_t buckets[METRICS_N_BOUNDS + 1]; /* per bucket, not cumulative */
  uint64_t count, sum;
};
/* One core's counts since it started (all only grow). */
struct metrics {
  uint64_t requests[METRICS_N_METHODS][METRICS_N_ROUTES][METRICS_N_CODES];
  struct metrics_hist append_us;  /* request complete -> ack queued, us */
  uint64_t appends, append_bytes; /* acknowledged; body bytes */
  uint64_t live_started[2];       /* live reads asked, METRICS_LIVE_* */
  uint64_t live_bytes;            /* stream bytes sent to live readers */
  struct metrics_hist sync_us;    /* WAL sync queued -> back, us */
  struct metrics_hist sync_batch; /* groups in one journal sync */
  uint64_t sync_failures;
  uint64_t auth_refused[2]; /* answered 401, 403 (--auth-file) */
  uint64_t conns_refused;   /* accepted and answered 503 at once (conn.c) */
};
/* The index of a request method (METRICS_N_METHODS - 1: another). */
URSULA_PRIVATE int metrics_method(struct str m);
URSULA_PRIVATE void metrics_count_request(struct metrics *m, int method,
                                          int route, int status);
URSULA_PRIVATE void metrics_observe_append(struct metrics *m, uint64_t us,
                                           uint64_t bytes);
/* A sync took us; groups: batches it made durable (0: not a journal
** sync); failed: it failed. */
URSULA_PRIVATE void metrics_observe_sync(struct metrics *m, uint64_t us,
                                         int groups, int failed);
URSULA_PRIVATE void metrics_merge(struct metrics *to, const struct metrics *m);
/* Writers into out; each URSULA_OK or URSULA_ENOMEM. */
URSULA_PRIVATE int metrics_write_head(struct buf *out, const char *name,
                                      const char *type, const char *help);
URSULA_PRIVATE int metrics_write_value(struct buf *out, const char *name,
                                       const char *type, const char *help,
                                       uint64_t v);
URSULA_PRIVATE int metrics_write_counters(struct buf *out,
                                          const struct metrics *m);
/* us microseconds as seconds, exactly: "0.000250". */
URSULA_PRIVATE int metrics_write_us(struct buf *out, uint64_t us);

/* ------------------------------------------------------------------- net.c */
/* Open a non-blocking TCP listener on host:port (port 0 = any free port).
** Returns the fd and sets *bound_port, or -1 with a reason in err. */
URSULA_PRIVATE int net_listen(const char *host, int port, int *bound_port,
                              char *err);

/* ------------------------------------------------------------------ http.c
** HTTP/1.1 request parsing with the picohttpparser contract: the parsers
** never allocate and return views into the caller's buffer. */

struct http_header {
  struct str name;
  struct str value; /* leading and trailing SP/HTAB removed */
};

struct http_request {
  struct str method;
  struct str target; /* request-target as sent: path plus ?query; after
                        http_authority(), always the origin-form part */
  int minor_version; /* 0 or 1: HTTP/1.0, or HTTP/1.1 (and 1.2.. as 1.1) */
  struct str host;   /* after http_authority(): the validated authority
                        (uri-host [":" port]), or empty (HTTP/1.0 without
                        Host); never anything else */
  size_t n_headers;
  struct http_header headers[URSULA_MAX_HEADERS];
};

enum {
  HTTP_EMALFORMED = -100, /* answer 400 */
  HTTP_ETOOMANY = -101,   /* more than URSULA_MAX_HEADERS headers: 431 */
  HTTP_EVERSION = -102    /* HTTP major version other than 1: 505 */
};

/* Parse one request head (request line + headers + empty line) at the
** start of buf[0..len).  Returns the number of bytes of the head (> 0),
** URSULA_EAGAIN if the head is not complete yet, HTTP_EMALFORMED,
** HTTP_ETOOMANY or HTTP_EVERSION.  *req is written only on success. */
URSULA_PRIVATE int http_parse_request(const char *buf, size_t len,
                                      struct http_request *req);

/* Find a header by name, case-insensitively; NULL if absent. */
URSULA_PRIVATE const struct http_header *http_find_header(
    const struct http_request *req, const char *name);
/* How many field lines of that name req has. */
URSULA_PRIVATE size_t http_count_fields(const struct http_request *req,
                                        const char *name);

/* An iterator over the comma-separated list that every field line named
** `name` forms together, in order (RFC 9110 section 5.3).  Zero it to
** start; http_list_next() gives the next member without the OWS around
** it and returns 1, or returns 0 at the end.  Empty members are skipped
** (RFC 9110 section 5.6.1).  Commas inside quoted strings are not
** special: use it for lists of tokens. */
struct http_list {
  size_t line;
  int in_line;
  struct str rest;
};
URSULA_PRIVATE int http_list_next(const struct http_request *req,
                                  const char *name, struct http_list *it,
                                  struct str *member);

/* The body framing of a request (RFC 9112 section 6.3). */
enum { HTTP_BODY_NONE = 0, HTTP_BODY_LENGTH, HTTP_BODY_CHUNKED };
struct http_framing {
  int kind;        /* HTTP_BODY_* */
  uint64_t length; /* HTTP_BODY_LENGTH: the bytes that follow the head */
};
/* Decide where req's body ends: the one place that reads Content-Length
** and Transfer-Encoding (the table of every case is at the function).
** Returns 0 with *f set, or the status to answer (400, 501) with *reason;
** the connection must then close without reading on. */
URSULA_PRIVATE int http_framing(const struct http_request *req,
                                struct http_framing *f, const char **reason);
/* 1 if h is uri-host [ ":" port ] (RFC 3986 section 3.2.2: IP-literal,
** IPv4address or reg-name; RFC 9110 section 4.2.1: not empty) with port
** empty or at most 65535; else 0. */
URSULA_PRIVATE int http_host_ok(struct str h);
/* The target of req (RFC 9112 sections 3.2 and 3.3): exactly one valid
** Host line (none is allowed only in HTTP/1.0), and an absolute-form
** target ("http://authority/path") whose authority is valid too, which
** then is the host and leaves the path as req->target.  Sets req->host.
** Returns 0, or 400 with *reason. */
URSULA_PRIVATE int http_authority(struct http_request *req,
                                  const char **reason);
/* Whether the connection persists after this request (RFC 9112 section
** 9.3): not if Connection lists "close"; yes for HTTP/1.1; for HTTP/1.0
** only if Connection lists "keep-alive". */
URSULA_PRIVATE int http_keep_alive(const struct http_request *req);
/* 1 if the client waits for "100 Continue" before its body: Expect lists
** "100-continue" in an HTTP/1.1 request (RFC 9110 section 10.1.1: ignored
** in HTTP/1.0). */
URSULA_PRIVATE int http_expects_continue(const struct http_request *req);
/* Percent-decode in (RFC 3986 section 2.1: "%" HEXDIG HEXDIG is that
** octet; every other byte, '+' included, is itself) into out[0..cap).
** Returns URSULA_OK with *out_len bytes written, HTTP_EMALFORMED if a '%'
** does not start a valid escape, or URSULA_ETOOBIG if the result is
** longer than cap (out then holds its first cap bytes). */
URSULA_PRIVATE int http_pct_decode(struct str in, char *out, size_t cap,
                                   size_t *out_len);
/* Evaluate an If-None-Match field value (all its lines joined with ',')
** against the entity-tag etag (as sent in ETag) by RFC 9110 section
** 13.1.2 with the weak comparison of section 8.8.3.2: 1 if it is "*" or
** lists a tag whose opaque-tag equals etag's (W/ on either side does not
** matter), 0 if not, -1 if the value is not "*" / #entity-tag (the
** caller then ignores the field). */
URSULA_PRIVATE int http_if_none_match(struct str field, struct str etag);

/* Incremental decoder of a chunked request body.  Zero-initialised is
** ready for a new body. */
struct http_chunked {
  int state;
  uint64_t remaining; /* bytes left in the current chunk */
  size_t line_len;    /* bytes of the current size/trailer line seen */
};

/* Feed in[0..len) to the decoder; decoded payload bytes are appended to
** body.  Returns the number of input bytes consumed (0..len), with *done
** set to 1 once the last chunk and the trailers have been consumed (the
** bytes after that are the next request and are not consumed), or
** HTTP_EMALFORMED, or URSULA_ENOMEM.  Chunk-size lines longer than 1 KiB
** are malformed. */
URSULA_PRIVATE long http_chunked_feed(struct http_chunked *d, const char *in,
                                      size_t len, struct buf *body, int *done);

/* The reason phrase of a status code ("Not Found"); "Unknown" if none. */
URSULA_PRIVATE const char *http_status_text(int status);

/* ------------------------------------------------------------------ json.c
** Validation and one-level flattening of JSON appends (RFC 8259). */

/* Validate p[0..len) as one JSON text (surrounding whitespace allowed).
** If it is an array, each element is one message; otherwise the value is
** one message.  Each message's bytes (whitespace around it trimmed) are
** appended to out followed by one ','.  *n_msgs gets the message count
** (0 for `[]`).  Returns URSULA_OK, URSULA_EINVAL for invalid JSON
** (including nesting deeper than URSULA_MAX_JSON_DEPTH and invalid UTF-8)
** or URSULA_ENOMEM; on error out is restored to its length on entry. */
URSULA_PRIVATE int json_flatten(const char *p, size_t len, struct buf *out,
                                size_t *n_msgs);

/* p[0..len) is a run of messages as json_flatten() stores them: each a
** valid JSON value followed by ','.  Returns the byte length of the first
** n messages including their commas, or (size_t)-1 if there are fewer than
** n. */
URSULA_PRIVATE size_t json_prefix_len(const char *p, size_t len, size_t n);

/* The number of messages in p[0..len), stored as above. */
URSULA_PRIVATE size_t json_count(const char *p, size_t len);

/* Validate p[0..len) as one JSON text, as json_flatten does.  URSULA_OK
** or URSULA_EINVAL. */
URSULA_PRIVATE int json_check(const char *p, size_t len);
/* The members of obj, a JSON object that passed json_check with no
** blanks around it: start with *at 0; each call gives the next member's
** key (the raw string, quotes and escapes as sent) and value (raw, blanks
** around it trimmed) and returns 1, or returns 0 after the last. */
URSULA_PRIVATE int json_member_next(struct str obj, size_t *at,
                                    struct str *key, struct str *val);
/* Append the characters of raw, a JSON string as sent (quotes included),
** to out as UTF-8: escapes decoded (RFC 8259 section 7), a surrogate pair
** as its code point.  URSULA_EINVAL for an unpaired surrogate (it has no
** UTF-8 form) or what is not a string; URSULA_ENOMEM. */
URSULA_PRIVATE int json_string_value(struct str raw, struct buf *out);
/* Append s, a NUL-terminated string, to out as a JSON string (RFC 8259
** section 7): in quotes, '"' and '\\' escaped, the control characters
** and DEL as \u00XX, every other byte as it is (UTF-8 passes through).
** URSULA_OK or URSULA_ENOMEM. */
URSULA_PRIVATE int json_put_string(struct buf *out, const char *s);
/* The length of the value that starts at p[0] (no blanks before it), in
** JSON text that passed json_check. */
URSULA_PRIVATE size_t json_value_len(const char *p, size_t len);
/* Whether the raw key (a JSON string as sent) is the string name, however
** it is escaped.  (Out of memory: not it.) */
URSULA_PRIVATE int json_key_is(struct str key, const char *name);

/* ----------------------------------------------------------------- attrs.c
** A stream's attributes: the rules and the stored form are at the top of
** attrs.c. */

/* Check the attributes p[0..len) as sent (a PUT .../attrs body, or a
** Stream-Attrs value) and append their stored form to out: nothing when
** they hold neither title nor metadata.  URSULA_OK; URSULA_EINVAL with
** *why (a static one-line reason for the 400); URSULA_ENOMEM. */
URSULA_PRIVATE int attrs_normalize(const char *p, size_t len, struct buf *out,
                                   const char **why);
/* Whether a is in the stored form, non-empty (a snapshot's check). */
URSULA_PRIVATE int attrs_canonical(struct str a);

/* ---------------------------------------------------------------- crypto.c
** SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), for SigV4.  Our own
** code in the default build; BearSSL's when built with URSULA_ENABLE_TLS.
** Same results either way (test/unit_crypto.c runs the vectors). */
#define CRYPTO_SHA256_LEN 32
struct crypto_sha256 {
#if URSULA_ENABLE_TLS
  br_sha256_context br;
#else
  uint32_t h[8];
  uint64_t n_bytes;        /* message bytes hashed so far */
  unsigned char block[64]; /* the partial block */
  size_t n_block;
#endif
};
URSULA_PRIVATE void crypto_sha256_init(struct crypto_sha256 *c);
URSULA_PRIVATE void crypto_sha256_update(struct crypto_sha256 *c, const void *p,
                                         size_t n);
/* Write the digest of everything hashed; c must be re-initialised after. */
URSULA_PRIVATE void crypto_sha256_final(struct crypto_sha256 *c,
                                        unsigned char out[32]);
URSULA_PRIVATE void crypto_sha256(const void *p, size_t n,
                                  unsigned char out[32]);
URSULA_PRIVATE void crypto_hmac_sha256(const void *key, size_t key_len,
                                       const void *msg, size_t n,
                                       unsigned char out[32]);
/* Lowercase hex of p[0..n) into out (2n chars + NUL). */
URSULA_PRIVATE void crypto_hex(const void *p, size_t n, char *out);

/* ------------------------------------------------------------------ auth.c
** Bearer tokens (--auth-file): the file's table, immutable and reference
** counted, and the check of a token against it.  See the top of auth.c. */
#define AUTH_MAX_ENTRIES 10000
#define AUTH_TOKEN_MIN 16  /* bytes of a token; shorter or longer: 401 */
#define AUTH_TOKEN_MAX 512
enum { AUTH_READ = 1, AUTH_WRITE = 2, AUTH_ADMIN = 4 }; /* scopes */
/* What an Authorization field value holds (auth_bearer). */
enum { AUTH_NO_BEARER = 0, AUTH_MALFORMED, AUTH_BEARER };
struct auth_table;
/* Read the auth file at path into a new table (*out, one reference: the
** caller's).  URSULA_OK, or an error with "FILE:LINE: reason" (or
** "FILE: reason") in err (may be NULL); *out is then untouched. */
URSULA_PRIVATE int auth_load(const char *path, struct auth_table **out,
                             char *err);
/* auth_load() of text[0..len) already read; file names it in errors. */
URSULA_PRIVATE int auth_parse(const char *text, size_t len, const char *file,
                              struct auth_table **out, char *err);
/* One more reference to t (NULL: none), returned; auth_release() lets one
** go, and frees t with the last.  Any thread. */
URSULA_PRIVATE struct auth_table *auth_hold(struct auth_table *t);
URSULA_PRIVATE void auth_release(struct auth_table *t);
URSULA_PRIVATE int auth_count(const struct auth_table *t); /* entries */
/* An Authorization field value: AUTH_BEARER with *token set (a view into
** v) for "Bearer TOKEN" (the scheme in any case, TOKEN a token68),
** AUTH_MALFORMED for the Bearer scheme with anything else, AUTH_NO_BEARER
** for another scheme. */
URSULA_PRIVATE int auth_bearer(struct str v, struct str *token);
/* The SHA-256 of a token, as the table holds them. */
URSULA_PRIVATE void auth_hash(const char *token, size_t len,
                              unsigned char out[CRYPTO_SHA256_LEN]);
/* May the token whose hash is h do scope (AUTH_*, all the bits given) on
** path[0..path_len) (NULL: an admin path, scope alone decides)?  0 yes,
** 401 no entry has it, 403 an entry has it without that scope or
** prefix.  Every entry is compared, in constant time; *walked (may be
** NULL) gets how many were (the unit test's proof). */
URSULA_PRIVATE int auth_check_hash(const struct auth_table *t,
                                   const unsigned char h[CRYPTO_SHA256_LEN],
                                   unsigned scope, const char *path,
                                   size_t path_len, size_t *walked);
/* auth_check_hash() of a token's hash; a token of fewer than
** AUTH_TOKEN_MIN or more than AUTH_TOKEN_MAX bytes is 401 at once.  Its
** hash goes to hash_out (may be NULL) when it was computed. */
URSULA_PRIVATE int auth_check(const struct auth_table *t, const char *token,
                              size_t len, unsigned scope, const char *path,
                              size_t path_len, unsigned char *hash_out);

/* ----------------------------------------------------------------- sigv4.c
** AWS Signature Version 4 for request headers, as a pure function: the
** caller supplies the date, so the AWS test-suite cases run unchanged. */
struct sigv4_request {
  struct str method; /* "GET" */
  struct str path;   /* the request path as sent on the wire (already
                        percent-encoded), without the query */
  struct str query;  /* the query as sent, without '?'; may be empty */
  const struct http_header *headers; /* every header to sign (host and
                                        x-amz-date included); any order,
                                        any case */
  size_t n_headers;
  struct str payload_hash; /* hex SHA-256 of the body, or
                              "UNSIGNED-PAYLOAD" */
  struct str access_key, secret_key;
  struct str region, service; /* "us-east-1", "s3" */
  struct str amz_date;        /* "20150830T123600Z", as in x-amz-date */
  int s3;        /* 1: S3 rules: the path is used exactly as given (the
                    caller encoded it once); 0: other services: the path
                    is given raw, and encoded here */
  int normalize; /* s3 == 0 only: drop "." / ".." / empty segments */
};
/* Sign r: append the Authorization header's value to auth.  When creq or
** sts is not NULL, the canonical request / string to sign is appended to
** it too (tests, and logs of SignatureDoesNotMatch).  URSULA_OK,
** URSULA_EINVAL (a malformed date or query) or URSULA_ENOMEM. */
URSULA_PRIVATE int sigv4_sign(const struct sigv4_request *r, struct buf *auth,
                              struct buf *creq, struct buf *sts);
/* The URI encoding of SigV4 (RFC 3986 unreserved kept, every other byte
** %XX in uppercase hex); '/' kept when keep_slash. */
URSULA_PRIVATE int sigv4_uri_encode(struct buf *out, const void *p, size_t n,
                                    int keep_slash);

/* ------------------------------------------------------------------- tls.c
** A blocking client connection with timeouts: plain TCP, or TLS through
** BearSSL when built with URSULA_ENABLE_TLS.  One thread at a time. */
struct tls_conn;
/* Trust anchors loaded from a PEM bundle, shared read-only by many
** connections.  Without URSULA_ENABLE_TLS: URSULA_ENOTSUP. */
struct tls_anchors;
URSULA_PRIVATE int tls_anchors_load(struct tls_anchors **out,
                                    const char *pem_path, char *err);
URSULA_PRIVATE void tls_anchors_free(struct tls_anchors *a);
/* Connect to host:port within timeout_ms; with anchors (not NULL) run a
** TLS handshake that checks the certificate against them and host (SNI
** and name check).  URSULA_OK, or an error with a reason in err that names
** the host and what failed (refused, timeout, bad certificate...). */
URSULA_PRIVATE int tls_connect(struct tls_conn **out, const char *host,
                               int port, const struct tls_anchors *anchors,
                               int timeout_ms, char *err);
/* Write all n bytes / read up to n bytes (0 = the peer closed), each
** within the connection's timeout.  -1 on error or timeout. */
URSULA_PRIVATE int tls_write_all(struct tls_conn *c, const void *p, size_t n);
URSULA_PRIVATE long tls_read(struct tls_conn *c, void *p, size_t n);
URSULA_PRIVATE void tls_close(struct tls_conn *c);

/* -------------------------------------------------------------- tlsserve.c
** HTTPS on the public listener (--tls-cert, --tls-key): the server side
** of TLS through BearSSL, non-blocking, one engine per connection, driven
** by conn.c.  Without URSULA_ENABLE_TLS only tlss_creds_load (which says
** so: URSULA_ENOTSUP) and tlss_creds_release (a no-op) exist. */
struct tlss_creds;
struct tlss_conn;
/* Load and check a certificate chain (PEM, leaf first) and its private
** key (PEM, RSA or EC): one reference to an immutable object, or an error
** (URSULA_EIO, URSULA_EINVAL, URSULA_ENOMEM, URSULA_ENOTSUP) with a
** reason naming the file in err. */
URSULA_PRIVATE int tlss_creds_load(const char *cert_path, const char *key_path,
                                   struct tlss_creds **out, char *err);
/* Take / drop a reference (any thread); the last one frees it.  NULL is
** ignored by release. */
URSULA_PRIVATE void tlss_creds_release(struct tlss_creds *c);
#if URSULA_ENABLE_TLS
URSULA_PRIVATE struct tlss_creds *tlss_creds_hold(struct tlss_creds *c);
URSULA_PRIVATE const char *tlss_creds_kind(const struct tlss_creds *c);
/* A server engine for one connection (it holds a reference to c until
** tlss_conn_free), or NULL (out of memory). */
URSULA_PRIVATE struct tlss_conn *tlss_conn_new(struct tlss_creds *c);
URSULA_PRIVATE void tlss_conn_free(struct tlss_conn *t);
URSULA_PRIVATE size_t tlss_conn_size(void); /* bytes per connection */
/* The calls of a non-blocking socket fd, in plaintext: up to n bytes
** decrypted (0 at the end, -1 and errno: EAGAIN for "not now"); plaintext
** taken into the engine and sent as far as the socket takes it (-1 and
** EAGAIN if none could be taken); close_notify, then SHUT_WR once it is
** out.  tlss_push writes the records waiting: 0 (all written, or the
** socket is full), -1 on a socket error. */
URSULA_PRIVATE ssize_t tlss_recv(struct tlss_conn *t, int fd, void *p,
                                 size_t n);
URSULA_PRIVATE ssize_t tlss_sendv(struct tlss_conn *t, int fd,
                                  const struct iovec *iov, int n);
URSULA_PRIVATE int tlss_shutdown(struct tlss_conn *t, int fd);
URSULA_PRIVATE int tlss_push(struct tlss_conn *t, int fd);
/* What the engine waits for (tlss_wants): records to write to the socket
** (TLSS_SEND), decrypted bytes not read yet (TLSS_PLAIN), room for
** plaintext to send (TLSS_CAN_SEND; clear during the handshake). */
enum { TLSS_SEND = 1, TLSS_PLAIN = 2, TLSS_CAN_SEND = 4 };
URSULA_PRIVATE unsigned tlss_wants(const struct tlss_conn *t);
#endif

/* -------------------------------------------------------------------- s3.c
** A blocking S3 client: one per thread (the cold tier's threads each own
** one).  Path-style or virtual-host addressing, SigV4 on every request,
** keep-alive, per-request timeouts and bounded retries with backoff. */
struct s3_config {
  const char
      *endpoint; /* "http://127.0.0.1:4568", "https://s3.amazonaws.com" */
  const char *bucket;
  const char *region;
  const char *access_key, *secret_key;
  const char *session_token;         /* "" or NULL: none */
  const struct tls_anchors *anchors; /* https only */
  int virtual_host; /* 1: bucket.host/key; 0: host/bucket/key */
  int timeout_ms;   /* per attempt: connect, send, and each read */
  int max_attempts; /* >= 1; 5xx, SlowDown and transport errors retry */
  struct env *env;  /* the clock requests are signed with (NULL: real) */
};
/* What the last failed request said: HTTP status (0 = no response), the
** S3 error code and message from the XML body, and one line for the log
** ("PUT key: 403 SignatureDoesNotMatch: The request signature..."). */
struct s3_error {
  int status;
  char code[64];
  char message[256];
  char line[512];
};
struct s3_client;
URSULA_PRIVATE int s3_client_new(struct s3_client **out,
                                 const struct s3_config *cfg, char *err);
URSULA_PRIVATE void s3_client_free(struct s3_client *c);
/* Each returns URSULA_OK; URSULA_ENOTFOUND for 404 (NoSuchKey); or
** URSULA_EIO with *e filled in.  Keys are raw bytes (encoded here). */
URSULA_PRIVATE int s3_put(struct s3_client *c, const char *key, const void *p,
                          size_t n, struct s3_error *e);
/* len 0: to the end.  The bytes are appended to out. */
URSULA_PRIVATE int s3_get(struct s3_client *c, const char *key, uint64_t off,
                          uint64_t len, struct buf *out, struct s3_error *e);
URSULA_PRIVATE URSULA_UNUSED int s3_head(struct s3_client *c, const char *key,
                                         uint64_t *size, struct s3_error *e);
URSULA_PRIVATE int s3_delete(struct s3_client *c, const char *key,
                             struct s3_error *e);
/* ListObjectsV2 of every key under prefix, page by page (max_keys per
** page, 0 = the server's default), following continuation tokens; fn is
** called for each key in order and may stop the walk by returning
** non-zero (returned as is). */
URSULA_PRIVATE int s3_list(struct s3_client *c, const char *prefix,
                           int max_keys,
                           int (*fn)(void *arg, const char *key, uint64_t size),
                           void *arg, struct s3_error *e);

/* --------------------------------------------------------------- journal.c
** One core's journal: the appends of all its group logs, made durable by
** one sync (format and rules at the top of journal.c).  One thread at a
** time: the owning core's (only the sync of journal_write's fd may run
** elsewhere). */
struct journal;
enum { JOURNAL_OK = 0, JOURNAL_BROKEN = 1, JOURNAL_STUCK = 2 };
#ifndef JOURNAL_BYTES
#define JOURNAL_BYTES (64 * 1024 * 1024) /* a checkpoint starts it anew */
#endif
#ifndef JOURNAL_ROOM_BYTES /* the file grows by this much of zeros at once */
#define JOURNAL_ROOM_BYTES (JOURNAL_BYTES / 64 > 4096 ? JOURNAL_BYTES / 64 : 4096)
#endif
struct journal_stats { /* what journal_redo() did */
  uint64_t journals;   /* journal files read */
  uint64_t writes;     /* records written again to their files */
  uint64_t bytes;      /* bytes of them */
  uint64_t cut_bytes;  /* bytes of torn tails left out (the zeroed room
                          after the records not counted) */
};
/* Make a new, empty journal DIR/journal-CCC for core `core` (replacing
** any file of that name: journal_redo() first).  URSULA_OK, URSULA_EIO
** with a reason in err, URSULA_ENOMEM, URSULA_EINVAL (dir too long). */
URSULA_PRIVATE int journal_create(struct journal **out, struct env *env,
                                  const char *dir, int core, char *err);
URSULA_PRIVATE void journal_close(struct journal *j);
/* Frame a WRITE: bytes p[0..n) were just written at byte `off` of the
** segment file named `seg` of group `group`.  Copied; written by the
** next journal_write().  URSULA_OK, URSULA_EIO (the journal is broken or
** stuck: until journal_reset), URSULA_ENOMEM, URSULA_EINVAL. */
URSULA_PRIVATE int journal_add(struct journal *j, uint32_t group, uint64_t seg,
                               uint64_t off, const void *p, size_t n);
/* Write what is framed.  *fd: the descriptor to sync, whose result goes
** to journal_flush_done(); -1 if nothing was framed.  URSULA_EINVAL if a
** sync is still out; URSULA_EIO if the journal is broken (what was framed
** is dropped: none of it may be acknowledged). */
URSULA_PRIVATE int journal_write(struct journal *j, int *fd);
/* The sync of journal_write's fd is done (errno, 0: it worked): URSULA_OK,
** and the records written are durable (stuck or not); else URSULA_EIO, and
** the journal is broken until journal_reset() (or was broken meanwhile,
** even if stuck since: its file is not trusted). */
URSULA_PRIVATE int journal_flush_done(struct journal *j, int sync_errno);
URSULA_PRIVATE int journal_in_flight(const struct journal *j);
/* Rule 3: the caller has synced the group's file and is about to change
** it other than by an append.  Drops the group's framed records (durable
** in the file now), writes a MARK and syncs the journal, here (a write
** whose sync is out is synced first: rule 2).  URSULA_OK
** or URSULA_EIO (broken: the change must not go ahead). */
URSULA_PRIVATE int journal_mark(struct journal *j, uint32_t group);
URSULA_PRIVATE int journal_state(const struct journal *j);
/* The generation a checkpoint is removing (its log files' syncs are out,
** or it could not be removed yet), or 0. */
URSULA_PRIVATE uint64_t journal_old_gen(const struct journal *j);
/* Bytes written and framed. */
URSULA_PRIVATE uint64_t journal_bytes(const struct journal *j);
/* Whether a checkpoint should start now: past JOURNAL_BYTES, no write's
** sync out, none under way, and not broken. */
URSULA_PRIVATE int journal_checkpoint_due(const struct journal *j);
/* CHECKPOINT, step 1 (rule 4; with no sync out): a new generation takes
** the writes from now on; the old one stays until journal_drop_old().
** Framed records go to the new one.  URSULA_OK; URSULA_EINVAL (a sync is
** out, or a checkpoint is under way); URSULA_EIO (broken or stuck, or
** the new file could not be made: the old one goes on; if it was renamed
** into place but the directory's sync failed, the journal is broken
** until a reset works). */
URSULA_PRIVATE int journal_rotate(struct journal *j);
/* CHECKPOINT, step 2: every group file of the core has been synced since
** journal_rotate() (through descriptors taken then): the old generation
** is removed.  URSULA_OK or URSULA_EIO (it stays: a redo of it writes
** synced bytes again, which changes nothing; and always when stuck: a
** log file's sync failed meanwhile, and the old generation may hold the
** only durable copy of its appends, for the restart's redo). */
URSULA_PRIVATE int journal_drop_old(struct journal *j);
/* Mend a broken journal: the caller has synced every group file of the
** core (and no sync is out).  Every generation is removed, then a new,
** empty one started; what was framed is dropped.  URSULA_OK (mended);
** URSULA_EINVAL (a sync is out); URSULA_EIO (stuck, or a file could not
** be removed or made: still broken, try again later). */
URSULA_PRIVATE int journal_reset(struct journal *j);
/* A clean stop: the caller has synced every group file of the core (and
** no sync is out).  The journal's files are removed; j takes nothing more.
** URSULA_OK, URSULA_EINVAL (a sync is out, or stuck), URSULA_EIO. */
URSULA_PRIVATE int journal_remove(struct journal *j);
/* A group file's sync failed while appends written to it were durable
** only in the journal (at a checkpoint, or any other sync of the file:
** wal.c, wal_lazy_failed): the journal holds the only durable copy of
** them, so it must stay, and it takes nothing more (no MARK either);
** only a restart (journal_redo) mends it. */
URSULA_PRIVATE void journal_stuck(struct journal *j);
/* Redo every journal in dir (journal.c's REDO): path_of names the file of
** (group, seg) in out (URSULA_OK; else the group is unknown: damage).
** Then the files written are synced and the journals removed.  URSULA_OK;
** URSULA_ECORRUPT for damage (err names the journal and the byte offset);
** URSULA_EIO, URSULA_ENOMEM. */
URSULA_PRIVATE int journal_redo(struct env *env, const char *dir,
                                int (*path_of)(void *arg, uint32_t group,
                                               uint64_t seg, char *out,
                                               size_t cap),
                                void *arg, struct journal_stats *st,
                                char *err);

/* ------------------------------------------------------------------- wal.c
** A group's write-ahead log (format and rules at the top of wal.c).  One
** thread at a time: the owning core's. */
struct wal;
/* Record types.  CMD, NOOP and CONF are log entries (each takes the next
** index); HARD is the Raft hard state (term, vote) as of that point. */
enum { WAL_CMD = 1, WAL_NOOP = 2, WAL_CONF = 3, WAL_HARD = 16, WAL_SEAL = 17 };
struct wal_entry {
  uint64_t term;
  uint64_t index;
  int type;         /* WAL_CMD, WAL_NOOP or WAL_CONF */
  const void *data; /* the payload (CMD: one encoded command) */
  size_t len;
};
struct wal_stats {         /* what wal_replay() found */
  uint64_t entries;        /* valid entries replayed */
  uint64_t bytes;          /* bytes of the segments they span */
  uint64_t cut_bytes;      /* bytes cut from the torn tail */
  uint64_t cut_segment;    /* first index of the segment that was cut */
  uint64_t cut_at;         /* byte offset of the cut or the damage */
  uint64_t snapshot_index; /* the snapshot replay started after (0: none) */
};
/* Open (creating if needed, unless must_exist) the log in directory dir.
** must_exist: the caller knows this log was created, so a missing
** directory or a directory without segments is refused (URSULA_ECORRUPT)
** rather than taken for a new, empty log.  A format-1 directory is
** refused with URSULA_EINVAL.  Call wal_replay() next, once.  URSULA_OK or
** an error with a reason in err (URSULA_ERRMSG_LEN bytes, the full path
** named).  Every file call goes through env's fs table (NULL: env_real()). */
URSULA_PRIVATE int wal_open(struct wal **out, struct env *env, const char *dir,
                            int must_exist, char *err);
URSULA_PRIVATE void wal_close(struct wal *w);
/* Hand the snapshot, if there is one, to restore, then every valid entry
** after it, in index order, to fn (both return URSULA_OK to go on); cut a
** torn tail; open the last segment for appending.  Returns URSULA_OK;
** URSULA_ECORRUPT for damage or a missing file (wal.c's RECOVERY rules),
** with err naming the file and the byte; fn's error; or an I/O error.  err
** says what failed whenever the result is not URSULA_OK.  Each segment is
** read whole into scratch (up to WAL_SEGMENT_BYTES), which the caller
** keeps across logs so that its memory is touched once, not once per
** log; NULL: a buffer of the call's own. */
URSULA_PRIVATE int wal_replay(struct wal *w,
                              int (*restore)(void *arg, const void *p,
                                             size_t len),
                              int (*fn)(void *arg, const struct wal_entry *e),
                              void *arg, struct buf *scratch,
                              struct wal_stats *st, char *err);
/* Snapshots, written and read in chunks of at most WAL_SNAP_CHUNK.
** A snapshot file holds the state machine's payload and, beside it,
** pieces: bytes of log entries that the state names (by index and offset)
** but that the log's segments may not hold (wal.c has the format).
** Writing: begin (as of entry index, term), put the payload in any number
** of parts, then the pieces in ascending (index, offset) order, then
** commit (durably replaces the snapshot; replay then starts after it) or
** abort.  wal_image_begin() writes the file "image" instead, an image for
** another node's install (the caller puts every piece the state names up
** to index); the current snapshot is untouched.  Reading: open
** (URSULA_ENOTFOUND if there is none; header and lengths checked), read
** the payload (> 0 bytes; 0 at the end once the CRC of the whole file and
** the order of its pieces checked out; -1 on a read error or a mismatch),
** close. */
#define WAL_SNAP_CHUNK (1024 * 1024)
#define WAL_SNAP_IMAGE 1u /* snapshot flag: made for install elsewhere */
struct wal_snap_writer {
  struct os_fs *fs;
  int fd;
  const char *name;        /* the file it becomes */
  uint64_t index, term;    /* as of entry index (0: an install's raw bytes) */
  uint64_t at;             /* bytes written */
  uint64_t payload, pieces; /* bytes of payload, of pieces */
  int in_pieces;           /* a piece was put: no more payload */
  uint32_t crc;            /* of header and payload */
  struct buf dir;          /* the directory of the pieces */
};
struct wal_snap_reader {
  struct os_fs *fs;
  int fd;
  uint64_t index, term; /* the entry the snapshot covers up to */
  uint64_t flags;       /* WAL_SNAP_IMAGE */
  uint64_t size;        /* payload bytes */
  uint64_t pieces, n_pieces; /* bytes of pieces, and how many */
  uint64_t at;
  uint32_t crc, want_crc;
  struct buf dir;       /* the directory, read at the payload's end */
};
URSULA_PRIVATE int wal_snap_begin(struct wal *w, struct wal_snap_writer *sw,
                                  uint64_t index, uint64_t term);
URSULA_PRIVATE int wal_image_begin(struct wal *w, struct wal_snap_writer *sw,
                                   uint64_t index, uint64_t term);
/* The file "backup" (wal.c, BACKUP IMAGES): an image like "image", for
** an operator's backup.  begin as wal_image_begin (then pieces, commit);
** stat gives its size and the CRC32C its tail holds. */
URSULA_PRIVATE URSULA_UNUSED int wal_backup_begin(struct wal *w,
                                                  struct wal_snap_writer *sw,
                                                  uint64_t index,
                                                  uint64_t term);
URSULA_PRIVATE URSULA_UNUSED int wal_backup_stat(struct wal *w,
                                                 uint64_t *bytes,
                                                 uint32_t *crc);
/* Check the image file at path whole, as an install does (every CRC, the
** directory, the image flag), then read its payload into *payload (the
** state machine's snapshot, stream.c) and its entry into *index, *term.
** URSULA_OK, or an error with err set (URSULA_ECORRUPT: damaged;
** URSULA_ENOTFOUND: no such file). */
URSULA_PRIVATE URSULA_UNUSED int wal_image_verify(const char *path,
                                                  struct buf *payload,
                                                  uint64_t *index,
                                                  uint64_t *term, char *err);
/* The bytes of the file "image" (the last wal_image_begin's, once
** committed), read raw by a leader that sends it: open gives *fd and the
** file's size; read n bytes at `at` (the count, 0 at the end, -1 on an
** error); close.  URSULA_OK or an I/O error (URSULA_ENOTFOUND: none). */
URSULA_PRIVATE int wal_image_open(struct wal *w, int *fd, uint64_t *bytes);
URSULA_PRIVATE long wal_image_read(struct wal *w, int fd, void *p, size_t n,
                                   uint64_t at);
URSULA_PRIVATE void wal_image_close(struct wal *w, int fd);
/* Remove the file "image" (open descriptors still read it). */
URSULA_PRIVATE void wal_image_remove(struct wal *w);
URSULA_PRIVATE int wal_snap_put(struct wal_snap_writer *sw, const void *p,
                                size_t n);
/* Bytes p[0..n) of entry index's payload from offset off.  URSULA_EINVAL
** out of order or past the snapshot's index. */
URSULA_PRIVATE int wal_snap_piece(struct wal_snap_writer *sw, uint64_t index,
                                  uint64_t off, const void *p, size_t n);
URSULA_PRIVATE int wal_snap_commit(struct wal *w, struct wal_snap_writer *sw);
URSULA_PRIVATE void wal_snap_abort(struct wal *w, struct wal_snap_writer *sw);
URSULA_PRIVATE int wal_snap_open(struct wal *w, struct wal_snap_reader *sr,
                                 char *err);
URSULA_PRIVATE long wal_snap_read(struct wal_snap_reader *sr, void *p,
                                  size_t n);
URSULA_PRIVATE void wal_snap_close(struct wal_snap_reader *sr);
/* Whether the snapshot carries bytes [off, off + len) of entry index. */
URSULA_PRIVATE int wal_has_piece(const struct wal *w, uint64_t index,
                                 uint64_t off, uint64_t len);
/* Install another node's image (the bytes of its file "image", made by
** wal_image_begin): begin, put its bytes at their file offsets in any
** number of parts (a part may be sent again: at must not pass the bytes
** already put), then commit, which checks the whole image (every CRC, the
** directory, the install flag, an index past the snapshot's) and makes it
** the snapshot, crash-safely (wal.c): a log that agrees with it at its
** index goes on after it; any other is replaced by an empty log that
** starts after it.  Nothing may be buffered.  URSULA_OK; URSULA_ECORRUPT
** or URSULA_EINVAL (nothing changed) with err set; or an I/O error
** half-way (the log then takes no writes until reopened; replay finishes
** the install).  The caller then restores the state machine from it. */
URSULA_PRIVATE URSULA_UNUSED int wal_install_begin(struct wal *w,
                                     struct wal_snap_writer *sw);
URSULA_PRIVATE URSULA_UNUSED int wal_install_put(struct wal_snap_writer *sw, uint64_t at,
                                   const void *p, size_t n);
URSULA_PRIVATE URSULA_UNUSED int wal_install_commit(struct wal *w,
                                      struct wal_snap_writer *sw, char *err);
/* The whole snapshot p[0..n) through the chunked writer. */
URSULA_PRIVATE URSULA_UNUSED int wal_save_snapshot(struct wal *w, uint64_t index,
                                     uint64_t term, const void *p, size_t n);
/* Log bytes written since the snapshot (or since the log began). */
URSULA_PRIVATE uint64_t wal_bytes_since_snapshot(const struct wal *w);
/* Every record starts with a header of this many bytes (wal.c), and a
** payload has at most WAL_MAX_RECORD bytes. */
#define WAL_RECORD_HEADER 32
#define WAL_MAX_RECORD (1024u * 1024 * 1024)
/* Frame the record (type, term, index) whose payload the caller has put at
** rec + WAL_RECORD_HEADER (n bytes): fill in the header before it.  The
** caller keeps the bytes and hands every record it framed, back to back,
** to wal_write().  An entry's index must be wal_last_index() + 1 and its
** term at least the last entry's; a WAL_HARD record (payload from
** wal_hard_payload, n = 16) has index wal_last_index() and takes effect
** when its batch is durable.  Returns URSULA_OK, URSULA_EIO once the log
** has failed, URSULA_EINVAL, URSULA_ETOOBIG, or an error of starting a
** new segment. */
URSULA_PRIVATE int wal_frame(struct wal *w, int type, uint64_t term,
                             uint64_t index, void *rec, size_t n);
/* Entry records outside a log (Raft's AppendEntries carries them between
** nodes verbatim, CRC and all): wal_record_put() appends entry e as a
** record to out: URSULA_OK, URSULA_EINVAL (not an entry type, too large),
** URSULA_ENOMEM.  wal_record_check() reads one back. */
URSULA_PRIVATE URSULA_UNUSED int wal_record_put(struct buf *out,
                                                const struct wal_entry *e);
URSULA_PRIVATE URSULA_UNUSED void wal_hard_payload(void *payload,
                                                   uint64_t term,
                                                   uint64_t vote);
/* Whether p[0..avail) starts with a whole, valid entry record (CMD, NOOP
** or CONF, CRC checked): URSULA_OK with the entry in *e (e->data points
** into p) and the record's size in *size; else URSULA_ECORRUPT. */
URSULA_PRIVATE int wal_record_check(const void *p, size_t avail,
                                    struct wal_entry *e, size_t *size);
/* Append bytes [off, off + len) of the payload of durable entry index to
** out.  The whole record is read and its CRC checked on every read (the
** last record read is kept, so reading a large entry piece by piece reads
** it once).  URSULA_OK; URSULA_ECORRUPT if the record is damaged or
** missing (never wrong bytes); URSULA_ENOTFOUND outside the durable log;
** URSULA_EINVAL past the payload's end; or an I/O error. */
URSULA_PRIVATE int wal_read(struct wal *w, uint64_t index, uint64_t off,
                            uint64_t len, struct buf *out);
/* The durable entry index, checked as wal_read does; e->data is valid
** until the next read. */
URSULA_PRIVATE URSULA_UNUSED int wal_entry_at(struct wal *w, uint64_t index,
                                              struct wal_entry *e);
/* The term of entry index (0 for index 0; the snapshot's term for its
** index).  URSULA_ENOTFOUND past the end or before the first entry. */
URSULA_PRIVATE URSULA_UNUSED int wal_term_at(struct wal *w, uint64_t index,
                                             uint64_t *term);
/* Write the records framed since the last write: p[0..len), exactly
** those, in order.  Not durable until wal_flush() succeeds, which syncs
** what was written (one sync for all; it may run on any thread while the
** owner waits).  URSULA_OK; or URSULA_EIO / URSULA_ENOSPC: none of it
** may be acknowledged, wal_last_index() is back at the last durable
** entry, and the log refuses appends until wal_recover() succeeds. */
URSULA_PRIVATE int wal_write(struct wal *w, const void *p, size_t len);
URSULA_PRIVATE URSULA_UNUSED int wal_flush(struct wal *w);
/* wal_flush() in three steps, so that the sync can run on another thread
** while the owner goes on: wal_flush_fd() is the descriptor to sync (-1:
** nothing to sync); the caller syncs it (its env's fs->sync) anywhere, and then
** calls wal_flush_done() on the owner with the errno of the sync (0: it
** worked), which returns what wal_flush() would have.  In between, the
** owner may frame records but must not write, recover or compact. */
URSULA_PRIVATE int wal_flush_fd(const struct wal *w);
URSULA_PRIVATE int wal_flush_done(struct wal *w, int sync_errno);
/* After a failure: reopen the last segment, cut it to its durable size,
** and re-read and check it.  URSULA_OK when the log is usable again. */
URSULA_PRIVATE int wal_recover(struct wal *w);
URSULA_PRIVATE int wal_failed(const struct wal *w);
/* Fail the log now, as a failed write does: what was framed and not
** durable is dropped, and appends are refused until wal_recover().  For a
** caller that could not frame a record it must not go without (a Raft
** hard state, an entry whose index the consensus core gave out). */
URSULA_PRIVATE void wal_abandon(struct wal *w);
/* Remove the entries from index on (a Raft log conflict), crash-safely
** (wal.c).  Nothing may be buffered; index must be above the snapshot. */
URSULA_PRIVATE URSULA_UNUSED int wal_truncate_suffix(struct wal *w,
                                                     uint64_t index);
/* Remove whole segments whose entries are all at or below upto and below
** the snapshot (nothing the snapshot does not cover ever goes). */
URSULA_PRIVATE int wal_compact(struct wal *w, uint64_t upto);
/* Whether wal_compact(w, upto) would remove a segment. */
URSULA_PRIVATE int wal_can_compact(const struct wal *w, uint64_t upto);
URSULA_PRIVATE URSULA_UNUSED uint64_t wal_first_index(const struct wal *w);
URSULA_PRIVATE uint64_t wal_last_index(const struct wal *w);
URSULA_PRIVATE URSULA_UNUSED uint64_t wal_last_term(const struct wal *w);
URSULA_PRIVATE URSULA_UNUSED uint64_t wal_durable_index(const struct wal *w);
/* The durable Raft term and vote (0, 0 for a new log).  wal_save_state()
** makes a new pair durable at once (a HARD record and a sync; nothing may
** be buffered); the commit path frames WAL_HARD records with its entries
** instead, so they share a sync. */
URSULA_PRIVATE uint64_t wal_term(const struct wal *w);
URSULA_PRIVATE URSULA_UNUSED uint64_t wal_vote(const struct wal *w);
URSULA_PRIVATE URSULA_UNUSED int wal_save_state(struct wal *w, uint64_t term,
                                             uint64_t vote);
/* Append through core journal j as group `group` from now on (NULL: each
** batch synced in its own file, the default): wal_write() copies each
** batch to the journal, the caller syncs the journal instead of
** wal_flush_fd() and reports that sync to wal_flush_done(); the segment
** file is synced lazily (wal_sync_lazy, at the journal's checkpoint) and
** before every change other than an append (journal_mark).  A failed
** sync of the file while it holds such appends leaves the journal stuck
** (journal_stuck): a later sync may succeed without them. */
URSULA_PRIVATE void wal_set_journal(struct wal *w, struct journal *j,
                                    uint32_t group);
/* The path of the segment file whose first entry is `first`, in the log
** directory dir. */
URSULA_PRIVATE void wal_segment_file(const char *dir, uint64_t first,
                                     char *out, size_t cap);
/* For a checkpoint on another thread: a descriptor of the last segment's
** file, opened anew (an open file of its own: the kernel reports a failed
** write-back to each open file once, so a sync through a dup(2), which
** shares the log's, could take the error from the log's own next sync),
** if appends went to it since its last sync (which it then counts as
** done: the caller syncs through it, and a failure leaves the journal
** stuck); -1 if none went to it; -2 if the file could not be opened
** (sync here instead: wal_sync_lazy).  Until the old generation goes, a
** failed sync of the file here still leaves the journal stuck. */
URSULA_PRIVATE int wal_lazy_open(struct wal *w);
/* Sync the last segment's file if appends went to it since its last
** sync: 0, or the errno of the failed sync. */
URSULA_PRIVATE int wal_sync_lazy(struct wal *w);
/* The size at which a new segment starts (tests make it small). */
URSULA_PRIVATE URSULA_UNUSED void wal_set_segment_bytes(struct wal *w,
                                                        int64_t n);

/* ------------------------------------------------------------------- cmd.c
** Commands of a group's log and their byte encoding (format in cmd.c). */
#define CMD_VERSION 2 /* version 1 entries (forks that carried the
                          inherited bytes) are still decoded */
enum {
  CMD_CREATE = 1,       /* PUT: create a stream (or a fork) */
  CMD_APPEND = 2,       /* POST: append and/or close */
  CMD_DELETE = 3,       /* DELETE */
  CMD_FORK_ACQUIRE = 4, /* a fork is being made of this stream: refcount+1 */
  CMD_FORK_RELEASE = 5, /* a fork of this stream went away: refcount-1 */
  CMD_EXPIRE = 6,       /* remove the stream if its TTL or Expires-At passed */
  CMD_COLD = 7,         /* a prefix of the stream moved to the cold tier */
  CMD_TOUCH = 8,        /* a read slid the stream's TTL window */
  CMD_BUCKET_CREATE = 9, /* PUT /{b}: make the bucket's record */
  CMD_BUCKET_DELETE = 10, /* DELETE /{b}: remove the bucket's record */
  CMD_SNAPSHOT_PUT = 11, /* PUT .../snapshot/{offset}: publish a snapshot */
  CMD_RETAIN = 12,       /* PUT .../retention/{offset}: drop bytes below */
  CMD_MULTI = 13, /* appends to one group's streams in one entry: an
                     append-batch (each op on its own), or a $transaction
                     (CMD_F_ATOMIC: every op or none) */
  CMD_ATTRS = 14  /* PUT .../attrs: replace a stream's attributes */
};
#define CMD_TYPE_MAX CMD_ATTRS
/* The most ops a MULTI carries: an append-batch's frames (the peer's
** limit; a $transaction takes at most 64, api.c). */
#define CMD_MULTI_MAX 512
enum {
  CMD_F_CLOSE = 1 << 0,       /* Stream-Closed: true */
  CMD_F_JSON = 1 << 1,        /* data holds flattened JSON messages */
  CMD_F_TTL = 1 << 2,         /* ttl_s is set */
  CMD_F_EXPIRES = 1 << 3,     /* expires_at_ms / expires_text are set */
  CMD_F_PRODUCER = 1 << 4,    /* producer_id / epoch / seq are set */
  CMD_F_SEQ = 1 << 5,         /* stream_seq is set */
  CMD_F_FORK = 1 << 6,        /* CREATE of a fork of fork_source */
  CMD_F_FORK_OFFSET = 1 << 7, /* Stream-Fork-Offset was given */
  CMD_F_CT = 1 << 8,          /* a content type was given */
  CMD_F_UNIT = 1 << 9,        /* FORK_ACQUIRE at an offset in the
                                 source's inherited range: the proposer
                                 found the append unit that starts there
                                 (n_msgs: its length) */
  CMD_F_RECORD_MATCH = 1 << 10, /* APPEND: Stream-Record-Match (a trailing
                                   record_match, cmd.c) */
  CMD_F_RECORD_BASE = 1 << 11,  /* CREATE of a JSON fork: the records it
                                   inherits (a trailing record_base) */
  CMD_F_MATCH = 1 << 12,        /* SNAPSHOT_PUT: match holds the request's
                                   Stream-Snapshot-Match */
  CMD_F_ATOMIC = 1 << 13, /* MULTI: every op applies, or none does */
  CMD_F_ATTRS = 1 << 14   /* CREATE: attrs is set (Stream-Attrs) */
};

/* A decoded command.  Every struct str is a view into the encoded bytes
** (or, before encoding, into the proposer's buffers). */
struct cmd {
  int type;
  uint32_t flags;
  uint64_t time_ms;
  struct str path;
  struct str content_type;
  struct str data;
  uint64_t n_msgs;
  uint64_t ttl_s;
  uint64_t expires_at_ms;
  struct str expires_text;
  struct str stream_seq;
  struct str producer_id;
  uint64_t producer_epoch;
  uint64_t producer_seq;
  struct str fork_source;
  uint64_t fork_offset;
  uint64_t fork_sub;
  uint64_t fork_base; /* CREATE of a fork: the fork point */
  uint64_t fork_inc;  /* CREATE of a fork: the source's incarnation */
  /* Decoded from version-1 entries only, never encoded: a fork CREATE
  ** of a build that copied the inherited bytes into the command */
  struct str inherited;
  size_t n_bounds;
  const uint64_t *bounds;
  /* COLD, TOUCH and FORK_ACQUIRE: the target stream's incarnation (an
  ** ACQUIRE's 0: the proposer saw no stream) */
  uint64_t incarnation;
  uint64_t cold_start, cold_end;
  struct str object;
  /* APPEND with CMD_F_RECORD_MATCH: the record the stream's next must be;
  ** CREATE of a fork with CMD_F_RECORD_BASE: the source's record count at
  ** the fork point */
  uint64_t record_match;
  uint64_t record_base;
  /* SNAPSHOT_PUT and RETAIN: the byte offset (cmd.c); SNAPSHOT_PUT: the
  ** snapshot's digest, and the Stream-Snapshot-Match it must meet
  ** (CMD_F_MATCH); its bytes are data, its type content_type */
  uint64_t at;
  struct str digest;
  struct str match;
  /* MULTI: its ops, each an encoded APPEND as `bytes` (cmd_op_next reads
  ** them), and how many */
  struct str ops;
  uint64_t n_ops;
  /* ATTRS, and CREATE with CMD_F_ATTRS: the attributes, a JSON object in
  ** the canonical form attrs.c writes (empty: none) */
  struct str attrs;
  /* Not encoded: the start of the encoded bytes the views point into
  ** (set by cmd_decode), so that a view's offset in its log entry is
  ** data.ptr - raw: the logical address of the bytes. */
  const char *raw;
};

/* The codecs of the encoding (also used by snapshots): an unsigned LEB128
** varint, and bytes as varint length + bytes.  The getters advance *p and
** return 0, or -1 if the input ends too soon. */
URSULA_PRIVATE int cmd_put_varint(struct buf *b, uint64_t v);
URSULA_PRIVATE int cmd_put_bytes(struct buf *b, struct str s);
URSULA_PRIVATE int cmd_get_varint(const unsigned char **p,
                                  const unsigned char *end, uint64_t *out);
URSULA_PRIVATE int cmd_get_bytes(const unsigned char **p,
                                 const unsigned char *end, struct str *out);

/* Append the encoding of *c to out.  Returns URSULA_OK or URSULA_ENOMEM
** (out unchanged). */
URSULA_PRIVATE int cmd_encode(const struct cmd *c, struct buf *out);
/* Decode p[0..len) into *c, whose views point into p; the bounds array is
** stored in *bounds_store (reused, owned by the caller).  Returns URSULA_OK
** or URSULA_ECORRUPT. */
URSULA_PRIVATE int cmd_decode(const void *p, size_t len, struct cmd *c,
                              struct buf *bounds_store);
/* The next op of MULTI *multi: *rest (first multi->ops) is what is left;
** *op gets the op, its views into the MULTI's bytes, its raw the MULTI's
** (so a view's offset is its offset in the log entry), its time_ms the
** MULTI's.  Returns 1 with an op, 0 at the end, -1 if what is left does
** not decode (cmd_decode checked every op: never for a decoded MULTI). */
URSULA_PRIVATE int cmd_op_next(const struct cmd *multi, struct str *rest,
                               struct cmd *op);

/* ------------------------------------------------------------------ raft.c
** The Raft core of one group: pure (no I/O, no clock, no randomness of its
** own, no allocation after raft_init).  The contract -- every input, every
** action and the driver rules R1-R5 -- is written at the top of raft.c. */
#define RAFT_MAX_VOTERS 5 /* static membership: 1, 3 or 5 voters */
#define RAFT_MSG_RUNS 4   /* term runs one AppendEntries may carry */

/* Roles. */
enum {
  RAFT_FOLLOWER = 1,
  RAFT_PRECANDIDATE = 2, /* a candidate in its pre-vote phase */
  RAFT_CANDIDATE = 3,
  RAFT_LEADER = 4
};
/* Message types (struct raft_msg.type). */
enum {
  RAFT_MSG_APPEND = 1,
  RAFT_MSG_APPEND_RESP = 2,
  RAFT_MSG_PREVOTE = 3,
  RAFT_MSG_PREVOTE_RESP = 4,
  RAFT_MSG_VOTE = 5,
  RAFT_MSG_VOTE_RESP = 6,
  RAFT_MSG_HEARTBEAT = 7,
  RAFT_MSG_HEARTBEAT_RESP = 8,
  RAFT_MSG_SNAPSHOT = 9,
  RAFT_MSG_TIMEOUT_NOW = 10,
  RAFT_MSG_READ_INDEX = 11,
  RAFT_MSG_READ_INDEX_RESP = 12
};
/* struct raft_msg.flags */
#define RAFT_F_REJECT 1u     /* a response that refuses */
#define RAFT_F_TRANSFER 2u   /* a VOTE sent after TimeoutNow: no lease holds */
#define RAFT_F_RECOVERING 4u /* from a node that lost its log (raft.c) */
#define RAFT_F_LEAVING 8u    /* from a node that is stopping (raft.c, LEAVE) */

/* Entries from index on have term, up to the next run (or the end). */
struct raft_run {
  uint64_t index, term;
};

/* One message between two cores of a group (layout and meaning of each
** field per type: raft.c, MESSAGES). */
struct raft_msg {
  uint64_t cluster_id;
  uint64_t from, to;
  uint64_t term;
  uint64_t index;
  uint64_t log_term;
  uint64_t commit;
  uint64_t hint;
  uint64_t last;
  uint64_t ctx;
  uint32_t n;
  uint8_t type, flags, n_runs, pad;
  struct raft_run runs[RAFT_MSG_RUNS];
};

/* Inputs (struct raft_in.type). */
enum {
  RAFT_IN_TICK = 1,
  RAFT_IN_MSG = 2,
  RAFT_IN_PROPOSE = 3,
  RAFT_IN_LOG_DURABLE = 4,
  RAFT_IN_STATE_DURABLE = 5,
  RAFT_IN_SNAP_SENT = 6,
  RAFT_IN_SNAP_FAILED = 7,
  RAFT_IN_SNAP_INSTALLED = 8,
  RAFT_IN_COMPACTED = 9,
  RAFT_IN_READ_INDEX = 10,
  RAFT_IN_TRANSFER = 11,
  RAFT_IN_STORAGE_FAILED = 12,
  RAFT_IN_STORAGE_RECOVERED = 13,
  RAFT_IN_LEAVE = 14,
  RAFT_IN_STAY = 15
};
struct raft_in {
  int type;
  uint32_t n;                 /* PROPOSE: entries */
  uint64_t term, index;       /* LOG_DURABLE, SNAP_INSTALLED, COMPACTED,
                           STORAGE_RECOVERED; STATE_DURABLE: term */
  uint64_t vote;              /* STATE_DURABLE */
  uint64_t peer;              /* SNAP_SENT, SNAP_FAILED, TRANSFER */
  uint64_t ctx;               /* READ_INDEX */
  const struct raft_msg *msg; /* MSG (borrowed for the call) */
};

/* Actions (struct raft_action.type), carried out in order (raft.c). */
enum {
  RAFT_SAVE_STATE = 1,
  RAFT_APPEND = 2,
  RAFT_TRUNCATE = 3,
  RAFT_SEND = 4,
  RAFT_SEND_SNAPSHOT = 5,
  RAFT_INSTALL_SNAPSHOT = 6,
  RAFT_COMMIT = 7,
  RAFT_READ_READY = 8,
  RAFT_ROLE = 9
};
#define RAFT_APPEND_NOOP 1u /* APPEND: empty entries (a new leader's no-op) */
#define RAFT_APPEND_MSG 2u  /* APPEND: the entries carried by the input MSG */
struct raft_action {
  int type;
  unsigned flags;  /* APPEND: RAFT_APPEND_*; SAVE_STATE: 1 = recovering */
  int role;        /* ROLE */
  uint64_t term;   /* SAVE_STATE, ROLE; SEND_SNAPSHOT and INSTALL_SNAPSHOT:
                       the snapshot's last term */
  uint64_t vote;   /* SAVE_STATE */
  uint64_t commit; /* SAVE_STATE */
  uint64_t lo, hi; /* APPEND: entries [lo, hi]; TRUNCATE: from lo on;
                       COMMIT, READ_READY: hi; SEND_SNAPSHOT,
                       INSTALL_SNAPSHOT: hi = the snapshot's last index */
  uint64_t peer;   /* SEND_SNAPSHOT: to; INSTALL_SNAPSHOT: from;
                       ROLE: the leader (0: none) */
  uint64_t ctx;    /* READ_READY */
  uint64_t after_term, after_index; /* SEND: hold until this entry is
                                       durable (0: no entry) */
  struct raft_msg msg; /* SEND; APPEND: runs, n_runs (term of [lo, hi]) */
};
/* The caller's output buffer: raft_step() appends at a[n] (n < cap). */
struct raft_out {
  struct raft_action *a;
  size_t n, cap;
  uint64_t term, index; /* PROPOSE: the (term, index) of its first entry */
};

struct raft_config {
  uint64_t cluster_id; /* every message carries it; others are dropped */
  uint64_t id;         /* this node (nonzero, one of voters) */
  uint64_t voters[RAFT_MAX_VOTERS];
  unsigned n_voters;           /* 1, 3 or 5 */
  unsigned election_ticks;     /* T: timeouts are drawn from [T, 2T) */
  unsigned heartbeat_ticks;    /* < T */
  unsigned max_inflight_msgs;  /* AppendEntries in flight per follower */
  uint64_t max_inflight_bytes; /* entry bytes in flight per follower */
  unsigned max_msg_entries;    /* entries per AppendEntries */
  uint64_t max_msg_bytes;      /* entry bytes per AppendEntries */
  unsigned max_uncommitted;    /* proposed past commit before PROPOSE says
                                  no (0: no cap) */
  unsigned trail_cap;          /* term runs the core remembers */
  unsigned read_cap;           /* read barriers queued at the leader */
  unsigned commit_notify;      /* 1: a leader tells the followers a new
                                  commit index at once (heartbeats), not
                                  at its next tick */
  struct env *env;             /* env->random draws the timeouts */
  /* The size in bytes of entry index of this node's log (any index in
  ** (first - 1, last]); NULL: every entry counts 0 bytes. */
  uint64_t (*entry_bytes)(void *arg, uint64_t index);
  void *arg;
};

/* What the driver read back from durable storage at start. */
struct raft_saved {
  uint64_t term, vote, commit;
  int recovering; /* 1: this node lost its log (raft.c, LOST LOG) */
  uint64_t snap_index, snap_term; /* the log starts after this */
  uint64_t last_index;            /* the last entry (>= snap_index) */
  const struct raft_run *runs;    /* terms of (snap_index, last_index] */
  size_t n_runs;
};

struct raft_peer {
  uint64_t id;
  uint64_t match, next;
  int state;           /* RAFT_PROBE, RAFT_REPLICATE, RAFT_SNAPSHOTTING */
  int paused;          /* PROBE: a probe is out; wait for an answer */
  int active;          /* heard from since the last check-quorum */
  int moved;           /* match moved since the last heartbeat tick */
  int stalled;         /* heartbeat ticks without progress, messages out */
  int vote;            /* this election: 1 granted, -1 refused, 0 not yet */
  uint64_t snap_index; /* SNAPSHOTTING: the snapshot's index */
  uint64_t read_ack;   /* the highest read sequence it confirmed */
  uint64_t told;       /* the commit index a heartbeat last told it */
  int leaving;         /* its last message said LEAVING (raft.c, LEAVE) */
  uint64_t *infl_last, *infl_bytes; /* ring: last index, bytes */
  unsigned infl_head, infl_n;
  uint64_t infl_total; /* bytes in flight */
};
struct raft_read {
  uint64_t ctx, from, index, seq; /* seq 0: waits for a current-term commit */
};
struct raft_stats {
  uint64_t foreign;       /* another cluster, another node, unknown sender */
  uint64_t stale;         /* older term, or answers no longer wanted */
  uint64_t lease;         /* (pre-)votes ignored while a lease held */
  uint64_t stale_durable; /* LOG_DURABLE completions of replaced entries */
  uint64_t refused;       /* inputs refused while storage had failed */
  uint64_t trail_full;    /* a term run that did not fit */
  uint64_t conflict_committed; /* AppendEntries against a committed entry */
};
struct raft {
  struct raft_config c;
  unsigned quorum;
  /* hard state: current, last handed to SAVE_STATE, last durable */
  uint64_t term, vote;
  int recovering; /* lost its log: 1 catching up, 2 polling (raft.c) */
  uint64_t poll_term, poll_nonce; /* LOST LOG's poll (raft.c) */
  uint64_t saved_term, saved_vote;
  int saved_recovering, save_again;
  uint64_t durable_term, durable_vote;
  /* the log, as terms only: (snap_index, last_index] */
  uint64_t snap_index, snap_term, last_index, durable_index, commit;
  struct raft_run *trail;
  unsigned trail_head, trail_n;
  /* role */
  int role;
  uint64_t leader;
  unsigned elapsed, timeout, hb_elapsed;
  int storage_failed;
  uint64_t leader_match;  /* entries <= this match the leader's log */
  uint64_t leader_commit; /* the leader's own commit index, as it said */
  int term_committed;    /* leader: an entry of its term is committed */
  struct raft_peer peers[RAFT_MAX_VOTERS - 1];
  unsigned n_peers;
  struct raft_read *reads;
  unsigned reads_head, reads_n;
  uint64_t read_seq;
  uint64_t transfer_to;
  unsigned transfer_elapsed;
  int leaving; /* LEAVE: this node is stopping (raft.c) */
  struct raft_stats stats;
  void *mem;
};
enum { RAFT_PROBE = 1, RAFT_REPLICATE = 2, RAFT_SNAPSHOTTING = 3 };

/* The smallest output buffer raft_step() accepts for config c. */
URSULA_PRIVATE URSULA_UNUSED size_t raft_out_cap(const struct raft_config *c);
/* Start a core from what storage holds (s).  URSULA_OK, URSULA_EINVAL (a
** bad config or saved state), URSULA_ENOMEM.  raft_free() releases it. */
URSULA_PRIVATE URSULA_UNUSED int raft_init(struct raft *r,
                                           const struct raft_config *c,
                                           const struct raft_saved *s);
URSULA_PRIVATE URSULA_UNUSED void raft_free(struct raft *r);
/* Feed one input; append the actions it gives to out.  URSULA_OK;
** URSULA_EAGAIN (PROPOSE or TRANSFER refused: not the leader, a
** transfer under way, storage failed, too much uncommitted, a target that
** is leaving; LEAVE: a leader with nobody to hand over to); URSULA_EINVAL
** (a malformed input, or out has less room than raft_out_cap()). */
URSULA_PRIVATE URSULA_UNUSED int raft_step(struct raft *r,
                                           const struct raft_in *in,
                                           struct raft_out *out);
/* The term of entry index, if the core knows it: 1 and *term, else 0. */
URSULA_PRIVATE URSULA_UNUSED int raft_term_at(const struct raft *r,
                                              uint64_t index, uint64_t *term);

/* ------------------------------------------------------------------ peer.c
** The transport between nodes of a cluster: one outbound TCP connection
** per (ordered node pair, core), frames of batched Raft messages (wire
** format and rules at the top of peer.c).  A node's peer object has one
** part per core; each part is touched only by its core's thread. */
#define PEER_MAX_FRAME (64u << 20) /* bytes of a frame's body */
#define PEER_HEADER 12             /* bytes of a frame's header */
#define PEER_HELLO_BODY 84         /* bytes of a HELLO's body */
#define PEER_NONCE 32              /* bytes of a CHALLENGE's body */
#define PEER_MAC 32                /* bytes of a HELLO's HMAC-SHA256 */
#define PEER_SECRET_MAX 256        /* bytes of a cluster secret, at most */
#define PEER_SECRET_MIN 16         /* ... and at least */
#define PEER_MAX_NODES 5
enum { PEER_HELLO = 1, PEER_BATCH = 2, PEER_SNAP_CHUNK = 3,
       PEER_CHALLENGE = 4 };
enum { PEER_ITEM_RAFT = 1, PEER_ITEM_FWD = 2, PEER_ITEM_FWD_REPLY = 3 };
/* PEER_ITEM_FWD_REPLY outcomes */
enum { PEER_FWD_ACCEPTED = 0, PEER_FWD_REFUSED = 1 };

struct peer_hello {
  uint64_t cluster_id, from, to;
  uint32_t core, cores, groups;
  uint64_t boot_id;
  unsigned char mac[PEER_MAC]; /* peer_hello_sign() */
};
/* One frame in a byte stream: its kind and body (a view into the input). */
struct peer_frame {
  int kind;
  const unsigned char *body;
  size_t len;
};
/* One RAFT item of a BATCH: msg with cluster_id and to filled in from the
** HELLO; for an APPEND, msg.n WAL records (checked) in records[0..len). */
struct peer_item {
  int kind;
  int group;
  struct raft_msg msg;
  const unsigned char *records; /* RAFT: records; FWD: the command */
  size_t len;
  uint64_t req;         /* FWD, FWD_REPLY: the forwarder's request id */
  int outcome;          /* FWD_REPLY: PEER_FWD_* */
  uint64_t term, index; /* FWD_REPLY, accepted: where the leader put it */
};
struct peer_snap {
  int group;
  uint64_t term, snap_index, snap_term, offset, total;
  int last;
  const unsigned char *data;
  size_t len;
};

/* The codec.  Encoders append to b (URSULA_OK or URSULA_ENOMEM); decoders
** never read past their input and return URSULA_OK, URSULA_EAGAIN (a
** frame: need more bytes) or URSULA_ECORRUPT with *why (a static string
** for the log: a protocol error). */
URSULA_PRIVATE int peer_hello_put(struct buf *b, const struct peer_hello *h);
URSULA_PRIVATE int peer_challenge_put(struct buf *b,
                                      const unsigned char nonce[PEER_NONCE]);
/* h->mac for the listener's nonce, under the cluster secret key[0..len)
** (len 0: the empty key, which proves nothing; see AUTHENTICATION). */
URSULA_PRIVATE void peer_hello_sign(struct peer_hello *h,
                                    const unsigned char nonce[PEER_NONCE],
                                    const void *key, size_t len);
/* 1 if h->mac is that signature (compared in constant time), else 0. */
URSULA_PRIVATE int peer_hello_verify(const struct peer_hello *h,
                                     const unsigned char nonce[PEER_NONCE],
                                     const void *key, size_t len);
URSULA_PRIVATE int peer_item_put(struct buf *b, int group,
                                 const struct raft_msg *m, const void *records,
                                 size_t len);
/* Any decoded item again, as peer_item_get() read it (tests, fuzzing). */
URSULA_PRIVATE URSULA_UNUSED int peer_item_encode(struct buf *b,
                                                  const struct peer_item *it);
/* Frame the items b[start..) (body of a BATCH; start = the offset the
** caller reserved PEER_HEADER bytes at), and likewise any kind. */
URSULA_PRIVATE int peer_frame_reserve(struct buf *b, size_t *start);
URSULA_PRIVATE void peer_frame_seal(struct buf *b, size_t start, int kind);
URSULA_PRIVATE URSULA_UNUSED int peer_snap_put(struct buf *b, const struct peer_snap *s);
/* The frame at the start of p[0..n), whole: *used bytes are it. */
URSULA_PRIVATE int peer_frame_get(const void *p, size_t n,
                                  struct peer_frame *f, size_t *used,
                                  const char **why);
URSULA_PRIVATE int peer_hello_get(const struct peer_frame *f,
                                  struct peer_hello *h, const char **why);
URSULA_PRIVATE int peer_challenge_get(const struct peer_frame *f,
                                      unsigned char nonce[PEER_NONCE],
                                      const char **why);
/* The next item of a BATCH body at *p (< end), sent under HELLO h. */
URSULA_PRIVATE int peer_item_get(const unsigned char **p,
                                 const unsigned char *end,
                                 const struct peer_hello *h,
                                 struct peer_item *it, const char **why);
URSULA_PRIVATE int peer_snap_get(const struct peer_frame *f,
                                 const struct peer_hello *h,
                                 struct peer_snap *s, const char **why);

/* Callbacks, run on the thread of the core the connection belongs to:
** one RAFT item, one SNAP_CHUNK (views valid during the call). */
typedef void (*peer_raft_fn)(void *arg, int core, int group,
                             const struct raft_msg *m, const void *records,
                             size_t len);
typedef void (*peer_snap_fn)(void *arg, int core, uint64_t from,
                             const struct peer_snap *s);
/* A FWD or FWD_REPLY item from node `from` (views valid during the call). */
typedef void (*peer_fwd_fn)(void *arg, int core, uint64_t from,
                            const struct peer_item *it);
struct peer_node {
  int id;
  char host[256];
  int port;
};
struct peer_config {
  uint64_t cluster_id; /* peer_cluster_hash() of the cluster's name */
  int node_id;
  int n_nodes; /* every member, this node included */
  struct peer_node nodes[PEER_MAX_NODES];
  char listen_host[256]; /* this node's peer listener */
  int listen_port;       /* 0: any free port (tests) */
  char bind_host[256];   /* source address of outbound connections */
  int n_cores, n_groups;
  struct env *env; /* NULL: env_real() */
  /* the cluster secret (--cluster-secret-file): what a HELLO's MAC is
  ** keyed with; len 0: the empty key (links not authenticated) */
  unsigned char secret[PEER_SECRET_MAX];
  size_t secret_len;
  peer_raft_fn on_raft;
  peer_snap_fn on_snap;
  peer_fwd_fn on_fwd;
  void *arg;
};
/* What one link (this core and node) did; in counters are of the
** connections that node's same core opened to this one. */
struct peer_link_stats {
  int up;
  uint64_t heard_ms; /* loop ms of the last frame received (0: none) */
  uint64_t frames_out, bytes_out, items_out, dropped;
  uint64_t frames_in, bytes_in, items_in;
};
struct peer;
/* FNV-1a 64 of a cluster's name: the cluster id HELLO carries. */
URSULA_PRIVATE uint64_t peer_cluster_hash(const char *name);
/* Bind the listener and set up the cores' parts; loops[i] is core i's
** loop (not yet running, or this is its thread).  Nothing is dialed
** until peer_start. */
URSULA_PRIVATE int peer_open(struct peer **out, const struct peer_config *cfg,
                             struct loop **loops, char *err);
URSULA_PRIVATE URSULA_UNUSED int peer_port(const struct peer *p);
/* Change a node's port before peer_start (tests: ports from the kernel). */
URSULA_PRIVATE URSULA_UNUSED void peer_set_port(struct peer *p, int node_id, int port);
/* Resolve the nodes' addresses and arm every core's dials.  Call before
** the loops run. */
URSULA_PRIVATE int peer_start(struct peer *p, char *err);
/* Close every socket and free p (the loops are stopped, or this is the
** thread of every one: tests). */
URSULA_PRIVATE void peer_close(struct peer *p);
/* On core's thread: queue a RAFT item for node; URSULA_OK, or
** URSULA_EAGAIN: dropped and counted (the link is down or its output
** over the cap); URSULA_EINVAL: no such node. */
URSULA_PRIVATE URSULA_UNUSED int peer_send(struct peer *p, int core, int node_id, int group,
                             const struct raft_msg *m, const void *records,
                             size_t len);
/* On core's thread: queue a FWD item (a write forwarded to the leader:
** cmd[0..len) an encoded command) or a FWD_REPLY for node; as
** peer_send. */
URSULA_PRIVATE URSULA_UNUSED int peer_forward(struct peer *p, int core,
                                              int node_id, int group,
                                              uint64_t req, const void *cmd,
                                              size_t len);
URSULA_PRIVATE URSULA_UNUSED int peer_fwd_reply(struct peer *p, int core,
                                                int node_id, int group,
                                                uint64_t req, int outcome,
                                                uint64_t term, uint64_t index);
/* On core's thread: a SNAP_CHUNK for node, framed behind the items
** queued before it and written at once.  URSULA_OK; URSULA_EAGAIN: not
** sent (the link is down, or its unwritten output over PEER_SNAP_CAP,
** 4 MiB: send it again later); URSULA_EINVAL, URSULA_ENOMEM. */
URSULA_PRIVATE URSULA_UNUSED int peer_send_snap(struct peer *p, int core,
                                                int node_id,
                                                const struct peer_snap *s);
/* At the end of core's turn: one frame per destination. */
URSULA_PRIVATE void peer_flush(struct peer *p, int core);
URSULA_PRIVATE URSULA_UNUSED void peer_stats(const struct peer *p, int core, int node_id,
                               struct peer_link_stats *out);

/* ---------------------------------------------------------------- stream.c
** The state machine of one group: its streams, and the apply function. */

struct stream_producer {
  struct stream_producer *next;
  uint64_t epoch;
  uint64_t seq; /* highest accepted Producer-Seq */
  size_t id_len;
  char id[1]; /* id_len bytes follow, NUL-terminated */
};

/* Where a unit's bytes are in the group's log, logically: the index of
** the entry that carried them and the offset of the first byte in that
** entry's payload.  The same on every replica that applied the same log
** (a file offset would not be); the WAL maps it to a file position. */
struct stream_loc {
  uint64_t index;
  uint64_t off;
};

/* A run of a stream's bytes, [start, end), kept in one cold-tier object
** (format and names in cold.c). */
struct stream_chunk {
  uint64_t start, end;
  char *name; /* the object's name, NUL-terminated */
};

/* What one node keeps of a stream beside the replicated state: caches,
** reader bookkeeping, upload progress.  Never part of a snapshot or of
** stream_digest(), and no apply decision reads it: two replicas with the
** same log have equal streams whatever these fields hold. */
#define STREAM_DIGEST_LEN 71 /* "sha256:" and 64 hex digits */

struct stream_local {
  uint64_t hot_start;       /* bytes before this are only in the log */
  struct buf data;          /* bytes [hot_start, tail): the hot data */
  uint64_t watch_mask;      /* cores with live readers */
  int flushing;             /* an upload to the cold tier is under way */
  uint64_t unflushed_since; /* wall ms the oldest byte past cold_end came
                               (0: none) */
  uint64_t read_ms;         /* the last read (wall ms), for the sliding TTL:
                               the owner logs it as a TOUCH (group.c) */
  uint64_t touch_ms;        /* the last read_ms proposed as a TOUCH, */
  uint64_t touch_index;     /* at this log index (0: none on its way) */
  struct buf snap_data;     /* the published snapshot's bytes while hot
                               (snap_len of them), else empty: read from
                               the log at snap_loc (stream.c, SNAPSHOTS) */
  int snap_hot;             /* snap_data holds them */
};

struct stream {
  struct stream *hnext; /* hash chain */
  uint64_t hash;        /* util_hash64(path) */
  char *path;
  size_t path_len;
  char *content_type; /* as given at create (trimmed) */
  int json;           /* application/json: data is "v1,v2,...," */
  int closed;
  int soft_deleted;        /* deleted or expired while forks still read it */
  uint64_t tail;           /* byte offset after the last byte */
  uint64_t *bounds;        /* end offset of each append unit, ascending */
  struct stream_loc *locs; /* where each unit is in the log */
  size_t n_bounds, cap_bounds;
  int has_ttl;
  uint64_t ttl_s;
  int has_expires;
  uint64_t expires_at_ms;
  char *expires_text;
  uint64_t last_access_ms; /* for the sliding TTL: create, appends, TOUCH */
  char *stream_seq;        /* last Stream-Seq, or NULL */
  size_t stream_seq_len;
  struct stream_producer *producers;
  char *closed_by_id; /* producer that closed it, or NULL */
  size_t closed_by_id_len;
  uint64_t closed_by_epoch, closed_by_seq;
  char *fork_source; /* path of the source if a fork, else NULL */
  size_t fork_source_len;
  uint64_t fork_offset, fork_sub;
  /* A fork refers to its source's bytes instead of holding them: bytes
  ** [0, base) are the source's (incarnation fork_inc) as they were, read
  ** from the source (a fork of a fork reads through the chain); the
  ** stream's own units, bounds[] and everything below cover [base,
  ** tail).  0 for a stream that is not a fork (and for a fork made by a
  ** build that copied the inherited bytes: they are its own units). */
  uint64_t base;
  uint64_t fork_inc;
  uint64_t refcount;    /* live forks reading this stream */
  uint64_t incarnation; /* unique per group: tells re-creations apart */
  char *attrs; /* its attributes (attrs.c's canonical JSON), or NULL */
  size_t attrs_len;
  /* the cold tier: bytes [base, cold_end) are in chunks[], in order and
  ** back to back; they are the first cold_units units */
  struct stream_chunk *chunks;
  size_t n_chunks, cap_chunks;
  uint64_t cold_end;
  size_t cold_units;
  /* JSON RECORDS (stream.c, "Records"): rec_ends[u] is the number of
  ** records (JSON messages) in the stream up to the end of unit u,
  ** parallel to bounds[]; rec_base is that number at base (a fork's
  ** inherited records, 0 for a stream that is no fork).  0 throughout
  ** for a stream that is not JSON. */
  uint64_t *rec_ends;
  uint64_t rec_base;
  /* SNAPSHOTS AND RETENTION (stream.c): bytes below `retained` are no
  ** longer kept (its first retained_units units are wholly below it);
  ** the published snapshot (has_snap): at byte offset snap_at, snap_len
  ** bytes of type snap_type, carried by the log entry at snap_loc, and
  ** its digest "sha256:<64 hex>" */
  uint64_t retained;
  size_t retained_units;
  int has_snap;
  uint64_t snap_at, snap_len;
  char *snap_type;
  char snap_digest[STREAM_DIGEST_LEN + 1];
  struct stream_loc snap_loc;
  struct stream_local local; /* this node's, not replicated */
};

/* A bucket's record (api.c, BUCKETS), in the group of its route "/{b}":
** replicated state, made by BUCKET_CREATE and removed by BUCKET_DELETE. */
struct stream_bucket {
  char name[65]; /* the bucket name, NUL-terminated */
  size_t name_len;
  uint64_t created_ms; /* the time_ms of the BUCKET_CREATE that made it */
};

struct stream_state {
  struct stream **slots; /* open hash table of chains */
  size_t cap, n;
  struct stream_bucket *buckets; /* the group's bucket records, by name */
  size_t n_buckets, cap_buckets;
  uint64_t next_incarnation;
  uint64_t hot_bytes;  /* sum of the streams' data.len */
  size_t evict_cursor; /* slot where the next eviction pass starts */
  /* Set while a WAL is replayed at start: a unit appended to a stream
  ** that holds nothing in memory stays in the log only (hot_start moves
  ** with the tail), so a restart copies no stream byte into memory, as
  ** after a snapshot's restore; memory fills again with later appends.
  ** Local: no apply decision reads it. */
  int log_only;
  /* Append len bytes kept at *loc in the WAL to out (set by the group
  ** that has a WAL; cold bytes exist only then). */
  int (*read_cold)(void *ctx, const struct stream_loc *loc, uint64_t len,
                   struct buf *out);
  /* Point *p at the bytes of chunk ch if they are in memory (URSULA_OK);
  ** else start fetching them and return URSULA_EAGAIN (or an error).  Set
  ** by the group that has a cold tier. */
  int (*read_chunk)(void *ctx, const struct stream *s,
                    const struct stream_chunk *ch, const char **p);
  void *read_ctx;
};

/* What applying a command did: the reply to give and the effects the
** group must carry out once the command is committed. */
struct stream_result {
  int status;         /* HTTP status for the proposer */
  const char *reason; /* static text for error replies, or NULL */
  uint64_t tail;      /* Stream-Next-Offset after the command */
  int closed;         /* stream is closed after the command */
  int producer_echo;  /* send Producer-Epoch / Producer-Seq */
  uint64_t producer_epoch, producer_seq;
  int seq_gap; /* 409: Producer-Expected-Seq / Producer-Received-Seq */
  uint64_t expected_seq, received_seq;
  int type_mismatch; /* 409: the content type is not the stream's (or,
                        for a fork, its source's) */
  int fenced; /* 403: Producer-Epoch = current epoch */
  uint64_t current_epoch;
  int release_source; /* a fork CREATE that created nothing: release it */
  int refused;        /* not applied: the log refused the entry (group.c) */
  int unknown; /* refused, yet it may still commit (a cluster's leader lost
                  its term or its log after sending it, or a forward had
                  no answer): nothing may count on its absence */
  /* live readers to wake: */
  int notify;
  uint64_t watch_mask;
  uint64_t prev_tail;
  int deleted;
  /* JSON records (stream.c, "Records"): the stream's first retained
  ** record, the first record the command appended (create, append), and
  ** the stream's next record after it (also on a 412 and a duplicate) */
  uint64_t rec_first, rec_start, rec_next;
  /* the buffers stay last (group_refuse); all are the caller's */
  /* cold-tier objects nothing refers to any more: NUL-terminated names */
  struct buf garbage;
  /* FORK_RELEASE commands to send: NUL-terminated source paths */
  struct buf releases;
  /* MULTI: one struct stream_op per op, in order (empty otherwise) */
  struct buf ops;
};

/* The outcome of one op of a MULTI.  path is a view into the command's
** bytes (valid while they are); r is the op's result, as an APPEND of
** its own would have had (its buffers unused).  An op of an ATOMIC MULTI
** that another op's failure kept from applying has r.status 0. */
struct stream_op {
  struct str path;
  struct stream_result r;
};

URSULA_PRIVATE void stream_state_init(struct stream_state *st);
URSULA_PRIVATE void stream_state_free(struct stream_state *st);
/* Apply the committed command *c, the payload of log entry `index`.
** Pure: the result depends only on the state, index and *c (its time_ms
** is the clock); no I/O; out of memory aborts.  A command that breaks a
** protocol rule is a reply (4xx) in *r, not a failure.  *r is reset first;
** its garbage and releases buffers are the caller's (reset to empty, not
** freed).  Returns URSULA_OK, or URSULA_ECORRUPT for an unknown type. */
URSULA_PRIVATE int stream_apply(struct stream_state *st, uint64_t index,
                                const struct cmd *c, struct stream_result *r);
/* Look a stream up by path; NULL if there is none (expired or not). */
URSULA_PRIVATE struct stream *stream_find(struct stream_state *st,
                                          struct str path);
/* The record of bucket `name` in this group; NULL if it has none. */
URSULA_PRIVATE const struct stream_bucket *stream_bucket_find(
    const struct stream_state *st, struct str name);
/* Whether s has expired at now_ms by Expires-At, or by its TTL counted
** from last_access_ms (the log's s->last_access_ms in apply; the owner
** adds the reads it has not logged yet). */
URSULA_PRIVATE int stream_expired(const struct stream *s,
                                  uint64_t last_access_ms, uint64_t now_ms);
/* Normalise a media type for comparison: lowercase, parameters and
** surrounding blanks dropped.  Writes at most cap-1 bytes plus NUL. */
URSULA_PRIVATE void stream_norm_type(struct str ct, char *out, size_t cap);
/* Append the bytes of s's published snapshot (s->has_snap) to out: from
** memory while hot, else from the log.  URSULA_OK or an error of the read
** (URSULA_EIO: neither holds them). */
URSULA_PRIVATE int stream_read_snapshot(struct stream_state *st,
                                        const struct stream *s,
                                        struct buf *out);
/* Append bytes [start, end) of s to out (s->base <= start <= end <=
** s->tail: the stream's own bytes; else URSULA_EINVAL): from memory;
** below s->hot_start from the WAL; below s->cold_end from the cold
** tier's chunks.  URSULA_OK; URSULA_EAGAIN when a chunk is being fetched
** (out then holds the bytes before it: call again for the rest once it
** is here); or an error of the read. */
URSULA_PRIVATE int stream_read(struct stream_state *st, const struct stream *s,
                               uint64_t start, uint64_t end, struct buf *out);
/* Drop hot data that the WAL also holds until st->hot_bytes is at most
** max / 2 (when it is above max), oldest units of each stream first. */
URSULA_PRIVATE void stream_evict(struct stream_state *st, uint64_t max);
/* A snapshot of the replicated state, in canonical form (equal states
** give equal bytes): every stream's metadata, producer state, forks,
** TTLs, chunks, and the log position of each unit's bytes (the bytes stay
** in the log).  URSULA_EINVAL if a unit is in no log.  stream_restore()
** fills an empty state from one; all data then starts out of memory.
** Format in stream.c. */
URSULA_PRIVATE int stream_snapshot(const struct stream_state *st,
                                   struct buf *out);
URSULA_PRIVATE int stream_restore(struct stream_state *st, const void *p,
                                  size_t len);
/* The chunk of s that holds byte off (off < s->cold_end). */
URSULA_PRIVATE size_t stream_chunk_at(const struct stream *s, uint64_t off);
/* One 64-bit digest of the replicated state (FNV-1a of the canonical
** snapshot): equal on replicas that applied the same log. */
URSULA_PRIVATE URSULA_UNUSED int stream_digest(const struct stream_state *st,
                                               uint64_t *digest);
/* The oldest log index at or after floor that a unit's bytes are in
** (UINT64_MAX if none); units in the cold tier do not count. */
URSULA_PRIVATE uint64_t stream_oldest_index(const struct stream_state *st,
                                            uint64_t floor);
/* Where a unit's bytes are in the log: [off, off + len) of entry index's
** payload. */
struct stream_piece {
  uint64_t index, off, len;
};
/* Every unit not in the cold tier whose entry is below `below`, as struct
** stream_piece, into out (replaced), in ascending (index, off) order: the
** log bytes a snapshot needs when the log no longer holds entries below
** `below`.  URSULA_OK or URSULA_ENOMEM. */
URSULA_PRIVATE int stream_log_units(const struct stream_state *st,
                                    uint64_t below, struct buf *out);
/* The stream's unit index i such that bounds[i-1] <= off < bounds[i]
** (n_bounds if off >= tail; 0 if off < base, where no own unit is). */
URSULA_PRIVATE size_t stream_unit_at(const struct stream *s, uint64_t off);
/* The start of the unit of s that holds off (s's own: off >= base; off
** at the tail: the tail). */
URSULA_PRIVATE uint64_t stream_unit_floor(const struct stream *s,
                                          uint64_t off);
/* Where unit u (< n_bounds) starts: bounds[u-1], or base for the first. */
URSULA_PRIVATE uint64_t stream_unit_start(const struct stream *s, size_t u);
/* JSON records (stream.c, "Records").  The first retained record of s (0:
** nothing is trimmed yet; retention moves it), and the next record (the
** count of records ever appended, inherited ones included). */
URSULA_PRIVATE uint64_t stream_record_first(const struct stream *s);
URSULA_PRIVATE uint64_t stream_record_next(const struct stream *s);
/* The records of s before byte off, which is one of s's own unit
** boundaries (base <= off <= tail, off a unit start or the tail). */
URSULA_PRIVATE uint64_t stream_record_at(const struct stream *s,
                                         uint64_t off);
/* Where record rec (rec_base <= rec <= next) is: the start of the unit
** holding it, *off, and how many records of that unit come before it,
** *skip (0 and the tail for rec == next). */
URSULA_PRIVATE void stream_record_find(const struct stream *s, uint64_t rec,
                                       uint64_t *off, uint64_t *skip);

/* ------------------------------------------------------------------ conf.c
** Flags and config files (the public ursula_config_* live there too). */
enum { CONF_RUN = 1, CONF_HELP = 2, CONF_VERSION = 3, CONF_CHECK = 4 };
/* Parse the command line into cfg.  `--config FILE` (and the one
** `--check-config FILE`) is loaded first wherever it appears; then the
** other flags, in order, override it.  Returns CONF_RUN, CONF_CHECK
** (--check-config was given: check cfg, start nothing), CONF_HELP,
** CONF_VERSION, or URSULA_EINVAL with a one-line reason in err
** (URSULA_ERRMSG_LEN bytes).  check may be NULL; else *check is the
** --check-config FILE (a pointer into argv) or NULL, also on a failure
** past the syntax. */
URSULA_PRIVATE int conf_parse_args(struct ursula_config *cfg, int argc,
                                   char **argv, const char **check,
                                   char *err);
URSULA_PRIVATE void conf_print_help(FILE *f);    /* usage and every flag */
URSULA_PRIVATE void conf_print_version(FILE *f); /* version and options */

/* The cluster settings together: --peer and --node-id need each other,
** the node is a member, 1, 3 or 5 members.  URSULA_OK or URSULA_EINVAL
** with the reason in err. */
URSULA_PRIVATE int conf_check_cluster(const struct ursula_config *cfg,
                                      char *err);

/* ------------------------------------------------------------------ cold.c
** The cold tier: chunk objects in S3 or a folder (names and format in
** cold.c), served by a pool of threads; and each core's chunk cache. */
#define COLD_NAME_MAX 96 /* bytes of an object name, with its NUL */
#define COLD_HEADER 40   /* bytes of a chunk's header */
enum { COLD_PUT = 1, COLD_GET, COLD_DELETE, COLD_LIST };

/* One request to the cold tier's threads.  The requester fills it in and
** submits it; a thread carries it out, sets rc, and posts it to `reply`,
** whose thread runs msg.on_msg and then owns (and frees) it. */
struct cold_req {
  struct loop_msg msg;
  struct cold_req *next; /* the queue */
  struct loop *reply;
  int op;                   /* COLD_* */
  char name[COLD_NAME_MAX]; /* the object; LIST: the name prefix */
  struct buf data; /* PUT: the chunk; GET: the chunk read; LIST: the names
                      found, each followed by a NUL */
  int rc;          /* URSULA_OK, URSULA_ENOTFOUND (GET), or an error */
  /* the requester's own: */
  void *owner; /* whose request it is (tier.c: its struct tier) */
  int group;
  uint64_t incarnation, start, end;
  uint64_t term; /* tier.c: the leader's term it was made in */
  struct buf path;
  unsigned tmp_tag; /* folder PUT: nonzero, the temporary file is
                       NAME.<tmp_tag>.tmp, this writer's own (the marker,
                       which several nodes may write at once) */
};
struct cold;
struct cold_cache;
URSULA_PRIVATE struct cold_req *cold_req_new(int op, struct loop *reply,
                                             loop_msg_fn done);
URSULA_PRIVATE void cold_req_free(struct cold_req *r);
/* Read object name from c's store now, on the caller (no thread, no
** claim: a read), through the S3 connection *cl (opened on first use; the
** caller frees it with s3_client_free), into *out (replaced).
** URSULA_OK, URSULA_ENOTFOUND, or an error with err set.  For `ursula
** restore` (backup.c), which checks every chunk a backup names. */
URSULA_PRIVATE URSULA_UNUSED int cold_get_now(struct cold *c,
                                              struct s3_client **cl,
                                              const char *name,
                                              struct buf *out, char *err);
/* Start the tier's threads for cfg's --cold-dir or --s3-* settings (cfg
** must outlive it); a --cold-dir is reached through env's file-system
** table (NULL: env_real()).  Without threads (URSULA_ENABLE_THREADS=0)
** none start: cold_submit() carries each request out on its caller and
** posts the result to r->reply as a thread would.  URSULA_OK or an
** error with a reason in err. */
URSULA_PRIVATE int cold_open(struct cold **out, const struct ursula_config *cfg,
                             struct env *env, char *err);
/* Whose objects a store holds (the marker, cold.c). */
struct cold_owner {
  char cluster_id[65]; /* --cluster-id */
  int groups;          /* --raft-group-count */
  char node[33];       /* a single node: its id (32 hex digits); "" in a
                          cluster */
  int claimed_before;  /* its --wal-dir records a claim that succeeded */
  uint64_t chunks;     /* chunks its WAL names in the store */
};
/* Claim the store for me, on the caller, before the cores start: find
** its marker and check it, or write it (the rules in cold.c).
** URSULA_OK: the store is ours.  URSULA_EINVAL: it is not, or it lost
** what the WAL names (the reason, in err: do not start).  Another error:
** the store could not be reached (reason in err); the tier then writes
** and deletes nothing until a later claim, made by the threads before
** each PUT, DELETE or LIST, succeeds. */
URSULA_PRIVATE int cold_claim(struct cold *c, const struct cold_owner *me,
                              char *err);
/* Stop the threads (after the cores: results are posted to them). */
URSULA_PRIVATE void cold_close(struct cold *c);
URSULA_PRIVATE void cold_submit(struct cold *c, struct cold_req *r);
/* The name of the chunk of bytes [start, end) of stream incarnation inc
** of group `group`, uploaded by the group's leader of Raft term `term`,
** into out (COLD_NAME_MAX bytes). */
URSULA_PRIVATE void cold_chunk_name(char *out, int group, uint64_t inc,
                                    uint64_t start, uint64_t end,
                                    uint64_t term);
/* The term a chunk's name carries (also with a folder store's ".tmp" of
** an upload in flight after it); 0 for a name without one (written
** before names carried terms) or not a chunk's name. */
URSULA_PRIVATE uint64_t cold_chunk_term(const char *name);
/* obj holds COLD_HEADER bytes of room, then the stream's bytes from
** start: fill in the header. */
URSULA_PRIVATE void cold_chunk_seal(struct buf *obj, uint64_t inc,
                                    uint64_t start);
/* URSULA_OK if obj is the intact chunk of [start, end) of inc. */
URSULA_PRIVATE int cold_chunk_check(const struct buf *obj, uint64_t inc,
                                    uint64_t start, uint64_t end);
URSULA_PRIVATE struct cold_cache *cold_cache_new(uint64_t max_bytes);
URSULA_PRIVATE void cold_cache_free(struct cold_cache *k);
/* The data of the cached chunk `name` (after its header), or NULL; valid
** until the next cold_cache_put(). */
URSULA_PRIVATE const char *cold_cache_get(struct cold_cache *k,
                                          const char *name);
/* Keep the checked chunk obj (taken: *obj is emptied) as `name`. */
URSULA_PRIVATE void cold_cache_put(struct cold_cache *k, const char *name,
                                   struct buf *obj);

/* ------------------------------------------------------------------ tier.c
** The cold-tier policy of one group: what moves to chunk objects and
** when, the COLD commands that name them, reads parked on chunk fetches,
** the start-up sweep of unnamed objects, back-off (cold.c is the
** mechanism).  A group embeds a struct tier and calls in; the tier never
** calls group.c, and reaches the group only through what it was handed.
** Everything here runs on the group's owner thread. */

struct core;
struct group;
struct job;
struct tier_fetch;

/* What a group's tier has done since it started (metrics.c): chunks
** uploaded and read back (bytes of whole chunk objects), and failed;
** reads served from the core's cache; objects deleted. */
struct tier_stats {
  uint64_t uploads, upload_bytes, upload_failures;
  uint64_t fetches, fetch_bytes, fetch_failures;
  uint64_t cache_hits, deletes, delete_failures;
};
struct tier {
  /* the group's, set by group.c before tier_attach(): */
  struct group *group;     /* the group (opaque here), for propose */
  int id;                  /* its id: object names, log lines */
  struct env *env;         /* its clocks */
  struct stream_state *sm; /* its state machine; changed only by COLD */
  struct wal *wal;         /* its log: nothing moves while it has failed */
  /* group_propose(): proposes the COLD commands */
  void (*propose)(struct core *c, struct group *g, const struct cmd *cmd,
                  void (*done)(struct core *c, struct group *g,
                               const struct stream_result *r, void *arg),
                  void *arg);
  /* group_lead_term(): the term in which this node leads the group and
  ** has applied an entry of that term, else 0 (the tier acts only then) */
  uint64_t (*lead_term)(const struct group *g);
  /* the tier's own (zero: no cold tier) */
  struct cold *cold;               /* NULL: none */
  struct cold_cache *cache;        /* the owner core's */
  uint64_t chunk_bytes;            /* size of a chunk to move */
  uint64_t flush_age_ms;           /* move bytes waiting this long (0: never) */
  uint64_t swept;                  /* the lead term its sweep ran in */
  uint64_t swept_ms;               /* when its last sweep began */
  int listing;                     /* its LIST is under way */
  int n_uploads;                   /* uploads in flight */
  int n_deletes;                   /* deletes in flight */
  uint64_t retry_ms;               /* backing off until then (wall clock) */
  uint64_t backoff_ms;             /* the current back-off step */
  uint64_t moved;                  /* bytes moved since the group's last
                                      snapshot (the group resets it) */
  struct tier_fetch *fetches;      /* chunks being read back */
  const struct stream_chunk *want; /* the chunk a read missed ... */
  uint64_t want_inc;               /* ... and its stream's incarnation */
  struct tier_stats stats;         /* for metrics (the group's core) */
};

/* Start moving data of t's group to cold (threads) and reading it back
** through cache, chunks of about hot_max / 4 bytes (4 KiB to 4 MiB); also
** bytes that waited flush_age_ms (0: never).  The group's fields of *t
** are set; the rest is zero. */
URSULA_PRIVATE void tier_attach(struct tier *t, struct cold *cold,
                                struct cold_cache *cache, uint64_t flush_age_ms,
                                uint64_t hot_max);
/* Free what t holds; jobs still parked are dropped through their
** msg.on_drop (the server stops). */
URSULA_PRIVATE void tier_free(struct tier *t);
/* Once a second: the start-up sweep (until it has run), then moving
** data.  A no-op without a cold tier. */
URSULA_PRIVATE void tier_tick(struct core *c, struct tier *t);
/* The group's stream_state read_chunk: point *p at the cached bytes of
** chunk ch of s (URSULA_OK), or note ch as the chunk to fetch and return
** URSULA_EAGAIN (URSULA_EIO without a cold tier). */
URSULA_PRIVATE int tier_read_chunk(struct tier *t, const struct stream *s,
                                   const struct stream_chunk *ch,
                                   const char **p);
/* After a read of t's group returned URSULA_EAGAIN: park j on the fetch
** of the chunk it missed (one fetch per chunk).  Once the chunk is in (or
** could not be had), j runs again through j->msg.on_msg on this core,
** with j->fetch_rc URSULA_OK (or why not).  URSULA_OK, or URSULA_ENOMEM
** (j is not parked). */
URSULA_PRIVATE int tier_fetch(struct core *c, struct tier *t, struct job *j);
/* The answer to a read whose chunk could not be had with rc: the status
** (500 missing or damaged, 503 otherwise) and its *reason. */
URSULA_PRIVATE int tier_fetch_status(int rc, const char **reason);
/* Delete the objects named in names (each NUL-terminated); failures are
** left to the next start-up sweep. */
URSULA_PRIVATE void tier_delete_objects(struct core *c, struct tier *t,
                                        const struct buf *names);

/* ----------------------------------------------------------------- group.c
** A group: its log and its state machine, owned by one core.  Requests
** reach the owner as jobs; the owner proposes commands to the log, applies
** them once committed (one apply path, replay's too), carries out their
** effects, and sends the job back with its result; it also serves reads,
** writes snapshots and expires streams.  Its cold-tier policy is tier.c's
** (a struct tier in the group), the fork protocol fork.c's (above it). */

enum {
  JOB_CREATE = 1, /* PUT */
  JOB_APPEND,     /* POST */
  JOB_DELETE,     /* DELETE */
  JOB_READ,       /* GET: catch-up, long-poll or SSE */
  JOB_HEAD,       /* HEAD */
  JOB_STATUS,     /* GET, HEAD /__ursula/cluster (api.c; never a group's) */
  JOB_BACKUP,     /* the admin paths /__ursula/backup... (api.c); a POST's
                     goes to the group's owner (group_backup) */
  JOB_SNAPSHOT,   /* POST /__ursula/raft/G/snapshot on the admin listener:
                     to the group's owner (group_snapshot_now) */
  JOB_SHED,       /* /__ursula/leadership-shed/maintenance (api.c): answered
                     where it arrives */
  JOB_BUCKET_CREATE, /* PUT /{b}: to the group of "/{b}" */
  JOB_BUCKET_DELETE, /* DELETE /{b}, once no stream is in it (api.c) */
  JOB_MULTI,         /* POST .../append-batch or .../$transaction
                        (batch.c): body holds the ops, n_ops in cmd */
  JOB_ATTRS,         /* PUT .../attrs: attrs holds them (attrs.c) */
  JOB_BUCKETS,       /* a bucket gathering (api.c; never a group's):
                        bucket_mode says which */
  JOB_SNAP_PUT,      /* PUT .../snapshot/{offset} (api.c, SNAPSHOTS) */
  JOB_SNAP_GET,      /* GET, HEAD, DELETE .../snapshot[/{offset}] */
  JOB_RETAIN,        /* PUT .../retention/{offset} */
  JOB_BOOTSTRAP      /* GET .../bootstrap */
};
enum { JOB_LIVE_NONE = 0, JOB_LIVE_POLL = 1, JOB_LIVE_SSE = 2 };
/* A JOB_HEAD of a stream's sub-resource rather than of the stream */
enum { JOB_SUB_NONE = 0, JOB_SUB_ATTRS = 1, JOB_SUB_NOMEM = 2 /* (its copy) */ };
/* Where a read of a fork's inherited bytes is (struct job's read_hop;
** group.c has the steps): at the owner of the stream read (planned
** there), at an owner of a stream it inherits from, or back at the first
** to finish. */
enum { JOB_HOP_PLAN = 0, JOB_HOP_SOURCE, JOB_HOP_BACK };
/* A read's start in records (json-record-coordinates-v1): none (offset),
** record=n, record=now, tail_records=n. */
enum { JOB_REC_NONE = 0, JOB_REC_AT, JOB_REC_NOW, JOB_REC_TAIL };
#define JOB_MAX_HOPS 65536

/* A request on its way from the core that holds the connection to the
** core that owns the stream's group, and back with the result.  One heap
** block (URSULA_MALLOC); whoever holds it last frees it with job_free().
** The fixed-size fields below bound what a request may carry; api.c
** rejects anything longer with 400 before it makes a job. */
struct job {
  struct loop_msg msg;
  int op;
  int origin_core;  /* the core holding the connection */
  uint64_t conn_id; /* the connection there; stale ids are dropped */
  int fork_state;   /* a fork PUT: the step it is on (FORK_*, fork.c) */
  /* a job parked on a cold-tier fetch runs again through msg.on_msg once
  ** the chunk is in; then this is URSULA_OK, or why the fetch failed */
  int fetch_rc;
  /* a chunk it fetched was missing, and it ran again after a barrier
  ** (group_fetch_again): once per job */
  int fetch_missed;
  /* request */
  char path[URSULA_MAX_PATH_BYTES + 1];
  size_t path_len;
  char content_type[256];
  char stream_seq[URSULA_MAX_STREAM_SEQ + 1];
  char producer_id[URSULA_MAX_PRODUCER_ID + 1];
  char expires_text[64];
  char fork_source[URSULA_MAX_PATH_BYTES + 1];
  struct cmd cmd;  /* CREATE / APPEND / DELETE; views into this job */
  struct buf body; /* POST/PUT data, JSON already flattened */
  struct buf attrs; /* Stream-Attrs of a PUT, or PUT .../attrs: stored form */
  /* A hop to a stream a fork inherits from (group.c: a read of the
  ** inherited bytes; fork.c: FORK_UNIT): the stream, its incarnation
  ** (the reference held on it names it), and the offset where what the
  ** hop wants of it ends (the fork point of the fork above it) */
  char hop_path[URSULA_MAX_PATH_BYTES + 1];
  size_t hop_len;
  uint64_t hop_inc;
  uint64_t hop_limit;
  int hop_linear; /* a cluster's replica did not have the stream (yet):
                     looked again after a barrier (group_barrier) */
  /* a read: its step (JOB_HOP_*), and for a JSON read whose end is still
  ** to be found on an append boundary below hop_limit, hop_flex; the
  ** parts read on the way down, the highest first, are in data, and
  ** parts holds their lengths (uint64_t each) */
  int read_hop;
  int hop_flex;
  struct buf parts;
  int hops; /* hops to sources so far: at most JOB_MAX_HOPS (a chain of
               forks is never circular, but a damaged state could be) */
  /* a fork PUT: the append unit at the fork offset, once looked up:
  ** whether it was (unit_state), whether one starts there (unit_found),
  ** its length in Sub-Offset units (JSON messages or bytes), the bytes
  ** of the sub-offset prefix (JSON), and the source's incarnation */
  int unit_state;
  int unit_found;
  uint64_t unit_len;
  uint64_t unit_prefix;
  uint64_t unit_inc;
  uint64_t unit_rec; /* JSON: the records before that append */
  uint64_t offset; /* read: start position; JOB_SNAP_*, JOB_RETAIN: the
                      route's offset */
  int offset_now;     /* read: offset=now */
  int offset_given;   /* read: an offset other than -1 or now was given
                         (below the retained offset it is a 410); the
                         JOB_SNAP_GET routes: the route named one */
  /* JOB_SNAP_*, JOB_RETAIN, JOB_BOOTSTRAP (api.c, SNAPSHOTS): the
  ** snapshot's digest (a PUT's: computed from its body) and
  ** Stream-Snapshot-Match (has_match); the answer: the stream's
  ** snapshot (has_snap, its offset, type and, for a GET, bytes in snap)
  ** and retained offset; a bootstrap's parts: the units' lengths
  ** (uint64_t each) in parts, their bytes in data */
  char snap_digest[STREAM_DIGEST_LEN + 1];
  char snap_match[STREAM_DIGEST_LEN + 1];
  int has_match;
  int has_snap;
  uint64_t snap_at;
  char snap_type[256];
  struct buf snap;
  int snap_delete; /* JOB_SNAP_GET for a DELETE: no bytes wanted */
  uint64_t retained;
  int sub;            /* JOB_SUB_*: a HEAD for a sub-resource (api.c) */
  int live;           /* JOB_LIVE_* */
  uint64_t max_bytes;
  uint64_t catchup_max; /* catch-up GET/HEAD: whole answers up to this */
  uint64_t end_limit;   /* read: end at most here (0: the tail) */
  /* read by records (api.c, RECORDS): the start (JOB_REC_*, rec_arg its
  ** n), at most max_records (0: no limit), the envelope view */
  int rec_mode;
  uint64_t rec_arg;
  uint64_t max_records;
  int envelope;
  /* JOB_BUCKETS: the gathering's GROUP_BQ_* mode; a listing's limit,
  ** prefix and after (has_after: given) */
  int bucket_mode;
  size_t list_limit;
  char list_prefix[256], list_after[256];
  int has_after;
  /* result */
  int status;
  const char *reason;
  struct stream_result res; /* releases unused */
  char res_type[256];       /* the stream's content type */
  int json;
  uint64_t start; /* read: first byte returned (HEAD: a GET would return) */
  uint64_t read_end; /* HEAD: where that GET would end */
  /* JSON records: the stream's first retained and next record; the record
  ** data starts with (rec_start_known: found; HEAD: of start), and how
  ** many records of data come before the one a record read asked for;
  ** rec_refused: a 400/410 of a record start, answered with the record
  ** headers */
  uint64_t rec_first, rec_next, rec_start, rec_skip;
  uint64_t rec_end; /* api.c: the record after the data answered */
  int rec_start_known;
  int rec_refused;
  uint64_t tail;  /* Stream-Next-Offset */
  uint64_t stream_tail; /* read: the stream's tail when it was read */
  int stream_closed;    /* read: and whether it was closed */
  int up_to_date;
  int closed;     /* stream closed (and, for reads, tail reached) */
  int registered; /* owner now wakes this core for the stream */
  uint64_t incarnation;
  int has_ttl;
  uint64_t ttl_s;
  char res_expires[64];
  struct buf data; /* read: bytes [start, tail) */
  /* JOB_BACKUP: the group, and the backup image written (its last
  ** entry, size, and the CRC32C its tail holds); JOB_SNAPSHOT: the
  ** group, and the snapshot taken (its entry, term and payload size) */
  int group;
  uint64_t image_index, image_term, image_bytes;
  uint32_t image_crc;
};

URSULA_PRIVATE struct job *job_new(void);
URSULA_PRIVATE void job_free(struct job *j);

/* A wake-up for live readers on one core: the stream at path changed. */
struct notify {
  struct loop_msg msg;
  uint64_t prev_tail; /* data covers [prev_tail, tail) */
  uint64_t tail;
  int closed;
  int deleted;
  struct buf data;
  size_t path_len;
  char path[1]; /* path_len bytes follow, NUL-terminated */
};

struct core;
struct group;

/* A group whose clocks and file system are env's (NULL: env_real()). */
URSULA_PRIVATE struct group *group_new(int id, int owner_core,
                                       struct env *env);
URSULA_PRIVATE int group_id(const struct group *g);
URSULA_PRIVATE void group_free(struct group *g);

/* A group's place in a cluster: this node's id and the voters' (1, 3 or
** 5 node ids, this node's among them), and the transport for its Raft
** messages.  send(arg, g, m, records, len): deliver m to node m->to;
** records: for an APPEND, its m->n entries as WAL records back to back
** (wal_record_get reads them), borrowed for the call.  A message may be
** dropped (Raft sends again). */
typedef void (*group_send_fn)(void *arg, struct group *g,
                              const struct raft_msg *m, const void *records,
                              size_t len);
/* forward(arg, g, to, req, cmd, len): a client's write, the command
** encoded (cmd.c), to the leader `to` (URSULA_OK, or not sent: the link
** is down or full); reply(arg, g, to, req, accepted,
** term, index): the leader's answer to forward `req` of node `to`. */
typedef int (*group_forward_fn)(void *arg, struct group *g, uint64_t to,
                                uint64_t req, const void *cmd, size_t len);
typedef void (*group_reply_fn)(void *arg, struct group *g, uint64_t to,
                               uint64_t req, int accepted, uint64_t term,
                               uint64_t index);
/* send_snap(arg, g, to, s): a chunk of g's snapshot image to node to;
** URSULA_OK, or not sent now (URSULA_EAGAIN: the link is down or full;
** try again later). */
typedef int (*group_snap_fn)(void *arg, struct group *g, uint64_t to,
                             const struct peer_snap *s);
struct group_cluster {
  uint64_t cluster_id, node;
  uint64_t voters[RAFT_MAX_VOTERS];
  unsigned n_voters;
  group_send_fn send;
  group_forward_fn forward; /* NULL: writes on a follower get 503 */
  group_reply_fn reply;
  group_snap_fn send_snap; /* NULL: followers behind the log wait */
  int lost_log; /* 1: this node's logs were lost; an empty one starts in
                   LOST LOG (raft.c) */
  void *arg;
};
/* Make g a voter of a cluster (before group_open_wal(); a cluster's
** groups need a WAL).  URSULA_OK, URSULA_EINVAL (not 1, 3 or 5 voters,
** this node not among them, a duplicate). */
URSULA_PRIVATE URSULA_UNUSED int group_join(struct group *g,
                                            const struct group_cluster *cl);
/* A Raft message for g from node m->from (records as for send, borrowed
** for the call).  On g's owner, like every group call. */
URSULA_PRIVATE URSULA_UNUSED void group_recv(struct core *c, struct group *g,
                                             const struct raft_msg *m,
                                             const void *records, size_t len);
/* A chunk of the snapshot image node `from` leads g with (peer.c's
** SNAP_CHUNK; s->data borrowed for the call).  On g's owner. */
URSULA_PRIVATE URSULA_UNUSED void group_recv_snap(struct core *c,
                                                  struct group *g,
                                                  uint64_t from,
                                                  const struct peer_snap *s);
/* A forwarded write for g from node `from` (cmd[0..len), borrowed), and
** the leader's reply to this node's forward `req`.  On g's owner. */
URSULA_PRIVATE URSULA_UNUSED void group_recv_forward(struct core *c,
                                                     struct group *g,
                                                     uint64_t from,
                                                     uint64_t req,
                                                     const void *cmd,
                                                     size_t len);
URSULA_PRIVATE URSULA_UNUSED void group_recv_reply(struct core *c,
                                                   struct group *g,
                                                   uint64_t req, int accepted,
                                                   uint64_t term,
                                                   uint64_t index);
/* One tick of g's clock: GROUP_TICK_MS of the node's time passed (a
** cluster's groups only; a single voter needs none). */
#define GROUP_TICK_MS 100
URSULA_PRIVATE URSULA_UNUSED void group_tick(struct core *c, struct group *g);
/* A graceful stop (raft.c, LEAVING): g's core is told LEAVE -- it hands
** over the leadership it holds, to the best peer, and will not take it
** back -- each time this is called (a transfer that was abandoned is
** tried again).  Returns GROUP_LEAVE_NONE (this node does not lead g),
** GROUP_LEAVE_LED (it does; a transfer is under way) or GROUP_LEAVE_STUCK
** (it does, and every other member is leaving too: nobody can take it). */
enum { GROUP_LEAVE_NONE = 0, GROUP_LEAVE_LED = 1, GROUP_LEAVE_STUCK = 2 };
URSULA_PRIVATE URSULA_UNUSED int group_leave(struct core *c, struct group *g);
/* The end of a shedding without a stop (server.c, SHEDDING): g's core is
** told STAY -- it campaigns and takes leadership again. */
URSULA_PRIVATE URSULA_UNUSED void group_stay(struct core *c, struct group *g);
/* Once its log is open: g's appends go through core journal j too
** (wal_set_journal); group_sync_lazy() syncs its log's file for a
** checkpoint (0, or the errno). */
URSULA_PRIVATE void group_set_journal(struct group *g, struct journal *j);
URSULA_PRIVATE int group_sync_lazy(struct group *g);
/* wal_lazy_open() of g's log (-1 without one). */
URSULA_PRIVATE int group_lazy_open(struct group *g);
/* Give g a write-ahead log in dir and replay it into the state machine
** (before the cores start); the bytes of every entry the log holds now
** stay in the log when applied, at replay (a single node) or later, once
** known committed (a cluster member): none is copied into memory, so a
** restart costs a read and a check of each record.  At most about
** hot_max bytes of stream data are kept in memory from then on.
** must_exist: the data directory says the log was created (a missing one
** is refused, not made anew).  scratch: wal_replay()'s, kept by the
** caller across groups (or NULL).  URSULA_OK, or an error with a reason
** in err. */
URSULA_PRIVATE int group_open_wal(struct group *g, const char *dir,
                                  int must_exist, uint64_t hot_max,
                                  uint64_t snapshot_bytes,
                                  struct buf *scratch, char *err);
/* Write a snapshot of g's state now (as of its last applied entry) and
** compact its log.  URSULA_OK or an error (logged; the log stays). */
URSULA_PRIVATE URSULA_UNUSED int group_snapshot(struct group *g);
/* Write the file "image" in g's log directory: a snapshot of g's state as
** of its last applied entry, with every log byte it names, for another
** node to install (wal_install_begin).  URSULA_OK or an error. */
URSULA_PRIVATE URSULA_UNUSED int group_write_image(struct group *g);
/* JOB_BACKUP for group j->group, sent from core c to the group's owner:
** there, once this node has applied every entry committed before the
** request (group_barrier: on a follower, the leader's commit index as of
** now), the file "backup" is written (wal_backup_begin: an image, as
** group_write_image) and the job answered with j->image_* (200; all 0
** and no file for a group that has applied nothing), or 409 (no
** --wal-dir), 503 (no leader confirmed the barrier) or 500. */
URSULA_PRIVATE void group_backup(struct core *c, struct job *j);
/* JOB_SNAPSHOT for group j->group, sent from core c to the group's
** owner: there the group snapshots its state as of its last applied
** entry and lets go of the log before it (group_snapshot, as when its log
** grows), and the job is answered 200 with j->image_index, _term and
** _bytes (the snapshot's state payload; all 0 for a group that has
** applied nothing), or 409 (no --wal-dir), 503 (its log takes no writes)
** or 500. */
URSULA_PRIVATE void group_snapshot_now(struct core *c, struct job *j);
/* The commit pipeline, driven by the owner at the end of each loop turn
** for each group with new proposals and no batch in flight:
** group_drive() hands the entries proposed since the last drive to the
** log and applies what is committed; it returns a descriptor to sync
** (the batch is then in flight: the owner goes on while another thread
** syncs it, and hands the outcome to group_synced(), which applies and
** answers the batch or refuses it), or -1 when there is nothing to sync
** (in memory, the entries were committed and applied at once).  One batch
** in flight per group: nothing may be driven while group_in_flight(g). */
URSULA_PRIVATE int group_drive(struct core *c, struct group *g);
URSULA_PRIVATE void group_synced(struct core *c, struct group *g,
                                 int sync_errno);
URSULA_PRIVATE int group_in_flight(const struct group *g);
/* Run a job on the core that owns its group (the owner's thread).  Takes
** ownership of j: it is posted back to its origin core when done. */
URSULA_PRIVATE void group_run_job(struct core *c, struct job *j);
/* Send j to the owner of its stream's group, to run there in
** group_run_job() (from core c, on c's thread). */
URSULA_PRIVATE void group_dispatch(struct core *c, struct job *j);

/* What the parts above (fork.c) build on: routing, proposals, answers.
** All but group_send() run on the owner's thread of the group named. */

/* The group of the stream at path (only its owner may touch it). */
URSULA_PRIVATE struct group *group_of(struct core *c, const char *path,
                                      size_t len);
/* Deliver m, with its on_msg set, to the owner of the group of path
** (from core c, on c's thread). */
URSULA_PRIVATE void group_send(struct core *c, struct loop_msg *m,
                               const char *path, size_t len);
/* g's state machine, to read (changes go through group_propose()). */
URSULA_PRIVATE struct stream_state *group_state(struct group *g);
/* The node's wall clock, Unix ms: what commands are stamped with. */
URSULA_PRIVATE uint64_t group_wall(const struct group *g);

/* A proposal's continuation: r is the result of applying the command
** (or of its refusal), valid only during the call. */
typedef void (*group_done_fn)(struct core *c, struct group *g,
                              const struct stream_result *r, void *arg);
/* Propose *cmd to g's log; once it is committed and applied, call
** done(c, g, result, arg) -- at the end of this loop turn at the
** earliest.  *cmd need not outlive the call.  If the log refuses the
** entry, done is called at once with a 503 (or 413). */
URSULA_PRIVATE void group_propose(struct core *c, struct group *g,
                                  const struct cmd *cmd, group_done_fn done,
                                  void *arg);
/* Point the views of j->cmd at j's own fields and stamp the time. */
URSULA_PRIVATE void group_bind_cmd(struct group *g, struct job *j);
/* Answer j: send it back to its origin core (which answers the client);
** with status and reason; with the result of its command. */
URSULA_PRIVATE void group_reply(struct core *c, struct job *j);
URSULA_PRIVATE void group_fail(struct core *c, struct job *j, int status,
                               const char *reason);
URSULA_PRIVATE void group_copy_result(struct job *j,
                                      const struct stream_result *r);
/* group_propose() where this node leads g's log (or is a single node);
** else the command is forwarded to g's leader, and done is called once
** this node has applied the entry the leader made of it (the same result
** as on any node), or with a refusal: 503, with r->unknown when the
** entry may commit yet (no answer in time, the leader's term ended). */
URSULA_PRIVATE void group_write(struct core *c, struct group *g,
                                const struct cmd *cmd, group_done_fn done,
                                void *arg);
/* The group_done_fn of a change: the result and the stream's metadata
** into j (arg), then group_reply(). */
URSULA_PRIVATE void group_after_change(struct core *c, struct group *g,
                                       const struct stream_result *r,
                                       void *arg);
/* A stream_read() on g returned URSULA_EAGAIN (a chunk in the cold tier
** that is not in the cache): park j until the chunk is in; it then runs
** again through j->msg.on_msg, with j->fetch_rc set.  URSULA_OK, or an
** error (j is not parked; answer it with group_fail_fetch()). */
URSULA_PRIVATE int group_park(struct core *c, struct group *g, struct job *j);
/* Whether j, whose chunk could not be read back with rc, is to run again
** from its start (its read barrier first) rather than be answered: 1 the
** first time a chunk is missing (URSULA_ENOTFOUND), else 0.  The leader
** of a removal's term deletes its objects once the removal is committed,
** so a replica may miss a chunk of a stream that it has not yet seen
** removed; after a barrier it has, and the read answers 404 (group.c,
** READS RACING A REMOVAL). */
URSULA_PRIVATE int group_fetch_again(struct job *j, int rc);
/* Answer j, whose chunk could not be read back with rc: 500 for a missing
** or damaged chunk, 503 otherwise. */
URSULA_PRIVATE void group_fail_fetch(struct core *c, struct job *j, int rc);

/* What runs once a barrier passed (group_barrier). */
typedef void (*group_job_fn)(struct core *c, struct group *g, struct job *j);
/* Run then(c, g, j) once g's state here reflects every change
** acknowledged (by any node) before this call: at once on a single node;
** in a cluster after a read barrier (ReadIndex, thesis 6.4: the leader's
** commit index confirmed by a round of heartbeats, then applied here).
** If no leader confirms it within 2 election timeouts, j is answered 503
** instead.  For reads, and for the looks of a fork PUT (fork.c). */
URSULA_PRIVATE void group_barrier(struct core *c, struct group *g,
                                  struct job *j, group_job_fn then);

/* A release: a fork of the stream at path went away, or was not made
** after all; its group is told to propose FORK_RELEASE(path) (fork.c has
** the protocol).  A message of its own, answered by nobody. */
struct group_release {
  struct loop_msg msg;
  size_t path_len;
  char path[1]; /* path_len bytes follow, NUL-terminated */
};
/* Send a release of src[0..len) to the owner of its group (from core c,
** on c's thread).  If memory runs out, the release is lost: see fork.c. */
URSULA_PRIVATE void group_send_release(struct core *c, const char *src,
                                       size_t len);
/* A core stops wanting wake-ups for path (owner's thread). */
URSULA_PRIVATE void group_unwatch(struct core *c, int from_core,
                                  const char *path, size_t path_len);
/* Give g (with its WAL open) the cold tier and its owner core's chunk
** cache (before the cores start): from then on it moves older data there
** and reads it back (tier_attach() with what the tier works on). */
URSULA_PRIVATE void group_attach_cold(struct group *g, struct cold *cold,
                                      struct cold_cache *cache,
                                      uint64_t flush_age_ms);
/* The chunks g's streams name in the cold tier. */
URSULA_PRIVATE uint64_t group_cold_chunks(struct group *g);
/* Expire streams whose TTL or Expires-At has passed, log reads' TOUCH,
** retry a failed WAL, and move data to the cold tier (tier_tick; owner's
** thread, once a second). */
URSULA_PRIVATE void group_sweep(struct core *c, struct group *g);

/* STATUS (GET /__ursula/cluster; group.c's STATUS section).  One group's
** Raft state, read on the core that owns it (group_status). */
struct group_status {
  int group;
  int role;            /* RAFT_FOLLOWER, _PRECANDIDATE, _CANDIDATE, _LEADER */
  uint64_t term;       /* its current term */
  uint64_t leader;     /* the leader it knows in that term (0: none) */
  uint64_t commit;     /* the highest log index it knows committed */
  uint64_t applied;    /* the last index applied to its streams */
  uint64_t last_index; /* the last index of its log */
  uint64_t streams;    /* streams in its state machine here */
  uint64_t hot_bytes;  /* bytes of its streams held in memory here */
  struct tier_stats tier; /* its cold tier's counts here */
  uint64_t won, lost;     /* leaderships won and lost here since start */
  uint64_t installs;      /* snapshot images installed here since start */
};
/* A peer as this node's cores see it: how many of them have their link
** to it up, and the age of the newest frame any of them received from
** it (heard 0: none since this node started). */
struct group_peer_status {
  int id;
  char address[272]; /* its --peer address, "HOST:PORT" */
  int links_up;      /* of n_cores */
  int heard;
  uint64_t heard_age_ms;
  uint64_t bytes_out, bytes_in, dropped; /* all cores' links, since start */
};
/* A gathering of the status: a message that visits core 0, 1, ..., each
** filling in its own groups (and its peer links), then goes back to the
** core that asked, where done runs (api.c answers from it).  One heap
** block: group_gather_free(). */
/* BUCKETS (group.c's BUCKETS section): what a gathering asks of every
** group's streams and bucket records, and what it found.  An entry is a
** stream of a listing (LIST: name is its id, "s" or "aff/s") or a bucket
** (ALL: name is the bucket's). */
enum {
  GROUP_BQ_ONE = 1, /* one bucket: its streams, bytes and record */
  GROUP_BQ_LIST,    /* one bucket's streams, in id order, after `after` */
  GROUP_BQ_ALL      /* every bucket: streams and bytes of each */
};
struct group_bucket_entry {
  char name[256];
  size_t name_len;
  char content_type[256]; /* LIST */
  uint64_t tail;          /* LIST: its next offset */
  int closed;             /* LIST */
  uint64_t streams, bytes; /* ALL */
};
struct group_bucket_query {
  int mode; /* GROUP_BQ_* */
  char bucket[65];
  size_t bucket_len;
  char prefix[URSULA_MAX_PATH_BYTES + 1], after[URSULA_MAX_PATH_BYTES + 1];
  size_t prefix_len, after_len;
  int has_after;
  size_t limit; /* LIST: at most this many answered (1..1000) */
  /* found */
  uint64_t streams, bytes; /* ONE, LIST: the bucket's visible streams */
  int has_record;          /* ONE: the bucket has a record */
  uint64_t created_ms;     /* its created_ms */
  struct group_bucket_entry *entries; /* LIST: the first ids (at most
                                         limit + 1 once gathered); ALL:
                                         every bucket; by name */
  size_t n_entries, cap_entries;
  int failed; /* out of memory on a core: the answer is a 503 */
};

struct group_gather {
  struct loop_msg msg;
  struct group_bucket_query *bq; /* a bucket gathering (NULL: status) */
  loop_msg_fn done;
  int origin_core;
  uint64_t conn_id; /* the asking connection (api.c) */
  int at;           /* the core it visits now */
  int node;         /* this node's id (1 for a single node) */
  int cluster;      /* 1: --peer members */
  int n_cores, n_groups;
  struct group_status *groups; /* [n_groups], by group id */
  int n_peers;
  struct group_peer_status peers[URSULA_MAX_PEERS]; /* not this node */
  /* with want_metrics (GET /metrics): every core's counters added up,
  ** and per core: its loop's figures, its open connections, its output
  ** queued and not written */
  int want_metrics;
  int journals_broken, journals_stuck; /* cores' journals (--wal-dir) */
  struct metrics sum;
  struct loop_stats loops[URSULA_MAX_CORES];
  int conns[URSULA_MAX_CORES];
  int live[URSULA_MAX_CORES];
  int64_t out_pending[URSULA_MAX_CORES];
};
/* A gathering for core c's server (NULL: out of memory). */
URSULA_PRIVATE struct group_gather *group_gather_new(struct core *c);
URSULA_PRIVATE void group_gather_free(struct group_gather *gg);
/* Send gg around the cores from c; done(loop, &gg->msg) runs on c once
** every core has filled in its part.  (A loop that closes first frees it
** through msg.on_drop.) */
URSULA_PRIVATE void group_gather_start(struct core *c, struct group_gather *gg,
                                       loop_msg_fn done);
/* BUCKETS: add what group g (on g's core) has of bq's bucket(s) to bq;
** group_bucket_trim() keeps a LIST's first limit + 1 ids, in order. */
URSULA_PRIVATE void group_bucket_visit(struct group *g,
                                       struct group_bucket_query *bq);
URSULA_PRIVATE void group_bucket_trim(struct group_bucket_query *bq);
/* g's status now (on g's core). */
URSULA_PRIVATE void group_status(const struct group *g,
                                 struct group_status *out);
/* Once a second on each core: one INFO line if the number of its groups
** this node leads changed (or leaderships came and went), with why. */
URSULA_PRIVATE void group_leads_report(struct core *c);

/* ------------------------------------------------------------------ fork.c
** Making a fork: a fork PUT's job travels from the owner of the source's
** group (a reference on the source; for a sub-offset into an append the
** source inherited, a look down its chain of sources) to the owner of the
** fork's group (the CREATE, which names the source and the fork point and
** copies no byte).  The protocol, its messages and what a crash between
** its steps leaves are written out at the top of fork.c. */

/* The steps of a fork PUT (struct job's fork_state). */
enum {
  FORK_ACQUIRE = 1, /* at the source's owner: take a reference */
  FORK_UNIT,        /* at an owner of the source's sources: find the
                       append at a fork offset the source inherited
                       (read only, repeatable) */
  FORK_CREATE       /* at the fork's owner: create the fork */
};

/* Start the fork PUT j (op JOB_CREATE, CMD_F_FORK in j->cmd.flags): send
** it to the owner of its source's group (from core c, on c's thread).
** Takes j; it comes back to its origin core answered, as any job. */
URSULA_PRIVATE void fork_start(struct core *c, struct job *j);

/* ------------------------------------------------------------------ conn.c
** The HTTP/1.1 server connection engine: accept, the per-core slot table,
** input buffering and body framing, the output queue, timeouts, linger,
** drain.  What a request means is the protocol layer's, reached through
** the hooks of struct conn_ops.  Everything here runs on the connection's
** core thread. */

enum {
  CONN_HEAD = 0, /* reading a request head */
  CONN_BODY,     /* reading its body */
  CONN_BUSY,     /* the protocol layer has the request; input waits */
  CONN_LIVE,     /* a live reader; input dropped, the timer is the hooks' */
  CONN_LINGER    /* answered, our side shut down, waiting for the close */
};

struct conn;

/* What the connections of every core share, owned by the server (struct
** ursula_server) and kept by conn.c: the open connections, against
** --max-connections, and the bytes of request bodies being received,
** against --max-body-inflight-bytes, each over all cores.  Changed with
** atomic operations where the compiler has them (GCC, Clang), else under
** mu. */
struct conn_bounds {
  uint64_t conns;      /* open client connections */
  uint64_t body_bytes; /* charged by the request bodies being read */
  uint64_t fd_log_ms;  /* when running out of descriptors was last logged, + 1 ms (under spare_mu) */
  pthread_mutex_t mu;  /* (only without atomic operations) */
  /* The one descriptor the server keeps in reserve to accept a client at
  ** the open-file limit (conn.c, "accept"), or -1 while it is given up or
  ** lost; spare_out is 1 from just before it is given up until it is
  ** back.  Both under spare_mu (spare_out is also read without it). */
  int spare_fd;
  int spare_out;
  pthread_mutex_t spare_mu;
};

URSULA_PRIVATE void conn_bounds_init(struct conn_bounds *b);
URSULA_PRIVATE void conn_bounds_free(struct conn_bounds *b);

/* The raw socket calls of a connection (on cn->fd), each as its POSIX
** namesake (-1 and errno on failure); a transport such as TLS (cn->tls)
** replaces them. */
struct conn_io {
  ssize_t (*recv)(struct conn *cn, void *p, size_t n);
  ssize_t (*sendv)(struct conn *cn, struct iovec *iov, int n); /* no SIGPIPE */
  int (*shutdown)(struct conn *cn);                            /* SHUT_WR */
  int (*close)(struct conn *cn); /* the socket and the transport's state */
};

/* The protocol layer's hooks.  Its connection struct begins with a
** struct conn and is `size` bytes; conn.c allocates it zeroed at accept
** and frees it at close. */
struct conn_ops {
  size_t size;
  /* A request head is complete (keep_alive, head and the body framing
  ** are set).  Return 0 to read the body, or answer at once with
  ** conn_fatal() (or see the connection end in conn_continue()) and
  ** return -1. */
  int (*on_head)(struct conn *cn, const struct http_request *req);
  /* (req->host is the validated authority and req->target origin-form:
  ** see http_authority()) */
  /* The body is in cn->raw.  Answer (then conn_done()), or conn_busy()
  ** and answer later, or conn_fatal(). */
  void (*on_request)(struct conn *cn);
  /* The request being read is dropped (a bad body); an error follows. */
  void (*on_abort)(struct conn *cn);
  /* Write a complete error response for status into conn_out(cn). */
  void (*on_error)(struct conn *cn, int status, const char *reason);
  /* The timer of a CONN_LIVE connection fired. */
  void (*on_live_timer)(struct conn *cn);
  /* The server stops: end this CONN_LIVE connection's response. */
  void (*on_drain)(struct conn *cn);
  /* The connection ends (linger or close; may come twice): let go of
  ** what the protocol layer holds for it. */
  void (*on_end)(struct conn *cn);
  /* All that was queued was sent, and conn_want_sent() asked to hear of
  ** it (once): a response written in parts may queue the next one. */
  void (*on_sent)(struct conn *cn);
};

/* A connection.  The protocol layer may read core, id, state, closing and
** head, clear keep_alive, and take raw (the request body); the rest is
** conn.c's. */
struct conn {
  struct core *core;
  int fd;
  uint64_t id; /* generation << 32 | slot */
  int state;   /* CONN_* */
  int keep_alive;
  int http10;     /* the request is HTTP/1.0: no chunked responses */
  int head;       /* the request is a HEAD: responses carry no body */
  int closing;    /* close once out is written */
  int want_write; /* output waits: LOOP_WRITE wanted */
  int want_sent;  /* call on_sent once out is all written */
  int reading;    /* LOOP_READ wanted */
  int peer_eof;   /* the client shut down its side (read 0 while busy) */
  int admin;      /* accepted on the admin listener (--admin-listen) */
  int live_counted; /* counted in its table's n_live */
  unsigned events;  /* LOOP_READ|LOOP_WRITE as registered */
  const struct conn_io *io;
  /* HTTPS (--tls-cert): the engine, NULL on a plain connection; kick
  ** runs the reader again while the engine holds decrypted bytes */
  struct tlss_conn *tls;
  struct loop_timer kick;
  struct buf in;
  struct buf out;
  size_t out_off;
  /* a large response body, sent from its own buffer (no copy): it goes
  ** on the wire after out[0..body_at) and before the rest of out */
  struct buf body;
  size_t body_off, body_at;
  struct loop_timer timer;
  /* output back-pressure (conn_backlogged): what this connection counts
  ** in its core's out_pending, the loop time of its last write that
  ** moved bytes, and whether its next pipelined request waits for its
  ** client to read the answers before it */
  size_t out_counted;
  uint64_t write_ms;
  int paused;
  struct conn *next_dead; /* in the table's dead list, once closed */
  /* the body being read */
  uint64_t body_left;
  int chunked;
  struct http_chunked chunk;
  struct buf raw;   /* request body as received */
  uint64_t charged; /* of it, bytes charged to the server's bounds */
};

/* A core's connections (in struct core). */
struct conn_table {
  const struct conn_ops *ops;
  const struct conn_io *io;
  struct conn **slots;
  uint32_t n_slots, cap_slots;
  uint32_t *free_slots;
  uint32_t n_free;
  uint32_t next_gen;
  int n_conns;   /* this core's (not the admin listener's) */
  int n_admin;   /* this core's from the admin listener (conn.c) */
  int n_live;    /* of all, those in CONN_LIVE (long-poll, SSE) */
  int max_conns; /* of all cores together: more are answered 503 */
  struct loop_timer accept_timer; /* resumes accepting at the fd limit */
  struct loop_timer admin_timer;  /* ... and the admin listener (core 0) */
  /* closed connections, freed at the next turn (conn_close) */
  struct conn *dead;
  struct loop_timer reap_timer;
};

URSULA_PRIVATE void conn_table_init(struct conn_table *t, int max_conns,
                                    const struct conn_ops *ops);
/* Close and free every connection (the loop is stopped). */
URSULA_PRIVATE void conn_table_free(struct conn_table *t);
URSULA_PRIVATE int conn_table_count(const struct conn_table *t);
/* The loop handler of the listening socket; arg is the core. */
URSULA_PRIVATE void conn_on_accept(struct loop *l, int fd, unsigned events,
                                   void *arg);
/* The loop handler of the admin listener (core 0's); arg is the core. */
URSULA_PRIVATE void conn_on_admin_accept(struct loop *l, int fd,
                                         unsigned events, void *arg);
/* The open connection with this id, or NULL (closed since). */
URSULA_PRIVATE struct conn *conn_by_id(struct conn_table *t, uint64_t id);
/* Begin a graceful stop: no more keep-alive, idle connections closed,
** live ones ended through on_drain; requests in flight finish. */
URSULA_PRIVATE void conn_drain(struct conn_table *t);
/* The response being built: append its bytes here. */
URSULA_PRIVATE struct buf *conn_out(struct conn *cn);
/* Append *data as response body bytes; a large one is taken (*data is
** emptied) and sent from its own buffer rather than copied. */
URSULA_PRIVATE void conn_out_body(struct conn *cn, struct buf *data);
/* A response body of unknown length, ended by closing (keep_alive was
** cleared before the head, which so says "Connection: close"): in the
** head append, for an HTTP/1.1 request, "Transfer-Encoding: chunked";
** nothing for HTTP/1.0, whose client
** knows no transfer codings (RFC 9112 section 6.1), so its body is just
** the bytes up to the close.  Then conn_chunk() appends p as one chunk
** (nothing if it is empty), and conn_end_chunks() ends the body (the last
** chunk) and closes once it is written. */
URSULA_PRIVATE void conn_begin_chunks(struct conn *cn);
URSULA_PRIVATE void conn_chunk(struct conn *cn, const struct buf *p);
URSULA_PRIVATE void conn_end_chunks(struct conn *cn);
/* Write what is pending.  Returns -1 if the connection ended (closed: cn
** is freed; or lingering), 0 otherwise. */
URSULA_PRIVATE int conn_flush(struct conn *cn);
/* The response is complete: write it, and go on with the next request
** (keep-alive) or end the connection. */
URSULA_PRIVATE void conn_done(struct conn *cn);
/* Answer status (through on_error) and end the connection. */
URSULA_PRIVATE void conn_fatal(struct conn *cn, int status, const char *reason);
/* Call on_sent once everything queued so far has been written. */
URSULA_PRIVATE void conn_want_sent(struct conn *cn);
/* Bytes of output queued on cn and not yet written to its socket. */
URSULA_PRIVATE size_t conn_pending(const struct conn *cn);
/* Whether cn's client is so far behind that nothing more should be
** produced for it until it reads (see conn.c, OUTPUT BACK-PRESSURE). */
URSULA_PRIVATE int conn_backlogged(const struct conn *cn);
/* Whether cn's queued output has not moved for --idle-timeout-ms. */
URSULA_PRIVATE int conn_stalled(const struct conn *cn);
/* End the connection at once, unwritten output dropped: for a response
** whose head already promised a body that can no longer come (the client
** sees it cut short, never a wrong one). */
URSULA_PRIVATE void conn_abort(struct conn *cn);
/* In on_head, once the protocol accepts the request: "100 Continue" if
** the client asked for it and a body comes.  -1 if the connection ended. */
URSULA_PRIVATE int conn_continue(struct conn *cn,
                                 const struct http_request *req);
/* The protocol layer takes the request away (a job at another core):
** CONN_BUSY, input buffered but not parsed, no timer, until conn_done()
** or conn_live(). */
URSULA_PRIVATE void conn_busy(struct conn *cn);
/* Hold the connection as a live reader: CONN_LIVE. */
URSULA_PRIVATE void conn_live(struct conn *cn);
/* Arm the connection's timer ms from now (CONN_LIVE: on_live_timer fires),
** or disarm it. */
URSULA_PRIVATE void conn_arm(struct conn *cn, int ms);
URSULA_PRIVATE void conn_disarm(struct conn *cn);

/* ------------------------------------------------------------------- sse.c
** Server-Sent Events framing: pure functions that append one event to a
** buffer (WHATWG HTML, "Server-sent events"). */

/* Append the event "event: TYPE", then one "data:" line per line of the
** payload p[0..len) (lines end at LF, CR or CRLF; an empty payload is one
** empty data line), then the empty line that ends the event.  A client
** decodes the data as the payload with every line end turned into LF
** (but see sse.c on a line that begins with a space). */
URSULA_PRIVATE void sse_event(struct buf *out, const char *type, const char *p,
                              size_t len);
/* How much of the text p[0..len) can go into one event without ending
** inside a UTF-8 character: len, or the start of a last character whose
** bytes are not all there (at most 3 bytes fewer).  Bytes that are not
** UTF-8 are left as they are. */
URSULA_PRIVATE size_t sse_utf8_cut(const char *p, size_t len);
/* Append the comment ": TEXT" and an empty line: keeps an idle response
** alive and dispatches no event.  text must hold no line end. */
URSULA_PRIVATE void sse_comment(struct buf *out, const char *text);
/* Append a Durable Streams control event: its data is the JSON object
** {"streamNextOffset": offset of next_offset, then "streamClosed":true if
** closed or else "streamCursor": cursor, then "upToDate":true if
** up_to_date or closed}; with records (a JSON stream), after
** streamNextOffset, "streamFirstRecord": first_record and
** "streamNextRecord": next_record, as numbers. */
URSULA_PRIVATE void sse_control(struct buf *out, uint64_t next_offset,
                                uint64_t cursor, int up_to_date, int closed,
                                int records, uint64_t first_record,
                                uint64_t next_record);

/* ------------------------------------------------------------------ live.c
** The live readers (long-poll, SSE) of one core, by stream path, and the
** fan-out of the owners' wake-ups (struct notify) to them.  Everything
** here runs on the core's own thread. */

struct live_watch;

/* A reader of one stream, embedded in the protocol layer's connection.
** Zero-initialised is watching nothing. */
struct live_waiter {
  struct live_watch *watch;        /* the path it reads, or NULL */
  struct live_waiter *next, *prev; /* in watch->waiters, while waiting */
  int waiting;                     /* in watch->waiters */
  uint64_t offset;                 /* where this reader is */
};

/* One stream path with readers on this core. */
struct live_watch {
  struct live_watch *hnext;
  struct live_waiter *waiters;
  int pending; /* live reads in flight for this path (the protocol layer
                  counts them): the watch lives while they do */
  int owner;   /* core owning the stream's group */
  uint64_t hash;
  size_t path_len;
  char path[1]; /* path_len bytes follow, NUL-terminated */
};

/* Why live_on_notify() hands a waiter to on_wake (live.c has the rules):
** LIVE_DATA, the message's bytes start where it is (it still waits);
** LIVE_BEHIND, it must read again from x->offset (it no longer waits);
** LIVE_DELETED, the stream is gone (it left its watch). */
enum { LIVE_DATA = 1, LIVE_BEHIND, LIVE_DELETED };
typedef void (*live_wake_fn)(struct live_waiter *x, int why,
                             const struct notify *n);

/* A core's table of watches (in struct core). */
struct live_table {
  struct live_watch **slots; /* open hash by path; cap a power of 2 */
  size_t cap, n;
  live_wake_fn on_wake; /* the protocol layer's */
};

URSULA_PRIVATE void live_table_init(struct live_table *t, live_wake_fn on_wake);
/* Free the table and every watch in it (the waiters are the caller's). */
URSULA_PRIVATE void live_table_free(struct live_table *t);
/* The watch of path on core c, made if there is none; NULL if out of
** memory.  A new watch has no waiters and nothing pending. */
URSULA_PRIVATE struct live_watch *live_get(struct core *c, const char *path,
                                           size_t len);
/* Free w if it has no waiters and nothing pending. */
URSULA_PRIVATE void live_gc(struct live_table *t, struct live_watch *w);
/* Put x (x->watch set) on its watch's wait list / take it off (no-op if
** it is not on it).  Neither frees the watch. */
URSULA_PRIVATE void live_wait(struct live_waiter *x);
URSULA_PRIVATE void live_unwait(struct live_waiter *x);
/* x stops watching: off the wait list, its watch freed if unused, and
** x->watch NULL.  No-op if x watches nothing. */
URSULA_PRIVATE void live_leave(struct live_table *t, struct live_waiter *x);
/* The handler of a struct notify (group.c posts them): hand every waiter
** of the path to on_wake as the rules in live.c say, and free n; when this
** core has no readers of the path, tell its owner to stop sending. */
URSULA_PRIVATE void live_on_notify(struct loop *l, struct loop_msg *m);

/* ---------------------------------------------------------------- server.c
** Cores and the process-wide server object. */
struct core {
  int id;
  struct loop *loop;
  struct metrics metrics; /* its counts (metrics.c), its thread only */
  struct ursula_server *srv;
  pthread_t thread;
  struct conn_table conns; /* its connections (conn.c) */
  struct live_table live;  /* live readers on this core, by stream path */
  /* the auth table this core checks tokens against (auth.c), one
  ** reference held; NULL: no --auth-file.  Its thread only. */
  struct auth_table *auth;
  /* same-core messages, run at the end of the turn */
  struct loop_msg *local_head, *local_tail;
  /* groups with proposals to commit at the end of this turn */
  struct group **dirty;
  int n_dirty;
  struct group **batch;          /* scratch copy of dirty */
  int n_flights;                 /* syncs under way for its groups */
  /* with --wal-dir: its journal (server.c, THE CORE'S JOURNAL), the
  ** groups whose batch waits for its next write, and those whose batch is
  ** in the write being synced (group ids) */
  struct journal *journal;
  int *jr_pending, n_jr_pending;
  int *jr_flight, n_jr_flight;
  int jr_checkpoint; /* a checkpoint's syncs are out */
  struct cold_cache *cold_cache; /* chunks read back for its groups */
  /* bytes of output queued on its connections and not yet written:
  ** written by its own thread, read by every core (conn_backlogged) */
  int64_t out_pending;
  struct loop_timer sweep_timer;
  struct loop_timer tick_timer; /* Raft ticks of its groups (a cluster) */
  uint64_t peer_in; /* Raft messages peers sent it (not yet fed to Raft) */
  int leads;        /* of its groups, those this node led at the last
                       group_leads_report() */
  int listening;
  int admin_listening; /* core 0, with an admin listener */
  int leaving;       /* a graceful stop hands its groups' leadership over */
  int leave_led;     /* ... how many of its groups it led at its last look */
  int leave_stuck;   /* ... of which nobody can take (all are leaving) */
  int leave_counted; /* ... it has looked once (server.c, GRACEFUL STOP) */
  int shedding;      /* its groups were told LEAVE for a shedding */
  int draining;
  int drained;
  int rc;
};

struct server_sync;
struct server_syncer;

struct ursula_server {
  struct ursula_config cfg;
  struct env *env;              /* clocks and files of this node */
  struct server_syncer *syncer; /* threads that run WAL syncs, or NULL */
  struct cold *cold;            /* the cold tier's threads, or NULL */
  int n_cores;
  int n_groups;
  struct core *cores;
  struct group **groups;
  int listen_fd;
  int port;
  int admin_fd; /* the admin listener (--admin-listen), or -1 */
  int admin_port;
  int dir_lock_fd; /* holds the lock on --wal-dir, or -1 */
  volatile sig_atomic_t leave_requested; /* a cluster node's first stop:
                                            hand leadership over first */
  volatile sig_atomic_t stop_requested;
  volatile sig_atomic_t shed_requested; /* SHEDDING (server.c): set and
                                           cleared by the admin path */
  volatile sig_atomic_t stop_hurried; /* a second stop cut the handover
                                         short (server.c, SECOND STOP) */
  volatile sig_atomic_t stop_busy; /* a stop is waking the loops: srv is
                                      not freed until it is done */
  pthread_mutex_t mu; /* guards n_drained, the leave_ and hurry_ fields */
  int n_drained;
  uint64_t leave_start_ms;  /* mono ms the handover began (0: not yet) */
  uint64_t leave_logged;    /* seconds of it logged, + 1 (0: none yet) */
  int leave_counted;        /* cores that have looked once */
  int leave_done;           /* the handover ended: stop_requested is set */
  int hurry_counted;        /* cores that counted their groups led at a
                               second stop, and the sum of their counts */
  int hurry_led;
  int running;
  struct conn_bounds bounds; /* shared by the cores' connections */
  struct peer *peer;         /* the links to the other nodes, or NULL */
  struct auth_table *auth;   /* the table in force (one reference), or
                                NULL: no --auth-file; under auth_mu once
                                the cores run */
  pthread_mutex_t auth_mu;   /* one reload at a time (server.c, RELOAD) */
  /* --tls-cert: the credentials new connections take (one reference),
  ** swapped by a reload under tls_mu; NULL without TLS */
  struct tlss_creds *tls;
  pthread_mutex_t tls_mu;
  volatile sig_atomic_t reload_requested; /* without threads: a SIGHUP
                                             for core 0's turn end */
};

/* ursula_server_start() with the env given (NULL: env_real()), which
** must outlive the server: what a simulator starts its nodes with. */
URSULA_PRIVATE int server_start(const struct ursula_config *cfg,
                                struct env *env, struct ursula_server **out,
                                char *err);
/* The group a stream path belongs to, and the core that owns a group. */
URSULA_PRIVATE int server_group_of(const struct ursula_server *s,
                                   const char *path, size_t len);
URSULA_PRIVATE struct group *server_group(const struct ursula_server *s,
                                          int gid);
URSULA_PRIVATE int server_owner_of(const struct ursula_server *s, int gid);
/* Deliver m to core `to` (from core `from`, on from's thread).  Same-core
** messages run at the end of the current turn, others go through the
** target loop's mailbox. */
URSULA_PRIVATE void server_send(struct core *from, int to, struct loop_msg *m);
/* ursula_server_wait() in two steps, so that the caller can stop passing
** signals on to srv before it is freed (main.c): server_wait_cores()
** returns once every core has stopped (URSULA_OK, or the first core's
** error); srv may still be stopped again.  server_release() then frees
** srv, once no ursula_server_stop() is under way. */
URSULA_PRIVATE int server_wait_cores(struct ursula_server *srv);
URSULA_PRIVATE void server_release(struct ursula_server *srv);
/* The checks server_start() makes of cfg before it touches anything (the
** cluster settings together, the body bounds, the cold tier, the HTTPS
** flags), in the same order, then the files it reads whole loaded and let
** go (the tokens, the cluster secret, the HTTPS pair): no other I/O.
** Empty S3 credentials are filled in from the environment, as at a start.
** URSULA_OK, or the first failure's code with the reason in err
** (URSULA_ERRMSG_LEN bytes).  main.c runs it before a start and for
** --check-config, so that a bad setting or file exits 2 like a bad flag. */
URSULA_PRIVATE int server_check_config(struct ursula_config *cfg, char *err);
/* The files of a --wal-dir (server.c, --wal-dir), written through fs,
** synced, through a temporary name: dir/layout for n_groups groups, and
** dir/cold-store with the node's store id (32 lowercase hex digits) and
** the line "claimed" if claimed.  URSULA_OK or URSULA_EIO with err set.
** A start writes them; so does `ursula restore` (backup.c). */
URSULA_PRIVATE int server_write_layout(struct os_fs *fs, const char *dir,
                                       int n_groups, char *err);
URSULA_PRIVATE int server_write_cold_store(struct os_fs *fs, const char *dir,
                                           const char *id, int claimed,
                                           char *err);
#if !URSULA_ENABLE_THREADS
/* Ask core 0 to run ursula_server_reload() at the end of its turn (a flag
** and a wake-up: async-signal-safe, for main.c's SIGHUP handler). */
URSULA_PRIVATE void server_request_reload(struct ursula_server *srv);
#endif

/* ---------------------------------------------------------------- backup.c
** The subcommands `ursula backup` and `ursula restore` (backup.c has the
** design, the MANIFEST's format and the exit codes): argv[0] is the
** subcommand's name; the process's exit code is returned. */
URSULA_PRIVATE int backup_main(int argc, char **argv);
URSULA_PRIVATE int backup_restore_main(int argc, char **argv);

/* ----------------------------------------------------------------- batch.c
** append-batch and $transaction as MULTI commands: the forms at the top of
** batch.c. */

/* The frames p[0..len) of an append-batch into ops, as MULTI ops: each an
** APPEND like *tmpl (its path, content type, flags; a producer's Seq + i
** for frame i) with the frame as its data.  *n_ops gets the count.
** URSULA_OK; URSULA_EINVAL with why (a 400's reason); URSULA_ENOMEM. */
URSULA_PRIVATE int batch_frames(const char *p, size_t len,
                                const struct cmd *tmpl, struct buf *ops,
                                uint64_t *n_ops, char *why, size_t why_cap);
/* The $transaction body p[0..len) on the streams under group ("/{b}/{aff}")
** into ops, as batch_frames does. */
URSULA_PRIVATE int batch_txn(const char *p, size_t len, struct str group,
                             struct buf *ops, uint64_t *n_ops, char *why,
                             size_t why_cap);
/* The error_code of a failed op's result (batch.c's table). */
URSULA_PRIVATE const char *batch_error_code(const struct stream_result *r);
/* The JSON array of results of ops (struct stream_op, back to back) into
** out; *all_ok 1 if every op succeeded.  URSULA_OK or URSULA_ENOMEM. */
URSULA_PRIVATE int batch_render(struct buf *out, const struct buf *ops,
                                int *all_ok);
/* The JSON body of a transaction that failed: its failing op's. */
URSULA_PRIVATE int batch_render_failure(struct buf *out,
                                        const struct buf *ops);

/* ------------------------------------------------------------------- api.c
** The Durable Streams rules: a request head to a job, a job's result to a
** response.  The rest of the server reaches it through hooks. */

/* Set up core c's connection and live tables with the protocol's hooks
** (before its loop runs), and free them. */
URSULA_PRIVATE void api_core_init(struct core *c, int max_conns);
URSULA_PRIVATE void api_core_free(struct core *c);
/* The handler of a job coming back to the core of its connection (group.c
** sets it on the message). */
URSULA_PRIVATE void api_on_job_done(struct loop *l, struct loop_msg *m);
/* Core c (on its thread) takes auth table t (its reference) in place of
** the one it holds, which it lets go; its live readers whose token t does
** not let read their stream are ended (api.c, REVOCATION). */
URSULA_PRIVATE void api_auth_take(struct core *c, struct auth_table *t);

#endif /* URSULA_INTERNAL_H */
