#!/usr/bin/env bash
# Multi-core benchmark (issue 15): ferry's full-sync throughput when the
# target costs (almost) nothing, with 1 and with 2 tokio worker threads.
#
#   source   a standalone Redis 7.0 with N strings of SIZE random bytes
#   target   benches/src/bin/resp_sink.rs on MASTERS ports: a fake cluster
#            that answers every command at once and stores nothing
#   ferry    `ferry run` (release) with TOKIO_WORKER_THREADS=1, then =2,
#            ROUNDS rounds alternating; each run from process start until
#            /status shows phase=streaming and applied_offset >= the source's
#            master_repl_offset (polled every 20 ms)
#   base     BASE_BIN (optional): another ferry binary run the same way,
#            alternating with this one, for a before/after in one sitting
#
# Reports keys/s, ferry's CPU-s per million keys (user + system from
# /proc/PID/stat) and the sink's, and ferry's CPU ÷ its busiest thread's CPU
# (/proc/PID/task: the speed-up over one core that free cores could give,
# whatever the machine's load), per run and as the mean per binary and
# worker count. (`ferry run` runs everything as tasks on the workers: the
# link, the main loop and applier, the engine and the sockets; until D94 the
# main loop ran on the main thread, a third busy thread.)
#
#   benches/results/$OUT.md / .json   (OUT defaults to sink_scaling)
#
# Every server lives in a temp dir on free 127.0.0.1 ports and is stopped by
# PID on exit; every step has a timeout (STEP_TIMEOUT seconds).
#
# Environment: N (default 1000000), SIZE (default 100), MASTERS (default 3),
# ROUNDS (default 2), WORKERS (default "1 2"), OUT, STEP_TIMEOUT, FERRY_BIN,
# BASE_BIN, FERRY_REDIS70 / FERRY_REDIS_CLI / FERRY_REDIS_BENCHMARK,
# SOURCE_SYNC (default diskless: the source serializes while it sends, and on
# 2 cores its ≈ 550 k keys/s bound the run; disk: it saves the RDB first,
# and each run is timed from the snapshot's first keys written, ferry's own
# pace).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# shellcheck source=benches/lib.sh
. benches/lib.sh
N="${N:-1000000}"
SIZE="${SIZE:-100}"
MASTERS="${MASTERS:-3}"
ROUNDS="${ROUNDS:-2}"
WORKERS="${WORKERS:-1 2}"
OUT="${OUT:-sink_scaling}"
SOURCE_SYNC="${SOURCE_SYNC:-diskless}"
[[ "$SOURCE_SYNC" == disk || "$SOURCE_SYNC" == diskless ]] || { echo "SOURCE_SYNC must be disk or diskless, not '$SOURCE_SYNC'" >&2; exit 2; }
load_before="$(loadavg)"
bench_init sink-scaling
build_ferry
log "cargo build --release -p ferry-benches --bin resp_sink"
timeout "$step_timeout" cargo build --release -q -p ferry-benches --bin resp_sink
SINK="$(dirname "$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/x")/resp_sink"

free_port SRC
if [[ "$SOURCE_SYNC" == disk ]]; then
    # The source saves its RDB to disk before sending it: the transfer is a
    # file copy, so ferry (not the source's serialization) sets the pace.
    start "$SRC" --repl-diskless-sync no
else
    start "$SRC"
fi
log "source 127.0.0.1:$SRC: filling $N keys"
fill "$SRC" "$N" "$SIZE"
[[ "$(cli "$SRC" dbsize)" == "$N" ]] || { echo "source holds $(cli "$SRC" dbsize) keys, want $N" >&2; exit 1; }

sink_ports=()
for _ in $(seq "$MASTERS"); do free_port P; sink_ports+=("$P"); done
"$SINK" "${sink_ports[@]}" >"$work/sink.out" 2>&1 &
SINK_PID=$!
pids+=("$SINK_PID")
for _ in $(seq 100); do cli "${sink_ports[0]}" ping >/dev/null 2>&1 && break; sleep 0.1; done
cli "${sink_ports[0]}" ping >/dev/null || { echo "the sink did not start" >&2; cat "$work/sink.out" >&2; exit 1; }
log "sink on ${sink_ports[*]} (pid $SINK_PID)"

