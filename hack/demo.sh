#!/usr/bin/env bash
# Store-and-forward demo: one always-on node and two edge nodes on 127.0.0.1.
#
#   1. edge 1 publishes, edge 2 receives it (through the network)
#   2. edge 1 goes offline; the always-on node publishes
#   3. edge 2 goes offline too; edge 1 comes back and receives the message it missed
#      from the always-on node, the only peer online that holds it
#
# Usage: hack/demo.sh [path/to/panda-node]   (make demo builds it first)
# Needs nothing but bash and the binary. Exits non-zero if a message does not arrive in time.
set -euo pipefail

BIN=${1:-bin/panda-node}
TIMEOUT=${DEMO_TIMEOUT:-60}   # seconds to wait for each message
[[ -x $BIN ]] || { echo "demo: $BIN not found; run 'make demo'" >&2; exit 2; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/panda-demo.XXXXXX")
PIDS=()
cleanup() {
	local code=$?
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [[ $code -ne 0 ]]; then
		echo
		echo "== demo FAILED; last node logs =="
		for f in "$WORK"/*.log; do [[ -f $f ]] && { echo "--- $(basename "$f")"; tail -n 20 "$f"; }; done
	fi
	rm -rf "$WORK"
	exit $code
}
trap cleanup EXIT INT TERM

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
info() { printf '   %s\n' "$*"; }

# Ports: a random base so parallel runs and leftovers do not collide.
BASE=$((20000 + RANDOM % 20000))
declare -A P2P ADMIN METRICS PID PEER
i=0
for n in always-on edge1 edge2; do
	P2P[$n]=$((BASE + i)); ADMIN[$n]=$((BASE + 10 + i)); METRICS[$n]=$((BASE + 20 + i)); i=$((i + 1))
	mkdir -p "$WORK/$n"
	PEER[$n]=$("$BIN" keygen --out "$WORK/$n/identity.key" | awk '/^peer-id:/ {print $2}')
done
echo "demo" > "$WORK/topics"
addr() { echo "/ip4/127.0.0.1/tcp/${P2P[$1]}/p2p/${PEER[$1]}"; }
cli() { local n=$1; shift; PANDA_ADMIN_ADDR=127.0.0.1:${ADMIN[$n]} "$BIN" "$@"; }

start() { # name extra-flags...
	local n=$1; shift
	"$BIN" run --data-dir "$WORK/$n" --network-id pandanet-demo --mdns=false \
		--listen "/ip4/127.0.0.1/tcp/${P2P[$n]}" --admin-listen "127.0.0.1:${ADMIN[$n]}" \
		--metrics-listen "127.0.0.1:${METRICS[$n]}" --topics-file "$WORK/topics" "$@" \
		>>"$WORK/$n.log" 2>&1 &
	PID[$n]=$!; PIDS+=("$!")
	for _ in $(seq 100); do
		cli "$n" status >/dev/null 2>&1 && { info "$n is up: ${PEER[$n]}"; return; }
		kill -0 "${PID[$n]}" 2>/dev/null || { echo "demo: $n exited during start" >&2; exit 1; }
		sleep 0.2
	done
	echo "demo: $n did not come up" >&2; exit 1
}
stop() {
	kill -TERM "${PID[$1]}"; wait "${PID[$1]}" 2>/dev/null || true
	info "$1 stopped (SIGTERM, graceful)"
}
subscribe() { # name → prints events of topic demo into $WORK/name.events
	cli "$1" subscribe --topic demo --from start >>"$WORK/$1.events" 2>>"$WORK/$1.log" &
	PIDS+=("$!")
}
expect() { # name message
	local n=$1 msg=$2
	for _ in $(seq $((TIMEOUT * 5))); do
		if grep -qF -- "$msg" "$WORK/$n.events" 2>/dev/null; then
			info "$n received: $(grep -F -- "$msg" "$WORK/$n.events" | head -n1)"
			return
		fi
		sleep 0.2
	done
	echo "demo: $n did not receive \"$msg\" within ${TIMEOUT}s" >&2
	exit 1
}

say "starting the always-on node (public, relay service) and two edge nodes bootstrapped to it"
start always-on --public --relay-service
start edge1 --bootstrap "$(addr always-on)"
start edge2 --bootstrap "$(addr always-on)"
subscribe edge2

say "edge 1 publishes; edge 2 should receive it"
info "$(cli edge1 publish --topic demo 'hello from edge 1')   (hash seq)"
expect edge2 'hello from edge 1'

say "edge 1 goes offline; the always-on node publishes while it is away"
stop edge1
info "$(cli always-on publish --topic demo 'stored while edge 1 was offline')   (hash seq)"
expect edge2 'stored while edge 1 was offline'

say "edge 2 goes offline too; edge 1 comes back and catches up from the always-on node"
stop edge2
start edge1 --bootstrap "$(addr always-on)"
subscribe edge1
expect edge1 'stored while edge 1 was offline'

say "topics on the always-on node"
cli always-on topics
say "demo OK: the always-on node stored and forwarded the message edge 1 missed"
