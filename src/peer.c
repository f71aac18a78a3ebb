/*
** peer.c -- the transport between the nodes of a cluster (raft.md §3):
** frames of batched Raft messages over TCP, one outbound connection per
** (ordered node pair, core).
**
** CONNECTIONS.  Core k of node A dials node B; B sends a CHALLENGE (a
** fresh random nonce), and A answers with a HELLO naming core k and
** signed for that nonce (AUTHENTICATION, below); from then on A only
** writes to that socket and B only reads it (unidirectional: B's
** messages to A go on B's own connection to A, so an asymmetric
** partition is one socket).  The dialer binds its own address
** first (the source address is then this node's on a multi-address
** loopback), connects without blocking, sets TCP_NODELAY, and while the
** peer is down tries again after 100 ms doubling to 2 s, plus jitter
** drawn from env->random.  A link is announced up (one log line) once its
** socket has stayed open PEER_CONFIRM_MS after the HELLO went out: a peer
** that refuses the HELLO closes it at once, and the dialer then logs the
** refusal once per cause, not on every retry.  An idle link sends an
** empty BATCH every PEER_KEEPALIVE_MS, so the listener knows which
** connections are alive.
**
** The listener (one socket per node, at its own --peer address or
** --peer-listen) accepts on core 0, reads exactly the HELLO (a deadline of
** PEER_HELLO_MS), checks it and posts the socket to the core the HELLO
** names, which reads its frames from then on.  Refused, with one log line
** naming the cause: another cluster id, a `to` that is not this node, a
** `from` that is not a configured peer or is this node, another count of
** cores or groups, and a `from` whose same core is connected already,
** alive, from another process (another boot id): two processes that
** claim one node id.  A connection of a previous boot that has been
** silent past PEER_STALE_MS is taken for dead (a restart) and replaced.
**
** SENDING.  peer_send() appends a RAFT item to the core's BATCH body for
** that node; peer_flush() (end of the core's turn) frames each body and
** writes what the socket takes, the rest on LOOP_WRITE.  An item for a
** link that is not up, or whose unwritten output is over PEER_OUT_CAP, is
** dropped and counted: Raft sends again, and a core never waits on the
** network.  RECEIVING.  Frames are decoded on the core that owns the
** connection, in order; each RAFT item goes to cfg.on_raft, each
** SNAP_CHUNK to cfg.on_snap (callbacks: this part calls no part above it).
** Any protocol error logs one line (which peer, what) and closes.
**
** AUTHENTICATION.  The nodes of a cluster share a secret
** (--cluster-secret-file, the same bytes on every node; never on the
** wire).  The listener sends each new connection a CHALLENGE of 32
** bytes from the system's generator (os_random_bytes), and the dialer's
** HELLO carries
**
**     mac = HMAC-SHA256(key = the secret,
**                       "URSAUTH1" | the nonce | HELLO bytes 0..51)
**
** (RFC 2104; HELLO bytes 0..51 are its fields below, as sent).  The
** listener computes the same and compares in constant time before it
** looks at anything else the HELLO says: a dialer without the secret
** cannot make one, and a HELLO recorded on the wire is worth nothing for
** another nonce.  Without a secret both sides key with the empty string:
** the handshake is the same, and proves only that both lack one (the
** node warns at start).  The frames after the HELLO are not signed: on a
** network where others can inject into a TCP connection, the links need
** a private network (or a tunnel).
**
** The nonces: the listener reads a 32-byte key from the system's
** generator once, when it opens (os_random_bytes), and the k-th nonce
** since is HMAC-SHA256(key, k as 8 bytes little-endian): unpredictable to
** anyone without the key, never repeated while the node runs, and no
** file opened per connection.  At most PEER_PEND_MAX connections wait
** for their HELLO; one more closes the oldest waiting, so that a flood
** of connections that never speak holds bounded memory and descriptors,
** and a real peer (whose HELLO follows the CHALLENGE within a round
** trip) is still admitted.
**
** WIRE FORMAT.  All integers little-endian; a varint is cmd.c's (unsigned
** LEB128, shortest form only).  A FRAME:
**
**     0   4  len: bytes of the body (at most PEER_MAX_FRAME, 64 MiB)
**     4   1  version: 2 (1 had no CHALLENGE, and a 52-byte HELLO: nodes
**               of the two versions refuse each other's frames)
**     5   1  kind: 1 HELLO, 2 BATCH, 3 SNAP_CHUNK, 4 CHALLENGE
**     6   2  flags: 0
**     8   4  CRC32C of bytes 0..7 and then the body
**    12 len  body
**
** CHALLENGE body (32 bytes; the listener's first and only frame on a
** connection, sent as it accepts): the nonce.
**
** HELLO body (84 bytes; the dialer's first frame of a connection, and
** only then, once the CHALLENGE is in):
**
**     0   8  magic "URSRAFT1"
**     8   8  cluster id (FNV-1a 64 of --cluster-id)
**    16   8  from: the sender's node id
**    24   8  to: the node id it dialed
**    32   4  core: the sender's core (the frames are for its groups)
**    36   4  cores: the sender's core count
**    40   4  groups: the sender's group count
**    44   8  boot id: random, drawn once per process start
**    52  32  mac (AUTHENTICATION)
**
** BATCH body: items back to back until the body ends, each starting with
** u8 item kind.  Kind 1 RAFT (kinds 2..15 reserved; unknown: an error):
**
**     u8      1
**     varint  group (< the HELLO's groups)
**     u8      type (RAFT_MSG_*, 1..12)
**     u8      flags: bit 0 REJECT, bit 1 TRANSFER, bit 2 RECOVERING,
**             bit 3 LEAVING (the sender is stopping: raft.c, LEAVING);
**             bits 4..7 must be 0 (a frame with one set is refused:
**             a flag may change what a message means, so one a node
**             does not know is not ignored; a node built before bit 3
**             refuses it too, and a stop then hands nothing over:
**             it stops as before, and the others elect)
**     varint  from (must be the HELLO's from)
**     varint  term, index, log_term, commit, hint, last, ctx
**     varint  n (at most 2^32 - 1)
**     u8      n_runs (at most RAFT_MSG_RUNS)
**     n_runs x (varint index, varint term)
**     varint  records_len, then that many bytes
**
**   These are struct raft_msg's fields in the order of raft.c's MESSAGES;
**   cluster_id and to are the HELLO's and are filled in by the decoder.
**   records: for an APPEND, its n entries as WAL records back to back,
**   verbatim as wal.c frames them (32-byte header with its CRC32C, then
**   the payload).  Each record's CRC must be right, and the records must
**   be exactly n entries with indexes index + 1, index + 2, ... whose terms
**   are the runs' (runs[0].index = index + 1, run indexes ascending, each
**   entry's term that of the last run at or below it).  Any other type
**   carries no records (records_len 0).
**
** SNAP_CHUNK body:
**
**     varint group | varint term | varint snap_index | varint snap_term |
**     varint offset | varint total | u8 last (0 or 1) | bytes to the end
**
**   with offset + the bytes' length <= total.
**
** Kind 2 FWD (a client's write that reached a follower, forwarded to the
** leader of its group, issue 14; the leader proposes it and answers with
** a FWD_REPLY; the follower answers its client once it has applied that
** entry itself, raft.md section 4):
**
**     u8 2 | varint group | varint req (the forwarder's id, nonzero) |
**     varint len | len bytes: the command, encoded as cmd.c encodes it
**
** Kind 3 FWD_REPLY:
**
**     u8 3 | varint group | varint req | u8 outcome (0 accepted, 1 refused)
**     | varint term | varint index  (accepted: the entry's; else 0, 0)
*/
#include "internal.h"

#define PEER_VERSION 2
#define PEER_OUT_CAP ((size_t)16 << 20) /* unwritten output per connection */
#define PEER_SNAP_CAP ((size_t)4 << 20) /* ... before a snapshot chunk */
#define PEER_BACKOFF_MIN_MS 100
#define PEER_BACKOFF_MAX_MS 2000
#define PEER_CONFIRM_MS 250   /* open this long after HELLO: announced up */
#define PEER_KEEPALIVE_MS 1000
#define PEER_STALE_MS 3000    /* silent this long: a connection is dead */
#define PEER_HELLO_MS 5000    /* a new connection's HELLO deadline */
#define PEER_PEND_MAX 64      /* connections waiting for their HELLO */
#define PEER_ITEM_RESERVED 15 /* item kinds 2..15 come in the next step */
#define PEER_REFUSALS 8       /* causes of refusal remembered for the log */
#define PEER_REFUSAL_QUIET_MS 30000 /* one line per cause this often */

static const unsigned char peer_magic[8] = {'U', 'R', 'S', 'R',
                                            'A', 'F', 'T', '1'};

/* ------------------------------------------------------------ codec */

static int peer_bad(const char **why, const char *what) {
  if (why != NULL) *why = what;
  return URSULA_ECORRUPT;
}

URSULA_PRIVATE uint64_t peer_cluster_hash(const char *name) {
  return util_hash64(name, strlen(name));
}

