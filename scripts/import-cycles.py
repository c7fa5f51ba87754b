#!/usr/bin/env python3
"""import-cycles.py: the import cycles between the crate's source files, read from the code's own
paths. Exits 1 when there is one, so CI can keep the house free of them.

An edge A -> B means that A's non-test code names something defined in B: a `crate::...`,
`super::...` or `self::...` path, or a path through one of A's own child modules (`mod x;` then
`x::Item`). A path is followed through `pub use` re-exports to the file that defines the item,
so `crate::config::KeyConfig` is an edge to src/config/auth.rs, where the struct is, not to
src/config/mod.rs, which only re-exports it. `#[cfg(test)]` items are left out: tests may use
anything. A cycle is a set of files that reach each other (a strongly connected component).

Usage: scripts/import-cycles.py [--edges] [SRC_DIR]     (default: src/ next to this script)
"""

import os
import re
import sys
from collections import defaultdict

ITEM = re.compile(
    r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:async\s+|const\s+|unsafe\s+)*"
    r"(?:fn|struct|enum|trait|type|const|static|mod|union)\s+([A-Za-z_][A-Za-z0-9_]*)",
    re.M,
)
MACRO_DEF = re.compile(r"macro_rules!\s*([A-Za-z_][A-Za-z0-9_]*)")
CHILD_MOD = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", re.M)


def strip_comments_and_strings(text):
    """Code only: comments and string literals become spaces (lengths kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            j = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i : j + 1]))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:]):
            m = re.match(r"'(\\.|[^\\'])'", text[i:])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def strip_test_items(code):
    """Removes every item under `#[cfg(test)]` (to its closing brace or semicolon)."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]", code)
        if not m:
            return code
        i = m.end()
        while i < len(code) and code[i] not in "{;":
            i += 1
        if i < len(code) and code[i] == "{":
            depth = 0
            while i < len(code):
                depth += {"{": 1, "}": -1}.get(code[i], 0)
                i += 1
                if depth == 0:
                    break
        else:
            i += 1
        code = code[: m.start()] + re.sub(r"[^\n]", " ", code[m.start() : i]) + code[i:]


def module_files(src):
    """Module path (tuple of names, () for the crate root) -> file, for lib.rs and main.rs trees."""
    files = {}
    for root, _, names in os.walk(src):
        for name in names:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel in (["lib"], ["main"]):
                module = ()
            elif rel[-1] == "mod":
                module = tuple(rel[:-1])
            else:
                module = tuple(rel)
            if module == () and rel == ["main"]:
                continue  # the binary is a crate of its own; it sees the library from outside
            files[module] = path
    return files


def use_trees(code):
    """Every `use` declaration's tree, expanded to (path, name-as-imported) pairs."""
    pairs = []
    for m in re.finditer(r"\buse\s+([^;]+);", code):
        pairs.extend(expand(m.group(1).replace("\n", " ").strip(), []))
    return pairs


def expand(tree, prefix):
    tree = tree.strip()
    if not tree:
        return []
    if tree.startswith("::"):
        tree = tree[2:]
    depth, split = 0, None
    for i, c in enumerate(tree):
        if c == "{":
            depth += 1
            if depth == 1 and split is None:
                split = i
        elif c == "}":
            depth -= 1
    if split is not None:
        head = [p for p in tree[:split].split("::") if p.strip()]
        inner = tree[split + 1 : tree.rindex("}")]
        out = []
        for part in split_top(inner):
            out.extend(expand(part, prefix + [h.strip() for h in head]))
        return out
    alias = None
    if " as " in tree:
        tree, alias = [t.strip() for t in tree.split(" as ", 1)]
    parts = [p.strip() for p in tree.split("::") if p.strip()]
    if parts and parts[-1] == "self":
        parts = parts[:-1]
    path = prefix + parts
    return [(path, alias or (path[-1] if path else ""))]


