/* unit_cold.c -- the cold tier: the COLD command, chunks in the state
** machine (reads, snapshots, garbage), the chunk format and the cache. */

/* A fake cold tier for stream_read: the one chunk it holds, by name. */
static const char *unit_cold_name;
static const char *unit_cold_data;
static int unit_cold_misses;

static int unit_cold_read_chunk(void *ctx, const struct stream *s,
                                const struct stream_chunk *ch, const char **p) {
  (void)ctx, (void)s;
  if (unit_cold_name != NULL && strcmp(ch->name, unit_cold_name) == 0) {
    *p = unit_cold_data;
    return URSULA_OK;
  }
  unit_cold_misses++;
  return URSULA_EAGAIN;
}

static struct cmd unit_cold_cmd(const char *path, uint64_t inc, uint64_t start,
                                uint64_t end, const char *name) {
  struct cmd c = unit_cmd(CMD_COLD, path, 5000);
  c.incarnation = inc;
  c.cold_start = start;
  c.cold_end = end;
  c.object = util_str(name);
  return c;
}

static void test_cold_cmd_roundtrip(void) {
  struct cmd c = unit_cold_cmd("/s", 7, 100, 250, "g00001/0007/x"), d;
  struct buf enc, bounds;
  size_t cut;
  memset(&enc, 0, sizeof(enc));
  memset(&bounds, 0, sizeof(bounds));
  ASSERT(cmd_encode(&c, &enc) == URSULA_OK);
  ASSERT(cmd_decode(enc.ptr, enc.len, &d, &bounds) == URSULA_OK);
  ASSERT(d.type == CMD_COLD && d.incarnation == 7 && d.cold_start == 100 &&
         d.cold_end == 250);
  ASSERT_MEM(d.object.ptr, d.object.len, "g00001/0007/x");
  for (cut = 0; cut < enc.len; cut++)
    ASSERT(cmd_decode(enc.ptr, cut, &d, &bounds) == URSULA_ECORRUPT);
  buf_free(&enc);
  buf_free(&bounds);
}

/* A stream "/s" with appends "aaaa", "bbbbbb", "cc" (ends 4, 10, 12), all
** in WAL segment 3. */
static struct stream *unit_cold_stream(struct stream_state *st,
                                       struct stream_result *r) {
  struct cmd c;
  const char *parts[3] = {"aaaa", "bbbbbb", "cc"};
  int i;
  stream_state_init(st);
  st->read_chunk = unit_cold_read_chunk;
  unit_stream_index = 3;
  c = unit_cmd(CMD_CREATE, "/s", 1000);
  ASSERT(unit_apply(st, &c, r) == 201);
  for (i = 0; i < 3; i++) {
    c = unit_cmd(CMD_APPEND, "/s", 1000);
    c.data = util_str(parts[i]);
    ASSERT(unit_apply(st, &c, r) == 204);
  }
  unit_stream_index = 0;
  return stream_find(st, util_str("/s"));
}

static void test_cold_apply_and_read(void) {
  struct stream_state st;
  struct stream_result r;
  struct stream *s;
  struct buf out;
  struct cmd c;
  memset(&r, 0, sizeof(r));
  memset(&out, 0, sizeof(out));
  s = unit_cold_stream(&st, &r);
  ASSERT(s != NULL && s->tail == 12 && st.hot_bytes == 12);
  if (s == NULL) return;
  /* not on a unit boundary, not from the cold end, wrong incarnation */
  c = unit_cold_cmd("/s", s->incarnation, 0, 5, "n5");
  ASSERT(unit_apply(&st, &c, &r) == 409);
  ASSERT(r.garbage.len == 3 && memcmp(r.garbage.ptr, "n5", 3) == 0);
  c = unit_cold_cmd("/s", s->incarnation, 4, 10, "n410");
  ASSERT(unit_apply(&st, &c, &r) == 409);
  c = unit_cold_cmd("/s", s->incarnation + 1, 0, 10, "nx");
  ASSERT(unit_apply(&st, &c, &r) == 409 && r.garbage.len == 3);
  ASSERT(s->cold_end == 0 && s->n_chunks == 0);
  /* the first two appends move: memory drops them */
  c = unit_cold_cmd("/s", s->incarnation, 0, 10, "chunk-a");
  ASSERT(unit_apply(&st, &c, &r) == 204 && r.garbage.len == 0);
  ASSERT(s->cold_end == 10 && s->cold_units == 2 && s->n_chunks == 1);
  ASSERT(s->local.hot_start == 10 && s->local.data.len == 2 && st.hot_bytes == 2);
  /* the same command again (a repeat): stale, but its object is in use */
  ASSERT(unit_apply(&st, &c, &r) == 409 && r.garbage.len == 0);
  ASSERT(stream_oldest_index(&st, 0) == 3); /* "cc" still needs the WAL */
  /* reads: the chunk is missing, then present */
  unit_cold_name = NULL;
  unit_cold_misses = 0;
  ASSERT(stream_read(&st, s, 2, 12, &out) == URSULA_EAGAIN);
  ASSERT(unit_cold_misses == 1 && out.len == 0);
  unit_cold_name = "chunk-a";
  unit_cold_data = "aaaabbbbbb";
  ASSERT(stream_read(&st, s, 2, 12, &out) == URSULA_OK);
  ASSERT_MEM(out.ptr, out.len, "aabbbbbbcc");
  out.len = 0;
  ASSERT(stream_read(&st, s, 10, 12, &out) == URSULA_OK); /* hot only */
  ASSERT_MEM(out.ptr, out.len, "cc");
  /* the rest moves too; then the WAL holds nothing of the stream */
  c = unit_cold_cmd("/s", s->incarnation, 10, 12, "chunk-b");
  ASSERT(unit_apply(&st, &c, &r) == 204 && s->cold_end == 12);
  ASSERT(stream_oldest_index(&st, 0) == UINT64_MAX && st.hot_bytes == 0);
  /* deleting the stream frees both objects */
  c = unit_cmd(CMD_DELETE, "/s", 6000);
  ASSERT(unit_apply(&st, &c, &r) == 204);
  ASSERT(r.garbage.len == 16 &&
         memcmp(r.garbage.ptr, "chunk-a\0chunk-b", 16) == 0);
  unit_cold_name = NULL;
  buf_free(&out);
  buf_free(&r.garbage);
  buf_free(&r.releases);
  stream_state_free(&st);
}

