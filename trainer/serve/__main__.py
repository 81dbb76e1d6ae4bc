"""``python -m trainer.serve BUNDLE [--host 127.0.0.1 --port 8000]``: serve an export bundle.

Binds the loopback address unless told otherwise. ``--max-inflight-bytes`` bounds the request
bodies held at once (``SERVE_MAX_INFLIGHT_BYTES``) and ``--body-timeout`` how long one may take
to arrive (``SERVE_BODY_TIMEOUT``). A folder that is not a bundle, or a setting that is not a
positive number, is one line and exit code 2. Imports no torch: the server starts in about a
second.
"""

from __future__ import annotations

import sys

from trainer.errors import TrainerError
from trainer.export.runtime.server import BundleError, parser, serve
from trainer.utils.entry import run_reporting_errors


class ServeError(TrainerError):
    """The bundle to serve is missing or unusable."""


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        serve(args)
    except BundleError as err:
        raise ServeError(str(err)) from err


if __name__ == "__main__":
    run_reporting_errors(main, sys.argv[1:])
