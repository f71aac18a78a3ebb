/*
** snapshot.c -- fuzz stream_restore(), the decoder of a group's state
** machine snapshot (the payload of the file "snapshot", and of an image
** another node sends).
**
** Input: a snapshot payload.  Properties:
**   - stream_restore() returns URSULA_OK or URSULA_ECORRUPT (and the
**     state, whatever it holds, frees cleanly);
**   - a state that restored is one apply could have made: each stream's
**     units are ascending and end at its tail, its chunks run back to
**     back from 0 and end on a unit boundary at or before the tail, every
**     unit past them names a log entry;
**   - restore then snapshot round-trips: stream_snapshot() gives back
**     exactly the input (the snapshot is canonical: one state, one byte
**     string), and stream_digest() agrees with it;
**   - reads of every stream (at its start, middle and end, from memory,
**     the log and chunks, through stand-ins that check what they are
**     asked for) and the log-position queries never crash.
*/
#include "../../ursula.c"
#include "fuzz.h"

#define FUZZ_MAX_READ 4096          /* bytes of one read */
#define FUZZ_MAX_PIECE (1024 * 1024) /* a log piece or chunk we hand out */

static char fuzz_zeros[FUZZ_MAX_PIECE];

/* The group's read_cold stand-in: len bytes of entry loc->index. */
static int fuzz_read_cold(void *ctx, const struct stream_loc *loc,
                          uint64_t len, struct buf *out) {
  (void)ctx;
  FUZZ_CHECK(loc->index != 0 && len > 0);
  if (len > FUZZ_MAX_PIECE) return URSULA_EIO;
  return buf_append(out, fuzz_zeros, (size_t)len);
}

/* The tier's read_chunk stand-in: the chunk's bytes, as many as it
** spans (the cache holds chunks checked against their range). */
static int fuzz_read_chunk(void *ctx, const struct stream *s,
                           const struct stream_chunk *ch, const char **p) {
  (void)ctx;
  FUZZ_CHECK(ch >= s->chunks && ch < s->chunks + s->n_chunks);
  FUZZ_CHECK(ch->start < ch->end);
  if (ch->end - ch->start > FUZZ_MAX_PIECE) return URSULA_EIO;
  *p = fuzz_zeros;
  return URSULA_OK;
}

static void fuzz_check_stream(const struct stream *s) {
  size_t i;
  uint64_t prev = 0;
  FUZZ_CHECK(s->path != NULL && s->path_len > 0);
  FUZZ_CHECK(s->hash == util_hash64(s->path, s->path_len));
  for (i = 0; i < s->n_chunks; i++) {
    FUZZ_CHECK(s->chunks[i].start == prev);
    FUZZ_CHECK(s->chunks[i].end > s->chunks[i].start);
    FUZZ_CHECK(s->chunks[i].name != NULL && s->chunks[i].name[0] != '\0');
    prev = s->chunks[i].end;
  }
  FUZZ_CHECK(prev == s->cold_end && s->cold_end <= s->tail);
  FUZZ_CHECK(s->cold_units <= s->n_bounds);
  prev = 0;
  for (i = 0; i < s->n_bounds; i++) {
    FUZZ_CHECK(s->bounds[i] > prev);
    prev = s->bounds[i];
    if (i >= s->cold_units) FUZZ_CHECK(s->locs[i].index != 0);
  }
  FUZZ_CHECK(prev == s->tail);
  if (s->cold_units > 0)
    FUZZ_CHECK(s->bounds[s->cold_units - 1] == s->cold_end);
  else
    FUZZ_CHECK(s->cold_end == 0);
  FUZZ_CHECK(s->local.hot_start == s->tail && s->local.data.len == 0);
}

static void fuzz_read(struct stream_state *st, const struct stream *s,
                      uint64_t start) {
  struct buf out;
  uint64_t end;
  int rc;
  if (start > s->tail) return;
  end = s->tail - start > FUZZ_MAX_READ ? start + FUZZ_MAX_READ : s->tail;
  memset(&out, 0, sizeof(out));
  rc = stream_read(st, s, start, end, &out);
  FUZZ_CHECK(rc == URSULA_OK || rc == URSULA_EIO);
  if (rc == URSULA_OK) FUZZ_CHECK(out.len == end - start);
  buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct stream_state st;
  struct buf snap, units;
  char *p = fuzz_copy(data, size);
  uint64_t digest = 0;
  size_t i;
  int rc;
  fuzz_quiet();
  stream_state_init(&st);
  st.read_cold = fuzz_read_cold;
  st.read_chunk = fuzz_read_chunk;
  memset(&snap, 0, sizeof(snap));
  memset(&units, 0, sizeof(units));
  rc = stream_restore(&st, p, size);
  FUZZ_CHECK(rc == URSULA_OK || rc == URSULA_ECORRUPT);
  if (rc == URSULA_OK) {
    for (i = 0; i < st.cap; i++) {
      struct stream *s;
      for (s = st.slots[i]; s != NULL; s = s->hnext) {
        fuzz_check_stream(s);
        FUZZ_CHECK(stream_find(&st, util_str(s->path)) == s ||
                   strlen(s->path) != s->path_len);
        fuzz_read(&st, s, 0);
        fuzz_read(&st, s, s->cold_end);
        fuzz_read(&st, s, s->tail / 2);
        fuzz_read(&st, s, s->tail > 0 ? s->tail - 1 : 0);
      }
    }
    FUZZ_CHECK(stream_snapshot(&st, &snap) == URSULA_OK);
    FUZZ_CHECK(stream_digest(&st, &digest) == URSULA_OK);
    if (size > 0 && (unsigned char)p[0] == STREAM_SNAP_VERSION) {
      /* the canonical form: restore then snapshot gives the input back */
      FUZZ_CHECK(snap.len == size && memcmp(snap.ptr, p, size) == 0);
      FUZZ_CHECK(digest == util_hash64(p, size));
    } else { /* an older version is read, then written as the current */
      struct stream_state again;
      struct buf snap2;
      stream_state_init(&again);
      again.read_cold = fuzz_read_cold;
      again.read_chunk = fuzz_read_chunk;
      memset(&snap2, 0, sizeof(snap2));
      FUZZ_CHECK(stream_restore(&again, snap.ptr, snap.len) == URSULA_OK);
      FUZZ_CHECK(stream_snapshot(&again, &snap2) == URSULA_OK);
      FUZZ_CHECK(snap2.len == snap.len &&
                 memcmp(snap2.ptr, snap.ptr, snap.len) == 0);
      buf_free(&snap2);
      stream_state_free(&again);
    }
    FUZZ_CHECK(stream_log_units(&st, UINT64_MAX, &units) == URSULA_OK);
    (void)stream_oldest_index(&st, 0);
  }
  stream_state_free(&st);
  buf_free(&snap);
  buf_free(&units);
  free(p);
  return 0;
}
