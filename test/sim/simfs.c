/*
** simfs.c -- an in-memory file system behind struct os_fs (src/internal.h)
** for the simulator: many nodes in one thread, no real I/O.  The table
** has no context pointer, so the path is the context: node n's files live
** under "/n<n>/" (the first path component is the node; the root "/"
** always exists and is never removed).
**
** THE MODEL (pessimistic; each rule is asserted by simfs_test.c):
**   - A file (an inode) has its current bytes (what reads see) and its
**     durable bytes (what a crash starts from), and the list of the
**     operations (pwrite, ftruncate) made since its last sync, in order.
**   - sync(fd) applies that list to the durable bytes and empties it: the
**     file's data is durable as of the sync.  A sync that fails (EIO,
**     armed by simfs_fail_syncs) empties the list WITHOUT applying it:
**     what it covered is not durable and never will be, while reads still
**     see it (Linux after a failed fsync: the pages are marked clean, a
**     retried fsync returns 0; "fsyncgate").
**   - Directory entries (a file or directory created, renamed, unlinked,
**     a directory made or removed) are durable only after sync_dir of the
**     directory that holds them: each directory has its current and its
**     durable set of entries, and sync_dir(d) makes d's durable set its
**     current one.  Until then a crash brings back d's old set (a file
**     created and synced but never linked durably is lost).
**   - simfs_crash(prefix): every file under prefix goes back to its
**     durable bytes, and then a prefix of its unsynced operations, in
**     order, survives: the rng picks how many survive whole, and the next
**     one, if a write, survives torn: up to a sector boundary
**     (SIMFS_SECTOR bytes of the file) strictly inside it, or not at all.
**     Every directory under prefix gets its durable entries back.  The
**     node's descriptors are closed.
**   - Faults the caller arms, for the node of the next calls only:
**     simfs_fail_syncs(n): the next n syncs fail with EIO (as above);
**     simfs_fail_writes(n): the next n pwrites fail with ENOSPC, writing
**     nothing.  simfs_flip(prefix) flips one bit of the durable (and
**     current) bytes of one durable file under prefix, a segment ("*.wal",
**     not within its last SIMFS_FLIP_TAIL bytes: a flip there would pass
**     for a torn tail, which the WAL cuts by design) or "snapshot".
**   - Deterministic: every choice comes from the caller's rng.  Inodes
**     live until simfs_reset().
*/
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SIMFS_SECTOR 512
#define SIMFS_FLIP_TAIL 1024
#define SIMFS_MAX_FD 4096
#define SIMFS_PATH 128

struct simfs_op { /* an unsynced pwrite (p != NULL) or ftruncate */
  uint64_t off; /* write: its offset; truncate: the new length */
  size_t n;
  unsigned char *p;
};

struct simfs_bytes {
  unsigned char *p;
  size_t len, cap;
};

struct simfs_ino {
  char node[SIMFS_PATH]; /* the node's prefix "/n3/" it belongs to */
  struct simfs_bytes cur, dur;
  struct simfs_op *ops;
  size_t n_ops, cap_ops;
  int flipped; /* simfs_flip flipped a bit of it */
};

struct simfs_ent { /* a directory entry: path -> inode (-1: a directory) */
  char path[SIMFS_PATH];
  int ino;
};

struct simfs_set {
  struct simfs_ent *e;
  size_t n, cap;
};

static struct {
  struct simfs_ino *ino;
  size_t n_ino, cap_ino;
  struct simfs_set cur, dur; /* every directory's entries */
  int fd[SIMFS_MAX_FD];      /* descriptor -> inode + 1 (0: free) */
  int fail_syncs, fail_writes;
  uint64_t n_syncs, n_failed_syncs, n_failed_writes, n_torn, n_flips;
} simfs;

/* ------------------------------------------------------------- helpers */

