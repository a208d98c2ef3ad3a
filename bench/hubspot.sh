#!/usr/bin/env bash
# Benchmark the HubSpot connector: the first sync of a generated
# 200,000-deal program from the fake HubSpot on loopback (a separate
# process, so the numbers are channel-sync's own), then an incremental cycle
# with nothing changed. The PRM tables come from files (prm.kind = "files").
# The rate limits are lifted on both sides: this measures channel-sync, not
# HubSpot's 100 calls per 10 s (see BENCHMARKS.md for the real-world time).
#
#   bench/hubspot.sh              # 200,000 deals
#   bench/hubspot.sh 50000        # another size
#   NAMES=skewed bench/hubspot.sh # the skewed name profile (generate --names)
#
# Needs python3 (the converter and a local Slack responder).
# RUST_LOG=channel_sync=debug LOG=1 bench/hubspot.sh shows where the time goes.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
NAMES=${NAMES:-default}
NOW=2026-11-26T00:00:00Z
BIN=target/release/channel-sync
SYNTH=target/release/channel-sync-synth
FAKE=target/release/examples/fake_hubspot
cargo build --release --quiet -p channel-sync-synth --bin channel-sync-synth && cargo build --release --quiet --bin channel-sync && cargo build --release --quiet -p channel-sync-fakes --example fake_hubspot

src=bench/data/$N
[ "$NAMES" = default ] || src=bench/data/$NAMES-$N
[ -f "$src/registrations.csv" ] || "$SYNTH" generate --out "$src" --opportunities "$N" --seed 42 --now "$NOW" --names "$NAMES" 2>/dev/null
hs=$src-hubspot
[ -f "$hs/deals.jsonl" ] || python3 bench/to_hubspot.py "$src" "$hs"

work=$(mktemp -d)
trap 'kill "$slack_pid" "$fake_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

. bench/lib.sh
start_slack
start_fake FAKE_HUBSPOT_URL "$FAKE" --ten-secondly 100000000 --daily 100000000 --search-per-second 100000 --load-jsonl "$hs"

export CHANNEL_SYNC__CRM__HUBSPOT__TOKEN=pat-na1-00000000-0000-0000-0000-fakeprivapp
cat config/channel-sync.toml > "$work/config.toml"
cat >> "$work/config.toml" <<TOML
[state]
path = "$work/state.db"
[crm]
kind = "hubspot"
[crm.hubspot]
base_url = "$url"
max_requests_per_10s = 1000000
search_requests_per_second = 100000
create_properties = true
[prm]
kind = "files"
[prm.files]
dir = "$src"
[writeback.fields]
active_seller_rate = "partner_active_seller_rate"
reps = "partner_reps"
TOML


echo "| run ($N deals) | wall (s) | peak RSS (MiB) | read calls | records written | state file (MiB) | channel-sync CPU (s) | fake CPU (s) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
measure_sync "once, first sync (empty state)" "$BIN" once --config "$work/config.toml" --now "$NOW"
measure_sync "once, incremental (no change)" "$BIN" once --config "$work/config.toml" --now "$NOW"
measure_sync "once --full (read everything again)" "$BIN" once --config "$work/config.toml" --now "$NOW" --full
