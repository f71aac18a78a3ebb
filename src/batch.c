/*
** batch.c -- many appends in one log entry: append-batch and $transaction
** (issue 16; the peer's append-batch and group-append-transaction-v1).
**
** Both become one MULTI command (cmd.c): one log entry, one sync, one
** Raft round, whose ops are APPENDs to streams of one group.  This part
** turns the request body into the ops and the ops' results into the
** answer; stream.c applies them (MULTI there says how).
**
** APPEND-BATCH.  POST /{b}/{s}/append-batch (or /{b}/{aff}/{s}/...):
** the body is frames, each
**
**     offset  size  field
**     0       4     n, the payload's length, unsigned big-endian
**     4       n     the payload: one append's body
**
** back to back to the end of the body; 1 to CMD_MULTI_MAX (512) frames,
** none empty (n = 0), the last ending exactly at the body's end; else
** 400.  The request's Content-Type is every frame's (required); a JSON
** stream's frame is one JSON text, flattened as a POST's body is (an
** array's elements are its messages; an empty array or invalid JSON is
** 400 for the whole request, naming the frame).  Producer-Id, -Epoch
** and -Seq, if sent, make frame i the producer's append number Seq + i
** (so a retried batch is exactly-once, frame by frame).  Stream-Seq,
** Stream-Closed and Stream-Record-Match are not taken per batch (400):
** send those on a single append.  Frames are independent appends, in
** order: each succeeds or fails on its own, as its own POST would.
**
** The answer is 200 with Content-Type application/json and one result
** per frame, in order:
**
**     [{"status":204,"stream_next_offset":"..."},
**      {"status":409,"error_code":"StreamClosed","error":"stream is closed",
**       "stream_next_offset":"..."}, ...]
**
** status is the status the frame's own POST would have had (204, or 200
** with "producer_epoch" and "producer_seq" when a producer appended);
** stream_next_offset is the stream's tail just after that frame (an
** offset as Stream-Next-Offset gives them); error_code and error only
** for a failed frame.  The peer's specification names stream_next_offset
** and error_code but its server omits them; ursula sends them.  With
** Prefer: return=minimal (RFC 7240) the answer is 204 with no body when
** every frame succeeded (and the 200 array otherwise).
**
** $TRANSACTION.  POST /{b}/{aff}/$transaction, Content-Type
** application/json, body
**
**     {"operations":[{"stream":"s", "content_type":"text/plain",
**        "payload_base64":"aGk=", "close_after":false,
**        "stream_seq":"...", "producer":{"producer_id":"p",
**        "producer_epoch":0,"producer_seq":0}}, ...]}
**
** 1 to 64 operations on streams /{b}/{aff}/{stream} (all in the group of
** /{b}/{aff}: path affinity), which must exist (a transaction creates
** none).  stream, content_type and payload_base64 (RFC 4648 section 4,
** padded) are required strings; an empty payload needs close_after.
** Every operation applies in the one entry, or none does: the answer is
** 200 with the array of results (as append-batch's), or, if an operation
** fails, that operation's status with {"error_code":..,"error":..,
** "operation":i} (i from 0) and nothing applied.  A stream named twice
** is 400.  record_match is not taken yet (400).
*/
#include "internal.h"

#define BATCH_TXN_MAX 64

/* ------------------------------------------------------------ ops */

/* Encode *op, an APPEND, as the next op of a MULTI into ops. */
static int batch_put_op(struct buf *ops, const struct cmd *op) {
  struct buf one;
  struct str s;
  int rc;
  memset(&one, 0, sizeof(one));
  rc = cmd_encode(op, &one);
  s.ptr = one.ptr;
  s.len = one.len;
  if (rc == URSULA_OK) rc = cmd_put_bytes(ops, s);
  buf_free(&one);
  return rc;
}

