/*
** http.c -- HTTP/1.1 request heads and chunked request bodies.
**
** The parsers follow the picohttpparser contract: they never allocate,
** they return views into the caller's buffer, and each call answers one
** of "this many bytes", "need more" (URSULA_EAGAIN) or "malformed".  The
** head parser starts over on every call, so the caller simply calls it
** again when more bytes arrive; heads are small (URSULA_MAX_HEADER_BYTES,
** enforced by the caller), so this costs little and keeps no state.
**
** What a head looks like (RFC 9112, section 2):
**
**     request-line  = method SP request-target SP "HTTP/1." DIGIT CRLF
**     header-line   = field-name ":" OWS field-value OWS CRLF
**     head          = *( CRLF ) request-line *( header-line ) CRLF
**
** A bare LF is accepted wherever CRLF is in the head (RFC 9112 section
** 2.2 allows it); a CR that is not followed by LF is malformed.  Obsolete
** line folding (a header line starting with SP or HTAB) is malformed.
** The request-target may hold only the characters of a URI (RFC 3986
** section 2, less '#': no fragment in a request-target, RFC 9112 section
** 3.2; see http_is_uri_char), and every '%' in it must start a "%"
** HEXDIG HEXDIG escape.  The
** version is "HTTP/" DIGIT "." DIGIT (RFC 9112 section 2.3); a major
** version other than 1 is HTTP_EVERSION (505), and a minor version above
** 1 is taken as 1 (RFC 9110 section 6.2: process a message of a higher
** minor version as the highest minor version one implements).
**
** Past the syntax, what the head means for the connection is decided
** here too, each kind in one function that conn.c calls for every head:
** http_framing() (where the body ends: the table at that function),
** http_authority() (Host and the request-target's form),
** http_keep_alive() and http_expects_continue().  The protocol layer
** gets http_pct_decode() for query parameters and http_if_none_match()
** for conditional reads.
*/
#include "internal.h"

/* ------------------------------------------------------------ characters */

/* tchar (RFC 9110 section 5.6.2): the bytes of a method or field name. */
static int http_is_tchar(unsigned char ch) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
      (ch >= '0' && ch <= '9'))
    return 1;
  return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* A byte allowed inside a field value: visible ASCII, SP, HTAB, obs-text. */
static int http_is_vchar(unsigned char ch) {
  return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

/* A byte of a request-target: those of a URI (RFC 3986 section 2:
** unreserved, reserved less '#', and '%', whose escape is checked
** apart), and the few that WHATWG URL serializers (browsers, and the
** fetch() of the official clients) leave unescaped although RFC 3986 does
** not list them: \ ^ ` { | }.  Never a control, SP, DEL, a byte above
** 0x7F, or " < > #. */
static int http_is_uri_char(unsigned char ch) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
      (ch >= '0' && ch <= '9'))
    return 1;
  return ch != '\0' && strchr("-._~:/?[]@!$&'()*+,;=%\\^`{|}", ch) != NULL;
}