static void simfs_bytes_set_len(struct simfs_bytes *b, size_t len) {
  if (len > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < len) cap *= 2;
    b->p = (unsigned char *)realloc(b->p, cap);
    if (b->p == NULL) abort();
    b->cap = cap;
  }
  if (len > b->len) memset(b->p + b->len, 0, len - b->len);
  b->len = len;
}

static void simfs_bytes_write(struct simfs_bytes *b, uint64_t off,
                              const void *p, size_t n) {
  if (off + n > b->len) simfs_bytes_set_len(b, (size_t)off + n);
  memcpy(b->p + off, p, n);
}

static void simfs_bytes_copy(struct simfs_bytes *to,
                             const struct simfs_bytes *from) {
  to->len = 0;
  simfs_bytes_set_len(to, from->len);
  if (from->len) memcpy(to->p, from->p, from->len);
}

/* The directory that holds path ("/" for "/n3"). */
static void simfs_parent(const char *path, char *out) {
  const char *s = strrchr(path, '/');
  size_t n = s == NULL ? 0 : (size_t)(s - path);
  if (n == 0) {
    strcpy(out, "/");
    return;
  }
  memcpy(out, path, n);
  out[n] = 0;
}

static int simfs_in_dir(const char *path, const char *dir) {
  char p[SIMFS_PATH];
  simfs_parent(path, p);
  return strcmp(p, dir) == 0;
}

static int simfs_under(const char *path, const char *prefix) {
  return strncmp(path, prefix, strlen(prefix)) == 0;
}

static struct simfs_ent *simfs_find(struct simfs_set *s, const char *path) {
  size_t i;
  for (i = 0; i < s->n; i++)
    if (strcmp(s->e[i].path, path) == 0) return &s->e[i];
  return NULL;
}

static void simfs_set_put(struct simfs_set *s, const char *path, int ino) {
  struct simfs_ent *e = simfs_find(s, path);
  if (e == NULL) {
    if (s->n == s->cap) {
      s->cap = s->cap ? 2 * s->cap : 64;
      s->e = (struct simfs_ent *)realloc(s->e, s->cap * sizeof(*s->e));
      if (s->e == NULL) abort();
    }
    e = &s->e[s->n++];
    strncpy(e->path, path, SIMFS_PATH - 1);
    e->path[SIMFS_PATH - 1] = 0;
  }
  e->ino = ino;
}

static void simfs_set_del(struct simfs_set *s, const char *path) {
  struct simfs_ent *e = simfs_find(s, path);
  if (e != NULL) *e = s->e[--s->n];
}

static int simfs_dir_exists(const char *dir) {
  struct simfs_ent *e;
  if (strcmp(dir, "/") == 0) return 1;
  e = simfs_find(&simfs.cur, dir);
  return e != NULL && e->ino < 0;
}

static int simfs_new_ino(const char *path) {
  struct simfs_ino *n;
  const char *s = strchr(path + 1, '/');
  size_t k = s == NULL ? strlen(path) : (size_t)(s - path) + 1;
  if (simfs.n_ino == simfs.cap_ino) {
    simfs.cap_ino = simfs.cap_ino ? 2 * simfs.cap_ino : 64;
    simfs.ino = (struct simfs_ino *)realloc(
        simfs.ino, simfs.cap_ino * sizeof(*simfs.ino));
    if (simfs.ino == NULL) abort();
  }
  n = &simfs.ino[simfs.n_ino];
  memset(n, 0, sizeof(*n));
  if (k >= SIMFS_PATH) k = SIMFS_PATH - 1;
  memcpy(n->node, path, k);
  n->node[k] = 0;
  return (int)simfs.n_ino++;
}

static struct simfs_ino *simfs_fd_ino(int fd) {
  if (fd < 0 || fd >= SIMFS_MAX_FD || simfs.fd[fd] == 0) return NULL;
  return &simfs.ino[simfs.fd[fd] - 1];
}

