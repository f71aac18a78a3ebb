/*
** tls.c -- a blocking client connection with timeouts: plain TCP, or TLS
** through BearSSL when built with URSULA_ENABLE_TLS (make TLS=1).
**
** The S3 client (s3.c) runs on its own threads, so blocking I/O is what
** it wants; every step is bounded by the connection's timeout instead:
** connect() runs non-blocking under poll(), and reads and writes carry
** SO_RCVTIMEO / SO_SNDTIMEO.  A timeout fails the connection for good
** (the caller opens a new one to retry).
**
** TLS: BearSSL's full client profile (TLS 1.2; BearSSL has no 1.3) over
** the socket, with the host name sent as SNI and checked against the
** server's certificate, which must chain to one of the trust anchors
** loaded at run time from a PEM bundle (tls_anchors_load).
*/
#include "internal.h"

#ifdef MSG_NOSIGNAL
#define TLS_SEND_FLAGS MSG_NOSIGNAL
#else
#define TLS_SEND_FLAGS 0 /* SIGPIPE is ignored by the server instead */
#endif

struct tls_conn {
  int fd;
#if URSULA_ENABLE_TLS
  int secure;
  br_ssl_client_context sc;
  br_x509_minimal_context xc;
  br_sslio_context io;
  unsigned char iobuf[BR_SSL_BUFSIZE_BIDI];
#endif
};

/* ------------------------------------------------------------ TCP */

/* Connect fd to ai within timeout_ms; 0 or -1 with errno. */
static int tls_tcp_connect(int fd, const struct addrinfo *ai, int timeout_ms) {
  struct pollfd p;
  int e = 0, flags = fcntl(fd, F_GETFL, 0);
  socklen_t len = sizeof(e);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return -1;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) return -1;
    p.fd = fd;
    p.events = POLLOUT;
    p.revents = 0;
    if (poll(&p, 1, timeout_ms) != 1) {
      errno = ETIMEDOUT;
      return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) return -1;
    if (e != 0) {
      errno = e;
      return -1;
    }
  }
  return fcntl(fd, F_SETFL, flags);
}

static int tls_tcp_open(const char *host, int port, int timeout_ms, char *err) {
  struct addrinfo hints, *res = NULL, *ai;
  struct timeval tv;
  char service[16];
  int fd = -1, rc, one = 1, e = 0;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(service, sizeof(service), "%d", port);
  rc = getaddrinfo(host, service, &hints, &res);
  if (rc != 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "%.100s: %s", host, gai_strerror(rc));
    return -1;
  }
  for (ai = res; ai != NULL; ai = ai->ai_next) { /* each address in turn */
    fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) {
      e = errno;
      continue;
    }
    os_set_cloexec(fd);
    if (tls_tcp_connect(fd, ai, timeout_ms) == 0) break;
    e = errno;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    snprintf(err, URSULA_ERRMSG_LEN, "connecting to %.100s:%d: %s", host, port,
             strerror(e));
    return -1;
  }
  tv.tv_sec = timeout_ms / 1000;
  tv.tv_usec = (timeout_ms % 1000) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

static long tls_tcp_read(int fd, void *p, size_t n) {
  for (;;) {
    ssize_t k = recv(fd, p, n, 0);
    if (k >= 0) return (long)k;
    if (errno != EINTR) return -1;
  }
}

static int tls_tcp_write(int fd, const void *p, size_t n) {
  const char *q = (const char *)p;
  while (n > 0) {
    ssize_t k = send(fd, q, n, TLS_SEND_FLAGS);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    q += k;
    n -= (size_t)k;
  }
  return 0;
}

/* ------------------------------------------------------------ TLS */

#if URSULA_ENABLE_TLS

struct tls_anchors {
  br_x509_trust_anchor *ta;
  size_t n, cap;
};

static void tls_buf_push(void *ctx, const void *p, size_t n) {
  buf_append((struct buf *)ctx, p, n);
}

static unsigned char *tls_copy(const void *p, size_t n) {
  unsigned char *q = (unsigned char *)URSULA_MALLOC(n ? n : 1);
  if (q != NULL && n > 0) memcpy(q, p, n);
  return q;
}

