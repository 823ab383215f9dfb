"""Compare two demo ``results.json`` files value by value: every model's measures and history, every claim's
values and verdict, every audit number. Wall-clock times (``seconds``, ``train_seconds``) are not compared.

Usage: ``python scripts/compare_results.py OLD/results.json NEW/results.json [--digits 6]``; prints each
difference and a last line ``N values compared, M differ``; exits 1 when any differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

TIMES = {"seconds", "train_seconds", "epoch_seconds"}


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every scalar of a JSON value with its path, times left out."""
    if isinstance(value, dict):
        for key in sorted(value):
            if key not in TIMES:
                yield from leaves(value[key], f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, f"{path}[{index}]")
    else:
        yield path, value


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """What must not change: models by (scenario, name, seed), claims by text, the audit."""
    models = {f"{m['scenario']}/{m['name']}/seed{m['seed']}": {k: m[k] for k in ("measures", "history", "audit")
                                                               if k in m} for m in report["models"]}
    claims = {c["claim"]: {k: c[k] for k in ("values", "reference_values", "held", "gap", "pooled_sd", "criterion",
                                             "mechanism") if k in c} for c in report["claims"]}
    return {"models": models, "claims": claims, "audit": report.get("audit", {})}


def main(argv: list[str] | None = None) -> int:
    """Print the differences of two results.json; 1 when any value differs at ``--digits`` decimals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--digits", type=int, default=12, help="decimals a float must agree to")
    args = parser.parse_args(argv)
    with open(args.old) as old_file, open(args.new) as new_file:
        old = dict(leaves(comparable(json.load(old_file))))
        new = dict(leaves(comparable(json.load(new_file))))
    differ = 0
    for path in sorted(old.keys() | new.keys()):
        a, b = old.get(path, "<missing>"), new.get(path, "<missing>")
        floats = isinstance(a, float) and isinstance(b, float)
        same = round(a, args.digits) == round(b, args.digits) if floats else a == b
        if not same:
            differ += 1
            print(f"{path}: {a!r} -> {b!r}")
    print(f"{len(old.keys() | new.keys())} values compared, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
