"""Tests of the gallery stores."""
