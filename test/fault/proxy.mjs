// proxy.mjs -- one userspace TCP proxy per directed peer link of a
// cluster under test (issue 14, the fault harness), with a control
// channel to cut, heal, delay and reset each link on its own.  Node's own
// modules only; loopback only.
//
//   node test/fault/proxy.mjs FROM:TO:TARGET_PORT ...
//
// For each argument it listens on a free port of 127.0.0.1 for the link
// FROM->TO: node FROM is given that port as node TO's --peer address, and
// every connection it dials there is relayed to 127.0.0.1:TARGET_PORT
// (node TO's peer listener).  Once all listen, it prints one line
//
//   proxy control PORT links FROM:TO:PORT ...
//
// and serves the control channel, plain HTTP on 127.0.0.1:PORT:
//
//   POST /cut/FROM/TO     the link is cut: nothing passes either way on its
//                         connections (they are neither closed nor read:
//                         what the sender writes waits in its TCP buffers,
//                         as in a network partition), and a connection
//                         opened meanwhile is accepted and held, not
//                         relayed, until the heal
//   POST /heal/FROM/TO    no longer cut, no delay: held bytes and held
//                         connections go on
//   POST /delay/FROM/TO/MS  every chunk is relayed MS ms after it arrived
//                         (order kept); 0 ends the delay
//   POST /reset/FROM/TO   every connection of the link is closed at once
//                         with a TCP RST on both sides (the link is not
//                         cut: the dialer's next connection passes)
//   POST /heal-all        heal every link
//   GET  /stats           one line per link: FROM TO state delay_ms conns
//                         bytes_forward bytes_back (bytes relayed from
//                         the dialer to the listener, and back)
//
// Each answer is 200 "ok" (or the stats), 404 for an unknown link.
//
// WHAT A LINK IS.  ursula's peer connections are one-way (src/peer.c,
// CONNECTIONS): node FROM dials node TO and only writes; TO's messages
// to FROM go on TO's own connection to FROM, through the link TO->FROM.
// So cutting FROM->TO stops exactly FROM's messages to TO (Raft's
// AppendEntries, votes, answers, forwarded writes and their replies all
// travel as messages of their sender), and bytes_back counts what a
// listener ever wrote on a dialed connection (0 if the links are one-way).

import net from "node:net";
import http from "node:http";

const links = new Map(); // "FROM:TO" -> link

function newLink(from, to, target) {
  return { from, to, target, cut: false, delay: 0, conns: new Set(),
           fwd: 0, back: 0, port: 0, server: null };
}

// One relayed connection: a (dialer side a, listener side b) pair.  Each
// direction is a queue of chunks with the time each may go out; the pump
// sends what is due unless the link is cut.
function relay(link, a) {
  const c = { a, b: null, qa: [], qb: [], timer: null, dead: false };
  link.conns.add(c);
  const kill = (rst) => {
    if (c.dead) return;
    c.dead = true;
    link.conns.delete(c);
    if (c.timer) clearTimeout(c.timer);
    for (const s of [c.a, c.b]) {
      if (!s) continue;
      if (rst && s.resetAndDestroy) s.resetAndDestroy(); else s.destroy();
    }
  };
  c.kill = kill;
  const pump = () => {
    if (c.dead) return;
    if (c.timer) { clearTimeout(c.timer); c.timer = null; }
    if (link.cut) { a.pause(); if (c.b) c.b.pause(); return; }
    if (!c.b) connectOn();
    if (!c.b || c.b.connecting) return;
    const now = Date.now();
    let next = Infinity;
    for (const [q, dst, count] of [[c.qa, c.b, "fwd"], [c.qb, c.a, "back"]]) {
      while (q.length > 0 && q[0].due <= now) {
        const x = q.shift();
        link[count] += x.data.length;
        dst.write(x.data);
      }
      if (q.length > 0) next = Math.min(next, q[0].due);
    }
    a.resume();
    c.b.resume();
    if (next !== Infinity) c.timer = setTimeout(pump, Math.max(1, next - now));
  };
  c.pump = pump;
  const take = (q) => (data) => {
    const due = Date.now() + link.delay;
    const last = q.length > 0 ? q[q.length - 1].due : 0;
    q.push({ data, due: Math.max(due, last) });
    pump();
  };
  const connectOn = () => {
    c.b = net.connect({ host: "127.0.0.1", port: link.target });
    c.b.setNoDelay(true);
    c.b.on("connect", pump);
    c.b.on("data", take(c.qb));
    c.b.on("error", () => kill(false));
    c.b.on("close", () => kill(false));
  };
  a.setNoDelay(true);
  a.on("data", take(c.qa));
  a.on("error", () => kill(false));
  a.on("close", () => kill(false));
  pump();
}

function listen(link) {
  return new Promise((resolve, reject) => {
    link.server = net.createServer((s) => relay(link, s));
    link.server.on("error", reject);
    link.server.listen(0, "127.0.0.1", () => {
      link.port = link.server.address().port;
      resolve();
    });
  });
}

function control(req, res) {
  const p = req.url.split("/").filter((x) => x !== "");
  const answer = (code, body) => {
    res.writeHead(code, { "Content-Type": "text/plain" });
    res.end(body);
  };
  if (req.method === "GET" && p[0] === "stats") {
    const lines = [];
    for (const l of links.values())
      lines.push(`${l.from} ${l.to} ${l.cut ? "cut" : "up"} ${l.delay} ` +
                 `${l.conns.size} ${l.fwd} ${l.back}`);
    return answer(200, lines.join("\n") + "\n");
  }
  if (req.method === "POST" && p[0] === "heal-all") {
    for (const l of links.values()) heal(l);
    return answer(200, "ok\n");
  }
  const link = links.get(`${p[1]}:${p[2]}`);
  if (req.method !== "POST" || link === undefined)
    return answer(404, "no such link or command\n");
  switch (p[0]) {
    case "cut":
      link.cut = true;
      for (const c of link.conns) c.pump();
      break;
    case "heal":
      heal(link);
      break;
    case "delay":
      link.delay = Math.max(0, parseInt(p[3], 10) || 0);
      break;
    case "reset":
      for (const c of [...link.conns]) c.kill(true);
      break;
    default:
      return answer(404, "no such command\n");
  }
  answer(200, "ok\n");
}

function heal(link) {
  link.cut = false;
  link.delay = 0;
  for (const c of link.conns) c.pump();
}

async function main() {
  const specs = process.argv.slice(2);
  if (specs.length === 0) {
    console.error("usage: node proxy.mjs FROM:TO:TARGET_PORT ...");
    process.exit(2);
  }
  for (const s of specs) {
    const [from, to, target] = s.split(":").map((x) => parseInt(x, 10));
    const l = newLink(from, to, target);
    links.set(`${from}:${to}`, l);
    await listen(l);
  }
  const ctl = http.createServer(control);
  ctl.listen(0, "127.0.0.1", () => {
    const ls = [...links.values()].map((l) => `${l.from}:${l.to}:${l.port}`);
    console.log(`proxy control ${ctl.address().port} links ${ls.join(" ")}`);
  });
}

process.on("SIGTERM", () => process.exit(0));
main().catch((e) => { console.error(e); process.exit(1); });
