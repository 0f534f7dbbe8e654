"""`offerd completion bash|zsh|fish`: a shell completion script, generated from the parser
by shtab, so that every command and option completes as the parser has it."""
from __future__ import annotations

import argparse
import sys

SHELLS = ("bash", "zsh", "fish")
FOLDERS = {"catalog", "dest", "--catalog", "--data", "--dir", "--compare"}  # complete folder names
FILES = {"--population", "--out", "--json", "--html", "--cluster", "--tls-ca", "--tls-cert", "--tls-key",
         "--client-ca"}


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    import shtab

    from .options import walk

    for _, p in walk(parser):
        for action in p._actions:
            names = set(action.option_strings) or {action.dest}
            if names & FOLDERS:
                action.complete = shtab.DIRECTORY
            elif names & FILES:
                action.complete = shtab.FILE
    return shtab.complete(parser, shell)


def cmd_completion(args) -> int:
    from . import build_parser

    sys.stdout.write(script(build_parser(), args.shell))
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("completion", help="print a shell completion script (bash, zsh or fish)",
                       description="Print a completion script for the shell: bash: "
                                   "`source <(offerd completion bash)`; zsh: `offerd completion zsh > "
                                   "~/.zfunc/_offerd`; fish: `offerd completion fish > "
                                   "~/.config/fish/completions/offerd.fish`.")
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(fn=cmd_completion)
