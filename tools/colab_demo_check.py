"""One prediction from the demo app (``app/app.py``) through ``gradio_client``; part of ``make test-colab``.

    python tools/colab_demo_check.py DETECTOR WORKDIR

Starts the app on a free loopback port with the detector that lesson 04 saved, fetches the page's
``/config`` (what a browser does first), asks ``/predict`` about one generated image and checks the
answer: two classes whose probabilities sum to 1. Exits 1 if that fails or if the server logged a
warning or a traceback (``WORKDIR/server.log``).
"""

from __future__ import annotations

import re
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # helpers.serving.demo_server runs this checkout's app/app.py

from gradio_client import Client, handle_file  # noqa: E402
from PIL import Image  # noqa: E402

from helpers.serving.demo_server import running_demo  # noqa: E402

TROUBLE = re.compile(r"Warning|Traceback|ERROR", re.I)


def main(argv: list[str]) -> int:
    detector, workdir = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    image = workdir / "gradient.png"
    Image.radial_gradient("L").convert("RGB").save(image)
    with running_demo(detector, workdir, extra_args=["--no-examples"]) as url:
        with urllib.request.urlopen(url + "config", timeout=30) as page:
            assert page.status == 200
        answer = Client(url, verbose=False).predict(handle_file(str(image)), api_name="/predict")
    confidences = {c["label"]: c["confidence"] for c in answer["confidences"]}
    print(f"  /predict answered {confidences}")
    ok = len(confidences) == 2 and abs(sum(confidences.values()) - 1) < 1e-4
    log = (workdir / "server.log").read_text(errors="replace")
    trouble = [line for line in log.splitlines() if TROUBLE.search(line)]
    for line in trouble[:10]:
        print(f"  server log: {line}")
    if not ok:
        print("  the answer is not two probabilities that sum to 1")
    print("  demo app: " + ("passed" if ok and not trouble else f"FAILED (log: {workdir / 'server.log'})"))
    return 0 if ok and not trouble else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
