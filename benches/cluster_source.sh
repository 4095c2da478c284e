#!/usr/bin/env bash
# Cluster-source benchmark (issue 13): N strings of SIZE incompressible bytes
# in a SRC_MASTERS-master source cluster, moved into a MASTERS-master target
# cluster, against real baselines measured in the same run:
#
#   (a) ferry      `ferry run` (release, `source.mode: cluster`, one link per
#                  source shard) from process start until every source
#                  master's master_repl_offset is applied (the /status link
#                  with that master's replid), polled every 100 ms
#   (b) replicas   one plain redis-server per source master, all started with
#                  `REPLICAOF` at the same moment, until every one shows
#                  master_link_status:up and master_sync_in_progress:0;
#                  measured before and after ferry's sync (the mean is the
#                  baseline)
#   (c) streaming  the source cluster's write maximum (`redis-benchmark
#                  --cluster -P 16 -c 50`, 6 write tests of MAX_N each), then
#                  benches/tools/loadgen.py at half that rate (one generator per
#                  source master, keys on its own slots) for HALF_SECONDS, with
#                  ferry's lag_seconds (the largest over its links) sampled
#                  every 100 ms
#   (d) `ferry verify` afterwards
#
#   benches/results/$OUT.md / .json (OUT defaults to cluster_source)
#
# Every server lives in a temp dir on free 127.0.0.1 ports and is stopped by
# PID on exit; every step has a timeout (STEP_TIMEOUT seconds).
#
# Environment: N (default 1000000), SIZE (default 100), SRC_MASTERS (default
# 3), MASTERS (target masters, default 3), MAX_N (default 200000),
# HALF_SECONDS (default 15), OUT, STEP_TIMEOUT, FERRY_BIN, FERRY_REDIS70 /
# FERRY_REDIS_CLI / FERRY_REDIS_BENCHMARK.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=benches/lib.sh
. benches/lib.sh
N="${N:-1000000}"
SIZE="${SIZE:-100}"
SRC_MASTERS="${SRC_MASTERS:-3}"
MASTERS="${MASTERS:-3}"
MAX_N="${MAX_N:-200000}"
HALF_SECONDS="${HALF_SECONDS:-15}"
OUT="${OUT:-cluster_source}"
wall0=$(now)
load_before="$(loadavg)"
bench_init cluster-source
build_ferry

# --- servers -----------------------------------------------------------------
start_cluster "$SRC_MASTERS"
src_nodes=("${nodes[@]}")
log "source cluster: filling $N keys (SET k:<i> <$SIZE random bytes>, one redis-cli --pipe per master)"
t=$(now)
python3 - "$work" "$N" "$SIZE" "${src_nodes[0]}" <<'PY'
import os, socket, sys
work, n, size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

TABLE = []
for i in range(256):
    c = i << 8
    for _ in range(8):
        c = ((c << 1) ^ 0x1021) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
    TABLE.append(c)

def crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ TABLE[(crc >> 8) ^ b]
    return crc

def command(s, *args):
    s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    return s.recv(1 << 20).decode()

with socket.create_connection(("127.0.0.1", seed), timeout=10) as s:
    nodes = command(s, b"CLUSTER", b"NODES")
owner = [None] * 16384
for line in nodes.splitlines():
    f = line.split()
    if len(f) < 8 or "master" not in f[2]:
        continue
    port = f[1].split("@")[0].rsplit(":", 1)[1]
    for r in f[8:]:
        if r.startswith("["):
            continue
        lo, _, hi = r.partition("-")
        for slot in range(int(lo), int(hi or lo) + 1):
            owner[slot] = port
files = {p: open(f"{work}/fill-{p}.resp", "wb") for p in set(owner) if p}
step = 10000
for lo in range(0, n, step):
    hi = min(n, lo + step)
    rnd = os.urandom(size * (hi - lo))
    for j, i in enumerate(range(lo, hi)):
        k = b"k:%d" % i
        files[owner[crc16(k) & 16383]].write(
            b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, size, rnd[size * j:size * j + size]))
for f in files.values():
    f.close()
PY
fill_pids=()
for p in "${src_nodes[@]}"; do
    timeout "$step_timeout" "$CLI" -h 127.0.0.1 -p "$p" --pipe <"$work/fill-$p.resp" >"$work/pipe-$p.log" &
    fill_pids+=("$!")
done
wait "${fill_pids[@]}"
total=0
for p in "${src_nodes[@]}"; do
    grep -q 'errors: 0' "$work/pipe-$p.log" || { cat "$work/pipe-$p.log" >&2; exit 1; }
    total=$((total + $(cli "$p" dbsize)))
