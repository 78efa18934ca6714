"""``cortexgraph jobs``: training and prediction jobs on the local engine or on Slurm (submit, list,
status, follow, cancel); ``cortexgraph engine``: the cohort's local engine service (start, status,
stop). Thin layer over :mod:`cortexgraph.execution.launcher` and
:mod:`cortexgraph.execution.service`."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import typer

from cortexgraph.cli.cohort import EngineConfigOption
from cortexgraph.cli.common import (
    LOGGING,
    CancelTimeoutOption,
    RootOption,
    command,
    console,
    json_option,
)

jobs_app = typer.Typer(
    name="jobs",
    help="Training and prediction jobs (cortexgraph commands) on the local engine or on Slurm.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
engine_app = typer.Typer(
    name="engine",
    help="The cohort's local engine: a Dask cluster in the background that runs jobs.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

JobsDirOption = typer.Option(
    None,
    "--jobs-dir",
    help="Jobs folder (default: <cohort>/derivatives/cortexgraph/jobs).",
)
BackendOption = typer.Option(
    "local", "--backend", help="local (the cohort's Dask engine) or slurm (sbatch)."
)
SchedulerJobsOption = typer.Option(
    None,
    "--scheduler",
    metavar="ADDRESS",
    help="Local back end: a Dask scheduler (address or file) instead of the cohort's engine.",
)
JobIdArgument = typer.Argument(..., help="Job id (from `jobs list`).")
_STYLE = {"done": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}


def _launcher(root, jobs_dir, backend, scheduler, engine_config):
    """The launcher of the jobs folder; ``backend`` None (list, follow, ...): local when the cohort
    or a scheduler is known, else Slurm (each job's own back end is used for its state)."""
    from cortexgraph.data.manifest import find_cohort
    from cortexgraph.errors import CortexgraphError, ParameterError
    from cortexgraph.execution.launcher import jobs_folder, open_launcher

    cohort_root = None
    try:
        cohort_root = find_cohort(root).root
    except CortexgraphError:
        if jobs_dir is None or backend == "local" and scheduler is None:
            raise
    if jobs_dir:
        folder = Path(jobs_dir)
    elif cohort_root is not None:
        folder = jobs_folder(cohort_root)
    else:  # an empty --jobs-dir outside a cohort
        raise ParameterError(
            "--jobs-dir is empty and no cohort was found",
            fix="pass --jobs-dir FOLDER or --root COHORT",
        )
    if backend is None:
        backend = "local" if (cohort_root is not None or scheduler) else "slurm"
    return open_launcher(
        folder,
        backend=backend,
        cohort_root=cohort_root,
        scheduler=scheduler,
        config=engine_config,
    )


def _close(launcher) -> None:
    """Close the launchers' engine clients (the engine and its jobs keep running)."""
    for peer in launcher.peers.values():
        close = getattr(peer, "close", None)
        if close is not None:
            close()


def launcher_options(
    root: Path = RootOption,
    jobs_dir: Path = JobsDirOption,
    scheduler: str = SchedulerJobsOption,
    engine_config: Path = EngineConfigOption,
) -> dict:
    """Where the jobs are (the options of every ``jobs`` command; :func:`option_group`)."""
    return dict(locals())


@contextmanager
def _opened(where: dict, backend: str | None = None):
    """The launcher of ``where`` (:func:`launcher_options`), its engine clients closed after."""
    launcher = _launcher(
        where["root"], where["jobs_dir"], backend, where["scheduler"], where["engine_config"]
    )
    try:
        yield launcher
    finally:
        _close(launcher)


WHERE = ("where", launcher_options)


def _when(unix) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix)) if unix else "-"


