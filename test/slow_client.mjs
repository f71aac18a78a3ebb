// slow_client.mjs -- clients that do not read their answers, for
// test/blackbox.sh (output back-pressure, issue 12 section 5).  Node's
// own modules only; loopback only; every wait is bounded.
//
//   node test/slow_client.mjs sse URL STALL_MS LIMIT_MS
//     GET URL (a live=sse read of a text stream) and read nothing for
//     STALL_MS, then read until the response ends or LIMIT_MS pass.
//     Prints "ended|cut N D": ended if the server ended the response
//     (closed or cut it) before LIMIT_MS, else cut by us; N the
//     streamNextOffset of the last whole control event received (as a
//     number) and D the bytes of data the events before it carried.
//
//   node test/slow_client.mjs pipeline PORT PATH COUNT STALL_MS LIMIT_MS [TRICKLE_MS]
//     Send COUNT pipelined GETs of PATH at once, read nothing for
//     STALL_MS, then read until COUNT whole responses (status line,
//     Content-Length body) came or LIMIT_MS pass; with TRICKLE_MS, read
//     for 20 ms out of every TRICKLE_MS (a slow reader that keeps
//     reading).  Prints the number of whole 200 responses read.
//
//   node test/slow_client.mjs halfclose PORT PATH COUNT GAP_MS LIMIT_MS
//     POST "x" (text/plain) to PATH once, then after GAP_MS the other
//     COUNT - 1 POSTs pipelined, and shut down the sending side (FIN);
//     read until the server closes or LIMIT_MS pass.  Prints "N closed"
//     or "N open": N the whole 2xx responses read, and whether the
//     server closed the connection within LIMIT_MS.
import http from "node:http";
import net from "node:net";

const [mode, ...args] = process.argv.slice(2);

function sse(url, stallMs, limitMs) {
  let text = "";
  let ended = false;
  const req = http.get(url, (res) => {
    res.setEncoding("utf8");
    res.pause();
    setTimeout(() => res.resume(), stallMs);
    res.on("data", (d) => (text += d));
    res.on("end", () => { ended = true; });
    res.on("aborted", () => { ended = true; });
    res.on("error", () => { ended = true; });
    res.on("close", () => { ended = true; });
  });
  req.on("error", () => { ended = true; });
  const start = Date.now();
  const poll = setInterval(() => {
    if (!ended && Date.now() - start < limitMs) return;
    clearInterval(poll);
    req.destroy();
    // events are separated by a blank line (WHATWG HTML 9.2.6); a data
    // event's payload is its data: lines joined with "\n"
    let data = 0, lastOffset = -1, dataAtLast = -1;
    const events = text.split("\n\n");
    events.pop(); // the last one may be cut
    for (const ev of events) {
      const lines = ev.split("\n");
      const type = (lines.find((l) => l.startsWith("event:")) || "").slice(6).trim();
      const payload = lines
        .filter((l) => l.startsWith("data:"))
        .map((l) => (l.startsWith("data: ") ? l.slice(6) : l.slice(5)))
        .join("\n");
      if (type === "data") data += Buffer.byteLength(payload);
      if (type === "control") {
        const c = JSON.parse(payload);
        lastOffset = Number(c.streamNextOffset.split("_")[1]);
        dataAtLast = data;
      }
    }
    console.log(`${ended ? "ended" : "cut"} ${lastOffset} ${dataAtLast}`);
    process.exit(0);
  }, 50);
}

// The whole responses (head, then a Content-Length body) at the front of
// buf: onHead(head) for each, in order; returns what is left of buf.
function takeResponses(buf, onHead) {
  for (;;) {
    const end = buf.indexOf("\r\n\r\n");
    if (end < 0) return buf;
    const head = buf.subarray(0, end).toString("latin1");
    const m = /\r\ncontent-length: *(\d+)/i.exec(head);
    const len = m ? Number(m[1]) : 0;
    if (buf.length < end + 4 + len) return buf;
    onHead(head);
    buf = buf.subarray(end + 4 + len);
  }
}

function pipeline(port, path, count, stallMs, limitMs, trickleMs) {
  const s = net.connect(port, "127.0.0.1");
  let buf = Buffer.alloc(0);
  let whole = 0;
  s.on("connect", () => {
    const one = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
    s.write(one.repeat(count));
    s.pause();
    setTimeout(() => {
      if (!(trickleMs > 0)) {
        s.resume();
        return;
      }
      const sip = () => {
        s.resume();
        setTimeout(() => s.pause(), 20);
      };
      sip();
      setInterval(sip, trickleMs).unref();
    }, stallMs);
  });
  s.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    buf = takeResponses(buf, (head) => {
      if (head.startsWith("HTTP/1.1 200")) whole++;
    });
    if (whole >= count) done();
  });
  s.on("error", () => done());
  s.on("close", () => done());
  const timer = setTimeout(() => done(), limitMs);
  let finished = false;
  function done() {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    s.destroy();
    console.log(String(whole));
    process.exit(0);
  }
}

function halfclose(port, path, count, gapMs, limitMs) {
  const post = `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
    "Content-Type: text/plain\r\nContent-Length: 1\r\n\r\nx";
  const s = net.connect(port, "127.0.0.1");
  let buf = Buffer.alloc(0);
  let whole = 0;
  let closed = false;
  s.on("connect", () => {
    s.write(post);
    setTimeout(() => s.end(post.repeat(count - 1)), gapMs);
  });
  s.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    buf = takeResponses(buf, (head) => {
      if (/^HTTP\/1\.1 2\d\d /.test(head)) whole++;
    });
  });
  s.on("error", () => {});
  s.on("close", () => {
    closed = true;
    done();
  });
  const timer = setTimeout(() => done(), limitMs);
  let finished = false;
  function done() {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    s.destroy();
    console.log(`${whole} ${closed ? "closed" : "open"}`);
    process.exit(0);
  }
}

if (mode === "sse") sse(args[0], Number(args[1]), Number(args[2]));
else if (mode === "halfclose")
  halfclose(Number(args[0]), args[1], Number(args[2]), Number(args[3]),
            Number(args[4]));
else if (mode === "pipeline")
  pipeline(Number(args[0]), args[1], Number(args[2]), Number(args[3]),
           Number(args[4]), Number(args[5] || 0));
else {
  console.error("usage: see the top of test/slow_client.mjs");
  process.exit(2);
}
