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
/* the largest JSON record number (json-record-coordinates-v1): 2^53 - 1,
** as producer numbers, so a JavaScript client holds every one exactly */
#define URSULA_MAX_RECORD ((((uint64_t)1) << 53) - 1)

#ifndef URSULA_DEFAULT_HOST
#define URSULA_DEFAULT_HOST "127.0.0.1"
#endif
#ifndef URSULA_DEFAULT_PORT
#define URSULA_DEFAULT_PORT 4437
#endif
#ifndef URSULA_DEFAULT_ADMIN_PORT
#define URSULA_DEFAULT_ADMIN_PORT 4438 /* admin-listen, on the default host */
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
