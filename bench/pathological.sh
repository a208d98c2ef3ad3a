#!/usr/bin/env bash
# `detect` on the generated 100k program plus five accounts and five
# registrations whose names are pasted text rather than company names: one
# word of 200,000 chars, 100,000 words `co` (a legal form, dropped from the
# end), 50,000 words of a vocabulary of four, 50,000 distinct words, and
# 20,000 words of 60 chars. Prints wall time and peak memory; fails when
# `detect` takes more than LIMIT seconds (default 30).
#
#   bench/pathological.sh                         # builds and runs the tree's binary
#   BIN=/tmp/old/channel-sync bench/pathological.sh   # another binary
#
# Before the 64-char rule (SPEC §3.1 step 4 in the README), the first name
# alone made the fuzzy step's bounds table grow past 1.9 GB and `detect` did
# not finish in 60 s; with it, 0.57 s and 449 MB (2026-12-04, AMD EPYC).
set -euo pipefail
cd "$(dirname "$0")/.."

LIMIT=${LIMIT:-30}
NOW=2026-11-26T00:00:00Z
src=bench/data/100000
[ -f "$src/registrations.csv" ] || { echo "no program in $src: run bench/detect.sh 100000 first" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet -p channel-sync
  BIN=target/release/channel-sync
fi
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$src"/*.csv "$work"/
python3 - "$work" <<'PY'
import csv, random, sys
d = sys.argv[1]
random.seed(1)
names = [
    "q" * 200000 + " Freight",
    " ".join(["co"] * 100000),
    " ".join(random.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(50000)),
    " ".join("w%dx" % i for i in range(50000)),
    " ".join("".join(random.choice("abcdefgh") for _ in range(60)) for _ in range(20000)),
]
def append(path, make):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        first = next(reader)
        fields = reader.fieldnames
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fields)
        for k, name in enumerate(names):
            w.writerow(make(dict(first), k, name))
def account(row, k, name):
    row.update(id="A-PATHO-%d" % k, name=name, domain="", website="")
    return row
def registration(row, k, name):
    # A typo in the last char: the name goes through every matching step.
    row.update(id="R-PATHO-%d" % k, customer_name=name[:-1] + "z",
               customer_domain="", account_id="", opportunity_id="")
    return row
append(f"{d}/accounts.csv", account)
append(f"{d}/registrations.csv", registration)
PY
start=$(date +%s.%N)
/usr/bin/time -f "%M" -o "$work/rss" timeout "$LIMIT" "$BIN" detect --input "$work" --now "$NOW" --format json >"$work/out.json" 2>/dev/null || {
  rc=$?
  [ "$rc" = 124 ] && { echo "detect did not finish in $LIMIT s" >&2; exit 1; }
  echo "detect failed (exit $rc)" >&2; exit 1
}
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" -v kb="$(tail -1 "$work/rss")" 'BEGIN { printf "pathological names: %.2f s, peak %d MiB\n", e - s, kb / 1024 }'
