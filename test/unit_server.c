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

/* Start a quiet in-process server on a free port (cores, groups; with
** wal_dir unless NULL) and run it: its port, or -1 (a failure counted). */
static int unit_server_up(struct unit_server_run *run, int cores, int groups,
                          const char *wal_dir) {
  struct ursula_config cfg;
  struct ursula_server *srv = NULL;
  char err[URSULA_ERRMSG_LEN];
  ursula_config_init(&cfg);
  cfg.log_level = 0;
  cfg.listen_port = 0;
  cfg.core_count = cores;
  cfg.raft_group_count = groups;
  cfg.public_status = 1; /* the status tests read it on this listener */
  cfg.admin_listen_host[0] = '\0'; /* no admin listener: none needed */
  if (wal_dir != NULL)
    snprintf(cfg.wal_dir, sizeof(cfg.wal_dir), "%s", wal_dir);
  if (ursula_server_start(&cfg, &srv, err) != URSULA_OK) {
    printf("# start: %s\n", err);
    unit_failed++;
    return -1;
  }
  unit_server_go(run, srv);
  return ursula_server_port(srv);
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

/* The bytes of core 0's journal files in unit_wal_dir (all generations);
** -1 if there is none. */
static long unit_jr_files_bytes(void) {
  DIR *d = opendir(unit_wal_dir);
  struct dirent *de;
  long total = -1;
  if (d == NULL) return -1;
  while ((de = readdir(d)) != NULL) {
    char path[256];
    struct stat st;
    if (strncmp(de->d_name, "journal-000-", 12) != 0) continue;
    snprintf(path, sizeof(path), "%s/%.100s", unit_wal_dir, de->d_name);
    if (stat(path, &st) == 0) total = (total < 0 ? 0 : total) + (long)st.st_size;
  }
  closedir(d);
  return total;
}

/* THE JOURNAL (server.c, journal.c): appends acknowledged while the
** writes to their log files were lost (as at a power cut before the files
** were ever synced) are written again from the journal at the next
** start; and a clean stop leaves no journal behind. */
static void test_server_journal_redo(void) {
  struct unit_server_run run;
  struct ursula_config cfg;
  struct ursula_server *srv = NULL;
  char err[URSULA_ERRMSG_LEN], body[1024], want[1024];
  int port, i;
  unit_wal_mkdir();
  unit_fault_install();
  ursula_config_init(&cfg);
  cfg.log_level = -1;
  cfg.listen_port = 0;
  cfg.core_count = 1;
  cfg.raft_group_count = 2;
  snprintf(cfg.wal_dir, sizeof(cfg.wal_dir), "%s", unit_wal_dir);
  ASSERT(ursula_server_start(&cfg, &srv, err) == URSULA_OK);
  port = ursula_server_port(srv);
  unit_server_go(&run, srv);
  ASSERT(unit_http(port, "PUT", "/a", "", NULL, 0) == 201);
  ASSERT(unit_http(port, "PUT", "/b", "", NULL, 0) == 201);
  ASSERT(unit_http(port, "POST", "/a", "kept ", NULL, 0) == 204);
  unit_fault_lose_wal = 1;
  want[0] = '\0';
  for (i = 0; i < 20; i++) {
    char one[32];
    snprintf(one, sizeof(one), "a%02d ", i);
    ASSERT(unit_http(port, "POST", "/a", one, NULL, 0) == 204);
    ASSERT(unit_http(port, "POST", "/b", one, NULL, 0) == 204);
    strcat(want, one);
  }
  ASSERT(unit_server_end(&run) == URSULA_OK);
  unit_fault_lose_wal = 0;
  ASSERT(unit_jr_files_bytes() > 0); /* its files could not be synced */
  ASSERT(ursula_server_start(&cfg, &srv, err) == URSULA_OK);
  port = ursula_server_port(srv);
  unit_server_go(&run, srv);
  ASSERT(unit_http(port, "GET", "/b", "", body, sizeof(body)) == 200);
  ASSERT(strcmp(body, want) == 0);
  ASSERT(unit_http(port, "GET", "/a", "", body, sizeof(body)) == 200);
  ASSERT(strncmp(body, "kept ", 5) == 0 && strcmp(body + 5, want) == 0);
  ASSERT(unit_http(port, "POST", "/a", "after", NULL, 0) == 204);
  ASSERT(unit_server_end(&run) == URSULA_OK);
  ASSERT(unit_jr_files_bytes() < 0); /* a clean stop: the files are synced */
  ASSERT(ursula_server_start(&cfg, &srv, err) == URSULA_OK);
  port = ursula_server_port(srv);
  unit_server_go(&run, srv);
  ASSERT(unit_http(port, "GET", "/a", "", body, sizeof(body)) == 200);
  ASSERT(strlen(body) == 5 + strlen(want) + 5);
  unit_server_end(&run);
  unit_fault_remove();
  unit_wal_rmdir();
}

struct unit_jr_post {
  int port, status;
  const char *path;
};

static void *unit_jr_post_main(void *arg) {
  struct unit_jr_post *p = (struct unit_jr_post *)arg;
  p->status = unit_http(p->port, "POST", p->path, "first", NULL, 0);
  return NULL;
}

/* A batch that arrives while the journal's sync is out waits for it, and
** goes out as soon as it is back -- even when nothing else happens then
** (the core must not wait for another request to write it). */
static void test_server_journal_waiting_batch(void) {
  struct unit_server_run run;
  struct unit_jr_post a;
  pthread_t th;
  struct timeval tv = {5, 0};
  char body[256];
  int port, fd, st = -1;
  struct sockaddr_in sa;
  const char *req = "POST /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    "Content-Type: text/plain\r\nContent-Length: 6\r\n\r\n"
                    "second";
  unit_wal_mkdir();
  unit_fault_install();
  port = unit_server_up(&run, 1, 2, unit_wal_dir);
  /* /a and /b hash to different groups of the one core (g = FNV-1a) */
  ASSERT(unit_http(port, "PUT", "/a", "", NULL, 0) == 201);
  ASSERT(unit_http(port, "PUT", "/b", "", NULL, 0) == 201);
  unit_fault_sync_ms = 400;
  a.port = port;
  a.path = "/a";
  a.status = -1;
  ASSERT(pthread_create(&th, NULL, unit_jr_post_main, &a) == 0);
  {
    struct timespec ts = {0, 150000000}; /* /a's sync is out now */
    nanosleep(&ts, NULL);
  }
  unit_fault_sync_ms = 0;
  fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((unsigned short)port);
  sa.sin_addr.s_addr = htonl(0x7f000001);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
      write(fd, req, strlen(req)) == (ssize_t)strlen(req)) {
    ssize_t n = read(fd, body, sizeof(body) - 1); /* at most 5 s */
    if (n > 12) {
      body[n] = '\0';
      st = atoi(body + 9);
    }
  }
  close(fd);
  pthread_join(th, NULL);
  ASSERT(a.status == 204);
  ASSERT(st == 204);
  unit_server_end(&run);
  unit_fault_remove();
  unit_wal_rmdir();
}

