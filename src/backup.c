/*
** backup.c -- the subcommands `ursula backup` and `ursula restore` (issue
** 17, item 7; README, Operations, Backup and restore).
**
**   ursula backup --admin HOST:PORT --out DIR [--token-file FILE]
**   ursula restore --from DIR --wal-dir D [--cold-dir C | --s3-* ...]
**                  [--no-verify-cold]
**
** BACKUP, from a running node with --wal-dir, through its admin listener
** (api.c, THE ADMIN LISTENER'S PATHS): GET /__ursula/backup for the
** node's layout; then group by group, POST /__ursula/backup/G (the node
** writes the group's backup image after a read barrier: group.c, BACKUP
** IMAGES), GET its bytes in ranges of BACKUP_RANGE into DIR/group-G.img
** (5 digits), checking that every range belongs to the image the POST
** announced (its size), DELETE it on the node, then check the file whole
** as an install would (wal.c, wal_image_verify: every CRC; the tail's CRC
** must be the one announced) and list the cold-tier chunks its state
** names (stream.c's snapshot decoder, stream_restore).  One line per
** group on stderr (group, bytes, seconds).  The MANIFEST is written last
** (to MANIFEST.tmp, synced, renamed, the directory synced): a backup
** interrupted anywhere (the server killed, the disk full) has none, and
** restore refuses a directory without one.  DIR must not exist, or be
** empty (exit 2 otherwise, as for a bad flag); any other failure names
** the group or file and exits 1.
**
** THE MANIFEST, ASCII lines ending in "\n", in this order:
**
**     ursula-backup 1                     the format
**     node-id N                           --node-id (0: a single node)
**     cluster-id NAME                     --cluster-id
**     groups N                            --raft-group-count
**     store-id HEX | none                 the id in --wal-dir's cold-store
**                                         (cold.c, THE STORE'S MARKER)
**     cold-tier none | dir PATH | s3 s3://BUCKET/PREFIX
**     time YYYY-MM-DDTHH:MM:SSZ           when the backup finished (UTC)
**     source HOST:PORT                    the admin listener it came from
**     group G FILE INDEX TERM BYTES SHA256    one per group, G ascending
**                                         from 0: the image's file, its
**                                         last entry and term, its size,
**                                         the SHA-256 of its bytes (hex);
**                                         INDEX 0 and BYTES 0: the group
**                                         had applied nothing (an empty
**                                         file; restore makes an empty log)
**     object G INC START END NAME         one per cold-tier chunk the
**                                         images name: the group, the
**                                         stream's incarnation, the
**                                         chunk's byte range, its object
**                                         name (cold.c, OBJECT NAMES)
**     end GROUPS OBJECTS                  the counts of the lines above
**
** RESTORE, offline, into a --wal-dir D that does not exist or is empty
** (exit 2 otherwise).  First everything is checked, and nothing written:
** the MANIFEST (exit 1 if it is missing or malformed), each file's size
** and SHA-256, each image whole through wal.c (every CRC, the image
** flag) with the entry and term the MANIFEST records, the objects the
** images name against the MANIFEST's list, and then each object in the
** cold store given (--cold-dir or the --s3-* flags, read through cold.c:
** it must exist with a valid header and CRC, cold_chunk_check), unless
** --no-verify-cold.  Then each group's log is made in D/gNNNNN as a Raft
** snapshot install makes it (wal_install_begin, _put, _commit: the image
** becomes the log's snapshot, the log goes on at its entry + 1), after a
** hard state whose term is the image's (so the first election is past
** every term the image holds), and D/layout is written for the MANIFEST's
** group count (a start with another --raft-group-count is refused by the
** server, naming the count), and D/cold-store with the source's store id
** (without "claimed": the first start claims the store again, and finds
** the source's marker there, server.c).  A node started on D loads each
** group exactly as after a snapshot install.
**
** RAFT STATE.  An image holds the streams' state (stream.c) and the
** entry (index, term) it is as of; no membership: a group's voters come
** from the flags (--peer), never from the log.  So the same backup can
** be restored into a single node or into each node of a cluster of any
** size: every node then holds the same snapshot at the same entry, with
** the same term and no vote, and the first election of each group is won
** by any of them.
*/
#include "internal.h"

#define BACKUP_RANGE ((uint64_t)4 << 20) /* bytes per GET: api.c's most */
#define BACKUP_HEAD_MAX 16384           /* a response head's bytes */
#define BACKUP_TIMEOUT_S 600            /* a POST writes a whole image */
#define BACKUP_POST_TRIES 30            /* 503s (no leader yet), 1 s apart */
#define BACKUP_VERSION "ursula-backup 1"

/* ------------------------------------------------------------ HTTP client

   One request per connection ("Connection: close"), blocking, with
   BACKUP_TIMEOUT_S on every send and receive: the admin listener answers
   with Content-Length (api.c), never chunked. */

struct backup_target {
  char host[256];
  int port;
  char token[512]; /* --token-file's text (one line), or "" */
};

struct backup_reply {
  int status;
  int has_range;
  uint64_t range_a, range_e, range_total; /* Content-Range: a-e/total */
  struct buf body;
};

/* A connected socket to t, or -1 with err set. */
static int backup_connect(const struct backup_target *t, char *err) {
  struct addrinfo hints, *res = NULL, *ai;
  struct timeval tv;
  char port[16];
  int fd = -1, e;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(port, sizeof(port), "%d", t->port);
  if ((e = getaddrinfo(t->host, port, &hints, &res)) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "%s: %s", t->host, gai_strerror(e));
    return -1;
  }
  for (ai = res; ai != NULL; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) continue;
    tv.tv_sec = BACKUP_TIMEOUT_S;
    tv.tv_usec = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    e = errno;
    close(fd);
    fd = -1;
    errno = e;
  }
  if (fd < 0)
    snprintf(err, URSULA_ERRMSG_LEN, "connecting to %s:%d: %s", t->host,
             t->port, strerror(errno));
  freeaddrinfo(res);
  return fd;
}

/* The value of header name in head (NUL-terminated, lines "\r\n"), into
** out; 0, or -1 if absent. */
static int backup_header(const char *head, const char *name, char *out,
                         size_t cap) {
  size_t n = strlen(name);
  const char *p = strstr(head, "\r\n");
  while (p != NULL && p[2] != '\0') {
    const char *line = p + 2, *end = strstr(line, "\r\n");
    if (end == NULL) break;
    if ((size_t)(end - line) > n && line[n] == ':' &&
        strncasecmp(line, name, n) == 0) {
      const char *v = line + n + 1;
      size_t k;
      while (*v == ' ' || *v == '\t') v++;
      k = (size_t)(end - v);
      if (k >= cap) k = cap - 1;
      memcpy(out, v, k);
      out[k] = '\0';
      return 0;
    }
    p = end;
  }
  return -1;
}

