/* unit_conf.c -- conf.c: defaults, keys, config files, flags, options. */

/* Write text to a fresh temp file; its name goes to path (32 bytes). */
static int unit_conf_file(char *path, const char *text, size_t len) {
  int fd;
  ssize_t w;
  strcpy(path, "/tmp/ursula-conf-XXXXXX");
  fd = mkstemp(path);
  if (fd < 0) return -1;
  w = write(fd, text, len);
  close(fd);
  return w == (ssize_t)len ? 0 : -1;
}

/* Field-by-field equality (padding and bytes after NULs aside). */
static int unit_conf_eq(const struct ursula_config *a,
                        const struct ursula_config *b) {
  return strcmp(a->listen_host, b->listen_host) == 0 &&
         a->listen_port == b->listen_port && a->core_count == b->core_count &&
         a->raft_group_count == b->raft_group_count &&
         a->long_poll_timeout_ms == b->long_poll_timeout_ms &&
         a->max_body_bytes == b->max_body_bytes &&
         a->max_body_inflight_bytes == b->max_body_inflight_bytes &&
         a->max_connections == b->max_connections &&
         a->idle_timeout_ms == b->idle_timeout_ms &&
         a->header_timeout_ms == b->header_timeout_ms &&
         a->body_timeout_ms == b->body_timeout_ms &&
         a->sse_keepalive_ms == b->sse_keepalive_ms &&
         a->sse_close_ms == b->sse_close_ms &&
         a->max_read_bytes == b->max_read_bytes &&
         strcmp(a->wal_dir, b->wal_dir) == 0 && a->log_level == b->log_level;
}

static int unit_conf_set(struct ursula_config *c, const char *k,
                         const char *v) {
  char err[URSULA_ERRMSG_LEN];
  err[0] = '\0';
  return ursula_config_set(c, k, v, err);
}

static void test_conf_init(void) {
  struct ursula_config c;
  memset(&c, 0xA5, sizeof(c));
  ursula_config_init(&c);
  ASSERT(strcmp(c.listen_host, URSULA_DEFAULT_HOST) == 0);
  ASSERT(c.listen_port == URSULA_DEFAULT_PORT);
  ASSERT(c.core_count == 0);
  ASSERT(c.raft_group_count == URSULA_DEFAULT_GROUPS);
  ASSERT(c.long_poll_timeout_ms == URSULA_DEFAULT_LONG_POLL_MS);
  ASSERT(c.max_body_bytes == URSULA_DEFAULT_MAX_BODY_BYTES);
  ASSERT(c.max_body_inflight_bytes == 268435456); /* issue 12 section 5 */
  ASSERT(c.max_connections == URSULA_DEFAULT_MAX_CONNECTIONS);
  ASSERT(c.idle_timeout_ms == URSULA_DEFAULT_IDLE_TIMEOUT_MS);
  ASSERT(c.header_timeout_ms == URSULA_DEFAULT_HEADER_TIMEOUT_MS);
  ASSERT(c.body_timeout_ms == 30000); /* issue 12 section 5 */
  ASSERT(c.sse_keepalive_ms == URSULA_DEFAULT_SSE_KEEPALIVE_MS);
  ASSERT(c.sse_close_ms == URSULA_DEFAULT_SSE_CLOSE_MS);
  ASSERT(c.max_read_bytes == URSULA_DEFAULT_MAX_READ_BYTES);
  ASSERT(c.wal_dir[0] == '\0');
  ASSERT(c.log_level == 2);
}

/* Each numeric key: both bounds accepted, one past each bound refused,
** and a refused value leaves the field alone. */
static void test_conf_set_ranges(void) {
  static const struct {
    const char *key;
    uint64_t min, max;
  } keys[] = {
      {"core-count", 0, URSULA_MAX_CORES},
      {"raft-group-count", 1, URSULA_MAX_GROUPS},
      {"long-poll-timeout-ms", 1, 3600000},
      {"max-body-bytes", 1024, 2147483648u},
      {"max-body-inflight-bytes", 1024, UINT64_C(1) << 50},
      {"max-connections", 1, 1000000},
      {"idle-timeout-ms", 1, 86400000},
      {"header-timeout-ms", 1, 86400000},
      {"body-timeout-ms", 1, 86400000},
      {"sse-keepalive-ms", 1, 86400000},
      {"sse-close-ms", 1, 86400000},
      {"max-read-bytes", 4096, 67108864},
  };
  size_t i;
  char v[32];
  for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    struct ursula_config c, before;
    ursula_config_init(&c);
    snprintf(v, sizeof(v), "%llu", (unsigned long long)keys[i].min);
    ASSERT(unit_conf_set(&c, keys[i].key, v) == URSULA_OK);
    snprintf(v, sizeof(v), "%llu", (unsigned long long)keys[i].max);
    ASSERT(unit_conf_set(&c, keys[i].key, v) == URSULA_OK);
    before = c;
    snprintf(v, sizeof(v), "%llu", (unsigned long long)keys[i].max + 1);
    ASSERT(unit_conf_set(&c, keys[i].key, v) == URSULA_EINVAL);
    if (keys[i].min > 0) {
      snprintf(v, sizeof(v), "%llu", (unsigned long long)keys[i].min - 1);
      ASSERT(unit_conf_set(&c, keys[i].key, v) == URSULA_EINVAL);
    }
    ASSERT(unit_conf_eq(&c, &before));
  }
}

