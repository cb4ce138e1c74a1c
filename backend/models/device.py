"""Device, dtype and CPU threads: chosen once, at start-up, for the worker that owns them."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..settings import DTYPE_NAMES

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    dtype: torch.dtype

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def cpu_supports_bf16() -> bool:
    """True where oneDNN has native bf16 kernels (AVX512-BF16 / AMX); elsewhere bf16 is slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def choose(device: str | None = None, dtype: str | None = None) -> DeviceChoice:
    """CUDA fp16, else MPS fp16, else CPU bf16 where supported, else fp32; both overridable."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    dev = _usable(device)
    if dtype is None or dtype == "auto":
        if dev.type in ("cuda", "mps"):
            dtype = "float16"
        else:
            dtype = "bfloat16" if cpu_supports_bf16() else "float32"
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)} or auto")
    return DeviceChoice(dev, DTYPES[dtype])


def _usable(name: str) -> torch.device:
    """The device, or ValueError saying why it cannot work here: refused at start, so no
    job ever fails for it (nor stops the worker) later."""
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device: use cpu, cuda, cuda:N, mps or "
                         "auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: this PyTorch ({torch.__version__}) has no CUDA "
                             "or sees no GPU; use --device cpu, or install a CUDA build of "
                             "torch")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA "
                             "device(s) here (cuda:0 ...)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"--device {name}: Apple's MPS is not available here; use "
                             "--device cpu")
    elif dev.type != "cpu":
        raise ValueError(f"--device {name}: paintbridge runs on cpu, cuda or mps")
    return dev


def default_threads() -> int:
    """Leave one core to the host application on small machines so neither starves."""
    n = os.cpu_count() or 1
    return max(1, n - 1) if n <= 4 else n


#: allocators that report running out with a plain RuntimeError: the CPU's (Linux/macOS and
#: Windows wordings) and Apple MPS's (still a RuntimeError in torch 2.14, not OutOfMemoryError)
_OOM_MESSAGES = ("DefaultCPUAllocator: can't allocate memory",
                 "DefaultCPUAllocator: not enough memory", "MPS backend out of memory",
                 "CUDA error: out of memory")   # cuBLAS/cuDNN workspaces: a bare RuntimeError


def is_out_of_memory(exc: BaseException) -> bool:
    """By type first (MemoryError, numpy's included; torch.OutOfMemoryError, which CUDA's
    allocator raises), by message only where torch raises a bare RuntimeError."""
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _OOM_MESSAGES)


def configure_threads(threads: int | None) -> int:
    """Set torch's intra-op threads; OMP_WAIT_POLICY must already be PASSIVE (cli/serve.py)."""
    n = threads or default_threads()
    torch.set_num_threads(n)
    return n
