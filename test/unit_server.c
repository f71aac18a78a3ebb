/* unit_server.c -- a whole server in this process, driven over loopback
** HTTP, with faults injected into its WAL's system calls: a failed sync
** fails the appends of its batch with 503 (nothing acknowledged, no
** crash), reads keep working, writes are refused until the log has been
** verified again, and then resume. */

/* One request on a fresh connection; the status, and the body in body
** (NUL-terminated, truncated to cap). */
static int unit_http(int port, const char *method, const char *path,
                     const char *payload, char *body, size_t cap) {
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
           "Content-Type: text/plain\r\nContent-Length: %lu\r\n\r\n%s",
           method, path, (unsigned long)strlen(payload), payload);
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

static const struct unit_case unit_server_cases[] = {
    {"server_wal_sync_failure", test_server_wal_sync_failure}, {NULL, NULL}};
