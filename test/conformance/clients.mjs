// clients.mjs -- the official TypeScript client, @durable-streams/client
// (the version the conformance suite pins), driven through its public API
// against the real ursula binary on loopback, as a user would run it:
// create, append, read everything back in non-live mode from a stream of
// several MiB, live long-poll and SSE, an idempotent producer, close.
//
//   node test/conformance/clients.mjs [SERVER-ARGS...]   (make test-clients)
//
// URSULA_BIN names the binary (default ../../ursula from this folder).
// With URSULA_TLS_CERT and URSULA_TLS_KEY (PEM files) the server gets them
// as --tls-cert and --tls-key and every request goes to https:// (the
// binary must be built with TLS, and Node must trust the certificate's
// CA: NODE_EXTRA_CA_CERTS=ca.pem; test/tls.sh does both).  The
// server gets a WAL in a fresh temporary folder and a small hot cache, so
// that large reads come back from the log.  TAP output; exit status 1 if
// anything failed.  Every loop and wait is bounded.
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { freePort } from "../ports.mjs"
import {
  DurableStream,
  IdempotentProducer,
  stream,
} from "@durable-streams/client"

const here = dirname(fileURLToPath(import.meta.url))
const bin = resolve(process.env.URSULA_BIN ?? join(here, "../../ursula"))
const tlsCert = process.env.URSULA_TLS_CERT ?? ""
const tlsKey = process.env.URSULA_TLS_KEY ?? ""
const tls = tlsCert !== "" || tlsKey !== ""
const tlsArgs = tls ? ["--tls-cert", tlsCert, "--tls-key", tlsKey] : []
let n = 0
let failed = 0

function check(ok, what, detail) {
  n++
  if (!ok) failed++
  console.log(`${ok ? "" : "not "}ok ${n} - ${what}`)
  if (!ok && detail !== undefined) console.log(`#   ${detail}`)
}