/* CHECKPOINTS (unit.c makes JOURNAL_BYTES 16 KiB): the journal stays near
** its bound, however much is appended, and nothing is lost across them. */
static void test_server_journal_checkpoint(void) {
  struct unit_server_run run;
  char body[8192], want[8][1024];
  long most = 0, bytes;
  int port, i, k;
  unit_wal_mkdir();
  port = unit_server_up(&run, 1, 4, unit_wal_dir);
  for (k = 0; k < 8; k++) {
    char p[16];
    snprintf(p, sizeof(p), "/s%d", k);
    ASSERT(unit_http(port, "PUT", p, "", NULL, 0) == 201);
    want[k][0] = '\0';
  }
  for (i = 0; i < 80; i++)
    for (k = 0; k < 8; k++) {
      char p[16], one[32];
      snprintf(p, sizeof(p), "/s%d", k);
      snprintf(one, sizeof(one), "%d:%02d;", k, i);
      ASSERT(unit_http(port, "POST", p, one, NULL, 0) == 204);
      strcat(want[k], one);
      if ((bytes = unit_jr_files_bytes()) > most) most = bytes;
    }
  /* 640 appends of about 150 journal bytes each, 6 times the bound: two
  ** generations at most, each near the bound */
  ASSERT(most > 0 && most < 3 * JOURNAL_BYTES);
  for (k = 0; k < 8; k++) {
    char p[16];
    snprintf(p, sizeof(p), "/s%d", k);
    ASSERT(unit_http(port, "GET", p, "", body, sizeof(body)) == 200);
    ASSERT(strcmp(body, want[k]) == 0);
  }
  ASSERT(unit_server_end(&run) == URSULA_OK);
  port = unit_server_up(&run, 1, 4, unit_wal_dir);
  for (k = 0; k < 8; k++) {
    char p[16];
    snprintf(p, sizeof(p), "/s%d", k);
    ASSERT(unit_http(port, "GET", p, "", body, sizeof(body)) == 200);
    ASSERT(strcmp(body, want[k]) == 0);
  }
  unit_server_end(&run);
  unit_wal_rmdir();
}

/* A checkpoint whose log-file syncs fail: the old generation stays (it
** holds the only durable copy of appends the log files lost), the core
** takes no more writes (503), and a restart writes every acknowledged
** append again from the journal.  open_errno: the checkpoint's open of
** the log file fails so (0: it works), and the core syncs the file
** itself. */
static void unit_jr_checkpoint_failure(int open_errno) {
  struct unit_server_run run;
  struct ursula_config cfg;
  struct ursula_server *srv = NULL;
  char err[URSULA_ERRMSG_LEN], body[8192], want[8192];
  int port, i, st = 204, acked = 0;
  unit_wal_mkdir();
  unit_fault_install();
  ursula_config_init(&cfg);
  cfg.log_level = -1; /* quiet: the failure is logged as an error */
  cfg.listen_port = 0;
  cfg.core_count = 1;
  cfg.raft_group_count = 1;
  snprintf(cfg.wal_dir, sizeof(cfg.wal_dir), "%s", unit_wal_dir);
  ASSERT(ursula_server_start(&cfg, &srv, err) == URSULA_OK);
  port = ursula_server_port(srv);
  unit_server_go(&run, srv);
  ASSERT(unit_http(port, "PUT", "/s", "", NULL, 0) == 201);
  unit_fault_lose_wal = 1; /* log writes dropped, their syncs failing */
  unit_fault_reopen_errno = open_errno;
  want[0] = '\0';
  for (i = 0; i < 400 && st == 204; i++) { /* 3 times the bound */
    char one[16];
    snprintf(one, sizeof(one), "%03d;", i);
    st = unit_http(port, "POST", "/s", one, NULL, 0);
    if (st == 204) {
      strcat(want, one);
      acked++;
    }
  }
  ASSERT(st == 503); /* stuck once the checkpoint's syncs failed */
  ASSERT(acked > 50 && acked < 400);
  ASSERT(unit_http(port, "POST", "/s", "x", NULL, 0) == 503);
  ASSERT(unit_server_end(&run) == URSULA_OK);
  unit_fault_lose_wal = unit_fault_reopen_errno = 0;
  if (ursula_server_start(&cfg, &srv, err) != URSULA_OK) {
    printf("# restart: %s\n", err);
    unit_failed++;
    unit_fault_remove();
    unit_wal_rmdir();
    return;
  }
  port = ursula_server_port(srv);
  unit_server_go(&run, srv);
  ASSERT(unit_http(port, "GET", "/s", "", body, sizeof(body)) == 200);
  if (strcmp(body, want) != 0)
    printf("# got %lu bytes: %.60s... want %lu: %.60s...\n",
           (unsigned long)strlen(body), body, (unsigned long)strlen(want), want);
  ASSERT(strcmp(body, want) == 0);
  ASSERT(unit_http(port, "POST", "/s", "x", NULL, 0) == 204);
  unit_server_end(&run);
  unit_fault_remove();
  unit_wal_rmdir();
}

static void test_server_journal_checkpoint_failure(void) {
  unit_jr_checkpoint_failure(0);
}

