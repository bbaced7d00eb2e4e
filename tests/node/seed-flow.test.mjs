// The seed's flow, replayed with the real npm socket.io-client (4.x and
// 2.x) against the seed reference server and against signalgate: both must
// show the same observable events; signalgate may add its own
// (`registered`, `ack`, `error`), which seed clients ignore.
//
//   SEED_URL=http://127.0.0.1:P1 SIGNALGATE_URL=http://127.0.0.1:P2 node --test
import { test } from "node:test";
import assert from "node:assert/strict";
import { io as ioV4 } from "socket.io-client";
import ioV2 from "socket.io-client-v2";

const SEED_URL = process.env.SEED_URL;
const SIGNALGATE_URL = process.env.SIGNALGATE_URL;
const EXTRA_EVENTS = new Set(["registered", "ack", "error"]);
const STEP_TIMEOUT_MS = 5000;

const clients = {
  v4: (url, transports) => ioV4(url, { transports, forceNew: true, reconnection: false }),
  v2: (url, transports) => ioV2(url, { transports, forceNew: true, reconnection: false }),
};

/** A connected client that records every event it receives. */
function recorder(socket, label) {
  const log = [];
  const waiters = [];
  socket.onAny
    ? socket.onAny((event, ...args) => record(event, args))
    : patchV2(socket, (event, args) => record(event, args));
  function record(event, args) {
    log.push({ event, args });
    for (const waiter of [...waiters]) waiter();
  }
  /** Resolves with the args of the next `event` at or after `from`. */
  function next(event, from = 0) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${label}: no ${event} within ${STEP_TIMEOUT_MS} ms; got ${JSON.stringify(log)}`)),
        STEP_TIMEOUT_MS,
      );
      const check = () => {
        const hit = log.slice(from).find((entry) => entry.event === event);
        if (!hit) return;
        clearTimeout(timer);
        waiters.splice(waiters.indexOf(check), 1);
        resolve(hit.args);
      };
      waiters.push(check);
      check();
    });
  }
  return { socket, log, next, mark: () => log.length };
}

/** socket.io-client 2.x has no onAny: wrap its packet handler. */
function patchV2(socket, onEvent) {
  const onevent = socket.onevent;
  socket.onevent = function (packet) {
    const [event, ...args] = packet.data || [];
    onEvent(event, args);
    return onevent.call(this, packet);
  };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The seed's flow; returns what each side observed. */
async function seedFlow(url, generation, transports) {
  const uid = `flow-${generation}-${transports.join("+")}-${Math.random().toString(36).slice(2)}`;
  const web = recorder(clients[generation](url, transports), "web");
  await web.next("welcome");
  web.socket.emit("register", { uid, type: 0 });
  await sleep(150); // the seed confirms nothing: give the register time to land
  const app = recorder(clients[generation](url, transports), "app");
  await app.next("welcome");
  app.socket.emit("register", { uid, type: 1 });
  await app.next("syncfrom");

  const sync = { contacts: [{ name: "Zoë", tel: "+49 30 1234" }], version: 3 };
  app.socket.emit("syncto", sync);
  assert.deepEqual(await web.next("syncto"), [sync]);

  for (const [sender, receiver] of [[web, app], [app, web]]) {
    const from = receiver.mark();
    sender.socket.emit("transfile", { size: 1048576, name: "photo.jpg" });
    assert.deepEqual(await receiver.next("transfile", from), [{ size: 1048576, name: "photo.jpg" }]);
    sender.socket.emit("ctrlSendSpeed", 65536);
    assert.deepEqual(await receiver.next("ctrlSendSpeed", from), [65536]);
    const offer = { type: "offer", sdp: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n" };
    sender.socket.emit("message", offer);
    assert.deepEqual(await receiver.next("message", from), [offer]);
  }

  app.socket.disconnect();
  assert.deepEqual(await web.next("byebye"), []);
  web.socket.disconnect();
  return { web: observed(web.log), app: observed(app.log) };
}

/** Event names and arguments, with the session ids of `welcome` elided. */
function observed(log) {
  return log.map(({ event, args }) =>
    event === "welcome" ? { event, args: [{ ...args[0], id: "<id>" }] } : { event, args },
  );
}

const withoutExtras = (log) => log.filter(({ event }) => !EXTRA_EVENTS.has(event));

for (const generation of ["v4", "v2"]) {
  test(`socket.io-client ${generation}: signalgate shows what the seed shows`, async () => {
    assert.ok(SEED_URL && SIGNALGATE_URL, "SEED_URL and SIGNALGATE_URL must be set");
    const seed = await seedFlow(SEED_URL, generation, ["websocket"]);
    for (const transports of [["websocket"], ["polling"]]) {
      const ours = await seedFlow(SIGNALGATE_URL, generation, transports);
      for (const side of ["web", "app"]) {
        assert.deepEqual(withoutExtras(ours[side]), seed[side], `${side} over ${transports}`);
        // The extras are the documented ones: `registered` once per side.
        const extras = ours[side].filter(({ event }) => EXTRA_EVENTS.has(event));
        assert.deepEqual(extras.map(({ event }) => event), ["registered"]);
        // With ICE servers configured (scripts/checks/socketio.sh), the
        // Socket.IO door's `registered` keeps its seed-era shape.
        assert.deepEqual(Object.keys(extras[0].args[0]).sort(), ["peerPresent", "role", "type", "uid"]);
      }
    }
  });
}

test("acknowledgement callbacks receive the ack or the error", async () => {
  const socket = recorder(clients.v4(SIGNALGATE_URL, ["websocket"]), "acks").socket;
  const ack = (event, data) =>
    new Promise((resolve) => (data === undefined ? socket.emit(event, resolve) : socket.emit(event, data, resolve)));
  await new Promise((resolve) => socket.on("connect", resolve));
  assert.deepEqual(await ack("message", { early: true }), {
    ok: false,
    error: { code: "NOT_REGISTERED", message: "register before sending relayed events" },
  });
  assert.deepEqual(await ack("register", { uid: "acks", type: "app" }), { ok: true });
  assert.equal((await ack("message", "alone")).error.code, "NO_PEER");
  socket.disconnect();
});

test("a Socket.IO client may ask for the ICE servers with iceservers", async () => {
  const client = recorder(clients.v4(SIGNALGATE_URL, ["websocket"]), "ice");
  const socket = client.socket;
  const ack = (event, data) =>
    new Promise((resolve) => (data === undefined ? socket.emit(event, resolve) : socket.emit(event, data, resolve)));
  await client.next("welcome");
  assert.equal((await ack("iceservers")).error.code, "NOT_REGISTERED");
  assert.deepEqual(await ack("register", { uid: "sio-ice", type: 1 }), { ok: true });
  const from = client.mark();
  assert.deepEqual(await ack("iceservers"), { ok: true });
  const [list] = await client.next("iceservers", from);
  assert.deepEqual(list.iceServers[0].urls, ["turn:127.0.0.1:3478?transport=udp"]);
  assert.equal(list.iceServers[0].username, `${list.iceServersExpireAt}:sio-ice`);
  assert.equal(typeof list.iceServers[0].credential, "string");
  socket.disconnect();
});
