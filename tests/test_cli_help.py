"""The command line's own machinery, as a user meets it: --help showing every option's
default and environment variable, shell completion loaded by a real bash, defaults taken
from OFFERD_* variables, the last-resort error line, and both ways to start `offerd`."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from offerd.cli import build_parser
from offerd.cli.options import walk


def offerd(*args, env=None):
    return subprocess.run([sys.executable, "-m", "offerd.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_every_option_of_every_command_shows_its_environment_variable_and_default():
    checked = 0
    for words, p in walk(build_parser()):
        r = offerd(*words, "--help")
        assert r.returncode == 0 and r.stdout.startswith("usage: offerd"), r.stderr
        shown = _flat(r.stdout)
        for a in p._actions:
            if not a.option_strings or a.help == argparse.SUPPRESS:
                continue
            flag = a.option_strings[-1]
            assert flag in shown, (words, flag)
            if getattr(a, "env", None):
                assert f"env {a.env}]" in shown, (words, flag, shown)
                checked += 1
            default = getattr(a, "builtin_default", a.default)
            if default not in (None, False, "", [], argparse.SUPPRESS) and "default" not in (a.help or ""):
                assert f"[default {default}" in shown, (words, flag)
                checked += 1
    assert checked > 40
    r = offerd("serve", "--help")
    assert "--retain RETAIN history kept at least this long, and longer if a rule's window needs it [default 30d; " \
           "env OFFERD_RETAIN]" in _flat(r.stdout)
    assert "--durability {sync,fast} [default sync; env OFFERD_DURABILITY]" in _flat(r.stdout)  # no help of its own


def test_an_environment_variable_sets_a_default_and_a_bad_one_is_refused_like_a_flag(tmp_path):
    """Defaults come from the variables; the help shows the built-in default, never the
    variable's value (it may be a secret)."""
    r = offerd("versions", "--server", "127.0.0.1:1", env={"OFFERD_TIMEOUT": "bogus"})
    assert r.returncode == 2 and "argument --timeout: '" in r.stderr and "give a duration" in r.stderr, r.stderr
    r = offerd("deploy", "--help", env={"OFFERD_ADMIN_TOKEN": "s3cret-value", "OFFERD_SERVER": "127.0.0.1:9"})
    assert "s3cret-value" not in r.stdout and "127.0.0.1:9" not in r.stdout and "[default 127.0.0.1:50051" in r.stdout
    r = offerd("versions", env={"OFFERD_SERVER": "127.0.0.1:1", "OFFERD_TIMEOUT": "5s"})
    assert r.returncode == 1 and "127.0.0.1:1" in r.stderr  # the variable's server was called
    # a variable outside its choices is refused only where it would be used: not when the flag is
    # given (it wins), nor for --help, nor for another command
    r = offerd("serve", "--durability", "sync", "--help", env={"OFFERD_DURABILITY": "SYNC"})
    assert r.returncode == 0 and "--durability" in r.stdout, r.stderr
    r = offerd("serve", "--data", tmp_path / "d", "--listen", "127.0.0.1:1", "--loop", "tokio")
    assert r.returncode == 2 and "invalid choice: 'tokio'" in r.stderr, r.stderr
    r = offerd("check", tmp_path / "none", env={"OFFERD_LOOP": "tokio"})
    assert r.returncode == 1 and "OFFERD_LOOP" not in r.stderr, r.stderr


def _complete(script: str, *words: str) -> list[str]:
    """What bash offers for `offerd WORDS...` (the last word being typed), with the script
    loaded as a user's shell loads it."""
    line = " ".join(("offerd",) + words)
    program = f"""
source {script}
spec=$(complete -p offerd) || exit 3
fn=${{spec#*-F }}; fn=${{fn%% *}}
COMP_WORDS=(offerd {' '.join(repr(w) if w else '""' for w in words)})
COMP_CWORD={len(words)}
COMP_LINE={line!r}
COMP_POINT=${{#COMP_LINE}}
$fn offerd {words[-1] or '""'} {(("offerd",) + words)[-2]}
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_bash_loads_the_completion_script_and_completes_commands_and_options(tmp_path):
    r = offerd("completion", "bash")
    assert r.returncode == 0, r.stderr
    script = tmp_path / "offerd.bash"
    script.write_text(r.stdout)
    assert _complete(str(script), "act") == ["activate"]
    assert _complete(str(script), "ro") == ["rollback"]
    assert _complete(str(script), "serve", "--ret") == ["--retain", "--retry-window"]
    assert _complete(str(script), "health", "--tls-") == ["--tls-ca", "--tls-cert", "--tls-key", "--tls-server-name"]
    assert _complete(str(script), "completion", "") == ["bash", "zsh", "fish"]
    assert set(_complete(str(script), "")) >= {"check", "serve", "decide", "activate", "health", "completion"}


@pytest.mark.parametrize("shell, marker", [("zsh", "#compdef offerd"), ("fish", "complete -c offerd")])
def test_zsh_and_fish_scripts_name_every_command(shell, marker):
    r = offerd("completion", shell)
    assert r.returncode == 0 and marker in r.stdout, r.stderr
    for words, _ in walk(build_parser()):
        if len(words) == 1:
            assert words[0] in r.stdout, (shell, words)


LAST_RESORT = """
import sys
from offerd.cli import catalog, main

def broken(args):
    raise RuntimeError("a bug\\nover two lines")

catalog.cmd_check = broken  # a command failing in a way nothing foresaw
sys.exit(main(["check", "anything"]))
"""


def test_an_unexpected_error_is_one_line_and_exit_70_and_its_traceback_is_there_on_request():
    r = subprocess.run([sys.executable, "-c", LAST_RESORT], capture_output=True, text=True, timeout=60)
    assert r.returncode == 70
    assert r.stderr == ("offerd: unexpected error: RuntimeError: a bug over two lines; set OFFERD_DEBUG=1 for the "
                        "traceback\n")
    r = subprocess.run([sys.executable, "-c", LAST_RESORT], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "OFFERD_DEBUG": "1"})
    assert r.returncode == 1 and "Traceback" in r.stderr and "RuntimeError: a bug" in r.stderr


def test_offerd_starts_as_a_module_and_as_its_entry_point():
    r = offerd("--version")
    assert r.returncode == 0 and r.stdout.startswith("offerd ")
    r = subprocess.run([sys.executable, "-c", "import sys; from offerd.cli import main; sys.exit(main(['--version']))"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("offerd ")
    r = offerd()
    assert r.returncode == 2 and "the following arguments are required: COMMAND" in r.stderr


def test_the_parser_is_built_without_the_language_stage():
    """Usage errors and --help answer without importing the language stage (lark, the
    checker): the command-error walk runs some 200 commands, and a person waits for each."""
    code = ("import sys; from offerd.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith(('offerd.lang', 'lark', 'grpc'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_serve_loads_no_grpc_before_it_forks():
    """`offerd serve` forks its workers before gRPC is loaded: building the parser and the
    commands' modules must not import it."""
    code = ("import sys; from offerd.cli import build_parser; build_parser().parse_args(['serve']); "
            "print(sorted(m for m in sys.modules if m == 'grpc' or m.startswith(('grpc.', 'shtab'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "[]\n", r.stdout + r.stderr
