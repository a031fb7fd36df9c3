"""``edgelab serve``: the lab in a browser, through textual-serve.

Each browser tab that opens the page gets a lab of its own: ``python -m edgelab`` with the flags
given here (``--runtimes``, ``--theme``, ``--workload``, ``--screenshots``, ``--exports``,
``--no-history``: each tab's runs go into the history, as the lab's in a terminal do), run
under Textual's web driver, its screen drawn by xterm.js in the page. The lab is the same
program a person runs in a terminal, so its guarantees hold unchanged: a closed tab quits it,
and ctrl+c, SIGTERM or SIGHUP here stops the server and then every lab it started (SIGTERM to
each, which unwinds like ctrl+c and removes what it started; SIGKILL to one still running after
``LAB_STOP_S``, after which its session watchdog removes the rest).

Nothing is fetched from elsewhere: textual-serve ships its JavaScript, CSS and font in the
wheel, and its page template's one outside link (a web-font stylesheet) is replaced by the
template in ``edgelab/serve_static/templates``, which loads that same font from this server.
The page's URLs are built from the Host the browser asked for, so every request goes back to
the host and port the page came from. The lab's websocket refuses a page from another origin
(a web page elsewhere could otherwise open it and run workloads on this machine).

The port is bound before anything starts (a port in use is one line and exit 2), and
``--port 0`` takes a free one (the URL printed says which).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import functools
import ipaddress
import logging
import os
import shlex
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from edgelab.errors import EdgelabError, UsageError

if TYPE_CHECKING:
    from aiohttp import web

#: How long a lab has, after SIGTERM, to remove what it started before it is killed: the
#: lab's own forced exit comes at 4 s (edgelab.cli.FORCED_EXIT_S); this leaves it room.
LAB_STOP_S = 6.0
#: Our page template (textual-serve's, minus its outside font link).
TEMPLATES = Path(__file__).resolve().parent / "serve_static" / "templates"
LOG = logging.getLogger("edgelab.serve")


def add_parser(sub: Any) -> None:
    """``edgelab serve``'s flags (cli.py calls this: the flags live beside their command).

    The lab's own flags default to SUPPRESS, so ``edgelab --theme light serve`` (the lab's
    flags before the command) and ``edgelab serve --theme light`` mean the same."""
    serve = sub.add_parser(
        "serve",
        help="the lab in a browser (textual-serve): every tab gets a lab of its own",
        description="Serve the lab over HTTP: each browser tab that opens the URL runs its own\n"
        "lab (python -m edgelab with the flags below). ctrl+c or SIGTERM stops the server\n"
        "and every lab it started. Nothing on the page comes from another host.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=_port, default=8000, help="TCP port (default 8000; 0: any free port)")
    suppress = argparse.SUPPRESS
    serve.add_argument("--runtimes", "-r", metavar="RUNGS", default=suppress, help="the labs' panels (as edgelab --runtimes)")
    serve.add_argument("--theme", choices=("dark", "light"), default=suppress, help="the labs' colour theme")
    serve.add_argument("--workload", default=suppress, help="workload each lab selects when it opens")
    serve.add_argument("--screenshots", type=Path, default=suppress, help="where the labs' s saves screenshots (SVG and PNG)")
    serve.add_argument("--exports", type=Path, default=suppress, help="where the labs' e writes exports")
    serve.add_argument("--no-history", action="store_true", default=suppress, help="the labs save no runs in the history")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {value}")
    return value


def lab_command(args: argparse.Namespace) -> list[str]:
    """The lab each tab runs: this interpreter's ``python -m edgelab`` with the lab's flags
    as given (validated here first, so a bad one is one line before the server starts)."""
    command = [sys.executable, "-m", "edgelab"]
    runtimes = getattr(args, "runtimes", None)
    if runtimes is not None:
        from edgelab.runtimes import registry

        command += ["--runtimes", ",".join(registry.parse_runtimes(runtimes))]
    # The lab itself says so of an unknown --workload (and lets the person pick one).
    for name in ("workload", "theme", "screenshots", "exports"):
        value = getattr(args, name, None)
        if value is not None:
            command += [f"--{name}", str(value.resolve() if isinstance(value, Path) else value)]
    if getattr(args, "no_history", False):
        command.append("--no-history")
    return command


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before any lab or server starts: a port in use (or an
    address not on this machine) is a UsageError, and the server then serves on this very
    socket, so nothing can take the port between the check and the start."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: not an address here ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is in use (choose another with --port, or 0 for any free one)") from None
        if exc.errno == errno.EACCES:
            raise UsageError(f"port {port} on {host}: not allowed to listen there (ports under 1024 need root)") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise UsageError(f"--host {host}: not an address of this machine") from None
        raise
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    """The URL to open: the bound port, and a host a browser can use (a wildcard address is
    shown as this machine's loopback, where the browser on this machine finds it)."""
    address = sock.getsockname()
    shown = host
    if host in ("0.0.0.0", ""):
        shown = "127.0.0.1"
    elif host == "::":
        shown = "::1"
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{address[1]}/"


class LabServer:
    """textual-serve's Server, with our template, URLs from the request's Host, an origin
    check on the websocket, and the labs it started tracked so shutdown can stop each."""

    def __init__(self, command: list[str], sock: socket.socket, url: str) -> None:
        from textual_serve.server import Server

        class _Server(Server):
            # textual-serve builds its page and websocket in these; ours differ as said above.
            async def handle_index(inner, request: web.Request) -> Any:  # noqa: N805
                return await self._index(inner, request)

            async def handle_websocket(inner, request: web.Request) -> Any:  # noqa: N805
                return await self._websocket(inner, request)

            async def on_startup(inner, app: web.Application) -> None:  # noqa: N805
                pass  # textual-serve prints a logo and its own URL; we print ours once bound

        self.command = command
        self.sock = sock
        self.url = url
        self.server = _Server(
            shlex.join(command), title="edgelab", templates_path=TEMPLATES,
        )
        #: Every lab process started and not yet reaped.
        self.labs: set[asyncio.subprocess.Process] = set()
        self.stopping = False

    async def _index(self, server: Any, request: web.Request) -> Any:
        import aiohttp_jinja2

        base = f"{request.scheme}://{request.host}"
        ws = ("wss" if request.scheme == "https" else "ws") + f"://{request.host}/ws"
        try:
            font_size = int(request.query.get("fontsize", "16"))
        except ValueError:
            font_size = 16
        context = {
            "font_size": font_size,
            "app_websocket_url": ws,
            "config": {"static": {"url": f"{base}/static/"}},
            "application": {"name": "edgelab"},
            "ping_url": "",
        }
        return aiohttp_jinja2.render_template("app_index.html", request, context)

    async def _websocket(self, server: Any, request: web.Request) -> Any:
        from aiohttp import web

        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            # A page from elsewhere (a browser sends its Origin on every websocket):
            # opening this one would run the lab for it.
            raise web.HTTPForbidden(text="edgelab serve: only its own page may open a lab\n")
        if self.stopping:
            raise web.HTTPServiceUnavailable(text="edgelab serve: stopping\n")
        websocket = web.WebSocketResponse(heartbeat=15)
        try:
            width = int(request.query.get("width", "80"))
            height = int(request.query.get("height", "24"))
        except ValueError:
            width, height = 80, 24
        service = _service_class()(self, server, websocket)
        try:
            await websocket.prepare(request)
            await service.start(width, height)
            try:
                await server._process_messages(websocket, service)
            finally:
                await service.stop()
        except asyncio.CancelledError:
            await websocket.close()
        except Exception as exc:  # a broken tab must not take the server (and other labs) down
            LOG.warning("edgelab serve: a lab's connection failed: %s", exc)
        finally:
            await service.stop()
        return websocket

    async def run(self) -> None:
        """Serve until SIGINT, SIGTERM or SIGHUP; then stop every lab, then the server."""
        import aiohttp_jinja2
        import jinja2
        from aiohttp import web

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        for signum in signals:
            loop.add_signal_handler(signum, stop.set)
        app = web.Application()
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES))
        server = self.server
        app.add_routes([
            web.get("/", server.handle_index, name="index"),
            web.get("/ws", server.handle_websocket, name="websocket"),
            web.get("/download/{key}", server.handle_download, name="download"),
            web.static("/static", server.statics_path, name="static"),
        ])
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            await web.SockSite(runner, self.sock, shutdown_timeout=1.0).start()
            print(f"edgelab serve: the lab at {self.url} (each tab runs its own lab;"
                  " ctrl+c stops the server and every lab it started)", flush=True)
            await stop.wait()
        finally:
            self.stopping = True
            for signum in signals:  # a second ctrl+c while labs clean up: ignored, as the lab does
                loop.add_signal_handler(signum, lambda: None)
            await self.stop_labs()
            await runner.cleanup()
            for signum in signals:
                loop.remove_signal_handler(signum)

    async def stop_labs(self) -> None:
        """SIGTERM every lab (each unwinds like ctrl+c and removes what it started), wait up
        to ``LAB_STOP_S``, then SIGKILL what is left (its session watchdog removes the rest)."""
        labs = [lab for lab in self.labs if lab.returncode is None]
        for lab in labs:
            _signal(lab, signal.SIGTERM)
        if not labs:
            return
        waits = [asyncio.create_task(lab.wait()) for lab in labs]
        _, pending = await asyncio.wait(waits, timeout=LAB_STOP_S)
        for lab in labs:
            if lab.returncode is None:
                LOG.warning("edgelab serve: lab %d did not stop in %.0f s: killed", lab.pid, LAB_STOP_S)
                _signal(lab, signal.SIGKILL)
        if pending:
            await asyncio.wait(pending, timeout=2.0)


