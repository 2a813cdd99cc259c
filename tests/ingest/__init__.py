"""Tests of relsec ingest: adapters, signatures, gateway, CLI."""
