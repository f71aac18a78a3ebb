/*
** tlsserve.c -- HTTPS on the public listener: the server side of TLS,
** through BearSSL, driven by the event loop (built with
** URSULA_ENABLE_TLS, make TLS=1; without it, only the error that says so).
**
** CREDENTIALS.  --tls-cert FILE holds the chain in PEM, leaf first;
** --tls-key FILE one private key (RSA or EC, in the PEM forms BearSSL's
** key decoder reads).  tlss_creds_load() decodes both, checks that the
** key is the one of the leaf's public key, and returns them as one
** immutable object with a reference count: BearSSL keeps pointers into
** the chain and the key for as long as a connection lives, so every
** connection holds a reference (tlss_conn_new) until it is freed, and a
** reload (server.c) only swaps the server's pointer for new connections.
**
** THE ENGINE LOOP.  A connection's engine (struct tlss_conn: a
** br_ssl_server_context and its bidirectional buffer) sits between the
** socket and conn.c, which sees plaintext only, through the same calls as
** the socket's (recv, sendv, shutdown, close), never blocking:
**
**   tlss_recv   loops over the engine's state until the caller's buffer
**               is full or nothing more can happen now: decrypted bytes
**               waiting (RECVAPP) are copied out first; records to send
**               (SENDREC: handshake messages, alerts) are written to the
**               socket; then ciphertext is read from the socket into the
**               engine (RECVREC).  It returns what it copied, or -1 with
**               EAGAIN when the socket has no more for now, 0 at the end.
**               Because it stops only when the buffer is full or the
**               socket is drained, a short read means what it means for
**               a plain socket; but a full one may leave plaintext in the
**               engine, which no readiness event will announce: conn.c
**               asks tlss_wants() and runs its reader again by itself
**               (TLSS_PLAIN) as level-triggered polling would.
**   tlss_sendv  copies plaintext into the engine (SENDAPP) as far as it
**               takes it, flushes it into records and writes them to the
**               socket; bytes taken count as sent.  Records the socket
**               refused stay in the engine (TLSS_SEND): conn.c keeps
**               LOOP_WRITE registered while there are any, even when the
**               HTTP layer has nothing to write, and tlss_push() writes
**               them then -- during the handshake too, when the HTTP
**               layer only wants to read.  Before the handshake ends the
**               engine takes no plaintext (TLSS_CAN_SEND is clear): then
**               conn.c does not wait for writability, which would spin.
**   tlss_shutdown  sends close_notify (br_ssl_engine_close), then the
**               socket's FIN once every record is out.
**
** An engine that closes with an error (a client speaking plain HTTP to
** the port, a failed handshake, a bad record) ends its connection: recv
** and sendv fail with ECONNRESET and the cause is logged at debug level.
** Renegotiation is refused, and only TLS 1.2 is spoken.
*/
#include "internal.h"

#ifdef MSG_NOSIGNAL
#define TLSS_SEND_FLAGS MSG_NOSIGNAL
#else
#define TLSS_SEND_FLAGS 0 /* SIGPIPE is ignored by the server instead */
#endif

#if URSULA_ENABLE_TLS

struct tlss_creds {
  pthread_mutex_t mu; /* over refs */
  int refs;
  br_x509_certificate *chain; /* leaf first; data owned */
  size_t n_chain;
  int key_type;        /* BR_KEYTYPE_RSA or BR_KEYTYPE_EC */
  int issuer_key_type; /* EC: the leaf's signer's key type */
  br_skey_decoder_context key; /* the decoded key: its pointers point
                                  into the context itself */
};

struct tlss_conn {
  br_ssl_server_context sc;
  struct tlss_creds *creds; /* a reference, until tlss_conn_free */
  int closing;              /* close_notify asked for */
  int shut;                 /* and the socket's write side shut down */
  unsigned char iobuf[BR_SSL_BUFSIZE_BIDI];
};

/* ------------------------------------------------------------ files */

static void tlss_buf_push(void *ctx, const void *p, size_t n) {
  buf_append((struct buf *)ctx, p, n);
}

