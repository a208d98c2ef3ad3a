#!/usr/bin/env bash
# Benchmark the Salesforce connector: the first sync of the generated
# 1M-opportunity program from the fake Salesforce on loopback (a separate
# process, so the numbers are channel-sync's own), then an incremental cycle
# with nothing changed. The PRM tables come from files (prm.kind = "files").
#
#   bench/salesforce.sh            # 1,000,000 opportunities
#   bench/salesforce.sh 100000     # another size
#
# Needs python3 (the converter and a local Slack responder).
# RUST_LOG=channel_sync=debug LOG=1 bench/salesforce.sh shows where the time goes.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
NOW=2026-11-26T00:00:00Z
BIN=target/release/channel-sync
FAKE=target/release/examples/fake_salesforce
cargo build --release --quiet --bin channel-sync --example fake_salesforce

src=bench/data/$N
[ -f "$src/registrations.csv" ] || "$BIN" generate --out "$src" --opportunities "$N" --seed 42 --now "$NOW" 2>/dev/null
sf=bench/data/$N-salesforce
[ -f "$sf/Opportunity.jsonl" ] || python3 bench/to_salesforce.py "$src" "$sf"

work=$(mktemp -d)
trap 'kill "$slack_pid" "$fake_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

port_file="$work/port"
python3 - "$port_file" <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_address[1]))
s.serve_forever()
PY
slack_pid=$!

loaded=$(date +%s)
"$FAKE" --api-max 10000000 --load-jsonl "$sf" >"$work/fake.out" 2>"$work/fake.err" &
fake_pid=$!
for _ in $(seq 1200); do grep -q FAKE_SALESFORCE_URL "$work/fake.out" 2>/dev/null && break; sleep 0.5; done
url=$(sed -n 's/^FAKE_SALESFORCE_URL=//p' "$work/fake.out")
[ -n "$url" ] || { echo "the fake did not start" >&2; cat "$work/fake.err" >&2; exit 1; }
echo "fake Salesforce loaded in $(( $(date +%s) - loaded )) s at $url" >&2
for _ in $(seq 50); do [ -s "$port_file" ] && break; sleep 0.1; done

export CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL="http://127.0.0.1:$(cat "$port_file")/hook"
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

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f 'TIME %e %M' "$@" >"$work/out.txt" 2>"$work/err.txt" || true
  local t rss calls
  t=$(awk '/^TIME/ {print $2}' "$work/err.txt")
  rss=$(awk '/^TIME/ {printf "%.0f", $3/1024}' "$work/err.txt")
  calls=$(awk '/^synced/ {for (i = 1; i <= NF; i++) if ($i == "calls") n += $(i-1)} END {print n+0}' "$work/out.txt")
  local written
  written=$(awk '/^write-back/ {print $2}' "$work/out.txt")
  echo "| $label | $t | $rss | $calls | ${written:-0} | $(du -m "$work/state.db" | cut -f1) |"
  grep -E "^(pulled|synced|findings|error)" "$work/out.txt" | sed 's/^/    /' >&2
  # RUST_LOG=channel_sync=debug LOG=1: the phase timings too.
  [ -z "${LOG:-}" ] || grep -v '^TIME' "$work/err.txt" | sed 's/^/    /' >&2
}

echo "| run ($N opportunities) | wall (s) | peak RSS (MiB) | query calls | records written | state file (MiB) |"
echo "|---|---:|---:|---:|---:|---:|"
measure "once, first sync (empty state)" "$BIN" once --config "$work/config.toml" --now "$NOW"
measure "once, incremental (no change)" "$BIN" once --config "$work/config.toml" --now "$NOW"
measure "once --full (read everything again)" "$BIN" once --config "$work/config.toml" --now "$NOW" --full
