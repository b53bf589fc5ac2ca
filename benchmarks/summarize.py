"""Print a Markdown table from a pytest-benchmark JSON written by ``pytest benchmarks --benchmark-json F``.

Usage: ``python benchmarks/summarize.py benchmarks/results/<gpu>.json``
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def summarize(path: str) -> str:
    with open(path) as f:
        data = json.load(f)
    rows: dict[str, dict[str, dict]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        rows[bench["group"]][bench["extra_info"]["provider"]] = bench
    gpu = next(iter(data["benchmarks"]))["extra_info"]["gpu"] if data["benchmarks"] else "?"
    lines = [
        f"GPU: {gpu}; median times; GB/s counts each input and output once; copy = measured D2D copy bandwidth.",
        "",
        "| case | ref ms | triton ms | speed-up | ref peak MiB | triton peak MiB | triton GB/s | of copy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for group in sorted(rows):
        ref, tri = rows[group].get("ref"), rows[group].get("triton")
        if not (ref and tri):
            continue
        info = tri["extra_info"]
        lines.append(
            f"| {group} | {ref['stats']['median'] * 1e3:.3f} | {tri['stats']['median'] * 1e3:.3f} "
            f"| {ref['stats']['median'] / tri['stats']['median']:.1f}x | {ref['extra_info']['peak_mib']:.0f} "
            f"| {info['peak_mib']:.0f} | {info['achieved_gbps']:.0f} | {info['fraction_of_copy']:.0%} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/summarize.py RESULTS.json")
    print(summarize(sys.argv[1]))
