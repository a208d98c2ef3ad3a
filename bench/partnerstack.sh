#!/usr/bin/env bash
# Benchmark the PartnerStack connector: the first sync of the generated
# program's partners and registrations (2,000 partnerships and 100,000 deals
# at the default 1M size) from the fake PartnerStack on loopback, then an
# incremental cycle with nothing changed, then a full read. A PartnerStack PRM
# needs a CRM connector, so the CRM is the fake Salesforce with the same
# program (as in bench/salesforce.sh); both fakes are separate processes, so
# the numbers are channel-sync's own. The debug log (LOG=1) splits the
# PartnerStack read from the rest of the cycle. The rate limits are lifted
# on both sides: this measures channel-sync, not PartnerStack's budget.
#
#   bench/partnerstack.sh             # the 1,000,000-opportunity program
#   bench/partnerstack.sh 100000      # another size
#   NAMES=skewed bench/partnerstack.sh
#
# Needs python3 (the converters and a local Slack responder).
# RUST_LOG=channel_sync=debug LOG=1 bench/partnerstack.sh shows where the time goes.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
NAMES=${NAMES:-default}
NOW=2026-11-26T00:00:00Z
BIN=target/release/channel-sync
SYNTH=target/release/channel-sync-synth
FAKE=target/release/examples/fake_partnerstack
FAKE_SF=target/release/examples/fake_salesforce
cargo build --release --quiet -p channel-sync-synth --bin channel-sync-synth && cargo build --release --quiet --bin channel-sync && cargo build --release --quiet -p channel-sync-fakes --example fake_partnerstack --example fake_salesforce

src=bench/data/$N
[ "$NAMES" = default ] || src=bench/data/$NAMES-$N
[ -f "$src/registrations.csv" ] || "$SYNTH" generate --out "$src" --opportunities "$N" --seed 42 --now "$NOW" --names "$NAMES" 2>/dev/null
ps=$src-partnerstack
[ -f "$ps/deals.jsonl" ] || python3 bench/to_partnerstack.py "$src" "$ps"
sf=$src-salesforce
[ -f "$sf/Opportunity.jsonl" ] || python3 bench/to_salesforce.py "$src" "$sf"

work=$(mktemp -d) sf_pid=""
trap 'kill "$slack_pid" "$fake_pid" "$sf_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

. bench/lib.sh
start_slack
start_fake FAKE_SALESFORCE_URL "$FAKE_SF" --api-max 10000000 --load-jsonl "$sf"
sf_pid=$fake_pid sf_url=$url
start_fake FAKE_PARTNERSTACK_URL "$FAKE" --load-jsonl "$ps"

export CHANNEL_SYNC__CRM__SALESFORCE__CLIENT_SECRET=fake-client-secret
export CHANNEL_SYNC__PRM__PARTNERSTACK__PUBLIC_KEY=pk_test_fake
export CHANNEL_SYNC__PRM__PARTNERSTACK__SECRET_KEY=sk_test_fake
cat config/channel-sync.toml > "$work/config.toml"
cat >> "$work/config.toml" <<TOML
[state]
path = "$work/state.db"
[crm]
kind = "salesforce"
[crm.salesforce]
login_url = "$sf_url"
client_id = "fake-client-id"
max_requests_per_second = 1000
[prm]
kind = "partnerstack"
[prm.partnerstack]
base_url = "$url"
max_requests_per_second = 1000
# The generator's statuses are its stages (a map set here replaces the default one).
[prm.partnerstack.stage_map]
submitted = "submitted"
approved = "approved"
rejected = "rejected"
expired = "expired"
cancelled = "cancelled"
won = "won"
lost = "lost"
[writeback.fields]
active_seller_rate = "Active_Seller_Rate__c"
reps = "Partner_Reps__c"
TOML

echo "| run ($N opportunities, $(wc -l <"$ps/deals.jsonl") deals) | wall (s) | peak RSS (MiB) | read calls | records written | state file (MiB) | channel-sync CPU (s) | fake CPU (s) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
measure_sync "once, first sync (empty state)" "$BIN" once --config "$work/config.toml" --now "$NOW"
measure_sync "once, incremental (no change)" "$BIN" once --config "$work/config.toml" --now "$NOW"
measure_sync "once --full (read everything again)" "$BIN" once --config "$work/config.toml" --now "$NOW" --full
if command -v sqlite3 >/dev/null; then
  mib=$(sqlite3 "$work/state.db" "SELECT round(sum(pgsize) / 1048576.0, 1) FROM dbstat WHERE name = 'mirror'" 2>/dev/null || echo "?")
  echo
  echo "mirror table: $mib MiB"
fi
