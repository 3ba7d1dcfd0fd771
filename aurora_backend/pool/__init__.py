"""Django's connection pool (OPTIONS["pool"]) made Aurora-safe.

Its settings and build (config), the wrapper side (mixin).
"""

from typing import List

#: Nothing here is for applications to import: OPTIONS["pool"] drives it.
__all__: list[str] = []
