/* unit_os.c -- os.c and log.c: the real env (clocks, random bits), the
** file-system table's directory calls, and a log clock that can be set. */

static void test_env_real(void) {
  struct env *e = env_real();
  uint64_t a, b, x, all_or = 0, all_and = ~(uint64_t)0, prev = 0;
  int i, repeats = 0;
  ASSERT(e != NULL && e == env_real());
  ASSERT(e->fs == os_fs());
  a = os_now_ms();
  x = e->mono_ms(e);
  b = os_now_ms();
  ASSERT(a <= x && x <= b);
  a = os_wall_ms();
  x = e->wall_ms(e);
  b = os_wall_ms();
  ASSERT(a <= x && x <= b);
  ASSERT(x > (uint64_t)1600000000 * 1000); /* after 2020 */
  for (i = 0; i < 1000; i++) {
    x = e->random(e);
    all_or |= x;
    all_and &= x;
    if (i > 0 && x == prev) repeats++;
    prev = x;
  }
  ASSERT(all_or == ~(uint64_t)0); /* every bit seen set ... */
  ASSERT(all_and == 0);           /* ... and clear */
  ASSERT(repeats == 0);
}

/* Concurrent callers of env_real()->random never get the same value
** twice (the state advances under a mutex). */
#define UNIT_OS_RAND_N 2000
struct unit_os_rand {
  uint64_t v[UNIT_OS_RAND_N];
};

static void *unit_os_rand_main(void *arg) {
  struct unit_os_rand *r = (struct unit_os_rand *)arg;
  struct env *e = env_real();
  int i;
  for (i = 0; i < UNIT_OS_RAND_N; i++) r->v[i] = e->random(e);
  return NULL;
}

static int unit_os_cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void test_env_random_threads(void) {
  static struct unit_os_rand r[4];
  static uint64_t all[4 * UNIT_OS_RAND_N];
  pthread_t th[4];
  int i, started[4], dups = 0;
  for (i = 0; i < 4; i++)
    started[i] = pthread_create(&th[i], NULL, unit_os_rand_main, &r[i]) == 0;
  for (i = 0; i < 4; i++) {
    if (started[i])
      pthread_join(th[i], NULL);
    else
      unit_os_rand_main(&r[i]);
    memcpy(all + i * UNIT_OS_RAND_N, r[i].v, sizeof(r[i].v));
  }
  qsort(all, 4 * UNIT_OS_RAND_N, sizeof(all[0]), unit_os_cmp_u64);
  for (i = 1; i < 4 * UNIT_OS_RAND_N; i++) dups += all[i] == all[i - 1];
  ASSERT(dups == 0);
}
#undef UNIT_OS_RAND_N

/* list: collect names, one string "a,b," sorted by the caller. */
struct unit_os_names {
  char names[8][32];
  int n;
  int stop_at; /* stop (return 7) once this many were seen; 0 = never */
};

static int unit_os_on_name(void *arg, const char *name) {
  struct unit_os_names *x = (struct unit_os_names *)arg;
  if (x->n < 8) snprintf(x->names[x->n], sizeof(x->names[0]), "%s", name);
  x->n++;
  return x->stop_at != 0 && x->n >= x->stop_at ? 7 : 0;
}

static int unit_os_has(const struct unit_os_names *x, const char *name) {
  int i;
  for (i = 0; i < x->n && i < 8; i++)
    if (strcmp(x->names[i], name) == 0) return 1;
  return 0;
}

static void test_os_fs_dirs(void) {
  struct os_fs *fs = os_fs();
  struct unit_os_names x;
  char dir[64], sub[96], file[96];
  uint64_t size = 1;
  int fd;
  snprintf(dir, sizeof(dir), "/tmp/ursula-unit-os-%ld", (long)getpid());
  snprintf(sub, sizeof(sub), "%s/sub", dir);
  snprintf(file, sizeof(file), "%s/.f", dir);
  /* mkdir: POSIX in the table, forgiving in os_mkdir */
  ASSERT(fs->mkdir(dir, 0755) == 0);
  ASSERT(fs->mkdir(dir, 0755) == -1 && errno == EEXIST);
  ASSERT(os_mkdir(dir) == 0);
  ASSERT(os_mkdir(sub) == 0);
  /* size of an open file */
  fd = fs->open(file, O_RDWR | O_CREAT | O_TRUNC, 0644);
  ASSERT(fd >= 0);
  if (fd >= 0) {
    ASSERT(fs->size(fd, &size) == 0 && size == 0);
    ASSERT(fs->pwrite(fd, "hello", 5, 0) == 5);
    ASSERT(fs->size(fd, &size) == 0 && size == 5);
    ASSERT(fs->sync(fd) == 0);
    fs->close(fd);
  }
  ASSERT(fs->size(-1, &size) == -1 && errno == EBADF);
  ASSERT(fs->sync_dir(dir) == 0 && os_sync_dir(dir) == 0);
  /* list: every entry but . and .., dot files included */
  memset(&x, 0, sizeof(x));
  ASSERT(fs->list(dir, unit_os_on_name, &x) == 0);
  ASSERT(x.n == 2 && unit_os_has(&x, "sub") && unit_os_has(&x, ".f"));
  memset(&x, 0, sizeof(x));
  x.stop_at = 1;
  ASSERT(fs->list(dir, unit_os_on_name, &x) == 7);
  ASSERT(x.n == 1);
  memset(&x, 0, sizeof(x));
  ASSERT(fs->list(sub, unit_os_on_name, &x) == 0 && x.n == 0);
  ASSERT(fs->list("/nonexistent/ursula", unit_os_on_name, &x) == -1 &&
         errno == ENOENT);
  /* rmdir: only an empty directory */
  ASSERT(fs->rmdir(dir) == -1);
  ASSERT(fs->rmdir(sub) == 0);
  ASSERT(fs->unlink(file) == 0);
  ASSERT(fs->rmdir(dir) == 0);
  ASSERT(fs->sync_dir(dir) == -1 && errno == ENOENT);
}