/* Read the response on fd into r: the head, then Content-Length bytes (at
** most BACKUP_RANGE + BACKUP_HEAD_MAX).  0, or -1 with err set. */
static int backup_read_reply(int fd, int head_only, struct backup_reply *r,
                             char *err) {
  char head[BACKUP_HEAD_MAX + 1], v[128];
  size_t have = 0, hlen = 0;
  uint64_t len = 0;
  char *end = NULL;
  while (end == NULL) {
    ssize_t k;
    if (have == BACKUP_HEAD_MAX) {
      snprintf(err, URSULA_ERRMSG_LEN, "the response head is too long");
      return -1;
    }
    k = recv(fd, head + have, BACKUP_HEAD_MAX - have, 0);
    if (k <= 0) {
      snprintf(err, URSULA_ERRMSG_LEN, "reading the response: %s",
               k == 0 ? "the connection closed" : strerror(errno));
      return -1;
    }
    have += (size_t)k;
    head[have] = '\0';
    end = strstr(head, "\r\n\r\n");
  }
  hlen = (size_t)(end - head) + 4;
  end[2] = '\0'; /* the head, its last line ending "\r\n" */
  if (sscanf(head, "HTTP/1.%*d %d", &r->status) != 1) {
    snprintf(err, URSULA_ERRMSG_LEN, "not an HTTP response");
    return -1;
  }
  if (backup_header(head, "Content-Length", v, sizeof(v)) == 0)
    len = (uint64_t)strtoull(v, NULL, 10);
  r->has_range = 0;
  if (backup_header(head, "Content-Range", v, sizeof(v)) == 0) {
    unsigned long long a, e, t;
    if (sscanf(v, "bytes %llu-%llu/%llu", &a, &e, &t) == 3) {
      r->has_range = 1;
      r->range_a = a;
      r->range_e = e;
      r->range_total = t;
    }
  }
  if (head_only || r->status == 204 || r->status == 304) len = 0;
  if (len > BACKUP_RANGE + BACKUP_HEAD_MAX) {
    snprintf(err, URSULA_ERRMSG_LEN, "the response body is too long");
    return -1;
  }
  r->body.len = 0;
  if (buf_reserve(&r->body, (size_t)len + 1) != URSULA_OK) {
    snprintf(err, URSULA_ERRMSG_LEN, "out of memory");
    return -1;
  }
  if (have - hlen > len) have = hlen + (size_t)len;
  memcpy(r->body.ptr, head + hlen, have - hlen);
  r->body.len = have - hlen;
  while (r->body.len < len) {
    ssize_t k = recv(fd, r->body.ptr + r->body.len, (size_t)len - r->body.len,
                     0);
    if (k <= 0) {
      snprintf(err, URSULA_ERRMSG_LEN, "reading the response body: %s",
               k == 0 ? "the connection closed" : strerror(errno));
      return -1;
    }
    r->body.len += (size_t)k;
  }
  r->body.ptr[r->body.len] = '\0';
  return 0;
}

/* method path on t (range: a Range value, or NULL) into r.  0, or -1 with
** err set (no answer came). */
static int backup_request(const struct backup_target *t, const char *method,
                          const char *path, const char *range,
                          struct backup_reply *r, char *err) {
  struct buf req;
  size_t off = 0;
  int fd, rc = -1;
  memset(&req, 0, sizeof(req));
  if (buf_printf(&req,
                 "%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n"
                 "Content-Length: 0\r\n",
                 method, path, t->host, t->port) != URSULA_OK ||
      (t->token[0] &&
       buf_printf(&req, "Authorization: Bearer %s\r\n", t->token) !=
           URSULA_OK) ||
      (range != NULL && buf_printf(&req, "Range: %s\r\n", range) !=
                            URSULA_OK) ||
      buf_append_str(&req, "\r\n") != URSULA_OK) {
    buf_free(&req);
    snprintf(err, URSULA_ERRMSG_LEN, "out of memory");
    return -1;
  }
  if ((fd = backup_connect(t, err)) < 0) {
    buf_free(&req);
    return -1;
  }
  while (off < req.len) {
    ssize_t k = send(fd, req.ptr + off, req.len - off, MSG_NOSIGNAL);
    if (k <= 0) {
      snprintf(err, URSULA_ERRMSG_LEN, "sending %s %s: %s", method, path,
               strerror(errno));
      break;
    }
    off += (size_t)k;
  }
  if (off == req.len)
    rc = backup_read_reply(fd, strcmp(method, "HEAD") == 0, r, err);
  close(fd);
  buf_free(&req);
  return rc;
}

/* The first line of a refusal's body, for messages. */
static const char *backup_reason(struct backup_reply *r) {
  char *nl;
  if (r->body.len == 0) return "(no reason given)";
  if ((nl = strchr(r->body.ptr, '\n')) != NULL) *nl = '\0';
  return r->body.ptr;
}

/* ------------------------------------------------------------ JSON fields

   The few answers read here are flat objects that api.c writes; a field
   is found by its quoted name followed by ':'. */

static const char *backup_json_at(const char *json, const char *key) {
  char pat[64];
  const char *p;
  snprintf(pat, sizeof(pat), "\"%s\":", key);
  p = strstr(json, pat);
  return p != NULL ? p + strlen(pat) : NULL;
}

/* A number field into *v; 0, or -1. */
static int backup_json_u64(const char *json, const char *key, uint64_t *v) {
  const char *p = backup_json_at(json, key);
  char *stop;
  if (p == NULL || *p < '0' || *p > '9') return -1;
  errno = 0;
  *v = (uint64_t)strtoull(p, &stop, 10);
  return errno == 0 && stop != p ? 0 : -1;
}

/* A string field (or null: "") into out; 0, or -1.  The escapes api.c
** writes (\" \\ and \u00XX) are undone. */
static int backup_json_str(const char *json, const char *key, char *out,
                           size_t cap) {
  const char *p = backup_json_at(json, key);
  size_t n = 0;
  if (p == NULL) return -1;
  if (strncmp(p, "null", 4) == 0) {
    out[0] = '\0';
    return 0;
  }
  if (*p++ != '"') return -1;
  while (*p != '"' && *p != '\0' && n + 1 < cap) {
    char ch = *p++;
    if (ch == '\\') {
      ch = *p++;
      if (ch == 'u') {
        unsigned x = 0;
        if (sscanf(p, "%4x", &x) != 1) return -1;
        ch = (char)x;
        p += 4;
      } else if (ch == '\0') {
        return -1;
      }
    }
    out[n++] = ch;
  }
  out[n] = '\0';
  return *p == '"' ? 0 : -1;
}