static int http_hex(unsigned char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* 1 if every '%' of s starts "%" HEXDIG HEXDIG (RFC 3986 section 2.1). */
static int http_pct_ok(struct str s) {
  size_t i;
  for (i = 0; i < s.len; i++) {
    if (s.ptr[i] != '%') continue;
    if (i + 2 >= s.len || http_hex((unsigned char)s.ptr[i + 1]) < 0 ||
        http_hex((unsigned char)s.ptr[i + 2]) < 0)
      return 0;
    i += 2;
  }
  return 1;
}

/* ------------------------------------------------------------ the head */

/* A cursor over the head being parsed. */
struct http_cursor {
  const char *p;
  size_t len;
  size_t at;
};

/* Consume a line end at the cursor.  Returns 1 if one was consumed, 0 if
** the byte there is something else, URSULA_EAGAIN if the input ends
** inside it, HTTP_EMALFORMED for a CR without LF. */
static int http_eol(struct http_cursor *cu) {
  if (cu->at >= cu->len) return URSULA_EAGAIN;
  if (cu->p[cu->at] == '\n') {
    cu->at++;
    return 1;
  }
  if (cu->p[cu->at] != '\r') return 0;
  if (cu->at + 1 >= cu->len) return URSULA_EAGAIN;
  if (cu->p[cu->at + 1] != '\n') return HTTP_EMALFORMED;
  cu->at += 2;
  return 1;
}

/* request-line.  Every error is reported as soon as the bytes show it,
** but HTTP_EVERSION only once the line is complete. */
static int http_request_line(struct http_cursor *cu, struct http_request *r) {
  static const char name[] = "HTTP/";
  size_t start = cu->at, i;
  int rc, major, minor;
  while (cu->at < cu->len && http_is_tchar((unsigned char)cu->p[cu->at]))
    cu->at++;
  if (cu->at >= cu->len) return URSULA_EAGAIN;
  if (cu->at == start || cu->p[cu->at] != ' ') return HTTP_EMALFORMED;
  r->method.ptr = cu->p + start;
  r->method.len = cu->at - start;
  start = ++cu->at;
  while (cu->at < cu->len && http_is_uri_char((unsigned char)cu->p[cu->at]))
    cu->at++;
  if (cu->at >= cu->len) return URSULA_EAGAIN;
  if (cu->at == start || cu->p[cu->at] != ' ') return HTTP_EMALFORMED;
  r->target.ptr = cu->p + start;
  r->target.len = cu->at - start;
  if (!http_pct_ok(r->target)) return HTTP_EMALFORMED;
  cu->at++;
  for (i = 0; i < sizeof(name) - 1; i++, cu->at++) {
    if (cu->at >= cu->len) return URSULA_EAGAIN;
    if (cu->p[cu->at] != name[i]) return HTTP_EMALFORMED;
  }
  for (i = 0; i < 3; i++) { /* DIGIT "." DIGIT */
    char ch;
    if (cu->at + i >= cu->len) return URSULA_EAGAIN;
    ch = cu->p[cu->at + i];
    if (i == 1 ? ch != '.' : (ch < '0' || ch > '9')) return HTTP_EMALFORMED;
  }
  major = cu->p[cu->at] - '0';
  minor = cu->p[cu->at + 2] - '0';
  cu->at += 3;
  rc = http_eol(cu);
  if (rc == 0) return HTTP_EMALFORMED;
  if (rc < 0) return rc;
  if (major != 1) return HTTP_EVERSION;
  r->minor_version = minor > 1 ? 1 : minor;
  return URSULA_OK;
}

/* One header line, or the empty line that ends the head (*end = 1). */
static int http_header_line(struct http_cursor *cu, struct http_request *r,
                            int *end) {
  size_t start = cu->at;
  struct http_header *h;
  struct str v;
  int rc = http_eol(cu);
  if (rc != 0) {
    *end = rc == 1;
    return rc < 0 ? rc : URSULA_OK;
  }
  while (cu->at < cu->len && http_is_tchar((unsigned char)cu->p[cu->at]))
    cu->at++;
  if (cu->at >= cu->len) return URSULA_EAGAIN;
  /* an empty name, a blank before ':' or a folded line are all malformed */
  if (cu->at == start || cu->p[cu->at] != ':') return HTTP_EMALFORMED;
  if (r->n_headers == URSULA_MAX_HEADERS) return HTTP_ETOOMANY;
  h = &r->headers[r->n_headers];
  h->name.ptr = cu->p + start;
  h->name.len = cu->at - start;
  start = ++cu->at;
  while (cu->at < cu->len && http_is_vchar((unsigned char)cu->p[cu->at]))
    cu->at++;
  if (cu->at >= cu->len) return URSULA_EAGAIN;
  v.ptr = cu->p + start;
  v.len = cu->at - start;
  rc = http_eol(cu);
  if (rc == 0) return HTTP_EMALFORMED; /* a control byte in the value */
  if (rc < 0) return rc;
  h->value = util_str_trim(v);
  r->n_headers++;
  *end = 0;
  return URSULA_OK;
}

URSULA_PRIVATE int http_parse_request(const char *buf, size_t len,
                                      struct http_request *req) {
  struct http_cursor cu;
  struct http_request r;
  int rc, end = 0;
  cu.p = buf;
  cu.len = len;
  cu.at = 0;
  r.n_headers = 0;
  r.host.ptr = "";
  r.host.len = 0;
  for (;;) { /* skip empty lines before the request line */
    rc = http_eol(&cu);
    if (rc < 0) return rc;
    if (rc == 0) break;
  }
  rc = http_request_line(&cu, &r);
  while (rc == URSULA_OK && !end) rc = http_header_line(&cu, &r, &end);
  if (rc != URSULA_OK) return rc;
  if (cu.at > INT_MAX) return HTTP_EMALFORMED;
  *req = r;
  return (int)cu.at;
}

URSULA_PRIVATE const struct http_header *http_find_header(
    const struct http_request *req, const char *name) {
  size_t i;
  for (i = 0; i < req->n_headers; i++)
    if (util_str_ieq(req->headers[i].name, name)) return &req->headers[i];
  return NULL;
}

/* ------------------------------------------------------------ lists */

URSULA_PRIVATE size_t http_count_fields(const struct http_request *req,
                                        const char *name) {
  size_t i, n = 0;
  for (i = 0; i < req->n_headers; i++)
    if (util_str_ieq(req->headers[i].name, name)) n++;
  return n;
}

URSULA_PRIVATE int http_list_next(const struct http_request *req,
                                  const char *name, struct http_list *it,
                                  struct str *member) {
  for (;;) {
    size_t k;
    if (!it->in_line) { /* the next field line of that name */
      while (it->line < req->n_headers &&
             !util_str_ieq(req->headers[it->line].name, name))
        it->line++;
      if (it->line == req->n_headers) return 0;
      it->rest = req->headers[it->line++].value;
      it->in_line = 1;
    }
    for (k = 0; k < it->rest.len && it->rest.ptr[k] != ','; k++) {
    }
    member->ptr = it->rest.ptr;
    member->len = k;
    *member = util_str_trim(*member);
    if (k == it->rest.len) {
      it->in_line = 0;
    } else {
      it->rest.ptr += k + 1;
      it->rest.len -= k + 1;
    }
    if (member->len > 0) return 1; /* empty members are skipped */
  }
}

/* 1 if s is a token (RFC 9110 section 5.6.2). */
static int http_is_token(struct str s) {
  size_t i;
  if (s.len == 0) return 0;
  for (i = 0; i < s.len; i++)
    if (!http_is_tchar((unsigned char)s.ptr[i])) return 0;
  return 1;
}

/* ------------------------------------------------------------ framing */

/* Where a request's body ends (RFC 9112 section 6.3), decided here and
** nowhere else.  TE is every Transfer-Encoding field line of the request
** read as one list (RFC 9110 section 5.3), CL every Content-Length line.
**
**   TE        CL          version  verdict
**   --------  ----------  -------  -------------------------------------
**   absent    absent      any      no body (6.3 rule 7)
**   absent    one line,   any      exactly that many bytes (6.3 rule 6)
**             1*DIGIT
**   absent    one line,   any      400 + close (6.3 rule 5).  This covers
**             not 1*DIGIT          "+5", "-1", "0x5", "5 5", "", a value
**                                  over 2^64 - 1, and any list: "5, 5"
**                                  too, which RFC 9110 section 8.6 lets a
**                                  recipient take as 5 or refuse; ursula
**                                  refuses it (a front end that took it
**                                  differently is the smuggling risk)
**   absent    2+ lines    any      400 + close: the lines form a list, as
**                                  above, whether or not they agree
**   present   present     any      400 + close (6.1: "MAY reject ...
**                                  MUST close"; 6.3 rule 3: "ought to be
**                                  handled as an error")
**   present   absent      1.0      400 + close (6.1: an HTTP/1.0 message
**                                  with Transfer-Encoding has faulty
**                                  framing)
**   present   absent      1.1      by the list of codings, empty members
**                                  skipped (RFC 9110 section 5.6.1):
**     exactly "chunked" (any case, 6.1)        chunked (6.3 rule 4)
**     a member that is not a bare token        400 + close (parameters
**       ("chunked;x=1", "a b")                  are not ours to guess)
**     no member, or chunked not the last       400 + close (6.3 rule 4:
**       ("", "gzip", "chunked, gzip")           the length cannot be
**                                               determined)
**     chunked more than once                   400 + close (7.1: chunked
**       ("chunked, chunked")                    is applied only once)
**     another coding before a final chunked    501 + close (6.1: a
**       ("gzip, chunked")                       coding we do not know)
**
** "+ close": the caller answers and closes the connection without reading
** anything more of it, so nothing after an ambiguous head can ever be
** taken for the next request. */
URSULA_PRIVATE int http_framing(const struct http_request *req,
                                struct http_framing *f, const char **reason) {
  size_t n_cl = http_count_fields(req, "Content-Length");
  f->kind = HTTP_BODY_NONE;
  f->length = 0;
  if (http_count_fields(req, "Transfer-Encoding") > 0) {
    struct http_list it;
    struct str m;
    size_t n = 0, n_chunked = 0;
    int last_chunked = 0;
    if (n_cl > 0) {
      *reason = "Content-Length and Transfer-Encoding together";
      return 400;
    }
    if (req->minor_version == 0) {
      *reason = "Transfer-Encoding in an HTTP/1.0 request";
      return 400;
    }
    memset(&it, 0, sizeof(it));
    while (http_list_next(req, "Transfer-Encoding", &it, &m)) {
      if (!http_is_token(m)) {
        *reason = "malformed Transfer-Encoding";
        return 400;
      }
      n++;
      last_chunked = util_str_ieq(m, "chunked");
      if (last_chunked) n_chunked++;
    }
    if (!last_chunked) {
      *reason = "chunked is not the final transfer coding";
      return 400;
    }
    if (n_chunked > 1) {
      *reason = "chunked is applied more than once";
      return 400;
    }
    if (n > 1) {
      *reason = "only the chunked transfer coding is supported";
      return 501;
    }
    f->kind = HTTP_BODY_CHUNKED;
    return 0;
  }
  if (n_cl > 1) {
    *reason = "more than one Content-Length";
    return 400;
  }
  if (n_cl == 1) {
    if (util_parse_u64(http_find_header(req, "Content-Length")->value,
                       UINT64_MAX, &f->length) != 0) {
      *reason = "malformed Content-Length";
      return 400;
    }
    f->kind = HTTP_BODY_LENGTH;
  }
  return 0;
}

/* ------------------------------------------------------------ authority */

/* dec-octet "." dec-octet "." dec-octet "." dec-octet (RFC 3986 3.2.2):
** each 0..255, without leading zeros. */
static int http_ipv4_ok(const char *p, size_t n) {
  size_t i = 0;
  int parts;
  for (parts = 0; parts < 4; parts++) {
    size_t start = i;
    unsigned v = 0;
    if (parts > 0) {
      if (i >= n || p[i] != '.') return 0;
      start = ++i;
    }
    while (i < n && p[i] >= '0' && p[i] <= '9' && i - start < 3)
      v = v * 10 + (unsigned)(p[i++] - '0');
    if (i == start || v > 255 || (i - start > 1 && p[start] == '0')) return 0;
  }
  return i == n;
}

/* IPv6address (RFC 3986 section 3.2.2): eight 16-bit pieces of 1 to 4
** hex digits separated by ':', the last two of which may be an IPv4
** address; one "::" may stand for one or more pieces of zeros. */
static int http_ipv6_ok(const char *p, size_t n) {
  size_t i = 0;
  int pieces = 0, elided = 0;
  if (n >= 2 && p[0] == ':' && p[1] == ':') {
    elided = 1;
    i = 2;
  }
  while (i < n) {
    size_t start = i;
    while (i < n && http_hex((unsigned char)p[i]) >= 0) i++;
    if (i < n && p[i] == '.') { /* the embedded IPv4 address ends it */
      if (!http_ipv4_ok(p + start, n - start)) return 0;
      pieces += 2;
      i = n;
      break;
    }
    if (i == start || i - start > 4) return 0;
    pieces++;
    if (i == n) break;
    if (p[i++] != ':') return 0;
    if (i < n && p[i] == ':') {
      if (elided) return 0;
      elided = 1;
      i++;
    } else if (i == n) {
      return 0; /* a single ':' at the end */
    }
  }
  return elided ? pieces <= 7 : pieces == 8;
}

/* unreserved / sub-delims (RFC 3986 section 2). */
static int http_is_unreserved_or_sub(unsigned char ch) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
      (ch >= '0' && ch <= '9'))
    return 1;
  return ch != '\0' && strchr("-._~!$&'()*+,;=", ch) != NULL;
}

