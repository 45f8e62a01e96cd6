"""Training: loop, EMA, checkpoints, run directories, logging.

Import-light on purpose: nothing here imports torch at package import time. Import the submodules
you need (`gancli.train.checkpoint`, `gancli.train.rundir`, ...); they import torch lazily too.
"""
