/*
** s3.c -- a small blocking S3 client: PUT, GET (with a range), HEAD,
** DELETE and ListObjectsV2, signed with SigV4 (sigv4.c).
**
** One client per thread (the cold tier's threads own one each); it keeps
** one connection alive between requests and opens a new one when the
** server has closed it.
**
** WIRE.  HTTP/1.1 requests, path-style (host/bucket/key) or virtual-host
** (bucket.host/key) addressing:
**
**     PUT /bucket/key HTTP/1.1            GET /bucket?continuation-token=..
**     Host: host[:port]                       &list-type=2&max-keys=N
**     x-amz-date: 20260101T000000Z            &prefix=P HTTP/1.1
**     x-amz-content-sha256: <hex SHA-256 of the body>
**     [x-amz-security-token: T]   [Range: bytes=A-B]
**     Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
**                    Signature=...
**     Content-Length: N
**
** The key goes on the wire percent-encoded once (sigv4_uri_encode, '/'
** kept), and the signature covers exactly those bytes.  Responses are
** read by Content-Length or chunked framing (http_chunked_feed); error
** bodies are S3's XML <Error><Code>..</Code><Message>..</Message>, turned
** into one log line.
**
** RETRIES.  Each attempt has the configured timeout for connecting, for
** sending, and for each read.  Transport errors, 5xx answers and 503
** SlowDown are retried up to max_attempts in all, after 100 ms, 200 ms,
** 400 ms ... (at most 2 s); other answers are final.  A request that
** fails on a kept-alive connection before any answer byte is sent again
** on a new connection at once (the server may have closed it meanwhile).
*/
#include "internal.h"

#define S3_MAX_HEAD 65536 /* bytes of a response head */
/* Bytes of a response body: far above any chunk object or listing page
** ursula asks for; an answer that says or sends more is refused, and
** memory grows only with the bytes that actually arrive. */
#ifndef S3_MAX_BODY
#define S3_MAX_BODY (1024u * 1024 * 1024)
#endif
#define S3_PREALLOC (4u * 1024 * 1024) /* reserved up front at most */

struct s3_client {
  struct s3_config cfg;
  char host[256]; /* to connect to */
  int port;
  int https;
  char host_header[300]; /* Host: and the signed host */
  struct tls_conn *conn; /* kept alive, or NULL */
  struct buf req, body;  /* scratch: the request, an error body */
};

/* One request's inputs and what came back. */
struct s3_call {
  const char *method;
  const char *key;   /* raw; NULL: the bucket itself */
  const char *query; /* on the wire as given (encoded, sorted) */
  const void *data;  /* PUT body */
  size_t len;
  uint64_t range_off, range_len; /* range_len 0: no Range */
  struct buf *out;               /* 2xx body appended here (or NULL) */
  /* results */
  int status;
  uint64_t content_length;
  int has_length;
};

/* ------------------------------------------------------------ setup */

static int s3_parse_endpoint(struct s3_client *c, const char *url, char *err) {
  const char *p = url, *host, *end;
  size_t n;
  if (strncmp(p, "https://", 8) == 0) {
    c->https = 1;
    p += 8;
  } else if (strncmp(p, "http://", 7) == 0) {
    p += 7;
  } else {
    goto bad;
  }
  host = p;
  for (end = p; *end && *end != '/' && *end != ':'; end++) {
  }
  n = (size_t)(end - host);
  if (n == 0 || n >= sizeof(c->host)) goto bad;
  memcpy(c->host, host, n);
  c->host[n] = '\0';
  c->port = c->https ? 443 : 80;
  if (*end == ':') {
    uint64_t port;
    const char *q = end + 1;
    while (*end && *end != '/') end++;
    if (util_parse_u64((struct str){q, (size_t)(end - q)}, 65535, &port) != 0 ||
        port == 0)
      goto bad;
    c->port = (int)port;
  }
  if (*end == '/' && end[1] != '\0') goto bad; /* no path */
  if (c->cfg.virtual_host)
    snprintf(c->host_header, sizeof(c->host_header), "%s.%s", c->cfg.bucket,
             c->host);
  else
    snprintf(c->host_header, sizeof(c->host_header), "%s", c->host);
  if (c->port != (c->https ? 443 : 80)) {
    n = strlen(c->host_header);
    snprintf(c->host_header + n, sizeof(c->host_header) - n, ":%d", c->port);
  }
  return URSULA_OK;
bad:
  snprintf(err, URSULA_ERRMSG_LEN,
           "S3 endpoint \"%.100s\": expected http(s)://HOST[:PORT]", url);
  return URSULA_EINVAL;
}

