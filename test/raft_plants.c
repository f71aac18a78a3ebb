/*
** raft_plants.c -- proof that the Raft unit tests can fail.  Built once
** per planted bug of src/raft.c (-DRAFT_PLANT=n, the table at the top of
** raft.c) from src/ (the parts are the amalgamation's, unchanged), by
** `make test-raft-plants`: runs the case that unit_raft.c
** names for that bug and exits 0 if it FAILS (the bug is caught), 1 if it
** passes.  Built with RAFT_PLANT=0 it runs every Raft case and exits 0 if
** all pass.
*/
#ifndef URSULA_ENABLE_ASSERT
#define URSULA_ENABLE_ASSERT 1
#endif
/* Only the parts the core uses (raft.c calls nothing of the others), not
** the whole amalgamation: 26 builds then take seconds, not a minute.
** URSULA_PRIVATE is empty (as in make test-split), so the prototypes of
** the parts left out are plain declarations. */
#define URSULA_PRIVATE
#include "../src/internal.h"
#include "../src/util.c"
#include "../src/raft.c"

#include "unit.h"

#include "unit_raft.c"

static int plants_run(const char *name) {
  size_t i;
  for (i = 0; unit_raft_cases[i].name != NULL; i++) {
    if (name != NULL && strcmp(unit_raft_cases[i].name, name) != 0) continue;
    unit_failed = 0;
    unit_raft_cases[i].fn();
    if (unit_failed) unit_fail_total++;
    if (name != NULL) return unit_failed;
  }
  return unit_fail_total;
}

int main(void) {
  size_t i;
  setvbuf(stdout, NULL, _IONBF, 0);
  if (RAFT_PLANT == 0) {
    int bad = plants_run(NULL);
    printf("raft plants: no plant, %d Raft cases failed\n", bad);
    return bad ? 1 : 0;
  }
  for (i = 0; unit_raft_plants[i].name != NULL; i++) {
    if (unit_raft_plants[i].plant != RAFT_PLANT) continue;
    if (plants_run(unit_raft_plants[i].name)) {
      printf("plant %2d: caught by %s\n", RAFT_PLANT, unit_raft_plants[i].name);
      return 0;
    }
    printf("plant %2d: NOT caught by %s\n", RAFT_PLANT,
           unit_raft_plants[i].name);
    return 1;
  }
  printf("plant %2d: no case names it\n", RAFT_PLANT);
  return 1;
}