done
[[ "$total" == "$N" ]] || { echo "source cluster holds $total keys, want $N" >&2; exit 1; }
rm -f "$work"/fill-*.resp
log "  $N keys over ${#src_nodes[@]} masters in $(py "round($(now) - $t, 1)") s"

start_cluster "$MASTERS"

# replicas_sync VAR: one replica per source master, all at once.
replicas_sync() {
    local reps=() rpids=() p rp t0 t1 deadline all keys=0
    for p in "${src_nodes[@]}"; do
        free_port rp
        start "$rp"
        reps+=("$rp")
        rpids+=("${pids[-1]}")
    done
    t0=$(now)
    for i in "${!reps[@]}"; do
        cli "${reps[$i]}" replicaof 127.0.0.1 "${src_nodes[$i]}" >/dev/null
    done
    deadline=$(( $(date +%s) + step_timeout ))
    while :; do
        all=1
        for rp in "${reps[@]}"; do
            r="$(cli "$rp" info replication | tr -d '\r')"
            grep -q '^master_link_status:up' <<<"$r" && grep -q '^master_sync_in_progress:0' <<<"$r" || { all=0; break; }
        done
        (( all )) && { t1=$(now); break; }
        (( $(date +%s) < deadline )) || { echo "replicas not in sync after $step_timeout s" >&2; exit 1; }
        sleep 0.05
    done
    for rp in "${reps[@]}"; do keys=$((keys + $(cli "$rp" dbsize))); done
    for p in "${rpids[@]}"; do stop_pid "$p"; done
    [[ "$keys" == "$N" ]] || { echo "replicas hold $keys keys, want $N" >&2; exit 1; }
    printf -v "$1" '%s' "$(py "f'{$t1 - $t0:.3f}'")"
}

# wait_links_caught_up T0: "<seconds> <keys_applied>" once every source
# master's offset is applied by the /status link with its replid.
wait_links_caught_up() {
    python3 - "$1" "$FERRY_PID" "$HTTP" "$step_timeout" "${src_nodes[@]}" <<'PY'
import json, os, socket, sys, time, urllib.request
t0, pid, http, limit, ports = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5:]

def info(port):
    with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as s:
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n")
        buf = b""
        while b"\r\n" not in buf:
            buf += s.recv(65536)
        head, rest = buf.split(b"\r\n", 1)
        need = int(head[1:]) + 2
        while len(rest) < need:
            rest += s.recv(65536)
    kv = dict(l.split(":", 1) for l in rest.decode().splitlines() if ":" in l)
    return kv["master_replid"], int(kv["master_repl_offset"])

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
        links = {l.get("replid"): l for l in st.get("links", [])}
        last = {k: st.get(k) for k in ("phase", "lag_bytes", "keys_applied", "error")}
        done = True
        for p in ports:
            replid, off = info(p)
            l = links.get(replid)
            if not l or l.get("phase") != "streaming" or (l.get("applied_offset") or 0) < off:
                done = False
                break
        if done:
            print(f"{time.time() - t0:.3f} {st.get('keys_applied')}")
            break
    except (OSError, ValueError, KeyError):
        pass
    time.sleep(max(0.0, 0.1 - (time.time() - now)))
PY
}

# --- (b) replicas before ferry -------------------------------------------------
log "(b) ${#src_nodes[@]} replicas at once, before ferry (load $(loadavg))"
replicas_sync replicas_before_s
log "  replicas before ferry: ${replicas_before_s} s"

# --- (a) ferry -----------------------------------------------------------------
free_port HTTP
cat >"$work/ferry.yaml" <<YAML
source: { url: "redis://127.0.0.1:${src_nodes[0]}", mode: cluster }
target: { url: "redis://127.0.0.1:${nodes[0]}" }
state_dir: "$work/ferry-state"
http: { listen: "127.0.0.1:$HTTP" }
YAML
load_a="$(loadavg)"
log "(a) ferry run, cluster source (load $load_a)"
masters_cpu0="$(nodes_cpu)"
t0=$(now)
"$FERRY" run --config "$work/ferry.yaml" >"$work/ferry.out" 2>"$work/ferry.log" &
FERRY_PID=$!
pids+=("$FERRY_PID")
ferry_result="$(wait_links_caught_up "$t0")" || { echo "(a) failed; ferry log:" >&2; tail -20 "$work/ferry.log" >&2; exit 1; }
read -r ferry_s ferry_keys <<<"$ferry_result"
ferry_cpu="$(proc_cpu "$FERRY_PID")"
masters_cpu="$(py "round($(nodes_cpu) - $masters_cpu0, 3)")"
ferry_rss_kb="$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$FERRY_PID/status")"
log "  ferry: ${ferry_s} s, $ferry_keys keys, ferry CPU ${ferry_cpu} s, target masters CPU ${masters_cpu} s, peak RSS ${ferry_rss_kb} kB"

