"""The Extension (actions with default shortcuts) and the docker factory."""

from __future__ import annotations

import os
import traceback
from typing import Any

from krita import DockWidgetFactory, DockWidgetFactoryBase, Extension

# id, text, docker method. Default shortcuts come from paintbridge.action (installed into
# Krita's actions/ folder): Krita resets shortcuts set in createActions to that file's.
ACTIONS = (
    ("paintbridge_generate", "Paintbridge: Generate", "generate"),
    ("paintbridge_cancel", "Paintbridge: Cancel", "cancel"),
    ("paintbridge_toggle_result", "Paintbridge: Show/hide last result", "toggle_last_result"),
)
TEST_DRIVER_ENV = "PAINTBRIDGE_KRITA_TEST_DRIVER"


def _docker() -> Any:
    from .docker import active_docker

    return active_docker()


class PaintbridgeExtension(Extension):
    def setup(self) -> None:
        driver = os.environ.get(TEST_DRIVER_ENV)
        if driver:  # the real-Krita test suite drives the UI from inside Krita
            notifier = self.parent().notifier()
            notifier.setActive(True)
            notifier.windowCreated.connect(lambda: _run_test_driver(driver))

    def createActions(self, window: Any) -> None:
        for action_id, text, method in ACTIONS:
            action = window.createAction(action_id, text, "tools/scripts")
            action.triggered.connect(lambda _=False, m=method: _call(m))


def _call(method: str) -> None:
    docker = _docker()
    if docker is not None:
        getattr(docker, method)()


def _run_test_driver(path: str) -> None:
    """Run a test module's ``start()`` once the window exists (see tests/krita/)."""
    from PyQt5.QtCore import QTimer

    def go() -> None:
        import importlib.util

        try:
            spec = importlib.util.spec_from_file_location("paintbridge_test_driver", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.start()
        except Exception:
            traceback.print_exc()
            os._exit(3)

    QTimer.singleShot(1000, go)


def register(app: Any) -> None:
    from .docker import PaintbridgeDocker

    app.addExtension(PaintbridgeExtension(app))
    app.addDockWidgetFactory(DockWidgetFactory("paintbridge", DockWidgetFactoryBase.DockRight,
                                               PaintbridgeDocker))