const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// Resolve p, or reject after ms (what names it).
function within(p, ms, what) {
  let t
  return Promise.race([
    p,
    new Promise((_, rej) => {
      t = setTimeout(() => rej(new Error(`${what}: no answer in ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(t))
}

// Deterministic bytes: byte i of stream `seed`.
function pattern(len, seed) {
  const b = new Uint8Array(len)
  let x = seed >>> 0
  for (let i = 0; i < len; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    b[i] = x >>> 24
  }
  return b
}

function sameBytes(a, b) {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

async function start(extra) {
  const dir = mkdtempSync(join(tmpdir(), "ursula-clients-"))
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort()
    const args = [
      "--listen", `127.0.0.1:${port}`, "--core-count", "2",
      "--raft-group-count", "8", "--wal-dir", join(dir, "wal"),
      "--hot-max-bytes", "65536", "--long-poll-timeout-ms", "2000",
      ...tlsArgs, ...extra,
    ]
    const proc = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] })
    let log = ""
    proc.stderr.on("data", (d) => { log += d })
    const base = `${tls ? "https" : "http"}://127.0.0.1:${port}`
    for (let i = 0; i < 50; i++) { // at most about 10 s
      if (proc.exitCode !== null) break
      try {
        await fetch(`${base}/`)
        return { proc, base, dir, log: () => log }
      } catch {
        await sleep(200)
      }
    }
    proc.kill("SIGKILL")
    if (attempt === 2) throw new Error(`the server did not start: ${log}`)
  }
}

async function main() {
  if (tls) console.log("# over https (--tls-cert, --tls-key)")
  const srv = await start(process.argv.slice(2))
  const url = (p) => `${srv.base}/clients/${p}`
  try {
    // 1. a text stream of 6 MiB in 96 appends, read back whole, non-live
    const size = 6 * 1024 * 1024
    const data = pattern(size, 7)
    const big = await DurableStream.create({
      url: url("big"),
      contentType: "application/octet-stream",
    })
    const part = 64 * 1024
    for (let at = 0; at < size; at += part)
      await big.append(data.subarray(at, at + part))
    const head = await big.head()
    check(head.exists !== false, "HEAD of the new stream answers")
    const all = await within(
      (await stream({ url: url("big"), live: false })).body(),
      60000, "non-live read")
    check(sameBytes(all, data),
      `a non-live read of a ${size}-byte stream returns every byte`,
      `got ${all.length} bytes`)
    const again = await within(
      (await big.stream({ live: false })).body(), 60000, "handle read")
    check(sameBytes(again, data),
      "the same through the handle's stream()", `got ${again.length} bytes`)
    const tailRes = await big.stream({ live: false, offset: head.offset })
    const none = await within(tailRes.body(), 10000, "read at the tail")
    check(none.length === 0 && tailRes.upToDate,
      "a read from the tail's offset returns nothing, up to date")

    // 2. JSON through an idempotent producer, read back as items
    const js = await DurableStream.create({
      url: url("json"),
      contentType: "application/json",
    })
    const producer = new IdempotentProducer(js, "writer-1", { autoClaim: true })
    const items = []
    for (let i = 0; i < 500; i++) {
      items.push({ i, text: `item ${i} ` + "é✓".repeat(i % 7) })
      producer.append(JSON.stringify(items[i]))
    }
    await within(producer.flush(), 30000, "producer flush")
    const back = await within(
      (await js.stream({ live: false })).json(), 30000, "JSON read")
    check(JSON.stringify(back) === JSON.stringify(items),
      "500 JSON items from an idempotent producer read back in order, once",
      `got ${back.length} items`)

    // 3. live long-poll and SSE: a reader at the tail sees later appends
    for (const mode of ["long-poll", "sse"]) {
      const live = await DurableStream.create({
        url: url(`live-${mode}`),
        contentType: "text/plain",
      })
      await live.append("first;")
      const res = await live.stream({ live: mode })
      const seen = []
      let resolveDone
      const done = new Promise((r) => { resolveDone = r })
      const unsub = res.subscribeText(async (chunk) => {
        seen.push(chunk.text)
        if (seen.join("").includes("third;")) resolveDone()
      })
      await sleep(300)
      await live.append("second;")
      await sleep(300)
      await live.append("third;")
      try {
        await within(done, 15000, `${mode} reader`)
      } catch (e) {
        seen.push(`(${e.message})`)
      }
      unsub()
      res.cancel?.()
      check(seen.join("") === "first;second;third;",
        `a ${mode} reader gets the stream, then each later append`,
        JSON.stringify(seen))
    }

    // 4. close: appends refused after it, readers see the end
    const c = await DurableStream.create({
      url: url("closing"),
      contentType: "text/plain",
    })
    await c.append("a;")
    await c.close()
    let refused = false
    try {
      await c.append("b;")
    } catch {
      refused = true
    }
    check(refused, "an append after close is refused")
    const closedRes = await c.stream({ live: false })
    const closedText = await within(closedRes.text(), 10000, "closed read")
    check(closedText === "a;" && closedRes.streamClosed === true,
      "a closed stream reads back whole and says it is closed",
      `${JSON.stringify(closedText)} closed=${closedRes.streamClosed}`)
  } catch (e) {
    check(false, "the client run threw", e?.stack ?? String(e))
  } finally {
    srv.proc.kill("SIGTERM")
    for (let i = 0; i < 20 && srv.proc.exitCode === null; i++) await sleep(100)
    if (srv.proc.exitCode === null) srv.proc.kill("SIGKILL")
    if (failed > 0) console.log(`# server log:\n${srv.log().slice(-3000)}`)
    rmSync(srv.dir, { recursive: true, force: true })
  }
  console.log(`1..${n}`)
  console.log(failed ? `# clients: ${failed} failed` : "# clients: all passed")
  process.exit(failed ? 1 : 0)
}

main()
