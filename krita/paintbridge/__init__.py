"""Paintbridge for Krita: registers the extension (actions) and the "Paintbridge" docker.

Krita imports this package from its ``pykrita`` folder when the plugin is enabled. The
host-agnostic client is installed next to it as ``paintbridge.plugin``; on Windows and
macOS the installer also puts pyzmq into ``vendor/``.
"""

import os
import sys

_VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor")
if os.path.isdir(_VENDOR) and _VENDOR not in sys.path:
    sys.path.insert(0, _VENDOR)

try:
    from krita import Krita
except ImportError:  # imported outside Krita (tooling)
    Krita = None

if Krita is not None and Krita.instance() is not None:
    from .extension import register

    register(Krita.instance())
