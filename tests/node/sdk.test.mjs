// The browser SDK (clients/web/signalgate.js) in Node's WebSocket: it
// reconnects and re-registers when the gateway restarts, resumes (nothing
// lost, nothing twice) when its network drops, and asks again when a
// resume or register is answered UNAVAILABLE.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { SignalGate, SignalGateError } from "../../clients/web/signalgate.js";
import { spawn } from "node:child_process";
import { freePort, startGateway, killGateway } from "./gateway.mjs";

const fast = { initialDelayMs: 50, maxDelayMs: 500, requestTimeoutMs: 5000 };

function nextEvent(gate, name, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${name} within ${timeoutMs} ms`)), timeoutMs);
    const off = gate.on(name, (data) => {
      clearTimeout(timer);
      off();
      resolve(data);
    });
  });
}

test("requests resolve on ack and reject with the server's error", async () => {
  const port = await freePort();
  const gateway = await startGateway(port);
  try {
    const gate = new SignalGate(`ws://127.0.0.1:${port}/ws`, fast);
    const welcome = await gate.connect();
    assert.equal(welcome.message, "Welcome!");
    await assert.rejects(gate.message("too early"), (error) => error instanceof SignalGateError && error.code === "NOT_REGISTERED");
    const registered = await gate.register("sdk-errors", "web");
    assert.equal(registered.peerPresent, false);
    await assert.rejects(gate.message("alone"), (error) => error.code === "NO_PEER");
    await assert.rejects(gate.syncto({}), (error) => error.code === "WRONG_ROLE");
    gate.close();
  } finally {
    await killGateway(gateway);
  }
});

test("the SDK reconnects and re-registers when the gateway restarts", async () => {
  const port = await freePort();
  let gateway = await startGateway(port);
  const url = `ws://127.0.0.1:${port}/ws`;
  const web = new SignalGate(url, fast);
  const app = new SignalGate(url, fast);
  try {
    await web.connect();
    await web.register("sdk-restart", "web");
    await app.connect();
    const synced = nextEvent(app, "syncfrom");
    await app.register("sdk-restart", "app");
    await synced;

    const reRegisteredWeb = nextEvent(web, "registered");
    const reRegisteredApp = nextEvent(app, "registered");
    await killGateway(gateway);
    gateway = await startGateway(port);
    // The old sessions died with the process: the resume is refused and the
    // SDK registers afresh with the remembered uid and role.
    await reRegisteredWeb;
    await reRegisteredApp;
    const got = nextEvent(web, "message");
    await app.message({ after: "restart" });
    assert.deepEqual(await got, { after: "restart" });
    assert.equal(web.state, "open");
    web.close();
    app.close();
  } finally {
    await killGateway(gateway);
  }
});

/** A TCP proxy whose connections can be cut (a network drop). */
function cuttableProxy(targetPort) {
  const sockets = new Set();
  let target = targetPort;
  const server = net.createServer((client) => {
    const upstream = net.connect(target, "127.0.0.1");
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () =>
      resolve({
        port: server.address().port,
        cut: () => { for (const socket of sockets) socket.resetAndDestroy(); },
        // New connections go elsewhere (a load balancer taking a node out).
        retarget: (port) => { target = port; },
        close: () => {
          for (const socket of sockets) socket.destroy();
          server.close();
        },
      }));
  });
}

test("after a network drop the SDK resumes: nothing lost, nothing twice", async () => {
  const port = await freePort();
  const gateway = await startGateway(port);
  const proxy = await cuttableProxy(port);
  try {
    const web = new SignalGate(`ws://127.0.0.1:${port}/ws`, fast);
    const app = new SignalGate(`ws://127.0.0.1:${proxy.port}/ws`, fast);
    await web.connect();
    await web.register("sdk-resume", "web");
    await app.connect();
    await app.register("sdk-resume", "app");
    const appGot = [];
    const webGot = [];
    app.on("message", (data) => appGot.push(data.n));
    web.on("message", (data) => webGot.push(data.n));
    const away = nextEvent(web, "peer_away");
    const back = nextEvent(web, "peer_back");
    const resumed = nextEvent(app, "resumed");
    const sessionBefore = app.sessionId;

    // Requests in flight when the network goes: applied or not, their acks
    // are lost; the SDK re-sends them after the resume and the server
    // applies each once.
    const inFlight = [0, 1, 2].map((n) => app.message({ n }));
    proxy.cut();
    await away;
    // The web keeps talking into the gap; the app keeps sending too (its
    // requests wait and go out after the resume).
    const webSends = [0, 1, 2, 3, 4].map((n) => web.message({ n }));
    const appSends = [...inFlight, ...[3, 4].map((n) => app.message({ n }))];
    await Promise.all(webSends);
    await resumed;
    await back;
    await Promise.all(appSends);
    assert.equal(app.sessionId, sessionBefore, "the same session came back");
    // Let the last relays land.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(appGot, [0, 1, 2, 3, 4]);
    assert.deepEqual(webGot, [0, 1, 2, 3, 4]);
    web.close();
    app.close();
  } finally {
    proxy.close();
    await killGateway(gateway);
  }
});

