"""mssante.formats package."""
