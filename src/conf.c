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
#include "internal.h"

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
  CONF_T_NAME,        /* char[65]: 1-64 of [A-Za-z0-9._-] */
  CONF_T_ADMIN_LISTEN, /* admin_listen_host + admin_listen_port, or "off" */
  CONF_T_LOG_FORMAT    /* int: "text" 0, "json" 1 */
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
    {"log-format", NULL, CONF_T_LOG_FORMAT, CONF_OFF(log_format), 0, 1,
     "text|json",
     "text: \"TIME ursula[L] message\" lines; json: one JSON object per "
     "line, {\"ts\", \"level\", \"msg\"}"},
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
    {"admin-listen", NULL, CONF_T_ADMIN_LISTEN, 0, 0, 65535, "HOST:PORT",
     "serve GET /metrics, /healthz, /readyz and /__ursula/cluster here; "
     "\"off\" = no admin listener; if the default 127.0.0.1:4438 is "
     "taken, a warning and none (any other address must bind)"},
    {"cluster-secret-file", NULL, CONF_T_PATH, CONF_OFF(cluster_secret_file),
     0, URSULA_PATH_LEN - 1, "FILE",
     "a file holding the cluster's secret (16-256 bytes), the same on every "
     "node: each peer connection proves it (an HMAC of a challenge; the "
     "secret never goes on the wire); none = links not authenticated"},
    {"public-status", NULL, CONF_T_INT, CONF_OFF(public_status), 0, 1, "0|1",
     "1: also serve GET /__ursula/cluster on the public listener (its "
     "paths are the admin listener's otherwise)"},
    {"auth-file", NULL, CONF_T_PATH, CONF_OFF(auth_file), 0,
     URSULA_PATH_LEN - 1, "FILE",
     "bearer tokens: lines of NAME SCOPES PREFIX SHA256HEX (README, "
     "\"Authentication\"); every request then needs \"Authorization: Bearer "
     "TOKEN\" (OPTIONS, /healthz and /readyz excepted); SIGHUP re-reads "
     "it; empty = no authentication"},
    {"tls-cert", NULL, CONF_T_PATH, CONF_OFF(tls_cert), 0, URSULA_PATH_LEN - 1,
     "FILE",
     "serve HTTPS (TLS 1.2) on the listener: the certificate chain in PEM, "
     "leaf first; needs --tls-key and a build with TLS (make TLS=1); SIGHUP "
     "re-reads both; the admin listener stays plain; empty = plain HTTP"},
    {"tls-key", NULL, CONF_T_PATH, CONF_OFF(tls_key), 0, URSULA_PATH_LEN - 1,
     "FILE",
     "the private key of --tls-cert's leaf, in PEM (RSA or EC: RSA PRIVATE "
     "KEY, EC PRIVATE KEY or PKCS#8 PRIVATE KEY)"},
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

