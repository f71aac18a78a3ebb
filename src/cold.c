/*
** cold.c -- the cold tier: where streams' older bytes go, in chunk
** objects kept in S3 (or any S3-compatible store) or in a local folder.
**
** WHAT MOVES.  Each group moves the oldest bytes of its streams, a run of
** whole appends at a time, into one chunk object per run (tier.c
** decides when).  The object is written first; only then does the group
** log a COLD command naming it, and only once that command is durable
** are memory and WAL segments released (stream.c).  A crash in between
** leaves an object nothing names: the sweep at start-up deletes it.
**
** OBJECT NAMES.  Relative to --s3-prefix (S3) or to --cold-dir:
**
**     g<group, 5 digits>/<incarnation, 16 hex>/<start, 16 hex>-<end, 16 hex>-t<term, 16 hex>
**     g00003/000000000000002a/0000000000000000-0000000000100000-t0000000000000007
**
** group and incarnation (unique per group, never reused) name the
** stream; start and end are the byte offsets of the run in the stream;
** term is the Raft term of the leader that uploaded it (the only one
** that may name it: tier.c's sweep deletes by it).  Names written before
** the term was added end at <end> and count as term 0.  Everything of
** one group is under "g<group>/", which the sweep lists.  The name is
** also carried in the COLD command, so the state never depends on this
** scheme.
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
** logged once when it starts and once when it ends.  Built with
** URSULA_ENABLE_THREADS=0 there are no threads: cold_submit() carries
** the request out on the caller, blocking it (one S3 connection, kept),
** and posts the result to the reply loop all the same, so the requester
** sees it on a later turn exactly as with threads.
**
** FILES.  The folder is reached only through the file-system table of
** the env given to cold_open() (os.c), so tests and simulators can
** replace it.
**
** THE CACHE.  Each core keeps the chunks its groups fetched, up to a byte
** budget, least recently used out first (cold_cache_*).  One thread.
*/
#include "internal.h"

#define COLD_MAGIC "URSCOLD1"

/* ------------------------------------------------------------ chunks */

URSULA_PRIVATE void cold_chunk_name(char *out, int group, uint64_t inc,
                                    uint64_t start, uint64_t end,
                                    uint64_t term) {
  snprintf(out, COLD_NAME_MAX, "g%05d/%016llx/%016llx-%016llx-t%016llx",
           group, (unsigned long long)inc, (unsigned long long)start,
           (unsigned long long)end, (unsigned long long)term);
}

URSULA_PRIVATE uint64_t cold_chunk_term(const char *name) {
  size_t n = strlen(name), i;
  uint64_t term = 0;
  if (n > 4 && memcmp(name + n - 4, ".tmp", 4) == 0)
    n -= 4; /* a folder store's upload in flight: the chunk's own term */
  if (n < 18 || name[n - 18] != '-' || name[n - 17] != 't') return 0;
  for (i = n - 16; i < n; i++) {
    char ch = name[i];
    if (ch >= '0' && ch <= '9')
      term = term << 4 | (uint64_t)(ch - '0');
    else if (ch >= 'a' && ch <= 'f')
      term = term << 4 | (uint64_t)(ch - 'a' + 10);
    else
      return 0;
  }
  return term;
}

URSULA_PRIVATE void cold_chunk_seal(struct buf *obj, uint64_t inc,
                                    uint64_t start) {
  unsigned char *h = (unsigned char *)obj->ptr;
  uint32_t crc = util_crc32c(0, obj->ptr + COLD_HEADER, obj->len - COLD_HEADER);
  memcpy(h, COLD_MAGIC, 8);
  util_put64(h + 8, inc);
  util_put64(h + 16, start);
  util_put64(h + 24, start + (obj->len - COLD_HEADER));
  util_put64(h + 32, crc); /* the CRC, then four zero bytes */
}

