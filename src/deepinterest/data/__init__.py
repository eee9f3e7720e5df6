"""Datasets: the in-memory model, readers of every supported format, splits."""

from .model import Dataset, Item, User, load_dataset, save_dataset
from .splits import Example, Splits, leave_one_out

__all__ = ["Dataset", "Item", "User", "Example", "Splits", "leave_one_out", "load_dataset",
           "save_dataset"]