/* "off", or HOST:PORT (PORT 0: any free port). */
static int conf_set_admin_listen(struct ursula_config *cfg, struct str key,
                                 const char *v, char *err) {
  char host[256];
  int port = 0, rc;
  host[0] = '\0';
  if (strcmp(v, "off") != 0 &&
      (rc = conf_parse_hostport(key, v, host, &port, 0, err)) != URSULA_OK)
    return rc;
  memcpy(cfg->admin_listen_host, host, sizeof(host));
  cfg->admin_listen_port = port;
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
    case CONF_T_ADMIN_LISTEN:
      return conf_set_admin_listen(cfg, key, v, err);
    case CONF_T_LOG_FORMAT:
      if (strcmp(v, "text") != 0 && strcmp(v, "json") != 0)
        return conf_fail(err, "%.*s: expected text or json, got \"%.*s%s\"",
                         (int)key.len, key.ptr, conf_show_len(v), v,
                         conf_show_more(v));
      *(int *)(void *)field = strcmp(v, "json") == 0;
      return URSULA_OK;
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
    if (util_str_eq(key, "config") || util_str_eq(key, "check-config"))
      return conf_fail(err,
                       "%.*s: only valid as a command-line flag, "
                       "--%.*s FILE",
                       (int)key.len, key.ptr, (int)key.len, key.ptr);
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
    case CONF_T_LOG_FORMAT:
      snprintf(out, cap, "%s",
               *(const int *)(const void *)field ? "json" : "text");
      break;
    case CONF_T_ADMIN_LISTEN:
      if (cfg->admin_listen_host[0] == '\0')
        snprintf(out, cap, "%s", "off");
      else if (strchr(cfg->admin_listen_host, ':') != NULL)
        snprintf(out, cap, "[%s]:%d", cfg->admin_listen_host,
                 cfg->admin_listen_port);
      else
        snprintf(out, cap, "%s:%d", cfg->admin_listen_host,
                 cfg->admin_listen_port);
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
  memcpy(cfg->admin_listen_host, URSULA_DEFAULT_HOST,
         sizeof(URSULA_DEFAULT_HOST));
  cfg->admin_listen_port = URSULA_DEFAULT_ADMIN_PORT;
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
**   1. syntax: unknown flags, missing values, a second --check-config;
**      -h / -V answer at once;
**   2. every --config FILE and the --check-config FILE are loaded, in the
**      order they stand (--check-config FILE loads as --config FILE does);
**   3. every other flag is applied, in order (the last one wins).
** Work is done on a copy; *cfg is written only for CONF_RUN and
** CONF_CHECK.  *check (if check is not NULL) is the --check-config FILE
** or NULL, set once pass 1 got through, so also when a later pass or the
** cluster check fails. */
URSULA_PRIVATE int conf_parse_args(struct ursula_config *cfg, int argc,
                                   char **argv, const char **check,
                                   char *err) {
  struct ursula_config tmp;
  char why[URSULA_ERRMSG_LEN];
  const char *check_path = NULL;
  int pass, i;
  tmp = *cfg;
  if (check != NULL) *check = NULL;
  for (pass = 1; pass <= 3; pass++) {
    if (pass == 2 && check != NULL) *check = check_path;
    for (i = 1; i < argc; i++) {
      const char *a = argv[i], *eq, *value = NULL;
      struct str name;
      int is_config, is_check;
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
      is_check = util_str_eq(name, "check-config");
      is_config = is_check || util_str_eq(name, "config");
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
      if (pass == 1 && is_check) {
        if (check_path != NULL)
          return conf_fail(err,
                           "--check-config given twice: check one file at a "
                           "time (add the others with --config)");
        check_path = value;
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
  return check_path != NULL ? CONF_CHECK : CONF_RUN;
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
          "       ursula --check-config FILE [--config FILE] [--KEY VALUE]...\n"
          "       ursula backup --admin HOST:PORT --out DIR [--token-file FILE]\n"
          "       ursula restore --from DIR --wal-dir D [--cold-dir C | --s3-*"
          " ...]\n"
          "                      [--no-verify-cold]\n"
          "\n"
          "Serve Durable Streams over HTTP/1.1.  Every flag but --config\n"
          "and --check-config is also a config-file key (the name without\n"
          "\"--\"); --config FILE is loaded first, wherever it stands, and\n"
          "the other flags then override it in order.\n"
          "\n"
          "`ursula backup` copies a running node's groups (it needs\n"
          "--wal-dir) through its admin listener into DIR; `ursula restore`\n"
          "makes a new --wal-dir from such a backup, offline (each takes\n"
          "--help; README, Backup and restore).\n"
          "\n"
          "  --config FILE\n"
          "        load a config file of `key value` lines (# comments)\n"
          "  --check-config FILE\n");
  conf_print_wrapped(
      f,
      "load FILE as --config FILE does (with the other flags given), run "
      "the checks a start makes that need no I/O (S3 credentials from the "
      "environment count), print \"FILE: ok\" and exit 0, or print the "
      "reason and exit 2; starts no server, binds no port, does not touch "
      "--wal-dir");
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
