"""The docker's lists of rows: the LoRAs of a job (:class:`LoraList`) and its control
layers (:class:`ControlList`). A row's editors are made from a schema in plugin/: a LoRA's
weights from ``plugin.editors.LORA_EDITORS`` (the grammar of ``plugin/loraspec.py``), a
control's keys from ``plugin.editors.CONTROL_EDITORS`` (``plugin.controls.FIELDS``), so a
key added there gets its widget here with no edit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PyQt5.QtCore import pyqtSignal
from PyQt5.QtWidgets import (
    QBoxLayout,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from . import widgets
from .plugin import editors, loraspec, offers
from .plugin.editors import CHOICE, CONTROL_EDITORS, LORA_EDITORS
from .plugin.limits import Limits
from .plugin.session import ControlLayer

#: how many of a control's editors share a line under its layer
CONTROL_EDITORS_PER_LINE = 3


def _line(parent: QBoxLayout) -> QHBoxLayout:
    line = QHBoxLayout()
    line.setContentsMargins(0, 0, 0, 0)
    parent.addLayout(line)
    return line


def _drop(row: QWidget) -> None:
    row.setParent(None)
    row.deleteLater()


# ---------------------------------------------------------------- LoRAs


class LoraRow(QWidget):
    """One LoRA: its name, an editor per weight, "T" (its trigger words into the prompt)
    and remove."""

    def __init__(self, owner: LoraList, item: dict[str, Any]) -> None:
        super().__init__()
        self.item = item
        line = QHBoxLayout(self)
        line.setContentsMargins(0, 0, 0, 0)
        line.addWidget(QLabel(item["name"]), 1)
        self.editors: dict[str, QWidget] = {}
        for e in LORA_EDITORS:
            w = self.editors[e.name] = widgets.make(e)
            widgets.show(w, item.get(e.name, e.default))
            widgets.changed_signal(w).connect(
                lambda _=None, key=e.name, w=w: owner.set_value(self, key, widgets.read(w)))
            line.addWidget(w)
        self.words_button = widgets.tool_button("T", "Put this LoRA's trigger words into "
                                                "the prompt")
        self.words_button.clicked.connect(lambda: owner.insert(item["name"]))
        self.remove_button = widgets.tool_button("✕", "Remove this LoRA")
        self.remove_button.clicked.connect(lambda: owner.remove(self))
        line.addWidget(self.words_button)
        line.addWidget(self.remove_button)

    def show_offered(self, offered: list[dict[str, Any]]) -> None:
        name = self.item["name"]
        self.setToolTip(offers.describe_lora(offered, name))
        self.words_button.setEnabled(bool(offers.triggers(offered, name)))


class LoraList(QWidget):
    """The LoRAs of a job: a :class:`LoraRow` per LoRA and an "Add LoRA" list of what the
    daemon offers. Its value is the row's text form (``ink:0.8, detail``), so it is saved
    and sent like every other setting."""

    changed = pyqtSignal()
    insert_words = pyqtSignal(str)   # trigger words to put into the prompt

    def __init__(self) -> None:
        super().__init__()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.rows_layout = QVBoxLayout()
        layout.addLayout(self.rows_layout)
        self.add_combo = QComboBox()
        self.add_combo.activated.connect(self._add_chosen)
        layout.addWidget(self.add_combo)
        self.offered: list[dict[str, Any]] = []
        self.rows: list[LoraRow] = []
        self.set_available([])

    def set_available(self, loras: list[dict[str, Any]]) -> None:
        self.offered = loras
        widgets.set_choices(self.add_combo, [("", offers.add_lora_text(loras))] +
                            [(lo["name"], offers.lora_entry(lo)) for lo in loras])
        for row in self.rows:
            row.show_offered(loras)

    def _add_chosen(self, index: int) -> None:
        name = self.add_combo.itemData(index)
        self.add_combo.setCurrentIndex(0)
        if name and name not in [row.item["name"] for row in self.rows]:
            self._add_row(editors.lora_item(name))
            self.changed.emit()

    def _add_row(self, item: dict[str, Any]) -> None:
        row = LoraRow(self, item)
        row.show_offered(self.offered)
        self.rows.append(row)
        self.rows_layout.addWidget(row)

    def set_value(self, row: LoraRow, key: str, value: float) -> None:
        editors.set_lora_value(row.item, key, value)
        self.changed.emit()

    def insert(self, name: str) -> None:
        words = offers.trigger_text(self.offered, name)
        if words:
            self.insert_words.emit(words)

    def remove(self, row: LoraRow) -> None:
        self.rows.remove(row)
        _drop(row)
        self.changed.emit()

    def text(self) -> str:
        return loraspec.format_text([row.item for row in self.rows])

    def setText(self, text: str) -> None:
        for row in self.rows:
            _drop(row)
        self.rows = []
        try:
            items = loraspec.parse_text(text) or []
        except ValueError:   # a hand-edited setting: start empty rather than fail
            items = []
        for item in items:
            self._add_row(dict(item))


# ---------------------------------------------------------------- control layers


class LayerCombo(QComboBox):
    """The document's paint layers, listed afresh each time it opens (layers come and go);
    the data of an item is the layer's key."""

    def __init__(self, layers: Callable[[], list[tuple[str, str]]]) -> None:
        super().__init__()
        self._layers = layers
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
    """One control: the layer whose drawing steers, "Map" (the preprocessed map into a new
    layer), remove; under them an editor per key of the control item."""

    def __init__(self, owner: ControlList) -> None:
        super().__init__()
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        top = _line(box)
        self.layer = LayerCombo(owner.paint_layers)
        self.layer.setToolTip("The layer the control is drawn on (it is never edited)")
        self.map_button = QPushButton("Map")
        self.map_button.setToolTip("Preprocess to layer: the map this control steers with, "
                                   "as a new layer")
        self.map_button.clicked.connect(lambda: owner.on_map(self))
        remove = widgets.tool_button("✕", "Remove this control")
        remove.clicked.connect(lambda: owner.remove_row(self))
        top.addWidget(self.layer, 2)
        top.addWidget(self.map_button)
        top.addWidget(remove)
        self.editors: dict[str, QWidget] = {}
        line = top
        for i, e in enumerate(CONTROL_EDITORS):
            if i % CONTROL_EDITORS_PER_LINE == 0:
                line = _line(box)
            w = self.editors[e.name] = widgets.make(e)
            if isinstance(w, (QSpinBox, QDoubleSpinBox)):
                w.setPrefix(f"{e.label} ")     # no form label beside it: say what it is
            widgets.show(w, e.default)
            line.addWidget(w, 1 if e.kind == CHOICE else 0)

    def set_offered(self, what: str, choices: list[tuple[str, str]]) -> None:
        """New choices from the daemon for the editors it fills (``what``: ControlNets)."""
        for e in CONTROL_EDITORS:
            if e.offered == what:
                combo = self.editors[e.name]
                assert isinstance(combo, QComboBox)
                widgets.set_choices(combo, choices, combo.currentData() or "")

    def control(self) -> ControlLayer:
        shown = {name: widgets.read(w) for name, w in self.editors.items()}
        return ControlLayer(self.layer.currentData() or "", name=self.layer.currentText(),
                            **editors.control_values(shown))


