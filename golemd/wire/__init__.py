"""Sans-IO codecs: the client protocol and the worker protocol."""
