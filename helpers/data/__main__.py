"""``python -m helpers.data``: make the toy set, download the real one, build a cache."""

from helpers.data.sources import main

raise SystemExit(main())
