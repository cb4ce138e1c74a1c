"""The "Paintbridge" docker: the panel's sections, bound to a ``plugin.controller.Controller``.

Every decision (session, keys, daemon start, job state, results) is the controller's, tested
without Krita; which widget each setting gets is ``plugin.editors``', and what the lists
offer is ``plugin.offers``'. The sections live beside this file: ``connection.py`` (endpoint
and keys), ``form.py`` (a widget per row of ``plugin.params.PARAMS``), ``rows.py`` (the LoRA
and control-layer rows) and ``widgets.py`` (the widgets all of them are made of). This file
lays them out with the job buttons, the progress and the results, and binds them.

All network I/O is non-blocking: a QSocketNotifier on each of the session's FDs wakes the
docker when something arrives (the FDs are edge-triggered, so every wake-up drains the
socket completely through ``Controller.pump()``), and a 250 ms timer does the same as a
safety net and drives the connection probe. See docs/krita.md for why not a thread.
"""

from __future__ import annotations

import html
import time
import traceback
import weakref
from typing import Any

from PyQt5.QtCore import QSize, QSocketNotifier, Qt, QTimer
from PyQt5.QtGui import QIcon, QImage, QPixmap
from PyQt5.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from krita import DockWidget, Krita

from .connection import ConnectionSection
from .document import KritaDocument
from .form import ParamForm
from .plugin import offers
from .plugin.controller import Controller, Line
from .plugin.expand import MAX_PIXELS, SIDE_LABELS, Expansion
from .plugin.params import BY_NAME
from .plugin.protocol import UPSCALE_FACTORS
from .plugin.session import GenerationSettings
from .rows import ControlList, ControlRow

SETTINGS_GROUP = "paintbridge"
IDLE_TICK_MS = 250   # the docker's timer: probes, progress ...
LIVE_TICK_MS = 100   # ... and while Live is on, how often it looks at the canvas

_DOCKERS: list[weakref.ref] = []


def active_docker() -> PaintbridgeDocker | None:
    """The docker of the active window (the last one made if that cannot be told)."""
    live = [d for d in (r() for r in _DOCKERS) if d is not None]
    window = Krita.instance().activeWindow()
    qwin = window.qwindow() if window is not None else None
    for d in live:
        if qwin is not None and d.window() is qwin:
            return d
    return live[-1] if live else None


def _read(key: str) -> str:
    return Krita.instance().readSetting(SETTINGS_GROUP, key, "")


def _write(key: str, value: str) -> None:
    Krita.instance().writeSetting(SETTINGS_GROUP, key, value)


def _button(text: str, tip: str, slot: Any, checkable: bool = False) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    button.setCheckable(checkable)
    (button.toggled if checkable else button.clicked).connect(slot)
    return button


def _row(*items: tuple[QWidget, int]) -> QHBoxLayout:
    row = QHBoxLayout()
    for widget, stretch in items:
        row.addWidget(widget, stretch)
    return row


