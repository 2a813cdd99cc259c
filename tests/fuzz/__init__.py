"""The project's own fuzz suite: hostile event lines and tool payloads (see hostile.py)."""