/* ------------------------------------------------------------ files */

/* Whether dir is missing or an empty directory; 1, or 0 (exists with
** something in it, or is not a directory). */
static int backup_dir_unused(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int empty = 1;
  if (d == NULL) return errno == ENOENT;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
      empty = 0;
      break;
    }
  closedir(d);
  return empty;
}

/* mkdir dir (it may exist: empty, checked before); 0 or -1. */
static int backup_mkdir(const char *dir) {
  return mkdir(dir, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* Sync the directory dir (its entries); 0 or -1. */
static int backup_sync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY), rc;
  if (fd < 0) return -1;
  rc = fsync(fd);
  close(fd);
  return rc;
}

/* The file's size and SHA-256 (hex, 65 bytes), read in chunks; 0, or -1
** with errno. */
static int backup_sha256_file(const char *path, uint64_t *size, char *hex) {
  struct crypto_sha256 h;
  unsigned char d[CRYPTO_SHA256_LEN];
  struct buf b;
  int fd = open(path, O_RDONLY), rc = 0;
  if (fd < 0) return -1;
  memset(&b, 0, sizeof(b));
  if (buf_reserve(&b, 1 << 20) != URSULA_OK) {
    close(fd);
    errno = ENOMEM;
    return -1;
  }
  crypto_sha256_init(&h);
  *size = 0;
  for (;;) {
    ssize_t k = read(fd, b.ptr, 1 << 20);
    if (k < 0) {
      rc = -1;
      break;
    }
    if (k == 0) break;
    crypto_sha256_update(&h, b.ptr, (size_t)k);
    *size += (uint64_t)k;
  }
  crypto_sha256_final(&h, d);
  crypto_hex(d, sizeof(d), hex);
  close(fd);
  buf_free(&b);
  return rc;
}

/* Seconds since t0 (os_now_us). */
static double backup_secs(uint64_t t0) {
  return (double)(os_now_us() - t0) / 1e6;
}

/* ------------------------------------------------------------ images

   What an image's state names in the cold tier, found by decoding its
   payload as a start does (stream_restore): one "object" line each, into
   *lines (each NUL-terminated), and the count of streams. */

static int backup_image_objects(int group, const struct buf *payload,
                                struct buf *lines, size_t *n_objects,
                                size_t *n_streams) {
  struct stream_state st;
  size_t i, k;
  int rc;
  stream_state_init(&st);
  if ((rc = stream_restore(&st, payload->ptr, payload->len)) != URSULA_OK) {
    stream_state_free(&st);
    return rc;
  }
  *n_streams += st.n;
  for (i = 0; i < st.cap && rc == URSULA_OK; i++) {
    const struct stream *s;
    for (s = st.slots[i]; s != NULL && rc == URSULA_OK; s = s->hnext)
      for (k = 0; k < s->n_chunks && rc == URSULA_OK; k++) {
        rc = buf_printf(lines, "object %d %llu %llu %llu %s", group,
                        (unsigned long long)s->incarnation,
                        (unsigned long long)s->chunks[k].start,
                        (unsigned long long)s->chunks[k].end,
                        s->chunks[k].name);
        if (rc == URSULA_OK) rc = buf_append(lines, "", 1);
        (*n_objects)++;
      }
  }
  stream_state_free(&st);
  return rc;
}

/* ------------------------------------------------------------ backup */

struct backup_group {
  uint64_t index, term, bytes;
  char sha[2 * CRYPTO_SHA256_LEN + 1];
};

/* POST /__ursula/backup/g until it is not a 503 (no leader confirmed the
** barrier yet), at most BACKUP_POST_TRIES times; then the image's entry,
** term, size and CRC into *bg, *crc.  0, or -1 with err set. */
static int backup_post(const struct backup_target *t, int g,
                       struct backup_group *bg, uint64_t *crc,
                       struct backup_reply *r, char *err) {
  char path[64], why[URSULA_ERRMSG_LEN];
  int tries;
  snprintf(path, sizeof(path), "/__ursula/backup/%d", g);
  for (tries = 0;; tries++) {
    if (backup_request(t, "POST", path, NULL, r, why) != 0) {
      snprintf(err, URSULA_ERRMSG_LEN, "group %d: POST %s: %.1400s", g, path, why);
      return -1;
    }
    if (r->status != 503 || tries + 1 >= BACKUP_POST_TRIES) break;
    sleep(1);
  }
  if (r->status != 200 || backup_json_u64(r->body.ptr, "index", &bg->index) ||
      backup_json_u64(r->body.ptr, "term", &bg->term) ||
      backup_json_u64(r->body.ptr, "bytes", &bg->bytes) ||
      backup_json_u64(r->body.ptr, "crc32c", crc)) {
    snprintf(err, URSULA_ERRMSG_LEN, "group %d: POST %s: %d %s", g, path,
             r->status, r->status == 200 ? "(a malformed answer)"
                                         : backup_reason(r));
    return -1;
  }
  return 0;
}