/* Set op's data to body, flattened first (into *flat) if json: 0; 1 if
** it is not valid JSON, or an empty array; or URSULA_ENOMEM. */
static int batch_op_data(struct cmd *op, const char *p, size_t len, int json,
                         struct buf *flat) {
  size_t n = 0;
  int rc;
  op->data.ptr = p;
  op->data.len = len;
  op->n_msgs = 0;
  if (!json || len == 0) return 0;
  flat->len = 0;
  rc = json_flatten(p, len, flat, &n);
  if (rc == URSULA_ENOMEM) return rc;
  if (rc != URSULA_OK || n == 0) return 1;
  op->data.ptr = flat->ptr;
  op->data.len = flat->len;
  op->n_msgs = n;
  return 0;
}

URSULA_PRIVATE int batch_frames(const char *p, size_t len,
                                const struct cmd *tmpl, struct buf *ops,
                                uint64_t *n_ops, char *why, size_t why_cap) {
  const unsigned char *q = (const unsigned char *)p;
  size_t at = 0;
  uint64_t n = 0;
  struct buf flat;
  int rc = URSULA_OK;
  memset(&flat, 0, sizeof(flat));
  if (len == 0) {
    snprintf(why, why_cap, "an append-batch needs at least one frame");
    return URSULA_EINVAL;
  }
  while (at < len && rc == URSULA_OK) {
    struct cmd op = *tmpl;
    uint32_t flen;
    if (len - at < 4) {
      snprintf(why, why_cap, "frame %llu: the length is cut short",
               (unsigned long long)n);
      rc = URSULA_EINVAL;
      break;
    }
    flen = (uint32_t)q[at] << 24 | (uint32_t)q[at + 1] << 16 |
           (uint32_t)q[at + 2] << 8 | (uint32_t)q[at + 3];
    at += 4;
    if (flen == 0 || flen > len - at || n == CMD_MULTI_MAX) {
      snprintf(why, why_cap,
               n == CMD_MULTI_MAX ? "more than %llu frames"
               : flen == 0        ? "frame %llu is empty"
                                  : "frame %llu runs past the body's end",
               (unsigned long long)(n == CMD_MULTI_MAX ? CMD_MULTI_MAX : n));
      rc = URSULA_EINVAL;
      break;
    }
    op.producer_seq = tmpl->producer_seq + n;
    if ((tmpl->flags & CMD_F_PRODUCER) &&
        op.producer_seq > ((uint64_t)1 << 53) - 1) {
      snprintf(why, why_cap, "frame %llu: Producer-Seq + %llu is past 2^53-1",
               (unsigned long long)n, (unsigned long long)n);
      rc = URSULA_EINVAL;
      break;
    }
    rc = batch_op_data(&op, p + at, flen, (tmpl->flags & CMD_F_JSON) != 0,
                       &flat);
    if (rc == 1) {
      snprintf(why, why_cap,
               "frame %llu is not valid JSON (or an empty array)",
               (unsigned long long)n);
      rc = URSULA_EINVAL;
      break;
    }
    if (rc == URSULA_OK) rc = batch_put_op(ops, &op);
    at += flen;
    n++;
  }
  buf_free(&flat);
  *n_ops = n;
  return rc;
}

/* ------------------------------------------------------------ $transaction */

/* The string value raw (JSON, as sent) into out (emptied first, NUL
** ended): 0, or -1 if it is not a string or has a NUL. */
static int batch_string(struct str raw, struct buf *out) {
  out->len = 0;
  if (raw.len < 2 || raw.ptr[0] != '"' ||
      json_string_value(raw, out) != URSULA_OK ||
      buf_append(out, "", 1) != URSULA_OK ||
      memchr(out->ptr, '\0', out->len - 1) != NULL)
    return -1;
  out->len--;
  return 0;
}

/* A JSON number that is a whole number 0..2^53-1 in plain decimal. */
static int batch_u53(struct str raw, uint64_t *out) {
  return util_parse_u64(raw, ((uint64_t)1 << 53) - 1, out);
}

