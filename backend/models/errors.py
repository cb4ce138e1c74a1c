"""What a loader's error means to the user who gave the file."""

from __future__ import annotations

import re

#: where diffusers' and transformers' messages turn to advice for developers
_DEVELOPER_HINTS = re.compile(r"\s*(If you (want|were)|Please (make sure|pass|check)|For more "
                              r"information|You (can|may|should)|Make sure|Otherwise,|Defaulting)"
                              r"\b.*", re.S)


def plain_reason(exc: BaseException) -> str:
    """What went wrong, without the library's advice to developers (low_cpu_mem_usage,
    hub URLs…): the user can act on the file, not on the loader's arguments."""
    text = _DEVELOPER_HINTS.sub("", str(exc)).strip().splitlines()
    reason = " ".join(line.strip() for line in text if line.strip())[:400] or type(exc).__name__
    return reason.replace("Cannot load  because ", "")
