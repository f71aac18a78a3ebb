// multipart.mjs -- a strict reader of the multipart/mixed body a
// bootstrap answers (RFC 2046 section 5.1.1), the tests' own: nothing of
// the server's is used.
//
//   import { parseMultipart } from "./multipart.mjs"
//   node test/multipart.mjs HEADERS BODY   (curl -D HEADERS -o BODY): prints
//                          the parts as JSON [[content type, body], ...],
//                          or "BAD: why"
//
// The rules checked: the content type is exactly "multipart/mixed;
// boundary=ursula-bootstrap-" and 16 lowercase hex digits; the body
// starts with the first delimiter "--B" (no preamble); every delimiter
// after it is preceded by CRLF (which belongs to it) and followed by
// CRLF, the last one by "--" and then CRLF or nothing; each part is
// header lines, an empty line, then the body; each part has exactly one
// Content-Type; and no part holds "--B".
import { readFileSync } from "node:fs";

export function parseMultipart(contentType, body) {
  const m = /^multipart\/mixed; boundary=(ursula-bootstrap-[0-9a-f]{16})$/.exec(
    contentType || "");
  if (!m) throw new Error(`content type ${JSON.stringify(contentType)}`);
  const b = m[1];
  const first = Buffer.from(`--${b}`);
  const delim = Buffer.from(`\r\n--${b}`);
  if (!body.subarray(0, first.length).equals(first))
    throw new Error("the body does not start with the first delimiter");
  let pos = first.length;
  const parts = [];
  for (;;) {
    const after = body.subarray(pos, pos + 2).toString("latin1");
    if (after === "--") {
      const rest = body.subarray(pos + 2).toString("latin1");
      if (rest !== "" && rest !== "\r\n")
        throw new Error(`bytes after the close delimiter: ${JSON.stringify(rest)}`);
      break;
    }
    if (after !== "\r\n") throw new Error("a delimiter is not followed by CRLF");
    pos += 2;
    const next = body.indexOf(delim, pos);
    if (next < 0) throw new Error("no closing delimiter");
    const part = body.subarray(pos, next);
    let headEnd, head;
    if (part.subarray(0, 2).toString("latin1") === "\r\n") {
      headEnd = 0; head = ""; // no header fields
    } else {
      headEnd = part.indexOf("\r\n\r\n");
      if (headEnd < 0) throw new Error("a part has no end of its header");
      head = part.subarray(0, headEnd).toString("latin1");
      headEnd += 2;
    }
    const types = [];
    for (const line of head === "" ? [] : head.split("\r\n")) {
      const h = /^([A-Za-z0-9-]+): (.*)$/.exec(line);
      if (!h) throw new Error(`a bad header line ${JSON.stringify(line)}`);
      if (h[1].toLowerCase() === "content-type") types.push(h[2]);
    }
    if (types.length !== 1) throw new Error("a part without exactly one Content-Type");
    const data = part.subarray(headEnd + 2);
    if (data.includes(first)) throw new Error("a part holds the boundary");
    parts.push({ type: types[0], body: data });
    pos = next + delim.length;
  }
  return { boundary: b, parts };
}

if (process.argv[1] && process.argv[1].endsWith("multipart.mjs") && process.argv[3]) {
  const head = readFileSync(process.argv[2], "latin1");
  const ct = (/^content-type: (.*)$/im.exec(head) || [])[1];
  try {
    const r = parseMultipart(ct && ct.trim(), readFileSync(process.argv[3]));
    console.log(JSON.stringify(r.parts.map((p) => [p.type, p.body.toString("latin1")])));
  } catch (e) {
    console.log(`BAD: ${e.message}`);
  }
}
