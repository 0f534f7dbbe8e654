"""The commands that talk to a running server through offerd.client: decide, record,
deploy, versions, activate, rollback and health, and the connection options they share
(--server, TLS, the admin token). gRPC is imported only when one of them runs."""
from __future__ import annotations

import datetime
import os
import sys

from .catalog import folder_error
from .options import address, by_shape, seconds

SHOWN_DIGITS = 12  # of a version's hash in `offerd versions`, more if two versions share them


class Refused(Exception):
    """An option that cannot be used (a TLS file, a catalog folder): one line, exit 2."""


def _rpc(fn):
    """Run a client command: a gRPC error is printed as `offerd: CODE: message` (exit 1);
    options that cannot be used, as one line (exit 2)."""
    def run(args) -> int:
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # gRPC's own log lines would repeat the error below
        import grpc  # only here: `offerd serve` forks its workers before gRPC is loaded

        try:
            return fn(args)
        except grpc.RpcError as e:
            hint = ""
            if e.code() == grpc.StatusCode.UNAVAILABLE and not (args.tls or args.tls_ca or args.tls_server_name):
                hint = " (a server that wants TLS: give --tls-ca)"
            print(f"offerd: {e.code().name}: {e.details()}{hint}", file=sys.stderr)  # a catalog's errors: a line each
            return 1
        except Refused as e:
            print(f"offerd: {e}", file=sys.stderr)
            return 2
    run.__doc__ = fn.__doc__
    return run


def connect(args):
    """A Client for the connection options."""
    from ..client import Client

    if bool(args.tls_cert) != bool(args.tls_key):
        raise Refused("--tls-cert and --tls-key go together (a client certificate and its key)")
    try:
        return Client(args.server, admin_token=args.admin_token, timeout=args.timeout, tls=args.tls,
                      tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
                      tls_server_name=args.tls_server_name)
    except ValueError as e:
        raise Refused(str(e)) from None


@_rpc
def cmd_decide(args) -> int:
    from google.protobuf import json_format

    from ..decide_args import ArgError, inputs
    from ..decide_view import render

    with connect(args) as c:
        try:
            attributes, context = inputs(c, args.attr, args.context, by_shape=by_shape)
        except ArgError as e:
            raise Refused(str(e)) from None
        d = c.decide(args.spaces.split(","), args.contact, anonymous=args.anonymous, attributes=attributes,
                     context=context, max_offers=args.max, dry_run=args.dry_run,
                     explain=args.explain or args.explain_all, explain_all=args.explain_all)
    sys.stdout.write(json_format.MessageToJson(d, indent=2) + "\n" if args.json else render(d))
    return 0


@_rpc
def cmd_record(args) -> int:
    with connect(args) as c:
        changed = c.record(args.proposition, args.status)
    print("recorded" if changed else "already recorded")
    return 0


@_rpc
def cmd_deploy(args) -> int:
    from .. import lang

    try:
        files = lang.read_dir(args.catalog)
    except lang.CatalogError as e:
        if folder_error(e):
            raise Refused(folder_error(e)) from None
        print(f"{e.render()}\n{len(e.errors)} error{'s' if len(e.errors) != 1 else ''}", file=sys.stderr)
        return 1
    with connect(args) as c:
        reply = c.deploy(files, args.label or os.path.abspath(args.catalog))
    for d in reply.diagnostics:
        print(d.rendered, file=sys.stderr)
    print(f"live: {reply.hash}")
    return 0


def shown_digits(hashes: list[str]) -> int:
    """How many leading digits tell these hashes apart: SHOWN_DIGITS, or more."""
    ordered, width = sorted(hashes), SHOWN_DIGITS
    for a, b in zip(ordered, ordered[1:]):
        same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        width = max(width, same + 1)
    return width


@_rpc
def cmd_versions(args) -> int:
    with connect(args) as c:
        versions = c.versions()
    width = shown_digits([v.hash for v in versions])
    for v in versions:
        when = datetime.datetime.fromtimestamp(v.created_us / 1e6, datetime.timezone.utc)
        print(f"{'*' if v.live else ' '} {v.hash[:width]}  {when:%Y-%m-%d %H:%M:%S}Z  {len(v.files)} files  {v.label}")
    return 0


@_rpc
def cmd_activate(args) -> int:
    with connect(args) as c:
        print(f"live: {c.activate(args.hash)}")
    return 0


