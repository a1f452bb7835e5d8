"""robustbench-lift: robustness benchmarks for ConvNets that differ only in pooling."""

__version__ = "0.1.0"