/* GET group g's image (bg->bytes) in ranges into the new file `file`,
** synced, and its SHA-256 into bg->sha.  0, or -1 with err set. */
static int backup_fetch(const struct backup_target *t, int g,
                        const char *file, struct backup_group *bg,
                        struct backup_reply *r, char *err) {
  struct crypto_sha256 h;
  unsigned char d[CRYPTO_SHA256_LEN];
  char path[64], range[64], why[URSULA_ERRMSG_LEN];
  uint64_t at = 0;
  int fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "group %d: %s: %s", g, file,
             strerror(errno));
    return -1;
  }
  snprintf(path, sizeof(path), "/__ursula/backup/%d", g);
  crypto_sha256_init(&h);
  while (at < bg->bytes) {
    size_t off = 0;
    snprintf(range, sizeof(range), "bytes=%llu-%llu", (unsigned long long)at,
             (unsigned long long)(at + BACKUP_RANGE - 1));
    if (backup_request(t, "GET", path, range, r, why) != 0) {
      snprintf(err, URSULA_ERRMSG_LEN, "group %d: GET %s: %.1400s", g, path, why);
      goto fail;
    }
    if (r->status != 206 || !r->has_range || r->range_a != at ||
        r->range_total != bg->bytes || r->range_e < at ||
        r->body.len != r->range_e - at + 1) {
      snprintf(err, URSULA_ERRMSG_LEN,
               "group %d: GET %s (%s): %d %s", g, path, range, r->status,
               r->status == 206 ? "(not the range asked of the image "
                                  "announced: another backup replaced it?)"
                                : backup_reason(r));
      goto fail;
    }
    while (off < r->body.len) {
      ssize_t k = write(fd, r->body.ptr + off, r->body.len - off);
      if (k <= 0) {
        snprintf(err, URSULA_ERRMSG_LEN, "group %d: writing %s: %s", g, file,
                 k == 0 ? "no progress" : strerror(errno));
        goto fail;
      }
      off += (size_t)k;
    }
    crypto_sha256_update(&h, r->body.ptr, r->body.len);
    at += r->body.len;
  }
  if (fsync(fd) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "group %d: syncing %s: %s", g, file,
             strerror(errno));
    goto fail;
  }
  close(fd);
  crypto_sha256_final(&h, d);
  crypto_hex(d, sizeof(d), bg->sha);
  return 0;
fail:
  close(fd);
  return -1;
}

/* Check group g's image in file whole (wal.c, every CRC), as of entry
** `index` of term `term`, and add the objects its state names to *lines.
** URSULA_OK, or a code with the reason in why. */
static int backup_check_image(int g, const char *file, uint64_t index,
                              uint64_t term, struct buf *lines,
                              size_t *n_objects, size_t *n_streams,
                              char *why) {
  struct buf payload;
  uint64_t at = 0, at_term = 0;
  int rc;
  memset(&payload, 0, sizeof(payload));
  rc = wal_image_verify(file, &payload, &at, &at_term, why);
  if (rc == URSULA_OK && (at != index || at_term != term)) {
    snprintf(why, URSULA_ERRMSG_LEN,
             "it is as of entry %llu term %llu, not %llu term %llu",
             (unsigned long long)at, (unsigned long long)at_term,
             (unsigned long long)index, (unsigned long long)term);
    rc = URSULA_ECORRUPT;
  }
  if (rc == URSULA_OK &&
      (rc = backup_image_objects(g, &payload, lines, n_objects, n_streams)) !=
          URSULA_OK)
    snprintf(why, URSULA_ERRMSG_LEN, "its state does not decode (%s)",
             ursula_strerror(rc));
  buf_free(&payload);
  return rc;
}

/* Check the file of group g as fetched: its tail CRC is crc, the one the
** node announced, and it is whole as of bg's entry (backup_check_image).
** 0, or -1 with err set. */
static int backup_check_file(int g, const char *file,
                             const struct backup_group *bg, uint64_t crc,
                             struct buf *lines, size_t *n_objects,
                             size_t *n_streams, char *err) {
  unsigned char t[4];
  char why[URSULA_ERRMSG_LEN];
  int fd, rc = URSULA_OK;
  if (bg->index == 0 && bg->bytes == 0) return 0; /* no state, no image */
  fd = open(file, O_RDONLY); /* the tail's CRC: bytes N-8..N-5 */
  if (fd < 0 || bg->bytes < 8 ||
      pread(fd, t, 4, (off_t)(bg->bytes - 8)) != 4 ||
      util_get32(t) != (uint32_t)crc) {
    snprintf(why, sizeof(why), "its CRC is not the one the node announced");
    rc = URSULA_ECORRUPT;
  }
  if (fd >= 0) close(fd);
  if (rc == URSULA_OK)
    rc = backup_check_image(g, file, bg->index, bg->term, lines, n_objects,
                            n_streams, why);
  if (rc == URSULA_OK) return 0;
  snprintf(err, URSULA_ERRMSG_LEN, "group %d: %.500s: %.900s", g, file, why);
  return -1;
}

/* The MANIFEST's text into m (the table at the top). */
static int backup_manifest_text(struct buf *m, const char *layout,
                                const struct backup_target *t, int groups,
                                const struct backup_group *bg,
                                const struct buf *objects, size_t n_objects) {
  char v[URSULA_PATH_LEN + 8], cold[16], when[32];
  uint64_t node = 0;
  time_t now = time(NULL);
  struct tm tmv;
  size_t at;
  int g, rc;
  gmtime_r(&now, &tmv);
  strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tmv);
  backup_json_u64(layout, "node_id", &node);
  rc = buf_printf(m, "%s\nnode-id %llu\n", BACKUP_VERSION,
                  (unsigned long long)node);
  if (rc == URSULA_OK && backup_json_str(layout, "cluster_id", v, sizeof(v)))
    rc = URSULA_EINVAL;
  if (rc == URSULA_OK)
    rc = buf_printf(m, "cluster-id %s\ngroups %d\n", v, groups);
  if (rc == URSULA_OK && backup_json_str(layout, "store_id", v, sizeof(v)))
    rc = URSULA_EINVAL;
  if (rc == URSULA_OK) rc = buf_printf(m, "store-id %s\n", v[0] ? v : "none");
  if (rc == URSULA_OK && backup_json_str(layout, "cold", cold, sizeof(cold)))
    rc = URSULA_EINVAL;
  if (rc == URSULA_OK && strcmp(cold, "dir") == 0) {
    if (backup_json_str(layout, "cold_dir", v, sizeof(v))) rc = URSULA_EINVAL;
    if (rc == URSULA_OK) rc = buf_printf(m, "cold-tier dir %s\n", v);
  } else if (rc == URSULA_OK && strcmp(cold, "s3") == 0) {
    char prefix[URSULA_PATH_LEN];
    if (backup_json_str(layout, "s3_bucket", v, sizeof(v)) ||
        backup_json_str(layout, "s3_prefix", prefix, sizeof(prefix)))
      rc = URSULA_EINVAL;
    if (rc == URSULA_OK)
      rc = buf_printf(m, "cold-tier s3 s3://%s/%s\n", v, prefix);
  } else if (rc == URSULA_OK) {
    rc = buf_append_str(m, "cold-tier none\n");
  }
  if (rc == URSULA_OK)
    rc = buf_printf(m, "time %s\nsource %s:%d\n", when, t->host, t->port);
  for (g = 0; g < groups && rc == URSULA_OK; g++)
    rc = buf_printf(m, "group %d group-%05d.img %llu %llu %llu %s\n", g, g,
                    (unsigned long long)bg[g].index,
                    (unsigned long long)bg[g].term,
                    (unsigned long long)bg[g].bytes, bg[g].sha);
  for (at = 0; at < objects->len && rc == URSULA_OK;) {
    const char *line = objects->ptr + at;
    rc = buf_printf(m, "%s\n", line);
    at += strlen(line) + 1;
  }
  if (rc == URSULA_OK)
    rc = buf_printf(m, "end %d %lu\n", groups, (unsigned long)n_objects);
  return rc;
}

