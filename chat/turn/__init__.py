"""One turn, from the user's message to `stream_end`: run it (runner), map the SDK's events (mapping),
keep what is not yet written (journal), and fan its events out to every socket (log, relay)."""
