#!/usr/bin/env bash
# Streaming throughput of `ferry run` with and without
# `target.wait_replicas` (an offset counts as applied only once `WAIT 1`
# says a replica has its transactions), measured in the same run:
#
#   a standalone Redis 7.0 source (1 GiB backlog) and a Redis 7.0 cluster
#   of 3 masters + 3 replicas on 127.0.0.1; ferry (checkpoints on) syncs the
#   empty source, then, per round: stop ferry (SIGTERM), write M commands
#   into the source's backlog, start ferry with wait_replicas unset / 100 ms
#   (alternating, twice each), time from
#   process start until /status shows applied_offset >= the source's
#   master_repl_offset. Rate = M / time (process start and the checkpoint
#   read at connect included).
#
# Commands (python3 → redis-cli --pipe): INCR c:<r%100000>, RPUSH
# l:<r%1000> <i>, SET s:<i%200000> <32 bytes>, one third each: keys spread
# over every slot (the costly case for per-slot transactions).
#
#   benches/results/stream_wait_replicas.md   the table
#
# Environment: M (default 600000), STEP_TIMEOUT (default 600), FERRY_BIN,
# FERRY_REDIS70, FERRY_REDIS_CLI (binaries; default /usr/bin/..., 7.x).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
M="${M:-600000}"
step_timeout="${STEP_TIMEOUT:-600}"

log() { echo "+ $*" >&2; }
now() { date +%s.%N; }

find_v7() {
    local want="$1" override="$2" c
    for c in "$override" "/usr/bin/$want" "$(command -v "$want" || true)"; do
        [[ -n "$c" && -x "$c" ]] || continue
        if "$c" --version 2>/dev/null | grep -Eq '(v=| )7\.'; then
            echo "$c"
            return 0
        fi
    done
    echo "no $want 7.x found" >&2
    return 1
}
SERVER="$(find_v7 redis-server "${FERRY_REDIS70:-}")"
CLI="$(find_v7 redis-cli "${FERRY_REDIS_CLI:-}")"

if [[ -n "${FERRY_BIN:-}" ]]; then
    FERRY="$FERRY_BIN"
else
    log "cargo build --release -p ferry"
    timeout "$step_timeout" cargo build --release -q -p ferry
    target_dir="$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    FERRY="$target_dir/release/ferry"
fi

work="$(mktemp -d -t ferry-stream-wait-XXXXXX)"
pids=()
stop_pid() {
    local p="$1"
    kill -0 "$p" 2>/dev/null || return 0
    kill "$p" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}
cleanup() {
    local p
    for p in "${pids[@]}"; do stop_pid "$p"; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 - "${1:-}" <<'PY'
import socket, sys
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    if len(sys.argv) > 1 and sys.argv[1] == "bus":
        if p + 10000 > 65535: continue
        try:
            b = socket.socket(); b.bind(("127.0.0.1", p + 10000)); b.close()
        except OSError: continue
    print(p); break
PY
}
cli() { local port="$1"; shift; timeout "$step_timeout" "$CLI" -h 127.0.0.1 -p "$port" "$@"; }
info_field() { cli "$1" info "$2" | tr -d '\r' | sed -n "s/^$3:\(.*\)$/\1/p"; }
start() {
    local port="$1"; shift
    local dir="$work/$port"; mkdir -p "$dir"
    "$SERVER" --port "$port" --bind 127.0.0.1 --protected-mode no --save '' --appendonly no \
        --dir "$dir" --daemonize no --logfile "$dir/log" "$@" </dev/null >/dev/null 2>&1 &
    pids+=("$!")
    for _ in $(seq 100); do cli "$port" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "server on $port did not start" >&2; exit 1
}
applied() {
    python3 - "$1" <<'PY'
import json, sys, urllib.request
try:
    s = json.load(urllib.request.urlopen(f"http://{sys.argv[1]}/status", timeout=2))
    print(s.get("applied_offset") or 0, s.get("phase"))
except Exception:
    print(0, "none")
PY
}
fill() {
    python3 - "$2" "$3" <<'PY' | timeout "$step_timeout" "$CLI" -h 127.0.0.1 -p "$1" --pipe >"$work/pipe.log"
import random, sys
n, seed = int(sys.argv[1]), int(sys.argv[2])
rnd = random.Random(seed)
out = sys.stdout.buffer
def cmd(*a):
    return b"*%d\r\n" % len(a) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in a)