test("the SDK holds the session's ICE servers and renews them before they expire", async () => {
  const port = await freePort();
  // Credentials that live 3 s: the SDK renews at 80 % of their lifetime.
  const gateway = await startGateway(port, [
    "--ice-server", "turn:127.0.0.1:3478?transport=udp", "--ice-server", "stun:127.0.0.1:3478",
    "--turn-secret", "sdk-secret", "--turn-ttl", "3s",
  ]);
  try {
    const gate = new SignalGate(`ws://127.0.0.1:${port}/ws`, fast);
    await gate.connect();
    assert.deepEqual(gate.iceServers, [], "nothing before registering");
    const registered = await gate.register("sdk-ice", "app");
    assert.deepEqual(gate.iceServers, registered.iceServers);
    const [turn, stun] = gate.iceServers;
    assert.deepEqual(turn.urls, ["turn:127.0.0.1:3478?transport=udp"]);
    assert.equal(turn.username, `${registered.iceServersExpireAt}:sdk-ice`);
    assert.deepEqual(stun, { urls: ["stun:127.0.0.1:3478"] });
    const first = gate.iceServersExpireAt;
    assert.ok(Math.abs(first - (Date.now() / 1000 + 3)) <= 2, `${first}`);

    // The renewal happens by itself, as an `iceservers` event.
    const renewed = await nextEvent(gate, "iceservers", 5_000);
    assert.ok(renewed.iceServersExpireAt > first, `${renewed.iceServersExpireAt} after ${first}`);
    assert.equal(gate.iceServersExpireAt, renewed.iceServersExpireAt);
    assert.notEqual(gate.iceServers[0].credential, turn.credential);
    // And on demand.
    const list = await gate.renewIceServers();
    assert.equal(list[0].username.endsWith(":sdk-ice"), true);
    gate.close();
  } finally {
    await killGateway(gateway);
  }
});

test("a draining node's reconnect: the SDK resumes on another node by itself", async () => {
  const redisPort = await freePort();
  const redis = spawn("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  await new Promise((resolve) => setTimeout(resolve, 300));
  const [portA, portB] = [await freePort(), await freePort()];
  const cluster = ["--redis-url", `redis://127.0.0.1:${redisPort}/`];
  const nodeA = await startGateway(portA, [...cluster, "--admin-token", "sdk-admin-token-for-tests"]);
  const nodeB = await startGateway(portB, cluster);
  const balancer = await cuttableProxy(portA);
  try {
    const web = new SignalGate(`ws://127.0.0.1:${portB}/ws`, fast);
    const app = new SignalGate(`ws://127.0.0.1:${balancer.port}/ws`, fast);
    await web.connect();
    await web.register("sdk-drain", "web");
    await app.connect();
    await app.register("sdk-drain", "app");
    const sessionBefore = app.sessionId;
    const told = nextEvent(app, "reconnect");
    const away = nextEvent(web, "peer_away");
    const back = nextEvent(web, "peer_back");
    const resumed = nextEvent(app, "resumed");
    const byes = [];
    web.on("byebye", () => byes.push("web"));
    // The balancer sees node A's /readyz turn 503 and sends new
    // connections to B; node A drains.
    balancer.retarget(portB);
    const answer = await fetch(`http://127.0.0.1:${portA}/admin/v1/drain`, {
      method: "POST", headers: { Authorization: "Bearer sdk-admin-token-for-tests" },
    });
    assert.equal(answer.status, 202);
    const reconnect = await told;
    assert.ok(typeof reconnect.resume_token === "string" && reconnect.after_ms >= 0, JSON.stringify(reconnect));
    await away;
    await resumed;
    await back;
    assert.equal(app.sessionId, sessionBefore, "the same session, now on node B");
    const got = nextEvent(web, "message");
    await app.message({ after: "drain" });
    assert.deepEqual(await got, { after: "drain" });
    assert.deepEqual(byes, []);
    web.close();
    app.close();
  } finally {
    balancer.close();
    await killGateway(nodeA);
    await killGateway(nodeB);
    redis.kill("SIGKILL");
  }
});

/** The gateway's `signalgate_errors_total` for `code`, from /metrics. */
async function errorsSent(port, code) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let total = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("signalgate_errors_total{") && line.includes(`code="${code}"`)) {
      total += Number(line.split(" ").pop());
    }
  }
  return total;
}

