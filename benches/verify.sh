#!/usr/bin/env bash
# `ferry verify` speed (issue 16): keys compared a second vs the number of
# keys, the verify of commit e0d2e9b (sequential: TYPE, PTTL and value
# round trips per batch, source then each master) against this tree's
# (parallel, pipelined, fingerprint first), in the same run on the same data.
#
# For each N of N_LIST: a standalone Redis 7.0 source filled with N × SET
# k:<i> <SIZE random bytes>, migrated by this tree's `ferry run` into a
# MASTERS-master cluster (until caught up, then stopped), then, each timed
# from process start to exit (exit 0 and "N keys compared" required):
#
#   old      e0d2e9b's `ferry verify`
#   digest   this tree's `ferry verify` (every node allows DEBUG: first check
#            by DEBUG DIGEST-VALUE, the `auto` choice here)
#   values   this tree's `ferry verify --method values` (what `auto` picks
#            where DEBUG is disabled, the Redis 7 default: strings by value)
#
# Servers start with `--enable-debug-command yes` so both methods can run.
#
# The old binary: OLD_FERRY_BIN, or built in release from a `git worktree`
# of e0d2e9b under target/bench-old/ (reused by later runs).
#
#   benches/results/verify.md / verify.json
#
# Environment: N_LIST (default "1000000 5000000"), SIZE (default 100),
# MASTERS (default 3), OLD_FERRY_BIN, FERRY_BIN, STEP_TIMEOUT (default 600),
# FERRY_REDIS70 / FERRY_REDIS_CLI (binaries reporting 7.x).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# shellcheck source=benches/lib.sh
. benches/lib.sh
N_LIST="${N_LIST:-1000000 5000000}"
SIZE="${SIZE:-100}"
MASTERS="${MASTERS:-3}"
OLD_COMMIT=e0d2e9b
wall0=$(now)
bench_init verify
build_ferry

if [[ -n "${OLD_FERRY_BIN:-}" ]]; then
    OLD="$OLD_FERRY_BIN"
    old_note="a release build of $OLD_COMMIT given by OLD_FERRY_BIN"
else
    old_src="$root/target/bench-old/src"
    if [[ ! -d "$old_src" ]]; then
        log "git worktree add --detach $old_src $OLD_COMMIT"
        git worktree add --detach "$old_src" "$OLD_COMMIT" >&2
    fi
    log "building $OLD_COMMIT in release (target/bench-old/target)"
    (cd "$old_src" && CARGO_TARGET_DIR="$root/target/bench-old/target" \
        timeout "$step_timeout" cargo build --release -q -p ferry)
    OLD="$root/target/bench-old/target/release/ferry"
    old_note="built from a git worktree of $OLD_COMMIT (cargo build --release -p ferry)"
fi
[[ -x "$OLD" ]] || { echo "no old ferry binary at $OLD" >&2; exit 1; }

SERVER_ARGS=(--enable-debug-command yes)
free_port SRC
start "$SRC"
start_cluster "$MASTERS"

# timed NAME BIN ARGS...: runs `BIN verify`, prints "<seconds> <peak RSS kB>",
# fails unless exit 0 with every key compared.
timed() {
    local name="$1" bin="$2" t0 t1 rss s0 s1 c0 c1; shift 2
    read -r s0 c0 <<<"$(servers_cpu)"
    t0=$(now)
    /usr/bin/time -f "%M %U %S" -o "$work/$name.rss" timeout "$step_timeout" "$bin" verify \
        --config "$work/ferry.yaml" "$@" >"$work/$name.out" 2>"$work/$name.err" ||
        { echo "$name: verify failed" >&2; cat "$work/$name.out" "$work/$name.err" >&2; exit 1; }
    t1=$(now)
    grep -q "verify: $N keys compared, 0 differ" "$work/$name.out" ||
        { echo "$name: unexpected result" >&2; cat "$work/$name.out" >&2; exit 1; }
    read -r s1 c1 <<<"$(servers_cpu)"
    read -r rss user sys <<<"$(tail -1 "$work/$name.rss")"
    echo "$(py "round($t1 - $t0, 3)") $rss $(py "round($user + $sys, 2)") $(py "round($s1 - $s0, 2)") $(py "round($c1 - $c0, 2)")"
}

# server_cpu PORT: CPU seconds (user + sys) the server used so far.
server_cpu() {
    py "$(cli "$1" info cpu | tr -d '\r' | sed -n 's/^used_cpu_\(sys\|user\):\(.*\)$/\2/p' | paste -sd+)"
}