/* Read the file at path into b: URSULA_OK, or URSULA_EIO with the reason
** (naming what, "--tls-cert" or "--tls-key", and the path) in err. */
static int tlss_read_file(const char *what, const char *path, struct buf *b,
                          char *err) {
  FILE *f = fopen(path, "rb");
  char tmp[4096];
  size_t n;
  int bad;
  if (f == NULL) {
    snprintf(err, URSULA_ERRMSG_LEN, "%s %.200s: %s", what, path,
             strerror(errno));
    return URSULA_EIO;
  }
  while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) buf_append(b, tmp, n);
  bad = ferror(f);
  fclose(f);
  if (bad) {
    snprintf(err, URSULA_ERRMSG_LEN, "%s %.200s: read error", what, path);
    return URSULA_EIO;
  }
  buf_append(b, "\n", 1); /* ends a last line without one */
  return URSULA_OK;
}

/* One PEM object found by tlss_pem_each: its name and its bytes. */
typedef int (*tlss_pem_fn)(void *ctx, const char *name, const struct buf *der);

/* Call fn for each PEM object of file, in order, until it returns
** non-zero: the number of objects seen, or -1 if the PEM is malformed,
** -2 if fn refused one. */
static int tlss_pem_each(const struct buf *file, tlss_pem_fn fn, void *ctx) {
  br_pem_decoder_context pc;
  struct buf der;
  char name[128];
  size_t off = 0;
  int n = 0, rc = 0;
  memset(&der, 0, sizeof(der));
  name[0] = '\0';
  br_pem_decoder_init(&pc);
  while (off < file->len && rc == 0) {
    off += br_pem_decoder_push(&pc, file->ptr + off, file->len - off);
    switch (br_pem_decoder_event(&pc)) {
      case BR_PEM_BEGIN_OBJ:
        snprintf(name, sizeof(name), "%s", br_pem_decoder_name(&pc));
        der.len = 0;
        br_pem_decoder_setdest(&pc, tlss_buf_push, &der);
        break;
      case BR_PEM_END_OBJ:
        n++;
        if (fn(ctx, name, &der) != 0) rc = -2;
        break;
      case BR_PEM_ERROR:
        rc = -1;
        break;
      default:
        break;
    }
  }
  buf_free(&der);
  return rc != 0 ? rc : n;
}

/* ------------------------------------------------------------ credentials */

static void tlss_creds_free(struct tlss_creds *c) {
  size_t i;
  if (c == NULL) return;
  for (i = 0; i < c->n_chain; i++) URSULA_FREE(c->chain[i].data);
  URSULA_FREE(c->chain);
  pthread_mutex_destroy(&c->mu);
  URSULA_FREE(c);
}

/* (tlss_pem_fn) Keep each CERTIFICATE of the chain file. */
static int tlss_on_cert(void *ctx, const char *name, const struct buf *der) {
  struct tlss_creds *c = (struct tlss_creds *)ctx;
  br_x509_certificate *ch;
  if (strcmp(name, "CERTIFICATE") != 0 && strcmp(name, "X509 CERTIFICATE") != 0)
    return 0; /* not a certificate: skipped */
  ch = (br_x509_certificate *)URSULA_REALLOC(c->chain,
                                             (c->n_chain + 1) * sizeof(*ch));
  if (ch == NULL) return -1;
  c->chain = ch;
  ch[c->n_chain].data = (unsigned char *)URSULA_MALLOC(der->len ? der->len : 1);
  if (ch[c->n_chain].data == NULL) return -1;
  if (der->len > 0) memcpy(ch[c->n_chain].data, der->ptr, der->len);
  ch[c->n_chain].data_len = der->len;
  c->n_chain++;
  return 0;
}

/* What tlss_on_key found: how many keys, and the decoder's error. */
struct tlss_key_scan {
  struct tlss_creds *c;
  int keys;
  int error;
};

