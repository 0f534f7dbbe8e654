"""The decision engine: eligibility, caps, arbitration, fallback, content, explain, status
reports. Knows nothing of gRPC."""
from ..store import ImpossibleMove, NotFound
from .decide import Engine
from .model import (BadRequest, Decision, EngineError, Explained, NoCatalog, Proposal, Request,
                    SpaceResult, UnknownSpace)

__all__ = ["BadRequest", "Decision", "Engine", "EngineError", "Explained", "ImpossibleMove", "NoCatalog",
           "NotFound", "Proposal", "Request", "SpaceResult", "UnknownSpace"]
