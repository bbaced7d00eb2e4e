// Socket.IO through a load balancer (BALANCER_URL): npm socket.io-client
// pairs over long-polling — every request of a session must reach the node
// that holds it (stickiness) — and over WebSocket, relays and says byebye.
import { test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const URL = process.env.BALANCER_URL;

function registered(transports, uid, type) {
  return new Promise((resolve, reject) => {
    const socket = io(URL, { transports, reconnection: false, forceNew: true });
    socket.once("connect_error", reject);
    socket.once("registered", () => resolve(socket));
    socket.once("connect", () => socket.emit("register", { uid, type }));
  });
}

const once = (socket, event) => new Promise((resolve) => socket.once(event, resolve));

for (const transports of [["polling"], ["websocket"]]) {
  test(`Socket.IO over ${transports[0]} through the balancer`, { skip: !URL }, async () => {
    const uid = `balancer-${transports[0]}-${process.pid}`;
    const web = await registered(transports, uid, 0);
    const app = await registered(transports, uid, 1);
    try {
      // Several round trips: with polling, each is its own HTTP request.
      for (let n = 0; n < 5; n += 1) {
        const got = once(app, "message");
        web.emit("message", { n });
        assert.deepEqual(await got, { n });
        const back = once(web, "message");
        app.emit("message", { back: n });
        assert.deepEqual(await back, { back: n });
      }
      const bye = once(app, "byebye");
      web.close();
      await bye;
    } finally {
      web.close();
      app.close();
    }
  });
}
