#!/usr/bin/env bash
# Benchmark the Salesforce connector: the first sync of the generated
# 1M-opportunity program from the fake Salesforce on loopback (a separate
# process, so the numbers are channel-sync's own), then an incremental cycle
# with nothing changed. The PRM tables come from files (prm.kind = "files").
#
#   bench/salesforce.sh            # 1,000,000 opportunities
#   bench/salesforce.sh 100000     # another size
#   NAMES=skewed bench/salesforce.sh  # the skewed name profile (generate --names)
#
# Needs python3 (the converter and a local Slack responder).
# RUST_LOG=channel_sync=debug LOG=1 bench/salesforce.sh shows where the time goes.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
NAMES=${NAMES:-default}
NOW=2026-11-26T00:00:00Z
BIN=target/release/channel-sync
SYNTH=target/release/channel-sync-synth
FAKE=target/release/examples/fake_salesforce
cargo build --release --quiet -p channel-sync-synth --bin channel-sync-synth && cargo build --release --quiet --bin channel-sync && cargo build --release --quiet -p channel-sync-fakes --example fake_salesforce

src=bench/data/$N
[ "$NAMES" = default ] || src=bench/data/$NAMES-$N
[ -f "$src/registrations.csv" ] || "$SYNTH" generate --out "$src" --opportunities "$N" --seed 42 --now "$NOW" --names "$NAMES" 2>/dev/null
sf=$src-salesforce
[ -f "$sf/Opportunity.jsonl" ] || python3 bench/to_salesforce.py "$src" "$sf"

work=$(mktemp -d)
trap 'kill "$slack_pid" "$fake_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

. bench/lib.sh
start_slack
start_fake FAKE_SALESFORCE_URL "$FAKE" --api-max 10000000 --load-jsonl "$sf"

export CHANNEL_SYNC__CRM__SALESFORCE__CLIENT_SECRET=fake-client-secret
cat config/channel-sync.toml > "$work/config.toml"
cat >> "$work/config.toml" <<TOML
[state]
path = "$work/state.db"
[crm]
kind = "salesforce"
[crm.salesforce]
login_url = "$url"
client_id = "fake-client-id"
max_requests_per_second = 1000
[prm]
kind = "files"
[prm.files]
dir = "$src"
[writeback.fields]
active_seller_rate = "Active_Seller_Rate__c"
reps = "Partner_Reps__c"
TOML


echo "| run ($N opportunities) | wall (s) | peak RSS (MiB) | query calls | records written | state file (MiB) | channel-sync CPU (s) | fake CPU (s) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
measure_sync "once, first sync (empty state)" "$BIN" once --config "$work/config.toml" --now "$NOW"
measure_sync "once, incremental (no change)" "$BIN" once --config "$work/config.toml" --now "$NOW"
measure_sync "once --full (read everything again)" "$BIN" once --config "$work/config.toml" --now "$NOW" --full
# The mirror's own size (SQLite's dbstat), when the sqlite3 shell is there.
if command -v sqlite3 >/dev/null; then
  mib=$(sqlite3 "$work/state.db" "SELECT round(sum(pgsize) / 1048576.0) FROM dbstat WHERE name = 'mirror'" 2>/dev/null || echo "?")
  echo
  echo "mirror table: $mib MiB"
fi
