/*
** loop.c -- the per-core event loop: file descriptors, timers, and a
** mailbox that other threads post messages to.
**
** The split follows Redis's ae.c, in one file: a portable core, and one
** backend chosen here and nowhere else, epoll (URSULA_ENABLE_EPOLL, level
** triggered) or POSIX poll().  The core never calls epoll or poll itself;
** it goes through the static loop_backend_* functions:
**
**   loop_backend_open(l)            create the backend state
**   loop_backend_close(l)           release it
**   loop_backend_add(l, fd, ev)     start watching fd (l->fds[fd] exists)
**   loop_backend_mod(l, fd, ev)     change what fd is watched for
**   loop_backend_del(l, fd)         stop watching fd
**   loop_backend_wait(l, ms)        wait at most ms; fill l->fired[] and
**                                   return how many, 0 on EINTR, or
**                                   URSULA_ESYS
**
** TIME.  A loop reads the clock only through the env it was opened with
** (struct env, os.c; NULL = env_real()): l->env->mono_ms(l->env).  Timer
** deadlines are on that clock.  With a simulated env the clock moves only
** when the simulator moves it; the backend's wait still blocks in real
** time, so a simulator drives the loop with loop_run_once(l, 0, ...),
** which never blocks, and advances its clock between turns.
**
** One turn, loop_run_once():
**   1. wait in the backend until an fd is ready, the earliest timer is due,
**      LOOP_MAX_WAIT_MS passed or the caller's max_wait_ms passed,
**      whichever comes first (max_wait_ms 0: only look, never block);
**   2. cache the clock: loop_now_ms() is the env's mono_ms read here;
**   3. dispatch the fd events that the wait returned;
**   4. fire the timers that are due;
**   5. run the mailbox messages posted so far (one batch);
**   6. call on_turn_end.
** loop_run() is turns of loop_run_once() with no cap of its own, and
** checks the stop flag before each turn; loop_run_once() ignores it.
**
** Invariants.
**   - fd registration: l->fds[fd].fn != NULL iff fd is registered (every
**     fd index at or past l->cap_fds is not).  Each entry has a generation
**     that changes on every loop_add() and loop_del() of its fd.
**   - Dispatch: the wait's events are copied to l->fired[] together with
**     their fd's generation at that moment.  An event is dispatched only
**     if its fd is still registered with that generation, and only with
**     the events still watched (LOOP_ERROR always passes).  So a callback
**     may add, change or delete any fd, including fds with an event
**     pending in the same batch, and a fd number closed and reused within
**     one turn never receives the old number's event.
**   - poll backend: l->pfds[0..n_pfds) holds one pollfd per registered fd
**     and l->fds[fd].slot is its index; a removal moves the last pollfd
**     into the hole, so it is O(1).
**   - Timers: l->heap[1..n_heap] is a binary min-heap on deadline_ms
**     (heap[0] unused).  A timer is armed iff t->heap_index != 0, and then
**     l->heap[t->heap_index] == t.
**   - Mailbox: a FIFO list under l->mu plus a non-blocking self-pipe.
**     Before a wait that may block (step 1), the loop looks at the list
**     under l->mu: if it holds messages the wait only looks (0 ms), else
**     it sets l->sleeping, and clears it under l->mu once the wait
**     returns.  loop_post() writes one byte to the pipe only when it
**     finds l->sleeping set (and clears it: one byte wakes the wait).
**     A loop that is not sleeping takes the whole list at step 5 of the
**     turn it is in, or sees it non-empty before its next wait; so a
**     message never waits in the list through a blocking wait, and a
**     loop busy with turns is posted to without a system call on either
**     side.  The loop drains the pipe when it is readable (step 3, the
**     pipe is a registered fd).
**   - Stop and wake: a flag store and a write to the pipe, nothing else,
**     so both are async-signal-safe.
*/
#include "internal.h"

