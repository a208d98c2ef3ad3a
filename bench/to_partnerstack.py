#!/usr/bin/env python3
"""Turns a generated program (channel-sync-synth generate) into PartnerStack-
shaped records for the fake PartnerStack: partnerships.jsonl and deals.jsonl.
The CRM tables stay CSV (the benchmark runs with crm.kind = "files").

    bench/to_partnerstack.py SRC_DIR OUT_DIR

Shapes as the Vendor API v2 returns them (docs: reference/prm-and-dealreg.md):
epoch milliseconds, amounts in integer cents, the rep as the deal's
`team_member`, the protection dates as custom fields (`fields`), the CRM
opportunity as `external_key` (prm.partnerstack.external_key = "opportunity").
A registration's CRM account and customer domain have no PartnerStack field
and are not carried.
"""
import csv, json, os, sys
from datetime import datetime, timezone

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)

def rows(name):
    with open(os.path.join(src, name + ".csv"), newline="") as f:
        yield from csv.DictReader(f)

def ms(ts):
    if not ts:
        return None
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp() * 1000)

updated = ms("2026-11-01T00:00:00Z")

with open(os.path.join(out, "partnerships.jsonl"), "w") as f:
    for p in rows("partners"):
        f.write(json.dumps({
            "key": "part_" + p["id"], "partner_key": p["id"],
            "team": {"key": "team_" + p["id"], "name": p["name"]},
            "group": {"key": "group_" + (p["tier"] or "default"), "name": p["tier"] or None},
            "email": "partners@" + (p["domain"] or p["id"].lower() + ".example"),
            "m_data": {"crm_account_id": p["crm_account_id"] or None},
            "created_at": updated - 86_400_000, "updated_at": updated, "archived": False,
        }) + "\n")

reps = {r["id"]: r for r in rows("partner_reps")}

with open(os.path.join(out, "deals.jsonl"), "w") as f:
    for r in rows("registrations"):
        rep = reps.get(r["rep"]) if r["rep"] else None
        member = None
        if r["rep"]:
            first, _, last = ((rep or {}).get("name") or "").partition(" ")
            member = {"key": r["rep"], "email": (rep or {}).get("email") or None,
                      "first_name": first or None, "last_name": last or None}
        custom = {"approved_at": ms(r["approved_at"]), "expires_at": ms(r["expires_at"])}
        f.write(json.dumps({
            "key": r["id"], "partner_key": r["partner_id"],
            "account_name": r["customer_name"], "stage": r["status"],
            "created_at": ms(r["submitted_at"]), "updated_at": updated,
            "team_member": member,
            "external_key": r["opportunity_id"] or None,
            "amount": round(float(r["amount"]) * 100) if r["amount"] else None,
            "source": "partner", "fields": custom, "field_data": custom,
        }) + "\n")
