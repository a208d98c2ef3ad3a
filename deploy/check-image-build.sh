#!/usr/bin/env bash
# What the Dockerfile does, without a Docker engine: build in a tree holding
# only what the Dockerfile copies, with the same two cargo invocations (the
# dependency layer, then the program), then start the binary the way the
# image does (its ENV, its config path, a non-root-writable state folder) and
# run its HEALTHCHECK command against it.
#
#   deploy/check-image-build.sh
#
# Reuses ./target for the compiled dependencies (set CARGO_TARGET_DIR to
# build from scratch instead).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target/image-check}
trap 'kill "$daemon" 2>/dev/null || true; rm -rf "$work"' EXIT

echo "== stage 1: dependencies only (Cargo.toml, Cargo.lock, empty src)"
cp "$repo/Cargo.toml" "$repo/Cargo.lock" "$work/"
mkdir "$work/src"
echo 'fn main() {}' > "$work/src/main.rs"
touch "$work/src/lib.rs"
(cd "$work" && cargo build --release --locked --bin channel-sync)
rm -rf "$work/src"

echo "== stage 2: the program"
cp -r "$repo/src" "$work/src"
(cd "$work" && cargo build --release --locked --bin channel-sync)
bin=$CARGO_TARGET_DIR/release/channel-sync

echo "== runtime: the image's ENV, config and CMD"
mkdir -p "$work/etc" "$work/var" "$work/data"
cp "$repo/config/channel-sync.toml" "$work/etc/channel-sync.toml"
cp "$repo"/sample/*.csv "$work/data/"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export TZ=Etc/UTC RUST_LOG=info,tokio_cron_scheduler=warn \
  CHANNEL_SYNC__STATE__PATH="$work/var/state.db" \
  CHANNEL_SYNC__SERVER__LISTEN="0.0.0.0:$port" \
  CHANNEL_SYNC__CRM__KIND=files \
  CHANNEL_SYNC__CRM__FILES__DIR="$work/data" \
  CHANNEL_SYNC__CRM__FILES__OUT_DIR="$work/var/out"
(cd "$work/var" && exec "$bin" run --config "$work/etc/channel-sync.toml" > "$work/log.jsonl") &
daemon=$!
for _ in $(seq 50); do
  "$bin" healthcheck --config "$work/etc/channel-sync.toml" 2>/dev/null && break
  sleep 0.1
done
echo "== HEALTHCHECK: channel-sync healthcheck --config /etc/channel-sync/channel-sync.toml"
"$bin" healthcheck --config "$work/etc/channel-sync.toml" && echo "healthy (exit 0)"
kill -TERM "$daemon"
wait "$daemon" && echo "stopped on SIGTERM (exit 0)"
head -3 "$work/log.jsonl"