#define LOOP_MAX_WAIT_MS 1000 /* longest single wait, with or without timers */
#define LOOP_MIN_FDS 64       /* first size of the fd table */
#define LOOP_EPOLL_BATCH 256  /* events taken per epoll_wait */

/* The stop flag is a volatile sig_atomic_t, which a signal handler may
** set; GCC and Clang also get an atomic access, so that another thread's
** store is ordered too (and ThreadSanitizer agrees). */
#if defined(__GNUC__)
#define LOOP_STOP_GET(l) __atomic_load_n(&(l)->stop, __ATOMIC_ACQUIRE)
#define LOOP_STOP_SET(l, v) __atomic_store_n(&(l)->stop, (v), __ATOMIC_RELEASE)
#else
#define LOOP_STOP_GET(l) ((l)->stop)
#define LOOP_STOP_SET(l, v) ((void)((l)->stop = (v)))
#endif

/* One entry of the fd-indexed table. */
struct loop_fd {
  loop_io_fn fn; /* NULL = not registered */
  void *arg;
  unsigned events; /* LOOP_READ | LOOP_WRITE */
  uint32_t gen;    /* bumped on every add and del */
#if !URSULA_ENABLE_EPOLL
  size_t slot; /* index in l->pfds; owned by the poll backend */
#endif
};

/* An event returned by a wait, waiting for dispatch. */
struct loop_fired {
  int fd;
  unsigned events; /* LOOP_* */
  uint32_t gen;    /* l->fds[fd].gen when the wait returned */
};

struct loop {
  int id;
  void *user;
  struct env *env;            /* clocks: never NULL */
  uint64_t now_ms;            /* env's mono_ms at the start of the turn */
  volatile sig_atomic_t stop; /* set by loop_stop(), any thread */
  struct loop_fd *fds;        /* indexed by fd */
  size_t cap_fds;
  struct loop_fired *fired; /* filled by loop_backend_wait() */
  size_t cap_fired;
  struct loop_timer **heap; /* 1-based min-heap */
  size_t n_heap, cap_heap;
  pthread_mutex_t mu; /* guards mb_head, mb_tail, mb_len, sleeping */
  int mu_ready;       /* mu was initialised */
  struct loop_msg *mb_head, *mb_tail;
  uint64_t mb_len; /* messages queued in the mailbox now */
  int sleeping; /* in a wait that may block, the mailbox empty: a post
                   must wake it (see Mailbox at the top) */
  int wake_r, wake_w; /* self-pipe: read end is a registered fd */
  /* for metrics (loop_stats): microseconds spent in turns outside the
  ** wait, turns run, messages taken from the mailbox; loop thread only */
  uint64_t busy_us, turns, msgs;
#if URSULA_ENABLE_EPOLL
  int epfd;
  struct epoll_event ep_events[LOOP_EPOLL_BATCH];
#else
  struct pollfd *pfds;
  size_t n_pfds, cap_pfds;
#endif
};

/* Make l->fired hold at least n events.  URSULA_OK or URSULA_ENOMEM. */
static int loop_fired_reserve(struct loop *l, size_t n) {
  struct loop_fired *p;
  size_t cap = l->cap_fired ? l->cap_fired : 16;
  if (n <= l->cap_fired) return URSULA_OK;
  while (cap < n) {
    if (cap > SIZE_MAX / 2 / sizeof(*p)) return URSULA_ENOMEM;
    cap *= 2;
  }
  p = (struct loop_fired *)URSULA_REALLOC(l->fired, cap * sizeof(*p));
  if (p == NULL) return URSULA_ENOMEM;
  l->fired = p;
  l->cap_fired = cap;
  return URSULA_OK;
}

/* ================================================================ epoll */
#if URSULA_ENABLE_EPOLL

static uint32_t loop_backend_mask(unsigned events) {
  uint32_t m = 0;
  if (events & LOOP_READ) m |= EPOLLIN;
  if (events & LOOP_WRITE) m |= EPOLLOUT;
  return m;
}

