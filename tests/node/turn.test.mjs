// Calls through a real TURN server: coturn (Debian's `turnserver`) runs on
// loopback in its TURN REST API mode (use-auth-secret); signalgate hands
// the demo pages the ICE servers with credentials it minted; two headless
// Chromium pages with `?relay=1` (iceTransportPolicy "relay") open a data
// channel and move a file intact, and getStats() shows the selected pair is
// relayed. A gateway holding the wrong secret must get no connection: the
// credentials really are checked.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { demoPage, demoState, launchChromium, waitFor as waitForDemo } from "./demo.mjs";
import { freePort, startGateway, killGateway } from "./gateway.mjs";

const OUTPUT = process.env.TEST_OUTPUT_DIR ?? path.resolve("test-output");
const TURN_SECRET = `turn-test-${randomBytes(8).toString("hex")}`;
const ADMIN_TOKEN = "turn-test-admin-token";

let turn;
let turnPort;
let turnLog = "";
let browser;

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
async function listening(port, what, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => { socket.destroy(); resolve(true); });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what} did not listen on ${port}:\n${turnLog}`);
}

/** A relay port range no other test uses (coturn needs a range, not 0). */
function relayRange() {
  const low = 40000 + Math.floor(Math.random() * 2000) * 10;
  return [low, low + 9];
}

before(async () => {
  mkdirSync(OUTPUT, { recursive: true });
  turnPort = await freePort();
  const [minPort, maxPort] = relayRange();
  const state = mkdtempSync(path.join(os.tmpdir(), "coturn-"));
  turn = spawn(process.env.TURNSERVER ?? "turnserver", [
    "-n", // no configuration file: everything is below
    `--listening-ip=127.0.0.1`, `--relay-ip=127.0.0.1`, `--listening-port=${turnPort}`,
    `--min-port=${minPort}`, `--max-port=${maxPort}`,
    "--use-auth-secret", `--static-auth-secret=${TURN_SECRET}`, "--realm=signalgate.test",
    // Loopback peers: both pages' relay addresses are 127.0.0.1 here
    // (never set this in production: docs/OPERATIONS.md).
    "--allow-loopback-peers",
    "--no-tls", "--no-dtls", "--no-cli", "--log-file=stdout", "--simple-log", "--verbose",
    `--userdb=${path.join(state, "turndb")}`, `--pidfile=${path.join(state, "turnserver.pid")}`,
  ], { stdio: ["ignore", "pipe", "pipe"] });
  turn.stdout.on("data", (chunk) => { turnLog += chunk; });
  turn.stderr.on("data", (chunk) => { turnLog += chunk; });
  await listening(turnPort, "coturn");
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  turn?.kill("SIGKILL");
  writeFileSync(path.join(OUTPUT, "coturn.log"), turnLog);
});

/** A gateway that hands out coturn's URL with credentials minted from `secret`. */
async function gatewayWithSecret(secret) {
  const port = await freePort();
  const child = await startGateway(port, [
    "--ice-server", `turn:127.0.0.1:${turnPort}?transport=udp`,
    "--turn-secret", secret, "--turn-ttl", "10m", "--admin-token", ADMIN_TOKEN,
  ]);
  return { port, child };
}

const relayPage = (port, role, uid) => demoPage(browser, port, role, uid, "&relay=1&callTimeout=5000");

/** The gateway's call outcomes (GET /admin/v1/calls) once `done` holds them. */
async function calls(port, done, what) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const response = await fetch(`http://127.0.0.1:${port}/admin/v1/calls`, {
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    const answer = await response.json();
    if (done(answer)) return answer;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(answer)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Waits on the demo's state; a timeout shows coturn's last words too. */
const waitFor = (page, predicate, what, timeout) =>
  waitForDemo(page, predicate, what, timeout, () => `\ncoturn:\n${turnLog.slice(-3000)}`);

