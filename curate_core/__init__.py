"""curate_core: look at a labelled text dataset and curate it — headless (no streamlit here).

    from curate_core import Workspace
    ws = Workspace("ws")
    ws.ingest("train.csv")
    ws.run()
"""

from .errors import CurateError
from .version import VERSION
from .workspace import Workspace

__all__ = ["CurateError", "Workspace"]
__version__ = VERSION