URSULA_PRIVATE int http_host_ok(struct str h) {
  size_t i = 0;
  if (h.len == 0) return 0;
  if (h.ptr[0] == '[') { /* IP-literal = "[" ( IPv6address / IPvFuture ) "]" */
    const char *end = (const char *)memchr(h.ptr, ']', h.len);
    size_t n;
    if (end == NULL) return 0;
    n = (size_t)(end - h.ptr) - 1;
    if (n > 0 && (h.ptr[1] == 'v' || h.ptr[1] == 'V')) {
      /* IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" ) */
      size_t k = 2;
      while (k <= n && http_hex((unsigned char)h.ptr[k]) >= 0) k++;
      if (k == 2 || k > n || h.ptr[k] != '.' || k == n) return 0;
      for (k++; k <= n; k++)
        if (!http_is_unreserved_or_sub((unsigned char)h.ptr[k]) &&
            h.ptr[k] != ':')
          return 0;
    } else if (!http_ipv6_ok(h.ptr + 1, n)) {
      return 0;
    }
    i = n + 2;
  } else { /* reg-name = *( unreserved / pct-encoded / sub-delims ) */
    struct str name;
    while (i < h.len && h.ptr[i] != ':') {
      if (!http_is_unreserved_or_sub((unsigned char)h.ptr[i]) &&
          h.ptr[i] != '%')
        return 0;
      i++;
    }
    name.ptr = h.ptr;
    name.len = i;
    if (i == 0 || !http_pct_ok(name)) return 0; /* empty: RFC 9110 4.2.1 */
  }
  if (i == h.len) return 1;
  if (h.ptr[i] != ':') return 0;
  if (++i == h.len) return 1; /* an empty port (RFC 3986 section 3.2.3) */
  {
    struct str port;
    uint64_t v;
    port.ptr = h.ptr + i;
    port.len = h.len - i;
    return util_parse_u64(port, 65535, &v) == 0;
  }
}

