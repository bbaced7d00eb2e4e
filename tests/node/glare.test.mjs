// Perfect negotiation by role (docs/PROTOCOL.md, *Negotiation*): two pages
// in Debian's headless Chromium, each with the browser SDK's
// negotiate(pc), renegotiate at the same instant 20 times (both add an
// audio transceiver and a data channel together, so both make an offer).
// Every round ends with both sides stable, every transceiver negotiated,
// data flowing on each round's new channels both ways, and no
// InvalidStateError; the offers really crossed (collisions counted).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launchChromium } from "./demo.mjs";
import { freePort, startGateway, killGateway } from "./gateway.mjs";

const ROUNDS = 20;
let browser;
let gateway;
let port;

before(async () => {
  port = await freePort();
  gateway = await startGateway(port);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  if (gateway) await killGateway(gateway);
});

/** A page with a registered SignalGate and a negotiated RTCPeerConnection. */
async function side(uid, role, problems) {
  const page = await browser.newPage();
  page.on("pageerror", (error) => problems.push(`[${role}] ${error}`));
  page.on("console", (message) => {
    // The page's own favicon 404 is not a negotiation problem.
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      problems.push(`[${role}] ${message.text()}`);
    }
  });
  await page.goto(`http://127.0.0.1:${port}/`);
  const polite = await page.evaluate(async ({ uid, role }) => {
    const { SignalGate } = await import("/signalgate.js");
    const gate = new SignalGate(`ws://${location.host}/ws`);
    await gate.connect();
    const registered = await gate.register(uid, role);
    const pc = new RTCPeerConnection();
    const received = {};
    const channels = {};
    pc.addEventListener("datachannel", ({ channel }) => {
      channels[channel.label] = channel;
      channel.onmessage = (message) => (received[channel.label] ??= []).push(message.data);
    });
    window.glare = { gate, pc, negotiation: gate.negotiate(pc), received, channels };
    // One step of the test: a transceiver and a data channel at once
    // (the transceiver needs an offer; so does the first channel).
    window.renegotiate = (label) => {
      pc.addTransceiver("audio");
      const channel = pc.createDataChannel(label);
      channels[label] = channel;
      channel.onmessage = (message) => (received[label] ??= []).push(message.data);
    };
    return registered.polite;
  }, { uid, role });
  return { page, polite };
}

/** Waits until `check` (run in the page) returns a truthy value. */
async function until(page, check, arg, what, timeout = 15_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await page.evaluate(check, arg);
    if (value) return value;
    if (Date.now() > deadline) {
      const state = await page.evaluate(() => ({
        signaling: window.glare.pc.signalingState,
        connection: window.glare.pc.connectionState,
        mids: window.glare.pc.getTransceivers().map((t) => t.mid),
        channels: Object.fromEntries(Object.entries(window.glare.channels).map(([k, c]) => [k, c.readyState])),
      }));
      throw new Error(`timed out waiting for ${what}: ${JSON.stringify(state)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Both sides stable with `transceivers` negotiated and `labels` open. */
async function settled(page, transceivers, labels, what) {
  await until(page, ({ transceivers, labels }) => {
    const { pc, channels } = window.glare;
    return pc.signalingState === "stable" && pc.connectionState === "connected"
      && pc.getTransceivers().filter((t) => t.mid !== null).length === transceivers
      && labels.every((label) => channels[label]?.readyState === "open");
  }, { transceivers, labels }, what);
}

test("20 simultaneous renegotiations end stable with data flowing, the web side yielding", async () => {
  const uid = `glare-${Date.now()}`;
  const problems = [];
  const web = await side(uid, "web", problems);
  const app = await side(uid, "app", problems);
  assert.equal(web.polite, true, "registered says the web side is polite");
  assert.equal(app.polite, false, "and the app side is not");
  const pages = [web.page, app.page];

  for (let round = 1; round <= ROUNDS; round += 1) {
    const labels = [`r${round}-web`, `r${round}-app`];
    // At the same instant: both sides offer.
    await Promise.all(pages.map((page, n) => page.evaluate((label) => window.renegotiate(label), labels[n])));
    for (const [n, page] of pages.entries()) {
      await settled(page, 2 * round, labels, `round ${round} on the ${n ? "app" : "web"} side`);
    }
    // Data flows on both new channels, both ways.
    for (const [n, page] of pages.entries()) {
      await page.evaluate(({ labels, n }) => {
        for (const label of labels) window.glare.channels[label].send(`${label} from side ${n}`);
      }, { labels, n });
    }
    for (const [n, page] of pages.entries()) {
      await until(page, ({ labels, other }) => labels.every((label) =>
        window.glare.received[label]?.includes(`${label} from side ${other}`)),
      { labels, other: 1 - n }, `round ${round}'s messages on side ${n}`);
    }
  }
  const collisions = await Promise.all(pages.map((page) => page.evaluate(() => window.glare.negotiation.collisions)));
  assert.ok(collisions[0] + collisions[1] > 0, `the offers crossed in some rounds (${collisions})`);
  console.log(`collisions seen: web ${collisions[0]}, app ${collisions[1]} over ${ROUNDS} rounds`);
  assert.deepEqual(problems.filter((p) => /InvalidStateError|negotiation failed|making an offer failed/.test(p)), []);
  assert.deepEqual(problems, []);
  await Promise.all(pages.map((page) => page.close()));
});
