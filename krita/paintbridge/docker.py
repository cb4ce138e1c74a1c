"""The "Paintbridge" docker: widgets bound to a ``plugin.controller.Controller``.

Every decision (session, keys, daemon start, job state, results) is the controller's, tested
without Krita; this file builds the widgets — one per row of ``plugin.params.PARAMS`` — and
binds them. All network I/O is non-blocking: a QSocketNotifier on each of the session's
FDs wakes the docker when something arrives (the FDs are edge-triggered, so every wake-up
drains the socket completely through ``Controller.pump()``), and a 250 ms timer does the
same as a safety net and drives the connection probe. See docs/krita.md for why not a
thread.
"""

from __future__ import annotations

import html
import time
import traceback
import weakref
from pathlib import Path
from typing import Any

from PyQt5.QtCore import QSize, QSocketNotifier, Qt, QTimer, pyqtSignal
from PyQt5.QtGui import QIcon, QImage, QPixmap
from PyQt5.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from krita import DockWidget, Krita

from .document import KritaDocument
from .plugin import controls, loraspec
from .plugin.controller import MODE_LABELS, Controller, Line
from .plugin.expand import MAX_PIXELS, SIDE_LABELS, Expansion
from .plugin.params import BY_NAME, INT32_MAX, PARAMS, Param, plain_label
from .plugin.protocol import UPSCALE_FACTORS
from .plugin.session import ControlLayer, GenerationSettings

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


# ---------------------------------------------------------------- one widget per param row


class LoraList(QWidget):
    """The LoRAs of a job: one line per LoRA (name, weight, trigger words, remove) and an
    "Add LoRA" list of what the daemon offers. Its value is the row's text form
    (``ink:0.8, detail``), so it is saved and sent like every other setting."""

    changed = pyqtSignal()
    insert_words = pyqtSignal(str)   # trigger words to put into the prompt

    def __init__(self) -> None:
        super().__init__()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.rows_layout = QVBoxLayout()
        layout.addLayout(self.rows_layout)
        self.add_combo = QComboBox()
        self.add_combo.addItem("Add LoRA…", "")
        self.add_combo.activated.connect(self._add_chosen)
        layout.addWidget(self.add_combo)
        self.available: dict[str, dict[str, Any]] = {}
        self.rows: list[tuple[dict[str, Any], QWidget, QDoubleSpinBox]] = []

    def set_available(self, loras: list[dict[str, Any]]) -> None:
        self.available = {lo["name"]: lo for lo in loras}
        self.add_combo.clear()
        self.add_combo.addItem("Add LoRA…" if loras else "Add LoRA… (the daemon has none)",
                               "")
        for lo in loras:
            self.add_combo.addItem(f"{lo['name']}  [{lo.get('arch') or '?'}]", lo["name"])
        for item, row, _ in self.rows:
            row.setToolTip(self._describe(item["name"]))

    def _describe(self, name: str) -> str:
        lo = self.available.get(name)
        if lo is None:
            return f"{name}: this daemon does not offer it"
        words = ", ".join(lo.get("triggers") or []) or "none"
        return f"{name} [{lo.get('arch') or '?'}]; trigger words: {words}"

    def _add_chosen(self, index: int) -> None:
        name = self.add_combo.itemData(index)
        self.add_combo.setCurrentIndex(0)
        if name and name not in [item["name"] for item, _, _ in self.rows]:
            self._add_row({"name": name, "weight": 1.0})
            self.changed.emit()

    def _add_row(self, item: dict[str, Any]) -> None:
        row = QWidget()
        line = QHBoxLayout(row)
        line.setContentsMargins(0, 0, 0, 0)
        label = QLabel(item["name"])
        weight = QDoubleSpinBox()
        weight.setRange(-loraspec.MAX_WEIGHT, loraspec.MAX_WEIGHT)
        weight.setSingleStep(0.05)
        weight.setDecimals(2)
        weight.setValue(item.get("weight", 1.0))
        weight.valueChanged.connect(lambda value, item=item: self._weight(item, value))
        words = QToolButton()
        words.setText("T")
        words.setToolTip("Put this LoRA's trigger words into the prompt")
        triggers = (self.available.get(item["name"]) or {}).get("triggers") or []
        words.setEnabled(bool(triggers))
        words.clicked.connect(lambda _=False, n=item["name"]: self._insert(n))
        remove = QToolButton()
        remove.setText("✕")
        remove.setToolTip("Remove this LoRA")
        remove.clicked.connect(lambda _=False, r=row: self._remove(r))
        for w in (label, weight, words, remove):
            line.addWidget(w, 1 if w is label else 0)
        row.setToolTip(self._describe(item["name"]))
        self.rows.append((item, row, weight))
        self.rows_layout.addWidget(row)

    def _weight(self, item: dict[str, Any], value: float) -> None:
        te = item.get("text_encoder_weight")
        item["weight"] = value
        if te is not None and te == value:
            item.pop("text_encoder_weight")
        self.changed.emit()

    def _insert(self, name: str) -> None:
        triggers = (self.available.get(name) or {}).get("triggers") or []
        if triggers:
            self.insert_words.emit(", ".join(triggers[:3]))

    def _remove(self, row: QWidget) -> None:
        self.rows = [r for r in self.rows if r[1] is not row]
        row.setParent(None)
        row.deleteLater()
        self.changed.emit()

    def text(self) -> str:
        return loraspec.format_text([item for item, _, _ in self.rows])

    def setText(self, text: str) -> None:
        for _, row, _ in self.rows:
            row.setParent(None)
            row.deleteLater()
        self.rows = []
        try:
            items = loraspec.parse_text(text) or []
        except ValueError:   # a hand-edited setting: start empty rather than fail
            items = []
        for item in items:
            self._add_row(dict(item))