static void test_conf_set_values(void) {
  struct ursula_config c, d;
  static const char *bad[] = {"",
                              "-1",
                              "+5",
                              " 5",
                              "5 ",
                              "5k",
                              "0x10",
                              "1e3",
                              "5.0",
                              "\xd9\xa3",
                              "99999999999999999999999"};
  size_t i;
  ursula_config_init(&c);
  ASSERT(unit_conf_set(&c, "core-count", "8") == URSULA_OK &&
         c.core_count == 8);
  ASSERT(unit_conf_set(&c, "core-count", "0007") == URSULA_OK &&
         c.core_count == 7);
  ASSERT(unit_conf_set(&c, "raft-group-count", "16") == URSULA_OK &&
         c.raft_group_count == 16);
  ASSERT(unit_conf_set(&c, "long-poll-timeout-ms", "250") == URSULA_OK &&
         c.long_poll_timeout_ms == 250);
  ASSERT(unit_conf_set(&c, "max-body-bytes", "2147483648") == URSULA_OK &&
         c.max_body_bytes == INT64_C(2147483648));
  ASSERT(unit_conf_set(&c, "max-body-inflight-bytes", "1073741824") ==
             URSULA_OK &&
         c.max_body_inflight_bytes == INT64_C(1073741824));
  ASSERT(unit_conf_set(&c, "max-connections", "12") == URSULA_OK &&
         c.max_connections == 12);
  ASSERT(unit_conf_set(&c, "idle-timeout-ms", "86400000") == URSULA_OK &&
         c.idle_timeout_ms == 86400000);
  ASSERT(unit_conf_set(&c, "header-timeout-ms", "5") == URSULA_OK &&
         c.header_timeout_ms == 5);
  ASSERT(unit_conf_set(&c, "body-timeout-ms", "250") == URSULA_OK &&
         c.body_timeout_ms == 250);
  ASSERT(unit_conf_set(&c, "sse-keepalive-ms", "1000") == URSULA_OK &&
         c.sse_keepalive_ms == 1000);
  ASSERT(unit_conf_set(&c, "max-read-bytes", "65536") == URSULA_OK &&
         c.max_read_bytes == 65536);
  d = c;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ASSERT(unit_conf_set(&c, "core-count", bad[i]) == URSULA_EINVAL);
    ASSERT(unit_conf_set(&c, "max-body-bytes", bad[i]) == URSULA_EINVAL);
    ASSERT(unit_conf_set(&c, "log-level", bad[i]) == URSULA_EINVAL);
  }
  ASSERT(ursula_config_set(&c, "core-count", NULL, NULL) == URSULA_EINVAL);
  ASSERT(unit_conf_eq(&c, &d));
}

static void test_conf_messages(void) {
  struct ursula_config c;
  char err[URSULA_ERRMSG_LEN], want[URSULA_ERRMSG_LEN];
  char long_value[200];
  ursula_config_init(&c);
  ASSERT(ursula_config_set(&c, "core-count", "x", err) == URSULA_EINVAL);
  snprintf(want, sizeof(want),
           "core-count: expected an integer from 0 to %d, got \"x\"",
           URSULA_MAX_CORES);
  ASSERT_MEM(err, strlen(err), want);
  ASSERT(ursula_config_set(&c, "max-read-bytes", "-1", err) == URSULA_EINVAL);
  ASSERT_MEM(err, strlen(err),
             "max-read-bytes: expected an integer from 4096 to 67108864, "
             "got \"-1\"");
  ASSERT(ursula_config_set(&c, "foo", "1", err) == URSULA_EINVAL);
  ASSERT_MEM(err, strlen(err), "unknown key \"foo\"");
  ASSERT(ursula_config_set(&c, "config", "x.conf", err) == URSULA_EINVAL);
  ASSERT(strstr(err, "command-line") != NULL);
  ASSERT(ursula_config_set(&c, "Listen", "a:1", err) == URSULA_EINVAL);
  ASSERT_MEM(err, strlen(err), "unknown key \"Listen\"");
  /* a long bad value is quoted shortened, and err never overflows */
  memset(long_value, '9', sizeof(long_value) - 1);
  long_value[sizeof(long_value) - 1] = '\0';
  ASSERT(ursula_config_set(&c, "max-connections", long_value, err) ==
         URSULA_EINVAL);
  ASSERT(strlen(err) < 160 && strstr(err, "...\"") != NULL);
  /* err may be NULL */
  ASSERT(ursula_config_set(&c, "nope", "1", NULL) == URSULA_EINVAL);
  ASSERT(ursula_config_set(&c, NULL, "1", NULL) == URSULA_EINVAL);
}

static void test_conf_listen(void) {
  static const struct {
    const char *in, *host;
    int port;
  } good[] = {
      {"127.0.0.1:4437", "127.0.0.1", 4437},
      {"0.0.0.0:0", "0.0.0.0", 0},
      {"localhost:65535", "localhost", 65535},
      {"[::1]:8080", "::1", 8080},
      {"[::]:0", "::", 0},
      {"[fe80::1%eth0]:1", "fe80::1%eth0", 1},
      {"[2001:db8::7]:00080", "2001:db8::7", 80},
      {"[10.0.0.1]:9", "10.0.0.1", 9},
  };
  static const char *bad[] = {
      "127.0.0.1", ":4437",   "host:",     "host:65536", "host:-1", "host:+1",
      "host: 1",   "host:1 ", "host:0x10", "::1:80",     "[::1]",   "[::1]80",
      "a[b:1",     "[::1:80", "[]:80",     "a b:80",     "a\tb:80", "",
      "[::1]:",    "x]:1",    "[a]b]:1",
  };
  struct ursula_config c, d;
  char host[300];
  size_t i;
  ursula_config_init(&c);
  for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    ASSERT(unit_conf_set(&c, "listen", good[i].in) == URSULA_OK);
    ASSERT(strcmp(c.listen_host, good[i].host) == 0);
    ASSERT(c.listen_port == good[i].port);
  }
  d = c;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = unit_conf_set(&c, "listen", bad[i]);
    if (rc != URSULA_EINVAL) printf("# listen accepted \"%s\"\n", bad[i]);
    ASSERT(rc == URSULA_EINVAL);
    ASSERT(unit_conf_eq(&c, &d));
  }
  /* the host fills listen_host (255 bytes + NUL) but no more */
  memset(host, 'h', 255);
  strcpy(host + 255, ":1");
  ASSERT(unit_conf_set(&c, "listen", host) == URSULA_OK);
  ASSERT(strlen(c.listen_host) == 255 && c.listen_port == 1);
  memset(host, 'h', 256);
  strcpy(host + 256, ":2");
  ASSERT(unit_conf_set(&c, "listen", host) == URSULA_EINVAL);
  ASSERT(c.listen_port == 1);
}

