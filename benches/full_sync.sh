#!/usr/bin/env bash
# Full-sync benchmark (issue 6, part 2): N strings of SIZE incompressible
# bytes from a standalone Redis 7.0 source into a MASTERS-master Redis Cluster,
# against real baselines measured in the same run:
#
#   (a) ferry      `ferry run` (release) from process start until /status
#                  shows phase=streaming and applied_offset >= the source's
#                  master_repl_offset (both polled every 20 ms)
#   (b) replica    a plain redis-server: `REPLICAOF` until INFO replication
#                  shows master_link_status:up and master_sync_in_progress:0
#   (c) ceiling    `redis-benchmark --cluster -t set -n N -P 64 -r N -d SIZE`
#                  into the FLUSHALLed cluster (its SET/s; time = N / rate)
#   (d) import     `redis-cli --cluster import --cluster-copy --cluster-replace`
#                  of an IMPORT_N-key subset (own standalone server, same
#                  generator), extrapolated to N by keys/s; IMPORT_N=0 skips it
#
#   benches/results/$OUT.md    the table (OUT defaults to full_sync)
#   benches/results/$OUT.json  the same, machine-readable, with ferry's peak RSS
#
# Data: python3 writes `SET k:<i> <SIZE random bytes>` (os.urandom, so LZF
# cannot shrink the RDB) as RESP into `redis-cli --pipe`.
#
# Every server lives in a temp dir on free 127.0.0.1 ports and is stopped by
# PID on exit; every step has a timeout (STEP_TIMEOUT seconds).
#
# Environment: N (default 1000000), SIZE (value bytes, default 100), MASTERS
# (default 3), OUT (default full_sync), IMPORT_N (default 100000), STEP_TIMEOUT
# (default 600), FERRY_BIN (use this ferry binary instead of building the
# workspace), FERRY_REDIS70 / FERRY_REDIS_CLI / FERRY_REDIS_BENCHMARK
# (binaries; default /usr/bin/..., which must report 7.x).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# shellcheck source=benches/lib.sh
. benches/lib.sh
N="${N:-1000000}"
IMPORT_N="${IMPORT_N:-100000}"
SIZE="${SIZE:-100}"
MASTERS="${MASTERS:-3}"
OUT="${OUT:-full_sync}"
wall0=$(now)
load_before="$(loadavg)"
bench_init full-sync
build_ferry

# --- servers -----------------------------------------------------------------
free_port SRC
start "$SRC"
log "source 127.0.0.1:$SRC: filling $N keys (SET k:<i> <$SIZE random bytes>, redis-cli --pipe)"
t=$(now)
fill "$SRC" "$N" "$SIZE"
[[ "$(cli "$SRC" dbsize)" == "$N" ]] || { echo "source holds $(cli "$SRC" dbsize) keys, want $N" >&2; exit 1; }
src_mem="$(info_field "$SRC" memory used_memory_human)"
log "  $N keys, $src_mem, loaded in $(py "round($(now) - $t, 1)") s"

start_cluster "$MASTERS"

# --- (b) a real replica, before ferry ------------------------------------------
want_keys="$N"
log "(b) replica: REPLICAOF 127.0.0.1 $SRC, before ferry (load $(loadavg))"
replica_sync "$SRC" replica_before_s
log "  replica before ferry: ${replica_before_s} s"