class PaintbridgeDocker(DockWidget):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Paintbridge")
        taken = {getattr(d, "window_index", -1) for d in (r() for r in _DOCKERS) if d}
        self.window_index = next(i for i in range(len(taken) + 1) if i not in taken)
        _DOCKERS.append(weakref.ref(self))
        self.controller = Controller(_read, _write, self.window_index)
        self.notifiers: list[QSocketNotifier] = []
        self._generation = -1           # the controller's socket the notifiers watch
        self._preview: Any = None
        self._lines: dict[int, Line] = {}
        self._build()
        self.timer = QTimer(self)
        self.timer.setInterval(IDLE_TICK_MS)
        self.timer.timeout.connect(self.pump)
        self.timer.start()
        self._show()

    # ---------------------------------------------------------------- widgets

    def _build(self) -> None:
        panel = QWidget(self)
        panel.setObjectName("paintbridgePanel")
        outer = QVBoxLayout(panel)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        outer.addWidget(self.status_label)
        c = self.controller
        self.connection = ConnectionSection(c.session.endpoint, c.server_key, c.client_key)
        self.connection.endpoint_entered.connect(self._endpoint_changed)
        self.connection.keys_entered.connect(self._keys_changed)
        self.connection.start_button.clicked.connect(self.start_daemon)
        outer.addWidget(self.connection)
        self.form = ParamForm()
        self.form.show_settings(c.settings)
        self.form.changed.connect(self._save)
        self.form.reuse_button.clicked.connect(self.reuse_last_seed)
        self.widgets = self.form.widgets          # one per row of plugin.params.PARAMS
        outer.addWidget(self.form)
        self.controls = ControlList(self.paint_layers, self.preprocess_control)
        outer.addWidget(self.controls)
        outer.addLayout(self._build_job_buttons())
        outer.addLayout(self._build_expand_row())
        outer.addLayout(self._build_upscale_row())
        outer.addLayout(self._build_progress())
        outer.addWidget(QLabel("Results (click to show/hide)"))
        self.results_list = QListWidget()
        self.results_list.setViewMode(QListWidget.IconMode)
        self.results_list.setIconSize(QSize(64, 64))
        self.results_list.setMinimumHeight(84)
        self.results_list.itemClicked.connect(self._result_clicked)
        outer.addWidget(self.results_list, 1)
        self.setWidget(panel)

    def _build_job_buttons(self) -> QVBoxLayout:
        """Generate and Cancel; Live and Apply."""
        self.generate_button = _button("Generate", "Paint the selection (or the layer) as "
                                       "the settings say, into a new layer", self.generate)
        self.cancel_button = _button("Cancel", "Stop the running job; the image stays as "
                                     "it is", self.cancel)
        self.live_button = _button("Live", "The picture follows the brush: a preview layer "
                                   "above the layer you paint on shows the newest result",
                                   self.toggle_live, checkable=True)
        self.apply_button = _button("Apply", "Keep the live result as a new layer",
                                    self.apply_live)
        column = QVBoxLayout()
        column.addLayout(_row((self.generate_button, 1), (self.cancel_button, 0)))
        column.addLayout(_row((self.live_button, 1), (self.apply_button, 0)))
        return column

    def _build_expand_row(self) -> QHBoxLayout:
        """Expand: grow the canvas by N px on the chosen sides and paint the new area."""
        self.expand_button = _button("Expand", "Grow the canvas and paint the new area as a "
                                     "new layer (the canvas grows when the result is there; "
                                     "Undo shrinks it again)", self.expand)
        self.expand_pixels = QSpinBox()
        self.expand_pixels.setRange(1, MAX_PIXELS)
        self.expand_pixels.setSuffix(" px")
        self.expand_sides = QComboBox()
        for value, label in SIDE_LABELS.items():
            self.expand_sides.addItem(label, value)
        saved = _read("expand") or "256 right"
        pixels, _, sides = saved.partition(" ")
        self.expand_pixels.setValue(int(pixels) if pixels.isdigit() else 256)
        self.expand_sides.setCurrentIndex(max(0, self.expand_sides.findData(sides)))
        return _row((self.expand_button, 1), (self.expand_pixels, 0), (self.expand_sides, 0))

    def _build_upscale_row(self) -> QHBoxLayout:
        """Upscale: the layer (or the selection's box) enlarged into a new document."""
        self.upscale_button = _button("Upscale", "Enlarge the layer (or the selection's "
                                      "bounding box) into a new document, refined at full "
                                      "resolution (Refine strength, Upscaler); this one "
                                      "stays as it is", self.upscale)
        self.upscale_factor = QComboBox()
        for factor in UPSCALE_FACTORS:
            self.upscale_factor.addItem(f"×{factor}", factor)
        saved = _read("upscale")
        self.upscale_factor.setCurrentIndex(
            max(0, self.upscale_factor.findData(int(saved) if saved.isdigit() else 2)))
        return _row((self.upscale_button, 1), (self.upscale_factor, 0))

    def _build_progress(self) -> QVBoxLayout:
        """The progress bar with the live preview beside it; the message under them."""
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.preview_label = QLabel()
        self.preview_label.setFixedSize(64, 64)
        self.preview_label.setAlignment(Qt.AlignCenter)
        self.message_label = QLabel()
        self.message_label.setWordWrap(True)
        self.message_label.setTextFormat(Qt.PlainText)
        self.message_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        column = QVBoxLayout()
        column.addLayout(_row((self.progress, 1), (self.preview_label, 0)))
        column.addWidget(self.message_label)
        return column

    def settings(self) -> GenerationSettings:
        """The settings as the widgets show them."""
        return self.form.settings()

    def _save(self) -> None:
        self.controller.save_settings(self.settings())

    def paint_layers(self) -> list[tuple[str, str]]:
        doc = Krita.instance().activeDocument()
        return KritaDocument.paint_layers_of(doc) if doc is not None else []

    def canvasChanged(self, canvas: Any) -> None:
        pass

    # ---------------------------------------------------------------- binding

    def pump(self, *_: object) -> None:
        """Read everything that arrived, probe the daemon, show the state. Never waits."""
        for notifier in self.notifiers:
            notifier.setEnabled(False)
        try:
            self.controller.pump(time.monotonic())
            if self.controller.live.on:
                self.controller.live_tick(self.settings(),
                                          control_layers=self.controls.layers())
            self._show()
        except Exception as exc:  # never let a slot die silently inside Krita
            traceback.print_exc()
            self.controller.error(f"Internal error: {exc!r} (details on the terminal)")
            self._set_line(self.message_label, self.controller.message)
        finally:
            for notifier in self.notifiers:
                notifier.setEnabled(True)

    def _watch_socket(self) -> None:
        """Messages and connection events (a dropped daemon) both wake the docker."""
        for notifier in self.notifiers:
            notifier.setEnabled(False)
            notifier.deleteLater()
        self.notifiers = []
        for fd in self.controller.filenos():
            notifier = QSocketNotifier(fd, QSocketNotifier.Read, self)
            notifier.activated.connect(self.pump)
            self.notifiers.append(notifier)
        self._generation = self.controller.generation

    def _show(self) -> None:
        """Show the controller's state; widgets whose data did not change are left alone."""
        c = self.controller
        if c.generation != self._generation:
            self._watch_socket()
        self._set_line(self.status_label, c.status, dot=True)
        self._set_line(self.message_label, c.message)
        self.generate_button.setEnabled(not c.running)
        self.expand_button.setEnabled(not c.running)
        self.upscale_button.setEnabled(not c.running)
        self.cancel_button.setEnabled(c.running)
        if self.live_button.isChecked() != c.live.on:   # Live stopped itself
            self.live_button.blockSignals(True)
            self.live_button.setChecked(c.live.on)
            self.live_button.blockSignals(False)
            self.timer.setInterval(LIVE_TICK_MS if c.live.on else IDLE_TICK_MS)
        self.apply_button.setEnabled(c.live.shown is not None)
        fraction, text = c.progress
        self.progress.setValue(round(100 * fraction))
        self.progress.setFormat(text)
        if c.preview is not self._preview:
            self._preview = c.preview
            self._show_preview(c.preview)
        self.connection.show_daemon_start(c.can_start_daemon, c.starting_daemon)
        if c.reveal_keys:
            self.connection.reveal_keys()
            c.reveal_keys = False
        self.form.show_offers(c.daemon_choices, offers.loras(c.hello), c.limits, c.settings)
        self.controls.show_offers(c.hello, c.limits)
        for result in c.results[self.results_list.count():]:
            self._add_result(result.layer, result.name)

    def _set_line(self, label: QLabel, line: Line, dot: bool = False) -> None:
        if self._lines.get(id(label)) == line:
            return
        self._lines[id(label)] = line
        colour = "#c33" if line.error else "#2a2"
        if dot:
            label.setText(f"<span style='color:{colour}'>●</span> "
                          f"{html.escape(line.text, quote=False)}")
        else:
            label.setStyleSheet(f"color: {colour}" if line.error else "")
            label.setText(line.text)

    def _show_preview(self, frame: Any) -> None:
        if frame is None or frame.format != "rgba8":
            self.preview_label.clear()
            return
        img = QImage(bytes(frame.data), frame.width, frame.height, frame.width * 4,
                     QImage.Format_RGBA8888).copy()
        self.preview_label.setPixmap(QPixmap.fromImage(img).scaled(
            64, 64, Qt.KeepAspectRatio, Qt.SmoothTransformation))

    def _add_result(self, layer: Any, name: str) -> None:
        item = QListWidgetItem(name)
        item.setToolTip(name)
        thumb = layer.thumbnail(64, 64)
        if thumb is not None and not thumb.isNull():
            item.setIcon(QIcon(QPixmap.fromImage(thumb)))
        item.setData(Qt.UserRole, self.results_list.count())
        self.results_list.addItem(item)

    # ---------------------------------------------------------------- the user's actions

    def _open_target(self) -> KritaDocument | None:
        """The active document and layer; a result layer (Krita activates the layers we
        add) or its group means the layer it was made from."""
        doc = Krita.instance().activeDocument()
        if doc is None:
            return None
        node = doc.activeNode()
        if node is not None:
            node = self.controller.source_of(KritaDocument.key(node)) or node
        return KritaDocument(doc, node)

    def generate(self) -> None:
        self.controller.generate(self.settings(), self._open_target,
                                 control_layers=self.controls.layers())
        self._show()

    def expand(self) -> None:
        pixels, sides = self.expand_pixels.value(), self.expand_sides.currentData()
        _write("expand", f"{pixels} {sides}")
        self.controller.generate(self.settings(), self._open_target,
                                 expansion=Expansion.of(pixels, sides))
        self._show()

    def upscale(self) -> None:
        factor = int(self.upscale_factor.currentData())
        _write("upscale", str(factor))
        self.controller.generate(self.settings(), self._open_target, upscale=factor)
        self._show()

    def cancel(self) -> None:
        self.controller.cancel()
        self.pump()

    def toggle_live(self, on: bool) -> None:
        """Live on: the docker reads the canvas on a faster timer; off: the preview layer
        goes."""
        if on:
            self.controller.live_start(self.settings(), self._open_target)
        else:
            self.controller.live_stop()
        self.timer.setInterval(LIVE_TICK_MS if self.controller.live.on else IDLE_TICK_MS)
        self._show()

    def apply_live(self) -> None:
        self.controller.live_apply()
        self._show()

    def start_daemon(self) -> None:
        self.controller.start_daemon()
        self._show()

    def _endpoint_changed(self, endpoint: str) -> None:
        self.connection.show_endpoint(self.controller.set_endpoint(endpoint))
        self.pump()

    def _keys_changed(self, server_key: str, client_key: str) -> None:
        self.controller.set_keys(server_key, client_key)
        self.pump()

    def preprocess_control(self, row: ControlRow) -> None:
        """"Map" on a control row: its preprocessed map into a new layer."""
        if not row.layer.currentData():
            self.controller.error("Pick the control's layer first.")
        else:
            self.controller.preprocess(row.control(), self._open_target)
        self._show()

    def _result_clicked(self, item: QListWidgetItem) -> None:
        self.controller.toggle(item.data(Qt.UserRole))
        self._show()

    def toggle_last_result(self) -> None:
        self.controller.toggle_last()
        self._show()

    def reuse_last_seed(self) -> None:
        seed = self.controller.reuse_last_seed()
        if seed is not None:
            self.form.show_value(BY_NAME["seed"], seed)
        self._show()
