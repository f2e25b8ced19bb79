"""The data model: imports nothing of golemd's outside this package."""