static void test_cold_snapshot(void) {
  struct stream_state st, back;
  struct stream_result r;
  struct stream *s, *t;
  struct buf snap, out;
  struct cmd c;
  memset(&r, 0, sizeof(r));
  memset(&snap, 0, sizeof(snap));
  memset(&out, 0, sizeof(out));
  s = unit_cold_stream(&st, &r);
  if (s == NULL) return;
  c = unit_cold_cmd("/s", s->incarnation, 0, 4, "chunk-a");
  ASSERT(unit_apply(&st, &c, &r) == 204);
  ASSERT(stream_snapshot(&st, &snap) == URSULA_OK);
  stream_state_init(&back);
  back.read_chunk = unit_cold_read_chunk;
  ASSERT(stream_restore(&back, snap.ptr, snap.len) == URSULA_OK);
  t = stream_find(&back, util_str("/s"));
  ASSERT(t != NULL);
  if (t != NULL) {
    ASSERT(t->cold_end == 4 && t->cold_units == 1 && t->n_chunks == 1);
    ASSERT(strcmp(t->chunks[0].name, "chunk-a") == 0);
    ASSERT(t->n_bounds == 3 && t->locs[1].index == 3);
    ASSERT(stream_oldest_index(&back, 0) == 3);
    unit_cold_name = "chunk-a";
    unit_cold_data = "aaaa";
    back.read_cold = NULL; /* the WAL part would need a WAL: read the chunk */
    ASSERT(stream_read(&back, t, 0, 4, &out) == URSULA_OK);
    ASSERT_MEM(out.ptr, out.len, "aaaa");
    unit_cold_name = NULL;
  }
  /* every truncation of the snapshot is refused */
  {
    size_t cut;
    for (cut = 0; cut < snap.len; cut++) {
      struct stream_state bad;
      stream_state_init(&bad);
      ASSERT(stream_restore(&bad, snap.ptr, cut) != URSULA_OK);
      stream_state_free(&bad);
    }
  }
  buf_free(&snap);
  buf_free(&out);
  buf_free(&r.garbage);
  buf_free(&r.releases);
  stream_state_free(&st);
  stream_state_free(&back);
}

static void test_cold_chunk_format(void) {
  struct buf obj;
  char name[COLD_NAME_MAX];
  memset(&obj, 0, sizeof(obj));
  cold_chunk_name(name, 3, 42, 0, 1048576, 7);
  ASSERT(strcmp(name,
                "g00003/000000000000002a/0000000000000000-0000000000100000"
                "-t0000000000000007") == 0);
  ASSERT(cold_chunk_term(name) == 7);
  ASSERT(cold_chunk_term("g00003/000000000000002a/0000000000000000-"
                         "0000000000100000") == 0); /* before terms */
  ASSERT(cold_chunk_term("g00003/000000000000002a/0000000000000000-"
                         "0000000000100000-t00000000000000fg") == 0);
  ASSERT(cold_chunk_term("g00003/x-tffffffffffffffff") == ~(uint64_t)0);
  ASSERT(cold_chunk_term("g00003/x-t0000000000000009.tmp") == 9); /* (a
      folder store's upload in flight carries its chunk's term) */
  ASSERT(buf_reserve(&obj, COLD_HEADER) == URSULA_OK);
  obj.len = COLD_HEADER;
  ASSERT(buf_append(&obj, "hello", 5) == URSULA_OK);
  cold_chunk_seal(&obj, 42, 100);
  ASSERT(memcmp(obj.ptr, "URSCOLD1", 8) == 0);
  ASSERT((unsigned char)obj.ptr[8] == 42 && obj.ptr[16] == 100 &&
         obj.ptr[24] == 105); /* little-endian fields */
  ASSERT(cold_chunk_check(&obj, 42, 100, 105) == URSULA_OK);
  ASSERT(cold_chunk_check(&obj, 43, 100, 105) == URSULA_ECORRUPT);
  ASSERT(cold_chunk_check(&obj, 42, 101, 105) == URSULA_ECORRUPT);
  ASSERT(cold_chunk_check(&obj, 42, 100, 106) == URSULA_ECORRUPT);
  obj.ptr[COLD_HEADER + 2] ^= 1; /* a flipped bit in the data */
  ASSERT(cold_chunk_check(&obj, 42, 100, 105) == URSULA_ECORRUPT);
  obj.ptr[COLD_HEADER + 2] ^= 1;
  obj.len--; /* a short object */
  ASSERT(cold_chunk_check(&obj, 42, 100, 105) == URSULA_ECORRUPT);
  buf_free(&obj);
}

