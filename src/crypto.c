/*
** crypto.c -- SHA-256 and HMAC-SHA256, the hashes SigV4 signs with.
**
** The default build has no crypto library, so SHA-256 (FIPS 180-4) is
** here; with URSULA_ENABLE_TLS the build links BearSSL, whose SHA-256 is
** used instead, behind the same functions.  test/unit_crypto.c runs the
** FIPS 180-4 and RFC 4231 vectors against whichever is built.
**
** SHA-256 in brief: the message is padded with one 1 bit, zeros, and its
** length in bits as a 64-bit big-endian number, to a multiple of 64
** bytes; each 64-byte block updates eight 32-bit words of state through
** 64 rounds; the digest is the final state, big-endian.
**
** HMAC (RFC 2104) with a 64-byte block: a key longer than 64 bytes is
** replaced by its hash; then H((K ^ opad) || H((K ^ ipad) || message)).
*/
#include "internal.h"

#if URSULA_ENABLE_TLS

URSULA_PRIVATE void crypto_sha256_init(struct crypto_sha256 *c) {
  br_sha256_init(&c->br);
}

URSULA_PRIVATE void crypto_sha256_update(struct crypto_sha256 *c, const void *p,
                                         size_t n) {
  br_sha256_update(&c->br, p, n);
}

URSULA_PRIVATE void crypto_sha256_final(struct crypto_sha256 *c,
                                        unsigned char out[32]) {
  br_sha256_out(&c->br, out);
}

#else /* our own SHA-256 */

/* The first 32 bits of the fractional parts of the cube roots of the
** first 64 primes (FIPS 180-4, 4.2.2). */
static const uint32_t crypto_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
    0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define CRYPTO_ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

/* Update the state h with one 64-byte block. */
static void crypto_block(uint32_t h[8], const unsigned char *p) {
  uint32_t w[64], a, b, c, d, e, f, g, k, t1, t2;
  int i;
  for (i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
           (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
  for (i = 16; i < 64; i++) {
    uint32_t s0 = CRYPTO_ROTR(w[i - 15], 7) ^ CRYPTO_ROTR(w[i - 15], 18) ^
                  (w[i - 15] >> 3);
    uint32_t s1 = CRYPTO_ROTR(w[i - 2], 17) ^ CRYPTO_ROTR(w[i - 2], 19) ^
                  (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  a = h[0], b = h[1], c = h[2], d = h[3];
  e = h[4], f = h[5], g = h[6], k = h[7];
  for (i = 0; i < 64; i++) {
    t1 = k + (CRYPTO_ROTR(e, 6) ^ CRYPTO_ROTR(e, 11) ^ CRYPTO_ROTR(e, 25)) +
         ((e & f) ^ (~e & g)) + crypto_k[i] + w[i];
    t2 = (CRYPTO_ROTR(a, 2) ^ CRYPTO_ROTR(a, 13) ^ CRYPTO_ROTR(a, 22)) +
         ((a & b) ^ (a & c) ^ (b & c));
    k = g, g = f, f = e, e = d + t1;
    d = c, c = b, b = a, a = t1 + t2;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d;
  h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

URSULA_PRIVATE void crypto_sha256_init(struct crypto_sha256 *c) {
  /* the fractional parts of the square roots of the first 8 primes */
  static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372,
                                 0xa54ff53a, 0x510e527f, 0x9b05688c,
                                 0x1f83d9ab, 0x5be0cd19};
  memcpy(c->h, h0, sizeof(h0));
  c->n_bytes = 0;
  c->n_block = 0;
}

URSULA_PRIVATE void crypto_sha256_update(struct crypto_sha256 *c, const void *p,
                                         size_t n) {
  const unsigned char *q = (const unsigned char *)p;
  c->n_bytes += n;
  if (c->n_block > 0) { /* fill the partial block first */
    size_t take = 64 - c->n_block < n ? 64 - c->n_block : n;
    memcpy(c->block + c->n_block, q, take);
    c->n_block += take;
    q += take;
    n -= take;
    if (c->n_block < 64) return;
    crypto_block(c->h, c->block);
    c->n_block = 0;
  }
  for (; n >= 64; q += 64, n -= 64) crypto_block(c->h, q);
  memcpy(c->block, q, n);
  c->n_block = n;
}

URSULA_PRIVATE void crypto_sha256_final(struct crypto_sha256 *c,
                                        unsigned char out[32]) {
  uint64_t bits = c->n_bytes * 8;
  int i;
  c->block[c->n_block++] = 0x80;
  if (c->n_block > 56) { /* no room for the length: one more block */
    memset(c->block + c->n_block, 0, 64 - c->n_block);
    crypto_block(c->h, c->block);
    c->n_block = 0;
  }
  memset(c->block + c->n_block, 0, 56 - c->n_block);
  for (i = 0; i < 8; i++)
    c->block[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
  crypto_block(c->h, c->block);
  for (i = 0; i < 8; i++) {
    out[4 * i] = (unsigned char)(c->h[i] >> 24);
    out[4 * i + 1] = (unsigned char)(c->h[i] >> 16);
    out[4 * i + 2] = (unsigned char)(c->h[i] >> 8);
    out[4 * i + 3] = (unsigned char)c->h[i];
  }
}

#endif /* URSULA_ENABLE_TLS */

URSULA_PRIVATE void crypto_sha256(const void *p, size_t n,
                                  unsigned char out[32]) {
  struct crypto_sha256 c;
  crypto_sha256_init(&c);
  crypto_sha256_update(&c, p, n);
  crypto_sha256_final(&c, out);
}

URSULA_PRIVATE void crypto_hmac_sha256(const void *key, size_t key_len,
                                       const void *msg, size_t n,
                                       unsigned char out[32]) {
  unsigned char k[64], pad[64], inner[32];
  struct crypto_sha256 c;
  size_t i;
  memset(k, 0, sizeof(k));
  if (key_len > 64)
    crypto_sha256(key, key_len, k);
  else if (key_len > 0)
    memcpy(k, key, key_len);
  for (i = 0; i < 64; i++) pad[i] = (unsigned char)(k[i] ^ 0x36);
  crypto_sha256_init(&c);
  crypto_sha256_update(&c, pad, 64);
  crypto_sha256_update(&c, msg, n);
  crypto_sha256_final(&c, inner);
  for (i = 0; i < 64; i++) pad[i] = (unsigned char)(k[i] ^ 0x5c);
  crypto_sha256_init(&c);
  crypto_sha256_update(&c, pad, 64);
  crypto_sha256_update(&c, inner, 32);
  crypto_sha256_final(&c, out);
}

URSULA_PRIVATE void crypto_hex(const void *p, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  const unsigned char *q = (const unsigned char *)p;
  size_t i;
  for (i = 0; i < n; i++) {
    out[2 * i] = digits[q[i] >> 4];
    out[2 * i + 1] = digits[q[i] & 15];
  }
  out[2 * n] = '\0';
}