static int loop_backend_open(struct loop *l) {
  l->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (l->epfd < 0) return URSULA_ESYS;
  return loop_fired_reserve(l, LOOP_EPOLL_BATCH);
}

static void loop_backend_close(struct loop *l) {
  if (l->epfd >= 0) close(l->epfd);
  l->epfd = -1;
}

static int loop_backend_add(struct loop *l, int fd, unsigned events) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.events = loop_backend_mask(events);
  ev.data.fd = fd;
  return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? URSULA_OK
                                                         : URSULA_ESYS;
}

static int loop_backend_mod(struct loop *l, int fd, unsigned events) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.events = loop_backend_mask(events);
  ev.data.fd = fd;
  return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) == 0 ? URSULA_OK
                                                         : URSULA_ESYS;
}

static void loop_backend_del(struct loop *l, int fd) {
  struct epoll_event ev; /* ignored, but kernels before 2.6.9 want it */
  memset(&ev, 0, sizeof(ev));
  (void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, &ev);
}

static int loop_backend_wait(struct loop *l, int timeout_ms) {
  int n, i;
  n = epoll_wait(l->epfd, l->ep_events, LOOP_EPOLL_BATCH, timeout_ms);
  if (n < 0) return errno == EINTR ? 0 : URSULA_ESYS;
  for (i = 0; i < n; i++) {
    uint32_t e = l->ep_events[i].events;
    unsigned ev = 0;
    if (e & EPOLLIN) ev |= LOOP_READ;
    if (e & EPOLLOUT) ev |= LOOP_WRITE;
    if (e & EPOLLERR) ev |= LOOP_ERROR;
    if (e & EPOLLHUP) ev |= LOOP_ERROR | LOOP_READ;
    l->fired[i].fd = l->ep_events[i].data.fd;
    l->fired[i].events = ev;
  }
  return n;
}

/* ================================================================= poll */
#else

static short loop_backend_mask(unsigned events) {
  short m = 0;
  if (events & LOOP_READ) m |= POLLIN;
  if (events & LOOP_WRITE) m |= POLLOUT;
  return m;
}

static int loop_backend_open(struct loop *l) {
  l->pfds = NULL;
  l->n_pfds = l->cap_pfds = 0;
  return URSULA_OK;
}

static void loop_backend_close(struct loop *l) {
  URSULA_FREE(l->pfds);
  l->pfds = NULL;
  l->n_pfds = l->cap_pfds = 0;
}

static int loop_backend_add(struct loop *l, int fd, unsigned events) {
  size_t slot;
  if (l->n_pfds == l->cap_pfds) {
    size_t cap = l->cap_pfds ? l->cap_pfds * 2 : 16;
    struct pollfd *p;
    if (cap > SIZE_MAX / sizeof(*p)) return URSULA_ENOMEM;
    p = (struct pollfd *)URSULA_REALLOC(l->pfds, cap * sizeof(*p));
    if (p == NULL) return URSULA_ENOMEM;
    l->pfds = p;
    l->cap_pfds = cap;
  }
  /* a wait can return every registered fd */
  if (loop_fired_reserve(l, l->n_pfds + 1) != URSULA_OK) return URSULA_ENOMEM;
  slot = l->n_pfds++;
  l->pfds[slot].fd = fd;
  l->pfds[slot].events = loop_backend_mask(events);
  l->pfds[slot].revents = 0;
  l->fds[fd].slot = slot;
  return URSULA_OK;
}

static int loop_backend_mod(struct loop *l, int fd, unsigned events) {
  l->pfds[l->fds[fd].slot].events = loop_backend_mask(events);
  return URSULA_OK;
}

static void loop_backend_del(struct loop *l, int fd) {
  size_t slot = l->fds[fd].slot, last = l->n_pfds - 1;
  URSULA_ASSERT(slot < l->n_pfds && l->pfds[slot].fd == fd);
  if (slot != last) {
    l->pfds[slot] = l->pfds[last];
    l->fds[l->pfds[slot].fd].slot = slot;
  }
  l->n_pfds--;
}

