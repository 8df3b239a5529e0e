"""`python -m rlsurvey.site --out DIR`: build the course site from the executed notebooks."""

from __future__ import annotations

import argparse
import sys

from rlsurvey.site.build import build_site


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlsurvey.site", description=__doc__)
    parser.add_argument("--out", default="site", help="the folder to write the site into (default: site)")
    parser.add_argument(
        "--notebooks", default=None, help="the chapter notebooks' folder (default: notebooks/)"
    )
    args = parser.parse_args(argv)
    report = build_site(args.out, args.notebooks)
    if not report.math:
        print("note: jupyter-server-mathjax is not installed; equations show as TeX", file=sys.stderr)
    for name in report.unexecuted:
        print(f"note: {name} has no outputs yet; its page shows the code only", file=sys.stderr)
    print(f"{len(report.pages)} pages in {report.out}/ in {report.seconds:.1f} s; open {report.pages[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