URSULA_PRIVATE int peer_frame_reserve(struct buf *b, size_t *start) {
  static const unsigned char zero[PEER_HEADER] = {0};
  *start = b->len;
  return buf_append(b, zero, sizeof(zero));
}

/* Fill in the header of the frame at b[start..): its body is the rest. */
URSULA_PRIVATE void peer_frame_seal(struct buf *b, size_t start, int kind) {
  unsigned char *h = (unsigned char *)b->ptr + start;
  size_t len = b->len - start - PEER_HEADER;
  uint32_t crc;
  util_put32(h, (uint32_t)len);
  h[4] = PEER_VERSION;
  h[5] = (unsigned char)kind;
  h[6] = 0;
  h[7] = 0;
  crc = util_crc32c(0, h, 8);
  util_put32(h + 8, util_crc32c(crc, h + PEER_HEADER, len));
}

/* HELLO bytes 0..51: everything but the mac (what the mac covers). */
static void peer_hello_fields(unsigned char *out, const struct peer_hello *h) {
  memcpy(out, peer_magic, 8);
  util_put64(out + 8, h->cluster_id);
  util_put64(out + 16, h->from);
  util_put64(out + 24, h->to);
  util_put32(out + 32, h->core);
  util_put32(out + 36, h->cores);
  util_put32(out + 40, h->groups);
  util_put64(out + 44, h->boot_id);
}

URSULA_PRIVATE int peer_hello_put(struct buf *b, const struct peer_hello *h) {
  unsigned char body[PEER_HELLO_BODY];
  size_t start;
  peer_hello_fields(body, h);
  memcpy(body + 52, h->mac, PEER_MAC);
  if (peer_frame_reserve(b, &start) != URSULA_OK ||
      buf_append(b, body, sizeof(body)) != URSULA_OK)
    return URSULA_ENOMEM;
  peer_frame_seal(b, start, PEER_HELLO);
  return URSULA_OK;
}

URSULA_PRIVATE int peer_challenge_put(struct buf *b,
                                      const unsigned char nonce[PEER_NONCE]) {
  size_t start;
  if (peer_frame_reserve(b, &start) != URSULA_OK ||
      buf_append(b, nonce, PEER_NONCE) != URSULA_OK)
    return URSULA_ENOMEM;
  peer_frame_seal(b, start, PEER_CHALLENGE);
  return URSULA_OK;
}

/* The MAC of h for nonce under key (AUTHENTICATION). */
static void peer_hello_mac(const struct peer_hello *h,
                           const unsigned char nonce[PEER_NONCE],
                           const void *key, size_t len,
                           unsigned char out[PEER_MAC]) {
  unsigned char msg[8 + PEER_NONCE + 52];
  memcpy(msg, "URSAUTH1", 8);
  memcpy(msg + 8, nonce, PEER_NONCE);
  peer_hello_fields(msg + 8 + PEER_NONCE, h);
  crypto_hmac_sha256(key, len, msg, sizeof(msg), out);
}

URSULA_PRIVATE void peer_hello_sign(struct peer_hello *h,
                                    const unsigned char nonce[PEER_NONCE],
                                    const void *key, size_t len) {
  peer_hello_mac(h, nonce, key, len, h->mac);
}

URSULA_PRIVATE int peer_hello_verify(const struct peer_hello *h,
                                     const unsigned char nonce[PEER_NONCE],
                                     const void *key, size_t len) {
  unsigned char want[PEER_MAC];
  unsigned diff = 0;
  int i;
  peer_hello_mac(h, nonce, key, len, want);
  for (i = 0; i < PEER_MAC; i++) diff |= (unsigned)(want[i] ^ h->mac[i]);
  return diff == 0;
}

URSULA_PRIVATE int peer_item_put(struct buf *b, int group,
                                 const struct raft_msg *m, const void *records,
                                 size_t len) {
  unsigned char c[3];
  int rc = URSULA_OK, i;
  c[0] = PEER_ITEM_RAFT;
  rc |= buf_append(b, c, 1);
  rc |= cmd_put_varint(b, (uint64_t)group);
  c[0] = m->type;
  c[1] = m->flags;
  rc |= buf_append(b, c, 2);
  rc |= cmd_put_varint(b, m->from);
  rc |= cmd_put_varint(b, m->term);
  rc |= cmd_put_varint(b, m->index);
  rc |= cmd_put_varint(b, m->log_term);
  rc |= cmd_put_varint(b, m->commit);
  rc |= cmd_put_varint(b, m->hint);
  rc |= cmd_put_varint(b, m->last);
  rc |= cmd_put_varint(b, m->ctx);
  rc |= cmd_put_varint(b, m->n);
  c[0] = m->n_runs;
  rc |= buf_append(b, c, 1);
  for (i = 0; i < m->n_runs && i < RAFT_MSG_RUNS; i++) {
    rc |= cmd_put_varint(b, m->runs[i].index);
    rc |= cmd_put_varint(b, m->runs[i].term);
  }
  rc |= cmd_put_varint(b, (uint64_t)len);
  if (len > 0) rc |= buf_append(b, records, len);
  return rc == URSULA_OK ? URSULA_OK : URSULA_ENOMEM;
}

static int peer_fwd_put(struct buf *b, int group, uint64_t req,
                        const void *cmd, size_t len) {
  unsigned char c = PEER_ITEM_FWD;
  int rc = buf_append(b, &c, 1);
  rc |= cmd_put_varint(b, (uint64_t)group);
  rc |= cmd_put_varint(b, req);
  rc |= cmd_put_varint(b, (uint64_t)len);
  if (len > 0) rc |= buf_append(b, cmd, len);
  return rc == URSULA_OK ? URSULA_OK : URSULA_ENOMEM;
}

static int peer_reply_put(struct buf *b, int group, uint64_t req, int outcome,
                          uint64_t term, uint64_t index) {
  unsigned char c = PEER_ITEM_FWD_REPLY, o = (unsigned char)outcome;
  int rc = buf_append(b, &c, 1);
  rc |= cmd_put_varint(b, (uint64_t)group);
  rc |= cmd_put_varint(b, req);
  rc |= buf_append(b, &o, 1);
  rc |= cmd_put_varint(b, term);
  rc |= cmd_put_varint(b, index);
  return rc == URSULA_OK ? URSULA_OK : URSULA_ENOMEM;
}

URSULA_PRIVATE int peer_item_encode(struct buf *b,
                                    const struct peer_item *it) {
  if (it->kind == PEER_ITEM_FWD)
    return peer_fwd_put(b, it->group, it->req, it->records, it->len);
  if (it->kind == PEER_ITEM_FWD_REPLY)
    return peer_reply_put(b, it->group, it->req, it->outcome, it->term,
                          it->index);
  return peer_item_put(b, it->group, &it->msg, it->records, it->len);
}

URSULA_PRIVATE int peer_snap_put(struct buf *b, const struct peer_snap *s) {
  size_t start;
  unsigned char last = (unsigned char)(s->last ? 1 : 0);
  int rc = peer_frame_reserve(b, &start);
  rc |= cmd_put_varint(b, (uint64_t)s->group);
  rc |= cmd_put_varint(b, s->term);
  rc |= cmd_put_varint(b, s->snap_index);
  rc |= cmd_put_varint(b, s->snap_term);
  rc |= cmd_put_varint(b, s->offset);
  rc |= cmd_put_varint(b, s->total);
  rc |= buf_append(b, &last, 1);
  if (s->len > 0) rc |= buf_append(b, s->data, s->len);
  if (rc != URSULA_OK) return URSULA_ENOMEM;
  peer_frame_seal(b, start, PEER_SNAP_CHUNK);
  return URSULA_OK;
}

/* The header is checked as soon as it is whole, before the body comes:
** a length over the bound is refused without waiting for it. */
URSULA_PRIVATE int peer_frame_get(const void *p, size_t n,
                                  struct peer_frame *f, size_t *used,
                                  const char **why) {
  const unsigned char *h = (const unsigned char *)p;
  uint32_t len, crc;
  if (n < PEER_HEADER) return URSULA_EAGAIN;
  len = util_get32(h);
  if (len > PEER_MAX_FRAME) return peer_bad(why, "frame longer than 64 MiB");
  if (h[4] != PEER_VERSION) return peer_bad(why, "unknown frame version");
  if (h[5] < PEER_HELLO || h[5] > PEER_CHALLENGE)
    return peer_bad(why, "unknown frame kind");
  if (h[6] != 0 || h[7] != 0) return peer_bad(why, "frame flags not 0");
  if (n - PEER_HEADER < len) return URSULA_EAGAIN;
  crc = util_crc32c(util_crc32c(0, h, 8), h + PEER_HEADER, len);
  if (crc != util_get32(h + 8)) return peer_bad(why, "frame CRC mismatch");
  f->kind = h[5];
  f->body = h + PEER_HEADER;
  f->len = len;
  *used = PEER_HEADER + (size_t)len;
  return URSULA_OK;
}

