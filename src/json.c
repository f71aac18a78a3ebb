/*
** json.c -- validation and one-level flattening of JSON appends.
**
** A POST to an application/json stream carries one JSON text (RFC 8259).
** If it is an array, each element is one message; otherwise the whole
** value is one message.  Messages are kept as their exact bytes, each
** followed by one ',':
**
**     body  [1, {"a": 2} ,"x"]      stored  1,{"a": 2},"x",
**     body   {"a":1}                stored  {"a":1},
**
** so a read of any run of whole messages is served as '[' + the stored
** bytes without their last ',' + ']', with no re-serialisation.
**
** The validator is iterative: a stack of open containers (one byte each,
** bounded by URSULA_MAX_JSON_DEPTH) replaces recursion, so hostile input
** cannot exhaust the C stack, and every byte is looked at a bounded number
** of times (linear time).  UTF-8 is checked everywhere (RFC 3629: no
** overlong forms, no surrogates, nothing above U+10FFFF).
*/
#include "internal.h"

/* A parser over p[0..len). */
struct json_parser {
  const unsigned char *p;
  size_t len;
  size_t at;
};

static void json_skip_ws(struct json_parser *js) {
  while (js->at < js->len) {
    unsigned char ch = js->p[js->at];
    if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') break;
    js->at++;
  }
}

/* One UTF-8 sequence starting with a byte >= 0x80 at js->at. */
static int json_utf8(struct json_parser *js) {
  const unsigned char *s = js->p + js->at;
  size_t left = js->len - js->at, n, i;
  unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
  if (s[0] >= 0xC2 && s[0] <= 0xDF) {
    n = 2;
  } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
    n = 3;
    if (s[0] == 0xE0) lo = 0xA0; /* overlong */
    if (s[0] == 0xED) hi = 0x9F; /* UTF-16 surrogates */
  } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
    n = 4;
    if (s[0] == 0xF0) lo = 0x90; /* overlong */
    if (s[0] == 0xF4) hi = 0x8F; /* above U+10FFFF */
  } else {
    return -1;
  }
  if (left < n || s[1] < lo || s[1] > hi) return -1;
  for (i = 2; i < n; i++)
    if (s[i] < 0x80 || s[i] > 0xBF) return -1;
  js->at += n;
  return 0;
}

static int json_is_hex(unsigned char ch) {
  return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
         (ch >= 'A' && ch <= 'F');
}

/* A string; js->at is on the opening quote. */
static int json_string(struct json_parser *js) {
  js->at++;
  while (js->at < js->len) {
    unsigned char ch = js->p[js->at];
    if (ch == '"') {
      js->at++;
      return 0;
    }
    if (ch < 0x20) return -1;
    if (ch >= 0x80) {
      if (json_utf8(js) != 0) return -1;
      continue;
    }
    js->at++;
    if (ch != '\\') continue;
    if (js->at >= js->len) return -1;
    ch = js->p[js->at++];
    if (ch == 'u') {
      size_t i;
      if (js->len - js->at < 4) return -1;
      for (i = 0; i < 4; i++)
        if (!json_is_hex(js->p[js->at + i])) return -1;
      js->at += 4;
    } else if (strchr("\"\\/bfnrt", ch) == NULL || ch == '\0') {
      return -1;
    }
  }
  return -1; /* unterminated */
}

static size_t json_digits(struct json_parser *js) {
  size_t start = js->at;
  while (js->at < js->len && js->p[js->at] >= '0' && js->p[js->at] <= '9')
    js->at++;
  return js->at - start;
}

/* number = [ "-" ] int [ frac ] [ exp ] */
static int json_number(struct json_parser *js) {
  if (js->p[js->at] == '-') js->at++;
  if (js->at < js->len && js->p[js->at] == '0') {
    js->at++;
  } else if (json_digits(js) == 0) {
    return -1;
  }
  if (js->at < js->len && js->p[js->at] == '.') {
    js->at++;
    if (json_digits(js) == 0) return -1;
  }
  if (js->at < js->len && (js->p[js->at] == 'e' || js->p[js->at] == 'E')) {
    js->at++;
    if (js->at < js->len && (js->p[js->at] == '+' || js->p[js->at] == '-'))
      js->at++;
    if (json_digits(js) == 0) return -1;
  }
  return 0; /* "01" leaves a digit behind, which the caller rejects */
}

static int json_literal(struct json_parser *js, const char *word) {
  size_t n = strlen(word);
  if (js->len - js->at < n || memcmp(js->p + js->at, word, n) != 0)
    return -1;
  js->at += n;
  return 0;
}

/* A scalar (string, number, literal) at js->at. */
static int json_scalar(struct json_parser *js) {
  unsigned char ch = js->p[js->at];
  if (ch == '"') return json_string(js);
  if (ch == '-' || (ch >= '0' && ch <= '9')) return json_number(js);
  if (ch == 't') return json_literal(js, "true");
  if (ch == 'f') return json_literal(js, "false");
  if (ch == 'n') return json_literal(js, "null");
  return -1;
}

