"""Tests of the service catalog and the canonical image names (SPEC §8)."""