URSULA_PRIVATE int peer_hello_get(const struct peer_frame *f,
                                  struct peer_hello *h, const char **why) {
  const unsigned char *b = f->body;
  if (f->kind != PEER_HELLO) return peer_bad(why, "expected a HELLO");
  if (f->len != PEER_HELLO_BODY) return peer_bad(why, "HELLO of a bad size");
  if (memcmp(b, peer_magic, 8) != 0) return peer_bad(why, "bad HELLO magic");
  h->cluster_id = util_get64(b + 8);
  h->from = util_get64(b + 16);
  h->to = util_get64(b + 24);
  h->core = util_get32(b + 32);
  h->cores = util_get32(b + 36);
  h->groups = util_get32(b + 40);
  h->boot_id = util_get64(b + 44);
  memcpy(h->mac, b + 52, PEER_MAC);
  return URSULA_OK;
}

URSULA_PRIVATE int peer_challenge_get(const struct peer_frame *f,
                                      unsigned char nonce[PEER_NONCE],
                                      const char **why) {
  if (f->kind != PEER_CHALLENGE) return peer_bad(why, "expected a CHALLENGE");
  if (f->len != PEER_NONCE) return peer_bad(why, "CHALLENGE of a bad size");
  memcpy(nonce, f->body, PEER_NONCE);
  return URSULA_OK;
}

/* A varint at *p that must be at most max. */
static int peer_get_uint(const unsigned char **p, const unsigned char *end,
                         uint64_t max, uint64_t *out) {
  return cmd_get_varint(p, end, out) == 0 && *out <= max ? 0 : -1;
}

static int peer_get_byte(const unsigned char **p, const unsigned char *end,
                         unsigned char *out) {
  if (*p >= end) return -1;
  *out = *(*p)++;
  return 0;
}

/* The term runs of m: the first at index + 1, ascending, within the n
** entries (n > 0 needs at least one run). */
static int peer_runs_ok(const struct raft_msg *m) {
  int i;
  if (m->n == 0) return m->n_runs == 0;
  if (m->n_runs == 0 || m->runs[0].index != m->index + 1) return 0;
  for (i = 1; i < m->n_runs; i++)
    if (m->runs[i].index <= m->runs[i - 1].index ||
        m->runs[i].index > m->index + m->n)
      return 0;
  return 1;
}

/* The records of an APPEND: exactly m->n entries, consecutive from
** m->index + 1, each of its run's term, every CRC right. */
static int peer_records_ok(const struct raft_msg *m, const unsigned char *p,
                           size_t len, const char **why) {
  uint64_t k;
  int run = 0;
  if (m->type != RAFT_MSG_APPEND)
    return len == 0 ? URSULA_OK : peer_bad(why, "records on a non-APPEND");
  if (m->index > UINT64_MAX - m->n) return peer_bad(why, "APPEND index overflow");
  if (!peer_runs_ok(m)) return peer_bad(why, "APPEND term runs malformed");
  if (m->n > len / WAL_RECORD_HEADER)
    return peer_bad(why, "APPEND records fewer than n");
  for (k = 0; k < m->n; k++) {
    struct wal_entry e;
    size_t size;
    uint64_t index = m->index + 1 + k;
    if (wal_record_check(p, len, &e, &size) != URSULA_OK)
      return peer_bad(why, "APPEND record damaged (CRC or header)");
    while (run + 1 < m->n_runs && m->runs[run + 1].index <= index) run++;
    if (e.index != index) return peer_bad(why, "APPEND record index out of order");
    if (e.term != m->runs[run].term)
      return peer_bad(why, "APPEND record term not its run's");
    p += size;
    len -= size;
  }
  return len == 0 ? URSULA_OK : peer_bad(why, "APPEND records more than n");
}

static int peer_get_msg(const unsigned char **p, const unsigned char *end,
                        struct raft_msg *m) {
  uint64_t v[8], n;
  unsigned char type, flags, runs;
  int bad = 0, i;
  bad |= peer_get_byte(p, end, &type);
  bad |= peer_get_byte(p, end, &flags);
  for (i = 0; i < 8 && !bad; i++) bad |= cmd_get_varint(p, end, &v[i]);
  bad |= bad ? -1 : peer_get_uint(p, end, UINT32_MAX, &n);
  bad |= bad ? -1 : peer_get_byte(p, end, &runs);
  if (bad || type < RAFT_MSG_APPEND || type > RAFT_MSG_READ_INDEX_RESP ||
      (flags & ~(RAFT_F_REJECT | RAFT_F_TRANSFER | RAFT_F_RECOVERING |
                 RAFT_F_LEAVING)) != 0 ||
      runs > RAFT_MSG_RUNS)
    return -1;
  m->type = type;
  m->flags = flags;
  m->from = v[0];
  m->term = v[1];
  m->index = v[2];
  m->log_term = v[3];
  m->commit = v[4];
  m->hint = v[5];
  m->last = v[6];
  m->ctx = v[7];
  m->n = (uint32_t)n;
  m->n_runs = runs;
  for (i = 0; i < runs; i++)
    if (cmd_get_varint(p, end, &m->runs[i].index) != 0 ||
        cmd_get_varint(p, end, &m->runs[i].term) != 0)
      return -1;
  return 0;
}

URSULA_PRIVATE int peer_item_get(const unsigned char **p,
                                 const unsigned char *end,
                                 const struct peer_hello *h,
                                 struct peer_item *it, const char **why) {
  const unsigned char *q = *p;
  unsigned char kind;
  uint64_t group, len;
  memset(it, 0, sizeof(*it));
  if (peer_get_byte(&q, end, &kind) != 0) return peer_bad(why, "empty item");
  if (kind == PEER_ITEM_FWD || kind == PEER_ITEM_FWD_REPLY) {
    unsigned char o = 0;
    if (h->groups == 0 || peer_get_uint(&q, end, h->groups - 1u, &group) != 0)
      return peer_bad(why, "FWD item: bad group");
    if (cmd_get_varint(&q, end, &it->req) != 0 || it->req == 0)
      return peer_bad(why, "FWD item: bad request id");
    if (kind == PEER_ITEM_FWD) {
      if (cmd_get_varint(&q, end, &len) != 0 || len > (uint64_t)(end - q))
        return peer_bad(why, "FWD item: command past the frame");
      it->records = q;
      it->len = (size_t)len;
      q += len;
    } else if (peer_get_byte(&q, end, &o) != 0 || o > PEER_FWD_REFUSED ||
               cmd_get_varint(&q, end, &it->term) != 0 ||
               cmd_get_varint(&q, end, &it->index) != 0) {
      return peer_bad(why, "FWD_REPLY item: malformed");
    }
    it->kind = kind;
    it->group = (int)group;
    it->outcome = o;
    *p = q;
    return URSULA_OK;
  }
  if (kind != PEER_ITEM_RAFT)
    return peer_bad(why, kind <= PEER_ITEM_RESERVED
                             ? "item kind reserved (a later version?)"
                             : "unknown item kind");
  if (h->groups == 0 || peer_get_uint(&q, end, h->groups - 1u, &group) != 0)
    return peer_bad(why, "RAFT item: bad group");
  if (peer_get_msg(&q, end, &it->msg) != 0)
    return peer_bad(why, "RAFT item: malformed message");
  if (it->msg.from != h->from)
    return peer_bad(why, "RAFT item: from is not the HELLO's");
  if (cmd_get_varint(&q, end, &len) != 0 || len > (uint64_t)(end - q))
    return peer_bad(why, "RAFT item: records length past the frame");
  it->msg.cluster_id = h->cluster_id;
  it->msg.to = h->to;
  if (peer_records_ok(&it->msg, q, (size_t)len, why) != URSULA_OK)
    return URSULA_ECORRUPT;
  it->kind = PEER_ITEM_RAFT;
  it->group = (int)group;
  it->records = q;
  it->len = (size_t)len;
  *p = q + len;
  return URSULA_OK;
}

URSULA_PRIVATE int peer_snap_get(const struct peer_frame *f,
                                 const struct peer_hello *h,
                                 struct peer_snap *s, const char **why) {
  const unsigned char *q = f->body, *end = f->body + f->len;
  uint64_t group;
  unsigned char last;
  memset(s, 0, sizeof(*s));
  if (f->kind != PEER_SNAP_CHUNK) return peer_bad(why, "expected a SNAP_CHUNK");
  if (h->groups == 0 || peer_get_uint(&q, end, h->groups - 1u, &group) ||
      cmd_get_varint(&q, end, &s->term) || cmd_get_varint(&q, end, &s->snap_index) ||
      cmd_get_varint(&q, end, &s->snap_term) || cmd_get_varint(&q, end, &s->offset) ||
      cmd_get_varint(&q, end, &s->total) || peer_get_byte(&q, end, &last) ||
      last > 1)
    return peer_bad(why, "SNAP_CHUNK: malformed header");
  s->group = (int)group;
  s->last = last;
  s->data = q;
  s->len = (size_t)(end - q);
  if (s->offset > s->total || s->total - s->offset < s->len)
    return peer_bad(why, "SNAP_CHUNK: bytes past its total");
  return URSULA_OK;
}

/* ------------------------------------------------------------ objects */

