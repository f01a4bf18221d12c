"""mssante: an open-source operator platform for MSSanté, the French secure health email."""

__version__ = "0.1.0"
