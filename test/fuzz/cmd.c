/*
** cmd.c -- fuzz cmd_decode(), the decoder of a log entry's command.
**
** Input: the payload of a WAL_CMD record (1 byte first: where to cut it
** for the truncation check).  Properties:
**   - cmd_decode() returns URSULA_OK or URSULA_ECORRUPT, and on success
**     every view lies inside the input, raw is the input;
**   - decode then encode round-trips: cmd_encode() of what decoded gives
**     back exactly the input bytes (one command, one encoding: replicas
**     and restarts read the same bytes the same way);
**   - a strict prefix of a command that decodes does not decode (every
**     field is always present, so a cut is always seen).
*/
#include "../../ursula.c"
#include "fuzz.h"

static int fuzz_inside(const char *p, size_t n, struct str s) {
  if (s.len == 0) return 1;
  return s.ptr >= p && s.len <= n && (size_t)(s.ptr - p) <= n - s.len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct buf bounds, enc, bounds2;
  struct cmd c, d;
  char *p;
  size_t n, cut;
  int rc;
  if (size < 1) return 0;
  n = size - 1;
  p = fuzz_copy(data + 1, n);
  memset(&bounds, 0, sizeof(bounds));
  memset(&bounds2, 0, sizeof(bounds2));
  memset(&enc, 0, sizeof(enc));
  rc = cmd_decode(p, n, &c, &bounds);
  FUZZ_CHECK(rc == URSULA_OK || rc == URSULA_ECORRUPT);
  if (rc == URSULA_OK) {
    FUZZ_CHECK(c.raw == p);
    FUZZ_CHECK(c.type >= CMD_CREATE && c.type <= CMD_TYPE_MAX);
    FUZZ_CHECK(fuzz_inside(p, n, c.path));
    FUZZ_CHECK(fuzz_inside(p, n, c.content_type));
    FUZZ_CHECK(fuzz_inside(p, n, c.data));
    FUZZ_CHECK(fuzz_inside(p, n, c.expires_text));
    FUZZ_CHECK(fuzz_inside(p, n, c.stream_seq));
    FUZZ_CHECK(fuzz_inside(p, n, c.producer_id));
    FUZZ_CHECK(fuzz_inside(p, n, c.fork_source));
    FUZZ_CHECK(fuzz_inside(p, n, c.inherited));
    FUZZ_CHECK(fuzz_inside(p, n, c.object));
    FUZZ_CHECK(fuzz_inside(p, n, c.digest));
    FUZZ_CHECK(fuzz_inside(p, n, c.match));
    FUZZ_CHECK(c.n_bounds * sizeof(uint64_t) <= bounds.len ||
               c.n_bounds * sizeof(uint64_t) <= bounds.cap);
    FUZZ_CHECK(cmd_encode(&c, &enc) == URSULA_OK);
    /* one byte string per command: decode then encode gives the input
    ** back (version 1 is still decoded but never written) */
    if ((unsigned char)p[0] == CMD_VERSION)
      FUZZ_CHECK(enc.len == n && memcmp(enc.ptr, p, n) == 0);
    cut = n > 0 ? data[0] % n : 0; /* a strict prefix */
    if (n > 0) {
      char *q = fuzz_copy(p, cut);
      FUZZ_CHECK(cmd_decode(q, cut, &d, &bounds2) == URSULA_ECORRUPT);
      free(q);
    }
  }
  buf_free(&bounds);
  buf_free(&bounds2);
  buf_free(&enc);
  free(p);
  return 0;
}
