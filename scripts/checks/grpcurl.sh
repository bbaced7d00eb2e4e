#!/usr/bin/env bash
# grpcurl against a real gateway: reflection lists and describes the
# service, health answers, and two Connect streams driven from stdin pair,
# relay and say byebye; the app asks for fresh ICE servers (TURN credentials);
# the admin API is listed and GetPresence answers with the token only.
set -euo pipefail
binary=$1
source "$(dirname "$0")/../lib/gateway.sh"
start_gateway "$binary" --ice-server 'turn:127.0.0.1:3478?transport=udp' --turn-secret grpcurl-secret \
  --admin-token grpcurl-admin-token-for-checks
target="127.0.0.1:$PORT"

services=$(grpcurl -plaintext "$target" list)
echo "$services"
grep -qx 'signalgate.v1.Signaling' <<<"$services" || fail "service not listed by reflection"
grep -qx 'grpc.health.v1.Health' <<<"$services" || fail "health not listed"
grep -qx 'signalgate.admin.v1.Admin' <<<"$services" || fail "admin service not listed"
grpcurl -plaintext "$target" describe signalgate.admin.v1.Admin | grep -q 'rpc GetPresence' \
  || fail "GetPresence not described"
grpcurl -plaintext "$target" describe signalgate.v1.Signaling | tee /dev/stderr | grep -q 'rpc Connect' \
  || fail "Connect not described"
grpcurl -plaintext "$target" describe google.protobuf.Value >/dev/null || fail "imports not served"
grpcurl -plaintext -d '{"service":"signalgate.v1.Signaling"}' "$target" grpc.health.v1.Health/Check \
  | grep -q SERVING || fail "health check"

web_out=$(mktemp)
# The web session stays open (stdin held by sleep) while the app comes and goes.
( printf '%s\n' '{"id": 1, "register": {"uid": "grpcurl-demo", "role": "ROLE_WEB"}}'; sleep 4 ) \
  | grpcurl -plaintext -d @ "$target" signalgate.v1.Signaling/Connect >"$web_out" &
web_pid=$!
sleep 1
presence=$(grpcurl -plaintext -H 'authorization: Bearer grpcurl-admin-token-for-checks' -d '{"uid": "grpcurl-demo"}' \
  "$target" signalgate.admin.v1.Admin/GetPresence)
echo "$presence"
python3 -c '
import json, sys
p = json.loads(sys.argv[1])
assert p["uid"] == "grpcurl-demo" and not p.get("paired"), p
assert p["web"]["state"] == "online" and p["web"]["door"] == "grpc" and p["app"]["state"] == "absent", p
' "$presence" || fail "GetPresence"
refused=$(grpcurl -plaintext -d '{"uid": "grpcurl-demo"}' "$target" signalgate.admin.v1.Admin/GetPresence 2>&1 || true)
grep -q Unauthenticated <<<"$refused" || fail "GetPresence without the token was not refused: $refused"
app_out=$( ( printf '%s\n' \
    '{"id": 1, "register": {"uid": "grpcurl-demo", "role": "ROLE_APP"}}' \
    '{"id": 2, "message": {"sdp": "v=0", "candidates": [1, 2.5, "x"]}}' \
    '{"id": 3, "ipaddr": {}}' \
    '{"id": 4, "iceServers": {}}'; sleep 1 ) \
  | grpcurl -plaintext -d @ "$target" signalgate.v1.Signaling/Connect )
wait "$web_pid"
echo "--- app stream"; echo "$app_out"
echo "--- web stream"; cat "$web_out"

python3 - "$web_out" <<PY
import json, sys

def stream(text):
    decoder, events, i = json.JSONDecoder(), [], 0
    text = text.strip()
    while i < len(text):
        event, i = decoder.raw_decode(text, i)
        events.append(event)
        while i < len(text) and text[i].isspace():
            i += 1
    return events

app = stream('''$app_out''')
web = stream(open(sys.argv[1]).read())
# Each event is its oneof field plus "seq" (absent on welcome, and when 0).
names = lambda events: [next(k for k in e if k != "seq") for e in events]
seqs = [int(e.get("seq", 0)) for e in app]
assert seqs[0] == 0 and seqs[1:] == list(range(1, len(app))), seqs
assert names(app) == ["welcome", "registered", "syncfrom", "ack", "ack", "ipaddr", "ack", "iceServers", "ack"], names(app)
assert app[1]["registered"]["peerPresent"] is True, app[1]
turn = app[1]["registered"]["iceServers"][0]
assert turn["urls"] == ["turn:127.0.0.1:3478?transport=udp"], turn
assert turn["username"] == app[1]["registered"]["iceServersExpireAt"] + ":grpcurl-demo", app[1]
fresh = app[7]["iceServers"]
assert fresh["iceServers"][0]["username"].endswith(":grpcurl-demo") and int(fresh["expireAt"]) > 0, fresh
assert app[5]["ipaddr"]["addresses"] == ["192.0.2.10"], app[5]
assert names(web) == ["welcome", "registered", "ack", "message", "byebye"], names(web)
assert web[3]["message"] == {"sdp": "v=0", "candidates": [1, 2.5, "x"]}, web[3]
print("grpcurl streams paired, relayed and said byebye")
PY