URSULA_PRIVATE int s3_client_new(struct s3_client **out,
                                 const struct s3_config *cfg, char *err) {
  struct s3_client *c = (struct s3_client *)URSULA_MALLOC(sizeof(*c));
  int rc;
  if (c == NULL) return URSULA_ENOMEM;
  memset(c, 0, sizeof(*c));
  c->cfg = *cfg;
  if (c->cfg.session_token == NULL) c->cfg.session_token = "";
  if (c->cfg.max_attempts < 1) c->cfg.max_attempts = 1;
  if ((rc = s3_parse_endpoint(c, cfg->endpoint, err)) != URSULA_OK) {
    URSULA_FREE(c);
    return rc;
  }
  if (c->https && cfg->anchors == NULL) {
    snprintf(err, URSULA_ERRMSG_LEN,
             URSULA_ENABLE_TLS ? "https endpoint without trust anchors"
                               : "https: this build has no TLS (make TLS=1)");
    URSULA_FREE(c);
    return URSULA_ENOTSUP;
  }
  *out = c;
  return URSULA_OK;
}

URSULA_PRIVATE void s3_client_free(struct s3_client *c) {
  if (c == NULL) return;
  tls_close(c->conn);
  buf_free(&c->req);
  buf_free(&c->body);
  URSULA_FREE(c);
}

/* ------------------------------------------------------------ requests */

/* The request path: "/bucket/key" or "/key" (virtual host), encoded. */
static int s3_path(struct s3_client *c, const char *key, struct buf *out) {
  int rc = URSULA_OK;
  if (!c->cfg.virtual_host) {
    rc |= buf_append(out, "/", 1);
    rc |= sigv4_uri_encode(out, c->cfg.bucket, strlen(c->cfg.bucket), 0);
  }
  if (key != NULL) {
    rc |= buf_append(out, "/", 1);
    rc |= sigv4_uri_encode(out, key, strlen(key), 1);
  } else if (c->cfg.virtual_host) {
    rc |= buf_append(out, "/", 1);
  }
  return rc ? URSULA_ENOMEM : URSULA_OK;
}

/* Build the whole request head of call k into c->req. */
static int s3_build(struct s3_client *c, const struct s3_call *k) {
  struct http_header h[5];
  struct sigv4_request r;
  struct buf path, auth;
  unsigned char d[32];
  char hash[65], date[17], range[64];
  struct env *env = c->cfg.env != NULL ? c->cfg.env : env_real();
  time_t now = (time_t)(env->wall_ms(env) / 1000);
  struct tm tm;
  size_t n = 0, i;
  int rc;
  memset(&path, 0, sizeof(path));
  memset(&auth, 0, sizeof(auth));
  gmtime_r(&now, &tm);
  strftime(date, sizeof(date), "%Y%m%dT%H%M%SZ", &tm);
  crypto_sha256(k->data, k->len, d);
  crypto_hex(d, 32, hash);
  if ((rc = s3_path(c, k->key, &path)) != URSULA_OK) return rc;
  h[n].name = util_str("host");
  h[n++].value = util_str(c->host_header);
  h[n].name = util_str("x-amz-content-sha256");
  h[n++].value = util_str(hash);
  h[n].name = util_str("x-amz-date");
  h[n++].value = util_str(date);
  if (c->cfg.session_token[0]) {
    h[n].name = util_str("x-amz-security-token");
    h[n++].value = util_str(c->cfg.session_token);
  }
  if (k->range_len > 0) {
    if (k->range_len == UINT64_MAX - k->range_off) /* to the end */
      snprintf(range, sizeof(range), "bytes=%llu-",
               (unsigned long long)k->range_off);
    else
      snprintf(range, sizeof(range), "bytes=%llu-%llu",
               (unsigned long long)k->range_off,
               (unsigned long long)(k->range_off + k->range_len - 1));
    h[n].name = util_str("range");
    h[n++].value = util_str(range);
  }
  memset(&r, 0, sizeof(r));
  r.method = util_str(k->method);
  r.path.ptr = path.ptr;
  r.path.len = path.len;
  r.query = util_str(k->query ? k->query : "");
  r.headers = h;
  r.n_headers = n;
  r.payload_hash = util_str(hash);
  r.access_key = util_str(c->cfg.access_key);
  r.secret_key = util_str(c->cfg.secret_key);
  r.region = util_str(c->cfg.region);
  r.service = util_str("s3");
  r.amz_date = util_str(date);
  r.s3 = 1;
  rc = sigv4_sign(&r, &auth, NULL, NULL);
  c->req.len = 0;
  if (rc == URSULA_OK) {
    rc |= buf_printf(&c->req, "%s %.*s%s%s HTTP/1.1\r\n", k->method,
                     (int)path.len, path.ptr, k->query ? "?" : "",
                     k->query ? k->query : "");
    for (i = 0; i < n; i++)
      rc |= buf_printf(&c->req, "%.*s: %.*s\r\n", (int)h[i].name.len,
                       h[i].name.ptr, (int)h[i].value.len, h[i].value.ptr);
    rc |= buf_printf(&c->req,
                     "Authorization: %.*s\r\nContent-Length: %lu\r\n\r\n",
                     (int)auth.len, auth.ptr, (unsigned long)k->len);
  }
  buf_free(&path);
  buf_free(&auth);
  return rc == URSULA_OK ? URSULA_OK : URSULA_ENOMEM;
}