class ControlList(QWidget):
    """Control layers: each steers the job with a drawing on another layer. "Add control
    layer" adds a :class:`ControlRow`, up to the daemon's ``max_controls``."""

    def __init__(self, paint_layers: Callable[[], list[tuple[str, str]]],
                 on_map: Callable[[ControlRow], None]) -> None:
        super().__init__()
        self.paint_layers, self.on_map = paint_layers, on_map
        self.column = QVBoxLayout(self)
        self.column.setContentsMargins(0, 0, 0, 0)
        self.add_button = QPushButton("Add control layer")
        self.add_button.setToolTip("Steer with your own drawing (scribble, line art, "
                                   "depth…) on another layer (ControlNet)")
        self.add_button.clicked.connect(self.add_row)
        self.column.addWidget(self.add_button)
        self.rows: list[ControlRow] = []
        self.offered: dict[str, list[tuple[str, str]]] = {}
        self.most = Limits().max_controls

    def add_row(self) -> ControlRow:
        row = ControlRow(self)
        for what, choices in self.offered.items():
            row.set_offered(what, choices)
        self.rows.append(row)
        self.column.insertWidget(len(self.rows), row)
        self._enable()
        return row

    def remove_row(self, row: ControlRow) -> None:
        self.rows.remove(row)
        _drop(row)
        self._enable()

    def _enable(self) -> None:
        self.add_button.setEnabled(len(self.rows) < self.most)

    def show_offers(self, hello: dict[str, Any], limits: Limits | None) -> None:
        """What the daemon offers: the lists its hello fills, its ``max_controls``."""
        self.most = (limits or Limits()).max_controls
        self._enable()
        for what in {e.offered for e in CONTROL_EDITORS if e.offered}:
            choices = offers.choices(hello, what)
            if choices != self.offered.get(what):
                self.offered[what] = choices
                for row in self.rows:
                    row.set_offered(what, choices)

    def layers(self) -> list[ControlLayer]:
        """The controls that have a layer picked."""
        return [r.control() for r in self.rows if r.layer.currentData()]
