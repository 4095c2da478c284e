#!/usr/bin/env bash
# Full-sync benchmark (issue 6, part 2): N strings of 100 incompressible
# bytes from a standalone Redis 7.0 source into a 3-master Redis Cluster,
# against real baselines measured in the same run:
#
#   (a) ferry      `ferry run` (release) from process start until /status
#                  shows phase=streaming and applied_offset >= the source's
#                  master_repl_offset (both polled every 100 ms)
#   (b) replica    a plain redis-server: `REPLICAOF` until INFO replication
#                  shows master_link_status:up and master_sync_in_progress:0
#   (c) ceiling    `redis-benchmark --cluster -t set -n N -P 64 -r N -d 100`
#                  into the FLUSHALLed cluster (its SET/s; time = N / rate)
#   (d) import     `redis-cli --cluster import --cluster-copy --cluster-replace`
#                  of an IMPORT_N-key subset (own standalone server, same
#                  generator), extrapolated to N by keys/s; IMPORT_N=0 skips it
#
#   benches/results/full_sync.md    the table
#   benches/results/full_sync.json  the same, machine-readable
#
# Data: python3 writes `SET k:<i> <100 random bytes>` (os.urandom, so LZF
# cannot shrink the RDB) as RESP into `redis-cli --pipe`.
#
# Every server lives in a temp dir on free 127.0.0.1 ports and is stopped by
# PID on exit; every step has a timeout (STEP_TIMEOUT seconds).
#
# Environment: N (default 1000000), IMPORT_N (default 100000), STEP_TIMEOUT
# (default 600), FERRY_BIN (use this ferry binary instead of building the
# workspace), FERRY_REDIS70 / FERRY_REDIS_CLI / FERRY_REDIS_BENCHMARK
# (binaries; default /usr/bin/..., which must report 7.x).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
N="${N:-1000000}"
IMPORT_N="${IMPORT_N:-100000}"
step_timeout="${STEP_TIMEOUT:-600}"
wall0=$(date +%s.%N)
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

log() { echo "+ $*" >&2; }
now() { date +%s.%N; }

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
SERVER="$(find_v7 redis-server "${FERRY_REDIS70:-}")"
CLI="$(find_v7 redis-cli "${FERRY_REDIS_CLI:-}")"
BENCH="$(find_v7 redis-benchmark "${FERRY_REDIS_BENCHMARK:-}")"
server_version="$("$SERVER" --version | sed 's/.*v=\([^ ]*\).*/\1/')"
log "server: $SERVER ($server_version), cli: $CLI, benchmark: $BENCH"

if [[ -n "${FERRY_BIN:-}" ]]; then
    FERRY="$FERRY_BIN"
    ferry_note="binary $FERRY_BIN (FERRY_BIN, not built from this tree)"
    log "ferry: $FERRY (FERRY_BIN, not rebuilt)"
else
    log "cargo build --release -p ferry"
    timeout "$step_timeout" cargo build --release -q -p ferry
    target_dir="$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    FERRY="$target_dir/release/ferry"
    ferry_note="built from this tree (cargo build --release -p ferry)"
fi
[[ -x "$FERRY" ]] || { echo "no ferry binary at $FERRY" >&2; exit 1; }

