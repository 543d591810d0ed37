"""livercad.io."""
