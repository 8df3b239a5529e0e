"""Test-wide settings, applied before anything imports torch or starts a notebook kernel.

The CPU thread count is fixed so that runs are stable on a 2-core machine; notebook kernels inherit these
variables from the pytest process.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")
os.environ.setdefault("RLSURVEY_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the default course never touches the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_MININTERVAL", "5")
