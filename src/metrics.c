/*
** metrics.c -- the server's counters, and how they are written in the
** Prometheus text exposition format.
**
** COUNTING.  Each core keeps its own struct metrics (in struct core),
** written only by that core's thread with plain additions: counting costs
** the request path an increment, no lock and no shared cache line.  A
** scrape gathers them (group.c, STATUS: a message visits every core,
** each adds its own into the gathering with metrics_merge() on its own
** thread), so the figures of one scrape are each core's at one moment,
** the cores read a few loop turns apart.  Timings read os_now_us(), the
** real monotonic clock, directly: they are observations, never inputs
** to a decision, so no node's behaviour depends on them (a simulated
** node's included).
**
** HISTOGRAMS.  struct metrics_hist counts observations per bucket (not
** cumulative: bucket i counts those above bound i-1 and at most bound i,
** the last bucket those above every bound) with their count and sum.
** The bounds are the writer's (metrics_latency_us[], metrics_batch[]);
** metrics_write_hist() makes them cumulative, as the format wants.
**
** THE FORMAT (the Prometheus text exposition format, version 0.0.4, as
** its documentation "Exposition formats" gives it).  A response is UTF-8
** lines ending in '\n'.  Each metric family is written as one block:
**
**   # HELP <name> <text>        text with '\\' and newline escaped
**   # TYPE <name> <counter|gauge|histogram>
**   <name>{<label>="<value>",...} <value>
**
** label values with '\\', '"' and newline escaped (ours are all fixed
** words and decimal numbers, so none needs it); a histogram's samples
** are <name>_bucket{le="<bound>"} (cumulative, the last le="+Inf",
** equal to <name>_count; the bounds in canonical form,
** metrics_write_bound), <name>_sum and <name>_count.  Names are
** ursula_*, units in the names (_seconds, _bytes), counters end in
** _total.  Values here are integers, or seconds as decimal fractions.
*/
#include "internal.h"

/* The append latency buckets, in microseconds (written as seconds). */
static const uint64_t metrics_latency_us[METRICS_N_BOUNDS] = {
    250,   500,    1000,   2500,   5000,    10000,
    25000, 50000, 100000, 250000, 1000000, 5000000};

/* Batch sizes (groups in one journal sync), as plain counts. */
static const uint64_t metrics_batch[METRICS_N_BOUNDS] = {
    1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128};

/* The statuses counted one by one (the others count as "other"), and the
** methods, in the order of the counters' indexes. */
static const int metrics_codes[METRICS_N_CODES - 1] = {
    200, 201, 204, 206, 304, 400, 401, 403, 404, 405, 408, 409,
    410, 411, 412, 413, 414, 415, 416, 429, 431, 500, 501, 503, 505};