test("relay only: a file crosses the TURN server intact", async () => {
  const { port, child } = await gatewayWithSecret(TURN_SECRET);
  try {
    // A uid coturn would refuse in a username as it is (a space, quotes):
    // the gateway puts it in hex, and the relay works.
    const uid = `turn it's "${Date.now()}"`;
    const web = await relayPage(port, "web", uid);
    const app = await relayPage(port, "app", uid);
    const opened = await waitFor(app, (s) => s.channel === "open", "the app's data channel over TURN");
    await waitFor(web, (s) => s.channel === "open", "the web's data channel over TURN");
    assert.equal(opened.relayOnly, true);
    assert.equal(opened.iceServers, 1, "the gateway's one TURN entry");

    const file = randomBytes(256 * 1024);
    const expected = createHash("sha256").update(file).digest("hex");
    await app.setInputFiles("#file-input", { name: "relayed.bin", mimeType: "application/octet-stream", buffer: file });
    await app.click("#send-file");
    const received = await waitFor(web, (s) => s.receivePercent === 100 && s.receivedHash, "the whole file", 60_000);
    assert.equal(received.receivedHash, expected, "the file arrived byte-identical");

    // The path is the relay: only relay candidates were gathered, and the
    // selected pair is relay on both ends.
    const sender = await waitFor(app, (s) => s.selectedPair, "the app's selected pair");
    const receiver = await waitFor(web, (s) => s.selectedPair, "the web's selected pair");
    for (const state of [sender, receiver]) {
      assert.deepEqual(state.selectedPair, { local: "relay", remote: "relay" });
      assert.ok(state.gathered.length > 0 && state.gathered.every((type) => type === "relay"), state.gathered.join());
    }
    // coturn itself granted an allocation to the uid's minted username.
    const user = `hex.${Buffer.from(uid, "utf8").toString("hex")}`;
    assert.match(turnLog, new RegExp(`user <\\d+:${user}>: incoming packet ALLOCATE processed, success`),
      "coturn logged the uid's allocation");
    // Both pages reported the call connected through the relay.
    for (const page of [app, web]) {
      const state = await waitFor(page, (s) => s.callReport, "the page's call report");
      assert.deepEqual([state.callReport.result, state.callReport.path], ["connected", "relay"]);
    }
    const recorded = await calls(port, (c) => c.total === 1, "the relayed call's record");
    assert.equal(recorded.relayShare, 1, JSON.stringify(recorded));
    await app.screenshot({ path: path.join(OUTPUT, "turn-app.png") });
    await web.screenshot({ path: path.join(OUTPUT, "turn-web.png") });
    await app.close();
    await web.close();
  } finally {
    await killGateway(child);
  }
});

test("with the wrong secret coturn refuses the credentials and no call connects", async () => {
  const { port, child } = await gatewayWithSecret("not-the-turn-secret");
  try {
    const uid = `turn-wrong-${Date.now()}`;
    const web = await relayPage(port, "web", uid);
    const app = await relayPage(port, "app", uid);
    // Both register and negotiate: signaling works, the relay does not.
    await waitFor(app, (s) => s.channel === "negotiating" || s.channel === "failed", "the app to start the call");
    await new Promise((resolve) => setTimeout(resolve, 8_000));
    for (const page of [web, app]) {
      const state = await demoState(page);
      assert.notEqual(state.channel, "open", JSON.stringify(state));
      assert.equal(state.gathered.filter((type) => type === "relay").length, 0, "no relay candidate without valid credentials");
    }
    // coturn refused the minted username: the credential is checked.
    assert.match(turnLog, new RegExp(`user <\\d+:${uid}>: incoming packet message processed, error 401`),
      "coturn answered 401 to the wrong credentials");
    assert.doesNotMatch(turnLog, new RegExp(`user <\\d+:${uid}>: incoming packet ALLOCATE processed, success`));
    // The SDK gave up after its timeout (or on ICE failing first) and said
    // why; the gateway recorded one failed call.
    for (const page of [app, web]) {
      const state = await waitFor(page, (s) => s.callReport, "the page's failure report");
      assert.equal(state.callReport.result, "failed", JSON.stringify(state.callReport));
      assert.ok(state.callReport.reason.length > 0);
    }
    const recorded = await calls(port, (c) => c.failed === 1, "the failed call's record");
    assert.equal(recorded.total, 1, JSON.stringify(recorded));
    assert.equal(recorded.recentFailures[0].uid, uid);
    assert.ok(recorded.recentFailures[0].reason.length > 0, JSON.stringify(recorded));
    await app.screenshot({ path: path.join(OUTPUT, "turn-wrong-secret-app.png") });
    await app.close();
    await web.close();
  } finally {
    await killGateway(child);
  }
});