/* (tlss_pem_fn) Decode the first private key of the key file. */
static int tlss_on_key(void *ctx, const char *name, const struct buf *der) {
  struct tlss_key_scan *k = (struct tlss_key_scan *)ctx;
  if (strcmp(name, "RSA PRIVATE KEY") != 0 &&
      strcmp(name, "EC PRIVATE KEY") != 0 && strcmp(name, "PRIVATE KEY") != 0)
    return 0; /* (EC PARAMETERS and the like) */
  if (k->keys++ > 0) return 0; /* the first one is the key */
  br_skey_decoder_init(&k->c->key);
  br_skey_decoder_push(&k->c->key, der->ptr, der->len);
  k->error = br_skey_decoder_last_error(&k->c->key);
  return 0;
}

/* (br_x509_decoder's name sink: the leaf's subject is not needed) */
static void tlss_drop_dn(void *ctx, const void *p, size_t n) {
  (void)ctx, (void)p, (void)n;
}

/* Compare two big-endian unsigned integers, leading zeros aside. */
static int tlss_same_int(const unsigned char *a, size_t na,
                         const unsigned char *b, size_t nb) {
  while (na > 0 && *a == 0) a++, na--;
  while (nb > 0 && *b == 0) b++, nb--;
  return na == nb && (na == 0 || memcmp(a, b, na) == 0);
}

/* The RSA key sk is the one of the public key pk: the modulus computed
** from its primes is pk's, and a signature made with it verifies with
** pk (which checks the public exponent too: BearSSL's own recomputation
** of it fails for some keys). */
static int tlss_rsa_matches(const br_rsa_private_key *sk,
                            const br_rsa_public_key *pk) {
  br_rsa_compute_modulus modulus = br_rsa_compute_modulus_get_default();
  unsigned char n[512]; /* up to RSA-4096, what the key decoder takes */
  unsigned char sig[512], hash[32], back[32];
  size_t nlen = modulus(NULL, sk);
  if (nlen == 0 || nlen > sizeof(n) || modulus(n, sk) != nlen ||
      !tlss_same_int(n, nlen, pk->n, pk->nlen))
    return 0;
  memset(hash, 0x5a, sizeof(hash)); /* any digest will do */
  return br_rsa_pkcs1_sign_get_default()(BR_HASH_OID_SHA256, hash,
                                         sizeof(hash), sk, sig) == 1 &&
         br_rsa_pkcs1_vrfy_get_default()(sig, (sk->n_bitlen + 7) / 8,
                                         BR_HASH_OID_SHA256, sizeof(back), pk,
                                         back) == 1 &&
         memcmp(hash, back, sizeof(hash)) == 0;
}

/* The EC key sk is the one of the public key pk: same curve, and the
** point computed from it is pk's. */
static int tlss_ec_matches(const br_ec_private_key *sk,
                           const br_ec_public_key *pk) {
  unsigned char kbuf[BR_EC_KBUF_PUB_MAX_SIZE];
  br_ec_public_key mine;
  if (sk->curve != pk->curve) return 0;
  if (br_ec_compute_pub(br_ec_get_default(), &mine, kbuf, sk) == 0) return 0;
  return mine.qlen == pk->qlen && memcmp(mine.q, pk->q, pk->qlen) == 0;
}

/* Check c's key against its leaf certificate, and note the leaf
** signer's key type: NULL, or why the pair cannot serve. */
static const char *tlss_check_pair(struct tlss_creds *c) {
  br_x509_decoder_context dc;
  const br_x509_pkey *pk;
  br_x509_decoder_init(&dc, tlss_drop_dn, NULL);
  br_x509_decoder_push(&dc, c->chain[0].data, c->chain[0].data_len);
  pk = br_x509_decoder_get_pkey(&dc);
  if (br_x509_decoder_last_error(&dc) != 0 || pk == NULL)
    return "its first certificate cannot be decoded";
  if (pk->key_type != c->key_type)
    return "the key is not of the leaf certificate's type (RSA, EC)";
  if (c->key_type == BR_KEYTYPE_RSA
          ? !tlss_rsa_matches(br_skey_decoder_get_rsa(&c->key), &pk->key.rsa)
          : !tlss_ec_matches(br_skey_decoder_get_ec(&c->key), &pk->key.ec))
    return "the key does not match the leaf certificate's public key";
  c->issuer_key_type = br_x509_decoder_get_signer_key_type(&dc);
  if (c->key_type == BR_KEYTYPE_EC && c->issuer_key_type != BR_KEYTYPE_RSA &&
      c->issuer_key_type != BR_KEYTYPE_EC)
    return "the leaf certificate's signer uses neither RSA nor EC";
  return NULL;
}