static const char *const metrics_methods[METRICS_N_METHODS] = {
    "GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "other"};
static const char *const metrics_routes[METRICS_N_ROUTES] = {"stream",
                                                             "admin"};

/* ------------------------------------------------------------ counting */

URSULA_PRIVATE int metrics_method(struct str m) {
  int i;
  for (i = 0; i < METRICS_N_METHODS - 1; i++)
    if (util_str_eq(m, metrics_methods[i])) return i;
  return METRICS_N_METHODS - 1;
}

URSULA_PRIVATE void metrics_count_request(struct metrics *m, int method,
                                          int route, int status) {
  int i = 0;
  while (i < METRICS_N_CODES - 1 && metrics_codes[i] != status) i++;
  m->requests[method][route][i]++;
}

/* Add v to h, with the bounds of its kind. */
static void metrics_hist_add(struct metrics_hist *h, const uint64_t *bounds,
                             uint64_t v) {
  int i = 0;
  while (i < METRICS_N_BOUNDS && v > bounds[i]) i++;
  h->buckets[i]++;
  h->count++;
  h->sum += v;
}

URSULA_PRIVATE void metrics_observe_append(struct metrics *m, uint64_t us,
                                           uint64_t bytes) {
  metrics_hist_add(&m->append_us, metrics_latency_us, us);
  m->appends++;
  m->append_bytes += bytes;
}

URSULA_PRIVATE void metrics_observe_sync(struct metrics *m, uint64_t us,
                                         int groups, int failed) {
  metrics_hist_add(&m->sync_us, metrics_latency_us, us);
  if (groups > 0) metrics_hist_add(&m->sync_batch, metrics_batch,
                                   (uint64_t)groups);
  if (failed) m->sync_failures++;
}

static void metrics_hist_merge(struct metrics_hist *to,
                               const struct metrics_hist *h) {
  int i;
  for (i = 0; i <= METRICS_N_BOUNDS; i++) to->buckets[i] += h->buckets[i];
  to->count += h->count;
  to->sum += h->sum;
}

URSULA_PRIVATE void metrics_merge(struct metrics *to,
                                  const struct metrics *m) {
  int a, b, k;
  for (a = 0; a < METRICS_N_METHODS; a++)
    for (b = 0; b < METRICS_N_ROUTES; b++)
      for (k = 0; k < METRICS_N_CODES; k++)
        to->requests[a][b][k] += m->requests[a][b][k];
  metrics_hist_merge(&to->append_us, &m->append_us);
  metrics_hist_merge(&to->sync_us, &m->sync_us);
  metrics_hist_merge(&to->sync_batch, &m->sync_batch);
  to->appends += m->appends;
  to->append_bytes += m->append_bytes;
  for (k = 0; k < 2; k++) to->live_started[k] += m->live_started[k];
  to->live_bytes += m->live_bytes;
  to->sync_failures += m->sync_failures;
  for (k = 0; k < 2; k++) to->auth_refused[k] += m->auth_refused[k];
  to->conns_refused += m->conns_refused;
}

/* ------------------------------------------------------------ writing */

/* "# HELP" and "# TYPE" of a family (help has no '\\' or newline: ours
** are literals). */
URSULA_PRIVATE int metrics_write_head(struct buf *out, const char *name,
                                      const char *type, const char *help) {
  return buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                    type);
}

URSULA_PRIVATE int metrics_write_us(struct buf *out, uint64_t us) {
  return buf_printf(out, "%llu.%06llu", (unsigned long long)(us / 1000000u),
                    (unsigned long long)(us % 1000000u));
}

/* A bucket's bound v (us != 0: microseconds, as seconds) as an le
** label: the shortest decimal with at least one digit after the point
** ("0.00025", "1.0", "64.0"), the form OpenMetrics calls canonical and
** Prometheus stores, so a series' le never changes with the writer. */
static int metrics_write_bound(struct buf *out, uint64_t v, int us) {
  uint64_t whole = us ? v / 1000000u : v, frac = us ? v % 1000000u : 0;
  int digits = 6;
  if (frac == 0)
    return buf_printf(out, "%llu.0", (unsigned long long)whole);
  while (frac % 10 == 0) {
    frac /= 10;
    digits--;
  }
  return buf_printf(out, "%llu.%0*llu", (unsigned long long)whole, digits,
                    (unsigned long long)frac);
}

/* A histogram family: us != 0: its values are microseconds, written as
** seconds. */
static int metrics_write_hist(struct buf *out, const char *name,
                              const char *help, const struct metrics_hist *h,
                              const uint64_t *bounds, int us) {
  uint64_t cum = 0;
  int i, rc = metrics_write_head(out, name, "histogram", help);
  for (i = 0; i < METRICS_N_BOUNDS && rc == URSULA_OK; i++) {
    cum += h->buckets[i];
    rc = buf_printf(out, "%s_bucket{le=\"", name);
    if (rc == URSULA_OK) rc = metrics_write_bound(out, bounds[i], us);
    if (rc == URSULA_OK)
      rc = buf_printf(out, "\"} %llu\n", (unsigned long long)cum);
  }
  if (rc == URSULA_OK)
    rc = buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum ", name,
                    (unsigned long long)h->count, name);
  if (rc == URSULA_OK)
    rc = us ? metrics_write_us(out, h->sum)
            : buf_printf(out, "%llu", (unsigned long long)h->sum);
  if (rc == URSULA_OK)
    rc = buf_printf(out, "\n%s_count %llu\n", name,
                    (unsigned long long)h->count);
  return rc;
}

