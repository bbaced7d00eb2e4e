# Helpers for the outside-client checks: start a gateway on a free port and
# stop it when the check exits.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_gateway BINARY [FLAGS...]: sets PORT and GATEWAY_PID.
start_gateway() {
  local binary=$1; shift
  PORT=$(free_port)
  "$binary" --listen "127.0.0.1:$PORT" --advertise-ip 192.0.2.10 "$@" &
  GATEWAY_PID=$!
  trap 'kill "$GATEWAY_PID" 2>/dev/null; wait "$GATEWAY_PID" 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    if python3 - "$PORT" <<'PY' 2>/dev/null; then return 0; fi
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1)
PY
    sleep 0.1
  done
  echo "gateway did not become healthy" >&2
  return 1
}

fail() { echo "FAIL: $*" >&2; exit 1; }