#: Each lab starts through this: the kernel sends it SIGTERM when the server dies, however it
#: dies (SIGKILL, a crash), so the lab unwinds and removes what it started (a lab's stdin
#: closing does not stop it: measured, one outlived a killed server by 15 s and more). The
#: death signal survives the exec; set there rather than in a preexec_fn, which runs between
#: fork and exec in a server with threads.
_DIE_WITH_SERVER = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    os._exit(1)  # the server died before the prctl: no lab\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def lab_argv(command: list[str]) -> list[str]:
    """The lab's command, through ``_DIE_WITH_SERVER`` where the kernel has it (Linux)."""
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-I", "-c", _DIE_WITH_SERVER, str(os.getpid()), *command]


def _signal(process: asyncio.subprocess.Process, signum: int) -> None:
    try:
        process.send_signal(signum)
    except ProcessLookupError:
        pass


@functools.cache
def _service_class() -> type:
    from textual_serve.app_service import AppService

    class LabService(AppService):
        """textual-serve's AppService, starting the lab without a shell (argv as given) and
        recording it with the server, which stops it on shutdown."""

        def __init__(self, owner: LabServer, server: Any, websocket: web.WebSocketResponse) -> None:
            async def close() -> None:  # AppService awaits a close that returns nothing
                await websocket.close()

            super().__init__(
                server.command,
                write_bytes=websocket.send_bytes,
                write_str=websocket.send_str,
                close=close,
                download_manager=server.download_manager,
                debug=False,
            )
            self._owner = owner

        async def _open_app_process(self, width: int = 80, height: int = 24) -> Any:
            environment = self._build_environment(width=width, height=height)
            process = await asyncio.create_subprocess_exec(
                *lab_argv(self._owner.command),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=environment,
            )
            self._process = process
            self._stdin = process.stdin
            self._owner.labs.add(process)
            return process

        async def stop(self) -> None:
            try:
                await super().stop()
            except (ConnectionError, RuntimeError):
                pass  # the lab already exited: its stdin is closed
            process = self._process
            if process is not None and process.returncode is not None:
                self._owner.labs.discard(process)

    return LabService


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import textual_serve  # noqa: F401
    except ImportError:
        raise EdgelabError("edgelab serve needs textual-serve (pip install textual-serve)") from None
    command = lab_command(args)
    sock = bind(args.host, args.port)
    if not is_loopback(args.host):
        print(f"edgelab serve: warning: listening on {args.host}: anyone who can reach port"
              f" {sock.getsockname()[1]} can run workloads on this machine",
              file=sys.stderr, flush=True)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    server = LabServer(command, sock, url_of(sock, args.host))
    try:
        asyncio.run(server.run())
    finally:
        sock.close()
    left = [lab.pid for lab in server.labs if lab.returncode is None]
    if left:  # killed but not yet reaped: their session watchdogs remove what they started
        print(f"edgelab serve: stopped; labs {left} were killed", file=sys.stderr)
        return 1
    print("edgelab serve: stopped; every lab it started has exited", file=sys.stderr)
    return 0
