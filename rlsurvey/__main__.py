"""`python -m rlsurvey ...`, the same as the `rlsurvey` command (see `rlsurvey.cli`)."""

import sys

from rlsurvey.cli import main

if __name__ == "__main__":
    sys.exit(main())
