"""Postroom desktop app (PySide6 + qasync)."""