static int loop_backend_wait(struct loop *l, int timeout_ms) {
  int rc, n = 0;
  size_t i;
  rc = poll(l->pfds, (nfds_t)l->n_pfds, timeout_ms);
  if (rc < 0) return errno == EINTR ? 0 : URSULA_ESYS;
  for (i = 0; i < l->n_pfds && n < rc; i++) {
    short e = l->pfds[i].revents;
    unsigned ev = 0;
    if (e == 0) continue;
    if (e & POLLIN) ev |= LOOP_READ;
    if (e & POLLOUT) ev |= LOOP_WRITE;
    if (e & (POLLERR | POLLNVAL)) ev |= LOOP_ERROR;
    if (e & POLLHUP) ev |= LOOP_ERROR | LOOP_READ;
    l->fired[n].fd = l->pfds[i].fd;
    l->fired[n].events = ev;
    n++;
  }
  return n;
}

#endif /* URSULA_ENABLE_EPOLL */

/* ================================================================= core */

/* Grow the fd table so that fd is a valid index.  URSULA_OK or
** URSULA_ENOMEM (table unchanged). */
static int loop_fds_reserve(struct loop *l, int fd) {
  struct loop_fd *p;
  size_t cap = l->cap_fds ? l->cap_fds : LOOP_MIN_FDS;
  if ((size_t)fd < l->cap_fds) return URSULA_OK;
  while (cap <= (size_t)fd) {
    if (cap > SIZE_MAX / 2 / sizeof(*p)) return URSULA_ENOMEM;
    cap *= 2;
  }
  p = (struct loop_fd *)URSULA_REALLOC(l->fds, cap * sizeof(*p));
  if (p == NULL) return URSULA_ENOMEM;
  memset(p + l->cap_fds, 0, (cap - l->cap_fds) * sizeof(*p));
  l->fds = p;
  l->cap_fds = cap;
  return URSULA_OK;
}

/* The registered entry of fd, or NULL. */
static struct loop_fd *loop_fd_get(const struct loop *l, int fd) {
  if (fd < 0 || (size_t)fd >= l->cap_fds || l->fds[fd].fn == NULL) return NULL;
  return &l->fds[fd];
}

/* Register fd (not registered yet) for events (LOOP_READ|LOOP_WRITE, 0
** for errors only); fn(l, fd, events, arg) runs on the loop's thread when
** one happens.  URSULA_OK, URSULA_EINVAL (fd < 0, fn NULL or fd already
** registered), URSULA_ENOMEM or URSULA_ESYS (the backend refused fd); on
** failure nothing changed. */
URSULA_PRIVATE int loop_add(struct loop *l, int fd, unsigned events,
                            loop_io_fn fn, void *arg) {
  struct loop_fd *e;
  int rc;
  if (fd < 0 || fn == NULL) return URSULA_EINVAL;
  if (loop_fd_get(l, fd) != NULL) return URSULA_EINVAL;
  if ((rc = loop_fds_reserve(l, fd)) != URSULA_OK) return rc;
  events &= LOOP_READ | LOOP_WRITE;
  if ((rc = loop_backend_add(l, fd, events)) != URSULA_OK) return rc;
  e = &l->fds[fd];
  e->fn = fn;
  e->arg = arg;
  e->events = events;
  e->gen++;
  return URSULA_OK;
}

/* Change what a registered fd is watched for (LOOP_READ|LOOP_WRITE, 0 for
** errors only).  URSULA_OK, URSULA_EINVAL if fd is not registered, or
** URSULA_ESYS (registration unchanged). */
URSULA_PRIVATE int loop_mod(struct loop *l, int fd, unsigned events) {
  struct loop_fd *e = loop_fd_get(l, fd);
  int rc;
  if (e == NULL) return URSULA_EINVAL;
  events &= LOOP_READ | LOOP_WRITE;
  if (events == e->events) return URSULA_OK;
  if ((rc = loop_backend_mod(l, fd, events)) != URSULA_OK) return rc;
  e->events = events;
  return URSULA_OK;
}

