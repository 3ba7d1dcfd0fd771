"""Django's connection pool (OPTIONS["pool"]) made Aurora-safe.

Its settings and build (config), the wrapper side (mixin).
"""
