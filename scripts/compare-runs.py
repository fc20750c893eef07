#!/usr/bin/env python3
"""Compares the outputs of two runs of align2 curate (or rewrite): curated.json byte for byte,
summary.json without its "timings" key, and every dataset of scores.h5 value for value (NaN
equal to NaN; attributes other than timings and the align2 version too). Exits 0 when they are
the same, 1 naming each difference.

Usage: /usr/bin/python3 scripts/compare-runs.py OUTPUT_DIR_A OUTPUT_DIR_B   (a python3 with h5py: Debian's python3-h5py)
"""
import json
import sys

import h5py
import numpy as np

# Attributes that name the build or time the run: allowed to differ.
VOLATILE_ATTRS = {"align2_version", "timings_json"}


def same_values(a, b):
    if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    if a.dtype.kind == "O":  # variable-length strings and vlen arrays
        for x, y in zip(a.ravel(), b.ravel()):
            if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
                if not same_values(np.asarray(x), np.asarray(y)):
                    return False
            elif x != y:
                return False
        return True
    return bool(np.array_equal(a, b))


def summary_without_timings(path):
    with open(path, encoding="utf-8") as f:
        s = json.load(f)
    s.pop("timings", None)
    return s


def compare(a_dir, b_dir):
    problems = []
    with open(f"{a_dir}/curated.json", "rb") as fa, open(f"{b_dir}/curated.json", "rb") as fb:
        if fa.read() != fb.read():
            problems.append("curated.json differs")
    if summary_without_timings(f"{a_dir}/summary.json") != summary_without_timings(f"{b_dir}/summary.json"):
        problems.append("summary.json (timings aside) differs")
    with h5py.File(f"{a_dir}/scores.h5", "r") as ha, h5py.File(f"{b_dir}/scores.h5", "r") as hb:
        names_a, names_b = set(), set()
        ha.visit(names_a.add)
        hb.visit(names_b.add)
        if names_a != names_b:
            problems.append(f"scores.h5: datasets differ: {sorted(names_a ^ names_b)}")
        for name in sorted(names_a & names_b):
            if isinstance(ha[name], h5py.Dataset) and not same_values(ha[name][()], hb[name][()]):
                problems.append(f"scores.h5: dataset {name} differs")
        for key in sorted(set(ha.attrs) | set(hb.attrs)):
            if key in VOLATILE_ATTRS:
                continue
            if key not in ha.attrs or key not in hb.attrs or not np.array_equal(ha.attrs[key], hb.attrs[key]):
                if key == "stage_summary_json":  # the merged file's summary.json, timings in it
                    sa, sb = json.loads(ha.attrs[key]), json.loads(hb.attrs[key])
                    sa.pop("timings", None)
                    sb.pop("timings", None)
                    if sa == sb:
                        continue
                problems.append(f"scores.h5: attribute {key} differs")
        rows = ha["index"].shape[0] if "index" in ha else "?"
    return problems, rows


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    problems, rows = compare(sys.argv[1], sys.argv[2])
    for p in problems:
        print(p)
    print(f"compare-runs: {sys.argv[1]} vs {sys.argv[2]}: {rows} rows, "
          + ("the same" if not problems else f"{len(problems)} difference(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
