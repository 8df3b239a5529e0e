#!/usr/bin/env bash
# The GPU check of the kernels, in one command and at most 8 minutes on an H100 or H200:
#   1. the GPU tests (tests/test_kernels_gpu.py and every test marked gpu), with a results JSON;
#   2. benchmarks/bench_kernels.py, which writes kernels_<gpu>.json and kernels_<gpu>.png with the goals
#      (bandwidth, against TRL's fused kernel, against eager) computed from the measurements.
# Everything goes to benchmarks/results/, named after the GPU. Usage, from anywhere:
#   bash benchmarks/gpu.sh            # full benchmark
#   bash benchmarks/gpu.sh --quick    # the smallest shapes only
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "benchmarks/gpu.sh: no CUDA device visible to $PY; nothing measured" >&2
  exit 2
fi
GPU=$("$PY" -c "import torch; n = torch.cuda.get_device_name(); print(''.join(c if c.isalnum() else '_' for c in n).strip('_').lower())")
OUT=benchmarks/results
mkdir -p "$OUT"
start=$(date +%s)

# 1. GPU tests (3 minutes at most), summarised as JSON
timeout 180 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/ --junitxml="$OUT/gpu_tests_$GPU.xml"
tests_rc=$?
"$PY" - "$OUT/gpu_tests_$GPU.xml" "$OUT/gpu_tests_$GPU.json" "$tests_rc" <<'PYEOF'
import json, sys
from xml.etree import ElementTree
xml, out, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    cases = list(ElementTree.parse(xml).getroot().iter("testcase"))
except (FileNotFoundError, ElementTree.ParseError):
    cases = []
def outcome(c):
    for tag in ("failure", "error", "skipped"):
        if c.find(tag) is not None:
            return tag
    return "passed"
rows = [{"test": f"{c.get('classname')}::{c.get('name')}", "outcome": outcome(c), "seconds": float(c.get("time", 0))}
        for c in cases]
counts = {k: sum(r["outcome"] == k for r in rows) for k in ("passed", "failure", "error", "skipped")}
json.dump({"exit_code": rc, "counts": counts, "tests": rows}, open(out, "w"), indent=1)
print("GPU tests:", counts, "exit code", rc)
PYEOF
rm -f "$OUT/gpu_tests_$GPU.xml"

# 2. the benchmark, in the time that is left of 8 minutes
left=$((480 - ($(date +%s) - start)))
timeout "$left" "$PY" benchmarks/bench_kernels.py "$@"
bench_rc=$?
echo "benchmarks/gpu.sh: tests exit $tests_rc, benchmark exit $bench_rc, $(( $(date +%s) - start )) s"
[ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]
