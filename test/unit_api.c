/*
** unit_api.c -- the protocol's request rules (src/api.c) without a socket:
** a request head, parsed by http.c, to a job or to the status that
** refuses it.  Expected values come from the Durable Streams protocol
** (/work/shared/docs/protocol.md: 2.3 PUT, 2.18 the status summary, the
** offset format "%016llu_%016llu") and from RFC 9110/9112 and RFC 3986,
** named at each case.  At the end, a whole server in this process, for
** what only the wire shows (the framing property, end to end).
*/

/* Parse head (a whole request head, CRLF line ends) and run it through
** api_parse_head(); on 0, make its job with api_build_job().  Returns the
** status of api_parse_head(); *out gets the job (NULL if refused). */
static int unit_api_job(const char *head, struct job **out) {
  static char copy[4096]; /* the request's views point into it */
  struct http_request req;
  struct api_head h;
  const char *reason = NULL;
  int status, has_cursor = 0;
  uint64_t cursor = 0;
  struct job *j;
  *out = NULL;
  snprintf(copy, sizeof(copy), "%s", head);
  if (http_parse_request(copy, strlen(copy), &req) <= 0) return -1;
  status = api_parse_head(&req, &h, &reason);
  if (status != 0) return status;
  j = job_new();
  if (j == NULL) return -1;
  api_build_job(&req, &h, 1024, j, &has_cursor, &cursor);
  *out = j;
  return 0;
}

