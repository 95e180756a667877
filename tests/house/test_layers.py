#!/usr/bin/env python3
"""test_layers.py — the house's floors, checked on the source and the objects.

1. Folders: the include graph between the module folders of lib/ and
   daemon/ (a `#include "engine/engine.h"` in daemon/rpc/x.c is an edge
   rpc -> engine) has no cycle, and lib/ includes nothing of daemon/.
2. Plugins: every file under plugins/ includes only bayesguard/plugin.h,
   its own folder's headers, system headers, and the headers of lib/
   libraries that are themselves plugin-safe (whose files include only
   bayesguard/plugin.h and their own headers: lib/gfn, the trainer), or
   that the plugin's own CMakeLists.txt links (`bg_<lib>`, statically,
   its symbols kept inside the .so) with the lib/ folders those reach
   (lm_gfn: lmgfn, nn, compute, common) — all of them below daemon/.
3. Files: in each module library, no ring of object files calls itself
   round (a.o calls a function b.o defines and b.o, directly or through
   others, calls one a.o defines). Read from the build's objects: a call is
   a call relocation (x86-64 PLT32, AArch64 CALL26/JUMP26) against a symbol
   another object of the module defines. Taking a function's address to
   fill a method table is no call — that is how a lower file reaches a
   higher one.

Prints every cycle it finds with the edges that make it; exit 1 when any.
"""
import collections
import os
import re
import subprocess
import sys

