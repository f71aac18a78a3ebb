/*
** json.c -- fuzz json_flatten(), json_prefix_len() and json_count().
**
** Input: a POST body of a JSON stream.  Properties:
**   - json_flatten() returns URSULA_OK or URSULA_EINVAL; on error the
**     output buffer is back at its length on entry, bytes intact;
**   - on success the stored run is the messages, each followed by one
**     ',', and reads it back consistently: json_count() is the message
**     count, json_prefix_len() of k messages ends after the k-th ',' (and
**     (size_t)-1 for one too many);
**   - every stored message is itself valid JSON that flattens to exactly
**     itself (wrapped in an array when it is one), and the whole run
**     wrapped in an array ('[' + run without its last ',' + ']', what a
**     reader serves) flattens to the same run;
**   - json_count() and json_prefix_len() never read outside their input,
**     whatever it holds (a damaged log could hand them anything).
*/
#include "../../ursula.c"
#include "fuzz.h"

/* '[' + p[0..len) + ']' (wrap) or p[0..len) alone (a value that is not
** an array, which flattens to itself; wrapping it could pass the depth
** limit) flattened must give exactly p[0..len) + ',' and want messages. */
static void fuzz_reflatten(const char *p, size_t len, size_t want, int wrap) {
  struct buf in, out;
  size_t n = 0;
  memset(&in, 0, sizeof(in));
  memset(&out, 0, sizeof(out));
  if (wrap) FUZZ_CHECK(buf_append(&in, "[", 1) == URSULA_OK);
  FUZZ_CHECK(buf_append(&in, p, len) == URSULA_OK);
  if (wrap) FUZZ_CHECK(buf_append(&in, "]", 1) == URSULA_OK);
  FUZZ_CHECK(json_flatten(in.ptr, in.len, &out, &n) == URSULA_OK);
  FUZZ_CHECK(n == want);
  if (want > 0) {
    FUZZ_CHECK(out.len == len + 1);
    FUZZ_CHECK(memcmp(out.ptr, p, len) == 0 && out.ptr[len] == ',');
  } else {
    FUZZ_CHECK(out.len == 0);
  }
  buf_free(&in);
  buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char junk[] = "prefix";
  char *p = fuzz_copy(data, size);
  struct buf out;
  size_t n = 99, k, at, i;
  int rc;
  memset(&out, 0, sizeof(out));
  FUZZ_CHECK(buf_append(&out, junk, 6) == URSULA_OK);
  rc = json_flatten(p, size, &out, &n);
  FUZZ_CHECK(rc == URSULA_OK || rc == URSULA_EINVAL);
  /* stored-run readers on raw bytes: no crash, sane answers */
  k = json_count(p, size);
  FUZZ_CHECK(k <= size);
  at = json_prefix_len(p, size, k / 2);
  FUZZ_CHECK(at == (size_t)-1 || at <= size);
  if (rc != URSULA_OK) {
    FUZZ_CHECK(out.len == 6 && memcmp(out.ptr, junk, 6) == 0);
  } else {
    const char *run = out.ptr + 6;
    size_t len = out.len - 6;
    FUZZ_CHECK(json_count(run, len) == n);
    FUZZ_CHECK(json_prefix_len(run, len, n) == len);
    FUZZ_CHECK(json_prefix_len(run, len, n + 1) == (size_t)-1);
    FUZZ_CHECK(json_prefix_len(run, len, 0) == 0);
    FUZZ_CHECK(n > 0 || len == 0);
    /* each message alone */
    for (i = 0, at = 0; i < n; i++) {
      size_t end = json_prefix_len(run, len, i + 1);
      FUZZ_CHECK(end != (size_t)-1 && end > at && run[end - 1] == ',');
      /* an element that is an array is one level in: wrapping is safe */
      fuzz_reflatten(run + at, end - 1 - at, 1, run[at] == '[');
      at = end;
    }
    FUZZ_CHECK(at == len);
    /* the run as a reader serves it (the body was an array), or the one
    ** value the body was */
    for (i = 0; i < size && strchr(" \t\r\n", p[i]) != NULL; i++) {
    }
    fuzz_reflatten(run, len > 0 ? len - 1 : 0, n, p[i] == '[');
  }
  buf_free(&out);
  free(p);
  return 0;
}
