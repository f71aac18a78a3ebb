/*
** util.c -- byte views, growable buffers, hashing, CRC32C and base64.
**
** Everything here is pure and thread-agnostic.  struct buf owns its bytes;
** a struct str never does.
*/
#include "internal.h"

/* ------------------------------------------------------------ errors */

URSULA_API const char *ursula_strerror(int rc) {
  switch (rc) {
#define UTIL_ERRCASE(name, value, msg) \
  case value:                          \
    return msg;
    URSULA_ERRORS(UTIL_ERRCASE)
#undef UTIL_ERRCASE
    default:
      return "unknown error";
  }
}

#if URSULA_ENABLE_ASSERT
URSULA_PRIVATE void util_assert_fail(const char *expr, const char *file,
                                     int line) {
  fprintf(stderr, "ursula: assertion failed: %s (%s:%d)\n", expr, file, line);
  abort();
}
#endif

/* ------------------------------------------------------------ views */

URSULA_PRIVATE struct str util_str(const char *cstr) {
  struct str s;
  s.ptr = cstr;
  s.len = cstr ? strlen(cstr) : 0;
  return s;
}

URSULA_PRIVATE int util_str_eq(struct str a, const char *cstr) {
  size_t n = strlen(cstr);
  return a.len == n && memcmp(a.ptr, cstr, n) == 0;
}

