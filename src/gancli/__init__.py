"""gancli: train and explore GANs from the command line.

Importing this package is cheap on purpose (no torch): `gancli --help` must answer instantly.
"""

__version__ = "0.1.0"
