//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and
//! generates the server (`crate::proto::server`), where a
//! `google.protobuf.Value` is a `crate::proto::encoded::EncodedValue`: the
//! value's protobuf bytes, kept encoded so the gRPC door converts them to
//! and from JSON text directly (the wire format is the same). The public
//! types and the tonic client come from the `signalgate-proto` crate
//! (`proto/build.rs`), generated from the same file.
//!
//! The admin API (`proto/signalgate/admin/v1`) is generated on its own,
//! with plain prost types, into `crate::proto::admin`.
//!
//! The encoded file descriptor sets are kept in OUT_DIR for the reflection
//! service.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

const PROTO: &str = "proto/signalgate/v1/signaling.proto";
const ADMIN_PROTO: &str = "proto/signalgate/admin/v1/admin.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile([PROTO], ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("signalgate_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    let server_dir = out_dir.join("server");
    fs::create_dir_all(&server_dir)?;
    tonic_prost_build::configure()
        .build_client(false)
        .out_dir(&server_dir)
        .extern_path(
            ".google.protobuf.Value",
            "crate::proto::encoded::EncodedValue",
        )
        .codec_path("crate::proto::CompactCodec")
        .compile_fds(descriptors)?;
    // The admin API: its own package, plain prost types (server and client).
    let admin = protox::compile([ADMIN_PROTO], ["proto"])?;
    fs::write(out_dir.join("admin_descriptor.bin"), admin.encode_to_vec())?;
    let admin_dir = out_dir.join("admin");
    fs::create_dir_all(&admin_dir)?;
    tonic_prost_build::configure()
        .build_transport(false)
        .out_dir(&admin_dir)
        .compile_fds(admin)?;
    Ok(())
}
