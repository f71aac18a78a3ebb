/*
** auth.c -- bearer tokens: the auth file, its table, and the check of a
** request's token (issue 17, item 5).
**
** With --auth-file FILE (config key auth-file; default none: no
** authentication, every request served as before), every request on the
** public listener but OPTIONS carries "Authorization: Bearer TOKEN"
** (RFC 6750 section 2.1; the scheme name is case-insensitive, RFC 9110
** section 11.1), and so do the admin listener's /metrics and
** /__ursula/cluster.  api.c applies the rules; this file holds the table
** and answers one question: may this token do this to this path?
**
** THE FILE.  UTF-8 text, one entry a line; blank lines, and lines whose
** first non-blank is '#', are skipped (a comment may hold any UTF-8; a
** '#' after the fields is not a comment but a fifth field, an error).
** A CR before the line end is dropped, and so is a byte order mark before
** the first line.  Every other line is four fields separated by runs of
** spaces or tabs:
**
**   NAME SCOPES PREFIX SHA256HEX
**
**   NAME       1-64 of [A-Za-z0-9._-], unique in the file: what the logs
**              call the entry (never the token)
**   SCOPES     a comma-separated, non-empty set of read, write, admin
**              (each at most once, no blanks): read = GET and HEAD of a
**              stream (catch-up, long-poll, SSE); write = PUT, POST,
**              DELETE; admin = /metrics and /__ursula/cluster
**   PREFIX     '*' (every path), or a path prefix beginning with '/', of
**              printable ASCII (a request path is ASCII: other bytes
**              are percent-encoded), at most URSULA_MAX_PATH_BYTES:
**              a stream path is covered if it equals the prefix or
**              starts with it, byte for byte as the request sends it.
**              So "/a/" covers "/a/x" but not "/ab"; "/a" covers both:
**              end a directory-like prefix with '/'.  (A path with "."
**              or ".." segments never gets this far: api.c answers 400.)
**              The admin paths are checked by scope alone.
**   SHA256HEX  64 lowercase hex digits: the SHA-256 of the token's bytes,
**              as `printf %s "$TOKEN" | sha256sum` prints it.  Two
**              entries may not have the same one.  The file never holds
**              a token.
**
** At most AUTH_MAX_ENTRIES entries, lines of at most AUTH_LINE_MAX
** bytes.  A file with no entry is valid: it refuses every token.  A bad
** line fails the whole load with "FILE:LINE: reason"; the reason never
** quotes a hash.  At start that ends the program (exit 2, as a bad flag
** does: main.c); at a reload (SIGHUP, ursula_server_reload) the table in
** force stays.
**
** THE CHECK.  A token is 16..512 bytes of token68 (RFC 6750's b64token:
** A-Z a-z 0-9 - . _ ~ + / then '='s); a shorter or longer one is refused
** like a wrong one.  Its SHA-256 is compared with every entry's hash in
** constant time: every byte of every entry is looked at, whether or not
** one matched, so the time taken says nothing about how close a guess
** was, nor which entry matched.  Then the matched entry's scopes and
** prefix decide.  The outcome is 0 (granted), 401 (no entry has that
** token) or 403 (an entry does, but not this scope or path).
**
** LIFETIME.  A table is immutable once loaded, and reference counted
** (the count under its own mutex): the server holds the one in force and
** each core holds the one it uses; a reload hands every core the new one
** (server.c), and the old one is freed by whoever lets go of it last.
** Nothing on the request path takes a lock: a core reads its own pointer.
*/
#include "internal.h"

#define AUTH_NAME_MAX 64
#define AUTH_LINE_MAX 4096           /* bytes of a line, without its end */
#define AUTH_FILE_MAX (64 << 20)     /* bytes of the whole file */