/* Forget fd; a no-op if it is not registered.  An event of fd still
** pending in this turn is dropped. */
URSULA_PRIVATE void loop_del(struct loop *l, int fd) {
  struct loop_fd *e = loop_fd_get(l, fd);
  if (e == NULL) return;
  loop_backend_del(l, fd);
  e->fn = NULL;
  e->arg = NULL;
  e->events = 0;
  e->gen++;
}

/* ---------------------------------------------------------------- timers */

static void loop_heap_place(struct loop *l, size_t i, struct loop_timer *t) {
  l->heap[i] = t;
  t->heap_index = i;
}

/* Move the timer at index i towards the root while it is earlier than its
** parent. */
static void loop_heap_up(struct loop *l, size_t i) {
  struct loop_timer *t = l->heap[i];
  while (i > 1 && l->heap[i / 2]->deadline_ms > t->deadline_ms) {
    loop_heap_place(l, i, l->heap[i / 2]);
    i /= 2;
  }
  loop_heap_place(l, i, t);
}

/* Move the timer at index i towards the leaves while a child is earlier. */
static void loop_heap_down(struct loop *l, size_t i) {
  struct loop_timer *t = l->heap[i];
  for (;;) {
    size_t c = 2 * i;
    if (c > l->n_heap) break;
    if (c + 1 <= l->n_heap &&
        l->heap[c + 1]->deadline_ms < l->heap[c]->deadline_ms)
      c++;
    if (l->heap[c]->deadline_ms >= t->deadline_ms) break;
    loop_heap_place(l, i, l->heap[c]);
    i = c;
  }
  loop_heap_place(l, i, t);
}

/* Take the armed timer t out of the heap and disarm it. */
static void loop_heap_remove(struct loop *l, struct loop_timer *t) {
  size_t i = t->heap_index;
  struct loop_timer *last = l->heap[l->n_heap];
  URSULA_ASSERT(i >= 1 && i <= l->n_heap && l->heap[i] == t);
  l->heap[l->n_heap--] = NULL;
  t->heap_index = 0;
  if (last == t) return;
  loop_heap_place(l, i, last);
  loop_heap_up(l, i);
  loop_heap_down(l, last->heap_index);
}

/* Arm t, or re-arm it if armed.  If the heap cannot grow (out of memory)
** the error is logged and t is left disarmed: the prototype has no way to
** report it. */
URSULA_PRIVATE void loop_timer_set(struct loop *l, struct loop_timer *t,
                                   uint64_t deadline_ms, loop_timer_fn fn,
                                   void *arg) {
  t->on_fire = fn;
  t->arg = arg;
  if (t->heap_index != 0) {
    URSULA_ASSERT(t->heap_index <= l->n_heap && l->heap[t->heap_index] == t);
    t->deadline_ms = deadline_ms;
    loop_heap_up(l, t->heap_index);
    loop_heap_down(l, t->heap_index);
    return;
  }
  t->deadline_ms = deadline_ms;
  if (l->n_heap + 1 >= l->cap_heap) {
    size_t cap = l->cap_heap ? l->cap_heap * 2 : 64;
    struct loop_timer **p;
    if (cap > SIZE_MAX / sizeof(*p))
      p = NULL;
    else
      p = (struct loop_timer **)URSULA_REALLOC(l->heap, cap * sizeof(*p));
    if (p == NULL) {
      LOG_E("loop %d: out of memory arming a timer", l->id);
      return;
    }
    l->heap = p;
    l->cap_heap = cap;
  }
  l->n_heap++;
  loop_heap_place(l, l->n_heap, t);
  loop_heap_up(l, l->n_heap);
}

/* Disarm t; a no-op if it is not armed. */
URSULA_PRIVATE void loop_timer_cancel(struct loop *l, struct loop_timer *t) {
  if (t->heap_index != 0) loop_heap_remove(l, t);
}

