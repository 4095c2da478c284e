#!/usr/bin/env bash
# Runs the RDB decode benchmark (benches/benches/rdb_decode.rs) and summarizes
# criterion's estimates as a Markdown table:
#
#   benches/results/rdb_decode.md    the table
#   benches/results/rdb_decode.json  the same numbers, with date, nproc, rustc
#
# MB is 10^6 bytes (criterion's own console output uses MiB). Times are
# criterion's mean estimate per full decode of the dump. The `rdb` crate
# column says "fails: <error>" when that crate could not decode a dump (its
# benchmark is then skipped), and notes when it returned fewer keys than the
# dump holds (it walks streams without decoding them).
#
# Extra arguments go to the benchmark binary, e.g. `benches/decode.sh strings`
# to run only the strings dump (the table then lists only what was measured).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
mkdir -p "$target_dir/criterion" benches/results
meta="$target_dir/criterion/rdb_decode_meta.json"
rm -f "$meta"

cmd=(cargo bench -p ferry-benches --bench rdb_decode -- --noplot "$@")
echo "+ ${cmd[*]}" >&2
load_before="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || true)"
start=$(date +%s)
FERRY_BENCH_META="$meta" "${cmd[@]}"
end=$(date +%s)

python3 - "$target_dir/criterion" "$meta" "$start" "$((end - start))" "${cmd[*]}" "$load_before" <<'EOF'
import datetime
import json
import os
import subprocess
import sys

crit_dir, meta_path, start, wall, command, load_before = sys.argv[1:7]
start, wall = int(start), int(wall)
with open(meta_path) as f:
    meta = json.load(f)


def estimate(dataset, function):
    """Criterion's estimates for one benchmark of this run, or None."""
    base = os.path.join(crit_dir, f"rdb_decode_{dataset}", function, "new")
    path = os.path.join(base, "estimates.json")
    # Older results of a benchmark not run this time do not count.
    if not os.path.exists(path) or os.path.getmtime(path) < start:
        return None
    with open(path) as f:
        est = json.load(f)
    return {
        "mean_ns": est["mean"]["point_estimate"],
        "mean_ci_ns": [
            est["mean"]["confidence_interval"]["lower_bound"],
            est["mean"]["confidence_interval"]["upper_bound"],
        ],
        "median_ns": est["median"]["point_estimate"],
    }


def mbps(nbytes, est):
    return nbytes / 1e6 / (est["mean_ns"] / 1e9)


rows = []
lines = [
    "| dataset | MB | ferry MB/s | ferry keys/s | ferry without CRC MB/s | ferry RdbReader MB/s | rdb crate MB/s | ratio (ferry / rdb) | ratio without CRC |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for m in meta:
    ds, nbytes, keys, rdb = m["dataset"], m["bytes"], m["keys"], m["rdb_crate"]
    dec = estimate(ds, "ferry_decoder")
    rdr = estimate(ds, "ferry_reader")
    nocrc = estimate(ds, "ferry_decoder_nocrc")
    crate = estimate(ds, "rdb_crate") if rdb["ok"] else None
    if dec is None and rdr is None and crate is None:
        continue  # filtered out of this run
    row = {"dataset": ds, "bytes": nbytes, "keys": keys,
           "ferry_decoder": dec, "ferry_reader": rdr, "rdb_crate": crate,
           "rdb_crate_preflight": rdb}
    cells = [ds, f"{nbytes / 1e6:.1f}"]
    if dec:
        row["ferry_decoder_mb_s"] = mbps(nbytes, dec)
        row["ferry_decoder_keys_s"] = keys / (dec["mean_ns"] / 1e9)
        cells += [f"{row['ferry_decoder_mb_s']:.0f}", f"{row['ferry_decoder_keys_s']:,.0f}"]
    else:
        cells += ["not run", "not run"]
    if nocrc:
        row["ferry_nocrc_mb_s"] = mbps(nbytes, nocrc)
        cells.append(f"{row['ferry_nocrc_mb_s']:.0f}")
    else:
        cells.append("not run")
    if rdr:
        row["ferry_reader_mb_s"] = mbps(nbytes, rdr)
        cells.append(f"{row['ferry_reader_mb_s']:.0f}")
    else:
        cells.append("not run")
    if not rdb["ok"]:
        err = rdb["error"].replace("|", "\\|")
        cells += [f"fails: {err}", "n/a", "n/a"]
    elif crate is None:
        cells += ["not run", "n/a", "n/a"]
    else:
        row["rdb_crate_mb_s"] = mbps(nbytes, crate)
        cell = f"{row['rdb_crate_mb_s']:.0f}"
        if rdb["keys"] != keys:
            cell += f" (returned {rdb['keys']:,} of {keys:,} keys)"
        cells.append(cell)
        if rdb["keys"] != keys:
            # Not the same work (streams are skipped, not decoded).
            cells += ["n/a (not comparable)", "n/a"]
        else:
            for key, name in (("ferry_decoder_mb_s", "ratio"), ("ferry_nocrc_mb_s", "ratio_nocrc")):
                if key in row:
                    row[name] = row[key] / row["rdb_crate_mb_s"]
                    cells.append(f"{row[name]:.2f}x")
                else:
                    cells.append("n/a")
    rows.append(row)
    lines.append("| " + " | ".join(cells) + " |")

nproc = os.cpu_count()
try:
    nproc = int(subprocess.check_output(["nproc"], text=True))
except (OSError, subprocess.CalledProcessError, ValueError):
    pass
rustc = subprocess.check_output(["rustc", "--version"], text=True).strip()
try:
    git = subprocess.check_output(["git", "describe", "--always", "--dirty"], text=True,
                                  stderr=subprocess.DEVNULL).strip()
except (OSError, subprocess.CalledProcessError):
    git = ""
cpu = ""
try:
    with open("/proc/cpuinfo") as f:
        cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
except OSError:
    pass
date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

table = "\n".join(lines)
md = f"""# RDB decode throughput

{date}, {nproc} CPUs ({cpu or 'unknown CPU'}), {rustc}, `cargo bench` profile,
commit {git or 'unknown'}.
Load average before the run: {load_before or 'unknown'}.
Command: `{command}` ({wall} s wall).

{table}

MB = 10^6 bytes; throughput = dump size / criterion's mean time for one full
decode from memory. "ferry" is `ferry_rdb::Decoder` fed 256 KiB slices;
"ferry RdbReader" is `ferry_rdb::RdbReader` over a `&[u8]`; "rdb crate" is
`rdb` 0.4.0 (`RdbDecoder` over a `Cursor`). ferry verifies the CRC64 trailer
and keeps each key's raw value; the `rdb` crate does neither, and walks
streams without decoding them. Dumps: see `benches/benches/rdb_decode.rs`.
"""
print()
print(md)
with open("benches/results/rdb_decode.md", "w") as f:
    f.write(md)
with open("benches/results/rdb_decode.json", "w") as f:
    json.dump({"date": date, "nproc": nproc, "cpu": cpu, "rustc": rustc, "git": git,
               "loadavg_before": load_before, "command": command, "wall_seconds": wall, "mb": "1e6 bytes",
               "results": rows}, f, indent=2)
    f.write("\n")
EOF