static void unit_cold_obj(struct buf *b, const char *data) {
  memset(b, 0, sizeof(*b));
  buf_reserve(b, COLD_HEADER);
  b->len = COLD_HEADER;
  buf_append(b, data, strlen(data));
}

static void test_cold_cache(void) {
  struct cold_cache *k = cold_cache_new(3 * (COLD_HEADER + 4));
  struct buf b;
  const char *p;
  ASSERT(k != NULL);
  if (k == NULL) return;
  unit_cold_obj(&b, "AAAA");
  cold_cache_put(k, "a", &b);
  ASSERT(b.ptr == NULL); /* taken */
  unit_cold_obj(&b, "BBBB");
  cold_cache_put(k, "b", &b);
  unit_cold_obj(&b, "CCCC");
  cold_cache_put(k, "c", &b);
  ASSERT((p = cold_cache_get(k, "a")) != NULL && memcmp(p, "AAAA", 4) == 0);
  unit_cold_obj(&b, "DDDD"); /* over budget: "b" is least recently used */
  cold_cache_put(k, "d", &b);
  ASSERT(cold_cache_get(k, "b") == NULL);
  ASSERT(cold_cache_get(k, "a") != NULL && cold_cache_get(k, "c") != NULL);
  ASSERT((p = cold_cache_get(k, "d")) != NULL && memcmp(p, "DDDD", 4) == 0);
  unit_cold_obj(&b, "a chunk larger than the whole budget of the cache");
  cold_cache_put(k, "big", &b); /* stays, alone */
  ASSERT(cold_cache_get(k, "big") != NULL && cold_cache_get(k, "d") == NULL);
  cold_cache_free(k);
}

/* ------------------------------------------------------------ the folder
** cold_open() with a --cold-dir and an env whose file-system table
** counts the calls: PUT, GET, LIST and DELETE through cold_submit(), each
** result delivered on a turn of the reply loop (from a cold thread, or,
** without threads, posted by cold_submit() itself). */

static int unit_cold_n_mkdir, unit_cold_n_size, unit_cold_n_list,
    unit_cold_n_rmdir;
static struct os_fs unit_cold_real_fs;

static int unit_cold_fs_mkdir(const char *path, int mode) {
  unit_cold_n_mkdir++;
  return unit_cold_real_fs.mkdir(path, mode);
}
static int unit_cold_fs_size(int fd, uint64_t *out) {
  unit_cold_n_size++;
  return unit_cold_real_fs.size(fd, out);
}
static int unit_cold_fs_list(const char *dir,
                             int (*fn)(void *arg, const char *name),
                             void *arg) {
  unit_cold_n_list++;
  return unit_cold_real_fs.list(dir, fn, arg);
}
static int unit_cold_fs_rmdir(const char *path) {
  unit_cold_n_rmdir++;
  return unit_cold_real_fs.rmdir(path);
}

struct unit_cold_done {
  int n;
  int rc;
  struct buf data;
};
static struct unit_cold_done unit_cold_done;

static void unit_cold_on_done(struct loop *l, struct loop_msg *m) {
  struct cold_req *r = (struct cold_req *)(void *)m;
  (void)l;
  unit_cold_done.n++;
  unit_cold_done.rc = r->rc;
  buf_free(&unit_cold_done.data);
  unit_cold_done.data = r->data;
  memset(&r->data, 0, sizeof(r->data));
  cold_req_free(r);
}

/* The owner the folder tests claim their stores for: a cluster's. */
static const struct cold_owner unit_cold_me = {"unit", 4, "", 0, 0};

