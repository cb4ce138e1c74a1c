"""The docker's connection section: the endpoint, "Start local daemon" and, folded away
under "Connection", the keys for a remote daemon (docs/security.md). What they mean is the
controller's (``plugin.controller.Controller.set_endpoint`` / ``set_keys``); this only
holds the widgets and says when the user entered something.
"""

from __future__ import annotations

from pathlib import Path

from PyQt5.QtCore import pyqtSignal
from PyQt5.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from . import widgets


class ConnectionSection(QWidget):
    """Endpoint, "Start local daemon", and the Server key / Client key file fields."""

    endpoint_entered = pyqtSignal(str)
    keys_entered = pyqtSignal(str, str)    # server key, client key file

    def __init__(self, endpoint: str, server_key: str, client_key: str) -> None:
        super().__init__()
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.endpoint_edit = QLineEdit(endpoint)
        self.endpoint_edit.setToolTip("Daemon endpoint, e.g. tcp://127.0.0.1:47610")
        self.endpoint_edit.editingFinished.connect(
            lambda: self.endpoint_entered.emit(self.endpoint_edit.text()))
        self.start_button = QPushButton("Start local daemon")
        self.start_button.setToolTip("Run `paintbridge serve` in the background (it keeps "
                                     "running when Krita closes)")
        self.connection_toggle = widgets.fold_button(
            "Connection", "Keys for a remote daemon (see docs/security.md)")
        row.addWidget(self.endpoint_edit, 1)
        row.addWidget(self.start_button)
        row.addWidget(self.connection_toggle)
        column.addLayout(row)
        column.addWidget(self._build_keys(server_key, client_key))
        widgets.folding(self.connection_toggle, self.connection_box)

    def _build_keys(self, server_key: str, client_key: str) -> QWidget:
        self.connection_box = QWidget()
        form = QFormLayout(self.connection_box)
        form.setContentsMargins(0, 0, 0, 0)
        self.server_key_edit = QLineEdit(server_key)
        self.server_key_edit.setPlaceholderText("empty: a local daemon without keys")
        self.server_key_edit.setToolTip("The daemon's public key (40 Z85 characters, printed "
                                        "by `paintbridge serve`), or the path of its "
                                        "server.key; empty for a local daemon")
        self.server_key_edit.editingFinished.connect(self._keys_entered)
        form.addRow("Server key", self.server_key_edit)
        row = QHBoxLayout()
        self.client_key_edit = QLineEdit(client_key)
        self.client_key_edit.setPlaceholderText("NAME.key_secret")
        self.client_key_edit.setToolTip("This machine's secret key file, from `paintbridge "
                                        "keys client NAME` on the daemon's machine")
        self.client_key_edit.editingFinished.connect(self._keys_entered)
        self.client_key_button = QPushButton("…")
        self.client_key_button.setToolTip("Choose the client key file")
        self.client_key_button.setMaximumWidth(32)
        self.client_key_button.clicked.connect(self._pick_client_key)
        row.addWidget(self.client_key_edit, 1)
        row.addWidget(self.client_key_button)
        form.addRow("Client key file", row)
        return self.connection_box

    def _keys_entered(self) -> None:
        self.keys_entered.emit(self.server_key_edit.text(), self.client_key_edit.text())

    def _pick_client_key(self) -> None:
        start = self.client_key_edit.text().strip() or str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Client key file", start,
                                              "Client secret keys (*.key_secret);;All files (*)")
        if path:
            self.client_key_edit.setText(path)
            self._keys_entered()

    def show_endpoint(self, endpoint: str) -> None:
        self.endpoint_edit.setText(endpoint)

    def show_daemon_start(self, offered: bool, starting: bool) -> None:
        """"Start local daemon" shown where it makes sense, disabled while one starts."""
        self.start_button.setVisible(offered)
        self.start_button.setEnabled(not starting)

    def reveal_keys(self) -> None:
        self.connection_toggle.setChecked(True)