/* Review: a checkpoint that cannot open a log file (EMFILE) syncs it on
** the core; when that sync fails the journal is stuck, but the job went
** out with the other files (here none), came back without an error, and
** the old generation -- the only durable copy of that file's appends --
** was removed: the restart had lost them. */
static void test_server_journal_checkpoint_open_failure(void) {
  unit_jr_checkpoint_failure(EMFILE);
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
  return unit_server_up(run, 1, 1, unit_wal_dir);
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

/* A record that cannot be framed (the next segment cannot be created:
** ENOSPC) fails the log as a failed write does (R5 of raft.c: the index
** the Raft core gave that entry is never given to another): the append
** is refused with 503, so is every write until the log is verified
** again, and then appends resume -- the core elects itself in a new term
** -- and after a restart the log holds exactly the acknowledged ones. */
static void test_server_frame_failure(void) {
  struct unit_server_run run;
  struct buf want;
  char body[4096];
  int port, st = 0, i, refused = 0;
  memset(&want, 0, sizeof(want));
  unit_wal_mkdir();
  unit_fault_install();
  if ((port = unit_server_start1(&run)) < 0) return;
  /* (before any request: the core thread touches the log only for one) */
  wal_set_segment_bytes(run.srv->groups[0]->wal, 256);
  ASSERT(unit_http(port, "PUT", "/s", "", NULL, 0) == 201);
  for (i = 0; i < 4; i++) {
    ASSERT(unit_http(port, "POST", "/s", "one ", NULL, 0) == 204);
    buf_append(&want, "one ", 4);
  }
  unit_fault_creat_errno = ENOSPC;
  for (i = 0; i < 20 && !refused; i++) { /* a roll comes within a few */
    st = unit_http(port, "POST", "/s", "more ", body, sizeof(body));
    if (st == 204) buf_append(&want, "more ", 5);
    else refused = st == 503 && strstr(body, "write-ahead log") != NULL;
  }
  ASSERT(refused);
  ASSERT(unit_http(port, "POST", "/s", "refused ", NULL, 0) == 503);
  unit_fault_creat_errno = 0;
  for (i = 0; i < 40; i++) { /* the sweep verifies the log within ~1 s */
    st = unit_http(port, "POST", "/s", "two", NULL, 0);
    if (st == 204) break;
    unit_sleep_until(unit_now_s() + 0.1);
  }
  ASSERT(st == 204);
  buf_append(&want, "two", 3);
  ASSERT(unit_http(port, "GET", "/s", "", body, sizeof(body)) == 200);
  ASSERT(want.ptr != NULL && strcmp(body, want.ptr) == 0);
  ASSERT(unit_server_end(&run) == URSULA_OK);
  if ((port = unit_server_start1(&run)) >= 0) { /* what a restart finds */
    ASSERT(unit_http(port, "GET", "/s", "", body, sizeof(body)) == 200);
    ASSERT(want.ptr != NULL && strcmp(body, want.ptr) == 0);
    ASSERT(unit_http(port, "POST", "/s", "!", NULL, 0) == 204);
    unit_server_end(&run);
  }
  buf_free(&want);
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
  ASSERT(unit_http_h(port, "PUT", "/v1/fork", "Stream-Forked-From: /src\r\n", "",
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

/* ------------------------------------------------------------ forks
** A fork refers to its source's bytes (stream.c, "Forks"): reads below
** its fork point hop to the source's owner and back (group.c).  What a
** reader sees must not change: a fork made by copying was a stream whose
** appends were the source's appends up to the fork point (the sub-offset
** prefix one of its own), then its own.  So each fork below has a twin,
** a plain stream built from exactly those appends, and every read of the
** fork -- catch-up from every offset, long-poll, SSE; open, closed, with
** its sources deleted; in memory and from the WAL after a restart -- must
** answer as its twin does, byte for byte (status, body, offsets, flags).
** And read whole, each fork gives the bytes the protocol says: the
** source's bytes up to the fork point, then its own appends. */

/* One request on a fresh connection (Connection: close): the whole
** response into resp, read until the server closes or nothing comes for
** idle_ms.  The status, or -1. */
static int unit_req(int port, const char *method, const char *target,
                    const char *headers, const char *body, int idle_ms,
                    struct buf *resp) {
  struct sockaddr_in a;
  struct timeval tv;
  struct buf req;
  char tmp[16384];
  size_t off = 0;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  resp->len = 0;
  if (fd < 0) return -1;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(0x7f000001);
  tv.tv_sec = idle_ms / 1000;
  tv.tv_usec = (idle_ms % 1000) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  memset(&req, 0, sizeof(req));
  buf_printf(&req,
             "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s"
             "Content-Length: %lu\r\n\r\n%s",
             method, target, headers, (unsigned long)strlen(body), body);
  while (off < req.len) {
    ssize_t n = write(fd, req.ptr + off, req.len - off);
    if (n <= 0) break;
    off += (size_t)n;
  }
  buf_free(&req);
  for (;;) {
    ssize_t n = read(fd, tmp, sizeof(tmp));
    if (n <= 0) break;
    buf_append(resp, tmp, (size_t)n);
  }
  close(fd);
  buf_append(resp, "", 1); /* a NUL after it, not counted */
  resp->len--;
  if (resp->len > 12 && memcmp(resp->ptr, "HTTP/1.1 ", 9) == 0)
    return atoi(resp->ptr + 9);
  return -1;
}

/* The body of a response (after its head). */
static struct str unit_resp_body(const struct buf *r) {
  const char *p = r->len ? strstr(r->ptr, "\r\n\r\n") : NULL;
  struct str b;
  b.ptr = p ? p + 4 : "";
  b.len = p ? r->len - (size_t)(p + 4 - r->ptr) : 0;
  return b;
}

/* The value of header name in the head of r ("" if absent), into out. */
static void unit_resp_header(const struct buf *r, const char *name, char *out,
                             size_t cap) {
  const char *p = r->len ? r->ptr : "", *end = strstr(p, "\r\n\r\n");
  size_t n = strlen(name);
  out[0] = '\0';
  while (end != NULL && (p = strstr(p, "\r\n")) != NULL && p < end) {
    p += 2;
    if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
      const char *v = p + n + 1, *e = strstr(v, "\r\n");
      while (*v == ' ') v++;
      snprintf(out, cap, "%.*s", (int)(e - v), v);
      return;
    }
  }
}

/* The events of an SSE response: its "event:" and "data:" lines, each
** followed by LF, with the (random) streamCursor values cut out. */
static void unit_sse_events(const struct buf *r, struct buf *out) {
  struct str b = unit_resp_body(r);
  size_t i = 0;
  out->len = 0;
  while (i < b.len) {
    size_t e = i;
    while (e < b.len && b.ptr[e] != '\n') e++;
    if ((e - i >= 6 && memcmp(b.ptr + i, "event:", 6) == 0) ||
        (e - i >= 5 && memcmp(b.ptr + i, "data:", 5) == 0)) {
      size_t k = i;
      while (k < e) {
        static const char cur[] = "\"streamCursor\":\"";
        if (e - k >= sizeof(cur) - 1 &&
            memcmp(b.ptr + k, cur, sizeof(cur) - 1) == 0) {
          k += sizeof(cur) - 1;
          while (k < e && b.ptr[k] != '"') k++;
          k++;
          continue;
        }
        buf_append(out, b.ptr + k++, 1);
      }
      buf_append(out, "\n", 1);
    }
    i = e + 1;
  }
}

/* A fork, the stream it forks, and its twin (above). */
struct unit_fork_pair {
  const char *fork, *source, *twin;
  const char *whole; /* the fork read whole: text, or JSON messages */
};
static const struct unit_fork_pair unit_fork_pairs[] = {
    {"/f1", "/src", "/t1", "abcdefghXYZ"}, /* at 8 */
    {"/f2", "/src", "/t2", "abcdeQQQ"},    /* at 3, 2 bytes of "defgh" */
    {"/f3", "/f1", "/t3", "abcdefgW"},     /* into what /f1 inherited */
    {"/f4", "/f1", "/t4", "abcdefghXV"},   /* inside /f1's own "XY" */
    {"/f5", "/f3", "/t5", "abcdefgWU"},    /* a chain of three */
    {"/f6", "/f1", "/t6", "abcde"},        /* mid-append, nothing own */
    {"/f7", "/f2", "/t7", "abcdeQQ"},      /* 2 of /f2's own "QQQ" */
    {"/f8", "/f5", "/t8", "abcdeS"},       /* deep: /f5 -> /f3 -> /f1 */
    {"/f9", "/f6", "/t9", "abcdeR"},       /* all of "de", /f6's cut */
    {"/jf", "/js", "/tj", "1,2,7,8"},      /* 2 of the first 3 messages */
    {"/jff", "/jf", "/tjj", "1,9"},        /* 1 of /jf's inherited 2 */
    {"/jf2", "/js", "/tj2", "1,2,3,4,5,6,10"},  /* at the tail */
    {"/jf3", "/jf2", "/tj3", "1,2,3,4,11,12"}}; /* 1 of "[4]", inherited */
#define UNIT_FORK_PAIRS (sizeof(unit_fork_pairs) / sizeof(unit_fork_pairs[0]))

static int unit_fork_req(int port, const char *method, const char *path,
                         const char *headers, const char *body) {
  struct buf r;
  int st;
  memset(&r, 0, sizeof(r));
  st = unit_req(port, method, path, headers, body, 5000, &r);
  if (st < 200 || st > 299)
    printf("# %s %s: %d %s\n", method, path, st, unit_resp_body(&r).ptr);
  buf_free(&r);
  return st;
}

/* The sources, the forks (each by its fork PUT and its own appends) and
** their twins (by plain appends). */
static void unit_fork_build(int port) {
  static const char *const steps[][4] = {
      /* method, path, headers, body */
      {"PUT", "/src", "", "abc"},
      {"POST", "/src", "", "defgh"},
      {"POST", "/src", "", "ij"},
      {"PUT", "/f1", "Stream-Forked-From: /src\r\nStream-Fork-Offset: 0_8\r\n",
       ""},
      {"POST", "/f1", "", "XY"},
      {"POST", "/f1", "", "Z"},
      {"PUT", "/f2",
       "Stream-Forked-From: /src\r\nStream-Fork-Offset: 0_3\r\n"
       "Stream-Fork-Sub-Offset: 2\r\n",
       "QQQ"},
      {"PUT", "/f3",
       "Stream-Forked-From: /f1\r\nStream-Fork-Offset: 0_3\r\n"
       "Stream-Fork-Sub-Offset: 4\r\n",
       "W"},
      {"PUT", "/f4", "Stream-Forked-From: /f1\r\nStream-Fork-Offset: 0_9\r\n",
       "V"},
      {"PUT", "/f5", "Stream-Forked-From: /f3\r\n", ""},
      {"POST", "/f5", "", "U"},
      {"PUT", "/f6", "Stream-Forked-From: /f1\r\nStream-Fork-Offset: 0_5\r\n",
       ""},
      {"PUT", "/f7",
       "Stream-Forked-From: /f2\r\nStream-Fork-Offset: 0_5\r\n"
       "Stream-Fork-Sub-Offset: 2\r\n",
       ""},
      {"PUT", "/f8",
       "Stream-Forked-From: /f5\r\nStream-Fork-Offset: 0_3\r\n"
       "Stream-Fork-Sub-Offset: 2\r\n",
       "S"},
      {"PUT", "/f9",
       "Stream-Forked-From: /f6\r\nStream-Fork-Offset: 0_3\r\n"
       "Stream-Fork-Sub-Offset: 2\r\n",
       "R"},
      {"PUT", "/t1", "", "abc"}, {"POST", "/t1", "", "defgh"},
      {"POST", "/t1", "", "XY"}, {"POST", "/t1", "", "Z"},
      {"PUT", "/t2", "", "abc"}, {"POST", "/t2", "", "de"},
      {"POST", "/t2", "", "QQQ"},
      {"PUT", "/t3", "", "abc"}, {"POST", "/t3", "", "defg"},
      {"POST", "/t3", "", "W"},
      {"PUT", "/t4", "", "abc"}, {"POST", "/t4", "", "defgh"},
      {"POST", "/t4", "", "X"}, {"POST", "/t4", "", "V"},
      {"PUT", "/t5", "", "abc"}, {"POST", "/t5", "", "defg"},
      {"POST", "/t5", "", "W"}, {"POST", "/t5", "", "U"},
      {"PUT", "/t6", "", "abc"}, {"POST", "/t6", "", "de"},
      {"PUT", "/t7", "", "abc"}, {"POST", "/t7", "", "de"},
      {"POST", "/t7", "", "QQ"},
      {"PUT", "/t8", "", "abc"}, {"POST", "/t8", "", "de"},
      {"POST", "/t8", "", "S"},
      {"PUT", "/t9", "", "abc"}, {"POST", "/t9", "", "de"},
      {"POST", "/t9", "", "R"}};
  static const char *const jsteps[][4] = {
      {"PUT", "/js", "", "[1,2,3]"},
      {"POST", "/js", "", "[4]"},
      {"POST", "/js", "", "[5,6]"},
      {"PUT", "/jf",
       "Stream-Forked-From: /js\r\nStream-Fork-Offset: 0_0\r\n"
       "Stream-Fork-Sub-Offset: 2\r\n",
       ""},
      {"POST", "/jf", "", "[7,8]"},
      {"PUT", "/jff",
       "Stream-Forked-From: /jf\r\nStream-Fork-Offset: 0_0\r\n"
       "Stream-Fork-Sub-Offset: 1\r\n",
       ""},
      {"POST", "/jff", "", "[9]"},
      {"PUT", "/jf2", "Stream-Forked-From: /js\r\n", "[10]"},
      {"PUT", "/jf3",
       "Stream-Forked-From: /jf2\r\nStream-Fork-Offset: 0_6\r\n"
       "Stream-Fork-Sub-Offset: 1\r\n",
       "[11,12]"},
      {"PUT", "/tj", "", "[1,2]"}, {"POST", "/tj", "", "[7,8]"},
      {"PUT", "/tjj", "", "[1]"}, {"POST", "/tjj", "", "[9]"},
      {"PUT", "/tj2", "", "[1,2,3]"}, {"POST", "/tj2", "", "[4]"},
      {"POST", "/tj2", "", "[5,6]"}, {"POST", "/tj2", "", "[10]"},
      {"PUT", "/tj3", "", "[1,2,3]"}, {"POST", "/tj3", "", "[4]"},
      {"POST", "/tj3", "", "[11,12]"}};
  char h[512];
  size_t i;
  for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
    snprintf(h, sizeof(h), "Content-Type: text/plain\r\n%s", steps[i][2]);
    ASSERT(unit_fork_req(port, steps[i][0], steps[i][1], h, steps[i][3]) /
               100 ==
           2);
  }
  for (i = 0; i < sizeof(jsteps) / sizeof(jsteps[0]); i++) {
    snprintf(h, sizeof(h), "Content-Type: application/json\r\n%s",
             jsteps[i][2]);
    ASSERT(unit_fork_req(port, jsteps[i][0], jsteps[i][1], h, jsteps[i][3]) /
               100 ==
           2);
  }
  /* an append a fork inherited is cut at its fork point: a sub-offset
  ** past the cut is past that append (the source's is longer) */
  {
    struct buf r;
    memset(&r, 0, sizeof(r));
    ASSERT(unit_req(port, "PUT", "/v1/bad1",
                    "Content-Type: text/plain\r\nStream-Forked-From: /f6\r\n"
                    "Stream-Fork-Offset: 0_3\r\nStream-Fork-Sub-Offset: 3\r\n",
                    "", 5000, &r) == 400);
    ASSERT(unit_req(port, "PUT", "/v1/bad2",
                    "Content-Type: application/json\r\n"
                    "Stream-Forked-From: /jf\r\nStream-Fork-Offset: 0_0\r\n"
                    "Stream-Fork-Sub-Offset: 3\r\n",
                    "", 5000, &r) == 400);
    ASSERT(unit_req(port, "PUT", "/v1/bad3", /* no append starts at 4 */
                    "Content-Type: text/plain\r\nStream-Forked-From: /f3\r\n"
                    "Stream-Fork-Offset: 0_4\r\nStream-Fork-Sub-Offset: 1\r\n",
                    "", 5000, &r) == 400);
    buf_free(&r);
  }
}

/* GET a then b with the same query: the same answer?  (ETags name the
** stream's incarnation: not compared.) */
static int unit_same_read(int port, const char *a, const char *b,
                          const char *query, int *mismatches) {
  static const char *const hdrs[] = {"Stream-Next-Offset", "Stream-Up-To-Date",
                                     "Stream-Closed", "Content-Type"};
  struct buf ra, rb;
  char ta[512], tb[512], va[128], vb[128];
  int sa, sb, same, i;
  struct str ba, bb;
  memset(&ra, 0, sizeof(ra));
  memset(&rb, 0, sizeof(rb));
  snprintf(ta, sizeof(ta), "%s%s", a, query);
  snprintf(tb, sizeof(tb), "%s%s", b, query);
  sa = unit_req(port, "GET", ta, "", "", 5000, &ra);
  sb = unit_req(port, "GET", tb, "", "", 5000, &rb);
  ba = unit_resp_body(&ra);
  bb = unit_resp_body(&rb);
  same = sa == sb && ba.len == bb.len && memcmp(ba.ptr, bb.ptr, ba.len) == 0;
  for (i = 0; i < 4 && same; i++) {
    unit_resp_header(&ra, hdrs[i], va, sizeof(va));
    unit_resp_header(&rb, hdrs[i], vb, sizeof(vb));
    same = strcmp(va, vb) == 0;
  }
  if (!same && (*mismatches)++ < 5)
    printf("# GET %s: %d [%.*s] %s / GET %s: %d [%.*s] %s\n", ta, sa,
           (int)ba.len, ba.ptr, i > 0 ? va : "", tb, sb, (int)bb.len, bb.ptr,
           i > 0 ? vb : "");
  buf_free(&ra);
  buf_free(&rb);
  return same;
}

/* Every fork whose fork and twin exist answers as its twin: catch-up at
** every offset (and long-poll where there is data); with sse, SSE from
** the start and from the middle (closed streams: their SSE ends). */
static void unit_fork_compare(int port, int sse, const char *skip) {
  struct buf r;
  char q[128], tail[64];
  size_t i;
  int mismatches = 0, n = 0;
  memset(&r, 0, sizeof(r));
  for (i = 0; i < UNIT_FORK_PAIRS; i++) {
    const struct unit_fork_pair *fp = &unit_fork_pairs[i];
    uint64_t t, o;
    if (skip != NULL && strstr(skip, fp->fork) != NULL) continue;
    ASSERT(unit_req(port, "HEAD", fp->twin, "", "", 5000, &r) == 200);
    unit_resp_header(&r, "Stream-Next-Offset", tail, sizeof(tail));
    t = strchr(tail, '_') ? strtoull(strchr(tail, '_') + 1, NULL, 10) : 0;
    for (o = 0; o <= t; o++) {
      snprintf(q, sizeof(q), "?offset=0_%llu", (unsigned long long)o);
      n += unit_same_read(port, fp->fork, fp->twin, q, &mismatches);
      if (o < t) {
        snprintf(q, sizeof(q), "?offset=0_%llu&live=long-poll",
                 (unsigned long long)o);
        n += unit_same_read(port, fp->fork, fp->twin, q, &mismatches);
      }
    }
    n += unit_same_read(port, fp->fork, fp->twin, "", &mismatches);
    if (sse) {
      struct buf ea, eb, rb;
      uint64_t starts[2];
      int k;
      memset(&ea, 0, sizeof(ea));
      memset(&eb, 0, sizeof(eb));
      memset(&rb, 0, sizeof(rb));
      starts[0] = 0;
      starts[1] = t / 2;
      for (k = 0; k < 2; k++) {
        char ta[256], tb[256];
        snprintf(ta, sizeof(ta), "%s?offset=0_%llu&live=sse", fp->fork,
                 (unsigned long long)starts[k]);
        snprintf(tb, sizeof(tb), "%s?offset=0_%llu&live=sse", fp->twin,
                 (unsigned long long)starts[k]);
        ASSERT(unit_req(port, "GET", ta, "", "", 3000, &r) == 200);
        unit_sse_events(&r, &ea);
        ASSERT(unit_req(port, "GET", tb, "", "", 3000, &rb) == 200);
        unit_sse_events(&rb, &eb);
        if (ea.len == 0 || ea.len != eb.len ||
            memcmp(ea.ptr, eb.ptr, ea.len) != 0) {
          ASSERT(0);
          printf("# SSE %s:\n%.*s# SSE %s:\n%.*s", ta, (int)ea.len, ea.ptr, tb,
                 (int)eb.len, eb.ptr);
        }
        n++;
      }
      buf_free(&ea);
      buf_free(&eb);
      buf_free(&rb);
    }
  }
  ASSERT(mismatches == 0 && n > 100);
  buf_free(&r);
}

/* Read a stream whole, following Stream-Next-Offset: its bytes, or for
** JSON its messages joined by commas, into out. */
static int unit_read_whole(int port, const char *path, struct buf *out) {
  struct buf r;
  char q[512], next[64] = "-1", utd[16];
  int i, json = path[1] == 'j';
  memset(&r, 0, sizeof(r));
  out->len = 0;
  for (i = 0; i < 100; i++) {
    struct str b;
    snprintf(q, sizeof(q), "%s?offset=%s", path, next);
    if (unit_req(port, "GET", q, "", "", 5000, &r) != 200) break;
    b = unit_resp_body(&r);
    if (json && b.len >= 2) { /* "[...]": the messages */
      if (b.len > 2) {
        if (out->len > 0) buf_append(out, ",", 1);
        buf_append(out, b.ptr + 1, b.len - 2);
      }
    } else {
      buf_append(out, b.ptr, b.len);
    }
    unit_resp_header(&r, "Stream-Next-Offset", next, sizeof(next));
    unit_resp_header(&r, "Stream-Up-To-Date", utd, sizeof(utd));
    if (strcmp(utd, "true") == 0) {
      buf_free(&r);
      return i + 1;
    }
  }
  buf_free(&r);
  return -1;
}

/* Each fork read whole is its source's bytes to the fork point, then its
** own: in one answer when the read limit allows it (reads that span a
** fork point answer one array for JSON), in several otherwise. */
static void unit_fork_whole(int port, int one_answer) {
  struct buf got;
  size_t i;
  memset(&got, 0, sizeof(got));
  for (i = 0; i < UNIT_FORK_PAIRS; i++) {
    int answers = unit_read_whole(port, unit_fork_pairs[i].fork, &got);
    ASSERT(answers > 0 && (!one_answer || answers == 1));
    if (got.len != strlen(unit_fork_pairs[i].whole) ||
        memcmp(got.ptr, unit_fork_pairs[i].whole, got.len) != 0) {
      ASSERT(0);
      printf("# %s read whole: [%.*s], want [%s]\n", unit_fork_pairs[i].fork,
             (int)got.len, got.ptr, unit_fork_pairs[i].whole);
    }
  }
  buf_free(&got);
}

/* Start a server for the fork tests: two cores, eight groups (sources and
** forks on both cores), reads of at most max_read bytes; with a WAL in
** unit_wal_dir if wal (a tiny hot memory and frequent snapshots, so reads
** come from the log and restarts from snapshots). */
static int unit_fork_start(struct unit_server_run *run, int64_t max_read,
                           int wal) {
  struct ursula_config cfg;
  struct ursula_server *srv = NULL;
  char err[URSULA_ERRMSG_LEN];
  ursula_config_init(&cfg);
  cfg.log_level = 0;
  cfg.listen_port = 0;
  cfg.core_count = 2;
  cfg.raft_group_count = 8;
  cfg.max_read_bytes = max_read;
  cfg.long_poll_timeout_ms = 500;
  if (wal) {
    snprintf(cfg.wal_dir, sizeof(cfg.wal_dir), "%s", unit_wal_dir);
    cfg.hot_max_bytes = 8;
    cfg.snapshot_bytes = 256;
  }
  if (ursula_server_start(&cfg, &srv, err) != URSULA_OK) {
    printf("# start: %s\n", err);
    unit_failed++;
    return -1;
  }
  unit_server_go(run, srv);
  return ursula_server_port(srv);
}

/* The whole matrix on one server configuration. */
static void unit_fork_matrix(int64_t max_read, int wal) {
  struct unit_server_run run;
  struct buf r;
  size_t i;
  int port, cross = 0, st = 0, k;
  memset(&r, 0, sizeof(r));
  if (wal) unit_wal_mkdir();
  if ((port = unit_fork_start(&run, max_read, wal)) < 0) return;
  for (i = 0; i < UNIT_FORK_PAIRS; i++) { /* hops between the cores */
    const struct unit_fork_pair *fp = &unit_fork_pairs[i];
    cross += server_owner_of(run.srv, server_group_of(run.srv, fp->fork,
                                                      strlen(fp->fork))) !=
             server_owner_of(run.srv, server_group_of(run.srv, fp->source,
                                                      strlen(fp->source)));
  }
  ASSERT(cross >= 3 || run.srv->n_cores == 1); /* one loop: no threads */
  unit_fork_build(port);
  if (wal) { /* the reads below come from a restarted server's log */
    ASSERT(unit_server_end(&run) == URSULA_OK);
    if ((port = unit_fork_start(&run, max_read, wal)) < 0) return;
  }
  unit_fork_compare(port, 0, NULL);
  unit_fork_whole(port, max_read > 100);
  /* the sources deleted: soft-deleted (410), and their forks read on */
  ASSERT(unit_fork_req(port, "DELETE", "/src", "", "") == 204);
  ASSERT(unit_fork_req(port, "DELETE", "/f1", "", "") == 204);
  ASSERT(unit_fork_req(port, "DELETE", "/js", "", "") == 204);
  ASSERT(unit_req(port, "GET", "/src", "", "", 5000, &r) == 410);
  ASSERT(unit_req(port, "GET", "/f1", "", "", 5000, &r) == 410);
  unit_fork_compare(port, 0, "/f1");
  /* closed: every SSE ends, and answers as its twin's */
  for (i = 0; i < UNIT_FORK_PAIRS; i++) {
    if (strcmp(unit_fork_pairs[i].fork, "/f1") == 0) continue;
    ASSERT(unit_fork_req(port, "POST", unit_fork_pairs[i].fork,
                         "Stream-Closed: true\r\n", "") == 204);
    ASSERT(unit_fork_req(port, "POST", unit_fork_pairs[i].twin,
                         "Stream-Closed: true\r\n", "") == 204);
  }
  if (wal) { /* and once more after a restart */
    ASSERT(unit_server_end(&run) == URSULA_OK);
    if ((port = unit_fork_start(&run, max_read, wal)) < 0) return;
  }
  unit_fork_compare(port, 1, "/f1");
  /* the forks go, leaves first: the sources go with the last of theirs */
  for (k = (int)UNIT_FORK_PAIRS - 1; k >= 0; k--)
    if (strcmp(unit_fork_pairs[k].fork, "/f1") != 0)
      ASSERT(unit_fork_req(port, "DELETE", unit_fork_pairs[k].fork, "", "") ==
             204);
  for (k = 0; k < 50; k++) { /* the releases are applied soon after */
    st = unit_req(port, "GET", "/src", "", "", 5000, &r);
    if (st == 404) break;
    unit_sleep_until(unit_now_s() + 0.05);
  }
  ASSERT(st == 404);
  ASSERT(unit_req(port, "GET", "/f1", "", "", 5000, &r) == 404);
  ASSERT(unit_req(port, "GET", "/js", "", "", 5000, &r) == 404);
  unit_server_end(&run);
  if (wal) unit_wal_rmdir();
  buf_free(&r);
}

static void test_server_fork_reads(void) {
  unit_fork_matrix(5, 0); /* small reads: many answers, JSON boundaries */
  unit_fork_matrix(1 << 20, 0); /* one answer spans the fork points */
}

static void test_server_fork_reads_wal(void) {
  unit_fork_matrix(7, 1);
}

/* ------------------------------------------------------------ bounds
** --max-body-inflight-bytes (conn.c, "BODIES IN FLIGHT"): a Content-Length
** is charged whole from its head on, a chunked body as its bytes come;
** what does not fit is 503 with Retry-After (RFC 9110 sections 15.6.4 and
** 10.2.3); and every way a request ends gives its charge back: handed on,
** refused, failed (400, 408, 413), the client gone. */

/* A connection to port (reads time out after 3 s), or -1. */
static int unit_conn_open(int port) {
  struct sockaddr_in a;
  struct timeval tv = {3, 0};
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(0x7f000001);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void unit_conn_send(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

/* What the server sends until it closes (or 3 s pass), NUL-terminated
** into out; its status, or -1. */
static int unit_conn_answer(int fd, char *out, size_t cap) {
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fd, out + len, cap - 1 - len);
    if (n <= 0) break;
    len += (size_t)n;
    if (len == cap - 1) break;
  }
  out[len] = '\0';
  return len > 12 && memcmp(out, "HTTP/1.1 ", 9) == 0 ? atoi(out + 9) : -1;
}

/* A response head (to its blank line; for answers without a body), NUL-
** terminated into out; its status, or -1. */
static int unit_conn_head(int fd, char *out, size_t cap) {
  size_t len = 0;
  out[0] = '\0';
  while (len < cap - 1 && strstr(out, "\r\n\r\n") == NULL) {
    ssize_t n = read(fd, out + len, 1);
    if (n <= 0) break;
    out[++len] = '\0';
  }
  return len > 12 && memcmp(out, "HTTP/1.1 ", 9) == 0 ? atoi(out + 9) : -1;
}

/* The bytes charged now, once they settle at want (the server's threads
** get there on their own time): want, or what they were after 3 s. */
static uint64_t unit_charged(struct ursula_server *srv, uint64_t want) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 300; i++) {
    struct timespec ts = {0, 10000000};
#if defined(__GNUC__)
    v = __atomic_load_n(&srv->bounds.body_bytes, __ATOMIC_RELAXED);
#else
    v = srv->bounds.body_bytes;
#endif
    if (v == want) break;
    nanosleep(&ts, NULL);
  }
  return v;
}

