#!/usr/bin/env bash
# Generates the Python stubs from proto/ into clients/python/generated/
# (not committed). grpcio-tools ships protoc and google/protobuf/*.proto.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
rm -rf "$here/generated" && mkdir -p "$here/generated"
python3 -m grpc_tools.protoc \
  -I "$root/proto" \
  --python_out="$here/generated" \
  --grpc_python_out="$here/generated" \
  "$root/proto/signalgate/v1/signaling.proto"
echo "stubs in $here/generated"
