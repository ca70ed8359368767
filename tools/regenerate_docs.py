#!/usr/bin/env python3
"""Rewrite config/vimpnet.yaml and the README's parameter table from the parameter table (after changing it).

``tests/pipeline/test_settings.py::test_generated_files_are_up_to_date`` fails until this is run.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vimpnet_ros.pipeline.settings import markdown_table, params_yaml  # noqa: E402

#: The README's table: from its header row to the first line that is not a table row.
_TABLE = re.compile(r"\| parameter \| type \| default \| restart \| description \|\n(?:\|.*\|\n)+")


def main() -> int:
    (ROOT / "config" / "vimpnet.yaml").write_text(params_yaml())
    readme = ROOT / "README.md"
    text, count = _TABLE.subn(lambda _: markdown_table(), readme.read_text())
    if count != 1:
        print(f"README.md: expected one parameter table, found {count}", file=sys.stderr)
        return 1
    readme.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
