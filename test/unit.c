/*
** unit.c -- the unit-test driver.  It compiles the amalgamation itself, so
** what is tested is what ships, and reaches internals directly.
**
**   make test-unit              build with ASan + UBSan and run all
**   ./test/unit http            run the cases whose name contains "http"
**
** Output is TAP: "ok N - name" / "not ok N - name", then a plan line.
** Each unit_<module>.c defines static test functions and a table
** unit_<module>_cases[] ending in {NULL, NULL}.
*/
#define URSULA_ENABLE_MAIN 0
#ifndef URSULA_ENABLE_ASSERT
#define URSULA_ENABLE_ASSERT 1
#endif
/* small, so that the server tests checkpoint their journals often */
#define JOURNAL_BYTES (16 * 1024)
#include "../ursula.c"

#include "unit.h"

#include "unit_util.c"
#include "unit_os.c"
#include "unit_http.c"
#include "unit_json.c"
#include "unit_loop.c"
#include "unit_conf.c"
#include "unit_crypto.c"
#include "unit_auth.c"
#include "unit_sigv4.c"
#include "unit_stream.c"
#include "unit_wal.c"
#include "unit_journal.c"
#include "unit_cold.c"
#include "unit_server.c"
#include "unit_sse.c"
#include "unit_api.c"
#include "unit_raft.c"
#include "unit_cluster.c"
#include "unit_peer.c"

static const struct unit_case *const unit_tables[] = {
    unit_util_cases,  unit_os_cases,     unit_http_cases,  unit_json_cases,
    unit_loop_cases,  unit_conf_cases,   unit_crypto_cases, unit_auth_cases,
    unit_sigv4_cases,
    unit_stream_cases, unit_wal_cases,   unit_journal_cases, unit_cold_cases,
    unit_server_cases,
    unit_sse_cases,   unit_api_cases,    unit_raft_cases,  unit_cluster_cases,
    unit_peer_cases,
};

int main(int argc, char **argv) {
  const char *filter = argc > 1 ? argv[1] : NULL;
  size_t t, i;
  int n = 0;
  setvbuf(stdout, NULL, _IONBF, 0);
  log_set_level(LOG_ERROR);
  for (t = 0; t < sizeof(unit_tables) / sizeof(unit_tables[0]); t++) {
    for (i = 0; unit_tables[t][i].name != NULL; i++) {
      const struct unit_case *c = &unit_tables[t][i];
      if (filter != NULL && strstr(c->name, filter) == NULL) continue;
      unit_failed = 0;
      c->fn();
      n++;
      printf("%sok %d - %s\n", unit_failed ? "not " : "", n, c->name);
      if (unit_failed) unit_fail_total++;
    }
  }
  printf("1..%d\n", n);
  if (unit_fail_total) printf("# %d failed\n", unit_fail_total);
  return unit_fail_total ? 1 : 0;
}