struct auth_entry {
  char name[AUTH_NAME_MAX + 1];
  unsigned scopes; /* AUTH_READ | AUTH_WRITE | AUTH_ADMIN */
  int line;        /* where it is in the file */
  char *prefix;    /* owned, NUL-terminated; NULL: '*', every path */
  size_t prefix_len;
  unsigned char hash[CRYPTO_SHA256_LEN];
};

struct auth_table {
  pthread_mutex_t mu; /* guards refs */
  int refs;
  int n;
  struct auth_entry *e;
};

/* ------------------------------------------------------------ the table */

static void auth_free(struct auth_table *t) {
  int i;
  for (i = 0; i < t->n; i++) URSULA_FREE(t->e[i].prefix);
  URSULA_FREE(t->e);
  pthread_mutex_destroy(&t->mu);
  URSULA_FREE(t);
}

URSULA_PRIVATE struct auth_table *auth_hold(struct auth_table *t) {
  if (t == NULL) return NULL;
  pthread_mutex_lock(&t->mu);
  t->refs++;
  pthread_mutex_unlock(&t->mu);
  return t;
}

URSULA_PRIVATE void auth_release(struct auth_table *t) {
  int left;
  if (t == NULL) return;
  pthread_mutex_lock(&t->mu);
  left = --t->refs;
  pthread_mutex_unlock(&t->mu);
  if (left == 0) auth_free(t);
}

URSULA_PRIVATE int auth_count(const struct auth_table *t) {
  return t != NULL ? t->n : 0;
}

/* ------------------------------------------------------------ parsing */

static int auth_fail(char *err, const char *file, int line, const char *why) {
  if (err != NULL)
    snprintf(err, URSULA_ERRMSG_LEN, "%.900s:%d: %s", file, line, why);
  return URSULA_EINVAL;
}

static int auth_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

static int auth_hex(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                                : -1;
}

/* SCOPES into *out; NULL, or why it is not a valid set. */
static const char *auth_parse_scopes(struct str s, unsigned *out) {
  size_t i = 0;
  *out = 0;
  for (;;) {
    size_t start = i;
    struct str one;
    unsigned bit;
    while (i < s.len && s.ptr[i] != ',') i++;
    one.ptr = s.ptr + start;
    one.len = i - start;
    if (one.len == 0)
      return "scopes: an empty scope (scopes are read, write, admin, "
             "separated by ',' alone)";
    if (util_str_eq(one, "read"))
      bit = AUTH_READ;
    else if (util_str_eq(one, "write"))
      bit = AUTH_WRITE;
    else if (util_str_eq(one, "admin"))
      bit = AUTH_ADMIN;
    else
      return "scopes: unknown scope (scopes are read, write, admin)";
    if (*out & bit) return "scopes: a scope is given twice";
    *out |= bit;
    if (i == s.len) return NULL;
    i++; /* the ',' */
  }
}

