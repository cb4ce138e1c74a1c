"""The "Paintbridge" docker: settings, Generate/Cancel, progress and the session's results.

All network I/O is non-blocking: a QSocketNotifier on the ZeroMQ socket's FD wakes the
docker when something arrives (the FD is edge-triggered, so every wake-up drains the socket
completely through ``Session.poll()``), and a 250 ms timer does the same as a safety net
and drives the connection probe (``Session.keepalive``). See docs/krita.md for why not a
thread.
"""

from __future__ import annotations

import time
import traceback
import uuid
import weakref
from pathlib import Path
from typing import Any

from PyQt5.QtCore import QRegExp, QSize, QSocketNotifier, Qt, QTimer
from PyQt5.QtGui import QIcon, QImage, QPixmap, QRegExpValidator
from PyQt5.QtWidgets import (
    QCheckBox,
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
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from krita import DockWidget, Krita

from .document import KritaDocument
from .plugin import launcher, protocol
from .plugin.client import DaemonError, JobState, default_endpoint
from .plugin.protocol import ErrorCode, ProtocolError
from .plugin.session import GenerationSettings, Session, UnsupportedDocument

SETTINGS_GROUP = "paintbridge"
MODE_LABELS = {"auto": "Auto (inpaint a selection, else image-to-image)",
               "txt2img": "Text to image", "img2img": "Image to image", "inpaint": "Inpaint"}
LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")
MAX_SEED = 2**32 - 1

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


def is_loopback(endpoint: str) -> bool:
    if endpoint.startswith("ipc://"):
        return True
    host = endpoint.split("://", 1)[-1].rsplit(":", 1)[0]
    return host in LOOPBACK


def _read(key: str) -> str:
    return Krita.instance().readSetting(SETTINGS_GROUP, key, "")


def _write(key: str, value: str) -> None:
    Krita.instance().writeSetting(SETTINGS_GROUP, key, value)


def _client_id(index: int) -> str:
    """This Krita's identity at the daemon, kept in kritarc so that after a restart the
    daemon still hands over results (``fetch``) of jobs that finished meanwhile. A second
    window gets its own id: the daemon gives a routing id to its newest connection only."""
    base = _read("client_id")
    if not base:
        base = uuid.uuid4().hex
        _write("client_id", base)
    return base if index == 0 else f"{base}-{index + 1}"


class _KeyErrorClient:
    """Stands in for a Client whose keys could not be loaded (unreadable key file, malformed
    server key): nothing is sent, and every attempt says why, so the status line and
    Generate show the key problem instead of a connection that would never work."""

    def __init__(self, endpoint: str, message: str) -> None:
        self.endpoint, self.message = endpoint, message
        self.jobs: dict[str, Any] = {}
        self.connected = self.auth_refused = False
        self.client_id = ""

    def filenos(self) -> list[int]:
        return []

    def send_request(self, *_: Any, **__: Any) -> str:
        raise DaemonError(ErrorCode.BAD_FIELD, self.message)

    submit = cancel = fetch = send_request

    def take_reply(self, rid: str) -> None:
        return None

    def forget_request(self, rid: str) -> None:
        pass

    def pump(self, timeout_ms: int = 0) -> list[Any]:
        return []

    def close(self) -> None:
        pass


class PaintbridgeDocker(DockWidget):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Paintbridge")
        taken = {getattr(d, "window_index", -1) for d in (r() for r in _DOCKERS) if d}
        self.window_index = next(i for i in range(len(taken) + 1) if i not in taken)
        _DOCKERS.append(weakref.ref(self))
        self.client_id = _client_id(self.window_index)
        self.key_error: str | None = None
        keys = _read("server_key"), _read("client_key")
        try:
            self.session = self._open_session(_read("endpoint") or default_endpoint(), *keys)
        except Exception:  # a malformed endpoint in kritarc: start from the default
            self.session = self._open_session(default_endpoint(), *keys)
        self.target: KritaDocument | None = None    # where the running job's result goes
        self.result_layers: list[Any] = []
        self._source_of: dict[Any, Any] = {}        # result layer/group id -> its source
        self.last_seed: int | None = None
        self.daemon_proc: Any = None                # "Start local daemon" process
        self._daemon_started = 0.0
        self._loading = True
        self._build()
        self._apply(GenerationSettings.from_json(_read("settings") or None))
        self._loading = False
        self.notifiers: list[QSocketNotifier] = []
        self._watch_socket()
        self.timer = QTimer(self)
        self.timer.setInterval(250)
        self.timer.timeout.connect(self.pump)
        self.timer.start()
        self._show_connection()
        self._set_running(False)

    # ---------------------------------------------------------------- widgets

    def _build(self) -> None:
        panel = QWidget(self)
        panel.setObjectName("paintbridgePanel")
        outer = QVBoxLayout(panel)

        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        outer.addWidget(self.status_label)
        row = QHBoxLayout()
        self.endpoint_edit = QLineEdit(self.session.endpoint)
        self.endpoint_edit.setToolTip("Daemon endpoint, e.g. tcp://127.0.0.1:47610")
        self.endpoint_edit.editingFinished.connect(self._endpoint_changed)
        self.start_button = QPushButton("Start local daemon")
        self.start_button.setToolTip("Run `paintbridge serve` in the background (it keeps "
                                     "running when Krita closes)")
        self.start_button.clicked.connect(self.start_daemon)
        self.connection_toggle = QToolButton()
        self.connection_toggle.setText("Connection")
        self.connection_toggle.setToolTip("Keys for a remote daemon (see docs/security.md)")
        self.connection_toggle.setCheckable(True)
        self.connection_toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.connection_toggle.toggled.connect(self._show_connection_box)
        row.addWidget(self.endpoint_edit, 1)
        row.addWidget(self.start_button)
        row.addWidget(self.connection_toggle)
        outer.addLayout(row)

        self.connection_box = QWidget()
        cform = QFormLayout(self.connection_box)
        cform.setContentsMargins(0, 0, 0, 0)
        self.server_key_edit = QLineEdit(_read("server_key"))
        self.server_key_edit.setPlaceholderText("empty: a local daemon without keys")
        self.server_key_edit.setToolTip("The daemon's public key (40 Z85 characters, printed "
                                        "by `paintbridge serve`), or the path of its "
                                        "server.key; empty for a local daemon")
        self.server_key_edit.editingFinished.connect(self._keys_changed)
        cform.addRow("Server key", self.server_key_edit)
        krow = QHBoxLayout()
        self.client_key_edit = QLineEdit(_read("client_key"))
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
        outer.addWidget(self.connection_box)
        self._show_connection_box(False)
        self.connection_toggle.setChecked(bool(self.server_key_edit.text() or self.key_error))

        form = QFormLayout()
        self.model_combo = QComboBox()
        form.addRow("Model", self.model_combo)
        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setPlaceholderText("Describe what to paint")
        self.prompt_edit.setMaximumHeight(72)
        form.addRow("Prompt", self.prompt_edit)
        self.negative_edit = QPlainTextEdit()
        self.negative_edit.setPlaceholderText("What to avoid")
        self.negative_edit.setMaximumHeight(44)
        form.addRow("Negative", self.negative_edit)
        self.mode_combo = QComboBox()
        for mode in MODE_LABELS:
            self.mode_combo.addItem(MODE_LABELS[mode], mode)
        form.addRow("Mode", self.mode_combo)

        srow = QHBoxLayout()
        self.strength_auto = QCheckBox("auto")
        self.strength_auto.setToolTip("The daemon's default: 100 % to inpaint, 60 % for "
                                      "image to image")
        self.strength_slider = QSlider(Qt.Horizontal)
        self.strength_slider.setRange(1, 100)
        self.strength_value = QLabel()
        self.strength_value.setMinimumWidth(36)
        self.strength_slider.valueChanged.connect(
            lambda v: self.strength_value.setText(f"{v} %"))
        self.strength_auto.toggled.connect(lambda on: self.strength_slider.setEnabled(not on))
        srow.addWidget(self.strength_auto)
        srow.addWidget(self.strength_slider, 1)
        srow.addWidget(self.strength_value)
        form.addRow("Strength", srow)

        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(0, 200)
        self.steps_spin.setSpecialValueText("model default")
        form.addRow("Steps", self.steps_spin)
        self.cfg_spin = QDoubleSpinBox()
        self.cfg_spin.setRange(0.0, 50.0)
        self.cfg_spin.setSingleStep(0.5)
        self.cfg_spin.setSpecialValueText("model default")
        form.addRow("CFG", self.cfg_spin)
        self.sampler_combo = QComboBox()
        self.sampler_combo.addItems(protocol.SAMPLERS)
        form.addRow("Sampler", self.sampler_combo)

        seed_row = QHBoxLayout()
        self.seed_random = QCheckBox("random")
        self.seed_edit = QLineEdit()
        self.seed_edit.setValidator(QRegExpValidator(QRegExp(r"\d{1,10}"), self))
        self.seed_random.toggled.connect(lambda on: self.seed_edit.setEnabled(not on))
        self.reuse_button = QPushButton("Reuse last")
        self.reuse_button.setToolTip("Fix the seed to the last result's")
        self.reuse_button.clicked.connect(self.reuse_last_seed)
        seed_row.addWidget(self.seed_random)
        seed_row.addWidget(self.seed_edit, 1)
        seed_row.addWidget(self.reuse_button)
        form.addRow("Seed", seed_row)
        self.count_spin = QSpinBox()
        self.count_spin.setRange(1, 8)
        form.addRow("Count", self.count_spin)
        outer.addLayout(form)

        buttons = QHBoxLayout()
        self.generate_button = QPushButton("Generate")
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.generate_button, 1)
        buttons.addWidget(self.cancel_button)
        outer.addLayout(buttons)

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

        for signal in (self.prompt_edit.textChanged, self.negative_edit.textChanged,
                       self.mode_combo.currentIndexChanged, self.model_combo.activated,
                       self.strength_auto.toggled, self.strength_slider.valueChanged,
                       self.steps_spin.valueChanged, self.cfg_spin.valueChanged,
                       self.sampler_combo.currentIndexChanged, self.seed_random.toggled,
                       self.seed_edit.textChanged, self.count_spin.valueChanged):
            signal.connect(self._save)

    def _apply(self, s: GenerationSettings) -> None:
        self.prompt_edit.setPlainText(s.prompt)
        self.negative_edit.setPlainText(s.negative_prompt)
        self.mode_combo.setCurrentIndex(max(0, self.mode_combo.findData(s.mode)))
        self._wanted_model = s.model
        self.strength_auto.setChecked(s.strength is None)
        self.strength_slider.setValue(round((s.strength or 1.0) * 100))
        self.strength_value.setText(f"{self.strength_slider.value()} %")
        self.steps_spin.setValue(s.steps or 0)
        self.cfg_spin.setValue(s.guidance or 0.0)
        self.sampler_combo.setCurrentText(s.sampler)
        self.seed_random.setChecked(s.seed is None)
        self.seed_edit.setText("" if s.seed is None else str(s.seed))
        self.seed_edit.setEnabled(s.seed is not None)
        self.count_spin.setValue(s.count)
        self._fill_models()

    def settings(self) -> GenerationSettings:
        """The settings as the widgets show them."""
        seed_text = self.seed_edit.text().strip()
        seed = None if self.seed_random.isChecked() or not seed_text else min(int(seed_text),
                                                                               MAX_SEED)
        return GenerationSettings(
            prompt=self.prompt_edit.toPlainText(),
            negative_prompt=self.negative_edit.toPlainText(),
            model=self.model_combo.currentData() or None,
            mode=self.mode_combo.currentData() or "auto",
            strength=None if self.strength_auto.isChecked()
            else self.strength_slider.value() / 100,
            steps=self.steps_spin.value() or None,
            guidance=self.cfg_spin.value() or None,
            sampler=self.sampler_combo.currentText(),
            seed=seed,
            count=self.count_spin.value())

    def _save(self, *_: object) -> None:
        if not self._loading:
            if self.model_combo.count():
                self._wanted_model = self.model_combo.currentData() or None
            _write("settings", self.settings().to_json())

    def _fill_models(self) -> None:
        info = self.session.info or {}
        default = info.get("default_model")
        names = self.session.models()
        wanted = getattr(self, "_wanted_model", None)
        loading, self._loading = self._loading, True
        self.model_combo.clear()
        self.model_combo.addItem(f"Daemon default ({default})" if default else "Daemon default",
                                 "")
        for name in names:
            self.model_combo.addItem(name, name)
        if wanted and wanted not in names:
            self.model_combo.addItem(f"{wanted} (not offered)", wanted)
        if wanted:
            self.model_combo.setCurrentIndex(max(0, self.model_combo.findData(wanted)))
        self._loading = loading

    # ---------------------------------------------------------------- connection

    def canvasChanged(self, canvas: Any) -> None:
        pass

    def _watch_socket(self) -> None:
        """Messages and connection events (a dropped daemon) both wake the docker."""
        for notifier in self.notifiers:
            notifier.setEnabled(False)
            notifier.deleteLater()
        self.notifiers = []
        for fd in self.session.client.filenos():
            notifier = QSocketNotifier(fd, QSocketNotifier.Read, self)
            notifier.activated.connect(self.pump)
            self.notifiers.append(notifier)

    def _open_session(self, endpoint: str, server_key: str, client_key: str) -> Session:
        """A session with these keys; keys that cannot be loaded give a session that is
        never connected and says why (``key_error``). A malformed endpoint raises."""
        options: dict[str, Any] = {"client_id": self.client_id}
        if server_key:
            options.update(server_key=server_key, client_key=client_key or None)
        self.key_error = None
        try:
            return Session(endpoint, **options)
        except DaemonError as exc:  # the keys; a malformed endpoint raises ValueError
            self.key_error = f"Keys not usable: {exc.message}"
        return Session(endpoint, client_factory=lambda ep, **_: _KeyErrorClient(
            ep or endpoint, self.key_error or ""))

    def _replace_session(self, endpoint: str) -> None:
        """Drop the running job (its results would go nowhere) and connect anew."""
        if self.session.job is not None and not self.session.job.finished:
            self.session.cancel()
        old = self.session.endpoint
        self.session.close()
        server_key = self.server_key_edit.text().strip()
        client_key = self.client_key_edit.text().strip()
        try:
            self.session = self._open_session(endpoint, server_key, client_key)
        except Exception as exc:  # zmq refuses a malformed endpoint
            self.session = self._open_session(old, server_key, client_key)
            self.endpoint_edit.setText(old)
            self._error(f"Not a valid endpoint ({exc}); use e.g. tcp://127.0.0.1:47610")
            endpoint = old
        else:
            if self.key_error:
                self.connection_toggle.setChecked(True)
                self._error(self.key_error)
        self.target = None
        _write("endpoint", endpoint)
        self._watch_socket()
        self._set_running(False)
        self._show_connection()
        self.pump()

    def _endpoint_changed(self) -> None:
        endpoint = self.endpoint_edit.text().strip()
        if not endpoint or endpoint == self.session.endpoint:
            return
        self._replace_session(endpoint)

    def _keys_changed(self) -> None:
        server_key = self.server_key_edit.text().strip()
        client_key = self.client_key_edit.text().strip()
        if (server_key, client_key) == (_read("server_key"), _read("client_key")) \
                and self.key_error is None:
            return
        _write("server_key", server_key)
        _write("client_key", client_key)
        self._info("")
        self._replace_session(self.session.endpoint)

    def _pick_client_key(self) -> None:
        start = self.client_key_edit.text().strip() or str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Client key file", start,
                                              "Client secret keys (*.key_secret);;All files (*)")
        if path:
            self.client_key_edit.setText(path)
            self._keys_changed()

    def _show_connection_box(self, shown: bool) -> None:
        self.connection_box.setVisible(shown)
        self.connection_toggle.setArrowType(Qt.DownArrow if shown else Qt.RightArrow)

    def _refused(self) -> str | None:
        """Why the daemon turns this client away, when it is the keys."""
        if self.key_error:
            return self.key_error
        if getattr(self.session.client, "auth_refused", False):
            if not self.server_key_edit.text().strip():
                return (f"the daemon at {self.session.endpoint} requires keys: set Server key "
                        "and Client key file under Connection")
            return (f"the daemon at {self.session.endpoint} refused this client's keys: check "
                    "Server key and Client key file under Connection")
        return None

    def pump(self, *_: object) -> None:
        """Read everything that arrived, probe the daemon, show the state. Never waits."""
        for notifier in self.notifiers:
            notifier.setEnabled(False)
        try:
            self.session.poll()
            if self.session.keepalive(time.monotonic()):
                self._show_connection()
            self.session.poll()        # the probe's reply may already be there
            if self.session.keepalive(time.monotonic()):
                self._show_connection()
            job = self.session.job
            if job is not None and self.target is not None:
                self._show_job(job)
            if self.daemon_proc is not None:
                self._show_daemon_start()
        except Exception as exc:  # never let a slot die silently inside Krita
            traceback.print_exc()
            self._error(f"Internal error: {exc!r} (details on the terminal)")
        finally:
            for notifier in self.notifiers:
                notifier.setEnabled(True)

    def _show_connection(self) -> None:
        s = self.session
        refused = self._refused()
        if s.connected:
            info = s.info or {}
            secure = " (CurveZMQ)" if self.server_key_edit.text().strip() else ""
            self.status_label.setText(
                f"<span style='color:#2a2'>●</span> Connected to {s.endpoint}{secure} — "
                f"{info.get('device', '?')} ({info.get('dtype', '?')}), "
                f"default model {info.get('default_model') or 'none'}")
            self.status_label.setProperty("connected", True)
        else:
            self.status_label.setText(
                f"<span style='color:#c33'>●</span> Not connected: "
                f"{refused or s.last_error or 'connecting to ' + s.endpoint + '…'}")
            self.status_label.setProperty("connected", False)
        self.start_button.setVisible(not s.connected and not refused
                                     and is_loopback(s.endpoint))
        self._fill_models()

    def start_daemon(self) -> None:
        try:
            self.daemon_proc = launcher.start_daemon(self.session.endpoint)
        except (FileNotFoundError, OSError) as exc:
            self._error(f"Could not start the daemon: {exc}")
            return
        self._daemon_started = time.monotonic()
        self.start_button.setEnabled(False)
        self._info(f"Starting the daemon on {self.session.endpoint} …")

    def _show_daemon_start(self) -> None:
        proc = self.daemon_proc
        if self.session.connected:
            self.start_button.setEnabled(True)
            if self._daemon_started:
                self._info(f"Daemon started ({time.monotonic() - self._daemon_started:.0f} s).")
                self._daemon_started = 0.0
            return
        if not self._daemon_started:
            return
        tail = _log_tail(launcher.log_path())
        if proc.poll() is not None:
            self._daemon_started = 0.0
            self.start_button.setEnabled(True)
            self._error(f"The daemon exited (code {proc.returncode}): {tail}\n"
                        f"Log: {launcher.log_path()}")
            return
        self._info(f"Starting the daemon … {time.monotonic() - self._daemon_started:.0f} s"
                   + (f"\n{tail}" if tail else ""))

    # ---------------------------------------------------------------- jobs

    def _set_running(self, running: bool) -> None:
        self.generate_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if not running:
            self.progress.setValue(0)
            self.progress.setFormat("")

    def _info(self, text: str) -> None:
        self.message_label.setStyleSheet("")
        self.message_label.setText(text)

    def _error(self, text: str) -> None:
        self.message_label.setStyleSheet("color: #c33")
        self.message_label.setText(text)

    def generate(self) -> None:
        if self.target is not None:
            self._error("A job is already running: cancel it first.")
            return
        doc = Krita.instance().activeDocument()
        if doc is None:
            self._error("Open an image first.")
            return
        refused = self._refused()
        if not self.session.connected and refused:
            self.connection_toggle.setChecked(True)
            self._error(f"Not connected: {refused}.")
            return
        if not self.session.connected:
            self._error(f"No paintbridge daemon answers at {self.session.endpoint}. "
                        "Press “Start local daemon” or run `paintbridge serve`.")
            return
        settings = self.settings()
        _write("settings", settings.to_json())
        try:
            node = doc.activeNode()
            if node is not None:   # Krita activates the layers we add: a result (or its
                node = self._source_of.get(node.uniqueId(), node)   # group) means its source
            target = KritaDocument(doc, node)
            self.session.submit(target, settings, send_timeout=0)
        except (ValueError, UnsupportedDocument, ProtocolError) as exc:
            self._error(str(exc))
            return
        except DaemonError as exc:
            self._error(exc.message)
            return
        self.target = target
        self.preview_label.clear()
        self._set_running(True)
        self.progress.setFormat("sent…")
        self._info("")

    def cancel(self) -> None:
        if self.target is None:
            return
        job = self.session.job
        if job is not None and getattr(job, "lost", False):   # nobody to tell: drop it
            self.target = None
            self._set_running(False)
            self.session.client.jobs.pop(job.id, None)
            self._info("Cancelled: the image was not changed.")
            return
        self.session.cancel()
        self._info("Cancelling…")
        self.pump()

    def _show_job(self, job: Any) -> None:
        if job.state is JobState.QUEUED:
            ahead = job.position or 0
            self.progress.setFormat(f"queued ({ahead} ahead)" if ahead else "starting…")
        elif job.state is JobState.RUNNING and job.total:
            self.progress.setValue(int(100 * job.step / job.total))
            self.progress.setFormat(f"step {job.step}/{job.total}")
            if job.preview is not None:
                self._show_preview(job.preview)
        if getattr(job, "lost", False):
            # The connection dropped: the client asks for the job again once the daemon is
            # back (a daemon that kept running still has it). Until then: wait, or Cancel.
            self.progress.setFormat("connection lost: waiting for the daemon…")
            return
        if not job.finished:
            return
        target, self.target = self.target, None
        self._set_running(False)
        if job.state is JobState.DONE:
            try:
                names = self.session.deliver(target)
            except Exception as exc:  # a closed document, a layer gone: say so, add nothing
                self._error(f"Could not add the result: {exc}")
                return
            self.last_seed = job.patches[0].seed
            for layer in [*target.added, target.group]:
                if layer is not None:
                    self._source_of[layer.uniqueId()] = target.node
            for layer in target.added:
                self._add_result(layer)
            secs = job.info.get("seconds")
            self._info(f"Added {len(names)} layer{'s' if len(names) > 1 else ''} "
                       f"(seed {self.last_seed}" + (f", {secs:.1f} s)" if secs else ")"))
        elif job.state is JobState.CANCELLED:
            self._info("Cancelled: the image was not changed.")
        else:
            self._error(f"Generation failed: {job.error_message} [{job.error_code}]")
        self.session.client.jobs.pop(job.id, None)

    def _show_preview(self, frame: Any) -> None:
        if frame.format != "rgba8":
            return
        img = QImage(bytes(frame.data), frame.width, frame.height, frame.width * 4,
                     QImage.Format_RGBA8888).copy()
        self.preview_label.setPixmap(QPixmap.fromImage(img).scaled(
            64, 64, Qt.KeepAspectRatio, Qt.SmoothTransformation))

    def _add_result(self, layer: Any) -> None:
        item = QListWidgetItem(layer.name())
        item.setToolTip(layer.name())
        thumb = layer.thumbnail(64, 64)
        if thumb is not None and not thumb.isNull():
            item.setIcon(QIcon(QPixmap.fromImage(thumb)))
        self.result_layers.append(layer)
        item.setData(Qt.UserRole, len(self.result_layers) - 1)
        self.results_list.addItem(item)

    def _result_clicked(self, item: QListWidgetItem) -> None:
        self._toggle(self.result_layers[item.data(Qt.UserRole)])

    def _toggle(self, layer: Any) -> None:
        try:
            layer.setVisible(not layer.visible())
            doc = Krita.instance().activeDocument()
            if doc is not None:
                doc.refreshProjection()
        except RuntimeError:   # the layer was deleted by the user
            self._error("That layer no longer exists.")

    def toggle_last_result(self) -> None:
        if self.result_layers:
            self._toggle(self.result_layers[-1])

    def reuse_last_seed(self) -> None:
        if self.last_seed is None:
            self._info("No result yet in this session.")
            return
        self.seed_random.setChecked(False)
        self.seed_edit.setText(str(self.last_seed))


def _log_tail(path: Path, size: int = 400) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - size))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""
