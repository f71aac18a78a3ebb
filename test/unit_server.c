/* unit_server.c -- a whole server in this process, driven over loopback
** HTTP, with faults injected into its WAL's system calls: a failed sync
** fails the appends of its batch with 503 (nothing acknowledged, no
** crash), reads keep working, writes are refused until the log has been
** verified again, and then resume. */

/* One request on a fresh connection; the status, and the body in body
** (NUL-terminated, truncated to cap). */
static int unit_http_h(int port, const char *method, const char *path,
                       const char *headers, const char *payload, char *body,
                       size_t cap) {
  struct sockaddr_in a;
  char req[512], resp[8192];
  size_t len = 0;
  int fd = socket(AF_INET, SOCK_STREAM, 0), status = -1;
  const char *p;
  if (fd < 0) return -1;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(0x7f000001);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  snprintf(req, sizeof(req),
           "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           "Content-Type: text/plain\r\n%sContent-Length: %lu\r\n\r\n%s",
           method, path, headers, (unsigned long)strlen(payload), payload);
  if (write(fd, req, strlen(req)) == (ssize_t)strlen(req)) {
    for (;;) {
      ssize_t n = read(fd, resp + len, sizeof(resp) - 1 - len);
      if (n <= 0) break;
      len += (size_t)n;
    }
  }
  close(fd);
  resp[len] = '\0';
  if (len > 12 && memcmp(resp, "HTTP/1.1 ", 9) == 0) status = atoi(resp + 9);
  if (body != NULL && cap > 0) {
    p = strstr(resp, "\r\n\r\n");
    snprintf(body, cap, "%s", p ? p + 4 : "");
  }
  return status;
}

static int unit_http(int port, const char *method, const char *path,
                     const char *payload, char *body, size_t cap) {
  return unit_http_h(port, method, path, "", payload, body, cap);
}

/* Without threads (URSULA_ENABLE_THREADS=0) the server's one loop runs in
** ursula_server_wait() on its caller, so the test gives it a thread of
** its own while it talks to it; with threads this is just stop and
** wait. */
struct unit_server_run {
  struct ursula_server *srv;
  int rc;
  int started;
  pthread_t th;
};

#if !URSULA_ENABLE_THREADS
static void *unit_server_main(void *arg) {
  struct unit_server_run *r = (struct unit_server_run *)arg;
  r->rc = ursula_server_wait(r->srv);
  return NULL;
}
#endif

static void unit_server_go(struct unit_server_run *r,
                           struct ursula_server *srv) {
  r->srv = srv;
  r->rc = URSULA_OK;
  r->started = 0;
#if !URSULA_ENABLE_THREADS
  r->started = pthread_create(&r->th, NULL, unit_server_main, r) == 0;
  ASSERT(r->started);
#endif
}

/* Stop the server and wait for it; its exit code. */
static int unit_server_end(struct unit_server_run *r) {
  ursula_server_stop(r->srv);
  if (!r->started) return ursula_server_wait(r->srv);
  pthread_join(r->th, NULL);
  return r->rc;
}

static void test_server_wal_sync_failure(void) {
  struct unit_server_run run;
  struct ursula_config cfg;
  struct ursula_server *srv = NULL;
  char err[URSULA_ERRMSG_LEN], body[256];
  int port, i, st = 0;
  unit_wal_mkdir();
  unit_fault_install(); /* before the server's threads exist; off for now */
  ursula_config_init(&cfg);
  cfg.log_level = -1; /* quiet: the failure is logged as an error */
  cfg.listen_port = 0;
  cfg.core_count = 1;
  cfg.raft_group_count = 1;
  snprintf(cfg.wal_dir, sizeof(cfg.wal_dir), "%s", unit_wal_dir);
  if (ursula_server_start(&cfg, &srv, err) != URSULA_OK) {
    printf("# server start: %s\n", err);
    unit_failed++;
    unit_fault_remove();
    unit_wal_rmdir();
    return;
  }
  port = ursula_server_port(srv);
  unit_server_go(&run, srv);
  ASSERT(unit_http(port, "PUT", "/s", "", NULL, 0) == 201);
  ASSERT(unit_http(port, "POST", "/s", "one ", NULL, 0) == 204);
  unit_fault_sync_errno = EIO;
  ASSERT(unit_http(port, "POST", "/s", "lost ", body, sizeof(body)) == 503);
  ASSERT(strstr(body, "write-ahead log") != NULL);
  /* failed: writes refused (even once the disk is fine again, until the
  ** once-a-second check has verified the log), reads served */
  ASSERT(unit_http(port, "POST", "/s", "refused ", NULL, 0) == 503);
  ASSERT(unit_http(port, "GET", "/s", "", body, sizeof(body)) == 200);
  ASSERT(strcmp(body, "one ") == 0);
  unit_fault_sync_errno = 0;
  for (i = 0; i < 40; i++) { /* the sweep re-verifies within ~1 s */
    struct timespec ts = {0, 100000000};
    st = unit_http(port, "POST", "/s", "two", NULL, 0);
    if (st == 204) break;
    nanosleep(&ts, NULL);
  }
  ASSERT(st == 204);
  ASSERT(unit_http(port, "GET", "/s", "", body, sizeof(body)) == 200);
  ASSERT(strcmp(body, "one two") == 0);
  ASSERT(unit_server_end(&run) == URSULA_OK);
  /* what a restart finds: exactly the acknowledged appends */
  ASSERT(ursula_server_start(&cfg, &srv, err) == URSULA_OK);
  port = ursula_server_port(srv);
  unit_server_go(&run, srv);
  ASSERT(unit_http(port, "GET", "/s", "", body, sizeof(body)) == 200);
  ASSERT(strcmp(body, "one two") == 0);
  unit_server_end(&run);
  unit_fault_remove();
  unit_wal_rmdir();
}