/* ------------------------------------------------------------ responses */

/* Find header `name` in the response head (CRLF lines); its value. */
static int s3_header(const char *head, size_t len, const char *name,
                     struct str *value) {
  size_t i = 0, n = strlen(name);
  while (i < len) {
    size_t end = i;
    struct str line;
    while (end < len && head[end] != '\n') end++;
    line.ptr = head + i;
    line.len = end - i;
    if (line.len > 0 && line.ptr[line.len - 1] == '\r') line.len--;
    if (line.len > n && line.ptr[n] == ':') {
      struct str nm;
      nm.ptr = line.ptr;
      nm.len = n;
      if (util_str_ieq(nm, name)) {
        value->ptr = line.ptr + n + 1;
        value->len = line.len - n - 1;
        *value = util_str_trim(*value);
        return 1;
      }
    }
    i = end + 1;
  }
  return 0;
}

/* Read one response to call k on c->conn.  The body of a 2xx goes to
** k->out, any other to c->body.  URSULA_OK, or URSULA_EIO (transport;
** *got_any says whether any byte came back). */
static int s3_read_response(struct s3_client *c, struct s3_call *k,
                            int *got_any, int *keep) {
  char tmp[16384];
  struct buf head, *dst;
  size_t head_len = 0, base;
  struct str v;
  uint64_t want = 0;
  int chunked = 0, rc = URSULA_EIO, done = 0;
  struct http_chunked ch;
  memset(&head, 0, sizeof(head));
  memset(&ch, 0, sizeof(ch));
  *got_any = 0;
  *keep = 1;
  while (head_len == 0) { /* the head, up to the empty line */
    long n = tls_read(c->conn, tmp, sizeof(tmp));
    char *end;
    if (n <= 0) goto out;
    *got_any = 1;
    if (buf_append(&head, tmp, (size_t)n) != URSULA_OK) goto out;
    buf_append(&head, "", 1);
    head.len--;
    end = strstr(head.ptr, "\r\n\r\n");
    if (end != NULL)
      head_len = (size_t)(end - head.ptr) + 4;
    else if (head.len > S3_MAX_HEAD)
      goto out;
  }
  if (head_len < 12 || strncmp(head.ptr, "HTTP/1.", 7) != 0) goto out;
  k->status = atoi(head.ptr + 9);
  if (s3_header(head.ptr, head_len, "connection", &v) &&
      util_str_ieq(v, "close"))
    *keep = 0;
  k->has_length = s3_header(head.ptr, head_len, "content-length", &v) &&
                  util_parse_u64(v, UINT64_MAX, &k->content_length) == 0;
  chunked = s3_header(head.ptr, head_len, "transfer-encoding", &v) &&
            util_str_ieq(v, "chunked");
  dst = k->status / 100 == 2 && k->out != NULL ? k->out : &c->body;
  c->body.len = 0;
  if (strcmp(k->method, "HEAD") == 0 || k->status == 204 || k->status == 304) {
    rc = URSULA_OK; /* no body */
    goto out;
  }
  if (!chunked && !k->has_length) *keep = 0; /* the body ends at close */
  want = k->has_length ? k->content_length : UINT64_MAX;
  if (k->has_length && !chunked && k->content_length > S3_MAX_BODY) {
    LOG_W("s3: %s %s: the answer's Content-Length (%llu) is above the "
          "limit of %u bytes; refused",
          k->method, k->key ? k->key : "", (unsigned long long)k->content_length,
          (unsigned)S3_MAX_BODY);
    *keep = 0;
    goto out;
  }
  base = dst->len;
  if (k->has_length && !chunked &&
      buf_reserve(dst, (size_t)(k->content_length < S3_PREALLOC
                                    ? k->content_length
                                    : S3_PREALLOC)) != URSULA_OK)
    goto out;
  /* the body bytes that came with the head, then the rest */
  {
    const char *p = head.ptr + head_len;
    size_t n = head.len - head_len;
    for (;;) {
      if (chunked) {
        long used = http_chunked_feed(&ch, p, n, dst, &done);
        if (used < 0) goto out;
      } else {
        if (n > want) n = (size_t)want;
        if (buf_append(dst, p, n) != URSULA_OK) goto out;
        want -= n;
        done = want == 0;
      }
      if (dst->len - base > S3_MAX_BODY) {
        LOG_W("s3: %s %s: the answer's body is above the limit of %u bytes; "
              "refused",
              k->method, k->key ? k->key : "", (unsigned)S3_MAX_BODY);
        *keep = 0;
        goto out;
      }
      if (done) break;
      {
        long got = tls_read(c->conn, tmp, sizeof(tmp));
        if (got == 0 && !chunked && !k->has_length) {
          done = 1; /* read to the close */
          break;
        }
        if (got <= 0) goto out;
        p = tmp;
        n = (size_t)got;
      }
    }
  }
  rc = URSULA_OK;
out:
  buf_free(&head);
  return rc;
}