/* A link's states: down (a retry armed), connecting, waiting for the
** listener's CHALLENGE (connected; nothing sent yet), up (the HELLO went
** out: frames follow). */
enum { PEER_DOWN = 0, PEER_CONNECTING = 1, PEER_UP = 2, PEER_AWAIT = 3 };

struct peer_core;

/* The outbound link of one core to one node. */
struct peer_link {
  struct peer_core *pc;
  int ix;                  /* the node's index in cfg.nodes */
  int fd;                  /* -1 while down */
  int state;               /* PEER_DOWN, _CONNECTING, _AWAIT, _UP */
  unsigned char chal[PEER_HEADER + PEER_NONCE]; /* the CHALLENGE coming */
  size_t chal_have;
  int announced;           /* its "up" line was logged */
  uint64_t backoff_ms;     /* the next retry's delay, before jitter */
  uint64_t last_frame_ms;  /* when a frame last went out (keepalive) */
  struct loop_timer timer; /* the retry, or the confirmation of "up" */
  struct buf out;          /* framed bytes not yet written */
  struct buf batch;        /* this turn's RAFT items for the node */
  uint64_t batch_items;
  char cause[160]; /* the last cause of a failure logged (once each) */
  struct peer_link_stats st;
};

/* An inbound connection, on the core its HELLO named. */
struct peer_in {
  struct peer_core *pc;
  struct peer_in *next;
  int fd, ix;
  struct peer_hello hello;
  struct buf in;
  uint64_t told_ms; /* when it last told p->seen it is alive */
  char addr[64];
};

/* A connection accepted on core 0, until its HELLO is whole. */
struct peer_pend {
  struct peer *p;
  struct peer_pend *next;
  int fd;
  unsigned char nonce[PEER_NONCE]; /* the CHALLENGE sent */
  unsigned char hello[PEER_HEADER + PEER_HELLO_BODY];
  size_t have;
  struct loop_timer timer;
  char addr[64];
};

/* The message that hands a checked connection to its core. */
struct peer_handoff {
  struct loop_msg m;
  struct peer *p;
  int fd, ix;
  struct peer_hello hello;
  char addr[64];
};

struct peer_core {
  struct peer *p;
  int id;
  struct loop *loop;
  struct peer_link links[PEER_MAX_NODES]; /* by node index; not self's */
  struct peer_in *ins;
  struct loop_timer keepalive;
};

/* The newest inbound connection of a (node, core): its process's boot id,
** how many are open, when one last said it is alive (under p->mu). */
struct peer_seen {
  uint64_t boot_id, seen_ms;
  int open;
};

/* A cause of refusal the listener logged, and how many it did not since
** (the same cause is logged once per PEER_REFUSAL_QUIET_MS). */
struct peer_refusal {
  char why[240];
  uint64_t last_ms, quiet;
};

struct peer {
  struct peer_config cfg;
  struct peer_refusal refusals[PEER_REFUSALS]; /* core 0's */
  struct env *env;
  int self; /* this node's index in cfg.nodes */
  uint64_t boot_id;
  int listen_fd, port;
  struct sockaddr_storage addr[PEER_MAX_NODES];
  socklen_t addr_len[PEER_MAX_NODES];
  struct sockaddr_storage bind_addr;
  socklen_t bind_len; /* 0: no bind */
  struct peer_core *cores;
  struct peer_pend *pend; /* core 0's, newest first */
  int n_pend;
  unsigned char nonce_key[32]; /* core 0's: see AUTHENTICATION */
  uint64_t nonce_count;
  struct loop_timer accept_timer; /* core 0's: accepting paused */
  pthread_mutex_t mu;
  struct peer_seen *seen; /* [ix * n_cores + core] */
};

static int peer_node_ix(const struct peer *p, uint64_t id) {
  int i;
  for (i = 0; i < p->cfg.n_nodes; i++)
    if ((uint64_t)p->cfg.nodes[i].id == id) return i;
  return -1;
}

static uint64_t peer_now(const struct peer_core *pc) {
  return loop_now_ms(pc->loop);
}

/* "host:port" of a socket address. */
static void peer_addr_text(const struct sockaddr_storage *ss, char *out,
                           size_t cap) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)ss;
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a =
        (const struct sockaddr_in6 *)(const void *)ss;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
  }
  snprintf(out, cap, "%s:%d", host, port);
}

/* ------------------------------------------------------------ dialing */

static void peer_link_dial(struct loop *l, void *arg);
static void peer_link_on_io(struct loop *l, int fd, unsigned events,
                            void *arg);

static const struct peer_node *peer_link_node(const struct peer_link *k) {
  return &k->pc->p->cfg.nodes[k->ix];
}

/* Log cause once: a link that keeps failing the same way says so once. */
static void peer_link_note(struct peer_link *k, const char *cause) {
  const struct peer_node *n = peer_link_node(k);
  (void)n; /* without logs */
  if (strcmp(k->cause, cause) == 0) return;
  snprintf(k->cause, sizeof(k->cause), "%s", cause);
  LOG_I("peer: link to node %d (%s:%d) core %d: %s (retrying)", n->id,
        n->host, n->port, k->pc->id, cause);
}

/* Close the link's socket (what it had queued is dropped and counted),
** log why, and retry after the backoff plus jitter. */
static void peer_link_down(struct peer_link *k, const char *cause) {
  struct peer_core *pc = k->pc;
  const struct peer_node *n = peer_link_node(k);
  uint64_t delay = k->backoff_ms;
  (void)n; /* without logs */
  if (k->fd >= 0) {
    loop_del(pc->loop, k->fd);
    close(k->fd);
    k->fd = -1;
  }
  k->st.dropped += k->batch_items;
  k->batch_items = 0;
  k->batch.len = 0;
  k->out.len = 0;
  k->state = PEER_DOWN;
  if (k->announced) {
    LOG_I("peer: link to node %d (%s:%d) core %d down: %s (sent %llu frames, "
          "%llu items, %llu bytes; dropped %llu items)",
          n->id, n->host, n->port, pc->id, cause,
          (unsigned long long)k->st.frames_out,
          (unsigned long long)k->st.items_out,
          (unsigned long long)k->st.bytes_out,
          (unsigned long long)k->st.dropped);
    snprintf(k->cause, sizeof(k->cause), "%s", cause);
  } else {
    peer_link_note(k, cause);
  }
  k->announced = 0;
  delay += pc->p->env->random(pc->p->env) % (delay / 2 + 1);
  k->backoff_ms = k->backoff_ms * 2 > PEER_BACKOFF_MAX_MS
                      ? PEER_BACKOFF_MAX_MS
                      : k->backoff_ms * 2;
  loop_timer_set(pc->loop, &k->timer, peer_now(pc) + delay, peer_link_dial,
                 k);
}

static void peer_link_failed(struct peer_link *k, const char *what, int e) {
  char cause[160];
  snprintf(cause, sizeof(cause), "%s: %s", what, strerror(e));
  peer_link_down(k, cause);
}

/* Write what the socket takes; watch for writability while any is left. */
static void peer_link_write(struct peer_link *k) {
  size_t done = 0;
  while (done < k->out.len) {
    ssize_t w = send(k->fd, k->out.ptr + done, k->out.len - done,
#ifdef MSG_NOSIGNAL
                     MSG_NOSIGNAL
#else
                     0
#endif
    );
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (w <= 0) {
      peer_link_failed(k, "send", w < 0 ? errno : EPIPE);
      return;
    }
    done += (size_t)w;
    k->st.bytes_out += (uint64_t)w;
  }
  buf_consume(&k->out, done);
  loop_mod(k->pc->loop, k->fd,
           k->out.len > 0 ? LOOP_READ | LOOP_WRITE : LOOP_READ);
}

/* Once the HELLO has been out PEER_CONFIRM_MS and the peer kept the
** connection, the link is up: say so once. */
static void peer_link_confirm(struct loop *l, void *arg) {
  struct peer_link *k = (struct peer_link *)arg;
  const struct peer_node *n = peer_link_node(k);
  (void)l;
  (void)n; /* without logs */
  if (k->state != PEER_UP || k->announced) return;
  k->announced = 1;
  k->backoff_ms = PEER_BACKOFF_MIN_MS;
  k->cause[0] = '\0';
  LOG_I("peer: link to node %d (%s:%d) core %d up", n->id, n->host, n->port,
        k->pc->id);
}

/* The CHALLENGE is in: send the HELLO signed for its nonce, then the
** link carries frames. */
static void peer_link_hello(struct peer_link *k,
                            const unsigned char nonce[PEER_NONCE]) {
  struct peer_core *pc = k->pc;
  struct peer *p = pc->p;
  struct peer_hello h;
  h.cluster_id = p->cfg.cluster_id;
  h.from = (uint64_t)p->cfg.nodes[p->self].id;
  h.to = (uint64_t)peer_link_node(k)->id;
  h.core = (uint32_t)pc->id;
  h.cores = (uint32_t)p->cfg.n_cores;
  h.groups = (uint32_t)p->cfg.n_groups;
  h.boot_id = p->boot_id;
  peer_hello_sign(&h, nonce, p->cfg.secret, p->cfg.secret_len);
  k->state = PEER_UP;
  k->out.len = 0;
  if (peer_hello_put(&k->out, &h) != URSULA_OK) {
    peer_link_down(k, "out of memory");
    return;
  }
  k->last_frame_ms = peer_now(pc);
  loop_timer_set(pc->loop, &k->timer, peer_now(pc) + PEER_CONFIRM_MS,
                 peer_link_confirm, k);
  peer_link_write(k);
}

