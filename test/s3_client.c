/*
** s3_client.c -- the S3 client (src/s3.c) against a real local S3 server
** that checks signatures (test/s3.sh starts it).
**
**   s3_client ENDPOINT [CA_FILE]              every operation; TAP output
**   s3_client --expect-error ENDPOINT CA_FILE WORDS
**                                            one PUT must fail with WORDS
**                                            in its error (TLS checks)
**
** The server also accepts unsigned requests, so success alone would prove
** nothing about the signer: a request signed with a wrong secret must be
** refused with 403 SignatureDoesNotMatch.
*/
#define URSULA_ENABLE_MAIN 0
#include "../ursula.c"

static int n_tests, n_failed;

static void check(int ok, const char *what, const struct s3_error *e) {
  n_tests++;
  if (!ok) n_failed++;
  printf("%sok %d - %s\n", ok ? "" : "not ", n_tests, what);
  if (!ok && e != NULL && e->line[0]) printf("#   %s\n", e->line);
}

static struct tls_anchors *anchors;

static struct s3_client *client(const char *endpoint, const char *bucket,
                                const char *secret, int timeout_ms) {
  struct s3_config cfg;
  struct s3_client *c = NULL;
  char err[URSULA_ERRMSG_LEN];
  memset(&cfg, 0, sizeof(cfg));
  cfg.endpoint = endpoint;
  cfg.bucket = bucket;
  cfg.region = "us-east-1";
  cfg.access_key = "S3RVER";
  cfg.secret_key = secret;
  cfg.anchors = anchors;
  cfg.timeout_ms = timeout_ms;
  cfg.max_attempts = 2;
  if (s3_client_new(&c, &cfg, err) != URSULA_OK) {
    printf("Bail out! %s\n", err);
    exit(1);
  }
  return c;
}

struct seen {
  char keys[16][64];
  int n;
};

static int on_key(void *arg, const char *key, uint64_t size) {
  struct seen *s = (struct seen *)arg;
  (void)size;
  if (s->n < 16) snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
  s->n++;
  return 0;
}

