// driver.mjs -- the fault harness with real processes (issue 14): N
// ursula nodes (3 or 5) with --wal-dir, a proxy per directed peer link
// (proxy.mjs), clients appending through idempotent producers to random
// nodes, readers checking read-your-writes across nodes, and nemeses,
// for a given time; then everything is healed, the cluster must
// converge, and a history checker reads every stream from every node.
// Node's own modules only; loopback only; every wait is bounded; every
// process it starts is killed on exit, its temporary folder removed (and
// the tmpfs it mounted unmounted).
//
//   node test/fault/driver.mjs [--bin ./ursula] [--nodes 3] [--seconds 30]
//        [--seed S] [--groups 16] [--clients 4] [--readers 2]
//        [--streams 6] [--nemeses kind,kind,...] [--max-503-per-restart N]
//        [--keep]
//
// The seed (printed; a random one if none is given) decides the nemesis
// schedule (printed before the run: when, which kind, for how long, and
// the random draws that pick its target), the clients' streams and
// payload sizes; which node a "leader" nemesis hits depends on who leads
// at that moment (printed as it happens).  Exit status 0: no violation;
// 1: violations (each printed, then the summary); 2: the harness itself
// could not run (bad flags, a node that never started).
//
// CLIENTS.  Each appender is an idempotent producer (Producer-Id "cK",
// epoch 0, one seq counter per stream, protocol 5.2.1): one request in
// flight, to a random node; on 503, a transport error or no answer in
// 3 s it retries the same seq on another node until the answer is 200
// (appended: Stream-Next-Offset is the end of its bytes) or 204 (a
// duplicate of an earlier try that was appended: acknowledged, its
// offset unknown to the client); only then seq + 1.  A payload is
// "[K.S.SEQ:" + letters + "]", so every append is told apart.  After an
// acknowledgment (200) it reads the stream on another node from the
// append's start: the bytes must be there (reads are linearizable on
// any node).  Readers read random streams on random nodes from offset
// -1 or from the start of a recent acknowledged append.
//
// NEMESES (--nemeses; default all): kill-leader (kill -9 the node that
// leads a stream's group, the one whose GET /__ursula/cluster says it
// leads it in the highest term, restart it after the duration),
// kill-follower (kill -9 a node that does not lead it), pause
// (SIGSTOP, SIGCONT after the duration), isolate (cut every link to and
// from a node), split (a minority and a majority: every link between
// them cut; 1 of 3, 2 of 5), one-way (cut one directed link), delay
// (every link of a node delayed 20..300 ms), reset (RST every connection
// of a node's links, four times during the duration), disk-full (the
// wal-dir of node 2 is on a tmpfs this harness mounts; a file fills it
// for the duration, then is removed; without root this nemesis is
// skipped with "skip: full disk needs root"), cut-leader-kill (cut
// every link out of a stream's group leader; producer c99 sends 3
// appends to that stream, one after the other, each first to that
// leader; 600 ms after the cut kill -9 it, keep it down 2.5 s, heal its
// links and restart it: what it acknowledged alone is lost if it
// acknowledged before a majority had it).  Only when named (not in
// "all"): rolling (a rolling restart, issue 14's graceful stop: each
// node in turn gets SIGTERM, must exit 0 within 10 s -- it hands its
// groups' leadership over first -- and is restarted on its --wal-dir;
// the next one waits until it has caught up: every stream read on it, a
// linearizable read, within 30 s).  One nemesis at a time, each
// healed before the next: it lasts 1 to 2.5 s, then a gap of 0.5 to 2 s;
// the kinds come in rounds, each kind once per round, in an order the
// seed draws.
//
// THE CHECKER, after healing, draining the clients' unresolved
// appends (bounded) and waiting for the nodes to agree (bounded): reads
// every stream from every node (catch-up GETs from -1 until
// Stream-Up-To-Date) and reports as violations: nodes whose bytes differ;
// bytes that are not a sequence of whole payloads; a payload twice; a
// producer's seqs not 0, 1, 2, ... in order (a gap or a reordering); an
// acknowledged append missing, or not at its acknowledged offset; a read
// during the run whose bytes are not the final bytes at its offsets, or
// that ended before an append acknowledged before the read was sent; a
// status the protocol does not give to these requests (a 204 to a first
// try, 409, 403, 404, ...); an append still unresolved after the drain;
// with --max-503-per-restart N, more 503s to appends in the whole run than
// N times the restarts of the rolling nemesis (at least once).

import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import http from "node:http";
import { fileURLToPath } from "node:url";
import { createHash } from "node:crypto";
import { freePort } from "../ports.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));

