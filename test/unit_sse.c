/*
** unit_sse.c -- SSE framing (src/sse.c) against the specification.
**
** The expected results come from WHATWG HTML, "Server-sent events"
** (section 9.2): unit_sse_decode() below is the specification's
** "interpreting an event stream" algorithm, written out step by step, and
** the cases check what a conforming client gets from the bytes sse.c
** writes: one event per sse_event(), its type, and its data equal to the
** payload with every line end (LF, CR, CRLF) turned into LF.  The wire
** bytes are checked too, for the cases where the specification leaves one
** way to write them ("data:" with no space, as the Durable Streams
** protocol's reference writes it).
*/

#define UNIT_SSE_MAX 8

struct unit_sse_event {
  char type[32];
  char data[256];
};

/* The specification's parser over p[0..len): lines end at CRLF, LF or CR;
** an empty line dispatches the event (none if the data buffer is empty;
** the data's last LF is removed; the type defaults to "message"); a line
** that starts with ':' is a comment; otherwise the field name is what
** precedes the first ':', the value what follows it less one leading
** space, and "event" sets the type, "data" appends the value and an LF.
** An event not ended by an empty line is discarded.  Returns the number
** of events, or -1 if they do not fit in ev[UNIT_SSE_MAX]. */
static int unit_sse_decode(const char *p, size_t len,
                           struct unit_sse_event *ev) {
  char type[32] = "", data[256] = "", line[512];
  size_t i = 0, n_data = 0;
  int n = 0;
  while (i < len) {
    size_t start = i, l;
    const char *colon;
    while (i < len && p[i] != '\n' && p[i] != '\r') i++;
    if (i == len) break; /* no line end: not a complete line */
    l = i - start;
    if (l >= sizeof(line)) return -1;
    memcpy(line, p + start, l);
    line[l] = '\0';
    if (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n') i++;
    i++;
    if (l == 0) { /* dispatch */
      if (n_data > 0) {
        if (n == UNIT_SSE_MAX) return -1;
        data[n_data - 1] = '\0'; /* the last LF */
        snprintf(ev[n].type, sizeof(ev[n].type), "%s",
                 type[0] ? type : "message");
        memcpy(ev[n].data, data, n_data);
        n++;
      }
      type[0] = '\0';
      n_data = 0;
      continue;
    }
    if (line[0] == ':') continue;
    colon = strchr(line, ':');
    {
      const char *value = colon ? colon + 1 : line + l;
      size_t name_len = colon ? (size_t)(colon - line) : l, vl;
      if (*value == ' ') value++;
      vl = strlen(value);
      if (name_len == 5 && memcmp(line, "event", 5) == 0) {
        snprintf(type, sizeof(type), "%s", value);
      } else if (name_len == 4 && memcmp(line, "data", 4) == 0) {
        if (n_data + vl + 1 >= sizeof(data)) return -1;
        memcpy(data + n_data, value, vl);
        n_data += vl;
        data[n_data++] = '\n';
      }
    }
  }
  return n;
}

/* Frame one "data" event of payload, decode it, and check that a client
** gets exactly one event of type "data" whose data is `want`. */
static void unit_sse_roundtrip(const char *payload, size_t len,
                               const char *want) {
  struct buf b;
  struct unit_sse_event ev[UNIT_SSE_MAX];
  int n;
  memset(&b, 0, sizeof(b));
  sse_event(&b, "data", payload, len);
  n = unit_sse_decode(b.ptr, b.len, ev);
  ASSERT(n == 1);
  if (n == 1) {
    ASSERT(strcmp(ev[0].type, "data") == 0);
    ASSERT_MEM(ev[0].data, strlen(ev[0].data), want);
  }
  buf_free(&b);
}

static void unit_sse_wire(const char *payload, const char *want) {
  struct buf b;
  memset(&b, 0, sizeof(b));
  sse_event(&b, "data", payload, strlen(payload));
  ASSERT_MEM(b.ptr, b.len, want);
  buf_free(&b);
}

static void test_sse_event_lines(void) {
  /* one line, several, and each of the three line ends */
  unit_sse_roundtrip("hello", 5, "hello");
  unit_sse_roundtrip("a\nb", 3, "a\nb");
  unit_sse_roundtrip("a\rb", 3, "a\nb");
  unit_sse_roundtrip("a\r\nb", 4, "a\nb"); /* one line end, not two */
  unit_sse_roundtrip("a\n\rb", 4, "a\n\nb");
  unit_sse_roundtrip("a\r\rb", 4, "a\n\nb");
  unit_sse_roundtrip("a\n\nb", 4, "a\n\nb"); /* an empty line inside */
  unit_sse_roundtrip("a\n", 2, "a\n");       /* a final line end */
  unit_sse_roundtrip("a\r\n", 3, "a\n");
  unit_sse_roundtrip("\n", 1, "\n");
  unit_sse_roundtrip("", 0, ""); /* empty data is still an event */
  unit_sse_roundtrip("x: y", 4, "x: y");
  unit_sse_roundtrip("{\"k\":\"v\"}", 9, "{\"k\":\"v\"}");
  /* bytes of the payload cannot end the event or add fields */
  unit_sse_roundtrip("x\n\nevent: control\ndata:evil\n\nid: 7\n:c", 37,
                     "x\n\nevent: control\ndata:evil\n\nid: 7\n:c");
  unit_sse_roundtrip("x\r\n\r\nevent: control", 19, "x\n\nevent: control");
  /* a line that begins with a space keeps it (the decoder removes one) */
  unit_sse_roundtrip(" x", 2, " x");
  unit_sse_roundtrip("a\n  b", 5, "a\n  b");
}

static void test_sse_event_wire(void) {
  unit_sse_wire("hello", "event: data\ndata:hello\n\n");
  unit_sse_wire("a\nb", "event: data\ndata:a\ndata:b\n\n");
  unit_sse_wire("a\rb", "event: data\ndata:a\ndata:b\n\n");
  unit_sse_wire("a\r\nb", "event: data\ndata:a\ndata:b\n\n");
  unit_sse_wire("a\n", "event: data\ndata:a\ndata:\n\n");
  unit_sse_wire("", "event: data\ndata:\n\n");
  unit_sse_wire(" x", "event: data\ndata:  x\n\n");
}

static void test_sse_comment_and_control(void) {
  struct buf b;
  struct unit_sse_event ev[UNIT_SSE_MAX];
  int n;
  memset(&b, 0, sizeof(b));
  sse_comment(&b, "keep-alive");
  ASSERT_MEM(b.ptr, b.len, ": keep-alive\n\n");
  ASSERT(unit_sse_decode(b.ptr, b.len, ev) == 0); /* dispatches nothing */
  /* the protocol's control events (protocol.md 2.10): streamNextOffset
  ** always; streamCursor while open; upToDate when caught up; when
  ** closed, streamClosed and no streamCursor */
  b.len = 0;
  sse_event(&b, "data", "x", 1);
  sse_control(&b, 34, 7, 1, 0);
  sse_control(&b, 34, 8, 0, 0);
  sse_control(&b, 40, 9, 0, 1);
  n = unit_sse_decode(b.ptr, b.len, ev);
  ASSERT(n == 4);
  if (n == 4) {
    ASSERT(strcmp(ev[0].type, "data") == 0 && strcmp(ev[0].data, "x") == 0);
    ASSERT(strcmp(ev[1].type, "control") == 0);
    ASSERT_MEM(ev[1].data, strlen(ev[1].data),
               "{\"streamNextOffset\":\"0000000000000000_0000000000000034\","
               "\"streamCursor\":\"7\",\"upToDate\":true}");
    ASSERT_MEM(ev[2].data, strlen(ev[2].data),
               "{\"streamNextOffset\":\"0000000000000000_0000000000000034\","
               "\"streamCursor\":\"8\"}");
    ASSERT_MEM(ev[3].data, strlen(ev[3].data),
               "{\"streamNextOffset\":\"0000000000000000_0000000000000040\","
               "\"streamClosed\":true,\"upToDate\":true}");
  }
  buf_free(&b);
}

static const struct unit_case unit_sse_cases[] = {
    {"sse_event_lines", test_sse_event_lines},
    {"sse_event_wire", test_sse_event_wire},
    {"sse_comment_and_control", test_sse_comment_and_control},
    {NULL, NULL},
};
