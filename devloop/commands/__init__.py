"""The commands that are not the loop: `devloop status` and `devloop down`.

What other packages use is re-exported here; each module says why it exists.
"""

from devloop.commands.down import run_down
from devloop.commands.status import collect_status, render_status

__all__ = ["collect_status", "render_status", "run_down"]