# --- (a) ferry -----------------------------------------------------------------
free_port HTTP
ferry_config "$work/ferry.yaml" "$SRC" "${nodes[0]}" "$HTTP"
load_a="$(loadavg)"
log "(a) ferry run (load $load_a)"
masters_cpu0="$(nodes_cpu)"
t0=$(now)
"$FERRY" run --config "$work/ferry.yaml" >"$work/ferry.out" 2>"$work/ferry.log" &
FERRY_PID=$!
pids+=("$FERRY_PID")
# Prints "<seconds> <keys_applied>" once streaming and caught up.
ferry_result="$(wait_caught_up "$t0" "$FERRY_PID" "$HTTP" "$SRC")" || { echo "(a) failed; ferry log:" >&2; tail -20 "$work/ferry.log" >&2; exit 1; }
read -r ferry_s ferry_keys ferry_applied ferry_src_off <<<"$ferry_result"
# Peak resident memory of the ferry process over the whole sync.
ferry_rss_kb="$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$FERRY_PID/status")"
# CPU seconds of the ferry process (user + system) and of the target masters
# from start until caught up.
read -r ferry_user ferry_sys <<<"$(proc_cpu_split "$FERRY_PID")"
ferry_cpu="$(py "f'{$ferry_user + $ferry_sys:.3f}'")"
masters_cpu="$(py "f'{$(nodes_cpu) - $masters_cpu0:.3f}'")"
stop_pid "$FERRY_PID"
ferry_cluster_keys="$(cluster_keys)"
log "  ferry: CPU ${ferry_cpu} s (user ${ferry_user}, system ${ferry_sys}), target masters CPU ${masters_cpu} s"
log "  ferry: ${ferry_s} s, peak RSS $((ferry_rss_kb / 1024)) MB, keys_applied=$ferry_keys, applied_offset=$ferry_applied >= master_repl_offset=$ferry_src_off, cluster holds $ferry_cluster_keys keys"
[[ "$ferry_keys" == "$N" ]] || { echo "ferry reported keys_applied=$ferry_keys when caught up, want $N" >&2; exit 1; }
[[ "$ferry_cluster_keys" == "$N" ]] || { echo "cluster holds $ferry_cluster_keys keys after ferry, want $N" >&2; exit 1; }

# --- (b) a real replica, after ferry (the "before" run is above) ---------------
load_b="$(loadavg)"
log "(b) replica: REPLICAOF 127.0.0.1 $SRC, after ferry (load $load_b)"
replica_sync "$SRC" replica_after_s
replica_s="$(py "f'{($replica_before_s + $replica_after_s) / 2:.3f}'")"
log "  replica: before ferry ${replica_before_s} s, after ${replica_after_s} s, mean ${replica_s} s"

# --- (c) redis-benchmark ceiling -------------------------------------------------
flush_cluster
load_c="$(loadavg)"
log "(c) redis-benchmark --cluster -t set -n $N -P 64 -r $N -d $SIZE (load $load_c)"
bench_cpu0="$(nodes_cpu)"
# The client's own CPU too (bash's `time`: user and system of the children
# waited for), next to ferry's: what any client that writes N SETs pays.
TIMEFORMAT='%U %S'
{ time timeout "$step_timeout" "$BENCH" --cluster -h 127.0.0.1 -p "${nodes[0]}" -t set -n "$N" -P 64 \
    -r "$N" -d "$SIZE" -q >"$work/bench.out" 2>&1 ; } 2>"$work/bench.time" ||
    { cat "$work/bench.out" >&2; exit 1; }
read -r bench_client_user bench_client_sys <"$work/bench.time"
bench_rps="$(tr '\r' '\n' <"$work/bench.out" | sed -n 's/^SET: \([0-9.]*\) requests per second.*/\1/p' | tail -1)"
[[ -n "$bench_rps" ]] || { cat "$work/bench.out" >&2; exit 1; }
bench_s="$(python3 -c "print(f'{$N / $bench_rps:.3f}')")"
bench_masters_cpu="$(py "f'{$(nodes_cpu) - $bench_cpu0:.3f}'")"
bench_keys="$(cluster_keys)"
log "  redis-benchmark: $bench_rps SET/s (${bench_s} s for $N), cluster holds $bench_keys distinct keys, masters CPU ${bench_masters_cpu} s, its client CPU ${bench_client_user} s user + ${bench_client_sys} s system"

