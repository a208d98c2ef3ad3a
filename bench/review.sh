#!/usr/bin/env bash
# Benchmark `channel-sync review` on a generated program.
#
#   bench/review.sh                 # 1M opportunities
#   RUNS=5 bench/review.sh 1000000  # more runs (the best is reported)
#
# The program is `generate`'s (seed 42, fixed clock) copied to
# bench/data/review-N/ with the review's inputs added by a seeded script:
# campaign_id on every 20th partner opportunity (campaign CMP-<partner>),
# program_costs (platform and people per quarter, an incentive per partner
# for a third of the partners) and mdf (one request per quarter for a
# quarter of the partners, half of them on the campaign that produced
# opportunities). Prints wall time, the read/review split the binary logs,
# and peak resident memory, for --format json and --format html.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-1000000}
RUNS=${RUNS:-3}
NOW=2026-11-26T00:00:00Z
BIN=target/release/channel-sync
SYNTH=target/release/channel-sync-synth

[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet -p channel-sync -p channel-sync-synth
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }

base=bench/data/$N
dir=bench/data/review-$N
if [ ! -f "$base/registrations.csv" ]; then
  "$SYNTH" generate --out "$base" --opportunities "$N" --seed 42 --now "$NOW" 2>/dev/null
fi
if [ ! -f "$dir/mdf.csv" ]; then
  mkdir -p "$dir"
  for f in accounts partners partner_reps registrations users; do cp "$base/$f.csv" "$dir/"; done
  python3 - "$base" "$dir" <<'PY'
import csv, random, sys
base, out = sys.argv[1], sys.argv[2]
rng = random.Random(42)
with open(f"{base}/opportunities.csv", newline="") as fi, open(f"{out}/opportunities.csv", "w", newline="") as fo:
    r = csv.reader(fi); w = csv.writer(fo, lineterminator="\n")
    head = next(r); w.writerow(head + ["campaign_id"]); p = head.index("partner_id")
    for i, row in enumerate(r):
        w.writerow(row + [f"CMP-{row[p]}" if row[p] and i % 20 == 0 else ""])
partners = [row["id"] for row in csv.DictReader(open(f"{base}/partners.csv", newline=""))]
quarters = [("2025-Q4", "2025-10"), ("2026-Q1", "2026-01"), ("2026-Q2", "2026-04"), ("2026-Q3", "2026-07"), ("2026-Q4", "2026-10")]
with open(f"{out}/program_costs.csv", "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n"); w.writerow(["id", "quarter", "amount", "currency", "partner_id", "category"]); n = 0
    for q, _ in quarters:
        for cat, amt in (("platform", 30000), ("people", 120000)):
            n += 1; w.writerow([f"PC-{n}", q, amt, "", "", cat])
        for pid in partners:
            if rng.random() < 1 / 3:
                n += 1; w.writerow([f"PC-{n}", q, rng.randrange(500, 5000), "", pid, "incentive"])
with open(f"{out}/mdf.csv", "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["id", "partner_id", "status", "amount", "claimed_amount", "currency", "campaign_id", "start_date", "end_date"]); n = 0
    for q, month in quarters:
        for pid in partners:
            if rng.random() < 0.25:
                n += 1; amt = rng.randrange(1000, 20000)
                status = rng.choice(["approved", "claimed", "paid", "requested", "rejected"])
                claimed = rng.randrange(500, amt) if status in ("claimed", "paid") else ""
                camp = f"CMP-{pid}" if rng.random() < 0.5 else f"CMP-none-{n}"
                w.writerow([f"MDF-{n}", pid, status, amt, claimed, "", camp, f"{month}-15", f"{month}-28"])
PY
fi

echo "| format | opportunities | partners | wall (s) | read (s) | review (s) | peak RSS (MiB) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for format in json html; do
  best=""
  for _ in $(seq "$RUNS"); do
    log=$(mktemp)
    RUST_LOG=channel_sync=info /usr/bin/time -f 'TIME %e %M' \
      "$BIN" review --input "$dir" --now "$NOW" --format "$format" >/dev/null 2>"$log" || true
    wall=$(awk '/^TIME/ {print $2}' "$log")
    rss=$(awk '/^TIME/ {printf "%.0f", $3/1024}' "$log")
    read_ms=$(grep -o 'read_ms=[0-9]*' "$log" | cut -d= -f2)
    review_ms=$(grep -o 'review_ms=[0-9]*' "$log" | cut -d= -f2)
    partners=$(grep -o 'partners=[0-9]*' "$log" | cut -d= -f2)
    rm -f "$log"
    if [ -z "$best" ] || awk "BEGIN {exit !($wall < $best)}"; then
      best=$wall
      row="| $format | $N | $partners | $wall | $(awk "BEGIN {printf \"%.2f\", $read_ms/1000}") | $(awk "BEGIN {printf \"%.2f\", $review_ms/1000}") | $rss |"
    fi
  done
  echo "$row"
done