# thread_cpu PID: "<busiest thread's CPU-s>,<threads with ≥ 0.05 CPU-s>" from
# /proc/PID/task/*/stat; total ÷ busiest is the speed-up free cores could give.
thread_cpu() {
    python3 - "$1" <<'PY'
import glob, os, sys
tick = os.sysconf("SC_CLK_TCK")
cpus = []
for f in glob.glob(f"/proc/{sys.argv[1]}/task/*/stat"):
    try:
        fields = open(f).read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    cpus.append((int(fields[11]) + int(fields[12])) / tick)
cpus.sort(reverse=True)
print(f"{cpus[0]:.2f},{sum(1 for c in cpus if c >= 0.05)}")
PY
}

bins=("new:$FERRY")
[[ -n "${BASE_BIN:-}" ]] && bins+=("base:$BASE_BIN")
runs="$work/runs.txt"
: >"$runs"
for round in $(seq "$ROUNDS"); do
    for w in $WORKERS; do
        for b in "${bins[@]}"; do
            name="${b%%:*}" bin="${b#*:}"
            free_port HTTP
            ferry_config "$work/ferry.yaml" "$SRC" "${sink_ports[0]}" "$HTTP"
            load="$(loadavg)"
            sink0="$(proc_cpu "$SINK_PID")"
            t0=$(now)
            TOKIO_WORKER_THREADS="$w" "$bin" run --config "$work/ferry.yaml" \
                >"$work/ferry.out" 2>"$work/ferry-$round-$w-$name.log" &
            FERRY_PID=$!
            pids+=("$FERRY_PID")
            result="$(WAIT_FIRST_KEY=1 wait_caught_up "$t0" "$FERRY_PID" "$HTTP" "$SRC")" ||
                { echo "ferry ($name, $w workers) failed:" >&2; tail -20 "$work/ferry-$round-$w-$name.log" >&2; exit 1; }
            read -r secs keys _ _ first <<<"$result"
            # disk: timed from the snapshot's first keys written (the
            # source's BGSAVE before the transfer is not ferry's time).
            [[ "$SOURCE_SYNC" == disk ]] && secs="$(py "f'{$secs - $first:.3f}'")"
            cpu="$(proc_cpu "$FERRY_PID")"
            threads="$(thread_cpu "$FERRY_PID")"
            sink_cpu="$(py "f'{$(proc_cpu "$SINK_PID") - $sink0:.3f}'")"
            stop_pid "$FERRY_PID"
            [[ "$keys" == "$N" ]] || { echo "ferry reported keys_applied=$keys, want $N" >&2; exit 1; }
            log "round $round, $name, $w worker(s): ${secs} s, ferry CPU ${cpu} s, sink CPU ${sink_cpu} s (load $load)"
            log "  CPU-s per thread: $threads"
            echo "$round $name $w $secs $cpu $sink_cpu $threads $load" >>"$runs"
        done
    done
done

load_after="$(loadavg)"
mkdir -p benches/results
python3 - "$runs" <<PY
import json, sys, datetime, os
N = $N
runs = []
for line in open(sys.argv[1]):
    r, name, w, secs, cpu, sink, threads, *load = line.split()
    busiest, busy_threads = threads.split(",")
    runs.append(dict(round=int(r), binary=name, workers=int(w), seconds=float(secs),
                     busiest_thread_cpu_s=float(busiest), busy_threads=int(busy_threads),
                     parallelism=float(cpu) / max(float(busiest), 0.01),
                     keys_per_s=N / float(secs), ferry_cpu_s=float(cpu),
                     ferry_cpu_s_per_million=float(cpu) * 1e6 / N,
                     sink_cpu_s_per_million=float(sink) * 1e6 / N, load=" ".join(load)))
