"""How the course's command lines fail: ONE ``error: ...`` line, status 2 for a usage error, 1 for a failure
the user can fix; a bug keeps its traceback."""

from __future__ import annotations

import argparse
import errno
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from helpers._files import existing_parent

RUNTIME_ERROR = 1
USAGE_ERROR = 2


class CommandError(Exception):
    """An expected failure: ``str(error)`` is printed as one ``error:`` line, ``status`` is the exit code."""

    def __init__(self, message: str, status: int = RUNTIME_ERROR):
        super().__init__(message)
        self.status = status


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, with a usage error printed as one line (argparse prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"error: {one_line(message)} (`{self.prog} --help` lists the options)\n")


def one_line(text: object) -> str:
    """``text`` with its line breaks and runs of spaces turned into single spaces."""
    return " ".join(str(text).split())


def describe_os_error(error: OSError) -> str:
    """What went wrong with a file, and what to do, in one sentence."""
    where = error.filename if error.filename is not None else "a file"
    if error.errno == errno.ENOSPC:
        return f"no space left on the disk holding {where}: free some space"
    if error.errno == errno.EROFS:
        return f"cannot write {where}: it is on a read-only file system; write to another folder"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"cannot write or read {where}: permission denied; use a folder you own"
    return f"{where}: {error.strerror or error}"


def run(command: Callable[[], int], *, expected: tuple[type[BaseException], ...] = ()) -> int:
    """``command()``'s exit status; :class:`CommandError` keeps its own, ``OSError`` and ``expected`` give 1,
    Ctrl-C 130, each printed as one line. Other exceptions propagate."""
    try:
        return command()
    except OSError as error:
        print(f"error: {one_line(describe_os_error(error))}", file=sys.stderr)
        return RUNTIME_ERROR
    except (CommandError, *expected) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return error.status if isinstance(error, CommandError) else RUNTIME_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def check_output_folder(out: Path, needed: int) -> None:
    """Refuse, before training, an ``--out`` that cannot be written or has less than ``needed`` bytes free
    (creates nothing: a temporary file in its nearest existing folder, deleted at once)."""
    existing = existing_parent(out)
    if not existing.is_dir():
        raise CommandError(f"--out {out}: {existing} is a file, not a folder; choose another --out", 2)
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        reason = f"cannot write into {existing} ({err.strerror or err}); choose a folder you can write to"
        raise CommandError(f"--out {out}: {reason}", 2) from err
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise CommandError(
            f"--out {out}: its disk has {free / 1e9:.2f} GB free, but this run needs about "
            f"{needed / 1e9:.2f} GB there (each epoch's training state is written before the last one is "
            "deleted, then the detector); free some space or choose another --out"
        )