/* Write DIR/MANIFEST: MANIFEST.tmp, synced, renamed, DIR synced.  0, or
** -1 with err set. */
static int backup_write_manifest(const char *dir, const struct buf *m,
                                 char *err) {
  char tmp[URSULA_PATH_LEN + 32], path[URSULA_PATH_LEN + 32];
  size_t off = 0;
  int fd;
  snprintf(tmp, sizeof(tmp), "%s/MANIFEST.tmp", dir);
  snprintf(path, sizeof(path), "%s/MANIFEST", dir);
  if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0) goto fail;
  while (off < m->len) {
    ssize_t k = write(fd, m->ptr + off, m->len - off);
    if (k <= 0) {
      if (k == 0) errno = EIO;
      close(fd);
      goto fail;
    }
    off += (size_t)k;
  }
  if (fsync(fd) != 0) {
    close(fd);
    goto fail;
  }
  if (close(fd) != 0 || rename(tmp, path) != 0 || backup_sync_dir(dir) != 0)
    goto fail;
  return 0;
fail:
  snprintf(err, URSULA_ERRMSG_LEN, "writing %s: %s", path, strerror(errno));
  unlink(tmp);
  return -1;
}

/* HOST:PORT into t; 0 or -1. */
static int backup_parse_addr(const char *s, struct backup_target *t) {
  const char *colon = strrchr(s, ':');
  size_t n;
  char *stop;
  long port;
  if (colon == NULL || colon == s) return -1;
  n = (size_t)(colon - s);
  if (s[0] == '[' && colon[-1] == ']') { /* [v6]:port */
    s++;
    n -= 2;
  }
  if (n >= sizeof(t->host)) return -1;
  memcpy(t->host, s, n);
  t->host[n] = '\0';
  port = strtol(colon + 1, &stop, 10);
  if (*stop != '\0' || port < 1 || port > 65535) return -1;
  t->port = (int)port;
  return 0;
}

/* The token in file (its first line) into t->token; 0, or -1 with err. */
static int backup_read_token(const char *file, struct backup_target *t,
                             char *err) {
  FILE *f = fopen(file, "r");
  size_t n;
  if (f == NULL || fgets(t->token, sizeof(t->token), f) == NULL) {
    snprintf(err, URSULA_ERRMSG_LEN, "--token-file %s: %s", file,
             f == NULL ? strerror(errno) : "empty");
    if (f != NULL) fclose(f);
    return -1;
  }
  fclose(f);
  n = strcspn(t->token, "\r\n");
  t->token[n] = '\0';
  return 0;
}

static void backup_usage(FILE *f) {
  fprintf(f,
          "usage: ursula backup --admin HOST:PORT --out DIR "
          "[--token-file FILE]\n"
          "  Back up a running node (it needs --wal-dir) through its admin\n"
          "  listener into DIR (new or empty): one image per group and a\n"
          "  MANIFEST, written last.  --token-file: a bearer token with the\n"
          "  admin scope, for a node with --auth-file.\n");
}

URSULA_PRIVATE int backup_main(int argc, char **argv) {
  struct backup_target t;
  struct backup_reply r;
  struct backup_group *bg = NULL;
  struct buf layout, objects, m;
  const char *out = NULL, *admin = NULL, *token = NULL;
  char err[URSULA_ERRMSG_LEN], file[URSULA_PATH_LEN + 32];
  uint64_t groups = 0, total = 0, t0 = os_now_us();
  size_t n_objects = 0, n_streams = 0;
  int i, g, rc = 1;
  memset(&t, 0, sizeof(t));
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      backup_usage(stdout);
      return 0;
    }
    if (i + 1 >= argc) break;
    if (strcmp(argv[i], "--admin") == 0)
      admin = argv[++i];
    else if (strcmp(argv[i], "--out") == 0)
      out = argv[++i];
    else if (strcmp(argv[i], "--token-file") == 0)
      token = argv[++i];
    else
      break;
  }
  if (i < argc || admin == NULL || out == NULL ||
      backup_parse_addr(admin, &t) != 0) {
    if (i < argc) fprintf(stderr, "ursula backup: bad flag %s\n", argv[i]);
    backup_usage(stderr);
    return 2;
  }
  if (strlen(out) >= URSULA_PATH_LEN) {
    fprintf(stderr, "ursula backup: --out %s: the path is too long\n", out);
    return 2;
  }
  if (token != NULL && backup_read_token(token, &t, err) != 0) {
    fprintf(stderr, "ursula backup: %s\n", err);
    return 2;
  }
  if (!backup_dir_unused(out)) {
    fprintf(stderr,
            "ursula backup: --out %s exists and is not empty: a backup goes "
            "into a new or empty directory\n",
            out);
    return 2;
  }
  memset(&r, 0, sizeof(r));
  memset(&layout, 0, sizeof(layout));
  memset(&objects, 0, sizeof(objects));
  memset(&m, 0, sizeof(m));
  if (backup_mkdir(out) != 0) {
    fprintf(stderr, "ursula backup: mkdir %s: %s\n", out, strerror(errno));
    return 1;
  }
  if (backup_request(&t, "GET", "/__ursula/backup", NULL, &r, err) != 0) {
    fprintf(stderr, "ursula backup: GET /__ursula/backup: %s\n", err);
    goto done;
  }
  if (r.status != 200 || backup_json_u64(r.body.ptr, "groups", &groups) != 0 ||
      groups == 0 || groups > 1000000) {
    fprintf(stderr, "ursula backup: GET /__ursula/backup: %d %s\n", r.status,
            backup_reason(&r));
    goto done;
  }
  if (buf_append(&layout, r.body.ptr, r.body.len + 1) != URSULA_OK ||
      (bg = (struct backup_group *)URSULA_MALLOC((size_t)groups *
                                                 sizeof(*bg))) == NULL) {
    fprintf(stderr, "ursula backup: out of memory\n");
    goto done;
  }
  memset(bg, 0, (size_t)groups * sizeof(*bg));
  for (g = 0; g < (int)groups; g++) {
    uint64_t crc = 0, tg = os_now_us();
    char path[64];
    snprintf(file, sizeof(file), "%s/group-%05d.img", out, g);
    snprintf(path, sizeof(path), "/__ursula/backup/%d", g);
    if (backup_post(&t, g, &bg[g], &crc, &r, err) != 0 ||
        backup_fetch(&t, g, file, &bg[g], &r, err) != 0 ||
        backup_check_file(g, file, &bg[g], crc, &objects, &n_objects,
                          &n_streams, err) != 0) {
      fprintf(stderr, "ursula backup: %s\n", err);
      goto done;
    }
    if (bg[g].bytes > 0 &&
        backup_request(&t, "DELETE", path, NULL, &r, err) != 0)
      fprintf(stderr, "ursula backup: group %d: DELETE %s: %s (the node "
              "keeps the file until the next backup)\n", g, path, err);
    total += bg[g].bytes;
    fprintf(stderr, "group %d: %llu bytes (entry %llu) in %.2f s\n", g,
            (unsigned long long)bg[g].bytes, (unsigned long long)bg[g].index,
            backup_secs(tg));
  }
  if (backup_sync_dir(out) != 0 ||
      backup_manifest_text(&m, layout.ptr, &t, (int)groups, bg, &objects,
                           n_objects) != URSULA_OK ||
      backup_write_manifest(out, &m, err) != 0) {
    fprintf(stderr, "ursula backup: %s\n",
            m.len ? err : "the node's layout answer is malformed");
    goto done;
  }
  fprintf(stderr,
          "backup: %d groups, %lu streams, %llu bytes, %lu cold-tier "
          "objects named, in %.2f s: %s/MANIFEST\n",
          (int)groups, (unsigned long)n_streams, (unsigned long long)total,
          (unsigned long)n_objects, backup_secs(t0), out);
  rc = 0;