/* Fire the timers due at the cached now.  At most as many timers as were
** armed on entry fire, so a timer that re-arms itself for "now" cannot
** keep the turn going forever; whatever is left is due at the next turn,
** whose wait then does not block. */
static void loop_fire_timers(struct loop *l) {
  size_t budget = l->n_heap;
  while (budget-- > 0 && l->n_heap > 0 &&
         l->heap[1]->deadline_ms <= l->now_ms) {
    struct loop_timer *t = l->heap[1];
    loop_heap_remove(l, t);
    t->on_fire(l, t->arg);
  }
}

/* How long the next wait may block, in milliseconds. */
static int loop_wait_ms(const struct loop *l) {
  uint64_t now, deadline;
  if (l->n_heap == 0) return LOOP_MAX_WAIT_MS;
  deadline = l->heap[1]->deadline_ms;
  now = l->env->mono_ms(l->env); /* fresh: the turn itself took time */
  if (deadline <= now) return 0;
  if (deadline - now > LOOP_MAX_WAIT_MS) return LOOP_MAX_WAIT_MS;
  return (int)(deadline - now);
}

/* --------------------------------------------------------------- mailbox */

/* Write one byte to the wake pipe.  Async-signal-safe; keeps errno.  A
** full pipe already guarantees a wake-up, so EAGAIN is fine. */
static void loop_poke(struct loop *l) {
  int saved = errno;
  char c = 1;
  ssize_t w = write(l->wake_w, &c, 1);
  (void)w;
  errno = saved;
}

/* The wake pipe's read end is readable: empty it.  The mailbox itself is
** taken every turn by loop_drain_mailbox(), after this. */
static void loop_on_wake(struct loop *l, int fd, unsigned events, void *arg) {
  char tmp[256];
  ssize_t r;
  (void)l;
  (void)events;
  (void)arg;
  do {
    r = read(fd, tmp, sizeof(tmp));
  } while (r == (ssize_t)sizeof(tmp) || (r < 0 && errno == EINTR));
}

/* Take every message queued now and run them, in order, outside the lock.
** Messages posted meanwhile wait for the next turn. */
static void loop_drain_mailbox(struct loop *l) {
  struct loop_msg *m;
  pthread_mutex_lock(&l->mu);
  m = l->mb_head;
  l->mb_head = l->mb_tail = NULL;
  l->mb_len = 0;
  pthread_mutex_unlock(&l->mu);
  while (m != NULL) {
    struct loop_msg *next = m->next;
    m->next = NULL;
    l->msgs++;
    m->on_msg(l, m); /* may free m */
    m = next;
  }
}

/* Post m: appended to l's FIFO under the mutex, with a byte to the wake
** pipe only when the loop sleeps in its wait.  Any thread; takes
** ownership of m.  l must outlive the call (join posters before
** loop_close). */
URSULA_PRIVATE void loop_post(struct loop *l, struct loop_msg *m) {
  int wake;
  m->next = NULL;
  pthread_mutex_lock(&l->mu);
  if (l->mb_tail != NULL)
    l->mb_tail->next = m;
  else
    l->mb_head = m;
  l->mb_tail = m;
  l->mb_len++;
  wake = l->sleeping;
  l->sleeping = 0; /* one byte ends the wait */
  pthread_mutex_unlock(&l->mu);
  if (wake) loop_poke(l);
}

/* Any thread, async-signal-safe: a flag store and a pipe write. */
URSULA_PRIVATE void loop_stop(struct loop *l) {
  LOOP_STOP_SET(l, 1);
  loop_poke(l);
}

/* Any thread, async-signal-safe: end the current wait so the loop's
** thread runs a turn (and its on_turn_end sees flags set elsewhere). */
URSULA_PRIVATE void loop_wake(struct loop *l) {
  loop_poke(l);
}

/* ------------------------------------------------------------ lifecycle */

