#!/usr/bin/env bash
# The main job on an embedded default, on a fresh machine:
#   installs the servers if missing (root), builds ferry, starts a local
#   Redis 7.0 source with 200k mixed keys and a 3-master Redis cluster,
#   runs `ferry run` while a write load hits the source, shows the lag
#   falling to zero, then runs `ferry verify`. Then the same from a 3-master
#   source cluster (one link per source shard) into a new 4-master cluster.
#   Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! /usr/bin/redis-server --version >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null; then
    if [ "$(id -u)" = 0 ]; then bash .ci/install-servers.sh; else
        echo "demo: install Redis first: sudo .ci/install-servers.sh" >&2; exit 1; fi
fi
SERVER=/usr/bin/redis-server
CLI=/usr/bin/redis-cli
BENCH=/usr/bin/redis-benchmark
echo "== building ferry (release)"
cargo build --release -q -p ferry
FERRY="$PWD/target/release/ferry"

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# free_port VAR [bus]: a free 127.0.0.1 port (and port+10000 free too with "bus").
free_port() {
    local p
    p="$(python3 - "${2:-}" <<'PY'
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
)"
    printf -v "$1" '%s' "$p"
}
# start PORT [args...]: a server in its own directory, remembered by PID.
start() {
    local port="$1"; shift
    local dir="$work/$port"; mkdir -p "$dir"
    "$SERVER" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
        --daemonize no --repl-diskless-sync-delay 0 --logfile "$dir/log" "$@" </dev/null >/dev/null 2>&1 &
    pids+=("$!")
    for _ in $(seq 50); do "$CLI" -p "$port" ping >/dev/null 2>&1 && return; sleep 0.1; done
    echo "demo: server on $port did not start" >&2; exit 1
}

free_port SRC
start "$SRC" --enable-debug-command yes
echo "== source: Redis $($SERVER --version | sed 's/.*v=\([^ ]*\).*/\1/') on 127.0.0.1:$SRC"
"$CLI" -p "$SRC" debug populate 200000 user: 100 >/dev/null
{
    for i in $(seq 1 2000); do
        echo "RPUSH queue:$((i % 20)) job-$i"
        echo "HSET profile:$((i % 300)) name n$i visits $i"
        echo "ZADD leaderboard $i player-$i"
        echo "SADD tags:$((i % 10)) t$i"
        echo "XADD events * type click n $i"
    done
    echo "PEXPIREAT user:1 9999999999999"
    echo "XGROUP CREATE events workers 0"
    echo "XREADGROUP GROUP workers w1 COUNT 5 STREAMS events >"
} | "$CLI" -p "$SRC" >/dev/null

# cluster N: starts an N-master cluster; its nodes (host:port) in $nodes.
cluster() {
    nodes=()
    for _ in $(seq "$1"); do
        free_port P bus
        start "$P" --cluster-enabled yes --cluster-config-file "$work/nodes-$P.conf"
        nodes+=("127.0.0.1:$P")
    done
    "$CLI" --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
    for n in "${nodes[@]}"; do
        for _ in $(seq 100); do
            "$CLI" -p "${n#*:}" cluster info 2>/dev/null | grep -q cluster_state:ok && break; sleep 0.1
        done
    done
}
cluster 3
echo "== target: 3-master cluster ${nodes[*]}"

free_port HTTP
cat > "$work/ferry.yaml" <<YAML
source: { url: "redis://127.0.0.1:$SRC" }
target: { url: "redis://${nodes[0]}" }
state_dir: "$work/state"
http: { listen: "127.0.0.1:$HTTP" }
YAML
echo "== ferry run --config ferry.yaml   (status: http://127.0.0.1:$HTTP/status, metrics: /metrics)"
"$FERRY" run --config "$work/ferry.yaml" >"$work/ferry.out" 2>"$work/ferry.log" &
pids+=("$!")
FERRY_PID=$!

