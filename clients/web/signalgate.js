/**
 * signalgate.js — a dependency-free browser client for the signalgate
 * JSON WebSocket door (`/ws`). Vendor this one file.
 *
 * - connects, registers, and relays the seed's events with typed callbacks;
 * - every request carries an id and returns a Promise that resolves on the
 *   server's `ack` or rejects with a {@link SignalGateError};
 * - follows a draining node's `reconnect` (a rolling restart): it waits the
 *   given `after_ms`, reconnects and resumes, so no call drops;
 * - reconnects with exponential backoff; after a drop it **resumes** the
 *   session (nothing lost, nothing twice: missed events are replayed and
 *   unacknowledged requests re-sent), asks again while the answer is
 *   `UNAVAILABLE`, and registers afresh if the resume is refused
 *   (`RESUME_FAILED`);
 * - keeps the session's ICE servers (STUN, and TURN with credentials the
 *   gateway minted) in {@link SignalGate#iceServers}, ready for
 *   `new RTCPeerConnection({iceServers: gate.iceServers})`, and renews them
 *   (`iceservers`) before they expire;
 * - negotiates a peer connection by "perfect negotiation", the side that
 *   yields in a glare decided by the server ({@link SignalGate#negotiate});
 * - reports how each call turns out (`callreport`: connected and by which
 *   path, failed and why, how long it lasted) from the `RTCPeerConnection`
 *   itself ({@link SignalGate#watchCall}).
 *
 * @example
 *   import { SignalGate } from "./signalgate.js";
 *   const gate = new SignalGate("wss://signal.example.com/ws", { token });
 *   gate.on("syncfrom", () => startCall());
 *   gate.on("message", (data) => handleSignal(data));
 *   await gate.connect();
 *   await gate.register("alice", "app");
 *   await gate.message({ type: "offer", sdp });
 *
 * The protocol is specified in docs/PROTOCOL.md.
 * @module signalgate
 */

/** Events the server may send, for {@link SignalGate#on}. */
export const SERVER_EVENTS = Object.freeze([
  "welcome", "registered", "syncfrom", "syncto", "message", "export", "exception",
  "transfile", "ctrlSendSpeed", "ipaddr", "byebye", "peer_away", "peer_back", "resumed", "error",
  "iceservers", "notice", "reconnect",
]);

/** Renew ICE credentials once this share of their lifetime has passed. */
const ICE_RENEW_AT = 0.8;

/** Close codes after which reconnecting would not help. */
const FINAL_CLOSE_CODES = new Set([
  4001, // REPLACED: another session took this uid and role
  4005, // KICKED: an operator closed the session (it cannot be resumed)
  1008, // policy violation
]);

/**
 * An error answered by the server (`code` is one of docs/PROTOCOL.md's
 * codes, e.g. `NO_PEER`) or raised by the client (`TIMEOUT`, `CLOSED`).
 */
export class SignalGateError extends Error {
  /**
   * @param {string} code machine-readable code
   * @param {string} message explanation
   * @param {number} [id] the request id it answers
   */
  constructor(code, message, id) {
    super(`${code}: ${message}`);
    this.name = "SignalGateError";
    /** @type {string} */
    this.code = code;
    /** @type {number|undefined} */
    this.id = id;
  }
}

/**
 * @typedef {object} SignalGateOptions
 * @property {string} [token] JWT, sent as `?token=` when the gateway requires one
 * @property {boolean} [reconnect=true] reconnect (and resume) after a drop
 * @property {number} [initialDelayMs=250] first reconnect delay
 * @property {number} [maxDelayMs=10000] longest reconnect delay
 * @property {number} [requestTimeoutMs=15000] how long a request waits for its ack
 * @property {typeof WebSocket} [WebSocket] a WebSocket implementation (defaults to the global one)
 */

/**
 * A connection to signalgate that survives network changes.
 */
