"""The Dockerfile as the tests read it: the last stage's instructions and its environment."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

PATH = Path(__file__).resolve().parent.parent / "Dockerfile"


def final_stage(path: Path = PATH) -> dict[str, list[str]]:
    """Each instruction of the last stage, its arguments joined over continuation lines."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[dict[str, list[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append({})
        elif stages:
            stages[-1].setdefault(word.upper(), []).append(rest.strip())
    return stages[-1]


def environment(stage: dict[str, list[str]]) -> dict[str, str]:
    """ENV's values, as written (no $VARIABLE expanded)."""
    env = {}
    for value in stage.get("ENV", []):
        for pair in shlex.split(value):
            key, _, val = pair.partition("=")
            env[key] = val
    return env