/* Submit a request and turn the loop until its result is back. */
static int unit_cold_run(struct cold *c, struct loop *l, int op,
                         const char *name, const struct buf *data) {
  struct cold_req *r = cold_req_new(op, l, unit_cold_on_done);
  int i;
  ASSERT(r != NULL);
  if (r == NULL) return URSULA_ENOMEM;
  snprintf(r->name, sizeof(r->name), "%s", name);
  if (data != NULL) buf_append(&r->data, data->ptr, data->len);
  unit_cold_done.n = 0;
  cold_submit(c, r);
  ASSERT(unit_cold_done.n == 0); /* results come on a loop turn */
  for (i = 0; i < 200 && unit_cold_done.n == 0; i++)
    ASSERT(loop_run_once(l, 50, NULL) == URSULA_OK);
  ASSERT(unit_cold_done.n == 1);
  return unit_cold_done.rc;
}

static void test_cold_folder(void) {
  struct ursula_config cfg;
  struct env env;
  struct os_fs fs;
  struct loop *l = NULL;
  struct cold *c = NULL;
  struct buf obj;
  char err[URSULA_ERRMSG_LEN], name[COLD_NAME_MAX], cmd[URSULA_PATH_LEN + 16];
  int rc;
  unit_cold_real_fs = *os_fs();
  fs = unit_cold_real_fs;
  fs.mkdir = unit_cold_fs_mkdir;
  fs.size = unit_cold_fs_size;
  fs.list = unit_cold_fs_list;
  fs.rmdir = unit_cold_fs_rmdir;
  env = *env_real();
  env.fs = &fs;
  unit_cold_n_mkdir = unit_cold_n_size = unit_cold_n_list = 0;
  unit_cold_n_rmdir = 0;
  memset(&unit_cold_done, 0, sizeof(unit_cold_done));
  memset(&obj, 0, sizeof(obj));
  ursula_config_init(&cfg);
  snprintf(cfg.cold_dir, sizeof(cfg.cold_dir), "/tmp/ursula-unit-cold-%ld",
           (long)getpid());
  err[0] = '\0';
  ASSERT(loop_open(&l, 0, NULL, err) == URSULA_OK);
  rc = cold_open(&c, &cfg, &env, err);
  if (rc != URSULA_OK) printf("# cold_open: %s\n", err);
  ASSERT(rc == URSULA_OK);
  if (l == NULL || c == NULL) goto done;
  ASSERT(unit_cold_n_mkdir == 1); /* the folder itself */
  ASSERT(cold_claim(c, &unit_cold_me, err) == URSULA_OK);
  unit_cold_n_mkdir = unit_cold_n_size = 0;
  cold_chunk_name(name, 3, 42, 0, 5, 1);
  buf_reserve(&obj, COLD_HEADER + 5);
  obj.len = COLD_HEADER;
  buf_append(&obj, "hello", 5);
  cold_chunk_seal(&obj, 42, 0);
  ASSERT(unit_cold_run(c, l, COLD_PUT, name, &obj) == URSULA_OK);
  ASSERT(unit_cold_n_mkdir >= 3); /* g00003/, its stream's folder */
  ASSERT(unit_cold_run(c, l, COLD_GET, name, NULL) == URSULA_OK);
  ASSERT(unit_cold_done.data.len == obj.len &&
         memcmp(unit_cold_done.data.ptr, obj.ptr, obj.len) == 0);
  ASSERT(cold_chunk_check(&unit_cold_done.data, 42, 0, 5) == URSULA_OK);
  ASSERT(unit_cold_n_size == 1);
  ASSERT(unit_cold_run(c, l, COLD_GET, "g00003/nothing", NULL) ==
         URSULA_ENOTFOUND);
  ASSERT(unit_cold_run(c, l, COLD_LIST, "g00003/", NULL) == URSULA_OK);
  ASSERT(unit_cold_done.data.len == strlen(name) + 1 &&
         strcmp(unit_cold_done.data.ptr, name) == 0);
  ASSERT(unit_cold_n_list == 2); /* the group's folder, the stream's */
  ASSERT(unit_cold_run(c, l, COLD_LIST, "g00004/", NULL) == URSULA_OK);
  ASSERT(unit_cold_done.data.len == 0); /* no folder yet: nothing */
  ASSERT(unit_cold_run(c, l, COLD_DELETE, name, NULL) == URSULA_OK);
  ASSERT(unit_cold_n_rmdir == 1); /* the stream's folder, now empty */
  ASSERT(unit_cold_run(c, l, COLD_DELETE, name, NULL) == URSULA_OK);
  ASSERT(unit_cold_run(c, l, COLD_LIST, "g00003/", NULL) == URSULA_OK);
  ASSERT(unit_cold_done.data.len == 0);
done:
  cold_close(c);
  loop_close(l);
  buf_free(&obj);
  buf_free(&unit_cold_done.data);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", cfg.cold_dir);
  ASSERT(system(cmd) == 0);
}

/* ------------------------------------------------------------ forks
** A fork's cold tier holds its own bytes only: chunks start at its fork
** point (the bytes below are its source's, moved, if at all, by the
** source's tier). */

static struct cmd unit_tier_cmd;
static char unit_tier_obj[COLD_NAME_MAX];
static int unit_tier_proposed;

/* The tier's lead_term in these cases: the term in which this node leads
** (and has applied an entry of), 0 if it does not. */
static uint64_t unit_tier_term = 1;
static uint64_t unit_tier_lead_term(const struct group *g) {
  (void)g;
  return unit_tier_term;
}

