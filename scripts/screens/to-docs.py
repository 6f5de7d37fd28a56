#!/usr/bin/python3
"""Copy the README's screenshots from an end-to-end run into docs/screens/, made small.

    scripts/screens/to-docs.py [E2E_DIR]        (default: target/e2e)

Takes the shots below from E2E_DIR/<run>/screens/ (written and checked by scripts/e2e-test),
refuses any whose checks did not pass (screens.json), and writes each as a 256-colour PNG
(Pillow, from Debian's python3-pil, which python3-matplotlib brings): text stays sharp at a
quarter of the size. Run it by hand after an end-to-end run whose pictures should replace the
README's; the test command does not change docs/.
"""

import json
import os
import sys

from PIL import Image

# (run, shot name, file in docs/screens/)
PICKED = [
    ("alert", "locust", "locust.png"),
    ("alert", "nginx-webapp", "nginx-webapp.png"),
    ("alert", "prometheus-alert", "prometheus-alert.png"),
    ("alert", "alertmanager-alert", "alertmanager-alert.png"),
    ("alert", "agent", "agent-llm.png"),
    ("events", "agent", "agent-runbook.png"),
]


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    e2e = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "target", "e2e")
    out = os.path.join(root, "docs", "screens")
    os.makedirs(out, exist_ok=True)
    failed = False
    for run, name, target in PICKED:
        screens = os.path.join(e2e, run, "screens")
        try:
            with open(os.path.join(screens, "screens.json"), encoding="utf-8") as f:
                shots = {s["name"]: s for s in json.load(f)}
        except OSError as e:
            print(f"to-docs: {run}: {e}", file=sys.stderr)
            failed = True
            continue
        shot = shots.get(name)
        if not shot or not shot.get("ok"):
            print(f"to-docs: {run}/{name}: not captured or its checks failed: {shot and shot.get('why')}", file=sys.stderr)
            failed = True
            continue
        src = os.path.join(screens, shot["file"])
        dst = os.path.join(out, target)
        img = Image.open(src).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        img.save(dst, optimize=True)
        checks = "; ".join(f"{c['what']}: {c['found']}" for c in shot["checks"])
        print(f"{dst}: {os.path.getsize(src) // 1024} KiB -> {os.path.getsize(dst) // 1024} KiB ({shot['at']}; {checks or 'pixels only'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
