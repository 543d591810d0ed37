"""livercad.metrics."""
