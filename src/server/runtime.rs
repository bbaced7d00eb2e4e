//! The runtime the gateway runs on: tokio's multi-threaded scheduler, with
//! its global queue checked every other task.
//!
//! Why: a worker keeps at most 256 runnable tasks in its own queue; past
//! that it moves the oldest half to the global queue, which it then reads
//! once every "global queue interval" tasks — self-tuned to about 200 µs
//! of polling, some 100 tasks at a relay's task poll times. Under
//! saturation with many connections (200 pairs relaying flat out: 400
//! connections, and with gRPC three tasks each) the moved tasks waited
//! while newer ones ran: round-trip p99 was 10–11× the median on the gRPC
//! door and 19–20× on the Socket.IO door, and the gateway's own histogram
//! (`signalgate_relay_latency_seconds`) showed gRPC events waiting 25–50 ms
//! in their outbox. Reading the global queue every other task keeps the
//! order close to first come, first served. Measured on one pinned core,
//! 200 pairs, one message in flight, one write per message (the load
//! generator built the same way, `docs/bench/notes.md`): p99 ÷ p50 went to
//! 1.8× (gRPC), 1.4–1.6× (Socket.IO), 1.4× (WebSocket), with CPU per
//! relay unchanged within the noise. An interval of 1 (always the global
//! queue first) left a few Socket.IO sessions waiting about a second; 4
//! left 2–3.5×.

use std::io;

use tokio::runtime::{Builder, Runtime};

/// Tasks between two reads of the global queue (see the module's comment).
pub const GLOBAL_QUEUE_INTERVAL: u32 = 2;

/// The gateway's runtime: multi-threaded (a worker per core), I/O and timers
/// on, the global queue read every [`GLOBAL_QUEUE_INTERVAL`] tasks.
pub fn runtime() -> io::Result<Runtime> {
    Builder::new_multi_thread()
        .enable_all()
        .global_queue_interval(GLOBAL_QUEUE_INTERVAL)
        .build()
}