work="$(mktemp -d -t ferry-full-sync-XXXXXX)"
pids=()
stop_pid() {
    local p="$1"
    kill -0 "$p" 2>/dev/null || return 0
    kill "$p" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
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

# free_port VAR [bus]: a free 127.0.0.1 port not handed out before in this
# run (and port+10000 free too with "bus").
used_ports=" "
free_port() {
    local p
    while :; do
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
        [[ "$used_ports" == *" $p "* || "$used_ports" == *" $((p + 10000)) "* ]] && continue
        used_ports+="$p $((p + 10000)) "
        break
    done
    printf -v "$1" '%s' "$p"
}

cli() { local port="$1"; shift; timeout "$step_timeout" "$CLI" -h 127.0.0.1 -p "$port" "$@"; }
info_field() { cli "$1" info "$2" | tr -d '\r' | sed -n "s/^$3:\(.*\)$/\1/p"; }

# start PORT [args...]: a server in its own directory, remembered by PID.
start() {
    local port="$1"; shift
    local dir="$work/$port"; mkdir -p "$dir"
    "$SERVER" --port "$port" --bind 127.0.0.1 --protected-mode no --save '' --appendonly no \
        --dir "$dir" --daemonize no --repl-diskless-sync-delay 0 --logfile "$dir/log" "$@" \
        </dev/null >/dev/null 2>&1 &
    pids+=("$!")
    for _ in $(seq 100); do cli "$port" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "server on $port did not start:" >&2; tail "$dir/log" >&2; exit 1
}

# fill PORT COUNT: COUNT × SET k:<i> <100 random bytes>, via redis-cli --pipe.
fill() {
    python3 - "$2" <<'PY' | timeout "$step_timeout" "$CLI" -h 127.0.0.1 -p "$1" --pipe >"$work/pipe-$1.log"
import os, sys
n = int(sys.argv[1])
out = sys.stdout.buffer
step = 10000
for lo in range(0, n, step):
    hi = min(n, lo + step)
    rnd = os.urandom(100 * (hi - lo))
    out.write(b"".join(
        b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n" % (len(k), k, rnd[100 * j:100 * j + 100])
        for j, k in enumerate(b"k:%d" % i for i in range(lo, hi))))
PY
    grep -q 'errors: 0' "$work/pipe-$1.log" || { cat "$work/pipe-$1.log" >&2; exit 1; }
}

cluster_keys() {
    local n total=0
    for n in "${nodes[@]}"; do total=$((total + $(cli "$n" dbsize))); done
    echo "$total"
}
flush_cluster() {
    local n
    for n in "${nodes[@]}"; do cli "$n" flushall >/dev/null; done
    [[ "$(cluster_keys)" == 0 ]] || { echo "cluster not empty after FLUSHALL" >&2; exit 1; }
}

# --- servers -----------------------------------------------------------------
free_port SRC
start "$SRC"
log "source 127.0.0.1:$SRC: filling $N keys (SET k:<i> <100 random bytes>, redis-cli --pipe)"
t=$(now)
fill "$SRC" "$N"
[[ "$(cli "$SRC" dbsize)" == "$N" ]] || { echo "source holds $(cli "$SRC" dbsize) keys, want $N" >&2; exit 1; }
src_mem="$(info_field "$SRC" memory used_memory_human)"
log "  $N keys, $src_mem, loaded in $(python3 -c "print(round($(now) - $t, 1))") s"

nodes=()
for _ in 1 2 3; do
    free_port P bus
    start "$P" --cluster-enabled yes --cluster-config-file "$work/nodes-$P.conf"
    nodes+=("$P")
done
timeout "$step_timeout" "$CLI" --cluster create $(printf '127.0.0.1:%s ' "${nodes[@]}") \
    --cluster-replicas 0 --cluster-yes >"$work/cluster-create.log" 2>&1 ||
    { cat "$work/cluster-create.log" >&2; exit 1; }
for n in "${nodes[@]}"; do
    for i in $(seq 300); do
        cli "$n" cluster info 2>/dev/null | grep -q cluster_state:ok && break
        [[ $i == 300 ]] && { echo "cluster node $n not ok after 30 s" >&2; exit 1; }
        sleep 0.1
    done
done
log "cluster: 3 masters on 127.0.0.1:${nodes[*]}"

# --- (a) ferry -----------------------------------------------------------------
free_port HTTP
cat >"$work/ferry.yaml" <<YAML
source: { url: "redis://127.0.0.1:$SRC" }
target: { url: "redis://127.0.0.1:${nodes[0]}" }
state_dir: "$work/ferry-state"
http: { listen: "127.0.0.1:$HTTP" }
YAML
load_a="$(cut -d' ' -f1-3 /proc/loadavg)"
log "(a) ferry run (load $load_a)"
t0=$(now)
"$FERRY" run --config "$work/ferry.yaml" >"$work/ferry.out" 2>"$work/ferry.log" &
FERRY_PID=$!
pids+=("$FERRY_PID")
# Prints "<seconds> <keys_applied>" once streaming and caught up.
ferry_result="$(python3 - "$t0" "$FERRY_PID" "$HTTP" "$SRC" "$step_timeout" <<'PY'
import json, os, socket, sys, time, urllib.request
t0, pid, http, src, limit = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])

