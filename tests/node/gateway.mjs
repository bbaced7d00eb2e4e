// Starts the signalgate binary on a free port for a test, and stops it.
import { spawn } from "node:child_process";
import net from "node:net";

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Starts the gateway (SIGNALGATE_BIN) on `port`; resolves once it answers /healthz. */
export async function startGateway(port, extraArgs = []) {
  const binary = process.env.SIGNALGATE_BIN;
  if (!binary) throw new Error("SIGNALGATE_BIN must point at the signalgate binary");
  const child = spawn(binary, ["--listen", `127.0.0.1:${port}`, "--advertise-ip", "192.0.2.10", ...extraArgs], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (response.ok) return child;
    } catch {
      // not up yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  child.kill("SIGKILL");
  throw new Error("the gateway did not start");
}

/** Stops a gateway (SIGKILL: no goodbye, as a crash). */
export function killGateway(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}
