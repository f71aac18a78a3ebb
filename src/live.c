/*
** live.c -- the live readers of one core, by stream path, and the fan-out
** of the wake-ups that streams' owners send them.
**
** A long-poll or SSE reader that reached the tail waits in its core's
** live table (struct live_table): one struct live_watch per stream path
** with readers here, and the readers waiting on it (struct live_waiter,
** embedded in the protocol layer's connection).  The owner of the
** stream's group wakes the core with one struct notify per change,
** carrying the new bytes (group.c sets live_on_notify as the message's
** handler), and live_on_notify() sorts every waiter of that path:
**
**   LIVE_DATA     it is where the new bytes start: serve it from this one
**                 message (it stays waiting; the handler lets it go)
**   LIVE_BEHIND   it is anywhere else short of the new tail: it left the
**                 wait list and must read again from where it is
**   LIVE_DELETED  the stream is gone: it left the watch
**
** and hands each to the table's on_wake hook (the protocol layer's).
** A waiter already at the new tail is left alone.  A core that gets a
** wake-up for a path it no longer watches tells the owner to stop (lazy
** unwatch), so the owner's list of interested cores is a superset that
** heals itself.
**
** A watch lives while it has waiters or reads in flight (`pending`,
** counted by the protocol layer); live_gc() frees it after that.
** Everything here runs on the core's own thread.
*/
#include "internal.h"

static struct live_watch *live_find(struct live_table *t, const char *path,
                                    size_t len, uint64_t h) {
  struct live_watch *w;
  if (t->cap == 0) return NULL;
  for (w = t->slots[h & (t->cap - 1)]; w != NULL; w = w->hnext) {
    if (w->hash == h && w->path_len == len && memcmp(w->path, path, len) == 0)
      return w;
  }
  return NULL;
}

URSULA_PRIVATE void live_table_init(struct live_table *t,
                                    live_wake_fn on_wake) {
  memset(t, 0, sizeof(*t));
  t->on_wake = on_wake;
}

URSULA_PRIVATE struct live_watch *live_get(struct core *c, const char *path,
                                           size_t len) {
  struct live_table *t = &c->live;
  uint64_t h = util_hash64(path, len);
  struct live_watch *w = live_find(t, path, len, h);
  if (w != NULL) return w;
  if (t->n + 1 > t->cap / 2) {
    size_t cap = t->cap ? t->cap * 2 : 64, i;
    struct live_watch **s =
        (struct live_watch **)URSULA_MALLOC(cap * sizeof(*s));
    if (s == NULL) return NULL;
    for (i = 0; i < cap; i++) s[i] = NULL;
    for (i = 0; i < t->cap; i++) {
      struct live_watch *x, *next;
      for (x = t->slots[i]; x != NULL; x = next) {
        next = x->hnext;
        x->hnext = s[x->hash & (cap - 1)];
        s[x->hash & (cap - 1)] = x;
      }
    }
    URSULA_FREE(t->slots);
    t->slots = s;
    t->cap = cap;
  }
  w = (struct live_watch *)URSULA_MALLOC(sizeof(*w) + len);
  if (w == NULL) return NULL;
  memset(w, 0, sizeof(*w));
  w->hash = h;
  w->path_len = len;
  memcpy(w->path, path, len);
  w->path[len] = '\0';
  w->owner = server_owner_of(c->srv, server_group_of(c->srv, path, len));
  w->hnext = t->slots[h & (t->cap - 1)];
  t->slots[h & (t->cap - 1)] = w;
  t->n++;
  return w;
}

URSULA_PRIVATE void live_gc(struct live_table *t, struct live_watch *w) {
  struct live_watch **pp;
  if (w->waiters != NULL || w->pending > 0) return;
  pp = &t->slots[w->hash & (t->cap - 1)];
  while (*pp != w) pp = &(*pp)->hnext;
  *pp = w->hnext;
  t->n--;
  URSULA_FREE(w);
}

URSULA_PRIVATE void live_unwait(struct live_waiter *x) {
  if (!x->waiting) return;
  if (x->prev)
    x->prev->next = x->next;
  else
    x->watch->waiters = x->next;
  if (x->next) x->next->prev = x->prev;
  x->next = x->prev = NULL;
  x->waiting = 0;
}

URSULA_PRIVATE void live_wait(struct live_waiter *x) {
  struct live_watch *w = x->watch;
  x->prev = NULL;
  x->next = w->waiters;
  if (w->waiters) w->waiters->prev = x;
  w->waiters = x;
  x->waiting = 1;
}

URSULA_PRIVATE void live_leave(struct live_table *t, struct live_waiter *x) {
  if (x->watch == NULL) return;
  live_unwait(x);
  live_gc(t, x->watch);
  x->watch = NULL;
}

/* ------------------------------------------------------------ unwatch */

struct live_unwatch_msg {
  struct loop_msg msg;
  int from;
  size_t len;
  char path[1];
};

static void live_on_unwatch(struct loop *l, struct loop_msg *m) {
  struct live_unwatch_msg *u = (struct live_unwatch_msg *)(void *)m;
  group_unwatch((struct core *)loop_get_user(l), u->from, u->path, u->len);
  URSULA_FREE(u);
}

static void live_send_unwatch(struct core *c, const char *path, size_t len) {
  int owner = server_owner_of(c->srv, server_group_of(c->srv, path, len));
  struct live_unwatch_msg *u =
      (struct live_unwatch_msg *)URSULA_MALLOC(sizeof(*u) + len);
  if (u == NULL) return;
  u->msg.on_msg = live_on_unwatch;
  u->msg.on_drop = NULL;
  u->from = c->id;
  u->len = len;
  memcpy(u->path, path, len);
  u->path[len] = '\0';
  server_send(c, owner, &u->msg);
}

/* ------------------------------------------------------------ fan-out */

URSULA_PRIVATE void live_on_notify(struct loop *l, struct loop_msg *m) {
  struct notify *n = (struct notify *)(void *)m;
  struct core *c = (struct core *)loop_get_user(l);
  struct live_table *t = &c->live;
  struct live_watch *w =
      live_find(t, n->path, n->path_len, util_hash64(n->path, n->path_len));
  struct live_waiter *x, *next;
  if (w == NULL || (w->waiters == NULL && w->pending == 0)) {
    if (!n->deleted) live_send_unwatch(c, n->path, n->path_len);
    if (w != NULL) live_gc(t, w);
    buf_free(&n->data);
    URSULA_FREE(n);
    return;
  }
  for (x = w->waiters; x != NULL; x = next) {
    next = x->next;
    if (n->deleted) {
      live_unwait(x);
      x->watch = NULL;
      t->on_wake(x, LIVE_DELETED, n);
    } else if (x->offset == n->prev_tail && (n->data.len > 0 || n->closed)) {
      t->on_wake(x, LIVE_DATA, n);
    } else if (x->offset != n->tail) {
      /* behind or lost track: read again from where this reader is */
      live_unwait(x);
      t->on_wake(x, LIVE_BEHIND, n);
    }
  }
  live_gc(t, w);
  buf_free(&n->data);
  URSULA_FREE(n);
}

URSULA_PRIVATE void live_table_free(struct live_table *t) {
  size_t k;
  for (k = 0; k < t->cap; k++) {
    struct live_watch *w, *next;
    for (w = t->slots[k]; w != NULL; w = next) {
      next = w->hnext;
      URSULA_FREE(w);
    }
  }
  URSULA_FREE(t->slots);
  memset(t, 0, sizeof(*t));
}