def repl_offset():
    with socket.create_connection(("127.0.0.1", src), timeout=5) as s:
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n")
        buf = b""
        while b"\r\n" not in buf:
            buf += s.recv(65536)
        head, rest = buf.split(b"\r\n", 1)
        need = int(head[1:]) + 2
        while len(rest) < need:
            rest += s.recv(65536)
    for line in rest.decode().splitlines():
        if line.startswith("master_repl_offset:"):
            return int(line.split(":")[1])
    raise RuntimeError("no master_repl_offset")

last = None
while True:
    now = time.time()
    if now - t0 > limit:
        sys.exit(f"ferry not caught up after {limit:.0f} s; last status {last}")
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(f"ferry exited; last status {last}")
    try:
        st = json.load(urllib.request.urlopen(f"http://127.0.0.1:{http}/status", timeout=2))
        last = {k: st.get(k) for k in ("phase", "applied_offset", "source_offset", "lag_bytes", "keys_applied", "error")}
        if st.get("phase") == "streaming" and st.get("applied_offset") is not None:
            off = repl_offset()
            if st["applied_offset"] >= off:
                print(f"{time.time() - t0:.3f} {st['keys_applied']} {st['applied_offset']} {off}")
                break
    except (OSError, ValueError):
        pass
    time.sleep(max(0.0, 0.1 - (time.time() - now)))
PY
)" || { echo "(a) failed; ferry log:" >&2; tail -20 "$work/ferry.log" >&2; exit 1; }
read -r ferry_s ferry_keys ferry_applied ferry_src_off <<<"$ferry_result"
stop_pid "$FERRY_PID"
ferry_cluster_keys="$(cluster_keys)"
log "  ferry: ${ferry_s} s, keys_applied=$ferry_keys, applied_offset=$ferry_applied >= master_repl_offset=$ferry_src_off, cluster holds $ferry_cluster_keys keys"
[[ "$ferry_keys" == "$N" ]] || { echo "ferry reported keys_applied=$ferry_keys when caught up, want $N" >&2; exit 1; }
[[ "$ferry_cluster_keys" == "$N" ]] || { echo "cluster holds $ferry_cluster_keys keys after ferry, want $N" >&2; exit 1; }

# --- (b) a real replica --------------------------------------------------------
free_port REP
start "$REP"
REP_PID="${pids[-1]}"
load_b="$(cut -d' ' -f1-3 /proc/loadavg)"
log "(b) replica 127.0.0.1:$REP: REPLICAOF 127.0.0.1 $SRC (load $load_b)"
t0=$(now)
cli "$REP" replicaof 127.0.0.1 "$SRC" >/dev/null
deadline=$(( $(date +%s) + step_timeout ))
while :; do
    r="$(cli "$REP" info replication | tr -d '\r')"
    if grep -q '^master_link_status:up' <<<"$r" && grep -q '^master_sync_in_progress:0' <<<"$r"; then
        t1=$(now); break
    fi
    (( $(date +%s) < deadline )) || { echo "replica not in sync after $step_timeout s" >&2; exit 1; }
    sleep 0.1
done
replica_s="$(python3 -c "print(f'{$t1 - $t0:.3f}')")"
replica_keys="$(cli "$REP" dbsize)"
stop_pid "$REP_PID"
log "  replica: ${replica_s} s, $replica_keys keys"
[[ "$replica_keys" == "$N" ]] || { echo "replica holds $replica_keys keys, want $N" >&2; exit 1; }

