"""livercad.classify."""
