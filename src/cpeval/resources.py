"""Where the shipped data folders are.

In a wheel they live inside the package (cpeval/_data/...); in a source checkout or editable install they are
the repository's top-level folders. Everything else asks this module rather than guessing paths.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_INSTALLED = _PACKAGE_DIR / "_data"
_REPO_ROOT = _PACKAGE_DIR.parent.parent


def _data_dir(*parts: str) -> Path:
    for base in (_INSTALLED, _REPO_ROOT):
        candidate = base.joinpath(*parts)
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"cpeval's shipped folder {'/'.join(parts)!r} was not found inside the package or the source tree; "
        "reinstall cpeval"
    )


def instruments_dir() -> Path:
    """Folder of the shipped instrument definitions (one YAML file per instrument)."""
    return _data_dir("instruments")


def analysis_dir() -> Path:
    """Folder of the shipped analysis plans and variable maps."""
    return _data_dir("analysis")


def templates_dir() -> Path:
    """Folder of the Jinja2 report templates."""
    return _data_dir("reports", "templates")
