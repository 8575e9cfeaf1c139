"""Tests of the configuration schema, its messages and the reference generated from it."""
