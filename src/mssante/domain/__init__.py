"""mssante.domain package."""