done:
  if (rc != 0)
    fprintf(stderr, "ursula backup: failed; %s has no MANIFEST and cannot "
            "be restored\n", out);
  URSULA_FREE(bg);
  buf_free(&r.body);
  buf_free(&layout);
  buf_free(&objects);
  buf_free(&m);
  return rc;
}

/* ------------------------------------------------------------ restore */

struct backup_manifest {
  int groups;
  char store_id[33];
  struct backup_group *g;
  struct buf objects; /* the "object" lines, each NUL-terminated */
  size_t n_objects;
};

static void backup_manifest_free(struct backup_manifest *mf) {
  URSULA_FREE(mf->g);
  buf_free(&mf->objects);
}

/* Read DIR/MANIFEST into mf.  0, or -1 with err set. */
static int backup_read_manifest(const char *dir, struct backup_manifest *mf,
                                char *err) {
  char path[URSULA_PATH_LEN + 32], line[URSULA_PATH_LEN + 256];
  FILE *f;
  int n = 0, ended = 0, next = 0;
  unsigned long end_objects = 0;
  memset(mf, 0, sizeof(*mf));
  mf->groups = -1;
  snprintf(path, sizeof(path), "%s/MANIFEST", dir);
  if ((f = fopen(path, "r")) == NULL) {
    snprintf(err, URSULA_ERRMSG_LEN,
             errno == ENOENT
                 ? "%s is missing: %s is not a backup, or one that did not "
                   "finish; nothing restored"
                 : "%s: %s",
             path, errno == ENOENT ? dir : strerror(errno));
    return -1;
  }
  while (fgets(line, sizeof(line), f) != NULL) {
    size_t k = strlen(line);
    int gid;
    unsigned long long index, term, bytes;
    char name[64], sha[80];
    n++;
    if (k == 0 || line[k - 1] != '\n' || ended) goto bad;
    line[k - 1] = '\0';
    if (n == 1) {
      if (strcmp(line, BACKUP_VERSION) != 0) goto bad;
    } else if (strncmp(line, "groups ", 7) == 0) {
      mf->groups = atoi(line + 7);
      if (mf->groups < 1 || mf->groups > 1000000 || mf->g != NULL) goto bad;
      mf->g = (struct backup_group *)URSULA_MALLOC((size_t)mf->groups *
                                                   sizeof(*mf->g));
      if (mf->g == NULL) goto bad;
    } else if (strncmp(line, "store-id ", 9) == 0) {
      if (strcmp(line + 9, "none") != 0) {
        if (strlen(line + 9) != 32 ||
            strspn(line + 9, "0123456789abcdef") != 32)
          goto bad;
        memcpy(mf->store_id, line + 9, 33);
      }
    } else if (strncmp(line, "group ", 6) == 0) {
      if (mf->g == NULL ||
          sscanf(line, "group %d %63s %llu %llu %llu %79s", &gid, name, &index,
                 &term, &bytes, sha) != 6 ||
          gid != next || gid >= mf->groups || strlen(sha) != 64)
        goto bad;
      snprintf(path, sizeof(path), "group-%05d.img", gid);
      if (strcmp(name, path) != 0) goto bad;
      mf->g[gid].index = index;
      mf->g[gid].term = term;
      mf->g[gid].bytes = bytes;
      memcpy(mf->g[gid].sha, sha, 65);
      next++;
    } else if (strncmp(line, "object ", 7) == 0) {
      if (buf_append(&mf->objects, line, strlen(line) + 1) != URSULA_OK)
        goto bad;
      mf->n_objects++;
    } else if (strncmp(line, "end ", 4) == 0) {
      if (sscanf(line, "end %d %lu", &gid, &end_objects) != 2 ||
          gid != next || end_objects != mf->n_objects)
        goto bad;
      ended = 1;
    } /* node-id, cluster-id, cold-tier, time, source: for people */
  }
  fclose(f);
  if (ended && mf->groups > 0 && next == mf->groups) return 0;
  snprintf(err, URSULA_ERRMSG_LEN,
           "%s/MANIFEST is incomplete (no \"end\" line, or not every group "
           "listed)",
           dir);
  backup_manifest_free(mf);
  return -1;
bad:
  fclose(f);
  snprintf(err, URSULA_ERRMSG_LEN, "%s/MANIFEST: line %d is malformed", dir,
           n);
  backup_manifest_free(mf);
  return -1;
}

static int backup_cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The n NUL-terminated strings of b, sorted, as an array (freed by the
** caller), or NULL. */
static const char **backup_sorted(const struct buf *b, size_t n) {
  const char **v = (const char **)URSULA_MALLOC((n + 1) * sizeof(*v));
  size_t i, at = 0;
  if (v == NULL) return NULL;
  for (i = 0; i < n && at < b->len; i++) {
    v[i] = b->ptr + at;
    at += strlen(v[i]) + 1;
  }
  if (n > 1) qsort(v, n, sizeof(*v), backup_cmp_str);
  return v;
}

