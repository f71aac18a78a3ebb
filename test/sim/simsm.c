/*
** simsm.c -- the REAL state machine of one group on one node, for the
** simulator: commands encoded by src/cmd.c, applied by src/stream.c's
** stream_apply(), read back by stream_read() and compared by
** stream_digest().  Nothing here decides what a command does; this file
** only builds the commands a client would send and reads the results.
**
** THE WORKLOAD.  Each group holds SIMSM_STREAMS text streams named
** "/g<group>/s<k>".  A client op is a CREATE of one (idempotent: the
** protocol answers 201 the first time, 200 after) or an APPEND of one
** tag, 17 bytes: 16 lowercase hex digits and "\n", with or without the
** idempotent-producer headers (producer id "c<client>", epoch, seq).  A
** producer sends seq n + 1 only once seq n was answered, and sends seq n
** again after an unknown outcome (a leader lost, a timeout): the protocol
** (PROTOCOL.md, idempotent producers) then answers 204 and appends
** nothing if it was applied before, so each (producer, epoch, seq) is in
** the stream at most once.  A plain append retried may be in twice (at
** least once); the simulator never retries one.
**
** WHAT THE CHECKS READ.  simsm_tags() parses a stream back into its
** tags, from bytes read through stream_read(), so that a lost or doubled
** append, or bytes at the wrong offset, show.  simsm_digest() is one
** 64-bit digest of the replicated state (equal on replicas that applied
** the same log).
*/

#define SIMSM_STREAMS 3
#define SIMSM_TAG_BYTES 17

struct simsm_op {
  int type;        /* CMD_CREATE or CMD_APPEND */
  unsigned stream; /* 0..SIMSM_STREAMS-1 */
  uint64_t tag;    /* APPEND: the client's tag, non-zero */
  int producer;    /* APPEND: with Producer-Id, -Epoch, -Seq */
  unsigned client; /* the producer id is "c<client>" */
  uint64_t epoch, seq;
  uint64_t time_ms; /* the proposer's clock (the command carries it) */
};

struct simsm_result {
  int status;    /* the HTTP status stream_apply() decided */
  uint64_t tail; /* Stream-Next-Offset after it */
};

struct simsm {
  struct stream_state st;
  struct buf bounds; /* cmd_decode's scratch */
  struct buf scratch;
};

static void simsm_init(struct simsm *sm) {
  memset(sm, 0, sizeof(*sm));
  stream_state_init(&sm->st);
}

static void simsm_free(struct simsm *sm) {
  stream_state_free(&sm->st);
  buf_free(&sm->bounds);
  buf_free(&sm->scratch);
  memset(sm, 0, sizeof(*sm));
}

/* The path of stream k of group g into out (at least 32 bytes). */
static struct str simsm_path(unsigned g, unsigned k, char *out) {
  int n = snprintf(out, 32, "/g%u/s%u", g, k);
  struct str s;
  s.ptr = out;
  s.len = n > 0 ? (size_t)n : 0;
  return s;
}

/* Append the encoded command of op on group g to out: URSULA_OK or
** URSULA_ENOMEM. */
static int simsm_encode(unsigned g, const struct simsm_op *op,
                        struct buf *out) {
  char path[32], tag[SIMSM_TAG_BYTES + 1], id[32];
  struct cmd c;
  int n;
  memset(&c, 0, sizeof(c));
  c.type = op->type;
  c.time_ms = op->time_ms;
  c.path = simsm_path(g, op->stream, path);
  c.flags = CMD_F_CT; /* a POST's Content-Type must match the stream's */
  c.content_type = util_str("text/plain");
  if (op->type == CMD_CREATE) return cmd_encode(&c, out);
  snprintf(tag, sizeof(tag), "%016llx\n", (unsigned long long)op->tag);
  c.data.ptr = tag;
  c.data.len = SIMSM_TAG_BYTES;
  c.n_msgs = 1;
  if (op->producer) {
    n = snprintf(id, sizeof(id), "c%u", op->client);
    c.flags |= CMD_F_PRODUCER;
    c.producer_id.ptr = id;
    c.producer_id.len = n > 0 ? (size_t)n : 0;
    c.producer_epoch = op->epoch;
    c.producer_seq = op->seq;
  }
  return cmd_encode(&c, out);
}

/* Apply the committed entry `index` whose payload is p[0..n) (a command
** from simsm_encode): URSULA_OK with *res, or URSULA_ECORRUPT if the
** payload is no command. */
static int simsm_apply(struct simsm *sm, uint64_t index, const void *p,
                       size_t n, struct simsm_result *res) {
  struct cmd c;
  struct stream_result r;
  int rc;
  memset(res, 0, sizeof(*res));
  if (cmd_decode(p, n, &c, &sm->bounds) != URSULA_OK) return URSULA_ECORRUPT;
  memset(&r, 0, sizeof(r));
  rc = stream_apply(&sm->st, index, &c, &r);
  buf_free(&r.garbage);
  buf_free(&r.releases);
  if (rc != URSULA_OK) return rc;
  res->status = r.status;
  res->tail = r.tail;
  return URSULA_OK;
}

/* The digest of the replicated state (stream_digest). */
static uint64_t simsm_digest(const struct simsm *sm) {
  uint64_t d = 0;
  if (stream_digest(&sm->st, &d) != URSULA_OK) return 0;
  return d;
}

/* The tags of stream k of group g, in stream order, into tags[0..cap):
** *n is how many there are (it may exceed cap: only cap are stored).
** URSULA_ENOTFOUND if there is no such stream; URSULA_ECORRUPT if its
** bytes are not whole tags; or stream_read()'s error. */
static int simsm_tags(struct simsm *sm, unsigned g, unsigned k,
                      uint64_t *tags, size_t cap, size_t *n) {
  char path[32];
  struct stream *s = stream_find(&sm->st, simsm_path(g, k, path));
  size_t i;
  int rc;
  *n = 0;
  if (s == NULL) return URSULA_ENOTFOUND;
  sm->scratch.len = 0;
  rc = stream_read(&sm->st, s, 0, s->tail, &sm->scratch);
  if (rc != URSULA_OK) return rc;
  if (sm->scratch.len % SIMSM_TAG_BYTES != 0) return URSULA_ECORRUPT;
  for (i = 0; i < sm->scratch.len; i += SIMSM_TAG_BYTES) {
    const char *t = sm->scratch.ptr + i;
    uint64_t v = 0;
    size_t j;
    if (t[16] != '\n') return URSULA_ECORRUPT;
    for (j = 0; j < 16; j++) {
      int h = t[j] >= '0' && t[j] <= '9'   ? t[j] - '0'
              : t[j] >= 'a' && t[j] <= 'f' ? t[j] - 'a' + 10
                                           : -1;
      if (h < 0) return URSULA_ECORRUPT;
      v = v << 4 | (uint64_t)h;
    }
    if (*n < cap) tags[*n] = v;
    (*n)++;
  }
  return URSULA_OK;
}
