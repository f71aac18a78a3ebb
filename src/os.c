/*
** os.c -- portability shims: clocks, CPU count, descriptor flags.
**
** The system calls of durable storage (open, pwrite, fsync, ...) are
** reached through one table, os_fs(), so that tests can replace any of
** them and inject faults: short writes, EIO, ENOSPC, failed syncs.  The
** table is process-wide; tests replace entries while no server runs
** (and may then switch their faults on and off).
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

URSULA_PRIVATE long os_raise_fd_limit(long want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
  if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)want > rl.rlim_cur) {
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = (rl.rlim_max == RLIM_INFINITY || (rlim_t)want < rl.rlim_max)
                      ? (rlim_t)want
                      : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = old;
  }
  return rl.rlim_cur == RLIM_INFINITY ? LONG_MAX : (long)rl.rlim_cur;
}

/* ------------------------------------------------------------ files */

static int os_real_open(const char *path, int flags, int mode) {
  int fd;
  do fd = open(path, flags | O_CLOEXEC, (mode_t)mode);
  while (fd < 0 && errno == EINTR);
  return fd;
}

static ssize_t os_real_pwrite(int fd, const void *p, size_t n, off_t off) {
  ssize_t w;
  do w = pwrite(fd, p, n, off);
  while (w < 0 && errno == EINTR);
  return w;
}

static ssize_t os_real_pread(int fd, void *p, size_t n, off_t off) {
  ssize_t r;
  do r = pread(fd, p, n, off);
  while (r < 0 && errno == EINTR);
  return r;
}

/* Make a file's written data durable.  fdatasync() where POSIX has it;
** macOS's fsync() does not reach the platter, F_FULLFSYNC does. */
static int os_real_sync(int fd) {
#if defined(__APPLE__) && defined(F_FULLFSYNC)
  if (fcntl(fd, F_FULLFSYNC) == 0) return 0;
  return fsync(fd);
#elif defined(_POSIX_SYNCHRONIZED_IO) && _POSIX_SYNCHRONIZED_IO > 0
  return fdatasync(fd);
#else
  return fsync(fd);
#endif
}

static int os_real_ftruncate(int fd, off_t len) {
  return ftruncate(fd, len);
}
static int os_real_close(int fd) {
  return close(fd);
}
static int os_real_unlink(const char *path) {
  return unlink(path);
}
static int os_real_rename(const char *from, const char *to) {
  return rename(from, to);
}

static struct os_fs os_fs_table = {
    os_real_open,      os_real_pwrite, os_real_pread,  os_real_sync,
    os_real_ftruncate, os_real_close,  os_real_unlink, os_real_rename};

URSULA_PRIVATE struct os_fs *os_fs(void) {
  return &os_fs_table;
}

URSULA_PRIVATE int os_sync_dir(const char *dir) {
  int fd = os_fs_table.open(dir, O_RDONLY, 0), rc;
  if (fd < 0) return -1;
  rc = os_fs_table.sync(fd);
  os_fs_table.close(fd);
  return rc;
}

URSULA_PRIVATE int os_mkdir(const char *path) {
  if (mkdir(path, 0755) == 0 || errno == EEXIST) return 0;
  return -1;
}
