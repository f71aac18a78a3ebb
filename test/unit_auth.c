/* unit_auth.c -- the auth file (src/auth.c, THE FILE): every parse error
** with its line, scope and prefix matching, the constant-time walk over
** every entry, the token length bounds, the Authorization field. */

/* hex of the SHA-256 of token into out (65 bytes) */
static void unit_auth_hex(const char *token, char *out) {
  unsigned char d[32];
  crypto_sha256(token, strlen(token), d);
  crypto_hex(d, 32, out);
}

/* Parse text (named "f"); URSULA_OK or the error, its message in err. */
static int unit_auth_parse(const char *text, struct auth_table **t,
                           char *err) {
  err[0] = '\0';
  return auth_parse(text, strlen(text), "f", t, err);
}

/* text must fail with "f:LINE: " and why somewhere after it. */
static void unit_auth_bad(const char *text, int line, const char *why) {
  struct auth_table *t = NULL;
  char err[URSULA_ERRMSG_LEN], want[32];
  int rc = unit_auth_parse(text, &t, err);
  snprintf(want, sizeof(want), "f:%d: ", line);
  ASSERT(rc == URSULA_EINVAL);
  ASSERT(t == NULL);
  if (strncmp(err, want, strlen(want)) != 0 || strstr(err, why) == NULL)
    printf("# got \"%s\", want \"%s...%s\"\n", err, want, why);
  ASSERT(strncmp(err, want, strlen(want)) == 0);
  ASSERT(strstr(err, why) != NULL);
}

static const char unit_auth_tok_r[] = "reader-token-0123456789";
static const char unit_auth_tok_w[] = "writer-token-0123456789";
static const char unit_auth_tok_rw[] = "rw-token-0123456789abc";
static const char unit_auth_tok_a[] = "admin-token-0123456789";

/* A table of the four tokens above:
**   r   read          /a/
**   w   write         *
**   rw  read,write    /b
**   a   admin         *           */
static struct auth_table *unit_auth_table(void) {
  char h[4][65], text[1024], err[URSULA_ERRMSG_LEN];
  struct auth_table *t = NULL;
  unit_auth_hex(unit_auth_tok_r, h[0]);
  unit_auth_hex(unit_auth_tok_w, h[1]);
  unit_auth_hex(unit_auth_tok_rw, h[2]);
  unit_auth_hex(unit_auth_tok_a, h[3]);
  snprintf(text, sizeof(text),
           "\xEF\xBB\xBF# tokens\n"
           "\n"
           "r read /a/ %s\r\n"
           "  # indented comment, UTF-8: \xC3\xA9\n"
           "w\twrite\t*\t%s\n"
           "rw read,write /b %s   \n"
           "a admin * %s",
           h[0], h[1], h[2], h[3]);
  ASSERT(unit_auth_parse(text, &t, err) == URSULA_OK);
  if (t == NULL) printf("# %s\n", err);
  return t;
}

static int unit_auth_do(const struct auth_table *t, const char *tok,
                        unsigned scope, const char *path) {
  return auth_check(t, tok, strlen(tok), scope, path,
                    path != NULL ? strlen(path) : 0, NULL);
}

static void test_auth_parse_ok(void) {
  struct auth_table *t = unit_auth_table(), *e = NULL;
  char err[URSULA_ERRMSG_LEN];
  ASSERT(auth_count(t) == 4);
  ASSERT(unit_auth_parse("", &e, err) == URSULA_OK); /* no entry: valid */
  ASSERT(auth_count(e) == 0);
  ASSERT(unit_auth_do(e, unit_auth_tok_r, AUTH_READ, "/a/x") == 401);
  auth_release(e);
  e = NULL;
  ASSERT(unit_auth_parse("# only\n\n   \n\t# comments\n", &e, err) ==
         URSULA_OK);
  ASSERT(auth_count(e) == 0);
  auth_release(e);
  /* held twice: freed with the last release (ASan sees a leak or a
  ** double free otherwise) */
  ASSERT(auth_hold(t) == t);
  auth_release(t);
  ASSERT(auth_count(t) == 4);
  auth_release(t);
}

