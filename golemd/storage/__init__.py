"""Where the journal lives: the Store protocol and its implementations."""