class LayerCombo(QComboBox):
    """The document's paint layers, listed afresh each time it opens (layers come and go);
    the data of an item is the layer's key."""

    def __init__(self, layers: Any) -> None:
        super().__init__()
        self._layers = layers   # () -> [(name, key)]
        self.refill()

    def refill(self) -> None:
        key = self.currentData()
        self.blockSignals(True)
        self.clear()
        for name, k in self._layers():
            self.addItem(name, k)
        self.setCurrentIndex(max(0, self.findData(key)) if key else -1)
        self.blockSignals(False)

    def showPopup(self) -> None:
        self.refill()
        super().showPopup()

    def pick(self, name: str) -> bool:
        """Choose the layer called ``name``; whether there is one."""
        self.refill()
        index = self.findText(name)
        self.setCurrentIndex(index)
        return index >= 0


class ControlRow(QWidget):
    """One control: the layer whose drawing steers, its type, ControlNet, strength, range
    and preprocessor; "Map" puts the preprocessed map into a new layer."""

    def __init__(self, docker: PaintbridgeDocker) -> None:
        super().__init__()
        self.docker = docker
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        top, bottom = QHBoxLayout(), QHBoxLayout()
        self.layer = LayerCombo(docker.paint_layers)
        self.layer.setToolTip("The layer the control is drawn on (it is never edited)")
        self.type = QComboBox()
        for value, label in controls.TYPES.items():
            self.type.addItem(label, value)
        self.type.setToolTip("What the layer holds")
        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.0, controls.MAX_STRENGTH)
        self.strength.setSingleStep(0.1)
        self.strength.setValue(1.0)
        self.strength.setToolTip("How strongly it steers (0-2)")
        self.map_button = QPushButton("Map")
        self.map_button.setToolTip("Preprocess to layer: the map this control steers with, "
                                   "as a new layer")
        self.map_button.clicked.connect(lambda: docker.preprocess_control(self))
        remove = QToolButton()
        remove.setText("✕")
        remove.setToolTip("Remove this control")
        remove.clicked.connect(lambda: docker.remove_control(self))
        for w, stretch in ((self.layer, 2), (self.type, 1), (self.strength, 0),
                           (self.map_button, 0), (remove, 0)):
            top.addWidget(w, stretch)
        self.model = QComboBox()
        self.model.setToolTip("The ControlNet; Auto: one the daemon has for the type and "
                              "the model")
        self.preprocess = QComboBox()
        self.preprocess.addItem("Usual for the type", "")
        for value, label in controls.PREPROCESSORS.items():
            self.preprocess.addItem(label, value)
        self.start, self.end = QDoubleSpinBox(), QDoubleSpinBox()
        for spin, value, tip in ((self.start, 0.0, "Starts at this fraction of the steps"),
                                 (self.end, 1.0, "Stops at this fraction of the steps")):
            spin.setRange(0.0, 1.0)
            spin.setSingleStep(0.05)
            spin.setValue(value)
            spin.setToolTip(tip)
        for w, stretch in ((self.model, 2), (self.preprocess, 1), (self.start, 0),
                           (self.end, 0)):
            bottom.addWidget(w, stretch)
        box.addLayout(top)
        box.addLayout(bottom)
        self.set_models([])

    def set_models(self, names: list[str]) -> None:
        current = self.model.currentData() or ""
        self.model.clear()
        self.model.addItem("Auto", "")
        for name in names:
            self.model.addItem(name, name)
        self.model.setCurrentIndex(max(0, self.model.findData(current)))

    def control(self) -> ControlLayer:
        return ControlLayer(self.layer.currentData() or "", self.type.currentData(),
                            self.model.currentData() or None, self.strength.value(),
                            self.start.value(), self.end.value(),
                            self.preprocess.currentData() or None, self.layer.currentText())