/* ------------------------------------------------------------ review
** Cases found by a review; each failed before its fix. */

static double unit_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
static void unit_sleep_until(double t) {
  while (unit_now_s() < t) {
    struct timespec ts = {0, 10000000};
    nanosleep(&ts, NULL);
  }
}

/* Start an in-process server on unit_wal_dir: one core, one group. */
static int unit_server_start1(struct unit_server_run *run) {
  struct ursula_config cfg;
  struct ursula_server *srv = NULL;
  char err[URSULA_ERRMSG_LEN];
  ursula_config_init(&cfg);
  cfg.log_level = 0;
  cfg.listen_port = 0;
  cfg.core_count = 1;
  cfg.raft_group_count = 1;
  snprintf(cfg.wal_dir, sizeof(cfg.wal_dir), "%s", unit_wal_dir);
  if (ursula_server_start(&cfg, &srv, err) != URSULA_OK) {
    printf("# start: %s\n", err);
    unit_failed++;
    return -1;
  }
  unit_server_go(run, srv);
  return ursula_server_port(srv);
}

/* A read's TOUCH lost to a failed sync is proposed again: a stream that a
** read kept alive is not expired by the next append (Stream-TTL 3, GET at
** 1.5 s, syncs fail from 1.5 to 2.7 s, POST at 3.3 s must append). */
static void test_server_touch_after_failure(void) {
  struct unit_server_run run;
  char body[512];
  double t0;
  int port, st = 0, i;
  unit_wal_mkdir();
  unit_fault_install();
  if ((port = unit_server_start1(&run)) < 0) return;
  t0 = unit_now_s();
  ASSERT(unit_http_h(port, "PUT", "/s", "Stream-TTL: 3\r\n", "", NULL, 0) == 201);
  unit_sleep_until(t0 + 1.5);
  ASSERT(unit_http(port, "GET", "/s", "", NULL, 0) == 200);
  unit_fault_sync_errno = EIO; /* the sweep's TOUCH for that read fails */
  unit_sleep_until(t0 + 2.7);
  unit_fault_sync_errno = 0;
  unit_sleep_until(t0 + 3.3);
  for (i = 0; i < 20; i++) { /* 503 until the log is verified again */
    st = unit_http(port, "POST", "/s", "x", body, sizeof(body));
    if (st != 503) break;
    unit_sleep_until(unit_now_s() + 0.1);
  }
  ASSERT(st == 204);
  if (st != 204) printf("# POST: %d %s", st, body);
  unit_server_end(&run);
  unit_fault_remove();
  unit_wal_rmdir();
}

/* A fork PUT whose CREATE is refused (its sync fails) gives back the
** reference its FORK_ACQUIRE took: the source, deleted, is then gone
** (404), not held as deleted-with-forks (410) forever. */
static volatile int unit_syncs_pass = -1; /* -1: all pass; n: n, then fail */
static int unit_counted_sync(int fd) {
  if (unit_syncs_pass == 0) {
    errno = EIO;
    return -1;
  }
  if (unit_syncs_pass > 0) unit_syncs_pass--;
  return unit_wal_real.sync(fd);
}
static void test_server_fork_refused(void) {
  struct unit_server_run run;
  char body[512];
  int port, st = 0, i;
  unit_wal_mkdir();
  unit_fault_install();
  os_fs()->sync = unit_counted_sync;
  if ((port = unit_server_start1(&run)) < 0) return;
  ASSERT(unit_http(port, "PUT", "/src", "abc", NULL, 0) == 201);
  unit_syncs_pass = 1; /* the FORK_ACQUIRE's sync passes, the CREATE's fails */
  ASSERT(unit_http_h(port, "PUT", "/fork", "Stream-Forked-From: /src\r\n", "",
                     body, sizeof(body)) == 503);
  unit_syncs_pass = -1;
  for (i = 0; i < 30; i++) { /* 503 until the log is verified again */
    st = unit_http(port, "DELETE", "/src", "", body, sizeof(body));
    if (st != 503) break;
    unit_sleep_until(unit_now_s() + 0.1);
  }
  ASSERT(st == 204);
  for (i = 0; i < 30; i++) { /* the RELEASE is applied soon after */
    st = unit_http(port, "GET", "/src", "", body, sizeof(body));
    if (st == 404) break;
    unit_sleep_until(unit_now_s() + 0.1);
  }
  ASSERT(st == 404);
  unit_server_end(&run);
  unit_syncs_pass = -1;
  unit_fault_remove();
  unit_wal_rmdir();
}

static const struct unit_case unit_server_cases[] = {
    {"server_wal_sync_failure", test_server_wal_sync_failure},
    {"server_touch_after_failure", test_server_touch_after_failure},
    {"server_fork_refused", test_server_fork_refused}, {NULL, NULL}};