/** A Redis for a test (killed with `redis.kill("SIGKILL")`). */
async function startRedis() {
  const port = await freePort();
  const redis = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  await new Promise((resolve) => setTimeout(resolve, 300));
  return { redis, url: `redis://127.0.0.1:${port}/` };
}

/** `data` sent by `from` reaches `to` as its next message. */
async function relaysOnce(from, to, data) {
  const got = nextEvent(to, "message");
  await from.message(data);
  assert.deepEqual(await got, data);
}

/** Waits until the SDK's state is `state` (the ack settles after the event). */
async function untilState(gate, state) {
  const deadline = Date.now() + 5_000;
  while (gate.state !== state) {
    assert.ok(Date.now() < deadline, `still ${gate.state}, not ${state}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Waits until `port`'s gateway has sent one more `UNAVAILABLE` than `before`. */
async function untilUnavailableSent(port, before) {
  const deadline = Date.now() + 10_000;
  while ((await errorsSent(port, "UNAVAILABLE")) === before) {
    assert.ok(Date.now() < deadline, "no request was answered UNAVAILABLE");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test("a resume answered UNAVAILABLE is asked again: the session comes back once Redis answers", async () => {
  const { redis, url } = await startRedis();
  const cluster = ["--redis-url", url, "--redis-timeout", "300ms"];
  const [portA, portB] = [await freePort(), await freePort()];
  const nodeA = await startGateway(portA, cluster);
  const nodeB = await startGateway(portB, cluster);
  const balancer = await cuttableProxy(portA);
  try {
    const web = new SignalGate(`ws://127.0.0.1:${portB}/ws`, fast);
    const app = new SignalGate(`ws://127.0.0.1:${balancer.port}/ws`, fast);
    await web.connect();
    await web.register("sdk-resume-unavailable", "web");
    await app.connect();
    await app.register("sdk-resume-unavailable", "app");
    const sessionBefore = app.sessionId;
    const refusedBefore = await errorsSent(portB, "UNAVAILABLE");
    const resumed = nextEvent(app, "resumed", 20_000);
    const errors = [];
    app.on("error", (error) => errors.push(error));
    // Redis stops answering, then the app's network drops and its new
    // connection lands on node B: taking the session over from node A
    // needs Redis, so the resume is answered UNAVAILABLE until it is back.
    redis.kill("SIGSTOP");
    balancer.retarget(portB);
    balancer.cut();
    await untilUnavailableSent(portB, refusedBefore);
    assert.equal(app.state, "resuming");
    redis.kill("SIGCONT");
    await resumed;
    await untilState(app, "open");
    assert.equal(app.sessionId, sessionBefore, "the same session came back, now on node B");
    assert.deepEqual(errors, []);
    await relaysOnce(app, web, { after: "unavailable" });
    web.close();
    app.close();
  } finally {
    redis.kill("SIGCONT");
    balancer.close();
    await killGateway(nodeA);
    await killGateway(nodeB);
    redis.kill("SIGKILL");
  }
});

test("a fresh register answered UNAVAILABLE is asked again once the session is gone", async () => {
  const { redis, url } = await startRedis();
  const port = await freePort();
  const gateway = await startGateway(port, ["--redis-url", url, "--redis-timeout", "300ms"]);
  try {
    const web = new SignalGate(`ws://127.0.0.1:${port}/ws`, fast);
    const app = new SignalGate(`ws://127.0.0.1:${port}/ws`, fast);
    await web.connect();
    await web.register("sdk-register-unavailable", "web");
    await app.connect();
    await app.register("sdk-register-unavailable", "app");
    const sessionBefore = app.sessionId;
    const refusedBefore = await errorsSent(port, "UNAVAILABLE");
    const registered = nextEvent(app, "registered", 20_000);
    const errors = [];
    app.on("error", (error) => errors.push(error));
    // The socket closes cleanly under the SDK (as a browser may close it):
    // the server ends the session, the SDK's resume is refused
    // (RESUME_FAILED) and its fresh register needs Redis, which is stopped.
    redis.kill("SIGSTOP");
    app._socket.close();
    await untilUnavailableSent(port, refusedBefore);
    assert.equal(app.state, "resuming");
    redis.kill("SIGCONT");
    await registered;
    await untilState(app, "open");
    assert.notEqual(app.sessionId, sessionBefore, "a new session");
    assert.deepEqual(errors, []);
    await relaysOnce(app, web, { after: "register" });
    web.close();
    app.close();
  } finally {
    redis.kill("SIGCONT");
    await killGateway(gateway);
    redis.kill("SIGKILL");
  }
});