# --- (d) redis-cli --cluster import ----------------------------------------------
import_s="" import_rate=""
if (( IMPORT_N > 0 )); then
    flush_cluster
    stop_pid "${pids[0]}"   # the big source is no longer needed
    free_port SUB
    start "$SUB"
    fill "$SUB" "$IMPORT_N" "$SIZE"
    load_d="$(loadavg)"
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
load_after="$(loadavg)"
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
    dict(method="ferry run (snapshot → $MASTERS masters, until caught up)", key="ferry", seconds=ferry_s, keys=N, keys_per_s=ferry_rate, extrapolated=False),
    dict(method="real replica (REPLICAOF, until link up & synced; mean of one run before and one after ferry)", key="replica", seconds=replica_s, keys=N, keys_per_s=N / replica_s, extrapolated=False),
    dict(method="redis-benchmark --cluster -t set -P 64 -d $SIZE (ceiling)", key="benchmark", seconds=N / bench_rps, keys=N, keys_per_s=bench_rps, extrapolated=False),
]
if import_s:
    r = import_n / import_s
    rows.append(dict(method=f"redis-cli --cluster import --cluster-copy --cluster-replace ({import_n:,} keys, extrapolated)",
                     key="import", seconds=N / r, keys=N, keys_per_s=r, extrapolated=True, measured_seconds=import_s, measured_keys=import_n))
for r in rows:
    r["ferry_speedup"] = ferry_rate / r["keys_per_s"]

targets = [
    dict(target="ferry CPU ≤ 0.5 CPU-s per million keys (issue 15)", value=f"{float('$ferry_cpu') * 1e6 / N:.2f}", met=float("$ferry_cpu") * 1e6 / N <= 0.5),
    dict(target="ferry time ≤ 1.0× real replica (issue 15)", value=f"{ferry_s / replica_s:.2f}×", met=ferry_s <= replica_s),
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
    masters=$MASTERS, size=$SIZE,
    dataset=f"{N} × SET k:<i> <$SIZE random bytes> (python os.urandom → redis-cli --pipe), source used_memory $src_mem",
    load_average=dict(before="$load_before", ferry="$load_a", replica="$load_b", benchmark="$load_c",
                      **({"import": "${load_d:-}"} if import_s else {}), after="$load_after"),
    wall_seconds=float("$wall_s"),
    replica_runs=dict(before=float("$replica_before_s"), after=float("$replica_after_s")),
    ferry=dict(cpu_seconds=float("$ferry_cpu"), cpu_seconds_per_million_keys=float("$ferry_cpu") * 1e6 / N,
               cpu_user_seconds=float("$ferry_user"), cpu_system_seconds=float("$ferry_sys"),
               benchmark_masters_cpu_seconds_per_million_sets=float("$bench_masters_cpu") * 1e6 / N,
               benchmark_client_cpu_seconds_per_million_sets=(float("$bench_client_user") + float("$bench_client_sys")) * 1e6 / N,
               benchmark_client_user_system_seconds=[float("$bench_client_user"), float("$bench_client_sys")],
               target_masters_cpu_seconds=float("$masters_cpu"), target_masters_cpu_seconds_per_million_keys=float("$masters_cpu") * 1e6 / N,
               peak_rss_kb=int("$ferry_rss_kb"), keys_applied=int("$ferry_keys"), applied_offset=int("$ferry_applied"), source_offset=int("$ferry_src_off")),
    rows=rows, targets=targets,
)
json.dump(doc, open("benches/results/$OUT.json", "w"), indent=2, ensure_ascii=False)
mark = {True: "met", False: "**not met**", None: "not measured"}
md = [
    "# Full sync: standalone Redis → $MASTERS-master Redis Cluster",
    "",
    f"{doc['date']}, {doc['nproc']} CPUs ({cpu}), Redis {doc['redis']}, commit {doc['commit']}; ferry {doc['ferry_binary']}.",
    f"Load average (1/5/15 min): before {doc['load_average']['before']}, at ferry {doc['load_average']['ferry']}, "
    f"at replica {doc['load_average']['replica']}, at benchmark {doc['load_average']['benchmark']}"
    + (f", at import {doc['load_average']['import']}" if import_s else "") + f", after {doc['load_average']['after']}.",
    f"Dataset: {doc['dataset']}. Wall time of the whole run: {doc['wall_seconds']} s. Command: \`N={N} SIZE=$SIZE MASTERS=$MASTERS benches/full_sync.sh\`. ferry peak RSS {int('$ferry_rss_kb') // 1024} MB.",
    f"CPU from ferry's start until caught up: ferry {doc['ferry']['cpu_seconds']:.2f} s ({doc['ferry']['cpu_seconds_per_million_keys']:.2f} CPU-s per million keys; user {doc['ferry']['cpu_user_seconds']:.2f} s, system {doc['ferry']['cpu_system_seconds']:.2f} s), "
    f"target masters {doc['ferry']['target_masters_cpu_seconds']:.2f} s ({doc['ferry']['target_masters_cpu_seconds_per_million_keys']:.2f} CPU-s per million keys; under redis-benchmark's \`SET\`s {doc['ferry']['benchmark_masters_cpu_seconds_per_million_sets']:.2f}). "
    f"redis-benchmark's own client (50 connections, where ferry has one per master), which only writes prepared \`SET\`s and counts replies: {doc['ferry']['benchmark_client_cpu_seconds_per_million_sets']:.2f} CPU-s per million \`SET\`s "
    f"(user {doc['ferry']['benchmark_client_user_system_seconds'][0]:.2f} s, system {doc['ferry']['benchmark_client_user_system_seconds'][1]:.2f} s; what any client pays to send the same writes over loopback). "
    f"Real replica: {doc['replica_runs']['before']:.2f} s before ferry, {doc['replica_runs']['after']:.2f} s after (the table uses the mean).",
    "",
    "| method | seconds | keys/s | ferry speed ÷ method speed |",
    "|---|---:|---:|---:|",
]
for r in rows:
    sec = f"{r['seconds']:.2f}" + (f" (measured {r['measured_seconds']:.2f} s for {r['measured_keys']:,})" if r["extrapolated"] else "")
    md.append(f"| {r['method']} | {sec} | {r['keys_per_s']:,.0f} | {r['ferry_speedup']:.2f}× |")
