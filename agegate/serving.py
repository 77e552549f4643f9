"""`agegate serve`: gunicorn with agegate/gunicorn_conf.py, adjusted for the embedded default."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import Application

from agegate.settings import Settings


class _Gunicorn(Application):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        self.load_config_from_module_name_or_filename("python:agegate.gunicorn_conf")
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def init(self, parser: Any, opts: Any, args: Any) -> None:
        """Nothing comes from the command line: `agegate serve` passes its options in."""

    def load(self) -> Any:
        # Each worker builds its own app after the fork: no connection pool crosses a fork.
        from agegate import create_app

        app = create_app()
        if app.extensions["agegate.settings"].embedded:
            _start_embedded_worker(app)
        return app


def _start_embedded_worker(app: Any) -> None:
    """The embedded default runs its remediation worker inside the serving process."""
    import threading

    from agegate.remediation.setup import make_worker

    stop = threading.Event()
    thread = threading.Thread(
        target=make_worker(app).run_forever, args=(stop,), daemon=True, name="worker"
    )
    thread.start()


def serve(settings: Settings, bind: str | None) -> None:
    """Run until stopped."""
    options: dict[str, Any] = {}
    if bind:
        options["bind"] = [bind]
    if settings.embedded:
        # One SQLite file has one writer at a time: one process with threads serves it best.
        options.update(workers=1, worker_class="gthread", threads=8)
    _Gunicorn(options).run()