# The replicas again, with ferry idle (streaming, no writes), before the
# load of (c) grows the dataset.
log "(b) replicas at once, after ferry (load $(loadavg))"
replicas_sync replicas_after_s
log "  replicas after ferry: ${replicas_after_s} s"

# --- (c) streaming lag -----------------------------------------------------------
# sample NAME CMD...: ferry's lag_seconds every 100 ms while CMD runs, then
# until it is 0 (at most 60 s).
sample() {
    local name="$1"; shift
    rm -f "$work/$name.stop"
    python3 - "$HTTP" "$work/$name.stop" "$step_timeout" >"$work/$name.samples" <<'PY' &
import json, os, sys, time, urllib.request
http, stop, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
t0 = time.time()
while not os.path.exists(stop) and time.time() - t0 < limit:
    now = time.time()
    try:
        st = json.load(urllib.request.urlopen(f"http://127.0.0.1:{http}/status", timeout=2))
        print(json.dumps(dict(t=now, lag_seconds=st.get("lag_seconds"), lag_bytes=st.get("lag_bytes"))), flush=True)
    except (OSError, ValueError):
        pass
    time.sleep(max(0.0, 0.1 - (time.time() - now)))
PY
    local sp=$! t0 t1
    sleep 0.5
    t0=$(now)
    "$@"
    t1=$(now)
    echo "$t0 $t1" >"$work/$name.times"
    sleep 3
    touch "$work/$name.stop"
    wait "$sp" || true
}
log "(c) max write load on the source cluster: redis-benchmark --cluster -P 16 -c 50 -n $MAX_N, 6 tests"
run_bench() {
    timeout "$step_timeout" "$BENCH" --cluster -h 127.0.0.1 -p "${src_nodes[0]}" -P 16 -c 50 -n "$MAX_N" -r 100000 -d 100 \
        -t set,incr,lpush,hset,sadd,zadd -q >"$work/bench.out" 2>&1 || { cat "$work/bench.out" >&2; exit 1; }
}
sample max run_bench
read -r mt0 mt1 <"$work/max.times"
max_rate="$(py "round(6 * $MAX_N / ($mt1 - $mt0))")"
half_rate="$(py "round($max_rate / 2)")"
per_master="$(py "round($half_rate / ${#src_nodes[@]})")"
# Per source master: 64 hash tags on slots it serves.
python3 - "${src_nodes[0]}" >"$work/tags" <<'PY'
import socket, sys
def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nNODES\r\n")
text = s.recv(1 << 20).decode()
owner = {}
for line in text.splitlines():
    f = line.split()
    if len(f) < 8 or "master" not in f[2]:
        continue
    port = f[1].split("@")[0].rsplit(":", 1)[1]
    for r in f[8:]:
        if not r.startswith("["):
            lo, _, hi = r.partition("-")
            for slot in range(int(lo), int(hi or lo) + 1):
                owner[slot] = port
tags = {}
i = 0
while any(len(v) < 64 for v in tags.values()) or len(tags) < len(set(owner.values())):
    t = f"t{i}"
    tags.setdefault(owner[crc16(t.encode()) & 16383], [])
    if len(tags[owner[crc16(t.encode()) & 16383]]) < 64:
        tags[owner[crc16(t.encode()) & 16383]].append(t)
    i += 1
for port, ts in tags.items():
    print(port, ",".join(ts))
PY
log "(c) half load: loadgen.py at $per_master cmd/s on each of ${#src_nodes[@]} masters for $HALF_SECONDS s (max was $max_rate cmd/s)"
run_loadgens() {
    local port tags lg=()
    while read -r port tags; do
        timeout "$step_timeout" python3 benches/tools/loadgen.py "$port" "$per_master" "$HALF_SECONDS" \
            "$(py "int($per_master * $HALF_SECONDS * 1.2)")" 100000 "$tags" >"$work/loadgen-$port.out" &
        lg+=("$!")
    done <"$work/tags"
    wait "${lg[@]}"
}
sample half run_loadgens

# --- (d) verify ----------------------------------------------------------------------
log "(d) ferry verify"
set +e
timeout "$step_timeout" "$FERRY" verify --config "$work/ferry.yaml" >"$work/verify.out" 2>&1
verify_exit=$?
set -e
tail -3 "$work/verify.out" | sed 's/^/  /' >&2
stop_pid "$FERRY_PID"

load_after="$(loadavg)"
wall_s="$(py "round($(now) - $wall0, 1)")"
mkdir -p benches/results
python3 - "$work" <<PY
import glob, json, os, datetime
work = "$work"
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else None
def lag(name):
    t0, t1 = map(float, open(f"{work}/{name}.times").read().split())
    rows = [json.loads(l) for l in open(f"{work}/{name}.samples") if l.strip()]
    ms = [1000 * (r["lag_seconds"] or 0) for r in rows if t0 <= r["t"] <= t1]
    return dict(p50=pct(ms, 50), p99=pct(ms, 99), max=max(ms) if ms else None, samples=len(ms))
rep = (float("$replicas_before_s") + float("$replicas_after_s")) / 2
ferry_s = float("$ferry_s")
achieved = sum(json.loads(open(f).read())["rate"] for f in glob.glob(f"{work}/loadgen-*.out"))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
doc = dict(
    date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    nproc=os.cpu_count(), cpu=cpu, redis="$server_version", commit="$(git_commit)", ferry_binary="$ferry_note",
    n=$N, size=$SIZE, source_masters=$SRC_MASTERS, target_masters=$MASTERS,
    load_average=dict(before="$load_before", ferry="$load_a", after="$load_after"),
    ferry_seconds=ferry_s, replicas_before_seconds=float("$replicas_before_s"), replicas_after_seconds=float("$replicas_after_s"),
    ratio_to_replicas=round(ferry_s / rep, 3),
    ferry_cpu_seconds=float("$ferry_cpu"), ferry_cpu_seconds_per_million_keys=round(float("$ferry_cpu") * 1e6 / $N, 3),
    target_masters_cpu_seconds=float("$masters_cpu"), target_masters_cpu_seconds_per_million_keys=round(float("$masters_cpu") * 1e6 / $N, 3),
    ferry_peak_rss_kb=int("$ferry_rss_kb" or 0),
    max_rate=float("$max_rate"), half_rate_target=float("$half_rate"), half_rate_achieved=round(achieved, 1),
    lag_ms=dict(max_load=lag("max"), half_load=lag("half")),
    verify_exit=int("$verify_exit"), wall_seconds=float("$wall_s"),
)
json.dump(doc, open("benches/results/$OUT.json", "w"), indent=2, ensure_ascii=False)
l = doc["lag_ms"]
f = lambda x: "-" if x is None else f"{x:.0f}"
md = [
    f"# Cluster source: {$N:,} × {$SIZE} B strings, {$SRC_MASTERS}-master source cluster → {$MASTERS}-master target",
    "",
    f"{doc['date']}, {doc['nproc']} CPUs ({cpu}), Redis {doc['redis']}, commit {doc['commit']}; ferry {doc['ferry_binary']}.",
    f"Load average: before {doc['load_average']['before']}, at ferry's start {doc['load_average']['ferry']}, after {doc['load_average']['after']}.",
    f"Command: \`benches/cluster_source.sh\` (N=$N SIZE=$SIZE SRC_MASTERS=$SRC_MASTERS MASTERS=$MASTERS MAX_N=$MAX_N HALF_SECONDS=$HALF_SECONDS). Wall time {doc['wall_seconds']} s.",
    "",
    "| full sync | seconds | ratio to the replicas' mean |",
    "|---|---:|---:|",
    f"| ferry, from process start until every source master's offset is applied | {ferry_s:.2f} | **{doc['ratio_to_replicas']:.2f}×** |",
    f"| {$SRC_MASTERS} real replicas at once (one per source master), before ferry | {doc['replicas_before_seconds']:.2f} | |",
    f"| the same, after ferry | {doc['replicas_after_seconds']:.2f} | |",
    "",
    f"ferry CPU: {doc['ferry_cpu_seconds']:.2f} s ({doc['ferry_cpu_seconds_per_million_keys']:.2f} CPU-s per million keys); target masters: {doc['target_masters_cpu_seconds']:.2f} s ({doc['target_masters_cpu_seconds_per_million_keys']:.2f} per million keys); ferry peak RSS {doc['ferry_peak_rss_kb'] // 1024} MB.",
    "",
    "| streaming load on the source cluster | commands/s | ferry lag ms p50 / p99 / max |",
    "|---|---:|---:|",
    f"| max: redis-benchmark --cluster -P 16 -c 50, 6 write tests | {doc['max_rate']:,.0f} | {f(l['max_load']['p50'])} / {f(l['max_load']['p99'])} / {f(l['max_load']['max'])} |",
    f"| half: loadgen.py per master, fixed rate (target {doc['half_rate_target']:,.0f}/s in all) | {doc['half_rate_achieved']:,.0f} | {f(l['half_load']['p50'])} / {f(l['half_load']['p99'])} / {f(l['half_load']['max'])} |",
    "",
    f"\`ferry verify\` afterwards: exit {doc['verify_exit']}. Lag is ferry's \`lag_seconds\` (the largest over its links).",
    "Everything (both clusters, the load generators, ferry, the replicas) shares this machine's cores.",
]
open("benches/results/$OUT.md", "w").write("\n".join(md) + "\n")
PY
cat "benches/results/$OUT.md"
