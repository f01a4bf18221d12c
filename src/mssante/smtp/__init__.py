"""mssante.smtp package."""
