#!/usr/bin/env bash
# Records which functions the release service runs, for the linker's code layout
# (docs/benchmarks.md, "Code layout"), and writes them to functions.txt beside this script.
#
# It builds the release binary, runs it under valgrind's callgrind through startup, every kind
# of request (created, refused, read, listed, patched, deleted, the probes, the metrics and the
# API description), a create load, a read load and a shutdown. valgrind and wrk come from
# Debian's packages when missing. Takes about two minutes. Run it again after a change of the
# toolchain or of Cargo.lock, which rename most functions.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)

missing=()
for tool in valgrind wrk curl; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

(cd "$root" && cargo build --release -p cmp-server)
binary=${CARGO_TARGET_DIR:-$root/target}/release/cmp-server

scratch=$(mktemp -d)
service=""
cleanup() {
  [[ -n $service ]] && kill "$service" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
metrics_port=$(free_port)
export CMP_ENV=development \
  CMP__HTTP__PORT=$port \
  CMP__METRICS__PORT=$metrics_port \
  CMP__METRICS__REFRESH_INTERVAL_MS=1000 \
  CMP__SQLITE__PATH=$scratch/partners.db \
  CMP__AUTH__DEVELOPMENT_KEY_DIR=$scratch \
  CMP__GRAPH__SIMULATED__LATENCY_MS=0 \
  CMP__GRAPH__SIMULATED__MAX_OBJECTS=1000 \
  CMP__HTTP__WRITES_PER_CALLER_PER_SECOND=1000000 \
  CMP__HTTP__WRITE_BURST=1000000 \
  CMP__TELEMETRY__FORMAT=json \
  RUST_LOG=info
token=$(cd "$root" && "$binary" mint-token)

(cd "$root" && exec valgrind --tool=callgrind --callgrind-out-file="$scratch/callgrind.out" \
  --dump-instr=no --compress-strings=no --compress-pos=no --demangle=no \
  "$binary" >"$scratch/service.log" 2>&1) &
service=$!

base=http://127.0.0.1:$port
for _ in $(seq 1 300); do
  curl -s -o /dev/null "$base/healthz" && break
  sleep 0.5
done

collection=$base/beta/deviceManagement/complianceManagementPartners
auth="Authorization: Bearer $token"
json="Content-Type: application/json"
id_of() { python3 -c 'import sys, json; print(json.load(sys.stdin)["id"])'; }
quiet() { curl -s -o /dev/null "$@"; }

quiet "$base/readyz"
quiet "http://127.0.0.1:$metrics_port/metrics"
quiet "$base/openapi.json"
quiet "$collection"
quiet -H "Authorization: Bearer not.a.token" "$collection"
id=$(curl -s -X POST -H "$auth" -H "$json" \
  -d '{"displayName":"layout one","partnerState":"enabled","windowsOnboarded":true}' "$collection" | id_of)
quiet -X POST -H "$auth" -H "$json" -d '{"displayName":"layout one"}' "$collection"
quiet -X POST -H "$auth" -H "$json" -d '{"displayName":' "$collection"
quiet -X POST -H "$auth" -H "$json" -d '{"displayName":"layout two","unknownProperty":1}' "$collection"
quiet -H "$auth" "$collection/$id"
quiet -H "$auth" "$collection/$id?\$select=displayName"
quiet -H "$auth" "$collection?\$top=5&\$count=true"
quiet -H "$auth" "$collection/\$count"
quiet -X PATCH -H "$auth" -H "$json" -d '{"partnerState":"unavailable"}' "$collection/$id"
quiet -H "$auth" "$collection/00000000-0000-0000-0000-000000000000"
quiet -X DELETE -H "$auth" "$collection/$id"

cat >"$scratch/create.lua" <<LUA
headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer $token" }
local count = 0
request = function()
  count = count + 1
  local body = '{"displayName":"layout ' .. math.random(1, 1000000000) .. ' ' .. count .. '"}'
  return wrk.format("POST", "/beta/deviceManagement/complianceManagementPartners", headers, body)
end
LUA
wrk -t1 -c8 -d20s -s "$scratch/create.lua" "$base" >/dev/null
read_id=$(curl -s -X POST -H "$auth" -H "$json" -d '{"displayName":"layout read"}' "$collection" | id_of)
cat >"$scratch/read.lua" <<LUA
headers = { ["Authorization"] = "Bearer $token" }
request = function()
  return wrk.format("GET", "/beta/deviceManagement/complianceManagementPartners/$read_id", headers)
end
LUA
wrk -t1 -c8 -d10s -s "$scratch/read.lua" "$base" >/dev/null
quiet "http://127.0.0.1:$metrics_port/metrics"

kill -INT "$service"
wait "$service"
service=""
python3 "$here/layout.py" order "$scratch/callgrind.out" "$binary" >"$here/functions.txt"
echo "$(wc -l <"$here/functions.txt") functions written to $here/functions.txt"
