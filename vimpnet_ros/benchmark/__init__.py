"""Benchmarks: whole-clip model timing (:mod:`.model`), the streaming engine (:mod:`.engine`).

Kept apart from ``model`` and ``engine`` so those packages hold only what a deployment
runs; the ``vimpnet-ros benchmark`` subcommands call these modules.
"""