static void simfs_push_op(struct simfs_ino *n, uint64_t off, const void *p,
                          size_t len) {
  struct simfs_op *o;
  if (n->n_ops == n->cap_ops) {
    n->cap_ops = n->cap_ops ? 2 * n->cap_ops : 8;
    n->ops = (struct simfs_op *)realloc(n->ops, n->cap_ops * sizeof(*n->ops));
    if (n->ops == NULL) abort();
  }
  o = &n->ops[n->n_ops++];
  o->off = off;
  o->n = len;
  o->p = NULL;
  if (p != NULL) {
    o->p = (unsigned char *)malloc(len ? len : 1);
    if (o->p == NULL) abort();
    memcpy(o->p, p, len);
  }
}

static void simfs_apply_op(struct simfs_bytes *b, const struct simfs_op *o,
                           size_t n) {
  if (o->p == NULL)
    simfs_bytes_set_len(b, (size_t)o->off);
  else
    simfs_bytes_write(b, o->off, o->p, n);
}

static void simfs_drop_ops(struct simfs_ino *n) {
  size_t i;
  for (i = 0; i < n->n_ops; i++) free(n->ops[i].p);
  n->n_ops = 0;
}

/* ------------------------------------------------------ the os_fs table */

static int simfs_open(const char *path, int flags, int mode) {
  struct simfs_ent *e = simfs_find(&simfs.cur, path);
  char dir[SIMFS_PATH];
  int fd, ino;
  (void)mode;
  if (strlen(path) >= SIMFS_PATH) {
    errno = ENAMETOOLONG;
    return -1;
  }
  if (e != NULL && e->ino < 0) {
    errno = EISDIR;
    return -1;
  }
  if (e == NULL) {
    simfs_parent(path, dir);
    if (!(flags & O_CREAT) || !simfs_dir_exists(dir)) {
      errno = ENOENT;
      return -1;
    }
    ino = simfs_new_ino(path);
    simfs_set_put(&simfs.cur, path, ino);
  } else {
    ino = e->ino;
    if ((flags & O_CREAT) && (flags & O_EXCL)) {
      errno = EEXIST;
      return -1;
    }
    if ((flags & O_TRUNC) && simfs.ino[ino].cur.len > 0) {
      simfs_bytes_set_len(&simfs.ino[ino].cur, 0);
      simfs_push_op(&simfs.ino[ino], 0, NULL, 0);
    }
  }
  for (fd = 3; fd < SIMFS_MAX_FD; fd++)
    if (simfs.fd[fd] == 0) {
      simfs.fd[fd] = ino + 1;
      return fd;
    }
  errno = EMFILE;
  return -1;
}

static ssize_t simfs_pwrite(int fd, const void *p, size_t n, off_t off) {
  struct simfs_ino *i = simfs_fd_ino(fd);
  if (i == NULL || off < 0) {
    errno = EBADF;
    return -1;
  }
  if (simfs.fail_writes > 0) {
    simfs.fail_writes--;
    simfs.n_failed_writes++;
    errno = ENOSPC;
    return -1;
  }
  simfs_bytes_write(&i->cur, (uint64_t)off, p, n);
  simfs_push_op(i, (uint64_t)off, p, n);
  return (ssize_t)n;
}

static ssize_t simfs_pread(int fd, void *p, size_t n, off_t off) {
  struct simfs_ino *i = simfs_fd_ino(fd);
  if (i == NULL || off < 0) {
    errno = EBADF;
    return -1;
  }
  if ((uint64_t)off >= i->cur.len) return 0;
  if (n > i->cur.len - (size_t)off) n = i->cur.len - (size_t)off;
  memcpy(p, i->cur.p + off, n);
  return (ssize_t)n;
}

static int simfs_sync(int fd) {
  struct simfs_ino *i = simfs_fd_ino(fd);
  size_t k;
  if (i == NULL) {
    errno = EBADF;
    return -1;
  }
  simfs.n_syncs++;
  if (simfs.fail_syncs > 0) { /* the pages are dropped: never durable */
    simfs.fail_syncs--;
    simfs.n_failed_syncs++;
    simfs_drop_ops(i);
    errno = EIO;
    return -1;
  }
  for (k = 0; k < i->n_ops; k++) simfs_apply_op(&i->dur, &i->ops[k], i->ops[k].n);
  simfs_drop_ops(i);
  return 0;
}

