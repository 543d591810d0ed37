"""livercad.pipeline."""
