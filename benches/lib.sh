# Shared helpers for the benchmark scripts (sourced, not run).
#
# Every server a script starts lives in a temp dir ($work) on a free
# 127.0.0.1 port and is stopped by PID on exit (bench_cleanup, installed as
# the EXIT trap by bench_init). Every blocking step has a timeout
# ($step_timeout seconds).

log() { echo "+ $*" >&2; }
now() { date +%s.%N; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# py EXPR: evaluate a Python expression (arithmetic on the shell's numbers).
py() { python3 -c "print($1)"; }

# find_v7 NAME OVERRIDE: a binary whose `--version` reports 7.x (a pyenv
# shim on PATH may run 6.2).
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

# bench_init NAME: binaries, the work dir, the EXIT trap. Sets SERVER, CLI,
# BENCH, server_version, work, step_timeout, pids.
bench_init() {
    step_timeout="${STEP_TIMEOUT:-600}"
    SERVER="$(find_v7 redis-server "${FERRY_REDIS70:-}")"
    CLI="$(find_v7 redis-cli "${FERRY_REDIS_CLI:-}")"
    BENCH="$(find_v7 redis-benchmark "${FERRY_REDIS_BENCHMARK:-}")"
    server_version="$("$SERVER" --version | sed 's/.*v=\([^ ]*\).*/\1/')"
    log "server: $SERVER ($server_version), cli: $CLI, benchmark: $BENCH"
    work="$(mktemp -d -t "ferry-$1-XXXXXX")"
    pids=()
    used_ports=" "
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# build_ferry: sets FERRY (release binary) and ferry_note.
build_ferry() {
    if [[ -n "${FERRY_BIN:-}" ]]; then
        FERRY="$FERRY_BIN"
        # Only the file name goes into the results (no paths of this machine).
        ferry_note="binary $(basename "$FERRY_BIN") (FERRY_BIN, not built from this tree)"
        log "ferry: $FERRY (FERRY_BIN, not rebuilt)"
    else
        log "cargo build --release -p ferry"
        timeout "$step_timeout" cargo build --release -q -p ferry
        local target_dir
        target_dir="$(cargo metadata --format-version 1 --no-deps |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
        FERRY="$target_dir/release/ferry"
        ferry_note="built from this tree (cargo build --release -p ferry)"
    fi
    [[ -x "$FERRY" ]] || { echo "no ferry binary at $FERRY" >&2; exit 1; }
}

stop_pid() {
    local p="$1"
    kill -0 "$p" 2>/dev/null || return 0
    kill "$p" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

bench_cleanup() {
    local p
    for p in "${pids[@]}"; do stop_pid "$p"; done
    rm -rf "$work"
}

# free_port VAR [bus]: a free 127.0.0.1 port not handed out before in this
# run (and port+10000 free too with "bus").
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

# start PORT [args...]: a server in its own directory, remembered by PID
# (the last one is ${pids[-1]}); SERVER_ARGS (an array, may be unset) goes
# to every server, also those of start_cluster.
start() {
    local port="$1"; shift
    local dir="$work/$port"; mkdir -p "$dir"
    "$SERVER" --port "$port" --bind 127.0.0.1 --protected-mode no --save '' --appendonly no \
        --dir "$dir" --daemonize no --repl-diskless-sync-delay 0 --logfile "$dir/log" \
        ${SERVER_ARGS[@]+"${SERVER_ARGS[@]}"} "$@" \
        </dev/null >/dev/null 2>&1 &
    pids+=("$!")
    for _ in $(seq 100); do cli "$port" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "server on $port did not start:" >&2; tail "$dir/log" >&2; exit 1
}

# start_cluster COUNT [REPLICAS]: COUNT masters with REPLICAS replicas each
# (default 0); sets nodes=(ports of every node).
start_cluster() {
    local count="$1" replicas="${2:-0}" P n i
    nodes=()
    for _ in $(seq $((count * (1 + replicas)))); do
        free_port P bus
        start "$P" --cluster-enabled yes --cluster-config-file "$work/nodes-$P.conf"
        nodes+=("$P")
    done
    timeout "$step_timeout" "$CLI" --cluster create $(printf '127.0.0.1:%s ' "${nodes[@]}") \
        --cluster-replicas "$replicas" --cluster-yes >"$work/cluster-create.log" 2>&1 ||
        { cat "$work/cluster-create.log" >&2; exit 1; }
    for n in "${nodes[@]}"; do
        for i in $(seq 300); do
            cli "$n" cluster info 2>/dev/null | grep -q cluster_state:ok && break
            [[ $i == 300 ]] && { echo "cluster node $n not ok after 30 s" >&2; exit 1; }
            sleep 0.1
        done
    done
    if (( replicas > 0 )); then
        # Every replica in sync with its master.
        for n in "${nodes[@]}"; do
            for i in $(seq 300); do
                [[ "$(info_field "$n" replication role)" == master ||
                    "$(info_field "$n" replication master_link_status)" == up ]] && break
                [[ $i == 300 ]] && { echo "replica $n not in sync" >&2; exit 1; }
                sleep 0.1
            done
        done
    fi
    log "cluster: $count masters, $replicas replicas each, on 127.0.0.1:${nodes[*]}"
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

# fill PORT COUNT [SIZE] [PREFIX]: COUNT × SET <PREFIX><i> <SIZE random
# bytes> (incompressible), via redis-cli --pipe.
fill() {
    python3 - "$2" "${3:-100}" "${4:-k:}" <<'PY' | timeout "$step_timeout" "$CLI" -h 127.0.0.1 -p "$1" --pipe >"$work/pipe-$1.log"
import os, sys
n, size, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
out = sys.stdout.buffer
step = max(1, min(10000, (1 << 24) // max(size, 1)))
for lo in range(0, n, step):
    hi = min(n, lo + step)
    rnd = os.urandom(size * (hi - lo))
    out.write(b"".join(
        b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, size, rnd[size * j:size * j + size])
        for j, k in enumerate(b"%s%d" % (prefix, i) for i in range(lo, hi))))
PY
    grep -q 'errors: 0' "$work/pipe-$1.log" || { cat "$work/pipe-$1.log" >&2; exit 1; }
}

# ferry_config FILE SOURCE_PORT TARGET_PORT HTTP_PORT: a minimal config.
ferry_config() {
    cat >"$1" <<YAML
source: { url: "redis://127.0.0.1:$2" }
target: { url: "redis://127.0.0.1:$3" }
state_dir: "$work/ferry-state-$4"
http: { listen: "127.0.0.1:$4" }
YAML
}

# ferry_checkpoints HTTP_PORT: checkpointed transactions ferry committed so far
# (`/status` target.checkpoints; 0 if it cannot be read).
ferry_checkpoints() {
    python3 - "$1" <<'PY'
import json, sys, urllib.request
try:
    st = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/status", timeout=2))
    print(int((st.get("target") or {}).get("checkpoints") or 0))
except (OSError, ValueError):
    print(0)
PY
}

# wait_caught_up T0 PID HTTP SRC: waits until ferry's /status shows
# phase=streaming and applied_offset >= the source's master_repl_offset;
# prints "<seconds since T0> <keys_applied> <applied_offset> <source offset>",
# and with WAIT_FIRST_KEY=1 a fifth field: the seconds since T0 at the first
# poll that saw keys_applied > 0 (the snapshot's first keys written).
wait_caught_up() {
    python3 - "$1" "$2" "$3" "$4" "$step_timeout" "${WAIT_FIRST_KEY:-0}" <<'PY'
import json, os, socket, sys, time, urllib.request
t0, pid, http, src, limit = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
want_first = sys.argv[6] == "1"
first = None

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
        if first is None and (st.get("keys_applied") or 0) > 0:
            first = time.time() - t0
        if st.get("phase") == "streaming" and st.get("applied_offset") is not None:
            off = repl_offset()
            if st["applied_offset"] >= off:
                tail = f" {first if first is not None else 0:.3f}" if want_first else ""
                print(f"{time.time() - t0:.3f} {st['keys_applied']} {st['applied_offset']} {off}{tail}")
                break
    except (OSError, ValueError):
        pass
    time.sleep(max(0.0, 0.02 - (time.time() - now)))
PY
}

# git_commit: short HEAD, "(dirty tree)" when the tree differs.
git_commit() {
    local c
    c="$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    git diff --quiet 2>/dev/null || c+=" (dirty tree)"
    echo "$c"
}

# proc_cpu_split PID: "<user> <system>" CPU seconds the process has used so
# far (/proc/PID/stat fields 14 and 15, in clock ticks).
proc_cpu_split() {
    python3 - "$1" <<'PY'
import os, sys
fields = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split()
tck = os.sysconf('SC_CLK_TCK')
print(f"{int(fields[11]) / tck:.3f} {int(fields[12]) / tck:.3f}")
PY
}

# proc_ctxt PID: context switches (voluntary + involuntary) of the process's
# live threads so far (/proc/PID/task/*/status; a thread that has exited
# takes its count with it).
proc_ctxt() {
    python3 - "$1" <<'PY'
import glob, sys
n = 0
for path in glob.glob(f"/proc/{sys.argv[1]}/task/*/status"):
    try:
        for line in open(path):
            if "ctxt_switches:" in line:
                n += int(line.split()[1])
    except OSError:
        pass
print(n)
PY
}

# proc_cpu PID: user + system CPU seconds the process has used so far
# (/proc/PID/stat fields 14 and 15, in clock ticks).
proc_cpu() {
    python3 - "$1" <<'PY'
import os, sys
fields = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split()
print(f"{(int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK'):.3f}")
PY
}

# nodes_cpu: the CPU seconds (used_cpu_user + used_cpu_sys of INFO cpu) of
# every node in ${nodes[@]}, summed.
nodes_cpu() {
    local n total=0 u s
    for n in "${nodes[@]}"; do
        u="$(info_field "$n" cpu used_cpu_user)"
        s="$(info_field "$n" cpu used_cpu_sys)"
        total="$(py "$total + $u + $s")"
    done
    echo "$total"
}

# replica_sync SRC VAR: sets VAR to the seconds a fresh redis-server takes
# from REPLICAOF until master_link_status:up and master_sync_in_progress:0;
# checks it holds want_keys (the global) keys, then stops it. Runs in this
# shell (not a subshell) so the EXIT trap knows the server's PID.
replica_sync() {
    local src="$1" rep_port rep_pid t0 t1 r deadline keys
    free_port rep_port
    start "$rep_port"
    rep_pid="${pids[-1]}"
    t0=$(now)
    cli "$rep_port" replicaof 127.0.0.1 "$src" >/dev/null
    deadline=$(( $(date +%s) + step_timeout ))
    while :; do
        r="$(cli "$rep_port" info replication | tr -d '\r')"
        if grep -q '^master_link_status:up' <<<"$r" && grep -q '^master_sync_in_progress:0' <<<"$r"; then
            t1=$(now); break
        fi
        (( $(date +%s) < deadline )) || { echo "replica not in sync after $step_timeout s" >&2; exit 1; }
        sleep 0.02
    done
    keys="$(cli "$rep_port" dbsize)"
    stop_pid "$rep_pid"
    [[ "$keys" == "$want_keys" ]] || { echo "replica holds $keys keys, want $want_keys" >&2; exit 1; }
    printf -v "$2" '%s' "$(py "f'{$t1 - $t0:.3f}'")"
}
