"""mssante.services package."""