#define UNIT_POST "POST /s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"

static void test_server_body_charges(void) {
  struct unit_server_run run;
  struct ursula_config cfg;
  struct ursula_server *srv = NULL;
  char err[URSULA_ERRMSG_LEN], out[4096], big[6000];
  int port, held, chunked, fd;
  static const char cl_3000[] = UNIT_POST "Content-Length: 3000\r\n\r\n";
  static const char te[] = UNIT_POST "Transfer-Encoding: chunked\r\n\r\n";
  ursula_config_init(&cfg);
  cfg.log_level = 0;
  cfg.listen_port = 0;
  cfg.core_count = 2;
  cfg.max_body_bytes = 4096;
  cfg.max_body_inflight_bytes = 8192;
  cfg.body_timeout_ms = 1000;
  if (ursula_server_start(&cfg, &srv, err) != URSULA_OK) {
    printf("# start: %s\n", err);
    unit_failed++;
    return;
  }
  port = ursula_server_port(srv);
  unit_server_go(&run, srv);
  memset(big, 'b', sizeof(big));
  ASSERT(unit_http(port, "PUT", "/s", "", NULL, 0) == 201);
  ASSERT(unit_charged(srv, 0) == 0);
  /* a Content-Length of 3000 with 100 bytes sent: 3000 charged */
  held = unit_conn_open(port);
  unit_conn_send(held, cl_3000, strlen(cl_3000));
  unit_conn_send(held, big, 100);
  ASSERT(unit_charged(srv, 3000) == 3000);
  /* a chunked body, 2000 bytes of it so far: 2000 more */
  chunked = unit_conn_open(port);
  unit_conn_send(chunked, te, strlen(te));
  unit_conn_send(chunked, "7d0\r\n", 5);
  unit_conn_send(chunked, big, 2000);
  ASSERT(unit_charged(srv, 5000) == 5000);
  /* 4000 more do not fit 8192: 503, Retry-After, nothing charged */
  fd = unit_conn_open(port);
  unit_conn_send(fd, UNIT_POST "Content-Length: 4000\r\n\r\n",
                 strlen(UNIT_POST "Content-Length: 4000\r\n\r\n"));
  ASSERT(unit_conn_answer(fd, out, sizeof(out)) == 503);
  ASSERT(strstr(out, "\r\nRetry-After: 1\r\n") != NULL);
  ASSERT(strstr(out, "\r\nContent-Type: text/plain") != NULL);
  close(fd);
  ASSERT(unit_charged(srv, 5000) == 5000);
  /* the client of the 3000 goes away mid-body */
  close(held);
  ASSERT(unit_charged(srv, 2000) == 2000);
  /* the chunked body turns malformed: 400 */
  unit_conn_send(chunked, "\r\nzz\r\n", 6);
  ASSERT(unit_conn_answer(chunked, out, sizeof(out)) == 400);
  close(chunked);
  ASSERT(unit_charged(srv, 0) == 0);
  /* a chunked body past --max-body-bytes: 413 */
  fd = unit_conn_open(port);
  unit_conn_send(fd, te, strlen(te));
  unit_conn_send(fd, "1770\r\n", 6);
  unit_conn_send(fd, big, 6000);
  ASSERT(unit_conn_answer(fd, out, sizeof(out)) == 413);
  close(fd);
  ASSERT(unit_charged(srv, 0) == 0);
  /* a body that stalls: 408 after --body-timeout-ms */
  fd = unit_conn_open(port);
  unit_conn_send(fd, cl_3000, strlen(cl_3000));
  unit_conn_send(fd, big, 10);
  ASSERT(unit_charged(srv, 3000) == 3000);
  ASSERT(unit_conn_answer(fd, out, sizeof(out)) == 408);
  close(fd);
  ASSERT(unit_charged(srv, 0) == 0);
  /* bodies handed on (taken, or refused by the protocol layer), also on
  ** a connection that stays open */
  fd = unit_conn_open(port);
  unit_conn_send(fd, cl_3000, strlen(cl_3000));
  unit_conn_send(fd, big, 3000);
  ASSERT(unit_conn_head(fd, out, sizeof(out)) == 204);
  ASSERT(unit_charged(srv, 0) == 0);
  unit_conn_send(fd, te, strlen(te));
  unit_conn_send(fd, "3\r\nxyz\r\n0\r\n\r\n", 13);
  ASSERT(unit_conn_head(fd, out, sizeof(out)) == 204);
  ASSERT(unit_charged(srv, 0) == 0);
  close(fd);
  ASSERT(unit_http(port, "POST", "/s", "abc", NULL, 0) == 204);
  ASSERT(unit_http(port, "POST", "/v1/nope", "abc", NULL, 0) == 404);
  ASSERT(unit_charged(srv, 0) == 0);
  /* and the budget is whole again: 4096 and 4096 at once fit 8192 */
  held = unit_conn_open(port);
  unit_conn_send(held, UNIT_POST "Content-Length: 4096\r\n\r\n",
                 strlen(UNIT_POST "Content-Length: 4096\r\n\r\n"));
  fd = unit_conn_open(port);
  unit_conn_send(fd, UNIT_POST "Content-Length: 4096\r\n\r\n",
                 strlen(UNIT_POST "Content-Length: 4096\r\n\r\n"));
  ASSERT(unit_charged(srv, 8192) == 8192);
  close(held);
  close(fd);
  ASSERT(unit_charged(srv, 0) == 0);
  ASSERT(unit_server_end(&run) == URSULA_OK);
}

#undef UNIT_POST

static const struct unit_case unit_server_cases[] = {
    {"server_wal_sync_failure", test_server_wal_sync_failure},
    {"server_journal_redo", test_server_journal_redo},
    {"server_journal_checkpoint", test_server_journal_checkpoint},
    {"server_journal_waiting_batch", test_server_journal_waiting_batch},
    {"server_journal_checkpoint_failure",
     test_server_journal_checkpoint_failure},
    {"server_journal_checkpoint_open_failure",
     test_server_journal_checkpoint_open_failure},
    {"server_touch_after_failure", test_server_touch_after_failure},
    {"server_frame_failure", test_server_frame_failure},
    {"server_fork_refused", test_server_fork_refused},
    {"server_fork_reads", test_server_fork_reads},
    {"server_fork_reads_wal", test_server_fork_reads_wal},
    {"server_body_charges", test_server_body_charges},
    {NULL, NULL}};