/* The producer object of an operation into op (strings into id). */
static const char *batch_producer(struct str obj, struct cmd *op,
                                  struct buf *id) {
  struct str key, val;
  size_t at = 0;
  int have = 0;
  if (obj.ptr[0] != '{') return "producer must be an object";
  while (json_member_next(obj, &at, &key, &val)) {
    if (json_key_is(key, "producer_id")) {
      if (batch_string(val, id) != 0 || id->len == 0 ||
          id->len > URSULA_MAX_PRODUCER_ID)
        return "producer_id must be a non-empty string";
      have |= 1;
    } else if (json_key_is(key, "producer_epoch")) {
      if (batch_u53(val, &op->producer_epoch) != 0)
        return "producer_epoch must be a whole number";
      have |= 2;
    } else if (json_key_is(key, "producer_seq")) {
      if (batch_u53(val, &op->producer_seq) != 0)
        return "producer_seq must be a whole number";
      have |= 4;
    }
  }
  if (have != 7)
    return "producer needs producer_id, producer_epoch and producer_seq";
  op->producer_id.ptr = id->ptr;
  op->producer_id.len = id->len;
  op->flags |= CMD_F_PRODUCER;
  return NULL;
}

/* Scratch for one operation's strings. */
struct batch_scratch {
  struct buf path, type, payload, flat, seq, pid;
};

/* One operation (obj) of a transaction on the streams under group (the
** path "/{b}/{aff}") into op, its views into sc.  NULL or why (400). */
static const char *batch_txn_op(struct str obj, struct str group,
                                struct cmd *op, struct batch_scratch *sc) {
  struct str key, val;
  size_t at = 0;
  int have = 0;
  char norm[64];
  if (obj.ptr[0] != '{') return "each operation must be a JSON object";
  memset(op, 0, sizeof(*op));
  op->type = CMD_APPEND;
  while (json_member_next(obj, &at, &key, &val)) {
    const char *bad = NULL;
    if (json_key_is(key, "stream")) {
      sc->path.len = 0;
      if (buf_append(&sc->path, group.ptr, group.len) != URSULA_OK ||
          buf_append(&sc->path, "/", 1) != URSULA_OK)
        return "out of memory";
      {
        struct buf id;
        struct str s;
        memset(&id, 0, sizeof(id));
        if (batch_string(val, &id) != 0) bad = "stream must be a string";
        s.ptr = id.ptr;
        s.len = id.len;
        if (bad == NULL && !util_stream_id_ok(s))
          bad = "stream is not a stream id";
        if (bad == NULL && buf_append(&sc->path, id.ptr, id.len) != URSULA_OK)
          bad = "out of memory";
        buf_free(&id);
      }
      have |= 1;
    } else if (json_key_is(key, "content_type")) {
      if (batch_string(val, &sc->type) != 0 || sc->type.len == 0 ||
          sc->type.len > 255 || memchr(sc->type.ptr, '/', sc->type.len) == NULL)
        bad = "content_type must be a media type";
      have |= 2;
    } else if (json_key_is(key, "payload_base64")) {
      struct buf text;
      memset(&text, 0, sizeof(text));
      sc->payload.len = 0;
      if (batch_string(val, &text) != 0 ||
          util_base64_decode(&sc->payload, text.ptr, text.len) != URSULA_OK)
        bad = "payload_base64 must be base64 (RFC 4648, padded)";
      buf_free(&text);
      have |= 4;
    } else if (json_key_is(key, "close_after")) {
      if (util_str_eq(val, "true"))
        op->flags |= CMD_F_CLOSE;
      else if (!util_str_eq(val, "false"))
        bad = "close_after must be true or false";
    } else if (json_key_is(key, "stream_seq")) {
      if (batch_string(val, &sc->seq) != 0 || sc->seq.len == 0 ||
          sc->seq.len > URSULA_MAX_STREAM_SEQ)
        bad = "stream_seq must be a non-empty string";
      op->flags |= CMD_F_SEQ;
      op->stream_seq.ptr = sc->seq.ptr;
      op->stream_seq.len = sc->seq.len;
    } else if (json_key_is(key, "producer")) {
      bad = batch_producer(val, op, &sc->pid);
    } else if (json_key_is(key, "record_match")) {
      bad = "record_match is not supported in a transaction yet";
    }
    if (bad != NULL) return bad;
  }
  if (have != 7)
    return "each operation needs stream, content_type and payload_base64";
  op->path.ptr = sc->path.ptr;
  op->path.len = sc->path.len;
  op->content_type.ptr = sc->type.ptr;
  op->content_type.len = sc->type.len;
  op->flags |= CMD_F_CT;
  stream_norm_type(op->content_type, norm, sizeof(norm));
  if (strcmp(norm, "application/json") == 0) op->flags |= CMD_F_JSON;
  if (sc->payload.len == 0 && !(op->flags & CMD_F_CLOSE))
    return "an empty payload appends nothing (set close_after to close)";
  switch (batch_op_data(op, sc->payload.ptr ? sc->payload.ptr : "",
                        sc->payload.len, (op->flags & CMD_F_JSON) != 0,
                        &sc->flat)) {
    case 0:
      break;
    case 1:
      return "a JSON payload must be valid JSON and not an empty array";
    default:
      return "out of memory";
  }
  return NULL;
}

