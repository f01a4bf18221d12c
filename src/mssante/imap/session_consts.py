"""Flag lists shared by the session and the selected-state commands (RFC 9051 §2.3.2)."""

FLAGS = "\\Answered \\Flagged \\Deleted \\Seen \\Draft"
PERMANENT_FLAGS = "\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*"
