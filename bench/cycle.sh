#!/usr/bin/env bash
# Benchmark `channel-sync once` on the generated 1M-opportunity program:
# a first cycle on an empty state, then a second one after 1% of the
# opportunities changed. Compares with `detect` on the same data.
#
#   bench/cycle.sh            # 1,000,000 opportunities
#   bench/cycle.sh 100000     # another size
#   STATE_URL=postgres://user@127.0.0.1:5432/db CHANNEL_SYNC__STATE__PASSWORD=… bench/cycle.sh
#                             # the state in PostgreSQL (an empty database)
#
# Slack is a local responder on loopback that answers "ok" to every post.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
NOW=2026-11-26T00:00:00Z
BIN=target/release/channel-sync
SYNTH=target/release/channel-sync-synth
cargo build --release --quiet -p channel-sync -p channel-sync-synth

src=bench/data/$N
[ -f "$src/registrations.csv" ] || "$SYNTH" generate --out "$src" --opportunities "$N" --seed 42 --now "$NOW" 2>/dev/null
work=$(mktemp -d)
trap 'kill "$slack_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cp "$src"/*.csv "$work/"

. bench/lib.sh
start_slack

cat config/channel-sync.toml > "$work/config.toml"
cat >> "$work/config.toml" <<TOML
[state]
path = "$work/state.db"
${STATE_URL:+url = \"$STATE_URL\"}
[crm]
kind = "files"
[crm.files]
dir = "$work"
out_dir = "$work/out"
TOML

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f 'TIME %e %M' "$@" >"$work/out.txt" 2>"$work/err.txt" || true
  local t rss
  t=$(awk '/^TIME/ {print $2}' "$work/err.txt")
  rss=$(awk '/^TIME/ {printf "%.0f", $3/1024}' "$work/err.txt")
  local state_mb="-"
  [ -f "$work/state.db" ] && state_mb=$(du -m "$work/state.db" | cut -f1)
  echo "| $label | $t | $rss | $state_mb |"
}

echo "| run ($N opportunities) | wall (s) | peak RSS (MiB) | state file (MiB) |"
echo "|---|---:|---:|---:|"
measure "detect" "$BIN" detect --input "$work" --now "$NOW" --format json
measure "once, first cycle (empty state)" "$BIN" once --config "$work/config.toml" --now "$NOW"
grep -E "^(findings|alerts|write-back)" "$work/out.txt" | sed 's/^/    /' >&2
# 1% of the opportunities change: every 100th row flips open <-> lost and
# gets a new amount.
python3 - "$work/opportunities.csv" <<'PY'
import csv, sys
p = sys.argv[1]
rows = list(csv.reader(open(p, newline="")))
h = rows[0]; st = h.index("status"); am = h.index("amount"); cd = h.index("close_date")
for i in range(1, len(rows), 100):
    r = rows[i]
    if r[st] == "open":
        r[st] = "lost"; r[cd] = r[cd] or "2026-11-20"
    else:
        r[st] = "open"
    r[am] = "12345.67"
csv.writer(open(p, "w", newline="")).writerows(rows)
PY
measure "once, second cycle (1% changed)" "$BIN" once --config "$work/config.toml" --now "$NOW"
grep -E "^(findings|alerts|write-back)" "$work/out.txt" | sed 's/^/    /' >&2
measure "once, third cycle (no change)" "$BIN" once --config "$work/config.toml" --now "$NOW"
grep -E "^(findings|alerts|write-back)" "$work/out.txt" | sed 's/^/    /' >&2
