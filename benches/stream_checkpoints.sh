#!/usr/bin/env bash
# Streaming with and without checkpoints: see benches/stream_replay.sh.
exec "$(dirname "${BASH_SOURCE[0]}")/stream_replay.sh" checkpoints "$@"
