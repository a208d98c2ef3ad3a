#!/usr/bin/env bash
# Benchmark `channel-sync findings` (list and show) on the generated
# 1M-opportunity program: one `once` records ~57k findings in the state, a
# few thousand get decisions, then the listing is timed (best of 3).
#
#   bench/findings.sh                 # 1,000,000 opportunities
#   bench/findings.sh 100000          # another size
#   DATA=/path/to/bench/data BIN=target/debug/channel-sync bench/findings.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
NOW=2026-11-26T00:00:00Z
BIN=${BIN:-target/release/channel-sync}
SYNTH=${SYNTH:-target/release/channel-sync-synth}
[ "$BIN" != target/release/channel-sync ] || cargo build --release --quiet -p channel-sync -p channel-sync-synth
DATA=${DATA:-bench/data}

src=$DATA/$N
[ -f "$src/registrations.csv" ] || "$SYNTH" generate --out "$src" --opportunities "$N" --seed 42 --now "$NOW" 2>/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$src"/*.csv "$work/"
cat config/channel-sync.toml > "$work/config.toml"
cat >> "$work/config.toml" <<TOML
[state]
path = "$work/state.db"
[crm]
kind = "files"
[crm.files]
dir = "$work"
out_dir = "$work/out"
TOML
unset CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL
"$BIN" once --config "$work/config.toml" --now "$NOW" >/dev/null 2>&1
# Decisions on every 20th conflict, a snooze on every 20th other one.
python3 - "$work/state.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
keys = [k for (k,) in db.execute("SELECT key FROM findings ORDER BY key")]
rows = []
for i, k in enumerate(keys):
    if i % 20 == 0:
        rows.append((k, "partner_keeps", "bench", None, "2026-11-26T01:00:00Z"))
    elif i % 20 == 10:
        rows.append((k, "snooze", "bench", "2026-12-31", "2026-11-26T01:00:00Z"))
db.executemany("INSERT INTO decisions (finding_key, outcome, decided_by, until, at) VALUES (?,?,?,?,?)", rows)
db.commit()
print(f"{len(keys)} findings, {len(rows)} decisions", file=sys.stderr)
PY
key=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT key FROM findings ORDER BY key LIMIT 1').fetchone()[0])" "$work/state.db")

best() { # label, command...: best wall time of 3 runs, and peak RSS
  local label=$1; shift
  local bt="" brss=""
  for _ in 1 2 3; do
    /usr/bin/time -f 'TIME %e %M' "$@" >"$work/out.txt" 2>"$work/err.txt" || { cat "$work/err.txt" >&2; exit 1; }
    local t rss
    t=$(awk '/^TIME/ {print $2}' "$work/err.txt")
    rss=$(awk '/^TIME/ {printf "%.0f", $3/1024}' "$work/err.txt")
    if [ -z "$bt" ] || awk "BEGIN {exit !($t < $bt)}"; then bt=$t; brss=$rss; fi
  done
  echo "| $label | $bt | $brss | $(wc -l <"$work/out.txt") |"
}
C=(--config "$work/config.toml" --now 2026-12-01T00:00:00Z)
echo "| findings ($N opportunities) | wall (s) | peak RSS (MiB) | output lines |"
echo "|---|---:|---:|---:|"
best "list, text (open + snoozed)" "$BIN" findings "${C[@]}"
best "list, json" "$BIN" findings "${C[@]}" --format json
best "list, csv, every status" "$BIN" findings "${C[@]}" --format csv --status open --status snoozed --status decided --status resolved --status aged-out
best "list, one partner, min age 3 d" "$BIN" findings "${C[@]}" --partner P-0001 --min-age 3
best "show KEY" "$BIN" findings show "$key" "${C[@]}"
