"""cpeval: evaluate Connecting People studies from SPSS export to HTML report.

The code flows one way (see README "Architecture"):
io -> instruments -> scoring -> (analysis modules) -> report -> cli.
"""

from cpeval.errors import CpevalError

__version__ = "0.1.0"
__all__ = ["CpevalError", "__version__"]
