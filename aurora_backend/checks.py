"""System checks for aurora_backend settings (filled in by the checks issue)."""
