/*
** query.c -- fuzz the parsers of the request target and of the values
** in it and in headers (api.c, util.c): api_parse_target(),
** api_parse_offset(), util_parse_u64(), api_parse_canonical(),
** api_parse_rfc3339(), api_path_ok().
**
** Input: 1 byte that picks the parser, then its text (for the number
** parsers, 8 more bytes first: the maximum).  Each result is checked
** against the rule as written in the parser's contract, computed here
** independently:
**   - target: the path is the bytes before the first '?'; every
**     parameter view lies inside the query; offset counts every
**     "offset" parameter and, when it parses, gives the part after '_';
**   - numbers: digits only, no sign or blank, at most max; canonical
**     numbers have no leading zero;
**   - RFC 3339: a timestamp that parses names the same calendar date,
**     time and milliseconds once its zone offset is applied (gmtime);
**   - paths: absolute, without "." or ".." segments.
*/
#include "../../ursula.c"
#include "fuzz.h"

/* The rule: digits only, 1 or more, value <= max (no overflow). */
static int fuzz_ref_u64(const char *p, size_t n, uint64_t max, uint64_t *out) {
  uint64_t v = 0;
  size_t i;
  if (n == 0) return -1;
  for (i = 0; i < n; i++) {
    unsigned d;
    if (p[i] < '0' || p[i] > '9') return -1;
    d = (unsigned)(p[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  if (v > max) return -1;
  *out = v;
  return 0;
}

static int fuzz_inside(struct str whole, struct str part) {
  return part.ptr >= whole.ptr && part.len <= whole.len &&
         (size_t)(part.ptr - whole.ptr) <= whole.len - part.len;
}

static void fuzz_target(struct str t) {
  struct api_query q;
  const char *qm = (const char *)memchr(t.ptr, '?', t.len);
  size_t i, n_offset = 0;
  api_parse_target(t, &q);
  FUZZ_CHECK(q.path.ptr == t.ptr);
  FUZZ_CHECK(q.path.len == (qm ? (size_t)(qm - t.ptr) : t.len));
  /* count the "offset" parameters by the rule: '&'-separated, name up to
  ** the first '=' */
  if (qm != NULL) {
    size_t start = (size_t)(qm - t.ptr) + 1;
    for (i = start; i <= t.len; i++) {
      if (i == t.len || t.ptr[i] == '&') {
        const char *eq =
            (const char *)memchr(t.ptr + start, '=', i - start);
        size_t name_len = eq ? (size_t)(eq - (t.ptr + start)) : i - start;
        if (name_len == 6 && memcmp(t.ptr + start, "offset", 6) == 0)
          n_offset++;
        start = i + 1;
      }
    }
  }
  FUZZ_CHECK((size_t)q.n_offset == n_offset);
  if (q.n_offset > 0) {
    uint64_t got = 0, lo = 0, hi = 0;
    const char *us;
    FUZZ_CHECK(fuzz_inside(t, q.offset));
    us = (const char *)memchr(q.offset.ptr, '_', q.offset.len);
    {
      int ok = us != NULL &&
               fuzz_ref_u64(q.offset.ptr, (size_t)(us - q.offset.ptr),
                            UINT64_MAX, &hi) == 0 &&
               fuzz_ref_u64(us + 1, q.offset.len - (size_t)(us - q.offset.ptr) - 1,
                            UINT64_MAX, &lo) == 0;
      int rc = api_parse_offset(q.offset, &got);
      FUZZ_CHECK((rc == 0) == ok);
      if (ok) FUZZ_CHECK(got == lo);
    }
  }
  if (q.has_live) FUZZ_CHECK(fuzz_inside(t, q.live));
  if (q.has_cursor) FUZZ_CHECK(fuzz_inside(t, q.cursor));
}

static void fuzz_numbers(const uint8_t *data, size_t size) {
  uint64_t max = fuzz_le(data, size, 8), got = 7, want = 9;
  struct str s;
  int rc, ref;
  if (size < 8) return;
  s.ptr = fuzz_copy(data + 8, size - 8);
  s.len = size - 8;
  if (max % 3 == 0) max = UINT64_MAX;
  rc = util_parse_u64(s, max, &got);
  ref = fuzz_ref_u64(s.ptr, s.len, max, &want);
  FUZZ_CHECK(rc == ref);
  if (rc == 0) FUZZ_CHECK(got == want);
  rc = api_parse_canonical(s, max, &got);
  ref = fuzz_ref_u64(s.ptr, s.len, max, &want) == 0 &&
                (s.len == 1 || s.ptr[0] != '0')
            ? 0
            : -1;
  FUZZ_CHECK(rc == ref);
  if (rc == 0) FUZZ_CHECK(got == want);
  free((void *)s.ptr);
}

/* digits p[0..n) as a number (the caller knows they are digits) */
static int fuzz_num(const char *p, int n) {
  int v = 0, i;
  for (i = 0; i < n; i++) v = v * 10 + (p[i] - '0');
  return v;
}

static void fuzz_rfc3339(struct str s) {
  uint64_t ms = 0;
  size_t i = 19;
  int sign = 0, tz = 0, frac = 0, digits = 0;
  time_t local;
  struct tm tm;
  char want[32], got[32];
  if (api_parse_rfc3339(s, &ms) != 0) return;
  /* it parsed: read the fields by the grammar, and compare */
  FUZZ_CHECK(s.len >= 20);
  if (s.ptr[i] == '.') {
    for (i++; i < s.len && s.ptr[i] >= '0' && s.ptr[i] <= '9'; i++) {
      if (digits < 3) frac = frac * 10 + (s.ptr[i] - '0');
      digits++;
    }
    FUZZ_CHECK(digits > 0);
    while (digits < 3) frac *= 10, digits++;
  }
  FUZZ_CHECK(i < s.len);
  if (s.ptr[i] == '+' || s.ptr[i] == '-') {
    FUZZ_CHECK(i + 6 == s.len);
    sign = s.ptr[i] == '+' ? 1 : -1;
    tz = fuzz_num(s.ptr + i + 1, 2) * 3600 + fuzz_num(s.ptr + i + 4, 2) * 60;
  } else {
    FUZZ_CHECK((s.ptr[i] == 'Z' || s.ptr[i] == 'z') && i + 1 == s.len);
  }
  FUZZ_CHECK((int)(ms % 1000) == frac);
  if (fuzz_num(s.ptr + 17, 2) == 60) return; /* a leap second: normalised */
  local = (time_t)(ms / 1000) + (time_t)(sign * tz);
  FUZZ_CHECK(gmtime_r(&local, &tm) != NULL);
  strftime(got, sizeof(got), "%Y-%m-%d %H:%M:%S", &tm);
  memcpy(want, s.ptr, 19);
  want[10] = ' ';
  want[19] = '\0';
  FUZZ_CHECK(strcmp(got, want) == 0);
}

static void fuzz_path(struct str p) {
  size_t i, seg = 1;
  int ok = p.len > 0 && p.ptr[0] == '/';
  for (i = 1; ok && i <= p.len; i++) {
    if (i == p.len || p.ptr[i] == '/') {
      struct str s;
      s.ptr = p.ptr + seg;
      s.len = i - seg;
      if (util_str_eq(s, ".") || util_str_eq(s, "..")) ok = 0;
      seg = i + 1;
    }
  }
  FUZZ_CHECK(api_path_ok(p) == ok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct str s;
  if (size < 1) return 0;
  s.ptr = fuzz_copy(data + 1, size - 1);
  s.len = size - 1;
  switch (data[0] % 4) {
    case 0:
      fuzz_target(s);
      break;
    case 1:
      fuzz_numbers(data + 1, size - 1);
      break;
    case 2:
      fuzz_rfc3339(s);
      break;
    default:
      fuzz_path(s);
      break;
  }
  free((void *)s.ptr);
  return 0;
}