static void run_all(const char *endpoint) {
  struct s3_client *c = client(endpoint, "testbucket", "S3RVER", 5000);
  struct s3_error e;
  struct buf b;
  uint64_t size = 0, t0;
  struct seen seen;
  char key[64];
  static const char *odd = "dir/a b+c~=(x)!\xc3\xa9.txt";
  size_t i;
  int ok;
  memset(&b, 0, sizeof(b));
  memset(&e, 0, sizeof(e));
  check(s3_put(c, "hello.txt", "hello world", 11, &e) == URSULA_OK, "PUT", &e);
  check(s3_get(c, "hello.txt", 0, 0, &b, &e) == URSULA_OK && b.len == 11 &&
            memcmp(b.ptr, "hello world", 11) == 0,
        "GET reads it back", &e);
  b.len = 0;
  check(s3_get(c, "hello.txt", 6, 5, &b, &e) == URSULA_OK && b.len == 5 &&
            memcmp(b.ptr, "world", 5) == 0,
        "GET with a range in the middle", &e);
  b.len = 0;
  check(s3_get(c, "hello.txt", 3, 0, &b, &e) == URSULA_OK && b.len == 8 &&
            memcmp(b.ptr, "lo world", 8) == 0,
        "GET from an offset to the end", &e);
  check(s3_head(c, "hello.txt", &size, &e) == URSULA_OK && size == 11,
        "HEAD gives the size", &e);
  /* a key that needs encoding, on the wire and in the signature */
  b.len = 0;
  check(s3_put(c, odd, "odd", 3, &e) == URSULA_OK &&
            s3_get(c, odd, 0, 0, &b, &e) == URSULA_OK && b.len == 3,
        "a key with spaces, '+', '=', '()', '!' and UTF-8", &e);
  /* ListObjectsV2, two keys a page, following continuation tokens */
  for (i = 0; i < 5; i++) {
    snprintf(key, sizeof(key), "list/k%lu", (unsigned long)i);
    s3_put(c, key, "x", 1, &e);
  }
  memset(&seen, 0, sizeof(seen));
  ok = s3_list(c, "list/", 2, on_key, &seen, &e) == URSULA_OK && seen.n == 5;
  for (i = 0; ok && i < 5; i++) {
    snprintf(key, sizeof(key), "list/k%lu", (unsigned long)i);
    ok = strcmp(seen.keys[i], key) == 0;
  }
  check(ok, "ListObjectsV2 pages of 2 keys: all 5, once each, in order", &e);
  /* a 5 MB object, byte-exact */
  {
    struct buf big, back;
    memset(&big, 0, sizeof(big));
    memset(&back, 0, sizeof(back));
    buf_reserve(&big, 5 * 1024 * 1024);
    for (i = 0; i < 5 * 1024 * 1024; i++)
      big.ptr[i] = (char)((i * 2654435761u) >> 13);
    big.len = 5 * 1024 * 1024;
    check(s3_put(c, "big.bin", big.ptr, big.len, &e) == URSULA_OK &&
              s3_get(c, "big.bin", 0, 0, &back, &e) == URSULA_OK &&
              back.len == big.len && memcmp(back.ptr, big.ptr, big.len) == 0,
          "a 5 MB object reads back byte-exact", &e);
    back.len = 0;
    check(s3_get(c, "big.bin", 3000000, 1000, &back, &e) == URSULA_OK &&
              back.len == 1000 &&
              memcmp(back.ptr, big.ptr + 3000000, 1000) == 0,
          "a range in the middle of it", &e);
    buf_free(&big);
    buf_free(&back);
  }
  check(s3_delete(c, "hello.txt", &e) == URSULA_OK, "DELETE", &e);
  b.len = 0;
  check(s3_get(c, "hello.txt", 0, 0, &b, &e) == URSULA_ENOTFOUND &&
            e.status == 404 && strcmp(e.code, "NoSuchKey") == 0,
        "GET after DELETE: not found (404 NoSuchKey)", &e);
  s3_client_free(c);
  /* the negative cases */
  c = client(endpoint, "testbucket", "WRONGSECRET", 5000);
  ok = s3_put(c, "x.txt", "x", 1, &e) == URSULA_EIO && e.status == 403 &&
       strcmp(e.code, "SignatureDoesNotMatch") == 0;
  check(ok, "a wrong secret: 403 SignatureDoesNotMatch", &e);
  printf("#   %s\n", e.line);
  s3_client_free(c);
  c = client(endpoint, "nosuchbucket", "S3RVER", 5000);
  ok = s3_put(c, "x.txt", "x", 1, &e) == URSULA_EIO && e.status == 404 &&
       strcmp(e.code, "NoSuchBucket") == 0;
  check(ok, "a missing bucket: NoSuchBucket, an error (not 'not found')", &e);
  s3_client_free(c);
  {
    char dead[64];
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
      port = ntohs(a.sin_port);
    close(fd); /* nothing listens there now */
    snprintf(dead, sizeof(dead), "http://127.0.0.1:%d", port);
    c = client(dead, "testbucket", "S3RVER", 2000);
    t0 = os_now_ms();
    ok = s3_put(c, "x.txt", "x", 1, &e) == URSULA_EIO && e.status == 0 &&
         os_now_ms() - t0 < 10000;
    check(ok, "nothing listening: a transport error, within the timeout", &e);
    printf("#   %s\n", e.line);
    s3_client_free(c);
  }
  buf_free(&b);
}

/* ------------------------------------------------------------ a liar */

/* An endpoint that answers every request with `answer`, then `extra`
** bytes of 'x', then closes: up to 4 connections, each waited for at
** most 5 s. */
struct liar {
  int fd;
  const char *answer;
  size_t extra;
};

