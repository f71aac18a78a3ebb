/*
** cold.c -- the cold tier: where streams' older bytes go, in chunk
** objects kept in S3 (or any S3-compatible store) or in a local folder.
**
** WHAT MOVES.  Each group moves the oldest bytes of its streams, a run of
** whole appends at a time, into one chunk object per run (group.c
** decides when).  The object is written first; only then does the group
** log a COLD command naming it, and only once that command is durable
** are memory and WAL segments released (stream.c).  A crash in between
** leaves an object nothing names: the sweep at start-up deletes it.
**
** OBJECT NAMES.  Relative to --s3-prefix (S3) or to --cold-dir:
**
**     g<group, 5 digits>/<incarnation, 16 hex>/<start, 16 hex>-<end, 16 hex>
**     g00003/000000000000002a/0000000000000000-0000000000100000
**
** group and incarnation (unique per group, never reused) name the
** stream; start and end are the byte offsets of the run in the stream.
** Everything of one group is under "g<group>/", which the start-up sweep
** lists.  The name is also carried in the COLD command, so the state
** never depends on this scheme.
**
** CHUNK FORMAT (integers little-endian):
**
**     offset  size  field
**     0       8     magic "URSCOLD1"
**     8       8     incarnation
**     16      8     start offset in the stream
**     24      8     end offset (end - start data bytes follow)
**     32      4     CRC32C of the data
**     36      4     zero
**     40      ...   the stream's bytes [start, end), as appended
**
** A chunk read back is checked against all of it before it is used.
**
** THREADS.  S3 traffic (and the folder's file I/O) never runs on a
** core: requests (struct cold_req) go to a queue served by
** URSULA_COLD_THREADS threads, each with its own S3 connection, and each
** result is posted back to the requesting core's mailbox.  An outage is
** logged once when it starts and once when it ends.
**
** THE CACHE.  Each core keeps the chunks its groups fetched, up to a byte
** budget, least recently used out first (cold_cache_*).  One thread.
*/
#include "internal.h"

#define COLD_MAGIC "URSCOLD1"

/* ------------------------------------------------------------ chunks */

URSULA_PRIVATE void cold_chunk_name(char *out, int group, uint64_t inc,
                                    uint64_t start, uint64_t end) {
  snprintf(out, COLD_NAME_MAX, "g%05d/%016llx/%016llx-%016llx", group,
           (unsigned long long)inc, (unsigned long long)start,
           (unsigned long long)end);
}

