/*
** http_chunked.c -- fuzz http_chunked_feed(), the chunked body decoder.
**
** Input: 4 bytes that pick two split points (2 bytes each), then the
** bytes that follow a request head.  The decoder is fed the whole input
** at once, then the same bytes in three pieces, then one byte at a time
** (as reads of a slow client would bring them).  Properties:
**   - every feed returns the bytes it consumed, all of them unless the
**     body ended (done), or HTTP_EMALFORMED;
**   - all three ways agree: the same error, or the same bytes consumed,
**     the same done flag and the same decoded body;
**   - once done, a further feed consumes nothing and stays done.
*/
#include "../../ursula.c"
#include "fuzz.h"

struct fuzz_outcome {
  long rc;       /* HTTP_EMALFORMED, or the bytes consumed in all */
  int done;
  struct buf body;
};

/* Feed in[0..n) in pieces ending at cuts[0..k) (ascending, <= n). */
static void fuzz_feed(const char *in, size_t n, const size_t *cuts, size_t k,
                      struct fuzz_outcome *o) {
  struct http_chunked d;
  size_t at = 0, i;
  memset(&d, 0, sizeof(d));
  memset(o, 0, sizeof(*o));
  for (i = 0; i <= k; i++) {
    size_t end = i < k ? cuts[i] : n, len = end - at;
    char *piece = fuzz_copy(in + at, len);
    int done = -1;
    long r = http_chunked_feed(&d, piece, len, &o->body, &done);
    free(piece);
    FUZZ_CHECK(done == 0 || done == 1);
    if (r < 0) {
      FUZZ_CHECK(r == HTTP_EMALFORMED);
      o->rc = r;
      return;
    }
    FUZZ_CHECK((size_t)r <= len);
    FUZZ_CHECK(done || (size_t)r == len); /* all consumed unless done */
    o->done = done;
    o->rc = (long)(at + (size_t)r);
    if (done) {
      char more[1] = {'x'};
      int again = 0;
      FUZZ_CHECK(http_chunked_feed(&d, more, 1, &o->body, &again) == 0);
      FUZZ_CHECK(again == 1);
      return;
    }
    at = end;
  }
}

static void fuzz_same(const struct fuzz_outcome *a,
                      const struct fuzz_outcome *b) {
  FUZZ_CHECK(a->rc == b->rc);
  if (a->rc < 0) return;
  FUZZ_CHECK(a->done == b->done);
  FUZZ_CHECK(a->body.len == b->body.len);
  FUZZ_CHECK(a->body.len == 0 ||
             memcmp(a->body.ptr, b->body.ptr, a->body.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct fuzz_outcome whole, split, bytes;
  size_t cuts[2], *each, n, i;
  const char *in;
  if (size < 4) return 0;
  in = (const char *)data + 4;
  n = size - 4;
  cuts[0] = (size_t)fuzz_le(data, size, 2) % (n + 1);
  cuts[1] = (size_t)fuzz_le(data + 2, size - 2, 2) % (n + 1);
  if (cuts[0] > cuts[1]) {
    size_t t = cuts[0];
    cuts[0] = cuts[1];
    cuts[1] = t;
  }
  fuzz_feed(in, n, NULL, 0, &whole);
  fuzz_feed(in, n, cuts, 2, &split);
  fuzz_same(&whole, &split);
  each = (size_t *)malloc((n > 0 ? n : 1) * sizeof(*each));
  FUZZ_CHECK(each != NULL);
  for (i = 0; i < n; i++) each[i] = i + 1;
  fuzz_feed(in, n, each, n > 0 ? n - 1 : 0, &bytes);
  fuzz_same(&whole, &bytes);
  free(each);
  buf_free(&whole.body);
  buf_free(&split.body);
  buf_free(&bytes.body);
  return 0;
}