static int simfs_ftruncate(int fd, off_t len) {
  struct simfs_ino *i = simfs_fd_ino(fd);
  if (i == NULL || len < 0) {
    errno = EBADF;
    return -1;
  }
  simfs_bytes_set_len(&i->cur, (size_t)len);
  simfs_push_op(i, (uint64_t)len, NULL, 0);
  return 0;
}

static int simfs_close(int fd) {
  if (simfs_fd_ino(fd) == NULL) {
    errno = EBADF;
    return -1;
  }
  simfs.fd[fd] = 0;
  return 0;
}

static int simfs_unlink(const char *path) {
  struct simfs_ent *e = simfs_find(&simfs.cur, path);
  if (e == NULL || e->ino < 0) {
    errno = e == NULL ? ENOENT : EISDIR;
    return -1;
  }
  simfs_set_del(&simfs.cur, path);
  return 0;
}

static int simfs_rename(const char *from, const char *to) {
  struct simfs_ent *e = simfs_find(&simfs.cur, from);
  char d[SIMFS_PATH];
  int ino;
  simfs_parent(to, d);
  if (e == NULL || !simfs_dir_exists(d) || strlen(to) >= SIMFS_PATH) {
    errno = ENOENT;
    return -1;
  }
  ino = e->ino;
  simfs_set_del(&simfs.cur, from);
  simfs_set_put(&simfs.cur, to, ino);
  return 0;
}

static int simfs_size(int fd, uint64_t *out) {
  struct simfs_ino *i = simfs_fd_ino(fd);
  if (i == NULL) {
    errno = EBADF;
    return -1;
  }
  *out = i->cur.len;
  return 0;
}

static int simfs_mkdir(const char *path, int mode) {
  char d[SIMFS_PATH];
  (void)mode;
  if (strlen(path) >= SIMFS_PATH) {
    errno = ENAMETOOLONG;
    return -1;
  }
  simfs_parent(path, d);
  if (!simfs_dir_exists(d)) {
    errno = ENOENT;
    return -1;
  }
  if (strcmp(path, "/") == 0 || simfs_find(&simfs.cur, path) != NULL) {
    errno = EEXIST;
    return -1;
  }
  simfs_set_put(&simfs.cur, path, -1);
  return 0;
}

static int simfs_rmdir(const char *path) {
  size_t i;
  if (!simfs_dir_exists(path) || strcmp(path, "/") == 0) {
    errno = ENOENT;
    return -1;
  }
  for (i = 0; i < simfs.cur.n; i++)
    if (simfs_in_dir(simfs.cur.e[i].path, path)) {
      errno = ENOTEMPTY;
      return -1;
    }
  simfs_set_del(&simfs.cur, path);
  return 0;
}

/* In the order of the table (deterministic); the names are copied first,
** so fn may change the directory. */
static int simfs_list(const char *dir, int (*fn)(void *arg, const char *name),
                      void *arg) {
  char(*names)[SIMFS_PATH];
  size_t i, n = 0, dl = strcmp(dir, "/") == 0 ? 0 : strlen(dir);
  int rc = 0;
  if (!simfs_dir_exists(dir)) {
    errno = ENOENT;
    return -1;
  }
  names = (char(*)[SIMFS_PATH])malloc((simfs.cur.n + 1) * SIMFS_PATH);
  if (names == NULL) abort();
  for (i = 0; i < simfs.cur.n; i++)
    if (simfs_in_dir(simfs.cur.e[i].path, dir))
      strcpy(names[n++], simfs.cur.e[i].path + dl + 1);
  for (i = 0; i < n && rc == 0; i++) rc = fn(arg, names[i]);
  free(names);
  return rc > 0 ? rc : 0;
}

