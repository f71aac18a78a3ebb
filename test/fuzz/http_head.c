/*
** http_head.c -- fuzz http_parse_request(), the request head parser.
**
** Input: 2 bytes (little-endian) that pick a split point, then the bytes a
** client sent.  Properties:
**   - the result is a head length in (0, len], URSULA_EAGAIN,
**     HTTP_EMALFORMED, HTTP_ETOOMANY or HTTP_EVERSION (a major version
**     other than 1: 505);
**   - a parsed head's views lie inside it, method and names are non-empty,
**     values carry no blank at either end, the version is 1.0 or 1.1;
**   - the head is self-delimiting: the parse of its own bytes alone is
**     the same;
**   - split inputs agree with whole ones: the bytes before the split (what
**     conn.c holds after a first read) parse to URSULA_EAGAIN or to
**     exactly what the whole input parses to (conn.c parses again from
**     the start when more bytes come).
*/
#include "../../ursula.c"
#include "fuzz.h"

/* The same request, views compared by offset from each buffer. */
static void fuzz_same_request(const char *a, const struct http_request *ra,
                              const char *b, const struct http_request *rb) {
  size_t i;
  FUZZ_CHECK(ra->method.ptr - a == rb->method.ptr - b);
  FUZZ_CHECK(ra->method.len == rb->method.len);
  FUZZ_CHECK(ra->target.ptr - a == rb->target.ptr - b);
  FUZZ_CHECK(ra->target.len == rb->target.len);
  FUZZ_CHECK(ra->minor_version == rb->minor_version);
  FUZZ_CHECK(ra->n_headers == rb->n_headers);
  for (i = 0; i < ra->n_headers; i++) {
    const struct http_header *x = &ra->headers[i], *y = &rb->headers[i];
    FUZZ_CHECK(x->name.ptr - a == y->name.ptr - b);
    FUZZ_CHECK(x->name.len == y->name.len);
    FUZZ_CHECK(x->value.ptr - a == y->value.ptr - b);
    FUZZ_CHECK(x->value.len == y->value.len);
  }
}

static int fuzz_inside(const char *buf, size_t len, struct str s) {
  return s.ptr >= buf && s.len <= len && (size_t)(s.ptr - buf) <= len - s.len;
}

static void fuzz_check_request(const char *buf, size_t len,
                               const struct http_request *r) {
  size_t i;
  FUZZ_CHECK(fuzz_inside(buf, len, r->method) && r->method.len > 0);
  FUZZ_CHECK(fuzz_inside(buf, len, r->target) && r->target.len > 0);
  FUZZ_CHECK(r->minor_version == 0 || r->minor_version == 1);
  FUZZ_CHECK(r->n_headers <= URSULA_MAX_HEADERS);
  for (i = 0; i < r->target.len; i++)
    FUZZ_CHECK((unsigned char)r->target.ptr[i] > 0x20 &&
               r->target.ptr[i] != 0x7f);
  for (i = 0; i < r->n_headers; i++) {
    const struct http_header *h = &r->headers[i];
    FUZZ_CHECK(fuzz_inside(buf, len, h->name) && h->name.len > 0);
    FUZZ_CHECK(fuzz_inside(buf, len, h->value));
    FUZZ_CHECK(memchr(h->name.ptr, ':', h->name.len) == NULL);
    if (h->value.len > 0) {
      char first = h->value.ptr[0], last = h->value.ptr[h->value.len - 1];
      FUZZ_CHECK(first != ' ' && first != '\t' && last != ' ' && last != '\t');
      FUZZ_CHECK(memchr(h->value.ptr, '\r', h->value.len) == NULL);
      FUZZ_CHECK(memchr(h->value.ptr, '\n', h->value.len) == NULL);
    }
    FUZZ_CHECK(http_find_header(r, "x-fuzz-absent-header") == NULL);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct http_request whole, part, alone;
  size_t n, split;
  char *buf, *pre;
  int rw, rp;
  if (size < 2) return 0;
  n = size - 2;
  split = (size_t)fuzz_le(data, size, 2) % (n + 1);
  buf = fuzz_copy(data + 2, n);
  rw = http_parse_request(buf, n, &whole);
  FUZZ_CHECK((rw > 0 && (size_t)rw <= n) || rw == URSULA_EAGAIN ||
             rw == HTTP_EMALFORMED || rw == HTTP_ETOOMANY ||
             rw == HTTP_EVERSION);
  if (rw > 0) {
    char *head = fuzz_copy(buf, (size_t)rw);
    fuzz_check_request(buf, (size_t)rw, &whole);
    FUZZ_CHECK(http_parse_request(head, (size_t)rw, &alone) == rw);
    fuzz_same_request(buf, &whole, head, &alone);
    free(head);
  }
  pre = fuzz_copy(buf, split);
  rp = http_parse_request(pre, split, &part);
  if (rp != URSULA_EAGAIN) {
    FUZZ_CHECK(rp == rw);
    if (rp > 0) fuzz_same_request(buf, &whole, pre, &part);
  }
  free(pre);
  free(buf);
  return 0;
}
