"""Compile every Triton kernel of rlsurvey for sm_80 and sm_90 without a GPU, and record each one's registers,
shared memory and spills (rlsurvey.kernels.aot). Writes benchmarks/results/kernels_compiled.json.

    python benchmarks/compile_kernels.py
"""

import json
from pathlib import Path

import triton

from rlsurvey.kernels.aot import as_rows, compile_kernels

OUT = Path(__file__).resolve().parent / "results" / "kernels_compiled.json"


def main() -> None:
    rows = as_rows(compile_kernels())
    OUT.write_text(json.dumps({"triton": triton.__version__, "kernels": rows}, indent=1) + "\n")
    spills = [r for r in rows if r["local_bytes"] or r["stack_bytes"]]
    width = max(len(r["kernel"]) for r in rows)
    for r in rows:
        print(
            f"{r['kernel']:{width}} sm_{r['arch']} {r['dtype']:8} V={r['vocab']!s:7} BLOCK={r['block']!s:5} "
            f"warps={r['num_warps']:2} regs={r['registers']:3} shared={r['shared_bytes']:5} "
            f"local={r['local_bytes']}"
        )
    print(f"{len(rows)} compiled kernels, {len(spills)} with spills; wrote {OUT}")


if __name__ == "__main__":
    main()
