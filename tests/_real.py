"""Where the real files for tests are: ``../shared/real`` beside the clone (as on CI).

``SFX_CNN_VETO_SHARED`` names another ``shared`` folder (a git worktree checked out elsewhere).
"""

from __future__ import annotations

import os
from pathlib import Path

REAL = Path(os.environ.get("SFX_CNN_VETO_SHARED") or Path(__file__).resolve().parents[2] / "shared") / "real"
