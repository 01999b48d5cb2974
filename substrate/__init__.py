"""offerpool substrate."""