static void cold_put64(unsigned char *p, uint64_t v) {
  int i;
  for (i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t cold_get64(const unsigned char *p) {
  uint64_t v = 0;
  int i;
  for (i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

URSULA_PRIVATE void cold_chunk_seal(struct buf *obj, uint64_t inc,
                                    uint64_t start) {
  unsigned char *h = (unsigned char *)obj->ptr;
  uint32_t crc = util_crc32c(0, obj->ptr + COLD_HEADER, obj->len - COLD_HEADER);
  memcpy(h, COLD_MAGIC, 8);
  cold_put64(h + 8, inc);
  cold_put64(h + 16, start);
  cold_put64(h + 24, start + (obj->len - COLD_HEADER));
  cold_put64(h + 32, crc); /* the CRC, then four zero bytes */
}

URSULA_PRIVATE int cold_chunk_check(const struct buf *obj, uint64_t inc,
                                    uint64_t start, uint64_t end) {
  const unsigned char *h = (const unsigned char *)obj->ptr;
  if (obj->len < COLD_HEADER || memcmp(h, COLD_MAGIC, 8) != 0 ||
      cold_get64(h + 8) != inc || cold_get64(h + 16) != start ||
      cold_get64(h + 24) != end || end - start != obj->len - COLD_HEADER ||
      cold_get64(h + 32) !=
          util_crc32c(0, obj->ptr + COLD_HEADER, obj->len - COLD_HEADER))
    return URSULA_ECORRUPT;
  return URSULA_OK;
}

/* ------------------------------------------------------------ requests */

/* loop_close() of a core with a result still in its mailbox. */
static void cold_req_drop(struct loop_msg *m) {
  cold_req_free((struct cold_req *)(void *)m);
}

URSULA_PRIVATE struct cold_req *cold_req_new(int op, struct loop *reply,
                                             loop_msg_fn done) {
  struct cold_req *r = (struct cold_req *)URSULA_MALLOC(sizeof(*r));
  if (r == NULL) return NULL;
  memset(r, 0, sizeof(*r));
  r->op = op;
  r->reply = reply;
  r->msg.on_msg = done;
  r->msg.on_drop = cold_req_drop;
  return r;
}

URSULA_PRIVATE void cold_req_free(struct cold_req *r) {
  if (r == NULL) return;
  buf_free(&r->data);
  buf_free(&r->path);
  URSULA_FREE(r);
}

/* ------------------------------------------------------------ the folder */

struct cold {
  const struct ursula_config *cfg;
  int use_s3;
  struct tls_anchors *anchors;
  struct s3_config s3;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct cold_req *head, *tail; /* the queue */
  int stopping;
  int down; /* the store is failing: logged once */
  int n_threads;
  pthread_t threads[URSULA_COLD_THREADS];
};

/* The file of object `name` in the folder, into path. */
static void cold_dir_path(const struct cold *c, const char *name, char *path,
                          size_t cap) {
  snprintf(path, cap, "%s/%s", c->cfg->cold_dir, name);
}

/* mkdir -p of the directories in path before its last '/'. */
static int cold_dir_parents(char *path) {
  char *p;
  for (p = path + 1; *p != '\0'; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (os_mkdir(path) != 0) {
      *p = '/';
      return -1;
    }
    *p = '/';
  }
  return 0;
}

static int cold_dir_put(struct cold *c, struct cold_req *r, char *err) {
  char path[URSULA_PATH_LEN + COLD_NAME_MAX + 8], tmp[sizeof(path) + 4], *slash;
  struct os_fs *fs = os_fs();
  size_t off = 0;
  int fd;
  cold_dir_path(c, r->name, path, sizeof(path));
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  if (cold_dir_parents(path) != 0) goto fail;
  fd = fs->open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) goto fail;
  while (off < r->data.len) {
    ssize_t n =
        fs->pwrite(fd, r->data.ptr + off, r->data.len - off, (off_t)off);
    if (n <= 0) {
      if (n == 0) errno = EIO;
      fs->close(fd);
      goto fail;
    }
    off += (size_t)n;
  }
  if (fs->sync(fd) != 0) {
    fs->close(fd);
    goto fail;
  }
  if (fs->close(fd) != 0 || fs->rename(tmp, path) != 0) goto fail;
  slash = strrchr(path, '/');
  *slash = '\0';
  if (os_sync_dir(path) != 0) goto fail;
  return URSULA_OK;
fail:
  snprintf(err, URSULA_ERRMSG_LEN, "writing %.150s/%.60s: %s", c->cfg->cold_dir,
           r->name, strerror(errno));
  return errno == ENOSPC ? URSULA_ENOSPC : URSULA_EIO;
}

static int cold_dir_get(struct cold *c, struct cold_req *r, char *err) {
  char path[URSULA_PATH_LEN + COLD_NAME_MAX + 8];
  struct stat stbuf;
  int fd, rc = URSULA_OK;
  size_t off = 0;
  cold_dir_path(c, r->name, path, sizeof(path));
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return URSULA_ENOTFOUND;
  if (fd < 0 || fstat(fd, &stbuf) != 0) goto fail;
  if (buf_reserve(&r->data, (size_t)stbuf.st_size) != URSULA_OK) {
    close(fd);
    return URSULA_ENOMEM;
  }
  while (off < (size_t)stbuf.st_size) {
    ssize_t n = os_fs()->pread(fd, r->data.ptr + off,
                               (size_t)stbuf.st_size - off, (off_t)off);
    if (n <= 0) {
      if (n == 0) errno = EIO;
      rc = -1;
      break;
    }
    off += (size_t)n;
  }
  close(fd);
  r->data.len = off;
  if (rc == URSULA_OK) return URSULA_OK;
fail:
  snprintf(err, URSULA_ERRMSG_LEN, "reading %.150s/%.60s: %s", c->cfg->cold_dir,
           r->name, strerror(errno));
  return URSULA_EIO;
}

static int cold_dir_delete(struct cold *c, struct cold_req *r, char *err) {
  char path[URSULA_PATH_LEN + COLD_NAME_MAX + 8], *slash;
  cold_dir_path(c, r->name, path, sizeof(path));
  if (unlink(path) != 0 && errno != ENOENT) {
    snprintf(err, URSULA_ERRMSG_LEN, "deleting %.150s/%.60s: %s",
             c->cfg->cold_dir, r->name, strerror(errno));
    return URSULA_EIO;
  }
  slash = strrchr(path, '/');
  *slash = '\0';
  (void)rmdir(path); /* the stream's folder, once empty */
  return URSULA_OK;
}

/* LIST of a group's prefix "gNNNNN/": every file two levels below. */
static int cold_dir_list(struct cold *c, struct cold_req *r, char *err) {
  char path[URSULA_PATH_LEN + COLD_NAME_MAX + 264];
  DIR *top, *sub;
  struct dirent *d, *e;
  cold_dir_path(c, r->name, path, sizeof(path));
  top = opendir(path);
  if (top == NULL) {
    if (errno == ENOENT) return URSULA_OK; /* nothing yet */
    snprintf(err, URSULA_ERRMSG_LEN, "listing %.200s: %s", path,
             strerror(errno));
    return URSULA_EIO;
  }
  while ((d = readdir(top)) != NULL) {
    if (d->d_name[0] == '.') continue;
    snprintf(path, sizeof(path), "%s/%s%s", c->cfg->cold_dir, r->name,
             d->d_name);
    if ((sub = opendir(path)) == NULL) continue;
    while ((e = readdir(sub)) != NULL) {
      if (e->d_name[0] == '.') continue;
      buf_printf(&r->data, "%s%s/%s", r->name, d->d_name, e->d_name);
      buf_append(&r->data, "", 1);
    }
    closedir(sub);
  }
  closedir(top);
  return URSULA_OK;
}

/* ------------------------------------------------------------ S3 */

static int cold_s3_key(struct cold *c, const char *name, char *key,
                       size_t cap) {
  int n = snprintf(key, cap, "%s%s", c->cfg->s3_prefix, name);
  return n > 0 && (size_t)n < cap ? 0 : -1;
}

struct cold_list_ctx {
  struct cold_req *r;
  size_t skip; /* length of --s3-prefix */
};

static int cold_s3_listed(void *arg, const char *key, uint64_t size) {
  struct cold_list_ctx *x = (struct cold_list_ctx *)arg;
  (void)size;
  if (strlen(key) <= x->skip) return 0;
  return buf_append(&x->r->data, key + x->skip, strlen(key) - x->skip + 1) ==
                 URSULA_OK
             ? 0
             : URSULA_ENOMEM;
}

static int cold_s3_do(struct cold *c, struct s3_client *cl, struct cold_req *r,
                      char *err) {
  char key[URSULA_PATH_LEN + COLD_NAME_MAX];
  struct s3_error e;
  int rc;
  memset(&e, 0, sizeof(e));
  if (cold_s3_key(c, r->name, key, sizeof(key)) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "object name too long");
    return URSULA_EINVAL;
  }
  switch (r->op) {
    case COLD_PUT:
      rc = s3_put(cl, key, r->data.ptr, r->data.len, &e);
      break;
    case COLD_GET:
      rc = s3_get(cl, key, 0, 0, &r->data, &e);
      break;
    case COLD_DELETE:
      rc = s3_delete(cl, key, &e);
      if (rc == URSULA_ENOTFOUND) rc = URSULA_OK;
      break;
    default: {
      struct cold_list_ctx x;
      x.r = r;
      x.skip = strlen(c->cfg->s3_prefix);
      rc = s3_list(cl, key, 0, cold_s3_listed, &x, &e);
      break;
    }
  }
  if (rc != URSULA_OK && rc != URSULA_ENOTFOUND)
    snprintf(err, URSULA_ERRMSG_LEN, "%.250s",
             e.line[0] ? e.line : ursula_strerror(rc));
  return rc;
}

/* ------------------------------------------------------------ threads */

/* Log an outage once when it starts and once when it ends. */
static void cold_note(struct cold *c, int ok, const char *what) {
  int was;
  pthread_mutex_lock(&c->mu);
  was = c->down;
  c->down = !ok;
  pthread_mutex_unlock(&c->mu);
  if (!ok && !was)
    LOG_E(
        "cold storage unavailable: %s; appends go on into the WAL, moves "
        "are retried, reads of moved data answer 503",
        what);
  else if (ok && was)
    LOG_W("cold storage reachable again; moving data resumes");
  else if (!ok)
    LOG_D("cold storage still unavailable: %s", what);
  (void)what;
}

static void *cold_thread_main(void *arg) {
  struct cold *c = (struct cold *)arg;
  struct s3_client *cl = NULL;
  char err[URSULA_ERRMSG_LEN];
  for (;;) {
    struct cold_req *r;
    pthread_mutex_lock(&c->mu);
    while (c->head == NULL && !c->stopping) pthread_cond_wait(&c->cv, &c->mu);
    if (c->stopping) {
      pthread_mutex_unlock(&c->mu);
      break;
    }
    r = c->head;
    c->head = r->next;
    if (c->head == NULL) c->tail = NULL;
    pthread_mutex_unlock(&c->mu);
    err[0] = '\0';
    if (!c->use_s3) {
      r->rc = r->op == COLD_PUT      ? cold_dir_put(c, r, err)
              : r->op == COLD_GET    ? cold_dir_get(c, r, err)
              : r->op == COLD_DELETE ? cold_dir_delete(c, r, err)
                                     : cold_dir_list(c, r, err);
    } else if (cl == NULL &&
               (r->rc = s3_client_new(&cl, &c->s3, err)) != URSULA_OK) {
      cl = NULL;
    } else {
      r->rc = cold_s3_do(c, cl, r, err);
    }
    if (r->rc != URSULA_OK && r->rc != URSULA_ENOTFOUND && err[0] == '\0')
      snprintf(err, sizeof(err), "%s", ursula_strerror(r->rc));
    cold_note(c, r->rc == URSULA_OK || r->rc == URSULA_ENOTFOUND, err);
    loop_post(r->reply, &r->msg);
  }
  s3_client_free(cl);
  return NULL;
}

URSULA_PRIVATE void cold_submit(struct cold *c, struct cold_req *r) {
  r->next = NULL;
  pthread_mutex_lock(&c->mu);
  if (c->tail != NULL)
    c->tail->next = r;
  else
    c->head = r;
  c->tail = r;
  pthread_cond_signal(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

URSULA_PRIVATE int cold_open(struct cold **out, const struct ursula_config *cfg,
                             char *err) {
  struct cold *c = (struct cold *)URSULA_MALLOC(sizeof(*c));
  int i, rc;
  if (c == NULL) return URSULA_ENOMEM;
  memset(c, 0, sizeof(*c));
  c->cfg = cfg;
  c->use_s3 = cfg->s3_endpoint[0] != '\0';
  if (c->use_s3) {
    if (strncmp(cfg->s3_endpoint, "https://", 8) == 0) {
      const char *ca = cfg->s3_ca_file[0]
                           ? cfg->s3_ca_file
                           : "/etc/ssl/certs/ca-certificates.crt";
      if ((rc = tls_anchors_load(&c->anchors, ca, err)) != URSULA_OK) {
        URSULA_FREE(c);
        return rc;
      }
    }
    c->s3.endpoint = cfg->s3_endpoint;
    c->s3.bucket = cfg->s3_bucket;
    c->s3.region = cfg->s3_region;
    c->s3.access_key = cfg->s3_access_key;
    c->s3.secret_key = cfg->s3_secret_key;
    c->s3.session_token = cfg->s3_session_token;
    c->s3.anchors = c->anchors;
    c->s3.virtual_host = 0;
    c->s3.timeout_ms = 10000;
    c->s3.max_attempts = 3;
  } else if (os_mkdir(cfg->cold_dir) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "--cold-dir %.200s: %s", cfg->cold_dir,
             strerror(errno));
    URSULA_FREE(c);
    return URSULA_EIO;
  }
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  for (i = 0; i < URSULA_COLD_THREADS; i++) {
    if (pthread_create(&c->threads[i], NULL, cold_thread_main, c) != 0) break;
    c->n_threads++;
  }
  if (c->n_threads == 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "cold tier: cannot start a thread");
    cold_close(c);
    return URSULA_ESYS;
  }
  *out = c;
  return URSULA_OK;
}

URSULA_PRIVATE void cold_close(struct cold *c) {
  int i;
  struct cold_req *r;
  if (c == NULL) return;
  pthread_mutex_lock(&c->mu);
  c->stopping = 1;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
  for (i = 0; i < c->n_threads; i++) pthread_join(c->threads[i], NULL);
  while ((r = c->head) != NULL) { /* never started: nobody waits for them */
    c->head = r->next;
    cold_req_free(r);
  }
  pthread_cond_destroy(&c->cv);
  pthread_mutex_destroy(&c->mu);
  tls_anchors_free(c->anchors);
  URSULA_FREE(c);
}

/* ------------------------------------------------------------ the cache */

struct cold_entry {
  struct cold_entry *prev, *next; /* most recently used first */
  struct buf obj;                 /* header + data */
  char name[COLD_NAME_MAX];
};

struct cold_cache {
  struct cold_entry *head, *tail;
  uint64_t bytes, max_bytes;
};

URSULA_PRIVATE struct cold_cache *cold_cache_new(uint64_t max_bytes) {
  struct cold_cache *k = (struct cold_cache *)URSULA_MALLOC(sizeof(*k));
  if (k == NULL) return NULL;
  memset(k, 0, sizeof(*k));
  k->max_bytes = max_bytes;
  return k;
}

static void cold_cache_unlink(struct cold_cache *k, struct cold_entry *e) {
  if (e->prev != NULL)
    e->prev->next = e->next;
  else
    k->head = e->next;
  if (e->next != NULL)
    e->next->prev = e->prev;
  else
    k->tail = e->prev;
}

static void cold_cache_front(struct cold_cache *k, struct cold_entry *e) {
  e->prev = NULL;
  e->next = k->head;
  if (k->head != NULL) k->head->prev = e;
  k->head = e;
  if (k->tail == NULL) k->tail = e;
}

static void cold_cache_drop(struct cold_cache *k, struct cold_entry *e) {
  cold_cache_unlink(k, e);
  k->bytes -= e->obj.len;
  buf_free(&e->obj);
  URSULA_FREE(e);
}

URSULA_PRIVATE void cold_cache_free(struct cold_cache *k) {
  if (k == NULL) return;
  while (k->head != NULL) cold_cache_drop(k, k->head);
  URSULA_FREE(k);
}

URSULA_PRIVATE const char *cold_cache_get(struct cold_cache *k,
                                          const char *name) {
  struct cold_entry *e;
  for (e = k->head; e != NULL; e = e->next) {
    if (strcmp(e->name, name) != 0) continue;
    if (e != k->head) {
      cold_cache_unlink(k, e);
      cold_cache_front(k, e);
    }
    return e->obj.ptr + COLD_HEADER;
  }
  return NULL;
}

URSULA_PRIVATE void cold_cache_put(struct cold_cache *k, const char *name,
                                   struct buf *obj) {
  struct cold_entry *e;
  if (cold_cache_get(k, name) != NULL) {
    buf_free(obj);
    return;
  }
  e = (struct cold_entry *)URSULA_MALLOC(sizeof(*e));
  if (e == NULL) {
    buf_free(obj);
    return;
  }
  e->obj = *obj;
  memset(obj, 0, sizeof(*obj));
  snprintf(e->name, sizeof(e->name), "%s", name);
  cold_cache_front(k, e);
  k->bytes += e->obj.len;
  /* the newest entry stays even when it alone is over the budget */
  while (k->bytes > k->max_bytes && k->tail != e) cold_cache_drop(k, k->tail);
}
