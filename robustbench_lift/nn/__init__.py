"""Neural-network layers: lifting (LiftDownPool/LiftUpPool), the pooling registry and ``swap_pooling``.

Owns every pooling kind and the code that puts one into a model. May import the base
layer (``errors``, ``registry``, ``utils``) and torch; nothing above it (models, data,
evaluation, run, reporting).
"""