URSULA_PRIVATE int cold_chunk_check(const struct buf *obj, uint64_t inc,
                                    uint64_t start, uint64_t end) {
  const unsigned char *h = (const unsigned char *)obj->ptr;
  if (obj->len < COLD_HEADER || memcmp(h, COLD_MAGIC, 8) != 0 ||
      util_get64(h + 8) != inc || util_get64(h + 16) != start ||
      util_get64(h + 24) != end || end - start != obj->len - COLD_HEADER ||
      util_get64(h + 32) !=
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

#if URSULA_ENABLE_THREADS
#define COLD_THREADS URSULA_COLD_THREADS
#else
#define COLD_THREADS 0 /* cold_submit() runs each request itself */
#endif

struct cold {
  const struct ursula_config *cfg;
  struct os_fs *fs; /* the env's: every file call of the folder */
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
  struct s3_client *inline_cl; /* without threads: the S3 connection */
  /* the marker (cold_claim): who we are, and whether the store is ours */
  pthread_mutex_t claim_mu; /* one claim at a time */
  struct cold_owner owner;
  int claimed;             /* under mu: the marker is ours */
  int refused;             /* under mu: it is another's (logged once) */
  uint64_t claim_tried_ms; /* under mu: the last try by cold_claimed() */
};

/* The file of object `name` in the folder, into path. */
static void cold_dir_path(const struct cold *c, const char *name, char *path,
                          size_t cap) {
  snprintf(path, cap, "%s/%s", c->cfg->cold_dir, name);
}

/* mkdir of path; 0 also if it exists. */
static int cold_mkdir(struct cold *c, const char *path) {
  if (c->fs->mkdir(path, 0755) == 0 || errno == EEXIST) return 0;
  return -1;
}

/* mkdir -p of the directories in path before its last '/'. */
static int cold_dir_parents(struct cold *c, char *path) {
  char *p;
  for (p = path + 1; *p != '\0'; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (cold_mkdir(c, path) != 0) {
      *p = '/';
      return -1;
    }
    *p = '/';
  }
  return 0;
}

static int cold_dir_put(struct cold *c, struct cold_req *r, char *err) {
  char path[URSULA_PATH_LEN + COLD_NAME_MAX + 8], tmp[sizeof(path) + 16];
  char *slash;
  struct os_fs *fs = c->fs;
  size_t off = 0;
  int fd;
  cold_dir_path(c, r->name, path, sizeof(path));
  if (r->tmp_tag != 0)
    snprintf(tmp, sizeof(tmp), "%s.%u.tmp", path, r->tmp_tag);
  else
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  if (cold_dir_parents(c, path) != 0) goto fail;
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
  if (fs->sync_dir(path) != 0) goto fail;
  return URSULA_OK;
fail:
  snprintf(err, URSULA_ERRMSG_LEN, "writing %.150s/%.96s: %s", c->cfg->cold_dir,
           r->name, strerror(errno));
  return errno == ENOSPC ? URSULA_ENOSPC : URSULA_EIO;
}

static int cold_dir_get(struct cold *c, struct cold_req *r, char *err) {
  char path[URSULA_PATH_LEN + COLD_NAME_MAX + 8];
  struct os_fs *fs = c->fs;
  uint64_t size = 0;
  int fd, rc = URSULA_OK;
  size_t off = 0;
  cold_dir_path(c, r->name, path, sizeof(path));
  fd = fs->open(path, O_RDONLY, 0);
  if (fd < 0 && errno == ENOENT) return URSULA_ENOTFOUND;
  if (fd < 0) goto fail;
  if (fs->size(fd, &size) != 0) {
    fs->close(fd);
    goto fail;
  }
  if (size > (uint64_t)SIZE_MAX / 2 ||
      buf_reserve(&r->data, (size_t)size) != URSULA_OK) {
    fs->close(fd);
    return URSULA_ENOMEM;
  }
  while (off < (size_t)size) {
    ssize_t n =
        fs->pread(fd, r->data.ptr + off, (size_t)size - off, (off_t)off);
    if (n <= 0) {
      if (n == 0) errno = EIO;
      rc = -1;
      break;
    }
    off += (size_t)n;
  }
  fs->close(fd);
  r->data.len = off;
  if (rc == URSULA_OK) return URSULA_OK;
fail:
  snprintf(err, URSULA_ERRMSG_LEN, "reading %.150s/%.96s: %s", c->cfg->cold_dir,
           r->name, strerror(errno));
  return URSULA_EIO;
}

static int cold_dir_delete(struct cold *c, struct cold_req *r, char *err) {
  char path[URSULA_PATH_LEN + COLD_NAME_MAX + 8], *slash;
  cold_dir_path(c, r->name, path, sizeof(path));
  if (c->fs->unlink(path) != 0 && errno != ENOENT) {
    snprintf(err, URSULA_ERRMSG_LEN, "deleting %.150s/%.96s: %s",
             c->cfg->cold_dir, r->name, strerror(errno));
    return URSULA_EIO;
  }
  slash = strrchr(path, '/');
  *slash = '\0';
  (void)c->fs->rmdir(path); /* the stream's folder, once empty */
  return URSULA_OK;
}

/* LIST of a group's prefix "gNNNNN/": every file two levels below.  The
** group's folder lists its streams' folders (cold_dir_listed_top), each
** of which lists its chunks (cold_dir_listed). */
struct cold_dir_list_ctx {
  struct cold *c;
  struct cold_req *r;
  const char *sub; /* the stream folder being listed */
};

static int cold_dir_listed(void *arg, const char *name) {
  struct cold_dir_list_ctx *x = (struct cold_dir_list_ctx *)arg;
  if (name[0] == '.') return 0;
  if (buf_printf(&x->r->data, "%s%s/%s", x->r->name, x->sub, name) !=
          URSULA_OK ||
      buf_append(&x->r->data, "", 1) != URSULA_OK)
    return 1; /* out of memory */
  return 0;
}

static int cold_dir_listed_top(void *arg, const char *name) {
  struct cold_dir_list_ctx *x = (struct cold_dir_list_ctx *)arg;
  char path[URSULA_PATH_LEN + COLD_NAME_MAX + 264];
  if (name[0] == '.') return 0;
  snprintf(path, sizeof(path), "%s/%s%s", x->c->cfg->cold_dir, x->r->name,
           name);
  x->sub = name;
  /* not a folder, or gone meanwhile: nothing of ours in it */
  return x->c->fs->list(path, cold_dir_listed, x) > 0 ? 1 : 0;
}

static int cold_dir_list(struct cold *c, struct cold_req *r, char *err) {
  char path[URSULA_PATH_LEN + COLD_NAME_MAX + 8];
  struct cold_dir_list_ctx x;
  int rc;
  x.c = c;
  x.r = r;
  x.sub = "";
  cold_dir_path(c, r->name, path, sizeof(path));
  rc = c->fs->list(path, cold_dir_listed_top, &x);
  if (rc > 0) return URSULA_ENOMEM;
  if (rc < 0) {
    if (errno == ENOENT) return URSULA_OK; /* nothing yet */
    snprintf(err, URSULA_ERRMSG_LEN, "listing %.200s: %s", path,
             strerror(errno));
    return URSULA_EIO;
  }
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

/* ------------------------------------------------------------ the marker

   THE STORE'S MARKER.  One object, COLD_MARKER ("ursula-store"), beside
   the groups' folders, says whose objects the store holds, so that two
   servers never share one by mistake: each one's sweep would delete the
   other's chunks, which it does not name.  ASCII, each line ending in
   "\n", keys in this order (a reader ignores keys it does not know):

       ursula-store 1       the format
       cluster-id NAME      --cluster-id (a single node: its default too)
       groups N             --raft-group-count, decimal
       node ID              a single node only: 32 lowercase hex digits,
                            the id its --wal-dir keeps (server.c)

   The nodes of one cluster write identical bytes, so they may all create
   it at once (in a folder each through a temporary file of its own); a
   single node's id tells it from any other single node with the same
   settings.  cold_claim() decides:

       no marker   write ours, and read it back; unless the WAL names
                   chunks and its --wal-dir records a claim that
                   succeeded (so a marker was there: the store was
                   emptied, or this is the wrong prefix or folder): refuse
       ours        go on
       another's   refuse, saying whose it is

   A write is not conditional: two single nodes started at the same
   moment on one empty store can both find no marker, write theirs and
   read it back; the later one's wins, and the other is refused at its
   next start.

   Until a claim succeeds (the store unreachable at start), nothing is
   written to the store or deleted from it: cold_do() claims first before
   each PUT, DELETE and LIST (at most one try per COLD_CLAIM_RETRY_MS;
   the others fail at once meanwhile), and fails them while that does not
   succeed.  Reads (GET) go on.  A claim refused then is logged once, and
   the tier stays refused until the server restarts. */

#define COLD_CLAIM_RETRY_MS 5000

#define COLD_MARKER "ursula-store"

/* PLANTED BUG.  -DCOLD_PLANT=1 (default 0): every claim succeeds without
** a look at the store, as before markers (test/cold.sh then fails: another
** single node, and a node whose store lost its marker, start).  Never in
** a release build. */
#ifndef COLD_PLANT
#define COLD_PLANT 0
#endif

/* The marker's bytes for o. */
static int cold_mark_text(const struct cold_owner *o, struct buf *out) {
  int rc = buf_printf(out, "ursula-store 1\ncluster-id %s\ngroups %d\n",
                      o->cluster_id, o->groups);
  if (rc == URSULA_OK && o->node[0] != '\0')
    rc = buf_printf(out, "node %s\n", o->node);
  return rc;
}

/* Read a marker's text p[0..n) into o; URSULA_OK, or URSULA_ECORRUPT if
** it is not a marker of format 1 with a cluster-id and groups. */
static int cold_mark_parse(const char *p, size_t n, struct cold_owner *o) {
  const char *end = p + n, *nl;
  int first = 1, have_groups = 0;
  memset(o, 0, sizeof(*o));
  for (; p < end; p = nl + 1) {
    size_t len, k;
    char line[128];
    long v;
    char *stop;
    if ((nl = (const char *)memchr(p, '\n', (size_t)(end - p))) == NULL)
      return URSULA_ECORRUPT; /* every line ends in "\n" */
    len = (size_t)(nl - p);
    if (len >= sizeof(line)) return URSULA_ECORRUPT;
    memcpy(line, p, len);
    line[len] = '\0';
    if (first) {
      if (strcmp(line, "ursula-store 1") != 0) return URSULA_ECORRUPT;
      first = 0;
    } else if (strncmp(line, "cluster-id ", 11) == 0) {
      k = len - 11;
      if (k == 0 || k >= sizeof(o->cluster_id)) return URSULA_ECORRUPT;
      memcpy(o->cluster_id, line + 11, k + 1);
    } else if (strncmp(line, "groups ", 7) == 0) {
      errno = 0;
      v = strtol(line + 7, &stop, 10);
      if (errno != 0 || *stop != '\0' || stop == line + 7 || v < 1 ||
          v > 1000000)
        return URSULA_ECORRUPT;
      o->groups = (int)v;
      have_groups = 1;
    } else if (strncmp(line, "node ", 5) == 0) {
      if (len - 5 != 32) return URSULA_ECORRUPT;
      memcpy(o->node, line + 5, 33);
    }
  }
  return !first && o->cluster_id[0] != '\0' && have_groups ? URSULA_OK
                                                           : URSULA_ECORRUPT;
}

/* "cluster-id NAME, N groups" or "... , single node ID" into out. */
static void cold_mark_say(const struct cold_owner *o, char *out, size_t cap) {
  if (o->node[0] != '\0')
    snprintf(out, cap, "the single node %.32s (cluster-id %.64s, %d groups)",
             o->node, o->cluster_id, o->groups);
  else
    snprintf(out, cap, "cluster-id %.64s, %d groups", o->cluster_id,
             o->groups);
}

/* Where the store is, for messages: "s3://BUCKET/PREFIX" or the folder. */
static void cold_where(const struct cold *c, char *out, size_t cap) {
  if (c->use_s3)
    snprintf(out, cap, "s3://%.64s/%.100s", c->cfg->s3_bucket,
             c->cfg->s3_prefix);
  else
    snprintf(out, cap, "%.160s", c->cfg->cold_dir);
}

static int cold_exec(struct cold *c, struct s3_client **cl, struct cold_req *r,
                     char *err);

/* One claim of the store for c->owner (the table above), on the caller,
** through the S3 connection *cl (opened on first use).  URSULA_OK: the
** store is ours; URSULA_EINVAL: it is not (why, in err); another error:
** the store could not be reached (err says how). */
static int cold_claim_once(struct cold *c, struct s3_client **cl, char *err) {
  const struct cold_owner *me = &c->owner;
  struct cold_req r;
  struct cold_owner there;
  char where[180], mine[160], theirs[160];
  int rc, tries;
  if (COLD_PLANT == 1) return URSULA_OK;
  memset(&r, 0, sizeof(r));
  cold_where(c, where, sizeof(where));
  cold_mark_say(me, mine, sizeof(mine));
  for (tries = 0; tries < 2; tries++) { /* read; after our write, again */
    r.op = COLD_GET;
    snprintf(r.name, sizeof(r.name), "%s", COLD_MARKER);
    r.data.len = 0;
    rc = cold_exec(c, cl, &r, err);
    if (rc == URSULA_ENOTFOUND && tries == 0) {
      if (me->chunks > 0 && me->claimed_before) {
        snprintf(err, URSULA_ERRMSG_LEN,
                 "the cold tier %.180s has no marker (%s), but --wal-dir names "
                 "%llu chunks in it and records a claim of it: it was "
                 "emptied, or this is not its --s3-prefix/--cold-dir (if it "
                 "is, and its objects are lost for good, delete the line "
                 "\"claimed\" from --wal-dir's cold-store to start anyway; "
                 "reads of the lost bytes will fail)",
                 where, COLD_MARKER, (unsigned long long)me->chunks);
        rc = URSULA_EINVAL;
        break;
      }
      r.op = COLD_PUT;
      r.tmp_tag = (unsigned)getpid(); /* a temporary file of its own */
      r.data.len = 0;
      if ((rc = cold_mark_text(me, &r.data)) != URSULA_OK ||
          (rc = cold_exec(c, cl, &r, err)) != URSULA_OK)
        break;
      LOG_I("cold tier %s: marked as the store of %s", where, mine);
      continue;
    }
    if (rc == URSULA_ENOTFOUND) { /* written, then gone */
      snprintf(err, URSULA_ERRMSG_LEN, "the marker %s written to %.180s is gone",
               COLD_MARKER, where);
      rc = URSULA_EIO;
      break;
    }
    if (rc != URSULA_OK) break;
    if (cold_mark_parse(r.data.ptr, r.data.len, &there) != URSULA_OK) {
      snprintf(err, URSULA_ERRMSG_LEN,
               "the cold tier %.180s holds an object %s that is not an ursula "
               "store marker of format 1",
               where, COLD_MARKER);
      rc = URSULA_EINVAL;
    } else if (strcmp(there.cluster_id, me->cluster_id) != 0 ||
               there.groups != me->groups ||
               strcmp(there.node, me->node) != 0) {
      cold_mark_say(&there, theirs, sizeof(theirs));
      size_t k;
      snprintf(err, URSULA_ERRMSG_LEN,
               "the cold tier %.180s holds the objects of %.150s; this is "
               "%.150s: give each its own --s3-prefix or --cold-dir",
               where, theirs, mine);
      k = strlen(err);
      if (me->chunks > 0 && k < URSULA_ERRMSG_LEN)
        snprintf(err + k, URSULA_ERRMSG_LEN - k,
                 " (but this node's WAL names %llu chunks in a cold tier: "
                 "if it wrote them here, its id in --wal-dir's cold-store "
                 "must be the marker's)",
                 (unsigned long long)me->chunks);
      rc = URSULA_EINVAL;
    }
    break;
  }
  buf_free(&r.data);
  return rc;
}

URSULA_PRIVATE int cold_claim(struct cold *c, const struct cold_owner *me,
                              char *err) {
  struct s3_client *cl = NULL;
  struct s3_config quick = c->s3;
  int rc = URSULA_OK;
  pthread_mutex_lock(&c->claim_mu);
  c->owner = *me;
  quick.timeout_ms = 3000; /* at start: an unreachable store costs 3 s */
  quick.max_attempts = 1;
  if (c->use_s3) rc = s3_client_new(&cl, &quick, err);
  if (rc == URSULA_OK) rc = cold_claim_once(c, &cl, err);
  s3_client_free(cl);
  pthread_mutex_lock(&c->mu);
  c->claimed = rc == URSULA_OK;
  c->refused = rc == URSULA_EINVAL;
  /* unreachable: an outage from the start (the caller logs it), whose
  ** end cold_note() logs */
  c->down = rc != URSULA_OK && rc != URSULA_EINVAL;
  pthread_mutex_unlock(&c->mu);
  pthread_mutex_unlock(&c->claim_mu);
  return rc;
}

/* Before a PUT, DELETE or LIST: URSULA_OK once the store is ours (claimed
** now if it was not yet: cold_claim() could not reach it), else an error
** with the reason in err.  One try per COLD_CLAIM_RETRY_MS: meanwhile the
** others fail at once instead of queueing behind it. */
static int cold_claimed(struct cold *c, struct s3_client **cl, char *err) {
  uint64_t now = os_now_ms();
  int rc, refused, recent;
  pthread_mutex_lock(&c->mu);
  rc = c->claimed ? URSULA_OK : URSULA_EAGAIN;
  refused = c->refused;
  recent = c->claim_tried_ms != 0 &&
           now - c->claim_tried_ms < COLD_CLAIM_RETRY_MS;
  if (rc != URSULA_OK && !refused && !recent) c->claim_tried_ms = now;
  pthread_mutex_unlock(&c->mu);
  if (rc == URSULA_OK) return rc;
  if (refused) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "the cold tier was refused (logged when it was): nothing moves "
             "to it until the server restarts");
    return URSULA_EINVAL;
  }
  if (recent) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "the cold tier's marker is not checked yet (it was tried less "
             "than %d s ago): nothing is written there until it is",
             COLD_CLAIM_RETRY_MS / 1000);
    return URSULA_EAGAIN;
  }
  pthread_mutex_lock(&c->claim_mu);
  rc = cold_claim_once(c, cl, err);
  pthread_mutex_lock(&c->mu);
  c->claimed = rc == URSULA_OK;
  c->refused = rc == URSULA_EINVAL;
  pthread_mutex_unlock(&c->mu);
  pthread_mutex_unlock(&c->claim_mu);
  if (rc == URSULA_EINVAL)
    LOG_E("cold tier refused: %s; nothing moves to it or is deleted from it "
          "until the server restarts",
          err);
  else if (rc == URSULA_OK)
    LOG_I("cold tier: its marker checked: the store is this node's");
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