static void test_auth_parse_errors(void) {
  char h[65], h2[65], text[12000], name65[66], longpfx[1100];
  struct auth_table *t = NULL;
  char err[URSULA_ERRMSG_LEN];
  int i, fd;
  char path[64];
  unit_auth_hex("some-token-0123456789", h);
  unit_auth_hex("other-token-0123456789", h2);
#define UNIT_AUTH_LINE(fmt, ...) \
  (snprintf(text, sizeof(text), fmt, __VA_ARGS__), text)
  unit_auth_bad(UNIT_AUTH_LINE("# c\nx read * %s extra\n", h), 2,
                "expected 4 fields");
  unit_auth_bad("x read *\n", 1, "expected 4 fields");
  unit_auth_bad(UNIT_AUTH_LINE("ok read * %s\nx read * %s # note\n", h, h2), 2,
                "expected 4 fields");
  unit_auth_bad(UNIT_AUTH_LINE("a/b read * %s\n", h), 1, "name: ");
  for (i = 0; i < 65; i++) name65[i] = 'n';
  name65[65] = '\0';
  unit_auth_bad(UNIT_AUTH_LINE("\n%s read * %s\n", name65, h), 2, "name: ");
  name65[64] = '\0'; /* 64 is allowed */
  ASSERT(unit_auth_parse(UNIT_AUTH_LINE("%s read * %s\n", name65, h), &t,
                         err) == URSULA_OK);
  auth_release(t);
  t = NULL;
  unit_auth_bad(UNIT_AUTH_LINE("x read, * %s\n", h), 1, "empty scope");
  unit_auth_bad(UNIT_AUTH_LINE("x ,read * %s\n", h), 1, "empty scope");
  unit_auth_bad(UNIT_AUTH_LINE("x reed * %s\n", h), 1, "unknown scope");
  unit_auth_bad(UNIT_AUTH_LINE("x Read * %s\n", h), 1, "unknown scope");
  unit_auth_bad(UNIT_AUTH_LINE("x read,write,read * %s\n", h), 1,
                "given twice");
  unit_auth_bad(UNIT_AUTH_LINE("x read a/ %s\n", h), 1, "prefix: ");
  unit_auth_bad(UNIT_AUTH_LINE("x read ** %s\n", h), 1, "prefix: ");
  unit_auth_bad(UNIT_AUTH_LINE("x read /\xC3\xA9 %s\n", h), 1,
                "printable ASCII");
  longpfx[0] = '/';
  for (i = 1; i < 1025; i++) longpfx[i] = 'p';
  longpfx[1025] = '\0';
  unit_auth_bad(UNIT_AUTH_LINE("x read %s %s\n", longpfx, h), 1, "longer");
  unit_auth_bad(UNIT_AUTH_LINE("x read * %.63s\n", h), 1, "hash: ");
  unit_auth_bad(UNIT_AUTH_LINE("x read * %s0\n", h), 1, "hash: ");
  strcpy(h2, h);
  h2[10] = 'A'; /* uppercase is refused: sha256sum prints lowercase */
  unit_auth_bad(UNIT_AUTH_LINE("x read * %s\n", h2), 1, "hash: ");
  h2[10] = 'g';
  unit_auth_bad(UNIT_AUTH_LINE("x read * %s\n", h2), 1, "hash: ");
  unit_auth_hex("other-token-0123456789", h2);
  unit_auth_bad(UNIT_AUTH_LINE("x read * %s\ny read * %s\nx write * %s\n", h,
                               h2, h2),
                3, "name: the same as on line 1");
  unit_auth_bad(UNIT_AUTH_LINE("x read * %s\n\ny write /a/ %s\n", h, h), 3,
                "the same token as on line 1");
  /* the first repeat in file order, whichever rule it breaks */
  unit_auth_bad(UNIT_AUTH_LINE("x read * %s\ny read * %s\ny read * %s\n"
                               "z read * %s\n",
                               h, h2, "0000000000000000000000000000000000000000"
                                      "000000000000000000000000",
                               h),
                3, "name: the same as on line 2");
  /* a message never quotes a hash */
  unit_auth_parse(UNIT_AUTH_LINE("x read * %s\ny read * %s\n", h, h), &t, err);
  ASSERT(strstr(err, h) == NULL && strstr(err, "f:2: ") == err);
  unit_auth_bad(UNIT_AUTH_LINE("x read * %s\x01\n", h), 1, "control");
  memset(text, 'x', 5000);
  text[5000] = '\0';
  unit_auth_bad(text, 1, "longer than 4096");
#undef UNIT_AUTH_LINE
  { /* 10000 entries load; one more is refused at line 10001 */
    struct buf b;
    memset(&b, 0, sizeof(b));
    for (i = 0; i < AUTH_MAX_ENTRIES; i++) {
      unsigned char d[32];
      char hex[65];
      crypto_sha256(&i, sizeof(i), d);
      crypto_hex(d, 32, hex);
      buf_printf(&b, "n%d read /s/%d/ %s\n", i, i, hex);
    }
    ASSERT(auth_parse(b.ptr, b.len, "f", &t, err) == URSULA_OK);
    ASSERT(auth_count(t) == AUTH_MAX_ENTRIES);
    auth_release(t);
    t = NULL;
    buf_printf(&b, "last read * %s\n", h);
    ASSERT(auth_parse(b.ptr, b.len, "f", &t, err) == URSULA_EINVAL);
    ASSERT(strstr(err, "f:10001: more than 10000 entries") == err);
    buf_free(&b);
  }
  /* from a file: a NUL byte names its line; a missing file */
  snprintf(path, sizeof(path), "/tmp/ursula-unit-auth-%d", (int)getpid());
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT(fd >= 0);
  ASSERT(write(fd, "# one\n# two\nx\0y\n", 16) == 16);
  close(fd);
  ASSERT(auth_load(path, &t, err) == URSULA_EINVAL);
  ASSERT(strstr(err, ":3: a NUL byte") != NULL);
  unlink(path);
  ASSERT(auth_load(path, &t, err) == URSULA_EIO);
  ASSERT(strstr(err, "cannot open") != NULL);
  ASSERT(t == NULL);
}

