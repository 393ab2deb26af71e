"""PACS connectivity without Qt: nodes kept in the user's settings and a DICOMweb client.

WADO-RS retrieve, STOW-RS and DIMSE come later (issue 13)."""
