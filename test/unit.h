/*
** unit.h -- the unit-test harness: the case table entry and ASSERT.  Used
** by test/unit.c (every case) and test/raft_plants.c (the Raft cases,
** built once per planted bug).  Include it after the amalgamation.
*/
#ifndef URSULA_UNIT_H
#define URSULA_UNIT_H
struct unit_case {
  const char *name;
  void (*fn)(void);
};

static int unit_failed; /* failures in the running case */
static int unit_fail_total;

/* Check a condition; on failure print where and continue the case. */
#define ASSERT(expr)                                                     \
  do {                                                                   \
    if (!(expr)) {                                                       \
      printf("# %s:%d: ASSERT(%s) failed\n", __FILE__, __LINE__, #expr); \
      unit_failed++;                                                     \
    }                                                                    \
  } while (0)

/* Compare two byte strings; print both on mismatch. */
#define ASSERT_MEM(p, n, cstr)                                           \
  do {                                                                   \
    size_t unit_n_ = strlen(cstr);                                       \
    if ((size_t)(n) != unit_n_ || memcmp((p), (cstr), unit_n_) != 0) {   \
      printf("# %s:%d: got \"%.*s\", want \"%s\"\n", __FILE__, __LINE__, \
             (int)(n), (const char *)(p), (cstr));                       \
      unit_failed++;                                                     \
    }                                                                    \
  } while (0)

#endif
