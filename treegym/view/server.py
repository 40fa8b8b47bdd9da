"""`treegym view FILE`: serve the viewer on loopback, re-reading FILE on every load.

Re-reading means a rollout that is still streaming trees into FILE shows its new trees
on a page reload. Several files show side by side, each task once per file. Only
127.0.0.1 is bound: records can hold code and task data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..errors import TreegymError
from .data import load_trees, view_model
from .page import render_page

Paths = Path | Sequence[Path]  # one records file, or several to compare


def _files(paths: Paths) -> list[Path]:
    return [paths] if isinstance(paths, Path) else list(paths)


def page_for(paths: Paths) -> str:
    """The viewer page for the trees in `paths`."""
    return render_page(view_model({str(path): load_trees(path) for path in _files(paths)}))


def make_server(paths: Paths, port: int) -> ThreadingHTTPServer:
    """A server for `paths` on 127.0.0.1:`port` (0 picks a free port); not yet serving."""
    shown = ", ".join(map(str, _files(paths)))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.split("?")[0] not in ("/", "/index.html"):
                self.send_error(404, "the viewer has one page: /")
                return
            try:
                body, status = page_for(paths).encode("utf-8"), 200
            except Exception as exc:  # noqa: BLE001 - show the problem in the browser
                body, status = f"cannot show {shown}: {exc}".encode(), 500
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8" if status == 200
                             else "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Quiet: one line per page load would bury the URL the user needs."""

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def serve(paths: Paths, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve until Ctrl-C; `on_ready(url)` is told where, once the port is bound."""
    page_for(paths)  # a bad file fails here, in one line, not in the browser
    try:
        server = make_server(paths, port)
    except OSError as exc:
        raise TreegymError(
            f"cannot listen on 127.0.0.1:{port}: {exc.strerror}; pick another --port "
            "(0 picks a free one)"
        ) from None
    try:
        on_ready(f"http://127.0.0.1:{server.server_address[1]}/")
        server.serve_forever()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a viewer is meant to stop
    finally:
        server.server_close()