# --- (c) redis-benchmark ceiling -------------------------------------------------
flush_cluster
load_c="$(cut -d' ' -f1-3 /proc/loadavg)"
log "(c) redis-benchmark --cluster -t set -n $N -P 64 -r $N -d 100 (load $load_c)"
timeout "$step_timeout" "$BENCH" --cluster -h 127.0.0.1 -p "${nodes[0]}" -t set -n "$N" -P 64 \
    -r "$N" -d 100 -q >"$work/bench.out" 2>&1 || { cat "$work/bench.out" >&2; exit 1; }
bench_rps="$(tr '\r' '\n' <"$work/bench.out" | sed -n 's/^SET: \([0-9.]*\) requests per second.*/\1/p' | tail -1)"
[[ -n "$bench_rps" ]] || { cat "$work/bench.out" >&2; exit 1; }
bench_s="$(python3 -c "print(f'{$N / $bench_rps:.3f}')")"
bench_keys="$(cluster_keys)"
log "  redis-benchmark: $bench_rps SET/s (${bench_s} s for $N), cluster holds $bench_keys distinct keys"

# --- (d) redis-cli --cluster import ----------------------------------------------
import_s="" import_rate=""
if (( IMPORT_N > 0 )); then
    flush_cluster
    stop_pid "${pids[0]}"   # the big source is no longer needed
    free_port SUB
    start "$SUB"
    fill "$SUB" "$IMPORT_N"
    load_d="$(cut -d' ' -f1-3 /proc/loadavg)"
    log "(d) redis-cli --cluster import --cluster-copy --cluster-replace of $IMPORT_N keys (load $load_d)"
    t0=$(now)
    timeout "$step_timeout" "$CLI" --cluster import "127.0.0.1:${nodes[0]}" --cluster-from "127.0.0.1:$SUB" \
        --cluster-copy --cluster-replace >"$work/import.out" 2>&1 || { tail -20 "$work/import.out" >&2; exit 1; }
    t1=$(now)
    import_keys="$(cluster_keys)"
    [[ "$import_keys" == "$IMPORT_N" ]] || { echo "cluster holds $import_keys keys after import, want $IMPORT_N" >&2; tail "$work/import.out" >&2; exit 1; }
    import_s="$(python3 -c "print(f'{$t1 - $t0:.3f}')")"
    import_rate="$(python3 -c "print(f'{$IMPORT_N / ($t1 - $t0):.0f}')")"
    log "  import: ${import_s} s for $IMPORT_N keys ($import_rate keys/s)"
fi

# --- report ------------------------------------------------------------------------
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
wall_s="$(python3 -c "print(f'{$(now) - $wall0:.1f}')")"
mkdir -p benches/results
python3 - <<PY
import json, subprocess, datetime, os
N = $N
ferry_s = float("$ferry_s")
replica_s = float("$replica_s")
bench_rps = float("$bench_rps")
import_n = $IMPORT_N
import_s = float("$import_s") if "$import_s" else None

def commit():
    try:
        c = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet"]).returncode != 0
        return c + (" (dirty tree)" if dirty else "")
    except OSError:
        return "?"

ferry_rate = N / ferry_s
rows = [
    dict(method="ferry run (snapshot → 3 masters, until caught up)", key="ferry", seconds=ferry_s, keys=N, keys_per_s=ferry_rate, extrapolated=False),
    dict(method="real replica (REPLICAOF, until link up & synced)", key="replica", seconds=replica_s, keys=N, keys_per_s=N / replica_s, extrapolated=False),
    dict(method="redis-benchmark --cluster -t set -P 64 -d 100 (ceiling)", key="benchmark", seconds=N / bench_rps, keys=N, keys_per_s=bench_rps, extrapolated=False),
]
if import_s:
    r = import_n / import_s
    rows.append(dict(method=f"redis-cli --cluster import --cluster-copy --cluster-replace ({import_n:,} keys, extrapolated)",
                     key="import", seconds=N / r, keys=N, keys_per_s=r, extrapolated=True, measured_seconds=import_s, measured_keys=import_n))
for r in rows:
    r["ferry_speedup"] = ferry_rate / r["keys_per_s"]

