#!/usr/bin/env bash
# Receive rate of a full sync: ferry's replica link with a no-op consumer
# (crates/ferry-replica/examples/sync_rate.rs) against `redis-cli --rdb
# /dev/null`, from the same Redis 7.0 source in the same run.
#
#   benches/results/replica_rate.md   the table
#
# The source (a temp dir, free 127.0.0.1 port, killed by PID on exit) holds
# `DEBUG POPULATE 1000000 key 100` (compressible: "value:N" padded with
# zeros) plus RANDOM_KEYS strings of 100 random bytes (incompressible: LZF
# cannot shrink them), loaded with `redis-cli --pipe`. redis-benchmark is
# not used for this: its values are all 'x', which LZF squeezes to a few
# bytes.
#
# Each mode (diskless: `repl-diskless-sync yes`, the source streams the RDB
# while forking it; disk: the source writes dump.rdb first, then sends it
# as `$<len>`) runs ROUNDS rounds, alternating redis-cli and ferry, and
# reports the median wall time of each, from process start to the
# snapshot's last byte (redis-cli) / the `SnapshotEnd` event (ferry): both
# include the handshake and the source's fork/save. MB = 10^6 bytes of
# RDB, as counted by redis-cli.
#
# ferry's line also reports its spool: the peak bytes held (sampled every
# 10 ms) and the segment files / bytes it wrote to disk (0 while decoding
# keeps up with the socket: "no disk writes" when the consumer keeps up).
#
# Environment: ROUNDS (default 3), RANDOM_KEYS (default 300000),
# FERRY_REDIS70 (redis-server 7.0 binary), FERRY_REDIS_CLI, SYNC_RATE_BIN
# (a prebuilt sync_rate example, e.g. of an older commit, to compare;
# SYNC_RATE_LABEL names it in the table), OUT (the table's file).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rounds="${ROUNDS:-3}"
random_keys="${RANDOM_KEYS:-300000}"
step_timeout=300

# A binary whose `--version` reports 7.x (a pyenv shim on PATH may run 6.2).
find_v7() {
    local want="$1" override="$2" c
    for c in "$override" "/usr/bin/$want" "$(command -v "$want" || true)"; do
        [[ -n "$c" && -x "$c" ]] || continue
        if "$c" --version 2>/dev/null | grep -Eq '(v=| )7\.'; then
            echo "$c"
            return 0
        fi
    done
    echo "no $want 7.x found (tried ${override:-}, /usr/bin/$want, PATH)" >&2
    return 1
}
server_bin="$(find_v7 redis-server "${FERRY_REDIS70:-}")"
cli_bin="$(find_v7 redis-cli "${FERRY_REDIS_CLI:-}")"
echo "+ server: $server_bin ($("$server_bin" --version | cut -d' ' -f3))" >&2

if [[ -n "${SYNC_RATE_BIN:-}" ]]; then
    sync_rate="$SYNC_RATE_BIN"
    build="${SYNC_RATE_LABEL:-prebuilt $(basename "$sync_rate")}"
else
    echo "+ cargo build --release -p ferry-replica --example sync_rate" >&2
    cargo build --release -q -p ferry-replica --example sync_rate
    target_dir="$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    sync_rate="$target_dir/release/examples/sync_rate"
    build="commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')"
fi

load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
work="$(mktemp -d -t ferry-replica-rate-XXXXXX)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

"$server_bin" --port "$port" --bind 127.0.0.1 --protected-mode no --dir "$work" \
    --dbfilename dump.rdb --logfile "$work/server.log" --save '' --appendonly no \
    --daemonize no --enable-debug-command yes --repl-diskless-sync-delay 0 &
server_pid=$!
cli() { timeout "$step_timeout" "$cli_bin" -p "$port" "$@"; }
for _ in $(seq 100); do
    cli ping >/dev/null 2>&1 && break
    sleep 0.1
done
cli ping >/dev/null

echo "+ DEBUG POPULATE 1000000 key 100; $random_keys random 100-byte strings" >&2
cli debug populate 1000000 key 100 >/dev/null
python3 - "$random_keys" <<'EOF' | cli --pipe >/dev/null
import os
import sys

n = int(sys.argv[1])
out = sys.stdout.buffer
batch = []
for i in range(n):
    key = b"rnd:%d" % i
    val = os.urandom(100)
    batch.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n" % (len(key), key, val))
    if len(batch) == 10000:
        out.write(b"".join(batch))
        batch = []
out.write(b"".join(batch))
EOF
keys="$(cli dbsize)"
used="$(cli info memory | sed -n 's/^used_memory_human:\(.*\)\r$/\1/p')"
echo "+ $keys keys, $used" >&2

now() { date +%s.%N; }

# Prints "<seconds> <bytes>" for one `redis-cli --rdb /dev/null`.
run_cli() {
    local t0 t1 log="$work/cli.log"
    t0=$(now)
    # Exits 1 on /dev/null (ftruncate/fsync fail) after a complete transfer.
    cli --rdb /dev/null >"$log" 2>&1 || true
    t1=$(now)
    grep -q 'Transfer finished with success' "$log" || {
        cat "$log" >&2
        return 1
    }
    local bytes
    bytes="$(grep -oE 'success after [0-9]+ bytes|writing [0-9]+ bytes' "$log" | grep -oE '[0-9]+' | head -1)"
    echo "$(python3 -c "print($t1 - $t0)") $bytes"
}

