// loro.mjs -- a Loro session against ursula's snapshot, retention and
// bootstrap routes (issue 16, item 6), with the real CRDT library
// (loro-crdt, installed in test/loro/ by `make test-snapshots`), run by
// test/snapshots.sh:
//
//   node test/loro.mjs http://127.0.0.1:PORT
//
// A writer makes bucket "lorotest" and stream "doc"
// (application/octet-stream), then 1000 edits, each exported as a Loro
// update and appended alone.  After update 600 it publishes
// doc.export({mode: "snapshot"}) at the tail offset then, and advances
// retention to it.  A new client bootstraps: it imports the snapshot part,
// then each update part, and its document must equal the writer's
// (toJSON and the version vector), with exactly 400 update parts.  The
// multipart body is read by test/multipart.mjs (strict, RFC 2046).
// Exits 0 and prints a summary line, or 1 with the reason.
import { createRequire } from "node:module";
import { parseMultipart } from "./multipart.mjs";

const require = createRequire(new URL("./loro/package.json", import.meta.url));
const { LoroDoc } = require("loro-crdt");

const base = process.argv[2];
if (!base) {
  console.error("usage: node test/loro.mjs http://127.0.0.1:PORT");
  process.exit(2);
}
const S = `${base}/lorotest/doc`;

function fail(why) {
  console.error(`loro.mjs: ${why}`);
  process.exit(1);
}

async function must(res, want, what) {
  if (res.status !== want) fail(`${what}: ${res.status}, want ${want}: ${await res.text()}`);
  return res;
}

// "0000000000000000_<n>" -> n
function byteOffset(h) {
  const m = /^0+_(\d+)$/.exec(h || "");
  if (!m) fail(`not an offset: ${h}`);
  return Number(m[1]);
}

const OCT = { "Content-Type": "application/octet-stream" };
await must(await fetch(`${base}/lorotest`, { method: "PUT" }), 201, "PUT bucket");
await must(await fetch(S, { method: "PUT", headers: OCT }), 201, "PUT stream");

const doc = new LoroDoc();
doc.setPeerId(1n);
const text = doc.getText("text");
const map = doc.getMap("meta");
const list = doc.getList("items");
let version = doc.oplogVersion();
let snapAt = -1;
for (let i = 0; i < 1000; i++) {
  // a mix of edits, deterministic
  text.insert(i % (text.length + 1), String.fromCharCode(97 + (i % 26)));
  if (i % 7 === 0 && text.length > 3) text.delete(1, 1);
  map.set(`k${i % 13}`, i);
  if (i % 3 === 0) list.push(i);
  doc.commit();
  const update = doc.export({ mode: "update", from: version });
  version = doc.oplogVersion();
  const res = await must(
    await fetch(S, { method: "POST", headers: OCT, body: update }), 204, `append ${i + 1}`);
  if (i + 1 === 600) {
    snapAt = byteOffset(res.headers.get("stream-next-offset"));
    const snap = doc.export({ mode: "snapshot" });
    const put = await must(
      await fetch(`${S}/snapshot/${snapAt}`, { method: "PUT", headers: OCT, body: snap }),
      201, "PUT snapshot");
    if (put.headers.get("stream-snapshot-offset") !== String(snapAt).padStart(20, "0"))
      fail(`Stream-Snapshot-Offset ${put.headers.get("stream-snapshot-offset")}`);
    const ret = await must(
      await fetch(`${S}/retention/${snapAt}`, { method: "PUT" }), 204, "PUT retention");
    if (ret.headers.get("stream-retained-offset") !== String(snapAt))
      fail(`Stream-Retained-Offset ${ret.headers.get("stream-retained-offset")}`);
  }
}
const writerJSON = JSON.stringify(doc.toJSON());

// the retained bytes are gone: an explicit read from 0 is 410
const gone = await fetch(`${S}?offset=0000000000000000_0000000000000000`);
if (gone.status !== 410) fail(`read at 0 after retention: ${gone.status}`);

// a new client bootstraps
const boot = await must(await fetch(`${S}/bootstrap`), 200, "GET bootstrap");
if (boot.headers.get("stream-snapshot-offset") !== String(snapAt).padStart(20, "0"))
  fail(`bootstrap Stream-Snapshot-Offset ${boot.headers.get("stream-snapshot-offset")}`);
if (boot.headers.get("stream-up-to-date") !== "true") fail("bootstrap not up to date");
const { parts } = parseMultipart(boot.headers.get("content-type"),
  Buffer.from(await boot.arrayBuffer()));
const updates = parts.length - 1;
if (updates !== 400) fail(`${updates} update parts, want 400`);
const reader = new LoroDoc();
reader.import(new Uint8Array(parts[0].body));
const atSnapshot = JSON.stringify(reader.toJSON());
for (const p of parts.slice(1)) reader.import(new Uint8Array(p.body));
const readerJSON = JSON.stringify(reader.toJSON());
if (readerJSON !== writerJSON) fail("the bootstrapped document differs from the writer's");
if (JSON.stringify(reader.oplogVersion().toJSON()) !==
    JSON.stringify(doc.oplogVersion().toJSON()))
  fail("the version vectors differ");
if (atSnapshot === writerJSON) fail("the snapshot alone already equals the end state");
// and the stream's tail after bootstrap is where ordinary reads go on
const tail = byteOffset(boot.headers.get("stream-next-offset"));
const more = await must(
  await fetch(`${S}?offset=0000000000000000_${String(tail).padStart(16, "0")}`), 200, "read on");
if ((await more.arrayBuffer()).byteLength !== 0) fail("bytes after the bootstrap's tail");
console.log(`1000 updates, snapshot at ${snapAt}, retention there, bootstrap: ` +
  `snapshot + ${updates} updates, the same document (${writerJSON.length} bytes of JSON)`);