/* FOR TESTS.  -DCOLD_GET_DELAY_MS=n (default 0) holds every fetch n ms
** before it reads the store, so that a test can remove a stream while a
** read's fetch of its chunk is under way (test/cold_race.sh). */
#ifndef COLD_GET_DELAY_MS
#define COLD_GET_DELAY_MS 0
#endif

/* Carry out r on the store, with the S3 connection *cl (opened on first
** use): r->op's result (URSULA_ENOTFOUND: a GET of no such object). */
static int cold_exec(struct cold *c, struct s3_client **cl, struct cold_req *r,
                     char *err) {
  int rc;
  if (!c->use_s3)
    return r->op == COLD_PUT      ? cold_dir_put(c, r, err)
           : r->op == COLD_GET    ? cold_dir_get(c, r, err)
           : r->op == COLD_DELETE ? cold_dir_delete(c, r, err)
                                  : cold_dir_list(c, r, err);
  if (*cl == NULL && (rc = s3_client_new(cl, &c->s3, err)) != URSULA_OK) {
    *cl = NULL;
    return rc;
  }
  return cold_s3_do(c, *cl, r, err);
}

URSULA_PRIVATE int cold_get_now(struct cold *c, struct s3_client **cl,
                                 const char *name, struct buf *out,
                                 char *err) {
  struct cold_req r;
  int rc;
  memset(&r, 0, sizeof(r));
  r.op = COLD_GET;
  if (strlen(name) >= sizeof(r.name)) return URSULA_EINVAL;
  memcpy(r.name, name, strlen(name) + 1);
  err[0] = '\0';
  rc = cold_exec(c, cl, &r, err);
  if (rc == URSULA_OK) {
    buf_free(out);
    *out = r.data;
  } else {
    buf_free(&r.data);
  }
  return rc;
}

