"""The query, projection, sort and update subset the double supports (spec: data plane).

Query operators: equality, $gt/$gte/$lt/$lte/$ne/$in/$nin/$exists, $and/$or/$nor, dotted paths.
Update operators: $set, $unset, $inc, $setOnInsert, or a replacement document.
"""

from __future__ import annotations

import copy
from typing import Any

from .bson_codec import Document, sort_key, type_rank
from .errors import MongoError
from .storage import id_key

_MISSING = object()


def _path_values(value: Any, parts: list[str]) -> list[Any]:
    """Every value a dotted path reaches, descending into arrays as MongoDB does."""
    if not parts:
        return [value]
    head, rest = parts[0], parts[1:]
    if isinstance(value, dict):
        if head not in value:
            return [_MISSING]
        return _path_values(value[head], rest)
    if isinstance(value, list):
        if head.isdigit() and int(head) < len(value):
            return _path_values(value[int(head)], rest)
        out: list[Any] = []
        for item in value:
            if isinstance(item, dict):
                out.extend(v for v in _path_values(item, parts) if v is not _MISSING)
        return out or [_MISSING]
    return [_MISSING]


def _expand(values: list[Any]) -> list[Any]:
    """Candidates for comparison: each value and, for arrays, also their elements."""
    out: list[Any] = []
    for value in values:
        out.append(value)
        if isinstance(value, list):
            out.extend(value)
    return out


def _equal(a: Any, b: Any) -> bool:
    return a is not _MISSING and sort_key(a) == sort_key(b)


def _compare(candidate: Any, op: str, operand: Any) -> bool:
    if candidate is _MISSING or type_rank(candidate) != type_rank(operand):
        return False
    left, right = sort_key(candidate), sort_key(operand)
    if op == "$gt":
        return left > right
    if op == "$gte":
        return left >= right
    if op == "$lt":
        return left < right
    return left <= right


def _match_operators(values: list[Any], spec: Document) -> bool:
    candidates = _expand(values)
    for op, operand in spec.items():
        if op == "$eq":
            ok = any(_equal(c, operand) for c in candidates) or (
                operand is None and _MISSING in values
            )
        elif op == "$ne":
            ok = not _match_operators(values, {"$eq": operand})
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            ok = any(_compare(c, op, operand) for c in candidates)
        elif op == "$in":
            if not isinstance(operand, list):
                raise MongoError(2, "$in needs an array")
            ok = any(_match_operators(values, {"$eq": item}) for item in operand)
        elif op == "$nin":
            if not isinstance(operand, list):
                raise MongoError(2, "$nin needs an array")
            ok = not any(_match_operators(values, {"$eq": item}) for item in operand)
        elif op == "$exists":
            present = any(v is not _MISSING for v in values)
            ok = present == bool(operand)
        else:
            raise MongoError(2, f"unknown operator: {op}")
        if not ok:
            return False
    return True


def matches(doc: Document, query: Document) -> bool:
    for key, condition in query.items():
        if key in ("$and", "$or", "$nor"):
            if not isinstance(condition, list) or not condition:
                raise MongoError(2, f"{key} argument must be a non-empty array")
            results = [matches(doc, sub) for sub in condition]
            ok = all(results) if key == "$and" else any(results)
            if (key == "$nor") == ok:
                return False
            continue
        if key.startswith("$"):
            raise MongoError(2, f"unknown top level operator: {key}")
        values = _path_values(doc, key.split("."))
        is_operator_doc = (
            isinstance(condition, dict) and condition and next(iter(condition)).startswith("$")
        )
        spec = condition if is_operator_doc else {"$eq": condition}
        if not _match_operators(values, spec):
            return False
    return True


def id_values(query: Document) -> list[Any] | None:
    """The `_id` values a query pins its documents to (equality, $eq or $in on `_id`), in the
    order of the `_id` index; None when it does not (every document is a candidate). The query
    still decides on each candidate."""
    if "_id" not in query:
        return None
    condition = query["_id"]
    if isinstance(condition, dict) and condition and next(iter(condition)).startswith("$"):
        if set(condition) == {"$eq"}:
            return [condition["$eq"]]
        if set(condition) == {"$in"} and isinstance(condition["$in"], list):
            unique = {id_key(value): value for value in condition["$in"]}
            return sorted(unique.values(), key=sort_key)
        return None
    return [condition]


