/*
** ursula.h -- public embedding API of ursula, a Durable Streams server.
**
** TABLE OF CONTENTS
**   1. Building          4. Threading
**   2. Compile options   5. Errors
**   3. Embedding         6. License
**
** 1. BUILDING
**   ursula ships as two files, ursula.c (generated from src/, committed) and
**   this header.  A whole server is one command:
**
**       cc ursula.c -o ursula -pthread
**
**   The default build needs only libc and pthreads.
**
** 2. COMPILE-TIME OPTIONS
**   Every option is a macro defaulted once in src/config.h (and so near the
**   top of ursula.c): URSULA_ENABLE_* switch features (0/1), URSULA_MAX_* are
**   hard caps, URSULA_DEFAULT_* are defaults the config file may override.
**   `ursula --version` and ursula_compile_options() list the active set.
**   Options never change the layout of the structs below; a feature that
**   was compiled out answers URSULA_ENOTSUP.
**
** 3. EMBEDDING
**   Compile ursula.c with -DURSULA_ENABLE_MAIN=0 and link it in:
**
**       struct ursula_config cfg;
**       struct ursula_server *srv;
**       ursula_config_init(&cfg);
**       cfg.listen_port = 0;               // any free port
**       if (ursula_server_start(&cfg, &srv) == URSULA_OK) {
**           printf("port %d\n", ursula_server_port(srv));
**           ...
**           ursula_server_stop(srv);       // from any thread
**           ursula_server_wait(srv);       // joins and frees
**       }
**
** 4. THREADING
**   ursula_server_start() starts core_count threads, each running one event
**   loop.  ursula_server_stop() may be called from any thread and from a
**   signal handler, ursula_server_reload() from any thread; every other
**   function is called from one thread at a time.
**
** 5. ERRORS
**   Fallible functions return int: URSULA_OK (0) or a negative URSULA_E*
**   code; ursula_strerror() names it.  Functions that can say more take a
**   caller-provided buffer `err` of URSULA_ERRMSG_LEN bytes.
**
** 6. LICENSE
**   Apache License 2.0; see LICENSE.
*/
#ifndef URSULA_H
#define URSULA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define URSULA_VERSION "0.1.0"
#define URSULA_VERSION_NUMBER 1000 /* major*1000000 + minor*1000 + patch */

#ifndef URSULA_API
#define URSULA_API
#endif

/* The error table: X(name, value, message).  ursula_strerror() and every
** internal error message come from this one list. */
#define URSULA_ERRORS(X)                                  \
  X(URSULA_OK, 0, "ok")                                   \
  X(URSULA_ENOMEM, -1, "out of memory")                   \
  X(URSULA_EINVAL, -2, "invalid argument")                \
  X(URSULA_EIO, -3, "input/output error")                 \
  X(URSULA_EAGAIN, -4, "incomplete input, need more")     \
  X(URSULA_ENOTSUP, -5, "not supported by this build")    \
  X(URSULA_ENOSPC, -6, "no space left on device")         \
  X(URSULA_ECORRUPT, -7, "corrupt data")                  \
  X(URSULA_ETOOBIG, -8, "too large")                      \
  X(URSULA_ENOTFOUND, -9, "not found")                    \
  X(URSULA_ESYS, -10, "system call failed")               \
  X(URSULA_ECLOSED, -11, "closed")

enum ursula_error {
#define URSULA__ENUM(name, value, msg) name = value,
  URSULA_ERRORS(URSULA__ENUM)
#undef URSULA__ENUM
  URSULA__ERROR_END = -12
};

#define URSULA_ERRMSG_LEN 1536
#define URSULA_PATH_LEN 1024

/* A member of a cluster: node id and the address it listens on for its
** peers (struct ursula_config's peers). */
#define URSULA_MAX_PEERS 5
struct ursula_peer {
  int id;         /* 1..255 */
  char host[256]; /* a name or a numeric address */
  int port;       /* 1..65535 */
};

