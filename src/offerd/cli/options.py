"""The command line's option machinery: defaults from OFFERD_* environment variables, the
help formatter that shows each option's default and variable, and the types options are
read as (sizes, durations, counts, times)."""
from __future__ import annotations

import argparse
import copy
import datetime
import os

from ..domain import DURATION_UNITS

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
NO_HELP = "\0"


class Help(argparse.HelpFormatter):
    """Each option's help ends with its built-in default (unless the help says it) and its
    environment variable: `[default 30d; env OFFERD_RETAIN]`."""

    def _format_action(self, action):
        if action.help is None and action.option_strings:  # argparse skips an option without help
            action = copy.copy(action)
            action.help = NO_HELP
        return super()._format_action(action)

    def _get_help_string(self, action):
        text = "" if action.help in (None, NO_HELP) else action.help
        if text is argparse.SUPPRESS or not action.option_strings:
            return text
        notes = []
        default = getattr(action, "builtin_default", action.default)
        if "default" not in text and default not in (None, False, "", [], argparse.SUPPRESS):
            notes.append(f"default {default}".replace("%", "%%"))
        if getattr(action, "env", None):
            notes.append(f"env {action.env}")
        return f"{text} [{'; '.join(notes)}]".strip() if notes else text


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose options may take `env=NAME`: the variable, when set and not
    empty, replaces the default (read by the option's type, so a bad value is the usual
    one-line error); a flag's variable is on for 1, true, yes or on, off for 0, false, no or
    off. A variable that is none of its option's choices, or not one of those words for a
    flag, is refused when its command runs (argparse checks no default against choices)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", Help)
        super().__init__(*args, **kwargs)
        self.bad_env: list[tuple[argparse.Action, str]] = []  # options whose variable is refused, and why

    def add_argument(self, *names, env: str | None = None, **kwargs):
        builtin, bad = kwargs.get("default"), None
        if env and os.environ.get(env, ""):
            value = os.environ[env]
            if kwargs.get("action") == "store_true":
                if value.lower() not in TRUE + FALSE:
                    bad = f"{env}={value!r}: give one of {', '.join(TRUE + FALSE)}"
                kwargs["default"] = value.lower() in TRUE
            else:
                choices = kwargs.get("choices")
                if choices is not None and value not in choices:
                    bad = f"{env}={value!r}: give one of {', '.join(map(str, choices))}"
                kwargs["default"] = value
        action = super().add_argument(*names, **kwargs)
        action.env, action.builtin_default = env, builtin
        if bad:
            self.bad_env.append((action, bad))
        return action

    def parse_known_args(self, args=None, namespace=None):
        namespace, rest = super().parse_known_args(args, namespace)
        for action, bad in self.bad_env:  # this command's own variables: another command's do not stop it
            if getattr(namespace, action.dest, None) == action.default:  # not given on the command line
                self.error(bad)
        return namespace, rest


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command words, parser) of `parser` and of every command and subcommand under it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, path + (name,))


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def size(text: str) -> int:
    """`64M`, `2G`, `1T` or a number of bytes."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        value = int(float(t[:-1] if t[-1:] in _UNITS else t) * _UNITS.get(t[-1:], 1))
    except (ValueError, OverflowError):
        value = 0
    if not 1 << 20 <= value <= 1 << 50:
        raise argparse.ArgumentTypeError(f"{text!r}: give a size from 1M to 1024T, such as 64G or 1T")
    return value


def count(text: str) -> int:
    """A whole number from 0 to 10 million."""
    try:
        value = int(text.strip())
    except ValueError:
        value = -1
    if not 0 <= value <= 10_000_000:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number from 0 to 10000000")
    return value


def positive(text: str) -> int:
    """A whole number from 1 to 10 million."""
    value = count(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number from 1 to 10000000")
    return value


def seconds(text: str) -> float:
    """`90s`, `15m`, `12h`, `30d` or a number of seconds."""
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * DURATION_UNITS[t[-1]] if t[-1:] in DURATION_UNITS else float(t)
    except ValueError:
        value = -1
    if not 0 <= value < 1e10:
        raise argparse.ArgumentTypeError(f"{text!r}: give a duration such as 90s, 15m, 12h or 30d")
    return value


def address(text: str) -> str:
    """HOST:PORT of a server (or a gRPC `unix:` target)."""
    host, colon, port = text.strip().rpartition(":")
    if text.startswith("unix:") or host and colon and port.isdigit() and 0 < int(port) < 65536:
        return text.strip()
    raise argparse.ArgumentTypeError(f"{text!r}: give HOST:PORT, such as 127.0.0.1:50051")


def by_shape(text: str):
    """NAME=VALUE typed by its look, for a server without a Schema call: an int, a float,
    true/false, a date (YYYY-MM-DD), a list (a,b,c), else a string."""
    name, _, value = text.partition("=")
    if not name or not _:
        raise SystemExit(f"offerd: expected NAME=VALUE, got {text!r}")
    for parse in (int, float):
        try:
            return name, parse(value)
        except ValueError:
            pass
    if value in ("true", "false"):
        return name, value == "true"
    try:
        return name, datetime.date.fromisoformat(value)
    except ValueError:
        pass
    return name, value.split(",") if "," in value else value


def when(text: str | None) -> datetime.datetime:
    """--at: an ISO time with a timezone; none: now."""
    if not text:
        return datetime.datetime.now(datetime.timezone.utc)
    try:
        at = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"offerd: --at {text!r} is not an ISO time (2026-11-23T10:00:00Z)") from None
    if at.tzinfo is None:
        raise SystemExit("offerd: --at needs a timezone (an offset or Z)")
    return at
