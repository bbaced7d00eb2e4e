// Driving the demo page (served by signalgate at /) in Debian's headless
// Chromium with playwright-core: shared by the browser and TURN tests.
import { chromium } from "playwright-core";

const CHROMIUM_FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run",
  // Host candidates as plain addresses (no mDNS names to resolve offline).
  "--disable-features=WebRtcHideLocalIpsWithMdns",
];

/** Launches Chromium (CHROMIUM, default /usr/bin/chromium). */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: CHROMIUM_FLAGS,
  });
}

/** Opens the demo at `http://127.0.0.1:port/?role=…&uid=…` plus `extra` query text. */
export async function demoPage(browser, port, role, uid, extra = "") {
  const page = await browser.newPage({ viewport: { width: 1100, height: 820 } });
  page.on("pageerror", (error) => console.error(`[${role}] page error:`, error));
  await page.goto(`http://127.0.0.1:${port}/?role=${role}&uid=${encodeURIComponent(uid)}${extra}`);
  return page;
}

/** The state the demo page publishes (`window.signalgateDemo`). */
export const demoState = (page) => page.evaluate(() => window.signalgateDemo);

/**
 * Polls the page's state until `predicate` holds; on timeout fails with the
 * state and whatever `context()` adds (a server's log, say).
 */
export async function waitFor(page, predicate, what, timeout = 20_000, context = () => "") {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    const state = await demoState(page);
    if (predicate(state)) return state;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(await demoState(page))}${context()}`);
}