static void batch_scratch_free(struct batch_scratch *sc) {
  buf_free(&sc->path);
  buf_free(&sc->type);
  buf_free(&sc->payload);
  buf_free(&sc->flat);
  buf_free(&sc->seq);
  buf_free(&sc->pid);
}

URSULA_PRIVATE int batch_txn(const char *p, size_t len, struct str group,
                             struct buf *ops, uint64_t *n_ops, char *why,
                             size_t why_cap) {
  struct str obj, key, val, list = {NULL, 0};
  size_t at = 0;
  uint64_t n = 0;
  struct batch_scratch sc;
  const char *bad = NULL;
  int rc = URSULA_OK;
  *n_ops = 0;
  if (json_check(p, len) != URSULA_OK) {
    snprintf(why, why_cap, "the body is not valid JSON");
    return URSULA_EINVAL;
  }
  obj.ptr = p;
  obj.len = len;
  while (obj.len > 0 && strchr(" \t\r\n", obj.ptr[0]) != NULL) {
    obj.ptr++;
    obj.len--;
  }
  while (obj.len > 0 && strchr(" \t\r\n", obj.ptr[obj.len - 1]) != NULL)
    obj.len--;
  if (obj.ptr[0] == '{')
    while (json_member_next(obj, &at, &key, &val))
      if (json_key_is(key, "operations")) list = val;
  if (list.ptr == NULL || list.ptr[0] != '[') {
    snprintf(why, why_cap, "the body must be {\"operations\":[...]}");
    return URSULA_EINVAL;
  }
  memset(&sc, 0, sizeof(sc));
  {
    /* the array's elements: an array read as an object's members would
    ** be, without keys (json_member_next wants "key": value) */
    size_t i = 1;
    for (;;) {
      struct str el;
      struct cmd op;
      while (i < list.len && strchr(" \t\r\n,", list.ptr[i]) != NULL) i++;
      if (i >= list.len || list.ptr[i] == ']') break;
      el.ptr = list.ptr + i;
      el.len = json_value_len(list.ptr + i, list.len - i);
      i += el.len;
      if (n == BATCH_TXN_MAX) {
        bad = "more than 64 operations";
        break;
      }
      bad = batch_txn_op(el, group, &op, &sc);
      if (bad != NULL) break;
      if ((rc = batch_put_op(ops, &op)) != URSULA_OK) break;
      n++;
    }
  }
  batch_scratch_free(&sc);
  if (rc != URSULA_OK) return rc;
  if (bad != NULL && strcmp(bad, "out of memory") == 0) return URSULA_ENOMEM;
  if (bad == NULL && n == 0) bad = "a transaction needs at least one operation";
  if (bad != NULL) {
    if (n < BATCH_TXN_MAX && strcmp(bad, "more than 64 operations") != 0)
      snprintf(why, why_cap, "operation %llu: %s", (unsigned long long)n, bad);
    else
      snprintf(why, why_cap, "%s", bad);
    return URSULA_EINVAL;
  }
  *n_ops = n;
  return URSULA_OK;
}

