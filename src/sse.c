/*
** sse.c -- Server-Sent Events framing (WHATWG HTML, "Server-sent events").
**
** Pure functions that append events to a buffer; nothing here knows about
** connections, HTTP chunks or streams' state.  An event is
**
**   event: TYPE\n
**   data:LINE\n        one per line of the payload
**   \n                 the empty line that ends (dispatches) the event
**
** The payload is split into lines at LF, CR and CRLF, the three line ends
** of the specification, so no byte of the payload can end the event or
** start a new field early (an empty payload is one empty data line, and a
** final line end gives a last, empty data line: the client's decoder joins
** the lines with LF and gets the payload back with its line ends as LF).
**
** No space is written after "data:" (as the Durable Streams reference
** server frames it), except before a payload line that itself begins
** with a space: a decoder removes one space after the colon, so that line
** gets one more, and the client sees the line as it was.
**
** What a conforming client decodes is therefore every byte of the payload
** except that a CR or CRLF line end arrives as LF: the event stream format
** has no way to carry a CR in data (a decoder joins data lines with LF),
** which is why the protocol sends binary streams as base64.
**
** An event is decoded as UTF-8 text on its own, so a text payload must not
** end inside a character: sse_utf8_cut() says where a cut may fall.
*/
#include "internal.h"

URSULA_PRIVATE void sse_event(struct buf *out, const char *type, const char *p,
                              size_t len) {
  size_t i, start = 0;
  buf_append_str(out, "event: ");
  buf_append_str(out, type);
  buf_append(out, "\n", 1);
  for (i = 0; i <= len; i++) {
    if (i == len || p[i] == '\n' || p[i] == '\r') {
      buf_append_str(out, "data:");
      if (i > start && p[start] == ' ') buf_append(out, " ", 1);
      buf_append(out, p + start, i - start);
      buf_append(out, "\n", 1);
      if (i < len && p[i] == '\r' && i + 1 < len && p[i + 1] == '\n') i++;
      start = i + 1;
    }
  }
  buf_append(out, "\n", 1);
}

URSULA_PRIVATE size_t sse_utf8_cut(const char *p, size_t len) {
  size_t i = len, back;
  /* find the last byte that is not a continuation byte (10xxxxxx),
  ** at most 4 back: the start of the last character */
  for (back = 0; back < 4 && i > 0; back++, i--) {
    unsigned char ch = (unsigned char)p[i - 1];
    size_t need;
    if ((ch & 0xC0) == 0x80) continue;
    need = ch < 0x80            ? 1
           : (ch & 0xE0) == 0xC0 ? 2
           : (ch & 0xF0) == 0xE0 ? 3
           : (ch & 0xF8) == 0xF0 ? 4
                                 : 1; /* not UTF-8: nothing to keep whole */
    return len - (i - 1) < need ? i - 1 : len;
  }
  return len;
}

URSULA_PRIVATE void sse_comment(struct buf *out, const char *text) {
  buf_append(out, ": ", 2);
  buf_append_str(out, text);
  buf_append(out, "\n\n", 2);
}

URSULA_PRIVATE void sse_control(struct buf *out, uint64_t next_offset,
                                uint64_t cursor, int up_to_date, int closed,
                                int records, uint64_t first_record,
                                uint64_t next_record) {
  buf_printf(out,
             "event: control\ndata:{\"streamNextOffset\":\"%016llu_%016llu\"",
             0ULL, (unsigned long long)next_offset);
  if (records) /* a JSON stream (json-record-coordinates-v1) */
    buf_printf(out, ",\"streamFirstRecord\":%llu,\"streamNextRecord\":%llu",
               (unsigned long long)first_record,
               (unsigned long long)next_record);
  if (closed)
    buf_append_str(out, ",\"streamClosed\":true");
  else
    buf_printf(out, ",\"streamCursor\":\"%llu\"", (unsigned long long)cursor);
  if (up_to_date || closed) buf_append_str(out, ",\"upToDate\":true");
  buf_append_str(out, "}\n\n");
}