/* <tag>text</tag> in xml (the first at or after *from), entities
** decoded, into out; advances *from past it.  1 if found. */
static int s3_xml(const char *xml, size_t len, size_t *from, const char *tag,
                  struct buf *out) {
  char open[64], close_[64];
  const char *p, *q, *end = xml + len;
  size_t i;
  snprintf(open, sizeof(open), "<%s>", tag);
  snprintf(close_, sizeof(close_), "</%s>", tag);
  out->len = 0;
  for (p = xml + *from; p + strlen(open) <= end; p++)
    if (memcmp(p, open, strlen(open)) == 0) break;
  if (p + strlen(open) > end) return 0;
  p += strlen(open);
  for (q = p; q + strlen(close_) <= end; q++)
    if (memcmp(q, close_, strlen(close_)) == 0) break;
  if (q + strlen(close_) > end) return 0;
  *from = (size_t)(q - xml) + strlen(close_);
  for (i = 0; p + i < q; i++) {
    static const char *const ent[5][2] = {{"&amp;", "&"},
                                          {"&lt;", "<"},
                                          {"&gt;", ">"},
                                          {"&quot;", "\""},
                                          {"&apos;", "'"}};
    size_t e;
    if (p[i] == '&') {
      for (e = 0; e < 5; e++) {
        size_t n = strlen(ent[e][0]);
        if (p + i + n <= q && memcmp(p + i, ent[e][0], n) == 0) {
          buf_append(out, ent[e][1], 1);
          i += n - 1;
          break;
        }
      }
      if (e < 5) continue;
    }
    buf_append(out, p + i, 1);
  }
  buf_append(out, "", 1);
  out->len--;
  return 1;
}