/* The id given to loop_open(), and an opaque user pointer (NULL until
** set) the owner keeps on the loop. */
URSULA_PRIVATE void *loop_get_user(const struct loop *l) {
  return l->user;
}
URSULA_PRIVATE void loop_set_user(struct loop *l, void *user) {
  l->user = user;
}
/* The env's mono_ms as read when the current turn's wait returned (or at
** loop_open(), before the first turn). */
URSULA_PRIVATE uint64_t loop_now_ms(const struct loop *l) {
  return l->now_ms;
}

/* Release everything l owns: its pipe and backend fds, its tables, and the
** messages still queued (each one block from URSULA_MALLOC, freed with
** URSULA_FREE without running on_msg).  Registered fds are the callers'
** and stay open; armed timers are forgotten without being touched (their
** owners may already be gone).  Safe on a half-opened loop. */
URSULA_PRIVATE void loop_close(struct loop *l) {
  struct loop_msg *m;
  if (l == NULL) return;
  loop_backend_close(l);
  if (l->wake_r >= 0) close(l->wake_r);
  if (l->wake_w >= 0) close(l->wake_w);
  m = l->mb_head;
  while (m != NULL) {
    struct loop_msg *next = m->next;
    if (m->on_drop != NULL)
      m->on_drop(m);
    else
      URSULA_FREE(m);
    m = next;
  }
  if (l->mu_ready) pthread_mutex_destroy(&l->mu);
  URSULA_FREE(l->fds);
  URSULA_FREE(l->fired);
  URSULA_FREE(l->heap);
  URSULA_FREE(l);
}

/* Open a loop numbered id, reading time from env (NULL: env_real(); it
** must outlive the loop).  On success *out is set; on failure nothing is
** left allocated or open, *out is untouched, and err (URSULA_ERRMSG_LEN
** bytes, may be NULL) says why. */
URSULA_PRIVATE int loop_open(struct loop **out, int id, struct env *env,
                             char *err) {
  struct loop *l;
  int p[2], rc, e = 0;
  const char *what = "";
  l = (struct loop *)URSULA_MALLOC(sizeof(*l));
  if (l == NULL) {
    if (err != NULL)
      snprintf(err, URSULA_ERRMSG_LEN, "loop %d: out of memory", id);
    return URSULA_ENOMEM;
  }
  memset(l, 0, sizeof(*l));
  l->id = id;
  l->wake_r = l->wake_w = -1;
#if URSULA_ENABLE_EPOLL
  l->epfd = -1;
#endif
  l->env = env != NULL ? env : env_real();
  l->now_ms = l->env->mono_ms(l->env);
  if ((e = pthread_mutex_init(&l->mu, NULL)) != 0) {
    what = "pthread_mutex_init";
    rc = URSULA_ESYS;
    goto fail;
  }
  l->mu_ready = 1;
  if (pipe(p) != 0) {
    e = errno;
    what = "pipe";
    rc = URSULA_ESYS;
    goto fail;
  }
  l->wake_r = p[0];
  l->wake_w = p[1];
  if (os_set_nonblock(p[0]) != URSULA_OK ||
      os_set_nonblock(p[1]) != URSULA_OK || os_set_cloexec(p[0]) != URSULA_OK ||
      os_set_cloexec(p[1]) != URSULA_OK) {
    e = errno;
    what = "fcntl";
    rc = URSULA_ESYS;
    goto fail;
  }
  errno = 0;
  if ((rc = loop_backend_open(l)) != URSULA_OK) {
    e = errno;
    what = URSULA_ENABLE_EPOLL ? "epoll_create1" : "event backend";
    goto fail;
  }
  errno = 0;
  if ((rc = loop_add(l, l->wake_r, LOOP_READ, loop_on_wake, NULL)) !=
      URSULA_OK) {
    e = errno;
    what = "watching the wake pipe";
    goto fail;
  }
  *out = l;
  return URSULA_OK;
fail:
  if (err != NULL) {
    if (rc == URSULA_ENOMEM || e == 0)
      snprintf(err, URSULA_ERRMSG_LEN, "loop %d: %s: %s", id, what,
               ursula_strerror(rc));
    else
      snprintf(err, URSULA_ERRMSG_LEN, "loop %d: %s: %s", id, what,
               strerror(e));
  }
  loop_close(l);
  return rc;
}

