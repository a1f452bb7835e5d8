"""Small helpers every layer shares: atomic writes and file locks, digests, seed checks.

Base layer: imports only the standard library, numpy and :mod:`corruptions`' light
helpers; never torch.
"""
