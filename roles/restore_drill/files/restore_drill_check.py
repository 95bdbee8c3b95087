"""Restore drill, on the target primary: compare counts with the manifest, mask, prove the masking.

Reads a JSON request on stdin:
  {"uri": "mongodb://admin@127.0.0.1:27017/?authSource=admin&directConnection=true",
   "password_file": "<mongo-tools config holding password: ...>",
   "expected": {"db.collection": count, ...},       # the manifest's counts (user databases)
   "rules": [{"namespace": "db.coll", "fields": {"field.path": "generator"}}, ...]}
and prints a JSON report. Exit 1 when a count differs from the manifest, or when a masked field
still holds one of its original values afterwards; exit 2 on bad input.

Fake values are derived from each document's _id (the same document always gets the same fake), so
they carry nothing of the original. Generators: name, email, phone, date, text, null.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import bson
from pymongo import MongoClient

GENERATORS = ("name", "email", "phone", "date", "text", "null")


def fake(generator: str, doc_id: Any, path: str) -> Any:
    digest = hashlib.sha256(bson.encode({"i": doc_id, "p": path})).hexdigest()
    number = int(digest[:12], 16)
    if generator == "name":
        return f"Masked Patient {digest[:8]}"
    if generator == "email":
        return f"patient-{digest[:12]}@example.invalid"
    if generator == "phone":
        return f"+91 00000 {number % 100000:05d}"
    if generator == "date":
        # A day of 1900: far from any living patient's date, so a fake never equals an original.
        epoch = datetime.datetime(1900, 1, 1, tzinfo=datetime.UTC)
        return epoch + datetime.timedelta(days=number % 365)
    if generator == "text":
        return f"masked-{digest[:16]}"
    return None


def get_path(doc: dict[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def fingerprint(value: Any) -> str:
    return hashlib.sha256(bson.encode({"v": value})).hexdigest()


def read_password(config: str) -> str:
    for line in Path(config).read_text(encoding="utf-8").splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "password":
            value = value.strip()
            return str(json.loads(value)) if value.startswith('"') else value
    raise SystemExit(f"no password in {config}")


def mask(client: MongoClient[dict[str, Any]], rule: dict[str, Any]) -> dict[str, Any]:
    db_name, _, coll_name = rule["namespace"].partition(".")
    coll = client[db_name][coll_name]
    fields: dict[str, str] = rule["fields"]
    originals: dict[str, set[str]] = {path: set() for path in fields}
    masked = dict.fromkeys(fields, 0)
    # Read first, then update: the cursor never walks over documents it has changed.
    for doc in list(coll.find({}, {path: 1 for path in fields})):
        changes = {}
        for path, generator in fields.items():
            value = get_path(doc, path)
            if value is None:
                continue
            originals[path].add(fingerprint(value))
            changes[path] = fake(generator, doc["_id"], path)
            masked[path] += 1
        if changes:
            coll.update_one({"_id": doc["_id"]}, {"$set": changes})
    remaining = dict.fromkeys(fields, 0)
    for doc in coll.find({}, {path: 1 for path in fields}):
        for path in fields:
            value = get_path(doc, path)
            if value is not None and fingerprint(value) in originals[path]:
                remaining[path] += 1
    return {"namespace": rule["namespace"], "masked": masked, "originals_remaining": remaining}


def main() -> int:
    request = json.load(sys.stdin)
    for rule in request["rules"]:
        unknown = sorted(set(rule["fields"].values()) - set(GENERATORS))
        if unknown or "." not in rule["namespace"]:
            print(
                f"bad masking rule {rule}: generators are {', '.join(GENERATORS)}", file=sys.stderr
            )
            return 2
    client: MongoClient[dict[str, Any]] = MongoClient(
        request["uri"], password=read_password(request["password_file"])
    )
    report: dict[str, Any] = {"counts": {}, "masking": [], "problems": []}
    try:
        for namespace, expected in sorted(request["expected"].items()):
            db_name, _, coll_name = namespace.partition(".")
            actual = client[db_name][coll_name].count_documents({})
            report["counts"][namespace] = {"expected": expected, "restored": actual}
            if actual != expected:
                report["problems"].append(
                    f"{namespace}: {actual} documents, the manifest says {expected}"
                )
        if not report["problems"]:
            for rule in request["rules"]:
                result = mask(client, rule)
                report["masking"].append(result)
                left = {k: v for k, v in result["originals_remaining"].items() if v}
                if left:
                    report["problems"].append(
                        f"{rule['namespace']}: original values remain in {left}"
                    )
    finally:
        client.close()
    json.dump(report, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
