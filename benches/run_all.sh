#!/usr/bin/env bash
# The whole benchmark suite (issue 6), one script after another; each
# starts and stops its own servers and writes benches/results/<name>.md and
# .json. A default run takes roughly 15-25 minutes on 2 cores and needs
# ~6 GB of RAM (the memory benchmark's 10 M keys live in the source and the
# cluster at once).
#
#   decode.sh         RDB decode MB/s vs the `rdb` crate (criterion)
#   replica_rate.sh   snapshot receive rate vs `redis-cli --rdb`
#   full_sync.sh      1 M keys: ferry vs a real replica, redis-benchmark, import
#   streaming_lag.sh  lag under the redis-benchmark -P 16 maximum and half of it
#   memory.sh         peak RSS: 10 M keys, one 500 MB list
#   scaling.sh        3 vs 6 masters; 10 B, 100 B, 10 KB values
#   verify.sh         `ferry verify` keys/s, 1 M and 5 M keys, vs commit e0d2e9b's
#   cluster_source.sh a 3-master source cluster vs three real replicas at once; lag
#   ckpt_forms.sh     a master's CPU per checkpointed transaction, per command form
#
# Environment: ONLY="name name" runs a subset; each script's own variables.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
all="decode replica_rate full_sync sink_scaling streaming_lag memory scaling verify cluster_source ckpt_forms"
for b in ${ONLY:-$all}; do
    echo "=== benches/$b.sh ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    "benches/$b.sh"
done
