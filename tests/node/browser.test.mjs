// Headless Chromium (Debian's) driven by playwright-core: the demo page,
// served by signalgate at /, sets up a real WebRTC data channel between a
// web and an app page and transfers a 1 MiB file; and a Chromium web page
// pairs with the Python gRPC client.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { demoPage as openDemo, launchChromium, waitFor } from "./demo.mjs";
import { freePort, startGateway, killGateway } from "./gateway.mjs";

const OUTPUT = process.env.TEST_OUTPUT_DIR ?? path.resolve("test-output");
let gateway;
let port;
let browser;

before(async () => {
  mkdirSync(OUTPUT, { recursive: true });
  port = await freePort();
  gateway = await startGateway(port);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  if (gateway) await killGateway(gateway);
});

const demoPage = (role, uid) => openDemo(browser, port, role, uid);

test("two demo pages open a data channel and move 1 MiB intact", async () => {
  const uid = `demo-${Date.now()}`;
  const web = await demoPage("web", uid);
  const app = await demoPage("app", uid);
  await waitFor(web, (s) => s.channel === "open", "the web's data channel");
  await waitFor(app, (s) => s.channel === "open", "the app's data channel");

  const file = randomBytes(1024 * 1024);
  const expected = createHash("sha256").update(file).digest("hex");
  await app.setInputFiles("#file-input", { name: "random.bin", mimeType: "application/octet-stream", buffer: file });
  await app.click("#send-file");

  const received = await waitFor(web, (s) => s.receivePercent === 100 && s.receivedHash, "the whole file", 60_000);
  const sent = await waitFor(app, (s) => s.sendPercent === 100, "the sender's progress", 30_000);
  assert.equal(received.receivedHash, expected, "the file arrived byte-identical");
  assert.equal(sent.sentHash, expected);
  assert.equal(received.receivedName, "random.bin");
  assert.ok(received.log.some((line) => line.includes("data channel open")), received.log.join("\n"));

  await app.screenshot({ path: path.join(OUTPUT, "demo-app.png") });
  await web.screenshot({ path: path.join(OUTPUT, "demo-web.png") });
  await app.close();
  await waitFor(web, (s) => s.peer === "left" || s.peer.startsWith("away"), "the web to see the app go");
  await web.close();
});

test("a Chromium web page pairs with the Python gRPC app", async () => {
  const uid = `py-${Date.now()}`;
  const web = await demoPage("web", uid);
  await waitFor(web, (s) => s.gateway === "open", "the web to register");
  const python = spawn(process.env.PYTHON ?? "python3", [
    path.resolve(process.env.PYTHON_CLIENT_DIR ?? "../../clients/python", "chat_peer.py"),
    "--target", `127.0.0.1:${port}`, "--uid", uid,
    "--greeting", "hello from python", "--expect", "hello from the browser",
  ], { stdio: ["ignore", "pipe", "inherit"] });
  let output = "";
  python.stdout.on("data", (chunk) => { output += chunk; });
  const exited = new Promise((resolve) => python.once("exit", resolve));

  await waitFor(web, (s) => s.log.includes("peer: hello from python"), "the python greeting");
  await web.fill("#chat-input", "hello from the browser");
  await web.click("#chat-form button");
  const code = await exited;
  assert.equal(code, 0, output);
  assert.match(output, /received 'hello from the browser'/);
  await waitFor(web, (s) => s.peer === "left", "byebye from the python app");
  await web.screenshot({ path: path.join(OUTPUT, "demo-web-with-python.png") });
  await web.close();
});
