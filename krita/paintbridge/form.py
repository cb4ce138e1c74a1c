"""The docker's parameter form: the mode selector, then a widget per row of
``plugin.params.PARAMS`` (``advanced`` rows folded away), made from the row's editor
(``plugin.editors.for_param``). A row added to PARAMS gets its widget here with no edit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PyQt5.QtCore import pyqtSignal
from PyQt5.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from . import widgets
from .plugin import editors, offers
from .plugin.controller import MODE_LABELS
from .plugin.editors import LORAS
from .plugin.params import PARAMS, Param
from .plugin.session import GenerationSettings
from .rows import LoraList


class ParamForm(QWidget):
    """The settings of the next job as widgets. ``changed`` fires when the user changes
    one (not while the form shows settings or the daemon's lists itself)."""

    changed = pyqtSignal()

    def __init__(self) -> None:
        super().__init__()
        self._loading = True
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout()
        self.mode_combo = QComboBox()
        widgets.set_choices(self.mode_combo, MODE_LABELS.items())
        self.mode_combo.currentIndexChanged.connect(self._changed)
        form.addRow("Mode", self.mode_combo)
        self.reuse_button = QPushButton("Reuse last")
        self.reuse_button.setToolTip("Fix the seed to the last result's")
        beside = {"seed": self.reuse_button}      # extra buttons next to a row's widget
        self.advanced_toggle = widgets.fold_button("Advanced", ", ".join(
            editors.for_param(p).label for p in PARAMS if p.advanced))
        self.advanced_box = QWidget()
        advanced = QFormLayout(self.advanced_box)
        advanced.setContentsMargins(0, 0, 0, 0)
        self.editors = editors.params_editors(PARAMS)
        self.widgets: dict[str, QWidget] = {}
        for p in PARAMS:
            e = self.editors[p.name]
            w = self.widgets[p.name] = LoraList() if e.kind == LORAS else widgets.make(e)
            w.setToolTip(e.help)
            widgets.changed_signal(w).connect(self._changed)
            if isinstance(w, LoraList):
                w.insert_words.connect(self.insert_into_prompt)
            field: Any = w
            if p.name in beside:
                field = QHBoxLayout()
                field.addWidget(w, 1)
                field.addWidget(beside[p.name])
            (advanced if p.advanced else form).addRow(e.label, field)
        column.addLayout(form)
        widgets.folding(self.advanced_toggle, self.advanced_box)
        column.addWidget(self.advanced_toggle)
        column.addWidget(self.advanced_box)
        self._offered: dict[str, list[tuple[str, str]]] = {}   # per from_daemon row
        self._loras: list[dict[str, Any]] | None = None
        self._limits: Any = None
        self._loading = False

    def _changed(self, *_: object) -> None:
        if not self._loading:
            self.changed.emit()

    def _quietly(self, act: Callable[[], None]) -> None:
        """Change widgets without ``changed`` (the form, not the user, changes them)."""
        loading, self._loading = self._loading, True
        try:
            act()
        finally:
            self._loading = loading

    def show_value(self, p: Param, value: Any) -> None:
        widgets.show(self.widgets[p.name], p.to_widget(value) if p.type is not str
                     else value)

    def show_settings(self, s: GenerationSettings) -> None:
        def act() -> None:
            self.mode_combo.setCurrentIndex(max(0, self.mode_combo.findData(s.mode)))
            for p in PARAMS:
                self.show_value(p, s.values[p.name])
        self._quietly(act)

    def settings(self) -> GenerationSettings:
        """The settings as the widgets show them (each row says what stands for None)."""
        return GenerationSettings(mode=self.mode_combo.currentData() or "auto",
                                  **{p.name: p.from_widget(widgets.read(self.widgets[p.name]))
                                     for p in PARAMS})

    def insert_into_prompt(self, words: str) -> None:
        """A LoRA's trigger words at the end of the prompt, unless it holds them already."""
        prompt = self.widgets["prompt"]
        assert isinstance(prompt, QPlainTextEdit)
        text = prompt.toPlainText()
        new = offers.prompt_with(text, words)
        if new != text:
            prompt.setPlainText(new)

    def show_offers(self, choices_for: Callable[[str], list[tuple[str, str]]],
                    loras: list[dict[str, Any]], limits: Any, wanted: GenerationSettings
                    ) -> None:
        """What the daemon offers: the lists it fills (model, upscaler; ``choices_for``
        gives each row's), its LoRAs, and its limits as the number boxes' ranges."""
        for p in PARAMS:
            if not p.from_daemon:
                continue
            choices = choices_for(p.name)
            if choices != self._offered.get(p.name):
                self._offered[p.name] = choices
                combo = self.widgets[p.name]
                assert isinstance(combo, QComboBox)
                self._quietly(lambda c=combo, ch=choices, n=p.name: widgets.set_choices(
                    c, ch, wanted.values[n] or ""))
        if loras != self._loras:
            self._loras = loras
            for w in self.widgets.values():
                if isinstance(w, LoraList):
                    w.set_available(loras)
        if limits is not None and limits != self._limits:
            self._limits = limits
            self._quietly(lambda: self._apply_limits(limits))

    def _apply_limits(self, limits: Any) -> None:
        for p in PARAMS:
            w = self.widgets[p.name]
            if isinstance(w, (QSpinBox, QDoubleSpinBox)):
                widgets.set_range(w, *p.widget_range(limits))