# servers_cpu: "<source CPU s> <masters' CPU s>" used so far.
servers_cpu() {
    local n total=0
    for n in "${nodes[@]}"; do total="$(py "$total + $(server_cpu "$n")")"; done
    echo "$(server_cpu "$SRC") $total"
}

rows=""
for N in $N_LIST; do
    cli "$SRC" flushall >/dev/null
    flush_cluster
    log "source: $N × SET k:<i> <$SIZE random bytes>"
    fill "$SRC" "$N" "$SIZE"
    free_port HTTP
    ferry_config "$work/ferry.yaml" "$SRC" "${nodes[0]}" "$HTTP"
    rm -rf "$work/ferry-state-$HTTP"
    t0=$(now)
    "$FERRY" run --config "$work/ferry.yaml" >"$work/run.out" 2>"$work/run.log" &
    FERRY_PID=$!
    pids+=("$FERRY_PID")
    wait_caught_up "$t0" "$FERRY_PID" "$HTTP" "$SRC" >/dev/null ||
        { tail -20 "$work/run.log" >&2; exit 1; }
    stop_pid "$FERRY_PID"
    [[ "$(cluster_keys)" == "$N" ]] || { echo "cluster holds $(cluster_keys) keys, want $N" >&2; exit 1; }
    for name in old digest values; do
        load="$(loadavg)"
        log "N=$N: $name (load $load)"
        case "$name" in
            old) r="$(timed old "$OLD")" ;;
            digest) r="$(timed digest "$FERRY")"
                grep -q "not allowed" "$work/digest.err" && { echo "DEBUG refused" >&2; exit 1; } ;;
            values) r="$(timed values "$FERRY" --method values)" ;;
        esac
        read -r secs rss cpu scpu tcpu <<<"$r"
        log "  $secs s, peak RSS $((rss / 1024)) MB, CPU s: ferry $cpu, source $scpu, masters $tcpu"
        rows+="$N $name $secs $rss $cpu $scpu $tcpu $load"$'\n'
    done
done

mkdir -p benches/results
python3 - "$rows" <<PY
import json, sys, datetime, os
rows = []
for line in sys.argv[1].strip().splitlines():
    n, name, secs, rss, cpu, scpu, tcpu, *load = line.split()
    rows.append(dict(n=int(n), method=name, seconds=float(secs), keys_per_s=int(n) / float(secs),
                     peak_rss_mb=round(int(rss) / 1024, 1), ferry_cpu_s=float(cpu),
                     source_cpu_s=float(scpu), masters_cpu_s=float(tcpu), load_average=" ".join(load)))
for r in rows:
    old = next(o for o in rows if o["n"] == r["n"] and o["method"] == "old")
    r["speedup_vs_old"] = r["keys_per_s"] / old["keys_per_s"]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
doc = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           nproc=os.cpu_count(), cpu=cpu, redis="$server_version", commit="$(git_commit)",
           ferry="$ferry_note", old="$old_note", masters=$MASTERS, size=$SIZE,
           wall_seconds=round($(now) - $wall0, 1), rows=rows)
json.dump(doc, open("benches/results/verify.json", "w"), indent=2, ensure_ascii=False)
label = {"old": f"$OLD_COMMIT (before)", "digest": "new, DEBUG DIGEST-VALUE", "values": "new, --method values"}
md = ["# ferry verify: keys compared per second", "",
      f"{doc['date']}, {doc['nproc']} CPUs ({cpu}), Redis {doc['redis']}, commit {doc['commit']}; "
      f"new: {doc['ferry']}; old: {doc['old']}. Standalone source → $MASTERS-master cluster, "
      f"SET k:<i> <$SIZE random bytes>. Command: \`N_LIST=\"$N_LIST\" benches/verify.sh\`; "
      f"wall time {doc['wall_seconds']} s.", "",
      "| keys | verify | seconds | keys/s | × old | CPU s: ferry / source / masters | peak RSS MB | load average |",
      "|---:|---|---:|---:|---:|---:|---:|---|"]
for r in rows:
    md.append(f"| {r['n']:,} | {label[r['method']]} | {r['seconds']:.1f} | {r['keys_per_s']:,.0f} | "
              f"{r['speedup_vs_old']:.2f}× | {r['ferry_cpu_s']:.1f} / {r['source_cpu_s']:.1f} / {r['masters_cpu_s']:.1f} | "
              f"{r['peak_rss_mb']} | {r['load_average']} |")
open("benches/results/verify.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
