"""Batch rows (DecideRequest.batch): a recorded decision carrying one is made once for its row,
however often and however late it is sent again, whether it proposed something or nothing,
with the retry window off too; a copy gets the first answer back, marked replayed."""
import grpc
import pytest

from offerd.client import Client, decide_request
from offerd.store import Contact
from offerd.v1 import offerd_pb2 as pb
from served import ADULT, Running


def row(contact: str, job: bytes, line: int, attributes=ADULT, spaces=("web_home", "newsletter"),
        **kw) -> pb.DecideRequest:
    request = decide_request(spaces, contact, attributes=attributes, **kw)
    request.batch.CopyFrom(pb.BatchRow(job=job, line=line))
    return request


def ids(answer) -> list[str]:
    return [p.id for s in answer.spaces for p in s.propositions]


@pytest.fixture(params=[600.0, 0.0], ids=["window", "no-window"])
def server(tmp_path, request):
    srv = Running(str(tmp_path), retry_window=request.param)
    yield srv
    srv.stop()


def test_a_row_sent_again_gets_its_first_answer_and_is_recorded_once(server):
    with Client(server.target) as c:
        first = c.decisions.Decide(row("ann", b"job-1", 7), timeout=10)
        again = c.decisions.Decide(row("ann", b"job-1", 7), timeout=10)
        other_line = c.decisions.Decide(row("ann", b"job-1", 8), timeout=10)
        other_job = c.decisions.Decide(row("ann", b"job-2", 7), timeout=10)
    assert ids(first) and all(ids(first)) and not first.replayed
    assert again.replayed and ids(again) == ids(first) and again.time_us == first.time_us
    assert not other_line.replayed and set(ids(other_line)).isdisjoint(ids(first))
    assert not other_job.replayed and set(ids(other_job)).isdisjoint(ids(first))
    history = server.store.read_history(Contact("ann"))
    assert len(history) == len(ids(first)) + len(ids(other_line)) + len(ids(other_job))


def test_a_row_that_proposed_nothing_is_not_decided_again(server):
    nobody = {"age": 5, "country": "XX", "segment": "basic", "cart_total": 0.0}  # the newsletter has no fallback
    with Client(server.target) as c:
        first = c.decisions.Decide(row("kid", b"job-1", 1, nobody, spaces=["newsletter"]), timeout=10)
        again = c.decisions.Decide(row("kid", b"job-1", 1, nobody, spaces=["newsletter"]), timeout=10)
    assert first.spaces[0].space == "newsletter" and not ids(first) and not first.replayed
    assert again.replayed and not ids(again)
    assert server.store.read_history(Contact("kid")) == []


def test_copies_of_a_row_in_one_batch_count_once(server):
    with Client(server.target) as c:
        replies = c.decide_batch([row("bo", b"j", 3), row("bo", b"j", 3), row("cy", b"j", 4)])
    first, copy, other = (r.decision for r in replies)
    assert copy.replayed and ids(copy) == ids(first) and not other.replayed
    assert len(server.store.read_history(Contact("bo"))) == len(ids(first))


@pytest.mark.parametrize("change, message", [
    (lambda r: r.batch.CopyFrom(pb.BatchRow(job=b"", line=1)), "batch.job must be 1 to 32 bytes"),
    (lambda r: r.batch.CopyFrom(pb.BatchRow(job=b"x" * 33, line=1)), "batch.job must be 1 to 32 bytes"),
    (lambda r: r.batch.CopyFrom(pb.BatchRow(job=b"x", line=0)), "batch.line must be 1 or more"),
    (lambda r: setattr(r, "dry_run", True), "a batch row is a recorded decision of a known contact"),
    (lambda r: r.contact.Clear(), "a batch row is a recorded decision of a known contact"),
])
def test_a_malformed_row_is_refused_with_what_to_fix(server, change, message):
    request = row("dee", b"job", 1)
    change(request)
    with Client(server.target) as c, pytest.raises(grpc.RpcError) as e:
        c.decisions.Decide(request, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in e.value.details()


def test_another_contacts_row_under_the_same_job_and_line_is_its_own(server):
    with Client(server.target) as c:
        ann = c.decisions.Decide(row("ann", b"job", 5), timeout=10)
        bob = c.decisions.Decide(row("bob", b"job", 5), timeout=10)
    assert not bob.replayed and set(ids(bob)).isdisjoint(ids(ann))
    assert len(server.store.read_history(Contact("bob"))) == len(ids(bob)) > 0


def test_an_empty_answer_never_replaces_the_answer_a_copy_wrote_first(tmp_path):
    """A copy of a row that proposed nothing keeps its empty answer only if no copy wrote
    one meanwhile (the store's check, in the write's own transaction)."""
    from offerd.store import Store
    with Store(str(tmp_path / "db")) as store:
        readable = lambda value: not value.startswith(b"corrupt")  # noqa: E731
        assert store.put_note(b"batch:j:1", b"first", keep=readable) is None
        assert store.put_note(b"batch:j:1", b"empty", keep=readable) == b"first"
        assert store.note(b"batch:j:1") == b"first"
        store.put_note(b"batch:j:2", b"corrupt")  # an answer that cannot be read is written over
        assert store.put_note(b"batch:j:2", b"empty", keep=readable) is None
        assert store.note(b"batch:j:2") == b"empty"
