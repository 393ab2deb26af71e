"""Retraining on human-confirmed revisions, without Qt.

data.py (snapshot -> patient-wise split -> tensors prepared exactly as inference prepares them),
losses.py (Dice + weighted cross-entropy / focal, label BCE), metrics.py (Dice, IoU, AUC, F1,
gate accuracy), trainer.py (the loop, checkpoints, resume, registration of the new version) and
__main__.py (`python -m medviewer.training JOB.json`, also under torchrun). Import the
submodules: this package stays light so that importing it does not load torch.
"""