static void test_conf_wal_dir_and_level(void) {
  struct ursula_config c;
  char path[URSULA_PATH_LEN + 1];
  ursula_config_init(&c);
  ASSERT(unit_conf_set(&c, "wal-dir", "/var/lib/ursula wal") == URSULA_OK);
  ASSERT(strcmp(c.wal_dir, "/var/lib/ursula wal") == 0);
  ASSERT(unit_conf_set(&c, "raft-log-dir", "/x") == URSULA_OK);
  ASSERT(strcmp(c.wal_dir, "/x") == 0);
  memset(path, 'p', URSULA_PATH_LEN - 1);
  path[URSULA_PATH_LEN - 1] = '\0';
  ASSERT(unit_conf_set(&c, "wal-dir", path) == URSULA_OK);
  ASSERT(strlen(c.wal_dir) == URSULA_PATH_LEN - 1);
  path[URSULA_PATH_LEN - 1] = 'p';
  path[URSULA_PATH_LEN] = '\0';
  ASSERT(unit_conf_set(&c, "wal-dir", path) == URSULA_EINVAL);
  ASSERT(strlen(c.wal_dir) == URSULA_PATH_LEN - 1);
  ASSERT(unit_conf_set(&c, "wal-dir", "") == URSULA_OK && c.wal_dir[0] == 0);

  ASSERT(unit_conf_set(&c, "log-level", "0") == URSULA_OK && c.log_level == 0);
  ASSERT(unit_conf_set(&c, "log-level", "3") == URSULA_OK && c.log_level == 3);
  ASSERT(unit_conf_set(&c, "log-level", "warn") == URSULA_OK &&
         c.log_level == 1);
  ASSERT(unit_conf_set(&c, "log-level", "DEBUG") == URSULA_OK &&
         c.log_level == 3);
  ASSERT(unit_conf_set(&c, "log-level", "error") == URSULA_OK &&
         c.log_level == 0);
  ASSERT(unit_conf_set(&c, "log-level", "info") == URSULA_OK &&
         c.log_level == 2);
  ASSERT(unit_conf_set(&c, "log-level", "4") == URSULA_EINVAL);
  ASSERT(unit_conf_set(&c, "log-level", "verbose") == URSULA_EINVAL);
  ASSERT(unit_conf_set(&c, "log-level", "info ") == URSULA_EINVAL);
  ASSERT(c.log_level == 2);
}

/* Formatting a value and setting it back gives the same config. */
static void test_conf_format_roundtrip(void) {
  struct ursula_config a, b;
  char v[URSULA_PATH_LEN + 300];
  size_t i;
  ursula_config_init(&a);
  ASSERT(unit_conf_set(&a, "listen", "[::1]:99") == URSULA_OK);
  ASSERT(unit_conf_set(&a, "wal-dir", "/w") == URSULA_OK);
  ASSERT(unit_conf_set(&a, "max-body-bytes", "2147483648") == URSULA_OK);
  ursula_config_init(&b);
  for (i = 0; i < sizeof(conf_keys) / sizeof(conf_keys[0]); i++) {
    conf_format(&a, &conf_keys[i], v, sizeof(v));
    ASSERT(unit_conf_set(&b, conf_keys[i].name, v) == URSULA_OK);
  }
  ASSERT(unit_conf_eq(&a, &b));
}

/* Run conf_parse_args on a NULL-terminated argument list (check as
** conf_parse_args takes it). */
static int unit_conf_args_check(struct ursula_config *c, const char **check,
                                char *err, const char *const *argv) {
  char *copy[16];
  int argc = 0;
  while (argv[argc] != NULL && argc < 15) {
    copy[argc] = (char *)argv[argc];
    argc++;
  }
  copy[argc] = NULL;
  err[0] = '\0';
  return conf_parse_args(c, argc, copy, check, err);
}
static int unit_conf_args(struct ursula_config *c, char *err,
                          const char *const *argv) {
  return unit_conf_args_check(c, NULL, err, argv);
}

#define UNIT_CONF_ARGS(c, err, ...) \
  unit_conf_args(c, err, (const char *const[]){"ursula", __VA_ARGS__, NULL})
#define UNIT_CONF_CHECK(c, check, err, ...) \
  unit_conf_args_check(c, check, err,       \
                       (const char *const[]){"ursula", __VA_ARGS__, NULL})

static void test_conf_args(void) {
  struct ursula_config c, d;
  char err[URSULA_ERRMSG_LEN];
  ursula_config_init(&c);
  ASSERT(UNIT_CONF_ARGS(&c, err, "--core-count", "3", "--listen=[::1]:0",
                        "--max-body-bytes=4096", "--wal-dir", "/w",
                        "--raft-log-dir=/r", "--log-level=debug") == CONF_RUN);
  ASSERT(c.core_count == 3 && c.listen_port == 0);
  ASSERT(strcmp(c.listen_host, "::1") == 0 && c.max_body_bytes == 4096);
  ASSERT(strcmp(c.wal_dir, "/r") == 0 && c.log_level == 3);
  /* the last of a repeated flag wins; an empty value after '=' is a value */
  ASSERT(UNIT_CONF_ARGS(&c, err, "--core-count=1", "--core-count", "2",
                        "--wal-dir=") == CONF_RUN);
  ASSERT(c.core_count == 2 && c.wal_dir[0] == '\0');
  /* no flags at all */
  d = c;
  {
    const char *const none[] = {"ursula", NULL};
    char *empty[1] = {NULL};
    ASSERT(unit_conf_args(&c, err, none) == CONF_RUN);
    ASSERT(conf_parse_args(&c, 0, empty, NULL, err) == CONF_RUN);
  }
  ASSERT(unit_conf_eq(&c, &d));
}

