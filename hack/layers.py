#!/usr/bin/env python3
"""The layers hold (`make layers-check`): no import cycle between files of different folders,
in any crate of the workspace. Between crates the compiler already refuses a wrong-way import.

Imports are read from the text: `use` trees and inline paths starting at `crate::`, `super::`,
`self::` or a child module, outside comments and `#[cfg(test)]` modules, each resolved to the
file of the longest module path that exists. `-v` prints every file's imports."""
import os
import re
import sys
from collections import defaultdict

def files_of(root):
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            if f.endswith(".rs"):
                p = os.path.join(d, f)
                rel = os.path.relpath(p, root)[:-3].split("/")
                if rel[-1] in ("mod", "lib", "main"):
                    rel = rel[:-1]
                out[tuple(rel)] = p
    return out

def strip(text):
    text = text.split("#[cfg(test)]\nmod tests {")[0]
    text = re.sub(r"#\[cfg\(test\)\]\s*(#\[path[^\]]*\]\s*)?mod \w+;", "", text)
    return "\n".join(l for l in text.split("\n") if not l.strip().startswith("//"))

def flatten(prefix, tree):
    # tree: text inside braces or a simple path
    items, depth, cur = [], 0, ""
    for ch in tree:
        if ch == "{": depth += 1
        if ch == "}": depth -= 1
        if ch == "," and depth == 0:
            items.append(cur.strip()); cur = ""
        else:
            cur += ch
    if cur.strip(): items.append(cur.strip())
    out = []
    for it in items:
        m = re.match(r"^([\w:]*?)::\{(.*)\}$", it, re.S)
        if m:
            out += flatten(prefix + m.group(1).split("::"), m.group(2))
        else:
            name = it.split(" as ")[0].strip()
            out.append(prefix + [x for x in name.split("::") if x])
    return out

def paths(text):
    res = []
    # Relative paths: a child module (`use program::Program;`, `program::compile(..)`).
    for m in re.finditer(r"\buse\s+(\w+)(?:::(\w+(?:::\w+)*))?(?:::\{(.*?)\})?\s*;", text, re.S):
        if m.group(1) in ("crate", "super", "self", "std", "core", "alloc"):
            continue
        base = ["self", m.group(1)] + (m.group(2).split("::") if m.group(2) else [])
        if m.group(3) is not None:
            res += flatten(base, m.group(3))
        else:
            res.append(base)
    for m in re.finditer(r"(?<![\w:])([a-z_]\w*)::(\w+)", text):
        res.append(["self", m.group(1), m.group(2)])
    for m in re.finditer(r"\buse\s+((?:crate|super|self)(?:::\w+)*)(?:::\{(.*?)\})?\s*;", text, re.S):
        base = m.group(1).split("::")
        if m.group(2) is not None:
            res += flatten(base, m.group(2))
        else:
            res.append(base)
    for m in re.finditer(r"(?<![\w:])((?:crate|super)(?:::\w+)+)", text):
        res.append(m.group(1).split("::"))
    return res

def resolve(mod, path, files):
    if path[0] == "crate":
        cur, rest = [], path[1:]
    else:
        cur = list(mod)
        rest = path
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                cur = cur[:-1]
            rest = rest[1:]
    best = None
    if path[0] == "self" and not rest:
        return None
    lo = 1 if path[0] == "self" else 0
    for i in range(len(rest), lo - 1, -1):
        cand = tuple(cur + rest[:i])
        if cand in files:
            best = cand
            break
    return best

def check(root):
    files = files_of(root)
    edges = defaultdict(set)
    for mod, p in files.items():
        if p.endswith("tests.rs"):
            continue
        for path in paths(strip(open(p).read())):
            t = resolve(mod, path, files)
            if t is not None and t != mod and not (len(t) < len(mod) and mod[:len(t)] == t and False):
                edges[mod].add(t)
    return files, edges


ROOTS = ["crates/ruleop-schema/src", "crates/ruleop-lang/src", "crates/ruleop-plan/src", "src"]


def sccs(edges, nodes):
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
                out.append(comp)

    for n in nodes:
        if n not in index:
            visit(n)
    return out


def main():
    sys.setrecursionlimit(10000)
    failed = False
    for root in ROOTS:
        files, edges = check(root)
        if "-v" in sys.argv:
            for m in sorted(edges):
                targets = sorted(files[t].replace(root + "/", "") for t in edges[m])
                print(f"{files[m]} -> {', '.join(targets)}")
        for comp in sccs(edges, list(files)):
            if len({os.path.dirname(files[m]) for m in comp}) > 1:
                names = sorted(files[m].replace(root + "/", "") for m in comp)
                print(f"{root}: import cycle across folders: {', '.join(names)}", file=sys.stderr)
                failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
