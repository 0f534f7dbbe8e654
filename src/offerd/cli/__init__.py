"""offerd's command line: check and compile catalogs, serve them, talk to a server.

This module builds the parser from its parts (catalog.py: catalog folders here; serve.py:
a server here; remote.py: a server's calls; casetest.py: a catalog's tests; fmt.py: the
formatter; completion.py) and runs a command, so that a
person never meets a traceback: an unexpected error is one line and exit status 70."""
from __future__ import annotations

import argparse
import os
import sys

from . import casetest, catalog, completion, fmt, remote, serve
from . import lsp
from .options import Parser

UNEXPECTED = 70  # EX_SOFTWARE: offerd failed, not the input


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="offerd", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"offerd {__import__('offerd').__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    catalog.add_commands(sub)
    serve.add_commands(sub)
    remote.add_commands(sub)
    completion.add_commands(sub)
    casetest.add_commands(sub)
    fmt.add_commands(sub)
    lsp.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except BrokenPipeError:  # `offerd compile ... | head`
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if os.environ.get("OFFERD_DEBUG") == "1":
            raise
        text = " ".join(str(e).split()) or type(e).__name__
        print(f"offerd: unexpected error: {type(e).__name__}: {text}; set OFFERD_DEBUG=1 for the traceback",
              file=sys.stderr)
        return UNEXPECTED


if __name__ == "__main__":
    sys.exit(main())