static void *liar_main(void *arg) {
  struct liar *l = (struct liar *)arg;
  static char zeros[65536];
  int n;
  memset(zeros, 'x', sizeof(zeros));
  for (n = 0; n < 4; n++) {
    struct pollfd p;
    char req[4096];
    size_t got = 0, sent = 0;
    int c;
    p.fd = l->fd;
    p.events = POLLIN;
    if (poll(&p, 1, 5000) <= 0) break;
    if ((c = accept(l->fd, NULL, NULL)) < 0) break;
    while (got < sizeof(req) - 1) { /* the request head */
      ssize_t k = read(c, req + got, sizeof(req) - 1 - got);
      if (k <= 0) break;
      got += (size_t)k;
      req[got] = '\0';
      if (strstr(req, "\r\n\r\n") != NULL) break;
    }
    if (write(c, l->answer, strlen(l->answer)) < 0) {
    }
    while (sent < l->extra) {
      size_t k = l->extra - sent < sizeof(zeros) ? l->extra - sent
                                                 : sizeof(zeros);
      ssize_t w = write(c, zeros, k);
      if (w <= 0) break;
      sent += (size_t)w;
    }
    close(c);
  }
  return NULL;
}

/* GET from a liar: must fail, and must not take the memory it claims. */
static void liar_get(const char *answer, size_t extra, const char *what) {
  struct sockaddr_in a;
  socklen_t alen = sizeof(a);
  struct liar l;
  pthread_t th;
  struct s3_client *c;
  struct s3_error e;
  struct buf b;
  char endpoint[64];
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  memset(&e, 0, sizeof(e));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(0x7f000001);
  l.fd = socket(AF_INET, SOCK_STREAM, 0);
  l.answer = answer;
  l.extra = extra;
  if (l.fd < 0 || bind(l.fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      listen(l.fd, 4) != 0 ||
      getsockname(l.fd, (struct sockaddr *)&a, &alen) != 0 ||
      pthread_create(&th, NULL, liar_main, &l) != 0) {
    check(0, what, NULL);
    return;
  }
  snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d",
           ntohs(a.sin_port));
  c = client(endpoint, "testbucket", "S3RVER", 5000);
  check(s3_get(c, "k", 0, 0, &b, &e) != URSULA_OK && b.cap <= 2 * S3_MAX_BODY,
        what, &e);
  s3_client_free(c);
  shutdown(l.fd, SHUT_RDWR);
  close(l.fd);
  pthread_join(th, NULL);
  buf_free(&b);
}

static void liar_tests(void) {
  liar_get("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\nabc",
           0, "an answer whose Content-Length is 8 EiB is refused, not "
              "allocated");
  liar_get("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
           (size_t)S3_MAX_BODY + 65536,
           "an answer read to the close that runs past the body limit is "
           "refused");
}

int main(int argc, char **argv) {
  char err[URSULA_ERRMSG_LEN];
  setvbuf(stdout, NULL, _IONBF, 0);
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 5 && strcmp(argv[1], "--expect-error") == 0) {
    struct s3_client *c;
    struct s3_error e;
    if (tls_anchors_load(&anchors, argv[3], err) != URSULA_OK) {
      printf("Bail out! %s\n", err);
      return 1;
    }
    c = client(argv[2], "testbucket", "S3RVER", 5000);
    memset(&e, 0, sizeof(e));
    check(s3_put(c, "x.txt", "x", 1, &e) == URSULA_EIO &&
              strstr(e.line, argv[4]) != NULL,
          argv[4], &e);
    printf("#   %s\n", e.line);
    s3_client_free(c);
    tls_anchors_free(anchors);
    return n_failed ? 1 : 0;
  }
  if (argc < 2) {
    fprintf(stderr, "usage: s3_client ENDPOINT [CA_FILE]\n");
    return 2;
  }
  if (argc >= 3 && tls_anchors_load(&anchors, argv[2], err) != URSULA_OK) {
    printf("Bail out! %s\n", err);
    return 1;
  }
  run_all(argv[1]);
  if (anchors == NULL) liar_tests(); /* plain http only */
  tls_anchors_free(anchors);
  printf("1..%d\n", n_tests);
  return n_failed ? 1 : 0;
}
