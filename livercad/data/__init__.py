"""livercad.data."""
