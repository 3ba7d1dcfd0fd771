"""Django's connection pool (OPTIONS["pool"]) made Aurora-safe: its settings and build (config), the wrapper side (mixin)."""