/* Load the chain of cert_path into c: URSULA_OK or an error in err. */
static int tlss_load_chain(struct tlss_creds *c, const char *cert_path,
                           char *err) {
  struct buf file;
  int n, rc;
  memset(&file, 0, sizeof(file));
  if ((rc = tlss_read_file("--tls-cert", cert_path, &file, err)) != URSULA_OK) {
    buf_free(&file);
    return rc;
  }
  n = tlss_pem_each(&file, tlss_on_cert, c);
  buf_free(&file);
  if (n == -2) {
    snprintf(err, URSULA_ERRMSG_LEN, "--tls-cert %.200s: out of memory",
             cert_path);
    return URSULA_ENOMEM;
  }
  if (n < 0 || c->n_chain == 0) {
    snprintf(err, URSULA_ERRMSG_LEN,
             "--tls-cert %.200s: %s", cert_path,
             n < 0 ? "malformed PEM" : "no CERTIFICATE block in PEM form");
    return URSULA_EINVAL;
  }
  return URSULA_OK;
}

/* Load the private key of key_path into c: URSULA_OK or an error. */
static int tlss_load_key(struct tlss_creds *c, const char *key_path,
                         char *err) {
  struct tlss_key_scan k;
  struct buf file;
  int n, rc;
  memset(&file, 0, sizeof(file));
  if ((rc = tlss_read_file("--tls-key", key_path, &file, err)) != URSULA_OK) {
    buf_free(&file);
    return rc;
  }
  k.c = c;
  k.keys = 0;
  k.error = 0;
  n = tlss_pem_each(&file, tlss_on_key, &k);
  buf_free(&file);
  if (n < 0 || k.keys == 0 || k.error != 0) {
    if (n < 0)
      snprintf(err, URSULA_ERRMSG_LEN, "--tls-key %.200s: malformed PEM",
               key_path);
    else if (k.keys == 0)
      snprintf(err, URSULA_ERRMSG_LEN,
               "--tls-key %.200s: no RSA PRIVATE KEY, EC PRIVATE KEY or "
               "PRIVATE KEY block in PEM form",
               key_path);
    else
      snprintf(err, URSULA_ERRMSG_LEN,
               "--tls-key %.200s: not a private key BearSSL can use "
               "(RSA or EC; error %d)",
               key_path, k.error);
    return URSULA_EINVAL;
  }
  c->key_type = br_skey_decoder_key_type(&c->key);
  return URSULA_OK;
}

URSULA_PRIVATE int tlss_creds_load(const char *cert_path, const char *key_path,
                                   struct tlss_creds **out, char *err) {
  struct tlss_creds *c =
      (struct tlss_creds *)URSULA_MALLOC(sizeof(struct tlss_creds));
  const char *why;
  int rc;
  if (c == NULL) {
    snprintf(err, URSULA_ERRMSG_LEN, "TLS credentials: out of memory");
    return URSULA_ENOMEM;
  }
  memset(c, 0, sizeof(*c));
  pthread_mutex_init(&c->mu, NULL);
  c->refs = 1;
  if ((rc = tlss_load_chain(c, cert_path, err)) != URSULA_OK ||
      (rc = tlss_load_key(c, key_path, err)) != URSULA_OK) {
    tlss_creds_free(c);
    return rc;
  }
  if ((why = tlss_check_pair(c)) != NULL) {
    snprintf(err, URSULA_ERRMSG_LEN, "--tls-key %.150s and --tls-cert %.150s: %s",
             key_path, cert_path, why);
    tlss_creds_free(c);
    return URSULA_EINVAL;
  }
  *out = c;
  return URSULA_OK;
}

URSULA_PRIVATE struct tlss_creds *tlss_creds_hold(struct tlss_creds *c) {
  pthread_mutex_lock(&c->mu);
  c->refs++;
  pthread_mutex_unlock(&c->mu);
  return c;
}

