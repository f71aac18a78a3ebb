/*
** peer.c -- fuzz the peer transport's frame decoder (src/peer.c): the
** bytes one connection delivers, decoded as its reader does.
**
** Input: frames back to back, as a socket would carry them.  Each frame
** is decoded (peer_frame_get) from a heap copy of exactly the bytes left;
** a HELLO (peer_hello_get) becomes the context of the frames after it
** (before any: cluster 7, node 2 to node 1, 64 groups); a BATCH's items
** are decoded one by one (peer_item_get, APPEND records checked); a
** SNAP_CHUNK by peer_snap_get, a CHALLENGE by peer_challenge_get.
** Properties:
**   - every decoder returns URSULA_OK, URSULA_EAGAIN (a frame only) or
**     URSULA_ECORRUPT with a reason, never reads past its input (ASan),
**     and every view it returns lies inside the frame;
**   - decode then encode gives the same bytes: a valid HELLO, BATCH (all
**     its items), SNAP_CHUNK or CHALLENGE re-encoded by peer_hello_put,
**     peer_item_put + peer_frame_seal, peer_snap_put, peer_challenge_put
**     is byte for byte the
**     frame that came in (one encoding per message: shortest varints);
**   - every strict prefix of a whole frame is "need more" (or the same
**     early protocol error the whole frame's header gives).
*/
#include "../../ursula.c"
#include "fuzz.h"

static int fuzz_peer_inside(const unsigned char *p, size_t n,
                            const unsigned char *v, size_t len) {
  return len == 0 || (v >= p && len <= n && (size_t)(v - p) <= n - len);
}

/* Decode the BATCH body f under h and re-encode it into out. */
static int fuzz_peer_batch(const struct peer_frame *f,
                           const struct peer_hello *h, struct buf *out) {
  const unsigned char *q = f->body, *end = f->body + f->len;
  size_t start;
  const char *why = NULL;
  FUZZ_CHECK(peer_frame_reserve(out, &start) == URSULA_OK);
  while (q < end) {
    struct peer_item it;
    int rc = peer_item_get(&q, end, h, &it, &why);
    FUZZ_CHECK(rc == URSULA_OK || rc == URSULA_ECORRUPT);
    if (rc != URSULA_OK) {
      FUZZ_CHECK(why != NULL);
      return rc;
    }
    FUZZ_CHECK(q <= end);
    FUZZ_CHECK(fuzz_peer_inside(f->body, f->len, it.records, it.len));
    FUZZ_CHECK(it.group >= 0 && (uint32_t)it.group < h->groups);
    if (it.kind == PEER_ITEM_RAFT) {
      FUZZ_CHECK(it.msg.cluster_id == h->cluster_id && it.msg.to == h->to &&
                 it.msg.from == h->from);
      FUZZ_CHECK(it.msg.type != RAFT_MSG_APPEND ||
                 it.len >= (size_t)it.msg.n * WAL_RECORD_HEADER);
    } else {
      FUZZ_CHECK(it.req != 0);
    }
    FUZZ_CHECK(peer_item_encode(out, &it) == URSULA_OK);
  }
  peer_frame_seal(out, start, PEER_BATCH);
  return URSULA_OK;
}

/* One frame at the front of p[0..n): its properties; how many bytes it
** took (0: stop). */
static size_t fuzz_peer_frame(const unsigned char *p, size_t n,
                              struct peer_hello *h) {
  struct peer_frame f;
  struct buf out;
  size_t used = 0, cut;
  const char *why = NULL;
  int rc = peer_frame_get(p, n, &f, &used, &why), rc2;
  FUZZ_CHECK(rc == URSULA_OK || rc == URSULA_EAGAIN || rc == URSULA_ECORRUPT);
  if (rc == URSULA_ECORRUPT) FUZZ_CHECK(why != NULL);
  if (rc != URSULA_OK) return 0;
  FUZZ_CHECK(used == PEER_HEADER + f.len && used <= n);
  FUZZ_CHECK(f.body == p + PEER_HEADER);
  for (cut = 0; cut < used; cut += 1 + used / 16) {
    struct peer_frame g;
    size_t u2;
    char *q = fuzz_copy(p, cut);
    FUZZ_CHECK(peer_frame_get(q, cut, &g, &u2, &why) == URSULA_EAGAIN);
    free(q);
  }
  memset(&out, 0, sizeof(out));
  if (f.kind == PEER_HELLO) {
    struct peer_hello nh;
    rc2 = peer_hello_get(&f, &nh, &why);
    FUZZ_CHECK(rc2 == URSULA_OK || rc2 == URSULA_ECORRUPT);
    if (rc2 == URSULA_OK) {
      FUZZ_CHECK(peer_hello_put(&out, &nh) == URSULA_OK);
      FUZZ_CHECK(out.len == used && memcmp(out.ptr, p, used) == 0);
      *h = nh;
    }
  } else if (f.kind == PEER_BATCH) {
    if (fuzz_peer_batch(&f, h, &out) == URSULA_OK)
      FUZZ_CHECK(out.len == used && memcmp(out.ptr, p, used) == 0);
  } else if (f.kind == PEER_CHALLENGE) {
    unsigned char nonce[PEER_NONCE];
    rc2 = peer_challenge_get(&f, nonce, &why);
    FUZZ_CHECK(rc2 == URSULA_OK || rc2 == URSULA_ECORRUPT);
    if (rc2 == URSULA_OK) {
      FUZZ_CHECK(peer_challenge_put(&out, nonce) == URSULA_OK);
      FUZZ_CHECK(out.len == used && memcmp(out.ptr, p, used) == 0);
    }
  } else {
    struct peer_snap s;
    FUZZ_CHECK(f.kind == PEER_SNAP_CHUNK);
    rc2 = peer_snap_get(&f, h, &s, &why);
    FUZZ_CHECK(rc2 == URSULA_OK || rc2 == URSULA_ECORRUPT);
    if (rc2 == URSULA_OK) {
      FUZZ_CHECK(fuzz_peer_inside(f.body, f.len, s.data, s.len));
      FUZZ_CHECK(s.offset <= s.total && s.len <= s.total - s.offset);
      FUZZ_CHECK(peer_snap_put(&out, &s) == URSULA_OK);
      FUZZ_CHECK(out.len == used && memcmp(out.ptr, p, used) == 0);
    }
  }
  buf_free(&out);
  return used;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct peer_hello h = {7, 2, 1, 0, 1, 64, 99, {0}};
  char *copy = fuzz_copy(data, size);
  size_t at = 0;
  fuzz_quiet();
  while (at < size) {
    char *rest = fuzz_copy(copy + at, size - at); /* exactly what is left */
    size_t used = fuzz_peer_frame((const unsigned char *)rest, size - at, &h);
    free(rest);
    if (used == 0) break;
    at += used;
  }
  free(copy);
  return 0;
}