/* Carry out r (on a cold thread, or on the submitter without threads),
** with the S3 connection *cl (opened on first use), and post it back.
** Nothing but a GET reaches a store that is not (yet) claimed. */
static void cold_do(struct cold *c, struct s3_client **cl,
                    struct cold_req *r) {
  char err[URSULA_ERRMSG_LEN];
  int ok, claimed;
  err[0] = '\0';
  if (COLD_GET_DELAY_MS > 0 && r->op == COLD_GET)
    os_sleep_ms(COLD_GET_DELAY_MS);
  if (r->op == COLD_GET || (r->rc = cold_claimed(c, cl, err)) == URSULA_OK)
    r->rc = cold_exec(c, cl, r, err);
  if (r->rc != URSULA_OK && r->rc != URSULA_ENOTFOUND && err[0] == '\0')
    snprintf(err, sizeof(err), "%s", ursula_strerror(r->rc));
  ok = r->rc == URSULA_OK || r->rc == URSULA_ENOTFOUND;
  pthread_mutex_lock(&c->mu);
  claimed = c->claimed;
  pthread_mutex_unlock(&c->mu);
  if (!ok || claimed) /* a read alone does not end an unclaimed outage */
    cold_note(c, ok, err);
  loop_post(r->reply, &r->msg);
}

