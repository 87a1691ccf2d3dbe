"""Our own SliceGPT: fuse norms, take per-junction PCA, rotate and slice.

Typical use::

    from measure.slicing import slice_model, load_sliced

    result = slice_model(model, calibration_windows, sparsity=0.25)
    result.save("runs/smollm2-d432")
    again = load_sliced("runs/smollm2-d432").model

See :mod:`measure.slicing.fusion` (which steps are exact for which norm kind),
:mod:`measure.slicing.interleaved` (the algorithm) and :mod:`measure.slicing.io`
(the saved format).
"""

from __future__ import annotations

from measure.slicing.blocks import SlicedBlockMixin, convert_block
from measure.slicing.fusion import FusionInfo, dense_facts, fuse_model, fusion_info
from measure.slicing.interleaved import Orientation, SlicingResult, slice_model
from measure.slicing.io import LoadedSlice, load_sliced, save_sliced
from measure.slicing.norms import SlicedRMSNorm
from measure.slicing.pca import DAMPING, JunctionSpectrum, SecondMoment
from measure.slicing.rotate import rotate_model
from measure.slicing.schedule import SlicingSchedule, junction_names, kept_dim_from_sparsity

__all__ = [
    "DAMPING",
    "FusionInfo",
    "JunctionSpectrum",
    "LoadedSlice",
    "Orientation",
    "SecondMoment",
    "SlicedBlockMixin",
    "SlicedRMSNorm",
    "SlicingResult",
    "SlicingSchedule",
    "convert_block",
    "dense_facts",
    "fuse_model",
    "fusion_info",
    "junction_names",
    "kept_dim_from_sparsity",
    "load_sliced",
    "rotate_model",
    "save_sliced",
    "slice_model",
]
