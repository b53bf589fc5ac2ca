"""The public op API: importing it needs no GPU (its dispatch to the chosen implementation is tested in
``tests/kernels/test__registry.py``, with the registry that resolves it)."""

import os
import subprocess
import sys


def test_ops_import_needs_no_gpu():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    subprocess.run([sys.executable, "-c", "import aniportrait.ops"], check=True, env=env)