URSULA_PRIVATE int http_authority(struct http_request *req,
                                  const char **reason) {
  size_t n = http_count_fields(req, "Host");
  struct str t = req->target;
  size_t skip = 0;
  if (n > 1) {
    *reason = "more than one Host field";
    return 400;
  }
  if (n == 0 && req->minor_version >= 1) {
    *reason = "an HTTP/1.1 request needs a Host field";
    return 400;
  }
  req->host.ptr = "";
  req->host.len = 0;
  if (n == 1) {
    req->host = http_find_header(req, "Host")->value;
    if (!http_host_ok(req->host)) {
      *reason = "malformed Host";
      return 400;
    }
  }
  /* absolute-form: "http://" authority path-abempty [ "?" query ] */
  if (t.len >= 7 && util_str_ieq((struct str){t.ptr, 7}, "http://"))
    skip = 7;
  else if (t.len >= 8 && util_str_ieq((struct str){t.ptr, 8}, "https://"))
    skip = 8;
  if (skip > 0) {
    struct str auth;
    size_t k = skip;
    while (k < t.len && t.ptr[k] != '/' && t.ptr[k] != '?') k++;
    auth.ptr = t.ptr + skip;
    auth.len = k - skip;
    if (!http_host_ok(auth)) { /* userinfo ('@') is refused here too */
      *reason = "malformed authority in the request-target";
      return 400;
    }
    req->host = auth;
    req->target.ptr = k < t.len ? t.ptr + k : "/";
    req->target.len = k < t.len ? t.len - k : 1;
  }
  return 0;
}

