#!/usr/bin/env bash
# The posture demo: a hub on its embedded store, a macOS osqueryd stand-in
# and posture.ext. It applies policies/, shows the host and its results over
# the REST API, turns FileVault off (the result goes FAIL), turns it back on
# (PASS), and cleans up after itself. No PostgreSQL, no network.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin}
POLICY=${DEMO_POLICY:-macos-filevault}
TIMEOUT=${DEMO_TIMEOUT:-60}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

free_port() {
  local p
  for p in $(seq "$1" $(( $1 + 200 ))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  echo "no free port near $1" >&2; exit 1
}

step "build"
make -s build BIN="$BIN"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/posture-demo.XXXXXX")
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ $rc -ne 0 ]; then
    echo "demo failed (exit $rc); last log lines:" >&2
    for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM

GRPC_PORT=$(free_port 18443)
HTTP_PORT=$(free_port 18080)
CTL_PORT=$(free_port 18990)
API="http://127.0.0.1:$HTTP_PORT/api/v1"
export POSTURE_DATA_DIR="$WORK/hub"
export POSTURE_ADDR="127.0.0.1:$GRPC_PORT"
export POSTURE_CA="$WORK/hub/ca.pem"

step "start posture-hub (embedded SQLite in $WORK/hub)"
"$BIN/posture-hub" serve --grpc-addr "127.0.0.1:$GRPC_PORT" --http-addr "127.0.0.1:$HTTP_PORT" \
  --policy-interval 2s >"$WORK/hub.log" 2>&1 &
PIDS+=($!)

wait_for() { # wait_for DESCRIPTION COMMAND...
  local what=$1; shift
  local deadline=$(( SECONDS + TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS > deadline )); then echo "timed out waiting for $what" >&2; return 1; fi
    sleep 0.3
  done
}
wait_for "hub readiness" curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz"
echo "hub ready: gRPC/TLS 127.0.0.1:$GRPC_PORT, REST http://127.0.0.1:$HTTP_PORT"

step "create the first admin token and an enroll secret"
POSTURE_TOKEN=$("$BIN/posture-hub" token create --name demo-admin --role admin)
export POSTURE_TOKEN
"$BIN/posture-hub" enroll-secret create --team default --description demo >"$WORK/enroll-secret" 2>/dev/null
chmod 600 "$WORK/enroll-secret"
echo "token and secret created (shown once, stored hashed)"

step "apply policies/ (dry run first, then for real)"
"$BIN/posture-hub" policies apply policies/ --dry-run 2>/dev/null | sed -n '1,4p;$p'
"$BIN/posture-hub" policies apply policies/ 2>/dev/null | tail -n 1

step "start a macOS osqueryd stand-in and posture.ext"
"$BIN/fakeosqueryd" --socket "$WORK/osquery.em" --platform darwin --hostname demo-mac \
  --control "127.0.0.1:$CTL_PORT" >"$WORK/osqueryd.log" 2>&1 &
PIDS+=($!)
wait_for "osqueryd stand-in" test -S "$WORK/osquery.em"
"$BIN/posture.ext" --socket "$WORK/osquery.em" --timeout 10 --interval 3 \
  --hub "127.0.0.1:$GRPC_PORT" --hub-ca "$WORK/hub/ca.pem" \
  --enroll-secret-path "$WORK/enroll-secret" --state-dir "$WORK/ext" >"$WORK/ext.log" 2>&1 &
PIDS+=($!)

api() { curl -fsS -H "Authorization: Bearer $POSTURE_TOKEN" "$API$1"; }
status_of() { # the demo policy's latest status on the first host
  api "/hosts?includeResults=true" | jq -r --arg p "$POLICY" \
    '[.hosts[0].results[]? | select(.policyId == $p) | .status][0] // "NONE"'
}
wait_status() {
  local want=$1 deadline=$(( SECONDS + TIMEOUT ))
  until [ "$(status_of)" = "$want" ]; do
    if (( SECONDS > deadline )); then echo "timed out waiting for $POLICY to be $want (is $(status_of))" >&2; return 1; fi
    sleep 0.3
  done
}

WANT=$(api /policies | jq '[.policies[] | select((.platforms // []) as $p | ($p | length) == 0 or ($p | index("darwin")))] | length')
wait_results() {
  local deadline=$(( SECONDS + TIMEOUT ))
  until [ "$(api "/hosts?includeResults=true" | jq '[.hosts[0].results[]?] | length')" -ge "$WANT" ]; do
    if (( SECONDS > deadline )); then echo "timed out waiting for $WANT results" >&2; return 1; fi
    sleep 0.3
  done
}
wait_results
wait_status RESULT_STATUS_PASS
step "the host and its $WANT macOS results, from GET /api/v1/hosts"
api "/hosts?includeResults=true" | jq -r '.hosts[] |
  "host \(.id)  \(.facts.hostname)  \(.facts.osName) \(.facts.osVersion)  pass=\(.passing // 0) fail=\(.failing // 0) error=\(.errors // 0)",
  (.results[] | "  \(.status | sub("RESULT_STATUS_"; ""))\t\(.policyId)")'

step "turn FileVault off on the host"
curl -fsS -X POST --data "UPDATE disk_encryption SET filevault_status = 'off', encrypted = 0, encryption_status = 'not encrypted'" "http://127.0.0.1:$CTL_PORT/exec" >/dev/null
t0=$SECONDS
wait_status RESULT_STATUS_FAIL
echo "$POLICY is now FAIL (seen by the hub within $(( SECONDS - t0 ))s)"

step "turn FileVault back on"
curl -fsS -X POST --data "UPDATE disk_encryption SET filevault_status = 'on', encrypted = 1, encryption_status = 'encrypted'" "http://127.0.0.1:$CTL_PORT/exec" >/dev/null
t0=$SECONDS
wait_status RESULT_STATUS_PASS
echo "$POLICY is PASS again (within $(( SECONDS - t0 ))s)"

step "the same host through the CLI (gRPC admin API)"
"$BIN/posture-hub" hosts get "$(api /hosts | jq -r '.hosts[0].id')" | sed -n '1,10p'

step "done: cleaning up"
