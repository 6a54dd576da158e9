"""Where the style sheets are: ``app/styles`` inside an installed wheel, else ``styles/``
of the source tree. Its own module, so that an app (the class view's) can find them
without importing the dashboard's."""

from __future__ import annotations

from pathlib import Path


def styles_dir() -> Path:
    """``app/styles`` inside an installed wheel, else ``styles/`` of the source tree."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "styles"
    return packaged if packaged.is_dir() else here.parent / "styles"


STYLES = styles_dir()
