#!/usr/bin/env bash
# Memory benchmark (issue 6, part 4): ferry's peak resident memory (VmHWM of
# the `ferry run` process) during a full sync into a 3-master cluster of
#   (1) N strings of 100 incompressible bytes (default 10,000,000: ten
#       times the full-sync benchmark's default dataset), and
#   (2) one list of LIST_MB megabytes (default 500; elements of 100 bytes),
# each until ferry is streaming and caught up, with the dataset's size on
# the source (used_memory and RDB bytes) for scale.
#
#   benches/results/memory.md / .json
#
# Environment: N, LIST_MB, STEP_TIMEOUT, FERRY_BIN, FERRY_REDIS70,
# FERRY_REDIS_CLI.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=benches/lib.sh
. benches/lib.sh
N="${N:-10000000}"
LIST_MB="${LIST_MB:-500}"
wall0=$(now)
load_before="$(loadavg)"
bench_init memory
build_ferry
start_cluster 3

# fill_list PORT MB: one list `big:list` of MB megabytes of 100-byte elements.
fill_list() {
    python3 - "$2" <<'PY' | timeout "$step_timeout" "$CLI" -h 127.0.0.1 -p "$1" --pipe >"$work/pipe-list.log"
import os, sys
total = int(sys.argv[1]) * 1_000_000 // 100
out = sys.stdout.buffer
batch = 1000
for lo in range(0, total, batch):
    n = min(batch, total - lo)
    rnd = os.urandom(100 * n)
    parts = [b"*%d\r\n$5\r\nRPUSH\r\n$8\r\nbig:list\r\n" % (n + 2)]
    parts += [b"$100\r\n%s\r\n" % rnd[100 * j:100 * j + 100] for j in range(n)]
    out.write(b"".join(parts))
PY
    grep -q 'errors: 0' "$work/pipe-list.log" || { cat "$work/pipe-list.log" >&2; exit 1; }
}

# measure NAME SRC_PORT: runs ferry from this source until caught up; prints
# "<seconds> <peak RSS kB> <keys applied>".
measure() {
    local name="$1" src="$2" http
    free_port http
    ferry_config "$work/$name.yaml" "$src" "${nodes[0]}" "$http"
    local t0 pid res
    t0=$(now)
    "$FERRY" run --config "$work/$name.yaml" >"$work/$name.out" 2>"$work/$name.log" &
    pid=$!
    pids+=("$pid")
    res="$(wait_caught_up "$t0" "$pid" "$http" "$src")" ||
        { echo "$name: ferry failed; log:" >&2; tail -20 "$work/$name.log" >&2; exit 1; }
    local rss
    rss="$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status")"
    stop_pid "$pid"
    read -r secs keys _ _ <<<"$res"
    echo "$secs $rss $keys"
}

rdb_bytes() { cli "$1" bgsave >/dev/null; sleep 1
    while [[ "$(info_field "$1" persistence rdb_bgsave_in_progress)" != 0 ]]; do sleep 0.2; done
    stat -c %s "$work/$1/dump.rdb"; }

# --- (1) many strings ------------------------------------------------------------
free_port S1
start "$S1"
S1_PID="${pids[-1]}"
log "(1) source 127.0.0.1:$S1: $N strings of 100 random bytes"
fill "$S1" "$N"
s1_mem="$(info_field "$S1" memory used_memory)"
s1_rdb="$(rdb_bytes "$S1")"
load_1="$(loadavg)"
log "  used_memory $((s1_mem / 1048576)) MB, RDB $((s1_rdb / 1048576)) MB; ferry run (load $load_1)"
read -r m1_s m1_rss m1_keys <<<"$(measure strings "$S1")"
log "  ferry: $m1_s s, peak RSS $((m1_rss / 1024)) MB, $m1_keys keys"
[[ "$m1_keys" == "$N" ]] || { echo "ferry applied $m1_keys keys, want $N" >&2; exit 1; }
stop_pid "$S1_PID"
flush_cluster

