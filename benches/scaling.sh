#!/usr/bin/env bash
# Scaling benchmark (issue 6, part 5): full-sync throughput vs the number of
# target masters (3, 6; 100-byte values) and vs value size (10 B, 100 B,
# 10 KB; 3 masters), each a benches/full_sync.sh run (ferry, a real replica
# and the redis-benchmark ceiling in the same run; no import baseline).
# Keys per run: min(N, BYTES / size), so every run moves a similar volume.
#
#   benches/results/scaling.md / .json   (plus one scaling-*.md/.json per run)
#
# Environment: N (default 1000000), BYTES (default 200000000), FERRY_BIN
# (default: build once, then reuse), and what full_sync.sh reads.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
N="${N:-1000000}"
BYTES="${BYTES:-200000000}"
if [[ -z "${FERRY_BIN:-}" ]]; then
    echo "+ cargo build --release -p ferry" >&2
    cargo build --release -q -p ferry
    FERRY_BIN="$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/ferry"
fi
export FERRY_BIN
runs=()
for cfg in "3 100" "6 100" "3 10" "3 10000"; do
    read -r masters size <<<"$cfg"
    n=$(( BYTES / size < N ? BYTES / size : N ))
    out="scaling-${masters}m-${size}b"
    echo "+ $out: N=$n SIZE=$size MASTERS=$masters" >&2
    N="$n" SIZE="$size" MASTERS="$masters" IMPORT_N=0 OUT="$out" benches/full_sync.sh >/dev/null
    runs+=("$out")
done
python3 - "${runs[@]}" <<'PY'
import json, sys
docs = [json.load(open(f"benches/results/{r}.json")) for r in sys.argv[1:]]
def row(d, key):
    return next(r for r in d["rows"] if r["key"] == key)
md = ["# Scaling: full-sync throughput vs target masters and value size", "",
      f"{docs[0]['date']}, {docs[0]['nproc']} CPUs ({docs[0]['cpu']}), Redis {docs[0]['redis']}, commit {docs[0]['commit']}.",
      "Command: `benches/scaling.sh`. Each row is one `benches/full_sync.sh` run (its own table in `benches/results/scaling-*.md`).", "",
      "| masters | value bytes | keys | ferry keys/s | ferry MB/s | ferry ÷ real replica (speed) | ferry ÷ redis-benchmark ceiling | ferry peak RSS |",
      "|---:|---:|---:|---:|---:|---:|---:|---:|"]
out = []
for d in docs:
    f, rep, ceil = row(d, "ferry"), row(d, "replica"), row(d, "benchmark")
    mbs = f["keys_per_s"] * d["size"] / 1e6
    out.append(dict(masters=d["masters"], size=d["size"], keys=d["n"], ferry_keys_per_s=f["keys_per_s"], ferry_mb_per_s=mbs,
                    vs_replica=f["keys_per_s"] / rep["keys_per_s"], vs_ceiling=f["keys_per_s"] / ceil["keys_per_s"],
                    peak_rss_mb=d["ferry"]["peak_rss_kb"] / 1024, load=d["load_average"]["ferry"]))
    o = out[-1]
    md.append(f"| {o['masters']} | {o['size']:,} | {o['keys']:,} | {o['ferry_keys_per_s']:,.0f} | {o['ferry_mb_per_s']:.1f} | "
              f"{o['vs_replica']:.2f}× | {100 * o['vs_ceiling']:.0f}% | {o['peak_rss_mb']:.0f} MB |")
json.dump(dict(date=docs[0]["date"], rows=out), open("benches/results/scaling.json", "w"), indent=2)
open("benches/results/scaling.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
