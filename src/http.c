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
** A bare LF is accepted wherever CRLF is (RFC 9112 section 2.2 allows it);
** a CR that is not followed by LF is malformed.  Obsolete line folding
** (a header line starting with SP or HTAB) is malformed.
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

/* request-line.  Every error is reported as soon as the bytes show it. */
static int http_request_line(struct http_cursor *cu, struct http_request *r) {
  static const char version[] = "HTTP/1.";
  size_t start = cu->at, i;
  int rc;
  while (cu->at < cu->len && http_is_tchar((unsigned char)cu->p[cu->at]))
    cu->at++;
  if (cu->at >= cu->len) return URSULA_EAGAIN;
  if (cu->at == start || cu->p[cu->at] != ' ') return HTTP_EMALFORMED;
  r->method.ptr = cu->p + start;
  r->method.len = cu->at - start;
  start = ++cu->at;
  while (cu->at < cu->len && (unsigned char)cu->p[cu->at] > 0x20 &&
         cu->p[cu->at] != 0x7f)
    cu->at++;
  if (cu->at >= cu->len) return URSULA_EAGAIN;
  if (cu->at == start || cu->p[cu->at] != ' ') return HTTP_EMALFORMED;
  r->target.ptr = cu->p + start;
  r->target.len = cu->at - start;
  cu->at++;
  for (i = 0; i < sizeof(version) - 1; i++, cu->at++) {
    if (cu->at >= cu->len) return URSULA_EAGAIN;
    if (cu->p[cu->at] != version[i]) return HTTP_EMALFORMED;
  }
  if (cu->at >= cu->len) return URSULA_EAGAIN;
  if (cu->p[cu->at] != '0' && cu->p[cu->at] != '1') return HTTP_EMALFORMED;
  r->minor_version = cu->p[cu->at++] - '0';
  rc = http_eol(cu);
  if (rc == 0) return HTTP_EMALFORMED;
  return rc < 0 ? rc : URSULA_OK;
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

/* ------------------------------------------------------------ chunked */

/* The decoder's states (RFC 9112 section 7.1):
**
**     chunk      = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
**     last-chunk = 1*"0" [ chunk-ext ] CRLF
**     body       = *chunk last-chunk *( field-line CRLF ) CRLF
*/
enum {
  HTTP_CH_SIZE = 0,     /* reading hex digits of a chunk size */
  HTTP_CH_EXT,          /* after the size: extensions up to the line end */
  HTTP_CH_DATA,         /* `remaining` payload bytes */
  HTTP_CH_DATA_CR,      /* expecting the CR (or LF) after the data */
  HTTP_CH_DATA_LF,      /* expecting the LF after that CR */
  HTTP_CH_SIZE_LF,      /* the size line had a CR: expecting LF */
  HTTP_CH_TRAILER,      /* at the start of a trailer line (or the empty line) */
  HTTP_CH_TRAILER_TEXT, /* inside a trailer line */
  HTTP_CH_END_LF,       /* the final empty line had a CR: expecting LF */
  HTTP_CH_DONE
};

#define HTTP_CH_MAX_LINE 1024 /* bytes of a size or trailer line */

static int http_hex(unsigned char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* The size line ended: go on to the data, or to the trailers. */
static void http_ch_size_done(struct http_chunked *d) {
  d->line_len = 0;
  d->state = d->remaining > 0 ? HTTP_CH_DATA : HTTP_CH_TRAILER;
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
    if (d->state == HTTP_CH_SIZE || d->state == HTTP_CH_EXT ||
        d->state == HTTP_CH_TRAILER_TEXT) {
      if (++d->line_len > HTTP_CH_MAX_LINE) return HTTP_EMALFORMED;
    }
    i++;
    switch (d->state) {
      case HTTP_CH_SIZE:
        x = http_hex(ch);
        if (x >= 0) {
          if (d->remaining >> 60) return HTTP_EMALFORMED; /* > 16 digits */
          d->remaining = d->remaining << 4 | (uint64_t)x;
          break;
        }
        if (d->line_len == 1) return HTTP_EMALFORMED; /* no digit */
        if (ch == ';' || ch == ' ' || ch == '\t')
          d->state = HTTP_CH_EXT;
        else if (ch == '\r')
          d->state = HTTP_CH_SIZE_LF;
        else if (ch == '\n')
          http_ch_size_done(d);
        else
          return HTTP_EMALFORMED;
        break;
      case HTTP_CH_EXT: /* extensions are ignored, control bytes are not */
        if (ch == '\r')
          d->state = HTTP_CH_SIZE_LF;
        else if (ch == '\n')
          http_ch_size_done(d);
        else if (!http_is_vchar(ch))
          return HTTP_EMALFORMED;
        break;
      case HTTP_CH_SIZE_LF:
        if (ch != '\n') return HTTP_EMALFORMED;
        http_ch_size_done(d);
        break;
      case HTTP_CH_DATA_CR:
        if (ch == '\r')
          d->state = HTTP_CH_DATA_LF;
        else if (ch == '\n')
          d->state = HTTP_CH_SIZE;
        else
          return HTTP_EMALFORMED;
        break;
      case HTTP_CH_DATA_LF:
        if (ch != '\n') return HTTP_EMALFORMED;
        d->state = HTTP_CH_SIZE;
        break;
      case HTTP_CH_TRAILER:
        if (ch == '\r') {
          d->state = HTTP_CH_END_LF;
        } else if (ch == '\n') {
          d->state = HTTP_CH_DONE;
        } else {
          d->line_len = 1;
          d->state = HTTP_CH_TRAILER_TEXT;
        }
        break;
      case HTTP_CH_TRAILER_TEXT: /* trailers are read and dropped */
        if (ch == '\n') {
          d->line_len = 0;
          d->state = HTTP_CH_TRAILER;
        } else if (ch != '\r' && !http_is_vchar(ch)) {
          return HTTP_EMALFORMED;
        }
        break;
      case HTTP_CH_END_LF:
        if (ch != '\n') return HTTP_EMALFORMED;
        d->state = HTTP_CH_DONE;
        break;
      default:
        return HTTP_EMALFORMED;
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
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
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
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
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
