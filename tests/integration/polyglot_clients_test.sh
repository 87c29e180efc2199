#!/bin/bash
# Ready-to-run clients in other languages against the real gateway binary:
# the Python client (Debian's python3-grpcio, stubs generated from proto/)
# and the Node.js client (@grpc/grpc-js and @grpc/proto-loader from npm),
# each calling Execute, Stream and GetPoolStatus.
set -euo pipefail
source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/integration/gateway_env.sh"

start_gateway
address="127.0.0.1:$GRPC_PORT"

echo "=== Python"
ECHELON_PROTO_ROOT="$ROOT/proto" /usr/bin/python3 \
  "$ROOT/tools/clients/python/echelon_client.py" --address="$address" \
  --target=fast-pool --gen_dir="$TMP_DIR/python-gen"

echo "=== Node.js"
"$ROOT/tools/clients/node/run.sh" "$address" fast-pool "$ROOT/proto"
echo "polyglot clients: OK"
