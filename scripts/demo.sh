#!/usr/bin/env bash
# The posture demo: a hub on its embedded store, a macOS osqueryd stand-in,
# posture.ext, and local stand-ins of Entra ID and Microsoft Graph driven
# through the real Microsoft SDKs. It applies policies/, connects the hub to
# "Entra", shows the host and its results over the REST API, turns FileVault
# off (the result goes FAIL and the device's extension attribute in Graph
# flips to Non-compliant), turns it back on (PASS, Compliant), and cleans up
# after itself. No PostgreSQL, no network.
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
ENTRA_PORT=$(free_port 19443)
GRAPH_PORT=$(free_port 19643)
DEVICE=6f1c2e3d-4b5a-4c7d-8e9f-0a1b2c3d4e5f   # the Mac's Entra device id
CLIENT_ID=2d7e9c41-8a3b-4f56-9e0d-1c2b3a4f5e6d
ATTR=10
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

step "start the Entra ID + Microsoft Graph stand-ins (the device $DEVICE is registered there)"
umask 077
head -c 24 /dev/urandom | base64 > "$WORK/client-secret"
"$BIN/msstandin" --entra-addr "127.0.0.1:$ENTRA_PORT" --graph-addr "127.0.0.1:$GRAPH_PORT" \
  --client-id "$CLIENT_ID" --client-secret "$(cat "$WORK/client-secret")" --devices "$DEVICE" \
  --ca-out "$WORK/ms-ca.pem" >"$WORK/msstandin.json" 2>"$WORK/msstandin.log" &
PIDS+=($!)
wait_for "the stand-ins" test -s "$WORK/msstandin.json"
AUTHORITY=$(jq -r .authority "$WORK/msstandin.json")
GRAPH=$(jq -r .graph "$WORK/msstandin.json")
TENANT=$(jq -r .tenant "$WORK/msstandin.json")
DEVICES_VIEW=$(jq -r .devices_view "$WORK/msstandin.json")
echo "Entra authority $AUTHORITY, Graph $GRAPH, tenant $TENANT"
attribute() { # what Graph holds in the device's extension attribute
  curl -fsS --cacert "$WORK/ms-ca.pem" "$DEVICES_VIEW" |
    jq -r --arg d "$DEVICE" --arg a "extensionAttribute$ATTR" '.devices[] | select(.deviceId == $d) | .extensionAttributes[$a] // "(not set)"'
}

step "create the first admin token and an enroll secret"
POSTURE_TOKEN=$("$BIN/posture-hub" token create --name demo-admin --role admin)
export POSTURE_TOKEN
"$BIN/posture-hub" enroll-secret create --team default --description demo >"$WORK/enroll-secret" 2>/dev/null
chmod 600 "$WORK/enroll-secret"
echo "token and secret created (shown once, stored hashed)"

step "apply policies/ (dry run first, then for real)"
"$BIN/posture-hub" policies apply policies/ --dry-run 2>/dev/null | sed -n '1,4p'
echo "  …"
"$BIN/posture-hub" policies apply policies/ 2>/dev/null | grep -E '^(policies|teams|facts):' 

step "connect the hub to Entra: a Graph integration writing extensionAttribute$ATTR"
"$BIN/posture-hub" integrations create --name demo-tenant --cloud custom \
  --authority-host "$AUTHORITY" --graph-base-url "$GRAPH" --extra-ca-file "$WORK/ms-ca.pem" \
  --tenant-id "$TENANT" --client-id "$CLIENT_ID" --client-secret-file "$WORK/client-secret" --attribute "$ATTR" >"$WORK/integration.out"
INTEGRATION=$("$BIN/posture-hub" integrations list --json | jq -r '.integrations[0].id')
"$BIN/posture-hub" integrations test "$INTEGRATION"
echo "Entra holds for $DEVICE: $(attribute)"

step "start a macOS osqueryd stand-in and posture.ext"
"$BIN/fakeosqueryd" --socket "$WORK/osquery.em" --platform darwin --hostname demo-mac --entra-device-id "$DEVICE" \
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

wait_attr() {
  local want=$1 deadline=$(( SECONDS + TIMEOUT ))
  until [ "$(attribute)" = "$want" ]; do
    if (( SECONDS > deadline )); then echo "timed out waiting for Entra to hold $want (holds $(attribute))" >&2; return 1; fi
    sleep 0.2
  done
}
wait_attr Compliant
echo "Entra: extensionAttribute$ATTR of $DEVICE = $(attribute)   (a Conditional Access device filter on it lets the device in)"

step "turn FileVault off on the host"
curl -fsS -X POST --data "UPDATE disk_encryption SET filevault_status = 'off', encrypted = 0, encryption_status = 'not encrypted'" "http://127.0.0.1:$CTL_PORT/exec" >/dev/null
t0=$SECONDS
wait_status RESULT_STATUS_FAIL
echo "$POLICY is now FAIL (seen by the hub within $(( SECONDS - t0 ))s)"
wait_attr Non-compliant
echo "Entra: extensionAttribute$ATTR of $DEVICE = $(attribute)   (within $(( SECONDS - t0 ))s of the change on the host)"

step "turn FileVault back on"
curl -fsS -X POST --data "UPDATE disk_encryption SET filevault_status = 'on', encrypted = 1, encryption_status = 'encrypted'" "http://127.0.0.1:$CTL_PORT/exec" >/dev/null
t0=$SECONDS
wait_status RESULT_STATUS_PASS
echo "$POLICY is PASS again (within $(( SECONDS - t0 ))s)"
wait_attr Compliant
echo "Entra: extensionAttribute$ATTR of $DEVICE = $(attribute)   (within $(( SECONDS - t0 ))s)"

step "the same host through the CLI (gRPC admin API)"
"$BIN/posture-hub" hosts get "$(api /hosts | jq -r '.hosts[0].id')" | sed -n '1,12p'

step "every write Graph received for the device"
curl -fsS --cacert "$WORK/ms-ca.pem" "${DEVICES_VIEW%/devices}/writes" |
  jq -r --arg d "$DEVICE" '(.writes // [])[] | select(.deviceId == $d) | "\(.at)  \(.attribute) = \(.value)"'

step "done: cleaning up"
