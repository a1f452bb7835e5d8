"""Data: clean data sets as uint8 arrays (image folders listed, decoded when sampled), the
resize/crop geometry, ImageNet's wnids, readers of published robustness sets, the set writer.

May import the base layer, :mod:`corruptions` and numpy/Pillow/OpenCV; torch and
torchvision only inside the loaders that need them, so reading data never requires torch.
Nothing from nn, models, evaluation, run or reporting.
"""
