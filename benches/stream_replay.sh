#!/usr/bin/env bash
# Streaming throughput of `ferry run` replaying the source's backlog, with
# and without one option, in the same run on the same machine:
#
#   VARIANT=checkpoints     target.checkpoints true vs false, 3 masters
#   VARIANT=wait_replicas   target.wait_replicas 100 ms vs unset (checkpoints
#                           on), 3 masters + 3 replicas (WAIT 1 needs one each)
#   VARIANT=standalone      target.checkpoints true vs false into a standalone
#                           Redis 7.0 target (one key in db 0, D62)
#
# A standalone Redis 7.0 source (1 GiB backlog) and the cluster on
# 127.0.0.1; ferry syncs the empty source, then, per round: stop ferry
# (SIGTERM), write M commands into the source's backlog, start ferry with the
# option on/off (alternating, twice each), time from process start until
# /status shows applied_offset >= the source's master_repl_offset. Rate = M /
# time (process start and the checkpoint read at connect included).
#
# Commands (python3 → redis-cli --pipe): INCR c:<r%100000>, RPUSH
# l:<r%1000> <i>, SET s:<i%200000> <32 bytes>, one third each: keys spread
# over every slot (the costly case for per-slot transactions).
#
#   benches/results/stream_<VARIANT>.md   the table (or $OUT.md), with
#                                         ferry's and the target's CPU per
#                                         million commands
#
# Environment: VARIANT (or the first argument), M (default 600000), OUT,
# STEP_TIMEOUT, FERRY_BIN, FERRY_REDIS70, FERRY_REDIS_CLI.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=benches/lib.sh
. benches/lib.sh
VARIANT="${1:-${VARIANT:-checkpoints}}"
M="${M:-600000}"
case "$VARIANT" in
    checkpoints) replicas=0; modes="true false true false"; heading="checkpoints" ;;
    wait_replicas) replicas=1; modes="100 off 100 off"; heading="wait_replicas (ms)" ;;
    standalone) replicas=0; modes="true false true false"; heading="checkpoints (standalone target)" ;;
    *) echo "VARIANT must be checkpoints, wait_replicas or standalone, not $VARIANT" >&2; exit 2 ;;
esac
bench_init "stream-$VARIANT"
build_ferry

# target_option MODE: the target's YAML for one round.
target_option() {
    case "$VARIANT:$1" in
        checkpoints:*|standalone:*) echo ", checkpoints: $1" ;;
        wait_replicas:off) echo "" ;;
        wait_replicas:*) echo ", wait_replicas: $1" ;;
    esac
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

# fill_mix PORT COUNT SEED: the INCR/RPUSH/SET mix above.
fill_mix() {
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

free_port SRC
start "$SRC" --repl-backlog-size 1gb
if [[ "$VARIANT" == standalone ]]; then
    free_port DST
    start "$DST"
    nodes=("$DST")
else
    start_cluster 3 "$replicas"
fi
free_port HTTP
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

config "$(target_option "${modes%% *}")"
run_ferry
wait_applied "$(info_field "$SRC" replication master_repl_offset)"
rows=()
round=0
for mode in $modes; do
    round=$((round + 1))
    stop_pid "$FERRY_PID"
    fill_mix "$SRC" "$M" "$round"
    want="$(info_field "$SRC" replication master_repl_offset)"
    config "$(target_option "$mode")"
    mcpu0="$(nodes_cpu)"
    t0=$(now)
    run_ferry
    wait_applied "$want"
    secs="$(py "round($(now) - $t0, 2)")"
    rate="$(py "int($M / ($(now) - $t0))")"
    # ferry's CPU from its start until caught up, per million commands.
    read -r cpu_user cpu_sys < <(proc_cpu_split "$FERRY_PID")
    cpu="$(py "f'{($cpu_user + $cpu_sys) * 1e6 / $M:.2f} ({$cpu_user * 1e6 / $M:.2f} / {$cpu_sys * 1e6 / $M:.2f})'")"
    # The target's CPU over the same time (masters, and replicas if any).
    mcpu="$(py "f'{($(nodes_cpu) - $mcpu0) * 1e6 / $M:.2f}'")"
    rss_mb="$(( $(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$FERRY_PID/status") / 1024 ))"
    log "round $round: $VARIANT=$mode: $M commands in $secs s = $rate commands/s, ferry CPU-s per million $cpu, target $mcpu, peak RSS $rss_mb MB"
    rows+=("| $round | $mode | $M | $secs | $rate | $cpu | $mcpu | $rss_mb |")
done
ckpt_keys=0
for n in "${nodes[@]}"; do
    ckpt_keys=$((ckpt_keys + $(cli "$n" --scan --pattern '__ferry:*' | wc -l)))
done
mkdir -p benches/results
out="benches/results/${OUT:-stream_$VARIANT}.md"
{
    echo "# Streaming with and without $VARIANT (\`benches/stream_replay.sh $VARIANT\`)"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load $(loadavg), Redis $server_version, commit $(git_commit); ferry $ferry_note;"
    if [[ "$VARIANT" == standalone ]]; then
        echo "source backlog replayed by a restarted \`ferry run\` (release) into one standalone Redis;"
    else
        echo "source backlog replayed by a restarted \`ferry run\` (release) into 3 local masters ($replicas replica(s) each);"
    fi
    echo "INCR/RPUSH/SET over keys spread on every slot. $ckpt_keys keys under \`__ferry:\` (on masters and replicas) at the end."
    echo
    echo "| round | $heading | commands | seconds | commands/s | ferry CPU-s per million commands (user / system) | target CPU-s per million commands | ferry peak RSS MB |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
} >"$out"
cat "$out"
