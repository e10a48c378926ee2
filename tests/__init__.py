"""certward tests."""
