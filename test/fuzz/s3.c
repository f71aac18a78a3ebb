/*
** s3.c -- fuzz what the S3 client reads from an endpoint: the response
** head and body framing (s3_read_response: status line, headers,
** Content-Length, chunked, read to the close), the XML of error bodies
** (s3_error_fill) and of ListObjectsV2 pages (s3_xml, walked as s3_list
** walks it), and the endpoint URL (s3_client_new).
**
** Input: 1 byte of mode (the request's method, or the endpoint parser),
** 1 byte n, 2n bytes of cut points, then the bytes the endpoint sends.
** They come through a socket as one packet per piece, so the client's
** reads end where the cuts are.  Properties:
**   - s3_read_response() returns URSULA_OK or URSULA_EIO, never blocks
**     once the endpoint has closed, and never holds more than its body
**     limit (an endpoint that announces 8 EiB gets an error, not a
**     reservation);
**   - a body it accepted is the body as framed: Content-Length bytes; the
**     chunked decoding of all the bytes after the head fed at once; or
**     everything to the close;
**   - error and list XML walks terminate, and what they fill in is
**     NUL-terminated within its field;
**   - an endpoint URL is accepted or refused with a message.
*/
#include "../../ursula.c"
#include "fuzz.h"

#include <sys/socket.h>

#define FUZZ_MAX_CUTS 16
#define FUZZ_PACKET 16384 /* what s3_read_response reads at once */

static struct s3_client *fuzz_client(void) {
  struct s3_config cfg;
  struct s3_client *c = NULL;
  char err[URSULA_ERRMSG_LEN];
  memset(&cfg, 0, sizeof(cfg));
  cfg.endpoint = "http://127.0.0.1:9";
  cfg.bucket = "bucket";
  cfg.region = "us-east-1";
  cfg.access_key = "AKIDEXAMPLE";
  cfg.secret_key = "secret";
  cfg.timeout_ms = 1000;
  cfg.max_attempts = 1;
  FUZZ_CHECK(s3_client_new(&c, &cfg, err) == URSULA_OK);
  return c;
}

/* Walk a ListObjectsV2 page as s3_list() does. */
static void fuzz_list_page(const struct buf *page) {
  struct buf contents, key, size, trunc, token;
  size_t at = 0, last = 0, in;
  memset(&contents, 0, sizeof(contents));
  memset(&key, 0, sizeof(key));
  memset(&size, 0, sizeof(size));
  memset(&trunc, 0, sizeof(trunc));
  memset(&token, 0, sizeof(token));
  while (s3_xml(page->ptr ? page->ptr : "", page->len, &at, "Contents",
                &contents)) {
    uint64_t sz = 0;
    FUZZ_CHECK(at > last && at <= page->len);
    last = at;
    FUZZ_CHECK(contents.ptr != NULL && contents.ptr[contents.len] == '\0');
    in = 0;
    if (!s3_xml(contents.ptr, contents.len, &in, "Key", &key)) continue;
    FUZZ_CHECK(in <= contents.len && key.ptr[key.len] == '\0');
    in = 0;
    if (s3_xml(contents.ptr, contents.len, &in, "Size", &size))
      util_parse_u64(util_str(size.ptr), UINT64_MAX, &sz);
  }
  at = 0;
  if (s3_xml(page->ptr ? page->ptr : "", page->len, &at, "IsTruncated",
             &trunc))
    FUZZ_CHECK(strlen(trunc.ptr) <= trunc.len);
  at = 0;
  if (s3_xml(page->ptr ? page->ptr : "", page->len, &at,
             "NextContinuationToken", &token))
    FUZZ_CHECK(token.ptr[token.len] == '\0');
  buf_free(&contents);
  buf_free(&key);
  buf_free(&size);
  buf_free(&trunc);
  buf_free(&token);
}

/* The offset of the end of the head ("\r\n\r\n" + 4) as the client finds
** it (strstr: the first, before any NUL), or 0. */
static size_t fuzz_head_len(const char *p, size_t n) {
  size_t i;
  for (i = 0; i + 4 <= n; i++) {
    if (p[i] == '\0') return 0;
    if (memcmp(p + i, "\r\n\r\n", 4) == 0) return i + 4;
  }
  return 0;
}

