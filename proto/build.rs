//! Compiles `signalgate/v1/signaling.proto` with protox (pure Rust, no
//! system `protoc`) into the contract's types and the tonic client, where a
//! `google.protobuf.Value` is a `prost_types::Value`. The gateway generates
//! its own server from the same file (its build.rs).

const PROTO: &str = "signalgate/v1/signaling.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=signalgate");
    let descriptors = protox::compile([PROTO], ["."])?;
    tonic_prost_build::configure()
        .build_server(false)
        // The rpc is called `Connect`; the transport constructor of the same
        // name would clash with it, so clients connect a `Channel` themselves.
        .build_transport(false)
        // prost encoding with small initial buffers (see `CompactCodec`).
        .codec_path("crate::CompactCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
