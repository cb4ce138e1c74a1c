"""The bounds both ends check before anything is allocated: the daemon announces its own in
``hello`` and a client reads them from there. Standard library only."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Limits:
    """Bounds checked before anything is allocated; the daemon announces them in ``hello``."""

    max_pixels: int = 8192 * 8192          # per frame
    max_side: int = 16384
    max_frames: int = 6                    # image, mask and max_controls control frames
    max_header_bytes: int = 64 * 1024
    max_prompt_chars: int = 4000
    max_steps: int = 200
    max_count: int = 8
    max_loras: int = 8
    max_controls: int = 4
    max_queue: int = 32
    max_queue_per_client: int = 8

    @property
    def max_message_bytes(self) -> int:
        """Largest legal frame (one rgbaf32 image of max_pixels); used for ZMQ_MAXMSGSIZE."""
        return self.max_pixels * 16 + self.max_header_bytes

    def to_json(self) -> dict[str, int]:
        return asdict(self)