@_rpc
def cmd_rollback(args) -> int:
    with connect(args) as c:
        print(f"live: {c.rollback()}")
    return 0


@_rpc
def cmd_health(args) -> int:
    with connect(args) as c:
        status = c.health(args.service)
    print(status)
    return 0 if status == "SERVING" else 1


def connection_options(p) -> None:
    """--server, its TLS and the admin token: every command that talks to a server has them."""
    p.add_argument("--server", type=address, default="127.0.0.1:50051", env="OFFERD_SERVER", metavar="HOST:PORT",
                   help="the server's address")
    p.add_argument("--timeout", type=seconds, default="10s", env="OFFERD_TIMEOUT",
                   help="how long a call may take (a deploy, activate or rollback: at least 60s)")
    p.add_argument("--tls", action="store_true", env="OFFERD_TLS",
                   help="TLS, the server verified by the system's CAs (the --tls-* options imply TLS)")
    p.add_argument("--tls-ca", env="OFFERD_TLS_CA", metavar="PEM",
                   help="TLS, the server verified by this CA certificate")
    p.add_argument("--tls-cert", env="OFFERD_TLS_CLIENT_CERT", metavar="PEM",
                   help="a client certificate, for a server that wants one (mTLS); with --tls-key")
    p.add_argument("--tls-key", env="OFFERD_TLS_CLIENT_KEY", metavar="PEM", help="the client certificate's key")
    p.add_argument("--tls-server-name", env="OFFERD_TLS_SERVER_NAME", metavar="NAME",
                   help="the name the server's certificate must carry, when not the address's host")
    p.add_argument("--admin-token", env="OFFERD_ADMIN_TOKEN",
                   help="the server's admin token, sent on AdminService calls")


def add_commands(sub) -> None:
    p = sub.add_parser("decide", help="ask a running server for a decision")
    p.add_argument("spaces", help="space[,space...]")
    p.add_argument("contact", nargs="?", default=None, help="contact id (none: an unknown contact)")
    p.add_argument("--anonymous", action="store_true", help="the id is a visitor id")
    p.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE",
                   help="contact attribute, typed by the live schema (a set or list: a,b,c)")
    p.add_argument("--context", action="append", default=[], metavar="NAME=VALUE", help="context value, likewise")
    p.add_argument("--max", type=int, default=0, help="at most this many offers a space (0: the space's limit)")
    p.add_argument("--dry-run", action="store_true", help="decide, record nothing")
    p.add_argument("--explain", action="store_true",
                   help="every offer's outcome, and for one a rule removed: the rule, its clause not true, "
                        "the values it read, a cap's count")
    p.add_argument("--explain-all", action="store_true", help="--explain, with every rule that removed an offer")
    p.add_argument("--json", action="store_true", help="the answer as protobuf JSON, not a table")
    connection_options(p)
    p.set_defaults(fn=cmd_decide)

    p = sub.add_parser("record", help="report a proposition's status to a running server")
    p.add_argument("proposition", help="the proposition id a decision gave")
    p.add_argument("status", choices=("presented", "accepted", "rejected"))
    connection_options(p)
    p.set_defaults(fn=cmd_record)

    p = sub.add_parser("deploy", help="check a catalog folder and make it live on a running server")
    p.add_argument("catalog", help="folder of *.offer files")
    p.add_argument("--label", default="", help="a note kept with the version (default: the folder's path)")
    connection_options(p)
    p.set_defaults(fn=cmd_deploy)

    p = sub.add_parser("versions", help="list a running server's catalog versions (* live)")
    connection_options(p)
    p.set_defaults(fn=cmd_versions)

    p = sub.add_parser("activate", help="make a saved catalog version live on a running server")
    p.add_argument("hash", help="the version's hash, or a unique prefix of at least 4 hex digits")
    connection_options(p)
    p.set_defaults(fn=cmd_activate)

    p = sub.add_parser("rollback", help="make the version live before the current one live again")
    connection_options(p)
    p.set_defaults(fn=cmd_rollback)

    p = sub.add_parser("health", help="ask a server's gRPC health service: SERVING (exit 0) or NOT_SERVING")
    p.add_argument("--service", default="", help="a service, such as offerd.v1.DecisionService "
                                                 "(default: the whole server)")
    connection_options(p)
    p.set_defaults(fn=cmd_health)
