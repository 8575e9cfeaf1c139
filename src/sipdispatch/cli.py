"""The ``sipdispatch`` command line: ``run``, ``dispatcher`` (kamctl's), ``rpc`` (kamcmd's),
``migrate`` (a kamailio.cfg into a configuration) and ``demo``. Options may come before or
after the action; every action has its own ``--help``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sipdispatch import __version__, core_build
from sipdispatch import demo as demo_module
from sipdispatch import migrate as migrate_module
from sipdispatch.admin import TOKEN_ENV
from sipdispatch.config import (
    DEFAULT_CONFIG_FILE,
    Config,
    ConfigError,
    default_config,
    load_config,
)
from sipdispatch.dispatcher.errors import DispatcherError
from sipdispatch.store import StoreError

if TYPE_CHECKING:
    from sipdispatch.dispatcher.destination import Destination
    from sipdispatch.store import Store

"""Read from the working directory by ``run`` when no ``--config`` is given."""


EXIT_BROKEN_PIPE = 141
"""As a process that SIGPIPE ended (128 + 13): the reader of its output went away."""


def _load(path: str | None) -> Config:
    if path is not None:
        return load_config(path)
    if os.path.exists(DEFAULT_CONFIG_FILE):
        return load_config(DEFAULT_CONFIG_FILE)
    return default_config()


def _setup_logging(level: str, fmt: str = "text") -> None:
    from sipdispatch.logs import setup_logging

    setup_logging(level, fmt)


def _cmd_run(args: argparse.Namespace) -> int:
    from sipdispatch.server import run

    config = _load(args.config)
    _setup_logging(config.server.log_level, config.log.format)
    path = args.config
    if path is None and os.path.exists(DEFAULT_CONFIG_FILE):
        path = DEFAULT_CONFIG_FILE
    workers = config.server.worker_count
    if args.standby:
        from sipdispatch.logs import tag_lines
        from sipdispatch.workers import await_assignment

        worker, sockets = await_assignment()
        tag_lines(f"w{worker}")
        return run(config, path, worker, sockets)
    if workers > 1:
        from sipdispatch.workers import supervise

        return supervise(config, path, workers)
    return run(config, path)


# --------------------------------------------------------------------------------------------
# sipdispatch rpc / dispatcher: the operator's commands (kamcmd and kamctl dispatcher)
# --------------------------------------------------------------------------------------------


def _fail(where: str, message: str) -> int:
    """Print one error line and return the failure status."""
    print(f"sipdispatch: {where}: {message}" if where else f"sipdispatch: {message}",
          file=sys.stderr)  # fmt: skip
    return 1


def _admin_target(
    config_path: str | None, url: str | None, token: str | None
) -> tuple[str, str | None, str]:
    """The admin URL and token to use, and where the URL came from: the options, else
    ``SIPDISPATCH_TOKEN`` for the token, else the ``[admin]`` section of the config
    (``./sipdispatch.toml`` or the built-in defaults, as ``run`` reads them)."""
    from sipdispatch.admin import TOKEN_ENV
    from sipdispatch.admin.client import admin_url

    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    if url is not None:
        origin = "given with --admin"
    elif config_path is not None:
        origin = f"from [admin] listen in {config_path}"
    elif os.path.exists(DEFAULT_CONFIG_FILE):
        origin = f"from [admin] listen in ./{DEFAULT_CONFIG_FILE}"
    else:
        origin = f"is the default, no ./{DEFAULT_CONFIG_FILE} here"
    if url is not None and token is not None:
        return url, token, origin
    admin = _load(config_path).admin
    token = token if token is not None else admin.token or None
    return (url or admin_url(admin)), token, origin


def _call_and_print(
    where: str,
    url: str,
    token: str | None,
    method: str,
    params: list[object],
    *,
    as_json: bool,
    timeout: float,
    origin: str = "",
) -> int:
    """Call ``method`` and print the answer as kamcmd does (or as JSON); 0 on success.
    A failure says which admin URL was used, and where it came from."""
    from sipdispatch.admin.client import AdminUnreachable, call, error_line, format_result

    used = f"; admin URL {url} {origin}".rstrip()
    if origin and not origin.startswith("given"):
        used += ", choose another with --admin URL"
    try:
        response = call(url, method, params, token=token, timeout=timeout)
    except AdminUnreachable as exc:
        return _fail(where, f"{exc}{used}")
    error = response.get("error")
    if as_json:
        print(json.dumps(response, indent=2, ensure_ascii=False))
    elif error is None:
        text = format_result(response.get("result"))
        if text:
            print(text)
    if error is not None:
        line = error_line(error)
        if isinstance(error, dict) and error.get("code") == 401:
            line += f" (give the admin token with --token or {TOKEN_ENV}){used}"
        return _fail(where, line)
    return 0


def _cmd_rpc(args: argparse.Namespace) -> int:
    from sipdispatch.admin.client import convert_param

    url, token, origin = _admin_target(args.config, args.admin, args.token)
    params = [convert_param(p) for p in args.params]
    return _call_and_print(
        "rpc", url, token, args.method, params, as_json=args.json, timeout=args.timeout,
        origin=origin,
    )  # fmt: skip


def _add_rpc_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rpc = sub.add_parser(
        "rpc",
        help="call a JSON-RPC method of a running proxy (kamcmd)",
        description="Call a JSON-RPC method on a running proxy and print the result as kamcmd "
        "does, e.g. 'sipdispatch rpc dispatcher.set_state dx 1 sip:mg1:5060'. Parameters that "
        "look like numbers are sent as numbers; prefix s: to send one as text (s:1234). "
        "'sipdispatch rpc system.listMethods' lists the methods, 'sipdispatch rpc "
        "system.methodHelp METHOD' tells what one takes. Options may come anywhere.",
        epilog="The admin URL is --admin, else [admin] listen of --config, else of "
        f"./{DEFAULT_CONFIG_FILE} if present, else the default http://127.0.0.1:5080. A "
        "failure says which URL was used.",
    )
    _add_admin_options(rpc)
    rpc.add_argument(
        "--config",
        metavar="PATH",
        help=f"TOML config to read [admin] from (default ./{DEFAULT_CONFIG_FILE})",
    )
    rpc.add_argument("method", help="e.g. dispatcher.list (system.listMethods lists them)")
    rpc.add_argument("params", nargs="*", metavar="PARAM", help="the method's parameters")
    rpc.set_defaults(func=_cmd_rpc)


_DISPATCHER_ACTIONS = ("add", "show", "rm", "rmset", "rmip", "reload", "dump")


def _int_arg(name: str, text: str, *, hex_ok: bool = False, low: int | None = None) -> int:
    """Parse an integer argument; raises ValueError with the message to print."""
    value: int | None = None
    stripped = text.strip()
    try:
        if hex_ok and stripped[:2].lower() == "0x":
            value = int(stripped[2:], 16)
        elif stripped.isascii() and stripped.lstrip("+-").isdigit():
            value = int(stripped)
    except ValueError:
        value = None
    if value is None:
        form = "a decimal or 0x hex integer" if hex_ok else "an integer"
        raise ValueError(f"bad {name} {text!r}: must be {form}")
    if low is not None and value < low:
        raise ValueError(f"bad {name} {value}: must be >= {low}")
    return value


def _open_store(args: argparse.Namespace) -> Store:
    """The store the options name: ``--list-file``, ``--db-url``, else the config's."""
    from sipdispatch.store import ListFileStore, SqlStore, open_store

    if args.list_file:
        return ListFileStore(args.list_file)
    if args.db_url:
        return SqlStore(args.db_url, args.table or "dispatcher")
    d = _load(args.config).dispatcher
    return open_store(
        list_file=d.list_file,
        db_url=d.db_url,
        table_name=args.table or d.table_name,
        columns=d.columns,
        extra_attrs=d.db_extra_attrs,
    )


