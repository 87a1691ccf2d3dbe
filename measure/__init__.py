"""Load, slice, capture and evaluate models; write labelled archives.

Submodules are imported on demand so that ``import measure`` stays cheap.
"""

from __future__ import annotations