/* The tier's propose: keep the COLD command, answer it as refused. */

static void unit_tier_propose(struct core *c, struct group *g,
                              const struct cmd *cmd,
                              void (*done)(struct core *c, struct group *g,
                                           const struct stream_result *r,
                                           void *arg),
                              void *arg) {
  struct stream_result res;
  unit_tier_cmd = *cmd;
  snprintf(unit_tier_obj, sizeof(unit_tier_obj), "%.*s", (int)cmd->object.len,
           cmd->object.ptr);
  unit_tier_cmd.object = util_str(unit_tier_obj);
  unit_tier_cmd.path = util_str("/f");
  unit_tier_proposed++;
  memset(&res, 0, sizeof(res));
  res.status = 503;
  res.refused = 1;
  done(c, g, &res, arg);
}

/* Group id's tier over st, on core (whose loop is l), with the propose
** and lead_term above and the store cold. */
static void unit_tier_setup(struct tier *t, struct core *core, struct loop *l,
                            struct stream_state *st, struct cold *cold,
                            int id) {
  memset(core, 0, sizeof(*core));
  core->loop = l;
  loop_set_user(l, core);
  memset(t, 0, sizeof(*t));
  t->id = id;
  t->env = env_real();
  t->sm = st;
  t->propose = unit_tier_propose;
  t->lead_term = unit_tier_lead_term;
  tier_attach(t, cold, NULL, 0, 1 << 20);
}

static void test_cold_fork(void) {
  struct ursula_config cfg;
  struct stream_state st;
  struct stream_result r;
  struct stream *f;
  struct loop *l = NULL;
  struct cold *cold = NULL;
  struct core core;
  struct tier t;
  struct buf out;
  struct cmd c;
  char err[URSULA_ERRMSG_LEN], sh[URSULA_PATH_LEN + 16];
  const char *own[2] = {"ab", "cdef"};
  int i;
  memset(&r, 0, sizeof(r));
  memset(&out, 0, sizeof(out));
  memset(&unit_cold_done, 0, sizeof(unit_cold_done));
  stream_state_init(&st);
  st.read_chunk = unit_cold_read_chunk;
  unit_stream_index = 3;
  /* /f forks a source at 6: its own appends "ab" and "cdef" (6 to 12) */
  c = unit_cmd(CMD_CREATE, "/f", 1000);
  c.flags = CMD_F_FORK;
  c.fork_source = util_str("/src");
  c.fork_offset = c.fork_base = 6;
  c.fork_inc = 1;
  ASSERT(unit_apply(&st, &c, &r) == 201 && r.tail == 6);
  for (i = 0; i < 2; i++) {
    c = unit_cmd(CMD_APPEND, "/f", 1000);
    c.data = util_str(own[i]);
    ASSERT(unit_apply(&st, &c, &r) == 204);
  }
  unit_stream_index = 0;
  f = stream_find(&st, util_str("/f"));
  ASSERT(f != NULL && f->tail == 12 && f->cold_end == 6);
  if (f == NULL) return;
  /* a run from 0 is none of its own: stale */
  c = unit_cold_cmd("/f", f->incarnation, 0, 8, "from-0");
  ASSERT(unit_apply(&st, &c, &r) == 409 && f->cold_end == 6);
  /* the tier uploads a run from the fork point: its own bytes */
  ursula_config_init(&cfg);
  snprintf(cfg.cold_dir, sizeof(cfg.cold_dir), "/tmp/ursula-unit-coldf-%ld",
           (long)getpid());
  ASSERT(loop_open(&l, 0, NULL, err) == URSULA_OK);
  ASSERT(cold_open(&cold, &cfg, NULL, err) == URSULA_OK);
  if (l == NULL || cold == NULL) goto done;
  ASSERT(cold_claim(cold, &unit_cold_me, err) == URSULA_OK);
  unit_tier_setup(&t, &core, l, &st, cold, 3);
  t.swept = 1; /* (its sweep ran in term 1) */
  unit_tier_term = 1;
  unit_tier_proposed = 0;
  tier_upload(&core, &t, f, 1);
  for (i = 0; i < 200 && unit_tier_proposed == 0; i++)
    ASSERT(loop_run_once(l, 50, NULL) == URSULA_OK);
  ASSERT(unit_tier_proposed == 1);
  ASSERT(unit_tier_cmd.type == CMD_COLD && unit_tier_cmd.cold_start == 6 &&
         unit_tier_cmd.cold_end == 12 &&
         unit_tier_cmd.incarnation == f->incarnation);
  /* the object holds exactly the own bytes, sealed for [6, 12) */
  ASSERT(unit_cold_run(cold, l, COLD_GET, unit_tier_obj, NULL) == URSULA_OK);
  ASSERT(cold_chunk_check(&unit_cold_done.data, f->incarnation, 6, 12) ==
         URSULA_OK);
  ASSERT(unit_cold_done.data.len == COLD_HEADER + 6 &&
         memcmp(unit_cold_done.data.ptr + COLD_HEADER, "abcdef", 6) == 0);
  /* committed: the fork reads its own bytes from the chunk */
  ASSERT(unit_apply(&st, &unit_tier_cmd, &r) == 204);
  ASSERT(f->cold_end == 12 && f->cold_units == 2 && f->n_chunks == 1 &&
         f->chunks[0].start == 6 && f->local.data.len == 0);
  unit_cold_name = unit_tier_obj;
  unit_cold_data = "abcdef";
  ASSERT(stream_read(&st, f, 7, 12, &out) == URSULA_OK);
  ASSERT_MEM(out.ptr, out.len, "bcdef");
  unit_cold_name = NULL;
  ASSERT(stream_read(&st, f, 0, 12, &out) == URSULA_EINVAL);
done:
  cold_close(cold);
  loop_close(l);
  buf_free(&out);
  buf_free(&unit_cold_done.data);
  buf_free(&r.garbage);
  buf_free(&r.releases);
  stream_state_free(&st);
  snprintf(sh, sizeof(sh), "rm -rf %s", cfg.cold_dir);
  ASSERT(system(sh) == 0);
}

