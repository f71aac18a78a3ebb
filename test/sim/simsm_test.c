/*
** simsm_test.c -- the simulator's workload on the real state machine
** (simsm.c), checked against the protocol's rules (PROTOCOL.md: create,
** append, idempotent producers), before the simulator relies on it.
**
**   cc test/sim/simsm_test.c -o build/simsm_test -lpthread && ./build/simsm_test
*/
#define URSULA_ENABLE_ASSERT 1
#define URSULA_PRIVATE
#include "../../src/internal.h"
#include "../../src/util.c"
#include "../../src/json.c" /* (stream.c counts a v1 fork's records) */
#include "../../src/attrs.c" /* (stream.c checks attributes it restores) */
#include "../../src/cmd.c"
#include "../../src/stream.c"

#include "simsm.c"

static int simsm_test_failed;

#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      printf("not ok: %s:%d: %s\n", __FILE__, __LINE__, #cond);       \
      simsm_test_failed++;                                            \
    }                                                                 \
  } while (0)

/* (stream.c logs nothing the checks need) */
void log_write(int level, const char *fmt, ...) {
  (void)level;
  (void)fmt;
}

/* Encode op on group 1 and apply it as entry index to each of the n
** replicas; the status they agree on (-1 if they do not). */
static int simsm_test_op(struct simsm *sm, unsigned n, uint64_t index,
                         const struct simsm_op *op, uint64_t *tail) {
  struct buf b = {0, 0, 0};
  struct simsm_result r;
  int status = 0;
  unsigned i;
  CHECK(simsm_encode(1, op, &b) == URSULA_OK);
  for (i = 0; i < n; i++) {
    CHECK(simsm_apply(&sm[i], index, b.ptr, b.len, &r) == URSULA_OK);
    if (i > 0 && r.status != status) status = -1;
    if (i == 0) status = r.status;
    if (tail != NULL) *tail = r.tail;
  }
  buf_free(&b);
  return status;
}

int main(void) {
  struct simsm sm[2];
  struct simsm_op op;
  uint64_t tags[8], tail = 0, index = 0;
  size_t n;
  simsm_init(&sm[0]);
  simsm_init(&sm[1]);
  memset(&op, 0, sizeof(op));
  op.time_ms = 1000;

  /* PUT: 201 the first time, 200 for the same again */
  op.type = CMD_APPEND;
  op.tag = 9;
  CHECK(simsm_test_op(sm, 2, ++index, &op, NULL) == 404); /* no stream */
  op.type = CMD_CREATE;
  CHECK(simsm_test_op(sm, 2, ++index, &op, NULL) == 201);
  CHECK(simsm_test_op(sm, 2, ++index, &op, NULL) == 200);

  /* a plain append: 204, the tail one tag on */
  op.type = CMD_APPEND;
  op.tag = 1;
  CHECK(simsm_test_op(sm, 2, ++index, &op, &tail) == 204);
  CHECK(tail == SIMSM_TAG_BYTES);

  /* a producer: seq 0 is 200; the same seq again (a retry after an
  ** unknown outcome) is 204 and appends nothing; seq 1 is 200; a gap is
  ** 409; an older epoch after a newer one is 403 */
  op.producer = 1;
  op.client = 7;
  op.tag = 2;
  CHECK(simsm_test_op(sm, 2, ++index, &op, &tail) == 200);
  CHECK(tail == 2 * SIMSM_TAG_BYTES);
  CHECK(simsm_test_op(sm, 2, ++index, &op, &tail) == 204);
  CHECK(tail == 2 * SIMSM_TAG_BYTES);
  op.seq = 1;
  op.tag = 3;
  CHECK(simsm_test_op(sm, 2, ++index, &op, &tail) == 200);
  op.seq = 3;
  op.tag = 4;
  CHECK(simsm_test_op(sm, 2, ++index, &op, NULL) == 409);
  op.epoch = 1;
  op.seq = 0;
  op.tag = 5;
  CHECK(simsm_test_op(sm, 2, ++index, &op, NULL) == 200);
  op.epoch = 0;
  op.seq = 2;
  op.tag = 6;
  CHECK(simsm_test_op(sm, 2, ++index, &op, NULL) == 403);

  /* the stream holds each accepted tag once, in order */
  CHECK(simsm_tags(&sm[0], 1, 0, tags, 8, &n) == URSULA_OK);
  CHECK(n == 4 && tags[0] == 1 && tags[1] == 2 && tags[2] == 3 &&
        tags[3] == 5);
  CHECK(simsm_tags(&sm[0], 1, 1, tags, 8, &n) == URSULA_ENOTFOUND);

  /* replicas that applied the same log have one digest; one more entry
  ** on one of them tells them apart */
  CHECK(simsm_digest(&sm[0]) != 0 &&
        simsm_digest(&sm[0]) == simsm_digest(&sm[1]));
  op.producer = 0;
  op.tag = 8;
  CHECK(simsm_test_op(sm, 1, ++index, &op, NULL) == 204);
  CHECK(simsm_digest(&sm[0]) != simsm_digest(&sm[1]));

  simsm_free(&sm[0]);
  simsm_free(&sm[1]);
  if (simsm_test_failed) {
    printf("simsm_test: %d checks failed\n", simsm_test_failed);
    return 1;
  }
  printf("simsm_test: the workload on the real state machine follows the protocol\n");
  return 0;
}
