"""livercad.report."""
