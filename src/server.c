/*
** server.c -- the server object: cores, groups, startup and shutdown.
**
** THREADING.  There are core_count cores; each is one thread running one
** event loop (loop.c).  Every core accepts connections on the shared
** listening socket and serves them to the end.  Stream state is split into
** raft_group_count groups; group g is owned by core g % core_count, and
** only that core's thread touches it.  Cores talk only by messages:
**
**     core A (connection)                core B (owns the stream's group)
**       parse request -> job  --mailbox-->  propose / apply / read
**       write response       <--mailbox--  job with its result
**
** A message to the core itself skips the mailbox: it is queued locally and
** run at the end of the current loop turn.  No lock is taken on the
** request path other than the mailbox's queue lock.
**
** SHUTDOWN.  ursula_server_stop() raises a flag and wakes every loop.  Each
** core then stops accepting, closes idle connections, ends live readers
** and finishes requests in flight (api_drain).  A core with no connections
** left counts itself drained, but keeps serving messages for the groups it
** owns until every core is drained; then all loops stop.
*/
#include "internal.h"

URSULA_PRIVATE int server_group_of(const struct ursula_server *s,
                                   const char *path, size_t len) {
  return (int)(util_hash64(path, len) % (uint64_t)s->n_groups);
}

URSULA_PRIVATE struct group *server_group(const struct ursula_server *s,
                                          int gid) {
  return s->groups[gid];
}

URSULA_PRIVATE int server_owner_of(const struct ursula_server *s, int gid) {
  return gid % s->n_cores;
}

URSULA_PRIVATE void server_send(struct core *from, int to,
                                struct loop_msg *m) {
  m->next = NULL;
  if (from->id == to) {
    if (from->local_tail)
      from->local_tail->next = m;
    else
      from->local_head = m;
    from->local_tail = m;
  } else {
    loop_post(from->srv->cores[to].loop, m);
  }
}

static void server_check_drained(struct core *c) {
  struct ursula_server *s = c->srv;
  int i, all;
  if (!c->draining || c->drained || c->n_conns > 0) return;
  c->drained = 1;
  pthread_mutex_lock(&s->mu);
  all = ++s->n_drained == s->n_cores;
  pthread_mutex_unlock(&s->mu);
  if (all) {
    for (i = 0; i < s->n_cores; i++) loop_stop(s->cores[i].loop);
  }
}

/* End of every loop turn: run same-core messages, notice a stop. */
static void server_on_turn_end(struct loop *l) {
  struct core *c = (struct core *)loop_get_user(l);
  while (c->local_head != NULL) {
    struct loop_msg *m = c->local_head;
    c->local_head = m->next;
    if (c->local_head == NULL) c->local_tail = NULL;
    m->next = NULL;
    m->on_msg(l, m);
  }
  if (c->srv->stop_requested && !c->draining) {
    c->draining = 1;
    if (c->listening) {
      loop_del(l, c->srv->listen_fd);
      c->listening = 0;
    }
    api_drain(c);
    while (c->local_head != NULL) { /* what draining queued */
      struct loop_msg *m = c->local_head;
      c->local_head = m->next;
      if (c->local_head == NULL) c->local_tail = NULL;
      m->on_msg(l, m);
    }
  }
  server_check_drained(c);
}

static void server_on_sweep(struct loop *l, void *arg) {
  struct core *c = (struct core *)arg;
  struct ursula_server *s = c->srv;
  int g;
  for (g = c->id; g < s->n_groups; g += s->n_cores) group_sweep(c, s->groups[g]);
  loop_timer_set(l, &c->sweep_timer, loop_now_ms(l) + 1000, server_on_sweep, c);
}

static void *server_core_main(void *arg) {
  struct core *c = (struct core *)arg;
  c->rc = loop_run(c->loop, server_on_turn_end);
  return NULL;
}

static void server_free(struct ursula_server *s) {
  int i;
  if (s->cores != NULL) {
    for (i = 0; i < s->n_cores; i++) {
      struct core *c = &s->cores[i];
      if (c->loop == NULL) continue;
      api_core_free(c);
      loop_close(c->loop);
    }
    URSULA_FREE(s->cores);
  }
  if (s->groups != NULL) {
    for (i = 0; i < s->n_groups; i++) group_free(s->groups[i]);
    URSULA_FREE(s->groups);
  }
  if (s->listen_fd >= 0) close(s->listen_fd);
  pthread_mutex_destroy(&s->mu);
  URSULA_FREE(s);
}