static void test_auth_scope_prefix(void) {
  struct auth_table *t = unit_auth_table();
  /* r: read on /a/ */
  ASSERT(unit_auth_do(t, unit_auth_tok_r, AUTH_READ, "/a/x") == 0);
  ASSERT(unit_auth_do(t, unit_auth_tok_r, AUTH_READ, "/a/") == 0);
  ASSERT(unit_auth_do(t, unit_auth_tok_r, AUTH_READ, "/a/x/y") == 0);
  ASSERT(unit_auth_do(t, unit_auth_tok_r, AUTH_READ, "/ab") == 403);
  ASSERT(unit_auth_do(t, unit_auth_tok_r, AUTH_READ, "/a") == 403);
  ASSERT(unit_auth_do(t, unit_auth_tok_r, AUTH_READ, "/b/a/") == 403);
  ASSERT(unit_auth_do(t, unit_auth_tok_r, AUTH_WRITE, "/a/x") == 403);
  ASSERT(unit_auth_do(t, unit_auth_tok_r, AUTH_ADMIN, NULL) == 403);
  /* w: write everywhere, no read */
  ASSERT(unit_auth_do(t, unit_auth_tok_w, AUTH_WRITE, "/any/where") == 0);
  ASSERT(unit_auth_do(t, unit_auth_tok_w, AUTH_READ, "/any/where") == 403);
  /* rw: both on /b, which covers /bc too (no trailing slash) */
  ASSERT(unit_auth_do(t, unit_auth_tok_rw, AUTH_READ, "/b") == 0);
  ASSERT(unit_auth_do(t, unit_auth_tok_rw, AUTH_WRITE, "/bc/d") == 0);
  ASSERT(unit_auth_do(t, unit_auth_tok_rw, AUTH_WRITE, "/c") == 403);
  ASSERT(unit_auth_do(t, unit_auth_tok_rw, AUTH_READ | AUTH_WRITE, "/b/x") ==
         0);
  ASSERT(unit_auth_do(t, unit_auth_tok_rw, AUTH_ADMIN, NULL) == 403);
  /* a: admin paths by scope alone, no stream */
  ASSERT(unit_auth_do(t, unit_auth_tok_a, AUTH_ADMIN, NULL) == 0);
  ASSERT(unit_auth_do(t, unit_auth_tok_a, AUTH_READ, "/a/x") == 403);
  /* no entry */
  ASSERT(unit_auth_do(t, "nobody-has-this-token", AUTH_READ, "/a/x") == 401);
  ASSERT(unit_auth_do(t, "reader-token-0123456788", AUTH_READ, "/a/x") ==
         401);
  auth_release(t);
}

/* Every entry is compared whether the token is the first's, the last's
** or nobody's (an early exit would make the time tell which). */
static void test_auth_constant_time(void) {
  struct buf b;
  struct auth_table *t = NULL;
  char err[URSULA_ERRMSG_LEN], tok[32];
  unsigned char h[32];
  size_t walked = 0;
  int i, n = 50;
  memset(&b, 0, sizeof(b));
  for (i = 0; i < n; i++) {
    char hex[65];
    snprintf(tok, sizeof(tok), "token-number-%08d", i);
    unit_auth_hex(tok, hex);
    buf_printf(&b, "t%d read * %s\n", i, hex);
  }
  ASSERT(auth_parse(b.ptr, b.len, "f", &t, err) == URSULA_OK);
  buf_free(&b);
  auth_hash("token-number-00000000", 21, h);
  ASSERT(auth_check_hash(t, h, AUTH_READ, "/x", 2, &walked) == 0);
  ASSERT(walked == (size_t)n);
  walked = 0;
  auth_hash("token-number-00000049", 21, h);
  ASSERT(auth_check_hash(t, h, AUTH_READ, "/x", 2, &walked) == 0);
  ASSERT(walked == (size_t)n);
  walked = 0;
  auth_hash("token-number-00000050", 21, h);
  ASSERT(auth_check_hash(t, h, AUTH_READ, "/x", 2, &walked) == 401);
  ASSERT(walked == (size_t)n);
  walked = 0;
  auth_hash("token-number-00000049", 21, h);
  ASSERT(auth_check_hash(t, h, AUTH_WRITE, "/x", 2, &walked) == 403);
  ASSERT(walked == (size_t)n);
  /* the match found is the one entry (not a neighbour's grant) */
  h[31] ^= 1;
  ASSERT(auth_check_hash(t, h, AUTH_READ, "/x", 2, NULL) == 401);
  auth_release(t);
}