static void peer_link_await_timeout(struct loop *l, void *arg) {
  (void)l;
  peer_link_down((struct peer_link *)arg,
                 "no CHALLENGE within 5 s of the connect");
}

/* The connect finished: wait (at most PEER_HELLO_MS) for the listener's
** CHALLENGE. */
static void peer_link_connected(struct peer_link *k) {
  k->state = PEER_AWAIT;
  k->chal_have = 0;
  loop_timer_set(k->pc->loop, &k->timer, peer_now(k->pc) + PEER_HELLO_MS,
                 peer_link_await_timeout, k);
}

/* Read the CHALLENGE, and not a byte past it (the listener sends nothing
** else). */
static void peer_link_read_challenge(struct peer_link *k) {
  struct peer_frame f;
  unsigned char nonce[PEER_NONCE];
  const char *why = NULL;
  size_t used;
  ssize_t r = recv(k->fd, k->chal + k->chal_have,
                   sizeof(k->chal) - k->chal_have, 0);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (r < 0) {
    peer_link_failed(k, "recv", errno);
    return;
  }
  if (r == 0) {
    peer_link_down(k, "closed by the peer before its CHALLENGE");
    return;
  }
  k->chal_have += (size_t)r;
  k->st.bytes_in += (uint64_t)r;
  if (k->chal_have >= PEER_HEADER &&
      (util_get32(k->chal) != PEER_NONCE || k->chal[5] != PEER_CHALLENGE ||
       k->chal[4] != PEER_VERSION)) {
    peer_link_down(k, k->chal[4] != PEER_VERSION
                          ? "the peer speaks another version of the protocol"
                          : "the peer's first frame is not a CHALLENGE");
    return;
  }
  if (k->chal_have < sizeof(k->chal)) return;
  if (peer_frame_get(k->chal, sizeof(k->chal), &f, &used, &why) != URSULA_OK ||
      peer_challenge_get(&f, nonce, &why) != URSULA_OK) {
    peer_link_down(k, why != NULL ? why : "a bad CHALLENGE");
    return;
  }
  peer_link_hello(k, nonce);
}

/* A socket bound to this node's address, connecting to node k->ix. */
static void peer_link_dial(struct loop *l, void *arg) {
  struct peer_link *k = (struct peer_link *)arg;
  struct peer *p = k->pc->p;
  const struct sockaddr *to = (const struct sockaddr *)&p->addr[k->ix];
  int one = 1;
  (void)l;
  k->fd = socket(to->sa_family, SOCK_STREAM, 0);
  if (k->fd < 0) {
    peer_link_failed(k, "socket", errno);
    return;
  }
  os_set_nonblock(k->fd);
  os_set_cloexec(k->fd);
  setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (p->bind_len > 0 && p->bind_addr.ss_family == to->sa_family &&
      bind(k->fd, (const struct sockaddr *)&p->bind_addr, p->bind_len) != 0) {
    peer_link_failed(k, "bind to this node's address", errno);
    return;
  }
  if (connect(k->fd, to, p->addr_len[k->ix]) == 0) {
    if (loop_add(k->pc->loop, k->fd, LOOP_READ, peer_link_on_io, k) !=
        URSULA_OK) {
      peer_link_down(k, "loop_add failed");
      return;
    }
    peer_link_connected(k);
  } else if (errno == EINPROGRESS || errno == EINTR) {
    k->state = PEER_CONNECTING;
    if (loop_add(k->pc->loop, k->fd, LOOP_WRITE, peer_link_on_io, k) !=
        URSULA_OK)
      peer_link_down(k, "loop_add failed");
  } else {
    peer_link_failed(k, "connect", errno);
  }
}

/* The outbound socket: the connect's end, writability, or the peer
** closing it (it never writes to us: any byte is a protocol error). */
static void peer_link_on_io(struct loop *l, int fd, unsigned events,
                            void *arg) {
  struct peer_link *k = (struct peer_link *)arg;
  char scratch[64];
  (void)l;
  if (k->state == PEER_CONNECTING) {
    int e = 0;
    socklen_t len = sizeof(e);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) e = errno;
    if (e != 0) {
      peer_link_failed(k, "connect", e);
      return;
    }
    loop_mod(k->pc->loop, fd, LOOP_READ);
    peer_link_connected(k);
    return;
  }
  if (k->state == PEER_AWAIT) {
    if (events & (LOOP_READ | LOOP_ERROR)) peer_link_read_challenge(k);
    return;
  }
  if (events & (LOOP_READ | LOOP_ERROR)) {
    ssize_t r = recv(fd, scratch, sizeof(scratch), 0);
    if (r == 0) {
      peer_link_down(k, k->announced
                            ? "closed by the peer"
                            : "closed by the peer right after our HELLO: "
                              "it refused us (its log says why)");
      return;
    }
    if (r > 0) {
      peer_link_down(k, "the peer wrote on a one-way link");
      return;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      peer_link_failed(k, "recv", errno);
      return;
    }
  }
  if ((events & LOOP_WRITE) && k->state == PEER_UP) peer_link_write(k);
}

/* ------------------------------------------------------------ sending */

URSULA_PRIVATE int peer_send(struct peer *p, int core, int node_id, int group,
                             const struct raft_msg *m, const void *records,
                             size_t len) {
  int ix = peer_node_ix(p, (uint64_t)node_id);
  struct peer_link *k;
  if (ix < 0 || ix == p->self || core < 0 || core >= p->cfg.n_cores)
    return URSULA_EINVAL;
  k = &p->cores[core].links[ix];
  if (k->state != PEER_UP || k->out.len + k->batch.len > PEER_OUT_CAP ||
      peer_item_put(&k->batch, group, m, records, len) != URSULA_OK) {
    k->st.dropped++;
    return URSULA_EAGAIN;
  }
  k->batch_items++;
  return URSULA_OK;
}

/* The link of core to node_id for an item, or NULL (counted as dropped
** when it exists but is down or full). */
static struct peer_link *peer_item_link(struct peer *p, int core,
                                        int node_id) {
  int ix = peer_node_ix(p, (uint64_t)node_id);
  struct peer_link *k;
  if (ix < 0 || ix == p->self || core < 0 || core >= p->cfg.n_cores)
    return NULL;
  k = &p->cores[core].links[ix];
  if (k->state != PEER_UP || k->out.len + k->batch.len > PEER_OUT_CAP) {
    k->st.dropped++;
    return NULL;
  }
  return k;
}

URSULA_PRIVATE int peer_forward(struct peer *p, int core, int node_id,
                                int group, uint64_t req, const void *cmd,
                                size_t len) {
  struct peer_link *k = peer_item_link(p, core, node_id);
  if (k == NULL || peer_fwd_put(&k->batch, group, req, cmd, len) != URSULA_OK)
    return URSULA_EAGAIN;
  k->batch_items++;
  return URSULA_OK;
}

URSULA_PRIVATE int peer_fwd_reply(struct peer *p, int core, int node_id,
                                  int group, uint64_t req, int outcome,
                                  uint64_t term, uint64_t index) {
  struct peer_link *k = peer_item_link(p, core, node_id);
  if (k == NULL ||
      peer_reply_put(&k->batch, group, req, outcome, term, index) != URSULA_OK)
    return URSULA_EAGAIN;
  k->batch_items++;
  return URSULA_OK;
}

/* Frame k's batch (possibly empty: a keepalive) onto its output. */
static void peer_link_frame(struct peer_link *k) {
  size_t start;
  if (peer_frame_reserve(&k->out, &start) != URSULA_OK ||
      buf_append(&k->out, k->batch.ptr, k->batch.len) != URSULA_OK) {
    k->out.len = k->out.len > start ? start : k->out.len;
    k->st.dropped += k->batch_items;
  } else {
    peer_frame_seal(&k->out, start, PEER_BATCH);
    k->st.frames_out++;
    k->st.items_out += k->batch_items;
    k->last_frame_ms = peer_now(k->pc);
  }
  k->batch.len = 0;
  k->batch_items = 0;
}

/* A SNAP_CHUNK goes out behind the items batched before it (framed
** first, so a follower sees them in the order given), written at once.
** Its own bound, PEER_SNAP_CAP, far below PEER_OUT_CAP: a snapshot
** waits for the link to drain rather than crowd out heartbeats. */
URSULA_PRIVATE int peer_send_snap(struct peer *p, int core, int node_id,
                                  const struct peer_snap *s) {
  int ix = peer_node_ix(p, (uint64_t)node_id);
  struct peer_link *k;
  size_t before;
  if (ix < 0 || ix == p->self || core < 0 || core >= p->cfg.n_cores)
    return URSULA_EINVAL;
  k = &p->cores[core].links[ix];
  if (k->state != PEER_UP || k->out.len + k->batch.len > PEER_SNAP_CAP)
    return URSULA_EAGAIN;
  if (k->batch_items > 0) peer_link_frame(k);
  before = k->out.len;
  if (peer_snap_put(&k->out, s) != URSULA_OK) {
    k->out.len = before;
    return URSULA_ENOMEM;
  }
  k->st.frames_out++;
  k->last_frame_ms = peer_now(k->pc);
  peer_link_write(k);
  return URSULA_OK;
}