static void test_api_offsets(void) {
  uint64_t v = 99;
  struct job *j;
  ASSERT(api_parse_offset(util_str("0000000000000000_0000000000000006"), &v) ==
             0 &&
         v == 6);
  ASSERT(api_parse_offset(util_str("0000000000000000_0000000000000000"), &v) ==
             0 &&
         v == 0);
  ASSERT(api_parse_offset(util_str(""), &v) == -1);
  ASSERT(api_parse_offset(util_str("abc"), &v) == -1);
  ASSERT(api_parse_offset(util_str("0000000000000000-0000000000000006"), &v) ==
         -1);
  ASSERT(api_parse_offset(util_str("_6"), &v) == -1);
  /* -1 is the start, now the tail */
  ASSERT(unit_api_job("GET /s?offset=-1 HTTP/1.1\r\n\r\n", &j) == 0);
  ASSERT(j && j->op == JOB_READ && j->status == 0 && j->offset == 0 &&
         !j->offset_now && j->live == JOB_LIVE_NONE);
  job_free(j);
  ASSERT(unit_api_job("GET /s?offset=now HTTP/1.1\r\n\r\n", &j) == 0);
  ASSERT(j && j->status == 0 && j->offset_now);
  job_free(j);
  ASSERT(unit_api_job("GET /a/b?offset=0000000000000000_0000000000000022&"
                      "live=long-poll&cursor=5 HTTP/1.1\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->status == 0 && j->offset == 22 && j->live == JOB_LIVE_POLL &&
         j->path_len == 4 && memcmp(j->path, "/a/b", 4) == 0 &&
         j->max_bytes == 1024);
  job_free(j);
  /* bad, empty or repeated offsets; live reads without one: 400 */
  ASSERT(unit_api_job("GET /s?offset=abc HTTP/1.1\r\n\r\n", &j) == 0);
  ASSERT(j && j->status == 400);
  job_free(j);
  ASSERT(unit_api_job("GET /s?offset= HTTP/1.1\r\n\r\n", &j) == 0);
  ASSERT(j && j->status == 400);
  job_free(j);
  ASSERT(unit_api_job("GET /s?offset=-1&offset=now HTTP/1.1\r\n\r\n", &j) == 0);
  ASSERT(j && j->status == 400);
  job_free(j);
  ASSERT(unit_api_job("GET /s?live=sse HTTP/1.1\r\n\r\n", &j) == 0);
  ASSERT(j && j->status == 400);
  job_free(j);
  ASSERT(unit_api_job("GET /s?offset=-1&live=yes HTTP/1.1\r\n\r\n", &j) == 0);
  ASSERT(j && j->status == 400);
  job_free(j);
}

static void test_api_bad_headers(void) {
  struct job *j;
  /* PUT: Stream-TTL and Stream-Expires-At together, a TTL not of the
  ** form 0|[1-9][0-9]*, an Expires-At not RFC 3339: 400 */
  ASSERT(unit_api_job("PUT /s HTTP/1.1\r\nStream-TTL: 60\r\n"
                      "Stream-Expires-At: 2030-01-01T00:00:00Z\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->op == JOB_CREATE && j->status == 400);
  job_free(j);
  ASSERT(unit_api_job("PUT /s HTTP/1.1\r\nStream-TTL: 00060\r\n\r\n", &j) == 0);
  ASSERT(j && j->status == 400);
  job_free(j);
  ASSERT(unit_api_job("PUT /s HTTP/1.1\r\nStream-TTL: 60.5\r\n\r\n", &j) == 0);
  ASSERT(j && j->status == 400);
  job_free(j);
  ASSERT(unit_api_job("PUT /s HTTP/1.1\r\nStream-Expires-At: tomorrow\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->status == 400);
  job_free(j);
  /* a good PUT: no Content-Type is application/octet-stream */
  ASSERT(unit_api_job("PUT /s HTTP/1.1\r\nStream-TTL: 60\r\n\r\n", &j) == 0);
  ASSERT(j && j->status == 0 && (j->cmd.flags & CMD_F_TTL) &&
         j->cmd.ttl_s == 60 && !(j->cmd.flags & CMD_F_CT) &&
         strcmp(j->content_type, "application/octet-stream") == 0);
  job_free(j);
  /* POST: producer headers come as a set of three */
  ASSERT(unit_api_job("POST /s HTTP/1.1\r\nContent-Type: text/plain\r\n"
                      "Producer-Id: p\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->op == JOB_APPEND && j->status == 400);
  job_free(j);
  ASSERT(unit_api_job("POST /s HTTP/1.1\r\nContent-Type: application/json\r\n"
                      "Producer-Id: p\r\nProducer-Epoch: 0\r\n"
                      "Producer-Seq: 1\r\nStream-Closed: true\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->status == 0 && (j->cmd.flags & CMD_F_PRODUCER) &&
         j->cmd.producer_seq == 1 && (j->cmd.flags & CMD_F_JSON) &&
         (j->cmd.flags & CMD_F_CLOSE));
  job_free(j);
}

static void test_api_head_refused(void) {
  struct job *j;
  char head[URSULA_MAX_PATH_BYTES + 64];
  ASSERT(unit_api_job("PATCH /s HTTP/1.1\r\n\r\n", &j) == 405 && j == NULL);
  ASSERT(unit_api_job("GET /a/../b HTTP/1.1\r\n\r\n", &j) == 400 && j == NULL);
  ASSERT(unit_api_job("GET s HTTP/1.1\r\n\r\n", &j) == 400 && j == NULL);
  snprintf(head, sizeof(head), "GET /%0*d HTTP/1.1\r\n\r\n",
           URSULA_MAX_PATH_BYTES, 0);
  ASSERT(unit_api_job(head, &j) == 414 && j == NULL);
  ASSERT(unit_api_job("OPTIONS /s HTTP/1.1\r\n\r\n", &j) == 0);
  ASSERT(j && j->op == 0 && j->status == 0);
  job_free(j);
}

/* Query parameters are percent-decoded (RFC 3986 section 2.1) before
** they mean anything, names and values alike; every number has its range
** (protocol: offsets are "%016llu_%016llu" of this server, cursors are
** echoes of Stream-Cursor; producer numbers fit 2^53 - 1, the integers a
** JavaScript client holds exactly; Stream-TTL up to 2^40 s). */
static void test_api_query_decoding(void) {
  struct job *j;
  ASSERT(unit_api_job("GET /s?offset=%2D1 HTTP/1.1\r\n\r\n", &j) == 0);
  ASSERT(j && j->status == 0 && j->offset == 0 && !j->offset_now);
  job_free(j);
  ASSERT(unit_api_job("GET /s?offset=%6Eow HTTP/1.1\r\n\r\n", &j) == 0);
  ASSERT(j && j->status == 0 && j->offset_now);
  job_free(j);
  ASSERT(unit_api_job("GET /s?%6fffset=%6e%6f%77&l%69ve=%73se HTTP/1.1\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->status == 0 && j->offset_now && j->live == JOB_LIVE_SSE);
  job_free(j);
  ASSERT(unit_api_job("GET /s?offset=0000000000000000%5F0000000000000007 "
                      "HTTP/1.1\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->status == 0 && j->offset == 7);
  job_free(j);
  /* the same parameter twice, decoded or not, is still twice */
  ASSERT(unit_api_job("GET /s?offset=-1&%6Fffset=-1 HTTP/1.1\r\n\r\n", &j) ==
         0);
  ASSERT(j && j->status == 400);
  job_free(j);
  ASSERT(unit_api_job("GET /s?offset=-1&live=sse&live=sse HTTP/1.1\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->status == 400);
  job_free(j);
  /* decoded values that are not ours: "+" is not a space, NUL is a byte */
  ASSERT(unit_api_job("GET /s?offset=-1%00 HTTP/1.1\r\n\r\n", &j) == 0);
  ASSERT(j && j->status == 400);
  job_free(j);
  ASSERT(unit_api_job("GET /s?offset=-1&live=long+poll HTTP/1.1\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->status == 400);
  job_free(j);
  ASSERT(unit_api_job("GET /s?offset=%30%30%30%30%30%30%30%30%30%30%30%30%30"
                      "%30%30%30%30%30%30%30%30%30%30%30_1 HTTP/1.1\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->status == 0 && j->offset == 1); /* 24 zeros, decoded */
  job_free(j);
  /* an offset whose first part is not 0 was not given by this server */
  ASSERT(unit_api_job("GET /s?offset=0000000000000001_0000000000000000 "
                      "HTTP/1.1\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->status == 400);
  job_free(j);
  ASSERT(unit_api_job("GET /s?offset=0_18446744073709551616 HTTP/1.1\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->status == 400);
  job_free(j);
  ASSERT(unit_api_job("GET /s?offset=0_18446744073709551615 HTTP/1.1\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->status == 0 && j->offset == UINT64_MAX);
  job_free(j);
  /* unknown parameters are ignored, whatever they hold */
  ASSERT(unit_api_job("GET /s?x=%41&%42=y&offset=-1 HTTP/1.1\r\n\r\n", &j) == 0);
  ASSERT(j && j->status == 0);
  job_free(j);
}

static int unit_api_cursor(const char *head, uint64_t *cursor) {
  static char copy[512];
  struct http_request req;
  struct api_head h;
  const char *reason = NULL;
  int has = -1;
  struct job *j = job_new();
  snprintf(copy, sizeof(copy), "%s", head);
  if (j == NULL || http_parse_request(copy, strlen(copy), &req) <= 0 ||
      api_parse_head(&req, &h, &reason) != 0) {
    job_free(j);
    return -1;
  }
  api_build_job(&req, &h, 1024, j, &has, cursor);
  job_free(j);
  return has;
}

static void test_api_numbers(void) {
  struct job *j;
  uint64_t c = 0;
  /* cursor: a number up to 2^53 - 1, else none (protocol 2.14: a
  ** missing or unparsable cursor gets the current interval) */
  ASSERT(unit_api_cursor("GET /s?offset=-1&cursor=%35 HTTP/1.1\r\n\r\n", &c) ==
             1 &&
         c == 5);
  ASSERT(unit_api_cursor("GET /s?offset=-1&cursor=9007199254740991 "
                         "HTTP/1.1\r\n\r\n",
                         &c) == 1 &&
         c == 9007199254740991ULL);
  ASSERT(unit_api_cursor("GET /s?offset=-1&cursor=9007199254740992 "
                         "HTTP/1.1\r\n\r\n",
                         &c) == 0);
  ASSERT(unit_api_cursor("GET /s?offset=-1&cursor=18446744073709551615 "
                         "HTTP/1.1\r\n\r\n",
                         &c) == 0);
  ASSERT(unit_api_cursor("GET /s?offset=-1&cursor=-1 HTTP/1.1\r\n\r\n", &c) ==
         0);
  ASSERT(unit_api_cursor("GET /s?offset=-1&cursor=1&cursor=2 HTTP/1.1\r\n\r\n",
                         &c) == 0);
  /* Producer-Epoch / Producer-Seq: integers up to 2^53 - 1 */
  ASSERT(unit_api_job("POST /s HTTP/1.1\r\nContent-Type: text/plain\r\n"
                      "Producer-Id: p\r\nProducer-Epoch: 9007199254740991\r\n"
                      "Producer-Seq: 0\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->status == 0 && j->cmd.producer_epoch == 9007199254740991ULL);
  job_free(j);
  ASSERT(unit_api_job("POST /s HTTP/1.1\r\nContent-Type: text/plain\r\n"
                      "Producer-Id: p\r\nProducer-Epoch: 9007199254740992\r\n"
                      "Producer-Seq: 0\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->status == 400);
  job_free(j);
  ASSERT(unit_api_job("POST /s HTTP/1.1\r\nContent-Type: text/plain\r\n"
                      "Producer-Id: p\r\nProducer-Epoch: 1\r\n"
                      "Producer-Seq: 99999999999999999999999\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->status == 400);
  job_free(j);
  /* Stream-TTL: 0|[1-9][0-9]* up to 2^40 */
  ASSERT(unit_api_job("PUT /s HTTP/1.1\r\nStream-TTL: 1099511627776\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->status == 0 && j->cmd.ttl_s == 1099511627776ULL);
  job_free(j);
  ASSERT(unit_api_job("PUT /s HTTP/1.1\r\nStream-TTL: 1099511627777\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->status == 400);
  job_free(j);
  /* Stream-Fork-Offset is an offset of this server */
  ASSERT(unit_api_job("PUT /f HTTP/1.1\r\nStream-Forked-From: /s\r\n"
                      "Stream-Fork-Offset: 9999999999999999_9999999999999999\r\n"
                      "\r\n",
                      &j) == 0);
  ASSERT(j && j->status == 400);
  job_free(j);
}

/* HEAD answers as the GET of the same target would (RFC 9110 section
** 9.3.2): its query is read the same way; RFC 9110 section 9.1: a method
** the server does not recognize is 501, one it knows but does not serve
** 405; OPTIONS * asks about the server (RFC 9112 section 3.2.4). */
static void test_api_head_and_methods(void) {
  struct job *j;
  ASSERT(unit_api_job("HEAD /s?offset=0000000000000000_0000000000000003 "
                      "HTTP/1.1\r\n\r\n",
                      &j) == 0);
  ASSERT(j && j->op == JOB_HEAD && j->status == 0 && j->offset == 3 &&
         j->max_bytes == 1024 && j->live == JOB_LIVE_NONE);
  job_free(j);
  ASSERT(unit_api_job("HEAD /s?offset=abc HTTP/1.1\r\n\r\n", &j) == 0);
  ASSERT(j && j->op == JOB_HEAD && j->status == 400);
  job_free(j);
  ASSERT(unit_api_job("HEAD /s?offset=now&live=sse HTTP/1.1\r\n\r\n", &j) == 0);
  ASSERT(j && j->status == 0 && j->offset_now && j->live == JOB_LIVE_NONE);
  job_free(j);
  ASSERT(unit_api_job("FOOBAR /s HTTP/1.1\r\n\r\n", &j) == 501 && j == NULL);
  ASSERT(unit_api_job("get /s HTTP/1.1\r\n\r\n", &j) == 501 && j == NULL);
  ASSERT(unit_api_job("TRACE /s HTTP/1.1\r\n\r\n", &j) == 405 && j == NULL);
  ASSERT(unit_api_job("CONNECT h:443 HTTP/1.1\r\n\r\n", &j) == 405 && j == NULL);
  ASSERT(unit_api_job("OPTIONS * HTTP/1.1\r\n\r\n", &j) == 0);
  ASSERT(j && j->op == 0 && j->status == 0);
  job_free(j);
  ASSERT(unit_api_job("GET * HTTP/1.1\r\n\r\n", &j) == 400 && j == NULL);
}

/* ------------------------------------------------------------ the wire
** The framing property again, end to end: a whole server in this
** process, and for random Content-Length / Transfer-Encoding heads (the
** same generator and oracle as test/unit_http.c) a request followed by a
** smuggled PUT.  What the oracle refuses must be answered once, with its
** status, and the connection closed: the PUT never runs.  What it
** accepts is framed as the oracle says (its body sent accordingly), so
** the PUT that follows is the next request and is answered too. */

/* Send req on a fresh connection and read until the server closes (or 5
** s pass); the bytes in out. */
static void unit_api_exchange(int port, const char *req, size_t len,
                              struct buf *out) {
  struct sockaddr_in a;
  struct timeval tv = {5, 0};
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  out->len = 0;
  if (fd < 0) return;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(0x7f000001);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
      write(fd, req, len) == (ssize_t)len) {
    char tmp[4096];
    ssize_t n;
    while ((n = read(fd, tmp, sizeof(tmp))) > 0)
      buf_append(out, tmp, (size_t)n);
  }
  close(fd);
}

/* The status codes of the responses in r, in order, as "204 201 ". */
static void unit_api_statuses(const struct buf *r, char *out, size_t cap) {
  size_t i, n = 0;
  out[0] = '\0';
  for (i = 0; i + 12 <= r->len && n + 5 < cap; i++) {
    if ((i == 0 || r->ptr[i - 1] == '\n') &&
        memcmp(r->ptr + i, "HTTP/1.1 ", 9) == 0) {
      memcpy(out + n, r->ptr + i + 9, 3);
      out[n + 3] = ' ';
      n += 4;
      out[n] = '\0';
    }
  }
}

static void test_api_wire_framing(void) {
  static const char *const cl_pool[] = {"0",  "5",   "005", " 5", "",
                                        "+5", "5 5", "5, 5", "0x5", "-1"};
  struct unit_server_run run;
  int port, round, fails = 0;
  if ((port = unit_server_up(&run, 1, 1, NULL)) < 0) return;
  for (round = 0; round < 300; round++) {
    struct unit_framing_case c;
    struct buf req, resp;
    char got[64], want[64], path[64];
    int verdict, kind;
    uint64_t len;
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    unit_framing_random(&c, cl_pool, sizeof(cl_pool) / sizeof(cl_pool[0]));
    verdict = unit_framing_oracle(&c, &kind, &len);
    unit_framing_head(&c, "OPTIONS /v1/stream/w",
                      c.minor == 0 ? "Connection: keep-alive\r\n" : "", &req);
    if (verdict != 0 || kind == HTTP_BODY_CHUNKED)
      buf_append_str(&req, "5\r\nhello\r\n0\r\n\r\n");
    else if (kind == HTTP_BODY_LENGTH)
      buf_append(&req, "hello", (size_t)len);
    snprintf(path, sizeof(path), "/v1/stream/smuggled-%d", round);
    buf_printf(&req,
               "PUT %s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
               "Content-Length: 0\r\nConnection: close\r\n\r\n",
               path);
    unit_api_exchange(port, req.ptr, req.len, &resp);
    unit_api_statuses(&resp, got, sizeof(got));
    if (verdict != 0)
      snprintf(want, sizeof(want), "%d ", verdict);
    else
      snprintf(want, sizeof(want), "204 201 ");
    if (strcmp(got, want) != 0 ||
        unit_http(port, "GET", path, "", NULL, 0) != (verdict ? 404 : 200)) {
      if (fails++ < 3)
        printf("# got [%s] want [%s] for:\n%.*s\n", got, want, (int)req.len,
               req.ptr);
      unit_failed++;
    }
    buf_free(&req);
    buf_free(&resp);
  }
  unit_server_end(&run);
}

/* The server's paths (api.c, THE SERVER'S PATHS): "/__ursula" and all
** under "/__ursula/" are never a stream's; GET and HEAD of
** /__ursula/cluster are served, any other method there is 405 (RFC 9110
** section 15.5.6, with Allow: GET, HEAD: the wire case below), any other
** reserved path 404.  A path that only starts alike is a stream. */
static void test_api_reserved_paths(void) {
  static const struct {
    const char *head;
    int op, status;
  } cases[] = {
      {"GET /__ursula/cluster HTTP/1.1\r\nHost: x\r\n\r\n", JOB_STATUS, 0},
      {"HEAD /__ursula/cluster HTTP/1.1\r\nHost: x\r\n\r\n", JOB_STATUS, 0},
      {"GET /__ursula/cluster?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", JOB_STATUS, 0},
      {"POST /__ursula/cluster HTTP/1.1\r\nHost: x\r\n\r\n", JOB_STATUS, 405},
      {"PUT /__ursula/cluster HTTP/1.1\r\nHost: x\r\n\r\n", JOB_STATUS, 405},
      {"DELETE /__ursula/cluster HTTP/1.1\r\nHost: x\r\n\r\n", JOB_STATUS,
       405},
      {"OPTIONS /__ursula/cluster HTTP/1.1\r\nHost: x\r\n\r\n", JOB_STATUS,
       405},
      {"GET /__ursula/ HTTP/1.1\r\nHost: x\r\n\r\n", JOB_STATUS, 404},
      {"GET /__ursula HTTP/1.1\r\nHost: x\r\n\r\n", JOB_STATUS, 404},
      {"GET /__ursula/cluster/x HTTP/1.1\r\nHost: x\r\n\r\n", JOB_STATUS, 404},
      {"PUT /__ursula/s HTTP/1.1\r\nHost: x\r\n\r\n", JOB_STATUS, 404},
      {"PUT /__ursulax HTTP/1.1\r\nHost: x\r\n\r\n", JOB_CREATE, 0},
      {"GET /v1/stream/__ursula/cluster HTTP/1.1\r\nHost: x\r\n\r\n", JOB_READ,
       0},
  };
  size_t i;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct job *j = NULL;
    int rc = unit_api_job(cases[i].head, &j);
    if (rc != 0 || j == NULL || j->op != cases[i].op ||
        j->status != cases[i].status) {
      printf("# %.40s: rc %d op %d status %d\n", cases[i].head, rc,
             j ? j->op : -1, j ? j->status : -1);
      unit_failed++;
    }
    job_free(j);
  }
}

/* The status body (api_status_json): the fields of the README, in
** order, valid JSON (json.c's validator takes it), a string escaped as
** RFC 8259 section 7 says ('"' and '\\' with a backslash, control
** characters as \u00XX), and null for a leader not known and a peer not
** heard. */
static void test_api_status_json(void) {
  struct group_status gs[2];
  struct group_gather gg;
  struct buf out, flat;
  size_t n_msgs = 0;
  static const char want[] =
      "{\"node\":2,\"cluster\":true,\"cores\":2,\"peers\":["
      "{\"id\":1,\"address\":\"127.0.0.1:7001\",\"connected\":true,"
      "\"links_up\":2,\"last_heard_ms\":12},"
      "{\"id\":3,\"address\":\"a\\\"b\\\\c\\u000ad\\u001f:7003\","
      "\"connected\":false,\"links_up\":1,\"last_heard_ms\":null}],"
      "\"groups\":["
      "{\"group\":0,\"role\":\"leader\",\"term\":3,\"leader\":2,"
      "\"commit\":40,\"applied\":39,\"last_index\":41},"
      "{\"group\":1,\"role\":\"candidate\",\"term\":18446744073709551615,"
      "\"leader\":null,\"commit\":0,\"applied\":0,\"last_index\":0}]}\n";
  memset(&gg, 0, sizeof(gg));
  memset(gs, 0, sizeof(gs));
  memset(&out, 0, sizeof(out));
  memset(&flat, 0, sizeof(flat));
  gg.node = 2;
  gg.cluster = 1;
  gg.n_cores = 2;
  gg.n_groups = 2;
  gg.groups = gs;
  gg.n_peers = 2;
  gg.peers[0].id = 1;
  snprintf(gg.peers[0].address, sizeof(gg.peers[0].address), "127.0.0.1:7001");
  gg.peers[0].links_up = 2;
  gg.peers[0].heard = 1;
  gg.peers[0].heard_age_ms = 12;
  gg.peers[1].id = 3;
  snprintf(gg.peers[1].address, sizeof(gg.peers[1].address),
           "a\"b\\c\nd\x1f:7003");
  gg.peers[1].links_up = 1;
  gs[0].group = 0;
  gs[0].role = RAFT_LEADER;
  gs[0].term = 3;
  gs[0].leader = 2;
  gs[0].commit = 40;
  gs[0].applied = 39;
  gs[0].last_index = 41;
  gs[1].group = 1;
  gs[1].role = RAFT_CANDIDATE;
  gs[1].term = UINT64_MAX;
  ASSERT(api_status_json(&out, &gg) == URSULA_OK);
  ASSERT(out.len == sizeof(want) - 1 && memcmp(out.ptr, want, out.len) == 0);
  if (out.len != sizeof(want) - 1 || memcmp(out.ptr, want, out.len) != 0)
    printf("# got %.*s", (int)out.len, out.ptr);
  ASSERT(json_flatten(out.ptr, out.len, &flat, &n_msgs) == URSULA_OK &&
         n_msgs == 1);
  /* a single node: no peers, an empty list */
  gg.cluster = 0;
  gg.node = 1;
  gg.n_peers = 0;
  gg.n_groups = 0;
  out.len = 0;
  ASSERT(api_status_json(&out, &gg) == URSULA_OK);
  ASSERT(out.len > 0 &&
         strncmp(out.ptr,
                 "{\"node\":1,\"cluster\":false,\"cores\":2,\"peers\":[],"
                 "\"groups\":[]}\n",
                 out.len) == 0);
  buf_free(&out);
  buf_free(&flat);
}

/* A number after "key": in s at or after p (UINT64_MAX: none). */
static uint64_t unit_api_num(const char *p, const char *key) {
  char k[32];
  const char *q;
  snprintf(k, sizeof(k), "\"%s\":", key);
  q = strstr(p, k);
  return q ? strtoull(q + strlen(k), NULL, 10) : UINT64_MAX;
}

/* GET /__ursula/cluster of a single node in this process (2 cores, 4
** groups): 200, application/json, no-store; node 1, not a cluster, no
** peers; every group led by node 1 (its only voter elects itself, Raft
** paper 5.2) in a term >= 1, with applied <= commit <= last_index (an
** entry is applied once committed, and committed entries are in the
** log).  HEAD: the same head, no body.  POST: 405 with Allow: GET, HEAD;
** a stream cannot be made under /__ursula/ (404). */
static void test_api_status_single_node(void) {
  struct unit_server_run run;
  char body[4096], want[64];
  struct buf resp, head;
  const char *p;
  int port, g;
  static const char get[] =
      "GET /__ursula/cluster HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  static const char hd[] =
      "HEAD /__ursula/cluster HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  static const char post[] =
      "POST /__ursula/cluster HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
      "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";
  if ((port = unit_server_up(&run, 2, 4, NULL)) < 0) return;
  memset(&resp, 0, sizeof(resp));
  memset(&head, 0, sizeof(head));
  ASSERT(unit_http(port, "GET", "/__ursula/cluster", "", body,
                   sizeof(body)) == 200);
  snprintf(want, sizeof(want), "{\"node\":1,\"cluster\":false,\"cores\":%d,",
           run.srv->n_cores);
  ASSERT(strncmp(body, want, strlen(want)) == 0);
  ASSERT(strstr(body, "\"peers\":[],\"groups\":[") != NULL);
  p = body;
  for (g = 0; g < 4; g++) {
    char key[32];
    uint64_t term, commit, applied, last;
    snprintf(key, sizeof(key), "{\"group\":%d,", g);
    p = strstr(p, key);
    ASSERT(p != NULL);
    if (p == NULL) break;
    ASSERT(strncmp(p + strlen(key), "\"role\":\"leader\",", 16) == 0);
    term = unit_api_num(p, "term");
    commit = unit_api_num(p, "commit");
    applied = unit_api_num(p, "applied");
    last = unit_api_num(p, "last_index");
    ASSERT(unit_api_num(p, "leader") == 1);
    ASSERT(term >= 1 && term != UINT64_MAX);
    ASSERT(applied <= commit && commit <= last && last != UINT64_MAX);
    p += strlen(key);
  }
  ASSERT(strstr(body, "{\"group\":4,") == NULL);
  unit_api_exchange(port, get, sizeof(get) - 1, &resp);
  buf_append(&resp, "", 1); /* NUL-terminated for strstr */
  resp.len--;
  ASSERT(resp.len > 0 && strstr(resp.ptr, "HTTP/1.1 200 ") == resp.ptr);
  ASSERT(strstr(resp.ptr, "\r\nContent-Type: application/json\r\n") != NULL);
  ASSERT(strstr(resp.ptr, "\r\nCache-Control: no-store\r\n") != NULL);
  unit_api_exchange(port, hd, sizeof(hd) - 1, &head);
  buf_append(&head, "", 1); /* NUL-terminated for strstr */
  head.len--;
  ASSERT(head.len > 0 && strstr(head.ptr, "HTTP/1.1 200 ") == head.ptr);
  ASSERT(strstr(head.ptr, "\r\nContent-Type: application/json\r\n") != NULL);
  ASSERT(strstr(head.ptr, "\r\nCache-Control: no-store\r\n") != NULL);
  ASSERT(strstr(head.ptr, "\r\nContent-Length: ") != NULL);
  ASSERT(head.len >= 4 && memcmp(head.ptr + head.len - 4, "\r\n\r\n", 4) == 0);
  resp.len = 0;
  unit_api_exchange(port, post, sizeof(post) - 1, &resp);
  buf_append(&resp, "", 1); /* NUL-terminated for strstr */
  resp.len--;
  ASSERT(resp.len > 0 && strstr(resp.ptr, "HTTP/1.1 405 ") == resp.ptr);
  ASSERT(strstr(resp.ptr, "\r\nAllow: GET, HEAD\r\n") != NULL);
  ASSERT(unit_http(port, "PUT", "/__ursula/s", "", NULL, 0) == 404);
  ASSERT(unit_http(port, "GET", "/__ursula/s", "", NULL, 0) == 404);
  buf_free(&resp);
  buf_free(&head);
  unit_server_end(&run);
}

static const struct unit_case unit_api_cases[] = {
    {"api_offsets", test_api_offsets},
    {"api_bad_headers", test_api_bad_headers},
    {"api_head_refused", test_api_head_refused},
    {"api_query_decoding", test_api_query_decoding},
    {"api_numbers", test_api_numbers},
    {"api_head_and_methods", test_api_head_and_methods},
    {"api_wire_framing", test_api_wire_framing},
    {"api_reserved_paths", test_api_reserved_paths},
    {"api_status_json", test_api_status_json},
    {"api_status_single_node", test_api_status_single_node},
    {NULL, NULL},
};
