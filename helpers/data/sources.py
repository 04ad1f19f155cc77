"""The course's datasets by name (:func:`get_dataset`), and the ``python -m helpers.data`` command line:

python -m helpers.data make-toy --out data/toy [--images-per-class N --image-size S --seed K]
python -m helpers.data download --out data/fake_or_real [--max-side 256]
python -m helpers.data cache --data data/toy [--size 64]"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from helpers import _cli as cli
from helpers import course
from helpers._files import read_marker
from helpers.data.cache import build_image_cache
from helpers.data.fake_or_real import (
    PREPARED_SIDE,
    count_images,
    download_fake_or_real,
    original_fake_or_real,
    prepared_fake_or_real,
)
from helpers.data.toy import IMAGES_PER_CLASS, make_toy_dataset


def get_dataset(name: str, root: str | os.PathLike | None = None, **kwargs: Any) -> Path:
    """The image folder of ``"toy"`` (``kwargs`` for ``make_toy_dataset``) or ``"fake_or_real"`` (the prepared
    copy; ``max_side=None``: the originals), made or downloaded into ``data/<name>``. Lessons 03-06."""
    if name == "toy":
        root = Path(root) if root is not None else course.data_dir() / "toy"
        before, start = read_marker(root), time.perf_counter()
        path = make_toy_dataset(root, **kwargs)
        if read_marker(path) != before:  # made now, not reused
            print(f"Made the toy dataset in {path} ({time.perf_counter() - start:.1f} s).")
        return path
    if name == "fake_or_real":
        root = Path(root) if root is not None else course.data_dir() / "fake_or_real"
        max_side = kwargs.pop("max_side", PREPARED_SIDE)
        if max_side is None:
            return original_fake_or_real(root, **kwargs)
        return prepared_fake_or_real(root, max_side, **kwargs)
    raise ValueError(f"Unknown dataset {name!r}; valid names are 'toy' and 'fake_or_real'.")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see :mod:`helpers._cli`)."""
    parser = cli.ArgumentParser(
        prog="python -m helpers.data",
        description="Make the toy dataset, download the Fake or Real dataset, or cache an image folder.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    toy = commands.add_parser("make-toy", help="write the toy dataset (seconds)")
    toy.add_argument("--out", type=Path, default=None, help="folder to write (default: data/toy)")
    toy.add_argument("--images-per-class", type=int, default=IMAGES_PER_CLASS)
    toy.add_argument("--image-size", type=int, default=64)
    toy.add_argument("--seed", type=int, default=0)
    download = commands.add_parser("download", help="download and extract the Fake or Real dataset (~9 GB)")
    download.add_argument("--out", type=Path, default=None, help="folder (default: data/fake_or_real)")
    download.add_argument("--max-side", type=int, default=None, help="also the prepared copy at N px")
    cache = commands.add_parser("cache", help="decode an image folder once into its image cache")
    cache.add_argument("--data", type=Path, required=True, help="image folder (fake_images/, real_images/)")
    cache.add_argument("--size", type=int, default=PREPARED_SIDE, help="cached images' shorter side, px")
    args = parser.parse_args(argv)
    if args.command == "cache" and not args.data.is_dir():
        parser.error(f"--data {args.data}: no such folder; give the image folder to cache")
    # RuntimeError: the download failed; ValueError: a folder without the two classes of images
    return cli.run(lambda: run(args), expected=(RuntimeError, ValueError))


def run(args: argparse.Namespace) -> int:
    """Run the parsed command; returns 0."""
    if args.command == "make-toy":
        out = args.out or course.data_dir() / "toy"
        start = time.perf_counter()
        make_toy_dataset(out, args.images_per_class, args.image_size, args.seed)
        print(f"{out}: {2 * args.images_per_class} images ready in {time.perf_counter() - start:.1f} s")
    elif args.command == "download":
        out = args.out or course.data_dir() / "fake_or_real"
        data = download_fake_or_real(out, max_side=args.max_side)
        print(f"{data}: {count_images(data)} images ready")
    else:  # cache; a full disk: helpers._files.DiskSpaceError, a RuntimeError
        folder = build_image_cache(args.data, args.size)
        print(f"{folder}: image cache at {args.size} px ready; loaders of {args.data} now read it")
    return 0
