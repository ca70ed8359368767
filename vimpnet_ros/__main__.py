"""``python -m vimpnet_ros`` runs the command line."""

import sys

from vimpnet_ros.cli import main

sys.exit(main())
