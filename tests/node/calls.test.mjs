// Call outcomes from real peer connections (docs/PROTOCOL.md, *Call
// outcomes*): the browser SDK's watchCall, used by the demo page, reports
// each call from its RTCPeerConnection. Two demo pages in Debian's headless
// Chromium connect directly: one call record, connected, path host, setup
// time above zero — in /metrics, in GET /admin/v1/calls, on the dashboard's
// Calls panel (screenshot) and as a signed call.connected webhook; closing
// a page ends the call (call.ended with a duration). The relay cases (path
// relay, and failed with the wrong TURN secret) are in turn.test.mjs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { verify } from "../../clients/hooks/verify.mjs";
import { demoPage, launchChromium, waitFor } from "./demo.mjs";
import { freePort, startGateway, killGateway } from "./gateway.mjs";

const OUTPUT = process.env.TEST_OUTPUT_DIR ?? path.resolve("test-output");
const TOKEN = "calls-test-admin-token";
const SECRET = "calls-test-webhook-secret";

let browser;
let receiver;
const hooks = []; // verified webhook bodies, in arrival order
let forged = 0;

before(async () => {
  mkdirSync(OUTPUT, { recursive: true });
  browser = await launchChromium();
  receiver = http.createServer((request, response) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
      const body = Buffer.concat(chunks);
      if (verify(SECRET, request.headers["signalgate-signature"] ?? "", body)) hooks.push(JSON.parse(body));
      else forged += 1;
      response.writeHead(204).end();
    });
  });
  await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
});

after(async () => {
  await browser?.close();
  receiver?.close();
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(check, what, timeout = 20_000) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    const value = await check();
    if (value) return value;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function admin(port, pathAndQuery) {
  const response = await fetch(`http://127.0.0.1:${port}${pathAndQuery}`, {
    headers: { Authorization: `Bearer ${TOKEN}` },
  });
  assert.equal(response.status, 200, pathAndQuery);
  return response.json();
}

/** The value of a Prometheus sample line `name{labels} value`, or 0. */
async function metric(port, line) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const found = text.split("\n").find((l) => l.startsWith(line + " "));
  return found ? Number(found.split(" ").pop()) : 0;
}

test("a direct call is recorded connected on host: metrics, admin, dashboard, webhook; its end too", async () => {
  const port = await freePort();
  const gateway = await startGateway(port, [
    "--admin-token", TOKEN,
    "--webhook-url", `http://127.0.0.1:${receiver.address().port}/`, "--webhook-secret", SECRET,
  ]);
  try {
    const uid = `call-${Date.now()}`;
    const web = await demoPage(browser, port, "web", uid);
    const app = await demoPage(browser, port, "app", uid);
    const webState = await waitFor(web, (s) => s.callReport, "the web page's call report");
    const appState = await waitFor(app, (s) => s.callReport, "the app page's call report");
    for (const state of [webState, appState]) {
      assert.equal(state.callReport.result, "connected", JSON.stringify(state.callReport));
      assert.equal(state.callReport.path, "host");
      assert.ok(state.callReport.setupMs > 0, JSON.stringify(state.callReport));
    }

    // One record, both sides joined.
    const calls = await until(async () => {
      const answer = await admin(port, "/admin/v1/calls?window=1h");
      return answer.total === 1 ? answer : null;
    }, "the call in /admin/v1/calls");
    assert.equal(calls.connected, 1, JSON.stringify(calls));
    assert.equal(calls.relayShare, 0);
    assert.ok(calls.setupMs.p50 > 0, JSON.stringify(calls));
    assert.deepEqual(calls.byDoorPair, { "ws/ws": { total: 1, connected: 1, failed: 0 } });
    assert.equal(await metric(port, 'signalgate_calls_total{result="connected",path="host"}'), 1);
    assert.equal(await metric(port, 'signalgate_call_reports_total{role="web",door="ws",result="connected"}'), 1);

    const connected = await until(() => hooks.find((h) => h.type === "call.connected" && h.uid === uid),
      "the call.connected webhook");
    assert.equal(connected.path, "host");
    assert.ok(connected.setupMs > 0);
    assert.equal(connected.one_sided, false);
    assert.deepEqual([connected.web_door, connected.app_door], ["ws", "ws"]);

    // The dashboard's Calls panel shows it.
    const page = await browser.newPage({ viewport: { width: 1280, height: 1500 } });
    const errors = [];
    page.on("pageerror", (error) => errors.push(String(error)));
    await page.goto(`http://127.0.0.1:${port}/admin/`);
    await page.fill("#token", TOKEN);
    await page.click("#login-form button");
    await page.waitForSelector("#dashboard:not([hidden])");
    await page.waitForFunction(() => [...document.querySelectorAll("#call-kpis .kpi")]
      .some((k) => k.textContent.includes("100%") && k.textContent.includes("connected")));
    const kpis = await page.evaluate(() => [...document.querySelectorAll("#call-kpis .kpi")].map((k) => k.textContent));
    assert.ok(kpis.some((k) => k === "1calls"), kpis.join(" | "));
    assert.ok(kpis.some((k) => k.endsWith("msconnect p50")), kpis.join(" | "));
    // Let the charts gather a few samples, then look.
    await sleep(6000);
    await page.locator("#calls-card").scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(OUTPUT, "admin-calls.png"), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();

    // The app page goes: the web page hears byebye and ends the call.
    await app.close();
    await waitFor(web, (s) => s.callEnded, "the web page to end the call");
    const ended = await until(() => hooks.find((h) => h.type === "call.ended" && h.uid === uid),
      "the call.ended webhook");
    assert.ok(ended.durationMs >= 0 && Number.isInteger(ended.durationMs), JSON.stringify(ended));
    assert.equal(await metric(port, "signalgate_call_duration_seconds_count"), 1);
    // Ends are not more calls.
    assert.equal((await admin(port, "/admin/v1/calls")).total, 1);
    assert.equal(forged, 0, "every webhook was signed with the secret");
    await web.close();
  } finally {
    await killGateway(gateway);
  }
});
