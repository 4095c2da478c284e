#!/usr/bin/env bash
# `ferry verify` of a cluster source (issue 13) against the same data in a
# standalone source, in the same run: keys compared a second.
#
# N × SET k:<i> <SIZE bytes> written three times: into a standalone
# Redis 7.0 (the baseline source), into a SRC_MASTERS-master source cluster
# (each key on the master owning its slot) and into a DST_MASTERS-master
# target cluster. Then, each timed from process start to exit (exit 0 and
# "N keys compared, 0 differ" required), ROUNDS times alternating:
#
#   standalone   ferry verify, source = the standalone server
#   cluster      ferry verify, source = any node of the source cluster
#                (every master scanned by its own producer)
#
# Both use `--method values` (DEBUG is off by default since Redis 7.0) and
# the same target. Output: benches/results/verify_cluster_source.{md,json}.
#
# Environment: N (default 500000), SIZE (default 100), SRC_MASTERS
# (default 3), DST_MASTERS (default 4), ROUNDS (default 2), FERRY_BIN,
# STEP_TIMEOUT (default 600), FERRY_REDIS70 / FERRY_REDIS_CLI.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# shellcheck source=benches/lib.sh
. benches/lib.sh
N="${N:-500000}"
SIZE="${SIZE:-100}"
SRC_MASTERS="${SRC_MASTERS:-3}"
DST_MASTERS="${DST_MASTERS:-4}"
ROUNDS="${ROUNDS:-2}"
wall0=$(now)
bench_init verify-cluster-source
build_ferry

free_port SRC
start "$SRC"
start_cluster "$SRC_MASTERS"
src_nodes=("${nodes[@]}")
start_cluster "$DST_MASTERS"
dst_nodes=("${nodes[@]}")
# The same values in the three copies: k:<i> = "<i>-<i>-..." cut to SIZE
# bytes (deterministic, so each copy is generated on its own).
log "filling $N keys (standalone, $SRC_MASTERS-master source, $DST_MASTERS-master target)"
fill_det() {
    python3 - "$N" "$SIZE" <<'PY'
import sys
n, size = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout.buffer
for i in range(n):
    k = b"k:%d" % i
    v = (b"%d-" % i * size)[:size]
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
PY
}
fill_det | timeout "$step_timeout" "$CLI" -h 127.0.0.1 -p "$SRC" --pipe >"$work/pipe-src.log"
grep -q 'errors: 0' "$work/pipe-src.log" || { cat "$work/pipe-src.log" >&2; exit 1; }
for ports in "${src_nodes[*]}" "${dst_nodes[*]}"; do
    # shellcheck disable=SC2086
    python3 - "$CLI" "$N" "$SIZE" "$step_timeout" $ports <<'PY'
import subprocess, sys
cli, n, size, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ports = sys.argv[5:]

def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc

owner = [None] * 16384
nodes = subprocess.run([cli, "-h", "127.0.0.1", "-p", ports[0], "cluster", "nodes"],
                       capture_output=True, text=True, timeout=limit).stdout
for line in nodes.splitlines():
    f = line.split()
    if len(f) < 9 or "master" not in f[2]:
        continue
    port = f[1].split("@")[0].rsplit(":", 1)[1]
    for r in f[8:]:
        if r.startswith("["):
            continue
        lo, _, hi = r.partition("-")
        for s in range(int(lo), int(hi or lo) + 1):
            owner[s] = port