echo "== write load on the source while ferry syncs (redis-benchmark, 400k requests, at most 20 s)"
timeout 20 "$BENCH" -p "$SRC" -t set,incr,lpush,hset,sadd,zadd -n 400000 -r 100000 -P 16 -q >/dev/null 2>&1 &
BENCH_PID=$!
while kill -0 "$BENCH_PID" 2>/dev/null; do tail -n 1 "$work/ferry.out" 2>/dev/null || true; sleep 1; done

status() { python3 - "$HTTP" <<'PY'
import json, sys, urllib.request
try:
    s = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/status", timeout=2))
    print(f"phase={s['phase']} source={s['source_offset']} applied={s['applied_offset']} "
          f"lag={s['lag_bytes']} bytes {s['lag_seconds']:.1f}s keys={s['keys_applied']} "
          f"commands={s['commands_applied']} skipped={sum(s['skipped'].values())}")
    sys.exit(0 if s["lag_bytes"] == 0 and s["phase"] == "streaming" else 1)
except Exception as e:
    print(f"status not available yet ({e})"); sys.exit(1)
PY
}
echo "== load stopped; lag falling to zero"
for i in $(seq 1 120); do
    if status; then break; fi
    kill -0 "$FERRY_PID" 2>/dev/null || { echo "ferry exited:"; cat "$work/ferry.log"; exit 1; }
    [ "$i" = 120 ] && { echo "lag did not reach zero"; tail "$work/ferry.log"; exit 1; }
    sleep 0.5
done
echo "== ferry verify"
"$FERRY" verify --config "$work/ferry.yaml" --show 10
kill "$FERRY_PID"; wait "$FERRY_PID" 2>/dev/null || true
echo "== done: the cluster holds the source's data"

echo
echo "== part 2: a 3-master source cluster into a new 4-master cluster (one link per source shard)"
cluster 3
src_nodes=("${nodes[@]}")
"$BENCH" --cluster -h 127.0.0.1 -p "${src_nodes[0]#*:}" -t set,lpush,hset,sadd,zadd -n 100000 -r 100000 -P 16 -q >/dev/null 2>&1
total=0
for n in "${src_nodes[@]}"; do total=$((total + $("$CLI" -p "${n#*:}" dbsize))); done
echo "== source cluster ${src_nodes[*]}: $total keys"
cluster 4
echo "== target: 4-master cluster ${nodes[*]}"
free_port HTTP
cat > "$work/ferry2.yaml" <<YAML
source: { url: "redis://${src_nodes[0]}", mode: cluster }
target: { url: "redis://${nodes[0]}" }
state_dir: "$work/state2"
http: { listen: "127.0.0.1:$HTTP" }
YAML
echo "== ferry run --config ferry2.yaml, while redis-benchmark --cluster writes to the source (at most 15 s)"
"$FERRY" run --config "$work/ferry2.yaml" >"$work/ferry2.out" 2>"$work/ferry2.log" &
pids+=("$!")
FERRY_PID=$!
timeout 15 "$BENCH" --cluster -h 127.0.0.1 -p "${src_nodes[0]#*:}" -t set,incr,lpush,hset -n 200000 -r 100000 -P 16 -q >/dev/null 2>&1 &
BENCH_PID=$!
while kill -0 "$BENCH_PID" 2>/dev/null; do tail -n 1 "$work/ferry2.out" 2>/dev/null || true; sleep 1; done
echo "== load stopped; lag falling to zero on every link"
for i in $(seq 1 120); do
    if status; then break; fi
    kill -0 "$FERRY_PID" 2>/dev/null || { echo "ferry exited:"; cat "$work/ferry2.log"; exit 1; }
    [ "$i" = 120 ] && { echo "lag did not reach zero"; tail "$work/ferry2.log"; exit 1; }
    sleep 0.5
done
"$FERRY" status --http "127.0.0.1:$HTTP" || true
echo "== ferry verify (scans every source master)"
"$FERRY" verify --config "$work/ferry2.yaml" --show 10
echo "== done: the new cluster holds the source cluster's data; stopping everything"