static void test_conf_args_errors(void) {
  struct ursula_config c, d;
  char err[URSULA_ERRMSG_LEN];
  ursula_config_init(&c);
  d = c;
  ASSERT(UNIT_CONF_ARGS(&c, err, "--core-count") == URSULA_EINVAL);
  ASSERT_MEM(err, strlen(err), "--core-count needs a value");
  ASSERT(UNIT_CONF_ARGS(&c, err, "--wal-dir", "--core-count", "2") ==
         URSULA_EINVAL);
  ASSERT_MEM(err, strlen(err), "--wal-dir needs a value");
  ASSERT(UNIT_CONF_ARGS(&c, err, "--bogus", "1") == URSULA_EINVAL);
  ASSERT_MEM(err, strlen(err), "unknown flag \"--bogus\"");
  ASSERT(UNIT_CONF_ARGS(&c, err, "--bogus=1") == URSULA_EINVAL);
  ASSERT_MEM(err, strlen(err), "unknown flag \"--bogus\"");
  ASSERT(UNIT_CONF_ARGS(&c, err, "-x") == URSULA_EINVAL);
  ASSERT_MEM(err, strlen(err), "unknown flag \"-x\"");
  ASSERT(UNIT_CONF_ARGS(&c, err, "-listen", "a:1") == URSULA_EINVAL);
  ASSERT(UNIT_CONF_ARGS(&c, err, "serve") == URSULA_EINVAL);
  ASSERT_MEM(err, strlen(err), "unexpected argument \"serve\"");
  ASSERT(UNIT_CONF_ARGS(&c, err, "--") == URSULA_EINVAL);
  ASSERT(UNIT_CONF_ARGS(&c, err, "--help=1") == URSULA_EINVAL);
  ASSERT_MEM(err, strlen(err), "--help takes no value");
  ASSERT(UNIT_CONF_ARGS(&c, err, "--version=") == URSULA_EINVAL);
  ASSERT_MEM(err, strlen(err), "--version takes no value");
  ASSERT(UNIT_CONF_ARGS(&c, err, "--config=") == URSULA_EINVAL);
  ASSERT_MEM(err, strlen(err), "config: no file name");
  ASSERT(UNIT_CONF_ARGS(&c, err, "--config") == URSULA_EINVAL);
  /* a bad value fails as a whole: the good flags before it are dropped */
  ASSERT(UNIT_CONF_ARGS(&c, err, "--core-count", "4", "--max-connections",
                        "0") == URSULA_EINVAL);
  ASSERT(strncmp(err, "max-connections: expected an integer from 1 to 1000000",
                 54) == 0);
  ASSERT(UNIT_CONF_ARGS(&c, err, "--listen", "nohost") == URSULA_EINVAL);
  ASSERT(strncmp(err, "listen:", 7) == 0);
  ASSERT(unit_conf_eq(&c, &d));
}

static void test_conf_args_help_version(void) {
  struct ursula_config c, d;
  char err[URSULA_ERRMSG_LEN];
  ursula_config_init(&c);
  d = c;
  ASSERT(UNIT_CONF_ARGS(&c, err, "-h") == CONF_HELP);
  ASSERT(UNIT_CONF_ARGS(&c, err, "--help") == CONF_HELP);
  ASSERT(UNIT_CONF_ARGS(&c, err, "-V") == CONF_VERSION);
  ASSERT(UNIT_CONF_ARGS(&c, err, "--version") == CONF_VERSION);
  /* help wins over bad values and a missing config file, which are never
  ** looked at; flags are not applied */
  ASSERT(UNIT_CONF_ARGS(&c, err, "--core-count", "x", "--config",
                        "/nonexistent/ursula.conf", "--help") == CONF_HELP);
  ASSERT(UNIT_CONF_ARGS(&c, err, "--core-count", "5", "-V") == CONF_VERSION);
  /* "-h" as a flag's value is a value */
  ASSERT(UNIT_CONF_ARGS(&c, err, "--wal-dir", "-h") == CONF_RUN);
  ASSERT(strcmp(c.wal_dir, "-h") == 0);
  c = d;
  /* a syntax error before -h is reported */
  ASSERT(UNIT_CONF_ARGS(&c, err, "--bogus", "-h") == URSULA_EINVAL);
  ASSERT(unit_conf_eq(&c, &d));
}

static void test_conf_args_config(void) {
  static const char text[] =
      "core-count 3\n"
      "listen 0.0.0.0:9000\n"
      "log-level 1\n";
  static const char text2[] = "log-level 0\nmax-connections 7\n";
  struct ursula_config c, d;
  char err[URSULA_ERRMSG_LEN], path[32], path2[32], flag[64];
  ASSERT(unit_conf_file(path, text, sizeof(text) - 1) == 0);
  ASSERT(unit_conf_file(path2, text2, sizeof(text2) - 1) == 0);
  ursula_config_init(&c);
  /* the file is loaded first even when it comes last */
  ASSERT(UNIT_CONF_ARGS(&c, err, "--core-count", "5", "--config", path) ==
         CONF_RUN);
  ASSERT(c.core_count == 5 && c.listen_port == 9000 && c.log_level == 1);
  ASSERT(strcmp(c.listen_host, "0.0.0.0") == 0);
  /* several files load in order; --config=FILE works */
  ursula_config_init(&c);
  snprintf(flag, sizeof(flag), "--config=%s", path2);
  ASSERT(UNIT_CONF_ARGS(&c, err, "--config", path, flag, "--listen", "a:1") ==
         CONF_RUN);
  ASSERT(c.core_count == 3 && c.log_level == 0 && c.max_connections == 7);
  ASSERT(c.listen_port == 1);
  /* a missing file is an error naming it */
  ursula_config_init(&c);
  d = c;
  ASSERT(UNIT_CONF_ARGS(&c, err, "--config", "/nonexistent/u.conf") ==
         URSULA_EINVAL);
  ASSERT(strncmp(err, "/nonexistent/u.conf: cannot open", 32) == 0);
  ASSERT(unit_conf_eq(&c, &d));
  unlink(path);
  unlink(path2);
}

