/* unit_util.c -- util.c: buffers, parsing, hashing, CRC32C, base64. */

static void test_util_crc32c(void) {
  /* the standard check value of CRC-32C */
  ASSERT(util_crc32c(0, "123456789", 9) == 0xE3069283u);
  ASSERT(util_crc32c(0, "", 0) == 0);
  /* incremental equals one-shot */
  ASSERT(util_crc32c(util_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u);
}

/* CRC32C bit by bit, straight from the definition (reflected polynomial
** 0x82F63B78, initial and final XOR all ones): the reference the tables
** are checked against */
static uint32_t crc32c_bitwise(const unsigned char *p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  size_t i;
  int k;
  for (i = 0; i < n; i++) {
    c ^= p[i];
    for (k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
  }
  return ~c;
}

/* The eight-bytes-per-step path: RFC 3720 B.4's vectors (32 bytes each),
** and the bitwise reference at every length and alignment around the
** 8-byte steps, one-shot and split at every point. */
static void test_util_crc32c_sliced(void) {
  unsigned char b[32 + 80], r[64];
  size_t i, n, off, cut;
  memset(r, 0, 32);
  ASSERT(util_crc32c(0, r, 32) == 0x8A9136AAu);
  memset(r, 0xFF, 32);
  ASSERT(util_crc32c(0, r, 32) == 0x62A8AB43u);
  for (i = 0; i < 32; i++) r[i] = (unsigned char)i;
  ASSERT(util_crc32c(0, r, 32) == 0x46DD794Eu);
  for (i = 0; i < 32; i++) r[i] = (unsigned char)(31 - i);
  ASSERT(util_crc32c(0, r, 32) == 0x113FDB5Cu);
  for (i = 0; i < sizeof(b); i++) b[i] = (unsigned char)(i * 151u + 7u);
  for (off = 0; off < 8; off++)
    for (n = 0; n + off <= 80; n++) {
      uint32_t want = crc32c_bitwise(b + off, n);
      ASSERT(util_crc32c(0, b + off, n) == want);
      for (cut = 0; cut <= n; cut++)
        ASSERT(util_crc32c(util_crc32c(0, b + off, cut), b + off + cut,
                           n - cut) == want);
    }
}

static void test_util_base64(void) {
  /* RFC 4648 section 10 vectors */
  static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  static const char *out[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                              "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  size_t i;
  for (i = 0; i < 7; i++) {
    struct buf b;
    memset(&b, 0, sizeof(b));
    ASSERT(util_base64_append(&b, in[i], strlen(in[i])) == URSULA_OK);
    ASSERT_MEM(b.ptr ? b.ptr : "", b.len, out[i]);
    buf_free(&b);
  }
}

static void test_util_parse_u64(void) {
  uint64_t v = 7;
  ASSERT(util_parse_u64(util_str("0"), 10, &v) == 0 && v == 0);
  ASSERT(util_parse_u64(util_str("0010"), 10, &v) == 0 && v == 10);
  /* leading zeros are allowed, however many (test/fuzz/regress/query) */
  ASSERT(util_parse_u64(util_str("0000000000000000000000042"), 100, &v) == 0 &&
         v == 42);
  ASSERT(util_parse_u64(util_str("11"), 10, &v) == -1);
  ASSERT(util_parse_u64(util_str(""), 10, &v) == -1);
  ASSERT(util_parse_u64(util_str("-1"), 10, &v) == -1);
  ASSERT(util_parse_u64(util_str("1e3"), 9999, &v) == -1);
  ASSERT(util_parse_u64(util_str("18446744073709551615"), UINT64_MAX, &v) ==
             0 &&
         v == UINT64_MAX);
  ASSERT(util_parse_u64(util_str("18446744073709551616"), UINT64_MAX, &v) ==
         -1);
}

static void test_util_buf(void) {
  struct buf b;
  int i;
  memset(&b, 0, sizeof(b));
  for (i = 0; i < 1000; i++) ASSERT(buf_printf(&b, "%d,", i) == URSULA_OK);
  ASSERT(b.len == 3890);
  ASSERT(memcmp(b.ptr, "0,1,2,", 6) == 0);
  buf_consume(&b, 2);
  ASSERT(memcmp(b.ptr, "1,2,", 4) == 0 && b.len == 3888);
  ASSERT(b.ptr[b.len] == '\0');
  buf_consume(&b, 100000);
  ASSERT(b.len == 0);
  buf_free(&b);
  ASSERT(b.ptr == NULL && b.cap == 0);
}

static void test_util_str(void) {
  struct str t = util_str_trim(util_str(" \t a b \t"));
  ASSERT_MEM(t.ptr, t.len, "a b");
  ASSERT(util_str_ieq(util_str("Content-TYPE"), "content-type"));
  ASSERT(!util_str_ieq(util_str("Content-Typ"), "content-type"));
  ASSERT(util_str_eq(util_str("abc"), "abc") &&
         !util_str_eq(util_str("abc"), "ABC"));
  /* the group of a stream must never change between builds */
  ASSERT(util_hash64("", 0) == 14695981039346656037ULL);
  ASSERT(util_hash64("a", 1) == 0xaf63dc4c8601ec8cULL);
}

static const struct unit_case unit_util_cases[] = {
    {"util_crc32c", test_util_crc32c},
    {"util_crc32c_sliced", test_util_crc32c_sliced},
    {"util_base64", test_util_base64},
    {"util_parse_u64", test_util_parse_u64},
    {"util_buf", test_util_buf},
    {"util_str", test_util_str},
    {NULL, NULL}};
