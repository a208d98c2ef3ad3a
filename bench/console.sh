#!/usr/bin/env bash
# Benchmark the console's pages on a generated program (issue 16: every page
# under 200 ms server time at 1M opportunities).
#
#   bench/console.sh                          # 1,000,000 opportunities
#   DATA=/path/to/1000000 bench/console.sh    # an already generated program
#   RUNS=50 bench/console.sh 100000
#   STATE_URL=postgres://user@host:port/emptydb PGPASSWORD=... bench/console.sh
#                                             # the state in PostgreSQL (an empty
#                                             # database; STATE_CA_FILE for TLS)
#
# One `once` cycle fills a fresh state; then `run` serves the console (no
# cycle scheduled) and each page is fetched RUNS times over loopback with
# curl, signed in. Reports the median and the slowest fetch per page (the
# time to the last byte, so server time plus loopback), the snapshot build
# time, and the daemon's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
RUNS=${RUNS:-20}
NOW=2026-11-26T00:00:00Z
BIN=target/release/channel-sync
SYNTH=target/release/channel-sync-synth
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet -p channel-sync -p channel-sync-synth

src=${DATA:-bench/data/$N}
[ -f "$src/registrations.csv" ] || "$SYNTH" generate --out "$src" --opportunities "$N" --seed 42 --now "$NOW" 2>/dev/null
work=$(mktemp -d)
daemon_pid=
trap '[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ops=$(free_port)
port=$(free_port)
cat config/channel-sync.toml > "$work/config.toml"
if [ -n "${STATE_URL:-}" ]; then
  export CHANNEL_SYNC__STATE__PASSWORD=${PGPASSWORD:-}
  [ -z "${STATE_CA_FILE:-}" ] || export CHANNEL_SYNC__STATE__CA_FILE=$STATE_CA_FILE
  printf '[state]\nurl = "%s"\n' "$STATE_URL" >> "$work/config.toml"
else
  printf '[state]\npath = "%s"\n' "$work/state.db" >> "$work/config.toml"
fi
cat >> "$work/config.toml" <<TOML
[crm]
kind = "files"
[crm.files]
dir = "$src"
out_dir = "$work/out"
[schedule]
cron = "0 0 0 1 1 *"
run_at_start = false
[server]
listen = "127.0.0.1:$ops"
TOML
start=$(date +%s.%N)
"$BIN" once --config "$work/config.toml" --now "$NOW" >"$work/once.out" 2>"$work/once.err" || true
echo "once: $(echo "$(date +%s.%N) - $start" | bc) s; $(grep -E '^findings' "$work/once.out")" >&2

cat >> "$work/config.toml" <<TOML
[console]
listen = "127.0.0.1:$port"
secure_cookie = false
TOML
export CHANNEL_SYNC__CONSOLE__TOKEN=bench-console-token-0123456789
"$BIN" run --config "$work/config.toml" --now "$NOW" >"$work/run.out" 2>"$work/run.err" &
daemon_pid=$!
# `run` logs JSON lines on stdout.
for _ in $(seq 600); do grep -q "Console snapshot" "$work/run.out" 2>/dev/null && break; sleep 0.5; done
grep "Console snapshot" "$work/run.out" | grep -o '"ms":[0-9]*' | sed 's/"ms":/snapshot build (ms): /' >&2 || true
base="http://127.0.0.1:$port"
cookie=$(curl -s -o /dev/null -D - -d "name=bench&token=$CHANNEL_SYNC__CONSOLE__TOKEN" "$base/login" \
  | sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p')
[ -n "$cookie" ] || { echo "sign-in failed" >&2; tail "$work/run.out" "$work/run.err" >&2; exit 1; }

# Ids to open: the first finding, partner and a partner with findings.
page=$(curl -s -H "Cookie: $cookie" "$base/findings")
key=$(echo "$page" | grep -o 'href="/finding?key=[^"]*"' | head -1 | sed 's/href="\/finding?key=//; s/"$//')
partners=$(curl -s -H "Cookie: $cookie" "$base/partners")
pid=$(echo "$partners" | grep -o 'href="/partner?id=[^"]*"' | head -1 | sed 's/href="\/partner?id=//; s/"$//')
total=$(echo "$page" | grep -o '<p class="count">[0-9]*' | grep -o '[0-9]*$')
last=$(( (total + 49) / 50 ))
# Account searches that find something: a word of an open finding's
# account name (a few findings), a legal form (thousands), two letters
# (too short for the trigram index: a scan).
first_name="SELECT account_name FROM findings WHERE resolved_at IS NULL AND account_name LIKE '% %' ORDER BY key LIMIT 1"
if [ -n "${STATE_URL:-}" ]; then
  name=$(psql "${STATE_URL%%\?*}" -Atc "${first_name/ORDER BY key/ORDER BY key COLLATE \"C\"}")
else
  name=$(python3 -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "$work/state.db" "$first_name")
fi
word=$(echo "${name%% *}" | tr '[:upper:]' '[:lower:]')

echo "| page ($N opportunities, $total open findings) | median (ms) | slowest of $RUNS (ms) | bytes |"
echo "|---|---:|---:|---:|"
for path in "/" "/findings" "/findings?page=$last" "/findings?kind=partner_vs_partner" \
            "/findings?severity=critical&page=2" "/findings?partner=$pid" "/findings?account=acme" \
            "/findings?account=$word" "/findings?account=gmbh" "/findings?account=er" \
            "/findings?status=decided" "/finding?key=$key" "/partners" "/partners?sort=rate" \
            "/partner?id=$pid" "/registrations" "/registrations?state=expiring&page=3" "/review" "/review/print"; do
  times=()
  for _ in $(seq "$RUNS"); do
    times+=("$(curl -s -o "$work/page" -w '%{time_total}' -H "Cookie: $cookie" "$base$path")")
  done
  bytes=$(stat -c %s "$work/page")
  printf '%s\n' "${times[@]}" | sort -n | awk -v p="$path" -v b="$bytes" '
    { t[NR] = $1 * 1000 } END { printf "| `%s` | %.1f | %.1f | %d |\n", p, t[int((NR + 1) / 2)], t[NR], b }'
done
echo "daemon peak RSS: $(awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' /proc/$daemon_pid/status)" >&2
