// The PeerJS server (npm `peer`) as scripts/bench runs it (issue 35): the
// WebRTC signaling server people pick instead of writing their own. Key
// `peerjs`, path `/` (so the WebSocket is at /peerjs), on 127.0.0.1:$PORT.
// Two limits are lifted for the benchmark, as signalgate's are
// (--rate-limit 0 and the like): concurrent_limit (5,000 peers by default)
// for the idle runs, and alive_timeout (a peer silent for 90 s is dropped)
// because the generator sends no HEARTBEAT.
const { PeerServer } = require("peer");

const port = Number(process.env.PORT || 9000);
PeerServer(
  {
    port,
    host: "127.0.0.1",
    path: "/",
    key: "peerjs",
    concurrent_limit: 1_000_000,
    alive_timeout: 3_600_000,
  },
  () => console.log(`PeerJS server on 127.0.0.1:${port}`),
);
