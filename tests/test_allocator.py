"""The allocator policy: freed large tensors are reused instead of faulted in again."""

import subprocess
import sys

import pytest

from aniportrait import allocator

# Allocates and frees a 64 MB tensor ten times (after a first one) and prints the minor page faults that took.
SNIPPET = """
import resource, sys, torch
from aniportrait.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.ones(1 << 24)
before = faults()
for _ in range(10):
    torch.ones(1 << 24)
print(faults() - before)
"""


def _faults(policy: str) -> int:
    out = subprocess.run([sys.executable, "-c", SNIPPET, policy], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not allocator.keep_freed_memory(), reason="needs glibc's mallopt")
def test_large_tensors_fault_fewer_pages_in():
    assert allocator.keep_freed_memory()  # idempotent
    # glibc's default maps and unmaps every 64 MB block: each one faults in all of its 16,384 pages again.
    system, keep = _faults("system"), _faults("keep")
    assert keep < 0.9 * system, (keep, system)


def test_elsewhere_it_does_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False


def test_the_command_line_applies_it(monkeypatch):
    from click.testing import CliRunner

    from aniportrait.cli import main

    calls = []
    monkeypatch.setattr("aniportrait.cli.keep_freed_memory", lambda: calls.append(1) or True)
    assert CliRunner().invoke(main, ["info"]).exit_code == 0
    assert calls == [1]
