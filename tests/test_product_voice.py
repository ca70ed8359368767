"""The repository speaks as a product: no project-history words in any tracked text file.

Users have never heard of the work sessions, review rounds or tracker numbers a change came from, so a
README, a docs page, a comment or a config that cites them ("as the session-N machine measured", "see
issue N", "#N") sends the reader nowhere. Machines are named by what they are (CPU model, cores,
features), studies live in ``docs/studies/``. External trackers are cited by full URL
(``https://github.com/<owner>/<repo>/issues/<n>``), which these patterns leave alone.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Project-history phrases, each with what it catches. Case-insensitive.
HISTORY_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"\bsessions?[ -]\d",  # a numbered work session, or a range of them
        r"\b(?:this|that|previous|next|earlier|later|last) sessions?\b",  # a session named by when it was
        r"\bissues?[ -]#?\d",  # a tracker number in prose (a URL's issues/<n> path is fine)
        r"\brounds? \d",  # a numbered review round ("round(x)" in code is fine)
        r"(?<![\w/.&])#\d+\b(?!-)",  # hash + number: a tracker reference; not "&#38;", "page#4" or "(#4-tests)" anchors
    )
)
#: Tracked files that are data, not text a reader reads (checked by content too: NUL bytes or not UTF-8).
BINARY_SUFFIXES = frozenset({".pth", ".pt", ".pt2", ".png", ".jpg", ".jpeg", ".mcap", ".db3", ".npz", ".npy", ".whl"})
#: Folders skipped when the tree is not a git checkout (generated or installed, never tracked).
UNTRACKED_DIRS = frozenset({".git", ".venv", "build", "install", "log", "demo_output", "__pycache__"})


def history_words(text: str) -> list[tuple[int, str]]:
    """(1-based line number, matched text) of every project-history phrase in ``text``."""
    hits = []
    for number, line in enumerate(text.splitlines(), start=1):
        for pattern in HISTORY_PATTERNS:
            hits.extend((number, match.group(0)) for match in pattern.finditer(line))
    return hits


def read_text(path: Path) -> str | None:
    """The file as UTF-8 text, or None for binary data."""
    if path.suffix.lower() in BINARY_SUFFIXES:
        return None
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def scan(paths: list[Path], root: Path) -> list[str]:
    """``file:line: match`` for every history phrase in the text files among ``paths``."""
    found = []
    for path in paths:
        text = read_text(path) if path.is_file() else None
        if text is not None:
            found.extend(f"{path.relative_to(root)}:{line}: {words!r}" for line, words in history_words(text))
    return found


def tracked_files(root: Path) -> list[Path]:
    """The files git tracks under ``root``; without git, every file outside generated folders."""
    try:
        listing = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return sorted(
            p for p in root.rglob("*") if p.is_file() and not UNTRACKED_DIRS & set(p.relative_to(root).parts[:-1])
        )
    return [root / name for name in listing.decode().split("\0") if name]


def test_tracked_text_speaks_as_a_product() -> None:
    files = tracked_files(REPO_ROOT)
    assert len(files) > 100, f"only {len(files)} files found under {REPO_ROOT}: the scan would prove nothing"
    found = scan(files, REPO_ROOT)
    assert not found, "project-history words (name machines, studies and trackers as docs/development.md says):\n" + (
        "\n".join(found)
    )


def test_scan_names_each_planted_history_word_and_spares_ordinary_text(tmp_path: Path) -> None:
    """The scanner fails on each kind of history phrase, at its line, and passes code and external links."""
    session, issue = "ses" + "sion", "iss" + "ue"  # split so this file itself stays clean
    planted = [
        f"Measured on the {session} 3 machine.",
        f"Figures of {session}s 1-2.",
        f"The {session}-4 run.",
        f"As {issue} 13 asks.",
        f"See {issue}-15.",
        f"Targets of {issue}s 13/15.",
        "Fixed in #" + "15.",
        "Found in round " + "2 of review.",
        f"Unlike the previous {session}, it ships.",
    ]
    ordinary = [
        '@pytest.fixture(scope="' + session + '")',
        "period_ns = round(1e9 / fps)",
        f"# {issue} a warning once per topic",
        f"quoted in https://github.com/ros2/rosbag2/{issue}s/1237",
        "see [the tests](install.md#4-tests) and [there](#4-tests)",
        "an entity &#38; in HTML",
        f"start_new_{session}=True",
    ]
    (tmp_path / "doc.md").write_text("\n".join(ordinary + planted) + "\n")
    (tmp_path / "weights.pth").write_bytes(f"{session} 3".encode())  # data, not text: never scanned
    found = scan(sorted(tmp_path.iterdir()), tmp_path)
    assert [line.split(":")[1] for line in found] == [str(len(ordinary) + i) for i in range(1, len(planted) + 1)], found
    assert all(line.startswith("doc.md:") for line in found)
