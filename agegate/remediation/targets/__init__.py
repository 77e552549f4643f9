"""Purge targets: every store that holds an account's generation inputs and outputs."""