/* Fill *e from a failed answer (status, and S3's XML error body). */
static void s3_error_fill(struct s3_client *c, const struct s3_call *k,
                          struct s3_error *e, const char *transport) {
  struct buf t;
  size_t at = 0;
  memset(&t, 0, sizeof(t));
  memset(e, 0, sizeof(*e));
  e->status = transport ? 0 : k->status;
  if (!transport &&
      s3_xml(c->body.ptr ? c->body.ptr : "", c->body.len, &at, "Code", &t))
    snprintf(e->code, sizeof(e->code), "%s", t.ptr);
  at = 0;
  if (!transport &&
      s3_xml(c->body.ptr ? c->body.ptr : "", c->body.len, &at, "Message", &t))
    snprintf(e->message, sizeof(e->message), "%s", t.ptr);
  if (transport)
    snprintf(e->line, sizeof(e->line), "%s %.200s: %s", k->method,
             k->key ? k->key : c->cfg.bucket, transport);
  else
    snprintf(e->line, sizeof(e->line), "%s %.200s: %d %s%s%.200s", k->method,
             k->key ? k->key : c->cfg.bucket, k->status,
             e->code[0] ? e->code : http_status_text(k->status),
             e->message[0] ? ": " : "", e->message);
  buf_free(&t);
}

/* Run call k with retries.  URSULA_OK for 2xx; URSULA_ENOTFOUND for a 404
** other than NoSuchBucket; else URSULA_EIO with *e filled. */
static int s3_do(struct s3_client *c, struct s3_call *k, struct s3_error *e) {
  char err[URSULA_ERRMSG_LEN];
  size_t out_len = k->out ? k->out->len : 0;
  int attempt = 0, fresh_retry = 0;
  while (attempt < c->cfg.max_attempts) {
    int rc, got_any = 0, keep = 1, reused = c->conn != NULL;
    err[0] = '\0';
    k->status = 0;
    if (k->out) k->out->len = out_len; /* a retry starts over */
    rc = s3_build(c, k);
    if (rc != URSULA_OK) return rc;
    if (c->conn == NULL) {
      rc =
          tls_connect(&c->conn, c->host, c->port,
                      c->https ? c->cfg.anchors : NULL, c->cfg.timeout_ms, err);
      if (rc == URSULA_ENOTSUP) {
        snprintf(e->line, sizeof(e->line), "%.500s", err);
        return rc;
      }
    }
    if (rc == URSULA_OK &&
        (tls_write_all(c->conn, c->req.ptr, c->req.len) != 0 ||
         (k->len > 0 && tls_write_all(c->conn, k->data, k->len) != 0))) {
      rc = URSULA_EIO;
      snprintf(err, sizeof(err), "sending: %s", strerror(errno));
    }
    if (rc == URSULA_OK) {
      rc = s3_read_response(c, k, &got_any, &keep);
      if (rc != URSULA_OK)
        snprintf(err, sizeof(err), "%s",
                 got_any ? "the answer was cut short or malformed"
                         : "no answer (connection closed or timed out)");
    }
    if (rc != URSULA_OK || !keep) {
      tls_close(c->conn);
      c->conn = NULL;
    }
    if (rc != URSULA_OK && reused && !got_any && !fresh_retry) {
      fresh_retry = 1; /* a kept-alive connection the server had closed */
      continue;
    }
    attempt++;
    if (rc == URSULA_OK && k->status / 100 == 2) return URSULA_OK;
    if (rc == URSULA_OK && k->status == 404) {
      s3_error_fill(c, k, e, NULL); /* a missing key; not a missing bucket */
      return strcmp(e->code, "NoSuchBucket") == 0 ? URSULA_EIO
                                                  : URSULA_ENOTFOUND;
    }
    if (rc == URSULA_OK)
      s3_error_fill(c, k, e, NULL);
    else
      s3_error_fill(c, k, e, err);
    if (rc == URSULA_OK && k->status < 500 &&
        strcmp(e->code, "SlowDown") != 0 &&
        strcmp(e->code, "RequestTimeout") != 0)
      return URSULA_EIO; /* a definite answer: retrying will not help */
    if (attempt < c->cfg.max_attempts) {
      int ms = 100 << (attempt - 1);
      os_sleep_ms((uint64_t)(ms > 2000 ? 2000 : ms));
    }
  }
  return URSULA_EIO;
}

/* ------------------------------------------------------------ operations */