def split_top(inner):
    parts, depth, cur = [], 0, ""
    for c in inner:
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    parts.append(cur)
    return parts


class House:
    def __init__(self, src):
        self.files = module_files(src)
        self.code = {}
        self.defined = {}
        self.reexports = {}
        self.children = {}
        for module, path in self.files.items():
            with open(path, encoding="utf-8") as f:
                code = strip_test_items(strip_comments_and_strings(f.read()))
            self.code[module] = code
            self.defined[module] = set(ITEM.findall(code)) | set(MACRO_DEF.findall(code))
            self.children[module] = set(CHILD_MOD.findall(code))
            self.reexports[module] = {}
            for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", code):
                for path_, name in expand(m.group(1).replace("\n", " "), []):
                    self.reexports[module][name] = path_

    def absolute(self, module, path):
        """A path as written in `module`, made absolute; None for paths outside the crate."""
        if not path:
            return None
        head = path[0]
        if head == "crate":
            return list(path[1:])
        if head == "self":
            return list(module) + list(path[1:])
        if head == "super":
            base = list(module)
            rest = list(path)
            while rest and rest[0] == "super":
                base = base[:-1]
                rest = rest[1:]
            return base + rest
        if head in self.children.get(module, ()):
            return list(module) + list(path)
        return None

    def defining_file(self, absolute, seen=None):
        """The module whose file defines what `absolute` names (re-exports followed)."""
        seen = seen or set()
        # The longest prefix that is a module file; the next segment is the item in it.
        for cut in range(len(absolute), -1, -1):
            module = tuple(absolute[:cut])
            if module in self.files:
                break
        else:
            return None
        rest = absolute[cut:]
        if not rest:
            return module
        name = rest[0]
        if name in self.defined[module]:
            return module
        target = self.reexports[module].get(name)
        key = (module, name)
        if target is not None and key not in seen:
            seen.add(key)
            resolved = self.absolute(module, target)
            if resolved is not None:
                return self.defining_file(resolved + rest[1:], seen) or module
        return module

    def edges(self):
        graph = defaultdict(set)
        for module, code in self.code.items():
            targets = set()
            imported = {}
            for path, name in use_trees(code):
                absolute = self.absolute(module, path)
                if absolute is not None:
                    imported[name] = absolute
                    targets.add(self.defining_file(absolute))
            # Paths in expressions and types: crate::x::y, super::x, self::x, child::x, and
            # names brought in by `use` of a module (`use crate::metrics; metrics::request`).
            for m in re.finditer(r"(?<![A-Za-z0-9_:])((?:[A-Za-z_][A-Za-z0-9_]*::)+[A-Za-z_][A-Za-z0-9_]*)", code):
                parts = m.group(1).split("::")
                absolute = self.absolute(module, parts)
                if absolute is None and parts[0] in imported:
                    absolute = imported[parts[0]] + parts[1:]
                if absolute is not None:
                    targets.add(self.defining_file(absolute))
            targets.discard(None)
            targets.discard(module)
            graph[module] |= targets
        return graph


def cycles(graph, nodes):
    """Tarjan's strongly connected components of more than one file."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    show_edges = "--edges" in sys.argv
    src = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    house = House(src)
    graph = house.edges()
    name = lambda m: os.path.relpath(house.files[m], os.path.join(src, ".."))
    if show_edges:
        for module in sorted(graph):
            for target in sorted(graph[module]):
                print(f"{name(module)} -> {name(target)}")
    found = cycles(graph, house.files.keys())
    count = sum(len(t) for t in graph.values())
    print(f"{len(house.files)} files, {count} imports between them, {len(found)} import cycle(s)")
    for i, component in enumerate(found, 1):
        members = set(component)
        print(f"cycle {i}: {len(component)} files")
        for module in component:
            inside = sorted(name(t) for t in graph[module] if t in members)
            print(f"  {name(module)} -> {', '.join(inside)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
