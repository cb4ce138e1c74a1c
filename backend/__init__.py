"""paintbridge's daemon: sockets, job queue, model registry, diffusers pipelines, compositing.

Imports the wire protocol from ``plugin`` (never the other way round).
"""