targets = [
    dict(target="ferry time ≤ 1.25× real replica", value=f"{ferry_s / replica_s:.2f}×", met=ferry_s <= 1.25 * replica_s),
    dict(target="ferry ≥ 5× redis-cli --cluster import",
         value=(f"{ferry_rate / (import_n / import_s):.1f}×" if import_s else "not measured"),
         met=(ferry_rate >= 5 * import_n / import_s) if import_s else None),
    dict(target="ferry keys/s ≥ 80% of redis-benchmark ceiling", value=f"{100 * ferry_rate / bench_rps:.0f}%", met=ferry_rate >= 0.8 * bench_rps),
]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
doc = dict(
    date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    nproc=os.cpu_count(), cpu=cpu, redis="$server_version", commit=commit(), ferry_binary="$ferry_note", n=N,
    dataset=f"{N} × SET k:<i> <100 random bytes> (python os.urandom → redis-cli --pipe), source used_memory $src_mem",
    load_average=dict(before="$load_before", ferry="$load_a", replica="$load_b", benchmark="$load_c",
                      **({"import": "${load_d:-}"} if import_s else {}), after="$load_after"),
    wall_seconds=float("$wall_s"),
    ferry=dict(keys_applied=int("$ferry_keys"), applied_offset=int("$ferry_applied"), source_offset=int("$ferry_src_off")),
    rows=rows, targets=targets,
)
json.dump(doc, open("benches/results/full_sync.json", "w"), indent=2, ensure_ascii=False)
mark = {True: "met", False: "**not met**", None: "not measured"}
md = [
    "# Full sync: standalone Redis → 3-master Redis Cluster",
    "",
    f"{doc['date']}, {doc['nproc']} CPUs ({cpu}), Redis {doc['redis']}, commit {doc['commit']}; ferry {doc['ferry_binary']}.",
    f"Load average (1/5/15 min): before {doc['load_average']['before']}, at ferry {doc['load_average']['ferry']}, "
    f"at replica {doc['load_average']['replica']}, at benchmark {doc['load_average']['benchmark']}"
    + (f", at import {doc['load_average']['import']}" if import_s else "") + f", after {doc['load_average']['after']}.",
    f"Dataset: {doc['dataset']}. Wall time of the whole run: {doc['wall_seconds']} s. Command: \`N={N} benches/full_sync.sh\`.",
    "",
    "| method | seconds | keys/s | ferry speed ÷ method speed |",
    "|---|---:|---:|---:|",
]
for r in rows:
    sec = f"{r['seconds']:.2f}" + (f" (measured {r['measured_seconds']:.2f} s for {r['measured_keys']:,})" if r["extrapolated"] else "")
    md.append(f"| {r['method']} | {sec} | {r['keys_per_s']:,.0f} | {r['ferry_speedup']:.2f}× |")
md += ["", "| target (issue 6) | measured | |", "|---|---:|---|"]
for t in targets:
    md.append(f"| {t['target']} | {t['value']} | {mark[t['met']]} |")
md += [
    "",
    "ferry: wall time from starting \`ferry run\` (release) until \`/status\` shows \`phase: streaming\` and",
    "\`applied_offset\` ≥ the source's \`master_repl_offset\` (polled every 100 ms; snapshot keys are written",
    "with \`RESTORE … REPLACE ABSTTL\`); the cluster's DBSIZE sum is checked = N. Replica: a running empty",
    "redis-server, from \`REPLICAOF\` until \`master_link_status:up\` and \`master_sync_in_progress:0\` (the",
    "source streams the RDB diskless; the replica writes it to disk, then loads it). Ceiling:",
    "\`redis-benchmark --cluster -t set -n N -P 64 -r N -d 100\` (50 clients) into the FLUSHALLed cluster;",
    "seconds = N ÷ its SET/s. Import: \`redis-cli --cluster import --cluster-copy --cluster-replace\` from a",
    "separate standalone server holding a subset (same generator) into the FLUSHALLed cluster, extrapolated",
    "linearly to N. Same host, loopback, one run; other work on the machine makes absolute numbers noisy.",
]
open("benches/results/full_sync.md", "w").write("\n".join(md) + "\n")
PY
cat benches/results/full_sync.md
