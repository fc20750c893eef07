#!/usr/bin/env python3
"""Checks the include rules of docs/architecture.md over the product code (core/, jobs/,
distributed/, kernels/); exits 1 naming every line that breaks one:

  1. a folder includes only the folders its row of ALLOWED names (so the folders form no cycle);
  2. ATen / torch / c10 headers only in core/engine/;
  3. hdf5.h only in core/store/, mpi.h and nccl.h only in distributed/ (and cuda_runtime.h);
  4. no include cycle between files.

Usage: python3 scripts/check-architecture.py [REPO_ROOT]
"""
import os
import re
import sys

# Folder -> the folders it may include (itself always). The order is the layering, lowest first.
ALLOWED = {
    "kernels": set(),
    "distributed": set(),
    "core/util": {"kernels"},
    "core/data": {"core/util", "kernels"},
    "core/store": {"core/data", "core/util", "kernels"},
    "core/model": {"core/data", "core/util", "kernels"},
    "core/reward": {"core/model", "core/data", "core/util", "kernels"},
    "core/rewrite": {"core/model", "core/store", "core/data", "core/util", "kernels"},
    "core/pipeline": {"core/reward", "core/rewrite", "core/store", "core/model", "core/data", "core/util",
                      "kernels", "distributed"},
    "core/engine": {"core/pipeline", "core/reward", "core/rewrite", "core/store", "core/model", "core/data",
                    "core/util", "kernels", "distributed"},
    "jobs": {"core/engine", "core/pipeline", "core/reward", "core/rewrite", "core/store", "core/model", "core/data",
             "core/util", "kernels", "distributed"},
}
# Heavy headers and the one folder each may appear in.
HEAVY = [
    (re.compile(r"^(ATen|torch|c10)/"), "core/engine", "ATen/torch"),
    (re.compile(r"^hdf5(_hl)?\.h$"), "core/store", "HDF5"),
    (re.compile(r"^(mpi|nccl|cuda_runtime)\.h$"), "distributed", "MPI/NCCL/CUDA"),
]
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
SOURCE = (".h", ".cc", ".cc.in")


def folder_of(path):
    """The ALLOWED row a repository path belongs to, or None."""
    parts = path.split("/")
    for depth in (2, 1):
        key = "/".join(parts[:depth])
        if key in ALLOWED and len(parts) > depth:
            return key
    return None


def check_layering():
    """The allowed table itself must have no cycle."""
    seen, done = set(), set()

    def visit(node, stack):
        if node in done:
            return None
        if node in seen:
            return stack[stack.index(node):] + [node]
        seen.add(node)
        for dep in sorted(ALLOWED[node]):
            cycle = visit(dep, stack + [node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for node in ALLOWED:
        cycle = visit(node, [])
        if cycle:
            return ["ALLOWED has a cycle: " + " -> ".join(cycle)]
    return []


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    problems = check_layering()
    graph = {}  # file -> files of the repository it includes
    files = []
    for top in ("core", "jobs", "distributed", "kernels"):
        for dirpath, _, names in os.walk(os.path.join(root, top)):
            for name in names:
                if name.endswith(SOURCE):
                    files.append(os.path.relpath(os.path.join(dirpath, name), root))
    for path in sorted(files):
        here = folder_of(path)
        if here is None:
            problems.append(f"{path}: not in a folder of the architecture (scripts/check-architecture.py ALLOWED)")
            continue
        graph[path] = []
        with open(os.path.join(root, path), encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                target = m.group(2)
                for pattern, home, what in HEAVY:
                    if pattern.match(target) and here != home:
                        problems.append(f"{path}:{number}: includes {target}: {what} headers belong in {home}/ only")
                if m.group(1) != '"' or not os.path.exists(os.path.join(root, target)):
                    continue
                graph[path].append(target)
                there = folder_of(target)
                if there is not None and there != here and there not in ALLOWED[here]:
                    problems.append(f"{path}:{number}: includes {target}: {here}/ may not use {there}/ "
                                    f"(docs/architecture.md, Folders)")
    # File-level cycles (depth-first search over the include graph).
    state = {}

    def dfs(node, stack):
        state[node] = 1
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                problems.append("include cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                dfs(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node, [node])
    for p in problems:
        print(p)
    print(f"check-architecture: {len(graph)} files, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
