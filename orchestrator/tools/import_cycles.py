#!/usr/bin/env python3
"""Import graph of orchestrator/src (file level: `use crate::a::b` -> the file of a/b) and its cycles."""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else 'orchestrator/src'
files = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'):
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)[:-3]
            mod = rel.replace(os.sep, '::')
            mod = re.sub(r'(::)?mod$', '', mod)
            if mod in ('lib', 'main'): mod = ''
            files[mod] = rel
def resolve(path):
    parts = path.split('::')
    while parts:
        m = '::'.join(parts)
        if m in files: return m
        parts.pop()
    return None
edges = {m: set() for m in files}
for m, rel in files.items():
    src = open(os.path.join(root, rel + '.rs')).read()
    src = re.sub(r'#\[cfg\(test\)\]\s*mod tests \{.*', '', src, flags=re.S)
    base = m.split('::') if m else []
    if not rel.endswith('mod') and base: parent = base[:-1]
    else: parent = base
    for u in re.findall(r'\buse\s+((?:crate|super)(?:::\w+)+|(?:crate|super)::\{[^;]*\})', src) + re.findall(r'\b(crate(?:::\w+)+)', src):
        for item in re.split(r'[{},\s]+', u):
            pass
        head, _, rest = u.partition('::{')
        targets = [head] if not rest else [head + '::' + t.strip().split(' ')[0] for t in re.split(r',\s*', rest.rstrip('}')) if t.strip()]
        for t in targets:
            t = t.replace('::self', '')
            segs = t.split('::')
            if segs[0] == 'crate': full = segs[1:]
            else:
                full = list(parent); i = 0
                while i < len(segs) and segs[i] == 'super':
                    full = full[:-1] if i else full; i += 1
                full += segs[i:]
            r = resolve('::'.join(full))
            if r is not None and r != m and r != '': edges[m].add(r)
# cycles via Tarjan
idx, low, st, on, out, n = {}, {}, [], set(), [], [0]
def sc(v):
    idx[v] = low[v] = n[0]; n[0] += 1; st.append(v); on.add(v)
    for w in edges[v]:
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: out.append(comp)
sys.setrecursionlimit(10000)
for v in edges:
    if v not in idx: sc(v)
# top-level modules too
top = {}
for m, ts in edges.items():
    a = m.split('::')[0]
    for t in ts:
        b = t.split('::')[0]
        if a != b: top.setdefault(a, set()).add(b)
def reach(a, b, seen=()):
    return any(x == b or (x not in seen and reach(x, b, seen + (x,))) for x in top.get(a, ()))
top_cycles = sorted({tuple(sorted((a, b))) for a in top for b in top[a] if reach(b, a)})
for comp in out: print('file cycle:', ' '.join(sorted(comp)))
for c in top_cycles: print('module cycle:', ' <-> '.join(c))
print('saga -> orders imports:', sorted(t for m in edges if m.startswith('saga') for t in edges[m] if t.startswith('orders')))
print('no cycle' if not out and not top_cycles else 'CYCLES FOUND')