/* ------------------------------------------------------------ connection */

URSULA_PRIVATE int http_keep_alive(const struct http_request *req) {
  struct http_list it;
  struct str m;
  int has_close = 0, has_keep = 0;
  memset(&it, 0, sizeof(it));
  while (http_list_next(req, "Connection", &it, &m)) {
    if (util_str_ieq(m, "close")) has_close = 1;
    if (util_str_ieq(m, "keep-alive")) has_keep = 1;
  }
  if (has_close) return 0;
  return req->minor_version >= 1 || has_keep;
}

URSULA_PRIVATE int http_expects_continue(const struct http_request *req) {
  struct http_list it;
  struct str m;
  if (req->minor_version == 0) return 0;
  memset(&it, 0, sizeof(it));
  while (http_list_next(req, "Expect", &it, &m))
    if (util_str_ieq(m, "100-continue")) return 1;
  return 0;
}

/* ------------------------------------------------------------ query */

URSULA_PRIVATE int http_pct_decode(struct str in, char *out, size_t cap,
                                   size_t *out_len) {
  size_t i, n = 0;
  int fits = 1;
  for (i = 0; i < in.len; i++) {
    unsigned char ch = (unsigned char)in.ptr[i];
    if (ch == '%') {
      int hi, lo;
      if (i + 2 >= in.len) return HTTP_EMALFORMED;
      hi = http_hex((unsigned char)in.ptr[i + 1]);
      lo = http_hex((unsigned char)in.ptr[i + 2]);
      if (hi < 0 || lo < 0) return HTTP_EMALFORMED;
      ch = (unsigned char)(hi << 4 | lo);
      i += 2;
    }
    if (n < cap)
      out[n++] = (char)ch;
    else
      fits = 0;
  }
  *out_len = n;
  return fits ? URSULA_OK : URSULA_ETOOBIG;
}

