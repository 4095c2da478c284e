#!/usr/bin/env bash
# Streaming with and without wait_replicas: see benches/stream_replay.sh.
exec "$(dirname "${BASH_SOURCE[0]}")/stream_replay.sh" wait_replicas "$@"