/* ------------------------------------------------------------ terms
** The rules of tier.c, WHO ACTS, each where a race could break it:
**   1. an upload's chunk is named (its COLD command proposed) only if the
**      node still leads in the upload's term when it ends: deposed
**      meanwhile, or leading again in a later term, it stays unnamed;
**   2. a sweep of term T deletes an unnamed object only if its name's
**      term is below T, also when its LIST comes back after the node
**      stopped leading (a late sweep). */

static int unit_tier_file(const char *dir, const char *name) {
  char path[URSULA_PATH_LEN + COLD_NAME_MAX + 8];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  return access(path, F_OK) == 0;
}

static void unit_tier_orphan(const char *dir, const char *name) {
  char cmd[URSULA_PATH_LEN + 2 * COLD_NAME_MAX + 64];
  snprintf(cmd, sizeof(cmd), "mkdir -p $(dirname %s/%s) && echo x > %s/%s",
           dir, name, dir, name);
  ASSERT(system(cmd) == 0);
}

/* Turn l until the tier has no upload, listing or delete in flight. */
static void unit_tier_settle(struct loop *l, const struct tier *t) {
  int i;
  for (i = 0; i < 200 && (t->n_uploads > 0 || t->listing || t->n_deletes > 0);
       i++)
    ASSERT(loop_run_once(l, 50, NULL) == URSULA_OK);
  ASSERT(t->n_uploads == 0 && !t->listing && t->n_deletes == 0);
}