/* ------------------------------------------------------------ validators */

/* The opaque-tag of an entity-tag at p[*i..n) (RFC 9110 section 8.8.3:
** [ "W/" ] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text):
** its bytes, quotes included, in *tag; *i moves past it.  0, or -1 if
** there is no entity-tag there. */
static int http_etag_at(const char *p, size_t n, size_t *i, struct str *tag) {
  size_t k = *i;
  if (k + 1 < n && p[k] == 'W' && p[k + 1] == '/') k += 2;
  if (k >= n || p[k] != '"') return -1;
  tag->ptr = p + k;
  for (k++; k < n && p[k] != '"'; k++) {
    unsigned char ch = (unsigned char)p[k];
    if (ch < 0x21 || ch == 0x7f) return -1;
  }
  if (k >= n) return -1;
  tag->len = (size_t)(p + k + 1 - tag->ptr);
  *i = k + 1;
  return 0;
}

URSULA_PRIVATE int http_if_none_match(struct str field, struct str etag) {
  struct str mine, t;
  size_t i = 0, members = 0;
  int match = 0, have = http_etag_at(etag.ptr, etag.len, &i, &mine) == 0;
  field = util_str_trim(field);
  if (util_str_eq(field, "*")) return 1;
  i = 0;
  for (;;) { /* #entity-tag: OWS and empty members around each */
    while (i < field.len && (field.ptr[i] == ' ' || field.ptr[i] == '\t' ||
                             field.ptr[i] == ','))
      i++;
    if (i == field.len) break;
    if (http_etag_at(field.ptr, field.len, &i, &t) != 0) return -1;
    members++;
    if (have && t.len == mine.len && memcmp(t.ptr, mine.ptr, t.len) == 0)
      match = 1;
    while (i < field.len && (field.ptr[i] == ' ' || field.ptr[i] == '\t')) i++;
    if (i < field.len && field.ptr[i] != ',') return -1;
  }
  return members == 0 ? -1 : match;
}

/* ------------------------------------------------------------ chunked */

