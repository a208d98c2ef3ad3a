#!/usr/bin/env python3
"""Turns a generated program (channel-sync-synth generate) into HubSpot-shaped
records for the fake HubSpot: companies.jsonl, deals.jsonl, owners.jsonl.
The PRM tables stay CSV (the benchmark runs with prm.kind = "files").

    bench/to_hubspot.py SRC_DIR OUT_DIR
"""
import csv, json, sys, os

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
stamp = "2026-11-01T00:00:00.000Z"
stage = {"open": "appointmentscheduled", "won": "closedwon", "lost": "closedlost"}

def rows(name):
    with open(os.path.join(src, name + ".csv"), newline="") as f:
        yield from csv.DictReader(f)

def iso(ts):
    if not ts:
        return None
    if len(ts) == 10:
        ts += "T00:00:00Z"
    return ts.replace("Z", ".000Z")

with open(os.path.join(out, "companies.jsonl"), "w") as f:
    for a in rows("accounts"):
        f.write(json.dumps({"id": a["id"], "properties": {"name": a["name"], "domain": a["domain"] or a["website"] or None,
                            "hubspot_owner_id": a["owner_id"] or None, "hs_lastmodifieddate": stamp}}) + "\n")

with open(os.path.join(out, "owners.jsonl"), "w") as f:
    for u in rows("users"):
        first, _, last = (u["name"] or "").partition(" ")
        f.write(json.dumps({"id": u["id"], "email": u["email"] or None, "firstName": first, "lastName": last,
                            "userId": 1, "archived": False}) + "\n")

with open(os.path.join(out, "deals.jsonl"), "w") as f:
    for o in rows("opportunities"):
        f.write(json.dumps({"id": o["id"], "properties": {
            "dealname": o["name"] or None, "amount": o["amount"] or None,
            "closedate": iso(o["close_date"]), "createdate": iso(o["created_at"]),
            "dealstage": stage[o["status"]], "pipeline": "default",
            "hubspot_owner_id": o["owner_id"] or None, "hs_lastmodifieddate": stamp,
            "channel_partner": o["partner_id"] or None, "channel_partner_rep": o["partner_rep"] or None,
            "channel_registration_id": o["registration_id"] or None},
            "associations": {"companies": [o["account_id"]]}}) + "\n")
