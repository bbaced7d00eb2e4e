//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and generates
//! the tonic server and client. The encoded file descriptor set is kept in
//! OUT_DIR for the reflection service.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

const PROTO: &str = "proto/signalgate/v1/signaling.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile([PROTO], ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("signalgate_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        // The rpc is called `Connect`; the transport constructor of the same
        // name would clash with it, so clients connect a `Channel` themselves.
        .build_transport(false)
        // prost encoding with small initial buffers: each open stream keeps
        // one encode and one decode buffer (see src/proto.rs).
        .codec_path("crate::proto::CompactCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