URSULA_PRIVATE void tlss_creds_release(struct tlss_creds *c) {
  int left;
  if (c == NULL) return;
  pthread_mutex_lock(&c->mu);
  left = --c->refs;
  pthread_mutex_unlock(&c->mu);
  if (left == 0) tlss_creds_free(c);
}

URSULA_PRIVATE const char *tlss_creds_kind(const struct tlss_creds *c) {
  return c->key_type == BR_KEYTYPE_RSA ? "RSA" : "EC";
}

/* ------------------------------------------------------------ a connection */

URSULA_PRIVATE struct tlss_conn *tlss_conn_new(struct tlss_creds *c) {
  struct tlss_conn *t = (struct tlss_conn *)URSULA_MALLOC(sizeof(*t));
  br_ssl_engine_context *eng;
  if (t == NULL) return NULL;
  if (c->key_type == BR_KEYTYPE_RSA)
    br_ssl_server_init_full_rsa(&t->sc, c->chain, c->n_chain,
                                br_skey_decoder_get_rsa(&c->key));
  else
    br_ssl_server_init_full_ec(&t->sc, c->chain, c->n_chain,
                               (unsigned)c->issuer_key_type,
                               br_skey_decoder_get_ec(&c->key));
  eng = &t->sc.eng;
  br_ssl_engine_set_versions(eng, BR_TLS12, BR_TLS12);
  br_ssl_engine_add_flags(eng, BR_OPT_NO_RENEGOTIATION);
  br_ssl_engine_set_buffer(eng, t->iobuf, sizeof(t->iobuf), 1);
  if (!br_ssl_server_reset(&t->sc)) {
    LOG_E("tls: cannot start an engine (BearSSL error %d)",
          br_ssl_engine_last_error(eng));
    URSULA_FREE(t);
    return NULL;
  }
  t->creds = tlss_creds_hold(c);
  t->closing = t->shut = 0;
  return t;
}

URSULA_PRIVATE void tlss_conn_free(struct tlss_conn *t) {
  if (t == NULL) return;
  tlss_creds_release(t->creds);
  URSULA_FREE(t);
}

URSULA_PRIVATE size_t tlss_conn_size(void) {
  return sizeof(struct tlss_conn);
}

URSULA_PRIVATE unsigned tlss_wants(const struct tlss_conn *t) {
  unsigned st = br_ssl_engine_current_state(&t->sc.eng), w = 0;
  if (st & BR_SSL_SENDREC) w |= TLSS_SEND;
  if (st & BR_SSL_RECVAPP) w |= TLSS_PLAIN;
  if (st & BR_SSL_SENDAPP) w |= TLSS_CAN_SEND;
  return w;
}

/* The engine is closed: 0 if by a close_notify, else -1 with errno
** (the cause logged at debug level). */
static int tlss_closed(struct tlss_conn *t) {
  int e = br_ssl_engine_last_error(&t->sc.eng);
  if (e == BR_ERR_OK) return 0;
  LOG_D("tls: connection ended: BearSSL error %d", e);
  errno = ECONNRESET;
  return -1;
}

URSULA_PRIVATE int tlss_push(struct tlss_conn *t, int fd) {
  br_ssl_engine_context *eng = &t->sc.eng;
  for (;;) {
    unsigned char *p;
    size_t len;
    ssize_t k;
    if (!(br_ssl_engine_current_state(eng) & BR_SSL_SENDREC)) break;
    p = br_ssl_engine_sendrec_buf(eng, &len);
    k = send(fd, p, len, TLSS_SEND_FLAGS);
    if (k > 0) {
      br_ssl_engine_sendrec_ack(eng, (size_t)k);
    } else if (k < 0 && errno == EINTR) {
      continue;
    } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return 0; /* the rest when the socket drains */
    } else {
      return -1;
    }
  }
  if (t->closing && !t->shut) { /* close_notify is out: then the FIN */
    t->shut = 1;
    if (shutdown(fd, SHUT_WR) != 0) return -1;
  }
  return 0;
}