/* Turn one DER certificate into a trust anchor (name, CA flag, and a deep
** copy of its key); certificates with other key types are skipped. */
static int tls_add_anchor(struct tls_anchors *a, const struct buf *der) {
  br_x509_decoder_context dc;
  br_x509_trust_anchor *ta;
  br_x509_pkey *pk;
  struct buf dn;
  int rc = URSULA_OK;
  memset(&dn, 0, sizeof(dn));
  br_x509_decoder_init(&dc, tls_buf_push, &dn);
  br_x509_decoder_push(&dc, der->ptr, der->len);
  pk = br_x509_decoder_get_pkey(&dc);
  if (pk == NULL ||
      (pk->key_type != BR_KEYTYPE_RSA && pk->key_type != BR_KEYTYPE_EC)) {
    buf_free(&dn);
    return URSULA_OK; /* not usable as an anchor: skip it */
  }
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 64;
    ta = (br_x509_trust_anchor *)URSULA_REALLOC(a->ta, cap * sizeof(*ta));
    if (ta == NULL) {
      buf_free(&dn);
      return URSULA_ENOMEM;
    }
    a->ta = ta;
    a->cap = cap;
  }
  ta = &a->ta[a->n];
  memset(ta, 0, sizeof(*ta));
  ta->dn.data = tls_copy(dn.ptr, dn.len);
  ta->dn.len = dn.len;
  ta->flags = br_x509_decoder_isCA(&dc) ? BR_X509_TA_CA : 0;
  ta->pkey.key_type = pk->key_type;
  if (pk->key_type == BR_KEYTYPE_RSA) {
    ta->pkey.key.rsa.n = tls_copy(pk->key.rsa.n, pk->key.rsa.nlen);
    ta->pkey.key.rsa.nlen = pk->key.rsa.nlen;
    ta->pkey.key.rsa.e = tls_copy(pk->key.rsa.e, pk->key.rsa.elen);
    ta->pkey.key.rsa.elen = pk->key.rsa.elen;
    if (ta->pkey.key.rsa.n == NULL || ta->pkey.key.rsa.e == NULL)
      rc = URSULA_ENOMEM;
  } else {
    ta->pkey.key.ec.curve = pk->key.ec.curve;
    ta->pkey.key.ec.q = tls_copy(pk->key.ec.q, pk->key.ec.qlen);
    ta->pkey.key.ec.qlen = pk->key.ec.qlen;
    if (ta->pkey.key.ec.q == NULL) rc = URSULA_ENOMEM;
  }
  a->n++; /* freed with the rest even when a copy failed */
  buf_free(&dn);
  return ta->dn.data == NULL ? URSULA_ENOMEM : rc;
}

URSULA_PRIVATE void tls_anchors_free(struct tls_anchors *a) {
  size_t i;
  if (a == NULL) return;
  for (i = 0; i < a->n; i++) {
    br_x509_trust_anchor *ta = &a->ta[i];
    URSULA_FREE(ta->dn.data);
    if (ta->pkey.key_type == BR_KEYTYPE_RSA) {
      URSULA_FREE(ta->pkey.key.rsa.n);
      URSULA_FREE(ta->pkey.key.rsa.e);
    } else {
      URSULA_FREE(ta->pkey.key.ec.q);
    }
  }
  URSULA_FREE(a->ta);
  URSULA_FREE(a);
}

URSULA_PRIVATE int tls_anchors_load(struct tls_anchors **out,
                                    const char *pem_path, char *err) {
  br_pem_decoder_context pc;
  struct tls_anchors *a;
  struct buf file, der;
  FILE *f = fopen(pem_path, "rb");
  char tmp[4096];
  size_t n, off = 0;
  int in_cert = 0, rc = URSULA_OK;
  if (f == NULL) {
    snprintf(err, URSULA_ERRMSG_LEN, "CA file %.150s: %s", pem_path,
             strerror(errno));
    return URSULA_EIO;
  }
  memset(&file, 0, sizeof(file));
  memset(&der, 0, sizeof(der));
  while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) buf_append(&file, tmp, n);
  fclose(f);
  buf_append(&file, "\n", 1); /* ends a last line without one */
  a = (struct tls_anchors *)URSULA_MALLOC(sizeof(*a));
  if (a == NULL) {
    buf_free(&file);
    return URSULA_ENOMEM;
  }
  memset(a, 0, sizeof(*a));
  br_pem_decoder_init(&pc);
  while (off < file.len && rc == URSULA_OK) {
    off += br_pem_decoder_push(&pc, file.ptr + off, file.len - off);
    switch (br_pem_decoder_event(&pc)) {
      case BR_PEM_BEGIN_OBJ:
        in_cert = strcmp(br_pem_decoder_name(&pc), "CERTIFICATE") == 0 ||
                  strcmp(br_pem_decoder_name(&pc), "X509 CERTIFICATE") == 0;
        der.len = 0;
        br_pem_decoder_setdest(&pc, in_cert ? tls_buf_push : NULL,
                               in_cert ? &der : NULL);
        break;
      case BR_PEM_END_OBJ:
        if (in_cert) rc = tls_add_anchor(a, &der);
        in_cert = 0;
        break;
      case BR_PEM_ERROR:
        rc = URSULA_EINVAL;
        break;
      default:
        break;
    }
  }
  buf_free(&file);
  buf_free(&der);
  if (rc == URSULA_OK && a->n == 0) rc = URSULA_EINVAL;
  if (rc != URSULA_OK) {
    snprintf(err, URSULA_ERRMSG_LEN, "CA file %.150s: %s", pem_path,
             rc == URSULA_ENOMEM ? "out of memory"
                                 : "no usable certificate in PEM form");
    tls_anchors_free(a);
    return rc;
  }
  *out = a;
  return URSULA_OK;
}

static int tls_io_read(void *ctx, unsigned char *p, size_t n) {
  long k = tls_tcp_read(*(int *)ctx, p, n);
  return k > 0 ? (int)k : -1; /* BearSSL: -1 for EOF, error or timeout */
}