export class SignalGate {
  /**
   * @param {string} url the `/ws` URL, e.g. `wss://host/ws`
   * @param {SignalGateOptions} [options]
   */
  constructor(url, options = {}) {
    this.url = url;
    this.options = {
      reconnect: true,
      initialDelayMs: 250,
      maxDelayMs: 10_000,
      requestTimeoutMs: 15_000,
      ...options,
    };
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (!this._WebSocket) throw new SignalGateError("NO_WEBSOCKET", "no WebSocket implementation available");
    /** @type {Map<string, Set<Function>>} */
    this._handlers = new Map();
    /** User requests awaiting their ack, re-sent after a resume.
     * @type {Map<number, {frame: object, resolve: Function, reject: Function, timer: any}>} */
    this._pending = new Map();
    /** The client's own requests for one connection (resume, re-register).
     * @type {Map<number, {resolve: Function, reject: Function, timer: any}>} */
    this._controls = new Map();
    this._nextId = 1;
    this._socket = null;
    this._closedByUser = false;
    this._attempt = 0;
    /** The registration to restore after a reconnect. */
    this._registration = null;
    /** Resume state of the registered session. */
    this._session = { id: null, token: null, lastSeq: 0 };
    this._state = "idle";
    this._welcome = null;
    /** The latest ICE server list and when its credentials expire. */
    this._ice = { servers: [], expireAt: null, receivedAt: 0 };
    this._iceTimer = null;
    /** Whether this side yields in a glare (`registered`/`resumed`'s `polite`). */
    this._polite = undefined;
  }

  /**
   * The session's ICE servers (`RTCIceServer[]`), as the gateway last sent
   * them: empty until registered, or when the gateway has none configured.
   * Pass them to `new RTCPeerConnection({iceServers: gate.iceServers})`.
   * @returns {RTCIceServer[]}
   */
  get iceServers() {
    return this._ice.servers;
  }

  /** When the TURN credentials in {@link SignalGate#iceServers} expire (unix seconds), or null. */
  get iceServersExpireAt() {
    return this._ice.expireAt;
  }

  /**
   * Asks the gateway for a fresh ICE server list (new TURN credentials).
   * The SDK does this by itself before expiry; the `iceservers` event
   * reports every new list.
   * @returns {Promise<RTCIceServer[]>}
   */
  async renewIceServers() {
    await this.request("iceservers");
    return this._ice.servers;
  }

  /** Current state: `idle`, `connecting`, `open`, `reconnecting`, `resuming` or `closed`. */
  get state() {
    return this._state;
  }

  /** The session id (stable across resumes), once known. */
  get sessionId() {
    return this._session.id;
  }