static void fuzz_response(int mode, const size_t *cuts, size_t n_cuts,
                          const char *p, size_t n) {
  static const char *const methods[4] = {"GET", "GET", "HEAD", "PUT"};
  struct s3_client *c = fuzz_client();
  struct s3_call k;
  struct s3_error e;
  struct buf out;
  int sv[2], got_any = 0, keep = 1, rc;
  size_t at = 0, i;
  memset(&out, 0, sizeof(out));
  memset(&k, 0, sizeof(k));
  k.method = methods[mode & 3];
  k.key = (mode & 3) == 1 ? NULL : "g00001/key";
  k.data = "";
  k.out = (mode & 3) <= 1 ? &out : NULL;
  FUZZ_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
  for (i = 0; i <= n_cuts; i++) { /* one packet per piece */
    size_t end = i < n_cuts ? cuts[i] : n;
    while (at < end) {
      size_t len = end - at > FUZZ_PACKET ? FUZZ_PACKET : end - at;
      FUZZ_CHECK(send(sv[1], p + at, len, 0) == (ssize_t)len);
      at += len;
    }
  }
  close(sv[1]); /* the endpoint is done: reads end */
  c->conn = (struct tls_conn *)URSULA_MALLOC(sizeof(*c->conn));
  FUZZ_CHECK(c->conn != NULL);
  memset(c->conn, 0, sizeof(*c->conn));
  c->conn->fd = sv[0];
  rc = s3_read_response(c, &k, &got_any, &keep);
  FUZZ_CHECK(rc == URSULA_OK || rc == URSULA_EIO);
  FUZZ_CHECK(got_any == (n > 0));
  if (rc == URSULA_OK && k.status / 100 == 2 && k.out != NULL &&
      strcmp(k.method, "HEAD") != 0 && k.status != 204) {
    size_t head = fuzz_head_len(p, n);
    struct str te;
    int chunked = s3_header(p, head, "transfer-encoding", &te) &&
                  util_str_ieq(te, "chunked");
    FUZZ_CHECK(head > 0);
    if (chunked) { /* the same decoder, all at once */
      struct http_chunked d;
      struct buf whole;
      int done = 0;
      memset(&d, 0, sizeof(d));
      memset(&whole, 0, sizeof(whole));
      FUZZ_CHECK(http_chunked_feed(&d, p + head, n - head, &whole, &done) >=
                 0);
      FUZZ_CHECK(done);
      FUZZ_CHECK(whole.len == out.len &&
                 (out.len == 0 || memcmp(whole.ptr, out.ptr, out.len) == 0));
      buf_free(&whole);
    } else if (k.has_length) {
      FUZZ_CHECK(out.len == k.content_length);
      FUZZ_CHECK(out.len <= n - head && memcmp(out.ptr, p + head, out.len) == 0);
    } else { /* to the close */
      FUZZ_CHECK(out.len == n - head && !keep);
      FUZZ_CHECK(out.len == 0 || memcmp(out.ptr, p + head, out.len) == 0);
    }
    if (k.out != NULL) fuzz_list_page(&out);
  }
  if (rc == URSULA_OK && k.status / 100 != 2) {
    s3_error_fill(c, &k, &e, NULL);
    FUZZ_CHECK(strlen(e.code) < sizeof(e.code));
    FUZZ_CHECK(strlen(e.message) < sizeof(e.message));
    FUZZ_CHECK(strlen(e.line) < sizeof(e.line));
    fuzz_list_page(&c->body);
  }
  s3_error_fill(c, &k, &e, "transport");
  s3_client_free(c); /* closes sv[0] */
  buf_free(&out);
}

static void fuzz_endpoint(const char *p, size_t n) {
  struct s3_config cfg;
  struct s3_client *c = NULL;
  char err[URSULA_ERRMSG_LEN], *url = (char *)malloc(n + 1);
  int rc;
  FUZZ_CHECK(url != NULL);
  memcpy(url, p, n);
  url[n] = '\0';
  memset(&cfg, 0, sizeof(cfg));
  cfg.endpoint = url;
  cfg.bucket = "bucket";
  cfg.region = "us-east-1";
  cfg.access_key = cfg.secret_key = "k";
  cfg.virtual_host = n > 0 && (p[0] & 1);
  err[0] = '\0';
  rc = s3_client_new(&c, &cfg, err);
  if (rc == URSULA_OK) {
    FUZZ_CHECK(c->host[0] != '\0' && c->port > 0 && c->port <= 65535);
    s3_client_free(c);
  } else {
    FUZZ_CHECK(err[0] != '\0');
  }
  free(url);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t n_cuts, i, n, cuts[FUZZ_MAX_CUTS];
  const char *p;
  int mode;
  if (size < 2) return 0;
  mode = data[0];
  n_cuts = data[1] % (FUZZ_MAX_CUTS + 1);
  if (size < 2 + 2 * n_cuts) return 0;
  p = (const char *)data + 2 + 2 * n_cuts;
  n = size - 2 - 2 * n_cuts;
  if (n > 64 * 1024) return 0; /* the socket's buffer holds it all */
  if ((mode & 7) == 7) {
    fuzz_endpoint(p, n);
    return 0;
  }
  for (i = 0; i < n_cuts; i++)
    cuts[i] = (size_t)fuzz_le(data + 2 + 2 * i, 2, 2) % (n + 1);
  for (i = 1; i < n_cuts; i++) { /* ascending */
    size_t j = i, t = cuts[i];
    while (j > 0 && cuts[j - 1] > t) {
      cuts[j] = cuts[j - 1];
      j--;
    }
    cuts[j] = t;
  }
  {
    char *copy = fuzz_copy(p, n);
    fuzz_response(mode, cuts, n_cuts, copy, n);
    free(copy);
  }
  return 0;
}