static void test_conf_load(void) {
  static const char text[] =
      "\xEF\xBB\xBF# a config file\n"
      "\n"
      "   \t\n"
      "  # indented comment\n"
      "listen\t[::1]:5000   # trailing comment\n"
      "core-count 2\r\n"
      "raft-group-count    \t 8\t \n"
      "wal-dir /data/my wal#1  # the '#1' stays\n"
      "log-level warn #\n"
      "max-read-bytes 8192";
  static const char text2[] = "wal-dir /x\nwal-dir \t # none yet\n";
  struct ursula_config c, want;
  char err[URSULA_ERRMSG_LEN], path[32];
  ASSERT(unit_conf_file(path, text, sizeof(text) - 1) == 0);
  ursula_config_init(&c);
  c.max_connections = 77; /* not in the file: kept */
  err[0] = '\0';
  ASSERT(ursula_config_load(&c, path, err) == URSULA_OK);
  if (err[0]) printf("# %s\n", err);
  ASSERT(strcmp(c.listen_host, "::1") == 0 && c.listen_port == 5000);
  ASSERT(c.core_count == 2 && c.raft_group_count == 8);
  ASSERT(strcmp(c.wal_dir, "/data/my wal#1") == 0);
  ASSERT(c.log_level == 1 && c.max_read_bytes == 8192);
  /* and nothing else changed */
  ursula_config_init(&want);
  want.max_connections = 77;
  strcpy(want.listen_host, "::1");
  want.listen_port = 5000;
  want.core_count = 2;
  want.raft_group_count = 8;
  strcpy(want.wal_dir, "/data/my wal#1");
  want.log_level = 1;
  want.max_read_bytes = 8192;
  ASSERT(unit_conf_eq(&c, &want));
  unlink(path);
  /* "key # comment" has an empty value */
  ASSERT(unit_conf_file(path, text2, sizeof(text2) - 1) == 0);
  ASSERT(ursula_config_load(&c, path, err) == URSULA_OK);
  ASSERT(c.wal_dir[0] == '\0');
  unlink(path);
}

static void test_conf_utf8(void) {
  static const struct {
    const char *s;
    size_t len;
    int ok;
  } v[] = {
      {"plain", 5, 1},
      {"caf\xC3\xA9", 5, 1},
      {"\xE2\x82\xAC", 3, 1},     /* U+20AC */
      {"\xF0\x9F\x90\xBB", 4, 1}, /* U+1F43B */
      {"\xF4\x8F\xBF\xBF", 4, 1}, /* U+10FFFF */
      {"\xEF\xBF\xBF", 3, 1},     /* U+FFFF */
      {"\xC3\xA9", 1, 0},         /* cut short (no NUL follows) */
      {"\xE2\x82\xAC", 2, 0},
      {"\xF0\x9F\x90\xBB", 3, 0},
      {"\x80", 1, 0},                 /* lone continuation */
      {"\xC3\x28", 2, 0},             /* bad continuation */
      {"\xC0\xAF", 2, 0},             /* overlong '/' */
      {"\xE0\x80\xAF", 3, 0},         /* overlong '/' */
      {"\xF0\x80\x80\xAF", 4, 0},     /* overlong '/' */
      {"\xED\xA0\x80", 3, 0},         /* surrogate U+D800 */
      {"\xF4\x90\x80\x80", 4, 0},     /* U+110000 */
      {"\xF8\x88\x80\x80\x80", 5, 0}, /* 5-byte form */
      {"\xFF", 1, 0},
  };
  size_t i;
  for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
    int ok = conf_utf8_ok((const unsigned char *)v[i].s, v[i].len);
    if (ok != v[i].ok) printf("# utf8 case %u\n", (unsigned)i);
    ASSERT(ok == v[i].ok);
  }
}

/* Load text from a temp file; return the code, with the message (path
** replaced by "F") in msg. */
static int unit_conf_load_text(const char *text, size_t len, char *msg) {
  struct ursula_config c, d;
  char err[URSULA_ERRMSG_LEN], path[32];
  int rc;
  size_t n;
  msg[0] = '\0';
  if (unit_conf_file(path, text, len) != 0) return 1;
  ursula_config_init(&c);
  d = c;
  rc = ursula_config_load(&c, path, err);
  unlink(path);
  n = strlen(path);
  if (rc != URSULA_OK) {
    if (strncmp(err, path, n) == 0)
      snprintf(msg, URSULA_ERRMSG_LEN, "F%s", err + n);
    else
      snprintf(msg, URSULA_ERRMSG_LEN, "%s", err);
    if (!unit_conf_eq(&c, &d)) {
      printf("# config changed by a failed load\n");
      return 1;
    }
  }
  return rc;
}

#define UNIT_CONF_LOAD(text, msg) \
  unit_conf_load_text(text, sizeof(text) - 1, msg)

