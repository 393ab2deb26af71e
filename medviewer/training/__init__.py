"""Retraining on human-confirmed revisions, without Qt.

data.py (snapshot -> patient-wise split -> arrays prepared exactly as inference prepares them),
losses.py (Dice + weighted cross-entropy / focal, label BCE), metrics.py (Dice, IoU, AUC, F1,
gate accuracy), trainer.py (the loop, checkpoints, resume) and __main__.py (`python -m
medviewer.training JOB.json`, alone or under torchrun: a job file in, JSON-lines progress out,
a new model version registered). Import the submodules: this package stays light, so importing
it does not load torch.
"""