static void test_tier_terms(void) {
  struct ursula_config cfg;
  struct stream_state st;
  struct stream_result r;
  struct stream *s;
  struct loop *l = NULL;
  struct cold *cold = NULL;
  struct core core;
  struct tier t;
  struct cmd c;
  char err[URSULA_ERRMSG_LEN], sh[URSULA_PATH_LEN + 16], x[COLD_NAME_MAX];
  char o4[COLD_NAME_MAX], o6[COLD_NAME_MAX], o7[COLD_NAME_MAX],
      o8[COLD_NAME_MAX];
  memset(&r, 0, sizeof(r));
  stream_state_init(&st);
  st.read_chunk = unit_cold_read_chunk;
  unit_stream_index = 3; /* (in a log, as a group's are) */
  c = unit_cmd(CMD_CREATE, "/s", 1000);
  ASSERT(unit_apply(&st, &c, &r) == 201);
  c = unit_cmd(CMD_APPEND, "/s", 1000);
  c.data = util_str("hello");
  ASSERT(unit_apply(&st, &c, &r) == 204);
  unit_stream_index = 0;
  s = stream_find(&st, util_str("/s"));
  ASSERT(s != NULL);
  if (s == NULL) return;
  ursula_config_init(&cfg);
  snprintf(cfg.cold_dir, sizeof(cfg.cold_dir), "/tmp/ursula-unit-tiert-%ld",
           (long)getpid());
  ASSERT(loop_open(&l, 0, NULL, err) == URSULA_OK);
  ASSERT(cold_open(&cold, &cfg, NULL, err) == URSULA_OK);
  if (l == NULL || cold == NULL) goto done;
  ASSERT(cold_claim(cold, &unit_cold_me, err) == URSULA_OK);
  unit_tier_setup(&t, &core, l, &st, cold, 2);
  cold_chunk_name(x, 2, s->incarnation, 0, 5, 5); /* the run's, term 5 */
  /* rule 1: uploaded in term 5, deposed before it ends: unnamed */
  unit_tier_term = t.swept = 5;
  unit_tier_proposed = 0;
  tier_upload(&core, &t, s, 5);
  unit_tier_term = 0;
  unit_tier_settle(l, &t);
  ASSERT(unit_tier_proposed == 0);
  ASSERT(unit_tier_file(cfg.cold_dir, x)); /* there, for a sweep */
  ASSERT(!s->local.flushing);              /* and the run may go again */
  /* ... leading again, but in term 6, when it ends: unnamed */
  unit_tier_term = 5;
  tier_upload(&core, &t, s, 5);
  unit_tier_term = 6;
  unit_tier_settle(l, &t);
  ASSERT(unit_tier_proposed == 0);
  /* ... still leading in 5: named, by a command of its term's object */
  unit_tier_term = 5;
  tier_upload(&core, &t, s, 5);
  unit_tier_settle(l, &t);
  ASSERT(unit_tier_proposed == 1 && strcmp(unit_tier_obj, x) == 0);
  unit_tier_cmd.path = util_str("/s");
  ASSERT(unit_apply(&st, &unit_tier_cmd, &r) == 204);
  ASSERT(s->n_chunks == 1 && strcmp(s->chunks[0].name, x) == 0);
  /* rule 2: unnamed objects of terms 4, 6, 7 and 8; a sweep of term 7
  ** whose LIST comes back after the node stopped leading */
  cold_chunk_name(o4, 2, 90, 0, 1, 4);
  cold_chunk_name(o6, 2, 91, 0, 1, 6);
  cold_chunk_name(o7, 2, 92, 0, 1, 7);
  cold_chunk_name(o8, 2, 93, 0, 1, 8);
  unit_tier_orphan(cfg.cold_dir, o4);
  unit_tier_orphan(cfg.cold_dir, o6);
  unit_tier_orphan(cfg.cold_dir, o7);
  unit_tier_orphan(cfg.cold_dir, o8);
  unit_tier_term = 7;
  tier_sweep(&core, &t, 7);
  unit_tier_term = 0;
  unit_tier_settle(l, &t); /* the listing, then every delete it made */
  ASSERT(!unit_tier_file(cfg.cold_dir, o4)); /* unnamed, below 7: gone */
  ASSERT(!unit_tier_file(cfg.cold_dir, o6));
  ASSERT(unit_tier_file(cfg.cold_dir, x));  /* named: kept */
  ASSERT(unit_tier_file(cfg.cold_dir, o7)); /* its own term's: kept */
  ASSERT(unit_tier_file(cfg.cold_dir, o8)); /* a newer leader's: kept */
  ASSERT(t.swept == 7);
done:
  unit_tier_term = 1;
  cold_close(cold);
  loop_close(l);
  buf_free(&unit_cold_done.data);
  buf_free(&r.garbage);
  buf_free(&r.releases);
  stream_state_free(&st);
  snprintf(sh, sizeof(sh), "rm -rf %s", cfg.cold_dir);
  ASSERT(system(sh) == 0);
}

/* ------------------------------------------------------------ marker
** The store's marker (cold.c, THE STORE'S MARKER): the bytes written,
** and each row of cold_claim()'s table. */

/* Write text as the marker of folder dir. */
static void unit_cold_mark_put(const char *dir, const char *text) {
  char path[256];
  FILE *f;
  snprintf(path, sizeof(path), "%s/ursula-store", dir);
  f = fopen(path, "w");
  ASSERT(f != NULL);
  if (f == NULL) return;
  fputs(text, f);
  fclose(f);
}

/* The marker of folder dir into out (cap bytes), "" if there is none. */
static void unit_cold_mark_get(const char *dir, char *out, size_t cap) {
  char path[256];
  size_t n = 0;
  FILE *f;
  snprintf(path, sizeof(path), "%s/ursula-store", dir);
  out[0] = '\0';
  if ((f = fopen(path, "r")) == NULL) return;
  n = fread(out, 1, cap - 1, f);
  out[n] = '\0';
  fclose(f);
}

