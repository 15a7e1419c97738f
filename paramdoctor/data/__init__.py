"""Data for the built-in trainer: digits, CIFAR-10/100 and image folders, split and batched on the device."""

from paramdoctor.data.build import BatchLoader, Loaders, build_loaders
from paramdoctor.data.cifar import data_root

__all__ = ["BatchLoader", "Loaders", "build_loaders", "data_root"]