groups = {}
for r in runs:
    groups.setdefault((r["binary"], r["workers"]), []).append(r)
summary = []
for (b, w), rs in sorted(groups.items()):
    mean = lambda k: sum(x[k] for x in rs) / len(rs)
    summary.append(dict(binary=b, workers=w, runs=len(rs), keys_per_s=mean("keys_per_s"),
                        ferry_cpu_s_per_million=mean("ferry_cpu_s_per_million"),
                        parallelism=mean("parallelism"),
                        sink_cpu_s_per_million=mean("sink_cpu_s_per_million")))
def rate(b, w):
    return next((s["keys_per_s"] for s in summary if s["binary"] == b and s["workers"] == w), None)
scaling = {b: (rate(b, 2) / rate(b, 1) if rate(b, 1) and rate(b, 2) else None) for b in {s["binary"] for s in summary}}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
doc = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           nproc=os.cpu_count(), cpu=cpu, redis="$server_version", commit="$(git_commit)",
           ferry_binary="$ferry_note", base_binary="$(basename "${BASE_BIN:-}")", n=N, size=$SIZE, masters=$MASTERS,
           load_average=dict(before="$load_before", after="$load_after"),
           runs=runs, summary=summary, scaling_2_over_1=scaling)
json.dump(doc, open("benches/results/$OUT.json", "w"), indent=2, ensure_ascii=False)
md = ["# Multi-core: full sync into a RESP sink (1 and 2 tokio worker threads)", "",
      f"{doc['date']}, {doc['nproc']} CPUs ({cpu}), Redis {doc['redis']} source, commit {doc['commit']}; ferry {doc['ferry_binary']}"
      + (f"; base binary {doc['base_binary']}" if doc['base_binary'] else "") + ".",
      f"{N:,} × {$SIZE}-byte strings → \`benches/src/bin/resp_sink.rs\` posing as a $MASTERS-master cluster; "
      f"load average before {doc['load_average']['before']}, after {doc['load_average']['after']}. "
      f"Command: \`N={N} ROUNDS=$ROUNDS SOURCE_SYNC=$SOURCE_SYNC benches/sink_scaling.sh\`"
      + (" (timed from the snapshot's first keys written; the source saved its RDB to disk first)." if "$SOURCE_SYNC" == "disk" else " (timed from process start; the source streams its RDB diskless)."), "",
      "| binary | workers | runs | keys/s (mean) | ferry CPU-s per million keys | sink CPU-s per million keys | ferry CPU ÷ busiest thread |",
      "|---|---:|---:|---:|---:|---:|---:|"]
for s in summary:
    md.append(f"| {s['binary']} | {s['workers']} | {s['runs']} | {s['keys_per_s']:,.0f} | {s['ferry_cpu_s_per_million']:.2f} | {s['sink_cpu_s_per_million']:.2f} | {s['parallelism']:.2f} |")
md += ["", "Scaling (keys/s with 2 workers ÷ with 1): " + ", ".join(f"{b} {v:.2f}×" for b, v in sorted(scaling.items()) if v), "",
       "| round | binary | workers | seconds | keys/s | ferry CPU-s | busiest thread CPU-s | threads ≥ 0.05 CPU-s | sink CPU-s per million | load average |",
       "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
for r in runs:
    md.append(f"| {r['round']} | {r['binary']} | {r['workers']} | {r['seconds']:.3f} | {r['keys_per_s']:,.0f} | {r['ferry_cpu_s']:.2f} | {r['busiest_thread_cpu_s']:.2f} | {r['busy_threads']} | {r['sink_cpu_s_per_million']:.2f} | {r['load']} |")
md += ["", "Wall time is only meaningful on an otherwise idle machine. \"ferry CPU ÷ busiest thread\" does not depend",
       "on the load: it is the speed-up over one core that enough free cores could give this run's split of work",
       "(the busiest thread is the serial bound). On 2 cores the sink and the source share them with ferry."]
open("benches/results/$OUT.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