def _print_status(status: dict) -> None:
    state = status["state"]
    style = _STYLE.get(state, "white")
    spec = status.get("spec", {})
    extra = f" {status['message']}" if status.get("message") else ""
    where = f" on {status['where']}" if status.get("where") else ""
    console.print(
        f"{status['id']}  [{style}]{state}[/]{where}  {status.get('backend')}  "
        f"cortexgraph {' '.join(spec.get('argv', []))}{extra}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(engine_app, name="engine")

    @command(
        jobs_app,
        "submit",
        WHERE,
        LOGGING,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def submit(
        ctx: typer.Context,
        name: str = typer.Option(..., "--name", help="Short name of the job (part of its id)."),
        gpus: int = typer.Option(0, help="GPUs the job needs."),
        cpus: int = typer.Option(1, help="CPU cores the job needs."),
        memory: float = typer.Option(None, "--memory-gb", help="Memory the job needs (GB)."),
        time_limit: float = typer.Option(
            None, "--time-min", help="Wall-time limit of the job, minutes."
        ),
        retries: int = typer.Option(0, help="Reruns of a failed run (not for exit status 2/4)."),
        after: list[str] = typer.Option(
            None, "--after", metavar="JOB", help="Start after this job ended done (repeatable)."
        ),
        processes: int = typer.Option(
            1, help="Processes under torchrun (data-parallel training over that many GPUs)."
        ),
        backend: str = BackendOption,
        *,
        where: dict,
        verbose: bool,
    ) -> None:
        """Submit `cortexgraph ARGS...` (after --) as a job; print its id.

        Example: cortexgraph jobs submit --name gat3 --gpus 1 --time-min 120 -- train-gnn
        --root COHORT --model gat --layers 3
        """
        from cortexgraph.data.names import check_name
        from cortexgraph.execution.launcher import JobSpec

        spec = JobSpec(
            name=check_name(name, "job name"),  # refused, never rewritten into another name
            argv=list(ctx.args),
            gpus=gpus,
            cpus=cpus,
            memory_gb=memory,
            time_limit_min=time_limit,
            retries=retries,
            after=tuple(after or ()),
            processes=processes,
            cwd=str(Path.cwd()),
        ).validated()  # bad values refused before an engine is opened or started
        with _opened(where, backend) as launcher:
            job_id = launcher.submit(spec)
        typer.echo(job_id)
        console.print(
            f"submitted to {backend}; follow: cortexgraph jobs follow {job_id}", highlight=False
        )

    @command(jobs_app, "list", WHERE, LOGGING)
    def list_cmd(as_json: bool = json_option("the jobs"), *, where: dict, verbose: bool) -> None:
        """List the jobs of the folder: id, state, where, command."""
        with _opened(where) as launcher:
            jobs = launcher.list()
        if as_json:
            typer.echo(json.dumps(jobs, indent=2))
            return
        if not jobs:
            console.print("no jobs")
        for status in jobs:
            _print_status(status)

    @command(jobs_app, "status", WHERE, LOGGING)
    def status_cmd(job_id: str = JobIdArgument, *, where: dict, verbose: bool) -> None:
        """Print one job's state as JSON."""
        with _opened(where) as launcher:
            typer.echo(json.dumps(launcher.status(job_id), indent=2))

    @command(jobs_app, "follow", WHERE, LOGGING)
    def follow_cmd(
        job_id: str = JobIdArgument,
        timeout: float = typer.Option(None, help="Stop following after SECONDS."),
        *,
        where: dict,
        verbose: bool,
    ) -> None:
        """Print the job's log as it grows until it ends. Exit status 0 when it ended done."""
        with _opened(where) as launcher:
            status = launcher.follow(job_id, timeout_s=timeout)
        _print_status(status)
        if status["state"] != "done":
            raise typer.Exit(code=1)

    @command(jobs_app, "cancel", WHERE, LOGGING)
    def cancel_cmd(
        job_id: str = JobIdArgument,
        timeout: float = CancelTimeoutOption,
        *,
        where: dict,
        verbose: bool,
    ) -> None:
        """Cancel a job: a queued one never starts; a running one is stopped (its outputs being
        written are discarded); jobs waiting for it fail."""
        with _opened(where) as launcher:
            _print_status(launcher.cancel(job_id, timeout_s=timeout))

    @command(engine_app, "start", LOGGING)
    def engine_start(
        root: Path = RootOption,
        gpus: int = typer.Option(None, help="GPUs for jobs (default: all torch sees)."),
        cpus: int = typer.Option(None, help="CPU cores for jobs (default: all)."),
        idle_timeout: float = typer.Option(
            3600.0, help="Stop after SECONDS without work (the jobs' results stay)."
        ),
        *,
        verbose: bool,
    ) -> None:
        """Start the cohort's local engine (jobs start it themselves when needed)."""
        from cortexgraph.data.manifest import find_cohort
        from cortexgraph.execution.service import start_service

        client = start_service(
            find_cohort(root).root, gpus=gpus, cpus=cpus, idle_timeout_s=idle_timeout
        )
        console.print(f"local engine at {client.scheduler.address}", highlight=False)
        client.close()

    @command(engine_app, "status", LOGGING)
    def engine_status(root: Path = RootOption, *, verbose: bool) -> None:
        """Show the cohort's local engine: scheduler, workers and their resources, running jobs.
        Exit status 1 when it does not run."""
        from cortexgraph.data.manifest import find_cohort
        from cortexgraph.execution.service import service_client

        client = service_client(find_cohort(root).root)
        if client is None:
            console.print("the local engine is not running")
            raise typer.Exit(code=1)
        try:
            info = client.scheduler_info(n_workers=-1)
            console.print(f"scheduler {client.scheduler.address}", highlight=False)
            processing = client.processing()
            for address, worker in info.get("workers", {}).items():
                running = [k for k in processing.get(address, ())]
                console.print(
                    f"  worker {worker.get('name')} {address}: resources "
                    f"{worker.get('resources', {})}, running {running or 'nothing'}",
                    highlight=False,
                )
        finally:
            client.close()

    @command(engine_app, "stop", LOGGING)
    def engine_stop(root: Path = RootOption, *, verbose: bool) -> None:
        """Stop the cohort's local engine with SIGTERM: it cancels its jobs (running commands stop
        without half-written outputs, queued ones are recorded cancelled), then ends."""
        from cortexgraph.data.manifest import find_cohort
        from cortexgraph.execution.service import stop_service

        stopped = stop_service(find_cohort(root).root)
        console.print("local engine stopped" if stopped else "the local engine was not running")