/* The decoder's states (RFC 9112 section 7.1, with RFC 9110 section 5.6
** for tokens, quoted strings and BWS):
**
**     chunked-body = *chunk last-chunk trailer-section CRLF
**     chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
**     last-chunk   = 1*("0") [ chunk-ext ] CRLF
**     chunk-ext    = *( BWS ";" BWS chunk-ext-name
**                       [ BWS "=" BWS chunk-ext-val ] )
**     chunk-ext-val = token / quoted-string
**     trailer-section = *( field-line CRLF )
**
** The framing of a body is where a front end and this server could
** disagree about where a request ends, so nothing outside the grammar is
** accepted: every line ends in CRLF (no bare LF, unlike the head), BWS
** only where the grammar puts it ("5 \r\n" and "5;\r\n" are malformed),
** extensions are checked (and then ignored), trailer lines are field
** lines (and then dropped: a trailer never changes the framing or the
** request).
*/
enum {
  HTTP_CH_SIZE = 0,      /* hex digits of a chunk size */
  HTTP_CH_WS_SEMI,       /* BWS that must lead to ';' */
  HTTP_CH_EXT_NAME0,     /* after ';': BWS, then a name */
  HTTP_CH_EXT_NAME,      /* inside an extension name */
  HTTP_CH_EXT_NAME_WS,   /* BWS after a name: then '=' or ';' */
  HTTP_CH_EXT_VAL0,      /* after '=': BWS, then a token or a quote */
  HTTP_CH_EXT_TOKEN,     /* inside a token value */
  HTTP_CH_EXT_QUOTED,    /* inside a quoted-string value */
  HTTP_CH_EXT_QESC,      /* after a backslash in one */
  HTTP_CH_EXT_QEND,      /* after the closing quote */
  HTTP_CH_SIZE_LF,       /* the size line had its CR: expecting LF */
  HTTP_CH_DATA,          /* `remaining` payload bytes */
  HTTP_CH_DATA_CR,       /* expecting the CR after the data */
  HTTP_CH_DATA_LF,       /* expecting the LF after that CR */
  HTTP_CH_TRAILER,       /* at the start of a trailer line or the end */
  HTTP_CH_TRAILER_NAME,  /* inside a trailer field name */
  HTTP_CH_TRAILER_VALUE, /* after its ':' */
  HTTP_CH_TRAILER_LF,    /* a trailer line had its CR: expecting LF */
  HTTP_CH_END_LF,        /* the final empty line had its CR */
  HTTP_CH_DONE
};

#define HTTP_CH_MAX_LINE 1024 /* bytes of a size or trailer line */

/* The size line ended: go on to the data, or to the trailers. */
static void http_ch_size_done(struct http_chunked *d) {
  d->line_len = 0;
  d->state = d->remaining > 0 ? HTTP_CH_DATA : HTTP_CH_TRAILER;
}

/* The next state of the size line's extensions after byte ch, or -1 if ch
** is malformed there (qdtext and quoted-pair of RFC 9110 section 5.6.4). */
static int http_ch_ext(int state, unsigned char ch) {
  int ws = ch == ' ' || ch == '\t';
  switch (state) {
    case HTTP_CH_WS_SEMI:
      return ws ? state : ch == ';' ? HTTP_CH_EXT_NAME0 : -1;
    case HTTP_CH_EXT_NAME0:
      return ws ? state : http_is_tchar(ch) ? HTTP_CH_EXT_NAME : -1;
    case HTTP_CH_EXT_NAME:
      if (http_is_tchar(ch)) return state;
      if (ws) return HTTP_CH_EXT_NAME_WS;
      if (ch == '=') return HTTP_CH_EXT_VAL0;
      if (ch == ';') return HTTP_CH_EXT_NAME0;
      return ch == '\r' ? HTTP_CH_SIZE_LF : -1;
    case HTTP_CH_EXT_NAME_WS:
      if (ws) return state;
      if (ch == '=') return HTTP_CH_EXT_VAL0;
      return ch == ';' ? HTTP_CH_EXT_NAME0 : -1;
    case HTTP_CH_EXT_VAL0:
      if (ws) return state;
      if (ch == '"') return HTTP_CH_EXT_QUOTED;
      return http_is_tchar(ch) ? HTTP_CH_EXT_TOKEN : -1;
    case HTTP_CH_EXT_TOKEN:
      if (http_is_tchar(ch)) return state;
      if (ws) return HTTP_CH_WS_SEMI;
      if (ch == ';') return HTTP_CH_EXT_NAME0;
      return ch == '\r' ? HTTP_CH_SIZE_LF : -1;
    case HTTP_CH_EXT_QUOTED:
      if (ch == '"') return HTTP_CH_EXT_QEND;
      if (ch == '\\') return HTTP_CH_EXT_QESC;
      return http_is_vchar(ch) ? state : -1;
    case HTTP_CH_EXT_QESC:
      return http_is_vchar(ch) ? HTTP_CH_EXT_QUOTED : -1;
    case HTTP_CH_EXT_QEND:
      if (ws) return HTTP_CH_WS_SEMI;
      if (ch == ';') return HTTP_CH_EXT_NAME0;
      return ch == '\r' ? HTTP_CH_SIZE_LF : -1;
    default:
      return -1;
  }
}