def project(doc: Document, projection: Document | None) -> Document:
    if not projection:
        return doc
    include_id = bool(projection.get("_id", 1))
    fields = {k: v for k, v in projection.items() if k != "_id"}
    inclusive = any(bool(v) for v in fields.values())
    if inclusive:
        out: Document = {"_id": doc["_id"]} if include_id and "_id" in doc else {}
        for key in fields:
            value = _path_values(doc, key.split("."))[0]
            if value is not _MISSING:
                _set_path(out, key, value)
        return out
    out = copy.deepcopy(doc)
    for key in fields:
        _unset_path(out, key)
    if not include_id:
        out.pop("_id", None)
    return out


def sort_documents(docs: list[Document], sort: Document | None) -> list[Document]:
    if not sort:
        return docs
    if len(sort) != 1:
        raise MongoError(2, "the double sorts on a single field or $natural only")
    field, direction = next(iter(sort.items()))
    if field == "$natural":
        return list(reversed(docs)) if direction == -1 else docs

    def key(doc: Document) -> tuple[Any, ...]:
        value = _path_values(doc, field.split("."))[0]
        return sort_key(None if value is _MISSING else value)

    return sorted(docs, key=key, reverse=direction == -1)


def _set_path(doc: Document, path: str, value: Any) -> None:
    parts = path.split(".")
    node = doc
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _unset_path(doc: Document, path: str) -> None:
    parts = path.split(".")
    node: Any = doc
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(parts[-1], None)


def is_operator_update(update: Document) -> bool:
    return bool(update) and next(iter(update)).startswith("$")


def apply_update(doc: Document, update: Document, inserting: bool = False) -> Document:
    """Return the updated copy of `doc`; a replacement keeps `_id`."""
    if not is_operator_update(update):
        if any(k.startswith("$") for k in update):
            raise MongoError(9, "Cannot mix update operators and replacement fields")
        out = {"_id": doc["_id"]} if "_id" in doc else {}
        out.update({k: v for k, v in update.items() if k != "_id"})
        return out
    out = copy.deepcopy(doc)
    for op, fields in update.items():
        if not isinstance(fields, dict):
            raise MongoError(
                9, f"Modifiers operate on fields but we found type {type(fields).__name__} instead"
            )
        for path, value in fields.items():
            touches_id = path == "_id" or path.startswith("_id.")
            if touches_id and op != "$setOnInsert" and not inserting:
                raise MongoError(
                    66,
                    "Performing an update on the path '_id' would modify the immutable field '_id'",
                )
            if op == "$set" or (op == "$setOnInsert" and inserting):
                _set_path(out, path, copy.deepcopy(value))
            elif op == "$setOnInsert":
                continue
            elif op == "$unset":
                _unset_path(out, path)
            elif op == "$inc":
                current = _path_values(out, path.split("."))[0]
                if current is _MISSING:
                    current = 0
                if isinstance(current, bool) or not isinstance(current, int | float):
                    raise MongoError(
                        14,
                        f"Cannot apply $inc to a value of non-numeric type. "
                        f"{{_id: {doc.get('_id')!r}}} has the field '{path}' of "
                        f"non-numeric type",
                    )
                _set_path(
                    out,
                    path,
                    type(current)(current + value)
                    if isinstance(current, int) and isinstance(value, int)
                    else current + value,
                )
            else:
                raise MongoError(
                    9,
                    f"Unknown modifier: {op}. Expected a valid update modifier "
                    f"or pipeline-style update specified as an array",
                )
    return out


def upsert_seed(query: Document) -> Document:
    """The document an upsert starts from: the equality fields of the query."""
    seed: Document = {}
    for key, value in query.items():
        if key.startswith("$"):
            continue
        if isinstance(value, dict) and value and next(iter(value)).startswith("$"):
            if "$eq" in value:
                _set_path(seed, key, value["$eq"])
            continue
        _set_path(seed, key, value)
    return seed
