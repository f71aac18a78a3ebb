/*
** attrs.c -- a stream's attributes (issue 16; the peer's stream attrs).
**
** A stream may carry attributes: a JSON object with at most the members
** "title" (a string) and "metadata" (an object), as the peer has them.
** They are set with PUT /{b}/{s}/attrs (the body replaces them all; {}
** clears them) or at create with the header Stream-Attrs, read with GET
** /{b}/{s}/attrs, and kept in the state machine (CREATE with
** CMD_F_ATTRS, and ATTRS: cmd.c; the snapshot: stream.c), so every
** replica holds the same.
**
** RULES (what the peer does, and where ursula differs):
**   - the text is at most ATTRS_MAX_BYTES (16 KiB) and one JSON object
**     (RFC 8259), else 400;
**   - "title", if present, is a string, and "metadata" an object, else
**     400; any other member is dropped (the peer drops them too);
**   - a member given twice is 400 (RFC 8259 section 4 leaves duplicate
**     names to the receiver; the peer's parser keeps one silently).
**
** THE STORED FORM (canonical; what GET answers, what replicas compare):
**
**     {"title":T,"metadata":M}
**
** with T and M the member values exactly as sent (blanks around them
** trimmed, blanks and escapes inside kept), each pair only if it was
** given, title first; with neither, nothing is stored (empty) and GET
** answers {}.  Normalising the stored form again gives it back unchanged
** (attrs_canonical), which is how a snapshot's attrs are checked.
*/
#include "internal.h"

#define ATTRS_MAX_BYTES 16384

URSULA_PRIVATE int attrs_normalize(const char *p, size_t len, struct buf *out,
                                   const char **why) {
  struct str obj, key, val, title = {NULL, 0}, meta = {NULL, 0};
  size_t at = 0, keep = out->len;
  int rc = URSULA_OK;
  *why = NULL;
  if (len > ATTRS_MAX_BYTES) {
    *why = "attributes are larger than 16 KiB";
    return URSULA_EINVAL;
  }
  if (json_check(p, len) != URSULA_OK) {
    *why = "attributes are not valid JSON";
    return URSULA_EINVAL;
  }
  obj.ptr = p;
  obj.len = len;
  while (obj.len > 0 && (*obj.ptr == ' ' || *obj.ptr == '\t' ||
                         *obj.ptr == '\n' || *obj.ptr == '\r')) {
    obj.ptr++;
    obj.len--;
  }
  while (obj.len > 0 && (obj.ptr[obj.len - 1] == ' ' ||
                         obj.ptr[obj.len - 1] == '\t' ||
                         obj.ptr[obj.len - 1] == '\n' ||
                         obj.ptr[obj.len - 1] == '\r'))
    obj.len--;
  if (obj.len == 0 || obj.ptr[0] != '{') {
    *why = "attributes must be a JSON object";
    return URSULA_EINVAL;
  }
  while (json_member_next(obj, &at, &key, &val)) {
    int is_title = json_key_is(key, "title");
    if (!is_title && !json_key_is(key, "metadata")) continue; /* dropped */
    if ((is_title ? title : meta).ptr != NULL) {
      *why = "an attribute is given twice";
      return URSULA_EINVAL;
    }
    if (is_title && val.ptr[0] != '"') {
      *why = "title must be a string";
      return URSULA_EINVAL;
    }
    if (!is_title && val.ptr[0] != '{') {
      *why = "metadata must be a JSON object";
      return URSULA_EINVAL;
    }
    if (is_title)
      title = val;
    else
      meta = val;
  }
  if (title.ptr == NULL && meta.ptr == NULL) return URSULA_OK; /* none */
  rc |= buf_append_str(out, "{");
  if (title.ptr != NULL) {
    rc |= buf_append_str(out, "\"title\":");
    rc |= buf_append(out, title.ptr, title.len);
  }
  if (meta.ptr != NULL) {
    rc |= buf_append_str(out, title.ptr != NULL ? ",\"metadata\":"
                                                : "\"metadata\":");
    rc |= buf_append(out, meta.ptr, meta.len);
  }
  rc |= buf_append_str(out, "}");
  if (rc != URSULA_OK) {
    out->len = keep;
    return URSULA_ENOMEM;
  }
  return URSULA_OK;
}

URSULA_PRIVATE int attrs_canonical(struct str a) {
  struct buf b;
  const char *why;
  int same;
  memset(&b, 0, sizeof(b));
  same = attrs_normalize(a.ptr, a.len, &b, &why) == URSULA_OK &&
         b.len == a.len && memcmp(b.ptr, a.ptr, a.len) == 0;
  buf_free(&b);
  return same;
}

#undef ATTRS_MAX_BYTES
