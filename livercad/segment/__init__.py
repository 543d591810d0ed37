"""livercad.segment."""
