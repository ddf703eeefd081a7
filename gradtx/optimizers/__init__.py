"""The third layer: one module per family of optimizers, holding its states, its ``scale_by_*``
blocks and its named optimizers. Families import the layers below, and a family built on Adam may
use the public names of :mod:`gradtx.optimizers.adam`; families do not import one another otherwise.
"""