SRC = os.environ.get("BG_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
BUILD = os.environ.get("BG_BUILD_DIR")
INC = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def modules():
    """{module name: folder} for lib/* and daemon/*."""
    out = {}
    for top in ("lib", "daemon"):
        base = os.path.join(SRC, top)
        for m in sorted(os.listdir(base)):
            if os.path.isdir(os.path.join(base, m)):
                out[m] = (top, os.path.join(base, m))
    return out


def sccs(graph):
    """Tarjan's strongly connected components of size > 1 (or self loops)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def folder_graph(mods):
    graph = collections.defaultdict(set)
    why = {}
    for m, (top, path) in mods.items():
        for f in sorted(os.listdir(path)):
            if not f.endswith((".c", ".h")):
                continue
            text = open(os.path.join(path, f), encoding="utf-8", errors="replace").read()
            for inc in INC.findall(text):
                head = inc.split("/")[0]
                if "/" in inc and head in mods and head != m:
                    graph[m].add(head)
                    why.setdefault((m, head), f"{top}/{m}/{f} includes \"{inc}\"")
    return graph, why


def check_folders(mods):
    bad = []
    graph, why = folder_graph(mods)
    for comp in sccs(graph):
        edges = [why[(a, b)] for a in comp for b in comp if (a, b) in why]
        bad.append("folder cycle " + " <-> ".join(comp) + ":\n    " + "\n    ".join(edges))
    for m, (top, _) in mods.items():
        if top != "lib":
            continue
        for dep in sorted(graph.get(m, ())):
            if mods[dep][0] == "daemon":
                bad.append(f"lib/{m} reaches up into daemon/{dep}: {why[(m, dep)]}")
    return bad


def plugin_safe_libs(mods):
    """lib/ folders whose files include only plugin.h and their own headers."""
    safe = set()
    for m, (top, path) in mods.items():
        if top != "lib":
            continue
        own = {f for f in os.listdir(path) if f.endswith(".h")}
        ok = True
        for f in os.listdir(path):
            if f.endswith((".c", ".h")):
                text = open(os.path.join(path, f), encoding="utf-8", errors="replace").read()
                for inc in INC.findall(text):
                    if inc != "bayesguard/plugin.h" and inc not in own and not (
                            inc.startswith(m + "/") and inc[len(m) + 1:] in own):
                        ok = False
        if ok:
            safe.add(m)
    return safe


def linked_libs(mods, folder):
    """lib/ folders a plugin folder's CMakeLists.txt links (bg_<lib>) and
    every lib/ folder those reach through the include graph."""
    path = os.path.join(folder, "CMakeLists.txt")
    if not os.path.exists(path):
        return set()
    text = open(path, encoding="utf-8", errors="replace").read()
    todo = [m for m in re.findall(r"\bbg_(\w+)", text) if m in mods and mods[m][0] == "lib"]
    graph, _ = folder_graph(mods)
    seen = set()
    while todo:
        m = todo.pop()
        if m in seen or mods[m][0] != "lib":
            continue
        seen.add(m)
        todo.extend(graph.get(m, ()))
    return seen


def check_plugins(mods):
    bad = []
    safe = plugin_safe_libs(mods)
    base = os.path.join(SRC, "plugins")
    for root, _, files in os.walk(base):
        own = {f for f in files if f.endswith(".h")}
        allowed = safe | linked_libs(mods, root)
        for f in files:
            if not f.endswith((".c", ".h")):
                continue
            text = open(os.path.join(root, f), encoding="utf-8", errors="replace").read()
            for inc in INC.findall(text):
                if inc == "bayesguard/plugin.h" or inc in own or inc.split("/")[0] in allowed:
                    continue
                bad.append(f"{os.path.relpath(os.path.join(root, f), SRC)} includes \"{inc}\": "
                           "a plugin sees only bayesguard/plugin.h, its own headers and "
                           f"plugin-safe lib/ folders ({', '.join(sorted(safe)) or 'none'})")
    return bad


CALL_RELOCS = ("R_X86_64_PLT32", "R_X86_64_PC32", "R_AARCH64_CALL26", "R_AARCH64_JUMP26")


def defined_globals(path):
    r = subprocess.run(["nm", "-P", "-g", "--defined-only", path], capture_output=True,
                       text=True, check=True)
    return {line.split()[0] for line in r.stdout.splitlines() if line.strip()}


def calls(path):
    """Symbols the object calls (call relocations in its code sections)."""
    r = subprocess.run(["readelf", "-rW", path], capture_output=True, text=True, check=True)
    out, in_text = set(), False
    for line in r.stdout.splitlines():
        if line.startswith("Relocation section"):
            in_text = ".rela.text" in line
            continue
        f = line.split()
        if in_text and len(f) >= 5 and f[2] in CALL_RELOCS:
            out.add(f[4])
    return out


def check_files(mods):
    """File rings inside each module, from the objects of its libraries."""
    bad = []
    if not BUILD:
        return ["BG_BUILD_DIR is not set: cannot read the objects"]
    seen_objects = 0
    for m, (top, _) in sorted(mods.items()):
        objdir = os.path.join(BUILD, top, m, "CMakeFiles")
        if not os.path.isdir(objdir):
            continue
        objs = []
        for root, _, files in os.walk(objdir):
            objs += [os.path.join(root, f) for f in files if f.endswith(".c.o")]
        defined, undefined = {}, {}
        for o in objs:
            name = os.path.basename(o)[:-2]
            defined[name] = defined_globals(o)
            undefined[name] = calls(o)
        seen_objects += len(objs)
        owner = {}
        for f, syms in defined.items():
            for s in syms:
                owner.setdefault(s, f)
        graph = collections.defaultdict(set)
        why = {}
        for f, syms in undefined.items():
            for s in sorted(syms):
                g = owner.get(s)
                if g and g != f:
                    graph[f].add(g)
                    why.setdefault((f, g), s)
        for comp in sccs(graph):
            edges = [f"{a} calls {why[(a, b)]}() of {b}" for a in comp for b in comp
                     if (a, b) in why]
            bad.append(f"file ring in {top}/{m}: " + ", ".join(comp) + ":\n    " +
                       "\n    ".join(edges))
    if seen_objects == 0:
        bad.append(f"no object files under {BUILD}: build first")
    return bad


def main():
    mods = modules()
    problems = check_folders(mods) + check_plugins(mods) + check_files(mods)
    for p in problems:
        print(p)
    graph, _ = folder_graph(mods)
    print(f"{len(mods)} module folders, {sum(len(v) for v in graph.values())} folder edges; "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
