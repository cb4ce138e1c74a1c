"""Qt widgets made from a ``plugin.editors.Editor``, one per field of a schema, and the
few calls every such widget answers (its value, showing a value, its change signal).

Which widget a field gets is decided in ``plugin/editors.py`` (tested without Krita):
a choice list, a number box with its range, a line or a few lines of text. A composite
editor (``rows.LoraList``) joins in by having ``text()``, ``setText()`` and ``changed``.
"""

from __future__ import annotations

from typing import Any

from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QDoubleSpinBox,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QToolButton,
    QWidget,
)

from .plugin.editors import CHOICE, LINES, NUMBER, TEXT, Editor


def make(e: Editor) -> QWidget:
    """The widget for an editor, its tooltip the field's help. A number box shows its
    ``unset_text`` at the minimum; integers beyond 32 bits (seeds) get a double spin box,
    which holds them exactly."""
    w: QWidget
    if e.kind == LINES:
        text = QPlainTextEdit()
        text.setPlaceholderText(e.help)
        text.setMaximumHeight(text.fontMetrics().lineSpacing() * 3 + 12)
        w = text
    elif e.kind == CHOICE:
        combo = QComboBox()
        set_choices(combo, e.choices)
        w = combo
    elif e.kind == NUMBER:
        spin = QSpinBox() if e.integer else QDoubleSpinBox()
        if isinstance(spin, QDoubleSpinBox):
            spin.setDecimals(e.decimals)
        spin.setSingleStep(int(e.step) if isinstance(spin, QSpinBox) else e.step)
        set_range(spin, e.lo, e.hi)
        if e.unset_text:
            spin.setSpecialValueText(e.unset_text)
        w = spin
    elif e.kind == TEXT:
        line = QLineEdit()
        line.setPlaceholderText(e.label)
        w = line
    else:
        raise ValueError(f"{e.name}: no widget for an editor of kind {e.kind!r}")
    w.setToolTip(e.help)
    return w


def set_range(spin: QAbstractSpinBox, lo: float, hi: float) -> None:
    if isinstance(spin, QSpinBox):
        spin.setRange(int(lo), int(hi))
    elif isinstance(spin, QDoubleSpinBox):
        spin.setRange(lo, hi)


def set_choices(combo: QComboBox, choices: Any, keep: Any = None) -> None:
    """Fill a choice list with (value, label) pairs; the value ``keep`` stays chosen when
    it is among them (else the first)."""
    combo.clear()
    for value, label in choices:
        combo.addItem(label, value)
    combo.setCurrentIndex(max(0, combo.findData(keep if keep is not None else "")))


def read(w: QWidget) -> Any:
    """What the widget holds: text, the chosen value ("" for none) or the number."""
    if isinstance(w, QPlainTextEdit):
        return w.toPlainText()
    if isinstance(w, QComboBox):
        return w.currentData() or ""
    if isinstance(w, (QSpinBox, QDoubleSpinBox)):
        return w.value()
    return w.text()      # QLineEdit, or a composite editor's text form


def show(w: QWidget, value: Any) -> None:
    """Show ``value`` (None: empty text, the empty choice)."""
    if isinstance(w, QPlainTextEdit):
        w.setPlainText(value or "")
    elif isinstance(w, QComboBox):
        w.setCurrentIndex(max(0, w.findData(value if value is not None else "")))
    elif isinstance(w, QSpinBox):
        w.setValue(int(value))
    elif isinstance(w, QDoubleSpinBox):
        w.setValue(float(value))
    else:
        w.setText(value or "")


def changed_signal(w: QWidget) -> Any:
    """The signal the widget sends when the user changes it."""
    if isinstance(w, (QPlainTextEdit, QLineEdit)):
        return w.textChanged
    if isinstance(w, QComboBox):
        return w.currentIndexChanged
    if isinstance(w, (QSpinBox, QDoubleSpinBox)):
        return w.valueChanged
    return w.changed     # a composite editor


def tool_button(text: str, tip: str) -> QToolButton:
    button = QToolButton()
    button.setText(text)
    button.setToolTip(tip)
    return button


def fold_button(text: str, tip: str) -> QToolButton:
    """A "▸ Text" button that shows and hides a box (see :func:`fold`)."""
    button = tool_button(text, tip)
    button.setCheckable(True)
    button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
    button.setArrowType(Qt.RightArrow)
    return button


def folding(button: QToolButton, box: QWidget) -> None:
    """``button`` shows and hides ``box``; hidden to begin with."""
    button.toggled.connect(lambda on: fold(button, box, on))
    fold(button, box, False)


def fold(button: QToolButton, box: QWidget, shown: bool) -> None:
    box.setVisible(shown)
    button.setArrowType(Qt.DownArrow if shown else Qt.RightArrow)