buf = []
for i in range(n):
    r = rnd.randrange(1 << 30)
    k = i % 3
    if k == 0:
        buf.append(cmd(b"INCR", b"c:%d" % (r % 100000)))
    elif k == 1:
        buf.append(cmd(b"RPUSH", b"l:%d" % (r % 1000), b"%d" % i))
    else:
        buf.append(cmd(b"SET", b"s:%d" % (i % 200000), b"%032d" % r))
    if len(buf) >= 10000:
        out.write(b"".join(buf)); buf = []
out.write(b"".join(buf))
PY
    grep -q 'errors: 0' "$work/pipe.log" || { cat "$work/pipe.log" >&2; exit 1; }
}

SRC="$(free_port)"
start "$SRC" --repl-backlog-size 1gb
nodes=()
for _ in 1 2 3 4 5 6; do
    P="$(free_port bus)"
    start "$P" --cluster-enabled yes --cluster-config-file "$work/nodes-$P.conf"
    nodes+=("$P")
done
timeout "$step_timeout" "$CLI" --cluster create $(printf '127.0.0.1:%s ' "${nodes[@]}") \
    --cluster-replicas 1 --cluster-yes >"$work/cluster-create.log" 2>&1 ||
    { cat "$work/cluster-create.log" >&2; exit 1; }
for n in "${nodes[@]}"; do
    for i in $(seq 300); do
        cli "$n" cluster info 2>/dev/null | grep -q cluster_state:ok && break
        [[ $i == 300 ]] && { echo "cluster node $n not ok" >&2; exit 1; }
        sleep 0.1
    done
done
# Every replica in sync (WAIT 1 needs one per master).
for n in "${nodes[@]}"; do
    for i in $(seq 300); do
        [[ "$(info_field "$n" replication role)" == master ||
            "$(info_field "$n" replication master_link_status)" == up ]] && break
        [[ $i == 300 ]] && { echo "replica $n not in sync" >&2; exit 1; }
        sleep 0.1
    done
done
HTTP="$(free_port)"
config() {
    cat >"$work/ferry.yaml" <<YAML
source: { url: "redis://127.0.0.1:$SRC" }
target: { url: "redis://127.0.0.1:${nodes[0]}"$1 }
state_dir: "$work/ferry-state"
http: { listen: "127.0.0.1:$HTTP" }
YAML
}
FERRY_PID=""
run_ferry() {
    "$FERRY" run --config "$work/ferry.yaml" >"$work/ferry.out" 2>>"$work/ferry.log" &
    FERRY_PID="$!"
    pids+=("$FERRY_PID")
}
wait_applied() {
    local want="$1" deadline=$(( $(date +%s) + step_timeout )) a phase
    while :; do
        read -r a phase < <(applied "127.0.0.1:$HTTP")
        [[ "$phase" == streaming && "$a" -ge "$want" ]] && return 0
        (( $(date +%s) > deadline )) && { echo "ferry did not catch up" >&2; tail "$work/ferry.log" >&2; exit 1; }
        sleep 0.05
    done
}

config ""
run_ferry
wait_applied "$(info_field "$SRC" replication master_repl_offset)"
rows=()
round=0
for mode in 100 off 100 off; do
    round=$((round + 1))
    stop_pid "$FERRY_PID"
    fill "$SRC" "$M" "$round"
    want="$(info_field "$SRC" replication master_repl_offset)"
    if [[ "$mode" == off ]]; then config ""; else config ", wait_replicas: $mode"; fi
    t0=$(now)
    run_ferry
    wait_applied "$want"
    secs="$(python3 -c "print(round($(now) - $t0, 2))")"
    rate="$(python3 -c "print(int($M / ($(now) - $t0)))")"
    log "round $round: wait_replicas=$mode: $M commands in $secs s = $rate commands/s"
    rows+=("| $round | $mode | $M | $secs | $rate |")
done
mkdir -p benches/results
{
    echo "# Streaming with and without target.wait_replicas (\`benches/stream_wait_replicas.sh\`)"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), Redis $("$SERVER" --version | sed 's/.*v=\([^ ]*\).*/\1/'),"
    echo "source backlog replayed by a restarted \`ferry run\` (release, checkpoints on) into 3 local masters + 3 replicas;"
    echo "INCR/RPUSH/SET over keys spread on every slot."
    echo
    echo "| round | wait_replicas (ms) | commands | seconds | commands/s |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
} >benches/results/stream_wait_replicas.md
cat benches/results/stream_wait_replicas.md
