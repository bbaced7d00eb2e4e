// The admin dashboard (/admin/) in Debian's headless Chromium: it asks for
// the token, shows live numbers that move while npm socket.io-client pairs
// relay through the gateway, finds a uid and kicks it — and that client
// really is closed. Screenshots go to TEST_OUTPUT_DIR.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { io } from "socket.io-client";
import { freePort, startGateway, killGateway } from "./gateway.mjs";
import { launchChromium } from "./demo.mjs";

const OUTPUT = process.env.TEST_OUTPUT_DIR ?? ".";
const TOKEN = "dashboard-test-token";

/** A socket.io-client registered as `role` of `uid`. */
function client(port, uid, type) {
  return new Promise((resolve, reject) => {
    const socket = io(`http://127.0.0.1:${port}`, { transports: ["websocket"], reconnection: false });
    socket.events = [];
    socket.onAny((event, data) => socket.events.push({ event, data }));
    socket.once("connect_error", reject);
    socket.once("registered", () => resolve(socket));
    socket.once("connect", () => socket.emit("register", { uid, type }));
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitUntil(predicate, what, timeout = 15_000) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    const value = await predicate();
    if (value) return value;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

test("the dashboard shows live numbers, finds a uid and kicks it", async () => {
  const port = await freePort();
  const gateway = await startGateway(port, ["--admin-token", TOKEN, "--rate-limit", "0"]);
  const sockets = [];
  let load;
  const browser = await launchChromium();
  try {
    for (const uid of ["alpha", "bravo", "charlie", "victim"]) {
      sockets.push(await client(port, uid, 0), await client(port, uid, 1));
    }
    const [victimWeb, victimApp] = sockets.slice(6);
    // A web alone: its messages are refused with NO_PEER (errors by code).
    const solo = await client(port, "solo", 0);
    sockets.push(solo);
    // A load that changes: every web sends a message every 20 ms, the first
    // pair only for the first three seconds.
    const started = Date.now();
    load = setInterval(() => {
      for (let i = 0; i < 8; i += 2) {
        if (i === 0 && Date.now() - started > 3000) continue;
        sockets[i].emit("message", { n: Date.now() });
      }
      solo.emit("message", { alone: true });
    }, 20);

    const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
    const errors = [];
    page.on("pageerror", (error) => errors.push(String(error)));
    // The page's Content-Security-Policy: anything it blocks is a console
    // error naming the policy, and there must be none. (The refused wrong
    // token below logs a 401, which is not one.)
    page.on("console", (message) => {
      if (message.type() === "error" && message.text().includes("Content Security Policy")) {
        errors.push(message.text());
      }
    });
    await page.goto(`http://127.0.0.1:${port}/admin/`);
    // A wrong token is refused on the page.
    await page.fill("#token", "wrong");
    await page.click("#login-form button");
    await page.waitForFunction(() => document.getElementById("login-error").textContent.includes("refused"));
    await page.fill("#token", TOKEN);
    await page.click("#login-form button");
    await page.waitForSelector("#dashboard:not([hidden])");

    // Live: samples accumulate and the relay rate is the load's.
    const state = () => page.evaluate(() => ({
      samples: window.signalgateAdmin.samples.length,
      totals: window.signalgateAdmin.lastStats && window.signalgateAdmin.lastStats.totals,
      lines: document.querySelectorAll("#chart-relays polyline").length,
      relaysKpi: [...document.querySelectorAll(".kpi")].map((k) => k.textContent),
    }));
    const first = await waitUntil(async () => {
      const s = await state();
      return s.samples >= 2 && s.totals.relays_per_s > 0 ? s : null;
    }, "a relay rate above zero");
    const later = await waitUntil(async () => {
      const s = await state();
      return s.samples >= first.samples + 6 ? s : null;
    }, "more samples");
    assert.equal(later.totals.sessions.socketio, 9, JSON.stringify(later.totals));
    assert.ok(later.totals.errors_per_s.NO_PEER > 0, JSON.stringify(later.totals));
    assert.equal(later.totals.pairs, 4);
    assert.ok(later.totals.relays_per_s > 20, JSON.stringify(later.totals));
    assert.ok(later.lines >= 1, "the relay chart draws a line");
    const points = await page.evaluate(() =>
      document.querySelector("#chart-relays polyline").getAttribute("points").split(" ").length);
    assert.ok(points >= 5, `the chart has history (${points} points)`);
    // The legend's colour swatches are set through the DOM (no inline style
    // attribute, which the policy would refuse).
    const swatches = await page.evaluate(() =>
      [...document.querySelectorAll("#legend-relays i")].map((i) => getComputedStyle(i).backgroundColor));
    assert.ok(swatches.length >= 1 && swatches.every((c) => c !== "rgba(0, 0, 0, 0)"), JSON.stringify(swatches));
    await page.screenshot({ path: path.join(OUTPUT, "admin-dashboard.png"), fullPage: true });

    // Search the victim: its two sessions and its presence.
    await page.fill("#search", "victim");
    await page.click("#search-form button");
    await page.waitForFunction(() =>
      document.querySelectorAll("#sessions tbody tr").length === 2 &&
      document.getElementById("presence").textContent.includes("paired"));
    // Kick its app session.
    const closed = new Promise((resolve) => victimApp.once("disconnect", resolve));
    await page.click('#sessions tbody tr[data-role="app"] button.kick');
    const reason = await Promise.race([closed, sleep(5000).then(() => "still connected")]);
    assert.equal(reason, "io server disconnect");
    const kicked = victimApp.events.find((e) => e.event === "error");
    assert.equal(kicked?.data?.code, "KICKED", JSON.stringify(victimApp.events.slice(-3)));
    await waitUntil(() => victimWeb.events.some((e) => e.event === "byebye"), "the peer's byebye");
    await page.waitForFunction(() =>
      document.querySelectorAll("#sessions tbody tr").length === 1 &&
      document.getElementById("presence").textContent.includes("app absent") &&
      document.getElementById("kick-status").textContent.includes("kicked 1 session"));
    await page.screenshot({ path: path.join(OUTPUT, "admin-dashboard-after-kick.png"), fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    clearInterval(load);
    for (const socket of sockets) socket.close();
    await browser.close();
    await killGateway(gateway);
  }
});
