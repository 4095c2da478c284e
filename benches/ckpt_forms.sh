#!/usr/bin/env bash
# What a checkpointed transaction costs the target master in each command
# form ferry could send (issue 15: is a per-master Lua batch cheaper than a
# MULTI per slot?). One cluster-enabled node serving every slot, N one-key
# transactions over random slots; see benches/tools/ckpt_forms.py.
#
# Writes benches/results/$OUT.md (OUT defaults to ckpt_forms).
# Environment: N (default 200000), ROUNDS (default 3), OUT, FERRY_REDIS70,
# FERRY_VALKEY (a valkey-server path: measured too when set).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
N="${N:-200000}"
ROUNDS="${ROUNDS:-3}"
OUT="${OUT:-ckpt_forms}"
bench_init ckpt-forms

measure() {
    local server="$1" P
    SERVER="$server"
    free_port P bus
    start "$P" --cluster-enabled yes --cluster-config-file "$work/nodes-$P.conf"
    local pid="${pids[-1]}"
    cli "$P" cluster addslotsrange 0 16383 >/dev/null
    for i in $(seq 100); do
        cli "$P" cluster info | grep -q cluster_state:ok && break
        [[ $i == 100 ]] && { echo "node $P not ok" >&2; exit 1; }
        sleep 0.1
    done
    echo
    echo "$("$server" --version | sed 's/ sha=.*//'), load before: $(loadavg)"
    echo
    timeout "$step_timeout" python3 benches/tools/ckpt_forms.py "$P" "$pid" "$N" "$ROUNDS"
    stop_pid "$pid"
}

{
    echo "# Checkpointed transaction: server CPU per form"
    echo
    echo "$(date -u +%FT%TZ), $(nproc) CPUs, commit $(git_commit); N=$N one-key transactions"
    echo "over random slots, 1000 per pipelined write, median of $ROUNDS rounds."
    measure "$SERVER"
    if [[ -n "${FERRY_VALKEY:-}" ]]; then measure "$FERRY_VALKEY"; fi
} > "benches/results/$OUT.md"
cat "benches/results/$OUT.md"