/* The log's timestamp comes from the env set with log_set_clock(). */
#if URSULA_ENABLE_LOG
static uint64_t unit_os_wall_1234(struct env *e) {
  (void)e;
  return 86400000u + 1234; /* 1970-01-02T00:00:01.234Z */
}

static void test_log_clock(void) {
  struct env e;
  char line[256];
  ssize_t n;
  int p[2], saved;
  e = *env_real();
  e.wall_ms = unit_os_wall_1234;
  if (pipe(p) != 0) {
    ASSERT(0);
    return;
  }
  saved = dup(2);
  ASSERT(saved >= 0);
  dup2(p[1], 2);
  log_set_clock(&e);
  log_write(LOG_ERROR, "hello %d", 42);
  log_set_clock(NULL);
  log_write(LOG_ERROR, "real");
  dup2(saved, 2);
  close(saved);
  close(p[1]);
  n = read(p[0], line, sizeof(line) - 1);
  close(p[0]);
  line[n > 0 ? n : 0] = '\0';
  ASSERT(strncmp(line, "1970-01-02T00:00:01.234Z ursula[E] hello 42\n",
                 44) == 0);
  /* the second line has today's date again */
  ASSERT(strstr(line, "\n19") == NULL);
  ASSERT(strstr(line + 44, "Z ursula[E] real\n") != NULL);
}
#else
static void test_log_clock(void) {
  log_set_clock(NULL);
}
#endif

/* --log-format json's message escaping against RFC 8259 section 7 ('"'
** and '\\' escaped; U+0000..U+001F escaped, here as \u00XX) and 8.1 (the
** text is UTF-8: invalid sequences, by RFC 3629 section 4 -- a stray
** continuation byte, an overlong form, a surrogate, past U+10FFFF, a
** sequence cut short -- become U+FFFD, one per byte); a cut at the buffer
** never splits an escape or a character. */
static void test_log_json_escape(void) {
  static const struct {
    const char *in, *want;
  } cases[] = {
      {"plain", "plain"},
      {"a \"q\" \\ b", "a \\\"q\\\" \\\\ b"},
      {"tab\tnl\n\x01\x7f", "tab\\u0009nl\\u000a\\u0001\\u007f"},
      {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
      {"\xff", "\\ufffd"},
      {"\x80x", "\\ufffdx"},
      {"\xc0\x80", "\\ufffd\\ufffd"},           /* overlong NUL */
      {"\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd"}, /* U+D800 */
      {"\xf4\x90\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd"}, /* > U+10FFFF */
      {"\xe2\x82", "\\ufffd\\ufffd"},           /* cut short */
  };
  char out[64];
  size_t i, n;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    n = log_json_escape(out, sizeof(out), cases[i].in, strlen(cases[i].in));
    ASSERT(n == strlen(cases[i].want) && memcmp(out, cases[i].want, n) == 0);
  }
  n = log_json_escape(out, 3, "ab\"cd", 5); /* \" does not fit after ab */
  ASSERT(n == 2 && memcmp(out, "ab", 2) == 0);
  n = log_json_escape(out, 4, "a\n", 2); /* \u000a does not fit: cut */
  ASSERT(n == 1 && out[0] == 'a');
  n = log_json_escape(out, 3, "a\xe2\x82\xac", 4); /* nor does the euro */
  ASSERT(n == 1);
}

static const struct unit_case unit_os_cases[] = {
    {"env_real", test_env_real},
    {"env_random_threads", test_env_random_threads},
    {"os_fs_dirs", test_os_fs_dirs},
    {"log_clock", test_log_clock},
    {"log_json_escape", test_log_json_escape},
    {NULL, NULL}};
