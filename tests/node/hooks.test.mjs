// The webhook receivers of docs/HOOKS.md, run for real: the Python one
// (clients/hooks/receiver.py, with verify.py) and a Node one (verify.mjs)
// each receive a socket.io-client pair's life from a gateway, accept the
// signed events, and refuse a forged one.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import path from "node:path";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { io } from "socket.io-client";
import { freePort, startGateway, killGateway } from "./gateway.mjs";
import { verify } from "../../clients/hooks/verify.mjs";

const HOOKS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), "../../clients/hooks");
const SECRET = "hooks-check-secret";
const LIFE = ["session.registered", "session.registered", "pair.started", "pair.ended", "session.ended", "session.ended"];

function registered(port, uid, type) {
  return new Promise((resolve, reject) => {
    const socket = io(`http://127.0.0.1:${port}`, { transports: ["websocket"], reconnection: false });
    socket.once("connect_error", reject);
    socket.once("registered", () => resolve(socket));
    socket.once("connect", () => socket.emit("register", { uid, type }));
  });
}

/** A pair registers, then both leave. */
async function pairLife(port, uid) {
  const web = await registered(port, uid, 0);
  const app = await registered(port, uid, 1);
  const bye = new Promise((resolve) => app.once("byebye", resolve));
  web.close();
  await bye;
  app.close();
}

async function until(predicate, what, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    if (predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function forged(port) {
  const body = JSON.stringify({ id: "x", type: "session.ended", uid: "forged", role: "web", epoch: 1 });
  const response = await fetch(`http://127.0.0.1:${port}/`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "Signalgate-Signature": `t=${Math.floor(Date.now() / 1000)},v1=${"0".repeat(64)}` },
    body,
  });
  return response.status;
}

test("the Python receiver of docs/HOOKS.md verifies and accepts a pair's life", async () => {
  const hookPort = await freePort();
  const receiver = spawn("python3", [path.join(HOOKS_DIR, "receiver.py"), String(hookPort), SECRET], {
    cwd: HOOKS_DIR, stdio: ["ignore", "pipe", "inherit"],
  });
  const events = [];
  createInterface({ input: receiver.stdout }).on("line", (line) => events.push(JSON.parse(line)));
  const port = await freePort();
  const gateway = await startGateway(port, ["--webhook-url", `http://127.0.0.1:${hookPort}/`, "--webhook-secret", SECRET]);
  try {
    await pairLife(port, "py-check");
    await until(() => events.length >= LIFE.length, "six events at the Python receiver");
    assert.deepEqual(events.map((e) => e.type), LIFE);
    assert.ok(events.every((e) => e.uid === "py-check"));
    assert.equal(await forged(hookPort), 401);
  } finally {
    await killGateway(gateway);
    receiver.kill();
  }
});

test("the Node check of docs/HOOKS.md verifies every signature", async () => {
  const events = [];
  const server = http.createServer((request, response) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
      const body = Buffer.concat(chunks);
      const ok = verify(SECRET, request.headers["signalgate-signature"] ?? "", body);
      if (ok) events.push(JSON.parse(body));
      response.writeHead(ok ? 204 : 401).end();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const hookPort = server.address().port;
  const port = await freePort();
  const gateway = await startGateway(port, ["--webhook-url", `http://127.0.0.1:${hookPort}/`, "--webhook-secret", SECRET]);
  try {
    await pairLife(port, "node-check");
    await until(() => events.length >= LIFE.length, "six events at the Node receiver");
    assert.deepEqual(events.map((e) => e.type), LIFE);
    const epochs = events.map((e) => e.epoch);
    assert.deepEqual([...epochs].sort((a, b) => a - b), epochs, "epochs rise");
    assert.equal(await forged(hookPort), 401);
  } finally {
    await killGateway(gateway);
    server.close();
  }
});
