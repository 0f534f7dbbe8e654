"""The cluster file: the shards' own addresses, in shard order, and the counter service.

    {"shards": ["10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051"],
     "redis": "10.0.0.9:6379", "secret": "a long random string"}

Every shard reads the same file; `offerd serve --cluster FILE --shard I` says which one it
is. A shard's address is where the others reach it directly (forwarded calls, admin). The
secret marks the calls shards pass to each other, which are answered where they arrive:
a gateway that sent the mark could skip routing and an admin change's fan-out. A file without
"secret" takes it from the environment, OFFERD_CLUSTER_SECRET, so the file can be public (a
Kubernetes ConfigMap) and the secret kept apart (a Secret)."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from .routing import shard_of

MIN_SECRET = 16


class TopologyError(ValueError):
    """A cluster file that cannot be used, with what to fix."""


@dataclass(frozen=True)
class Topology:
    shards: tuple[str, ...]
    redis: str | None  # HOST:PORT; None: total caps are counted per shard (a single-shard cluster only)
    me: int
    secret: str = ""

    @property
    def token(self) -> str:
        """The mark of a call passed from shard to shard (gRPC metadata: ASCII)."""
        return hashlib.sha256(f"offerd-cluster\0{self.secret}\0{self.shards}".encode()).hexdigest()[:32]

    def owner(self, key: str) -> int:
        return shard_of(key, len(self.shards))

    def peers(self) -> list[tuple[int, str]]:
        return [(i, a) for i, a in enumerate(self.shards) if i != self.me]


def _address(value, where: str) -> str:
    if not isinstance(value, str) or ":" not in value or not value.rsplit(":", 1)[1].isdigit():
        raise TopologyError(f"{where} must be HOST:PORT, not {value!r}")
    return value


def load(path: str, me: int) -> Topology:
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except OSError as e:
        raise TopologyError(f"cannot read the cluster file {path}: {e.strerror}") from None
    except ValueError as e:
        raise TopologyError(f"the cluster file {path} is not JSON: {e}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("shards"), list) or not raw["shards"]:
        raise TopologyError(f"the cluster file {path} needs \"shards\": a list of the shards' HOST:PORT, in order")
    unknown = sorted(set(raw) - {"shards", "redis", "secret"})
    if unknown:
        raise TopologyError(f"the cluster file {path} has unknown keys {', '.join(unknown)}: shards, redis and "
                            "secret only")
    secret = raw.get("secret") or os.environ.get("OFFERD_CLUSTER_SECRET", "")
    if not isinstance(secret, str):
        raise TopologyError(f"\"secret\" in the cluster file {path} must be a string")
    shards = tuple(_address(a, f"shard {i} in {path}") for i, a in enumerate(raw["shards"]))
    if len(shards) > 1 and len(secret) < MIN_SECRET:  # an empty one makes a mark anyone can compute
        raise TopologyError(f"the cluster file {path} needs \"secret\" (or OFFERD_CLUSTER_SECRET): at least "
                            f"{MIN_SECRET} characters the shards share, and gateways do not know")
    if len(set(shards)) != len(shards):
        raise TopologyError(f"the cluster file {path} names a shard address twice")
    redis = raw.get("redis")
    if redis is not None:
        _address(redis, f"\"redis\" in {path}")
    elif len(shards) > 1:
        raise TopologyError(f"the cluster file {path} needs \"redis\": HOST:PORT, where the shards count "
                            "total caps together")
    if not 0 <= me < len(shards):
        raise TopologyError(f"--shard {me} is not in the cluster file {path}: shards are 0 to {len(shards) - 1}")
    return Topology(shards, redis, me, secret)
