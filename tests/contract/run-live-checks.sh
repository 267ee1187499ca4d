#!/usr/bin/env bash
# The live contract checks: the real service (debug build, development auth mode, simulated
# Graph, a temporary SQLite file) on a loopback port the OS picks, checked from outside by
#   1. openapi-spec-validator: /openapi.json is a valid OpenAPI 3.1 document;
#   2. Microsoft's official Python SDK (msgraph-beta-sdk 1.66.0): tests/sdk/python_sdk_check.py;
#   3. schemathesis: cases generated from /openapi.json, checked for server errors and for
#      answers that break the document (status codes, content types, headers, bodies), plus
#      the checks on rejected bad data, unsupported methods, Allow, deleted and created
#      resources, and auth. `positive_data_acceptance` is left out: the $filter grammar and the
#      rules that tie members together (see docs/api.md) are not JSON Schema, so data the
#      schema allows may rightly get a 400.
# Python packages go into a private venv under a temporary folder (or LIVE_CHECKS_VENV, kept
# between runs), in /dev/shm when it is there. The service is stopped and the folder removed on exit, whatever happens.
# Runs from any folder; needs cargo, python3 (3.11+) with venv and pip, and curl.
#
# Knobs: SCHEMATHESIS_SEED (default 20261203), SCHEMATHESIS_MAX_EXAMPLES (per operation,
# default 40 for the resource and 20 for the operator endpoints).
set -euo pipefail
cd "$(dirname "$0")/../.."

SCHEMATHESIS_VERSION=4.32.5
SPEC_VALIDATOR_VERSION=0.9.0
SDK_VERSION=1.66.0
SEED=${SCHEMATHESIS_SEED:-20261203}
RESOURCE_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-40}
OPERATOR_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-20}
MIN_CASES=1000

# In memory where the machine has a tmpfs: the SDK is tens of thousands of small files, which a
# disk takes minutes to write and to remove again. LIVE_CHECKS_TMPDIR chooses another place.
scratch=${LIVE_CHECKS_TMPDIR:-}
if [ -z "$scratch" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  scratch=/dev/shm
fi
work=$(mktemp -d ${scratch:+-p "$scratch"})
service_pid=""
cleanup() {
  if [ -n "$service_pid" ] && kill -0 "$service_pid" 2>/dev/null; then
    kill -TERM "$service_pid"
    wait "$service_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

venv=${LIVE_CHECKS_VENV:-$work/venv}
echo "-- python packages into $venv (schemathesis $SCHEMATHESIS_VERSION, msgraph-beta-sdk $SDK_VERSION)"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# In the background while the service builds; --no-compile because the SDK ships tens of
# thousands of modules and the check imports a handful.
"$venv/bin/python" -m pip install --quiet --no-compile --disable-pip-version-check \
  "schemathesis==$SCHEMATHESIS_VERSION" \
  "openapi-spec-validator==$SPEC_VALIDATOR_VERSION" \
  "msgraph-beta-sdk==$SDK_VERSION" >"$work/pip.log" 2>&1 &
pip_pid=$!

echo "-- building cmp-server (debug)  [${SECONDS}s]"
cargo build --quiet --locked -p cmp-server
binary=target/debug/cmp-server

echo "-- waiting for the Python packages  [${SECONDS}s]"
if ! wait "$pip_pid"; then
  cat "$work/pip.log"; echo "installing the Python packages failed"; exit 1
fi

# Development auth mode (tokens from mint-token, the key set served), a fresh database, the
# OS's choice of port. The write rate is raised so that generated writes reach the handlers
# instead of the 429 the limit would give (the limit has its own tests).
export CMP_ENV=development
export CMP__HTTP__HOST=127.0.0.1
export CMP__HTTP__PORT=0
export CMP__SQLITE__PATH="$work/data/partners.db"
export CMP__AUTH__DEVELOPMENT_KEY_DIR="$work/data"
export CMP__GRAPH__SIMULATED__LATENCY_MS=0
export CMP__HTTP__WRITES_PER_CALLER_PER_SECOND=100000
export CMP__HTTP__WRITE_BURST=100000
export CMP__TELEMETRY__FORMAT=json
export RUST_LOG=warn,cmp_server=info
mkdir -p "$work/data"

# Minting first also creates the signing key the service then loads.
write_token=$("$binary" mint-token)
operator_token=$("$binary" mint-token --role CompliancePartners.Operate)

echo "-- starting the service  [${SECONDS}s]"
"$binary" >"$work/service.log" 2>&1 &
service_pid=$!
address=""
for _ in $(seq 1 300); do
  address=$(grep -o '"address":"[^"]*"' "$work/service.log" | head -n 1 | cut -d'"' -f4 || true)
  [ -n "$address" ] && break
  kill -0 "$service_pid" 2>/dev/null || { cat "$work/service.log"; echo "the service stopped"; exit 1; }
  sleep 0.1
done
[ -n "$address" ] || { cat "$work/service.log"; echo "the service did not report its address"; exit 1; }
base="http://$address"
echo "   listening on $base"
curl --silent --show-error --fail --max-time 10 "$base/openapi.json" -o "$work/openapi.json"

echo "-- openapi-spec-validator: /openapi.json is OpenAPI 3.1  [${SECONDS}s]"
"$venv/bin/python" - "$work/openapi.json" <<'PY'
import json, sys
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator
with open(sys.argv[1]) as handle:
    document = json.load(handle)
validate(document, cls=OpenAPIV31SpecValidator)
print(f"   valid: OpenAPI {document['openapi']}, {len(document['paths'])} paths, "
      f"{len(document['components']['schemas'])} component schemas")
PY

echo "-- Microsoft's Python SDK $SDK_VERSION against the service  [${SECONDS}s]"
"$venv/bin/python" tests/sdk/python_sdk_check.py "$base/beta" "$write_token"

checks=(--checks all --exclude-checks positive_data_acceptance)
total=0
run_schemathesis() {
  local name=$1 token=$2 paths=$3 examples=$4
  echo "-- schemathesis: $name ($examples examples per operation, seed $SEED)  [${SECONDS}s]"
  local log="$work/schemathesis-$name.log"
  local status=0
  # From the temporary folder: schemathesis keeps its example database in the working folder.
  (cd "$work" && "$venv/bin/schemathesis" --no-color run "$base/openapi.json" --url "$base" \
    -H "Authorization: Bearer $token" --include-path-regex "$paths" \
    "${checks[@]}" --max-examples "$examples" --seed "$SEED") >"$log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    cat "$log"; echo "schemathesis ($name) failed"; exit "$status"
  fi
  local summary
  summary=$(grep -E '^ +[0-9]+ generated' "$log" | tail -n 1 | sed 's/^ *//')
  echo "   Test cases: $summary"
  total=$((total + ${summary%% *}))
}
run_schemathesis resource "$write_token" '^/(beta/|openapi\.json$|development/)' "$RESOURCE_EXAMPLES"
run_schemathesis operator "$operator_token" '^/admin/' "$OPERATOR_EXAMPLES"

echo "-- schemathesis summary: $total test cases generated, 0 server errors, 0 answers that break the document  [${SECONDS}s]"
if [ "$total" -lt "$MIN_CASES" ]; then
  echo "fewer than $MIN_CASES test cases were generated"; exit 1
fi
