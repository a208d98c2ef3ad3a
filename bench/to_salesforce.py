#!/usr/bin/env python3
"""Turns a generated program (channel-sync-synth generate) into Salesforce-shaped
records for the fake Salesforce: Account.jsonl, Opportunity.jsonl, User.jsonl.
The PRM tables stay CSV (the benchmark runs with prm.kind = "files").

    bench/to_salesforce.py SRC_DIR OUT_DIR
"""
import csv, json, sys, os

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
stamp = "2026-11-01T00:00:00.000+0000"

def rows(name):
    with open(os.path.join(src, name + ".csv"), newline="") as f:
        yield from csv.DictReader(f)

partner_account = {p["id"]: p["crm_account_id"] for p in rows("partners") if p["crm_account_id"]}

with open(os.path.join(out, "Account.jsonl"), "w") as f:
    for a in rows("accounts"):
        f.write(json.dumps({"Id": a["id"], "Name": a["name"], "Website": a["website"] or a["domain"] or None,
                            "OwnerId": a["owner_id"] or None, "IsPartner": False,
                            "SystemModstamp": stamp}) + "\n")

with open(os.path.join(out, "User.jsonl"), "w") as f:
    for u in rows("users"):
        f.write(json.dumps({"Id": u["id"], "Name": u["name"], "Email": u["email"] or None,
                            "UserType": "Standard", "IsActive": True, "SystemModstamp": stamp}) + "\n")

with open(os.path.join(out, "Opportunity.jsonl"), "w") as f:
    for o in rows("opportunities"):
        created = o["created_at"]
        if len(created) == 10:
            created += "T00:00:00Z"
        created = created.replace("Z", ".000+0000")
        f.write(json.dumps({
            "Id": o["id"], "AccountId": o["account_id"], "OwnerId": o["owner_id"] or None,
            "Name": o["name"] or None, "StageName": o["stage"] or None,
            "IsClosed": o["status"] != "open", "IsWon": o["status"] == "won",
            "Amount": float(o["amount"]) if o["amount"] else None,
            "CloseDate": o["close_date"] or None, "CreatedDate": created,
            "PartnerAccountId": partner_account.get(o["partner_id"]),
            "Partner_Rep__c": o["partner_rep"] or None,
            "Deal_Registration__c": o["registration_id"] or None,
            "SystemModstamp": stamp}) + "\n")