_APPLY_HINT = "run 'sipdispatch dispatcher reload' to apply it to a running proxy"


def _show_rows(store: Store, as_json: bool) -> None:
    from sipdispatch.store import ListFileStore

    rows = store.rows()
    id_name = "line" if isinstance(store, ListFileStore) else "id"
    if as_json:
        print(json.dumps([
            {id_name: r.id, "setid": r.setid, "destination": r.destination, "flags": r.flags,
             "priority": r.priority, "attrs": r.attrs, "description": r.description}
            for r in rows
        ], indent=2, ensure_ascii=False))  # fmt: skip
        return
    header = (id_name, "setid", "destination", "flags", "priority", "attrs", "description")
    table = [header] + [
        (str(r.id), str(r.setid), r.destination, str(r.flags), str(r.priority), r.attrs,
         r.description)
        for r in rows
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        print(f"(no destinations in {store.location})")


def _warn_unresolvable(uri: str, flags: int, config_path: str | None = None) -> None:
    """Warn (the row is added all the same) when the destination's host does not resolve
    now: a running proxy would refuse the reload, and one starting would load it IP. A
    host name without a port is located by DNS as the proxy would (the configuration's
    ``[dns]``)."""
    from sipdispatch.dispatcher.listfile import make_destination
    from sipdispatch.dispatcher.states import DS_NODNSARES_DST
    from sipdispatch.store import resolve_host

    if flags & DS_NODNSARES_DST:
        return
    try:
        dest = make_destination(0, uri, flags)
    except DispatcherError:
        return
    try:
        if dest.by_dns:
            _locate_now(dest, config_path)
        else:
            resolve_host(dest.host, dest.port, dest.transport)
    except OSError as exc:
        reason = exc.strerror or str(exc)
    except Exception as exc:  # the DNS lookups' errors
        reason = str(exc) or type(exc).__name__
    else:
        return
    print(
        f"sipdispatch: warning: {dest.host} does not resolve now "
        f"({reason}): a reload will be refused until it does, and a proxy "
        "starting now loads it inactive (IP) and retries it every ping interval",
        file=sys.stderr,
    )


def _locate_now(dest: Destination, config_path: str | None) -> None:
    """Locate ``dest`` by DNS as the proxy would; raises when it does not resolve."""
    from sipdispatch.config import DnsConfig
    from sipdispatch.locator import DnsCache

    try:
        dns = _load(config_path).dns
    except ConfigError:
        dns = DnsConfig()
    DnsCache.for_config(dns).locate_blocking(dest)


def _dispatcher_store_action(args: argparse.Namespace, where: str) -> int:
    from sipdispatch.dispatcher.errors import DispatcherError
    from sipdispatch.store import ListFileStore, StoreError

    try:
        store = _open_store(args)
    except StoreError as exc:
        return _fail(where, str(exc))
    try:
        action = args.action
        if action == "show":
            _show_rows(store, args.json)
            return 0
        if action == "add":
            setid = _int_arg("SETID", args.setid, low=0)
            flags = _int_arg("FLAGS", args.flags, hex_ok=True, low=0)
            priority = _int_arg("PRIORITY", args.priority)
            new_id = store.add(setid, args.uri, flags, priority, args.attrs, args.description)
            what = "line" if isinstance(store, ListFileStore) else "id"
            print(
                f"added {what} {new_id}: set {setid} {args.uri.strip()} flags {flags} "
                f"priority {priority} attrs {args.attrs!r} description {args.description!r} "
                f"in {store.location}"
            )
            print(f"({_APPLY_HINT})")
            _warn_unresolvable(args.uri, flags, args.config)
            return 0
        if action == "rm":
            row_id = _int_arg("ID", args.id)
            count = store.remove(row_id)
            if not count:
                return _fail(where, f"no destination with id {row_id} in {store.location}")
            print(f"removed destination {row_id} from {store.location}")
        elif action == "rmset":
            setid = _int_arg("SETID", args.setid, low=0)
            count = store.remove_set(setid)
            if not count:
                return _fail(where, f"no destination in set {setid} in {store.location}")
            print(f"removed {count} destination(s) of set {setid} from {store.location}")
        elif action == "rmip":
            setid = _int_arg("SETID", args.setid, low=0)
            count = store.remove_ip(args.ip, setid)
            if not count:
                return _fail(where, f"no destination with host {args.ip} in set {setid} "
                             f"in {store.location}")  # fmt: skip
            print(
                f"removed {count} destination(s) with host {args.ip} of set {setid} "
                f"from {store.location}"
            )
        print(f"({_APPLY_HINT})")
        return 0
    except ValueError as exc:  # a bad number on the command line
        return _fail(where, str(exc))
    except (DispatcherError, StoreError) as exc:
        return _fail(where, str(exc))
    finally:
        store.close()


def _cmd_dispatcher(args: argparse.Namespace) -> int:
    where = f"dispatcher {args.action}"
    if args.action in ("reload", "dump"):
        url, token, origin = _admin_target(args.config, args.admin, args.token)
        if args.action == "reload":
            method, params = "dispatcher.reload", []
        else:
            method, params = "dispatcher.list", ([args.mode] if args.mode else [])
        return _call_and_print(
            where, url, token, method, list(params), as_json=args.json, timeout=args.timeout,
            origin=origin,
        )  # fmt: skip
    return _dispatcher_store_action(args, where)


_STORE_OPTIONS = ("config", "db_url", "list_file")

_EPILOG_STORE = (
    "The store is the one the config names ([dispatcher] list_file or db_url; without "
    f"--config, ./{DEFAULT_CONFIG_FILE} if present, else the default SQLite file "
    "./sipdispatch.db), or --db-url / --list-file. These options may come before or after "
    "the action."
)


def _add_store_options(parser: argparse.ArgumentParser, *, here: bool) -> None:
    """--config / --db-url / --list-file / --table, on ``dispatcher`` (``here``) and on
    each action (where they default to nothing, so that the value given before the
    action is kept)."""
    default: object = None if here else argparse.SUPPRESS
    parser.add_argument(
        "--config",
        default=default,
        metavar="PATH",
        help=f"TOML config: its [dispatcher] store and [admin] (default ./{DEFAULT_CONFIG_FILE})",
    )
    parser.add_argument(
        "--db-url", default=default, metavar="URL",
        help="database URL, e.g. mysql://root@127.0.0.1/kamailio or sqlite:///sipdispatch.db",
    )  # fmt: skip
    parser.add_argument(
        "--list-file", default=default, metavar="PATH", help="a Kamailio dispatcher.list file"
    )
    parser.add_argument(
        "--table",
        default=default,
        metavar="NAME",
        help="SQL table name (default: the config's, else dispatcher)",
    )


def _add_admin_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--admin",
        metavar="URL",
        help="admin listener, http://HOST:PORT (default: [admin] listen of the config)",
    )
    parser.add_argument(
        "--token", help=f"admin Bearer token (default: ${TOKEN_ENV}, else the config's)"
    )
    parser.add_argument("--json", action="store_true", help="print the JSON-RPC response as JSON")
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS",
        help="seconds to wait for the answer (default 30)",
    )  # fmt: skip