URSULA_PRIVATE void peer_flush(struct peer *p, int core) {
  struct peer_core *pc = &p->cores[core];
  int i;
  for (i = 0; i < p->cfg.n_nodes; i++) {
    struct peer_link *k = &pc->links[i];
    if (i == p->self || k->batch_items == 0) continue;
    if (k->state != PEER_UP || k->out.len > PEER_OUT_CAP) {
      k->st.dropped += k->batch_items;
      k->batch_items = 0;
      k->batch.len = 0;
      continue;
    }
    peer_link_frame(k);
    peer_link_write(k);
  }
}

/* Every PEER_KEEPALIVE_MS: an empty BATCH on each idle link. */
static void peer_on_keepalive(struct loop *l, void *arg) {
  struct peer_core *pc = (struct peer_core *)arg;
  struct peer *p = pc->p;
  uint64_t now = peer_now(pc);
  int i;
  for (i = 0; i < p->cfg.n_nodes; i++) {
    struct peer_link *k = &pc->links[i];
    if (i == p->self || k->state != PEER_UP || k->out.len > 0 ||
        k->batch_items > 0 || now - k->last_frame_ms < PEER_KEEPALIVE_MS)
      continue;
    peer_link_frame(k);
    peer_link_write(k);
  }
  loop_timer_set(l, &pc->keepalive, now + PEER_KEEPALIVE_MS / 2,
                 peer_on_keepalive, pc);
}

/* ------------------------------------------------------------ receiving */

static struct peer_seen *peer_seen_of(struct peer *p, int ix, uint32_t core) {
  return &p->seen[ix * p->cfg.n_cores + (int)core];
}

/* The connection of boot_id from (ix, core) is alive (now), or closed. */
static void peer_seen_alive(struct peer *p, int ix, uint32_t core,
                            uint64_t boot_id, uint64_t now) {
  struct peer_seen *s;
  pthread_mutex_lock(&p->mu);
  s = peer_seen_of(p, ix, core);
  if (s->boot_id == boot_id) s->seen_ms = now;
  pthread_mutex_unlock(&p->mu);
}

static void peer_seen_closed(struct peer *p, int ix, uint32_t core,
                             uint64_t boot_id) {
  struct peer_seen *s;
  pthread_mutex_lock(&p->mu);
  s = peer_seen_of(p, ix, core);
  if (s->boot_id == boot_id && s->open > 0) s->open--;
  pthread_mutex_unlock(&p->mu);
}

static void peer_in_close(struct peer_in *in) {
  struct peer_core *pc = in->pc;
  struct peer_in **pp = &pc->ins;
  while (*pp != NULL && *pp != in) pp = &(*pp)->next;
  if (*pp == in) *pp = in->next;
  peer_seen_closed(pc->p, in->ix, in->hello.core, in->hello.boot_id);
  loop_del(pc->loop, in->fd);
  close(in->fd);
  buf_free(&in->in);
  URSULA_FREE(in);
}

/* Hand every item of a BATCH body to on_raft (on_fwd), in order. */
static int peer_in_batch(struct peer_in *in, const struct peer_frame *f,
                         const char **why) {
  struct peer_core *pc = in->pc;
  const struct peer_config *cfg = &pc->p->cfg;
  const unsigned char *q = f->body, *end = f->body + f->len;
  struct peer_link_stats *st = &pc->links[in->ix].st;
  while (q < end) {
    struct peer_item it;
    if (peer_item_get(&q, end, &in->hello, &it, why) != URSULA_OK)
      return URSULA_ECORRUPT;
    st->items_in++;
    if (it.kind != PEER_ITEM_RAFT) {
      if (cfg->on_fwd != NULL) cfg->on_fwd(cfg->arg, pc->id, in->hello.from, &it);
      continue;
    }
    LOG_D("peer: from node %d core %d: group %d raft message %d term %llu",
          cfg->nodes[in->ix].id, pc->id, it.group, it.msg.type,
          (unsigned long long)it.msg.term);
    if (cfg->on_raft != NULL)
      cfg->on_raft(cfg->arg, pc->id, it.group, &it.msg, it.records, it.len);
  }
  return URSULA_OK;
}

/* Decode and deliver every whole frame of in's buffer. */
static int peer_in_frames(struct peer_in *in, const char **why) {
  struct peer_core *pc = in->pc;
  const struct peer_config *cfg = &pc->p->cfg;
  struct peer_link_stats *st = &pc->links[in->ix].st;
  size_t at = 0;
  int rc = URSULA_OK;
  while (rc == URSULA_OK) {
    struct peer_frame f;
    struct peer_snap s;
    size_t used;
    rc = peer_frame_get(in->in.ptr + at, in->in.len - at, &f, &used, why);
    if (rc != URSULA_OK) break;
    at += used;
    st->frames_in++;
    st->bytes_in += used;
    st->heard_ms = peer_now(pc); /* (GET /__ursula/cluster) */
    if (f.kind == PEER_HELLO) {
      rc = peer_bad(why, "a second HELLO");
    } else if (f.kind == PEER_CHALLENGE) {
      rc = peer_bad(why, "a CHALLENGE from the dialer");
    } else if (f.kind == PEER_BATCH) {
      rc = peer_in_batch(in, &f, why);
    } else if ((rc = peer_snap_get(&f, &in->hello, &s, why)) == URSULA_OK) {
      LOG_D("peer: from node %d core %d: group %d snapshot chunk",
            cfg->nodes[in->ix].id, pc->id, s.group);
      if (cfg->on_snap != NULL)
        cfg->on_snap(cfg->arg, pc->id, in->hello.from, &s);
    }
  }
  buf_consume(&in->in, at);
  return rc == URSULA_EAGAIN ? URSULA_OK : rc;
}

static void peer_in_on_io(struct loop *l, int fd, unsigned events, void *arg) {
  struct peer_in *in = (struct peer_in *)arg;
  struct peer_core *pc = in->pc;
  const char *why = "?";
  ssize_t r;
  (void)l;
  (void)events;
  if (buf_reserve(&in->in, 65536) != URSULA_OK) {
    LOG_W("peer: connection from node %d (%s): out of memory; closing",
          pc->p->cfg.nodes[in->ix].id, in->addr);
    peer_in_close(in);
    return;
  }
  /* (up to cap - 1: a struct buf keeps a byte for its NUL, buf_consume) */
  r = recv(fd, in->in.ptr + in->in.len, in->in.cap - in->in.len - 1, 0);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (r <= 0) {
    LOG_D("peer: connection from node %d (%s) core %d closed",
          pc->p->cfg.nodes[in->ix].id, in->addr, pc->id);
    peer_in_close(in);
    return;
  }
  in->in.len += (size_t)r;
  if (peer_in_frames(in, &why) != URSULA_OK) {
    LOG_W("peer: protocol error from node %d (%s) core %d: %s; closing",
          pc->p->cfg.nodes[in->ix].id, in->addr, pc->id, why);
    peer_in_close(in);
    return;
  }
  if (peer_now(pc) - in->told_ms >= PEER_KEEPALIVE_MS / 2) {
    in->told_ms = peer_now(pc);
    peer_seen_alive(pc->p, in->ix, in->hello.core, in->hello.boot_id,
                    in->told_ms);
  }
}

/* On the core the HELLO named: the connection is this core's now. */
static void peer_on_handoff(struct loop *l, struct loop_msg *m) {
  struct peer_handoff *h = (struct peer_handoff *)m;
  struct peer_core *pc = &h->p->cores[h->hello.core];
  struct peer_in *in = (struct peer_in *)URSULA_MALLOC(sizeof(*in));
  if (in == NULL || loop_add(l, h->fd, LOOP_READ, peer_in_on_io, in) !=
                        URSULA_OK) {
    peer_seen_closed(h->p, h->ix, h->hello.core, h->hello.boot_id);
    close(h->fd);
    URSULA_FREE(in);
    URSULA_FREE(h);
    return;
  }
  memset(in, 0, sizeof(*in));
  in->pc = pc;
  in->fd = h->fd;
  in->ix = h->ix;
  in->hello = h->hello;
  in->told_ms = peer_now(pc);
  memcpy(in->addr, h->addr, sizeof(in->addr));
  in->next = pc->ins;
  pc->ins = in;
  LOG_D("peer: connection from node %d (%s) core %d accepted",
        h->p->cfg.nodes[h->ix].id, in->addr, pc->id);
  URSULA_FREE(h);
}