#if URSULA_ENABLE_THREADS
static void *cold_thread_main(void *arg) {
  struct cold *c = (struct cold *)arg;
  struct s3_client *cl = NULL;
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
    cold_do(c, &cl, r);
  }
  s3_client_free(cl);
  return NULL;
}
#endif

/* Queue r for the threads; without threads, carry it out now. */
URSULA_PRIVATE void cold_submit(struct cold *c, struct cold_req *r) {
  r->next = NULL;
  if (c->n_threads == 0) {
    cold_do(c, &c->inline_cl, r);
    return;
  }
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
                             struct env *env, char *err) {
  struct cold *c = (struct cold *)URSULA_MALLOC(sizeof(*c));
  int i, rc;
  if (c == NULL) return URSULA_ENOMEM;
  memset(c, 0, sizeof(*c));
  c->cfg = cfg;
  c->fs = (env != NULL ? env : env_real())->fs;
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
    c->s3.env = env;
  } else if (cold_mkdir(c, cfg->cold_dir) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "--cold-dir %.200s: %s", cfg->cold_dir,
             strerror(errno));
    URSULA_FREE(c);
    return URSULA_EIO;
  }
  pthread_mutex_init(&c->mu, NULL);
  pthread_mutex_init(&c->claim_mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  for (i = 0; i < COLD_THREADS; i++) {
#if URSULA_ENABLE_THREADS
    if (pthread_create(&c->threads[i], NULL, cold_thread_main, c) != 0) break;
#endif
    c->n_threads++;
  }
  if (COLD_THREADS > 0 && c->n_threads == 0) {
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
  pthread_mutex_destroy(&c->claim_mu);
  pthread_mutex_destroy(&c->mu);
  s3_client_free(c->inline_cl);
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

#undef COLD_THREADS
