/*
** os.c -- portability shims: clocks, CPU count, descriptor flags.
**
** The durable-write system calls (open, pwrite, fsync, ...) will live here
** too, behind an overridable table, so tests can inject faults.
*/
#include "internal.h"

URSULA_PRIVATE uint64_t os_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

URSULA_PRIVATE uint64_t os_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

URSULA_PRIVATE int os_cpu_count(void) {
  long n = -1;
#if defined(_SC_NPROCESSORS_ONLN)
  n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
  if (n < 1) n = 1;
  if (n > URSULA_MAX_CORES) n = URSULA_MAX_CORES;
  return (int)n;
}

URSULA_PRIVATE int os_set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL, 0);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return URSULA_ESYS;
  return URSULA_OK;
}

URSULA_PRIVATE int os_set_cloexec(int fd) {
  int fl = fcntl(fd, F_GETFD, 0);
  if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0) return URSULA_ESYS;
  return URSULA_OK;
}
