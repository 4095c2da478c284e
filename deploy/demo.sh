#!/usr/bin/env bash
# The main job on an embedded default, on a fresh machine:
#   installs the test servers if missing (root), builds ferry, starts a local
#   Redis 7.0 source with mixed data, takes its RDB snapshot, shows what
#   `ferry rdb` reads from it, replays it into a second fresh server and
#   proves both hold the same data (DEBUG DIGEST). Stops what it started.
#
# (The replica link, cluster writer and daemon land in later releases; this
# demo then grows into a live migration into a 3-master cluster.)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null || ! /usr/bin/redis-server --version >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then bash .ci/install-servers.sh; else
        echo "demo: install Redis first: sudo .ci/install-servers.sh" >&2; exit 1; fi
fi
SERVER=/usr/bin/redis-server
CLI=/usr/bin/redis-cli
cargo build --release -q -p ferry
FERRY=target/release/ferry

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# start VAR: start a server on a free port, store the port in VAR (no subshell,
# so the PID is remembered and the server never holds a pipe of ours open).
start() {
    local port dir
    port="$(free_port)"; dir="$work/$port"; mkdir -p "$dir"
    "$SERVER" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
        --daemonize no --enable-debug-command yes --logfile "$dir/log" </dev/null >/dev/null 2>&1 &
    pids+=("$!")
    for _ in $(seq 50); do "$CLI" -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    printf -v "$1" '%s' "$port"
}

start src
echo "== source: Redis $($SERVER --version | sed 's/.*v=\([^ ]*\).*/\1/') on 127.0.0.1:$src"
"$CLI" -p "$src" debug populate 200000 user: 100 >/dev/null
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
} | "$CLI" -p "$src" >/dev/null
"$CLI" -p "$src" save >/dev/null
dump="$work/$src/dump.rdb"
echo "== ferry rdb --format summary ($(stat -c %s "$dump") bytes)"
time "$FERRY" rdb "$dump" --format summary --top 5

start dst
echo "== replay: ferry rdb --format resp | redis-cli --pipe into 127.0.0.1:$dst"
"$FERRY" rdb "$dump" --format resp | "$CLI" -p "$dst" --pipe
a="$("$CLI" -p "$src" debug digest)"; b="$("$CLI" -p "$dst" debug digest)"
echo "== DEBUG DIGEST source $a"
echo "== DEBUG DIGEST copy   $b"
if [ "$a" = "$b" ]; then echo "== identical"; else echo "== DIFFERENT"; exit 1; fi
