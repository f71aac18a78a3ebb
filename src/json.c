/*
** json.c -- validation and one-level flattening of JSON appends.
**
** In JSON mode a POST body is one JSON text (RFC 8259).  If it is an
** array, each element is one message; otherwise the whole value is one
** message.  A message is stored as its exact bytes (whitespace around it
** trimmed, whitespace inside kept) followed by one ',':
**
**     body                        stored
**     [1, {"a": 2} ,"x"]          1,{"a": 2},"x",
**     [[1,2],3]                   [1,2],3,
**      {"a":1}                    {"a":1},
**     []                          (nothing, 0 messages)
**
** A reader serves any run of whole messages as '[' + the stored bytes
** without their last ',' + ']', so nothing is ever re-serialised.
**
** VALIDATION is strict: the RFC 8259 grammar, UTF-8 per RFC 3629 (no
** overlong forms, no UTF-16 surrogates D800-DFFF, nothing above U+10FFFF,
** no truncated sequences), no raw control characters in strings, only
** SP HTAB LF CR as whitespace (so no BOM).  Escapes \uD800..\uDFFF are
** accepted unpaired: they are well-formed by the grammar.
**
** The scanner is iterative.  Open containers are a bit stack (1 = object)
** bounded by URSULA_MAX_JSON_DEPTH, so hostile nesting cannot exhaust the
** C stack, and each input byte is examined a bounded number of times:
** linear time, whatever the shape of the input.
**
** STORED RUNS (json_prefix_len, json_count) are read back without
** validation: they were valid when stored, so tracking strings (with their
** escapes) and bracket depth is enough to find the top-level commas.
*/
#include "internal.h"

/* What json_open() and json_close() tell the scanner's main loop. */
enum {
  JSON_NEED_VALUE = 1, /* a value must start at s->at (blanks skipped) */
  JSON_HAVE_VALUE = 2, /* a value has just ended at s->at */
  JSON_DONE = 3        /* the outermost value has ended at s->at */
};

/* The scanner over p[0..len). */
struct json_scan {
  const unsigned char *p;
  size_t len;
  size_t at;    /* the next byte to look at */
  size_t depth; /* containers open */
  unsigned char objs[(URSULA_MAX_JSON_DEPTH + 7) / 8]; /* bit set: object */
  /* flattening, when the outermost value is an array (else out is NULL) */
  struct buf *out;
  size_t n;    /* elements stored */
  size_t elem; /* where the current element begins */
};

/* ------------------------------------------------------------ tokens */

static void json_blanks(struct json_scan *s) {
  while (s->at < s->len) {
    unsigned char ch = s->p[s->at];
    if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') return;
    s->at++;
  }
}

static int json_is_digit(unsigned char ch) {
  return ch >= '0' && ch <= '9';
}

static int json_is_hex(unsigned char ch) {
  return json_is_digit(ch) || (ch >= 'a' && ch <= 'f') ||
         (ch >= 'A' && ch <= 'F');
}

/* One multi-byte UTF-8 character; its lead byte (>= 0x80) is at s->at.
** Decodes it and rejects what RFC 3629 forbids.  Returns 0 or -1. */
static int json_utf8(struct json_scan *s) {
  const unsigned char *q = s->p + s->at;
  size_t n, i;
  uint32_t cp, min;
  if (q[0] >= 0xF8 || q[0] < 0xC0) {
    return -1; /* not a lead byte (0x80-0xBF continue, 0xF8- never used) */
  } else if (q[0] >= 0xF0) {
    n = 4, cp = q[0] & 0x07u, min = 0x10000;
  } else if (q[0] >= 0xE0) {
    n = 3, cp = q[0] & 0x0Fu, min = 0x800;
  } else {
    n = 2, cp = q[0] & 0x1Fu, min = 0x80;
  }
  if (s->len - s->at < n) return -1; /* truncated by the end of input */
  for (i = 1; i < n; i++) {
    if ((q[i] & 0xC0u) != 0x80u) return -1; /* truncated or stray lead */
    cp = cp << 6 | (q[i] & 0x3Fu);
  }
  if (cp < min) return -1; /* overlong */
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
  s->at += n;
  return 0;
}