/* Validate one value at js->at (whitespace before it already skipped).
** If flat is set and the value is an array, the byte range of each
** element is reported to out (element bytes + ','), counting *n.
** Returns 0, URSULA_EINVAL or URSULA_ENOMEM. */
static int json_value(struct json_parser *js, struct buf *out, size_t *n,
                      int flat) {
  char stack[URSULA_MAX_JSON_DEPTH]; /* '[' or '{' per open container */
  size_t depth = 0, elem_start = 0;
  int collect = 0;
  for (;;) {
    /* here: a value is expected at js->at */
    if (js->at >= js->len) return URSULA_EINVAL;
    if (js->p[js->at] == '[' || js->p[js->at] == '{') {
      char open = (char)js->p[js->at];
      if (depth == URSULA_MAX_JSON_DEPTH) return URSULA_EINVAL;
      if (flat && depth == 0 && open == '[') collect = 1;
      stack[depth++] = open;
      js->at++;
      json_skip_ws(js);
      if (js->at < js->len && js->p[js->at] == (open == '[' ? ']' : '}')) {
        js->at++;
        depth--;
        goto after_value;
      }
      if (open == '{') goto object_key;
      if (collect && depth == 1) elem_start = js->at;
      continue;
    }
    if (json_scalar(js) != 0) return URSULA_EINVAL;
  after_value:
    /* a value ended; close containers or move on to the next member */
    for (;;) {
      size_t elem_end = js->at;
      if (depth == 0) return 0;
      json_skip_ws(js);
      if (js->at >= js->len) return URSULA_EINVAL;
      if (collect && depth == 1 && (js->p[js->at] == ',' ||
                                    js->p[js->at] == ']')) {
        if (buf_append(out, js->p + elem_start, elem_end - elem_start) !=
                URSULA_OK ||
            buf_append(out, ",", 1) != URSULA_OK)
          return URSULA_ENOMEM;
        (*n)++;
      }
      if (js->p[js->at] == ',') {
        js->at++;
        json_skip_ws(js);
        if (stack[depth - 1] == '{') goto object_key;
        if (collect && depth == 1) elem_start = js->at;
        break; /* next array element */
      }
      if (js->p[js->at] != (stack[depth - 1] == '[' ? ']' : '}')) return URSULA_EINVAL;
      js->at++;
      depth--;
    }
    continue;
  object_key:
    if (js->at >= js->len || js->p[js->at] != '"' || json_string(js) != 0)
      return URSULA_EINVAL;
    json_skip_ws(js);
    if (js->at >= js->len || js->p[js->at] != ':') return URSULA_EINVAL;
    js->at++;
    json_skip_ws(js);
  }
}

URSULA_PRIVATE int json_flatten(const char *p, size_t len, struct buf *out,
                                size_t *n_msgs) {
  struct json_parser js;
  size_t keep = out->len, n = 0, start;
  int rc;
  js.p = (const unsigned char *)p;
  js.len = len;
  js.at = 0;
  json_skip_ws(&js);
  start = js.at;
  rc = json_value(&js, out, &n, 1);
  if (rc == 0) {
    size_t end = js.at;
    json_skip_ws(&js);
    if (js.at != len) rc = URSULA_EINVAL; /* trailing garbage */
    if (rc == 0 && js.p[start] != '[') {
      if (buf_append(out, p + start, end - start) != URSULA_OK ||
          buf_append(out, ",", 1) != URSULA_OK)
        rc = URSULA_ENOMEM;
      n = 1;
    }
  }
  if (rc != 0) {
    out->len = keep;
    return rc;
  }
  *n_msgs = n;
  return URSULA_OK;
}

/* ------------------------------------------------------------ stored runs */

/* The length of the first message of p[0..len), comma included, or 0 if
** there is no complete one.  Only strings and brackets are tracked: the
** bytes were validated when they were stored. */
static size_t json_first_len(const char *p, size_t len) {
  size_t i, depth = 0;
  int in_str = 0;
  for (i = 0; i < len; i++) {
    char ch = p[i];
    if (in_str) {
      if (ch == '\\')
        i++;
      else if (ch == '"')
        in_str = 0;
    } else if (ch == '"') {
      in_str = 1;
    } else if (ch == '[' || ch == '{') {
      depth++;
    } else if (ch == ']' || ch == '}') {
      depth--;
    } else if (ch == ',' && depth == 0) {
      return i + 1;
    }
  }
  return 0;
}

URSULA_PRIVATE size_t json_prefix_len(const char *p, size_t len, size_t n) {
  size_t at = 0;
  while (n-- > 0) {
    size_t k = json_first_len(p + at, len - at);
    if (k == 0) return (size_t)-1;
    at += k;
  }
  return at;
}

URSULA_PRIVATE size_t json_count(const char *p, size_t len) {
  size_t at = 0, n = 0, k;
  while (at < len && (k = json_first_len(p + at, len - at)) != 0) {
    at += k;
    n++;
  }
  return n;
}
