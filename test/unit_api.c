/*
** unit_api.c -- the protocol's request rules (src/api.c) without a socket:
** a request head, parsed by http.c, to a job or to the status that
** refuses it.  Expected values come from the Durable Streams protocol
** (/work/shared/docs/protocol.md: 2.3 PUT, 2.18 the status summary, the
** offset format "%016llu_%016llu").
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

static const struct unit_case unit_api_cases[] = {
    {"api_offsets", test_api_offsets},
    {"api_bad_headers", test_api_bad_headers},
    {"api_head_refused", test_api_head_refused},
    {NULL, NULL},
};
