"""Torch models and image handling shared by the service (`app`) and the training package.

This package imports neither `app` nor `training`.
"""
