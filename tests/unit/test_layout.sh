#!/usr/bin/env bash
# The layout is the architecture (docs/ARCHITECTURE.md), so it is checked:
# every orchestrator source sits in a floor folder, says its job in its first
# comment and stays under 600 lines (the SDK's sources too); a floor
# includes only itself and the floors below it; there is no include cycle
# between headers and no call cycle between object files (from the symbols
# each .o defines and needs);
# and the forbidden-library headers really stop the pure core's build.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${SAGA_BUILD_DIR:-build}

python3 - "$build" <<'EOF'
import os, re, subprocess, sys
from collections import defaultdict

build = sys.argv[1]
problems = []
# Which floors each floor may include (itself first). sagactl does not see
# the engine: it writes through the store like sagad does.
floors = {
    "core": ["core"],
    "obs": ["obs", "core"],
    "store": ["store", "obs", "core"],
    "engine": ["engine", "store", "obs", "core"],
    "api": ["api", "store", "obs", "core"],
    "sagad": ["sagad", "engine", "api", "store", "obs", "core"],
    "sagactl": ["sagactl", "store", "obs", "core"],
}
MAX_LINES = 600

def check_job(path):
    """One job per file: under MAX_LINES lines, and saying it first."""
    text = open(path, encoding="utf-8").read()
    lines = text.count("\n")
    if path.endswith(".c") and lines > MAX_LINES:
        problems.append(f"{path}: {lines} lines, over {MAX_LINES}: split it by job")
    if not text.startswith("/*"):
        problems.append(f"{path}: does not open with a comment saying its job")


sources = []
for root, _, files in os.walk("orchestrator"):
    for f in sorted(files):
        if f.endswith((".c", ".h")):
            sources.append(os.path.join(root, f))
where = {}  # header basename -> floor
for path in sources:
    parts = path.split(os.sep)
    if len(parts) != 3 or parts[1] not in floors:
        problems.append(f"{path}: not in a floor folder ({', '.join(floors)})")
        continue
    floor = parts[1]
    if path.endswith(".h"):
        where[parts[2]] = floor
    check_job(path)

# The SDK's sources follow the same rules of size and job (it is one floor,
# under the public headers in sdk/include).
for root in ("sdk/src", "sdk/internal"):
    for f in sorted(os.listdir(root)):
        path = os.path.join(root, f)
        if f.endswith((".c", ".h")):
            check_job(path)

includes = defaultdict(set)  # file -> headers (basenames) it includes
for path in sources:
    parts = path.split(os.sep)
    if len(parts) != 3 or parts[1] not in floors:
        continue
    floor = parts[1]
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
        if not m:
            continue
        h = m.group(1)
        if h.startswith("saga/") or h == "saga_shared.h":
            continue  # the SDK's public headers and its one shared header
        if h not in where:
            problems.append(f"{path}:{n}: includes \"{h}\", which is neither an "
                            "orchestrator header nor the SDK's public or shared one")
            continue
        if where[h] not in floors[floor]:
            problems.append(f"{path}:{n}: {floor}/ includes {where[h]}/{h}; "
                            f"{floor}/ may include only {', '.join(floors[floor])}")
        if path.endswith(".h"):
            includes[os.path.basename(path)].add(h)

def cycles(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out

for comp in cycles(includes):
    problems.append("include cycle between headers: " + " <-> ".join(comp))

# Calls between object files: a.o needs a symbol b.o defines.
objs = []
for root, _, files in os.walk(os.path.join(build, "orchestrator")):
    # Only objects of sources that exist (a build may hold stale ones).
    objs += [os.path.join(root, f) for f in files if f.endswith(".o") and
             os.path.exists(os.path.relpath(os.path.join(root, f[:-2] + ".c"), build))]
if not objs:
    problems.append(f"no objects under {build}/orchestrator: build first "
                    "(SAGA_BUILD_DIR names the build)")
defined, needed = {}, defaultdict(set)
for o in objs:
    out = subprocess.run(["nm", o], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) == 2 and f[0] == "U":
            needed[o].add(f[1])
        elif len(f) == 3 and f[1] in "TDBR":
            defined[f[2]] = o
calls = defaultdict(set)
for o, syms in needed.items():
    for s in syms:
        if s in defined and defined[s] != o:
            calls[o].add(defined[s])
rel = lambda o: os.path.relpath(o, build)
for comp in cycles(calls):
    problems.append("call cycle between files: " + " <-> ".join(rel(o) for o in comp))
floor_of = lambda o: rel(o).split(os.sep)[1]
for o, targets in calls.items():
    for t in targets:
        if floor_of(t) not in floors[floor_of(o)]:
            problems.append(f"{rel(o)} calls into {rel(t)}: {floor_of(o)}/ may call only "
                            f"{', '.join(floors[floor_of(o)])}")

if problems:
    print("test_layout: %d problem(s):" % len(problems))
    for p in problems:
        print("  " + p)
    sys.exit(1)
print(f"test_layout: {len(sources)} orchestrator files in {len(floors)} floors, each under "
      f"{MAX_LINES} lines with its job first; includes and calls go downwards only "
      f"({len(objs)} objects, no cycle)")
EOF

# docs/ARCHITECTURE.md must match the tree: every source file it names
# (`engine/saga_engine_replies.c`, `saga_shared.h`, globs too) exists.
python3 - <<'EOF2'
import glob, re, sys
text = open("docs/ARCHITECTURE.md", encoding="utf-8").read()
missing = []
for name in sorted(set(re.findall(r"`([\w./*-]+\.[ch])`", text))):
    roots = ["", "orchestrator/"] if "/" in name else ["orchestrator/*/", "sdk/*/"]
    if not any(glob.glob(root + name) for root in roots):
        missing.append(name)
if missing:
    print("test_layout: docs/ARCHITECTURE.md names files that are not in the tree: "
          + ", ".join(missing))
    sys.exit(1)
EOF2

# The pure core's forbidden headers must stop a build, not just sit there.
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
for h in librdkafka/rdkafka.h libpq-fe.h microhttpd.h; do
    printf '#include <%s>\n' "$h" >"$probe/probe.c"
    if cc -fsyntax-only -Iscripts/forbid/rdkafka -Iscripts/forbid/libpq -Iscripts/forbid/mhd \
        "$probe/probe.c" 2>"$probe/err"; then
        echo "test_layout: including <$h> with the core's include path compiled" >&2
        exit 1
    fi
    grep -q 'this floor must not' "$probe/err" || {
        echo "test_layout: <$h> failed for another reason:" >&2
        cat "$probe/err" >&2
        exit 1
    }
done
grep -q 'NO_KAFKA) $(NO_PQ) $(NO_HTTP) $(CORE_INC)' Makefile || {
    echo "test_layout: the Makefile no longer puts scripts/forbid/ on the core's path" >&2
    exit 1
}
echo "test_layout: <librdkafka/rdkafka.h>, <libpq-fe.h> and <microhttpd.h> fail the core's build; every file docs/ARCHITECTURE.md names exists"