def param_widget(p: Param) -> QWidget:
    """The widget for a row: text box, choice list or spin box (its unset value shown as
    words at the minimum). Integers beyond 32 bits (seeds) get a double spin box, which
    holds them exactly."""
    if p.wire == "loras":
        return LoraList()
    if p.type is str:
        if p.multiline:
            w = QPlainTextEdit()
            w.setPlaceholderText(p.help)
            w.setMaximumHeight(w.fontMetrics().lineSpacing() * 3 + 12)
            return w
        if p.choices or p.from_daemon:
            combo = QComboBox()
            for value, label in p.choices.items():
                combo.addItem(label, value)
            return combo
        return QLineEdit()
    lo, hi = p.widget_range()
    spin = QSpinBox() if p.type is int and hi <= INT32_MAX else QDoubleSpinBox()
    if isinstance(spin, QDoubleSpinBox):
        spin.setDecimals(p.decimals)
    spin.setSingleStep(int(p.step) if isinstance(spin, QSpinBox) else p.step)
    set_range(spin, lo, hi)
    if p.unset is not None:
        spin.setSpecialValueText(p.unset_text)
    return spin


def set_range(spin: QAbstractSpinBox, lo: float, hi: float) -> None:
    if isinstance(spin, QSpinBox):
        spin.setRange(int(lo), int(hi))
    else:
        spin.setRange(lo, hi)


def widget_value(p: Param, w: QWidget) -> Any:
    """The widget's value as the row's setting (the row says what stands for None)."""
    if isinstance(w, QPlainTextEdit):
        raw: Any = w.toPlainText()
    elif isinstance(w, (QLineEdit, LoraList)):
        raw = w.text()
    elif isinstance(w, QComboBox):
        raw = w.currentData() or ""
    else:
        raw = w.value()
    return p.from_widget(raw)


def show_value(p: Param, w: QWidget, value: Any) -> None:
    if isinstance(w, QPlainTextEdit):
        w.setPlainText(value or "")
    elif isinstance(w, (QLineEdit, LoraList)):
        w.setText(value or "")
    elif isinstance(w, QComboBox):
        w.setCurrentIndex(max(0, w.findData(value if value is not None else "")))
    else:
        shown = p.to_widget(value)
        w.setValue(int(shown) if isinstance(w, QSpinBox) else float(shown))


def changed_signal(w: QWidget) -> Any:
    if isinstance(w, LoraList):
        return w.changed
    if isinstance(w, QPlainTextEdit):
        return w.textChanged
    if isinstance(w, QLineEdit):
        return w.textChanged
    if isinstance(w, QComboBox):
        return w.currentIndexChanged
    return w.valueChanged


def fold_button(text: str, tip: str) -> QToolButton:
    button = QToolButton()
    button.setText(text)
    button.setToolTip(tip)
    button.setCheckable(True)
    button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
    button.setArrowType(Qt.RightArrow)
    return button


def fold(button: QToolButton, box: QWidget, shown: bool) -> None:
    box.setVisible(shown)
    button.setArrowType(Qt.DownArrow if shown else Qt.RightArrow)


