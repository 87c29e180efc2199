#!/usr/bin/env bash
# Generates the Python stubs for echelon.v1 from proto/ with Debian's protoc
# and grpc_python_plugin into tools/clients/python/gen (or $1).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_root="${ECHELON_PROTO_ROOT:-$here/../../../proto}"
out="${1:-$here/gen}"
mkdir -p "$out"
protoc -I"$proto_root" --python_out="$out" --grpc_python_out="$out" \
  --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin \
  "$proto_root/echelon/v1/gateway.proto"
touch "$out/echelon/__init__.py" "$out/echelon/v1/__init__.py"