/* A string; s->at is on its opening quote.  Returns 0 or -1. */
static int json_string(struct json_scan *s) {
  s->at++;
  while (s->at < s->len) {
    unsigned char ch = s->p[s->at];
    if (ch == '"') {
      s->at++;
      return 0;
    }
    if (ch < 0x20) return -1; /* raw control character */
    if (ch >= 0x80) {
      if (json_utf8(s) != 0) return -1;
      continue;
    }
    s->at++;
    if (ch != '\\') continue;
    if (s->at == s->len) return -1;
    ch = s->p[s->at++];
    if (ch == 'u') {
      size_t i;
      if (s->len - s->at < 4) return -1;
      for (i = 0; i < 4; i++)
        if (!json_is_hex(s->p[s->at + i])) return -1;
      s->at += 4;
    } else if (ch != '"' && ch != '\\' && ch != '/' && ch != 'b' && ch != 'f' &&
               ch != 'n' && ch != 'r' && ch != 't') {
      return -1;
    }
  }
  return -1; /* unterminated */
}

/* Skip a run of digits; returns how many there were. */
static size_t json_digits(struct json_scan *s) {
  size_t from = s->at;
  while (s->at < s->len && json_is_digit(s->p[s->at])) s->at++;
  return s->at - from;
}

/* number = [ "-" ] ( "0" / 1-9 *DIGIT ) [ "." 1*DIGIT ]
**          [ ( "e" / "E" ) [ "+" / "-" ] 1*DIGIT ]
** A digit after a leading "0" is left unread; whatever follows a value
** must be a delimiter, so the caller rejects it ("01"). */
static int json_number(struct json_scan *s) {
  if (s->p[s->at] == '-') s->at++;
  if (s->at == s->len) return -1;
  if (s->p[s->at] == '0')
    s->at++;
  else if (json_digits(s) == 0)
    return -1;
  if (s->at < s->len && s->p[s->at] == '.') {
    s->at++;
    if (json_digits(s) == 0) return -1;
  }
  if (s->at < s->len && (s->p[s->at] == 'e' || s->p[s->at] == 'E')) {
    s->at++;
    if (s->at < s->len && (s->p[s->at] == '+' || s->p[s->at] == '-')) s->at++;
    if (json_digits(s) == 0) return -1;
  }
  return 0;
}

static int json_literal(struct json_scan *s, const char *word) {
  size_t n = strlen(word);
  if (s->len - s->at < n || memcmp(s->p + s->at, word, n) != 0) return -1;
  s->at += n;
  return 0;
}

/* A string, number or literal at s->at (s->at < s->len). */
static int json_scalar(struct json_scan *s) {
  unsigned char ch = s->p[s->at];
  if (ch == '"') return json_string(s);
  if (ch == '-' || json_is_digit(ch)) return json_number(s);
  if (ch == 't') return json_literal(s, "true");
  if (ch == 'f') return json_literal(s, "false");
  if (ch == 'n') return json_literal(s, "null");
  return -1;
}

/* ------------------------------------------------------------ structure */

static int json_in_object(const struct json_scan *s) {
  size_t top = s->depth - 1;
  return (s->objs[top / 8] >> (top % 8)) & 1;
}

/* A member's key and its ':', blanks after each; s->at is where the key
** must start.  Then the member's value is needed. */
static int json_key(struct json_scan *s) {
  if (s->at == s->len || s->p[s->at] != '"' || json_string(s) != 0)
    return URSULA_EINVAL;
  json_blanks(s);
  if (s->at == s->len || s->p[s->at] != ':') return URSULA_EINVAL;
  s->at++;
  json_blanks(s);
  return JSON_NEED_VALUE;
}