/* One sample of a family without labels. */
URSULA_PRIVATE int metrics_write_value(struct buf *out, const char *name,
                                       const char *type, const char *help,
                                       uint64_t v) {
  int rc = metrics_write_head(out, name, type, help);
  if (rc == URSULA_OK)
    rc = buf_printf(out, "%s %llu\n", name, (unsigned long long)v);
  return rc;
}

URSULA_PRIVATE int metrics_write_counters(struct buf *out,
                                          const struct metrics *m) {
  static const char *const live_kind[2] = {"long_poll", "sse"};
  int a, b, k, rc;
  rc = metrics_write_head(out, "ursula_http_requests_total", "counter",
                          "HTTP responses, by the request's method, the "
                          "listener's kind of route and the status code");
  for (a = 0; a < METRICS_N_METHODS && rc == URSULA_OK; a++) {
    for (b = 0; b < METRICS_N_ROUTES && rc == URSULA_OK; b++) {
      for (k = 0; k < METRICS_N_CODES && rc == URSULA_OK; k++) {
        char code[8];
        if (m->requests[a][b][k] == 0) continue;
        if (k < METRICS_N_CODES - 1)
          snprintf(code, sizeof(code), "%d", metrics_codes[k]);
        else
          snprintf(code, sizeof(code), "other");
        rc = buf_printf(out,
                        "ursula_http_requests_total{method=\"%s\","
                        "route=\"%s\",code=\"%s\"} %llu\n",
                        metrics_methods[a], metrics_routes[b], code,
                        (unsigned long long)m->requests[a][b][k]);
      }
    }
  }
  if (rc == URSULA_OK)
    rc = metrics_write_hist(out, "ursula_append_latency_seconds",
                            "time from a complete append request to its "
                            "acknowledgement being queued",
                            &m->append_us, metrics_latency_us, 1);
  if (rc == URSULA_OK)
    rc = metrics_write_value(out, "ursula_appends_total", "counter",
                             "appends acknowledged", m->appends);
  if (rc == URSULA_OK)
    rc = metrics_write_value(out, "ursula_append_bytes_total", "counter",
                             "body bytes of the appends acknowledged",
                             m->append_bytes);
  if (rc == URSULA_OK)
    rc = metrics_write_head(out, "ursula_live_readers_started_total",
                            "counter",
                            "live reads asked for (long-poll, SSE)");
  for (k = 0; k < 2 && rc == URSULA_OK; k++)
    rc = buf_printf(out,
                    "ursula_live_readers_started_total{kind=\"%s\"} %llu\n",
                    live_kind[k], (unsigned long long)m->live_started[k]);
  if (rc == URSULA_OK)
    rc = metrics_write_value(out, "ursula_live_sent_bytes_total", "counter",
                             "bytes of stream data sent to live readers "
                             "(SSE events and long-poll bodies)",
                             m->live_bytes);
  if (rc == URSULA_OK)
    rc = metrics_write_hist(out, "ursula_wal_sync_seconds",
                            "time from a WAL sync's request to its result "
                            "back on its core (queue and fdatasync)",
                            &m->sync_us, metrics_latency_us, 1);
  if (rc == URSULA_OK)
    rc = metrics_write_hist(out, "ursula_wal_sync_batch_groups",
                            "groups whose batches one journal sync made "
                            "durable",
                            &m->sync_batch, metrics_batch, 0);
  if (rc == URSULA_OK)
    rc = metrics_write_value(out, "ursula_wal_sync_failures_total",
                             "counter", "WAL syncs that failed",
                             m->sync_failures);
  if (rc == URSULA_OK)
    rc = metrics_write_head(out, "ursula_auth_refused_total", "counter",
                            "requests refused by --auth-file: 401 no or "
                            "unknown token, 403 a token without the scope "
                            "or the path");
  for (k = 0; k < 2 && rc == URSULA_OK; k++)
    rc = buf_printf(out, "ursula_auth_refused_total{code=\"%d\"} %llu\n",
                    k == 0 ? 401 : 403,
                    (unsigned long long)m->auth_refused[k]);
  if (rc == URSULA_OK)
    rc = metrics_write_value(out, "ursula_connections_refused_total",
                             "counter",
                             "clients accepted and answered 503 at once: "
                             "--max-connections reached, the open-file "
                             "limit, the admin listener's 64 all answering, "
                             "or a stop under way",
                             m->conns_refused);
  return rc;
}