class PaintbridgeDocker(DockWidget):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Paintbridge")
        taken = {getattr(d, "window_index", -1) for d in (r() for r in _DOCKERS) if d}
        self.window_index = next(i for i in range(len(taken) + 1) if i not in taken)
        _DOCKERS.append(weakref.ref(self))
        self.controller = Controller(_read, _write, self.window_index)
        self.widgets: dict[str, QWidget] = {}
        self.notifiers: list[QSocketNotifier] = []
        self._generation = -1           # the controller's socket the notifiers watch
        self._offered: dict[str, list[tuple[str, str]]] = {}   # per from_daemon row
        self._loras: list[dict[str, Any]] | None = None
        self._controlnets: list[str] = []
        self._limits: Any = None
        self._preview: Any = None
        self._lines: dict[int, Line] = {}
        self._loading = True
        self._build()
        self._apply(self.controller.settings)
        self._loading = False
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
        outer.addLayout(self._build_connection_row())
        outer.addWidget(self._build_connection_box())
        outer.addLayout(self._build_params())
        outer.addWidget(self._build_controls())

        buttons = QHBoxLayout()
        self.generate_button = QPushButton("Generate")
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.generate_button, 1)
        buttons.addWidget(self.cancel_button)
        outer.addLayout(buttons)

        live = QHBoxLayout()
        self.live_button = QPushButton("Live")
        self.live_button.setCheckable(True)
        self.live_button.setToolTip("The picture follows the brush: a preview layer above "
                                    "the layer you paint on shows the newest result")
        self.live_button.toggled.connect(self.toggle_live)
        self.apply_button = QPushButton("Apply")
        self.apply_button.setToolTip("Keep the live result as a new layer")
        self.apply_button.clicked.connect(self.apply_live)
        live.addWidget(self.live_button, 1)
        live.addWidget(self.apply_button)
        outer.addLayout(live)
        outer.addLayout(self._build_expand_row())
        outer.addLayout(self._build_upscale_row())

        prow = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.preview_label = QLabel()
        self.preview_label.setFixedSize(64, 64)
        self.preview_label.setAlignment(Qt.AlignCenter)
        prow.addWidget(self.progress, 1)
        prow.addWidget(self.preview_label)
        outer.addLayout(prow)
        self.message_label = QLabel()
        self.message_label.setWordWrap(True)
        self.message_label.setTextFormat(Qt.PlainText)
        self.message_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        outer.addWidget(self.message_label)

        outer.addWidget(QLabel("Results (click to show/hide)"))
        self.results_list = QListWidget()
        self.results_list.setViewMode(QListWidget.IconMode)
        self.results_list.setIconSize(QSize(64, 64))
        self.results_list.setMinimumHeight(84)
        self.results_list.itemClicked.connect(self._result_clicked)
        outer.addWidget(self.results_list, 1)
        self.setWidget(panel)

    def _build_controls(self) -> QWidget:
        """Control layers: each steers the job with a drawing on another layer."""
        box = QWidget()
        column = QVBoxLayout(box)
        column.setContentsMargins(0, 0, 0, 0)
        self.add_control_button = QPushButton("Add control layer")
        self.add_control_button.setToolTip("Steer with your own drawing (scribble, line art, "
                                           "depth…) on another layer (ControlNet)")
        self.add_control_button.clicked.connect(self.add_control)
        column.addWidget(self.add_control_button)
        self.control_rows: list[ControlRow] = []
        self._controls_column = column
        return box

    def add_control(self) -> ControlRow:
        row = ControlRow(self)
        row.set_models(self.controller.controlnet_names())
        self.control_rows.append(row)
        self._controls_column.insertWidget(len(self.control_rows), row)
        self.add_control_button.setEnabled(len(self.control_rows) < 4)
        return row

    def remove_control(self, row: ControlRow) -> None:
        self.control_rows.remove(row)
        row.setParent(None)
        row.deleteLater()
        self.add_control_button.setEnabled(True)

    def control_layers(self) -> list[ControlLayer]:
        """The controls that have a layer picked."""
        return [r.control() for r in self.control_rows if r.layer.currentData()]

    def paint_layers(self) -> list[tuple[str, str]]:
        doc = Krita.instance().activeDocument()
        return KritaDocument.paint_layers_of(doc) if doc is not None else []

    def preprocess_control(self, row: ControlRow) -> None:
        if not row.layer.currentData():
            self.controller.error("Pick the control's layer first.")
        else:
            self.controller.preprocess(row.control(), self._open_target)
        self._show()

    def _build_expand_row(self) -> QHBoxLayout:
        """Expand: grow the canvas by N px on the chosen sides and paint the new area."""
        row = QHBoxLayout()
        self.expand_button = QPushButton("Expand")
        self.expand_button.setToolTip("Grow the canvas and paint the new area as a new layer "
                                      "(the canvas grows when the result is there; Undo "
                                      "shrinks it again)")
        self.expand_button.clicked.connect(self.expand)
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
        row.addWidget(self.expand_button, 1)
        row.addWidget(self.expand_pixels)
        row.addWidget(self.expand_sides)
        return row

    def _build_upscale_row(self) -> QHBoxLayout:
        """Upscale: the layer (or the selection's box) enlarged into a new document."""
        row = QHBoxLayout()
        self.upscale_button = QPushButton("Upscale")
        self.upscale_button.setToolTip("Enlarge the layer (or the selection's bounding box) "
                                       "into a new document, refined at full resolution "
                                       "(Refine strength, Upscaler); this one stays as it is")
        self.upscale_button.clicked.connect(self.upscale)
        self.upscale_factor = QComboBox()
        for factor in UPSCALE_FACTORS:
            self.upscale_factor.addItem(f"×{factor}", factor)
        saved = _read("upscale")
        self.upscale_factor.setCurrentIndex(
            max(0, self.upscale_factor.findData(int(saved) if saved.isdigit() else 2)))
        row.addWidget(self.upscale_button, 1)
        row.addWidget(self.upscale_factor)
        return row

    def _build_connection_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.endpoint_edit = QLineEdit(self.controller.session.endpoint)
        self.endpoint_edit.setToolTip("Daemon endpoint, e.g. tcp://127.0.0.1:47610")
        self.endpoint_edit.editingFinished.connect(self._endpoint_changed)
        self.start_button = QPushButton("Start local daemon")
        self.start_button.setToolTip("Run `paintbridge serve` in the background (it keeps "
                                     "running when Krita closes)")
        self.start_button.clicked.connect(self.start_daemon)
        self.connection_toggle = fold_button("Connection",
                                             "Keys for a remote daemon (see docs/security.md)")
        row.addWidget(self.endpoint_edit, 1)
        row.addWidget(self.start_button)
        row.addWidget(self.connection_toggle)
        return row

    def _build_connection_box(self) -> QWidget:
        self.connection_box = QWidget()
        cform = QFormLayout(self.connection_box)
        cform.setContentsMargins(0, 0, 0, 0)
        self.server_key_edit = QLineEdit(self.controller.server_key)
        self.server_key_edit.setPlaceholderText("empty: a local daemon without keys")
        self.server_key_edit.setToolTip("The daemon's public key (40 Z85 characters, printed "
                                        "by `paintbridge serve`), or the path of its "
                                        "server.key; empty for a local daemon")
        self.server_key_edit.editingFinished.connect(self._keys_changed)
        cform.addRow("Server key", self.server_key_edit)
        krow = QHBoxLayout()
        self.client_key_edit = QLineEdit(self.controller.client_key)
        self.client_key_edit.setPlaceholderText("NAME.key_secret")
        self.client_key_edit.setToolTip("This machine's secret key file, from `paintbridge "
                                        "keys client NAME` on the daemon's machine")
        self.client_key_edit.editingFinished.connect(self._keys_changed)
        self.client_key_button = QPushButton("…")
        self.client_key_button.setToolTip("Choose the client key file")
        self.client_key_button.setMaximumWidth(32)
        self.client_key_button.clicked.connect(self._pick_client_key)
        krow.addWidget(self.client_key_edit, 1)
        krow.addWidget(self.client_key_button)
        cform.addRow("Client key file", krow)
        self.connection_toggle.toggled.connect(
            lambda on: fold(self.connection_toggle, self.connection_box, on))
        fold(self.connection_toggle, self.connection_box, False)
        return self.connection_box

    def _build_params(self) -> QVBoxLayout:
        """The mode selector, then a row per parameter (``advanced`` ones folded away)."""
        column = QVBoxLayout()
        form = QFormLayout()
        self.mode_combo = QComboBox()
        for mode, label in MODE_LABELS.items():
            self.mode_combo.addItem(label, mode)
        self.mode_combo.currentIndexChanged.connect(self._save)
        form.addRow("Mode", self.mode_combo)
        self.reuse_button = QPushButton("Reuse last")
        self.reuse_button.setToolTip("Fix the seed to the last result's")
        self.reuse_button.clicked.connect(self.reuse_last_seed)
        beside = {"seed": self.reuse_button}      # extra buttons next to a row's widget
        self.advanced_toggle = fold_button("Advanced", ", ".join(
            plain_label(p.label) for p in PARAMS if p.advanced))
        self.advanced_box = QWidget()
        advanced = QFormLayout(self.advanced_box)
        advanced.setContentsMargins(0, 0, 0, 0)
        for p in PARAMS:
            w = self.widgets[p.name] = param_widget(p)
            w.setToolTip(p.help)
            changed_signal(w).connect(self._save)
            if isinstance(w, LoraList):
                w.insert_words.connect(self.insert_into_prompt)
            field: Any = w
            if p.name in beside:
                field = QHBoxLayout()
                field.addWidget(w, 1)
                field.addWidget(beside[p.name])
            (advanced if p.advanced else form).addRow(plain_label(p.label), field)
        column.addLayout(form)
        self.advanced_toggle.toggled.connect(
            lambda on: fold(self.advanced_toggle, self.advanced_box, on))
        fold(self.advanced_toggle, self.advanced_box, False)
        column.addWidget(self.advanced_toggle)
        column.addWidget(self.advanced_box)
        return column

    def _apply(self, s: GenerationSettings) -> None:
        self.mode_combo.setCurrentIndex(max(0, self.mode_combo.findData(s.mode)))
        for p in PARAMS:
            show_value(p, self.widgets[p.name], s.values[p.name])

    def settings(self) -> GenerationSettings:
        """The settings as the widgets show them."""
        return GenerationSettings(mode=self.mode_combo.currentData() or "auto",
                                  **{p.name: widget_value(p, self.widgets[p.name])
                                     for p in PARAMS})

    def _save(self, *_: object) -> None:
        if not self._loading:
            self.controller.save_settings(self.settings())

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
                                          control_layers=self.control_layers())
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
        self.start_button.setVisible(c.can_start_daemon)
        self.start_button.setEnabled(not c.starting_daemon)
        if c.reveal_keys:
            self.connection_toggle.setChecked(True)
            c.reveal_keys = False
        self._fill_models()
        self._fill_loras()
        names = self.controller.controlnet_names()
        if names != self._controlnets:
            self._controlnets = names
            for row in self.control_rows:
                row.set_models(names)
        self._apply_limits()
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

    def insert_into_prompt(self, words: str) -> None:
        """A LoRA's trigger words at the end of the prompt, unless it holds them already."""
        prompt = self.widgets["prompt"]
        text = prompt.toPlainText().rstrip()
        if words.lower() not in text.lower():
            prompt.setPlainText(f"{text}, {words}" if text else words)

    def _fill_loras(self) -> None:
        offered = self.controller.lora_choices()
        if offered == self._loras:
            return
        self._loras = offered
        lists = [w for w in self.widgets.values() if isinstance(w, LoraList)]
        for w in lists:
            w.set_available(offered)

    def _fill_models(self) -> None:
        """The selectors whose choices the daemon offers (model, upscaler)."""
        for p in PARAMS:
            if not p.from_daemon:
                continue
            choices = self.controller.daemon_choices(p.name)
            if choices == self._offered.get(p.name):
                continue
            self._offered[p.name] = choices
            combo = self.widgets[p.name]
            loading, self._loading = self._loading, True
            combo.clear()
            for value, label in choices:
                combo.addItem(label, value)
            combo.setCurrentIndex(max(0, combo.findData(
                self.controller.settings.values[p.name] or "")))
            self._loading = loading

    def _apply_limits(self) -> None:
        """The daemon's limits (e.g. max_steps) become the spin boxes' ranges."""
        limits = self.controller.limits
        if limits is None or limits == self._limits:
            return
        self._limits = limits
        loading, self._loading = self._loading, True
        for p in PARAMS:
            w = self.widgets[p.name]
            if isinstance(w, QAbstractSpinBox):
                set_range(w, *p.widget_range(limits))
        self._loading = loading

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
                                 control_layers=self.control_layers())
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

    def _endpoint_changed(self) -> None:
        self.endpoint_edit.setText(self.controller.set_endpoint(self.endpoint_edit.text()))
        self.pump()

    def _keys_changed(self) -> None:
        self.controller.set_keys(self.server_key_edit.text(), self.client_key_edit.text())
        self.pump()

    def _pick_client_key(self) -> None:
        start = self.client_key_edit.text().strip() or str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Client key file", start,
                                              "Client secret keys (*.key_secret);;All files (*)")
        if path:
            self.client_key_edit.setText(path)
            self._keys_changed()

    def _result_clicked(self, item: QListWidgetItem) -> None:
        self.controller.toggle(item.data(Qt.UserRole))
        self._show()

    def toggle_last_result(self) -> None:
        self.controller.toggle_last()
        self._show()

    def reuse_last_seed(self) -> None:
        seed = self.controller.reuse_last_seed()
        if seed is not None:
            show_value(BY_NAME["seed"], self.widgets["seed"], seed)
        self._show()
