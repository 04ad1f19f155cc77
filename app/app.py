"""Web demo of the fake-vs-real ViT detector: ``python app/app.py --detector DIR``.

Also works as the ``app.py`` of a Hugging Face Space (which runs it without arguments, so the
detector folder comes from $FAKEVIT_DETECTOR or defaults to build/detector). See app/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python app/app.py` puts app/ (not the repository) on sys.path; let it find the course's
# `helpers` package in a checkout even when the course was not pip-installed.
REPO_ROOT = Path(__file__).resolve().parents[1]
if (REPO_ROOT / "helpers" / "serving" / "demo.py").is_file() and str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from helpers.serving.demo import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:])  # exits with status 0, or 1 or 2 after one "error: ..." line
