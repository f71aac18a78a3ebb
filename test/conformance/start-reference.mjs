// start-reference.mjs -- starts the reference Durable Streams server
// (@durable-streams/server, a library without a CLI) for comparisons and
// benchmarks.  It serves until SIGINT or SIGTERM.
//
//   node start-reference.mjs [--port 4437] [--host 127.0.0.1]
//                            [--long-poll-ms 30000] [--data-dir DIR]
//                            [--webhooks] [--no-compression]
//
// Without --data-dir the server keeps streams in memory; with it, it is
// file-backed (LMDB metadata plus one log file per stream).  For a full pass
// of the conformance suite use a long-poll timeout well under 4 s, e.g. 500.
import { DurableStreamTestServer } from "@durable-streams/server"

const argv = process.argv.slice(2)
const flags = new Set(["--webhooks", "--no-compression"])
const valued = new Set(["--port", "--host", "--long-poll-ms", "--data-dir"])
const given = {}
for (let i = 0; i < argv.length; i++) {
  const a = argv[i]
  if (flags.has(a)) {
    given[a] = true
  } else if (valued.has(a) && i + 1 < argv.length) {
    given[a] = argv[++i]
  } else {
    console.error(`start-reference.mjs: unknown or incomplete option ${a}`)
    process.exit(2)
  }
}

const config = {
  host: given["--host"] ?? "127.0.0.1",
  port: Number(given["--port"] ?? 4437),
  longPollTimeout: Number(given["--long-poll-ms"] ?? 30000),
  webhooks: given["--webhooks"] === true,
  compression: given["--no-compression"] !== true,
}
if (given["--data-dir"]) config.dataDir = given["--data-dir"]

const server = new DurableStreamTestServer(config)
const url = await server.start()
const mode = config.dataDir ? `file-backed in ${config.dataDir}` : "in memory"
console.log(`reference server (${mode}) listening at ${url}`)

let stopping = false
async function shutdown() {
  if (stopping) return
  stopping = true
  await server.stop()
  process.exit(0)
}
process.on("SIGINT", shutdown)
process.on("SIGTERM", shutdown)
