// The signalgate demo: two devices pair under one code, open a WebRTC data
// channel through signalgate, and send files paced by the receiver, with
// the seed's flow (transfile announces, ctrlSendSpeed reports progress).
import { SignalGate, selectedPair } from "/signalgate.js";

const CHUNK_BYTES = 16 * 1024;
const WINDOW_BYTES = 256 * 1024; // sent but not yet confirmed by the receiver
const REPORT_EVERY_BYTES = 64 * 1024;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

/** State the page shows, also read by the browser tests. */
const demo = {
  gateway: "connecting", peer: "waiting", channel: "closed",
  sendPercent: 0, receivePercent: 0, sentHash: null, receivedHash: null, receivedName: null,
  // ICE: how many servers the gateway handed out, whether only relayed
  // candidates are allowed (`?relay=1`), the local candidate types
  // gathered, and the types of the pair the call uses.
  iceServers: 0, relayOnly: params.get("relay") === "1", gathered: [], selectedPair: null,
  // The call's outcome as the page reported it (`callreport`), and whether
  // its end was reported.
  callReport: null, callEnded: false,
  log: [],
};
window.signalgateDemo = demo;

function log(text, who = "system") {
  demo.log.push(`${who}: ${text}`);
  const item = document.createElement("li");
  item.className = who;
  item.textContent = who === "system" ? text : `${who === "me" ? "You" : "Peer"}: ${text}`;
  $("log").append(item);
  $("log").scrollTop = $("log").scrollHeight;
}

function setStatus(which, text, level) {
  demo[which] = text;
  $(`st-${which}`).textContent = text;
  $(`dot-${which}`).className = `dot ${level}`;
}

function formatRate(bytes, startedAt) {
  const seconds = Math.max((performance.now() - startedAt) / 1000, 0.001);
  const perSecond = bytes / seconds;
  if (perSecond > 1024 * 1024) return `${(perSecond / 1024 / 1024).toFixed(1)} MB/s`;
  return `${(perSecond / 1024).toFixed(0)} KB/s`;
}

async function sha256(buffer) {
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const role = params.get("role");
const uid = params.get("uid");
if (role !== "web" && role !== "app" || !uid) {
  $("uid").value = uid ?? Math.random().toString(36).slice(2, 8);
  $("pair-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams({ role: event.submitter.value, uid: $("uid").value });
    location.search = next.toString();
  });
} else {
  $("start").hidden = true;
  $("panel").hidden = false;
  $("role-badge").textContent = role === "web" ? "browser · web" : "device · app";
  $("code").textContent = uid;
  run(role, uid).catch((error) => log(`error: ${error.message}`));
}

