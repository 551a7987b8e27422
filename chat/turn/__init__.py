"""One turn, from the user's message to `stream_end`: run it (runner), map the SDK's events
(mapping), keep what is not yet written (journal), fan its events out to every socket (log, and
relay across workers), own it in this process (live), and end it if its worker died (reaper)."""
