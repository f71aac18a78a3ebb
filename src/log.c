/*
** log.c -- one-line log records on stderr.
**
** Format: "2026-11-24T11:04:51.123Z ursula[I] message".  Each record is
** formatted into one buffer and written with one write(2), so lines from
** different cores never interleave.  With URSULA_ENABLE_LOG=0 the LOG_*
** macros compile to nothing and only the level and clock settings remain.
**
** The timestamp is the wall clock of an env (os.c): env_real()'s by
** default, a simulator's after log_set_clock(), so that the lines of a
** simulated run carry simulated time.  Like the level, the clock is
** process-wide: set it while no other thread logs.
*/
#include "internal.h"

static volatile int log_level = LOG_INFO;
static struct env *log_clock; /* NULL: the real wall clock */

URSULA_PRIVATE void log_set_level(int level) {
  log_level = level;
}

URSULA_PRIVATE void log_set_clock(struct env *e) {
  log_clock = e;
}

#if URSULA_ENABLE_LOG
URSULA_PRIVATE void log_write(int level, const char *fmt, ...) {
  static const char tag[] = "EWID";
  char line[1024];
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