static void peer_handoff_drop(struct loop_msg *m) {
  struct peer_handoff *h = (struct peer_handoff *)m;
  close(h->fd);
  URSULA_FREE(h);
}

/* ------------------------------------------------------------ accepting */

/* Why HELLO h is refused (a sentence for the log), or NULL: accepted, and
** its (node, core) recorded as this boot's. */
static const char *peer_check_hello(struct peer *p, const struct peer_hello *h,
                                    uint64_t now, char *why, size_t cap) {
  const struct peer_config *c = &p->cfg;
  int self = c->nodes[p->self].id, ix = peer_node_ix(p, h->from);
  struct peer_seen *s;
  if (h->cluster_id != c->cluster_id)
    snprintf(why, cap, "cluster id %llu is not ours (%llu)",
             (unsigned long long)h->cluster_id,
             (unsigned long long)c->cluster_id);
  else if (h->to != (uint64_t)self)
    snprintf(why, cap, "says it is node %llu to node %llu, but this is node %d",
             (unsigned long long)h->from, (unsigned long long)h->to, self);
  else if (h->from == (uint64_t)self)
    snprintf(why, cap,
             "says it is node %llu, which is this node: a duplicate node id",
             (unsigned long long)h->from);
  else if (ix < 0)
    snprintf(why, cap, "node %llu is not a configured peer",
             (unsigned long long)h->from);
  else if (h->groups != (uint32_t)c->n_groups)
    snprintf(why, cap, "node %llu has %lu groups, this node %d",
             (unsigned long long)h->from, (unsigned long)h->groups,
             c->n_groups);
  else if (h->cores != (uint32_t)c->n_cores || h->core >= h->cores)
    snprintf(why, cap, "node %llu has %lu cores (core %lu), this node %d",
             (unsigned long long)h->from, (unsigned long)h->cores,
             (unsigned long)h->core, c->n_cores);
  else
    why[0] = '\0';
  if (why[0] != '\0') return why;
  pthread_mutex_lock(&p->mu);
  s = peer_seen_of(p, ix, h->core);
  if (s->open > 0 && s->boot_id != h->boot_id &&
      now - s->seen_ms < PEER_STALE_MS) {
    snprintf(why, cap,
             "node %llu core %lu is connected already from another process "
             "(boot id %llx, this one %llx): a duplicate node id",
             (unsigned long long)h->from, (unsigned long)h->core,
             (unsigned long long)s->boot_id, (unsigned long long)h->boot_id);
  } else {
    if (s->boot_id != h->boot_id) s->open = 0;
    s->boot_id = h->boot_id;
    s->seen_ms = now;
    s->open++;
  }
  pthread_mutex_unlock(&p->mu);
  return why[0] != '\0' ? why : NULL;
}

static void peer_pend_free(struct peer_pend *pp, int close_fd) {
  struct peer *p = pp->p;
  struct peer_pend **q = &p->pend;
  while (*q != NULL && *q != pp) q = &(*q)->next;
  if (*q == pp) {
    *q = pp->next;
    p->n_pend--;
  }
  loop_timer_cancel(p->cores[0].loop, &pp->timer);
  loop_del(p->cores[0].loop, pp->fd);
  if (close_fd) close(pp->fd);
  URSULA_FREE(pp);
}

/* Log a refusal, unless its cause was logged in the last
** PEER_REFUSAL_QUIET_MS (a refused dialer retries every 2 s). */
static void peer_pend_refuse(struct peer_pend *pp, const char *why) {
  struct peer *p = pp->p;
  struct peer_refusal *r = &p->refusals[0];
  uint64_t now = peer_now(&p->cores[0]);
  int i;
  for (i = 0; i < PEER_REFUSALS; i++) {
    if (strcmp(p->refusals[i].why, why) == 0) {
      r = &p->refusals[i];
      break;
    }
    if (p->refusals[i].last_ms < r->last_ms) r = &p->refusals[i];
  }
  if (i < PEER_REFUSALS && r->last_ms != 0 &&
      now - r->last_ms < PEER_REFUSAL_QUIET_MS) {
    r->quiet++;
  } else {
    if (i < PEER_REFUSALS && r->quiet > 0)
      LOG_W("peer: refused a connection from %s: %s (and %llu more since)",
            pp->addr, why, (unsigned long long)r->quiet);
    else
      LOG_W("peer: refused a connection from %s: %s", pp->addr, why);
    snprintf(r->why, sizeof(r->why), "%s", why);
    r->last_ms = now > 0 ? now : 1;
    r->quiet = 0;
  }
  peer_pend_free(pp, 1);
}

/* The HELLO is whole: check it, then hand the socket to its core. */
static void peer_pend_hello(struct peer_pend *pp) {
  struct peer *p = pp->p;
  struct peer_frame f;
  struct peer_hello h;
  struct peer_handoff *m;
  const char *why = NULL;
  char text[400];
  size_t used;
  if (peer_frame_get(pp->hello, sizeof(pp->hello), &f, &used, &why) !=
          URSULA_OK ||
      peer_hello_get(&f, &h, &why) != URSULA_OK) {
    peer_pend_refuse(pp, why != NULL ? why : "not a HELLO");
    return;
  }
  if (!peer_hello_verify(&h, pp->nonce, p->cfg.secret, p->cfg.secret_len)) {
    peer_pend_refuse(pp,
                     "its HELLO is not signed with this cluster's secret "
                     "(--cluster-secret-file differs, or one side has none)");
    return;
  }
  if ((why = peer_check_hello(p, &h, peer_now(&p->cores[0]), text,
                              sizeof(text))) != NULL) {
    peer_pend_refuse(pp, why);
    return;
  }
  m = (struct peer_handoff *)URSULA_MALLOC(sizeof(*m));
  if (m == NULL) {
    peer_seen_closed(p, peer_node_ix(p, h.from), h.core, h.boot_id);
    peer_pend_refuse(pp, "out of memory");
    return;
  }
  memset(m, 0, sizeof(*m));
  m->m.on_msg = peer_on_handoff;
  m->m.on_drop = peer_handoff_drop;
  m->p = p;
  m->fd = pp->fd;
  m->ix = peer_node_ix(p, h.from);
  m->hello = h;
  memcpy(m->addr, pp->addr, sizeof(m->addr));
  peer_pend_free(pp, 0);
  loop_post(p->cores[h.core].loop, &m->m);
}

/* Read the HELLO, and not a byte past it (what follows is the core's). */
static void peer_pend_on_io(struct loop *l, int fd, unsigned events,
                            void *arg) {
  struct peer_pend *pp = (struct peer_pend *)arg;
  ssize_t r;
  (void)l;
  (void)events;
  r = recv(fd, pp->hello + pp->have, sizeof(pp->hello) - pp->have, 0);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (r <= 0) {
    LOG_D("peer: connection from %s closed before its HELLO", pp->addr);
    peer_pend_free(pp, 1);
    return;
  }
  pp->have += (size_t)r;
  if (pp->have >= PEER_HEADER && pp->hello[4] != PEER_VERSION) {
    peer_pend_refuse(pp, "it speaks another version of the peer protocol "
                         "(run one ursula version on every node)");
    return;
  }
  if (pp->have >= PEER_HEADER &&
      (util_get32(pp->hello) != PEER_HELLO_BODY || pp->hello[5] != PEER_HELLO)) {
    peer_pend_refuse(pp, "its first frame is not a HELLO");
    return;
  }
  if (pp->have == sizeof(pp->hello)) peer_pend_hello(pp);
}

static void peer_pend_on_timer(struct loop *l, void *arg) {
  struct peer_pend *pp = (struct peer_pend *)arg;
  (void)l;
  peer_pend_refuse(pp, "no HELLO within 5 s");
}

/* The next nonce (AUTHENTICATION): HMAC-SHA256(nonce_key, count). */
static void peer_next_nonce(struct peer *p, unsigned char out[PEER_NONCE]) {
  unsigned char ctr[8], mac[32];
  util_put64(ctr, ++p->nonce_count);
  crypto_hmac_sha256(p->nonce_key, sizeof(p->nonce_key), ctr, sizeof(ctr),
                     mac);
  memcpy(out, mac, PEER_NONCE);
}

/* Send a new connection its CHALLENGE: 0, or -1 (logged) to close it.
** A fresh socket's send buffer takes the 44 bytes whole. */
static int peer_pend_challenge(struct peer_pend *pp) {
  unsigned char frame[PEER_HEADER + PEER_NONCE];
  struct buf b;
  ssize_t w;
  peer_next_nonce(pp->p, pp->nonce);
  memset(&b, 0, sizeof(b));
  if (peer_challenge_put(&b, pp->nonce) != URSULA_OK) {
    buf_free(&b);
    return -1;
  }
  memcpy(frame, b.ptr, sizeof(frame));
  buf_free(&b);
  do {
    w = send(pp->fd, frame, sizeof(frame),
#ifdef MSG_NOSIGNAL
             MSG_NOSIGNAL
#else
             0
#endif
    );
  } while (w < 0 && errno == EINTR);
  if (w != (ssize_t)sizeof(frame)) {
    LOG_D("peer: connection from %s: its CHALLENGE could not be sent",
          pp->addr);
    return -1;
  }
  return 0;
}

