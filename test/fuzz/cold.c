/*
** cold.c -- fuzz cold_chunk_check(), the check of a chunk object read
** back from S3 or a cold folder, and the chunk header's format.
**
** Input: 1 byte that says where the expected (incarnation, start, end)
** come from -- the object's own header, or 24 bytes of the input -- then
** the object's bytes.  Properties:
**   - cold_chunk_check() never reads outside the object and returns
**     URSULA_OK or URSULA_ECORRUPT;
**   - it accepts exactly the objects cold_chunk_seal() writes: an object
**     it accepts is its 40-byte header then end - start data bytes, and
**     sealing those bytes again for (incarnation, start) gives the same
**     object; a sealed object is accepted;
**   - a chunk name from the same numbers has the documented form.
*/
#include "../../ursula.c"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct buf obj, again;
  uint64_t inc, start, end;
  const uint8_t *body;
  size_t n;
  char name[COLD_NAME_MAX];
  int rc;
  if (size < 1) return 0;
  if (data[0] & 1) { /* the expectation from the input */
    if (size < 25) return 0;
    inc = fuzz_le(data + 1, 8, 8);
    start = fuzz_le(data + 9, 8, 8);
    end = fuzz_le(data + 17, 8, 8);
    body = data + 25;
    n = size - 25;
  } else { /* from the object's own header, as if it named itself */
    body = data + 1;
    n = size - 1;
    inc = fuzz_le(body + 8, n > 8 ? n - 8 : 0, 8);
    start = fuzz_le(body + 16, n > 16 ? n - 16 : 0, 8);
    end = fuzz_le(body + 24, n > 24 ? n - 24 : 0, 8);
  }
  memset(&obj, 0, sizeof(obj));
  memset(&again, 0, sizeof(again));
  obj.ptr = fuzz_copy(body, n);
  obj.len = obj.cap = n;
  rc = cold_chunk_check(&obj, inc, start, end);
  FUZZ_CHECK(rc == URSULA_OK || rc == URSULA_ECORRUPT);
  if (rc == URSULA_OK) {
    /* (end - start wraps only for ranges no state holds: apply and
    ** restore keep start < end) */
    FUZZ_CHECK(n >= COLD_HEADER && end - start == n - COLD_HEADER);
    FUZZ_CHECK(memcmp(obj.ptr, "URSCOLD1", 8) == 0);
    FUZZ_CHECK(buf_reserve(&again, n) == URSULA_OK);
    memset(again.ptr, 0, COLD_HEADER);
    memcpy(again.ptr + COLD_HEADER, obj.ptr + COLD_HEADER, n - COLD_HEADER);
    again.len = n;
    cold_chunk_seal(&again, inc, start);
    FUZZ_CHECK(memcmp(again.ptr, obj.ptr, n) == 0);
  } else if (n >= COLD_HEADER) {
    /* the same data, sealed for its own numbers, is accepted */
    FUZZ_CHECK(buf_append(&again, obj.ptr, n) == URSULA_OK);
    cold_chunk_seal(&again, inc, start);
    FUZZ_CHECK(cold_chunk_check(&again, inc, start,
                                start + (n - COLD_HEADER)) == URSULA_OK);
  }
  cold_chunk_name(name, (int)(inc % 100000), inc, start, end, start ^ end);
  FUZZ_CHECK(strlen(name) == 75 && name[0] == 'g' && name[6] == '/' &&
             name[23] == '/' && name[40] == '-' && name[57] == '-' &&
             name[58] == 't');
  FUZZ_CHECK(cold_chunk_term(name) == (start ^ end)); /* the term, back */
  buf_free(&obj);
  buf_free(&again);
  return 0;
}