static int simfs_sync_dir(const char *dir) {
  size_t i;
  if (!simfs_dir_exists(dir)) {
    errno = ENOENT;
    return -1;
  }
  for (i = simfs.dur.n; i-- > 0;)
    if (simfs_in_dir(simfs.dur.e[i].path, dir))
      simfs_set_del(&simfs.dur, simfs.dur.e[i].path);
  for (i = 0; i < simfs.cur.n; i++)
    if (simfs_in_dir(simfs.cur.e[i].path, dir))
      simfs_set_put(&simfs.dur, simfs.cur.e[i].path, simfs.cur.e[i].ino);
  return 0;
}

static struct os_fs simfs_table_ = {
    simfs_open,   simfs_pwrite, simfs_pread, simfs_sync,  simfs_ftruncate,
    simfs_close,  simfs_unlink, simfs_rename, simfs_size, simfs_mkdir,
    simfs_rmdir,  simfs_list,   simfs_sync_dir};

/* ------------------------------------------------------ the simulator's */

/* The table every node's env->fs points at. */
static struct os_fs *simfs_table(void) {
  return &simfs_table_;
}

/* Forget every file and inode (before each seed). */
static void simfs_reset(void) {
  size_t i;
  for (i = 0; i < simfs.n_ino; i++) {
    simfs_drop_ops(&simfs.ino[i]);
    free(simfs.ino[i].ops);
    free(simfs.ino[i].cur.p);
    free(simfs.ino[i].dur.p);
  }
  free(simfs.ino);
  free(simfs.cur.e);
  free(simfs.dur.e);
  memset(&simfs, 0, sizeof(simfs));
}

/* Arm faults for the next calls (see the model). */
static void simfs_fail_syncs(int n) {
  simfs.fail_syncs = n;
}
static void simfs_fail_writes(int n) {
  simfs.fail_writes = n;
}

static void simfs_close_node(const char *prefix) {
  int fd;
  for (fd = 0; fd < SIMFS_MAX_FD; fd++)
    if (simfs.fd[fd] != 0 &&
        strcmp(simfs.ino[simfs.fd[fd] - 1].node, prefix) == 0)
      simfs.fd[fd] = 0;
}

/* Where a torn write of o ends: a sector boundary of the file strictly
** inside it, or its start; choice picks one of those. */
static size_t simfs_torn_len(const struct simfs_op *o, uint64_t choice) {
  uint64_t first = (o->off / SIMFS_SECTOR + 1) * SIMFS_SECTOR, cuts = 0;
  if (first < o->off + o->n) cuts = (o->off + o->n - 1 - first) / SIMFS_SECTOR + 1;
  choice %= cuts + 1;
  return choice == 0 ? 0 : (size_t)(first + (choice - 1) * SIMFS_SECTOR - o->off);
}

/* One inode after a crash: its durable bytes, then a prefix of its
** unsynced operations, the last one maybe torn; that is now durable. */
static void simfs_crash_ino(struct simfs_ino *n, uint64_t (*rnd)(void *),
                            void *arg) {
  size_t keep = n->n_ops ? (size_t)(rnd(arg) % (n->n_ops + 1)) : 0, k;
  for (k = 0; k < keep; k++) simfs_apply_op(&n->dur, &n->ops[k], n->ops[k].n);
  if (keep < n->n_ops && n->ops[keep].p != NULL) {
    size_t t = simfs_torn_len(&n->ops[keep], rnd(arg));
    if (t > 0) {
      simfs_apply_op(&n->dur, &n->ops[keep], t);
      simfs.n_torn++;
    }
  }
  simfs_drop_ops(n);
  simfs_bytes_copy(&n->cur, &n->dur);
}

