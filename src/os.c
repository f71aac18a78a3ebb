/*
** os.c -- portability shims: clocks, CPU count, descriptor flags; the
** file-system call table; the node environment.
**
** The system calls of durable storage (open, pwrite, fsync, fstat,
** mkdir, readdir, ...) are reached through one table, os_fs(), so that
** tests can replace any of them and inject faults: short writes, EIO,
** ENOSPC, failed syncs.  The table is process-wide; tests replace entries
** while no server runs (and may then switch their faults on and off).
**
** ENVIRONMENT.  struct env (internal.h) bundles what a node reads from
** the world: a monotonic clock, the wall clock, random bits and the
** file-system table.  env_real() is the process's own; a simulator makes
** one per node, with clocks it advances itself and a file system it
** controls, so several nodes can run in one thread deterministically.
** Code that takes an env reads time only through it.
*/
#include "internal.h"

URSULA_PRIVATE uint64_t os_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

URSULA_PRIVATE uint64_t os_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Linux's /proc/self/statm gives the resident pages second (proc(5));
** elsewhere getrusage()'s ru_maxrss, the peak (KiB on the BSDs, bytes
** on macOS). */
URSULA_PRIVATE uint64_t os_rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long long size = 0, resident = 0;
  struct rusage ru;
  if (f != NULL) {
    int n = fscanf(f, "%llu %llu", &size, &resident);
    long page = sysconf(_SC_PAGESIZE);
    fclose(f);
    if (n == 2 && page > 0) return (uint64_t)resident * (uint64_t)page;
  }
  if (getrusage(RUSAGE_SELF, &ru) == 0 && ru.ru_maxrss > 0)
#if defined(__APPLE__)
    return (uint64_t)ru.ru_maxrss;
#else
    return (uint64_t)ru.ru_maxrss * 1024u;
#endif
  return 0;
}

URSULA_PRIVATE int os_random_bytes(void *out, size_t n) {
  unsigned char *p = (unsigned char *)out;
  int fd = open("/dev/urandom", O_RDONLY);
  if (fd < 0) return -1;
  os_set_cloexec(fd);
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int e = r < 0 ? errno : EIO;
      close(fd);
      errno = e;
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  close(fd);
  return 0;
}

URSULA_PRIVATE uint64_t os_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

URSULA_PRIVATE void os_sleep_ms(uint64_t ms) {
  struct timespec ts;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
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

static int os_real_size(int fd, uint64_t *out) {
  struct stat st;
  if (fstat(fd, &st) != 0) return -1;
  *out = st.st_size > 0 ? (uint64_t)st.st_size : 0;
  return 0;
}

static int os_real_mkdir(const char *path, int mode) {
  return mkdir(path, (mode_t)mode);
}

static int os_real_rmdir(const char *path) {
  return rmdir(path);
}

static int os_real_list(const char *dir, int (*fn)(void *arg, const char *name),
                        void *arg) {
  DIR *d = opendir(dir);
  struct dirent *de;
  int rc = 0, e;
  if (d == NULL) return -1;
  for (;;) {
    errno = 0;
    if ((de = readdir(d)) == NULL) break;
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if ((rc = fn(arg, de->d_name)) != 0) break;
  }
  e = errno; /* readdir's, when it failed */
  closedir(d);
  if (de == NULL && e != 0) {
    errno = e;
    return -1;
  }
  return rc;
}

static struct os_fs os_fs_table;

/* Through the table's own open, sync and close, so that a test's faults
** on them reach directory syncs too. */
static int os_real_sync_dir(const char *dir) {
  int fd = os_fs_table.open(dir, O_RDONLY, 0), rc;
  if (fd < 0) return -1;
  rc = os_fs_table.sync(fd);
  os_fs_table.close(fd);
  return rc;
}

static struct os_fs os_fs_table = {
    os_real_open,     os_real_pwrite, os_real_pread,  os_real_sync,
    os_real_ftruncate, os_real_close, os_real_unlink, os_real_rename,
    os_real_size,     os_real_mkdir,  os_real_rmdir,  os_real_list,
    os_real_sync_dir};

URSULA_PRIVATE struct os_fs *os_fs(void) {
  return &os_fs_table;
}

URSULA_PRIVATE int os_sync_dir(const char *dir) {
  return os_fs_table.sync_dir(dir);
}

URSULA_PRIVATE int os_mkdir(const char *path) {
  if (os_fs_table.mkdir(path, 0755) == 0 || errno == EEXIST) return 0;
  return -1;
}

/* ------------------------------------------------------------ the env */

static uint64_t os_env_mono_ms(struct env *e) {
  (void)e;
  return os_now_ms();
}

static uint64_t os_env_wall_ms(struct env *e) {
  (void)e;
  return os_wall_ms();
}

/* splitmix64 (Steele, Lea, Flood 2014): the state advances by a constant
** under the mutex, the output is mixed outside it. */
static pthread_mutex_t os_rand_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t os_rand_state;
static int os_rand_seeded;

static uint64_t os_env_random(struct env *e) {
  uint64_t z;
  (void)e;
  pthread_mutex_lock(&os_rand_mu);
  if (!os_rand_seeded) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    os_rand_state = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    os_rand_state ^= os_now_ms() << 32 ^ (uint64_t)getpid() << 16;
    os_rand_seeded = 1;
  }
  z = (os_rand_state += 0x9e3779b97f4a7c15u);
  pthread_mutex_unlock(&os_rand_mu);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static struct env os_env_real = {os_env_mono_ms, os_env_wall_ms, os_env_random,
                                 &os_fs_table, NULL};

URSULA_PRIVATE struct env *env_real(void) {
  return &os_env_real;
}