// ------------------------------------------------------------ options
const opt = { bin: "./ursula", nodes: 3, seconds: 30, seed: 0, groups: 16,
              clients: 4, readers: 2, streams: 6, nemeses: "all",
              "max-503-per-restart": -1, keep: false };
{
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    const k = a[i].replace(/^--/, "");
    if (k === "keep") { opt.keep = true; continue; }
    if (!(k in opt) || i + 1 >= a.length) {
      console.error(`driver: unknown or incomplete flag ${a[i]}`);
      process.exit(2);
    }
    const v = a[++i];
    opt[k] = typeof opt[k] === "number" ? Number(v) : v;
  }
  if (!opt.seed) opt.seed = 1 + Math.floor(Math.random() * 1e9);
  if (opt.nodes !== 3 && opt.nodes !== 5) {
    console.error("driver: --nodes is 3 or 5");
    process.exit(2);
  }
}
const ALL_NEMESES = ["kill-leader", "kill-follower", "pause", "isolate",
                     "split", "one-way", "delay", "reset", "disk-full",
                     "cut-leader-kill"];
const NAMED_NEMESES = ["rolling"]; // run only when named
const nemeses = opt.nemeses === "all" ? ALL_NEMESES
  : opt.nemeses === "none" ? [] : opt.nemeses.split(",");
for (const k of nemeses)
  if (!ALL_NEMESES.includes(k) && !NAMED_NEMESES.includes(k)) {
    console.error(`driver: unknown nemesis ${k}`);
    process.exit(2);
  }