/* Start the value at s->at: a scalar is read whole; '[' or '{' is opened
** (and closed at once if empty).  Returns JSON_NEED_VALUE (a container
** was opened and its first value is next), JSON_HAVE_VALUE or
** URSULA_EINVAL. */
static int json_open(struct json_scan *s) {
  unsigned char ch;
  int obj;
  if (s->at == s->len) return URSULA_EINVAL;
  ch = s->p[s->at];
  if (ch != '[' && ch != '{')
    return json_scalar(s) == 0 ? JSON_HAVE_VALUE : URSULA_EINVAL;
  if (s->depth == URSULA_MAX_JSON_DEPTH) return URSULA_EINVAL;
  obj = ch == '{';
  if (obj)
    s->objs[s->depth / 8] |= (unsigned char)(1u << (s->depth % 8));
  else
    s->objs[s->depth / 8] &= (unsigned char)~(1u << (s->depth % 8));
  s->depth++;
  s->at++;
  json_blanks(s);
  if (s->at < s->len && s->p[s->at] == (obj ? '}' : ']')) {
    s->at++;
    s->depth--;
    return JSON_HAVE_VALUE;
  }
  if (obj) return json_key(s);
  if (s->out != NULL && s->depth == 1) s->elem = s->at;
  return JSON_NEED_VALUE;
}

/* A value has just ended at s->at: store it if it is an element of the
** outermost array, then read the ',' before the next value, or close
** containers.  Returns JSON_NEED_VALUE, JSON_DONE, URSULA_EINVAL or
** URSULA_ENOMEM. */
static int json_close(struct json_scan *s) {
  while (s->depth > 0) {
    size_t end = s->at;
    int obj = json_in_object(s);
    unsigned char ch;
    json_blanks(s);
    if (s->at == s->len) return URSULA_EINVAL;
    ch = s->p[s->at];
    if (ch != ',' && ch != (obj ? '}' : ']')) return URSULA_EINVAL;
    if (s->out != NULL && s->depth == 1) {
      if (buf_append(s->out, s->p + s->elem, end - s->elem) != URSULA_OK ||
          buf_append(s->out, ",", 1) != URSULA_OK)
        return URSULA_ENOMEM;
      s->n++;
    }
    s->at++;
    if (ch == ',') {
      json_blanks(s);
      if (obj) return json_key(s);
      if (s->out != NULL && s->depth == 1) s->elem = s->at;
      return JSON_NEED_VALUE;
    }
    s->depth--;
  }
  return JSON_DONE;
}

/* One whole value at s->at (blanks before it skipped).  Returns URSULA_OK,
** URSULA_EINVAL or URSULA_ENOMEM; on success s->at is just past it. */
static int json_value(struct json_scan *s) {
  int rc = JSON_NEED_VALUE;
  for (;;) {
    if (rc == JSON_NEED_VALUE) rc = json_open(s);
    if (rc == JSON_HAVE_VALUE) rc = json_close(s);
    if (rc == JSON_DONE) return URSULA_OK;
    if (rc < 0) return rc;
  }
}

URSULA_PRIVATE int json_flatten(const char *p, size_t len, struct buf *out,
                                size_t *n_msgs) {
  struct json_scan s;
  size_t keep = out->len, start, end;
  int rc;
  memset(&s, 0, sizeof(s));
  s.p = (const unsigned char *)p;
  s.len = len;
  json_blanks(&s);
  start = s.at;
  if (start < len && p[start] == '[') s.out = out;
  /* What is stored is never longer than len + 1 bytes (the elements of an
  ** array are shorter than the array), so reserve it once up front. */
  if (buf_reserve(out, len + 1) != URSULA_OK) return URSULA_ENOMEM;
  rc = json_value(&s);
  end = s.at;
  if (rc == URSULA_OK) {
    json_blanks(&s);
    if (s.at != len) rc = URSULA_EINVAL; /* something after the value */
  }
  if (rc == URSULA_OK && s.out == NULL) {
    if (buf_append(out, p + start, end - start) != URSULA_OK ||
        buf_append(out, ",", 1) != URSULA_OK)
      rc = URSULA_ENOMEM;
    s.n = 1;
  }
  if (rc != URSULA_OK) {
    out->len = keep;
    if (out->ptr != NULL) out->ptr[keep] = '\0';
    return rc;
  }
  *n_msgs = s.n;
  return URSULA_OK;
}

/* ------------------------------------------------------------ stored runs */