static void s3_call_init(struct s3_call *k, const char *method,
                         const char *key) {
  memset(k, 0, sizeof(*k));
  k->method = method;
  k->key = key;
  k->data = "";
}

URSULA_PRIVATE int s3_put(struct s3_client *c, const char *key, const void *p,
                          size_t n, struct s3_error *e) {
  struct s3_call k;
  s3_call_init(&k, "PUT", key);
  k.data = p;
  k.len = n;
  return s3_do(c, &k, e);
}

URSULA_PRIVATE int s3_get(struct s3_client *c, const char *key, uint64_t off,
                          uint64_t len, struct buf *out, struct s3_error *e) {
  struct s3_call k;
  s3_call_init(&k, "GET", key);
  if (len > 0) {
    k.range_off = off;
    k.range_len = len;
  } else if (off > 0) { /* from off to the end */
    k.range_off = off;
    k.range_len = UINT64_MAX - off;
  }
  k.out = out;
  return s3_do(c, &k, e);
}

URSULA_PRIVATE int s3_head(struct s3_client *c, const char *key, uint64_t *size,
                           struct s3_error *e) {
  struct s3_call k;
  int rc;
  s3_call_init(&k, "HEAD", key);
  rc = s3_do(c, &k, e);
  if (rc == URSULA_OK) *size = k.has_length ? k.content_length : 0;
  return rc;
}

URSULA_PRIVATE int s3_delete(struct s3_client *c, const char *key,
                             struct s3_error *e) {
  struct s3_call k;
  s3_call_init(&k, "DELETE", key);
  return s3_do(c, &k, e);
}

URSULA_PRIVATE int s3_list(struct s3_client *c, const char *prefix,
                           int max_keys,
                           int (*fn)(void *arg, const char *key, uint64_t size),
                           void *arg, struct s3_error *e) {
  struct buf query, page, token, key, size, contents;
  struct s3_call k;
  int rc = URSULA_OK, truncated = 1;
  memset(&query, 0, sizeof(query));
  memset(&page, 0, sizeof(page));
  memset(&token, 0, sizeof(token));
  memset(&key, 0, sizeof(key));
  memset(&size, 0, sizeof(size));
  memset(&contents, 0, sizeof(contents));
  while (rc == URSULA_OK && truncated) {
    size_t at = 0, in;
    /* the parameters in canonical order: sorted, encoded */
    query.len = 0;
    if (token.len > 0) {
      buf_append(&query, "continuation-token=", 19);
      sigv4_uri_encode(&query, token.ptr, token.len, 0);
      buf_append(&query, "&", 1);
    }
    buf_append(&query, "list-type=2", 11);
    if (max_keys > 0) buf_printf(&query, "&max-keys=%d", max_keys);
    buf_append(&query, "&prefix=", 8);
    sigv4_uri_encode(&query, prefix, strlen(prefix), 0);
    buf_append(&query, "", 1);
    s3_call_init(&k, "GET", NULL);
    k.query = query.ptr;
    page.len = 0;
    k.out = &page;
    if ((rc = s3_do(c, &k, e)) != URSULA_OK) break;
    while (rc == URSULA_OK && s3_xml(page.ptr ? page.ptr : "", page.len, &at,
                                     "Contents", &contents)) {
      uint64_t sz = 0;
      in = 0;
      if (!s3_xml(contents.ptr, contents.len, &in, "Key", &key)) continue;
      in = 0;
      if (s3_xml(contents.ptr, contents.len, &in, "Size", &size))
        util_parse_u64(util_str(size.ptr), UINT64_MAX, &sz);
      rc = fn(arg, key.ptr, sz);
    }
    at = 0;
    truncated =
        s3_xml(page.ptr ? page.ptr : "", page.len, &at, "IsTruncated", &key) &&
        strcmp(key.ptr, "true") == 0;
    at = 0;
    if (truncated &&
        !s3_xml(page.ptr, page.len, &at, "NextContinuationToken", &token)) {
      snprintf(e->line, sizeof(e->line),
               "LIST %.200s: truncated page without a continuation token",
               prefix);
      rc = URSULA_EIO;
    }
  }
  buf_free(&query);
  buf_free(&page);
  buf_free(&token);
  buf_free(&key);
  buf_free(&size);
  buf_free(&contents);
  return rc;
}
