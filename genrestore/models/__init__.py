"""Networks and their checkpoint I/O."""
