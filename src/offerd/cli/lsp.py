"""`offerd lsp`: the language server for editors, over standard input and output."""
from __future__ import annotations

import sys


def cmd_lsp(args) -> int:
    try:
        import pygls  # noqa: F401
    except ImportError:
        print("offerd: the language server needs pygls: pip install 'offerd[lsp]'", file=sys.stderr)
        return 2
    from ..authoring.lsp.server import create

    server = create()
    server.start_io()  # returns at the client's `exit` or at the end of standard input
    return 1 if server.exit_asked and not server.shutdown_asked else 0


def add_commands(sub) -> None:
    p = sub.add_parser("lsp", help="run the language server for editors (LSP over standard input and output)",
                       description="Run the ODL language server: an editor starts it and talks LSP over "
                                   "standard input and output. Each opened *.offer file's folder is its "
                                   "catalog. Needs the lsp extra: pip install 'offerd[lsp]'.")
    p.add_argument("--stdio", action="store_true",
                   help="talk over standard input and output (the only way; editors' clients pass it)")
    p.set_defaults(fn=cmd_lsp)
