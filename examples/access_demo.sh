#!/usr/bin/env bash
# The access-control scenario end to end, on a local SeaweedFS with IAM and STS (started here,
# bound to 127.0.0.1, stopped at the end):
#
#   two analysts each granted one repo (alice reads cams, bob labels detections), a camera that
#   can only upload, and a pipeline identity, the only one that may move detections@main.
#
# Each tries what it may and may not do through `s3fsv mount --gateway` and through plain boto3
# with the credentials the gateway issued; `s3fsv audit log` then shows every step.
#
#   examples/access_demo.sh          (from the repository root, after `make .venv/.installed`)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$PWD/.venv/bin/python}
WORK=$(mktemp -d /tmp/s3fsv-access-demo.XXXXXX)
export XDG_STATE_HOME=$WORK/state XDG_CACHE_HOME=$WORK/cache XDG_CONFIG_HOME=$WORK/config
export S3FSV_PRINCIPAL=ops          # the store's owner, using the store's own credentials
SERVER=""; GATEWAY=""; RECEIVER=""
s3fsv() { "$PY" -m s3fsv.cli "$@"; }
step() { printf '\n== %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
try() { # run, show the outcome, carry on either way
	printf '$ %s\n' "$*"
	if "$@" > "$WORK/out" 2>&1; then sed 's/^/   /' "$WORK/out"; echo "   -> allowed"
	else local rc=$?; sed 's/^/   /' "$WORK/out"; echo "   -> refused (exit $rc)"; fi
}
# A principal's shell: no cloud credentials at all, only its token and the gateway.
as() {
	local who=$1; shift
	env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_ENDPOINT_URL -u S3FSV_STORE \
		S3FSV_GATEWAY="$GW" S3FSV_TOKEN_FILE="$WORK/$who.token" "$@"
}
cleanup() {
	for mp in "$WORK"/mnt/*; do
		[ -d "$mp" ] && mountpoint -q "$mp" && s3fsv unmount "$mp" >/dev/null 2>&1 || true
	done
	[ -n "$GATEWAY" ] && kill "$GATEWAY" 2>/dev/null && wait "$GATEWAY" 2>/dev/null || true
	[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
	[ -n "$RECEIVER" ] && kill "$RECEIVER" 2>/dev/null && wait "$RECEIVER" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }

step "a storage engine that enforces IAM policies and issues STS sessions (SeaweedFS, loopback)"
LOG_PORT=$(free_port)  # the engine sends a record of every request here
s3fsv audit receive --listen "127.0.0.1:$LOG_PORT" --out "$WORK/requests.jsonl" 2> /dev/null &
RECEIVER=$!
"$PY" tests/iamserver.py "$WORK/weed" "$WORK/server.env" "$LOG_PORT" > "$WORK/weed.out" 2>&1 &
SERVER=$!
for _ in $(seq 600); do [ -s "$WORK/server.env" ] && break; sleep 0.1; done
# shellcheck disable=SC1091
source "$WORK/server.env"
"$PY" -c "import boto3; boto3.client('s3').create_bucket(Bucket='demo', ObjectLockEnabledForBucket=True)"
export S3FSV_STORE=s3://demo/store
show s3fsv init
show s3fsv repo create cams
show s3fsv repo create detections
mkdir -p "$WORK/photos" "$WORK/labels"
for n in 1 2 3; do printf 'jpeg bytes of photo %s\n' "$n" > "$WORK/photos/cam-17-000$n.jpg"; done
echo '{"faces": []}' > "$WORK/labels/initial.json"
show s3fsv put -q "$WORK/photos" cams@main:images -m "photos from customer homes"
show s3fsv put -q "$WORK/labels" detections@main:labels -m "empty labels"
show s3fsv audit init --retain-days 30

step "grants: every change is a record in STORE/_access/"
show s3fsv access grant alice read cams
show s3fsv access grant bob write detections
show s3fsv access grant cam-17 upload cams --prefix incoming/cam-17/ --device
show s3fsv access grant pipeline-detect read cams
show s3fsv access grant pipeline-detect write detections
show s3fsv access protect detections@main --allow pipeline-detect
try s3fsv access check alice write cams@main
try s3fsv access check bob write detections@main
try s3fsv access check pipeline-detect write detections@main
show s3fsv access compile --session cam-17
for who in alice bob cam-17 pipeline-detect; do
	s3fsv access token create "$who" --expires 1d --out "$WORK/$who.token"
done

step "the gateway: its own credentials may only assume the ceiling role"
PORT=$(free_port)
GW=http://127.0.0.1:$PORT
AWS_ACCESS_KEY_ID=$GATEWAY_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$GATEWAY_SECRET_ACCESS_KEY \
	"$PY" -m s3fsv.cli serve --role-arn "$CEILING_ROLE_ARN" --listen "127.0.0.1:$PORT" \
	> "$WORK/gateway.log" 2>&1 &
GATEWAY=$!
for _ in $(seq 200); do curl -sf "$GW/v1/health" >/dev/null && break; sleep 0.1; done
echo "gateway on $GW for $S3FSV_STORE"
mkdir -p "$WORK"/mnt/{alice,alice-detections,bob,cam,pipeline}

step "alice (read cams): mounts cams through the gateway, with no cloud credentials"
try as alice "$PY" -m s3fsv.cli mount cams "$WORK/mnt/alice"
show ls "$WORK/mnt/alice/branch/main/images"
show cat "$WORK/mnt/alice/branch/main/images/cam-17-0001.jpg"
echo "a note" > "$WORK/mnt/alice/branch/main/note.txt"
try as alice "$PY" -m s3fsv.cli commit "$WORK/mnt/alice/branch/main" -m "alice writes"
as alice "$PY" -m s3fsv.cli discard "$WORK/mnt/alice/branch/main" > /dev/null
try as alice "$PY" -m s3fsv.cli mount detections "$WORK/mnt/alice-detections"
as alice "$PY" examples/access_probe.py "$GW" "$WORK/alice.token" get cams/repo.json detections/repo.json
as alice "$PY" examples/access_probe.py "$GW" "$WORK/alice.token" list cams/ cams detections/
as alice "$PY" examples/access_probe.py "$GW" "$WORK/alice.token" delete cams/repo.json
s3fsv unmount "$WORK/mnt/alice"

step "bob (write detections): labels on his own branch; main is protected"
try as bob "$PY" -m s3fsv.cli branch create detections bob-labels
try as bob "$PY" -m s3fsv.cli mount detections "$WORK/mnt/bob"
echo '{"faces": [[10, 20, 64, 64]]}' > "$WORK/mnt/bob/branch/bob-labels/labels/cam-17-0001.json"
try as bob "$PY" -m s3fsv.cli commit "$WORK/mnt/bob/branch/bob-labels" -m "bob's labels"
echo '{"faces": "overwritten"}' > "$WORK/mnt/bob/branch/main/labels/initial.json"
try as bob "$PY" -m s3fsv.cli commit "$WORK/mnt/bob/branch/main" -m "bob moves main"
as bob "$PY" -m s3fsv.cli discard "$WORK/mnt/bob/branch/main" > /dev/null
as bob "$PY" examples/access_probe.py "$GW" "$WORK/bob.token" put detections/refs/branches/main
as bob "$PY" examples/access_probe.py "$GW" "$WORK/bob.token" get cams/repo.json
s3fsv unmount "$WORK/mnt/bob"

step "cam-17 (upload only): a camera with requests and a token"
try as cam-17 "$PY" examples/device_upload.py --gateway "$GW" --token-file "$WORK/cam-17.token" \
	--repo cams --prefix incoming/cam-17/ --frames 2
try as cam-17 "$PY" examples/device_upload.py --gateway "$GW" --token-file "$WORK/cam-17.token" \
	--repo cams --prefix incoming/cam-18/ --frames 1
try as cam-17 "$PY" -m s3fsv.cli mount cams "$WORK/mnt/cam"
as cam-17 "$PY" examples/access_probe.py "$GW" "$WORK/cam-17.token" get cams/repo.json
as cam-17 "$PY" examples/access_probe.py "$GW" "$WORK/cam-17.token" \
	put _uploads/cams/incoming/cam-18/forged.jpg cams/objects/00/forged

step "pipeline-detect: the only identity that may move detections@main"
try as pipeline-detect "$PY" -m s3fsv.cli mount detections "$WORK/mnt/pipeline"
echo '{"faces": [[12, 22, 60, 60]]}' > "$WORK/mnt/pipeline/branch/main/labels/cam-17-0001.json"
try as pipeline-detect "$PY" -m s3fsv.cli commit "$WORK/mnt/pipeline/branch/main" -m "detections"
s3fsv unmount "$WORK/mnt/pipeline"

step "a revoked token is refused at once"
TOKEN_ID=$(s3fsv access token list --json | "$PY" -c \
	"import json,sys; print([t['id'] for t in json.load(sys.stdin) if t['principal']=='alice'][0])")
show s3fsv access token revoke "$TOKEN_ID"
try as alice "$PY" -m s3fsv.cli ls cams

step "the audit trail: who read and wrote what, and when"
show s3fsv audit log
sleep 1  # the engine's last request records are in flight
show s3fsv audit ingest "$WORK/requests.jsonl"
step "what the engine itself saw of bob and cam-17, request by request, folded in"
show s3fsv audit log --principal bob --action engine.
show s3fsv audit log --principal cam-17 --action engine.
show s3fsv audit verify
