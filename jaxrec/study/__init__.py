"""Studies over many runs: tables and plots."""