# --- (2) one big list --------------------------------------------------------------
free_port S2
start "$S2"
log "(2) source 127.0.0.1:$S2: one list of $LIST_MB MB (100-byte elements)"
fill_list "$S2" "$LIST_MB"
s2_mem="$(info_field "$S2" memory used_memory)"
s2_rdb="$(rdb_bytes "$S2")"
s2_len="$(cli "$S2" llen big:list)"
load_2="$(loadavg)"
log "  LLEN $s2_len, used_memory $((s2_mem / 1048576)) MB, RDB $((s2_rdb / 1048576)) MB; ferry run (load $load_2)"
read -r m2_s m2_rss m2_keys <<<"$(measure list "$S2")"
t_len="$(cli "${nodes[0]}" -c llen big:list)"
log "  ferry: $m2_s s, peak RSS $((m2_rss / 1024)) MB; target LLEN $t_len"
[[ "$t_len" == "$s2_len" ]] || { echo "target list has $t_len elements, want $s2_len" >&2; exit 1; }

load_after="$(loadavg)"
wall_s="$(py "round($(now) - $wall0, 1)")"
mkdir -p benches/results
python3 - <<PY
import json, os, datetime
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
MB = 1048576
rows = [
    dict(case=f"$N strings × 100 B", used_memory=int("$s1_mem"), rdb_bytes=int("$s1_rdb"), seconds=float("$m1_s"), peak_rss_kb=int("$m1_rss"), limit_mb=150),
    dict(case=f"one list of $LIST_MB MB ($s2_len × 100 B)", used_memory=int("$s2_mem"), rdb_bytes=int("$s2_rdb"), seconds=float("$m2_s"), peak_rss_kb=int("$m2_rss"), limit_mb=300),
]
for r in rows:
    r["met"] = r["peak_rss_kb"] / 1024 <= r["limit_mb"]
doc = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), nproc=os.cpu_count(), cpu=cpu,
           redis="$server_version", commit="$(git_commit)", ferry_binary="$ferry_note",
           load_average=dict(before="$load_before", strings="$load_1", list="$load_2", after="$load_after"),
           wall_seconds=float("$wall_s"), rows=rows)
json.dump(doc, open("benches/results/memory.json", "w"), indent=2, ensure_ascii=False)
md = ["# Memory: ferry's peak RSS during a full sync into a 3-master cluster", "",
      f"{doc['date']}, {doc['nproc']} CPUs ({cpu}), Redis {doc['redis']}, commit {doc['commit']}; ferry {doc['ferry_binary']}.",
      f"Load average: before {doc['load_average']['before']}, strings {doc['load_average']['strings']}, list {doc['load_average']['list']}, after {doc['load_average']['after']}.",
      f"Command: \`benches/memory.sh\` (N=$N, LIST_MB=$LIST_MB). Wall time {doc['wall_seconds']} s.", "",
      "| dataset | source used_memory | RDB | ferry seconds | ferry peak RSS | RSS ÷ used_memory | target (issue 6) |",
      "|---|---:|---:|---:|---:|---:|---|"]
for r in rows:
    md.append(f"| {r['case']} | {r['used_memory'] / MB:,.0f} MB | {r['rdb_bytes'] / MB:,.0f} MB | {r['seconds']:.1f} | "
              f"{r['peak_rss_kb'] / 1024:,.0f} MB | {r['peak_rss_kb'] * 1024 / r['used_memory']:.3f} | "
              f"≤ {r['limit_mb']} MB: {'met' if r['met'] else '**not met**'} |")
md += ["", "Peak RSS is \`VmHWM\` of the \`ferry run\` process, read when it has caught up (before it is stopped)."]
open("benches/results/memory.md", "w").write("\n".join(md) + "\n")
PY
cat benches/results/memory.md