def _add_dispatcher_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    disp = sub.add_parser(
        "dispatcher",
        help="manage destinations in the store (kamctl dispatcher)",
        description="kamctl's 'dispatcher' commands: edit the destination store the config "
        "names (or --db-url / --list-file), and reload or dump a running proxy. "
        "'sipdispatch dispatcher ACTION --help' tells more about each.",
        epilog=_EPILOG_STORE,
    )
    _add_store_options(disp, here=True)
    actions = disp.add_subparsers(dest="action", required=True, metavar="{" + ",".join(
        _DISPATCHER_ACTIONS) + "}")  # fmt: skip

    def action(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(
            name, help=help_text, description=description, epilog=_EPILOG_STORE
        )
        _add_store_options(parser, here=False)
        return parser

    add = action(
        "add",
        "add a destination",
        "Add a destination to the store, in kamctl's order and with its defaults "
        "(FLAGS 0, PRIORITY 0, ATTRS and DESCRIPTION empty), e.g.: "
        "sipdispatch dispatcher add 1 sip:mg1:5060 0 0 'weight=75' 'Media Gateway 1'. "
        "A running proxy sees it after 'sipdispatch dispatcher reload'. A warning (exit "
        "status 0) says when the host does not resolve now.",
    )
    add.add_argument("setid", metavar="SETID", help="destination set (group) id, >= 0")
    add.add_argument("uri", metavar="URI", help="SIP URI of the destination, e.g. sip:mg1:5060")
    add.add_argument(
        "flags", metavar="FLAGS", nargs="?", default="0",
        help="Kamailio flags, decimal or 0x hex: 1 inactive, 2 trying, 4 disabled, 8 probing, "
        "16 not resolved at load (default 0)",
    )  # fmt: skip
    add.add_argument(
        "priority", metavar="PRIORITY", nargs="?", default="0",
        help="higher is tried first by the priority algorithms (default 0)",
    )  # fmt: skip
    add.add_argument(
        "attrs", metavar="ATTRS", nargs="?", default="",
        help="key=value pairs separated by ;, e.g. 'weight=75;duid=mg1' (default none)",
    )  # fmt: skip
    add.add_argument("description", metavar="DESCRIPTION", nargs="?", default="", help="free text")

    show = action(
        "show",
        "print the stored destinations",
        "Print the store's rows: id (line of a list file), setid, destination, flags, "
        "priority, attrs and description.",
    )
    show.add_argument("--json", action="store_true", help="print them as a JSON array")

    rm = action(
        "rm",
        "delete the destination with this id (list file: line)",
        "Delete one row by its id (the table's id column; in a list file, its line number, "
        "as 'show' prints it).",
    )
    rm.add_argument("id", metavar="ID", help="the id (or line) 'show' prints")
    rmset = action("rmset", "delete every destination of a set", "Delete every row of a set.")
    rmset.add_argument("setid", metavar="SETID", help="destination set (group) id")
    rmip = action(
        "rmip",
        "delete the destinations of a set with this host",
        "Delete the rows of a set whose destination URI has this host (IP or name).",
    )
    rmip.add_argument("ip", metavar="IP", help="host of the destination URIs to delete")
    rmip.add_argument("setid", metavar="SETID", help="destination set (group) id")

    reload = action(
        "reload",
        "make the running proxy reload its destinations (dispatcher.reload)",
        "Ask the running proxy to read its store again (JSON-RPC dispatcher.reload). All or "
        "nothing: a bad row or a host that does not resolve is refused with the reason, and "
        "the running list stays as it was.",
    )
    _add_admin_options(reload)
    dump = action(
        "dump",
        "show the running proxy's destinations (dispatcher.list)",
        "Show the running proxy's sets with state, latency and load (JSON-RPC "
        "dispatcher.list), printed as kamcmd does.",
    )
    dump.add_argument(
        "mode", nargs="?", choices=("short", "full"),
        help="short: URI and FLAGS only; full: every field (default: as Kamailio)",
    )  # fmt: skip
    _add_admin_options(dump)
    disp.set_defaults(func=_cmd_dispatcher)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests)."""
    parser = argparse.ArgumentParser(
        prog="sipdispatch", description="SIP load balancer with Kamailio dispatcher semantics"
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"sipdispatch {__version__} (SIP core {core_build()})",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run the proxy in the foreground",
        description="Run the proxy in the foreground until SIGTERM or Ctrl-C. Without "
        f"--config it reads ./{DEFAULT_CONFIG_FILE} if present, else the built-in defaults "
        "(SIP on udp and tcp 127.0.0.1:5060, admin on 127.0.0.1:5080, destinations in "
        "./sipdispatch.db). It logs on stderr; 'sipdispatch ready: SIP on ...' says every "
        "listener is bound.",
    )
    run.add_argument(
        "--config", metavar="PATH", help=f"TOML config file (default ./{DEFAULT_CONFIG_FILE})"
    )
    # The supervisor of `server.workers > 1` starts its worker processes so: each waits
    # for its index and sockets.
    run.add_argument("--standby", action="store_true", help=argparse.SUPPRESS)
    run.set_defaults(func=_cmd_run)
    _add_dispatcher_parser(sub)
    _add_rpc_parser(sub)
    migrate = sub.add_parser(
        "migrate",
        help="write a sipdispatch configuration from a kamailio.cfg",
        description="Read a kamailio.cfg (its #!define/#!ifdef, include_file, listen=, "
        "modparam of dispatcher, tm and rr, and the routing script's ds_select_dst, "
        "ds_select_domain, ds_select_routes, failure_route with ds_next_dst and ds_mark_dst) "
        "and write the sipdispatch configuration that does the same: each key with the "
        "Kamailio line it came from, what is not carried over as comments saying why. "
        "Behaviour that differs is also a warning on stderr. See docs/kamailio.md.",
        epilog="Exit status 0 when the configuration was written, 1 when kamailio.cfg cannot "
        "be read (the error names file:line).",
    )
    migrate_module.add_arguments(migrate)
    migrate.set_defaults(func=migrate_module.main_from_args)
    demo = sub.add_parser(
        "demo",
        help="the article's story live on loopback: 75/25 split, a gateway dies and comes back",
        description="The whole story on loopback in one process, nothing to set up: a proxy, "
        "two simulated media gateways and a caller; the 75/25 split, MG1 going down and "
        "coming back, MG1 rejecting calls with 404 while MG2 takes them, and a table of "
        "where the calls went. Ctrl-C stops it cleanly.",
    )
    demo_module.add_arguments(demo)
    demo.set_defaults(func=demo_module.main_from_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sipdispatch`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given = [f"--{o.replace('_', '-')}" for o in _STORE_OPTIONS if getattr(args, o, None)]
    if args.command == "dispatcher" and len(given) > 1:
        parser.error(f"dispatcher: {' and '.join(given)} name two stores; give one")
    try:
        status: int = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
    except ConfigError as e:
        print(f"sipdispatch: {e}", file=sys.stderr)
        return 2
    except (DispatcherError, StoreError) as e:
        print(f"sipdispatch: destinations: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `sipdispatch ... | head`: the reader is gone; say nothing, as a shell tool does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as e:
        # Most often a listen address already in use or not on this host.
        print(f"sipdispatch: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status
