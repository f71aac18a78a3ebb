// conformance.test.mjs -- runs the published Durable Streams conformance
// suite (@durable-streams/server-conformance-tests) as a vitest test file.
//
// The package's own CLI cannot find its runner (vitest skips node_modules),
// so this file calls the suite's entry point directly.  Normally run.sh
// starts ursula and runs this; by hand:
//
//   CONFORMANCE_TEST_URL=http://127.0.0.1:4437 npx vitest run conformance.test.mjs
//
// Environment:
//   CONFORMANCE_TEST_URL        server under test (default http://127.0.0.1:4437)
//   CONFORMANCE_SUBSCRIPTIONS=1 also run the opt-in "Reserved subscription
//                               APIs" group (skipped otherwise)
//   CONFORMANCE_LONG_POLL_TIMEOUT_MS
//                               optional: the suite's per-test budget for
//                               long-poll waits (the suite defaults to 20000)
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const env = process.env
const options = {
  baseUrl: env.CONFORMANCE_TEST_URL || "http://127.0.0.1:4437",
  subscriptions: env.CONFORMANCE_SUBSCRIPTIONS === "1",
}
if (env.CONFORMANCE_LONG_POLL_TIMEOUT_MS) {
  options.longPollTimeoutMs = Number(env.CONFORMANCE_LONG_POLL_TIMEOUT_MS)
}

runConformanceTests(options)
