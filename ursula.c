/*
** Copyright 2026 the ursula authors
**
** Licensed under the Apache License, Version 2.0 (the "License");
** you may not use this file except in compliance with the License.
** You may obtain a copy of the License at
**
**     http://www.apache.org/licenses/LICENSE-2.0
**
** Unless required by applicable law or agreed to in writing, software
** distributed under the License is distributed on an "AS IS" BASIS,
** WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
** See the License for the specific language governing permissions and
** limitations under the License.
**
** SPDX-License-Identifier: Apache-2.0
*/
/*
** GENERATED FILE -- do not edit. Edit src/ and run `make amalgamate`.
**
** ursula.c is the amalgamation of the parts in src/ (headers first, then
** the parts in reading order).  Define URSULA_ENABLE_LINES to make
** debuggers and compiler messages point at the files in src/.
*/
#define URSULA_AMALGAMATION 1
#ifndef URSULA_PRIVATE
#define URSULA_PRIVATE static
#endif
/**** Begin src/prefix.h ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/prefix.h"
#endif
/*
** prefix.h -- feature-test macros.  Must come before any system header, so
** it is the first part of the amalgamation.
*/
#ifndef URSULA_PREFIX_H
#define URSULA_PREFIX_H
#if !defined(_WIN32)
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif
#if defined(__APPLE__) && !defined(_DARWIN_C_SOURCE)
#define _DARWIN_C_SOURCE 1 /* F_FULLFSYNC, SO_NOSIGPIPE */
#endif
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE 1 /* epoll, accept4-free paths, MSG_NOSIGNAL */
#endif
#endif
#endif
/**** End src/prefix.h ****/
#include "ursula.h"
/**** Begin src/config.h ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/config.h"
#endif
/*
** config.h -- every compile-time option, defaulted once.
**
** URSULA_ENABLE_*  features: 0 = off, 1 = on.  Platform flags are
**                  tri-state: left undefined, they are detected here.
** URSULA_MAX_*     hard caps (safety bounds), not runtime settings.
** URSULA_DEFAULT_* defaults that a config file or flag may override.
**
** Options are tested with #if, never #ifdef, so a misspelt option is an
** error under -Wundef rather than a silently different binary.
*/
#ifndef URSULA_CONFIG_H
#define URSULA_CONFIG_H

#ifndef URSULA_ENABLE_EPOLL
#if defined(__linux__)
#define URSULA_ENABLE_EPOLL 1 /* epoll backend; 0 = portable poll() */
#else
#define URSULA_ENABLE_EPOLL 0
#endif
#endif

#ifndef URSULA_ENABLE_KQUEUE
#define URSULA_ENABLE_KQUEUE 0 /* reserved for a BSD/macOS backend */
#endif
#if URSULA_ENABLE_KQUEUE
#error "URSULA_ENABLE_KQUEUE is reserved and not implemented yet"
#endif

#ifndef URSULA_ENABLE_THREADS
#define URSULA_ENABLE_THREADS 1 /* one loop per core; 0 = all on main thread */
#endif

#ifndef URSULA_ENABLE_MAIN
#define URSULA_ENABLE_MAIN 1 /* compile main(); embedders set 0 */
#endif

#ifndef URSULA_ENABLE_LOG
#define URSULA_ENABLE_LOG 1 /* log lines on stderr */
#endif

#ifndef URSULA_ENABLE_ASSERT
#define URSULA_ENABLE_ASSERT 0 /* invariant checks; 1 in test builds */
#endif

#ifndef URSULA_ENABLE_TLS
#define URSULA_ENABLE_TLS 0 /* BearSSL; needs -lbearssl */
#endif

#ifndef URSULA_MAX_CORES
#define URSULA_MAX_CORES 64 /* event-loop threads */
#endif
#ifndef URSULA_MAX_GROUPS
#define URSULA_MAX_GROUPS 4096 /* raft groups per node */
#endif
#ifndef URSULA_MAX_HEADERS
#define URSULA_MAX_HEADERS 64 /* header lines per request; more is 431 */
#endif
#ifndef URSULA_MAX_HEADER_BYTES
#define URSULA_MAX_HEADER_BYTES 16384 /* request line + headers; more is 431 */
#endif
#ifndef URSULA_MAX_PATH_BYTES
#define URSULA_MAX_PATH_BYTES 1024 /* stream path length */
#endif
#ifndef URSULA_MAX_JSON_DEPTH
#define URSULA_MAX_JSON_DEPTH 128 /* nesting of JSON arrays and objects */
#endif
#ifndef URSULA_MAX_PRODUCER_ID
#define URSULA_MAX_PRODUCER_ID 256 /* bytes of a Producer-Id */
#endif
#ifndef URSULA_SYNC_THREADS
#define URSULA_SYNC_THREADS 16 /* threads that overlap the WAL syncs */
#endif
#ifndef URSULA_COLD_THREADS
#define URSULA_COLD_THREADS 4 /* threads that talk to the cold tier */
#endif
#ifndef URSULA_MAX_STREAM_SEQ
#define URSULA_MAX_STREAM_SEQ 256 /* bytes of a Stream-Seq */
#endif

#ifndef URSULA_DEFAULT_HOST
#define URSULA_DEFAULT_HOST "127.0.0.1"
#endif
#ifndef URSULA_DEFAULT_PORT
#define URSULA_DEFAULT_PORT 4437
#endif
#ifndef URSULA_DEFAULT_GROUPS
#define URSULA_DEFAULT_GROUPS 64 /* raft-group-count */
#endif
#ifndef URSULA_DEFAULT_LONG_POLL_MS
#define URSULA_DEFAULT_LONG_POLL_MS 30000
#endif
#ifndef URSULA_DEFAULT_MAX_BODY_BYTES
#define URSULA_DEFAULT_MAX_BODY_BYTES 33554432 /* 32 MiB */
#endif
#ifndef URSULA_DEFAULT_MAX_BODY_INFLIGHT_BYTES
#define URSULA_DEFAULT_MAX_BODY_INFLIGHT_BYTES 268435456 /* 256 MiB */
#endif
#ifndef URSULA_DEFAULT_MAX_CONNECTIONS
#define URSULA_DEFAULT_MAX_CONNECTIONS 16384
#endif
#ifndef URSULA_DEFAULT_IDLE_TIMEOUT_MS
#define URSULA_DEFAULT_IDLE_TIMEOUT_MS 60000
#endif
#ifndef URSULA_DEFAULT_HEADER_TIMEOUT_MS
#define URSULA_DEFAULT_HEADER_TIMEOUT_MS 10000
#endif
#ifndef URSULA_DEFAULT_BODY_TIMEOUT_MS
#define URSULA_DEFAULT_BODY_TIMEOUT_MS 30000 /* between two reads of a body */
#endif
#ifndef URSULA_DEFAULT_SSE_KEEPALIVE_MS
#define URSULA_DEFAULT_SSE_KEEPALIVE_MS 15000
#endif
#ifndef URSULA_DEFAULT_SSE_CLOSE_MS
#define URSULA_DEFAULT_SSE_CLOSE_MS 60000 /* protocol: "about every 60 s" */
#endif
#ifndef URSULA_DEFAULT_MAX_READ_BYTES
#define URSULA_DEFAULT_MAX_READ_BYTES 1048576 /* 1 MiB catch-up chunk */
#endif
#ifndef URSULA_DEFAULT_MAX_CATCHUP_BYTES
#define URSULA_DEFAULT_MAX_CATCHUP_BYTES 1073741824 /* 1 GiB per response */
#endif
#ifndef URSULA_DEFAULT_MAX_OUTPUT_BYTES
#define URSULA_DEFAULT_MAX_OUTPUT_BYTES 268435456 /* 256 MiB, server-wide */
#endif
#ifndef URSULA_DEFAULT_SNAPSHOT_BYTES
#define URSULA_DEFAULT_SNAPSHOT_BYTES 67108864 /* per group; with a WAL */
#endif
#ifndef URSULA_DEFAULT_COLD_FLUSH_AGE_MS
#define URSULA_DEFAULT_COLD_FLUSH_AGE_MS 600000 /* 10 min; with a cold tier */
#endif
#ifndef URSULA_DEFAULT_COLD_CACHE_BYTES
#define URSULA_DEFAULT_COLD_CACHE_BYTES \
  67108864 /* chunks read back, all cores */
#endif
#ifndef URSULA_DEFAULT_HOT_MAX_BYTES
#define URSULA_DEFAULT_HOT_MAX_BYTES 67108864 /* per group; with a WAL */
#endif

/* Allocator override: define all three or none. */
#if defined(URSULA_MALLOC) || defined(URSULA_REALLOC) || defined(URSULA_FREE)
#if !defined(URSULA_MALLOC) || !defined(URSULA_REALLOC) || !defined(URSULA_FREE)
#error "define URSULA_MALLOC, URSULA_REALLOC and URSULA_FREE together, or none"
#endif
#else
#define URSULA_MALLOC(n) malloc(n)
#define URSULA_REALLOC(p, n) realloc(p, n)
#define URSULA_FREE(p) free(p)
#endif

#endif /* URSULA_CONFIG_H */
/**** End src/config.h ****/
/**** Begin src/internal.h ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/internal.h"
#endif
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

/* -------------------------------------------------------------------- os.c
** Clocks and the system-call table the WAL goes through. */
URSULA_PRIVATE uint64_t os_now_ms(void);  /* monotonic milliseconds */
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
/* Make l's thread finish its current wait and run a turn (so it notices
** flags set by other threads).  Any thread; async-signal-safe. */
URSULA_PRIVATE void loop_wake(struct loop *l);

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
  CMD_TOUCH = 8         /* a read slid the stream's TTL window */
};
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
  CMD_F_UNIT = 1 << 9         /* FORK_ACQUIRE at an offset in the
                                 source's inherited range: the proposer
                                 found the append unit that starts there
                                 (n_msgs: its length) */
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
  RAFT_IN_LEAVE = 14
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
#define PEER_HELLO_BODY 52         /* bytes of a HELLO's body */
#define PEER_MAX_NODES 5
enum { PEER_HELLO = 1, PEER_BATCH = 2, PEER_SNAP_CHUNK = 3 };
enum { PEER_ITEM_RAFT = 1, PEER_ITEM_FWD = 2, PEER_ITEM_FWD_REPLY = 3 };
/* PEER_ITEM_FWD_REPLY outcomes */
enum { PEER_FWD_ACCEPTED = 0, PEER_FWD_REFUSED = 1 };

struct peer_hello {
  uint64_t cluster_id, from, to;
  uint32_t core, cores, groups;
  uint64_t boot_id;
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
  /* the cold tier: bytes [base, cold_end) are in chunks[], in order and
  ** back to back; they are the first cold_units units */
  struct stream_chunk *chunks;
  size_t n_chunks, cap_chunks;
  uint64_t cold_end;
  size_t cold_units;
  struct stream_local local; /* this node's, not replicated */
};

struct stream_state {
  struct stream **slots; /* open hash table of chains */
  size_t cap, n;
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
  /* the two buffers stay last (group_refuse); both are the caller's */
  /* cold-tier objects nothing refers to any more: NUL-terminated names */
  struct buf garbage;
  /* FORK_RELEASE commands to send: NUL-terminated source paths */
  struct buf releases;
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
/* Whether s has expired at now_ms by Expires-At, or by its TTL counted
** from last_access_ms (the log's s->last_access_ms in apply; the owner
** adds the reads it has not logged yet). */
URSULA_PRIVATE int stream_expired(const struct stream *s,
                                  uint64_t last_access_ms, uint64_t now_ms);
/* Normalise a media type for comparison: lowercase, parameters and
** surrounding blanks dropped.  Writes at most cap-1 bytes plus NUL. */
URSULA_PRIVATE void stream_norm_type(struct str ct, char *out, size_t cap);
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

/* ------------------------------------------------------------------ conf.c
** Flags and config files (the public ursula_config_* live there too). */
enum { CONF_RUN = 1, CONF_HELP = 2, CONF_VERSION = 3 };
/* Parse the command line into cfg.  `--config FILE` is loaded first
** wherever it appears; then the other flags, in order, override it.
** Returns CONF_RUN, CONF_HELP, CONF_VERSION, or URSULA_EINVAL with a
** one-line reason in err (URSULA_ERRMSG_LEN bytes). */
URSULA_PRIVATE int conf_parse_args(struct ursula_config *cfg, int argc,
                                   char **argv, char *err);
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
  JOB_STATUS      /* GET, HEAD /__ursula/cluster (api.c; never a group's) */
};
enum { JOB_LIVE_NONE = 0, JOB_LIVE_POLL = 1, JOB_LIVE_SSE = 2 };
/* Where a read of a fork's inherited bytes is (struct job's read_hop;
** group.c has the steps): at the owner of the stream read (planned
** there), at an owner of a stream it inherits from, or back at the first
** to finish. */
enum { JOB_HOP_PLAN = 0, JOB_HOP_SOURCE, JOB_HOP_BACK };
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
  uint64_t offset; /* read: start position */
  int offset_now;     /* read: offset=now */
  int live;           /* JOB_LIVE_* */
  uint64_t max_bytes;
  uint64_t catchup_max; /* catch-up GET/HEAD: whole answers up to this */
  uint64_t end_limit;   /* read: end at most here (0: the tail) */
  /* result */
  int status;
  const char *reason;
  struct stream_result res; /* releases unused */
  char res_type[256];       /* the stream's content type */
  int json;
  uint64_t start; /* read: first byte returned (HEAD: a GET would return) */
  uint64_t read_end; /* HEAD: where that GET would end */
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
};
/* A gathering of the status: a message that visits core 0, 1, ..., each
** filling in its own groups (and its peer links), then goes back to the
** core that asked, where done runs (api.c answers from it).  One heap
** block: group_gather_free(). */
struct group_gather {
  struct loop_msg msg;
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
};
/* A gathering for core c's server (NULL: out of memory). */
URSULA_PRIVATE struct group_gather *group_gather_new(struct core *c);
URSULA_PRIVATE void group_gather_free(struct group_gather *gg);
/* Send gg around the cores from c; done(loop, &gg->msg) runs on c once
** every core has filled in its part.  (A loop that closes first frees it
** through msg.on_drop.) */
URSULA_PRIVATE void group_gather_start(struct core *c, struct group_gather *gg,
                                       loop_msg_fn done);
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

/* The raw socket calls of a connection, each as its POSIX namesake (-1
** and errno on failure); a transport such as TLS replaces them. */
struct conn_io {
  ssize_t (*recv)(int fd, void *p, size_t n);
  ssize_t (*sendv)(int fd, struct iovec *iov, int n); /* no SIGPIPE */
  int (*shutdown)(int fd);                            /* SHUT_WR */
  int (*close)(int fd);
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
  int want_write; /* LOOP_WRITE registered */
  int want_sent;  /* call on_sent once out is all written */
  int reading;    /* LOOP_READ registered */
  int peer_eof;   /* the client shut down its side (read 0 while busy) */
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
  int n_conns;   /* this core's */
  int max_conns; /* of all cores together: more are answered 503 */
  struct loop_timer accept_timer; /* resumes accepting at the fd limit */
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
** up_to_date or closed}. */
URSULA_PRIVATE void sse_control(struct buf *out, uint64_t next_offset,
                                uint64_t cursor, int up_to_date, int closed);

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
  struct ursula_server *srv;
  pthread_t thread;
  struct conn_table conns; /* its connections (conn.c) */
  struct live_table live;  /* live readers on this core, by stream path */
  /* same-core messages, run at the end of the turn */
  struct loop_msg *local_head, *local_tail;
  /* groups with proposals to commit at the end of this turn */
  struct group **dirty;
  int n_dirty;
  struct group **batch;          /* scratch copy of dirty */
  int n_flights;                 /* syncs under way for its groups */
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
  int leaving;       /* a graceful stop hands its groups' leadership over */
  int leave_led;     /* ... how many of its groups it led at its last look */
  int leave_stuck;   /* ... of which nobody can take (all are leaving) */
  int leave_counted; /* ... it has looked once (server.c, GRACEFUL STOP) */
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
  int dir_lock_fd; /* holds the lock on --wal-dir, or -1 */
  volatile sig_atomic_t leave_requested; /* a cluster node's first stop:
                                            hand leadership over first */
  volatile sig_atomic_t stop_requested;
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

#endif /* URSULA_INTERNAL_H */
/**** End src/internal.h ****/
/**** Begin src/util.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/util.c"
#endif
/*
** util.c -- byte views, growable buffers, hashing, CRC32C and base64.
**
** Everything here is pure and thread-agnostic.  struct buf owns its bytes;
** a struct str never does.
*/


/* ------------------------------------------------------------ errors */

URSULA_API const char *ursula_strerror(int rc) {
  switch (rc) {
#define UTIL_ERRCASE(name, value, msg) \
  case value:                          \
    return msg;
    URSULA_ERRORS(UTIL_ERRCASE)
#undef UTIL_ERRCASE
    default:
      return "unknown error";
  }
}

#if URSULA_ENABLE_ASSERT
URSULA_PRIVATE void util_assert_fail(const char *expr, const char *file,
                                     int line) {
  fprintf(stderr, "ursula: assertion failed: %s (%s:%d)\n", expr, file, line);
  abort();
}
#endif

/* ------------------------------------------------------------ views */

URSULA_PRIVATE struct str util_str(const char *cstr) {
  struct str s;
  s.ptr = cstr;
  s.len = cstr ? strlen(cstr) : 0;
  return s;
}

URSULA_PRIVATE int util_str_eq(struct str a, const char *cstr) {
  size_t n = strlen(cstr);
  return a.len == n && memcmp(a.ptr, cstr, n) == 0;
}

static int util_lower(int c) {
  return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

URSULA_PRIVATE int util_str_ieq(struct str a, const char *cstr) {
  size_t i, n = strlen(cstr);
  if (a.len != n) return 0;
  for (i = 0; i < n; i++) {
    if (util_lower((unsigned char)a.ptr[i]) !=
        util_lower((unsigned char)cstr[i]))
      return 0;
  }
  return 1;
}

URSULA_PRIVATE struct str util_str_trim(struct str s) {
  while (s.len > 0 && (s.ptr[0] == ' ' || s.ptr[0] == '\t')) s.ptr++, s.len--;
  while (s.len > 0 && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t'))
    s.len--;
  return s;
}

URSULA_PRIVATE int util_parse_u64(struct str s, uint64_t max, uint64_t *out) {
  uint64_t v = 0;
  size_t i;
  if (s.len == 0) return -1;
  for (i = 0; i < s.len; i++) { /* any number of leading zeros */
    unsigned d = (unsigned char)s.ptr[i] - '0';
    if (d > 9) return -1;
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  if (v > max) return -1;
  *out = v;
  return 0;
}

/* 64-bit FNV-1a.  Stable across builds and platforms: a stream's group is
** util_hash64(path) % group_count, so this must never change. */
URSULA_PRIVATE uint64_t util_hash64(const void *p, size_t len) {
  const unsigned char *b = (const unsigned char *)p;
  uint64_t h = 14695981039346656037ULL;
  size_t i;
  for (i = 0; i < len; i++) {
    h ^= b[i];
    h *= 1099511628211ULL;
  }
  return h;
}

/* Little-endian integers in on-disk and on-wire formats. */
URSULA_PRIVATE void util_put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

URSULA_PRIVATE void util_put64(unsigned char *p, uint64_t v) {
  util_put32(p, (uint32_t)v);
  util_put32(p + 4, (uint32_t)(v >> 32));
}

URSULA_PRIVATE uint32_t util_get32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

URSULA_PRIVATE uint64_t util_get64(const unsigned char *p) {
  return (uint64_t)util_get32(p) | (uint64_t)util_get32(p + 4) << 32;
}

/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78), eight bytes per
** step ("slicing by 8"): table k maps a byte to the CRC of that byte
** followed by k zero bytes, so the CRC of 8 bytes is the XOR of 8 lookups,
** one per byte, each in the table of the bytes that follow it.  Words are
** read byte by byte (little-endian, any alignment), so the result is the
** same on every machine.  Recovery checks every WAL record with it (about
** 5 times the speed of one byte per step).
** util_crc32c(0, "123456789", 9) == 0xE3069283; RFC 3720 B.4 gives more. */
static uint32_t util_crc_table[8][256];
static pthread_once_t util_crc_once = PTHREAD_ONCE_INIT;

static void util_crc_init(void) {
  uint32_t i, j, k, c;
  for (i = 0; i < 256; i++) {
    c = i;
    for (j = 0; j < 8; j++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    util_crc_table[0][i] = c;
  }
  for (k = 1; k < 8; k++)
    for (i = 0; i < 256; i++) {
      c = util_crc_table[k - 1][i];
      util_crc_table[k][i] = (c >> 8) ^ util_crc_table[0][c & 0xff];
    }
}

URSULA_PRIVATE uint32_t util_crc32c(uint32_t crc, const void *p, size_t len) {
  const unsigned char *b = (const unsigned char *)p;
  const uint32_t(*t)[256] = (const uint32_t(*)[256])util_crc_table;
  pthread_once(&util_crc_once, util_crc_init);
  crc = ~crc;
  for (; len >= 8; b += 8, len -= 8) {
    uint32_t lo = crc ^ util_get32(b), hi = util_get32(b + 4);
    crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^
          t[4][lo >> 24] ^ t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^
          t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
  }
  while (len--) crc = t[0][(crc ^ *b++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

/* ------------------------------------------------------------ buffers */

URSULA_PRIVATE int buf_reserve(struct buf *b, size_t extra) {
  size_t need, cap;
  char *p;
  if (extra > SIZE_MAX - b->len - 1) return URSULA_ENOMEM;
  need = b->len + extra + 1; /* +1 keeps room for a NUL terminator */
  if (need <= b->cap) return URSULA_OK;
  cap = b->cap ? b->cap : 64;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  p = (char *)URSULA_REALLOC(b->ptr, cap);
  if (p == NULL) return URSULA_ENOMEM;
  b->ptr = p;
  b->cap = cap;
  return URSULA_OK;
}

URSULA_PRIVATE int buf_append(struct buf *b, const void *p, size_t len) {
  if (buf_reserve(b, len) != URSULA_OK) return URSULA_ENOMEM;
  if (len) memcpy(b->ptr + b->len, p, len);
  b->len += len;
  b->ptr[b->len] = '\0';
  return URSULA_OK;
}

URSULA_PRIVATE int buf_append_str(struct buf *b, const char *cstr) {
  return buf_append(b, cstr, strlen(cstr));
}

URSULA_PRIVATE int buf_printf(struct buf *b, const char *fmt, ...) {
  va_list ap;
  int n;
  char small[256];
  va_start(ap, fmt);
  n = vsnprintf(small, sizeof(small), fmt, ap);
  va_end(ap);
  if (n < 0) return URSULA_EINVAL;
  if ((size_t)n < sizeof(small)) return buf_append(b, small, (size_t)n);
  if (buf_reserve(b, (size_t)n) != URSULA_OK) return URSULA_ENOMEM;
  va_start(ap, fmt);
  vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return URSULA_OK;
}

URSULA_PRIVATE void buf_consume(struct buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
  } else {
    memmove(b->ptr, b->ptr + n, b->len - n);
    b->len -= n;
  }
  if (b->ptr) b->ptr[b->len] = '\0';
}

URSULA_PRIVATE void buf_free(struct buf *b) {
  URSULA_FREE(b->ptr);
  b->ptr = NULL;
  b->len = b->cap = 0;
}

/* ------------------------------------------------------------ base64 */

static const char util_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

URSULA_PRIVATE int util_base64_append(struct buf *out, const void *p,
                                      size_t len) {
  const unsigned char *s = (const unsigned char *)p;
  size_t i, n = (len + 2) / 3 * 4;
  char *d;
  if (buf_reserve(out, n) != URSULA_OK) return URSULA_ENOMEM;
  d = out->ptr + out->len;
  for (i = 0; i + 2 < len; i += 3) {
    *d++ = util_b64[s[i] >> 2];
    *d++ = util_b64[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
    *d++ = util_b64[((s[i + 1] & 15) << 2) | (s[i + 2] >> 6)];
    *d++ = util_b64[s[i + 2] & 63];
  }
  if (i < len) {
    *d++ = util_b64[s[i] >> 2];
    if (i + 1 < len) {
      *d++ = util_b64[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
      *d++ = util_b64[(s[i + 1] & 15) << 2];
    } else {
      *d++ = util_b64[(s[i] & 3) << 4];
      *d++ = '=';
    }
    *d++ = '=';
  }
  out->len += n;
  out->ptr[out->len] = '\0';
  return URSULA_OK;
}
/**** End src/util.c ****/
/**** Begin src/os.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/os.c"
#endif
/*
** os.c -- portability shims: clocks, CPU count, descriptor flags; the
** file-system call table; the node environment.
**
** The system calls of durable storage (open, pwrite, fsync, fstat,
** mkdir, readdir, ...) are reached through one table, os_fs(), so that
** tests can replace any of them and inject faults: short writes, EIO,
** ENOSPC, failed syncs.  The table is process-wide; tests replace entries
** while no server runs (and may then switch their faults on and off).
**
** ENVIRONMENT.  struct env (internal.h) bundles what a node reads from
** the world: a monotonic clock, the wall clock, random bits and the
** file-system table.  env_real() is the process's own; a simulator makes
** one per node, with clocks it advances itself and a file system it
** controls, so several nodes can run in one thread deterministically.
** Code that takes an env reads time only through it.
*/


URSULA_PRIVATE uint64_t os_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

URSULA_PRIVATE uint64_t os_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

URSULA_PRIVATE void os_sleep_ms(uint64_t ms) {
  struct timespec ts;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

URSULA_PRIVATE int os_cpu_count(void) {
  long n = -1;
#if defined(_SC_NPROCESSORS_ONLN)
  n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
  if (n < 1) n = 1;
  if (n > URSULA_MAX_CORES) n = URSULA_MAX_CORES;
  return (int)n;
}

URSULA_PRIVATE int os_set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL, 0);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return URSULA_ESYS;
  return URSULA_OK;
}

URSULA_PRIVATE int os_set_cloexec(int fd) {
  int fl = fcntl(fd, F_GETFD, 0);
  if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0) return URSULA_ESYS;
  return URSULA_OK;
}

URSULA_PRIVATE long os_raise_fd_limit(long want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
  if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)want > rl.rlim_cur) {
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = (rl.rlim_max == RLIM_INFINITY || (rlim_t)want < rl.rlim_max)
                      ? (rlim_t)want
                      : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = old;
  }
  return rl.rlim_cur == RLIM_INFINITY ? LONG_MAX : (long)rl.rlim_cur;
}

/* ------------------------------------------------------------ files */

static int os_real_open(const char *path, int flags, int mode) {
  int fd;
  do fd = open(path, flags | O_CLOEXEC, (mode_t)mode);
  while (fd < 0 && errno == EINTR);
  return fd;
}

static ssize_t os_real_pwrite(int fd, const void *p, size_t n, off_t off) {
  ssize_t w;
  do w = pwrite(fd, p, n, off);
  while (w < 0 && errno == EINTR);
  return w;
}

static ssize_t os_real_pread(int fd, void *p, size_t n, off_t off) {
  ssize_t r;
  do r = pread(fd, p, n, off);
  while (r < 0 && errno == EINTR);
  return r;
}

/* Make a file's written data durable.  fdatasync() where POSIX has it;
** macOS's fsync() does not reach the platter, F_FULLFSYNC does. */
static int os_real_sync(int fd) {
#if defined(__APPLE__) && defined(F_FULLFSYNC)
  if (fcntl(fd, F_FULLFSYNC) == 0) return 0;
  return fsync(fd);
#elif defined(_POSIX_SYNCHRONIZED_IO) && _POSIX_SYNCHRONIZED_IO > 0
  return fdatasync(fd);
#else
  return fsync(fd);
#endif
}

static int os_real_ftruncate(int fd, off_t len) {
  return ftruncate(fd, len);
}
static int os_real_close(int fd) {
  return close(fd);
}
static int os_real_unlink(const char *path) {
  return unlink(path);
}
static int os_real_rename(const char *from, const char *to) {
  return rename(from, to);
}

static int os_real_size(int fd, uint64_t *out) {
  struct stat st;
  if (fstat(fd, &st) != 0) return -1;
  *out = st.st_size > 0 ? (uint64_t)st.st_size : 0;
  return 0;
}

static int os_real_mkdir(const char *path, int mode) {
  return mkdir(path, (mode_t)mode);
}

static int os_real_rmdir(const char *path) {
  return rmdir(path);
}

static int os_real_list(const char *dir, int (*fn)(void *arg, const char *name),
                        void *arg) {
  DIR *d = opendir(dir);
  struct dirent *de;
  int rc = 0, e;
  if (d == NULL) return -1;
  for (;;) {
    errno = 0;
    if ((de = readdir(d)) == NULL) break;
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if ((rc = fn(arg, de->d_name)) != 0) break;
  }
  e = errno; /* readdir's, when it failed */
  closedir(d);
  if (de == NULL && e != 0) {
    errno = e;
    return -1;
  }
  return rc;
}

static struct os_fs os_fs_table;

/* Through the table's own open, sync and close, so that a test's faults
** on them reach directory syncs too. */
static int os_real_sync_dir(const char *dir) {
  int fd = os_fs_table.open(dir, O_RDONLY, 0), rc;
  if (fd < 0) return -1;
  rc = os_fs_table.sync(fd);
  os_fs_table.close(fd);
  return rc;
}

static struct os_fs os_fs_table = {
    os_real_open,     os_real_pwrite, os_real_pread,  os_real_sync,
    os_real_ftruncate, os_real_close, os_real_unlink, os_real_rename,
    os_real_size,     os_real_mkdir,  os_real_rmdir,  os_real_list,
    os_real_sync_dir};

URSULA_PRIVATE struct os_fs *os_fs(void) {
  return &os_fs_table;
}

URSULA_PRIVATE int os_sync_dir(const char *dir) {
  return os_fs_table.sync_dir(dir);
}

URSULA_PRIVATE int os_mkdir(const char *path) {
  if (os_fs_table.mkdir(path, 0755) == 0 || errno == EEXIST) return 0;
  return -1;
}

/* ------------------------------------------------------------ the env */

static uint64_t os_env_mono_ms(struct env *e) {
  (void)e;
  return os_now_ms();
}

static uint64_t os_env_wall_ms(struct env *e) {
  (void)e;
  return os_wall_ms();
}

/* splitmix64 (Steele, Lea, Flood 2014): the state advances by a constant
** under the mutex, the output is mixed outside it. */
static pthread_mutex_t os_rand_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t os_rand_state;
static int os_rand_seeded;

static uint64_t os_env_random(struct env *e) {
  uint64_t z;
  (void)e;
  pthread_mutex_lock(&os_rand_mu);
  if (!os_rand_seeded) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    os_rand_state = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    os_rand_state ^= os_now_ms() << 32 ^ (uint64_t)getpid() << 16;
    os_rand_seeded = 1;
  }
  z = (os_rand_state += 0x9e3779b97f4a7c15u);
  pthread_mutex_unlock(&os_rand_mu);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static struct env os_env_real = {os_env_mono_ms, os_env_wall_ms, os_env_random,
                                 &os_fs_table, NULL};

URSULA_PRIVATE struct env *env_real(void) {
  return &os_env_real;
}
/**** End src/os.c ****/
/**** Begin src/log.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/log.c"
#endif
/*
** log.c -- one-line log records on stderr.
**
** Format: "2026-11-24T11:04:51.123Z ursula[I] message".  Each record is
** formatted into one buffer and written with one write(2), so lines from
** different cores never interleave.  With URSULA_ENABLE_LOG=0 the LOG_*
** macros compile to nothing and only the level and clock settings remain.
**
** The timestamp is the wall clock of an env (os.c): env_real()'s by
** default, a simulator's after log_set_clock(), so that the lines of a
** simulated run carry simulated time.  Like the level, the clock is
** process-wide: set it while no other thread logs.
*/


static volatile int log_level = LOG_INFO;
static struct env *log_clock; /* NULL: the real wall clock */

URSULA_PRIVATE void log_set_level(int level) {
  log_level = level;
}

URSULA_PRIVATE void log_set_clock(struct env *e) {
  log_clock = e;
}

#if URSULA_ENABLE_LOG
URSULA_PRIVATE void log_write(int level, const char *fmt, ...) {
  static const char tag[] = "EWID";
  char line[1024];
  size_t n;
  int m;
  va_list ap;
  uint64_t ms;
  time_t secs;
  struct tm tm;
  ssize_t w;
  if (level > log_level) return;
  ms = log_clock != NULL ? log_clock->wall_ms(log_clock) : os_wall_ms();
  secs = (time_t)(ms / 1000);
  gmtime_r(&secs, &tm);
  n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
  m = snprintf(line + n, sizeof(line) - n, ".%03uZ ursula[%c] ",
               (unsigned)(ms % 1000), tag[level & 3]);
  if (m > 0) n += (size_t)m;
  va_start(ap, fmt);
  m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
  va_end(ap);
  if (m > 0) n += (size_t)m;
  if (n > sizeof(line) - 2) n = sizeof(line) - 2;
  line[n++] = '\n';
  w = write(2, line, n);
  (void)w;
}
#endif /* URSULA_ENABLE_LOG */
/**** End src/log.c ****/
/**** Begin src/loop.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/loop.c"
#endif
/*
** loop.c -- the per-core event loop: file descriptors, timers, and a
** mailbox that other threads post messages to.
**
** The split follows Redis's ae.c, in one file: a portable core, and one
** backend chosen here and nowhere else, epoll (URSULA_ENABLE_EPOLL, level
** triggered) or POSIX poll().  The core never calls epoll or poll itself;
** it goes through the static loop_backend_* functions:
**
**   loop_backend_open(l)            create the backend state
**   loop_backend_close(l)           release it
**   loop_backend_add(l, fd, ev)     start watching fd (l->fds[fd] exists)
**   loop_backend_mod(l, fd, ev)     change what fd is watched for
**   loop_backend_del(l, fd)         stop watching fd
**   loop_backend_wait(l, ms)        wait at most ms; fill l->fired[] and
**                                   return how many, 0 on EINTR, or
**                                   URSULA_ESYS
**
** TIME.  A loop reads the clock only through the env it was opened with
** (struct env, os.c; NULL = env_real()): l->env->mono_ms(l->env).  Timer
** deadlines are on that clock.  With a simulated env the clock moves only
** when the simulator moves it; the backend's wait still blocks in real
** time, so a simulator drives the loop with loop_run_once(l, 0, ...),
** which never blocks, and advances its clock between turns.
**
** One turn, loop_run_once():
**   1. wait in the backend until an fd is ready, the earliest timer is due,
**      LOOP_MAX_WAIT_MS passed or the caller's max_wait_ms passed,
**      whichever comes first (max_wait_ms 0: only look, never block);
**   2. cache the clock: loop_now_ms() is the env's mono_ms read here;
**   3. dispatch the fd events that the wait returned;
**   4. fire the timers that are due;
**   5. run the mailbox messages posted so far (one batch);
**   6. call on_turn_end.
** loop_run() is turns of loop_run_once() with no cap of its own, and
** checks the stop flag before each turn; loop_run_once() ignores it.
**
** Invariants.
**   - fd registration: l->fds[fd].fn != NULL iff fd is registered (every
**     fd index at or past l->cap_fds is not).  Each entry has a generation
**     that changes on every loop_add() and loop_del() of its fd.
**   - Dispatch: the wait's events are copied to l->fired[] together with
**     their fd's generation at that moment.  An event is dispatched only
**     if its fd is still registered with that generation, and only with
**     the events still watched (LOOP_ERROR always passes).  So a callback
**     may add, change or delete any fd, including fds with an event
**     pending in the same batch, and a fd number closed and reused within
**     one turn never receives the old number's event.
**   - poll backend: l->pfds[0..n_pfds) holds one pollfd per registered fd
**     and l->fds[fd].slot is its index; a removal moves the last pollfd
**     into the hole, so it is O(1).
**   - Timers: l->heap[1..n_heap] is a binary min-heap on deadline_ms
**     (heap[0] unused).  A timer is armed iff t->heap_index != 0, and then
**     l->heap[t->heap_index] == t.
**   - Mailbox: a FIFO list under l->mu plus a non-blocking self-pipe.
**     Before a wait that may block (step 1), the loop looks at the list
**     under l->mu: if it holds messages the wait only looks (0 ms), else
**     it sets l->sleeping, and clears it under l->mu once the wait
**     returns.  loop_post() writes one byte to the pipe only when it
**     finds l->sleeping set (and clears it: one byte wakes the wait).
**     A loop that is not sleeping takes the whole list at step 5 of the
**     turn it is in, or sees it non-empty before its next wait; so a
**     message never waits in the list through a blocking wait, and a
**     loop busy with turns is posted to without a system call on either
**     side.  The loop drains the pipe when it is readable (step 3, the
**     pipe is a registered fd).
**   - Stop and wake: a flag store and a write to the pipe, nothing else,
**     so both are async-signal-safe.
*/


#define LOOP_MAX_WAIT_MS 1000 /* longest single wait, with or without timers */
#define LOOP_MIN_FDS 64       /* first size of the fd table */
#define LOOP_EPOLL_BATCH 256  /* events taken per epoll_wait */

/* The stop flag is a volatile sig_atomic_t, which a signal handler may
** set; GCC and Clang also get an atomic access, so that another thread's
** store is ordered too (and ThreadSanitizer agrees). */
#if defined(__GNUC__)
#define LOOP_STOP_GET(l) __atomic_load_n(&(l)->stop, __ATOMIC_ACQUIRE)
#define LOOP_STOP_SET(l, v) __atomic_store_n(&(l)->stop, (v), __ATOMIC_RELEASE)
#else
#define LOOP_STOP_GET(l) ((l)->stop)
#define LOOP_STOP_SET(l, v) ((void)((l)->stop = (v)))
#endif

/* One entry of the fd-indexed table. */
struct loop_fd {
  loop_io_fn fn; /* NULL = not registered */
  void *arg;
  unsigned events; /* LOOP_READ | LOOP_WRITE */
  uint32_t gen;    /* bumped on every add and del */
#if !URSULA_ENABLE_EPOLL
  size_t slot; /* index in l->pfds; owned by the poll backend */
#endif
};

/* An event returned by a wait, waiting for dispatch. */
struct loop_fired {
  int fd;
  unsigned events; /* LOOP_* */
  uint32_t gen;    /* l->fds[fd].gen when the wait returned */
};

struct loop {
  int id;
  void *user;
  struct env *env;            /* clocks: never NULL */
  uint64_t now_ms;            /* env's mono_ms at the start of the turn */
  volatile sig_atomic_t stop; /* set by loop_stop(), any thread */
  struct loop_fd *fds;        /* indexed by fd */
  size_t cap_fds;
  struct loop_fired *fired; /* filled by loop_backend_wait() */
  size_t cap_fired;
  struct loop_timer **heap; /* 1-based min-heap */
  size_t n_heap, cap_heap;
  pthread_mutex_t mu; /* guards mb_head, mb_tail, sleeping */
  int mu_ready;       /* mu was initialised */
  struct loop_msg *mb_head, *mb_tail;
  int sleeping; /* in a wait that may block, the mailbox empty: a post
                   must wake it (see Mailbox at the top) */
  int wake_r, wake_w; /* self-pipe: read end is a registered fd */
#if URSULA_ENABLE_EPOLL
  int epfd;
  struct epoll_event ep_events[LOOP_EPOLL_BATCH];
#else
  struct pollfd *pfds;
  size_t n_pfds, cap_pfds;
#endif
};

/* Make l->fired hold at least n events.  URSULA_OK or URSULA_ENOMEM. */
static int loop_fired_reserve(struct loop *l, size_t n) {
  struct loop_fired *p;
  size_t cap = l->cap_fired ? l->cap_fired : 16;
  if (n <= l->cap_fired) return URSULA_OK;
  while (cap < n) {
    if (cap > SIZE_MAX / 2 / sizeof(*p)) return URSULA_ENOMEM;
    cap *= 2;
  }
  p = (struct loop_fired *)URSULA_REALLOC(l->fired, cap * sizeof(*p));
  if (p == NULL) return URSULA_ENOMEM;
  l->fired = p;
  l->cap_fired = cap;
  return URSULA_OK;
}

/* ================================================================ epoll */
#if URSULA_ENABLE_EPOLL

static uint32_t loop_backend_mask(unsigned events) {
  uint32_t m = 0;
  if (events & LOOP_READ) m |= EPOLLIN;
  if (events & LOOP_WRITE) m |= EPOLLOUT;
  return m;
}

static int loop_backend_open(struct loop *l) {
  l->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (l->epfd < 0) return URSULA_ESYS;
  return loop_fired_reserve(l, LOOP_EPOLL_BATCH);
}

static void loop_backend_close(struct loop *l) {
  if (l->epfd >= 0) close(l->epfd);
  l->epfd = -1;
}

static int loop_backend_add(struct loop *l, int fd, unsigned events) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.events = loop_backend_mask(events);
  ev.data.fd = fd;
  return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? URSULA_OK
                                                         : URSULA_ESYS;
}

static int loop_backend_mod(struct loop *l, int fd, unsigned events) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.events = loop_backend_mask(events);
  ev.data.fd = fd;
  return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) == 0 ? URSULA_OK
                                                         : URSULA_ESYS;
}

static void loop_backend_del(struct loop *l, int fd) {
  struct epoll_event ev; /* ignored, but kernels before 2.6.9 want it */
  memset(&ev, 0, sizeof(ev));
  (void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, &ev);
}

static int loop_backend_wait(struct loop *l, int timeout_ms) {
  int n, i;
  n = epoll_wait(l->epfd, l->ep_events, LOOP_EPOLL_BATCH, timeout_ms);
  if (n < 0) return errno == EINTR ? 0 : URSULA_ESYS;
  for (i = 0; i < n; i++) {
    uint32_t e = l->ep_events[i].events;
    unsigned ev = 0;
    if (e & EPOLLIN) ev |= LOOP_READ;
    if (e & EPOLLOUT) ev |= LOOP_WRITE;
    if (e & EPOLLERR) ev |= LOOP_ERROR;
    if (e & EPOLLHUP) ev |= LOOP_ERROR | LOOP_READ;
    l->fired[i].fd = l->ep_events[i].data.fd;
    l->fired[i].events = ev;
  }
  return n;
}

/* ================================================================= poll */
#else

static short loop_backend_mask(unsigned events) {
  short m = 0;
  if (events & LOOP_READ) m |= POLLIN;
  if (events & LOOP_WRITE) m |= POLLOUT;
  return m;
}

static int loop_backend_open(struct loop *l) {
  l->pfds = NULL;
  l->n_pfds = l->cap_pfds = 0;
  return URSULA_OK;
}

static void loop_backend_close(struct loop *l) {
  URSULA_FREE(l->pfds);
  l->pfds = NULL;
  l->n_pfds = l->cap_pfds = 0;
}

static int loop_backend_add(struct loop *l, int fd, unsigned events) {
  size_t slot;
  if (l->n_pfds == l->cap_pfds) {
    size_t cap = l->cap_pfds ? l->cap_pfds * 2 : 16;
    struct pollfd *p;
    if (cap > SIZE_MAX / sizeof(*p)) return URSULA_ENOMEM;
    p = (struct pollfd *)URSULA_REALLOC(l->pfds, cap * sizeof(*p));
    if (p == NULL) return URSULA_ENOMEM;
    l->pfds = p;
    l->cap_pfds = cap;
  }
  /* a wait can return every registered fd */
  if (loop_fired_reserve(l, l->n_pfds + 1) != URSULA_OK) return URSULA_ENOMEM;
  slot = l->n_pfds++;
  l->pfds[slot].fd = fd;
  l->pfds[slot].events = loop_backend_mask(events);
  l->pfds[slot].revents = 0;
  l->fds[fd].slot = slot;
  return URSULA_OK;
}

static int loop_backend_mod(struct loop *l, int fd, unsigned events) {
  l->pfds[l->fds[fd].slot].events = loop_backend_mask(events);
  return URSULA_OK;
}

static void loop_backend_del(struct loop *l, int fd) {
  size_t slot = l->fds[fd].slot, last = l->n_pfds - 1;
  URSULA_ASSERT(slot < l->n_pfds && l->pfds[slot].fd == fd);
  if (slot != last) {
    l->pfds[slot] = l->pfds[last];
    l->fds[l->pfds[slot].fd].slot = slot;
  }
  l->n_pfds--;
}

static int loop_backend_wait(struct loop *l, int timeout_ms) {
  int rc, n = 0;
  size_t i;
  rc = poll(l->pfds, (nfds_t)l->n_pfds, timeout_ms);
  if (rc < 0) return errno == EINTR ? 0 : URSULA_ESYS;
  for (i = 0; i < l->n_pfds && n < rc; i++) {
    short e = l->pfds[i].revents;
    unsigned ev = 0;
    if (e == 0) continue;
    if (e & POLLIN) ev |= LOOP_READ;
    if (e & POLLOUT) ev |= LOOP_WRITE;
    if (e & (POLLERR | POLLNVAL)) ev |= LOOP_ERROR;
    if (e & POLLHUP) ev |= LOOP_ERROR | LOOP_READ;
    l->fired[n].fd = l->pfds[i].fd;
    l->fired[n].events = ev;
    n++;
  }
  return n;
}

#endif /* URSULA_ENABLE_EPOLL */

/* ================================================================= core */

/* Grow the fd table so that fd is a valid index.  URSULA_OK or
** URSULA_ENOMEM (table unchanged). */
static int loop_fds_reserve(struct loop *l, int fd) {
  struct loop_fd *p;
  size_t cap = l->cap_fds ? l->cap_fds : LOOP_MIN_FDS;
  if ((size_t)fd < l->cap_fds) return URSULA_OK;
  while (cap <= (size_t)fd) {
    if (cap > SIZE_MAX / 2 / sizeof(*p)) return URSULA_ENOMEM;
    cap *= 2;
  }
  p = (struct loop_fd *)URSULA_REALLOC(l->fds, cap * sizeof(*p));
  if (p == NULL) return URSULA_ENOMEM;
  memset(p + l->cap_fds, 0, (cap - l->cap_fds) * sizeof(*p));
  l->fds = p;
  l->cap_fds = cap;
  return URSULA_OK;
}

/* The registered entry of fd, or NULL. */
static struct loop_fd *loop_fd_get(const struct loop *l, int fd) {
  if (fd < 0 || (size_t)fd >= l->cap_fds || l->fds[fd].fn == NULL) return NULL;
  return &l->fds[fd];
}

/* Register fd (not registered yet) for events (LOOP_READ|LOOP_WRITE, 0
** for errors only); fn(l, fd, events, arg) runs on the loop's thread when
** one happens.  URSULA_OK, URSULA_EINVAL (fd < 0, fn NULL or fd already
** registered), URSULA_ENOMEM or URSULA_ESYS (the backend refused fd); on
** failure nothing changed. */
URSULA_PRIVATE int loop_add(struct loop *l, int fd, unsigned events,
                            loop_io_fn fn, void *arg) {
  struct loop_fd *e;
  int rc;
  if (fd < 0 || fn == NULL) return URSULA_EINVAL;
  if (loop_fd_get(l, fd) != NULL) return URSULA_EINVAL;
  if ((rc = loop_fds_reserve(l, fd)) != URSULA_OK) return rc;
  events &= LOOP_READ | LOOP_WRITE;
  if ((rc = loop_backend_add(l, fd, events)) != URSULA_OK) return rc;
  e = &l->fds[fd];
  e->fn = fn;
  e->arg = arg;
  e->events = events;
  e->gen++;
  return URSULA_OK;
}

/* Change what a registered fd is watched for (LOOP_READ|LOOP_WRITE, 0 for
** errors only).  URSULA_OK, URSULA_EINVAL if fd is not registered, or
** URSULA_ESYS (registration unchanged). */
URSULA_PRIVATE int loop_mod(struct loop *l, int fd, unsigned events) {
  struct loop_fd *e = loop_fd_get(l, fd);
  int rc;
  if (e == NULL) return URSULA_EINVAL;
  events &= LOOP_READ | LOOP_WRITE;
  if (events == e->events) return URSULA_OK;
  if ((rc = loop_backend_mod(l, fd, events)) != URSULA_OK) return rc;
  e->events = events;
  return URSULA_OK;
}

/* Forget fd; a no-op if it is not registered.  An event of fd still
** pending in this turn is dropped. */
URSULA_PRIVATE void loop_del(struct loop *l, int fd) {
  struct loop_fd *e = loop_fd_get(l, fd);
  if (e == NULL) return;
  loop_backend_del(l, fd);
  e->fn = NULL;
  e->arg = NULL;
  e->events = 0;
  e->gen++;
}

/* ---------------------------------------------------------------- timers */

static void loop_heap_place(struct loop *l, size_t i, struct loop_timer *t) {
  l->heap[i] = t;
  t->heap_index = i;
}

/* Move the timer at index i towards the root while it is earlier than its
** parent. */
static void loop_heap_up(struct loop *l, size_t i) {
  struct loop_timer *t = l->heap[i];
  while (i > 1 && l->heap[i / 2]->deadline_ms > t->deadline_ms) {
    loop_heap_place(l, i, l->heap[i / 2]);
    i /= 2;
  }
  loop_heap_place(l, i, t);
}

/* Move the timer at index i towards the leaves while a child is earlier. */
static void loop_heap_down(struct loop *l, size_t i) {
  struct loop_timer *t = l->heap[i];
  for (;;) {
    size_t c = 2 * i;
    if (c > l->n_heap) break;
    if (c + 1 <= l->n_heap &&
        l->heap[c + 1]->deadline_ms < l->heap[c]->deadline_ms)
      c++;
    if (l->heap[c]->deadline_ms >= t->deadline_ms) break;
    loop_heap_place(l, i, l->heap[c]);
    i = c;
  }
  loop_heap_place(l, i, t);
}

/* Take the armed timer t out of the heap and disarm it. */
static void loop_heap_remove(struct loop *l, struct loop_timer *t) {
  size_t i = t->heap_index;
  struct loop_timer *last = l->heap[l->n_heap];
  URSULA_ASSERT(i >= 1 && i <= l->n_heap && l->heap[i] == t);
  l->heap[l->n_heap--] = NULL;
  t->heap_index = 0;
  if (last == t) return;
  loop_heap_place(l, i, last);
  loop_heap_up(l, i);
  loop_heap_down(l, last->heap_index);
}

/* Arm t, or re-arm it if armed.  If the heap cannot grow (out of memory)
** the error is logged and t is left disarmed: the prototype has no way to
** report it. */
URSULA_PRIVATE void loop_timer_set(struct loop *l, struct loop_timer *t,
                                   uint64_t deadline_ms, loop_timer_fn fn,
                                   void *arg) {
  t->on_fire = fn;
  t->arg = arg;
  if (t->heap_index != 0) {
    URSULA_ASSERT(t->heap_index <= l->n_heap && l->heap[t->heap_index] == t);
    t->deadline_ms = deadline_ms;
    loop_heap_up(l, t->heap_index);
    loop_heap_down(l, t->heap_index);
    return;
  }
  t->deadline_ms = deadline_ms;
  if (l->n_heap + 1 >= l->cap_heap) {
    size_t cap = l->cap_heap ? l->cap_heap * 2 : 64;
    struct loop_timer **p;
    if (cap > SIZE_MAX / sizeof(*p))
      p = NULL;
    else
      p = (struct loop_timer **)URSULA_REALLOC(l->heap, cap * sizeof(*p));
    if (p == NULL) {
      LOG_E("loop %d: out of memory arming a timer", l->id);
      return;
    }
    l->heap = p;
    l->cap_heap = cap;
  }
  l->n_heap++;
  loop_heap_place(l, l->n_heap, t);
  loop_heap_up(l, l->n_heap);
}

/* Disarm t; a no-op if it is not armed. */
URSULA_PRIVATE void loop_timer_cancel(struct loop *l, struct loop_timer *t) {
  if (t->heap_index != 0) loop_heap_remove(l, t);
}

/* Fire the timers due at the cached now.  At most as many timers as were
** armed on entry fire, so a timer that re-arms itself for "now" cannot
** keep the turn going forever; whatever is left is due at the next turn,
** whose wait then does not block. */
static void loop_fire_timers(struct loop *l) {
  size_t budget = l->n_heap;
  while (budget-- > 0 && l->n_heap > 0 &&
         l->heap[1]->deadline_ms <= l->now_ms) {
    struct loop_timer *t = l->heap[1];
    loop_heap_remove(l, t);
    t->on_fire(l, t->arg);
  }
}

/* How long the next wait may block, in milliseconds. */
static int loop_wait_ms(const struct loop *l) {
  uint64_t now, deadline;
  if (l->n_heap == 0) return LOOP_MAX_WAIT_MS;
  deadline = l->heap[1]->deadline_ms;
  now = l->env->mono_ms(l->env); /* fresh: the turn itself took time */
  if (deadline <= now) return 0;
  if (deadline - now > LOOP_MAX_WAIT_MS) return LOOP_MAX_WAIT_MS;
  return (int)(deadline - now);
}

/* --------------------------------------------------------------- mailbox */

/* Write one byte to the wake pipe.  Async-signal-safe; keeps errno.  A
** full pipe already guarantees a wake-up, so EAGAIN is fine. */
static void loop_poke(struct loop *l) {
  int saved = errno;
  char c = 1;
  ssize_t w = write(l->wake_w, &c, 1);
  (void)w;
  errno = saved;
}

/* The wake pipe's read end is readable: empty it.  The mailbox itself is
** taken every turn by loop_drain_mailbox(), after this. */
static void loop_on_wake(struct loop *l, int fd, unsigned events, void *arg) {
  char tmp[256];
  ssize_t r;
  (void)l;
  (void)events;
  (void)arg;
  do {
    r = read(fd, tmp, sizeof(tmp));
  } while (r == (ssize_t)sizeof(tmp) || (r < 0 && errno == EINTR));
}

/* Take every message queued now and run them, in order, outside the lock.
** Messages posted meanwhile wait for the next turn. */
static void loop_drain_mailbox(struct loop *l) {
  struct loop_msg *m;
  pthread_mutex_lock(&l->mu);
  m = l->mb_head;
  l->mb_head = l->mb_tail = NULL;
  pthread_mutex_unlock(&l->mu);
  while (m != NULL) {
    struct loop_msg *next = m->next;
    m->next = NULL;
    m->on_msg(l, m); /* may free m */
    m = next;
  }
}

/* Post m: appended to l's FIFO under the mutex, with a byte to the wake
** pipe only when the loop sleeps in its wait.  Any thread; takes
** ownership of m.  l must outlive the call (join posters before
** loop_close). */
URSULA_PRIVATE void loop_post(struct loop *l, struct loop_msg *m) {
  int wake;
  m->next = NULL;
  pthread_mutex_lock(&l->mu);
  if (l->mb_tail != NULL)
    l->mb_tail->next = m;
  else
    l->mb_head = m;
  l->mb_tail = m;
  wake = l->sleeping;
  l->sleeping = 0; /* one byte ends the wait */
  pthread_mutex_unlock(&l->mu);
  if (wake) loop_poke(l);
}

/* Any thread, async-signal-safe: a flag store and a pipe write. */
URSULA_PRIVATE void loop_stop(struct loop *l) {
  LOOP_STOP_SET(l, 1);
  loop_poke(l);
}

/* Any thread, async-signal-safe: end the current wait so the loop's
** thread runs a turn (and its on_turn_end sees flags set elsewhere). */
URSULA_PRIVATE void loop_wake(struct loop *l) {
  loop_poke(l);
}

/* ------------------------------------------------------------ lifecycle */

/* The id given to loop_open(), and an opaque user pointer (NULL until
** set) the owner keeps on the loop. */
URSULA_PRIVATE void *loop_get_user(const struct loop *l) {
  return l->user;
}
URSULA_PRIVATE void loop_set_user(struct loop *l, void *user) {
  l->user = user;
}
/* The env's mono_ms as read when the current turn's wait returned (or at
** loop_open(), before the first turn). */
URSULA_PRIVATE uint64_t loop_now_ms(const struct loop *l) {
  return l->now_ms;
}

/* Release everything l owns: its pipe and backend fds, its tables, and the
** messages still queued (each one block from URSULA_MALLOC, freed with
** URSULA_FREE without running on_msg).  Registered fds are the callers'
** and stay open; armed timers are forgotten without being touched (their
** owners may already be gone).  Safe on a half-opened loop. */
URSULA_PRIVATE void loop_close(struct loop *l) {
  struct loop_msg *m;
  if (l == NULL) return;
  loop_backend_close(l);
  if (l->wake_r >= 0) close(l->wake_r);
  if (l->wake_w >= 0) close(l->wake_w);
  m = l->mb_head;
  while (m != NULL) {
    struct loop_msg *next = m->next;
    if (m->on_drop != NULL)
      m->on_drop(m);
    else
      URSULA_FREE(m);
    m = next;
  }
  if (l->mu_ready) pthread_mutex_destroy(&l->mu);
  URSULA_FREE(l->fds);
  URSULA_FREE(l->fired);
  URSULA_FREE(l->heap);
  URSULA_FREE(l);
}

/* Open a loop numbered id, reading time from env (NULL: env_real(); it
** must outlive the loop).  On success *out is set; on failure nothing is
** left allocated or open, *out is untouched, and err (URSULA_ERRMSG_LEN
** bytes, may be NULL) says why. */
URSULA_PRIVATE int loop_open(struct loop **out, int id, struct env *env,
                             char *err) {
  struct loop *l;
  int p[2], rc, e = 0;
  const char *what = "";
  l = (struct loop *)URSULA_MALLOC(sizeof(*l));
  if (l == NULL) {
    if (err != NULL)
      snprintf(err, URSULA_ERRMSG_LEN, "loop %d: out of memory", id);
    return URSULA_ENOMEM;
  }
  memset(l, 0, sizeof(*l));
  l->id = id;
  l->wake_r = l->wake_w = -1;
#if URSULA_ENABLE_EPOLL
  l->epfd = -1;
#endif
  l->env = env != NULL ? env : env_real();
  l->now_ms = l->env->mono_ms(l->env);
  if ((e = pthread_mutex_init(&l->mu, NULL)) != 0) {
    what = "pthread_mutex_init";
    rc = URSULA_ESYS;
    goto fail;
  }
  l->mu_ready = 1;
  if (pipe(p) != 0) {
    e = errno;
    what = "pipe";
    rc = URSULA_ESYS;
    goto fail;
  }
  l->wake_r = p[0];
  l->wake_w = p[1];
  if (os_set_nonblock(p[0]) != URSULA_OK ||
      os_set_nonblock(p[1]) != URSULA_OK || os_set_cloexec(p[0]) != URSULA_OK ||
      os_set_cloexec(p[1]) != URSULA_OK) {
    e = errno;
    what = "fcntl";
    rc = URSULA_ESYS;
    goto fail;
  }
  errno = 0;
  if ((rc = loop_backend_open(l)) != URSULA_OK) {
    e = errno;
    what = URSULA_ENABLE_EPOLL ? "epoll_create1" : "event backend";
    goto fail;
  }
  errno = 0;
  if ((rc = loop_add(l, l->wake_r, LOOP_READ, loop_on_wake, NULL)) !=
      URSULA_OK) {
    e = errno;
    what = "watching the wake pipe";
    goto fail;
  }
  *out = l;
  return URSULA_OK;
fail:
  if (err != NULL) {
    if (rc == URSULA_ENOMEM || e == 0)
      snprintf(err, URSULA_ERRMSG_LEN, "loop %d: %s: %s", id, what,
               ursula_strerror(rc));
    else
      snprintf(err, URSULA_ERRMSG_LEN, "loop %d: %s: %s", id, what,
               strerror(e));
  }
  loop_close(l);
  return rc;
}

/* Run one turn (steps 1-6 at the top of this file), whether or not a
** stop was requested.  The wait blocks at most max_wait_ms (0: it only
** looks at what is ready; negative: no cap but the loop's own, the
** earliest timer and LOOP_MAX_WAIT_MS).  Returns URSULA_OK after the
** turn, or URSULA_ESYS if the backend's wait failed (EINTR is not a
** failure; nothing was dispatched).  Loop thread only, and not
** reentrant: callbacks must not call it or loop_run(). */
URSULA_PRIVATE int loop_run_once(struct loop *l, int max_wait_ms,
                                 void (*on_turn_end)(struct loop *)) {
  int n, i, wait_ms = loop_wait_ms(l);
  if (max_wait_ms >= 0 && max_wait_ms < wait_ms) wait_ms = max_wait_ms;
  if (wait_ms != 0) { /* may block: posters must wake it (Mailbox) */
    pthread_mutex_lock(&l->mu);
    if (l->mb_head != NULL)
      wait_ms = 0;
    else
      l->sleeping = 1;
    pthread_mutex_unlock(&l->mu);
  }
  n = loop_backend_wait(l, wait_ms);
  if (wait_ms != 0) {
    pthread_mutex_lock(&l->mu);
    l->sleeping = 0;
    pthread_mutex_unlock(&l->mu);
  }
  l->now_ms = l->env->mono_ms(l->env);
  if (n < 0) {
    LOG_E("loop %d: wait: %s", l->id, strerror(errno));
    return n;
  }
  /* snapshot generations before any callback can change them */
  for (i = 0; i < n; i++) {
    int fd = l->fired[i].fd;
    l->fired[i].gen =
        (fd >= 0 && (size_t)fd < l->cap_fds) ? l->fds[fd].gen : 0;
  }
  for (i = 0; i < n; i++) {
    int fd = l->fired[i].fd;
    struct loop_fd *e = loop_fd_get(l, fd);
    unsigned ev;
    if (e == NULL || e->gen != l->fired[i].gen) continue;
    ev = l->fired[i].events & (e->events | LOOP_ERROR);
    if (ev != 0) e->fn(l, fd, ev, e->arg);
  }
  loop_fire_timers(l);
  loop_drain_mailbox(l);
  if (on_turn_end != NULL) on_turn_end(l);
  return URSULA_OK;
}

/* Run turns until loop_stop().  Returns URSULA_OK once stopped (the stop
** request is then consumed: a later loop_run() runs until the next
** loop_stop(); a stop made before loop_run() makes it return at once), or
** URSULA_ESYS if the backend's wait fails (EINTR is not a failure).
** Loop thread only, and not reentrant: callbacks must not call it. */
URSULA_PRIVATE int loop_run(struct loop *l,
                            void (*on_turn_end)(struct loop *)) {
  int rc = URSULA_OK;
  while (!LOOP_STOP_GET(l)) {
    if ((rc = loop_run_once(l, -1, on_turn_end)) != URSULA_OK) break;
  }
  LOOP_STOP_SET(l, 0);
  return rc;
}

#undef LOOP_MAX_WAIT_MS
#undef LOOP_MIN_FDS
#undef LOOP_EPOLL_BATCH
#undef LOOP_STOP_GET
#undef LOOP_STOP_SET
/**** End src/loop.c ****/
/**** Begin src/net.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/net.c"
#endif
/*
** net.c -- listening sockets.
*/


/* Open a non-blocking TCP listener on host:port (port 0 = any free port).
** Returns the fd and sets *bound_port, or -1 with a reason in err. */
URSULA_PRIVATE int net_listen(const char *host, int port, int *bound_port,
                              char *err) {
  struct addrinfo hints, *res = NULL, *ai;
  char portstr[16];
  int fd = -1, one = 1, rc;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  snprintf(portstr, sizeof(portstr), "%d", port);
  rc = getaddrinfo(host, portstr, &hints, &res);
  if (rc != 0) {
    if (err)
      snprintf(err, URSULA_ERRMSG_LEN, "listen %.100s: %s", host,
               gai_strerror(rc));
    return -1;
  }
  for (ai = res; ai != NULL; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) continue;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
      break;
    if (err)
      snprintf(err, URSULA_ERRMSG_LEN, "listen %.100s:%d: %s", host, port,
               strerror(errno));
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) return -1;
  os_set_nonblock(fd);
  os_set_cloexec(fd);
  {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    *bound_port = port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
      if (ss.ss_family == AF_INET)
        *bound_port = ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port);
      else if (ss.ss_family == AF_INET6)
        *bound_port = ntohs(((struct sockaddr_in6 *)(void *)&ss)->sin6_port);
    }
  }
  return fd;
}
/**** End src/net.c ****/
/**** Begin src/http.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/http.c"
#endif
/*
** http.c -- HTTP/1.1 request heads and chunked request bodies.
**
** The parsers follow the picohttpparser contract: they never allocate,
** they return views into the caller's buffer, and each call answers one
** of "this many bytes", "need more" (URSULA_EAGAIN) or "malformed".  The
** head parser starts over on every call, so the caller simply calls it
** again when more bytes arrive; heads are small (URSULA_MAX_HEADER_BYTES,
** enforced by the caller), so this costs little and keeps no state.
**
** What a head looks like (RFC 9112, section 2):
**
**     request-line  = method SP request-target SP "HTTP/1." DIGIT CRLF
**     header-line   = field-name ":" OWS field-value OWS CRLF
**     head          = *( CRLF ) request-line *( header-line ) CRLF
**
** A bare LF is accepted wherever CRLF is in the head (RFC 9112 section
** 2.2 allows it); a CR that is not followed by LF is malformed.  Obsolete
** line folding (a header line starting with SP or HTAB) is malformed.
** The request-target may hold only the characters of a URI (RFC 3986
** section 2, less '#': no fragment in a request-target, RFC 9112 section
** 3.2; see http_is_uri_char), and every '%' in it must start a "%"
** HEXDIG HEXDIG escape.  The
** version is "HTTP/" DIGIT "." DIGIT (RFC 9112 section 2.3); a major
** version other than 1 is HTTP_EVERSION (505), and a minor version above
** 1 is taken as 1 (RFC 9110 section 6.2: process a message of a higher
** minor version as the highest minor version one implements).
**
** Past the syntax, what the head means for the connection is decided
** here too, each kind in one function that conn.c calls for every head:
** http_framing() (where the body ends: the table at that function),
** http_authority() (Host and the request-target's form),
** http_keep_alive() and http_expects_continue().  The protocol layer
** gets http_pct_decode() for query parameters and http_if_none_match()
** for conditional reads.
*/


/* ------------------------------------------------------------ characters */

/* tchar (RFC 9110 section 5.6.2): the bytes of a method or field name. */
static int http_is_tchar(unsigned char ch) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
      (ch >= '0' && ch <= '9'))
    return 1;
  return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* A byte allowed inside a field value: visible ASCII, SP, HTAB, obs-text. */
static int http_is_vchar(unsigned char ch) {
  return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

/* A byte of a request-target: those of a URI (RFC 3986 section 2:
** unreserved, reserved less '#', and '%', whose escape is checked
** apart), and the few that WHATWG URL serializers (browsers, and the
** fetch() of the official clients) leave unescaped although RFC 3986 does
** not list them: \ ^ ` { | }.  Never a control, SP, DEL, a byte above
** 0x7F, or " < > #. */
static int http_is_uri_char(unsigned char ch) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
      (ch >= '0' && ch <= '9'))
    return 1;
  return ch != '\0' && strchr("-._~:/?[]@!$&'()*+,;=%\\^`{|}", ch) != NULL;
}

static int http_hex(unsigned char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* 1 if every '%' of s starts "%" HEXDIG HEXDIG (RFC 3986 section 2.1). */
static int http_pct_ok(struct str s) {
  size_t i;
  for (i = 0; i < s.len; i++) {
    if (s.ptr[i] != '%') continue;
    if (i + 2 >= s.len || http_hex((unsigned char)s.ptr[i + 1]) < 0 ||
        http_hex((unsigned char)s.ptr[i + 2]) < 0)
      return 0;
    i += 2;
  }
  return 1;
}

/* ------------------------------------------------------------ the head */

/* A cursor over the head being parsed. */
struct http_cursor {
  const char *p;
  size_t len;
  size_t at;
};

/* Consume a line end at the cursor.  Returns 1 if one was consumed, 0 if
** the byte there is something else, URSULA_EAGAIN if the input ends
** inside it, HTTP_EMALFORMED for a CR without LF. */
static int http_eol(struct http_cursor *cu) {
  if (cu->at >= cu->len) return URSULA_EAGAIN;
  if (cu->p[cu->at] == '\n') {
    cu->at++;
    return 1;
  }
  if (cu->p[cu->at] != '\r') return 0;
  if (cu->at + 1 >= cu->len) return URSULA_EAGAIN;
  if (cu->p[cu->at + 1] != '\n') return HTTP_EMALFORMED;
  cu->at += 2;
  return 1;
}

/* request-line.  Every error is reported as soon as the bytes show it,
** but HTTP_EVERSION only once the line is complete. */
static int http_request_line(struct http_cursor *cu, struct http_request *r) {
  static const char name[] = "HTTP/";
  size_t start = cu->at, i;
  int rc, major, minor;
  while (cu->at < cu->len && http_is_tchar((unsigned char)cu->p[cu->at]))
    cu->at++;
  if (cu->at >= cu->len) return URSULA_EAGAIN;
  if (cu->at == start || cu->p[cu->at] != ' ') return HTTP_EMALFORMED;
  r->method.ptr = cu->p + start;
  r->method.len = cu->at - start;
  start = ++cu->at;
  while (cu->at < cu->len && http_is_uri_char((unsigned char)cu->p[cu->at]))
    cu->at++;
  if (cu->at >= cu->len) return URSULA_EAGAIN;
  if (cu->at == start || cu->p[cu->at] != ' ') return HTTP_EMALFORMED;
  r->target.ptr = cu->p + start;
  r->target.len = cu->at - start;
  if (!http_pct_ok(r->target)) return HTTP_EMALFORMED;
  cu->at++;
  for (i = 0; i < sizeof(name) - 1; i++, cu->at++) {
    if (cu->at >= cu->len) return URSULA_EAGAIN;
    if (cu->p[cu->at] != name[i]) return HTTP_EMALFORMED;
  }
  for (i = 0; i < 3; i++) { /* DIGIT "." DIGIT */
    char ch;
    if (cu->at + i >= cu->len) return URSULA_EAGAIN;
    ch = cu->p[cu->at + i];
    if (i == 1 ? ch != '.' : (ch < '0' || ch > '9')) return HTTP_EMALFORMED;
  }
  major = cu->p[cu->at] - '0';
  minor = cu->p[cu->at + 2] - '0';
  cu->at += 3;
  rc = http_eol(cu);
  if (rc == 0) return HTTP_EMALFORMED;
  if (rc < 0) return rc;
  if (major != 1) return HTTP_EVERSION;
  r->minor_version = minor > 1 ? 1 : minor;
  return URSULA_OK;
}

/* One header line, or the empty line that ends the head (*end = 1). */
static int http_header_line(struct http_cursor *cu, struct http_request *r,
                            int *end) {
  size_t start = cu->at;
  struct http_header *h;
  struct str v;
  int rc = http_eol(cu);
  if (rc != 0) {
    *end = rc == 1;
    return rc < 0 ? rc : URSULA_OK;
  }
  while (cu->at < cu->len && http_is_tchar((unsigned char)cu->p[cu->at]))
    cu->at++;
  if (cu->at >= cu->len) return URSULA_EAGAIN;
  /* an empty name, a blank before ':' or a folded line are all malformed */
  if (cu->at == start || cu->p[cu->at] != ':') return HTTP_EMALFORMED;
  if (r->n_headers == URSULA_MAX_HEADERS) return HTTP_ETOOMANY;
  h = &r->headers[r->n_headers];
  h->name.ptr = cu->p + start;
  h->name.len = cu->at - start;
  start = ++cu->at;
  while (cu->at < cu->len && http_is_vchar((unsigned char)cu->p[cu->at]))
    cu->at++;
  if (cu->at >= cu->len) return URSULA_EAGAIN;
  v.ptr = cu->p + start;
  v.len = cu->at - start;
  rc = http_eol(cu);
  if (rc == 0) return HTTP_EMALFORMED; /* a control byte in the value */
  if (rc < 0) return rc;
  h->value = util_str_trim(v);
  r->n_headers++;
  *end = 0;
  return URSULA_OK;
}

URSULA_PRIVATE int http_parse_request(const char *buf, size_t len,
                                      struct http_request *req) {
  struct http_cursor cu;
  struct http_request r;
  int rc, end = 0;
  cu.p = buf;
  cu.len = len;
  cu.at = 0;
  r.n_headers = 0;
  r.host.ptr = "";
  r.host.len = 0;
  for (;;) { /* skip empty lines before the request line */
    rc = http_eol(&cu);
    if (rc < 0) return rc;
    if (rc == 0) break;
  }
  rc = http_request_line(&cu, &r);
  while (rc == URSULA_OK && !end) rc = http_header_line(&cu, &r, &end);
  if (rc != URSULA_OK) return rc;
  if (cu.at > INT_MAX) return HTTP_EMALFORMED;
  *req = r;
  return (int)cu.at;
}

URSULA_PRIVATE const struct http_header *http_find_header(
    const struct http_request *req, const char *name) {
  size_t i;
  for (i = 0; i < req->n_headers; i++)
    if (util_str_ieq(req->headers[i].name, name)) return &req->headers[i];
  return NULL;
}

/* ------------------------------------------------------------ lists */

URSULA_PRIVATE size_t http_count_fields(const struct http_request *req,
                                        const char *name) {
  size_t i, n = 0;
  for (i = 0; i < req->n_headers; i++)
    if (util_str_ieq(req->headers[i].name, name)) n++;
  return n;
}

URSULA_PRIVATE int http_list_next(const struct http_request *req,
                                  const char *name, struct http_list *it,
                                  struct str *member) {
  for (;;) {
    size_t k;
    if (!it->in_line) { /* the next field line of that name */
      while (it->line < req->n_headers &&
             !util_str_ieq(req->headers[it->line].name, name))
        it->line++;
      if (it->line == req->n_headers) return 0;
      it->rest = req->headers[it->line++].value;
      it->in_line = 1;
    }
    for (k = 0; k < it->rest.len && it->rest.ptr[k] != ','; k++) {
    }
    member->ptr = it->rest.ptr;
    member->len = k;
    *member = util_str_trim(*member);
    if (k == it->rest.len) {
      it->in_line = 0;
    } else {
      it->rest.ptr += k + 1;
      it->rest.len -= k + 1;
    }
    if (member->len > 0) return 1; /* empty members are skipped */
  }
}

/* 1 if s is a token (RFC 9110 section 5.6.2). */
static int http_is_token(struct str s) {
  size_t i;
  if (s.len == 0) return 0;
  for (i = 0; i < s.len; i++)
    if (!http_is_tchar((unsigned char)s.ptr[i])) return 0;
  return 1;
}

/* ------------------------------------------------------------ framing */

/* Where a request's body ends (RFC 9112 section 6.3), decided here and
** nowhere else.  TE is every Transfer-Encoding field line of the request
** read as one list (RFC 9110 section 5.3), CL every Content-Length line.
**
**   TE        CL          version  verdict
**   --------  ----------  -------  -------------------------------------
**   absent    absent      any      no body (6.3 rule 7)
**   absent    one line,   any      exactly that many bytes (6.3 rule 6)
**             1*DIGIT
**   absent    one line,   any      400 + close (6.3 rule 5).  This covers
**             not 1*DIGIT          "+5", "-1", "0x5", "5 5", "", a value
**                                  over 2^64 - 1, and any list: "5, 5"
**                                  too, which RFC 9110 section 8.6 lets a
**                                  recipient take as 5 or refuse; ursula
**                                  refuses it (a front end that took it
**                                  differently is the smuggling risk)
**   absent    2+ lines    any      400 + close: the lines form a list, as
**                                  above, whether or not they agree
**   present   present     any      400 + close (6.1: "MAY reject ...
**                                  MUST close"; 6.3 rule 3: "ought to be
**                                  handled as an error")
**   present   absent      1.0      400 + close (6.1: an HTTP/1.0 message
**                                  with Transfer-Encoding has faulty
**                                  framing)
**   present   absent      1.1      by the list of codings, empty members
**                                  skipped (RFC 9110 section 5.6.1):
**     exactly "chunked" (any case, 6.1)        chunked (6.3 rule 4)
**     a member that is not a bare token        400 + close (parameters
**       ("chunked;x=1", "a b")                  are not ours to guess)
**     no member, or chunked not the last       400 + close (6.3 rule 4:
**       ("", "gzip", "chunked, gzip")           the length cannot be
**                                               determined)
**     chunked more than once                   400 + close (7.1: chunked
**       ("chunked, chunked")                    is applied only once)
**     another coding before a final chunked    501 + close (6.1: a
**       ("gzip, chunked")                       coding we do not know)
**
** "+ close": the caller answers and closes the connection without reading
** anything more of it, so nothing after an ambiguous head can ever be
** taken for the next request. */
URSULA_PRIVATE int http_framing(const struct http_request *req,
                                struct http_framing *f, const char **reason) {
  size_t n_cl = http_count_fields(req, "Content-Length");
  f->kind = HTTP_BODY_NONE;
  f->length = 0;
  if (http_count_fields(req, "Transfer-Encoding") > 0) {
    struct http_list it;
    struct str m;
    size_t n = 0, n_chunked = 0;
    int last_chunked = 0;
    if (n_cl > 0) {
      *reason = "Content-Length and Transfer-Encoding together";
      return 400;
    }
    if (req->minor_version == 0) {
      *reason = "Transfer-Encoding in an HTTP/1.0 request";
      return 400;
    }
    memset(&it, 0, sizeof(it));
    while (http_list_next(req, "Transfer-Encoding", &it, &m)) {
      if (!http_is_token(m)) {
        *reason = "malformed Transfer-Encoding";
        return 400;
      }
      n++;
      last_chunked = util_str_ieq(m, "chunked");
      if (last_chunked) n_chunked++;
    }
    if (!last_chunked) {
      *reason = "chunked is not the final transfer coding";
      return 400;
    }
    if (n_chunked > 1) {
      *reason = "chunked is applied more than once";
      return 400;
    }
    if (n > 1) {
      *reason = "only the chunked transfer coding is supported";
      return 501;
    }
    f->kind = HTTP_BODY_CHUNKED;
    return 0;
  }
  if (n_cl > 1) {
    *reason = "more than one Content-Length";
    return 400;
  }
  if (n_cl == 1) {
    if (util_parse_u64(http_find_header(req, "Content-Length")->value,
                       UINT64_MAX, &f->length) != 0) {
      *reason = "malformed Content-Length";
      return 400;
    }
    f->kind = HTTP_BODY_LENGTH;
  }
  return 0;
}

/* ------------------------------------------------------------ authority */

/* dec-octet "." dec-octet "." dec-octet "." dec-octet (RFC 3986 3.2.2):
** each 0..255, without leading zeros. */
static int http_ipv4_ok(const char *p, size_t n) {
  size_t i = 0;
  int parts;
  for (parts = 0; parts < 4; parts++) {
    size_t start = i;
    unsigned v = 0;
    if (parts > 0) {
      if (i >= n || p[i] != '.') return 0;
      start = ++i;
    }
    while (i < n && p[i] >= '0' && p[i] <= '9' && i - start < 3)
      v = v * 10 + (unsigned)(p[i++] - '0');
    if (i == start || v > 255 || (i - start > 1 && p[start] == '0')) return 0;
  }
  return i == n;
}

/* IPv6address (RFC 3986 section 3.2.2): eight 16-bit pieces of 1 to 4
** hex digits separated by ':', the last two of which may be an IPv4
** address; one "::" may stand for one or more pieces of zeros. */
static int http_ipv6_ok(const char *p, size_t n) {
  size_t i = 0;
  int pieces = 0, elided = 0;
  if (n >= 2 && p[0] == ':' && p[1] == ':') {
    elided = 1;
    i = 2;
  }
  while (i < n) {
    size_t start = i;
    while (i < n && http_hex((unsigned char)p[i]) >= 0) i++;
    if (i < n && p[i] == '.') { /* the embedded IPv4 address ends it */
      if (!http_ipv4_ok(p + start, n - start)) return 0;
      pieces += 2;
      i = n;
      break;
    }
    if (i == start || i - start > 4) return 0;
    pieces++;
    if (i == n) break;
    if (p[i++] != ':') return 0;
    if (i < n && p[i] == ':') {
      if (elided) return 0;
      elided = 1;
      i++;
    } else if (i == n) {
      return 0; /* a single ':' at the end */
    }
  }
  return elided ? pieces <= 7 : pieces == 8;
}

/* unreserved / sub-delims (RFC 3986 section 2). */
static int http_is_unreserved_or_sub(unsigned char ch) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
      (ch >= '0' && ch <= '9'))
    return 1;
  return ch != '\0' && strchr("-._~!$&'()*+,;=", ch) != NULL;
}

URSULA_PRIVATE int http_host_ok(struct str h) {
  size_t i = 0;
  if (h.len == 0) return 0;
  if (h.ptr[0] == '[') { /* IP-literal = "[" ( IPv6address / IPvFuture ) "]" */
    const char *end = (const char *)memchr(h.ptr, ']', h.len);
    size_t n;
    if (end == NULL) return 0;
    n = (size_t)(end - h.ptr) - 1;
    if (n > 0 && (h.ptr[1] == 'v' || h.ptr[1] == 'V')) {
      /* IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" ) */
      size_t k = 2;
      while (k <= n && http_hex((unsigned char)h.ptr[k]) >= 0) k++;
      if (k == 2 || k > n || h.ptr[k] != '.' || k == n) return 0;
      for (k++; k <= n; k++)
        if (!http_is_unreserved_or_sub((unsigned char)h.ptr[k]) &&
            h.ptr[k] != ':')
          return 0;
    } else if (!http_ipv6_ok(h.ptr + 1, n)) {
      return 0;
    }
    i = n + 2;
  } else { /* reg-name = *( unreserved / pct-encoded / sub-delims ) */
    struct str name;
    while (i < h.len && h.ptr[i] != ':') {
      if (!http_is_unreserved_or_sub((unsigned char)h.ptr[i]) &&
          h.ptr[i] != '%')
        return 0;
      i++;
    }
    name.ptr = h.ptr;
    name.len = i;
    if (i == 0 || !http_pct_ok(name)) return 0; /* empty: RFC 9110 4.2.1 */
  }
  if (i == h.len) return 1;
  if (h.ptr[i] != ':') return 0;
  if (++i == h.len) return 1; /* an empty port (RFC 3986 section 3.2.3) */
  {
    struct str port;
    uint64_t v;
    port.ptr = h.ptr + i;
    port.len = h.len - i;
    return util_parse_u64(port, 65535, &v) == 0;
  }
}

URSULA_PRIVATE int http_authority(struct http_request *req,
                                  const char **reason) {
  size_t n = http_count_fields(req, "Host");
  struct str t = req->target;
  size_t skip = 0;
  if (n > 1) {
    *reason = "more than one Host field";
    return 400;
  }
  if (n == 0 && req->minor_version >= 1) {
    *reason = "an HTTP/1.1 request needs a Host field";
    return 400;
  }
  req->host.ptr = "";
  req->host.len = 0;
  if (n == 1) {
    req->host = http_find_header(req, "Host")->value;
    if (!http_host_ok(req->host)) {
      *reason = "malformed Host";
      return 400;
    }
  }
  /* absolute-form: "http://" authority path-abempty [ "?" query ] */
  if (t.len >= 7 && util_str_ieq((struct str){t.ptr, 7}, "http://"))
    skip = 7;
  else if (t.len >= 8 && util_str_ieq((struct str){t.ptr, 8}, "https://"))
    skip = 8;
  if (skip > 0) {
    struct str auth;
    size_t k = skip;
    while (k < t.len && t.ptr[k] != '/' && t.ptr[k] != '?') k++;
    auth.ptr = t.ptr + skip;
    auth.len = k - skip;
    if (!http_host_ok(auth)) { /* userinfo ('@') is refused here too */
      *reason = "malformed authority in the request-target";
      return 400;
    }
    req->host = auth;
    req->target.ptr = k < t.len ? t.ptr + k : "/";
    req->target.len = k < t.len ? t.len - k : 1;
  }
  return 0;
}

/* ------------------------------------------------------------ connection */

URSULA_PRIVATE int http_keep_alive(const struct http_request *req) {
  struct http_list it;
  struct str m;
  int has_close = 0, has_keep = 0;
  memset(&it, 0, sizeof(it));
  while (http_list_next(req, "Connection", &it, &m)) {
    if (util_str_ieq(m, "close")) has_close = 1;
    if (util_str_ieq(m, "keep-alive")) has_keep = 1;
  }
  if (has_close) return 0;
  return req->minor_version >= 1 || has_keep;
}

URSULA_PRIVATE int http_expects_continue(const struct http_request *req) {
  struct http_list it;
  struct str m;
  if (req->minor_version == 0) return 0;
  memset(&it, 0, sizeof(it));
  while (http_list_next(req, "Expect", &it, &m))
    if (util_str_ieq(m, "100-continue")) return 1;
  return 0;
}

/* ------------------------------------------------------------ query */

URSULA_PRIVATE int http_pct_decode(struct str in, char *out, size_t cap,
                                   size_t *out_len) {
  size_t i, n = 0;
  int fits = 1;
  for (i = 0; i < in.len; i++) {
    unsigned char ch = (unsigned char)in.ptr[i];
    if (ch == '%') {
      int hi, lo;
      if (i + 2 >= in.len) return HTTP_EMALFORMED;
      hi = http_hex((unsigned char)in.ptr[i + 1]);
      lo = http_hex((unsigned char)in.ptr[i + 2]);
      if (hi < 0 || lo < 0) return HTTP_EMALFORMED;
      ch = (unsigned char)(hi << 4 | lo);
      i += 2;
    }
    if (n < cap)
      out[n++] = (char)ch;
    else
      fits = 0;
  }
  *out_len = n;
  return fits ? URSULA_OK : URSULA_ETOOBIG;
}

/* ------------------------------------------------------------ validators */

/* The opaque-tag of an entity-tag at p[*i..n) (RFC 9110 section 8.8.3:
** [ "W/" ] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text):
** its bytes, quotes included, in *tag; *i moves past it.  0, or -1 if
** there is no entity-tag there. */
static int http_etag_at(const char *p, size_t n, size_t *i, struct str *tag) {
  size_t k = *i;
  if (k + 1 < n && p[k] == 'W' && p[k + 1] == '/') k += 2;
  if (k >= n || p[k] != '"') return -1;
  tag->ptr = p + k;
  for (k++; k < n && p[k] != '"'; k++) {
    unsigned char ch = (unsigned char)p[k];
    if (ch < 0x21 || ch == 0x7f) return -1;
  }
  if (k >= n) return -1;
  tag->len = (size_t)(p + k + 1 - tag->ptr);
  *i = k + 1;
  return 0;
}

URSULA_PRIVATE int http_if_none_match(struct str field, struct str etag) {
  struct str mine, t;
  size_t i = 0, members = 0;
  int match = 0, have = http_etag_at(etag.ptr, etag.len, &i, &mine) == 0;
  field = util_str_trim(field);
  if (util_str_eq(field, "*")) return 1;
  i = 0;
  for (;;) { /* #entity-tag: OWS and empty members around each */
    while (i < field.len && (field.ptr[i] == ' ' || field.ptr[i] == '\t' ||
                             field.ptr[i] == ','))
      i++;
    if (i == field.len) break;
    if (http_etag_at(field.ptr, field.len, &i, &t) != 0) return -1;
    members++;
    if (have && t.len == mine.len && memcmp(t.ptr, mine.ptr, t.len) == 0)
      match = 1;
    while (i < field.len && (field.ptr[i] == ' ' || field.ptr[i] == '\t')) i++;
    if (i < field.len && field.ptr[i] != ',') return -1;
  }
  return members == 0 ? -1 : match;
}

/* ------------------------------------------------------------ chunked */

/* The decoder's states (RFC 9112 section 7.1, with RFC 9110 section 5.6
** for tokens, quoted strings and BWS):
**
**     chunked-body = *chunk last-chunk trailer-section CRLF
**     chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
**     last-chunk   = 1*("0") [ chunk-ext ] CRLF
**     chunk-ext    = *( BWS ";" BWS chunk-ext-name
**                       [ BWS "=" BWS chunk-ext-val ] )
**     chunk-ext-val = token / quoted-string
**     trailer-section = *( field-line CRLF )
**
** The framing of a body is where a front end and this server could
** disagree about where a request ends, so nothing outside the grammar is
** accepted: every line ends in CRLF (no bare LF, unlike the head), BWS
** only where the grammar puts it ("5 \r\n" and "5;\r\n" are malformed),
** extensions are checked (and then ignored), trailer lines are field
** lines (and then dropped: a trailer never changes the framing or the
** request).
*/
enum {
  HTTP_CH_SIZE = 0,      /* hex digits of a chunk size */
  HTTP_CH_WS_SEMI,       /* BWS that must lead to ';' */
  HTTP_CH_EXT_NAME0,     /* after ';': BWS, then a name */
  HTTP_CH_EXT_NAME,      /* inside an extension name */
  HTTP_CH_EXT_NAME_WS,   /* BWS after a name: then '=' or ';' */
  HTTP_CH_EXT_VAL0,      /* after '=': BWS, then a token or a quote */
  HTTP_CH_EXT_TOKEN,     /* inside a token value */
  HTTP_CH_EXT_QUOTED,    /* inside a quoted-string value */
  HTTP_CH_EXT_QESC,      /* after a backslash in one */
  HTTP_CH_EXT_QEND,      /* after the closing quote */
  HTTP_CH_SIZE_LF,       /* the size line had its CR: expecting LF */
  HTTP_CH_DATA,          /* `remaining` payload bytes */
  HTTP_CH_DATA_CR,       /* expecting the CR after the data */
  HTTP_CH_DATA_LF,       /* expecting the LF after that CR */
  HTTP_CH_TRAILER,       /* at the start of a trailer line or the end */
  HTTP_CH_TRAILER_NAME,  /* inside a trailer field name */
  HTTP_CH_TRAILER_VALUE, /* after its ':' */
  HTTP_CH_TRAILER_LF,    /* a trailer line had its CR: expecting LF */
  HTTP_CH_END_LF,        /* the final empty line had its CR */
  HTTP_CH_DONE
};

#define HTTP_CH_MAX_LINE 1024 /* bytes of a size or trailer line */

/* The size line ended: go on to the data, or to the trailers. */
static void http_ch_size_done(struct http_chunked *d) {
  d->line_len = 0;
  d->state = d->remaining > 0 ? HTTP_CH_DATA : HTTP_CH_TRAILER;
}

/* The next state of the size line's extensions after byte ch, or -1 if ch
** is malformed there (qdtext and quoted-pair of RFC 9110 section 5.6.4). */
static int http_ch_ext(int state, unsigned char ch) {
  int ws = ch == ' ' || ch == '\t';
  switch (state) {
    case HTTP_CH_WS_SEMI:
      return ws ? state : ch == ';' ? HTTP_CH_EXT_NAME0 : -1;
    case HTTP_CH_EXT_NAME0:
      return ws ? state : http_is_tchar(ch) ? HTTP_CH_EXT_NAME : -1;
    case HTTP_CH_EXT_NAME:
      if (http_is_tchar(ch)) return state;
      if (ws) return HTTP_CH_EXT_NAME_WS;
      if (ch == '=') return HTTP_CH_EXT_VAL0;
      if (ch == ';') return HTTP_CH_EXT_NAME0;
      return ch == '\r' ? HTTP_CH_SIZE_LF : -1;
    case HTTP_CH_EXT_NAME_WS:
      if (ws) return state;
      if (ch == '=') return HTTP_CH_EXT_VAL0;
      return ch == ';' ? HTTP_CH_EXT_NAME0 : -1;
    case HTTP_CH_EXT_VAL0:
      if (ws) return state;
      if (ch == '"') return HTTP_CH_EXT_QUOTED;
      return http_is_tchar(ch) ? HTTP_CH_EXT_TOKEN : -1;
    case HTTP_CH_EXT_TOKEN:
      if (http_is_tchar(ch)) return state;
      if (ws) return HTTP_CH_WS_SEMI;
      if (ch == ';') return HTTP_CH_EXT_NAME0;
      return ch == '\r' ? HTTP_CH_SIZE_LF : -1;
    case HTTP_CH_EXT_QUOTED:
      if (ch == '"') return HTTP_CH_EXT_QEND;
      if (ch == '\\') return HTTP_CH_EXT_QESC;
      return http_is_vchar(ch) ? state : -1;
    case HTTP_CH_EXT_QESC:
      return http_is_vchar(ch) ? HTTP_CH_EXT_QUOTED : -1;
    case HTTP_CH_EXT_QEND:
      if (ws) return HTTP_CH_WS_SEMI;
      if (ch == ';') return HTTP_CH_EXT_NAME0;
      return ch == '\r' ? HTTP_CH_SIZE_LF : -1;
    default:
      return -1;
  }
}

URSULA_PRIVATE long http_chunked_feed(struct http_chunked *d, const char *in,
                                      size_t len, struct buf *body, int *done) {
  size_t i = 0;
  *done = d->state == HTTP_CH_DONE;
  while (i < len && d->state != HTTP_CH_DONE) {
    unsigned char ch = (unsigned char)in[i];
    int x;
    if (d->state == HTTP_CH_DATA) {
      size_t n = len - i;
      if ((uint64_t)n > d->remaining) n = (size_t)d->remaining;
      if (buf_append(body, in + i, n) != URSULA_OK) return URSULA_ENOMEM;
      i += n;
      d->remaining -= n;
      if (d->remaining == 0) d->state = HTTP_CH_DATA_CR;
      continue;
    }
    if (d->state != HTTP_CH_DATA_CR && d->state != HTTP_CH_DATA_LF) {
      if (++d->line_len > HTTP_CH_MAX_LINE) return HTTP_EMALFORMED;
    }
    i++;
    switch (d->state) {
      case HTTP_CH_SIZE:
        x = http_hex(ch);
        if (x >= 0) {
          if (d->remaining >> 60) return HTTP_EMALFORMED; /* > 2^64 - 1 */
          d->remaining = d->remaining << 4 | (uint64_t)x;
          break;
        }
        if (d->line_len == 1) return HTTP_EMALFORMED; /* no digit */
        if (ch == ';')
          d->state = HTTP_CH_EXT_NAME0;
        else if (ch == ' ' || ch == '\t')
          d->state = HTTP_CH_WS_SEMI;
        else if (ch == '\r')
          d->state = HTTP_CH_SIZE_LF;
        else
          return HTTP_EMALFORMED;
        break;
      case HTTP_CH_SIZE_LF:
        if (ch != '\n') return HTTP_EMALFORMED;
        http_ch_size_done(d);
        break;
      case HTTP_CH_DATA_CR:
        if (ch != '\r') return HTTP_EMALFORMED;
        d->state = HTTP_CH_DATA_LF;
        break;
      case HTTP_CH_DATA_LF:
        if (ch != '\n') return HTTP_EMALFORMED;
        d->state = HTTP_CH_SIZE;
        d->line_len = 0;
        break;
      case HTTP_CH_TRAILER:
        if (ch == '\r')
          d->state = HTTP_CH_END_LF;
        else if (http_is_tchar(ch))
          d->state = HTTP_CH_TRAILER_NAME;
        else
          return HTTP_EMALFORMED; /* bare LF, obs-fold, junk */
        break;
      case HTTP_CH_TRAILER_NAME:
        if (ch == ':')
          d->state = HTTP_CH_TRAILER_VALUE;
        else if (!http_is_tchar(ch))
          return HTTP_EMALFORMED;
        break;
      case HTTP_CH_TRAILER_VALUE: /* trailers are read and dropped */
        if (ch == '\r')
          d->state = HTTP_CH_TRAILER_LF;
        else if (!http_is_vchar(ch))
          return HTTP_EMALFORMED;
        break;
      case HTTP_CH_TRAILER_LF:
        if (ch != '\n') return HTTP_EMALFORMED;
        d->line_len = 0;
        d->state = HTTP_CH_TRAILER;
        break;
      case HTTP_CH_END_LF:
        if (ch != '\n') return HTTP_EMALFORMED;
        d->state = HTTP_CH_DONE;
        break;
      default:
        x = http_ch_ext(d->state, ch);
        if (x < 0) return HTTP_EMALFORMED;
        d->state = x;
        break;
    }
  }
  *done = d->state == HTTP_CH_DONE;
  return (long)i;
}

/* ------------------------------------------------------------ statuses */

URSULA_PRIVATE const char *http_status_text(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}
/**** End src/http.c ****/
/**** Begin src/json.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/json.c"
#endif
/*
** json.c -- validation and one-level flattening of JSON appends.
**
** In JSON mode a POST body is one JSON text (RFC 8259).  If it is an
** array, each element is one message; otherwise the whole value is one
** message.  A message is stored as its exact bytes (whitespace around it
** trimmed, whitespace inside kept) followed by one ',':
**
**     body                        stored
**     [1, {"a": 2} ,"x"]          1,{"a": 2},"x",
**     [[1,2],3]                   [1,2],3,
**      {"a":1}                    {"a":1},
**     []                          (nothing, 0 messages)
**
** A reader serves any run of whole messages as '[' + the stored bytes
** without their last ',' + ']', so nothing is ever re-serialised.
**
** VALIDATION is strict: the RFC 8259 grammar, UTF-8 per RFC 3629 (no
** overlong forms, no UTF-16 surrogates D800-DFFF, nothing above U+10FFFF,
** no truncated sequences), no raw control characters in strings, only
** SP HTAB LF CR as whitespace (so no BOM).  Escapes \uD800..\uDFFF are
** accepted unpaired: they are well-formed by the grammar.
**
** The scanner is iterative.  Open containers are a bit stack (1 = object)
** bounded by URSULA_MAX_JSON_DEPTH, so hostile nesting cannot exhaust the
** C stack, and each input byte is examined a bounded number of times:
** linear time, whatever the shape of the input.
**
** STORED RUNS (json_prefix_len, json_count) are read back without
** validation: they were valid when stored, so tracking strings (with their
** escapes) and bracket depth is enough to find the top-level commas.
*/


/* What json_open() and json_close() tell the scanner's main loop. */
enum {
  JSON_NEED_VALUE = 1, /* a value must start at s->at (blanks skipped) */
  JSON_HAVE_VALUE = 2, /* a value has just ended at s->at */
  JSON_DONE = 3        /* the outermost value has ended at s->at */
};

/* The scanner over p[0..len). */
struct json_scan {
  const unsigned char *p;
  size_t len;
  size_t at;    /* the next byte to look at */
  size_t depth; /* containers open */
  unsigned char objs[(URSULA_MAX_JSON_DEPTH + 7) / 8]; /* bit set: object */
  /* flattening, when the outermost value is an array (else out is NULL) */
  struct buf *out;
  size_t n;    /* elements stored */
  size_t elem; /* where the current element begins */
};

/* ------------------------------------------------------------ tokens */

static void json_blanks(struct json_scan *s) {
  while (s->at < s->len) {
    unsigned char ch = s->p[s->at];
    if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') return;
    s->at++;
  }
}

static int json_is_digit(unsigned char ch) {
  return ch >= '0' && ch <= '9';
}

static int json_is_hex(unsigned char ch) {
  return json_is_digit(ch) || (ch >= 'a' && ch <= 'f') ||
         (ch >= 'A' && ch <= 'F');
}

/* One multi-byte UTF-8 character; its lead byte (>= 0x80) is at s->at.
** Decodes it and rejects what RFC 3629 forbids.  Returns 0 or -1. */
static int json_utf8(struct json_scan *s) {
  const unsigned char *q = s->p + s->at;
  size_t n, i;
  uint32_t cp, min;
  if (q[0] >= 0xF8 || q[0] < 0xC0) {
    return -1; /* not a lead byte (0x80-0xBF continue, 0xF8- never used) */
  } else if (q[0] >= 0xF0) {
    n = 4, cp = q[0] & 0x07u, min = 0x10000;
  } else if (q[0] >= 0xE0) {
    n = 3, cp = q[0] & 0x0Fu, min = 0x800;
  } else {
    n = 2, cp = q[0] & 0x1Fu, min = 0x80;
  }
  if (s->len - s->at < n) return -1; /* truncated by the end of input */
  for (i = 1; i < n; i++) {
    if ((q[i] & 0xC0u) != 0x80u) return -1; /* truncated or stray lead */
    cp = cp << 6 | (q[i] & 0x3Fu);
  }
  if (cp < min) return -1; /* overlong */
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
  s->at += n;
  return 0;
}

/* A string; s->at is on its opening quote.  Returns 0 or -1. */
static int json_string(struct json_scan *s) {
  s->at++;
  while (s->at < s->len) {
    unsigned char ch = s->p[s->at];
    if (ch == '"') {
      s->at++;
      return 0;
    }
    if (ch < 0x20) return -1; /* raw control character */
    if (ch >= 0x80) {
      if (json_utf8(s) != 0) return -1;
      continue;
    }
    s->at++;
    if (ch != '\\') continue;
    if (s->at == s->len) return -1;
    ch = s->p[s->at++];
    if (ch == 'u') {
      size_t i;
      if (s->len - s->at < 4) return -1;
      for (i = 0; i < 4; i++)
        if (!json_is_hex(s->p[s->at + i])) return -1;
      s->at += 4;
    } else if (ch != '"' && ch != '\\' && ch != '/' && ch != 'b' && ch != 'f' &&
               ch != 'n' && ch != 'r' && ch != 't') {
      return -1;
    }
  }
  return -1; /* unterminated */
}

/* Skip a run of digits; returns how many there were. */
static size_t json_digits(struct json_scan *s) {
  size_t from = s->at;
  while (s->at < s->len && json_is_digit(s->p[s->at])) s->at++;
  return s->at - from;
}

/* number = [ "-" ] ( "0" / 1-9 *DIGIT ) [ "." 1*DIGIT ]
**          [ ( "e" / "E" ) [ "+" / "-" ] 1*DIGIT ]
** A digit after a leading "0" is left unread; whatever follows a value
** must be a delimiter, so the caller rejects it ("01"). */
static int json_number(struct json_scan *s) {
  if (s->p[s->at] == '-') s->at++;
  if (s->at == s->len) return -1;
  if (s->p[s->at] == '0')
    s->at++;
  else if (json_digits(s) == 0)
    return -1;
  if (s->at < s->len && s->p[s->at] == '.') {
    s->at++;
    if (json_digits(s) == 0) return -1;
  }
  if (s->at < s->len && (s->p[s->at] == 'e' || s->p[s->at] == 'E')) {
    s->at++;
    if (s->at < s->len && (s->p[s->at] == '+' || s->p[s->at] == '-')) s->at++;
    if (json_digits(s) == 0) return -1;
  }
  return 0;
}

static int json_literal(struct json_scan *s, const char *word) {
  size_t n = strlen(word);
  if (s->len - s->at < n || memcmp(s->p + s->at, word, n) != 0) return -1;
  s->at += n;
  return 0;
}

/* A string, number or literal at s->at (s->at < s->len). */
static int json_scalar(struct json_scan *s) {
  unsigned char ch = s->p[s->at];
  if (ch == '"') return json_string(s);
  if (ch == '-' || json_is_digit(ch)) return json_number(s);
  if (ch == 't') return json_literal(s, "true");
  if (ch == 'f') return json_literal(s, "false");
  if (ch == 'n') return json_literal(s, "null");
  return -1;
}

/* ------------------------------------------------------------ structure */

static int json_in_object(const struct json_scan *s) {
  size_t top = s->depth - 1;
  return (s->objs[top / 8] >> (top % 8)) & 1;
}

/* A member's key and its ':', blanks after each; s->at is where the key
** must start.  Then the member's value is needed. */
static int json_key(struct json_scan *s) {
  if (s->at == s->len || s->p[s->at] != '"' || json_string(s) != 0)
    return URSULA_EINVAL;
  json_blanks(s);
  if (s->at == s->len || s->p[s->at] != ':') return URSULA_EINVAL;
  s->at++;
  json_blanks(s);
  return JSON_NEED_VALUE;
}

/* Start the value at s->at: a scalar is read whole; '[' or '{' is opened
** (and closed at once if empty).  Returns JSON_NEED_VALUE (a container
** was opened and its first value is next), JSON_HAVE_VALUE or
** URSULA_EINVAL. */
static int json_open(struct json_scan *s) {
  unsigned char ch;
  int obj;
  if (s->at == s->len) return URSULA_EINVAL;
  ch = s->p[s->at];
  if (ch != '[' && ch != '{')
    return json_scalar(s) == 0 ? JSON_HAVE_VALUE : URSULA_EINVAL;
  if (s->depth == URSULA_MAX_JSON_DEPTH) return URSULA_EINVAL;
  obj = ch == '{';
  if (obj)
    s->objs[s->depth / 8] |= (unsigned char)(1u << (s->depth % 8));
  else
    s->objs[s->depth / 8] &= (unsigned char)~(1u << (s->depth % 8));
  s->depth++;
  s->at++;
  json_blanks(s);
  if (s->at < s->len && s->p[s->at] == (obj ? '}' : ']')) {
    s->at++;
    s->depth--;
    return JSON_HAVE_VALUE;
  }
  if (obj) return json_key(s);
  if (s->out != NULL && s->depth == 1) s->elem = s->at;
  return JSON_NEED_VALUE;
}

/* A value has just ended at s->at: store it if it is an element of the
** outermost array, then read the ',' before the next value, or close
** containers.  Returns JSON_NEED_VALUE, JSON_DONE, URSULA_EINVAL or
** URSULA_ENOMEM. */
static int json_close(struct json_scan *s) {
  while (s->depth > 0) {
    size_t end = s->at;
    int obj = json_in_object(s);
    unsigned char ch;
    json_blanks(s);
    if (s->at == s->len) return URSULA_EINVAL;
    ch = s->p[s->at];
    if (ch != ',' && ch != (obj ? '}' : ']')) return URSULA_EINVAL;
    if (s->out != NULL && s->depth == 1) {
      if (buf_append(s->out, s->p + s->elem, end - s->elem) != URSULA_OK ||
          buf_append(s->out, ",", 1) != URSULA_OK)
        return URSULA_ENOMEM;
      s->n++;
    }
    s->at++;
    if (ch == ',') {
      json_blanks(s);
      if (obj) return json_key(s);
      if (s->out != NULL && s->depth == 1) s->elem = s->at;
      return JSON_NEED_VALUE;
    }
    s->depth--;
  }
  return JSON_DONE;
}

/* One whole value at s->at (blanks before it skipped).  Returns URSULA_OK,
** URSULA_EINVAL or URSULA_ENOMEM; on success s->at is just past it. */
static int json_value(struct json_scan *s) {
  int rc = JSON_NEED_VALUE;
  for (;;) {
    if (rc == JSON_NEED_VALUE) rc = json_open(s);
    if (rc == JSON_HAVE_VALUE) rc = json_close(s);
    if (rc == JSON_DONE) return URSULA_OK;
    if (rc < 0) return rc;
  }
}

URSULA_PRIVATE int json_flatten(const char *p, size_t len, struct buf *out,
                                size_t *n_msgs) {
  struct json_scan s;
  size_t keep = out->len, start, end;
  int rc;
  memset(&s, 0, sizeof(s));
  s.p = (const unsigned char *)p;
  s.len = len;
  json_blanks(&s);
  start = s.at;
  if (start < len && p[start] == '[') s.out = out;
  /* What is stored is never longer than len + 1 bytes (the elements of an
  ** array are shorter than the array), so reserve it once up front. */
  if (buf_reserve(out, len + 1) != URSULA_OK) return URSULA_ENOMEM;
  rc = json_value(&s);
  end = s.at;
  if (rc == URSULA_OK) {
    json_blanks(&s);
    if (s.at != len) rc = URSULA_EINVAL; /* something after the value */
  }
  if (rc == URSULA_OK && s.out == NULL) {
    if (buf_append(out, p + start, end - start) != URSULA_OK ||
        buf_append(out, ",", 1) != URSULA_OK)
      rc = URSULA_ENOMEM;
    s.n = 1;
  }
  if (rc != URSULA_OK) {
    out->len = keep;
    if (out->ptr != NULL) out->ptr[keep] = '\0';
    return rc;
  }
  *n_msgs = s.n;
  return URSULA_OK;
}

/* ------------------------------------------------------------ stored runs */

/* Count the top-level commas of p[0..len), stopping at the max-th.
** Returns the count; *end is the offset just past the last comma counted
** (0 if none). */
static size_t json_commas(const char *p, size_t len, size_t max, size_t *end) {
  size_t i, n = 0, depth = 0;
  int in_string = 0;
  *end = 0;
  for (i = 0; i < len && n < max; i++) {
    char ch = p[i];
    if (in_string) {
      if (ch == '\\')
        i++; /* the escaped byte cannot end the string */
      else if (ch == '"')
        in_string = 0;
    } else if (ch == '"') {
      in_string = 1;
    } else if (ch == '[' || ch == '{') {
      depth++;
    } else if (ch == ']' || ch == '}') {
      if (depth > 0) depth--;
    } else if (ch == ',' && depth == 0) {
      n++;
      *end = i + 1;
    }
  }
  return n;
}

URSULA_PRIVATE size_t json_prefix_len(const char *p, size_t len, size_t n) {
  size_t end;
  if (n == 0) return 0;
  return json_commas(p, len, n, &end) == n ? end : (size_t)-1;
}

URSULA_PRIVATE size_t json_count(const char *p, size_t len) {
  size_t end;
  return json_commas(p, len, (size_t)-1, &end);
}
/**** End src/json.c ****/
/**** Begin src/conf.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/conf.c"
#endif
/*
** conf.c -- the server configuration: defaults, keys, config files and
** command-line flags, plus the compile-options string.
**
** Every setting has one name, used both as a config-file key and as a
** flag (`--name VALUE` or `--name=VALUE`); conf_keys[] below is the single
** list of them, and ursula_config_set(), the file loader, the flag parser
** and --help all read it.
**
** Config file format (UTF-8 text):
**
**   # a comment line                 lines whose first non-blank is '#'
**   listen 127.0.0.1:4437            key, a run of spaces/tabs, value
**   wal-dir /var/lib/ursula # note   ' #' or '\t#' starts a comment
**
**   The value is the rest of the line after the first run of blanks, with
**   trailing blanks (and a CR of a CRLF line end) dropped.  A '#' that does
**   not follow a blank is part of the value.  Blank lines are skipped.  A
**   UTF-8 byte order mark before the first line is skipped.  Lines are at
**   most CONF_LINE_MAX bytes, without control characters (tab excepted)
**   and must be valid UTF-8.  A later line overrides an earlier one.
**
** Invariants:
**   - Numbers are strictly decimal digits (util_parse_u64): no sign, no
**     blanks, no suffix; leading zeros are allowed.
**   - Nothing here allocates.  Every failing call leaves the caller's
**     config untouched: work is done on a copy that is stored on success.
**   - Error text always names the key (and file:line for files), so a
**     user can find the bad setting from the message alone.
*/


#define CONF_LINE_MAX 4096 /* bytes of one config-file line, without EOL */
#define CONF_SHOW_MAX 64   /* bytes of a bad value quoted in a message */

/* The defaults must be valid values, or every start would fail. */
#if URSULA_MAX_CORES < 1 || URSULA_MAX_GROUPS < 1
#error "URSULA_MAX_CORES and URSULA_MAX_GROUPS must be at least 1"
#endif
#if URSULA_DEFAULT_PORT < 0 || URSULA_DEFAULT_PORT > 65535
#error "URSULA_DEFAULT_PORT must be in 0..65535"
#endif
#if URSULA_DEFAULT_GROUPS < 1 || URSULA_DEFAULT_GROUPS > URSULA_MAX_GROUPS
#error "URSULA_DEFAULT_GROUPS must be in 1..URSULA_MAX_GROUPS"
#endif
#if URSULA_DEFAULT_LONG_POLL_MS < 1 || URSULA_DEFAULT_LONG_POLL_MS > 3600000
#error "URSULA_DEFAULT_LONG_POLL_MS must be in 1..3600000"
#endif
#if URSULA_DEFAULT_MAX_BODY_BYTES < 1024 || \
    URSULA_DEFAULT_MAX_BODY_BYTES > 2147483648
#error "URSULA_DEFAULT_MAX_BODY_BYTES must be in 1024..2^31"
#endif
#if URSULA_DEFAULT_MAX_BODY_INFLIGHT_BYTES < URSULA_DEFAULT_MAX_BODY_BYTES || \
    URSULA_DEFAULT_MAX_BODY_INFLIGHT_BYTES > 1125899906842624
#error "URSULA_DEFAULT_MAX_BODY_INFLIGHT_BYTES must be in max-body-bytes..2^50"
#endif
#if URSULA_DEFAULT_MAX_CONNECTIONS < 1 || \
    URSULA_DEFAULT_MAX_CONNECTIONS > 1000000
#error "URSULA_DEFAULT_MAX_CONNECTIONS must be in 1..1000000"
#endif
#if URSULA_DEFAULT_IDLE_TIMEOUT_MS < 1 ||          \
    URSULA_DEFAULT_IDLE_TIMEOUT_MS > 86400000 ||   \
    URSULA_DEFAULT_HEADER_TIMEOUT_MS < 1 ||        \
    URSULA_DEFAULT_HEADER_TIMEOUT_MS > 86400000 || \
    URSULA_DEFAULT_BODY_TIMEOUT_MS < 1 ||          \
    URSULA_DEFAULT_BODY_TIMEOUT_MS > 86400000 ||   \
    URSULA_DEFAULT_SSE_KEEPALIVE_MS < 1 ||         \
    URSULA_DEFAULT_SSE_KEEPALIVE_MS > 86400000 ||  \
    URSULA_DEFAULT_SSE_CLOSE_MS < 1 ||             \
    URSULA_DEFAULT_SSE_CLOSE_MS > 86400000
#error "URSULA_DEFAULT_*_TIMEOUT_MS / _KEEPALIVE_MS must be in 1..86400000"
#endif
#if URSULA_DEFAULT_MAX_READ_BYTES < 4096 || \
    URSULA_DEFAULT_MAX_READ_BYTES > 67108864
#error "URSULA_DEFAULT_MAX_READ_BYTES must be in 4096..64 MiB"
#endif
/* The default host (a string literal) must fit listen_host. */
typedef char
    conf_default_host_fits[sizeof(URSULA_DEFAULT_HOST) <= 256 ? 1 : -1];

/* ------------------------------------------------------------ the keys */

enum {
  CONF_T_INT = 1, /* int field, range [min, max] */
  CONF_T_I64,     /* int64_t field, range [min, max] */
  CONF_T_LISTEN,  /* listen_host + listen_port */
  CONF_T_PATH,    /* char[URSULA_PATH_LEN] field; "" allowed */
  CONF_T_LEVEL,   /* int 0..3, or a level name */
  CONF_T_PEER,    /* one more member: N=HOST:PORT (peers[], peer_count) */
  CONF_T_PEER_LISTEN, /* peer_listen_host + peer_listen_port */
  CONF_T_NAME         /* char[65]: 1-64 of [A-Za-z0-9._-] */
};

struct conf_key {
  const char *name;
  const char *alias; /* a second accepted name, or NULL */
  int type;
  size_t off; /* of the field in struct ursula_config */
  uint64_t min, max;
  const char *arg;  /* placeholder in --help */
  const char *help; /* meaning, for --help */
};

#define CONF_OFF(field) offsetof(struct ursula_config, field)

static const struct conf_key conf_keys[] = {
    {"listen", NULL, CONF_T_LISTEN, 0, 0, 65535, "HOST:PORT",
     "address to serve HTTP on; [ADDR]:PORT for IPv6; PORT 0 = any free "
     "port"},
    {"core-count", NULL, CONF_T_INT, CONF_OFF(core_count), 0, URSULA_MAX_CORES,
     "N",
     "event-loop threads, each owning a share of the groups; 0 = one per "
     "online CPU"},
    {"raft-group-count", NULL, CONF_T_INT, CONF_OFF(raft_group_count), 1,
     URSULA_MAX_GROUPS, "N", "groups that stream paths hash to"},
    {"long-poll-timeout-ms", NULL, CONF_T_INT, CONF_OFF(long_poll_timeout_ms),
     1, 3600000, "N", "how long a long-poll read waits before answering 204"},
    {"max-body-bytes", NULL, CONF_T_I64, CONF_OFF(max_body_bytes), 1024,
     2147483648u, "N", "largest request body; larger is answered 413"},
    {"max-body-inflight-bytes", NULL, CONF_T_I64,
     CONF_OFF(max_body_inflight_bytes), 1024, (int64_t)1 << 50, "N",
     "bytes of request bodies being received, all connections together "
     "(a Content-Length counts whole from the head on); a request that "
     "does not fit is answered 503; at least --max-body-bytes"},
    {"max-connections", NULL, CONF_T_INT, CONF_OFF(max_connections), 1, 1000000,
     "N",
     "open client connections, all cores together; more are answered 503 "
     "and closed"},
    {"idle-timeout-ms", NULL, CONF_T_INT, CONF_OFF(idle_timeout_ms), 1,
     86400000, "N", "close a keep-alive connection idle this long"},
    {"header-timeout-ms", NULL, CONF_T_INT, CONF_OFF(header_timeout_ms), 1,
     86400000, "N",
     "close a client that takes longer to send its request head"},
    {"body-timeout-ms", NULL, CONF_T_INT, CONF_OFF(body_timeout_ms), 1,
     86400000, "N",
     "close a client whose request body brings no new bytes for this long "
     "(a body that keeps coming may take longer in all)"},
    {"sse-keepalive-ms", NULL, CONF_T_INT, CONF_OFF(sse_keepalive_ms), 1,
     86400000, "N", "send an SSE comment line when a tail is idle this long"},
    {"sse-close-ms", NULL, CONF_T_INT, CONF_OFF(sse_close_ms), 1, 86400000,
     "N",
     "end an SSE response this long after it began (at an event "
     "boundary); the client reconnects from its last offset"},
    {"max-read-bytes", NULL, CONF_T_I64, CONF_OFF(max_read_bytes), 4096,
     67108864, "N",
     "a catch-up response is read and sent in parts of this size (memory "
     "per reader), and a live response holds at most this much"},
    {"max-catchup-bytes", NULL, CONF_T_I64, CONF_OFF(max_catchup_bytes), 4096,
     (int64_t)1 << 50, "N",
     "a catch-up GET answers everything up to the tail in one response "
     "when that is at most this many bytes; past it, one part, and the "
     "reader follows Stream-Next-Offset"},
    {"max-output-bytes", NULL, CONF_T_I64, CONF_OFF(max_output_bytes), 65536,
     (int64_t)1 << 50, "N",
     "responses queued for slow clients, server-wide: past it, a live "
     "reader or a pipelining client with any unwritten output waits until "
     "it reads (each one holds at most about max-read-bytes otherwise)"},
    {"wal-dir", "raft-log-dir", CONF_T_PATH, CONF_OFF(wal_dir), 0,
     URSULA_PATH_LEN - 1, "DIR",
     "directory of the per-group write-ahead logs: every acknowledged "
     "change is synced there first and recovered on start; empty = in "
     "memory only"},
    {"hot-max-bytes", NULL, CONF_T_I64, CONF_OFF(hot_max_bytes), 65536,
     INT64_C(1099511627776), "N",
     "stream data each group keeps in memory (with --wal-dir); older data "
     "is read back from the WAL"},
    {"snapshot-bytes", NULL, CONF_T_I64, CONF_OFF(snapshot_bytes), 4096,
     INT64_C(1099511627776), "N",
     "WAL bytes a group logs between snapshots of its state (with "
     "--wal-dir); a restart replays at most about this much per group"},
    {"log-level", NULL, CONF_T_LEVEL, CONF_OFF(log_level), 0, 3, "N",
     "0 error, 1 warn, 2 info, 3 debug (the names work too)"},
    {"cold-dir", NULL, CONF_T_PATH, CONF_OFF(cold_dir), 0, URSULA_PATH_LEN - 1,
     "DIR",
     "the cold tier in a local folder: older stream data moves there "
     "from the WAL (needs --wal-dir; not with --s3-endpoint)"},
    {"s3-endpoint", NULL, CONF_T_PATH, CONF_OFF(s3_endpoint), 0,
     URSULA_PATH_LEN - 1, "URL",
     "the cold tier in S3 or an S3-compatible store, e.g. "
     "https://s3.us-east-1.amazonaws.com or http://127.0.0.1:9000 (needs "
     "--wal-dir and --s3-bucket; https needs a TLS build)"},
    {"s3-bucket", NULL, CONF_T_PATH, CONF_OFF(s3_bucket), 0,
     URSULA_PATH_LEN - 1, "NAME", "the bucket of the cold tier"},
    {"s3-region", NULL, CONF_T_PATH, CONF_OFF(s3_region), 0,
     URSULA_PATH_LEN - 1, "REGION", "the region requests are signed for"},
    {"s3-prefix", NULL, CONF_T_PATH, CONF_OFF(s3_prefix), 0,
     URSULA_PATH_LEN - 1, "PREFIX",
     "put before every object key, e.g. \"ursula/node1/\"; one server "
     "per prefix"},
    {"s3-access-key", NULL, CONF_T_PATH, CONF_OFF(s3_access_key), 0,
     URSULA_PATH_LEN - 1, "KEY",
     "access key id; empty = the AWS_ACCESS_KEY_ID environment variable"},
    {"s3-secret-key", NULL, CONF_T_PATH, CONF_OFF(s3_secret_key), 0,
     URSULA_PATH_LEN - 1, "SECRET",
     "secret access key; empty = AWS_SECRET_ACCESS_KEY (prefer the "
     "variable or a config file to a flag)"},
    {"s3-session-token", NULL, CONF_T_PATH, CONF_OFF(s3_session_token), 0, 4095,
     "TOKEN", "session token; empty = AWS_SESSION_TOKEN, if set"},
    {"s3-ca-file", NULL, CONF_T_PATH, CONF_OFF(s3_ca_file), 0,
     URSULA_PATH_LEN - 1, "FILE",
     "PEM file of the certificate authorities trusted for https; empty "
     "= /etc/ssl/certs/ca-certificates.crt"},
    {"cold-flush-age-ms", NULL, CONF_T_I64, CONF_OFF(cold_flush_age_ms), 0,
     INT64_C(31536000000), "N",
     "with a cold tier, also move data older than this (so that small "
     "streams release WAL segments too); 0 = only by size"},
    {"cold-cache-bytes", NULL, CONF_T_I64, CONF_OFF(cold_cache_bytes), 0,
     INT64_C(1099511627776), "N",
     "chunks read back from the cold tier kept in memory (all cores)"},
    {"node-id", NULL, CONF_T_INT, CONF_OFF(node_id), 0, 255, "N",
     "this node's id in a cluster (needs --peer); it must be one of the "
     "--peer entries; 0 = none"},
    {"peer", NULL, CONF_T_PEER, CONF_OFF(peers), 1, 255, "N=HOST:PORT",
     "a member of the cluster and the address it listens on for its "
     "peers; give one per member, this node included (1, 3 or 5 "
     "members: Raft here runs 1, 3 or 5 voters); without any, a single "
     "node; an empty value clears the list"},
    {"peer-listen", NULL, CONF_T_PEER_LISTEN, 0, 0, 65535, "HOST:PORT",
     "listen for peers here instead of at this node's own --peer address "
     "(which the others dial); empty = there"},
    {"cluster-id", NULL, CONF_T_NAME, CONF_OFF(cluster_id), 1, 64, "NAME",
     "the cluster's name, 1-64 of A-Z a-z 0-9 . _ -; nodes of another "
     "cluster refuse each other"},
    {"lost-log", NULL, CONF_T_INT, CONF_OFF(lost_log), 0, 1, "0|1",
     "1: this member's --wal-dir was wiped or replaced; each group of an "
     "empty log neither votes nor campaigns until it holds what the "
     "others committed (a log with data ignores it)"},
};

#define CONF_N_KEYS (sizeof(conf_keys) / sizeof(conf_keys[0]))

static const char *const conf_level_names[4] = {"error", "warn", "info",
                                                "debug"};

/* Find a key by its name or alias; NULL if there is none. */
static const struct conf_key *conf_find(struct str name) {
  size_t i;
  for (i = 0; i < CONF_N_KEYS; i++) {
    if (util_str_eq(name, conf_keys[i].name)) return &conf_keys[i];
    if (conf_keys[i].alias && util_str_eq(name, conf_keys[i].alias))
      return &conf_keys[i];
  }
  return NULL;
}

/* Write a message into err (URSULA_ERRMSG_LEN bytes; may be NULL) and
** return URSULA_EINVAL. */
static int conf_fail(char *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static int conf_fail(char *err, const char *fmt, ...) {
  va_list ap;
  if (err != NULL) {
    va_start(ap, fmt);
    vsnprintf(err, URSULA_ERRMSG_LEN, fmt, ap);
    va_end(ap);
  }
  return URSULA_EINVAL;
}

/* How many bytes of v to quote in a message, and the mark after them. */
static int conf_show_len(const char *v) {
  size_t n = strlen(v);
  return (int)(n > CONF_SHOW_MAX ? CONF_SHOW_MAX : n);
}
static const char *conf_show_more(const char *v) {
  return strlen(v) > CONF_SHOW_MAX ? "..." : "";
}

/* Parse "HOST:PORT" or "[ADDR]:PORT" into out_host[0..256) and *out_port
** (min_port..65535). */
static int conf_parse_hostport(struct str key, const char *v, char *out_host,
                               int *out_port, uint64_t min_port, char *err) {
  const char *host, *port, *sep;
  size_t host_len, i;
  uint64_t p;
  if (v[0] == '[') {
    sep = strchr(v, ']');
    if (sep == NULL || sep[1] != ':')
      return conf_fail(err, "%.*s: expected [ADDR]:PORT, got \"%.*s%s\"",
                       (int)key.len, key.ptr, conf_show_len(v), v,
                       conf_show_more(v));
    host = v + 1;
    host_len = (size_t)(sep - host);
    port = sep + 2;
  } else {
    sep = strrchr(v, ':');
    if (sep == NULL)
      return conf_fail(err, "%.*s: expected HOST:PORT, got \"%.*s%s\"",
                       (int)key.len, key.ptr, conf_show_len(v), v,
                       conf_show_more(v));
    host = v;
    host_len = (size_t)(sep - v);
    port = sep + 1;
    if (memchr(host, ':', host_len) != NULL)
      return conf_fail(err,
                       "%.*s: an IPv6 address needs brackets, as in "
                       "[::1]:4437, got \"%.*s%s\"",
                       (int)key.len, key.ptr, conf_show_len(v), v,
                       conf_show_more(v));
  }
  if (host_len == 0)
    return conf_fail(err, "%.*s: empty host in \"%.*s%s\"", (int)key.len,
                     key.ptr, conf_show_len(v), v, conf_show_more(v));
  if (host_len >= 256)
    return conf_fail(err, "%.*s: host longer than 255 bytes", (int)key.len,
                     key.ptr);
  for (i = 0; i < host_len; i++) {
    unsigned char c = (unsigned char)host[i];
    if (c <= ' ' || c == 0x7f || c == '[' || c == ']')
      return conf_fail(err, "%.*s: bad character in host \"%.*s%s\"",
                       (int)key.len, key.ptr, conf_show_len(v), v,
                       conf_show_more(v));
  }
  if (util_parse_u64(util_str(port), 65535, &p) != 0 || p < min_port)
    return conf_fail(
        err, "%.*s: expected a port from %d to 65535, got \"%.*s%s\"",
        (int)key.len, key.ptr, (int)min_port, conf_show_len(port), port,
        conf_show_more(port));
  memcpy(out_host, host, host_len);
  out_host[host_len] = '\0';
  *out_port = (int)p;
  return URSULA_OK;
}

static int conf_set_listen(struct ursula_config *cfg, struct str key,
                           const char *v, char *err) {
  char host[256];
  int port;
  int rc = conf_parse_hostport(key, v, host, &port, 0, err);
  if (rc != URSULA_OK) return rc;
  memcpy(cfg->listen_host, host, sizeof(host));
  cfg->listen_port = port;
  return URSULA_OK;
}

/* One more member, "N=HOST:PORT": an id 1..255 not given before, at most
** URSULA_MAX_PEERS of them. */
static int conf_add_peer(struct ursula_config *cfg, struct str key,
                         const char *v, char *err) {
  const char *eq = strchr(v, '=');
  struct ursula_peer m;
  uint64_t id;
  int i, rc;
  struct str ids;
  if (v[0] == '\0') { /* clears the list */
    cfg->peer_count = 0;
    return URSULA_OK;
  }
  ids.ptr = v;
  ids.len = eq != NULL ? (size_t)(eq - v) : 0;
  if (eq == NULL || util_parse_u64(ids, 255, &id) != 0 || id < 1)
    return conf_fail(err,
                     "%.*s: expected N=HOST:PORT with a node id N from 1 to "
                     "255, got \"%.*s%s\"",
                     (int)key.len, key.ptr, conf_show_len(v), v,
                     conf_show_more(v));
  memset(&m, 0, sizeof(m));
  m.id = (int)id;
  if ((rc = conf_parse_hostport(key, eq + 1, m.host, &m.port, 1, err)) !=
      URSULA_OK)
    return rc;
  for (i = 0; i < cfg->peer_count; i++)
    if (cfg->peers[i].id == m.id)
      return conf_fail(err, "%.*s: node id %d is given twice", (int)key.len,
                       key.ptr, m.id);
  if (cfg->peer_count >= URSULA_MAX_PEERS)
    return conf_fail(err,
                     "%.*s: more than %d members; Raft here runs 1, 3 or 5 "
                     "voters",
                     (int)key.len, key.ptr, URSULA_MAX_PEERS);
  cfg->peers[cfg->peer_count++] = m;
  return URSULA_OK;
}

static int conf_set_peer_listen(struct ursula_config *cfg, struct str key,
                                const char *v, char *err) {
  char host[256];
  int port = 0, rc;
  host[0] = '\0';
  if (v[0] != '\0' &&
      (rc = conf_parse_hostport(key, v, host, &port, 0, err)) != URSULA_OK)
    return rc;
  memcpy(cfg->peer_listen_host, host, sizeof(host));
  cfg->peer_listen_port = port;
  return URSULA_OK;
}

/* A name of 1..max bytes of [A-Za-z0-9._-]. */
static int conf_set_name(char *field, const struct conf_key *k,
                         struct str key, const char *v, char *err) {
  size_t len = strlen(v), i;
  for (i = 0; i < len; i++) {
    char c = v[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      break;
  }
  if (len < k->min || len > k->max || i < len)
    return conf_fail(err,
                     "%.*s: expected 1 to %u of A-Z a-z 0-9 . _ -, got "
                     "\"%.*s%s\"",
                     (int)key.len, key.ptr, (unsigned)k->max, conf_show_len(v),
                     v, conf_show_more(v));
  memcpy(field, v, len + 1);
  return URSULA_OK;
}

/* Set the key k (spelt `key` by the user) from the C string v. */
static int conf_apply_key(struct ursula_config *cfg, const struct conf_key *k,
                          struct str key, const char *v, char *err) {
  char *field = (char *)cfg + k->off;
  uint64_t n;
  size_t len, i;
  switch (k->type) {
    case CONF_T_LISTEN:
      return conf_set_listen(cfg, key, v, err);
    case CONF_T_PEER:
      return conf_add_peer(cfg, key, v, err);
    case CONF_T_PEER_LISTEN:
      return conf_set_peer_listen(cfg, key, v, err);
    case CONF_T_NAME:
      return conf_set_name(field, k, key, v, err);
    case CONF_T_PATH:
      len = strlen(v);
      if (len > k->max)
        return conf_fail(err, "%.*s: longer than %u bytes", (int)key.len,
                         key.ptr, (unsigned)k->max);
      memcpy(field, v, len + 1);
      return URSULA_OK;
    case CONF_T_LEVEL:
      for (i = 0; i < 4; i++) {
        if (util_str_ieq(util_str(v), conf_level_names[i])) {
          *(int *)(void *)field = (int)i;
          return URSULA_OK;
        }
      }
      if (util_parse_u64(util_str(v), k->max, &n) != 0)
        return conf_fail(err,
                         "%.*s: expected 0 to 3 or error, warn, info, debug, "
                         "got \"%.*s%s\"",
                         (int)key.len, key.ptr, conf_show_len(v), v,
                         conf_show_more(v));
      *(int *)(void *)field = (int)n;
      return URSULA_OK;
    default: /* CONF_T_INT, CONF_T_I64 */
      if (util_parse_u64(util_str(v), k->max, &n) != 0 || n < k->min)
        return conf_fail(err,
                         "%.*s: expected an integer from %llu to %llu, "
                         "got \"%.*s%s\"",
                         (int)key.len, key.ptr, (unsigned long long)k->min,
                         (unsigned long long)k->max, conf_show_len(v), v,
                         conf_show_more(v));
      if (k->type == CONF_T_INT)
        *(int *)(void *)field = (int)n;
      else
        *(int64_t *)(void *)field = (int64_t)n;
      return URSULA_OK;
  }
}

/* ursula_config_set() with the key as a view (argv's "--key=value" is not
** NUL-terminated at the '='). */
static int conf_apply(struct ursula_config *cfg, struct str key, const char *v,
                      char *err) {
  const struct conf_key *k = conf_find(key);
  if (k == NULL) {
    if (util_str_eq(key, "config"))
      return conf_fail(err,
                       "config: only valid as a command-line flag, "
                       "--config FILE");
    return conf_fail(err, "unknown key \"%.*s%s\"",
                     (int)(key.len > CONF_SHOW_MAX ? CONF_SHOW_MAX : key.len),
                     key.ptr, key.len > CONF_SHOW_MAX ? "..." : "");
  }
  if (v == NULL)
    return conf_fail(err, "%.*s: missing value", (int)key.len, key.ptr);
  return conf_apply_key(cfg, k, key, v, err);
}

/* Write the value of k in cfg as a config file would spell it. */
static void conf_format(const struct ursula_config *cfg,
                        const struct conf_key *k, char *out, size_t cap) {
  const char *field = (const char *)cfg + k->off;
  switch (k->type) {
    case CONF_T_LISTEN:
      if (strchr(cfg->listen_host, ':') != NULL)
        snprintf(out, cap, "[%s]:%d", cfg->listen_host, cfg->listen_port);
      else
        snprintf(out, cap, "%s:%d", cfg->listen_host, cfg->listen_port);
      break;
    case CONF_T_PATH:
    case CONF_T_NAME:
      snprintf(out, cap, "%s", field);
      break;
    case CONF_T_PEER: /* one line per member: the first here */
      if (cfg->peer_count == 0)
        snprintf(out, cap, "%s", "");
      else
        snprintf(out, cap, "%d=%s:%d", cfg->peers[0].id, cfg->peers[0].host,
                 cfg->peers[0].port);
      break;
    case CONF_T_PEER_LISTEN:
      if (cfg->peer_listen_host[0] == '\0')
        snprintf(out, cap, "%s", "");
      else
        snprintf(out, cap, "%s:%d", cfg->peer_listen_host,
                 cfg->peer_listen_port);
      break;
    case CONF_T_I64:
      snprintf(out, cap, "%lld",
               (long long)*(const int64_t *)(const void *)field);
      break;
    default: /* CONF_T_INT, CONF_T_LEVEL */
      snprintf(out, cap, "%d", *(const int *)(const void *)field);
      break;
  }
}

/* ------------------------------------------------------------ public */

URSULA_API void ursula_config_init(struct ursula_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  memcpy(cfg->listen_host, URSULA_DEFAULT_HOST, sizeof(URSULA_DEFAULT_HOST));
  cfg->listen_port = URSULA_DEFAULT_PORT;
  cfg->core_count = 0; /* one per online CPU */
  cfg->raft_group_count = URSULA_DEFAULT_GROUPS;
  cfg->long_poll_timeout_ms = URSULA_DEFAULT_LONG_POLL_MS;
  cfg->max_body_bytes = URSULA_DEFAULT_MAX_BODY_BYTES;
  cfg->max_body_inflight_bytes = URSULA_DEFAULT_MAX_BODY_INFLIGHT_BYTES;
  cfg->max_connections = URSULA_DEFAULT_MAX_CONNECTIONS;
  cfg->idle_timeout_ms = URSULA_DEFAULT_IDLE_TIMEOUT_MS;
  cfg->header_timeout_ms = URSULA_DEFAULT_HEADER_TIMEOUT_MS;
  cfg->body_timeout_ms = URSULA_DEFAULT_BODY_TIMEOUT_MS;
  cfg->sse_keepalive_ms = URSULA_DEFAULT_SSE_KEEPALIVE_MS;
  cfg->sse_close_ms = URSULA_DEFAULT_SSE_CLOSE_MS;
  cfg->max_read_bytes = URSULA_DEFAULT_MAX_READ_BYTES;
  cfg->max_catchup_bytes = URSULA_DEFAULT_MAX_CATCHUP_BYTES;
  cfg->max_output_bytes = URSULA_DEFAULT_MAX_OUTPUT_BYTES;
  cfg->hot_max_bytes = URSULA_DEFAULT_HOT_MAX_BYTES;
  snprintf(cfg->s3_region, sizeof(cfg->s3_region), "us-east-1");
  cfg->cold_flush_age_ms = URSULA_DEFAULT_COLD_FLUSH_AGE_MS;
  cfg->cold_cache_bytes = URSULA_DEFAULT_COLD_CACHE_BYTES;
  cfg->snapshot_bytes = URSULA_DEFAULT_SNAPSHOT_BYTES;
  cfg->wal_dir[0] = '\0'; /* in memory only */
  cfg->log_level = LOG_INFO;
  snprintf(cfg->cluster_id, sizeof(cfg->cluster_id), "ursula");
}

/* On failure *cfg is unchanged: every setter validates before it stores. */
URSULA_API int ursula_config_set(struct ursula_config *cfg, const char *key,
                                 const char *value, char *err) {
  if (cfg == NULL || key == NULL)
    return conf_fail(err, "ursula_config_set: no config or no key");
  return conf_apply(cfg, util_str(key), value, err);
}

/* Whether p[0..n) is well-formed UTF-8 (no overlong forms, no surrogates,
** nothing above U+10FFFF). */
static int conf_utf8_ok(const unsigned char *p, size_t n) {
  size_t i = 0, k, extra;
  uint32_t cp, lo;
  while (i < n) {
    unsigned char c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF) {
      extra = 1, cp = c & 0x1F, lo = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      extra = 2, cp = c & 0x0F, lo = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      extra = 3, cp = c & 0x07, lo = 0x10000;
    } else {
      return 0;
    }
    if (n - i - 1 < extra) return 0;
    for (k = 1; k <= extra; k++) {
      if ((p[i + k] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < lo || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    i += extra + 1;
  }
  return 1;
}

/* Check one line (without its line end) and split it in place.  Returns 0
** and sets *key (NULL for a blank or comment line) and *value, or -1 with
** a reason in why. */
static int conf_split_line(char *line, size_t len, char **key, char **value,
                           char *why) {
  char *p = line, *q;
  size_t i;
  *key = *value = NULL;
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)line[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      conf_fail(why, "control character 0x%02x in line", (unsigned)c);
      return -1;
    }
  }
  if (!conf_utf8_ok((const unsigned char *)line, len)) {
    conf_fail(why, "line is not valid UTF-8");
    return -1;
  }
  while (*p == ' ' || *p == '\t') p++;
  if (*p == '\0' || *p == '#') return 0;
  *key = p;
  while (*p != '\0' && *p != ' ' && *p != '\t') p++;
  if (*p != '\0') {
    *p++ = '\0';
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '#') *p = '\0'; /* "key # comment": no value */
  }
  *value = p;
  /* a '#' after a blank starts a comment */
  for (q = p; *q != '\0'; q++) {
    if ((*q == ' ' || *q == '\t') && q[1] == '#') {
      *q = '\0';
      break;
    }
  }
  q = p + strlen(p);
  while (q > p && (q[-1] == ' ' || q[-1] == '\t')) *--q = '\0';
  return 0;
}

/* Lines are read with fgets into a buffer of CONF_LINE_MAX + 2 bytes (the
** line, its '\n', the NUL), so a longer line shows up as a full buffer
** without '\n'.  On any failure *cfg is unchanged. */
URSULA_API int ursula_config_load(struct ursula_config *cfg, const char *path,
                                  char *err) {
  char line[CONF_LINE_MAX + 2];
  char why[URSULA_ERRMSG_LEN];
  struct ursula_config tmp;
  FILE *f;
  int lineno = 0, rc = URSULA_OK;
  if (cfg == NULL || path == NULL || path[0] == '\0')
    return conf_fail(err, "config: no file name");
  f = fopen(path, "r");
  if (f == NULL) {
    conf_fail(err, "%s: cannot open: %s", path, strerror(errno));
    return URSULA_EIO;
  }
  tmp = *cfg;
  while (fgets(line, sizeof(line), f) != NULL) {
    size_t len = strlen(line);
    char *key, *value, *start = line;
    lineno++;
    if (len > 0 && line[len - 1] == '\n') {
      line[--len] = '\0';
    } else if (len == sizeof(line) - 1) {
      rc = conf_fail(why, "line longer than %d bytes", CONF_LINE_MAX);
    } else if (!feof(f) && !ferror(f)) {
      /* fgets stopped neither at '\n' nor at the end: a NUL byte */
      rc = conf_fail(why, "NUL byte in line");
    }
    if (rc == URSULA_OK) {
      if (len > 0 && line[len - 1] == '\r') line[--len] = '\0';
      if (lineno == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
        start += 3; /* byte order mark */
        len -= 3;
      }
      if (conf_split_line(start, len, &key, &value, why) != 0)
        rc = URSULA_EINVAL;
      else if (key != NULL)
        rc = conf_apply(&tmp, util_str(key), value, why);
    }
    if (rc != URSULA_OK) {
      conf_fail(err, "%s:%d: %s", path, lineno, why);
      fclose(f);
      return URSULA_EINVAL;
    }
  }
  if (ferror(f)) {
    conf_fail(err, "%s: read error: %s", path, strerror(errno));
    fclose(f);
    return URSULA_EIO;
  }
  fclose(f);
  *cfg = tmp;
  return URSULA_OK;
}

/* ------------------------------------------------------------ cluster */

/* The cluster settings taken together (each key alone was checked when it
** was set): --peer needs --node-id and the other way round, the node is
** one of the peers, there are 1, 3 or 5 members, and more than one needs
** --wal-dir (a cluster's cold tier, if any, is one store that all its
** nodes share: tier.c). */
URSULA_PRIVATE int conf_check_cluster(const struct ursula_config *cfg,
                                      char *err) {
  int i, found = 0;
  if (cfg->peer_count == 0 && cfg->node_id == 0) {
    if (cfg->peer_listen_host[0] != '\0')
      return conf_fail(err, "peer-listen: needs --peer and --node-id");
    if (cfg->lost_log)
      return conf_fail(err, "lost-log: a single node that lost its log lost "
                            "the data; it needs a cluster (--peer)");
    return URSULA_OK;
  }
  if (cfg->node_id == 0)
    return conf_fail(err,
                     "peer: needs --node-id N (which of the members this "
                     "node is)");
  if (cfg->peer_count == 0)
    return conf_fail(err,
                     "node-id: needs --peer N=HOST:PORT, one per member, "
                     "this node included");
  for (i = 0; i < cfg->peer_count; i++)
    if (cfg->peers[i].id == cfg->node_id) found = 1;
  if (!found)
    return conf_fail(err, "node-id: %d is not among the --peer entries",
                     cfg->node_id);
  if (cfg->peer_count != 1 && cfg->peer_count != 3 && cfg->peer_count != 5)
    return conf_fail(err,
                     "peer: %d members; Raft here runs 1, 3 or 5 voters",
                     cfg->peer_count);
  if (cfg->peer_count > 1 && cfg->wal_dir[0] == '\0')
    return conf_fail(err,
                     "peer: a cluster needs --wal-dir DIR (an append is "
                     "acknowledged once a majority of the nodes hold it in "
                     "their logs)");
  return URSULA_OK;
}

/* ------------------------------------------------------------ flags */

/* The command line is walked three times, so that its meaning does not
** depend on where --config stands:
**   1. syntax: unknown flags, missing values; -h / -V answer at once;
**   2. every --config FILE is loaded, in order;
**   3. every other flag is applied, in order (the last one wins).
** Work is done on a copy; *cfg is written only for CONF_RUN. */
URSULA_PRIVATE int conf_parse_args(struct ursula_config *cfg, int argc,
                                   char **argv, char *err) {
  struct ursula_config tmp;
  char why[URSULA_ERRMSG_LEN];
  int pass, i;
  tmp = *cfg;
  for (pass = 1; pass <= 3; pass++) {
    for (i = 1; i < argc; i++) {
      const char *a = argv[i], *eq, *value = NULL;
      struct str name;
      int is_config;
      if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) return CONF_HELP;
      if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0)
        return CONF_VERSION;
      if (a[0] != '-')
        return conf_fail(err, "unexpected argument \"%.*s%s\"",
                         conf_show_len(a), a, conf_show_more(a));
      if (a[1] != '-')
        return conf_fail(err, "unknown flag \"%.*s%s\"", conf_show_len(a), a,
                         conf_show_more(a));
      name.ptr = a + 2;
      eq = strchr(name.ptr, '=');
      name.len = eq ? (size_t)(eq - name.ptr) : strlen(name.ptr);
      if (eq != NULL) value = eq + 1;
      if (util_str_eq(name, "help") || util_str_eq(name, "version"))
        return conf_fail(err, "--%.*s takes no value", (int)name.len, name.ptr);
      is_config = util_str_eq(name, "config");
      if (!is_config && conf_find(name) == NULL)
        return conf_fail(
            err, "unknown flag \"--%.*s%s\"",
            (int)(name.len > CONF_SHOW_MAX ? CONF_SHOW_MAX : name.len),
            name.ptr, name.len > CONF_SHOW_MAX ? "..." : "");
      if (value == NULL) {
        if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
          return conf_fail(err, "--%.*s needs a value", (int)name.len,
                           name.ptr);
        value = argv[++i];
      }
      if (pass == 2 && is_config) {
        if (ursula_config_load(&tmp, value, why) != URSULA_OK)
          return conf_fail(err, "%s", why);
      } else if (pass == 3 && !is_config) {
        if (conf_apply(&tmp, name, value, why) != URSULA_OK)
          return conf_fail(err, "%s", why);
      }
    }
  }
  if (conf_check_cluster(&tmp, why) != URSULA_OK)
    return conf_fail(err, "%s", why);
  *cfg = tmp;
  return CONF_RUN;
}

/* Print text word-wrapped to 80 columns, each line indented by 8. */
static void conf_print_wrapped(FILE *f, const char *text) {
  const char *p = text;
  while (*p != '\0') {
    size_t n = strlen(p), cut = n;
    if (n > 72) {
      cut = 72;
      while (cut > 0 && p[cut] != ' ') cut--;
      if (cut == 0) cut = 72; /* one long word: break it */
    }
    fprintf(f, "        %.*s\n", (int)cut, p);
    p += cut;
    while (*p == ' ') p++;
  }
}

/* Every flag, with its value placeholder, meaning, range and default. */
URSULA_PRIVATE void conf_print_help(FILE *f) {
  struct ursula_config def;
  char val[URSULA_PATH_LEN + 300];
  size_t i;
  ursula_config_init(&def);
  fprintf(f,
          "usage: ursula [--config FILE] [--KEY VALUE | --KEY=VALUE]...\n"
          "\n"
          "Serve Durable Streams over HTTP/1.1.  Every flag but --config is\n"
          "also a config-file key (the name without \"--\"); --config FILE\n"
          "is loaded first, wherever it stands, and the other flags then\n"
          "override it in order.\n"
          "\n"
          "  --config FILE\n"
          "        load a config file of `key value` lines (# comments)\n");
  for (i = 0; i < CONF_N_KEYS; i++) {
    const struct conf_key *k = &conf_keys[i];
    fprintf(f, "  --%s %s\n", k->name, k->arg);
    conf_print_wrapped(f, k->help);
    if (k->alias) fprintf(f, "        also spelt --%s\n", k->alias);
    conf_format(&def, k, val, sizeof(val));
    switch (k->type) {
      case CONF_T_LISTEN:
        fprintf(f, "        port 0..65535; default %s\n", val);
        break;
      case CONF_T_PATH:
        fprintf(f, "        at most %u bytes; default %s\n", (unsigned)k->max,
                val[0]                        ? val
                : k->off == CONF_OFF(wal_dir) ? "(none: in memory)"
                                              : "(none)");
        break;
      case CONF_T_LEVEL:
        fprintf(f,
                "        0..3 or error, warn, info, debug; default %s (%s)\n",
                val, conf_level_names[def.log_level & 3]);
        break;
      case CONF_T_PEER:
        fprintf(f, "        node id 1..255; repeated; default none (a single "
                   "node)\n");
        break;
      case CONF_T_PEER_LISTEN:
        fprintf(f, "        default this node's own --peer address\n");
        break;
      case CONF_T_NAME:
        fprintf(f, "        default %s\n", val);
        break;
      default:
        fprintf(f, "        %llu..%llu; default %s%s\n",
                (unsigned long long)k->min, (unsigned long long)k->max, val,
                k->off == CONF_OFF(core_count) && def.core_count == 0
                    ? " (online CPUs)"
                : k->off == CONF_OFF(node_id) ? " (none)"
                                              : "");
        break;
    }
  }
  fprintf(f,
          "  -h, --help\n"
          "        print this help and exit\n"
          "  -V, --version\n"
          "        print the version and the compile-time options and exit\n");
}

URSULA_PRIVATE void conf_print_version(FILE *f) {
  fprintf(f, "ursula %s\n%s\n", URSULA_VERSION, ursula_compile_options());
}

/* ------------------------------------------------------------ options */

#define CONF_STR_(x) #x
#define CONF_STR(x) CONF_STR_(x)
#define CONF_OPT(name) " " #name "=" CONF_STR(name)

/* Every option of src/config.h, built by the preprocessor (add new ones
** here).  The string-valued URSULA_DEFAULT_HOST is pasted as is. */
URSULA_API const char *ursula_compile_options(void) {
  /* clang-format off */
  static const char conf_options[] =
      "URSULA_VERSION=" URSULA_VERSION
      CONF_OPT(URSULA_ENABLE_EPOLL)
      CONF_OPT(URSULA_ENABLE_KQUEUE)
      CONF_OPT(URSULA_ENABLE_THREADS)
      CONF_OPT(URSULA_ENABLE_TLS)
      CONF_OPT(URSULA_ENABLE_LOG)
      CONF_OPT(URSULA_ENABLE_ASSERT)
      CONF_OPT(URSULA_ENABLE_MAIN)
      CONF_OPT(URSULA_MAX_CORES)
      CONF_OPT(URSULA_MAX_GROUPS)
      CONF_OPT(URSULA_MAX_HEADERS)
      CONF_OPT(URSULA_MAX_HEADER_BYTES)
      CONF_OPT(URSULA_MAX_PATH_BYTES)
      CONF_OPT(URSULA_MAX_JSON_DEPTH)
      CONF_OPT(URSULA_MAX_PRODUCER_ID)
      CONF_OPT(URSULA_MAX_STREAM_SEQ)
      CONF_OPT(URSULA_SYNC_THREADS)
      " URSULA_DEFAULT_HOST=" URSULA_DEFAULT_HOST
      CONF_OPT(URSULA_DEFAULT_PORT)
      CONF_OPT(URSULA_DEFAULT_GROUPS)
      CONF_OPT(URSULA_DEFAULT_LONG_POLL_MS)
      CONF_OPT(URSULA_DEFAULT_MAX_BODY_BYTES)
      CONF_OPT(URSULA_DEFAULT_MAX_BODY_INFLIGHT_BYTES)
      CONF_OPT(URSULA_DEFAULT_MAX_CONNECTIONS)
      CONF_OPT(URSULA_DEFAULT_IDLE_TIMEOUT_MS)
      CONF_OPT(URSULA_DEFAULT_HEADER_TIMEOUT_MS)
      CONF_OPT(URSULA_DEFAULT_BODY_TIMEOUT_MS)
      CONF_OPT(URSULA_DEFAULT_SSE_KEEPALIVE_MS)
      CONF_OPT(URSULA_DEFAULT_SSE_CLOSE_MS)
      CONF_OPT(URSULA_DEFAULT_MAX_READ_BYTES)
      CONF_OPT(URSULA_DEFAULT_HOT_MAX_BYTES)
      CONF_OPT(URSULA_DEFAULT_SNAPSHOT_BYTES);
  /* clang-format on */
  return conf_options;
}

#undef CONF_STR_
#undef CONF_STR
#undef CONF_OPT
#undef CONF_OFF
#undef CONF_N_KEYS
#undef CONF_LINE_MAX
#undef CONF_SHOW_MAX
/**** End src/conf.c ****/
/**** Begin src/crypto.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/crypto.c"
#endif
/*
** crypto.c -- SHA-256 and HMAC-SHA256, the hashes SigV4 signs with.
**
** The default build has no crypto library, so SHA-256 (FIPS 180-4) is
** here; with URSULA_ENABLE_TLS the build links BearSSL, whose SHA-256 is
** used instead, behind the same functions.  test/unit_crypto.c runs the
** FIPS 180-4 and RFC 4231 vectors against whichever is built.
**
** SHA-256 in brief: the message is padded with one 1 bit, zeros, and its
** length in bits as a 64-bit big-endian number, to a multiple of 64
** bytes; each 64-byte block updates eight 32-bit words of state through
** 64 rounds; the digest is the final state, big-endian.
**
** HMAC (RFC 2104) with a 64-byte block: a key longer than 64 bytes is
** replaced by its hash; then H((K ^ opad) || H((K ^ ipad) || message)).
*/


#if URSULA_ENABLE_TLS

URSULA_PRIVATE void crypto_sha256_init(struct crypto_sha256 *c) {
  br_sha256_init(&c->br);
}

URSULA_PRIVATE void crypto_sha256_update(struct crypto_sha256 *c, const void *p,
                                         size_t n) {
  br_sha256_update(&c->br, p, n);
}

URSULA_PRIVATE void crypto_sha256_final(struct crypto_sha256 *c,
                                        unsigned char out[32]) {
  br_sha256_out(&c->br, out);
}

#else /* our own SHA-256 */

/* The first 32 bits of the fractional parts of the cube roots of the
** first 64 primes (FIPS 180-4, 4.2.2). */
static const uint32_t crypto_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
    0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define CRYPTO_ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

/* Update the state h with one 64-byte block. */
static void crypto_block(uint32_t h[8], const unsigned char *p) {
  uint32_t w[64], a, b, c, d, e, f, g, k, t1, t2;
  int i;
  for (i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
           (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
  for (i = 16; i < 64; i++) {
    uint32_t s0 = CRYPTO_ROTR(w[i - 15], 7) ^ CRYPTO_ROTR(w[i - 15], 18) ^
                  (w[i - 15] >> 3);
    uint32_t s1 = CRYPTO_ROTR(w[i - 2], 17) ^ CRYPTO_ROTR(w[i - 2], 19) ^
                  (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  a = h[0], b = h[1], c = h[2], d = h[3];
  e = h[4], f = h[5], g = h[6], k = h[7];
  for (i = 0; i < 64; i++) {
    t1 = k + (CRYPTO_ROTR(e, 6) ^ CRYPTO_ROTR(e, 11) ^ CRYPTO_ROTR(e, 25)) +
         ((e & f) ^ (~e & g)) + crypto_k[i] + w[i];
    t2 = (CRYPTO_ROTR(a, 2) ^ CRYPTO_ROTR(a, 13) ^ CRYPTO_ROTR(a, 22)) +
         ((a & b) ^ (a & c) ^ (b & c));
    k = g, g = f, f = e, e = d + t1;
    d = c, c = b, b = a, a = t1 + t2;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d;
  h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

URSULA_PRIVATE void crypto_sha256_init(struct crypto_sha256 *c) {
  /* the fractional parts of the square roots of the first 8 primes */
  static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372,
                                 0xa54ff53a, 0x510e527f, 0x9b05688c,
                                 0x1f83d9ab, 0x5be0cd19};
  memcpy(c->h, h0, sizeof(h0));
  c->n_bytes = 0;
  c->n_block = 0;
}

URSULA_PRIVATE void crypto_sha256_update(struct crypto_sha256 *c, const void *p,
                                         size_t n) {
  const unsigned char *q = (const unsigned char *)p;
  c->n_bytes += n;
  if (c->n_block > 0) { /* fill the partial block first */
    size_t take = 64 - c->n_block < n ? 64 - c->n_block : n;
    memcpy(c->block + c->n_block, q, take);
    c->n_block += take;
    q += take;
    n -= take;
    if (c->n_block < 64) return;
    crypto_block(c->h, c->block);
    c->n_block = 0;
  }
  for (; n >= 64; q += 64, n -= 64) crypto_block(c->h, q);
  memcpy(c->block, q, n);
  c->n_block = n;
}

URSULA_PRIVATE void crypto_sha256_final(struct crypto_sha256 *c,
                                        unsigned char out[32]) {
  uint64_t bits = c->n_bytes * 8;
  int i;
  c->block[c->n_block++] = 0x80;
  if (c->n_block > 56) { /* no room for the length: one more block */
    memset(c->block + c->n_block, 0, 64 - c->n_block);
    crypto_block(c->h, c->block);
    c->n_block = 0;
  }
  memset(c->block + c->n_block, 0, 56 - c->n_block);
  for (i = 0; i < 8; i++)
    c->block[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
  crypto_block(c->h, c->block);
  for (i = 0; i < 8; i++) {
    out[4 * i] = (unsigned char)(c->h[i] >> 24);
    out[4 * i + 1] = (unsigned char)(c->h[i] >> 16);
    out[4 * i + 2] = (unsigned char)(c->h[i] >> 8);
    out[4 * i + 3] = (unsigned char)c->h[i];
  }
}

#endif /* URSULA_ENABLE_TLS */

URSULA_PRIVATE void crypto_sha256(const void *p, size_t n,
                                  unsigned char out[32]) {
  struct crypto_sha256 c;
  crypto_sha256_init(&c);
  crypto_sha256_update(&c, p, n);
  crypto_sha256_final(&c, out);
}

URSULA_PRIVATE void crypto_hmac_sha256(const void *key, size_t key_len,
                                       const void *msg, size_t n,
                                       unsigned char out[32]) {
  unsigned char k[64], pad[64], inner[32];
  struct crypto_sha256 c;
  size_t i;
  memset(k, 0, sizeof(k));
  if (key_len > 64)
    crypto_sha256(key, key_len, k);
  else if (key_len > 0)
    memcpy(k, key, key_len);
  for (i = 0; i < 64; i++) pad[i] = (unsigned char)(k[i] ^ 0x36);
  crypto_sha256_init(&c);
  crypto_sha256_update(&c, pad, 64);
  crypto_sha256_update(&c, msg, n);
  crypto_sha256_final(&c, inner);
  for (i = 0; i < 64; i++) pad[i] = (unsigned char)(k[i] ^ 0x5c);
  crypto_sha256_init(&c);
  crypto_sha256_update(&c, pad, 64);
  crypto_sha256_update(&c, inner, 32);
  crypto_sha256_final(&c, out);
}

URSULA_PRIVATE void crypto_hex(const void *p, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  const unsigned char *q = (const unsigned char *)p;
  size_t i;
  for (i = 0; i < n; i++) {
    out[2 * i] = digits[q[i] >> 4];
    out[2 * i + 1] = digits[q[i] & 15];
  }
  out[2 * n] = '\0';
}
/**** End src/crypto.c ****/
/**** Begin src/sigv4.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/sigv4.c"
#endif
/*
** sigv4.c -- AWS Signature Version 4, header form, as a pure function.
**
** The caller passes everything, the date included, so the function is
** checked against the AWS test-suite cases unchanged (test/vectors/sigv4).
** The steps, each a string built from the one before:
**
**   1. CANONICAL REQUEST, lines joined by "\n":
**        method
**        canonical path    S3: the path exactly as sent (already encoded
**                          once, see sigv4_uri_encode); other services:
**                          "." and ".." segments and repeated "/" removed
**                          (when asked), then every byte encoded
**        canonical query   each name=value pair decoded and encoded again,
**                          sorted by name, then value; "name=" when empty;
**                          joined by "&"
**        canonical headers one "name:value\n" per header name, names in
**                          lowercase and sorted, values trimmed with inner
**                          runs of blanks as one space, repeated names
**                          joined by "," in the order given
**        signed headers    the names, joined by ";"
**        payload hash      hex SHA-256 of the body, or "UNSIGNED-PAYLOAD"
**   2. STRING TO SIGN: "AWS4-HMAC-SHA256\n" date-time "\n" scope "\n"
**      hex SHA-256 of the canonical request; scope = "YYYYMMDD/region/
**      service/aws4_request".
**   3. SIGNING KEY: HMAC chain over "AWS4" + secret: date, region,
**      service, "aws4_request".
**   4. SIGNATURE: hex HMAC(signing key, string to sign).
**   Authorization: "AWS4-HMAC-SHA256 Credential=AK/scope,
**   SignedHeaders=..., Signature=...".
**
** URI encoding: the unreserved characters A-Z a-z 0-9 - . _ ~ stay, every
** other byte is %XX in uppercase hex.
*/


#define SIGV4_MAX_HEADERS 64

URSULA_PRIVATE int sigv4_uri_encode(struct buf *out, const void *p, size_t n,
                                    int keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  const unsigned char *q = (const unsigned char *)p;
  size_t i;
  int rc = URSULA_OK;
  for (i = 0; i < n && rc == URSULA_OK; i++) {
    unsigned char c = q[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
        (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
        c == '~' || (c == '/' && keep_slash)) {
      rc = buf_append(out, &q[i], 1);
    } else {
      char e[3];
      e[0] = '%';
      e[1] = hex[c >> 4];
      e[2] = hex[c & 15];
      rc = buf_append(out, e, 3);
    }
  }
  return rc;
}

static int sigv4_hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decode s into out ("+" stays "+"). */
static int sigv4_decode(struct str s, struct buf *out) {
  size_t i;
  for (i = 0; i < s.len; i++) {
    char c = s.ptr[i];
    if (c == '%' && i + 2 < s.len && sigv4_hexval(s.ptr[i + 1]) >= 0 &&
        sigv4_hexval(s.ptr[i + 2]) >= 0) {
      c = (char)(sigv4_hexval(s.ptr[i + 1]) * 16 + sigv4_hexval(s.ptr[i + 2]));
      i += 2;
    }
    if (buf_append(out, &c, 1) != URSULA_OK) return URSULA_ENOMEM;
  }
  return URSULA_OK;
}

/* ------------------------------------------------------------ the path */

/* The path with "." and ".." segments and empty segments removed (RFC
** 3986 5.2.4, as the non-S3 services do); a trailing "/" stays. */
static int sigv4_normalize(struct str path, struct buf *out) {
  size_t i = 0, start;
  out->len = 0;
  while (i < path.len) {
    struct str seg;
    while (i < path.len && path.ptr[i] == '/') i++;
    start = i;
    while (i < path.len && path.ptr[i] != '/') i++;
    seg.ptr = path.ptr + start;
    seg.len = i - start;
    if (seg.len == 0 || util_str_eq(seg, ".")) continue;
    if (util_str_eq(seg, "..")) { /* drop the last segment */
      while (out->len > 0 && out->ptr[out->len - 1] != '/') out->len--;
      if (out->len > 0) out->len--;
      continue;
    }
    if (buf_append(out, "/", 1) || buf_append(out, seg.ptr, seg.len))
      return URSULA_ENOMEM;
  }
  if (out->len == 0 || (path.len > 0 && path.ptr[path.len - 1] == '/'))
    return buf_append(out, "/", 1);
  return URSULA_OK;
}

static int sigv4_path(const struct sigv4_request *r, struct buf *out) {
  struct buf norm;
  int rc;
  if (r->path.len == 0) return buf_append(out, "/", 1);
  if (r->s3) return buf_append(out, r->path.ptr, r->path.len);
  memset(&norm, 0, sizeof(norm));
  rc = r->normalize ? sigv4_normalize(r->path, &norm)
                    : buf_append(&norm, r->path.ptr, r->path.len);
  if (rc == URSULA_OK) rc = sigv4_uri_encode(out, norm.ptr, norm.len, 1);
  buf_free(&norm);
  return rc;
}

/* ------------------------------------------------------------ the query */

struct sigv4_param {
  size_t name, name_len, value, value_len; /* offsets into one buffer */
};

/* Whether parameter x sorts before y (by name, then value, bytewise), both
** held in base.  No qsort here: its comparison could see base only
** through file-scope state, and several threads sign at once. */
static int sigv4_param_less(const char *base, const struct sigv4_param *x,
                            const struct sigv4_param *y) {
  size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
  int c = memcmp(base + x->name, base + y->name, n);
  if (c != 0) return c < 0;
  if (x->name_len != y->name_len) return x->name_len < y->name_len;
  n = x->value_len < y->value_len ? x->value_len : y->value_len;
  c = memcmp(base + x->value, base + y->value, n);
  if (c != 0) return c < 0;
  return x->value_len < y->value_len;
}

/* Sort p[0..n) with sigv4_param_less (insertion sort: n <= 128). */
static void sigv4_sort_params(const char *base, struct sigv4_param *p,
                              size_t n) {
  size_t i, j;
  for (i = 1; i < n; i++) {
    struct sigv4_param t = p[i];
    for (j = i; j > 0 && sigv4_param_less(base, &t, &p[j - 1]); j--)
      p[j] = p[j - 1];
    p[j] = t;
  }
}

/* Append the encoded form of the decoded s to enc; set *off, *len. */
static int sigv4_reencode(struct str s, struct buf *tmp, struct buf *enc,
                          size_t *off, size_t *len) {
  tmp->len = 0;
  if (sigv4_decode(s, tmp) != URSULA_OK) return URSULA_ENOMEM;
  *off = enc->len;
  if (sigv4_uri_encode(enc, tmp->ptr, tmp->len, 0) != URSULA_OK)
    return URSULA_ENOMEM;
  *len = enc->len - *off;
  return URSULA_OK;
}

static int sigv4_query(struct str q, struct buf *out) {
  struct sigv4_param params[128];
  struct buf enc, tmp;
  size_t n = 0, i = 0, k;
  int rc = URSULA_OK;
  memset(&enc, 0, sizeof(enc));
  memset(&tmp, 0, sizeof(tmp));
  while (i < q.len && rc == URSULA_OK) {
    struct str pair, name, value;
    size_t start = i, eq;
    while (i < q.len && q.ptr[i] != '&') i++;
    pair.ptr = q.ptr + start;
    pair.len = i - start;
    i++; /* the '&' */
    if (pair.len == 0) continue;
    if (n == sizeof(params) / sizeof(params[0])) {
      rc = URSULA_EINVAL;
      break;
    }
    for (eq = 0; eq < pair.len && pair.ptr[eq] != '='; eq++) {
    }
    name.ptr = pair.ptr;
    name.len = eq;
    value.ptr = pair.ptr + (eq < pair.len ? eq + 1 : eq);
    value.len = eq < pair.len ? pair.len - eq - 1 : 0;
    rc = sigv4_reencode(name, &tmp, &enc, &params[n].name, &params[n].name_len);
    if (rc == URSULA_OK)
      rc = sigv4_reencode(value, &tmp, &enc, &params[n].value,
                          &params[n].value_len);
    n++;
  }
  if (rc == URSULA_OK) {
    sigv4_sort_params(enc.ptr, params, n);
    for (k = 0; k < n && rc == URSULA_OK; k++) {
      if (k > 0) rc |= buf_append(out, "&", 1);
      rc |= buf_append(out, enc.ptr + params[k].name, params[k].name_len);
      rc |= buf_append(out, "=", 1);
      rc |= buf_append(out, enc.ptr + params[k].value, params[k].value_len);
    }
  }
  buf_free(&enc);
  buf_free(&tmp);
  return rc;
}

/* ------------------------------------------------------------ headers */

static int sigv4_same_name(const struct http_header *a,
                           const struct http_header *b) {
  size_t i;
  if (a->name.len != b->name.len) return 0;
  for (i = 0; i < a->name.len; i++) {
    int x = a->name.ptr[i], y = b->name.ptr[i];
    if (x >= 'A' && x <= 'Z') x += 32;
    if (y >= 'A' && y <= 'Z') y += 32;
    if (x != y) return 0;
  }
  return 1;
}

static int sigv4_header_cmp(const void *a, const void *b) {
  const struct http_header *x = *(const struct http_header *const *)a;
  const struct http_header *y = *(const struct http_header *const *)b;
  size_t n = x->name.len < y->name.len ? x->name.len : y->name.len, i;
  for (i = 0; i < n; i++) {
    int cx = x->name.ptr[i], cy = y->name.ptr[i];
    if (cx >= 'A' && cx <= 'Z') cx += 32;
    if (cy >= 'A' && cy <= 'Z') cy += 32;
    if (cx != cy) return cx - cy;
  }
  if (x->name.len != y->name.len) return x->name.len < y->name.len ? -1 : 1;
  return x < y ? -1 : (x > y); /* the order given, for repeated names */
}

/* value trimmed, every run of blanks (line breaks too) as one space */
static int sigv4_header_value(struct str v, struct buf *out) {
  size_t i;
  int space = 0, any = 0;
  for (i = 0; i < v.len; i++) {
    char c = v.ptr[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      space = any;
      continue;
    }
    if (space && buf_append(out, " ", 1)) return URSULA_ENOMEM;
    if (buf_append(out, &c, 1)) return URSULA_ENOMEM;
    space = 0;
    any = 1;
  }
  return URSULA_OK;
}

static int sigv4_lower(struct buf *out, struct str s) {
  size_t i;
  for (i = 0; i < s.len; i++) {
    char c = s.ptr[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
    if (buf_append(out, &c, 1)) return URSULA_ENOMEM;
  }
  return URSULA_OK;
}

/* Append the canonical headers to creq and the signed-headers list to
** signed_list. */
static int sigv4_headers(const struct sigv4_request *r, struct buf *creq,
                         struct buf *signed_list) {
  const struct http_header *sorted[SIGV4_MAX_HEADERS];
  size_t i;
  int rc = URSULA_OK;
  if (r->n_headers > SIGV4_MAX_HEADERS) return URSULA_EINVAL;
  for (i = 0; i < r->n_headers; i++) sorted[i] = &r->headers[i];
  qsort(sorted, r->n_headers, sizeof(sorted[0]), sigv4_header_cmp);
  for (i = 0; i < r->n_headers && rc == URSULA_OK; i++) {
    int same = i > 0 && sigv4_same_name(sorted[i - 1], sorted[i]);
    if (same) {    /* the same name again: its value joins with ',' */
      creq->len--; /* the "\n" */
      rc |= buf_append(creq, ",", 1);
    } else {
      if (i > 0) rc |= buf_append(signed_list, ";", 1);
      rc |= sigv4_lower(signed_list, sorted[i]->name);
      rc |= sigv4_lower(creq, sorted[i]->name);
      rc |= buf_append(creq, ":", 1);
    }
    rc |= sigv4_header_value(sorted[i]->value, creq);
    rc |= buf_append(creq, "\n", 1);
  }
  return rc ? URSULA_ENOMEM : URSULA_OK;
}

/* ------------------------------------------------------------ signing */

URSULA_PRIVATE int sigv4_sign(const struct sigv4_request *r, struct buf *auth,
                              struct buf *creq_out, struct buf *sts_out) {
  struct buf creq, sts, list, key;
  unsigned char h[32], k[32];
  char hex[65], date[9];
  size_t i;
  int rc = URSULA_OK;
  if (r->amz_date.len != 16 || r->amz_date.ptr[8] != 'T') return URSULA_EINVAL;
  memcpy(date, r->amz_date.ptr, 8);
  date[8] = '\0';
  memset(&creq, 0, sizeof(creq));
  memset(&sts, 0, sizeof(sts));
  memset(&list, 0, sizeof(list));
  memset(&key, 0, sizeof(key));
  /* 1. the canonical request */
  rc |= buf_append(&creq, r->method.ptr, r->method.len);
  rc |= buf_append(&creq, "\n", 1);
  rc |= sigv4_path(r, &creq);
  rc |= buf_append(&creq, "\n", 1);
  if (rc == URSULA_OK) rc = sigv4_query(r->query, &creq);
  rc |= buf_append(&creq, "\n", 1);
  if (rc == URSULA_OK) rc = sigv4_headers(r, &creq, &list);
  rc |= buf_append(&creq, "\n", 1);
  rc |= buf_append(&creq, list.ptr, list.len);
  rc |= buf_append(&creq, "\n", 1);
  rc |= buf_append(&creq, r->payload_hash.ptr, r->payload_hash.len);
  /* 2. the string to sign */
  crypto_sha256(creq.ptr, creq.len, h);
  crypto_hex(h, 32, hex);
  rc |=
      buf_printf(&sts, "AWS4-HMAC-SHA256\n%.16s\n%s/%.*s/%.*s/aws4_request\n%s",
                 r->amz_date.ptr, date, (int)r->region.len, r->region.ptr,
                 (int)r->service.len, r->service.ptr, hex);
  /* 3. the signing key */
  rc |= buf_append(&key, "AWS4", 4);
  rc |= buf_append(&key, r->secret_key.ptr, r->secret_key.len);
  if (rc == URSULA_OK) {
    crypto_hmac_sha256(key.ptr, key.len, date, 8, k);
    crypto_hmac_sha256(k, 32, r->region.ptr, r->region.len, k);
    crypto_hmac_sha256(k, 32, r->service.ptr, r->service.len, k);
    crypto_hmac_sha256(k, 32, "aws4_request", 12, k);
    /* 4. the signature */
    crypto_hmac_sha256(k, 32, sts.ptr, sts.len, h);
    crypto_hex(h, 32, hex);
    rc = buf_printf(auth,
                    "AWS4-HMAC-SHA256 Credential=%.*s/%s/%.*s/%.*s/"
                    "aws4_request, SignedHeaders=%.*s, Signature=%s",
                    (int)r->access_key.len, r->access_key.ptr, date,
                    (int)r->region.len, r->region.ptr, (int)r->service.len,
                    r->service.ptr, (int)list.len, list.ptr, hex);
  }
  if (rc == URSULA_OK && creq_out != NULL)
    rc = buf_append(creq_out, creq.ptr, creq.len);
  if (rc == URSULA_OK && sts_out != NULL)
    rc = buf_append(sts_out, sts.ptr, sts.len);
  for (i = 0; i < key.len; i++) key.ptr[i] = 0; /* the secret */
  memset(k, 0, sizeof(k));
  buf_free(&creq);
  buf_free(&sts);
  buf_free(&list);
  buf_free(&key);
  return rc == URSULA_OK       ? URSULA_OK
         : rc == URSULA_EINVAL ? URSULA_EINVAL
                               : URSULA_ENOMEM;
}
/**** End src/sigv4.c ****/
/**** Begin src/tls.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/tls.c"
#endif
/*
** tls.c -- a blocking client connection with timeouts: plain TCP, or TLS
** through BearSSL when built with URSULA_ENABLE_TLS (make TLS=1).
**
** The S3 client (s3.c) runs on its own threads, so blocking I/O is what
** it wants; every step is bounded by the connection's timeout instead:
** connect() runs non-blocking under poll(), and reads and writes carry
** SO_RCVTIMEO / SO_SNDTIMEO.  A timeout fails the connection for good
** (the caller opens a new one to retry).
**
** TLS: BearSSL's full client profile (TLS 1.2; BearSSL has no 1.3) over
** the socket, with the host name sent as SNI and checked against the
** server's certificate, which must chain to one of the trust anchors
** loaded at run time from a PEM bundle (tls_anchors_load).
*/


#ifdef MSG_NOSIGNAL
#define TLS_SEND_FLAGS MSG_NOSIGNAL
#else
#define TLS_SEND_FLAGS 0 /* SIGPIPE is ignored by the server instead */
#endif

struct tls_conn {
  int fd;
#if URSULA_ENABLE_TLS
  int secure;
  br_ssl_client_context sc;
  br_x509_minimal_context xc;
  br_sslio_context io;
  unsigned char iobuf[BR_SSL_BUFSIZE_BIDI];
#endif
};

/* ------------------------------------------------------------ TCP */

/* Connect fd to ai within timeout_ms; 0 or -1 with errno. */
static int tls_tcp_connect(int fd, const struct addrinfo *ai, int timeout_ms) {
  struct pollfd p;
  int e = 0, flags = fcntl(fd, F_GETFL, 0);
  socklen_t len = sizeof(e);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return -1;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) return -1;
    p.fd = fd;
    p.events = POLLOUT;
    p.revents = 0;
    if (poll(&p, 1, timeout_ms) != 1) {
      errno = ETIMEDOUT;
      return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) return -1;
    if (e != 0) {
      errno = e;
      return -1;
    }
  }
  return fcntl(fd, F_SETFL, flags);
}

static int tls_tcp_open(const char *host, int port, int timeout_ms, char *err) {
  struct addrinfo hints, *res = NULL, *ai;
  struct timeval tv;
  char service[16];
  int fd = -1, rc, one = 1, e = 0;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(service, sizeof(service), "%d", port);
  rc = getaddrinfo(host, service, &hints, &res);
  if (rc != 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "%.100s: %s", host, gai_strerror(rc));
    return -1;
  }
  for (ai = res; ai != NULL; ai = ai->ai_next) { /* each address in turn */
    fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) {
      e = errno;
      continue;
    }
    os_set_cloexec(fd);
    if (tls_tcp_connect(fd, ai, timeout_ms) == 0) break;
    e = errno;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "connecting to %.100s:%d: %s", host, port,
             strerror(e));
    return -1;
  }
  tv.tv_sec = timeout_ms / 1000;
  tv.tv_usec = (timeout_ms % 1000) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

static long tls_tcp_read(int fd, void *p, size_t n) {
  for (;;) {
    ssize_t k = recv(fd, p, n, 0);
    if (k >= 0) return (long)k;
    if (errno != EINTR) return -1;
  }
}

static int tls_tcp_write(int fd, const void *p, size_t n) {
  const char *q = (const char *)p;
  while (n > 0) {
    ssize_t k = send(fd, q, n, TLS_SEND_FLAGS);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    q += k;
    n -= (size_t)k;
  }
  return 0;
}

/* ------------------------------------------------------------ TLS */

#if URSULA_ENABLE_TLS

struct tls_anchors {
  br_x509_trust_anchor *ta;
  size_t n, cap;
};

static void tls_buf_push(void *ctx, const void *p, size_t n) {
  buf_append((struct buf *)ctx, p, n);
}

static unsigned char *tls_copy(const void *p, size_t n) {
  unsigned char *q = (unsigned char *)URSULA_MALLOC(n ? n : 1);
  if (q != NULL && n > 0) memcpy(q, p, n);
  return q;
}

/* Turn one DER certificate into a trust anchor (name, CA flag, and a deep
** copy of its key); certificates with other key types are skipped. */
static int tls_add_anchor(struct tls_anchors *a, const struct buf *der) {
  br_x509_decoder_context dc;
  br_x509_trust_anchor *ta;
  br_x509_pkey *pk;
  struct buf dn;
  int rc = URSULA_OK;
  memset(&dn, 0, sizeof(dn));
  br_x509_decoder_init(&dc, tls_buf_push, &dn);
  br_x509_decoder_push(&dc, der->ptr, der->len);
  pk = br_x509_decoder_get_pkey(&dc);
  if (pk == NULL ||
      (pk->key_type != BR_KEYTYPE_RSA && pk->key_type != BR_KEYTYPE_EC)) {
    buf_free(&dn);
    return URSULA_OK; /* not usable as an anchor: skip it */
  }
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 64;
    ta = (br_x509_trust_anchor *)URSULA_REALLOC(a->ta, cap * sizeof(*ta));
    if (ta == NULL) {
      buf_free(&dn);
      return URSULA_ENOMEM;
    }
    a->ta = ta;
    a->cap = cap;
  }
  ta = &a->ta[a->n];
  memset(ta, 0, sizeof(*ta));
  ta->dn.data = tls_copy(dn.ptr, dn.len);
  ta->dn.len = dn.len;
  ta->flags = br_x509_decoder_isCA(&dc) ? BR_X509_TA_CA : 0;
  ta->pkey.key_type = pk->key_type;
  if (pk->key_type == BR_KEYTYPE_RSA) {
    ta->pkey.key.rsa.n = tls_copy(pk->key.rsa.n, pk->key.rsa.nlen);
    ta->pkey.key.rsa.nlen = pk->key.rsa.nlen;
    ta->pkey.key.rsa.e = tls_copy(pk->key.rsa.e, pk->key.rsa.elen);
    ta->pkey.key.rsa.elen = pk->key.rsa.elen;
    if (ta->pkey.key.rsa.n == NULL || ta->pkey.key.rsa.e == NULL)
      rc = URSULA_ENOMEM;
  } else {
    ta->pkey.key.ec.curve = pk->key.ec.curve;
    ta->pkey.key.ec.q = tls_copy(pk->key.ec.q, pk->key.ec.qlen);
    ta->pkey.key.ec.qlen = pk->key.ec.qlen;
    if (ta->pkey.key.ec.q == NULL) rc = URSULA_ENOMEM;
  }
  a->n++; /* freed with the rest even when a copy failed */
  buf_free(&dn);
  return ta->dn.data == NULL ? URSULA_ENOMEM : rc;
}

URSULA_PRIVATE void tls_anchors_free(struct tls_anchors *a) {
  size_t i;
  if (a == NULL) return;
  for (i = 0; i < a->n; i++) {
    br_x509_trust_anchor *ta = &a->ta[i];
    URSULA_FREE(ta->dn.data);
    if (ta->pkey.key_type == BR_KEYTYPE_RSA) {
      URSULA_FREE(ta->pkey.key.rsa.n);
      URSULA_FREE(ta->pkey.key.rsa.e);
    } else {
      URSULA_FREE(ta->pkey.key.ec.q);
    }
  }
  URSULA_FREE(a->ta);
  URSULA_FREE(a);
}

URSULA_PRIVATE int tls_anchors_load(struct tls_anchors **out,
                                    const char *pem_path, char *err) {
  br_pem_decoder_context pc;
  struct tls_anchors *a;
  struct buf file, der;
  FILE *f = fopen(pem_path, "rb");
  char tmp[4096];
  size_t n, off = 0;
  int in_cert = 0, rc = URSULA_OK;
  if (f == NULL) {
    snprintf(err, URSULA_ERRMSG_LEN, "CA file %.150s: %s", pem_path,
             strerror(errno));
    return URSULA_EIO;
  }
  memset(&file, 0, sizeof(file));
  memset(&der, 0, sizeof(der));
  while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) buf_append(&file, tmp, n);
  fclose(f);
  buf_append(&file, "\n", 1); /* ends a last line without one */
  a = (struct tls_anchors *)URSULA_MALLOC(sizeof(*a));
  if (a == NULL) {
    buf_free(&file);
    return URSULA_ENOMEM;
  }
  memset(a, 0, sizeof(*a));
  br_pem_decoder_init(&pc);
  while (off < file.len && rc == URSULA_OK) {
    off += br_pem_decoder_push(&pc, file.ptr + off, file.len - off);
    switch (br_pem_decoder_event(&pc)) {
      case BR_PEM_BEGIN_OBJ:
        in_cert = strcmp(br_pem_decoder_name(&pc), "CERTIFICATE") == 0 ||
                  strcmp(br_pem_decoder_name(&pc), "X509 CERTIFICATE") == 0;
        der.len = 0;
        br_pem_decoder_setdest(&pc, in_cert ? tls_buf_push : NULL,
                               in_cert ? &der : NULL);
        break;
      case BR_PEM_END_OBJ:
        if (in_cert) rc = tls_add_anchor(a, &der);
        in_cert = 0;
        break;
      case BR_PEM_ERROR:
        rc = URSULA_EINVAL;
        break;
      default:
        break;
    }
  }
  buf_free(&file);
  buf_free(&der);
  if (rc == URSULA_OK && a->n == 0) rc = URSULA_EINVAL;
  if (rc != URSULA_OK) {
    snprintf(err, URSULA_ERRMSG_LEN, "CA file %.150s: %s", pem_path,
             rc == URSULA_ENOMEM ? "out of memory"
                                 : "no usable certificate in PEM form");
    tls_anchors_free(a);
    return rc;
  }
  *out = a;
  return URSULA_OK;
}

static int tls_io_read(void *ctx, unsigned char *p, size_t n) {
  long k = tls_tcp_read(*(int *)ctx, p, n);
  return k > 0 ? (int)k : -1; /* BearSSL: -1 for EOF, error or timeout */
}

static int tls_io_write(void *ctx, const unsigned char *p, size_t n) {
  for (;;) {
    ssize_t k = send(*(int *)ctx, p, n, TLS_SEND_FLAGS);
    if (k > 0) return (int)k;
    if (k < 0 && errno == EINTR) continue;
    return -1;
  }
}

/* BearSSL's error codes, in words where a user can act on them. */
static const char *tls_reason(int e) {
  switch (e) {
    case BR_ERR_X509_NOT_TRUSTED:
      return "certificate not trusted (check --s3-ca-file)";
    case BR_ERR_X509_BAD_SERVER_NAME:
      return "certificate name does not match the host";
    case BR_ERR_X509_EXPIRED:
      return "certificate expired or not yet valid";
    case BR_ERR_IO:
      return "connection failed or timed out during the handshake";
    default:
      return NULL;
  }
}

static int tls_handshake(struct tls_conn *c, const char *host,
                         const struct tls_anchors *a, char *err) {
  int e;
  br_ssl_client_init_full(&c->sc, &c->xc, a->ta, a->n);
  br_ssl_engine_set_buffer(&c->sc.eng, c->iobuf, sizeof(c->iobuf), 1);
  if (!br_ssl_client_reset(&c->sc, host, 0)) {
    snprintf(err, URSULA_ERRMSG_LEN, "TLS to %.100s: cannot start (%d)", host,
             br_ssl_engine_last_error(&c->sc.eng));
    return URSULA_EIO;
  }
  br_sslio_init(&c->io, &c->sc.eng, tls_io_read, &c->fd, tls_io_write, &c->fd);
  c->secure = 1;
  br_sslio_flush(&c->io); /* runs the handshake */
  if (br_ssl_engine_current_state(&c->sc.eng) == BR_SSL_CLOSED ||
      (e = br_ssl_engine_last_error(&c->sc.eng)) != BR_ERR_OK) {
    e = br_ssl_engine_last_error(&c->sc.eng);
    if (tls_reason(e) != NULL)
      snprintf(err, URSULA_ERRMSG_LEN, "TLS to %.100s: %s", host,
               tls_reason(e));
    else
      snprintf(err, URSULA_ERRMSG_LEN, "TLS to %.100s: BearSSL error %d", host,
               e);
    return URSULA_EIO;
  }
  return URSULA_OK;
}

#else /* no TLS in this build */

struct tls_anchors {
  int unused;
};

URSULA_PRIVATE int tls_anchors_load(struct tls_anchors **out,
                                    const char *pem_path, char *err) {
  (void)out, (void)pem_path;
  snprintf(err, URSULA_ERRMSG_LEN, "this build has no TLS (make TLS=1)");
  return URSULA_ENOTSUP;
}

URSULA_PRIVATE void tls_anchors_free(struct tls_anchors *a) {
  (void)a;
}

#endif /* URSULA_ENABLE_TLS */

/* ------------------------------------------------------------ the API */

URSULA_PRIVATE int tls_connect(struct tls_conn **out, const char *host,
                               int port, const struct tls_anchors *anchors,
                               int timeout_ms, char *err) {
  struct tls_conn *c;
  int fd;
#if !URSULA_ENABLE_TLS
  if (anchors != NULL) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "https: this build has no TLS (make TLS=1)");
    return URSULA_ENOTSUP;
  }
#endif
  if ((fd = tls_tcp_open(host, port, timeout_ms, err)) < 0) return URSULA_EIO;
  c = (struct tls_conn *)URSULA_MALLOC(sizeof(*c));
  if (c == NULL) {
    close(fd);
    return URSULA_ENOMEM;
  }
  memset(c, 0, sizeof(*c));
  c->fd = fd;
#if URSULA_ENABLE_TLS
  if (anchors != NULL) {
    int rc = tls_handshake(c, host, anchors, err);
    if (rc != URSULA_OK) {
      tls_close(c);
      return rc;
    }
  }
#endif
  *out = c;
  return URSULA_OK;
}

URSULA_PRIVATE int tls_write_all(struct tls_conn *c, const void *p, size_t n) {
#if URSULA_ENABLE_TLS
  if (c->secure)
    return br_sslio_write_all(&c->io, p, n) == 0 && br_sslio_flush(&c->io) == 0
               ? 0
               : -1;
#endif
  return tls_tcp_write(c->fd, p, n);
}

URSULA_PRIVATE long tls_read(struct tls_conn *c, void *p, size_t n) {
#if URSULA_ENABLE_TLS
  if (c->secure) {
    int k = br_sslio_read(&c->io, p, n);
    if (k > 0) return k;
    /* a clean close_notify reads as the end; anything else as an error */
    return br_ssl_engine_current_state(&c->sc.eng) == BR_SSL_CLOSED &&
                   br_ssl_engine_last_error(&c->sc.eng) == BR_ERR_OK
               ? 0
               : -1;
  }
#endif
  return tls_tcp_read(c->fd, p, n);
}

URSULA_PRIVATE void tls_close(struct tls_conn *c) {
  if (c == NULL) return;
  close(c->fd); /* no close_notify: the HTTP framing ended every body */
  URSULA_FREE(c);
}
/**** End src/tls.c ****/
/**** Begin src/s3.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/s3.c"
#endif
/*
** s3.c -- a small blocking S3 client: PUT, GET (with a range), HEAD,
** DELETE and ListObjectsV2, signed with SigV4 (sigv4.c).
**
** One client per thread (the cold tier's threads own one each); it keeps
** one connection alive between requests and opens a new one when the
** server has closed it.
**
** WIRE.  HTTP/1.1 requests, path-style (host/bucket/key) or virtual-host
** (bucket.host/key) addressing:
**
**     PUT /bucket/key HTTP/1.1            GET /bucket?continuation-token=..
**     Host: host[:port]                       &list-type=2&max-keys=N
**     x-amz-date: 20260101T000000Z            &prefix=P HTTP/1.1
**     x-amz-content-sha256: <hex SHA-256 of the body>
**     [x-amz-security-token: T]   [Range: bytes=A-B]
**     Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
**                    Signature=...
**     Content-Length: N
**
** The key goes on the wire percent-encoded once (sigv4_uri_encode, '/'
** kept), and the signature covers exactly those bytes.  Responses are
** read by Content-Length or chunked framing (http_chunked_feed); error
** bodies are S3's XML <Error><Code>..</Code><Message>..</Message>, turned
** into one log line.
**
** RETRIES.  Each attempt has the configured timeout for connecting, for
** sending, and for each read.  Transport errors, 5xx answers and 503
** SlowDown are retried up to max_attempts in all, after 100 ms, 200 ms,
** 400 ms ... (at most 2 s); other answers are final.  A request that
** fails on a kept-alive connection before any answer byte is sent again
** on a new connection at once (the server may have closed it meanwhile).
*/


#define S3_MAX_HEAD 65536 /* bytes of a response head */
/* Bytes of a response body: far above any chunk object or listing page
** ursula asks for; an answer that says or sends more is refused, and
** memory grows only with the bytes that actually arrive. */
#ifndef S3_MAX_BODY
#define S3_MAX_BODY (1024u * 1024 * 1024)
#endif
#define S3_PREALLOC (4u * 1024 * 1024) /* reserved up front at most */

struct s3_client {
  struct s3_config cfg;
  char host[256]; /* to connect to */
  int port;
  int https;
  char host_header[300]; /* Host: and the signed host */
  struct tls_conn *conn; /* kept alive, or NULL */
  struct buf req, body;  /* scratch: the request, an error body */
};

/* One request's inputs and what came back. */
struct s3_call {
  const char *method;
  const char *key;   /* raw; NULL: the bucket itself */
  const char *query; /* on the wire as given (encoded, sorted) */
  const void *data;  /* PUT body */
  size_t len;
  uint64_t range_off, range_len; /* range_len 0: no Range */
  struct buf *out;               /* 2xx body appended here (or NULL) */
  /* results */
  int status;
  uint64_t content_length;
  int has_length;
};

/* ------------------------------------------------------------ setup */

static int s3_parse_endpoint(struct s3_client *c, const char *url, char *err) {
  const char *p = url, *host, *end;
  size_t n;
  if (strncmp(p, "https://", 8) == 0) {
    c->https = 1;
    p += 8;
  } else if (strncmp(p, "http://", 7) == 0) {
    p += 7;
  } else {
    goto bad;
  }
  host = p;
  for (end = p; *end && *end != '/' && *end != ':'; end++) {
  }
  n = (size_t)(end - host);
  if (n == 0 || n >= sizeof(c->host)) goto bad;
  memcpy(c->host, host, n);
  c->host[n] = '\0';
  c->port = c->https ? 443 : 80;
  if (*end == ':') {
    uint64_t port;
    const char *q = end + 1;
    while (*end && *end != '/') end++;
    if (util_parse_u64((struct str){q, (size_t)(end - q)}, 65535, &port) != 0 ||
        port == 0)
      goto bad;
    c->port = (int)port;
  }
  if (*end == '/' && end[1] != '\0') goto bad; /* no path */
  if (c->cfg.virtual_host)
    snprintf(c->host_header, sizeof(c->host_header), "%s.%s", c->cfg.bucket,
             c->host);
  else
    snprintf(c->host_header, sizeof(c->host_header), "%s", c->host);
  if (c->port != (c->https ? 443 : 80)) {
    n = strlen(c->host_header);
    snprintf(c->host_header + n, sizeof(c->host_header) - n, ":%d", c->port);
  }
  return URSULA_OK;
bad:
  snprintf(err, URSULA_ERRMSG_LEN,
           "S3 endpoint \"%.100s\": expected http(s)://HOST[:PORT]", url);
  return URSULA_EINVAL;
}

URSULA_PRIVATE int s3_client_new(struct s3_client **out,
                                 const struct s3_config *cfg, char *err) {
  struct s3_client *c = (struct s3_client *)URSULA_MALLOC(sizeof(*c));
  int rc;
  if (c == NULL) return URSULA_ENOMEM;
  memset(c, 0, sizeof(*c));
  c->cfg = *cfg;
  if (c->cfg.session_token == NULL) c->cfg.session_token = "";
  if (c->cfg.max_attempts < 1) c->cfg.max_attempts = 1;
  if ((rc = s3_parse_endpoint(c, cfg->endpoint, err)) != URSULA_OK) {
    URSULA_FREE(c);
    return rc;
  }
  if (c->https && cfg->anchors == NULL) {
    snprintf(err, URSULA_ERRMSG_LEN,
             URSULA_ENABLE_TLS ? "https endpoint without trust anchors"
                               : "https: this build has no TLS (make TLS=1)");
    URSULA_FREE(c);
    return URSULA_ENOTSUP;
  }
  *out = c;
  return URSULA_OK;
}

URSULA_PRIVATE void s3_client_free(struct s3_client *c) {
  if (c == NULL) return;
  tls_close(c->conn);
  buf_free(&c->req);
  buf_free(&c->body);
  URSULA_FREE(c);
}

/* ------------------------------------------------------------ requests */

/* The request path: "/bucket/key" or "/key" (virtual host), encoded. */
static int s3_path(struct s3_client *c, const char *key, struct buf *out) {
  int rc = URSULA_OK;
  if (!c->cfg.virtual_host) {
    rc |= buf_append(out, "/", 1);
    rc |= sigv4_uri_encode(out, c->cfg.bucket, strlen(c->cfg.bucket), 0);
  }
  if (key != NULL) {
    rc |= buf_append(out, "/", 1);
    rc |= sigv4_uri_encode(out, key, strlen(key), 1);
  } else if (c->cfg.virtual_host) {
    rc |= buf_append(out, "/", 1);
  }
  return rc ? URSULA_ENOMEM : URSULA_OK;
}

/* Build the whole request head of call k into c->req. */
static int s3_build(struct s3_client *c, const struct s3_call *k) {
  struct http_header h[5];
  struct sigv4_request r;
  struct buf path, auth;
  unsigned char d[32];
  char hash[65], date[17], range[64];
  struct env *env = c->cfg.env != NULL ? c->cfg.env : env_real();
  time_t now = (time_t)(env->wall_ms(env) / 1000);
  struct tm tm;
  size_t n = 0, i;
  int rc;
  memset(&path, 0, sizeof(path));
  memset(&auth, 0, sizeof(auth));
  gmtime_r(&now, &tm);
  strftime(date, sizeof(date), "%Y%m%dT%H%M%SZ", &tm);
  crypto_sha256(k->data, k->len, d);
  crypto_hex(d, 32, hash);
  if ((rc = s3_path(c, k->key, &path)) != URSULA_OK) return rc;
  h[n].name = util_str("host");
  h[n++].value = util_str(c->host_header);
  h[n].name = util_str("x-amz-content-sha256");
  h[n++].value = util_str(hash);
  h[n].name = util_str("x-amz-date");
  h[n++].value = util_str(date);
  if (c->cfg.session_token[0]) {
    h[n].name = util_str("x-amz-security-token");
    h[n++].value = util_str(c->cfg.session_token);
  }
  if (k->range_len > 0) {
    if (k->range_len == UINT64_MAX - k->range_off) /* to the end */
      snprintf(range, sizeof(range), "bytes=%llu-",
               (unsigned long long)k->range_off);
    else
      snprintf(range, sizeof(range), "bytes=%llu-%llu",
               (unsigned long long)k->range_off,
               (unsigned long long)(k->range_off + k->range_len - 1));
    h[n].name = util_str("range");
    h[n++].value = util_str(range);
  }
  memset(&r, 0, sizeof(r));
  r.method = util_str(k->method);
  r.path.ptr = path.ptr;
  r.path.len = path.len;
  r.query = util_str(k->query ? k->query : "");
  r.headers = h;
  r.n_headers = n;
  r.payload_hash = util_str(hash);
  r.access_key = util_str(c->cfg.access_key);
  r.secret_key = util_str(c->cfg.secret_key);
  r.region = util_str(c->cfg.region);
  r.service = util_str("s3");
  r.amz_date = util_str(date);
  r.s3 = 1;
  rc = sigv4_sign(&r, &auth, NULL, NULL);
  c->req.len = 0;
  if (rc == URSULA_OK) {
    rc |= buf_printf(&c->req, "%s %.*s%s%s HTTP/1.1\r\n", k->method,
                     (int)path.len, path.ptr, k->query ? "?" : "",
                     k->query ? k->query : "");
    for (i = 0; i < n; i++)
      rc |= buf_printf(&c->req, "%.*s: %.*s\r\n", (int)h[i].name.len,
                       h[i].name.ptr, (int)h[i].value.len, h[i].value.ptr);
    rc |= buf_printf(&c->req,
                     "Authorization: %.*s\r\nContent-Length: %lu\r\n\r\n",
                     (int)auth.len, auth.ptr, (unsigned long)k->len);
  }
  buf_free(&path);
  buf_free(&auth);
  return rc == URSULA_OK ? URSULA_OK : URSULA_ENOMEM;
}

/* ------------------------------------------------------------ responses */

/* Find header `name` in the response head (CRLF lines); its value. */
static int s3_header(const char *head, size_t len, const char *name,
                     struct str *value) {
  size_t i = 0, n = strlen(name);
  while (i < len) {
    size_t end = i;
    struct str line;
    while (end < len && head[end] != '\n') end++;
    line.ptr = head + i;
    line.len = end - i;
    if (line.len > 0 && line.ptr[line.len - 1] == '\r') line.len--;
    if (line.len > n && line.ptr[n] == ':') {
      struct str nm;
      nm.ptr = line.ptr;
      nm.len = n;
      if (util_str_ieq(nm, name)) {
        value->ptr = line.ptr + n + 1;
        value->len = line.len - n - 1;
        *value = util_str_trim(*value);
        return 1;
      }
    }
    i = end + 1;
  }
  return 0;
}

/* Read one response to call k on c->conn.  The body of a 2xx goes to
** k->out, any other to c->body.  URSULA_OK, or URSULA_EIO (transport;
** *got_any says whether any byte came back). */
static int s3_read_response(struct s3_client *c, struct s3_call *k,
                            int *got_any, int *keep) {
  char tmp[16384];
  struct buf head, *dst;
  size_t head_len = 0, base;
  struct str v;
  uint64_t want = 0;
  int chunked = 0, rc = URSULA_EIO, done = 0;
  struct http_chunked ch;
  memset(&head, 0, sizeof(head));
  memset(&ch, 0, sizeof(ch));
  *got_any = 0;
  *keep = 1;
  while (head_len == 0) { /* the head, up to the empty line */
    long n = tls_read(c->conn, tmp, sizeof(tmp));
    char *end;
    if (n <= 0) goto out;
    *got_any = 1;
    if (buf_append(&head, tmp, (size_t)n) != URSULA_OK) goto out;
    buf_append(&head, "", 1);
    head.len--;
    end = strstr(head.ptr, "\r\n\r\n");
    if (end != NULL)
      head_len = (size_t)(end - head.ptr) + 4;
    else if (head.len > S3_MAX_HEAD)
      goto out;
  }
  if (head_len < 12 || strncmp(head.ptr, "HTTP/1.", 7) != 0) goto out;
  k->status = atoi(head.ptr + 9);
  if (s3_header(head.ptr, head_len, "connection", &v) &&
      util_str_ieq(v, "close"))
    *keep = 0;
  k->has_length = s3_header(head.ptr, head_len, "content-length", &v) &&
                  util_parse_u64(v, UINT64_MAX, &k->content_length) == 0;
  chunked = s3_header(head.ptr, head_len, "transfer-encoding", &v) &&
            util_str_ieq(v, "chunked");
  dst = k->status / 100 == 2 && k->out != NULL ? k->out : &c->body;
  c->body.len = 0;
  if (strcmp(k->method, "HEAD") == 0 || k->status == 204 || k->status == 304) {
    rc = URSULA_OK; /* no body */
    goto out;
  }
  if (!chunked && !k->has_length) *keep = 0; /* the body ends at close */
  want = k->has_length ? k->content_length : UINT64_MAX;
  if (k->has_length && !chunked && k->content_length > S3_MAX_BODY) {
    LOG_W("s3: %s %s: the answer's Content-Length (%llu) is above the "
          "limit of %u bytes; refused",
          k->method, k->key ? k->key : "", (unsigned long long)k->content_length,
          (unsigned)S3_MAX_BODY);
    *keep = 0;
    goto out;
  }
  base = dst->len;
  if (k->has_length && !chunked &&
      buf_reserve(dst, (size_t)(k->content_length < S3_PREALLOC
                                    ? k->content_length
                                    : S3_PREALLOC)) != URSULA_OK)
    goto out;
  /* the body bytes that came with the head, then the rest */
  {
    const char *p = head.ptr + head_len;
    size_t n = head.len - head_len;
    for (;;) {
      if (chunked) {
        long used = http_chunked_feed(&ch, p, n, dst, &done);
        if (used < 0) goto out;
      } else {
        if (n > want) n = (size_t)want;
        if (buf_append(dst, p, n) != URSULA_OK) goto out;
        want -= n;
        done = want == 0;
      }
      if (dst->len - base > S3_MAX_BODY) {
        LOG_W("s3: %s %s: the answer's body is above the limit of %u bytes; "
              "refused",
              k->method, k->key ? k->key : "", (unsigned)S3_MAX_BODY);
        *keep = 0;
        goto out;
      }
      if (done) break;
      {
        long got = tls_read(c->conn, tmp, sizeof(tmp));
        if (got == 0 && !chunked && !k->has_length) {
          done = 1; /* read to the close */
          break;
        }
        if (got <= 0) goto out;
        p = tmp;
        n = (size_t)got;
      }
    }
  }
  rc = URSULA_OK;
out:
  buf_free(&head);
  return rc;
}

/* <tag>text</tag> in xml (the first at or after *from), entities
** decoded, into out; advances *from past it.  1 if found. */
static int s3_xml(const char *xml, size_t len, size_t *from, const char *tag,
                  struct buf *out) {
  char open[64], close_[64];
  const char *p, *q, *end = xml + len;
  size_t i;
  snprintf(open, sizeof(open), "<%s>", tag);
  snprintf(close_, sizeof(close_), "</%s>", tag);
  out->len = 0;
  for (p = xml + *from; p + strlen(open) <= end; p++)
    if (memcmp(p, open, strlen(open)) == 0) break;
  if (p + strlen(open) > end) return 0;
  p += strlen(open);
  for (q = p; q + strlen(close_) <= end; q++)
    if (memcmp(q, close_, strlen(close_)) == 0) break;
  if (q + strlen(close_) > end) return 0;
  *from = (size_t)(q - xml) + strlen(close_);
  for (i = 0; p + i < q; i++) {
    static const char *const ent[5][2] = {{"&amp;", "&"},
                                          {"&lt;", "<"},
                                          {"&gt;", ">"},
                                          {"&quot;", "\""},
                                          {"&apos;", "'"}};
    size_t e;
    if (p[i] == '&') {
      for (e = 0; e < 5; e++) {
        size_t n = strlen(ent[e][0]);
        if (p + i + n <= q && memcmp(p + i, ent[e][0], n) == 0) {
          buf_append(out, ent[e][1], 1);
          i += n - 1;
          break;
        }
      }
      if (e < 5) continue;
    }
    buf_append(out, p + i, 1);
  }
  buf_append(out, "", 1);
  out->len--;
  return 1;
}

/* Fill *e from a failed answer (status, and S3's XML error body). */
static void s3_error_fill(struct s3_client *c, const struct s3_call *k,
                          struct s3_error *e, const char *transport) {
  struct buf t;
  size_t at = 0;
  memset(&t, 0, sizeof(t));
  memset(e, 0, sizeof(*e));
  e->status = transport ? 0 : k->status;
  if (!transport &&
      s3_xml(c->body.ptr ? c->body.ptr : "", c->body.len, &at, "Code", &t))
    snprintf(e->code, sizeof(e->code), "%s", t.ptr);
  at = 0;
  if (!transport &&
      s3_xml(c->body.ptr ? c->body.ptr : "", c->body.len, &at, "Message", &t))
    snprintf(e->message, sizeof(e->message), "%s", t.ptr);
  if (transport)
    snprintf(e->line, sizeof(e->line), "%s %.200s: %s", k->method,
             k->key ? k->key : c->cfg.bucket, transport);
  else
    snprintf(e->line, sizeof(e->line), "%s %.200s: %d %s%s%.200s", k->method,
             k->key ? k->key : c->cfg.bucket, k->status,
             e->code[0] ? e->code : http_status_text(k->status),
             e->message[0] ? ": " : "", e->message);
  buf_free(&t);
}

/* Run call k with retries.  URSULA_OK for 2xx; URSULA_ENOTFOUND for a 404
** other than NoSuchBucket; else URSULA_EIO with *e filled. */
static int s3_do(struct s3_client *c, struct s3_call *k, struct s3_error *e) {
  char err[URSULA_ERRMSG_LEN];
  size_t out_len = k->out ? k->out->len : 0;
  int attempt = 0, fresh_retry = 0;
  while (attempt < c->cfg.max_attempts) {
    int rc, got_any = 0, keep = 1, reused = c->conn != NULL;
    err[0] = '\0';
    k->status = 0;
    if (k->out) k->out->len = out_len; /* a retry starts over */
    rc = s3_build(c, k);
    if (rc != URSULA_OK) return rc;
    if (c->conn == NULL) {
      rc =
          tls_connect(&c->conn, c->host, c->port,
                      c->https ? c->cfg.anchors : NULL, c->cfg.timeout_ms, err);
      if (rc == URSULA_ENOTSUP) {
        snprintf(e->line, sizeof(e->line), "%.500s", err);
        return rc;
      }
    }
    if (rc == URSULA_OK &&
        (tls_write_all(c->conn, c->req.ptr, c->req.len) != 0 ||
         (k->len > 0 && tls_write_all(c->conn, k->data, k->len) != 0))) {
      rc = URSULA_EIO;
      snprintf(err, sizeof(err), "sending: %s", strerror(errno));
    }
    if (rc == URSULA_OK) {
      rc = s3_read_response(c, k, &got_any, &keep);
      if (rc != URSULA_OK)
        snprintf(err, sizeof(err), "%s",
                 got_any ? "the answer was cut short or malformed"
                         : "no answer (connection closed or timed out)");
    }
    if (rc != URSULA_OK || !keep) {
      tls_close(c->conn);
      c->conn = NULL;
    }
    if (rc != URSULA_OK && reused && !got_any && !fresh_retry) {
      fresh_retry = 1; /* a kept-alive connection the server had closed */
      continue;
    }
    attempt++;
    if (rc == URSULA_OK && k->status / 100 == 2) return URSULA_OK;
    if (rc == URSULA_OK && k->status == 404) {
      s3_error_fill(c, k, e, NULL); /* a missing key; not a missing bucket */
      return strcmp(e->code, "NoSuchBucket") == 0 ? URSULA_EIO
                                                  : URSULA_ENOTFOUND;
    }
    if (rc == URSULA_OK)
      s3_error_fill(c, k, e, NULL);
    else
      s3_error_fill(c, k, e, err);
    if (rc == URSULA_OK && k->status < 500 &&
        strcmp(e->code, "SlowDown") != 0 &&
        strcmp(e->code, "RequestTimeout") != 0)
      return URSULA_EIO; /* a definite answer: retrying will not help */
    if (attempt < c->cfg.max_attempts) {
      int ms = 100 << (attempt - 1);
      os_sleep_ms((uint64_t)(ms > 2000 ? 2000 : ms));
    }
  }
  return URSULA_EIO;
}

/* ------------------------------------------------------------ operations */

static void s3_call_init(struct s3_call *k, const char *method,
                         const char *key) {
  memset(k, 0, sizeof(*k));
  k->method = method;
  k->key = key;
  k->data = "";
}

URSULA_PRIVATE int s3_put(struct s3_client *c, const char *key, const void *p,
                          size_t n, struct s3_error *e) {
  struct s3_call k;
  s3_call_init(&k, "PUT", key);
  k.data = p;
  k.len = n;
  return s3_do(c, &k, e);
}

URSULA_PRIVATE int s3_get(struct s3_client *c, const char *key, uint64_t off,
                          uint64_t len, struct buf *out, struct s3_error *e) {
  struct s3_call k;
  s3_call_init(&k, "GET", key);
  if (len > 0) {
    k.range_off = off;
    k.range_len = len;
  } else if (off > 0) { /* from off to the end */
    k.range_off = off;
    k.range_len = UINT64_MAX - off;
  }
  k.out = out;
  return s3_do(c, &k, e);
}

URSULA_PRIVATE int s3_head(struct s3_client *c, const char *key, uint64_t *size,
                           struct s3_error *e) {
  struct s3_call k;
  int rc;
  s3_call_init(&k, "HEAD", key);
  rc = s3_do(c, &k, e);
  if (rc == URSULA_OK) *size = k.has_length ? k.content_length : 0;
  return rc;
}

URSULA_PRIVATE int s3_delete(struct s3_client *c, const char *key,
                             struct s3_error *e) {
  struct s3_call k;
  s3_call_init(&k, "DELETE", key);
  return s3_do(c, &k, e);
}

URSULA_PRIVATE int s3_list(struct s3_client *c, const char *prefix,
                           int max_keys,
                           int (*fn)(void *arg, const char *key, uint64_t size),
                           void *arg, struct s3_error *e) {
  struct buf query, page, token, key, size, contents;
  struct s3_call k;
  int rc = URSULA_OK, truncated = 1;
  memset(&query, 0, sizeof(query));
  memset(&page, 0, sizeof(page));
  memset(&token, 0, sizeof(token));
  memset(&key, 0, sizeof(key));
  memset(&size, 0, sizeof(size));
  memset(&contents, 0, sizeof(contents));
  while (rc == URSULA_OK && truncated) {
    size_t at = 0, in;
    /* the parameters in canonical order: sorted, encoded */
    query.len = 0;
    if (token.len > 0) {
      buf_append(&query, "continuation-token=", 19);
      sigv4_uri_encode(&query, token.ptr, token.len, 0);
      buf_append(&query, "&", 1);
    }
    buf_append(&query, "list-type=2", 11);
    if (max_keys > 0) buf_printf(&query, "&max-keys=%d", max_keys);
    buf_append(&query, "&prefix=", 8);
    sigv4_uri_encode(&query, prefix, strlen(prefix), 0);
    buf_append(&query, "", 1);
    s3_call_init(&k, "GET", NULL);
    k.query = query.ptr;
    page.len = 0;
    k.out = &page;
    if ((rc = s3_do(c, &k, e)) != URSULA_OK) break;
    while (rc == URSULA_OK && s3_xml(page.ptr ? page.ptr : "", page.len, &at,
                                     "Contents", &contents)) {
      uint64_t sz = 0;
      in = 0;
      if (!s3_xml(contents.ptr, contents.len, &in, "Key", &key)) continue;
      in = 0;
      if (s3_xml(contents.ptr, contents.len, &in, "Size", &size))
        util_parse_u64(util_str(size.ptr), UINT64_MAX, &sz);
      rc = fn(arg, key.ptr, sz);
    }
    at = 0;
    truncated =
        s3_xml(page.ptr ? page.ptr : "", page.len, &at, "IsTruncated", &key) &&
        strcmp(key.ptr, "true") == 0;
    at = 0;
    if (truncated &&
        !s3_xml(page.ptr, page.len, &at, "NextContinuationToken", &token)) {
      snprintf(e->line, sizeof(e->line),
               "LIST %.200s: truncated page without a continuation token",
               prefix);
      rc = URSULA_EIO;
    }
  }
  buf_free(&query);
  buf_free(&page);
  buf_free(&token);
  buf_free(&key);
  buf_free(&size);
  buf_free(&contents);
  return rc;
}
/**** End src/s3.c ****/
/**** Begin src/wal.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/wal.c"
#endif
/*
** wal.c -- a group's write-ahead log: segment files of typed records, a
** snapshot file, and the rules that tell a crash's torn tail from damage.
**
** Each group logs its entries here before they are applied, and replays
** them on start.  The interface is the one a Raft log store needs:
** append entries at (term, index), make them durable together with the
** current term and vote (one sync), read entries and terms by index,
** truncate a suffix, compact a prefix, and keep a snapshot.
**
** FORMAT VERSION 2.  Version 1 directories ("URSWAL1" segments, a
** "state" file) are refused with a message that says so (wal_open).
**
** FILES.  One directory per group (the caller names it; stream names
** never become file names):
**
**     00000000000000000001.wal   segment: entries from index 1
**     00000000000000052113.wal   segment: entries from index 52113
**     snapshot                   the state machine as of some index
**
** A segment is named by the index of its first entry (20 decimal digits,
** so names sort like the numbers).  Only the last segment is written; a
** new one starts when the last reaches WAL_SEGMENT_BYTES.
**
** SEGMENT HEADER, 32 bytes, all integers little-endian:
**
**     0   8  magic "URSWAL2\n"
**     8   8  index of the first entry
**    16   8  zero
**    24   4  CRC32C of bytes 0..23
**    28   4  zero
**
** RECORD, 32 bytes + payload, back to back after the header:
**
**     0   4  CRC32C of bytes 4..(32+n-1)
**     4   4  n, the payload length (at most WAL_MAX_RECORD)
**     8   1  type: 1 CMD, 2 NOOP, 3 CONF (log entries); 16 HARD, 17 SEAL
**     9   7  zero
**    16   8  term
**    24   8  index
**    32   n  payload
**
**   Log entries (CMD: one encoded command, cmd.c; NOOP: a new leader's
**   empty entry; CONF: a configuration) take the next index: the
**   previous entry's + 1.  Their terms never decrease.
**   HARD (payload: term 8, vote 8; the vote's bit 63 is the group's LOST
**   LOG flag, group.c) is the Raft hard state as of here; the
**   last HARD record of the log is in force.  Its index field is the
**   last entry's index (it takes no index of its own), and it is written
**   in the same batch, and so made durable by the same sync, as entries.
**   Every segment starts with one, so compaction never loses it.
**   SEAL (payload: the next segment's first index, 8) ends a segment that
**   is complete: the segment it names must exist.  Its index field is
**   the last entry's index.
**
** SNAPSHOT FILE "snapshot" (format 3; format 2, "URSSNAP2", is refused
** with a message), written and read in chunks (a large one is never held
** twice in memory) and replaced atomically (written to snapshot.tmp,
** synced, renamed, the directory synced):
**
**     0   8  magic "URSSNAP3"
**     8   8  index of the last entry it covers
**    16   8  term of that entry
**    24   8  flags: 1 = an image, made to be installed on another node
**    32   n  payload: the state machine's snapshot (stream.c)
**  32+n   m  pieces: bytes of log entries, back to back, in the order of
**            the directory
**  ...   32k directory, one 32-byte entry per piece, ascending by (index,
**            offset), no two overlapping:
**              0  8 index of the entry   8  8 offset in its payload
**             16  8 length              24  4 CRC32C of the piece's bytes
**             28  4 zero
**  tail  32  n 8, m 8, k 8, then the CRC32C of the header, the payload,
**            the directory and these 24 bytes (4), zero (4)
**
**   The state names stream bytes by (entry index, offset), and the log
**   keeps the segments that hold them (compaction stops before the oldest
**   one a stream still reads).  Pieces carry the ones the log does not
**   hold: a snapshot carries the bytes it names below the log's first
**   entry (after an install, the image's), and an image carries every
**   byte its state names, so that another node can install it with
**   nothing else.  A read of such an entry is served from its piece, whose
**   CRC is checked on every read.
**
** INSTALL (wal_install_commit), crash-safe at every step: the image is
** written to install.tmp and synced, and checked whole (every CRC, the
** directory's order, the image flag, an index n past the snapshot's).
** If the log holds entry n with the image's term, the log agrees with it
** (Raft: it keeps the entries after n), and the image just becomes the
** snapshot.  Otherwise:
**   1. entries from n on, if any, are cut (wal_truncate_suffix: they
**      conflict with the image's, which is committed);
**   2. install.tmp is renamed to "snapshot", the directory synced;
**   3. a segment for n + 1 is created (the old log, all below n, is not
**      sealed to it: its entries do not lead there);
**   4. the old segments are removed, from the front.
** Replay finishes an install a crash cut short: with an image as the
** snapshot, segments below it are not checked (the image carries every
** byte the state names; the old log is not needed), a log that ends
** before the image goes on in a new segment at n + 1, and the old
** segments are removed.
**
** DURABILITY.  wal_frame() fills in the header of a record the caller
** has built in its own buffer (so the payload is never copied), and
** wal_write() writes the caller's run of framed records with pwrite();
** the file is then synced once (fdatasync, or F_FULLFSYNC on macOS), so
** many appends share one sync (group commit).  Only after the sync
** succeeds are the entries, and any HARD record among them, durable.
** The sync itself may run on another thread while the owner goes on
** (wal_flush_fd, wal_flush_done).
**
** FAILURES.  If a write or a sync fails, the buffered entries are dropped
** (nothing of them may be acknowledged), and the log refuses appends
** (w->failed).  After a failed sync the kernel may have dropped the dirty
** pages, so what the file holds is no longer trusted: wal_recover() closes
** the file, opens it again, cuts it back to the last durable size, syncs,
** and reads every record of the segment back, checking each CRC, before
** the log accepts appends again.
**
** RECOVERY: DAMAGE IS NEVER TAKEN FOR ABSENCE.  wal_replay() reads the
** snapshot and the segments after it in order, checking every record.
**   - A crash can tear only the records of the last batch written, at the
**     end of the last segment (records are written in order, and a
**     segment is synced whole and sealed before the next one starts).  So
**     a bad record at the end of the last segment, with no valid record
**     anywhere after it, is a torn tail: it is cut (and logged).
**   - A bad record with a valid record after it, or a bad record in any
**     segment but the last, is damage to acknowledged entries: replay
**     fails with URSULA_ECORRUPT, naming the file and the byte offset.
**   - A missing file that the log names is refused the same way: a gap in
**     the segments' indexes, a last segment that ends with a SEAL (its
**     successor is gone), segments that start after 1 with no snapshot,
**     no segment at all in a log that must exist (wal_open).
**   - Segments wholly covered by the snapshot are not read at start; the
**     first read from one checks it (wal_read), as every read checks the
**     record it reads: damage there is an error, never wrong bytes.
**
** CRASH SAFETY OF THE CHANGES.  Each step leaves a log that replays:
**   - a new segment is created (header and HARD synced, the directory
**     synced) before its predecessor is sealed;
**   - wal_truncate_suffix() works from the last segment back: first it
**     unseals the segment before (cuts its SEAL and appends a HARD
**     record, synced: the last segment still holds the latest HARD record
**     meanwhile), then removes the last one; then it replaces the segment
**     that holds the truncation point by its prefix and a HARD record,
**     through a temporary file and a rename;
**   - wal_compact() removes segments from the front, and only those a
**     durable snapshot covers.
*/


#define WAL_HEADER_BYTES 32
#define WAL_HARD_BYTES 16                    /* HARD payload */
#define WAL_SEAL_BYTES 8                     /* SEAL payload */
#define WAL_SNAP_HEAD 32
#define WAL_SNAP_TAIL 32
#define WAL_READ_AHEAD (64 * 1024) /* bytes a read of the log reads ahead */
#ifndef WAL_SEGMENT_BYTES
#define WAL_SEGMENT_BYTES (64 * 1024 * 1024) /* roll to a new segment */
#endif

static const char wal_magic[8] = {'U', 'R', 'S', 'W', 'A', 'L', '2', '\n'};
static const char wal_magic_v1[8] = {'U', 'R', 'S', 'W', 'A', 'L', '1', '\n'};
static const char wal_snap_magic[8] = {'U', 'R', 'S', 'S', 'N', 'A', 'P', '3'};
static const char wal_snap_magic_v2[8] = {'U', 'R', 'S', 'S', 'N', 'A', 'P', '2'};

struct wal_seg {
  uint64_t first_index;
  int fd;         /* open for reads, or -1 (the last one reads through w->fd) */
  int mapped;     /* offs[] holds every entry the file has (to `damaged`) */
  uint64_t *offs; /* file offset of the record of entry first_index + i */
  size_t n_offs, cap_offs;
  int64_t damaged; /* byte offset of the first bad record seen, or -1 */
};

struct wal {
  struct os_fs *fs; /* every file call goes through it (the node's env) */
  char dir[URSULA_PATH_LEN];
  struct wal_seg *segs; /* ascending; the last one is open for writing */
  size_t n_segs, cap_segs;
  int fd;               /* the last segment, or -1 */
  off_t size;           /* bytes of the last segment that are durable */
  off_t written;        /* bytes written to it (durable or not yet) */
  uint64_t first_index; /* first entry in the log (1 until compacted) */
  uint64_t last_index;  /* last entry appended (durable or buffered) */
  uint64_t last_term;
  uint64_t durable_index; /* last entry known durable */
  uint64_t durable_term;
  size_t pending; /* bytes framed but not yet written */
  int failed;     /* a write or sync failed: appends refused */
  uint64_t term, vote;           /* the durable hard state */
  uint64_t next_term, next_vote; /* as framed: durable once synced */
  /* what the last wal_write() wrote (framing may go on during its sync;
  ** only what was written becomes durable at wal_flush_done) */
  uint64_t written_index, written_term, written_hterm, written_hvote;
  int needs_reopen; /* a cut failed half-way: the files are right, the
                       in-memory view is not; only a restart recovers */
  int64_t segment_bytes;
  uint64_t snap_index, snap_term; /* the snapshot replay starts after */
  uint64_t snap_flags;            /* its flags (WAL_SNAP_IMAGE: installed) */
  struct wal_piece *pieces;       /* its pieces, ascending (index, off) */
  size_t n_pieces;
  int snap_fd;                    /* open on it for piece reads, or -1 */
  struct buf pc;                  /* the last piece read and checked, */
  uint64_t pc_pos;                /* at file byte pc_pos - 1 (0: none) */
  uint64_t since_snap;            /* log bytes written after it */
  /* READ-AHEAD.  rd holds bytes [rd_pos, rd_pos + rd.len) of segment
  ** rd_seg (its first index; 0: none), read ahead of the records asked
  ** for (WAL_READ_AHEAD), and never past what is durable; the record of
  ** entry rd_index (0: none), checked, starts at rd.ptr + rd_at.  Any
  ** change of the files other than an append forgets it (wal_rd_forget). */
  uint64_t rd_index;
  uint64_t rd_seg, rd_pos;
  size_t rd_at;
  struct buf rd;
};

static int wal_fail(struct wal *w, int e);

static void wal_rd_forget(struct wal *w) {
  w->rd_index = 0;
  w->rd_seg = 0;
  w->rd.len = 0;
}

/* ------------------------------------------------------------ bytes */

static int wal_errno_code(int e) {
  return e == ENOSPC ? URSULA_ENOSPC : URSULA_EIO;
}

static int wal_is_entry(int type) {
  return type == WAL_CMD || type == WAL_NOOP || type == WAL_CONF;
}

/* Fill in the header of the record at h (payload at h + 32, n bytes). */
static void wal_seal_record(unsigned char *h, int type, uint64_t term,
                            uint64_t index, size_t n) {
  uint32_t crc;
  util_put32(h + 4, (uint32_t)n);
  memset(h + 8, 0, 8);
  h[8] = (unsigned char)type;
  util_put64(h + 16, term);
  util_put64(h + 24, index);
  crc = util_crc32c(0, h + 4, WAL_RECORD_HEADER - 4);
  crc = util_crc32c(crc, h + WAL_RECORD_HEADER, n);
  util_put32(h, crc);
}

/* Whether p[0..avail) starts with a whole, valid record; its payload
** length in *n. */
static int wal_record_ok(const unsigned char *p, size_t avail, uint32_t *n) {
  size_t i;
  if (avail < WAL_RECORD_HEADER) return 0;
  *n = util_get32(p + 4);
  if (*n > WAL_MAX_RECORD || avail - WAL_RECORD_HEADER < *n) return 0;
  for (i = 9; i < 16; i++)
    if (p[i] != 0) return 0;
  if (!wal_is_entry(p[8]) && p[8] != WAL_HARD && p[8] != WAL_SEAL) return 0;
  if (p[8] == WAL_HARD && *n != WAL_HARD_BYTES) return 0;
  if (p[8] == WAL_SEAL && *n != WAL_SEAL_BYTES) return 0;
  return util_get32(p) == util_crc32c(0, p + 4, WAL_RECORD_HEADER - 4 + *n);
}

URSULA_PRIVATE int wal_record_put(struct buf *out, const struct wal_entry *e) {
  size_t at = out->len;
  if (e->len > WAL_MAX_RECORD || !wal_is_entry(e->type)) return URSULA_EINVAL;
  if (buf_reserve(out, WAL_RECORD_HEADER + e->len) != URSULA_OK)
    return URSULA_ENOMEM;
  if (e->len > 0)
    memcpy(out->ptr + at + WAL_RECORD_HEADER, e->data, e->len);
  wal_seal_record((unsigned char *)out->ptr + at, e->type, e->term, e->index,
                  e->len);
  out->len += WAL_RECORD_HEADER + e->len;
  return URSULA_OK;
}

/* Whether p[0..avail) starts with a whole, valid log entry record (CMD,
** NOOP or CONF; the CRC checked): URSULA_OK and the entry in *e (e->data
** points into p) and the record's size in *size, else URSULA_ECORRUPT.
** For a transport that carries records verbatim (peer.c). */
URSULA_PRIVATE int wal_record_check(const void *p, size_t avail,
                                    struct wal_entry *e, size_t *size) {
  const unsigned char *r = (const unsigned char *)p;
  uint32_t n;
  if (!wal_record_ok(r, avail, &n) || !wal_is_entry(r[8]))
    return URSULA_ECORRUPT;
  e->type = r[8];
  e->term = util_get64(r + 16);
  e->index = util_get64(r + 24);
  e->data = r + WAL_RECORD_HEADER;
  e->len = n;
  *size = WAL_RECORD_HEADER + (size_t)n;
  return URSULA_OK;
}

/* ------------------------------------------------------------ paths */

static void wal_seg_path(const struct wal *w, uint64_t first, char *out,
                         size_t cap) {
  snprintf(out, cap, "%s/%020llu.wal", w->dir, (unsigned long long)first);
}

/* Whether name is a segment file name; its first index in *first. */
static int wal_seg_name(const char *name, uint64_t *first) {
  size_t i;
  uint64_t v = 0;
  if (strlen(name) != 24 || strcmp(name + 20, ".wal") != 0) return 0;
  for (i = 0; i < 20; i++) {
    unsigned d = (unsigned)(name[i] - '0');
    if (name[i] < '0' || name[i] > '9') return 0;
    if (v > (UINT64_MAX - d) / 10) return 0; /* every name wal_seg_path makes */
    v = v * 10 + d;
  }
  *first = v;
  return v > 0;
}

static int wal_seg_push(struct wal *w, uint64_t first) {
  struct wal_seg *sg;
  if (w->n_segs == w->cap_segs) {
    size_t cap = w->cap_segs ? w->cap_segs * 2 : 8;
    struct wal_seg *s =
        (struct wal_seg *)URSULA_REALLOC(w->segs, cap * sizeof(*s));
    if (s == NULL) return URSULA_ENOMEM;
    w->segs = s;
    w->cap_segs = cap;
  }
  sg = &w->segs[w->n_segs++];
  memset(sg, 0, sizeof(*sg));
  sg->first_index = first;
  sg->fd = -1;
  sg->damaged = -1;
  return URSULA_OK;
}

static void wal_seg_release(struct os_fs *fs, struct wal_seg *sg) {
  if (sg->fd >= 0) fs->close(sg->fd);
  sg->fd = -1;
  URSULA_FREE(sg->offs);
  sg->offs = NULL;
  sg->n_offs = sg->cap_offs = 0;
}

/* Note that entry first_index + n_offs starts at file offset off. */
static int wal_seg_note(struct wal_seg *sg, uint64_t off) {
  if (sg->n_offs == sg->cap_offs) {
    size_t cap = sg->cap_offs ? sg->cap_offs * 2 : 64;
    uint64_t *o = (uint64_t *)URSULA_REALLOC(sg->offs, cap * sizeof(*o));
    if (o == NULL) return URSULA_ENOMEM;
    sg->offs = o;
    sg->cap_offs = cap;
  }
  sg->offs[sg->n_offs++] = off;
  return URSULA_OK;
}

static int wal_seg_cmp(const void *a, const void *b) {
  uint64_t x = ((const struct wal_seg *)a)->first_index;
  uint64_t y = ((const struct wal_seg *)b)->first_index;
  return x < y ? -1 : x > y;
}

/* The segment that holds index (the last one whose first is <= index). */
static size_t wal_seg_of(const struct wal *w, uint64_t index) {
  size_t lo = 0, hi = w->n_segs;
  while (lo < hi) { /* first k with first_index > index */
    size_t mid = lo + (hi - lo) / 2;
    if (w->segs[mid].first_index <= index)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo > 0 ? lo - 1 : 0;
}

/* ------------------------------------------------------------ files */

/* Read the whole file at path into b.  URSULA_OK, URSULA_ENOTFOUND, or
** an I/O error. */
static int wal_read_path(struct os_fs *fs, const char *path, struct buf *b) {
  uint64_t size;
  int fd, rc = URSULA_OK;
  off_t off = 0;
  b->len = 0;
  fd = fs->open(path, O_RDONLY, 0);
  if (fd < 0) return errno == ENOENT ? URSULA_ENOTFOUND : URSULA_EIO;
  if (fs->size(fd, &size) != 0 || size > SIZE_MAX) {
    fs->close(fd);
    return URSULA_EIO;
  }
  if (buf_reserve(b, (size_t)size) != URSULA_OK) {
    fs->close(fd);
    return URSULA_ENOMEM;
  }
  while ((uint64_t)off < size) {
    ssize_t n = fs->pread(fd, b->ptr + off, (size_t)(size - (uint64_t)off),
                          off);
    if (n < 0) {
      rc = URSULA_EIO;
      break;
    }
    if (n == 0) break; /* shrank under us: what we have is what there is */
    off += n;
  }
  b->len = (size_t)off;
  fs->close(fd);
  return rc;
}

/* Write b[0..n) at off of fd, all of it.  0 or an errno. */
static int wal_pwrite_all(struct os_fs *fs, int fd, const void *b, size_t n,
                          off_t off) {
  size_t done = 0;
  while (done < n) {
    ssize_t k = fs->pwrite(fd, (const char *)b + done, n - done,
                                off + (off_t)done);
    if (k <= 0) return k < 0 ? errno : EIO;
    done += (size_t)k;
  }
  return 0;
}

/* ------------------------------------------------------------ snapshot */

/* A piece of the snapshot file: bytes [off, off + len) of the payload of
** log entry `index`, kept at byte pos of the file. */
struct wal_piece {
  uint64_t index, off, len, pos;
  uint32_t crc;
};

/* Check a directory of k entries (32 bytes each) whose pieces hold m
** bytes, for a snapshot as of entry `last`, and turn it into pieces
** (stored at base + ...) in *out (NULL: check only).  0, or -1 if it is
** out of order, overlaps, names an entry past `last`, or does not add up
** to m. */
static int wal_dir_parse(const unsigned char *d, uint64_t k, uint64_t m,
                         uint64_t last, uint64_t base, struct wal_piece *out) {
  uint64_t i, sum = 0, pi = 0, pend = 0;
  for (i = 0; i < k; i++, d += 32) {
    uint64_t index = util_get64(d), off = util_get64(d + 8),
             len = util_get64(d + 16);
    if (index == 0 || index > last || len > WAL_MAX_RECORD ||
        off > WAL_MAX_RECORD || util_get32(d + 28) != 0)
      return -1;
    if (i > 0 && (index < pi || (index == pi && off < pend))) return -1;
    if (len > m - sum) return -1;
    if (out != NULL) {
      out[i].index = index;
      out[i].off = off;
      out[i].len = len;
      out[i].pos = base + sum;
      out[i].crc = util_get32(d + 24);
    }
    sum += len;
    pi = index;
    pend = off + len;
  }
  return sum == m ? 0 : -1;
}

static int wal_snap_start(struct wal *w, struct wal_snap_writer *sw,
                          const char *name, uint64_t index, uint64_t term,
                          uint64_t flags) {
  unsigned char h[WAL_SNAP_HEAD];
  char tmp[URSULA_PATH_LEN + 32];
  int e;
  memset(sw, 0, sizeof(*sw));
  sw->fs = w->fs;
  sw->name = name;
  snprintf(tmp, sizeof(tmp), "%s/%s.tmp", w->dir, name);
  sw->fd = w->fs->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (sw->fd < 0) return wal_errno_code(errno);
  if (index == 0) return URSULA_OK; /* an install: raw bytes follow */
  memset(h, 0, sizeof(h));
  memcpy(h, wal_snap_magic, 8);
  util_put64(h + 8, index);
  util_put64(h + 16, term);
  util_put64(h + 24, flags);
  sw->index = index;
  sw->term = term;
  sw->crc = util_crc32c(0, h, sizeof(h));
  if ((e = wal_pwrite_all(w->fs, sw->fd, h, sizeof(h), 0)) != 0) {
    wal_snap_abort(w, sw);
    return wal_errno_code(e);
  }
  sw->at = WAL_SNAP_HEAD;
  return URSULA_OK;
}

URSULA_PRIVATE int wal_snap_begin(struct wal *w, struct wal_snap_writer *sw,
                                  uint64_t index, uint64_t term) {
  return index == 0 ? URSULA_EINVAL
                    : wal_snap_start(w, sw, "snapshot", index, term, 0);
}

URSULA_PRIVATE int wal_image_begin(struct wal *w, struct wal_snap_writer *sw,
                                   uint64_t index, uint64_t term) {
  return index == 0 ? URSULA_EINVAL
                    : wal_snap_start(w, sw, "image", index, term,
                                     WAL_SNAP_IMAGE);
}

/* The file "image" as raw bytes, for a leader to send to a follower
** (the follower checks it whole: wal_install_commit). */
URSULA_PRIVATE int wal_image_open(struct wal *w, int *fd, uint64_t *bytes) {
  char path[URSULA_PATH_LEN + 32];
  snprintf(path, sizeof(path), "%s/image", w->dir);
  *fd = w->fs->open(path, O_RDONLY, 0);
  if (*fd < 0) return wal_errno_code(errno);
  if (w->fs->size(*fd, bytes) != 0) {
    int e = errno;
    w->fs->close(*fd);
    *fd = -1;
    return wal_errno_code(e);
  }
  return URSULA_OK;
}

URSULA_PRIVATE long wal_image_read(struct wal *w, int fd, void *p, size_t n,
                                   uint64_t at) {
  ssize_t k = w->fs->pread(fd, p, n, (off_t)at);
  return k < 0 ? -1 : (long)k;
}

URSULA_PRIVATE void wal_image_close(struct wal *w, int fd) {
  if (fd >= 0) w->fs->close(fd);
}

URSULA_PRIVATE void wal_image_remove(struct wal *w) {
  char path[URSULA_PATH_LEN + 32];
  snprintf(path, sizeof(path), "%s/image", w->dir);
  (void)w->fs->unlink(path);
}

URSULA_PRIVATE int wal_snap_put(struct wal_snap_writer *sw, const void *p,
                                size_t n) {
  int e;
  if (sw->fd < 0 || sw->index == 0 || sw->in_pieces) return URSULA_EINVAL;
  if ((e = wal_pwrite_all(sw->fs, sw->fd, p, n, (off_t)sw->at)) != 0)
    return wal_errno_code(e);
  sw->crc = util_crc32c(sw->crc, p, n);
  sw->at += n;
  sw->payload += n;
  return URSULA_OK;
}

URSULA_PRIVATE int wal_snap_piece(struct wal_snap_writer *sw, uint64_t index,
                                  uint64_t off, const void *p, size_t n) {
  unsigned char d[32];
  int e;
  if (sw->fd < 0 || sw->index == 0 || index == 0 || index > sw->index ||
      n > WAL_MAX_RECORD)
    return URSULA_EINVAL;
  if (sw->dir.len > 0) { /* ascending, no overlap */
    const unsigned char *q =
        (const unsigned char *)sw->dir.ptr + sw->dir.len - 32;
    uint64_t qi = util_get64(q), qend = util_get64(q + 8) + util_get64(q + 16);
    if (index < qi || (index == qi && off < qend)) return URSULA_EINVAL;
  }
  util_put64(d, index);
  util_put64(d + 8, off);
  util_put64(d + 16, n);
  util_put32(d + 24, util_crc32c(0, p, n));
  util_put32(d + 28, 0);
  if (buf_append(&sw->dir, d, sizeof(d)) != URSULA_OK) return URSULA_ENOMEM;
  sw->in_pieces = 1;
  if ((e = wal_pwrite_all(sw->fs, sw->fd, p, n, (off_t)sw->at)) != 0)
    return wal_errno_code(e);
  sw->at += n;
  sw->pieces += n;
  return URSULA_OK;
}

URSULA_PRIVATE void wal_snap_abort(struct wal *w, struct wal_snap_writer *sw) {
  char tmp[URSULA_PATH_LEN + 32];
  if (sw->fd >= 0) w->fs->close(sw->fd);
  sw->fd = -1;
  buf_free(&sw->dir);
  if (sw->name == NULL) return;
  snprintf(tmp, sizeof(tmp), "%s/%s.tmp", w->dir, sw->name);
  w->fs->unlink(tmp);
}

/* Open the snapshot file w->dir/name for reading; see wal_snap_open. */
static int wal_snap_open_file(struct wal *w, struct wal_snap_reader *sr,
                              const char *name, char *err) {
  struct os_fs *fs = w->fs;
  unsigned char h[WAL_SNAP_HEAD], t[WAL_SNAP_TAIL];
  char path[URSULA_PATH_LEN + 32];
  uint64_t size = 0, n, m, k;
  memset(sr, 0, sizeof(*sr));
  memset(h, 0, sizeof(h));
  memset(t, 0, sizeof(t));
  sr->fs = fs;
  snprintf(path, sizeof(path), "%s/%s", w->dir, name);
  sr->fd = fs->open(path, O_RDONLY, 0);
  if (sr->fd < 0) {
    if (errno == ENOENT) return URSULA_ENOTFOUND;
    snprintf(err, URSULA_ERRMSG_LEN, "%s: %s", path, strerror(errno));
    return URSULA_EIO;
  }
  n = m = k = 0;
  if (fs->size(sr->fd, &size) == 0 && size >= WAL_SNAP_HEAD + WAL_SNAP_TAIL &&
      fs->pread(sr->fd, h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
      fs->pread(sr->fd, t, sizeof(t), (off_t)(size - WAL_SNAP_TAIL)) ==
          (ssize_t)sizeof(t)) {
    n = util_get64(t);
    m = util_get64(t + 8);
    k = util_get64(t + 16);
  }
  size -= size >= WAL_SNAP_HEAD + WAL_SNAP_TAIL ? WAL_SNAP_HEAD + WAL_SNAP_TAIL
                                                : size;
  if (memcmp(h, wal_snap_magic_v2, 8) == 0) {
    fs->close(sr->fd);
    sr->fd = -1;
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s is in snapshot format 2 (written by an older build of "
             "ursula); this build reads format 3 only: read the data out "
             "with the older build, or start on an empty --wal-dir",
             path);
    return URSULA_EINVAL;
  }
  if (memcmp(h, wal_snap_magic, 8) != 0 || n > size || m > size - n ||
      k > (size - n - m) / 32 || n + m + 32 * k != size ||
      util_get64(h + 8) == 0 || util_get64(h + 8) == UINT64_MAX || /* no next */
      (util_get64(h + 24) & ~(uint64_t)WAL_SNAP_IMAGE) != 0) {
    fs->close(sr->fd);
    sr->fd = -1;
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s is damaged (bad header or lengths); the state it holds is "
             "lost unless it is restored from a backup",
             path);
    return URSULA_ECORRUPT;
  }
  sr->index = util_get64(h + 8);
  sr->term = util_get64(h + 16);
  sr->flags = util_get64(h + 24);
  sr->size = n;
  sr->pieces = m;
  sr->n_pieces = k;
  sr->at = 0;
  sr->crc = util_crc32c(0, h, sizeof(h));
  sr->want_crc = util_get32(t + 24);
  return URSULA_OK;
}

URSULA_PRIVATE int wal_snap_open(struct wal *w, struct wal_snap_reader *sr,
                                 char *err) {
  return wal_snap_open_file(w, sr, "snapshot", err);
}

URSULA_PRIVATE long wal_snap_read(struct wal_snap_reader *sr, void *p,
                                  size_t n) {
  ssize_t k;
  unsigned char t[24];
  uint64_t dn;
  if (sr->fd < 0) return -1;
  if (n > sr->size - sr->at) n = (size_t)(sr->size - sr->at);
  if (n == 0) { /* the end: the directory, then the CRC of it all */
    if (sr->dir.len > 0 || sr->n_pieces > SIZE_MAX / 32) return -1;
    dn = sr->n_pieces * 32;
    if (buf_reserve(&sr->dir, (size_t)dn) != URSULA_OK) return -1;
    if (dn > 0 && sr->fs->pread(sr->fd, sr->dir.ptr, (size_t)dn,
                                (off_t)(WAL_SNAP_HEAD + sr->size +
                                        sr->pieces)) != (ssize_t)dn)
      return -1;
    sr->dir.len = (size_t)dn;
    util_put64(t, sr->size); /* the CRC covers the lengths too */
    util_put64(t + 8, sr->pieces);
    util_put64(t + 16, sr->n_pieces);
    if (util_crc32c(util_crc32c(sr->crc, sr->dir.ptr, sr->dir.len), t, 24) !=
            sr->want_crc ||
        wal_dir_parse((const unsigned char *)sr->dir.ptr, sr->n_pieces,
                      sr->pieces, sr->index, 0, NULL) != 0)
      return -1;
    return 0;
  }
  k = sr->fs->pread(sr->fd, p, n, (off_t)(WAL_SNAP_HEAD + sr->at));
  if (k <= 0) return -1;
  sr->crc = util_crc32c(sr->crc, p, (size_t)k);
  sr->at += (uint64_t)k;
  return (long)k;
}

URSULA_PRIVATE void wal_snap_close(struct wal_snap_reader *sr) {
  if (sr->fd >= 0) sr->fs->close(sr->fd);
  sr->fd = -1;
  buf_free(&sr->dir);
}

/* The pieces of the directory dir (k entries, m bytes) into w, as the
** current snapshot's.  URSULA_OK or URSULA_ENOMEM. */
static int wal_take_pieces(struct wal *w, const struct buf *dir, uint64_t k,
                           uint64_t m, uint64_t payload) {
  struct wal_piece *pc = NULL;
  if (k > 0) {
    pc = (struct wal_piece *)URSULA_MALLOC((size_t)k * sizeof(*pc));
    if (pc == NULL) return URSULA_ENOMEM;
    wal_dir_parse((const unsigned char *)dir->ptr, k, m, UINT64_MAX,
                  WAL_SNAP_HEAD + payload, pc);
  }
  URSULA_FREE(w->pieces);
  w->pieces = pc;
  w->n_pieces = (size_t)k;
  if (w->snap_fd >= 0) w->fs->close(w->snap_fd);
  w->snap_fd = -1;
  w->pc_pos = 0;
  return URSULA_OK;
}

/* Finish the file of sw: the directory and the tail, synced; renamed from
** its temporary name to `name`, the directory synced.  0 or an errno. */
static int wal_snap_finish(struct wal *w, struct wal_snap_writer *sw,
                           const char *name) {
  unsigned char t[WAL_SNAP_TAIL];
  char tmp[URSULA_PATH_LEN + 32], path[URSULA_PATH_LEN + 32];
  struct os_fs *fs = w->fs;
  uint32_t crc;
  int e;
  util_put64(t, sw->payload);
  util_put64(t + 8, sw->pieces);
  util_put64(t + 16, (uint64_t)sw->dir.len / 32);
  crc = util_crc32c(sw->crc, sw->dir.ptr, sw->dir.len);
  util_put32(t + 24, util_crc32c(crc, t, 24));
  util_put32(t + 28, 0);
  snprintf(tmp, sizeof(tmp), "%s/%s.tmp", w->dir, sw->name);
  snprintf(path, sizeof(path), "%s/%s", w->dir, name);
  e = wal_pwrite_all(fs, sw->fd, sw->dir.ptr, sw->dir.len, (off_t)sw->at);
  if (e == 0)
    e = wal_pwrite_all(fs, sw->fd, t, sizeof(t),
                       (off_t)(sw->at + sw->dir.len));
  if (e == 0 && fs->sync(sw->fd) != 0) e = errno;
  fs->close(sw->fd);
  sw->fd = -1;
  if (e == 0 && fs->rename(tmp, path) != 0) e = errno;
  if (e == 0 && fs->sync_dir(w->dir) != 0) e = errno ? errno : EIO;
  if (e != 0) fs->unlink(tmp);
  return e;
}

URSULA_PRIVATE int wal_snap_commit(struct wal *w, struct wal_snap_writer *sw) {
  int e, local;
  if (sw->fd < 0 || sw->index == 0) return URSULA_EIO;
  local = strcmp(sw->name, "snapshot") == 0;
  e = wal_snap_finish(w, sw, sw->name);
  if (e == 0 && local) {
    w->snap_index = sw->index;
    w->snap_term = sw->term;
    w->snap_flags = 0;
    w->since_snap = 0;
    /* the old file's pieces are gone with it: only the new ones count */
    if (wal_take_pieces(w, &sw->dir, sw->dir.len / 32, sw->pieces,
                        sw->payload) != URSULA_OK) {
      buf_free(&sw->dir);
      return wal_fail(w, ENOMEM);
    }
  }
  buf_free(&sw->dir);
  return e != 0 ? wal_errno_code(e) : URSULA_OK;
}

URSULA_PRIVATE int wal_save_snapshot(struct wal *w, uint64_t index,
                                     uint64_t term, const void *p, size_t n) {
  struct wal_snap_writer sw;
  size_t off = 0;
  int rc = wal_snap_begin(w, &sw, index, term);
  if (rc != URSULA_OK) return rc;
  while (rc == URSULA_OK && off < n) { /* in chunks, as a sender would */
    size_t k = n - off < WAL_SNAP_CHUNK ? n - off : WAL_SNAP_CHUNK;
    rc = wal_snap_put(&sw, (const char *)p + off, k);
    off += k;
  }
  if (rc == URSULA_OK) return wal_snap_commit(w, &sw);
  wal_snap_abort(w, &sw);
  return rc;
}

/* Read the snapshot's payload whole into out (for the state machine's
** restore), checking its CRC, and take its pieces.  URSULA_OK (out empty
** and snap_index 0 if there is none) or URSULA_ECORRUPT / an I/O error
** with err set. */
static int wal_load_snapshot(struct wal *w, struct buf *out, char *err) {
  struct wal_snap_reader sr;
  int rc = wal_snap_open(w, &sr, err);
  long k;
  out->len = 0;
  if (rc == URSULA_ENOTFOUND) return URSULA_OK;
  if (rc != URSULA_OK) return rc;
  if (sr.size > SIZE_MAX || buf_reserve(out, (size_t)sr.size) != URSULA_OK) {
    wal_snap_close(&sr);
    return URSULA_ENOMEM;
  }
  for (;;) {
    size_t want = out->cap - out->len - 1; /* (the NUL's byte stays) */
    if (want > WAL_SNAP_CHUNK) want = WAL_SNAP_CHUNK;
    k = wal_snap_read(&sr, out->ptr + out->len, want);
    if (k <= 0) break;
    out->len += (size_t)k;
  }
  if (k < 0 || out->len != sr.size) {
    wal_snap_close(&sr);
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s/snapshot is damaged (CRC mismatch, or its directory of "
             "pieces is out of order); the state it holds is lost unless it "
             "is restored from a backup",
             w->dir);
    return URSULA_ECORRUPT;
  }
  rc = wal_take_pieces(w, &sr.dir, sr.n_pieces, sr.pieces, sr.size);
  wal_snap_close(&sr);
  if (rc != URSULA_OK) return rc;
  w->snap_index = sr.index;
  w->snap_term = sr.term;
  w->snap_flags = sr.flags;
  return URSULA_OK;
}

/* The piece that holds bytes [off, off + len) of entry index, or NULL. */
static const struct wal_piece *wal_piece_find(const struct wal *w,
                                              uint64_t index, uint64_t off,
                                              uint64_t len) {
  size_t lo = 0, hi = w->n_pieces;
  const struct wal_piece *p;
  while (lo < hi) { /* the first piece after (index, off) */
    size_t mid = lo + (hi - lo) / 2;
    p = &w->pieces[mid];
    if (p->index < index || (p->index == index && p->off <= off))
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0) return NULL;
  p = &w->pieces[lo - 1];
  if (p->index != index || off - p->off > p->len || len > p->len - (off - p->off))
    return NULL;
  return p;
}

/* Append bytes [off, off + len) of entry index from piece p to out; the
** whole piece is read and its CRC checked (the last one read is kept). */
static int wal_piece_read(struct wal *w, const struct wal_piece *p,
                          uint64_t off, uint64_t len, struct buf *out) {
  if (w->pc_pos != p->pos + 1) {
    char path[URSULA_PATH_LEN + 32];
    snprintf(path, sizeof(path), "%s/snapshot", w->dir);
    if (w->snap_fd < 0 && (w->snap_fd = w->fs->open(path, O_RDONLY, 0)) < 0)
      return errno == ENOENT ? URSULA_ECORRUPT : URSULA_EIO;
    w->pc_pos = 0;
    w->pc.len = 0;
    if (buf_reserve(&w->pc, (size_t)p->len) != URSULA_OK) return URSULA_ENOMEM;
    if ((p->len > 0 && w->fs->pread(w->snap_fd, w->pc.ptr, (size_t)p->len,
                                    (off_t)p->pos) != (ssize_t)p->len) ||
        util_crc32c(0, w->pc.ptr, (size_t)p->len) != p->crc) {
      LOG_E("%s: the piece of entry %llu at byte %llu fails its check", path,
            (unsigned long long)p->index, (unsigned long long)p->pos);
      return URSULA_ECORRUPT;
    }
    w->pc.len = (size_t)p->len;
    w->pc_pos = p->pos + 1;
  }
  return buf_append(out, w->pc.ptr + (off - p->off), (size_t)len);
}

URSULA_PRIVATE int wal_has_piece(const struct wal *w, uint64_t index,
                                 uint64_t off, uint64_t len) {
  return wal_piece_find(w, index, off, len) != NULL;
}

URSULA_PRIVATE uint64_t wal_bytes_since_snapshot(const struct wal *w) {
  return w->since_snap;
}

/* ------------------------------------------------------------ open */

/* Build the HARD record of (term, vote) at out (48 bytes). */
static void wal_hard_record(unsigned char *out, uint64_t term, uint64_t vote,
                            uint64_t index) {
  util_put64(out + WAL_RECORD_HEADER, term);
  util_put64(out + WAL_RECORD_HEADER + 8, vote);
  wal_seal_record(out, WAL_HARD, term, index, WAL_HARD_BYTES);
}

/* Start a new last segment whose first entry will be `first`: its header
** and a HARD record of the durable hard state, synced, the directory
** synced.  The previous last segment (if any) is then sealed. */
static int wal_seg_create(struct wal *w, uint64_t first) {
  struct os_fs *fs = w->fs;
  unsigned char h[WAL_HEADER_BYTES + WAL_RECORD_HEADER + WAL_HARD_BYTES];
  unsigned char seal[WAL_RECORD_HEADER + WAL_SEAL_BYTES];
  char path[URSULA_PATH_LEN + 32];
  int fd, e, prev_fd = w->fd;
  memset(h, 0, sizeof(h));
  memcpy(h, wal_magic, 8);
  util_put64(h + 8, first);
  util_put32(h + 24, util_crc32c(0, h, 24));
  wal_hard_record(h + WAL_HEADER_BYTES, w->term, w->vote, first - 1);
  wal_seg_path(w, first, path, sizeof(path));
  fd = fs->open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return wal_errno_code(errno);
  if ((e = wal_pwrite_all(w->fs, fd, h, sizeof(h), 0)) != 0 ||
      (fs->sync(fd) != 0 && (e = errno) != 0) ||
      (w->fs->sync_dir(w->dir) != 0 && (e = errno ? errno : EIO) != 0)) {
    fs->close(fd);
    fs->unlink(path);
    return wal_errno_code(e);
  }
  if (prev_fd >= 0) { /* seal the previous segment: it is complete */
    util_put64(seal + WAL_RECORD_HEADER, first);
    wal_seal_record(seal, WAL_SEAL, w->last_term, first - 1, WAL_SEAL_BYTES);
    if ((e = wal_pwrite_all(w->fs, prev_fd, seal, sizeof(seal), w->size)) != 0 ||
        (fs->sync(prev_fd) != 0 && (e = errno) != 0)) {
      /* part of the SEAL may be there.  Cut it off again, then drop the
      ** new segment: the log is as before the roll.  If even the cut
      ** fails, keep the new segment (a sealed segment needs its
      ** successor) and fail the log: wal_recover() cuts again. */
      fs->close(fd);
      if (fs->ftruncate(prev_fd, w->size) != 0 || fs->sync(prev_fd) != 0)
        return wal_fail(w, e);
      fs->unlink(path);
      w->fs->sync_dir(w->dir);
      return wal_errno_code(e);
    }
  }
  if (wal_seg_push(w, first) != URSULA_OK) {
    fs->close(fd);
    return URSULA_ENOMEM;
  }
  w->segs[w->n_segs - 1].mapped = 1;
  if (prev_fd >= 0) fs->close(prev_fd);
  w->fd = fd;
  w->size = w->written = (off_t)sizeof(h);
  return URSULA_OK;
}

/* wal_open's listing: note each segment file. */
static int wal_open_entry(void *arg, const char *name) {
  struct wal *w = (struct wal *)arg;
  uint64_t first;
  return wal_seg_name(name, &first) ? wal_seg_push(w, first) : URSULA_OK;
}

/* Whether path exists (an open that does not fail with ENOENT). */
static int wal_exists(struct os_fs *fs, const char *path) {
  int fd = fs->open(path, O_RDONLY, 0);
  if (fd >= 0) fs->close(fd);
  return fd >= 0 || errno != ENOENT;
}

URSULA_PRIVATE int wal_open(struct wal **out, struct env *env, const char *dir,
                            int must_exist, char *err) {
  struct os_fs *fs = (env != NULL ? env : env_real())->fs;
  struct wal *w;
  char path[URSULA_PATH_LEN + 32];
  int rc;
  *out = NULL;
  if (strlen(dir) >= URSULA_PATH_LEN) {
    snprintf(err, URSULA_ERRMSG_LEN, "WAL directory path is too long");
    return URSULA_EINVAL;
  }
  if (must_exist && !wal_exists(fs, dir)) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s is missing, but the data directory says this group has a "
             "log; not starting without it (restore it, or start on an "
             "empty --wal-dir to begin anew)",
             dir);
    return URSULA_ECORRUPT;
  }
  if (fs->mkdir(dir, 0755) != 0 && errno != EEXIST) {
    snprintf(err, URSULA_ERRMSG_LEN, "mkdir %s: %s", dir, strerror(errno));
    return URSULA_EIO;
  }
  w = (struct wal *)URSULA_MALLOC(sizeof(*w));
  if (w == NULL) return URSULA_ENOMEM;
  memset(w, 0, sizeof(*w));
  w->fs = fs;
  memcpy(w->dir, dir, strlen(dir) + 1);
  w->fd = -1;
  w->snap_fd = -1;
  w->segment_bytes = WAL_SEGMENT_BYTES;
  w->first_index = 1;
  snprintf(path, sizeof(path), "%.1024s/state", dir);
  if (wal_exists(fs, path)) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s holds a log in WAL format 1 (written by an older ursula); "
             "this build reads format 2 only: read the data out with the "
             "older build, or start on an empty --wal-dir",
             dir);
    URSULA_FREE(w);
    return URSULA_EINVAL;
  }
  rc = fs->list(dir, wal_open_entry, w);
  if (rc != 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "listing %s: %s", dir,
             rc < 0 ? strerror(errno) : ursula_strerror(rc));
    wal_close(w);
    return rc < 0 ? URSULA_EIO : rc;
  }
  if (w->n_segs > 1) qsort(w->segs, w->n_segs, sizeof(*w->segs), wal_seg_cmp);
  if (w->n_segs > 0) w->first_index = w->segs[0].first_index;
  if (must_exist && w->n_segs == 0) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s has no log segment, but the data directory says this group "
             "has a log; not starting without it (restore the *.wal files)",
             dir);
    wal_close(w);
    return URSULA_ECORRUPT;
  }
  w->last_index = w->durable_index = w->first_index - 1;
  *out = w;
  return URSULA_OK;
}

URSULA_PRIVATE void wal_close(struct wal *w) {
  size_t i;
  if (w == NULL) return;
  if (w->fd >= 0) w->fs->close(w->fd);
  for (i = 0; i < w->n_segs; i++) wal_seg_release(w->fs, &w->segs[i]);
  URSULA_FREE(w->segs);
  buf_free(&w->rd);
  if (w->snap_fd >= 0) w->fs->close(w->snap_fd);
  URSULA_FREE(w->pieces);
  buf_free(&w->pc);
  URSULA_FREE(w);
}

/* ------------------------------------------------------------ scanning */

/* What wal_scan() found in one segment image. */
struct wal_scan {
  size_t good;          /* bytes of the valid prefix (0: bad header) */
  uint64_t last;        /* last entry index in the valid prefix */
  uint64_t last_term;   /* its term (in: the term before the segment) */
  int sealed;           /* the valid prefix ends with a SEAL record */
  int hard;             /* a HARD record was seen: */
  uint64_t term, vote;  /* the last one's */
  int v1;               /* the header is a format-1 header */
};

/* Check the segment image p[0..len) whose name says `first`, noting the
** file offset of each entry in sg (when sg is not NULL) and calling fn
** for each valid entry above `skip` (when fn is not NULL).  Stops at the
** first bad record, or when fn fails (*fn_rc). */
static void wal_scan(const unsigned char *p, size_t len, uint64_t first,
                     struct wal_seg *sg, uint64_t skip,
                     int (*fn)(void *, const struct wal_entry *), void *arg,
                     int *fn_rc, struct wal_scan *out) {
  size_t at = WAL_HEADER_BYTES;
  uint64_t expect = first;
  out->good = 0;
  out->last = first - 1;
  out->sealed = out->hard = out->v1 = 0;
  *fn_rc = URSULA_OK;
  if (len >= 8 && memcmp(p, wal_magic_v1, 8) == 0) out->v1 = 1;
  if (len < WAL_HEADER_BYTES || memcmp(p, wal_magic, 8) != 0 ||
      util_get64(p + 8) != first || util_get32(p + 24) != util_crc32c(0, p, 24))
    return;
  if (sg != NULL) sg->n_offs = 0;
  for (;;) {
    const unsigned char *r = p + at;
    uint32_t n;
    int type;
    uint64_t term, index;
    if (out->sealed || !wal_record_ok(r, len - at, &n)) break;
    type = r[8];
    term = util_get64(r + 16);
    index = util_get64(r + 24);
    if (wal_is_entry(type)) {
      struct wal_entry e;
      if (index != expect || term < out->last_term) break;
      if (sg != NULL && wal_seg_note(sg, at) != URSULA_OK) {
        *fn_rc = URSULA_ENOMEM;
        break;
      }
      if (fn != NULL && index > skip) { /* at or below skip: snapshotted */
        e.term = term;
        e.index = index;
        e.type = type;
        e.data = r + WAL_RECORD_HEADER;
        e.len = n;
        if ((*fn_rc = fn(arg, &e)) != URSULA_OK) break;
      }
      out->last = index;
      out->last_term = term;
      expect++;
    } else {
      if (index != expect - 1) break;
      if (type == WAL_HARD) {
        out->hard = 1;
        out->term = util_get64(r + WAL_RECORD_HEADER);
        out->vote = util_get64(r + WAL_RECORD_HEADER + 8);
      } else if (util_get64(r + WAL_RECORD_HEADER) != expect) {
        break; /* a SEAL must name the next index */
      } else {
        out->sealed = 1;
      }
    }
    at += WAL_RECORD_HEADER + n;
  }
  out->good = at;
}

/* Whether a valid record whose index could follow `last` starts anywhere
** in p[from..len): if one does, the bad bytes before it are not a torn
** tail but damage. */
static int wal_valid_after(const unsigned char *p, size_t len, size_t from,
                           uint64_t last) {
  size_t at;
  for (at = from; at + WAL_RECORD_HEADER <= len; at++) {
    const unsigned char *r = p + at;
    uint64_t index = util_get64(r + 24);
    uint32_t n;
    /* cheap filters first: a plausible index, the zero bytes, a type */
    if (index < last ||
        index - last > (uint64_t)(at - from + 1) / WAL_RECORD_HEADER + 2)
      continue; /* entries lost in the bad bytes: at most one per header */
    if (r[9] != 0 || r[15] != 0 || r[8] == 0) continue;
    if (wal_record_ok(r, len - at, &n)) return 1;
  }
  return 0;
}

/* ------------------------------------------------------------ replay */

static int wal_seal_file(struct wal *w, const char *path, off_t at,
                         uint64_t last, uint64_t term);

/* Whether segment k's header is whole and right. */
static int wal_header_ok(struct wal *w, size_t k) {
  unsigned char h[WAL_HEADER_BYTES];
  char path[URSULA_PATH_LEN + 32];
  int fd, ok;
  wal_seg_path(w, w->segs[k].first_index, path, sizeof(path));
  if ((fd = w->fs->open(path, O_RDONLY, 0)) < 0) return 0;
  ok = w->fs->pread(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
       memcmp(h, wal_magic, 8) == 0 &&
       util_get64(h + 8) == w->segs[k].first_index &&
       util_get32(h + 24) == util_crc32c(0, h, 24);
  w->fs->close(fd);
  return ok;
}

/* Segment k (not the last) is one replay does not read (the snapshot
** covers it): check that it ends with the SEAL naming segment k + 1, so a
** segment missing between them is refused here, not found by a read.  One
** that a crashed roll left unsealed is read whole instead, and sealed if
** its entries run up to segment k + 1. */
static int wal_check_seal(struct wal *w, size_t k, char *err) {
  unsigned char r[WAL_RECORD_HEADER + WAL_SEAL_BYTES];
  char path[URSULA_PATH_LEN + 32];
  uint64_t next = w->segs[k + 1].first_index, size = 0;
  struct wal_scan sc;
  struct buf img;
  uint32_t n;
  int fd, fn_rc, rc = URSULA_OK;
  wal_seg_path(w, w->segs[k].first_index, path, sizeof(path));
  fd = w->fs->open(path, O_RDONLY, 0);
  if (fd < 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "%s: %s", path, strerror(errno));
    return URSULA_EIO;
  }
  if (w->fs->size(fd, &size) == 0 && size >= sizeof(r) &&
      w->fs->pread(fd, r, sizeof(r), (off_t)(size - sizeof(r))) ==
          (ssize_t)sizeof(r) &&
      wal_record_ok(r, sizeof(r), &n) && r[8] == WAL_SEAL &&
      util_get64(r + WAL_RECORD_HEADER) == next) {
    w->fs->close(fd);
    return URSULA_OK;
  }
  w->fs->close(fd);
  memset(&img, 0, sizeof(img));
  memset(&sc, 0, sizeof(sc));
  if ((rc = wal_read_path(w->fs, path, &img)) == URSULA_OK) {
    wal_scan((const unsigned char *)img.ptr, img.len, w->segs[k].first_index,
             NULL, 0, NULL, NULL, &fn_rc, &sc);
    if (sc.good != img.len || sc.last + 1 != next)
      rc = URSULA_ECORRUPT;
    else if (!sc.sealed && wal_header_ok(w, k + 1))
      rc = wal_seal_file(w, path, (off_t)sc.good, sc.last, sc.last_term);
    /* (if the next one's header is bad, the crash came while it was
    ** created: replay drops it and seals this one to a new one) */
  }
  buf_free(&img);
  if (rc == URSULA_ECORRUPT)
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s does not end where segment %020llu.wal begins: the entries "
             "between are missing, or the file is damaged at byte %llu; not "
             "starting without them",
             path, (unsigned long long)next, (unsigned long long)sc.good);
  else if (rc != URSULA_OK)
    snprintf(err, URSULA_ERRMSG_LEN, "%s: %s", path, ursula_strerror(rc));
  return rc;
}

/* Append a SEAL to the segment file at path, whose valid bytes end at `at`
** and whose last entry is (last, term): the next segment starts at
** last + 1.  Synced. */
static int wal_seal_file(struct wal *w, const char *path, off_t at,
                         uint64_t last, uint64_t term) {
  unsigned char seal[WAL_RECORD_HEADER + WAL_SEAL_BYTES];
  int fd = w->fs->open(path, O_RDWR, 0), e;
  if (fd < 0) return wal_errno_code(errno);
  util_put64(seal + WAL_RECORD_HEADER, last + 1);
  wal_seal_record(seal, WAL_SEAL, term, last, WAL_SEAL_BYTES);
  e = wal_pwrite_all(w->fs, fd, seal, sizeof(seal), at);
  if (e == 0 && w->fs->sync(fd) != 0) e = errno;
  w->fs->close(fd);
  return e != 0 ? wal_errno_code(e) : URSULA_OK;
}

/* Read segment k whole (one replay skipped) and scan it: its valid size,
** its last HARD record, whether it is sealed.  URSULA_OK; URSULA_ECORRUPT
** (err set) if it is damaged; or an I/O error. */
static int wal_rescan(struct wal *w, size_t k, struct wal_scan *out,
                      char *err) {
  char path[URSULA_PATH_LEN + 32];
  struct buf img;
  int fn_rc, rc;
  memset(&img, 0, sizeof(img));
  memset(out, 0, sizeof(*out));
  wal_seg_path(w, w->segs[k].first_index, path, sizeof(path));
  if ((rc = wal_read_path(w->fs, path, &img)) == URSULA_OK) {
    wal_scan((const unsigned char *)img.ptr, img.len, w->segs[k].first_index,
             NULL, 0, NULL, NULL, &fn_rc, out);
    if (out->good != img.len || out->good < WAL_HEADER_BYTES) {
      snprintf(err, URSULA_ERRMSG_LEN,
               "%s is damaged at byte %llu; not starting rather than "
               "dropping acknowledged entries",
               path, (unsigned long long)out->good);
      rc = URSULA_ECORRUPT;
    }
  } else {
    snprintf(err, URSULA_ERRMSG_LEN, "%s: %s", path, ursula_strerror(rc));
  }
  buf_free(&img);
  return rc;
}

URSULA_PRIVATE int wal_replay(struct wal *w,
                              int (*restore)(void *arg, const void *p,
                                             size_t len),
                              int (*fn)(void *arg, const struct wal_entry *e),
                              void *arg, struct buf *scratch,
                              struct wal_stats *st, char *err) {
  struct os_fs *fs = w->fs;
  struct buf own, *img = scratch != NULL ? scratch : &own;
  size_t i = 0, k, first_read;
  int rc, fn_rc = URSULA_OK, prev_sealed = 0;
  size_t prev_good = 0; /* valid bytes of the segment before the last */
  size_t pend_good = 0; /* the segment before is unsealed: its bytes, */
  uint64_t pend_last = 0, pend_term = 0; /* last entry and its term */
  uint64_t last, term;
  struct wal_scan sc;
  char path[URSULA_PATH_LEN + 32];
  memset(st, 0, sizeof(*st));
  memset(&own, 0, sizeof(own));
  memset(&sc, 0, sizeof(sc));
  err[0] = '\0';
  /* the snapshot first, then the entries after it */
  rc = wal_load_snapshot(w, img, err);
  if (rc == URSULA_OK && w->snap_index > 0) {
    st->snapshot_index = w->snap_index;
    rc = restore != NULL ? restore(arg, img->ptr, img->len) : URSULA_EINVAL;
    if (rc != URSULA_OK)
      snprintf(err, URSULA_ERRMSG_LEN, "%s/snapshot: %s", w->dir,
               rc == URSULA_ECORRUPT ? "does not decode as a state"
                                     : ursula_strerror(rc));
  }
  if (rc != URSULA_OK) goto out;
  rc = URSULA_ECORRUPT;
  if (w->n_segs == 0 && w->snap_index > 0) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s has a snapshot at entry %llu but no log segment; not "
             "starting without them (restore the *.wal files)",
             w->dir, (unsigned long long)w->snap_index);
    goto out;
  }
  if (w->n_segs > 0 && w->snap_index == 0 && w->segs[0].first_index != 1) {
    wal_seg_path(w, w->segs[0].first_index, path, sizeof(path));
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s: the log starts at entry %llu, but there is no snapshot of "
             "the entries before it (the file \"snapshot\" beside it is "
             "missing); not starting without it",
             path, (unsigned long long)w->segs[0].first_index);
    goto out;
  }
  if (w->snap_index > 0) { /* skip segments wholly covered by it */
    while (i + 1 < w->n_segs && w->segs[i + 1].first_index <= w->snap_index + 1)
      i++;
    /* not read, but none may be missing: streams may name their entries
    ** (not so under an installed image, which carries every byte the
    ** state names up to its index: what is below it is an old log) */
    for (k = 0; k < i && !(w->snap_flags & WAL_SNAP_IMAGE); k++)
      if ((rc = wal_check_seal(w, k, err)) != URSULA_OK) goto out;
    rc = URSULA_ECORRUPT;
    if (w->segs[i].first_index > w->snap_index + 1) {
      wal_seg_path(w, w->segs[i].first_index, path, sizeof(path));
      snprintf(err, URSULA_ERRMSG_LEN,
               "%s: entries %llu to %llu are missing (after the snapshot, "
               "before this segment); not starting without them",
               path, (unsigned long long)w->snap_index + 1,
               (unsigned long long)w->segs[i].first_index - 1);
      goto out;
    }
  }
  first_read = i;
  last = w->n_segs > 0 ? w->segs[i].first_index - 1 : w->snap_index;
  term = w->snap_term;
  sc.last_term = 0;
  for (; i < w->n_segs; i++) {
    struct wal_seg *sg = &w->segs[i];
    int is_last = i + 1 == w->n_segs;
    wal_seg_path(w, sg->first_index, path, sizeof(path));
    if (sg->first_index != last + 1) { /* a segment is missing */
      snprintf(err, URSULA_ERRMSG_LEN,
               "%s: entries %llu to %llu are missing (a segment file before "
               "this one is gone); not starting without them",
               path, (unsigned long long)last + 1,
               (unsigned long long)sg->first_index - 1);
      goto out;
    }
    if ((rc = wal_read_path(w->fs, path, img)) != URSULA_OK) {
      snprintf(err, URSULA_ERRMSG_LEN, "%s: %s", path, ursula_strerror(rc));
      goto out;
    }
    rc = URSULA_ECORRUPT;
    /* the first segment read may hold entries before the snapshot, of
    ** older terms than the snapshot's */
    sc.last_term = sg->first_index <= w->snap_index ? 0 : term;
    wal_scan((const unsigned char *)img->ptr, img->len, sg->first_index, sg,
             w->snap_index, fn, arg, &fn_rc, &sc);
    if (fn_rc != URSULA_OK) {
      rc = fn_rc;
      if (err[0] == '\0')
        snprintf(err, URSULA_ERRMSG_LEN, "%s: %s", path, ursula_strerror(rc));
      goto out;
    }
    sg->mapped = 1;
    { /* entries of this segment handed to fn */
      uint64_t lo = sg->first_index > w->snap_index ? sg->first_index
                                                    : w->snap_index + 1;
      if (sc.last >= lo) st->entries += sc.last - lo + 1;
    }
    st->bytes += sc.good;
    last = sc.last;
    term = sc.last_term;
    if (sc.hard) {
      w->term = sc.term;
      w->vote = sc.vote;
    }
    if (sc.v1) {
      snprintf(err, URSULA_ERRMSG_LEN,
               "%s is in WAL format 1 (written by an older ursula); this "
               "build reads format 2 only: read the data out with the older "
               "build, or start on an empty --wal-dir",
               path);
      rc = URSULA_EINVAL;
      goto out;
    }
    if (sc.good < img->len || (sc.good == 0 && !is_last) ||
        (sc.good == 0 && prev_sealed)) {
      int bad_head = sc.good == 0 && prev_sealed;
      st->cut_at = sc.good;
      if (!is_last || bad_head ||
          wal_valid_after((const unsigned char *)img->ptr, img->len,
                          sc.good + 1, last)) {
        snprintf(err, URSULA_ERRMSG_LEN,
                 "%s is damaged at byte %llu (the record there fails its "
                 "check, and %s); not starting rather than dropping "
                 "acknowledged entries: restore the file, or move the data "
                 "directory aside",
                 path, (unsigned long long)sc.good,
                 !is_last      ? "later segments follow it"
                 : bad_head ? "the segment before it is sealed"
                               : "valid records follow it");
        goto out;
      }
      st->cut_bytes = img->len - sc.good; /* a torn tail: cut below */
    }
    if (pend_good > 0 && sc.good > 0) {
      /* a crash came between creating this segment and sealing the one
      ** before: this one's header is good, so seal that one now, and
      ** losing this one later is seen as such */
      wal_seg_path(w, w->segs[i - 1].first_index, path, sizeof(path));
      if ((rc = wal_seal_file(w, path, (off_t)pend_good, pend_last,
                              pend_term)) != URSULA_OK) {
        snprintf(err, URSULA_ERRMSG_LEN, "%s: sealing it: %s", path,
                 ursula_strerror(rc));
        goto out;
      }
      rc = URSULA_ECORRUPT;
      wal_seg_path(w, sg->first_index, path, sizeof(path));
    }
    pend_good = !is_last && !sc.sealed ? sc.good : 0;
    pend_last = last;
    pend_term = term;
    if (!is_last) prev_good = sc.good;
    prev_sealed = sc.sealed;
    if (is_last && sc.sealed) {
      snprintf(err, URSULA_ERRMSG_LEN,
               "%s ends with a seal naming segment %020llu.wal, which is "
               "missing; not starting without it",
               path, (unsigned long long)last + 1);
      goto out;
    }
  }
  if (last < w->snap_index && (w->snap_flags & WAL_SNAP_IMAGE)) {
    /* an install cut short after its image became the snapshot
    ** (wal_install_commit): the old log is wholly below it; finish */
    w->since_snap = 0;
    w->last_index = w->durable_index = w->snap_index;
    w->last_term = w->durable_term = w->snap_term;
    w->next_term = w->term;
    w->next_vote = w->vote;
    LOG_I("%s: finishing the install of the snapshot at entry %llu", w->dir,
          (unsigned long long)w->snap_index);
    if ((rc = wal_seg_create(w, w->snap_index + 1)) == URSULA_OK)
      rc = wal_compact(w, w->snap_index);
    goto out;
  }
  if (last < w->snap_index) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s: the log ends at entry %llu, before its snapshot (%llu)",
             w->dir, (unsigned long long)last,
             (unsigned long long)w->snap_index);
    goto out;
  }
  rc = URSULA_OK;
  w->since_snap = st->bytes;
  w->last_index = w->durable_index = last;
  w->last_term = w->durable_term = term;
  w->next_term = w->term;
  w->next_vote = w->vote;
  if (w->n_segs == 0) {
    rc = wal_seg_create(w, last + 1);
    goto out;
  }
  if (sc.good < WAL_HEADER_BYTES) {
    /* the last segment's header is bad: a crash while it was created
    ** (its predecessor is not sealed: checked above, or below if replay
    ** skipped it) */
    uint64_t bad_first = w->segs[w->n_segs - 1].first_index;
    /* an install's first segment: the old log below is not sealed to it */
    int fresh = (w->snap_flags & WAL_SNAP_IMAGE) &&
                bad_first == w->snap_index + 1;
    wal_seg_path(w, bad_first, path, sizeof(path));
    wal_seg_release(w->fs, &w->segs[w->n_segs - 1]);
    w->n_segs--;
    fs->unlink(path);
    w->fs->sync_dir(w->dir);
    if (w->n_segs > 0 && first_read > w->n_segs - 1) {
      /* the one before was skipped (the snapshot covers it), but its size
      ** and the latest hard state are in it: read it now */
      struct wal_scan ps;
      if ((rc = wal_rescan(w, w->n_segs - 1, &ps, err)) != URSULA_OK)
        goto out;
      rc = URSULA_ECORRUPT;
      if (ps.sealed && !fresh) {
        wal_seg_path(w, w->segs[w->n_segs - 1].first_index, path,
                     sizeof(path));
        snprintf(err, URSULA_ERRMSG_LEN,
                 "%s is sealed, but the segment after it (%020llu.wal) has "
                 "a damaged header; not starting without it",
                 path, (unsigned long long)bad_first);
        goto out;
      }
      prev_good = ps.good;
      if (ps.hard) {
        w->term = w->next_term = ps.term;
        w->vote = w->next_vote = ps.vote;
      }
    }
    if (fresh) {
      rc = wal_seg_create(w, last + 1);
      if (rc == URSULA_OK) rc = wal_compact(w, w->snap_index);
      goto out;
    }
    if (w->n_segs > 0) { /* created anew after it, which it then seals */
      wal_seg_path(w, w->segs[w->n_segs - 1].first_index, path, sizeof(path));
      if ((w->fd = fs->open(path, O_RDWR, 0)) < 0) {
        rc = wal_errno_code(errno);
        goto out;
      }
      w->size = w->written = (off_t)prev_good;
    }
    rc = wal_seg_create(w, last + 1);
    goto out;
  }
  wal_seg_path(w, w->segs[w->n_segs - 1].first_index, path, sizeof(path));
  w->fd = fs->open(path, O_RDWR, 0);
  if (w->fd < 0) {
    rc = wal_errno_code(errno);
    goto out;
  }
  w->size = w->written = (off_t)sc.good;
  if (st->cut_bytes > 0) { /* make the cut itself durable */
    st->cut_segment = w->segs[w->n_segs - 1].first_index;
    if (fs->ftruncate(w->fd, w->size) != 0 || fs->sync(w->fd) != 0)
      rc = wal_errno_code(errno);
  }
  /* an install cut short before the old log went: it goes now */
  if (rc == URSULA_OK && (w->snap_flags & WAL_SNAP_IMAGE))
    rc = wal_compact(w, w->snap_index);
out:
  if (img == &own) buf_free(&own);
  else img->len = 0;
  if (rc != URSULA_OK && err[0] == '\0') /* every failure says something */
    snprintf(err, URSULA_ERRMSG_LEN, "%s: replay: %s", w->dir,
             ursula_strerror(rc));
  return rc;
}

/* ------------------------------------------------------------ writing */

URSULA_PRIVATE int wal_frame(struct wal *w, int type, uint64_t term,
                             uint64_t index, void *rec, size_t n) {
  unsigned char *h = (unsigned char *)rec;
  if (w->failed) return URSULA_EIO;
  if (n > WAL_MAX_RECORD) return URSULA_ETOOBIG;
  if (wal_is_entry(type)) {
    if (index != w->last_index + 1 || index == 0 || term < w->last_term)
      return URSULA_EINVAL; /* (index 0: the indexes ran out) */
  } else if (type != WAL_HARD || n != WAL_HARD_BYTES ||
             index != w->last_index) {
    return URSULA_EINVAL;
  }
  /* roll once all before is durable, and only past a segment that holds
  ** an entry: one of HARD records alone (votes) has the next one's name */
  if (w->pending == 0 && w->written == w->size && w->size >= w->segment_bytes &&
      w->last_index >= w->segs[w->n_segs - 1].first_index) {
    int rc = wal_seg_create(w, w->last_index + 1);
    if (rc != URSULA_OK) return rc;
  }
  if (wal_is_entry(type)) {
    struct wal_seg *sg = &w->segs[w->n_segs - 1];
    if (wal_seg_note(sg, (uint64_t)w->written + w->pending) != URSULA_OK)
      return URSULA_ENOMEM;
    w->last_index = index;
    w->last_term = term;
  } else {
    w->next_term = util_get64(h + WAL_RECORD_HEADER);
    w->next_vote = util_get64(h + WAL_RECORD_HEADER + 8);
  }
  wal_seal_record(h, type, term, index, n);
  w->pending += WAL_RECORD_HEADER + n;
  return URSULA_OK;
}

URSULA_PRIVATE void wal_hard_payload(void *payload, uint64_t term,
                                     uint64_t vote) {
  util_put64((unsigned char *)payload, term);
  util_put64((unsigned char *)payload + 8, vote);
}

/* Make sure segment k's map of entry offsets is built: read the file and
** check every record (segments covered by the snapshot were not read at
** start).  Records past the first bad one stay unmapped. */
static int wal_seg_map(struct wal *w, size_t k) {
  struct wal_seg *sg = &w->segs[k];
  struct wal_scan sc;
  struct buf img;
  char path[URSULA_PATH_LEN + 32];
  int fn_rc, rc;
  if (sg->mapped) return URSULA_OK;
  memset(&img, 0, sizeof(img));
  memset(&sc, 0, sizeof(sc));
  wal_seg_path(w, sg->first_index, path, sizeof(path));
  rc = wal_read_path(w->fs, path, &img);
  if (rc == URSULA_OK) {
    wal_scan((const unsigned char *)img.ptr, img.len, sg->first_index, sg, 0,
             NULL, NULL, &fn_rc, &sc);
    if (fn_rc != URSULA_OK) rc = fn_rc;
    if (sc.good < img.len) {
      sg->damaged = (int64_t)sc.good;
      LOG_E("%s is damaged at byte %llu: reads of the entries from there on "
            "fail",
            path, (unsigned long long)sc.good);
    }
  }
  buf_free(&img);
  if (rc == URSULA_OK) sg->mapped = 1;
  return rc == URSULA_ENOTFOUND ? URSULA_ECORRUPT : rc;
}

/* Make the record of entry index w->rd's current one (rd_at), checked:
** from the read-ahead window when it holds the whole record, else by
** reading a new window at the record (WAL_READ_AHEAD bytes, or the whole
** record if larger, never past the last segment's durable size). */
static int wal_load_record(struct wal *w, uint64_t index) {
  struct os_fs *fs = w->fs;
  size_t k, at;
  struct wal_seg *sg;
  const unsigned char *r;
  uint64_t pos, end;
  uint32_t n;
  int fd, rc;
  if (w->rd_index == index && index != 0) return URSULA_OK;
  if (index > w->durable_index || index == 0) return URSULA_ENOTFOUND;
  if (index < w->first_index || w->n_segs == 0) {
    LOG_E("%s: entry %llu is read but the log starts at %llu (a segment "
          "is missing)",
          w->dir, (unsigned long long)index,
          (unsigned long long)w->first_index);
    return URSULA_ECORRUPT; /* someone names it: it must have been here */
  }
  k = wal_seg_of(w, index);
  sg = &w->segs[k];
  if ((rc = wal_seg_map(w, k)) != URSULA_OK) return rc;
  if (index - sg->first_index >= sg->n_offs) return URSULA_ECORRUPT;
  pos = sg->offs[index - sg->first_index];
  w->rd_index = 0;
  if (!(w->rd_seg == sg->first_index && pos >= w->rd_pos &&
        pos - w->rd_pos + WAL_RECORD_HEADER <= w->rd.len &&
        (uint64_t)util_get32((const unsigned char *)w->rd.ptr +
                             (pos - w->rd_pos) + 4) +
                WAL_RECORD_HEADER <=
            w->rd.len - (pos - w->rd_pos))) {
    /* not all in the window: a new one, at the record */
    ssize_t got;
    size_t want = WAL_READ_AHEAD;
    /* the last segment: never past what is durable, whichever descriptor
    ** reads it (w->fd is -1 after a failed reopen in wal_recover) */
    if (k == w->n_segs - 1) {
      end = (uint64_t)w->size;
      if (pos >= end || end - pos < WAL_RECORD_HEADER) return URSULA_ECORRUPT;
      if (end - pos < want) want = (size_t)(end - pos);
    }
    if (k == w->n_segs - 1 && w->fd >= 0) {
      fd = w->fd;
    } else {
      if (sg->fd < 0) {
        char path[URSULA_PATH_LEN + 32];
        wal_seg_path(w, sg->first_index, path, sizeof(path));
        sg->fd = fs->open(path, O_RDONLY, 0);
        if (sg->fd < 0) return errno == ENOENT ? URSULA_ECORRUPT : URSULA_EIO;
      }
      fd = sg->fd;
    }
    w->rd_seg = 0;
    w->rd.len = 0;
    if (want < WAL_RECORD_HEADER) want = WAL_RECORD_HEADER;
    if (buf_reserve(&w->rd, want) != URSULA_OK) return URSULA_ENOMEM;
    got = fs->pread(fd, w->rd.ptr, want, (off_t)pos);
    if (got < (ssize_t)WAL_RECORD_HEADER)
      return URSULA_ECORRUPT; /* shorter than the map says */
    w->rd.len = (size_t)got;
    n = util_get32((const unsigned char *)w->rd.ptr + 4);
    if (n > WAL_MAX_RECORD) return URSULA_ECORRUPT;
    if (WAL_RECORD_HEADER + (size_t)n > w->rd.len) { /* the rest of it */
      size_t more = WAL_RECORD_HEADER + (size_t)n - w->rd.len;
      if (buf_reserve(&w->rd, more) != URSULA_OK) return URSULA_ENOMEM;
      if (fs->pread(fd, w->rd.ptr + w->rd.len, more,
                    (off_t)(pos + w->rd.len)) != (ssize_t)more)
        return URSULA_ECORRUPT;
      w->rd.len += more;
    }
    w->rd_seg = sg->first_index;
    w->rd_pos = pos;
  }
  at = (size_t)(pos - w->rd_pos);
  r = (const unsigned char *)w->rd.ptr + at;
  if (!wal_record_ok(r, w->rd.len - at, &n) || !wal_is_entry(r[8]) ||
      util_get64(r + 24) != index) {
    char path[URSULA_PATH_LEN + 32];
    wal_seg_path(w, sg->first_index, path, sizeof(path));
    LOG_E("%s: the record of entry %llu at byte %llu fails its check", path,
          (unsigned long long)index, (unsigned long long)pos);
    return URSULA_ECORRUPT;
  }
  w->rd_at = at;
  w->rd_index = index;
  return URSULA_OK;
}

URSULA_PRIVATE int wal_read(struct wal *w, uint64_t index, uint64_t off,
                            uint64_t len, struct buf *out) {
  const struct wal_piece *p;
  size_t n;
  int rc;
  /* a piece the snapshot carries wins over a segment it covers (after an
  ** install, such a segment may hold another log's entry) */
  if (index <= w->snap_index && w->n_pieces > 0 &&
      (p = wal_piece_find(w, index, off, len)) != NULL)
    return wal_piece_read(w, p, off, len, out);
  if ((rc = wal_load_record(w, index)) != URSULA_OK) return rc;
  n = util_get32((const unsigned char *)w->rd.ptr + w->rd_at + 4);
  if (off > n || len > n - off) return URSULA_EINVAL;
  return buf_append(out, w->rd.ptr + w->rd_at + WAL_RECORD_HEADER + off,
                    (size_t)len);
}

URSULA_PRIVATE int wal_entry_at(struct wal *w, uint64_t index,
                                struct wal_entry *e) {
  int rc = wal_load_record(w, index);
  const unsigned char *r;
  if (rc != URSULA_OK) return rc;
  r = (const unsigned char *)w->rd.ptr + w->rd_at;
  e->type = r[8];
  e->term = util_get64(r + 16);
  e->index = index;
  e->data = r + WAL_RECORD_HEADER;
  e->len = util_get32(r + 4);
  return URSULA_OK;
}

URSULA_PRIVATE int wal_term_at(struct wal *w, uint64_t index, uint64_t *term) {
  struct wal_entry e;
  int rc;
  if (index == 0) {
    *term = 0;
    return URSULA_OK;
  }
  if (index == w->snap_index) {
    *term = w->snap_term;
    return URSULA_OK;
  }
  if (index == w->last_index) {
    *term = w->last_term;
    return URSULA_OK;
  }
  if (index > w->last_index || index < w->first_index) return URSULA_ENOTFOUND;
  rc = wal_entry_at(w, index, &e);
  if (rc == URSULA_OK) *term = e.term;
  return rc;
}

/* A write or sync failed: nothing unsynced may be acknowledged, and the
** file is not trusted until wal_recover(). */
static int wal_fail(struct wal *w, int e) {
  struct wal_seg *sg = &w->segs[w->n_segs - 1];
  w->failed = 1;
  w->pending = 0;
  w->written = w->size;
  w->last_index = w->durable_index;
  w->last_term = w->durable_term;
  w->next_term = w->term;
  w->next_vote = w->vote;
  /* the batch was in the last segment (a new one starts only when all is
  ** durable): forget the offsets of its entries */
  sg->n_offs = w->durable_index + 1 > sg->first_index
                   ? (size_t)(w->durable_index + 1 - sg->first_index)
                   : 0;
  wal_rd_forget(w);
  return wal_errno_code(e);
}

URSULA_PRIVATE int wal_write(struct wal *w, const void *p, size_t len) {
  int e;
  if (w->failed) return URSULA_EIO;
  if (len != w->pending) return URSULA_EINVAL; /* not what was framed */
  if ((e = wal_pwrite_all(w->fs, w->fd, p, len, w->written)) != 0)
    return wal_fail(w, e);
  w->written += (off_t)len;
  w->since_snap += len;
  w->pending = 0;
  w->written_index = w->last_index;
  w->written_term = w->last_term;
  w->written_hterm = w->next_term;
  w->written_hvote = w->next_vote;
  return URSULA_OK;
}

URSULA_PRIVATE int wal_flush_fd(const struct wal *w) {
  return w->failed || w->written == w->size ? -1 : w->fd;
}

URSULA_PRIVATE int wal_flush_done(struct wal *w, int sync_errno) {
  if (w->failed) return URSULA_EIO;
  if (w->written == w->size) return URSULA_OK;
  if (sync_errno != 0) return wal_fail(w, sync_errno);
  w->size = w->written;
  w->durable_index = w->written_index;
  w->durable_term = w->written_term;
  w->term = w->written_hterm;
  w->vote = w->written_hvote;
  return URSULA_OK;
}

URSULA_PRIVATE int wal_flush(struct wal *w) {
  int fd = wal_flush_fd(w), e = 0;
  if (fd >= 0 && w->fs->sync(fd) != 0) e = errno;
  return wal_flush_done(w, e);
}

URSULA_PRIVATE int wal_recover(struct wal *w) {
  struct os_fs *fs = w->fs;
  char path[URSULA_PATH_LEN + 32];
  struct buf img;
  struct wal_seg *sg;
  struct wal_scan sc;
  int rc, fn_rc = URSULA_OK;
  if (!w->failed) return URSULA_OK;
  if (w->needs_reopen) return URSULA_EIO; /* only a restart (wal_truncate) */
  wal_rd_forget(w); /* the file is cut back below: read it anew */
  sg = &w->segs[w->n_segs - 1];
  wal_seg_path(w, sg->first_index, path, sizeof(path));
  if (w->fd >= 0) fs->close(w->fd);
  w->fd = fs->open(path, O_RDWR, 0);
  if (w->fd < 0) return wal_errno_code(errno);
  if (fs->ftruncate(w->fd, w->size) != 0 || fs->sync(w->fd) != 0)
    return wal_errno_code(errno);
  memset(&img, 0, sizeof(img));
  memset(&sc, 0, sizeof(sc));
  rc = wal_read_path(w->fs, path, &img);
  if (rc == URSULA_OK) {
    sc.last_term = 0;
    wal_scan((const unsigned char *)img.ptr, img.len, sg->first_index, sg, 0,
             NULL, NULL, &fn_rc, &sc);
    if (fn_rc != URSULA_OK) rc = fn_rc;
    if (sc.good != (size_t)w->size || sc.last != w->durable_index)
      rc = URSULA_ECORRUPT; /* acknowledged records did not survive */
  }
  buf_free(&img);
  if (rc == URSULA_OK) w->failed = 0;
  return rc;
}

/* Append a HARD record (term, vote) at the end of the last segment, whose
** last entry is `index`, and sync: 0, or the errno of the failure (the
** record may then be partly there, past w->size). */
static int wal_append_hard(struct wal *w, uint64_t term, uint64_t vote,
                           uint64_t index) {
  unsigned char r[WAL_RECORD_HEADER + WAL_HARD_BYTES];
  int e;
  wal_hard_record(r, term, vote, index);
  if ((e = wal_pwrite_all(w->fs, w->fd, r, sizeof(r), w->size)) != 0 ||
      (w->fs->sync(w->fd) != 0 && (e = errno) != 0))
    return e;
  w->size = w->written = w->size + (off_t)sizeof(r);
  return 0;
}

URSULA_PRIVATE int wal_save_state(struct wal *w, uint64_t term, uint64_t vote) {
  int e;
  if (w->failed || w->pending > 0 || w->written != w->size)
    return URSULA_EINVAL;
  /* in force only once durable; a failure leaves the old pair, and the
  ** log failed (wal_recover cuts what was half written) */
  if ((e = wal_append_hard(w, term, vote, w->last_index)) != 0)
    return wal_fail(w, e);
  w->term = w->next_term = term;
  w->vote = w->next_vote = vote;
  return URSULA_OK;
}

URSULA_PRIVATE uint64_t wal_term(const struct wal *w) {
  return w->term;
}
URSULA_PRIVATE uint64_t wal_vote(const struct wal *w) {
  return w->vote;
}

/* ------------------------------------------------------------ cutting */

/* Open segment k (now the last) for writing as w->fd, its size `size`. */
static int wal_reopen_last(struct wal *w, size_t k, off_t size) {
  char path[URSULA_PATH_LEN + 32];
  if (w->fd >= 0) w->fs->close(w->fd);
  if (w->segs[k].fd >= 0) w->fs->close(w->segs[k].fd);
  w->segs[k].fd = -1;
  wal_seg_path(w, w->segs[k].first_index, path, sizeof(path));
  w->fd = w->fs->open(path, O_RDWR, 0);
  if (w->fd < 0) return wal_errno_code(errno);
  w->size = w->written = size;
  return URSULA_OK;
}

/* Cut segment k (now the last) at byte `at`, then append a HARD record
** whose index is `last`, the last entry the segment keeps.  In place:
** for cutting a SEAL, when the segment after k still holds the latest
** HARD record until this is durable. */
static int wal_cut_last(struct wal *w, size_t k, off_t at, uint64_t last) {
  int rc = wal_reopen_last(w, k, at), e;
  if (rc != URSULA_OK) return rc;
  if (w->fs->ftruncate(w->fd, at) != 0) return wal_errno_code(errno);
  e = wal_append_hard(w, w->term, w->vote, last);
  return e != 0 ? wal_errno_code(e) : URSULA_OK;
}

/* Replace segment k (the last) by its first `at` bytes and a HARD record
** (index `last`), atomically: written to a temporary file, synced, renamed
** over the segment, the directory synced.  A crash leaves the old segment
** or the new one, never a segment whose latest HARD record was cut. */
static int wal_rewrite_last(struct wal *w, size_t k, off_t at, uint64_t last) {
  struct os_fs *fs = w->fs;
  char path[URSULA_PATH_LEN + 32], tmp[URSULA_PATH_LEN + 40];
  struct buf img;
  int fd, e = 0, rc;
  memset(&img, 0, sizeof(img));
  wal_seg_path(w, w->segs[k].first_index, path, sizeof(path));
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  rc = wal_read_path(w->fs, path, &img);
  if (rc == URSULA_OK && img.len < (size_t)at) rc = URSULA_ECORRUPT;
  if (rc == URSULA_OK) rc = buf_reserve(&img, WAL_RECORD_HEADER + WAL_HARD_BYTES);
  if (rc != URSULA_OK) {
    buf_free(&img);
    return rc;
  }
  img.len = (size_t)at;
  wal_hard_record((unsigned char *)img.ptr + img.len, w->term, w->vote, last);
  img.len += WAL_RECORD_HEADER + WAL_HARD_BYTES;
  fd = fs->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) e = errno;
  if (e == 0) e = wal_pwrite_all(w->fs, fd, img.ptr, img.len, 0);
  if (e == 0 && fs->sync(fd) != 0) e = errno;
  if (fd >= 0) fs->close(fd);
  if (e == 0 && fs->rename(tmp, path) != 0) e = errno;
  if (e == 0 && w->fs->sync_dir(w->dir) != 0) e = errno ? errno : EIO;
  if (e != 0) fs->unlink(tmp);
  buf_free(&img);
  if (e != 0) return wal_errno_code(e);
  return wal_reopen_last(w, k, (off_t)(at + WAL_RECORD_HEADER +
                                       WAL_HARD_BYTES));
}

/* The size of segment k without its SEAL record (if it ends with one). */
static int wal_unsealed_size(struct wal *w, size_t k, off_t *size) {
  char path[URSULA_PATH_LEN + 32];
  unsigned char r[WAL_RECORD_HEADER + WAL_SEAL_BYTES];
  uint64_t sz;
  uint32_t n;
  int fd;
  ssize_t got;
  wal_seg_path(w, w->segs[k].first_index, path, sizeof(path));
  fd = w->fs->open(path, O_RDONLY, 0);
  if (fd < 0) return wal_errno_code(errno);
  if (w->fs->size(fd, &sz) != 0) {
    w->fs->close(fd);
    return URSULA_EIO;
  }
  *size = (off_t)sz;
  got = sz >= sizeof(r)
            ? w->fs->pread(fd, r, sizeof(r), (off_t)(sz - sizeof(r)))
            : -1;
  w->fs->close(fd);
  if (got == (ssize_t)sizeof(r) && wal_record_ok(r, sizeof(r), &n) &&
      r[8] == WAL_SEAL)
    *size -= (off_t)sizeof(r);
  return URSULA_OK;
}

/* wal_truncate_suffix's steps, after the checks; any failure half-way
** leaves files that replay (each step does), but not the view in memory. */
static int wal_truncate_steps(struct wal *w, uint64_t index, uint64_t term) {
  off_t size;
  size_t k;
  int rc;
  /* whole segments from the back: unseal the one before, then remove */
  while (w->n_segs > 1 && w->segs[w->n_segs - 1].first_index > index) {
    size_t prev = w->n_segs - 2;
    char path[URSULA_PATH_LEN + 32];
    if ((rc = wal_unsealed_size(w, prev, &size)) != URSULA_OK ||
        (rc = wal_cut_last(w, prev, size,
                           w->segs[prev + 1].first_index - 1)) != URSULA_OK)
      return rc;
    wal_seg_path(w, w->segs[w->n_segs - 1].first_index, path, sizeof(path));
    wal_seg_release(w->fs, &w->segs[w->n_segs - 1]);
    w->n_segs--;
    if (w->fs->unlink(path) != 0 || w->fs->sync_dir(w->dir) != 0)
      return wal_errno_code(errno);
  }
  k = w->n_segs - 1;
  if ((rc = wal_seg_map(w, k)) != URSULA_OK) return rc;
  if (index - w->segs[k].first_index >= w->segs[k].n_offs) {
    if (w->segs[k].first_index != index) return URSULA_ECORRUPT;
    rc = wal_rewrite_last(w, k, WAL_HEADER_BYTES, index - 1);
  } else {
    rc = wal_rewrite_last(
        w, k, (off_t)w->segs[k].offs[index - w->segs[k].first_index],
        index - 1);
  }
  if (rc != URSULA_OK) return rc;
  w->segs[k].n_offs = (size_t)(index - w->segs[k].first_index);
  w->last_index = w->durable_index = w->written_index = index - 1;
  w->last_term = w->durable_term = w->written_term = term;
  return URSULA_OK;
}

URSULA_PRIVATE int wal_truncate_suffix(struct wal *w, uint64_t index) {
  uint64_t term = 0;
  int rc;
  if (w->failed || w->pending > 0 || w->written != w->size)
    return URSULA_EINVAL;
  if (index > w->last_index) return URSULA_OK;
  if (index <= w->snap_index || index < w->first_index) return URSULA_EINVAL;
  if ((rc = wal_term_at(w, index - 1, &term)) != URSULA_OK) return rc;
  wal_rd_forget(w);
  rc = wal_truncate_steps(w, index, term);
  if (rc != URSULA_OK) { /* appends now could land anywhere: stop them */
    w->failed = 1;
    w->needs_reopen = 1;
    LOG_E("%s: cutting the log at entry %llu failed (%s); the group takes "
          "no writes until it is restarted (the files replay as they are)",
          w->dir, (unsigned long long)index, ursula_strerror(rc));
  }
  return rc;
}

URSULA_PRIVATE int wal_can_compact(const struct wal *w, uint64_t upto) {
  if (upto > w->snap_index) upto = w->snap_index;
  return w->n_segs > 1 && w->segs[1].first_index <= upto + 1;
}

URSULA_PRIVATE int wal_compact(struct wal *w, uint64_t upto) {
  char path[URSULA_PATH_LEN + 32];
  size_t drop = 0, k;
  int rc = URSULA_OK;
  if (upto > w->snap_index) upto = w->snap_index; /* only what it covers */
  /* a segment can go when the next one starts at or before upto + 1 */
  while (drop + 1 < w->n_segs && w->segs[drop + 1].first_index <= upto + 1)
    drop++;
  if (drop == 0) return URSULA_OK;
  for (k = 0; k < drop && rc == URSULA_OK; k++) { /* from the front */
    wal_seg_path(w, w->segs[k].first_index, path, sizeof(path));
    if (w->fs->unlink(path) != 0 && errno != ENOENT)
      rc = wal_errno_code(errno);
  }
  drop = k - (rc != URSULA_OK); /* the failed one stays listed */
  for (k = 0; k < drop; k++) wal_seg_release(w->fs, &w->segs[k]);
  memmove(w->segs, w->segs + drop, (w->n_segs - drop) * sizeof(*w->segs));
  w->n_segs -= drop;
  w->first_index = w->segs[0].first_index;
  wal_rd_forget(w);
  w->fs->sync_dir(w->dir);
  return rc;
}

/* ------------------------------------------------------------ install */

URSULA_PRIVATE int wal_install_begin(struct wal *w,
                                     struct wal_snap_writer *sw) {
  return wal_snap_start(w, sw, "install", 0, 0, 0);
}

URSULA_PRIVATE int wal_install_put(struct wal_snap_writer *sw, uint64_t at,
                                   const void *p, size_t n) {
  int e;
  if (sw->fd < 0 || sw->index != 0 || at > sw->at) return URSULA_EINVAL;
  if ((e = wal_pwrite_all(sw->fs, sw->fd, p, n, (off_t)at)) != 0)
    return wal_errno_code(e);
  if (at + n > sw->at) sw->at = at + n;
  return URSULA_OK;
}

/* Check the whole image in w->dir/install.tmp: header, lengths, the CRC
** of header, payload and directory, the directory's order, and the CRC
** of every piece.  URSULA_OK (sr left open on it) or URSULA_ECORRUPT with
** err set. */
static int wal_install_check(struct wal *w, struct wal_snap_reader *sr,
                             char *err) {
  struct buf chunk;
  struct wal_piece *pc = NULL;
  long k;
  uint64_t i;
  int rc = wal_snap_open_file(w, sr, "install.tmp", err);
  if (rc == URSULA_ENOTFOUND) rc = URSULA_EIO;
  if (rc != URSULA_OK) return rc;
  memset(&chunk, 0, sizeof(chunk));
  rc = URSULA_ECORRUPT;
  if (!(sr->flags & WAL_SNAP_IMAGE) ||
      buf_reserve(&chunk, WAL_SNAP_CHUNK) != URSULA_OK)
    goto out;
  while ((k = wal_snap_read(sr, chunk.ptr, WAL_SNAP_CHUNK)) > 0) {
  }
  if (k < 0) goto out;
  if (sr->n_pieces > 0) {
    pc = (struct wal_piece *)URSULA_MALLOC((size_t)sr->n_pieces * sizeof(*pc));
    if (pc == NULL) goto out;
    wal_dir_parse((const unsigned char *)sr->dir.ptr, sr->n_pieces,
                  sr->pieces, sr->index, WAL_SNAP_HEAD + sr->size, pc);
  }
  for (i = 0; i < sr->n_pieces; i++) { /* every piece's CRC, in chunks */
    uint64_t at = 0;
    uint32_t crc = 0;
    while (at < pc[i].len) {
      size_t n = pc[i].len - at < WAL_SNAP_CHUNK ? (size_t)(pc[i].len - at)
                                                 : WAL_SNAP_CHUNK;
      if (w->fs->pread(sr->fd, chunk.ptr, n, (off_t)(pc[i].pos + at)) !=
          (ssize_t)n)
        goto out;
      crc = util_crc32c(crc, chunk.ptr, n);
      at += n;
    }
    if (crc != pc[i].crc) goto out;
  }
  rc = URSULA_OK;
out:
  if (rc != URSULA_OK) {
    wal_snap_close(sr);
    if (err[0] == '\0')
      snprintf(err, URSULA_ERRMSG_LEN,
               "%s/install.tmp is not a whole snapshot image (bad CRC, "
               "lengths or directory, or not made for install)",
               w->dir);
  }
  URSULA_FREE(pc);
  buf_free(&chunk);
  return rc;
}

/* The steps of an install after the checks (see wal_install_commit). */
static int wal_install_steps(struct wal *w, struct wal_snap_reader *sr) {
  char tmp[URSULA_PATH_LEN + 32], path[URSULA_PATH_LEN + 32];
  uint64_t n = sr->index, term = 0;
  int match, rc;
  match = n <= w->last_index && wal_term_at(w, n, &term) == URSULA_OK &&
          term == sr->term;
  /* 1. a suffix from n on that disagrees with the image goes first */
  if (!match && n <= w->last_index &&
      (rc = wal_truncate_suffix(w, n)) != URSULA_OK)
    return rc;
  /* 2. the image becomes the snapshot */
  snprintf(tmp, sizeof(tmp), "%s/install.tmp", w->dir);
  snprintf(path, sizeof(path), "%s/snapshot", w->dir);
  if (w->fs->rename(tmp, path) != 0 || w->fs->sync_dir(w->dir) != 0)
    return wal_errno_code(errno ? errno : EIO);
  w->snap_index = n;
  w->snap_term = sr->term;
  w->snap_flags = sr->flags;
  w->since_snap = 0;
  if ((rc = wal_take_pieces(w, &sr->dir, sr->n_pieces, sr->pieces,
                            sr->size)) != URSULA_OK)
    return rc;
  if (match) return URSULA_OK; /* the log goes on after it, as it is */
  /* 3. the log goes on at n + 1, in a segment of its own; the old one,
  ** all below n, is not sealed to it (its entries do not lead there) */
  if (w->fd >= 0) w->fs->close(w->fd);
  w->fd = -1;
  w->last_index = w->durable_index = w->written_index = n;
  w->last_term = w->durable_term = w->written_term = sr->term;
  wal_rd_forget(w);
  if ((rc = wal_seg_create(w, n + 1)) != URSULA_OK) return rc;
  /* 4. the old segments go */
  return wal_compact(w, n);
}

URSULA_PRIVATE int wal_install_commit(struct wal *w,
                                      struct wal_snap_writer *sw, char *err) {
  struct wal_snap_reader sr;
  int rc, e = 0;
  err[0] = '\0';
  if (sw->fd < 0 || sw->index != 0) return URSULA_EINVAL;
  if (w->failed || w->pending > 0 || w->written != w->size) {
    wal_snap_abort(w, sw);
    snprintf(err, URSULA_ERRMSG_LEN, "%s: the log is busy or failed", w->dir);
    return URSULA_EINVAL;
  }
  if (w->fs->sync(sw->fd) != 0) e = errno;
  w->fs->close(sw->fd);
  sw->fd = -1;
  if (e != 0) {
    wal_snap_abort(w, sw);
    return wal_errno_code(e);
  }
  if ((rc = wal_install_check(w, &sr, err)) != URSULA_OK) {
    wal_snap_abort(w, sw);
    return rc;
  }
  if (sr.index <= w->snap_index) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s: the image is as of entry %llu, not after the snapshot "
             "(%llu)",
             w->dir, (unsigned long long)sr.index,
             (unsigned long long)w->snap_index);
    wal_snap_close(&sr);
    wal_snap_abort(w, sw);
    return URSULA_EINVAL;
  }
  rc = wal_install_steps(w, &sr);
  wal_snap_close(&sr);
  if (rc != URSULA_OK) {
    wal_snap_abort(w, sw);
    /* the files replay (each step does, and replay finishes an install
    ** cut short), but the view in memory may not match them */
    w->failed = 1;
    w->needs_reopen = 1;
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s: installing the snapshot failed half-way (%s); the group "
             "takes no writes until it is restarted",
             w->dir, ursula_strerror(rc));
    LOG_E("%s", err);
  }
  return rc;
}

URSULA_PRIVATE uint64_t wal_first_index(const struct wal *w) {
  return w->first_index;
}
URSULA_PRIVATE uint64_t wal_last_index(const struct wal *w) {
  return w->last_index;
}
URSULA_PRIVATE uint64_t wal_last_term(const struct wal *w) {
  return w->last_term;
}
URSULA_PRIVATE uint64_t wal_durable_index(const struct wal *w) {
  return w->durable_index;
}
URSULA_PRIVATE int wal_failed(const struct wal *w) {
  return w->failed;
}
URSULA_PRIVATE void wal_abandon(struct wal *w) {
  if (!w->failed) wal_fail(w, EIO);
}
URSULA_PRIVATE void wal_set_segment_bytes(struct wal *w, int64_t n) {
  w->segment_bytes = n;
}

/**** End src/wal.c ****/
/**** Begin src/cmd.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/cmd.c"
#endif
/*
** cmd.c -- the commands a group's log carries, and their byte encoding.
**
** A group is a state machine: it changes only by applying commands taken
** from its log, in log order (stream.c applies them).  The log stores each
** command as the bytes below; the same bytes will go into the WAL and be
** replicated by Raft, so the encoding is explicit and versioned.
**
** ENCODING (all integers are unsigned LEB128 varints: 7 bits per byte,
** least significant group first, high bit set on every byte but the last;
** at most 10 bytes):
**
**    offset  field
**    0       u8      version, CMD_VERSION (2; 1 is still decoded, below)
**    1       u8      type: 1 CREATE, 2 APPEND, 3 DELETE, 4 FORK_ACQUIRE,
**                    5 FORK_RELEASE, 6 EXPIRE, 7 COLD, 8 TOUCH
**    2       varint  flags (CMD_F_*)
**    ..      varint  time_ms: the proposer's wall clock, Unix ms.  Apply
**                    uses it, never a clock of its own, so that replaying
**                    or replicating the log gives the same state.
**    ..      bytes   path              (varint length, then the bytes)
**    ..      bytes   content_type
**    ..      bytes   data
**    ..      varint  n_msgs            (JSON messages in data; FORK_ACQUIRE
**                                       with a sub-offset: the length of
**                                       the append at fork_offset in
**                                       Sub-Offset units, found by the
**                                       proposer where apply cannot see
**                                       it: the messages of a JSON
**                                       append, or, with CMD_F_UNIT, an
**                                       append the source inherited
**                                       (JSON messages or bytes); apply
**                                       reads no stream bytes and no
**                                       other stream)
**    ..      varint  ttl_s
**    ..      varint  expires_at_ms
**    ..      bytes   expires_text      (Stream-Expires-At as sent)
**    ..      bytes   stream_seq
**    ..      bytes   producer_id
**    ..      varint  producer_epoch
**    ..      varint  producer_seq
**    ..      bytes   fork_source
**    ..      varint  fork_offset
**    ..      varint  fork_sub
**    ..      varint  fork_base         (CREATE of a fork: the fork point,
**                                       where the fork's own bytes begin;
**                                       below it the fork reads its
**                                       source's bytes, which the command
**                                       does not carry)
**    ..      varint  fork_inc          (CREATE of a fork: the source's
**                                       incarnation, whose reference the
**                                       fork holds)
**
** Every field is always present (absent strings are empty, absent numbers
** 0), so a decoder never guesses; the flags say which are meaningful.
**
** Version 1 had, where fork_base and fork_inc are, the bytes a fork
** inherited (`bytes inherited`, copied from the source) and the ends of
** their append units (`varint n_bounds`, then n_bounds varints, deltas
** from the previous end, the first from 0); FORK_ACQUIRE had no
** incarnation.  Logs written by that build are decoded (a fork CREATE
** then makes those bytes the fork's own units); nothing encodes it.
**
** Type 4, FORK_ACQUIRE, carries one more field after those of every
** type:
**
**    ..      varint  incarnation       (of the source as the proposer saw
**                                       it, 0 for none: the facts it
**                                       found, n_msgs, hold for that one)
**
** Type 7, COLD (the stream's bytes [cold_start, cold_end) now live in the
** cold-tier object `object`), carries four more fields after those:
**
**    ..      varint  incarnation       (of the stream the object belongs to)
**    ..      varint  cold_start
**    ..      varint  cold_end
**    ..      bytes   object            (the object's name, cold.c)
**
** Type 8, TOUCH (the owner saw a read of the stream at time_ms: the
** sliding TTL window moves there), carries one more field after those
** of every type:
**
**    ..      varint  incarnation       (of the stream that was read)
*/


/* Append v as a varint. */
URSULA_PRIVATE int cmd_put_varint(struct buf *b, uint64_t v) {
  unsigned char tmp[10];
  size_t n = 0;
  do {
    tmp[n] = (unsigned char)(v & 0x7f);
    v >>= 7;
    if (v) tmp[n] |= 0x80;
    n++;
  } while (v);
  return buf_append(b, tmp, n);
}

URSULA_PRIVATE int cmd_put_bytes(struct buf *b, struct str s) {
  if (cmd_put_varint(b, s.len) != URSULA_OK) return URSULA_ENOMEM;
  return buf_append(b, s.ptr, s.len);
}

/* Read a varint from *p (advanced) before end; -1 if truncated, too long,
** or not in the shortest form cmd_put_varint() writes (a last byte 0 after
** others, bits past 64): each value has one encoding, so decoding and
** encoding again gives the same bytes. */
URSULA_PRIVATE int cmd_get_varint(const unsigned char **p,
                                  const unsigned char *end, uint64_t *out) {
  uint64_t v = 0;
  unsigned shift = 0;
  while (*p < end && shift < 64) {
    unsigned char c = *(*p)++;
    if (shift == 63 && c > 1) return -1; /* past 64 bits */
    v |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      if (c == 0 && shift > 0) return -1; /* a needless last byte */
      *out = v;
      return 0;
    }
    shift += 7;
  }
  return -1;
}

URSULA_PRIVATE int cmd_get_bytes(const unsigned char **p,
                                 const unsigned char *end, struct str *out) {
  uint64_t n;
  if (cmd_get_varint(p, end, &n) != 0 || n > (uint64_t)(end - *p)) return -1;
  out->ptr = (const char *)*p;
  out->len = (size_t)n;
  *p += n;
  return 0;
}

URSULA_PRIVATE int cmd_encode(const struct cmd *c, struct buf *out) {
  size_t start = out->len;
  unsigned char head[2];
  int rc = URSULA_OK;
  head[0] = CMD_VERSION;
  head[1] = (unsigned char)c->type;
  rc |= buf_append(out, head, 2);
  rc |= cmd_put_varint(out, c->flags);
  rc |= cmd_put_varint(out, c->time_ms);
  rc |= cmd_put_bytes(out, c->path);
  rc |= cmd_put_bytes(out, c->content_type);
  rc |= cmd_put_bytes(out, c->data);
  rc |= cmd_put_varint(out, c->n_msgs);
  rc |= cmd_put_varint(out, c->ttl_s);
  rc |= cmd_put_varint(out, c->expires_at_ms);
  rc |= cmd_put_bytes(out, c->expires_text);
  rc |= cmd_put_bytes(out, c->stream_seq);
  rc |= cmd_put_bytes(out, c->producer_id);
  rc |= cmd_put_varint(out, c->producer_epoch);
  rc |= cmd_put_varint(out, c->producer_seq);
  rc |= cmd_put_bytes(out, c->fork_source);
  rc |= cmd_put_varint(out, c->fork_offset);
  rc |= cmd_put_varint(out, c->fork_sub);
  rc |= cmd_put_varint(out, c->fork_base);
  rc |= cmd_put_varint(out, c->fork_inc);
  if (c->type == CMD_TOUCH || c->type == CMD_FORK_ACQUIRE)
    rc |= cmd_put_varint(out, c->incarnation);
  if (c->type == CMD_COLD) {
    rc |= cmd_put_varint(out, c->incarnation);
    rc |= cmd_put_varint(out, c->cold_start);
    rc |= cmd_put_varint(out, c->cold_end);
    rc |= cmd_put_bytes(out, c->object);
  }
  if (rc != URSULA_OK) {
    out->len = start;
    return URSULA_ENOMEM;
  }
  return URSULA_OK;
}

URSULA_PRIVATE int cmd_decode(const void *p, size_t len, struct cmd *c,
                              struct buf *bounds_store) {
  const unsigned char *q = (const unsigned char *)p, *end = q + len;
  uint64_t v = 0, i, prev = 0;
  int bad = 0, version;
  memset(c, 0, sizeof(*c));
  bounds_store->len = 0;
  if (len < 2 || (q[0] != CMD_VERSION && q[0] != 1) || q[1] < CMD_CREATE ||
      q[1] > CMD_TOUCH)
    return URSULA_ECORRUPT;
  version = q[0];
  c->type = q[1];
  c->raw = (const char *)p;
  q += 2;
  bad |= cmd_get_varint(&q, end, &v);
  bad |= v > UINT32_MAX ? -1 : 0; /* the flags are 32 bits */
  c->flags = (uint32_t)v;
  bad |= cmd_get_varint(&q, end, &c->time_ms);
  bad |= cmd_get_bytes(&q, end, &c->path);
  bad |= cmd_get_bytes(&q, end, &c->content_type);
  bad |= cmd_get_bytes(&q, end, &c->data);
  bad |= cmd_get_varint(&q, end, &c->n_msgs);
  bad |= cmd_get_varint(&q, end, &c->ttl_s);
  bad |= cmd_get_varint(&q, end, &c->expires_at_ms);
  bad |= cmd_get_bytes(&q, end, &c->expires_text);
  bad |= cmd_get_bytes(&q, end, &c->stream_seq);
  bad |= cmd_get_bytes(&q, end, &c->producer_id);
  bad |= cmd_get_varint(&q, end, &c->producer_epoch);
  bad |= cmd_get_varint(&q, end, &c->producer_seq);
  bad |= cmd_get_bytes(&q, end, &c->fork_source);
  bad |= cmd_get_varint(&q, end, &c->fork_offset);
  bad |= cmd_get_varint(&q, end, &c->fork_sub);
  if (version == CMD_VERSION) {
    bad |= cmd_get_varint(&q, end, &c->fork_base);
    bad |= cmd_get_varint(&q, end, &c->fork_inc);
    if (bad) return URSULA_ECORRUPT;
    v = 0;
  } else { /* version 1: the inherited bytes and their append ends */
    bad |= cmd_get_bytes(&q, end, &c->inherited);
    bad |= cmd_get_varint(&q, end, &v);
    if (bad || v > (uint64_t)(end - q)) return URSULA_ECORRUPT;
    if (buf_reserve(bounds_store, (size_t)v * sizeof(uint64_t)) != URSULA_OK)
      return URSULA_ENOMEM;
    for (i = 0; i < v; i++) {
      uint64_t d;
      if (cmd_get_varint(&q, end, &d) != 0) return URSULA_ECORRUPT;
      prev += d;
      memcpy(bounds_store->ptr + i * sizeof(uint64_t), &prev, sizeof(prev));
    }
  }
  if (c->type == CMD_COLD && (cmd_get_varint(&q, end, &c->incarnation) ||
                              cmd_get_varint(&q, end, &c->cold_start) ||
                              cmd_get_varint(&q, end, &c->cold_end) ||
                              cmd_get_bytes(&q, end, &c->object)))
    return URSULA_ECORRUPT;
  if ((c->type == CMD_TOUCH ||
       (c->type == CMD_FORK_ACQUIRE && version == CMD_VERSION)) &&
      cmd_get_varint(&q, end, &c->incarnation))
    return URSULA_ECORRUPT;
  if (q != end) return URSULA_ECORRUPT;
  c->n_bounds = (size_t)v;
  c->bounds = (const uint64_t *)(void *)bounds_store->ptr;
  return URSULA_OK;
}
/**** End src/cmd.c ****/
/**** Begin src/raft.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/raft.c"
#endif
/*
** raft.c -- the Raft core of one group, pure: no I/O, no clock, no
** randomness of its own, no allocation after raft_init().
**
** One struct raft per group (hundreds per node).  Its driver feeds it
** inputs through raft_step() and carries out the actions it gives back,
** in order.  Time arrives as ticks; randomness through the node's
** env->random; the log's bytes never enter the core: it keeps only the
** terms of the entries it knows, as a trail of runs (index where a term
** starts, term), and the driver owns the bytes (the WAL) and attaches
** them to the messages it sends.  Citations: "paper" is Ongaro and
** Ousterhout, "In Search of an Understandable Consensus Algorithm"
** (2014); "thesis" is Ongaro, "Consensus: Bridging Theory and Practice"
** (2014).
**
** WHAT IT IMPLEMENTS
**   - leader election with randomized timeouts in [T, 2T) (paper §5.2),
**     pre-vote (thesis §9.6), check-quorum and the followers' lease
**     (thesis §6.2);
**   - log replication (paper §5.3) with a window of messages and bytes in
**     flight per follower, probe / replicate / snapshot states per peer,
**     conflict back-off by term (thesis §3.5: one round trip per term),
**     truncation only on a real conflict (paper Fig. 2, AppendEntries
**     receiver rule 3);
**   - the commit rule: only entries of the leader's term are committed
**     by counting (paper §5.4.2, Fig. 8); a new leader appends a no-op;
**   - persistence order (paper Fig. 2 "Persistent state", thesis §3.8):
**     term and vote durable before any message of that term; a follower
**     acknowledges only what it holds durably;
**   - the leader's own write in parallel with replication, counting
**     itself once its own write is durable (thesis §10.2.1);
**   - snapshots for followers behind the leader's first index (paper §7);
**   - a read barrier, ReadIndex (thesis §6.4), no lease;
**   - leadership transfer (thesis §3.10);
**   - static membership of 1, 3 or 5 voters, cluster id and node ids
**     checked on every message;
**   - a node that lost its log neither votes nor campaigns until caught
**     up (LOST LOG, below).
**
** INPUTS (struct raft_in; raft_step returns URSULA_OK unless said)
**   TICK                 one tick of the node's clock (100 ms in ursula).
**   MSG(msg)             a message from a peer; the driver keeps the
**                        entries it carried (an APPEND) until the call
**                        returns, for the APPEND action it may cause.
**   PROPOSE(n)           the leader appends n entries of its term;
**                        out->term, out->index is where the first went
**                        (the rest follow it).  URSULA_EAGAIN: not the
**                        leader, a transfer under way, storage failed,
**                        max_uncommitted reached, or the trail is full.
**                        A proposal succeeded once COMMIT reaches its
**                        index and the entry there carries its term.
**   LOG_DURABLE(term,i)  the driver's sync made entry i (of term) and all
**                        before it durable.  Stale completions -- entry i
**                        was since replaced (truncated and written again
**                        with another term) -- are ignored (R4).
**   STATE_DURABLE(term,vote) a SAVE_STATE with this term and vote is
**                        durable.
**   SNAP_SENT(peer), SNAP_FAILED(peer) the snapshot stream the leader
**                        started with SEND_SNAPSHOT ended.
**   SNAP_INSTALLED(term,i) the driver installed the snapshot it was told
**                        to (INSTALL_SNAPSHOT): entries <= i are in it.
**   COMPACTED(term,i)    the driver holds a durable snapshot at entry i
**                        (i <= commit, <= durable) and dropped the log up
**                        to it; a follower behind it now needs a snapshot.
**   READ_INDEX(ctx)      a linearizable read barrier: READ_READY(ctx, i)
**                        comes back later; the read may be served once
**                        this node has applied i.  i = 0: refused.
**   TRANSFER(peer)       hand leadership to peer (URSULA_EAGAIN: not the
**                        leader; URSULA_EINVAL: not a voter).
**   STORAGE_FAILED       a write or sync failed: what was not durable may
**                        be lost.
**   STORAGE_RECOVERED(term,i) the log is usable again and ends at its
**                        durable entry i (of term).
**   LEAVE                this node is stopping (LEAVING, below): from now on
**                        it neither campaigns nor obeys TIMEOUT_NOW, and
**                        its messages say so; a leader hands leadership
**                        to the best peer (TRANSFER).  Given again (every
**                        tick, say) it tries again once a transfer was
**                        abandoned.  URSULA_EAGAIN: a leader with no peer
**                        to hand over to.
**
** ACTIONS (struct raft_action, appended to the caller's struct raft_out)
**   SAVE_STATE(term, vote, commit, flags)  write the hard state; flags 1
**                        = recovering (LOST LOG).  commit may be saved
**                        lazily; term and vote may not (R1).
**   APPEND(lo, hi, runs) write entries lo..hi; their terms are the runs
**                        (msg.runs, msg.n_runs).  flags RAFT_APPEND_NOOP:
**                        empty entries (a new leader's no-op);
**                        RAFT_APPEND_MSG: the entries the input MSG
**                        carried; neither: the ones just PROPOSEd.
**   TRUNCATE(lo)         remove the entries from lo on (lo > commit).
**   SEND(msg, after)     send msg; if after_index is not 0, only once
**                        entry (after_term, after_index) is durable (R2).
**   SEND_SNAPSHOT(peer, term, hi) stream the snapshot at entry hi to
**                        peer, in chunks, resumable; then SNAP_SENT or
**                        SNAP_FAILED.  Its first chunk carries a
**                        RAFT_MSG_SNAPSHOT header built by the driver
**                        from this action and the current term.
**   INSTALL_SNAPSHOT(peer, term, hi) install the snapshot being received
**                        from peer (wal_install_begin/put/commit: the log
**                        is kept after hi only if its entry hi has that
**                        term), then SNAP_INSTALLED.
**   COMMIT(hi)           entries <= hi are committed: apply them once
**                        durable here.
**   READ_READY(ctx, hi)  the barrier of READ_INDEX(ctx) passed at hi (0:
**                        refused).
**   ROLE(role, term, peer) the role, term or leader (peer, 0: unknown)
**                        changed; given last in a step.
**
** DRIVER RULES, and how the core makes each hold
**   R1  Actions run in order; a SEND given after a SAVE_STATE waits until
**       that state is durable.  By construction: every message leaves
**       through raft_send(), which first gives SAVE_STATE of any change
**       of term, vote or recovering (raft_persist), so no message is
**       ever given before the state it was sent in.
**   R2  SEND(after_term, after_index) waits until that entry is durable,
**       and is dropped if a TRUNCATE removes it.  The core gives every
**       acknowledgment of entries this way (raft_ack): a follower's
**       "I have up to i" leaves only once i is on its disk, and never
**       for an entry that was replaced in between.
**   R3  TRUNCATE waits for the sync in flight; the core never truncates
**       at or below commit (raft_recv_append refuses such a message).
**   R4  Completions carry the (term, index) written; the core ignores
**       stale ones (raft_log_durable: the entry there must still carry
**       that term).
**   R5  On STORAGE_FAILED the core steps down and, until
**       STORAGE_RECOVERED, refuses every message (no vote, no ack) and
**       every proposal; the driver answers pending proposals "unknown".
**       A failed leader never proposes again in its term, so no (term,
**       index) is ever given to two entries (canonical/raft#320).
**
** MESSAGES (struct raft_msg, 152 bytes: ten u64 at offsets 0..72, then
** u32 n at 80, u8 type at 84, flags 85, n_runs 86, pad 87, and runs at
** 88: RAFT_MSG_RUNS x (u64 index, u64 term).  The transport step encodes
** them as these fields, little-endian, in this order.)
**   cluster_id, from, to, term: on every message.  Then, by type:
**   APPEND          index, log_term = prev entry; n entries follow it,
**                   their terms in runs[0..n_runs); commit = leader's.
**   APPEND_RESP     accept: index = prev + n of the message answered (or
**                   a snapshot's index): held until durable (R2).
**                   REJECT: index = the prev refused, hint and log_term =
**                   the follower's last entry at or below it whose term
**                   is <= the prev's term.  last = the follower's last
**                   index.  flags RECOVERING (LOST LOG).
**   PREVOTE, VOTE   index, log_term = the candidate's last entry; a
**                   PREVOTE's term is the term it would campaign in.
**                   flags TRANSFER (VOTE only).  A PREVOTE flagged
**                   RECOVERING is LOST LOG's poll: ctx = its nonce.
**   PREVOTE_RESP, VOTE_RESP  granted: term = the request's; REJECT: term
**                   = the voter's.  The poll's answer: REJECT and
**                   RECOVERING, the voter's term, ctx = the poll's.
**   HEARTBEAT       index, log_term = an entry the follower holds (the
**                   smaller of its match and commit); commit = index;
**                   last = the leader's own commit (LOST LOG); ctx = the
**                   leader's read sequence.
**   HEARTBEAT_RESP  ctx echoed, last, flags RECOVERING.
**   SNAPSHOT        index, log_term = the snapshot's last entry.
**   TIMEOUT_NOW     (nothing more).
**   READ_INDEX      ctx = the follower's.
**   READ_INDEX_RESP ctx; index = the read index; REJECT: refused.
** Any message may carry flags LEAVING (its sender is stopping, LEAVING
** below); the driver-built SNAPSHOT header does not, and is not read for it.
** A message from another cluster, to another node, from a node that is
** not a voter, or from this node, is dropped and counted (stats.foreign).
**
** LOST LOG.  A node whose disk was wiped or replaced comes back with no
** state: it forgot its term, its vote (it could vote twice in a term) and
** the entries it acknowledged (a quorum counting it could elect a leader
** that misses committed entries: KAFKA-14077, where a voter restarted
** with an empty log and elected a leader that lost acknowledged data).
** The driver tells raft_init (saved.recovering = 1: no saved state, but
** the cluster has run), and the flag is saved with the hard state until
** it clears.  A recovering node neither grants (pre-)votes nor campaigns,
** in two phases:
**   POLLING: it answers nothing and follows no leader: a stale leader of
**   a term it had left would otherwise count its acknowledgments and its
**   read confirmations (the simulator found that one).  It asks EVERY
**   other voter its term (a PREVOTE flagged RECOVERING, with a nonce this
**   start drew; answered with the term and the nonce, changing nothing)
**   until each has answered this start's nonce.  Each answer is sent
**   after the loss, and terms never decrease, so the highest is at least
**   every term the node took part in: a candidate it voted for was in
**   that term before the vote, and answers with that term or a later one;
**   a leader it acknowledged likewise.  It takes that term and records a
**   vote for itself in it (it abstains there).  A majority of the others
**   is not enough: with 5 voters, the candidate C it voted for in T, and
**   the third voter whose vote for C is still on its way (a paused node,
**   a slow link), may both be outside the majority polled, which then
**   knows no term past T - 1; the node would take T - 1 and could later
**   vote for another candidate in T while C, still counting its
**   forgotten vote, wins T too: two leaders of one term.  Waiting a
**   while does not help: a paused node's messages have no deadline.  The
**   price: a node that lost its disk votes again only when every other
**   voter has answered once (with 5 voters and one of the others down,
**   the cluster goes on without it, but its vote waits).  An answer to
**   an earlier start's poll is ignored: it may predate the loss.
**   CATCHING UP: a follower of the leader of its term (or a later one);
**   its acknowledgments are of entries it holds durably, in a term past
**   every one it forgot.  It votes again once it holds, durably, every
**   entry up to the commit index of the leader of its current term (the
**   leader's own, which AppendEntries and heartbeats carry) and the entry
**   there is of that term: the leader committed an entry of its own term,
**   which is after every entry committed before (paper §5.4.3, leader
**   completeness), so the node again holds everything it may have
**   acknowledged before it lost its disk, and its vote cannot elect a
**   leader without it.
** Its answers carry RECOVERING, so a leader forgets the match it had for
** it.  A single voter that lost its log lost the data: recovering is
** ignored there.  The hole left: two nodes that lose their disks at once
** (more than f = 1 of 3 failures).
**
** LEAVING (issue 14, a graceful stop).  A node that is about to stop is
** told LEAVE.  It hands over the leadership it holds -- a transfer
** (thesis §3.10) to the peer that is not leaving, preferring one heard
** from since the last check-quorum, then the highest match (the most
** caught up: the transfer then only waits for the last entries) -- and
** must not take leadership back while it drains: it neither campaigns
** nor obeys TIMEOUT_NOW (raft_can_campaign), and every message it sends
** is flagged LEAVING.  A peer records the flag of each message it gets
** from a voter (raft_peer.leaving) and refuses to TRANSFER to a peer so
** marked, so the others' leadership spread does not hand groups back to
** it (a transfer to it under way is abandoned at once: proposals resume).  The mark clears with the first message heard without the flag: a
** node that restarted is a normal member again.  Safety is untouched:
** LEAVING only withholds candidacies and transfers; the node still votes
** and acknowledges entries until it stops.
**
** PLANTED BUGS.  -DRAFT_PLANT=n (default 0) compiles in one classic bug,
** to prove the tests catch it (make test-raft-plants, make
** test-sim-bugs).  "sim" marks those the simulator must catch.
**    1  commit a previous term's entry by counting replicas (Fig. 8)  sim
**    2  answer a vote before the term and vote are durable           sim
**    3  acknowledge entries before they are durable                  sim
**    4  truncate the log on a stale or duplicated AppendEntries      sim
**    5  a new leader appends no no-op                                sim
**    6  let a node that lost its log vote and campaign               sim
**    7  serve a read without the barrier (ReadIndex)                  sim
**    8  acknowledge the last index instead of prev + n               sim
**    9  reuse an index after a failed leader write                   sim
**   10  count the leader before its own write is durable             sim
**   11  accept a stale LOG_DURABLE (ABA)                             sim
**   12  a heartbeat's commit beyond the matching prefix              sim
**   13  drop a lower-term pre-vote silently (pre-vote liveness trap)
**   14  no check-quorum
**   15  (pre-)votes ignore the leader's lease
**   16  stop and wait: one AppendEntries in flight per follower
**   17  back off one entry per round trip
**   18  a fixed election timeout
**   19  no snapshot for a follower behind the first index
**   20  keep the log after an installed snapshot whatever its term    sim
**   21  the transfer target runs pre-vote
**   22  no cluster id / node id check
**   23  no pre-vote
**   24  a leadership transfer is never aborted
**   25  no byte window
**   26  a node that lost its log follows leaders at once (no term poll)  sim
**   27  LOST LOG polls a majority of the others (after 3T), not all
**   28  a new commit index reaches the followers only with the next tick
**   29  a leaving node still campaigns and obeys TIMEOUT_NOW
**   30  the LEAVING mark of a peer never clears (a restarted node stays
**       out of transfers)
** (src/group.c has its own, -DGROUP_PLANT=n: a leader that answers
** writes before they are committed, caught by the fault harness, make
** test-fault-plants; and two of snapshot install and --lost-log, make
** test-catchup-plants.)
*/


#ifndef RAFT_PLANT
#define RAFT_PLANT 0
#endif
#define RAFT_BUG(n) (RAFT_PLANT == (n))

/* struct raft.recovering: LOST LOG's phases (0: a voter). */
#define RAFT_CATCHING 1
#define RAFT_POLLING 2

/* ------------------------------------------------------------ the trail */

/* Run k of the trail, 0 the oldest. */
static struct raft_run *raft_run_at(const struct raft *r, unsigned k) {
  return &r->trail[(r->trail_head + k) % r->c.trail_cap];
}

URSULA_PRIVATE int raft_term_at(const struct raft *r, uint64_t index,
                                uint64_t *term) {
  unsigned lo, hi;
  if (index == r->snap_index) {
    *term = r->snap_term;
    return 1;
  }
  if (index < r->snap_index || index > r->last_index) return 0;
  /* the last run starting at or before index: run lo <= index < run hi */
  lo = 0;
  hi = r->trail_n;
  while (hi - lo > 1) {
    unsigned mid = lo + (hi - lo) / 2;
    if (raft_run_at(r, mid)->index <= index)
      lo = mid;
    else
      hi = mid;
  }
  *term = raft_run_at(r, lo)->term;
  return 1;
}

static uint64_t raft_last_term(const struct raft *r) {
  uint64_t t = 0;
  raft_term_at(r, r->last_index, &t);
  return t;
}

/* Extend the log to hi with entries of term (term >= the last term).
** 0, or -1 if it needs a new run and the trail is full. */
static int raft_trail_append(struct raft *r, uint64_t hi, uint64_t term) {
  if (hi <= r->last_index) return 0;
  if (r->trail_n == 0 || raft_run_at(r, r->trail_n - 1)->term != term) {
    struct raft_run *run;
    if (r->trail_n == r->c.trail_cap) {
      r->stats.trail_full++;
      return -1;
    }
    run = raft_run_at(r, r->trail_n);
    run->index = r->last_index + 1;
    run->term = term;
    r->trail_n++;
  }
  r->last_index = hi;
  return 0;
}

/* Forget the entries from `from` on (from > snap_index). */
static void raft_trail_truncate(struct raft *r, uint64_t from) {
  while (r->trail_n > 0 && raft_run_at(r, r->trail_n - 1)->index >= from)
    r->trail_n--;
  r->last_index = from - 1;
  if (r->durable_index > r->last_index) r->durable_index = r->last_index;
  if (r->leader_match > r->last_index) r->leader_match = r->last_index;
}

/* The log now starts after entry (index, term): drop the runs before it.
** The caller made sure the log holds that entry (index <= last_index and
** its term is term). */
static void raft_trail_drop_to(struct raft *r, uint64_t index, uint64_t term) {
  while (r->trail_n > 1 && raft_run_at(r, 1)->index <= index + 1) {
    r->trail_head = (r->trail_head + 1) % r->c.trail_cap;
    r->trail_n--;
  }
  if (index == r->last_index)
    r->trail_n = 0;
  else
    raft_run_at(r, 0)->index = index + 1;
  r->snap_index = index;
  r->snap_term = term;
}

/* The log is replaced by a snapshot at (index, term): nothing after it. */
static void raft_trail_reset(struct raft *r, uint64_t index, uint64_t term) {
  r->trail_n = 0;
  r->snap_index = r->last_index = r->durable_index = index;
  r->snap_term = term;
  if (r->leader_match > index) r->leader_match = index;
}

/* --------------------------------------------------------------- output */

/* What a step may give besides AppendEntries: raft_pump() leaves this
** much room for the rest of the step. */
static size_t raft_reserve(const struct raft_config *c) {
  return 24 + 4 * RAFT_MAX_VOTERS + 2 * (size_t)c->read_cap;
}

URSULA_PRIVATE size_t raft_out_cap(const struct raft_config *c) {
  return 2 * raft_reserve(c) +
         (size_t)(RAFT_MAX_VOTERS - 1) * c->max_inflight_msgs;
}

static int raft_room(const struct raft *r, const struct raft_out *out) {
  return out->cap - out->n > raft_reserve(&r->c);
}

/* A new action at the end of out.  The reserve makes room certain. */
static struct raft_action *raft_push(struct raft_out *out, int type) {
  struct raft_action *a;
  URSULA_ASSERT(out->n < out->cap);
  a = &out->a[out->n++];
  memset(a, 0, sizeof(*a));
  a->type = type;
  return a;
}

/* SAVE_STATE if term, vote or recovering changed since the last one (or
** a failure asks for it again).  Paper Fig. 2: currentTerm and votedFor
** are persistent state, "updated on stable storage before responding to
** RPCs"; thesis §3.8. */
static void raft_persist(struct raft *r, struct raft_out *out) {
  struct raft_action *a;
  if (!r->save_again && r->term == r->saved_term && r->vote == r->saved_vote &&
      (r->recovering != 0) == (r->saved_recovering != 0))
    return;
  a = raft_push(out, RAFT_SAVE_STATE);
  a->term = r->term;
  a->vote = r->vote;
  a->commit = r->commit < r->last_index ? r->commit : r->last_index;
  a->flags = r->recovering ? 1u : 0u;
  r->saved_term = r->term;
  r->saved_vote = r->vote;
  r->saved_recovering = r->recovering != 0;
  r->save_again = 0;
}

/* A SEND of a message of type to peer `to`, in the current term, without
** the SAVE_STATE before it: only planted bug 2 calls it directly. */
static struct raft_action *raft_send_raw(struct raft *r, struct raft_out *out,
                                         int type, uint64_t to) {
  struct raft_action *a = raft_push(out, RAFT_SEND);
  a->msg.cluster_id = r->c.cluster_id;
  a->msg.from = r->c.id;
  a->msg.to = to;
  a->msg.term = r->term;
  a->msg.type = (uint8_t)type;
  return a;
}

/* Every message leaves through here (R1): the state it was sent in is
** handed to SAVE_STATE first.  The caller fills in the rest of a->msg. */
static struct raft_action *raft_send(struct raft *r, struct raft_out *out,
                                     int type, uint64_t to) {
  raft_persist(r, out);
  return raft_send_raw(r, out, type, to);
}

/* ---------------------------------------------------------------- reads */

/* Answer read rd at index (0: refused): READ_READY here, or the answer to
** the follower that forwarded it. */
static void raft_read_done(struct raft *r, struct raft_out *out,
                           const struct raft_read *rd, uint64_t index) {
  if (rd->from == r->c.id) {
    struct raft_action *a = raft_push(out, RAFT_READ_READY);
    a->ctx = rd->ctx;
    a->hi = index;
  } else {
    struct raft_action *a =
        raft_send(r, out, RAFT_MSG_READ_INDEX_RESP, rd->from);
    a->msg.ctx = rd->ctx;
    a->msg.index = index;
    if (index == 0) a->msg.flags = RAFT_F_REJECT;
  }
}

static void raft_reads_fail_all(struct raft *r, struct raft_out *out) {
  while (r->reads_n > 0) {
    raft_read_done(r, out, &r->reads[r->reads_head], 0);
    r->reads_head = (r->reads_head + 1) % r->c.read_cap;
    r->reads_n--;
  }
}

/* ------------------------------------------------------ roles and timer */

/* A fresh election timeout, drawn from [T, 2T) (paper §5.2: randomized
** timeouts, so that split votes are rare and end quickly). */
static void raft_reset_timer(struct raft *r) {
  unsigned t = r->c.election_ticks;
  r->elapsed = 0;
  r->timeout =
      RAFT_BUG(18) ? t : t + (unsigned)(r->c.env->random(r->c.env) % t);
}

/* Paper §5.1: a server that sees a higher term takes it and becomes a
** follower (with no vote in it); a leader or candidate that steps down
** becomes a follower.  A leader's pending reads are refused. */
static void raft_become_follower(struct raft *r, struct raft_out *out,
                                 uint64_t term, uint64_t leader) {
  if (r->role == RAFT_LEADER) {
    raft_reads_fail_all(r, out);
    r->transfer_to = 0;
  }
  if (term > r->term) {
    r->term = term;
    r->vote = 0;
    r->leader_match = r->leader_commit = 0;
  }
  r->role = RAFT_FOLLOWER;
  r->leader = leader;
  raft_reset_timer(r);
}

/* A message from the leader of the current term: follow it; its lease
** starts again (thesis §6.2). */
static void raft_follow(struct raft *r, struct raft_out *out, uint64_t leader) {
  if (r->role != RAFT_FOLLOWER || r->leader != leader)
    raft_become_follower(r, out, r->term, leader);
  r->elapsed = 0;
}

/* Whether the leader this node follows was heard within the minimum
** election timeout (for a leader: always).  Thesis §6.2 and §9.6: while
** it holds, (pre-)votes of a higher term are ignored, so a server that
** was cut off cannot depose a leader that a quorum still hears. */
static int raft_in_lease(const struct raft *r) {
  return r->leader != 0 && r->elapsed < r->c.election_ticks;
}

/* ---------------------------------------------------------------- peers */

static struct raft_peer *raft_peer(struct raft *r, uint64_t id) {
  unsigned i;
  for (i = 0; i < r->n_peers; i++)
    if (r->peers[i].id == id) return &r->peers[i];
  return NULL;
}

static void raft_infl_reset(struct raft_peer *p) {
  p->infl_head = p->infl_n = 0;
  p->infl_total = 0;
}

/* The window (etcd-io/raft tracker/inflights.go has the same idea): at
** most max_inflight_msgs AppendEntries and max_inflight_bytes of entries
** in flight to one follower. */
static int raft_infl_full(const struct raft *r, const struct raft_peer *p) {
  unsigned cap = RAFT_BUG(16) ? 1 : r->c.max_inflight_msgs;
  if (p->infl_n >= cap) return 1;
  return !RAFT_BUG(25) && r->c.max_inflight_bytes != 0 &&
         p->infl_total >= r->c.max_inflight_bytes;
}

static void raft_infl_add(const struct raft *r, struct raft_peer *p,
                          uint64_t last, uint64_t bytes) {
  unsigned k = (p->infl_head + p->infl_n) % r->c.max_inflight_msgs;
  p->infl_last[k] = last;
  p->infl_bytes[k] = bytes;
  p->infl_n++;
  p->infl_total += bytes;
}

/* The messages whose entries are all <= index were received. */
static void raft_infl_free_to(const struct raft *r, struct raft_peer *p,
                              uint64_t index) {
  while (p->infl_n > 0 && p->infl_last[p->infl_head] <= index) {
    p->infl_total -= p->infl_bytes[p->infl_head];
    p->infl_head = (p->infl_head + 1) % r->c.max_inflight_msgs;
    p->infl_n--;
  }
}

/* PROBE: one message at a time, from next, until one is accepted
** (etcd-io/raft tracker/progress.go names these states too). */
static void raft_peer_probe(const struct raft *r, struct raft_peer *p,
                            uint64_t next) {
  if (next <= p->match) next = p->match + 1;
  if (next > r->last_index + 1) next = r->last_index + 1;
  p->state = RAFT_PROBE;
  p->next = next;
  p->paused = 0;
  p->stalled = 0;
  raft_infl_reset(p);
}

/* REPLICATE: stream from match + 1, many messages in flight. */
static void raft_peer_replicate(struct raft_peer *p) {
  p->state = RAFT_REPLICATE;
  p->next = p->match + 1;
  p->stalled = 0;
  raft_infl_reset(p);
}

static uint64_t raft_bytes(const struct raft *r, uint64_t index) {
  return r->c.entry_bytes ? r->c.entry_bytes(r->c.arg, index) : 0;
}

/* ---------------------------------------------------------- replication */

/* Send peer p what follows p->next - 1 (paper §5.3, Fig. 2
** AppendEntries): at most max_msg_entries entries, max_msg_bytes bytes
** (at least one entry) and RAFT_MSG_RUNS term runs.  When the entry
** before p->next was compacted, SEND_SNAPSHOT instead (paper §7).
** Returns 1 if something was given. */
static int raft_send_append(struct raft *r, struct raft_out *out,
                            struct raft_peer *p) {
  uint64_t prev, prev_term, i, bytes = 0;
  uint32_t n = 0;
  struct raft_action *a;
  struct raft_msg *m;
  if (p->state == RAFT_SNAPSHOTTING) return 0;
  if (p->state == RAFT_PROBE && p->paused) return 0;
  if (p->next > r->last_index + 1) p->next = r->last_index + 1;
  if (p->state == RAFT_REPLICATE && p->next > r->last_index) return 0;
  prev = p->next - 1;
  if (RAFT_BUG(19) && prev < r->snap_index) prev = r->snap_index;
  if (!raft_term_at(r, prev, &prev_term)) {
    raft_persist(r, out);
    a = raft_push(out, RAFT_SEND_SNAPSHOT);
    a->peer = p->id;
    a->hi = r->snap_index;
    a->term = r->snap_term;
    p->state = RAFT_SNAPSHOTTING;
    p->snap_index = r->snap_index;
    raft_infl_reset(p);
    return 1;
  }
  a = raft_send(r, out, RAFT_MSG_APPEND, p->id);
  m = &a->msg;
  m->index = prev;
  m->log_term = prev_term;
  m->commit = r->commit;
  for (i = prev + 1; i <= r->last_index && n < r->c.max_msg_entries; i++) {
    uint64_t b = raft_bytes(r, i), t = 0;
    if (n > 0 && r->c.max_msg_bytes != 0 && bytes + b > r->c.max_msg_bytes)
      break;
    raft_term_at(r, i, &t);
    if (m->n_runs == 0 || m->runs[m->n_runs - 1].term != t) {
      if (m->n_runs == RAFT_MSG_RUNS) break;
      m->runs[m->n_runs].index = i;
      m->runs[m->n_runs].term = t;
      m->n_runs++;
    }
    bytes += b;
    n++;
  }
  m->n = n;
  if (p->state == RAFT_REPLICATE) {
    raft_infl_add(r, p, prev + n, bytes);
    p->next = prev + n + 1;
  } else {
    p->paused = 1; /* PROBE: wait for the answer (or a heartbeat's) */
  }
  return 1;
}

/* Send p all its window allows: in REPLICATE as many messages as fit,
** without waiting for answers (never stop-and-wait); in PROBE one. */
static void raft_pump(struct raft *r, struct raft_out *out,
                      struct raft_peer *p) {
  if (p->state == RAFT_REPLICATE) {
    while (p->next <= r->last_index && !raft_infl_full(r, p) &&
           raft_room(r, out))
      if (!raft_send_append(r, out, p)) break;
  } else if (raft_room(r, out)) {
    raft_send_append(r, out, p);
  }
}

static void raft_pump_all(struct raft *r, struct raft_out *out) {
  unsigned i;
  for (i = 0; i < r->n_peers; i++) raft_pump(r, out, &r->peers[i]);
}

/* A heartbeat to p (paper §5.2: empty AppendEntries keep the leader's
** authority; thesis §6.4: they also confirm it for reads, ctx carrying
** the read sequence).  It names an entry p holds -- the smaller of its
** match and the commit -- with its term, and says that much is
** committed: a follower only learns a commit index within the prefix it
** shares with the leader (etcd-io/etcd#3519). */
static void raft_send_heartbeat(struct raft *r, struct raft_out *out,
                                struct raft_peer *p) {
  uint64_t c = p->match < r->commit ? p->match : r->commit, t = 0;
  struct raft_action *a;
  if (!raft_term_at(r, c, &t)) c = t = 0;
  a = raft_send(r, out, RAFT_MSG_HEARTBEAT, p->id);
  a->msg.index = c;
  a->msg.log_term = t;
  a->msg.commit = RAFT_BUG(12) ? r->commit : c;
  if (c > p->told) p->told = c;
  a->msg.last = r->commit; /* for a node that lost its log */
  a->msg.ctx = r->read_seq;
}

static void raft_bcast_heartbeat(struct raft *r, struct raft_out *out) {
  unsigned i;
  for (i = 0; i < r->n_peers; i++) raft_send_heartbeat(r, out, &r->peers[i]);
}

/* A read is ready once a quorum answered a heartbeat sent after it was
** registered (thesis §6.4, step 3): reads leave in order. */
static void raft_reads_check(struct raft *r, struct raft_out *out) {
  while (r->reads_n > 0) {
    struct raft_read *rd = &r->reads[r->reads_head];
    unsigned i, n = 1;
    if (rd->seq == 0) break;
    for (i = 0; i < r->n_peers; i++)
      if (r->peers[i].read_ack >= rd->seq) n++;
    if (n < r->quorum) break;
    raft_read_done(r, out, rd, rd->index);
    r->reads_head = (r->reads_head + 1) % r->c.read_cap;
    r->reads_n--;
  }
}

/* Thesis §6.4, steps 1-2: once the leader has committed an entry of its
** term, a waiting read records the commit index as its read index, and a
** round of heartbeats confirms that this node is still the leader. */
static void raft_reads_start(struct raft *r, struct raft_out *out) {
  unsigned i;
  int any = 0;
  if (!r->term_committed) return;
  for (i = 0; i < r->reads_n; i++) {
    struct raft_read *rd = &r->reads[(r->reads_head + i) % r->c.read_cap];
    if (rd->seq != 0) continue;
    rd->seq = r->read_seq + 1;
    rd->index = r->commit;
    any = 1;
  }
  if (!any) return;
  r->read_seq++;
  raft_bcast_heartbeat(r, out);
  raft_reads_check(r, out);
}

/* Register a read barrier at the leader, for ctx of node `from`. */
static void raft_read_add(struct raft *r, struct raft_out *out, uint64_t ctx,
                          uint64_t from) {
  struct raft_read *rd;
  if (RAFT_BUG(7) || r->reads_n == r->c.read_cap) {
    struct raft_read now;
    now.ctx = ctx;
    now.from = from;
    now.index = now.seq = 0;
    raft_read_done(r, out, &now, RAFT_BUG(7) ? r->commit : 0);
    return;
  }
  rd = &r->reads[(r->reads_head + r->reads_n) % r->c.read_cap];
  rd->ctx = ctx;
  rd->from = from;
  rd->index = rd->seq = 0;
  r->reads_n++;
  raft_reads_start(r, out);
}

/* Paper §5.3 and §5.4.2, Fig. 8 (thesis §3.6.2): an entry is committed
** once a quorum holds it (match >= N) and it is of the leader's term;
** entries before it are committed with it.  The leader counts itself
** through its durable index, and only once its own vote for this term is
** durable (thesis §10.2.1: the leader writes in parallel, and counts its
** own write only when it is done).  Returns 1 if commit moved. */
static int raft_maybe_commit(struct raft *r, struct raft_out *out) {
  uint64_t m[RAFT_MAX_VOTERS], t = 0, n_idx;
  unsigned n = 0, i, j;
  struct raft_action *a;
  m[n++] = RAFT_BUG(10)                 ? r->last_index
           : r->durable_term == r->term ? r->durable_index
                                        : 0;
  for (i = 0; i < r->n_peers; i++) m[n++] = r->peers[i].match;
  for (i = 1; i < n; i++) /* descending */
    for (j = i; j > 0 && m[j] > m[j - 1]; j--) {
      uint64_t x = m[j];
      m[j] = m[j - 1];
      m[j - 1] = x;
    }
  n_idx = m[r->quorum - 1];
  if (n_idx <= r->commit || !raft_term_at(r, n_idx, &t)) return 0;
  if (t != r->term && !RAFT_BUG(1)) return 0;
  r->commit = n_idx;
  a = raft_push(out, RAFT_COMMIT);
  a->hi = n_idx;
  return 1;
}

/* After the leader's commit moved: the first commit of its term frees the
** reads that waited for it. */
static void raft_after_commit(struct raft *r, struct raft_out *out) {
  uint64_t t = 0;
  size_t k, before = out->n;
  int told = 0;
  if (!r->term_committed && raft_term_at(r, r->commit, &t) && t == r->term) {
    r->term_committed = 1;
    raft_reads_start(r, out); /* (a round of heartbeats, if reads wait) */
  }
  for (k = before; k < out->n; k++)
    told |= out->a[k].type == RAFT_SEND &&
            out->a[k].msg.type == RAFT_MSG_HEARTBEAT;
  /* the followers learn the new commit index now, not at the next
  ** heartbeat tick: they apply, and answer their reads and the writes
  ** they forwarded, a round trip after the leader (etcd: bcastAppend
  ** after maybeCommit) */
  if (!told && r->c.commit_notify && !RAFT_BUG(28))
    raft_bcast_heartbeat(r, out);
}

/* ------------------------------------------------------------- election */

static void raft_clear_votes(struct raft *r) {
  unsigned i;
  for (i = 0; i < r->n_peers; i++) r->peers[i].vote = 0;
}

/* Votes counted as want (1 granted, -1 refused); a candidate grants its
** own. */
static unsigned raft_votes(const struct raft *r, int want) {
  unsigned i, n = want > 0 ? 1 : 0;
  for (i = 0; i < r->n_peers; i++)
    if (r->peers[i].vote == want) n++;
  return n;
}

/* Paper §5.2: a candidate that wins a quorum becomes leader.  Every
** follower starts in PROBE from the end of the leader's log (paper §5.3:
** nextIndex = last log index + 1).  It appends a no-op of its term (paper
** §8, thesis §3.6.2 and §6.4): entries of earlier terms commit only with
** an entry of the leader's term, and reads wait for one. */
static void raft_become_leader(struct raft *r, struct raft_out *out) {
  unsigned i;
  r->role = RAFT_LEADER;
  r->leader = r->c.id;
  r->elapsed = r->hb_elapsed = 0;
  r->term_committed = 0;
  r->transfer_to = 0;
  for (i = 0; i < r->n_peers; i++) {
    struct raft_peer *p = &r->peers[i];
    p->match = 0;
    p->active = p->moved = 0;
    p->read_ack = 0;
    p->told = 0;
    raft_peer_probe(r, p, r->last_index + 1);
  }
  if (!RAFT_BUG(5) && raft_trail_append(r, r->last_index + 1, r->term) == 0) {
    struct raft_action *a = raft_push(out, RAFT_APPEND);
    a->flags = RAFT_APPEND_NOOP;
    a->lo = a->hi = r->last_index;
    a->msg.n_runs = 1;
    a->msg.runs[0].index = a->lo;
    a->msg.runs[0].term = r->term;
  }
  raft_pump_all(r, out);
  if (raft_maybe_commit(r, out)) raft_after_commit(r, out);
}

/* Paper §5.2: a candidate increments its term, votes for itself and asks
** every peer for its vote, with its last entry for the election
** restriction (§5.4.1).  transfer: after TimeoutNow (thesis §3.10), the
** votes ignore the leases. */
static void raft_campaign(struct raft *r, struct raft_out *out, int transfer) {
  unsigned i;
  uint64_t lt = raft_last_term(r);
  r->role = RAFT_CANDIDATE;
  r->term++;
  r->vote = r->c.id;
  r->leader = 0;
  r->leader_match = r->leader_commit = 0;
  raft_reset_timer(r);
  raft_clear_votes(r);
  if (raft_votes(r, 1) >= r->quorum) {
    raft_persist(r, out);
    raft_become_leader(r, out);
    return;
  }
  for (i = 0; i < r->n_peers; i++) {
    struct raft_action *a = raft_send(r, out, RAFT_MSG_VOTE, r->peers[i].id);
    a->msg.index = r->last_index;
    a->msg.log_term = lt;
    if (transfer) a->msg.flags = RAFT_F_TRANSFER;
  }
}

/* Thesis §9.6: before a real election, poll the peers at term + 1 without
** changing the term; only a server that could win (a quorum grants)
** disrupts the cluster with a new term. */
static void raft_precampaign(struct raft *r, struct raft_out *out) {
  unsigned i;
  uint64_t lt = raft_last_term(r);
  if (RAFT_BUG(23)) {
    raft_campaign(r, out, 0);
    return;
  }
  r->role = RAFT_PRECANDIDATE;
  r->leader = 0;
  raft_reset_timer(r);
  raft_clear_votes(r);
  if (raft_votes(r, 1) >= r->quorum) {
    raft_campaign(r, out, 0);
    return;
  }
  for (i = 0; i < r->n_peers; i++) {
    struct raft_action *a = raft_send(r, out, RAFT_MSG_PREVOTE, r->peers[i].id);
    a->msg.term = r->term + 1;
    a->msg.index = r->last_index;
    a->msg.log_term = lt;
  }
}

/* Whether this node may stand for election: its storage works, it is
** not stopping (LEAVING), it has not lost its log (LOST LOG), and its
** trail has room for the run of the no-op it would append. */
static int raft_can_campaign(const struct raft *r) {
  if (r->storage_failed) return 0;
  if (r->leaving && !RAFT_BUG(29)) return 0; /* LEAVING */
  if (r->recovering && !RAFT_BUG(6)) return 0;
  return r->trail_n < r->c.trail_cap;
}

/* A (pre-)vote request (the term checks are done: m->term >= r->term).
** Paper §5.2 and Fig. 2, RequestVote receiver: grant if this node has not
** voted for another in the term and the candidate's log is at least as
** up-to-date as its own (§5.4.1: last term, then last index).  A
** pre-vote of a higher term is granted on the log alone (thesis §9.6).
** A vote is saved before the answer leaves (R1, through raft_send). */
static void raft_recv_vote(struct raft *r, struct raft_out *out,
                           const struct raft_msg *m) {
  int pre = m->type == RAFT_MSG_PREVOTE;
  int type = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
  uint64_t lt = raft_last_term(r);
  int up = m->log_term > lt || (m->log_term == lt && m->index >= r->last_index);
  int can = r->vote == m->from || (r->vote == 0 && r->leader == 0) ||
            (pre && m->term > r->term);
  struct raft_action *a;
  if (r->recovering && !RAFT_BUG(6)) can = 0; /* LOST LOG */
  if (!can || !up) {
    a = raft_send(r, out, type, m->from);
    a->msg.flags = RAFT_F_REJECT;
    return;
  }
  if (pre) {
    a = raft_send(r, out, type, m->from);
  } else if (RAFT_BUG(2)) {
    a = raft_send_raw(r, out, type, m->from);
    r->vote = m->from;
    raft_reset_timer(r);
  } else {
    r->vote = m->from;
    raft_reset_timer(r); /* paper §5.2: granting a vote resets the timer */
    a = raft_send(r, out, type, m->from);
  }
  a->msg.term = m->term;
}

/* A (pre-)vote answer: a quorum of grants makes a pre-candidate a
** candidate and a candidate the leader; a quorum of refusals ends the
** attempt. */
static void raft_recv_vote_resp(struct raft *r, struct raft_out *out,
                                const struct raft_msg *m) {
  int pre = m->type == RAFT_MSG_PREVOTE_RESP;
  int reject = (m->flags & RAFT_F_REJECT) != 0;
  struct raft_peer *p = raft_peer(r, m->from);
  if (r->role != (pre ? RAFT_PRECANDIDATE : RAFT_CANDIDATE) ||
      (pre && !reject && m->term != r->term + 1)) {
    r->stats.stale++;
    return;
  }
  p->vote = reject ? -1 : 1;
  if (raft_votes(r, 1) >= r->quorum) {
    if (pre)
      raft_campaign(r, out, 0);
    else
      raft_become_leader(r, out);
  } else if (raft_votes(r, -1) >= r->quorum) {
    raft_become_follower(r, out, r->term, 0);
  }
}

/* ------------------------------------------------------------ follower */

/* The term of entry i of an AppendEntries, from its runs. */
static uint64_t raft_msg_term(const struct raft_msg *m, uint64_t i) {
  unsigned k = m->n_runs;
  while (k > 1 && m->runs[k - 1].index > i) k--;
  return m->runs[k - 1].term;
}

/* Whether an AppendEntries is well formed: runs cover (index, index + n]
** in ascending index and term, none before log_term or after term. */
static int raft_append_ok(const struct raft_msg *m) {
  unsigned k;
  if (m->index + m->n < m->index) return 0;
  if (m->n == 0) return m->n_runs == 0;
  if (m->n_runs == 0 || m->n_runs > RAFT_MSG_RUNS) return 0;
  if (m->runs[0].index != m->index + 1 || m->runs[0].term < m->log_term)
    return 0;
  for (k = 1; k < m->n_runs; k++)
    if (m->runs[k].index <= m->runs[k - 1].index ||
        m->runs[k].index > m->index + m->n ||
        m->runs[k].term <= m->runs[k - 1].term)
      return 0;
  return m->runs[m->n_runs - 1].term <= m->term;
}

/* The last index j <= index whose term is <= term, and that term (thesis
** §3.5, the paper's §5.3 optimization, etcd-io/raft findConflictByTerm):
** the follower's hint after a mismatch at index, and the leader's next
** probe for such a hint.  Walks one term run per step, so the leader
** skips a whole term per round trip.  Stops at the snapshot. */
static uint64_t raft_conflict_by_term(const struct raft *r, uint64_t index,
                                      uint64_t term, uint64_t *jt) {
  unsigned k;
  if (index > r->last_index) index = r->last_index;
  if (index <= r->snap_index || r->trail_n == 0) {
    *jt = r->snap_term;
    return r->snap_index;
  }
  k = r->trail_n;
  while (k > 0 && raft_run_at(r, k - 1)->index > index) k--;
  /* run k - 1 holds index */
  while (k > 0) {
    const struct raft_run *run = raft_run_at(r, k - 1);
    if (run->term <= term) {
      *jt = run->term;
      return index;
    }
    index = run->index - 1;
    k--;
  }
  *jt = r->snap_term;
  return r->snap_index;
}

/* The follower's answer that it holds entries <= index as the leader has
** them (the AppendEntries' prev + n, never its own last index: those
** after may be another leader's; paper Fig. 2).  Held by the driver until
** entry index is durable here and dropped if it is truncated (R2): an
** acknowledgment is of durable entries only (thesis §3.8; raft.md §8
** bug 3, yugabyte-db#32875). */
static void raft_ack(struct raft *r, struct raft_out *out, uint64_t to,
                     uint64_t index) {
  uint64_t t = 0;
  struct raft_action *a;
  if (RAFT_BUG(8) || index > r->last_index) index = r->last_index;
  a = raft_send(r, out, RAFT_MSG_APPEND_RESP, to);
  a->msg.index = index;
  a->msg.last = r->last_index;
  if (r->recovering) a->msg.flags = RAFT_F_RECOVERING;
  if (index > r->snap_index && !RAFT_BUG(3) && raft_term_at(r, index, &t)) {
    a->after_index = index;
    a->after_term = t;
  }
}

/* LOST LOG: a recovering follower is caught up once it holds, durably,
** the leader's own commit index (not the smaller one the leader lets it
** commit), and the entry there is of the leader's term.  It then
** abstains in this term (a vote for itself) and votes again from the
** next. */
static void raft_check_caught_up(struct raft *r) {
  uint64_t t, c = r->leader_commit;
  if (r->recovering != RAFT_CATCHING || r->role != RAFT_FOLLOWER ||
      r->leader == 0)
    return;
  if (c == 0 || r->durable_index < c || r->commit < c) return;
  if (!raft_term_at(r, c, &t) || t != r->term) return;
  r->recovering = 0;
  r->vote = r->c.id;
}

/* What the leader says its commit index is (an AppendEntries' commit, a
** heartbeat's last). */
static void raft_heard_commit(struct raft *r, uint64_t c) {
  if (c > r->leader_commit) r->leader_commit = c;
}

/* The follower's commit moves to c (if c is beyond it). */
static void raft_commit_to(struct raft *r, struct raft_out *out, uint64_t c) {
  struct raft_action *a;
  if (c <= r->commit) return;
  r->commit = c;
  a = raft_push(out, RAFT_COMMIT);
  a->hi = c;
}

/* Append the entries (from, hi] of m to the trail, run by run, and give
** APPEND for them.  Returns the last index appended (from - 1 if none
** fit: the trail is full). */
static uint64_t raft_append_from(struct raft *r, struct raft_out *out,
                                 const struct raft_msg *m, uint64_t from,
                                 uint64_t hi) {
  struct raft_action *a = raft_push(out, RAFT_APPEND);
  unsigned k;
  a->flags = RAFT_APPEND_MSG;
  a->lo = from;
  for (k = 0; k < m->n_runs; k++) {
    uint64_t lo = m->runs[k].index, end = hi;
    if (k + 1 < m->n_runs) end = m->runs[k + 1].index - 1;
    if (end < from) continue;
    if (lo < from) lo = from;
    if (raft_trail_append(r, end, m->runs[k].term) != 0) break;
    a->msg.runs[a->msg.n_runs].index = lo;
    a->msg.runs[a->msg.n_runs].term = m->runs[k].term;
    a->msg.n_runs++;
  }
  a->hi = r->last_index;
  if (a->hi < from) out->n--; /* nothing fit */
  return r->last_index;
}

/* AppendEntries (paper §5.3, Fig. 2 receiver rules 1-5).  The prev entry
** must match, else a refusal with a hint (thesis §3.5).  An existing
** entry is removed only if it conflicts with one of the message (same
** index, other term): a stale or duplicated message, whose entries this
** node has already, shortens nothing.  Commit moves to min(leader's
** commit, prev + n). */
static void raft_recv_append(struct raft *r, struct raft_out *out,
                             const struct raft_msg *m) {
  uint64_t prev = m->index, hi = m->index + m->n, t = 0, i, from = 0, end;
  raft_follow(r, out, m->from);
  if (!raft_append_ok(m)) {
    r->stats.stale++;
    return;
  }
  if (prev < r->snap_index) { /* the snapshot holds the first entries */
    if (hi <= r->snap_index) {
      raft_ack(r, out, m->from, hi);
      return;
    }
    if (raft_msg_term(m, r->snap_index) != r->snap_term) {
      r->stats.conflict_committed++;
      return;
    }
    prev = r->snap_index;
  }
  if (!raft_term_at(r, prev, &t) ||
      t != (prev == m->index ? m->log_term : raft_msg_term(m, prev))) {
    struct raft_action *a;
    uint64_t jt = 0, j;
    if (RAFT_BUG(17)) {
      j = prev - 1 < r->last_index ? prev - 1 : r->last_index;
      raft_term_at(r, j, &jt);
    } else {
      j = raft_conflict_by_term(r, prev, m->log_term, &jt);
    }
    a = raft_send(r, out, RAFT_MSG_APPEND_RESP, m->from);
    a->msg.flags = RAFT_F_REJECT;
    if (r->recovering) a->msg.flags |= RAFT_F_RECOVERING;
    a->msg.index = m->index;
    a->msg.hint = j;
    a->msg.log_term = jt;
    a->msg.last = r->last_index;
    return;
  }
  for (i = prev + 1; i <= hi; i++) {
    if (i > r->last_index) {
      from = i;
      break;
    }
    raft_term_at(r, i, &t);
    if (t != raft_msg_term(m, i)) {
      struct raft_action *a;
      if (i <= r->commit) { /* never: a committed entry is in every log */
        r->stats.conflict_committed++;
        return;
      }
      raft_trail_truncate(r, i);
      a = raft_push(out, RAFT_TRUNCATE);
      a->lo = i;
      from = i;
      break;
    }
  }
  if (RAFT_BUG(4) && from == 0 && hi < r->last_index && hi >= r->commit) {
    struct raft_action *a = raft_push(out, RAFT_TRUNCATE);
    raft_trail_truncate(r, hi + 1);
    a->lo = hi + 1;
  }
  end = hi;
  if (from != 0) end = raft_append_from(r, out, m, from, hi);
  if (end > r->leader_match) r->leader_match = end;
  raft_heard_commit(r, m->commit);
  raft_commit_to(r, out, m->commit < end ? m->commit : end);
  raft_check_caught_up(r);
  raft_ack(r, out, m->from, end);
}

/* A heartbeat: follow the leader; if this node's entry at m->index has
** m->log_term, its log matches the leader's up to there (Log Matching,
** paper §5.3) and the commit may move up to it. */
static void raft_recv_heartbeat(struct raft *r, struct raft_out *out,
                                const struct raft_msg *m) {
  uint64_t t;
  struct raft_action *a;
  raft_follow(r, out, m->from);
  raft_heard_commit(r, m->last);
  if (RAFT_BUG(12)) {
    raft_commit_to(r, out,
                   m->commit < r->last_index ? m->commit : r->last_index);
  } else if (raft_term_at(r, m->index, &t) && t == m->log_term) {
    if (m->index > r->leader_match) r->leader_match = m->index;
    raft_commit_to(r, out, m->commit < m->index ? m->commit : m->index);
  }
  raft_check_caught_up(r);
  a = raft_send(r, out, RAFT_MSG_HEARTBEAT_RESP, m->from);
  a->msg.ctx = m->ctx;
  a->msg.last = r->last_index;
  if (r->recovering) a->msg.flags = RAFT_F_RECOVERING;
}

/* The header of the leader's snapshot stream (paper §7, InstallSnapshot):
** install it unless this node already holds the entries, committed (its
** commit index may be past its log's end after a failed write). */
static void raft_recv_snapshot(struct raft *r, struct raft_out *out,
                               const struct raft_msg *m) {
  struct raft_action *a;
  raft_follow(r, out, m->from);
  if (m->index <= r->commit && m->index <= r->last_index) {
    raft_ack(r, out, m->from,
             r->commit < r->last_index ? r->commit : r->last_index);
    return;
  }
  a = raft_push(out, RAFT_INSTALL_SNAPSHOT);
  a->peer = m->from;
  a->hi = m->index;
  a->term = m->log_term;
}

/* Thesis §3.10: the leader asks this node to start an election now: no
** pre-vote, and its vote requests ignore the leases. */
static void raft_recv_timeout_now(struct raft *r, struct raft_out *out) {
  if (!raft_can_campaign(r)) return;
  if (RAFT_BUG(21))
    raft_precampaign(r, out);
  else
    raft_campaign(r, out, 1);
}

/* -------------------------------------------------------------- leader */

/* A follower whose answers say RECOVERING and whose last index is below
** the match the leader holds lost its log (LOST LOG): nothing it had is
** counted any more; probe it from its last index. */
static void raft_peer_lost_log(struct raft *r, struct raft_peer *p,
                               const struct raft_msg *m) {
  if (!(m->flags & RAFT_F_RECOVERING) || m->last >= p->match) return;
  p->match = 0;
  raft_peer_probe(r, p, m->last + 1);
}

/* Thesis §3.10: the target holds the whole log: let it campaign now. */
static void raft_maybe_timeout_now(struct raft *r, struct raft_out *out,
                                   const struct raft_peer *p) {
  if (r->transfer_to == p->id && p->match == r->last_index)
    raft_send(r, out, RAFT_MSG_TIMEOUT_NOW, p->id);
}

/* An answer to AppendEntries.  A refusal moves next back by the hint
** (one round trip per term); one that no longer applies (an older
** message's) is ignored.  An acknowledgment moves match (never back: an
** older one changes nothing), frees the window, may commit, and sends
** more. */
static void raft_recv_append_resp(struct raft *r, struct raft_out *out,
                                  const struct raft_msg *m) {
  struct raft_peer *p = raft_peer(r, m->from);
  if (r->role != RAFT_LEADER) return;
  p->active = 1;
  raft_peer_lost_log(r, p, m);
  if (m->flags & RAFT_F_REJECT) {
    uint64_t next, jt;
    if (p->state == RAFT_SNAPSHOTTING ||
        (p->state == RAFT_REPLICATE ? m->index <= p->match
                                    : m->index != p->next - 1)) {
      r->stats.stale++;
      return;
    }
    next = RAFT_BUG(17)
               ? m->hint + 1
               : raft_conflict_by_term(r, m->hint, m->log_term, &jt) + 1;
    if (next > m->index) next = m->index;
    raft_peer_probe(r, p, next);
    raft_send_append(r, out, p);
    return;
  }
  if (m->index > r->last_index) {
    r->stats.stale++;
    return;
  }
  if (m->index > p->match) {
    p->match = m->index;
    p->moved = 1;
  }
  if (p->next <= p->match) p->next = p->match + 1;
  if (p->state == RAFT_PROBE && p->match + 1 >= p->next)
    raft_peer_replicate(p);
  else if (p->state == RAFT_SNAPSHOTTING && p->match >= p->snap_index)
    raft_peer_replicate(p);
  else if (p->state == RAFT_REPLICATE)
    raft_infl_free_to(r, p, p->match);
  if (raft_maybe_commit(r, out)) raft_after_commit(r, out);
  /* a follower that acknowledged entries committed already (by the
  ** others) learns so now, not at the next tick */
  if ((p->match < r->commit ? p->match : r->commit) > p->told &&
      r->c.commit_notify && !RAFT_BUG(28))
    raft_send_heartbeat(r, out, p);
  raft_maybe_timeout_now(r, out, p);
  raft_pump(r, out, p);
}

/* An answer to a heartbeat: the peer is alive (check-quorum), confirms
** reads up to ctx, and a probe may go out again. */
static void raft_recv_heartbeat_resp(struct raft *r, struct raft_out *out,
                                     const struct raft_msg *m) {
  struct raft_peer *p = raft_peer(r, m->from);
  if (r->role != RAFT_LEADER) return;
  p->active = 1;
  raft_peer_lost_log(r, p, m);
  if (m->ctx > p->read_ack) {
    p->read_ack = m->ctx;
    raft_reads_check(r, out);
  }
  if (p->state == RAFT_PROBE) p->paused = 0;
  if (p->match < r->last_index) raft_pump(r, out, p);
}

/* READ_INDEX forwarded by a follower (thesis §6.4: a follower asks the
** leader for the read index), and its answer. */
static void raft_recv_read_index(struct raft *r, struct raft_out *out,
                                 const struct raft_msg *m) {
  if (r->role == RAFT_LEADER) {
    raft_read_add(r, out, m->ctx, m->from);
  } else {
    struct raft_action *a =
        raft_send(r, out, RAFT_MSG_READ_INDEX_RESP, m->from);
    a->msg.ctx = m->ctx;
    a->msg.flags = RAFT_F_REJECT;
  }
}

static void raft_recv_read_index_resp(struct raft_out *out,
                                      const struct raft_msg *m) {
  struct raft_action *a = raft_push(out, RAFT_READ_READY);
  a->ctx = m->ctx;
  a->hi = (m->flags & RAFT_F_REJECT) ? 0 : m->index;
}

/* LOST LOG, POLLING: a voter's answer to the poll: its term. */
static void raft_recv_poll(struct raft *r, const struct raft_msg *m) {
  struct raft_peer *p = raft_peer(r, m->from);
  if (m->ctx != r->poll_nonce) { /* an earlier start's poll */
    r->stats.stale++;
    return;
  }
  p->vote = 1; /* answered */
  if (m->term > r->poll_term) r->poll_term = m->term;
}

/* LOST LOG, POLLING, every tick: ask the voters that have not answered,
** each heartbeat interval; once every other voter answered (planted bug
** 27: a majority of the cluster not counting this node, after 3T ticks),
** take the highest term heard (and abstain in it), and catch up. */
static void raft_poll(struct raft *r, struct raft_out *out) {
  unsigned i, answered = 0;
  int done;
  r->elapsed++;
  for (i = 0; i < r->n_peers; i++)
    if (r->peers[i].vote == 1) answered++;
  done = RAFT_BUG(27) ? r->elapsed >= 3 * r->c.election_ticks &&
                            answered >= r->quorum
                      : answered == r->n_peers;
  if (done) {
    if (r->poll_term > r->term) {
      r->term = r->poll_term;
      r->vote = r->c.id;
    } else if (r->vote == 0) {
      r->vote = r->c.id;
    }
    r->recovering = RAFT_CATCHING;
    raft_clear_votes(r);
    raft_reset_timer(r);
    return;
  }
  if (r->elapsed % r->c.heartbeat_ticks != 0) return;
  for (i = 0; i < r->n_peers; i++) {
    struct raft_action *a;
    if (r->peers[i].vote == 1) continue;
    a = raft_send(r, out, RAFT_MSG_PREVOTE, r->peers[i].id);
    a->msg.flags = RAFT_F_RECOVERING;
    a->msg.ctx = r->poll_nonce;
  }
}

/* ------------------------------------------------------------- messages */

/* Static membership: the message is of this cluster, to this node, from
** another voter. */
static int raft_from_member(struct raft *r, const struct raft_msg *m) {
  return m->cluster_id == r->c.cluster_id && m->to == r->c.id &&
         m->from != r->c.id && raft_peer(r, m->from) != NULL &&
         m->type >= RAFT_MSG_APPEND && m->type <= RAFT_MSG_READ_INDEX_RESP;
}

/* A message from a peer.  Paper §5.1: a higher term makes this node a
** follower in it -- except a (pre-)vote while the lease holds (thesis
** §6.2, §9.6), a pre-vote (which changes no term) and a granted pre-vote
** answer (whose term is the one the pre-candidate would take).  A lower
** term is stale, but a stale leader's AppendEntries or heartbeat, and a
** stale pre-vote, are answered with this node's term: the sender learns
** it and can go on (a deposed leader steps down; a pre-candidate whose
** term fell behind catches up: etcd-io/etcd#8243, #8501). */
static void raft_recv(struct raft *r, struct raft_out *out,
                      const struct raft_msg *m) {
  if (!RAFT_BUG(22) && !raft_from_member(r, m)) {
    r->stats.foreign++;
    return;
  }
  if (raft_peer(r, m->from) == NULL) { /* only with planted bug 22 */
    r->stats.foreign++;
    return;
  }
  if (m->type != RAFT_MSG_SNAPSHOT) { /* LEAVING (the header is the driver's) */
    struct raft_peer *p = raft_peer(r, m->from);
    if (m->flags & RAFT_F_LEAVING) {
      p->leaving = 1;
      if (r->transfer_to == m->from) r->transfer_to = 0; /* it would not */
    } else if (!RAFT_BUG(30)) {
      p->leaving = 0;
    }
  }
  if (r->storage_failed) { /* R5: neither vote nor ack */
    r->stats.refused++;
    return;
  }
  if (m->type == RAFT_MSG_PREVOTE && (m->flags & RAFT_F_RECOVERING)) {
    struct raft_action *a = raft_send(r, out, RAFT_MSG_PREVOTE_RESP, m->from);
    a->msg.flags = RAFT_F_REJECT | RAFT_F_RECOVERING; /* LOST LOG's poll */
    a->msg.ctx = m->ctx;
    return;
  }
  if (r->recovering == RAFT_POLLING) {
    if (m->type == RAFT_MSG_PREVOTE_RESP && (m->flags & RAFT_F_RECOVERING))
      raft_recv_poll(r, m);
    else
      r->stats.refused++;
    return;
  }
  if (m->term > r->term) {
    int vote = m->type == RAFT_MSG_PREVOTE || m->type == RAFT_MSG_VOTE;
    if (vote && !(m->flags & RAFT_F_TRANSFER) && raft_in_lease(r) &&
        !RAFT_BUG(15)) {
      r->stats.lease++;
      return;
    }
    if (m->type != RAFT_MSG_PREVOTE &&
        !(m->type == RAFT_MSG_PREVOTE_RESP && !(m->flags & RAFT_F_REJECT))) {
      int lead = m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
                 m->type == RAFT_MSG_SNAPSHOT ||
                 m->type == RAFT_MSG_TIMEOUT_NOW;
      raft_become_follower(r, out, m->term, lead ? m->from : 0);
    }
  } else if (m->term < r->term) {
    r->stats.stale++;
    if (m->type == RAFT_MSG_APPEND) {
      struct raft_action *a = raft_send(r, out, RAFT_MSG_APPEND_RESP, m->from);
      a->msg.flags = RAFT_F_REJECT;
    } else if (m->type == RAFT_MSG_HEARTBEAT) {
      raft_send(r, out, RAFT_MSG_HEARTBEAT_RESP, m->from);
    } else if (m->type == RAFT_MSG_PREVOTE && !RAFT_BUG(13)) {
      struct raft_action *a = raft_send(r, out, RAFT_MSG_PREVOTE_RESP, m->from);
      a->msg.flags = RAFT_F_REJECT;
    }
    return;
  }
  switch (m->type) {
    case RAFT_MSG_APPEND:
      raft_recv_append(r, out, m);
      break;
    case RAFT_MSG_APPEND_RESP:
      raft_recv_append_resp(r, out, m);
      break;
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_VOTE:
      raft_recv_vote(r, out, m);
      break;
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
      raft_recv_vote_resp(r, out, m);
      break;
    case RAFT_MSG_HEARTBEAT:
      raft_recv_heartbeat(r, out, m);
      break;
    case RAFT_MSG_HEARTBEAT_RESP:
      raft_recv_heartbeat_resp(r, out, m);
      break;
    case RAFT_MSG_SNAPSHOT:
      raft_recv_snapshot(r, out, m);
      break;
    case RAFT_MSG_TIMEOUT_NOW:
      raft_recv_timeout_now(r, out);
      break;
    case RAFT_MSG_READ_INDEX:
      raft_recv_read_index(r, out, m);
      break;
    case RAFT_MSG_READ_INDEX_RESP:
      raft_recv_read_index_resp(out, m);
      break;
    default:
      break;
  }
}

/* --------------------------------------------------------------- inputs */

/* Every heartbeat interval: heartbeats to all, and a follower whose
** window has been full of unanswered messages for two intervals is
** probed again (its messages were lost).  Every election timeout:
** check-quorum (thesis §6.2: a leader that did not hear from a quorum
** steps down, so that a minority leader stops taking writes and reads),
** and a transfer that did not finish is abandoned (thesis §3.10). */
static void raft_tick_leader(struct raft *r, struct raft_out *out) {
  unsigned i;
  if (++r->hb_elapsed >= r->c.heartbeat_ticks) {
    r->hb_elapsed = 0;
    for (i = 0; i < r->n_peers; i++) {
      struct raft_peer *p = &r->peers[i];
      if (p->state == RAFT_REPLICATE && p->infl_n > 0 && !p->moved) {
        if (++p->stalled >= 2) raft_peer_probe(r, p, p->match + 1);
      } else {
        p->stalled = 0;
      }
      p->moved = 0;
    }
    raft_bcast_heartbeat(r, out);
  }
  if (r->transfer_to != 0 && ++r->transfer_elapsed >= r->c.election_ticks &&
      !RAFT_BUG(24))
    r->transfer_to = 0;
  if (++r->elapsed >= r->c.election_ticks) {
    unsigned n = 1;
    r->elapsed = 0;
    for (i = 0; i < r->n_peers; i++) {
      if (r->peers[i].active) n++;
      r->peers[i].active = 0;
    }
    if (n < r->quorum && !RAFT_BUG(14))
      raft_become_follower(r, out, r->term, 0);
  }
}

/* Paper §5.2: a follower (or candidate) that hears from no leader for its
** election timeout starts an election -- with pre-vote first -- unless it
** may not (raft_can_campaign); either way the leader is gone. */
static void raft_tick(struct raft *r, struct raft_out *out) {
  if (r->role == RAFT_LEADER) {
    raft_tick_leader(r, out);
    return;
  }
  if (r->recovering == RAFT_POLLING) {
    raft_poll(r, out);
    return;
  }
  if (++r->elapsed < r->timeout) return;
  r->leader = 0;
  if (raft_can_campaign(r))
    raft_precampaign(r, out);
  else
    raft_reset_timer(r);
}

/* PROPOSE: n entries of the leader's term at the end of its log; sent to
** the followers at once, while its own write is under way (thesis
** §10.2.1). */
static int raft_propose(struct raft *r, struct raft_out *out, uint32_t n) {
  struct raft_action *a;
  uint64_t lo = r->last_index + 1;
  if (n == 0) return URSULA_EINVAL;
  if (r->role != RAFT_LEADER || r->transfer_to != 0 || r->storage_failed)
    return URSULA_EAGAIN;
  if (r->c.max_uncommitted != 0 &&
      r->last_index - r->commit + n > r->c.max_uncommitted)
    return URSULA_EAGAIN;
  if (raft_trail_append(r, r->last_index + n, r->term) != 0)
    return URSULA_EAGAIN;
  a = raft_push(out, RAFT_APPEND);
  a->lo = lo;
  a->hi = r->last_index;
  a->msg.n_runs = 1;
  a->msg.runs[0].index = lo;
  a->msg.runs[0].term = r->term;
  out->term = r->term;
  out->index = lo;
  raft_pump_all(r, out);
  return URSULA_OK;
}

/* LOG_DURABLE (R4): taken only if entry index still has that term. */
static void raft_log_durable(struct raft *r, struct raft_out *out,
                             uint64_t term, uint64_t index) {
  uint64_t t;
  if (RAFT_BUG(11)) {
    if (index > r->last_index) index = r->last_index;
  } else if (!raft_term_at(r, index, &t) || t != term) {
    r->stats.stale_durable++;
    return;
  }
  if (index <= r->durable_index) return;
  r->durable_index = index;
  if (r->role == RAFT_LEADER && raft_maybe_commit(r, out))
    raft_after_commit(r, out);
  raft_check_caught_up(r);
}

static void raft_state_durable(struct raft *r, struct raft_out *out,
                               uint64_t term, uint64_t vote) {
  if (term < r->durable_term) return;
  r->durable_term = term;
  r->durable_vote = vote;
  if (r->role == RAFT_LEADER && raft_maybe_commit(r, out))
    raft_after_commit(r, out);
}

/* The snapshot stream to peer ended: on success probe from after it (its
** acknowledgment follows), on failure from its match, after a heartbeat. */
static void raft_snap_done(struct raft *r, uint64_t peer, int ok) {
  struct raft_peer *p = raft_peer(r, peer);
  if (r->role != RAFT_LEADER || p == NULL || p->state != RAFT_SNAPSHOTTING)
    return;
  raft_peer_probe(r, p, ok ? p->snap_index + 1 : p->match + 1);
  p->paused = !ok;
}

/* The snapshot (term, index) is installed: the log is kept after it only
** if its entry index has that term (paper §7: "If existing log entry has
** same index and term as snapshot's last included entry, retain log
** entries following it"); otherwise the log is the snapshot alone. */
static void raft_snap_installed(struct raft *r, struct raft_out *out,
                                uint64_t term, uint64_t index) {
  uint64_t t;
  if (index <= r->snap_index) return; /* the driver installs none older */
  if (index < r->last_index &&
      (RAFT_BUG(20) || (raft_term_at(r, index, &t) && t == term))) {
    raft_trail_drop_to(r, index, term);
    if (r->durable_index < index) r->durable_index = index;
  } else {
    raft_trail_reset(r, index, term);
  }
  if (r->leader_match < index) r->leader_match = index;
  raft_commit_to(r, out, index);
  raft_check_caught_up(r);
  if (r->leader != 0) raft_ack(r, out, r->leader, index);
}

/* COMPACTED: the driver's durable snapshot covers the log up to index. */
static int raft_compacted(struct raft *r, uint64_t term, uint64_t index) {
  uint64_t t;
  if (index <= r->snap_index) return URSULA_OK;
  if (index > r->commit || !raft_term_at(r, index, &t) || t != term)
    return URSULA_EINVAL;
  raft_trail_drop_to(r, index, term);
  if (r->durable_index < index) r->durable_index = index;
  return URSULA_OK;
}

/* TRANSFER (thesis §3.10): stop taking proposals, bring the target up to
** date, then TimeoutNow; abandoned after an election timeout.  Never to a
** peer that is leaving (LEAVING). */
static int raft_transfer(struct raft *r, struct raft_out *out,
                         uint64_t target) {
  struct raft_peer *p = raft_peer(r, target);
  if (r->role != RAFT_LEADER) return URSULA_EAGAIN;
  if (p == NULL) return URSULA_EINVAL;
  if (p->leaving) return URSULA_EAGAIN; /* LEAVING: it would not take it */
  if (r->transfer_to == target) return URSULA_OK;
  r->transfer_to = target;
  r->transfer_elapsed = 0;
  if (p->match == r->last_index)
    raft_maybe_timeout_now(r, out, p);
  else
    raft_pump(r, out, p);
  return URSULA_OK;
}

/* LEAVE (LEAVING): this node stops campaigning; a leader with no
** transfer under way hands over to the peer not leaving that was heard
** from since the last check-quorum, else any not leaving, the highest
** match first.  (A transfer to a peer that is leaving too was abandoned
** when its flag came: raft_recv.) */
static int raft_leave(struct raft *r, struct raft_out *out) {
  const struct raft_peer *best = NULL;
  unsigned i;
  r->leaving = 1;
  if (r->role != RAFT_LEADER || r->transfer_to != 0) return URSULA_OK;
  for (i = 0; i < r->n_peers; i++) {
    const struct raft_peer *p = &r->peers[i];
    if (p->leaving) continue;
    if (best == NULL || (p->active && !best->active) ||
        (p->active == best->active && p->match > best->match))
      best = p;
  }
  if (best == NULL) return URSULA_EAGAIN;
  return raft_transfer(r, out, best->id);
}

/* STORAGE_FAILED (R5): step down and refuse everything until recovered.
** Entries not durable may be gone; a leader's may already be on
** followers, so this term may never give their indexes to other entries:
** stepping down ends the term's proposals here. */
static void raft_storage_failed(struct raft *r, struct raft_out *out) {
  if (RAFT_BUG(9) && r->role == RAFT_LEADER) {
    raft_trail_truncate(r, r->durable_index + 1); /* and go on proposing */
    return;
  }
  r->storage_failed = 1;
  raft_become_follower(r, out, r->term, 0);
}

/* STORAGE_RECOVERED: the log ends at its durable entry (term, index);
** the hard state is saved again (the last SAVE_STATE may be lost).  The
** commit index stays (what is committed stays committed), though it may
** be past the log's end until the entries come back. */
static int raft_storage_recovered(struct raft *r, uint64_t term,
                                  uint64_t index) {
  uint64_t t;
  if (!r->storage_failed) return URSULA_OK;
  if (!raft_term_at(r, index, &t) || t != term) return URSULA_EINVAL;
  if (index < r->last_index) raft_trail_truncate(r, index + 1);
  r->storage_failed = 0;
  r->save_again = 1;
  raft_reset_timer(r);
  return URSULA_OK;
}

static int raft_read_index(struct raft *r, struct raft_out *out, uint64_t ctx) {
  if (r->role == RAFT_LEADER && !r->storage_failed) {
    raft_read_add(r, out, ctx, r->c.id);
  } else if (r->leader != 0 && !r->storage_failed) {
    struct raft_action *a = raft_send(r, out, RAFT_MSG_READ_INDEX, r->leader);
    a->msg.ctx = ctx;
  } else {
    struct raft_action *a = raft_push(out, RAFT_READ_READY);
    a->ctx = ctx;
  }
  return URSULA_OK;
}

URSULA_PRIVATE int raft_step(struct raft *r, const struct raft_in *in,
                             struct raft_out *out) {
  int rc = URSULA_OK, role = r->role;
  uint64_t leader = r->leader, term = r->term;
  size_t first = out->n;
  if (out->n > out->cap || out->cap - out->n <= raft_reserve(&r->c))
    return URSULA_EINVAL;
  switch (in->type) {
    case RAFT_IN_TICK:
      raft_tick(r, out);
      break;
    case RAFT_IN_MSG:
      if (in->msg == NULL) return URSULA_EINVAL;
      raft_recv(r, out, in->msg);
      break;
    case RAFT_IN_PROPOSE:
      rc = raft_propose(r, out, in->n);
      break;
    case RAFT_IN_LOG_DURABLE:
      raft_log_durable(r, out, in->term, in->index);
      break;
    case RAFT_IN_STATE_DURABLE:
      raft_state_durable(r, out, in->term, in->vote);
      break;
    case RAFT_IN_SNAP_SENT:
      raft_snap_done(r, in->peer, 1);
      break;
    case RAFT_IN_SNAP_FAILED:
      raft_snap_done(r, in->peer, 0);
      break;
    case RAFT_IN_SNAP_INSTALLED:
      raft_snap_installed(r, out, in->term, in->index);
      break;
    case RAFT_IN_COMPACTED:
      rc = raft_compacted(r, in->term, in->index);
      break;
    case RAFT_IN_READ_INDEX:
      rc = raft_read_index(r, out, in->ctx);
      break;
    case RAFT_IN_TRANSFER:
      rc = raft_transfer(r, out, in->peer);
      break;
    case RAFT_IN_STORAGE_FAILED:
      raft_storage_failed(r, out);
      break;
    case RAFT_IN_STORAGE_RECOVERED:
      rc = raft_storage_recovered(r, in->term, in->index);
      break;
    case RAFT_IN_LEAVE:
      rc = raft_leave(r, out);
      break;
    default:
      return URSULA_EINVAL;
  }
  if (r->leaving) { /* LEAVING: every message says so */
    size_t k;
    for (k = first; k < out->n; k++)
      if (out->a[k].type == RAFT_SEND) out->a[k].msg.flags |= RAFT_F_LEAVING;
  }
  raft_persist(r, out);
  if (role != r->role || leader != r->leader || term != r->term) {
    struct raft_action *a = raft_push(out, RAFT_ROLE);
    a->role = r->role;
    a->term = r->term;
    a->peer = r->leader;
  }
  return rc;
}

/* ------------------------------------------------------------ lifetime */

static int raft_config_ok(const struct raft_config *c) {
  unsigned i, j, self = 0;
  if (c->n_voters != 1 && c->n_voters != 3 && c->n_voters != 5) return 0;
  for (i = 0; i < c->n_voters; i++) {
    if (c->voters[i] == 0) return 0;
    if (c->voters[i] == c->id) self++;
    for (j = 0; j < i; j++)
      if (c->voters[j] == c->voters[i]) return 0;
  }
  return self == 1 && c->election_ticks >= 2 && c->heartbeat_ticks >= 1 &&
         c->heartbeat_ticks < c->election_ticks && c->max_inflight_msgs >= 1 &&
         c->max_msg_entries >= 1 && c->trail_cap >= 2 && c->read_cap >= 1 &&
         c->env != NULL && c->env->random != NULL;
}

/* The saved log's runs: ascending, inside (snap_index, last_index], the
** first at snap_index + 1, terms above snap_term. */
static int raft_saved_ok(const struct raft_config *c,
                         const struct raft_saved *s) {
  size_t k;
  if (s->last_index < s->snap_index) return 0;
  if (s->last_index == s->snap_index) return 1;
  if (s->n_runs == 0 || s->n_runs > c->trail_cap || s->runs == NULL) return 0;
  if (s->runs[0].index != s->snap_index + 1 || s->runs[0].term < s->snap_term)
    return 0;
  for (k = 1; k < s->n_runs; k++)
    if (s->runs[k].index <= s->runs[k - 1].index ||
        s->runs[k].index > s->last_index ||
        s->runs[k].term <= s->runs[k - 1].term)
      return 0;
  return 1;
}

URSULA_PRIVATE int raft_init(struct raft *r, const struct raft_config *c,
                             const struct raft_saved *s) {
  size_t ring = c->max_inflight_msgs, size;
  unsigned i, k = 0;
  uint64_t *rings;
  char *mem;
  if (!raft_config_ok(c) || !raft_saved_ok(c, s)) return URSULA_EINVAL;
  memset(r, 0, sizeof(*r));
  r->c = *c;
  size = (size_t)c->trail_cap * sizeof(struct raft_run) +
         (size_t)c->read_cap * sizeof(struct raft_read) +
         (size_t)(c->n_voters - 1) * 2 * ring * sizeof(uint64_t);
  mem = (char *)URSULA_MALLOC(size);
  if (mem == NULL) return URSULA_ENOMEM;
  r->mem = mem;
  r->trail = (struct raft_run *)(void *)mem;
  r->reads = (struct raft_read *)(void *)(mem + (size_t)c->trail_cap *
                                                    sizeof(struct raft_run));
  rings = (uint64_t *)(void *)((char *)r->reads +
                               (size_t)c->read_cap * sizeof(struct raft_read));
  r->quorum = c->n_voters / 2 + 1;
  for (i = 0; i < c->n_voters; i++) {
    struct raft_peer *p;
    if (c->voters[i] == c->id) continue;
    p = &r->peers[k++];
    p->id = c->voters[i];
    p->infl_last = rings;
    p->infl_bytes = rings + ring;
    rings += 2 * ring;
  }
  r->n_peers = k;
  r->snap_index = s->snap_index;
  r->snap_term = s->snap_term;
  r->last_index = s->last_index;
  r->durable_index = s->last_index;
  if (s->last_index > s->snap_index) {
    memcpy(r->trail, s->runs, s->n_runs * sizeof(struct raft_run));
    r->trail_n = (unsigned)s->n_runs;
  }
  r->term = r->saved_term = r->durable_term = s->term;
  r->vote = r->saved_vote = r->durable_vote = s->vote;
  /* LOST LOG: every start of a node that lost its log polls again; a
  ** single voter has nobody to catch up from (its data is gone) */
  r->saved_recovering = s->recovering ? 1 : 0;
  r->recovering = s->recovering && c->n_voters > 1 ? RAFT_POLLING : 0;
  if (RAFT_BUG(26) && r->recovering) r->recovering = RAFT_CATCHING;
  if (r->recovering) /* (never 0: an answer without one is no answer) */
    r->poll_nonce = c->env->random(c->env) | 1u;
  if (raft_last_term(r) > r->term) { /* never with R1; be safe */
    r->term = raft_last_term(r);
    r->vote = 0;
  }
  r->commit = s->commit;
  if (r->commit > r->last_index) r->commit = r->last_index;
  if (r->commit < r->snap_index) r->commit = r->snap_index;
  r->role = RAFT_FOLLOWER;
  raft_reset_timer(r);
  return URSULA_OK;
}

URSULA_PRIVATE void raft_free(struct raft *r) {
  URSULA_FREE(r->mem);
  r->mem = NULL;
}

#undef RAFT_BUG
/**** End src/raft.c ****/
/**** Begin src/peer.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/peer.c"
#endif
/*
** peer.c -- the transport between the nodes of a cluster (raft.md §3):
** frames of batched Raft messages over TCP, one outbound connection per
** (ordered node pair, core).
**
** CONNECTIONS.  Core k of node A dials node B and sends a HELLO naming
** core k; from then on A only writes to that socket and B only reads it
** (unidirectional: B's messages to A go on B's own connection to A, so an
** asymmetric partition is one socket).  The dialer binds its own address
** first (the source address is then this node's on a multi-address
** loopback), connects without blocking, sets TCP_NODELAY, and while the
** peer is down tries again after 100 ms doubling to 2 s, plus jitter
** drawn from env->random.  A link is announced up (one log line) once its
** socket has stayed open PEER_CONFIRM_MS after the HELLO went out: a peer
** that refuses the HELLO closes it at once, and the dialer then logs the
** refusal once per cause, not on every retry.  An idle link sends an
** empty BATCH every PEER_KEEPALIVE_MS, so the listener knows which
** connections are alive.
**
** The listener (one socket per node, at its own --peer address or
** --peer-listen) accepts on core 0, reads exactly the HELLO (a deadline of
** PEER_HELLO_MS), checks it and posts the socket to the core the HELLO
** names, which reads its frames from then on.  Refused, with one log line
** naming the cause: another cluster id, a `to` that is not this node, a
** `from` that is not a configured peer or is this node, another count of
** cores or groups, and a `from` whose same core is connected already,
** alive, from another process (another boot id): two processes that
** claim one node id.  A connection of a previous boot that has been
** silent past PEER_STALE_MS is taken for dead (a restart) and replaced.
**
** SENDING.  peer_send() appends a RAFT item to the core's BATCH body for
** that node; peer_flush() (end of the core's turn) frames each body and
** writes what the socket takes, the rest on LOOP_WRITE.  An item for a
** link that is not up, or whose unwritten output is over PEER_OUT_CAP, is
** dropped and counted: Raft sends again, and a core never waits on the
** network.  RECEIVING.  Frames are decoded on the core that owns the
** connection, in order; each RAFT item goes to cfg.on_raft, each
** SNAP_CHUNK to cfg.on_snap (callbacks: this part calls no part above it).
** Any protocol error logs one line (which peer, what) and closes.
**
** WIRE FORMAT.  All integers little-endian; a varint is cmd.c's (unsigned
** LEB128, shortest form only).  A FRAME:
**
**     0   4  len: bytes of the body (at most PEER_MAX_FRAME, 64 MiB)
**     4   1  version: 1
**     5   1  kind: 1 HELLO, 2 BATCH, 3 SNAP_CHUNK
**     6   2  flags: 0
**     8   4  CRC32C of bytes 0..7 and then the body
**    12 len  body
**
** HELLO body (52 bytes; the first frame of a connection, and only then):
**
**     0   8  magic "URSRAFT1"
**     8   8  cluster id (FNV-1a 64 of --cluster-id)
**    16   8  from: the sender's node id
**    24   8  to: the node id it dialed
**    32   4  core: the sender's core (the frames are for its groups)
**    36   4  cores: the sender's core count
**    40   4  groups: the sender's group count
**    44   8  boot id: random, drawn once per process start
**
** BATCH body: items back to back until the body ends, each starting with
** u8 item kind.  Kind 1 RAFT (kinds 2..15 reserved; unknown: an error):
**
**     u8      1
**     varint  group (< the HELLO's groups)
**     u8      type (RAFT_MSG_*, 1..12)
**     u8      flags: bit 0 REJECT, bit 1 TRANSFER, bit 2 RECOVERING,
**             bit 3 LEAVING (the sender is stopping: raft.c, LEAVING);
**             bits 4..7 must be 0 (a frame with one set is refused:
**             a flag may change what a message means, so one a node
**             does not know is not ignored; a node built before bit 3
**             refuses it too, and a stop then hands nothing over:
**             it stops as before, and the others elect)
**     varint  from (must be the HELLO's from)
**     varint  term, index, log_term, commit, hint, last, ctx
**     varint  n (at most 2^32 - 1)
**     u8      n_runs (at most RAFT_MSG_RUNS)
**     n_runs x (varint index, varint term)
**     varint  records_len, then that many bytes
**
**   These are struct raft_msg's fields in the order of raft.c's MESSAGES;
**   cluster_id and to are the HELLO's and are filled in by the decoder.
**   records: for an APPEND, its n entries as WAL records back to back,
**   verbatim as wal.c frames them (32-byte header with its CRC32C, then
**   the payload).  Each record's CRC must be right, and the records must
**   be exactly n entries with indexes index + 1, index + 2, ... whose terms
**   are the runs' (runs[0].index = index + 1, run indexes ascending, each
**   entry's term that of the last run at or below it).  Any other type
**   carries no records (records_len 0).
**
** SNAP_CHUNK body:
**
**     varint group | varint term | varint snap_index | varint snap_term |
**     varint offset | varint total | u8 last (0 or 1) | bytes to the end
**
**   with offset + the bytes' length <= total.
**
** Kind 2 FWD (a client's write that reached a follower, forwarded to the
** leader of its group, issue 14; the leader proposes it and answers with
** a FWD_REPLY; the follower answers its client once it has applied that
** entry itself, raft.md section 4):
**
**     u8 2 | varint group | varint req (the forwarder's id, nonzero) |
**     varint len | len bytes: the command, encoded as cmd.c encodes it
**
** Kind 3 FWD_REPLY:
**
**     u8 3 | varint group | varint req | u8 outcome (0 accepted, 1 refused)
**     | varint term | varint index  (accepted: the entry's; else 0, 0)
*/


#define PEER_VERSION 1
#define PEER_OUT_CAP ((size_t)16 << 20) /* unwritten output per connection */
#define PEER_SNAP_CAP ((size_t)4 << 20) /* ... before a snapshot chunk */
#define PEER_BACKOFF_MIN_MS 100
#define PEER_BACKOFF_MAX_MS 2000
#define PEER_CONFIRM_MS 250   /* open this long after HELLO: announced up */
#define PEER_KEEPALIVE_MS 1000
#define PEER_STALE_MS 3000    /* silent this long: a connection is dead */
#define PEER_HELLO_MS 5000    /* a new connection's HELLO deadline */
#define PEER_ITEM_RESERVED 15 /* item kinds 2..15 come in the next step */
#define PEER_REFUSALS 8       /* causes of refusal remembered for the log */
#define PEER_REFUSAL_QUIET_MS 30000 /* one line per cause this often */

static const unsigned char peer_magic[8] = {'U', 'R', 'S', 'R',
                                            'A', 'F', 'T', '1'};

/* ------------------------------------------------------------ codec */

static int peer_bad(const char **why, const char *what) {
  if (why != NULL) *why = what;
  return URSULA_ECORRUPT;
}

URSULA_PRIVATE uint64_t peer_cluster_hash(const char *name) {
  return util_hash64(name, strlen(name));
}

URSULA_PRIVATE int peer_frame_reserve(struct buf *b, size_t *start) {
  static const unsigned char zero[PEER_HEADER] = {0};
  *start = b->len;
  return buf_append(b, zero, sizeof(zero));
}

/* Fill in the header of the frame at b[start..): its body is the rest. */
URSULA_PRIVATE void peer_frame_seal(struct buf *b, size_t start, int kind) {
  unsigned char *h = (unsigned char *)b->ptr + start;
  size_t len = b->len - start - PEER_HEADER;
  uint32_t crc;
  util_put32(h, (uint32_t)len);
  h[4] = PEER_VERSION;
  h[5] = (unsigned char)kind;
  h[6] = 0;
  h[7] = 0;
  crc = util_crc32c(0, h, 8);
  util_put32(h + 8, util_crc32c(crc, h + PEER_HEADER, len));
}

URSULA_PRIVATE int peer_hello_put(struct buf *b, const struct peer_hello *h) {
  unsigned char body[PEER_HELLO_BODY];
  size_t start;
  memcpy(body, peer_magic, 8);
  util_put64(body + 8, h->cluster_id);
  util_put64(body + 16, h->from);
  util_put64(body + 24, h->to);
  util_put32(body + 32, h->core);
  util_put32(body + 36, h->cores);
  util_put32(body + 40, h->groups);
  util_put64(body + 44, h->boot_id);
  if (peer_frame_reserve(b, &start) != URSULA_OK ||
      buf_append(b, body, sizeof(body)) != URSULA_OK)
    return URSULA_ENOMEM;
  peer_frame_seal(b, start, PEER_HELLO);
  return URSULA_OK;
}

URSULA_PRIVATE int peer_item_put(struct buf *b, int group,
                                 const struct raft_msg *m, const void *records,
                                 size_t len) {
  unsigned char c[3];
  int rc = URSULA_OK, i;
  c[0] = PEER_ITEM_RAFT;
  rc |= buf_append(b, c, 1);
  rc |= cmd_put_varint(b, (uint64_t)group);
  c[0] = m->type;
  c[1] = m->flags;
  rc |= buf_append(b, c, 2);
  rc |= cmd_put_varint(b, m->from);
  rc |= cmd_put_varint(b, m->term);
  rc |= cmd_put_varint(b, m->index);
  rc |= cmd_put_varint(b, m->log_term);
  rc |= cmd_put_varint(b, m->commit);
  rc |= cmd_put_varint(b, m->hint);
  rc |= cmd_put_varint(b, m->last);
  rc |= cmd_put_varint(b, m->ctx);
  rc |= cmd_put_varint(b, m->n);
  c[0] = m->n_runs;
  rc |= buf_append(b, c, 1);
  for (i = 0; i < m->n_runs && i < RAFT_MSG_RUNS; i++) {
    rc |= cmd_put_varint(b, m->runs[i].index);
    rc |= cmd_put_varint(b, m->runs[i].term);
  }
  rc |= cmd_put_varint(b, (uint64_t)len);
  if (len > 0) rc |= buf_append(b, records, len);
  return rc == URSULA_OK ? URSULA_OK : URSULA_ENOMEM;
}

static int peer_fwd_put(struct buf *b, int group, uint64_t req,
                        const void *cmd, size_t len) {
  unsigned char c = PEER_ITEM_FWD;
  int rc = buf_append(b, &c, 1);
  rc |= cmd_put_varint(b, (uint64_t)group);
  rc |= cmd_put_varint(b, req);
  rc |= cmd_put_varint(b, (uint64_t)len);
  if (len > 0) rc |= buf_append(b, cmd, len);
  return rc == URSULA_OK ? URSULA_OK : URSULA_ENOMEM;
}

static int peer_reply_put(struct buf *b, int group, uint64_t req, int outcome,
                          uint64_t term, uint64_t index) {
  unsigned char c = PEER_ITEM_FWD_REPLY, o = (unsigned char)outcome;
  int rc = buf_append(b, &c, 1);
  rc |= cmd_put_varint(b, (uint64_t)group);
  rc |= cmd_put_varint(b, req);
  rc |= buf_append(b, &o, 1);
  rc |= cmd_put_varint(b, term);
  rc |= cmd_put_varint(b, index);
  return rc == URSULA_OK ? URSULA_OK : URSULA_ENOMEM;
}

URSULA_PRIVATE int peer_item_encode(struct buf *b,
                                    const struct peer_item *it) {
  if (it->kind == PEER_ITEM_FWD)
    return peer_fwd_put(b, it->group, it->req, it->records, it->len);
  if (it->kind == PEER_ITEM_FWD_REPLY)
    return peer_reply_put(b, it->group, it->req, it->outcome, it->term,
                          it->index);
  return peer_item_put(b, it->group, &it->msg, it->records, it->len);
}

URSULA_PRIVATE int peer_snap_put(struct buf *b, const struct peer_snap *s) {
  size_t start;
  unsigned char last = (unsigned char)(s->last ? 1 : 0);
  int rc = peer_frame_reserve(b, &start);
  rc |= cmd_put_varint(b, (uint64_t)s->group);
  rc |= cmd_put_varint(b, s->term);
  rc |= cmd_put_varint(b, s->snap_index);
  rc |= cmd_put_varint(b, s->snap_term);
  rc |= cmd_put_varint(b, s->offset);
  rc |= cmd_put_varint(b, s->total);
  rc |= buf_append(b, &last, 1);
  if (s->len > 0) rc |= buf_append(b, s->data, s->len);
  if (rc != URSULA_OK) return URSULA_ENOMEM;
  peer_frame_seal(b, start, PEER_SNAP_CHUNK);
  return URSULA_OK;
}

/* The header is checked as soon as it is whole, before the body comes:
** a length over the bound is refused without waiting for it. */
URSULA_PRIVATE int peer_frame_get(const void *p, size_t n,
                                  struct peer_frame *f, size_t *used,
                                  const char **why) {
  const unsigned char *h = (const unsigned char *)p;
  uint32_t len, crc;
  if (n < PEER_HEADER) return URSULA_EAGAIN;
  len = util_get32(h);
  if (len > PEER_MAX_FRAME) return peer_bad(why, "frame longer than 64 MiB");
  if (h[4] != PEER_VERSION) return peer_bad(why, "unknown frame version");
  if (h[5] < PEER_HELLO || h[5] > PEER_SNAP_CHUNK)
    return peer_bad(why, "unknown frame kind");
  if (h[6] != 0 || h[7] != 0) return peer_bad(why, "frame flags not 0");
  if (n - PEER_HEADER < len) return URSULA_EAGAIN;
  crc = util_crc32c(util_crc32c(0, h, 8), h + PEER_HEADER, len);
  if (crc != util_get32(h + 8)) return peer_bad(why, "frame CRC mismatch");
  f->kind = h[5];
  f->body = h + PEER_HEADER;
  f->len = len;
  *used = PEER_HEADER + (size_t)len;
  return URSULA_OK;
}

URSULA_PRIVATE int peer_hello_get(const struct peer_frame *f,
                                  struct peer_hello *h, const char **why) {
  const unsigned char *b = f->body;
  if (f->kind != PEER_HELLO) return peer_bad(why, "expected a HELLO");
  if (f->len != PEER_HELLO_BODY) return peer_bad(why, "HELLO of a bad size");
  if (memcmp(b, peer_magic, 8) != 0) return peer_bad(why, "bad HELLO magic");
  h->cluster_id = util_get64(b + 8);
  h->from = util_get64(b + 16);
  h->to = util_get64(b + 24);
  h->core = util_get32(b + 32);
  h->cores = util_get32(b + 36);
  h->groups = util_get32(b + 40);
  h->boot_id = util_get64(b + 44);
  return URSULA_OK;
}

/* A varint at *p that must be at most max. */
static int peer_get_uint(const unsigned char **p, const unsigned char *end,
                         uint64_t max, uint64_t *out) {
  return cmd_get_varint(p, end, out) == 0 && *out <= max ? 0 : -1;
}

static int peer_get_byte(const unsigned char **p, const unsigned char *end,
                         unsigned char *out) {
  if (*p >= end) return -1;
  *out = *(*p)++;
  return 0;
}

/* The term runs of m: the first at index + 1, ascending, within the n
** entries (n > 0 needs at least one run). */
static int peer_runs_ok(const struct raft_msg *m) {
  int i;
  if (m->n == 0) return m->n_runs == 0;
  if (m->n_runs == 0 || m->runs[0].index != m->index + 1) return 0;
  for (i = 1; i < m->n_runs; i++)
    if (m->runs[i].index <= m->runs[i - 1].index ||
        m->runs[i].index > m->index + m->n)
      return 0;
  return 1;
}

/* The records of an APPEND: exactly m->n entries, consecutive from
** m->index + 1, each of its run's term, every CRC right. */
static int peer_records_ok(const struct raft_msg *m, const unsigned char *p,
                           size_t len, const char **why) {
  uint64_t k;
  int run = 0;
  if (m->type != RAFT_MSG_APPEND)
    return len == 0 ? URSULA_OK : peer_bad(why, "records on a non-APPEND");
  if (m->index > UINT64_MAX - m->n) return peer_bad(why, "APPEND index overflow");
  if (!peer_runs_ok(m)) return peer_bad(why, "APPEND term runs malformed");
  if (m->n > len / WAL_RECORD_HEADER)
    return peer_bad(why, "APPEND records fewer than n");
  for (k = 0; k < m->n; k++) {
    struct wal_entry e;
    size_t size;
    uint64_t index = m->index + 1 + k;
    if (wal_record_check(p, len, &e, &size) != URSULA_OK)
      return peer_bad(why, "APPEND record damaged (CRC or header)");
    while (run + 1 < m->n_runs && m->runs[run + 1].index <= index) run++;
    if (e.index != index) return peer_bad(why, "APPEND record index out of order");
    if (e.term != m->runs[run].term)
      return peer_bad(why, "APPEND record term not its run's");
    p += size;
    len -= size;
  }
  return len == 0 ? URSULA_OK : peer_bad(why, "APPEND records more than n");
}

static int peer_get_msg(const unsigned char **p, const unsigned char *end,
                        struct raft_msg *m) {
  uint64_t v[8], n;
  unsigned char type, flags, runs;
  int bad = 0, i;
  bad |= peer_get_byte(p, end, &type);
  bad |= peer_get_byte(p, end, &flags);
  for (i = 0; i < 8 && !bad; i++) bad |= cmd_get_varint(p, end, &v[i]);
  bad |= bad ? -1 : peer_get_uint(p, end, UINT32_MAX, &n);
  bad |= bad ? -1 : peer_get_byte(p, end, &runs);
  if (bad || type < RAFT_MSG_APPEND || type > RAFT_MSG_READ_INDEX_RESP ||
      (flags & ~(RAFT_F_REJECT | RAFT_F_TRANSFER | RAFT_F_RECOVERING |
                 RAFT_F_LEAVING)) != 0 ||
      runs > RAFT_MSG_RUNS)
    return -1;
  m->type = type;
  m->flags = flags;
  m->from = v[0];
  m->term = v[1];
  m->index = v[2];
  m->log_term = v[3];
  m->commit = v[4];
  m->hint = v[5];
  m->last = v[6];
  m->ctx = v[7];
  m->n = (uint32_t)n;
  m->n_runs = runs;
  for (i = 0; i < runs; i++)
    if (cmd_get_varint(p, end, &m->runs[i].index) != 0 ||
        cmd_get_varint(p, end, &m->runs[i].term) != 0)
      return -1;
  return 0;
}

URSULA_PRIVATE int peer_item_get(const unsigned char **p,
                                 const unsigned char *end,
                                 const struct peer_hello *h,
                                 struct peer_item *it, const char **why) {
  const unsigned char *q = *p;
  unsigned char kind;
  uint64_t group, len;
  memset(it, 0, sizeof(*it));
  if (peer_get_byte(&q, end, &kind) != 0) return peer_bad(why, "empty item");
  if (kind == PEER_ITEM_FWD || kind == PEER_ITEM_FWD_REPLY) {
    unsigned char o = 0;
    if (h->groups == 0 || peer_get_uint(&q, end, h->groups - 1u, &group) != 0)
      return peer_bad(why, "FWD item: bad group");
    if (cmd_get_varint(&q, end, &it->req) != 0 || it->req == 0)
      return peer_bad(why, "FWD item: bad request id");
    if (kind == PEER_ITEM_FWD) {
      if (cmd_get_varint(&q, end, &len) != 0 || len > (uint64_t)(end - q))
        return peer_bad(why, "FWD item: command past the frame");
      it->records = q;
      it->len = (size_t)len;
      q += len;
    } else if (peer_get_byte(&q, end, &o) != 0 || o > PEER_FWD_REFUSED ||
               cmd_get_varint(&q, end, &it->term) != 0 ||
               cmd_get_varint(&q, end, &it->index) != 0) {
      return peer_bad(why, "FWD_REPLY item: malformed");
    }
    it->kind = kind;
    it->group = (int)group;
    it->outcome = o;
    *p = q;
    return URSULA_OK;
  }
  if (kind != PEER_ITEM_RAFT)
    return peer_bad(why, kind <= PEER_ITEM_RESERVED
                             ? "item kind reserved (a later version?)"
                             : "unknown item kind");
  if (h->groups == 0 || peer_get_uint(&q, end, h->groups - 1u, &group) != 0)
    return peer_bad(why, "RAFT item: bad group");
  if (peer_get_msg(&q, end, &it->msg) != 0)
    return peer_bad(why, "RAFT item: malformed message");
  if (it->msg.from != h->from)
    return peer_bad(why, "RAFT item: from is not the HELLO's");
  if (cmd_get_varint(&q, end, &len) != 0 || len > (uint64_t)(end - q))
    return peer_bad(why, "RAFT item: records length past the frame");
  it->msg.cluster_id = h->cluster_id;
  it->msg.to = h->to;
  if (peer_records_ok(&it->msg, q, (size_t)len, why) != URSULA_OK)
    return URSULA_ECORRUPT;
  it->kind = PEER_ITEM_RAFT;
  it->group = (int)group;
  it->records = q;
  it->len = (size_t)len;
  *p = q + len;
  return URSULA_OK;
}

URSULA_PRIVATE int peer_snap_get(const struct peer_frame *f,
                                 const struct peer_hello *h,
                                 struct peer_snap *s, const char **why) {
  const unsigned char *q = f->body, *end = f->body + f->len;
  uint64_t group;
  unsigned char last;
  memset(s, 0, sizeof(*s));
  if (f->kind != PEER_SNAP_CHUNK) return peer_bad(why, "expected a SNAP_CHUNK");
  if (h->groups == 0 || peer_get_uint(&q, end, h->groups - 1u, &group) ||
      cmd_get_varint(&q, end, &s->term) || cmd_get_varint(&q, end, &s->snap_index) ||
      cmd_get_varint(&q, end, &s->snap_term) || cmd_get_varint(&q, end, &s->offset) ||
      cmd_get_varint(&q, end, &s->total) || peer_get_byte(&q, end, &last) ||
      last > 1)
    return peer_bad(why, "SNAP_CHUNK: malformed header");
  s->group = (int)group;
  s->last = last;
  s->data = q;
  s->len = (size_t)(end - q);
  if (s->offset > s->total || s->total - s->offset < s->len)
    return peer_bad(why, "SNAP_CHUNK: bytes past its total");
  return URSULA_OK;
}

/* ------------------------------------------------------------ objects */

enum { PEER_DOWN = 0, PEER_CONNECTING = 1, PEER_UP = 2 };

struct peer_core;

/* The outbound link of one core to one node. */
struct peer_link {
  struct peer_core *pc;
  int ix;                  /* the node's index in cfg.nodes */
  int fd;                  /* -1 while down */
  int state;               /* PEER_DOWN, PEER_CONNECTING, PEER_UP */
  int announced;           /* its "up" line was logged */
  uint64_t backoff_ms;     /* the next retry's delay, before jitter */
  uint64_t last_frame_ms;  /* when a frame last went out (keepalive) */
  struct loop_timer timer; /* the retry, or the confirmation of "up" */
  struct buf out;          /* framed bytes not yet written */
  struct buf batch;        /* this turn's RAFT items for the node */
  uint64_t batch_items;
  char cause[160]; /* the last cause of a failure logged (once each) */
  struct peer_link_stats st;
};

/* An inbound connection, on the core its HELLO named. */
struct peer_in {
  struct peer_core *pc;
  struct peer_in *next;
  int fd, ix;
  struct peer_hello hello;
  struct buf in;
  uint64_t told_ms; /* when it last told p->seen it is alive */
  char addr[64];
};

/* A connection accepted on core 0, until its HELLO is whole. */
struct peer_pend {
  struct peer *p;
  struct peer_pend *next;
  int fd;
  unsigned char hello[PEER_HEADER + PEER_HELLO_BODY];
  size_t have;
  struct loop_timer timer;
  char addr[64];
};

/* The message that hands a checked connection to its core. */
struct peer_handoff {
  struct loop_msg m;
  struct peer *p;
  int fd, ix;
  struct peer_hello hello;
  char addr[64];
};

struct peer_core {
  struct peer *p;
  int id;
  struct loop *loop;
  struct peer_link links[PEER_MAX_NODES]; /* by node index; not self's */
  struct peer_in *ins;
  struct loop_timer keepalive;
};

/* The newest inbound connection of a (node, core): its process's boot id,
** how many are open, when one last said it is alive (under p->mu). */
struct peer_seen {
  uint64_t boot_id, seen_ms;
  int open;
};

/* A cause of refusal the listener logged, and how many it did not since
** (the same cause is logged once per PEER_REFUSAL_QUIET_MS). */
struct peer_refusal {
  char why[240];
  uint64_t last_ms, quiet;
};

struct peer {
  struct peer_config cfg;
  struct peer_refusal refusals[PEER_REFUSALS]; /* core 0's */
  struct env *env;
  int self; /* this node's index in cfg.nodes */
  uint64_t boot_id;
  int listen_fd, port;
  struct sockaddr_storage addr[PEER_MAX_NODES];
  socklen_t addr_len[PEER_MAX_NODES];
  struct sockaddr_storage bind_addr;
  socklen_t bind_len; /* 0: no bind */
  struct peer_core *cores;
  struct peer_pend *pend; /* core 0's */
  pthread_mutex_t mu;
  struct peer_seen *seen; /* [ix * n_cores + core] */
};

static int peer_node_ix(const struct peer *p, uint64_t id) {
  int i;
  for (i = 0; i < p->cfg.n_nodes; i++)
    if ((uint64_t)p->cfg.nodes[i].id == id) return i;
  return -1;
}

static uint64_t peer_now(const struct peer_core *pc) {
  return loop_now_ms(pc->loop);
}

/* "host:port" of a socket address. */
static void peer_addr_text(const struct sockaddr_storage *ss, char *out,
                           size_t cap) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)ss;
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a =
        (const struct sockaddr_in6 *)(const void *)ss;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
  }
  snprintf(out, cap, "%s:%d", host, port);
}

/* ------------------------------------------------------------ dialing */

static void peer_link_dial(struct loop *l, void *arg);
static void peer_link_on_io(struct loop *l, int fd, unsigned events,
                            void *arg);

static const struct peer_node *peer_link_node(const struct peer_link *k) {
  return &k->pc->p->cfg.nodes[k->ix];
}

/* Log cause once: a link that keeps failing the same way says so once. */
static void peer_link_note(struct peer_link *k, const char *cause) {
  const struct peer_node *n = peer_link_node(k);
  (void)n; /* without logs */
  if (strcmp(k->cause, cause) == 0) return;
  snprintf(k->cause, sizeof(k->cause), "%s", cause);
  LOG_I("peer: link to node %d (%s:%d) core %d: %s (retrying)", n->id,
        n->host, n->port, k->pc->id, cause);
}

/* Close the link's socket (what it had queued is dropped and counted),
** log why, and retry after the backoff plus jitter. */
static void peer_link_down(struct peer_link *k, const char *cause) {
  struct peer_core *pc = k->pc;
  const struct peer_node *n = peer_link_node(k);
  uint64_t delay = k->backoff_ms;
  (void)n; /* without logs */
  if (k->fd >= 0) {
    loop_del(pc->loop, k->fd);
    close(k->fd);
    k->fd = -1;
  }
  k->st.dropped += k->batch_items;
  k->batch_items = 0;
  k->batch.len = 0;
  k->out.len = 0;
  k->state = PEER_DOWN;
  if (k->announced) {
    LOG_I("peer: link to node %d (%s:%d) core %d down: %s (sent %llu frames, "
          "%llu items, %llu bytes; dropped %llu items)",
          n->id, n->host, n->port, pc->id, cause,
          (unsigned long long)k->st.frames_out,
          (unsigned long long)k->st.items_out,
          (unsigned long long)k->st.bytes_out,
          (unsigned long long)k->st.dropped);
    snprintf(k->cause, sizeof(k->cause), "%s", cause);
  } else {
    peer_link_note(k, cause);
  }
  k->announced = 0;
  delay += pc->p->env->random(pc->p->env) % (delay / 2 + 1);
  k->backoff_ms = k->backoff_ms * 2 > PEER_BACKOFF_MAX_MS
                      ? PEER_BACKOFF_MAX_MS
                      : k->backoff_ms * 2;
  loop_timer_set(pc->loop, &k->timer, peer_now(pc) + delay, peer_link_dial,
                 k);
}

static void peer_link_failed(struct peer_link *k, const char *what, int e) {
  char cause[160];
  snprintf(cause, sizeof(cause), "%s: %s", what, strerror(e));
  peer_link_down(k, cause);
}

/* Write what the socket takes; watch for writability while any is left. */
static void peer_link_write(struct peer_link *k) {
  size_t done = 0;
  while (done < k->out.len) {
    ssize_t w = send(k->fd, k->out.ptr + done, k->out.len - done,
#ifdef MSG_NOSIGNAL
                     MSG_NOSIGNAL
#else
                     0
#endif
    );
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (w <= 0) {
      peer_link_failed(k, "send", w < 0 ? errno : EPIPE);
      return;
    }
    done += (size_t)w;
    k->st.bytes_out += (uint64_t)w;
  }
  buf_consume(&k->out, done);
  loop_mod(k->pc->loop, k->fd,
           k->out.len > 0 ? LOOP_READ | LOOP_WRITE : LOOP_READ);
}

/* Once the HELLO has been out PEER_CONFIRM_MS and the peer kept the
** connection, the link is up: say so once. */
static void peer_link_confirm(struct loop *l, void *arg) {
  struct peer_link *k = (struct peer_link *)arg;
  const struct peer_node *n = peer_link_node(k);
  (void)l;
  (void)n; /* without logs */
  if (k->state != PEER_UP || k->announced) return;
  k->announced = 1;
  k->backoff_ms = PEER_BACKOFF_MIN_MS;
  k->cause[0] = '\0';
  LOG_I("peer: link to node %d (%s:%d) core %d up", n->id, n->host, n->port,
        k->pc->id);
}

/* The connect finished: send HELLO first, then the link carries frames. */
static void peer_link_connected(struct peer_link *k) {
  struct peer_core *pc = k->pc;
  struct peer *p = pc->p;
  struct peer_hello h;
  h.cluster_id = p->cfg.cluster_id;
  h.from = (uint64_t)p->cfg.nodes[p->self].id;
  h.to = (uint64_t)peer_link_node(k)->id;
  h.core = (uint32_t)pc->id;
  h.cores = (uint32_t)p->cfg.n_cores;
  h.groups = (uint32_t)p->cfg.n_groups;
  h.boot_id = p->boot_id;
  k->state = PEER_UP;
  k->out.len = 0;
  if (peer_hello_put(&k->out, &h) != URSULA_OK) {
    peer_link_down(k, "out of memory");
    return;
  }
  k->last_frame_ms = peer_now(pc);
  loop_timer_set(pc->loop, &k->timer, peer_now(pc) + PEER_CONFIRM_MS,
                 peer_link_confirm, k);
  peer_link_write(k);
}

/* A socket bound to this node's address, connecting to node k->ix. */
static void peer_link_dial(struct loop *l, void *arg) {
  struct peer_link *k = (struct peer_link *)arg;
  struct peer *p = k->pc->p;
  const struct sockaddr *to = (const struct sockaddr *)&p->addr[k->ix];
  int one = 1;
  (void)l;
  k->fd = socket(to->sa_family, SOCK_STREAM, 0);
  if (k->fd < 0) {
    peer_link_failed(k, "socket", errno);
    return;
  }
  os_set_nonblock(k->fd);
  os_set_cloexec(k->fd);
  setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (p->bind_len > 0 && p->bind_addr.ss_family == to->sa_family &&
      bind(k->fd, (const struct sockaddr *)&p->bind_addr, p->bind_len) != 0) {
    peer_link_failed(k, "bind to this node's address", errno);
    return;
  }
  if (connect(k->fd, to, p->addr_len[k->ix]) == 0) {
    if (loop_add(k->pc->loop, k->fd, LOOP_READ, peer_link_on_io, k) !=
        URSULA_OK) {
      peer_link_down(k, "loop_add failed");
      return;
    }
    peer_link_connected(k);
  } else if (errno == EINPROGRESS || errno == EINTR) {
    k->state = PEER_CONNECTING;
    if (loop_add(k->pc->loop, k->fd, LOOP_WRITE, peer_link_on_io, k) !=
        URSULA_OK)
      peer_link_down(k, "loop_add failed");
  } else {
    peer_link_failed(k, "connect", errno);
  }
}

/* The outbound socket: the connect's end, writability, or the peer
** closing it (it never writes to us: any byte is a protocol error). */
static void peer_link_on_io(struct loop *l, int fd, unsigned events,
                            void *arg) {
  struct peer_link *k = (struct peer_link *)arg;
  char scratch[64];
  (void)l;
  if (k->state == PEER_CONNECTING) {
    int e = 0;
    socklen_t len = sizeof(e);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) e = errno;
    if (e != 0) {
      peer_link_failed(k, "connect", e);
      return;
    }
    loop_mod(k->pc->loop, fd, LOOP_READ);
    peer_link_connected(k);
    return;
  }
  if (events & (LOOP_READ | LOOP_ERROR)) {
    ssize_t r = recv(fd, scratch, sizeof(scratch), 0);
    if (r == 0) {
      peer_link_down(k, k->announced
                            ? "closed by the peer"
                            : "closed by the peer right after our HELLO: "
                              "it refused us (its log says why)");
      return;
    }
    if (r > 0) {
      peer_link_down(k, "the peer wrote on a one-way link");
      return;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      peer_link_failed(k, "recv", errno);
      return;
    }
  }
  if ((events & LOOP_WRITE) && k->state == PEER_UP) peer_link_write(k);
}

/* ------------------------------------------------------------ sending */

URSULA_PRIVATE int peer_send(struct peer *p, int core, int node_id, int group,
                             const struct raft_msg *m, const void *records,
                             size_t len) {
  int ix = peer_node_ix(p, (uint64_t)node_id);
  struct peer_link *k;
  if (ix < 0 || ix == p->self || core < 0 || core >= p->cfg.n_cores)
    return URSULA_EINVAL;
  k = &p->cores[core].links[ix];
  if (k->state != PEER_UP || k->out.len + k->batch.len > PEER_OUT_CAP ||
      peer_item_put(&k->batch, group, m, records, len) != URSULA_OK) {
    k->st.dropped++;
    return URSULA_EAGAIN;
  }
  k->batch_items++;
  return URSULA_OK;
}

/* The link of core to node_id for an item, or NULL (counted as dropped
** when it exists but is down or full). */
static struct peer_link *peer_item_link(struct peer *p, int core,
                                        int node_id) {
  int ix = peer_node_ix(p, (uint64_t)node_id);
  struct peer_link *k;
  if (ix < 0 || ix == p->self || core < 0 || core >= p->cfg.n_cores)
    return NULL;
  k = &p->cores[core].links[ix];
  if (k->state != PEER_UP || k->out.len + k->batch.len > PEER_OUT_CAP) {
    k->st.dropped++;
    return NULL;
  }
  return k;
}

URSULA_PRIVATE int peer_forward(struct peer *p, int core, int node_id,
                                int group, uint64_t req, const void *cmd,
                                size_t len) {
  struct peer_link *k = peer_item_link(p, core, node_id);
  if (k == NULL || peer_fwd_put(&k->batch, group, req, cmd, len) != URSULA_OK)
    return URSULA_EAGAIN;
  k->batch_items++;
  return URSULA_OK;
}

URSULA_PRIVATE int peer_fwd_reply(struct peer *p, int core, int node_id,
                                  int group, uint64_t req, int outcome,
                                  uint64_t term, uint64_t index) {
  struct peer_link *k = peer_item_link(p, core, node_id);
  if (k == NULL ||
      peer_reply_put(&k->batch, group, req, outcome, term, index) != URSULA_OK)
    return URSULA_EAGAIN;
  k->batch_items++;
  return URSULA_OK;
}

/* Frame k's batch (possibly empty: a keepalive) onto its output. */
static void peer_link_frame(struct peer_link *k) {
  size_t start;
  if (peer_frame_reserve(&k->out, &start) != URSULA_OK ||
      buf_append(&k->out, k->batch.ptr, k->batch.len) != URSULA_OK) {
    k->out.len = k->out.len > start ? start : k->out.len;
    k->st.dropped += k->batch_items;
  } else {
    peer_frame_seal(&k->out, start, PEER_BATCH);
    k->st.frames_out++;
    k->st.items_out += k->batch_items;
    k->last_frame_ms = peer_now(k->pc);
  }
  k->batch.len = 0;
  k->batch_items = 0;
}

/* A SNAP_CHUNK goes out behind the items batched before it (framed
** first, so a follower sees them in the order given), written at once.
** Its own bound, PEER_SNAP_CAP, far below PEER_OUT_CAP: a snapshot
** waits for the link to drain rather than crowd out heartbeats. */
URSULA_PRIVATE int peer_send_snap(struct peer *p, int core, int node_id,
                                  const struct peer_snap *s) {
  int ix = peer_node_ix(p, (uint64_t)node_id);
  struct peer_link *k;
  size_t before;
  if (ix < 0 || ix == p->self || core < 0 || core >= p->cfg.n_cores)
    return URSULA_EINVAL;
  k = &p->cores[core].links[ix];
  if (k->state != PEER_UP || k->out.len + k->batch.len > PEER_SNAP_CAP)
    return URSULA_EAGAIN;
  if (k->batch_items > 0) peer_link_frame(k);
  before = k->out.len;
  if (peer_snap_put(&k->out, s) != URSULA_OK) {
    k->out.len = before;
    return URSULA_ENOMEM;
  }
  k->st.frames_out++;
  k->last_frame_ms = peer_now(k->pc);
  peer_link_write(k);
  return URSULA_OK;
}

URSULA_PRIVATE void peer_flush(struct peer *p, int core) {
  struct peer_core *pc = &p->cores[core];
  int i;
  for (i = 0; i < p->cfg.n_nodes; i++) {
    struct peer_link *k = &pc->links[i];
    if (i == p->self || k->batch_items == 0) continue;
    if (k->state != PEER_UP || k->out.len > PEER_OUT_CAP) {
      k->st.dropped += k->batch_items;
      k->batch_items = 0;
      k->batch.len = 0;
      continue;
    }
    peer_link_frame(k);
    peer_link_write(k);
  }
}

/* Every PEER_KEEPALIVE_MS: an empty BATCH on each idle link. */
static void peer_on_keepalive(struct loop *l, void *arg) {
  struct peer_core *pc = (struct peer_core *)arg;
  struct peer *p = pc->p;
  uint64_t now = peer_now(pc);
  int i;
  for (i = 0; i < p->cfg.n_nodes; i++) {
    struct peer_link *k = &pc->links[i];
    if (i == p->self || k->state != PEER_UP || k->out.len > 0 ||
        k->batch_items > 0 || now - k->last_frame_ms < PEER_KEEPALIVE_MS)
      continue;
    peer_link_frame(k);
    peer_link_write(k);
  }
  loop_timer_set(l, &pc->keepalive, now + PEER_KEEPALIVE_MS / 2,
                 peer_on_keepalive, pc);
}

/* ------------------------------------------------------------ receiving */

static struct peer_seen *peer_seen_of(struct peer *p, int ix, uint32_t core) {
  return &p->seen[ix * p->cfg.n_cores + (int)core];
}

/* The connection of boot_id from (ix, core) is alive (now), or closed. */
static void peer_seen_alive(struct peer *p, int ix, uint32_t core,
                            uint64_t boot_id, uint64_t now) {
  struct peer_seen *s;
  pthread_mutex_lock(&p->mu);
  s = peer_seen_of(p, ix, core);
  if (s->boot_id == boot_id) s->seen_ms = now;
  pthread_mutex_unlock(&p->mu);
}

static void peer_seen_closed(struct peer *p, int ix, uint32_t core,
                             uint64_t boot_id) {
  struct peer_seen *s;
  pthread_mutex_lock(&p->mu);
  s = peer_seen_of(p, ix, core);
  if (s->boot_id == boot_id && s->open > 0) s->open--;
  pthread_mutex_unlock(&p->mu);
}

static void peer_in_close(struct peer_in *in) {
  struct peer_core *pc = in->pc;
  struct peer_in **pp = &pc->ins;
  while (*pp != NULL && *pp != in) pp = &(*pp)->next;
  if (*pp == in) *pp = in->next;
  peer_seen_closed(pc->p, in->ix, in->hello.core, in->hello.boot_id);
  loop_del(pc->loop, in->fd);
  close(in->fd);
  buf_free(&in->in);
  URSULA_FREE(in);
}

/* Hand every item of a BATCH body to on_raft (on_fwd), in order. */
static int peer_in_batch(struct peer_in *in, const struct peer_frame *f,
                         const char **why) {
  struct peer_core *pc = in->pc;
  const struct peer_config *cfg = &pc->p->cfg;
  const unsigned char *q = f->body, *end = f->body + f->len;
  struct peer_link_stats *st = &pc->links[in->ix].st;
  while (q < end) {
    struct peer_item it;
    if (peer_item_get(&q, end, &in->hello, &it, why) != URSULA_OK)
      return URSULA_ECORRUPT;
    st->items_in++;
    if (it.kind != PEER_ITEM_RAFT) {
      if (cfg->on_fwd != NULL) cfg->on_fwd(cfg->arg, pc->id, in->hello.from, &it);
      continue;
    }
    LOG_D("peer: from node %d core %d: group %d raft message %d term %llu",
          cfg->nodes[in->ix].id, pc->id, it.group, it.msg.type,
          (unsigned long long)it.msg.term);
    if (cfg->on_raft != NULL)
      cfg->on_raft(cfg->arg, pc->id, it.group, &it.msg, it.records, it.len);
  }
  return URSULA_OK;
}

/* Decode and deliver every whole frame of in's buffer. */
static int peer_in_frames(struct peer_in *in, const char **why) {
  struct peer_core *pc = in->pc;
  const struct peer_config *cfg = &pc->p->cfg;
  struct peer_link_stats *st = &pc->links[in->ix].st;
  size_t at = 0;
  int rc = URSULA_OK;
  while (rc == URSULA_OK) {
    struct peer_frame f;
    struct peer_snap s;
    size_t used;
    rc = peer_frame_get(in->in.ptr + at, in->in.len - at, &f, &used, why);
    if (rc != URSULA_OK) break;
    at += used;
    st->frames_in++;
    st->bytes_in += used;
    st->heard_ms = peer_now(pc); /* (GET /__ursula/cluster) */
    if (f.kind == PEER_HELLO) {
      rc = peer_bad(why, "a second HELLO");
    } else if (f.kind == PEER_BATCH) {
      rc = peer_in_batch(in, &f, why);
    } else if ((rc = peer_snap_get(&f, &in->hello, &s, why)) == URSULA_OK) {
      LOG_D("peer: from node %d core %d: group %d snapshot chunk",
            cfg->nodes[in->ix].id, pc->id, s.group);
      if (cfg->on_snap != NULL)
        cfg->on_snap(cfg->arg, pc->id, in->hello.from, &s);
    }
  }
  buf_consume(&in->in, at);
  return rc == URSULA_EAGAIN ? URSULA_OK : rc;
}

static void peer_in_on_io(struct loop *l, int fd, unsigned events, void *arg) {
  struct peer_in *in = (struct peer_in *)arg;
  struct peer_core *pc = in->pc;
  const char *why = "?";
  ssize_t r;
  (void)l;
  (void)events;
  if (buf_reserve(&in->in, 65536) != URSULA_OK) {
    LOG_W("peer: connection from node %d (%s): out of memory; closing",
          pc->p->cfg.nodes[in->ix].id, in->addr);
    peer_in_close(in);
    return;
  }
  /* (up to cap - 1: a struct buf keeps a byte for its NUL, buf_consume) */
  r = recv(fd, in->in.ptr + in->in.len, in->in.cap - in->in.len - 1, 0);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (r <= 0) {
    LOG_D("peer: connection from node %d (%s) core %d closed",
          pc->p->cfg.nodes[in->ix].id, in->addr, pc->id);
    peer_in_close(in);
    return;
  }
  in->in.len += (size_t)r;
  if (peer_in_frames(in, &why) != URSULA_OK) {
    LOG_W("peer: protocol error from node %d (%s) core %d: %s; closing",
          pc->p->cfg.nodes[in->ix].id, in->addr, pc->id, why);
    peer_in_close(in);
    return;
  }
  if (peer_now(pc) - in->told_ms >= PEER_KEEPALIVE_MS / 2) {
    in->told_ms = peer_now(pc);
    peer_seen_alive(pc->p, in->ix, in->hello.core, in->hello.boot_id,
                    in->told_ms);
  }
}

/* On the core the HELLO named: the connection is this core's now. */
static void peer_on_handoff(struct loop *l, struct loop_msg *m) {
  struct peer_handoff *h = (struct peer_handoff *)m;
  struct peer_core *pc = &h->p->cores[h->hello.core];
  struct peer_in *in = (struct peer_in *)URSULA_MALLOC(sizeof(*in));
  if (in == NULL || loop_add(l, h->fd, LOOP_READ, peer_in_on_io, in) !=
                        URSULA_OK) {
    peer_seen_closed(h->p, h->ix, h->hello.core, h->hello.boot_id);
    close(h->fd);
    URSULA_FREE(in);
    URSULA_FREE(h);
    return;
  }
  memset(in, 0, sizeof(*in));
  in->pc = pc;
  in->fd = h->fd;
  in->ix = h->ix;
  in->hello = h->hello;
  in->told_ms = peer_now(pc);
  memcpy(in->addr, h->addr, sizeof(in->addr));
  in->next = pc->ins;
  pc->ins = in;
  LOG_D("peer: connection from node %d (%s) core %d accepted",
        h->p->cfg.nodes[h->ix].id, in->addr, pc->id);
  URSULA_FREE(h);
}

static void peer_handoff_drop(struct loop_msg *m) {
  struct peer_handoff *h = (struct peer_handoff *)m;
  close(h->fd);
  URSULA_FREE(h);
}

/* ------------------------------------------------------------ accepting */

/* Why HELLO h is refused (a sentence for the log), or NULL: accepted, and
** its (node, core) recorded as this boot's. */
static const char *peer_check_hello(struct peer *p, const struct peer_hello *h,
                                    uint64_t now, char *why, size_t cap) {
  const struct peer_config *c = &p->cfg;
  int self = c->nodes[p->self].id, ix = peer_node_ix(p, h->from);
  struct peer_seen *s;
  if (h->cluster_id != c->cluster_id)
    snprintf(why, cap, "cluster id %llu is not ours (%llu)",
             (unsigned long long)h->cluster_id,
             (unsigned long long)c->cluster_id);
  else if (h->to != (uint64_t)self)
    snprintf(why, cap, "says it is node %llu to node %llu, but this is node %d",
             (unsigned long long)h->from, (unsigned long long)h->to, self);
  else if (h->from == (uint64_t)self)
    snprintf(why, cap,
             "says it is node %llu, which is this node: a duplicate node id",
             (unsigned long long)h->from);
  else if (ix < 0)
    snprintf(why, cap, "node %llu is not a configured peer",
             (unsigned long long)h->from);
  else if (h->groups != (uint32_t)c->n_groups)
    snprintf(why, cap, "node %llu has %lu groups, this node %d",
             (unsigned long long)h->from, (unsigned long)h->groups,
             c->n_groups);
  else if (h->cores != (uint32_t)c->n_cores || h->core >= h->cores)
    snprintf(why, cap, "node %llu has %lu cores (core %lu), this node %d",
             (unsigned long long)h->from, (unsigned long)h->cores,
             (unsigned long)h->core, c->n_cores);
  else
    why[0] = '\0';
  if (why[0] != '\0') return why;
  pthread_mutex_lock(&p->mu);
  s = peer_seen_of(p, ix, h->core);
  if (s->open > 0 && s->boot_id != h->boot_id &&
      now - s->seen_ms < PEER_STALE_MS) {
    snprintf(why, cap,
             "node %llu core %lu is connected already from another process "
             "(boot id %llx, this one %llx): a duplicate node id",
             (unsigned long long)h->from, (unsigned long)h->core,
             (unsigned long long)s->boot_id, (unsigned long long)h->boot_id);
  } else {
    if (s->boot_id != h->boot_id) s->open = 0;
    s->boot_id = h->boot_id;
    s->seen_ms = now;
    s->open++;
  }
  pthread_mutex_unlock(&p->mu);
  return why[0] != '\0' ? why : NULL;
}

static void peer_pend_free(struct peer_pend *pp, int close_fd) {
  struct peer *p = pp->p;
  struct peer_pend **q = &p->pend;
  while (*q != NULL && *q != pp) q = &(*q)->next;
  if (*q == pp) *q = pp->next;
  loop_timer_cancel(p->cores[0].loop, &pp->timer);
  loop_del(p->cores[0].loop, pp->fd);
  if (close_fd) close(pp->fd);
  URSULA_FREE(pp);
}

/* Log a refusal, unless its cause was logged in the last
** PEER_REFUSAL_QUIET_MS (a refused dialer retries every 2 s). */
static void peer_pend_refuse(struct peer_pend *pp, const char *why) {
  struct peer *p = pp->p;
  struct peer_refusal *r = &p->refusals[0];
  uint64_t now = peer_now(&p->cores[0]);
  int i;
  for (i = 0; i < PEER_REFUSALS; i++) {
    if (strcmp(p->refusals[i].why, why) == 0) {
      r = &p->refusals[i];
      break;
    }
    if (p->refusals[i].last_ms < r->last_ms) r = &p->refusals[i];
  }
  if (i < PEER_REFUSALS && r->last_ms != 0 &&
      now - r->last_ms < PEER_REFUSAL_QUIET_MS) {
    r->quiet++;
  } else {
    if (i < PEER_REFUSALS && r->quiet > 0)
      LOG_W("peer: refused a connection from %s: %s (and %llu more since)",
            pp->addr, why, (unsigned long long)r->quiet);
    else
      LOG_W("peer: refused a connection from %s: %s", pp->addr, why);
    snprintf(r->why, sizeof(r->why), "%s", why);
    r->last_ms = now > 0 ? now : 1;
    r->quiet = 0;
  }
  peer_pend_free(pp, 1);
}

/* The HELLO is whole: check it, then hand the socket to its core. */
static void peer_pend_hello(struct peer_pend *pp) {
  struct peer *p = pp->p;
  struct peer_frame f;
  struct peer_hello h;
  struct peer_handoff *m;
  const char *why = NULL;
  char text[400];
  size_t used;
  if (peer_frame_get(pp->hello, sizeof(pp->hello), &f, &used, &why) !=
          URSULA_OK ||
      peer_hello_get(&f, &h, &why) != URSULA_OK) {
    peer_pend_refuse(pp, why != NULL ? why : "not a HELLO");
    return;
  }
  if ((why = peer_check_hello(p, &h, peer_now(&p->cores[0]), text,
                              sizeof(text))) != NULL) {
    peer_pend_refuse(pp, why);
    return;
  }
  m = (struct peer_handoff *)URSULA_MALLOC(sizeof(*m));
  if (m == NULL) {
    peer_seen_closed(p, peer_node_ix(p, h.from), h.core, h.boot_id);
    peer_pend_refuse(pp, "out of memory");
    return;
  }
  memset(m, 0, sizeof(*m));
  m->m.on_msg = peer_on_handoff;
  m->m.on_drop = peer_handoff_drop;
  m->p = p;
  m->fd = pp->fd;
  m->ix = peer_node_ix(p, h.from);
  m->hello = h;
  memcpy(m->addr, pp->addr, sizeof(m->addr));
  peer_pend_free(pp, 0);
  loop_post(p->cores[h.core].loop, &m->m);
}

/* Read the HELLO, and not a byte past it (what follows is the core's). */
static void peer_pend_on_io(struct loop *l, int fd, unsigned events,
                            void *arg) {
  struct peer_pend *pp = (struct peer_pend *)arg;
  ssize_t r;
  (void)l;
  (void)events;
  r = recv(fd, pp->hello + pp->have, sizeof(pp->hello) - pp->have, 0);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (r <= 0) {
    LOG_D("peer: connection from %s closed before its HELLO", pp->addr);
    peer_pend_free(pp, 1);
    return;
  }
  pp->have += (size_t)r;
  if (pp->have >= PEER_HEADER &&
      (util_get32(pp->hello) != PEER_HELLO_BODY || pp->hello[5] != PEER_HELLO)) {
    peer_pend_refuse(pp, "its first frame is not a HELLO");
    return;
  }
  if (pp->have == sizeof(pp->hello)) peer_pend_hello(pp);
}

static void peer_pend_on_timer(struct loop *l, void *arg) {
  struct peer_pend *pp = (struct peer_pend *)arg;
  (void)l;
  peer_pend_refuse(pp, "no HELLO within 5 s");
}

static void peer_on_accept(struct loop *l, int fd, unsigned events,
                           void *arg) {
  struct peer *p = (struct peer *)arg;
  (void)events;
  for (;;) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    struct peer_pend *pp;
    int c = accept(fd, (struct sockaddr *)&ss, &sl);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        LOG_W("peer: accept: %s", strerror(errno));
      return;
    }
    os_set_nonblock(c);
    os_set_cloexec(c);
    pp = (struct peer_pend *)URSULA_MALLOC(sizeof(*pp));
    if (pp == NULL) {
      close(c);
      continue;
    }
    memset(pp, 0, sizeof(*pp));
    pp->p = p;
    pp->fd = c;
    peer_addr_text(&ss, pp->addr, sizeof(pp->addr));
    if (loop_add(l, c, LOOP_READ, peer_pend_on_io, pp) != URSULA_OK) {
      close(c);
      URSULA_FREE(pp);
      continue;
    }
    pp->next = p->pend;
    p->pend = pp;
    loop_timer_set(l, &pp->timer, loop_now_ms(l) + PEER_HELLO_MS,
                   peer_pend_on_timer, pp);
  }
}

/* ------------------------------------------------------------ life */

URSULA_PRIVATE int peer_open(struct peer **out, const struct peer_config *cfg,
                             struct loop **loops, char *err) {
  struct peer *p;
  int i, j;
  p = (struct peer *)URSULA_MALLOC(sizeof(*p));
  if (p == NULL) return URSULA_ENOMEM;
  memset(p, 0, sizeof(*p));
  p->cfg = *cfg;
  p->env = cfg->env != NULL ? cfg->env : env_real();
  p->self = peer_node_ix(p, (uint64_t)cfg->node_id);
  p->listen_fd = -1;
  pthread_mutex_init(&p->mu, NULL);
  if (p->self < 0 || cfg->n_cores < 1 || cfg->n_nodes > PEER_MAX_NODES) {
    snprintf(err, URSULA_ERRMSG_LEN, "peer: node %d is not among the peers",
             cfg->node_id);
    peer_close(p);
    return URSULA_EINVAL;
  }
  p->boot_id = p->env->random(p->env);
  p->cores = (struct peer_core *)URSULA_MALLOC(sizeof(*p->cores) *
                                               (size_t)cfg->n_cores);
  p->seen = (struct peer_seen *)URSULA_MALLOC(
      sizeof(*p->seen) * (size_t)(cfg->n_cores * cfg->n_nodes));
  if (p->cores == NULL || p->seen == NULL) {
    peer_close(p);
    return URSULA_ENOMEM;
  }
  memset(p->seen, 0, sizeof(*p->seen) * (size_t)(cfg->n_cores * cfg->n_nodes));
  memset(p->cores, 0, sizeof(*p->cores) * (size_t)cfg->n_cores);
  for (i = 0; i < cfg->n_cores; i++) {
    struct peer_core *pc = &p->cores[i];
    pc->p = p;
    pc->id = i;
    pc->loop = loops[i];
    for (j = 0; j < PEER_MAX_NODES; j++) {
      pc->links[j].pc = pc;
      pc->links[j].ix = j;
      pc->links[j].fd = -1;
      pc->links[j].backoff_ms = PEER_BACKOFF_MIN_MS;
    }
  }
  p->listen_fd = net_listen(cfg->listen_host, cfg->listen_port, &p->port, err);
  if (p->listen_fd < 0 || loop_add(loops[0], p->listen_fd, LOOP_READ,
                                   peer_on_accept, p) != URSULA_OK) {
    if (p->listen_fd >= 0) snprintf(err, URSULA_ERRMSG_LEN, "peer: loop_add");
    peer_close(p);
    return URSULA_ESYS;
  }
  *out = p;
  return URSULA_OK;
}

URSULA_PRIVATE int peer_port(const struct peer *p) { return p->port; }

URSULA_PRIVATE void peer_set_port(struct peer *p, int node_id, int port) {
  int ix = peer_node_ix(p, (uint64_t)node_id);
  if (ix >= 0) p->cfg.nodes[ix].port = port;
}

/* The first address of host:port into *ss. */
static int peer_resolve(const char *host, int port,
                        struct sockaddr_storage *ss, socklen_t *len,
                        char *err) {
  struct addrinfo hints, *res = NULL;
  char ps[16];
  int rc;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  snprintf(ps, sizeof(ps), "%d", port);
  rc = getaddrinfo(host, ps, &hints, &res);
  if (rc != 0 || res == NULL || res->ai_addrlen > sizeof(*ss)) {
    snprintf(err, URSULA_ERRMSG_LEN, "peer %.100s:%d: %s", host, port,
             rc != 0 ? gai_strerror(rc) : "no address");
    if (res != NULL) freeaddrinfo(res);
    return URSULA_EINVAL;
  }
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = (socklen_t)res->ai_addrlen;
  freeaddrinfo(res);
  return URSULA_OK;
}

URSULA_PRIVATE int peer_start(struct peer *p, char *err) {
  int i, j, rc;
  for (i = 0; i < p->cfg.n_nodes; i++) {
    const struct peer_node *n = &p->cfg.nodes[i];
    if (i == p->self) continue;
    rc = peer_resolve(n->host, n->port, &p->addr[i], &p->addr_len[i], err);
    if (rc != URSULA_OK) return rc;
  }
  if (p->cfg.bind_host[0] != '\0' &&
      (rc = peer_resolve(p->cfg.bind_host, 0, &p->bind_addr, &p->bind_len,
                         err)) != URSULA_OK)
    return rc;
  for (i = 0; i < p->cfg.n_cores; i++) {
    struct peer_core *pc = &p->cores[i];
    for (j = 0; j < p->cfg.n_nodes; j++)
      if (j != p->self)
        loop_timer_set(pc->loop, &pc->links[j].timer, peer_now(pc),
                       peer_link_dial, &pc->links[j]);
    loop_timer_set(pc->loop, &pc->keepalive, peer_now(pc) + PEER_KEEPALIVE_MS,
                   peer_on_keepalive, pc);
  }
  return URSULA_OK;
}

URSULA_PRIVATE void peer_close(struct peer *p) {
  int i, j;
  if (p == NULL) return;
  while (p->pend != NULL) peer_pend_free(p->pend, 1);
  for (i = 0; p->cores != NULL && i < p->cfg.n_cores; i++) {
    struct peer_core *pc = &p->cores[i];
    for (j = 0; j < PEER_MAX_NODES; j++) {
      struct peer_link *k = &pc->links[j];
      loop_timer_cancel(pc->loop, &k->timer);
      if (k->fd >= 0) {
        loop_del(pc->loop, k->fd);
        close(k->fd);
      }
      buf_free(&k->out);
      buf_free(&k->batch);
    }
    while (pc->ins != NULL) peer_in_close(pc->ins);
    loop_timer_cancel(pc->loop, &pc->keepalive);
  }
  if (p->listen_fd >= 0) {
    loop_del(p->cores[0].loop, p->listen_fd);
    close(p->listen_fd);
  }
  URSULA_FREE(p->cores);
  URSULA_FREE(p->seen);
  pthread_mutex_destroy(&p->mu);
  URSULA_FREE(p);
}

URSULA_PRIVATE void peer_stats(const struct peer *p, int core, int node_id,
                               struct peer_link_stats *out) {
  int ix = peer_node_ix(p, (uint64_t)node_id);
  memset(out, 0, sizeof(*out));
  if (ix < 0 || ix == p->self || core < 0 || core >= p->cfg.n_cores) return;
  *out = p->cores[core].links[ix].st;
  out->up = p->cores[core].links[ix].state == PEER_UP;
}
/**** End src/peer.c ****/
/**** Begin src/stream.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/stream.c"
#endif
/*
** stream.c -- the state machine of a group: its streams and how each
** command changes them.
**
** stream_apply() is the only writer of a group's replicated state.  It is
** a pure function of (state, log index, command bytes): no clock (the
** proposer stamps the time into the command), no I/O, no failure half-way
** (out of memory aborts the process: a replica that diverged silently
** would be worse than one that stopped).  So every replica that applies
** the same log reaches the same state, byte for byte, and replaying the
** log brings the state back.  stream_digest() and the canonical snapshot
** (sorted by path) are how tests and, later, replicas compare states.
**
** Replicated and local.  Each stream's `local` member (struct
** stream_local) is this node's alone: the hot bytes in memory, live
** readers, cold-tier upload progress, the last read.  No apply decision
** reads it, and snapshots and digests leave it out.  Reads change only
** `local`: the sliding TTL window moves for a read when the owner logs a
** TOUCH command (group.c), so every replica expires a stream at the same
** log position, and the window survives a restart.
**
** Offsets.  A stream is a byte sequence; an offset is a byte position in
** it, shown on the wire as "%016llu_%016llu" (0, position).  JSON streams
** store each message followed by ',' so positions stay byte positions.
** Each append is one "unit"; bounds[] keeps every unit's end position, so
** reads can stop on message boundaries and forks can take a prefix of the
** unit that starts at their fork point (Stream-Fork-Sub-Offset).
**
** Hot and cold data.  The bytes of every unit are in the log already:
** locs[] names the entry that carried them (its log index, and the offset
** in its payload), an address that is the same on every replica.  So
** memory need only hold recent data: local.data keeps [local.hot_start,
** tail), stream_evict() moves hot_start forward when the group holds too
** much, and stream_read() fetches older bytes from the log through
** st->read_cold.  No byte is written twice.
**
** The cold tier.  With one, the group moves the oldest bytes of each
** stream into chunk objects (cold.c) and then logs a COLD command; once
** that is applied, the chunk is part of the stream: [0, cold_end) is
** read from chunks through st->read_chunk (the group fetches them off
** the core thread), and neither memory nor the WAL need those bytes any
** more.  A removed stream's chunk names go to r->garbage, for the group
** to delete.
**
** Forks.  A fork holds no byte of what it inherits.  Its CREATE names
** the source (path and incarnation) and the fork point, `base`: bytes
** [0, base) are the source's bytes as they were there, read from the
** source whenever a reader wants them (group.c; a fork of a fork reads
** through the chain), and the fork's own units, in memory, the log and
** the cold tier, cover [base, tail) only.  Offsets are the source's up
** to the fork point, so a client sees no difference.  The reference the
** fork holds (the source's refcount, taken by FORK_ACQUIRE) keeps the
** source, deleted or expired, soft-deleted with its bytes for as long as
** the fork lives.  Apply never reads the source: what a command needs to
** know of the inherited bytes (the append at a fork offset there) the
** proposer finds and puts in the command (fork.c).
**
** Protocol rules applied here (see protocol.md of the Durable Streams
** Protocol): create idempotency, closure, idempotent producers, Stream-Seq
** ordering, soft delete with fork reference counts, and TTL expiry.
*/


/* ------------------------------------------------------------ table */

/* Out of memory inside apply or restore: stop, rather than leave a state
** that another replica would not have. */
static void stream_oom(void) {
  LOG_E("out of memory while applying a command; stopping rather than "
        "diverging from the log");
  abort();
}

URSULA_PRIVATE void stream_state_init(struct stream_state *st) {
  memset(st, 0, sizeof(*st));
  st->next_incarnation = 1;
}

static void stream_free(struct stream_state *st, struct stream *s) {
  struct stream_producer *p, *next;
  size_t i;
  st->hot_bytes -= s->local.data.len;
  for (p = s->producers; p != NULL; p = next) {
    next = p->next;
    URSULA_FREE(p);
  }
  buf_free(&s->local.data);
  for (i = 0; i < s->n_chunks; i++) URSULA_FREE(s->chunks[i].name);
  URSULA_FREE(s->chunks);
  URSULA_FREE(s->bounds);
  URSULA_FREE(s->locs);
  URSULA_FREE(s->path);
  URSULA_FREE(s->content_type);
  URSULA_FREE(s->expires_text);
  URSULA_FREE(s->stream_seq);
  URSULA_FREE(s->closed_by_id);
  URSULA_FREE(s->fork_source);
  URSULA_FREE(s);
}

URSULA_PRIVATE void stream_state_free(struct stream_state *st) {
  size_t i;
  struct stream *s, *next;
  for (i = 0; i < st->cap; i++) {
    for (s = st->slots[i]; s != NULL; s = next) {
      next = s->hnext;
      stream_free(st, s);
    }
  }
  URSULA_FREE(st->slots);
  memset(st, 0, sizeof(*st));
}

URSULA_PRIVATE struct stream *stream_find(struct stream_state *st,
                                          struct str path) {
  uint64_t h;
  struct stream *s;
  if (st->cap == 0) return NULL;
  h = util_hash64(path.ptr, path.len);
  for (s = st->slots[h & (st->cap - 1)]; s != NULL; s = s->hnext) {
    if (s->hash == h && s->path_len == path.len &&
        memcmp(s->path, path.ptr, path.len) == 0)
      return s;
  }
  return NULL;
}

static void stream_table_grow(struct stream_state *st) {
  size_t cap = st->cap ? st->cap * 2 : 64, i;
  struct stream **slots, *s, *next;
  slots = (struct stream **)URSULA_MALLOC(cap * sizeof(*slots));
  if (slots == NULL) stream_oom();
  for (i = 0; i < cap; i++) slots[i] = NULL;
  for (i = 0; i < st->cap; i++) {
    for (s = st->slots[i]; s != NULL; s = next) {
      next = s->hnext;
      s->hnext = slots[s->hash & (cap - 1)];
      slots[s->hash & (cap - 1)] = s;
    }
  }
  URSULA_FREE(st->slots);
  st->slots = slots;
  st->cap = cap;
}

static void stream_unlink(struct stream_state *st, struct stream *s) {
  struct stream **pp = &st->slots[s->hash & (st->cap - 1)];
  while (*pp != s) pp = &(*pp)->hnext;
  *pp = s->hnext;
  st->n--;
}

static char *stream_dup(struct str s) {
  char *p = (char *)URSULA_MALLOC(s.len + 1);
  if (p == NULL) stream_oom();
  if (s.len) memcpy(p, s.ptr, s.len);
  p[s.len] = '\0';
  return p;
}

/* ------------------------------------------------------------ helpers */

URSULA_PRIVATE void stream_norm_type(struct str ct, char *out, size_t cap) {
  size_t i, n = 0;
  struct str t = ct;
  for (i = 0; i < t.len; i++) {
    if (t.ptr[i] == ';') {
      t.len = i;
      break;
    }
  }
  t = util_str_trim(t);
  for (i = 0; i < t.len && n + 1 < cap; i++) {
    char c = t.ptr[i];
    out[n++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
  }
  out[n] = '\0';
}

static int stream_same_type(struct str a, const char *b) {
  char na[256], nb[256];
  stream_norm_type(a, na, sizeof(na));
  stream_norm_type(util_str(b), nb, sizeof(nb));
  return strcmp(na, nb) == 0;
}

URSULA_PRIVATE int stream_expired(const struct stream *s,
                                  uint64_t last_access_ms, uint64_t now_ms) {
  if (s->has_expires && s->expires_at_ms <= now_ms) return 1;
  if (s->has_ttl && last_access_ms + s->ttl_s * 1000u <= now_ms) return 1;
  return 0;
}

URSULA_PRIVATE uint64_t stream_unit_start(const struct stream *s, size_t u) {
  return u > 0 ? s->bounds[u - 1] : s->base;
}

URSULA_PRIVATE size_t stream_unit_at(const struct stream *s, uint64_t off) {
  size_t lo = 0, hi = s->n_bounds;
  while (lo < hi) { /* first i with bounds[i] > off */
    size_t mid = lo + (hi - lo) / 2;
    if (s->bounds[mid] <= off)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

URSULA_PRIVATE uint64_t stream_unit_floor(const struct stream *s,
                                          uint64_t off) {
  return stream_unit_start(s, stream_unit_at(s, off));
}

/* Append p[0..len) as one unit ending at the new tail: the payload of
** log entry `index` holds it from byte `off` on. */
static void stream_add_unit(struct stream_state *st, struct stream *s,
                            const char *p, size_t len, uint64_t index,
                            uint64_t off) {
  if (len == 0) return;
  if (s->n_bounds == s->cap_bounds) {
    size_t cap = s->cap_bounds ? s->cap_bounds * 2 : 4;
    uint64_t *b = (uint64_t *)URSULA_REALLOC(s->bounds, cap * sizeof(*b));
    struct stream_loc *l;
    if (b == NULL) stream_oom();
    s->bounds = b;
    l = (struct stream_loc *)URSULA_REALLOC(s->locs, cap * sizeof(*l));
    if (l == NULL) stream_oom();
    s->locs = l;
    s->cap_bounds = cap;
  }
  if (st->log_only && index != 0 && s->local.data.len == 0) {
    s->local.hot_start += len; /* == the new tail: read from the log */
  } else {
    if (buf_append(&s->local.data, p, len) != URSULA_OK) stream_oom();
    st->hot_bytes += len;
  }
  s->locs[s->n_bounds].index = index;
  s->locs[s->n_bounds].off = off;
  s->tail += len;
  s->bounds[s->n_bounds++] = s->tail;
}

URSULA_PRIVATE size_t stream_chunk_at(const struct stream *s, uint64_t off) {
  size_t lo = 0, hi = s->n_chunks;
  while (lo < hi) { /* first k with chunks[k].end > off */
    size_t mid = lo + (hi - lo) / 2;
    if (s->chunks[mid].end <= off)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* The part of stream_read() below cold_end: chunk by chunk. */
static int stream_read_chunks(struct stream_state *st, const struct stream *s,
                              uint64_t *start, uint64_t end, struct buf *out) {
  size_t k = stream_chunk_at(s, *start);
  while (*start < end && *start < s->cold_end) {
    const struct stream_chunk *ch = &s->chunks[k++];
    uint64_t stop = ch->end < end ? ch->end : end;
    const char *p;
    int rc;
    if (st->read_chunk == NULL) return URSULA_EIO;
    rc = st->read_chunk(st->read_ctx, s, ch, &p);
    if (rc != URSULA_OK) return rc;
    rc = buf_append(out, p + (*start - ch->start), (size_t)(stop - *start));
    if (rc != URSULA_OK) return rc;
    *start = stop;
  }
  return URSULA_OK;
}

URSULA_PRIVATE int stream_read(struct stream_state *st, const struct stream *s,
                               uint64_t start, uint64_t end, struct buf *out) {
  size_t u;
  /* only the stream's own bytes: a fork's inherited ones are its source's */
  if (start < s->base || end < start || end > s->tail) return URSULA_EINVAL;
  if (start < s->cold_end) {
    int rc = stream_read_chunks(st, s, &start, end, out);
    if (rc != URSULA_OK) return rc;
  }
  if (start < end && start < s->local.hot_start) { /* in the WAL, unit by unit */
    u = stream_unit_at(s, start);
    while (start < end && start < s->local.hot_start) {
      uint64_t ustart = stream_unit_start(s, u), stop = s->bounds[u];
      struct stream_loc loc;
      int rc;
      if (stop > end) stop = end;
      if (stop > s->local.hot_start) stop = s->local.hot_start;
      loc.index = s->locs[u].index;
      loc.off = s->locs[u].off + (start - ustart);
      if (st->read_cold == NULL || loc.index == 0) return URSULA_EIO;
      rc = st->read_cold(st->read_ctx, &loc, stop - start, out);
      if (rc != URSULA_OK) return rc;
      start = stop;
      u++;
    }
  }
  if (end <= start) return URSULA_OK;
  return buf_append(out, s->local.data.ptr + (start - s->local.hot_start),
                    (size_t)(end - start));
}

/* Drop s's hot units that the log holds, oldest first, keeping at least
** the last `keep` bytes, until st->hot_bytes <= target. */
static void stream_evict_one(struct stream_state *st, struct stream *s,
                             uint64_t keep, uint64_t target) {
  size_t u = stream_unit_at(s, s->local.hot_start);
  uint64_t to = s->local.hot_start, drop;
  while (u < s->n_bounds && s->locs[u].index != 0 &&
         s->bounds[u] + keep <= s->tail &&
         st->hot_bytes - (to - s->local.hot_start) > target)
    to = s->bounds[u++];
  if (to == s->local.hot_start) return;
  drop = to - s->local.hot_start;
  buf_consume(&s->local.data, (size_t)drop);
  s->local.hot_start = to;
  st->hot_bytes -= drop;
  if (s->local.data.len == 0) {
    buf_free(&s->local.data);
  } else if (s->local.data.cap > 65536 && s->local.data.len < s->local.data.cap / 4) {
    char *p = (char *)URSULA_REALLOC(s->local.data.ptr, s->local.data.len + 1);
    if (p != NULL) { /* give the memory back */
      s->local.data.ptr = p;
      s->local.data.cap = s->local.data.len + 1;
    }
  }
}

URSULA_PRIVATE void stream_evict(struct stream_state *st, uint64_t max) {
  uint64_t target = max / 2, keep;
  size_t k, slot;
  int pass;
  if (st->hot_bytes <= max || st->cap == 0 || st->read_cold == NULL) return;
  /* first every stream keeps a fair share of recent bytes, then none */
  for (pass = 0; pass < 2; pass++) {
    keep = pass == 0 ? target / (st->n + 1) : 0;
    for (k = 0; k < st->cap; k++) {
      struct stream *s;
      slot = (st->evict_cursor + k) & (st->cap - 1);
      for (s = st->slots[slot]; s != NULL; s = s->hnext) {
        stream_evict_one(st, s, keep, target);
        if (st->hot_bytes <= target) {
          st->evict_cursor = slot + 1; /* fairness: start after it */
          return;
        }
      }
    }
  }
}

static struct stream_producer *stream_producer_find(struct stream *s,
                                                    struct str id) {
  struct stream_producer *p;
  for (p = s->producers; p != NULL; p = p->next) {
    if (p->id_len == id.len && memcmp(p->id, id.ptr, id.len) == 0) return p;
  }
  return NULL;
}

static void stream_set_str(char **dst, size_t *dst_len, struct str v) {
  char *p = stream_dup(v);
  URSULA_FREE(*dst);
  *dst = p;
  if (dst_len) *dst_len = v.len;
}

/* Queue a cold-tier object for deletion by the group. */
static void stream_garbage(struct stream_result *r, struct str name) {
  if (buf_append(&r->garbage, name.ptr, name.len) != URSULA_OK ||
      buf_append(&r->garbage, "", 1) != URSULA_OK)
    stream_oom();
}

static void stream_fail(struct stream_result *r, int status,
                        const char *reason) {
  r->status = status;
  r->reason = reason;
}

/* Take s out of the table for good: wake its readers, and if it is a fork,
** queue the release of its source. */
static void stream_remove(struct stream_state *st, struct stream *s,
                          struct stream_result *r) {
  size_t i;
  r->notify = 1;
  r->deleted = 1;
  r->watch_mask |= s->local.watch_mask;
  r->prev_tail = s->tail;
  if (s->fork_source != NULL &&
      buf_append(&r->releases, s->fork_source, s->fork_source_len + 1) !=
          URSULA_OK)
    stream_oom();
  for (i = 0; i < s->n_chunks; i++)
    stream_garbage(r, util_str(s->chunks[i].name));
  stream_unlink(st, s);
  stream_free(st, s);
}

/* Find the stream at c->path as the command's clock sees it: an expired
** stream without forks is removed (as if it were never there), one with
** forks becomes soft-deleted. */
static struct stream *stream_live(struct stream_state *st, const struct cmd *c,
                                  struct stream_result *r) {
  struct stream *s = stream_find(st, c->path);
  if (s != NULL && !s->soft_deleted &&
      stream_expired(s, s->last_access_ms, c->time_ms)) {
    if (s->refcount > 0) {
      s->soft_deleted = 1;
      r->notify = 1;
      r->deleted = 1;
      r->watch_mask |= s->local.watch_mask;
      s->local.watch_mask = 0;
    } else {
      stream_remove(st, s, r);
      s = NULL;
    }
  }
  return s;
}

/* ------------------------------------------------------------ CREATE */

static int stream_config_matches(const struct stream *s, const struct cmd *c) {
  if (!stream_same_type(c->content_type, s->content_type)) return 0;
  if (!!(c->flags & CMD_F_TTL) != s->has_ttl) return 0;
  if (s->has_ttl && c->ttl_s != s->ttl_s) return 0;
  if (!!(c->flags & CMD_F_EXPIRES) != s->has_expires) return 0;
  if (s->has_expires && c->expires_at_ms != s->expires_at_ms) return 0;
  if (!!(c->flags & CMD_F_CLOSE) != s->closed) return 0;
  if (c->flags & CMD_F_FORK) {
    if (s->fork_source == NULL || s->fork_source_len != c->fork_source.len ||
        memcmp(s->fork_source, c->fork_source.ptr, c->fork_source.len) != 0)
      return 0;
    if ((c->flags & CMD_F_FORK_OFFSET) && c->fork_offset != s->fork_offset)
      return 0;
    if (c->fork_sub != s->fork_sub) return 0;
    /* the same fork point of the same source: the PUT that made it */
  }
  return 1;
}

/* The offset of p, a view into the encoded command, in the command's
** bytes (its log entry's payload); 0 for a command that was not decoded
** from bytes (it is then in no log). */
static uint64_t stream_off(const struct cmd *c, const char *p) {
  return c->raw != NULL ? (uint64_t)(p - c->raw) : 0;
}

static void stream_apply_create(struct stream_state *st, uint64_t index,
                                const struct cmd *c, struct stream_result *r) {
  struct stream *s;
  size_t i;
  uint64_t prev = 0;
  int copied = c->inherited.len > 0 || c->n_bounds > 0; /* version 1 */
  if (c->flags & CMD_F_FORK) {
    r->release_source = 1;
    /* the fork point is at or after the fork offset (the sub-offset's
    ** prefix lies between them), and a fork point past 0 names the
    ** source's incarnation (what snapshots require: stream_restore) */
    if (c->fork_source.len == 0 ||
        (!copied && (c->fork_base < c->fork_offset ||
                     (c->fork_base > 0 && c->fork_inc == 0)))) {
      stream_fail(r, 400, "malformed fork reference");
      return;
    }
  }
  if (c->path.len == 0) { /* a snapshot could not name it (HTTP never does) */
    stream_fail(r, 400, "empty stream path");
    return;
  }
  s = stream_live(st, c, r);
  if (s != NULL) {
    if (s->soft_deleted) {
      stream_fail(r, 409, "stream was deleted and still has forks");
    } else if (!stream_config_matches(s, c)) {
      stream_fail(r, 409, "stream exists with a different configuration");
    } else {
      r->status = 200;
    }
    if (s != NULL) {
      r->tail = s->tail;
      r->closed = s->closed;
    }
    return;
  }
  if (st->n + 1 > st->cap / 2) stream_table_grow(st);
  s = (struct stream *)URSULA_MALLOC(sizeof(*s));
  if (s == NULL) stream_oom();
  memset(s, 0, sizeof(*s));
  s->hash = util_hash64(c->path.ptr, c->path.len);
  s->path = stream_dup(c->path);
  s->path_len = c->path.len;
  s->content_type = stream_dup(c->content_type);
  s->json = (c->flags & CMD_F_JSON) != 0;
  s->has_ttl = (c->flags & CMD_F_TTL) != 0;
  s->ttl_s = c->ttl_s;
  s->has_expires = (c->flags & CMD_F_EXPIRES) != 0;
  s->expires_at_ms = c->expires_at_ms;
  if (s->has_expires) s->expires_text = stream_dup(c->expires_text);
  s->last_access_ms = c->time_ms;
  s->incarnation = st->next_incarnation++;
  if (c->flags & CMD_F_FORK) {
    stream_set_str(&s->fork_source, &s->fork_source_len, c->fork_source);
    s->fork_offset = c->fork_offset;
    s->fork_sub = c->fork_sub;
    /* the reference: [0, base) is the source's; own bytes start there */
    s->base = s->tail = s->cold_end = s->local.hot_start = c->fork_base;
    s->fork_inc = c->fork_inc;
    if (copied) { /* a version-1 entry carries the inherited bytes (base
                     0): its units, then the sub-offset prefix as a unit
                     of its own */
      uint64_t at = stream_off(c, c->inherited.ptr);
      for (i = 0; i < c->n_bounds; i++) {
        if (c->bounds[i] <= prev || c->bounds[i] > c->inherited.len) break;
        stream_add_unit(st, s, c->inherited.ptr + prev,
                        (size_t)(c->bounds[i] - prev), index, at + prev);
        prev = c->bounds[i];
      }
      stream_add_unit(st, s, c->inherited.ptr + prev,
                      (size_t)(c->inherited.len - prev), index, at + prev);
    }
    r->release_source = 0; /* the new fork holds the reference now */
  }
  stream_add_unit(st, s, c->data.ptr, c->data.len, index,
                  stream_off(c, c->data.ptr));
  s->closed = (c->flags & CMD_F_CLOSE) != 0;
  s->hnext = st->slots[s->hash & (st->cap - 1)];
  st->slots[s->hash & (st->cap - 1)] = s;
  st->n++;
  r->status = 201;
  r->tail = s->tail;
  r->closed = s->closed;
}

/* ------------------------------------------------------------ APPEND */

/* Check the producer tuple of c against s.  Returns 0 to go on with the
** append, or 1 when *r already holds the reply (duplicate or error). */
static int stream_check_producer(struct stream *s, const struct cmd *c,
                                 struct stream_result *r) {
  struct stream_producer *p = stream_producer_find(s, c->producer_id);
  uint64_t epoch = c->producer_epoch, seq = c->producer_seq;
  if (p == NULL) {
    if (seq != 0) {
      stream_fail(r, 409, "producer sequence gap");
      r->seq_gap = 1;
      r->expected_seq = 0;
      r->received_seq = seq;
      return 1;
    }
    return 0;
  }
  if (epoch < p->epoch) {
    stream_fail(r, 403, "stale producer epoch");
    r->fenced = 1;
    r->current_epoch = p->epoch;
    return 1;
  }
  if (epoch > p->epoch) {
    if (seq != 0) {
      stream_fail(r, 400, "a new producer epoch must start at sequence 0");
      return 1;
    }
    return 0;
  }
  if (seq <= p->seq) { /* duplicate: acknowledged before, append nothing */
    r->status = 204;
    r->producer_echo = 1;
    r->producer_epoch = p->epoch;
    r->producer_seq = p->seq;
    r->tail = s->tail;
    r->closed = s->closed;
    return 1;
  }
  if (seq != p->seq + 1) {
    stream_fail(r, 409, "producer sequence gap");
    r->seq_gap = 1;
    r->expected_seq = p->seq + 1;
    r->received_seq = seq;
    return 1;
  }
  return 0;
}

static void stream_record_producer(struct stream *s, const struct cmd *c) {
  struct stream_producer *p = stream_producer_find(s, c->producer_id);
  if (p == NULL) {
    p = (struct stream_producer *)URSULA_MALLOC(sizeof(*p) +
                                                c->producer_id.len);
    if (p == NULL) stream_oom();
    p->id_len = c->producer_id.len;
    memcpy(p->id, c->producer_id.ptr, p->id_len);
    p->id[p->id_len] = '\0';
    p->next = s->producers;
    s->producers = p;
  }
  p->epoch = c->producer_epoch;
  p->seq = c->producer_seq;
}

static int stream_seq_le(const struct stream *s, struct str seq) {
  size_t n = s->stream_seq_len < seq.len ? s->stream_seq_len : seq.len;
  int cmp = memcmp(seq.ptr, s->stream_seq, n);
  if (cmp == 0) return seq.len <= s->stream_seq_len;
  return cmp < 0;
}

static void stream_apply_append(struct stream_state *st, uint64_t index,
                                const struct cmd *c, struct stream_result *r) {
  struct stream *s = stream_live(st, c, r);
  int producer = (c->flags & CMD_F_PRODUCER) != 0;
  int closing = (c->flags & CMD_F_CLOSE) != 0;
  if (s == NULL) {
    stream_fail(r, 404, "stream not found");
    return;
  }
  if (s->soft_deleted) {
    stream_fail(r, 410, "stream was deleted");
    return;
  }
  r->tail = s->tail;
  r->closed = s->closed;
  if (c->time_ms > s->last_access_ms) s->last_access_ms = c->time_ms;
  if (s->closed) {
    if (producer && s->closed_by_id != NULL &&
        s->closed_by_id_len == c->producer_id.len &&
        memcmp(s->closed_by_id, c->producer_id.ptr, c->producer_id.len) == 0 &&
        s->closed_by_epoch == c->producer_epoch &&
        s->closed_by_seq == c->producer_seq) {
      r->status = 204; /* the request that closed it, retried */
      r->producer_echo = 1;
      r->producer_epoch = c->producer_epoch;
      r->producer_seq = c->producer_seq;
    } else if (c->data.len == 0 && !producer) {
      r->status = 204; /* closing a closed stream is idempotent */
    } else {
      stream_fail(r, 409, "stream is closed");
    }
    return;
  }
  if (c->data.len > 0 && !stream_same_type(c->content_type, s->content_type)) {
    stream_fail(r, 409, "content type does not match the stream");
    return;
  }
  if (producer && stream_check_producer(s, c, r)) return;
  if ((c->flags & CMD_F_SEQ) && s->stream_seq != NULL &&
      stream_seq_le(s, c->stream_seq)) {
    stream_fail(r, 409, "Stream-Seq is not greater than the last one");
    return;
  }
  r->prev_tail = s->tail;
  stream_add_unit(st, s, c->data.ptr, c->data.len, index,
                  stream_off(c, c->data.ptr));
  if (producer) stream_record_producer(s, c);
  if (c->flags & CMD_F_SEQ)
    stream_set_str(&s->stream_seq, &s->stream_seq_len, c->stream_seq);
  if (closing) {
    s->closed = 1;
    if (producer) {
      stream_set_str(&s->closed_by_id, &s->closed_by_id_len, c->producer_id);
      s->closed_by_epoch = c->producer_epoch;
      s->closed_by_seq = c->producer_seq;
    }
  }
  r->status = (producer && c->data.len > 0) ? 200 : 204;
  if (producer) {
    r->producer_echo = 1;
    r->producer_epoch = c->producer_epoch;
    r->producer_seq = c->producer_seq;
  }
  r->tail = s->tail;
  r->closed = s->closed;
  r->notify = 1;
  r->watch_mask |= s->local.watch_mask;
}

/* ------------------------------------------------------------ DELETE */

static void stream_apply_delete(struct stream_state *st, const struct cmd *c,
                                struct stream_result *r) {
  struct stream *s = stream_live(st, c, r);
  if (s == NULL) {
    stream_fail(r, 404, "stream not found");
  } else if (s->soft_deleted) {
    stream_fail(r, 410, "stream was deleted");
  } else if (s->refcount > 0) {
    s->soft_deleted = 1; /* forks still read it */
    r->status = 204;
    r->notify = 1;
    r->deleted = 1;
    r->watch_mask |= s->local.watch_mask;
    s->local.watch_mask = 0;
  } else {
    stream_remove(st, s, r);
    r->status = 204;
  }
}

/* ------------------------------------------------------------ forks */

static void stream_apply_fork_acquire(struct stream_state *st,
                                      const struct cmd *c,
                                      struct stream_result *r) {
  struct stream *s = stream_live(st, c, r);
  uint64_t off;
  size_t unit;
  if (s == NULL) {
    stream_fail(r, 404, "fork source not found");
    return;
  }
  if (s->soft_deleted) {
    stream_fail(r, 409, "fork source was deleted");
    return;
  }
  if (c->incarnation != 0 && c->incarnation != s->incarnation) {
    /* what the proposer found (n_msgs) was of another stream there */
    stream_fail(r, 503, "the fork source was re-created meanwhile; retry");
    return;
  }
  off = (c->flags & CMD_F_FORK_OFFSET) ? c->fork_offset : s->tail;
  if (off > s->tail) {
    stream_fail(r, 400, "Stream-Fork-Offset is beyond the source's tail");
    return;
  }
  if ((c->flags & CMD_F_CT) &&
      !stream_same_type(c->content_type, s->content_type)) {
    stream_fail(r, 409, "content type does not match the fork source");
    return;
  }
  if (c->fork_sub > 0 && off < s->base) {
    /* an append s inherited: the proposer found it in s's sources */
    if (!(c->flags & CMD_F_UNIT)) {
      stream_fail(r, 400, "no append starts at Stream-Fork-Offset");
      return;
    }
    if (c->fork_sub > c->n_msgs) {
      stream_fail(r, 400, "Stream-Fork-Sub-Offset is beyond the append");
      return;
    }
  } else if (c->fork_sub > 0) {
    uint64_t start, end, len;
    unit = stream_unit_at(s, off);
    start = unit < s->n_bounds ? stream_unit_start(s, unit) : s->tail;
    if (unit >= s->n_bounds || start != off) {
      stream_fail(r, 400, "no append starts at Stream-Fork-Offset");
      return;
    }
    end = s->bounds[unit];
    len = end - start;
    if (s->json && unit < s->cold_units) { /* apply reads no cold tier */
      stream_fail(r, 400,
                  "Stream-Fork-Sub-Offset into data already moved to cold "
                  "storage is not supported");
      return;
    }
    /* a JSON append's length is its message count: the proposer read
    ** the append and counted them (apply reads nothing) */
    if (s->json) len = c->n_msgs;
    if (c->fork_sub > len) {
      stream_fail(r, 400, "Stream-Fork-Sub-Offset is beyond the append");
      return;
    }
  }
  s->refcount++;
  r->status = 200;
  r->tail = off;
  r->closed = s->closed;
}

static void stream_apply_fork_release(struct stream_state *st,
                                      const struct cmd *c,
                                      struct stream_result *r) {
  struct stream *s = stream_find(st, c->path);
  r->status = 204;
  if (s == NULL || s->refcount == 0) return;
  s->refcount--;
  if (s->refcount == 0 &&
      (s->soft_deleted || stream_expired(s, s->last_access_ms, c->time_ms))) {
    stream_remove(st, s, r); /* cascades to its own source */
  }
}

/* ------------------------------------------------------------ COLD */

/* Whether c may move bytes of s to the cold tier: the right incarnation,
** the next run after cold_end, ending on a unit boundary, every unit in
** the WAL (so the bytes uploaded were durable ones), and an object name
** without NUL (chunk names are C strings: a snapshot could not carry
** one, and stream_restore refuses it). */
static int stream_cold_fits(const struct stream *s, const struct cmd *c) {
  size_t u;
  if (s == NULL || s->incarnation != c->incarnation ||
      s->cold_end != c->cold_start || c->cold_end <= c->cold_start ||
      c->cold_end > s->tail || c->object.len == 0 ||
      memchr(c->object.ptr, '\0', c->object.len) != NULL) /* a C string */
    return 0;
  u = stream_unit_at(s, c->cold_end - 1);
  if (u >= s->n_bounds || s->bounds[u] != c->cold_end) return 0;
  for (; u + 1 > s->cold_units; u--)
    if (s->locs[u].index == 0) return 0;
  return 1;
}

static void stream_apply_cold(struct stream_state *st, const struct cmd *c,
                              struct stream_result *r) {
  struct stream *s = stream_find(st, c->path);
  struct stream_chunk *ch;
  if (!stream_cold_fits(s, c)) {
    /* stale (the stream changed meanwhile): the object is garbage, unless
    ** this very object is already the stream's (a repeated command) */
    size_t k = s != NULL && c->cold_start < s->cold_end
                   ? stream_chunk_at(s, c->cold_start)
                   : 0;
    if (s == NULL || k >= s->n_chunks ||
        strlen(s->chunks[k].name) != c->object.len ||
        memcmp(s->chunks[k].name, c->object.ptr, c->object.len) != 0)
      stream_garbage(r, c->object);
    stream_fail(r, 409, "stale cold-tier move");
    return;
  }
  if (s->n_chunks == s->cap_chunks) {
    size_t cap = s->cap_chunks ? s->cap_chunks * 2 : 4;
    ch = (struct stream_chunk *)URSULA_REALLOC(s->chunks, cap * sizeof(*ch));
    if (ch == NULL) stream_oom();
    s->chunks = ch;
    s->cap_chunks = cap;
  }
  ch = &s->chunks[s->n_chunks];
  ch->start = c->cold_start;
  ch->end = c->cold_end;
  ch->name = stream_dup(c->object);
  s->n_chunks++;
  s->cold_end = c->cold_end;
  s->cold_units = stream_unit_at(s, c->cold_end);
  if (s->local.hot_start < s->cold_end) { /* memory need not keep them */
    uint64_t drop = s->cold_end - s->local.hot_start;
    buf_consume(&s->local.data, (size_t)drop);
    st->hot_bytes -= drop;
    s->local.hot_start = s->cold_end;
    if (s->local.data.len == 0) buf_free(&s->local.data);
  }
  r->status = 204;
  r->tail = s->tail;
}

static void stream_apply_expire(struct stream_state *st, const struct cmd *c,
                                struct stream_result *r) {
  (void)stream_live(st, c, r);
  r->status = 204;
}

/* TOUCH: the owner saw a read of the stream at c->time_ms, which slides
** its TTL window.  The window moves only forward, and no expiry is
** checked: the read found the stream alive, and the owner logs the TOUCH
** before any command that could expire it (group.c). */
static void stream_apply_touch(struct stream_state *st, const struct cmd *c,
                               struct stream_result *r) {
  struct stream *s = stream_find(st, c->path);
  r->status = 204;
  if (s == NULL || s->soft_deleted || s->incarnation != c->incarnation) return;
  if (c->time_ms > s->last_access_ms) s->last_access_ms = c->time_ms;
}

/* ------------------------------------------------------------ apply */

URSULA_PRIVATE int stream_apply(struct stream_state *st, uint64_t index,
                                const struct cmd *c, struct stream_result *r) {
  struct buf releases = r->releases, garbage = r->garbage;
  memset(r, 0, sizeof(*r));
  r->releases = releases;
  r->releases.len = 0;
  r->garbage = garbage;
  r->garbage.len = 0;
  if (st->cap == 0) stream_table_grow(st);
  switch (c->type) {
    case CMD_CREATE:
      stream_apply_create(st, index, c, r);
      break;
    case CMD_APPEND:
      stream_apply_append(st, index, c, r);
      break;
    case CMD_DELETE:
      stream_apply_delete(st, c, r);
      break;
    case CMD_FORK_ACQUIRE:
      stream_apply_fork_acquire(st, c, r);
      break;
    case CMD_FORK_RELEASE:
      stream_apply_fork_release(st, c, r);
      break;
    case CMD_EXPIRE:
      stream_apply_expire(st, c, r);
      break;
    case CMD_COLD:
      stream_apply_cold(st, c, r);
      break;
    case CMD_TOUCH:
      stream_apply_touch(st, c, r);
      break;
    default:
      stream_fail(r, 500, "unknown command");
      return URSULA_ECORRUPT;
  }
  return URSULA_OK;
}

/* ------------------------------------------------------------ snapshots

   SNAPSHOT FORMAT.  v = varint (cmd.c), b = varint length + bytes.  The
   form is canonical: the same replicated state gives the same bytes on
   every node, whatever its history (hash-table size, eviction, restarts):
   streams in path order (bytewise, a prefix first), producers in id
   order, and nothing of struct stream_local.

     v 4 (format version)   v next_incarnation   v number of streams
     per stream:
       b path   b content_type
       v flags: 1 json, 2 closed, 4 soft_deleted, 8 has_ttl, 16 has_expires
       v tail   v ttl_s   v expires_at_ms   b expires_text
       v last_access_ms   b stream_seq (empty: none)
       v producers, then per producer: b id, v epoch, v seq
       b closed_by_id (empty: none)   v closed_by_epoch   v closed_by_seq
       b fork_source (empty: not a fork)   v fork_offset   v fork_sub
       v base (the fork point: the stream's own bytes start there)
       v fork_inc (the source's incarnation)
       v refcount   v incarnation
       v chunks, then per chunk: v length, b object name (the chunks hold
         the stream's first own bytes, back to back from base)
       v units, then per unit: v length (the first from base), then, for
         the units past the chunks' end only, v log index, v offset in
         that entry's payload

   The bytes of units past the chunks stay in the log entries named (the
   log keeps them: group.c compacts only what no stream reads), or travel
   beside this payload as pieces of the snapshot file (wal.c) when the
   log does not hold those entries (after an install from another node); a fork's
   bytes below base are its source's, in the source's record.  Restore
   checks every length and offset for order and range before it uses
   one: base <= tail, fork_offset <= base (a copied fork: base 0), a
   stream that is no fork has none of the fork fields, chunks and units
   are non-empty and end exactly at a unit end and at the tail, and no
   sum wraps.  Version 3 is version 4 without base and fork_inc (its
   forks hold copies of what they inherited: base 0), and is read.
   Versions 1 and 2 named WAL files and offsets instead; they came with
   WAL format 1, which is refused, so they are not read.

   stream_restore() accepts this canonical form only, so that restoring
   and snapshotting again gives the same bytes: shortest varints, paths
   and producer ids strictly ascending, no unknown flag, no NUL in a
   content type, expires_text or chunk name, and lengths that add up
   without wrapping. */

#define STREAM_SNAP_VERSION 4

static struct str stream_str(const char *p, size_t len) {
  struct str s;
  s.ptr = p ? p : "";
  s.len = p ? len : 0;
  return s;
}

/* Bytewise order of two byte strings, a prefix first. */
static int stream_bytes_cmp(const char *a, size_t an, const char *b,
                            size_t bn) {
  int c = memcmp(a, b, an < bn ? an : bn);
  if (c != 0) return c;
  return an < bn ? -1 : an > bn;
}

static int stream_path_cmp(const void *x, const void *y) {
  const struct stream *a = *(const struct stream *const *)x;
  const struct stream *b = *(const struct stream *const *)y;
  return stream_bytes_cmp(a->path, a->path_len, b->path, b->path_len);
}

static int stream_producer_cmp(const void *x, const void *y) {
  const struct stream_producer *a = *(const struct stream_producer *const *)x;
  const struct stream_producer *b = *(const struct stream_producer *const *)y;
  return stream_bytes_cmp(a->id, a->id_len, b->id, b->id_len);
}

/* One stream's record of the snapshot. */
static int stream_snapshot_one(const struct stream *s, struct buf *out) {
  const struct stream_producer *pr, **prs = NULL;
  uint64_t n = 0, prev = s->base, i;
  int bad = 0;
  for (pr = s->producers; pr != NULL; pr = pr->next) n++;
  if (n > 0) {
    prs = (const struct stream_producer **)URSULA_MALLOC(
        (size_t)n * sizeof(*prs));
    if (prs == NULL) return URSULA_ENOMEM;
    for (i = 0, pr = s->producers; pr != NULL; pr = pr->next) prs[i++] = pr;
    qsort((void *)prs, (size_t)n, sizeof(*prs), stream_producer_cmp);
  }
  bad |= cmd_put_bytes(out, stream_str(s->path, s->path_len));
  bad |= cmd_put_bytes(out, util_str(s->content_type));
  bad |= cmd_put_varint(
      out, (uint64_t)(s->json | s->closed << 1 | s->soft_deleted << 2 |
                      s->has_ttl << 3 | s->has_expires << 4));
  bad |= cmd_put_varint(out, s->tail);
  bad |= cmd_put_varint(out, s->ttl_s);
  bad |= cmd_put_varint(out, s->expires_at_ms);
  bad |= cmd_put_bytes(out, util_str(s->expires_text ? s->expires_text : ""));
  bad |= cmd_put_varint(out, s->last_access_ms);
  bad |= cmd_put_bytes(out, stream_str(s->stream_seq, s->stream_seq_len));
  bad |= cmd_put_varint(out, n);
  for (i = 0; i < n; i++) {
    bad |= cmd_put_bytes(out, stream_str(prs[i]->id, prs[i]->id_len));
    bad |= cmd_put_varint(out, prs[i]->epoch);
    bad |= cmd_put_varint(out, prs[i]->seq);
  }
  URSULA_FREE((void *)prs);
  bad |= cmd_put_bytes(out, stream_str(s->closed_by_id, s->closed_by_id_len));
  bad |= cmd_put_varint(out, s->closed_by_epoch);
  bad |= cmd_put_varint(out, s->closed_by_seq);
  bad |= cmd_put_bytes(out, stream_str(s->fork_source, s->fork_source_len));
  bad |= cmd_put_varint(out, s->fork_offset);
  bad |= cmd_put_varint(out, s->fork_sub);
  bad |= cmd_put_varint(out, s->base);
  bad |= cmd_put_varint(out, s->fork_inc);
  bad |= cmd_put_varint(out, s->refcount);
  bad |= cmd_put_varint(out, s->incarnation);
  bad |= cmd_put_varint(out, s->n_chunks);
  for (i = 0; i < s->n_chunks; i++) {
    bad |= cmd_put_varint(out, s->chunks[i].end - s->chunks[i].start);
    bad |= cmd_put_bytes(out, util_str(s->chunks[i].name));
  }
  bad |= cmd_put_varint(out, s->n_bounds);
  for (i = 0; i < s->n_bounds; i++) {
    bad |= cmd_put_varint(out, s->bounds[i] - prev);
    prev = s->bounds[i];
    if (i < s->cold_units) continue;
    if (s->locs[i].index == 0) return URSULA_EINVAL; /* in no log */
    bad |= cmd_put_varint(out, s->locs[i].index);
    bad |= cmd_put_varint(out, s->locs[i].off);
  }
  return bad ? URSULA_ENOMEM : URSULA_OK;
}

URSULA_PRIVATE int stream_snapshot(const struct stream_state *st,
                                   struct buf *out) {
  const struct stream **all = NULL, *s;
  size_t i, n = 0;
  int rc = URSULA_OK, bad = 0;
  if (st->n > 0) {
    all = (const struct stream **)URSULA_MALLOC(st->n * sizeof(*all));
    if (all == NULL) return URSULA_ENOMEM;
    for (i = 0; i < st->cap; i++)
      for (s = st->slots[i]; s != NULL; s = s->hnext) all[n++] = s;
    qsort((void *)all, n, sizeof(*all), stream_path_cmp);
  }
  bad |= cmd_put_varint(out, STREAM_SNAP_VERSION);
  bad |= cmd_put_varint(out, st->next_incarnation);
  bad |= cmd_put_varint(out, n);
  for (i = 0; i < n && rc == URSULA_OK; i++) rc = stream_snapshot_one(all[i], out);
  URSULA_FREE((void *)all);
  if (rc == URSULA_OK && bad) rc = URSULA_ENOMEM;
  return rc;
}

URSULA_PRIVATE int stream_digest(const struct stream_state *st,
                                 uint64_t *digest) {
  struct buf b;
  int rc;
  memset(&b, 0, sizeof(b));
  rc = stream_snapshot(st, &b);
  *digest = rc == URSULA_OK ? util_hash64(b.ptr ? b.ptr : "", b.len) : 0;
  buf_free(&b);
  return rc;
}

/* Copy a snapshot string; "" becomes NULL when empty means none. */
static void stream_take(char **dst, size_t *len, struct str v, int null_empty) {
  *dst = NULL;
  if (len) *len = 0;
  if (null_empty && v.len == 0) return;
  stream_set_str(dst, len, v);
}

/* Decode the chunk list of a stream. */
static int stream_restore_chunks(const unsigned char **p,
                                 const unsigned char *end, struct stream *s) {
  uint64_t n, i, len;
  struct str name;
  if (cmd_get_varint(p, end, &n) || n > (uint64_t)(end - *p) / 2) return -1;
  if (n == 0) return 0;
  s->chunks =
      (struct stream_chunk *)URSULA_MALLOC((size_t)n * sizeof(*s->chunks));
  if (s->chunks == NULL) stream_oom();
  s->cap_chunks = (size_t)n;
  for (i = 0; i < n; i++) {
    struct stream_chunk *ch = &s->chunks[i];
    if (cmd_get_varint(p, end, &len) || len == 0 ||
        len > s->tail - s->cold_end || cmd_get_bytes(p, end, &name) ||
        name.len == 0 || memchr(name.ptr, '\0', name.len) != NULL)
      return -1;
    ch->name = stream_dup(name);
    s->n_chunks++;
    ch->start = s->cold_end;
    ch->end = s->cold_end += len;
  }
  return 0;
}

/* Decode one stream of a snapshot of format `version`; 0, or -1 for bad
** input. */
static int stream_restore_one(const unsigned char **p, const unsigned char *end,
                              struct stream *s, uint64_t version) {
  struct str path = {"", 0}, ct = {"", 0}, exp = {"", 0}, seq, by, src, id,
             prev_id = {NULL, 0};
  uint64_t flags = 0, n = 0, i, prev = 0;
  int bad = 0;
  bad |= cmd_get_bytes(p, end, &path);
  bad |= cmd_get_bytes(p, end, &ct);
  bad |= cmd_get_varint(p, end, &flags);
  bad |= cmd_get_varint(p, end, &s->tail);
  bad |= cmd_get_varint(p, end, &s->ttl_s);
  bad |= cmd_get_varint(p, end, &s->expires_at_ms);
  bad |= cmd_get_bytes(p, end, &exp);
  bad |= cmd_get_varint(p, end, &s->last_access_ms);
  bad |= cmd_get_bytes(p, end, &seq);
  if (bad || path.len == 0 || flags >> 5 != 0 ||
      memchr(ct.ptr, '\0', ct.len) != NULL ||
      memchr(exp.ptr, '\0', exp.len) != NULL)
    return -1;
  s->json = (int)(flags & 1);
  s->closed = (int)(flags >> 1 & 1);
  s->soft_deleted = (int)(flags >> 2 & 1);
  s->has_ttl = (int)(flags >> 3 & 1);
  s->has_expires = (int)(flags >> 4 & 1);
  s->hash = util_hash64(path.ptr, path.len);
  stream_take(&s->path, &s->path_len, path, 0);
  stream_take(&s->content_type, NULL, ct, 0);
  stream_take(&s->expires_text, NULL, exp, 1);
  stream_take(&s->stream_seq, &s->stream_seq_len, seq, 1);
  if (cmd_get_varint(p, end, &n)) return -1;
  for (i = 0; i < n; i++) {
    struct stream_producer *pr;
    uint64_t epoch, sq;
    if (cmd_get_bytes(p, end, &id) || cmd_get_varint(p, end, &epoch) ||
        cmd_get_varint(p, end, &sq) ||
        (i > 0 && stream_bytes_cmp(prev_id.ptr, prev_id.len, id.ptr,
                                   id.len) >= 0)) /* ascending, no twice */
      return -1;
    prev_id = id;
    pr = (struct stream_producer *)URSULA_MALLOC(sizeof(*pr) + id.len);
    if (pr == NULL) stream_oom();
    pr->id_len = id.len;
    memcpy(pr->id, id.ptr, id.len);
    pr->id[id.len] = '\0';
    pr->epoch = epoch;
    pr->seq = sq;
    pr->next = s->producers;
    s->producers = pr;
  }
  bad |= cmd_get_bytes(p, end, &by);
  bad |= cmd_get_varint(p, end, &s->closed_by_epoch);
  bad |= cmd_get_varint(p, end, &s->closed_by_seq);
  bad |= cmd_get_bytes(p, end, &src);
  bad |= cmd_get_varint(p, end, &s->fork_offset);
  bad |= cmd_get_varint(p, end, &s->fork_sub);
  if (version >= 4) {
    bad |= cmd_get_varint(p, end, &s->base);
    bad |= cmd_get_varint(p, end, &s->fork_inc);
  }
  bad |= cmd_get_varint(p, end, &s->refcount);
  bad |= cmd_get_varint(p, end, &s->incarnation);
  /* the fork fields: all zero but for a fork; a fork's own bytes start at
  ** or after its fork offset (or at 0: a copied fork) */
  if (bad || s->base > s->tail ||
      (src.len == 0 && (s->base != 0 || s->fork_inc != 0 ||
                        s->fork_offset != 0 || s->fork_sub != 0)) ||
      (s->base > 0 && (s->fork_offset > s->base || s->fork_inc == 0)))
    return -1;
  s->cold_end = s->base;
  bad |= stream_restore_chunks(p, end, s);
  bad |= cmd_get_varint(p, end, &n);
  if (bad || n > (uint64_t)(end - *p)) /* a unit takes at least 1 byte */
    return -1;
  stream_take(&s->closed_by_id, &s->closed_by_id_len, by, 1);
  stream_take(&s->fork_source, &s->fork_source_len, src, 1);
  if (n > 0) {
    s->bounds = (uint64_t *)URSULA_MALLOC((size_t)n * sizeof(*s->bounds));
    s->locs = (struct stream_loc *)URSULA_MALLOC((size_t)n * sizeof(*s->locs));
    if (s->bounds == NULL || s->locs == NULL) stream_oom();
    s->cap_bounds = (size_t)n;
  }
  prev = s->base;
  for (i = 0; i < n; i++) {
    uint64_t len;
    if (cmd_get_varint(p, end, &len) || len == 0 || len > s->tail - prev)
      return -1;
    if (prev < s->cold_end) { /* in a chunk: no log location */
      s->locs[i].index = s->locs[i].off = 0;
      s->cold_units = (size_t)i + 1;
    } else if (cmd_get_varint(p, end, &s->locs[i].index) ||
               cmd_get_varint(p, end, &s->locs[i].off) ||
               s->locs[i].index == 0) {
      return -1;
    }
    prev += len;
    s->bounds[i] = prev;
  }
  s->n_bounds = (size_t)n;
  if (prev != s->tail || s->cold_end > s->tail ||
      (s->cold_units > 0 && s->bounds[s->cold_units - 1] != s->cold_end))
    return -1;
  s->local.hot_start = s->tail; /* nothing in memory: read from the log */
  return 0;
}

URSULA_PRIVATE int stream_restore(struct stream_state *st, const void *p,
                                  size_t len) {
  const unsigned char *q = (const unsigned char *)p, *end = q + len;
  const struct stream *last = NULL; /* the stream before: paths ascend */
  uint64_t version, n, i;
  if (cmd_get_varint(&q, end, &version) ||
      (version != STREAM_SNAP_VERSION && version != 3) ||
      cmd_get_varint(&q, end, &st->next_incarnation) ||
      cmd_get_varint(&q, end, &n))
    return URSULA_ECORRUPT;
  for (i = 0; i < n; i++) {
    struct stream *s;
    if (st->n + 1 > st->cap / 2) stream_table_grow(st);
    s = (struct stream *)URSULA_MALLOC(sizeof(*s));
    if (s == NULL) stream_oom();
    memset(s, 0, sizeof(*s));
    if (stream_restore_one(&q, end, s, version) != 0 ||
        (last != NULL && stream_bytes_cmp(last->path, last->path_len, s->path,
                                          s->path_len) >= 0) ||
        stream_find(st, stream_str(s->path, s->path_len)) != NULL) {
      stream_free(st, s);
      return URSULA_ECORRUPT;
    }
    s->hnext = st->slots[s->hash & (st->cap - 1)];
    st->slots[s->hash & (st->cap - 1)] = s;
    st->n++;
    last = s;
  }
  return q == end ? URSULA_OK : URSULA_ECORRUPT;
}

/* The first unit of s, not in the cold tier, whose entry is at or after
** floor (a stream's units are logged in order); s->n_bounds if none. */
static size_t stream_first_unit_from(const struct stream *s, uint64_t floor) {
  size_t lo = s->cold_units, hi = s->n_bounds;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (s->locs[mid].index < floor)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

URSULA_PRIVATE uint64_t stream_oldest_index(const struct stream_state *st,
                                            uint64_t floor) {
  uint64_t oldest = UINT64_MAX;
  size_t i, u;
  const struct stream *s;
  /* units in the cold tier need the log no more */
  for (i = 0; i < st->cap; i++)
    for (s = st->slots[i]; s != NULL; s = s->hnext) {
      u = stream_first_unit_from(s, floor > 0 ? floor : 1);
      if (u < s->n_bounds && s->locs[u].index < oldest)
        oldest = s->locs[u].index;
    }
  return oldest;
}

static int stream_piece_cmp(const void *x, const void *y) {
  const struct stream_piece *a = (const struct stream_piece *)x;
  const struct stream_piece *b = (const struct stream_piece *)y;
  if (a->index != b->index) return a->index < b->index ? -1 : 1;
  return a->off < b->off ? -1 : a->off > b->off;
}

URSULA_PRIVATE int stream_log_units(const struct stream_state *st,
                                    uint64_t below, struct buf *out) {
  size_t i, u;
  const struct stream *s;
  out->len = 0;
  for (i = 0; i < st->cap; i++)
    for (s = st->slots[i]; s != NULL; s = s->hnext)
      for (u = s->cold_units; u < s->n_bounds; u++) {
        struct stream_piece pc;
        if (s->locs[u].index == 0) continue; /* in memory only */
        if (s->locs[u].index >= below) break; /* logged in order */
        pc.index = s->locs[u].index;
        pc.off = s->locs[u].off;
        pc.len = s->bounds[u] - stream_unit_start(s, u);
        if (buf_append(out, &pc, sizeof(pc)) != URSULA_OK)
          return URSULA_ENOMEM;
      }
  if (out->len > 0)
    qsort(out->ptr, out->len / sizeof(struct stream_piece),
          sizeof(struct stream_piece), stream_piece_cmp);
  return URSULA_OK;
}
/**** End src/stream.c ****/
/**** Begin src/cold.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/cold.c"
#endif
/*
** cold.c -- the cold tier: where streams' older bytes go, in chunk
** objects kept in S3 (or any S3-compatible store) or in a local folder.
**
** WHAT MOVES.  Each group moves the oldest bytes of its streams, a run of
** whole appends at a time, into one chunk object per run (tier.c
** decides when).  The object is written first; only then does the group
** log a COLD command naming it, and only once that command is durable
** are memory and WAL segments released (stream.c).  A crash in between
** leaves an object nothing names: the sweep at start-up deletes it.
**
** OBJECT NAMES.  Relative to --s3-prefix (S3) or to --cold-dir:
**
**     g<group, 5 digits>/<incarnation, 16 hex>/<start, 16 hex>-<end, 16 hex>-t<term, 16 hex>
**     g00003/000000000000002a/0000000000000000-0000000000100000-t0000000000000007
**
** group and incarnation (unique per group, never reused) name the
** stream; start and end are the byte offsets of the run in the stream;
** term is the Raft term of the leader that uploaded it (the only one
** that may name it: tier.c's sweep deletes by it).  Names written before
** the term was added end at <end> and count as term 0.  Everything of
** one group is under "g<group>/", which the sweep lists.  The name is
** also carried in the COLD command, so the state never depends on this
** scheme.
**
** CHUNK FORMAT (integers little-endian):
**
**     offset  size  field
**     0       8     magic "URSCOLD1"
**     8       8     incarnation
**     16      8     start offset in the stream
**     24      8     end offset (end - start data bytes follow)
**     32      4     CRC32C of the data
**     36      4     zero
**     40      ...   the stream's bytes [start, end), as appended
**
** A chunk read back is checked against all of it before it is used.
**
** THREADS.  S3 traffic (and the folder's file I/O) never runs on a
** core: requests (struct cold_req) go to a queue served by
** URSULA_COLD_THREADS threads, each with its own S3 connection, and each
** result is posted back to the requesting core's mailbox.  An outage is
** logged once when it starts and once when it ends.  Built with
** URSULA_ENABLE_THREADS=0 there are no threads: cold_submit() carries
** the request out on the caller, blocking it (one S3 connection, kept),
** and posts the result to the reply loop all the same, so the requester
** sees it on a later turn exactly as with threads.
**
** FILES.  The folder is reached only through the file-system table of
** the env given to cold_open() (os.c), so tests and simulators can
** replace it.
**
** THE CACHE.  Each core keeps the chunks its groups fetched, up to a byte
** budget, least recently used out first (cold_cache_*).  One thread.
*/


#define COLD_MAGIC "URSCOLD1"

/* ------------------------------------------------------------ chunks */

URSULA_PRIVATE void cold_chunk_name(char *out, int group, uint64_t inc,
                                    uint64_t start, uint64_t end,
                                    uint64_t term) {
  snprintf(out, COLD_NAME_MAX, "g%05d/%016llx/%016llx-%016llx-t%016llx",
           group, (unsigned long long)inc, (unsigned long long)start,
           (unsigned long long)end, (unsigned long long)term);
}

URSULA_PRIVATE uint64_t cold_chunk_term(const char *name) {
  size_t n = strlen(name), i;
  uint64_t term = 0;
  if (n > 4 && memcmp(name + n - 4, ".tmp", 4) == 0)
    n -= 4; /* a folder store's upload in flight: the chunk's own term */
  if (n < 18 || name[n - 18] != '-' || name[n - 17] != 't') return 0;
  for (i = n - 16; i < n; i++) {
    char ch = name[i];
    if (ch >= '0' && ch <= '9')
      term = term << 4 | (uint64_t)(ch - '0');
    else if (ch >= 'a' && ch <= 'f')
      term = term << 4 | (uint64_t)(ch - 'a' + 10);
    else
      return 0;
  }
  return term;
}

URSULA_PRIVATE void cold_chunk_seal(struct buf *obj, uint64_t inc,
                                    uint64_t start) {
  unsigned char *h = (unsigned char *)obj->ptr;
  uint32_t crc = util_crc32c(0, obj->ptr + COLD_HEADER, obj->len - COLD_HEADER);
  memcpy(h, COLD_MAGIC, 8);
  util_put64(h + 8, inc);
  util_put64(h + 16, start);
  util_put64(h + 24, start + (obj->len - COLD_HEADER));
  util_put64(h + 32, crc); /* the CRC, then four zero bytes */
}

URSULA_PRIVATE int cold_chunk_check(const struct buf *obj, uint64_t inc,
                                    uint64_t start, uint64_t end) {
  const unsigned char *h = (const unsigned char *)obj->ptr;
  if (obj->len < COLD_HEADER || memcmp(h, COLD_MAGIC, 8) != 0 ||
      util_get64(h + 8) != inc || util_get64(h + 16) != start ||
      util_get64(h + 24) != end || end - start != obj->len - COLD_HEADER ||
      util_get64(h + 32) !=
          util_crc32c(0, obj->ptr + COLD_HEADER, obj->len - COLD_HEADER))
    return URSULA_ECORRUPT;
  return URSULA_OK;
}

/* ------------------------------------------------------------ requests */

/* loop_close() of a core with a result still in its mailbox. */
static void cold_req_drop(struct loop_msg *m) {
  cold_req_free((struct cold_req *)(void *)m);
}

URSULA_PRIVATE struct cold_req *cold_req_new(int op, struct loop *reply,
                                             loop_msg_fn done) {
  struct cold_req *r = (struct cold_req *)URSULA_MALLOC(sizeof(*r));
  if (r == NULL) return NULL;
  memset(r, 0, sizeof(*r));
  r->op = op;
  r->reply = reply;
  r->msg.on_msg = done;
  r->msg.on_drop = cold_req_drop;
  return r;
}

URSULA_PRIVATE void cold_req_free(struct cold_req *r) {
  if (r == NULL) return;
  buf_free(&r->data);
  buf_free(&r->path);
  URSULA_FREE(r);
}

/* ------------------------------------------------------------ the folder */

#if URSULA_ENABLE_THREADS
#define COLD_THREADS URSULA_COLD_THREADS
#else
#define COLD_THREADS 0 /* cold_submit() runs each request itself */
#endif

struct cold {
  const struct ursula_config *cfg;
  struct os_fs *fs; /* the env's: every file call of the folder */
  int use_s3;
  struct tls_anchors *anchors;
  struct s3_config s3;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct cold_req *head, *tail; /* the queue */
  int stopping;
  int down; /* the store is failing: logged once */
  int n_threads;
  pthread_t threads[URSULA_COLD_THREADS];
  struct s3_client *inline_cl; /* without threads: the S3 connection */
  /* the marker (cold_claim): who we are, and whether the store is ours */
  pthread_mutex_t claim_mu; /* one claim at a time */
  struct cold_owner owner;
  int claimed;             /* under mu: the marker is ours */
  int refused;             /* under mu: it is another's (logged once) */
  uint64_t claim_tried_ms; /* under mu: the last try by cold_claimed() */
};

/* The file of object `name` in the folder, into path. */
static void cold_dir_path(const struct cold *c, const char *name, char *path,
                          size_t cap) {
  snprintf(path, cap, "%s/%s", c->cfg->cold_dir, name);
}

/* mkdir of path; 0 also if it exists. */
static int cold_mkdir(struct cold *c, const char *path) {
  if (c->fs->mkdir(path, 0755) == 0 || errno == EEXIST) return 0;
  return -1;
}

/* mkdir -p of the directories in path before its last '/'. */
static int cold_dir_parents(struct cold *c, char *path) {
  char *p;
  for (p = path + 1; *p != '\0'; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (cold_mkdir(c, path) != 0) {
      *p = '/';
      return -1;
    }
    *p = '/';
  }
  return 0;
}

static int cold_dir_put(struct cold *c, struct cold_req *r, char *err) {
  char path[URSULA_PATH_LEN + COLD_NAME_MAX + 8], tmp[sizeof(path) + 16];
  char *slash;
  struct os_fs *fs = c->fs;
  size_t off = 0;
  int fd;
  cold_dir_path(c, r->name, path, sizeof(path));
  if (r->tmp_tag != 0)
    snprintf(tmp, sizeof(tmp), "%s.%u.tmp", path, r->tmp_tag);
  else
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  if (cold_dir_parents(c, path) != 0) goto fail;
  fd = fs->open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) goto fail;
  while (off < r->data.len) {
    ssize_t n =
        fs->pwrite(fd, r->data.ptr + off, r->data.len - off, (off_t)off);
    if (n <= 0) {
      if (n == 0) errno = EIO;
      fs->close(fd);
      goto fail;
    }
    off += (size_t)n;
  }
  if (fs->sync(fd) != 0) {
    fs->close(fd);
    goto fail;
  }
  if (fs->close(fd) != 0 || fs->rename(tmp, path) != 0) goto fail;
  slash = strrchr(path, '/');
  *slash = '\0';
  if (fs->sync_dir(path) != 0) goto fail;
  return URSULA_OK;
fail:
  snprintf(err, URSULA_ERRMSG_LEN, "writing %.150s/%.96s: %s", c->cfg->cold_dir,
           r->name, strerror(errno));
  return errno == ENOSPC ? URSULA_ENOSPC : URSULA_EIO;
}

static int cold_dir_get(struct cold *c, struct cold_req *r, char *err) {
  char path[URSULA_PATH_LEN + COLD_NAME_MAX + 8];
  struct os_fs *fs = c->fs;
  uint64_t size = 0;
  int fd, rc = URSULA_OK;
  size_t off = 0;
  cold_dir_path(c, r->name, path, sizeof(path));
  fd = fs->open(path, O_RDONLY, 0);
  if (fd < 0 && errno == ENOENT) return URSULA_ENOTFOUND;
  if (fd < 0) goto fail;
  if (fs->size(fd, &size) != 0) {
    fs->close(fd);
    goto fail;
  }
  if (size > (uint64_t)SIZE_MAX / 2 ||
      buf_reserve(&r->data, (size_t)size) != URSULA_OK) {
    fs->close(fd);
    return URSULA_ENOMEM;
  }
  while (off < (size_t)size) {
    ssize_t n =
        fs->pread(fd, r->data.ptr + off, (size_t)size - off, (off_t)off);
    if (n <= 0) {
      if (n == 0) errno = EIO;
      rc = -1;
      break;
    }
    off += (size_t)n;
  }
  fs->close(fd);
  r->data.len = off;
  if (rc == URSULA_OK) return URSULA_OK;
fail:
  snprintf(err, URSULA_ERRMSG_LEN, "reading %.150s/%.96s: %s", c->cfg->cold_dir,
           r->name, strerror(errno));
  return URSULA_EIO;
}

static int cold_dir_delete(struct cold *c, struct cold_req *r, char *err) {
  char path[URSULA_PATH_LEN + COLD_NAME_MAX + 8], *slash;
  cold_dir_path(c, r->name, path, sizeof(path));
  if (c->fs->unlink(path) != 0 && errno != ENOENT) {
    snprintf(err, URSULA_ERRMSG_LEN, "deleting %.150s/%.96s: %s",
             c->cfg->cold_dir, r->name, strerror(errno));
    return URSULA_EIO;
  }
  slash = strrchr(path, '/');
  *slash = '\0';
  (void)c->fs->rmdir(path); /* the stream's folder, once empty */
  return URSULA_OK;
}

/* LIST of a group's prefix "gNNNNN/": every file two levels below.  The
** group's folder lists its streams' folders (cold_dir_listed_top), each
** of which lists its chunks (cold_dir_listed). */
struct cold_dir_list_ctx {
  struct cold *c;
  struct cold_req *r;
  const char *sub; /* the stream folder being listed */
};

static int cold_dir_listed(void *arg, const char *name) {
  struct cold_dir_list_ctx *x = (struct cold_dir_list_ctx *)arg;
  if (name[0] == '.') return 0;
  if (buf_printf(&x->r->data, "%s%s/%s", x->r->name, x->sub, name) !=
          URSULA_OK ||
      buf_append(&x->r->data, "", 1) != URSULA_OK)
    return 1; /* out of memory */
  return 0;
}

static int cold_dir_listed_top(void *arg, const char *name) {
  struct cold_dir_list_ctx *x = (struct cold_dir_list_ctx *)arg;
  char path[URSULA_PATH_LEN + COLD_NAME_MAX + 264];
  if (name[0] == '.') return 0;
  snprintf(path, sizeof(path), "%s/%s%s", x->c->cfg->cold_dir, x->r->name,
           name);
  x->sub = name;
  /* not a folder, or gone meanwhile: nothing of ours in it */
  return x->c->fs->list(path, cold_dir_listed, x) > 0 ? 1 : 0;
}

static int cold_dir_list(struct cold *c, struct cold_req *r, char *err) {
  char path[URSULA_PATH_LEN + COLD_NAME_MAX + 8];
  struct cold_dir_list_ctx x;
  int rc;
  x.c = c;
  x.r = r;
  x.sub = "";
  cold_dir_path(c, r->name, path, sizeof(path));
  rc = c->fs->list(path, cold_dir_listed_top, &x);
  if (rc > 0) return URSULA_ENOMEM;
  if (rc < 0) {
    if (errno == ENOENT) return URSULA_OK; /* nothing yet */
    snprintf(err, URSULA_ERRMSG_LEN, "listing %.200s: %s", path,
             strerror(errno));
    return URSULA_EIO;
  }
  return URSULA_OK;
}

/* ------------------------------------------------------------ S3 */

static int cold_s3_key(struct cold *c, const char *name, char *key,
                       size_t cap) {
  int n = snprintf(key, cap, "%s%s", c->cfg->s3_prefix, name);
  return n > 0 && (size_t)n < cap ? 0 : -1;
}

struct cold_list_ctx {
  struct cold_req *r;
  size_t skip; /* length of --s3-prefix */
};

static int cold_s3_listed(void *arg, const char *key, uint64_t size) {
  struct cold_list_ctx *x = (struct cold_list_ctx *)arg;
  (void)size;
  if (strlen(key) <= x->skip) return 0;
  return buf_append(&x->r->data, key + x->skip, strlen(key) - x->skip + 1) ==
                 URSULA_OK
             ? 0
             : URSULA_ENOMEM;
}

static int cold_s3_do(struct cold *c, struct s3_client *cl, struct cold_req *r,
                      char *err) {
  char key[URSULA_PATH_LEN + COLD_NAME_MAX];
  struct s3_error e;
  int rc;
  memset(&e, 0, sizeof(e));
  if (cold_s3_key(c, r->name, key, sizeof(key)) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "object name too long");
    return URSULA_EINVAL;
  }
  switch (r->op) {
    case COLD_PUT:
      rc = s3_put(cl, key, r->data.ptr, r->data.len, &e);
      break;
    case COLD_GET:
      rc = s3_get(cl, key, 0, 0, &r->data, &e);
      break;
    case COLD_DELETE:
      rc = s3_delete(cl, key, &e);
      if (rc == URSULA_ENOTFOUND) rc = URSULA_OK;
      break;
    default: {
      struct cold_list_ctx x;
      x.r = r;
      x.skip = strlen(c->cfg->s3_prefix);
      rc = s3_list(cl, key, 0, cold_s3_listed, &x, &e);
      break;
    }
  }
  if (rc != URSULA_OK && rc != URSULA_ENOTFOUND)
    snprintf(err, URSULA_ERRMSG_LEN, "%.250s",
             e.line[0] ? e.line : ursula_strerror(rc));
  return rc;
}

/* ------------------------------------------------------------ the marker

   THE STORE'S MARKER.  One object, COLD_MARKER ("ursula-store"), beside
   the groups' folders, says whose objects the store holds, so that two
   servers never share one by mistake: each one's sweep would delete the
   other's chunks, which it does not name.  ASCII, each line ending in
   "\n", keys in this order (a reader ignores keys it does not know):

       ursula-store 1       the format
       cluster-id NAME      --cluster-id (a single node: its default too)
       groups N             --raft-group-count, decimal
       node ID              a single node only: 32 lowercase hex digits,
                            the id its --wal-dir keeps (server.c)

   The nodes of one cluster write identical bytes, so they may all create
   it at once (in a folder each through a temporary file of its own); a
   single node's id tells it from any other single node with the same
   settings.  cold_claim() decides:

       no marker   write ours, and read it back; unless the WAL names
                   chunks and its --wal-dir records a claim that
                   succeeded (so a marker was there: the store was
                   emptied, or this is the wrong prefix or folder): refuse
       ours        go on
       another's   refuse, saying whose it is

   A write is not conditional: two single nodes started at the same
   moment on one empty store can both find no marker, write theirs and
   read it back; the later one's wins, and the other is refused at its
   next start.

   Until a claim succeeds (the store unreachable at start), nothing is
   written to the store or deleted from it: cold_do() claims first before
   each PUT, DELETE and LIST (at most one try per COLD_CLAIM_RETRY_MS;
   the others fail at once meanwhile), and fails them while that does not
   succeed.  Reads (GET) go on.  A claim refused then is logged once, and
   the tier stays refused until the server restarts. */

#define COLD_CLAIM_RETRY_MS 5000

#define COLD_MARKER "ursula-store"

/* PLANTED BUG.  -DCOLD_PLANT=1 (default 0): every claim succeeds without
** a look at the store, as before markers (test/cold.sh then fails: another
** single node, and a node whose store lost its marker, start).  Never in
** a release build. */
#ifndef COLD_PLANT
#define COLD_PLANT 0
#endif

/* The marker's bytes for o. */
static int cold_mark_text(const struct cold_owner *o, struct buf *out) {
  int rc = buf_printf(out, "ursula-store 1\ncluster-id %s\ngroups %d\n",
                      o->cluster_id, o->groups);
  if (rc == URSULA_OK && o->node[0] != '\0')
    rc = buf_printf(out, "node %s\n", o->node);
  return rc;
}

/* Read a marker's text p[0..n) into o; URSULA_OK, or URSULA_ECORRUPT if
** it is not a marker of format 1 with a cluster-id and groups. */
static int cold_mark_parse(const char *p, size_t n, struct cold_owner *o) {
  const char *end = p + n, *nl;
  int first = 1, have_groups = 0;
  memset(o, 0, sizeof(*o));
  for (; p < end; p = nl + 1) {
    size_t len, k;
    char line[128];
    long v;
    char *stop;
    if ((nl = (const char *)memchr(p, '\n', (size_t)(end - p))) == NULL)
      return URSULA_ECORRUPT; /* every line ends in "\n" */
    len = (size_t)(nl - p);
    if (len >= sizeof(line)) return URSULA_ECORRUPT;
    memcpy(line, p, len);
    line[len] = '\0';
    if (first) {
      if (strcmp(line, "ursula-store 1") != 0) return URSULA_ECORRUPT;
      first = 0;
    } else if (strncmp(line, "cluster-id ", 11) == 0) {
      k = len - 11;
      if (k == 0 || k >= sizeof(o->cluster_id)) return URSULA_ECORRUPT;
      memcpy(o->cluster_id, line + 11, k + 1);
    } else if (strncmp(line, "groups ", 7) == 0) {
      errno = 0;
      v = strtol(line + 7, &stop, 10);
      if (errno != 0 || *stop != '\0' || stop == line + 7 || v < 1 ||
          v > 1000000)
        return URSULA_ECORRUPT;
      o->groups = (int)v;
      have_groups = 1;
    } else if (strncmp(line, "node ", 5) == 0) {
      if (len - 5 != 32) return URSULA_ECORRUPT;
      memcpy(o->node, line + 5, 33);
    }
  }
  return !first && o->cluster_id[0] != '\0' && have_groups ? URSULA_OK
                                                           : URSULA_ECORRUPT;
}

/* "cluster-id NAME, N groups" or "... , single node ID" into out. */
static void cold_mark_say(const struct cold_owner *o, char *out, size_t cap) {
  if (o->node[0] != '\0')
    snprintf(out, cap, "the single node %.32s (cluster-id %.64s, %d groups)",
             o->node, o->cluster_id, o->groups);
  else
    snprintf(out, cap, "cluster-id %.64s, %d groups", o->cluster_id,
             o->groups);
}

/* Where the store is, for messages: "s3://BUCKET/PREFIX" or the folder. */
static void cold_where(const struct cold *c, char *out, size_t cap) {
  if (c->use_s3)
    snprintf(out, cap, "s3://%.64s/%.100s", c->cfg->s3_bucket,
             c->cfg->s3_prefix);
  else
    snprintf(out, cap, "%.160s", c->cfg->cold_dir);
}

static int cold_exec(struct cold *c, struct s3_client **cl, struct cold_req *r,
                     char *err);

/* One claim of the store for c->owner (the table above), on the caller,
** through the S3 connection *cl (opened on first use).  URSULA_OK: the
** store is ours; URSULA_EINVAL: it is not (why, in err); another error:
** the store could not be reached (err says how). */
static int cold_claim_once(struct cold *c, struct s3_client **cl, char *err) {
  const struct cold_owner *me = &c->owner;
  struct cold_req r;
  struct cold_owner there;
  char where[180], mine[160], theirs[160];
  int rc, tries;
  if (COLD_PLANT == 1) return URSULA_OK;
  memset(&r, 0, sizeof(r));
  cold_where(c, where, sizeof(where));
  cold_mark_say(me, mine, sizeof(mine));
  for (tries = 0; tries < 2; tries++) { /* read; after our write, again */
    r.op = COLD_GET;
    snprintf(r.name, sizeof(r.name), "%s", COLD_MARKER);
    r.data.len = 0;
    rc = cold_exec(c, cl, &r, err);
    if (rc == URSULA_ENOTFOUND && tries == 0) {
      if (me->chunks > 0 && me->claimed_before) {
        snprintf(err, URSULA_ERRMSG_LEN,
                 "the cold tier %.180s has no marker (%s), but --wal-dir names "
                 "%llu chunks in it and records a claim of it: it was "
                 "emptied, or this is not its --s3-prefix/--cold-dir (if it "
                 "is, and its objects are lost for good, delete the line "
                 "\"claimed\" from --wal-dir's cold-store to start anyway; "
                 "reads of the lost bytes will fail)",
                 where, COLD_MARKER, (unsigned long long)me->chunks);
        rc = URSULA_EINVAL;
        break;
      }
      r.op = COLD_PUT;
      r.tmp_tag = (unsigned)getpid(); /* a temporary file of its own */
      r.data.len = 0;
      if ((rc = cold_mark_text(me, &r.data)) != URSULA_OK ||
          (rc = cold_exec(c, cl, &r, err)) != URSULA_OK)
        break;
      LOG_I("cold tier %s: marked as the store of %s", where, mine);
      continue;
    }
    if (rc == URSULA_ENOTFOUND) { /* written, then gone */
      snprintf(err, URSULA_ERRMSG_LEN, "the marker %s written to %.180s is gone",
               COLD_MARKER, where);
      rc = URSULA_EIO;
      break;
    }
    if (rc != URSULA_OK) break;
    if (cold_mark_parse(r.data.ptr, r.data.len, &there) != URSULA_OK) {
      snprintf(err, URSULA_ERRMSG_LEN,
               "the cold tier %.180s holds an object %s that is not an ursula "
               "store marker of format 1",
               where, COLD_MARKER);
      rc = URSULA_EINVAL;
    } else if (strcmp(there.cluster_id, me->cluster_id) != 0 ||
               there.groups != me->groups ||
               strcmp(there.node, me->node) != 0) {
      cold_mark_say(&there, theirs, sizeof(theirs));
      size_t k;
      snprintf(err, URSULA_ERRMSG_LEN,
               "the cold tier %.180s holds the objects of %.150s; this is "
               "%.150s: give each its own --s3-prefix or --cold-dir",
               where, theirs, mine);
      k = strlen(err);
      if (me->chunks > 0 && k < URSULA_ERRMSG_LEN)
        snprintf(err + k, URSULA_ERRMSG_LEN - k,
                 " (but this node's WAL names %llu chunks in a cold tier: "
                 "if it wrote them here, its id in --wal-dir's cold-store "
                 "must be the marker's)",
                 (unsigned long long)me->chunks);
      rc = URSULA_EINVAL;
    }
    break;
  }
  buf_free(&r.data);
  return rc;
}

URSULA_PRIVATE int cold_claim(struct cold *c, const struct cold_owner *me,
                              char *err) {
  struct s3_client *cl = NULL;
  struct s3_config quick = c->s3;
  int rc = URSULA_OK;
  pthread_mutex_lock(&c->claim_mu);
  c->owner = *me;
  quick.timeout_ms = 3000; /* at start: an unreachable store costs 3 s */
  quick.max_attempts = 1;
  if (c->use_s3) rc = s3_client_new(&cl, &quick, err);
  if (rc == URSULA_OK) rc = cold_claim_once(c, &cl, err);
  s3_client_free(cl);
  pthread_mutex_lock(&c->mu);
  c->claimed = rc == URSULA_OK;
  c->refused = rc == URSULA_EINVAL;
  /* unreachable: an outage from the start (the caller logs it), whose
  ** end cold_note() logs */
  c->down = rc != URSULA_OK && rc != URSULA_EINVAL;
  pthread_mutex_unlock(&c->mu);
  pthread_mutex_unlock(&c->claim_mu);
  return rc;
}

/* Before a PUT, DELETE or LIST: URSULA_OK once the store is ours (claimed
** now if it was not yet: cold_claim() could not reach it), else an error
** with the reason in err.  One try per COLD_CLAIM_RETRY_MS: meanwhile the
** others fail at once instead of queueing behind it. */
static int cold_claimed(struct cold *c, struct s3_client **cl, char *err) {
  uint64_t now = os_now_ms();
  int rc, refused, recent;
  pthread_mutex_lock(&c->mu);
  rc = c->claimed ? URSULA_OK : URSULA_EAGAIN;
  refused = c->refused;
  recent = c->claim_tried_ms != 0 &&
           now - c->claim_tried_ms < COLD_CLAIM_RETRY_MS;
  if (rc != URSULA_OK && !refused && !recent) c->claim_tried_ms = now;
  pthread_mutex_unlock(&c->mu);
  if (rc == URSULA_OK) return rc;
  if (refused) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "the cold tier was refused (logged when it was): nothing moves "
             "to it until the server restarts");
    return URSULA_EINVAL;
  }
  if (recent) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "the cold tier's marker is not checked yet (it was tried less "
             "than %d s ago): nothing is written there until it is",
             COLD_CLAIM_RETRY_MS / 1000);
    return URSULA_EAGAIN;
  }
  pthread_mutex_lock(&c->claim_mu);
  rc = cold_claim_once(c, cl, err);
  pthread_mutex_lock(&c->mu);
  c->claimed = rc == URSULA_OK;
  c->refused = rc == URSULA_EINVAL;
  pthread_mutex_unlock(&c->mu);
  pthread_mutex_unlock(&c->claim_mu);
  if (rc == URSULA_EINVAL)
    LOG_E("cold tier refused: %s; nothing moves to it or is deleted from it "
          "until the server restarts",
          err);
  else if (rc == URSULA_OK)
    LOG_I("cold tier: its marker checked: the store is this node's");
  return rc;
}

/* ------------------------------------------------------------ threads */

/* Log an outage once when it starts and once when it ends. */
static void cold_note(struct cold *c, int ok, const char *what) {
  int was;
  pthread_mutex_lock(&c->mu);
  was = c->down;
  c->down = !ok;
  pthread_mutex_unlock(&c->mu);
  if (!ok && !was)
    LOG_E(
        "cold storage unavailable: %s; appends go on into the WAL, moves "
        "are retried, reads of moved data answer 503",
        what);
  else if (ok && was)
    LOG_W("cold storage reachable again; moving data resumes");
  else if (!ok)
    LOG_D("cold storage still unavailable: %s", what);
  (void)what;
}

/* FOR TESTS.  -DCOLD_GET_DELAY_MS=n (default 0) holds every fetch n ms
** before it reads the store, so that a test can remove a stream while a
** read's fetch of its chunk is under way (test/cold_race.sh). */
#ifndef COLD_GET_DELAY_MS
#define COLD_GET_DELAY_MS 0
#endif

/* Carry out r on the store, with the S3 connection *cl (opened on first
** use): r->op's result (URSULA_ENOTFOUND: a GET of no such object). */
static int cold_exec(struct cold *c, struct s3_client **cl, struct cold_req *r,
                     char *err) {
  int rc;
  if (!c->use_s3)
    return r->op == COLD_PUT      ? cold_dir_put(c, r, err)
           : r->op == COLD_GET    ? cold_dir_get(c, r, err)
           : r->op == COLD_DELETE ? cold_dir_delete(c, r, err)
                                  : cold_dir_list(c, r, err);
  if (*cl == NULL && (rc = s3_client_new(cl, &c->s3, err)) != URSULA_OK) {
    *cl = NULL;
    return rc;
  }
  return cold_s3_do(c, *cl, r, err);
}

/* Carry out r (on a cold thread, or on the submitter without threads),
** with the S3 connection *cl (opened on first use), and post it back.
** Nothing but a GET reaches a store that is not (yet) claimed. */
static void cold_do(struct cold *c, struct s3_client **cl,
                    struct cold_req *r) {
  char err[URSULA_ERRMSG_LEN];
  int ok, claimed;
  err[0] = '\0';
  if (COLD_GET_DELAY_MS > 0 && r->op == COLD_GET)
    os_sleep_ms(COLD_GET_DELAY_MS);
  if (r->op == COLD_GET || (r->rc = cold_claimed(c, cl, err)) == URSULA_OK)
    r->rc = cold_exec(c, cl, r, err);
  if (r->rc != URSULA_OK && r->rc != URSULA_ENOTFOUND && err[0] == '\0')
    snprintf(err, sizeof(err), "%s", ursula_strerror(r->rc));
  ok = r->rc == URSULA_OK || r->rc == URSULA_ENOTFOUND;
  pthread_mutex_lock(&c->mu);
  claimed = c->claimed;
  pthread_mutex_unlock(&c->mu);
  if (!ok || claimed) /* a read alone does not end an unclaimed outage */
    cold_note(c, ok, err);
  loop_post(r->reply, &r->msg);
}

#if URSULA_ENABLE_THREADS
static void *cold_thread_main(void *arg) {
  struct cold *c = (struct cold *)arg;
  struct s3_client *cl = NULL;
  for (;;) {
    struct cold_req *r;
    pthread_mutex_lock(&c->mu);
    while (c->head == NULL && !c->stopping) pthread_cond_wait(&c->cv, &c->mu);
    if (c->stopping) {
      pthread_mutex_unlock(&c->mu);
      break;
    }
    r = c->head;
    c->head = r->next;
    if (c->head == NULL) c->tail = NULL;
    pthread_mutex_unlock(&c->mu);
    cold_do(c, &cl, r);
  }
  s3_client_free(cl);
  return NULL;
}
#endif

/* Queue r for the threads; without threads, carry it out now. */
URSULA_PRIVATE void cold_submit(struct cold *c, struct cold_req *r) {
  r->next = NULL;
  if (c->n_threads == 0) {
    cold_do(c, &c->inline_cl, r);
    return;
  }
  pthread_mutex_lock(&c->mu);
  if (c->tail != NULL)
    c->tail->next = r;
  else
    c->head = r;
  c->tail = r;
  pthread_cond_signal(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

URSULA_PRIVATE int cold_open(struct cold **out, const struct ursula_config *cfg,
                             struct env *env, char *err) {
  struct cold *c = (struct cold *)URSULA_MALLOC(sizeof(*c));
  int i, rc;
  if (c == NULL) return URSULA_ENOMEM;
  memset(c, 0, sizeof(*c));
  c->cfg = cfg;
  c->fs = (env != NULL ? env : env_real())->fs;
  c->use_s3 = cfg->s3_endpoint[0] != '\0';
  if (c->use_s3) {
    if (strncmp(cfg->s3_endpoint, "https://", 8) == 0) {
      const char *ca = cfg->s3_ca_file[0]
                           ? cfg->s3_ca_file
                           : "/etc/ssl/certs/ca-certificates.crt";
      if ((rc = tls_anchors_load(&c->anchors, ca, err)) != URSULA_OK) {
        URSULA_FREE(c);
        return rc;
      }
    }
    c->s3.endpoint = cfg->s3_endpoint;
    c->s3.bucket = cfg->s3_bucket;
    c->s3.region = cfg->s3_region;
    c->s3.access_key = cfg->s3_access_key;
    c->s3.secret_key = cfg->s3_secret_key;
    c->s3.session_token = cfg->s3_session_token;
    c->s3.anchors = c->anchors;
    c->s3.virtual_host = 0;
    c->s3.timeout_ms = 10000;
    c->s3.max_attempts = 3;
    c->s3.env = env;
  } else if (cold_mkdir(c, cfg->cold_dir) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "--cold-dir %.200s: %s", cfg->cold_dir,
             strerror(errno));
    URSULA_FREE(c);
    return URSULA_EIO;
  }
  pthread_mutex_init(&c->mu, NULL);
  pthread_mutex_init(&c->claim_mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  for (i = 0; i < COLD_THREADS; i++) {
#if URSULA_ENABLE_THREADS
    if (pthread_create(&c->threads[i], NULL, cold_thread_main, c) != 0) break;
#endif
    c->n_threads++;
  }
  if (COLD_THREADS > 0 && c->n_threads == 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "cold tier: cannot start a thread");
    cold_close(c);
    return URSULA_ESYS;
  }
  *out = c;
  return URSULA_OK;
}

URSULA_PRIVATE void cold_close(struct cold *c) {
  int i;
  struct cold_req *r;
  if (c == NULL) return;
  pthread_mutex_lock(&c->mu);
  c->stopping = 1;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
  for (i = 0; i < c->n_threads; i++) pthread_join(c->threads[i], NULL);
  while ((r = c->head) != NULL) { /* never started: nobody waits for them */
    c->head = r->next;
    cold_req_free(r);
  }
  pthread_cond_destroy(&c->cv);
  pthread_mutex_destroy(&c->claim_mu);
  pthread_mutex_destroy(&c->mu);
  s3_client_free(c->inline_cl);
  tls_anchors_free(c->anchors);
  URSULA_FREE(c);
}

/* ------------------------------------------------------------ the cache */

struct cold_entry {
  struct cold_entry *prev, *next; /* most recently used first */
  struct buf obj;                 /* header + data */
  char name[COLD_NAME_MAX];
};

struct cold_cache {
  struct cold_entry *head, *tail;
  uint64_t bytes, max_bytes;
};

URSULA_PRIVATE struct cold_cache *cold_cache_new(uint64_t max_bytes) {
  struct cold_cache *k = (struct cold_cache *)URSULA_MALLOC(sizeof(*k));
  if (k == NULL) return NULL;
  memset(k, 0, sizeof(*k));
  k->max_bytes = max_bytes;
  return k;
}

static void cold_cache_unlink(struct cold_cache *k, struct cold_entry *e) {
  if (e->prev != NULL)
    e->prev->next = e->next;
  else
    k->head = e->next;
  if (e->next != NULL)
    e->next->prev = e->prev;
  else
    k->tail = e->prev;
}

static void cold_cache_front(struct cold_cache *k, struct cold_entry *e) {
  e->prev = NULL;
  e->next = k->head;
  if (k->head != NULL) k->head->prev = e;
  k->head = e;
  if (k->tail == NULL) k->tail = e;
}

static void cold_cache_drop(struct cold_cache *k, struct cold_entry *e) {
  cold_cache_unlink(k, e);
  k->bytes -= e->obj.len;
  buf_free(&e->obj);
  URSULA_FREE(e);
}

URSULA_PRIVATE void cold_cache_free(struct cold_cache *k) {
  if (k == NULL) return;
  while (k->head != NULL) cold_cache_drop(k, k->head);
  URSULA_FREE(k);
}

URSULA_PRIVATE const char *cold_cache_get(struct cold_cache *k,
                                          const char *name) {
  struct cold_entry *e;
  for (e = k->head; e != NULL; e = e->next) {
    if (strcmp(e->name, name) != 0) continue;
    if (e != k->head) {
      cold_cache_unlink(k, e);
      cold_cache_front(k, e);
    }
    return e->obj.ptr + COLD_HEADER;
  }
  return NULL;
}

URSULA_PRIVATE void cold_cache_put(struct cold_cache *k, const char *name,
                                   struct buf *obj) {
  struct cold_entry *e;
  if (cold_cache_get(k, name) != NULL) {
    buf_free(obj);
    return;
  }
  e = (struct cold_entry *)URSULA_MALLOC(sizeof(*e));
  if (e == NULL) {
    buf_free(obj);
    return;
  }
  e->obj = *obj;
  memset(obj, 0, sizeof(*obj));
  snprintf(e->name, sizeof(e->name), "%s", name);
  cold_cache_front(k, e);
  k->bytes += e->obj.len;
  /* the newest entry stays even when it alone is over the budget */
  while (k->bytes > k->max_bytes && k->tail != e) cold_cache_drop(k, k->tail);
}

#undef COLD_THREADS
/**** End src/cold.c ****/
/**** Begin src/tier.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/tier.c"
#endif
/*
** tier.c -- the cold-tier policy of a group: what moves to chunk objects
** and when, the COLD commands that name them, reads parked on chunk
** fetches, the start-up sweep of unnamed objects, back-off.
**
** The mechanism -- the threads that talk to S3 or a folder, the chunk
** format, the per-core cache -- is cold.c's.  This part decides, for one
** group, what to ask of it.  All of it runs on the group's owner thread.
**
** MOVING DATA.  Once a second (tier_tick) the owner looks for streams
** with a chunk's worth of bytes past their cold end, or with bytes
** waiting longer than --cold-flush-age-ms, and moves them:
**
**     read the run from memory / the WAL -> a chunk object -> cold threads
**     -> PUT -> back on the owner: propose COLD(path, incarnation, run,
**     name) -> committed and applied: the stream reads the run from the
**     chunk, memory drops it, the next snapshot lets the WAL drop it
**
** One upload per stream at a time (runs must land in order), a few per
** group.  A failed upload backs the group off (1 s doubling to 30 s).
** Only a stream's own bytes move: runs start at its cold end, which for a
** fork starts at its fork point (stream.c); the bytes a fork inherits are
** its source's, moved (or not) by the source's group, and a read of them
** goes there (group.c).
**
** READS.  A read that needs a chunk not in the core's cache (stream_read
** returns URSULA_EAGAIN through tier_read_chunk) parks its job on a fetch
** of that chunk (tier_fetch); when the chunk arrives it is checked and
** cached, and each job waiting for it runs again from the start through
** its own handler (msg.on_msg), with fetch_rc saying whether the chunk
** came.  A chunk missing may belong to a stream removed meanwhile: the
** read runs once more after a barrier before it is taken for a loss
** (group.c, READS RACING A REMOVAL).
**
** GARBAGE.  The objects of removed streams are deleted once the removal
** is committed (tier_delete_objects, an effect of the apply).  Before
** anything moves (and again every TIER_SWEEP_MS), the group lists its
** objects and deletes those no stream names (left by a crash between an upload and its COLD command,
** by a leader that lost its term during an upload, or by deletions that
** were replayed or never carried out).
**
** WHO ACTS (issue 14: the cold tier in a cluster).  All nodes share one
** store; every node applies the COLD commands and reads chunks from it,
** but only a group's leader moves data and sweeps, and only once it has
** applied an entry of its own term T (lead_term: a single node after its
** self-election at start).  The rules that make this safe, with Raft's
** guarantees (paper 5.2-5.4):
**
**   1. An object is named (object name, cold.c) after the term T of the
**      leader that uploads it, and its COLD command is proposed only if
**      the node still leads in T when the upload ends: so an entry of
**      term T only ever names objects of term T.
**   2. The sweep of term T deletes an unnamed object only if its name's
**      term is below T.  Once the leader of T has applied an entry of T,
**      every entry of an earlier term that will ever be committed is
**      committed and applied here (a log's terms never decrease, and
**      every later leader holds this entry): no object of a term below T
**      can be named later.  Objects of T (this leader's uploads in
**      flight) and of later terms (a newer leader's) are left alone.
**
** So a sweep -- even a deposed leader's, even one whose node restarts
** with a stale log, which never leads before it catches up -- cannot
** delete an object that a leader has uploaded and is about to name.
** A node that stops leading lets its uploads end unnamed; the next
** leader's sweep deletes them.
**
** HOW IT REACHES THE GROUP.  This part is listed before group.c, which
** calls it; it never calls group.c.  struct group stays private to
** group.c: the group embeds a struct tier and, before tier_attach(),
** hands it the few things of its own the tier works on (its id, clocks,
** state machine, WAL) and one function pointer, group_propose(), for the
** COLD commands.  The cold threads' answers find their tier through the
** request's owner pointer; parked jobs run again through their own
** handler, and are freed, if the server stops first, through their
** on_drop.
*/


/* A chunk being read back, and the jobs waiting for it (chained through
** their msg.next, which is free while a job is parked). */
struct tier_fetch {
  struct tier_fetch *next;
  struct job *waiting;
  char name[COLD_NAME_MAX];
};

#define TIER_MAX_UPLOADS 4 /* uploads in flight per group */
#define TIER_SWEEP_MS 600000 /* a leader sweeps again after this long */

/* PLANTED BUGS.  -DTIER_PLANT=n (default 0), never in a release build:
**   1  the sweep deletes unnamed objects of any term, its own and later
**      ones included (rule 2 broken): test/cold.sh's object of a later
**      term goes, and make test-cold-plants requires that it fails; the
**      unit case tier_terms fails too;
**   2  an upload's chunk is named whatever the node's term is when it
**      ends (rule 1 broken): the unit case tier_terms fails. */
#ifndef TIER_PLANT
#define TIER_PLANT 0
#endif
#define TIER_BUG(n) (TIER_PLANT == (n))

static uint64_t tier_wall(const struct tier *t) {
  return t->env->wall_ms(t->env);
}

static void tier_on_deleted(struct loop *l, struct loop_msg *m) {
  struct cold_req *q = (struct cold_req *)(void *)m;
  struct tier *t = (struct tier *)q->owner;
  (void)l; /* a failure is logged by the tier; a later sweep retries */
  t->n_deletes--;
  cold_req_free(q);
}

URSULA_PRIVATE void tier_delete_objects(struct core *c, struct tier *t,
                                        const struct buf *names) {
  size_t off = 0;
  while (off < names->len) {
    const char *name = names->ptr + off;
    size_t len = strlen(name);
    struct cold_req *q;
    off += len + 1;
    if (len == 0 || len >= COLD_NAME_MAX) continue;
    if ((q = cold_req_new(COLD_DELETE, c->loop, tier_on_deleted)) == NULL)
      continue; /* a later sweep deletes it */
    memcpy(q->name, name, len + 1);
    q->group = t->id;
    q->owner = t;
    t->n_deletes++;
    cold_submit(t->cold, q);
  }
}

/* The term in which t may move data now (its sweep ran in it), or 0. */
static uint64_t tier_term(const struct tier *t) {
  uint64_t term = t->lead_term(t->group);
  return term != 0 && term == t->swept ? term : 0;
}

/* After a failure: no new cold-tier work for a while (1 s, doubling up to
** 30 s while failures go on). */
static void tier_backoff(struct tier *t) {
  t->backoff_ms = t->backoff_ms ? t->backoff_ms * 2 : 1000;
  if (t->backoff_ms > 30000) t->backoff_ms = 30000;
  t->retry_ms = tier_wall(t) + t->backoff_ms;
}

URSULA_PRIVATE int tier_read_chunk(struct tier *t, const struct stream *s,
                                   const struct stream_chunk *ch,
                                   const char **p) {
  if (t->cache != NULL && (*p = cold_cache_get(t->cache, ch->name)) != NULL)
    return URSULA_OK;
  t->want = ch;
  t->want_inc = s->incarnation;
  return t->cold != NULL ? URSULA_EAGAIN : URSULA_EIO;
}

URSULA_PRIVATE int tier_fetch_status(int rc, const char **reason) {
  if (rc == URSULA_ENOTFOUND) {
    *reason = "a chunk of this stream is missing from cold storage";
    return 500;
  }
  if (rc == URSULA_ECORRUPT) {
    *reason = "a chunk of this stream read from cold storage is damaged";
    return 500;
  }
  *reason =
      "cold storage is unavailable; the data is kept, try again "
      "later";
  return 503;
}

/* A chunk fetched for parked jobs: check it, cache it, run them again. */
static void tier_on_fetched(struct loop *l, struct loop_msg *m) {
  struct cold_req *q = (struct cold_req *)(void *)m;
  struct tier *t = (struct tier *)q->owner;
  struct tier_fetch **pp = &t->fetches, *f;
  int rc = q->rc;
  while (*pp != NULL && strcmp((*pp)->name, q->name) != 0) pp = &(*pp)->next;
  f = *pp;
  if (f != NULL) *pp = f->next;
  if (rc == URSULA_OK && cold_chunk_check(&q->data, q->incarnation, q->start,
                                          q->end) != URSULA_OK) {
    LOG_E("group %d: chunk %s read from the cold tier is damaged", t->id,
          q->name);
    rc = URSULA_ECORRUPT;
  } else if (rc == URSULA_ENOTFOUND) {
    LOG_W(
        "group %d: chunk %s is missing from the cold tier (its stream "
        "removed, and not yet here?): the reads that wanted it look again "
        "after a read barrier",
        t->id, q->name);
  }
  if (rc == URSULA_OK) cold_cache_put(t->cache, q->name, &q->data);
  while (f != NULL && f->waiting != NULL) { /* through their handlers */
    struct job *j = f->waiting;
    f->waiting = (struct job *)(void *)j->msg.next;
    j->msg.next = NULL;
    j->fetch_rc = rc;
    j->msg.on_msg(l, &j->msg);
  }
  URSULA_FREE(f);
  cold_req_free(q);
}

URSULA_PRIVATE int tier_fetch(struct core *c, struct tier *t, struct job *j) {
  const struct stream_chunk *ch = t->want;
  struct tier_fetch *f = t->fetches;
  while (f != NULL && strcmp(f->name, ch->name) != 0) f = f->next;
  if (f == NULL) {
    struct cold_req *q = cold_req_new(COLD_GET, c->loop, tier_on_fetched);
    f = (struct tier_fetch *)URSULA_MALLOC(sizeof(*f));
    if (q == NULL || f == NULL) {
      cold_req_free(q);
      URSULA_FREE(f);
      return URSULA_ENOMEM;
    }
    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", ch->name);
    snprintf(q->name, sizeof(q->name), "%s", ch->name);
    q->group = t->id;
    q->owner = t;
    q->incarnation = t->want_inc;
    q->start = ch->start;
    q->end = ch->end;
    f->next = t->fetches;
    t->fetches = f;
    cold_submit(t->cold, q);
  }
  j->msg.next = f->waiting != NULL ? &f->waiting->msg : NULL;
  f->waiting = j;
  return URSULA_OK;
}

static void tier_flush_stream(struct core *c, struct tier *t, struct stream *s,
                              uint64_t now);

/* A COLD command was committed (or refused). */
static void tier_cold_done(struct core *c, struct group *g,
                           const struct stream_result *r, void *arg) {
  struct cold_req *q = (struct cold_req *)arg;
  struct tier *t = (struct tier *)q->owner;
  struct str path;
  struct stream *s;
  uint64_t now = tier_wall(t);
  (void)g;
  path.ptr = q->path.ptr;
  path.len = q->path.len;
  s = stream_find(t->sm, path);
  if (s != NULL && s->incarnation == q->incarnation) {
    s->local.flushing = 0;
    s->local.unflushed_since = s->tail > s->cold_end ? now : 0;
    if (r->status == 204) {
      t->moved += q->end - q->start;
      tier_flush_stream(c, t, s, now); /* a backlog */
    }
  }
  /* refused: the object stays unnamed; the same run is uploaded again
  ** under the same name, and deleting it here could race that upload */
  cold_req_free(q);
}

/* An upload finished: name the chunk in the log. */
static void tier_on_uploaded(struct loop *l, struct loop_msg *m) {
  struct cold_req *q = (struct cold_req *)(void *)m;
  struct core *c = (struct core *)loop_get_user(l);
  struct tier *t = (struct tier *)q->owner;
  struct cmd cmd;
  t->n_uploads--;
  if (q->rc != URSULA_OK || (tier_term(t) != q->term && !TIER_BUG(2))) {
    struct str path;
    struct stream *s;
    path.ptr = q->path.ptr;
    path.len = q->path.len;
    s = stream_find(t->sm, path);
    if (s != NULL && s->incarnation == q->incarnation) s->local.flushing = 0;
    if (q->rc != URSULA_OK)
      tier_backoff(t);
    else /* rule 1: named in no other term; a later sweep deletes it */
      LOG_D("group %d: chunk %s uploaded, but this node no longer leads in "
            "term %llu: left unnamed",
            t->id, q->name, (unsigned long long)q->term);
    cold_req_free(q);
    return;
  }
  t->backoff_ms = 0;
  memset(&cmd, 0, sizeof(cmd));
  cmd.type = CMD_COLD;
  cmd.time_ms = tier_wall(t);
  cmd.path.ptr = q->path.ptr;
  cmd.path.len = q->path.len;
  cmd.incarnation = q->incarnation;
  cmd.cold_start = q->start;
  cmd.cold_end = q->end;
  cmd.object = util_str(q->name);
  t->propose(c, t->group, &cmd, tier_cold_done, q);
}

/* Upload the next run of s: whole appends from its cold end (at or past
** a fork's fork point: its own bytes only), about a chunk's worth. */
static void tier_upload(struct core *c, struct tier *t, struct stream *s,
                        uint64_t term) {
  uint64_t start = s->cold_end, end = start;
  size_t u = s->cold_units;
  struct cold_req *q;
  int rc;
  while (u < s->n_bounds && end - start < t->chunk_bytes) end = s->bounds[u++];
  if (end == start) return;
  if ((q = cold_req_new(COLD_PUT, c->loop, tier_on_uploaded)) == NULL) return;
  rc = buf_reserve(&q->data, COLD_HEADER + (size_t)(end - start));
  if (rc == URSULA_OK) rc = buf_append(&q->path, s->path, s->path_len);
  if (rc == URSULA_OK) {
    q->data.len = COLD_HEADER;
    rc = stream_read(t->sm, s, start, end, &q->data);
  }
  if (rc != URSULA_OK) {
    LOG_W("group %d: cannot read %.*s for the cold tier: %s", t->id,
          (int)s->path_len, s->path, ursula_strerror(rc));
    cold_req_free(q);
    return;
  }
  cold_chunk_seal(&q->data, s->incarnation, start);
  cold_chunk_name(q->name, t->id, s->incarnation, start, end, term);
  q->term = term;
  q->group = t->id;
  q->owner = t;
  q->incarnation = s->incarnation;
  q->start = start;
  q->end = end;
  s->local.flushing = 1;
  t->n_uploads++;
  cold_submit(t->cold, q);
}

/* Move s's next run if it is a chunk's worth or has waited long enough
** (only as the leader of a swept term). */
static void tier_flush_stream(struct core *c, struct tier *t, struct stream *s,
                              uint64_t now) {
  uint64_t term;
  if (s->local.flushing || s->soft_deleted || s->tail == s->cold_end ||
      t->n_uploads >= TIER_MAX_UPLOADS || now < t->retry_ms ||
      wal_failed(t->wal) || (term = tier_term(t)) == 0)
    return;
  if (s->local.unflushed_since == 0) s->local.unflushed_since = now;
  if (s->tail - s->cold_end >= t->chunk_bytes ||
      (t->flush_age_ms > 0 &&
       now - s->local.unflushed_since >= t->flush_age_ms))
    tier_upload(c, t, s, term);
}

static int tier_name_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The sweep's LIST came back: delete what no stream names and a term
** below the sweep's names (rule 2). */
static void tier_on_listed(struct loop *l, struct loop_msg *m) {
  struct cold_req *q = (struct cold_req *)(void *)m;
  struct core *c = (struct core *)loop_get_user(l);
  struct tier *t = (struct tier *)q->owner;
  const struct stream_state *sm = t->sm;
  const char **names = NULL;
  unsigned char *named = NULL;
  struct buf garbage;
  size_t n = 0, i, off, k;
  t->listing = 0;
  memset(&garbage, 0, sizeof(garbage));
  if (q->rc != URSULA_OK) {
    tier_backoff(t);
    cold_req_free(q);
    return;
  }
  for (off = 0; off < q->data.len; off += strlen(q->data.ptr + off) + 1) n++;
  names = (const char **)URSULA_MALLOC((n + 1) * sizeof(*names));
  named = (unsigned char *)URSULA_MALLOC(n + 1);
  if (names == NULL || named == NULL) {
    tier_backoff(t);
    goto done;
  }
  for (i = 0, off = 0; i < n; i++, off += strlen(q->data.ptr + off) + 1)
    names[i] = q->data.ptr + off;
  qsort(names, n, sizeof(*names), tier_name_cmp);
  memset(named, 0, n + 1);
  for (k = 0; k < sm->cap; k++) {
    const struct stream *s;
    for (s = sm->slots[k]; s != NULL; s = s->hnext) {
      for (i = 0; i < s->n_chunks; i++) {
        const char *key = s->chunks[i].name;
        const char **hit = (const char **)bsearch(
            &key, names, n, sizeof(*names), tier_name_cmp);
        if (hit != NULL) named[hit - names] = 1;
      }
    }
  }
  for (i = 0; i < n; i++)
    if (!named[i] && (cold_chunk_term(names[i]) < q->term || TIER_BUG(1)))
      buf_append(&garbage, names[i], strlen(names[i]) + 1);
  if (garbage.len > 0) {
    LOG_I(
        "group %d: cold tier sweep in term %llu: %lu objects, deleting "
        "those no stream names from earlier terms",
        t->id, (unsigned long long)q->term, (unsigned long)n);
    tier_delete_objects(c, t, &garbage);
  }
  t->swept = q->term;
  t->backoff_ms = 0;
done:
  URSULA_FREE(names);
  URSULA_FREE(named);
  buf_free(&garbage);
  cold_req_free(q);
}

/* List the group's objects for a sweep in term (tier_on_listed). */
static void tier_sweep(struct core *c, struct tier *t, uint64_t term) {
  struct cold_req *q;
  if ((q = cold_req_new(COLD_LIST, c->loop, tier_on_listed)) == NULL) return;
  snprintf(q->name, sizeof(q->name), "g%05d/", t->id);
  q->term = term;
  q->group = t->id;
  q->owner = t;
  t->listing = 1;
  t->swept_ms = tier_wall(t);
  cold_submit(t->cold, q);
}

/* Once a second on the group's owner: a leader sweeps first in each
** term, and again every TIER_SWEEP_MS (garbage left meanwhile: a
** deposed leader's late upload, a failed delete), and moves data. */
URSULA_PRIVATE void tier_tick(struct core *c, struct tier *t) {
  uint64_t now, term;
  size_t k;
  if (t->cold == NULL) return; /* no cold tier, or not attached yet */
  now = tier_wall(t);
  if (now < t->retry_ms) return;
  term = t->lead_term(t->group);
  if (term == 0) return; /* a follower: nothing to move or sweep */
  if (t->swept != term) { /* first the sweep of this term */
    if (!t->listing) tier_sweep(c, t, term);
    return;
  }
  if (!t->listing && now - t->swept_ms >= TIER_SWEEP_MS)
    tier_sweep(c, t, term); /* (moves go on meanwhile) */
  for (k = 0; k < t->sm->cap && t->n_uploads < TIER_MAX_UPLOADS; k++) {
    struct stream *s;
    for (s = t->sm->slots[k]; s != NULL; s = s->hnext)
      tier_flush_stream(c, t, s, now);
  }
}

URSULA_PRIVATE void tier_attach(struct tier *t, struct cold *cold,
                                struct cold_cache *cache, uint64_t flush_age_ms,
                                uint64_t hot_max) {
  t->cold = cold;
  t->cache = cache;
  t->flush_age_ms = flush_age_ms;
  t->chunk_bytes = hot_max / 4;
  if (t->chunk_bytes < 4096) t->chunk_bytes = 4096;
  if (t->chunk_bytes > 4194304) t->chunk_bytes = 4194304;
}

URSULA_PRIVATE void tier_free(struct tier *t) {
  while (t->fetches != NULL) { /* stopped while chunks were on their way */
    struct tier_fetch *f = t->fetches;
    t->fetches = f->next;
    while (f->waiting != NULL) {
      struct loop_msg *m = &f->waiting->msg;
      f->waiting = (struct job *)(void *)m->next;
      if (m->on_drop != NULL)
        m->on_drop(m); /* never delivered: as loop_close() drops it */
      else
        URSULA_FREE(m);
    }
    URSULA_FREE(f);
  }
}
/**** End src/tier.c ****/
/**** Begin src/group.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/group.c"
#endif
/*
** group.c -- a group: its command log and its state machine, owned by one
** core.
**
** Every stream hashes to one group; each group is owned by one core, and
** only that core's thread touches the group.  A request reaches the owner
** as a job (struct job).  For a change, the owner builds a command,
** proposes it to the group's log, and once the command is committed it is
** applied to the state machine (stream.c) and the job goes back to the
** core that holds the connection, carrying the result.
**
** THE LOG INTERFACE.  group_propose() is the one way state changes:
**
**     propose(cmd) -> encode -> the Raft core (raft.c) gives it (term,
**       index) -> framed into the fill batch
**     ... end of the loop turn: group_drive() ...
**       -> persist the batch (wal_write, then a sync on another thread
**          while the core goes on) -> group_synced(): the core is told
**          what is durable, and says what is committed (THE RAFT DRIVER)
**       -> apply the committed entries in order (group_apply_entry, the
**          one apply path, also replay's) -> effects
**       -> each proposal answered by (term, index): its entry's result if
**          the entry committed at its index is its own, else a 503
**
** Commands are applied only once committed, in log order, so the state a
** reader sees never holds anything that could still be lost.  Whether a
** command succeeds (a producer's sequence, a closed stream, ...) is
** decided by the apply, which is deterministic, so a command that fails
** is logged too and fails the same way on every replay.  The state
** machine only ever sees the decoded log bytes, never the proposer's
** structs, so what is applied is exactly what a replay applies.
**
** GROUP COMMIT.  Proposals only buffer.  At the end of each loop turn the
** core starts a commit of every group that has proposals (server.c): one
** write of the group's WAL for everything proposed, then one sync on a
** syncer thread while the core goes on serving; when the sync is back,
** the applies and replies.  What a group's clients propose during a sync
** forms its next batch (pipelining: one batch syncing, one filling).
** Without --wal-dir the log is memory and the commit is immediate, but
** the path is the same.
**
** EFFECTS of a committed command, carried out by the owner:
**   - wake live readers: one `struct notify` per core that has readers of
**     the stream (not one per reader), carrying the appended bytes;
**   - a release (struct group_release) to the group of each fork source
**     whose fork went away: it may be on another core, so it travels as a
**     message, and its owner proposes FORK_RELEASE there (fork.c has the
**     fork protocol; group.c only carries out these effects).
**
** Reads are served from the owner's state directly (no log entry); a
** read of what a fork inherited hops to its source's owner and back
** (READS OF A FORK, below).
**
** JOBS.  group_dispatch() sends a job to its stream's owner, where
** group_run_job() proposes its command or serves its read.  A job of
** another protocol (a fork PUT, fork.c) carries its own handler in
** msg.on_msg and uses the functions below to route, propose and answer;
** a job parked on a cold-tier fetch runs again through that handler.
**
** PLANTED BUG.  -DGROUP_PLANT=1 (default 0) compiles in one bug, to prove
** that the fault harness (test/fault/, make test-fault-plants) catches
** it: a leader applies, and so answers, its entries once they are durable
** in its own log, without waiting for the commit index to reach them
** (before a majority holds them; Raft paper 5.3: an entry is applied,
** and its client answered, only once committed).  Its followers still
** apply only what is committed.  A leader cut off from the others and
** then killed takes such acknowledged appends with it
** (group_apply_committed).
**
** THE COLD TIER, when there is one, is tier.c's policy: the group embeds
** a struct tier, hands it what it works on (tier_attach), and calls it
** once a second (tier_tick), when a read needs a chunk that is not in
** memory (tier_fetch), and when committed commands leave objects that no
** stream names (tier_delete_objects).
*/


/* PLANTED BUGS.  -DGROUP_PLANT=n (default 0) compiles in one bug, to
** prove the tests catch it:
**    1  a leader answers writes before they commit (the PLANTED BUG
**       above)                          test/fault/, make test-fault-plants
**    2  an installed snapshot image is not loaded: the follower goes on
**       from its old state machine     test/catchup.sh, test-catchup-plants
**    3  --lost-log is ignored: an empty log votes at once     (the same)
**    4  the status endpoint reports a group this node follows as led by
**       this node (the wrong leader)    test/cluster.sh, test-status-plants
**    5  every node moves data to the cold tier and sweeps it, leader or
**       not (with TIER_PLANT=1 too: the single node's tier run as it is
**       on each node of a cluster; a node alone on a stale log deletes
**       objects that entries it lacks name)
**                          test/cluster_cold.sh, make test-cold-plants
**    6  a read whose chunk is missing is answered 500 at once, without
**       a second run after a barrier (READS RACING A REMOVAL)
**                          test/cold_race.sh, make test-cold-plants */
#ifndef GROUP_PLANT
#define GROUP_PLANT 0
#endif
#define GROUP_BUG(n) (GROUP_PLANT == (n))

/* An entry of a batch: its payload is log[off, off+len) (with a WAL, the
** record header sits just before it), at (term, index).  type is WAL_CMD
** or WAL_NOOP.  A proposal's entry has a continuation (done, arg), answered
** by (term, index): if the entry committed at index carries another term,
** the proposal was replaced and fails. */
struct group_prop {
  group_done_fn done; /* NULL: no one waits (a leader's no-op) */
  void *arg;
  size_t off, len;
  uint64_t term, index;
  int type;
};

/* A batch of what this node writes to its log: records back to back
** (with a WAL, framed, so the WAL writes them from here without a copy),
** its entries in index order, and whether a hard state (term, vote) is
** among the records (made durable by the same sync). */
struct group_batch {
  struct buf log;
  struct group_prop *props;
  size_t n, cap;
  int has_hard;
  uint64_t hard_term, hard_vote, hard_seq;
};

/* A message the core gave (SEND), waiting to be handed to the transport:
** until the hard state framed before it (hard_seq) is durable (R1), and
** until entry (after_term, after_index) is (R2; dropped if it was
** replaced). */
struct group_send {
  struct raft_msg msg;
  uint64_t after_term, after_index, hard_seq;
};

/* An AppendEntries that arrived while a sync was in flight: stepped once
** it is back (a truncation must not race a sync: R3), with a copy of the
** records it carried. */
struct group_inmsg {
  struct raft_msg msg;
  struct buf records;
};

/* A read of a cluster's group waiting for its barrier (ReadIndex,
** thesis 6.4): READ_INDEX(ctx) gives the index it waits for (0: not
** yet); it is served once this node has applied that far. */
struct group_barrier {
  struct job *j;
  group_job_fn then; /* runs once the barrier passed */
  uint64_t ctx, index;
  unsigned ticks; /* its age */
  int refused;    /* no leader confirmed it (or too old): 503 */
};

/* A proposal whose entry is durable here, waiting for its index to be
** committed and applied (answered by (term, index): group_answer). */
struct group_wait {
  group_done_fn done;
  void *arg;
  uint64_t term, index;
  unsigned ticks; /* since this node stopped leading its term */
};

/* A client's write this node forwarded to its group's leader, waiting
** for the leader's reply (then it waits in held, for its apply here). */
struct group_fwd {
  uint64_t req;
  group_done_fn done;
  void *arg;
  unsigned ticks;
};

/* SNAPSHOTS IN A CLUSTER (below): an image being sent to one follower
** (peer 0: the slot is free), and the one being received. */
struct group_snap_out {
  uint64_t peer;
  int fd;               /* the file "image", open for reading */
  uint64_t at, bytes;   /* sent so far; the file's size */
  uint64_t index, term; /* the image's last entry */
  uint64_t moved_ms;    /* mono ms of the last chunk the link took */
};
struct group_snap_in {
  int open;     /* an install file is being written (sw) */
  int complete; /* all of it came: waiting for the core's INSTALL */
  uint64_t from, term, index, snap_term, total, at;
  struct wal_snap_writer sw;
};

/* The Raft settings of a group (raft.c has what each means). */
#define GROUP_ELECTION_TICKS 10 /* T: elections after [T, 2T) ticks */
#define GROUP_TRAIL_RUNS 256   /* term runs the core remembers (one voter) */
#define GROUP_TRAIL_RUNS_CLUSTER 4096 /* (a cluster compacts only what
                                         its followers hold) */
#define GROUP_NODE_ID 1        /* a single node's id */

struct group {
  int id;
  int owner_core;
  struct env *env; /* the node's clocks and file system */
  struct stream_state sm;
  struct wal *wal;        /* NULL: the log lives in memory only */
  struct raft raft;       /* which entries are committed (raft.c) */
  struct raft_out out;    /* raft_step()'s actions (out.a: raft_out_cap) */
  uint64_t commit;        /* the last entry known committed */
  int storage_failed;     /* the core was told STORAGE_FAILED */
  int recovering;         /* the last SAVE_STATE's LOST LOG flag */
  struct group_cluster cl; /* n_voters 0: a single node (one voter) */
  uint64_t hard_seq;       /* HARD records framed so far */
  uint64_t hard_durable;   /* ... of which durable */
  struct group_send *outbox; /* SENDs not yet handed to the transport */
  size_t n_out, cap_out;
  struct group_inmsg *inbox; /* AppendEntries waiting for the sync */
  size_t n_in, cap_in;
  const void *in_records; /* the MSG being stepped: its records */
  size_t in_len;
  struct group_wait *held; /* durable proposals, ascending by index, */
  size_t held_head, n_held, cap_held; /* from held_head on */
  struct buf scratch;      /* records of a message being sent */
  int owe;                 /* flight was made durable in a step */
  int owe_rc;              /* a storage failure met in a step */
  uint64_t snap_refused;   /* SEND_SNAPSHOT to this peer: refused */
  struct group_snap_out snap_out[RAFT_MAX_VOTERS - 1]; /* images sent */
  uint64_t image_index, image_term; /* the file "image" (0: none yet) */
  struct group_snap_in snap_in;     /* an image received */
  uint64_t install_peer, install_term, install_index; /* INSTALL asked */
  struct buf snap_buf;              /* a chunk read or a snapshot loaded */
  struct group_barrier *reads; /* reads waiting for their barrier */
  size_t n_reads, cap_reads;
  uint64_t read_ctx;           /* the last READ_INDEX's ctx */
  int reads_ready;             /* a READ_READY came in this step */
  int serving;                 /* group_serve_reads() is running */
  int draining;                /* group_drain_inbox() is running */
  struct group_fwd *fwds;      /* forwarded writes awaiting a reply */
  size_t n_fwds, cap_fwds;
  uint64_t fwd_seq;            /* the last forward's request id */
  struct buf fwd_buf;          /* a forward's encoded command */
  struct group_batch fill;   /* proposed this turn, not yet handed over */
  struct group_batch flight; /* handed to the log store: being persisted,
                                then applied */
  struct group_release *retry; /* releases the log refused: again at the
                                  next sweep (chained through msg.next) */
  int dirty;     /* on the core's list of groups to drive */
  int in_flight; /* flight is being synced */
  int wal_error;           /* the last failure, while the WAL is failed */
  uint64_t hot_max;        /* stream bytes kept in memory (with a WAL) */
  uint64_t replayed_last;  /* the log's last entry at start: entries up to
                              it are applied log-only (stream_state) */
  uint64_t snapshot_bytes; /* log bytes between snapshots (with a WAL) */
  uint64_t snapshot_size;  /* bytes of the last snapshot */
  uint64_t applied_index;  /* the last entry applied to sm */
  uint64_t applied_term;   /* its term */
  struct buf bounds;       /* decode scratch */
  struct stream_result res;
  struct tier tier; /* the cold tier's policy (tier.cold NULL: none) */
  int campaign_why; /* STATUS: why its last campaign began (GROUP_WHY_*) */
  unsigned whys[8]; /* STATUS: leaderships won and lost, by why, since the
                       last group_leads_report() */
};

/* The node's clocks: monotonic ms (durations), Unix ms (stamped into
** commands, compared with TTLs). */
static uint64_t group_mono(const struct group *g) {
  return g->env->mono_ms(g->env);
}
URSULA_PRIVATE uint64_t group_wall(const struct group *g) {
  return g->env->wall_ms(g->env);
}

/* ------------------------------------------------------------ the driver */

/* THE RAFT DRIVER.  What decides which entries are committed is the
** group's Raft core (raft.c: pure; its contract lists every input, every
** action and the driver rules R1-R5).  group_step() feeds it one input
** and carries out the actions it gives back, in order:
**   SAVE_STATE  frame a HARD record (term, vote) into the fill batch: it
**               becomes durable with the entries framed before it, by the
**               same sync, and the core is told STATE_DURABLE after that
**               sync (group_persisted).  R1 holds because nothing is sent
**               before the batch that holds the state is durable;
**   APPEND      a leader's no-op: a NOOP entry into the fill batch; a
**               proposal's entry: the proposer frames it (group_propose);
**   APPEND      (of a MSG) the entries an AppendEntries carried, framed
**               verbatim from their WAL records;
**   TRUNCATE    a conflicting suffix cut (group_truncate; R3);
**   SEND        queued, and handed to the transport at the end of the
**               turn once R1 and R2 allow (group_flush_out);
**   COMMIT      entries up to it are committed: applied once durable here
**               (group_apply_committed);
**   READ_READY  a read's barrier passed (group_serve_reads);
**   ROLE        counted: each core logs once a second how many of its
**               groups this node leads, and why that changed (STATUS).
** A single node is one voter: its core elects itself at start
** (group_elect, one election timeout of ticks fed at once, so the first
** request does not wait a second) and, after a storage failure, once its
** log is verified again.  A cluster's groups (group_join: a voter on every
** node) elect by ticks (group_tick), exchange messages through the
** transport (group_recv), forward writes to their leader, read through a
** barrier, and spread leadership (FORWARDED WRITES, LEADERSHIP SPREAD,
** and group_barrier, below), and send and install snapshots (SNAPSHOTS
** IN A CLUSTER).  The cold tier acts only on a group's leader
** (group_lead_term; tier.c's WHO ACTS).
**
** Storage failures follow R5: a write or sync that fails (group_lost), or
** a record that cannot be framed (group_frame_failed: the log is then
** abandoned, as if its write had failed), tells the core STORAGE_FAILED;
** it steps down and refuses proposals until the sweep has verified the
** log again (wal_recover) and tells it STORAGE_RECOVERED. */

static void group_mark_dirty(struct core *c, struct group *g) {
  if (c != NULL && !g->dirty) { /* c NULL: at open; the first proposal */
    g->dirty = 1;
    c->dirty[c->n_dirty++] = g;
  }
}

/* Room in batch b for a record of n payload bytes (with a WAL, header
** room first): its start, or NULL (out of memory). */
static char *group_batch_room(struct group *g, struct group_batch *b,
                              size_t n) {
  size_t hdr = g->wal != NULL ? WAL_RECORD_HEADER : 0;
  if (buf_reserve(&b->log, hdr + n) != URSULA_OK) return NULL;
  return b->log.ptr + b->log.len;
}

/* Add entry (type, term, index) with payload p[0..n) to the fill batch
** (a no-op: n 0).  URSULA_OK, or why it could not be framed. */
static int group_batch_entry(struct group *g, int type, uint64_t term,
                             uint64_t index, size_t n) {
  struct group_batch *b = &g->fill;
  struct group_prop *p;
  size_t hdr = g->wal != NULL ? WAL_RECORD_HEADER : 0;
  char *rec = group_batch_room(g, b, n);
  int rc;
  if (rec == NULL) return URSULA_ENOMEM;
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 16;
    p = (struct group_prop *)URSULA_REALLOC(b->props, cap * sizeof(*p));
    if (p == NULL) return URSULA_ENOMEM;
    b->props = p;
    b->cap = cap;
  }
  if (g->wal != NULL &&
      (rc = wal_frame(g->wal, type, term, index, rec, n)) != URSULA_OK)
    return rc;
  p = &b->props[b->n++];
  memset(p, 0, sizeof(*p));
  p->off = b->log.len + hdr;
  p->len = n;
  p->term = term;
  p->index = index;
  p->type = type;
  b->log.len += hdr + n;
  return URSULA_OK;
}

/* A record the core counts on could not be framed: abandon the log (its
** next write fails, and group_lost tells the core), so that no index the
** core gave out is ever given to another entry. */
static void group_frame_failed(struct core *c, struct group *g, int rc) {
  LOG_E("group %d: could not add to the WAL (%s); the log is failed until "
        "it is verified again",
        g->id, ursula_strerror(rc));
  (void)rc; /* when logging is compiled out */
  if (g->wal != NULL) wal_abandon(g->wal);
  g->fill.log.len += 0;
  group_mark_dirty(c, g); /* the write that fails, at the end of the turn */
}

/* SAVE_STATE(term, vote, flags): a HARD record.  Its vote field holds
** the node voted for in bits 0-62 and, in bit 63, LOST LOG's recovering
** flag (flags 1: raft.c), so a node that lost its log still abstains
** after a crash while it catches up. */
#define GROUP_VOTE_RECOVERING ((uint64_t)1 << 63)
static void group_save_state(struct core *c, struct group *g, uint64_t term,
                             uint64_t vote, unsigned flags) {
  struct group_batch *b = &g->fill;
  if ((flags & 1) != (unsigned)g->recovering) {
    if (flags & 1)
      LOG_I("group %d: this node lost its log (--lost-log 1): it neither "
            "votes nor campaigns until it holds what the others committed",
            g->id);
    else
      LOG_I("group %d: caught up after losing its log: it votes again",
            g->id);
    g->recovering = (int)(flags & 1);
  }
  if (g->wal != NULL) {
    char *rec = group_batch_room(g, b, 16);
    int rc = rec == NULL ? URSULA_ENOMEM : URSULA_OK;
    if (rc == URSULA_OK) {
      wal_hard_payload(rec + WAL_RECORD_HEADER, term,
                       vote | ((flags & 1) ? GROUP_VOTE_RECOVERING : 0));
      rc = wal_frame(g->wal, WAL_HARD, term, wal_last_index(g->wal), rec, 16);
    }
    if (rc != URSULA_OK) {
      group_frame_failed(c, g, rc);
      return;
    }
    b->log.len += WAL_RECORD_HEADER + 16;
  }
  b->has_hard = 1;
  b->hard_term = term;
  b->hard_vote = vote;
  b->hard_seq = ++g->hard_seq;
  group_mark_dirty(c, g);
}

/* SEND: queue the message for the transport (group_flush_out). */
static void group_queue_send(struct core *c, struct group *g,
                             const struct raft_action *a) {
  struct group_send *q;
  if (g->cl.send == NULL) return; /* no transport: dropped */
  if (g->n_out == g->cap_out) {
    size_t cap = g->cap_out ? g->cap_out * 2 : 16;
    q = (struct group_send *)URSULA_REALLOC(g->outbox, cap * sizeof(*q));
    if (q == NULL) return; /* dropped: Raft sends again */
    g->outbox = q;
    g->cap_out = cap;
  }
  q = &g->outbox[g->n_out++];
  q->msg = a->msg;
  q->after_term = a->after_term;
  q->after_index = a->after_index;
  q->hard_seq = g->hard_seq;
  group_mark_dirty(c, g);
}

/* APPEND of the entries the MSG being stepped carried: lo..hi, framed
** from its records (their bytes verbatim). */
static void group_append_msg(struct core *c, struct group *g, uint64_t lo,
                             uint64_t hi) {
  const char *p = (const char *)g->in_records;
  size_t left = g->in_len, k;
  struct wal_entry e;
  int rc = URSULA_OK;
  while (lo <= hi && rc == URSULA_OK &&
         wal_record_check(p, left, &e, &k) == URSULA_OK) {
    p += k;
    left -= k;
    if (e.index < lo) continue;
    if (e.index != lo) break;
    {
      char *rec = group_batch_room(g, &g->fill, e.len);
      if (rec == NULL) {
        rc = URSULA_ENOMEM;
        break;
      }
      if (e.len > 0) memcpy(rec + WAL_RECORD_HEADER, e.data, e.len);
      rc = group_batch_entry(g, e.type, e.term, e.index, e.len);
    }
    lo++;
  }
  if (rc == URSULA_OK && lo <= hi) rc = URSULA_ECORRUPT; /* (transport) */
  if (rc != URSULA_OK) group_frame_failed(c, g, rc);
  else group_mark_dirty(c, g);
}

/* TRUNCATE(lo): entries from lo on conflict with the leader's (R3).  No
** sync is in flight here (an AppendEntries waits for it: group_recv);
** what the fill batch holds is written and synced first (the WAL cuts
** only a log with nothing buffered), on this thread -- a conflict is
** rare: it follows a change of leader -- and reported after the step
** (owe). */
static void group_truncate(struct group *g, uint64_t lo) {
  int rc = URSULA_OK;
  if (g->wal == NULL || g->in_flight) {
    g->owe_rc = URSULA_EIO; /* never: one voter, or a sync in flight */
    return;
  }
  if (g->fill.n > 0 || g->fill.has_hard) {
    struct group_batch tmp = g->flight;
    g->flight = g->fill;
    g->fill = tmp;
    g->in_flight = 1;
    rc = wal_write(g->wal, g->flight.log.ptr, g->flight.log.len);
    if (rc == URSULA_OK) rc = wal_flush(g->wal);
    if (rc == URSULA_OK) g->owe = 1;
  }
  if (rc == URSULA_OK) rc = wal_truncate_suffix(g->wal, lo);
  if (rc != URSULA_OK) g->owe_rc = rc;
}

static void group_snap_start(struct group *g, const struct raft_action *a);

static void group_act(struct core *c, struct group *g,
                      const struct raft_action *a) {
  int rc;
  switch (a->type) {
    case RAFT_SAVE_STATE:
      group_save_state(c, g, a->term, a->vote, a->flags);
      break;
    case RAFT_APPEND:
      if (a->flags & RAFT_APPEND_MSG) {
        group_append_msg(c, g, a->lo, a->hi);
      } else if (a->flags & RAFT_APPEND_NOOP) {
        rc = group_batch_entry(g, WAL_NOOP, a->msg.runs[0].term, a->lo, 0);
        if (rc != URSULA_OK) group_frame_failed(c, g, rc);
        else group_mark_dirty(c, g);
      } /* else a proposal's: the proposer frames it */
      break;
    case RAFT_TRUNCATE:
      group_truncate(g, a->lo);
      break;
    case RAFT_SEND:
      group_queue_send(c, g, a);
      break;
    case RAFT_SEND_SNAPSHOT:
      group_snap_start(g, a);
      break;
    case RAFT_INSTALL_SNAPSHOT: /* after the step: group_install_try */
      g->install_peer = a->peer;
      g->install_term = a->term;
      g->install_index = a->hi;
      break;
    case RAFT_COMMIT:
      if (a->hi > g->commit) g->commit = a->hi;
      group_mark_dirty(c, g);
      break;
    case RAFT_ROLE: /* counted for the core's line: group_note_role */
      if (a->role == RAFT_LEADER && g->cl.n_voters > 1)
        LOG_D("group %d: this node leads it (term %llu)", g->id,
              (unsigned long long)a->term);
      else
        LOG_D("group %d: term %llu, %s (leader %llu)", g->id,
              (unsigned long long)a->term,
              a->role == RAFT_LEADER ? "leader" : "not the leader",
              (unsigned long long)a->peer);
      break;
    case RAFT_READ_READY: {
      size_t k;
      for (k = 0; k < g->n_reads; k++)
        if (g->reads[k].ctx == a->ctx && g->reads[k].index == 0) {
          g->reads[k].index = a->hi;
          g->reads[k].refused = a->hi == 0;
          g->reads_ready = 1;
        }
      break;
    }
    default:
      break;
  }
}

static void group_lost(struct core *c, struct group *g, int rc);
static void group_persisted(struct core *c, struct group *g);
static void group_install_try(struct core *c, struct group *g);
static void group_serve_reads(struct core *c, struct group *g);
static void group_note_role(struct group *g, const struct raft_in *in,
                            int role, uint64_t term, uint64_t transfer_to);

/* Feed one input to the core and carry out its actions; then what the
** actions left for after the step (a truncation's synchronous write, a
** storage failure, a snapshot it cannot send).  The core's answer:
** URSULA_OK, or URSULA_EAGAIN for a PROPOSE it refused; g->out.term and
** g->out.index stay those of a PROPOSE. */
static int group_step(struct core *c, struct group *g,
                      const struct raft_in *in) {
  size_t i;
  int rc;
  uint64_t term, index;
  int role = g->raft.role;
  uint64_t was_term = g->raft.term, was_transfer = g->raft.transfer_to;
  g->out.n = 0;
  rc = raft_step(&g->raft, in, &g->out);
  if (g->raft.role != role || g->raft.term != was_term)
    group_note_role(g, in, role, was_term, was_transfer);
  for (i = 0; i < g->out.n; i++) group_act(c, g, &g->out.a[i]);
  term = g->out.term;
  index = g->out.index;
  if (g->owe_rc != URSULA_OK) {
    int e = g->owe_rc;
    g->owe_rc = URSULA_OK;
    g->owe = 0;
    if (g->wal != NULL) wal_abandon(g->wal);
    group_lost(c, g, e);
  } else if (g->owe) {
    g->owe = 0;
    group_persisted(c, g);
  }
  if (g->reads_ready) {
    g->reads_ready = 0;
    group_serve_reads(c, g);
  }
  if (g->install_peer != 0) group_install_try(c, g);
  if (g->snap_refused != 0) {
    struct raft_in f;
    memset(&f, 0, sizeof(f));
    f.type = RAFT_IN_SNAP_FAILED;
    f.peer = g->snap_refused;
    g->snap_refused = 0;
    group_step(c, g, &f);
  }
  g->out.term = term;
  g->out.index = index;
  return rc;
}

static void group_step_type(struct core *c, struct group *g, int type) {
  struct raft_in in;
  memset(&in, 0, sizeof(in));
  in.type = type;
  group_step(c, g, &in);
}

/* A single voter elects itself now: ticks until its election timeout
** (at most 2T) instead of waiting for them. */
static void group_elect(struct core *c, struct group *g) {
  unsigned k;
  if (g->raft.c.n_voters > 1) return; /* a cluster's elect by ticks */
  /* no room in the core's trail for the new term's run (one run per
  ** election since the last snapshot): a snapshot lets the old ones go
  ** (one voter: all of the log is applied once nothing is in flight) */
  if (g->raft.trail_n + 1 >= GROUP_TRAIL_RUNS && g->wal != NULL &&
      !g->in_flight && g->applied_index == g->raft.last_index)
    group_snapshot(g);
  for (k = 0; k <= 2 * GROUP_ELECTION_TICKS; k++) {
    if (g->raft.role == RAFT_LEADER || g->raft.storage_failed) return;
    group_step_type(c, g, RAFT_IN_TICK);
  }
}

/* Start the core from what the log holds (s), and elect.  URSULA_OK,
** or an error with a reason in err. */
static int group_start(struct group *g, const struct raft_saved *s,
                       char *err) {
  struct raft_config rc;
  int e;
  memset(&rc, 0, sizeof(rc));
  if (g->cl.n_voters > 1) {
    rc.cluster_id = g->cl.cluster_id;
    rc.id = g->cl.node;
    memcpy(rc.voters, g->cl.voters, sizeof(rc.voters));
    rc.n_voters = g->cl.n_voters;
  } else {
    rc.id = GROUP_NODE_ID;
    rc.voters[0] = GROUP_NODE_ID;
    rc.n_voters = 1;
  }
  rc.election_ticks = GROUP_ELECTION_TICKS;
  rc.heartbeat_ticks = 1;
  rc.max_inflight_msgs = 256;
  rc.max_inflight_bytes = 8u << 20;
  rc.max_msg_entries = 256;
  rc.max_msg_bytes = 1u << 20;
  rc.trail_cap =
      rc.n_voters > 1 ? GROUP_TRAIL_RUNS_CLUSTER : GROUP_TRAIL_RUNS;
  rc.read_cap = 64;
  rc.commit_notify = 1;
  rc.env = g->env;
  raft_free(&g->raft);
  URSULA_FREE(g->out.a);
  g->out.cap = raft_out_cap(&rc);
  g->out.a = (struct raft_action *)URSULA_MALLOC(g->out.cap *
                                                 sizeof(*g->out.a));
  if (g->out.a == NULL) {
    snprintf(err, URSULA_ERRMSG_LEN, "group %d: out of memory", g->id);
    return URSULA_ENOMEM;
  }
  if ((e = raft_init(&g->raft, &rc, s)) != URSULA_OK) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "group %d: the log's terms do not start a Raft core (%s)", g->id,
             ursula_strerror(e));
    return e;
  }
  g->commit = s->commit;
  memset(g->whys, 0, sizeof(g->whys)); /* a new core: nothing led yet */
  if (rc.n_voters == 1) group_elect(NULL, g); /* a cluster's: by ticks */
  return URSULA_OK;
}

/* loop_close() of a core with a job still in its mailbox. */
static void group_job_drop(struct loop_msg *m) {
  job_free((struct job *)(void *)m);
}

URSULA_PRIVATE struct job *job_new(void) {
  struct job *j = (struct job *)URSULA_MALLOC(sizeof(*j));
  if (j != NULL) {
    memset(j, 0, sizeof(*j));
    j->msg.on_drop = group_job_drop;
  }
  return j;
}

URSULA_PRIVATE void job_free(struct job *j) {
  if (j == NULL) return;
  buf_free(&j->body);
  buf_free(&j->parts);
  buf_free(&j->data);
  URSULA_FREE(j);
}

static void group_on_job(struct loop *l, struct loop_msg *m) {
  struct core *c = (struct core *)loop_get_user(l);
  group_run_job(c, (struct job *)(void *)m);
}

URSULA_PRIVATE struct group *group_of(struct core *c, const char *path,
                                      size_t len) {
  return server_group(c->srv, server_group_of(c->srv, path, len));
}

URSULA_PRIVATE struct stream_state *group_state(struct group *g) {
  return &g->sm;
}

URSULA_PRIVATE void group_send(struct core *c, struct loop_msg *m,
                               const char *path, size_t len) {
  int gid = server_group_of(c->srv, path, len);
  server_send(c, server_owner_of(c->srv, gid), m);
}

URSULA_PRIVATE void group_dispatch(struct core *c, struct job *j) {
  j->msg.on_msg = group_on_job;
  group_send(c, &j->msg, j->path, j->path_len);
}

URSULA_PRIVATE struct group *group_new(int id, int owner_core,
                                       struct env *env) {
  struct group *g = (struct group *)URSULA_MALLOC(sizeof(*g));
  if (g == NULL) return NULL;
  memset(g, 0, sizeof(*g));
  g->id = id;
  g->owner_core = owner_core;
  g->env = env != NULL ? env : env_real();
  stream_state_init(&g->sm);
  { /* in memory until group_open_wal(): a new log, elected at once */
    struct raft_saved empty;
    char err[URSULA_ERRMSG_LEN];
    memset(&empty, 0, sizeof(empty));
    if (group_start(g, &empty, err) != URSULA_OK) {
      group_free(g);
      return NULL;
    }
  }
  return g;
}

/* Replay state: one group's recovery, and the terms of the entries it
** replayed (runs: where each term starts) for the Raft core. */
struct group_replay {
  struct group *g;
  uint64_t started_ms, last_report_ms;
  struct buf runs; /* struct raft_run, ascending */
  int rc;          /* out of memory for runs */
};

static int group_apply_entry(struct core *c, struct group *g,
                             const struct wal_entry *e,
                             struct stream_result *r);
static int group_take_snapshot(struct group *g);

static int group_replay_entry(void *arg, const struct wal_entry *e) {
  struct group_replay *rp = (struct group_replay *)arg;
  struct group *g = rp->g;
  int rc;
  /* no core: effects (wake-ups, fork releases) are not replayed, since
  ** nothing waits yet and the releases a command sent were logged by
  ** their groups */
  /* a cluster's voter does not know what is committed (the commit index
  ** is volatile: Raft paper, Fig. 2): its leader says, and the entries
  ** are applied then (from the log) */
  if (g->cl.n_voters <= 1) {
    if ((rc = group_apply_entry(NULL, g, e, &g->res)) != URSULA_OK) return rc;
    stream_evict(&g->sm, g->hot_max);
  }
  {
    size_t n = rp->runs.len / sizeof(struct raft_run);
    const struct raft_run *last =
        n > 0 ? (const struct raft_run *)(void *)rp->runs.ptr + n - 1 : NULL;
    if (last == NULL || last->term != e->term) {
      struct raft_run run;
      run.index = e->index;
      run.term = e->term;
      if (buf_append(&rp->runs, &run, sizeof(run)) != URSULA_OK)
        return URSULA_ENOMEM;
    }
  }
  if ((e->index & 4095) == 0) {
    uint64_t now = group_mono(g);
    if (now - rp->last_report_ms >= 2000) {
      LOG_I("group %d: recovering, %llu entries so far (%.1f s)", g->id,
            (unsigned long long)(e->index - wal_first_index(g->wal) + 1),
            (double)(now - rp->started_ms) / 1000.0);
      rp->last_report_ms = now;
    }
  }
  return URSULA_OK;
}

/* wal_replay's restore: the state machine from the snapshot. */
static int group_restore(void *arg, const void *p, size_t len) {
  struct group_replay *rp = (struct group_replay *)arg;
  rp->g->snapshot_size = len;
  return stream_restore(&rp->g->sm, p, len);
}

/* Every unit's bytes that are not in the log's segments (below its first
** entry) must be in the snapshot's pieces: refuse to start otherwise. */
static int group_check_pieces(struct group *g, const char *dir, char *err) {
  struct buf units;
  const struct stream_piece *pc;
  size_t i, n;
  int rc;
  memset(&units, 0, sizeof(units));
  rc = stream_log_units(&g->sm, wal_first_index(g->wal), &units);
  pc = (const struct stream_piece *)units.ptr;
  n = rc == URSULA_OK ? units.len / sizeof(*pc) : 0;
  for (i = 0; i < n; i++)
    if (!wal_has_piece(g->wal, pc[i].index, pc[i].off, pc[i].len)) {
      snprintf(err, URSULA_ERRMSG_LEN,
               "group %d: %.1200s: streams read bytes from log entry %llu, "
               "but the log starts at entry %llu and the snapshot does not "
               "carry them: a segment file is missing; not starting "
               "without it",
               g->id, dir, (unsigned long long)pc[i].index,
               (unsigned long long)wal_first_index(g->wal));
      rc = URSULA_ECORRUPT;
      break;
    }
  if (rc == URSULA_ENOMEM)
    snprintf(err, URSULA_ERRMSG_LEN, "group %d: out of memory", g->id);
  buf_free(&units);
  return rc;
}

/* stream_state's read_cold: stream bytes that are only in the WAL. */
static int group_read_cold(void *ctx, const struct stream_loc *loc,
                           uint64_t len, struct buf *out) {
  struct group *g = (struct group *)ctx;
  return wal_read(g->wal, loc->index, loc->off, len, out);
}

/* Start the Raft core from the replayed log: one voter, so everything
** durable is committed and replay applied it all.  A log with more term
** runs than the core remembers (a restart is an election, and one run)
** is first snapshotted, so that its runs start over. */
static int group_start_replayed(struct group *g, struct group_replay *rp,
                                const struct wal_stats *st, char *err) {
  struct raft_saved sv;
  memset(&sv, 0, sizeof(sv));
  sv.snap_index = st->snapshot_index;
  if (sv.snap_index > 0 &&
      wal_term_at(g->wal, sv.snap_index, &sv.snap_term) != URSULA_OK)
    sv.snap_term = g->applied_term;
  sv.runs = (const struct raft_run *)(void *)rp->runs.ptr;
  sv.n_runs = rp->runs.len / sizeof(struct raft_run);
  sv.last_index = wal_last_index(g->wal);
  if (g->cl.n_voters <= 1 && sv.n_runs + 1 >= GROUP_TRAIL_RUNS &&
      group_take_snapshot(g) == URSULA_OK) {
    sv.snap_index = sv.last_index;
    sv.snap_term = g->applied_term;
    sv.n_runs = 0;
  }
  if (sv.last_index == sv.snap_index) {
    sv.n_runs = 0;
    g->applied_term = sv.snap_term;
  }
  sv.term = wal_term(g->wal);
  sv.vote = wal_vote(g->wal) & ~GROUP_VOTE_RECOVERING;
  sv.recovering = (wal_vote(g->wal) & GROUP_VOTE_RECOVERING) != 0;
  if (g->cl.n_voters > 1 && g->cl.lost_log && !GROUP_BUG(3) &&
      sv.last_index == 0 &&
      sv.snap_index == 0 && sv.term == 0)
    sv.recovering = 1; /* an empty log of a member that had one */
  g->recovering = sv.recovering;
  if (sv.recovering)
    LOG_I("group %d: this node lost its log (--lost-log 1): it neither "
          "votes nor campaigns until it holds what the others committed",
          g->id);
  sv.commit = g->cl.n_voters > 1 ? sv.snap_index : sv.last_index;
  g->applied_index = sv.commit;
  /* the in-memory start of group_new() is replaced, not continued */
  g->fill.n = 0;
  g->fill.log.len = 0;
  g->fill.has_hard = 0;
  g->hard_seq = g->hard_durable = 0;
  return group_start(g, &sv, err);
}

URSULA_PRIVATE int group_open_wal(struct group *g, const char *dir,
                                  int must_exist, uint64_t hot_max,
                                  uint64_t snapshot_bytes,
                                  struct buf *scratch, char *err) {
  struct group_replay rp;
  struct wal_stats st;
  char why[URSULA_ERRMSG_LEN];
  int rc = wal_open(&g->wal, g->env, dir, must_exist, why);
  if (rc != URSULA_OK) {
    snprintf(err, URSULA_ERRMSG_LEN, "group %d: %.1500s", g->id, why);
    return rc;
  }
  g->hot_max = hot_max;
  g->snapshot_bytes = snapshot_bytes;
  g->sm.read_cold = group_read_cold;
  g->sm.read_ctx = g;
  memset(&rp, 0, sizeof(rp));
  rp.g = g;
  rp.started_ms = rp.last_report_ms = group_mono(g);
  why[0] = '\0';
  g->sm.log_only = 1; /* the bytes replayed stay in the log */
  rc = wal_replay(g->wal, group_restore, group_replay_entry, &rp, scratch,
                  &st, why);
  g->sm.log_only = 0;
  if (rc == URSULA_OK) g->replayed_last = wal_last_index(g->wal);
  if (rc != URSULA_OK) {
    buf_free(&rp.runs);
    if (why[0] == '\0')
      snprintf(why, sizeof(why), "%.1400s: %s", dir, ursula_strerror(rc));
    snprintf(err, URSULA_ERRMSG_LEN, "group %d: %.1500s", g->id, why);
    return rc;
  }
  if ((rc = group_check_pieces(g, dir, err)) != URSULA_OK) {
    buf_free(&rp.runs);
    return rc;
  }
  g->res.releases.len = 0;
  g->res.garbage.len = 0; /* the start-up sweep deletes what replay freed */
  rc = group_start_replayed(g, &rp, &st, err);
  buf_free(&rp.runs);
  if (rc != URSULA_OK) return rc;
  if (st.cut_bytes > 0)
    LOG_W(
        "group %d: cut a torn tail: %llu bytes at byte %llu of %s/%020llu.wal "
        "(the last write before a crash; nothing valid followed it)",
        g->id, (unsigned long long)st.cut_bytes, (unsigned long long)st.cut_at,
        dir, (unsigned long long)st.cut_segment);
  if (st.entries > 0)
    LOG_I("group %d: recovered %llu entries (%.1f MB, %d streams) in %llu ms",
          g->id, (unsigned long long)st.entries, (double)st.bytes / 1e6,
          (int)g->sm.n, (unsigned long long)(group_mono(g) - rp.started_ms));
  return URSULA_OK;
}

URSULA_PRIVATE void group_free(struct group *g) {
  if (g == NULL) return;
  tier_free(&g->tier);
  while (g->retry != NULL) {
    struct group_release *rel = g->retry;
    g->retry = (struct group_release *)(void *)rel->msg.next;
    URSULA_FREE(rel);
  }
  buf_free(&g->res.garbage);
  stream_state_free(&g->sm);
  {
    size_t k;
    for (k = 0; k < RAFT_MAX_VOTERS - 1; k++)
      if (g->snap_out[k].peer != 0) wal_image_close(g->wal, g->snap_out[k].fd);
  }
  if (g->snap_in.open) wal_snap_abort(g->wal, &g->snap_in.sw);
  buf_free(&g->snap_buf);
  wal_close(g->wal);
  buf_free(&g->fill.log);
  URSULA_FREE(g->fill.props);
  buf_free(&g->flight.log);
  URSULA_FREE(g->flight.props);
  buf_free(&g->bounds);
  buf_free(&g->res.releases);
  raft_free(&g->raft);
  URSULA_FREE(g->out.a);
  URSULA_FREE(g->outbox);
  while (g->n_in > 0) buf_free(&g->inbox[--g->n_in].records);
  URSULA_FREE(g->inbox);
  URSULA_FREE(g->held);
  URSULA_FREE(g->fwds); /* (their jobs are freed with the core's) */
  buf_free(&g->fwd_buf);
  while (g->n_reads > 0) job_free(g->reads[--g->n_reads].j);
  URSULA_FREE(g->reads);
  buf_free(&g->scratch);
  URSULA_FREE(g);
}

/* ------------------------------------------------------------ effects */

static void group_notify_drop(struct loop_msg *m) {
  struct notify *n = (struct notify *)(void *)m;
  buf_free(&n->data);
  URSULA_FREE(n);
}

/* Wake the live readers of the stream at path on every core in mask. */
static void group_notify(struct core *c, struct group *g, struct str path,
                         const struct stream_result *r) {
  struct stream *s = r->deleted ? NULL : stream_find(&g->sm, path);
  int i;
  for (i = 0; i < c->srv->n_cores && i < 64; i++) {
    struct notify *n;
    if (!(r->watch_mask & ((uint64_t)1 << i))) continue;
    n = (struct notify *)URSULA_MALLOC(sizeof(*n) + path.len);
    if (n == NULL) continue; /* readers time out and retry */
    memset(n, 0, sizeof(*n));
    n->msg.on_msg = live_on_notify;
    n->msg.on_drop = group_notify_drop;
    n->prev_tail = r->prev_tail;
    n->deleted = r->deleted;
    n->path_len = path.len;
    memcpy(n->path, path.ptr, path.len);
    n->path[path.len] = '\0';
    if (s != NULL) {
      n->tail = s->tail;
      n->closed = s->closed;
      if (s->tail > r->prev_tail &&
          stream_read(&g->sm, s, r->prev_tail, s->tail, &n->data) !=
              URSULA_OK) {
        buf_free(&n->data);
        n->prev_tail = n->tail = ~(uint64_t)0; /* readers re-read */
      }
    } else {
      n->tail = r->prev_tail;
    }
    server_send(c, i, &n->msg);
  }
}

static void group_ignore_done(struct core *c, struct group *g,
                              const struct stream_result *r, void *arg);
/* A release arrives at the owner of its source's group (below). */
static void group_on_release(struct loop *l, struct loop_msg *m);

URSULA_PRIVATE void group_send_release(struct core *c, const char *src,
                                       size_t len) {
  struct group_release *rel;
  if (len > URSULA_MAX_PATH_BYTES) return; /* no stream has such a path */
  rel = (struct group_release *)URSULA_MALLOC(sizeof(*rel) + len);
  if (rel == NULL) return; /* the source keeps a reference: see fork.c */
  memset(rel, 0, sizeof(*rel));
  rel->msg.on_msg = group_on_release;
  rel->path_len = len;
  memcpy(rel->path, src, len);
  rel->path[len] = '\0';
  group_send(c, &rel->msg, src, len);
}

/* Send a release for each source path in r->releases. */
static void group_send_releases(struct core *c, const struct stream_result *r) {
  size_t off = 0;
  while (off < r->releases.len) {
    const char *src = r->releases.ptr + off;
    size_t len = strlen(src);
    off += len + 1;
    group_send_release(c, src, len);
  }
}

/* ------------------------------------------------------------ the log */

/* Answer a continuation without a commit (the log refused the entry). */
static void group_refuse(struct core *c, struct group *g, group_done_fn done,
                         void *arg, int status, const char *reason) {
  struct stream_result *r = &g->res;
  memset(r, 0, offsetof(struct stream_result, garbage));
  r->status = status;
  r->reason = reason;
  r->refused = 1;
  done(c, g, r, arg);
}

/* The same for an entry whose outcome is unknown here: it may commit yet
** (503; r->unknown, so that no one acts on its absence: a fork's
** reference is not given back, a release is not proposed again). */
static void group_refuse_unknown(struct core *c, struct group *g,
                                 group_done_fn done, void *arg,
                                 const char *reason) {
  struct stream_result *r = &g->res;
  memset(r, 0, offsetof(struct stream_result, garbage));
  r->status = 503;
  r->reason = reason;
  r->refused = 1;
  r->unknown = 1;
  done(c, g, r, arg);
}

/* Why an entry was refused before anything of it was written. */
static const char *group_wal_reason(int rc) {
  return rc == URSULA_ENOSPC
             ? "write-ahead log: no space left on device; nothing was written"
             : "write-ahead log: I/O error; nothing was written";
}

/* Why an entry whose write or sync failed is not acknowledged: its bytes
** may have reached the disk, so after a restart it may be there. */
static const char *group_lost_reason(int rc) {
  return rc == URSULA_ENOSPC
             ? "write-ahead log: no space left on device; not acknowledged, "
               "and it may or may not be there after a restart (retry with "
               "the same Producer-Id/Epoch/Seq to append it exactly once)"
             : "write-ahead log: I/O error; not acknowledged, and it may or "
               "may not be there after a restart (retry with the same "
               "Producer-Id/Epoch/Seq to append it exactly once)";
}

/* Whether s has expired at now, as this node sees it: its reads count
** (local.read_ms) though the log may not have their TOUCH yet. */
static int group_expired(const struct stream *s, uint64_t now) {
  uint64_t last = s->last_access_ms;
  if (s->local.read_ms > last) last = s->local.read_ms;
  return stream_expired(s, last, now);
}

/* Log the last read of s as a TOUCH if the log does not have it yet, so
** that the TTL window it slid is the same on every replica and after a
** restart. */
static void group_touch(struct core *c, struct group *g, struct stream *s) {
  struct cmd t;
  uint64_t covered = s->last_access_ms, before = g->raft.last_index;
  if (!s->has_ttl || s->soft_deleted) return;
  if (g->cl.n_voters > 1 && g->raft.role != RAFT_LEADER)
    return; /* a follower's reads go to the leader: group_touch_forward */
  /* a TOUCH on its way (proposed, not applied yet, not lost with a
  ** failed write: group_lost forgets those) covers the reads up to it */
  if (s->local.touch_index > g->applied_index && s->local.touch_ms > covered)
    covered = s->local.touch_ms;
  if (s->local.read_ms <= covered) return;
  memset(&t, 0, sizeof(t));
  t.type = CMD_TOUCH;
  t.time_ms = s->local.read_ms;
  t.path.ptr = s->path;
  t.path.len = s->path_len;
  t.incarnation = s->incarnation;
  group_propose(c, g, &t, group_ignore_done, NULL);
  if (g->raft.last_index != before) { /* the log took it */
    s->local.touch_ms = s->local.read_ms;
    s->local.touch_index = g->raft.last_index;
  }
}

/* group_propose(); 1 and the entry's (term, index) if the log took it, 0
** if done was answered with a refusal. */
static int group_propose_at(struct core *c, struct group *g,
                            const struct cmd *cmd, group_done_fn done,
                            void *arg, uint64_t *term, uint64_t *index) {
  struct group_batch *b = &g->fill;
  struct raft_in in;
  size_t off, hdr = g->wal != NULL ? WAL_RECORD_HEADER : 0, n;
  int rc;
  if (cmd->type != CMD_TOUCH && cmd->type != CMD_COLD) {
    /* a read this node saw slides the window first: the command after
    ** it must not find the stream expired that the read kept alive */
    struct stream *s = stream_find(&g->sm, cmd->path);
    if (s != NULL) group_touch(c, g, s);
  }
  if ((g->wal != NULL && wal_failed(g->wal)) || g->storage_failed) {
    group_refuse(c, g, done, arg, 503,
                 "write-ahead log failed; writes are refused until it is "
                 "verified again");
    return 0;
  }
  /* the entry is built in place: (with a WAL) header room, then the
  ** payload, so that the WAL writes it from here without a copy (after
  ** the TOUCH above, if it added one) */
  off = b->log.len;
  rc = buf_reserve(&b->log, hdr);
  if (rc == URSULA_OK) {
    b->log.len += hdr;
    rc = cmd_encode(cmd, &b->log);
  }
  n = b->log.len - off - hdr;
  b->log.len = off; /* group_batch_entry() takes the bytes from here */
  if (rc != URSULA_OK || n > WAL_MAX_RECORD) {
    group_refuse(c, g, done, arg, rc != URSULA_OK ? 503 : 413,
                 rc != URSULA_OK ? "out of memory" : "entry is too large");
    return 0;
  }
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_PROPOSE;
  in.n = 1;
  if (group_step(c, g, &in) != URSULA_OK) {
    group_refuse(c, g, done, arg, 503,
                 "this node does not lead the stream's group now; retry");
    return 0;
  }
  rc = group_batch_entry(g, WAL_CMD, g->out.term, g->out.index, n);
  if (rc != URSULA_OK) {
    group_frame_failed(c, g, rc);
    group_refuse(c, g, done, arg, 503,
                 rc == URSULA_ENOMEM ? "out of memory" : group_wal_reason(rc));
    return 0;
  }
  b->props[b->n - 1].done = done;
  b->props[b->n - 1].arg = arg;
  *term = b->props[b->n - 1].term;
  *index = b->props[b->n - 1].index;
  group_mark_dirty(c, g);
  return 1;
}

URSULA_PRIVATE void group_propose(struct core *c, struct group *g,
                                  const struct cmd *cmd, group_done_fn done,
                                  void *arg) {
  uint64_t term, index;
  group_propose_at(c, g, cmd, done, arg, &term, &index);
}

/* ------------------------------------------------------------ apply */

/* Whether this node carries out the effects of entry e that reach
** beyond it (a release to another group, deleting cold objects): each
** must happen at most once in the cluster, though every node applies e.
** A single node does.  In a cluster, the leader of e's own term does,
** if it still leads when it applies e: there is at most one leader per
** term (paper 5.2), and it never applies e twice (a restart is a new
** term).  If it lost its term first, no node does: a release not sent
** leaves a stale reference (the source is kept, never lost too early),
** and an object not deleted is garbage left in the store -- the known
** price (fork.c), never a second release of one reference. */
static int group_effects_here(const struct group *g,
                              const struct wal_entry *e) {
  if (g->cl.n_voters <= 1) return 1;
  return g->raft.role == RAFT_LEADER && g->raft.term == e->term;
}

/* THE APPLY PATH, the only one: replay (c NULL: no effects), and committed
** entries of this node's proposals (and, with Raft, of a leader's).
** Applies entry e to the state machine, then carries out its effects.
** URSULA_ECORRUPT if a command entry does not decode. */
static int group_apply_entry(struct core *c, struct group *g,
                             const struct wal_entry *e,
                             struct stream_result *r) {
  struct cmd applied;
  URSULA_ASSERT(e->index == g->applied_index + 1 || g->applied_index == 0 ||
                c == NULL);
  g->applied_index = e->index;
  g->applied_term = e->term;
  if (e->type != WAL_CMD) { /* a no-op changes nothing */
    memset(r, 0, offsetof(struct stream_result, garbage));
    r->releases.len = r->garbage.len = 0;
    return URSULA_OK;
  }
  if (cmd_decode(e->data, e->len, &applied, &g->bounds) != URSULA_OK) {
    LOG_E("group %d: log entry %llu does not decode as a command", g->id,
          (unsigned long long)e->index);
    return URSULA_ECORRUPT;
  }
  if (e->index <= g->replayed_last) { /* in the log at start: there it stays */
    int keep = g->sm.log_only;
    g->sm.log_only = 1;
    stream_apply(&g->sm, e->index, &applied, r);
    g->sm.log_only = keep;
  } else {
    stream_apply(&g->sm, e->index, &applied, r);
  }
  if (c == NULL) return URSULA_OK;
  if (r->notify && r->watch_mask) group_notify(c, g, applied.path, r);
  if (!group_effects_here(g, e)) return URSULA_OK;
  if (r->releases.len) group_send_releases(c, r);
  if (r->garbage.len && g->tier.cold != NULL)
    tier_delete_objects(c, &g->tier, &r->garbage);
  return URSULA_OK;
}

/* SNAPSHOTS IN A CLUSTER (paper §7; issue 14: catch-up by snapshot).
** Every node snapshots its own log as a single node does
** (group_after_apply, group_sweep), but a leader drops no segment that
** an active follower still needs (group_peer_floor), and its core lets go
** of entries only once its WAL has (group_raft_floor; or when the core's
** trail of terms fills): a follower that was down or cut off while the
** segments it lacks were dropped (they held only deleted or moved bytes)
** needs the state itself.  The core then says SEND_SNAPSHOT(peer, hi):
**   - the leader writes an IMAGE of its applied state (wal.c: the
**     snapshot with every stream byte it names, so another node needs
**     nothing else), as of its last applied entry A >= hi (committed, so
**     any such image will do; one image serves every follower while it
**     is at least hi), synchronously on the core, and streams the file
**     in chunks of GROUP_SNAP_CHUNK (peer.c's SNAP_CHUNK: group, the
**     leader's term, A and its term, offset, total, last) at most
**     GROUP_SNAP_TICK_BYTES a tick, while the link takes them
**     (peer_send_snap: a link with over 4 MiB unwritten waits, so
**     heartbeats are never starved);
**   - the follower writes the chunks, in order, to its install file
**     (wal_install_put; a chunk out of order drops it); with the last one
**     whole it steps the SNAPSHOT message the chunks stand for (queued
**     behind a sync in flight, as an AppendEntries is).  If its core asks
**     to INSTALL it (it does not hold the entries already), the install
**     waits until nothing is being written, then wal_install_commit
**     checks the image whole and makes it the log's snapshot (the log
**     after A is kept only if its entry A has the image's term), the
**     state machine is loaded from it (group_load_image), and the core
**     is told SNAP_INSTALLED; its acknowledgment of A, once durable, puts
**     the leader back to replicating from A + 1.
**   - the leader gives up on a stream that made no progress for
**     GROUP_SNAP_STALL_MS (the link is down, the chunks were dropped, or
**     no acknowledgment came): SNAP_FAILED, and its core asks again after
**     its next probe.
** What waited on the follower for entries the image now covers is
** answered as the single apply would have been unable to tell: forwarded
** writes held for an index <= A get 503 "outcome unknown" (their entries
** may be in the image; a retry with producer headers is exactly-once);
** reads waiting for their barrier are served from the new state; live
** readers of each stream are woken with what the new state holds. */

#define GROUP_SNAP_CHUNK ((size_t)256 << 10)
#define GROUP_SNAP_TICK_BYTES ((uint64_t)8 << 20) /* ~80 MB/s a group */
#define GROUP_SNAP_STALL_MS 10000

/* The last entry a cluster's leader lets its log compact to: its applied
** entry, but not past what an active follower holds (one that is down or
** cut off is not waited for: it gets a snapshot).  A follower's or a
** single node's: its applied entry. */
static uint64_t group_peer_floor(const struct group *g) {
  uint64_t f = g->applied_index;
  unsigned i;
  if (g->cl.n_voters <= 1 || g->raft.role != RAFT_LEADER) return f;
  for (i = 0; i < g->raft.n_peers; i++) {
    const struct raft_peer *p = &g->raft.peers[i];
    if (p->active && p->state != RAFT_SNAPSHOTTING && p->match < f)
      f = p->match;
  }
  return f;
}

/* What a cluster's Raft core lets go of (COMPACTED): the entries the WAL
** no longer holds, so that a follower behind gets entries while the log
** still has them (most stay: they hold the streams' bytes); everything
** applied once the core's trail of terms is half full. */
static uint64_t group_raft_floor(const struct group *g) {
  uint64_t x = wal_first_index(g->wal) - 1;
  if (2 * g->raft.trail_n >= g->raft.c.trail_cap) x = g->applied_index;
  return x < g->applied_index ? x : g->applied_index;
}

/* The last entry that WAL compaction may cover: everything applied, but
** not the segment of the oldest bytes a stream still reads from the log's
** segments (those before it hold only deleted or moved data, or bytes the
** snapshot carries as pieces), nor what a leader's followers still need
** (group_peer_floor). */
static uint64_t group_compact_upto(struct group *g) {
  uint64_t oldest = stream_oldest_index(&g->sm, wal_first_index(g->wal));
  uint64_t upto = oldest <= g->applied_index ? oldest - 1 : g->applied_index;
  uint64_t floor = group_peer_floor(g);
  return floor < upto ? floor : upto;
}

/* Write g's state as of the last applied entry through sw (begun at that
** entry): the payload, then as pieces the bytes of every unit whose
** entry is below `below`, read from the log (or the pieces of the
** snapshot before).  URSULA_OK or an error (sw is then aborted). */
static int group_write_snapshot(struct group *g, struct wal_snap_writer *sw,
                                uint64_t below, uint64_t *payload) {
  struct buf b, units;
  const struct stream_piece *pc;
  size_t i, n, off = 0;
  int rc;
  memset(&b, 0, sizeof(b));
  memset(&units, 0, sizeof(units));
  rc = stream_snapshot(&g->sm, &b);
  *payload = b.len;
  while (rc == URSULA_OK && off < b.len) { /* in chunks, as a sender would */
    size_t k = b.len - off < WAL_SNAP_CHUNK ? b.len - off : WAL_SNAP_CHUNK;
    rc = wal_snap_put(sw, b.ptr + off, k);
    off += k;
  }
  if (rc == URSULA_OK) rc = stream_log_units(&g->sm, below, &units);
  pc = (const struct stream_piece *)units.ptr;
  n = rc == URSULA_OK ? units.len / sizeof(*pc) : 0;
  for (i = 0; i < n && rc == URSULA_OK; i++) {
    b.len = 0;
    rc = wal_read(g->wal, pc[i].index, pc[i].off, pc[i].len, &b);
    if (rc == URSULA_OK)
      rc = wal_snap_piece(sw, pc[i].index, pc[i].off, b.ptr, b.len);
  }
  buf_free(&b);
  buf_free(&units);
  if (rc == URSULA_OK) rc = wal_snap_commit(g->wal, sw);
  if (rc != URSULA_OK) wal_snap_abort(g->wal, sw);
  return rc;
}

/* Write a snapshot of the state machine as of the last applied entry,
** then drop the WAL segments that nothing needs any more: those wholly
** before the snapshot that hold no unit's bytes.  The snapshot carries
** the bytes the state names below the log's first entry (after an
** install, the pieces of the image). */
static int group_take_snapshot(struct group *g) {
  struct wal_snap_writer sw;
  uint64_t t0 = group_mono(g), size = 0;
  int rc = wal_snap_begin(g->wal, &sw, g->applied_index, g->applied_term);
  if (rc == URSULA_OK)
    rc = group_write_snapshot(g, &sw, wal_first_index(g->wal), &size);
  if (rc != URSULA_OK) {
    LOG_W("group %d: snapshot failed (%s); replay stays longer", g->id,
          ursula_strerror(rc));
    return rc;
  }
  g->snapshot_size = size;
  g->tier.moved = 0;
  rc = wal_compact(g->wal, group_compact_upto(g));
  LOG_D("group %d: snapshot at entry %llu (%llu bytes) in %llu ms%s", g->id,
        (unsigned long long)g->applied_index,
        (unsigned long long)g->snapshot_size,
        (unsigned long long)(group_mono(g) - t0),
        rc == URSULA_OK ? "" : "; compaction failed");
  (void)t0;
  return URSULA_OK;
}

URSULA_PRIVATE int group_snapshot(struct group *g) {
  struct raft_in in;
  int rc = group_take_snapshot(g);
  if (rc != URSULA_OK) return rc;
  /* the core lets go of the terms the snapshot covers (its trail); a
  ** cluster's leader of those its followers still need only later, so
  ** that it sends them entries, not the snapshot */
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_COMPACTED;
  in.term = g->applied_term;
  in.index = g->applied_index;
  if (g->cl.n_voters > 1) {
    in.index = group_raft_floor(g);
    if (!raft_term_at(&g->raft, in.index, &in.term)) return URSULA_OK;
  }
  group_step(NULL, g, &in);
  return URSULA_OK;
}

URSULA_PRIVATE int group_write_image(struct group *g) {
  struct wal_snap_writer sw;
  uint64_t size = 0;
  int rc;
  if (g->wal == NULL || g->applied_index == 0) return URSULA_EINVAL;
  rc = wal_image_begin(g->wal, &sw, g->applied_index, g->applied_term);
  if (rc != URSULA_OK) return rc;
  return group_write_snapshot(g, &sw, g->applied_index + 1, &size);
}

/* After applying: keep memory bounded, and snapshot once the log since
** the last snapshot outgrows both the setting and twice the snapshot
** itself (so rewriting it costs at most half of what the log grew); or
** once as much has moved to the cold tier (so the WAL can let it go). */
static void group_after_apply(struct group *g) {
  if (g->wal == NULL) return;
  stream_evict(&g->sm, g->hot_max);
  if ((wal_bytes_since_snapshot(g->wal) >= g->snapshot_bytes &&
       wal_bytes_since_snapshot(g->wal) >= 2 * g->snapshot_size) ||
      (g->tier.moved >= g->snapshot_bytes &&
       g->tier.moved >= 2 * g->snapshot_size))
    group_snapshot(g);
}

/* Batch b's entry at index i, or NULL (its entries have consecutive
** indexes). */
static const struct group_prop *group_batch_at(const struct group_batch *b,
                                               uint64_t i) {
  const struct group_prop *p;
  if (b->n == 0 || i < b->props[0].index || i - b->props[0].index >= b->n)
    return NULL;
  p = &b->props[i - b->props[0].index];
  return p->index == i ? p : NULL;
}

/* Entry i of the log for the apply: from the flight batch if it holds
** it (and it was not replaced since), else read back from the WAL. */
static int group_entry(struct group *g, uint64_t i, struct wal_entry *e) {
  const struct group_batch *b = &g->flight;
  const struct group_prop *p = group_batch_at(b, i);
  uint64_t t;
  if (p != NULL && raft_term_at(&g->raft, i, &t) && t == p->term) {
    e->term = p->term;
    e->index = p->index;
    e->type = p->type;
    e->data = b->log.ptr + p->off;
    e->len = p->len;
    return URSULA_OK;
  }
  if (g->wal == NULL) return URSULA_ENOTFOUND;
  return wal_entry_at(g->wal, i, e);
}

/* Answer the proposals waiting for entry e, now applied with result r
** (g->res): by (term, index), its result if e is the proposal's own
** entry, else 503 (another leader's entry took the index: the proposal
** was not applied, a retry is safe).  held[held_head..n_held) is
** ascending by index; it grows only at a persist (group_hold), never in
** a continuation, so answering from its front is safe. */
static void group_answer(struct core *c, struct group *g,
                         const struct wal_entry *e) {
  while (g->held_head < g->n_held && g->held[g->held_head].index <= e->index) {
    struct group_wait w = g->held[g->held_head++];
    if (w.index == e->index && w.term == e->term)
      w.done(c, g, &g->res, w.arg);
    else
      group_refuse(c, g, w.done, w.arg, 503,
                   "the entry was replaced by another leader's and not "
                   "applied; a retry is safe");
  }
  if (g->held_head == g->n_held) g->held_head = g->n_held = 0;
}

/* Apply the committed entries, in index order, up to the commit index
** and no further than what is durable here, and answer the proposals
** waiting for them (group_answer). */
static void group_apply_committed(struct core *c, struct group *g) {
  uint64_t upto = g->commit < g->raft.durable_index ? g->commit
                                                     : g->raft.durable_index;
  if (GROUP_BUG(1) && g->raft.role == RAFT_LEADER) /* the PLANTED BUG: */
    upto = g->raft.durable_index; /* applied and answered uncommitted */
  while (g->applied_index < upto) {
    struct wal_entry e;
    uint64_t i = g->applied_index + 1;
    int rc = group_entry(g, i, &e);
    if (rc != URSULA_OK) { /* damage: stop here, never apply around it */
      LOG_E("group %d: committed entry %llu cannot be read (%s); nothing "
            "after it is applied",
            g->id, (unsigned long long)i, ursula_strerror(rc));
      break;
    }
    if (group_apply_entry(c, g, &e, &g->res) != URSULA_OK) {
      LOG_E("group %d: a committed entry does not decode", g->id);
      abort(); /* the encoder and decoder disagree: a bug, not bad input */
    }
    group_answer(c, g, &e);
  }
  group_after_apply(g);
  if (g->n_reads > 0) group_serve_reads(c, g);
}

/* The flight batch's proposals are durable here: they wait in held for
** their commit (and so do writes this node forwarded, once the leader
** said where it put them).  A wait at an index some held one has too (or
** below) means the log was cut there (here, or at the leader that took
** a later forward): those held from it on can never commit with their
** term (leader completeness: the leader that gave the lower index does
** not hold them), and are answered 503 now. */
static void group_hold_one(struct core *c, struct group *g,
                           group_done_fn done, void *arg, uint64_t term,
                           uint64_t index) {
  struct group_wait *h;
  while (g->n_held > g->held_head && g->held[g->n_held - 1].index >= index) {
    struct group_wait w = g->held[--g->n_held];
    group_refuse(c, g, w.done, w.arg, 503,
                 "the entry was replaced by another leader's and not "
                 "applied; a retry is safe");
  }
  if (g->n_held == g->cap_held && g->held_head > 0) { /* slide down */
    memmove(g->held, g->held + g->held_head,
            (g->n_held - g->held_head) * sizeof(*g->held));
    g->n_held -= g->held_head;
    g->held_head = 0;
  }
  if (g->n_held == g->cap_held) {
    size_t cap = g->cap_held ? g->cap_held * 2 : 16;
    h = (struct group_wait *)URSULA_REALLOC(g->held, cap * sizeof(*h));
    if (h == NULL) abort(); /* (answers owed: out of memory aborts) */
    g->held = h;
    g->cap_held = cap;
  }
  h = &g->held[g->n_held++];
  h->ticks = 0;
  h->done = done;
  h->arg = arg;
  h->term = term;
  h->index = index;
}

static void group_hold(struct core *c, struct group *g) {
  struct group_batch *b = &g->flight;
  size_t i;
  for (i = 0; i < b->n; i++) {
    const struct group_prop *p = &b->props[i];
    if (p->done != NULL)
      group_hold_one(c, g, p->done, p->arg, p->term, p->index);
  }
}

/* Refuse every proposal of batch b: their entries are not in the log
** (unknown 0), or, in a cluster, may have reached other nodes' logs and
** commit there yet (unknown 1). */
static void group_refuse_batch(struct core *c, struct group *g,
                               struct group_batch *b, const char *reason,
                               int unknown) {
  size_t i, n = b->n, cap = b->cap;
  struct group_prop *props = b->props;
  /* continuations may propose again: into a fresh fill batch */
  b->props = NULL;
  b->n = b->cap = 0;
  b->log.len = 0;
  b->has_hard = 0;
  for (i = 0; i < n; i++)
    if (props[i].done == NULL) /* (a no-op has no one to answer) */
      continue;
    else if (unknown)
      group_refuse_unknown(c, g, props[i].done, props[i].arg, reason);
    else
      group_refuse(c, g, props[i].done, props[i].arg, 503, reason);
  if (b->props == NULL) {
    b->props = props; /* keep the array */
    b->cap = cap;
  } else {
    URSULA_FREE(props);
  }
}

/* A write or sync failed, or a record could not be framed: nothing of
** flight (nor of fill, framed after it) is durable.  The core is told
** (R5: it steps down and takes nothing until the log is verified again,
** group_sweep); every proposal of both batches is refused. */
static void group_lost(struct core *c, struct group *g, int rc) {
  size_t n = g->flight.n + g->fill.n;
  g->wal_error = rc;
  if (!g->storage_failed) {
    g->storage_failed = 1;
    group_step_type(c, g, RAFT_IN_STORAGE_FAILED);
  }
  LOG_E(
      "group %d: WAL write failed (%s): %lu writes refused; the group "
      "takes no writes until its log is verified again",
      g->id, ursula_strerror(rc), (unsigned long)n);
  (void)n; /* when logging is compiled out */
  g->in_flight = 0;
  { /* TOUCHes on their way were lost too: the sweep proposes them anew */
    size_t k;
    struct stream *s;
    for (k = 0; k < g->sm.cap; k++)
      for (s = g->sm.slots[k]; s != NULL; s = s->hnext)
        s->local.touch_index = 0;
  }
  /* flight was written (perhaps in part) when it failed; fill was not.
  ** A cluster's leader sends entries while it writes them (thesis
  ** 10.2.1), so both may be in other nodes' logs: outcome unknown */
  group_refuse_batch(c, g, &g->flight, group_lost_reason(rc),
                     g->cl.n_voters > 1);
  group_refuse_batch(c, g, &g->fill, group_wal_reason(rc), g->cl.n_voters > 1);
}

/* The record bytes of entry i for a message: from a batch (framed, not
** necessarily durable yet: the leader sends while it writes, thesis
** 10.2.1) or read back from the WAL, appended to out. */
static int group_entry_record(struct group *g, uint64_t i, struct buf *out) {
  const struct group_batch *bs[2];
  struct wal_entry e;
  int k, rc;
  bs[0] = &g->fill;
  bs[1] = &g->flight;
  for (k = 0; k < 2; k++) {
    const struct group_prop *p = group_batch_at(bs[k], i);
    if (p != NULL)
      return buf_append(out, bs[k]->log.ptr + p->off - WAL_RECORD_HEADER,
                        WAL_RECORD_HEADER + p->len);
  }
  if ((rc = wal_entry_at(g->wal, i, &e)) != URSULA_OK) return rc;
  return wal_record_put(out, &e);
}

/* Hand one message to the transport, with the records of the entries
** an APPEND carries; one that cannot be built is dropped (Raft sends
** again). */
static void group_transmit(struct group *g, const struct raft_msg *m) {
  uint64_t i;
  int rc = URSULA_OK;
  g->scratch.len = 0;
  if (m->type == RAFT_MSG_APPEND)
    for (i = m->index + 1; i <= m->index + m->n && rc == URSULA_OK; i++)
      rc = group_entry_record(g, i, &g->scratch);
  if (rc != URSULA_OK) {
    LOG_W("group %d: an AppendEntries to node %llu was dropped: entries "
          "from %llu could not be read (%s)",
          g->id, (unsigned long long)m->to,
          (unsigned long long)m->index + 1, ursula_strerror(rc));
    return;
  }
  g->cl.send(g->cl.arg, g, m, g->scratch.ptr, g->scratch.len);
}

/* Hand the queued messages to the transport, in order, each once it may
** go: R1 (the hard state framed before it is durable) and R2 (entry
** (after_term, after_index) is durable here; if that entry was replaced
** meanwhile, the message is dropped).  The first that must wait stops
** the rest (answers keep their order). */
static void group_flush_out(struct group *g) {
  size_t k = 0;
  while (k < g->n_out) {
    const struct group_send *q = &g->outbox[k];
    if (q->hard_seq > g->hard_durable) break;
    if (q->after_index != 0) {
      uint64_t t;
      /* replaced or cut first: an entry a failed write lost (the core's
      ** log was cut back to the durable end at STORAGE_RECOVERED) never
      ** becomes durable, and waiting for it held every later message */
      if (!raft_term_at(&g->raft, q->after_index, &t) ||
          t != q->after_term) {
        k++; /* replaced: dropped */
        continue;
      }
      if (q->after_index > g->raft.durable_index) break;
    }
    group_transmit(g, &q->msg);
    k++;
  }
  if (k > 0) {
    memmove(g->outbox, g->outbox + k, (g->n_out - k) * sizeof(*g->outbox));
    g->n_out -= k;
  }
}

static void group_step_msg(struct core *c, struct group *g,
                           const struct raft_msg *m, const void *records,
                           size_t len) {
  struct raft_in in;
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_MSG;
  in.msg = m;
  g->in_records = records;
  g->in_len = len;
  group_step(c, g, &in);
  g->in_records = NULL;
  g->in_len = 0;
}

/* Step the AppendEntries that waited for the sync, once none is in
** flight (one may start a synchronous write: group_truncate). */
static void group_drain_inbox(struct core *c, struct group *g) {
  size_t k = 0;
  if (g->draining) return; /* (a truncation's write persists in a step) */
  g->draining = 1;
  while (k < g->n_in && !g->in_flight) {
    struct group_inmsg *q = &g->inbox[k++];
    group_step_msg(c, g, &q->msg, q->records.ptr, q->records.len);
    buf_free(&q->records);
  }
  if (k > 0) {
    memmove(g->inbox, g->inbox + k, (g->n_in - k) * sizeof(*g->inbox));
    g->n_in -= k;
  }
  g->draining = 0;
}

/* The flight batch is durable: tell the core its hard state and its
** last entry are (STATE_DURABLE, LOG_DURABLE), hold its proposals for
** their commit, apply what is committed, and let out the messages that
** waited for this. */
static void group_persisted(struct core *c, struct group *g) {
  struct group_batch *b = &g->flight;
  struct raft_in in;
  if (b->has_hard) {
    memset(&in, 0, sizeof(in));
    in.type = RAFT_IN_STATE_DURABLE;
    in.term = b->hard_term;
    in.vote = b->hard_vote;
    g->hard_durable = b->hard_seq;
    b->has_hard = 0;
    group_step(c, g, &in);
  }
  if (b->n > 0) {
    memset(&in, 0, sizeof(in));
    in.type = RAFT_IN_LOG_DURABLE;
    in.term = b->props[b->n - 1].term;
    in.index = b->props[b->n - 1].index;
    group_step(c, g, &in);
  }
  group_hold(c, g);
  group_apply_committed(c, g); /* (reads the flight batch where it can) */
  b->n = 0;
  b->log.len = 0;
  g->in_flight = 0;
  if (g->n_out > 0) group_flush_out(g);
  if (g->n_in > 0) group_drain_inbox(c, g);
  if (g->install_peer != 0) group_install_try(c, g);
}

static int group_fill_pending(const struct group *g) {
  return g->fill.n > 0 || g->fill.has_hard;
}

URSULA_PRIVATE int group_id(const struct group *g) {
  return g->id;
}

URSULA_PRIVATE int group_in_flight(const struct group *g) {
  return g->in_flight;
}

URSULA_PRIVATE int group_drive(struct core *c, struct group *g) {
  struct group_batch tmp;
  int rc, fd = -1;
  g->dirty = 0;
  if (g->n_out > 0) group_flush_out(g); /* before this turn's write */
  if (g->in_flight) return -1;
  if (g->wal != NULL && wal_failed(g->wal) && !g->storage_failed) {
    group_lost(c, g, URSULA_EIO); /* a record could not be framed */
    return -1;
  }
  if (group_fill_pending(g)) {
    /* hand the fill batch to the log store; the next one fills the spare
    ** buffers */
    tmp = g->flight;
    g->flight = g->fill;
    g->fill = tmp;
    g->in_flight = 1;
    if (g->wal == NULL) {
      group_persisted(c, g); /* memory: durable at once */
    } else if ((rc = wal_write(g->wal, g->flight.log.ptr,
                               g->flight.log.len)) != URSULA_OK) {
      group_lost(c, g, rc);
      return -1;
    } else if ((fd = wal_flush_fd(g->wal)) < 0) {
      group_persisted(c, g); /* nothing to sync */
    }
    return fd; /* the caller syncs it: group_synced */
  }
  if (g->commit > g->applied_index) group_apply_committed(c, g);
  return -1;
}

URSULA_PRIVATE void group_synced(struct core *c, struct group *g,
                                 int sync_errno) {
  int rc = wal_flush_done(g->wal, sync_errno);
  if (rc != URSULA_OK) {
    group_lost(c, g, rc);
    return;
  }
  group_persisted(c, g);
  if (group_fill_pending(g) || g->n_out > 0)
    group_mark_dirty(c, g); /* proposed or sent meanwhile */
}

URSULA_PRIVATE int group_join(struct group *g, const struct group_cluster *cl) {
  unsigned i, j, self = 0;
  if (cl->n_voters != 1 && cl->n_voters != 3 && cl->n_voters != 5)
    return URSULA_EINVAL;
  for (i = 0; i < cl->n_voters; i++) {
    if (cl->voters[i] == 0) return URSULA_EINVAL;
    if (cl->voters[i] == cl->node) self++;
    for (j = 0; j < i; j++)
      if (cl->voters[j] == cl->voters[i]) return URSULA_EINVAL;
  }
  if (self != 1) return URSULA_EINVAL;
  g->cl = *cl;
  for (i = 1; i < cl->n_voters; i++) /* ascending: alike on every node */
    for (j = i; j > 0 && g->cl.voters[j - 1] > g->cl.voters[j]; j--) {
      uint64_t t = g->cl.voters[j];
      g->cl.voters[j] = g->cl.voters[j - 1];
      g->cl.voters[j - 1] = t;
    }
  return URSULA_OK;
}

/* LEADERSHIP SPREAD (issue 14: every node leads about G/N groups, so all
** share the writes).  Group g prefers the (g mod N)-th voter in id order.
** Once a second its leader, if it is not that node, hands leadership
** over (TRANSFER: thesis 3.10; the core catches the target up, sends
** TimeoutNow, and gives up after an election timeout) -- only while the
** preferred node is heard from and holds the whole log, so a node that
** is down costs no failed transfers; after a failure heals, leadership
** comes back to it.  All nodes prefer the same node: it is a function
** of g and the voters.  A node that is stopping (its messages say
** LEAVING: raft.c) is not handed anything until it is heard from again
** without the flag (a restart); the core refuses such a TRANSFER too. */
static void group_spread(struct core *c, struct group *g) {
  uint64_t want;
  unsigned i;
  if (g->cl.n_voters <= 1 || g->raft.role != RAFT_LEADER ||
      g->raft.transfer_to != 0)
    return;
  want = g->cl.voters[(unsigned)g->id % g->cl.n_voters];
  if (want == g->cl.node) return;
  for (i = 0; i < g->raft.n_peers; i++) {
    const struct raft_peer *p = &g->raft.peers[i];
    if (p->id == want && p->active && !p->leaving &&
        p->match == g->raft.last_index) {
      struct raft_in in;
      memset(&in, 0, sizeof(in));
      in.type = RAFT_IN_TRANSFER;
      in.peer = want;
      group_step(c, g, &in);
      LOG_D("group %d: leadership to node %llu, which it prefers", g->id,
            (unsigned long long)want);
      return;
    }
  }
}

URSULA_PRIVATE int group_leave(struct core *c, struct group *g) {
  struct raft_in in;
  uint64_t was = g->raft.transfer_to;
  int rc;
  if (g->cl.n_voters <= 1) return GROUP_LEAVE_NONE;
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_LEAVE;
  rc = group_step(c, g, &in);
  if (g->raft.role != RAFT_LEADER) return GROUP_LEAVE_NONE;
  if (rc == URSULA_EAGAIN) return GROUP_LEAVE_STUCK; /* all leaving */
  if (g->raft.transfer_to != 0 && g->raft.transfer_to != was)
    LOG_D("group %d: stopping: leadership to node %llu", g->id,
          (unsigned long long)g->raft.transfer_to);
  return GROUP_LEAVE_LED;
}

URSULA_PRIVATE void group_recv(struct core *c, struct group *g,
                               const struct raft_msg *m, const void *records,
                               size_t len) {
  if ((m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_SNAPSHOT) &&
      (g->in_flight || g->n_in > 0)) {
    struct group_inmsg *q;
    if (g->n_in == g->cap_in) {
      size_t cap = g->cap_in ? g->cap_in * 2 : 8;
      q = (struct group_inmsg *)URSULA_REALLOC(g->inbox, cap * sizeof(*q));
      if (q == NULL) return; /* dropped: the leader sends again */
      g->inbox = q;
      g->cap_in = cap;
    }
    q = &g->inbox[g->n_in];
    memset(q, 0, sizeof(*q));
    q->msg = *m;
    if (buf_append(&q->records, records, len) != URSULA_OK) {
      buf_free(&q->records);
      return;
    }
    g->n_in++;
    return;
  }
  group_step_msg(c, g, m, records, len);
}

/* SNAPSHOTS IN A CLUSTER: sending and installing (the rules are above
** group_peer_floor). */

static struct group_snap_out *group_snap_slot(struct group *g,
                                              uint64_t peer) {
  size_t k;
  struct group_snap_out *free_slot = NULL;
  for (k = 0; k < RAFT_MAX_VOTERS - 1; k++) {
    if (g->snap_out[k].peer == peer) return &g->snap_out[k];
    if (g->snap_out[k].peer == 0 && free_slot == NULL)
      free_slot = &g->snap_out[k];
  }
  return free_slot;
}

/* Close o's stream; the image file goes with the last one (it holds a
** copy of every byte of the group's streams). */
static void group_snap_close(struct group *g, struct group_snap_out *o) {
  size_t k;
  wal_image_close(g->wal, o->fd);
  memset(o, 0, sizeof(*o));
  for (k = 0; k < RAFT_MAX_VOTERS - 1; k++)
    if (g->snap_out[k].peer != 0) return;
  wal_image_remove(g->wal);
  g->image_index = g->image_term = 0;
}

/* SEND_SNAPSHOT(peer, hi): an image at hi or later, opened for the
** stream (pumped by group_snap_tick); if none can be made or opened, the
** core is told SNAP_FAILED after the step. */
static void group_snap_start(struct group *g, const struct raft_action *a) {
  struct group_snap_out *o;
  int rc = URSULA_OK;
  if (g->wal == NULL || g->cl.send_snap == NULL ||
      (o = group_snap_slot(g, a->peer)) == NULL) {
    g->snap_refused = a->peer;
    return;
  }
  if (o->peer != 0) group_snap_close(g, o); /* asked again: start over */
  if (g->image_index < a->hi || g->image_index == 0) {
    uint64_t t0 = group_mono(g);
    rc = group_write_image(g);
    if (rc == URSULA_OK) {
      g->image_index = g->applied_index;
      g->image_term = g->applied_term;
      LOG_I("group %d: wrote a snapshot image at entry %llu in %llu ms",
            g->id, (unsigned long long)g->image_index,
            (unsigned long long)(group_mono(g) - t0));
    }
    (void)t0;
  }
  if (rc == URSULA_OK) rc = wal_image_open(g->wal, &o->fd, &o->bytes);
  if (rc != URSULA_OK) {
    LOG_W("group %d: no snapshot image for node %llu (%s); it stays "
          "behind until the next try",
          g->id, (unsigned long long)a->peer, ursula_strerror(rc));
    memset(o, 0, sizeof(*o));
    g->snap_refused = a->peer;
    return;
  }
  o->peer = a->peer;
  o->at = 0;
  o->index = g->image_index;
  o->term = g->image_term;
  o->moved_ms = group_mono(g);
  LOG_I("group %d: node %llu is behind the log's first entry: sending it "
        "a snapshot image (entry %llu, %llu bytes)",
        g->id, (unsigned long long)o->peer, (unsigned long long)o->index,
        (unsigned long long)o->bytes);
}

/* Send what the link takes of o's image, at most GROUP_SNAP_TICK_BYTES.
** URSULA_OK, or an error reading the file (the stream is dropped). */
static int group_snap_pump(struct group *g, struct group_snap_out *o) {
  uint64_t sent = 0;
  if (buf_reserve(&g->snap_buf, GROUP_SNAP_CHUNK) != URSULA_OK)
    return URSULA_ENOMEM;
  while (o->at < o->bytes && sent < GROUP_SNAP_TICK_BYTES) {
    struct peer_snap ps;
    size_t n = o->bytes - o->at < GROUP_SNAP_CHUNK ? (size_t)(o->bytes - o->at)
                                                   : GROUP_SNAP_CHUNK;
    long k = wal_image_read(g->wal, o->fd, g->snap_buf.ptr, n, o->at);
    if (k != (long)n) return URSULA_EIO;
    memset(&ps, 0, sizeof(ps));
    ps.group = g->id;
    ps.term = g->raft.term;
    ps.snap_index = o->index;
    ps.snap_term = o->term;
    ps.offset = o->at;
    ps.total = o->bytes;
    ps.last = o->at + n == o->bytes;
    ps.data = (const unsigned char *)g->snap_buf.ptr;
    ps.len = n;
    if (g->cl.send_snap(g->cl.arg, g, o->peer, &ps) != URSULA_OK) break;
    o->at += n;
    sent += n;
    o->moved_ms = group_mono(g);
  }
  return URSULA_OK;
}

/* Each tick: the images being sent go on; one whose follower has
** acknowledged it (its core no longer snapshots it), or whose leader no
** longer leads, is closed; one stalled for GROUP_SNAP_STALL_MS fails. */
static void group_snap_tick(struct core *c, struct group *g) {
  size_t k;
  for (k = 0; k < RAFT_MAX_VOTERS - 1; k++) {
    struct group_snap_out *o = &g->snap_out[k];
    const struct raft_peer *p = NULL;
    unsigned i;
    int rc;
    if (o->peer == 0) continue;
    for (i = 0; i < g->raft.n_peers; i++)
      if (g->raft.peers[i].id == o->peer) p = &g->raft.peers[i];
    if (g->raft.role != RAFT_LEADER || p == NULL ||
        p->state != RAFT_SNAPSHOTTING) {
      if (p != NULL && p->match >= o->index)
        LOG_I("group %d: node %llu installed the snapshot image (entry "
              "%llu)",
              g->id, (unsigned long long)o->peer,
              (unsigned long long)o->index);
      group_snap_close(g, o);
      continue;
    }
    rc = group_snap_pump(g, o);
    if (rc != URSULA_OK ||
        group_mono(g) - o->moved_ms >= GROUP_SNAP_STALL_MS) {
      struct raft_in in;
      LOG_W("group %d: the snapshot image for node %llu %s; trying again",
            g->id, (unsigned long long)o->peer,
            rc != URSULA_OK ? "could not be read" : "made no progress");
      memset(&in, 0, sizeof(in));
      in.type = RAFT_IN_SNAP_FAILED;
      in.peer = o->peer;
      group_snap_close(g, o);
      group_step(c, g, &in);
    }
  }
}

static void group_snap_in_drop(struct group *g) {
  if (g->snap_in.open) wal_snap_abort(g->wal, &g->snap_in.sw);
  memset(&g->snap_in, 0, sizeof(g->snap_in));
}

URSULA_PRIVATE void group_recv_snap(struct core *c, struct group *g,
                                    uint64_t from,
                                    const struct peer_snap *sn) {
  struct group_snap_in *in = &g->snap_in;
  struct raft_msg m;
  if (g->wal == NULL || g->cl.n_voters <= 1 || sn->term < g->raft.term)
    return; /* a deposed leader's */
  if (sn->offset == 0) { /* a stream starts (or starts over) */
    group_snap_in_drop(g);
    if (wal_install_begin(g->wal, &in->sw) != URSULA_OK) {
      LOG_W("group %d: cannot write a snapshot image to install", g->id);
      return;
    }
    in->open = 1;
    in->from = from;
    in->term = sn->term;
    in->index = sn->snap_index;
    in->snap_term = sn->snap_term;
    in->total = sn->total;
  } else if (!in->open || in->complete || in->from != from ||
             in->term != sn->term || in->index != sn->snap_index ||
             in->total != sn->total || sn->offset != in->at) {
    return; /* a gap or another stream's: its leader starts over */
  }
  if (wal_install_put(&in->sw, sn->offset, sn->data, sn->len) != URSULA_OK) {
    LOG_W("group %d: writing a snapshot image to install failed", g->id);
    group_snap_in_drop(g);
    return;
  }
  in->at += sn->len;
  if (!sn->last) return;
  if (in->at != in->total) {
    group_snap_in_drop(g);
    return;
  }
  in->complete = 1;
  memset(&m, 0, sizeof(m));
  m.cluster_id = g->cl.cluster_id;
  m.from = from;
  m.to = g->cl.node;
  m.term = sn->term;
  m.type = RAFT_MSG_SNAPSHOT;
  m.index = sn->snap_index;
  m.log_term = sn->snap_term;
  group_recv(c, g, &m, NULL, 0);
}

/* Replace the state machine by the log's snapshot, an image just
** installed at (term, index), and wake the live readers of every stream
** that had some with what the new state holds (a stream that is gone,
** or was made again, wakes them as deleted). */
static int group_load_image(struct core *c, struct group *g, uint64_t index,
                            uint64_t term) {
  struct wal_snap_reader sr;
  struct stream_state fresh;
  struct buf *b = &g->snap_buf, watched;
  char err[URSULA_ERRMSG_LEN];
  size_t i, at;
  long k = 0;
  int rc = wal_snap_open(g->wal, &sr, err);
  if (rc != URSULA_OK) return rc;
  b->len = 0;
  rc = sr.size > SIZE_MAX / 2 ? URSULA_ENOMEM
                              : buf_reserve(b, (size_t)sr.size);
  while (rc == URSULA_OK &&
         (k = wal_snap_read(&sr, b->ptr + b->len, sr.size - b->len)) > 0)
    b->len += (size_t)k;
  if (rc == URSULA_OK && (k < 0 || b->len != sr.size)) rc = URSULA_ECORRUPT;
  wal_snap_close(&sr);
  if (rc != URSULA_OK) return rc;
  stream_state_init(&fresh);
  fresh.read_cold = g->sm.read_cold;
  fresh.read_chunk = g->sm.read_chunk;
  fresh.read_ctx = g->sm.read_ctx;
  if ((rc = stream_restore(&fresh, b->ptr, b->len)) != URSULA_OK) {
    stream_state_free(&fresh);
    return rc;
  }
  memset(&watched, 0, sizeof(watched)); /* (mask, tail, incarnation,
                                           length) then the path */
  for (i = 0; i < g->sm.cap; i++) {
    const struct stream *s;
    for (s = g->sm.slots[i]; s != NULL; s = s->hnext) {
      uint64_t w[4];
      if (s->local.watch_mask == 0) continue;
      w[0] = s->local.watch_mask;
      w[1] = s->tail;
      w[2] = s->incarnation;
      w[3] = s->path_len;
      if (buf_append(&watched, w, sizeof(w)) != URSULA_OK ||
          buf_append(&watched, s->path, s->path_len) != URSULA_OK)
        break; /* out of memory: those readers time out and retry */
    }
  }
  stream_state_free(&g->sm);
  g->sm = fresh;
  g->snapshot_size = b->len;
  g->applied_index = index;
  g->applied_term = term;
  if (g->commit < index) g->commit = index;
  g->image_index = g->image_term = 0; /* an older state's, if any */
  for (at = 0; at + 4 * sizeof(uint64_t) <= watched.len;) {
    uint64_t w[4];
    struct stream_result r;
    struct stream *ns;
    struct str path;
    memcpy(w, watched.ptr + at, sizeof(w));
    at += sizeof(w);
    path.ptr = watched.ptr + at;
    path.len = (size_t)w[3];
    at += path.len;
    ns = stream_find(&g->sm, path);
    memset(&r, 0, offsetof(struct stream_result, garbage));
    r.watch_mask = w[0];
    r.prev_tail = w[1];
    if (ns != NULL && ns->incarnation == w[2] && ns->tail >= w[1])
      ns->local.watch_mask |= w[0];
    else
      r.deleted = 1;
    group_notify(c, g, path, &r);
  }
  buf_free(&watched);
  return URSULA_OK;
}

/* INSTALL_SNAPSHOT(peer, term, index), once nothing is being written
** (called after the step that asked, and after each write): the image
** received, if it is that one, becomes the log's snapshot and the state;
** then SNAP_INSTALLED. */
static void group_install_try(struct core *c, struct group *g) {
  struct group_snap_in *in = &g->snap_in;
  uint64_t peer = g->install_peer, term = g->install_term;
  uint64_t index = g->install_index, t0;
  char err[URSULA_ERRMSG_LEN];
  struct raft_in ri;
  int rc;
  if (c == NULL || g->in_flight || group_fill_pending(g)) return;
  g->install_peer = 0;
  if (!in->open || !in->complete || in->from != peer || in->index != index ||
      in->snap_term != term)
    return; /* not the image received: its leader sends it again */
  t0 = group_mono(g);
  rc = wal_install_commit(g->wal, &in->sw, err);
  in->open = 0; /* (the commit closed or removed the file) */
  group_snap_in_drop(g);
  if (rc != URSULA_OK) {
    LOG_W("group %d: the snapshot image from node %llu was not installed: "
          "%s",
          g->id, (unsigned long long)peer, err[0] ? err : ursula_strerror(rc));
    if (wal_failed(g->wal)) group_lost(c, g, rc);
    return;
  }
  if (!GROUP_BUG(2) && (rc = group_load_image(c, g, index, term)) != URSULA_OK) {
    LOG_E("group %d: the installed snapshot image does not load (%s); the "
          "log is failed until it is verified again",
          g->id, ursula_strerror(rc));
    wal_abandon(g->wal);
    group_lost(c, g, rc);
    return;
  }
  while (g->held_head < g->n_held && g->held[g->held_head].index <= index) {
    struct group_wait w = g->held[g->held_head++];
    group_refuse_unknown(c, g, w.done, w.arg,
                         "this node caught up by a snapshot that may hold "
                         "the write: its outcome is unknown; retry with the "
                         "same Producer-Id/Epoch/Seq to apply it exactly "
                         "once");
  }
  if (g->held_head == g->n_held) g->held_head = g->n_held = 0;
  memset(&ri, 0, sizeof(ri));
  ri.type = RAFT_IN_SNAP_INSTALLED;
  ri.term = term;
  ri.index = index;
  group_step(c, g, &ri);
  LOG_I("group %d: installed a snapshot image from node %llu: entry %llu, "
        "%d streams, in %llu ms",
        g->id, (unsigned long long)peer, (unsigned long long)index,
        (int)g->sm.n, (unsigned long long)(group_mono(g) - t0));
  (void)t0;
  if (g->n_reads > 0) group_serve_reads(c, g);
}

/* FORWARDED WRITES (issue 14: writes on any node; raft.md section 4).
** A client's write that reaches a follower goes to the leader it knows as
** the encoded command (FWD); the leader stamps it with its own clock,
** proposes it, and replies with where the entry went, (term, index), or
** that it refused it.  The follower answers its client when it has
** applied that index itself: the entry's result if it carries that term
** (the apply is deterministic, so the result is the leader's), else 503
** ("replaced", a retry is safe).  No reply within 2 election timeouts, or
** the reply's term ending without the index applied: 503, outcome unknown
** (group_age_held).  A follower that knows no leader answers 503 at once. */
static void group_fwd_refused(struct core *c, struct group *g,
                              group_done_fn done, void *arg, int unknown) {
  if (unknown)
    group_refuse_unknown(c, g, done, arg,
                         "the write went to the stream's group leader, which "
                         "did not answer in time: its outcome is unknown; "
                         "retry with the same Producer-Id/Epoch/Seq to apply "
                         "it exactly once");
  else
    group_refuse(c, g, done, arg, 503,
                 "the stream's group leader refused the write (it no longer "
                 "leads, or its log failed); retry");
}

/* Propose cmd here if this node leads its group (or is a single node),
** else forward it to the leader. */
URSULA_PRIVATE void group_write(struct core *c, struct group *g,
                                const struct cmd *cmd, group_done_fn done,
                                void *arg) {
  struct group_fwd *f;
  if (g->cl.n_voters <= 1 || g->cl.forward == NULL ||
      g->raft.role == RAFT_LEADER || g->raft.leader == 0) {
    group_propose(c, g, cmd, done, arg);
    return;
  }
  if (g->n_fwds == g->cap_fwds) {
    size_t cap = g->cap_fwds ? g->cap_fwds * 2 : 16;
    f = (struct group_fwd *)URSULA_REALLOC(g->fwds, cap * sizeof(*f));
    if (f == NULL) {
      group_refuse(c, g, done, arg, 503, "out of memory");
      return;
    }
    g->fwds = f;
    g->cap_fwds = cap;
  }
  g->fwd_buf.len = 0;
  if (cmd_encode(cmd, &g->fwd_buf) != URSULA_OK) {
    group_refuse(c, g, done, arg, 503, "out of memory");
    return;
  }
  if (g->cl.forward(g->cl.arg, g, g->raft.leader, g->fwd_seq + 1,
                    g->fwd_buf.ptr, g->fwd_buf.len) != URSULA_OK) {
    group_refuse(c, g, done, arg, 503,
                 "the stream's group leader cannot be reached from this "
                 "node now; nothing was written; retry");
    return;
  }
  f = &g->fwds[g->n_fwds++];
  f->req = ++g->fwd_seq;
  f->done = done;
  f->arg = arg;
  f->ticks = 0;
}

URSULA_PRIVATE void group_recv_forward(struct core *c, struct group *g,
                                       uint64_t from, uint64_t req,
                                       const void *cmd, size_t len) {
  struct cmd m;
  struct buf bounds;
  uint64_t term = 0, index = 0;
  int ok = 0;
  memset(&bounds, 0, sizeof(bounds));
  if (g->cl.reply == NULL) return;
  if (g->raft.role == RAFT_LEADER &&
      cmd_decode(cmd, len, &m, &bounds) == URSULA_OK &&
      (m.type == CMD_CREATE || m.type == CMD_APPEND ||
       m.type == CMD_DELETE || m.type == CMD_TOUCH ||
       m.type == CMD_FORK_ACQUIRE || m.type == CMD_FORK_RELEASE)) {
    m.time_ms = group_wall(g); /* the leader stamps what it proposes */
    ok = group_propose_at(c, g, &m, group_ignore_done, NULL, &term, &index);
  }
  buf_free(&bounds);
  g->cl.reply(g->cl.arg, g, from, req, ok, term, index);
}

URSULA_PRIVATE void group_recv_reply(struct core *c, struct group *g,
                                     uint64_t req, int accepted,
                                     uint64_t term, uint64_t index) {
  size_t k;
  for (k = 0; k < g->n_fwds && g->fwds[k].req != req; k++) continue;
  if (k == g->n_fwds) return; /* answered already (timed out) */
  {
    struct group_fwd f = g->fwds[k];
    memmove(g->fwds + k, g->fwds + k + 1,
            (g->n_fwds - k - 1) * sizeof(*g->fwds));
    g->n_fwds--;
    if (!accepted)
      group_fwd_refused(c, g, f.done, f.arg, 0);
    else if (index <= g->applied_index) /* (never: replies come first) */
      group_fwd_refused(c, g, f.done, f.arg, 1);
    else
      group_hold_one(c, g, f.done, f.arg, term, index);
  }
}

/* Forwards without a reply for 2 election timeouts: outcome unknown. */
static void group_age_fwds(struct core *c, struct group *g) {
  size_t k, n = 0;
  for (k = 0; k < g->n_fwds; k++) {
    struct group_fwd f = g->fwds[k];
    if (++f.ticks <= 2 * GROUP_ELECTION_TICKS) {
      g->fwds[n++] = f;
      continue;
    }
    group_fwd_refused(c, g, f.done, f.arg, 1);
  }
  g->n_fwds = n;
}

/* A release was committed (done), or refused by the log: then it is
** kept and proposed again at the next sweep (a refused entry is not in
** the log: wal_recover cuts what a failed write left; a cluster's leader
** refused it before taking it), since the reference it gives back would
** otherwise be held for ever.  One whose outcome is unknown is not: a
** second release of one reference could remove a source a fork still
** reads; a reference held for ever only keeps a source (fork.c). */
static void group_release_done(struct core *c, struct group *g,
                               const struct stream_result *r, void *arg) {
  struct group_release *rel = (struct group_release *)arg;
  (void)c;
  if (!r->refused || r->unknown) { /* (unknown: it may count already) */
    URSULA_FREE(rel);
    return;
  }
  rel->msg.next = g->retry != NULL ? &g->retry->msg : NULL;
  g->retry = rel;
}

static void group_propose_release(struct core *c, struct group *g,
                                  struct group_release *rel) {
  struct cmd cmd;
  memset(&cmd, 0, sizeof(cmd));
  cmd.type = CMD_FORK_RELEASE;
  cmd.time_ms = group_wall(g);
  cmd.path.ptr = rel->path;
  cmd.path.len = rel->path_len;
  group_write(c, g, &cmd, group_release_done, rel); /* no answer */
}

static void group_on_release(struct loop *l, struct loop_msg *m) {
  struct group_release *rel = (struct group_release *)(void *)m;
  struct core *c = (struct core *)loop_get_user(l);
  group_propose_release(c, group_of(c, rel->path, rel->path_len), rel);
}

/* A read on a cluster's follower slides the TTL window at the leader,
** which alone decides expiry (group_sweep): the read's TOUCH is sent to
** the leader at once -- at most one per stream every GROUP_TOUCH_FWD_MS,
** the sweep sends the last one -- and the leader stamps it with its own
** clock.  local.touch_ms is the last read_ms sent.  A TOUCH lost on its
** way (no leader, a leader change) is not sent again: the next read
** sends its own. */
#define GROUP_TOUCH_FWD_MS 100
static void group_touch_forward(struct core *c, struct group *g,
                                struct stream *s, int sweep) {
  struct cmd t;
  uint64_t read = s->local.read_ms;
  if (!s->has_ttl || s->soft_deleted || g->raft.leader == 0) return;
  if (read <= s->last_access_ms || read <= s->local.touch_ms) return;
  if (!sweep && read < s->local.touch_ms + GROUP_TOUCH_FWD_MS) return;
  memset(&t, 0, sizeof(t));
  t.type = CMD_TOUCH;
  t.time_ms = read;
  t.path.ptr = s->path;
  t.path.len = s->path_len;
  t.incarnation = s->incarnation;
  s->local.touch_ms = read;
  group_write(c, g, &t, group_ignore_done, NULL);
}

/* The sweep's TOUCH of s: logged here (a single node, a leader) or sent
** to the leader (a follower). */
static void group_touch_any(struct core *c, struct group *g,
                            struct stream *s) {
  if (g->cl.n_voters > 1 && g->raft.role != RAFT_LEADER)
    group_touch_forward(c, g, s, 1);
  else
    group_touch(c, g, s);
}

/* Writes waiting for their index to be applied, once the term they were
** given in is over (or no leader is known): if the index is not applied
** within 2 election timeouts (raft.md section 4), the outcome is unknown
** to this node -- the entry may yet commit under the next leader, or be
** replaced -- and the client is told so rather than kept waiting. */
static void group_age_held(struct core *c, struct group *g) {
  size_t k, n = g->held_head;
  int led = g->raft.role == RAFT_LEADER || g->raft.leader != 0;
  for (k = g->held_head; k < g->n_held; k++) {
    struct group_wait w = g->held[k];
    if (led && w.term == g->raft.term) {
      g->held[n++] = w;
      continue;
    }
    if (++w.ticks <= 2 * GROUP_ELECTION_TICKS) {
      g->held[n++] = w;
      continue;
    }
    group_refuse_unknown(c, g, w.done, w.arg,
                         "this node stopped leading the stream's group "
                         "before the write was committed: its outcome is "
                         "unknown; retry with the same Producer-Id/Epoch/Seq "
                         "to apply it exactly once");
  }
  g->n_held = n;
  if (g->held_head == g->n_held) g->held_head = g->n_held = 0;
}

URSULA_PRIVATE void group_tick(struct core *c, struct group *g) {
  size_t k;
  if (g->raft.c.n_voters <= 1) return;
  group_step_type(c, g, RAFT_IN_TICK);
  group_snap_tick(c, g);
  if (g->n_held > g->held_head) group_age_held(c, g);
  if (g->n_fwds > 0) group_age_fwds(c, g);
  for (k = 0; k < g->n_reads; k++) /* a lost READ_INDEX is not resent */
    if (++g->reads[k].ticks > 2 * GROUP_ELECTION_TICKS && !g->reads[k].index)
      g->reads[k].refused = 1;
  if (g->n_reads > 0) group_serve_reads(c, g);
}

/* ------------------------------------------------------------ jobs */

static void group_ignore_done(struct core *c, struct group *g,
                              const struct stream_result *r, void *arg) {
  (void)c, (void)g, (void)r;
  job_free((struct job *)arg); /* NULL for commands without a job */
}

URSULA_PRIVATE void group_reply(struct core *c, struct job *j) {
  if (j->origin_core < 0) {
    job_free(j);
    return;
  }
  j->msg.on_msg = api_on_job_done;
  server_send(c, j->origin_core, &j->msg);
}

URSULA_PRIVATE void group_fail(struct core *c, struct job *j, int status,
                               const char *reason) {
  j->status = status;
  j->reason = reason;
  group_reply(c, j);
}

URSULA_PRIVATE void group_copy_result(struct job *j,
                                      const struct stream_result *r) {
  struct buf keep = j->res.releases, keep_g = j->res.garbage;
  j->res = *r;
  j->res.releases = keep;
  j->res.garbage = keep_g;
  j->status = r->status;
  j->reason = r->reason;
  j->tail = r->tail;
  j->closed = r->closed;
}

static void group_fill_meta(struct job *j, const struct stream *s) {
  size_t n = strlen(s->content_type);
  if (n >= sizeof(j->res_type)) n = sizeof(j->res_type) - 1;
  memcpy(j->res_type, s->content_type, n);
  j->res_type[n] = '\0';
  j->json = s->json;
  j->incarnation = s->incarnation;
  j->has_ttl = s->has_ttl;
  j->ttl_s = s->ttl_s;
  j->res_expires[0] = '\0';
  if (s->has_expires && s->expires_text != NULL) {
    n = strlen(s->expires_text);
    if (n >= sizeof(j->res_expires)) n = sizeof(j->res_expires) - 1;
    memcpy(j->res_expires, s->expires_text, n);
    j->res_expires[n] = '\0';
  }
}

URSULA_PRIVATE void group_after_change(struct core *c, struct group *g,
                                       const struct stream_result *r,
                                       void *arg) {
  struct job *j = (struct job *)arg;
  struct stream *s;
  group_copy_result(j, r);
  s = stream_find(&g->sm, j->cmd.path);
  if (s != NULL) group_fill_meta(j, s);
  group_reply(c, j);
}

/* Answer a read of stream bytes that failed with rc: damage is a 500
** that says so (never wrong bytes), anything else a 503. */
static void group_read_failed(struct core *c, struct job *j, int rc) {
  if (rc == URSULA_ECORRUPT)
    group_fail(c, j, 500,
               "the write-ahead log record holding these bytes is damaged "
               "(the server log names the file)");
  else
    group_fail(c, j, 503,
               rc == URSULA_ENOMEM ? "out of memory"
                                   : "could not read the stream from the WAL");
}

/* The stream for a read, or NULL after answering 404 / 410. */
static struct stream *group_read_target(struct core *c, struct group *g,
                                        struct job *j, uint64_t now) {
  struct str path;
  struct stream *s;
  path.ptr = j->path;
  path.len = j->path_len;
  s = stream_find(&g->sm, path);
  if (s != NULL && !s->soft_deleted && group_expired(s, now)) {
    /* log the expiry; answer as the stream will be once it is applied */
    struct cmd e;
    int forked = s->refcount > 0;
    memset(&e, 0, sizeof(e));
    e.type = CMD_EXPIRE;
    e.time_ms = now;
    e.path = path;
    group_propose(c, g, &e, group_ignore_done, NULL);
    group_fail(c, j, forked ? 410 : 404,
               forked ? "stream was deleted" : "stream not found");
    return NULL;
  }
  if (s == NULL) {
    group_fail(c, j, 404, "stream not found");
    return NULL;
  }
  if (s->soft_deleted) {
    group_fail(c, j, 410, "stream was deleted");
    return NULL;
  }
  return s;
}

/* READS OF A FORK.  A fork holds only its own bytes, [base, tail); the
** bytes below base are its source's (stream.c, "Forks"), and the source
** may belong to another group, owned by another core.  A read is planned
** at the owner of the stream it reads, as for any stream (group_read:
** where it starts, where it ends: max_bytes, an append boundary for
** JSON, at most one cold chunk), and reads the part that is the stream's
** own there.  If the range starts below base, the job hops:
**
**   JOB_HOP_PLAN, at the fork's owner: plan [start, end), read its own
**     part [base, end)
**   JOB_HOP_SOURCE, at the owner of the fork's source: read the source's
**     own part of [start, min(end, base)); while the range starts below
**     that stream's base too (a fork of a fork), on to its source
**   JOB_HOP_BACK, at the fork's owner again: if the fork is still the
**     one planned for (path and incarnation), decide Stream-Up-To-Date,
**     Stream-Closed and the live reader's registration, and answer --
**     in one turn, as every read does, so that no wake-up of the fork's
**     readers can overtake the answer.  If it is not (deleted,
**     re-created), the read starts over there.
**
** Each hop checks that the stream it reads is the one named by the
** reference of the fork above it (hop_path, hop_inc): the fork holds a
** reference on its source, which holds one on its own, so while the fork
** lives so do they (a deleted one soft-deleted, with its bytes).  A
** source is read as it is: reads through a fork neither expire it nor
** slide its TTL, and a soft-deleted one serves its forks.  The bytes
** below a fork point never change, so the parts read at different times
** make one consistent answer.  A hop that finds its stream gone answers
** through JOB_HOP_BACK (the fork was deleted meanwhile: 404).
**
** Parts.  Each hop reads its stream's part into a buffer of its own (a
** hop parked on a cold-tier fetch runs again from its start, having
** changed nothing) and puts it in j->data after the parts of the hops
** above (highest first; j->parts has their lengths); the lowest hop
** puts them in order.
**
** JSON.  The append boundaries below a fork's base are its source's,
** cut at the fork point, and the fork point is one (stream.c).  A JSON
** read larger than max_bytes ends on the last boundary that fits (at
** least one append): a hop that finds none at or above its stream's
** base leaves the end to the hop below (hop_flex, hop_limit).
**
** Cold.  A hop's part needs at most one chunk of its stream; a chunk
** that ends before the part does ends the whole read there (the parts
** above are dropped), as any read that starts in moved data ends with
** its chunk. */

static void group_on_read_hop(struct loop *l, struct loop_msg *m);

/* A JSON stream's offsets are its append boundaries: the server hands
** out no other (a JSON read ends on one, group_read_end; a JSON fork
** offset must be one, fork.c).  A read from an offset inside an append,
** start, reads from the start of that append (s's own: start >= base),
** so that every answer is whole JSON messages: the append whose end is
** past the offset is sent whole, as the reference server answers. */
static uint64_t group_json_start(const struct stream *s, uint64_t start) {
  return stream_unit_floor(s, start);
}

/* The end of what a read hop wants of s: [start, *end), at most limit (s's
** tail, or the fork point of the fork above; start < limit).  Without
** flex, limit.  With flex (a JSON read larger than max_bytes), the last
** append boundary b with b - start <= max, or else the first one after
** start: 1 and *end if that is at or above s->base, 0 if it is below
** (the hop below finds it, within min(limit, s->base)). */
static int group_read_end(const struct stream *s, uint64_t start,
                          uint64_t limit, int flex, uint64_t max,
                          uint64_t *end) {
  size_t u;
  uint64_t e;
  if (!flex) {
    *end = limit;
    return 1;
  }
  if (start >= s->base) { /* at least the append at start, cut at limit */
    u = stream_unit_at(s, start);
    e = s->bounds[u] < limit ? s->bounds[u] : limit;
    while (u + 1 < s->n_bounds && s->bounds[u + 1] <= limit &&
           s->bounds[u + 1] - start <= max)
      e = s->bounds[++u];
    *end = e;
    return 1;
  }
  if (s->base > limit || s->base - start > max) return 0;
  e = s->base; /* the fork point is a boundary: the last inherited one */
  for (u = 0;
       u < s->n_bounds && s->bounds[u] <= limit && s->bounds[u] - start <= max;
       u++)
    e = s->bounds[u];
  *end = e;
  return 1;
}

/* The read's parts in order: the lowest, low (taken), then those in
** j->data, last first; into j->data. */
static int group_read_join(struct job *j, struct buf *low) {
  size_t n = j->parts.len / sizeof(uint64_t), i, off = j->data.len;
  int rc = URSULA_OK;
  for (i = n; i-- > 0 && rc == URSULA_OK;) {
    uint64_t len;
    memcpy(&len, j->parts.ptr + i * sizeof(uint64_t), sizeof(len));
    off -= (size_t)len;
    rc = buf_append(low, j->data.ptr + off, (size_t)len);
  }
  buf_free(&j->data);
  j->data = *low;
  memset(low, 0, sizeof(*low));
  j->parts.len = 0;
  return rc;
}

/* Answer j, planned and read, with the state of s (the stream it reads,
** on its owner): up to date, closed, and a live reader registered, all
** in this turn (group_reply posts it before any later wake-up). */
static void group_read_answer(struct core *c, struct job *j, struct stream *s) {
  j->stream_tail = s->tail;
  j->stream_closed = s->closed;
  j->up_to_date = j->tail == s->tail;
  j->closed = s->closed && j->up_to_date;
  if (j->live != JOB_LIVE_NONE && j->up_to_date && !s->closed &&
      j->origin_core >= 0 && j->origin_core < 64) {
    s->local.watch_mask |= (uint64_t)1 << j->origin_core;
    j->registered = 1;
  }
  group_reply(c, j);
}

/* Send j back to the owner of the stream it reads (JOB_HOP_BACK). */
static void group_read_back(struct core *c, struct job *j) {
  j->read_hop = JOB_HOP_BACK;
  j->msg.on_msg = group_on_read_hop;
  group_send(c, &j->msg, j->path, j->path_len);
}

/* One hop of a read at s, the stream read (JOB_HOP_PLAN) or one it
** inherits from (JOB_HOP_SOURCE), on s's owner: what is wanted of s is
** [j->start, limit), its end to be found if j->hop_flex.  Reads s's own
** part; then on to the hop below, or, at the lowest, the parts joined
** and the answer (at once if s is the stream read, else through
** JOB_HOP_BACK).  j is not changed unless the part was read (parked on
** a fetch, the hop runs again). */
static void group_read_hop(struct core *c, struct group *g, struct stream *s,
                           struct job *j, uint64_t limit) {
  uint64_t start = j->start, end = limit, from;
  struct buf part;
  int found = 1, cut = 0, rc = URSULA_OK;
  if (start < limit)
    found = group_read_end(s, start, limit, j->hop_flex, j->max_bytes, &end);
  /* JSON, at the lowest hop: the read starts at the start of the append
  ** that holds the offset (its end was planned from the offset, hop by
  ** hop, so that a fork reads as a stream of the same appends would) */
  if (s->json && start >= s->base && start < limit)
    j->start = start = group_json_start(s, start);
  from = start > s->base ? start : s->base;
  if (found && from < end && from < s->cold_end) {
    /* at most one chunk: no two need be cached */
    size_t k = stream_chunk_at(s, from);
    if (end > s->chunks[k].end) {
      end = s->chunks[k].end;
      cut = 1;
    }
  }
  memset(&part, 0, sizeof(part));
  if (found && from < end) rc = stream_read(&g->sm, s, from, end, &part);
  if (rc == URSULA_EAGAIN) { /* runs again once the chunk is here */
    buf_free(&part);
    if ((rc = group_park(c, g, j)) != URSULA_OK) group_fail_fetch(c, j, rc);
    return;
  }
  if (rc != URSULA_OK) {
    buf_free(&part);
    group_read_failed(c, j, rc);
    return;
  }
  /* the end of the whole read: planned where it starts, found here (a
  ** JSON end), or cut here (the read ends in this chunk: the parts above
  ** go); else it is the plan's, and end only where this hop's part does */
  if (found && (j->read_hop == JOB_HOP_PLAN || j->hop_flex || cut)) {
    if (cut) {
      j->data.len = 0;
      j->parts.len = 0;
    }
    j->tail = end;
  }
  if (found) j->hop_flex = 0;
  if (start < s->base && start < limit) { /* below: s's source's bytes */
    uint64_t len = part.len;
    if (s->fork_source == NULL || s->fork_source_len > URSULA_MAX_PATH_BYTES ||
        ++j->hops > JOB_MAX_HOPS) {
      buf_free(&part);
      group_fail(c, j, 500, "a fork's chain of sources is broken");
      return;
    }
    if (part.len > 0 &&
        (buf_append(&j->data, part.ptr, part.len) != URSULA_OK ||
         buf_append(&j->parts, &len, sizeof(len)) != URSULA_OK)) {
      buf_free(&part);
      group_fail(c, j, 503, "out of memory");
      return;
    }
    buf_free(&part);
    memcpy(j->hop_path, s->fork_source, s->fork_source_len);
    j->hop_path[s->fork_source_len] = '\0';
    j->hop_len = s->fork_source_len;
    j->hop_inc = s->fork_inc;
    limit = found ? end : limit;
    j->hop_limit = limit < s->base ? limit : s->base;
    j->read_hop = JOB_HOP_SOURCE;
    j->msg.on_msg = group_on_read_hop;
    group_send(c, &j->msg, j->hop_path, j->hop_len);
    return;
  }
  /* the lowest part: the read is complete */
  if (j->parts.len > 0) {
    rc = group_read_join(j, &part);
  } else { /* the only part (data holds none) */
    buf_free(&j->data);
    j->data = part;
  }
  if (rc != URSULA_OK) {
    group_fail(c, j, 503, "out of memory");
    return;
  }
  if (j->read_hop == JOB_HOP_PLAN)
    group_read_answer(c, j, s);
  else
    group_read_back(c, j);
}

/* Where a catch-up GET of s from start (<= tail) ends, for a HEAD's ETag
** (HEAD answers what a GET of the same target would, without the bytes):
** the tail, or sooner after max_bytes (on an append boundary for JSON,
** at least one append), and within one cold chunk.  A GET of a fork from
** below its base plans its end hop by hop (its sources' boundaries and
** chunks), which this does not follow: there a HEAD's ETag may differ
** from its GET's, and a conditional GET is then answered in full. */
static uint64_t group_catchup_end(const struct stream *s, uint64_t start,
                                  uint64_t max_bytes) {
  uint64_t end = s->tail;
  if (end - start > max_bytes) {
    if (s->json && s->n_bounds > 0) { /* an append boundary, at least one */
      size_t u = stream_unit_at(s, start);
      end = s->bounds[u];
      while (u + 1 < s->n_bounds && s->bounds[u + 1] - start <= max_bytes)
        end = s->bounds[++u];
    } else {
      end = start + max_bytes;
    }
  }
  if (start >= s->base && start < s->cold_end) { /* one chunk at most */
    size_t k = stream_chunk_at(s, start);
    if (end > s->chunks[k].end) end = s->chunks[k].end;
  }
  return end;
}

static void group_read(struct core *c, struct group *g, struct job *j) {
  uint64_t now = group_wall(g), start, end;
  struct stream *s = group_read_target(c, g, j, now);
  if (s == NULL) return;
  group_fill_meta(j, s);
  j->status = 200;
  j->reason = NULL;
  if (j->op == JOB_HEAD) { /* what a GET would answer, without the bytes */
    start = j->offset_now ? s->tail : j->offset;
    if (start > s->tail) start = s->tail;
    /* (a JSON GET starts at the append that holds the offset, its end
    ** planned from the offset: group_read_hop) */
    j->start = s->json && start >= s->base ? group_json_start(s, start) : start;
    /* a GET answers up to the tail in one response (api.c), unless that
    ** is past catchup_max */
    j->read_end = s->tail - j->start <= j->catchup_max
                      ? s->tail
                      : group_catchup_end(s, start, j->max_bytes);
    j->tail = s->tail;
    j->closed = s->closed;
    group_reply(c, j);
    return;
  }
  /* reads slide the TTL window (not HEAD): logged as a TOUCH by the
  ** sweep, or before the next command on the stream */
  if (now > s->local.read_ms) s->local.read_ms = now;
  if (g->cl.n_voters > 1 && g->raft.role != RAFT_LEADER)
    group_touch_forward(c, g, s, 0);
  /* a job re-run after a fetch, or re-planned, starts over */
  j->read_hop = JOB_HOP_PLAN;
  j->hops = 0;
  j->hop_linear = 0;
  j->data.len = 0;
  j->parts.len = 0;
  start = j->offset_now ? s->tail : j->offset;
  if (start > s->tail) start = s->tail;
  end = s->tail;
  if (j->end_limit > start && j->end_limit < end) end = j->end_limit;
  j->start = j->tail = start;
  /* at most max_bytes: a JSON read on an append boundary (found hop by
  ** hop, group_read_end), another one byte-exact */
  j->hop_flex = s->json && end - start > j->max_bytes;
  if (!s->json && end - start > j->max_bytes) end = start + j->max_bytes;
  group_read_hop(c, g, s, j, end);
}

/* Serve the reads whose barrier passed (in order of arrival: a read is
** never served before one that came earlier), and refuse those no
** leader confirmed. */
static void group_serve_reads(struct core *c, struct group *g) {
  size_t k = 0, n = 0;
  if (g->serving) return; /* (a read may propose: an EXPIRE) */
  g->serving = 1;
  while (k < g->n_reads) {
    struct group_barrier r = g->reads[k];
    if (r.refused) {
      k++;
      group_fail(c, r.j, 503,
                 "the read could not be confirmed with the stream's group "
                 "leader (no leader now?); retry");
    } else if (r.index != 0 && r.index <= g->applied_index) {
      k++;
      r.then(c, g, r.j);
    } else {
      g->reads[n++] = g->reads[k++]; /* waits on */
    }
  }
  g->n_reads = n;
  g->serving = 0;
}

/* A read of a cluster's group is linearizable (issue 14; thesis 6.4,
** ReadIndex): it reflects every append acknowledged, by any node, before
** it arrived.  The core confirms the leader's commit index with a round
** of heartbeats (a follower asks the leader); the read is served once
** this node has applied that far.  A single node serves at once. */
URSULA_PRIVATE void group_barrier(struct core *c, struct group *g,
                                  struct job *j, group_job_fn then) {
  struct group_barrier *r;
  struct raft_in in;
  if (g->raft.c.n_voters <= 1) {
    then(c, g, j);
    return;
  }
  if (g->n_reads == g->cap_reads) {
    size_t cap = g->cap_reads ? g->cap_reads * 2 : 16;
    r = (struct group_barrier *)URSULA_REALLOC(g->reads, cap * sizeof(*r));
    if (r == NULL) {
      group_fail(c, j, 503, "out of memory");
      return;
    }
    g->reads = r;
    g->cap_reads = cap;
  }
  r = &g->reads[g->n_reads++];
  memset(r, 0, sizeof(*r));
  r->j = j;
  r->then = then;
  r->ctx = ++g->read_ctx;
  memset(&in, 0, sizeof(in));
  in.type = RAFT_IN_READ_INDEX;
  in.ctx = r->ctx;
  group_step(c, g, &in);
}

/* JOB_HOP_SOURCE: read what j's fork inherits from the stream at
** hop_path, in g.  A cluster's replica here may not have applied yet
** what the fork's own group had (the two groups' logs are apart): the
** source's bytes below the fork point were committed before the fork
** was, so after a barrier on g they are here (and never change). */
static void group_read_source(struct core *c, struct group *g,
                              struct job *j) {
  struct str path;
  struct stream *s;
  path.ptr = j->hop_path;
  path.len = j->hop_len;
  s = stream_find(&g->sm, path);
  if (s == NULL || s->incarnation != j->hop_inc || j->hop_limit > s->tail) {
    if (g->cl.n_voters > 1 && !j->hop_linear) {
      j->hop_linear = 1;
      group_barrier(c, g, j, group_read_source);
      return;
    }
    /* the fork above let go of it: it went away meanwhile, and its
    ** owner answers */
    j->status = 500;
    j->reason = "a stream this fork inherits from is missing";
    group_read_back(c, j);
    return;
  }
  j->hop_linear = 0; /* (the next hop down looks anew) */
  group_read_hop(c, g, s, j, j->hop_limit);
}

/* A read's job arrives at the owner of a stream it inherits from
** (JOB_HOP_SOURCE; or runs again there after a chunk fetch), or back at
** the owner of the stream it reads (JOB_HOP_BACK). */
static void group_on_read_hop(struct loop *l, struct loop_msg *m) {
  struct core *c = (struct core *)loop_get_user(l);
  struct job *j = (struct job *)(void *)m;
  struct group *g;
  struct stream *s;
  if (j->read_hop == JOB_HOP_BACK) {
    g = group_of(c, j->path, j->path_len);
    s = group_read_target(c, g, j, group_wall(g));
    if (s == NULL) return; /* answered: 404, 410 */
    if (s->incarnation != j->incarnation) { /* another stream now */
      group_read(c, g, j);
      return;
    }
    if (j->status != 200) {
      group_reply(c, j);
      return;
    }
    group_read_answer(c, j, s);
    return;
  }
  g = group_of(c, j->hop_path, j->hop_len);
  if (j->fetch_rc != URSULA_OK) { /* the chunk it waited for failed */
    int rc = j->fetch_rc;
    j->fetch_rc = URSULA_OK;
    if (!group_fetch_again(j, rc)) {
      group_fail_fetch(c, j, rc);
      return;
    }
    j->hop_linear = 1; /* (READS RACING A REMOVAL) */
    group_barrier(c, g, j, group_read_source);
    return;
  }
  group_read_source(c, g, j);
}

/* Point the views of j->cmd at j's own fields. */
URSULA_PRIVATE void group_bind_cmd(struct group *g, struct job *j) {
  struct cmd *m = &j->cmd;
  m->path.ptr = j->path;
  m->path.len = j->path_len;
  m->content_type = util_str(j->content_type);
  m->data.ptr = j->body.ptr ? j->body.ptr : "";
  m->data.len = j->body.len;
  m->expires_text = util_str(j->expires_text);
  m->stream_seq = util_str(j->stream_seq);
  m->producer_id = util_str(j->producer_id);
  m->fork_source = util_str(j->fork_source);
  m->time_ms = group_wall(g);
}

URSULA_PRIVATE void group_run_job(struct core *c, struct job *j) {
  struct group *g = group_of(c, j->path, j->path_len);
  if (j->fetch_rc != URSULA_OK) { /* the chunk it waited for failed */
    int rc = j->fetch_rc;
    j->fetch_rc = URSULA_OK;
    if (!group_fetch_again(j, rc)) {
      group_fail_fetch(c, j, rc);
      return;
    }
  } /* (then from the start, READS RACING A REMOVAL) */
  switch (j->op) {
    case JOB_READ:
    case JOB_HEAD:
      group_barrier(c, g, j, group_read);
      return;
    case JOB_CREATE:
      j->cmd.type = CMD_CREATE;
      break;
    case JOB_APPEND:
      j->cmd.type = CMD_APPEND;
      break;
    case JOB_DELETE:
      j->cmd.type = CMD_DELETE;
      break;
    default:
      group_fail(c, j, 500, "unknown job");
      return;
  }
  group_bind_cmd(g, j);
  group_write(c, g, &j->cmd, group_after_change, j);
}

URSULA_PRIVATE void group_unwatch(struct core *c, int from_core,
                                  const char *path, size_t path_len) {
  struct str p;
  struct stream *s;
  int gid = server_group_of(c->srv, path, path_len);
  p.ptr = path;
  p.len = path_len;
  s = stream_find(&server_group(c->srv, gid)->sm, p);
  if (s != NULL && from_core < 64) s->local.watch_mask &= ~((uint64_t)1 << from_core);
}

/* ------------------------------------------------------------ cold tier */

/* stream_state's read_chunk: the tier's. */
static int group_read_chunk(void *ctx, const struct stream *s,
                            const struct stream_chunk *ch, const char **p) {
  return tier_read_chunk(&((struct group *)ctx)->tier, s, ch, p);
}

URSULA_PRIVATE int group_park(struct core *c, struct group *g, struct job *j) {
  return tier_fetch(c, &g->tier, j);
}

/* READS RACING A REMOVAL.  A replica serves a read after a barrier from
** its applied state; if that names a chunk the read must fetch, the
** stream may be removed meanwhile, and the leader of the removal's term
** deletes the chunk once the removal commits (tier_delete_objects), while
** this replica may not have applied it yet.  So a chunk found missing is
** not yet a loss: the job runs once more from its start, through a new
** barrier (group_barrier).  That barrier's read index is at least the
** commit index of the moment its leader answers it, and the removal was
** committed before its objects went, so this replica then has the
** removal applied: the read answers 404, or reads a stream created there
** since.  Only a chunk missing again is a loss (500).  A single node
** deletes objects after its own apply, so there the job simply runs
** again.  (GROUP_PLANT=6: no second run.) */
URSULA_PRIVATE int group_fetch_again(struct job *j, int rc) {
  if (rc != URSULA_ENOTFOUND || j->fetch_missed || GROUP_BUG(6)) return 0;
  j->fetch_missed = 1;
  return 1;
}

URSULA_PRIVATE void group_fail_fetch(struct core *c, struct job *j, int rc) {
  const char *reason;
  int status = tier_fetch_status(rc, &reason);
  if (rc == URSULA_ENOTFOUND)
    LOG_E("a read of %.*s: a chunk it needs is missing from the cold tier",
          (int)j->path_len, j->path);
  group_fail(c, j, status, reason);
}

/* The tier's lead_term: the term in which this node leads g and has
** applied every entry of earlier terms that will ever commit (tier.c's
** rule 2), else 0.  In a cluster, that is once it has applied an entry
** of its own term; a single node applied its whole log at replay (its
** no-op waits for the first write, group_elect). */
static uint64_t group_lead_term(const struct group *g) {
  if (GROUP_BUG(5)) return g->raft.term; /* the PLANTED BUG: any role */
  if (g->raft.role != RAFT_LEADER || g->raft.storage_failed ||
      g->raft.transfer_to != 0 || /* (its proposals are refused) */
      (g->cl.n_voters > 1 && g->applied_term != g->raft.term))
    return 0;
  return g->raft.term;
}

URSULA_PRIVATE void group_attach_cold(struct group *g, struct cold *cold,
                                      struct cold_cache *cache,
                                      uint64_t flush_age_ms) {
  struct tier *t = &g->tier;
  t->group = g; /* what the tier works on: see tier.c */
  t->id = g->id;
  t->env = g->env;
  t->sm = &g->sm;
  t->wal = g->wal;
  t->propose = group_propose;
  t->lead_term = group_lead_term;
  tier_attach(t, cold, cache, flush_age_ms, g->hot_max);
  g->sm.read_chunk = group_read_chunk;
  g->sm.read_ctx = g;
}

URSULA_PRIVATE uint64_t group_cold_chunks(struct group *g) {
  uint64_t n = 0;
  size_t k;
  const struct stream *s;
  for (k = 0; k < g->sm.cap; k++)
    for (s = g->sm.slots[k]; s != NULL; s = s->hnext) n += s->n_chunks;
  return n;
}

URSULA_PRIVATE void group_sweep(struct core *c, struct group *g) {
  uint64_t now = group_wall(g);
  size_t i;
  if (g->retry != NULL && (g->wal == NULL || !wal_failed(g->wal))) {
    struct group_release *rel = g->retry; /* again, each once */
    g->retry = NULL;
    while (rel != NULL) {
      struct group_release *next = (struct group_release *)(void *)rel->msg.next;
      group_propose_release(c, g, rel);
      rel = next;
    }
  }
  /* segments freed by deletions or moves go now, not at the next
  ** snapshot the log's growth would bring (which may never come) */
  if (g->wal != NULL && !g->in_flight && !wal_failed(g->wal) &&
      wal_can_compact(g->wal, group_compact_upto(g)))
    group_snapshot(g);
  if (g->wal != NULL && wal_failed(g->wal) && !g->in_flight) {
    int rc;
    if (!g->storage_failed) group_lost(c, g, URSULA_EIO); /* (framing) */
    rc = wal_recover(g->wal);
    if (rc == URSULA_OK) {
      LOG_W("group %d: WAL verified again after the failure; writes resume",
            g->id);
    } else if (rc != g->wal_error) {
      g->wal_error = rc;
      LOG_E("group %d: WAL still failed (%s); writes stay refused", g->id,
            ursula_strerror(rc));
    }
  }
  if (g->storage_failed && !g->in_flight &&
      (g->wal == NULL || !wal_failed(g->wal))) {
    /* the log ends at its durable entry again: the core goes on from
    ** there, in a new term (R5: no index of the failed one is reused) */
    struct raft_in in;
    memset(&in, 0, sizeof(in));
    in.type = RAFT_IN_STORAGE_RECOVERED;
    in.term = g->wal != NULL ? wal_last_term(g->wal) : 0;
    in.index = g->wal != NULL ? wal_last_index(g->wal) : 0;
    g->storage_failed = 0;
    group_step(c, g, &in);
    group_elect(c, g);
  }
  for (i = 0; i < g->sm.cap; i++) {
    struct stream *s = g->sm.slots[i];
    while (s != NULL) {
      struct stream *next = s->hnext;
      if (!s->soft_deleted && group_expired(s, now)) {
        struct cmd e;
        memset(&e, 0, sizeof(e));
        e.type = CMD_EXPIRE;
        e.time_ms = now;
        e.path.ptr = s->path;
        e.path.len = s->path_len;
        group_propose(c, g, &e, group_ignore_done, NULL); /* applied later */
      } else {
        group_touch_any(c, g, s); /* at most one TOUCH a second here */
      }
      s = next;
    }
  }
  tier_tick(c, &g->tier);
  group_spread(c, g);
}

/* ------------------------------------------------------------ status */

/* STATUS.  GET /__ursula/cluster (api.c) answers from a struct
** group_gather: a message that visits the cores in turn (core 0, 1, ...),
** each filling in the groups it owns -- read on their own thread, as
** every group's state is -- and its own links to the peers, and then goes
** back to the core of the connection that asked.  So the answer holds one
** snapshot per core, each taken at one moment of that core; groups of
** different cores are read a few loop turns apart.
**
** LEADERSHIP LOG.  A failover changes the leader of many groups at once,
** so a group logs its own change at DEBUG only; it counts why in whys[]
** (group_note_role), and once a second each core logs one INFO line if
** the number of its groups this node leads changed, or leaderships came
** and went (group_leads_report), with the counts by why:
**   won   after no leader was heard for an election timeout (paper 5.2),
**         by a transfer to this node (TimeoutNow, thesis 3.10), or as the
**         only voter (a single node, at start and after a storage
**         failure);
**   lost  for a higher term (paper 5.1), handed over (a transfer this
**         leader began, then its target's higher term, thesis 3.10), no
**         quorum heard for an election timeout (check-quorum, thesis
**         6.2), or a storage failure (R5). */
enum {
  GROUP_WHY_SILENT = 0,
  GROUP_WHY_TRANSFER,
  GROUP_WHY_ALONE,
  GROUP_WHY_HIGHER, /* the first of the losses */
  GROUP_WHY_HANDED,
  GROUP_WHY_QUORUM,
  GROUP_WHY_STORAGE,
  GROUP_WHY_N
};
static const char *const group_why_text[GROUP_WHY_N] = {
    "elected, no leader heard for an election timeout",
    "by a transfer to this node",
    "as the only voter",
    "stepped down for a higher term",
    "handed over to another node",
    "stepped down: no quorum heard",
    "stepped down: storage failed"};

/* Whether in is a TimeoutNow (a leader hands this node its group). */
static int group_in_timeout_now(const struct raft_in *in) {
  return in->type == RAFT_IN_MSG && in->msg != NULL &&
         in->msg->type == RAFT_MSG_TIMEOUT_NOW;
}

/* After a step of input in changed g's role or term (from role, term;
** transfer_to: the transfer the leader had under way, 0: none): note why
** a campaign began, and count a leadership won or lost. */
static void group_note_role(struct group *g, const struct raft_in *in,
                            int role, uint64_t term, uint64_t transfer_to) {
  int now = g->raft.role;
  if (now == RAFT_PRECANDIDATE || now == RAFT_CANDIDATE) {
    if (group_in_timeout_now(in))
      g->campaign_why = GROUP_WHY_TRANSFER;
    else if (in->type == RAFT_IN_TICK)
      g->campaign_why = GROUP_WHY_SILENT;
  } else if (now == RAFT_LEADER && role != RAFT_LEADER) {
    g->whys[g->raft.c.n_voters == 1    ? GROUP_WHY_ALONE
            : group_in_timeout_now(in) ? GROUP_WHY_TRANSFER
                                       : g->campaign_why]++;
  }
  if (role == RAFT_LEADER && now != RAFT_LEADER)
    g->whys[g->raft.term > term ? (transfer_to != 0 ? GROUP_WHY_HANDED
                                                    : GROUP_WHY_HIGHER)
            : in->type == RAFT_IN_STORAGE_FAILED ? GROUP_WHY_STORAGE
                                                 : GROUP_WHY_QUORUM]++;
}

URSULA_PRIVATE void group_status(const struct group *g,
                                 struct group_status *out) {
  memset(out, 0, sizeof(*out));
  out->group = g->id;
  out->role = g->raft.role;
  out->term = g->raft.term;
  out->leader = g->raft.leader;
  if (GROUP_BUG(4) && g->raft.role != RAFT_LEADER) out->leader = g->raft.c.id;
  out->commit = g->raft.commit;
  out->applied = g->applied_index;
  out->last_index = g->raft.last_index;
}

URSULA_PRIVATE void group_leads_report(struct core *c) {
  const struct ursula_server *s = c->srv;
  unsigned whys[GROUP_WHY_N];
  char text[640];
  size_t n = 0;
  int gid, k, led = 0, mine = 0, any = 0;
  memset(whys, 0, sizeof(whys));
  for (gid = c->id; gid < s->n_groups; gid += s->n_cores) {
    struct group *g = s->groups[gid];
    mine++;
    if (g->raft.role == RAFT_LEADER) led++;
    for (k = 0; k < GROUP_WHY_N; k++) {
      whys[k] += g->whys[k];
      any |= g->whys[k] != 0;
      g->whys[k] = 0;
    }
  }
  if (led == c->leads && !any) return;
  text[0] = '\0';
  for (k = 0; k < GROUP_WHY_N && n < sizeof(text); k++)
    if (whys[k] != 0) {
      int w = snprintf(text + n, sizeof(text) - n, "%s%c%u %s",
                       n > 0 ? "; " : "", k < GROUP_WHY_HIGHER ? '+' : '-',
                       whys[k], group_why_text[k]);
      if (w < 0) break;
      n += (size_t)w;
    }
  LOG_I("core %d: this node leads %d of its %d groups (was %d)%s%s", c->id,
        led, mine, c->leads, n > 0 ? ": " : "", text);
  (void)mine; /* when logging is compiled out */
  c->leads = led;
}

static void group_gather_drop(struct loop_msg *m) {
  group_gather_free((struct group_gather *)(void *)m);
}

URSULA_PRIVATE void group_gather_free(struct group_gather *gg) {
  if (gg == NULL) return;
  URSULA_FREE(gg->groups);
  URSULA_FREE(gg);
}

URSULA_PRIVATE struct group_gather *group_gather_new(struct core *c) {
  const struct ursula_server *s = c->srv;
  const struct ursula_config *cfg = &s->cfg;
  struct group_gather *gg =
      (struct group_gather *)URSULA_MALLOC(sizeof(*gg));
  int i;
  if (gg == NULL) return NULL;
  memset(gg, 0, sizeof(*gg));
  gg->groups = (struct group_status *)URSULA_MALLOC(
      sizeof(*gg->groups) * (size_t)s->n_groups);
  if (gg->groups == NULL) {
    URSULA_FREE(gg);
    return NULL;
  }
  memset(gg->groups, 0, sizeof(*gg->groups) * (size_t)s->n_groups);
  gg->msg.on_drop = group_gather_drop;
  gg->origin_core = c->id;
  gg->n_cores = s->n_cores;
  gg->n_groups = s->n_groups;
  gg->cluster = cfg->peer_count > 1;
  gg->node = gg->cluster ? cfg->node_id : GROUP_NODE_ID;
  for (i = 0; gg->cluster && i < cfg->peer_count; i++) {
    struct group_peer_status *ps;
    if (cfg->peers[i].id == cfg->node_id) continue;
    ps = &gg->peers[gg->n_peers++];
    ps->id = cfg->peers[i].id;
    snprintf(ps->address, sizeof(ps->address), "%.256s:%d",
             cfg->peers[i].host, cfg->peers[i].port);
  }
  return gg;
}

/* Core c's links to each peer: up or not, and the newest frame heard. */
static void group_gather_peers(struct core *c, struct group_gather *gg) {
  uint64_t now = loop_now_ms(c->loop);
  int i;
  for (i = 0; i < gg->n_peers; i++) {
    struct group_peer_status *ps = &gg->peers[i];
    struct peer_link_stats st;
    peer_stats(c->srv->peer, c->id, ps->id, &st);
    if (st.up) ps->links_up++;
    if (st.heard_ms != 0) {
      uint64_t age = now > st.heard_ms ? now - st.heard_ms : 0;
      if (!ps->heard || age < ps->heard_age_ms) ps->heard_age_ms = age;
      ps->heard = 1;
    }
  }
}

/* On core gg->at: its part, then on to the next core, or back. */
static void group_gather_visit(struct loop *l, struct loop_msg *m) {
  struct core *c = (struct core *)loop_get_user(l);
  struct group_gather *gg = (struct group_gather *)(void *)m;
  const struct ursula_server *s = c->srv;
  int gid;
  for (gid = c->id; gid < gg->n_groups; gid += gg->n_cores)
    group_status(s->groups[gid], &gg->groups[gid]);
  if (s->peer != NULL) group_gather_peers(c, gg);
  if (++gg->at < gg->n_cores) {
    gg->msg.on_msg = group_gather_visit;
    server_send(c, gg->at, m);
  } else {
    gg->msg.on_msg = gg->done;
    server_send(c, gg->origin_core, m);
  }
}

URSULA_PRIVATE void group_gather_start(struct core *c, struct group_gather *gg,
                                       loop_msg_fn done) {
  gg->done = done;
  gg->at = 0;
  gg->msg.on_msg = group_gather_visit;
  server_send(c, 0, &gg->msg);
}
/**** End src/group.c ****/
/**** Begin src/fork.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/fork.c"
#endif
/*
** fork.c -- making a fork: the protocol of a fork PUT across groups.
**
** A fork (PUT with Stream-Forked-From) is a new stream that begins with
** the bytes of another stream, its source, up to a fork point.  It copies
** none of them: it refers to them (stream.c, "Forks").  Its CREATE names
** the source (path and incarnation) and the fork point, and the fork
** holds a reference on the source (the source's refcount) that keeps
** the source and its bytes, soft-deleted if it is deleted or expires,
** for as long as the fork lives.  Reads of the inherited bytes go to the
** source's owner (group.c, "reads of a fork").  The fork and its source
** may hash to different groups, owned by different cores, and only a
** group's owner touches it, so a fork PUT is a job (struct job) that
** travels between owners.  Its fork_state names the step it is on; each
** step runs on the owner named, in fork_on_job():
**
**   api.c: fork_start()
**     |
**     v
**   FORK_ACQUIRE, at the owner of the source's group
**     looks at the source (read only).  With a Stream-Fork-Sub-Offset
**     at a Stream-Fork-Offset it finds the append that starts there
**     and, for JSON, counts its messages and measures the prefix the
**     sub-offset takes (apply reads no stream bytes).  If that offset is
**     in what the source itself inherited (a fork of a fork), the append
**     is in the source's own sources: FORK_UNIT finds it and the job
**     comes back here (unit_state set).  A JSON source's fork offset
**     must be an append boundary, found the same way: else 400, and
**     nothing is proposed.  Then it proposes
**     FORK_ACQUIRE(source, the incarnation it looked at when it found
**     something, fork offset, sub-offset, content type, what it found:
**     n_msgs, CMD_F_UNIT).
**     |  refused by the apply (404, 409, 400; 503 if the source was
**     |  re-created since the look): answer it.  Done; nothing was taken.
**     v  committed: the source's refcount +1, and the fork point: the
**        fork offset (given, or the source's tail) plus the prefix the
**        sub-offset takes; the source's incarnation, content type, and
**        TTL / Expires-At where the request left them out, into the job
**   FORK_CREATE, at the owner of the fork's group
**     proposes CREATE(fork, source path and incarnation, fork offset,
**     sub-offset, fork point, configuration, the PUT's body): no byte of
**     the source
**     |  created nothing (the path exists: 200 for the same fork, 409 for
**     |  another stream; or the log refused the entry): RELEASE, since
**     |  the existing stream holds no reference of this PUT's
**     v  answer the apply's status (201: the fork holds the reference)
**
**   FORK_UNIT(stream, incarnation, limit), at the owner of a stream the
**     source inherits from (read only).  The append at the fork offset
**     is the one of that stream, cut at limit (the fork point of the
**     fork above it in the chain).  If the offset is in what this stream
**     inherited in turn, on to its source (limit: the lower of limit and
**     this stream's fork point).  Else back to FORK_ACQUIRE with whether
**     an append starts at the offset, its length in Sub-Offset units and,
**     for JSON, the bytes of the prefix; reading those may park the job
**     on a cold-tier fetch of that stream's chunk, after which the step
**     runs again.  A stream not there under the incarnation named: the
**     PUT is answered 503, nothing was taken (while the source lives it
**     holds its own source, so this is a source re-created meanwhile).
**
**   RELEASE(source) is a message of its own, not a job: a struct
**   group_release sent with group_send_release() to the owner of the
**   source's group, which proposes FORK_RELEASE(source) there: refcount
**   -1, and a source that was soft-deleted (or expired) and had no other
**   reference is removed (404 from then on; its own source gets a
**   RELEASE in turn).  It carries the source's path and nothing else, and
**   nothing answers it.  Sent here when a fork is not made after its
**   ACQUIRE, and by group.c as an effect of committed commands that
**   remove a fork (DELETE, EXPIRE, a RELEASE that removes one).
**
** What the job carries between owners: the request (fork path, source
** path, Stream-Fork-Offset and sub-offset in cmd, content type, TTL or
** Expires-At, body, producer headers) and its connection (origin core,
** connection id); during FORK_UNIT the stream it looks at (hop_path,
** hop_inc, hop_limit); after it, what it found (unit_*); after ACQUIRE
** the fork point (cmd.fork_offset: the fork offset; cmd.fork_base: the
** fork point), the source's incarnation (cmd.fork_inc) and the inherited
** configuration.  No stream bytes.
**
** Which steps may be repeated: FORK_UNIT and the look of FORK_ACQUIRE
** only read (what they find of the inherited bytes never changes), so
** they run again freely, after every cold-tier fetch; the ACQUIRE is
** proposed once per PUT.  CREATE is a PUT, idempotent as the protocol
** says: a repeated CREATE of the same fork answers 200 and releases the
** reference its own ACQUIRE took.  ACQUIRE and RELEASE are not: each
** counts once, and each is sent once and never retried (a RELEASE that
** the log refused is proposed again by its group, group.c).
**
** IN A CLUSTER every group is replicated on every node, and the steps
** run on this node's replicas (the owner cores here): each look (the
** look of FORK_ACQUIRE, FORK_UNIT) first passes a read barrier on its
** group (group_barrier), so that it sees every change acknowledged
** before it; each proposal goes through group_write(), which forwards it
** to its group's leader when this node does not lead, and continues once
** this node has applied the entry (the result is this replica's apply,
** the same on every node).  A proposal whose outcome is unknown (a
** leader change, no answer: r->unknown) is treated as made, never as
** refused: an ACQUIRE then keeps its reference, and a CREATE's is not
** given back.  The RELEASE a committed DELETE, EXPIRE or FORK_RELEASE
** owes is sent by one node only, the leader of that entry's term if it
** still leads when it applies it (group.c, group_effects_here); when
** none does, the reference stays taken (the gap below).
**
** If the process dies between steps, nothing acknowledged is lost and no
** stream goes away too early, but a reference may stay taken: after an
** ACQUIRE committed and before the CREATE committed (the client saw no
** answer, and its retry acquires anew), or after a command that removed
** a fork and before the RELEASE it sends is committed at the source's
** group (effects are not replayed).  A source with such a stale reference
** is never removed: deleted, it stays soft-deleted (reads answer 410, not
** 404) and keeps its bytes (its log segments, its cold chunks).  A crash
** during FORK_UNIT or the look leaves nothing.  That is the one known gap
** of this protocol (README, "Durability contract").
*/


static void fork_on_job(struct loop *l, struct loop_msg *m);

/* Send j to the owner of the group of path, to go on in fork_on_job(). */
static void fork_send(struct core *c, struct job *j, const char *path,
                      size_t len) {
  j->msg.on_msg = fork_on_job;
  group_send(c, &j->msg, path, len);
}

URSULA_PRIVATE void fork_start(struct core *c, struct job *j) {
  j->fork_state = FORK_ACQUIRE;
  j->unit_state = 0;
  j->hops = 0;
  fork_send(c, j, j->fork_source, strlen(j->fork_source));
}

/* The fork is not made: give back the reference that ACQUIRE took. */
static void fork_release(struct core *c, const struct job *j) {
  group_send_release(c, j->fork_source, strlen(j->fork_source));
}

/* The group of j's source (on its owner's thread). */
static struct group *fork_source_group(struct core *c, const struct job *j) {
  return group_of(c, j->fork_source, strlen(j->fork_source));
}

/* The append of s that starts at off (off >= s->base: one of s's own),
** cut at limit, into j: unit_found, unit_len (bytes, or JSON messages)
** and unit_prefix (JSON: the bytes of the first cmd.fork_sub messages,
** if there are that many).  A JSON append in the cold tier is read from
** it only if read_cold (else not counted: unit_len 0).  URSULA_OK,
** URSULA_EAGAIN (a chunk is being fetched: park), or a read error. */
static int fork_find_unit(struct stream_state *sm, const struct stream *s,
                          uint64_t off, uint64_t limit, int read_cold,
                          struct job *j) {
  struct buf b;
  size_t u = stream_unit_at(s, off);
  uint64_t end;
  int rc;
  j->unit_found = 0;
  j->unit_len = j->unit_prefix = 0;
  if (u >= s->n_bounds || stream_unit_start(s, u) != off || off >= limit)
    return URSULA_OK;
  end = s->bounds[u] < limit ? s->bounds[u] : limit;
  j->unit_found = 1;
  if (!s->json || j->cmd.fork_sub == 0) { /* (JSON: only found) */
    j->unit_len = end - off;
    return URSULA_OK;
  }
  if (u < s->cold_units && !read_cold) return URSULA_OK;
  memset(&b, 0, sizeof(b));
  rc = stream_read(sm, s, off, end, &b);
  if (rc == URSULA_OK) {
    size_t n =
        json_prefix_len(b.ptr ? b.ptr : "", b.len, (size_t)j->cmd.fork_sub);
    j->unit_len = json_count(b.ptr ? b.ptr : "", b.len);
    if (n != (size_t)-1) j->unit_prefix = n;
  }
  buf_free(&b);
  return rc;
}

/* FORK_ACQUIRE committed (or refused): the fork point, the inherited
** configuration; on to FORK_CREATE. */
static void fork_acquired(struct core *c, struct group *g,
                          const struct stream_result *r, void *arg) {
  struct job *j = (struct job *)arg;
  struct stream *s;
  uint64_t off = r->tail, end = off;
  if (r->status != 200) {
    group_copy_result(j, r);
    group_reply(c, j);
    return;
  }
  s = stream_find(group_state(g), util_str(j->fork_source));
  if (s == NULL) { /* cannot be: the ACQUIRE just applied holds it */
    fork_release(c, j);
    group_fail(c, j, 500, "fork source went away");
    return;
  }
  if (j->cmd.fork_sub > 0) {
    /* JSON: the apply accepted the sub-offset, so the look counted
    ** at least that many messages and measured their bytes */
    end = off + (s->json ? j->unit_prefix : j->cmd.fork_sub);
    if (s->json && j->unit_prefix == 0) {
      fork_release(c, j);
      group_fail(c, j, 500, "fork point not found");
      return;
    }
  }
  j->cmd.fork_offset = off;
  j->cmd.fork_base = end;
  j->cmd.fork_inc = s->incarnation;
  /* the fork's configuration, inherited where the request left it out */
  if (!(j->cmd.flags & CMD_F_CT)) {
    size_t n = strlen(s->content_type);
    if (n >= sizeof(j->content_type)) n = sizeof(j->content_type) - 1;
    memcpy(j->content_type, s->content_type, n);
    j->content_type[n] = '\0';
  }
  if (s->json) j->cmd.flags |= CMD_F_JSON;
  if (!(j->cmd.flags & (CMD_F_TTL | CMD_F_EXPIRES))) {
    if (s->has_ttl) {
      j->cmd.flags |= CMD_F_TTL;
      j->cmd.ttl_s = s->ttl_s;
    } else if (s->has_expires) {
      size_t n = s->expires_text ? strlen(s->expires_text) : 0;
      if (n >= sizeof(j->expires_text)) n = sizeof(j->expires_text) - 1;
      j->cmd.flags |= CMD_F_EXPIRES;
      j->cmd.expires_at_ms = s->expires_at_ms;
      if (n) memcpy(j->expires_text, s->expires_text, n);
      j->expires_text[n] = '\0';
    }
  }
  j->fork_state = FORK_CREATE;
  fork_send(c, j, j->path, j->path_len);
}

/* The fork's CREATE committed (or refused): a CREATE that made no fork
** gives the reference back; then the answer, as for any PUT. */
static void fork_created(struct core *c, struct group *g,
                         const struct stream_result *r, void *arg) {
  /* refused (a failed write, a replaced entry): no fork holds it either.
  ** Not if its outcome is unknown (a cluster): the fork may be made yet,
  ** and hold it; the reference then stays taken (see above) */
  if (r->release_source || (r->refused && !r->unknown))
    fork_release(c, (const struct job *)arg);
  group_after_change(c, g, r, arg);
}

/* Send j to FORK_UNIT at the owner of s's source, which holds the bytes
** below s's fork point; limit: where what the look wants ends. */
static void fork_unit_send(struct core *c, struct job *j,
                           const struct stream *s, uint64_t limit) {
  if (s->fork_source == NULL || s->fork_source_len > URSULA_MAX_PATH_BYTES ||
      ++j->hops > JOB_MAX_HOPS) {
    group_fail(c, j, 500, "a fork's chain of sources is broken");
    return;
  }
  memcpy(j->hop_path, s->fork_source, s->fork_source_len);
  j->hop_path[s->fork_source_len] = '\0';
  j->hop_len = s->fork_source_len;
  j->hop_inc = s->fork_inc;
  j->hop_limit = limit < s->base ? limit : s->base;
  j->fork_state = FORK_UNIT;
  fork_send(c, j, j->hop_path, j->hop_len);
}

/* FORK_ACQUIRE: at the source's owner, look, then propose the
** reference. */
static void fork_acquire(struct core *c, struct group *g, struct job *j) {
  struct stream_state *sm = group_state(g);
  struct stream *s = stream_find(sm, util_str(j->fork_source));
  struct cmd acq;
  memset(&acq, 0, sizeof(acq));
  acq.type = CMD_FORK_ACQUIRE;
  acq.flags = j->cmd.flags & (CMD_F_FORK_OFFSET | CMD_F_CT);
  acq.time_ms = group_wall(g);
  acq.path = util_str(j->fork_source);
  acq.content_type = util_str(j->content_type);
  acq.fork_offset = j->cmd.fork_offset;
  acq.fork_sub = j->cmd.fork_sub;
  /* A JSON stream's offsets are its append boundaries (api.c: a read
  ** from inside an append starts at the append): a fork offset inside one
  ** would cut a message, so it is refused (400; the protocol lets a
  ** server reject fork offsets off an append boundary).  Seen here, not
  ** in the apply, because below s's base the boundaries are its
  ** sources'; they never change, so what the look finds stays true. */
  if (s != NULL && !s->soft_deleted && s->json && acq.fork_sub == 0 &&
      (acq.flags & CMD_F_FORK_OFFSET) && acq.fork_offset <= s->tail) {
    if (acq.fork_offset >= s->base) {
      if (stream_unit_floor(s, acq.fork_offset) != acq.fork_offset) {
        group_fail(c, j, 400, "fork offset is inside a JSON message");
        return;
      }
    } else if (j->unit_state == 0) {
      j->unit_inc = s->incarnation;
      fork_unit_send(c, j, s, s->base);
      return;
    } else if (!j->unit_found) {
      group_fail(c, j, 400, "fork offset is inside a JSON message");
      return;
    }
  }
  /* a sub-offset at a given offset: the append there (any other case
  ** needs nothing found; the apply decides the errors) */
  if (s != NULL && !s->soft_deleted && acq.fork_sub > 0 &&
      (acq.flags & CMD_F_FORK_OFFSET) && acq.fork_offset <= s->tail) {
    if (acq.fork_offset < s->base) { /* one s inherited */
      if (j->unit_state == 0) {
        j->unit_inc = s->incarnation;
        fork_unit_send(c, j, s, s->base);
        return;
      }
      if (j->unit_found) {
        acq.flags |= CMD_F_UNIT;
        acq.n_msgs = j->unit_len;
      }
      acq.incarnation = j->unit_inc; /* re-created since: apply says 503 */
    } else if (s->json) { /* one of s's own: its messages */
      if (fork_find_unit(sm, s, acq.fork_offset, s->tail, 0, j) != URSULA_OK) {
        group_fail(c, j, 503, "could not read the fork source");
        return;
      }
      acq.n_msgs = j->unit_len;
      acq.incarnation = s->incarnation;
    }
  }
  group_write(c, g, &acq, fork_acquired, j);
}

/* FORK_UNIT: at the owner of a stream the source inherits from, find the
** append at the fork offset; back to FORK_ACQUIRE with it. */
static void fork_unit(struct core *c, struct group *g, struct job *j) {
  struct stream_state *sm = group_state(g);
  struct str path;
  struct stream *s;
  uint64_t off = j->cmd.fork_offset;
  int rc;
  path.ptr = j->hop_path;
  path.len = j->hop_len;
  s = stream_find(sm, path);
  if (s == NULL || s->incarnation != j->hop_inc || j->hop_limit > s->tail ||
      off >= j->hop_limit) {
    group_fail(c, j, 503, "the fork source changed meanwhile; retry");
    return;
  }
  if (off < s->base) { /* further down the chain */
    fork_unit_send(c, j, s, j->hop_limit);
    return;
  }
  rc = fork_find_unit(sm, s, off, j->hop_limit, 1, j);
  if (rc == URSULA_EAGAIN) { /* runs again once the chunk is here */
    if ((rc = group_park(c, g, j)) != URSULA_OK) group_fail_fetch(c, j, rc);
    return;
  }
  if (rc != URSULA_OK) {
    group_fail(c, j, rc == URSULA_ECORRUPT ? 500 : 503,
               "could not read the fork source");
    return;
  }
  j->unit_state = 1;
  j->fork_state = FORK_ACQUIRE;
  fork_send(c, j, j->fork_source, strlen(j->fork_source));
}

/* FORK_CREATE: at the fork's owner, propose the CREATE. */
static void fork_create(struct core *c, struct job *j) {
  struct group *g = group_of(c, j->path, j->path_len);
  j->cmd.type = CMD_CREATE;
  group_bind_cmd(g, j);
  group_write(c, g, &j->cmd, fork_created, j);
}

/* A fork job arrives at an owner, or comes back from a chunk fetch. */
static void fork_on_job(struct loop *l, struct loop_msg *m) {
  struct core *c = (struct core *)loop_get_user(l);
  struct job *j = (struct job *)(void *)m;
  int rc = j->fetch_rc;
  if (rc != URSULA_OK) { /* the chunk a look waited for could not be had:
                            nothing was taken yet */
    j->fetch_rc = URSULA_OK;
    if (!group_fetch_again(j, rc)) {
      group_fail_fetch(c, j, rc);
      return;
    } /* (a barrier first: group.c, READS RACING A REMOVAL) */
  }
  switch (j->fork_state) {
    case FORK_ACQUIRE: /* (each look sees what was acknowledged) */
      group_barrier(c, fork_source_group(c, j), j, fork_acquire);
      return;
    case FORK_UNIT:
      group_barrier(c, group_of(c, j->hop_path, j->hop_len), j, fork_unit);
      return;
    case FORK_CREATE:
      fork_create(c, j);
      return;
    default:
      group_fail(c, j, 500, "unknown job");
      return;
  }
}
/**** End src/fork.c ****/
/**** Begin src/conn.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/conn.c"
#endif
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


#define CONN_READ_CHUNK 65536
#define CONN_READ_BODY_MAX (1024u * 1024) /* unparsed input read per turn */
#define CONN_NO_ROOM "too many request bodies in flight, retry"
#define CONN_LINGER_MS 2000
#define CONN_FD_PAUSE_MS 100 /* out of descriptors: accepting pauses */
#define CONN_MAX_OUT (64u * 1024 * 1024) /* plus 2 bodies: never reached */
#define CONN_COMPACT 65536 /* written bytes kept at the front of out */

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
  return cn->core->conns.io;
}

static void conn_set_events(struct conn *cn, int reading, int writing) {
  if (cn->fd < 0) return; /* closed (conn_close) */
  if (cn->peer_eof) reading = 0; /* nothing more can come */
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
  cn->state = CONN_BUSY;
  conn_disarm(cn);
  if (cn->in.len >= URSULA_MAX_HEADER_BYTES) /* (see CONN_BUSY) */
    conn_set_events(cn, 0, cn->want_write);
  buf_free(&cn->raw);
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
    size_t had = cn->in.len;
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

static void conn_slot_free(struct conn_table *t, const struct conn *cn) {
  uint32_t slot = (uint32_t)(cn->id & 0xffffffffu);
  t->slots[slot] = NULL;
  t->free_slots[t->n_free++] = slot;
}

/* Answer a client refused before it is a connection with plain bytes on
** its socket, and close it: 503 with Retry-After (RFC 9110 sections
** 15.6.4 and 10.2.3), the Content-Length counted from the body itself. */
static void conn_refuse(int cfd) {
  static const char body[] = "too many connections, retry\n";
  char busy[256];
  int n;
  ssize_t w;
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
}

/* Make the accepted socket cfd a connection of core c (the server-wide
** count already has it): 0, or -1 if it could not be (cfd is left). */
static int conn_admit(struct loop *l, struct core *c, int cfd) {
  struct conn_table *t = &c->conns;
  struct conn *cn = (struct conn *)URSULA_MALLOC(t->ops->size);
  if (cn == NULL) return -1;
  memset(cn, 0, t->ops->size);
  cn->core = c;
  cn->fd = cfd;
  cn->reading = 1;
  cn->write_ms = loop_now_ms(l);
  if (conn_slot_alloc(t, cn) != 0) {
    URSULA_FREE(cn);
    return -1;
  }
  if (loop_add(l, cfd, LOOP_READ, conn_on_io, cn) != URSULA_OK) {
    conn_slot_free(t, cn);
    URSULA_FREE(cn);
    return -1;
  }
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
static int conn_refuse_spare(struct conn_bounds *b, int lfd) {
  int cfd;
  if (conn_spare_retake(b) != 0) return -1;
  CONN_FLAG_STORE(&b->spare_out, 1);
  close(b->spare_fd);
  b->spare_fd = -1;
  cfd = accept(lfd, NULL, NULL);
  if (cfd >= 0) conn_refuse(cfd);
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
    if (conn_refuse_spare(b, lfd) != 0) break;
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
static int conn_took_spare(struct conn_bounds *b, int cfd) {
  int took;
  pthread_mutex_lock(&b->spare_mu);
  took = b->spare_fd < 0;
  if (took) {
    conn_refuse(cfd);
    (void)conn_spare_retake(b);
  }
  pthread_mutex_unlock(&b->spare_mu);
  return took;
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
    int one = 1;
    int cfd = accept(fd, NULL, NULL);
    if (cfd < 0 && (errno == EMFILE || errno == ENFILE)) {
      conn_on_fd_limit(l, c, fd, errno);
      return;
    }
    if (cfd < 0) return; /* EAGAIN: another core took it, or none left */
    if (CONN_FLAG_LOAD(&b->spare_out) && conn_took_spare(b, cfd)) continue;
    os_set_nonblock(cfd);
    os_set_cloexec(cfd);
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (c->draining ||
        !conn_bounds_add(b, &b->conns, 1, (uint64_t)c->conns.max_conns)) {
      conn_refuse(cfd);
    } else if (conn_admit(l, c, cfd) != 0) {
      conn_bounds_sub(b, &b->conns, 1);
      close(cfd);
    }
  }
}

/* ------------------------------------------------------------ the end */

/* The response is out and the connection ends: see CONN_LINGER. */
static void conn_linger(struct conn *cn) {
  conn_ops(cn)->on_end(cn);
  conn_uncharge(cn);
  if (cn->peer_eof || conn_io(cn)->shutdown(cn->fd) != 0) {
    conn_close(cn); /* (after peer_eof, no input is left unread) */
    return;
  }
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
  loop_timer_cancel(c->loop, &cn->timer);
  loop_del(c->loop, cn->fd);
  conn_io(cn)->close(cn->fd);
  cn->fd = -1;
  conn_count_out(cn, 0);
  conn_slot_free(t, cn);
  t->n_conns--;
  conn_bounds_sub(&c->srv->bounds, &c->srv->bounds.conns, 1);
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
    if (cn->fd >= 0) t->io->close(cn->fd);
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
/**** End src/conn.c ****/
/**** Begin src/sse.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/sse.c"
#endif
/*
** sse.c -- Server-Sent Events framing (WHATWG HTML, "Server-sent events").
**
** Pure functions that append events to a buffer; nothing here knows about
** connections, HTTP chunks or streams' state.  An event is
**
**   event: TYPE\n
**   data:LINE\n        one per line of the payload
**   \n                 the empty line that ends (dispatches) the event
**
** The payload is split into lines at LF, CR and CRLF, the three line ends
** of the specification, so no byte of the payload can end the event or
** start a new field early (an empty payload is one empty data line, and a
** final line end gives a last, empty data line: the client's decoder joins
** the lines with LF and gets the payload back with its line ends as LF).
**
** No space is written after "data:" (as the Durable Streams reference
** server frames it), except before a payload line that itself begins
** with a space: a decoder removes one space after the colon, so that line
** gets one more, and the client sees the line as it was.
**
** What a conforming client decodes is therefore every byte of the payload
** except that a CR or CRLF line end arrives as LF: the event stream format
** has no way to carry a CR in data (a decoder joins data lines with LF),
** which is why the protocol sends binary streams as base64.
**
** An event is decoded as UTF-8 text on its own, so a text payload must not
** end inside a character: sse_utf8_cut() says where a cut may fall.
*/


URSULA_PRIVATE void sse_event(struct buf *out, const char *type, const char *p,
                              size_t len) {
  size_t i, start = 0;
  buf_append_str(out, "event: ");
  buf_append_str(out, type);
  buf_append(out, "\n", 1);
  for (i = 0; i <= len; i++) {
    if (i == len || p[i] == '\n' || p[i] == '\r') {
      buf_append_str(out, "data:");
      if (i > start && p[start] == ' ') buf_append(out, " ", 1);
      buf_append(out, p + start, i - start);
      buf_append(out, "\n", 1);
      if (i < len && p[i] == '\r' && i + 1 < len && p[i + 1] == '\n') i++;
      start = i + 1;
    }
  }
  buf_append(out, "\n", 1);
}

URSULA_PRIVATE size_t sse_utf8_cut(const char *p, size_t len) {
  size_t i = len, back;
  /* find the last byte that is not a continuation byte (10xxxxxx),
  ** at most 4 back: the start of the last character */
  for (back = 0; back < 4 && i > 0; back++, i--) {
    unsigned char ch = (unsigned char)p[i - 1];
    size_t need;
    if ((ch & 0xC0) == 0x80) continue;
    need = ch < 0x80            ? 1
           : (ch & 0xE0) == 0xC0 ? 2
           : (ch & 0xF0) == 0xE0 ? 3
           : (ch & 0xF8) == 0xF0 ? 4
                                 : 1; /* not UTF-8: nothing to keep whole */
    return len - (i - 1) < need ? i - 1 : len;
  }
  return len;
}

URSULA_PRIVATE void sse_comment(struct buf *out, const char *text) {
  buf_append(out, ": ", 2);
  buf_append_str(out, text);
  buf_append(out, "\n\n", 2);
}

URSULA_PRIVATE void sse_control(struct buf *out, uint64_t next_offset,
                                uint64_t cursor, int up_to_date, int closed) {
  buf_printf(out,
             "event: control\ndata:{\"streamNextOffset\":\"%016llu_%016llu\"",
             0ULL, (unsigned long long)next_offset);
  if (closed)
    buf_append_str(out, ",\"streamClosed\":true");
  else
    buf_printf(out, ",\"streamCursor\":\"%llu\"", (unsigned long long)cursor);
  if (up_to_date || closed) buf_append_str(out, ",\"upToDate\":true");
  buf_append_str(out, "}\n\n");
}
/**** End src/sse.c ****/
/**** Begin src/live.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/live.c"
#endif
/*
** live.c -- the live readers of one core, by stream path, and the fan-out
** of the wake-ups that streams' owners send them.
**
** A long-poll or SSE reader that reached the tail waits in its core's
** live table (struct live_table): one struct live_watch per stream path
** with readers here, and the readers waiting on it (struct live_waiter,
** embedded in the protocol layer's connection).  The owner of the
** stream's group wakes the core with one struct notify per change,
** carrying the new bytes (group.c sets live_on_notify as the message's
** handler), and live_on_notify() sorts every waiter of that path:
**
**   LIVE_DATA     it is where the new bytes start: serve it from this one
**                 message (it stays waiting; the handler lets it go)
**   LIVE_BEHIND   it is anywhere else short of the new tail: it left the
**                 wait list and must read again from where it is
**   LIVE_DELETED  the stream is gone: it left the watch
**
** and hands each to the table's on_wake hook (the protocol layer's).
** A waiter already at the new tail is left alone.  A core that gets a
** wake-up for a path it no longer watches tells the owner to stop (lazy
** unwatch), so the owner's list of interested cores is a superset that
** heals itself.
**
** A watch lives while it has waiters or reads in flight (`pending`,
** counted by the protocol layer); live_gc() frees it after that.
** Everything here runs on the core's own thread.
*/


static struct live_watch *live_find(struct live_table *t, const char *path,
                                    size_t len, uint64_t h) {
  struct live_watch *w;
  if (t->cap == 0) return NULL;
  for (w = t->slots[h & (t->cap - 1)]; w != NULL; w = w->hnext) {
    if (w->hash == h && w->path_len == len && memcmp(w->path, path, len) == 0)
      return w;
  }
  return NULL;
}

URSULA_PRIVATE void live_table_init(struct live_table *t,
                                    live_wake_fn on_wake) {
  memset(t, 0, sizeof(*t));
  t->on_wake = on_wake;
}

URSULA_PRIVATE struct live_watch *live_get(struct core *c, const char *path,
                                           size_t len) {
  struct live_table *t = &c->live;
  uint64_t h = util_hash64(path, len);
  struct live_watch *w = live_find(t, path, len, h);
  if (w != NULL) return w;
  if (t->n + 1 > t->cap / 2) {
    size_t cap = t->cap ? t->cap * 2 : 64, i;
    struct live_watch **s =
        (struct live_watch **)URSULA_MALLOC(cap * sizeof(*s));
    if (s == NULL) return NULL;
    for (i = 0; i < cap; i++) s[i] = NULL;
    for (i = 0; i < t->cap; i++) {
      struct live_watch *x, *next;
      for (x = t->slots[i]; x != NULL; x = next) {
        next = x->hnext;
        x->hnext = s[x->hash & (cap - 1)];
        s[x->hash & (cap - 1)] = x;
      }
    }
    URSULA_FREE(t->slots);
    t->slots = s;
    t->cap = cap;
  }
  w = (struct live_watch *)URSULA_MALLOC(sizeof(*w) + len);
  if (w == NULL) return NULL;
  memset(w, 0, sizeof(*w));
  w->hash = h;
  w->path_len = len;
  memcpy(w->path, path, len);
  w->path[len] = '\0';
  w->owner = server_owner_of(c->srv, server_group_of(c->srv, path, len));
  w->hnext = t->slots[h & (t->cap - 1)];
  t->slots[h & (t->cap - 1)] = w;
  t->n++;
  return w;
}

URSULA_PRIVATE void live_gc(struct live_table *t, struct live_watch *w) {
  struct live_watch **pp;
  if (w->waiters != NULL || w->pending > 0) return;
  pp = &t->slots[w->hash & (t->cap - 1)];
  while (*pp != w) pp = &(*pp)->hnext;
  *pp = w->hnext;
  t->n--;
  URSULA_FREE(w);
}

URSULA_PRIVATE void live_unwait(struct live_waiter *x) {
  if (!x->waiting) return;
  if (x->prev)
    x->prev->next = x->next;
  else
    x->watch->waiters = x->next;
  if (x->next) x->next->prev = x->prev;
  x->next = x->prev = NULL;
  x->waiting = 0;
}

URSULA_PRIVATE void live_wait(struct live_waiter *x) {
  struct live_watch *w = x->watch;
  x->prev = NULL;
  x->next = w->waiters;
  if (w->waiters) w->waiters->prev = x;
  w->waiters = x;
  x->waiting = 1;
}

URSULA_PRIVATE void live_leave(struct live_table *t, struct live_waiter *x) {
  if (x->watch == NULL) return;
  live_unwait(x);
  live_gc(t, x->watch);
  x->watch = NULL;
}

/* ------------------------------------------------------------ unwatch */

struct live_unwatch_msg {
  struct loop_msg msg;
  int from;
  size_t len;
  char path[1];
};

static void live_on_unwatch(struct loop *l, struct loop_msg *m) {
  struct live_unwatch_msg *u = (struct live_unwatch_msg *)(void *)m;
  group_unwatch((struct core *)loop_get_user(l), u->from, u->path, u->len);
  URSULA_FREE(u);
}

static void live_send_unwatch(struct core *c, const char *path, size_t len) {
  int owner = server_owner_of(c->srv, server_group_of(c->srv, path, len));
  struct live_unwatch_msg *u =
      (struct live_unwatch_msg *)URSULA_MALLOC(sizeof(*u) + len);
  if (u == NULL) return;
  u->msg.on_msg = live_on_unwatch;
  u->msg.on_drop = NULL;
  u->from = c->id;
  u->len = len;
  memcpy(u->path, path, len);
  u->path[len] = '\0';
  server_send(c, owner, &u->msg);
}

/* ------------------------------------------------------------ fan-out */

URSULA_PRIVATE void live_on_notify(struct loop *l, struct loop_msg *m) {
  struct notify *n = (struct notify *)(void *)m;
  struct core *c = (struct core *)loop_get_user(l);
  struct live_table *t = &c->live;
  struct live_watch *w =
      live_find(t, n->path, n->path_len, util_hash64(n->path, n->path_len));
  struct live_waiter *x, *next;
  if (w == NULL || (w->waiters == NULL && w->pending == 0)) {
    if (!n->deleted) live_send_unwatch(c, n->path, n->path_len);
    if (w != NULL) live_gc(t, w);
    buf_free(&n->data);
    URSULA_FREE(n);
    return;
  }
  for (x = w->waiters; x != NULL; x = next) {
    next = x->next;
    if (n->deleted) {
      live_unwait(x);
      x->watch = NULL;
      t->on_wake(x, LIVE_DELETED, n);
    } else if (x->offset == n->prev_tail && (n->data.len > 0 || n->closed)) {
      t->on_wake(x, LIVE_DATA, n);
    } else if (x->offset != n->tail) {
      /* behind or lost track: read again from where this reader is */
      live_unwait(x);
      t->on_wake(x, LIVE_BEHIND, n);
    }
  }
  live_gc(t, w);
  buf_free(&n->data);
  URSULA_FREE(n);
}

URSULA_PRIVATE void live_table_free(struct live_table *t) {
  size_t k;
  for (k = 0; k < t->cap; k++) {
    struct live_watch *w, *next;
    for (w = t->slots[k]; w != NULL; w = next) {
      next = w->hnext;
      URSULA_FREE(w);
    }
  }
  URSULA_FREE(t->slots);
  memset(t, 0, sizeof(*t));
}
/**** End src/live.c ****/
/**** Begin src/api.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/api.c"
#endif
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
** LIVE READERS.  A long-poll or SSE reader that reached the tail waits in
** this core's live table (live.c), which wakes it through api_on_wake();
** its connection is then CONN_LIVE, and `phase` says which it is.  SSE
** events are framed by sse.c.
*/


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
  buf_printf(conn_out(&cn->c), "HTTP/1.1 %d %s\r\n", status,
             http_status_text(status));
  buf_append(conn_out(&cn->c), api_common_headers,
             sizeof(api_common_headers) - 1);
  if (!cn->c.keep_alive)
    buf_append_str(conn_out(&cn->c), "Connection: close\r\n");
  else if (cn->c.http10) /* persistence in 1.0 is opt-in: confirm it */
    buf_append_str(conn_out(&cn->c), "Connection: keep-alive\r\n");
}

static void api_offset_header(struct api_conn *cn, const char *name,
                              uint64_t off) {
  buf_printf(conn_out(&cn->c), "%s: %016llu_%016llu\r\n", name, 0ULL,
             (unsigned long long)off);
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
  buf_printf(conn_out(&cn->c), "Content-Length: %lu\r\n\r\n",
             (unsigned long)strlen(reason) + 1);
  if (!cn->c.head) buf_printf(conn_out(&cn->c), "%s\n", reason);
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

static void api_read_headers(struct api_conn *cn, const struct job *j,
                             int live) {
  buf_printf(conn_out(&cn->c), "Content-Type: %s\r\n", j->res_type);
  api_offset_header(cn, "Stream-Next-Offset", j->tail);
  if (j->up_to_date)
    buf_append_str(conn_out(&cn->c), "Stream-Up-To-Date: true\r\n");
  if (j->closed) buf_append_str(conn_out(&cn->c), "Stream-Closed: true\r\n");
  if (live && !j->closed)
    buf_printf(conn_out(&cn->c), "Stream-Cursor: %llu\r\n",
               (unsigned long long)api_cursor(cn));
}

/* The ETag of the catch-up bytes [start, end) of a stream incarnation,
** with ":c" when the stream is closed and end is its tail.  GET and HEAD
** both take it from here (RFC 9110 section 9.3.2: a HEAD carries the
** fields its GET would). */
static void api_etag(char *out, size_t cap, uint64_t incarnation,
                     uint64_t start, uint64_t end, int closed_at_end) {
  snprintf(out, cap, "\"%llx:%llu:%llu%s\"", (unsigned long long)incarnation,
           (unsigned long long)start, (unsigned long long)end,
           closed_at_end ? ":c" : "");
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
  if (j->offset_now) {
    if (api_not_modified(cn, NULL)) { /* only "*" can match no ETag */
      api_reply_304(cn, NULL, j->tail, "no-store");
      return;
    }
    api_begin(cn, 200);
    api_read_headers(cn, j, 0);
    buf_append_str(conn_out(&cn->c), "Cache-Control: no-store\r\n");
    api_body_bytes(&body, j->json, "", 0);
    api_end(cn, body.ptr, body.len);
    buf_free(&body);
    return;
  }
  api_etag(etag, sizeof(etag), j->incarnation, j->start, j->tail, j->closed);
  if (api_not_modified(cn, etag)) {
    api_reply_304(cn, etag, j->tail, API_CACHE_CATCHUP);
    return;
  }
  api_begin(cn, 200);
  api_read_headers(cn, j, 0);
  buf_printf(conn_out(&cn->c), "ETag: %s\r\n", etag);
  buf_append_str(conn_out(&cn->c), "Cache-Control: " API_CACHE_CATCHUP "\r\n");
  api_end_data(cn, j->json, &j->data);
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
      end - start > j->catchup_max)
    return 0;
  api_etag(etag, sizeof(etag), j->incarnation, start, end, j->stream_closed);
  if (api_not_modified(cn, etag)) {
    api_reply_304(cn, etag, end, API_CACHE_CATCHUP);
    return 2;
  }
  hj = *j; /* the head as of T */
  hj.tail = end;
  hj.up_to_date = 1;
  hj.closed = j->stream_closed;
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
  if (j->data.len == 0) {
    api_begin(cn, 204);
    api_read_headers(cn, j, 1);
    buf_append_str(conn_out(&cn->c), "Cache-Control: no-cache\r\n\r\n");
    return;
  }
  api_begin(cn, 200);
  api_read_headers(cn, j, 1);
  buf_append_str(conn_out(&cn->c), "Cache-Control: no-cache\r\n");
  api_end_data(cn, j->json, &j->data);
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
  if (len > 0) api_sse_data(cn, &ev, p, len);
  sse_control(&ev, tail, closed ? 0 : api_cursor(cn), up_to_date, closed);
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
    api_begin(cn, 200);
    buf_append_str(conn_out(&cn->c),
                   "Content-Type: text/event-stream\r\n"
                   "Cache-Control: no-cache\r\n");
    conn_begin_chunks(&cn->c);
    if (cn->live_b64)
      buf_append_str(conn_out(&cn->c), "Stream-SSE-Data-Encoding: base64\r\n");
    buf_append_str(conn_out(&cn->c), "\r\n");
  }
  api_sse_send(cn, j->data.ptr, j->data.len, j->tail, j->up_to_date, j->closed);
}

/* ------------------------------------------------------------ job replies */

static void api_reply_change(struct api_conn *cn, struct job *j) {
  const struct stream_result *r = &j->res;
  if (j->status >= 400) {
    api_begin(cn, j->status);
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
  if (!j->offset_now)
    api_etag(etag, sizeof(etag), j->incarnation, j->start, j->read_end,
             j->closed && j->read_end == j->tail);
  if (api_not_modified(cn, etag[0] ? etag : NULL)) {
    api_reply_304(cn, etag[0] ? etag : NULL, j->tail, "no-store");
    return;
  }
  api_begin(cn, 200);
  buf_printf(conn_out(&cn->c), "Content-Type: %s\r\n", j->res_type);
  api_offset_header(cn, "Stream-Next-Offset", j->tail);
  if (etag[0]) buf_printf(conn_out(&cn->c), "ETag: %s\r\n", etag);
  if (j->has_ttl)
    buf_printf(conn_out(&cn->c), "Stream-TTL: %llu\r\n",
               (unsigned long long)j->ttl_s);
  if (j->res_expires[0])
    buf_printf(conn_out(&cn->c), "Stream-Expires-At: %s\r\n", j->res_expires);
  if (j->closed) buf_append_str(conn_out(&cn->c), "Stream-Closed: true\r\n");
  buf_append_str(conn_out(&cn->c), "Cache-Control: no-store\r\n\r\n");
}

/* A read came back for a live connection. */
static void api_live_reply(struct api_conn *cn, struct job *j) {
  int first = cn->c.state == CONN_BUSY;
  if (cn->lw.watch) {
    cn->lw.watch->pending--;
  }
  if (cn->c.closing) return; /* the SSE response ended meanwhile */
  if (j->status != 200) {
    live_leave(&cn->c.core->live, &cn->lw);
    if (first || api_polling(cn)) {
      api_error(cn, j->status, j->reason ? j->reason : "error");
      conn_done(&cn->c);
    } else { /* SSE already answered 200: end it */
      conn_end_chunks(&cn->c);
      conn_flush(&cn->c);
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
  if (j->op == JOB_READ && j->live != JOB_LIVE_NONE) {
    api_live_reply(cn, j);
    job_free(j);
    return;
  }
  if (j->op == JOB_READ && j->end_limit != 0) { /* a later part */
    api_catchup_part(cn, j);
    return;
  }
  if (j->status >= 400 && (j->op == JOB_READ || j->op == JOB_HEAD))
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
    api_begin(cn, 204);
    api_offset_header(cn, "Stream-Next-Offset", j.tail);
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
**   is ignored. */
enum { API_PATH_STREAM = 0, API_PATH_RESERVED, API_PATH_CLUSTER };
#define API_RESERVED_PREFIX "/__ursula"
#define API_CLUSTER_PATH "/__ursula/cluster"
#define API_CLUSTER_ALLOW "GET, HEAD"

/* The path of a request-target: what comes before '?'. */
static struct str api_target_path(struct str t) {
  size_t i = 0;
  while (i < t.len && t.ptr[i] != '?') i++;
  t.len = i;
  return t;
}

/* API_PATH_CLUSTER for "/__ursula/cluster", API_PATH_RESERVED for any
** other reserved path, API_PATH_STREAM for a stream's. */
static int api_reserved(struct str path) {
  size_t n = sizeof(API_RESERVED_PREFIX) - 1;
  if (path.len < n || memcmp(path.ptr, API_RESERVED_PREFIX, n) != 0 ||
      (path.len > n && path.ptr[n] != '/'))
    return API_PATH_STREAM;
  return util_str_eq(path, API_CLUSTER_PATH) ? API_PATH_CLUSTER
                                             : API_PATH_RESERVED;
}

/* Fill j (op JOB_STATUS) for a request to a reserved path: served (GET
** or HEAD of /__ursula/cluster: status 0), 405 or 404. */
static void api_build_reserved(struct str path, int method, struct job *j) {
  j->op = JOB_STATUS;
  if (api_reserved(path) != API_PATH_CLUSTER) {
    j->status = 404;
    j->reason = "no such path: /__ursula/ is reserved for the server";
  } else if (method != API_GET && method != API_HEAD_M) {
    j->status = 405;
    j->reason = "method not allowed (GET, HEAD)";
  }
}

/* s as a JSON string (RFC 8259 section 7): '"' and '\\' escaped, the
** control characters (and DEL) as \u00XX, every other byte as it is. */
static int api_json_string(struct buf *out, const char *s) {
  int rc = buf_append_str(out, "\"");
  for (; *s != '\0' && rc == URSULA_OK; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      rc = buf_printf(out, "\\%c", ch);
    else if (ch < 0x20 || ch == 0x7f)
      rc = buf_printf(out, "\\u%04x", (unsigned)ch);
    else
      rc = buf_append(out, s, 1);
  }
  return rc == URSULA_OK ? buf_append_str(out, "\"") : rc;
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
    if (rc == URSULA_OK) rc = api_json_string(out, p->address);
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
  if (api_status_json(&body, gg) != URSULA_OK) {
    api_error(cn, 503, "out of memory");
  } else {
    api_begin(cn, 200);
    buf_append_str(conn_out(&cn->c),
                   "Content-Type: application/json\r\n"
                   "Cache-Control: no-store\r\n");
    api_end(cn, body.ptr, body.len);
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
  cn->gather = gg;
  conn_busy(&cn->c);
  group_gather_start(cn->c.core, gg, api_on_status_done);
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
#define API_PARAM_MAX 64
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
    if (q->offset.n == 0) bad = "live reads need an offset";
  }
  /* a cursor that is missing, repeated or not a number up to 2^53 - 1
  ** (what clients can hold exactly) is no cursor (protocol 2.14) */
  *has_cursor = q->cursor.n == 1 && !q->cursor.too_long &&
                util_parse_u64(api_param_str(&q->cursor),
                               ((uint64_t)1 << 53) - 1, cursor) == 0;
  return bad;
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
  memcpy(j->path, q->path.ptr, q->path.len);
  j->path_len = q->path.len;
  *has_cursor = 0;
  if (api_reserved(q->path) != API_PATH_STREAM) {
    api_build_reserved(q->path, h->method, j);
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

/* conn.c's on_head hook: check the head, and either answer at once or
** make the job and read the body. */
static int api_on_head(struct conn *c, const struct http_request *req) {
  struct api_conn *cn = (struct api_conn *)(void *)c;
  const struct ursula_config *cfg = &c->core->srv->cfg;
  struct api_head head;
  const char *reason = NULL;
  struct job *j;
  int status;
  api_keep_head(cn, req);
  cn->allow = api_reserved(api_target_path(req->target)) == API_PATH_CLUSTER
                  ? API_CLUSTER_ALLOW
                  : NULL;
  if ((status = api_parse_head(req, &head, &reason)) != 0) {
    conn_fatal(c, status, reason);
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
  if (j->op == 0) { /* OPTIONS: CORS preflight */
    job_free(j);
    api_begin(cn, 204);
    buf_append(conn_out(&cn->c), api_preflight_headers,
               sizeof(api_preflight_headers) - 1);
    buf_append_str(conn_out(&cn->c), "\r\n");
    conn_done(&cn->c);
    return;
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
    } else {
      /* hand the body over without copying */
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
  }
  api_send_job(cn, j);
}

/* conn.c's on_abort hook: the request being read is dropped. */
static void api_on_abort(struct conn *c) {
  struct api_conn *cn = (struct api_conn *)(void *)c;
  job_free(cn->job);
  cn->job = NULL;
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
/**** End src/api.c ****/
/**** Begin src/server.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/server.c"
#endif
/*
** server.c -- the server object: cores, groups, startup and shutdown.
**
** THREADING.  There are core_count cores; each is one thread running one
** event loop (loop.c).  Every core accepts connections on the shared
** listening socket and serves them to the end.  Stream state is split into
** raft_group_count groups; group g is owned by core g % core_count, and
** only that core's thread touches it.  Cores talk only by messages:
**
**     core A (connection)                core B (owns the stream's group)
**       parse request -> job  --mailbox-->  propose / apply / read
**       write response       <--mailbox--  job with its result
**
** A message to the core itself skips the mailbox: it is queued locally and
** run at the end of the current loop turn.  No lock is taken on the
** request path other than the mailbox's queue lock.
**
** WITHOUT THREADS (URSULA_ENABLE_THREADS=0) there is one core, whose loop
** runs in ursula_server_wait() on the caller, and the server starts no
** thread at all: recovery replays the groups one after another, a WAL
** sync runs on the core itself (its result still comes back as a message
** on the next turn, as from a syncer thread), and the cold tier carries
** out each request on the core (cold.c).
**
** ENVIRONMENT.  A server reads clocks and reaches the file system through
** its env (os.c): env_real() for ursula_server_start(), a simulator's
** own through server_start().  Its loops get it, and so does the cold
** tier.  (The lock on --wal-dir is a real flock() on the real directory.)
**
** SHUTDOWN.  ursula_server_stop() raises a flag and wakes every loop.  Each
** core then stops accepting, closes idle connections, ends live readers
** and finishes requests in flight (conn_drain).  A core with no connections
** left counts itself drained, but keeps serving messages for the groups it
** owns until every core is drained; then all loops stop.  A node of a
** cluster first hands over the leadership of its groups (GRACEFUL STOP,
** below), serving all the while; a second ursula_server_stop() cuts that
** short (SECOND STOP, below).
**
** PLANTED BUGS.  -DSERVER_PLANT=n (default 0) compiles in one, to prove
** the tests catch it (make test-rolling-plants):
**   1  a node of a cluster stops at once, handing nothing over (the stop
**      before issue 14's graceful one): its groups wait for an election
**      timeout and an election, and the rolling restart test sees their
**      503s;
**   2  a second ursula_server_stop() during the handover is ignored (a
**      second SIGTERM or Ctrl-C did nothing before issue 14's SECOND
**      STOP): the node goes on handing over, and test/cluster.sh's
**      second-signal check sees it exit late, without the line.
*/


#ifndef SERVER_PLANT
#define SERVER_PLANT 0
#endif
#define SERVER_BUG(n) (SERVER_PLANT == (n))

URSULA_PRIVATE int server_group_of(const struct ursula_server *s,
                                   const char *path, size_t len) {
  return (int)(util_hash64(path, len) % (uint64_t)s->n_groups);
}

URSULA_PRIVATE struct group *server_group(const struct ursula_server *s,
                                          int gid) {
  return s->groups[gid];
}

URSULA_PRIVATE int server_owner_of(const struct ursula_server *s, int gid) {
  return gid % s->n_cores;
}

URSULA_PRIVATE void server_send(struct core *from, int to, struct loop_msg *m) {
  m->next = NULL;
  if (from->id == to) {
    if (from->local_tail)
      from->local_tail->next = m;
    else
      from->local_head = m;
    from->local_tail = m;
  } else {
    loop_post(from->srv->cores[to].loop, m);
  }
}

static void server_check_drained(struct core *c) {
  struct ursula_server *s = c->srv;
  int i, all;
  if (!c->draining || c->drained || conn_table_count(&c->conns) > 0 ||
      c->n_flights > 0)
    return;
  c->drained = 1;
  pthread_mutex_lock(&s->mu);
  all = ++s->n_drained == s->n_cores;
  pthread_mutex_unlock(&s->mu);
  if (all) {
    for (i = 0; i < s->n_cores; i++) loop_stop(s->cores[i].loop);
  }
}

/* GRACEFUL STOP (issue 14).  A node of a cluster that is asked to stop
** (SIGTERM, SIGINT: ursula_server_stop) first hands the leadership of the
** groups it leads to other members, so that writes go on without the
** election timeout a vanished leader costs: each core tells its groups
** LEAVE at once and at every tick (raft.c, LEAVING: a transfer, thesis
** 3.10, to a member that holds the log, tried again if one is abandoned;
** the node campaigns no more, and its messages tell the others, whose
** leadership spread then skips it).  Meanwhile it serves as before:
** its clients' writes are forwarded to the new leaders.  Once no core
** leads a group, or every group it still leads has nobody to go to (the
** other members are stopping too: a whole cluster shut down at once), or
** SERVER_LEAVE_MS have passed, it stops as a single node does.  It logs
** how many groups it still leads once a second, and the outcome. */
#define SERVER_LEAVE_MS 5000

/* Stop now: every core drains (SHUTDOWN). */
static void server_stop_now(struct ursula_server *s) {
  int i;
  s->stop_requested = 1;
  for (i = 0; i < s->n_cores; i++) loop_wake(s->cores[i].loop);
}

/* One look of core c at its groups during the handover (at its start,
** then every tick): LEAVE to each, and the count it still leads; the
** look that finds every core's count 0, or the bound passed, stops. */
static void server_leave_step(struct core *c) {
  struct ursula_server *s = c->srv;
  uint64_t now = loop_now_ms(c->loop), waited;
  int g, i, led = 0, stuck = 0, total = 0, total_stuck = 0, stop = 0;
  int log_n = -1, first = 0;
  for (g = c->id; g < s->n_groups; g += s->n_cores) {
    int k = group_leave(c, s->groups[g]);
    led += k != GROUP_LEAVE_NONE;
    stuck += k == GROUP_LEAVE_STUCK;
  }
  pthread_mutex_lock(&s->mu);
  if (!c->leave_counted) {
    c->leave_counted = 1;
    s->leave_counted++;
  }
  c->leave_led = led;
  c->leave_stuck = stuck;
  if (s->leave_start_ms == 0) {
    s->leave_start_ms = now != 0 ? now : 1;
    first = 1;
  }
  for (i = 0; i < s->n_cores; i++) {
    total += s->cores[i].leave_led;
    total_stuck += s->cores[i].leave_stuck;
  }
  waited = now > s->leave_start_ms ? now - s->leave_start_ms : 0;
  if (!s->leave_done) {
    if ((s->leave_counted == s->n_cores && total == total_stuck) ||
        waited >= SERVER_LEAVE_MS) {
      s->leave_done = 1;
      stop = 1;
    } else if (s->leave_counted == s->n_cores &&
               s->leave_logged != waited / 1000 + 1) {
      s->leave_logged = waited / 1000 + 1;
      log_n = total;
    }
  }
  pthread_mutex_unlock(&s->mu);
  if (first)
    LOG_I("stopping: handing over the leadership of this node's groups "
          "first (at most %d ms)", SERVER_LEAVE_MS);
  if (log_n >= 0) LOG_I("draining: %d groups still led", log_n);
  if (!stop) return;
  if (total == 0)
    LOG_I("draining: no group led after %llu ms; stopping",
          (unsigned long long)waited);
  else if (total == total_stuck)
    LOG_W("draining: %d groups still led after %llu ms, and every other "
          "member is stopping too; stopping", total,
          (unsigned long long)waited);
  else
    LOG_W("draining: %d groups still led after %llu ms; stopping anyway "
          "(the others elect their leaders)",
          total, (unsigned long long)waited);
  server_stop_now(s);
}

/* SECOND STOP.  A second ursula_server_stop() during the handover (a
** second SIGTERM or Ctrl-C: main.c passes every signal on) ends it at
** once: the node stops as a single node does (SHUTDOWN: requests in
** flight are finished, and an append is acknowledged only once it is
** synced, so nothing acknowledged is lost), and for the groups it still
** leads the other members elect leaders after an election timeout, as
** after kill -9.  ursula_server_stop() only raises stop_hurried (it must
** stay async-signal-safe); each core, as it starts to drain, counts the
** groups it still leads, and the last core to count logs the one line.
** (A handover that ends by itself at the very moment of the second stop
** may leave a core draining uncounted: then the handover's own line is
** the last word, and this one is not logged.) */
static void server_hurry_count(struct core *c) {
  struct ursula_server *s = c->srv;
  struct group_status st;
  int g, led = 0, last, total;
  for (g = c->id; g < s->n_groups; g += s->n_cores) {
    group_status(s->groups[g], &st);
    led += st.role == RAFT_LEADER;
  }
  pthread_mutex_lock(&s->mu);
  s->hurry_led += led;
  last = ++s->hurry_counted == s->n_cores;
  total = s->hurry_led;
  pthread_mutex_unlock(&s->mu);
  (void)total; /* when logging is compiled out */
  if (last)
    LOG_W("second stop: stopping now, %d groups still led (their other "
          "members elect new leaders)", total);
}

/* ------------------------------------------------------------ syncs

   GROUP COMMIT, PIPELINED.  At the end of a loop turn a core starts a
   commit of every group it owns that has new entries and no batch in
   flight: it writes the entries to the group's WAL and queues the sync
   for the syncer threads; the core goes on serving, and each finished
   sync comes back to it as a message, on which the group applies and
   answers its batch (group_synced).  Syncs of many groups overlap
   -- the file system commits concurrent syncs together -- and no core
   ever waits for the slowest of them.  A WAL is touched by one thread at
   a time: the syncer thread only calls sync() on the descriptor, all
   bookkeeping stays with the owner (wal_flush_fd / wal_flush_done). */

struct server_sync {
  struct loop_msg msg; /* posted back to the owner when done */
  struct server_sync *next;
  struct loop *owner;
  int gid;
  int fd;
  struct os_fs *fs; /* the server env's */
  int sync_errno;   /* 0: the sync worked */
};

struct server_syncer {
  pthread_mutex_t mu;
  pthread_cond_t work; /* a sync was queued, or stop */
  struct server_sync *head, *tail;
  int stop;
  int n_threads;
  pthread_t threads[URSULA_SYNC_THREADS];
};

#if URSULA_ENABLE_THREADS
static void *server_syncer_main(void *arg) {
  struct server_syncer *y = (struct server_syncer *)arg;
  pthread_mutex_lock(&y->mu);
  for (;;) {
    struct server_sync *q;
    while (y->head == NULL && !y->stop) pthread_cond_wait(&y->work, &y->mu);
    if (y->head == NULL) break; /* stopping, and nothing is queued */
    q = y->head;
    y->head = q->next;
    if (y->head == NULL) y->tail = NULL;
    pthread_mutex_unlock(&y->mu);
    q->sync_errno = q->fs->sync(q->fd) != 0 ? errno : 0;
    loop_post(q->owner, &q->msg);
    pthread_mutex_lock(&y->mu);
  }
  pthread_mutex_unlock(&y->mu);
  return NULL;
}
#endif

static void server_syncer_stop(struct server_syncer *y) {
  int i;
  if (y == NULL) return;
  pthread_mutex_lock(&y->mu);
  y->stop = 1;
  pthread_cond_broadcast(&y->work);
  pthread_mutex_unlock(&y->mu);
  for (i = 0; i < y->n_threads; i++) pthread_join(y->threads[i], NULL);
  pthread_cond_destroy(&y->work);
  pthread_mutex_destroy(&y->mu);
  URSULA_FREE(y);
}

/* Start the syncer threads; without threads, none (s->syncer stays NULL
** and the cores sync themselves). */
static int server_syncer_start(struct ursula_server *s, char *err) {
#if URSULA_ENABLE_THREADS
  struct server_syncer *y;
  int i;
  y = (struct server_syncer *)URSULA_MALLOC(sizeof(*y));
  if (y == NULL) return URSULA_ENOMEM;
  memset(y, 0, sizeof(*y));
  pthread_mutex_init(&y->mu, NULL);
  pthread_cond_init(&y->work, NULL);
  for (i = 0; i < URSULA_SYNC_THREADS && i < s->n_groups; i++) {
    if (pthread_create(&y->threads[i], NULL, server_syncer_main, y) != 0) {
      snprintf(err, URSULA_ERRMSG_LEN, "pthread_create: %s", strerror(errno));
      server_syncer_stop(y);
      return URSULA_ESYS;
    }
    y->n_threads++;
  }
  s->syncer = y;
#else
  (void)s;
  (void)err;
#endif
  return URSULA_OK;
}

/* A sync is back on the owner: the group applies and answers its batch. */
static void server_on_synced(struct loop *l, struct loop_msg *m) {
  struct server_sync *q = (struct server_sync *)(void *)m;
  struct core *c = (struct core *)loop_get_user(l);
  c->n_flights--;
  group_synced(c, server_group(c->srv, q->gid), q->sync_errno);
  URSULA_FREE(q);
}

/* Queue the sync of fd for group gid (owned by c).  Without syncer
** threads it runs here and now, and its result is posted to c's own
** loop: group_synced() runs on the next turn, from the same message
** a syncer thread would post.  Without memory for the request it runs
** here and group_synced() at once. */
static void server_start_sync(struct core *c, int gid, int fd) {
  struct server_syncer *y = c->srv->syncer;
  struct os_fs *fs = c->srv->env->fs;
  struct server_sync *q = (struct server_sync *)URSULA_MALLOC(sizeof(*q));
  if (q == NULL) {
    int e = fs->sync(fd) != 0 ? errno : 0;
    group_synced(c, server_group(c->srv, gid), e);
    return;
  }
  memset(q, 0, sizeof(*q));
  q->msg.on_msg = server_on_synced;
  q->owner = c->loop;
  q->gid = gid;
  q->fd = fd;
  q->fs = fs;
  c->n_flights++;
  if (y == NULL) {
    q->sync_errno = fs->sync(fd) != 0 ? errno : 0;
    loop_post(c->loop, &q->msg);
    return;
  }
  pthread_mutex_lock(&y->mu);
  if (y->tail != NULL)
    y->tail->next = q;
  else
    y->head = q;
  y->tail = q;
  pthread_cond_signal(&y->work);
  pthread_mutex_unlock(&y->mu);
}

static void server_run_local(struct loop *l, struct core *c) {
  while (c->local_head != NULL) {
    struct loop_msg *m = c->local_head;
    c->local_head = m->next;
    if (c->local_head == NULL) c->local_tail = NULL;
    m->next = NULL;
    m->on_msg(l, m);
  }
}

/* End of every loop turn: notice a graceful stop's start, run same-core
** messages, start the commits of what the turn proposed (group commit:
** one WAL write and sync per group per batch), run what synchronous
** commits produced, notice a stop. */
static void server_on_turn_end(struct loop *l) {
  struct core *c = (struct core *)loop_get_user(l);
  struct group **batch = c->batch;
  /* GRACEFUL STOP: hand leadership over first (before the commits
  ** below, so that the transfers' messages leave with this turn's) */
  if (c->srv->leave_requested && !c->leaving && !c->srv->stop_requested) {
    c->leaving = 1;
    server_leave_step(c);
  }
  for (;;) {
    int i, n, applied = 0;
    server_run_local(l, c);
    n = c->n_dirty;
    if (n == 0) break;
    /* take the list: continuations and new proposals refill it */
    memcpy(batch, c->dirty, sizeof(*batch) * (size_t)n);
    c->n_dirty = 0;
    for (i = 0; i < n; i++) {
      struct group *g = batch[i];
      int fd;
      if (group_in_flight(g)) { /* its next batch waits for the sync */
        c->dirty[c->n_dirty++] = g;
        continue;
      }
      fd = group_drive(c, g);
      if (fd >= 0)
        server_start_sync(c, group_id(g), fd);
      else
        applied = 1; /* continuations may have proposed again */
    }
    if (!applied && c->local_head == NULL) break;
  }
  if (c->srv->stop_requested && !c->draining) {
    c->draining = 1;
    if (c->srv->stop_hurried) server_hurry_count(c); /* SECOND STOP */
    if (c->listening) {
      loop_del(l, c->srv->listen_fd);
      c->listening = 0;
    }
    conn_drain(&c->conns);
    server_run_local(l, c); /* what draining queued */
  }
  if (c->srv->peer != NULL) peer_flush(c->srv->peer, c->id);
  server_check_drained(c);
}

static void server_on_sweep(struct loop *l, void *arg) {
  struct core *c = (struct core *)arg;
  struct ursula_server *s = c->srv;
  int g;
  for (g = c->id; g < s->n_groups; g += s->n_cores)
    group_sweep(c, s->groups[g]);
  group_leads_report(c);
  loop_timer_set(l, &c->sweep_timer, loop_now_ms(l) + 1000, server_on_sweep, c);
}

static void *server_core_main(void *arg) {
  struct core *c = (struct core *)arg;
  c->rc = loop_run(c->loop, server_on_turn_end);
  return NULL;
}

/* ------------------------------------------------------------ peers

   With --peer, the node's links to the others (peer.c): a listener, and
   one connection per (node, core).  Every group is a voter of the
   cluster (group_join): its Raft messages leave through peer_send and
   arrive through server_on_peer_raft, on the group's core; each core
   ticks its groups. */

/* A Raft message from a peer, on the core its connection belongs to:
** for that core's group (groups are spread over cores alike on every
** node: the handshake checked the counts). */
static void server_on_peer_raft(void *arg, int core, int group,
                                const struct raft_msg *m, const void *records,
                                size_t len) {
  struct ursula_server *s = (struct ursula_server *)arg;
  s->cores[core].peer_in++;
  if (group < 0 || group >= s->n_groups ||
      server_owner_of(s, group) != core) {
    LOG_W("core %d: a Raft message from node %llu for group %d, which "
          "this core does not own; dropped",
          core, (unsigned long long)m->from, group);
    return;
  }
  group_recv(&s->cores[core], s->groups[group], m, records, len);
}

/* group_send_fn: a group's Raft message to a peer, on the group's core;
** dropped (and counted by peer.c) while the link is down or full. */
static void server_raft_send(void *arg, struct group *g,
                             const struct raft_msg *m, const void *records,
                             size_t len) {
  struct ursula_server *s = (struct ursula_server *)arg;
  int gid = group_id(g);
  peer_send(s->peer, server_owner_of(s, gid), (int)m->to, gid, m, records,
            len);
}

/* group_snap_fn: a chunk of a group's snapshot image, on its core. */
static int server_send_snap(void *arg, struct group *g, uint64_t to,
                            const struct peer_snap *sn) {
  struct ursula_server *s = (struct ursula_server *)arg;
  return peer_send_snap(s->peer, server_owner_of(s, group_id(g)), (int)to,
                        sn);
}

/* group_forward_fn and group_reply_fn: writes forwarded to a leader, and
** its replies, on the group's core. */
static int server_forward(void *arg, struct group *g, uint64_t to,
                          uint64_t req, const void *cmd, size_t len) {
  struct ursula_server *s = (struct ursula_server *)arg;
  int gid = group_id(g);
  return peer_forward(s->peer, server_owner_of(s, gid), (int)to, gid, req,
                      cmd, len);
}

static void server_fwd_reply(void *arg, struct group *g, uint64_t to,
                             uint64_t req, int accepted, uint64_t term,
                             uint64_t index) {
  struct ursula_server *s = (struct ursula_server *)arg;
  int gid = group_id(g);
  peer_fwd_reply(s->peer, server_owner_of(s, gid), (int)to, gid, req,
                 accepted ? PEER_FWD_ACCEPTED : PEER_FWD_REFUSED, term, index);
}

/* A FWD or FWD_REPLY from a peer, on the core its connection belongs to. */
static void server_on_peer_fwd(void *arg, int core, uint64_t from,
                               const struct peer_item *it) {
  struct ursula_server *s = (struct ursula_server *)arg;
  struct group *g;
  if (it->group < 0 || it->group >= s->n_groups ||
      server_owner_of(s, it->group) != core)
    return;
  g = s->groups[it->group];
  if (it->kind == PEER_ITEM_FWD)
    group_recv_forward(&s->cores[core], g, from, it->req, it->records,
                       it->len);
  else
    group_recv_reply(&s->cores[core], g, it->req,
                     it->outcome == PEER_FWD_ACCEPTED, it->term, it->index);
}

/* Every core ticks its cluster groups' Raft clocks (GROUP_TICK_MS). */
static void server_on_tick(struct loop *l, void *arg) {
  struct core *c = (struct core *)arg;
  struct ursula_server *s = c->srv;
  int g;
  for (g = c->id; g < s->n_groups; g += s->n_cores)
    group_tick(c, s->groups[g]);
  if (c->leaving && !s->stop_requested) server_leave_step(c);
  loop_timer_set(l, &c->tick_timer, loop_now_ms(l) + GROUP_TICK_MS,
                 server_on_tick, c);
}

/* With peers, every group is a voter of the cluster: the members' ids
** (before the logs are replayed: a voter of a cluster applies only
** what its leader says is committed). */
static int server_join_groups(struct ursula_server *s, char *err) {
  const struct ursula_config *cfg = &s->cfg;
  struct group_cluster cl;
  int i;
  if (cfg->peer_count <= 1) return URSULA_OK;
  memset(&cl, 0, sizeof(cl));
  cl.cluster_id = peer_cluster_hash(cfg->cluster_id);
  cl.node = (uint64_t)cfg->node_id;
  for (i = 0; i < cfg->peer_count; i++)
    cl.voters[i] = (uint64_t)cfg->peers[i].id;
  cl.n_voters = (unsigned)cfg->peer_count;
  cl.send = server_raft_send;
  cl.forward = server_forward;
  cl.reply = server_fwd_reply;
  cl.send_snap = server_send_snap;
  cl.lost_log = s->cfg.lost_log;
  cl.arg = s;
  for (i = 0; i < s->n_groups; i++)
    if (group_join(s->groups[i], &cl) != URSULA_OK) {
      snprintf(err, URSULA_ERRMSG_LEN, "group %d: bad cluster membership",
               i);
      return URSULA_EINVAL;
    }
  return URSULA_OK;
}

/* A chunk of a leader's snapshot image, on the core its connection
** belongs to: for that core's group, as a Raft message is. */
static void server_on_peer_snap(void *arg, int core, uint64_t from,
                                const struct peer_snap *sn) {
  struct ursula_server *s = (struct ursula_server *)arg;
  s->cores[core].peer_in++;
  if (sn->group < 0 || sn->group >= s->n_groups ||
      server_owner_of(s, sn->group) != core) {
    LOG_W("core %d: a snapshot chunk from node %llu for group %d, which "
          "this core does not own; dropped",
          core, (unsigned long long)from, sn->group);
    return;
  }
  group_recv_snap(&s->cores[core], s->groups[sn->group], from, sn);
}

/* Open the peer listener and arm the links (the loops exist, not yet
** running). */
static int server_peers_start(struct ursula_server *s, char *err) {
  const struct ursula_config *cfg = &s->cfg;
  struct peer_config pc;
  struct loop *loops[URSULA_MAX_CORES];
  int i, rc;
  if (cfg->peer_count == 0) return URSULA_OK;
  memset(&pc, 0, sizeof(pc));
  pc.cluster_id = peer_cluster_hash(cfg->cluster_id);
  pc.node_id = cfg->node_id;
  pc.n_nodes = cfg->peer_count;
  for (i = 0; i < cfg->peer_count; i++) {
    pc.nodes[i].id = cfg->peers[i].id;
    memcpy(pc.nodes[i].host, cfg->peers[i].host, sizeof(pc.nodes[i].host));
    pc.nodes[i].port = cfg->peers[i].port;
    if (cfg->peers[i].id == cfg->node_id) {
      memcpy(pc.listen_host, cfg->peers[i].host, sizeof(pc.listen_host));
      pc.listen_port = cfg->peers[i].port;
    }
  }
  if (cfg->peer_listen_host[0] != '\0') {
    memcpy(pc.listen_host, cfg->peer_listen_host, sizeof(pc.listen_host));
    pc.listen_port = cfg->peer_listen_port;
  }
  memcpy(pc.bind_host, pc.listen_host, sizeof(pc.bind_host));
  pc.n_cores = s->n_cores;
  pc.n_groups = s->n_groups;
  pc.env = s->env;
  pc.on_raft = server_on_peer_raft;
  pc.on_snap = server_on_peer_snap;
  pc.on_fwd = server_on_peer_fwd;
  pc.arg = s;
  for (i = 0; i < s->n_cores; i++) loops[i] = s->cores[i].loop;
  if ((rc = peer_open(&s->peer, &pc, loops, err)) != URSULA_OK) return rc;
  if ((rc = peer_start(s->peer, err)) != URSULA_OK) return rc;
  LOG_I("node %d of cluster %s: peers at %s:%d, %d members", cfg->node_id,
        cfg->cluster_id, pc.listen_host, peer_port(s->peer), pc.n_nodes);
  return URSULA_OK;
}

/* After the loops stopped (or never ran): close every link. */
static void server_peers_stop(struct ursula_server *s) {
  peer_close(s->peer);
  s->peer = NULL;
}

static void server_free(struct ursula_server *s) {
  int i;
  cold_close(s->cold); /* first: its threads post to the cores' loops */
  server_peers_stop(s); /* then the links: they live on the loops */
  if (s->cores != NULL) {
    for (i = 0; i < s->n_cores; i++) {
      struct core *c = &s->cores[i];
      if (c->loop == NULL) continue;
      api_core_free(c);
      loop_close(c->loop);
    }
    for (i = 0; i < s->n_cores; i++) {
      URSULA_FREE(s->cores[i].dirty);
      URSULA_FREE(s->cores[i].batch);
      cold_cache_free(s->cores[i].cold_cache);
    }
    URSULA_FREE(s->cores);
  }
  if (s->groups != NULL) {
    for (i = 0; i < s->n_groups; i++) group_free(s->groups[i]);
    URSULA_FREE(s->groups);
  }
  if (s->listen_fd >= 0) close(s->listen_fd);
  server_syncer_stop(s->syncer);
  if (s->dir_lock_fd >= 0) close(s->dir_lock_fd); /* releases the lock */
  pthread_mutex_destroy(&s->mu);
  conn_bounds_free(&s->bounds);
  URSULA_FREE(s);
}

/* ------------------------------------------------------------ --wal-dir

   DIR             locked with flock() on the directory itself while the
                   server runs, so two servers never write the same logs
                   (a lock file could be deleted under a running server)
   DIR/layout      "ursula-wal 2\ngroups N\n": the WAL format, and the N
                   groups streams hash to (a restart with another
                   --raft-group-count would not find them; the server
                   refuses to start instead).  Written once every group's
                   log exists: from then on a missing group is damage.
   DIR/cold-store  "ursula-cold-store 1\nnode ID\n", ID 32 lowercase hex
                   digits, written when a cold tier is first used, then
                   "claimed\n" added once a claim of the store succeeded
                   at a start: a single node names itself by ID in the
                   store's marker, and "claimed" says a marker was there
                   (cold.c, THE STORE'S MARKER)
   DIR/g00000/ ... one WAL directory per group (wal.c) */

static int server_layout_write(struct ursula_server *s, char *err) {
  const char *dir = s->cfg.wal_dir;
  char tmp[URSULA_PATH_LEN + 32], path[URSULA_PATH_LEN + 32], want[64];
  struct os_fs *fs = s->env->fs;
  int fd;
  snprintf(want, sizeof(want), "ursula-wal 2\ngroups %d\n", s->n_groups);
  snprintf(tmp, sizeof(tmp), "%s/layout.tmp", dir);
  snprintf(path, sizeof(path), "%s/layout", dir);
  fd = fs->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 ||
      fs->pwrite(fd, want, strlen(want), 0) != (ssize_t)strlen(want) ||
      fs->sync(fd) != 0 || fs->close(fd) != 0 || fs->rename(tmp, path) != 0 ||
      fs->sync_dir(dir) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "--wal-dir %s: writing layout: %s", dir,
             strerror(errno));
    return URSULA_EIO;
  }
  return URSULA_OK;
}

/* Lock DIR and check its layout; *existed = whether it has one (then
** every group's log must be there). */
static int server_open_dir(struct ursula_server *s, int *existed, char *err) {
  const char *dir = s->cfg.wal_dir;
  char path[URSULA_PATH_LEN + 32], want[64], have[64];
  struct os_fs *fs = s->env->fs;
  int fd, n, groups = -1, version = -1;
  *existed = 0;
  if (fs->mkdir(dir, 0755) != 0 && errno != EEXIST) {
    snprintf(err, URSULA_ERRMSG_LEN, "--wal-dir %s: %s", dir, strerror(errno));
    return URSULA_EIO;
  }
  { /* from here on the full path, so that every message names the file
    ** whatever the working directory was */
    char *abs = realpath(dir, NULL);
    if (abs != NULL && strlen(abs) < sizeof(s->cfg.wal_dir))
      memcpy(s->cfg.wal_dir, abs, strlen(abs) + 1);
    free(abs);
  }
  s->dir_lock_fd = open(dir, O_RDONLY | O_CLOEXEC);
  if (s->dir_lock_fd < 0 || flock(s->dir_lock_fd, LOCK_EX | LOCK_NB) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "--wal-dir %s: cannot lock it (%s); another ursula is using it",
             dir, strerror(errno));
    return URSULA_EIO;
  }
  snprintf(want, sizeof(want), "ursula-wal 2\ngroups %d\n", s->n_groups);
  snprintf(path, sizeof(path), "%s/layout", dir);
  fd = fs->open(path, O_RDONLY, 0);
  if (fd < 0) return URSULA_OK; /* a new directory */
  n = (int)fs->pread(fd, have, sizeof(have) - 1, 0);
  fs->close(fd);
  have[n > 0 ? n : 0] = '\0';
  *existed = 1;
  if (strcmp(have, want) == 0) return URSULA_OK;
  if (sscanf(have, "ursula-wal %d groups %d", &version, &groups) < 1)
    version = -1;
  if (version == 1) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "--wal-dir %s holds WAL format 1 (written by an older ursula); "
             "this build reads format 2 only: read the data out with the "
             "older build, or start on an empty --wal-dir",
             dir);
  } else if (version == 2) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "--wal-dir %s holds %d groups; start with --raft-group-count %d "
             "(it cannot change)",
             dir, groups, groups);
  } else {
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s is damaged; not starting (it records the WAL format and "
             "the group count: \"ursula-wal 2\\ngroups N\\n\")",
             path);
  }
  return URSULA_EINVAL;
}

/* One recovery thread: groups first, first + step, ... */
struct server_recovery {
  struct ursula_server *srv;
  int first, step;
  int must_exist; /* the layout says every group's log exists */
  int rc;
  int started; /* thread is running (joined by the caller) */
  pthread_t thread;
  struct buf scratch; /* segments are read into it, group after group */
  char err[URSULA_ERRMSG_LEN];
};

static void *server_recover_main(void *arg) {
  struct server_recovery *r = (struct server_recovery *)arg;
  char path[URSULA_PATH_LEN + 32];
  int i;
  r->rc = URSULA_OK;
  for (i = r->first; i < r->srv->n_groups && r->rc == URSULA_OK; i += r->step) {
    snprintf(path, sizeof(path), "%s/g%05d", r->srv->cfg.wal_dir, i);
    r->rc = group_open_wal(r->srv->groups[i], path, r->must_exist,
                           (uint64_t)r->srv->cfg.hot_max_bytes,
                           (uint64_t)r->srv->cfg.snapshot_bytes, &r->scratch,
                           r->err);
  }
  buf_free(&r->scratch);
  return NULL;
}

/* Open and replay every group's WAL, one thread per core (groups are
** independent, so they recover in parallel); without threads, one group
** after another on the caller. */
static int server_recover(struct ursula_server *s, char *err) {
  struct server_recovery *r;
  uint64_t t0 = s->env->mono_ms(s->env);
  int i, n = s->n_cores, rc, existed;
  if ((rc = server_open_dir(s, &existed, err)) != URSULA_OK) return rc;
  if (n > s->n_groups) n = s->n_groups;
  r = (struct server_recovery *)URSULA_MALLOC(sizeof(*r) * (size_t)n);
  if (r == NULL) return URSULA_ENOMEM;
  for (i = 0; i < n; i++) {
    r[i].srv = s;
    r[i].first = i;
    r[i].step = n;
    r[i].must_exist = existed;
    memset(&r[i].scratch, 0, sizeof(r[i].scratch));
    r[i].err[0] = '\0';
#if URSULA_ENABLE_THREADS
    r[i].started =
        pthread_create(&r[i].thread, NULL, server_recover_main, &r[i]) == 0;
#else
    r[i].started = 0;
#endif
    if (!r[i].started) server_recover_main(&r[i]); /* do it here */
  }
  rc = URSULA_OK;
  for (i = 0; i < n; i++) {
    if (r[i].started) pthread_join(r[i].thread, NULL);
    if (r[i].rc != URSULA_OK && rc == URSULA_OK) {
      rc = r[i].rc;
      memcpy(err, r[i].err, URSULA_ERRMSG_LEN);
    }
  }
  URSULA_FREE(r);
  if (rc == URSULA_OK && !existed) rc = server_layout_write(s, err);
  if (rc == URSULA_OK)
    LOG_I("recovered %d groups from %s in %llu ms", s->n_groups, s->cfg.wal_dir,
          (unsigned long long)(s->env->mono_ms(s->env) - t0));
  (void)t0; /* when logging is compiled out */
  return rc;
}

/* ------------------------------------------------------------ bounds */

/* The budget of request bodies in flight must hold the largest body, or
** such a body could never be taken. */
static int server_check_bounds(const struct ursula_config *cfg, char *err) {
  if (cfg->max_body_inflight_bytes >= cfg->max_body_bytes) return URSULA_OK;
  snprintf(err, URSULA_ERRMSG_LEN,
           "--max-body-inflight-bytes %lld is below --max-body-bytes %lld: "
           "it must be at least that, or the largest body would never fit",
           (long long)cfg->max_body_inflight_bytes,
           (long long)cfg->max_body_bytes);
  return URSULA_EINVAL;
}

/* ------------------------------------------------------------ cold tier */

/* Check the cold-tier settings, taking credentials from the environment
** where the configuration leaves them empty. */
static int server_check_cold(struct ursula_config *cfg, char *err) {
  const char *v;
  if (cfg->cold_dir[0] == '\0' && cfg->s3_endpoint[0] == '\0') return URSULA_OK;
  if (cfg->cold_dir[0] != '\0' && cfg->s3_endpoint[0] != '\0') {
    snprintf(err, URSULA_ERRMSG_LEN,
             "--cold-dir and --s3-endpoint: choose one cold tier");
    return URSULA_EINVAL;
  }
  if (cfg->wal_dir[0] == '\0') {
    snprintf(err, URSULA_ERRMSG_LEN,
             "%s needs --wal-dir: data moves to the cold tier from the WAL",
             cfg->cold_dir[0] ? "--cold-dir" : "--s3-endpoint");
    return URSULA_EINVAL;
  }
  if (cfg->cold_dir[0] != '\0') return URSULA_OK;
  if (strncmp(cfg->s3_endpoint, "http://", 7) != 0 &&
      strncmp(cfg->s3_endpoint, "https://", 8) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "--s3-endpoint %.100s: expected http://HOST[:PORT] or "
             "https://HOST[:PORT]",
             cfg->s3_endpoint);
    return URSULA_EINVAL;
  }
  if (!URSULA_ENABLE_TLS && strncmp(cfg->s3_endpoint, "https://", 8) == 0) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "--s3-endpoint %.100s: this build has no TLS (build with "
             "make TLS=1, which needs BearSSL)",
             cfg->s3_endpoint);
    return URSULA_ENOTSUP;
  }
  if (cfg->s3_bucket[0] == '\0') {
    snprintf(err, URSULA_ERRMSG_LEN, "--s3-endpoint needs --s3-bucket");
    return URSULA_EINVAL;
  }
  if (cfg->s3_access_key[0] == '\0' && (v = getenv("AWS_ACCESS_KEY_ID")))
    snprintf(cfg->s3_access_key, sizeof(cfg->s3_access_key), "%s", v);
  if (cfg->s3_secret_key[0] == '\0' && (v = getenv("AWS_SECRET_ACCESS_KEY")))
    snprintf(cfg->s3_secret_key, sizeof(cfg->s3_secret_key), "%s", v);
  if (cfg->s3_session_token[0] == '\0' && (v = getenv("AWS_SESSION_TOKEN")))
    snprintf(cfg->s3_session_token, sizeof(cfg->s3_session_token), "%s", v);
  if (cfg->s3_access_key[0] == '\0' || cfg->s3_secret_key[0] == '\0') {
    snprintf(err, URSULA_ERRMSG_LEN,
             "--s3-endpoint needs credentials: --s3-access-key and "
             "--s3-secret-key, or AWS_ACCESS_KEY_ID and "
             "AWS_SECRET_ACCESS_KEY");
    return URSULA_EINVAL;
  }
  return URSULA_OK;
}

/* Write DIR/cold-store: id, and the line "claimed" if claimed (synced,
** through a temporary file). */
static int server_cold_store_write(struct ursula_server *s, const char *id,
                                   int claimed, char *err) {
  const char *dir = s->cfg.wal_dir;
  char path[URSULA_PATH_LEN + 32], tmp[URSULA_PATH_LEN + 32], text[80];
  struct os_fs *fs = s->env->fs;
  int fd, n, ok;
  n = snprintf(text, sizeof(text), "ursula-cold-store 1\nnode %s\n%s", id,
               claimed ? "claimed\n" : "");
  snprintf(path, sizeof(path), "%s/cold-store", dir);
  snprintf(tmp, sizeof(tmp), "%s/cold-store.tmp", dir);
  fd = fs->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) goto fail;
  errno = EIO; /* (a short write sets none) */
  ok = fs->pwrite(fd, text, (size_t)n, 0) == (ssize_t)n && fs->sync(fd) == 0;
  if (fs->close(fd) != 0) ok = 0;
  if (!ok || fs->rename(tmp, path) != 0 || fs->sync_dir(dir) != 0) goto fail;
  return URSULA_OK;
fail:
  snprintf(err, URSULA_ERRMSG_LEN, "--wal-dir %s: writing cold-store: %s", dir,
           strerror(errno));
  return URSULA_EIO;
}

/* Who this node is to the store (struct cold_owner): the id kept in
** DIR/cold-store, made and written (synced) now if there is none, and
** whether a claim with it succeeded before. */
static int server_cold_owner(struct ursula_server *s, struct cold_owner *o,
                             char *id, char *err) {
  const char *dir = s->cfg.wal_dir;
  char path[URSULA_PATH_LEN + 32], text[80];
  struct os_fs *fs = s->env->fs;
  int fd, n, rc;
  snprintf(o->cluster_id, sizeof(o->cluster_id), "%s", s->cfg.cluster_id);
  o->groups = s->n_groups;
  snprintf(path, sizeof(path), "%s/cold-store", dir);
  fd = fs->open(path, O_RDONLY, 0);
  if (fd < 0 && errno != ENOENT) {
    snprintf(err, URSULA_ERRMSG_LEN, "%s: %s", path, strerror(errno));
    return URSULA_EIO;
  }
  if (fd >= 0) {
    n = (int)fs->pread(fd, text, sizeof(text) - 1, 0);
    if (n < 0) {
      snprintf(err, URSULA_ERRMSG_LEN, "reading %s: %s", path,
               strerror(errno));
      fs->close(fd);
      return URSULA_EIO;
    }
    fs->close(fd);
    text[n] = '\0';
    if ((n != 58 && (n != 66 || strcmp(text + 58, "claimed\n") != 0)) ||
        strncmp(text, "ursula-cold-store 1\nnode ", 25) != 0 ||
        text[57] != '\n' || strspn(text + 25, "0123456789abcdef") != 32) {
      snprintf(err, URSULA_ERRMSG_LEN,
               "%s is damaged; not starting (it holds \"ursula-cold-store "
               "1\\nnode ID\\n\", ID 32 hex digits, then \"claimed\\n\" "
               "once a claim succeeded)",
               path);
      return URSULA_EINVAL;
    }
    memcpy(id, text + 25, 32);
    o->claimed_before = n == 66;
  } else {
    snprintf(id, 33, "%016llx%016llx",
             (unsigned long long)s->env->random(s->env),
             (unsigned long long)s->env->random(s->env));
    if ((rc = server_cold_store_write(s, id, 0, err)) != URSULA_OK) return rc;
    o->claimed_before = 0;
  }
  id[32] = '\0';
  if (s->cfg.peer_count <= 1)
    memcpy(o->node, id, 33);
  else
    o->node[0] = '\0'; /* the nodes of a cluster write one marker */
  return URSULA_OK;
}

/* Start the cold tier (after recovery, before the cores), or refuse to
** start when the WAL names chunks but no cold tier is configured, or the
** store is not this node's (cold_claim). */
static int server_start_cold(struct ursula_server *s, char *err) {
  const struct ursula_config *cfg = &s->cfg;
  struct cold_owner me;
  char id[33];
  uint64_t chunks = 0;
  int i, rc;
  if (cfg->wal_dir[0] == '\0') return URSULA_OK;
  for (i = 0; i < s->n_groups; i++) chunks += group_cold_chunks(s->groups[i]);
  if (cfg->cold_dir[0] == '\0' && cfg->s3_endpoint[0] == '\0') {
    if (chunks == 0) return URSULA_OK;
    snprintf(err, URSULA_ERRMSG_LEN,
             "--wal-dir %.100s names %llu chunks in a cold tier; start with "
             "the same --cold-dir or --s3-* settings",
             cfg->wal_dir, (unsigned long long)chunks);
    return URSULA_EINVAL;
  }
  memset(&me, 0, sizeof(me));
  if ((rc = server_cold_owner(s, &me, id, err)) != URSULA_OK) return rc;
  me.chunks = chunks;
  if ((rc = cold_open(&s->cold, cfg, s->env, err)) != URSULA_OK) return rc;
  rc = cold_claim(s->cold, &me, err);
  if (rc == URSULA_EINVAL) return rc;
  if (rc == URSULA_OK && !me.claimed_before &&
      (rc = server_cold_store_write(s, id, 1, err)) != URSULA_OK)
    return rc;
  if (rc != URSULA_OK)
    LOG_E("cold storage unavailable at start: its marker could not be "
          "checked (%s); appends go on into the WAL, and nothing moves to "
          "the store or is deleted from it until it can be",
          err);
  for (i = 0; i < s->n_cores; i++) {
    s->cores[i].cold_cache =
        cold_cache_new((uint64_t)cfg->cold_cache_bytes / (uint64_t)s->n_cores);
    if (s->cores[i].cold_cache == NULL) return URSULA_ENOMEM;
  }
  for (i = 0; i < s->n_groups; i++)
    group_attach_cold(s->groups[i], s->cold,
                      s->cores[server_owner_of(s, i)].cold_cache,
                      (uint64_t)cfg->cold_flush_age_ms);
  if (cfg->s3_endpoint[0])
    LOG_I("cold tier: s3 bucket %s at %s, prefix \"%s\"", cfg->s3_bucket,
          cfg->s3_endpoint, cfg->s3_prefix);
  else
    LOG_I("cold tier: folder %s", cfg->cold_dir);
  return URSULA_OK;
}

URSULA_PRIVATE int server_start(const struct ursula_config *cfg,
                                struct env *env, struct ursula_server **out,
                                char *err) {
  struct ursula_server *s;
  int i, rc = URSULA_OK;
  char tmp[URSULA_ERRMSG_LEN];
  if (err == NULL) err = tmp;
  err[0] = '\0';
  s = (struct ursula_server *)URSULA_MALLOC(sizeof(*s));
  if (s == NULL) return URSULA_ENOMEM;
  memset(s, 0, sizeof(*s));
  s->cfg = *cfg;
  s->env = env != NULL ? env : env_real();
  s->listen_fd = -1;
  s->dir_lock_fd = -1;
  pthread_mutex_init(&s->mu, NULL);
  conn_bounds_init(&s->bounds);
  log_set_level(cfg->log_level);
  s->n_cores = cfg->core_count > 0 ? cfg->core_count : os_cpu_count();
#if !URSULA_ENABLE_THREADS
  s->n_cores = 1;
#endif
  if (s->n_cores > URSULA_MAX_CORES) s->n_cores = URSULA_MAX_CORES;
  s->n_groups = cfg->raft_group_count > 0 ? cfg->raft_group_count : 1;
  if (s->n_groups > URSULA_MAX_GROUPS) s->n_groups = URSULA_MAX_GROUPS;
  s->groups =
      (struct group **)URSULA_MALLOC(sizeof(*s->groups) * (size_t)s->n_groups);
  s->cores =
      (struct core *)URSULA_MALLOC(sizeof(*s->cores) * (size_t)s->n_cores);
  if (s->groups == NULL || s->cores == NULL) {
    rc = URSULA_ENOMEM;
    goto fail;
  }
  memset(s->groups, 0, sizeof(*s->groups) * (size_t)s->n_groups);
  memset(s->cores, 0, sizeof(*s->cores) * (size_t)s->n_cores);
  for (i = 0; i < s->n_groups; i++) {
    if ((s->groups[i] = group_new(i, i % s->n_cores, s->env)) == NULL) {
      rc = URSULA_ENOMEM;
      goto fail;
    }
  }
  { /* every connection is a descriptor; so are WAL segments, and each
    ** core's loop (3) and spare for accepting at the limit (conn.c) */
    long want =
        (long)cfg->max_connections + 64 + 4L * s->n_groups + 4L * s->n_cores;
    long have = os_raise_fd_limit(want);
    if (have >= 0 && have < want)
      LOG_W(
          "open-file limit is %ld, below the %ld that --max-connections "
          "%d needs; raise it (ulimit -n): past it, new connections are "
          "answered 503",
          have, want, cfg->max_connections);
  }
  if ((rc = conf_check_cluster(&s->cfg, err)) != URSULA_OK ||
      (rc = server_check_bounds(&s->cfg, err)) != URSULA_OK ||
      (rc = server_check_cold(&s->cfg, err)) != URSULA_OK ||
      (rc = server_join_groups(s, err)) != URSULA_OK)
    goto fail;
  if (cfg->wal_dir[0] != '\0' &&
      ((rc = server_recover(s, err)) != URSULA_OK ||
       (rc = server_syncer_start(s, err)) != URSULA_OK ||
       (rc = server_start_cold(s, err)) != URSULA_OK))
    goto fail;
  s->listen_fd = net_listen(cfg->listen_host, cfg->listen_port, &s->port, err);
  if (s->listen_fd < 0) {
    rc = URSULA_ESYS;
    goto fail;
  }
  for (i = 0; i < s->n_cores; i++) {
    struct core *c = &s->cores[i];
    c->id = i;
    c->srv = s;
    /* each owned group at most twice: once before its commit in a pass,
    ** once re-proposed by a continuation after it */
    c->dirty = (struct group **)URSULA_MALLOC(
        sizeof(*c->dirty) * 2 * (size_t)(s->n_groups / s->n_cores + 1));
    c->batch = (struct group **)URSULA_MALLOC(
        sizeof(*c->batch) * 2 * (size_t)(s->n_groups / s->n_cores + 1));
    if (c->dirty == NULL || c->batch == NULL) {
      rc = URSULA_ENOMEM;
      goto fail;
    }
    if ((rc = loop_open(&c->loop, i, s->env, err)) != URSULA_OK) goto fail;
    loop_set_user(c->loop, c);
    api_core_init(c, cfg->max_connections); /* one count for all cores */
    if ((rc = loop_add(c->loop, s->listen_fd, LOOP_READ, conn_on_accept, c)) !=
        URSULA_OK)
      goto fail;
    c->listening = 1;
    loop_timer_set(c->loop, &c->sweep_timer, loop_now_ms(c->loop) + 1000,
                   server_on_sweep, c);
    if (cfg->peer_count > 1)
      loop_timer_set(c->loop, &c->tick_timer,
                     loop_now_ms(c->loop) + GROUP_TICK_MS, server_on_tick, c);
  }
  if ((rc = server_peers_start(s, err)) != URSULA_OK) goto fail;
#if URSULA_ENABLE_THREADS
  for (i = 0; i < s->n_cores; i++) {
    if (pthread_create(&s->cores[i].thread, NULL, server_core_main,
                       &s->cores[i]) != 0) {
      snprintf(err, URSULA_ERRMSG_LEN, "pthread_create: %s", strerror(errno));
      s->stop_requested = 1;
      while (--i >= 0) {
        loop_stop(s->cores[i].loop);
        pthread_join(s->cores[i].thread, NULL);
      }
      rc = URSULA_ESYS;
      goto fail;
    }
  }
#endif
  s->running = 1;
  LOG_I("listening on http://%s:%d (cores %d, groups %d, %s%s)",
        cfg->listen_host, s->port, s->n_cores, s->n_groups,
        cfg->wal_dir[0] ? "WAL in " : "in memory", s->cfg.wal_dir);
  *out = s;
  return URSULA_OK;
fail:
  if (err[0] == '\0')
    snprintf(err, URSULA_ERRMSG_LEN, "%s", ursula_strerror(rc));
  server_free(s);
  return rc;
}

URSULA_API int ursula_server_start(const struct ursula_config *cfg,
                                   struct ursula_server **out, char *err) {
  return server_start(cfg, NULL, out, err);
}

URSULA_API int ursula_server_port(const struct ursula_server *srv) {
  return srv->port;
}

/* A full memory barrier where the compiler offers one (the flags below
** are written on one thread and read on another). */
static void server_barrier(void) {
#if defined(__GNUC__) || defined(__clang__)
  __sync_synchronize();
#endif
}

URSULA_API void ursula_server_stop(struct ursula_server *srv) {
  int i;
  /* The loops may end as soon as they see stop_requested, and the thread
  ** in ursula_server_wait() then frees srv: stop_busy, set first, holds
  ** that off until the wake-ups below are done.  A node of a cluster
  ** hands its leadership over first (GRACEFUL STOP); asked again, it
  ** stops at once (SECOND STOP). */
  if (SERVER_BUG(2) && srv->leave_requested) return;
  srv->stop_busy = 1;
  server_barrier();
  if (srv->cfg.peer_count > 1 && !srv->leave_requested && !SERVER_BUG(1)) {
    srv->leave_requested = 1;
  } else {
    if (srv->leave_requested && !srv->stop_requested) {
      srv->stop_hurried = 1; /* before the cores can see stop_requested */
      server_barrier();
    }
    srv->stop_requested = 1;
  }
  for (i = 0; i < srv->n_cores; i++) loop_wake(srv->cores[i].loop);
  server_barrier();
  srv->stop_busy = 0;
}

URSULA_PRIVATE int server_wait_cores(struct ursula_server *srv) {
  int i, rc = URSULA_OK;
#if URSULA_ENABLE_THREADS
  for (i = 0; i < srv->n_cores; i++) pthread_join(srv->cores[i].thread, NULL);
#else
  server_core_main(&srv->cores[0]);
#endif
  for (i = 0; i < srv->n_cores; i++) {
    if (srv->cores[i].rc != URSULA_OK && rc == URSULA_OK) rc = srv->cores[i].rc;
  }
  LOG_I("stopped");
  return rc;
}

URSULA_PRIVATE void server_release(struct ursula_server *srv) {
  server_barrier();
  while (srv->stop_busy) { /* a stop is still waking the loops */
    os_sleep_ms(1);
    server_barrier();
  }
  server_free(srv);
}

URSULA_API int ursula_server_wait(struct ursula_server *srv) {
  int rc = server_wait_cores(srv);
  server_release(srv);
  return rc;
}
/**** End src/server.c ****/
/**** Begin src/main.c ****/
#ifdef URSULA_ENABLE_LINES
#line 1 "src/main.c"
#endif
/*
** main.c -- the command-line program.
**
** ursula_main() parses flags, starts the server, and waits for SIGINT or
** SIGTERM on a thread of its own (the signals are blocked everywhere else,
** so no handler runs inside a core), then stops the server gracefully (a
** node of a cluster hands its groups' leadership to the others first:
** server.c, GRACEFUL STOP).  Every later signal is passed on too: a
** second one cuts the handover short (server.c, SECOND STOP).  Signals
** are passed on until the cores have stopped, never after: the thread
** takes ms.mu for each, and the server is freed only once ms.srv is NULL
** under that lock.
** Without threads (URSULA_ENABLE_THREADS=0) a handler stops the server
** instead: ursula_server_stop() is a flag store and a pipe write per
** loop, both async-signal-safe, and the first signal is logged after the
** stop.  The handler runs on the one thread there is, so clearing
** main_srv before the server is freed is enough.
*/


struct main_sig {
  pthread_mutex_t mu;
  struct ursula_server *srv; /* under mu: NULL once the cores stopped */
  sigset_t set;
};

#if URSULA_ENABLE_THREADS
/* Each SIGINT or SIGTERM stops the server (the first gracefully, the
** second at once); SIGUSR2 ends the thread. */
static void *main_sig_thread(void *arg) {
  struct main_sig *ms = (struct main_sig *)arg;
  int sig = 0, n = 0;
  while (sigwait(&ms->set, &sig) == 0 && sig != SIGUSR2) {
    pthread_mutex_lock(&ms->mu);
    if (ms->srv != NULL) {
      if (++n == 1) LOG_I("signal %d: stopping", sig);
      ursula_server_stop(ms->srv);
    }
    pthread_mutex_unlock(&ms->mu);
  }
  return NULL;
}
#else
static struct ursula_server *volatile main_srv;
static volatile sig_atomic_t main_signal;

/* Every signal stops the server (a second one at once), until main_srv
** is NULL. */
static void main_on_signal(int sig) {
  struct ursula_server *srv = main_srv;
  if (main_signal == 0) main_signal = sig;
  if (srv != NULL) ursula_server_stop(srv);
}
#endif

URSULA_API int ursula_main(int argc, char **argv) {
  struct ursula_config cfg;
  struct ursula_server *srv = NULL;
  struct main_sig ms;
  pthread_t sig_thread;
  char err[URSULA_ERRMSG_LEN];
  int rc;
  ursula_config_init(&cfg);
  rc = conf_parse_args(&cfg, argc, argv, err);
  if (rc == CONF_HELP) {
    conf_print_help(stdout);
    return 0;
  }
  if (rc == CONF_VERSION) {
    conf_print_version(stdout);
    return 0;
  }
  if (rc != CONF_RUN) {
    fprintf(stderr, "ursula: %s\n(try --help)\n", err);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  sigemptyset(&ms.set);
  sigaddset(&ms.set, SIGINT);
  sigaddset(&ms.set, SIGTERM);
  sigaddset(&ms.set, SIGUSR2); /* ends the signal thread after a stop */
  pthread_sigmask(SIG_BLOCK, &ms.set, NULL);
  rc = ursula_server_start(&cfg, &srv, err);
  if (rc != URSULA_OK) {
    fprintf(stderr, "ursula: %s\n", err);
    return 1;
  }
  ms.srv = srv;
#if URSULA_ENABLE_THREADS
  pthread_mutex_init(&ms.mu, NULL);
  if (pthread_create(&sig_thread, NULL, main_sig_thread, &ms) != 0) {
    fprintf(stderr, "ursula: cannot start the signal thread\n");
    ursula_server_stop(srv);
    ursula_server_wait(srv);
    pthread_mutex_destroy(&ms.mu);
    return 1;
  }
  rc = server_wait_cores(srv);
  pthread_mutex_lock(&ms.mu);
  ms.srv = NULL; /* no signal reaches srv from now on */
  pthread_mutex_unlock(&ms.mu);
  pthread_kill(sig_thread, SIGUSR2);
  pthread_join(sig_thread, NULL);
  pthread_mutex_destroy(&ms.mu);
  server_release(srv);
#else
  {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = main_on_signal;
    sigemptyset(&sa.sa_mask);
    main_srv = srv;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    pthread_sigmask(SIG_UNBLOCK, &ms.set, NULL);
    (void)sig_thread;
  }
  rc = server_wait_cores(srv);
  main_srv = NULL; /* no handler reaches srv from now on */
  server_release(srv);
  if (main_signal != 0) LOG_I("stopped by signal %d", (int)main_signal);
#endif
  return rc == URSULA_OK ? 0 : 1;
}

#if URSULA_ENABLE_MAIN
int main(int argc, char **argv) {
  return ursula_main(argc, argv);
}
#endif
/**** End src/main.c ****/
