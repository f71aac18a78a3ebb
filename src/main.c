/*
** main.c -- the command-line program.
**
** ursula_main() parses flags, starts the server, and waits for SIGINT or
** SIGTERM on a thread of its own (the signals are blocked everywhere else,
** so no handler runs inside a core), then stops the server gracefully (a
** node of a cluster hands its groups' leadership to the others first:
** server.c, GRACEFUL STOP).
** Without threads (URSULA_ENABLE_THREADS=0) a handler stops the server
** instead: ursula_server_stop() is a flag store and a pipe write per
** loop, both async-signal-safe, and the signal is logged after the stop.
*/
#include "internal.h"

struct main_sig {
  struct ursula_server *srv;
  sigset_t set;
};

#if URSULA_ENABLE_THREADS
static void *main_sig_thread(void *arg) {
  struct main_sig *ms = (struct main_sig *)arg;
  int sig = 0;
  if (sigwait(&ms->set, &sig) == 0 && sig != SIGUSR2) {
    LOG_I("signal %d: stopping", sig);
    ursula_server_stop(ms->srv);
  }
  return NULL;
}
#else
static struct ursula_server *volatile main_srv;
static volatile sig_atomic_t main_signal;

/* The first signal stops the server; later ones find main_srv NULL. */
static void main_on_signal(int sig) {
  struct ursula_server *srv = main_srv;
  main_srv = NULL;
  if (main_signal == 0) main_signal = sig;
  if (srv != NULL) ursula_server_stop(srv);
}
#endif

URSULA_API int ursula_main(int argc, char **argv) {
  struct ursula_config cfg;
  struct ursula_server *srv = NULL;
  struct main_sig ms;
  pthread_t sig_thread;
  char err[URSULA_ERRMSG_LEN];
  int rc;
  ursula_config_init(&cfg);
  rc = conf_parse_args(&cfg, argc, argv, err);
  if (rc == CONF_HELP) {
    conf_print_help(stdout);
    return 0;
  }
  if (rc == CONF_VERSION) {
    conf_print_version(stdout);
    return 0;
  }
  if (rc != CONF_RUN) {
    fprintf(stderr, "ursula: %s\n(try --help)\n", err);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  sigemptyset(&ms.set);
  sigaddset(&ms.set, SIGINT);
  sigaddset(&ms.set, SIGTERM);
  sigaddset(&ms.set, SIGUSR2); /* ends the signal thread after a stop */
  pthread_sigmask(SIG_BLOCK, &ms.set, NULL);
  rc = ursula_server_start(&cfg, &srv, err);
  if (rc != URSULA_OK) {
    fprintf(stderr, "ursula: %s\n", err);
    return 1;
  }
  ms.srv = srv;
#if URSULA_ENABLE_THREADS
  if (pthread_create(&sig_thread, NULL, main_sig_thread, &ms) != 0) {
    fprintf(stderr, "ursula: cannot start the signal thread\n");
    ursula_server_stop(srv);
    ursula_server_wait(srv);
    return 1;
  }
  rc = ursula_server_wait(srv);
  pthread_kill(sig_thread, SIGUSR2);
  pthread_join(sig_thread, NULL);
#else
  {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = main_on_signal;
    sigemptyset(&sa.sa_mask);
    main_srv = srv;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    pthread_sigmask(SIG_UNBLOCK, &ms.set, NULL);
    (void)sig_thread;
  }
  rc = ursula_server_wait(srv);
  if (main_signal != 0) LOG_I("stopped by signal %d", (int)main_signal);
#endif
  return rc == URSULA_OK ? 0 : 1;
}

#if URSULA_ENABLE_MAIN
int main(int argc, char **argv) {
  return ursula_main(argc, argv);
}
#endif