/* Check group g's file in dir against mf (size, SHA-256, then the image
** whole through wal.c, as of mf's entry), adding the objects its state
** names to *lines.  0, or -1 with err set, naming the group. */
static int backup_check_group(const char *dir, int g,
                              const struct backup_manifest *mf,
                              struct buf *lines, size_t *n_objects,
                              size_t *n_streams, char *err) {
  char file[URSULA_PATH_LEN + 32], sha[2 * CRYPTO_SHA256_LEN + 1];
  char why[URSULA_ERRMSG_LEN];
  uint64_t size = 0;
  snprintf(file, sizeof(file), "%s/group-%05d.img", dir, g);
  if (backup_sha256_file(file, &size, sha) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "group %d: %s: %s", g, file,
             strerror(errno));
    return -1;
  }
  if (size != mf->g[g].bytes || strcmp(sha, mf->g[g].sha) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "group %d: %s is damaged: its %s differs from the MANIFEST's", g,
             file, size != mf->g[g].bytes ? "size" : "SHA-256");
    return -1;
  }
  if (mf->g[g].index == 0 && mf->g[g].bytes == 0) return 0; /* empty */
  if (backup_check_image(g, file, mf->g[g].index, mf->g[g].term, lines,
                         n_objects, n_streams, why) == URSULA_OK)
    return 0;
  snprintf(err, URSULA_ERRMSG_LEN, "group %d: %.900s", g, why);
  return -1;
}

/* Check every object line of lines in cfg's cold store (cold.c's GET and
** cold_chunk_check).  0, or -1 with err naming the first bad one. */
static int backup_verify_cold(const struct ursula_config *cfg,
                              const struct buf *lines, size_t n,
                              size_t *verified, char *err) {
  struct cold *c = NULL;
  struct s3_client *cl = NULL;
  struct buf obj;
  char why[URSULA_ERRMSG_LEN], name[COLD_NAME_MAX + 1];
  size_t at = 0, i;
  int rc = 0;
  if (n == 0) return 0;
  if (cfg->cold_dir[0] == '\0' && cfg->s3_endpoint[0] == '\0') {
    snprintf(err, URSULA_ERRMSG_LEN,
             "the backup names %lu cold-tier objects: give the store with "
             "--cold-dir or the --s3-* flags (or skip the check with "
             "--no-verify-cold)",
             (unsigned long)n);
    return -1;
  }
  if (cold_open(&c, cfg, NULL, why) != URSULA_OK) {
    snprintf(err, URSULA_ERRMSG_LEN, "the cold tier: %.900s", why);
    return -1;
  }
  memset(&obj, 0, sizeof(obj));
  for (i = 0; i < n && rc == 0; i++) {
    const char *line = lines->ptr + at;
    unsigned long long inc, start, end;
    int g, got;
    at += strlen(line) + 1;
    if (sscanf(line, "object %d %llu %llu %llu %96s", &g, &inc, &start, &end,
               name) != 5) {
      snprintf(err, URSULA_ERRMSG_LEN, "a malformed object line: %.200s", line);
      rc = -1;
      break;
    }
    got = cold_get_now(c, &cl, name, &obj, why);
    if (got == URSULA_ENOTFOUND) {
      snprintf(err, URSULA_ERRMSG_LEN,
               "group %d: cold-tier object %s is missing from the store", g,
               name);
      rc = -1;
    } else if (got != URSULA_OK) {
      snprintf(err, URSULA_ERRMSG_LEN,
               "group %d: cold-tier object %s could not be read: %.600s", g,
               name, why);
      rc = -1;
    } else if (cold_chunk_check(&obj, inc, start, end) != URSULA_OK) {
      snprintf(err, URSULA_ERRMSG_LEN,
               "group %d: cold-tier object %s is damaged (its header or CRC)",
               g, name);
      rc = -1;
    } else {
      (*verified)++;
    }
  }
  buf_free(&obj);
  s3_client_free(cl);
  cold_close(c);
  return rc;
}

/* Group g's log in D/gNNNNN, made from the image file as an install makes
** it: the hard state (term, no vote) first, then wal_install_*; for a
** group with no image (term 0: it had applied nothing), an empty log.  0,
** or -1 with err set. */
static int backup_stub_entry(void *arg, const struct wal_entry *e) {
  (void)arg;
  (void)e;
  return URSULA_EINVAL; /* a new log has none */
}
static int backup_stub_restore(void *arg, const void *p, size_t len) {
  (void)arg;
  (void)p;
  (void)len;
  return URSULA_EINVAL; /* nor a snapshot */
}

static int backup_restore_group(const char *from, const char *to, int g,
                                uint64_t term, char *err) {
  struct wal *w = NULL;
  struct wal_snap_writer sw;
  struct wal_stats st;
  struct buf chunk;
  char dir[URSULA_PATH_LEN + 32], file[URSULA_PATH_LEN + 32];
  char why[URSULA_ERRMSG_LEN];
  uint64_t at = 0;
  int fd = -1, rc;
  snprintf(dir, sizeof(dir), "%s/g%05d", to, g);
  snprintf(file, sizeof(file), "%s/group-%05d.img", from, g);
  memset(&chunk, 0, sizeof(chunk));
  why[0] = '\0';
  rc = wal_open(&w, NULL, dir, 0, why);
  if (rc == URSULA_OK)
    rc = wal_replay(w, backup_stub_restore, backup_stub_entry, NULL, NULL, &st,
                    why);
  if (rc == URSULA_OK && term == 0) { /* no image: the new log alone */
    wal_close(w);
    return 0;
  }
  if (rc == URSULA_OK) rc = wal_save_state(w, term, 0);
  if (rc == URSULA_OK) rc = buf_reserve(&chunk, 1 << 20);
  if (rc == URSULA_OK && (fd = open(file, O_RDONLY)) < 0) rc = URSULA_EIO;
  if (rc == URSULA_OK && (rc = wal_install_begin(w, &sw)) == URSULA_OK) {
    for (;;) {
      ssize_t k = read(fd, chunk.ptr, 1 << 20);
      if (k < 0) rc = URSULA_EIO;
      if (k <= 0) break;
      if ((rc = wal_install_put(&sw, at, chunk.ptr, (size_t)k)) != URSULA_OK)
        break;
      at += (uint64_t)k;
    }
    if (rc == URSULA_OK)
      rc = wal_install_commit(w, &sw, why);
    else
      wal_snap_abort(w, &sw);
  }
  if (fd >= 0) close(fd);
  buf_free(&chunk);
  wal_close(w);
  if (rc == URSULA_OK) return 0;
  snprintf(err, URSULA_ERRMSG_LEN, "group %d: writing %.500s: %.900s", g, dir,
           why[0] ? why : ursula_strerror(rc));
  return -1;
}

