/*
** main.c -- the command-line program.
**
** ursula_main() parses flags, starts the server, and waits for SIGINT or
** SIGTERM on a thread of its own (the signals are blocked everywhere else,
** so no handler runs inside a core), then stops the server gracefully (a
** node of a cluster hands its groups' leadership to the others first:
** server.c, GRACEFUL STOP).  Every later signal is passed on too: a
** second one cuts the handover short (server.c, SECOND STOP).  Signals
** are passed on until the cores have stopped, never after: the thread
** takes ms.mu for each, and the server is freed only once ms.srv is NULL
** under that lock.
** SIGHUP re-reads the auth file and the TLS certificate and key
** (ursula_server_reload), on the same
** thread, under the same lock.
** Without threads (URSULA_ENABLE_THREADS=0) a handler stops the server
** instead (and a SIGHUP handler asks core 0 to reload at its next turn's
** end: server_request_reload): ursula_server_stop() is a flag store and a pipe write per
** loop, both async-signal-safe, and the first signal is logged after the
** stop.  The handler runs on the one thread there is, so clearing
** main_srv before the server is freed is enough.
**
** `ursula backup ...` and `ursula restore ...` (the first argument) run
** backup.c's subcommands instead, and exit with their code.
**
** --check-config FILE (conf.c loads it as --config FILE, with the other
** flags) makes ursula_main() check the result instead: main_check() runs
** the checks a start makes before any I/O (server_check_config: the
** settings, and the token and secret files read) and answers "FILE: ok"
** and 0, or the reason and 2, as a bad flag is answered.  No server,
** port, signal or --wal-dir is touched.  A start makes the same checks
** first, so a bad setting exits 2 there too; 1 is for what fails after
** (a port in use, a damaged WAL).
*/
#include "internal.h"

struct main_sig {
  pthread_mutex_t mu;
  struct ursula_server *srv; /* under mu: NULL once the cores stopped */
  sigset_t set;
};

#if URSULA_ENABLE_THREADS
/* Each SIGINT or SIGTERM stops the server (the first gracefully, the
** second at once); SIGHUP reloads; SIGUSR2 ends the thread. */
static void *main_sig_thread(void *arg) {
  struct main_sig *ms = (struct main_sig *)arg;
  int sig = 0, n = 0;
  while (sigwait(&ms->set, &sig) == 0 && sig != SIGUSR2) {
    pthread_mutex_lock(&ms->mu);
    if (ms->srv != NULL && sig == SIGHUP) {
      LOG_I("signal %d: re-reading the auth file and TLS certificate", sig);
      ursula_server_reload(ms->srv);
    } else if (ms->srv != NULL) {
      if (++n == 1) LOG_I("signal %d: stopping", sig);
      ursula_server_stop(ms->srv);
    }
    pthread_mutex_unlock(&ms->mu);
  }
  return NULL;
}
#else
static struct ursula_server *volatile main_srv;
static volatile sig_atomic_t main_signal;

/* Every signal stops the server (a second one at once), until main_srv
** is NULL. */
static void main_on_signal(int sig) {
  struct ursula_server *srv = main_srv;
  if (main_signal == 0) main_signal = sig;
  if (srv != NULL) ursula_server_stop(srv);
}

/* SIGHUP: core 0 reloads at the end of its turn. */
static void main_on_hup(int sig) {
  struct ursula_server *srv = main_srv;
  (void)sig;
  if (srv != NULL) server_request_reload(srv);
}
#endif

/* The answer to --check-config FILE for cfg (FILE, the flags and any
** --config files loaded): "FILE: ok" on out and 0, or "ursula: REASON"
** on errf and 2.  cfg's empty S3 credentials may be filled in from the
** environment. */
static int main_check(struct ursula_config *cfg, const char *path, FILE *out,
                      FILE *errf) {
  char err[URSULA_ERRMSG_LEN];
  err[0] = '\0';
  if (server_check_config(cfg, err) != URSULA_OK) {
    fprintf(errf, "ursula: %s\n", err);
    return 2;
  }
  fprintf(out, "%s: ok\n", path);
  return 0;
}

URSULA_API int ursula_main(int argc, char **argv) {
  struct ursula_config cfg;
  struct ursula_server *srv = NULL;
  struct main_sig ms;
  pthread_t sig_thread;
  char err[URSULA_ERRMSG_LEN];
  const char *check = NULL;
  int rc;
  if (argc > 1 && strcmp(argv[1], "backup") == 0)
    return backup_main(argc - 1, argv + 1);
  if (argc > 1 && strcmp(argv[1], "restore") == 0)
    return backup_restore_main(argc - 1, argv + 1);
  ursula_config_init(&cfg);
  rc = conf_parse_args(&cfg, argc, argv, &check, err);
  if (rc == CONF_HELP) {
    conf_print_help(stdout);
    return 0;
  }
  if (rc == CONF_VERSION) {
    conf_print_version(stdout);
    return 0;
  }
  if (rc == CONF_CHECK) return main_check(&cfg, check, stdout, stderr);
  if (rc != CONF_RUN && check != NULL) { /* the reason alone, for scripts */
    fprintf(stderr, "ursula: %s\n", err);
    return 2;
  }
  if (rc != CONF_RUN) {
    fprintf(stderr, "ursula: %s\n(try --help)\n", err);
    return 2;
  }
  if (server_check_config(&cfg, err) != URSULA_OK) { /* a bad setting */
    fprintf(stderr, "ursula: %s\n", err);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  sigemptyset(&ms.set);
  sigaddset(&ms.set, SIGINT);
  sigaddset(&ms.set, SIGTERM);
  sigaddset(&ms.set, SIGHUP);
  sigaddset(&ms.set, SIGUSR2); /* ends the signal thread after a stop */
  pthread_sigmask(SIG_BLOCK, &ms.set, NULL);
  rc = ursula_server_start(&cfg, &srv, err);
  if (rc != URSULA_OK) {
    fprintf(stderr, "ursula: %s\n", err);
    return 1;
  }
  ms.srv = srv;
#if URSULA_ENABLE_THREADS
  pthread_mutex_init(&ms.mu, NULL);
  if (pthread_create(&sig_thread, NULL, main_sig_thread, &ms) != 0) {
    fprintf(stderr, "ursula: cannot start the signal thread\n");
    ursula_server_stop(srv);
    ursula_server_wait(srv);
    pthread_mutex_destroy(&ms.mu);
    return 1;
  }
  rc = server_wait_cores(srv);
  pthread_mutex_lock(&ms.mu);
  ms.srv = NULL; /* no signal reaches srv from now on */
  pthread_mutex_unlock(&ms.mu);
  pthread_kill(sig_thread, SIGUSR2);
  pthread_join(sig_thread, NULL);
  pthread_mutex_destroy(&ms.mu);
  server_release(srv);
#else
  {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = main_on_signal;
    sigemptyset(&sa.sa_mask);
    main_srv = srv;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = main_on_hup;
    sigaction(SIGHUP, &sa, NULL);
    pthread_sigmask(SIG_UNBLOCK, &ms.set, NULL);
    (void)sig_thread;
  }
  rc = server_wait_cores(srv);
  main_srv = NULL; /* no handler reaches srv from now on */
  server_release(srv);
  if (main_signal != 0) LOG_I("stopped by signal %d", (int)main_signal);
#endif
  return rc == URSULA_OK ? 0 : 1;
}

#if URSULA_ENABLE_MAIN
int main(int argc, char **argv) {
  return ursula_main(argc, argv);
}
#endif
