"""The `trellis` command: run the platform locally and talk to its gateway."""
