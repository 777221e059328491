"""Where the repository is, so the simulator can import the project's own packages.

``python tools/callsim.py`` puts ``tools/`` on ``sys.path``, not the repository
root that holds ``app`` and ``audio``.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def add_repo_root_to_sys_path() -> None:
    """Put ``REPO_ROOT`` on ``sys.path`` (first) unless it is there already."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
