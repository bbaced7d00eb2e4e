//! The generated gRPC code of `proto/signalgate/v1/signaling.proto`, the
//! encoded descriptor set served by reflection, and the conversions between
//! `google.protobuf.Value` and JSON that the gRPC door and the gRPC client
//! need.

pub mod encoded;

/// The contract's types, the tonic client and the JSON rendering of
/// `google.protobuf.Value`: the `signalgate-proto` crate, which clients
/// use without the gateway.
pub use signalgate_proto::{CODEC_BUFFER_BYTES, CompactCodec, json, v1};

/// The same contract as the server sees it: every `google.protobuf.Value`
/// stays in its protobuf encoding ([`encoded::EncodedValue`]), which the
/// gRPC door converts to and from JSON text without building a value tree.
/// The bytes on the wire are those of [`v1`].
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod server {
    include!(concat!(env!("OUT_DIR"), "/server/signalgate.v1.rs"));
}

/// The encoded `FileDescriptorSet` of the contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("signalgate_descriptor");

/// The admin API (`signalgate.admin.v1`): types, server and client.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod admin {
    include!(concat!(env!("OUT_DIR"), "/admin/signalgate.admin.v1.rs"));

    /// The admin API's descriptors, for the reflection service.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("admin_descriptor");
}
