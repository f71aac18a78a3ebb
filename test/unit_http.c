/* unit_http.c -- http.c: request heads, chunked bodies, status texts. */

static const char unit_http_req[] =
    "POST /v1/stream/a?offset=-1 HTTP/1.1\r\n"
    "Host: example\r\n"
    "Content-Type:  text/plain \r\n"
    "X-Empty:\r\n"
    "\r\n";

static void test_http_parse_full(void) {
  struct http_request r;
  int n = http_parse_request(unit_http_req, strlen(unit_http_req), &r);
  const struct http_header *h;
  ASSERT(n == (int)strlen(unit_http_req));
  ASSERT_MEM(r.method.ptr, r.method.len, "POST");
  ASSERT_MEM(r.target.ptr, r.target.len, "/v1/stream/a?offset=-1");
  ASSERT(r.minor_version == 1);
  ASSERT(r.n_headers == 3);
  h = http_find_header(&r, "content-type");
  ASSERT(h != NULL);
  if (h != NULL) ASSERT_MEM(h->value.ptr, h->value.len, "text/plain");
  h = http_find_header(&r, "X-EMPTY");
  ASSERT(h != NULL && h->value.len == 0);
  ASSERT(http_find_header(&r, "Content-Length") == NULL);
}

/* Every prefix of a complete head needs more; the whole head parses. */
static void test_http_parse_split(void) {
  size_t len = strlen(unit_http_req), i;
  struct http_request r;
  for (i = 0; i < len; i++)
    ASSERT(http_parse_request(unit_http_req, i, &r) == URSULA_EAGAIN);
  ASSERT(http_parse_request(unit_http_req, len, &r) == (int)len);
}

static void test_http_parse_pipelined_and_lf(void) {
  static const char two[] = "GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
  static const char lf[] = "\r\nGET /c HTTP/1.1\nA: b\n\n";
  struct http_request r;
  ASSERT(http_parse_request(two, strlen(two), &r) == 19);
  ASSERT(r.minor_version == 0);
  ASSERT_MEM(r.target.ptr, r.target.len, "/a");
  ASSERT(http_parse_request(two + 19, strlen(two) - 19, &r) == 19);
  ASSERT_MEM(r.target.ptr, r.target.len, "/b");
  /* a leading empty line is skipped; bare LF ends lines */
  ASSERT(http_parse_request(lf, strlen(lf), &r) == (int)strlen(lf));
  ASSERT(r.n_headers == 1);
}

static void test_http_parse_malformed(void) {
  static const char *const bad[] = {
      "GE T / HTTP/1.1\r\n\r\n",              /* space inside the method */
      "G(T / HTTP/1.1\r\n\r\n",               /* not a token */
      " GET / HTTP/1.1\r\n\r\n",              /* empty method */
      "GET  / HTTP/1.1\r\n\r\n",              /* empty target */
      "GET /\r\n\r\n",                        /* no version */
      "GET / HTTP/2.0\r\n\r\n",               /* not HTTP/1.x */
      "GET / HTTP/1.2\r\n\r\n",               /* unknown minor version */
      "GET / HTTP/1.1 \r\n\r\n",              /* junk after the version */
      "GET / HTTP/1.1\r\nA : b\r\n\r\n",      /* blank before the colon */
      "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", /* obs-fold */
      "GET / HTTP/1.1\r\n: b\r\n\r\n",        /* empty name */
      "GET / HTTP/1.1\r\nA b\r\n\r\n",        /* no colon */
      "GET / HTTP/1.1\rX\n\r\n",              /* CR without LF */
      "GET / HTTP/1.1\r\nA: b\x01\r\n\r\n",   /* control byte in a value */
  };
  size_t i;
  struct http_request r;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = http_parse_request(bad[i], strlen(bad[i]), &r);
    if (rc != HTTP_EMALFORMED) printf("# case %u: %d\n", (unsigned)i, rc);
    ASSERT(rc == HTTP_EMALFORMED);
  }
  /* a NUL byte is caught before the head is complete */
  ASSERT(http_parse_request("GET /\0", 6, &r) == HTTP_EMALFORMED);
  ASSERT(http_parse_request("GE(", 3, &r) == HTTP_EMALFORMED);
}

