"""IMAP4rev1/IMAP4rev2 protocol pieces (command parser; the server lives beside it)."""
