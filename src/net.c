/*
** net.c -- listening sockets.
*/
#include "internal.h"

/* Open a non-blocking TCP listener on host:port (port 0 = any free port).
** Returns the fd and sets *bound_port, or -1 with a reason in err. */
URSULA_PRIVATE int net_listen(const char *host, int port, int *bound_port,
                              char *err) {
  struct addrinfo hints, *res = NULL, *ai;
  char portstr[16];
  int fd = -1, one = 1, rc;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  snprintf(portstr, sizeof(portstr), "%d", port);
  rc = getaddrinfo(host, portstr, &hints, &res);
  if (rc != 0) {
    if (err)
      snprintf(err, URSULA_ERRMSG_LEN, "listen %.100s: %s", host,
               gai_strerror(rc));
    return -1;
  }
  for (ai = res; ai != NULL; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) continue;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
      break;
    if (err)
      snprintf(err, URSULA_ERRMSG_LEN, "listen %.100s:%d: %s", host, port,
               strerror(errno));
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) return -1;
  os_set_nonblock(fd);
  os_set_cloexec(fd);
  {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    *bound_port = port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
      if (ss.ss_family == AF_INET)
        *bound_port = ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port);
      else if (ss.ss_family == AF_INET6)
        *bound_port = ntohs(((struct sockaddr_in6 *)(void *)&ss)->sin6_port);
    }
  }
  return fd;
}