static void test_http_parse_too_many(void) {
  struct buf b;
  struct http_request r;
  int i;
  memset(&b, 0, sizeof(b));
  buf_append_str(&b, "GET / HTTP/1.1\r\n");
  for (i = 0; i < URSULA_MAX_HEADERS; i++) buf_printf(&b, "H%d: v\r\n", i);
  buf_append_str(&b, "\r\n");
  ASSERT(http_parse_request(b.ptr, b.len, &r) == (int)b.len);
  ASSERT(r.n_headers == URSULA_MAX_HEADERS);
  b.len -= 2;
  buf_append_str(&b, "One-More: v\r\n\r\n");
  ASSERT(http_parse_request(b.ptr, b.len, &r) == HTTP_ETOOMANY);
  buf_free(&b);
}

/* Decode in[] fed in pieces of `step` bytes; returns consumed bytes. */
static long unit_http_dechunk(const char *in, size_t len, size_t step,
                              struct buf *body, int *done) {
  struct http_chunked d;
  size_t at = 0;
  memset(&d, 0, sizeof(d));
  *done = 0;
  while (at < len && !*done) {
    size_t n = len - at < step ? len - at : step;
    long used = http_chunked_feed(&d, in + at, n, body, done);
    if (used < 0) return used;
    at += (size_t)used;
    if ((size_t)used < n && !*done) return -1; /* must take all it is given */
  }
  return (long)at;
}

static void test_http_chunked_split(void) {
  static const char in[] =
      "5;name=val\r\nhello\r\n"
      "A\r\n, world!!!\r\n"
      "0\r\nTrailer: x\r\n\r\n"
      "NEXT";
  size_t len = strlen(in), step;
  for (step = 1; step <= len; step++) {
    struct buf body;
    int done = 0;
    long used;
    memset(&body, 0, sizeof(body));
    used = unit_http_dechunk(in, len, step, &body, &done);
    ASSERT(done == 1);
    ASSERT(used == (long)(len - 4)); /* "NEXT" is the next request */
    ASSERT(body.ptr != NULL);
    if (body.ptr != NULL) ASSERT_MEM(body.ptr, body.len, "hello, world!!!");
    buf_free(&body);
  }
}

static void test_http_chunked_malformed(void) {
  static const char *const bad[] = {
      "zz\r\n",                /* not hex */
      "\r\n",                  /* empty size */
      "11111111111111111\r\n", /* 17 digits: overflow */
      "3\r\nabcX\r\n",         /* no CRLF after the data */
      "3\r\nabc\rX",           /* CR without LF */
      "3\x01\r\n",             /* control byte after the size */
  };
  size_t i;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    struct buf body;
    int done = 0;
    memset(&body, 0, sizeof(body));
    ASSERT(unit_http_dechunk(bad[i], strlen(bad[i]), 64, &body, &done) ==
           HTTP_EMALFORMED);
    buf_free(&body);
  }
  { /* an endless extension is cut off at 1 KiB */
    struct buf in, body;
    int done = 0;
    memset(&in, 0, sizeof(in));
    memset(&body, 0, sizeof(body));
    buf_append_str(&in, "1;");
    for (i = 0; i < 1100; i++) buf_append_str(&in, "x");
    ASSERT(unit_http_dechunk(in.ptr, in.len, 7, &body, &done) ==
           HTTP_EMALFORMED);
    buf_free(&in);
    buf_free(&body);
  }
}

static void test_http_status_text(void) {
  ASSERT(strcmp(http_status_text(200), "OK") == 0);
  ASSERT(strcmp(http_status_text(404), "Not Found") == 0);
  ASSERT(strcmp(http_status_text(431), "Request Header Fields Too Large") == 0);
  ASSERT(strcmp(http_status_text(299), "Unknown") == 0);
}

static const struct unit_case unit_http_cases[] = {
    {"http_parse_full", test_http_parse_full},
    {"http_parse_split", test_http_parse_split},
    {"http_parse_pipelined_and_lf", test_http_parse_pipelined_and_lf},
    {"http_parse_malformed", test_http_parse_malformed},
    {"http_parse_too_many", test_http_parse_too_many},
    {"http_chunked_split", test_http_chunked_split},
    {"http_chunked_malformed", test_http_chunked_malformed},
    {"http_status_text", test_http_status_text},
    {NULL, NULL}};
