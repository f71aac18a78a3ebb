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
** protocol's reference writes it).  A CR or CRLF in a payload arrives as
** LF: no event stream can carry a CR in data (section 9.2.6).
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
  sse_control(&b, 34, 7, 1, 0, 0, 0, 0);
  sse_control(&b, 34, 8, 0, 0, 0, 0, 0);
  sse_control(&b, 40, 9, 0, 1, 0, 0, 0);
  /* a JSON stream's: its records (json-record-coordinates-v1) */
  sse_control(&b, 40, 9, 1, 0, 1, 2, 5);
  n = unit_sse_decode(b.ptr, b.len, ev);
  ASSERT(n == 5);
  if (n == 5) {
    ASSERT_MEM(ev[4].data, strlen(ev[4].data),
               "{\"streamNextOffset\":\"0000000000000000_0000000000000040\","
               "\"streamFirstRecord\":2,\"streamNextRecord\":5,"
               "\"streamCursor\":\"9\",\"upToDate\":true}");
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

/* Every payload byte survives a conforming parser, except that CR and
** CRLF line ends arrive as LF (the format has no other way: section 9.2.6
** joins data lines with LF).  A property test: random text of spaces,
** colons, the three line ends, ASCII and multi-byte UTF-8, framed by
** sse_event() and decoded by the specification's algorithm above, must
** give the payload with its line ends turned into LF. */
static void test_sse_event_property(void) {
  static const char *const atoms[] = {" ", "  ", ":", "\n", "\r", "\r\n",
                                      "a", "data: x", "\xc3\xa9", "\xe2\x82\xac",
                                      "\xf0\x9f\x98\x80", "event: control",
                                      "id: 1", "\t"};
  uint64_t seed = 0x243F6A8885A308D3ULL;
  int round;
  for (round = 0; round < 3000; round++) {
    char payload[200], want[200];
    size_t len = 0, w = 0, i;
    int n_atoms;
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
    n_atoms = (int)(seed % 12);
    for (i = 0; i < (size_t)n_atoms; i++) {
      const char *a;
      seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
      a = atoms[seed % (sizeof(atoms) / sizeof(atoms[0]))];
      memcpy(payload + len, a, strlen(a));
      len += strlen(a);
    }
    for (i = 0; i < len; i++) { /* the payload with line ends as LF */
      if (payload[i] == '\r') {
        want[w++] = '\n';
        if (i + 1 < len && payload[i + 1] == '\n') i++;
      } else {
        want[w++] = payload[i];
      }
    }
    want[w] = '\0';
    unit_sse_roundtrip(payload, len, want);
  }
}

/* An event is decoded as UTF-8 on its own (section 9.2.6: the stream is
** UTF-8 decoded), so text is cut only between characters (RFC 3629
** section 3: a lead byte 0xxxxxxx, 110xxxxx, 1110xxxx or 11110xxx says
** how many bytes the character has; 10xxxxxx continues one). */
static void test_sse_utf8_cut(void) {
  static const char euro[] = "\xe2\x82\xac"; /* U+20AC, 3 bytes */
  static const char text[] = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z";
  /* the character starts at 0, 1, 3, 6, 10, 11 */
  static const size_t starts[] = {0, 1, 3, 6, 10, 11, 12};
  size_t len;
  ASSERT(sse_utf8_cut("", 0) == 0);
  ASSERT(sse_utf8_cut("abc", 3) == 3);
  ASSERT(sse_utf8_cut(euro, 3) == 3);
  ASSERT(sse_utf8_cut(euro, 2) == 0);
  ASSERT(sse_utf8_cut(euro, 1) == 0);
  /* every prefix of text is cut back to the last character start */
  for (len = 0; len <= sizeof(text) - 1; len++) {
    size_t k, want = 0;
    for (k = 0; k < sizeof(starts) / sizeof(starts[0]); k++)
      if (starts[k] <= len) want = starts[k];
    if (sse_utf8_cut(text, len) != want)
      printf("# len %u: %u, want %u\n", (unsigned)len,
             (unsigned)sse_utf8_cut(text, len), (unsigned)want);
    ASSERT(sse_utf8_cut(text, len) == want);
  }
  /* bytes that are not UTF-8 are not held back */
  ASSERT(sse_utf8_cut("ab\x80\x80\x80\x80", 6) == 6);
  ASSERT(sse_utf8_cut("ab\xff", 3) == 3);
}

static const struct unit_case unit_sse_cases[] = {
    {"sse_event_lines", test_sse_event_lines},
    {"sse_event_wire", test_sse_event_wire},
    {"sse_comment_and_control", test_sse_comment_and_control},
    {"sse_event_property", test_sse_event_property},
    {"sse_utf8_cut", test_sse_utf8_cut},
    {NULL, NULL},
};