// mulberry32: a small seeded generator (the schedule and the workload)
function rngOf(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const T0 = Date.now();
const since = () => ((Date.now() - T0) / 1000).toFixed(1).padStart(6);
const say = (s) => console.log(`[${since()}] ${s}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------ state
const N = opt.nodes;
const IDS = Array.from({ length: N }, (_, i) => i + 1);
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), "ursula-fault-"));
const nodes = new Map(); // id -> {id, proc, port, peerPort, walDir, log, alive, paused, ...}
let proxy = null, proxyCtl = 0;
const proxyPort = new Map(); // "i:j" -> port
const DISK_NODE = 2;
let diskMount = null; // the tmpfs this run mounted
const stats = { acked: 0, ackedDup: 0, retried: 0, s503: 0, errors: 0,
                timeouts: 0, reads: 0, nemesis: 0, skipped: [], restarts: 0 };
const violations = [];
const violate = (kind, what) => {
  violations.push({ kind, what });
  say(`VIOLATION ${kind}: ${what}`);
};

let cleaning = false;
function cleanup() {
  if (cleaning) return;
  cleaning = true;
  for (const n of nodes.values()) {
    if (n.proc && n.alive) {
      try { process.kill(n.proc.pid, "SIGCONT"); } catch {}
      try { process.kill(n.proc.pid, "SIGKILL"); } catch {}
    }
  }
  if (proxy) { try { proxy.kill("SIGKILL"); } catch {} }
  if (diskMount) {
    for (let i = 0; i < 20; i++) {
      try { execFileSync("umount", [diskMount], { stdio: "ignore" }); break; }
      catch { execFileSync("sleep", ["0.1"]); }
    }
  }
  if (!opt.keep) fs.rmSync(TMP, { recursive: true, force: true });
  else console.log(`# kept ${TMP}`);
}
process.on("exit", cleanup);
process.on("SIGINT", () => process.exit(130));
process.on("SIGTERM", () => process.exit(143));

// ------------------------------------------------------------ helpers

// FNV-1a 64 of a stream's path, mod the group count: its group (as the
// server hashes it, README "How it works")
function groupOf(p) {
  let h = 14695981039346656037n;
  for (const b of Buffer.from(p)) {
    h ^= BigInt(b);
    h = (h * 1099511628211n) & 0xffffffffffffffffn;
  }
  return Number(h % BigInt(opt.groups));
}

const digest = (x) => createHash("sha256").update(x, "latin1").digest("hex");
const offsetToken = (n) => `${"0".repeat(16)}_${String(n).padStart(16, "0")}`;
const offsetNum = (t) => {
  const m = /^(\d{16})_(\d{16})$/.exec(t || "");
  return m ? Number(m[2]) : -1;
};

// one HTTP request; resolves {status, headers, body} or {error}
function request(node, method, p, headers, body, timeoutMs = 3000) {
  return new Promise((resolve) => {
    if (!node.port) return resolve({ error: "no port" });
    if (body !== undefined) headers = { ...headers, "Content-Length": Buffer.byteLength(body) };
    let done = false;
    const finish = (x) => { if (!done) { done = true; resolve(x); } };
    const req = http.request({ host: "127.0.0.1", port: node.port, method,
                               path: p, headers, agent: node.agent }, (res) => {
      const parts = [];
      res.on("data", (d) => parts.push(d));
      res.on("end", () => finish({ status: res.statusCode, headers: res.headers,
                                   body: Buffer.concat(parts).toString("latin1") }));
      res.on("error", (e) => finish({ error: e.code || String(e) }));
    });
    req.setTimeout(timeoutMs, () => { req.destroy(); finish({ error: "timeout" }); });
    req.on("error", (e) => finish({ error: e.code || String(e) }));
    req.end(body);
  });
}

async function control(cmd) {
  const r = await request({ port: proxyCtl, agent: false },
                          cmd === "stats" ? "GET" : "POST", "/" + cmd, {}, "");
  if (r.status !== 200) throw new Error(`proxy ${cmd}: ${r.status || r.error}`);
  return r.body;
}

// ------------------------------------------------------------ nodes
function nodeArgs(n) {
  const a = ["--listen", "127.0.0.1:0", "--core-count", "2",
             "--raft-group-count", String(opt.groups), "--wal-dir", n.walDir,
             "--node-id", String(n.id), "--public-status", "1"];
  if (process.env.FAULT_LOG_LEVEL) a.push("--log-level", process.env.FAULT_LOG_LEVEL);
  for (const j of IDS)
    a.push("--peer", j === n.id ? `${j}=127.0.0.1:${n.peerPort}`
                                : `${j}=127.0.0.1:${proxyPort.get(`${n.id}:${j}`)}`);
  return a;
}

async function startNode(n) {
  const start = fs.existsSync(n.log) ? fs.statSync(n.log).size : 0;
  const fd = fs.openSync(n.log, "a");
  n.proc = spawn(opt.bin, nodeArgs(n), { stdio: ["ignore", fd, fd] });
  fs.closeSync(fd);
  n.alive = true;
  n.paused = false;
  n.port = 0;
  const proc = n.proc;
  proc.on("exit", () => { if (n.proc === proc) n.alive = false; });
  for (let i = 0; i < 200; i++) {
    const text = readFrom(n.log, start);
    const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(text);
    if (m) {
      n.port = Number(m[1]);
      n.agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
      return;
    }
    if (!n.alive) break;
    await sleep(50);
  }
  throw new Error(`node ${n.id} did not start: ${readFrom(n.log, start).slice(-500)}`);
}

function readFrom(file, off) {
  const fd = fs.openSync(file, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const b = Buffer.alloc(Math.max(0, size - off));
    fs.readSync(fd, b, 0, b.length, off);
    return b.toString("latin1");
  } finally { fs.closeSync(fd); }
}

async function killNode(n) {
  if (!n.alive) return;
  const proc = n.proc;
  const gone = new Promise((r) => proc.once("exit", r));
  try { process.kill(proc.pid, "SIGKILL"); } catch {}
  await Promise.race([gone, sleep(5000)]);
  n.alive = false;
  n.port = 0;
  if (n.agent) n.agent.destroy();
}

// The leader of group g as the nodes tell: among the live nodes whose
// GET /__ursula/cluster answers, the one that says role "leader" in the
// highest term (0: none says so).
async function leaderOf(g) {
  const live = [...nodes.values()].filter((n) => n.alive && n.port);
  const rs = await Promise.all(live.map((n) =>
    request(n, "GET", "/__ursula/cluster", {}, undefined, 1000)));
  let best = 0, bestTerm = -1;
  rs.forEach((r, i) => {
    if (r.status !== 200) return;
    let st;
    try { st = JSON.parse(r.body).groups[g]; } catch { return; }
    if (st && st.role === "leader" && st.term > bestTerm) { bestTerm = st.term; best = live[i].id; }
  });
  return best;
}

// ------------------------------------------------------------ the run
const streams = Array.from({ length: opt.streams }, (_, i) => `/fault/s${i}`);
const acks = [];  // {stream, id, start (-1: a 204), end, sentAt, ackAt, node}
const leaderKills = []; // {stream, group, at}: a leader of the stream's group cut off or killed
const reads = []; // {stream, node, from, next, len, digest, head, sentAt}
const recent = new Map(); // stream -> its last 20 acknowledged {start, end}
const sent = new Set(); // payload ids ever sent
const workers = [];     // the clients' promises
let running = true;     // new appends are started
let draining = true;    // unresolved appends are retried
const liveIds = () => IDS.filter((i) => nodes.get(i).port);
function pick(rng, not) {
  const c = IDS.filter((i) => i !== not);
  return nodes.get(c[Math.floor(rng() * c.length)]);
}

async function createStreams() {
  const rng = rngOf(opt.seed ^ 0x5eed);
  for (const s of streams) {
    let ok = false;
    for (let i = 0; i < 300 && !ok; i++) {
      const r = await request(pick(rng, 0), "PUT", s,
                              { "Content-Type": "text/plain" }, "");
      if (r.status === 201 || r.status === 200) ok = true;
      else await sleep(100);
    }
    if (!ok) throw new Error(`could not create ${s} in 30 s`);
  }
}

// read stream s on node n from offset `from` (-1: the start) until
// Stream-Up-To-Date; {next, body} or null (503, error, timeout: the
// reason in lastFailure)
let lastFailure = "";
async function readAll(n, s, from) {
  let off = from, body = "";
  for (let i = 0; i < 64; i++) {
    const r = await request(n, "GET", `${s}?offset=${off < 0 ? "-1" : offsetToken(off)}`, {}, undefined);
    if (r.status !== 200) {
      lastFailure = r.error || `${r.status} ${String(r.body).trim().slice(0, 100)}`;
      return null;
    }
    body += r.body;
    const next = offsetNum(r.headers["stream-next-offset"]);
    if (next < 0) return null;
    off = next;
    if (r.headers["stream-up-to-date"] === "true") return { next, body };
  }
  return null;
}

async function recordRead(rng, s, not, from) {
  for (let t = 0; t < 5; t++) {
    const n = pick(rng, not);
    const sentAt = performance.now();
    const r = await readAll(n, s, from);
    if (r === null) { await sleep(50); continue; }
    stats.reads++;
    const rec = { stream: s, node: n.id, from: from < 0 ? 0 : from,
                  next: r.next, body: r.body, sentAt };
    /* kept for the checker: the bytes' length and digest, and a glimpse */
    reads.push({ stream: s, node: n.id, from: rec.from, next: r.next, sentAt,
                 len: Buffer.byteLength(r.body, "latin1"), digest: digest(r.body),
                 head: r.body.slice(0, 40) });
    return rec;
  }
  return null;
}

// One append of producer cK (seq `seq` of stream si), first to node
// `first`, retried on other nodes until it is resolved (200 or 204; the
// ack is recorded) or the drain ends; then, for a 200, half the time a
// read of it on another node.  false: this producer must stop (a status
// the protocol does not give, or unresolved).
async function appendOne(k, rng, si, seq, first) {
  const s = streams[si];
  const id = `${k}.${si}.${seq}`;
  const fill = "abcdefghijklmnopqrstuvwxyz".repeat(8).slice(0, Math.floor(rng() * 120));
  const payload = `[${id}:${fill}]`;
  sent.add(id);
  const sentAt = performance.now();
  let node = first, tries = 0, outcome = null;
  while (draining) {
    tries++;
    if (tries > 1) stats.retried++;
    const r = await request(node, "POST", s, {
      "Content-Type": "text/plain", "Producer-Id": `c${k}`,
      "Producer-Epoch": "0", "Producer-Seq": String(seq) }, payload);
    if (r.status === 200) {
      const end = offsetNum(r.headers["stream-next-offset"]);
      outcome = { start: end - Buffer.byteLength(payload), end };
      break;
    }
    if (r.status === 204) {
      if (tries === 1)
        violate("status", `${id}: 204 (duplicate) to its first try, on node ${node.id}`);
      outcome = { start: -1, end: -1 };
      break;
    }
    if (r.status === 503) stats.s503++;
    else if (r.error === "timeout") stats.timeouts++;
    else if (r.error) stats.errors++;
    else {
      violate("status", `${id}: ${r.status} on node ${node.id}: ${String(r.body).slice(0, 120)}`);
      return false;
    }
    await sleep(50 + Math.floor(rng() * 200));
    node = pick(rng, node.id);
  }
  if (outcome === null) {
    violate("unresolved", `${id}: no answer 200 or 204 after ${tries} tries, ` +
            `the last ones after healing`);
    return false;
  }
  acks.push({ stream: s, id, start: outcome.start, end: outcome.end,
              sentAt, ackAt: performance.now(), node: node.id });
  if (outcome.start < 0) { stats.ackedDup++; return true; }
  const mine = recent.get(s) || [];
  mine.push(outcome);
  if (mine.length > 20) mine.shift();
  recent.set(s, mine);
  stats.acked++;
  // read-your-writes on another node, from the append's start
  if (rng() < 0.5) {
    const rd = await recordRead(rng, s, node.id, outcome.start);
    if (rd !== null && !rd.body.startsWith(payload))
      violate("read-your-writes", `${id} acknowledged at ${outcome.start} by node ` +
              `${node.id}; node ${rd.node} read from there: ` +
              `${JSON.stringify(rd.body.slice(0, 60))} (next ${rd.next})`);
  }
  return true;
}

async function appender(k) {
  const rng = rngOf(opt.seed * 31 + k);
  const seqs = new Map();
  while (running) {
    const si = Math.floor(rng() * streams.length);
    const seq = seqs.get(si) || 0;
    if (!(await appendOne(k, rng, si, seq, pick(rng, 0)))) return;
    seqs.set(si, seq + 1);
    await sleep(Math.floor(rng() * 20)); /* (room for the other agents) */
  }
}

// The writes of cut-leader-kill: producer c99 appends 3 times to stream
// si, each first sent to node `lead` (the group's leader, just cut off),
// one after the other, after its earlier ones on si are resolved (one
// seq in flight per producer and stream).
const directSeqs = new Map(), directChain = new Map();
function directAppends(lead, si, rng) {
  const run = async () => {
    for (let i = 0; i < 3; i++) {
      const seq = directSeqs.get(si) || 0;
      if (!(await appendOne(99, rng, si, seq, nodes.get(lead)))) return false;
      directSeqs.set(si, seq + 1);
    }
    return true;
  };
  const p = (directChain.get(si) || Promise.resolve(true)).then((ok) => ok && run());
  directChain.set(si, p);
  return p;
}

async function reader(k) {
  const rng = rngOf(opt.seed * 97 + k);
  while (running) {
    const s = streams[Math.floor(rng() * streams.length)];
    const mine = recent.get(s) || [];
    const from = mine.length === 0 || rng() < 0.1 ? -1
      : mine[Math.floor(rng() * mine.length)].start;
    await recordRead(rng, s, 0, from);
    await sleep(20 + Math.floor(rng() * 80));
  }
}

// ------------------------------------------------------------ nemeses
function schedule() {
  const rng = rngOf(opt.seed);
  const ev = [];
  let t = 2000 + Math.floor(rng() * 1000);
  const end = opt.seconds * 1000 - 1000;
  let round = [];
  while (nemeses.length > 0) {
    if (round.length === 0) { /* each kind once per round, in a seeded order */
      round = [...nemeses];
      for (let i = round.length - 1; i > 0; i--) {
        const j = Math.floor(rng() * (i + 1));
        [round[i], round[j]] = [round[j], round[i]];
      }
    }
    const kind = round.shift();
    const dur = 1000 + Math.floor(rng() * 1500);
    if (t + dur > end) break;
    ev.push({ at: t, kind, dur, r1: rng(), r2: rng(), r3: rng() });
    t += dur + (kind === "cut-leader-kill" ? 3500 : kind === "rolling" ? N * 4000 : 0) +
      500 + Math.floor(rng() * 1500);
  }
  return ev;
}

const linksOf = (a) => IDS.filter((j) => j !== a).flatMap((j) => [`${a}/${j}`, `${j}/${a}`]);
const nodeAt = (r) => nodes.get(IDS[Math.floor(r * N)]);
async function nemesis(e) {
  stats.nemesis++;
  const s = streams[Math.floor(e.r1 * streams.length)];
  const g = groupOf(s);
  switch (e.kind) {
    case "kill-leader":
    case "kill-follower": {
      const lead = (await leaderOf(g)) || IDS[0];
      let victim = nodes.get(lead);
      if (e.kind === "kill-follower") victim = pick(() => e.r2, lead);
      else leaderKills.push({ stream: s, group: g, at: performance.now() });
      say(`nemesis ${e.kind}: kill -9 node ${victim.id} (group ${g} of ${s}, leader ${lead}) for ${e.dur} ms`);
      await killNode(victim);
      await sleep(e.dur);
      await startNode(victim);
      say(`  node ${victim.id} restarted`);
      break;
    }
    case "pause": {
      const n = nodeAt(e.r2);
      say(`nemesis pause: SIGSTOP node ${n.id} for ${e.dur} ms`);
      process.kill(n.proc.pid, "SIGSTOP");
      n.paused = true;
      await sleep(e.dur);
      process.kill(n.proc.pid, "SIGCONT");
      n.paused = false;
      break;
    }
    case "isolate": {
      const n = nodeAt(e.r2);
      say(`nemesis isolate: every link of node ${n.id} cut for ${e.dur} ms`);
      for (const l of linksOf(n.id)) await control(`cut/${l}`);
      await sleep(e.dur);
      for (const l of linksOf(n.id)) await control(`heal/${l}`);
      break;
    }
    case "split": {
      const r = rngOf(Math.floor(e.r2 * 4294967296)), order = [...IDS];
      for (let i = N - 1; i > 0; i--) { /* a seeded shuffle */
        const j = Math.floor(r() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
      }
      const minority = order.slice(0, (N - 1) / 2);
      const majority = order.slice((N - 1) / 2);
      say(`nemesis split: [${minority}] | [${majority}] for ${e.dur} ms`);
      const ls = minority.flatMap((a) => majority.flatMap((b) => [`${a}/${b}`, `${b}/${a}`]));
      for (const l of ls) await control(`cut/${l}`);
      await sleep(e.dur);
      for (const l of ls) await control(`heal/${l}`);
      break;
    }
    case "one-way": {
      const a = nodeAt(e.r2).id;
      const others = IDS.filter((j) => j !== a);
      const b = others[Math.floor(e.r3 * others.length)];
      say(`nemesis one-way: link ${a}->${b} cut for ${e.dur} ms`);
      await control(`cut/${a}/${b}`);
      await sleep(e.dur);
      await control(`heal/${a}/${b}`);
      break;
    }
    case "delay": {
      const n = nodeAt(e.r2);
      const ms = 20 + Math.floor(e.r3 * 280);
      say(`nemesis delay: every link of node ${n.id} delayed ${ms} ms for ${e.dur} ms`);
      for (const l of linksOf(n.id)) await control(`delay/${l}/${ms}`);
      await sleep(e.dur);
      for (const l of linksOf(n.id)) await control(`heal/${l}`);
      break;
    }
    case "reset": {
      const n = nodeAt(e.r2);
      say(`nemesis reset: every connection of node ${n.id}'s links reset, 4 times in ${e.dur} ms`);
      for (let i = 0; i < 4; i++) {
        for (const l of linksOf(n.id)) await control(`reset/${l}`);
        await sleep(e.dur / 4);
      }
      break;
    }
    case "disk-full": {
      const n = nodes.get(DISK_NODE);
      if (!diskMount) {
        say("nemesis disk-full: skip: full disk needs root");
        stats.skipped.push("disk-full");
        await sleep(e.dur);
        break;
      }
      say(`nemesis disk-full: node ${n.id}'s tmpfs filled for ${e.dur} ms`);
      const filler = path.join(diskMount, "filler");
      const fd = fs.openSync(filler, "w");
      const chunk = Buffer.alloc(65536, 120);
      try { for (;;) fs.writeSync(fd, chunk); } catch (err) {
        if (err.code !== "ENOSPC") throw err;
      }
      try { for (;;) fs.writeSync(fd, chunk, 0, 512); } catch {}
      fs.closeSync(fd);
      await sleep(e.dur);
      fs.rmSync(filler);
      break;
    }
    case "rolling": {
      say(`nemesis rolling: SIGTERM and restart nodes ${IDS.join(", ")} in turn, ${e.dur} ms apart`);
      for (const id of IDS) {
        await restartGracefully(nodes.get(id));
        await sleep(e.dur);
      }
      break;
    }
    case "cut-leader-kill": {
      const lead = (await leaderOf(g)) || IDS[0];
      const n = nodes.get(lead);
      const out = IDS.filter((j) => j !== lead).map((j) => `${lead}/${j}`);
      say(`nemesis cut-leader-kill: node ${lead} (leads group ${g} of ${s}): its links out cut, kill -9 in 600 ms, down 2.5 s`);
      leaderKills.push({ stream: s, group: g, at: performance.now() });
      for (const l of out) await control(`cut/${l}`);
      workers.push(directAppends(lead, Math.floor(e.r1 * streams.length), rngOf(Math.floor(e.r3 * 4294967296))));
      await sleep(600);
      await killNode(n);
      await sleep(2500);
      for (const l of out) await control(`heal/${l}`);
      await startNode(n);
      say(`  node ${lead} restarted`);
      break;
    }
  }
}

// rolling: node n gets SIGTERM and must exit 0 within 10 s; it is
// restarted on its --wal-dir; resolves once every stream reads on it
// (reads go through the read barrier: it applied what its leaders had
// committed), at most 30 s.
async function restartGracefully(n) {
  const proc = n.proc, t0 = Date.now();
  const gone = new Promise((r) => proc.once("exit", (code, sig) => r({ code, sig })));
  try { process.kill(proc.pid, "SIGTERM"); } catch {}
  let how = await Promise.race([gone, sleep(10000).then(() => null)]);
  if (how === null) {
    violate("stop", `node ${n.id} did not exit within 10 s of SIGTERM`);
    try { process.kill(proc.pid, "SIGKILL"); } catch {}
    how = await Promise.race([gone, sleep(5000).then(() => ({}))]);
  } else if (how.code !== 0) {
    violate("stop", `node ${n.id} exited with ${how.code ?? how.sig} after SIGTERM`);
  }
  n.alive = false;
  n.port = 0;
  if (n.agent) n.agent.destroy();
  const stopped = Date.now() - t0;
  await startNode(n);
  stats.restarts++;
  const t1 = Date.now();
  for (const s of streams) {
    for (;;) {
      if ((await readAll(n, s, -1)) !== null) break;
      if (Date.now() - t1 > 30000) {
        violate("catch-up", `node ${n.id} restarted: ${s} unreadable on it for 30 s (${lastFailure})`);
        break;
      }
      await sleep(100);
    }
  }
  say(`  node ${n.id}: exited ${stopped} ms after SIGTERM, restarted, caught up in ${Date.now() - t1} ms`);
}

async function healAll() {
  await control("heal-all");
  for (const n of nodes.values()) {
    if (n.alive && n.paused) { process.kill(n.proc.pid, "SIGCONT"); n.paused = false; }
    if (!n.alive) await startNode(n);
  }
  if (diskMount) fs.rmSync(path.join(diskMount, "filler"), { force: true });
}

// ------------------------------------------------------------ the checker
const PAYLOAD = /\[(\d+)\.(\d+)\.(\d+):[a-z]*\]/y;
function parseStream(s, bytes) {
  const out = []; // {id, k, seq, start, end}
  PAYLOAD.lastIndex = 0;
  let pos = 0;
  while (pos < bytes.length) {
    PAYLOAD.lastIndex = pos;
    const m = PAYLOAD.exec(bytes);
    if (m === null) {
      violate("garbage", `${s}: bytes at ${pos} are not a payload: ` +
              JSON.stringify(bytes.slice(pos, pos + 60)));
      break;
    }
    out.push({ id: `${m[1]}.${m[2]}.${m[3]}`, k: m[1], seq: Number(m[3]),
               start: pos, end: pos + m[0].length });
    pos += m[0].length;
  }
  return out;
}

// Every node must give the same bytes for every stream, within 60 s of
// the heal for all streams together.  A stream they do not agree on is a
// violation; the rest of the check then takes the bytes most nodes gave.
async function finalReads() {
  const final = new Map();
  const deadline = Date.now() + 60000;
  for (const s of streams) {
    for (;;) {
      const rs = [], why = [];
      for (const id of IDS) {
        rs.push(await readAll(nodes.get(id), s, -1));
        why.push(lastFailure);
      }
      if (rs.every((r) => r !== null) && rs.every((r) => r.body === rs[0].body)) {
        final.set(s, rs[0].body);
        break;
      }
      if (Date.now() >= deadline) {
        const desc = rs.map((r, i) => `node ${IDS[i]}: ${r === null ? "no answer (" + why[i] + ")" : r.body.length + " bytes"}`);
        violate("diverged", `${s}: the nodes do not agree 60 s after healing: ${desc.join(", ")}`);
        const votes = new Map();
        for (const r of rs) if (r !== null) votes.set(r.body, (votes.get(r.body) || 0) + 1);
        final.set(s, [...votes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? "");
        break;
      }
      await sleep(500);
    }
  }
  return final;
}

function check(final) {
  const where = new Map(); // payload id -> {stream, start, end}
  for (const s of streams) {
    const recs = parseStream(s, final.get(s));
    const lastSeq = new Map();
    for (const r of recs) {
      if (where.has(r.id)) violate("duplicate", `${r.id} in ${s} at ${r.start} and at ${where.get(r.id).start}`);
      else where.set(r.id, { stream: s, start: r.start, end: r.end });
      if (!sent.has(r.id)) violate("unknown", `${s}: ${r.id} at ${r.start} was never sent`);
      const want = (lastSeq.get(r.k) ?? -1) + 1;
      if (r.seq !== want)
        violate("producer-order", `${s}: producer c${r.k}'s seq ${r.seq} at ${r.start}, expected ${want}`);
      lastSeq.set(r.k, Math.max(r.seq, lastSeq.get(r.k) ?? -1));
    }
  }
  for (const a of acks) {
    const w = where.get(a.id);
    if (w === undefined) {
      violate("lost", `acknowledged append ${a.id} (node ${a.node}, ${a.start < 0 ? "204" : "at " + a.start}) is in no node's ${a.stream}`);
      continue;
    }
    if (a.start >= 0 && (w.start !== a.start || w.end !== a.end))
      violate("offset", `${a.id} acknowledged at [${a.start},${a.end}) is at [${w.start},${w.end})`);
    a.finalEnd = w.end;
  }
  // reads: the final bytes at their offsets, and no acknowledged append
  // missed (acknowledged before the read was sent, ends past its tail)
  for (const s of streams) {
    const f = final.get(s);
    const as = acks.filter((a) => a.stream === s && a.finalEnd !== undefined)
                   .sort((x, y) => x.ackAt - y.ackAt);
    const prefixMax = [];
    let mx = 0;
    for (const a of as) { mx = Math.max(mx, a.finalEnd); prefixMax.push(mx); }
    for (const r of reads.filter((x) => x.stream === s)) {
      if (r.next !== r.from + r.len || digest(f.slice(r.from, r.next)) !== r.digest)
        violate("read-bytes", `${s}: node ${r.node} read [${r.from},${r.next}) ` +
                `${JSON.stringify(r.head)}, not the final bytes there`);
      let lo = 0, hi = as.length; // acks with ackAt < sentAt: as[0..lo)
      while (lo < hi) { const m = (lo + hi) >> 1; if (as[m].ackAt < r.sentAt) lo = m + 1; else hi = m; }
      if (lo > 0 && prefixMax[lo - 1] > r.next) {
        const miss = as.slice(0, lo).find((a) => a.finalEnd > r.next);
        violate("stale-read", `${s}: node ${r.node}'s read ended at ${r.next}, before ` +
                `${miss.id} (ends at ${miss.finalEnd}) acknowledged ${(r.sentAt - miss.ackAt).toFixed(0)} ms before it was sent`);
      }
    }
  }
}

// ------------------------------------------------------------ main
async function main() {
  say(`fault harness: seed ${opt.seed}, ${N} nodes, ${opt.seconds} s, ` +
      `${opt.clients} appenders, ${opt.readers} readers, ${opt.streams} streams, ` +
      `${opt.groups} groups; nemeses ${nemeses.join(",") || "none"}`);
  say(`replay: node test/fault/driver.mjs --bin ${opt.bin} --nodes ${N} --seconds ${opt.seconds} ` +
      `--seed ${opt.seed} --groups ${opt.groups} --clients ${opt.clients} --readers ${opt.readers} ` +
      `--streams ${opt.streams} --nemeses ${opt.nemeses}` +
      (opt["max-503-per-restart"] >= 0 ? ` --max-503-per-restart ${opt["max-503-per-restart"]}` : ""));
  for (const id of IDS)
    nodes.set(id, { id, peerPort: await freePort(), walDir: path.join(TMP, `wal-${id}`),
                    log: path.join(TMP, `n${id}.log`), alive: false, port: 0 });
  if (nemeses.includes("disk-full")) {
    if (process.getuid && process.getuid() === 0) {
      const m = path.join(TMP, "disk");
      fs.mkdirSync(m);
      try {
        execFileSync("mount", ["-t", "tmpfs", "-o", "size=64m", "tmpfs", m], { stdio: "pipe" });
        diskMount = m;
        nodes.get(DISK_NODE).walDir = path.join(m, "wal");
        say(`node ${DISK_NODE}'s wal-dir is on a 64 MiB tmpfs (${m})`);
      } catch (err) {
        say(`skip: full disk needs a tmpfs mount (${String(err.stderr || err).trim()})`);
      }
    } else say("skip: full disk needs root");
  }
  // the proxies: one per directed link i->j, relaying to j's peer port
  const specs = [];
  for (const i of IDS) for (const j of IDS)
    if (i !== j) specs.push(`${i}:${j}:${nodes.get(j).peerPort}`);
  proxy = spawn(process.execPath, [path.join(HERE, "proxy.mjs"), ...specs],
                { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise((resolve, reject) => {
    let buf = "";
    const t = setTimeout(() => reject(new Error("the proxy did not start in 10 s")), 10000);
    proxy.stdout.on("data", (d) => {
      buf += d;
      const k = buf.indexOf("\n");
      if (k >= 0) { clearTimeout(t); resolve(buf.slice(0, k)); }
    });
  });
  const m = /^proxy control (\d+) links (.*)$/.exec(line);
  proxyCtl = Number(m[1]);
  for (const l of m[2].split(" ")) {
    const [i, j, p] = l.split(":");
    proxyPort.set(`${i}:${j}`, Number(p));
  }
  for (const n of nodes.values()) await startNode(n);
  say(`nodes up: ${[...nodes.values()].map((n) => `${n.id}=http:${n.port},peer:${n.peerPort}`).join(" ")}`);
  await createStreams();
  say(`${streams.length} streams created (groups ${streams.map(groupOf).join(",")})`);

  const ev = schedule();
  say(`schedule (${ev.length} nemeses): ` +
      ev.map((e) => `${(e.at / 1000).toFixed(1)}s ${e.kind} ${e.dur}ms`).join("; "));
  const tRun = Date.now();
  for (let k = 0; k < opt.clients; k++) workers.push(appender(k));
  for (let k = 0; k < opt.readers; k++) workers.push(reader(k));
  for (const e of ev) {
    const wait = tRun + e.at - Date.now();
    if (wait > 0) await sleep(wait);
    await nemesis(e);
  }
  const left = tRun + opt.seconds * 1000 - Date.now();
  if (left > 0) await sleep(left);
  say("healing everything");
  await healAll();
  running = false;
  const drained = await Promise.race([Promise.all(workers).then(() => true), sleep(60000).then(() => false)]);
  draining = false;
  if (!drained) {
    await Promise.race([Promise.all(workers), sleep(5000)]);
    say("some appends were still unresolved 60 s after healing");
  }
  say(`clients stopped; ${acks.length} appends acknowledged; checking`);
  const links = (await control("stats")).trim().split("\n").map((x) => x.split(" "));
  const back = links.reduce((t, x) => t + Number(x[6]), 0);
  const fwd = links.reduce((t, x) => t + Number(x[5]), 0);
  const final = await finalReads();
  check(final);
  const per = opt["max-503-per-restart"];
  if (per >= 0 && stats.s503 > per * Math.max(1, stats.restarts))
    violate("too-many-503", `${stats.s503} 503s to appends, above ${per} per restart ` +
            `x ${stats.restarts} restarts = ${per * Math.max(1, stats.restarts)}`);
  const bytes = [...final.values()].reduce((t, b) => t + b.length, 0);
  const kinds = {};
  for (const v of violations) kinds[v.kind] = (kinds[v.kind] || 0) + 1;
  // after each leader kill: the time until its stream's next append was
  // acknowledged (by any node; clients pause 50-250 ms between appends)
  let gap = null;
  for (const k of leaderKills) {
    const next = acks.filter((a) => a.stream === k.stream && a.ackAt > k.at)
      .reduce((m, a) => Math.min(m, a.ackAt), Infinity);
    if (next !== Infinity && (gap === null || next - k.at > gap.ms))
      gap = { ms: next - k.at, stream: k.stream, group: k.group };
  }
  if (leaderKills.length > 0)
    console.log(`unavailability: ${leaderKills.length} leader kills; the longest, from the kill ` +
                `to the next acknowledged append to its stream: ` +
                (gap ? `${Math.round(gap.ms)} ms (${gap.stream}, group ${gap.group})` : "none acknowledged after it"));
  console.log(`summary: seed ${opt.seed}, ${N} nodes, ${opt.seconds} s: ` +
              `acked ${stats.acked} (+${stats.ackedDup} as duplicates of a retry), ` +
              `retried ${stats.retried}, 503s ${stats.s503}, timeouts ${stats.timeouts}, ` +
              `errors ${stats.errors}, reads checked ${stats.reads}, ` +
              `nemesis events ${stats.nemesis}${stats.skipped.length ? " (skipped: " + stats.skipped.join(",") + ")" : ""}, ` +
              `graceful restarts ${stats.restarts}, ` +
              `stream bytes ${bytes}, peer bytes relayed ${fwd} forward / ${back} back, ` +
              `violations ${violations.length}` +
              (violations.length ? " (" + Object.entries(kinds).map(([k, v]) => `${k} ${v}`).join(", ") + ")" : ""));
  return violations.length === 0 ? 0 : 1;
}

main().then((rc) => process.exit(rc), (err) => {
  console.error(`driver: ${err.stack || err}`);
  process.exit(2);
});