URSULA_API int ursula_server_start(const struct ursula_config *cfg,
                                   struct ursula_server **out, char *err) {
  struct ursula_server *s;
  int i, rc = URSULA_OK;
  char tmp[URSULA_ERRMSG_LEN];
  if (err == NULL) err = tmp;
  err[0] = '\0';
  s = (struct ursula_server *)URSULA_MALLOC(sizeof(*s));
  if (s == NULL) return URSULA_ENOMEM;
  memset(s, 0, sizeof(*s));
  s->cfg = *cfg;
  s->listen_fd = -1;
  pthread_mutex_init(&s->mu, NULL);
  log_set_level(cfg->log_level);
  s->n_cores = cfg->core_count > 0 ? cfg->core_count : os_cpu_count();
#if !URSULA_ENABLE_THREADS
  s->n_cores = 1;
#endif
  if (s->n_cores > URSULA_MAX_CORES) s->n_cores = URSULA_MAX_CORES;
  s->n_groups = cfg->raft_group_count > 0 ? cfg->raft_group_count : 1;
  if (s->n_groups > URSULA_MAX_GROUPS) s->n_groups = URSULA_MAX_GROUPS;
  s->groups = (struct group **)URSULA_MALLOC(sizeof(*s->groups) * (size_t)s->n_groups);
  s->cores = (struct core *)URSULA_MALLOC(sizeof(*s->cores) * (size_t)s->n_cores);
  if (s->groups == NULL || s->cores == NULL) {
    rc = URSULA_ENOMEM;
    goto fail;
  }
  memset(s->groups, 0, sizeof(*s->groups) * (size_t)s->n_groups);
  memset(s->cores, 0, sizeof(*s->cores) * (size_t)s->n_cores);
  for (i = 0; i < s->n_groups; i++) {
    if ((s->groups[i] = group_new(i, i % s->n_cores)) == NULL) {
      rc = URSULA_ENOMEM;
      goto fail;
    }
  }
  s->listen_fd = net_listen(cfg->listen_host, cfg->listen_port, &s->port, err);
  if (s->listen_fd < 0) {
    rc = URSULA_ESYS;
    goto fail;
  }
  for (i = 0; i < s->n_cores; i++) {
    struct core *c = &s->cores[i];
    c->id = i;
    c->srv = s;
    c->max_conns = (cfg->max_connections + s->n_cores - 1) / s->n_cores;
    if ((rc = loop_open(&c->loop, i, err)) != URSULA_OK) goto fail;
    loop_set_user(c->loop, c);
    if ((rc = loop_add(c->loop, s->listen_fd, LOOP_READ, api_on_accept, c)) !=
        URSULA_OK)
      goto fail;
    c->listening = 1;
    loop_timer_set(c->loop, &c->sweep_timer, os_now_ms() + 1000,
                   server_on_sweep, c);
  }
#if URSULA_ENABLE_THREADS
  for (i = 0; i < s->n_cores; i++) {
    if (pthread_create(&s->cores[i].thread, NULL, server_core_main,
                       &s->cores[i]) != 0) {
      snprintf(err, URSULA_ERRMSG_LEN, "pthread_create: %s", strerror(errno));
      s->stop_requested = 1;
      while (--i >= 0) {
        loop_stop(s->cores[i].loop);
        pthread_join(s->cores[i].thread, NULL);
      }
      rc = URSULA_ESYS;
      goto fail;
    }
  }
#endif
  s->running = 1;
  LOG_I("listening on http://%s:%d (cores %d, groups %d, in memory)",
        cfg->listen_host, s->port, s->n_cores, s->n_groups);
  *out = s;
  return URSULA_OK;
fail:
  if (err[0] == '\0') snprintf(err, URSULA_ERRMSG_LEN, "%s", ursula_strerror(rc));
  server_free(s);
  return rc;
}

URSULA_API int ursula_server_port(const struct ursula_server *srv) {
  return srv->port;
}

URSULA_API void ursula_server_stop(struct ursula_server *srv) {
  int i;
  srv->stop_requested = 1;
  for (i = 0; i < srv->n_cores; i++) loop_wake(srv->cores[i].loop);
}

URSULA_API int ursula_server_wait(struct ursula_server *srv) {
  int i, rc = URSULA_OK;
#if URSULA_ENABLE_THREADS
  for (i = 0; i < srv->n_cores; i++) pthread_join(srv->cores[i].thread, NULL);
#else
  server_core_main(&srv->cores[0]);
#endif
  for (i = 0; i < srv->n_cores; i++) {
    if (srv->cores[i].rc != URSULA_OK && rc == URSULA_OK) rc = srv->cores[i].rc;
  }
  LOG_I("stopped");
  server_free(srv);
  return rc;
}
