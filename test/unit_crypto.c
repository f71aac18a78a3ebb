/* unit_crypto.c -- SHA-256 (FIPS 180-4 examples) and HMAC-SHA256 (RFC
** 4231), against whichever implementation the build has (ours, or
** BearSSL's with URSULA_ENABLE_TLS). */

static void unit_crypto_hex_of(const void *p, size_t n, char *out) {
  unsigned char d[32];
  crypto_sha256(p, n, d);
  crypto_hex(d, 32, out);
}

static void test_crypto_sha256(void) {
  char hex[65];
  static const char m896[] =
      "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmn"
      "opjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
  unit_crypto_hex_of("", 0, hex);
  ASSERT_MEM(
      hex, 64,
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  unit_crypto_hex_of("abc", 3, hex);
  ASSERT_MEM(
      hex, 64,
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  unit_crypto_hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                     56, hex);
  ASSERT_MEM(
      hex, 64,
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  unit_crypto_hex_of(m896, strlen(m896), hex);
  ASSERT_MEM(
      hex, 64,
      "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

/* A million 'a's, fed in chunks of odd sizes (1, 2, ... 97 bytes), so the
** partial-block buffering is exercised at every offset. */
static void test_crypto_sha256_million(void) {
  struct crypto_sha256 c;
  char a[97], hex[65];
  unsigned char d[32];
  size_t left = 1000000, step = 1;
  memset(a, 'a', sizeof(a));
  crypto_sha256_init(&c);
  while (left > 0) {
    size_t n = step < left ? step : left;
    crypto_sha256_update(&c, a, n);
    left -= n;
    step = step % 97 + 1;
  }
  crypto_sha256_final(&c, d);
  crypto_hex(d, 32, hex);
  ASSERT_MEM(
      hex, 64,
      "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void unit_crypto_hmac(const void *key, size_t klen, const void *msg,
                             size_t n, const char *want) {
  unsigned char d[32];
  char hex[65];
  crypto_hmac_sha256(key, klen, msg, n, d);
  crypto_hex(d, 32, hex);
  ASSERT_MEM(hex, 64, want);
}

static void test_crypto_hmac(void) {
  unsigned char key[131], data[50];
  size_t i;
  static const char t6[] =
      "Test Using Larger Than Block-Size Key - Hash Key First";
  static const char t7[] =
      "This is a test using a larger than block-size key and a larger than "
      "block-size data. The key needs to be hashed before being used by the "
      "HMAC algorithm.";
  memset(key, 0x0b, 20); /* case 1 */
  unit_crypto_hmac(key, 20, "Hi There", 8,
                   "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e"
                   "32cff7");
  unit_crypto_hmac("Jefe", 4, "what do ya want for nothing?", 28, /* case 2 */
                   "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964"
                   "ec3843");
  memset(key, 0xaa, 20); /* case 3 */
  memset(data, 0xdd, 50);
  unit_crypto_hmac(key, 20, data, 50,
                   "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ce"
                   "d565fe");
  for (i = 0; i < 25; i++) key[i] = (unsigned char)(i + 1); /* case 4 */
  memset(data, 0xcd, 50);
  unit_crypto_hmac(key, 25, data, 50,
                   "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff467"
                   "29665b");
  memset(key, 0xaa, 131); /* cases 6 and 7: a key longer than a block */
  unit_crypto_hmac(key, 131, t6, strlen(t6),
                   "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0e"
                   "e37f54");
  unit_crypto_hmac(key, 131, t7, strlen(t7),
                   "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c"
                   "3a35e2");
}

static const struct unit_case unit_crypto_cases[] = {
    {"crypto_sha256", test_crypto_sha256},
    {"crypto_sha256_million", test_crypto_sha256_million},
    {"crypto_hmac", test_crypto_hmac},
    {NULL, NULL},
};
