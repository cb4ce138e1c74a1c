"""paintbridge's host-agnostic client: wire protocol, job lifecycle, region maths.

Pure Python + pyzmq: this package runs inside Krita's and GIMP's own Pythons,
which have no numpy, torch or PIL.
"""

__version__ = "0.1.0"
