"""The hand-written fast paths: each is here because `bench.ab` measured it saving at least 10%
of the server's CPU at K = 200 against the library's stock path, in the same run
(docs/performance.md, "Hand-written fast paths"). FAST_PATHS (on by default) switches them all;
off, the stock paths run.

- `openai_client`: `LeanOpenAI`, which builds streamed chunks with pydantic's validator (it
  overrides a private method of the openai client); `chat.openai_client` picks the class.
- `sql`: a turn's statements without the ORM's query compiler; with FAST_PATHS off, each of its
  functions goes through the ORM.

They are two modules so that the database layer, imported at start-up, does not import the
OpenAI client (about a second, which the server loads on first use). Each relies on a library's
private API: tests/chat/fast_paths/test_private_api.py fails, naming the library and the
attribute, when an upgrade moves one.
"""
