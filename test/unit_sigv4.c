/* unit_sigv4.c -- SigV4 signing: the S3 worked examples of the AWS S3
** documentation, and every case of the AWS SigV4 test suite, read from
** test/vectors/sigv4 (the unit binary runs from the repository root). */

#define UNIT_SIGV4_DIR "test/vectors/sigv4"

static void unit_sigv4_s3(const char *method, const char *path,
                          const char *query, struct http_header *h, size_t n,
                          const char *payload, const char *want_sts_hash,
                          const char *want_sig) {
  struct sigv4_request r;
  struct buf auth, sts;
  const char *sig;
  memset(&r, 0, sizeof(r));
  memset(&auth, 0, sizeof(auth));
  memset(&sts, 0, sizeof(sts));
  r.method = util_str(method);
  r.path = util_str(path);
  r.query = util_str(query);
  r.headers = h;
  r.n_headers = n;
  r.payload_hash = util_str(payload);
  r.access_key = util_str("AKIAIOSFODNN7EXAMPLE");
  r.secret_key = util_str("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
  r.region = util_str("us-east-1");
  r.service = util_str("s3");
  r.amz_date = util_str("20130524T000000Z");
  r.s3 = 1;
  ASSERT(sigv4_sign(&r, &auth, NULL, &sts) == URSULA_OK);
  ASSERT(sts.len > 64 &&
         memcmp(sts.ptr + sts.len - 64, want_sts_hash, 64) == 0);
  sig = auth.ptr ? strstr(auth.ptr, "Signature=") : NULL;
  ASSERT(sig != NULL && strlen(sig + 10) == 64 &&
         memcmp(sig + 10, want_sig, 64) == 0);
  buf_free(&auth);
  buf_free(&sts);
}

static struct http_header unit_sigv4_h(const char *name, const char *value) {
  struct http_header h;
  h.name = util_str(name);
  h.value = util_str(value);
  return h;
}

#define UNIT_EMPTY_SHA \
  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void test_sigv4_s3_examples(void) {
  struct http_header h[6];
  struct sigv4_request r;
  struct buf auth, creq;
  /* A: GET Object with a Range: the whole chain */
  h[0] = unit_sigv4_h("Host", "examplebucket.s3.amazonaws.com");
  h[1] = unit_sigv4_h("Range", "bytes=0-9");
  h[2] = unit_sigv4_h("x-amz-content-sha256", UNIT_EMPTY_SHA);
  h[3] = unit_sigv4_h("x-amz-date", "20130524T000000Z");
  unit_sigv4_s3(
      "GET", "/test.txt", "", h, 4, UNIT_EMPTY_SHA,
      "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
      "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  memset(&r, 0, sizeof(r));
  memset(&auth, 0, sizeof(auth));
  memset(&creq, 0, sizeof(creq));
  r.method = util_str("GET");
  r.path = util_str("/test.txt");
  r.headers = h;
  r.n_headers = 4;
  r.payload_hash = util_str(UNIT_EMPTY_SHA);
  r.access_key = util_str("AKIAIOSFODNN7EXAMPLE");
  r.secret_key = util_str("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
  r.region = util_str("us-east-1");
  r.service = util_str("s3");
  r.amz_date = util_str("20130524T000000Z");
  r.s3 = 1;
  ASSERT(sigv4_sign(&r, &auth, &creq, NULL) == URSULA_OK);
  ASSERT_MEM(creq.ptr, creq.len,
             "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\n"
             "range:bytes=0-9\nx-amz-content-sha256:" UNIT_EMPTY_SHA
             "\nx-amz-date:20130524T000000Z\n\n"
             "host;range;x-amz-content-sha256;x-amz-date\n" UNIT_EMPTY_SHA);
  ASSERT_MEM(auth.ptr, auth.len,
             "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/"
             "us-east-1/s3/aws4_request, SignedHeaders=host;range;"
             "x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857"
             "bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  buf_free(&auth);
  buf_free(&creq);
  /* B: PUT Object: a key that needs encoding, a hashed payload */
  h[0] = unit_sigv4_h("Date", "Fri, 24 May 2013 00:00:00 GMT");
  h[1] = unit_sigv4_h("Host", "examplebucket.s3.amazonaws.com");
  h[2] = unit_sigv4_h(
      "x-amz-content-sha256",
      "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  h[3] = unit_sigv4_h("x-amz-date", "20130524T000000Z");
  h[4] = unit_sigv4_h("x-amz-storage-class", "REDUCED_REDUNDANCY");
  unit_sigv4_s3(
      "PUT", "/test%24file.text", "", h, 5,
      "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
      "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d",
      "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
  /* C: GET Bucket: the query sorted; D: a parameter without a value */
  h[0] = unit_sigv4_h("Host", "examplebucket.s3.amazonaws.com");
  h[1] = unit_sigv4_h("x-amz-content-sha256", UNIT_EMPTY_SHA);
  h[2] = unit_sigv4_h("x-amz-date", "20130524T000000Z");
  unit_sigv4_s3(
      "GET", "/", "prefix=J&max-keys=2", h, 3, UNIT_EMPTY_SHA,
      "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7",
      "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
  unit_sigv4_s3(
      "GET", "/", "lifecycle", h, 3, UNIT_EMPTY_SHA,
      "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca",
      "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

static void test_sigv4_uri_encode(void) {
  struct buf b;
  memset(&b, 0, sizeof(b));
  ASSERT(sigv4_uri_encode(&b, "a b+c/d~e$%\xe1\x88\xb4", 14, 1) == URSULA_OK);
  ASSERT_MEM(b.ptr, b.len, "a%20b%2Bc/d~e%24%25%E1%88%B4");
  b.len = 0;
  ASSERT(sigv4_uri_encode(&b, "a/b", 3, 0) == URSULA_OK);
  ASSERT_MEM(b.ptr, b.len, "a%2Fb");
  buf_free(&b);
}

/* Read a whole file into b (NUL-terminated); 0 or -1. */
static int unit_sigv4_slurp(const char *path, struct buf *b) {
  FILE *f = fopen(path, "rb");
  char tmp[4096];
  size_t n;
  b->len = 0;
  if (f == NULL) return -1;
  while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) buf_append(b, tmp, n);
  fclose(f);
  buf_append(b, "", 1);
  b->len--;
  return 0;
}

/* The string value of "key": "value" in a flat JSON text, into out. */
static int unit_sigv4_json(const char *json, const char *key, char *out,
                           size_t cap) {
  char pat[64];
  const char *p, *q;
  snprintf(pat, sizeof(pat), "\"%s\"", key);
  if ((p = strstr(json, pat)) == NULL) return -1;
  p = strchr(p + strlen(pat), ':');
  if (p == NULL) return -1;
  while (*++p == ' ') {
  }
  if (*p == '"') {
    q = strchr(++p, '"');
  } else {
    for (q = p; *q && *q != ',' && *q != '\n' && *q != '}'; q++) {
    }
  }
  if (q == NULL || (size_t)(q - p) >= cap) return -1;
  memcpy(out, p, (size_t)(q - p));
  out[q - p] = '\0';
  return 0;
}

/* Run one test-suite case; returns 0 if it passes. */
static int unit_sigv4_case(const char *name) {
  char path[512], ak[64], sk[128], token[1024], region[32], service[32];
  char ts[32], date[17], flag[16], bodyhash[65];
  struct buf ctx, req, want, auth, creq, sts;
  struct http_header h[SIGV4_MAX_HEADERS];
  struct sigv4_request r;
  unsigned char d[32];
  char *line, *next, *target, *body = NULL;
  size_t n = 0, i, j = 0;
  int fails = 0, sign_body, omit;
  memset(&ctx, 0, sizeof(ctx));
  memset(&req, 0, sizeof(req));
  memset(&want, 0, sizeof(want));
  memset(&auth, 0, sizeof(auth));
  memset(&creq, 0, sizeof(creq));
  memset(&sts, 0, sizeof(sts));
  memset(&r, 0, sizeof(r));
  snprintf(path, sizeof(path), UNIT_SIGV4_DIR "/%s/context.json", name);
  if (unit_sigv4_slurp(path, &ctx) != 0) return 1;
  snprintf(path, sizeof(path), UNIT_SIGV4_DIR "/%s/request.txt", name);
  if (unit_sigv4_slurp(path, &req) != 0) return 1;
  token[0] = '\0';
  unit_sigv4_json(ctx.ptr, "token", token, sizeof(token));
  if (unit_sigv4_json(ctx.ptr, "access_key_id", ak, sizeof(ak)) ||
      unit_sigv4_json(ctx.ptr, "secret_access_key", sk, sizeof(sk)) ||
      unit_sigv4_json(ctx.ptr, "region", region, sizeof(region)) ||
      unit_sigv4_json(ctx.ptr, "service", service, sizeof(service)) ||
      unit_sigv4_json(ctx.ptr, "timestamp", ts, sizeof(ts)))
    return 1;
  for (i = 0; ts[i] && j < 16;
       i++) /* 2015-08-30T12:36:00Z -> 20150830T123600Z */
    if (ts[i] != '-' && ts[i] != ':') date[j++] = ts[i];
  date[j] = '\0';
  sign_body = unit_sigv4_json(ctx.ptr, "sign_body", flag, sizeof(flag)) == 0 &&
              strcmp(flag, "true") == 0;
  omit =
      unit_sigv4_json(ctx.ptr, "omit_session_token", flag, sizeof(flag)) == 0 &&
      strcmp(flag, "true") == 0;
  r.normalize =
      unit_sigv4_json(ctx.ptr, "normalize", flag, sizeof(flag)) == 0 &&
      strcmp(flag, "true") == 0;
  /* the request line: METHOD SP target SP HTTP/1.1 */
  line = req.ptr;
  next = strchr(line, '\n');
  if (next == NULL) return 1;
  *next++ = '\0';
  target = strchr(line, ' ');
  if (target == NULL) return 1;
  *target++ = '\0';
  *strrchr(target, ' ') = '\0';
  r.method = util_str(line);
  if (strchr(target, '?') != NULL) {
    char *q = strchr(target, '?');
    *q = '\0';
    r.query = util_str(q + 1);
  }
  r.path = util_str(target);
  /* headers "Name:value"; a line starting with a blank continues one */
  for (line = next; line != NULL && *line != '\0'; line = next) {
    next = strchr(line, '\n');
    if (next != NULL) *next++ = '\0';
    if (*line == '\0') {
      body = next;
      break;
    }
    if ((*line == ' ' || *line == '\t') && n > 0) {
      line[-1] = ' '; /* joins the previous value, as one string */
      h[n - 1].value.len = (size_t)(line + strlen(line) - h[n - 1].value.ptr);
      continue;
    }
    if (strchr(line, ':') == NULL || n + 3 >= SIGV4_MAX_HEADERS) return 1;
    h[n].name.ptr = line;
    h[n].name.len = (size_t)(strchr(line, ':') - line);
    h[n].value = util_str(strchr(line, ':') + 1);
    n++;
  }
  crypto_sha256(body ? body : "", body ? strlen(body) : 0, d);
  crypto_hex(d, 32, bodyhash);
  h[n++] = unit_sigv4_h("X-Amz-Date", date);
  if (token[0] && !omit) h[n++] = unit_sigv4_h("X-Amz-Security-Token", token);
  if (sign_body) h[n++] = unit_sigv4_h("x-amz-content-sha256", bodyhash);
  r.headers = h;
  r.n_headers = n;
  r.payload_hash = util_str(bodyhash);
  r.access_key = util_str(ak);
  r.secret_key = util_str(sk);
  r.region = util_str(region);
  r.service = util_str(service);
  r.amz_date = util_str(date);
  if (sigv4_sign(&r, &auth, &creq, &sts) != URSULA_OK) fails++;
  snprintf(path, sizeof(path),
           UNIT_SIGV4_DIR "/%s/header-canonical-request.txt", name);
  if (unit_sigv4_slurp(path, &want) != 0 || want.len != creq.len ||
      memcmp(want.ptr, creq.ptr, creq.len) != 0) {
    printf("# %s: canonical request\n#   got  %.*s\n#   want %.*s\n", name,
           (int)creq.len, creq.ptr, (int)want.len, want.ptr);
    fails++;
  }
  snprintf(path, sizeof(path), UNIT_SIGV4_DIR "/%s/header-string-to-sign.txt",
           name);
  if (unit_sigv4_slurp(path, &want) != 0 || want.len != sts.len ||
      memcmp(want.ptr, sts.ptr, sts.len) != 0)
    fails++;
  snprintf(path, sizeof(path), UNIT_SIGV4_DIR "/%s/header-signature.txt", name);
  if (unit_sigv4_slurp(path, &want) != 0 || want.len != 64 || auth.len < 64 ||
      memcmp(auth.ptr + auth.len - 64, want.ptr, 64) != 0)
    fails++;
  buf_free(&ctx);
  buf_free(&req);
  buf_free(&want);
  buf_free(&auth);
  buf_free(&creq);
  buf_free(&sts);
  return fails;
}

static void test_sigv4_suite(void) {
  DIR *d = opendir(UNIT_SIGV4_DIR);
  struct dirent *e;
  int cases = 0, failed = 0;
  ASSERT(d != NULL);
  if (d == NULL) return;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || strchr(e->d_name, '.') != NULL ||
        strcmp(e->d_name, "LICENSE") == 0 || strcmp(e->d_name, "NOTICE") == 0)
      continue;
    cases++;
    if (unit_sigv4_case(e->d_name) != 0) {
      printf("# sigv4 case %s failed\n", e->d_name);
      failed++;
    }
  }
  closedir(d);
  printf("# sigv4 suite: %d cases, %d failed\n", cases, failed);
  ASSERT(cases == 38);
  ASSERT(failed == 0);
}

/* Four threads sign LIST-like requests with many query parameters at
** once, each its own (the cold tier's workers do): every signature must
** equal the one signed alone.  (The canonical query's sort must keep no
** state outside the call.) */
struct unit_sigv4_job {
  int id, bad;
  char want[200];
};

static int unit_sigv4_list(int id, struct buf *auth) {
  struct sigv4_request r;
  struct http_header h[2];
  char query[600];
  int k, n = 0;
  for (k = 19; k >= 0; k--) /* out of order: the sort has work to do */
    n += snprintf(query + n, sizeof(query) - (size_t)n, "%sp%02d=t%d-%d",
                  k == 19 ? "" : "&", k, id, k * 7 % 13);
  memset(&r, 0, sizeof(r));
  h[0] = unit_sigv4_h("Host", "examplebucket.s3.amazonaws.com");
  h[1] = unit_sigv4_h("x-amz-date", "20130524T000000Z");
  r.method = util_str("GET");
  r.path = util_str("/");
  r.query = util_str(query);
  r.headers = h;
  r.n_headers = 2;
  r.payload_hash = util_str(UNIT_EMPTY_SHA);
  r.access_key = util_str("AKIAIOSFODNN7EXAMPLE");
  r.secret_key = util_str("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
  r.region = util_str("us-east-1");
  r.service = util_str("s3");
  r.amz_date = util_str("20130524T000000Z");
  r.s3 = 1;
  auth->len = 0;
  return sigv4_sign(&r, auth, NULL, NULL);
}

static void *unit_sigv4_worker(void *arg) {
  struct unit_sigv4_job *j = (struct unit_sigv4_job *)arg;
  struct buf auth;
  int i;
  memset(&auth, 0, sizeof(auth));
  for (i = 0; i < 3000; i++)
    if (unit_sigv4_list(j->id, &auth) != URSULA_OK ||
        strlen(j->want) != auth.len || memcmp(auth.ptr, j->want, auth.len) != 0)
      j->bad++;
  buf_free(&auth);
  return NULL;
}

static void test_sigv4_threads(void) {
  struct unit_sigv4_job jobs[4];
  pthread_t th[4];
  struct buf auth;
  int i, started = 0, bad = 0;
  memset(&auth, 0, sizeof(auth));
  for (i = 0; i < 4; i++) { /* each alone first */
    jobs[i].id = i;
    jobs[i].bad = 0;
    ASSERT(unit_sigv4_list(i, &auth) == URSULA_OK &&
           auth.len < sizeof(jobs[i].want));
    memcpy(jobs[i].want, auth.ptr, auth.len);
    jobs[i].want[auth.len] = '\0';
  }
  ASSERT(strcmp(jobs[0].want, jobs[1].want) != 0);
  for (i = 0; i < 4; i++)
    if (pthread_create(&th[i], NULL, unit_sigv4_worker, &jobs[i]) == 0)
      started |= 1 << i;
  for (i = 0; i < 4; i++)
    if (started & (1 << i)) {
      pthread_join(th[i], NULL);
      bad += jobs[i].bad;
    }
  ASSERT(started == 15);
  if (bad > 0) printf("# %d of 12000 signatures differed\n", bad);
  ASSERT(bad == 0);
  buf_free(&auth);
}

static const struct unit_case unit_sigv4_cases[] = {
    {"sigv4_s3_examples", test_sigv4_s3_examples},
    {"sigv4_uri_encode", test_sigv4_uri_encode},
    {"sigv4_suite", test_sigv4_suite},
    {"sigv4_threads", test_sigv4_threads},
    {NULL, NULL},
};