  /**
   * Subscribes to a server event (see {@link SERVER_EVENTS}) or to `state`.
   * The handler gets the event's data.
   * @param {string} event
   * @param {(data: any, envelope: object) => void} handler
   * @returns {() => void} unsubscribe
   */
  on(event, handler) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(handler);
    return () => this._handlers.get(event)?.delete(handler);
  }

  /**
   * Opens the connection; resolves with the `welcome` data.
   * @returns {Promise<{message: string, id: string, resumeToken?: string}>}
   */
  connect() {
    this._closedByUser = false;
    return new Promise((resolve, reject) => {
      const off = this.on("welcome", (data) => {
        off();
        offState();
        resolve(data);
      });
      const offState = this.on("state", (state) => {
        if (state === "closed") {
          off();
          offState();
          reject(new SignalGateError("CLOSED", "the connection closed before welcome"));
        }
      });
      this._open();
    });
  }

  /**
   * Registers as `role` of `uid`; remembered, and restored after reconnects.
   * @param {string} uid
   * @param {"web"|"app"} role
   * @returns {Promise<{uid: string, role: string, type: number, peerPresent: boolean, polite: boolean}>}
   *   `polite`: whether this side yields when both offer at once (web: true; docs/PROTOCOL.md, *Negotiation*)
   */
  async register(uid, role) {
    const registered = new Promise((resolve) => {
      const off = this.on("registered", (data) => {
        off();
        resolve(data);
      });
    });
    await this.request("register", { uid, type: role });
    this._registration = { uid, role };
    this._session.token = this._welcome?.resumeToken ?? null;
    this._session.id = this._welcome?.id ?? null;
    return registered;
  }

  /**
   * Sends any request and waits for its `ack`.
   * @param {string} event
   * @param {any} [data]
   * @returns {Promise<void>}
   */
  request(event, data) {
    const id = this._nextId++;
    const frame = data === undefined ? { event, id } : { event, data, id };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new SignalGateError("TIMEOUT", `no answer to ${event} within ${this.options.requestTimeoutMs} ms`, id));
      }, this.options.requestTimeoutMs);
      this._pending.set(id, { frame, resolve, reject, timer });
      // While reconnecting the frame waits; it is sent on resume.
      if (this._state === "open") this._write(frame);
    });
  }

  /** Relays `syncto` (app → web). @param {any} data */
  syncto(data) { return this.request("syncto", data); }
  /** Relays a signaling `message` (offer, answer, candidate, anything). @param {any} data */
  message(data) { return this.request("message", data); }
  /** Relays `export`. @param {any} data */
  export(data) { return this.request("export", data); }
  /** Relays `exception`. @param {any} data */
  exception(data) { return this.request("exception", data); }
  /** Announces a file. @param {{size: number, name: string}} offer */
  transfile(offer) { return this.request("transfile", { size: offer.size, name: offer.name }); }
  /** Reports bytes received, for the sender's pacing. @param {number} bytes */
  ctrlSendSpeed(bytes) { return this.request("ctrlSendSpeed", bytes); }
  /** Asks for the server's addresses (they arrive as an `ipaddr` event). */
  ipaddr() { return this.request("ipaddr"); }
  /**
   * Negotiates `pc` with the peer by the W3C "perfect negotiation" pattern
   * over `message` (docs/PROTOCOL.md, *Negotiation*): every
   * `negotiationneeded` makes an offer, every ICE candidate is sent, and
   * when both sides offer at once the polite side (web, as `registered`
   * says) rolls its offer back and answers, while the impolite side (app)
   * ignores the colliding offer. Its messages are `{negotiation:
   * {description}}` and `{negotiation: {candidate}}`; other messages pass
   * by untouched. Listeners are added, none of `pc`'s handlers replaced.
   * @param {RTCPeerConnection} pc
   * @param {{polite?: boolean}} [options] `polite`: defaults to what
   *   `registered`/`resumed` said, else to the role (web is polite)
   * @returns {{stop: () => void, collisions: number}} `collisions`: offers
   *   that crossed (counted on both sides); `stop()` removes the listeners
   */
  negotiate(pc, options = {}) {
    const polite = options.polite ?? this._polite ?? this._registration?.role === "web";
    const handle = { collisions: 0, stop: () => {} };
    let makingOffer = false;
    let ignoreOffer = false;
    let settingRemoteAnswer = false;
    const send = (negotiation) => this.message({ negotiation }).catch(() => {});
    const onNegotiationNeeded = async () => {
      try {
        makingOffer = true;
        await pc.setLocalDescription();
        await send({ description: pc.localDescription.toJSON() });
      } catch (error) {
        console.error("signalgate: making an offer failed", error);
      } finally {
        makingOffer = false;
      }
    };
    const onCandidate = ({ candidate }) => {
      if (candidate) send({ candidate: candidate.toJSON() });
    };
    const off = this.on("message", async (data) => {
      const negotiation = data?.negotiation;
      if (!negotiation) return;
      const { description, candidate } = negotiation;
      try {
        if (description) {
          const readyForOffer = !makingOffer && (pc.signalingState === "stable" || settingRemoteAnswer);
          const collision = description.type === "offer" && !readyForOffer;
          if (collision) handle.collisions += 1;
          ignoreOffer = !polite && collision;
          if (ignoreOffer) return;
          settingRemoteAnswer = description.type === "answer";
          await pc.setRemoteDescription(description); // rolls a polite side's own offer back
          settingRemoteAnswer = false;
          if (description.type === "offer") {
            await pc.setLocalDescription();
            await send({ description: pc.localDescription.toJSON() });
          }
        } else if (candidate) {
          try {
            await pc.addIceCandidate(candidate);
          } catch (error) {
            // Candidates of an offer this side ignored do not fit.
            if (!ignoreOffer) throw error;
          }
        }
      } catch (error) {
        console.error("signalgate: negotiation failed", error);
      }
    });
    pc.addEventListener("negotiationneeded", onNegotiationNeeded);
    pc.addEventListener("icecandidate", onCandidate);
    handle.stop = () => {
      off();
      pc.removeEventListener("negotiationneeded", onNegotiationNeeded);
      pc.removeEventListener("icecandidate", onCandidate);
    };
    return handle;
  }

  /**
   * Says how a call attempt ended (`callreport`, docs/PROTOCOL.md *Call
   * outcomes*); {@link SignalGate#watchCall} sends these by itself.
   * @param {{call: string, result: "connected"|"failed"|"closed", path?: string,
   *   setupMs?: number, durationMs?: number, reason?: string}} report
   */
  callReport(report) { return this.request("callreport", report); }

  /**
   * Reports how the call on `pc` turns out, by itself, from the peer
   * connection: call it when the call's first offer or answer is made, with
   * the call id both peers use (the offerer picks it and sends it with its
   * offer). It reports `connected` once `pc` connects, with the selected
   * candidate pair's local candidate type as `path` (from `getStats()`)
   * and the setup time; `failed` when `pc` fails or has not connected
   * within `failureTimeoutMs`; and, through the returned `end()` (call it
   * when the call hangs up, or the peer leaves), `closed` with the call's
   * duration — or `failed` ("ended before connecting") if it never
   * connected. Reports never throw into the call: one that is refused or
   * lost is dropped.
   * @param {RTCPeerConnection} pc
   * @param {{call: string, failureTimeoutMs?: number}} options
   * @returns {{outcome: Promise<object|null>, end: () => Promise<void>}}
   *   `outcome`: the report sent for the call's outcome (null if none was)
   */
  watchCall(pc, { call, failureTimeoutMs = 30_000 }) {
    const startedAt = performance.now();
    let connectedAt = null;
    let decided = false;
    let ended = false;
    let settle;
    const outcome = new Promise((resolve) => { settle = resolve; });
    const send = (report) => this.callReport({ call, ...report }).catch(() => {});
    const decide = async (report) => {
      if (decided) return;
      decided = true;
      clearTimeout(timer);
      pc.removeEventListener("connectionstatechange", onChange);
      settle(report);
      if (report) await send(report);
    };
    const onChange = () => {
      const setupMs = Math.round(performance.now() - startedAt);
      if (pc.connectionState === "connected" && connectedAt === null) {
        connectedAt = performance.now();
        // A path the stats cannot name is not guessed: no report then.
        selectedPair(pc).then((pair) => decide(pair ? { result: "connected", path: pair.local, setupMs } : null));
      } else if (pc.connectionState === "failed") {
        decide({ result: "failed", setupMs, reason: "the peer connection failed (ICE)" });
      }
    };
    pc.addEventListener("connectionstatechange", onChange);
    const timer = setTimeout(() => decide({
      result: "failed",
      setupMs: Math.round(performance.now() - startedAt),
      reason: `not connected within ${failureTimeoutMs} ms`,
    }), failureTimeoutMs);
    return {
      outcome,
      end: async () => {
        if (ended) return;
        ended = true;
        if (connectedAt === null) {
          await decide({
            result: "failed",
            setupMs: Math.round(performance.now() - startedAt),
            reason: "ended before connecting",
          });
          return;
        }
        await outcome;
        await send({ result: "closed", durationMs: Math.round(performance.now() - connectedAt) });
      },
    };
  }

  /** Ends the session cleanly (the peer gets `byebye`) and stops reconnecting. */
  close() {
    this._closedByUser = true;
    clearTimeout(this._retryTimer);
    clearTimeout(this._iceTimer);
    this._failPending(new SignalGateError("CLOSED", "the client closed the connection"));
    this._socket?.close(1000, "bye");
    this._setState("closed");
  }

  // --- internals -------------------------------------------------------

  _open() {
    this._setState(this._attempt === 0 ? "connecting" : "reconnecting");
    const url = this.options.token
      ? `${this.url}${this.url.includes("?") ? "&" : "?"}token=${encodeURIComponent(this.options.token)}`
      : this.url;
    let socket;
    try {
      socket = new this._WebSocket(url);
    } catch (error) {
      this._scheduleReconnect();
      return;
    }
    this._socket = socket;
    socket.onmessage = (message) => this._receive(message.data);
    socket.onclose = (event) => this._closed(socket, event.code);
    socket.onerror = () => {}; // onclose follows
  }

  _write(frame) {
    if (this._socket && this._socket.readyState === 1) this._socket.send(JSON.stringify(frame));
  }

  _receive(text) {
    let envelope;
    try {
      envelope = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof envelope.seq === "number" && envelope.seq > this._session.lastSeq) {
      this._session.lastSeq = envelope.seq;
    }
    const { event, data, id } = envelope;
    switch (event) {
      case "welcome":
        this._welcome = data;
        this._attempt = 0;
        if (this._registration) {
          // Requests wait until the session is back.
          this._setState("resuming");
          this._resumeOrRegister();
        } else {
          this._setState("open");
          this._flushPending();
        }
        break;
      case "resumed":
        this._session.token = data.resumeToken;
        this._session.id = data.id;
        this._takePolite(data);
        this._takeIceServers(data);
        break;
      case "registered":
        this._takePolite(data);
        this._takeIceServers(data);
        break;
      case "iceservers":
        this._takeIceServers(data);
        break;
      case "reconnect":
        // The node drains (a rolling restart): after the close that
        // follows, come back after `after_ms` (through the load balancer,
        // to another node) and resume with this token.
        this._session.token = data.resume_token;
        this._drainDelayMs = Number(data.after_ms) || 0;
        break;
      case "ack":
        this._settle(id, null);
        return;
      case "error":
        if (id !== undefined && (this._pending.has(id) || this._controls.has(id))) {
          this._settle(id, new SignalGateError(data.code, data.message, id));
          return;
        }
        break;
      default:
        break;
    }
    this._emit(event, data, envelope);
  }

  /** After a reconnect: take the old session back, or register afresh. */
  async _resumeOrRegister() {
    const { uid, role } = this._registration;
    const fresh = this._welcome;
    const socket = this._socket;
    if (this._session.token) {
      try {
        await this._askWhileUnavailable(socket, "resume", () => ({
          token: this._session.token,
          last_seq: this._session.lastSeq,
        }));
        // Missed events were replayed before the ack. Re-send every request
        // without an ack; the server recognises those it already applied.
        this._setState("open");
        this._flushPending();
        return;
      } catch (error) {
        if (!(error instanceof SignalGateError) || error.code !== "RESUME_FAILED") return;
      }
    }
    // The session is gone: start a new one with the same registration.
    this._session = { id: fresh.id, token: fresh.resumeToken ?? null, lastSeq: 0 };
    try {
      await this._askWhileUnavailable(socket, "register", () => ({ uid, type: role }));
      this._setState("open");
      this._flushPending();
    } catch (error) {
      this._emit("error", { code: error.code, message: error.message }, {});
    }
  }

  /**
   * Sends a control request on `socket`; while it is answered `UNAVAILABLE`
   * (on several nodes: the shared registry or the session's node answered
   * too late, e.g. when many clients come back at once; nothing was
   * applied) asks again after the reconnect backoff. A resumed session
   * stays held for its resume window meanwhile (the server answers
   * `RESUME_FAILED` once it has passed). Gives up, rejecting `CLOSED`, if
   * the connection changed or the user closed.
   */
  async _askWhileUnavailable(socket, event, data) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await this._control(event, data());
      } catch (error) {
        if (!(error instanceof SignalGateError) || error.code !== "UNAVAILABLE") throw error;
      }
      const base = Math.min(this.options.maxDelayMs, this.options.initialDelayMs * 2 ** attempt);
      await new Promise((resolve) => setTimeout(resolve, base / 2 + Math.random() * (base / 2)));
      if (this._socket !== socket || this._closedByUser) {
        throw new SignalGateError("CLOSED", "the connection was lost");
      }
    }
  }

  /** Sends a request that belongs to this connection only (not re-sent). */
  _control(event, data) {
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._controls.delete(id);
        reject(new SignalGateError("TIMEOUT", `no answer to ${event}`, id));
      }, this.options.requestTimeoutMs);
      this._controls.set(id, { resolve, reject, timer });
      this._write({ event, data, id });
    });
  }

  _flushPending() {
    for (const pending of this._pending.values()) this._write(pending.frame);
  }

  _settle(id, error) {
    const pending = this._pending.get(id) ?? this._controls.get(id);
    if (!pending) return;
    this._pending.delete(id);
    this._controls.delete(id);
    clearTimeout(pending.timer);
    if (error) pending.reject(error);
    else pending.resolve();
  }

  _closed(socket, code) {
    if (socket !== this._socket) return;
    this._socket = null;
    // Requests that only made sense on this connection fail now.
    for (const id of [...this._controls.keys()]) {
      this._settle(id, new SignalGateError("CLOSED", "the connection was lost", id));
    }
    if (this._closedByUser) return;
    if (!this.options.reconnect || FINAL_CLOSE_CODES.has(code)) {
      this._failPending(new SignalGateError("CLOSED", `the connection closed (${code})`));
      this._setState("closed");
      return;
    }
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    if (this._closedByUser) return;
    this._setState("reconnecting");
    const base = Math.min(this.options.maxDelayMs, this.options.initialDelayMs * 2 ** this._attempt);
    let delay = base / 2 + Math.random() * (base / 2);
    if (this._drainDelayMs !== undefined) {
      // Told `reconnect`: the server spread the wait already.
      delay = this._drainDelayMs;
      this._drainDelayMs = undefined;
    }
    this._attempt += 1;
    this._retryTimer = setTimeout(() => this._open(), delay);
  }

  /** Keeps whether this side is polite in a glare, as the server said it. */
  _takePolite(data) {
    if (typeof data?.polite === "boolean") this._polite = data.polite;
  }

  /** Keeps a list from `registered`, `resumed` or `iceservers`; schedules its renewal. */
  _takeIceServers(data) {
    if (!Array.isArray(data?.iceServers)) return;
    const expireAt = typeof data.iceServersExpireAt === "number" ? data.iceServersExpireAt : null;
    this._ice = { servers: data.iceServers, expireAt, receivedAt: Date.now() };
    clearTimeout(this._iceTimer);
    if (expireAt === null) return;
    const lifetimeMs = Math.max(0, expireAt * 1000 - Date.now());
    // setTimeout holds at most 2^31-1 ms.
    const delay = Math.min(lifetimeMs * ICE_RENEW_AT, 2 ** 31 - 1);
    this._iceTimer = setTimeout(() => {
      // Failures (offline, closed) are retried by the next list a resume brings.
      this.renewIceServers().catch(() => {});
    }, delay);
  }

  _failPending(error) {
    for (const id of [...this._pending.keys(), ...this._controls.keys()]) this._settle(id, error);
  }

  _setState(state) {
    if (this._state === state) return;
    this._state = state;
    this._emit("state", state, {});
  }

  _emit(event, data, envelope) {
    for (const handler of this._handlers.get(event) ?? []) {
      try {
        handler(data, envelope);
      } catch (error) {
        console.error(`signalgate: a ${event} handler threw`, error);
      }
    }
  }
}

/**
 * The candidate types of the selected candidate pair on `pc` (`host`,
 * `srflx`, `prflx` or `relay` at each end), from `getStats()`, or null when
 * the stats do not name them yet (asked a few times, 100 ms apart).
 * @param {RTCPeerConnection} pc
 * @returns {Promise<{local: string, remote: string}|null>}
 */
export async function selectedPair(pc) {
  const known = ["host", "srflx", "prflx", "relay"];
  for (let attempt = 0; attempt < 5; attempt += 1) {
    const stats = await pc.getStats();
    let pairId = null;
    stats.forEach((report) => {
      if (report.type === "transport" && report.selectedCandidatePairId) pairId = report.selectedCandidatePairId;
    });
    const pair = pairId ? stats.get(pairId)
      : [...stats.values()].find((r) => r.type === "candidate-pair" && r.nominated && r.state === "succeeded");
    const local = pair && stats.get(pair.localCandidateId)?.candidateType;
    const remote = pair && stats.get(pair.remoteCandidateId)?.candidateType;
    if (known.includes(local) && known.includes(remote)) return { local, remote };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return null;
}
