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
#
# Needs python3 (the converter and a local Slack responder).
# RUST_LOG=channel_sync=debug LOG=1 bench/hubspot.sh shows where the time goes.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
NOW=2026-11-26T00:00:00Z
BIN=target/release/channel-sync
FAKE=target/release/examples/fake_hubspot
cargo build --release --quiet --bin channel-sync --example fake_hubspot

src=bench/data/$N
[ -f "$src/registrations.csv" ] || "$BIN" generate --out "$src" --opportunities "$N" --seed 42 --now "$NOW" 2>/dev/null
hs=bench/data/$N-hubspot
[ -f "$hs/deals.jsonl" ] || python3 bench/to_hubspot.py "$src" "$hs"

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
"$FAKE" --ten-secondly 100000000 --daily 100000000 --search-per-second 100000 --load-jsonl "$hs" >"$work/fake.out" 2>"$work/fake.err" &
fake_pid=$!
for _ in $(seq 1200); do grep -q FAKE_HUBSPOT_URL "$work/fake.out" 2>/dev/null && break; sleep 0.5; done
url=$(sed -n 's/^FAKE_HUBSPOT_URL=//p' "$work/fake.out")
[ -n "$url" ] || { echo "the fake did not start" >&2; cat "$work/fake.err" >&2; exit 1; }
echo "fake HubSpot loaded in $(( $(date +%s) - loaded )) s at $url" >&2
for _ in $(seq 50); do [ -s "$port_file" ] && break; sleep 0.1; done

export CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL="http://127.0.0.1:$(cat "$port_file")/hook"
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

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f 'TIME %e %M' "$@" >"$work/out.txt" 2>"$work/err.txt" || true
  [ -f "$work/state.db" ] || { grep -v "^TIME" "$work/err.txt" >&2; }
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

echo "| run ($N deals) | wall (s) | peak RSS (MiB) | read calls | records written | state file (MiB) |"
echo "|---|---:|---:|---:|---:|---:|"
measure "once, first sync (empty state)" "$BIN" once --config "$work/config.toml" --now "$NOW"
measure "once, incremental (no change)" "$BIN" once --config "$work/config.toml" --now "$NOW"
measure "once --full (read everything again)" "$BIN" once --config "$work/config.toml" --now "$NOW" --full
