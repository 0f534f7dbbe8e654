"""`offerd fmt`: ODL files rewritten in their canonical layout (authoring/fmt.py), checked
for it (`--check`, for CI) or shown as a diff; `-` filters standard input (for editors)."""
from __future__ import annotations

import difflib
import os
import sys

from ..authoring.files import write_atomically


def _files(paths: list[str]) -> tuple[list[str], str | None]:
    """The files the paths name (a folder: its *.offer files, in name order), or the one
    line that refuses them."""
    out = []
    for path in paths:
        if path == "-":
            if len(paths) > 1:
                return [], "`-` (standard input) cannot be given with other paths"
            out.append(path)
        elif os.path.isdir(path):
            names = sorted(f for f in os.listdir(path) if f.endswith(".offer"))
            if not names:
                return [], f"{path}: no *.offer files in this folder"
            out += [os.path.join(path, name) for name in names]
        elif not os.path.exists(path):
            return [], f"{path}: no such file or folder"
        elif not path.endswith(".offer"):
            return [], f"{path}: not an .offer file"
        else:
            out.append(path)
    return out, None


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.buffer.read().decode("utf-8")
    with open(path, "rb") as f:
        return f.read().decode("utf-8")


def _lines(text: str) -> list[str]:
    """Lines as ODL and diff count them, ending at \\n only (str.splitlines also ends them at
    a form feed, which ODL reads as a space, and at characters a string may hold)."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def cmd_fmt(args) -> int:
    from ..authoring.fmt import format_source
    from ..lang import CatalogError

    files, refused = _files(args.catalog)
    if refused:
        print(f"offerd: {refused}", file=sys.stderr)
        return 2
    failed = changed = False
    for path in files:
        name = "<stdin>" if path == "-" else path
        try:
            text = _read(path)
        except OSError as e:
            print(f"offerd: cannot read {name}: {e.strerror}", file=sys.stderr)
            failed = True
            continue
        except UnicodeDecodeError as e:
            print(f"offerd: {name}: not valid UTF-8 (byte {e.start})", file=sys.stderr)
            failed = True
            continue
        try:
            out = format_source(text, name)
        except CatalogError as e:
            sys.stderr.write(e.render() + "\n")
            failed = True
            continue
        if path == "-" and not (args.check or args.diff):
            sys.stdout.write(out)
            continue
        if out == text:
            continue
        changed = True
        if args.diff:
            for line in difflib.unified_diff(_lines(text), _lines(out), f"{name} (as written)", f"{name} (formatted)"):
                # a last line without its newline is marked as diff marks it, or it runs into the next
                sys.stdout.write(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
        if args.check:
            if not args.diff:
                print(f"would reformat {name}")
        elif not args.diff:
            try:
                write_atomically(path, out.encode("utf-8"))
            except OSError as e:
                print(f"offerd: cannot write {path}: {e.strerror}", file=sys.stderr)
                failed = True
                continue
            print(f"reformatted {name}")
    return 1 if failed or (args.check and changed) else 0


def add_commands(sub) -> None:
    p = sub.add_parser("fmt", help="lay out .offer files canonically, comments kept; --check for CI")
    # `catalog`, as the other commands name their catalog argument (the CLI walk tests give it one)
    p.add_argument("catalog", nargs="+", metavar="PATH",
                   help=".offer files, or folders of them; - reads standard input and writes standard output")
    p.add_argument("--check", action="store_true", help="write nothing; list the files that would change, exit 1 if any")
    p.add_argument("--diff", action="store_true", help="write nothing; print a unified diff of each change")
    p.set_defaults(fn=cmd_fmt)
