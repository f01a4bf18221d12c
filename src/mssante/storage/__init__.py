"""mssante.storage package."""