URSULA_PRIVATE long http_chunked_feed(struct http_chunked *d, const char *in,
                                      size_t len, struct buf *body, int *done) {
  size_t i = 0;
  *done = d->state == HTTP_CH_DONE;
  while (i < len && d->state != HTTP_CH_DONE) {
    unsigned char ch = (unsigned char)in[i];
    int x;
    if (d->state == HTTP_CH_DATA) {
      size_t n = len - i;
      if ((uint64_t)n > d->remaining) n = (size_t)d->remaining;
      if (buf_append(body, in + i, n) != URSULA_OK) return URSULA_ENOMEM;
      i += n;
      d->remaining -= n;
      if (d->remaining == 0) d->state = HTTP_CH_DATA_CR;
      continue;
    }
    if (d->state != HTTP_CH_DATA_CR && d->state != HTTP_CH_DATA_LF) {
      if (++d->line_len > HTTP_CH_MAX_LINE) return HTTP_EMALFORMED;
    }
    i++;
    switch (d->state) {
      case HTTP_CH_SIZE:
        x = http_hex(ch);
        if (x >= 0) {
          if (d->remaining >> 60) return HTTP_EMALFORMED; /* > 2^64 - 1 */
          d->remaining = d->remaining << 4 | (uint64_t)x;
          break;
        }
        if (d->line_len == 1) return HTTP_EMALFORMED; /* no digit */
        if (ch == ';')
          d->state = HTTP_CH_EXT_NAME0;
        else if (ch == ' ' || ch == '\t')
          d->state = HTTP_CH_WS_SEMI;
        else if (ch == '\r')
          d->state = HTTP_CH_SIZE_LF;
        else
          return HTTP_EMALFORMED;
        break;
      case HTTP_CH_SIZE_LF:
        if (ch != '\n') return HTTP_EMALFORMED;
        http_ch_size_done(d);
        break;
      case HTTP_CH_DATA_CR:
        if (ch != '\r') return HTTP_EMALFORMED;
        d->state = HTTP_CH_DATA_LF;
        break;
      case HTTP_CH_DATA_LF:
        if (ch != '\n') return HTTP_EMALFORMED;
        d->state = HTTP_CH_SIZE;
        d->line_len = 0;
        break;
      case HTTP_CH_TRAILER:
        if (ch == '\r')
          d->state = HTTP_CH_END_LF;
        else if (http_is_tchar(ch))
          d->state = HTTP_CH_TRAILER_NAME;
        else
          return HTTP_EMALFORMED; /* bare LF, obs-fold, junk */
        break;
      case HTTP_CH_TRAILER_NAME:
        if (ch == ':')
          d->state = HTTP_CH_TRAILER_VALUE;
        else if (!http_is_tchar(ch))
          return HTTP_EMALFORMED;
        break;
      case HTTP_CH_TRAILER_VALUE: /* trailers are read and dropped */
        if (ch == '\r')
          d->state = HTTP_CH_TRAILER_LF;
        else if (!http_is_vchar(ch))
          return HTTP_EMALFORMED;
        break;
      case HTTP_CH_TRAILER_LF:
        if (ch != '\n') return HTTP_EMALFORMED;
        d->line_len = 0;
        d->state = HTTP_CH_TRAILER;
        break;
      case HTTP_CH_END_LF:
        if (ch != '\n') return HTTP_EMALFORMED;
        d->state = HTTP_CH_DONE;
        break;
      default:
        x = http_ch_ext(d->state, ch);
        if (x < 0) return HTTP_EMALFORMED;
        d->state = x;
        break;
    }
  }
  *done = d->state == HTTP_CH_DONE;
  return (long)i;
}

/* ------------------------------------------------------------ statuses */

URSULA_PRIVATE const char *http_status_text(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Range Not Satisfiable";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}
