"""Set-up every Dask worker runs in its main thread before it computes tasks.

Dask runs tasks in a thread pool, so a library's first import happens in a task thread unless the
worker has imported it before. PyMeshLab (Qt underneath) ties the plugins it loads at import to
the importing thread; when that thread has ended, Qt's exit-time destructors use its freed thread
data, corrupting the heap, and the worker process aborts as it exits ("malloc_consolidate():
unaligned fastbin chunk detected", SIGABRT: a batch job marked failed, a core file). Importing such
libraries in the worker's main thread (its event loop) at start avoids this.
:class:`MainThreadImports` is registered by :class:`cortexgraph.execution.engine.Engine` on every
cluster it uses (local, an existing scheduler, Slurm), and also reaches workers that join later.
"""

from __future__ import annotations

import importlib
import sys
import threading

from distributed.diagnostics.plugin import WorkerPlugin

#: Libraries that must be first imported in a process's main thread.
MAIN_THREAD_IMPORTS = ("pymeshlab",)

#: Name of the plugin on the scheduler (registering again replaces it).
PLUGIN_NAME = "cortexgraph-main-thread-imports"

#: What the set-up found in this process: {module: first imported in the main thread (bool)};
#: False for a module that something had imported before the set-up ran.
IMPORTED: dict[str, bool] = {}


def import_in_main_thread(modules: tuple[str, ...] = MAIN_THREAD_IMPORTS) -> dict[str, bool]:
    """Import ``modules`` (those that are installed) and record whether this is the main thread."""
    main = threading.current_thread() is threading.main_thread()
    for name in modules:
        before = name in sys.modules
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        IMPORTED.setdefault(name, main and not before)
    return dict(IMPORTED)


class MainThreadImports(WorkerPlugin):
    """A worker plugin: :func:`import_in_main_thread` when the worker starts (``setup`` runs in the
    worker's event loop, its main thread)."""

    def setup(self, worker) -> None:  # noqa: D102
        import_in_main_thread()
