"""The second layer: generic blocks (combinators, masking, scaling, clipping, wrappers, ...).

No named optimizer lives here; each module imports only from :mod:`gradtx.core` and its own layer.
"""
