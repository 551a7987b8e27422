"""Where conversations, turns and their messages are written (services) and read (selectors)."""