static void peer_on_accept_resume(struct loop *l, void *arg) {
  struct peer *p = (struct peer *)arg;
  if (p->listen_fd >= 0) loop_mod(l, p->listen_fd, LOOP_READ);
}

static void peer_on_accept(struct loop *l, int fd, unsigned events,
                           void *arg) {
  struct peer *p = (struct peer *)arg;
  (void)events;
  for (;;) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    struct peer_pend *pp;
    int c = accept(fd, (struct sockaddr *)&ss, &sl);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        /* EMFILE, ENFILE, ...: the dialer stays queued and the listener
        ** readable: pause watching it (and log once per pause) */
        LOG_W("peer: accept: %s (pausing 100 ms)", strerror(errno));
        loop_mod(l, fd, 0);
        loop_timer_set(l, &p->accept_timer, loop_now_ms(l) + 100,
                       peer_on_accept_resume, p);
      }
      return;
    }
    os_set_nonblock(c);
    os_set_cloexec(c);
    if (p->n_pend >= PEER_PEND_MAX) { /* the oldest waiting goes */
      struct peer_pend *old = p->pend;
      while (old->next != NULL) old = old->next;
      peer_pend_refuse(old, "too many connections waiting for a HELLO; "
                            "the oldest was closed");
    }
    pp = (struct peer_pend *)URSULA_MALLOC(sizeof(*pp));
    if (pp == NULL) {
      close(c);
      continue;
    }
    memset(pp, 0, sizeof(*pp));
    pp->p = p;
    pp->fd = c;
    peer_addr_text(&ss, pp->addr, sizeof(pp->addr));
    if (peer_pend_challenge(pp) != 0) {
      close(c);
      URSULA_FREE(pp);
      continue;
    }
    if (loop_add(l, c, LOOP_READ, peer_pend_on_io, pp) != URSULA_OK) {
      close(c);
      URSULA_FREE(pp);
      continue;
    }
    pp->next = p->pend;
    p->pend = pp;
    p->n_pend++;
    loop_timer_set(l, &pp->timer, loop_now_ms(l) + PEER_HELLO_MS,
                   peer_pend_on_timer, pp);
  }
}

/* ------------------------------------------------------------ life */

URSULA_PRIVATE int peer_open(struct peer **out, const struct peer_config *cfg,
                             struct loop **loops, char *err) {
  struct peer *p;
  int i, j;
  p = (struct peer *)URSULA_MALLOC(sizeof(*p));
  if (p == NULL) return URSULA_ENOMEM;
  memset(p, 0, sizeof(*p));
  p->cfg = *cfg;
  p->env = cfg->env != NULL ? cfg->env : env_real();
  p->self = peer_node_ix(p, (uint64_t)cfg->node_id);
  p->listen_fd = -1;
  pthread_mutex_init(&p->mu, NULL);
  if (p->self < 0 || cfg->n_cores < 1 || cfg->n_nodes > PEER_MAX_NODES) {
    snprintf(err, URSULA_ERRMSG_LEN, "peer: node %d is not among the peers",
             cfg->node_id);
    peer_close(p);
    return URSULA_EINVAL;
  }
  p->boot_id = p->env->random(p->env);
  if (os_random_bytes(p->nonce_key, sizeof(p->nonce_key)) != 0) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "peer: no random bytes for the handshake's nonces: %s",
             strerror(errno));
    peer_close(p);
    return URSULA_ESYS;
  }
  p->cores = (struct peer_core *)URSULA_MALLOC(sizeof(*p->cores) *
                                               (size_t)cfg->n_cores);
  p->seen = (struct peer_seen *)URSULA_MALLOC(
      sizeof(*p->seen) * (size_t)(cfg->n_cores * cfg->n_nodes));
  if (p->cores == NULL || p->seen == NULL) {
    peer_close(p);
    return URSULA_ENOMEM;
  }
  memset(p->seen, 0, sizeof(*p->seen) * (size_t)(cfg->n_cores * cfg->n_nodes));
  memset(p->cores, 0, sizeof(*p->cores) * (size_t)cfg->n_cores);
  for (i = 0; i < cfg->n_cores; i++) {
    struct peer_core *pc = &p->cores[i];
    pc->p = p;
    pc->id = i;
    pc->loop = loops[i];
    for (j = 0; j < PEER_MAX_NODES; j++) {
      pc->links[j].pc = pc;
      pc->links[j].ix = j;
      pc->links[j].fd = -1;
      pc->links[j].backoff_ms = PEER_BACKOFF_MIN_MS;
    }
  }
  p->listen_fd = net_listen(cfg->listen_host, cfg->listen_port, &p->port, err);
  if (p->listen_fd < 0 || loop_add(loops[0], p->listen_fd, LOOP_READ,
                                   peer_on_accept, p) != URSULA_OK) {
    if (p->listen_fd >= 0) snprintf(err, URSULA_ERRMSG_LEN, "peer: loop_add");
    peer_close(p);
    return URSULA_ESYS;
  }
  *out = p;
  return URSULA_OK;
}

URSULA_PRIVATE int peer_port(const struct peer *p) { return p->port; }

URSULA_PRIVATE void peer_set_port(struct peer *p, int node_id, int port) {
  int ix = peer_node_ix(p, (uint64_t)node_id);
  if (ix >= 0) p->cfg.nodes[ix].port = port;
}

/* The first address of host:port into *ss. */
static int peer_resolve(const char *host, int port,
                        struct sockaddr_storage *ss, socklen_t *len,
                        char *err) {
  struct addrinfo hints, *res = NULL;
  char ps[16];
  int rc;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  snprintf(ps, sizeof(ps), "%d", port);
  rc = getaddrinfo(host, ps, &hints, &res);
  if (rc != 0 || res == NULL || res->ai_addrlen > sizeof(*ss)) {
    snprintf(err, URSULA_ERRMSG_LEN, "peer %.100s:%d: %s", host, port,
             rc != 0 ? gai_strerror(rc) : "no address");
    if (res != NULL) freeaddrinfo(res);
    return URSULA_EINVAL;
  }
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = (socklen_t)res->ai_addrlen;
  freeaddrinfo(res);
  return URSULA_OK;
}

URSULA_PRIVATE int peer_start(struct peer *p, char *err) {
  int i, j, rc;
  for (i = 0; i < p->cfg.n_nodes; i++) {
    const struct peer_node *n = &p->cfg.nodes[i];
    if (i == p->self) continue;
    rc = peer_resolve(n->host, n->port, &p->addr[i], &p->addr_len[i], err);
    if (rc != URSULA_OK) return rc;
  }
  if (p->cfg.bind_host[0] != '\0' &&
      (rc = peer_resolve(p->cfg.bind_host, 0, &p->bind_addr, &p->bind_len,
                         err)) != URSULA_OK)
    return rc;
  for (i = 0; i < p->cfg.n_cores; i++) {
    struct peer_core *pc = &p->cores[i];
    for (j = 0; j < p->cfg.n_nodes; j++)
      if (j != p->self)
        loop_timer_set(pc->loop, &pc->links[j].timer, peer_now(pc),
                       peer_link_dial, &pc->links[j]);
    loop_timer_set(pc->loop, &pc->keepalive, peer_now(pc) + PEER_KEEPALIVE_MS,
                   peer_on_keepalive, pc);
  }
  return URSULA_OK;
}

URSULA_PRIVATE void peer_close(struct peer *p) {
  int i, j;
  if (p == NULL) return;
  while (p->pend != NULL) peer_pend_free(p->pend, 1);
  for (i = 0; p->cores != NULL && i < p->cfg.n_cores; i++) {
    struct peer_core *pc = &p->cores[i];
    for (j = 0; j < PEER_MAX_NODES; j++) {
      struct peer_link *k = &pc->links[j];
      loop_timer_cancel(pc->loop, &k->timer);
      if (k->fd >= 0) {
        loop_del(pc->loop, k->fd);
        close(k->fd);
      }
      buf_free(&k->out);
      buf_free(&k->batch);
    }
    while (pc->ins != NULL) peer_in_close(pc->ins);
    loop_timer_cancel(pc->loop, &pc->keepalive);
  }
  if (p->cores != NULL) loop_timer_cancel(p->cores[0].loop, &p->accept_timer);
  if (p->listen_fd >= 0) {
    loop_del(p->cores[0].loop, p->listen_fd);
    close(p->listen_fd);
  }
  URSULA_FREE(p->cores);
  URSULA_FREE(p->seen);
  pthread_mutex_destroy(&p->mu);
  URSULA_FREE(p);
}

URSULA_PRIVATE void peer_stats(const struct peer *p, int core, int node_id,
                               struct peer_link_stats *out) {
  int ix = peer_node_ix(p, (uint64_t)node_id);
  memset(out, 0, sizeof(*out));
  if (ix < 0 || ix == p->self || core < 0 || core >= p->cfg.n_cores) return;
  *out = p->cores[core].links[ix].st;
  out->up = p->cores[core].links[ix].state == PEER_UP;
}