URSULA_PRIVATE ssize_t tlss_recv(struct tlss_conn *t, int fd, void *p,
                                 size_t n) {
  br_ssl_engine_context *eng = &t->sc.eng;
  size_t got = 0;
  for (;;) {
    unsigned st = br_ssl_engine_current_state(eng);
    unsigned char *b;
    size_t len;
    ssize_t k;
    if (st & BR_SSL_CLOSED) return got > 0 ? (ssize_t)got : tlss_closed(t);
    if (st & BR_SSL_RECVAPP) { /* decrypted: to the caller first */
      if (got == n) return (ssize_t)got;
      b = br_ssl_engine_recvapp_buf(eng, &len);
      if (len > n - got) len = n - got;
      memcpy((char *)p + got, b, len);
      br_ssl_engine_recvapp_ack(eng, len);
      got += len;
      continue;
    }
    if (st & BR_SSL_SENDREC) { /* the handshake's answers, alerts */
      if (tlss_push(t, fd) != 0) return got > 0 ? (ssize_t)got : -1;
      st = br_ssl_engine_current_state(eng);
      if (!(st & BR_SSL_SENDREC)) continue; /* all out: look again */
    }
    if (!(st & BR_SSL_RECVREC)) break; /* waits for the socket to drain */
    b = br_ssl_engine_recvrec_buf(eng, &len);
    k = recv(fd, b, len, 0);
    if (k > 0) {
      br_ssl_engine_recvrec_ack(eng, (size_t)k);
    } else if (k == 0) {
      return (ssize_t)got; /* the end (a FIN without close_notify) */
    } else if (errno != EINTR) {
      return got > 0 ? (ssize_t)got : -1; /* EAGAIN, or an error */
    }
  }
  if (got > 0) return (ssize_t)got;
  errno = EAGAIN;
  return -1;
}

URSULA_PRIVATE ssize_t tlss_sendv(struct tlss_conn *t, int fd,
                                  const struct iovec *iov, int n) {
  br_ssl_engine_context *eng = &t->sc.eng;
  size_t done = 0, want = 0;
  int i;
  for (i = 0; i < n; i++) {
    const unsigned char *q = (const unsigned char *)iov[i].iov_base;
    size_t left = iov[i].iov_len;
    want += left;
    while (left > 0) {
      unsigned char *b;
      size_t len;
      unsigned st = br_ssl_engine_current_state(eng);
      if (st & BR_SSL_CLOSED) goto out;
      if (!(st & BR_SSL_SENDAPP)) { /* full: make room, if the socket can */
        if (tlss_push(t, fd) != 0) goto out;
        if (!(br_ssl_engine_current_state(eng) & BR_SSL_SENDAPP)) goto out;
      }
      b = br_ssl_engine_sendapp_buf(eng, &len);
      if (len > left) len = left;
      memcpy(b, q, len);
      br_ssl_engine_sendapp_ack(eng, len);
      q += len;
      left -= len;
      done += len;
    }
  }
out:
  br_ssl_engine_flush(eng, 0);
  if (br_ssl_engine_current_state(eng) & BR_SSL_CLOSED) {
    if (tlss_closed(t) == 0) errno = EPIPE;
    return -1;
  }
  if (tlss_push(t, fd) != 0) return -1;
  if (done == 0 && want > 0) {
    errno = EAGAIN;
    return -1;
  }
  return (ssize_t)done;
}

URSULA_PRIVATE int tlss_shutdown(struct tlss_conn *t, int fd) {
  if (br_ssl_engine_current_state(&t->sc.eng) & BR_SSL_CLOSED) return -1;
  t->closing = 1;
  br_ssl_engine_close(&t->sc.eng);
  return tlss_push(t, fd);
}

#else /* no TLS in this build */

URSULA_PRIVATE int tlss_creds_load(const char *cert_path, const char *key_path,
                                   struct tlss_creds **out, char *err) {
  (void)cert_path, (void)key_path, (void)out;
  snprintf(err, URSULA_ERRMSG_LEN,
           "--tls-cert, --tls-key: this build has no TLS: build with make "
           "TLS=1");
  return URSULA_ENOTSUP;
}

URSULA_PRIVATE void tlss_creds_release(struct tlss_creds *c) {
  (void)c;
}

#endif /* URSULA_ENABLE_TLS */

#undef TLSS_SEND_FLAGS
