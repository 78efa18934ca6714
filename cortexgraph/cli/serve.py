"""``cortexgraph serve --root COHORT``: the interactive mapping web app (docs/web-app.md).

A thin layer over :func:`cortexgraph.web.app.create_app` and uvicorn. Binds to 127.0.0.1 by
default; another address needs an access token, which is made (or taken from ``--token`` /
``$CORTEXGRAPH_TOKEN``) and printed with the address to open.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cortexgraph.cli.common import RootOption, command, console


def register(app: typer.Typer) -> None:
    @command(app, "serve")
    def serve(
        root: Path = RootOption,
        host: str = typer.Option("127.0.0.1", help="Address to bind (others need a token)."),
        port: int = typer.Option(8765, help="TCP port (0: any free port)."),
        token: str = typer.Option(
            None,
            envvar="CORTEXGRAPH_TOKEN",
            help="Access token every request must carry (made for you when binding to another "
            "address than 127.0.0.1).",
        ),
        lsm_arch: str = typer.Option("ms", help="Architecture of local models started in the app."),
        lsm_iterations: int = typer.Option(
            None, help="Training iterations of local models started in the app (preset default)."
        ),
        lsm_preset: str = typer.Option(
            "auto", help="Model sizes of local models (as `lsm train`)."
        ),
        max_interval_mm: float = typer.Option(
            2.4,
            "--max-interval-mm",
            help="Longest interval between the two annotated sections of a local model started "
            "in the app (the published protocol: 2.4 mm).",
        ),
        open_browser: bool = typer.Option(False, "--open", help="Open the page in a browser."),
    ) -> None:
        """Serve the mapping web app for the cohort: browse sections, annotate, train local models,
        accept their predictions, inspect in 3D. Stop it with Ctrl-C."""
        from cortexgraph.data.manifest import find_cohort
        from cortexgraph.errors import CortexgraphError
        from cortexgraph.web.app import create_app, missing_vendor_files
        from cortexgraph.web.security import is_loopback, new_token
        from cortexgraph.web.state import WebSettings

        _check_serve_options(port, lsm_arch, lsm_preset, lsm_iterations, max_interval_mm)
        if port == 0:  # any free port, chosen here so that the address printed is the real one
            port = _free_port(host)
        try:
            import uvicorn
        except ImportError:
            raise CortexgraphError(
                "the web app needs FastAPI and uvicorn", fix="pip install 'cortexgraph[web]'"
            ) from None
        cohort = find_cohort(root)
        missing = missing_vendor_files()
        if missing:
            raise CortexgraphError(
                f"the page's JavaScript libraries are not installed ({', '.join(missing)})",
                fix="run `make web` in the cortexgraph source folder (npm ci of web/frontend)",
            )
        if not is_loopback(host) and not token:
            token = new_token()
        settings = WebSettings(
            root=cohort.root,
            token=token,
            job_defaults={
                "arch": lsm_arch,
                "preset": lsm_preset,
                "iterations": lsm_iterations,
                "seed": 0,
                "max_interval_mm": max_interval_mm,
            },
        )
        app = create_app(cohort.root, settings=settings)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        server = uvicorn.Server(config)
        shown = "localhost" if is_loopback(host) else host
        url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
        console.print(f"[bold green]cortexgraph[/] serving {cohort.root}", highlight=False)
        console.print(f"  open {url}", highlight=False)
        if token:
            console.print(f"  access token: {token}", highlight=False)
        _warm_engine(cohort.root)
        if open_browser:
            import threading
            import webbrowser

            threading.Timer(1.0, webbrowser.open, args=(url,)).start()
        server.run()


def _check_serve_options(
    port: int, arch: str, preset: str, iterations: int | None, max_interval_mm: float
) -> None:
    """Refuse what ``lsm train`` would refuse, before the server starts (the app used to start and
    fail only when a local model was started in the page), and a port outside 0..65535."""
    import math

    from cortexgraph.errors import ParameterError
    from cortexgraph.lsm.config import PRESETS
    from cortexgraph.lsm.networks import ARCHITECTURES

    ParameterError.check_ranges([
        (0 <= port <= 65535, "--port", port, "0..65535 (0: any free port)"),
        (arch in ARCHITECTURES, "--lsm-arch", arch, ", ".join(ARCHITECTURES)),
        (preset in PRESETS, "--lsm-preset", preset, ", ".join(PRESETS)),
        (iterations is None or 1 <= iterations <= 10**7, "--lsm-iterations", iterations,
         "1..10000000"),
        (math.isfinite(max_interval_mm) and max_interval_mm > 0, "--max-interval-mm",
         max_interval_mm, "a number of mm > 0"),
    ])  # fmt: skip


def _free_port(host: str) -> int:
    """A TCP port free on ``host`` now (the operating system's pick)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _warm_engine(cohort_root) -> None:
    """Attach to the cohort's local engine, or start it (owned by this server: it stops with it),
    in a background thread, so that the first job started in the page does not wait for it."""
    import threading

    from cortexgraph.execution.service import service_record

    def warm() -> None:
        from cortexgraph.errors import CortexgraphError
        from cortexgraph.web.lsm_adapter import launcher_for

        try:
            launcher = launcher_for(cohort_root)
            launcher.client(start=True)
            record = service_record(cohort_root)
            how = "started" if launcher.started_engine else "attached to"
            console.print(
                f"  {how} the cohort's local engine (pid {record.get('pid', '?')}) for jobs",
                highlight=False,
            )
        except CortexgraphError as exc:
            console.print(f"[yellow]jobs unavailable:[/] {exc}", highlight=False)

    threading.Thread(target=warm, name="cortexgraph-engine", daemon=True).start()
