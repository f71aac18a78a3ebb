/*
** sigv4.c -- AWS Signature Version 4, header form, as a pure function.
**
** The caller passes everything, the date included, so the function is
** checked against the AWS test-suite cases unchanged (test/vectors/sigv4).
** The steps, each a string built from the one before:
**
**   1. CANONICAL REQUEST, lines joined by "\n":
**        method
**        canonical path    S3: the path exactly as sent (already encoded
**                          once, see sigv4_uri_encode); other services:
**                          "." and ".." segments and repeated "/" removed
**                          (when asked), then every byte encoded
**        canonical query   each name=value pair decoded and encoded again,
**                          sorted by name, then value; "name=" when empty;
**                          joined by "&"
**        canonical headers one "name:value\n" per header name, names in
**                          lowercase and sorted, values trimmed with inner
**                          runs of blanks as one space, repeated names
**                          joined by "," in the order given
**        signed headers    the names, joined by ";"
**        payload hash      hex SHA-256 of the body, or "UNSIGNED-PAYLOAD"
**   2. STRING TO SIGN: "AWS4-HMAC-SHA256\n" date-time "\n" scope "\n"
**      hex SHA-256 of the canonical request; scope = "YYYYMMDD/region/
**      service/aws4_request".
**   3. SIGNING KEY: HMAC chain over "AWS4" + secret: date, region,
**      service, "aws4_request".
**   4. SIGNATURE: hex HMAC(signing key, string to sign).
**   Authorization: "AWS4-HMAC-SHA256 Credential=AK/scope,
**   SignedHeaders=..., Signature=...".
**
** URI encoding: the unreserved characters A-Z a-z 0-9 - . _ ~ stay, every
** other byte is %XX in uppercase hex.
*/
#include "internal.h"

#define SIGV4_MAX_HEADERS 64

