"""Benchmarks: whole-clip model timing, the streaming engine, the one GPU check.

:mod:`.model`, :mod:`.engine` and :mod:`.gpu` are kept apart from ``model`` and ``engine``
so those packages hold only what a deployment runs; the ``vimpnet-ros benchmark``
subcommands (``vimpnet_ros.cli.benchmark``) call these modules, which never import the
command line.
"""
