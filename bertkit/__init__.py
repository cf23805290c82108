"""bertkit: BERT fine-tuning recipes for Keras/TensorFlow.

Importing the package is cheap on purpose: no TensorFlow, no files read. Import the submodules you need
(``bertkit.tokenization``, ``bertkit.encoder``, ...).
"""

__version__ = "0.1.0"