md += ["", "| target | measured | |", "|---|---:|---|"]
for t in targets:
    md.append(f"| {t['target']} | {t['value']} | {mark[t['met']]} |")
md += [
    "",
    "ferry: wall time from starting \`ferry run\` (release) until \`/status\` shows \`phase: streaming\` and",
    "\`applied_offset\` ≥ the source's \`master_repl_offset\` (polled every 20 ms, as the replica is; plain snapshot strings are written",
    "as \`SET\`, other keys with \`RESTORE … REPLACE ABSTTL\`); the cluster's DBSIZE sum is checked = N. Replica: a running empty",
    "redis-server, from \`REPLICAOF\` until \`master_link_status:up\` and \`master_sync_in_progress:0\` (the",
    "source streams the RDB diskless; the replica writes it to disk, then loads it). Ceiling:",
    "\`redis-benchmark --cluster -t set -n N -P 64 -r N -d SIZE\` (50 clients) into the FLUSHALLed cluster;",
    "seconds = N ÷ its SET/s. Import: \`redis-cli --cluster import --cluster-copy --cluster-replace\` from a",
    "separate standalone server holding a subset (same generator) into the FLUSHALLed cluster, extrapolated",
    "linearly to N. Same host, loopback, one run; other work on the machine makes absolute numbers noisy.",
]
open("benches/results/$OUT.md", "w").write("\n".join(md) + "\n")
PY
cat "benches/results/$OUT.md"
