"""learning layer."""