/* Count the top-level commas of p[0..len), stopping at the max-th.
** Returns the count; *end is the offset just past the last comma counted
** (0 if none). */
static size_t json_commas(const char *p, size_t len, size_t max, size_t *end) {
  size_t i, n = 0, depth = 0;
  int in_string = 0;
  *end = 0;
  for (i = 0; i < len && n < max; i++) {
    char ch = p[i];
    if (in_string) {
      if (ch == '\\')
        i++; /* the escaped byte cannot end the string */
      else if (ch == '"')
        in_string = 0;
    } else if (ch == '"') {
      in_string = 1;
    } else if (ch == '[' || ch == '{') {
      depth++;
    } else if (ch == ']' || ch == '}') {
      if (depth > 0) depth--;
    } else if (ch == ',' && depth == 0) {
      n++;
      *end = i + 1;
    }
  }
  return n;
}

URSULA_PRIVATE size_t json_prefix_len(const char *p, size_t len, size_t n) {
  size_t end;
  if (n == 0) return 0;
  return json_commas(p, len, n, &end) == n ? end : (size_t)-1;
}

URSULA_PRIVATE size_t json_count(const char *p, size_t len) {
  size_t end;
  return json_commas(p, len, (size_t)-1, &end);
}

/* ------------------------------------------------------------ objects

   Reading the members of a JSON object the server was sent (attrs.c, a
   $transaction: batch.c).  The text was validated first (json_check),
   so, as for stored runs, tracking strings and bracket depth finds where
   each member's value ends. */

URSULA_PRIVATE int json_check(const char *p, size_t len) {
  struct json_scan s;
  int rc;
  memset(&s, 0, sizeof(s));
  s.p = (const unsigned char *)p;
  s.len = len;
  json_blanks(&s);
  rc = json_value(&s);
  if (rc != URSULA_OK) return rc;
  json_blanks(&s);
  return s.at == len ? URSULA_OK : URSULA_EINVAL;
}

/* The offset just past the value that starts at p[at] (blanks skipped
** first by the caller): a string, a container or a scalar. */
static size_t json_value_end(const char *p, size_t len, size_t at) {
  size_t depth = 0;
  int in_string = 0;
  for (; at < len; at++) {
    char ch = p[at];
    if (in_string) {
      if (ch == '\\')
        at++;
      else if (ch == '"' && (in_string = 0, depth == 0))
        return at + 1;
    } else if (ch == '"') {
      in_string = 1;
    } else if (ch == '[' || ch == '{') {
      depth++;
    } else if (ch == ']' || ch == '}') {
      if (depth == 0) return at; /* the end of the enclosing object */
      if (--depth == 0) return at + 1;
    } else if (depth == 0 && (ch == ',' || ch == ' ' || ch == '\t' ||
                              ch == '\n' || ch == '\r')) {
      return at;
    }
  }
  return at;
}

static size_t json_skip_blanks(const char *p, size_t len, size_t at) {
  while (at < len && (p[at] == ' ' || p[at] == '\t' || p[at] == '\n' ||
                      p[at] == '\r'))
    at++;
  return at;
}

URSULA_PRIVATE int json_member_next(struct str obj, size_t *at,
                                    struct str *key, struct str *val) {
  size_t i = json_skip_blanks(obj.ptr, obj.len, *at);
  if (i == 0) i = json_skip_blanks(obj.ptr, obj.len, 1); /* past '{' */
  if (i < obj.len && obj.ptr[i] == ',') i = json_skip_blanks(obj.ptr, obj.len, i + 1);
  if (i >= obj.len || obj.ptr[i] != '"') {
    *at = obj.len;
    return 0;
  }
  key->ptr = obj.ptr + i;
  i = json_value_end(obj.ptr, obj.len, i);
  key->len = (size_t)(obj.ptr + i - key->ptr);
  i = json_skip_blanks(obj.ptr, obj.len, i) + 1; /* the ':' */
  i = json_skip_blanks(obj.ptr, obj.len, i);
  val->ptr = obj.ptr + i;
  i = json_value_end(obj.ptr, obj.len, i);
  val->len = (size_t)(obj.ptr + i - val->ptr);
  *at = i;
  return 1;
}

static int json_hex4(const char *p, unsigned *out) {
  unsigned v = 0;
  int i;
  for (i = 0; i < 4; i++) {
    unsigned char ch = (unsigned char)p[i];
    v <<= 4;
    if (ch >= '0' && ch <= '9')
      v |= ch - '0';
    else if (ch >= 'a' && ch <= 'f')
      v |= ch - 'a' + 10;
    else if (ch >= 'A' && ch <= 'F')
      v |= ch - 'A' + 10;
    else
      return -1;
  }
  *out = v;
  return 0;
}

