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
**   - target: the path is the bytes before the first '?'; parameters
**     are '&'-separated, named up to the first '=', and percent-decoded
**     (a bad escape anywhere refuses the query); offset, live and cursor
**     count every parameter of that decoded name and keep the last
**     value; an offset is "0_" then digits (the log epoch is 0) and
**     gives the part after '_';
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

/* The rule for one escape-decoded piece (RFC 3986 section 2.1): every
** '%' starts "%" HEXDIG HEXDIG; -1 if one does not.  out holds at least
** n bytes. */
static int fuzz_ref_hex(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int fuzz_ref_decode(const char *p, size_t n, char *out, size_t *len) {
  size_t i, k = 0;
  for (i = 0; i < n; i++) {
    if (p[i] == '%') {
      if (n - i < 3 || fuzz_ref_hex((unsigned char)p[i + 1]) < 0 ||
          fuzz_ref_hex((unsigned char)p[i + 2]) < 0)
        return -1;
      out[k++] = (char)(fuzz_ref_hex((unsigned char)p[i + 1]) << 4 |
                        fuzz_ref_hex((unsigned char)p[i + 2]));
      i += 2;
    } else {
      out[k++] = p[i];
    }
  }
  *len = k;
  return 0;
}

/* What the rule says of one parameter we know: how often it came, and
** its last value decoded. */
struct fuzz_ref_param {
  int n;
  size_t len;
  char *v;
};

static void fuzz_check_param(const struct api_param *got,
                             const struct fuzz_ref_param *want) {
  FUZZ_CHECK(got->n == want->n);
  if (want->n == 0) return;
  if (want->len > sizeof(got->v)) {
    FUZZ_CHECK(got->too_long);
  } else {
    FUZZ_CHECK(!got->too_long && got->len == want->len &&
               memcmp(got->v, want->v, want->len) == 0);
  }
}

static void fuzz_target(struct str t) {
  struct api_query q;
  const char *qm = (const char *)memchr(t.ptr, '?', t.len);
  struct fuzz_ref_param ref[3]; /* offset, live, cursor */
  static const char *const names[3] = {"offset", "live", "cursor"};
  char *name = (char *)malloc(t.len + 1), *value = (char *)malloc(t.len + 1);
  size_t i, k;
  int rc, ok = 1;
  memset(ref, 0, sizeof(ref));
  rc = api_parse_target(t, &q);
  FUZZ_CHECK(q.path.ptr == t.ptr);
  FUZZ_CHECK(q.path.len == (qm ? (size_t)(qm - t.ptr) : t.len));
  /* the rule: '&'-separated parameters, the name up to the first '=',
  ** both decoded; a bad escape anywhere in the query refuses it */
  if (qm != NULL) {
    size_t start = (size_t)(qm - t.ptr) + 1;
    for (i = start; i <= t.len && ok; i++) {
      if (i == t.len || t.ptr[i] == '&') {
        const char *eq = (const char *)memchr(t.ptr + start, '=', i - start);
        size_t nl = eq ? (size_t)(eq - (t.ptr + start)) : i - start, vl = 0;
        size_t name_len, value_len;
        if (eq) vl = i - start - nl - 1;
        if (fuzz_ref_decode(t.ptr + start, nl, name, &name_len) != 0 ||
            fuzz_ref_decode(eq ? eq + 1 : t.ptr + i, vl, value, &value_len) !=
                0) {
          ok = 0;
          break;
        }
        for (k = 0; k < 3; k++) {
          if (name_len == strlen(names[k]) &&
              memcmp(name, names[k], name_len) == 0) {
            ref[k].n++;
            free(ref[k].v);
            ref[k].v = fuzz_copy(value, value_len);
            ref[k].len = value_len;
          }
        }
        start = i + 1;
      }
    }
  }
  FUZZ_CHECK((rc == 0) == ok);
  if (ok) {
    fuzz_check_param(&q.offset, &ref[0]);
    fuzz_check_param(&q.live, &ref[1]);
    fuzz_check_param(&q.cursor, &ref[2]);
  }
  if (ok && q.offset.n > 0 && !q.offset.too_long) {
    struct str off = api_param_str(&q.offset);
    uint64_t got = 0, lo = 0, hi = 0;
    const char *us = (const char *)memchr(off.ptr, '_', off.len);
    int good = us != NULL &&
               fuzz_ref_u64(off.ptr, (size_t)(us - off.ptr), 0, &hi) == 0 &&
               fuzz_ref_u64(us + 1, off.len - (size_t)(us - off.ptr) - 1,
                            UINT64_MAX, &lo) == 0;
    rc = api_parse_offset(off, &got);
    FUZZ_CHECK((rc == 0) == good);
    if (good) FUZZ_CHECK(got == lo);
  }
  for (k = 0; k < 3; k++) free(ref[k].v);
  free(name);
  free(value);
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