/* Run one turn (steps 1-6 at the top of this file), whether or not a
** stop was requested.  The wait blocks at most max_wait_ms (0: it only
** looks at what is ready; negative: no cap but the loop's own, the
** earliest timer and LOOP_MAX_WAIT_MS).  Returns URSULA_OK after the
** turn, or URSULA_ESYS if the backend's wait failed (EINTR is not a
** failure; nothing was dispatched).  Loop thread only, and not
** reentrant: callbacks must not call it or loop_run(). */
URSULA_PRIVATE int loop_run_once(struct loop *l, int max_wait_ms,
                                 void (*on_turn_end)(struct loop *)) {
  int n, i, wait_ms = loop_wait_ms(l);
  uint64_t t0;
  if (max_wait_ms >= 0 && max_wait_ms < wait_ms) wait_ms = max_wait_ms;
  if (wait_ms != 0) { /* may block: posters must wake it (Mailbox) */
    pthread_mutex_lock(&l->mu);
    if (l->mb_head != NULL)
      wait_ms = 0;
    else
      l->sleeping = 1;
    pthread_mutex_unlock(&l->mu);
  }
  n = loop_backend_wait(l, wait_ms);
  if (wait_ms != 0) {
    pthread_mutex_lock(&l->mu);
    l->sleeping = 0;
    pthread_mutex_unlock(&l->mu);
  }
  l->now_ms = l->env->mono_ms(l->env);
  t0 = os_now_us();
  if (n < 0) {
    LOG_E("loop %d: wait: %s", l->id, strerror(errno));
    return n;
  }
  /* snapshot generations before any callback can change them */
  for (i = 0; i < n; i++) {
    int fd = l->fired[i].fd;
    l->fired[i].gen =
        (fd >= 0 && (size_t)fd < l->cap_fds) ? l->fds[fd].gen : 0;
  }
  for (i = 0; i < n; i++) {
    int fd = l->fired[i].fd;
    struct loop_fd *e = loop_fd_get(l, fd);
    unsigned ev;
    if (e == NULL || e->gen != l->fired[i].gen) continue;
    ev = l->fired[i].events & (e->events | LOOP_ERROR);
    if (ev != 0) e->fn(l, fd, ev, e->arg);
  }
  loop_fire_timers(l);
  loop_drain_mailbox(l);
  if (on_turn_end != NULL) on_turn_end(l);
  l->busy_us += os_now_us() - t0;
  l->turns++;
  return URSULA_OK;
}

URSULA_PRIVATE void loop_stats(struct loop *l, struct loop_stats *out) {
  out->busy_us = l->busy_us;
  out->turns = l->turns;
  out->msgs = l->msgs;
  pthread_mutex_lock(&l->mu);
  out->queued = l->mb_len;
  pthread_mutex_unlock(&l->mu);
}

/* Run turns until loop_stop().  Returns URSULA_OK once stopped (the stop
** request is then consumed: a later loop_run() runs until the next
** loop_stop(); a stop made before loop_run() makes it return at once), or
** URSULA_ESYS if the backend's wait fails (EINTR is not a failure).
** Loop thread only, and not reentrant: callbacks must not call it. */
URSULA_PRIVATE int loop_run(struct loop *l,
                            void (*on_turn_end)(struct loop *)) {
  int rc = URSULA_OK;
  while (!LOOP_STOP_GET(l)) {
    if ((rc = loop_run_once(l, -1, on_turn_end)) != URSULA_OK) break;
  }
  LOOP_STOP_SET(l, 0);
  return rc;
}

#undef LOOP_MAX_WAIT_MS
#undef LOOP_MIN_FDS
#undef LOOP_EPOLL_BATCH
#undef LOOP_STOP_GET
#undef LOOP_STOP_SET
