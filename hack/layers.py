#!/usr/bin/env python3
"""The layers hold (`make layers-check`): inside each crate, no import cycle between its
top-level modules (files or folders), read from `crate::x` paths outside comments and tests.
Between crates the compiler already refuses a wrong-way import."""
import os
import re
import sys
from collections import defaultdict

ROOTS = ["crates/ruleop-schema/src", "crates/ruleop-lang/src", "crates/ruleop-plan/src", "src"]


def graph(root):
    edges = defaultdict(set)
    for d, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".rs") or f.endswith("tests.rs"):
                continue
            path = os.path.join(d, f)
            module = os.path.relpath(path, root)[:-3].split("/")[0]
            text = open(path).read().split("#[cfg(test)]\nmod tests")[0]
            text = "\n".join(l for l in text.split("\n") if not l.strip().startswith("//"))
            for m in re.finditer(r"crate::(\w+)", text):
                if m.group(1) != module:
                    edges[module].add(m.group(1))
            for m in re.finditer(r"use crate::\{([^;]*)\}", text, re.S):
                for t in re.findall(r"(?:^|[,{\s])([a-z_]\w*)(?=::|\s*[,}]|$)", m.group(1)):
                    if t not in (module, "self"):
                        edges[module].add(t)
    return edges


def cycles(edges):
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


failed = False
for root in ROOTS:
    edges = graph(root)
    if "-v" in sys.argv:
        print(f"== {root}")
        for m in sorted(edges):
            print(f"  {m:14} -> {', '.join(sorted(edges[m]))}")
    for c in cycles(edges):
        print(f"{root}: import cycle between {', '.join(c)}", file=sys.stderr)
        failed = True
sys.exit(1 if failed else 0)