assert all(owner), "slots not all served"
procs = {p: subprocess.Popen([cli, "-h", "127.0.0.1", "-p", p, "--pipe"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
         for p in set(owner)}
bufs = {p: [] for p in procs}
for i in range(n):
    k = b"k:%d" % i
    v = (b"%d-" % i * size)[:size]
    p = owner[crc16(k) % 16384]
    bufs[p].append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
    if len(bufs[p]) >= 10000:
        procs[p].stdin.write(b"".join(bufs[p]))
        bufs[p] = []
for p, proc in procs.items():
    proc.stdin.write(b"".join(bufs[p]))
    out, _ = proc.communicate(timeout=limit)
    if b"errors: 0" not in out:
        sys.exit(f"redis-cli --pipe to {p}: {out!r}")
PY
done
total=0
for n in "${src_nodes[@]}"; do total=$((total + $(cli "$n" dbsize))); done
[[ "$total" == "$N" ]] || { echo "source cluster holds $total keys, not $N" >&2; exit 1; }

free_port H1
free_port H2
cat >"$work/standalone.yaml" <<YAML
source: { url: "redis://127.0.0.1:$SRC" }
target: { url: "redis://127.0.0.1:${dst_nodes[0]}" }
state_dir: "$work/state-standalone"
http: { listen: "127.0.0.1:$H1" }
YAML
cat >"$work/cluster.yaml" <<YAML
source: { url: "redis://127.0.0.1:${src_nodes[0]}" }
target: { url: "redis://127.0.0.1:${dst_nodes[0]}" }
state_dir: "$work/state-cluster"
http: { listen: "127.0.0.1:$H2" }
YAML

results=()
for round in $(seq "$ROUNDS"); do
    for name in standalone cluster; do
        log "round $round: $name (load $(loadavg))"
        t0=$(now)
        timeout "$step_timeout" "$FERRY" verify --config "$work/$name.yaml" --method values \
            >"$work/$name.out" 2>"$work/$name.err" ||
            { echo "$name: verify failed" >&2; cat "$work/$name.out" "$work/$name.err" >&2; exit 1; }
        t1=$(now)
        grep -q "$N keys compared, 0 differ" "$work/$name.out" ||
            { echo "$name: unexpected result" >&2; cat "$work/$name.out" >&2; exit 1; }
        secs=$(py "$t1 - $t0")
        results+=("$round $name $secs $(loadavg | cut -d' ' -f1)")
        log "$name: ${secs}s"
    done
done

mkdir -p benches/results
printf '%s\n' "${results[@]}" >"$work/results.txt"
python3 - "$work/results.txt" "$N" "$SIZE" "$SRC_MASTERS" "$DST_MASTERS" \
    "$server_version" "$ferry_note" "$(py "$(now) - $wall0")" <<'PY'
import json, sys, datetime
n, size, sm, dm = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
version, note, wall = sys.argv[6], sys.argv[7], float(sys.argv[8])
rows = []
for line in open(sys.argv[1]):
    r, name, secs, load = line.split()
    rows.append({"round": int(r), "source": name, "seconds": float(secs),
                 "keys_per_s": n / float(secs), "load1": float(load)})
best = {s: min(x["seconds"] for x in rows if x["source"] == s) for s in ("standalone", "cluster")}
doc = {"date": datetime.datetime.utcnow().isoformat() + "Z", "n": n, "size": size,
       "source_masters": sm, "target_masters": dm, "server": version, "ferry": note,
       "rows": rows, "best_seconds": best,
       "cluster_vs_standalone": best["standalone"] / best["cluster"], "wall_seconds": wall}
json.dump(doc, open("benches/results/verify_cluster_source.json", "w"), indent=2)
md = ["# ferry verify: cluster source vs standalone source (same data, same run)", "",
      f"{n:,} keys of {size} B; source: a standalone Redis {version} or a {sm}-master cluster; "
      f"target: a {dm}-master cluster; `--method values`; ferry {note}.", "",
      "| round | source | seconds | keys/s | load (1 min) |", "|---|---|---|---|---|"]
for x in rows:
    md.append(f"| {x['round']} | {x['source']} | {x['seconds']:.1f} | {x['keys_per_s']:,.0f} | {x['load1']} |")
md += ["", f"Best of each: standalone {best['standalone']:.1f} s, cluster {best['cluster']:.1f} s: "
       f"the cluster source is verified {doc['cluster_vs_standalone']:.2f}× as fast.",
       f"Wall time of the whole script: {wall:.0f} s."]
open("benches/results/verify_cluster_source.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
