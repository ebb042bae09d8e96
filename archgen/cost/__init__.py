"""What a network costs: parameters and multiply-adds, per block and in total."""

from .counts import BlockCost, ModelCost, count

__all__ = ["BlockCost", "ModelCost", "count"]
