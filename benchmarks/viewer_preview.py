"""The viewer's preview rate in a real browser, and the README's screenshot of the page.

Runs tests/viewer/test_browser.py's drag test (the system's Chromium drags the head-yaw slider of a running
`aniportrait view` with real mouse events) and keeps what it measured: how many preview images reached the page
per second of dragging.

    python benchmarks/viewer_preview.py [--json benchmarks/results/viewer-preview-2core-epyc.json]
                                        [--screenshot docs/viewer.png]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from aniportrait.machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(ROOT / "benchmarks/results/viewer-preview-2core-epyc.json"))
    parser.add_argument("--screenshot", default=str(ROOT / "docs/viewer.png"))
    parser.add_argument("--note", default="", help="what else ran on the machine, for the record")
    args = parser.parse_args()
    env = {
        **os.environ,
        "ANIPORTRAIT_REQUIRE_BROWSER": "1",
        "ANIPORTRAIT_VIEWER_RATE": os.path.abspath(args.json),
        "ANIPORTRAIT_VIEWER_SCREENSHOT": os.path.abspath(args.screenshot),
    }
    test = (
        "tests/viewer/test_browser.py::test_dragging_a_slider_previews_live_then_shows_the_full_frame_that_render_gives"
    )
    subprocess.run(
        [sys.executable, "-m", "pytest", test, "-q", "-s", "-p", "no:cacheprovider"], cwd=ROOT, env=env, check=True
    )
    result = json.loads(Path(args.json).read_text())
    result.update(cpu=cpu_name(), note=args.note)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['previews_per_second']:.1f} previews per second over a {result['drag_seconds']:.1f} s drag")


if __name__ == "__main__":
    main()