# Prints "<seconds> <keys> <spool peak bytes> <segments> <disk bytes>
# <seconds from the first decoded record>" for
# one ferry receive ("-" for what an older sync_rate does not report).
run_ferry() {
    local out
    out="$(timeout "$step_timeout" "$sync_rate" "127.0.0.1:$port")"
    echo "$out" >&2
    field() { grep -oE "(^| )$1=[0-9.]+" <<<"$out" | cut -d= -f2 || true; }
    local peak seg disk
    peak="$(field spool_peak)" seg="$(field segments)" disk="$(field disk_bytes)"
    local dec
    dec="$(field decode_seconds)"
    echo "$(field seconds) $(field keys) ${peak:--} ${seg:--} ${disk:--} ${dec:--}"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

rows=()
for mode in diskless disk; do
    cli config set repl-diskless-sync "$([[ $mode == diskless ]] && echo yes || echo no)" >/dev/null
    cli_times=() ferry_times=() dec_times=() bytes="" fkeys="" peak_max=0 segs="-" disk="-"
    for r in $(seq "$rounds"); do
        read -r t b < <(run_cli)
        echo "  $mode round $r: redis-cli ${t}s, $b bytes" >&2
        cli_times+=("$t")
        bytes="$b"
        read -r t k p sg dk dec < <(run_ferry)
        [[ "$dec" != "-" ]] && dec_times+=("$dec")
        echo "  $mode round $r: ferry ${t}s, $k keys, spool peak $p bytes, $sg segments, $dk disk bytes" >&2
        ferry_times+=("$t")
        fkeys="$k"
        if [[ "$p" != "-" ]]; then
            ((p > peak_max)) && peak_max="$p"
            if [[ "$segs" == "-" ]]; then segs=0 disk=0; fi
            segs=$((segs + sg)) disk=$((disk + dk))
        fi
        # Let the source's fork child exit before the next sync.
        for _ in $(seq 100); do
            [[ "$(cli info persistence | sed -n 's/^rdb_bgsave_in_progress:\([0-9]\)\r$/\1/p')" == 0 ]] && break
            sleep 0.1
        done
    done
    [[ "$fkeys" == "$keys" ]] || echo "WARNING: ferry decoded $fkeys keys, the source holds $keys" >&2
    ct="$(printf '%s\n' "${cli_times[@]}" | median)"
    ft="$(printf '%s\n' "${ferry_times[@]}" | median)"
    dt="-"
    ((${#dec_times[@]})) && dt="$(printf '%s\n' "${dec_times[@]}" | median)"
    rows+=("$(python3 - "$mode" "$bytes" "$ct" "$ft" "$fkeys" "${cli_times[*]}" "${ferry_times[*]}" "$peak_max" "$segs" "$disk" "$dt" <<'EOF'
import sys
mode, b, ct, ft, keys, call, fall, peak, segs, disk, dt = sys.argv[1:12]
b, ct, ft = int(b), float(ct), float(ft)
mb = b / 1e6
ratio = (mb / ft) / (mb / ct)
ok = "yes" if ratio >= 0.9 else "NO"
spool = "-" if segs == "-" else f"{int(peak) / 1e6:.1f} MB / {segs} / {int(disk) / 1e6:.1f} MB"
dec = "-" if dt == "-" else f"{float(dt):.3f}"
print(f"| {mode} | {mb:.1f} | {int(keys):,} | {ct:.3f} | {mb/ct:.0f} | {ft:.3f} | {mb/ft:.0f} | {ratio:.2f}x | {ok} |"
      f" {', '.join(f'{float(x):.2f}' for x in call.split())} / {', '.join(f'{float(x):.2f}' for x in fall.split())} | {dec} | {spool} |")
EOF
)")
done

mkdir -p benches/results
{
    echo "# Replica link: full-sync receive rate"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)),"
    echo "$("$server_bin" --version | cut -d' ' -f1-3), ferry: $build,"
    echo "load average (1/5/15 min) at the start: $load_start, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "Dataset: $keys keys ($used used memory): DEBUG POPULATE 1000000 key 100 + $random_keys × 100 random bytes."
    echo "Median of $rounds rounds each (alternating). Command: \`benches/replica_rate.sh\`."
    echo
    echo "| mode | RDB MB | keys | redis-cli s | redis-cli MB/s | ferry s | ferry MB/s | ratio (ferry / redis-cli) | ≥ 0.9 | all rounds s (redis-cli / ferry) | ferry s from the first record | ferry spool: peak held / segment files / disk bytes (all rounds) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "redis-cli: \`redis-cli --rdb /dev/null\` (it exits 1 on /dev/null after"
    echo "the transfer, ftruncate/fsync fail; the success line is checked). ferry:"
    echo "\`ferry_replica::Link\` (release build) until \`SnapshotEnd\`, decoding every"
    echo "record (CRC64 verified) with a consumer that drops each event; wall time from"
    echo "\`Link::start\`. Both include the handshake and the source's fork (diskless:"
    echo "the source serializes while sending, so it may bound both; disk: a BGSAVE to"
    echo "dump.rdb precedes each transfer). Same host, loopback. Spool: memory"
    echo "64 MiB, then segment files; the peak is the most it held in any round."
    echo "\"From the first record\": median seconds from ferry's first decoded record"
    echo "(after the source's fork/save) to \`SnapshotEnd\`, the part ferry's speed decides."
} >"${OUT:-benches/results/replica_rate.md}"
cat "${OUT:-benches/results/replica_rate.md}"
