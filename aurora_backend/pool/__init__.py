"""Django's connection pool (OPTIONS["pool"]) made Aurora-safe.

Its settings and build (config), the wrapper side (mixin).
"""

#: Nothing here is for applications to import: OPTIONS["pool"] drives it.
__all__: list[str] = []