async function run(role, uid) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const gate = new SignalGate(`${scheme}://${location.host}/ws`, { token: params.get("token") ?? undefined });
  let pc = null;
  let negotiation = null;
  let channel = null;
  let sending = null;
  let receiving = null;
  let earlyChunks = [];
  // The current call's reporter (SignalGate#watchCall); `?callTimeout=ms`
  // sets how long a call may take to connect before it is reported failed.
  let watcher = null;
  const callTimeoutMs = Number(params.get("callTimeout")) || 30_000;

  gate.on("state", (state) => {
    const level = state === "open" ? "ok" : state === "closed" ? "bad" : "warn";
    setStatus("gateway", state, level);
  });
  gate.on("registered", (data) => {
    setStatus("peer", data.peerPresent ? "present" : "waiting", data.peerPresent ? "ok" : "warn");
  });
  gate.on("syncfrom", () => {
    setStatus("peer", "present", "ok");
    log("peer joined");
    if (role === "app") startCall();
  });
  gate.on("peer_away", () => { setStatus("peer", "away (reconnecting)", "warn"); log("peer's network dropped; holding the pairing"); });
  gate.on("peer_back", () => { setStatus("peer", "present", "ok"); log("peer is back"); });
  gate.on("byebye", () => { setStatus("peer", "left", "bad"); log("peer left"); closeCall(); });
  gate.on("message", (data) => onSignal(data).catch((error) => log(`signaling error: ${error.message}`)));
  gate.on("transfile", (offer) => startReceiving(offer));
  gate.on("ctrlSendSpeed", (bytes) => onProgressReport(bytes));
  gate.on("error", (error) => log(`gateway error ${error.code}: ${error.message}`));

  await gate.connect();
  await gate.register(uid, role);
  log(`registered as ${role}`);

  // --- WebRTC ----------------------------------------------------------
  // Offers, answers and candidates go by the SDK's perfect negotiation
  // (gate.negotiate): whichever side changes the connection offers, and if
  // both do at once the web side yields, as `registered` says.
  function newPeerConnection() {
    // The gateway's STUN/TURN servers; `?relay=1` allows only TURN-relayed
    // paths, to see a call go through the relay.
    demo.iceServers = gate.iceServers.length;
    pc = new RTCPeerConnection({
      iceServers: gate.iceServers,
      iceTransportPolicy: demo.relayOnly ? "relay" : "all",
    });
    negotiation = gate.negotiate(pc);
    pc.addEventListener("icecandidate", (event) => {
      if (event.candidate) demo.gathered.push(event.candidate.type);
    });
    pc.ondatachannel = (event) => setupChannel(event.channel);
    pc.onconnectionstatechange = () => {
      if (pc?.connectionState === "failed") setStatus("channel", "failed", "bad");
    };
  }

  // Reports the call by itself from the peer connection; both pages use the
  // id the offerer picked.
  function watch(call) {
    watcher = gate.watchCall(pc, { call, failureTimeoutMs: callTimeoutMs });
    demo.callReport = null;
    demo.callEnded = false;
    watcher.outcome.then((report) => {
      demo.callReport = report;
      if (report?.result === "failed") log(`call failed: ${report.reason}`);
    });
  }

  function closeCall() {
    if (watcher) {
      watcher.end().then(() => { demo.callEnded = true; });
      watcher = null;
    }
    negotiation?.stop();
    channel?.close();
    pc?.close();
    negotiation = null;
    channel = null;
    pc = null;
    setStatus("channel", "closed", "");
    $("send-file").disabled = true;
  }

  // The app starts a call: it names it (`{type: "call", call}`, so both
  // pages report it under one id), then its data channel makes the first
  // offer. "negotiating" is shown before any await: the channel can open
  // while the answer is still on its way, and its "open" must not be
  // overwritten afterwards.
  async function startCall() {
    closeCall();
    const call = crypto.randomUUID();
    await gate.message({ type: "call", call });
    newPeerConnection();
    setStatus("channel", "negotiating", "warn");
    watch(call);
    setupChannel(pc.createDataChannel("files", { ordered: true }));
  }

  async function onSignal(data) {
    if (data?.negotiation) return; // gate.negotiate's own
    switch (data?.type) {
      case "call":
        // The peer starts a call (only the app is sent `syncfrom` when the
        // pair forms): a new connection to negotiate on.
        closeCall();
        newPeerConnection();
        setStatus("peer", "present", "ok");
        setStatus("channel", "negotiating", "warn");
        watch(typeof data.call === "string" ? data.call : crypto.randomUUID());
        break;
      case "chat":
        log(data.text, "peer");
        break;
      default:
        log(`message: ${JSON.stringify(data)}`, "peer");
    }
  }

  // Which path the call took: the candidate types of the selected pair
  // (`relay` = through the TURN server), from getStats().
  async function reportPath() {
    const pair = pc && await selectedPair(pc);
    if (!pair) return;
    demo.selectedPair = pair;
    const via = demo.selectedPair.local === "relay" || demo.selectedPair.remote === "relay" ? "through the TURN relay" : "directly";
    log(`connected ${via} (${demo.selectedPair.local} ↔ ${demo.selectedPair.remote})`);
  }

  function setupChannel(dataChannel) {
    channel = dataChannel;
    channel.binaryType = "arraybuffer";
    channel.onopen = () => {
      setStatus("channel", "open", "ok");
      $("send-file").disabled = !$("file-input").files.length;
      log("data channel open: peer to peer");
      reportPath().catch(() => {});
    };
    channel.onclose = () => setStatus("channel", "closed", "");
    channel.onmessage = (event) => onChunk(event.data);
    channel.onbufferedamountlow = () => pump();
  }

  // --- sending -----------------------------------------------------------
  $("file-input").addEventListener("change", () => {
    const file = $("file-input").files[0];
    $("file-label").textContent = file ? `${file.name} · ${(file.size / 1024).toFixed(0)} KB` : "Choose a file…";
    $("send-file").disabled = !file || channel?.readyState !== "open";
  });

  $("send-file").addEventListener("click", async () => {
    const file = $("file-input").files[0];
    if (!file || channel?.readyState !== "open") return;
    $("send-file").disabled = true;
    demo.sendPercent = 0;
    demo.sentHash = await sha256(await file.arrayBuffer());
    sending = { file, size: file.size, sent: 0, confirmed: 0, startedAt: performance.now(), reading: false };
    $("send-transfer").hidden = false;
    $("send-name").textContent = file.name;
    showSendProgress();
    await gate.transfile({ size: file.size, name: file.name });
    log(`sending ${file.name}`, "me");
    pump();
  });

  async function pump() {
    if (!sending || sending.reading || channel?.readyState !== "open") return;
    sending.reading = true;
    try {
      while (sending.sent < sending.size && sending.sent - sending.confirmed < WINDOW_BYTES
             && channel.bufferedAmount < WINDOW_BYTES) {
        const end = Math.min(sending.sent + CHUNK_BYTES, sending.size);
        const chunk = await sending.file.slice(sending.sent, end).arrayBuffer();
        channel.send(chunk);
        sending.sent = end;
      }
    } finally {
      if (sending) sending.reading = false;
    }
  }

  function onProgressReport(bytes) {
    if (!sending) return;
    sending.confirmed = Math.max(sending.confirmed, bytes);
    showSendProgress();
    if (sending.confirmed >= sending.size) {
      log(`${sending.file.name} delivered`, "me");
      sending = null;
      $("send-file").disabled = false;
      return;
    }
    pump();
  }

  function showSendProgress() {
    const percent = sending.size ? Math.floor((sending.confirmed / sending.size) * 100) : 100;
    demo.sendPercent = percent;
    $("send-progress").value = percent;
    $("send-percent").textContent = `${percent}%`;
    $("send-rate").textContent = formatRate(sending.confirmed, sending.startedAt);
  }

  // --- receiving -----------------------------------------------------------
  function startReceiving(offer) {
    receiving = { name: offer.name, size: offer.size, chunks: [], received: 0, reported: 0, startedAt: performance.now() };
    demo.receivePercent = 0;
    demo.receivedHash = null;
    $("receive-idle").hidden = true;
    $("receive-transfer").hidden = false;
    $("download").hidden = true;
    $("receive-name").textContent = `${offer.name} · ${(offer.size / 1024).toFixed(0)} KB`;
    log(`receiving ${offer.name}`, "peer");
    for (const chunk of earlyChunks.splice(0)) onChunk(chunk);
    if (offer.size === 0) finishReceiving();
  }

  function onChunk(chunk) {
    if (!receiving) {
      // The data channel can outrun the announcement through the gateway.
      earlyChunks.push(chunk);
      return;
    }
    receiving.chunks.push(chunk);
    receiving.received += chunk.byteLength;
    const percent = Math.floor((receiving.received / receiving.size) * 100);
    demo.receivePercent = percent;
    $("receive-progress").value = percent;
    $("receive-percent").textContent = `${percent}%`;
    $("receive-rate").textContent = formatRate(receiving.received, receiving.startedAt);
    const done = receiving.received >= receiving.size;
    if (done || receiving.received - receiving.reported >= REPORT_EVERY_BYTES) {
      receiving.reported = receiving.received;
      gate.ctrlSendSpeed(receiving.received).catch(() => {});
    }
    if (done) finishReceiving();
  }

  async function finishReceiving() {
    const done = receiving;
    receiving = null;
    const blob = new Blob(done.chunks);
    const buffer = await blob.arrayBuffer();
    demo.receivedHash = await sha256(buffer);
    demo.receivedName = done.name;
    const link = $("download");
    link.href = URL.createObjectURL(blob);
    link.download = done.name;
    link.hidden = false;
    $("receive-hash").textContent = `SHA-256 ${demo.receivedHash}`;
    log(`${done.name} received (${buffer.byteLength} bytes)`, "peer");
  }

  // --- chat ----------------------------------------------------------------
  $("chat-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("chat-input").value.trim();
    if (!text) return;
    $("chat-input").value = "";
    try {
      await gate.message({ type: "chat", text });
      log(text, "me");
    } catch (error) {
      log(`not sent (${error.code})`);
    }
  });
}
