"""Interop harness and tests against real ``erl`` nodes."""
