"""Training data: image sources, the decoded image cache and the patch batchers.

``sisr.data.benchmarks`` (evaluation sets) is imported on its own, not from here.
"""

from sisr.data.cache import DecodedSet, DeviceSet, default_cache_dir, open_decoded
from sisr.data.pipeline import PatchBatcher, PlainLoaderBatcher, dihedral
from sisr.data.sources import ImageList, div2k_pairs, folder_pairs, hr_folders, list_images

__all__ = [
    "DecodedSet",
    "DeviceSet",
    "ImageList",
    "PatchBatcher",
    "PlainLoaderBatcher",
    "default_cache_dir",
    "dihedral",
    "div2k_pairs",
    "folder_pairs",
    "hr_folders",
    "list_images",
    "open_decoded",
]