static int util_lower(int c) {
  return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

URSULA_PRIVATE int util_str_ieq(struct str a, const char *cstr) {
  size_t i, n = strlen(cstr);
  if (a.len != n) return 0;
  for (i = 0; i < n; i++) {
    if (util_lower((unsigned char)a.ptr[i]) !=
        util_lower((unsigned char)cstr[i]))
      return 0;
  }
  return 1;
}

URSULA_PRIVATE struct str util_str_trim(struct str s) {
  while (s.len > 0 && (s.ptr[0] == ' ' || s.ptr[0] == '\t')) s.ptr++, s.len--;
  while (s.len > 0 && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t'))
    s.len--;
  return s;
}

URSULA_PRIVATE int util_parse_u64(struct str s, uint64_t max, uint64_t *out) {
  uint64_t v = 0;
  size_t i;
  if (s.len == 0) return -1;
  for (i = 0; i < s.len; i++) { /* any number of leading zeros */
    unsigned d = (unsigned char)s.ptr[i] - '0';
    if (d > 9) return -1;
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  if (v > max) return -1;
  *out = v;
  return 0;
}

/* 64-bit FNV-1a.  Stable across builds and platforms: a stream's group is
** util_hash64(path) % group_count, so this must never change. */
URSULA_PRIVATE uint64_t util_hash64(const void *p, size_t len) {
  const unsigned char *b = (const unsigned char *)p;
  uint64_t h = 14695981039346656037ULL;
  size_t i;
  for (i = 0; i < len; i++) {
    h ^= b[i];
    h *= 1099511628211ULL;
  }
  return h;
}

/* Little-endian integers in on-disk and on-wire formats. */
URSULA_PRIVATE void util_put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

URSULA_PRIVATE void util_put64(unsigned char *p, uint64_t v) {
  util_put32(p, (uint32_t)v);
  util_put32(p + 4, (uint32_t)(v >> 32));
}

URSULA_PRIVATE uint32_t util_get32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

URSULA_PRIVATE uint64_t util_get64(const unsigned char *p) {
  return (uint64_t)util_get32(p) | (uint64_t)util_get32(p + 4) << 32;
}

/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78), eight bytes per
** step ("slicing by 8"): table k maps a byte to the CRC of that byte
** followed by k zero bytes, so the CRC of 8 bytes is the XOR of 8 lookups,
** one per byte, each in the table of the bytes that follow it.  Words are
** read byte by byte (little-endian, any alignment), so the result is the
** same on every machine.  Recovery checks every WAL record with it (about
** 5 times the speed of one byte per step).
** util_crc32c(0, "123456789", 9) == 0xE3069283; RFC 3720 B.4 gives more. */
static uint32_t util_crc_table[8][256];
static pthread_once_t util_crc_once = PTHREAD_ONCE_INIT;

static void util_crc_init(void) {
  uint32_t i, j, k, c;
  for (i = 0; i < 256; i++) {
    c = i;
    for (j = 0; j < 8; j++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    util_crc_table[0][i] = c;
  }
  for (k = 1; k < 8; k++)
    for (i = 0; i < 256; i++) {
      c = util_crc_table[k - 1][i];
      util_crc_table[k][i] = (c >> 8) ^ util_crc_table[0][c & 0xff];
    }
}

URSULA_PRIVATE uint32_t util_crc32c(uint32_t crc, const void *p, size_t len) {
  const unsigned char *b = (const unsigned char *)p;
  const uint32_t(*t)[256] = (const uint32_t(*)[256])util_crc_table;
  pthread_once(&util_crc_once, util_crc_init);
  crc = ~crc;
  for (; len >= 8; b += 8, len -= 8) {
    uint32_t lo = crc ^ util_get32(b), hi = util_get32(b + 4);
    crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^
          t[4][lo >> 24] ^ t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^
          t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
  }
  while (len--) crc = t[0][(crc ^ *b++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

/* ------------------------------------------------------------ buffers */

URSULA_PRIVATE int buf_reserve(struct buf *b, size_t extra) {
  size_t need, cap;
  char *p;
  if (extra > SIZE_MAX - b->len - 1) return URSULA_ENOMEM;
  need = b->len + extra + 1; /* +1 keeps room for a NUL terminator */
  if (need <= b->cap) return URSULA_OK;
  cap = b->cap ? b->cap : 64;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  p = (char *)URSULA_REALLOC(b->ptr, cap);
  if (p == NULL) return URSULA_ENOMEM;
  b->ptr = p;
  b->cap = cap;
  return URSULA_OK;
}

URSULA_PRIVATE int buf_append(struct buf *b, const void *p, size_t len) {
  if (buf_reserve(b, len) != URSULA_OK) return URSULA_ENOMEM;
  if (len) memcpy(b->ptr + b->len, p, len);
  b->len += len;
  b->ptr[b->len] = '\0';
  return URSULA_OK;
}

URSULA_PRIVATE int buf_append_str(struct buf *b, const char *cstr) {
  return buf_append(b, cstr, strlen(cstr));
}

URSULA_PRIVATE int buf_printf(struct buf *b, const char *fmt, ...) {
  va_list ap;
  int n;
  char small[256];
  va_start(ap, fmt);
  n = vsnprintf(small, sizeof(small), fmt, ap);
  va_end(ap);
  if (n < 0) return URSULA_EINVAL;
  if ((size_t)n < sizeof(small)) return buf_append(b, small, (size_t)n);
  if (buf_reserve(b, (size_t)n) != URSULA_OK) return URSULA_ENOMEM;
  va_start(ap, fmt);
  vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return URSULA_OK;
}

URSULA_PRIVATE void buf_consume(struct buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
  } else {
    memmove(b->ptr, b->ptr + n, b->len - n);
    b->len -= n;
  }
  if (b->ptr) b->ptr[b->len] = '\0';
}

URSULA_PRIVATE void buf_free(struct buf *b) {
  URSULA_FREE(b->ptr);
  b->ptr = NULL;
  b->len = b->cap = 0;
}

/* ------------------------------------------------------------ base64 */

static const char util_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

URSULA_PRIVATE int util_base64_append(struct buf *out, const void *p,
                                      size_t len) {
  const unsigned char *s = (const unsigned char *)p;
  size_t i, n = (len + 2) / 3 * 4;
  char *d;
  if (buf_reserve(out, n) != URSULA_OK) return URSULA_ENOMEM;
  d = out->ptr + out->len;
  for (i = 0; i + 2 < len; i += 3) {
    *d++ = util_b64[s[i] >> 2];
    *d++ = util_b64[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
    *d++ = util_b64[((s[i + 1] & 15) << 2) | (s[i + 2] >> 6)];
    *d++ = util_b64[s[i + 2] & 63];
  }
  if (i < len) {
    *d++ = util_b64[s[i] >> 2];
    if (i + 1 < len) {
      *d++ = util_b64[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
      *d++ = util_b64[(s[i + 1] & 15) << 2];
    } else {
      *d++ = util_b64[(s[i] & 3) << 4];
      *d++ = '=';
    }
    *d++ = '=';
  }
  out->len += n;
  out->ptr[out->len] = '\0';
  return URSULA_OK;
}

/* The value of base64 digit ch, or -1. */
static int util_b64_value(unsigned char ch) {
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == '+') return 62;
  if (ch == '/') return 63;
  return -1;
}

URSULA_PRIVATE int util_base64_decode(struct buf *out, const char *p,
                                      size_t len) {
  size_t i, keep = out->len, pad = 0;
  if (len % 4 != 0) return URSULA_EINVAL;
  if (len > 0 && p[len - 1] == '=') pad = p[len - 2] == '=' ? 2 : 1;
  if (buf_reserve(out, len / 4 * 3) != URSULA_OK) return URSULA_ENOMEM;
  for (i = 0; i < len; i += 4) {
    int v[4], k, last = i + 4 == len;
    unsigned char b[3];
    for (k = 0; k < 4; k++) {
      v[k] = (last && k >= 4 - (int)pad) ? 0
                                         : util_b64_value((unsigned char)p[i + k]);
      if (v[k] < 0) {
        out->len = keep;
        return URSULA_EINVAL;
      }
    }
    b[0] = (unsigned char)(v[0] << 2 | v[1] >> 4);
    b[1] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
    b[2] = (unsigned char)((v[2] & 3) << 6 | v[3]);
    if (last && ((pad == 2 && (v[1] & 15) != 0) ||
                 (pad == 1 && (v[2] & 3) != 0))) {
      out->len = keep; /* pad bits not zero */
      return URSULA_EINVAL;
    }
    memcpy(out->ptr + out->len, b, last ? 3 - pad : 3);
    out->len += last ? 3 - pad : 3;
  }
  out->ptr[out->len] = '\0';
  return URSULA_OK;
}

URSULA_PRIVATE void util_offset(char out[40], uint64_t off) {
  snprintf(out, 40, "%016llu_%016llu", 0ULL, (unsigned long long)off);
}

/* ------------------------------------------------------------ bucket paths */

#define UTIL_BUCKET_MIN 4
#define UTIL_BUCKET_MAX 64
#define UTIL_STREAM_ID_MAX 122

URSULA_PRIVATE int util_bucket_name_ok(struct str name) {
  size_t i;
  if (name.len < UTIL_BUCKET_MIN || name.len > UTIL_BUCKET_MAX ||
      (name.ptr[0] == '_' && name.ptr[1] == '_')) /* "__...": reserved */
    return 0;
  for (i = 0; i < name.len; i++) {
    char ch = name.ptr[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' ||
          ch == '-'))
      return 0;
  }
  return 1;
}

/* Whether id is one of the ids a bucket keeps for its own routes. */
static int util_reserved_id(struct str id) {
  static const char *const ids[] = {"streams",   "$transaction", "append-batch",
                                    "attrs",     "bootstrap",    "retention",
                                    "snapshot"};
  size_t i;
  for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
    if (util_str_eq(id, ids[i])) return 1;
  return 0;
}

/* A stream id's bytes, the reserved ids aside. */
static int util_id_bytes_ok(struct str id) {
  size_t i;
  if (id.len < 1 || id.len > UTIL_STREAM_ID_MAX) return 0;
  for (i = 0; i < id.len; i++) {
    if (id.ptr[i] == '/' || id.ptr[i] == '\0') return 0;
    if (id.ptr[i] == '.' && i + 1 < id.len && id.ptr[i + 1] == '.') return 0;
  }
  return 1;
}

URSULA_PRIVATE int util_stream_id_ok(struct str id) {
  return util_id_bytes_ok(id) && !util_reserved_id(id);
}

/* Path as a stream's sub-resource: stream [path, path + stream_len),
** the id sub, and rest (the segment after it, if any). */
static void util_sub(struct util_bucket_path *out, const char *path,
                     const struct str *seg, int n, int at) {
  out->kind = UTIL_PATH_SUB;
  out->sub = seg[at];
  out->stream_len = (size_t)(seg[at].ptr - 1 - path);
  if (at + 1 < n) out->rest = seg[at + 1];
}

URSULA_PRIVATE void util_bucket_path(const char *path, size_t len,
                                     struct util_bucket_path *out) {
  struct str seg[5];
  size_t i, start = 1;
  int n = 0, affinity;
  memset(out, 0, sizeof(*out));
  out->group_len = len;
  if (len < 2 || path[0] != '/') return;
  for (i = 1; i <= len; i++) { /* the segments, at most 5 */
    if (i < len && path[i] != '/') continue;
    if (n == 5) return;
    seg[n].ptr = path + start;
    seg[n].len = i - start;
    n++;
    start = i + 1;
  }
  if (!util_bucket_name_ok(seg[0])) return;
  out->bucket = seg[0];
  affinity = n >= 3 && util_stream_id_ok(seg[1]) && util_stream_id_ok(seg[2]);
  if (n == 1) {
    out->kind = UTIL_PATH_BUCKET;
  } else if (n == 2 && util_str_eq(seg[1], "streams")) {
    out->kind = UTIL_PATH_LIST;
  } else if (n == 2 && util_stream_id_ok(seg[1])) {
    out->kind = UTIL_PATH_IN_BUCKET;
    out->id = seg[1];
  } else if (n == 3 && affinity) {
    out->kind = UTIL_PATH_AFFINITY;
    out->id.ptr = seg[1].ptr;
    out->id.len = seg[1].len + 1 + seg[2].len;
    out->group_len = (size_t)(seg[2].ptr - 1 - path);
  } else if (n == 3 && util_stream_id_ok(seg[1]) &&
             util_str_eq(seg[2], "$transaction")) {
    out->kind = UTIL_PATH_TXN; /* the group of "/{b}/{aff}" */
    out->group_len = (size_t)(seg[2].ptr - 1 - path);
  } else if (n <= 4 && n >= 3 && util_stream_id_ok(seg[1]) &&
             util_reserved_id(seg[2]) && !util_str_eq(seg[2], "streams") &&
             !util_str_eq(seg[2], "$transaction")) {
    util_sub(out, path, seg, n, 2); /* /{b}/{s}/{x}[/{rest}] */
    out->id = seg[1];
    out->group_len = out->stream_len;
  } else if (n >= 4 && affinity && util_reserved_id(seg[3]) &&
             !util_str_eq(seg[3], "streams") &&
             !util_str_eq(seg[3], "$transaction")) {
    util_sub(out, path, seg, n, 3); /* /{b}/{aff}/{s}/{x}[/{rest}] */
    out->id.ptr = seg[1].ptr;
    out->id.len = seg[1].len + 1 + seg[2].len;
    out->group_len = (size_t)(seg[2].ptr - 1 - path);
  } else if (n <= 3 && util_id_bytes_ok(seg[n - 1]) &&
             util_reserved_id(seg[n - 1]) &&
             (n == 2 || util_stream_id_ok(seg[1]))) {
    out->kind = UTIL_PATH_RESERVED;
  } else {
    out->kind = UTIL_PATH_PLAIN;
    out->bucket.ptr = NULL;
    out->bucket.len = 0;
  }
}

#undef UTIL_BUCKET_MIN
#undef UTIL_BUCKET_MAX
#undef UTIL_STREAM_ID_MAX