static void test_conf_load_errors(void) {
  char msg[URSULA_ERRMSG_LEN];
  char *big;
  struct ursula_config c;
  char err[URSULA_ERRMSG_LEN];
  ASSERT(UNIT_CONF_LOAD("core-count 2\n\n# x\nfoo 1\n", msg) == URSULA_EINVAL);
  ASSERT_MEM(msg, strlen(msg), "F:4: unknown key \"foo\"");
  ASSERT(UNIT_CONF_LOAD("core-count 2\ncore-count two\n", msg) ==
         URSULA_EINVAL);
  ASSERT(strncmp(msg, "F:2: core-count: expected an integer from 0 to", 46) ==
         0);
  ASSERT(UNIT_CONF_LOAD("core-count\n", msg) == URSULA_EINVAL);
  ASSERT(strncmp(msg, "F:1: core-count:", 16) == 0);
  ASSERT(UNIT_CONF_LOAD("core-count # none\n", msg) == URSULA_EINVAL);
  ASSERT(UNIT_CONF_LOAD("core-count 2 3\n", msg) == URSULA_EINVAL);
  ASSERT(UNIT_CONF_LOAD("config other.conf\n", msg) == URSULA_EINVAL);
  ASSERT(strncmp(msg, "F:1: config:", 12) == 0);
  ASSERT(UNIT_CONF_LOAD("--listen a:1\n", msg) == URSULA_EINVAL);
  ASSERT(UNIT_CONF_LOAD("listen=a:1\n", msg) == URSULA_EINVAL);
  ASSERT(UNIT_CONF_LOAD("\n\nwal-dir /a\x01z\n", msg) == URSULA_EINVAL);
  ASSERT_MEM(msg, strlen(msg), "F:3: control character 0x01 in line");
  ASSERT(UNIT_CONF_LOAD("wal-dir /a\xC3\x28\n", msg) == URSULA_EINVAL);
  ASSERT_MEM(msg, strlen(msg), "F:1: line is not valid UTF-8");
  ASSERT(UNIT_CONF_LOAD("wal-dir /\xED\xA0\x80\n", msg) == URSULA_EINVAL);
  ASSERT(UNIT_CONF_LOAD("wal-dir /\xC0\xAF\n", msg) == URSULA_EINVAL);
  ASSERT(UNIT_CONF_LOAD("wal-dir /caf\xC3\xA9/\xF0\x9F\x90\xBB\n", msg) ==
         URSULA_OK);
  ASSERT(UNIT_CONF_LOAD("# x\nwal-dir /a\0b\n", msg) == URSULA_EINVAL);
  ASSERT_MEM(msg, strlen(msg), "F:2: NUL byte in line");
  ASSERT(UNIT_CONF_LOAD("", msg) == URSULA_OK);
  ASSERT(UNIT_CONF_LOAD("\xEF\xBB\xBF", msg) == URSULA_OK);

  /* a line of 4096 bytes is fine, 4097 is not */
  big = (char *)malloc(8300);
  ASSERT(big != NULL);
  if (big != NULL) {
    memcpy(big, "wal-dir ", 8);
    memset(big + 8, 'w', 4096 - 8);
    big[4096] = '\n';
    ASSERT(unit_conf_load_text(big, 4097, msg) == URSULA_EINVAL);
    ASSERT(strstr(msg, "longer than") != NULL); /* read whole, then refused */
    memcpy(big, "#", 1);
    ASSERT(unit_conf_load_text(big, 4097, msg) == URSULA_OK);
    ASSERT(unit_conf_load_text(big, 4096, msg) == URSULA_OK); /* no EOL */
    big[4096] = 'w';
    big[4097] = '\n';
    ASSERT(unit_conf_load_text(big, 4098, msg) == URSULA_EINVAL);
    ASSERT_MEM(msg, strlen(msg), "F:1: line longer than 4096 bytes");
    ASSERT(unit_conf_load_text(big, 4097, msg) == URSULA_EINVAL);
    /* line 2 too long, after a good line 1 */
    memcpy(big, "core-count 1\n", 13);
    memset(big + 13, '#', 5000);
    big[5013] = '\n';
    ASSERT(unit_conf_load_text(big, 5014, msg) == URSULA_EINVAL);
    ASSERT_MEM(msg, strlen(msg), "F:2: line longer than 4096 bytes");
    free(big);
  }

  ursula_config_init(&c);
  ASSERT(ursula_config_load(&c, "/nonexistent/dir/u.conf", err) == URSULA_EIO);
  ASSERT(strstr(err, "/nonexistent/dir/u.conf: cannot open") == err);
  ASSERT(ursula_config_load(&c, "/tmp", err) == URSULA_EIO);
  ASSERT(ursula_config_load(&c, "", err) == URSULA_EINVAL);
  ASSERT(ursula_config_load(&c, NULL, NULL) == URSULA_EINVAL);
}

/* The example file's text, as a user would write it, loads to the
** defaults: one set line per key, the rest comments. */
static void test_conf_defaults_as_file(void) {
  struct ursula_config def, c;
  static char text[32768];
  char v[URSULA_PATH_LEN + 300], path[32];
  size_t i, n = 0;
  ursula_config_init(&def);
  for (i = 0; i < sizeof(conf_keys) / sizeof(conf_keys[0]); i++) {
    conf_format(&def, &conf_keys[i], v, sizeof(v));
    n += (size_t)snprintf(text + n, sizeof(text) - n, "# %s\n%s %s\n",
                          conf_keys[i].help, conf_keys[i].name, v);
    if (n >= sizeof(text)) break; /* the next snprintf would overrun */
  }
  ASSERT(n < sizeof(text));
  if (n >= sizeof(text)) return;
  ASSERT(unit_conf_file(path, text, n) == 0);
  memset(&c, 0, sizeof(c));
  ursula_config_init(&c);
  c.core_count = 9;
  c.log_level = 0;
  ASSERT(ursula_config_load(&c, path, NULL) == URSULA_OK);
  ASSERT(unit_conf_eq(&c, &def));
  unlink(path);
}

/* The text main_check() writes on out and on errf for cfg. */
static int unit_conf_main_check(struct ursula_config *cfg, const char *path,
                                char *out, char *errs, size_t cap) {
  FILE *o = tmpfile(), *e = tmpfile();
  size_t n;
  int rc;
  out[0] = errs[0] = '\0';
  if (o == NULL || e == NULL) {
    if (o != NULL) fclose(o);
    if (e != NULL) fclose(e);
    return -1;
  }
  rc = main_check(cfg, path, o, e);
  rewind(o);
  rewind(e);
  n = fread(out, 1, cap - 1, o);
  out[n] = '\0';
  n = fread(errs, 1, cap - 1, e);
  errs[n] = '\0';
  fclose(o);
  fclose(e);
  return rc;
}