/* Server configuration.  ursula_config_init() fills every field with its
** default; ursula_config_set() and ursula_config_load() change fields by
** their config-file key names (the same names as the command-line flags,
** without the leading dashes).  Plain data: copy it freely. */
struct ursula_config {
  char listen_host[256];        /* listen: address to bind, "127.0.0.1" */
  int listen_port;              /* listen: TCP port, 4437; 0 = any free */
  int core_count;               /* core-count: event-loop threads; 0 = CPUs */
  int raft_group_count;         /* raft-group-count: groups streams hash to */
  int long_poll_timeout_ms;     /* long-poll-timeout-ms: live read wait */
  int64_t max_body_bytes;       /* max-body-bytes: largest request body */
  int64_t max_body_inflight_bytes; /* max-body-inflight-bytes: request body
                                      bytes being received, all cores;
                                      at least max_body_bytes */
  int max_connections;          /* max-connections: open client sockets */
  int idle_timeout_ms;          /* idle-timeout-ms: close idle keep-alive */
  int header_timeout_ms;        /* header-timeout-ms: time to send headers */
  int body_timeout_ms;          /* body-timeout-ms: longest wait for more
                                   of a request body */
  int sse_keepalive_ms;         /* sse-keepalive-ms: idle SSE comment line */
  int sse_close_ms;             /* sse-close-ms: an SSE response ends this
                                   long after it began */
  int64_t max_read_bytes;       /* max-read-bytes: a catch-up response is
                                   read and sent in parts of this size */
  int64_t max_catchup_bytes;    /* max-catchup-bytes: a catch-up GET answers
                                   up to the tail in one response if it is
                                   at most this far; else one part */
  int64_t max_output_bytes;     /* max-output-bytes: responses queued for
                                   slow clients, server-wide, before
                                   live readers and pipelined requests
                                   wait for any backlog to drain */
  int64_t hot_max_bytes;        /* hot-max-bytes: stream data in memory,
                                   per group (with a WAL) */
  int64_t snapshot_bytes;       /* snapshot-bytes: WAL bytes between
                                   snapshots, per group */
  char wal_dir[URSULA_PATH_LEN]; /* wal-dir: "" = in memory only */
  int log_level;                /* log-level: 0 error .. 3 debug */
  int log_format;               /* log-format: 0 text, 1 json */
  /* the cold tier (needs wal-dir): S3, or a local folder */
  char cold_dir[URSULA_PATH_LEN];    /* cold-dir: chunks in this folder */
  char s3_endpoint[URSULA_PATH_LEN]; /* s3-endpoint: http(s)://host[:port] */
  char s3_bucket[URSULA_PATH_LEN];   /* s3-bucket */
  char s3_region[URSULA_PATH_LEN];   /* s3-region: "us-east-1" */
  char s3_prefix[URSULA_PATH_LEN];   /* s3-prefix: before every key */
  char s3_access_key[URSULA_PATH_LEN]; /* s3-access-key: else the
                                          AWS_ACCESS_KEY_ID variable */
  char s3_secret_key[URSULA_PATH_LEN]; /* s3-secret-key: else
                                          AWS_SECRET_ACCESS_KEY */
  char s3_session_token[4096]; /* s3-session-token: else AWS_SESSION_TOKEN */
  char s3_ca_file[URSULA_PATH_LEN]; /* s3-ca-file: PEM trust anchors for
                                       https; "" = the system bundle */
  int64_t cold_flush_age_ms; /* cold-flush-age-ms: move data this old */
  int64_t cold_cache_bytes;  /* cold-cache-bytes: chunks kept in memory */
  /* a cluster (issue #14): no peer entry = a single node, as before */
  int node_id;               /* node-id: this node's id, 1..255; 0 = none */
  char cluster_id[65];       /* cluster-id: 1-64 of [A-Za-z0-9._-], default
                                "ursula"; nodes of another refuse us */
  int peer_count;            /* peer: how many members were given */
  struct ursula_peer peers[URSULA_MAX_PEERS]; /* peer: N=HOST:PORT, one
                                per member (1, 3 or 5), this node too */
  char peer_listen_host[256]; /* peer-listen: where to listen for peers */
  int peer_listen_port;       /* (host "": this node's own peer entry) */
  int lost_log;               /* lost-log: 1 = this member's --wal-dir was
                                 wiped or replaced: an empty log catches up
                                 before it votes (Raft LOST LOG) */
  /* the admin listener: GET /metrics, /healthz, /readyz, /__ursula/cluster */
  char admin_listen_host[256]; /* admin-listen: "127.0.0.1"; "" = off */
  int admin_listen_port;       /* admin-listen: 4438; 0 = any free port */
  char cluster_secret_file[URSULA_PATH_LEN]; /* cluster-secret-file: the
                                  secret every node's peer links prove
                                  (16-256 bytes); "" = none */
  int public_status;           /* public-status: 1 = GET /__ursula/cluster
                                  on the public listener too; 0 (default):
                                  the admin listener's alone */
  /* bearer tokens: every request needs one (ursula_server_reload) */
  char auth_file[URSULA_PATH_LEN]; /* auth-file: "" = no authentication */
  /* HTTPS on the public listener (a build with TLS: make TLS=1); both or
  ** neither; ursula_server_reload re-reads them */
  char tls_cert[URSULA_PATH_LEN]; /* tls-cert: PEM chain, leaf first */
  char tls_key[URSULA_PATH_LEN];  /* tls-key: PEM private key, RSA or EC */
};

