"""The front door: the daemon's sockets and poll loop, the fair queue, CurveZMQ keys and
finished jobs kept for ``fetch``. Nothing here knows diffusers."""
