/*
** log.c -- one-line log records on stderr.
**
** Format: "2026-11-24T11:04:51.123Z ursula[I] message", or with
** --log-format json one JSON object per line (RFC 8259):
**
**   {"ts":"2026-11-24T11:04:51.123Z","level":"info","msg":"message"}
**
** level one of "error", "warn", "info", "debug"; msg the message as a
** JSON string: '"' and '\\' escaped, control characters as \u00XX, valid
** UTF-8 as it is, and each byte of an invalid UTF-8 sequence (a stream
** path may hold any bytes) as \ufffd, so that every line parses.  Each
** record is formatted into one buffer and written with one write(2), so
** lines from different cores never interleave; a message too long for
** the buffer is cut, whole characters and escapes only.  With URSULA_ENABLE_LOG=0 the LOG_*
** macros compile to nothing and only the level and clock settings remain.
**
** The timestamp is the wall clock of an env (os.c): env_real()'s by
** default, a simulator's after log_set_clock(), so that the lines of a
** simulated run carry simulated time.  Like the level, the clock is
** process-wide: set it while no other thread logs.
*/
#include "internal.h"

static volatile int log_level = LOG_INFO;
static volatile int log_json; /* 1: --log-format json */
static struct env *log_clock; /* NULL: the real wall clock */

URSULA_PRIVATE void log_set_level(int level) {
  log_level = level;
}

URSULA_PRIVATE void log_set_clock(struct env *e) {
  log_clock = e;
}

URSULA_PRIVATE void log_set_json(int json) {
  log_json = json;
}

/* The length of the valid UTF-8 character at p[0..n) (RFC 3629 section
** 4: no overlong forms, no surrogates, at most U+10FFFF), or 0. */
static size_t log_utf8_len(const unsigned char *p, size_t n) {
  size_t k, i;
  uint32_t c;
  if (p[0] < 0x80) return 1;
  if (p[0] >= 0xC2 && p[0] <= 0xDF) k = 2, c = p[0] & 0x1F;
  else if (p[0] >= 0xE0 && p[0] <= 0xEF) k = 3, c = p[0] & 0x0F;
  else if (p[0] >= 0xF0 && p[0] <= 0xF4) k = 4, c = p[0] & 0x07;
  else return 0;
  if (n < k) return 0;
  for (i = 1; i < k; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    c = c << 6 | (p[i] & 0x3F);
  }
  if ((k == 3 && (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF))) ||
      (k == 4 && (c < 0x10000 || c > 0x10FFFF)))
    return 0;
  return k;
}

/* s[0..n) as the inside of a JSON string into out[0..cap): the bytes
** written (whole characters and escapes only). */
URSULA_PRIVATE URSULA_UNUSED size_t log_json_escape(char *out, size_t cap,
                                                    const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t o = 0, i = 0;
  while (i < n) {
    char esc[8];
    const char *w = esc;
    size_t len = log_utf8_len(p + i, n - i), wl;
    if (p[i] == '"' || p[i] == '\\') {
      esc[0] = '\\';
      esc[1] = (char)p[i];
      wl = 2;
    } else if (p[i] < 0x20 || p[i] == 0x7F) {
      snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)p[i]);
      wl = 6;
    } else if (len == 0) {
      w = "\\ufffd";
      wl = 6;
      len = 1;
    } else {
      w = s + i;
      wl = len;
    }
    if (len == 0) len = 1;
    if (o + wl > cap) break;
    memcpy(out + o, w, wl);
    o += wl;
    i += len;
  }
  return o;
}

#if URSULA_ENABLE_LOG
URSULA_PRIVATE void log_write(int level, const char *fmt, ...) {
  static const char tag[] = "EWID";
  char line[2048];
  size_t n;
  int m;
  va_list ap;
  uint64_t ms;
  time_t secs;
  struct tm tm;
  ssize_t w;
  if (level > log_level) return;
  ms = log_clock != NULL ? log_clock->wall_ms(log_clock) : os_wall_ms();
  secs = (time_t)(ms / 1000);
  gmtime_r(&secs, &tm);
  if (log_json) {
    static const char *const names[4] = {"error", "warn", "info", "debug"};
    char msg[1024];
    n = strftime(line, sizeof(line), "{\"ts\":\"%Y-%m-%dT%H:%M:%S", &tm);
    m = snprintf(line + n, sizeof(line) - n,
                 ".%03uZ\",\"level\":\"%s\",\"msg\":\"",
                 (unsigned)(ms % 1000), names[level & 3]);
    if (m > 0) n += (size_t)m;
    va_start(ap, fmt);
    m = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    if ((size_t)m >= sizeof(msg)) m = (int)sizeof(msg) - 1;
    n += log_json_escape(line + n, sizeof(line) - n - 3, msg, (size_t)m);
    memcpy(line + n, "\"}\n", 3);
    w = write(2, line, n + 3);
    (void)w;
    return;
  }
  n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
  m = snprintf(line + n, sizeof(line) - n, ".%03uZ ursula[%c] ",
               (unsigned)(ms % 1000), tag[level & 3]);
  if (m > 0) n += (size_t)m;
  va_start(ap, fmt);
  m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
  va_end(ap);
  if (m > 0) n += (size_t)m;
  if (n > sizeof(line) - 2) n = sizeof(line) - 2;
  line[n++] = '\n';
  w = write(2, line, n);
  (void)w;
}
#endif /* URSULA_ENABLE_LOG */