/* Fill e from the fields of one line; NULL, or why the line is bad. */
static const char *auth_parse_entry(struct str *f, int n, struct auth_entry *e) {
  const char *why;
  size_t i;
  if (n != 4)
    return "expected 4 fields, NAME SCOPES PREFIX SHA256HEX, separated by "
           "spaces or tabs";
  if (f[0].len < 1 || f[0].len > AUTH_NAME_MAX)
    return "name: 1-64 of A-Z a-z 0-9 . _ -";
  for (i = 0; i < f[0].len; i++)
    if (!auth_name_char(f[0].ptr[i])) return "name: 1-64 of A-Z a-z 0-9 . _ -";
  memcpy(e->name, f[0].ptr, f[0].len);
  e->name[f[0].len] = '\0';
  if ((why = auth_parse_scopes(f[1], &e->scopes)) != NULL) return why;
  if (!util_str_eq(f[2], "*")) {
    if (f[2].ptr[0] != '/') return "prefix: '*', or a path beginning with '/'";
    if (f[2].len > URSULA_MAX_PATH_BYTES)
      return "prefix: longer than the longest stream path";
    for (i = 0; i < f[2].len; i++) {
      unsigned char c = (unsigned char)f[2].ptr[i];
      if (c <= 0x20 || c >= 0x7f)
        return "prefix: printable ASCII only (percent-encode other bytes, "
               "as request paths do)";
    }
    e->prefix = (char *)URSULA_MALLOC(f[2].len + 1);
    if (e->prefix == NULL) return "out of memory";
    memcpy(e->prefix, f[2].ptr, f[2].len);
    e->prefix[f[2].len] = '\0';
    e->prefix_len = f[2].len;
  }
  if (f[3].len != 2 * CRYPTO_SHA256_LEN)
    return "hash: 64 lowercase hex digits, the SHA-256 of the token "
           "(printf %s \"$TOKEN\" | sha256sum)";
  for (i = 0; i < CRYPTO_SHA256_LEN; i++) {
    int hi = auth_hex(f[3].ptr[2 * i]), lo = auth_hex(f[3].ptr[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return "hash: 64 lowercase hex digits, the SHA-256 of the token "
             "(printf %s \"$TOKEN\" | sha256sum)";
    e->hash[i] = (unsigned char)(hi << 4 | lo);
  }
  return NULL;
}

static int auth_by_name(const void *a, const void *b) {
  const struct auth_entry *x = *(const struct auth_entry *const *)a;
  const struct auth_entry *y = *(const struct auth_entry *const *)b;
  int c = strcmp(x->name, y->name);
  return c != 0 ? c : x->line - y->line;
}

static int auth_by_hash(const void *a, const void *b) {
  const struct auth_entry *x = *(const struct auth_entry *const *)a;
  const struct auth_entry *y = *(const struct auth_entry *const *)b;
  int c = memcmp(x->hash, y->hash, CRYPTO_SHA256_LEN);
  return c != 0 ? c : x->line - y->line;
}

/* The two uniqueness rules: URSULA_OK, or the error at the first line
** (in file order) that repeats an earlier one's name or hash. */
static int auth_check_unique(struct auth_table *t, const char *file,
                             char *err) {
  struct auth_entry **v;
  int i, pass, bad_line = 0, first = 0;
  const char *why = NULL;
  char msg[160];
  if (t->n < 2) return URSULA_OK;
  v = (struct auth_entry **)URSULA_MALLOC(sizeof(*v) * (size_t)t->n);
  if (v == NULL) {
    if (err != NULL) snprintf(err, URSULA_ERRMSG_LEN, "%s: out of memory", file);
    return URSULA_ENOMEM;
  }
  for (pass = 0; pass < 2; pass++) {
    for (i = 0; i < t->n; i++) v[i] = &t->e[i];
    qsort(v, (size_t)t->n, sizeof(*v), pass == 0 ? auth_by_name : auth_by_hash);
    for (i = 1; i < t->n; i++) {
      int same = pass == 0 ? strcmp(v[i]->name, v[i - 1]->name) == 0
                           : memcmp(v[i]->hash, v[i - 1]->hash,
                                    CRYPTO_SHA256_LEN) == 0;
      if (same && (bad_line == 0 || v[i]->line < bad_line)) {
        bad_line = v[i]->line;
        first = v[i - 1]->line;
        why = pass == 0 ? "name" : "hash";
      }
    }
  }
  URSULA_FREE(v);
  if (bad_line == 0) return URSULA_OK;
  if (why[0] == 'n')
    snprintf(msg, sizeof(msg), "name: the same as on line %d (names are "
             "unique)", first);
  else
    snprintf(msg, sizeof(msg), "hash: the same token as on line %d (a token "
             "has one entry)", first);
  return auth_fail(err, file, bad_line, msg);
}

URSULA_PRIVATE int auth_parse(const char *text, size_t len, const char *file,
                              struct auth_table **out, char *err) {
  struct auth_table *t;
  size_t pos = 0, cap = 0;
  int line = 0, rc = URSULA_OK;
  t = (struct auth_table *)URSULA_MALLOC(sizeof(*t));
  if (t == NULL) return URSULA_ENOMEM;
  memset(t, 0, sizeof(*t));
  pthread_mutex_init(&t->mu, NULL);
  t->refs = 1;
  if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) pos = 3;
  while (pos < len && rc == URSULA_OK) {
    size_t end = pos, i, k;
    struct str f[5];
    int n = 0;
    const char *why = NULL;
    line++;
    while (end < len && text[end] != '\n') end++;
    k = end;
    if (k > pos && text[k - 1] == '\r') k--;
    if (k - pos > AUTH_LINE_MAX) why = "line longer than 4096 bytes";
    for (i = pos; i < k && why == NULL; i++) {
      unsigned char c = (unsigned char)text[i];
      if ((c < 0x20 && c != '\t') || c == 0x7f) why = "a control character";
    }
    for (i = pos; i < k && why == NULL && n <= 4;) { /* the fields */
      while (i < k && (text[i] == ' ' || text[i] == '\t')) i++;
      if (i == k || (n == 0 && text[i] == '#')) break;
      f[n].ptr = text + i;
      while (i < k && text[i] != ' ' && text[i] != '\t') i++;
      f[n].len = (size_t)(text + i - f[n].ptr);
      n++;
    }
    pos = end < len ? end + 1 : end;
    if (why == NULL && n == 0) continue; /* blank, or a comment */
    if (why == NULL && t->n == AUTH_MAX_ENTRIES)
      why = "more than 10000 entries";
    if (why == NULL && t->n == (int)cap) {
      size_t ncap = cap ? 2 * cap : 16;
      struct auth_entry *ne = (struct auth_entry *)URSULA_REALLOC(
          t->e, ncap * sizeof(*ne));
      if (ne == NULL) {
        why = "out of memory";
      } else {
        t->e = ne;
        cap = ncap;
      }
    }
    if (why == NULL) {
      struct auth_entry *e = &t->e[t->n];
      memset(e, 0, sizeof(*e));
      e->line = line;
      t->n++; /* counted now, so that auth_free frees its prefix */
      why = auth_parse_entry(f, n, e);
    }
    if (why != NULL) rc = auth_fail(err, file, line, why);
  }
  if (rc == URSULA_OK) rc = auth_check_unique(t, file, err);
  if (rc != URSULA_OK) {
    auth_free(t);
    return rc;
  }
  *out = t;
  return URSULA_OK;
}

URSULA_PRIVATE int auth_load(const char *path, struct auth_table **out,
                             char *err) {
  FILE *f;
  struct buf text;
  char chunk[65536];
  size_t got;
  const char *z;
  int rc = URSULA_OK;
  f = fopen(path, "rb");
  if (f == NULL) {
    if (err != NULL)
      snprintf(err, URSULA_ERRMSG_LEN, "%.900s: cannot open: %s", path,
               strerror(errno));
    return URSULA_EIO;
  }
  memset(&text, 0, sizeof(text));
  while (rc == URSULA_OK && (got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
    if (text.len + got > (size_t)AUTH_FILE_MAX) {
      if (err != NULL)
        snprintf(err, URSULA_ERRMSG_LEN, "%.900s: larger than 64 MiB", path);
      rc = URSULA_EIO;
    } else if (buf_append(&text, chunk, got) != URSULA_OK) {
      if (err != NULL)
        snprintf(err, URSULA_ERRMSG_LEN, "%.900s: out of memory", path);
      rc = URSULA_ENOMEM;
    }
  }
  if (rc == URSULA_OK && ferror(f)) {
    if (err != NULL)
      snprintf(err, URSULA_ERRMSG_LEN, "%.900s: read error", path);
    rc = URSULA_EIO;
  }
  fclose(f);
  if (rc != URSULA_OK) {
    buf_free(&text);
    return rc;
  }
  z = text.len > 0 ? (const char *)memchr(text.ptr, '\0', text.len) : NULL;
  if (z != NULL) { /* the line of the first NUL, for the message */
    const char *p;
    int line = 1;
    for (p = text.ptr; p < z; p++)
      if (*p == '\n') line++;
    rc = auth_fail(err, path, line, "a NUL byte");
  } else {
    rc = auth_parse(text.len > 0 ? text.ptr : "", text.len, path, out, err);
  }
  buf_free(&text);
  return rc;
}

/* ------------------------------------------------------------ checking */

URSULA_PRIVATE int auth_bearer(struct str v, struct str *token) {
  size_t i = 0, start;
  v = util_str_trim(v);
  while (i < v.len && v.ptr[i] != ' ' && v.ptr[i] != '\t') i++;
  {
    struct str scheme;
    scheme.ptr = v.ptr;
    scheme.len = i;
    if (!util_str_ieq(scheme, "Bearer")) return AUTH_NO_BEARER;
  }
  while (i < v.len && v.ptr[i] == ' ') i++;
  start = i;
  while (i < v.len && (auth_name_char(v.ptr[i]) || v.ptr[i] == '~' ||
                       v.ptr[i] == '+' || v.ptr[i] == '/'))
    i++;
  if (i == start) return AUTH_MALFORMED;
  while (i < v.len && v.ptr[i] == '=') i++;
  if (i != v.len) return AUTH_MALFORMED;
  token->ptr = v.ptr + start;
  token->len = i - start;
  return AUTH_BEARER;
}

URSULA_PRIVATE void auth_hash(const char *token, size_t len,
                              unsigned char out[CRYPTO_SHA256_LEN]) {
  crypto_sha256(token, len, out);
}

/* 1 if a and b are equal, else 0, having looked at every byte of both. */
static unsigned auth_same(const unsigned char *a, const unsigned char *b) {
  unsigned d = 0;
  int i;
  for (i = 0; i < CRYPTO_SHA256_LEN; i++) d |= (unsigned)(a[i] ^ b[i]);
  return 1u & ((d - 1u) >> 8); /* d is 0..255: 1 only for 0 */
}

URSULA_PRIVATE int auth_check_hash(const struct auth_table *t,
                                   const unsigned char h[CRYPTO_SHA256_LEN],
                                   unsigned scope, const char *path,
                                   size_t path_len, size_t *walked) {
  const struct auth_entry *e;
  size_t i, which = 0, n = (size_t)auth_count(t);
  unsigned found = 0;
  for (i = 0; i < n; i++) { /* every entry, no exit on a match */
    unsigned m = auth_same(t->e[i].hash, h);
    size_t mask = (size_t)0 - (size_t)m;
    which = (which & ~mask) | (i & mask);
    found |= m;
  }
  if (walked != NULL) *walked = i;
  if (!found) return 401;
  e = &t->e[which];
  if ((e->scopes & scope) != scope) return 403;
  if (path != NULL && e->prefix != NULL &&
      (path_len < e->prefix_len || memcmp(path, e->prefix, e->prefix_len) != 0))
    return 403;
  return 0;
}

URSULA_PRIVATE int auth_check(const struct auth_table *t, const char *token,
                              size_t len, unsigned scope, const char *path,
                              size_t path_len,
                              unsigned char *hash_out) {
  unsigned char h[CRYPTO_SHA256_LEN];
  if (len < AUTH_TOKEN_MIN || len > AUTH_TOKEN_MAX) return 401;
  auth_hash(token, len, h);
  if (hash_out != NULL) memcpy(hash_out, h, sizeof(h));
  return auth_check_hash(t, h, scope, path, path_len, NULL);
}

#undef AUTH_NAME_MAX
#undef AUTH_LINE_MAX
#undef AUTH_FILE_MAX