/* Node prefix ("/n3/") crashes or loses power: see the model. */
static void simfs_crash(const char *prefix, uint64_t (*rnd)(void *),
                        void *arg) {
  size_t i;
  for (i = 0; i < simfs.n_ino; i++)
    if (strcmp(simfs.ino[i].node, prefix) == 0)
      simfs_crash_ino(&simfs.ino[i], rnd, arg);
  for (i = simfs.cur.n; i-- > 0;)
    if (simfs_under(simfs.cur.e[i].path, prefix))
      simfs_set_del(&simfs.cur, simfs.cur.e[i].path);
  for (i = 0; i < simfs.dur.n; i++)
    if (simfs_under(simfs.dur.e[i].path, prefix))
      simfs_set_put(&simfs.cur, simfs.dur.e[i].path, simfs.dur.e[i].ino);
  simfs_close_node(prefix);
}

/* The node's disk is replaced by an empty one: nothing under prefix is
** left, durably (the directory prefix itself stays, empty). */
static void simfs_wipe(const char *prefix) {
  size_t i;
  for (i = simfs.cur.n; i-- > 0;)
    if (simfs_under(simfs.cur.e[i].path, prefix))
      simfs_set_del(&simfs.cur, simfs.cur.e[i].path);
  for (i = simfs.dur.n; i-- > 0;)
    if (simfs_under(simfs.dur.e[i].path, prefix))
      simfs_set_del(&simfs.dur, simfs.dur.e[i].path);
  simfs_close_node(prefix);
}

/* Whether path names a file or directory now. */
static URSULA_UNUSED int simfs_exists(const char *path) {
  return simfs_dir_exists(path) || simfs_find(&simfs.cur, path) != NULL;
}

static int simfs_flippable(const struct simfs_ent *e, const char *prefix) {
  const char *base = strrchr(e->path, '/');
  const struct simfs_ino *n;
  size_t l;
  if (e->ino < 0 || !simfs_under(e->path, prefix)) return 0;
  n = &simfs.ino[e->ino];
  base = base ? base + 1 : e->path;
  l = strlen(base);
  if (strcmp(base, "snapshot") == 0) return n->dur.len > 0;
  return l > 4 && strcmp(base + l - 4, ".wal") == 0 &&
         n->dur.len > SIMFS_FLIP_TAIL;
}

/* Flip one bit of the durable bytes of one durable file under prefix
** (see the model).  Returns 1 if a bit was flipped, 0 if no file fits. */
static int simfs_flip(const char *prefix, uint64_t (*rnd)(void *), void *arg) {
  size_t i, n = 0, pick;
  struct simfs_ino *f;
  uint64_t at, len;
  for (i = 0; i < simfs.dur.n; i++) n += simfs_flippable(&simfs.dur.e[i], prefix);
  if (n == 0) return 0;
  pick = (size_t)(rnd(arg) % n);
  for (i = 0; i < simfs.dur.n; i++)
    if (simfs_flippable(&simfs.dur.e[i], prefix) && pick-- == 0) break;
  f = &simfs.ino[simfs.dur.e[i].ino];
  len = f->dur.len;
  if (strcmp(strrchr(simfs.dur.e[i].path, '/') + 1, "snapshot") != 0)
    len -= SIMFS_FLIP_TAIL;
  at = rnd(arg) % (len * 8);
  f->dur.p[at / 8] ^= (unsigned char)(1u << (at % 8));
  if (at / 8 < f->cur.len) f->cur.p[at / 8] ^= (unsigned char)(1u << (at % 8));
  f->flipped = 1;
  simfs.n_flips++;
  return 1;
}

/* Whether a file under prefix with a flipped bit is still named, now or
** after a crash (a segment compacted away takes its flip with it). */
static int simfs_has_flip(const char *prefix) {
  const struct simfs_set *sets[2];
  size_t i, k;
  sets[0] = &simfs.cur;
  sets[1] = &simfs.dur;
  for (k = 0; k < 2; k++)
    for (i = 0; i < sets[k]->n; i++)
      if (sets[k]->e[i].ino >= 0 && simfs_under(sets[k]->e[i].path, prefix) &&
          simfs.ino[sets[k]->e[i].ino].flipped)
        return 1;
  return 0;
}
