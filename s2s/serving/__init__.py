"""The HTTP translation server (`python -m s2s.serve`): app.py is the API, batcher.py the dynamic batching."""