static int tls_io_write(void *ctx, const unsigned char *p, size_t n) {
  for (;;) {
    ssize_t k = send(*(int *)ctx, p, n, TLS_SEND_FLAGS);
    if (k > 0) return (int)k;
    if (k < 0 && errno == EINTR) continue;
    return -1;
  }
}

/* BearSSL's error codes, in words where a user can act on them. */
static const char *tls_reason(int e) {
  switch (e) {
    case BR_ERR_X509_NOT_TRUSTED:
      return "certificate not trusted (check --s3-ca-file)";
    case BR_ERR_X509_BAD_SERVER_NAME:
      return "certificate name does not match the host";
    case BR_ERR_X509_EXPIRED:
      return "certificate expired or not yet valid";
    case BR_ERR_IO:
      return "connection failed or timed out during the handshake";
    default:
      return NULL;
  }
}

static int tls_handshake(struct tls_conn *c, const char *host,
                         const struct tls_anchors *a, char *err) {
  int e;
  br_ssl_client_init_full(&c->sc, &c->xc, a->ta, a->n);
  br_ssl_engine_set_buffer(&c->sc.eng, c->iobuf, sizeof(c->iobuf), 1);
  if (!br_ssl_client_reset(&c->sc, host, 0)) {
    snprintf(err, URSULA_ERRMSG_LEN, "TLS to %.100s: cannot start (%d)", host,
             br_ssl_engine_last_error(&c->sc.eng));
    return URSULA_EIO;
  }
  br_sslio_init(&c->io, &c->sc.eng, tls_io_read, &c->fd, tls_io_write, &c->fd);
  c->secure = 1;
  br_sslio_flush(&c->io); /* runs the handshake */
  if (br_ssl_engine_current_state(&c->sc.eng) == BR_SSL_CLOSED ||
      (e = br_ssl_engine_last_error(&c->sc.eng)) != BR_ERR_OK) {
    e = br_ssl_engine_last_error(&c->sc.eng);
    if (tls_reason(e) != NULL)
      snprintf(err, URSULA_ERRMSG_LEN, "TLS to %.100s: %s", host,
               tls_reason(e));
    else
      snprintf(err, URSULA_ERRMSG_LEN, "TLS to %.100s: BearSSL error %d", host,
               e);
    return URSULA_EIO;
  }
  return URSULA_OK;
}

#else /* no TLS in this build */

struct tls_anchors {
  int unused;
};

URSULA_PRIVATE int tls_anchors_load(struct tls_anchors **out,
                                    const char *pem_path, char *err) {
  (void)out, (void)pem_path;
  snprintf(err, URSULA_ERRMSG_LEN, "this build has no TLS (make TLS=1)");
  return URSULA_ENOTSUP;
}

URSULA_PRIVATE void tls_anchors_free(struct tls_anchors *a) {
  (void)a;
}

#endif /* URSULA_ENABLE_TLS */

/* ------------------------------------------------------------ the API */

URSULA_PRIVATE int tls_connect(struct tls_conn **out, const char *host,
                               int port, const struct tls_anchors *anchors,
                               int timeout_ms, char *err) {
  struct tls_conn *c;
  int fd;
#if !URSULA_ENABLE_TLS
  if (anchors != NULL) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "https: this build has no TLS (make TLS=1)");
    return URSULA_ENOTSUP;
  }
#endif
  if ((fd = tls_tcp_open(host, port, timeout_ms, err)) < 0) return URSULA_EIO;
  c = (struct tls_conn *)URSULA_MALLOC(sizeof(*c));
  if (c == NULL) {
    close(fd);
    return URSULA_ENOMEM;
  }
  memset(c, 0, sizeof(*c));
  c->fd = fd;
#if URSULA_ENABLE_TLS
  if (anchors != NULL) {
    int rc = tls_handshake(c, host, anchors, err);
    if (rc != URSULA_OK) {
      tls_close(c);
      return rc;
    }
  }
#endif
  *out = c;
  return URSULA_OK;
}

URSULA_PRIVATE int tls_write_all(struct tls_conn *c, const void *p, size_t n) {
#if URSULA_ENABLE_TLS
  if (c->secure)
    return br_sslio_write_all(&c->io, p, n) == 0 && br_sslio_flush(&c->io) == 0
               ? 0
               : -1;
#endif
  return tls_tcp_write(c->fd, p, n);
}

URSULA_PRIVATE long tls_read(struct tls_conn *c, void *p, size_t n) {
#if URSULA_ENABLE_TLS
  if (c->secure) {
    int k = br_sslio_read(&c->io, p, n);
    if (k > 0) return k;
    /* a clean close_notify reads as the end; anything else as an error */
    return br_ssl_engine_current_state(&c->sc.eng) == BR_SSL_CLOSED &&
                   br_ssl_engine_last_error(&c->sc.eng) == BR_ERR_OK
               ? 0
               : -1;
  }
#endif
  return tls_tcp_read(c->fd, p, n);
}

URSULA_PRIVATE void tls_close(struct tls_conn *c) {
  if (c == NULL) return;
  close(c->fd); /* no close_notify: the HTTP framing ended every body */
  URSULA_FREE(c);
}