/* Fill *cfg with the defaults of this build. */
URSULA_API void ursula_config_init(struct ursula_config *cfg);

/* Set one key ("core-count", "listen", ...) from its text value.  Returns
** URSULA_OK, or URSULA_EINVAL with a reason in err (may be NULL). */
URSULA_API int ursula_config_set(struct ursula_config *cfg, const char *key,
                                 const char *value, char *err);

/* Read a config file of `key value` lines (`#` starts a comment) into
** *cfg.  Returns URSULA_OK, or an error with "file:line: reason" in err. */
URSULA_API int ursula_config_load(struct ursula_config *cfg, const char *path,
                                  char *err);

struct ursula_server; /* opaque */

/* Start a server with a copy of *cfg.  On success *out is set and the
** listening socket is bound before this returns.  On failure *out is left
** alone and err (may be NULL) says why. */
URSULA_API int ursula_server_start(const struct ursula_config *cfg,
                                   struct ursula_server **out, char *err);

/* The TCP port the server listens on (useful with listen_port 0). */
URSULA_API int ursula_server_port(const struct ursula_server *srv);

/* The TCP port of the admin listener (admin_listen), or 0 if there is
** none (admin-listen off, or its default address was taken). */
URSULA_API int ursula_server_admin_port(const struct ursula_server *srv);

/* Ask the server to stop: it stops accepting, finishes in-flight requests,
** closes live readers and lets its threads end.  A node of a cluster
** (peers configured) first hands the leadership of its groups to other
** members, serving meanwhile, for at most 5 s; a second call stops at
** once.  Thread-safe and async-signal-safe; returns at once. */
URSULA_API void ursula_server_stop(struct ursula_server *srv);

/* Wait for the server's threads to end, then free it.  Returns URSULA_OK
** or the first fatal error a core met. */
URSULA_API int ursula_server_wait(struct ursula_server *srv);

/* Re-read the auth file (auth_file) and the TLS certificate and key
** (tls_cert, tls_key).  The auth file: on success every core takes the
** new table at its next turn (a live reader whose token it no longer lets
** read its stream is ended then); on failure the table in force stays,
** and the error (FILE:LINE: reason) is logged and returned (URSULA_EINVAL,
** URSULA_EIO, URSULA_ENOMEM).  The certificate and key: a good pair
** serves the connections accepted after the call (those open keep
** theirs); a bad one leaves the pair in force, and the reason is logged
** and its error returned.  What is not configured is not read; the first
** failure is returned, else URSULA_OK.  Any thread but a signal
** handler's, while the server runs (until ursula_server_wait() returns);
** calls are serialized.  The program calls it on SIGHUP. */
URSULA_API int ursula_server_reload(struct ursula_server *srv);

/* The command-line program: parse argv, load config, serve until SIGINT or
** SIGTERM (each is passed to ursula_server_stop(): a second one during a
** cluster node's handover stops it at once); SIGHUP re-reads the auth
** file and the TLS certificate and key (ursula_server_reload).  Returns the process exit status. */
URSULA_API int ursula_main(int argc, char **argv);

/* A static string naming an error code. */
URSULA_API const char *ursula_strerror(int rc);

/* A static, space-separated list of the compile-time options in force,
** e.g. "URSULA_ENABLE_EPOLL=1 URSULA_ENABLE_THREADS=1 ...". */
URSULA_API const char *ursula_compile_options(void);

#ifdef __cplusplus
}
#endif
#endif /* URSULA_H */
