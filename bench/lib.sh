# Shared by the bench scripts (source it after setting $work).

# A local Slack that answers "ok" to every post; exports the webhook URL
# and sets $slack_pid.
start_slack() {
  local port_file="$work/slack-port"
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
  for _ in $(seq 50); do [ -s "$port_file" ] && break; sleep 0.1; done
  export CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL="http://127.0.0.1:$(cat "$port_file")/hook"
}

# start_fake VAR binary args...: starts a fake API, waits until it prints
# VAR=url (after loading its data), sets $url and $fake_pid, and adds it to
# $fake_pids. Its output is
# kept in $work/VAR.out and VAR.err, so that two fakes can run side by side.
start_fake() {
  local var=$1; shift
  local loaded
  loaded=$(date +%s)
  "$@" >"$work/$var.out" 2>"$work/$var.err" &
  fake_pid=$!
  fake_pids+=("$fake_pid")
  for _ in $(seq 1200); do grep -q "$var" "$work/$var.out" 2>/dev/null && break; sleep 0.5; done
  url=$(sed -n "s/^$var=//p" "$work/$var.out")
  [ -n "$url" ] || { echo "the fake did not start" >&2; cat "$work/$var.err" >&2; exit 1; }
  echo "fake loaded in $(( $(date +%s) - loaded )) s at $url" >&2
}

# The fakes started by start_fake.
fake_pids=()

# CPU seconds (user + system) the given processes have used so far, from
# /proc (summed).
cpu_of() {
  local pid total=0
  for pid in "$@"; do
    total=$(awk -v t="$total" -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", t + ($14 + $15) / hz }' "/proc/$pid/stat" 2>/dev/null || echo "$total")
  done
  echo "$total"
}

# measure_sync label command...: one row of a connector benchmark table
# (wall, peak RSS, read calls summed from the summary's synced lines,
# records written, state file size, and the CPU seconds channel-sync and the
# fakes ($fake_pids, summed) used during the run: on a 2-core machine the
# fakes' CPU is taken from channel-sync's, which a remote API's would not be).
# LOG=1 adds the binary's log.
measure_sync() {
  local label=$1; shift
  local fake_before
  fake_before=$(cpu_of "${fake_pids[@]}")
  /usr/bin/time -f 'TIME %e %M %U %S' "$@" >"$work/out.txt" 2>"$work/err.txt" || true
  [ -f "$work/state.db" ] || { grep -v "^TIME" "$work/err.txt" >&2; }
  local t rss calls written cpu fake_cpu
  t=$(awk '/^TIME/ {print $2}' "$work/err.txt")
  rss=$(awk '/^TIME/ {printf "%.0f", $3/1024}' "$work/err.txt")
  cpu=$(awk '/^TIME/ {printf "%.1f", $4 + $5}' "$work/err.txt")
  fake_cpu=$(awk -v a="$fake_before" -v b="$(cpu_of "${fake_pids[@]}")" 'BEGIN { printf "%.1f", b - a }')
  calls=$(awk '/^synced/ {for (i = 1; i <= NF; i++) if ($i == "calls") n += $(i-1)} END {print n+0}' "$work/out.txt")
  written=$(awk '/^write-back/ {print $2}' "$work/out.txt")
  echo "| $label | $t | $rss | $calls | ${written:-0} | $(du -m "$work/state.db" 2>/dev/null | cut -f1) | $cpu | $fake_cpu |"
  grep -E "^(pulled|synced|findings|error)" "$work/out.txt" | sed 's/^/    /' >&2
  [ -z "${LOG:-}" ] || grep -v '^TIME' "$work/err.txt" | sed 's/^/    /' >&2
}
