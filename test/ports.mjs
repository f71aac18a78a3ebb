// Free loopback TCP ports for the tests, picked where nothing else takes one.
//
//   import { freePorts } from "./ports.mjs"   freePorts(n) -> Promise<[port]>
//   node test/ports.mjs N                     prints N ports, space-separated
//
// A port found free by binding port 0 comes from the kernel's ephemeral
// range (ip_local_port_range, 32768..60999 by default), where every dialed
// connection and every listen on port 0 (the nodes' own client ports, the
// peers' links, the proxies) takes its local port too: between the pick and
// the test's own bind, one of them can take it ("Address already in use").
// So ports are drawn at random from 20000 up to just below that range, each
// checked free by a listen of our own (with SO_REUSEADDR, as ursula binds);
// a port taken by some other agent's fixed use is tried again.  Ports handed
// out by this process are never handed out twice.  Two processes that pick
// at the same moment can still draw the same port (1 in ~12,800 a pair):
// a test takes all the ports it needs in one call.

import { readFileSync } from "node:fs"
import { createServer } from "node:net"

const LOW = 20000
function rangeTop() {
  try {
    const lo = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0])
    if (lo > LOW + 1000) return lo // exclusive
  } catch { /* not Linux: the default range */ }
  return 32768
}
const TOP = rangeTop()
const handedOut = new Set()

function tryPort(p) {
  return new Promise((resolve) => {
    const s = createServer()
    s.on("error", () => resolve(false))
    s.listen(p, "127.0.0.1", () => s.close(() => resolve(true)))
  })
}

// freePorts(n): n distinct ports in LOW..TOP-1, each free when checked;
// rejects after 1000 draws without enough.
export async function freePorts(n) {
  const out = []
  for (let i = 0; i < 1000 && out.length < n; i++) {
    const p = LOW + Math.floor(Math.random() * (TOP - LOW))
    if (handedOut.has(p)) continue
    if (await tryPort(p)) { handedOut.add(p); out.push(p) }
  }
  if (out.length < n) throw new Error(`no ${n} free ports in ${LOW}..${TOP - 1}`)
  return out
}

export async function freePort() { return (await freePorts(1))[0] }

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const n = Number(process.argv[2] || 1)
  freePorts(n).then((ps) => console.log(ps.join(" ")), (e) => { console.error(e.message); process.exit(1) })
}
