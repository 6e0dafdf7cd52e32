"""Shared service plumbing."""