URSULA_PRIVATE int sigv4_uri_encode(struct buf *out, const void *p, size_t n,
                                    int keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  const unsigned char *q = (const unsigned char *)p;
  size_t i;
  int rc = URSULA_OK;
  for (i = 0; i < n && rc == URSULA_OK; i++) {
    unsigned char c = q[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
        (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
        c == '~' || (c == '/' && keep_slash)) {
      rc = buf_append(out, &q[i], 1);
    } else {
      char e[3];
      e[0] = '%';
      e[1] = hex[c >> 4];
      e[2] = hex[c & 15];
      rc = buf_append(out, e, 3);
    }
  }
  return rc;
}

static int sigv4_hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decode s into out ("+" stays "+"). */
static int sigv4_decode(struct str s, struct buf *out) {
  size_t i;
  for (i = 0; i < s.len; i++) {
    char c = s.ptr[i];
    if (c == '%' && i + 2 < s.len && sigv4_hexval(s.ptr[i + 1]) >= 0 &&
        sigv4_hexval(s.ptr[i + 2]) >= 0) {
      c = (char)(sigv4_hexval(s.ptr[i + 1]) * 16 + sigv4_hexval(s.ptr[i + 2]));
      i += 2;
    }
    if (buf_append(out, &c, 1) != URSULA_OK) return URSULA_ENOMEM;
  }
  return URSULA_OK;
}

/* ------------------------------------------------------------ the path */

/* The path with "." and ".." segments and empty segments removed (RFC
** 3986 5.2.4, as the non-S3 services do); a trailing "/" stays. */
static int sigv4_normalize(struct str path, struct buf *out) {
  size_t i = 0, start;
  out->len = 0;
  while (i < path.len) {
    struct str seg;
    while (i < path.len && path.ptr[i] == '/') i++;
    start = i;
    while (i < path.len && path.ptr[i] != '/') i++;
    seg.ptr = path.ptr + start;
    seg.len = i - start;
    if (seg.len == 0 || util_str_eq(seg, ".")) continue;
    if (util_str_eq(seg, "..")) { /* drop the last segment */
      while (out->len > 0 && out->ptr[out->len - 1] != '/') out->len--;
      if (out->len > 0) out->len--;
      continue;
    }
    if (buf_append(out, "/", 1) || buf_append(out, seg.ptr, seg.len))
      return URSULA_ENOMEM;
  }
  if (out->len == 0 || (path.len > 0 && path.ptr[path.len - 1] == '/'))
    return buf_append(out, "/", 1);
  return URSULA_OK;
}

static int sigv4_path(const struct sigv4_request *r, struct buf *out) {
  struct buf norm;
  int rc;
  if (r->path.len == 0) return buf_append(out, "/", 1);
  if (r->s3) return buf_append(out, r->path.ptr, r->path.len);
  memset(&norm, 0, sizeof(norm));
  rc = r->normalize ? sigv4_normalize(r->path, &norm)
                    : buf_append(&norm, r->path.ptr, r->path.len);
  if (rc == URSULA_OK) rc = sigv4_uri_encode(out, norm.ptr, norm.len, 1);
  buf_free(&norm);
  return rc;
}

/* ------------------------------------------------------------ the query */

struct sigv4_param {
  size_t name, name_len, value, value_len; /* offsets into one buffer */
};

/* Whether parameter x sorts before y (by name, then value, bytewise), both
** held in base.  No qsort here: its comparison could see base only
** through file-scope state, and several threads sign at once. */
static int sigv4_param_less(const char *base, const struct sigv4_param *x,
                            const struct sigv4_param *y) {
  size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
  int c = memcmp(base + x->name, base + y->name, n);
  if (c != 0) return c < 0;
  if (x->name_len != y->name_len) return x->name_len < y->name_len;
  n = x->value_len < y->value_len ? x->value_len : y->value_len;
  c = memcmp(base + x->value, base + y->value, n);
  if (c != 0) return c < 0;
  return x->value_len < y->value_len;
}

/* Sort p[0..n) with sigv4_param_less (insertion sort: n <= 128). */
static void sigv4_sort_params(const char *base, struct sigv4_param *p,
                              size_t n) {
  size_t i, j;
  for (i = 1; i < n; i++) {
    struct sigv4_param t = p[i];
    for (j = i; j > 0 && sigv4_param_less(base, &t, &p[j - 1]); j--)
      p[j] = p[j - 1];
    p[j] = t;
  }
}

/* Append the encoded form of the decoded s to enc; set *off, *len. */
static int sigv4_reencode(struct str s, struct buf *tmp, struct buf *enc,
                          size_t *off, size_t *len) {
  tmp->len = 0;
  if (sigv4_decode(s, tmp) != URSULA_OK) return URSULA_ENOMEM;
  *off = enc->len;
  if (sigv4_uri_encode(enc, tmp->ptr, tmp->len, 0) != URSULA_OK)
    return URSULA_ENOMEM;
  *len = enc->len - *off;
  return URSULA_OK;
}

static int sigv4_query(struct str q, struct buf *out) {
  struct sigv4_param params[128];
  struct buf enc, tmp;
  size_t n = 0, i = 0, k;
  int rc = URSULA_OK;
  memset(&enc, 0, sizeof(enc));
  memset(&tmp, 0, sizeof(tmp));
  while (i < q.len && rc == URSULA_OK) {
    struct str pair, name, value;
    size_t start = i, eq;
    while (i < q.len && q.ptr[i] != '&') i++;
    pair.ptr = q.ptr + start;
    pair.len = i - start;
    i++; /* the '&' */
    if (pair.len == 0) continue;
    if (n == sizeof(params) / sizeof(params[0])) {
      rc = URSULA_EINVAL;
      break;
    }
    for (eq = 0; eq < pair.len && pair.ptr[eq] != '='; eq++) {
    }
    name.ptr = pair.ptr;
    name.len = eq;
    value.ptr = pair.ptr + (eq < pair.len ? eq + 1 : eq);
    value.len = eq < pair.len ? pair.len - eq - 1 : 0;
    rc = sigv4_reencode(name, &tmp, &enc, &params[n].name, &params[n].name_len);
    if (rc == URSULA_OK)
      rc = sigv4_reencode(value, &tmp, &enc, &params[n].value,
                          &params[n].value_len);
    n++;
  }
  if (rc == URSULA_OK) {
    sigv4_sort_params(enc.ptr, params, n);
    for (k = 0; k < n && rc == URSULA_OK; k++) {
      if (k > 0) rc |= buf_append(out, "&", 1);
      rc |= buf_append(out, enc.ptr + params[k].name, params[k].name_len);
      rc |= buf_append(out, "=", 1);
      rc |= buf_append(out, enc.ptr + params[k].value, params[k].value_len);
    }
  }
  buf_free(&enc);
  buf_free(&tmp);
  return rc;
}

/* ------------------------------------------------------------ headers */

static int sigv4_same_name(const struct http_header *a,
                           const struct http_header *b) {
  size_t i;
  if (a->name.len != b->name.len) return 0;
  for (i = 0; i < a->name.len; i++) {
    int x = a->name.ptr[i], y = b->name.ptr[i];
    if (x >= 'A' && x <= 'Z') x += 32;
    if (y >= 'A' && y <= 'Z') y += 32;
    if (x != y) return 0;
  }
  return 1;
}

static int sigv4_header_cmp(const void *a, const void *b) {
  const struct http_header *x = *(const struct http_header *const *)a;
  const struct http_header *y = *(const struct http_header *const *)b;
  size_t n = x->name.len < y->name.len ? x->name.len : y->name.len, i;
  for (i = 0; i < n; i++) {
    int cx = x->name.ptr[i], cy = y->name.ptr[i];
    if (cx >= 'A' && cx <= 'Z') cx += 32;
    if (cy >= 'A' && cy <= 'Z') cy += 32;
    if (cx != cy) return cx - cy;
  }
  if (x->name.len != y->name.len) return x->name.len < y->name.len ? -1 : 1;
  return x < y ? -1 : (x > y); /* the order given, for repeated names */
}

/* value trimmed, every run of blanks (line breaks too) as one space */
static int sigv4_header_value(struct str v, struct buf *out) {
  size_t i;
  int space = 0, any = 0;
  for (i = 0; i < v.len; i++) {
    char c = v.ptr[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      space = any;
      continue;
    }
    if (space && buf_append(out, " ", 1)) return URSULA_ENOMEM;
    if (buf_append(out, &c, 1)) return URSULA_ENOMEM;
    space = 0;
    any = 1;
  }
  return URSULA_OK;
}

static int sigv4_lower(struct buf *out, struct str s) {
  size_t i;
  for (i = 0; i < s.len; i++) {
    char c = s.ptr[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
    if (buf_append(out, &c, 1)) return URSULA_ENOMEM;
  }
  return URSULA_OK;
}

/* Append the canonical headers to creq and the signed-headers list to
** signed_list. */
static int sigv4_headers(const struct sigv4_request *r, struct buf *creq,
                         struct buf *signed_list) {
  const struct http_header *sorted[SIGV4_MAX_HEADERS];
  size_t i;
  int rc = URSULA_OK;
  if (r->n_headers > SIGV4_MAX_HEADERS) return URSULA_EINVAL;
  for (i = 0; i < r->n_headers; i++) sorted[i] = &r->headers[i];
  qsort(sorted, r->n_headers, sizeof(sorted[0]), sigv4_header_cmp);
  for (i = 0; i < r->n_headers && rc == URSULA_OK; i++) {
    int same = i > 0 && sigv4_same_name(sorted[i - 1], sorted[i]);
    if (same) {    /* the same name again: its value joins with ',' */
      creq->len--; /* the "\n" */
      rc |= buf_append(creq, ",", 1);
    } else {
      if (i > 0) rc |= buf_append(signed_list, ";", 1);
      rc |= sigv4_lower(signed_list, sorted[i]->name);
      rc |= sigv4_lower(creq, sorted[i]->name);
      rc |= buf_append(creq, ":", 1);
    }
    rc |= sigv4_header_value(sorted[i]->value, creq);
    rc |= buf_append(creq, "\n", 1);
  }
  return rc ? URSULA_ENOMEM : URSULA_OK;
}

/* ------------------------------------------------------------ signing */

URSULA_PRIVATE int sigv4_sign(const struct sigv4_request *r, struct buf *auth,
                              struct buf *creq_out, struct buf *sts_out) {
  struct buf creq, sts, list, key;
  unsigned char h[32], k[32];
  char hex[65], date[9];
  size_t i;
  int rc = URSULA_OK;
  if (r->amz_date.len != 16 || r->amz_date.ptr[8] != 'T') return URSULA_EINVAL;
  memcpy(date, r->amz_date.ptr, 8);
  date[8] = '\0';
  memset(&creq, 0, sizeof(creq));
  memset(&sts, 0, sizeof(sts));
  memset(&list, 0, sizeof(list));
  memset(&key, 0, sizeof(key));
  /* 1. the canonical request */
  rc |= buf_append(&creq, r->method.ptr, r->method.len);
  rc |= buf_append(&creq, "\n", 1);
  rc |= sigv4_path(r, &creq);
  rc |= buf_append(&creq, "\n", 1);
  if (rc == URSULA_OK) rc = sigv4_query(r->query, &creq);
  rc |= buf_append(&creq, "\n", 1);
  if (rc == URSULA_OK) rc = sigv4_headers(r, &creq, &list);
  rc |= buf_append(&creq, "\n", 1);
  rc |= buf_append(&creq, list.ptr, list.len);
  rc |= buf_append(&creq, "\n", 1);
  rc |= buf_append(&creq, r->payload_hash.ptr, r->payload_hash.len);
  /* 2. the string to sign */
  crypto_sha256(creq.ptr, creq.len, h);
  crypto_hex(h, 32, hex);
  rc |=
      buf_printf(&sts, "AWS4-HMAC-SHA256\n%.16s\n%s/%.*s/%.*s/aws4_request\n%s",
                 r->amz_date.ptr, date, (int)r->region.len, r->region.ptr,
                 (int)r->service.len, r->service.ptr, hex);
  /* 3. the signing key */
  rc |= buf_append(&key, "AWS4", 4);
  rc |= buf_append(&key, r->secret_key.ptr, r->secret_key.len);
  if (rc == URSULA_OK) {
    crypto_hmac_sha256(key.ptr, key.len, date, 8, k);
    crypto_hmac_sha256(k, 32, r->region.ptr, r->region.len, k);
    crypto_hmac_sha256(k, 32, r->service.ptr, r->service.len, k);
    crypto_hmac_sha256(k, 32, "aws4_request", 12, k);
    /* 4. the signature */
    crypto_hmac_sha256(k, 32, sts.ptr, sts.len, h);
    crypto_hex(h, 32, hex);
    rc = buf_printf(auth,
                    "AWS4-HMAC-SHA256 Credential=%.*s/%s/%.*s/%.*s/"
                    "aws4_request, SignedHeaders=%.*s, Signature=%s",
                    (int)r->access_key.len, r->access_key.ptr, date,
                    (int)r->region.len, r->region.ptr, (int)r->service.len,
                    r->service.ptr, (int)list.len, list.ptr, hex);
  }
  if (rc == URSULA_OK && creq_out != NULL)
    rc = buf_append(creq_out, creq.ptr, creq.len);
  if (rc == URSULA_OK && sts_out != NULL)
    rc = buf_append(sts_out, sts.ptr, sts.len);
  for (i = 0; i < key.len; i++) key.ptr[i] = 0; /* the secret */
  memset(k, 0, sizeof(k));
  buf_free(&creq);
  buf_free(&sts);
  buf_free(&list);
  buf_free(&key);
  return rc == URSULA_OK       ? URSULA_OK
         : rc == URSULA_EINVAL ? URSULA_EINVAL
                               : URSULA_ENOMEM;
}
