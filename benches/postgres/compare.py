#!/usr/bin/env python3
"""Compares markledger's outputs with the PostgreSQL peer's on the same dataset.

Usage: compare.py MARKLEDGER_OUT POSTGRES_OUT

Both directories hold status.jsonl, ledger.jsonl, balances.jsonl and rejections.jsonl
(INTERFACE.md). Checked, each as a multiset so that the order of lines across accounts
does not matter:
  status      every record (event, account, gtin, from, to, ts, late, set of codes), and
              the final status of every code derived from them
  ledger      every entry (account, entry, amount, balance, ts, event, codes, late), and
              the totals per account and entry kind
  balances    the last record of every account, and every account's sequence of records
  rejections  (event, type, account, code, reason); the free-text detail is not compared
Amounts compare as exact decimals, timestamps as instants. Prints MATCH, or a summary of
the differences with a few samples, and exits 1 on any difference.
"""

import collections
import datetime
import decimal
import hashlib
import json
import os
import sys

# A code's final status is the furthest along its lifecycle (DOMAIN.md §2): every
# transition moves forward, so the order of the records does not matter.
STATUS_RANK = {
    "EMITTED": 0,
    "APPLIED_UNPAID": 1,
    "APPLIED_PAID": 2,
    "INTRODUCED": 3,
    "REJECTED": 3,
    "ANNULLED": 3,
    "EXPIRED": 3,
}
SAMPLES_MAX = 3


def instant(text):
    if text is None:
        return None
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(moment.timestamp() * 1000)


def money(text):
    return None if text is None else decimal.Decimal(text)


def lines(directory, name):
    path = os.path.join(directory, name)
    with open(path, encoding="utf-8") as file:
        for line in file:
            if line.strip():
                yield json.loads(line)


def read_status(directory):
    records = collections.Counter()
    final = {}
    for record in lines(directory, "status.jsonl"):
        codes = sorted(record["codes"])
        digest = hashlib.blake2b("\n".join(codes).encode(), digest_size=12).hexdigest()
        key = (record["event"], record["account"], record["gtin"], record["from"], record["to"],
               instant(record["ts"]), record["late"], len(codes), digest)
        records[key] += 1
        rank = STATUS_RANK[record["to"]]
        for code in codes:
            seen = final.get(code)
            if seen is None or STATUS_RANK[seen] < rank:
                final[code] = record["to"]
    return records, final


def read_ledger(directory):
    entries = collections.Counter()
    totals = collections.defaultdict(lambda: [0, decimal.Decimal(0), 0])
    for entry in lines(directory, "ledger.jsonl"):
        key = (entry["account"], entry["entry"], money(entry["amount"]), money(entry["balance"]),
               instant(entry["ts"]), entry["event"], entry.get("codes"), entry["late"])
        entries[key] += 1
        total = totals[(entry["account"], entry["entry"])]
        total[0] += 1
        total[1] += money(entry["amount"])
        total[2] += entry.get("codes") or 0
    return entries, {key: tuple(value) for key, value in totals.items()}


def read_balances(directory):
    history = collections.defaultdict(list)
    for record in lines(directory, "balances.jsonl"):
        history[record["account"]].append((money(record["balance"]), record["unpaid_codes"],
                                           money(record["unpaid_amount"]), record["pending_orders"],
                                           instant(record["ts"])))
    return history


def read_rejections(directory):
    return collections.Counter(
        (r["event"], r["type"], r["account"], r["code"], r["reason"])
        for r in lines(directory, "rejections.jsonl"))


def shorten(value):
    text = repr(value)
    return text if len(text) < 200 else text[:197] + "..."


def report_multiset(name, ours, theirs):
    """Prints the verdict for one multiset; returns True when they are equal."""
    only_ours = ours - theirs
    only_theirs = theirs - ours
    if not only_ours and not only_theirs:
        print(f"{name}: MATCH ({sum(ours.values())} records)")
        return True
    print(f"{name}: MISMATCH: {sum(only_ours.values())} only in markledger, "
          f"{sum(only_theirs.values())} only in PostgreSQL "
          f"(of {sum(ours.values())} and {sum(theirs.values())})")
    for label, side in (("markledger", only_ours), ("PostgreSQL", only_theirs)):
        for key in list(side)[:SAMPLES_MAX]:
            print(f"  only in {label}: {shorten(key)}")
    return False


def report_mapping(name, ours, theirs):
    keys = set(ours) | set(theirs)
    differing = sorted((k for k in keys if ours.get(k) != theirs.get(k)), key=repr)
    if not differing:
        print(f"{name}: MATCH ({len(keys)} keys)")
        return True
    print(f"{name}: MISMATCH: {len(differing)} of {len(keys)} keys differ")
    for key in differing[:SAMPLES_MAX]:
        print(f"  {shorten(key)}: markledger {shorten(ours.get(key))}, PostgreSQL {shorten(theirs.get(key))}")
    return False


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    ours_dir, theirs_dir = sys.argv[1], sys.argv[2]
    verdicts = []

    ours, ours_final = read_status(ours_dir)
    theirs, theirs_final = read_status(theirs_dir)
    verdicts.append(report_multiset("status records", ours, theirs))
    verdicts.append(report_mapping("final status of every code", ours_final, theirs_final))
    counts = collections.Counter(ours_final.values())
    print("  codes by final status (markledger): "
          + ", ".join(f"{status} {counts[status]}" for status in STATUS_RANK))
    del ours, theirs, ours_final, theirs_final

    ours, ours_totals = read_ledger(ours_dir)
    theirs, theirs_totals = read_ledger(theirs_dir)
    verdicts.append(report_multiset("ledger entries", ours, theirs))
    verdicts.append(report_mapping("ledger totals per account and entry (count, amount, codes)",
                                   ours_totals, theirs_totals))

    ours = read_balances(ours_dir)
    theirs = read_balances(theirs_dir)
    verdicts.append(report_mapping("final balance of every account", {k: v[-1] for k, v in ours.items()},
                                   {k: v[-1] for k, v in theirs.items()}))
    verdicts.append(report_mapping("balance records of every account", ours, theirs))

    verdicts.append(report_multiset("rejections", read_rejections(ours_dir), read_rejections(theirs_dir)))

    if all(verdicts):
        print("MATCH")
        return 0
    print(f"MISMATCH ({verdicts.count(False)} of {len(verdicts)} checks differ)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
