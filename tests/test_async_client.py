"""AsyncClient has every call Client has, with the same parameters, and each works against a
real server (docs/api.md says so)."""
from __future__ import annotations

import asyncio
import inspect

import grpc
import pytest

from offerd import lang
from offerd.client import AsyncClient, Client, decide_request
from offerd.examples import CATALOG
from offerd.v1 import offerd_pb2 as pb

from served import ADULT, Running

EXAMPLE = lang.read_dir(CATALOG)
CONTEXT = {"page": "home", "device": "mobile"}


def calls(cls) -> set[str]:
    return {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}


def test_async_client_has_every_call_of_client_with_its_parameters():
    assert calls(Client) == calls(AsyncClient)
    assert {"decide_batch", "record", "schema", "upsert_profile", "get_profile", "validate", "deploy", "versions",
            "activate", "simulate", "rollback", "health"} <= calls(AsyncClient)
    for name in calls(Client):
        sync, async_ = inspect.signature(getattr(Client, name)), inspect.signature(getattr(AsyncClient, name))
        assert set(sync.parameters) <= set(async_.parameters), name
        streams = name in ("simulate", "decide_stream", "decide_batch_stream")  # async iterators, not coroutines
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)) != streams, name
    assert set(inspect.signature(Client).parameters) == set(inspect.signature(AsyncClient).parameters)


class Seen:
    """The client, noting which of its calls were made."""

    def __init__(self, client):
        self.client, self.names = client, set()

    def __getattr__(self, name):
        self.names.add(name)
        return getattr(self.client, name)


async def _every_call(target: str) -> set[str]:
    other = dict(EXAMPLE, **{"zz.offer": "let async_twin = 1\n"})
    async with AsyncClient(target, admin_token="t") as client:
        c = Seen(client)
        assert await c.health() == "SERVING"
        assert await c.health("offerd.v1.AdminService") == "SERVING"
        live = (await c.schema()).catalog
        assert len(live) == 64
        await c.upsert_profile("ana", {"age": 41, "country": "SE"})
        assert (await c.get_profile("ana")).attributes["age"].int_value == 41
        d = await c.decide(["web_home"], "ana", attributes=ADULT, context=CONTEXT)
        pid = d.spaces[0].propositions[0].id
        assert await c.record(pid, "presented") is True
        assert await c.record(pid, "presented") is False
        replies = await c.decide_batch([decide_request(["web_home"], f"b{i}", attributes=ADULT, context=CONTEXT,
                                                       dry_run=True) for i in range(3)])
        assert [r.WhichOneof("reply") for r in replies] == ["decision"] * 3

        async def requests():
            for i in range(2):
                yield decide_request(["web_home"], f"s{i}", attributes=ADULT, context=CONTEXT, dry_run=True)
        assert len([r async for r in c.decide_stream(requests())]) == 2

        async def batches():
            yield pb.DecideBatchRequest(requests=[decide_request(["web_home"], "x", attributes=ADULT, dry_run=True)])
        assert [len(b.replies) async for b in c.decide_batch_stream(batches())] == [1]
        assert (await c.validate(other)).ok
        assert not (await c.validate({"a.offer": "offer {"})).ok
        deployed = (await c.deploy(other, "async")).hash
        assert {v.hash: v.live for v in await c.versions()} == {live: False, deployed: True}
        assert await c.activate(live[:6]) == live
        assert await c.rollback() == deployed
        replies = [r async for r in c.simulate(["web_home"], b'{"id": "p", "age": 30}\n', version=live[:8])]
        assert replies[-1].WhichOneof("kind") == "report_json" and live in replies[-1].report_json
        with pytest.raises(grpc.RpcError) as e:
            await c.activate("0000")
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        await c.close()
    return c.names


def test_every_async_call_works_against_a_real_server(tmp_path):
    s = Running(str(tmp_path / "data"), admin_token="t")
    try:
        made = asyncio.run(_every_call(s.target))
    finally:
        s.stop()
    assert made == calls(AsyncClient), calls(AsyncClient) - made  # a new call is exercised here too