/* ------------------------------------------------------------ results */

URSULA_PRIVATE const char *batch_error_code(const struct stream_result *r) {
  switch (r->status) {
    case 400:
      return "BadRequest";
    case 403:
      return "ProducerEpochStale";
    case 404:
      return "StreamNotFound";
    case 410:
      return "StreamGone";
    case 409:
      if (r->seq_gap) return "ProducerSeqConflict";
      if (r->closed) return "StreamClosed";
      if (r->type_mismatch) return "ContentTypeMismatch";
      return "StreamSeqConflict";
    case 503:
      return "Unavailable";
    default:
      return "Error";
  }
}

URSULA_PRIVATE int batch_render(struct buf *out, const struct buf *ops,
                                int *all_ok) {
  size_t k;
  int rc = buf_append_str(out, "[");
  *all_ok = 1;
  for (k = 0; k + sizeof(struct stream_op) <= ops->len && rc == URSULA_OK;
       k += sizeof(struct stream_op)) {
    struct stream_op o;
    char off[40];
    memcpy(&o, ops->ptr + k, sizeof(o));
    util_offset(off, o.r.tail);
    rc = buf_printf(out, "%s{\"status\":%d", k ? "," : "", o.r.status);
    if (o.r.status < 200 || o.r.status > 299) {
      *all_ok = 0;
      if (rc == URSULA_OK)
        rc = buf_printf(out, ",\"error_code\":\"%s\",\"error\":",
                        batch_error_code(&o.r));
      if (rc == URSULA_OK)
        rc = json_put_string(out, o.r.reason ? o.r.reason : "error");
    }
    if (rc == URSULA_OK && o.r.producer_echo)
      rc = buf_printf(out, ",\"producer_epoch\":%llu,\"producer_seq\":%llu",
                      (unsigned long long)o.r.producer_epoch,
                      (unsigned long long)o.r.producer_seq);
    if (rc == URSULA_OK && o.r.status != 404 && o.r.status != 410 &&
        o.r.status != 0)
      rc = buf_printf(out, ",\"stream_next_offset\":\"%s\"", off);
    if (rc == URSULA_OK) rc = buf_append_str(out, "}");
  }
  return rc == URSULA_OK ? buf_append_str(out, "]\n") : rc;
}

URSULA_PRIVATE int batch_render_failure(struct buf *out,
                                        const struct buf *ops) {
  size_t k;
  for (k = 0; k + sizeof(struct stream_op) <= ops->len;
       k += sizeof(struct stream_op)) {
    struct stream_op o;
    memcpy(&o, ops->ptr + k, sizeof(o));
    if (o.r.status == 0) continue;
    if (buf_printf(out, "{\"error_code\":\"%s\",\"error\":",
                   batch_error_code(&o.r)) != URSULA_OK ||
        json_put_string(out, o.r.reason ? o.r.reason : "error") !=
            URSULA_OK ||
        buf_printf(out, ",\"operation\":%lu}\n",
                   (unsigned long)(k / sizeof(struct stream_op))) != URSULA_OK)
      return URSULA_ENOMEM;
    return URSULA_OK;
  }
  return buf_append_str(out, "{\"error_code\":\"Error\",\"error\":\"error\"}\n");
}

#undef BATCH_TXN_MAX