static void backup_restore_usage(FILE *f) {
  fprintf(f,
          "usage: ursula restore --from DIR --wal-dir D [--cold-dir C | "
          "--s3-endpoint URL --s3-bucket B ...]\n"
          "                      [--no-verify-cold]\n"
          "  Restore a backup made by `ursula backup` into D (new or empty),\n"
          "  offline: check DIR/MANIFEST, every image's SHA-256 and CRC, and\n"
          "  every cold-tier object the images name (in the store given;\n"
          "  --no-verify-cold skips that), then make each group's log from\n"
          "  its image as a Raft snapshot install does.  Start the node on\n"
          "  D with the backup's --raft-group-count and its usual flags.\n");
}

URSULA_PRIVATE int backup_restore_main(int argc, char **argv) {
  struct ursula_config cfg;
  struct backup_manifest mf;
  struct buf lines;
  const char **have = NULL, **want = NULL;
  char **rest;
  const char *from = NULL, *check = NULL;
  char err[URSULA_ERRMSG_LEN];
  size_t n_objects = 0, n_streams = 0, verified = 0, i;
  uint64_t bytes = 0, t0 = os_now_us();
  int n = 0, no_verify = 0, g, rc;
  rest = (char **)URSULA_MALLOC(sizeof(*rest) * (size_t)(argc + 1));
  if (rest == NULL) return 1;
  rest[n++] = argv[0];
  for (i = 1; i < (size_t)argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      backup_restore_usage(stdout);
      URSULA_FREE(rest);
      return 0;
    }
    if (strcmp(argv[i], "--no-verify-cold") == 0)
      no_verify = 1;
    else if (strcmp(argv[i], "--from") == 0 && i + 1 < (size_t)argc)
      from = argv[++i];
    else
      rest[n++] = argv[i];
  }
  rest[n] = NULL;
  ursula_config_init(&cfg);
  err[0] = '\0';
  rc = conf_parse_args(&cfg, n, rest, &check, err);
  URSULA_FREE(rest);
  if (rc == CONF_RUN && from == NULL)
    snprintf(err, sizeof(err), "--from DIR is required");
  else if (rc == CONF_RUN && cfg.wal_dir[0] == '\0')
    snprintf(err, sizeof(err), "--wal-dir D is required");
  else if (rc == CONF_RUN && server_check_config(&cfg, err) == URSULA_OK)
    err[0] = '\0';
  else if (rc == CONF_RUN && err[0] == '\0')
    snprintf(err, sizeof(err), "bad settings");
  else if (rc != CONF_RUN && err[0] == '\0')
    snprintf(err, sizeof(err), "bad flags");
  if (err[0] != '\0') {
    fprintf(stderr, "ursula restore: %s\n", err);
    backup_restore_usage(stderr);
    return 2;
  }
  if (!backup_dir_unused(cfg.wal_dir)) {
    fprintf(stderr,
            "ursula restore: --wal-dir %s exists and is not empty: a restore "
            "goes into a new or empty directory\n",
            cfg.wal_dir);
    return 2;
  }
  if (backup_read_manifest(from, &mf, err) != 0) {
    fprintf(stderr, "ursula restore: %s\n", err);
    return 1;
  }
  memset(&lines, 0, sizeof(lines));
  rc = 1;
  for (g = 0; g < mf.groups; g++) {
    if (backup_check_group(from, g, &mf, &lines, &n_objects, &n_streams,
                           err) != 0)
      goto done;
    bytes += mf.g[g].bytes;
  }
  have = backup_sorted(&lines, n_objects);
  want = backup_sorted(&mf.objects, mf.n_objects);
  if (have == NULL || want == NULL) {
    snprintf(err, sizeof(err), "out of memory");
    goto done;
  }
  for (i = 0; i < n_objects && i < mf.n_objects; i++)
    if (strcmp(have[i], want[i]) != 0) break;
  if (n_objects != mf.n_objects || i < n_objects) {
    snprintf(err, sizeof(err),
             "the MANIFEST lists %lu cold-tier objects, the images name %lu%s"
             "%.200s",
             (unsigned long)mf.n_objects, (unsigned long)n_objects,
             i < n_objects ? "; the first that differs: " : "",
             i < n_objects ? have[i] : "");
    goto done;
  }
  if (!no_verify &&
      backup_verify_cold(&cfg, &mf.objects, mf.n_objects, &verified, err) != 0)
    goto done;
  if (backup_mkdir(cfg.wal_dir) != 0) {
    snprintf(err, sizeof(err), "mkdir %s: %s", cfg.wal_dir, strerror(errno));
    goto done;
  }
  for (g = 0; g < mf.groups; g++)
    if (backup_restore_group(from, cfg.wal_dir, g, mf.g[g].term, err) != 0)
      goto partial;
  if (server_write_layout(env_real()->fs, cfg.wal_dir, mf.groups, err) !=
          URSULA_OK ||
      (mf.store_id[0] &&
       server_write_cold_store(env_real()->fs, cfg.wal_dir, mf.store_id, 0,
                               err) != URSULA_OK))
    goto partial;
  printf("restored %d groups, %lu streams, %llu bytes; %lu cold-tier "
         "objects %s; into %s in %.2f s (start it with "
         "--raft-group-count %d)\n",
         mf.groups, (unsigned long)n_streams, (unsigned long long)bytes,
         (unsigned long)(no_verify ? mf.n_objects : verified),
         no_verify ? "named, not verified (--no-verify-cold)" : "verified",
         cfg.wal_dir, backup_secs(t0), mf.groups);
  rc = 0;
  goto done;
partial:
  fprintf(stderr, "ursula restore: %s\n", err);
  snprintf(err, sizeof(err),
           "%s is incomplete: remove it before restoring again", cfg.wal_dir);
done:
  if (rc != 0) fprintf(stderr, "ursula restore: %s\n", err);
  URSULA_FREE(have);
  URSULA_FREE(want);
  buf_free(&lines);
  backup_manifest_free(&mf);
  return rc;
}