/* --check-config FILE: loaded as --config FILE with the other flags (a
** good file, a bad key, a bad value, a missing file), then main.c's
** answer: "FILE: ok" and 0, or "ursula: REASON" and 2. */
static void test_conf_check_config(void) {
  static const char good[] =
      "# production\nlisten 0.0.0.0:4437\nwal-dir /nonexistent/w\n"
      "core-count 3\n";
  static const char bad_key[] = "listen 0.0.0.0:4437\nwal-dri /w\n";
  static const char bad_value[] = "# one\n\nmax-connections 0\n";
  static const char base[] = "core-count 5\nlog-level 1\n";
  struct ursula_config c, d;
  char err[URSULA_ERRMSG_LEN], want[160], out[512], errs[512];
  char pgood[32], pkey[32], pval[32], pbase[32];
  const char *check = NULL;
  ASSERT(unit_conf_file(pgood, good, sizeof(good) - 1) == 0);
  ASSERT(unit_conf_file(pkey, bad_key, sizeof(bad_key) - 1) == 0);
  ASSERT(unit_conf_file(pval, bad_value, sizeof(bad_value) - 1) == 0);
  ASSERT(unit_conf_file(pbase, base, sizeof(base) - 1) == 0);

  /* a good file: loaded, checked, "FILE: ok" */
  ursula_config_init(&c);
  ASSERT(UNIT_CONF_CHECK(&c, &check, err, "--check-config", pgood) ==
         CONF_CHECK);
  ASSERT(check != NULL && strcmp(check, pgood) == 0);
  ASSERT(c.core_count == 3 && c.listen_port == 4437 &&
         strcmp(c.wal_dir, "/nonexistent/w") == 0);
  ASSERT(unit_conf_main_check(&c, check, out, errs, sizeof(out)) == 0);
  snprintf(want, sizeof(want), "%s: ok\n", pgood);
  ASSERT(strcmp(out, want) == 0 && errs[0] == '\0');

  /* with --config and flags: all applied, the flags last, in any order */
  ursula_config_init(&c);
  ASSERT(UNIT_CONF_CHECK(&c, &check, err, "--log-level", "3", "--check-config",
                         pgood, "--config", pbase) == CONF_CHECK);
  ASSERT(check != NULL && strcmp(check, pgood) == 0);
  ASSERT(c.core_count == 5 && c.log_level == 3 && c.listen_port == 4437);

  /* a bad key and a bad value: FILE:LINE: reason; cfg untouched */
  ursula_config_init(&c);
  d = c;
  ASSERT(UNIT_CONF_CHECK(&c, &check, err, "--check-config", pkey) ==
         URSULA_EINVAL);
  ASSERT(check != NULL && strcmp(check, pkey) == 0);
  snprintf(want, sizeof(want), "%s:2: unknown key \"wal-dri\"", pkey);
  ASSERT(strcmp(err, want) == 0);
  ASSERT(UNIT_CONF_CHECK(&c, &check, err, "--check-config", pval) ==
         URSULA_EINVAL);
  snprintf(want, sizeof(want),
           "%s:3: max-connections: expected an integer from 1 to 1000000, "
           "got \"0\"",
           pval);
  ASSERT(strcmp(err, want) == 0);
  /* a bad --config beside a good --check-config fails too */
  ASSERT(UNIT_CONF_CHECK(&c, &check, err, "--config", pkey, "--check-config",
                         pgood) == URSULA_EINVAL);
  ASSERT(strncmp(err, pkey, strlen(pkey)) == 0);
  /* a missing file */
  ASSERT(
      UNIT_CONF_CHECK(&c, &check, err, "--check-config=/nonexistent/u.conf") ==
      URSULA_EINVAL);
  ASSERT(check != NULL && strcmp(check, "/nonexistent/u.conf") == 0);
  ASSERT(strncmp(err, "/nonexistent/u.conf: cannot open", 32) == 0);
  ASSERT(unit_conf_eq(&c, &d));

  /* the file's keys are good but a start's checks fail: 2, the reason */
  ursula_config_init(&c);
  ASSERT(UNIT_CONF_CHECK(&c, &check, err, "--check-config", pgood,
                         "--max-body-inflight-bytes", "1024") == CONF_CHECK);
  ASSERT(unit_conf_main_check(&c, check, out, errs, sizeof(out)) == 2);
  ASSERT(out[0] == '\0');
  ASSERT(strncmp(errs, "ursula: --max-body-inflight-bytes 1024 is below", 46) ==
         0);
  ASSERT(errs[strlen(errs) - 1] == '\n');
  ursula_config_init(&c);
  ASSERT(UNIT_CONF_CHECK(&c, &check, err, "--check-config", pgood, "--cold-dir",
                         "/c") == CONF_CHECK);
  ASSERT(unit_conf_main_check(&c, check, out, errs, sizeof(out)) == 0);
  ASSERT(UNIT_CONF_CHECK(&c, &check, err, "--check-config", pgood,
                         "--wal-dir=", "--cold-dir", "/c") == CONF_CHECK);
  ASSERT(unit_conf_main_check(&c, check, out, errs, sizeof(out)) == 2);
  ASSERT(strcmp(errs,
                "ursula: --cold-dir needs --wal-dir: data moves to the "
                "cold tier from the WAL\n") == 0);
  /* the cluster check of conf_parse_args */
  ursula_config_init(&c);
  ASSERT(UNIT_CONF_CHECK(&c, &check, err, "--check-config", pgood, "--node-id",
                         "1") == URSULA_EINVAL);
  ASSERT(strncmp(err, "node-id: needs --peer", 21) == 0);

  /* one --check-config at a time; not a config-file key; a run without
  ** it says so */
  ASSERT(UNIT_CONF_CHECK(&c, &check, err, "--check-config", pgood,
                         "--check-config", pgood) == URSULA_EINVAL);
  ASSERT(check == NULL);
  ASSERT(strncmp(err, "--check-config given twice", 26) == 0);
  ASSERT(ursula_config_set(&c, "check-config", pgood, err) == URSULA_EINVAL);
  ASSERT(strcmp(err,
                "check-config: only valid as a command-line flag, "
                "--check-config FILE") == 0);
  ASSERT(UNIT_CONF_CHECK(&c, &check, err, "--config", pgood) == CONF_RUN);
  ASSERT(check == NULL);
  unlink(pgood);
  unlink(pkey);
  unlink(pval);
  unlink(pbase);
}

