"""Tests of the facegate service package `app`."""
