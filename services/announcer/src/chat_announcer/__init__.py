"""The chat's announcer: the periodic system announcement to every room."""