static void unit_conf_slurp(void (*print)(FILE *), char *out, size_t cap) {
  FILE *f = tmpfile();
  size_t n = 0;
  out[0] = '\0';
  if (f == NULL) return;
  print(f);
  rewind(f);
  n = fread(out, 1, cap - 1, f);
  out[n] = '\0';
  fclose(f);
}

static void test_conf_help_version(void) {
  static char out[16384];
  char want[128];
  const char *opts = ursula_compile_options();
  size_t i;
  unit_conf_slurp(conf_print_help, out, sizeof(out));
  ASSERT(strncmp(out, "usage: ursula", 13) == 0);
  for (i = 0; i < sizeof(conf_keys) / sizeof(conf_keys[0]); i++) {
    snprintf(want, sizeof(want), "  --%s %s\n", conf_keys[i].name,
             conf_keys[i].arg);
    if (strstr(out, want) == NULL) printf("# help lacks %s", want);
    ASSERT(strstr(out, want) != NULL);
  }
  ASSERT(strstr(out, "--config FILE") != NULL);
  ASSERT(strstr(out, "  --check-config FILE\n") != NULL);
  ASSERT(strstr(out, "--raft-log-dir") != NULL);
  ASSERT(strstr(out, "-h, --help") != NULL && strstr(out, "-V, --version"));
  snprintf(want, sizeof(want), "default %s:%d\n", URSULA_DEFAULT_HOST,
           URSULA_DEFAULT_PORT);
  ASSERT(strstr(out, want) != NULL);
  snprintf(want, sizeof(want), "default %d\n", URSULA_DEFAULT_GROUPS);
  ASSERT(strstr(out, want) != NULL);
  ASSERT(strstr(out, "default 2 (info)") != NULL);

  unit_conf_slurp(conf_print_version, out, sizeof(out));
  snprintf(want, sizeof(want), "ursula %s\n", URSULA_VERSION);
  ASSERT(strncmp(out, want, strlen(want)) == 0);
  ASSERT(strncmp(out + strlen(want), opts, strlen(opts)) == 0);
  ASSERT(strcmp(out + strlen(want) + strlen(opts), "\n") == 0);
}

static void test_conf_compile_options(void) {
  const char *o = ursula_compile_options();
  char want[64];
  ASSERT(o == ursula_compile_options());
  ASSERT(strncmp(o, "URSULA_VERSION=" URSULA_VERSION " ", 21) == 0);
  snprintf(want, sizeof(want), " URSULA_ENABLE_EPOLL=%d ", URSULA_ENABLE_EPOLL);
  ASSERT(strstr(o, want) != NULL);
  snprintf(want, sizeof(want), " URSULA_ENABLE_THREADS=%d ",
           URSULA_ENABLE_THREADS);
  ASSERT(strstr(o, want) != NULL);
  snprintf(want, sizeof(want), " URSULA_ENABLE_TLS=%d ", URSULA_ENABLE_TLS);
  ASSERT(strstr(o, want) != NULL);
  snprintf(want, sizeof(want), " URSULA_ENABLE_ASSERT=%d ",
           URSULA_ENABLE_ASSERT);
  ASSERT(strstr(o, want) != NULL);
  snprintf(want, sizeof(want), " URSULA_MAX_CORES=%d ", URSULA_MAX_CORES);
  ASSERT(strstr(o, want) != NULL);
  ASSERT(strstr(o, " URSULA_ENABLE_LOG=") != NULL);
  ASSERT(strstr(o, " URSULA_MAX_GROUPS=") != NULL);
  ASSERT(strstr(o, " URSULA_DEFAULT_PORT=") != NULL);
  ASSERT(strstr(o, " URSULA_DEFAULT_MAX_READ_BYTES=") != NULL);
  ASSERT(o[strlen(o) - 1] != ' ');
}

#undef UNIT_CONF_ARGS
#undef UNIT_CONF_CHECK
#undef UNIT_CONF_LOAD

static const struct unit_case unit_conf_cases[] = {
    {"conf_init", test_conf_init},
    {"conf_set_ranges", test_conf_set_ranges},
    {"conf_set_values", test_conf_set_values},
    {"conf_messages", test_conf_messages},
    {"conf_listen", test_conf_listen},
    {"conf_wal_dir_and_level", test_conf_wal_dir_and_level},
    {"conf_format_roundtrip", test_conf_format_roundtrip},
    {"conf_args", test_conf_args},
    {"conf_args_errors", test_conf_args_errors},
    {"conf_args_help_version", test_conf_args_help_version},
    {"conf_args_config", test_conf_args_config},
    {"conf_check_config", test_conf_check_config},
    {"conf_load", test_conf_load},
    {"conf_load_errors", test_conf_load_errors},
    {"conf_utf8", test_conf_utf8},
    {"conf_defaults_as_file", test_conf_defaults_as_file},
    {"conf_help_version", test_conf_help_version},
    {"conf_compile_options", test_conf_compile_options},
    {NULL, NULL},
};