/* Append code point cp (at most U+10FFFF) to out as UTF-8 (RFC 3629). */
static int json_put_utf8(struct buf *out, unsigned long cp) {
  unsigned char b[4];
  size_t n;
  if (cp < 0x80) {
    b[0] = (unsigned char)cp;
    n = 1;
  } else if (cp < 0x800) {
    b[0] = (unsigned char)(0xc0 | cp >> 6);
    b[1] = (unsigned char)(0x80 | (cp & 0x3f));
    n = 2;
  } else if (cp < 0x10000) {
    b[0] = (unsigned char)(0xe0 | cp >> 12);
    b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    b[2] = (unsigned char)(0x80 | (cp & 0x3f));
    n = 3;
  } else {
    b[0] = (unsigned char)(0xf0 | cp >> 18);
    b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
    b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    b[3] = (unsigned char)(0x80 | (cp & 0x3f));
    n = 4;
  }
  return buf_append(out, b, n);
}

URSULA_PRIVATE int json_string_value(struct str raw, struct buf *out) {
  size_t i;
  int rc = URSULA_OK;
  if (raw.len < 2 || raw.ptr[0] != '"' || raw.ptr[raw.len - 1] != '"')
    return URSULA_EINVAL;
  for (i = 1; i + 1 < raw.len && rc == URSULA_OK; i++) {
    char ch = raw.ptr[i];
    unsigned cp, lo;
    if (ch != '\\') {
      rc = buf_append(out, &ch, 1);
      continue;
    }
    ch = raw.ptr[++i];
    switch (ch) {
      case 'b': rc = buf_append(out, "\b", 1); break;
      case 'f': rc = buf_append(out, "\f", 1); break;
      case 'n': rc = buf_append(out, "\n", 1); break;
      case 'r': rc = buf_append(out, "\r", 1); break;
      case 't': rc = buf_append(out, "\t", 1); break;
      case 'u':
        if (i + 5 > raw.len - 1 || json_hex4(raw.ptr + i + 1, &cp) != 0)
          return URSULA_EINVAL;
        i += 4;
        if (cp >= 0xdc00 && cp <= 0xdfff) return URSULA_EINVAL; /* unpaired */
        if (cp >= 0xd800 && cp <= 0xdbff) { /* a pair: \uD8xx\uDCxx */
          if (i + 7 > raw.len - 1 || raw.ptr[i + 1] != '\\' ||
              raw.ptr[i + 2] != 'u' || json_hex4(raw.ptr + i + 3, &lo) != 0 ||
              lo < 0xdc00 || lo > 0xdfff)
            return URSULA_EINVAL;
          i += 6;
          rc = json_put_utf8(out, 0x10000ul + ((unsigned long)(cp - 0xd800)
                                               << 10) +
                                      (lo - 0xdc00));
        } else {
          rc = json_put_utf8(out, cp);
        }
        break;
      default: /* '"', '\\', '/' */
        rc = buf_append(out, &ch, 1);
    }
  }
  return rc;
}

URSULA_PRIVATE int json_put_string(struct buf *out, const char *s) {
  int rc = buf_append_str(out, "\"");
  for (; *s != '\0' && rc == URSULA_OK; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      rc = buf_printf(out, "\\%c", ch);
    else if (ch < 0x20 || ch == 0x7f)
      rc = buf_printf(out, "\\u%04x", (unsigned)ch);
    else
      rc = buf_append(out, s, 1);
  }
  return rc == URSULA_OK ? buf_append_str(out, "\"") : rc;
}

URSULA_PRIVATE int json_key_is(struct str key, const char *name) {
  size_t n = strlen(name);
  struct buf b;
  int is;
  if (memchr(key.ptr, '\\', key.len) == NULL)
    return key.len == n + 2 && memcmp(key.ptr + 1, name, n) == 0;
  memset(&b, 0, sizeof(b));
  is = json_string_value(key, &b) == URSULA_OK && b.len == n &&
       memcmp(b.ptr, name, n) == 0;
  buf_free(&b);
  return is;
}

URSULA_PRIVATE size_t json_value_len(const char *p, size_t len) {
  return json_value_end(p, len, 0);
}