static void test_cold_marker(void) {
  struct ursula_config cfg;
  struct cold *c = NULL;
  struct cold_owner a, b;
  struct loop *l = NULL;
  char err[URSULA_ERRMSG_LEN], have[256], cmd[1100], name[COLD_NAME_MAX];
  struct buf obj;
  const char *id_a = "0123456789abcdef0123456789abcdef";
  const char *id_b = "fedcba9876543210fedcba9876543210";
  ursula_config_init(&cfg);
  snprintf(cfg.cold_dir, sizeof(cfg.cold_dir), "/tmp/ursula-unit-mark-%ld",
           (long)getpid());
  ASSERT(cold_open(&c, &cfg, NULL, err) == URSULA_OK);
  if (c == NULL) return;
  memset(&a, 0, sizeof(a));
  snprintf(a.cluster_id, sizeof(a.cluster_id), "ursula");
  a.groups = 64;
  memcpy(a.node, id_a, 33);
  a.claimed_before = 0;
  /* no marker: written, its bytes the format's */
  ASSERT(cold_claim(c, &a, err) == URSULA_OK);
  unit_cold_mark_get(cfg.cold_dir, have, sizeof(have));
  ASSERT(strcmp(have, "ursula-store 1\ncluster-id ursula\ngroups 64\n"
                      "node 0123456789abcdef0123456789abcdef\n") == 0);
  /* ours: again, and after a restart (the id no longer new) */
  ASSERT(cold_claim(c, &a, err) == URSULA_OK);
  a.claimed_before = 1;
  a.chunks = 7;
  ASSERT(cold_claim(c, &a, err) == URSULA_OK);
  /* another single node, same settings: refused, its id named */
  b = a;
  memcpy(b.node, id_b, 33);
  b.claimed_before = 0;
  b.chunks = 0;
  ASSERT(cold_claim(c, &b, err) == URSULA_EINVAL);
  ASSERT(strstr(err, id_a) != NULL && strstr(err, id_b) != NULL);
  /* a cluster with the single node's cluster-id and groups: refused */
  b.node[0] = '\0';
  ASSERT(cold_claim(c, &b, err) == URSULA_EINVAL);
  /* the same node with another group count or cluster-id: refused */
  b = a;
  b.groups = 16;
  ASSERT(cold_claim(c, &b, err) == URSULA_EINVAL);
  b = a;
  snprintf(b.cluster_id, sizeof(b.cluster_id), "other");
  ASSERT(cold_claim(c, &b, err) == URSULA_EINVAL);
  /* a reader ignores keys it does not know */
  unit_cold_mark_put(cfg.cold_dir,
                     "ursula-store 1\ncluster-id ursula\ngroups 64\nnode "
                     "0123456789abcdef0123456789abcdef\nzone eu\n");
  ASSERT(cold_claim(c, &a, err) == URSULA_OK);
  /* not a marker: no format line, a newer format, a cut line, no groups */
  unit_cold_mark_put(cfg.cold_dir, "hello\n");
  ASSERT(cold_claim(c, &a, err) == URSULA_EINVAL);
  unit_cold_mark_put(cfg.cold_dir,
                     "ursula-store 2\ncluster-id ursula\ngroups 64\n");
  ASSERT(cold_claim(c, &a, err) == URSULA_EINVAL);
  unit_cold_mark_put(cfg.cold_dir, "ursula-store 1\ncluster-id ursula\ngro");
  ASSERT(cold_claim(c, &a, err) == URSULA_EINVAL);
  unit_cold_mark_put(cfg.cold_dir, "ursula-store 1\ncluster-id ursula\n");
  ASSERT(cold_claim(c, &a, err) == URSULA_EINVAL);
  /* gone, while the WAL names chunks and records a claim: refused */
  snprintf(cmd, sizeof(cmd), "%s/ursula-store", cfg.cold_dir);
  ASSERT(unlink(cmd) == 0);
  ASSERT(cold_claim(c, &a, err) == URSULA_EINVAL);
  ASSERT(strstr(err, "no marker") != NULL);
  unit_cold_mark_get(cfg.cold_dir, have, sizeof(have));
  ASSERT(have[0] == '\0'); /* and nothing written */
  /* gone, the WAL naming no chunks, or with no claim recorded (an upgrade,
  ** or the first claim never got through): written */
  a.chunks = 0;
  ASSERT(cold_claim(c, &a, err) == URSULA_OK);
  ASSERT(unlink(cmd) == 0);
  a.chunks = 7;
  a.claimed_before = 0;
  ASSERT(cold_claim(c, &a, err) == URSULA_OK);
  /* refused: nothing but reads reaches the store */
  b = a;
  memcpy(b.node, id_b, 33);
  ASSERT(cold_claim(c, &b, err) == URSULA_EINVAL);
  ASSERT(loop_open(&l, 0, NULL, err) == URSULA_OK);
  memset(&obj, 0, sizeof(obj));
  memset(&unit_cold_done, 0, sizeof(unit_cold_done));
  buf_append(&obj, "x", 1);
  cold_chunk_name(name, 1, 1, 0, 1, 1);
  if (l != NULL) {
    ASSERT(unit_cold_run(c, l, COLD_PUT, name, &obj) == URSULA_EINVAL);
    ASSERT(unit_cold_run(c, l, COLD_LIST, "g00001/", NULL) == URSULA_EINVAL);
    ASSERT(unit_cold_run(c, l, COLD_GET, name, NULL) == URSULA_ENOTFOUND);
  }
  cold_close(c);
  loop_close(l);
  buf_free(&obj);
  buf_free(&unit_cold_done.data);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", cfg.cold_dir);
  ASSERT(system(cmd) == 0);
}

static const struct unit_case unit_cold_cases[] = {
    {"cold_cmd_roundtrip", test_cold_cmd_roundtrip},
    {"cold_apply_and_read", test_cold_apply_and_read},
    {"cold_snapshot", test_cold_snapshot},
    {"cold_chunk_format", test_cold_chunk_format},
    {"cold_cache", test_cold_cache},
    {"cold_folder", test_cold_folder},
    {"cold_fork", test_cold_fork},
    {"tier_terms", test_tier_terms},
    {"cold_marker", test_cold_marker},
    {NULL, NULL},
};
