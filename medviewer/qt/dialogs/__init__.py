"""Dialogs: retrain."""
