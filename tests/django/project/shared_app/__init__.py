"""Test project app."""