/* A token is 16..512 bytes: a 15-byte one is 401 even if its hash is in
** the file. */
static void test_auth_token_length(void) {
  char text[600], hex[65], tok[520];
  struct auth_table *t = NULL;
  char err[URSULA_ERRMSG_LEN];
  unsigned char h[32];
  struct buf b;
  memset(&b, 0, sizeof(b));
  memset(tok, 'k', sizeof(tok));
  tok[15] = '\0';
  unit_auth_hex(tok, hex);
  buf_printf(&b, "fifteen read * %s\n", hex);
  tok[15] = 'k';
  tok[16] = '\0';
  unit_auth_hex(tok, hex);
  buf_printf(&b, "sixteen read * %s\n", hex);
  tok[16] = 'k';
  tok[512] = '\0';
  unit_auth_hex(tok, hex);
  buf_printf(&b, "max read * %s\n", hex);
  tok[512] = 'k';
  tok[513] = '\0';
  unit_auth_hex(tok, hex);
  buf_printf(&b, "over read * %s\n", hex);
  ASSERT(auth_parse(b.ptr, b.len, "f", &t, err) == URSULA_OK);
  buf_free(&b);
  ASSERT(auth_check(t, tok, 15, AUTH_READ, "/x", 2, NULL) == 401);
  ASSERT(auth_check(t, tok, 16, AUTH_READ, "/x", 2, NULL) == 0);
  ASSERT(auth_check(t, tok, 512, AUTH_READ, "/x", 2, h) == 0);
  auth_hash(tok, 512, (unsigned char *)text);
  ASSERT(memcmp(h, text, 32) == 0); /* the hash it was admitted with */
  ASSERT(auth_check(t, tok, 513, AUTH_READ, "/x", 2, NULL) == 401);
  auth_release(t);
}

static void test_auth_bearer(void) {
  struct str tok;
  ASSERT(auth_bearer(util_str("Bearer abc-._~+/"), &tok) == AUTH_BEARER);
  ASSERT_MEM(tok.ptr, tok.len, "abc-._~+/");
  ASSERT(auth_bearer(util_str("bearer   abc=="), &tok) == AUTH_BEARER);
  ASSERT_MEM(tok.ptr, tok.len, "abc==");
  ASSERT(auth_bearer(util_str(" BEARER xyz "), &tok) == AUTH_BEARER);
  ASSERT_MEM(tok.ptr, tok.len, "xyz");
  ASSERT(auth_bearer(util_str("Basic dXNlcjpwdw=="), &tok) == AUTH_NO_BEARER);
  ASSERT(auth_bearer(util_str("Bearerx abc"), &tok) == AUTH_NO_BEARER);
  ASSERT(auth_bearer(util_str(""), &tok) == AUTH_NO_BEARER);
  ASSERT(auth_bearer(util_str("Bearer"), &tok) == AUTH_MALFORMED);
  ASSERT(auth_bearer(util_str("Bearer "), &tok) == AUTH_MALFORMED);
  ASSERT(auth_bearer(util_str("Bearer a b"), &tok) == AUTH_MALFORMED);
  ASSERT(auth_bearer(util_str("Bearer a=b"), &tok) == AUTH_MALFORMED);
  ASSERT(auth_bearer(util_str("Bearer a,b"), &tok) == AUTH_MALFORMED);
  ASSERT(auth_bearer(util_str("Bearer ===="), &tok) == AUTH_MALFORMED);
}

static const struct unit_case unit_auth_cases[] = {
    {"auth_parse_ok", test_auth_parse_ok},
    {"auth_parse_errors", test_auth_parse_errors},
    {"auth_scope_prefix", test_auth_scope_prefix},
    {"auth_constant_time", test_auth_constant_time},
    {"auth_token_length", test_auth_token_length},
    {"auth_bearer", test_auth_bearer},
    {NULL, NULL},
};
